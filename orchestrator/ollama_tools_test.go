package orchestrator

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ollama "github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
	"rbee/internal/synth"
	"rbee/internal/testutil"
)

// TestOllamaToolsAndLogprobs sends the same chat with a tool, an earlier
// call and the tool's reply through ollama's client and through OpenAI's:
// the worker builds the same prompt from both (the same prompt token
// count), the greedy replies are the same text, and the log-probabilities
// of their tokens and the alternatives are the same numbers, streamed or
// not.
func TestOllamaToolsAndLogprobs(t *testing.T) {
	skipShort(t)
	spec := synth.Tiny("Q8_0")
	spec.ChatTemplate = hermesTemplate
	spec.Context = 2048
	spec.SpecialTokens = []string{"<|im_start|>", "<|im_end|>"}
	path := filepath.Join(t.TempDir(), "tools.gguf")
	require.NoError(t, synth.Write(path, spec))
	model := "file:" + path
	q, err := New(Config{Home: t.TempDir(), Binary: testutil.RbeeBinary(t), LocalHivePort: testutil.FreePort(t),
		LocalWorkerPortStart: testutil.FreePort(t), HiveRetryDelays: []time.Duration{0}})
	require.NoError(t, err)
	base := newHTTPTestServer(t, q)
	t.Cleanup(func() { assert.NoError(t, q.Close()) })
	client := ollamaClient(t, base, "")
	oai := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithMaxRetries(0))
	ctx := t.Context()

	const maxTokens = 6
	ask := func() (*openai.ChatCompletion, error) {
		return oai.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model,
			Messages: []openai.ChatCompletionMessageParamUnion{
				openai.SystemMessage("Be brief."),
				openai.UserMessage("Weather in Paris?"),
				{OfAssistant: &openai.ChatCompletionAssistantMessageParam{ToolCalls: []openai.ChatCompletionMessageToolCallUnionParam{
					{OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{ID: "call_1",
						Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: "get_weather", Arguments: `{"city": "Paris"}`}}}}}},
				openai.ToolMessage(`{"temp_c": 21}`, "call_1"),
			},
			Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_weather",
				Description: openai.String("Current weather in a city"),
				Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{
					"city": map[string]any{"type": "string"}}, "required": []string{"city"}}})},
			Temperature: openai.Float(0), MaxTokens: openai.Int(maxTokens), Logprobs: openai.Bool(true), TopLogprobs: openai.Int(3)},
			// The schema as ollama's client writes it: its keys in the
			// order of its struct, where the SDK's map sorts them (the
			// worker keeps the order it is given).
			option.WithJSONSet("tools.0.function.parameters",
				json.RawMessage(`{"type":"object","required":["city"],"properties":{"city":{"type":"string"}}}`)))
	}
	oaiAnswer, err := ask()
	require.NoError(t, err)
	want := oaiAnswer.Choices[0].Message.Content
	type entry struct {
		token   string
		logprob float64
		top     []string
	}
	var wantLP []entry
	for _, c := range oaiAnswer.Choices[0].Logprobs.Content {
		e := entry{token: c.Token, logprob: c.Logprob}
		for _, tl := range c.TopLogprobs {
			e.top = append(e.top, tl.Token)
		}
		wantLP = append(wantLP, e)
	}
	require.NotEmpty(t, wantLP)

	args := ollama.NewToolCallFunctionArguments()
	args.Set("city", "Paris")
	props := ollama.NewToolPropertiesMap()
	props.Set("city", ollama.ToolProperty{Type: ollama.PropertyType{"string"}})
	req := &ollama.ChatRequest{Model: model,
		Messages: []ollama.Message{
			{Role: "system", Content: "Be brief."},
			{Role: "user", Content: "Weather in Paris?"},
			{Role: "assistant", ToolCalls: []ollama.ToolCall{{ID: "call_1", Function: ollama.ToolCallFunction{Name: "get_weather", Arguments: args}}}},
			{Role: "tool", Content: `{"temp_c": 21}`, ToolCallID: "call_1"},
		},
		Tools: ollama.Tools{{Type: "function", Function: ollama.ToolFunction{Name: "get_weather", Description: "Current weather in a city",
			Parameters: ollama.ToolFunctionParameters{Type: "object", Required: []string{"city"}, Properties: props}}}},
		Options: map[string]any{"temperature": 0, "num_predict": maxTokens}, Logprobs: true, TopLogprobs: 3}
	for _, stream := range []bool{false, true} {
		req.Stream = &stream
		var text string
		var got []entry
		var last ollama.ChatResponse
		require.NoError(t, client.Chat(ctx, req, func(r ollama.ChatResponse) error {
			text += r.Message.Content
			for _, lp := range r.Logprobs {
				e := entry{token: lp.Token, logprob: lp.Logprob}
				for _, tl := range lp.TopLogprobs {
					e.top = append(e.top, tl.Token)
				}
				got = append(got, e)
			}
			last = r
			return nil
		}))
		assert.Equal(t, want, text, "stream %v", stream)
		assert.Equal(t, int(oaiAnswer.Usage.PromptTokens), last.PromptEvalCount, "the same prompt, stream %v", stream)
		require.Len(t, got, len(wantLP), "stream %v", stream)
		for i := range got {
			assert.Equal(t, wantLP[i].token, got[i].token, "token %d", i)
			assert.InDelta(t, wantLP[i].logprob, got[i].logprob, 1e-9, "token %d", i)
			assert.Equal(t, wantLP[i].top, got[i].top, "token %d", i)
		}
	}
}

