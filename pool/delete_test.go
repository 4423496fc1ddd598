package pool

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/hftest"
	"rbee/internal/paths"
)

// TestDeleteModel downloads two references that share one file and
// registers a file: model, then deletes them over the API: the file of a
// downloaded model goes with its last reference, a file: model's file
// stays, and an unknown reference is MODEL_NOT_FOUND.
func TestDeleteModel(t *testing.T) {
	hub := hftest.New(t)
	th := hubHive(t, hub, nil)
	ctx := t.Context()
	for _, ref := range []string{"hf:" + hftest.RepoTiny, "hf:" + hftest.RepoTiny + ":Q4_K_M"} {
		_, eerr := th.follow(t, th.startDownload(t, ref))
		require.Nil(t, eerr)
	}
	file := filepath.Join(paths.ModelsDir(th.Config().Home), "hf", hftest.RepoTiny, "tiny.Q4_K_M.gguf")
	require.FileExists(t, file)
	own := filepath.Join(t.TempDir(), "own.gguf")
	require.NoError(t, os.WriteFile(own, hub.File(hftest.RepoTiny, "tiny.Q8_0.gguf"), 0o600))
	_, err := th.catalog.Register(ctx, api.ModelEntry{Provider: "file", Reference: "file:" + own, LocalPath: own, SizeBytes: 1})
	require.NoError(t, err)

	del := func(ref string) (api.ModelDeleteResponse, error) {
		var out api.ModelDeleteResponse
		err := th.client.Do(ctx, "POST", "/v1/models/delete", api.ModelDeleteRequest{ModelRef: ref}, &out)
		return out, err
	}
	res, err := del("hf:" + hftest.RepoTiny)
	require.NoError(t, err)
	assert.Equal(t, api.ModelDeleteResponse{ModelRef: "hf:" + hftest.RepoTiny, Removed: true}, res)
	assert.FileExists(t, file, "the other reference still uses the file")

	res, err = del("hf:" + hftest.RepoTiny + ":Q4_K_M")
	require.NoError(t, err)
	assert.True(t, res.Removed)
	assert.True(t, res.FileRemoved)
	assert.NoFileExists(t, file)

	res, err = del("file:" + own)
	require.NoError(t, err)
	assert.True(t, res.Removed)
	assert.False(t, res.FileRemoved)
	assert.FileExists(t, own, "a file: model's file is the user's")

	list, err := th.Models(ctx)
	require.NoError(t, err)
	assert.Empty(t, list)

	_, err = del("hf:" + hftest.RepoTiny)
	assert.Equal(t, api.CodeModelNotFound, apiErr(t, err).Code)
	_, err = del("../etc")
	assert.Equal(t, api.CodeInvalidRequest, apiErr(t, err).Code)
}
