package pool

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
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
	"rbee/internal/paths"
)

// readLog returns a worker's log file.
func readLog(t *testing.T, h *Hive, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(paths.LogsDir(h.cfg.Home), "worker-"+id+".log"))
	require.NoError(t, err)
	return string(b)
}

func TestSpawnFakeWorkerLifecycle(t *testing.T) {
	th := startHive(t, nil)
	model := tinyModel(t, "Q8_0", &fakeBehaviour{LoadDelay: Duration(100 * time.Millisecond)})
	resp, err := th.spawn(t, model)
	require.NoError(t, err)
	assert.Regexp(t, `^w-[0-9a-f]{12}$`, resp.WorkerID)
	assert.Equal(t, api.StateLoading, resp.State)
	assert.Len(t, resp.APIKey, 64)
	w, ok := th.Worker(resp.WorkerID)
	require.True(t, ok)
	require.NoError(t, w.WaitUntilReady(t.Context()))
	list := th.list(t)
	require.Len(t, list, 1)
	assert.Equal(t, api.StateIdle, list[0].State)
	assert.Equal(t, 1, list[0].SlotsAvailable)
	assert.Equal(t, resp.APIKey, list[0].APIKey, "the queen gets the worker's key")

	require.NoError(t, th.client.Do(t.Context(), "POST", "/v1/workers/shutdown", api.WorkerShutdownRequest{WorkerID: resp.WorkerID}, nil))
	assert.Empty(t, th.list(t))
	assert.Equal(t, 0, w.ExitCode(), "the worker exited by itself after the admin shutdown")
	log := readLog(t, th.Hive, resp.WorkerID)
	assert.Contains(t, log, "fake worker: admin shutdown")
	assert.NotContains(t, log, "SIGTERM")

	err = th.client.Do(t.Context(), "POST", "/v1/workers/shutdown", api.WorkerShutdownRequest{WorkerID: resp.WorkerID}, nil)
	assert.ErrorIs(t, err, api.ErrWorkerNotFound, "a stopped worker is gone")
}

func TestSpawnWorkerCrashesBeforeHealth(t *testing.T) {
	th := startHive(t, nil)
	model := tinyModel(t, "Q8_0", &fakeBehaviour{ExitCode: 1})
	_, err := th.spawn(t, model)
	e := apiErr(t, err)
	assert.Equal(t, api.CodeWorkerCrashed, e.Code)
	assert.Contains(t, e.Message, "exited with status 1")
	assert.Contains(t, e.Message, "fake worker: failing on purpose", "the last log line says why")
	assert.Contains(t, e.Details["log_tail"], "failing on purpose")
	assert.EqualValues(t, 1, e.Details["exit_code"])
	assert.Contains(t, e.Hint(), "worker-w-")
	assert.Empty(t, th.list(t))
}

func TestSpawnRetriesOnBusyPort(t *testing.T) {
	var start int
	th := startHive(t, func(c *Config) { start = c.WorkerPortStart })
	model := tinyModel(t, "Q8_0", &fakeBehaviour{BusyPorts: []int{start, start + 1}})
	resp, err := th.spawn(t, model)
	require.NoError(t, err)
	w, ok := th.Worker(resp.WorkerID)
	require.True(t, ok)
	assert.Greater(t, w.Port, start+1, "the ports the worker found busy were skipped")
	assert.Equal(t, "http://127.0.0.1:"+strconv.Itoa(w.Port), resp.URL)
	log := readLog(t, th.Hive, resp.WorkerID)
	assert.Contains(t, log, "port "+strconv.Itoa(start)+" is in use")
	assert.Contains(t, log, "port "+strconv.Itoa(start+1)+" is in use")
	require.NoError(t, w.WaitUntilReady(t.Context()))
}

func TestSpawnPortsAreNotShared(t *testing.T) {
	th := startHive(t, nil)
	model := tinyModel(t, "Q8_0", &fakeBehaviour{})
	a, err := th.spawn(t, model)
	require.NoError(t, err)
	b, err := th.spawn(t, model)
	require.NoError(t, err)
	assert.NotEqual(t, a.URL, b.URL)
	assert.NotEqual(t, a.WorkerID, b.WorkerID)
	assert.NotEqual(t, a.APIKey, b.APIKey)
	assert.Len(t, th.list(t), 2)
	ms, err := th.Catalog().List(t.Context())
	require.NoError(t, err)
	assert.Len(t, ms, 1, "one catalog row per model")
}

