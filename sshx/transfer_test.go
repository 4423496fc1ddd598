package sshx

import (
	"bytes"
	"context"
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

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/sshtest"
)

// The sshd of these tests runs on this machine, so the "remote" files and
// processes are checked locally.

func TestUpload(t *testing.T) {
	s := sshtest.Start(t)
	c := dialServer(t, s)
	ctx := t.Context()
	dir := t.TempDir()

	t.Run("mode given", func(t *testing.T) {
		for _, mode := range []os.FileMode{0o755, 0o600, 0o640} {
			p := filepath.Join(dir, "f"+strconv.FormatUint(uint64(mode), 8))
			data := bytes.Repeat([]byte("rbee\x00\xff\n"), 100_000) // binary, 700 kB
			require.NoError(t, c.Upload(ctx, bytes.NewReader(data), p, mode))
			got, err := os.ReadFile(p)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(data, got))
			st, err := os.Stat(p)
			require.NoError(t, err)
			assert.Equal(t, mode, st.Mode().Perm())
		}
	})
	t.Run("secret defaults to 0600", func(t *testing.T) {
		p := filepath.Join(dir, "token")
		require.NoError(t, c.Upload(ctx, strings.NewReader("s3cr3t-token"), p, 0))
		st, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	})
	t.Run("file mode preserved", func(t *testing.T) {
		local := filepath.Join(t.TempDir(), "rbee")
		require.NoError(t, os.WriteFile(local, []byte("#!/bin/sh\necho hi\n"), 0o750))
		require.NoError(t, os.Chmod(local, 0o750))
		p := filepath.Join(dir, "bin", "nested", "rbee") // missing directories
		require.NoError(t, c.UploadFile(ctx, local, p, 0))
		st, err := os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o750), st.Mode().Perm())
		out, err := c.Output(ctx, p)
		require.NoError(t, err)
		assert.Equal(t, "hi\n", out)

		require.NoError(t, c.UploadFile(ctx, local, p, 0o700), "mode given overrides")
		st, err = os.Stat(p)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o700), st.Mode().Perm())
	})
	t.Run("replaces a running binary", func(t *testing.T) {
		cp := filepath.Join(dir, "sleepcopy")
		sleepBin, err := c.Output(ctx, "sh", "-c", "command -v sleep")
		require.NoError(t, err)
		require.NoError(t, c.UploadFile(ctx, strings.TrimSpace(sleepBin), cp, 0o755))
		pid, err := c.StartDetached(ctx, []string{cp, "30"}, nil, filepath.Join(dir, "busy.log"))
		require.NoError(t, err)
		defer func() { assert.NoError(t, c.Stop(ctx, pid, time.Second)) }()
		require.NoError(t, c.Upload(ctx, strings.NewReader("new"), cp, 0o755))
		got, err := os.ReadFile(cp)
		require.NoError(t, err)
		assert.Equal(t, "new", string(got))
	})
	t.Run("a failing reader leaves nothing behind", func(t *testing.T) {
		sub := t.TempDir()
		p := filepath.Join(sub, "partial")
		r := io.MultiReader(strings.NewReader("half of it"), errReader{errors.New("disk read failed")})
		err := c.Upload(ctx, r, p, 0o644)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "disk read failed")
		entries, err := os.ReadDir(sub)
		require.NoError(t, err)
		assert.Empty(t, entries, "no file, no temporary file")
	})
	t.Run("paths are quoted", func(t *testing.T) {
		p := filepath.Join(dir, "it's a $(dir)", "x;y")
		require.NoError(t, c.Upload(ctx, strings.NewReader("ok"), p, 0o644))
		got, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.Equal(t, "ok", string(got))
	})
	t.Run("bad paths", func(t *testing.T) {
		assert.Error(t, c.Upload(ctx, strings.NewReader(""), "", 0))
		assert.ErrorIs(t, c.Upload(ctx, strings.NewReader(""), "a\x00b", 0), ErrBadArgv)
		var ee *ExitError
		assert.ErrorAs(t, c.Upload(ctx, strings.NewReader("x"), "/proc/rbee-cannot-write/x", 0), &ee)
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// waitFor polls the file at path until it contains want.
func waitFor(t *testing.T, path, want string) {
	t.Helper()
	assert.Eventually(t, func() bool {
		data, _ := os.ReadFile(path)
		return strings.Contains(string(data), want)
	}, 10*time.Second, 20*time.Millisecond, "%s never contained %q", path, want)
}

func TestDetachedProcess(t *testing.T) {
	s := sshtest.Start(t)
	ctx := t.Context()
	dir := t.TempDir()
	logFile := filepath.Join(dir, "hive.log")
	const token = "tok-0123456789abcdef"

	c := dialServer(t, s)
	pid, err := c.StartDetached(ctx,
		[]string{"sh", "-c", `echo "started $RBEE_TOKEN"; echo oops >&2; exec sleep 60`, "ignored-arg0"},
		map[string]string{"RBEE_TOKEN": token}, logFile)
	require.NoError(t, err)
	require.Greater(t, pid, 1)
	t.Cleanup(func() { _ = syscallKill(pid) })
	waitFor(t, logFile, "started "+token)
	waitFor(t, logFile, "oops")

	// The token is in the environment, not on any command line.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err == nil {
		assert.NotContains(t, string(cmdline), token)
		environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		require.NoError(t, err)
		assert.Contains(t, string(environ), "RBEE_TOKEN="+token)
	}

	// It outlives the session and the connection.
	require.NoError(t, c.Close())
	c2 := dialServer(t, s)
	alive, err := c2.Alive(ctx, pid)
	require.NoError(t, err)
	assert.True(t, alive)

	require.NoError(t, c2.Stop(ctx, pid, 5*time.Second))
	alive, err = c2.Alive(ctx, pid)
	require.NoError(t, err)
	assert.False(t, alive)
	assert.NoError(t, c2.Stop(ctx, pid, time.Second), "stopping a stopped process is fine")

	t.Run("log is appended", func(t *testing.T) {
		pid, err := c2.StartDetached(ctx, []string{"echo", "second run"}, nil, logFile)
		require.NoError(t, err)
		waitFor(t, logFile, "second run")
		data, err := os.ReadFile(logFile)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(string(data), "started "), "earlier output kept")
		assert.Eventually(t, func() bool {
			alive, err := c2.Alive(ctx, pid)
			return err == nil && !alive
		}, 10*time.Second, 20*time.Millisecond)
	})
	t.Run("program not found", func(t *testing.T) {
		_, err := c2.StartDetached(ctx, []string{"no-such-rbee-binary"}, nil, logFile)
		var ee *ExitError
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, 127, ee.Status)
		assert.Contains(t, ee.Error(), "not found")
	})
	t.Run("bad arguments", func(t *testing.T) {
		_, err := c2.StartDetached(ctx, nil, nil, logFile)
		assert.ErrorIs(t, err, ErrBadArgv)
		_, err = c2.StartDetached(ctx, []string{"true"}, nil, "")
		assert.Error(t, err)
		_, err = c2.StartDetached(ctx, []string{"true"}, map[string]string{"BAD NAME": "x"}, logFile)
		assert.ErrorIs(t, err, ErrBadArgv)
		for _, pid := range []int{-1, 0, 1} {
			_, err := c2.Alive(ctx, pid)
			assert.ErrorIs(t, err, ErrBadPid)
			assert.ErrorIs(t, c2.Stop(ctx, pid, time.Second), ErrBadPid)
		}
	})
}

