package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
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
	"rbee/internal/cliutil"
	"rbee/internal/httpx"
	"rbee/internal/proc"
	"rbee/internal/sse"
	"rbee/internal/testutil"
)

func TestMainUsageErrors(t *testing.T) {
	model := writeModel(t, "Q8_0")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no model", []string{"--port", "8001"}, "--model is required"},
		{"port zero", []string{"--model", model, "--port", "0"}, "--port"},
		{"port too large", []string{"--model", model, "--port", "70000"}, "--port"},
		{"port not a number", []string{"--model", model, "--port", "abc"}, "port"},
		{"slots negative", []string{"--model", model, "--slots", "-1"}, "--slots"},
		{"chunk zero", []string{"--model", model, "--chunk", "0"}, "--chunk"},
		{"chunk too large", []string{"--model", model, "--chunk", "5000"}, "--chunk"},
		{"slots too many", []string{"--model", model, "--slots", "65"}, "--slots"},
		{"negative threads", []string{"--model", model, "--threads", "-1"}, "--threads"},
		{"negative context", []string{"--model", model, "--ctx-size", "-1"}, "--ctx-size"},
		{"bad log level", []string{"--model", model, "--log-level", "loud"}, "--log-level"},
		{"unknown flag", []string{"--model", model, "--api-key", "secret"}, "api-key"},
		{"stray argument", []string{"--model", model, "extra"}, "extra"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Main(t.Context(), c.args, &out)
			var ue *cliutil.UsageError
			require.True(t, errors.As(err, &ue), "want a usage error, got %v", err)
			assert.Contains(t, err.Error(), c.want)
			assert.NotContains(t, err.Error(), "secret")
		})
	}

	t.Run("help", func(t *testing.T) {
		var out bytes.Buffer
		err := Main(t.Context(), []string{"--help"}, &out)
		assert.ErrorIs(t, err, cliutil.ErrHelp)
		assert.Contains(t, out.String(), "usage: rbee worker")
		assert.Contains(t, out.String(), "-callback-url")
	})

	t.Run("config errors are not usage errors", func(t *testing.T) {
		err := Main(t.Context(), []string{"--model", model, "--backend", "cuda"}, &bytes.Buffer{})
		require.Error(t, err)
		var ue *cliutil.UsageError
		assert.False(t, errors.As(err, &ue))
		assert.ErrorIs(t, err, ErrConfig)
	})
}

// TestMainInProcess runs `rbee worker` through Main in this process.
func TestMainInProcess(t *testing.T) {
	const token = "main-token-0123456789abcdef"
	t.Setenv(APIKeyEnv, token)
	port := testutil.FreePort(t)
	var logs testutil.SyncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, []string{"--model", writeModel(t, "Q8_0"), "--port", strconv.Itoa(port),
			"--worker-id", "w-main", "--model-ref", "file:/models/tiny.gguf", "--threads", "1", "--slots", "2",
			"--log-level", "debug"}, &logs)
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHealthy(t, base, done)
	c := &httpx.Client{BaseURL: base, Token: token}
	waitLoaded(t, c)

	var h api.WorkerHealth
	require.NoError(t, c.Do(t.Context(), http.MethodGet, "/v1/health", nil, &h))
	assert.Equal(t, "w-main", h.WorkerID)
	assert.Equal(t, "file:/models/tiny.gguf", h.ModelRef)
	assert.Equal(t, 2, h.SlotsTotal)
	err := (&httpx.Client{BaseURL: base}).Do(t.Context(), http.MethodGet, "/v1/ready", nil, nil)
	assert.ErrorIs(t, err, api.ErrMissingAPIKey, "RBEE_API_KEY is required")

	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Main did not return after its context ended")
	}
	assert.Contains(t, logs.String(), httpx.Fingerprint(token))
	assert.NotContains(t, logs.String(), token)
	assert.Contains(t, logs.String(), "model loaded")
}

// waitHealthy polls GET /v1/health until it answers, failing early if exited
// delivers (the daemon ended).
func waitHealthy[T any](t *testing.T, base string, exited <-chan T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case v := <-exited:
			t.Fatalf("the worker ended before answering: %v", v)
		default:
		}
		resp, err := http.Get(base + "/v1/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s/v1/health did not answer within 20 s", base)
}

