package orchestrator

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
)

var testKey = queueKey{node: "local", model: "file:/m.gguf"}

// waiting is one acquire running on its own goroutine.
type waiting struct {
	tk   *ticket
	done chan error
	mu   sync.Mutex
	told []int // the notify calls' numbers ahead
}

func (w *waiting) ahead() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int(nil), w.told...)
}

// startAcquire runs tk.acquire(ctx) in the background; the test waits for it
// with result.
func startAcquire(ctx context.Context, tk *ticket) *waiting {
	w := &waiting{tk: tk, done: make(chan error, 1)}
	go func() {
		w.done <- tk.acquire(ctx, func(n int) {
			w.mu.Lock()
			w.told = append(w.told, n)
			w.mu.Unlock()
		})
	}()
	return w
}

func (w *waiting) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-w.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("task %s never got an answer from the queue", w.tk.task)
		return nil
	}
}

// stillWaiting asserts that the acquire has not returned.
func (w *waiting) stillWaiting(t *testing.T) {
	t.Helper()
	select {
	case err := <-w.done:
		t.Fatalf("task %s left the queue early: %v", w.tk.task, err)
	default:
	}
}

// queued waits until n tickets wait in testKey's queue.
func queued(t *testing.T, q *slotQueue, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return q.depths()[testKey] == n }, 10*time.Second, time.Millisecond,
		"expected %d tasks in the queue", n)
}

func TestQueueFIFOOneSlot(t *testing.T) {
	var waits []time.Duration
	q := newSlotQueue(8, time.Minute, func(d time.Duration) { waits = append(waits, d) })
	ctx := context.Background()

	first := q.ticket(testKey, "t1", "w1", 1)
	require.NoError(t, first.acquire(ctx, func(int) { t.Error("a task with a free slot is not queued") }))

	second := startAcquire(ctx, q.ticket(testKey, "t2", "w1", 1))
	queued(t, q, 1)
	third := startAcquire(ctx, q.ticket(testKey, "t3", "w1", 1))
	queued(t, q, 2)

	queues, counts, depth := q.snapshot()
	assert.Equal(t, 2, depth)
	require.Len(t, queues, 1)
	assert.Equal(t, []string{"t2", "t3"}, []string{queues[0].Tasks[0].ID, queues[0].Tasks[1].ID})
	assert.Equal(t, []int{1, 2}, []int{queues[0].Tasks[0].Position, queues[0].Tasks[1].Position})
	assert.Equal(t, slotCount{model: testKey.model, busy: 1, total: 1, waiting: 2}, counts[workerKey{"local", "w1"}])

	first.release()
	require.NoError(t, second.result(t), "the head of the queue goes first")
	third.stillWaiting(t)
	second.tk.release()
	require.NoError(t, third.result(t))
	third.tk.release()

	assert.Equal(t, []int{0}, second.ahead(), "entered with nobody ahead")
	assert.Equal(t, 1, third.ahead()[0], "entered with one ahead")
	_, counts, depth = q.snapshot()
	assert.Zero(t, depth)
	assert.Empty(t, counts, "a worker nothing refers to is forgotten")
	assert.Len(t, waits, 2, "each wait is measured")
}

func TestQueueTwoSlotsNoWait(t *testing.T) {
	q := newSlotQueue(8, time.Minute, nil)
	a := q.ticket(testKey, "a", "w1", 2)
	b := q.ticket(testKey, "b", "w1", 2)
	require.NoError(t, a.acquire(context.Background(), func(int) { t.Error("queued") }))
	require.NoError(t, b.acquire(context.Background(), func(int) { t.Error("queued") }))
	c := startAcquire(context.Background(), q.ticket(testKey, "c", "w1", 2))
	queued(t, q, 1)
	b.release()
	require.NoError(t, c.result(t))
}

func TestQueueWaitingTaskTakesAnyWorker(t *testing.T) {
	q := newSlotQueue(8, time.Minute, nil)
	holder := q.ticket(testKey, "a", "w1", 1)
	require.NoError(t, holder.acquire(context.Background(), func(int) {}))
	waiter := startAcquire(context.Background(), q.ticket(testKey, "b", "w1", 1))
	queued(t, q, 1)
	// A second worker of the model becomes ready: the waiting task takes it
	// rather than wait for the one it first found.
	q.register(testKey, workerEntry{id: "w2", backend: api.BackendCPU, slots: 1})
	require.NoError(t, waiter.result(t))
	assert.Equal(t, "w2", waiter.tk.workerID())
	// Both are busy now: a new task waits, and takes whichever frees first.
	late := startAcquire(context.Background(), q.ticket(testKey, "c", "w2", 1))
	queued(t, q, 1)
	holder.release()
	require.NoError(t, late.result(t))
	assert.Equal(t, "w1", late.tk.workerID())
}

