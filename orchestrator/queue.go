package orchestrator

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"rbee/api"
)

// The queen's queue. A task whose worker has no free slot waits its turn
// here instead of failing. The queen counts the tasks it has running on
// each worker (it dispatches them) against the worker's slot count from its
// hive's list; when one of them ends, the first task waiting for that worker
// goes. A worker that answers ALL_SLOTS_BUSY anyway (a client calling it
// directly took the slot) puts the task back at the head of its queue, and
// the worker counts as full until one of the queen's tasks on it ends or a
// short back-off passes.
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

// queueKey names one queue: the tasks waiting for a model on a node. Today
// each waits for the worker the task chose; the key is kept to the model and
// node so that a task may later take any worker of the model.
type queueKey struct {
	node, model string
}

// workerKey names a worker across nodes.
type workerKey struct {
	node, id string
}

// workerSlots is what the queue knows of one worker.
type workerSlots struct {
	key     queueKey
	total   int       // slots, from the hive's list; 0 while unknown (no limit assumed)
	busy    int       // the queen's tasks holding a slot on it
	blocked time.Time // it answered ALL_SLOTS_BUSY: full until then, or until a slot frees
	unblock *time.Timer
}

// free reports whether a task may be dispatched to the worker now.
func (w *workerSlots) free(now time.Time) bool {
	return (w.total == 0 || w.busy < w.total) && !now.Before(w.blocked)
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
	q      *slotQueue
	key    queueKey
	task   string
	worker workerKey
	slots  int // the worker's slot count as last seen; 0 unknown

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
		granted: make(chan struct{}, 1), moved: make(chan struct{}, 1)}
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
		w = &workerSlots{key: t.key}
		q.workers[t.worker] = w
	}
	if t.slots > 0 {
		w.total = t.slots
	}
	return w
}

// waitingFor counts the tickets in t's queue waiting for t's worker.
// Called with q.mu held.
func (q *slotQueue) waitingFor(t *ticket) int {
	n := 0
	for _, o := range q.queues[t.key] {
		if o.worker == t.worker {
			n++
		}
	}
	return n
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
	t.holding, t.held, t.head = true, now, false
}

// acquire takes a slot on t's worker for t, waiting in the queue while the
// worker has none free; notify is called with the number of tasks ahead
// when t enters and whenever that number changes, at most once a second.
// It returns the context's error when ctx ends first (t has then left the
// queue), and ALL_SLOTS_BUSY when the queue is full or t waited longer than
// the queue's timeout. With queueing off it takes the slot at once.
func (t *ticket) acquire(ctx context.Context, notify func(ahead int)) error {
	q := t.q
	q.mu.Lock()
	if t.holding {
		q.mu.Unlock()
		return nil
	}
	w := q.slotsOf(t)
	now := time.Now()
	if !q.on() || w.free(now) && (t.head || q.waitingFor(t) == 0) {
		q.take(t, w, now)
		q.mu.Unlock()
		return nil
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
		case <-ctx.Done():
			if q.leave(t) {
				return ctx.Err()
			}
			<-t.granted // granted meanwhile: give the slot back
			t.release()
			return ctx.Err()
		case <-timeout.C:
			if e := q.timedOut(t); e != nil {
				return e
			}
			<-t.granted
			return nil
		case <-t.moved:
		case <-laterC:
			laterC = nil
		}
		q.mu.Lock()
		ahead, queued := q.ahead(t), t.queued
		q.mu.Unlock()
		if !queued || ahead == told {
			continue // granted (the next round sees it), or nothing to tell
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
// a slot already. The tasks behind it move up.
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
// nil when it had been granted a slot already.
func (q *slotQueue) timedOut(t *ticket) *api.Error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !t.queued {
		return nil
	}
	q.unqueue(t)
	w := q.slotsOf(t)
	e := api.Errorf(api.CodeAllSlotsBusy, "no slot of worker %s on %s freed within %s (%d tasks still waiting for %s)",
		t.worker.id, t.key.node, q.timeout, len(q.queues[t.key]), t.key.model).
		With("worker_id", t.worker.id).With("node", t.key.node).With("slots_total", w.total).With("slots_busy", w.busy).
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
// served per worker. Called with q.mu held.
func (q *slotQueue) dispatch(key queueKey) {
	list := q.queues[key]
	now := time.Now()
	moved := false
	for i := 0; i < len(list); {
		t := list[i]
		w := q.slotsOf(t)
		if !w.free(now) {
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

// forget drops a worker's entry that nothing refers to any more. Called
// with q.mu held.
func (q *slotQueue) forget(wk workerKey) {
	w := q.workers[wk]
	if w == nil || w.busy > 0 || time.Now().Before(w.blocked) {
		return
	}
	for _, o := range q.queues[w.key] {
		if o.worker == wk {
			return
		}
	}
	if w.unblock != nil {
		w.unblock.Stop()
	}
	delete(q.workers, wk)
}

// release gives t's slot back (its task's generation ended): the worker
// counts as free again and the first task waiting for it goes. It does
// nothing when t holds no slot.
func (t *ticket) release() {
	q := t.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if !t.holding {
		return
	}
	t.holding = false
	w := q.slotsOf(t)
	w.busy--
	w.blocked = time.Time{}
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
	w := q.slotsOf(t)
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
