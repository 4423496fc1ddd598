package orchestrator

import (
	"database/sql"
	"fmt"
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
	"rbee/internal/paths"
	"rbee/internal/testutil"
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

// TestLocalHiveStartFailures: a local hive that exits while starting is
// reported at once as INTERNAL with its exit status and the last lines it
// logged (not as a timeout); one that never answers is CONNECTION_TIMEOUT
// naming the log; the child gets its token in the environment, never on
// the command line; and the queen stops a child that never answered when
// it closes.
func TestLocalHiveStartFailures(t *testing.T) {
	t.Run("exits", func(t *testing.T) {
		bin, dir := fakeBinary(t, `echo "starting"; echo "hive: port 9200 is in use" >&2; exit 3`)
		// A start timeout far longer than the test: only noticing the exit
		// ends the wait.
		tq := newTestQueen(t, Config{Binary: bin, LocalHivePort: newAcceptRecorder(t).port(), LocalWorkerPortStart: 18123,
			HiveStartTimeout: time.Hour})
		logPath := filepath.Join(tq.cfg.Home, "logs", "hive-local.log")
		require.NoError(t, os.MkdirAll(filepath.Dir(logPath), 0o700))
		require.NoError(t, os.WriteFile(logPath, []byte("an older run's last words\n"), 0o600))
		res := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
		e := res.errorEvent()
		assertEnvelope(t, e, api.CodeInternal, res.header.Get(httpx.RequestIDHeader))
		assert.Equal(t, "rbee-hive on local exited while starting (exit status 3): hive: port 9200 is in use", e.Message,
			"the log's last line says why")
		assert.Equal(t, logPath, e.Details["log"])
		assert.EqualValues(t, 3, e.Details["exit_code"])
		assert.Equal(t, []any{"starting", "hive: port 9200 is in use"}, e.Details["log_tail"], "only this run's lines")
		assert.Contains(t, e.Hint(), logPath)

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
		assertEnvelope(t, e, api.CodeInternal, res.header.Get(httpx.RequestIDHeader))
		assert.Contains(t, e.Message, "could not start rbee-hive")
	})
}

// TestLocalHiveExitsOnDamagedCatalog: the local hive's models.db is
// damaged, so the real hive refuses to start; the queen reports at once
// that it exited, with its status and the hive's own reason (naming the
// file), not CONNECTION_TIMEOUT.
func TestLocalHiveExitsOnDamagedCatalog(t *testing.T) {
	skipShort(t)
	home := t.TempDir()
	require.NoError(t, paths.Ensure(home))
	catalog := paths.HiveDB(home)
	makeCatalog(t, catalog)
	testutil.DamageSQLite(t, catalog)

	tq := newTestQueen(t, Config{Home: home, Binary: testutil.RbeeBinary(t), LocalHivePort: testutil.FreePort(t),
		LocalWorkerPortStart: testutil.FreePort(t)})
	res := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
	e := res.errorEvent()
	require.NotNil(t, e, "%s", res.text())
	assert.Equal(t, api.CodeInternal, e.Code, "not a timeout: %s", e.Message)
	assert.Contains(t, e.Message, "rbee-hive on local exited while starting (exit status 1): ")
	assert.Contains(t, e.Message, catalog+" is damaged")
	assert.Contains(t, e.Message, "move the file aside")
	assert.EqualValues(t, 1, e.Details["exit_code"])
	assert.Equal(t, filepath.Join(home, "logs", "hive-local.log"), e.Details["log"])
}

// makeCatalog writes a models.db as a hive keeps it, with enough rows to
// span many pages.
func makeCatalog(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE models (id TEXT PRIMARY KEY, provider TEXT NOT NULL, reference TEXT NOT NULL UNIQUE,
		local_path TEXT NOT NULL, size_bytes INTEGER NOT NULL, sha256 TEXT NOT NULL DEFAULT '', downloaded_at_unix INTEGER NOT NULL)`)
	require.NoError(t, err)
	for i := range 100 {
		_, err = db.Exec(`INSERT INTO models VALUES (?, 'file', ?, ?, 1000, ?, 1700000000)`, fmt.Sprintf("m-%d", i),
			fmt.Sprintf("file:/models/m%03d.gguf", i), fmt.Sprintf("/models/m%03d.gguf", i), strings.Repeat("ab", 32))
		require.NoError(t, err)
	}
	require.NoError(t, db.Close())
}
