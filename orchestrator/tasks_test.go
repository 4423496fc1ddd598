package orchestrator

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
	"rbee/internal/testutil"
)

const testModel = "file:/models/tiny.gguf"

func taskBody(node string) api.TaskRequest {
	return api.TaskRequest{Node: node, Model: testModel, Prompt: "Once upon a time", SamplingParams: api.SamplingParams{MaxTokens: 4}}
}

// TestS10IdleWorkerIsReused: a matching idle worker skips straight to
// inference — no spawn, no loading — and its stream is relayed as is.
func TestS10IdleWorkerIsReused(t *testing.T) {
	hive := newFakeHive(t, "")
	w := newFakeWorker(t, "w-idle")
	other := newFakeWorker(t, "w-other")
	hive.addWorker(other.info("file:/models/other.gguf", api.StateIdle))
	hive.addWorker(w.info(testModel, api.StateIdle))
	tq := newTestQueen(t, Config{LocalHivePort: hive.port()})

	res := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
	require.Equal(t, http.StatusOK, res.status)
	require.NoError(t, res.streamErr, "the stream ends with [DONE]")

	taskID := res.header.Get(httpx.RequestIDHeader)
	require.True(t, strings.HasPrefix(taskID, "task-"), taskID)
	first := res.events[0]
	require.Equal(t, api.KindNarration, first.Kind)
	assert.Equal(t, "task_start", first.Narration.Action)
	assert.Equal(t, api.ActorQueen, first.Narration.Actor)
	assert.Equal(t, taskID, first.Narration.RequestID)

	assert.Equal(t, 0, hive.spawnCount(), "no spawn for a warm start")
	require.Len(t, res.narration("worker_reuse"), 1)
	assert.Contains(t, res.narration("worker_reuse")[0], "w-idle")
	assert.Empty(t, res.narration("spawn"))
	assert.Equal(t, "Once upon a time", res.text())
	require.NotNil(t, res.done())
	assert.Equal(t, 4, res.done().TotalTokens)
	assert.Equal(t, 0, other.inferCount())
	assert.Nil(t, res.errorEvent())

	// The worker was called with its own token and the task id.
	require.Equal(t, 1, w.inferCount())
	assert.Equal(t, "Bearer "+w.token, w.auth[0])
	assert.Equal(t, taskID, w.requestIDs[0])
	// The worker's own narration is relayed as is.
	assert.Len(t, res.narration("inference_start"), 1)
	for _, ev := range res.events {
		if ev.Kind == api.KindNarration && ev.Narration.Actor == api.ActorQueen {
			assert.Equal(t, taskID, ev.Narration.RequestID)
			assert.Equal(t, "local", ev.Narration.Node)
		}
	}
}

// TestS11BusyWorker: with the queue off (max_queue 0), a matching busy
// worker leads to inference with busy handling: retries after each delay,
// success when it frees, and ALL_SLOTS_BUSY with the hint when the retries
// run out.
func TestS11BusyWorker(t *testing.T) {
	delays := []time.Duration{30 * time.Millisecond, 60 * time.Millisecond, 120 * time.Millisecond}
	t.Run("frees", func(t *testing.T) {
		hive := newFakeHive(t, "")
		w := newFakeWorker(t, "w-busy")
		w.busyFor = 2
		hive.addWorker(w.info(testModel, api.StateBusy))
		tq := newTestQueen(t, Config{LocalHivePort: hive.port(), BusyRetryDelays: delays, MaxQueue: MaxQueueOf(0)})

		res := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
		require.NoError(t, res.streamErr)
		assert.Nil(t, res.errorEvent())
		assert.Equal(t, "Once upon a time", res.text())
		assert.Equal(t, 0, hive.spawnCount())
		assert.Len(t, res.narration("worker_busy"), 1)
		retries := res.narration("busy_retry")
		require.Len(t, retries, 2)
		assert.Contains(t, retries[0], "retrying in 30ms (retry 1/3)")
		assert.Contains(t, retries[1], "retrying in 60ms (retry 2/3)")
		require.Equal(t, 3, w.inferCount())
		assert.GreaterOrEqual(t, w.inferAt[1].Sub(w.inferAt[0]), delays[0])
		assert.GreaterOrEqual(t, w.inferAt[2].Sub(w.inferAt[1]), delays[1])
	})
	t.Run("exhausted", func(t *testing.T) {
		hive := newFakeHive(t, "")
		w := newFakeWorker(t, "w-busy")
		w.busyFor = 1000
		hive.addWorker(w.info(testModel, api.StateBusy))
		tq := newTestQueen(t, Config{LocalHivePort: hive.port(), BusyRetryDelays: delays, MaxQueue: MaxQueueOf(0)})

		res := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
		require.NoError(t, res.streamErr)
		e := res.errorEvent()
		assertEnvelope(t, e, api.CodeAllSlotsBusy, res.header.Get(httpx.RequestIDHeader))
		assert.Equal(t, "wait for the running inference to finish or use another node", e.Hint())
		assert.EqualValues(t, 1, e.Details["slots_total"])
		assert.EqualValues(t, 1, e.Details["slots_busy"])
		assert.Equal(t, "w-busy", e.Details["worker_id"])
		assert.Len(t, res.narration("busy_retry"), 3)
		require.Equal(t, 4, w.inferCount(), "one try and three retries")
		for i, d := range delays {
			assert.GreaterOrEqual(t, w.inferAt[i+1].Sub(w.inferAt[i]), d, "retry %d", i+1)
		}
		assert.Empty(t, res.text())
	})
}

