package worker

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
)

// TestUnknownRoutes: the worker answers a path it does not serve with
// NOT_FOUND (404) and a method a path does not take with METHOD_NOT_ALLOWED
// (405) and an Allow header, in the error envelope rather than Go's plain
// text.
func TestUnknownRoutes(t *testing.T) {
	tw := startWorker(t, Config{})
	for _, tc := range []struct {
		method, path string
		code         api.Code
		allow        string
	}{
		{"GET", "/", api.CodeNotFound, ""},
		{"GET", "/v1/nope", api.CodeNotFound, ""},
		{"POST", "/v1/completions", api.CodeNotFound, ""},
		{"GET", "/v1/inference", api.CodeMethodNotAllowed, "POST"},
		{"POST", "/v1/inference/req-1", api.CodeMethodNotAllowed, "DELETE"},
		{"POST", "/v1/ready", api.CodeMethodNotAllowed, "GET, HEAD"},
		{"GET", "/v1/admin/shutdown", api.CodeMethodNotAllowed, "POST"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, tw.url+tc.path, nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tc.code.HTTPStatus(), resp.StatusCode, "%s", body)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			assert.Equal(t, tc.allow, resp.Header.Get("Allow"))
			var env api.Envelope
			require.NoError(t, json.Unmarshal(body, &env), "%s", body)
			require.NotNil(t, env.Error, "%s", body)
			assert.Equal(t, tc.code, env.Error.Code)
			assert.Equal(t, resp.Header.Get(httpx.RequestIDHeader), env.Error.RequestID)
			assert.Contains(t, env.Error.Message, tc.path)
		})
	}
	// The worker still serves.
	assert.Equal(t, "ok", tw.health(t).Status)
}
