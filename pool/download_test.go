package pool

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/hf"
	"rbee/internal/hftest"
	"rbee/internal/hivewire"
	"rbee/internal/paths"
	"rbee/internal/sse"
)

// hubHive runs a hive (fake workers) that downloads from the fake hub.
func hubHive(t *testing.T, hub *hftest.Hub, mutate func(*Config)) *testHive {
	t.Helper()
	return startHive(t, func(c *Config) {
		c.HFEndpoint = hub.URL
		c.DownloadRetryDelay = time.Millisecond
		c.DownloadStallTimeout = 5 * time.Second
		if mutate != nil {
			mutate(c)
		}
	})
}

// startDownload posts a download and returns its id.
func (th *testHive) startDownload(t *testing.T, ref string) string {
	t.Helper()
	var out api.DownloadResponse
	require.NoError(t, th.client.Do(t.Context(), "POST", "/v1/models/download", api.DownloadRequest{ModelRef: ref}, &out))
	require.True(t, strings.HasPrefix(out.DownloadID, "dl-"), "download id %q", out.DownloadID)
	return out.DownloadID
}

// follow reads a download's progress stream to its end: its events, and
// the error event's error (nil when it completed).
func (th *testHive) follow(t *testing.T, id string) ([]api.Event, *api.Error) {
	t.Helper()
	resp, err := th.client.Stream(t.Context(), "GET", "/v1/models/download/progress?id="+id, nil, nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	var evs []api.Event
	for ev, err := range sse.Read(resp.Body) {
		require.NoError(t, err, "the stream ends with [DONE]")
		evs = append(evs, ev)
		if ev.Kind == api.KindError {
			return evs, ev.Error
		}
	}
	return evs, nil
}

// progressOf returns the download progress events.
func progressOf(evs []api.Event, stage api.Stage) []api.Progress {
	var out []api.Progress
	for _, ev := range evs {
		if ev.Kind == api.KindProgress && ev.Progress.Stage == stage {
			out = append(out, *ev.Progress)
		}
	}
	return out
}

func narrationOf(evs []api.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Kind == api.KindNarration {
			out = append(out, ev.Narration.Actor+" "+ev.Narration.Action+": "+ev.Narration.Human)
		}
	}
	return out
}

func rangesOf(reqs []hftest.Request) []string {
	out := []string{}
	for _, r := range reqs {
		out = append(out, r.Range)
	}
	return out
}

