package rbee_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee"
	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

// fakeQueen records requests and answers with handler.
type fakeQueen struct {
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	Method, Path, Query, Auth string
	Body                      string
}

func (f *fakeQueen) last() recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		return recorded{}
	}
	return f.reqs[len(f.reqs)-1]
}

func newFakeQueen(t *testing.T, h http.HandlerFunc) (*fakeQueen, *rbee.Client) {
	t.Helper()
	f := new(fakeQueen)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), string(b)})
		f.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return f, &rbee.Client{BaseURL: srv.URL, Token: "secret-token-0123456789"}
}

func collect(t *testing.T, seq func(func(rbee.Event, error) bool)) ([]rbee.Event, []error) {
	t.Helper()
	var evs []rbee.Event
	var errs []error
	for ev, err := range seq {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		evs = append(evs, ev)
	}
	return evs, errs
}

func tokenEvent(s string, i int) api.Event {
	return api.Event{Kind: api.KindToken, Token: &api.Token{Token: s, Index: i}}
}

func TestClientJSONCalls(t *testing.T) {
	now := time.Unix(1700000000, 0).UTC()
	tests := []struct {
		name       string
		call       func(ctx context.Context, c *rbee.Client) (any, error)
		answer     any
		wantMethod string
		wantPath   string
		wantQuery  string
		wantBody   string
		want       any
	}{
		{
			name:       "health",
			call:       func(ctx context.Context, c *rbee.Client) (any, error) { return c.Health(ctx) },
			answer:     api.Health{Status: "ok", Version: "0.1.0"},
			wantMethod: "GET", wantPath: "/health",
			want: &rbee.Health{Status: "ok", Version: "0.1.0"},
		},
		{
			name:       "workers",
			call:       func(ctx context.Context, c *rbee.Client) (any, error) { return c.Workers(ctx) },
			answer:     api.WorkerList{Workers: []api.WorkerInfo{{ID: "w-1", Node: "local", State: "idle", SlotsTotal: 1, SlotsAvailable: 1, LastActivity: now}}},
			wantMethod: "GET", wantPath: "/v2/workers/list",
			want: []rbee.WorkerInfo{{ID: "w-1", Node: "local", State: "idle", SlotsTotal: 1, SlotsAvailable: 1, LastActivity: now}},
		},
		{
			name: "queue",
			call: func(ctx context.Context, c *rbee.Client) (any, error) { return c.Queue(ctx) },
			answer: api.QueueStatus{Depth: 1, MaxQueue: 256, TimeoutMs: 300000,
				Queues:  []api.Queue{{Node: "local", Model: "file:/m.gguf", Tasks: []api.QueuedTask{{ID: "task-2", Position: 1, WorkerID: "w-1", WaitingSince: now}}}},
				Workers: []api.WorkerSlots{{Node: "local", WorkerID: "w-1", Model: "file:/m.gguf", SlotsBusy: 1, SlotsTotal: 1, QueueDepth: 1}}},
			wantMethod: "GET", wantPath: "/v2/queue",
			want: &rbee.QueueStatus{Depth: 1, MaxQueue: 256, TimeoutMs: 300000,
				Queues:  []rbee.Queue{{Node: "local", Model: "file:/m.gguf", Tasks: []rbee.QueuedTask{{ID: "task-2", Position: 1, WorkerID: "w-1", WaitingSince: now}}}},
				Workers: []rbee.WorkerSlots{{Node: "local", WorkerID: "w-1", Model: "file:/m.gguf", SlotsBusy: 1, SlotsTotal: 1, QueueDepth: 1}}},
		},
		{
			name:       "empty queue has empty slices",
			call:       func(ctx context.Context, c *rbee.Client) (any, error) { return c.Queue(ctx) },
			answer:     map[string]any{"depth": 0, "max_queue": 0},
			wantMethod: "GET", wantPath: "/v2/queue",
			want: &rbee.QueueStatus{Queues: []rbee.Queue{}, Workers: []rbee.WorkerSlots{}},
		},
		{
			name:       "workers empty is an empty slice",
			call:       func(ctx context.Context, c *rbee.Client) (any, error) { return c.Workers(ctx) },
			answer:     map[string]any{"workers": nil},
			wantMethod: "GET", wantPath: "/v2/workers/list",
			want: []rbee.WorkerInfo{},
		},
		{
			name: "worker list with unreachable nodes",
			call: func(ctx context.Context, c *rbee.Client) (any, error) { return c.WorkerList(ctx) },
			answer: api.WorkerList{Unreachable: []api.UnreachableNode{{Node: "mac",
				Error: api.Errorf(api.CodeConnectionTimeout, "lost contact with rbee-hive on mac").With("node", "mac")}}},
			wantMethod: "GET", wantPath: "/v2/workers/list",
			want: &rbee.WorkerList{Workers: []rbee.WorkerInfo{}, Unreachable: []rbee.UnreachableNode{{Node: "mac",
				Error: &rbee.Error{Code: rbee.ErrConnectionTimeout.Code, Message: "lost contact with rbee-hive on mac", Details: map[string]any{"node": "mac"}}}}},
		},
		{
			name:       "workers health",
			call:       func(ctx context.Context, c *rbee.Client) (any, error) { return c.WorkersHealth(ctx, "gpu-box") },
			answer:     api.NodeHealth{Node: "gpu-box", Hive: api.HiveHealth{Status: "alive", Version: "0.1.0", APIVersion: "v1"}},
			wantMethod: "GET", wantPath: "/v2/workers/health", wantQuery: "node=gpu-box",
			want: &rbee.NodeHealth{Node: "gpu-box", Hive: rbee.HiveHealth{Status: "alive", Version: "0.1.0", APIVersion: "v1"}},
		},
		{
			name:       "shutdown worker",
			call:       func(ctx context.Context, c *rbee.Client) (any, error) { return nil, c.ShutdownWorker(ctx, "w-abc") },
			answer:     struct{}{},
			wantMethod: "POST", wantPath: "/v2/workers/shutdown", wantBody: `{"worker_id":"w-abc"}`,
		},
		{
			name:       "nodes",
			call:       func(ctx context.Context, c *rbee.Client) (any, error) { return c.Nodes(ctx) },
			answer:     api.NodeList{Nodes: []api.Node{{Name: "mac", SSHHost: "mac.home", Status: "reachable"}}},
			wantMethod: "GET", wantPath: "/v2/registry/beehives/list",
			want: []rbee.Node{{Name: "mac", SSHHost: "mac.home", Status: "reachable"}},
		},
		{
			name:       "remove node",
			call:       func(ctx context.Context, c *rbee.Client) (any, error) { return nil, c.RemoveNode(ctx, "mac") },
			answer:     struct{}{},
			wantMethod: "POST", wantPath: "/v2/registry/beehives/remove", wantBody: `{"node_name":"mac"}`,
		},
		{
			name:       "cancel task",
			call:       func(ctx context.Context, c *rbee.Client) (any, error) { return nil, c.CancelTask(ctx, "task-1f") },
			wantMethod: "DELETE", wantPath: "/v2/tasks/task-1f",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, c := newFakeQueen(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.answer == nil {
					w.WriteHeader(http.StatusNoContent)
					return
				}
				httpx.WriteJSON(w, http.StatusOK, tc.answer)
			})
			got, err := tc.call(t.Context(), c)
			require.NoError(t, err)
			r := f.last()
			assert.Equal(t, tc.wantMethod, r.Method)
			assert.Equal(t, tc.wantPath, r.Path)
			assert.Equal(t, tc.wantQuery, r.Query)
			assert.Equal(t, "Bearer secret-token-0123456789", r.Auth)
			if tc.wantBody != "" {
				assert.JSONEq(t, tc.wantBody, r.Body)
			}
			if tc.want != nil {
				assert.Equal(t, tc.want, got)
			}
		})
	}
}

