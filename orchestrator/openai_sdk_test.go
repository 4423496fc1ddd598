package orchestrator

import (
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/gguf"
	"rbee/internal/synth"
	"rbee/internal/testutil"
	"rbee/internal/tokenizer"
)

// sdkAPIError returns err as the official SDK's error, failing the test if
// it is not one.
func sdkAPIError(t *testing.T, err error) *openai.Error {
	t.Helper()
	var e *openai.Error
	require.True(t, errors.As(err, &e), "not an OpenAI API error: %v", err)
	return e
}

// TestOpenAIOfficialGoSDK drives a queen on loopback, with a real hive and a
// real worker on a tiny chatml model, through OpenAI's official Go client,
// as an application would: an unknown model is the SDK's 404
// model_not_found; a history with empty turns, a tool call and its result
// is answered, formatted with the model's template (the call written in
// the Hermes format, since the template has no tool format of its own); a stream with
// include_usage has "usage": null in every chunk but the last, which has
// the totals; an unknown route is 404 and a wrong method 405 with Allow.
func TestOpenAIOfficialGoSDK(t *testing.T) {
	skipShort(t)
	spec := synth.Tiny("Q8_0")
	spec.ChatTemplate = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}" +
		"{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
	spec.SpecialTokens = []string{"<|im_start|>", "<|im_end|>"}
	path := filepath.Join(t.TempDir(), "chat.gguf")
	require.NoError(t, synth.Write(path, spec))
	model := "file:" + path

	const token = "sdk-queen-token-0123456789"
	q, err := New(Config{Home: t.TempDir(), Binary: testutil.RbeeBinary(t), LocalHivePort: testutil.FreePort(t),
		LocalWorkerPortStart: testutil.FreePort(t), HiveRetryDelays: []time.Duration{0}, Token: token})
	require.NoError(t, err)
	url := newHTTPTestServer(t, q)
	t.Cleanup(func() { assert.NoError(t, q.Close()) })
	client := openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey(token), option.WithMaxRetries(0))
	ctx := t.Context()

	t.Run("unknown model", func(t *testing.T) {
		for _, m := range []string{"gpt-4o", "file:/nonexistent/model.gguf"} {
			_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: m,
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")}})
			e := sdkAPIError(t, err)
			assert.Equal(t, http.StatusNotFound, e.StatusCode, m)
			assert.Equal(t, "model_not_found", e.Code, m)
			assert.NotEmpty(t, e.Message, m)
		}
		e := sdkAPIError(t, client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")}}).Err())
		assert.Equal(t, http.StatusNotFound, e.StatusCode, "a stream too")
		assert.Equal(t, "model_not_found", e.Code)
		assert.Equal(t, "model", e.Param)

		_, err := client.Completions.New(ctx, openai.CompletionNewParams{Model: "gpt-3.5-turbo-instruct",
			Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Hi")}})
		e = sdkAPIError(t, err)
		assert.Equal(t, http.StatusNotFound, e.StatusCode)
		assert.Equal(t, "model_not_found", e.Code)

		_, err = client.Models.Get(ctx, "gpt-4o")
		e = sdkAPIError(t, err)
		assert.Equal(t, http.StatusNotFound, e.StatusCode)
		assert.Equal(t, "model_not_found", e.Code)
	})

	// A history as chat interfaces send it back: an empty user turn and an
	// empty reply, a function call (no content) and its result.
	history := []openai.ChatCompletionMessageParamUnion{
		openai.SystemMessage("Be brief."),
		openai.UserMessage(""),
		openai.AssistantMessage(""),
		openai.UserMessage("Once upon a time"),
		{OfAssistant: &openai.ChatCompletionAssistantMessageParam{ToolCalls: []openai.ChatCompletionMessageToolCallUnionParam{
			{OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{ID: "call_1",
				Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: "story", Arguments: `{"n":1}`}}}}}},
		openai.ToolMessage(`{"story":"a fox"}`, "call_1"),
	}
	// The prompt the worker must build from it with the model's template.
	const formatted = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n" +
		"<|im_start|>user\nOnce upon a time<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"story\", \"arguments\": {\"n\":1}}\n</tool_call><|im_end|>\n" +
		"<|im_start|>tool\n{\"story\":\"a fox\"}<|im_end|>\n<|im_start|>assistant\n"
	f, err := gguf.Open(path)
	require.NoError(t, err)
	tok, err := tokenizer.FromGGUF(f)
	require.NoError(t, err)
	promptTokens := int64(len(tok.Encode(formatted, true, true)))
	require.NoError(t, f.Close())
	params := openai.ChatCompletionNewParams{Model: model, Messages: history, MaxTokens: openai.Int(8),
		Temperature: openai.Float(0), Seed: openai.Int(1)}

	var reply string
	var usage openai.CompletionUsage
	t.Run("empty turns, a tool call and its result", func(t *testing.T) {
		resp, err := client.Chat.Completions.New(ctx, params)
		require.NoError(t, err)
		require.Len(t, resp.Choices, 1)
		reply = resp.Choices[0].Message.Content
		usage = resp.Usage
		assert.Equal(t, promptTokens, resp.Usage.PromptTokens, "the worker formatted the history with the model's template")
		assert.Positive(t, resp.Usage.CompletionTokens)
		assert.Equal(t, resp.Usage.PromptTokens+resp.Usage.CompletionTokens, resp.Usage.TotalTokens)

		// The formatted prompt as a raw completion: the same greedy reply.
		cmpl, err := client.Completions.New(ctx, openai.CompletionNewParams{Model: openai.CompletionNewParamsModel(model),
			Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(formatted)}, MaxTokens: openai.Int(8),
			Temperature: openai.Float(0), Seed: openai.Int(1)})
		require.NoError(t, err)
		require.Len(t, cmpl.Choices, 1)
		assert.Equal(t, reply, cmpl.Choices[0].Text)
		assert.Equal(t, promptTokens, cmpl.Usage.PromptTokens)
	})

	t.Run("stream with include_usage", func(t *testing.T) {
		if usage.TotalTokens == 0 { // run alone: the non-streaming answer to compare with
			resp, err := client.Chat.Completions.New(ctx, params)
			require.NoError(t, err)
			require.Len(t, resp.Choices, 1)
			reply, usage = resp.Choices[0].Message.Content, resp.Usage
		}
		sp := params
		sp.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := client.Chat.Completions.NewStreaming(ctx, sp)
		var chunks []openai.ChatCompletionChunk
		for stream.Next() {
			chunks = append(chunks, stream.Current())
		}
		require.NoError(t, stream.Err())
		require.NoError(t, stream.Close())
		require.GreaterOrEqual(t, len(chunks), 3, "role, content, finish and usage")

		var text strings.Builder
		for i, c := range chunks {
			var raw map[string]json.RawMessage
			require.NoError(t, json.Unmarshal([]byte(c.RawJSON()), &raw), "%s", c.RawJSON())
			u, has := raw["usage"]
			require.True(t, has, "chunk %d has a usage key: %s", i, c.RawJSON())
			if i < len(chunks)-1 {
				assert.Equal(t, "null", string(u), "chunk %d: usage is null before the last chunk", i)
				assert.False(t, c.JSON.Usage.Valid(), "the SDK sees null")
				require.Len(t, c.Choices, 1)
				text.WriteString(c.Choices[0].Delta.Content)
				continue
			}
			assert.Empty(t, c.Choices, "the usage chunk has no choices")
			assert.True(t, c.JSON.Usage.Valid())
			assert.Equal(t, usage.PromptTokens, c.Usage.PromptTokens)
			assert.Equal(t, usage.CompletionTokens, c.Usage.CompletionTokens)
			assert.Equal(t, usage.TotalTokens, c.Usage.TotalTokens)
		}
		assert.Equal(t, reply, text.String(), "the same reply as without streaming")
	})

	t.Run("unknown route", func(t *testing.T) {
		e := sdkAPIError(t, client.Post(ctx, "embeddings", map[string]any{"model": model, "input": "hi"}, nil))
		assert.Equal(t, http.StatusNotFound, e.StatusCode)
		assert.Equal(t, "not_found", e.Code)
		assert.Equal(t, "not_found_error", e.Type)
		assert.Contains(t, e.Message, "/v1/embeddings")

		// Outside /v1/ the queen answers in rbee's envelope.
		a := oaiCall(t, "GET", url+"/v2/embeddings", token, nil, nil)
		assert.Equal(t, http.StatusNotFound, a.status)
		var env api.Envelope
		require.NoError(t, json.Unmarshal(a.body, &env), "%s", a.body)
		require.NotNil(t, env.Error, "%s", a.body)
		assert.Equal(t, api.CodeNotFound, env.Error.Code)
	})

	t.Run("wrong method", func(t *testing.T) {
		e := sdkAPIError(t, client.Execute(ctx, http.MethodGet, "chat/completions", nil, nil))
		assert.Equal(t, http.StatusMethodNotAllowed, e.StatusCode)
		assert.Equal(t, "method_not_allowed", e.Code)
		require.NotNil(t, e.Response)
		assert.Equal(t, "POST", e.Response.Header.Get("Allow"))

		a := oaiCall(t, "GET", url+"/v2/tasks", token, nil, nil)
		assert.Equal(t, http.StatusMethodNotAllowed, a.status)
		assert.Equal(t, "POST", a.header.Get("Allow"))
		var env api.Envelope
		require.NoError(t, json.Unmarshal(a.body, &env), "%s", a.body)
		require.NotNil(t, env.Error, "%s", a.body)
		assert.Equal(t, api.CodeMethodNotAllowed, env.Error.Code)
	})
}
