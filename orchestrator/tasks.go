package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"rbee/api"
	"rbee/internal/hivewire"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

// Why a task's context ended (context.Cause); anything else means the
// client went away.
var (
	errTaskCancelled = errors.New("the task was cancelled")
	errQueenShutdown = errors.New("the queen is shutting down")
	errClientGone    = errors.New("the client went away")
)

// task is one running POST /v2/tasks, findable by its id for DELETE
// /v2/tasks/{id} and for the shutdown.
type task struct {
	id     string
	cancel context.CancelCauseFunc

	mu        sync.Mutex
	cancelled bool
	worker    *workerClient // the worker generating for this task, once its stream started
	timer     *time.Timer   // ends the task if a cancelled generation does not end by itself
}

// taskRegistry holds the running tasks.
type taskRegistry struct {
	mu     sync.Mutex
	tasks  map[string]*task
	closed bool
}

// add registers t; it reports false once the queen is shutting down.
func (r *taskRegistry) add(t *task) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	if r.tasks == nil {
		r.tasks = make(map[string]*task)
	}
	r.tasks[t.id] = t
	return true
}

func (r *taskRegistry) remove(t *task) {
	r.mu.Lock()
	delete(r.tasks, t.id)
	r.mu.Unlock()
	t.mu.Lock()
	if t.timer != nil {
		t.timer.Stop()
	}
	t.mu.Unlock()
}

func (r *taskRegistry) get(id string) *task {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tasks[id]
}

// closeAll refuses new tasks and ends the running ones with errQueenShutdown.
func (r *taskRegistry) closeAll() {
	r.mu.Lock()
	r.closed = true
	ts := make([]*task, 0, len(r.tasks))
	for _, t := range r.tasks {
		ts = append(ts, t)
	}
	r.mu.Unlock()
	for _, t := range ts {
		t.cancel(errQueenShutdown)
	}
}

// running reports how many tasks run.
func (r *taskRegistry) running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.tasks)
}

// requestCancel stops the task for DELETE /v2/tasks/{id}. A task whose
// worker is generating has the worker stop (its stream then ends with done
// stop_reason "cancelled", relayed to the client); one still preparing
// (starting a hive, spawning, loading) is ended at once. Either way the
// client's stream ends with a done event whose stop_reason is "cancelled".
func (t *task) requestCancel(ctx context.Context, log hclog.Logger) {
	t.mu.Lock()
	if t.cancelled {
		t.mu.Unlock()
		return
	}
	t.cancelled = true
	w := t.worker
	if w != nil {
		t.timer = time.AfterFunc(cancelGrace, func() { t.cancel(errTaskCancelled) })
	}
	t.mu.Unlock()
	if w == nil {
		t.cancel(errTaskCancelled)
		return
	}
	if err := w.cancel(ctx, t.id); err != nil {
		log.Warn("the worker did not take the cancellation", "task", t.id, "worker_id", w.id, "error", err)
		t.cancel(errTaskCancelled)
	}
}

// cancelRequested reports whether the task's client asked to cancel it
// (DELETE /v2/tasks/{id}).
func (t *task) cancelRequested() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cancelled
}

func (t *task) streaming(w *workerClient) {
	t.mu.Lock()
	t.worker = w
	t.mu.Unlock()
}

// handleTask serves POST /v2/tasks. Bad requests, unknown nodes and a
// shutting-down queen are answered with a plain error envelope; from then on
// the answer is one event stream: a task_start narration first, then the
// queen's narration, the worker's loading progress and its inference events
// as they are, and an error event if something fails; always [DONE] last.
// The task id is the X-Request-ID of the answer and the request id of every
// event.
func (q *Queen) handleTask(w http.ResponseWriter, r *http.Request) {
	id := httpx.NewID("task-")
	w.Header().Set(httpx.RequestIDHeader, id)
	fail := func(err error) {
		e := *httpx.ToAPIError(err)
		e.RequestID = id
		httpx.WriteError(w, r, &e)
	}
	var req api.TaskRequest
	if e := httpx.DecodeJSON(w, r, &req); e != nil {
		fail(e)
		return
	}
	samp, e := req.Validate()
	if e != nil {
		fail(e)
		return
	}
	if err := q.runTask(r.Context(), id, req, samp, func() eventSink { return sse.NewWriter(w) }); err != nil {
		fail(err)
	}
}

