package pool

// Scenario tests of DESIGN §12 that run real `rbee worker` processes (and,
// for S49, a real `rbee hive` process) of the rbee binary built from this
// checkout.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/hivewire"
	"rbee/internal/httpx"
	"rbee/internal/paths"
	"rbee/internal/proc"
	"rbee/internal/sse"
	"rbee/internal/gguf"
	"rbee/internal/synth"
	"rbee/internal/testutil"
	"rbee/worker"
)

// rbeeBinary is the rbee binary of this checkout ($RBEE_TEST_BINARY when set,
// to test a prebuilt one).
func rbeeBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("RBEE_TEST_BINARY"); bin != "" {
		return bin
	}
	return testutil.RbeeBinary(t)
}

// realHive runs a hive in-process whose workers are real rbee workers.
func realHive(t *testing.T, mutate func(*Config)) *testHive {
	t.Helper()
	bin := rbeeBinary(t)
	return startHive(t, func(c *Config) {
		c.Binary = bin
		if mutate != nil {
			mutate(c)
		}
	})
}

// spawnReady spawns a real worker for the model file and waits for its load.
func (th *testHive) spawnReady(t *testing.T, path string) (hivewire.Spawned, *Worker) {
	t.Helper()
	resp, err := th.spawn(t, path)
	require.NoError(t, err)
	w, ok := th.Worker(resp.WorkerID)
	require.True(t, ok)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	require.NoError(t, w.WaitUntilReady(ctx), "worker log:\n%s", logTail(w.LogPath, 20))
	return resp, w
}

// cmdline reads a process's arguments from /proc.
func cmdline(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("no /proc on this system")
	}
	require.NoError(t, err)
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

func TestS15ModelInCatalogUsesItsLocalPath(t *testing.T) {
	th := realHive(t, nil)
	// A model "downloaded" earlier: its row names a file whose path is not in the reference.
	stored := tinyModel(t, "Q8_0", nil)
	const ref = "hf:TheBloke/TinyLlama-GGUF:Q8_0"
	row := catalogFile(t, th.Catalog(), "hf", ref, stored)

	for range 2 {
		var resp hivewire.Spawned
		require.NoError(t, th.client.Do(t.Context(), "POST", "/v1/workers/spawn", api.SpawnRequest{ModelRef: ref}, &resp))
		w, _ := th.Worker(resp.WorkerID)
		args := cmdline(t, w.Pid())
		assert.Equal(t, stored, argAfter(args, "--model"), "the catalog's local_path is what the worker loads")
		assert.Equal(t, ref, argAfter(args, "--model-ref"))
		require.NoError(t, w.WaitUntilReady(t.Context()))
	}
	ms, err := th.Catalog().List(t.Context())
	require.NoError(t, err)
	require.Len(t, ms, 1, "no duplicate row")
	assert.Equal(t, row, ms[0])

	// A file: reference is registered once, however often it is spawned.
	path := tinyModel(t, "Q4_0", nil)
	th.spawnReady(t, path)
	th.spawnReady(t, path)
	ms, err = th.Catalog().List(t.Context())
	require.NoError(t, err)
	require.Len(t, ms, 2)
	assert.Equal(t, "file:"+path, ms[0].Reference)
	assert.Equal(t, "file", ms[0].Provider)
	assert.Equal(t, path, ms[0].LocalPath)
}

