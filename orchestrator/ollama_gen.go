package orchestrator

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"rbee/api"
	"rbee/internal/httpx"
)

// ollamaOptions are the fields of ollama's "options" that rbee's sampling
// takes. The others (num_ctx, num_batch, num_gpu, num_thread, typical_p,
// repeat_last_n, mirostat…) are accepted and ignored: the worker's context
// size and threads are set when it starts.
type ollamaOptions struct {
	Temperature   *float64 `json:"temperature"`
	TopP          *float64 `json:"top_p"`
	TopK          *int     `json:"top_k"`
	MinP          *float64 `json:"min_p"`
	RepeatPenalty *float64 `json:"repeat_penalty"`
	Seed          *int64   `json:"seed"`
	Stop          []string `json:"stop"`
	NumPredict    *int     `json:"num_predict"`
	// PresencePenalty and FrequencyPenalty count the reply's own tokens
	// (OpenAI's definition, -2 to 2).
	PresencePenalty  *float64 `json:"presence_penalty"`
	FrequencyPenalty *float64 `json:"frequency_penalty"`
}

// ollamaCommon are the fields /api/generate and /api/chat share.
type ollamaCommon struct {
	Model       string          `json:"model"`
	Stream      *bool           `json:"stream"`
	Format      json.RawMessage `json:"format"`
	KeepAlive   json.RawMessage `json:"keep_alive"`
	Options     *ollamaOptions  `json:"options"`
	Think       json.RawMessage `json:"think"`
	Logprobs    bool            `json:"logprobs"`
	TopLogprobs int             `json:"top_logprobs"`
	// Node is rbee's addition: the node to run on (else the X-Rbee-Node
	// header; else, or "auto", the queen places the request).
	Node string `json:"node"`
}

// ollamaGenerateRequest is the body of POST /api/generate.
type ollamaGenerateRequest struct {
	ollamaCommon
	Prompt   string            `json:"prompt"`
	Suffix   string            `json:"suffix"`
	System   string            `json:"system"`
	Template string            `json:"template"`
	Context  []int             `json:"context"`
	Raw      bool              `json:"raw"`
	Images   []json.RawMessage `json:"images"`
}

// ollamaChatRequest is the body of POST /api/chat.
type ollamaChatRequest struct {
	ollamaCommon
	Messages []ollamaMessage `json:"messages"`
	Tools    []api.Tool      `json:"tools"`
}

// ollamaMessage is a chat message in ollama's shape.
type ollamaMessage struct {
	Role       string            `json:"role"`
	Content    string            `json:"content"`
	Thinking   string            `json:"thinking,omitempty"`
	Images     []json.RawMessage `json:"images,omitempty"`
	ToolCalls  []ollamaToolCall  `json:"tool_calls,omitempty"`
	ToolName   string            `json:"tool_name,omitempty"`
	ToolCallID string            `json:"tool_call_id,omitempty"`
}

