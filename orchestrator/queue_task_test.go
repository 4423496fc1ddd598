package orchestrator

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
)

// queueSetup is a queen with a fake hive holding one idle 1-slot worker
// whose generations wait for its gate.
type queueSetup struct {
	tq     *testQueen
	hive   *fakeHive
	worker *fakeWorker
	gate   chan struct{}
	open   sync.Once
}

func newQueueSetup(t *testing.T, cfg Config) *queueSetup {
	t.Helper()
	s := &queueSetup{hive: newFakeHive(t, ""), worker: newFakeWorker(t, "w-1"), gate: make(chan struct{})}
	s.worker.gate = s.gate
	s.hive.addWorker(s.worker.info(testModel, api.StateIdle))
	cfg.LocalHivePort = s.hive.port()
	s.tq = newTestQueen(t, cfg)
	t.Cleanup(s.release)
	return s
}

// release lets every generation go.
func (s *queueSetup) release() { s.open.Do(func() { close(s.gate) }) }

// running is one task posted in the background.
type running struct {
	res   chan *taskResult
	id    chan string // the task id, from its first event
	queue chan string // the "queued" narration, once
}

// post starts a task and reports its id and its first "queued" narration
// as they come.
func (s *queueSetup) post(t *testing.T, ctx context.Context) *running {
	r := &running{res: make(chan *taskResult, 1), id: make(chan string, 1), queue: make(chan string, 1)}
	go func() {
		var once, qonce sync.Once
		r.res <- postTask(t, ctx, s.tq.url, "", taskBody("local"), func(ev api.Event) {
			if ev.Kind == api.KindNarration {
				once.Do(func() { r.id <- ev.Narration.RequestID })
				if ev.Narration.Action == "queued" {
					qonce.Do(func() { r.queue <- ev.Narration.Human })
				}
			}
		})
	}()
	return r
}

func recv[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10 s", what)
		var zero T
		return zero
	}
}

// generating waits until the worker runs n generations.
func (s *queueSetup) generating(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		s.worker.mu.Lock()
		defer s.worker.mu.Unlock()
		return s.worker.active == n
	}, 10*time.Second, time.Millisecond)
}

func (s *queueSetup) queueStatus(t *testing.T) api.QueueStatus {
	t.Helper()
	var st api.QueueStatus
	status, e := call(t, http.MethodGet, s.tq.url+"/v2/queue", "", nil, &st)
	require.Nil(t, e)
	require.Equal(t, http.StatusOK, status)
	return st
}

// TestQueueTaskWaitsForAFreeSlot: with a 1-slot worker, a second task
// waits in the queue with the narration, shows in GET /v2/queue, the
// worker list and /metrics, and succeeds once the first ends; the worker
// never runs two generations at once.
func TestQueueTaskWaitsForAFreeSlot(t *testing.T) {
	s := newQueueSetup(t, Config{})
	first := s.post(t, t.Context())
	s.generating(t, 1)
	second := s.post(t, t.Context())
	assert.Equal(t, "Waiting for a free slot on worker w-1 (0 ahead)", recv(t, second.queue, "queued narration"))
	secondID := recv(t, second.id, "task id")

	st := s.queueStatus(t)
	assert.Equal(t, 1, st.Depth)
	assert.Equal(t, DefaultMaxQueue, st.MaxQueue)
	assert.Equal(t, DefaultQueueTimeout.Milliseconds(), st.TimeoutMs)
	require.Len(t, st.Queues, 1)
	assert.Equal(t, "local", st.Queues[0].Node)
	assert.Equal(t, testModel, st.Queues[0].Model)
	require.Len(t, st.Queues[0].Tasks, 1)
	task := st.Queues[0].Tasks[0]
	assert.Equal(t, secondID, task.ID)
	assert.Equal(t, 1, task.Position)
	assert.Equal(t, "w-1", task.WorkerID)
	assert.WithinDuration(t, time.Now(), task.WaitingSince, time.Minute)
	require.Len(t, st.Workers, 1)
	assert.Equal(t, api.WorkerSlots{Node: "local", WorkerID: "w-1", Model: testModel, SlotsBusy: 1, SlotsTotal: 1, QueueDepth: 1}, st.Workers[0])

	var list api.WorkerList
	_, e := call(t, http.MethodGet, s.tq.url+"/v2/workers/list", "", nil, &list)
	require.Nil(t, e)
	require.Len(t, list.Workers, 1)
	assert.Equal(t, 1, list.Workers[0].SlotsBusy)
	assert.Equal(t, 1, list.Workers[0].SlotsTotal)
	assert.Equal(t, 1, list.Workers[0].QueueDepth)

	metrics := scrape(t, s.tq.url)
	assert.Contains(t, metrics, "rbee_queue_depth 1\n")
	assert.Contains(t, metrics, `rbee_queue_depth{node="local",model="`+testModel+`"} 1`+"\n")

	s.release()
	for _, r := range []*running{first, second} {
		res := recv(t, r.res, "task result")
		require.NoError(t, res.streamErr)
		assert.Nil(t, res.errorEvent())
		assert.Equal(t, "Once upon a time", res.text())
	}
	s.worker.mu.Lock()
	assert.Equal(t, 1, s.worker.maxActive, "one generation at a time on a 1-slot worker")
	assert.Len(t, s.worker.inferAt, 2, "no busy answer: the queen held the task back")
	s.worker.mu.Unlock()

	assert.Zero(t, s.queueStatus(t).Depth)
	metrics = scrape(t, s.tq.url)
	assert.Contains(t, metrics, "rbee_queue_wait_seconds_count 1\n")
	assert.Contains(t, metrics, "rbee_time_to_first_token_seconds_count 2\n")
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(data)
}