func TestClientRefusesBadArguments(t *testing.T) {
	f, c := newFakeQueen(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	tests := []struct {
		name  string
		call  func(ctx context.Context) error
		field string
	}{
		{"node name", func(ctx context.Context) error { _, err := c.WorkersHealth(ctx, "Bad Node"); return err }, "node"},
		{"empty node", func(ctx context.Context) error { return c.RemoveNode(ctx, "") }, "node"},
		{"worker id", func(ctx context.Context) error { return c.ShutdownWorker(ctx, "../etc") }, "worker_id"},
		{"task id", func(ctx context.Context) error { return c.CancelTask(ctx, "") }, "task_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(t.Context())
			require.ErrorIs(t, err, rbee.ErrInvalidRequest)
			var e *rbee.Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, tc.field, e.Details["field"])
		})
	}
	assert.Empty(t, f.reqs, "nothing reaches the queen")
}

func TestClientErrors(t *testing.T) {
	_, c := newFakeQueen(t, func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, api.Errorf(api.CodeWorkerNotFound, "no worker w-x").WithHint("rbee workers list"))
	})
	err := c.ShutdownWorker(t.Context(), "w-x")
	require.Error(t, err)
	assert.ErrorIs(t, err, rbee.ErrWorkerNotFound)
	assert.NotErrorIs(t, err, rbee.ErrNodeNotFound)
	var e *rbee.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "no worker w-x", e.Message)
	assert.Equal(t, "rbee workers list", e.Hint())

	t.Run("unreachable queen", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		c := &rbee.Client{BaseURL: url}
		_, err := c.Health(t.Context())
		require.Error(t, err)
		var e *rbee.Error
		assert.False(t, errors.As(err, &e), "a network failure is not an rbee error: %v", err)
		assert.Contains(t, err.Error(), url)
	})
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := c.Workers(ctx)
		assert.ErrorIs(t, err, context.Canceled)
	})
}

