package orchestrator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"rbee/api"
)

// The queen's queue. A task whose model has no worker with a free slot on
// its node waits its turn here instead of failing. The queen counts the
// tasks it has running on each worker (it dispatches them) against the
// worker's slot count from its hive's list; when a slot of any worker of
// the model frees (or a new worker of it becomes ready), the first waiting
// task that may use that worker (same backend and device, when the task
// names them) goes there. A worker that answers ALL_SLOTS_BUSY anyway (a
// client calling it directly took the slot) puts the task back at the head
// of its queue, and the worker counts as full until one of the queen's
// tasks on it ends or a short back-off passes. A worker that no longer
// answers is dropped: the task that found out waits for another one, and
// when the model has no worker left on the node the waiting tasks are sent
// back to find or start one (errNoWorker).
//
// Bounds: at most max tasks wait in all queues together, each at most
// timeout; past either a task fails with ALL_SLOTS_BUSY carrying a
// retry_after_s estimate (sent as Retry-After when the error is the whole
// answer). max 0 turns queueing off: every task is dispatched at once and a
// busy worker is retried as before the queue existed.

// Defaults of the queue's bounds.
const (
	DefaultMaxQueue     = 256
	DefaultQueueTimeout = 5 * time.Minute
)

// Bounds of the queue's narration and estimates.
const (
	queueNotifyEvery = time.Second      // position narration, at most this often
	retryAfterMax    = 10 * time.Minute // the largest Retry-After the queen suggests
	holdGuess        = 5 * time.Second  // how long a task holds a slot, before any ended
)

// queueKey names one queue: the tasks waiting for a model on a node. A
// task in it takes whichever worker of the model frees first.
type queueKey struct {
	node, model string
}

// workerKey names a worker across nodes.
type workerKey struct {
	node, id string
}

// errNoWorker ends a wait in the queue when the model has no worker left
// on the node that the task may use: the task should find or start one.
var errNoWorker = errors.New("no worker of the model is left on the node")

// workerSlots is what the queue knows of one worker.
type workerSlots struct {
	key     queueKey
	wk      workerKey
	backend api.Backend   // "" when unknown (any task may use it)
	device  int           // with backend
	client  *workerClient // how tasks call it; nil when only a ticket named it
	listed  bool          // register made it: kept until its hive no longer lists it
	gone    bool          // it stopped answering: never free again
	total   int           // slots, from the hive's list; 0 while unknown (no limit assumed)
	busy    int           // the queen's tasks holding a slot on it
	blocked time.Time     // it answered ALL_SLOTS_BUSY: full until then, or until a slot frees
	unblock *time.Timer
}

// free reports whether a task may be dispatched to the worker now.
func (w *workerSlots) free(now time.Time) bool {
	return !w.gone && (w.total == 0 || w.busy < w.total) && !now.Before(w.blocked)
}

// slotQueue is the queen's queue. Its methods are safe for concurrent use.
type slotQueue struct {
	max     int
	timeout time.Duration
	// waited, when set, is told how long each task waited in a queue
	// (granted a slot or not); it is called with the queue's lock held.
	waited func(time.Duration)

	mu      sync.Mutex
	workers map[workerKey]*workerSlots
	queues  map[queueKey][]*ticket
	depth   int           // tickets in all queues
	hold    time.Duration // moving average of how long a task held its slot
}

func newSlotQueue(max int, timeout time.Duration, waited func(time.Duration)) *slotQueue {
	return &slotQueue{max: max, timeout: timeout, waited: waited,
		workers: make(map[workerKey]*workerSlots), queues: make(map[queueKey][]*ticket)}
}

// on reports whether tasks wait for a slot (max_queue above 0).
func (q *slotQueue) on() bool { return q.max > 0 }

