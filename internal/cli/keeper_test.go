package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

// fakeQueen is an httptest queen whose answers the test chooses per path.
type fakeQueen struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	routes map[string]http.HandlerFunc // "METHOD /path"
	log    []string                    // "METHOD /path?query body"
	auth   []string
}

func newFakeQueen(t *testing.T) *fakeQueen {
	f := &fakeQueen{t: t, routes: map[string]http.HandlerFunc{}}
	f.routes["GET /health"] = func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, 200, api.Health{Status: "ok", Version: api.Version})
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		key := r.Method + " " + r.URL.Path
		f.mu.Lock()
		entry := key
		if r.URL.RawQuery != "" {
			entry += "?" + r.URL.RawQuery
		}
		if len(b) > 0 {
			entry += " " + string(b)
		}
		f.log = append(f.log, entry)
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		h := f.routes[key]
		f.mu.Unlock()
		if h == nil {
			httpx.WriteError(w, r, api.Errorf(api.CodeInvalidRequest, "no route %s", key))
			return
		}
		h(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeQueen) handle(route string, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[route] = h
}

func (f *fakeQueen) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

// stream answers POST /v2/tasks with events, then [DONE] unless cut.
func (f *fakeQueen) stream(events []api.Event, cut bool) {
	f.handle("POST /v2/tasks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(httpx.RequestIDHeader, "task-abc")
		s := sse.NewWriter(w)
		for _, ev := range events {
			_ = s.Send(ev)
		}
		if !cut {
			_ = s.Close()
		}
	})
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, ctx context.Context, env map[string]string, stdout io.Writer, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	var w io.Writer = &out
	if stdout != nil {
		w = io.MultiWriter(&out, stdout)
	}
	e := &Env{Stdin: strings.NewReader(""), Stdout: w, Stderr: &errb, Getenv: func(k string) string { return env[k] }}
	code := Run(ctx, e, args)
	return result{code, out.String(), errb.String()}
}

func start(id string) api.Event {
	ev := api.NarrationEvent(api.ActorQueen, "task_start", "Task "+id+" accepted")
	ev.Narration.RequestID = id
	return ev
}

func tok(s string, i int) api.Event {
	return api.Event{Kind: api.KindToken, Token: &api.Token{Token: s, Index: i}}
}

func TestInferPrints(t *testing.T) {
	f := newFakeQueen(t)
	f.stream([]api.Event{
		start("task-abc"),
		api.NarrationEvent(api.ActorQueen, "spawn", "Spawning a worker on local"),
		{Kind: api.KindProgress, Progress: &api.Progress{Stage: api.StageLoading, LayersLoaded: 1, LayersTotal: 2}},
		tok("Once", 0), tok(" upon", 1), tok(" a time", 2),
		{Kind: api.KindDone, Done: &api.Done{Done: true, TotalTokens: 3, DurationMs: 40, StopReason: "max_tokens", TokensPerSecond: 75}},
	}, false)
	env := map[string]string{"RBEE_API_KEY": "token-of-the-queen-123"}
	r := run(t, t.Context(), env, nil, "infer", "--queen-url", f.srv.URL, "--model", "file:/m.gguf", "--prompt", "hi",
		"--max-tokens", "3", "--temperature", "0", "--seed", "7", "--stop", "END")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "Once upon a time\n", r.stdout, "only the text on stdout")
	assert.Contains(t, r.stderr, "[queen] Spawning a worker on local\n")
	assert.Contains(t, r.stderr, "3 tokens")
	assert.NotContains(t, r.stderr, "Once")

	reqs := f.requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, "GET /health", reqs[0])
	body := strings.TrimPrefix(reqs[1], "POST /v2/tasks ")
	assert.JSONEq(t, `{"node":"local","model":"file:/m.gguf","prompt":"hi","max_tokens":3,"temperature":0,"seed":7,"stop":["END"],"backend":"cpu"}`, body,
		"sampling flags left unset are left to the queen")
	assert.Equal(t, "Bearer token-of-the-queen-123", f.auth[1])
}

