package orchestrator

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/sse"
	"rbee/internal/testutil"
	"rbee/orchestrator/ui"
)

// get answers a GET with headers.
func get(t *testing.T, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

// The page is served at / and /ui/ without a token, compressed on request,
// with an ETag and a policy that allows nothing but the queen's origin.
func TestConsolePageServed(t *testing.T) {
	tq := newTestQueen(t, Config{Token: "console-token-0123456789"})
	resp, page := get(t, tq.url+"/", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Contains(t, string(page), `<script src="/ui/app.js" defer></script>`)
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		assert.Contains(t, csp, want)
	}
	assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	assert.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))

	resp2, page2 := get(t, tq.url+"/ui/", nil)
	assert.Equal(t, http.StatusOK, resp2.StatusCode)
	assert.Equal(t, page, page2)

	// gzip when asked, the same bytes once inflated.
	resp, js := get(t, tq.url+"/ui/app.js", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/javascript; charset=utf-8", resp.Header.Get("Content-Type"))
	resp, gz := get(t, tq.url+"/ui/app.js", map[string]string{"Accept-Encoding": "gzip"})
	require.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))
	assert.Less(t, len(gz), len(js))
	zr, err := gzip.NewReader(strings.NewReader(string(gz)))
	require.NoError(t, err)
	inflated, err := io.ReadAll(zr)
	require.NoError(t, err)
	assert.Equal(t, js, inflated)

	// A reload with the ETag transfers nothing.
	etag := resp.Header.Get("ETag")
	require.NotEmpty(t, etag)
	resp, body := get(t, tq.url+"/ui/app.js", map[string]string{"If-None-Match": etag})
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
	assert.Empty(t, body)

	resp, _ = get(t, tq.url+"/ui/missing.js", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	status, _ := call(t, http.MethodPost, tq.url+"/", "", map[string]string{}, nil)
	assert.Equal(t, http.StatusMethodNotAllowed, status)

	// The API still needs the token.
	for _, path := range []string{"/v2/events", "/v2/models", "/v2/workers/list"} {
		resp, _ = get(t, tq.url+path, nil)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, path)
	}
}

// The page works offline: it loads nothing from elsewhere (no CDN, no
// absolute URL), and its three files are all there is.
func TestConsolePageSelfContained(t *testing.T) {
	static := ui.Files()
	var names []string
	require.NoError(t, fs.WalkDir(static, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		names = append(names, p)
		b, err := fs.ReadFile(static, p)
		require.NoError(t, err)
		assert.NotRegexp(t, `(?i)(src|href)=["']?(https?:)?//`, string(b), "%s loads something from elsewhere", p)
		assert.NotContains(t, string(b), "http://", p)
		assert.NotContains(t, string(b), "https://", p)
		assert.NotContains(t, string(b), "innerHTML", "%s builds the page with DOM calls, never from markup strings", p)
		return nil
	}))
	assert.ElementsMatch(t, []string{"app.css", "app.js", "index.html"}, names)
}

// [ui] enabled = false leaves / and /ui/ to the API, which has nothing there.
func TestConsoleDisabled(t *testing.T) {
	tq := newTestQueen(t, Config{DisableUI: true})
	for _, path := range []string{"/", "/ui/", "/ui/app.js"} {
		var out api.Envelope
		status, e := call(t, http.MethodGet, tq.url+path, "", nil, &out)
		assert.Equal(t, http.StatusNotFound, status, path)
		require.NotNil(t, e, path)
		assert.Equal(t, api.CodeNotFound, e.Code, path)
	}
	status, _ := call(t, http.MethodGet, tq.url+"/health", "", nil, nil)
	assert.Equal(t, http.StatusOK, status)
}

// snapshotReader reads the events of GET /v2/events.
type snapshotReader struct {
	resp *http.Response
	sc   *bufio.Scanner
}

func openEvents(t *testing.T, ctx context.Context, url, token string) *snapshotReader {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v2/events", nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	return &snapshotReader{resp: resp, sc: bufio.NewScanner(resp.Body)}
}

