package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"iter"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
	"rbee/internal/synth"
)

// testToken is the bearer token of the test workers.
const testToken = "test-token-0123456789abcdef"

// writeModel writes a tiny random llama model and returns its path.
func writeModel(t testing.TB, quant string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tiny-"+quant+".gguf")
	require.NoError(t, synth.Write(path, synth.Tiny(quant)))
	return path
}

// testWorker is a worker running in the test process on a loopback port.
type testWorker struct {
	srv    *Server
	url    string
	cancel context.CancelFunc
	done   chan error // Run's result
	client *httpx.Client
}

// startWorker runs a worker with cfg (model, token and logger defaulted)
// on a fresh loopback port until the test ends.
func startWorker(t *testing.T, cfg Config) *testWorker {
	t.Helper()
	if cfg.ModelPath == "" {
		cfg.ModelPath = writeModel(t, "Q8_0")
	}
	if cfg.APIKey == "" {
		cfg.APIKey = testToken
	}
	if cfg.WorkerID == "" {
		cfg.WorkerID = "w-test"
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "worker", Level: hclog.Warn, Output: testWriter{t}})
	}
	if cfg.Threads == 0 {
		cfg.Threads = 1
	}
	if cfg.Slots == 0 {
		cfg.Slots = 1 // the tests that need more say so
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg.Listener = ln
	srv, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	tw := &testWorker{srv: srv, url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	tw.client = &httpx.Client{BaseURL: tw.url, Token: cfg.APIKey}
	go func() { tw.done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-tw.done:
			if err != nil {
				t.Logf("worker Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("worker did not stop within 20 s")
		}
	})
	return tw
}

// testWriter sends log lines to t.Log (until the test ends).
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	defer func() { _ = recover() }() // a log line after the test ended
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// wait returns Run's result (failing the test after 20 s).
func (tw *testWorker) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-tw.done:
		tw.done <- err // for the cleanup
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("Run did not return within 20 s")
		return nil
	}
}

// progress reads the whole loading progress stream.
func (tw *testWorker) progress(t *testing.T) []api.Event {
	t.Helper()
	resp, err := tw.client.Stream(t.Context(), http.MethodGet, "/v1/loading/progress", nil, nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	var evs []api.Event
	for ev, err := range sse.Read(resp.Body) {
		require.NoError(t, err)
		evs = append(evs, ev)
	}
	return evs
}

// waitReady follows the progress stream until the model is ready.
func (tw *testWorker) waitReady(t *testing.T) {
	t.Helper()
	evs := tw.progress(t)
	require.NotEmpty(t, evs)
	last := evs[len(evs)-1]
	require.Equal(t, api.KindProgress, last.Kind, "last event: %+v", last)
	require.Equal(t, api.StageReady, last.Progress.Stage)
}

func (tw *testWorker) health(t *testing.T) api.WorkerHealth {
	t.Helper()
	var h api.WorkerHealth
	require.NoError(t, (&httpx.Client{BaseURL: tw.url}).Do(t.Context(), http.MethodGet, "/v1/health", nil, &h))
	return h
}

func (tw *testWorker) ready(t *testing.T) api.ReadyResponse {
	t.Helper()
	var r api.ReadyResponse
	require.NoError(t, tw.client.Do(t.Context(), http.MethodGet, "/v1/ready", nil, &r))
	return r
}

// stream is an open inference stream.
type stream struct {
	resp *http.Response
	next func() (api.Event, error, bool)
	stop func()
}

// openStream starts an inference and returns its stream.
func (tw *testWorker) openStream(t *testing.T, req api.InferenceRequest, requestID string) *stream {
	t.Helper()
	h := http.Header{}
	if requestID != "" {
		h.Set(httpx.RequestIDHeader, requestID)
	}
	resp, err := tw.client.Stream(t.Context(), http.MethodPost, "/v1/inference", req, h)
	require.NoError(t, err)
	return pullStream(t, resp)
}

// pullStream reads an SSE response event by event; the test's cleanup closes it.
func pullStream(t *testing.T, resp *http.Response) *stream {
	s := &stream{resp: resp}
	s.next, s.stop = iter.Pull2(sse.Read(resp.Body))
	t.Cleanup(func() { s.stop(); resp.Body.Close() })
	return s
}

// event reads the next event, failing on a stream error or end.
func (s *stream) event(t *testing.T) api.Event {
	t.Helper()
	ev, err, ok := s.next()
	require.True(t, ok, "stream ended early")
	require.NoError(t, err)
	return ev
}

// rest reads the remaining events until [DONE].
func (s *stream) rest(t *testing.T) []api.Event {
	t.Helper()
	var evs []api.Event
	for {
		ev, err, ok := s.next()
		if !ok {
			return evs
		}
		require.NoError(t, err)
		evs = append(evs, ev)
	}
}

// infer runs a streaming inference to its end and returns the events.
func (tw *testWorker) infer(t *testing.T, req api.InferenceRequest) []api.Event {
	t.Helper()
	return tw.openStream(t, req, "").rest(t)
}

// text joins the token events and returns the done event.
func text(t *testing.T, evs []api.Event) (string, *api.Done) {
	t.Helper()
	var b strings.Builder
	var done *api.Done
	for _, ev := range evs {
		switch ev.Kind {
		case api.KindToken:
			require.Nil(t, done, "token after done")
			b.WriteString(ev.Token.Token)
		case api.KindDone:
			done = ev.Done
		case api.KindError:
			t.Fatalf("error event: %+v", ev.Error)
		}
	}
	require.NotNil(t, done, "no done event in %+v", evs)
	return b.String(), done
}

// post sends a raw body to the worker and returns the status and the error
// envelope (nil for a 2xx answer).
func (tw *testWorker) post(t *testing.T, path, token string, body []byte) (int, *api.Error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, tw.url+path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode/100 == 2 {
		return resp.StatusCode, nil
	}
	var env api.Envelope
	require.NoError(t, json.Unmarshal(b, &env), "body %s", b)
	require.NotNil(t, env.Error)
	return resp.StatusCode, env.Error
}

// apiError returns err as *api.Error, failing the test if it is not one.
func apiError(t *testing.T, err error) *api.Error {
	t.Helper()
	var e *api.Error
	require.True(t, errors.As(err, &e), "not an *api.Error: %v", err)
	return e
}

func ptr[T any](v T) *T { return &v }