func TestInferJSON(t *testing.T) {
	f := newFakeQueen(t)
	f.stream([]api.Event{start("task-abc"), tok("Hi", 0), {Kind: api.KindDone, Done: &api.Done{Done: true, TotalTokens: 1, StopReason: "eos"}}}, false)
	r := run(t, t.Context(), map[string]string{"RBEE_QUEEN_URL": f.srv.URL}, nil, "infer", "--model", "file:/m.gguf", "--prompt", "hi", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3)
	var kinds []string
	for _, l := range lines {
		var ev struct {
			Event string          `json:"event"`
			Data  json.RawMessage `json:"data"`
		}
		require.NoError(t, json.Unmarshal([]byte(l), &ev), l)
		kinds = append(kinds, ev.Event)
		_, err := api.ParseEvent(ev.Event, ev.Data)
		assert.NoError(t, err)
	}
	assert.Equal(t, []string{"narration", "token", "done"}, kinds)
	assert.Empty(t, r.stderr)
}

func TestInferUsage(t *testing.T) {
	f := newFakeQueen(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no model", []string{"--prompt", "hi"}, "--model is required"},
		{"no prompt", []string{"--model", "file:/m.gguf"}, "--prompt is required"},
		{"bad model ref", []string{"--model", "file:../x.gguf", "--prompt", "hi"}, "model"},
		{"temperature", []string{"--model", "file:/m.gguf", "--prompt", "hi", "--temperature", "3"}, "--temperature"},
		{"max tokens", []string{"--model", "file:/m.gguf", "--prompt", "hi", "--max-tokens", "-1"}, "--max-tokens"},
		{"top-p", []string{"--model", "file:/m.gguf", "--prompt", "hi", "--top-p", "1.5"}, "--top-p"},
		{"node", []string{"--model", "file:/m.gguf", "--prompt", "hi", "--node", "Not_DNS"}, "--node"},
		{"backend", []string{"--model", "file:/m.gguf", "--prompt", "hi", "--backend", "tpu"}, "--backend"},
		{"control character", []string{"--model", "file:/m.gguf", "--prompt", "a\x1bb"}, "--prompt"},
		{"five stops", []string{"--model", "file:/m.gguf", "--prompt", "hi", "--stop", "a", "--stop", "b", "--stop", "c", "--stop", "d", "--stop", "e"}, "--stop"},
		{"queen url", []string{"--model", "file:/m.gguf", "--prompt", "hi", "--queen-url", "ftp://x"}, "--queen-url"},
		{"unknown flag", []string{"--modle", "x"}, "modle"},
		{"stray argument", []string{"--model", "file:/m.gguf", "--prompt", "hi", "extra"}, "extra"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"infer", "--queen-url", f.srv.URL}, tc.args...)
			if tc.name == "queen url" {
				args = append([]string{"infer"}, tc.args...)
			}
			r := run(t, t.Context(), nil, nil, args...)
			assert.Equal(t, ExitUsage, r.code, r.stderr)
			assert.Contains(t, r.stderr, tc.want)
		})
	}
	assert.Empty(t, f.requests(), "nothing reaches the queen")
}

func TestInferQueenError(t *testing.T) {
	f := newFakeQueen(t)
	f.handle("POST /v2/tasks", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, api.Errorf(api.CodeNodeNotFound, "node gpu is not in the registry").WithHint("rbee setup add-node --name gpu …"))
	})
	r := run(t, t.Context(), nil, nil, "infer", "--queen-url", f.srv.URL, "--node", "gpu", "--model", "file:/m.gguf", "--prompt", "hi")
	assert.Equal(t, ExitFailure, r.code)
	assert.Equal(t, "rbee infer: node gpu is not in the registry\nhint: rbee setup add-node --name gpu …\n", r.stderr)
	assert.Empty(t, r.stdout)
}

func TestInferAuthFailure(t *testing.T) {
	f := newFakeQueen(t)
	f.handle("POST /v2/tasks", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, api.Errorf(api.CodeInvalidAPIKey, "invalid API key"))
	})
	r := run(t, t.Context(), map[string]string{"RBEE_API_KEY": "wrong-token-0123456789"}, nil, "infer", "--queen-url", f.srv.URL, "--model", "file:/m.gguf", "--prompt", "hi")
	assert.Equal(t, ExitFailure, r.code)
	assert.Contains(t, r.stderr, "authentication failed at "+f.srv.URL)
	assert.Contains(t, r.stderr, "RBEE_API_KEY")
}