// waitLoaded follows the loading progress stream to ready.
func waitLoaded(t *testing.T, c *httpx.Client) {
	t.Helper()
	resp, err := c.Stream(t.Context(), http.MethodGet, "/v1/loading/progress", nil, nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	var last api.Event
	for ev, err := range sse.Read(resp.Body) {
		require.NoError(t, err)
		last = ev
	}
	require.Equal(t, api.KindProgress, last.Kind)
	require.Equal(t, api.StageReady, last.Progress.Stage)
}

// workerProc is `rbee worker` running as a child process.
type workerProc struct {
	p      *proc.Process
	stderr *testutil.SyncBuffer
	base   string
	exited chan struct{}
}

// startProc starts the rbee binary as a worker with args (a free port is
// added unless args name one) and env.
func startProc(t *testing.T, args []string, env ...string) *workerProc {
	t.Helper()
	bin := testutil.RbeeBinary(t)
	port := 0
	for i, a := range args {
		if a == "--port" && i+1 < len(args) {
			port, _ = strconv.Atoi(args[i+1])
		}
	}
	if port == 0 {
		port = testutil.FreePort(t)
		args = append(args, "--port", strconv.Itoa(port))
	}
	wp := &workerProc{stderr: &testutil.SyncBuffer{}, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	p, err := proc.Start(proc.Spec{Path: bin, Args: append([]string{"worker"}, args...), Env: append(env, "RBEE_CHILD=1"),
		Stderr: wp.stderr, Stdout: wp.stderr})
	require.NoError(t, err)
	wp.p = p
	wp.exited = make(chan struct{})
	go func() { <-p.Exited(); close(wp.exited) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = p.Stop(ctx, 10*time.Second)
		if t.Failed() {
			t.Logf("worker stderr:\n%s", wp.stderr.String())
		}
	})
	return wp
}

// exitCode waits for the process to exit and returns its status.
func (wp *workerProc) exitCode(t *testing.T) int {
	t.Helper()
	require.True(t, wp.p.WaitTimeout(20*time.Second), "the worker did not exit within 20 s; stderr:\n%s", wp.stderr.String())
	return wp.p.ExitCode()
}

func TestProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the rbee binary")
	}
	testutil.RbeeBinary(t) // build once, before the subtests' clocks start
	model := writeModel(t, "Q8_0")
	const token = "proc-token-0123456789abcdef"

	t.Run("admin shutdown exits 0", func(t *testing.T) {
		wp := startProc(t, []string{"--model", model, "--worker-id", "w-proc", "--threads", "1"}, APIKeyEnv+"="+token)
		waitHealthy(t, wp.base, wp.exited)
		c := &httpx.Client{BaseURL: wp.base, Token: token}
		waitLoaded(t, c)

		// The token is in the environment, never on the command line.
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", wp.p.Pid()))
		if err == nil {
			assert.Contains(t, string(cmdline), "w-proc")
			assert.NotContains(t, string(cmdline), token)
		}
		var res api.InferenceResult
		r := greedy("Once upon a time", 4)
		r.Stream = ptr(false)
		require.NoError(t, c.Do(t.Context(), http.MethodPost, "/v1/inference", r, &res))
		assert.Equal(t, 4, res.TotalTokens)

		require.NoError(t, c.Do(t.Context(), http.MethodPost, "/v1/admin/shutdown", nil, nil))
		assert.Equal(t, 0, wp.exitCode(t))
		assert.NotContains(t, wp.stderr.String(), token)
		assert.Contains(t, wp.stderr.String(), httpx.Fingerprint(token))
	})

	t.Run("SIGTERM exits 0", func(t *testing.T) {
		wp := startProc(t, []string{"--model", model, "--threads", "1"})
		waitHealthy(t, wp.base, wp.exited)
		waitLoaded(t, &httpx.Client{BaseURL: wp.base})
		require.NoError(t, wp.p.Signal(syscall.SIGTERM))
		assert.Equal(t, 0, wp.exitCode(t))
	})

	t.Run("busy port exits 3", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		wp := startProc(t, []string{"--model", model, "--port", strconv.Itoa(port)})
		code := wp.exitCode(t)
		assert.Contains(t, wp.stderr.String(), fmt.Sprintf("port %d is in use", port))
		assert.Equal(t, ExitPortInUse, code, "stderr:\n%s", wp.stderr.String())
	})

	t.Run("bad model exits 1", func(t *testing.T) {
		text := filepath.Join(t.TempDir(), "notes.gguf")
		require.NoError(t, os.WriteFile(text, []byte("not a model at all"), 0o600))
		for _, c := range []struct{ name, path, want string }{
			{"missing", filepath.Join(t.TempDir(), "absent.gguf"), "no such file"},
			{"not GGUF", text, "not a GGUF file"},
		} {
			t.Run(c.name, func(t *testing.T) {
				wp := startProc(t, []string{"--model", c.path})
				assert.Equal(t, 1, wp.exitCode(t))
				stderr := wp.stderr.String()
				assert.Contains(t, stderr, "rbee worker: loading model "+c.path)
				assert.Contains(t, stderr, c.want)
			})
		}
	})

	t.Run("api key file", func(t *testing.T) {
		dir := t.TempDir()
		leaky := filepath.Join(dir, "leaky")
		require.NoError(t, os.WriteFile(leaky, []byte(token), 0o600))
		require.NoError(t, os.Chmod(leaky, 0o644))
		wp := startProc(t, []string{"--model", model, "--api-key-file", leaky})
		assert.Equal(t, 1, wp.exitCode(t))
		assert.Contains(t, wp.stderr.String(), "mode 0644")
		assert.NotContains(t, wp.stderr.String(), token)

		private := filepath.Join(dir, "private")
		require.NoError(t, os.WriteFile(private, []byte(token+"\n"), 0o600))
		wp = startProc(t, []string{"--model", model, "--api-key-file", private, "--threads", "1"})
		waitHealthy(t, wp.base, wp.exited)
		err := (&httpx.Client{BaseURL: wp.base}).Do(t.Context(), http.MethodGet, "/v1/ready", nil, nil)
		assert.ErrorIs(t, err, api.ErrMissingAPIKey)
		c := &httpx.Client{BaseURL: wp.base, Token: token}
		waitLoaded(t, c)
		require.NoError(t, c.Do(t.Context(), http.MethodPost, "/v1/admin/shutdown", nil, nil))
		assert.Equal(t, 0, wp.exitCode(t))
	})

	t.Run("usage error exits 2", func(t *testing.T) {
		wp := startProc(t, []string{"--model", model, "--slots", "-1"})
		assert.Equal(t, 2, wp.exitCode(t))
		assert.True(t, strings.Contains(wp.stderr.String(), "--slots"), "stderr: %s", wp.stderr.String())
	})
}