func TestSpawnTimesOutWithoutHealth(t *testing.T) {
	cases := map[string]fakeBehaviour{
		"never listens":         {NoHealth: true},
		"another worker answer": {OtherID: "w-someoneelse"},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			th := startHive(t, func(c *Config) { c.ReadyTimeout = 500 * time.Millisecond })
			model := tinyModel(t, "Q8_0", &b)
			_, err := th.spawn(t, model)
			e := apiErr(t, err)
			assert.Equal(t, api.CodeConnectionTimeout, e.Code)
			assert.Contains(t, e.Message, "did not answer")
			assert.Empty(t, th.list(t))
		})
	}
}

func TestReadyCallbackAuth(t *testing.T) {
	th := startHive(t, nil)
	model := tinyModel(t, "Q8_0", &fakeBehaviour{NoCallback: true, LoadDelay: Duration(time.Hour)})
	a, err := th.spawn(t, model)
	require.NoError(t, err)
	b, err := th.spawn(t, model)
	require.NoError(t, err)
	wa, _ := th.Worker(a.WorkerID)
	good := api.ReadyCallback{WorkerID: a.WorkerID, URL: a.URL, ModelRef: "file:" + model, Backend: "cpu"}
	body := func(mut func(*api.ReadyCallback)) string {
		cb := good
		if mut != nil {
			mut(&cb)
		}
		raw, _ := json.Marshal(cb)
		return string(raw)
	}
	cases := []struct {
		name   string
		token  string
		body   string
		status int
		code   api.Code
		field  string
	}{
		{"no token", "", body(nil), 401, api.CodeMissingAPIKey, ""},
		{"wrong token", "not-a-token-of-anyone", body(nil), 401, api.CodeInvalidAPIKey, ""},
		{"another worker's token", b.APIKey, body(nil), 401, api.CodeInvalidAPIKey, ""},
		{"unknown worker, a worker token", a.APIKey, body(func(c *api.ReadyCallback) { c.WorkerID = "w-000000000000" }), 401, api.CodeInvalidAPIKey, ""},
		{"unknown worker, the hive token", testToken, body(func(c *api.ReadyCallback) { c.WorkerID = "w-000000000000" }), 404, api.CodeWorkerNotFound, ""},
		{"url missing", a.APIKey, body(func(c *api.ReadyCallback) { c.URL = "" }), 400, api.CodeInvalidRequest, "url"},
		{"url port differs", a.APIKey, body(func(c *api.ReadyCallback) { c.URL = "http://127.0.0.1:1" }), 400, api.CodeInvalidRequest, "url"},
		{"url not a url", a.APIKey, body(func(c *api.ReadyCallback) { c.URL = "127.0.0.1" }), 400, api.CodeInvalidRequest, "url"},
		{"model_ref missing", a.APIKey, body(func(c *api.ReadyCallback) { c.ModelRef = "" }), 400, api.CodeInvalidRequest, "model_ref"},
		{"model_ref differs", a.APIKey, body(func(c *api.ReadyCallback) { c.ModelRef = "file:/other.gguf" }), 400, api.CodeInvalidRequest, "model_ref"},
		{"backend differs", a.APIKey, body(func(c *api.ReadyCallback) { c.Backend = "cuda" }), 400, api.CodeInvalidRequest, "backend"},
		{"device differs", a.APIKey, body(func(c *api.ReadyCallback) { c.Device = 1 }), 400, api.CodeInvalidRequest, "device"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, e, _ := raw(t, "POST", th.url+"/v1/workers/ready", tc.token, tc.body)
			require.NotNil(t, e)
			assert.Equal(t, tc.status, status)
			assert.Equal(t, tc.code, e.Code)
			if tc.field != "" {
				assert.Equal(t, tc.field, e.Details["field"])
			}
			assert.Equal(t, api.StateLoading, wa.State(), "a refused callback changes nothing")
		})
	}
	t.Run("the worker's own token", func(t *testing.T) {
		// The worker may name its host differently (its host name when bound to 0.0.0.0).
		status, e, _ := raw(t, "POST", th.url+"/v1/workers/ready", a.APIKey, body(func(c *api.ReadyCallback) {
			c.URL = strings.Replace(c.URL, "127.0.0.1", "localhost", 1)
		}))
		require.Nil(t, e)
		assert.Equal(t, 200, status)
		assert.Equal(t, api.StateIdle, wa.State())
	})
	t.Run("the hive token", func(t *testing.T) {
		wb, _ := th.Worker(b.WorkerID)
		status, e, _ := raw(t, "POST", th.url+"/v1/workers/ready", testToken, body(func(c *api.ReadyCallback) { c.WorkerID, c.URL = b.WorkerID, b.URL }))
		require.Nil(t, e)
		assert.Equal(t, 200, status)
		require.NoError(t, wb.WaitUntilReady(t.Context()))
	})
	assert.Len(t, th.list(t), 2, "bad callbacks leave the registry intact")
}