// eventSink receives a task's events: the SSE writer of POST /v2/tasks, or
// the translation of the OpenAI-compatible endpoints.
type eventSink interface {
	Send(api.Event) error
	Close() error // ends the stream: the task ended well
	Error(*api.Error) error
}

// runTask runs a validated task under id until it ends. Before anything is
// sent it may return an error to answer plainly: an unknown node, or a
// queen shutting down. Otherwise it opens the sink, sends it the task's
// events (a task_start narration first), ends it with Close or Error, and
// returns nil.
func (q *Queen) runTask(ctx context.Context, id string, req api.TaskRequest, samp api.Sampling, open func() eventSink) error {
	if req.Node != api.LocalNode {
		if _, err := q.store.Get(ctx, req.Node); err != nil {
			return err
		}
	}
	if e := q.queue.full(queueKey{node: req.Node, model: req.Model}); e != nil {
		q.log.Info("task refused: the queue is full", "task", id, "node", req.Node, "model", req.Model, "retry_after_s", e.Details[api.DetailRetryAfter])
		q.metrics.taskEnded(ctx, e, nil, 0)
		return e
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	t := &task{id: id, cancel: cancel}
	if !q.tasks.add(t) {
		return shuttingDown()
	}
	defer q.tasks.remove(t)

	out := &meteredSink{eventSink: open()}
	run := &taskRun{q: q, t: t, req: req, samp: samp, out: out,
		log: q.log.Named("task").With("task", id, "node", req.Node, "model", req.Model)}
	start := time.Now()
	run.log.Info("task started")
	run.narrate("task_start", fmt.Sprintf("Task %s: %s on node %s, up to %d tokens", id, req.Model, req.Node, samp.MaxTokens))
	err := run.run(ctx)
	// How the task ended is settled now: once the client has its last
	// event it may go away, and that must not turn a failure into a
	// cancellation.
	ended := ctx
	if ctx.Err() == nil {
		ended = context.WithoutCancel(ctx)
	}
	run.finish(ended, err)
	q.metrics.taskEnded(ended, err, out.done, time.Since(start))
	if out.tokens > 0 {
		tps := 0.0
		if out.done != nil {
			tps = out.done.TokensPerSecond
		}
		q.metrics.generated(out.firstToken.Sub(start), tps)
	}
	args := []any{"tokens", run.tokens, "duration", time.Since(start).Round(time.Millisecond)}
	switch o, code := outcome(ended, err, out.done); o {
	case outcomeFailed:
		reason := err.Error()
		if ended.Err() != nil {
			reason = context.Cause(ended).Error()
		}
		run.log.Info("task ended", append(args, "outcome", o, "code", code, "error", reason)...)
	case outcomeCancelled:
		why := "the client cancelled it"
		if ended.Err() != nil {
			why = context.Cause(ended).Error()
		}
		run.log.Info("task ended", append(args, "outcome", o, "why", why)...)
	default:
		run.log.Info("task ended", append(args, "outcome", o)...)
	}
	return nil
}

// outcome names how a task ended, as the metrics count it: done (the
// worker's stream ended well), cancelled (by its client: DELETE, or the
// client went away), or failed with an error code (a worker stopped by
// anything else included).
func outcome(ctx context.Context, err error, done *api.Done) (string, api.Code) {
	switch {
	case err == nil:
		if done != nil && done.StopReason == api.StopCancelled {
			return outcomeCancelled, ""
		}
		return outcomeDone, ""
	case ctx.Err() != nil:
		if context.Cause(ctx) == errQueenShutdown {
			return outcomeFailed, api.CodeShuttingDown
		}
		return outcomeCancelled, ""
	}
	return outcomeFailed, httpx.ToAPIError(err).Code
}

// handleTaskCancel serves DELETE /v2/tasks/{id}: 204 whether or not the
// task runs (idempotent).
func (q *Queen) handleTaskCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if e := api.ValidateWorkerID(id); e != nil {
		httpx.WriteError(w, r, api.InvalidField("id", "a task id has letters, digits, '_' and '-' only, at most %d", api.MaxWorkerIDLen))
		return
	}
	if t := q.tasks.get(id); t != nil {
		q.log.Info("task cancel requested", "task", id)
		t.requestCancel(r.Context(), q.log)
	}
	w.WriteHeader(http.StatusNoContent)
}

