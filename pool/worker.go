package pool

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/proc"
)

// Worker is the hive's handle on one worker process, in the style of
// ollama's llm server handle: WaitUntilReady, Ping, Close, Pid, Exited. Its
// identity fields never change; the rest (state, slots, last activity) is
// refreshed from the worker's health and callbacks.
type Worker struct {
	ID        string
	URL       string // http://host:port
	ModelRef  string
	ModelPath string
	Backend   api.Backend
	Device    int
	Port      int
	LogPath   string
	Started   time.Time

	token  string
	proc   *proc.Process
	client *httpx.Client
	log    hclog.Logger

	stopGrace, killAfter time.Duration

	readyOnce sync.Once
	ready     chan struct{} // closed by the ready callback

	answered atomic.Bool // the worker answered its health check (spawn succeeded)
	stopping atomic.Bool // the hive is stopping it: its exit is no crash

	closeOnce sync.Once
	closeErr  error

	mu           sync.Mutex
	state        api.WorkerState
	slotsTotal   int
	slotsBusy    int
	lastActivity time.Time
	failures     int // health checks failed in a row
}

// Pid is the worker's process id.
func (w *Worker) Pid() int { return w.proc.Pid() }

// Exited is closed when the worker process has exited.
func (w *Worker) Exited() <-chan struct{} { return w.proc.Exited() }

// ExitCode is the worker's exit status once it exited (-1 before, or when
// killed by a signal).
func (w *Worker) ExitCode() int { return w.proc.ExitCode() }

// State is the last known state: loading, idle, busy or stopping.
func (w *Worker) State() api.WorkerState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

// Info is the worker's registry entry as the hive lists it.
func (w *Worker) Info() api.WorkerInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	avail := w.slotsTotal - w.slotsBusy
	if w.state != api.StateIdle && w.state != api.StateBusy || avail < 0 {
		avail = 0 // a loading or stopping worker takes no inference
	}
	return api.WorkerInfo{ID: w.ID, URL: w.URL, ModelRef: w.ModelRef, Backend: w.Backend, Device: w.Device,
		State: w.state, SlotsTotal: w.slotsTotal, SlotsAvailable: avail, LastActivity: w.lastActivity,
		PID: w.proc.Pid()}
}

// markReady records the worker's ready callback: a loading worker is idle
// from now on (one that already reported being busy, or is stopping, stays
// as it is).
func (w *Worker) markReady() {
	w.mu.Lock()
	if w.state == api.StateLoading {
		w.moveLocked(api.StateIdle)
	}
	if w.lastActivity.IsZero() {
		w.lastActivity = time.Now()
	}
	w.mu.Unlock()
	w.readyOnce.Do(func() { close(w.ready) })
}

// apply records a health answer. The state it reports is taken only when it
// moves the worker forward: an answer sent before the ready callback but
// read after it still says loading, and must not undo the callback.
func (w *Worker) apply(h api.WorkerHealth) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failures = 0
	if h.SlotsTotal > 0 {
		w.slotsTotal = h.SlotsTotal
	}
	w.slotsBusy = h.SlotsBusy
	if !h.LastActivity.IsZero() {
		w.lastActivity = h.LastActivity
	}
	w.moveLocked(h.State)
	if h.State == api.StateIdle || h.State == api.StateBusy {
		w.readyOnce.Do(func() { close(w.ready) })
	}
}

// stateStep is where a state sits in a worker's life: loading, then serving
// (idle or busy), then stopping, then failed. A worker never goes back a
// step; it may go from idle to busy and back within the serving step.
func stateStep(state api.WorkerState) (int, bool) {
	switch state {
	case api.StateLoading:
		return 0, true
	case api.StateIdle, api.StateBusy:
		return 1, true
	case api.StateStopping:
		return 2, true
	case api.StateFailed:
		return 3, true
	}
	return 0, false
}

// canMove reports whether a worker in state from may move to state to: to
// is a known state, and it is a later step, or the other of idle and busy.
func canMove(from, to api.WorkerState) bool {
	t, ok := stateStep(to)
	if !ok || from == to {
		return false
	}
	f, ok := stateStep(from)
	return !ok || t > f || t == f && t == 1
}

// moveLocked is the one place a worker's state changes: it moves to state
// to when canMove allows it and reports whether it did. w.mu is held.
func (w *Worker) moveLocked(to api.WorkerState) bool {
	if !canMove(w.state, to) {
		return false
	}
	w.state = to
	return true
}

// failed counts a failed health check and returns how many failed in a row.
func (w *Worker) failed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failures++
	return w.failures
}

