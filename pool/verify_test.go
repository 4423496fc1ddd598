package pool

import (
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/hftest"
	"rbee/internal/hivewire"
	"rbee/internal/paths"
)

// fileSHA256 is the hex SHA-256 of a file's bytes.
func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// catalogFile adds a row for the file at path as the hive makes them: its
// size, SHA-256 and modification time.
func catalogFile(t *testing.T, c *Catalog, provider, ref, path string) api.ModelEntry {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	r, err := c.register(t.Context(), modelRow{ModelEntry: api.ModelEntry{Provider: provider, Reference: ref, LocalPath: path,
		SizeBytes: st.Size(), SHA256: fileSHA256(t, path), DownloadedAtUnix: 1}, MTimeNs: st.ModTime().UnixNano()})
	require.NoError(t, err)
	return r.ModelEntry
}

// damageSameSize flips 64 bytes in the middle of a file, keeping its size,
// as a stray write or a failing disk would. The write moves the file's
// modification time; should it land in the same clock tick as the last
// write, the time is moved on by a second so the change can be seen.
func damageSameSize(t *testing.T, path string) {
	t.Helper()
	before, err := os.Stat(path)
	require.NoError(t, err)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	for i := len(b) / 2; i < len(b)/2+64; i++ {
		b[i] ^= 0xff
	}
	require.NoError(t, os.WriteFile(path, b, 0o644))
	after, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, before.Size(), after.Size())
	if after.ModTime().Equal(before.ModTime()) {
		later := before.ModTime().Add(time.Second)
		require.NoError(t, os.Chtimes(path, later, later))
	}
}

// touch moves a file's modification time on without changing its bytes.
func touch(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	later := st.ModTime().Add(time.Minute)
	require.NoError(t, os.Chtimes(path, later, later))
}

// spawnErr asks for a worker of a model reference and returns the error
// envelope and status (a hive with FakeMemoryMB 1 resolves and verifies
// the model, then refuses in its preflight: no worker starts).
func spawnErr(t *testing.T, url, ref string) (int, *api.Error) {
	t.Helper()
	status, e, body := raw(t, "POST", url+"/v1/workers/spawn", testToken, `{"model_ref":"`+ref+`","backend":"cpu"}`)
	require.NotNil(t, e, "the spawn fails: %s", body)
	return status, e
}

// hashLines counts the hive's log lines about hashing a model file.
func hashLines(th *testHive) int { return strings.Count(th.logs.String(), "hashed a model file") }

// TestSameSizeCorruptedFileModelRefused: a file: model whose bytes change
// without a size change is noticed by its modification time, re-hashed,
// and refused with CHECKSUM_MISMATCH naming the file and what changed,
// until the original bytes are back.
func TestSameSizeCorruptedFileModelRefused(t *testing.T) {
	th := startHive(t, func(c *Config) { c.FakeMemoryMB = 1 })
	path := tinyModel(t, "Q8_0", nil)
	ref := "file:" + path
	orig, err := os.ReadFile(path)
	require.NoError(t, err)

	_, e := spawnErr(t, th.url, ref)
	require.Equal(t, api.CodeInsufficientRAM, e.Code, "registered, then refused by the preflight: %s", e.Message)
	row, err := th.catalog.row(t.Context(), ref)
	require.NoError(t, err)
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, fileSHA256(t, path), row.SHA256)
	assert.Equal(t, st.ModTime().UnixNano(), row.MTimeNs)
	assert.Equal(t, st.Size(), row.SizeBytes)

	damageSameSize(t, path)
	damaged := fileSHA256(t, path)
	for range 2 { // refused every time, not only the first
		status, e := spawnErr(t, th.url, ref)
		assert.Equal(t, http.StatusBadGateway, status)
		assert.Equal(t, api.CodeChecksumMismatch, e.Code)
		assert.Contains(t, e.Message, "model file "+path+" of "+ref+" changed since it was added to this node's catalog: ")
		assert.Contains(t, e.Message, "its SHA-256 is now "+damaged[:12]+"…, the catalog has "+row.SHA256[:12]+"…")
		assert.Contains(t, e.Message, "its size is unchanged (")
		assert.Contains(t, e.Message, "it was modified at ")
		assert.Equal(t, row.SHA256, e.Details["expected_sha256"])
		assert.Equal(t, damaged, e.Details["actual_sha256"])
		assert.Equal(t, path, e.Details["file"])
		assert.Contains(t, e.Hint(), "copy it again")
	}
	kept, err := th.catalog.row(t.Context(), ref)
	require.NoError(t, err)
	assert.Equal(t, row.SHA256, kept.SHA256, "the catalog keeps the original's hash")

	// The original bytes back (a new modification time): accepted again.
	require.NoError(t, os.WriteFile(path, orig, 0o644))
	_, e = spawnErr(t, th.url, ref)
	assert.Equal(t, api.CodeInsufficientRAM, e.Code, "%s", e.Message)
	now, err := os.Stat(path)
	require.NoError(t, err)
	restored, err := th.catalog.row(t.Context(), ref)
	require.NoError(t, err)
	assert.Equal(t, now.ModTime().UnixNano(), restored.MTimeNs, "the new time is recorded")
}