func TestStopKillsAProcessThatIgnoresTERM(t *testing.T) {
	s := sshtest.Start(t)
	ctx := t.Context()
	var logs bytes.Buffer
	cfg := serverConfig(s)
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: &syncWriter{w: &logs}, Level: hclog.Debug})
	c, err := Dial(ctx, cfg)
	require.NoError(t, err)
	defer c.Close()

	logFile := filepath.Join(t.TempDir(), "stubborn.log")
	pid, err := c.StartDetached(ctx, []string{"sh", "-c", `trap 'echo got TERM' TERM; echo ready; while :; do sleep 0.05; done`}, nil, logFile)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscallKill(pid) })
	waitFor(t, logFile, "ready")

	require.NoError(t, c.Stop(ctx, pid, 300*time.Millisecond))
	alive, err := c.Alive(ctx, pid)
	require.NoError(t, err)
	assert.False(t, alive)
	waitFor(t, logFile, "got TERM")
	assert.Contains(t, logs.String(), "killing it")
}

func TestForward(t *testing.T) {
	s := sshtest.Start(t)
	c := dialServer(t, s)
	// An HTTP server on the node's loopback, reachable only through the tunnel
	// in a real deployment.
	hive := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	}))
	defer hive.Close()
	remote := strings.TrimPrefix(hive.URL, "http://")

	local, closeTunnel, err := c.Forward(t.Context(), remote)
	require.NoError(t, err)
	assert.NotEqual(t, remote, local)
	assert.True(t, strings.HasPrefix(local, "127.0.0.1:"))

	hc := &http.Client{Timeout: 10 * time.Second}
	for i := range 3 { // several requests, kept-alive and new connections
		resp, err := hc.Post("http://"+local+"/v1/health", "text/plain", strings.NewReader("ping"+strconv.Itoa(i)))
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, "POST /v1/health ping"+strconv.Itoa(i), string(body))
	}
	hc.CloseIdleConnections()

	require.NoError(t, closeTunnel())
	require.NoError(t, closeTunnel(), "close twice")
	_, err = hc.Get("http://" + local + "/")
	assert.Error(t, err, "the tunnel is closed")

	t.Run("closed with its context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		local, _, err := c.Forward(ctx, remote)
		require.NoError(t, err)
		resp, err := hc.Get("http://" + local + "/x")
		require.NoError(t, err)
		resp.Body.Close()
		hc.CloseIdleConnections()
		cancel()
		assert.Eventually(t, func() bool {
			_, err := hc.Get("http://" + local + "/")
			return err != nil
		}, 5*time.Second, 10*time.Millisecond)
	})
	t.Run("closed with the client", func(t *testing.T) {
		c := dialServer(t, s)
		local, _, err := c.Forward(t.Context(), remote)
		require.NoError(t, err)
		resp, err := hc.Get("http://" + local + "/held") // a kept-alive connection stays open
		require.NoError(t, err)
		resp.Body.Close()
		require.NoError(t, c.Close())
		_, err = hc.Get("http://" + local + "/")
		assert.Error(t, err)
		hc.CloseIdleConnections()
		_, _, err = c.Forward(t.Context(), remote)
		assert.Error(t, err)
	})
	t.Run("nothing listening remotely", func(t *testing.T) {
		local, closeTunnel, err := c.Forward(t.Context(), "127.0.0.1:"+strconv.Itoa(closedPort(t)))
		require.NoError(t, err)
		defer closeTunnel()
		_, err = hc.Get("http://" + local + "/")
		assert.Error(t, err)
	})
	t.Run("bad address", func(t *testing.T) {
		_, _, err := c.Forward(t.Context(), "no-port")
		assert.Error(t, err)
	})
}

// syncWriter serializes writes from the logger.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// syscallKill is the tests' safety net for processes they started.
func syscallKill(pid int) error {
	if pid <= 1 {
		return nil
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}
