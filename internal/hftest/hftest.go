// Package hftest is a fake Hugging Face hub for tests: a real HTTP server on
// loopback that serves synthetic GGUF models (package synth) the way the hub
// does — the repository API with ?blobs=true metadata, resolve URLs that
// redirect to a file store with X-Linked-Etag, Range requests — and injects
// faults: connections cut after N bytes, stalls, wrong checksums, missing
// files, private repositories.
//
// Point HF_ENDPOINT (or hf.Client.Endpoint) at Hub.URL.
package hftest

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"rbee/internal/synth"
)

// The repositories New serves.
const (
	// RepoTiny has tiny.Q4_K_M.gguf, tiny.Q8_0.gguf and tiny-q4_0.gguf (the
	// smallest), a README.md and a config.json.
	RepoTiny = "rbee-test/tiny-GGUF"
	// RepoNoQ4KM has tiny.Q8_0.gguf and tiny.Q4_0.gguf: no Q4_K_M, so the
	// smallest (Q4_0) is the default.
	RepoNoQ4KM = "rbee-test/tiny-noq4km-GGUF"
	// RepoPrivate has tiny.Q4_K_M.gguf and answers 401 without Token.
	RepoPrivate = "rbee-test/private-GGUF"
	// Token is the token RepoPrivate accepts.
	Token = "hf_rbee_test_token_0123456789"
)

// Fault makes the hub misbehave for one file.
type Fault struct {
	// CutAfter closes the connection after this many bytes of an answer
	// (after the headers announced the whole length), for the first CutTimes
	// answers (0: every answer).
	CutAfter int64
	CutTimes int
	// StallAfter stops sending after this many bytes of an answer, for
	// StallFor (0: until the client leaves), for the first StallTimes answers
	// (0: every answer).
	StallAfter int64
	StallFor   time.Duration
	StallTimes int
	Stall      bool // enables the stall (StallAfter may be 0)
	// WrongSHA announces a SHA-256 (listing and headers) the bytes do not have.
	WrongSHA bool
	// NotFound answers 404 to resolve, as if the file were gone.
	NotFound bool
	// IgnoreRange answers every Range request with the whole file (200).
	IgnoreRange bool
	// BytesPerSecond slows the file store down (0: as fast as it goes).
	BytesPerSecond int64
}

// Request is one request the hub saw.
type Request struct {
	Kind  string // "api", "resolve" or "cdn"
	Path  string
	Range string // the Range header
	Auth  string // "" (none), "valid" or "invalid"
}

type file struct {
	data []byte
	sha  string // SHA-256 of data
	lfs  bool
}

type repo struct {
	private bool
	files   map[string]*file
}

// Hub is a fake hub. Its methods are safe for concurrent use.
type Hub struct {
	// URL is the hub's base URL, for HF_ENDPOINT.
	URL string
	srv *httptest.Server

	mu     sync.Mutex
	repos  map[string]*repo
	faults map[string]*faultState
	reqs   []Request
}

type faultState struct {
	Fault
	cuts, stalls int // answers cut / stalled so far
}

