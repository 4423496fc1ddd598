package pool

import (
	"sort"
	"sync"

	"rbee/api"
)

// registry is the hive's in-memory worker registry (lost when the
// hive restarts). It also reserves the worker ports, so that two spawns never
// pick the same one.
type registry struct {
	mu      sync.Mutex
	workers map[string]*Worker
	ports   map[int]*Worker // reserved ports and who holds them
	closed  bool
}

func newRegistry() *registry {
	return &registry{workers: map[string]*Worker{}, ports: map[int]*Worker{}}
}

// errRegistryClosed is returned by add once the hive is shutting down.
var errRegistryClosed = api.Errorf(api.CodeShuttingDown, "the hive is shutting down")

// add registers w; it fails once the registry is closed, or if the id is taken.
func (r *registry) add(w *Worker) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errRegistryClosed
	}
	if _, ok := r.workers[w.ID]; ok {
		return api.Errorf(api.CodeInternal, "worker id %s is already registered", w.ID)
	}
	r.workers[w.ID] = w
	return nil
}

// get returns the worker with the id.
func (r *registry) get(id string) (*Worker, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[id]
	return w, ok
}

// remove unregisters w (only that handle: a newer one with the same id stays)
// and releases its port. It reports whether w was registered.
func (r *registry) remove(w *Worker) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ports[w.Port] == w {
		delete(r.ports, w.Port)
	}
	if r.workers[w.ID] != w {
		return false
	}
	delete(r.workers, w.ID)
	return true
}

// list returns the registered workers, oldest first.
func (r *registry) list() []*Worker {
	r.mu.Lock()
	out := make([]*Worker, 0, len(r.workers))
	for _, w := range r.workers {
		out = append(out, w)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// close refuses further workers, empties the registry and returns what it held.
func (r *registry) close() []*Worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	out := make([]*Worker, 0, len(r.workers))
	for _, w := range r.workers {
		out = append(out, w)
	}
	clear(r.workers)
	return out
}

// reservePort reserves the first port from start that no worker holds, is
// not in skip and free reports free, for w. It returns 0 when none is left.
func (r *registry) reservePort(w *Worker, start int, skip map[int]bool, free func(port int) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := start; p <= 65535; p++ {
		if r.ports[p] != nil || skip[p] || !free(p) {
			continue
		}
		r.ports[p] = w
		return p
	}
	return 0
}

// releasePort gives back a port w reserved but did not use.
func (r *registry) releasePort(w *Worker, port int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ports[port] == w {
		delete(r.ports, port)
	}
}