func TestQueueTaskKeepsToItsBackend(t *testing.T) {
	q := newSlotQueue(8, time.Minute, nil)
	q.register(testKey, workerEntry{id: "gpu", backend: api.BackendCUDA, device: 1, slots: 1})
	cpu := q.ticket(testKey, "a", "", 0)
	cpu.backend = api.BackendCPU
	assert.ErrorIs(t, cpu.acquire(context.Background(), func(int) { t.Error("queued") }), errNoWorker,
		"a cpu task has no worker among cuda ones")
	onDev := q.ticket(testKey, "b", "", 0)
	onDev.backend, onDev.device = api.BackendCUDA, ptrTo(1)
	require.NoError(t, onDev.acquire(context.Background(), func(int) { t.Error("queued") }))
	assert.Equal(t, "gpu", onDev.workerID())
	assert.False(t, q.hasFree(testKey, api.BackendCUDA, nil), "its one slot is taken")
	assert.False(t, q.hasFree(testKey, api.BackendCPU, nil))
}

func TestQueueDroppedWorkerSendsWaitersElsewhere(t *testing.T) {
	q := newSlotQueue(8, time.Minute, nil)
	q.register(testKey, workerEntry{id: "w1", slots: 1})
	q.register(testKey, workerEntry{id: "w2", slots: 1})
	a, b := q.ticket(testKey, "a", "w1", 0), q.ticket(testKey, "b", "w2", 0)
	require.NoError(t, a.acquire(context.Background(), func(int) {}))
	require.NoError(t, b.acquire(context.Background(), func(int) {}))
	c := startAcquire(context.Background(), q.ticket(testKey, "c", "w1", 0))
	queued(t, q, 1)
	// w1 does not answer: the task that found out drops it and goes back
	// to the head of the queue, ahead of the task that waited for w1.
	a.drop()
	again := startAcquire(context.Background(), a)
	queued(t, q, 2)
	b.release()
	require.NoError(t, again.result(t))
	assert.Equal(t, "w2", a.workerID())
	c.stillWaiting(t)
	a.release()
	require.NoError(t, c.result(t))
	assert.Equal(t, "w2", c.tk.workerID())
}

func TestQueueLastWorkerGoneEndsTheWait(t *testing.T) {
	q := newSlotQueue(8, time.Minute, nil)
	a := q.ticket(testKey, "a", "w1", 1)
	require.NoError(t, a.acquire(context.Background(), func(int) {}))
	b := startAcquire(context.Background(), q.ticket(testKey, "b", "w1", 1))
	queued(t, q, 1)
	a.drop()
	assert.ErrorIs(t, b.result(t), errNoWorker, "the waiting task must find or start another worker")
	assert.ErrorIs(t, a.acquire(context.Background(), func(int) {}), errNoWorker)
	_, counts, depth := q.snapshot()
	assert.Zero(t, depth)
	assert.Empty(t, counts)
}

func TestQueueCancelledTaskLeavesAtOnce(t *testing.T) {
	q := newSlotQueue(8, time.Minute, nil)
	holder := q.ticket(testKey, "t1", "w1", 1)
	require.NoError(t, holder.acquire(context.Background(), func(int) {}))

	ctx, cancel := context.WithCancel(context.Background())
	gone := startAcquire(ctx, q.ticket(testKey, "t2", "w1", 1))
	queued(t, q, 1)
	behind := startAcquire(context.Background(), q.ticket(testKey, "t3", "w1", 1))
	queued(t, q, 2)
	cancel()
	require.ErrorIs(t, gone.result(t), context.Canceled)
	queued(t, q, 1)

	holder.release()
	require.NoError(t, behind.result(t), "the slot goes to the task behind the cancelled one")
	assert.False(t, gone.tk.holding, "the cancelled task never got a slot")
	_, counts, _ := q.snapshot()
	assert.Equal(t, 1, counts[workerKey{"local", "w1"}].busy)
}

