package worker

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
)

// TestWorkerRefusesRebindingHostAndForeignOrigin: the worker refuses a
// Host it does not answer to (health included) and a web page of another
// origin — no inference starts — and answers AllowedHosts and
// AllowedOrigins.
func TestWorkerRefusesRebindingHostAndForeignOrigin(t *testing.T) {
	tw := startWorker(t, Config{AllowedHosts: []string{"gpu.example.com"}, AllowedOrigins: []string{"http://localhost:3000"}})
	do := func(method, path, host, body string, header ...string) (*http.Response, *api.Error) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(t.Context(), method, tw.url+path, rd)
		require.NoError(t, err)
		if host != "" {
			req.Host = host
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		if resp.StatusCode/100 == 2 {
			return resp, nil
		}
		var env api.Envelope
		require.NoError(t, json.Unmarshal(data, &env), "%s", data)
		return resp, env.Error
	}

	for _, path := range []string{"/v1/health", "/v1/ready"} {
		resp, e := do("GET", path, "evil.example:8001", "")
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, path)
		if assert.NotNil(t, e, path) {
			assert.Equal(t, api.CodeForbidden, e.Code)
			assert.Contains(t, e.Hint(), "allowed_hosts")
		}
	}
	tw.srv.mu.Lock()
	before := tw.srv.lastActivity
	tw.srv.mu.Unlock()
	resp, e := do("POST", "/v1/inference", "", `{"prompt":"Once upon a time","max_tokens":2}`,
		"Content-Type", "text/plain", "Origin", "https://evil.example")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	if assert.NotNil(t, e) {
		assert.Contains(t, e.Hint(), "allowed_origins")
	}
	tw.srv.mu.Lock()
	after := tw.srv.lastActivity
	tw.srv.mu.Unlock()
	assert.Equal(t, before, after, "no inference started (it would have reset the activity clock)")

	for _, host := range []string{"", "localhost:8001", "gpu.example.com"} {
		resp, e := do("GET", "/v1/health", host, "")
		assert.Equal(t, http.StatusOK, resp.StatusCode, "Host %q: %v", host, e)
	}
	resp, e = do("GET", "/v1/health", "", "", "Origin", "http://localhost:3000")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "%v", e)
	assert.Equal(t, "http://localhost:3000", resp.Header.Get("Access-Control-Allow-Origin"))

	_, err := New(Config{ModelPath: writeModel(t, "Q8_0"), AllowedOrigins: []string{"localhost:3000"}})
	assert.ErrorIs(t, err, ErrConfig)
}