func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// Scenario S20 of DESIGN §12.
func TestS20ModelMetaFromTheHeader(t *testing.T) {
	h, srv := handlerHive(t, nil)
	dir := t.TempDir()
	// Names that lie: only the header can tell the truth.
	odd := synth.Tiny("Q4_0")
	odd.Vocab = 777
	oddPath := filepath.Join(dir, "model-Q8_0-vocab32000.gguf")
	require.NoError(t, synth.Write(oddPath, odd))
	type want struct {
		quant      string
		vocab, eos int
		bos        int
	}
	models := map[string]want{oddPath: {"Q4_0", 777, 2, 1}}
	if fx := fixturesDir(t); fx != "" {
		for _, q := range []string{"F16", "Q8_0", "Q4_K_M"} {
			models[filepath.Join(fx, "tiny-"+q+".gguf")] = want{q, 32000, 2, 1} // the fixtures' README
		}
	} else {
		t.Log("fixtures absent: checking the synthetic model only")
	}
	for path := range models {
		catalogFile(t, h.Catalog(), "file", "file:"+path, path)
	}
	_, err := h.Catalog().Register(t.Context(), api.ModelEntry{Provider: "file", Reference: "file:/gone.gguf", LocalPath: "/gone.gguf", SizeBytes: 1})
	require.NoError(t, err)

	_, e, body := raw(t, "GET", srv.URL+"/v1/models", testToken, "")
	require.Nil(t, e)
	var list api.ModelList
	require.NoError(t, json.Unmarshal(body, &list))
	require.Len(t, list.Models, len(models)+1)
	for _, m := range list.Models {
		if m.LocalPath == "/gone.gguf" {
			assert.Nil(t, m.Meta, "a missing file has no header to read")
			continue
		}
		w := models[m.LocalPath]
		require.NotNil(t, m.Meta, m.LocalPath)
		assert.Equal(t, "llama", m.Meta.Architecture, m.LocalPath)
		assert.Equal(t, w.quant, m.Meta.Quantization, m.LocalPath)
		assert.Equal(t, w.vocab, m.Meta.VocabSize, m.LocalPath)
		assert.Equal(t, w.eos, m.Meta.EOSTokenID, m.LocalPath)
		assert.Equal(t, w.bos, m.Meta.BOSTokenID, m.LocalPath)
		assert.Positive(t, m.Meta.ContextLength)
		assert.Equal(t, 2, m.Meta.BlockCount)
	}
	assert.Contains(t, string(body), `"eos_token_id":2`)
}

// fixturesDir is the shared llama.cpp fixtures folder (as testutil.Fixtures
// finds it), or "" when absent.
func fixturesDir(t *testing.T) string {
	dir := os.Getenv("RBEE_FIXTURES")
	if dir == "" {
		dir = filepath.Join(testutil.ModuleRoot(t), "..", "shared", "fixtures")
	}
	if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
		return ""
	}
	abs, _ := filepath.Abs(dir)
	return abs
}

// Scenario S22 of DESIGN §12.
func TestS22FileSizeFeedsRAMCheckAndCatalog(t *testing.T) {
	paths := []string{tinyModel(t, "Q8_0", nil), tinyModel(t, "F16", nil)}
	if fx := fixturesDir(t); fx != "" {
		paths = append(paths, filepath.Join(fx, "tiny-Q4_K_M.gguf"))
	}
	h, srv := handlerHive(t, func(c *Config) { c.FakeMemoryMB = 1 })
	for _, path := range paths {
		st, err := os.Stat(path)
		require.NoError(t, err)
		_, e, _ := raw(t, "POST", srv.URL+"/v1/workers/spawn", testToken, `{"model_ref":"file:`+path+`"}`)
		require.NotNil(t, e)
		require.Equal(t, api.CodeInsufficientRAM, e.Code)
		need := (st.Size()*12/10 + (1<<20 - 1)) >> 20 // ceil(size × 1.2 / MiB), integer arithmetic
		assert.EqualValues(t, need, e.Details["required"], path)
		assert.EqualValues(t, st.Size(), e.Details["model_size_bytes"], path)
		row, err := h.Catalog().Get(t.Context(), "file:"+path)
		require.NoError(t, err, "the model is in the catalog")
		assert.Equal(t, st.Size(), row.SizeBytes, path)
		assert.Equal(t, path, row.LocalPath)
		assert.Equal(t, fileSHA256(t, path), row.SHA256, "a file: model's hash is kept, to notice a change later")
		assert.InDelta(t, time.Now().Unix(), row.DownloadedAtUnix, 60)
	}
}

