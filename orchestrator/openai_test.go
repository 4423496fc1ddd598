package orchestrator

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/hivewire"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

// recWorker is a worker that records the inference requests it gets and
// streams scripted tokens, ending with a done event that counts them.
type recWorker struct {
	srv    *httptest.Server
	tokens []string
	stop   api.StopReason // the done event's stop reason
	calls  []api.ToolCall // the done event's tool calls

	mu   sync.Mutex
	reqs []api.InferenceRequest
}

func newRecWorker(t *testing.T, tokens ...string) *recWorker {
	t.Helper()
	w := &recWorker{tokens: tokens, stop: api.StopEOS}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/inference", func(rw http.ResponseWriter, r *http.Request) {
		var req api.InferenceRequest
		if e := httpx.DecodeJSON(rw, r, &req); e != nil {
			httpx.WriteError(rw, r, e)
			return
		}
		if _, e := req.Validate(512); e != nil {
			httpx.WriteError(rw, r, e)
			return
		}
		w.mu.Lock()
		w.reqs = append(w.reqs, req)
		w.mu.Unlock()
		out := sse.NewWriter(rw)
		_ = out.Send(api.NarrationEvent(api.ActorWorker, "inference_start", "Starting"))
		for i, tok := range w.tokens {
			_ = out.Send(api.Event{Kind: api.KindToken, Token: &api.Token{Token: tok, Index: i}})
		}
		_ = out.Send(api.Event{Kind: api.KindDone, Done: &api.Done{Done: true, TotalTokens: len(w.tokens), PromptTokens: 7,
			StopReason: w.stop, RequestID: httpx.RequestID(r), ToolCalls: w.calls}})
		_ = out.Close()
	})
	w.srv = httptest.NewServer(httpx.Middleware(nil, mux))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *recWorker) info(id, model string) hivewire.Worker {
	return hivewire.Worker{WorkerInfo: api.WorkerInfo{ID: id, URL: w.srv.URL, ModelRef: model, Backend: api.BackendCPU,
		State: api.StateIdle, SlotsTotal: 1, SlotsAvailable: 1}}
}

func (w *recWorker) requests() []api.InferenceRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]api.InferenceRequest(nil), w.reqs...)
}

// oaiAnswer is one answer of the OpenAI-compatible API.
type oaiAnswer struct {
	status int
	header http.Header
	body   []byte
}

// oaiCall sends a request (body: a string or a value to marshal) and reads
// the whole answer.
func oaiCall(t *testing.T, method, url, token string, body any, header http.Header) oaiAnswer {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		require.NoError(t, err)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return oaiAnswer{status: resp.StatusCode, header: resp.Header, body: data}
}

// sdkResponse is what OpenAI's SDKs read from a completion, a chat
// completion or a chunk of their streams.
type sdkResponse struct {
	ID                string `json:"id"`
	Object            string `json:"object"`
	Created           int64  `json:"created"`
	Model             string `json:"model"`
	SystemFingerprint string `json:"system_fingerprint"`
	Choices           []struct {
		Index   int `json:"index"`
		Message *struct {
			Role    string  `json:"role"`
			Content *string `json:"content"`
		} `json:"message"`
		Delta *struct {
			Role    string  `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		Text         *string `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

// sdkError is OpenAI's error body.
type sdkError struct {
	Error *struct {
		Message   string         `json:"message"`
		Type      string         `json:"type"`
		Param     *string        `json:"param"`
		Code      string         `json:"code"`
		Details   map[string]any `json:"details"`
		RequestID string         `json:"request_id"`
	} `json:"error"`
}

// decodeResponse parses an OpenAI object and checks the keys every one
// has (choices' finish_reason and logprobs are present, null or not).
func decodeResponse(t *testing.T, data []byte, object string) sdkResponse {
	t.Helper()
	var r sdkResponse
	require.NoError(t, json.Unmarshal(data, &r), "%s", data)
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(data, &raw))
	for _, k := range []string{"id", "object", "created", "model", "choices"} {
		assert.Contains(t, raw, k, "%s", data)
	}
	assert.Equal(t, object, r.Object)
	assert.NotZero(t, r.Created)
	var choices []map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw["choices"], &choices))
	for _, c := range choices {
		for _, k := range []string{"index", "finish_reason", "logprobs"} {
			assert.Contains(t, c, k, "%s", data)
		}
	}
	return r
}