// taskRun is the state of one task's flow, from reaching the hive to relaying the tokens.
type taskRun struct {
	q    *Queen
	t    *task
	req  api.TaskRequest
	samp api.Sampling
	out  eventSink
	log  hclog.Logger

	workerID string // once known, put in narration
	slots    int    // the worker's slot count from its hive's list; 0 unknown
	tokens   int    // token events relayed
}

// send relays one event; a failed write means the client left, which ends
// the task.
func (r *taskRun) send(ev api.Event) error {
	if err := r.out.Send(ev); err != nil {
		r.t.cancel(errClientGone)
		return errClientGone
	}
	return nil
}

func (r *taskRun) narrate(action, human string) {
	_ = r.send(api.Event{Kind: api.KindNarration, Narration: &api.Narration{Actor: api.ActorQueen, Action: action,
		Human: human, Node: r.req.Node, WorkerID: r.workerID, RequestID: r.t.id}})
}

func (r *taskRun) run(ctx context.Context) error {
	hive, err := r.q.hives.ensure(ctx, r.req.Node, r.narrate)
	if err != nil {
		return err
	}
	w, err := r.worker(ctx, hive)
	if err != nil {
		return err
	}
	return r.infer(ctx, w)
}

// finish ends the client's stream according to how the flow ended.
func (r *taskRun) finish(ctx context.Context, err error) {
	if err == nil {
		// The worker's stream ended well (a late cancellation changes nothing).
		_ = r.out.Close()
		return
	}
	if ctx.Err() != nil {
		switch context.Cause(ctx) {
		case errTaskCancelled:
			_ = r.out.Send(api.Event{Kind: api.KindDone, Done: &api.Done{Done: true, TotalTokens: r.tokens,
				StopReason: api.StopCancelled, RequestID: r.t.id, WorkerID: r.workerID}})
			_ = r.out.Close()
		case errQueenShutdown:
			e := *shuttingDown()
			e.RequestID = r.t.id
			_ = r.out.Error(&e)
		}
		return // the client went away: nobody to tell
	}
	e := *httpx.ToAPIError(err)
	e.RequestID = r.t.id
	_ = r.out.Error(&e)
}

// matches reports whether a worker serves the task's model (and its backend
// and device, when the task names them).
func (r *taskRun) matches(w api.WorkerInfo) bool {
	if w.ModelRef != r.req.Model {
		return false
	}
	if r.req.Backend != "" && w.Backend != r.req.Backend {
		return false
	}
	return r.req.Device == nil || w.Device == *r.req.Device
}

func (r *taskRun) backendDevice() (api.Backend, int) {
	b, d := r.req.Backend, 0
	if b == "" {
		b = api.BackendCPU
	}
	if r.req.Device != nil {
		d = *r.req.Device
	}
	return b, d
}

