package pool

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/hivewire"
	"rbee/internal/httpx"
	"rbee/internal/synth"
	"rbee/internal/testutil"
)

const testToken = "hive-test-token-0123456789"

// testHive is a hive run in-process by Run on a free port.
type testHive struct {
	*Hive
	url    string
	client *httpx.Client
	done   chan error
	cancel context.CancelFunc
	logs   *testutil.SyncBuffer
}

// startHive runs a hive with a fresh home, free ports and, unless mutate
// says otherwise, the test binary as its (fake) worker binary.
func startHive(t *testing.T, mutate func(*Config)) *testHive {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	logs := &testutil.SyncBuffer{}
	cfg := Config{
		Home: t.TempDir(), Host: "127.0.0.1", Port: testutil.FreePort(t), Token: testToken, Binary: self,
		WorkerPortStart: testutil.FreePort(t), Devices: []Device{}, StopGrace: time.Second, KillAfter: 2 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{Name: "hive", Level: hclog.Debug, Output: io.MultiWriter(testWriter{t}, logs)}),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	th := &testHive{Hive: h, url: h.URL(), client: &httpx.Client{BaseURL: h.URL(), Token: cfg.Token}, done: make(chan error, 1), cancel: cancel, logs: logs}
	go func() { th.done <- h.Run(ctx) }()
	t.Cleanup(func() { th.stop(t) })
	require.Eventually(t, func() bool {
		return (&httpx.Client{BaseURL: th.url}).Do(ctx, "GET", "/v1/health", nil, nil) == nil
	}, 10*time.Second, 10*time.Millisecond, "the hive did not come up")
	return th
}

// stop ends Run and returns its result (once; later calls return nil).
func (th *testHive) stop(t *testing.T) error {
	t.Helper()
	th.cancel()
	select {
	case err, ok := <-th.done:
		if ok {
			close(th.done)
		}
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("the hive did not stop within 60 s")
		return nil
	}
}

// testWriter sends the hive's log to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // a log line after the test ended
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// tinyModel writes a tiny synthetic model and, when b is not nil, the fake
// worker's behaviour file beside it.
func tinyModel(t *testing.T, quant string, b *fakeBehaviour) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tiny-"+quant+".gguf")
	require.NoError(t, synth.Write(path, synth.Tiny(quant)))
	if b != nil {
		raw, err := json.Marshal(b)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(path+".fake", raw, 0o600))
	}
	return path
}

// raw sends a request with a raw body and returns the status and the error
// envelope (nil for a 2xx answer) and the body.
func raw(t *testing.T, method, url, token, body string) (int, *api.Error, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode/100 == 2 {
		return resp.StatusCode, nil, b
	}
	var env api.Envelope
	require.NoError(t, json.Unmarshal(b, &env), "an error answer is an envelope: %s", b)
	require.NotNil(t, env.Error, "an error answer is an envelope: %s", b)
	return resp.StatusCode, env.Error, b
}

// spawn asks the hive for a worker of the model file.
func (th *testHive) spawn(t *testing.T, path string) (hivewire.Spawned, error) {
	t.Helper()
	var out hivewire.Spawned
	err := th.client.Do(t.Context(), "POST", "/v1/workers/spawn", api.SpawnRequest{ModelRef: "file:" + path, Backend: "cpu"}, &out)
	return out, err
}

// list returns the hive's worker list, as the queen reads it.
func (th *testHive) list(t *testing.T) []hivewire.Worker {
	t.Helper()
	var out hivewire.WorkerList
	require.NoError(t, th.client.Do(t.Context(), "GET", "/v1/workers/list", nil, &out))
	return out.Workers
}

// apiErr returns err as *api.Error, failing the test otherwise.
func apiErr(t *testing.T, err error) *api.Error {
	t.Helper()
	var e *api.Error
	require.True(t, errors.As(err, &e), "want an *api.Error, got %v", err)
	return e
}

// processGone reports whether no process has the pid (a zombie counts as gone).
func processGone(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses: "123 (rbee) Z …".
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}
