package orchestrator

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

const hfModel = "hf:rbee-test/tiny-GGUF"

// modelHive puts the model endpoints in front of a fakeHive: a catalog and
// a scripted download stream.
type modelHive struct {
	*fakeHive
	front *httptest.Server

	mu        sync.Mutex
	catalog   []api.ModelEntry
	lists     int
	downloads []api.DownloadRequest
	stream    []api.Event // what the progress stream sends, then [DONE] (unless it ends in an error)
	followed  []string    // download ids followed
}

func newModelHive(t *testing.T) *modelHive {
	t.Helper()
	h := &modelHive{fakeHive: newFakeHive(t, "")}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.lists++
		list := api.ModelList{Models: append([]api.ModelEntry{}, h.catalog...)}
		h.mu.Unlock()
		httpx.WriteJSON(w, 200, list)
	})
	mux.HandleFunc("POST /v1/models/download", func(w http.ResponseWriter, r *http.Request) {
		var req api.DownloadRequest
		if e := httpx.DecodeJSON(w, r, &req); e != nil {
			httpx.WriteError(w, r, e)
			return
		}
		h.mu.Lock()
		h.downloads = append(h.downloads, req)
		h.mu.Unlock()
		httpx.WriteJSON(w, 200, api.DownloadResponse{DownloadID: "dl-test1"})
	})
	mux.HandleFunc("GET /v1/models/download/progress", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.followed = append(h.followed, r.URL.Query().Get("id"))
		evs := append([]api.Event{}, h.stream...)
		h.mu.Unlock()
		out := sse.NewWriter(w)
		for _, ev := range evs {
			if ev.Kind == api.KindError {
				_ = out.Error(ev.Error)
				return
			}
			_ = out.Send(ev)
		}
		_ = out.Close()
	})
	mux.Handle("/", h.srv.Config.Handler)
	h.front = httptest.NewServer(mux)
	t.Cleanup(h.front.Close)
	return h
}

func (h *modelHive) port() int { return h.front.Listener.Addr().(*net.TCPAddr).Port }

func progressEvent(p api.Progress) api.Event { return api.Event{Kind: api.KindProgress, Progress: &p} }

// TestS16QueenDownloadsBeforeSpawn: an hf: model missing from the hive's
// catalog is downloaded first, its narration and progress relayed, then
// the worker is spawned.
func TestS16QueenDownloadsBeforeSpawn(t *testing.T) {
	hive := newModelHive(t)
	hive.stream = []api.Event{
		api.NarrationEvent(api.ActorHive, "download", "Downloading tiny.Q4_K_M.gguf (1.1 MB) from Hugging Face repository rbee-test/tiny-GGUF"),
		progressEvent(api.Progress{Stage: api.StageDownloading, BytesDownloaded: 100, BytesTotal: 1000, MegabytesPerSecond: 1.5}),
		progressEvent(api.Progress{Stage: api.StageDownloading, BytesDownloaded: 1000, BytesTotal: 1000, MegabytesPerSecond: 2}),
		progressEvent(api.Progress{Stage: api.StageComplete, LocalPath: "/home/models/hf/rbee-test/tiny-GGUF/tiny.Q4_K_M.gguf"}),
	}
	hive.spawnNext = newFakeWorker(t, "w-new")
	tq := newTestQueen(t, Config{LocalHivePort: hive.port()})
	body := taskBody("local")
	body.Model = hfModel

	res := postTask(t, t.Context(), tq.url, "", body, nil)
	require.Equal(t, http.StatusOK, res.status)
	require.NoError(t, res.streamErr)
	require.Nil(t, res.errorEvent())
	require.NotNil(t, res.done())

	assert.Equal(t, []api.DownloadRequest{{ModelRef: hfModel}}, hive.downloads)
	assert.Equal(t, []string{"dl-test1"}, hive.followed)
	require.Len(t, res.narration("download"), 2, "the queen's and the hive's")
	var order []string
	taskID := res.header.Get(httpx.RequestIDHeader)
	for _, ev := range res.events {
		switch ev.Kind {
		case api.KindNarration:
			order = append(order, ev.Narration.Actor+":"+ev.Narration.Action)
			if ev.Narration.Actor == api.ActorHive {
				assert.Equal(t, taskID, ev.Narration.RequestID, "hive narration carries the task id")
				assert.Equal(t, "local", ev.Narration.Node)
			}
		case api.KindProgress:
			order = append(order, "progress:"+string(ev.Progress.Stage))
		}
	}
	assert.Subset(t, order, []string{"rbee-queen:download", "rbee-hive:download", "progress:downloading", "progress:complete", "rbee-queen:spawn"})
	idx := func(s string) int {
		for i, o := range order {
			if o == s {
				return i
			}
		}
		return -1
	}
	assert.Less(t, idx("rbee-queen:download"), idx("rbee-hive:download"))
	assert.Less(t, idx("progress:complete"), idx("rbee-queen:spawn"), "the spawn comes after the download")
	assert.Contains(t, res.narration("download")[0], "Downloading model from Hugging Face")
	require.Equal(t, 1, hive.spawnCount())
	assert.Equal(t, hfModel, hive.spawnReqs[0].ModelRef)
}

