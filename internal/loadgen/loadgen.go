// Package loadgen measures an OpenAI-compatible completion server under load:
// it keeps a fixed number of streaming requests in flight until a given number
// have been sent, and reports requests and output tokens per second, time to
// first token, inter-token latency, end-to-end latency and the failed
// requests by error code. It speaks only the OpenAI wire format, so it
// measures rbee's queen and other servers (llama.cpp's, vLLM, …) alike.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gosse "github.com/tmaxmax/go-sse"
)

// The endpoints a run can use.
const (
	// Completions is POST /v1/completions with a raw prompt.
	Completions = "completions"
	// Chat is POST /v1/chat/completions with the prompt as one user message
	// (the server's chat template makes it a little longer).
	Chat = "chat"
)

// Config describes a run.
type Config struct {
	// URL is the server's base URL, with or without a trailing /v1.
	URL string
	// Endpoint is Completions (the default) or Chat.
	Endpoint string
	// Model is the "model" of every request.
	Model string
	// APIKey, when set, is sent as a bearer token.
	APIKey string
	// Concurrency is how many requests are kept in flight (default 1).
	Concurrency int
	// Requests is how many requests a run sends (default 1).
	Requests int
	// PromptTokens is the approximate prompt length in tokens (default
	// 128). A prompt is PromptTokens−1 words (a server adds a
	// beginning-of-text token) until Calibrate sizes the words to the
	// server's tokenizer.
	PromptTokens int
	// MaxTokens is the max_tokens of every request (default 64).
	MaxTokens int
	// Temperature and Seed are sent with every request; Seed also picks
	// the prompts' words.
	Temperature float64
	Seed        uint64
	// IgnoreEOS sends "ignore_eos": true, which llama.cpp's server and vLLM
	// honour so that every request generates MaxTokens tokens. Servers
	// that do not know the field ignore it (rbee's queen) or refuse it
	// (OpenAI's own API).
	IgnoreEOS bool
	// Timeout bounds one request, its whole stream included (default 5
	// minutes).
	Timeout time.Duration
	// HTTPClient sends the requests (default: a client with enough idle
	// connections for Concurrency).
	HTTPClient *http.Client
	// Now is the clock (default time.Now). It is read once when a request
	// is sent, once as each event of its stream arrives, and once when a
	// request ends any other way (an error answer, a broken stream).
	Now func() time.Time
}

// Generator sends the requests of a run.
type Generator struct {
	cfg      Config
	words    int      // words per prompt
	perWord  *float64 // the server's tokens per word, when calibrated
	endpoint string   // the full URL requests go to
	client   *http.Client
	now      func() time.Time
}

// New checks cfg, fills in its defaults and returns a generator.
func New(cfg Config) (*Generator, error) {
	if cfg.Endpoint == "" {
		cfg.Endpoint = Completions
	}
	if cfg.Endpoint != Completions && cfg.Endpoint != Chat {
		return nil, fmt.Errorf("endpoint %q is not %s or %s", cfg.Endpoint, Chat, Completions)
	}
	base, err := BaseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Model == "" {
		return nil, errors.New("a model is required")
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 1
	}
	if cfg.Requests == 0 {
		cfg.Requests = 1
	}
	if cfg.PromptTokens == 0 {
		cfg.PromptTokens = 128
	}
	if cfg.MaxTokens == 0 {
		cfg.MaxTokens = 64
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.Concurrency < 1 || cfg.Requests < 1 || cfg.PromptTokens < 1 || cfg.MaxTokens < 1 || cfg.Timeout < 0 {
		return nil, fmt.Errorf("concurrency, requests, prompt tokens and max tokens must be at least 1 (got %d, %d, %d, %d)",
			cfg.Concurrency, cfg.Requests, cfg.PromptTokens, cfg.MaxTokens)
	}
	g := &Generator{cfg: cfg, words: max(cfg.PromptTokens-1, 1), client: cfg.HTTPClient, now: cfg.Now}
	g.endpoint = base + "/v1/completions"
	if cfg.Endpoint == Chat {
		g.endpoint = base + "/v1/chat/completions"
	}
	if g.client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = cfg.Concurrency
		g.client = &http.Client{Transport: t}
	}
	if g.now == nil {
		g.now = time.Now
	}
	return g, nil
}