// streamHandler answers POST /v2/tasks with the events, as a queen would.
func streamHandler(taskID string, events []api.Event, end func(*sse.Writer)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v2/tasks" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set(httpx.RequestIDHeader, taskID)
		s := sse.NewWriter(w)
		for _, ev := range events {
			_ = s.Send(ev)
		}
		end(s)
	}
}

func closeStream(s *sse.Writer) { _ = s.Close() }

func TestInfer(t *testing.T) {
	start := api.NarrationEvent(api.ActorQueen, rbee.ActionTaskStart, "Task accepted")
	start.Narration.RequestID = "task-42"
	spawn := api.NarrationEvent(api.ActorQueen, "spawn", "Spawning a worker")
	load := api.Event{Kind: api.KindProgress, Progress: &api.Progress{Stage: api.StageLoading, LayersLoaded: 1, LayersTotal: 2}}
	done := api.Event{Kind: api.KindDone, Done: &api.Done{Done: true, TotalTokens: 2, StopReason: api.StopMaxTokens}}
	crash := api.Event{Kind: api.KindError, Error: api.Errorf(api.CodeWorkerCrashed, "stream closed unexpectedly").With("tokens_generated", 1)}

	tests := []struct {
		name      string
		events    []api.Event
		end       func(*sse.Writer)
		wantKinds []rbee.EventKind
		wantErr   error
		wantText  string
	}{
		{
			name:      "full stream",
			events:    []api.Event{start, spawn, load, tokenEvent("Once", 0), tokenEvent(" upon", 1), done},
			end:       closeStream,
			wantKinds: []rbee.EventKind{rbee.KindNarration, rbee.KindNarration, rbee.KindProgress, rbee.KindToken, rbee.KindToken, rbee.KindDone},
			wantText:  "Once upon",
		},
		{
			name:      "queen without a task_start narration",
			events:    []api.Event{tokenEvent("Hi", 0), done},
			end:       closeStream,
			wantKinds: []rbee.EventKind{rbee.KindNarration, rbee.KindToken, rbee.KindDone},
			wantText:  "Hi",
		},
		{
			name:      "error event ends the stream with its error",
			events:    []api.Event{start, tokenEvent("Once", 0), crash, tokenEvent("never", 1)},
			end:       closeStream,
			wantKinds: []rbee.EventKind{rbee.KindNarration, rbee.KindToken},
			wantErr:   rbee.ErrWorkerCrashed,
			wantText:  "Once",
		},
		{
			name:      "stream broken off",
			events:    []api.Event{start, tokenEvent("Once", 0)},
			end:       func(*sse.Writer) {},
			wantKinds: []rbee.EventKind{rbee.KindNarration, rbee.KindToken},
			wantErr:   rbee.ErrStreamClosed,
			wantText:  "Once",
		},
		{
			name:      "end marker without a done event",
			events:    []api.Event{start},
			end:       closeStream,
			wantKinds: []rbee.EventKind{rbee.KindNarration},
			wantErr:   rbee.ErrStreamClosed,
		},
		{
			name:      "events after done are not yielded",
			events:    []api.Event{start, done, tokenEvent("late", 0)},
			end:       closeStream,
			wantKinds: []rbee.EventKind{rbee.KindNarration, rbee.KindDone},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, c := newFakeQueen(t, streamHandler("task-42", tc.events, tc.end))
			req := rbee.TaskRequest{Node: "local", Model: "file:/m.gguf", Prompt: "Once", SamplingParams: rbee.SamplingParams{MaxTokens: 2}}
			evs, errs := collect(t, c.Infer(t.Context(), req))
			var kinds []rbee.EventKind
			var text strings.Builder
			for _, ev := range evs {
				kinds = append(kinds, ev.Kind)
				if ev.Kind == rbee.KindToken {
					text.WriteString(ev.Token.Token)
				}
			}
			assert.Equal(t, tc.wantKinds, kinds)
			assert.Equal(t, tc.wantText, text.String())
			require.NotEmpty(t, evs)
			assert.Equal(t, rbee.ActionTaskStart, evs[0].Narration.Action)
			assert.Equal(t, "task-42", evs[0].Narration.RequestID, "the first event names the task")
			if tc.wantErr == nil {
				assert.Empty(t, errs)
			} else {
				require.Len(t, errs, 1, "one error, then the end")
				assert.ErrorIs(t, errs[0], tc.wantErr)
				var e *rbee.Error
				if errors.As(errs[0], &e) {
					assert.Equal(t, "task-42", e.RequestID)
				}
			}
			var sent api.TaskRequest
			require.NoError(t, json.Unmarshal([]byte(f.last().Body), &sent))
			assert.Equal(t, req, sent)
		})
	}
}