// TestS16DownloadThenSpawn is S16 and S18 on the hive: a model missing
// from the catalog is downloaded with SSE progress, lands in the catalog
// with every column, and a real worker then loads it from its local path.
func TestS16DownloadThenSpawn(t *testing.T) {
	hub := hftest.New(t)
	const file = "tiny.Q4_K_M.gguf"
	size := int64(len(hub.File(hftest.RepoTiny, file)))
	// About a second on the wire, so that progress is reported on the way.
	hub.SetFault(hftest.RepoTiny, file, hftest.Fault{BytesPerSecond: size})
	th := realHive(t, func(c *Config) { c.HFEndpoint = hub.URL })
	ref := "hf:" + hftest.RepoTiny

	_, err := th.spawn(t, "/nowhere") // (a file: spawn, to show the hf one below is different)
	require.Error(t, err)
	var sresp hivewire.Spawned
	err = th.client.Do(t.Context(), "POST", "/v1/workers/spawn", api.SpawnRequest{ModelRef: ref}, &sresp)
	e := apiErr(t, err)
	assert.Equal(t, api.CodeModelNotFound, e.Code, "no download on spawn")
	assert.Contains(t, e.Hint(), "/v1/models/download")

	start := time.Now()
	id := th.startDownload(t, ref)
	evs, eerr := th.follow(t, id)
	require.Nil(t, eerr)
	want := filepath.Join(paths.ModelsDir(th.Config().Home), "hf", hftest.RepoTiny, file)

	t.Run("S16", func(t *testing.T) {
		prog := progressOf(evs, api.StageDownloading)
		require.GreaterOrEqual(t, len(prog), 3, "progress along the way: %+v", prog)
		for i, p := range prog {
			assert.Equal(t, size, p.BytesTotal)
			if i > 0 {
				assert.GreaterOrEqual(t, p.BytesDownloaded, prog[i-1].BytesDownloaded)
			}
		}
		assert.Less(t, prog[0].BytesDownloaded, size, "the first report comes before the end")
		last := prog[len(prog)-1]
		assert.Equal(t, size, last.BytesDownloaded, "the last report is 100 %")
		assert.Greater(t, last.MegabytesPerSecond, 0.0, "with a speed")
		complete := progressOf(evs, api.StageComplete)
		require.Len(t, complete, 1)
		assert.Equal(t, want, complete[0].LocalPath)
		assert.Equal(t, api.KindProgress, evs[len(evs)-1].Kind, "complete is the last event")
		assert.Contains(t, narrationOf(evs)[0], "rbee-hive download: Downloading tiny.Q4_K_M.gguf (1.1 MB) from Hugging Face repository "+hftest.RepoTiny)
		assert.Equal(t, []string{""}, rangesOf(hub.Transfers(hftest.RepoTiny, file)), "one transfer")
	})

	t.Run("S18", func(t *testing.T) {
		var list api.ModelList
		require.NoError(t, th.client.Do(t.Context(), "GET", "/v1/models", nil, &list))
		require.Len(t, list.Models, 1)
		m := list.Models[0]
		assert.True(t, strings.HasPrefix(m.ID, "m-"), "id %q", m.ID)
		assert.Equal(t, "hf", m.Provider)
		assert.Equal(t, ref, m.Reference)
		assert.Equal(t, want, m.LocalPath)
		assert.Equal(t, size, m.SizeBytes)
		assert.Equal(t, hub.SHA256(hftest.RepoTiny, file), m.SHA256)
		assert.GreaterOrEqual(t, m.DownloadedAtUnix, start.Unix())
		assert.LessOrEqual(t, m.DownloadedAtUnix, time.Now().Unix())
		require.NotNil(t, m.Meta, "the file is a readable GGUF")
		assert.Equal(t, "Q4_K_M", m.Meta.Quantization)
		got, err := os.ReadFile(m.LocalPath)
		require.NoError(t, err)
		assert.Equal(t, hub.File(hftest.RepoTiny, file), got)
		parts, _ := filepath.Glob(filepath.Join(filepath.Dir(want), "*.part"))
		assert.Empty(t, parts, "no temporary file left")
	})

	t.Run("S15 the downloaded model spawns from its local path", func(t *testing.T) {
		err := th.client.Do(t.Context(), "POST", "/v1/workers/spawn", api.SpawnRequest{ModelRef: ref}, &sresp)
		require.NoError(t, err)
		w, ok := th.Worker(sresp.WorkerID)
		require.True(t, ok)
		assert.Equal(t, want, argAfter(cmdline(t, w.Pid()), "--model"))
		require.NoError(t, w.WaitUntilReady(t.Context()))
	})

	t.Run("a second request finds it in the catalog", func(t *testing.T) {
		n := len(hub.Transfers(hftest.RepoTiny, file))
		evs, eerr := th.follow(t, th.startDownload(t, ref))
		require.Nil(t, eerr)
		var prog []api.Progress
		for _, ev := range evs {
			require.Equal(t, api.KindProgress, ev.Kind)
			prog = append(prog, *ev.Progress)
		}
		assert.Equal(t, []api.Progress{{Stage: api.StageDownloading, BytesDownloaded: size, BytesTotal: size}, {Stage: api.StageComplete, LocalPath: want}}, prog, "complete at once")
		assert.Len(t, hub.Transfers(hftest.RepoTiny, file), n, "nothing downloaded again")
	})
}

// TestS17DownloadInterrupted: cut connections resume from the last byte;
// when every attempt fails, DOWNLOAD_FAILED after 6, the partial file kept.
func TestS17DownloadInterrupted(t *testing.T) {
	hub := hftest.New(t)
	th := hubHive(t, hub, nil)
	const file = "tiny.Q8_0.gguf"
	size := int64(len(hub.File(hftest.RepoTiny, file)))

	t.Run("resumed", func(t *testing.T) {
		hub.SetFault(hftest.RepoTiny, file, hftest.Fault{CutAfter: 500_000, CutTimes: 2})
		evs, eerr := th.follow(t, th.startDownload(t, "hf:"+hftest.RepoTiny+":Q8_0"))
		require.Nil(t, eerr, "%+v", eerr)
		assert.Equal(t, []string{"", "bytes=500000-", "bytes=1000000-"}, rangesOf(hub.Transfers(hftest.RepoTiny, file)))
		notes := narrationOf(evs)
		require.Len(t, notes, 4, "start, two retries, complete: %q", notes)
		assert.Contains(t, notes[1], "download_retry: Download of tiny.Q8_0.gguf interrupted (attempt 1/6")
		assert.Contains(t, notes[1], "resuming at byte 500000")
		assert.Contains(t, notes[2], "(attempt 2/6")
		assert.Contains(t, notes[3], "download_complete")
		row, err := th.Catalog().Get(t.Context(), "hf:"+hftest.RepoTiny+":Q8_0")
		require.NoError(t, err)
		assert.Equal(t, size, row.SizeBytes)
		assert.Equal(t, hub.SHA256(hftest.RepoTiny, file), row.SHA256)
	})

	t.Run("out of attempts", func(t *testing.T) {
		const q4 = "tiny-q4_0.gguf"
		hub.SetFault(hftest.RepoTiny, q4, hftest.Fault{CutAfter: 100_000})
		_, eerr := th.follow(t, th.startDownload(t, "hf:"+hftest.RepoTiny+":Q4_0"))
		require.NotNil(t, eerr)
		assert.Equal(t, api.CodeDownloadFailed, eerr.Code)
		assert.EqualValues(t, 6, eerr.Details["attempts"])
		assert.EqualValues(t, 600_000, eerr.Details["bytes_downloaded"])
		assert.Equal(t, "hf:"+hftest.RepoTiny+":Q4_0", eerr.Details["model_ref"])
		assert.Len(t, hub.Transfers(hftest.RepoTiny, q4), 6)
		_, err := th.Catalog().Get(t.Context(), "hf:"+hftest.RepoTiny+":Q4_0")
		assert.ErrorIs(t, err, ErrNotInCatalog)
		parts, _ := filepath.Glob(filepath.Join(paths.ModelsDir(th.Config().Home), "hf", hftest.RepoTiny, q4+".*.part"))
		assert.Len(t, parts, 1, "the partial file stays for a resume")

		// Once the hub behaves, the next request resumes at byte 600000.
		hub.SetFault(hftest.RepoTiny, q4, hftest.Fault{})
		_, eerr = th.follow(t, th.startDownload(t, "hf:"+hftest.RepoTiny+":Q4_0"))
		require.Nil(t, eerr)
		tr := hub.Transfers(hftest.RepoTiny, q4)
		assert.Equal(t, "bytes=600000-", tr[len(tr)-1].Range)
	})
}