// New starts a hub on 127.0.0.1 serving RepoTiny, RepoNoQ4KM and
// RepoPrivate; it stops at the end of the test.
func New(t testing.TB) *Hub {
	t.Helper()
	h := &Hub{repos: map[string]*repo{}, faults: map[string]*faultState{}}
	dir := t.TempDir()
	models := map[string][]byte{}
	for _, q := range []string{"Q4_K_M", "Q8_0", "Q4_0"} {
		p := filepath.Join(dir, q+".gguf")
		if err := synth.Write(p, synth.Tiny(q)); err != nil {
			t.Fatalf("hftest: writing a %s model: %v", q, err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("hftest: %v", err)
		}
		models[q] = b
	}
	h.AddFile(RepoTiny, "tiny.Q4_K_M.gguf", models["Q4_K_M"])
	h.AddFile(RepoTiny, "tiny.Q8_0.gguf", models["Q8_0"])
	h.AddFile(RepoTiny, "tiny-q4_0.gguf", models["Q4_0"])
	h.AddFile(RepoTiny, "README.md", []byte("# tiny\n\nA synthetic model for rbee's tests.\n"))
	h.AddFile(RepoTiny, "config.json", []byte(`{"model_type":"llama"}`+"\n"))
	h.AddFile(RepoNoQ4KM, "tiny.Q8_0.gguf", models["Q8_0"])
	h.AddFile(RepoNoQ4KM, "tiny.Q4_0.gguf", models["Q4_0"])
	h.AddFile(RepoPrivate, "tiny.Q4_K_M.gguf", models["Q4_K_M"])
	h.SetPrivate(RepoPrivate)

	h.srv = httptest.NewServer(http.HandlerFunc(h.route))
	h.URL = h.srv.URL
	t.Cleanup(h.Close)
	return h
}

// Close stops the hub (New's cleanup does it too).
func (h *Hub) Close() {
	h.srv.CloseClientConnections()
	h.srv.Close()
}

// AddFile adds (or replaces) a file; names ending in .gguf are stored as LFS
// files (with a SHA-256 in the listing and a redirect to the file store).
func (h *Hub) AddFile(repoName, name string, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.repos[repoName]
	if r == nil {
		r = &repo{files: map[string]*file{}}
		h.repos[repoName] = r
	}
	sum := sha256.Sum256(data)
	r.files[name] = &file{data: data, sha: hex.EncodeToString(sum[:]), lfs: strings.HasSuffix(name, ".gguf")}
}

// SetPrivate makes a repository answer 401 to requests without Token.
func (h *Hub) SetPrivate(repoName string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r := h.repos[repoName]; r != nil {
		r.private = true
	}
}

// SetFault makes the hub misbehave for one file (replacing an earlier fault).
func (h *Hub) SetFault(repoName, name string, f Fault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults[repoName+"/"+name] = &faultState{Fault: f}
}

// File returns a file's bytes (nil if there is none).
func (h *Hub) File(repoName, name string) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if f := h.lookup(repoName, name); f != nil {
		return f.data
	}
	return nil
}

// SHA256 returns a file's real SHA-256 in hex.
func (h *Hub) SHA256(repoName, name string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if f := h.lookup(repoName, name); f != nil {
		return f.sha
	}
	return ""
}

// Requests returns the requests seen so far, oldest first.
func (h *Hub) Requests() []Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.reqs)
}

// Transfers returns the file store requests for one file: one per attempt
// of a download, with the Range each asked for.
func (h *Hub) Transfers(repoName, name string) []Request {
	var out []Request
	for _, r := range h.Requests() {
		if r.Kind == "cdn" && r.Path == "/cdn/"+repoName+"/"+name {
			out = append(out, r)
		}
	}
	return out
}

func (h *Hub) lookup(repoName, name string) *file {
	if r := h.repos[repoName]; r != nil {
		return r.files[name]
	}
	return nil
}

