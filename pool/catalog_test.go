package pool

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
)

func TestCatalogRegisterGetList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "models.db")
	c, err := OpenCatalog(t.Context(), path)
	require.NoError(t, err)
	defer c.Close()

	_, err = c.Get(t.Context(), "file:/m/a.gguf")
	assert.ErrorIs(t, err, ErrNotInCatalog)
	list, err := c.List(t.Context())
	require.NoError(t, err)
	assert.NotNil(t, list)
	assert.Empty(t, list)

	in := api.ModelEntry{Provider: "file", Reference: "file:/m/a.gguf", LocalPath: "/m/a.gguf", SizeBytes: 1234, DownloadedAtUnix: 1700000000}
	got, err := c.Register(t.Context(), in)
	require.NoError(t, err)
	assert.Regexp(t, `^m-[0-9a-f]{16}$`, got.ID)
	in.ID = got.ID
	assert.Equal(t, in, got)

	// A second registration of the reference keeps the first row.
	again, err := c.Register(t.Context(), api.ModelEntry{Provider: "file", Reference: "file:/m/a.gguf", LocalPath: "/elsewhere.gguf", SizeBytes: 1})
	require.NoError(t, err)
	assert.Equal(t, got, again)

	_, err = c.Register(t.Context(), api.ModelEntry{ID: "m-2", Provider: "hf", Reference: "hf:org/repo:Q8_0", LocalPath: "/m/b.gguf", SizeBytes: 99, SHA256: "ab", DownloadedAtUnix: 5})
	require.NoError(t, err)
	list, err = c.List(t.Context())
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, "file:/m/a.gguf", list[0].Reference)
	assert.Equal(t, api.ModelEntry{ID: "m-2", Provider: "hf", Reference: "hf:org/repo:Q8_0", LocalPath: "/m/b.gguf", SizeBytes: 99, SHA256: "ab", DownloadedAtUnix: 5}, list[1])

	ok, err := c.Remove(t.Context(), "hf:org/repo:Q8_0")
	require.NoError(t, err)
	assert.True(t, ok)
	ok, err = c.Remove(t.Context(), "hf:org/repo:Q8_0")
	require.NoError(t, err)
	assert.False(t, ok)

	_, err = c.Register(t.Context(), api.ModelEntry{Reference: "file:/x"})
	assert.Error(t, err, "a row needs provider and path")

	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}

func TestCatalogPersistsAndMigratesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "models.db")
	c, err := OpenCatalog(t.Context(), path)
	require.NoError(t, err)
	_, err = c.Register(t.Context(), api.ModelEntry{Provider: "file", Reference: "file:/a.gguf", LocalPath: "/a.gguf", SizeBytes: 7})
	require.NoError(t, err)
	require.NoError(t, c.Close())

	for range 2 { // reopening runs no migration twice and keeps the rows
		c, err = OpenCatalog(t.Context(), path)
		require.NoError(t, err)
		list, err := c.List(t.Context())
		require.NoError(t, err)
		require.Len(t, list, 1)
		assert.Equal(t, int64(7), list[0].SizeBytes)
		var mode string
		require.NoError(t, c.db.QueryRow("PRAGMA journal_mode").Scan(&mode))
		assert.Equal(t, "wal", mode)
		require.NoError(t, c.Close())
	}
}

func TestCatalogConcurrentRegisterMakesOneRow(t *testing.T) {
	c, err := OpenCatalog(t.Context(), filepath.Join(t.TempDir(), "models.db"))
	require.NoError(t, err)
	defer c.Close()
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := c.Register(t.Context(), api.ModelEntry{Provider: "file", Reference: "file:/same.gguf", LocalPath: "/same.gguf", SizeBytes: 1})
			assert.NoError(t, err)
			ids[i] = e.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		assert.Equal(t, ids[0], id, "every caller sees the one row")
	}
	list, err := c.List(t.Context())
	require.NoError(t, err)
	assert.Len(t, list, 1)
}

func TestCatalogCorrupt(t *testing.T) {
	cases := []struct {
		name    string
		content []byte
	}{
		{"text", []byte("this is not a database, just some text that fills the header and more\n")},
		{"sqlite header then garbage", append([]byte("SQLite format 3\x00"), make([]byte, 4096)...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "models.db")
			require.NoError(t, os.WriteFile(path, tc.content, 0o600))
			_, err := OpenCatalog(t.Context(), path)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrCatalogCorrupt)
			assert.Contains(t, err.Error(), path)
			assert.Contains(t, err.Error(), "move the file aside")
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, tc.content, after, "a corrupt catalog is never recreated")
		})
	}
}

func TestCatalogNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "models.db")
	c, err := OpenCatalog(t.Context(), path)
	require.NoError(t, err)
	_, err = c.db.Exec("PRAGMA user_version = 99")
	require.NoError(t, err)
	require.NoError(t, c.Close())
	_, err = OpenCatalog(t.Context(), path)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "upgrade rbee")
}
