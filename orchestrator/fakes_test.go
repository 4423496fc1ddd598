package orchestrator

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/hivewire"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

// fakeWorker speaks the worker's wire protocol with scripted behaviour, for
// the fault cases a real worker cannot be made to show on demand.
type fakeWorker struct {
	id    string
	token string
	srv   *httptest.Server

	mu         sync.Mutex
	busyFor    int      // answer ALL_SLOTS_BUSY this many times
	tokens     []string // the tokens of every generation
	cutAfter   int      // > 0: drop the connection after this many tokens
	failAfter  int      // with failWith: send it as an error event after this many tokens
	failWith   *api.Error
	cancelAt   int            // > 0: end with done "cancelled" after this many tokens, unasked
	tokenDelay time.Duration  // between tokens
	loading    []api.Progress // loading events before ready
	hangLoad   bool           // after them, never become ready
	inferAt    []time.Time    // when each inference request arrived
	requestIDs []string       // X-Request-ID of each inference
	auth       []string       // Authorization of each inference
	cancels    map[string]chan struct{}
	deleted    chan string   // ids of DELETE /v1/inference/{id}
	gate       chan struct{} // when set, generations wait for it to close before their first token
	active     int           // generations running now
	maxActive  int           // the most that ran at once
}

func newFakeWorker(t *testing.T, id string) *fakeWorker {
	t.Helper()
	w := &fakeWorker{id: id, token: "worker-token-" + id, tokens: []string{"Once", " upon", " a", " time"},
		cancels: map[string]chan struct{}{}, deleted: make(chan string, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(rw http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(rw, 200, api.WorkerHealth{Status: "ok", Version: api.Version, WorkerID: id, State: api.StateIdle, SlotsTotal: 1})
	})
	mux.HandleFunc("GET /v1/ready", func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		hang := w.hangLoad
		w.mu.Unlock()
		httpx.WriteJSON(rw, 200, api.ReadyResponse{Ready: !hang, State: map[bool]api.WorkerState{true: api.StateLoading, false: api.StateIdle}[hang], ModelLoaded: !hang})
	})
	mux.HandleFunc("GET /v1/loading/progress", w.progress)
	mux.HandleFunc("POST /v1/inference", w.infer)
	mux.HandleFunc("DELETE /v1/inference/{id}", func(rw http.ResponseWriter, r *http.Request) {
		rid := r.PathValue("id")
		w.mu.Lock()
		if c, ok := w.cancels[rid]; ok {
			close(c)
			delete(w.cancels, rid)
		}
		w.mu.Unlock()
		w.deleted <- rid
		rw.WriteHeader(http.StatusNoContent)
	})
	w.srv = httptest.NewServer(httpx.Middleware(nil, httpx.Auth(w.token, []string{"/v1/health"}, mux)))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *fakeWorker) info(model string, state api.WorkerState) hivewire.Worker {
	avail := 1
	if state != api.StateIdle {
		avail = 0
	}
	return hivewire.Worker{WorkerInfo: api.WorkerInfo{ID: w.id, URL: w.srv.URL, ModelRef: model, Backend: api.BackendCPU, State: state,
		SlotsTotal: 1, SlotsAvailable: avail}, APIKey: w.token}
}

func (w *fakeWorker) progress(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	events, hang := w.loading, w.hangLoad
	w.mu.Unlock()
	out := sse.NewWriter(rw)
	for _, p := range events {
		p := p
		_ = out.Send(api.Event{Kind: api.KindProgress, Progress: &p})
	}
	if hang {
		<-r.Context().Done()
		return
	}
	_ = out.Send(api.Event{Kind: api.KindProgress, Progress: &api.Progress{Stage: api.StageReady}})
	_ = out.Close()
}