// TestUnchangedModelIsNotRehashed: the file is hashed when it is
// catalogued and when its size or modification time changed, never
// otherwise.
func TestUnchangedModelIsNotRehashed(t *testing.T) {
	th := startHive(t, func(c *Config) { c.FakeMemoryMB = 1 })
	path := tinyModel(t, "Q8_0", nil)
	ref := "file:" + path
	for range 3 {
		_, e := spawnErr(t, th.url, ref)
		require.Equal(t, api.CodeInsufficientRAM, e.Code, "%s", e.Message)
	}
	assert.Equal(t, 1, hashLines(th), "hashed once, when catalogued")
	touch(t, path)
	_, e := spawnErr(t, th.url, ref)
	require.Equal(t, api.CodeInsufficientRAM, e.Code, "a new time with the same bytes is accepted: %s", e.Message)
	assert.Equal(t, 2, hashLines(th), "the changed time made it hash the file again")
	_, e = spawnErr(t, th.url, ref)
	require.Equal(t, api.CodeInsufficientRAM, e.Code)
	assert.Equal(t, 2, hashLines(th), "and the new time was recorded")
}

// TestSameSizeCorruptedHFModelRedownloaded: a downloaded model damaged on
// disk without a size change is listed without its header summary (the
// queen then asks for it again); the download finds the damage by its
// SHA-256, says so, fetches the file again from the hub with progress,
// and a worker is then served from it.
func TestSameSizeCorruptedHFModelRedownloaded(t *testing.T) {
	hub := hftest.New(t)
	th := hubHive(t, hub, nil)
	const file = "tiny.Q4_K_M.gguf"
	ref := "hf:" + hftest.RepoTiny
	_, eerr := th.follow(t, th.startDownload(t, ref))
	require.Nil(t, eerr)
	local := filepath.Join(paths.ModelsDir(th.Config().Home), "hf", hftest.RepoTiny, file)
	want := hub.SHA256(hftest.RepoTiny, file)
	require.Equal(t, want, fileSHA256(t, local))

	damageSameSize(t, local)
	var list api.ModelList
	require.NoError(t, th.client.Do(t.Context(), "GET", "/v1/models", nil, &list))
	require.Len(t, list.Models, 1)
	assert.Nil(t, list.Models[0].Meta, "a changed file is not listed as ready to use")

	evs, eerr := th.follow(t, th.startDownload(t, ref))
	require.Nil(t, eerr, "%+v", eerr)
	notes := strings.Join(narrationOf(evs), "\n")
	assert.Contains(t, notes, "download_check: The file of "+ref+" ("+file+") changed since it was catalogued; checking its SHA-256")
	assert.Contains(t, notes, "download_damaged: The file of "+ref+" ("+file+") is damaged: its SHA-256 is now ")
	assert.Contains(t, notes, "the catalog has "+want[:12]+"…; its size is unchanged (")
	assert.Contains(t, notes, "downloading it again")
	assert.Contains(t, notes, "download: Downloading "+file)
	assert.NotEmpty(t, progressOf(evs, api.StageDownloading), "a normal download, with progress")
	assert.Len(t, hub.Transfers(hftest.RepoTiny, file), 2, "fetched again")
	assert.Equal(t, want, fileSHA256(t, local))
	row, err := th.catalog.row(t.Context(), ref)
	require.NoError(t, err)
	assert.Equal(t, want, row.SHA256)
	st, err := os.Stat(local)
	require.NoError(t, err)
	assert.Equal(t, st.ModTime().UnixNano(), row.MTimeNs)

	var sresp hivewire.Spawned
	require.NoError(t, th.client.Do(t.Context(), "POST", "/v1/workers/spawn", api.SpawnRequest{ModelRef: ref}, &sresp))
	w, ok := th.Worker(sresp.WorkerID)
	require.True(t, ok)
	require.NoError(t, w.WaitUntilReady(t.Context()))
}