// TestS06UnknownNode: a node that is not registered is NODE_NOT_FOUND with
// the add-node hint, before any stream.
func TestS06UnknownNode(t *testing.T) {
	tq := newTestQueen(t, Config{})
	res := postTask(t, t.Context(), tq.url, "", taskBody("workstation"), nil)
	require.Equal(t, http.StatusNotFound, res.status)
	assertEnvelope(t, res.envelope, api.CodeNodeNotFound, res.header.Get(httpx.RequestIDHeader))
	assert.Contains(t, res.envelope.Hint(), "rbee setup add-node --name workstation")
	assert.Equal(t, "workstation", res.envelope.Details["node"])
}

// acceptRecorder is a TCP port that accepts connections and drops them at
// once, recording when each arrived: a host where no hive answers.
type acceptRecorder struct {
	ln net.Listener
	mu sync.Mutex
	at []time.Time
}

func newAcceptRecorder(t *testing.T) *acceptRecorder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a := &acceptRecorder{ln: ln}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.mu.Lock()
			a.at = append(a.at, time.Now())
			a.mu.Unlock()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return a
}

func (a *acceptRecorder) port() int { return a.ln.Addr().(*net.TCPAddr).Port }

func (a *acceptRecorder) times() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.at...)
}

// TestS14UnreachableHive (and S36): three attempts, 0, 200 and 400 ms apart
// (the default policy), each narrated, then CONNECTION_TIMEOUT with the hint;
// the registry records the node as unreachable.
// Scenario S14 of DESIGN §12.
func TestS14UnreachableHive(t *testing.T) {
	dead := newAcceptRecorder(t)
	tq := newTestQueen(t, Config{HiveRetryDelays: DefaultHiveRetryDelays})
	require.NoError(t, tq.q.store.Add(t.Context(), api.Node{Name: "workstation", SSHHost: "127.0.0.1", HivePort: dead.port()}))

	res := postTask(t, t.Context(), tq.url, "", taskBody("workstation"), nil)
	require.Equal(t, http.StatusOK, res.status)
	e := res.errorEvent()
	assertEnvelope(t, e, api.CodeConnectionTimeout, res.header.Get(httpx.RequestIDHeader))
	assert.Equal(t, "Check if rbee-hive is running on workstation", e.Hint())
	assert.EqualValues(t, 3, e.Details["attempts"])

	at := dead.times()
	require.Len(t, at, 3, "exactly three attempts")
	assert.GreaterOrEqual(t, at[1].Sub(at[0]), 200*time.Millisecond)
	assert.GreaterOrEqual(t, at[2].Sub(at[1]), 400*time.Millisecond)

	retries := res.narration("hive_retry")
	require.Len(t, retries, 2, "one line per failed attempt before a retry")
	assert.Contains(t, retries[0], "attempt 1/3")
	assert.Contains(t, retries[0], "retrying in 200ms")
	assert.Contains(t, retries[1], "attempt 2/3")
	assert.Contains(t, retries[1], "retrying in 400ms")
	require.Len(t, res.narration("hive_unreachable"), 1)
	assert.Contains(t, res.narration("hive_unreachable")[0], "attempt 3/3")

	n, err := tq.q.store.Get(t.Context(), "workstation")
	require.NoError(t, err)
	assert.Equal(t, api.NodeUnreachable, n.Status)
	assert.NotEmpty(t, n.LastError)
	assert.Zero(t, n.LastConnectedUnix)
}

