package rbee_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee"
	"rbee/orchestrator"
)

// TestOrchestratorRefusesWebPages: the embedded queen applies the Host and
// Origin checks of its AllowedHosts and AllowedOrigins, while its
// in-process client and ordinary clients keep working.
func TestOrchestratorRefusesWebPages(t *testing.T) {
	o := &rbee.Orchestrator{Config: orchestrator.Config{Addr: "127.0.0.1:0", Home: t.TempDir(), AllowedOrigins: []string{"http://localhost:3000"}}}
	require.NoError(t, o.Up(t.Context()))
	defer o.Close()

	get := func(host, origin string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, o.URL()+"/v2/workers/list", nil)
		require.NoError(t, err)
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	assert.Equal(t, http.StatusForbidden, get("evil.example:8080", "").StatusCode, "a rebinding Host")
	assert.Equal(t, http.StatusForbidden, get("", "https://evil.example").StatusCode, "another web origin")
	resp := get("", "http://localhost:3000")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "an allowed origin")
	assert.Equal(t, "http://localhost:3000", resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Equal(t, http.StatusOK, get("", "").StatusCode)

	_, err := o.Client().Workers(t.Context())
	assert.NoError(t, err, "the in-process client passes the Host check")
	_, err = (&rbee.Client{BaseURL: o.URL()}).Workers(t.Context())
	assert.NoError(t, err)

	bad := &rbee.Orchestrator{Config: orchestrator.Config{Addr: "127.0.0.1:0", Home: t.TempDir(), AllowedHosts: []string{"gpu-box:9200"}}}
	defer bad.Close()
	err = bad.Start(t.Context())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "allowed_hosts")
}