// record notes a request and says whether it may read the repository.
func (h *Hub) record(kind string, r *http.Request, repoName string) (rp *repo, allowed bool) {
	auth := ""
	if a := r.Header.Get("Authorization"); a != "" {
		auth = "invalid"
		if a == "Bearer "+Token {
			auth = "valid"
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reqs = append(h.reqs, Request{Kind: kind, Path: r.URL.Path, Range: r.Header.Get("Range"), Auth: auth})
	rp = h.repos[repoName]
	if auth == "invalid" {
		return rp, false
	}
	return rp, rp == nil || !rp.private || auth == "valid"
}

func hubError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	if code != "" {
		w.Header().Set("X-Error-Code", code)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// fakeCommit is a stable 40-hex commit id for a repository.
func fakeCommit(name string) string {
	s := sha1.Sum([]byte("commit " + name))
	return hex.EncodeToString(s[:])
}

// gitBlobID is the id git gives the bytes (the hub's ETag of small files).
func gitBlobID(data []byte) string {
	s := sha1.New()
	s.Write([]byte("blob " + strconv.Itoa(len(data)) + "\x00"))
	s.Write(data)
	return hex.EncodeToString(s.Sum(nil))
}

// announcedSHA is the hash the hub announces for a file: its own, or a
// wrong one under a WrongSHA fault. Callers hold h.mu.
func (h *Hub) announcedSHA(repoName, name string, f *file) string {
	if fs := h.faults[repoName+"/"+name]; fs != nil && fs.WrongSHA {
		s := sha256.Sum256(append([]byte("not "), f.data...))
		return hex.EncodeToString(s[:])
	}
	return f.sha
}

// route dispatches /api/models/ORG/REPO, /ORG/REPO/resolve/REV/FILE and
// /cdn/ORG/REPO/FILE (patterns a ServeMux cannot tell apart).
func (h *Hub) route(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hubError(w, http.StatusMethodNotAllowed, "", "method not allowed")
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 4 && parts[0] == "api" && parts[1] == "models":
		h.handleAPI(w, r, parts[2]+"/"+parts[3])
	case len(parts) >= 4 && parts[0] == "cdn":
		h.handleCDN(w, r, parts[1]+"/"+parts[2], strings.Join(parts[3:], "/"))
	case len(parts) >= 5 && parts[2] == "resolve":
		h.handleResolve(w, r, parts[0]+"/"+parts[1], strings.Join(parts[4:], "/"))
	default:
		hubError(w, http.StatusNotFound, "", "Not Found")
	}
}

type lfsInfo struct {
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	PointerSize int    `json:"pointerSize"`
}

type sibling struct {
	RFilename string   `json:"rfilename"`
	BlobID    string   `json:"blobId,omitempty"`
	Size      int64    `json:"size,omitempty"`
	LFS       *lfsInfo `json:"lfs,omitempty"`
}

func (h *Hub) handleAPI(w http.ResponseWriter, r *http.Request, name string) {
	rp, ok := h.record("api", r, name)
	if !ok {
		hubError(w, http.StatusUnauthorized, "", "Invalid username or password.")
		return
	}
	if rp == nil {
		hubError(w, http.StatusNotFound, "RepoNotFound", "Repository not found")
		return
	}
	blobs := r.URL.Query().Get("blobs") == "true"
	h.mu.Lock()
	names := make([]string, 0, len(rp.files))
	for n := range rp.files {
		names = append(names, n)
	}
	slices.Sort(names)
	sibs := make([]sibling, 0, len(names))
	for _, n := range names {
		f := rp.files[n]
		s := sibling{RFilename: n}
		if blobs {
			s.BlobID = gitBlobID(f.data)
			s.Size = int64(len(f.data))
			if f.lfs {
				s.LFS = &lfsInfo{SHA256: h.announcedSHA(name, n, f), Size: int64(len(f.data)), PointerSize: 134}
			}
		}
		sibs = append(sibs, s)
	}
	private := rp.private
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"_id": fakeCommit(name)[:24], "id": name, "modelId": name, "author": strings.Split(name, "/")[0],
		"sha": fakeCommit(name), "private": private, "gated": false, "disabled": false,
		"tags": []string{"gguf"}, "library_name": "gguf", "siblings": sibs,
	})
}

func (h *Hub) handleResolve(w http.ResponseWriter, r *http.Request, name, fname string) {
	rp, ok := h.record("resolve", r, name)
	if !ok {
		hubError(w, http.StatusUnauthorized, "", "Invalid username or password.")
		return
	}
	if rp == nil {
		hubError(w, http.StatusNotFound, "RepoNotFound", "Repository not found")
		return
	}
	h.mu.Lock()
	f := rp.files[fname]
	fs := h.faults[name+"/"+fname]
	var sha string
	if f != nil {
		sha = h.announcedSHA(name, fname, f)
	}
	h.mu.Unlock()
	if f == nil || fs != nil && fs.NotFound {
		hubError(w, http.StatusNotFound, "EntryNotFound", "Entry not found")
		return
	}
	w.Header().Set("X-Repo-Commit", fakeCommit(name))
	if !f.lfs {
		w.Header().Set("ETag", `"`+gitBlobID(f.data)+`"`)
		h.serve(w, r, f.data, nil)
		return
	}
	// Like the hub: the LFS file is elsewhere; the redirect says its hash and size.
	w.Header().Set("X-Linked-Etag", `"`+sha+`"`)
	w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.data)))
	w.Header().Set("ETag", `"`+sha+`"`)
	w.Header().Set("Location", "/cdn/"+name+"/"+fname+"?expires=3600")
	w.WriteHeader(http.StatusFound)
}