func (w *fakeWorker) infer(rw http.ResponseWriter, r *http.Request) {
	var req api.InferenceRequest
	if e := httpx.DecodeJSON(rw, r, &req); e != nil {
		httpx.WriteError(rw, r, e)
		return
	}
	rid := httpx.RequestID(r)
	w.mu.Lock()
	w.inferAt = append(w.inferAt, time.Now())
	w.requestIDs = append(w.requestIDs, r.Header.Get(httpx.RequestIDHeader))
	w.auth = append(w.auth, r.Header.Get("Authorization"))
	if w.busyFor > 0 {
		w.busyFor--
		w.mu.Unlock()
		httpx.WriteError(rw, r, api.Errorf(api.CodeAllSlotsBusy, "all 1 slots are busy").With("slots_total", 1).With("slots_busy", 1))
		return
	}
	cancelled := make(chan struct{})
	w.cancels[rid] = cancelled
	tokens, cut, delay, failAfter, failWith, cancelAt, gate := w.tokens, w.cutAfter, w.tokenDelay, w.failAfter, w.failWith, w.cancelAt, w.gate
	w.active++
	w.maxActive = max(w.maxActive, w.active)
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.active--
		w.mu.Unlock()
	}()

	out := sse.NewWriter(rw)
	_ = out.Send(api.Event{Kind: api.KindNarration, Narration: &api.Narration{Actor: api.ActorWorker, Action: "inference_start",
		Human: "Starting inference", RequestID: rid, WorkerID: w.id}})
	n := 0
	stop := api.StopMaxTokens
	if gate != nil {
		select {
		case <-gate:
		case <-cancelled:
			_ = out.Send(api.Event{Kind: api.KindDone, Done: &api.Done{Done: true, StopReason: api.StopCancelled, RequestID: rid, WorkerID: w.id}})
			_ = out.Close()
			return
		case <-r.Context().Done():
			return
		}
	}
loop:
	for i, tok := range tokens {
		if cut > 0 && i == cut {
			panic(http.ErrAbortHandler) // the worker "crashes": no done, no [DONE]
		}
		if failWith != nil && i == failAfter {
			_ = out.Error(failWith)
			return
		}
		if cancelAt > 0 && i == cancelAt {
			stop = api.StopCancelled // as an older worker did when it was shut down
			break loop
		}
		if delay > 0 {
			select {
			case <-cancelled:
				stop = api.StopCancelled
				break loop
			case <-r.Context().Done():
				return
			case <-time.After(delay):
			}
		}
		if out.Send(api.Event{Kind: api.KindToken, Token: &api.Token{Token: tok, Index: i}}) != nil {
			return
		}
		n++
	}
	_ = out.Send(api.Event{Kind: api.KindDone, Done: &api.Done{Done: true, TotalTokens: n, StopReason: stop, RequestID: rid, WorkerID: w.id}})
	_ = out.Close()
}

func (w *fakeWorker) inferCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.inferAt)
}

// fakeHive speaks the hive's wire protocol.
type fakeHive struct {
	srv   *httptest.Server
	token string

	mu         sync.Mutex
	version    string
	workers    []hivewire.Worker
	spawnNext  *fakeWorker // what a spawn starts
	spawnErr   *api.Error
	spawnWait  time.Duration
	spawns     int
	spawnReqs  []api.SpawnRequest
	stopped    []string
	adminStop  int
	models     []api.ModelEntry // its catalog
	preflight  *api.Error       // what POST /v1/workers/preflight answers (nil: it passes)
	preflights int
	lists      int           // GET /v1/workers/list requests
	info       *api.HiveInfo // what GET /v1/info answers (nil: 404, as an older hive)
}

