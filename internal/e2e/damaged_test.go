package e2e

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

	"rbee/internal/hftest"
	"rbee/internal/testutil"
)

// State on disk is checked, not trusted: these tests damage a model file
// or a SQLite file between two real rbee commands and look at what the
// user is told.

// flipMiddle flips 64 bytes in the middle of a file, keeping its size (its
// modification time moves on, by a second if the write fell in the same
// clock tick).
func flipMiddle(t *testing.T, path string) {
	t.Helper()
	before, err := os.Stat(path)
	require.NoError(t, err)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	for i := len(b) / 2; i < len(b)/2+64; i++ {
		b[i] ^= 0xff
	}
	require.NoError(t, os.WriteFile(path, b, 0o644))
	if after, err := os.Stat(path); err == nil && after.ModTime().Equal(before.ModTime()) {
		later := before.ModTime().Add(time.Second)
		require.NoError(t, os.Chtimes(path, later, later))
	}
}

// TestDamagedHFModelIsDownloadedAgain: a downloaded model corrupted on disk
// without a size change is found out by its SHA-256 at the next rbee infer,
// downloaded again with the reason and a progress bar, and then served:
// the same greedy tokens as before.
func TestDamagedHFModelIsDownloadedAgain(t *testing.T) {
	hub := hftest.New(t)
	const file = "tiny.Q4_K_M.gguf"
	c := newCluster(t, "")
	model := "hf:" + hftest.RepoTiny
	first := c.hfInfer(hub, model)
	require.Equal(t, 0, first.code, "%s%s", first, c.logs())
	local := filepath.Join(c.home, "models", "hf", hftest.RepoTiny, file)
	flipMiddle(t, local)

	r := c.hfInfer(hub, model)
	require.Equal(t, 0, r.code, "%s%s", r, c.logs())
	assert.Contains(t, r.stderr, "[hive] The file of "+model+" ("+file+") is damaged: its SHA-256 is now ")
	assert.Contains(t, r.stderr, "…, the catalog has "+hub.SHA256(hftest.RepoTiny, file)[:12]+"…; its size is unchanged (")
	assert.Contains(t, r.stderr, "; downloading it again\n")
	assert.Contains(t, r.stderr, "[keeper] Downloading model: 100%", "a normal download, with its progress bar")
	assert.Len(t, hub.Transfers(hftest.RepoTiny, file), 2, "fetched once more")
	assert.Equal(t, first.stdout, r.stdout, "served from the good copy: the same greedy tokens")
	rows := c.catalogRows()
	require.Len(t, rows, 1)
	assert.Equal(t, hub.SHA256(hftest.RepoTiny, file), rows[0].sha256)

	again := c.hfInfer(hub, model)
	require.Equal(t, 0, again.code, "%s%s", again, c.logs())
	assert.NotContains(t, again.stderr, "Downloading", "the good copy is trusted again")
}

// TestDamagedFileModelIsRefused: a file: model whose bytes changed (same
// size) after it was catalogued is refused with CHECKSUM_MISMATCH naming
// the file and what changed, and the keeper exits 1.
func TestDamagedFileModelIsRefused(t *testing.T) {
	c := newCluster(t, tinyModel(t))
	first := c.rbee(c.inferArgs("--max-tokens", "4")...)
	require.Equal(t, 0, first.code, "%s%s", first, c.logs())
	flipMiddle(t, c.model)

	r := c.rbee(c.inferArgs("--max-tokens", "4")...)
	assert.Equal(t, 1, r.code, "%s%s", r, c.logs())
	assert.Empty(t, r.stdout)
	assert.Contains(t, r.stderr, "rbee infer: model file "+c.model+" of file:"+c.model+
		" changed since it was added to this node's catalog: its SHA-256 is now ")
	assert.Contains(t, r.stderr, "hint: if the file was damaged, copy it again from where it came from")
	assert.Empty(t, c.role("worker"), "no worker loads it")
}

// TestDamagedCatalogStopsTheLocalHive: models.db gets a page of garbage;
// the hive refuses to start, and the keeper is told at once that it
// exited and why (the file and what to do), not that it timed out.
func TestDamagedCatalogStopsTheLocalHive(t *testing.T) {
	c := newCluster(t, tinyModel(t))
	first := c.rbee(c.inferArgs("--max-tokens", "4")...)
	require.Equal(t, 0, first.code, "%s%s", first, c.logs())
	catalog := filepath.Join(c.home, "models.db")
	_, err := os.Stat(catalog + "-wal")
	require.ErrorIs(t, err, os.ErrNotExist, "the hive closed its catalog cleanly")
	testutil.DamageSQLite(t, catalog)

	r := c.rbee(c.inferArgs("--max-tokens", "4")...)
	assert.Equal(t, 1, r.code, "%s%s", r, c.logs())
	assert.Contains(t, r.stderr, "rbee infer: rbee-hive on local exited while starting (exit status 1): rbee hive: hive: model catalog is corrupt: "+
		catalog+" is damaged: ")
	assert.Contains(t, r.stderr, "move the file aside")
	assert.NotContains(t, r.stderr, "did not answer")
	assert.NotContains(t, r.stderr, "CONNECTION_TIMEOUT")
}

// TestDamagedRegistryStopsTheQueen: rbee queen refuses to start on a
// beehives.db with a damaged page, naming the file and what to do.
func TestDamagedRegistryStopsTheQueen(t *testing.T) {
	c := newCluster(t, "")
	registry := filepath.Join(c.home, "beehives.db")
	db, err := sql.Open("sqlite", registry)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE beehives (node_name TEXT PRIMARY KEY NOT NULL, ssh_host TEXT NOT NULL DEFAULT '')`)
	require.NoError(t, err)
	for i := range 200 {
		_, err = db.Exec(`INSERT INTO beehives VALUES (?, ?)`, fmt.Sprintf("node-%03d", i), strings.Repeat("h", 40))
		require.NoError(t, err)
	}
	require.NoError(t, db.Close())
	testutil.DamageSQLite(t, registry)

	r := c.rbee("queen", "--port", strconv.Itoa(c.queenPort), "--home", c.home)
	assert.Equal(t, 1, r.code, "%s", r)
	assert.Contains(t, r.stderr, "rbee queen: node registry "+registry+" is damaged: ")
	assert.Contains(t, r.stderr, "mv "+registry+" "+registry+".damaged")
}
