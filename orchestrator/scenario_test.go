package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/proc"
	"rbee/internal/synth"
	"rbee/internal/testutil"
)

// These tests run the real thing: `rbee queen` (or an in-process Queen)
// starting a real `rbee hive`, which starts a real `rbee worker` on a tiny
// synthetic model.

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds rbee and runs queen, hive and worker processes")
	}
}

// tinyModel writes a tiny random llama model and returns its file: reference.
func tinyModel(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	require.NoError(t, synth.Write(path, synth.Tiny("Q8_0")))
	return "file:" + path
}

// daemon is an rbee daemon running as a child of the test.
type daemon struct {
	p   *proc.Process
	url string
	log string
}

// startDaemon runs `rbee ROLE ARGS…` with a clean token environment, waits
// for its health endpoint and stops it (SIGTERM, then SIGKILL) at cleanup.
func startDaemon(t *testing.T, home, role, healthPath string, port int, args ...string) *daemon {
	t.Helper()
	bin := testutil.RbeeBinary(t)
	d := &daemon{url: "http://127.0.0.1:" + strconv.Itoa(port), log: filepath.Join(home, role+"-test.log")}
	p, err := proc.Start(proc.Spec{Path: bin, Args: append([]string{role, "--port", strconv.Itoa(port)}, args...),
		Env: []string{"RBEE_API_KEY=", "RBEE_HOME=" + home}, LogFile: d.log})
	require.NoError(t, err)
	d.p = p
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		_ = p.Stop(ctx, 35*time.Second)
		if t.Failed() {
			b, _ := os.ReadFile(d.log)
			t.Logf("%s log:\n%s", role, b)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(d.url + healthPath)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		select {
		case <-p.Exited():
			b, _ := os.ReadFile(d.log)
			t.Fatalf("rbee %s exited with status %d before answering:\n%s", role, p.ExitCode(), b)
		default:
		}
		require.True(t, time.Now().Before(deadline), "rbee %s did not answer within 30 s", role)
		time.Sleep(50 * time.Millisecond)
	}
}

// startQueenProcess runs `rbee queen` on free ports with its own home.
func startQueenProcess(t *testing.T, hivePort int) (*daemon, string) {
	t.Helper()
	home := t.TempDir()
	if hivePort == 0 {
		hivePort = testutil.FreePort(t)
	}
	q := startDaemon(t, home, "queen", "/health", testutil.FreePort(t),
		"--local-hive-port", strconv.Itoa(hivePort), "--local-worker-port-start", strconv.Itoa(testutil.FreePort(t)),
		"--binary", testutil.RbeeBinary(t), "--home", home)
	return q, home
}

// alive reports whether a process exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// hivePid reads the pid from the hive_start narration.
func hivePid(t *testing.T, res *taskResult) int {
	t.Helper()
	lines := res.narration("hive_start")
	require.Len(t, lines, 1, "the task started the hive")
	_, after, ok := strings.Cut(lines[0], "pid ")
	require.True(t, ok, lines[0])
	pid, err := strconv.Atoi(strings.TrimRight(after, ")"))
	require.NoError(t, err, lines[0])
	return pid
}

// listWorkers reads the queen's worker list; t may be the CollectT of an
// EventuallyWithT condition.
func listWorkers(t require.TestingT, url string) (api.WorkerList, string) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	resp, err := http.Get(url + "/v2/workers/list")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var list api.WorkerList
	require.NoError(t, json.Unmarshal(body, &list))
	return list, string(body)
}

