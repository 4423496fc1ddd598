package pool

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
)

// handlerHive is a hive served by httptest, without Run (no monitor).
func handlerHive(t *testing.T, mutate func(*Config)) (*Hive, *httptest.Server) {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	cfg := Config{Home: t.TempDir(), Token: testToken, Binary: self, Devices: []Device{}, Port: 1}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(func() {
		srv.Close()
		assert.NoError(t, h.Close())
	})
	return h, srv
}

// Scenario S09 of DESIGN §12.
func TestS09EmptyWorkerList(t *testing.T) {
	_, srv := handlerHive(t, nil)
	status, e, body := raw(t, "GET", srv.URL+"/v1/workers/list", testToken, "")
	require.Nil(t, e)
	assert.Equal(t, 200, status)
	assert.JSONEq(t, `{"workers":[]}`, string(body))
	assert.Equal(t, `{"workers":[]}`, strings.TrimSpace(string(body)), "an empty list, never null")
}

// Scenario S12 of DESIGN §12.
func TestS12HiveHealth(t *testing.T) {
	_, srv := handlerHive(t, nil)
	status, e, body := raw(t, "GET", srv.URL+"/v1/health", "", "") // public: no token
	require.Nil(t, e)
	assert.Equal(t, 200, status)
	var h api.HiveHealth
	require.NoError(t, json.Unmarshal(body, &h))
	assert.Equal(t, api.HiveHealth{Status: "alive", Version: api.Version, APIVersion: "v1"}, h)
	assert.JSONEq(t, fmt.Sprintf(`{"status":"alive","version":%q,"api_version":"v1"}`, api.Version), string(body))
}

// GET /v1/info describes the node for the queen's console: version,
// available memory, CPUs and devices.
func TestHiveInfo(t *testing.T) {
	_, srv := handlerHive(t, func(c *Config) {
		c.FakeMemoryMB = 3000
		c.Devices = []Device{{api.BackendCUDA, 0, 8192}, {api.BackendCUDA, 1, 4096}}
	})
	status, e, body := raw(t, "GET", srv.URL+"/v1/info", testToken, "")
	require.Nil(t, e)
	assert.Equal(t, 200, status)
	var info api.HiveInfo
	require.NoError(t, json.Unmarshal(body, &info))
	assert.Equal(t, api.HiveInfo{Version: api.Version, RAMAvailableMB: 3000, CPUs: runtime.NumCPU(),
		Devices: []api.DeviceInfo{{Backend: api.BackendCUDA, Index: 0, VRAMMB: 8192}, {Backend: api.BackendCUDA, Index: 1, VRAMMB: 4096}}}, info)

	_, srv = handlerHive(t, nil)
	_, e, body = raw(t, "GET", srv.URL+"/v1/info", testToken, "")
	require.Nil(t, e)
	assert.Contains(t, string(body), `"devices":[]`, "a CPU-only node lists no devices, never null")
}

