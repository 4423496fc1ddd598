package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// oaiServer is an OpenAI-compatible completion server for the tests: it
// streams the chunks a test chooses, and records the requests it got.
type oaiServer struct {
	t   *testing.T
	srv *httptest.Server
	// answer serves one request; n counts the requests from 0.
	answer func(w http.ResponseWriter, r *http.Request, n int, body map[string]any)

	count  atomic.Int64
	mu     sync.Mutex
	bodies []map[string]any
	paths  []string
	auth   []string
	conns  map[string]bool // remote addresses
}

func newOAIServer(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, n int, body map[string]any)) *oaiServer {
	s := &oaiServer{t: t, answer: answer, conns: map[string]bool{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		n := int(s.count.Add(1) - 1)
		s.mu.Lock()
		s.bodies = append(s.bodies, body)
		s.paths = append(s.paths, r.Method+" "+r.URL.Path)
		s.auth = append(s.auth, r.Header.Get("Authorization"))
		s.conns[r.RemoteAddr] = true
		s.mu.Unlock()
		s.answer(w, r, n, body)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// stream writes SSE "data:" events, flushing each.
type stream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func startStream(w http.ResponseWriter) *stream {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	return &stream{w: w, rc: http.NewResponseController(w)}
}

func (s *stream) data(v any) {
	var b []byte
	if str, ok := v.(string); ok {
		b = []byte(str)
	} else {
		b, _ = json.Marshal(v)
	}
	fmt.Fprintf(s.w, "data: %s\n\n", b)
	_ = s.rc.Flush()
}

func text(s string) map[string]any {
	return map[string]any{"object": "text_completion", "choices": []any{map[string]any{"index": 0, "text": s, "finish_reason": nil}}}
}

func finish() map[string]any {
	return map[string]any{"object": "text_completion", "choices": []any{map[string]any{"index": 0, "text": "", "finish_reason": "length"}}}
}

func usage(prompt, completion int) map[string]any {
	return map[string]any{"object": "text_completion", "choices": []any{},
		"usage": map[string]any{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}
}

// completion streams n one-word chunks, the finish chunk, the usage (when
// withUsage) and [DONE].
func completion(w http.ResponseWriter, n int, withUsage bool, promptTokens int) {
	s := startStream(w)
	for i := range n {
		s.data(text(fmt.Sprintf(" w%d", i)))
	}
	s.data(finish())
	if withUsage {
		s.data(usage(promptTokens, n))
	}
	s.data("[DONE]")
}

func newGen(t *testing.T, cfg Config) *Generator {
	t.Helper()
	g, err := New(cfg)
	require.NoError(t, err)
	return g
}

// TestRunKeepsConcurrencyInFlight: exactly --concurrency requests are in
// flight at once (the server holds each round until it is full), every
// request is sent once with its own prompt, and the counts add up.
func TestRunKeepsConcurrencyInFlight(t *testing.T) {
	const conc, total, tokens = 4, 20, 5
	var (
		mu       sync.Mutex
		inFlight int
		maxIn    int
		arrived  int
		rounds   = map[int]chan struct{}{}
	)
	round := func(i int) chan struct{} {
		if rounds[i] == nil {
			rounds[i] = make(chan struct{})
		}
		return rounds[i]
	}
	s := newOAIServer(t, func(w http.ResponseWriter, r *http.Request, n int, body map[string]any) {
		mu.Lock()
		inFlight++
		maxIn = max(maxIn, inFlight)
		arrived++
		gate := round((arrived - 1) / conc)
		if arrived%conc == 0 {
			close(gate) // the round is full
		}
		mu.Unlock()
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		st := startStream(w)
		for i := range tokens {
			st.data(text(fmt.Sprintf(" t%d", i)))
		}
		st.data(finish())
		st.data(usage(100+n, tokens))
		mu.Lock()
		inFlight-- // before [DONE]: the client sends its next request only after it
		mu.Unlock()
		st.data("[DONE]")
	})
	g := newGen(t, Config{URL: s.srv.URL + "/v1/", Model: "file:/m.gguf", APIKey: "key-of-the-test", Concurrency: conc,
		Requests: total, PromptTokens: 16, MaxTokens: tokens, Temperature: 0.5, Seed: 9})
	var progress []string
	rep, err := g.Run(t.Context(), func(done, failed int) { progress = append(progress, fmt.Sprintf("%d/%d", done, failed)) })
	require.NoError(t, err)

	assert.Equal(t, conc, maxIn, "exactly --concurrency requests in flight")
	assert.Equal(t, int64(total), s.count.Load(), "each request sent once")
	assert.LessOrEqual(t, len(s.conns), 2*conc, "connections are kept from one request to the next")
	require.Len(t, progress, total)
	assert.Equal(t, "1/0", progress[0])
	assert.Equal(t, fmt.Sprintf("%d/0", total), progress[total-1])

	prompts := map[string]bool{}
	for i, b := range s.bodies {
		assert.Equal(t, "POST /v1/completions", s.paths[i])
		assert.Equal(t, "Bearer key-of-the-test", s.auth[i])
		assert.Equal(t, "file:/m.gguf", b["model"])
		assert.EqualValues(t, tokens, b["max_tokens"])
		assert.EqualValues(t, 0.5, b["temperature"])
		assert.EqualValues(t, 9, b["seed"])
		assert.Equal(t, true, b["stream"])
		assert.Equal(t, map[string]any{"include_usage": true}, b["stream_options"])
		assert.NotContains(t, b, "ignore_eos", "only when asked for")
		p, _ := b["prompt"].(string)
		assert.Len(t, strings.Fields(p), 15)
		prompts[p] = true
	}
	assert.Len(t, prompts, total, "every request has its own prompt")
	for i := range total {
		assert.True(t, prompts[Prompt(9, i, 16)], "request %d's prompt was sent", i)
	}

	assert.Equal(t, total, rep.Completed)
	assert.Zero(t, rep.Failed)
	assert.False(t, rep.Interrupted)
	assert.Equal(t, total*tokens, rep.TotalOutputTokens)
	assert.InDelta(t, tokens, rep.MeanOutputTokens, 1e-9)
	assert.Equal(t, FromUsage, rep.OutputTokensFrom)
	sum := 0
	for n := range total {
		sum += 100 + n
	}
	assert.Equal(t, sum, rep.TotalPromptTokens)
	require.NotNil(t, rep.MeanPromptTokens)
	assert.InDelta(t, float64(sum)/total, *rep.MeanPromptTokens, 1e-9)
	require.NotNil(t, rep.TTFT)
	require.NotNil(t, rep.ITL)
	require.NotNil(t, rep.Latency)
	assert.Equal(t, total, rep.TTFT.N)
	assert.Equal(t, total*(tokens-1), rep.ITL.N, "one gap between each two chunks")
	assert.Equal(t, total, rep.Latency.N)
	assert.LessOrEqual(t, rep.TTFT.P50, rep.Latency.P50, "the first token comes before the end")
	assert.LessOrEqual(t, rep.TTFT.P50, rep.TTFT.P90)
	assert.LessOrEqual(t, rep.TTFT.P90, rep.TTFT.P99)
	assert.Positive(t, rep.DurationS)
	assert.InDelta(t, float64(total)/rep.DurationS, rep.RequestsPerS, 1e-6)
	assert.InDelta(t, float64(total*tokens)/rep.DurationS, rep.OutputTokensPerS, 1e-6)
	assert.Empty(t, rep.Errors)
	assert.Equal(t, s.srv.URL+"/v1/completions", rep.URL)
}

// fakeClock is a clock the test server moves: Now reports each reading on
// stamps, so the server can wait until the client has stamped an event
// before moving the time for the next one.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	stamps chan struct{}
	extra  int // readings that found stamps full
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case c.stamps <- struct{}{}:
	default:
		c.extra++
	}
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestRunMeasuresWithTheClock: with one request at a time and a clock that
// the server moves before each event (waiting until the client has read
// it), every figure is known exactly: time to first token, inter-token
// latency, end-to-end latency, duration and rates.
func TestRunMeasuresWithTheClock(t *testing.T) {
	ms := time.Millisecond
	// Per request: the wait before each text chunk, then before the
	// finish chunk, the usage chunk and [DONE].
	plans := [][]time.Duration{
		{100 * ms, 10 * ms, 20 * ms, 5 * ms, 5 * ms, 5 * ms},
		{200 * ms, 30 * ms, 40 * ms, 0, 0, 10 * ms},
	}
	clock := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), stamps: make(chan struct{}, 64)}
	s := newOAIServer(t, func(w http.ResponseWriter, r *http.Request, n int, body map[string]any) {
		stamped := func() bool {
			select {
			case <-clock.stamps:
				return true
			case <-r.Context().Done():
				return false
			}
		}
		// The readings when the previous request's [DONE] arrived and when
		// this one was sent: both are taken before this request reaches
		// the server.
		for range min(n, 1) + 1 {
			if !stamped() {
				return
			}
		}
		plan := plans[n]
		chunks := len(plan) - 3
		st := startStream(w)
		send := func(d time.Duration, v any) bool {
			clock.advance(d)
			st.data(v)
			return stamped()
		}
		for i := range chunks {
			if !send(plan[i], text(fmt.Sprintf(" t%d", i))) {
				return
			}
		}
		if send(plan[chunks], finish()) && send(plan[chunks+1], usage(7, chunks)) {
			clock.advance(plan[chunks+2])
			st.data("[DONE]") // its reading is taken by the next request's handler
		}
	})
	g := newGen(t, Config{URL: s.srv.URL, Model: "m", Concurrency: 1, Requests: len(plans), Now: clock.Now})
	rep, err := g.Run(t.Context(), nil)
	require.NoError(t, err)
	require.Equal(t, 2, rep.Completed, "%+v", rep.Errors)
	assert.Len(t, clock.stamps, 1, "every reading but the last [DONE]'s was matched")
	assert.Zero(t, clock.extra)

	// TTFT 100 and 200 ms; ITL 10, 20, 30, 40 ms; end to end 145 and 280 ms.
	assert.Equal(t, &Stats{N: 2, Mean: 150, P50: 150, P90: 190, P99: 199}, roundStats(rep.TTFT))
	assert.Equal(t, &Stats{N: 4, Mean: 25, P50: 25, P90: 37, P99: 39.7}, roundStats(rep.ITL))
	assert.Equal(t, &Stats{N: 2, Mean: 212.5, P50: 212.5, P90: 266.5, P99: 278.65}, roundStats(rep.Latency))
	assert.InDelta(t, 0.425, rep.DurationS, 1e-9, "from the first request sent to the last one ended")
	assert.InDelta(t, 2/0.425, rep.RequestsPerS, 1e-9)
	assert.InDelta(t, 6/0.425, rep.OutputTokensPerS, 1e-9)
	assert.Equal(t, 6, rep.TotalOutputTokens)
	assert.Equal(t, 14, rep.TotalPromptTokens)
}

// roundStats rounds to a microsecond, so that exact figures compare equal.
func roundStats(s *Stats) *Stats {
	if s == nil {
		return nil
	}
	r := func(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }
	return &Stats{N: s.N, Mean: r(s.Mean), P50: r(s.P50), P90: r(s.P90), P99: r(s.P99)}
}

// TestRunCountsErrorsByCode: failures are counted by status and code, none
// is retried, none stops the run, and the successful requests are measured
// alone.
func TestRunCountsErrorsByCode(t *testing.T) {
	openAIErr := func(w http.ResponseWriter, status int, code, typ, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": code}})
	}
	s := newOAIServer(t, func(w http.ResponseWriter, r *http.Request, n int, body map[string]any) {
		if body["model"] != "good" {
			openAIErr(w, http.StatusNotFound, "model_not_found", "not_found_error", "no model "+body["model"].(string))
			return
		}
		switch n % 8 {
		case 1, 5: // rbee's queen with a full queue
			w.Header().Set("Retry-After", "2")
			openAIErr(w, http.StatusServiceUnavailable, "all_slots_busy", "unavailable_error", "all 1 inference slots are busy")
		case 2: // llama.cpp's server: the status as the code, the kind as the type
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}`)
		case 3: // rbee's native envelope
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"code":"RATE_LIMITED","message":"slow down","details":{}}}`)
		case 4: // an error after the first token
			st := startStream(w)
			st.data(text(" half"))
			st.data(map[string]any{"error": map[string]any{"message": "worker w1 crashed", "type": "server_error", "code": "worker_crashed"}})
			st.data("[DONE]")
		case 6: // a stream cut short
			st := startStream(w)
			st.data(text(" cut"))
			panic(http.ErrAbortHandler)
		case 7: // a proxy's HTML page
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "<html>bad gateway</html>")
		default:
			completion(w, 3, true, 10)
		}
	})
	g := newGen(t, Config{URL: s.srv.URL, Model: "good", Concurrency: 1, Requests: 16})
	rep, err := g.Run(t.Context(), nil)
	require.NoError(t, err, "failed requests do not fail the run")
	assert.Equal(t, int64(16), s.count.Load(), "no retries")
	assert.Equal(t, 2, rep.Completed)
	assert.Equal(t, 14, rep.Failed)
	assert.Equal(t, map[string]int{
		"503 all_slots_busy":    4,
		"503 unavailable_error": 2,
		"429 rate_limited":      2,
		"stream worker_crashed": 2,
		"stream_cut":            2,
		"502":                   2,
	}, rep.Errors)
	assert.Equal(t, "all 1 inference slots are busy (Retry-After: 2)", rep.ErrorMessages["503 all_slots_busy"], "the server's advice is shown, not followed")
	assert.Equal(t, "worker w1 crashed", rep.ErrorMessages["stream worker_crashed"])
	assert.Equal(t, "<html>bad gateway</html>", rep.ErrorMessages["502"])
	assert.Equal(t, 6, rep.TotalOutputTokens, "only successful requests count")
	require.NotNil(t, rep.TTFT)
	assert.Equal(t, 2, rep.TTFT.N)
	assert.Equal(t, 2, rep.Latency.N)

	// A wrong model: every request fails with 404.
	g = newGen(t, Config{URL: s.srv.URL, Model: "bad", Concurrency: 3, Requests: 6})
	rep, err = g.Run(t.Context(), nil)
	require.NoError(t, err)
	assert.Zero(t, rep.Completed)
	assert.Equal(t, map[string]int{"404 model_not_found": 6}, rep.Errors)
	assert.Equal(t, "no model bad", rep.ErrorMessages["404 model_not_found"])
	assert.Nil(t, rep.TTFT)
	assert.Nil(t, rep.ITL)
	assert.Nil(t, rep.Latency)
	assert.Nil(t, rep.MeanPromptTokens)
	assert.Empty(t, rep.OutputTokensFrom)
	assert.Zero(t, rep.RequestsPerS)
}