// TestTouchedHFModelIsCheckedNotDownloaded: a new modification time with
// the same bytes costs a hash, not a download.
func TestTouchedHFModelIsCheckedNotDownloaded(t *testing.T) {
	hub := hftest.New(t)
	th := hubHive(t, hub, nil)
	const file = "tiny.Q4_K_M.gguf"
	ref := "hf:" + hftest.RepoTiny
	_, eerr := th.follow(t, th.startDownload(t, ref))
	require.Nil(t, eerr)
	local := filepath.Join(paths.ModelsDir(th.Config().Home), "hf", hftest.RepoTiny, file)
	touch(t, local)

	evs, eerr := th.follow(t, th.startDownload(t, ref))
	require.Nil(t, eerr)
	notes := strings.Join(narrationOf(evs), "\n")
	assert.Contains(t, notes, "checking its SHA-256")
	assert.Contains(t, notes, "download_complete: Checked "+file+" (1.1 MB): its SHA-256 "+hub.SHA256(hftest.RepoTiny, file)[:12]+"… still matches; nothing to download")
	assert.Len(t, hub.Transfers(hftest.RepoTiny, file), 1, "nothing downloaded again")
	var list api.ModelList
	require.NoError(t, th.client.Do(t.Context(), "GET", "/v1/models", nil, &list))
	require.Len(t, list.Models, 1)
	assert.NotNil(t, list.Models[0].Meta, "checked, it is listed as ready again")
}

// TestSpawnOfDamagedHFModel: a spawn asked directly for a damaged hf:
// model fails with CHECKSUM_MISMATCH; the damaged copy is removed so that
// the next download fetches it again.
func TestSpawnOfDamagedHFModel(t *testing.T) {
	hub := hftest.New(t)
	th := hubHive(t, hub, nil)
	const file = "tiny.Q4_K_M.gguf"
	ref := "hf:" + hftest.RepoTiny
	_, eerr := th.follow(t, th.startDownload(t, ref))
	require.Nil(t, eerr)
	local := filepath.Join(paths.ModelsDir(th.Config().Home), "hf", hftest.RepoTiny, file)
	damageSameSize(t, local)

	status, e := spawnErr(t, th.url, ref)
	assert.Equal(t, http.StatusBadGateway, status)
	assert.Equal(t, api.CodeChecksumMismatch, e.Code)
	assert.Contains(t, e.Message, "model file "+local+" of "+ref+" changed since it was added")
	assert.Contains(t, e.Hint(), "the damaged copy was removed: download it again")
	_, err := os.Stat(local)
	assert.ErrorIs(t, err, os.ErrNotExist)
	_, err = th.catalog.Get(t.Context(), ref)
	assert.ErrorIs(t, err, ErrNotInCatalog)

	_, eerr = th.follow(t, th.startDownload(t, ref))
	require.Nil(t, eerr)
	assert.Len(t, hub.Transfers(hftest.RepoTiny, file), 2)
	assert.Equal(t, hub.SHA256(hftest.RepoTiny, file), fileSHA256(t, local))
}

