package worker

import (
	"net/http"
	"sync"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
	"rbee/worker/engine"
)

// loadStatus is how far the model load got.
type loadStatus struct {
	progress engine.LoadProgress
	ready    bool       // loaded and serving
	err      *api.Error // the load failed or the worker stopped before it ended
}

// ended reports whether the load is over, one way or the other.
func (s loadStatus) ended() bool { return s.ready || s.err != nil }

// loadBroadcast holds the load status and wakes every subscriber when it
// changes: each change closes the current channel and makes a new one, so a
// subscriber waits on the channel it read with the status it last saw. A slow
// subscriber misses intermediate steps but never the latest status.
type loadBroadcast struct {
	mu      sync.Mutex
	status  loadStatus
	changed chan struct{}
}

func newLoadBroadcast() *loadBroadcast {
	return &loadBroadcast{changed: make(chan struct{})}
}

// update changes the status unless the load has already ended.
func (b *loadBroadcast) update(f func(*loadStatus)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.status.ended() {
		return
	}
	f(&b.status)
	close(b.changed)
	b.changed = make(chan struct{})
}

// get returns the status and a channel closed at its next change.
func (b *loadBroadcast) get() (loadStatus, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.status, b.changed
}

// vramMB is the model memory brought in so far, in MiB rounded up (the
// device is the CPU's RAM in this build).
func vramMB(p engine.LoadProgress) int64 {
	return (p.BytesLoaded + 1<<20 - 1) >> 20
}

// handleProgress streams the load: the current progress first, then every
// change, then {"stage":"ready"} and [DONE]; a failed load ends with an error
// event. A worker already loaded answers ready and [DONE] at once.
func (s *Server) handleProgress(w http.ResponseWriter, r *http.Request) {
	sw := sse.NewWriter(w)
	var last engine.LoadProgress
	sent := false
	for {
		st, changed := s.load.get()
		if st.err != nil {
			_ = sw.Error(withRequestID(st.err, r))
			return
		}
		if st.progress.LayersTotal > 0 && (!sent && !st.ready || sent && st.progress != last) {
			p := st.progress
			ev := api.Event{Kind: api.KindProgress, Progress: &api.Progress{Stage: api.StageLoading,
				LayersLoaded: p.LayersLoaded, LayersTotal: p.LayersTotal, VramMB: vramMB(p), WorkerID: s.cfg.WorkerID}}
			if sw.Send(ev) != nil {
				return
			}
			last, sent = p, true
		}
		if st.ready {
			if sw.Send(api.Event{Kind: api.KindProgress, Progress: &api.Progress{Stage: api.StageReady, WorkerID: s.cfg.WorkerID}}) == nil {
				_ = sw.Close()
			}
			return
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		}
	}
}

func withRequestID(e *api.Error, r *http.Request) *api.Error {
	c := *e
	if id := httpx.RequestID(r); id != "" {
		c.RequestID = id
	}
	return &c
}