// TestS13VersionMismatch (and S43): a hive whose major.minor differs is
// refused, naming both versions and the upgrade.
// Scenario S13 of DESIGN §12.
func TestS13VersionMismatch(t *testing.T) {
	for _, node := range []string{"local", "mac"} {
		t.Run(node, func(t *testing.T) {
			hive := newFakeHive(t, "")
			hive.version = "0.9.3"
			tq := newTestQueen(t, Config{LocalHivePort: hive.port()})
			if node != "local" {
				require.NoError(t, tq.q.store.Add(t.Context(), api.Node{Name: node, SSHHost: "127.0.0.1", HivePort: hive.port()}))
			}
			res := postTask(t, t.Context(), tq.url, "", taskBody(node), nil)
			e := res.errorEvent()
			assertEnvelope(t, e, api.CodeVersionMismatch, res.header.Get(httpx.RequestIDHeader))
			assert.Contains(t, e.Message, "0.9.3")
			assert.Contains(t, e.Message, api.Version)
			assert.Contains(t, e.Hint(), "upgrade rbee on "+node)
			assert.Equal(t, "0.9.3", e.Details["hive_version"])
			assert.Equal(t, 0, hive.spawnCount())
			if node != "local" {
				n, err := tq.q.store.Get(t.Context(), node)
				require.NoError(t, err)
				assert.Equal(t, api.NodeReachable, n.Status, "it answered")
				assert.Contains(t, n.LastError, "0.9.3")
			}
		})
	}
	for v, ok := range map[string]bool{"0.1.0": true, "0.1.7": true, "v0.1.2": true, "0.2.0": false, "1.1.0": false, "garbage": false, "0": false} {
		assert.Equal(t, ok, checkVersion("n", v) == nil, v)
	}
}

// TestColdStartSpawnsAndRelaysLoading: no worker → spawn (with backend and
// device), loading progress relayed, then inference.
func TestColdStartSpawnsAndRelaysLoading(t *testing.T) {
	hive := newFakeHive(t, "")
	w := newFakeWorker(t, "w-new")
	w.loading = []api.Progress{{Stage: api.StageLoading, LayersLoaded: 1, LayersTotal: 2, VramMB: 10},
		{Stage: api.StageLoading, LayersLoaded: 2, LayersTotal: 2, VramMB: 20}}
	hive.spawnNext = w
	tq := newTestQueen(t, Config{LocalHivePort: hive.port()})

	res := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
	require.NoError(t, res.streamErr)
	assert.Nil(t, res.errorEvent())
	require.Equal(t, 1, hive.spawnCount())
	assert.Equal(t, api.SpawnRequest{ModelRef: testModel, Backend: api.BackendCPU, Device: 0}, hive.spawnReqs[0])
	var stages []api.Stage
	for _, ev := range res.events {
		if ev.Kind == api.KindProgress {
			stages = append(stages, ev.Progress.Stage)
			assert.Equal(t, "w-new", ev.Progress.WorkerID)
		}
	}
	assert.Equal(t, []api.Stage{api.StageLoading, api.StageLoading, api.StageReady}, stages)
	assert.Len(t, res.narration("spawn"), 1)
	assert.Len(t, res.narration("worker_ready"), 1)
	assert.Equal(t, "Once upon a time", res.text())
}

// TestConcurrentColdTasksShareOneSpawn: tasks for one model on one node
// choose their worker one at a time; the second finds the first one's
// worker loading and waits for it.
func TestConcurrentColdTasksShareOneSpawn(t *testing.T) {
	hive := newFakeHive(t, "")
	w := newFakeWorker(t, "w-shared")
	hive.spawnNext = w
	hive.spawnWait = 100 * time.Millisecond
	tq := newTestQueen(t, Config{LocalHivePort: hive.port()})

	var wg sync.WaitGroup
	results := make([]*taskResult, 3)
	for i := range results {
		wg.Go(func() { results[i] = postTask(t, t.Context(), tq.url, "", taskBody("local"), nil) })
	}
	wg.Wait()
	assert.Equal(t, 1, hive.spawnCount())
	for _, res := range results {
		assert.Nil(t, res.errorEvent())
		assert.Equal(t, "Once upon a time", res.text())
	}
}

