package orchestrator

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/gguf"
	"rbee/internal/synth"
	"rbee/internal/tokenizer"
)

// hermesTemplate is a chatml template with a Hermes-style tool format
// (written for these tests): tools in the system turn, calls between
// <tool_call> tags, results in <tool_response> tags of a user turn.
const hermesTemplate = "{% if tools %}<|im_start|>system\n{{ tools | tojson }}<|im_end|>\n{% endif %}" +
	"{% for m in messages %}{% if m.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m.content }}\n</tool_response><|im_end|>\n" +
	"{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}{% for c in m.tool_calls %}<tool_call>\n{{ c.function | tojson }}\n</tool_call>{% endfor %}<|im_end|>\n" +
	"{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"

// weatherTool is the tool of these tests, as the SDK sends it.
func weatherTool() openai.ChatCompletionToolUnionParam {
	return openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_weather",
		Description: openai.String("Current weather in a city"),
		Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{
			"city": map[string]any{"type": "string"}}, "required": []string{"city"}, "additionalProperties": false}})
}

// TestOpenAITools offers a function through OpenAI's Go client to a real
// queen and worker on a model whose template has the Hermes tool format:
// the tools are described in the system turn, the assistant's earlier call
// and the tool's reply are written back in the template's format (the
// prompt the worker built has exactly the tokens of the expected text),
// tool_choice none leaves the tools out, a stream says what the answer
// says, and malformed tools are clear 400s naming the field.
func TestOpenAITools(t *testing.T) {
	skipShort(t)
	spec := synth.Tiny("Q8_0")
	spec.ChatTemplate = hermesTemplate
	spec.Context = 2048 // room for the tools
	spec.SpecialTokens = []string{"<|im_start|>", "<|im_end|>"}
	path := filepath.Join(t.TempDir(), "tools.gguf")
	require.NoError(t, synth.Write(path, spec))
	model := "file:" + path
	client := startSDKQueen(t)
	ctx := t.Context()

	f, err := gguf.Open(path)
	require.NoError(t, err)
	tok, err := tokenizer.FromGGUF(f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	count := func(text string) int64 { return int64(len(tok.Encode(text, true, true))) }

	history := []openai.ChatCompletionMessageParamUnion{
		openai.SystemMessage("Be brief."),
		openai.UserMessage("Weather in Paris?"),
		{OfAssistant: &openai.ChatCompletionAssistantMessageParam{ToolCalls: []openai.ChatCompletionMessageToolCallUnionParam{
			{OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{ID: "call_1",
				Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: "get_weather", Arguments: `{"city": "Paris"}`}}}}}},
		openai.ToolMessage(`{"temp_c": 21}`, "call_1"),
	}
	const toolJSON = `{"function":{"description":"Current weather in a city","name":"get_weather","parameters":` +
		`{"additionalProperties":false,"properties":{"city":{"type":"string"}},"required":["city"],"type":"object"}},"type":"function"}`
	const turns = "<|im_start|>user\nWeather in Paris?<|im_end|>\n" +
		"<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}\n</tool_call><|im_end|>\n" +
		"<|im_start|>user\n<tool_response>\n{\"temp_c\": 21}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
	withTools := "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou can call functions to help with the request. Their signatures are inside <tools></tools>:\n" +
		"<tools>\n" + toolJSON + "\n</tools>\n\nTo call one, answer with a JSON object of its name and arguments between <tool_call> and </tool_call>, " +
		"one call per block:\n<tool_call>\n{\"name\": \"function name\", \"arguments\": {\"argument\": \"value\"}}\n</tool_call><|im_end|>\n" + turns
	withoutTools := "<|im_start|>system\nBe brief.<|im_end|>\n" + turns

	params := openai.ChatCompletionNewParams{Model: model, Messages: history, Tools: []openai.ChatCompletionToolUnionParam{weatherTool()},
		MaxTokens: openai.Int(8), Temperature: openai.Float(0)}

	var answer *openai.ChatCompletion
	t.Run("auto: the tools and the tool's reply are in the prompt", func(t *testing.T) {
		resp, err := client.Chat.Completions.New(ctx, params)
		if err != nil {
			t.Fatalf("%s", sdkAPIError(t, err).RawJSON())
		}
		require.Len(t, resp.Choices, 1)
		assert.Equal(t, count(withTools), resp.Usage.PromptTokens, "the worker's prompt is the expected text")
		assert.Contains(t, []string{"stop", "length", "tool_calls"}, resp.Choices[0].FinishReason)
		if resp.Choices[0].FinishReason == "tool_calls" {
			require.NotEmpty(t, resp.Choices[0].Message.ToolCalls)
			assert.Equal(t, "get_weather", resp.Choices[0].Message.ToolCalls[0].Function.Name)
		}
		answer = resp
	})

	t.Run("auto streamed says the same", func(t *testing.T) {
		if answer == nil {
			t.Skip("needs the non-streamed answer")
		}
		stream := client.Chat.Completions.NewStreaming(ctx, params)
		var acc openai.ChatCompletionAccumulator
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		require.NoError(t, stream.Err())
		require.Len(t, acc.Choices, 1)
		assert.Equal(t, answer.Choices[0].Message.Content, acc.Choices[0].Message.Content)
		assert.Equal(t, answer.Choices[0].FinishReason, acc.Choices[0].FinishReason)
		assert.Equal(t, len(answer.Choices[0].Message.ToolCalls), len(acc.Choices[0].Message.ToolCalls))
	})

	t.Run("none: the tools are left out", func(t *testing.T) {
		p := params
		p.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("none")}
		resp, err := client.Chat.Completions.New(ctx, p)
		require.NoError(t, err)
		assert.Equal(t, count(withoutTools), resp.Usage.PromptTokens)
		assert.Empty(t, resp.Choices[0].Message.ToolCalls)
		assert.NotEqual(t, "tool_calls", resp.Choices[0].FinishReason)
	})

	// A tool whose calls are short whatever a random model writes (but for
	// whitespace: the grammar allows up to 40 bytes between symbols, which
	// a random model likes; max_tokens leaves room for that).
	units := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "set_units",
		Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{
			"units": map[string]any{"enum": []string{"metric", "imperial"}}, "alerts": map[string]any{"type": "boolean"},
			"place": map[string]any{"type": "string", "maxLength": 8}},
			"required": []string{"units", "alerts"}, "additionalProperties": false}})
	checkUnits := func(t *testing.T, c openai.ChatCompletionMessageToolCallUnion) {
		t.Helper()
		assert.Equal(t, "set_units", c.Function.Name)
		assert.Regexp(t, `^call_[A-Za-z0-9]{9}$`, c.ID)
		var args map[string]any
		require.NoError(t, json.Unmarshal([]byte(c.Function.Arguments), &args), c.Function.Arguments)
		assert.Contains(t, []any{"metric", "imperial"}, args["units"], c.Function.Arguments)
		assert.IsType(t, true, args["alerts"], c.Function.Arguments)
		for k, v := range args {
			assert.Contains(t, []string{"units", "alerts", "place"}, k, "no other property")
			if k == "place" {
				require.IsType(t, "", v)
				assert.LessOrEqual(t, len([]rune(v.(string))), 8)
			}
		}
	}
	ask := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Use metric units.")}
	required := openai.ChatCompletionNewParams{Model: model, Messages: ask, MaxTokens: openai.Int(600), Temperature: openai.Float(1),
		Tools:      []openai.ChatCompletionToolUnionParam{weatherTool(), units},
		ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}}

	t.Run("required: the call parses into a declared function's arguments", func(t *testing.T) {
		// Any of the two tools may be called: get_weather's city is any
		// string, so a random model may run out of tokens inside it; only
		// set_units is offered here to keep the call short.
		p := required
		p.Tools = []openai.ChatCompletionToolUnionParam{units}
		for seed := range int64(5) {
			p.Seed = openai.Int(seed)
			resp, err := client.Chat.Completions.New(ctx, p)
			require.NoError(t, err)
			c := resp.Choices[0]
			require.Equal(t, "tool_calls", c.FinishReason, "seed %d: %s", seed, c.Message.RawJSON())
			require.Len(t, c.Message.ToolCalls, 1)
			checkUnits(t, c.Message.ToolCalls[0])
			assert.False(t, c.Message.JSON.Content.Valid(), "no text besides the call")
		}
	})

	t.Run("named: streamed delta.tool_calls reassemble to the non-streamed call", func(t *testing.T) {
		p := required
		p.ToolChoice = openai.ToolChoiceOptionFunctionToolChoice(openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "set_units"})
		p.Temperature, p.Seed = openai.Float(0), openai.Int(3)
		resp, err := client.Chat.Completions.New(ctx, p)
		require.NoError(t, err)
		c := resp.Choices[0]
		require.Equal(t, "tool_calls", c.FinishReason, "%s", c.Message.RawJSON())
		require.Len(t, c.Message.ToolCalls, 1)
		checkUnits(t, c.Message.ToolCalls[0])

		stream := client.Chat.Completions.NewStreaming(ctx, p)
		var acc openai.ChatCompletionAccumulator
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		require.NoError(t, stream.Err())
		require.Len(t, acc.Choices, 1)
		assert.Equal(t, "tool_calls", acc.Choices[0].FinishReason)
		require.Len(t, acc.Choices[0].Message.ToolCalls, 1)
		got := acc.Choices[0].Message.ToolCalls[0]
		assert.Equal(t, c.Message.ToolCalls[0].Function.Name, got.Function.Name)
		assert.Equal(t, c.Message.ToolCalls[0].Function.Arguments, got.Function.Arguments)
		assert.NotEmpty(t, got.ID)
	})

	t.Run("bad tools", func(t *testing.T) {
		named := func(name string) openai.ChatCompletionToolChoiceOptionUnionParam {
			return openai.ToolChoiceOptionFunctionToolChoice(openai.ChatCompletionNamedToolChoiceFunctionParam{Name: name})
		}
		badName := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get weather"})
		badCall := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x"),
			{OfAssistant: &openai.ChatCompletionAssistantMessageParam{ToolCalls: []openai.ChatCompletionMessageToolCallUnionParam{
				{OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{ID: "c",
					Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: "get_weather", Arguments: `{oops`}}}}}}}
		for name, tc := range map[string]struct {
			p     openai.ChatCompletionNewParams
			param string
		}{
			"named function not offered": {openai.ChatCompletionNewParams{Model: model, Messages: history,
				Tools: params.Tools, ToolChoice: named("send_mail")}, "tool_choice"},
			"required without tools": {openai.ChatCompletionNewParams{Model: model, Messages: history,
				ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}}, "tool_choice"},
			"a space in a function name": {openai.ChatCompletionNewParams{Model: model, Messages: history,
				Tools: []openai.ChatCompletionToolUnionParam{badName}}, "tools[0].function.name"},
			"arguments that are not JSON": {openai.ChatCompletionNewParams{Model: model, Messages: badCall}, "messages[1].tool_calls[0].function.arguments"},
		} {
			_, err := client.Chat.Completions.New(ctx, tc.p)
			e := sdkAPIError(t, err)
			assert.Equal(t, http.StatusBadRequest, e.StatusCode, name)
			assert.Equal(t, "invalid_request", e.Code, name)
			assert.Equal(t, tc.param, e.Param, name)
			assert.False(t, strings.Contains(e.Message, "panic"), name)
		}
	})
}