// TestInferCrashSavesPartialText: a generation cut short without the
// keeper asking — the worker crashed, its stream or the queen's broke, the
// worker shut down, or another client cancelled the task — exits 1 with the
// partial text saved and how far it got, never as a success.
func TestInferCrashSavesPartialText(t *testing.T) {
	tests := []struct {
		name   string
		tail   []api.Event
		cut    bool
		stderr []string
	}{
		{name: "worker crashed", tail: []api.Event{{Kind: api.KindError, Error: api.Errorf(api.CodeWorkerCrashed, "stream closed unexpectedly").With("tokens_generated", 2)}},
			stderr: []string{"rbee infer: stream closed unexpectedly (WORKER_CRASHED)\n"}},
		{name: "queen went away", cut: true},
		{name: "worker shut down", tail: []api.Event{{Kind: api.KindError, Error: api.Errorf(api.CodeShuttingDown,
			"worker w-1 is shutting down: the generation stopped after 2 of at most 10 tokens").WithHint("run the request again")}},
			stderr: []string{"rbee infer: worker w-1 is shutting down: the generation stopped after 2 of at most 10 tokens (SHUTTING_DOWN)\n", "hint: run the request again\n"}},
		{name: "cancelled by another client", tail: []api.Event{{Kind: api.KindDone, Done: &api.Done{Done: true, TotalTokens: 2, StopReason: api.StopCancelled}}},
			stderr: []string{"did not cancel it", "hint: another client cancelled the task"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeQueen(t)
			f.stream(append([]api.Event{start("task-abc"), tok("Once", 0), tok(" upon", 1)}, tc.tail...), tc.cut)
			r := run(t, t.Context(), nil, nil, "infer", "--queen-url", f.srv.URL, "--model", "file:/m.gguf", "--prompt", "hi", "--max-tokens", "10")
			assert.Equal(t, ExitFailure, r.code)
			assert.Equal(t, "Once upon\n", r.stdout)
			assert.Contains(t, r.stderr, "stream closed unexpectedly\n")
			assert.Contains(t, r.stderr, "tokens generated: 2/10\n")
			assert.NotContains(t, r.stderr, "stop: cancelled", "no success line")
			for _, s := range tc.stderr {
				assert.Contains(t, r.stderr, s)
			}
			m := regexp.MustCompile(`partial text saved to (\S+)`).FindStringSubmatch(r.stderr)
			require.NotNil(t, m, r.stderr)
			t.Cleanup(func() { os.Remove(m[1]) })
			b, err := os.ReadFile(m[1])
			require.NoError(t, err)
			assert.Equal(t, "Once upon", string(b))
		})
	}

	t.Run("json", func(t *testing.T) {
		f := newFakeQueen(t)
		f.stream([]api.Event{start("task-abc"), tok("Once", 0),
			{Kind: api.KindError, Error: api.Errorf(api.CodeShuttingDown, "worker w-1 is shutting down")}}, false)
		r := run(t, t.Context(), nil, nil, "infer", "--json", "--queen-url", f.srv.URL, "--model", "file:/m.gguf", "--prompt", "hi", "--max-tokens", "10")
		assert.Equal(t, ExitFailure, r.code)
		assert.Contains(t, r.stdout, `"code":"SHUTTING_DOWN"`)
		assert.Contains(t, r.stderr, "tokens generated: 1/10\n")
		m := regexp.MustCompile(`partial text saved to (\S+)`).FindStringSubmatch(r.stderr)
		require.NotNil(t, m, r.stderr)
		os.Remove(m[1])
	})

	t.Run("shutting down before generating", func(t *testing.T) {
		// The queen stopping while the worker loads is a plain failure:
		// there is no partial answer to keep.
		f := newFakeQueen(t)
		f.stream([]api.Event{start("task-abc"), api.NarrationEvent(api.ActorQueen, "spawn", "Spawning a worker on local"),
			{Kind: api.KindError, Error: api.Errorf(api.CodeShuttingDown, "the queen is shutting down")}}, false)
		r := run(t, t.Context(), nil, nil, "infer", "--queen-url", f.srv.URL, "--model", "file:/m.gguf", "--prompt", "hi", "--max-tokens", "10")
		assert.Equal(t, ExitFailure, r.code)
		assert.Contains(t, r.stderr, "rbee infer: the queen is shutting down\n")
		assert.NotContains(t, r.stderr, "stream closed unexpectedly")
		assert.NotContains(t, r.stderr, "partial text")
	})
}