// worker finds a worker for the task on the hive: an
// idle one with the model, else one loading it (waiting for it), else a busy
// one (the inference then retries), else a new one spawned and waited for.
// Tasks for the same model on the same node choose one at a time, so two
// cold tasks share one spawn.
func (r *taskRun) worker(ctx context.Context, hive *hiveClient) (*workerClient, error) {
	backend, device := r.backendDevice()
	unlock, err := r.q.hives.locks.lock(ctx, "worker\x00"+r.req.Node+"\x00"+r.req.Model+"\x00"+string(r.req.Backend)+"\x00"+
		strconv.Itoa(device))
	if err != nil {
		return nil, err
	}
	defer unlock()
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	ws, err := hive.workers(lctx)
	cancel()
	if err != nil {
		return nil, hive.unreachable(err, "listing its workers")
	}
	var idle, loading, busy *hivewire.Worker
	for i := range ws {
		w := &ws[i]
		if !r.matches(w.WorkerInfo) {
			continue
		}
		switch {
		case w.State == api.StateIdle || w.State == api.StateBusy && w.SlotsAvailable > 0:
			if idle == nil {
				idle = w
			}
		case w.State == api.StateLoading:
			if loading == nil {
				loading = w
			}
		case w.State == api.StateBusy:
			if busy == nil {
				busy = w
			}
		}
	}
	use := func(w *hivewire.Worker) (*workerClient, error) {
		r.workerID, r.slots = w.ID, w.SlotsTotal
		return r.q.newWorkerClient(r.req.Node, w.ID, w.URL, w.APIKey)
	}
	switch {
	case idle != nil:
		wc, err := use(idle)
		if err == nil {
			r.narrate("worker_reuse", fmt.Sprintf("Reusing idle worker %s (%s on %s:%d) on %s", idle.ID, idle.ModelRef, idle.Backend, idle.Device, r.req.Node))
		}
		return wc, err
	case loading != nil:
		unlock()
		wc, err := use(loading)
		if err != nil {
			return nil, err
		}
		r.narrate("worker_wait", fmt.Sprintf("Worker %s on %s is already loading %s; waiting for it", loading.ID, r.req.Node, loading.ModelRef))
		if err := r.followLoading(ctx, wc); err != nil {
			return nil, err
		}
		r.learnSlots(ctx, hive)
		return wc, nil
	case busy != nil:
		wc, err := use(busy)
		if err == nil {
			r.narrate("worker_busy", fmt.Sprintf("Worker %s with %s on %s is busy (%d/%d slots in use); waiting for a free slot",
				busy.ID, busy.ModelRef, r.req.Node, busy.SlotsTotal-busy.SlotsAvailable, busy.SlotsTotal))
		}
		return wc, err
	}

	if err := r.ensureModel(ctx, hive); err != nil {
		return nil, err
	}
	r.narrate("spawn", fmt.Sprintf("Spawning a worker for %s on %s (%s:%d)", r.req.Model, r.req.Node, backend, device))
	sctx, scancel := context.WithTimeout(ctx, spawnTimeout)
	sr, err := hive.spawn(sctx, api.SpawnRequest{ModelRef: r.req.Model, Backend: backend, Device: device})
	scancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, hive.unreachable(err, "spawning a worker")
	}
	unlock()
	r.workerID = sr.WorkerID
	wc, err := r.q.newWorkerClient(r.req.Node, sr.WorkerID, sr.URL, sr.APIKey)
	if err != nil {
		return nil, err
	}
	r.log.Info("worker spawned", "worker_id", sr.WorkerID, "url", sr.URL)
	r.narrate("spawned", fmt.Sprintf("Worker %s started at %s; loading %s", sr.WorkerID, sr.URL, r.req.Model))
	if err := r.followLoading(ctx, wc); err != nil {
		return nil, err
	}
	r.learnSlots(ctx, hive)
	return wc, nil
}

// learnSlots reads the slot count of the task's worker, which a worker
// tells once it has loaded, from the hive's list. Without it the queue
// assumes no limit until the worker turns a task away.
func (r *taskRun) learnSlots(ctx context.Context, hive *hiveClient) {
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	ws, err := hive.workers(lctx)
	if err != nil {
		r.log.Debug("could not read the worker's slot count", "worker_id", r.workerID, "error", err)
		return
	}
	for _, w := range ws {
		if w.ID == r.workerID {
			r.slots = w.SlotsTotal
			return
		}
	}
}

// followLoading relays the worker's loading progress until it is ready,
// within LoadingTimeout.
func (r *taskRun) followLoading(ctx context.Context, w *workerClient) error {
	lctx, cancel := context.WithTimeout(ctx, r.q.cfg.LoadingTimeout)
	defer cancel()
	var last api.Progress
	resp, err := w.c.Stream(lctx, http.MethodGet, "/v1/loading/progress", nil, nil)
	if err != nil {
		return r.loadingFailure(ctx, lctx, w, last, err)
	}
	defer resp.Body.Close()
	ready := false
	for ev, err := range sse.Read(resp.Body) {
		if err != nil {
			return r.loadingFailure(ctx, lctx, w, last, err)
		}
		switch ev.Kind {
		case api.KindProgress:
			if ev.Progress.WorkerID == "" {
				ev.Progress.WorkerID = w.id
			}
			switch ev.Progress.Stage {
			case api.StageLoading:
				last = *ev.Progress
			case api.StageReady:
				ready = true
			}
		case api.KindError:
			return ev.Error
		case api.KindNarration:
		default:
			continue // tokens or done have no place here
		}
		if err := r.send(ev); err != nil {
			return err
		}
	}
	if !ready {
		var rr api.ReadyResponse
		if err := w.c.Do(lctx, http.MethodGet, "/v1/ready", nil, &rr); err != nil || !rr.Ready {
			if err == nil {
				err = fmt.Errorf("its loading stream ended in state %q", rr.State)
			}
			return r.loadingFailure(ctx, lctx, w, last, err)
		}
	}
	r.narrate("worker_ready", fmt.Sprintf("Worker %s is ready", w.id))
	return nil
}