func newFakeHive(t *testing.T, token string) *fakeHive {
	t.Helper()
	h := &fakeHive{token: token, version: api.Version}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		v := h.version
		h.mu.Unlock()
		httpx.WriteJSON(w, 200, api.HiveHealth{Status: "alive", Version: v, APIVersion: api.APIVersion})
	})
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		var info *api.HiveInfo
		if h.info != nil {
			c := *h.info
			info = &c
		}
		h.mu.Unlock()
		if info == nil {
			httpx.WriteError(w, r, api.Errorf(api.CodeNotFound, "no such endpoint"))
			return
		}
		httpx.WriteJSON(w, 200, info)
	})
	mux.HandleFunc("GET /v1/workers/list", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.lists++
		list := hivewire.WorkerList{Workers: append([]hivewire.Worker{}, h.workers...)}
		h.mu.Unlock()
		httpx.WriteJSON(w, 200, list)
	})
	mux.HandleFunc("POST /v1/workers/spawn", func(w http.ResponseWriter, r *http.Request) {
		var req api.SpawnRequest
		if e := httpx.DecodeJSON(w, r, &req); e != nil {
			httpx.WriteError(w, r, e)
			return
		}
		h.mu.Lock()
		h.spawns++
		h.spawnReqs = append(h.spawnReqs, req)
		fw, e, wait := h.spawnNext, h.spawnErr, h.spawnWait
		if e == nil && fw != nil {
			h.workers = append(h.workers, fw.info(req.ModelRef, api.StateLoading))
		}
		h.mu.Unlock()
		if wait > 0 {
			select {
			case <-time.After(wait):
			case <-r.Context().Done():
				return
			}
		}
		if e != nil {
			httpx.WriteError(w, r, e)
			return
		}
		if fw == nil {
			httpx.WriteError(w, r, api.Errorf(api.CodeInternal, "fake hive: no worker scripted"))
			return
		}
		httpx.WriteJSON(w, 200, hivewire.Spawned{SpawnResponse: api.SpawnResponse{WorkerID: fw.id, URL: fw.srv.URL, State: api.StateLoading}, APIKey: fw.token})
	})
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		list := api.ModelList{Models: append([]api.ModelEntry{}, h.models...)}
		h.mu.Unlock()
		httpx.WriteJSON(w, 200, list)
	})
	mux.HandleFunc("POST /v1/workers/preflight", func(w http.ResponseWriter, r *http.Request) {
		var req api.SpawnRequest
		if e := httpx.DecodeJSON(w, r, &req); e != nil {
			httpx.WriteError(w, r, e)
			return
		}
		h.mu.Lock()
		h.preflights++
		e := h.preflight
		h.mu.Unlock()
		if e != nil {
			httpx.WriteError(w, r, e)
			return
		}
		httpx.WriteJSON(w, 200, api.PreflightResult{RequiredMB: 12, AvailableMB: 4096})
	})
	mux.HandleFunc("POST /v1/workers/shutdown", func(w http.ResponseWriter, r *http.Request) {
		var req api.WorkerShutdownRequest
		if e := httpx.DecodeJSON(w, r, &req); e != nil {
			httpx.WriteError(w, r, e)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		for i, wi := range h.workers {
			if wi.ID == req.WorkerID {
				h.workers = append(h.workers[:i], h.workers[i+1:]...)
				h.stopped = append(h.stopped, req.WorkerID)
				httpx.WriteJSON(w, 200, struct{}{})
				return
			}
		}
		httpx.WriteError(w, r, api.Errorf(api.CodeWorkerNotFound, "no worker %s", req.WorkerID))
	})
	mux.HandleFunc("POST /v1/admin/shutdown", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.adminStop++
		h.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	h.srv = httptest.NewServer(httpx.Middleware(nil, httpx.Auth(token, []string{"/v1/health"}, mux)))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *fakeHive) port() int { return h.srv.Listener.Addr().(*net.TCPAddr).Port }

func (h *fakeHive) addWorker(w hivewire.Worker) {
	h.mu.Lock()
	h.workers = append(h.workers, w)
	h.mu.Unlock()
}

func (h *fakeHive) spawnCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.spawns
}

// testQueen is a Queen served by an httptest server.
type testQueen struct {
	q   *Queen
	url string
	cfg Config
}

