package rbee_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee"
	"rbee/orchestrator"
)

// assertShuttingDown checks a handler's answer: 503 and the SHUTTING_DOWN
// envelope.
func assertShuttingDown(t *testing.T, h http.Handler, path string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	var env struct{ Error *rbee.Error }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &env), rec.Body.String())
	require.NotNil(t, env.Error, rec.Body.String())
	assert.ErrorIs(t, env.Error, rbee.ErrShuttingDown)
	assert.Equal(t, "the embedded orchestrator is closed", env.Error.Message)
}

// TestOrchestratorAfterClose: Client and Handler after Close answer
// SHUTTING_DOWN instead of dereferencing a queen that is gone — whether the
// queen was used before Close or never made.
func TestOrchestratorAfterClose(t *testing.T) {
	t.Run("used, then closed", func(t *testing.T) {
		o := &rbee.Orchestrator{Config: orchestrator.Config{Home: t.TempDir()}}
		c := o.Client()
		_, err := c.Nodes(t.Context())
		require.NoError(t, err)
		require.NoError(t, o.Close())

		_, err = c.Nodes(t.Context())
		assert.ErrorIs(t, err, rbee.ErrShuttingDown, "a client made before Close")
		_, err = o.Client().Health(t.Context())
		assert.ErrorIs(t, err, rbee.ErrShuttingDown, "the client asked for after Close")
		assertShuttingDown(t, o.Handler(), "/health")
		assertShuttingDown(t, o.Handler(), "/v2/registry/beehives/list")
	})
	t.Run("closed before any use", func(t *testing.T) {
		o := &rbee.Orchestrator{Config: orchestrator.Config{Home: t.TempDir()}}
		require.NoError(t, o.Close())
		_, err := o.Client().Nodes(t.Context())
		assert.ErrorIs(t, err, rbee.ErrShuttingDown)
		assertShuttingDown(t, o.Handler(), "/v2/registry/beehives/list")
	})
}

// TestOrchestratorCallsDuringClose calls the in-process client and the
// handler from several goroutines while Close runs (run it with -race):
// every call either succeeds or fails with SHUTTING_DOWN, nothing panics.
func TestOrchestratorCallsDuringClose(t *testing.T) {
	o := &rbee.Orchestrator{Config: orchestrator.Config{Home: t.TempDir()}}
	_, err := o.Client().Health(t.Context())
	require.NoError(t, err)
	h := o.Handler()

	start := make(chan struct{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var unexpected []string
	note := func(s string) {
		mu.Lock()
		unexpected = append(unexpected, s)
		mu.Unlock()
	}
	for range 4 {
		wg.Go(func() {
			<-start
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := o.Client().Nodes(t.Context()); err != nil && !errors.Is(err, rbee.ErrShuttingDown) {
					note("Nodes: " + err.Error())
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/health", nil))
				if rec.Code != http.StatusOK && rec.Code != http.StatusServiceUnavailable {
					note("GET /health: " + rec.Body.String())
				}
			}
		})
	}
	close(start)
	require.NoError(t, o.Close())
	close(stop)
	wg.Wait()
	assert.Empty(t, unexpected)
	_, err = o.Client().Nodes(t.Context())
	assert.ErrorIs(t, err, rbee.ErrShuttingDown)
}
