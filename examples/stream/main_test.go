package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

func TestStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "POST /v2/tasks", r.Method+" "+r.URL.Path)
		w.Header().Set(httpx.RequestIDHeader, "task-1")
		s := sse.NewWriter(w)
		start := api.NarrationEvent(api.ActorQueen, "task_start", "Task task-1 on local")
		start.Narration.RequestID = "task-1"
		_ = s.Send(start)
		_ = s.Send(api.Event{Kind: api.KindProgress, Progress: &api.Progress{Stage: api.StageLoading, LayersLoaded: 2, LayersTotal: 2}})
		_ = s.Send(api.Event{Kind: api.KindToken, Token: &api.Token{Token: "Once"}})
		_ = s.Send(api.Event{Kind: api.KindToken, Token: &api.Token{Token: " upon", Index: 1}})
		_ = s.Send(api.Event{Kind: api.KindDone, Done: &api.Done{Done: true, TotalTokens: 2, DurationMs: 5, StopReason: "max_tokens"}})
		_ = s.Close()
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"--queen-url", srv.URL, "--model", "file:/m.gguf"}, &out, &errb)
	require.NoError(t, err)
	assert.Equal(t, "Once upon\n", out.String())
	assert.Equal(t, "Task task-1 on local\nloading 2/2 layers\n2 tokens in 5 ms (max_tokens)\n", errb.String())
}

func TestStreamNeedsModel(t *testing.T) {
	var out, errb bytes.Buffer
	assert.ErrorContains(t, run(t.Context(), nil, &out, &errb), "--model is required")
}

func TestStreamCancelsOnInterrupt(t *testing.T) {
	var mu sync.Mutex
	var deleted string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			mu.Lock()
			deleted = r.URL.Path
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set(httpx.RequestIDHeader, "task-9")
		s := sse.NewWriter(w)
		_ = s.Send(api.Event{Kind: api.KindToken, Token: &api.Token{Token: "x"}})
		<-r.Context().Done()
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	err := run(ctx, []string{"--queen-url", srv.URL, "--model", "file:/m.gguf"}, &out, &errb)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, "/v2/tasks/task-9", deleted)
}