// ticket is one task's place: in a queue while it waits, on its worker
// while it holds a slot. One goroutine (the task's) uses a ticket.
type ticket struct {
	q     *slotQueue
	key   queueKey
	task  string
	slots int // the first worker's slot count as last seen; 0 unknown
	// backend and device, when set, limit the workers the task may use.
	backend api.Backend
	device  *int

	// Guarded by q.mu. worker is the worker the task holds a slot on, or
	// while it waits the one it would prefer (the zero key once that one
	// was dropped).
	worker workerKey
	client *workerClient // the held worker's, once granted
	lost   chan struct{} // the wait ended with errNoWorker

	// Guarded by q.mu.
	since   time.Time // when it first entered the queue; zero if it never waited
	queued  bool
	head    bool // the next acquire enters at the head: the worker turned it away
	holding bool
	held    time.Time // when it took its slot
	granted chan struct{}
	moved   chan struct{} // its position changed
}

// ticket returns a task's ticket for a worker of key with slots slots (0:
// unknown).
func (q *slotQueue) ticket(key queueKey, task, workerID string, slots int) *ticket {
	return &ticket{q: q, key: key, task: task, worker: workerKey{key.node, workerID}, slots: slots,
		granted: make(chan struct{}, 1), moved: make(chan struct{}, 1), lost: make(chan struct{}, 1)}
}

// accepts reports whether the task may run on worker w.
func (t *ticket) accepts(w *workerSlots) bool {
	if t.backend != "" && w.backend != "" && w.backend != t.backend {
		return false
	}
	return t.device == nil || w.backend == "" || w.device == *t.device
}

// workerEntry is a worker as register learns it from its hive's list.
type workerEntry struct {
	id      string
	backend api.Backend
	device  int
	slots   int // 0 unknown
	client  *workerClient
}

// register tells the queue of a ready worker of key (or refreshes what it
// knows: its slot count, its client), then gives it to waiting tasks. A
// worker the queue had dropped as gone comes back only if nothing holds a
// slot on it any more (a new worker took its id).
func (q *slotQueue) register(key queueKey, e workerEntry) {
	q.mu.Lock()
	defer q.mu.Unlock()
	wk := workerKey{key.node, e.id}
	w := q.workers[wk]
	if w != nil && w.gone {
		if w.busy > 0 {
			return
		}
		w.gone = false
	}
	if w == nil {
		w = &workerSlots{key: key, wk: wk}
		q.workers[wk] = w
	}
	w.backend, w.device, w.listed = e.backend, e.device, true
	if e.client != nil {
		w.client = e.client
	}
	if e.slots > 0 {
		w.total = e.slots
	}
	q.dispatch(key)
	q.forget(wk)
}

// sync keeps the queue's list of key's workers to what their hive listed:
// a worker it registered that the hive no longer lists (the hive stopped it,
// or it crashed) is dropped, and the tasks waiting for the model that have
// no worker left end their wait with errNoWorker. listed holds the ids of
// all the model's workers the hive listed, loading ones included.
func (q *slotQueue) sync(key queueKey, listed []string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	dropped := false
	for wk, w := range q.workers {
		if w.key != key || !w.listed || w.gone || slices.Contains(listed, wk.id) {
			continue
		}
		w.gone, dropped = true, true
		q.unprefer(key, wk)
		q.forget(wk)
	}
	if dropped {
		q.orphans(key)
	}
}

// hasFree reports whether a task of key limited to backend and device (""
// and nil: any) would get a slot at once, without waiting.
func (q *slotQueue) hasFree(key queueKey, backend api.Backend, device *int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	probe := &ticket{key: key, backend: backend, device: device}
	return q.pick(probe, time.Now()) != nil
}

// freeFor reports whether worker id of key would give a task limited to
// backend and device a slot at once: it has one free and no waiting task
// comes first.
func (q *slotQueue) freeFor(key queueKey, id string, backend api.Backend, device *int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	w := q.workers[workerKey{key.node, id}]
	probe := &ticket{key: key, backend: backend, device: device}
	return w != nil && w.key == key && w.free(time.Now()) && probe.accepts(w) && !q.claimed(w, probe)
}

// busyOn returns how many of the queen's tasks hold a slot on worker id of
// key's node.
func (q *slotQueue) busyOn(key queueKey, id string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w := q.workers[workerKey{key.node, id}]; w != nil {
		return w.busy
	}
	return 0
}

