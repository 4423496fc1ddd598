package orchestrator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"rbee/api"
	"rbee/internal/grammar"
	"rbee/internal/httpx"
)

// The OpenAI-compatible API (docs/protocol.md): POST /v1/chat/completions,
// POST /v1/completions and GET /v1/models, in OpenAI's request, response,
// stream and error shapes, so that OpenAI SDKs and tools written for
// ollama or llama.cpp's server work against the queen.
//
// A completion request becomes a task (the same flow as POST /v2/tasks:
// hive started, worker found or spawned, inference relayed); "model" is an
// rbee model reference (hf:… or file:…), the node comes from the
// X-Rbee-Node header or the "node" field; without one (or with "auto") the
// queen places the request (see Queen.place). Chat messages are
// formatted by the worker with the model's chat template. Fields OpenAI
// clients send that rbee does not use are ignored; bad values of the fields
// it uses are refused with OpenAI's error body.

// NodeHeader names the node of an OpenAI-compatible request (the body's
// "node" field does too).
const NodeHeader = "X-Rbee-Node"

// withOpenAI serves /v1/ paths with the OpenAI-compatible handler (its own
// bearer check, answering in OpenAI's error shape) and the rest with next.
func (q *Queen) withOpenAI(next http.Handler) http.Handler {
	return divert(pathPrefix("/v1/"), q.openAIHandler(), next)
}

// divert serves the requests whose path match accepts with h, and the rest
// with next: how the queen puts the OpenAI and ollama APIs and the console,
// each with its own error shape and authentication, in front of its own API.
func divert(match func(path string) bool, h, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if match(r.URL.Path) {
			h.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// pathPrefix matches the paths that start with prefix.
func pathPrefix(prefix string) func(string) bool {
	return func(path string) bool { return strings.HasPrefix(path, prefix) }
}

func (q *Queen) openAIHandler() http.Handler {
	routes := []endpoint{
		{"POST", "/v1/chat/completions", func(w http.ResponseWriter, r *http.Request) { q.serveCompletion(w, r, true) }},
		{"POST", "/v1/completions", func(w http.ResponseWriter, r *http.Request) { q.serveCompletion(w, r, false) }},
		{"GET", "/v1/models", q.handleModels},
		{"GET", "/v1/models/{model...}", q.handleModel},
	}
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.HandleFunc(rt.method+" "+rt.path, rt.h)
	}
	router := &httpx.Router{Mux: mux, Daemon: "the queen",
		Hint:       "the queen's OpenAI-compatible endpoints are POST /v1/chat/completions, POST /v1/completions and GET /v1/models",
		WriteError: func(w http.ResponseWriter, r *http.Request, err error) { writeOpenAIError(w, r, err, "") }}
	token := q.cfg.Token
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && !httpx.BearerMatches(r, token) {
			e := api.Errorf(api.CodeInvalidAPIKey, "the API key is not valid")
			if got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); !ok || got == "" {
				e = api.Errorf(api.CodeMissingAPIKey, "this endpoint needs an API key: Authorization: Bearer TOKEN")
			}
			writeOpenAIError(w, r, e, "")
			return
		}
		router.ServeHTTP(w, r)
	})
}

// openAIError is the body of OpenAI's error answers: {"error": {...}}. Code is
// rbee's code in lower case (invalid_api_key, model_not_found, …), Param the
// offending field; details and request_id are rbee's additions.
type openAIError struct {
	Message   string         `json:"message"`
	Type      string         `json:"type"`
	Param     *string        `json:"param"`
	Code      string         `json:"code"`
	Details   map[string]any `json:"details,omitempty"`
	RequestID string         `json:"request_id,omitempty"`
}

type openAIErrorBody struct {
	Error openAIError `json:"error"`
}

// toOpenAIError maps an rbee error to OpenAI's shape, with the error types
// llama.cpp's server uses for each status.
func toOpenAIError(e *api.Error) openAIError {
	out := openAIError{Message: e.Message, Code: strings.ToLower(string(e.Code)), Details: e.Details, RequestID: e.RequestID}
	if f, ok := e.Details["field"].(string); ok {
		out.Param = &f
	}
	switch status := e.HTTPStatus(); {
	case status == http.StatusUnauthorized:
		out.Type = "authentication_error"
	case status == http.StatusNotFound:
		out.Type = "not_found_error"
	case status == http.StatusTooManyRequests:
		out.Type = "rate_limit_error"
	case status == http.StatusServiceUnavailable:
		out.Type = "unavailable_error"
	case status < 500:
		out.Type = "invalid_request_error"
	default:
		out.Type = "server_error"
	}
	return out
}