func TestInferRefused(t *testing.T) {
	_, c := newFakeQueen(t, func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, api.Errorf(api.CodeNodeNotFound, "no node gpu").WithHint("rbee setup add-node --name gpu"))
	})
	evs, errs := collect(t, c.Infer(t.Context(), rbee.TaskRequest{Node: "gpu", Model: "file:/m.gguf", Prompt: "x"}))
	assert.Empty(t, evs)
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], rbee.ErrNodeNotFound)
}

// TestRetryAfter: a 503 ALL_SLOTS_BUSY of the queen carries its
// Retry-After to the caller, from the header of a plain answer or from the
// details of an error event.
func TestRetryAfter(t *testing.T) {
	t.Run("header", func(t *testing.T) {
		_, c := newFakeQueen(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			httpx.WriteJSON(w, http.StatusServiceUnavailable, api.Envelope{Error: api.Errorf(api.CodeAllSlotsBusy, "the queue is full")})
		})
		_, errs := collect(t, c.Infer(t.Context(), rbee.TaskRequest{Node: "local", Model: "file:/m.gguf", Prompt: "x"}))
		require.Len(t, errs, 1)
		assert.ErrorIs(t, errs[0], rbee.ErrAllSlotsBusy)
		var e *rbee.Error
		require.ErrorAs(t, errs[0], &e)
		assert.Equal(t, 7*time.Second, e.RetryAfter())
	})
	t.Run("queen's own answer", func(t *testing.T) {
		_, c := newFakeQueen(t, func(w http.ResponseWriter, r *http.Request) {
			httpx.WriteError(w, r, api.Errorf(api.CodeAllSlotsBusy, "the queue is full").With(api.DetailRetryAfter, 3))
		})
		_, err := c.Queue(t.Context())
		var e *rbee.Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, 3*time.Second, e.RetryAfter())
	})
	t.Run("event", func(t *testing.T) {
		_, c := newFakeQueen(t, streamHandler("task-1", nil, func(s *sse.Writer) {
			_ = s.Error(api.Errorf(api.CodeAllSlotsBusy, "waited too long").With(api.DetailRetryAfter, 2))
		}))
		_, errs := collect(t, c.Infer(t.Context(), rbee.TaskRequest{Node: "local", Model: "file:/m.gguf", Prompt: "x"}))
		require.Len(t, errs, 1)
		var e *rbee.Error
		require.ErrorAs(t, errs[0], &e)
		assert.Equal(t, 2*time.Second, e.RetryAfter())
	})
	t.Run("none", func(t *testing.T) {
		assert.Zero(t, api.Errorf(api.CodeAllSlotsBusy, "busy").RetryAfter())
		assert.Zero(t, api.Errorf(api.CodeAllSlotsBusy, "busy").With(api.DetailRetryAfter, "soon").RetryAfter())
	})
}