// TestScenarioLocalNode drives one real `rbee queen` through the local
// node's whole life: cold start, warm start, the worker endpoints,
// cancellation and a worker shutdown.
func TestScenarioLocalNode(t *testing.T) {
	skipShort(t)
	model := tinyModel(t)
	q, home := startQueenProcess(t, 0)
	task := api.TaskRequest{Node: "local", Model: model, Prompt: "Once upon a time", SamplingParams: api.SamplingParams{MaxTokens: 12, Seed: ptrTo(uint64(7))}}

	// The cold start, which every subtest below builds on (each can run
	// alone: go test -run 'TestScenarioLocalNode/S61').
	cold := postTask(t, t.Context(), q.url, "", task, nil)
	require.Equal(t, http.StatusOK, cold.status)
	require.NoError(t, cold.streamErr)
	require.Nil(t, cold.errorEvent(), "%+v", cold.errorEvent())
	require.NotNil(t, cold.done())
	workerID := cold.done().WorkerID
	require.NotEmpty(t, workerID)
	hive := hivePid(t, cold)

	t.Run("S58 cold start", func(t *testing.T) {
		res := cold
		taskID := res.header.Get(httpx.RequestIDHeader)
		assert.Equal(t, "task_start", res.events[0].Narration.Action)
		assert.Equal(t, taskID, res.events[0].Narration.RequestID)
		assert.Len(t, res.narration("hive_start"), 1)
		assert.Len(t, res.narration("spawn"), 1)
		assert.Len(t, res.narration("inference_start"), 1, "the worker's narration is relayed")
		d := res.done()
		assert.Equal(t, 12, d.TotalTokens)
		assert.Equal(t, taskID, d.RequestID)
		var sawReady bool
		for _, ev := range res.events {
			if ev.Kind == api.KindProgress && ev.Progress.Stage == api.StageReady {
				sawReady = true
			}
		}
		assert.True(t, sawReady, "the loading stream's ready is relayed")
		assert.FileExists(t, filepath.Join(home, "logs", "hive-local.log"))
	})

	t.Run("S10 warm start", func(t *testing.T) {
		res := postTask(t, t.Context(), q.url, "", task, nil)
		require.Nil(t, res.errorEvent())
		assert.Empty(t, res.narration("spawn"))
		assert.Empty(t, res.narration("hive_start"))
		require.Len(t, res.narration("worker_reuse"), 1)
		assert.Contains(t, res.narration("worker_reuse")[0], workerID)
		require.NotNil(t, res.done())
		assert.Equal(t, workerID, res.done().WorkerID)
	})

	t.Run("S59 workers list", func(t *testing.T) {
		list, raw := listWorkers(t, q.url)
		require.Len(t, list.Workers, 1)
		w := list.Workers[0]
		assert.Equal(t, workerID, w.ID)
		assert.Equal(t, "local", w.Node)
		assert.Equal(t, model, w.ModelRef)
		assert.Equal(t, api.StateIdle, w.State)
		assert.NotContains(t, raw, "api_key", "worker tokens never reach keepers")
	})

	t.Run("S60 workers health", func(t *testing.T) {
		var nh api.NodeHealth
		_, e := call(t, http.MethodGet, q.url+"/v2/workers/health?node=local", "", nil, &nh)
		require.Nil(t, e)
		assert.Equal(t, "alive", nh.Hive.Status)
		assert.Equal(t, api.Version, nh.Hive.Version)
		require.Len(t, nh.Workers, 1)
	})

	t.Run("cancel reaches the worker", func(t *testing.T) {
		long := task
		long.MaxTokens = 480
		var once sync.Once
		var taskID string
		res := postTask(t, t.Context(), q.url, "", long, func(ev api.Event) {
			if ev.Kind == api.KindNarration && ev.Narration.Action == "task_start" {
				taskID = ev.Narration.RequestID
			}
			if ev.Kind == api.KindToken {
				once.Do(func() {
					status, e := call(t, http.MethodDelete, q.url+"/v2/tasks/"+taskID, "", nil, nil)
					assert.Nil(t, e)
					assert.Equal(t, http.StatusNoContent, status)
				})
			}
		})
		require.NoError(t, res.streamErr)
		d := res.done()
		require.NotNil(t, d)
		assert.Equal(t, api.StopCancelled, d.StopReason, "the worker stopped the generation")
		assert.Less(t, d.TotalTokens, 480)
		// The slot is free again.
		assert.EventuallyWithT(t, func(c *assert.CollectT) {
			list, _ := listWorkers(c, q.url)
			if assert.Len(c, list.Workers, 1) {
				assert.Equal(c, api.StateIdle, list.Workers[0].State)
			}
		}, 10*time.Second, 20*time.Millisecond)
	})

	t.Run("S61 workers shutdown", func(t *testing.T) {
		list, _ := listWorkers(t, q.url)
		require.Len(t, list.Workers, 1)
		pid := list.Workers[0].PID
		var out map[string]string
		_, e := call(t, http.MethodPost, q.url+"/v2/workers/shutdown", "", api.WorkerShutdownRequest{WorkerID: workerID}, &out)
		require.Nil(t, e)
		assert.Equal(t, "local", out["node"])
		list, _ = listWorkers(t, q.url)
		assert.Empty(t, list.Workers)
		if pid > 0 {
			assert.Eventually(t, func() bool { return !alive(pid) }, 15*time.Second, 20*time.Millisecond)
		}
	})

	t.Run("a hive that died is started again", func(t *testing.T) {
		require.Positive(t, hive)
		require.NoError(t, syscall.Kill(hive, syscall.SIGKILL))
		require.Eventually(t, func() bool { return !alive(hive) }, 10*time.Second, 10*time.Millisecond)
		res := postTask(t, t.Context(), q.url, "", task, nil)
		require.Nil(t, res.errorEvent(), "%+v", res.errorEvent())
		assert.NotEqual(t, hive, hivePid(t, res), "a new hive")
		require.NotNil(t, res.done())
	})
}