// TestOpenAIToolCallsShape checks the queen's side of function calling
// with OpenAI's Go client against a worker that reports two calls on its
// done event: the request's tools and tool_choice reach the worker; the
// answer has message.tool_calls, null content and finish_reason
// tool_calls; the stream's delta.tool_calls, accumulated by the SDK,
// reassemble to the same calls.
func TestOpenAIToolCallsShape(t *testing.T) {
	s := newOAISetup(t, "", "")
	call := func(id, name, args string) api.ToolCall {
		var c api.ToolCall
		c.ID, c.Type, c.Function.Name, c.Function.Arguments = id, "function", name, json.RawMessage(args)
		return c
	}
	s.worker.calls = []api.ToolCall{call("call_a1b2c3d4e", "get_weather", `{"city":"Paris"}`), call("call_f5g6h7i8j", "get_weather", `{"city":"Oslo"}`)}
	client := openai.NewClient(option.WithBaseURL(s.tq.url+"/v1/"), option.WithMaxRetries(0))
	params := openai.ChatCompletionNewParams{Model: testModel, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather?")},
		Tools:      []openai.ChatCompletionToolUnionParam{weatherTool()},
		ToolChoice: openai.ToolChoiceOptionFunctionToolChoice(openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "get_weather"})}

	resp, err := client.Chat.Completions.New(t.Context(), params)
	require.NoError(t, err)
	require.Len(t, resp.Choices, 1)
	c := resp.Choices[0]
	assert.Equal(t, "tool_calls", c.FinishReason)
	assert.False(t, c.Message.JSON.Content.Valid(), "content is null: %s", c.Message.RawJSON())
	require.Len(t, c.Message.ToolCalls, 2)
	for i, want := range s.worker.calls {
		got := c.Message.ToolCalls[i]
		assert.Equal(t, want.ID, got.ID)
		assert.Equal(t, "function", got.Type)
		assert.Equal(t, want.Function.Name, got.Function.Name)
		assert.JSONEq(t, string(want.Function.Arguments), got.Function.Arguments)
	}

	reqs := s.worker.requests()
	require.Len(t, reqs, 1)
	require.Len(t, reqs[0].Tools, 1)
	assert.Equal(t, "get_weather", reqs[0].Tools[0].Function.Name)
	assert.JSONEq(t, `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}`,
		string(reqs[0].Tools[0].Function.Parameters))
	assert.Equal(t, &api.ToolChoice{Mode: api.ToolNamed, Name: "get_weather"}, reqs[0].ToolChoice)

	stream := client.Chat.Completions.NewStreaming(t.Context(), params)
	var acc openai.ChatCompletionAccumulator
	deltas := 0
	for stream.Next() {
		ch := stream.Current()
		acc.AddChunk(ch)
		if len(ch.Choices) > 0 {
			deltas += len(ch.Choices[0].Delta.ToolCalls)
		}
	}
	require.NoError(t, stream.Err())
	assert.Equal(t, 4, deltas, "per call: a chunk with its name, one with its arguments")
	require.Len(t, acc.Choices, 1)
	assert.Equal(t, "tool_calls", acc.Choices[0].FinishReason)
	require.Len(t, acc.Choices[0].Message.ToolCalls, 2)
	for i, got := range acc.Choices[0].Message.ToolCalls {
		assert.Equal(t, c.Message.ToolCalls[i].ID, got.ID)
		assert.Equal(t, c.Message.ToolCalls[i].Function.Name, got.Function.Name)
		assert.Equal(t, c.Message.ToolCalls[i].Function.Arguments, got.Function.Arguments, "streamed arguments reassemble to the answer's")
	}
}