// BaseURL checks a server URL and returns it without a trailing slash or
// /v1: "http://h:8080/v1/" gives "http://h:8080".
func BaseURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("the URL %q is not an http:// or https:// address", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("the URL %q has a query or fragment; give the server's base address", raw)
	}
	p := strings.TrimRight(u.Path, "/")
	p = strings.TrimSuffix(p, "/v1")
	u.Path, u.RawPath = strings.TrimRight(p, "/"), ""
	return u.String(), nil
}

// Endpoint is the URL the requests are posted to.
func (g *Generator) Endpoint() string { return g.endpoint }

// Config is the generator's configuration with its defaults filled in.
func (g *Generator) Config() Config { return g.cfg }

// Result is what one request measured.
type Result struct {
	Index int
	// Start is when the request was sent and End when its stream ended
	// (or it failed).
	Start, End time.Time
	// FirstToken is when the first chunk with text arrived (zero if none
	// did); ITL holds the gaps between consecutive chunks with text.
	FirstToken time.Time
	ITL        []time.Duration
	// Chunks counts the chunks with text.
	Chunks int
	// PromptTokens is the server's usage.prompt_tokens, or -1 when it
	// reported none.
	PromptTokens int
	// OutputTokens is usage.completion_tokens when the server reported it
	// (OutputFromUsage), else Chunks.
	OutputTokens    int
	OutputFromUsage bool
	// Err says why the request failed; nil when it succeeded.
	Err *RequestError
	// Interrupted is set when the run's context ended before the request
	// did: it counts neither as done nor as failed.
	Interrupted bool
}

// RequestError is a failed request. Code groups failures in a report:
//
//   - "STATUS code" for an error answer, with the error's code (OpenAI's
//     "code", else its "type"), lower case: "503 all_slots_busy",
//     "404 model_not_found"; only "STATUS" when the body has no code;
//   - "stream code" for an error sent inside a stream after it started;
//   - connection_refused, connection_reset, dns_error, timeout (the
//     request's own time limit), stream_cut (the stream ended without
//     [DONE]), bad_chunk (a chunk that is not JSON), not_a_stream (a 200
//     answer that is not an event stream) or transport_error.
type RequestError struct {
	Code    string
	Status  int    // the HTTP status; 0 when no answer came
	Message string // the server's message, or the transport error
}

func (e *RequestError) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

// Do sends request index (its prompt is PromptWords(Seed, index, Words()))
// and reads its stream to the end.
func (g *Generator) Do(ctx context.Context, index int) Result {
	return g.send(ctx, index, g.words, g.cfg.MaxTokens)
}

// Words is the number of words of every prompt: PromptTokens−1, or what
// Calibrate set.
func (g *Generator) Words() int { return g.words }

// Calibration is what Calibrate measured.
type Calibration struct {
	// TokensPerWord is how many tokens the server counts per prompt word.
	TokensPerWord float64
	// Words is the number of words of every prompt from now on.
	Words int
}

// Calibrate sizes the prompts to the server's tokenizer, so that a run's
// prompts are about PromptTokens tokens as the server counts them, whatever
// its vocabulary (one word is one token for the vocabularies of most English
// models, two or three for small or synthetic ones). It sends two requests
// for one output token, which are not measured, with prompts of n and 2n+8
// words, and takes the tokens per word from the difference of their
// usage.prompt_tokens; the prompts then have (PromptTokens−1)/that words,
// leaving one token for the beginning of text (a chat template adds more).
// When the server does not report prompt tokens, or a request fails, it
// changes nothing and says why.
func (g *Generator) Calibrate(ctx context.Context) (Calibration, error) {
	n1 := g.words
	n2 := 2*n1 + 8
	var counts [2]int
	for i, n := range []int{n1, n2} {
		// Negative indexes: prompts of their own, none of a run's.
		r := g.send(ctx, -1-i, n, 1)
		switch {
		case r.Interrupted:
			return Calibration{}, ctx.Err()
		case r.Err != nil:
			return Calibration{}, fmt.Errorf("a calibration request failed: %w", r.Err)
		case r.PromptTokens < 0:
			return Calibration{}, errors.New("the server reports no usage.prompt_tokens to calibrate with")
		}
		counts[i] = r.PromptTokens
	}
	per := float64(counts[1]-counts[0]) / float64(n2-n1)
	if per <= 0 {
		return Calibration{}, fmt.Errorf("the server counted %d prompt tokens for %d words and %d for %d", counts[0], n1, counts[1], n2)
	}
	g.words = max(1, int(math.Round(float64(g.cfg.PromptTokens-1)/per)))
	g.perWord = &per
	return Calibration{TokensPerWord: per, Words: g.words}, nil
}

