package pool

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/hivewire"
	"rbee/internal/httpx"
)

// request does one request with the given Host (when not empty) and
// headers, and returns the status, the error envelope (nil for 2xx) and
// the response headers.
func request(t *testing.T, method, url, host, body string, header ...string) (int, *api.Error, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	require.NoError(t, err)
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode/100 == 2 {
		return resp.StatusCode, nil, resp.Header
	}
	var env api.Envelope
	require.NoError(t, json.Unmarshal(data, &env), "an error answer is an envelope: %s", data)
	require.NotNil(t, env.Error, "%s", data)
	return resp.StatusCode, env.Error, resp.Header
}

// TestHiveRefusesRebindingHostAndForeignOrigin: the hive refuses a Host
// it does not answer to (health included) and a web page of another
// origin, before anything else — no spawn happens — and answers its own
// names, its advertised name, AllowedHosts and AllowedOrigins.
func TestHiveRefusesRebindingHostAndForeignOrigin(t *testing.T) {
	th := startHive(t, func(c *Config) {
		c.AdvertiseHost = "node-a.example"
		c.AllowedHosts = []string{"gpu.example.com"}
		c.AllowedOrigins = []string{"http://localhost:3000"}
	})
	auth := []string{"Authorization", "Bearer " + testToken}

	for _, path := range []string{"/v1/health", "/v1/workers/list", "/v1/models", "/v1/logs"} {
		status, e, _ := request(t, "GET", th.url+path, "evil.example:9200", "", auth...)
		assert.Equal(t, http.StatusForbidden, status, path)
		require.NotNil(t, e, path)
		assert.Equal(t, api.CodeForbidden, e.Code, path)
		assert.Contains(t, e.Hint(), "allowed_hosts", path)
	}
	path := tinyModel(t, "Q8_0", nil)
	spawn := fmt.Sprintf(`{"model_ref":"file:%s","backend":"cpu"}`, path)
	status, e, _ := request(t, "POST", th.url+"/v1/workers/spawn", "", spawn,
		append([]string{"Content-Type", "text/plain", "Origin", "https://evil.example"}, auth...)...)
	assert.Equal(t, http.StatusForbidden, status)
	require.NotNil(t, e)
	assert.Equal(t, api.CodeForbidden, e.Code)
	assert.Contains(t, e.Hint(), "allowed_origins")
	assert.Empty(t, th.Workers(), "nothing spawned")

	for _, host := range []string{"", "localhost", "gpu.example.com:9200", "node-a.example:9200"} {
		status, e, _ := request(t, "GET", th.url+"/v1/workers/list", host, "", auth...)
		assert.Equal(t, http.StatusOK, status, "Host %q: %v", host, e)
	}
	status, e, header := request(t, "GET", th.url+"/v1/workers/list", "", "", append([]string{"Origin", "http://localhost:3000"}, auth...)...)
	assert.Equal(t, http.StatusOK, status, "%v", e)
	assert.Equal(t, "http://localhost:3000", header.Get("Access-Control-Allow-Origin"))
}

// TestSpawnPassesAllowedListsToWorker: a worker gets its hive's allowed
// hosts, plus the host in its URL, and allowed origins in its environment
// (never on its command line).
func TestSpawnPassesAllowedListsToWorker(t *testing.T) {
	th := startHive(t, func(c *Config) {
		c.AdvertiseHost = "localhost"
		c.AllowedHosts = []string{"gpu.example.com", "*.lan"}
		c.AllowedOrigins = []string{"http://localhost:3000"}
	})
	resp, err := th.spawn(t, tinyModel(t, "Q8_0", &fakeBehaviour{}))
	require.NoError(t, err)
	w, ok := th.Worker(resp.WorkerID)
	require.True(t, ok)
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", w.Pid()))
	if os.IsNotExist(err) {
		t.Skip("no /proc on this system")
	}
	require.NoError(t, err)
	vars := strings.Split(string(env), "\x00")
	assert.Contains(t, vars, httpx.AllowedHostsEnv+"=gpu.example.com,*.lan,localhost")
	assert.Contains(t, vars, httpx.AllowedOriginsEnv+"=http://localhost:3000")
	assert.NotContains(t, strings.Join(cmdline(t, w.Pid()), " "), "gpu.example.com")
}

// TestHiveProcessAllowedListsReachWorkers: `rbee hive --allowed-hosts …
// --allowed-origins …` answers those, and so does the real worker it
// spawns; both refuse other names and origins.
func TestHiveProcessAllowedListsReachWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs rbee hive and rbee worker processes")
	}
	hp := startHiveProcess(t, "--allowed-hosts", "gpu.example.com", "--allowed-origins", "http://localhost:3000")
	var spawned hivewire.Spawned
	require.NoError(t, hp.client.Do(t.Context(), "POST", "/v1/workers/spawn",
		api.SpawnRequest{ModelRef: "file:" + tinyModel(t, "Q8_0", nil), Backend: "cpu"}, &spawned))
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	require.NoError(t, (&httpx.Client{BaseURL: spawned.URL}).Do(ctx, "GET", "/v1/health", nil, nil), "the worker answers")

	for name, base := range map[string]struct{ url, token string }{
		"hive":   {hp.url, testToken},
		"worker": {spawned.URL, spawned.APIKey},
	} {
		t.Run(name, func(t *testing.T) {
			auth := []string{"Authorization", "Bearer " + base.token}
			path := "/v1/workers/list"
			if name == "worker" {
				path = "/v1/ready"
			}
			status, e, _ := request(t, "GET", base.url+path, "gpu.example.com", "", auth...)
			assert.Equal(t, http.StatusOK, status, "%v", e)
			status, e, _ = request(t, "GET", base.url+path, "evil.example", "", auth...)
			assert.Equal(t, http.StatusForbidden, status)
			if assert.NotNil(t, e) {
				assert.Equal(t, api.CodeForbidden, e.Code)
			}
			status, e, header := request(t, "GET", base.url+path, "", "", append([]string{"Origin", "http://localhost:3000"}, auth...)...)
			assert.Equal(t, http.StatusOK, status, "%v", e)
			assert.Equal(t, "http://localhost:3000", header.Get("Access-Control-Allow-Origin"))
			status, _, _ = request(t, "POST", base.url+"/v1/admin/shutdown", "", "{}", append([]string{"Origin", "https://evil.example", "Content-Type", "text/plain"}, auth...)...)
			assert.Equal(t, http.StatusForbidden, status, "a web page cannot shut it down")
		})
	}
}