// TestQueueCancelledTaskLeavesTheQueue: DELETE /v2/tasks/{id} of a queued
// task ends it at once, as cancelled, and it never reaches the worker.
func TestQueueCancelledTaskLeavesTheQueue(t *testing.T) {
	s := newQueueSetup(t, Config{})
	first := s.post(t, t.Context())
	s.generating(t, 1)
	second := s.post(t, t.Context())
	recv(t, second.queue, "queued narration")
	id := recv(t, second.id, "task id")

	status, e := call(t, http.MethodDelete, s.tq.url+"/v2/tasks/"+id, "", nil, nil)
	require.Nil(t, e)
	assert.Equal(t, http.StatusNoContent, status)
	res := recv(t, second.res, "the cancelled task's end")
	require.NoError(t, res.streamErr)
	require.NotNil(t, res.done())
	assert.Equal(t, api.StopCancelled, res.done().StopReason)
	assert.Zero(t, s.queueStatus(t).Depth)

	s.release()
	require.Nil(t, recv(t, first.res, "first task").errorEvent())
	assert.Equal(t, 1, s.worker.inferCount(), "the cancelled task never reached the worker")
}

// TestQueueDisconnectedClientLeavesTheQueue: a client that goes away while
// its task waits takes the task out of the queue.
func TestQueueDisconnectedClientLeavesTheQueue(t *testing.T) {
	s := newQueueSetup(t, Config{})
	first := s.post(t, t.Context())
	s.generating(t, 1)
	ctx, cancel := context.WithCancel(t.Context())
	second := s.post(t, ctx)
	recv(t, second.queue, "queued narration")
	cancel()
	require.Eventually(t, func() bool { return s.queueStatus(t).Depth == 0 }, 10*time.Second, 5*time.Millisecond)
	s.release()
	require.Nil(t, recv(t, first.res, "first task").errorEvent())
	recv(t, second.res, "the gone client's end")
	assert.Equal(t, 1, s.worker.inferCount(), "the task of the gone client never reached the worker")
}