func TestWorkerKilledIsRemovedAtOnce(t *testing.T) {
	th := startHive(t, func(c *Config) { c.HealthInterval = time.Hour })
	model := tinyModel(t, "Q8_0", &fakeBehaviour{})
	resp, err := th.spawn(t, model)
	require.NoError(t, err)
	w, _ := th.Worker(resp.WorkerID)
	require.NoError(t, syscall.Kill(w.Pid(), syscall.SIGKILL))
	require.Eventually(t, func() bool { _, ok := th.Worker(resp.WorkerID); return !ok }, 5*time.Second, 5*time.Millisecond,
		"the exit is seen without a health check")
	assert.Empty(t, th.list(t))
}

// Scenario S47 of DESIGN §12.
func TestS47HealthMonitorRemovesAfterThreeFailures(t *testing.T) {
	th := startHive(t, func(c *Config) { c.HealthInterval = 50 * time.Millisecond })
	model := tinyModel(t, "Q8_0", &fakeBehaviour{})
	resp, err := th.spawn(t, model)
	require.NoError(t, err)
	w, _ := th.Worker(resp.WorkerID)
	require.NoError(t, w.WaitUntilReady(t.Context()))
	// A stopped process keeps its port open but answers nothing.
	require.NoError(t, syscall.Kill(w.Pid(), syscall.SIGSTOP))
	require.Eventually(t, func() bool { _, ok := th.Worker(resp.WorkerID); return !ok }, 20*time.Second, 10*time.Millisecond)
	w.mu.Lock()
	failures := w.failures
	w.mu.Unlock()
	assert.Equal(t, failuresToRemove, failures, "removed at the third failure in a row")
	select { // the hive kills what it removed (SIGKILL reaches a stopped process)
	case <-w.Exited():
	case <-time.After(20 * time.Second):
		t.Fatal("the removed worker was not killed")
	}
	assert.Equal(t, -1, w.ExitCode(), "killed by a signal")
}

// Scenario S47 of DESIGN §12.
func TestS47HealthyWorkerStays(t *testing.T) {
	th := startHive(t, func(c *Config) { c.HealthInterval = 20 * time.Millisecond })
	model := tinyModel(t, "Q8_0", &fakeBehaviour{})
	resp, err := th.spawn(t, model)
	require.NoError(t, err)
	w, _ := th.Worker(resp.WorkerID)
	require.NoError(t, w.WaitUntilReady(t.Context()))
	// Only the monitor asks for its health once it is ready: wait for many checks.
	require.Eventually(t, func() bool {
		log, _ := os.ReadFile(w.LogPath)
		return strings.Count(string(log), "fake worker: health idle\n") >= 5
	}, 20*time.Second, 10*time.Millisecond, "the monitor did not check the worker's health")
	_, ok := th.Worker(resp.WorkerID)
	assert.True(t, ok)
}

