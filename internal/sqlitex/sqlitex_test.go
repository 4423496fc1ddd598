package sqlitex

import (
	"crypto/rand"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/testutil"
)

func TestOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := Open(t.Context(), path)
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
	_, err = Open(t.Context(), filepath.Join(t.TempDir(), "a?b.db"))
	assert.ErrorContains(t, err, "must not contain")
}

func TestNotADatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	content := []byte("this is not sqlite, just text that is long enough to have a header")
	require.NoError(t, os.WriteFile(path, content, 0o600))
	_, err := Open(t.Context(), path)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrDamaged)
	var de *DamagedError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, path, de.Path)
	assert.Contains(t, err.Error(), path+" is damaged")
	b, _ := os.ReadFile(path)
	assert.Equal(t, content, b, "the file is left as it was")
}

// TestZeroByteFileIsAnEmptyDatabase: an empty file (a crash right after
// creating it, or `touch`) is what SQLite calls an empty database, not
// damage: it opens, and tables can be made in it.
func TestZeroByteFileIsAnEmptyDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	db, err := Open(t.Context(), path)
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(`CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('a')`)
	require.NoError(t, err)
}

// writeRows makes a database at path with a table spread over many pages,
// closes it (the WAL is checkpointed into the file) and returns its page
// size and page count.
func writeRows(t *testing.T, path string) (pageSize, pages int64) {
	t.Helper()
	db, err := Open(t.Context(), path)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`)
	require.NoError(t, err)
	for i := range 400 {
		_, err = db.Exec(`INSERT INTO t (v) VALUES (?)`, fmt.Sprintf("row %d %s", i, strings.Repeat("x", 100)))
		require.NoError(t, err)
	}
	require.NoError(t, db.QueryRow("PRAGMA page_size").Scan(&pageSize))
	require.NoError(t, db.QueryRow("PRAGMA page_count").Scan(&pages))
	require.NoError(t, db.Close())
	_, err = os.Stat(path + "-wal")
	require.ErrorIs(t, err, os.ErrNotExist, "closing the last connection checkpoints the WAL into the file")
	return pageSize, pages
}

// CorruptPage overwrites page pgno (from 1) of the closed database file at
// path with random bytes.
func corruptPage(t *testing.T, path string, pageSize, pgno int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer f.Close()
	garbage := make([]byte, pageSize)
	_, _ = rand.Read(garbage)
	_, err = f.WriteAt(garbage, (pgno-1)*pageSize)
	require.NoError(t, err)
}

// TestDamagedPageRefused overwrites a page in the middle of a real
// database with garbage: quick_check at Open finds it, and the error names
// the file.
func TestDamagedPageRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	pageSize, pages := writeRows(t, path)
	require.Greater(t, pages, int64(6), "the table spans many pages")
	corruptPage(t, path, pageSize, pages/2)
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	_, err = Open(t.Context(), path)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrDamaged)
	assert.True(t, IsDamaged(err))
	assert.Contains(t, err.Error(), path+" is damaged: ")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after, "a damaged file is never rewritten")
}

func TestIsDamagedAtRuntime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	_, pages := writeRows(t, path)
	db, err := Open(t.Context(), path)
	require.NoError(t, err)
	defer db.Close()
	// Damage a page through SQLite itself (its dbpage table), so that
	// every connection of the pool sees it.
	_, err = db.Exec(`UPDATE sqlite_dbpage SET data = randomblob(length(data)) WHERE pgno = ?`, pages/2)
	require.NoError(t, err)
	var n int
	err = db.QueryRow(`SELECT count(*) FROM t WHERE v LIKE '%y%'`).Scan(&n)
	require.Error(t, err)
	assert.True(t, IsDamaged(err), "%v", err)
	assert.False(t, IsFull(err))
	assert.False(t, IsDamaged(sql.ErrNoRows))
}

// TestIsFull fills a small tmpfs (root only) until SQLite cannot write.
func TestIsFull(t *testing.T) {
	dir := testutil.SmallDisk(t, 256<<10)
	db, err := Open(t.Context(), filepath.Join(dir, "x.db"))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(`CREATE TABLE t (v BLOB)`)
	require.NoError(t, err)
	for range 100 {
		if _, err = db.Exec(`INSERT INTO t VALUES (randomblob(16384))`); err != nil {
			break
		}
	}
	require.Error(t, err, "256 KiB cannot hold 1.6 MB")
	assert.True(t, IsFull(err), "%v", err)
	assert.False(t, IsDamaged(err))
}