func TestS23RAMCheckPasses(t *testing.T) {
	path := tinyModel(t, "Q8_0", nil)
	st, err := os.Stat(path)
	require.NoError(t, err)
	need := requiredMB(st.Size())
	th := realHive(t, func(c *Config) { c.FakeMemoryMB = need }) // exactly enough
	resp, w := th.spawnReady(t, path)
	assert.Equal(t, api.StateLoading, resp.State)
	assert.Equal(t, api.StateIdle, w.State())
}

func TestS24RAMCheckFails(t *testing.T) {
	path := tinyModel(t, "Q8_0", nil)
	st, err := os.Stat(path)
	require.NoError(t, err)
	need := requiredMB(st.Size())
	_, srv := handlerHive(t, func(c *Config) { c.FakeMemoryMB = need - 1 })
	status, e, _ := raw(t, "POST", srv.URL+"/v1/workers/spawn", testToken, `{"model_ref":"file:`+path+`","backend":"cpu"}`)
	require.NotNil(t, e)
	assert.Equal(t, 507, status)
	assert.Equal(t, api.CodeInsufficientRAM, e.Code)
	assert.Contains(t, e.Message, fmt.Sprintf("need %d MB", need))
	assert.Contains(t, e.Message, fmt.Sprintf("have %d MB", need-1))
	assert.EqualValues(t, need, e.Details["required"])
	assert.EqualValues(t, need-1, e.Details["available"])
	assert.Equal(t, smallerHint("Q8_0", need, need-1), e.Hint())
	assert.Contains(t, e.Hint(), "the model is Q8_0 (about 8.5 bits per weight); use a smaller quantization of it: ",
		"a smaller quantization would fit what is available")
}

func TestS25BackendCPUPasses(t *testing.T) {
	th := realHive(t, nil)
	var resp hivewire.Spawned
	require.NoError(t, th.client.Do(t.Context(), "POST", "/v1/workers/spawn",
		api.SpawnRequest{ModelRef: "file:" + tinyModel(t, "Q8_0", nil), Backend: "cpu", Device: 0}, &resp))
	w, _ := th.Worker(resp.WorkerID)
	assert.Equal(t, "cpu", argAfter(cmdline(t, w.Pid()), "--backend"))
}

func TestS26BackendUnavailable(t *testing.T) {
	path := tinyModel(t, "Q8_0", nil)
	cases := []struct {
		name    string
		devices []Device
		backend api.Backend
		device  int
		msg     string
	}{
		{"cuda on a cpu node", []Device{}, "cuda", 0, "backend cuda device 0 is not available"},
		{"metal on a cuda node", []Device{{"cuda", 0, 8192}}, "metal", 0, "backend metal"},
		{"a cuda device the node lacks", []Device{{"cuda", 0, 8192}}, "cuda", 1, "cuda device 1"},
		{"a cuda device without an engine", []Device{{"cuda", 0, 8192}}, "cuda", 0, "no cuda engine in this build"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, srv := handlerHive(t, func(c *Config) { c.Devices = tc.devices })
			status, e, _ := raw(t, "POST", srv.URL+"/v1/workers/spawn", testToken,
				fmt.Sprintf(`{"model_ref":"file:%s","backend":%q,"device":%d}`, path, tc.backend, tc.device))
			require.NotNil(t, e)
			assert.Equal(t, 400, status)
			assert.Equal(t, api.CodeBackendUnavailable, e.Code)
			assert.Contains(t, e.Message, tc.msg)
			assert.Equal(t, string(tc.backend), e.Details["backend"])
			assert.Empty(t, h.Workers())
		})
	}
}