// pick chooses a free worker of t's key for t that no other waiting task
// may use (those come first): t's preferred one, else the one with the
// fewest slots in use. nil when there is none. Called with q.mu held.
func (q *slotQueue) pick(t *ticket, now time.Time) *workerSlots {
	return q.choose(t, now, func(w *workerSlots) bool { return !q.claimed(w, t) })
}

// choose is pick with the test of whether t may take a free worker it
// accepts. Called with q.mu held.
func (q *slotQueue) choose(t *ticket, now time.Time, ok func(*workerSlots) bool) *workerSlots {
	usable := func(w *workerSlots) bool { return w.key == t.key && w.free(now) && t.accepts(w) && ok(w) }
	if w := q.workers[t.worker]; w != nil && usable(w) {
		return w
	}
	var best *workerSlots
	for _, w := range q.workers {
		if !usable(w) {
			continue
		}
		if best == nil || w.busy < best.busy || w.busy == best.busy && w.wk.id < best.wk.id {
			best = w
		}
	}
	return best
}

// claimed reports whether a task waiting in w's queue, other than t, may
// use w: it then goes first, unless t is back at the head of the queue.
// Called with q.mu held.
func (q *slotQueue) claimed(w *workerSlots, t *ticket) bool {
	if t.head {
		return false
	}
	for _, o := range q.queues[w.key] {
		if o != t && o.accepts(w) {
			return true
		}
	}
	return false
}

// usable reports whether t's key has a worker t may use, free or not.
// Called with q.mu held.
func (q *slotQueue) usable(t *ticket) bool {
	for _, w := range q.workers {
		if w.key == t.key && !w.gone && t.accepts(w) {
			return true
		}
	}
	return false
}