func TestRunTransportErrors(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		rep, err := newGen(t, Config{URL: url, Model: "m", Concurrency: 2, Requests: 3}).Run(t.Context(), nil)
		require.NoError(t, err)
		assert.Equal(t, map[string]int{"connection_refused": 3}, rep.Errors)
	})
	t.Run("timeout", func(t *testing.T) {
		s := newOAIServer(t, func(w http.ResponseWriter, r *http.Request, n int, body map[string]any) {
			st := startStream(w)
			st.data(text(" slow"))
			<-r.Context().Done() // never ends by itself
		})
		rep, err := newGen(t, Config{URL: s.srv.URL, Model: "m", Requests: 2, Timeout: 100 * time.Millisecond}).Run(t.Context(), nil)
		require.NoError(t, err)
		assert.Zero(t, rep.Completed)
		assert.Equal(t, map[string]int{"timeout": 2}, rep.Errors)
		assert.Equal(t, "no complete answer within 100ms", rep.ErrorMessages["timeout"])
	})
	t.Run("not a stream", func(t *testing.T) {
		s := newOAIServer(t, func(w http.ResponseWriter, r *http.Request, n int, body map[string]any) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"choices":[{"text":"all at once"}]}`)
		})
		rep, err := newGen(t, Config{URL: s.srv.URL, Model: "m"}).Run(t.Context(), nil)
		require.NoError(t, err)
		assert.Equal(t, map[string]int{"not_a_stream": 1}, rep.Errors)
	})
	t.Run("bad chunk", func(t *testing.T) {
		s := newOAIServer(t, func(w http.ResponseWriter, r *http.Request, n int, body map[string]any) {
			st := startStream(w)
			st.data("{not json")
			st.data("[DONE]")
		})
		rep, err := newGen(t, Config{URL: s.srv.URL, Model: "m"}).Run(t.Context(), nil)
		require.NoError(t, err)
		assert.Equal(t, map[string]int{"bad_chunk": 1}, rep.Errors)
	})
}

// TestOutputTokensUsageOrChunks: usage.completion_tokens counts when the
// server reports it (a chunk may carry several tokens); else the chunks
// with text are counted, and the report says which.
func TestOutputTokensUsageOrChunks(t *testing.T) {
	for _, tc := range []struct {
		name       string
		usageEvery int // requests n with n%usageEvery == 0 report usage; 0: none
		want       int
		from       string
		prompt     bool
	}{
		{"usage", 1, 4 * 7, FromUsage, true},
		{"chunks", 0, 4 * 3, FromChunks, false},
		{"mixed", 2, 7 + 3 + 7 + 3, FromMixed, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newOAIServer(t, func(w http.ResponseWriter, r *http.Request, n int, body map[string]any) {
				st := startStream(w)
				for _, piece := range []string{" two tokens", " and", " three more"} {
					st.data(text(piece))
				}
				st.data(finish())
				if tc.usageEvery > 0 && n%tc.usageEvery == 0 {
					st.data(usage(11, 7))
				}
				st.data("[DONE]")
			})
			rep, err := newGen(t, Config{URL: s.srv.URL, Model: "m", Requests: 4}).Run(t.Context(), nil)
			require.NoError(t, err)
			assert.Equal(t, tc.want, rep.TotalOutputTokens)
			assert.Equal(t, tc.from, rep.OutputTokensFrom)
			if tc.prompt {
				require.NotNil(t, rep.MeanPromptTokens)
				assert.InDelta(t, 11, *rep.MeanPromptTokens, 1e-9, "the mean of the requests that reported it")
			} else {
				assert.Nil(t, rep.MeanPromptTokens)
			}
			assert.Equal(t, 4*2, rep.ITL.N, "gaps between chunks, whatever the usage says")
		})
	}
}

// TestChatEndpoint: the chat endpoint sends the prompt as a user message,
// and the first chunk, which only names the role, is not a token.
func TestChatEndpoint(t *testing.T) {
	s := newOAIServer(t, func(w http.ResponseWriter, r *http.Request, n int, body map[string]any) {
		st := startStream(w)
		chunk := func(delta map[string]any) map[string]any {
			return map[string]any{"object": "chat.completion.chunk", "choices": []any{map[string]any{"index": 0, "delta": delta}}}
		}
		st.data(chunk(map[string]any{"role": "assistant", "content": ""}))
		st.data(chunk(map[string]any{"reasoning_content": "hmm"}))
		st.data(chunk(map[string]any{"content": "Hi"}))
		st.data(chunk(map[string]any{"content": "!"}))
		st.data(chunk(map[string]any{}))
		st.data("[DONE]")
	})
	g := newGen(t, Config{URL: s.srv.URL + "/v1", Endpoint: Chat, Model: "m", Requests: 2, PromptTokens: 8, IgnoreEOS: true})
	assert.Equal(t, s.srv.URL+"/v1/chat/completions", g.Endpoint())
	rep, err := g.Run(t.Context(), nil)
	require.NoError(t, err)
	assert.Equal(t, 2, rep.Completed)
	assert.Equal(t, 6, rep.TotalOutputTokens, "three chunks with text each")
	assert.Equal(t, FromChunks, rep.OutputTokensFrom)
	assert.Equal(t, "chat", rep.Endpoint)
	for i, b := range s.bodies {
		assert.Equal(t, "POST /v1/chat/completions", s.paths[i])
		assert.Equal(t, []any{map[string]any{"role": "user", "content": Prompt(0, i, 8)}}, b["messages"])
		assert.NotContains(t, b, "prompt")
		assert.Equal(t, true, b["ignore_eos"])
		assert.Empty(t, s.auth[i], "no key, no header")
	}
}

// TestRunInterrupted: when the context ends, the requests in flight are
// abandoned, the goroutines end, and the report holds those that ended.
func TestRunInterrupted(t *testing.T) {
	s := newOAIServer(t, func(w http.ResponseWriter, r *http.Request, n int, body map[string]any) {
		if n < 3 {
			completion(w, 2, true, 5)
			return
		}
		st := startStream(w)
		st.data(text(" stuck"))
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	g := newGen(t, Config{URL: s.srv.URL, Model: "m", Concurrency: 2, Requests: 10})
	rep, err := g.Run(ctx, func(done, failed int) {
		if done == 3 {
			cancel()
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	require.NotNil(t, rep)
	assert.True(t, rep.Interrupted)
	assert.Equal(t, 3, rep.Completed)
	assert.Zero(t, rep.Failed, "abandoned requests are not failures")
	assert.Equal(t, 6, rep.TotalOutputTokens)
	assert.LessOrEqual(t, s.count.Load(), int64(4), "no request is sent after the interruption")
}

func TestNewChecksConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no model", Config{URL: "http://127.0.0.1:1"}, "a model is required"},
		{"bad url", Config{URL: "127.0.0.1:1", Model: "m"}, "not an http:// or https:// address"},
		{"bad endpoint", Config{URL: "http://127.0.0.1:1", Model: "m", Endpoint: "embeddings"}, `endpoint "embeddings"`},
		{"negative", Config{URL: "http://127.0.0.1:1", Model: "m", Concurrency: -1}, "at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	g := newGen(t, Config{URL: "http://127.0.0.1:1/v1", Model: "m"})
	c := g.Config()
	assert.Equal(t, Config{URL: "http://127.0.0.1:1/v1", Model: "m", Endpoint: Completions, Concurrency: 1, Requests: 1,
		PromptTokens: 128, MaxTokens: 64, Timeout: 5 * time.Minute}, c)
}

// TestCalibrate: against a server whose tokenizer counts two tokens per
// word and one for the beginning of text, Calibrate measures 2 tokens per
// word with two one-token requests, and the run's prompts then have about
// half the words, so that the server counts about PromptTokens for each. A
// server without prompt counts leaves the prompts as they were.
func TestCalibrate(t *testing.T) {
	s := newOAIServer(t, func(w http.ResponseWriter, r *http.Request, n int, body map[string]any) {
		p, _ := body["prompt"].(string)
		completion(w, 1, true, 2*len(strings.Fields(p))+1)
	})
	g := newGen(t, Config{URL: s.srv.URL, Model: "m", Requests: 4, PromptTokens: 33, MaxTokens: 5})
	assert.Equal(t, 32, g.Words(), "before calibrating: a word per token and one for the beginning of text")
	c, err := g.Calibrate(t.Context())
	require.NoError(t, err)
	assert.InDelta(t, 2, c.TokensPerWord, 1e-9)
	assert.Equal(t, 16, c.Words)
	assert.Equal(t, 16, g.Words())
	require.Len(t, s.bodies, 2)
	for i, b := range s.bodies {
		assert.EqualValues(t, 1, b["max_tokens"], "calibration request %d asks for one token", i)
	}
	assert.Len(t, strings.Fields(s.bodies[0]["prompt"].(string)), 32)
	assert.Len(t, strings.Fields(s.bodies[1]["prompt"].(string)), 72)

	rep, err := g.Run(t.Context(), nil)
	require.NoError(t, err)
	require.NotNil(t, rep.MeanPromptTokens)
	assert.InDelta(t, 33, *rep.MeanPromptTokens, 1e-9)
	assert.Equal(t, 16, rep.PromptWords)
	require.NotNil(t, rep.TokensPerWord)
	assert.InDelta(t, 2, *rep.TokensPerWord, 1e-9)
	for _, b := range s.bodies[2:] {
		assert.EqualValues(t, 5, b["max_tokens"])
		assert.Len(t, strings.Fields(b["prompt"].(string)), 16)
	}

	flat := newOAIServer(t, func(w http.ResponseWriter, r *http.Request, n int, body map[string]any) {
		completion(w, 1, false, 0)
	})
	g = newGen(t, Config{URL: flat.srv.URL, Model: "m", PromptTokens: 9})
	_, err = g.Calibrate(t.Context())
	require.EqualError(t, err, "the server reports no usage.prompt_tokens to calibrate with")
	assert.Equal(t, 8, g.Words())
	rep, err = g.Run(t.Context(), nil)
	require.NoError(t, err)
	assert.Nil(t, rep.TokensPerWord)
	assert.Equal(t, 8, rep.PromptWords)
}
