package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
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
	// node and model are where it runs (after placement) and started when
	// its request came: what the console shows.
	node, model string
	started     time.Time
	// tokens counts the tokens relayed to its client; firstToken is when
	// the first one was (unix nanoseconds, 0 before).
	tokens     atomic.Int64
	firstToken atomic.Int64

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

// runTask runs a validated task under id until it ends. A task without a
// node is placed first (see place). Before anything is sent it may return
// an error to answer plainly: an unknown node, a full queue, or a queen
// shutting down. Otherwise it opens the sink, sends it the task's events (a
// task_start narration first, then where it was placed and why), ends it
// with Close or Error, and returns nil.
func (q *Queen) runTask(ctx context.Context, id string, req api.TaskRequest, samp api.Sampling, open func() eventSink) error {
	return q.runTaskWith(ctx, id, req, samp, open, taskOptions{})
}

// taskOptions change what a task does once it has a worker.
type taskOptions struct {
	// loadOnly ends the task as soon as a worker of its model is ready,
	// without an inference: ollama's load request (an empty prompt). The
	// sink is closed without a done event.
	loadOnly bool
}

// runTaskWith is runTask with options.
func (q *Queen) runTaskWith(ctx context.Context, id string, req api.TaskRequest, samp api.Sampling, open func() eventSink, opts taskOptions) error {
	var placed *placement
	settle := func() {}
	if req.Node == "" {
		p := q.place(ctx, req)
		placed, req.Node, settle = &p, p.node, p.settle
		defer settle()
	} else if req.Node != api.LocalNode {
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
	t := &task{id: id, cancel: cancel, node: req.Node, model: req.Model, started: time.Now()}
	if !q.tasks.add(t) {
		return shuttingDown()
	}
	defer q.tasks.remove(t)

	out := &meteredSink{eventSink: open(), onToken: func() { q.counters.token(t) }}
	run := &taskRun{q: q, t: t, req: req, samp: samp, out: out, settle: settle, loadOnly: opts.loadOnly,
		log: q.log.Named("task").With("task", id, "node", req.Node, "model", req.Model)}
	start := time.Now()
	run.log.Info("task started")
	run.narrate("task_start", fmt.Sprintf("Task %s: %s on node %s, up to %d tokens", id, req.Model, req.Node, samp.MaxTokens))
	if placed != nil {
		run.log.Info("task placed", "why", placed.reason)
		run.narrate("placement", fmt.Sprintf("Placing on node %s: %s", placed.node, placed.reason))
	}
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

	workerID string     // once known, put in narration
	slots    int        // the worker's slot count from its hive's list; 0 unknown
	tokens   int        // token events relayed
	gone     *api.Error // the last worker found not answering, if any
	settle   func()     // ends the placement's promise of a slot, once the task holds one
	loadOnly bool       // end once a worker is ready (taskOptions.loadOnly)
}

// key is the task's queue.
func (r *taskRun) key() queueKey { return queueKey{node: r.req.Node, model: r.req.Model} }

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
	for search := 1; ; search++ {
		tk, err := r.worker(ctx, hive)
		if err != nil {
			return err
		}
		if r.loadOnly {
			r.settle()
			return nil
		}
		err = r.infer(ctx, tk)
		if !errors.Is(err, errNoWorker) {
			return err
		}
		// Every worker of the model the task could use stopped answering
		// before it started: look again (the hive may have one loading, or
		// a new one is started).
		if search == maxWorkerSearches {
			if r.gone != nil {
				return r.gone
			}
			return api.Errorf(api.CodeWorkerCrashed, "no worker with %s on %s stayed up long enough to take the task", r.req.Model, r.req.Node).
				With("node", r.req.Node).WithHint(fmt.Sprintf("check the worker log (rbee logs --node %s)", r.req.Node))
		}
		r.log.Info("no worker of the model is left for the task; looking again", "search", search)
		r.narrate("worker_search", fmt.Sprintf("No worker with %s on %s is left for this task; looking for another", r.req.Model, r.req.Node))
	}
}

// maxWorkerSearches bounds how often a task looks for a worker after the
// ones it found stopped answering.
const maxWorkerSearches = 3

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
func (r *taskRun) matches(w api.WorkerInfo) bool { return taskMatches(r.req, w) }

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