// TestMainSlots: --slots beats $RBEE_WORKER_SLOTS, which beats the
// automatic choice (4 for the tiny model, whose KV caches fit anywhere).
func TestMainSlots(t *testing.T) {
	model := writeModel(t, "Q8_0")
	cases := []struct {
		name string
		env  string
		args []string
		want int
	}{
		{"automatic", "", nil, DefaultSlots},
		{"environment", "3", nil, 3},
		{"flag beats environment", "3", []string{"--slots", "2"}, 2},
		{"environment asks automatic", "0", nil, DefaultSlots},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(APIKeyEnv, testToken)
			t.Setenv(SlotsEnv, c.env)
			port := testutil.FreePort(t)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			var logs testutil.SyncBuffer
			go func() {
				done <- Main(ctx, append([]string{"--model", model, "--port", strconv.Itoa(port), "--threads", "1"}, c.args...), &logs)
			}()
			base := fmt.Sprintf("http://127.0.0.1:%d", port)
			waitHealthy(t, base, done)
			cl := &httpx.Client{BaseURL: base, Token: testToken}
			waitLoaded(t, cl)
			var h api.WorkerHealth
			require.NoError(t, cl.Do(t.Context(), http.MethodGet, "/v1/health", nil, &h))
			assert.Equal(t, c.want, h.SlotsTotal)
			cancel()
			select {
			case err := <-done:
				assert.NoError(t, err)
			case <-time.After(20 * time.Second):
				t.Fatal("Main did not return after its context ended")
			}
		})
	}
	t.Run("bad environment", func(t *testing.T) {
		t.Setenv(SlotsEnv, "many")
		var out bytes.Buffer
		err := Main(t.Context(), []string{"--model", model}, &out)
		require.Error(t, err)
		assert.Contains(t, err.Error(), SlotsEnv)
	})
}