func (r *taskRun) loadingFailure(ctx, lctx context.Context, w *workerClient, last api.Progress, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	hint := fmt.Sprintf("check the worker log (rbee logs --node %s)", r.req.Node)
	if errors.Is(lctx.Err(), context.DeadlineExceeded) {
		state := "no loading progress was reported"
		if last.LayersTotal > 0 {
			state = fmt.Sprintf("stuck at %d/%d layers", last.LayersLoaded, last.LayersTotal)
		}
		return api.Errorf(api.CodeLoadingTimeout, "worker %s on %s did not finish loading %s within %s: %s",
			w.id, r.req.Node, r.req.Model, r.q.cfg.LoadingTimeout, state).
			With("worker_id", w.id).With("node", r.req.Node).With("layers_loaded", last.LayersLoaded).
			With("layers_total", last.LayersTotal).With("timeout_ms", r.q.cfg.LoadingTimeout.Milliseconds()).WithHint(hint)
	}
	var e *api.Error
	if errors.As(err, &e) {
		return e
	}
	return api.Errorf(api.CodeWorkerCrashed, "worker %s on %s stopped while loading %s: %s", w.id, r.req.Node, r.req.Model, shortNetErr(err)).
		With("worker_id", w.id).With("node", r.req.Node).WithHint(hint)
}

// infer runs the inference on the worker and relays its stream. It first
// takes a slot of the worker in the queen's queue, waiting its turn while
// the worker has none free. A worker that answers ALL_SLOTS_BUSY anyway
// puts the task back at the head of the queue; with the queue off, the
// inference is retried after each of BusyRetryDelays instead.
func (r *taskRun) infer(ctx context.Context, w *workerClient) error {
	ireq := r.req.Inference()
	header := http.Header{httpx.RequestIDHeader: {r.t.id}}
	delays := r.q.cfg.BusyRetryDelays
	tk := r.q.queue.ticket(queueKey{node: r.req.Node, model: r.req.Model}, r.t.id, w.id, r.slots)
	defer tk.release()
	var resp *http.Response
	turnedAway := 0
	for attempt := 0; ; attempt++ {
		if err := r.waitSlot(ctx, tk, w); err != nil {
			return err
		}
		var err error
		resp, err = w.c.Stream(ctx, http.MethodPost, "/v1/inference", ireq, header)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			_ = w.cancel(ctx, r.t.id) // the request may have reached the worker
			return ctx.Err()
		}
		var e *api.Error
		if !errors.As(err, &e) {
			return api.Errorf(api.CodeWorkerCrashed, "worker %s on %s is not answering: %s", w.id, r.req.Node, shortNetErr(err)).
				With("worker_id", w.id).With("node", r.req.Node).
				WithHint(fmt.Sprintf("check the worker log (rbee logs --node %s)", r.req.Node))
		}
		if e.Code != api.CodeAllSlotsBusy {
			return e
		}
		if r.q.queue.on() {
			backoff := time.Second
			if len(delays) > 0 {
				backoff = delays[min(turnedAway, len(delays)-1)]
			}
			turnedAway++
			r.log.Info("the worker turned the task away: back to the head of the queue", "worker_id", w.id, "backoff", backoff)
			tk.turnedAway(backoff)
			continue
		}
		tk.release() // the queue is off: the slot is only counted
		if attempt == len(delays) {
			out := e.With("worker_id", w.id).With("node", r.req.Node).With("retries", attempt).
				WithHint("wait for the running inference to finish or use another node")
			out.Message = fmt.Sprintf("worker %s on %s is still busy after %d retries (%s)", w.id, r.req.Node, attempt, slotsText(e))
			return out
		}
		r.narrate("busy_retry", fmt.Sprintf("Worker %s is busy (%s); retrying in %s (retry %d/%d)",
			w.id, slotsText(e), delays[attempt], attempt+1, len(delays)))
		if err := sleepCtx(ctx, delays[attempt]); err != nil {
			return err
		}
	}
	defer resp.Body.Close()
	r.t.streaming(w)
	gotDone := false
	for ev, err := range sse.Read(resp.Body) {
		if err != nil {
			if ctx.Err() != nil {
				_ = w.cancel(ctx, r.t.id)
				return ctx.Err()
			}
			if gotDone {
				return nil
			}
			r.log.Warn("worker stream cut", "worker_id", w.id, "tokens", r.tokens, "error", err)
			return api.Errorf(api.CodeWorkerCrashed, "stream closed unexpectedly: worker %s on %s stopped after %d of at most %d tokens",
				w.id, r.req.Node, r.tokens, r.samp.MaxTokens).
				With("worker_id", w.id).With("node", r.req.Node).With("tokens_generated", r.tokens).
				With("max_tokens", r.samp.MaxTokens).WithHint(fmt.Sprintf("check the worker log (rbee logs --node %s)", r.req.Node))
		}
		switch ev.Kind {
		case api.KindToken:
			r.tokens++
		case api.KindDone:
			if ev.Done != nil && ev.Done.StopReason == api.StopCancelled && ctx.Err() == nil && !r.t.cancelRequested() {
				return r.unaskedCancel(w)
			}
			gotDone = true
		case api.KindError:
			return r.workerError(w, ev.Error)
		}
		if err := r.send(ev); err != nil {
			_ = w.cancel(ctx, r.t.id)
			return err
		}
	}
	return nil
}

