package pool

import (
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/hf"
	"rbee/internal/hftest"
	"rbee/internal/testutil"
)

// TestFullDiskDownload fills a small tmpfs (root only) during a download:
// the download ends with INSUFFICIENT_DISK and the numbers it knows, not
// INTERNAL. The free-space check before the download is told there is
// room, as when another program fills the disk after it.
func TestFullDiskDownload(t *testing.T) {
	disk := testutil.SmallDisk(t, 512<<10)
	hub := hftest.New(t)
	const file = "tiny.Q4_K_M.gguf"
	size := int64(len(hub.File(hftest.RepoTiny, file)))
	var checks atomic.Int32
	th := hubHive(t, hub, func(c *Config) {
		c.Home = disk
		c.DiskFree = func(dir string) (int64, error) {
			if checks.Add(1) == 1 {
				return 1 << 40, nil
			}
			return hf.DiskFree(dir)
		}
	})
	_, e := th.follow(t, th.startDownload(t, "hf:"+hftest.RepoTiny))
	require.NotNil(t, e)
	assert.Equal(t, api.CodeInsufficientDisk, e.Code, "%s", e.Message)
	assert.Contains(t, e.Message, "Insufficient disk space for "+file+": the disk is full in ")
	assert.EqualValues(t, size, e.Details["bytes_total"])
	got, ok := e.Details["bytes_downloaded"].(float64)
	require.True(t, ok, "%v", e.Details)
	assert.Positive(t, got)
	assert.Less(t, int64(got), size)
	assert.Contains(t, e.Details, "available_bytes")
	assert.Contains(t, e.Details, "required")
	assert.Contains(t, e.Hint(), "free space on the node")
}

// TestFullDiskCatalogWrite: the hive's home (its catalog) is on a full
// disk: registering a model is INSUFFICIENT_DISK, not INTERNAL.
func TestFullDiskCatalogWrite(t *testing.T) {
	disk := testutil.SmallDisk(t, 256<<10)
	th := startHive(t, func(c *Config) { c.Home = disk; c.FakeMemoryMB = 1 })
	filler, err := os.Create(filepath.Join(disk, "filler"))
	require.NoError(t, err)
	chunk := make([]byte, 4096)
	for {
		if _, err := filler.Write(chunk); err != nil {
			break
		}
	}
	require.NoError(t, filler.Close())
	model := tinyModel(t, "Q8_0", nil) // on another disk
	status, e := spawnErr(t, th.url, "file:"+model)
	assert.Equal(t, http.StatusInsufficientStorage, status)
	assert.Equal(t, api.CodeInsufficientDisk, e.Code, "%s", e.Message)
	assert.Contains(t, e.Message, "the model catalog could not be updated: the disk is full")
}