// TestS33LoadingTimeout (and S42): a worker stuck loading is
// LOADING_TIMEOUT naming where it got stuck, with the check-logs hint.
// Scenario S33 of DESIGN §12.
func TestS33LoadingTimeout(t *testing.T) {
	hive := newFakeHive(t, "")
	w := newFakeWorker(t, "w-stuck")
	w.loading = []api.Progress{{Stage: api.StageLoading, LayersLoaded: 5, LayersTotal: 23},
		{Stage: api.StageLoading, LayersLoaded: 12, LayersTotal: 23}}
	w.hangLoad = true
	hive.spawnNext = w
	tq := newTestQueen(t, Config{LocalHivePort: hive.port(), LoadingTimeout: 300 * time.Millisecond})

	res := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
	require.NoError(t, res.streamErr)
	e := res.errorEvent()
	assertEnvelope(t, e, api.CodeLoadingTimeout, res.header.Get(httpx.RequestIDHeader))
	assert.Contains(t, e.Message, "stuck at 12/23 layers")
	assert.Equal(t, "check the worker log (rbee logs --node local)", e.Hint())
	assert.EqualValues(t, 12, e.Details["layers_loaded"])
	assert.EqualValues(t, 23, e.Details["layers_total"])
	assert.Equal(t, 0, w.inferCount())
}

// TestLoadingFailures: a worker that dies while loading is WORKER_CRASHED;
// one that reports a load error has it relayed.
func TestLoadingFailures(t *testing.T) {
	t.Run("worker gone", func(t *testing.T) {
		hive := newFakeHive(t, "")
		w := newFakeWorker(t, "w-dies")
		hive.spawnNext = w
		w.srv.Close() // the process died right after the spawn
		tq := newTestQueen(t, Config{LocalHivePort: hive.port()})
		res := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
		e := res.errorEvent()
		assertEnvelope(t, e, api.CodeWorkerCrashed, res.header.Get(httpx.RequestIDHeader))
		assert.Contains(t, e.Message, "w-dies")
		assert.Contains(t, e.Hint(), "rbee logs --node local")
	})
	t.Run("spawn refused", func(t *testing.T) {
		hive := newFakeHive(t, "")
		hive.spawnErr = api.Errorf(api.CodeInsufficientRAM, "not enough RAM: need 1200 MB, have 800 MB").
			With("required", 1200).With("available", 800).WithHint("use a smaller quantization (e.g. Q4_K_M instead of Q8_0)")
		tq := newTestQueen(t, Config{LocalHivePort: hive.port()})
		res := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
		e := res.errorEvent()
		assertEnvelope(t, e, api.CodeInsufficientRAM, res.header.Get(httpx.RequestIDHeader))
		assert.EqualValues(t, 1200, e.Details["required"])
		assert.Contains(t, e.Hint(), "Q4_K_M")
	})
}

// TestS39WorkerStreamCut: a worker stream that ends without [DONE] becomes
// a WORKER_CRASHED error event with the tokens generated.
func TestS39WorkerStreamCut(t *testing.T) {
	hive := newFakeHive(t, "")
	w := newFakeWorker(t, "w-crash")
	w.tokens = []string{"a", "b", "c", "d", "e", "f"}
	w.cutAfter = 3
	hive.addWorker(w.info(testModel, api.StateIdle))
	tq := newTestQueen(t, Config{LocalHivePort: hive.port()})

	body := taskBody("local")
	body.MaxTokens = 6
	res := postTask(t, t.Context(), tq.url, "", body, nil)
	require.NoError(t, res.streamErr, "the queen's own stream still ends with [DONE]")
	assert.Equal(t, "abc", res.text())
	e := res.errorEvent()
	assertEnvelope(t, e, api.CodeWorkerCrashed, res.header.Get(httpx.RequestIDHeader))
	assert.Contains(t, e.Message, "stream closed unexpectedly")
	assert.EqualValues(t, 3, e.Details["tokens_generated"])
	assert.EqualValues(t, 6, e.Details["max_tokens"])
	assert.Nil(t, res.done())
}