// send sends request index with a prompt of the given words and max_tokens,
// and reads its stream to the end.
func (g *Generator) send(ctx context.Context, index, words, maxTokens int) Result {
	r := Result{Index: index, PromptTokens: -1}
	body, err := json.Marshal(g.body(index, words, maxTokens))
	if err != nil { // cannot happen: the body is made of strings and numbers
		r.Err = &RequestError{Code: "transport_error", Message: err.Error()}
		return r
	}
	rctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, g.endpoint, bytes.NewReader(body))
	if err != nil {
		r.Err = &RequestError{Code: "transport_error", Message: err.Error()}
		return r
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	if g.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+g.cfg.APIKey)
	}
	r.Start = g.now()
	fail := func(e *RequestError) Result {
		r.End = g.now()
		switch {
		case ctx.Err() != nil:
			r.Interrupted = true
		case errors.Is(rctx.Err(), context.DeadlineExceeded):
			r.Err = &RequestError{Code: "timeout", Status: e.Status,
				Message: fmt.Sprintf("no complete answer within %s", g.cfg.Timeout)}
		default:
			r.Err = e
		}
		return r
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return fail(transportError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		e := answerError(resp.StatusCode, b)
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			e.Message = strings.TrimSpace(e.Message + " (Retry-After: " + clip(ra, 40) + ")")
		}
		return fail(e)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return fail(&RequestError{Code: "not_a_stream", Status: resp.StatusCode,
			Message: fmt.Sprintf("the answer is %q, not an event stream", ct)})
	}

	var last time.Time
	for ev, err := range gosse.Read(resp.Body, &gosse.ReadConfig{MaxEventSize: 1 << 20}) {
		if err != nil {
			e := transportError(err)
			if e.Code == "transport_error" {
				e.Code = "stream_cut"
			}
			return fail(e)
		}
		at := g.now()
		data := strings.TrimSpace(ev.Data)
		if data == "[DONE]" {
			r.End = at
			if !r.OutputFromUsage {
				r.OutputTokens = r.Chunks
			}
			// Read the end of the answer, so that the connection is
			// kept for the next request, but give up on a server that
			// keeps the stream open after [DONE].
			t := time.AfterFunc(time.Second, cancel)
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			t.Stop()
			return r
		}
		if data == "" {
			continue
		}
		var c chunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			return fail(&RequestError{Code: "bad_chunk", Status: resp.StatusCode, Message: "a chunk is not JSON: " + clip(data, 200)})
		}
		if len(c.Error) > 0 {
			code, msg := errorBody([]byte(data))
			return fail(&RequestError{Code: strings.TrimSpace("stream " + code), Status: resp.StatusCode, Message: msg})
		}
		if c.Usage != nil {
			if c.Usage.PromptTokens != nil {
				r.PromptTokens = *c.Usage.PromptTokens
			}
			if c.Usage.CompletionTokens != nil {
				r.OutputTokens, r.OutputFromUsage = *c.Usage.CompletionTokens, true
			}
		}
		if !c.hasText() {
			continue
		}
		r.Chunks++
		if r.FirstToken.IsZero() {
			r.FirstToken = at
		} else {
			r.ITL = append(r.ITL, at.Sub(last))
		}
		last = at
	}
	return fail(&RequestError{Code: "stream_cut", Status: resp.StatusCode, Message: "the stream ended without [DONE]"})
}

// body is the JSON of request index.
func (g *Generator) body(index, words, maxTokens int) map[string]any {
	prompt := PromptWords(g.cfg.Seed, index, words)
	b := map[string]any{
		"model":          g.cfg.Model,
		"max_tokens":     maxTokens,
		"temperature":    g.cfg.Temperature,
		"seed":           g.cfg.Seed,
		"stream":         true,
		"stream_options": map[string]any{"include_usage": true},
	}
	if g.cfg.Endpoint == Chat {
		b["messages"] = []map[string]string{{"role": "user", "content": prompt}}
	} else {
		b["prompt"] = prompt
	}
	if g.cfg.IgnoreEOS {
		b["ignore_eos"] = true
	}
	return b
}

