package proc

import (
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
	p, err := Start(Spec{Path: "/bin/sh", Args: []string{"-c", "trap '' TERM; while :; do sleep 0.05; done"}})
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond) // let the shell install its trap
	require.NoError(t, p.Stop(t.Context(), 200*time.Millisecond))
	assert.Equal(t, -1, p.ExitCode(), "killed by a signal")
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	assert.Equal(t, syscall.SIGKILL, ws.Signal())
}

func TestStopGraceful(t *testing.T) {
	p, err := Start(Spec{Path: "/bin/sh", Args: []string{"-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"}})
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, p.Stop(t.Context(), 5*time.Second))
	assert.Equal(t, 0, p.ExitCode())
	assert.NoError(t, p.Signal(syscall.SIGTERM), "signalling an exited child is a no-op")
}

func TestOwnProcessGroup(t *testing.T) {
	p, err := Start(Spec{Path: "/bin/sleep", Args: []string{"5"}})
	require.NoError(t, err)
	defer p.Stop(t.Context(), time.Second)
	pgid, err := syscall.Getpgid(p.Pid())
	require.NoError(t, err)
	assert.Equal(t, p.Pid(), pgid)
}