// full reports whether a task for key would be refused at once: the queue
// is at its bound and tasks for key already wait (so this one would have to
// wait too). It is the check made before a task's answer starts, so that the
// refusal is a plain 503 with Retry-After.
func (q *slotQueue) full(key queueKey) *api.Error {
	if !q.on() {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.depth < q.max || len(q.queues[key]) == 0 {
		return nil
	}
	return q.fullError(key)
}

func (q *slotQueue) fullError(key queueKey) *api.Error {
	return api.Errorf(api.CodeAllSlotsBusy, "the queen's queue is full: %d tasks are waiting for a free slot (at most %d)", q.depth, q.max).
		With("queue_depth", q.depth).With("max_queue", q.max).With("node", key.node).
		With(api.DetailRetryAfter, q.retryAfter(key)).
		WithHint("try again later, use another node, or raise max_queue in the queen's configuration")
}

// retryAfter estimates in whole seconds when a task for key could get a
// slot: the tasks waiting for it times how long a task holds a slot,
// spread over the slots of the key's workers. Called with q.mu held.
func (q *slotQueue) retryAfter(key queueKey) int {
	hold := q.hold
	if hold <= 0 {
		hold = holdGuess
	}
	slots := 0
	for _, w := range q.workers {
		if w.key == key {
			slots += max(w.total, 1)
		}
	}
	est := hold * time.Duration(len(q.queues[key])+1) / time.Duration(max(slots, 1))
	est = min(max(est, time.Second), retryAfterMax)
	return int((est + time.Second - 1) / time.Second)
}

// slotsOf returns the worker's entry, made if needed, with its slot count
// updated from t. Called with q.mu held.
func (q *slotQueue) slotsOf(t *ticket) *workerSlots {
	w := q.workers[t.worker]
	if w == nil {
		w = &workerSlots{key: t.key, wk: t.worker}
		q.workers[t.worker] = w
	}
	if t.slots > 0 {
		w.total = t.slots
	}
	return w
}

// ahead counts the tickets before t in its queue. Called with q.mu held.
func (q *slotQueue) ahead(t *ticket) int {
	for i, o := range q.queues[t.key] {
		if o == t {
			return i
		}
	}
	return 0
}

// take gives t a slot on w. Called with q.mu held.
func (q *slotQueue) take(t *ticket, w *workerSlots, now time.Time) {
	w.busy++
	t.worker, t.client = w.wk, w.client
	t.holding, t.held, t.head = true, now, false
}

// acquire takes a slot for t on a worker of its model, waiting in the
// queue while none is free; notify is called with the number of tasks
// ahead when t enters and whenever that number changes, at most once a
// second. It returns the context's error when ctx ends first (t has then
// left the queue); ALL_SLOTS_BUSY when the queue is full or t waited longer
// than the queue's timeout; errNoWorker when the model has no worker t may
// use (any more). With queueing off it takes a slot on t's worker at once.
func (t *ticket) acquire(ctx context.Context, notify func(ahead int)) error {
	q := t.q
	q.mu.Lock()
	if t.holding {
		q.mu.Unlock()
		return nil
	}
	now := time.Now()
	if t.worker.id != "" && q.on() {
		// The worker the task found is known from now on, and may be free
		// for tasks already waiting.
		q.slotsOf(t)
		q.dispatch(t.key)
	}
	if !q.on() {
		if t.worker.id != "" {
			q.slotsOf(t)
		}
		w := q.workers[t.worker]
		if w == nil || w.gone {
			q.mu.Unlock()
			return errNoWorker
		}
		q.take(t, w, now)
		q.mu.Unlock()
		return nil
	}
	if w := q.pick(t, now); w != nil {
		q.take(t, w, now)
		q.mu.Unlock()
		return nil
	}
	if !q.usable(t) {
		q.mu.Unlock()
		return errNoWorker
	}
	if !t.head && q.depth >= q.max {
		e := q.fullError(t.key)
		q.forget(t.worker)
		q.mu.Unlock()
		return e
	}
	if t.since.IsZero() {
		t.since = now
	}
	if t.head {
		q.queues[t.key] = slices.Insert(q.queues[t.key], 0, t)
	} else {
		q.queues[t.key] = append(q.queues[t.key], t)
	}
	t.queued = true
	q.depth++
	q.signalMoved(t.key, t)
	ahead := q.ahead(t)
	deadline := t.since.Add(q.timeout)
	q.mu.Unlock()

	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	notify(ahead)
	told, toldAt := ahead, time.Now()
	var later *time.Timer // a position change to tell once a second has passed
	var laterC <-chan time.Time
	defer func() {
		if later != nil {
			later.Stop()
		}
	}()
	for {
		select {
		case <-t.granted:
			return nil
		case <-t.lost:
			return errNoWorker
		case <-ctx.Done():
			if q.leave(t) {
				return ctx.Err()
			}
			select {
			case <-t.granted: // granted meanwhile: give the slot back
				t.release()
			case <-t.lost:
			}
			return ctx.Err()
		case <-timeout.C:
			if e := q.timedOut(t); e != nil {
				return e
			}
			select {
			case <-t.granted:
				return nil
			case <-t.lost:
				return errNoWorker
			}
		case <-t.moved:
		case <-laterC:
			laterC = nil
		}
		q.mu.Lock()
		ahead, queued := q.ahead(t), t.queued
		q.mu.Unlock()
		if !queued || ahead == told {
			continue // granted or lost (the next round sees it), or nothing to tell
		}
		if wait := queueNotifyEvery - time.Since(toldAt); wait > 0 {
			if laterC == nil {
				later = time.NewTimer(wait)
				laterC = later.C
			}
			continue
		}
		notify(ahead)
		told, toldAt = ahead, time.Now()
	}
}

// leave takes t out of its queue, reporting false when it had been granted
// a slot (or lost its wait) already. The tasks behind it move up.
func (q *slotQueue) leave(t *ticket) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !t.queued {
		return false
	}
	q.unqueue(t)
	q.forget(t.worker)
	q.signalMoved(t.key, nil)
	return true
}