// A worker whose reply was a tool call gives ollama's client the call:
// its name and its arguments as an object, streamed in an object before
// the last, or in the whole message.
func TestOllamaToolCallAnswer(t *testing.T) {
	worker := httptest.NewServer(httpx.Middleware(nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req api.InferenceRequest
		if e := httpx.DecodeJSON(w, r, &req); e != nil {
			httpx.WriteError(w, r, e)
			return
		}
		call := api.ToolCall{ID: "call_abc", Type: "function"}
		call.Function.Name, call.Function.Arguments = req.Tools[0].Function.Name, json.RawMessage(`{"city":"Paris"}`)
		out := sse.NewWriter(w)
		_ = out.Send(api.Event{Kind: api.KindDone, Done: &api.Done{Done: true, TotalTokens: 9, PromptTokens: 30,
			StopReason: api.StopEOS, ToolCalls: []api.ToolCall{call}}})
		_ = out.Close()
	})))
	t.Cleanup(worker.Close)
	hive := newFakeHive(t, "")
	hive.addWorker(newRecWorker(t).info("w-tools", testModel))
	hive.mu.Lock()
	hive.workers[0].URL = worker.URL
	hive.mu.Unlock()
	tq := newTestQueen(t, Config{LocalHivePort: hive.port()})
	client := ollamaClient(t, tq.url, "")

	props := ollama.NewToolPropertiesMap()
	props.Set("city", ollama.ToolProperty{Type: ollama.PropertyType{"string"}})
	for _, stream := range []bool{true, false} {
		var calls []ollama.ToolCall
		var last ollama.ChatResponse
		require.NoError(t, client.Chat(t.Context(), &ollama.ChatRequest{Model: testModel, Stream: &stream,
			Messages: []ollama.Message{{Role: "user", Content: "Weather in Paris?"}},
			Tools: ollama.Tools{{Type: "function", Function: ollama.ToolFunction{Name: "get_weather",
				Parameters: ollama.ToolFunctionParameters{Type: "object", Properties: props}}}}},
			func(r ollama.ChatResponse) error {
				calls = append(calls, r.Message.ToolCalls...)
				last = r
				return nil
			}))
		require.Len(t, calls, 1, "stream %v", stream)
		assert.Equal(t, "get_weather", calls[0].Function.Name)
		assert.Equal(t, "call_abc", calls[0].ID)
		city, ok := calls[0].Function.Arguments.Get("city")
		assert.True(t, ok)
		assert.Equal(t, "Paris", city)
		assert.True(t, last.Done)
		assert.Equal(t, "stop", last.DoneReason)
	}
}

// format through ollama's client constrains the reply: a JSON schema gives
// an object with the required properties of the right types for every
// seed at temperature 1, and "json" gives a JSON value, streamed too.
func TestOllamaFormat(t *testing.T) {
	skipShort(t)
	model := chatModel(t)
	q, err := New(Config{Home: t.TempDir(), Binary: testutil.RbeeBinary(t), LocalHivePort: testutil.FreePort(t),
		LocalWorkerPortStart: testutil.FreePort(t), HiveRetryDelays: []time.Duration{0}})
	require.NoError(t, err)
	base := newHTTPTestServer(t, q)
	t.Cleanup(func() { assert.NoError(t, q.Close()) })
	client := ollamaClient(t, base, "")
	ctx := t.Context()
	schema := json.RawMessage(`{"type":"object","properties":{"name":{"type":"string","maxLength":12},"age":{"type":"integer"},` +
		`"ok":{"type":"boolean"}},"required":["name","age","ok"],"additionalProperties":false}`)
	msgs := []ollama.Message{{Role: "user", Content: "Describe a person as JSON."}}
	for seed := range 5 {
		var text string
		require.NoError(t, client.Chat(ctx, &ollama.ChatRequest{Model: model, Messages: msgs, Format: schema,
			Options: map[string]any{"temperature": 1, "seed": seed, "num_predict": 200}}, func(r ollama.ChatResponse) error {
			text += r.Message.Content
			return nil
		}))
		dec := json.NewDecoder(strings.NewReader(text))
		dec.DisallowUnknownFields()
		var v struct {
			Name *string `json:"name"`
			Age  *int64  `json:"age"`
			OK   *bool   `json:"ok"`
		}
		require.NoError(t, dec.Decode(&v), "seed %d: %q", seed, text)
		assert.True(t, v.Name != nil && v.Age != nil && v.OK != nil, "seed %d: required properties in %q", seed, text)
	}
	stream := false
	var text string
	require.NoError(t, client.Generate(ctx, &ollama.GenerateRequest{Model: model, Prompt: "Some JSON:", Format: json.RawMessage(`"json"`), Stream: &stream,
		Options: map[string]any{"temperature": 1, "seed": 3, "num_predict": 64}}, func(r ollama.GenerateResponse) error {
		text += r.Response
		return nil
	}))
	assert.True(t, json.Valid([]byte(strings.TrimSpace(text))), "%q", text)
}