// readStream splits an OpenAI event stream into its data payloads; the last
// must be [DONE] and nothing may follow it.
func readStream(t *testing.T, a oaiAnswer) []string {
	t.Helper()
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	assert.Equal(t, "text/event-stream", a.header.Get("Content-Type"))
	body := string(a.body)
	require.True(t, strings.HasSuffix(body, "\n\n"), "events end with a blank line: %q", body)
	var data []string
	for _, ev := range strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n") {
		d, ok := strings.CutPrefix(ev, "data: ")
		require.True(t, ok, "every event is one data line: %q", ev)
		require.NotContains(t, d, "\n", "one line per event")
		data = append(data, d)
	}
	require.NotEmpty(t, data)
	require.Equal(t, "[DONE]", data[len(data)-1], "the stream ends with [DONE]")
	return data[:len(data)-1]
}

// oaiSetup is a queen whose local hive (a fake) has an idle recording
// worker with testModel.
type oaiSetup struct {
	tq     *testQueen
	hive   *fakeHive
	worker *recWorker
}

func newOAISetup(t *testing.T, token string, tokens ...string) *oaiSetup {
	t.Helper()
	if len(tokens) == 0 {
		tokens = []string{"Hello", ",", " world"}
	}
	hive := newFakeHive(t, "")
	w := newRecWorker(t, tokens...)
	hive.addWorker(w.info("w-rec", testModel))
	tq := newTestQueen(t, Config{LocalHivePort: hive.port(), Token: token})
	return &oaiSetup{tq: tq, hive: hive, worker: w}
}