// TestTaskCancel: DELETE /v2/tasks/{id} reaches the worker as DELETE
// /v1/inference/{id}; the stream ends with done "cancelled".
func TestTaskCancel(t *testing.T) {
	hive := newFakeHive(t, "")
	w := newFakeWorker(t, "w-slow")
	w.tokens = strings.Split(strings.Repeat("x", 500), "")
	w.tokenDelay = 10 * time.Millisecond
	hive.addWorker(w.info(testModel, api.StateIdle))
	tq := newTestQueen(t, Config{LocalHivePort: hive.port()})

	var once sync.Once
	var taskID string
	res := postTask(t, t.Context(), tq.url, "", taskBody("local"), func(ev api.Event) {
		if ev.Kind == api.KindNarration && ev.Narration.Action == "task_start" {
			taskID = ev.Narration.RequestID
		}
		if ev.Kind == api.KindToken {
			once.Do(func() {
				status, e := call(t, http.MethodDelete, tq.url+"/v2/tasks/"+taskID, "", nil, nil)
				assert.Nil(t, e)
				assert.Equal(t, http.StatusNoContent, status)
			})
		}
	})
	require.NoError(t, res.streamErr)
	select {
	case id := <-w.deleted:
		assert.Equal(t, taskID, id)
	default:
		t.Fatal("the worker got no DELETE")
	}
	d := res.done()
	require.NotNil(t, d)
	assert.Equal(t, api.StopCancelled, d.StopReason)
	assert.Less(t, d.TotalTokens, 500)

	// Idempotent: the task is over, unknown ids are 204 too.
	status, e := call(t, http.MethodDelete, tq.url+"/v2/tasks/"+taskID, "", nil, nil)
	assert.Nil(t, e)
	assert.Equal(t, http.StatusNoContent, status)
}

// TestTaskCancelWhileLoading: a task cancelled before its worker generates
// ends at once with done "cancelled".
func TestTaskCancelWhileLoading(t *testing.T) {
	hive := newFakeHive(t, "")
	w := newFakeWorker(t, "w-loading")
	w.loading = []api.Progress{{Stage: api.StageLoading, LayersLoaded: 1, LayersTotal: 9}}
	w.hangLoad = true
	hive.spawnNext = w
	tq := newTestQueen(t, Config{LocalHivePort: hive.port()})

	var taskID string
	res := postTask(t, t.Context(), tq.url, "", taskBody("local"), func(ev api.Event) {
		if ev.Kind == api.KindNarration && ev.Narration.Action == "task_start" {
			taskID = ev.Narration.RequestID
		}
		if ev.Kind == api.KindProgress {
			call(t, http.MethodDelete, tq.url+"/v2/tasks/"+taskID, "", nil, nil)
		}
	})
	require.NoError(t, res.streamErr)
	require.NotNil(t, res.done())
	assert.Equal(t, api.StopCancelled, res.done().StopReason)
	assert.Nil(t, res.errorEvent())
	assert.Equal(t, 0, w.inferCount())
}

// TestClientDisconnectCancelsGeneration: when the keeper's connection
// closes, the queen cancels the worker's generation.
func TestClientDisconnectCancelsGeneration(t *testing.T) {
	hive := newFakeHive(t, "")
	w := newFakeWorker(t, "w-slow")
	w.tokens = strings.Split(strings.Repeat("y", 1000), "")
	w.tokenDelay = 10 * time.Millisecond
	hive.addWorker(w.info(testModel, api.StateIdle))
	tq := newTestQueen(t, Config{LocalHivePort: hive.port()})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var taskID string
	res := postTask(t, ctx, tq.url, "", taskBody("local"), func(ev api.Event) {
		if ev.Kind == api.KindNarration && ev.Narration.Action == "task_start" {
			taskID = ev.Narration.RequestID
		}
		if ev.Kind == api.KindToken && ev.Token.Index == 2 {
			cancel()
		}
	})
	require.Error(t, res.streamErr)
	select {
	case id := <-w.deleted:
		assert.Equal(t, taskID, id)
	case <-time.After(10 * time.Second):
		t.Fatal("the worker's generation was not cancelled")
	}
	assert.Eventually(t, func() bool { return tq.q.tasks.running() == 0 }, 10*time.Second, 10*time.Millisecond)
}