// writeOpenAIError answers err in OpenAI's shape with its status; id, when
// set, is the request id to report.
func writeOpenAIError(w http.ResponseWriter, r *http.Request, err error, id string) {
	e := *httpx.ToAPIError(err)
	if id != "" {
		e.RequestID = id
	} else if e.RequestID == "" {
		e.RequestID = httpx.RequestID(r)
	}
	if e.Code == api.CodeMissingAPIKey || e.Code == api.CodeInvalidAPIKey {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rbee"`)
	}
	httpx.SetRetryAfter(w, &e)
	httpx.WriteJSON(w, e.HTTPStatus(), openAIErrorBody{Error: toOpenAIError(&e)})
}

// openAIParams are the fields both completion endpoints read.
//
// The sampling parameters are rbee's own (temperature, top_p, and top_k,
// min_p and repeat_penalty, which llama.cpp's server accepts too), except
// three that OpenAI shapes differently: max_tokens may be null, seed is
// signed and stop is a string or a list. The fields declared here for those
// three hide the embedded ones of the same JSON name, so a body's
// max_tokens, seed and stop land here and task converts them; the hidden
// embedded fields stay zero.
type openAIParams struct {
	Model         string         `json:"model"`
	Stream        *bool          `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options"`
	api.SamplingParams
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"` // the newer name of max_tokens
	Seed                *int64          `json:"seed"`
	Stop                json.RawMessage `json:"stop"` // a string or up to 4 strings
	N                   *int            `json:"n"`
	// Logprobs is a boolean in chat requests and a count of top tokens in
	// completion requests; it hides the embedded field of the same name.
	Logprobs       json.RawMessage `json:"logprobs"`
	ResponseFormat json.RawMessage `json:"response_format"`
	// Node is rbee's extension: the node to run on (else the X-Rbee-Node
	// header; else, or "auto", the queen places the request).
	Node string `json:"node"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// openAIChatRequest is the body of POST /v1/chat/completions.
type openAIChatRequest struct {
	openAIParams
	Messages   []openAIMessage `json:"messages"`
	Tools      []openAITool    `json:"tools"`
	ToolChoice json.RawMessage `json:"tool_choice"`
}

// openAIMessage is a chat message; content is a string or a list of parts,
// of which only text parts are supported. An assistant message may have no
// content (null, or absent when it carries tool_calls, which the worker
// writes back in the template's tool format); a tool message names the
// call it answers with tool_call_id.
type openAIMessage struct {
	Role       string           `json:"role"`
	Content    json.RawMessage  `json:"content"`
	ToolCallID string           `json:"tool_call_id"`
	ToolCalls  []openAIToolCall `json:"tool_calls"`
}

// openAICompletionRequest is the body of POST /v1/completions.
type openAICompletionRequest struct {
	openAIParams
	Prompt json.RawMessage `json:"prompt"` // a string, or a list of one string
}

// decodeOpenAI reads a JSON body of at most 1 MiB, ignoring fields it does
// not know (OpenAI clients send many).
func decodeOpenAI(w http.ResponseWriter, r *http.Request, v any) *api.Error {
	return httpx.DecodeJSONLenient(w, r, v)
}

// task maps the shared fields onto a task request.
func (p *openAIParams) task(r *http.Request) (api.TaskRequest, *api.Error) {
	t := api.TaskRequest{Model: p.Model, Node: p.Node, SamplingParams: p.SamplingParams}
	if t.Model == "" {
		return t, api.InvalidField("model", "model is required: an rbee model reference (hf:ORG/REPO or file:/path/model.gguf)")
	}
	if _, e := api.ParseModelRef(t.Model); e != nil {
		return t, unknownModel(t.Model, e)
	}
	if h := r.Header.Get(NodeHeader); h != "" {
		if t.Node != "" && t.Node != h {
			return t, api.InvalidField("node", "the node field and the %s header name different nodes", NodeHeader)
		}
		t.Node = h
	}
	mt := p.MaxTokens
	if mt == nil {
		mt = p.MaxCompletionTokens
	}
	if mt != nil {
		if *mt < 1 {
			return t, api.InvalidField("max_tokens", "max_tokens must be at least 1")
		}
		t.MaxTokens = *mt
	}
	if p.Seed != nil {
		if *p.Seed < 0 {
			return t, api.InvalidField("seed", "seed must not be negative")
		}
		s := uint64(*p.Seed)
		t.Seed = &s
	}
	if p.N != nil && *p.N != 1 {
		return t, api.InvalidField("n", "only n=1 is supported (one choice per request)").
			WithHint("send n requests instead, with different seeds for different answers")
	}
	stop, e := parseStop(p.Stop)
	if e != nil {
		return t, e
	}
	t.Stop = stop
	if f, e := parseResponseFormat(p.ResponseFormat); e != nil {
		return t, e
	} else if f != nil {
		t.Format = f
	}
	return t, nil
}

// parseResponseFormat reads OpenAI's response_format: {"type":"text"} (or
// none) is free text, {"type":"json_object"} any JSON value, and
// {"type":"json_schema","json_schema":{"name","schema","strict"}} a value
// valid against the schema (always enforced, whatever strict says; without
// a schema, any JSON value). The schema is compiled here so that one the
// grammar cannot enforce is refused before a worker is involved.
func parseResponseFormat(raw json.RawMessage) (*api.Format, *api.Error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var rf struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Name   string          `json:"name"`
			Schema json.RawMessage `json:"schema"`
			Strict *bool           `json:"strict"`
		} `json:"json_schema"`
	}
	if err := json.Unmarshal(raw, &rf); err != nil {
		return nil, api.InvalidField("response_format", "response_format is an object with a type")
	}
	switch rf.Type {
	case "text":
		return nil, nil
	case "json_object":
		return &api.Format{Type: api.FormatJSON}, nil
	case "json_schema":
		if rf.JSONSchema == nil {
			return nil, api.InvalidField("response_format", "a json_schema response format needs json_schema").
				WithHint(`send {"type":"json_schema","json_schema":{"name":"…","schema":{…}}}`)
		}
		schema := bytes.TrimSpace(rf.JSONSchema.Schema)
		if len(schema) == 0 || string(schema) == "null" {
			return &api.Format{Type: api.FormatJSON}, nil
		}
		if _, err := grammar.CompileSchema(schema); err != nil {
			var se *grammar.SchemaError
			if errors.As(err, &se) {
				return nil, se.APIError("response_format")
			}
			return nil, api.InvalidField("response_format", "%v", err)
		}
		return &api.Format{Type: api.FormatJSONSchema, Schema: schema}, nil
	}
	return nil, api.InvalidField("response_format", "the response format type must be text, json_object or json_schema")
}

// unknownModel is the answer OpenAI's clients expect for a model name that
// is no rbee model reference ("gpt-4o"): MODEL_NOT_FOUND (404), naming the
// model field, with why the name is not a reference in details.reason.
func unknownModel(model string, why *api.Error) *api.Error {
	name := "the model"
	if len(model) <= api.MaxModelRefLen && utf8.ValidString(model) {
		name = fmt.Sprintf("model %q", model)
	}
	return api.Errorf(api.CodeModelNotFound, "%s does not exist: rbee's models are references hf:ORG/REPO[:QUANT] or file:/path/model.gguf", name).
		With("field", "model").With("reason", why.Message).
		WithHint("GET /v1/models lists the models of the cluster; a request with any hf: or file: reference loads it")
}

// parseStop reads OpenAI's stop: null, a string or a list of strings.
func parseStop(raw json.RawMessage) ([]string, *api.Error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return many, nil
	}
	return nil, api.InvalidField("stop", "stop is a string or a list of strings")
}

// chatMessages maps OpenAI messages to rbee's: "developer" is a system
// message; text parts of a content list are joined with newlines; an
// assistant message without content (one that only called tools) is an
// empty one; a tool message keeps its tool_call_id.
func chatMessages(in []openAIMessage) ([]api.ChatMessage, *api.Error) {
	if in == nil {
		return nil, api.InvalidField("messages", "messages is required")
	}
	out := make([]api.ChatMessage, len(in))
	for i, m := range in {
		role := m.Role
		if role == "developer" {
			role = api.RoleSystem
		}
		field := fmt.Sprintf("messages[%d].content", i)
		if raw := bytes.TrimSpace(m.Content); len(raw) == 0 || string(raw) == "null" {
			if role != api.RoleAssistant {
				return nil, api.InvalidField(field, "content is required (only an assistant message may have none)")
			}
			out[i] = api.ChatMessage{Role: role}
			continue
		}
		content, ok := textContent(m.Content)
		if !ok {
			return nil, api.InvalidField(field, "content is a string or a list of text parts")
		}
		out[i] = api.ChatMessage{Role: role, Content: content}
		if role == api.RoleTool {
			out[i].ToolCallID = m.ToolCallID
		}
	}
	for i, m := range in {
		if len(m.ToolCalls) == 0 || out[i].Role != api.RoleAssistant {
			continue
		}
		calls, e := messageToolCalls(i, m.ToolCalls)
		if e != nil {
			return nil, e
		}
		out[i].ToolCalls = calls
	}
	return out, nil
}

func textContent(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return "", false
	}
	texts := make([]string, 0, len(parts))
	for _, p := range parts {
		if p.Type != "text" || p.Text == nil {
			return "", false
		}
		texts = append(texts, *p.Text)
	}
	return strings.Join(texts, "\n"), true
}

// completionPrompt reads OpenAI's prompt: a string or a list of one string.
func completionPrompt(raw json.RawMessage) (string, *api.Error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil // Validate says the prompt is empty
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		if len(list) == 1 {
			return list[0], nil
		}
		return "", api.InvalidField("prompt", "one prompt per request is supported, not %d", len(list))
	}
	return "", api.InvalidField("prompt", "the prompt is a string (token-id prompts are not supported)")
}

// serveCompletion serves POST /v1/chat/completions (chat) and POST
// /v1/completions: the request becomes a task whose events are translated
// into OpenAI's response or stream of chunks. Errors before the first
// token (bad request, unknown node or model, a failed spawn) are answered
// with their HTTP status even for a stream request; a failure after it
// ends the stream with an error chunk and [DONE].
func (q *Queen) serveCompletion(w http.ResponseWriter, r *http.Request, chat bool) {
	prefix := "cmpl-"
	if chat {
		prefix = "chatcmpl-"
	}
	id := httpx.NewID(prefix)
	w.Header().Set(httpx.RequestIDHeader, id)
	fail := func(e error) { writeOpenAIError(w, r, e, id) }

	var params *openAIParams
	var task api.TaskRequest
	if chat {
		var req openAIChatRequest
		if e := decodeOpenAI(w, r, &req); e != nil {
			fail(e)
			return
		}
		msgs, e := chatMessages(req.Messages)
		if e != nil {
			fail(e)
			return
		}
		tools, e := toolUse(req.Tools, req.ToolChoice)
		if e != nil {
			fail(e)
			return
		}
		if task, e = req.task(r); e != nil {
			fail(e)
			return
		}
		if task.Logprobs, e = parseChatLogprobs(req.Logprobs); e != nil {
			fail(e)
			return
		}
		task.Messages, task.ToolUse = msgs, tools
		params = &req.openAIParams
	} else {
		var req openAICompletionRequest
		if e := decodeOpenAI(w, r, &req); e != nil {
			fail(e)
			return
		}
		prompt, e := completionPrompt(req.Prompt)
		if e != nil {
			fail(e)
			return
		}
		if task, e = req.task(r); e != nil {
			fail(e)
			return
		}
		if task.Logprobs, task.TopLogprobs, e = parseCompletionLogprobs(req.Logprobs); e != nil {
			fail(e)
			return
		}
		task.Prompt = prompt
		params = &req.openAIParams
	}
	samp, e := task.Validate()
	if e != nil {
		fail(e)
		return
	}
	sink := &openAISink{w: w, r: r, rc: http.NewResponseController(w), chat: chat, id: id, model: params.Model,
		created: time.Now().Unix(), stream: params.Stream != nil && *params.Stream, logprobs: samp.Logprobs}
	if sink.stream && params.StreamOptions != nil {
		sink.includeUsage = params.StreamOptions.IncludeUsage
	}
	if err := q.runTask(r.Context(), id, task, samp, func() eventSink { return sink }); err != nil {
		fail(err)
	}
}

// parseChatLogprobs reads the chat request's logprobs: null or a boolean (its
// top_logprobs, 0 to 20, is the embedded field).
func parseChatLogprobs(raw json.RawMessage) (bool, *api.Error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return false, nil
	}
	var on bool
	if json.Unmarshal(raw, &on) != nil {
		return false, api.InvalidField("logprobs", "logprobs is true or false in a chat request (top_logprobs says how many alternatives)")
	}
	return on, nil
}

// parseCompletionLogprobs reads the completion request's logprobs: null, or the
// number of most likely tokens to list at each position (0 to 20; OpenAI
// allows up to 5), which turns log-probabilities on.
func parseCompletionLogprobs(raw json.RawMessage) (bool, int, *api.Error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return false, 0, nil
	}
	var n int
	if json.Unmarshal(raw, &n) != nil || n < 0 || n > api.MaxTopLogprobs {
		return false, 0, api.InvalidField("logprobs", "logprobs is the number of most likely tokens to list, 0 to %d", api.MaxTopLogprobs)
	}
	return true, n, nil
}