// timedOut takes t out of its queue with the timeout's error, or returns
// nil when it had been granted a slot (or lost its wait) already.
func (q *slotQueue) timedOut(t *ticket) *api.Error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !t.queued {
		return nil
	}
	q.unqueue(t)
	total, busy := 0, 0
	for _, w := range q.workers {
		if w.key == t.key && !w.gone && t.accepts(w) {
			total += w.total
			busy += w.busy
		}
	}
	e := api.Errorf(api.CodeAllSlotsBusy, "no slot of a worker with %s on %s freed within %s (%d tasks still waiting for it)",
		t.key.model, t.key.node, q.timeout, len(q.queues[t.key])).
		With("worker_id", t.worker.id).With("node", t.key.node).With("slots_total", total).With("slots_busy", busy).
		With("queue_timeout_ms", q.timeout.Milliseconds()).With(api.DetailRetryAfter, q.retryAfter(t.key)).
		WithHint("try again later, use another node, or raise queue_timeout in the queen's configuration")
	q.forget(t.worker)
	q.signalMoved(t.key, nil)
	return e
}

// unqueue removes t from its queue. Called with q.mu held.
func (q *slotQueue) unqueue(t *ticket) {
	list := q.queues[t.key]
	if i := slices.Index(list, t); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(q.queues, t.key)
	} else {
		q.queues[t.key] = list
	}
	t.queued = false
	q.depth--
	if q.waited != nil {
		q.waited(time.Since(t.since))
	}
}

// signalMoved tells every ticket of key's queue but skip that its position
// may have changed. Called with q.mu held.
func (q *slotQueue) signalMoved(key queueKey, skip *ticket) {
	for _, o := range q.queues[key] {
		if o == skip {
			continue
		}
		select {
		case o.moved <- struct{}{}:
		default:
		}
	}
}

// dispatch gives free slots to the tickets of key's queue, first come first
// served: each takes a free worker it may use, its preferred one first.
// Called with q.mu held.
func (q *slotQueue) dispatch(key queueKey) {
	list := q.queues[key]
	now := time.Now()
	moved := false
	for i := 0; i < len(list); {
		t := list[i]
		w := q.choose(t, now, func(*workerSlots) bool { return true })
		if w == nil {
			i++
			continue
		}
		list = slices.Delete(list, i, i+1)
		q.queues[key] = list
		t.queued = false
		q.depth--
		if q.waited != nil {
			q.waited(now.Sub(t.since))
		}
		q.take(t, w, now)
		t.granted <- struct{}{}
		moved = true
	}
	if len(list) == 0 {
		delete(q.queues, key)
	}
	if moved {
		q.signalMoved(key, nil)
	}
}

// orphans ends the wait of the tickets of key's queue that have no worker
// left they may use, with errNoWorker. Called with q.mu held.
func (q *slotQueue) orphans(key queueKey) {
	for _, t := range slices.Clone(q.queues[key]) {
		if q.usable(t) {
			continue
		}
		q.unqueue(t)
		t.lost <- struct{}{}
	}
	q.signalMoved(key, nil)
}

// forget drops a worker's entry that nothing refers to any more (a gone
// worker's as soon as no task holds a slot on it). Called with q.mu held.
func (q *slotQueue) forget(wk workerKey) {
	w := q.workers[wk]
	if w == nil || w.busy > 0 {
		return
	}
	if !w.gone {
		if w.listed || time.Now().Before(w.blocked) {
			return
		}
		for _, o := range q.queues[w.key] {
			if o.worker == wk {
				return
			}
		}
	}
	if w.unblock != nil {
		w.unblock.Stop()
	}
	delete(q.workers, wk)
}

// release gives t's slot back (its task's generation ended): the worker
// counts as free again and the first task that may use it goes. It does
// nothing when t holds no slot.
func (t *ticket) release() {
	q := t.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if !t.holding {
		return
	}
	t.holding = false
	if w := q.workers[t.worker]; w != nil {
		w.busy--
		w.blocked = time.Time{}
	}
	held := time.Since(t.held)
	if q.hold == 0 {
		q.hold = held
	} else {
		q.hold = (q.hold*7 + held) / 8
	}
	q.dispatch(t.key)
	q.forget(t.worker)
}

