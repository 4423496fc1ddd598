package httpx

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
)

// guarded is a guard in front of a handler that counts what reaches it,
// behind a token as the daemons have it.
func guarded(t *testing.T, cfg GuardConfig) (http.Handler, *int) {
	t.Helper()
	g, err := NewGuard(cfg)
	require.NoError(t, err)
	reached := new(int)
	next := Middleware(nil, Auth("0123456789abcdef", []string{"/health"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*reached++
		WriteJSON(w, http.StatusOK, map[string]string{"ok": "yes"})
	})))
	return g.Wrap(next), reached
}

// serve sends one request: a GET is to the public /health, anything else
// to /task, which needs the token.
func serve(h http.Handler, method, host, origin string, header ...string) *httptest.ResponseRecorder {
	path := "/task"
	if method == http.MethodGet {
		path = "/health"
	}
	r := httptest.NewRequest(method, "http://placeholder"+path, strings.NewReader("{}"))
	r.Host = host
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func envelope(t *testing.T, w *httptest.ResponseRecorder) *api.Error {
	t.Helper()
	var env api.Envelope
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &env), w.Body.String())
	require.NotNil(t, env.Error, w.Body.String())
	return env.Error
}

func TestGuardHosts(t *testing.T) {
	h, _ := guarded(t, GuardConfig{ListenAddr: "127.0.0.1:8080", AllowedHosts: []string{"gpu.example.com", "*.lan", "Mixed.Case"}})
	for host, ok := range map[string]bool{
		"127.0.0.1:8080":         true,
		"127.0.0.1":              true,
		"[::1]:8080":             true,
		"10.1.2.3:8080":          true, // an address: rebinding needs a name
		"localhost:8080":         true,
		"LocalHost.:8080":        true,
		"app.localhost:8080":     true,
		"":                       true, // HTTP/1.0 without Host
		"gpu.example.com:8080":   true,
		"GPU.example.com":        true,
		"box.lan:9200":           true,
		"a.b.lan":                true,
		"mixed.case":             true,
		"lan":                    false, // *.lan is subdomains only
		"xlan":                   false,
		"evil.example:8080":      false,
		"127.0.0.1.nip.io:8080":  false,
		"localhost.evil.example": false,
		"example.com":            false,
	} {
		w := serve(h, http.MethodGet, host, "")
		if ok {
			assert.Equal(t, http.StatusOK, w.Code, "Host %q: %s", host, w.Body)
			continue
		}
		assert.Equal(t, http.StatusForbidden, w.Code, "Host %q", host)
		e := envelope(t, w)
		assert.Equal(t, api.CodeForbidden, e.Code)
		assert.Contains(t, e.Message, "host name")
		assert.Contains(t, e.Hint(), "allowed_hosts")
		assert.Contains(t, e.Hint(), AllowedHostsEnv)
		assert.NotEmpty(t, e.RequestID, "refusals carry a request id")
		assert.Equal(t, e.RequestID, w.Header().Get(RequestIDHeader))
	}
}

func TestGuardListenAddress(t *testing.T) {
	hostname := func() (string, error) { return "Builder", nil }
	cases := []struct {
		listen  string
		allowed []string
		refused []string
	}{
		{"0.0.0.0:9200", []string{"builder:9200", "builder"}, []string{"other:9200"}},
		{"[::]:9200", []string{"builder:9200"}, []string{"other:9200"}},
		{":9200", []string{"builder:9200"}, []string{"other:9200"}},
		{"gpu-box:9200", []string{"gpu-box:9200", "GPU-BOX"}, []string{"builder:9200"}},
		{"192.168.1.20:9200", nil, []string{"builder:9200", "gpu-box"}},
	}
	for _, tc := range cases {
		h, _ := guarded(t, GuardConfig{ListenAddr: tc.listen, Hostname: hostname})
		for _, host := range tc.allowed {
			assert.Equal(t, http.StatusOK, serve(h, http.MethodGet, host, "").Code, "listening on %s, Host %s", tc.listen, host)
		}
		for _, host := range tc.refused {
			assert.Equal(t, http.StatusForbidden, serve(h, http.MethodGet, host, "").Code, "listening on %s, Host %s", tc.listen, host)
		}
	}
	h, _ := guarded(t, GuardConfig{ListenAddr: "127.0.0.1:1", AllowedHosts: []string{"*"}})
	assert.Equal(t, http.StatusOK, serve(h, http.MethodGet, "anything.example:1", "").Code, "* allows any name")
}

