package worker

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
)

// fakeHive plays the hive's POST /v1/workers/ready: it answers the first
// failures attempts with an error and records every call.
type fakeHive struct {
	mu       sync.Mutex
	failures int
	calls    []hiveCall
	got      chan hiveCall
}

type hiveCall struct {
	method, path, auth, contentType string
	body                            api.ReadyCallback
	err                             error
}

func newFakeHive(t *testing.T, failures int) (*fakeHive, *httptest.Server) {
	h := &fakeHive{failures: failures, got: make(chan hiveCall, 100)}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := hiveCall{method: r.Method, path: r.URL.Path, auth: r.Header.Get("Authorization"), contentType: r.Header.Get("Content-Type")}
		b, err := io.ReadAll(r.Body)
		if err == nil {
			err = json.Unmarshal(b, &c.body)
		}
		c.err = err
		h.mu.Lock()
		h.calls = append(h.calls, c)
		fail := len(h.calls) <= h.failures
		h.mu.Unlock()
		if fail {
			httpx.WriteError(w, r, api.Errorf(api.CodeWorkerNotFound, "unknown worker %s", c.body.WorkerID))
			return
		}
		h.got <- c
		httpx.WriteJSON(w, http.StatusOK, struct{}{})
	}))
	t.Cleanup(ts.Close)
	return h, ts
}

func (h *fakeHive) attempts() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.calls)
}

// Scenario S28 of DESIGN §12.
func TestS28ReadyCallback(t *testing.T) {
	hive, ts := newFakeHive(t, 0)
	const token = "worker-own-token-0123456789"
	tw := startWorker(t, Config{CallbackURL: ts.URL + "/v1/workers/ready", WorkerID: "w-0123456789ab",
		ModelRef: "hf:org/repo:Q8_0", APIKey: token, Device: 0})
	var c hiveCall
	select {
	case c = <-hive.got:
	case <-time.After(10 * time.Second):
		t.Fatal("no ready callback")
	}
	require.NoError(t, c.err)
	assert.Equal(t, http.MethodPost, c.method)
	assert.Equal(t, "/v1/workers/ready", c.path)
	assert.Equal(t, "Bearer "+token, c.auth, "the worker authenticates with its own token")
	assert.Equal(t, "application/json", c.contentType)
	assert.Equal(t, api.ReadyCallback{WorkerID: "w-0123456789ab", URL: tw.url, ModelRef: "hf:org/repo:Q8_0",
		Backend: api.BackendCPU, Device: 0}, c.body)
	// The callback comes once the model is loaded.
	assert.True(t, tw.ready(t).Ready)
	assert.Equal(t, 1, hive.attempts())
}

func TestReadyCallbackRetries(t *testing.T) {
	// The hive may not know the worker yet: its first answers are 404.
	hive, ts := newFakeHive(t, 2)
	startWorker(t, Config{CallbackURL: ts.URL + "/v1/workers/ready"})
	select {
	case c := <-hive.got:
		assert.Equal(t, "w-test", c.body.WorkerID)
	case <-time.After(10 * time.Second):
		t.Fatal("no successful ready callback")
	}
	assert.Equal(t, 3, hive.attempts())
}

func TestReadyCallbackGivesUp(t *testing.T) {
	hive, ts := newFakeHive(t, 1<<30)
	tw := startWorker(t, Config{CallbackURL: ts.URL + "/v1/workers/ready", ReadyTimeout: 300 * time.Millisecond})
	err := tw.wait(t)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ready callback")
	assert.ErrorIs(t, err, api.ErrWorkerNotFound)
	assert.Greater(t, hive.attempts(), 1, "retried before giving up")
}

func TestReadyCallbackUnreachable(t *testing.T) {
	// Nothing listens at the callback address.
	tw := startWorker(t, Config{CallbackURL: "http://127.0.0.1:1/v1/workers/ready", ReadyTimeout: 200 * time.Millisecond})
	err := tw.wait(t)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "127.0.0.1:1")
}