func TestDownloadShared(t *testing.T) {
	hub := hftest.New(t)
	const file = "tiny.Q4_K_M.gguf"
	size := int64(len(hub.File(hftest.RepoTiny, file)))
	hub.SetFault(hftest.RepoTiny, file, hftest.Fault{BytesPerSecond: 4 * size}) // a quarter second
	th := hubHive(t, hub, nil)

	// Concurrent requests for one model share one download.
	const n = 6
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i] = th.startDownload(t, "hf:"+hftest.RepoTiny)
		}()
	}
	wg.Wait()
	for _, id := range ids {
		assert.Equal(t, ids[0], id, "one download id")
	}
	// Another reference to the same file waits for it and reuses the file.
	other := th.startDownload(t, "hf:"+hftest.RepoTiny+":Q4_K_M")
	assert.NotEqual(t, ids[0], other)
	var evs [2][]api.Event
	var errs [2]*api.Error
	wg.Add(2)
	for i, id := range []string{ids[0], other} {
		go func() {
			defer wg.Done()
			evs[i], errs[i] = th.follow(t, id)
		}()
	}
	wg.Wait()
	require.Nil(t, errs[0])
	require.Nil(t, errs[1])
	assert.Len(t, hub.Transfers(hftest.RepoTiny, file), 1, "one transfer for all of them")
	ms, err := th.Catalog().List(t.Context())
	require.NoError(t, err)
	require.Len(t, ms, 2, "a row per reference")
	assert.Equal(t, ms[0].LocalPath, ms[1].LocalPath, "one file")
	assert.Equal(t, ms[0].SHA256, ms[1].SHA256)
}

func TestDownloadErrors(t *testing.T) {
	hub := hftest.New(t)
	tests := []struct {
		name   string
		ref    string
		fault  *hftest.Fault
		mutate func(*Config)
		code   api.Code
		msg    string
	}{
		{"missing repo", "hf:rbee-test/absent", nil, nil, api.CodeModelNotFound, "no repository rbee-test/absent"},
		{"missing quant", "hf:" + hftest.RepoTiny + ":Q6_K", nil, nil, api.CodeModelNotFound, "it has Q4_0, Q4_K_M, Q8_0"},
		{"private without token", "hf:" + hftest.RepoPrivate, nil, nil, api.CodeModelNotFound, "401"},
		{"checksum mismatch", "hf:" + hftest.RepoNoQ4KM + ":Q8_0", &hftest.Fault{WrongSHA: true}, nil, api.CodeChecksumMismatch, "does not match"},
		{"insufficient disk", "hf:" + hftest.RepoNoQ4KM + ":Q4_0", nil,
			func(c *Config) { c.DiskFree = func(string) (int64, error) { return 1 << 20, nil } }, api.CodeInsufficientDisk, "need 2 MB"},
		{"stall", "hf:" + hftest.RepoNoQ4KM + ":Q4_0", &hftest.Fault{Stall: true, StallAfter: 1000},
			func(c *Config) { c.DownloadStallTimeout = 50 * time.Millisecond }, api.CodeDownloadTimeout, "stalled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			th := hubHive(t, hub, tc.mutate)
			ref, _ := api.ParseModelRef(tc.ref)
			if tc.fault != nil {
				f, err := (&hf.Client{Endpoint: hub.URL}).Resolve(t.Context(), ref)
				require.NoError(t, err)
				hub.SetFault(ref.Repo, f.Name, *tc.fault)
				t.Cleanup(func() { hub.SetFault(ref.Repo, f.Name, hftest.Fault{}) })
			}
			_, eerr := th.follow(t, th.startDownload(t, tc.ref))
			require.NotNil(t, eerr)
			assert.Equal(t, tc.code, eerr.Code)
			assert.Contains(t, eerr.Message, tc.msg)
			assert.Equal(t, tc.ref, eerr.Details["model_ref"])
			ms, err := th.Catalog().List(t.Context())
			require.NoError(t, err)
			assert.Empty(t, ms, "nothing registered")
		})
	}
	t.Run("private with HF_TOKEN", func(t *testing.T) {
		t.Setenv(hf.EnvToken, hftest.Token)
		th := hubHive(t, hub, nil)
		_, eerr := th.follow(t, th.startDownload(t, "hf:"+hftest.RepoPrivate))
		require.Nil(t, eerr)
		assert.NotContains(t, th.logs.String(), hftest.Token, "the token is never logged")
	})
}

