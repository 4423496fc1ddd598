package sqlitex

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := Open(path)
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(`CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('a')`)
	require.NoError(t, err)
	var mode string
	require.NoError(t, db.QueryRow("PRAGMA journal_mode").Scan(&mode))
	assert.Equal(t, "wal", mode)
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		require.NoError(t, err, p)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), p)
	}
	_, err = Open(filepath.Join(t.TempDir(), "a?b.db"))
	assert.ErrorContains(t, err, "must not contain")
}

func TestNotADatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	require.NoError(t, os.WriteFile(path, []byte("this is not sqlite, just text that is long enough to have a header"), 0o600))
	db, err := Open(path)
	require.NoError(t, err)
	defer db.Close()
	assert.Error(t, db.Ping())
	b, _ := os.ReadFile(path)
	assert.Contains(t, string(b), "this is not sqlite", "the file is left as it was")
}