// Scenario S27 of DESIGN §12.
func TestS27SpawnCommandLine(t *testing.T) {
	bin := rbeeBinary(t)
	th := realHive(t, nil)
	path := tinyModel(t, "Q8_0", nil)
	resp, err := th.spawn(t, path)
	require.NoError(t, err)
	assert.Equal(t, api.StateLoading, resp.State, "spawn answers before waiting for the load")
	w, ok := th.Worker(resp.WorkerID)
	require.True(t, ok)

	args := cmdline(t, w.Pid())
	assert.Equal(t, []string{bin, "worker",
		"--model", path,
		"--model-ref", "file:" + path,
		"--backend", "cpu",
		"--device", "0",
		"--host", "127.0.0.1",
		"--port", strconv.Itoa(w.Port),
		"--callback-url", th.url + "/v1/workers/ready",
		"--worker-id", resp.WorkerID,
	}, args)
	joined := strings.Join(args, " ")
	assert.NotContains(t, joined, resp.APIKey, "no token on the command line")
	assert.NotContains(t, joined, testToken)
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", w.Pid()))
	require.NoError(t, err)
	assert.Contains(t, strings.Split(string(env), "\x00"), "RBEE_API_KEY="+resp.APIKey, "the token is in the environment")
	assert.Contains(t, strings.Split(string(env), "\x00"), "RBEE_CHILD=1")

	// The worker binds its port: it answers there, and it loads the model behind it.
	conn, err := net.Dial("tcp", strings.TrimPrefix(resp.URL, "http://"))
	require.NoError(t, err)
	conn.Close()
	wc := &httpx.Client{BaseURL: resp.URL, Token: resp.APIKey}
	require.Eventually(t, func() bool {
		var r api.ReadyResponse
		return wc.Do(t.Context(), "GET", "/v1/ready", nil, &r) == nil && r.Ready
	}, 30*time.Second, 20*time.Millisecond)
	require.NoError(t, w.WaitUntilReady(t.Context()), "the ready callback reached the hive")
	assert.Equal(t, api.StateIdle, w.State())
	assert.NotContains(t, th.logs.String(), resp.APIKey, "the hive logs no token")
	assert.Contains(t, th.logs.String(), "token="+httpx.Fingerprint(resp.APIKey))
	wlog, err := os.ReadFile(w.LogPath)
	require.NoError(t, err)
	assert.NotContains(t, string(wlog), resp.APIKey, "the worker logs no token")
}

// Scenario S29 of DESIGN §12.
func TestS29RegistryEntryAndRestart(t *testing.T) {
	th := realHive(t, nil)
	path := tinyModel(t, "Q8_0", nil)
	resp, w := th.spawnReady(t, path)
	list := th.list(t)
	require.Len(t, list, 1)
	e := list[0]
	assert.Equal(t, resp.WorkerID, e.ID)
	assert.Equal(t, resp.URL, e.URL)
	assert.Equal(t, "file:"+path, e.ModelRef)
	assert.Equal(t, api.BackendCPU, e.Backend)
	assert.Equal(t, 0, e.Device)
	assert.Equal(t, api.StateIdle, e.State)
	// A CPU worker left to choose serves 4 at once (the tiny model's KV
	// caches fit anywhere).
	assert.Equal(t, worker.DefaultSlots, e.SlotsTotal)
	assert.Equal(t, worker.DefaultSlots, e.SlotsAvailable)
	assert.False(t, e.LastActivity.IsZero())
	assert.Equal(t, w.Pid(), e.PID)
	assert.Equal(t, resp.APIKey, e.APIKey)

	// Restart the hive on the same home and port: the registry is gone, the catalog stays.
	cfg := th.Config()
	require.NoError(t, th.stop(t))
	assert.True(t, processGone(w.Pid()), "the old hive stopped its worker")
	th2 := startHive(t, func(c *Config) { *c = cfg })
	assert.Empty(t, th2.list(t))
	ms, err := th2.Catalog().List(t.Context())
	require.NoError(t, err)
	require.Len(t, ms, 1)
	assert.Equal(t, "file:"+path, ms[0].Reference)
}