// worker finds a worker for the task on the hive and returns the task's
// ticket for the queue: every ready worker of the model is made known to
// the queue (the task takes whichever has a free slot first); with none, a
// worker loading the model is waited for; else a new one is spawned and
// waited for. When every ready worker is busy and the node has room for
// another copy (max_workers_per_model), another is started first. Tasks
// for the same model on the same node choose one at a time, so two cold
// tasks share one spawn.
func (r *taskRun) worker(ctx context.Context, hive *hiveClient) (*ticket, error) {
	_, device := r.backendDevice()
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
	ready, loading, err := r.known(ws)
	if err != nil {
		return nil, err
	}
	var idle, busy *hivewire.Worker
	for _, w := range ready {
		// Free by the hive's list (which lags) and by the queue's count of
		// the queen's tasks on it.
		free := (w.State == api.StateIdle || w.SlotsAvailable > 0) && r.q.queue.freeFor(r.key(), w.ID, r.req.Backend, r.req.Device)
		switch {
		case free && idle == nil:
			idle = w
		case !free && busy == nil:
			busy = w
		}
	}
	switch {
	case idle != nil:
		r.workerID, r.slots = idle.ID, idle.SlotsTotal
		r.narrate("worker_reuse", fmt.Sprintf("Reusing idle worker %s (%s on %s:%d) on %s", idle.ID, idle.ModelRef, idle.Backend, idle.Device, r.req.Node))
		return r.ticket(), nil
	case busy != nil:
		if r.roomForAnother(len(ready), loading) {
			if tk := r.another(ctx, hive, busy, len(ready), unlock); tk != nil {
				return tk, nil
			}
		}
		r.workerID, r.slots = busy.ID, busy.SlotsTotal
		inUse := slotsInUse(busy.SlotsTotal, busy.SlotsAvailable, r.q.queue.busyOn(r.key(), busy.ID))
		r.narrate("worker_busy", fmt.Sprintf("Worker %s with %s on %s is busy (%d/%d slots in use); waiting for a free slot",
			busy.ID, busy.ModelRef, r.req.Node, inUse, busy.SlotsTotal))
		return r.ticket(), nil
	case loading != nil:
		unlock()
		wc, err := r.q.newWorkerClient(r.req.Node, loading.ID, loading.URL, loading.APIKey)
		if err != nil {
			return nil, err
		}
		r.workerID, r.slots = loading.ID, loading.SlotsTotal
		r.narrate("worker_wait", fmt.Sprintf("Worker %s on %s is already loading %s; waiting for it", loading.ID, r.req.Node, loading.ModelRef))
		if err := r.followLoading(ctx, wc); err != nil {
			return nil, err
		}
		r.learnSlots(ctx, hive, wc)
		return r.ticket(), nil
	}

	if err := r.ensureModel(ctx, hive); err != nil {
		return nil, err
	}
	wc, err := r.spawn(ctx, hive, unlock)
	if err != nil {
		return nil, err
	}
	r.learnSlots(ctx, hive, wc)
	return r.ticket(), nil
}

// known tells the queue of the model's workers that hive list ws shows,
// and returns those ready for the task (idle or busy) and one loading for
// it, if any. Workers of the model the queue knew that the list no longer
// shows are dropped.
func (r *taskRun) known(ws []hivewire.Worker) (ready []*hivewire.Worker, loading *hivewire.Worker, err error) {
	var listed []string
	for i := range ws {
		w := &ws[i]
		if w.ModelRef == r.req.Model {
			listed = append(listed, w.ID)
		}
		if !r.matches(w.WorkerInfo) {
			continue
		}
		switch w.State {
		case api.StateIdle, api.StateBusy:
			wc, err := r.q.newWorkerClient(r.req.Node, w.ID, w.URL, w.APIKey)
			if err != nil {
				return nil, nil, err
			}
			r.q.queue.register(r.key(), workerEntry{id: w.ID, backend: w.Backend, device: w.Device, slots: w.SlotsTotal, client: wc})
			ready = append(ready, w)
		case api.StateLoading:
			if loading == nil {
				loading = w
			}
		}
	}
	r.q.queue.sync(r.key(), listed)
	return ready, loading, nil
}

// ticket returns the task's place in the queue, preferring the worker
// found (r.workerID) and limited to the backend and device the task names.
func (r *taskRun) ticket() *ticket {
	tk := r.q.queue.ticket(r.key(), r.t.id, r.workerID, r.slots)
	tk.backend, tk.device = r.req.Backend, r.req.Device
	return tk
}

// roomForAnother reports whether the task should start another worker for
// its model: the queue is on, none of the model's ready workers has a
// free slot for it (so it would wait), none is loading already, and the
// node runs fewer than max_workers_per_model of them.
func (r *taskRun) roomForAnother(ready int, loading *hivewire.Worker) bool {
	return r.q.queue.on() && loading == nil && ready < r.q.cfg.MaxWorkersPerModel &&
		!r.q.queue.hasFree(r.key(), r.req.Backend, r.req.Device)
}