func TestAuthOnEveryEndpoint(t *testing.T) {
	_, srv := handlerHive(t, nil)
	endpoints := []struct{ method, path, body string }{
		{"POST", "/v1/workers/spawn", `{"model_ref":"file:/x.gguf","backend":"cpu"}`},
		{"GET", "/v1/workers/list", ""},
		{"POST", "/v1/workers/shutdown", `{"worker_id":"w-1"}`},
		{"GET", "/v1/models", ""},
		{"GET", "/v1/info", ""},
		{"POST", "/v1/admin/shutdown", ""},
		{"POST", "/v1/workers/ready", `{"worker_id":"w-1","url":"http://x","model_ref":"file:/x.gguf"}`},
		{"GET", "/v1/nope", ""},
	}
	for _, ep := range endpoints {
		t.Run(ep.method+" "+ep.path, func(t *testing.T) {
			status, e, _ := raw(t, ep.method, srv.URL+ep.path, "", ep.body)
			require.NotNil(t, e)
			assert.Equal(t, 401, status)
			assert.Equal(t, api.CodeMissingAPIKey, e.Code)
			status, e, _ = raw(t, ep.method, srv.URL+ep.path, "not-the-right-token-at-all", ep.body)
			require.NotNil(t, e)
			assert.Equal(t, 401, status)
			assert.Equal(t, api.CodeInvalidAPIKey, e.Code)
			assert.NotContains(t, e.Message, "not-the-right-token")
		})
	}
	req, _ := http.NewRequest("GET", srv.URL+"/v1/workers/list", nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
}

func TestBadInput(t *testing.T) {
	h, srv := handlerHive(t, nil)
	notGGUF := filepath.Join(t.TempDir(), "notes.gguf")
	require.NoError(t, os.WriteFile(notGGUF, []byte("just some text, not a model"), 0o600))
	dir := t.TempDir()
	big := `{"model_ref":"` + strings.Repeat("a", 1<<20) + `"}`
	cases := []struct {
		name, path, body string
		code             api.Code
		field            string
	}{
		// spawn
		{"spawn empty body", "/v1/workers/spawn", ``, api.CodeInvalidRequest, ""},
		{"spawn not json", "/v1/workers/spawn", `{"model_ref":`, api.CodeInvalidRequest, ""},
		{"spawn trailing data", "/v1/workers/spawn", `{"model_ref":"file:/a.gguf"} {}`, api.CodeInvalidRequest, ""},
		{"spawn unknown field", "/v1/workers/spawn", `{"model_ref":"file:/a.gguf","gpu":true}`, api.CodeInvalidRequest, "gpu"},
		{"spawn model_ref missing", "/v1/workers/spawn", `{"backend":"cpu"}`, api.CodeInvalidRequest, "model_ref"},
		{"spawn model_ref wrong type", "/v1/workers/spawn", `{"model_ref":5}`, api.CodeInvalidRequest, "model_ref"},
		{"spawn model_ref bad characters", "/v1/workers/spawn", `{"model_ref":"file:/a b.gguf"}`, api.CodeInvalidRequest, "model_ref"},
		{"spawn model_ref dot dot", "/v1/workers/spawn", `{"model_ref":"file:/m/../etc/passwd"}`, api.CodeInvalidRequest, "model_ref"},
		{"spawn model_ref relative", "/v1/workers/spawn", `{"model_ref":"file:models/a.gguf"}`, api.CodeInvalidRequest, "model_ref"},
		{"spawn model_ref unknown provider", "/v1/workers/spawn", `{"model_ref":"s3:bucket/a.gguf"}`, api.CodeInvalidRequest, "model_ref"},
		{"spawn model_ref too long", "/v1/workers/spawn", `{"model_ref":"file:/` + strings.Repeat("a", 600) + `"}`, api.CodeInvalidRequest, "model_ref"},
		{"spawn model_ref not gguf", "/v1/workers/spawn", `{"model_ref":"file:` + notGGUF + `"}`, api.CodeInvalidRequest, "model_ref"},
		{"spawn model_ref a directory", "/v1/workers/spawn", `{"model_ref":"file:` + dir + `"}`, api.CodeInvalidRequest, "model_ref"},
		{"spawn model file missing", "/v1/workers/spawn", `{"model_ref":"file:/no/such/model.gguf"}`, api.CodeModelNotFound, ""},
		{"spawn hf not in catalog", "/v1/workers/spawn", `{"model_ref":"hf:org/repo:Q8_0"}`, api.CodeModelNotFound, ""},
		{"spawn backend unknown", "/v1/workers/spawn", `{"model_ref":"file:/a.gguf","backend":"rocm"}`, api.CodeInvalidRequest, "backend"},
		{"spawn backend wrong type", "/v1/workers/spawn", `{"model_ref":"file:/a.gguf","backend":1}`, api.CodeInvalidRequest, "backend"},
		{"spawn device negative", "/v1/workers/spawn", `{"model_ref":"file:/a.gguf","device":-1}`, api.CodeInvalidRequest, "device"},
		{"spawn device too large", "/v1/workers/spawn", `{"model_ref":"file:/a.gguf","device":256}`, api.CodeInvalidRequest, "device"},
		{"spawn device not a number", "/v1/workers/spawn", `{"model_ref":"file:/a.gguf","device":"0"}`, api.CodeInvalidRequest, "device"},
		{"spawn too large", "/v1/workers/spawn", big, api.CodePayloadTooLarge, ""},
		// shutdown
		{"shutdown empty body", "/v1/workers/shutdown", ``, api.CodeInvalidRequest, ""},
		{"shutdown worker_id missing", "/v1/workers/shutdown", `{}`, api.CodeInvalidRequest, "worker_id"},
		{"shutdown worker_id bad characters", "/v1/workers/shutdown", `{"worker_id":"w 1;rm"}`, api.CodeInvalidRequest, "worker_id"},
		{"shutdown worker_id too long", "/v1/workers/shutdown", `{"worker_id":"` + strings.Repeat("w", 65) + `"}`, api.CodeInvalidRequest, "worker_id"},
		{"shutdown worker_id wrong type", "/v1/workers/shutdown", `{"worker_id":7}`, api.CodeInvalidRequest, "worker_id"},
		{"shutdown unknown field", "/v1/workers/shutdown", `{"worker_id":"w-1","force":true}`, api.CodeInvalidRequest, "force"},
		{"shutdown unknown worker", "/v1/workers/shutdown", `{"worker_id":"w-000000000000"}`, api.CodeWorkerNotFound, ""},
		{"shutdown too large", "/v1/workers/shutdown", big, api.CodePayloadTooLarge, ""},
		// ready (with the hive's token)
		{"ready empty body", "/v1/workers/ready", ``, api.CodeInvalidRequest, ""},
		{"ready worker_id missing", "/v1/workers/ready", `{"url":"http://127.0.0.1:1","model_ref":"file:/a.gguf"}`, api.CodeInvalidRequest, "worker_id"},
		{"ready worker_id bad", "/v1/workers/ready", `{"worker_id":"../w"}`, api.CodeInvalidRequest, "worker_id"},
		{"ready device wrong type", "/v1/workers/ready", `{"worker_id":"w-1","device":"x"}`, api.CodeInvalidRequest, "device"},
		{"ready unknown field", "/v1/workers/ready", `{"worker_id":"w-1","extra":1}`, api.CodeInvalidRequest, "extra"},
		{"ready unknown worker", "/v1/workers/ready", `{"worker_id":"w-000000000000","url":"http://127.0.0.1:1","model_ref":"file:/a.gguf"}`, api.CodeWorkerNotFound, ""},
		{"ready too large", "/v1/workers/ready", big, api.CodePayloadTooLarge, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, e, body := raw(t, "POST", srv.URL+tc.path, testToken, tc.body)
			require.NotNil(t, e, "want an error, got %d %s", status, body)
			assert.Equal(t, tc.code, e.Code, e.Message)
			assert.Equal(t, tc.code.HTTPStatus(), status)
			assert.NotEmpty(t, e.Message)
			assert.NotEmpty(t, e.RequestID)
			if tc.field != "" {
				assert.Equal(t, tc.field, e.Details["field"], e.Message)
			}
			if tc.code == api.CodeInvalidRequest && strings.Contains(tc.body, "etc/passwd") {
				assert.NotContains(t, e.Message, "passwd", "the value is not echoed")
			}
		})
	}
	t.Run("hf hint", func(t *testing.T) {
		_, e, _ := raw(t, "POST", srv.URL+"/v1/workers/spawn", testToken, `{"model_ref":"hf:org/repo"}`)
		require.NotNil(t, e)
		assert.Contains(t, e.Hint(), "POST /v1/models/download", "the hint says how to get the model")
	})
	t.Run("unknown endpoint", func(t *testing.T) {
		status, e, _ := raw(t, "GET", srv.URL+"/v1/nope", testToken, "")
		require.NotNil(t, e)
		assert.Equal(t, 404, status)
		assert.Equal(t, api.CodeNotFound, e.Code)
		assert.Contains(t, e.Hint(), "workers/spawn", "the hint lists the endpoints")
		status, e, _ = raw(t, "GET", srv.URL+"/v1/workers/spawn", testToken, "")
		require.NotNil(t, e)
		assert.Equal(t, 405, status)
		assert.Equal(t, api.CodeMethodNotAllowed, e.Code)
		assert.Equal(t, []any{"POST"}, e.Details["allowed"])
	})
	// Nothing of the above touched the registry or the catalog.
	assert.Empty(t, h.Workers())
	ms, err := h.Catalog().List(t.Context())
	require.NoError(t, err)
	assert.Empty(t, ms)
}