// signalWriter closes ch at the first write.
type signalWriter struct {
	once sync.Once
	ch   chan struct{}
}

func (s *signalWriter) Write(p []byte) (int, error) {
	s.once.Do(func() { close(s.ch) })
	return len(p), nil
}

func TestInferInterrupted(t *testing.T) {
	f := newFakeQueen(t)
	deleted := make(chan string, 1)
	f.handle("POST /v2/tasks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(httpx.RequestIDHeader, "task-abc")
		s := sse.NewWriter(w)
		_ = s.Send(start("task-abc"))
		_ = s.Send(tok("Once", 0))
		<-r.Context().Done()
	})
	f.handle("DELETE /v2/tasks/task-abc", func(w http.ResponseWriter, r *http.Request) {
		deleted <- r.URL.Path
		w.WriteHeader(http.StatusNoContent)
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	first := &signalWriter{ch: make(chan struct{})}
	go func() {
		select {
		case <-first.ch:
			cancel() // Ctrl+C after the first token
		case <-time.After(10 * time.Second):
		}
	}()
	r := run(t, ctx, nil, first, "infer", "--queen-url", f.srv.URL, "--model", "file:/m.gguf", "--prompt", "hi")
	assert.Equal(t, ExitInterrupted, r.code, r.stderr)
	assert.Equal(t, "Once\n", r.stdout)
	assert.True(t, strings.HasSuffix(r.stderr, "Canceled.\n"), r.stderr)
	select {
	case p := <-deleted:
		assert.Equal(t, "/v2/tasks/task-abc", p)
	default:
		t.Fatal("the task was not cancelled at the queen")
	}
}

func TestInferCannotStartQueen(t *testing.T) {
	// Nobody answers on this loopback address, so the keeper would start a
	// queen, but it does not know its own binary here.
	srv := httptest.NewServer(http.NotFoundHandler())
	url := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	srv.Close()
	r := run(t, t.Context(), nil, nil, "infer", "--queen-url", url, "--model", "file:/m.gguf", "--prompt", "hi")
	assert.Equal(t, ExitFailure, r.code)
	assert.Contains(t, r.stderr, "cannot start a queen", "no binary to start in this test: %s", r.stderr)
}

func TestWorkersCommands(t *testing.T) {
	f := newFakeQueen(t)
	last := time.Now().Add(-42 * time.Second)
	f.handle("GET /v2/workers/list", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, 200, api.WorkerList{Workers: []api.WorkerInfo{
			{ID: "w-aaa", Node: "local", URL: "http://127.0.0.1:8001", ModelRef: "file:/m.gguf", Backend: "cpu", State: "idle", SlotsTotal: 1, SlotsAvailable: 1, LastActivity: last},
			{ID: "w-bbb", Node: "mac", URL: "http://mac:8001", ModelRef: "hf:org/repo", Backend: "metal", State: "busy", SlotsTotal: 2, SlotsAvailable: 0, LastActivity: last,
				SlotsBusy: 2, QueueDepth: 3},
		}})
	})
	f.handle("GET /v2/workers/health", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("node") != "local" {
			httpx.WriteError(w, r, api.Errorf(api.CodeNodeNotFound, "no node %s", r.URL.Query().Get("node")))
			return
		}
		httpx.WriteJSON(w, 200, api.NodeHealth{Node: "local", Hive: api.HiveHealth{Status: "alive", Version: "0.1.0", APIVersion: "v1"}, HiveURL: "http://127.0.0.1:9200",
			Workers: []api.WorkerInfo{{ID: "w-aaa", State: "idle", SlotsTotal: 1, SlotsAvailable: 1}}})
	})
	f.handle("POST /v2/workers/shutdown", func(w http.ResponseWriter, r *http.Request) {
		var req api.WorkerShutdownRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		if req.WorkerID != "w-aaa" {
			httpx.WriteError(w, r, api.Errorf(api.CodeWorkerNotFound, "no worker %s", req.WorkerID))
			return
		}
		httpx.WriteJSON(w, 200, struct{}{})
	})
	q := []string{"--queen-url", f.srv.URL}
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   []string
		stderr   string
		jsonList bool
	}{
		{name: "list", args: []string{"workers", "list"}, stdout: []string{"NODE", "SLOTS", "QUEUE", "w-aaa", "local", "idle", "0/1", "42s ago", "w-bbb", "mac", "busy", "2/2    3", "metal:0"}},
		{name: "list json", args: []string{"workers", "list", "--json"}, jsonList: true},
		{name: "health", args: []string{"workers", "health", "--node", "local"}, stdout: []string{"Node local: hive alive (version 0.1.0, api v1) at http://127.0.0.1:9200", "w-aaa"}},
		{name: "health unknown node", args: []string{"workers", "health", "--node", "gpu"}, code: 1, stderr: "rbee workers: no node gpu"},
		{name: "health without node", args: []string{"workers", "health"}, code: 2, stderr: "--node is required"},
		{name: "health bad node", args: []string{"workers", "health", "--node", "a b"}, code: 2, stderr: "--node"},
		{name: "shutdown", args: []string{"workers", "shutdown", "--id", "w-aaa"}, stdout: []string{"Worker w-aaa stopped."}},
		{name: "shutdown unknown", args: []string{"workers", "shutdown", "--id", "w-zzz"}, code: 1, stderr: "no worker w-zzz"},
		{name: "shutdown bad id", args: []string{"workers", "shutdown", "--id", "../x"}, code: 2, stderr: "--id"},
		{name: "no verb", args: []string{"workers"}, code: 2, stderr: "a verb is required"},
		{name: "unknown verb", args: []string{"workers", "kill"}, code: 2, stderr: `unknown verb "kill"`},
		{name: "verb help", args: []string{"workers", "list", "--help"}, stdout: []string{"usage: rbee workers list [--json]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.code != ExitUsage && !strings.Contains(tc.name, "help") {
				args = append(append([]string(nil), args...), q...)
			}
			r := run(t, t.Context(), nil, nil, args...)
			assert.Equal(t, tc.code, r.code, r.stderr)
			for _, s := range tc.stdout {
				assert.Contains(t, r.stdout, s)
			}
			if tc.stderr != "" {
				assert.Contains(t, r.stderr, tc.stderr)
			}
			if tc.jsonList {
				var l api.WorkerList
				require.NoError(t, json.Unmarshal([]byte(r.stdout), &l))
				require.Len(t, l.Workers, 2)
				assert.Equal(t, "mac", l.Workers[1].Node)
				assert.Equal(t, 2, l.Workers[1].SlotsBusy)
				assert.Equal(t, 3, l.Workers[1].QueueDepth)
				assert.Contains(t, r.stdout, `"slots_busy": 2`)
				assert.Contains(t, r.stdout, `"queue_depth": 3`)
			}
		})
	}
}