// Scenario S46 of DESIGN §12.
func TestS46HiveKeepsRunningAfterSpawnAndInference(t *testing.T) {
	th := realHive(t, nil)
	resp, w := th.spawnReady(t, tinyModel(t, "Q8_0", nil))
	hiveAlive := func() {
		t.Helper()
		var hh api.HiveHealth
		require.NoError(t, th.client.Do(t.Context(), "GET", "/v1/health", nil, &hh))
		assert.Equal(t, "alive", hh.Status)
		select {
		case err := <-th.done:
			t.Fatalf("the hive stopped: %v", err)
		default:
		}
	}
	hiveAlive()

	wc := &httpx.Client{BaseURL: resp.URL, Token: resp.APIKey}
	httpResp, err := wc.Stream(t.Context(), "POST", "/v1/inference", api.InferenceRequest{Prompt: "Once upon a time", SamplingParams: api.SamplingParams{MaxTokens: 8}}, nil)
	require.NoError(t, err)
	tokens, done := 0, false
	for ev, err := range sse.Read(httpResp.Body) {
		require.NoError(t, err)
		switch ev.Kind {
		case api.KindToken:
			tokens++
		case api.KindDone:
			done = true
		}
	}
	httpResp.Body.Close()
	assert.True(t, done)
	assert.Positive(t, tokens)

	hiveAlive()
	list := th.list(t)
	require.Len(t, list, 1)
	assert.Equal(t, api.StateIdle, list[0].State, "the worker stays loaded and idle")
	select {
	case <-w.Exited():
		t.Fatal("the worker exited after the inference")
	default:
	}
}

// Scenario S47 of DESIGN §12.
func TestS47RealWorkerFailingHealthIsRemovedAndKilled(t *testing.T) {
	th := realHive(t, func(c *Config) { c.HealthInterval = 50 * time.Millisecond })
	_, w := th.spawnReady(t, tinyModel(t, "Q8_0", nil))
	require.NoError(t, syscall.Kill(w.Pid(), syscall.SIGSTOP)) // alive, port open, answers nothing
	require.Eventually(t, func() bool { _, ok := th.Worker(w.ID); return !ok }, 30*time.Second, 10*time.Millisecond)
	assert.Empty(t, th.list(t))
	select {
	case <-w.Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("the removed worker was not killed")
	}
	assert.Contains(t, th.logs.String(), "worker removed after failing its health checks")
}

func TestRealWorkerKilledIsRemovedAtOnce(t *testing.T) {
	th := realHive(t, func(c *Config) { c.HealthInterval = time.Hour })
	_, w := th.spawnReady(t, tinyModel(t, "Q8_0", nil))
	require.NoError(t, syscall.Kill(w.Pid(), syscall.SIGKILL))
	require.Eventually(t, func() bool { _, ok := th.Worker(w.ID); return !ok }, 5*time.Second, 5*time.Millisecond)
	assert.Empty(t, th.list(t))
	// The hive logs the crash just after it removes the worker.
	assert.Eventually(t, func() bool { return strings.Contains(th.logs.String(), "worker crashed; removed from the registry") },
		5*time.Second, 5*time.Millisecond)
	assert.Contains(t, th.logs.String(), "exit_code=-1")
}

// Scenario S48 of DESIGN §12.
func TestS48RealIdleWorkerIsStoppedNotTheHive(t *testing.T) {
	th := realHive(t, func(c *Config) { c.IdleTimeout = 400 * time.Millisecond })
	_, w := th.spawnReady(t, tinyModel(t, "Q8_0", nil))
	select {
	case <-w.Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("the idle worker was not stopped")
	}
	assert.Equal(t, 0, w.ExitCode(), "the worker shut down cleanly")
	assert.Empty(t, th.list(t), "and was unregistered")
	var hh api.HiveHealth
	require.NoError(t, th.client.Do(t.Context(), "GET", "/v1/health", nil, &hh))
	assert.Equal(t, "alive", hh.Status)
	assert.Contains(t, th.logs.String(), "worker idle for too long")
}

// hiveProcess is a real `rbee hive` process.
type hiveProcess struct {
	p      *proc.Process
	url    string
	home   string
	log    string
	client *httpx.Client
}