func TestQueueFull(t *testing.T) {
	q := newSlotQueue(1, time.Minute, nil)
	require.NoError(t, q.ticket(testKey, "t1", "w1", 1).acquire(context.Background(), func(int) {}))
	assert.Nil(t, q.full(testKey), "nobody waits yet")
	startAcquire(context.Background(), q.ticket(testKey, "t2", "w1", 1))
	queued(t, q, 1)

	err := q.ticket(testKey, "t3", "w1", 1).acquire(context.Background(), func(int) { t.Error("queued past the bound") })
	var e *api.Error
	require.True(t, errors.As(err, &e), "%v", err)
	assert.Equal(t, api.CodeAllSlotsBusy, e.Code)
	assert.GreaterOrEqual(t, e.RetryAfter(), time.Second)
	assert.Contains(t, e.Hint(), "max_queue")
	assert.EqualValues(t, 1, e.Details["max_queue"])

	full := q.full(testKey)
	require.NotNil(t, full, "a new task for the model is refused before it starts")
	assert.GreaterOrEqual(t, full.RetryAfter(), time.Second)
	assert.Nil(t, q.full(queueKey{node: "local", model: "file:/other.gguf"}), "another model with nobody waiting is not refused early")
}

func TestQueueTimeout(t *testing.T) {
	q := newSlotQueue(8, 50*time.Millisecond, nil)
	require.NoError(t, q.ticket(testKey, "t1", "w1", 1).acquire(context.Background(), func(int) {}))
	late := startAcquire(context.Background(), q.ticket(testKey, "t2", "w1", 1))
	err := late.result(t)
	var e *api.Error
	require.True(t, errors.As(err, &e), "%v", err)
	assert.Equal(t, api.CodeAllSlotsBusy, e.Code)
	assert.GreaterOrEqual(t, e.RetryAfter(), time.Second)
	assert.EqualValues(t, 1, e.Details["slots_total"])
	assert.EqualValues(t, 1, e.Details["slots_busy"])
	assert.Contains(t, e.Hint(), "queue_timeout")
	assert.Zero(t, q.depths()[testKey])
}

// A worker that turns a task away although the queen counted a free slot
// (a direct client took it) puts the task back at the head, ahead of a
// task that came later, and the worker counts as full until a slot frees.
func TestQueueTurnedAwayGoesBackToTheHead(t *testing.T) {
	q := newSlotQueue(8, time.Minute, nil)
	ctx := context.Background()
	holder := q.ticket(testKey, "t1", "w1", 2)
	require.NoError(t, holder.acquire(ctx, func(int) {}))
	away := q.ticket(testKey, "t2", "w1", 2)
	require.NoError(t, away.acquire(ctx, func(int) {}), "the queen counts a free slot")
	away.turnedAway(time.Hour)

	later := startAcquire(ctx, q.ticket(testKey, "t3", "w1", 2))
	queued(t, q, 1)
	back := startAcquire(ctx, away)
	queued(t, q, 2)
	queues, _, _ := q.snapshot()
	assert.Equal(t, "t2", queues[0].Tasks[0].ID, "back at the head")

	// A slot freeing ends the back-off: both slots count as free again,
	// and both tasks go.
	holder.release()
	require.NoError(t, back.result(t))
	require.NoError(t, later.result(t))
	_, counts, _ := q.snapshot()
	assert.Equal(t, 2, counts[workerKey{"local", "w1"}].busy)
}

func TestQueueTurnedAwayBackoffEnds(t *testing.T) {
	q := newSlotQueue(8, time.Minute, nil)
	tk := q.ticket(testKey, "t1", "w1", 1)
	require.NoError(t, tk.acquire(context.Background(), func(int) {}))
	tk.turnedAway(20 * time.Millisecond)
	// No task of the queen's ends on the worker: the back-off alone lets
	// the task try again.
	require.NoError(t, startAcquire(context.Background(), tk).result(t))
	tk.release()
	_, counts, _ := q.snapshot()
	assert.Empty(t, counts)
}

func TestQueueOff(t *testing.T) {
	q := newSlotQueue(0, time.Minute, nil)
	for _, id := range []string{"a", "b", "c"} {
		require.NoError(t, q.ticket(testKey, id, "w1", 1).acquire(context.Background(), func(int) { t.Error("queued with the queue off") }))
	}
	assert.Nil(t, q.full(testKey))
	_, counts, depth := q.snapshot()
	assert.Zero(t, depth)
	assert.Equal(t, 3, counts[workerKey{"local", "w1"}].busy, "the tasks are still counted")
}