// next returns the next snapshot, or ok false when the stream ended.
func (r *snapshotReader) next(t *testing.T) (api.Snapshot, bool) {
	t.Helper()
	name := ""
	for r.sc.Scan() {
		line := r.sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			require.Equal(t, string(api.KindSnapshot), name)
			var s api.Snapshot
			require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &s))
			return s, true
		}
	}
	return api.Snapshot{}, false
}

// TestConsoleEvents: the stream opens with the cluster as it is, sends a
// new snapshot when it changes (and only then), shows a task with its
// worker, tokens and first-token time, counts the tokens, and ends when
// the queen shuts down.
func TestConsoleEvents(t *testing.T) {
	hive := newModelHive(t)
	fw := newFakeWorker(t, "w-1")
	fw.gate = make(chan struct{})
	fw.tokenDelay = 20 * time.Millisecond
	hive.addWorker(fw.info("file:/models/a.gguf", api.StateIdle))
	tq := newTestQueen(t, Config{LocalHivePort: hive.port(), eventsEvery: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ev := openEvents(t, ctx, tq.url, "")

	s, ok := ev.next(t)
	require.True(t, ok)
	assert.Equal(t, api.Version, s.Version)
	assert.False(t, s.Time.IsZero())
	require.Len(t, s.Nodes, 1)
	assert.Equal(t, api.NodeSnapshot{Name: "local", Local: true, Reachable: true, Running: true}, s.Nodes[0], "a hive without /v1/info shows without it")
	require.Len(t, s.Workers, 1)
	assert.Equal(t, "w-1", s.Workers[0].ID)
	assert.Equal(t, "local", s.Workers[0].Node)
	assert.Equal(t, []api.TaskSnapshot{}, s.Tasks)
	assert.Equal(t, []api.DownloadSnapshot{}, s.Downloads)
	assert.Equal(t, DefaultMaxQueue, s.MaxQueue)

	// Nothing changes for a while: nothing is sent; then a worker appears.
	time.Sleep(200 * time.Millisecond) // ten looks at the cluster
	hive.addWorker(newFakeWorker(t, "w-2").info("file:/models/b.gguf", api.StateIdle))
	s, ok = ev.next(t)
	require.True(t, ok)
	require.Len(t, s.Workers, 2, "the snapshot after the first is the one with the change")

	// Two tasks on a one-slot worker: one runs (before its first token),
	// the other waits its turn; then both generate.
	done := make(chan *taskResult, 2)
	for range 2 {
		go func() {
			body := taskBody("local")
			body.Model = "file:/models/a.gguf"
			done <- postTaskNoT(tq.url, body)
		}()
	}
	var running, queued api.TaskSnapshot
	for running.ID == "" || queued.ID == "" {
		s, ok = ev.next(t)
		require.True(t, ok)
		running, queued = api.TaskSnapshot{}, api.TaskSnapshot{}
		for _, task := range s.Tasks {
			switch task.State {
			case api.TaskRunning:
				running = task
			case api.TaskQueued:
				queued = task
			}
		}
	}
	assert.Equal(t, "local", running.Node)
	assert.Equal(t, "file:/models/a.gguf", running.Model)
	assert.Equal(t, "w-1", running.WorkerID)
	assert.Zero(t, running.Tokens)
	assert.Zero(t, running.FirstTokenMs)
	assert.Equal(t, 1, queued.Position)
	assert.Equal(t, 1, s.QueueDepth)
	close(fw.gate)
	var sawSpeed bool
	for len(s.Tasks) > 0 || s.TokensTotal < 8 {
		s, ok = ev.next(t)
		require.True(t, ok)
		for _, task := range s.Tasks {
			if task.Tokens > 0 {
				assert.Positive(t, task.FirstTokenMs)
			}
		}
		for _, w := range s.Workers {
			if w.ID == "w-1" && w.TokensPerSecond > 0 {
				sawSpeed = true
				assert.Equal(t, s.TokensPerSecond, w.TokensPerSecond, "the only worker generating is the cluster's speed")
			}
		}
	}
	assert.EqualValues(t, 8, s.TokensTotal)
	assert.True(t, sawSpeed, "the worker's speed showed while it generated")
	for range 2 {
		res := <-done
		require.NoError(t, res.streamErr)
		require.Nil(t, res.errorEvent())
	}

	// The queen's shutdown ends the stream.
	require.NoError(t, tq.q.Close())
	for {
		if _, ok := ev.next(t); !ok {
			break
		}
	}
}

// postTaskNoT runs a task without a *testing.T (for a goroutine).
func postTaskNoT(url string, body api.TaskRequest) *taskResult {
	res := &taskResult{}
	b, _ := json.Marshal(body)
	resp, err := http.Post(url+"/v2/tasks", "application/json", strings.NewReader(string(b)))
	if err != nil {
		res.streamErr = err
		return res
	}
	defer resp.Body.Close()
	res.status = resp.StatusCode
	for e, err := range sse.Read(resp.Body) {
		if err != nil {
			res.streamErr = err
			break
		}
		res.events = append(res.events, e)
	}
	return res
}

// GET /v2/models gives each answering node's catalog, sorted; the local
// node is left out while its hive does not run.
func TestConsoleClusterModels(t *testing.T) {
	tq := newTestQueen(t, Config{})
	var out api.ClusterModels
	status, e := call(t, http.MethodGet, tq.url+"/v2/models", "", nil, &out)
	require.Equal(t, http.StatusOK, status, "%v", e)
	assert.Equal(t, api.ClusterModels{Nodes: []api.NodeModels{}}, out)

	hive := newModelHive(t)
	hive.catalog = []api.ModelEntry{{ID: "2", Provider: "hf", Reference: "hf:b/c"}, {ID: "1", Provider: "file", Reference: "file:/a.gguf",
		Meta: &api.ModelMeta{Architecture: "llama", Quantization: "Q8_0"}}}
	tq = newTestQueen(t, Config{LocalHivePort: hive.port()})
	status, e = call(t, http.MethodGet, tq.url+"/v2/models", "", nil, &out)
	require.Equal(t, http.StatusOK, status, "%v", e)
	require.Len(t, out.Nodes, 1)
	assert.Equal(t, "local", out.Nodes[0].Node)
	assert.Nil(t, out.Nodes[0].Error)
	require.Len(t, out.Nodes[0].Models, 2)
	assert.Equal(t, "file:/a.gguf", out.Nodes[0].Models[0].Reference)
	assert.Equal(t, "Q8_0", out.Nodes[0].Models[0].Meta.Quantization)
}

// POST /v2/models/download relays the hive's download and lists it in the
// snapshots while it runs; bad requests are refused before anything starts.
func TestConsolePull(t *testing.T) {
	hive := newModelHive(t)
	hive.stream = []api.Event{
		api.NarrationEvent(api.ActorHive, "download", "Downloading tiny.Q4_K_M.gguf"),
		progressEvent(api.Progress{Stage: api.StageDownloading, BytesDownloaded: 10, BytesTotal: 100, MegabytesPerSecond: 1}),
		progressEvent(api.Progress{Stage: api.StageComplete, LocalPath: "/models/tiny.gguf"}),
	}
	tq := newTestQueen(t, Config{LocalHivePort: hive.port()})

	for _, tc := range []struct {
		name string
		body any
		code api.Code
	}{
		{"file ref", api.PullRequest{ModelRef: "file:/a.gguf"}, api.CodeInvalidRequest},
		{"bad ref", api.PullRequest{ModelRef: "hf:x"}, api.CodeInvalidRequest},
		{"bad node", api.PullRequest{Node: "no such node!", ModelRef: hfModel}, api.CodeInvalidRequest},
		{"unknown node", api.PullRequest{Node: "gpu-box", ModelRef: hfModel}, api.CodeNodeNotFound},
		{"unknown field", map[string]string{"model": hfModel}, api.CodeInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, e := call(t, http.MethodPost, tq.url+"/v2/models/download", "", tc.body, nil)
			require.NotNil(t, e)
			assert.Equal(t, tc.code, e.Code)
			assert.Equal(t, e.HTTPStatus(), status)
		})
	}
	assert.Empty(t, hive.downloads, "nothing was started")

	b, _ := json.Marshal(api.PullRequest{ModelRef: hfModel})
	resp, err := http.Post(tq.url+"/v2/models/download", "application/json", strings.NewReader(string(b)))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var kinds []string
	for e, err := range sse.Read(resp.Body) {
		require.NoError(t, err)
		k := string(e.Kind)
		if e.Kind == api.KindNarration {
			assert.Equal(t, "local", e.Narration.Node)
			k += ":" + e.Narration.Actor + ":" + e.Narration.Action
		}
		kinds = append(kinds, k)
	}
	assert.Equal(t, []string{"narration:rbee-queen:hive_check", "narration:rbee-queen:download", "narration:rbee-hive:download", "progress", "progress"}, kinds)
	assert.Equal(t, []api.DownloadRequest{{ModelRef: hfModel}}, hive.downloads)
	assert.Empty(t, tq.q.downloads.snapshot(), "the download left the list when it ended")
}

// The download list shows one entry per hive download, with its progress.
func TestDownloadList(t *testing.T) {
	var l downloadList
	a := l.add("local", "hf:a/b", "dl-1")
	b := l.add("local", "hf:a/b", "dl-1") // a second task following the same download
	c := l.add("gpu", "hf:c/d", "dl-1")
	l.update(a, &api.Progress{Stage: api.StageDownloading, BytesDownloaded: 5, BytesTotal: 10, MegabytesPerSecond: 2})
	l.update(a, &api.Progress{Stage: api.StageLoading}) // no byte counts: they stay
	s := l.snapshot()
	require.Len(t, s, 2)
	assert.Equal(t, int64(5), s[0].BytesDownloaded)
	assert.Equal(t, int64(10), s[0].BytesTotal)
	assert.Equal(t, "gpu", s[1].Node)
	l.remove(a)
	l.remove(b)
	l.remove(c)
	assert.Empty(t, l.snapshot())
}

func TestRate(t *testing.T) {
	assert.Equal(t, 0.0, rate(5, 0))
	assert.Equal(t, 0.0, rate(0, 1))
	assert.Equal(t, 0.0, rate(-3, 1), "a counter never goes down; a worker that went away counts nothing")
	assert.Equal(t, 12.5, rate(25, 2))
	assert.Equal(t, 3.3, rate(10, 3))
}

// OpenAI answers name the node and the worker that served them, streamed
// or not (the playground shows them).
func TestOpenAIAnswerNamesWorker(t *testing.T) {
	s := newOAISetup(t, "")
	for _, stream := range []bool{false, true} {
		a := oaiCall(t, "POST", s.tq.url+"/v1/chat/completions", "", chatBody(map[string]any{"stream": stream, "max_tokens": 2}), nil)
		require.Equal(t, http.StatusOK, a.status, "%s", a.body)
		assert.Equal(t, "local", a.header.Get(NodeHeader), "stream %v", stream)
		assert.Equal(t, "w-rec", a.header.Get(WorkerHeader), "stream %v", stream)
	}
	a := oaiCall(t, "POST", s.tq.url+"/v1/chat/completions", "", chatBody(map[string]any{"model": "file:/nowhere.gguf"}), nil)
	assert.NotEqual(t, http.StatusOK, a.status)
	assert.Empty(t, a.header.Get(WorkerHeader), "a failure before any worker names none")
}

// A registered node whose hive does not answer shows with its registry
// record and the error; a local hive that simply is not started shows as
// not running, without an error.
func TestConsoleEventsNodes(t *testing.T) {
	tq := newTestQueen(t, Config{eventsEvery: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.NoError(t, tq.q.store.Add(ctx, api.Node{Name: "ws", SSHHost: "127.0.0.1", SSHUser: "u", InstallPath: "/opt/rbee",
		HivePort: testutil.FreePort(t)}))
	seen := time.Unix(1700000000, 0)
	require.NoError(t, tq.q.store.SetStatus(ctx, "ws", api.NodeReachable, seen, ""))
	s, ok := openEvents(t, ctx, tq.url, "").next(t)
	require.True(t, ok)
	require.Len(t, s.Nodes, 2)
	assert.Equal(t, api.NodeSnapshot{Name: "local", Local: true}, s.Nodes[0])
	ws := s.Nodes[1]
	assert.Equal(t, "ws", ws.Name)
	assert.False(t, ws.Local)
	assert.Equal(t, "127.0.0.1", ws.SSHHost)
	assert.False(t, ws.Reachable)
	assert.Equal(t, seen.Unix(), ws.LastConnectedUnix)
	require.NotNil(t, ws.Error)
	assert.Equal(t, api.CodeConnectionTimeout, ws.Error.Code)
	assert.Equal(t, "ws", ws.Error.Details["node"])
	assert.Nil(t, ws.Info)
}

// Open pages share the queen's looks at the cluster: four streams cost
// the hive about what one does.
func TestConsoleEventsShareLooks(t *testing.T) {
	hive := newFakeHive(t, "")
	const every = 50 * time.Millisecond
	tq := newTestQueen(t, Config{LocalHivePort: hive.port(), eventsEvery: every})
	ctx, cancel := context.WithCancel(t.Context())
	start := time.Now()
	for range 4 {
		ev := openEvents(t, ctx, tq.url, "")
		_, ok := ev.next(t)
		require.True(t, ok)
	}
	time.Sleep(20 * every)
	cancel()
	elapsed := time.Since(start)
	hive.mu.Lock()
	lists := hive.lists
	hive.mu.Unlock()
	looks := int(elapsed/every) + 1 // what one stream costs at most
	t.Logf("%d worker lists in %s for 4 streams (one stream: at most %d)", lists, elapsed.Round(time.Millisecond), looks)
	assert.LessOrEqual(t, lists, looks*3/2+2, "the streams share their looks")
}

// A node's info comes from its hive, asked for again only now and then,
// its free memory rounded: its drift alone sends nothing.
func TestConsoleEventsNodeInfo(t *testing.T) {
	hive := newFakeHive(t, "")
	hive.info = &api.HiveInfo{Version: api.Version, RAMAvailableMB: 1000, CPUs: 8,
		Devices: []api.DeviceInfo{{Backend: api.BackendCUDA, Index: 0, VRAMMB: 8192}}}
	const every = 20 * time.Millisecond
	tq := newTestQueen(t, Config{LocalHivePort: hive.port(), eventsEvery: every})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ev := openEvents(t, ctx, tq.url, "")
	s, ok := ev.next(t)
	require.True(t, ok)
	require.NotNil(t, s.Nodes[0].Info)
	assert.Equal(t, api.HiveInfo{Version: api.Version, RAMAvailableMB: 768, CPUs: 8,
		Devices: []api.DeviceInfo{{Backend: api.BackendCUDA, Index: 0, VRAMMB: 8192}}}, *s.Nodes[0].Info)

	hive.mu.Lock()
	hive.info.RAMAvailableMB = 1010
	hive.mu.Unlock()
	time.Sleep(10 * every)
	hive.addWorker(newFakeWorker(t, "w-1").info("file:/a.gguf", api.StateIdle))
	s, ok = ev.next(t)
	require.True(t, ok)
	assert.Len(t, s.Workers, 1, "the next snapshot is the worker's, not the memory's drift")
	assert.EqualValues(t, 768, s.Nodes[0].Info.RAMAvailableMB)
}