func startHiveProcess(t *testing.T, extra ...string) *hiveProcess {
	t.Helper()
	bin := rbeeBinary(t)
	home := t.TempDir()
	port := testutil.FreePort(t)
	hp := &hiveProcess{url: "http://127.0.0.1:" + strconv.Itoa(port), home: home, log: filepath.Join(home, "hive.log")}
	args := append([]string{"hive", "--port", strconv.Itoa(port), "--home", home, "--binary", bin,
		"--worker-port-start", strconv.Itoa(testutil.FreePort(t))}, extra...)
	p, err := proc.Start(proc.Spec{Path: bin, Args: args, LogFile: hp.log, Env: []string{"RBEE_API_KEY=" + testToken}})
	require.NoError(t, err)
	hp.p = p
	t.Cleanup(func() { _ = p.Stop(context.Background(), 30*time.Second) })
	hp.client = &httpx.Client{BaseURL: hp.url, Token: testToken}
	require.Eventually(t, func() bool {
		select {
		case <-p.Exited():
			return true // reported below
		default:
		}
		return hp.client.Do(t.Context(), "GET", "/v1/health", nil, nil) == nil
	}, 30*time.Second, 20*time.Millisecond)
	select {
	case <-p.Exited():
		t.Fatalf("rbee hive exited: %s", logTail(hp.log, 20))
	default:
	}
	return hp
}

func TestS49SIGTERMStopsEveryWorker(t *testing.T) {
	hp := startHiveProcess(t)
	var pids []int
	models := []string{tinyModel(t, "Q8_0", nil), tinyModel(t, "Q4_0", nil)}
	for _, m := range models {
		var resp hivewire.Spawned
		require.NoError(t, hp.client.Do(t.Context(), "POST", "/v1/workers/spawn", api.SpawnRequest{ModelRef: "file:" + m}, &resp))
		require.Eventually(t, func() bool {
			var list api.WorkerList
			if err := hp.client.Do(t.Context(), "GET", "/v1/workers/list", nil, &list); err != nil {
				return false
			}
			for _, w := range list.Workers {
				if w.ID == resp.WorkerID && w.State == api.StateIdle {
					pids = append(pids, w.PID)
					return true
				}
			}
			return false
		}, 30*time.Second, 20*time.Millisecond)
	}
	require.Len(t, pids, 2)

	start := time.Now()
	require.NoError(t, hp.p.Signal(syscall.SIGTERM))
	require.True(t, hp.p.WaitTimeout(30*time.Second), "the cascade ends within 30 s")
	took := time.Since(start)
	assert.Equal(t, 0, hp.p.ExitCode(), "a clean shutdown exits 0; log:\n%s", logTail(hp.log, 30))
	for _, pid := range pids {
		assert.True(t, processGone(pid), "worker %d is gone", pid)
	}
	log, err := os.ReadFile(hp.log)
	require.NoError(t, err)
	assert.Contains(t, string(log), "stopping workers: count=2")
	assert.NotContains(t, string(log), "sending SIGTERM", "workers stopped on their admin shutdown, no signal needed")
	t.Logf("cascade took %s", took)

	cat, err := OpenCatalog(t.Context(), paths.HiveDB(hp.home))
	require.NoError(t, err)
	defer cat.Close()
	ms, err := cat.List(t.Context())
	require.NoError(t, err)
	assert.Len(t, ms, 2, "the catalog persists")
}

func TestHiveProcessFakeFlags(t *testing.T) {
	hp := startHiveProcess(t, "--fake-memory-mb", "1", "--fake-devices", "cuda:0:8192,cuda:1:1")
	path := tinyModel(t, "Q8_0", nil)
	cases := []struct {
		backend api.Backend
		device  int
		code    api.Code
		msg     string
	}{
		{"cpu", 0, api.CodeInsufficientRAM, "have 1 MB"},          // S24
		{"cuda", 0, api.CodeBackendUnavailable, "no cuda engine"}, // present, but no engine yet
		{"cuda", 1, api.CodeVRAMExhausted, "have 1 MB"},
		{"cuda", 2, api.CodeBackendUnavailable, "cuda device 2"}, // S26
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s:%d", tc.backend, tc.device), func(t *testing.T) {
			err := hp.client.Do(t.Context(), "POST", "/v1/workers/spawn", api.SpawnRequest{ModelRef: "file:" + path, Backend: tc.backend, Device: tc.device}, nil)
			e := apiErr(t, err)
			assert.Equal(t, tc.code, e.Code)
			assert.Contains(t, e.Message, tc.msg)
		})
	}
}