// ollamaToolCall is a call in ollama's shape: its arguments are a JSON
// object (not a string, as in OpenAI's), its index the call's place in
// the reply.
type ollamaToolCall struct {
	ID       string `json:"id,omitempty"`
	Function struct {
		Index     int             `json:"index"`
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

// toolCalls maps an assistant message's calls onto rbee's.
func toolCalls(in []ollamaToolCall) []api.ToolCall {
	if len(in) == 0 {
		return nil
	}
	out := make([]api.ToolCall, len(in))
	for i, c := range in {
		out[i].ID, out[i].Type, out[i].Function.Name, out[i].Function.Arguments = c.ID, "function", c.Function.Name, c.Function.Arguments
	}
	return out
}

// ollamaToolCalls is the calls of a done event in ollama's shape.
func ollamaToolCalls(in []api.ToolCall) []ollamaToolCall {
	out := make([]ollamaToolCall, len(in))
	for i, c := range in {
		out[i].ID, out[i].Function.Index, out[i].Function.Name, out[i].Function.Arguments = c.ID, i, c.Function.Name, c.Function.Arguments
		if len(bytes.TrimSpace(c.Function.Arguments)) == 0 {
			out[i].Function.Arguments = json.RawMessage("{}")
		}
	}
	return out
}

// noImages is the answer to a request with images: rbee's engine reads
// text only.
func noImages(field string) *api.Error {
	return api.InvalidField(field, "images are not supported: rbee runs text models only").
		WithHint("send the request without images")
}

// task maps the shared fields onto a task request and reads keep_alive.
func (c *ollamaCommon) task(r *http.Request) (api.TaskRequest, *time.Duration, *api.Error) {
	ref, e := ollamaModel(c.Model)
	if e != nil {
		return api.TaskRequest{}, nil, e
	}
	t := api.TaskRequest{Model: ref}
	if t.Node, e = requestNode(r, c.Node); e != nil {
		return t, nil, e
	}
	keep, e := keepAlive(c.KeepAlive)
	if e != nil {
		return t, nil, e
	}
	if e := c.unsupported(); e != nil {
		return t, nil, e
	}
	if f := bytes.TrimSpace(c.Format); !isNull(f) && string(f) != `""` {
		if t.Format, e = ollamaFormat(f); e != nil {
			return t, nil, e
		}
	}
	if o := c.Options; o != nil {
		t.Temperature, t.TopP, t.TopK, t.MinP, t.RepeatPenalty, t.Stop = o.Temperature, o.TopP, o.TopK, o.MinP, o.RepeatPenalty, o.Stop
		if o.Seed != nil && *o.Seed >= 0 { // ollama's -1: a random seed
			s := uint64(*o.Seed)
			t.Seed = &s
		}
		if o.NumPredict != nil && *o.NumPredict > 0 { // -1 and -2 (no limit, fill the context): the default
			t.MaxTokens = *o.NumPredict
		}
		t.PresencePenalty, t.FrequencyPenalty = o.PresencePenalty, o.FrequencyPenalty
	}
	t.Logprobs, t.TopLogprobs = c.Logprobs, c.TopLogprobs
	return t, keep, nil
}

// unsupported refuses the fields rbee cannot honour rather than ignore them
// silently: thinking.
func (c *ollamaCommon) unsupported() *api.Error {
	switch t := strings.TrimSpace(string(c.Think)); t {
	case "", "null", "false":
	default:
		return api.InvalidField("think", "thinking is not supported: rbee does not separate a model's reasoning from its answer").
			WithHint("leave think out or set it to false")
	}
	return nil
}

// ollamaFormat reads ollama's format: "json" (any JSON value) or a JSON
// schema object.
func ollamaFormat(raw json.RawMessage) (*api.Format, *api.Error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == api.FormatJSON {
			return &api.Format{Type: api.FormatJSON}, nil
		}
		return nil, api.InvalidField("format", `format is "json" or a JSON schema object`)
	}
	if raw[0] != '{' || !json.Valid(raw) {
		return nil, api.InvalidField("format", `format is "json" or a JSON schema object`)
	}
	return &api.Format{Type: api.FormatJSONSchema, Schema: raw}, nil
}

// keepAlive reads ollama's keep_alive: a duration string ("5m", "1h",
// "-1") or a number of seconds; negative means forever.
func keepAlive(raw json.RawMessage) (*time.Duration, *api.Error) {
	if isNull(raw) {
		return nil, nil
	}
	bad := api.InvalidField("keep_alive", `keep_alive is a duration ("5m", "0") or a number of seconds`)
	var secs float64
	if json.Unmarshal(raw, &secs) == nil {
		d := time.Duration(secs * float64(time.Second))
		return &d, nil
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return nil, bad
	}
	if d, err := time.ParseDuration(s); err == nil {
		return &d, nil
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil {
		d := time.Duration(v * float64(time.Second))
		return &d, nil
	}
	return nil, bad
}

// serveOllama serves POST /api/generate and /api/chat. An empty prompt (or
// no messages) loads the model and answers done_reason "load"; with
// keep_alive 0 it stops the model's idle workers instead ("unload").
// Otherwise the request becomes a task whose tokens are streamed as NDJSON
// objects (stream defaults to true) or gathered into one answer. With
// keep_alive 0 the worker that served the request is stopped once it is
// idle; other keep_alive values are accepted and ignored: a worker stays
// up for its hive's idle timeout (GET /api/ps shows when it ends).
func (q *Queen) serveOllama(w http.ResponseWriter, r *http.Request, chat bool) {
	id := httpx.NewID("ollama-")
	w.Header().Set(httpx.RequestIDHeader, id)
	fail := func(err error) {
		e := *httpx.ToAPIError(err)
		e.RequestID = id
		writeOllamaError(w, r, &e)
	}
	var common *ollamaCommon
	var task api.TaskRequest
	var keep *time.Duration
	load := false
	if chat {
		var req ollamaChatRequest
		if e := httpx.DecodeJSONLenient(w, r, &req); e != nil {
			fail(e)
			return
		}
		common = &req.ollamaCommon
		var e *api.Error
		if task, keep, e = req.task(r); e != nil {
			fail(e)
			return
		}
		for i := range req.Tools {
			if req.Tools[i].Type == "" {
				req.Tools[i].Type = "function" // ollama's clients may leave it out
			}
		}
		task.Tools = req.Tools
		msgs := make([]api.ChatMessage, len(req.Messages))
		for i, m := range req.Messages {
			if len(m.Images) > 0 {
				fail(noImages("messages[" + strconv.Itoa(i) + "].images"))
				return
			}
			msgs[i] = api.ChatMessage{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID, ToolCalls: toolCalls(m.ToolCalls)}
		}
		task.Messages, load = msgs, len(msgs) == 0
	} else {
		var req ollamaGenerateRequest
		if e := httpx.DecodeJSONLenient(w, r, &req); e != nil {
			fail(e)
			return
		}
		common = &req.ollamaCommon
		var e *api.Error
		if task, keep, e = req.task(r); e != nil {
			fail(e)
			return
		}
		switch {
		case len(req.Images) > 0:
			fail(noImages("images"))
			return
		case req.Suffix != "":
			fail(api.InvalidField("suffix", "suffix (fill-in-the-middle) is not supported"))
			return
		case req.Template != "" && !req.Raw:
			fail(api.InvalidField("template", "a custom template is not supported: the model's own chat template is used").
				WithHint("leave template out, or format the prompt yourself and send it with raw: true"))
			return
		}
		// "context" (the tokens of an earlier answer, which rbee never
		// returns) is ignored.
		switch {
		case req.Prompt == "":
			load = true
		case req.Raw:
			task.Prompt = req.Prompt
		default:
			if req.System != "" {
				task.Messages = append(task.Messages, api.ChatMessage{Role: api.RoleSystem, Content: req.System})
			}
			task.Messages = append(task.Messages, api.ChatMessage{Role: api.RoleUser, Content: req.Prompt})
		}
	}
	sink := &ollamaSink{w: w, r: r, rc: http.NewResponseController(w), chat: chat, id: id, model: common.Model,
		stream: common.Stream == nil || *common.Stream, start: time.Now()}
	if load {
		q.ollamaLoad(w, r, task, keep, sink)
		return
	}
	samp, e := task.Validate()
	if e != nil {
		fail(e)
		return
	}
	if err := q.runTask(r.Context(), id, task, samp, func() eventSink { return sink }); err != nil {
		fail(err)
		return
	}
	if keep != nil && *keep == 0 {
		q.unloadAfter(r.Context(), task.Model, sink.lastDone())
	}
}

// ollamaLoad answers a request without input: keep_alive 0 stops the
// model's idle workers (on the named node, else on every node); anything
// else gets a worker of the model ready, placed like a task.
func (q *Queen) ollamaLoad(w http.ResponseWriter, r *http.Request, task api.TaskRequest, keep *time.Duration, sink *ollamaSink) {
	if keep != nil && *keep == 0 {
		all, err := q.clusterWorkers(r.Context())
		if err != nil {
			writeOllamaError(w, r, err)
			return
		}
		for _, nw := range all {
			if nw.err != nil || task.Node != "" && nw.node != task.Node {
				continue
			}
			if err := q.stopModelWorkers(r.Context(), nw, task.Model, true); err != nil {
				writeOllamaError(w, r, err)
				return
			}
		}
		sink.reason = "unload"
		_ = sink.Close()
		return
	}
	sink.reason = "load"
	if err := q.runTaskWith(r.Context(), sink.id, task, api.Sampling{}, func() eventSink { return sink }, taskOptions{loadOnly: true}); err != nil {
		writeOllamaError(w, r, err)
	}
}

// unloadAfter stops the worker that served a keep_alive 0 request unless
// another of the queen's tasks holds a slot of it (that worker stays up
// for them, and its idle timeout stops it later).
func (q *Queen) unloadAfter(ctx context.Context, model string, d *api.Done) {
	if d == nil || d.WorkerID == "" {
		return
	}
	ctx = context.WithoutCancel(ctx)
	all, err := q.clusterWorkers(ctx)
	if err != nil {
		return
	}
	for _, nw := range all {
		if nw.err != nil {
			continue
		}
		for _, wk := range nw.workers {
			if wk.ID != d.WorkerID {
				continue
			}
			if q.queue.busyOn(queueKey{node: nw.node, model: model}, wk.ID) > 0 {
				return
			}
			if err := nw.hive.shutdownWorker(ctx, wk.ID); err != nil {
				q.log.Info("could not stop the worker after a keep_alive 0 request", "worker_id", wk.ID, "error", err)
				return
			}
			q.log.Info("worker stopped: the request asked for keep_alive 0", "worker_id", wk.ID, "node", nw.node)
			return
		}
	}
}

// ollamaMetrics are the timings and counts of ollama's last object, in
// nanoseconds.
type ollamaMetrics struct {
	TotalDuration      int64 `json:"total_duration,omitempty"`
	LoadDuration       int64 `json:"load_duration,omitempty"`
	PromptEvalCount    int   `json:"prompt_eval_count,omitempty"`
	PromptEvalDuration int64 `json:"prompt_eval_duration,omitempty"`
	EvalCount          int   `json:"eval_count,omitempty"`
	EvalDuration       int64 `json:"eval_duration,omitempty"`
}

type ollamaChatMessage struct {
	Role      string           `json:"role"`
	Content   string           `json:"content"`
	ToolCalls []ollamaToolCall `json:"tool_calls,omitempty"`
}

// ollamaLogprob is a token's log-probability in ollama's shape; bytes are
// the token's exact bytes (its text shows U+FFFD for part of a character).
type ollamaLogprob struct {
	Token       string          `json:"token"`
	Logprob     float64         `json:"logprob"`
	Bytes       []int           `json:"bytes,omitempty"`
	TopLogprobs []ollamaLogprob `json:"top_logprobs,omitempty"`
}

// ollamaLogprobOf is a token event's entry; ok is false when it has none.
func ollamaLogprobOf(t *api.Token) (ollamaLogprob, bool) {
	if t.Logprob == nil {
		return ollamaLogprob{}, false
	}
	text, raw := tokenText(t)
	e := ollamaLogprob{Token: text, Logprob: *t.Logprob, Bytes: raw}
	for _, tl := range t.TopLogprobs {
		e.TopLogprobs = append(e.TopLogprobs, ollamaLogprob{Token: tl.Token, Logprob: tl.Logprob, Bytes: exactBytes(tl.Token, tl.Bytes)})
	}
	return e, true
}

// ollamaResponse is one object of a generate or chat answer: Response for
// generate, Message for chat.
type ollamaResponse struct {
	Model      string             `json:"model"`
	CreatedAt  time.Time          `json:"created_at"`
	Response   *string            `json:"response,omitempty"`
	Message    *ollamaChatMessage `json:"message,omitempty"`
	Done       bool               `json:"done"`
	DoneReason string             `json:"done_reason,omitempty"`
	Logprobs   []ollamaLogprob    `json:"logprobs,omitempty"`
	ollamaMetrics
}

// ollamaSink translates a task's events into ollama's answer: NDJSON
// objects, one per token, then a last one with done true, the reason and
// the timings; or one object with the whole text. Nothing is written
// before the first token (or the end), so an error before it keeps its
// HTTP status; after it, an error is an object {"error": …} that ends the
// stream. Narration and progress have no place in ollama's shapes and are
// dropped.
type ollamaSink struct {
	w            http.ResponseWriter
	r            *http.Request
	rc           *http.ResponseController
	chat, stream bool
	id, model    string
	start        time.Time
	reason       string // done_reason of a load or unload answer

	mu      sync.Mutex
	started bool
	ended   bool
	text    strings.Builder
	tokens  int
	lps     []ollamaLogprob // of the tokens not yet sent (all of them without streaming)
	done    *api.Done
}

// lastDone is the worker's done event, nil when none came.
func (s *ollamaSink) lastDone() *api.Done {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

func (s *ollamaSink) object(text string) ollamaResponse {
	o := ollamaResponse{Model: s.model, CreatedAt: time.Now().UTC()}
	if s.chat {
		o.Message = &ollamaChatMessage{Role: api.RoleAssistant, Content: text}
	} else {
		o.Response = &text
	}
	return o
}

// write sends one NDJSON line and flushes it, sending the headers first.
func (s *ollamaSink) write(v any) error {
	if !s.started {
		s.started = true
		s.w.Header().Set("Content-Type", "application/x-ndjson")
		s.w.WriteHeader(http.StatusOK)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := s.w.Write(append(data, '\n')); err != nil {
		return err
	}
	return s.rc.Flush()
}

// Send takes one task event: tokens become text, the done event is kept
// for the end.
func (s *ollamaSink) Send(ev api.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch ev.Kind {
	case api.KindToken:
		s.tokens++
		if lp, ok := ollamaLogprobOf(ev.Token); ok {
			s.lps = append(s.lps, lp)
		}
		if !s.stream {
			s.text.WriteString(ev.Token.Token)
			return nil
		}
		o := s.object(ev.Token.Token)
		o.Logprobs, s.lps = s.lps, nil
		return s.write(o)
	case api.KindDone:
		d := *ev.Done
		s.done = &d
	}
	return nil
}

// last is the final object: done, its reason and the timings. The worker
// measures from when it took the request: prompt_eval_duration is its time
// to the first token, eval_duration the rest; load_duration is the time
// the queen spent before that (starting a hive, loading the model, waiting
// for a slot); total_duration is the whole request.
func (s *ollamaSink) last(text string) ollamaResponse {
	o := s.object(text)
	o.Done = true
	o.DoneReason = s.reason
	total := time.Since(s.start)
	o.TotalDuration = total.Nanoseconds()
	if d := s.done; d != nil {
		o.DoneReason = "stop"
		if d.StopReason == api.StopMaxTokens {
			o.DoneReason = "length"
		}
		worker := time.Duration(d.DurationMs) * time.Millisecond
		first := time.Duration(d.FirstTokenMs) * time.Millisecond
		o.LoadDuration = max(0, total-worker).Nanoseconds()
		o.PromptEvalCount, o.PromptEvalDuration = d.PromptTokens, first.Nanoseconds()
		o.EvalCount, o.EvalDuration = cmp.Or(d.TotalTokens, s.tokens), max(0, worker-first).Nanoseconds()
	} else if s.reason == "load" {
		o.LoadDuration = o.TotalDuration
	}
	return o
}

// Close ends a task that went well with the last object (the whole answer
// when not streaming).
func (s *ollamaSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil
	}
	s.ended = true
	var calls []ollamaToolCall
	if s.done != nil && len(s.done.ToolCalls) > 0 && s.chat {
		calls = ollamaToolCalls(s.done.ToolCalls)
	}
	if !s.stream {
		o := s.last(s.text.String())
		o.Logprobs = s.lps
		if calls != nil {
			o.Message.ToolCalls = calls
		}
		httpx.WriteJSON(s.w, http.StatusOK, o)
		return nil
	}
	if calls != nil {
		// As ollama streams them: the calls in an object of their own,
		// before the last.
		o := s.object("")
		o.Message.ToolCalls = calls
		if err := s.write(o); err != nil {
			return err
		}
	}
	return s.write(s.last(""))
}

// Error ends a task that failed: with the error's status when nothing was
// sent yet, else with an error object.
func (s *ollamaSink) Error(e *api.Error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil
	}
	s.ended = true
	c := *e
	c.RequestID = s.id
	if !s.started {
		writeOllamaError(s.w, s.r, &c)
		return nil
	}
	return s.write(toOllamaError(&c))
}
