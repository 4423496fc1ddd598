package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serveTarget is an OpenAI-compatible server for rbee bench serve: each
// request is answered by answer (n counts the requests from 0, warm-up
// included).
type serveTarget struct {
	srv    *httptest.Server
	mu     sync.Mutex
	n      int
	auth   []string
	models []string
}

func newServeTarget(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, n int)) *serveTarget {
	s := &serveTarget{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Model string `json:"model"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		s.mu.Lock()
		n := s.n
		s.n++
		s.auth = append(s.auth, r.Header.Get("Authorization"))
		s.models = append(s.models, body.Model)
		s.mu.Unlock()
		if r.URL.Path != "/v1/completions" && r.URL.Path != "/v1/chat/completions" {
			http.NotFound(w, r)
			return
		}
		answer(w, r, n)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *serveTarget) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// streamTokens answers with n text chunks, the finish chunk, the usage
// (prompt 20, completion n) and [DONE].
func streamTokens(w http.ResponseWriter, n int) {
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	send := func(s string) {
		fmt.Fprintf(w, "data: %s\n\n", s)
		_ = rc.Flush()
	}
	for i := range n {
		send(fmt.Sprintf(`{"object":"text_completion","choices":[{"index":0,"text":" w%d","finish_reason":null}]}`, i))
	}
	send(`{"object":"text_completion","choices":[{"index":0,"text":"","finish_reason":"length"}]}`)
	send(fmt.Sprintf(`{"object":"text_completion","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":%d,"total_tokens":%d}}`, n, 20+n))
	send("[DONE]")
}

func busy(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprint(w, `{"error":{"message":"all 1 inference slots of worker w are busy","type":"unavailable_error","param":null,"code":"all_slots_busy"}}`)
}

func noModel(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	fmt.Fprint(w, `{"error":{"message":"model file:/nope.gguf is not in the catalog","type":"not_found_error","param":null,"code":"model_not_found"}}`)
}

// TestBenchServeTable: rbee bench serve against an OpenAI-compatible server
// prints the report as a table on stdout and its progress on stderr; the
// warm-up request is sent first and not counted.
func TestBenchServeTable(t *testing.T) {
	s := newServeTarget(t, func(w http.ResponseWriter, r *http.Request, n int) { streamTokens(w, 4) })
	key := "secret-key-of-the-server-0123"
	r := run(t, t.Context(), map[string]string{"OPENAI_API_KEY": key}, nil, "bench", "serve", "--url", s.srv.URL+"/v1/",
		"--model", "file:/m.gguf", "--concurrency", "2", "--requests", "6", "--prompt-tokens", "8", "--max-tokens", "4")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, 9, s.count(), "two calibration requests, one warm-up request and six measured")
	assert.Contains(t, r.stderr, "prompts not calibrated (the server counted 20 prompt tokens for 7 words and 20 for 22)",
		"this server's prompt count does not depend on the prompt")
	for _, a := range s.auth {
		assert.Equal(t, "Bearer "+key, a, "the key from $OPENAI_API_KEY")
	}
	assert.NotContains(t, r.stdout+r.stderr, key, "the key is never printed")

	for _, want := range []string{
		s.srv.URL + "/v1/completions (completions), model file:/m.gguf\n",
		"Requests ok / failed:    6 / 0 (of 6, 2 at a time)\n",
		"Output tokens/s:",
		"Mean prompt tokens:      20.0 (the server's count; about 8 asked for)\n",
		"Mean output tokens:      4.0 (the server's count; max_tokens 4)\n",
		"mean        p50        p90        p99        n\n",
		"\nErrors: none\n",
	} {
		assert.Contains(t, r.stdout, want)
	}
	for _, row := range []struct {
		name string
		n    int
	}{{"TTFT (ms)", 6}, {"ITL (ms)", 18}, {"E2E latency (ms)", 6}} {
		assert.Regexp(t, fmt.Sprintf(`(?m)^%s +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +%d$`, regexpQuote(row.name), row.n), r.stdout)
	}
	assert.Contains(t, r.stderr, "warm-up request 1/1 (not measured)")
	assert.Contains(t, r.stderr, "rbee bench serve: 6/6 done (0 failed)\n")
	assert.NotContains(t, r.stdout, "done (", "progress stays on stderr")
}

func regexpQuote(s string) string {
	return strings.NewReplacer("(", `\(`, ")", `\)`).Replace(s)
}

// TestBenchServeJSON: --json prints one JSON object whose field names are
// the documented ones.
func TestBenchServeJSON(t *testing.T) {
	s := newServeTarget(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n%3 == 2 {
			busy(w)
			return
		}
		streamTokens(w, 3)
	})
	r := run(t, t.Context(), map[string]string{"RBEE_API_KEY": "rbee-key-0123456789", "OPENAI_API_KEY": "other"}, nil,
		"bench", "serve", "--url", s.srv.URL, "--model", "m", "--concurrency", "1", "--requests", "9", "--warmup", "0", "--calibrate=false", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "Bearer rbee-key-0123456789", s.auth[0], "$RBEE_API_KEY before $OPENAI_API_KEY")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 1, "one JSON object on one line: %s", r.stdout)

	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &raw))
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	assert.Equal(t, []string{"completed", "concurrency", "duration_s", "e2e_latency_ms", "endpoint", "error_messages", "errors",
		"failed", "interrupted", "itl_ms", "max_tokens", "mean_output_tokens", "mean_prompt_tokens", "model",
		"output_tokens_from", "output_tokens_per_s", "prompt_tokens_requested", "prompt_words", "requests", "requests_per_s",
		"tokens_per_word", "total_output_tokens", "total_prompt_tokens", "ttft_ms", "url"}, keys)

	var rep struct {
		Completed        int                `json:"completed"`
		Failed           int                `json:"failed"`
		Requests         int                `json:"requests"`
		TotalOutput      int                `json:"total_output_tokens"`
		OutputFrom       string             `json:"output_tokens_from"`
		MeanPrompt       *float64           `json:"mean_prompt_tokens"`
		Errors           map[string]int     `json:"errors"`
		ErrorMessages    map[string]string  `json:"error_messages"`
		TTFT             map[string]float64 `json:"ttft_ms"`
		ITL              map[string]float64 `json:"itl_ms"`
		RequestsPerS     float64            `json:"requests_per_s"`
		OutputTokensPerS float64            `json:"output_tokens_per_s"`
		DurationS        float64            `json:"duration_s"`
	}
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &rep))
	assert.Equal(t, 6, rep.Completed)
	assert.Equal(t, 3, rep.Failed)
	assert.Equal(t, 9, rep.Requests)
	assert.Equal(t, 18, rep.TotalOutput)
	assert.Equal(t, "usage", rep.OutputFrom)
	require.NotNil(t, rep.MeanPrompt)
	assert.InDelta(t, 20, *rep.MeanPrompt, 1e-9)
	assert.Equal(t, map[string]int{"503 all_slots_busy": 3}, rep.Errors)
	assert.Equal(t, "all 1 inference slots of worker w are busy (Retry-After: 1)", rep.ErrorMessages["503 all_slots_busy"])
	for _, k := range []string{"n", "mean", "p50", "p90", "p99"} {
		assert.Contains(t, rep.TTFT, k)
	}
	assert.InDelta(t, 6, rep.TTFT["n"], 0)
	assert.InDelta(t, 12, rep.ITL["n"], 0)
	assert.InDelta(t, 6/rep.DurationS, rep.RequestsPerS, 1e-6)
	assert.InDelta(t, 18/rep.DurationS, rep.OutputTokensPerS, 1e-6)
	assert.Equal(t, 9, s.count(), "no retries")
}

// TestBenchServeFailures: a run whose requests all fail prints its report
// and exits 1; a failed warm-up stops before the run; --api-key wins over
// the environment.
func TestBenchServeFailures(t *testing.T) {
	s := newServeTarget(t, func(w http.ResponseWriter, r *http.Request, n int) { noModel(w) })
	env := map[string]string{"RBEE_API_KEY": "from-the-environment-123"}

	r := run(t, t.Context(), env, nil, "bench", "serve", "--url", s.srv.URL, "--model", "file:/nope.gguf",
		"--requests", "4", "--warmup", "0", "--calibrate=false", "--api-key", "from-the-flag-0123456")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stdout, "Requests ok / failed:    0 / 4")
	assert.Regexp(t, `(?m)^TTFT \(ms\) +- +- +- +- +0$`, r.stdout)
	assert.Regexp(t, `(?m)^  404 model_not_found +4  model file:/nope.gguf is not in the catalog$`, r.stdout)
	assert.Contains(t, r.stderr, "rbee bench: no request succeeded (4 failed, most with 404 model_not_found: model file:/nope.gguf is not in the catalog)\n")
	assert.Equal(t, 4, s.count())
	assert.Equal(t, "Bearer from-the-flag-0123456", s.auth[0])

	r = run(t, t.Context(), env, nil, "bench", "serve", "--url", s.srv.URL, "--model", "file:/nope.gguf")
	assert.Equal(t, 1, r.code)
	assert.Empty(t, r.stdout, "no run, no report")
	assert.Contains(t, r.stderr, "prompts not calibrated (a calibration request failed: 404 model_not_found: ")
	assert.Contains(t, r.stderr, "rbee bench: the warm-up request failed: 404 model_not_found: model file:/nope.gguf is not in the catalog\n")
	assert.Contains(t, r.stderr, "hint: check --url, --model and the API key; --warmup 0 skips the warm-up")
	assert.Equal(t, 6, s.count(), "a calibration request and a warm-up request, then nothing")
	assert.Equal(t, "Bearer from-the-environment-123", s.auth[5])

	// Nobody listening: the warm-up fails with connection_refused.
	url := s.srv.URL
	s.srv.Close()
	r = run(t, t.Context(), nil, nil, "bench", "serve", "--url", url, "--model", "m")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "the warm-up request failed: connection_refused: ")
}

// TestBenchServeInterrupted: Ctrl+C during a run prints what was measured
// and exits 130.
func TestBenchServeInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s := newServeTarget(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n < 3 { // the warm-up and two measured requests
			streamTokens(w, 2)
			return
		}
		cancel() // Ctrl+C while the third is running
		<-r.Context().Done()
	})
	r := run(t, ctx, nil, nil, "bench", "serve", "--url", s.srv.URL, "--model", "m", "--concurrency", "1", "--requests", "10", "--calibrate=false")
	assert.Equal(t, ExitInterrupted, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Interrupted: 2 of 10 requests ended; figures for those.\n")
	assert.Contains(t, r.stdout, "Requests ok / failed:    2 / 0 (of 10, 1 at a time)")
	assert.Regexp(t, `(?m)^E2E latency \(ms\) +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +2$`, r.stdout)
	assert.Contains(t, r.stderr, "Canceled.\n")
	assert.Equal(t, 4, s.count())
}

func TestBenchServeUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--model", "m"}, "--url is required"},
		{[]string{"--url", "http://127.0.0.1:1"}, "--model is required"},
		{[]string{"--url", "127.0.0.1:8080", "--model", "m"}, "--url: the URL \"127.0.0.1:8080\" is not an http:// or https:// address"},
		{[]string{"--url", "http://127.0.0.1:1", "--model", "m", "--concurrency", "0"}, "--concurrency must be between 1 and 4096"},
		{[]string{"--url", "http://127.0.0.1:1", "--model", "m", "--requests", "0"}, "--requests must be between"},
		{[]string{"--url", "http://127.0.0.1:1", "--model", "m", "--max-tokens", "0"}, "--max-tokens must be at least 1"},
		{[]string{"--url", "http://127.0.0.1:1", "--model", "m", "--temperature", "3"}, "--temperature must be between 0 and 2"},
		{[]string{"--url", "http://127.0.0.1:1", "--model", "m", "--endpoint", "embeddings"}, "--endpoint must be completions or chat"},
		{[]string{"--url", "http://127.0.0.1:1", "--model", "m", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"--url", "http://127.0.0.1:1", "--model", "m", "extra"}, `unexpected argument "extra"`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			r := run(t, t.Context(), nil, nil, append([]string{"bench", "serve"}, tc.args...)...)
			assert.Equal(t, ExitUsage, r.code)
			assert.Contains(t, r.stderr, tc.want)
			assert.Contains(t, r.stderr, "usage: rbee bench ")
			assert.Empty(t, r.stdout)
		})
	}
	r := run(t, t.Context(), nil, nil, "bench", "serve", "--help")
	assert.Equal(t, 0, r.code)
	assert.Contains(t, r.stdout, "usage: rbee bench serve --url URL --model REF")
	assert.Contains(t, r.stdout, "-concurrency")
	r = run(t, t.Context(), nil, nil, "bench", "--help")
	assert.Equal(t, 0, r.code)
	assert.Contains(t, r.stdout, "| serve --url URL --model REF [flags]", "rbee bench's help names serve")
	assert.Contains(t, r.stdout, "-threads", "rbee bench keeps its own flags")
}
