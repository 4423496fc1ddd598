package httpx

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
)

// routesServer serves a few routes through a Router, behind the middleware
// and the bearer check as the daemons do.
func routesServer(t *testing.T, rt func(*http.ServeMux) http.Handler) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"route": r.Pattern})
	}
	mux.HandleFunc("GET /health", ok)
	mux.HandleFunc("POST /echo", ok)
	mux.HandleFunc("GET /thing", ok)
	mux.HandleFunc("POST /thing", ok)
	mux.HandleFunc("DELETE /items/{id}", ok)
	srv := httptest.NewServer(Middleware(nil, Auth("routes-token-0123456789", []string{"/health"}, rt(mux))))
	t.Cleanup(srv.Close)
	return srv
}

type routesAnswer struct {
	status int
	header http.Header
	body   []byte
}

func routesCall(t *testing.T, method, url, token string) routesAnswer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return routesAnswer{status: resp.StatusCode, header: resp.Header, body: body}
}

func TestRouterAnswersInTheEnvelope(t *testing.T) {
	const token = "routes-token-0123456789"
	srv := routesServer(t, func(mux *http.ServeMux) http.Handler {
		return Routes(mux, "the test daemon", "its endpoints are /health, /echo, /thing and /items/{id}")
	})
	for _, tc := range []struct {
		name, method, path string
		status             int
		code               api.Code
		allow              string
	}{
		{"unknown path", "GET", "/nope", 404, api.CodeNotFound, ""},
		{"unknown path, POST", "POST", "/v1/nope/deeper", 404, api.CodeNotFound, ""},
		{"prefix of a wildcard route", "DELETE", "/items/", 404, api.CodeNotFound, ""},
		{"POST on a GET route", "POST", "/health", 405, api.CodeMethodNotAllowed, "GET, HEAD"},
		{"GET on a POST route", "GET", "/echo", 405, api.CodeMethodNotAllowed, "POST"},
		{"PUT on a route with two methods", "PUT", "/thing", 405, api.CodeMethodNotAllowed, "GET, HEAD, POST"},
		{"GET on a wildcard route", "GET", "/items/42", 405, api.CodeMethodNotAllowed, "DELETE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := routesCall(t, tc.method, srv.URL+tc.path, token)
			assert.Equal(t, tc.status, a.status, "%s", a.body)
			assert.Equal(t, "application/json", a.header.Get("Content-Type"))
			assert.Equal(t, tc.allow, a.header.Get("Allow"))
			var env api.Envelope
			require.NoError(t, json.Unmarshal(a.body, &env), "%s", a.body)
			require.NotNil(t, env.Error, "%s", a.body)
			assert.Equal(t, tc.code, env.Error.Code)
			assert.Equal(t, a.header.Get(RequestIDHeader), env.Error.RequestID)
			assert.Equal(t, tc.method, env.Error.Details["method"])
			assert.Contains(t, env.Error.Message, tc.path)
			if tc.code == api.CodeNotFound {
				assert.Contains(t, env.Error.Message, "the test daemon")
				assert.Equal(t, "its endpoints are /health, /echo, /thing and /items/{id}", env.Error.Hint())
			} else {
				assert.Contains(t, env.Error.Message, tc.method+" is not allowed")
				assert.NotEmpty(t, env.Error.Details["allowed"])
			}
		})
	}

	// Matching routes are served as before, HEAD with GET's route.
	for _, tc := range []struct{ method, path, route string }{
		{"GET", "/health", "GET /health"}, {"POST", "/echo", "POST /echo"}, {"POST", "/thing", "POST /thing"},
		{"DELETE", "/items/42", "DELETE /items/{id}"},
	} {
		a := routesCall(t, tc.method, srv.URL+tc.path, token)
		require.Equal(t, http.StatusOK, a.status, "%s %s: %s", tc.method, tc.path, a.body)
		assert.JSONEq(t, `{"route":"`+tc.route+`"}`, string(a.body))
	}
	assert.Equal(t, http.StatusOK, routesCall(t, "HEAD", srv.URL+"/health", "").status)

	// An unclean path is still redirected by the mux.
	req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/x/../health", nil)
	require.NoError(t, err)
	req.URL.Opaque = "//" + req.URL.Host + "/x/../health" // keep the dots on the wire
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 3, resp.StatusCode/100, "a redirect: %d", resp.StatusCode)
	assert.Equal(t, "/health", resp.Header.Get("Location"))

	// The bearer check comes first: without the token an unknown path is 401.
	a := routesCall(t, "GET", srv.URL+"/nope", "")
	assert.Equal(t, http.StatusUnauthorized, a.status)

	// The client reads these answers back as typed errors.
	c := &Client{BaseURL: srv.URL, Token: token}
	err = c.Do(t.Context(), "GET", "/nope", nil, nil)
	assert.True(t, errors.Is(err, api.ErrNotFound), "%v", err)
	err = c.Do(t.Context(), "GET", "/echo", nil, nil)
	assert.True(t, errors.Is(err, api.ErrMethodNotAllowed), "%v", err)
}

// TestRouterOwnErrorShape: a server that speaks another API's error shape
// answers unknown routes in it, with the same codes, statuses and Allow.
func TestRouterOwnErrorShape(t *testing.T) {
	srv := routesServer(t, func(mux *http.ServeMux) http.Handler {
		return &Router{Mux: mux, Daemon: "the test daemon", WriteError: func(w http.ResponseWriter, r *http.Request, err error) {
			e := ToAPIError(err)
			WriteJSON(w, e.HTTPStatus(), map[string]string{"kind": string(e.Code), "text": e.Message})
		}}
	})
	a := routesCall(t, "GET", srv.URL+"/nope", "routes-token-0123456789")
	assert.Equal(t, http.StatusNotFound, a.status)
	assert.JSONEq(t, `{"kind":"NOT_FOUND","text":"the test daemon has no endpoint GET \"/nope\""}`, string(a.body))
	a = routesCall(t, "PATCH", srv.URL+"/echo", "routes-token-0123456789")
	assert.Equal(t, http.StatusMethodNotAllowed, a.status)
	assert.Equal(t, "POST", a.header.Get("Allow"))
	assert.JSONEq(t, `{"kind":"METHOD_NOT_ALLOWED","text":"PATCH is not allowed on \"/echo\" (use POST)"}`, string(a.body))
}