// newTestQueen makes a queen whose local hive is at hivePort (0: a port
// where nothing listens) and whose Binary cannot start (tests that start
// hives set it).
func newTestQueen(t *testing.T, cfg Config) *testQueen {
	t.Helper()
	if cfg.Home == "" {
		cfg.Home = t.TempDir()
	}
	if cfg.Binary == "" {
		cfg.Binary = "/nonexistent/rbee"
	}
	if cfg.BusyRetryDelays == nil {
		cfg.BusyRetryDelays = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}
	}
	if cfg.HiveRetryDelays == nil {
		cfg.HiveRetryDelays = []time.Duration{0, 20 * time.Millisecond, 40 * time.Millisecond}
	}
	q, err := New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(q.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(func() { assert.NoError(t, q.Close()) })
	return &testQueen{q: q, url: srv.URL, cfg: cfg}
}

// taskResult is what a client saw of one task.
type taskResult struct {
	status    int
	header    http.Header
	envelope  *api.Error // the plain error answer, before any stream
	events    []api.Event
	streamErr error // from sse.Read: nil when [DONE] came
}

func (r *taskResult) errorEvent() *api.Error {
	for _, ev := range r.events {
		if ev.Kind == api.KindError {
			return ev.Error
		}
	}
	return nil
}

func (r *taskResult) text() string {
	var b strings.Builder
	for _, ev := range r.events {
		if ev.Kind == api.KindToken {
			b.WriteString(ev.Token.Token)
		}
	}
	return b.String()
}

func (r *taskResult) narration(action string) []string {
	var out []string
	for _, ev := range r.events {
		if ev.Kind == api.KindNarration && ev.Narration.Action == action {
			out = append(out, ev.Narration.Human)
		}
	}
	return out
}

func (r *taskResult) done() *api.Done {
	for _, ev := range r.events {
		if ev.Kind == api.KindDone {
			return ev.Done
		}
	}
	return nil
}

// postTask runs a task and reads its stream to the end. each, when set, is
// called with every event as it arrives.
func postTask(t *testing.T, ctx context.Context, url, token string, body any, each func(api.Event)) *taskResult {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		require.NoError(t, err)
		rd = strings.NewReader(string(data))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v2/tasks", rd)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	res := &taskResult{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		var env api.Envelope
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&env), "an error answer is an envelope")
		res.envelope = env.Error
		return res
	}
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	for ev, err := range sse.Read(resp.Body) {
		if err != nil {
			res.streamErr = err
			break
		}
		res.events = append(res.events, ev)
		if each != nil {
			each(ev)
		}
	}
	return res
}

// call does a JSON request against the queen and decodes the answer (or
// returns the envelope's error).
func call(t *testing.T, method, url, token string, in, out any) (int, *api.Error) {
	t.Helper()
	var rd io.Reader
	if s, ok := in.(string); ok {
		rd = strings.NewReader(s)
	} else if in != nil {
		data, err := json.Marshal(in)
		require.NoError(t, err)
		rd = strings.NewReader(string(data))
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode/100 != 2 {
		var env api.Envelope
		require.NoError(t, json.Unmarshal(body, &env), "error answers are envelopes: %s", body)
		require.NotNil(t, env.Error, "error answers are envelopes: %s", body)
		return resp.StatusCode, env.Error
	}
	if out != nil && len(body) > 0 {
		require.NoError(t, json.Unmarshal(body, out), "%s", body)
	}
	return resp.StatusCode, nil
}

// assertEnvelope checks what S53 asks of every error: a defined code, a
// readable message, details, and the task's request id.
func assertEnvelope(t *testing.T, e *api.Error, code api.Code, requestID string) {
	t.Helper()
	require.NotNil(t, e, "an error envelope")
	assert.Equal(t, code, e.Code)
	assert.True(t, e.Code.Known(), "code %s is defined", e.Code)
	assert.NotEmpty(t, e.Message)
	assert.NotEqual(t, string(e.Code), e.Message, "the message is a sentence, not the code")
	assert.False(t, strings.ContainsAny(e.Message[:1], "{[<"), "the message is text, not a dump: %q", e.Message)
	assert.NotContains(t, e.Message, "worker-token-", "no secret in messages")
	if requestID != "" {
		assert.Equal(t, requestID, e.RequestID)
	}
}