// another starts another worker for the task's model, whose workers are
// all busy, and returns the task's ticket once it is ready; nil when it
// could not (preflight refused another copy, or it failed to load): the
// task then waits for a slot of the busy ones.
func (r *taskRun) another(ctx context.Context, hive *hiveClient, busy *hivewire.Worker, ready int, unlock func()) *ticket {
	r.narrate("worker_more", fmt.Sprintf("All %d workers with %s on %s are busy; starting another (at most %d per model)",
		ready, r.req.Model, r.req.Node, r.q.cfg.MaxWorkersPerModel))
	wc, err := r.spawn(ctx, hive, unlock)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		r.log.Info("no other worker started; the task waits for a busy one", "error", err)
		r.narrate("worker_more_refused", fmt.Sprintf("Not starting another worker on %s: %s; waiting for a free slot of worker %s",
			r.req.Node, api.AsError(err).Message, busy.ID))
		r.workerID = busy.ID
		return nil
	}
	r.learnSlots(ctx, hive, wc)
	return r.ticket()
}

// spawn asks the hive for a new worker of the task's model and follows its
// loading until it is ready. unlock is called once the hive has answered,
// so that other tasks see the worker loading.
func (r *taskRun) spawn(ctx context.Context, hive *hiveClient, unlock func()) (*workerClient, error) {
	backend, device := r.backendDevice()
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
	return wc, nil
}

// learnSlots makes worker w, which has just loaded, known to the queue
// with its slot count, which a worker tells once it has loaded, from the
// hive's list. Without it the queue assumes no limit until the worker
// turns a task away.
func (r *taskRun) learnSlots(ctx context.Context, hive *hiveClient, w *workerClient) {
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	backend, device := r.backendDevice()
	entry := workerEntry{id: w.id, backend: backend, device: device, client: w}
	ws, err := hive.workers(lctx)
	if err != nil {
		r.log.Debug("could not read the worker's slot count", "worker_id", w.id, "error", err)
	}
	for _, hw := range ws {
		if hw.ID == w.id {
			r.slots = hw.SlotsTotal
			entry.backend, entry.device, entry.slots = hw.Backend, hw.Device, hw.SlotsTotal
		}
	}
	r.q.queue.register(r.key(), entry)
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

// infer runs the inference on a worker of the task's model and relays its
// stream. It first takes a slot in the queen's queue, waiting its turn
// while no worker the task may use has one free. A worker that answers
// ALL_SLOTS_BUSY anyway puts the task back at the head of the queue; with
// the queue off, the inference is retried after each of BusyRetryDelays
// instead. A worker that does not answer at all is dropped and the task
// goes to another; errNoWorker means none is left.
func (r *taskRun) infer(ctx context.Context, tk *ticket) error {
	ireq := r.req.Inference()
	header := http.Header{httpx.RequestIDHeader: {r.t.id}}
	delays := r.q.cfg.BusyRetryDelays
	defer tk.release()
	var resp *http.Response
	var w *workerClient
	turnedAway := 0
	for attempt := 0; ; attempt++ {
		if err := r.waitSlot(ctx, tk); err != nil {
			return err
		}
		w = tk.conn()
		if w == nil {
			return errNoWorker
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
			r.gone = api.Errorf(api.CodeWorkerCrashed, "worker %s on %s is not answering: %s", w.id, r.req.Node, shortNetErr(err)).
				With("worker_id", w.id).With("node", r.req.Node).
				WithHint(fmt.Sprintf("check the worker log (rbee logs --node %s)", r.req.Node))
			r.log.Warn("the worker is not answering: the task tries another", "worker_id", w.id, "error", err)
			tk.drop()
			continue
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

// waitSlot takes a slot for the task, waiting in the queue with narration
// while no worker it may use has one free. Granted a slot on another
// worker than the one it found, the task says so.
func (r *taskRun) waitSlot(ctx context.Context, tk *ticket) error {
	err := tk.acquire(ctx, func(ahead int) {
		if id := tk.workerID(); id != "" {
			r.narrate("queued", fmt.Sprintf("Waiting for a free slot on worker %s (%d ahead)", id, ahead))
		} else {
			r.narrate("queued", fmt.Sprintf("Waiting for a free slot of a worker with %s on %s (%d ahead)", r.req.Model, r.req.Node, ahead))
		}
	})
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	r.settle()
	if id := tk.workerID(); id != r.workerID {
		if r.workerID != "" {
			r.narrate("worker_switch", fmt.Sprintf("Worker %s with %s on %s has a free slot first; running there", id, r.req.Model, r.req.Node))
		}
		r.workerID = id
	}
	return nil
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

// slotsInUse is what the narration says of a busy worker's slots: the more
// of the hive's count (total − available, which lags) and the queen's own
// count of its tasks holding a slot there, at most total. The queen's count
// can briefly pass total: a task that took a slot by the queen's count is on
// its way to the worker, which will turn it away, while the one running
// there still holds its own; a worker never runs more than total at once.
func slotsInUse(total, available, queenBusy int) int {
	n := max(total-available, queenBusy)
	if total > 0 {
		n = min(n, total)
	}
	return n
}