// TestCloseEndsRunningTasks: closing the queen ends a running task with
// SHUTTING_DOWN and cancels its generation; new tasks are refused.
func TestCloseEndsRunningTasks(t *testing.T) {
	hive := newFakeHive(t, "")
	w := newFakeWorker(t, "w-slow")
	w.tokens = strings.Split(strings.Repeat("z", 1000), "")
	w.tokenDelay = 10 * time.Millisecond
	hive.addWorker(w.info(testModel, api.StateIdle))
	tq := newTestQueen(t, Config{LocalHivePort: hive.port()})

	var once sync.Once
	res := postTask(t, t.Context(), tq.url, "", taskBody("local"), func(ev api.Event) {
		if ev.Kind == api.KindToken {
			once.Do(func() { go tq.q.Close() })
		}
	})
	require.NoError(t, res.streamErr)
	assertEnvelope(t, res.errorEvent(), api.CodeShuttingDown, res.header.Get(httpx.RequestIDHeader))
	select {
	case <-w.deleted:
	case <-time.After(10 * time.Second):
		t.Fatal("the generation was not cancelled")
	}
	after := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
	require.Equal(t, http.StatusServiceUnavailable, after.status)
	assertEnvelope(t, after.envelope, api.CodeShuttingDown, "")
	assert.Equal(t, 0, hive.adminStop, "a hive the queen did not start is left alone")
}

// TestBackendAndDeviceMatching: a worker is reused only for the backend and
// device the task names.
func TestBackendAndDeviceMatching(t *testing.T) {
	hive := newFakeHive(t, "")
	cpu := newFakeWorker(t, "w-cpu")
	hive.addWorker(cpu.info(testModel, api.StateIdle))
	cuda := newFakeWorker(t, "w-cuda1")
	info := cuda.info(testModel, api.StateIdle)
	info.Backend, info.Device = api.BackendCUDA, 1
	hive.addWorker(info)
	hive.spawnErr = api.Errorf(api.CodeBackendUnavailable, "no cuda engine in this build yet").With("backend", "cuda")
	tq := newTestQueen(t, Config{LocalHivePort: hive.port()})

	dev := func(d int) *int { return &d }
	for _, tc := range []struct {
		backend api.Backend
		device  *int
		want    string // the worker used, or "" for a spawn
	}{
		{"", nil, "w-cpu"},
		{"cpu", nil, "w-cpu"},
		{"cuda", nil, "w-cuda1"},
		{"cuda", dev(1), "w-cuda1"},
		{"cuda", dev(0), ""},
		{"", dev(1), "w-cuda1"},
	} {
		body := taskBody("local")
		body.Backend, body.Device = tc.backend, tc.device
		res := postTask(t, t.Context(), tq.url, "", body, nil)
		if tc.want == "" {
			assertEnvelope(t, res.errorEvent(), api.CodeBackendUnavailable, "")
			continue
		}
		require.Nil(t, res.errorEvent(), "%+v", tc)
		require.Len(t, res.narration("worker_reuse"), 1)
		assert.Contains(t, res.narration("worker_reuse")[0], tc.want, "%+v", tc)
	}
}

// metricsText reads the queen's GET /metrics ("" when it cannot), for
// polling: a task's counters move just after its stream ends.
func metricsText(url string) string {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil {
		return ""
	}
	return b.String()
}

