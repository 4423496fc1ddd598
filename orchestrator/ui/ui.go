// Package ui holds the queen's web console: one page of plain HTML, CSS
// and JavaScript, embedded in the binary, with no build step and nothing
// fetched from elsewhere, so it works offline.
//
// The page is static and holds no data: everything it shows it reads from
// the queen's API (the snapshot stream GET /v2/events, the catalogs, the
// logs, the OpenAI-compatible routes) with the API key the user types in,
// kept in the tab's session storage. It is served without a token, like
// any login page, under a Content-Security-Policy that allows only the
// queen's own origin.
package ui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	"rbee/api"
	"rbee/internal/httpx"
)

//go:embed static
var static embed.FS

// Files returns the page's files: index.html, app.js and app.css.
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic("ui: " + err.Error()) // "static" is a valid path
	}
	return sub
}

// asset is one file of the page, with its gzip form and validator.
type asset struct {
	body, gz []byte
	ctype    string
	etag     string
}

// securityHeaders go on every answer of the page: scripts, styles and
// requests only from the queen's own origin, no framing, no referrer.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"X-Content-Type-Options": "nosniff",
	"X-Frame-Options":        "DENY",
	"Referrer-Policy":        "no-referrer",
}

// Handler serves the console: the page at / and /ui/, its files under
// /ui/. Answers are compressed when the browser accepts gzip and carry an
// ETag, so a reload transfers almost nothing.
func Handler() http.Handler {
	assets := map[string]*asset{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		_, _ = zw.Write(body)
		_ = zw.Close()
		sum := sha256.Sum256(body)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		assets[strings.TrimPrefix(p, "static/")] = &asset{body: body, gz: gz.Bytes(), ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic("ui: reading the embedded page: " + err.Error()) // the files are part of the binary
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range securityHeaders {
			w.Header().Set(k, v)
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			httpx.WriteError(w, r, api.Errorf(api.CodeMethodNotAllowed, "%s is not allowed on the console's page: use GET", r.Method))
			return
		}
		name := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/ui"), "/")
		if name == "" {
			name = "index.html"
		}
		a := assets[name]
		if a == nil {
			httpx.WriteError(w, r, api.Errorf(api.CodeNotFound, "the console has no file %s", r.URL.Path).
				WithHint("the console is at / (its files are /ui/index.html, /ui/app.js and /ui/app.css)"))
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Set("Vary", "Accept-Encoding")
		if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, a.etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		body := a.body
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			h.Set("Content-Encoding", "gzip")
			body = a.gz
		}
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	})
}