// TestUnreadableGGUFNamesTheFile: a file that is not a GGUF model, or one
// cut short, is INVALID_REQUEST naming the file and what is wrong where.
func TestUnreadableGGUFNamesTheFile(t *testing.T) {
	th := startHive(t, func(c *Config) { c.FakeMemoryMB = 1 })
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.gguf")
	require.NoError(t, os.WriteFile(text, []byte("these are my notes, not a model\n"), 0o644))
	full, err := os.ReadFile(tinyModel(t, "Q8_0", nil))
	require.NoError(t, err)
	cut := filepath.Join(dir, "cut.gguf")
	require.NoError(t, os.WriteFile(cut, full[:200], 0o644))

	cases := []struct {
		path, reason string
	}{
		{text, "not a GGUF file ("},
		{cut, "truncated at byte "},
	}
	for _, tc := range cases {
		status, e := spawnErr(t, th.url, "file:"+tc.path)
		assert.Equal(t, http.StatusBadRequest, status)
		assert.Equal(t, api.CodeInvalidRequest, e.Code)
		assert.Contains(t, e.Message, "model file "+tc.path+" is not a usable GGUF model: "+tc.reason)
		assert.Equal(t, "model_ref", e.Details["field"])
		assert.Equal(t, tc.path, e.Details["file"])
		assert.Contains(t, e.Details, "offset")
		assert.Contains(t, e.Hint(), "complete GGUF model")
	}
}

// TestCatalogMigratesFromVersion1: a models.db written before the catalog
// kept modification times gains the column and keeps its rows; their
// files are hashed once, at their next use, and the time is recorded.
func TestCatalogMigratesFromVersion1(t *testing.T) {
	home := t.TempDir()
	require.NoError(t, paths.Ensure(home))
	model := tinyModel(t, "Q8_0", nil)
	st, err := os.Stat(model)
	require.NoError(t, err)
	db, err := sql.Open("sqlite", paths.HiveDB(home))
	require.NoError(t, err)
	_, err = db.Exec(migrations[0])
	require.NoError(t, err)
	_, err = db.Exec(`PRAGMA user_version = 1`)
	require.NoError(t, err)
	_, err = db.Exec(`INSERT INTO models VALUES ('m-old', 'file', ?, ?, ?, '', 1700000000)`, "file:"+model, model, st.Size())
	require.NoError(t, err)
	require.NoError(t, db.Close())

	th := startHive(t, func(c *Config) { c.Home = home; c.FakeMemoryMB = 1 })
	var version int
	require.NoError(t, th.catalog.db.QueryRow("PRAGMA user_version").Scan(&version))
	assert.Equal(t, len(migrations), version)
	row, err := th.catalog.row(t.Context(), "file:"+model)
	require.NoError(t, err)
	assert.Equal(t, "m-old", row.ID)
	assert.Zero(t, row.MTimeNs, "unknown until the file is looked at")

	_, e := spawnErr(t, th.url, "file:"+model)
	require.Equal(t, api.CodeInsufficientRAM, e.Code, "%s", e.Message)
	row, err = th.catalog.row(t.Context(), "file:"+model)
	require.NoError(t, err)
	assert.Equal(t, st.ModTime().UnixNano(), row.MTimeNs)
	assert.Equal(t, fileSHA256(t, model), row.SHA256, "an old row without a hash takes the file's")
}

// TestHFRowFromBeforeTheUpgradeIsHashedOnce: a row without a modification
// time (written by an older rbee) is checked once by its SHA-256, not
// downloaded again, and then carries the time.
func TestHFRowFromBeforeTheUpgradeIsHashedOnce(t *testing.T) {
	hub := hftest.New(t)
	th := hubHive(t, hub, nil)
	const file = "tiny.Q4_K_M.gguf"
	ref := "hf:" + hftest.RepoTiny
	_, eerr := th.follow(t, th.startDownload(t, ref))
	require.Nil(t, eerr)
	_, err := th.catalog.db.Exec(`UPDATE models SET mtime_unix_ns = 0`)
	require.NoError(t, err)

	evs, eerr := th.follow(t, th.startDownload(t, ref))
	require.Nil(t, eerr)
	notes := strings.Join(narrationOf(evs), "\n")
	assert.Contains(t, notes, "download_check: The catalog has not checked the file of "+ref+" ("+file+") since an upgrade of rbee; checking its SHA-256 once")
	assert.Contains(t, notes, "still matches; nothing to download")
	assert.Len(t, hub.Transfers(hftest.RepoTiny, file), 1)
	row, err := th.catalog.row(t.Context(), ref)
	require.NoError(t, err)
	st, err := os.Stat(row.LocalPath)
	require.NoError(t, err)
	assert.Equal(t, st.ModTime().UnixNano(), row.MTimeNs)
}