// llama3ToolTemplate is a Llama 3 style template with JSON tool calling
// (written for these tests): tools in the first user turn, results in
// ipython turns.
const llama3ToolTemplate = "{% for m in messages %}<|start_header_id|>{% if m.role == 'tool' %}ipython{% else %}{{ m.role }}{% endif %}" +
	"<|end_header_id|>\n\n{% if tools and loop.first %}{{ tools | tojson }}{% endif %}{{ m.content }}<|eot_id|>{% endfor %}" +
	"{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"

// TestOpenAIToolsLlama3Style requires a call from a model whose template
// has Llama 3.1's JSON tool format, where a call names its arguments
// "parameters" and has no marker: the reply is constrained to such an
// object and comes back as OpenAI's tool call.
func TestOpenAIToolsLlama3Style(t *testing.T) {
	skipShort(t)
	spec := synth.Tiny("Q8_0")
	spec.ChatTemplate = llama3ToolTemplate
	spec.Context = 2048
	spec.SpecialTokens = []string{"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}
	path := filepath.Join(t.TempDir(), "llama3-tools.gguf")
	require.NoError(t, synth.Write(path, spec))
	client := startSDKQueen(t)

	flag := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "set_flag",
		Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"on": map[string]any{"type": "boolean"}},
			"required": []string{"on"}, "additionalProperties": false}})
	resp, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "file:" + path,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Turn it on.")}, MaxTokens: openai.Int(600),
		Temperature: openai.Float(0), Tools: []openai.ChatCompletionToolUnionParam{flag},
		ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}})
	require.NoError(t, err)
	c := resp.Choices[0]
	require.Equal(t, "tool_calls", c.FinishReason, "%s", c.Message.RawJSON())
	require.Len(t, c.Message.ToolCalls, 1)
	assert.Equal(t, "set_flag", c.Message.ToolCalls[0].Function.Name)
	var args map[string]any
	require.NoError(t, json.Unmarshal([]byte(c.Message.ToolCalls[0].Function.Arguments), &args))
	assert.Len(t, args, 1)
	assert.IsType(t, true, args["on"])
}