func TestDownloadRequestValidation(t *testing.T) {
	hub := hftest.New(t)
	th := hubHive(t, hub, nil)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		field                    string
	}{
		{"file ref", "POST", "/v1/models/download", `{"model_ref":"file:/models/x.gguf"}`, 400, "model_ref"},
		{"missing ref", "POST", "/v1/models/download", `{}`, 400, "model_ref"},
		{"bad ref", "POST", "/v1/models/download", `{"model_ref":"hf:../../etc"}`, 400, "model_ref"},
		{"unknown field", "POST", "/v1/models/download", `{"model_ref":"hf:a/b","x":1}`, 400, "x"},
		{"not JSON", "POST", "/v1/models/download", `hf:a/b`, 400, ""},
		{"no id", "GET", "/v1/models/download/progress", "", 400, "id"},
		{"bad id", "GET", "/v1/models/download/progress?id=../x", "", 400, "id"},
		{"unknown id", "GET", "/v1/models/download/progress?id=dl-nothing", "", 400, "id"},
		{"wrong method", "GET", "/v1/models/download", "", 405, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, e, _ := raw(t, tc.method, th.url+tc.path, testToken, tc.body)
			require.NotNil(t, e)
			assert.Equal(t, tc.status, status)
			want := api.CodeInvalidRequest
			if tc.status == 405 {
				want = api.CodeMethodNotAllowed
			}
			assert.Equal(t, want, e.Code)
			if tc.field != "" {
				assert.Equal(t, tc.field, e.Details["field"])
			}
		})
	}
	t.Run("needs the token", func(t *testing.T) {
		status, e, _ := raw(t, "POST", th.url+"/v1/models/download", "", `{"model_ref":"hf:a/b"}`)
		require.NotNil(t, e)
		assert.Equal(t, 401, status)
	})
	assert.Empty(t, hub.Requests(), "nothing reached the hub")
}

// TestDownloadCancelledOnShutdown: stopping the hive ends its downloads
// (an error event SHUTTING_DOWN) and keeps the partial file.
func TestDownloadCancelledOnShutdown(t *testing.T) {
	hub := hftest.New(t)
	const file = "tiny.Q4_K_M.gguf"
	hub.SetFault(hftest.RepoTiny, file, hftest.Fault{Stall: true, StallAfter: 300_000})
	th := hubHive(t, hub, nil)
	id := th.startDownload(t, "hf:"+hftest.RepoTiny)
	d, ok := th.FindDownload(id)
	require.True(t, ok)
	require.Eventually(t, func() bool { return d.Status().BytesDownloaded == 300_000 }, 10*time.Second, 5*time.Millisecond)

	resp, err := th.client.Stream(t.Context(), "GET", "/v1/models/download/progress?id="+id, nil, nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	start := time.Now()
	require.NoError(t, th.stop(t))
	assert.Less(t, time.Since(start), 5*time.Second, "the stalled download does not hold up the shutdown")
	var last api.Event
	for ev, err := range sse.Read(resp.Body) {
		require.NoError(t, err)
		last = ev
	}
	require.Equal(t, api.KindError, last.Kind)
	assert.Equal(t, api.CodeShuttingDown, last.Error.Code)
	parts, _ := filepath.Glob(filepath.Join(paths.ModelsDir(th.Config().Home), "hf", hftest.RepoTiny, file+".*.part"))
	require.Len(t, parts, 1)
	st, err := os.Stat(parts[0])
	require.NoError(t, err)
	assert.Equal(t, int64(300_000), st.Size(), "kept for a resume")
}