// TestWorkerStoppedMidStream: a worker stopped by anything but the task's
// own cancellation ends the task with an error, never with a done
// "cancelled" the client did not ask for; the queen logs and counts the
// task as failed with that code, not as done or cancelled.
func TestWorkerStoppedMidStream(t *testing.T) {
	tests := []struct {
		name  string
		setup func(w *fakeWorker)
		code  api.Code
		msg   string
	}{
		{"the worker shuts down", func(w *fakeWorker) {
			w.failAfter = 3
			w.failWith = api.Errorf(api.CodeShuttingDown, "worker w-stop is shutting down: the generation stopped after 3 of at most 6 tokens").
				With("worker_id", "w-stop").With("tokens_generated", 3).With("max_tokens", 6)
		}, api.CodeShuttingDown, "is shutting down"},
		{"the worker's stream breaks", func(w *fakeWorker) { w.cutAfter = 3 }, api.CodeWorkerCrashed, "stream closed unexpectedly"},
		{"the worker says cancelled, unasked", func(w *fakeWorker) { w.cancelAt = 3 }, api.CodeWorkerCrashed, "though this task did not cancel it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hive := newFakeHive(t, "")
			w := newFakeWorker(t, "w-stop")
			w.tokens = []string{"a", "b", "c", "d", "e", "f"}
			tc.setup(w)
			hive.addWorker(w.info(testModel, api.StateIdle))
			logs := &testutil.SyncBuffer{}
			tq := newTestQueen(t, Config{LocalHivePort: hive.port(),
				Logger: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})})

			body := taskBody("local")
			body.MaxTokens = 6
			res := postTask(t, t.Context(), tq.url, "", body, nil)
			require.NoError(t, res.streamErr, "the queen's own stream ends with [DONE]")
			assert.Equal(t, "abc", res.text())
			assert.Nil(t, res.done(), "no done event: the answer is not complete")
			e := res.errorEvent()
			assertEnvelope(t, e, tc.code, res.header.Get(httpx.RequestIDHeader))
			assert.Contains(t, e.Message, tc.msg)
			assert.Equal(t, api.LocalNode, e.Details["node"])
			assert.Equal(t, "w-stop", e.Details["worker_id"])
			assert.EqualValues(t, 3, e.Details["tokens_generated"])
			assert.EqualValues(t, 6, e.Details["max_tokens"])
			assert.Empty(t, w.deleted, "the queen did not cancel the generation")

			assert.Eventually(t, func() bool {
				m := metricsText(tq.url)
				return strings.Contains(m, `rbee_tasks_total{outcome="failed"} 1`) &&
					strings.Contains(m, `rbee_task_errors_total{code="`+string(tc.code)+`"} 1`)
			}, 5*time.Second, 10*time.Millisecond, "the task counts as failed with %s", tc.code)
			m := metricsText(tq.url)
			assert.Contains(t, m, `rbee_tasks_total{outcome="done"} 0`)
			assert.Contains(t, m, `rbee_tasks_total{outcome="cancelled"} 0`)
			assert.Eventually(t, func() bool { return strings.Contains(logs.String(), "task ended") },
				5*time.Second, 10*time.Millisecond)
			ended := lineWith(logs.String(), "task ended")
			assert.Contains(t, ended, "outcome=failed")
			assert.Contains(t, ended, "code="+string(tc.code))
		})
	}
}

// lineWith returns the first line of text holding s.
func lineWith(text, s string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// TestFailureOutlivesClientLeaving: a client that hangs up as soon as it
// reads the error event (as rbee infer does) does not turn the failed task
// into a cancelled one in the queen's log and metrics.
func TestFailureOutlivesClientLeaving(t *testing.T) {
	hive := newFakeHive(t, "")
	w := newFakeWorker(t, "w-stop")
	w.tokens = []string{"a", "b", "c", "d"}
	w.failAfter = 2
	w.failWith = api.Errorf(api.CodeShuttingDown, "worker w-stop is shutting down")
	hive.addWorker(w.info(testModel, api.StateIdle))
	logs := &testutil.SyncBuffer{}
	tq := newTestQueen(t, Config{LocalHivePort: hive.port(), Logger: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})})

	for i := 1; i <= 5; i++ {
		resp, err := (&httpx.Client{BaseURL: tq.url}).Stream(t.Context(), http.MethodPost, "/v2/tasks", taskBody("local"), nil)
		require.NoError(t, err)
		var got *api.Error
		for ev, err := range sse.Read(resp.Body) {
			require.NoError(t, err)
			if ev.Kind == api.KindError {
				got = ev.Error
				break
			}
		}
		resp.Body.Close() // gone before [DONE]
		require.NotNil(t, got)
		assert.Equal(t, api.CodeShuttingDown, got.Code)
		assert.Eventually(t, func() bool {
			return strings.Contains(metricsText(tq.url), fmt.Sprintf(`rbee_tasks_total{outcome="failed"} %d`, i))
		}, 5*time.Second, 10*time.Millisecond, "task %d counts as failed:\n%s", i, metricsText(tq.url))
	}
	assert.Contains(t, metricsText(tq.url), `rbee_tasks_total{outcome="cancelled"} 0`)
	assert.Eventually(t, func() bool { return strings.Count(logs.String(), "task ended") == 5 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 5, strings.Count(logs.String(), "outcome=failed"), logs.String())
}
