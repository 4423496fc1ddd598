package orchestrator

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
)

// fakeBinary writes a shell script standing in for the rbee binary: it
// records its arguments and token environment in dir/args and dir/env,
// then runs body.
func fakeBinary(t *testing.T, body string) (bin, dir string) {
	t.Helper()
	dir = t.TempDir()
	bin = filepath.Join(dir, "rbee")
	script := "#!/bin/sh\n" +
		`printf '%s\n' "$@" > "` + dir + `/args"` + "\n" +
		`printf 'RBEE_API_KEY=%s\nRBEE_CHILD=%s\n' "$RBEE_API_KEY" "$RBEE_CHILD" > "` + dir + `/env"` + "\n" +
		body + "\n"
	require.NoError(t, os.WriteFile(bin, []byte(script), 0o700))
	return bin, dir
}

// TestLocalHiveStartFailures: a local hive that exits while starting, or
// never answers, is CONNECTION_TIMEOUT naming the log; the child gets its
// token in the environment, never on the command line; and the queen stops
// a child that never answered when it closes.
func TestLocalHiveStartFailures(t *testing.T) {
	t.Run("exits", func(t *testing.T) {
		bin, dir := fakeBinary(t, `echo "starting"; echo "hive: port 9200 is in use" >&2; exit 3`)
		tq := newTestQueen(t, Config{Binary: bin, LocalHivePort: newAcceptRecorder(t).port(), LocalWorkerPortStart: 18123})
		res := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
		e := res.errorEvent()
		assertEnvelope(t, e, api.CodeConnectionTimeout, res.header.Get(httpx.RequestIDHeader))
		assert.Contains(t, e.Message, "exited while starting (exit status 3)")
		assert.Contains(t, e.Message, "port 9200 is in use", "the log's last line says why")
		logPath := filepath.Join(tq.cfg.Home, "logs", "hive-local.log")
		assert.Equal(t, logPath, e.Details["log"])
		assert.Contains(t, e.Hint(), "Check if rbee-hive is running on local")

		args, err := os.ReadFile(filepath.Join(dir, "args"))
		require.NoError(t, err)
		want := []string{"hive", "--host", "127.0.0.1", "--port", strconv.Itoa(tq.cfg.LocalHivePort),
			"--worker-port-start", "18123", "--home", tq.cfg.Home}
		assert.Equal(t, want, strings.Fields(string(args)))
		env, err := os.ReadFile(filepath.Join(dir, "env"))
		require.NoError(t, err)
		lines := strings.Split(strings.TrimSpace(string(env)), "\n")
		require.Len(t, lines, 2)
		token, _ := strings.CutPrefix(lines[0], "RBEE_API_KEY=")
		assert.Len(t, token, 64, "a generated 256-bit token")
		assert.Equal(t, "RBEE_CHILD=1", lines[1])
		assert.NotContains(t, string(args), token)
		st, err := os.Stat(logPath)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	})
	t.Run("never answers", func(t *testing.T) {
		bin, dir := fakeBinary(t, `echo $$ > "`+"$(dirname \"$0\")"+`/pid"; exec sleep 60`)
		tq := newTestQueen(t, Config{Binary: bin, LocalHivePort: newAcceptRecorder(t).port(), HiveStartTimeout: 300 * time.Millisecond})
		res := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
		e := res.errorEvent()
		assertEnvelope(t, e, api.CodeConnectionTimeout, res.header.Get(httpx.RequestIDHeader))
		assert.Contains(t, e.Message, "did not answer within 300ms of its start")
		b, err := os.ReadFile(filepath.Join(dir, "pid"))
		require.NoError(t, err)
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		require.NoError(t, err)
		assert.True(t, alive(pid), "the child is the queen's until it closes")
		require.NoError(t, tq.q.Close())
		assert.False(t, alive(pid), "Close stopped the child it started")
	})
	t.Run("missing binary", func(t *testing.T) {
		tq := newTestQueen(t, Config{Binary: filepath.Join(t.TempDir(), "no-rbee"), LocalHivePort: newAcceptRecorder(t).port()})
		res := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
		e := res.errorEvent()
		assertEnvelope(t, e, api.CodeConnectionTimeout, res.header.Get(httpx.RequestIDHeader))
		assert.Contains(t, e.Message, "could not start rbee-hive")
	})
}
