package rbee

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

func inProcessClient(h http.Handler) *Client {
	return &Client{BaseURL: "http://in-process", HTTPClient: &http.Client{Transport: &handlerTransport{handler: h}}}
}

func TestHandlerTransportJSON(t *testing.T) {
	c := inProcessClient(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "/health", r.URL.Path)
		assert.Equal(t, "/health", r.RequestURI)
		assert.Equal(t, "in-process", r.Host)
		httpx.WriteJSON(w, http.StatusOK, api.Health{Status: "ok", Version: "9.9.9"})
	}))
	h, err := c.Health(t.Context())
	require.NoError(t, err)
	assert.Equal(t, &Health{Status: "ok", Version: "9.9.9"}, h)
}

func TestHandlerTransportStatuses(t *testing.T) {
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		wantStatus int
		wantBody   string
		wantErr    string
	}{
		{"nothing written is 200", func(w http.ResponseWriter, r *http.Request) {}, 200, "", ""},
		{"status and body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-A", "1")
			w.WriteHeader(http.StatusTeapot)
			io.WriteString(w, "short and stout")
			w.Header().Set("X-B", "late") // too late: not sent
		}, http.StatusTeapot, "short and stout", ""},
		{"reads the request body", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			io.WriteString(w, strings.ToUpper(string(b)))
		}, 200, "PING", ""},
		{"panic before answering", func(w http.ResponseWriter, r *http.Request) { panic("boom") }, 0, "", "panicked: boom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hc := &http.Client{Transport: &handlerTransport{handler: tc.handler}}
			resp, err := hc.Post("http://x/echo", "text/plain", strings.NewReader("ping"))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tc.wantStatus, resp.StatusCode)
			assert.Equal(t, tc.wantBody, string(b))
			if tc.wantStatus == http.StatusTeapot {
				assert.Equal(t, "1", resp.Header.Get("X-A"))
				assert.Empty(t, resp.Header.Get("X-B"))
			}
		})
	}
}

// TestHandlerTransportStreams checks that events reach the client as the
// handler flushes them (the handler waits for the client to have seen the
// first token before it sends the second), and that leaving the loop hangs
// up on the handler.
func TestHandlerTransportStreams(t *testing.T) {
	seen := make(chan struct{})
	hungUp := make(chan struct{})
	c := inProcessClient(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(httpx.RequestIDHeader, "task-1")
		s := sse.NewWriter(w)
		_ = s.Send(api.Event{Kind: api.KindToken, Token: &api.Token{Token: "a"}})
		select {
		case <-seen:
		case <-time.After(10 * time.Second):
			t.Error("the client never saw the first token: the stream is buffered")
			return
		}
		_ = s.Send(api.Event{Kind: api.KindToken, Token: &api.Token{Token: "b", Index: 1}})
		<-r.Context().Done()
		for s.Send(api.Event{Kind: api.KindToken, Token: &api.Token{Token: "c"}}) == nil {
		}
		close(hungUp)
	}))
	var got []string
	for ev, err := range c.Infer(t.Context(), TaskRequest{Node: "local", Model: "file:/m.gguf", Prompt: "x"}) {
		require.NoError(t, err)
		if ev.Kind == KindNarration {
			assert.Equal(t, "task-1", ev.Narration.RequestID)
			continue
		}
		got = append(got, ev.Token.Token)
		if len(got) == 1 {
			close(seen)
		} else {
			break
		}
	}
	assert.Equal(t, []string{"a", "b"}, got)
	select {
	case <-hungUp:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not see the client hang up")
	}
}

func TestHandlerTransportCancelledBeforeAnswer(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	c := inProcessClient(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Health(ctx)
	assert.ErrorIs(t, err, ctx.Err())
}