// markStopping records that the hive is stopping the worker.
func (w *Worker) markStopping() {
	w.mu.Lock()
	w.moveLocked(api.StateStopping)
	w.mu.Unlock()
}

// Ping asks the worker for its health and records the answer. It fails if
// the worker does not answer, answers with an error, or is another worker.
func (w *Worker) Ping(ctx context.Context) (api.WorkerHealth, error) {
	var h api.WorkerHealth
	if err := w.client.Do(ctx, http.MethodGet, "/v1/health", nil, &h); err != nil {
		return h, fmt.Errorf("worker %s health: %w", w.ID, err)
	}
	if h.WorkerID != "" && h.WorkerID != w.ID {
		return h, fmt.Errorf("worker %s health: %s answers as worker %q", w.ID, w.URL, h.WorkerID)
	}
	w.apply(h)
	return h, nil
}

// WaitUntilReady waits until the worker has loaded its model (its ready
// callback, or a health answer saying idle or busy). It fails with
// WORKER_CRASHED if the process exits first, or with ctx's error.
func (w *Worker) WaitUntilReady(ctx context.Context) error {
	select {
	case <-w.ready:
		return nil
	case <-w.proc.Exited():
		return w.crashError("before it was ready")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// crashError is the WORKER_CRASHED error of an exited worker, with the end of
// its log.
func (w *Worker) crashError(when string) *api.Error {
	code := w.proc.ExitCode()
	tail := logTail(w.LogPath, 10)
	msg := fmt.Sprintf("worker %s exited with status %d %s", w.ID, code, when)
	if code < 0 {
		msg = fmt.Sprintf("worker %s was killed by a signal %s", w.ID, when)
	}
	if last := lastLine(tail); last != "" {
		msg += ": " + last
	}
	return api.Errorf(api.CodeWorkerCrashed, "%s", msg).With("worker_id", w.ID).With("exit_code", code).
		With("log_tail", tail).WithHint("check the worker log " + w.LogPath)
}

// Close stops the worker the graceful way and waits for its exit: POST
// /v1/admin/shutdown, up to the stop grace (5 s) for it to exit, then
// SIGTERM, then SIGKILL when the kill deadline (10 s from the start) passes.
// If ctx ends first the worker is killed at once. Calling Close again waits
// for the first call and returns its result.
func (w *Worker) Close(ctx context.Context) error {
	w.closeOnce.Do(func() {
		w.stopping.Store(true)
		w.markStopping()
		start := time.Now()
		select {
		case <-w.proc.Exited():
			return
		default:
		}
		postCtx, cancel := context.WithTimeout(ctx, w.stopGrace)
		err := w.client.Do(postCtx, http.MethodPost, "/v1/admin/shutdown", nil, nil)
		cancel()
		if err != nil {
			w.log.Debug("admin shutdown not accepted", "error", err)
		}
		if rest := w.stopGrace - time.Since(start); rest > 0 {
			t := time.NewTimer(rest)
			select {
			case <-w.proc.Exited():
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		w.closeErr = w.terminate(ctx, w.killAfter-time.Since(start))
	})
	<-w.proc.Exited()
	return w.closeErr
}

// Kill stops a worker that cannot be asked (it fails its health checks):
// SIGTERM, then SIGKILL after the rest of the kill deadline.
func (w *Worker) Kill(ctx context.Context) error {
	w.closeOnce.Do(func() {
		w.stopping.Store(true)
		w.markStopping()
		w.closeErr = w.terminate(ctx, w.killAfter-w.stopGrace)
	})
	<-w.proc.Exited()
	return w.closeErr
}

// terminate sends SIGTERM unless the process exited, and SIGKILL after grace.
func (w *Worker) terminate(ctx context.Context, grace time.Duration) error {
	select {
	case <-w.proc.Exited():
		return nil
	default:
	}
	w.log.Info("worker did not exit by itself; sending SIGTERM", "kill_in", grace.Round(time.Millisecond))
	if grace < 0 {
		grace = 0
	}
	if err := w.proc.Stop(ctx, grace); err != nil {
		return fmt.Errorf("stopping worker %s: %w", w.ID, err)
	}
	return nil
}

// logTail returns the last n lines of a log file ("" when unreadable).
func logTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const tailBytes = 8 << 10 // read from the end
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(0, st.Size()-tailBytes)
	buf := make([]byte, st.Size()-off)
	got, _ := f.ReadAt(buf, off)
	buf = buf[:got]
	text := strings.TrimRight(string(buf), "\n")
	if text == "" {
		return ""
	}
	lines := strings.Split(text, "\n")
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // the first one is cut
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}
