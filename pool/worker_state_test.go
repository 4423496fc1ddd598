package pool

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
)

// TestWorkerStateMoves is the table of the moves a worker's state may make:
// forward only (loading → idle/busy → stopping → failed), idle ⇄ busy.
func TestWorkerStateMoves(t *testing.T) {
	states := []api.WorkerState{api.StateLoading, api.StateIdle, api.StateBusy, api.StateStopping, api.StateFailed}
	allowed := map[[2]api.WorkerState]bool{
		{api.StateLoading, api.StateIdle}:     true,
		{api.StateLoading, api.StateBusy}:     true,
		{api.StateLoading, api.StateStopping}: true,
		{api.StateLoading, api.StateFailed}:   true,
		{api.StateIdle, api.StateBusy}:        true,
		{api.StateIdle, api.StateStopping}:    true,
		{api.StateIdle, api.StateFailed}:      true,
		{api.StateBusy, api.StateIdle}:        true,
		{api.StateBusy, api.StateStopping}:    true,
		{api.StateBusy, api.StateFailed}:      true,
		{api.StateStopping, api.StateFailed}:  true,
	}
	for _, from := range states {
		for _, to := range states {
			t.Run(string(from)+"→"+string(to), func(t *testing.T) {
				assert.Equal(t, allowed[[2]api.WorkerState{from, to}], canMove(from, to))
				w := &Worker{state: from}
				w.mu.Lock()
				moved := w.moveLocked(to)
				w.mu.Unlock()
				assert.Equal(t, allowed[[2]api.WorkerState{from, to}], moved)
				if moved {
					assert.Equal(t, to, w.State())
				} else {
					assert.Equal(t, from, w.State(), "a refused move leaves the state alone")
				}
			})
		}
	}
	t.Run("unknown states", func(t *testing.T) {
		assert.False(t, canMove(api.StateIdle, "sleeping"), "an unknown state is never taken")
		assert.False(t, canMove(api.StateLoading, ""))
		assert.True(t, canMove("", api.StateLoading), "a worker with no state yet takes any")
	})
}

// TestS23LateLoadingHealthAfterReady reproduces the race behind the rare
// TestS23RAMCheckPasses failure: a health check sent while the worker was
// loading is answered "loading", the ready callback arrives, and only then
// is the answer applied. The worker must stay idle (and ready).
func TestS23LateLoadingHealthAfterReady(t *testing.T) {
	const id = "w-late"
	answered := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(rw, http.StatusOK, api.WorkerHealth{Status: "ok", Version: api.Version, WorkerID: id,
			State: api.StateLoading, SlotsTotal: 1})
		answered <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	w := &Worker{ID: id, URL: srv.URL, state: api.StateLoading, ready: make(chan struct{}),
		client: &httpx.Client{BaseURL: srv.URL, HTTP: srv.Client()}}

	w.markReady() // the ready callback
	require.Equal(t, api.StateIdle, w.State())
	h, err := w.Ping(t.Context()) // the answer "loading" is applied after it
	require.NoError(t, err)
	<-answered
	assert.Equal(t, api.StateLoading, h.State, "the worker did answer loading")
	assert.Equal(t, api.StateIdle, w.State(), "a late loading answer does not undo the ready callback")
	select {
	case <-w.ready:
	default:
		t.Fatal("the worker is no longer ready")
	}

	// A late idle answer after the hive began stopping it does not bring it back.
	w.markStopping()
	w.apply(api.WorkerHealth{State: api.StateIdle, SlotsTotal: 1})
	assert.Equal(t, api.StateStopping, w.State())
	// And the ready callback of a busy worker does not make it idle.
	b := &Worker{state: api.StateLoading, ready: make(chan struct{})}
	b.apply(api.WorkerHealth{State: api.StateBusy, SlotsTotal: 1, SlotsBusy: 1})
	b.markReady()
	assert.Equal(t, api.StateBusy, b.State())
}