// Scenario S48 of DESIGN §12.
func TestS48IdleTimeout(t *testing.T) {
	cases := []struct {
		name    string
		b       fakeBehaviour
		stopped bool
	}{
		{"idle for long is stopped", fakeBehaviour{IdleFor: Duration(time.Hour)}, true},
		{"busy is never stopped", fakeBehaviour{IdleFor: Duration(time.Hour), State: api.StateBusy, SlotsBusy: 1}, false},
		{"idle with a busy slot is kept", fakeBehaviour{IdleFor: Duration(time.Hour), SlotsBusy: 1, Slots: 2}, false},
		{"loading is never stopped", fakeBehaviour{IdleFor: Duration(time.Hour), LoadDelay: Duration(time.Hour)}, false},
		{"recently active is kept", fakeBehaviour{IdleFor: Duration(-time.Hour)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.stopped && testing.Short() {
				t.Skip("waits for idle checks to stop two other workers")
			}
			th := startHive(t, func(c *Config) { c.IdleTimeout = 200 * time.Millisecond })
			if tc.b.LoadDelay == 0 {
				tc.b.LoadDelay = Duration(300 * time.Millisecond) // so that the spawn returns before the idle check can run
			}
			model := tinyModel(t, "Q8_0", &tc.b)
			resp, err := th.spawn(t, model)
			require.NoError(t, err)
			w, ok := th.Worker(resp.WorkerID)
			require.True(t, ok)
			if !tc.stopped {
				if time.Duration(tc.b.LoadDelay) < time.Minute { // all but the one that stays loading
					require.NoError(t, w.WaitUntilReady(t.Context()))
				}
				// Two workers idle for long, spawned one after the other, are
				// stopped by idle checks. The check that stopped the second
				// began after the one that stopped the first had ended, so a
				// whole check has looked at this worker by then.
				for _, quant := range []string{"Q4_0", "F16"} {
					other := tinyModel(t, quant, &fakeBehaviour{IdleFor: Duration(time.Hour), LoadDelay: Duration(300 * time.Millisecond)})
					r, err := th.spawn(t, other)
					require.NoError(t, err)
					ow, ok := th.Worker(r.WorkerID)
					require.True(t, ok)
					select {
					case <-ow.Exited():
					case <-time.After(10 * time.Second):
						t.Fatal("the idle worker beside it was not stopped")
					}
				}
				_, ok := th.Worker(resp.WorkerID)
				assert.True(t, ok, "still registered")
				assert.NotEqual(t, api.StateStopping, w.State())
				return
			}
			select {
			case <-w.Exited():
			case <-time.After(10 * time.Second):
				t.Fatal("the idle worker was not stopped")
			}
			assert.Equal(t, 0, w.ExitCode(), "stopped by its admin shutdown")
			assert.Contains(t, readLog(t, th.Hive, resp.WorkerID), "fake worker: admin shutdown")
			assert.Empty(t, th.list(t), "unregistered")
			var hh api.HiveHealth
			require.NoError(t, th.client.Do(t.Context(), "GET", "/v1/health", nil, &hh), "the hive stays")
		})
	}
}

func TestCascadeStopsEveryWorker(t *testing.T) {
	th := startHive(t, nil)
	polite := tinyModel(t, "Q8_0", &fakeBehaviour{})
	stubborn := tinyModel(t, "Q4_0", &fakeBehaviour{IgnoreAdmin: true, IgnoreTerm: true})
	deaf := tinyModel(t, "F16", &fakeBehaviour{IgnoreAdmin: true})
	var ws []*Worker
	for _, m := range []string{polite, polite, stubborn, deaf} {
		resp, err := th.spawn(t, m)
		require.NoError(t, err)
		w, _ := th.Worker(resp.WorkerID)
		require.NoError(t, w.WaitUntilReady(t.Context()))
		ws = append(ws, w)
	}
	require.NoError(t, th.stop(t))
	for _, w := range ws {
		select {
		case <-w.Exited():
		default:
			t.Fatalf("worker %s still runs after the hive stopped", w.ID)
		}
		assert.True(t, processGone(w.Pid()))
	}
	assert.Equal(t, 0, ws[0].ExitCode())
	assert.Equal(t, 0, ws[1].ExitCode())
	assert.Equal(t, -1, ws[2].ExitCode(), "SIGKILL for a worker that ignores the shutdown and SIGTERM")
	assert.Equal(t, 0, ws[3].ExitCode(), "SIGTERM for a worker that ignores the shutdown request")
	stubLog := readLog(t, th.Hive, ws[2].ID)
	assert.Contains(t, stubLog, "fake worker: admin shutdown", "asked first")
	assert.Contains(t, stubLog, "fake worker: SIGTERM", "then SIGTERM")
	assert.Empty(t, th.Workers(), "the registry is cleared")
}