func TestGuardOrigins(t *testing.T) {
	h, reached := guarded(t, GuardConfig{ListenAddr: "127.0.0.1:8080",
		AllowedOrigins: []string{"https://app.example.com", "http://*.dev.test:3000", "tauri://*", "http://[::1]:5173"}})
	cases := []struct {
		host, origin string
		ok, cors     bool
	}{
		{"127.0.0.1:8080", "", true, false},
		{"127.0.0.1:8080", "http://127.0.0.1:8080", true, false}, // the daemon's own page
		{"localhost:8080", "http://LOCALHOST:8080", true, false},
		{"127.0.0.1:8080", "http://localhost:8080", false, false}, // another origin, though loopback
		{"127.0.0.1:8080", "http://127.0.0.1:9999", false, false},
		{"127.0.0.1:8080", "https://evil.example", false, false},
		{"127.0.0.1:8080", "null", false, false},
		{"127.0.0.1:8080", "https://app.example.com", true, true},
		{"127.0.0.1:8080", "HTTPS://APP.example.com", true, true},
		{"127.0.0.1:8080", "https://app.example.com:8443", false, false},
		{"127.0.0.1:8080", "http://app.example.com", false, false},
		{"127.0.0.1:8080", "http://ui.dev.test:3000", true, true},
		{"127.0.0.1:8080", "http://a.b.dev.test:3000", true, true},
		{"127.0.0.1:8080", "http://ui.dev.test:3001", false, false},
		{"127.0.0.1:8080", "http://dev.test:3000", false, false},
		{"127.0.0.1:8080", "tauri://localhost", true, true},
		{"127.0.0.1:8080", "http://[::1]:5173", true, true},
	}
	for _, tc := range cases {
		before := *reached
		w := serve(h, http.MethodPost, tc.host, tc.origin, "Content-Type", "text/plain")
		if !tc.ok {
			assert.Equal(t, http.StatusForbidden, w.Code, "Origin %q", tc.origin)
			assert.Equal(t, before, *reached, "a refused request reaches nothing")
			e := envelope(t, w)
			assert.Equal(t, api.CodeForbidden, e.Code)
			assert.Contains(t, e.Message, "web pages")
			assert.Contains(t, e.Hint(), "allowed_origins")
			assert.Empty(t, w.Header().Get("Access-Control-Allow-Origin"))
			continue
		}
		assert.Equal(t, http.StatusUnauthorized, w.Code, "Origin %q passes the guard, then needs the token like anyone", tc.origin)
		if tc.cors {
			assert.Equal(t, tc.origin, w.Header().Get("Access-Control-Allow-Origin"), tc.origin)
			assert.Contains(t, w.Header().Get("Access-Control-Expose-Headers"), RequestIDHeader)
		} else {
			assert.Empty(t, w.Header().Get("Access-Control-Allow-Origin"), tc.origin)
		}
	}

	any, _ := guarded(t, GuardConfig{AllowedOrigins: []string{"*"}})
	w := serve(any, http.MethodGet, "127.0.0.1", "null")
	assert.Equal(t, http.StatusOK, w.Code, "* allows any page")
	assert.Equal(t, "null", w.Header().Get("Access-Control-Allow-Origin"))
}

func TestGuardPreflight(t *testing.T) {
	h, reached := guarded(t, GuardConfig{AllowedOrigins: []string{"https://app.example.com"}})
	w := serve(h, http.MethodOptions, "127.0.0.1:8080", "https://app.example.com",
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type, x-stainless-os, bad header")
	assert.Equal(t, http.StatusNoContent, w.Code, "answered without a token: browsers send none on a preflight")
	assert.Equal(t, 0, *reached)
	assert.Equal(t, "https://app.example.com", w.Header().Get("Access-Control-Allow-Origin"))
	assert.Contains(t, w.Header().Get("Access-Control-Allow-Methods"), "POST")
	assert.Contains(t, w.Header().Get("Access-Control-Allow-Methods"), "DELETE")
	allowed := w.Header().Get("Access-Control-Allow-Headers")
	assert.Contains(t, allowed, "Authorization")
	assert.Contains(t, allowed, "Content-Type")
	assert.Contains(t, allowed, "x-stainless-os", "what the page asks for")
	assert.NotContains(t, allowed, "bad header")
	assert.Equal(t, 1, strings.Count(strings.ToLower(allowed), "authorization"))

	w = serve(h, http.MethodOptions, "127.0.0.1:8080", "https://evil.example", "Access-Control-Request-Method", "POST")
	assert.Equal(t, http.StatusForbidden, w.Code)
	assert.Empty(t, w.Header().Get("Access-Control-Allow-Origin"))

	w = serve(h, http.MethodGet, "127.0.0.1:8080", "https://app.example.com", "Authorization", "Bearer 0123456789abcdef")
	assert.Equal(t, http.StatusOK, w.Code, "the real request, with its token")
	assert.Equal(t, 1, *reached)
}

func TestGuardSettingsAreChecked(t *testing.T) {
	for _, ok := range [][]string{nil, {"*"}, {"gpu-box"}, {"*.example.com"}, {"10.0.0.1"}, {"::1"}, {"[::1]"}, {" spaced.example "}} {
		assert.NoError(t, CheckAllowedHosts(ok), "%q", ok)
	}
	for _, bad := range []string{"", "gpu-box:9200", "http://gpu-box", "*example.com", "a..b", "bad name", "*.", "ex*ample.com"} {
		err := CheckAllowedHosts([]string{bad})
		assert.Error(t, err, "%q", bad)
		if err != nil {
			assert.Contains(t, err.Error(), "allowed_hosts", bad)
		}
	}
	for _, ok := range [][]string{nil, {"*"}, {"https://app.example.com:3000"}, {"http://*.example.com"}, {"app://*"},
		{"http://*:3000"}, {"http://localhost:5173/"}, {"http://[::1]:3000"}} {
		assert.NoError(t, CheckAllowedOrigins(ok), "%q", ok)
	}
	for _, bad := range []string{"", "app.example.com", "https://app.example.com/path", "https://a*b.example.com", "https://*.", "null",
		"https://user@app.example.com", "https://app.example.com?x=1", "*.example.com"} {
		err := CheckAllowedOrigins([]string{bad})
		assert.Error(t, err, "%q", bad)
		if err != nil {
			assert.Contains(t, err.Error(), "allowed_origins", bad)
		}
	}
	_, err := NewGuard(GuardConfig{AllowedHosts: []string{"x:1"}})
	assert.Error(t, err)
	assert.Equal(t, []string{"a", "b.example", "*"}, SplitList(" a, ,b.example,* ,"))
	assert.Nil(t, SplitList(""))
}