// waitSlot takes a slot of worker w for the task, waiting in the queue
// with narration while it has none.
func (r *taskRun) waitSlot(ctx context.Context, tk *ticket, w *workerClient) error {
	err := tk.acquire(ctx, func(ahead int) {
		r.narrate("queued", fmt.Sprintf("Waiting for a free slot on worker %s (%d ahead)", w.id, ahead))
	})
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// unaskedCancel is the error of a worker stream that ended with done
// "cancelled" although this task never asked for it: the generation was
// stopped by something else (a worker of another version stopping, or a
// cancellation sent to the worker directly). Relaying that done would pass
// truncated text off as a finished answer, so the task fails instead.
func (r *taskRun) unaskedCancel(w *workerClient) error {
	r.log.Warn("the worker ended the generation as cancelled, unasked", "worker_id", w.id, "tokens", r.tokens)
	return api.Errorf(api.CodeWorkerCrashed, "stream closed unexpectedly: worker %s on %s stopped the generation after %d of at most %d tokens, though this task did not cancel it",
		w.id, r.req.Node, r.tokens, r.samp.MaxTokens).
		With("worker_id", w.id).With("node", r.req.Node).With("tokens_generated", r.tokens).
		With("max_tokens", r.samp.MaxTokens).WithHint(fmt.Sprintf("check the worker log (rbee logs --node %s)", r.req.Node))
}

// workerError is the error event of a worker's inference stream as the
// task ends with it: the worker's own, with the node and the task's token
// count added when the worker did not say them.
func (r *taskRun) workerError(w *workerClient, e *api.Error) *api.Error {
	if e == nil {
		return api.Errorf(api.CodeInternal, "worker %s on %s sent an empty error event", w.id, r.req.Node)
	}
	if _, ok := e.Details["node"]; !ok {
		e = e.With("node", r.req.Node)
	}
	if _, ok := e.Details["worker_id"]; !ok {
		e = e.With("worker_id", w.id)
	}
	if e.Code == api.CodeShuttingDown {
		r.log.Warn("the worker stopped mid-generation: it is shutting down", "worker_id", w.id, "tokens", r.tokens)
		if _, ok := e.Details["tokens_generated"]; !ok {
			e = e.With("tokens_generated", r.tokens).With("max_tokens", r.samp.MaxTokens)
		}
	}
	return e
}

// slotsText says how busy a worker is from an ALL_SLOTS_BUSY error's details.
func slotsText(e *api.Error) string {
	total, ok1 := e.Details["slots_total"]
	busy, ok2 := e.Details["slots_busy"]
	if ok1 && ok2 {
		return fmt.Sprintf("%v of %v slots in use", busy, total)
	}
	if s, ok := e.Details["state"].(string); ok {
		return "state " + s
	}
	return "all slots in use"
}