func TestQueenSkipsTheDownload(t *testing.T) {
	t.Run("S15 catalog hit", func(t *testing.T) {
		hive := newModelHive(t)
		hive.catalog = []api.ModelEntry{{ID: "m-1", Provider: "hf", Reference: hfModel, LocalPath: "/m/x.gguf", Meta: &api.ModelMeta{Architecture: "llama"}}}
		hive.spawnNext = newFakeWorker(t, "w-new")
		tq := newTestQueen(t, Config{LocalHivePort: hive.port()})
		body := taskBody("local")
		body.Model = hfModel
		res := postTask(t, t.Context(), tq.url, "", body, nil)
		require.Nil(t, res.errorEvent())
		assert.Equal(t, 1, hive.lists)
		assert.Empty(t, hive.downloads)
		assert.Empty(t, res.narration("download"))
		assert.Equal(t, 1, hive.spawnCount())
	})
	t.Run("a catalog row without its file is downloaded again", func(t *testing.T) {
		hive := newModelHive(t)
		hive.catalog = []api.ModelEntry{{ID: "m-1", Provider: "hf", Reference: hfModel, LocalPath: "/gone.gguf"}}
		hive.stream = []api.Event{progressEvent(api.Progress{Stage: api.StageComplete, LocalPath: "/m/x.gguf"})}
		hive.spawnNext = newFakeWorker(t, "w-new")
		tq := newTestQueen(t, Config{LocalHivePort: hive.port()})
		body := taskBody("local")
		body.Model = hfModel
		res := postTask(t, t.Context(), tq.url, "", body, nil)
		require.Nil(t, res.errorEvent())
		assert.Len(t, hive.downloads, 1)
	})
	t.Run("S08 warm start", func(t *testing.T) {
		hive := newModelHive(t)
		w := newFakeWorker(t, "w-idle")
		hive.addWorker(w.info(hfModel, api.StateIdle))
		tq := newTestQueen(t, Config{LocalHivePort: hive.port()})
		body := taskBody("local")
		body.Model = hfModel
		res := postTask(t, t.Context(), tq.url, "", body, nil)
		require.Nil(t, res.errorEvent())
		assert.Equal(t, 0, hive.lists, "a reused worker needs no catalog check")
		assert.Empty(t, hive.downloads)
	})
	t.Run("file models are not downloaded", func(t *testing.T) {
		hive := newModelHive(t)
		hive.spawnNext = newFakeWorker(t, "w-new")
		tq := newTestQueen(t, Config{LocalHivePort: hive.port()})
		res := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
		require.Nil(t, res.errorEvent())
		assert.Equal(t, 0, hive.lists)
		assert.Empty(t, hive.downloads)
	})
}

// TestS17QueenRelaysTheDownloadFailure: a failed download ends the task
// with the hive's error; nothing is spawned.
func TestS17QueenRelaysTheDownloadFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream []api.Event
		code   api.Code
	}{
		{"DOWNLOAD_FAILED", []api.Event{
			progressEvent(api.Progress{Stage: api.StageDownloading, BytesDownloaded: 100, BytesTotal: 1000}),
			{Kind: api.KindError, Error: api.Errorf(api.CodeDownloadFailed, "downloading x failed after 6 attempts").With("attempts", 6)},
		}, api.CodeDownloadFailed},
		{"stream without completion", []api.Event{
			progressEvent(api.Progress{Stage: api.StageDownloading, BytesDownloaded: 100, BytesTotal: 1000}),
		}, api.CodeDownloadFailed},
		{"MODEL_NOT_FOUND", []api.Event{
			{Kind: api.KindError, Error: api.Errorf(api.CodeModelNotFound, "repository rbee-test/tiny-GGUF has no Q6_K GGUF file")},
		}, api.CodeModelNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hive := newModelHive(t)
			hive.stream = tc.stream
			hive.spawnNext = newFakeWorker(t, "w-new")
			tq := newTestQueen(t, Config{LocalHivePort: hive.port()})
			body := taskBody("local")
			body.Model = hfModel
			res := postTask(t, t.Context(), tq.url, "", body, nil)
			require.NoError(t, res.streamErr)
			e := res.errorEvent()
			require.NotNil(t, e)
			assert.Equal(t, tc.code, e.Code)
			assert.Equal(t, res.header.Get(httpx.RequestIDHeader), e.RequestID)
			assert.Equal(t, 0, hive.spawnCount(), "no spawn after a failed download")
		})
	}
}