// turnedAway gives t's slot back without freeing it: the worker answered
// ALL_SLOTS_BUSY, so it counts as full until one of the queen's tasks on it
// ends or backoff passes, and t's next acquire enters at the head of the
// queue.
func (t *ticket) turnedAway(backoff time.Duration) {
	q := t.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if !t.holding {
		return
	}
	t.holding, t.head = false, true
	w := q.workers[t.worker]
	if w == nil {
		return
	}
	w.busy--
	w.blocked = time.Now().Add(backoff)
	if w.unblock != nil {
		w.unblock.Stop()
	}
	key, wk := t.key, t.worker
	w.unblock = time.AfterFunc(backoff, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.dispatch(key)
		q.forget(wk)
	})
}

// drop gives t's slot back and drops its worker, which did not answer: no
// task is sent there again. The tasks waiting in the queue go to the other
// workers of the model; those with none left end their wait with
// errNoWorker. t's next acquire enters at the head of the queue, for
// another worker.
func (t *ticket) drop() {
	q := t.q
	q.mu.Lock()
	defer q.mu.Unlock()
	wk := t.worker
	w := q.workers[wk]
	if t.holding {
		t.holding = false
		if w != nil {
			w.busy--
		}
	}
	t.head, t.worker, t.client = true, workerKey{}, nil
	if w != nil {
		w.gone = true
		if w.unblock != nil {
			w.unblock.Stop()
		}
	}
	q.unprefer(t.key, wk)
	q.orphans(t.key)
	q.forget(wk)
}

// unprefer clears a dropped worker from the tickets of key's queue that
// preferred it. Called with q.mu held.
func (q *slotQueue) unprefer(key queueKey, wk workerKey) {
	for _, o := range q.queues[key] {
		if o.worker == wk {
			o.worker = workerKey{}
		}
	}
}

// conn returns the client of the worker t holds a slot on (nil when the
// queue only knew the worker by its id).
func (t *ticket) conn() *workerClient {
	t.q.mu.Lock()
	defer t.q.mu.Unlock()
	return t.client
}

// workerID returns the id of the worker t holds a slot on or prefers.
func (t *ticket) workerID() string {
	t.q.mu.Lock()
	defer t.q.mu.Unlock()
	return t.worker.id
}

// slotCount is one worker's slots as the queue counts them.
type slotCount struct {
	model                string
	busy, total, waiting int
}

// snapshot returns the queues (oldest first within each, queues ordered by
// node and model), the workers the queue knows and the total depth.
func (q *slotQueue) snapshot() ([]api.Queue, map[workerKey]slotCount, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	queues := make([]api.Queue, 0, len(q.queues))
	counts := make(map[workerKey]slotCount, len(q.workers))
	for wk, w := range q.workers {
		counts[wk] = slotCount{model: w.key.model, busy: w.busy, total: w.total}
	}
	for key, list := range q.queues {
		out := api.Queue{Node: key.node, Model: key.model, Tasks: make([]api.QueuedTask, 0, len(list))}
		for i, t := range list {
			out.Tasks = append(out.Tasks, api.QueuedTask{ID: t.task, Position: i + 1, WorkerID: t.worker.id, WaitingSince: t.since.UTC()})
			if t.worker.id == "" {
				continue // it lost its worker and waits for any
			}
			c := counts[t.worker]
			c.waiting++
			counts[t.worker] = c
		}
		queues = append(queues, out)
	}
	slices.SortFunc(queues, func(a, b api.Queue) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Model, b.Model))
	})
	return queues, counts, q.depth
}

// depths returns how many tasks wait per queue.
func (q *slotQueue) depths() map[queueKey]int {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make(map[queueKey]int, len(q.queues))
	for k, l := range q.queues {
		out[k] = len(l)
	}
	return out
}

// String describes the queue's bounds for the logs.
func (q *slotQueue) String() string {
	if !q.on() {
		return "off"
	}
	return fmt.Sprintf("at most %d tasks, %s each", q.max, q.timeout)
}