// chunk is what a stream's chunks carry that a run reads.
type chunk struct {
	Choices []struct {
		Text  *string `json:"text"`
		Delta *struct {
			Content          *string `json:"content"`
			ReasoningContent *string `json:"reasoning_content"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     *int `json:"prompt_tokens"`
		CompletionTokens *int `json:"completion_tokens"`
	} `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// hasText says whether the chunk carries generated text (the first chunk of
// a chat stream only names the role; the last ones carry the finish reason
// or the usage).
func (c *chunk) hasText() bool {
	for _, ch := range c.Choices {
		if ch.Text != nil && *ch.Text != "" {
			return true
		}
		if d := ch.Delta; d != nil && ((d.Content != nil && *d.Content != "") || (d.ReasoningContent != nil && *d.ReasoningContent != "")) {
			return true
		}
	}
	return false
}

// answerError is the error of an answer with status and body.
func answerError(status int, body []byte) *RequestError {
	e := &RequestError{Code: strconv.Itoa(status), Status: status}
	code, msg := errorBody(body)
	if code != "" {
		e.Code += " " + code
	}
	e.Message = msg
	return e
}

// errorBody reads an error body: OpenAI's {"error":{"message","type",
// "code"}} (llama.cpp's server puts the status in "code"; rbee's native
// answers have the same shape with an upper-case code) or vLLM's flat
// {"message","type","code"}. The code is OpenAI's "code" when it is a
// string, else the "type", in lower case.
func errorBody(body []byte) (code, message string) {
	type fields struct {
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Code    json.RawMessage `json:"code"`
	}
	var wrapped struct {
		Error json.RawMessage `json:"error"`
		fields
	}
	if json.Unmarshal(body, &wrapped) != nil {
		return "", clip(strings.TrimSpace(string(body)), 200)
	}
	f := wrapped.fields
	if len(wrapped.Error) > 0 {
		var inner fields
		if json.Unmarshal(wrapped.Error, &inner) == nil {
			f = inner
		} else {
			var s string // {"error": "text"}
			_ = json.Unmarshal(wrapped.Error, &s)
			f = fields{Message: s}
		}
	}
	code = f.Type
	var s string
	if json.Unmarshal(f.Code, &s) == nil && s != "" {
		code = s
	}
	return strings.ToLower(code), clip(f.Message, 200)
}

// transportError names what went wrong below HTTP.
func transportError(err error) *RequestError {
	e := &RequestError{Code: "transport_error", Message: err.Error()}
	var dns *net.DNSError
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		e.Code = "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Code = "connection_refused"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		e.Code = "connection_reset"
	case errors.As(err, &dns):
		e.Code = "dns_error"
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		e.Code = "stream_cut"
	}
	return e
}

// clip cuts s to at most n bytes, on a character boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// Progress is called after each request of a run ends, with how many have
// ended and how many of those failed; calls do not overlap.
type Progress func(done, failed int)

// Run sends Requests requests, Concurrency at a time (each of the
// Concurrency goroutines sends its next request as soon as its last one
// ends), and reports them. No request is retried, and a failed one does not
// stop the run. When ctx ends, the requests in flight are abandoned and Run
// returns the report of those that ended, marked Interrupted, with ctx's
// error.
func (g *Generator) Run(ctx context.Context, progress Progress) (*Report, error) {
	n := g.cfg.Requests
	var (
		next         atomic.Int64
		mu           sync.Mutex
		results      []Result
		done, failed int
		wg           sync.WaitGroup
	)
	for range min(g.cfg.Concurrency, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				r := g.Do(ctx, i)
				if r.Interrupted {
					return
				}
				mu.Lock()
				results = append(results, r)
				done++
				if r.Err != nil {
					failed++
				}
				if progress != nil {
					progress(done, failed)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	rep := g.Summarize(results)
	if err := ctx.Err(); err != nil {
		rep.Interrupted = true
		return rep, err
	}
	return rep, nil
}
