package proc

import (
	"bufio"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStartWaitAndLog(t *testing.T) {
	log := filepath.Join(t.TempDir(), "child.log")
	p, err := Start(Spec{Path: "/bin/sh", Args: []string{"-c", "echo hello $RBEE_X; exit 3"}, Env: []string{"RBEE_X=world"}, LogFile: log})
	require.NoError(t, err)
	assert.Error(t, p.Wait())
	assert.Equal(t, 3, p.ExitCode())
	b, err := os.ReadFile(log)
	require.NoError(t, err)
	assert.Equal(t, "hello world\n", string(b))
	fi, err := os.Stat(log)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestStopEscalatesToKill(t *testing.T) {
	// The child ignores SIGTERM; Stop must kill it after the grace period.
	p := startReady(t, "trap '' TERM; echo ready; while :; do sleep 0.05; done")
	require.NoError(t, p.Stop(t.Context(), 200*time.Millisecond))
	assert.Equal(t, -1, p.ExitCode(), "killed by a signal")
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	assert.Equal(t, syscall.SIGKILL, ws.Signal())
}

func TestStopGraceful(t *testing.T) {
	p := startReady(t, "trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done")
	require.NoError(t, p.Stop(t.Context(), 5*time.Second))
	assert.Equal(t, 0, p.ExitCode())
	assert.NoError(t, p.Signal(syscall.SIGTERM), "signalling an exited child is a no-op")
}

// startReady runs script with sh and returns once it has printed "ready" (a
// script prints it after installing its signal traps).
func startReady(t *testing.T, script string) *Process {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	p, err := Start(Spec{Path: "/bin/sh", Args: []string{"-c", script}, Stdout: w})
	w.Close() // the child has its own copy
	require.NoError(t, err)
	require.NoError(t, r.SetReadDeadline(time.Now().Add(10*time.Second)))
	line, err := bufio.NewReader(r).ReadString('\n')
	require.NoError(t, err, "the script did not say it was ready")
	require.Equal(t, "ready\n", line)
	return p
}

func TestOwnProcessGroup(t *testing.T) {
	p, err := Start(Spec{Path: "/bin/sleep", Args: []string{"5"}})
	require.NoError(t, err)
	defer p.Stop(t.Context(), time.Second)
	pgid, err := syscall.Getpgid(p.Pid())
	require.NoError(t, err)
	assert.Equal(t, p.Pid(), pgid)
}