func TestInferStopsWithContext(t *testing.T) {
	gone := make(chan struct{})
	_, c := newFakeQueen(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(httpx.RequestIDHeader, "task-7")
		s := sse.NewWriter(w)
		for i := 0; ; i++ {
			if s.Send(tokenEvent("x", i)) != nil {
				break
			}
			select {
			case <-r.Context().Done():
				close(gone)
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		close(gone)
	})

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var tokens int
		var errs []error
		for ev, err := range c.Infer(ctx, rbee.TaskRequest{Node: "local", Model: "file:/m.gguf", Prompt: "x"}) {
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if ev.Kind == rbee.KindToken {
				if tokens++; tokens == 3 {
					cancel()
				}
			}
		}
		require.Len(t, errs, 1)
		assert.ErrorIs(t, errs[0], context.Canceled)
		select {
		case <-gone:
		case <-time.After(10 * time.Second):
			t.Fatal("the queen did not see the client go away")
		}
	})
}

func TestInferBreakClosesStream(t *testing.T) {
	gone := make(chan struct{})
	_, c := newFakeQueen(t, func(w http.ResponseWriter, r *http.Request) {
		s := sse.NewWriter(w)
		_ = s.Send(tokenEvent("x", 0))
		<-r.Context().Done()
		close(gone)
	})
	for ev, err := range c.Infer(t.Context(), rbee.TaskRequest{Node: "local", Model: "file:/m.gguf", Prompt: "x"}) {
		require.NoError(t, err)
		if ev.Kind == rbee.KindToken {
			break
		}
	}
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("breaking out of the loop did not close the stream")
	}
}

func TestZeroClientUsesDefaultURL(t *testing.T) {
	// A zero Client must aim at DefaultURL; an unreachable port there just
	// fails, and the error names the address.
	var c rbee.Client
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Health(ctx)
	if err == nil {
		t.Skip("a queen runs on the default port of this machine")
	}
	var e *rbee.Error
	if !errors.As(err, &e) && !errors.Is(err, context.DeadlineExceeded) {
		assert.Contains(t, err.Error(), rbee.DefaultURL)
	}
}