// TestQueueFullIs503WithRetryAfter: past max_queue a task is refused
// before its stream starts, with 503, Retry-After and the hint, on
// /v2/tasks and on the OpenAI endpoint.
func TestQueueFullIs503WithRetryAfter(t *testing.T) {
	s := newQueueSetup(t, Config{MaxQueue: MaxQueueOf(1)})
	s.post(t, t.Context())
	s.generating(t, 1)
	second := s.post(t, t.Context())
	recv(t, second.queue, "queued narration")

	res := postTask(t, t.Context(), s.tq.url, "", taskBody("local"), nil)
	require.Equal(t, http.StatusServiceUnavailable, res.status)
	assertEnvelope(t, res.envelope, api.CodeAllSlotsBusy, res.header.Get(httpx.RequestIDHeader))
	assert.Contains(t, res.envelope.Hint(), "max_queue")
	ra, err := strconv.Atoi(res.header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After is whole seconds: %q", res.header.Get("Retry-After"))
	assert.GreaterOrEqual(t, ra, 1)
	assert.EqualValues(t, ra, res.envelope.Details[api.DetailRetryAfter])

	a := oaiCall(t, "POST", s.tq.url+"/v1/completions", "", map[string]any{"model": testModel, "prompt": "Once", "max_tokens": 3}, nil)
	assert.Equal(t, http.StatusServiceUnavailable, a.status, "%s", a.body)
	ra, err = strconv.Atoi(a.header.Get("Retry-After"))
	require.NoError(t, err, "the OpenAI endpoint sends Retry-After too")
	assert.GreaterOrEqual(t, ra, 1)
	s.release()
}

// TestQueueTimeoutIs503WithRetryAfter: a task that waits longer than
// queue_timeout fails with ALL_SLOTS_BUSY and a retry estimate: an error
// event on /v2/tasks (its stream had started), a 503 with Retry-After on
// the OpenAI endpoint (nothing was sent yet).
func TestQueueTimeoutIs503WithRetryAfter(t *testing.T) {
	s := newQueueSetup(t, Config{QueueTimeout: 150 * time.Millisecond})
	s.post(t, t.Context())
	s.generating(t, 1)

	res := postTask(t, t.Context(), s.tq.url, "", taskBody("local"), nil)
	require.Equal(t, http.StatusOK, res.status)
	assert.Len(t, res.narration("queued"), 1)
	e := res.errorEvent()
	assertEnvelope(t, e, api.CodeAllSlotsBusy, res.header.Get(httpx.RequestIDHeader))
	assert.GreaterOrEqual(t, e.RetryAfter(), time.Second)
	assert.Contains(t, e.Hint(), "queue_timeout")

	a := oaiCall(t, "POST", s.tq.url+"/v1/completions", "", map[string]any{"model": testModel, "prompt": "Once", "max_tokens": 3}, nil)
	assert.Equal(t, http.StatusServiceUnavailable, a.status, "%s", a.body)
	ra, err := strconv.Atoi(a.header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After: %q", a.header.Get("Retry-After"))
	assert.GreaterOrEqual(t, ra, 1)
	var body map[string]map[string]any
	require.NoError(t, json.Unmarshal(a.body, &body))
	assert.Equal(t, "all_slots_busy", body["error"]["code"])
	assert.Equal(t, 1, s.worker.inferCount(), "the timed-out tasks never reached the worker")
	s.release()
}

// TestQueueWorkerBusyAnyway: a worker that answers ALL_SLOTS_BUSY although
// the queen counted a free slot (a client called it directly) puts the task
// back at the head of the queue; it goes once the worker takes it.
func TestQueueWorkerBusyAnyway(t *testing.T) {
	hive := newFakeHive(t, "")
	w := newFakeWorker(t, "w-1")
	w.busyFor = 2
	hive.addWorker(w.info(testModel, api.StateIdle))
	tq := newTestQueen(t, Config{LocalHivePort: hive.port()})
	res := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
	require.NoError(t, res.streamErr)
	assert.Nil(t, res.errorEvent())
	assert.Equal(t, "Once upon a time", res.text())
	assert.Equal(t, 3, w.inferCount(), "two busy answers, then the generation")
	assert.NotEmpty(t, res.narration("queued"))
	assert.Empty(t, res.narration("busy_retry"), "the queue, not the busy retries")
	assert.GreaterOrEqual(t, w.inferAt[1].Sub(w.inferAt[0]), 10*time.Millisecond, "the back-off of the first busy answer")
	assert.GreaterOrEqual(t, w.inferAt[2].Sub(w.inferAt[1]), 20*time.Millisecond, "the back-off of the second")
}