func TestHiveProcessRefusesBadSetup(t *testing.T) {
	bin := rbeeBinary(t)
	keyFile := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(keyFile, []byte("0123456789abcdef0123"), 0o644))
	corruptHome := t.TempDir()
	require.NoError(t, os.WriteFile(paths.HiveDB(corruptHome), bytes.Repeat([]byte("not sqlite "), 20), 0o600))
	cases := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"bad port", []string{"--port", "0"}, 2, "--port"},
		{"bad flag", []string{"--bogus"}, 2, "bogus"},
		{"bad duration", []string{"--idle-timeout", "soon"}, 2, "idle-timeout"},
		{"bad fake devices", []string{"--fake-devices", "gpu"}, 2, "--fake-devices"},
		{"stray argument", []string{"now"}, 2, "unexpected argument"},
		{"key file readable by others", []string{"--api-key-file", keyFile}, 1, "must be 0600"},
		{"public address without a key", []string{"--host", "0.0.0.0"}, 1, "without an API key"},
		{"corrupt catalog", []string{"--home", corruptHome}, 1, "model catalog is corrupt"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"hive", "--port", strconv.Itoa(testutil.FreePort(t)), "--home", t.TempDir()}, tc.args...)
			cmd := exec.Command(bin, args...)
			cmd.Env = append(os.Environ(), "RBEE_API_KEY=")
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "rbee hive must fail: %s", out)
			assert.Equal(t, tc.code, ee.ExitCode(), "%s", out)
			assert.Contains(t, string(out), tc.out)
		})
	}
}

// TestModelMetaFamilies: the catalog names each model family as its header
// does (qwen2, phi3 and gemma2 files are not listed as llama), with the
// parameter count of its tensors; synthesized files of each family, and the
// shared family fixtures when present.
func TestModelMetaFamilies(t *testing.T) {
	h, srv := handlerHive(t, nil)
	dir := t.TempDir()
	want := map[string]string{} // path → architecture
	for _, arch := range synth.Archs() {
		p := filepath.Join(dir, "model-"+arch+".gguf")
		require.NoError(t, synth.Write(p, synth.Family(arch, "Q8_0")))
		want[p] = arch
	}
	if fx := fixturesDir(t); fx != "" {
		for file, arch := range map[string]string{"qwen2-Q4_K_M.gguf": "qwen2", "qwen2-tied-Q4_K_M.gguf": "qwen2",
			"phi3-Q8_0.gguf": "phi3", "gemma2-Q4_K_M.gguf": "gemma2", "llama3-Q4_K_M.gguf": "llama"} {
			want[filepath.Join(fx, "families", file)] = arch // the families README
		}
	}
	for p := range want {
		catalogFile(t, h.Catalog(), "file", "file:"+p, p)
	}
	_, e, body := raw(t, "GET", srv.URL+"/v1/models", testToken, "")
	require.Nil(t, e)
	var list api.ModelList
	require.NoError(t, json.Unmarshal(body, &list))
	require.Len(t, list.Models, len(want))
	for _, m := range list.Models {
		require.NotNil(t, m.Meta, m.LocalPath)
		assert.Equal(t, want[m.LocalPath], m.Meta.Architecture, m.LocalPath)
		f, err := gguf.Open(m.LocalPath)
		require.NoError(t, err)
		var n int64
		for _, ti := range f.Tensors {
			n += ti.Elements()
		}
		require.NoError(t, f.Close())
		assert.Equal(t, n, m.Meta.Parameters, m.LocalPath)
	}
}