// Position changes are told at most once a second: two moves in quick
// succession give one narration for the first entry and one, a second
// later, with the latest position.
func TestQueuePositionToldAtMostOnceASecond(t *testing.T) {
	q := newSlotQueue(8, time.Minute, nil)
	ctx := context.Background()
	h := q.ticket(testKey, "h", "w1", 1)
	require.NoError(t, h.acquire(ctx, func(int) {}))
	a := startAcquire(ctx, q.ticket(testKey, "a", "w1", 1))
	queued(t, q, 1)
	b := startAcquire(ctx, q.ticket(testKey, "b", "w1", 1))
	queued(t, q, 2)
	c := startAcquire(ctx, q.ticket(testKey, "c", "w1", 1))
	queued(t, q, 3)

	h.release()
	require.NoError(t, a.result(t))
	a.tk.release()
	require.NoError(t, b.result(t))
	require.Eventually(t, func() bool { return len(c.ahead()) == 2 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, []int{2, 0}, c.ahead(), "the entry, then the latest position once a second had passed")
	b.tk.release()
	require.NoError(t, c.result(t))
}

func TestQueueRetryAfterEstimate(t *testing.T) {
	q := newSlotQueue(8, time.Minute, nil)
	q.hold = 10 * time.Second
	tk := q.ticket(testKey, "t1", "w1", 2)
	require.NoError(t, tk.acquire(context.Background(), func(int) {}))
	q.mu.Lock()
	defer q.mu.Unlock()
	assert.Equal(t, 5, q.retryAfter(testKey), "one task's hold over two slots")
	q.hold = time.Millisecond
	assert.Equal(t, 1, q.retryAfter(testKey), "at least a second")
	q.hold = time.Hour
	assert.Equal(t, int(retryAfterMax/time.Second), q.retryAfter(testKey), "bounded")
}

// BenchmarkQueueFreeSlot is the queue's cost on a task that finds a free
// slot: take it, give it back.
func BenchmarkQueueFreeSlot(b *testing.B) {
	q := newSlotQueue(DefaultMaxQueue, time.Minute, nil)
	ctx := context.Background()
	for b.Loop() {
		tk := q.ticket(testKey, "t", "w1", 4)
		if err := tk.acquire(ctx, func(int) {}); err != nil {
			b.Fatal(err)
		}
		tk.release()
	}
}

// BenchmarkQueueHandoff is a slot passing from one task to the next
// waiting one on a 1-slot worker: the waiter's wake-up included.
func BenchmarkQueueHandoff(b *testing.B) {
	q := newSlotQueue(DefaultMaxQueue, time.Minute, nil)
	ctx := context.Background()
	holder := q.ticket(testKey, "h", "w1", 1)
	if err := holder.acquire(ctx, func(int) {}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		next := q.ticket(testKey, "n", "w1", 1)
		entered := make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- next.acquire(ctx, func(int) { close(entered) }) }()
		<-entered
		holder.release()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		holder = next
	}
	holder.release()
}

// TestQueueManyTasks runs many tasks through a 2-slot worker at once, some
// cancelled while they wait: never more than two hold a slot, every other
// one gets a slot in the end, and the queue ends empty.
func TestQueueManyTasks(t *testing.T) {
	q := newSlotQueue(DefaultMaxQueue, time.Minute, nil)
	const tasks, slots = 40, 2
	var mu sync.Mutex
	holding, most, served, cancelled := 0, 0, 0, 0
	var wg sync.WaitGroup
	for i := range tasks {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if i%5 == 4 {
				time.AfterFunc(time.Duration(i%3)*time.Millisecond, cancel)
			}
			tk := q.ticket(testKey, "t", "w1", slots)
			if err := tk.acquire(ctx, func(int) {}); err != nil {
				assert.ErrorIs(t, err, context.Canceled)
				mu.Lock()
				cancelled++
				mu.Unlock()
				return
			}
			mu.Lock()
			holding++
			most = max(most, holding)
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			holding--
			served++
			mu.Unlock()
			tk.release()
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, most, slots)
	assert.Equal(t, tasks, served+cancelled)
	assert.GreaterOrEqual(t, served, tasks*4/5, "only the cancelled ones may miss out")
	_, counts, depth := q.snapshot()
	assert.Zero(t, depth)
	assert.Empty(t, counts)
}

// TestSlotsInUse: a busy worker's narrated slots in use are the more of the
// hive's count and the queen's, and never more than the worker has (a task
// on its way to be turned away does not use a slot).
func TestSlotsInUse(t *testing.T) {
	for _, c := range []struct{ total, available, queenBusy, want int }{
		{1, 0, 1, 1},
		{1, 0, 2, 1}, // one running, one in flight to be turned away
		{1, 1, 1, 1}, // the hive's list lags the queen's own count
		{4, 1, 2, 3},
		{4, 3, 2, 2},
		{4, 0, 9, 4},
		{0, 0, 2, 2}, // slots unknown: the queen's count as it is
	} {
		assert.Equal(t, c.want, slotsInUse(c.total, c.available, c.queenBusy), "%+v", c)
	}
}