func TestSetupCommands(t *testing.T) {
	f := newFakeQueen(t)
	nodes := []api.Node{{Name: "mac", SSHHost: "mac.home", SSHUser: "vince", SSHPort: 22, Status: "reachable", LastConnectedUnix: time.Now().Add(-3 * time.Minute).Unix(), InstallPath: "/home/vince/rbee", HivePort: 9200}}
	f.handle("GET /v2/registry/beehives/list", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, 200, api.NodeList{Nodes: nodes})
	})
	f.handle("POST /v2/registry/beehives/remove", func(w http.ResponseWriter, r *http.Request) {
		var req api.NodeRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		if req.Name != "mac" {
			httpx.WriteError(w, r, api.Errorf(api.CodeNodeNotFound, "node %s is not in the registry", req.Name))
			return
		}
		httpx.WriteJSON(w, 200, struct{}{})
	})
	q := []string{"--queen-url", f.srv.URL}
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{name: "list", args: []string{"setup", "list-nodes"}, stdout: []string{"mac (vince@mac.home)", "reachable", "3m ago", "/home/vince/rbee"}},
		{name: "list json", args: []string{"setup", "list-nodes", "--json"}, stdout: []string{`"node_name": "mac"`}},
		{name: "remove", args: []string{"setup", "remove-node", "--name", "mac"}, stdout: []string{"Removed node mac."}},
		{name: "remove unknown", args: []string{"setup", "remove-node", "--name", "gpu"}, code: 1, stderr: "node gpu is not in the registry"},
		{name: "remove without name", args: []string{"setup", "remove-node"}, code: 2, stderr: "--name is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, t.Context(), nil, nil, append(append([]string(nil), tc.args...), q...)...)
			assert.Equal(t, tc.code, r.code, r.stderr)
			for _, s := range tc.stdout {
				assert.Contains(t, r.stdout, s)
			}
			if tc.stderr != "" {
				assert.Contains(t, r.stderr, tc.stderr)
			}
		})
	}
	t.Run("empty registry", func(t *testing.T) {
		nodes = nil
		r := run(t, t.Context(), nil, nil, append([]string{"setup", "list-nodes"}, q...)...)
		assert.Equal(t, 0, r.code)
		assert.Contains(t, r.stdout, "No nodes registered")
	})
}