func (h *Hub) handleCDN(w http.ResponseWriter, r *http.Request, name, fname string) {
	rp, _ := h.record("cdn", r, name) // presigned: no token needed
	h.mu.Lock()
	var f *file
	if rp != nil {
		f = rp.files[fname]
	}
	fs := h.faults[name+"/"+fname]
	var sha string
	if f != nil {
		sha = h.announcedSHA(name, fname, f)
	}
	h.mu.Unlock()
	if f == nil {
		hubError(w, http.StatusNotFound, "", "NoSuchKey")
		return
	}
	w.Header().Set("ETag", `"`+sha+`"`)
	h.serve(w, r, f.data, fs)
}

// serve answers with data, honouring a Range "bytes=N-" or "bytes=N-M",
// and applies the fault's cut, stall and rate.
func (h *Hub) serve(w http.ResponseWriter, r *http.Request, data []byte, fs *faultState) {
	size := int64(len(data))
	start, end := int64(0), size
	status := http.StatusOK
	ignoreRange := false
	if fs != nil {
		h.mu.Lock()
		ignoreRange = fs.IgnoreRange
		h.mu.Unlock()
	}
	if rg := r.Header.Get("Range"); rg != "" && !ignoreRange {
		a, b, ok := parseRange(rg)
		if !ok || a >= size {
			w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start = a
		if b >= 0 && b+1 < size {
			end = b + 1
		}
		status = http.StatusPartialContent
		w.Header().Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(end-1, 10)+"/"+strconv.FormatInt(size, 10))
	}
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(end-start, 10))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}

	// Decide this answer's faults.
	cut, stallAt := int64(-1), int64(-1)
	var stallFor time.Duration
	var rate int64
	if fs != nil {
		h.mu.Lock()
		if fs.CutAfter > 0 && (fs.CutTimes == 0 || fs.cuts < fs.CutTimes) {
			fs.cuts++
			cut = fs.CutAfter
		}
		if fs.Stall && (fs.StallTimes == 0 || fs.stalls < fs.StallTimes) {
			fs.stalls++
			stallAt, stallFor = fs.StallAfter, fs.StallFor
		}
		rate = fs.BytesPerSecond
		h.mu.Unlock()
	}
	flusher, _ := w.(http.Flusher)
	body := data[start:end]
	sent := int64(0)
	const chunk = 16 << 10
	began := time.Now()
	for sent < int64(len(body)) {
		n := min(int64(chunk), int64(len(body))-sent)
		if cut >= 0 && sent+n > cut {
			n = cut - sent
		}
		if stallAt >= 0 && sent+n > stallAt {
			n = stallAt - sent
		}
		if n > 0 {
			if _, err := w.Write(body[sent : sent+n]); err != nil {
				return
			}
			sent += n
			if flusher != nil {
				flusher.Flush()
			}
		}
		if cut >= 0 && sent >= cut {
			// Drop the connection mid-body: the client sees an unexpected EOF.
			panic(http.ErrAbortHandler)
		}
		if stallAt >= 0 && sent >= stallAt {
			stallAt = -1
			if stallFor <= 0 {
				<-r.Context().Done()
				return
			}
			select {
			case <-time.After(stallFor):
			case <-r.Context().Done():
				return
			}
		}
		if rate > 0 {
			// Sleep until the bytes sent so far fit the rate.
			due := began.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-r.Context().Done():
					return
				}
			}
		}
	}
}

// parseRange reads "bytes=N-" or "bytes=N-M" (M is -1 when absent).
func parseRange(s string) (start, end int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes=")
	if !found || strings.Contains(rest, ",") {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rest, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	if b == "" {
		return start, -1, true
	}
	end, err = strconv.ParseInt(b, 10, 64)
	if err != nil || end < start {
		return 0, 0, false
	}
	return start, end, true
}