func chatBody(extra map[string]any) map[string]any {
	b := map[string]any{"model": testModel, "messages": []map[string]any{
		{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}}}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

func TestOpenAIChatCompletion(t *testing.T) {
	s := newOAISetup(t, "")
	a := oaiCall(t, "POST", s.tq.url+"/v1/chat/completions", "", chatBody(map[string]any{"max_tokens": 16, "temperature": 0.2,
		"top_p": 0.9, "seed": 42, "stop": "END"}), nil)
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	assert.Equal(t, "application/json", a.header.Get("Content-Type"))
	r := decodeResponse(t, a.body, "chat.completion")
	assert.True(t, strings.HasPrefix(r.ID, "chatcmpl-"), r.ID)
	assert.Equal(t, r.ID, a.header.Get(httpx.RequestIDHeader), "the id is the task id")
	assert.Equal(t, testModel, r.Model)
	require.Len(t, r.Choices, 1)
	c := r.Choices[0]
	assert.Equal(t, 0, c.Index)
	require.NotNil(t, c.Message)
	assert.Equal(t, "assistant", c.Message.Role)
	require.NotNil(t, c.Message.Content)
	assert.Equal(t, "Hello, world", *c.Message.Content)
	require.NotNil(t, c.FinishReason)
	assert.Equal(t, "stop", *c.FinishReason, "EOS is stop")
	assert.Nil(t, c.Delta)
	require.NotNil(t, r.Usage)
	assert.Equal(t, 7, r.Usage.PromptTokens)
	assert.Equal(t, 3, r.Usage.CompletionTokens)
	assert.Equal(t, 10, r.Usage.TotalTokens)

	// The worker got the messages and the parameters.
	reqs := s.worker.requests()
	require.Len(t, reqs, 1)
	got := reqs[0]
	assert.Empty(t, got.Prompt)
	assert.Equal(t, []api.ChatMessage{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Say hello"}}, got.Messages)
	assert.Equal(t, 16, got.MaxTokens)
	require.NotNil(t, got.Temperature)
	assert.Equal(t, 0.2, *got.Temperature)
	require.NotNil(t, got.TopP)
	assert.Equal(t, 0.9, *got.TopP)
	require.NotNil(t, got.Seed)
	assert.Equal(t, uint64(42), *got.Seed)
	assert.Equal(t, []string{"END"}, got.Stop)
}

func TestOpenAIChatStream(t *testing.T) {
	s := newOAISetup(t, "")
	for _, usage := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "include_usage"}[usage], func(t *testing.T) {
			body := chatBody(map[string]any{"stream": true, "max_tokens": 3})
			if usage {
				body["stream_options"] = map[string]any{"include_usage": true}
			}
			a := oaiCall(t, "POST", s.tq.url+"/v1/chat/completions", "", body, nil)
			data := readStream(t, a)
			id := a.header.Get(httpx.RequestIDHeader)
			var chunks []sdkResponse
			for i, d := range data {
				chunks = append(chunks, decodeResponse(t, []byte(d), "chat.completion.chunk"))
				var raw map[string]json.RawMessage
				require.NoError(t, json.Unmarshal([]byte(d), &raw))
				u, has := raw["usage"]
				switch {
				case !usage:
					assert.False(t, has, "no usage key unless asked for: %s", d)
				case i < len(data)-1:
					assert.True(t, has, "with include_usage every chunk has a usage key: %s", d)
					assert.Equal(t, "null", string(u), "usage is null before the last chunk: %s", d)
				default:
					assert.NotEqual(t, "null", string(u), d)
				}
			}
			want := 5 // role, three contents, finish
			if usage {
				want++
			}
			require.Len(t, chunks, want, "%q", data)
			var text strings.Builder
			for i, c := range chunks {
				assert.Equal(t, id, c.ID, "every chunk has the id")
				assert.Equal(t, chunks[0].Created, c.Created)
				assert.Equal(t, testModel, c.Model)
				if usage && i == len(chunks)-1 {
					assert.Empty(t, c.Choices, "the usage chunk has no choices")
					require.NotNil(t, c.Usage)
					assert.Equal(t, 7, c.Usage.PromptTokens)
					assert.Equal(t, 3, c.Usage.CompletionTokens)
					assert.Equal(t, 10, c.Usage.TotalTokens)
					continue
				}
				assert.Nil(t, c.Usage)
				require.Len(t, c.Choices, 1)
				ch := c.Choices[0]
				require.NotNil(t, ch.Delta, "chunks carry deltas")
				assert.Nil(t, ch.Message)
				switch {
				case i == 0:
					assert.Equal(t, "assistant", ch.Delta.Role)
					require.NotNil(t, ch.Delta.Content)
					assert.Empty(t, *ch.Delta.Content)
					assert.Nil(t, ch.FinishReason)
				case ch.FinishReason != nil:
					assert.Equal(t, "stop", *ch.FinishReason)
					assert.Nil(t, ch.Delta.Content, "the last chunk's delta is empty")
					assert.Equal(t, 4, i)
				default:
					require.NotNil(t, ch.Delta.Content)
					text.WriteString(*ch.Delta.Content)
				}
			}
			assert.Equal(t, "Hello, world", text.String())
			assert.Contains(t, data[len(data)-1-btoi(usage)], `"delta":{}`, "OpenAI's last chunk has an empty delta")
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestOpenAICompletions(t *testing.T) {
	s := newOAISetup(t, "", "upon", " a", " time")
	s.worker.stop = api.StopMaxTokens

	a := oaiCall(t, "POST", s.tq.url+"/v1/completions", "", map[string]any{"model": testModel, "prompt": "Once", "max_tokens": 3}, nil)
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	r := decodeResponse(t, a.body, "text_completion")
	assert.True(t, strings.HasPrefix(r.ID, "cmpl-"), r.ID)
	require.Len(t, r.Choices, 1)
	require.NotNil(t, r.Choices[0].Text)
	assert.Equal(t, "upon a time", *r.Choices[0].Text)
	require.NotNil(t, r.Choices[0].FinishReason)
	assert.Equal(t, "length", *r.Choices[0].FinishReason, "max_tokens is length")
	require.NotNil(t, r.Usage)
	assert.Equal(t, 3, r.Usage.CompletionTokens)

	// A list of one prompt is a prompt; stream chunks carry text.
	a = oaiCall(t, "POST", s.tq.url+"/v1/completions", "", map[string]any{"model": testModel, "prompt": []string{"Once"},
		"max_tokens": 3, "stream": true}, nil)
	data := readStream(t, a)
	require.Len(t, data, 4, "three texts and the finish")
	var text strings.Builder
	for i, d := range data {
		c := decodeResponse(t, []byte(d), "text_completion")
		require.Len(t, c.Choices, 1)
		require.NotNil(t, c.Choices[0].Text, "every completion chunk has text")
		text.WriteString(*c.Choices[0].Text)
		if i < 3 {
			assert.Nil(t, c.Choices[0].FinishReason)
		} else {
			require.NotNil(t, c.Choices[0].FinishReason)
			assert.Equal(t, "length", *c.Choices[0].FinishReason)
		}
	}
	assert.Equal(t, "upon a time", text.String())

	reqs := s.worker.requests()
	require.Len(t, reqs, 2)
	for _, q := range reqs {
		assert.Equal(t, "Once", q.Prompt)
		assert.Nil(t, q.Messages)
	}
}

// TestOpenAISDKRequests sends the requests OpenAI's SDKs send (the fields
// they fill in, most of which rbee ignores) and checks that they work.
func TestOpenAISDKRequests(t *testing.T) {
	s := newOAISetup(t, "sdk-token-0123456789")
	tests := []struct {
		name, path, body string
		stream           bool
	}{
		{"python chat", "/v1/chat/completions", `{"messages":[{"role":"system","content":"You are a helpful assistant."},` +
			`{"role":"user","content":"Hello!"}],"model":"` + testModel + `","frequency_penalty":0,"logit_bias":null,` +
			`"logprobs":false,"max_tokens":16,"n":1,"presence_penalty":0,"response_format":{"type":"text"},"seed":42,` +
			`"stop":null,"stream":false,"temperature":0.7,"top_p":1,"tools":null,"user":"user-1234"}`, false},
		{"python chat stream", "/v1/chat/completions", `{"messages":[{"role":"user","content":"Hello!"}],"model":"` + testModel +
			`","stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":8}`, true},
		{"node js chat with content parts", "/v1/chat/completions", `{"model":"` + testModel + `","messages":[{"role":"developer",` +
			`"content":[{"type":"text","text":"Answer in French."}]},{"role":"user","content":[{"type":"text","text":"Hi"},` +
			`{"type":"text","text":"there"}]}],"parallel_tool_calls":null,"store":false,"metadata":{"k":"v"}}`, false},
		{"langchain chat", "/v1/chat/completions", `{"model":"` + testModel + `","messages":[{"role":"user","content":"Hi","name":"bob"}],` +
			`"stream":true,"n":1,"temperature":0.0}`, true},
		{"python completions", "/v1/completions", `{"model":"` + testModel + `","prompt":"Say this is a test","max_tokens":7,` +
			`"temperature":0,"echo":false,"best_of":1,"logprobs":null,"suffix":null,"stream":false}`, false},
		{"a chat UI's history with empty turns and a tool call", "/v1/chat/completions", `{"model":"` + testModel + `","messages":[` +
			`{"role":"user","content":""},{"role":"assistant","content":""},{"role":"user","content":"Weather in Paris?"},` +
			`{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"weather",` +
			`"arguments":"{\"city\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"call_1","content":"{\"temp\":21}"},` +
			`{"role":"assistant","tool_calls":[{"id":"call_2","type":"function","function":{"name":"f","arguments":"{}"}}]},` +
			`{"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"ok"}]}],` +
			`"tools":[{"type":"function","function":{"name":"weather","parameters":{"type":"object"}}}],"tool_choice":"auto"}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := oaiCall(t, "POST", s.tq.url+tc.path, "sdk-token-0123456789", tc.body, nil)
			object := "chat.completion"
			if tc.path == "/v1/completions" {
				object = "text_completion"
			}
			if tc.stream {
				for _, d := range readStream(t, a) {
					decodeResponse(t, []byte(d), object+".chunk")
				}
				return
			}
			require.Equal(t, http.StatusOK, a.status, "%s", a.body)
			r := decodeResponse(t, a.body, object)
			require.Len(t, r.Choices, 1)
			require.NotNil(t, r.Usage)
		})
	}
	reqs := s.worker.requests()
	require.Len(t, reqs, len(tests))
	assert.Equal(t, []api.ChatMessage{{Role: "system", Content: "Answer in French."}, {Role: "user", Content: "Hi\nthere"}},
		reqs[2].Messages, "developer is system; text parts are joined")
	assert.Equal(t, 8, reqs[1].MaxTokens, "max_completion_tokens is max_tokens")
	toolCall := func(id, name, args string) []api.ToolCall {
		c := api.ToolCall{ID: id, Type: "function"}
		c.Function.Name, c.Function.Arguments = name, json.RawMessage(args)
		return []api.ToolCall{c}
	}
	assert.Equal(t, []api.ChatMessage{{Role: "user"}, {Role: "assistant"}, {Role: "user", Content: "Weather in Paris?"},
		{Role: "assistant", ToolCalls: toolCall("call_1", "weather", `{"city":"Paris"}`)}, {Role: "tool", Content: `{"temp":21}`, ToolCallID: "call_1"},
		{Role: "assistant", ToolCalls: toolCall("call_2", "f", `{}`)}, {Role: "tool", Content: "ok", ToolCallID: "call_2"}},
		reqs[5].Messages, "empty and null contents are empty; calls are kept; tool results keep their call's id")
	assert.Equal(t, 16, reqs[0].MaxTokens)
}

func TestOpenAIBadRequests(t *testing.T) {
	s := newOAISetup(t, "")
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	m := `"model":"` + testModel + `"`
	tests := []struct {
		name, path, body string
		header           http.Header
		status           int
		typ, code, param string
	}{
		{"not JSON", "/v1/chat/completions", `{"model":`, nil, 400, "invalid_request_error", "invalid_request", ""},
		{"empty body", "/v1/chat/completions", ``, nil, 400, "invalid_request_error", "invalid_request", ""},
		{"no model", "/v1/chat/completions", `{` + msgs + `}`, nil, 400, "invalid_request_error", "invalid_request", "model"},
		{"an OpenAI model name", "/v1/chat/completions", `{"model":"gpt-4o",` + msgs + `}`, nil, 404, "not_found_error", "model_not_found", "model"},
		{"an OpenAI model name, completions", "/v1/completions", `{"model":"gpt-3.5-turbo-instruct","prompt":"hi"}`, nil, 404, "not_found_error", "model_not_found", "model"},
		{"no messages", "/v1/chat/completions", `{` + m + `}`, nil, 400, "invalid_request_error", "invalid_request", "messages"},
		{"empty messages", "/v1/chat/completions", `{` + m + `,"messages":[]}`, nil, 400, "invalid_request_error", "invalid_request", "messages"},
		{"function role", "/v1/chat/completions", `{` + m + `,"messages":[{"role":"function","name":"f","content":"x"}]}`, nil, 400, "invalid_request_error", "invalid_request", "messages[0].role"},
		{"null user content", "/v1/chat/completions", `{` + m + `,"messages":[{"role":"user","content":null}]}`, nil, 400, "invalid_request_error", "invalid_request", "messages[0].content"},
		{"tool message without content", "/v1/chat/completions", `{` + m + `,"messages":[{"role":"user","content":"hi"},{"role":"tool","tool_call_id":"c1"}]}`, nil, 400, "invalid_request_error", "invalid_request", "messages[1].content"},
		{"tool_call_id a number", "/v1/chat/completions", `{` + m + `,"messages":[{"role":"tool","tool_call_id":7,"content":"x"}]}`, nil, 400, "invalid_request_error", "invalid_request", "messages.tool_call_id"},
		{"image part", "/v1/chat/completions", `{` + m + `,"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, nil, 400, "invalid_request_error", "invalid_request", "messages[0].content"},
		{"control character", "/v1/chat/completions", `{` + m + `,"messages":[{"role":"user","content":"a\u001bb"}]}`, nil, 400, "invalid_request_error", "invalid_request", "messages[0].content"},
		{"max_tokens 0", "/v1/chat/completions", `{` + m + `,` + msgs + `,"max_tokens":0}`, nil, 400, "invalid_request_error", "invalid_request", "max_tokens"},
		{"max_tokens too large", "/v1/chat/completions", `{` + m + `,` + msgs + `,"max_tokens":100000}`, nil, 400, "invalid_request_error", "invalid_request", "max_tokens"},
		{"max_tokens a string", "/v1/chat/completions", `{` + m + `,` + msgs + `,"max_tokens":"10"}`, nil, 400, "invalid_request_error", "invalid_request", "max_tokens"},
		{"temperature 3", "/v1/chat/completions", `{` + m + `,` + msgs + `,"temperature":3}`, nil, 400, "invalid_request_error", "invalid_request", "temperature"},
		{"top_p 1.5", "/v1/chat/completions", `{` + m + `,` + msgs + `,"top_p":1.5}`, nil, 400, "invalid_request_error", "invalid_request", "top_p"},
		{"negative seed", "/v1/chat/completions", `{` + m + `,` + msgs + `,"seed":-1}`, nil, 400, "invalid_request_error", "invalid_request", "seed"},
		{"five stops", "/v1/chat/completions", `{` + m + `,` + msgs + `,"stop":["a","b","c","d","e"]}`, nil, 400, "invalid_request_error", "invalid_request", "stop"},
		{"stop a number", "/v1/chat/completions", `{` + m + `,` + msgs + `,"stop":42}`, nil, 400, "invalid_request_error", "invalid_request", "stop"},
		{"empty stop", "/v1/chat/completions", `{` + m + `,` + msgs + `,"stop":""}`, nil, 400, "invalid_request_error", "invalid_request", "stop"},
		{"n 2", "/v1/chat/completions", `{` + m + `,` + msgs + `,"n":2}`, nil, 400, "invalid_request_error", "invalid_request", "n"},
		{"stream a string", "/v1/chat/completions", `{` + m + `,` + msgs + `,"stream":"yes"}`, nil, 400, "invalid_request_error", "invalid_request", "stream"},
		{"bad node", "/v1/chat/completions", `{` + m + `,` + msgs + `,"node":"Bad_Node"}`, nil, 400, "invalid_request_error", "invalid_request", "node"},
		{"node and header disagree", "/v1/chat/completions", `{` + m + `,` + msgs + `,"node":"local"}`, http.Header{NodeHeader: {"mac"}}, 400, "invalid_request_error", "invalid_request", "node"},
		{"unknown node", "/v1/chat/completions", `{` + m + `,` + msgs + `}`, http.Header{NodeHeader: {"mac"}}, 404, "not_found_error", "node_not_found", ""},
		{"token prompt", "/v1/completions", `{` + m + `,"prompt":[1,2,3]}`, nil, 400, "invalid_request_error", "invalid_request", "prompt"},
		{"two prompts", "/v1/completions", `{` + m + `,"prompt":["a","b"]}`, nil, 400, "invalid_request_error", "invalid_request", "prompt"},
		{"no prompt", "/v1/completions", `{` + m + `}`, nil, 400, "invalid_request_error", "invalid_request", "prompt"},
		{"body over 1 MiB", "/v1/completions", `{` + m + `,"prompt":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`, nil, 413, "invalid_request_error", "payload_too_large", ""},
		{"unknown path", "/v1/embeddings", `{}`, nil, 404, "not_found_error", "not_found", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := oaiCall(t, "POST", s.tq.url+tc.path, "", tc.body, tc.header)
			assert.Equal(t, tc.status, a.status, "%s", a.body)
			var e sdkError
			require.NoError(t, json.Unmarshal(a.body, &e), "%s", a.body)
			require.NotNil(t, e.Error, "%s", a.body)
			assert.Equal(t, tc.typ, e.Error.Type)
			assert.Equal(t, tc.code, e.Error.Code)
			assert.NotEmpty(t, e.Error.Message)
			assert.NotEmpty(t, e.Error.RequestID)
			if tc.param == "" {
				assert.Nil(t, e.Error.Param)
			} else if assert.NotNil(t, e.Error.Param, "%s", a.body) {
				assert.Equal(t, tc.param, *e.Error.Param, "message %q", e.Error.Message)
			}
		})
	}
	for _, tc := range []struct{ method, path, allow string }{
		{"GET", "/v1/chat/completions", "POST"}, {"PUT", "/v1/completions", "POST"}, {"POST", "/v1/models", "GET, HEAD"},
		{"DELETE", "/v1/models/" + testModel, "GET, HEAD"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			a := oaiCall(t, tc.method, s.tq.url+tc.path, "", nil, nil)
			assert.Equal(t, http.StatusMethodNotAllowed, a.status)
			assert.Equal(t, tc.allow, a.header.Get("Allow"))
			var e sdkError
			require.NoError(t, json.Unmarshal(a.body, &e), "%s", a.body)
			require.NotNil(t, e.Error, "%s", a.body)
			assert.Equal(t, "invalid_request_error", e.Error.Type)
			assert.Equal(t, "method_not_allowed", e.Error.Code)
			assert.Contains(t, e.Error.Message, tc.method+" is not allowed")
		})
	}
	assert.Empty(t, s.worker.requests(), "no bad request reached the worker")
}

func TestOpenAIAuth(t *testing.T) {
	const token = "queen-token-0123456789"
	s := newOAISetup(t, token)
	for _, tc := range []struct {
		name, token, code string
	}{{"no token", "", "missing_api_key"}, {"wrong token", "wrong-token-0123456789", "invalid_api_key"}} {
		t.Run(tc.name, func(t *testing.T) {
			for _, ep := range []struct{ method, path string }{{"POST", "/v1/chat/completions"}, {"POST", "/v1/completions"},
				{"GET", "/v1/models"}, {"GET", "/v1/unknown"}} {
				a := oaiCall(t, ep.method, s.tq.url+ep.path, tc.token, chatBody(nil), nil)
				assert.Equal(t, http.StatusUnauthorized, a.status, ep.path)
				assert.Equal(t, `Bearer realm="rbee"`, a.header.Get("WWW-Authenticate"))
				var e sdkError
				require.NoError(t, json.Unmarshal(a.body, &e), "%s", a.body)
				require.NotNil(t, e.Error)
				assert.Equal(t, "authentication_error", e.Error.Type)
				assert.Equal(t, tc.code, e.Error.Code)
				assert.NotContains(t, string(a.body), token)
			}
		})
	}
	a := oaiCall(t, "POST", s.tq.url+"/v1/chat/completions", token, chatBody(nil), nil)
	assert.Equal(t, http.StatusOK, a.status, "%s", a.body)
	assert.Len(t, s.worker.requests(), 1, "only the authenticated request ran")
	// The queen's own endpoints keep their envelope.
	status, e := call(t, "GET", s.tq.url+"/v2/workers/list", "", nil, nil)
	assert.Equal(t, http.StatusUnauthorized, status)
	require.NotNil(t, e)
	assert.Equal(t, api.CodeMissingAPIKey, e.Code)
}

// TestOpenAIErrorsDuringTheTask: a failure before the first token keeps its
// HTTP status, even for a stream; one after it ends the stream with an error
// chunk and [DONE].
func TestOpenAIErrorsDuringTheTask(t *testing.T) {
	t.Run("spawn fails", func(t *testing.T) {
		hive := newFakeHive(t, "")
		hive.spawnErr = api.Errorf(api.CodeInsufficientRAM, "not enough RAM: need 900 MB, have 100 MB").With("required_mb", 900)
		tq := newTestQueen(t, Config{LocalHivePort: hive.port()})
		for _, stream := range []bool{false, true} {
			a := oaiCall(t, "POST", tq.url+"/v1/chat/completions", "", chatBody(map[string]any{"stream": stream}), nil)
			assert.Equal(t, http.StatusInsufficientStorage, a.status, "%s", a.body)
			assert.Equal(t, "application/json", a.header.Get("Content-Type"))
			var e sdkError
			require.NoError(t, json.Unmarshal(a.body, &e), "%s", a.body)
			require.NotNil(t, e.Error)
			assert.Equal(t, "server_error", e.Error.Type)
			assert.Equal(t, "insufficient_ram", e.Error.Code)
			assert.Equal(t, float64(900), e.Error.Details["required_mb"])
			assert.Equal(t, a.header.Get(httpx.RequestIDHeader), e.Error.RequestID)
		}
	})
	t.Run("the worker fails mid-stream", func(t *testing.T) {
		hive := newFakeHive(t, "")
		w := newFakeWorker(t, "w-fail")
		w.failAfter, w.failWith = 2, api.Errorf(api.CodeInferenceFailed, "inference failed: boom")
		hive.addWorker(w.info(testModel, api.StateIdle))
		tq := newTestQueen(t, Config{LocalHivePort: hive.port()})
		data := readStream(t, oaiCall(t, "POST", tq.url+"/v1/chat/completions", "", chatBody(map[string]any{"stream": true}), nil))
		require.Len(t, data, 4, "role, two tokens, the error: %q", data)
		var e sdkError
		require.NoError(t, json.Unmarshal([]byte(data[3]), &e))
		require.NotNil(t, e.Error, data[3])
		assert.Equal(t, "inference_failed", e.Error.Code)
		assert.Equal(t, "server_error", e.Error.Type)

		// Without streaming the whole answer is the error.
		a := oaiCall(t, "POST", tq.url+"/v1/chat/completions", "", chatBody(nil), nil)
		assert.Equal(t, http.StatusInternalServerError, a.status)
		assert.Contains(t, string(a.body), `"code":"inference_failed"`)
	})
	t.Run("cancelled through DELETE /v2/tasks", func(t *testing.T) {
		hive := newFakeHive(t, "")
		w := newFakeWorker(t, "w-slow")
		w.tokenDelay = 50 * time.Millisecond
		w.tokens = strings.Split(strings.Repeat("x ", 100), " ")
		hive.addWorker(w.info(testModel, api.StateIdle))
		tq := newTestQueen(t, Config{LocalHivePort: hive.port()})
		req, err := http.NewRequestWithContext(t.Context(), "POST", tq.url+"/v1/chat/completions",
			strings.NewReader(`{"model":"`+testModel+`","stream":true,"messages":[{"role":"user","content":"go"}]}`))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		id := resp.Header.Get(httpx.RequestIDHeader)
		buf := make([]byte, 1)
		_, err = resp.Body.Read(buf) // the stream started
		require.NoError(t, err)
		status, _ := call(t, "DELETE", tq.url+"/v2/tasks/"+id, "", nil, nil)
		assert.Equal(t, http.StatusNoContent, status)
		rest, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		a := oaiAnswer{status: resp.StatusCode, header: resp.Header, body: append(buf, rest...)}
		data := readStream(t, a)
		last := decodeResponse(t, []byte(data[len(data)-1]), "chat.completion.chunk")
		require.Len(t, last.Choices, 1)
		require.NotNil(t, last.Choices[0].FinishReason)
		assert.Equal(t, "stop", *last.Choices[0].FinishReason)
		assert.Less(t, len(data), 50, "cut short")
	})
}

func TestOpenAIModels(t *testing.T) {
	hive := newFakeHive(t, "")
	a := newRecWorker(t, "x")
	b := newRecWorker(t, "y")
	hive.addWorker(b.info("w-b", "hf:org/zeta-GGUF:Q4_K_M"))
	hive.addWorker(a.info("w-a", testModel))
	hive.addWorker(a.info("w-a2", testModel))
	tq := newTestQueen(t, Config{LocalHivePort: hive.port()})

	ans := oaiCall(t, "GET", tq.url+"/v1/models", "", nil, nil)
	require.Equal(t, http.StatusOK, ans.status, "%s", ans.body)
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID      string   `json:"id"`
			Object  string   `json:"object"`
			Created *int64   `json:"created"`
			OwnedBy string   `json:"owned_by"`
			Nodes   []string `json:"nodes"`
			Loaded  bool     `json:"loaded"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(ans.body, &list))
	assert.Equal(t, "list", list.Object)
	require.Len(t, list.Data, 2, "one entry per model: %s", ans.body)
	assert.Equal(t, testModel, list.Data[0].ID, "sorted by id")
	assert.Equal(t, "hf:org/zeta-GGUF:Q4_K_M", list.Data[1].ID)
	for _, m := range list.Data {
		assert.Equal(t, "model", m.Object)
		assert.NotNil(t, m.Created, "created is there")
		assert.Equal(t, "rbee", m.OwnedBy)
		assert.Equal(t, []string{"local"}, m.Nodes)
		assert.True(t, m.Loaded)
	}

	one := oaiCall(t, "GET", tq.url+"/v1/models/hf:org/zeta-GGUF:Q4_K_M", "", nil, nil)
	require.Equal(t, http.StatusOK, one.status, "%s", one.body)
	assert.Contains(t, string(one.body), `"id":"hf:org/zeta-GGUF:Q4_K_M"`)
	for _, id := range []string{"hf:org/other", "gpt-4o"} {
		missing := oaiCall(t, "GET", tq.url+"/v1/models/"+id, "", nil, nil)
		assert.Equal(t, http.StatusNotFound, missing.status, id)
		assert.Contains(t, string(missing.body), `"code":"model_not_found"`, id)
	}

	// Without a hive there is nothing to list, and no hive is started.
	empty := newTestQueen(t, Config{})
	ans = oaiCall(t, "GET", empty.url+"/v1/models", "", nil, nil)
	require.Equal(t, http.StatusOK, ans.status)
	assert.JSONEq(t, `{"object":"list","data":[]}`, string(ans.body))
}