func TestNoQueenRunning(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	r := run(t, t.Context(), map[string]string{"RBEE_QUEEN_URL": url}, nil, "workers", "list")
	assert.Equal(t, ExitFailure, r.code)
	assert.Contains(t, r.stderr, "rbee workers: no queen answers at "+url)
	assert.Contains(t, r.stderr, "hint: start one with 'rbee queen'")
}

// TestWorkersListUnreachable: a node whose hive did not answer is a row of
// its own (state unreachable) among the others, with why and a hint on
// stderr, and is in --json as the queen sent it.
func TestWorkersListUnreachable(t *testing.T) {
	f := newFakeQueen(t)
	down := api.Errorf(api.CodeConnectionTimeout, "lost contact with rbee-hive on gpu while listing its workers: connection refused").
		With("node", "gpu").WithHint("Check if rbee-hive is running on gpu (rbee workers health --node gpu)")
	list := api.WorkerList{
		Workers: []api.WorkerInfo{
			{ID: "w-aaa", Node: "local", URL: "http://127.0.0.1:8001", ModelRef: "file:/m.gguf", Backend: "cpu", State: "idle", SlotsTotal: 1, SlotsAvailable: 1},
			{ID: "w-bbb", Node: "mac", URL: "http://mac:8001", ModelRef: "hf:org/repo", Backend: "metal", State: "busy", SlotsTotal: 2},
		},
		Unreachable: []api.UnreachableNode{{Node: "gpu", Error: down}, {Node: "zeta", Error: api.Errorf(api.CodeSSHConnectionFailed, "ssh to zeta timed out")}},
	}
	f.handle("GET /v2/workers/list", func(w http.ResponseWriter, r *http.Request) { httpx.WriteJSON(w, 200, list) })

	r := run(t, t.Context(), nil, nil, "workers", "list", "--queen-url", f.srv.URL)
	assert.Equal(t, ExitOK, r.code, r.stderr)
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	require.Len(t, lines, 5, r.stdout)
	var nodes, states []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		nodes, states = append(nodes, f[0]), append(states, f[4])
	}
	assert.Equal(t, []string{"gpu", "local", "mac", "zeta"}, nodes, "rows in node order")
	assert.Equal(t, []string{"unreachable", "idle", "busy", "unreachable"}, states)
	assert.Regexp(t, `^gpu\s+-\s+-\s+-\s+unreachable\s+-\s+-\s+-\s+-$`, lines[1])
	assert.Contains(t, r.stderr, "node gpu is unreachable: lost contact with rbee-hive on gpu while listing its workers: connection refused (CONNECTION_TIMEOUT)\n")
	assert.Contains(t, r.stderr, "hint: Check if rbee-hive is running on gpu (rbee workers health --node gpu)\n")
	assert.Contains(t, r.stderr, "node zeta is unreachable: ssh to zeta timed out (SSH_CONNECTION_FAILED)\n")

	r = run(t, t.Context(), nil, nil, "workers", "list", "--json", "--queen-url", f.srv.URL)
	assert.Equal(t, ExitOK, r.code, r.stderr)
	var got api.WorkerList
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got), r.stdout)
	assert.Len(t, got.Workers, 2)
	require.Len(t, got.Unreachable, 2)
	assert.Equal(t, "gpu", got.Unreachable[0].Node)
	assert.Equal(t, api.CodeConnectionTimeout, got.Unreachable[0].Error.Code)
	assert.Equal(t, "Check if rbee-hive is running on gpu (rbee workers health --node gpu)", got.Unreachable[0].Error.Hint())

	// Only unreachable nodes: no "No workers." that would hide them.
	list.Workers = nil
	r = run(t, t.Context(), nil, nil, "workers", "list", "--queen-url", f.srv.URL)
	assert.Equal(t, ExitOK, r.code, r.stderr)
	assert.NotContains(t, r.stdout, "No workers.")
	assert.Contains(t, r.stdout, "unreachable")
}