func TestAdminShutdownStopsRun(t *testing.T) {
	th := startHive(t, nil)
	resp, err := th.spawn(t, tinyModel(t, "Q8_0", &fakeBehaviour{}))
	require.NoError(t, err)
	w, _ := th.Worker(resp.WorkerID)
	status, e, _ := raw(t, "POST", th.url+"/v1/admin/shutdown", testToken, "")
	require.Nil(t, e)
	assert.Equal(t, 202, status)
	select {
	case err := <-th.done:
		assert.NoError(t, err)
		close(th.done)
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the admin shutdown")
	}
	<-w.Exited()
	assert.Equal(t, 0, w.ExitCode())
	_, err = th.Catalog().List(context.Background())
	assert.Error(t, err, "the catalog is closed")
}

func TestSpawnRefusedWhileShuttingDown(t *testing.T) {
	h, srv := handlerHive(t, nil)
	model := tinyModel(t, "Q8_0", &fakeBehaviour{})
	status, e, _ := raw(t, "POST", srv.URL+"/v1/admin/shutdown", testToken, "")
	require.Nil(t, e)
	assert.Equal(t, 202, status)
	<-h.ShutdownRequested()
	_, e, _ = raw(t, "POST", srv.URL+"/v1/workers/spawn", testToken, `{"model_ref":"file:`+model+`"}`)
	require.NotNil(t, e)
	assert.Equal(t, api.CodeShuttingDown, e.Code)
	// Health says so too, so that no queen takes the hive for a live one.
	status, e, _ = raw(t, "GET", srv.URL+"/v1/health", "", "")
	require.NotNil(t, e)
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Equal(t, api.CodeShuttingDown, e.Code)
}

func TestNewRefusesCorruptCatalog(t *testing.T) {
	home := t.TempDir()
	db := paths.HiveDB(home)
	require.NoError(t, os.WriteFile(db, []byte("garbage garbage garbage garbage garbage garbage garbage garbage garbage garbage garbage garbage"), 0o600))
	self, _ := os.Executable()
	_, err := New(Config{Home: home, Binary: self, Devices: []Device{}})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrCatalogCorrupt)
	assert.Contains(t, err.Error(), db)
}

func TestNewChecksConfig(t *testing.T) {
	self, _ := os.Executable()
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"port out of range", Config{Port: 70000}, "port 70000"},
		{"worker port out of range", Config{WorkerPortStart: -1}, "worker port start"},
		{"negative timeout", Config{IdleTimeout: -time.Second}, "positive"},
		{"kill before grace", Config{StopGrace: 5 * time.Second, KillAfter: time.Second}, "kill-after"},
		{"public without token", Config{Host: "0.0.0.0"}, "without an API key"},
		{"public with a short token", Config{Host: "0.0.0.0", Token: "short"}, "without an API key"},
		{"missing binary", Config{Binary: "/no/such/rbee"}, "not usable"},
		{"binary is a directory", Config{Binary: "/"}, "directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Home = t.TempDir()
			if cfg.Binary == "" {
				cfg.Binary = self
			}
			_, err := New(cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestMonitorLeavesStartingWorkersToSpawn(t *testing.T) {
	th := startHive(t, func(c *Config) { c.HealthInterval = 10 * time.Millisecond })
	// Silent for far longer than 3 health intervals, then healthy.
	model := tinyModel(t, "Q8_0", &fakeBehaviour{ListenDelay: Duration(time.Second)})
	resp, err := th.spawn(t, model)
	require.NoError(t, err, "the monitor did not kill a worker that was still starting")
	w, ok := th.Worker(resp.WorkerID)
	require.True(t, ok)
	require.NoError(t, w.WaitUntilReady(t.Context()))
	assert.NotContains(t, th.logs.String(), "failed its health check")
}

func TestConcurrentSpawnsGetTheirOwnPorts(t *testing.T) {
	th := startHive(t, nil)
	model := tinyModel(t, "Q8_0", &fakeBehaviour{})
	const n = 4
	urls := make(chan string, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			var resp hivewire.Spawned
			err := th.client.Do(context.Background(), "POST", "/v1/workers/spawn", api.SpawnRequest{ModelRef: "file:" + model}, &resp)
			errs <- err
			urls <- resp.URL
		}()
	}
	seen := map[string]bool{}
	for range n {
		require.NoError(t, <-errs)
		seen[<-urls] = true
	}
	assert.Len(t, seen, n, "every worker has its own port")
	assert.Len(t, th.list(t), n)
	ms, err := th.Catalog().List(t.Context())
	require.NoError(t, err)
	assert.Len(t, ms, 1, "one catalog row")
}
