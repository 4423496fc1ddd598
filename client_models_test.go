package rbee_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee"
	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

func TestModels(t *testing.T) {
	want := rbee.ClusterModels{Nodes: []rbee.NodeModels{{Node: "local", Models: []rbee.ModelEntry{{ID: "m1", Provider: "file",
		Reference: "file:/m.gguf", Meta: &rbee.ModelMeta{Architecture: "llama", Quantization: "Q8_0"}}}}}}
	f, client := newFakeQueen(t, func(w http.ResponseWriter, r *http.Request) { httpx.WriteJSON(w, 200, want) })
	got, err := client.Models(t.Context())
	require.NoError(t, err)
	assert.Equal(t, &want, got)
	assert.Equal(t, "GET /v2/models", f.last().Method+" "+f.last().Path)
}

func TestPull(t *testing.T) {
	f, client := newFakeQueen(t, func(w http.ResponseWriter, r *http.Request) {
		s := sse.NewWriter(w)
		_ = s.Send(api.NarrationEvent(api.ActorHive, "download", "Downloading tiny.gguf"))
		_ = s.Send(rbee.Event{Kind: rbee.KindProgress, Progress: &rbee.Progress{Stage: rbee.StageDownloading, BytesDownloaded: 5, BytesTotal: 10}})
		_ = s.Send(rbee.Event{Kind: rbee.KindProgress, Progress: &rbee.Progress{Stage: rbee.StageComplete, LocalPath: "/m/tiny.gguf"}})
		_ = s.Close()
	})
	evs, errs := collect(t, client.Pull(t.Context(), "gpu-box", "hf:org/repo:Q4_K_M"))
	require.Empty(t, errs)
	require.Len(t, evs, 3)
	assert.Equal(t, rbee.StageComplete, evs[2].Progress.Stage)
	got := f.last()
	assert.Equal(t, "POST /v2/models/download", got.Method+" "+got.Path)
	assert.JSONEq(t, `{"node":"gpu-box","model_ref":"hf:org/repo:Q4_K_M"}`, got.Body)

	// Checked before anything is sent.
	count := func() int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.reqs)
	}
	n := count()
	for _, tc := range []struct{ node, ref string }{{"", "file:/m.gguf"}, {"", "hf:x"}, {"no such node!", "hf:org/repo"}} {
		_, errs := collect(t, client.Pull(t.Context(), tc.node, tc.ref))
		require.Len(t, errs, 1, "%v", tc)
		assert.ErrorIs(t, errs[0], rbee.ErrInvalidRequest)
	}
	assert.Equal(t, n, count())

	// A failed download is the one error.
	_, client = newFakeQueen(t, func(w http.ResponseWriter, r *http.Request) {
		_ = sse.NewWriter(w).Error(api.Errorf(api.CodeDownloadFailed, "the download failed"))
	})
	_, errs = collect(t, client.Pull(t.Context(), "", "hf:org/repo"))
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], rbee.ErrDownloadFailed)
}