// TestScenarioSIGTERMStopsWhatItStarted: SIGTERM to a real `rbee queen`
// stops the local hive it started and that hive's workers: no process left.
func TestScenarioSIGTERMStopsWhatItStarted(t *testing.T) {
	skipShort(t)
	model := tinyModel(t)
	q, _ := startQueenProcess(t, 0)
	res := postTask(t, t.Context(), q.url, "", api.TaskRequest{Node: "local", Model: model, Prompt: "Hello", SamplingParams: api.SamplingParams{MaxTokens: 3}}, nil)
	require.Nil(t, res.errorEvent())
	hive := hivePid(t, res)
	list, _ := listWorkers(t, q.url)
	require.Len(t, list.Workers, 1)
	worker := list.Workers[0].PID
	require.Positive(t, worker)
	require.True(t, alive(hive))
	require.True(t, alive(worker))

	require.NoError(t, q.p.Signal(syscall.SIGTERM))
	require.True(t, q.p.WaitTimeout(40*time.Second), "the queen exits within the 30 s cascade")
	assert.Equal(t, 0, q.p.ExitCode(), "a clean shutdown")
	assert.Eventually(t, func() bool { return !alive(hive) && !alive(worker) }, 10*time.Second, 20*time.Millisecond,
		"hive %d and worker %d are gone", hive, worker)
}

// TestScenarioForeignHiveLeftRunning: a hive the queen did not start is used
// and left running when the queen stops.
func TestScenarioForeignHiveLeftRunning(t *testing.T) {
	skipShort(t)
	model := tinyModel(t)
	hiveHome := t.TempDir()
	hivePort := testutil.FreePort(t)
	hive := startDaemon(t, hiveHome, "hive", "/v1/health", hivePort, "--home", hiveHome,
		"--worker-port-start", strconv.Itoa(testutil.FreePort(t)))
	q, _ := startQueenProcess(t, hivePort)

	res := postTask(t, t.Context(), q.url, "", api.TaskRequest{Node: "local", Model: model, Prompt: "Hello", SamplingParams: api.SamplingParams{MaxTokens: 3}}, nil)
	require.Nil(t, res.errorEvent())
	assert.Empty(t, res.narration("hive_start"), "the running hive is used")
	list, _ := listWorkers(t, q.url)
	require.Len(t, list.Workers, 1)
	worker := list.Workers[0].PID

	require.NoError(t, q.p.Signal(syscall.SIGTERM))
	require.True(t, q.p.WaitTimeout(40*time.Second))
	assert.Equal(t, 0, q.p.ExitCode())
	assert.True(t, alive(hive.p.Pid()), "the hive the queen did not start still runs")
	var hh api.HiveHealth
	require.NoError(t, (&httpx.Client{BaseURL: hive.url}).Do(t.Context(), http.MethodGet, "/v1/health", nil, &hh))
	assert.Equal(t, "alive", hh.Status)
	if worker > 0 {
		assert.True(t, alive(worker), "and so do its workers")
	}
}

// TestScenarioConcurrentColdStart: concurrent tasks on a cold in-process
// queen start one hive and spawn one worker between them; Close stops both.
func TestScenarioConcurrentColdStart(t *testing.T) {
	skipShort(t)
	model := tinyModel(t)
	q, err := New(Config{Home: t.TempDir(), Binary: testutil.RbeeBinary(t), LocalHivePort: testutil.FreePort(t),
		LocalWorkerPortStart: testutil.FreePort(t), HiveRetryDelays: []time.Duration{0},
		BusyRetryDelays: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}})
	require.NoError(t, err)
	srv := newHTTPTestServer(t, q)
	closed := false
	t.Cleanup(func() {
		if !closed {
			q.Close()
		}
	})

	results := make([]*taskResult, 3)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			results[i] = postTask(t, t.Context(), srv, "", api.TaskRequest{Node: "local", Model: model, Prompt: "Hi", SamplingParams: api.SamplingParams{MaxTokens: 4}}, nil)
		})
	}
	wg.Wait()
	starts, spawns := 0, 0
	hive := 0
	for _, res := range results {
		require.Nil(t, res.errorEvent(), "%+v", res.errorEvent())
		require.NotNil(t, res.done())
		starts += len(res.narration("hive_start"))
		spawns += len(res.narration("spawn"))
		if len(res.narration("hive_start")) == 1 {
			hive = hivePid(t, res)
		}
	}
	assert.Equal(t, 1, starts, "one hive start for three tasks")
	assert.Equal(t, 1, spawns, "one worker for three tasks on one model")
	list, _ := listWorkers(t, srv)
	require.Len(t, list.Workers, 1)
	worker := list.Workers[0].PID

	require.NoError(t, q.Close())
	closed = true
	assert.False(t, alive(hive), "Close stopped the hive")
	assert.Eventually(t, func() bool { return !alive(worker) }, 10*time.Second, 20*time.Millisecond)
}

func newHTTPTestServer(t *testing.T, q *Queen) string {
	t.Helper()
	srv := httptest.NewServer(q.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func ptrTo[T any](v T) *T { return &v }