// TestInferHonoursRetryAfter: a 503 ALL_SLOTS_BUSY with Retry-After from
// the queen (its queue was full) is retried, no sooner than the header
// says, as the queen's own clock shows.
func TestInferHonoursRetryAfter(t *testing.T) {
	f := newFakeQueen(t)
	var mu sync.Mutex
	var at []time.Time
	f.handle("POST /v2/tasks", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		n := len(at)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			httpx.WriteError(w, r, api.Errorf(api.CodeAllSlotsBusy, "the queen's queue is full: 256 tasks are waiting for a free slot").
				WithHint("try again later"))
			return
		}
		w.Header().Set(httpx.RequestIDHeader, "task-abc")
		s := sse.NewWriter(w)
		_ = s.Send(start("task-abc"))
		_ = s.Send(tok("Hi", 0))
		_ = s.Send(api.Event{Kind: api.KindDone, Done: &api.Done{Done: true, TotalTokens: 1, StopReason: "max_tokens"}})
		_ = s.Close()
	})
	r := run(t, t.Context(), nil, nil, "infer", "--queen-url", f.srv.URL, "--model", "file:/m.gguf", "--prompt", "hi")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "Hi\n", r.stdout)
	assert.Regexp(t, `\[keeper\] the queen's queue is full: 256 tasks are waiting for a free slot; retrying in 1(\.[0-2])?s \(retry 1/3\)\n`, r.stderr)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, at, 2)
	assert.GreaterOrEqual(t, at[1].Sub(at[0]), time.Second, "the keeper waited at least Retry-After")
}

// TestInferBusyRetriesRunOut: a task the queue keeps turning away (here in
// its stream, as after a queue timeout) is tried 1 + 3 times, then fails
// with the queen's message and hint; --json shows the retries as keeper
// narration and the last error only.
func TestInferBusyRetriesRunOut(t *testing.T) {
	f := newFakeQueen(t)
	f.stream([]api.Event{start("task-abc"), {Kind: api.KindError, Error: api.Errorf(api.CodeAllSlotsBusy, "no slot of worker w-1 on local freed within 5m0s").
		With(api.DetailRetryAfter, 0.01).WithHint("try again later, use another node, or raise queue_timeout")}}, false)
	env := &Env{Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: func(string) string { return "" }}
	qf := &queenFlags{url: f.srv.URL}
	q, err := qf.client(env)
	require.NoError(t, err)
	for _, asJSON := range []bool{false, true} {
		out := &bytes.Buffer{}
		errb := &bytes.Buffer{}
		p := &inferPrinter{env: &Env{Stdout: out, Stderr: errb}, json: asJSON}
		before := len(f.requests())
		err := p.runRetrying(t.Context(), q, api.TaskRequest{Node: "local", Model: "file:/m.gguf", Prompt: "hi"},
			[]time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}, func() float64 { return 0.5 })
		require.ErrorIs(t, err, api.ErrAllSlotsBusy)
		assert.Equal(t, 4, len(f.requests())-before, "one try and three retries")
		if !asJSON {
			assert.Equal(t, 3, strings.Count(errb.String(), "[keeper] no slot of worker w-1 on local freed within 5m0s; retrying in"), errb.String())
			continue
		}
		var retries, errs int
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			switch {
			case strings.Contains(line, `"action":"busy_retry"`):
				retries++
			case strings.HasPrefix(line, `{"event":"error"`):
				errs++
			}
		}
		assert.Equal(t, 3, retries, out.String())
		assert.Equal(t, 1, errs, "only the last error ends --json")
	}
}

func TestBusyRetryWait(t *testing.T) {
	assert.Equal(t, 800*time.Millisecond, busyRetryWait(time.Second, 0, 0), "-20 %")
	assert.Equal(t, time.Second, busyRetryWait(time.Second, 0, 0.5))
	assert.Equal(t, 1200*time.Millisecond, busyRetryWait(time.Second, 0, 1), "+20 %")
	assert.Equal(t, 3*time.Second, busyRetryWait(time.Second, 3*time.Second, 0.7), "never before Retry-After")
	assert.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, busyRetryDelays)
}
