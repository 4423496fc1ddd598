package chat

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var weather = Tool{Name: "get_weather", Description: "Weather in a city",
	Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)}

// toolUse asks, calls get_weather and feeds its result back.
var toolUse = []Message{
	{Role: RoleUser, Content: "Weather in Paris?"},
	{Role: RoleAssistant, ToolCalls: []ToolCall{{ID: "call_1", Name: "get_weather", Arguments: json.RawMessage(`{ "city": "Paris" }`)}}},
	{Role: RoleTool, Content: `{"temp": 21}`, ToolCallID: "call_1"},
}

func TestFormatToolsStyles(t *testing.T) {
	toolJSON := `{"function":{"description":"Weather in a city","name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},"type":"function"}`
	tests := []struct {
		name string
		tmpl Template
		p    ToolPrompt
		want string
		pre  string
	}{
		{"hermes auto", Template{Family: ChatML, Tools: ToolsHermes}, ToolPrompt{Tools: []Tool{weather}},
			"<|im_start|>system\n# Tools\n\nYou can call functions to help with the request. Their signatures are inside <tools></tools>:\n<tools>\n" +
				toolJSON + "\n</tools>\n\nTo call one, answer with a JSON object of its name and arguments between <tool_call> and </tool_call>, one call per block:\n" +
				"<tool_call>\n{\"name\": \"function name\", \"arguments\": {\"argument\": \"value\"}}\n</tool_call><|im_end|>\n" +
				"<|im_start|>user\nWeather in Paris?<|im_end|>\n" +
				"<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}\n</tool_call><|im_end|>\n" +
				"<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n<|im_start|>assistant\n", ""},
		{"llama3 named", Template{Family: Llama3, ToolRole: "ipython", Tools: ToolsLlama3}, ToolPrompt{Tools: []Tool{weather}, Name: "get_weather"},
			"<|start_header_id|>user<|end_header_id|>\n\nAnswer with a call of one of these functions when it helps: a JSON object " +
				"{\"name\": function name, \"parameters\": object of the arguments by name}, and nothing else. You must call the function get_weather.\n\n" +
				toolJSON + "\n\nWeather in Paris?<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\":\"Paris\"}}<|eot_id|>" +
				"<|start_header_id|>ipython<|end_header_id|>\n\n{\"temp\": 21}<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": ",
			`{"name": "get_weather", "parameters": `},
		{"mistral required", Template{Family: MistralV3, Tools: ToolsMistral}, ToolPrompt{Tools: []Tool{weather}, Required: true},
			"[AVAILABLE_TOOLS] [" + toolJSON + "][/AVAILABLE_TOOLS][INST] Weather in Paris?\n\nYou must call at least one of them.[/INST]" +
				" [TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}, \"id\": \"call_1\"}]</s>" +
				"[TOOL_RESULTS] {\"content\": {\"temp\": 21}, \"call_id\": \"call_1\"}[/TOOL_RESULTS][TOOL_CALLS] [{\"name\": \"",
			`[TOOL_CALLS] [{"name": "`},
		{"generic gemma", Template{Family: Gemma}, ToolPrompt{Tools: []Tool{weather}},
			"<start_of_turn>user\n# Tools\n\nYou can call functions to help with the request. Their signatures are inside <tools></tools>:\n<tools>\n" +
				toolJSON + "\n</tools>\n\nTo call one, answer with a JSON object of its name and arguments between <tool_call> and </tool_call>, one call per block:\n" +
				"<tool_call>\n{\"name\": \"function name\", \"arguments\": {\"argument\": \"value\"}}\n</tool_call>\n\nWeather in Paris?<end_of_turn>\n" +
				"<start_of_turn>model\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}\n</tool_call><end_of_turn>\n" +
				"<start_of_turn>user\n{\"temp\": 21}<end_of_turn>\n<start_of_turn>model\n", ""},
		{"no tools: calls are still written", Template{Family: ChatML}, ToolPrompt{},
			"<|im_start|>user\nWeather in Paris?<|im_end|>\n" +
				"<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}\n</tool_call><|im_end|>\n" +
				"<|im_start|>tool\n{\"temp\": 21}<|im_end|>\n<|im_start|>assistant\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			segs, prefill, err := tc.tmpl.FormatTools(toolUse, tc.p, true)
			require.NoError(t, err)
			assert.Equal(t, tc.want, Join(segs))
			assert.Equal(t, tc.pre, prefill)
			// What the user wrote never sits in special segments.
			for _, s := range segs {
				if s.Special {
					assert.NotContains(t, s.Text, "Paris")
					assert.NotContains(t, s.Text, "temp")
				}
			}
		})
	}
}

// Consecutive tool results share one user turn in the Hermes style.
func TestFormatToolsHermesResults(t *testing.T) {
	msgs := []Message{{Role: RoleUser, Content: "Both?"}, {Role: RoleAssistant, ToolCalls: []ToolCall{
		{Name: "a", Arguments: json.RawMessage(`{}`)}, {Name: "b", Arguments: json.RawMessage(`{}`)}}},
		{Role: RoleTool, Content: "A"}, {Role: RoleTool, Content: "B"}}
	segs, _, err := Template{Family: ChatML, Tools: ToolsHermes}.FormatTools(msgs, ToolPrompt{}, true)
	require.NoError(t, err)
	assert.Equal(t, "<|im_start|>user\nBoth?<|im_end|>\n<|im_start|>assistant\n"+
		"<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call><|im_end|>\n"+
		"<|im_start|>user\n<tool_response>\nA\n</tool_response>\n<tool_response>\nB\n</tool_response><|im_end|>\n<|im_start|>assistant\n", Join(segs))
	var plain []string
	for _, sg := range segs {
		if !sg.Special {
			plain = append(plain, sg.Text)
		}
	}
	assert.Equal(t, []string{"Both?", `{"name": "a", "arguments": {}}`, `{"name": "b", "arguments": {}}`, "A", "B"}, plain,
		"the contents, the calls and the results are plain text")
}

func TestNewToolStyle(t *testing.T) {
	for src, want := range map[string]ToolStyle{
		"<|im_start|>{% if tools %}<tool_call>{% endif %}":                     ToolsHermes,
		"<|start_header_id|><|end_header_id|>{% if tools %}ipython{% endif %}": ToolsLlama3,
		"[INST][AVAILABLE_TOOLS][TOOL_CALLS]":                                  ToolsMistral,
		"<|im_start|>":                                                         "",
		"":                                                                     "",
	} {
		tmpl, _ := New(src, "</s>")
		assert.Equal(t, want, tmpl.Tools, src)
	}
}

func TestParseToolCalls(t *testing.T) {
	call := func(name, args string) ToolCall { return ToolCall{Name: name, Arguments: json.RawMessage(args)} }
	tests := []struct {
		name    string
		in      string
		content string
		calls   []ToolCall
	}{
		{"plain text", "Hello there", "Hello there", nil},
		{"hermes", "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>", "", []ToolCall{call("f", `{"a":1}`)}},
		{"hermes with text and two calls", "Let me check.\n<tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>\n<tool_call>{\"name\":\"g\",\"arguments\":\"{\\\"x\\\": true}\"}</tool_call>",
			"Let me check.", []ToolCall{call("f", `{}`), call("g", `{"x":true}`)}},
		{"hermes unclosed", "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": [1, 2]}}", "", []ToolCall{call("f", `{"a":[1,2]}`)}},
		{"hermes broken stays text", "<tool_call>{\"name\": \"f\", \"argu", "<tool_call>{\"name\": \"f\", \"argu", nil},
		{"mistral list", "[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {\"q\": \"x\"}, \"id\": \"abc123def\"}]",
			"", []ToolCall{{ID: "abc123def", Name: "f", Arguments: json.RawMessage(`{"q":"x"}`)}}},
		{"mistral args form", "[TOOL_CALLS]f[ARGS]{\"q\": 1}", "", []ToolCall{call("f", `{"q":1}`)}},
		{"llama3 bare", " {\"name\": \"f\", \"parameters\": {\"city\": \"Paris\"}}", "", []ToolCall{call("f", `{"city":"Paris"}`)}},
		{"bare list (mistral marker decoded to nothing)", "[{\"name\": \"f\", \"arguments\": {}}, {\"name\": \"g\"}]", "", []ToolCall{call("f", `{}`), call("g", `{}`)}},
		{"python tag", "<|python_tag|>{\"name\": \"f\", \"parameters\": {}}; {\"name\": \"g\", \"parameters\": {\"n\": 2}}",
			"", []ToolCall{call("f", `{}`), call("g", `{"n":2}`)}},
		{"fenced", "```json\n{\"name\": \"f\", \"arguments\": {}}\n```", "", []ToolCall{call("f", `{}`)}},
		{"json that is no call", "{\"answer\": 42}", "{\"answer\": 42}", nil},
		{"arguments not an object", "{\"name\": \"f\", \"arguments\": [1]}", "{\"name\": \"f\", \"arguments\": [1]}", nil},
		{"empty name", "<tool_call>{\"name\": \"\"}</tool_call>", "<tool_call>{\"name\": \"\"}</tool_call>", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			content, calls := ParseToolCalls(tc.in)
			assert.Equal(t, tc.content, content)
			require.Len(t, calls, len(tc.calls))
			for i := range calls {
				assert.Equal(t, tc.calls[i].ID, calls[i].ID)
				assert.Equal(t, tc.calls[i].Name, calls[i].Name)
				assert.JSONEq(t, string(tc.calls[i].Arguments), string(calls[i].Arguments))
			}
		})
	}
}

func TestCallStart(t *testing.T) {
	at, hold := CallStart("Sure. <tool_")
	assert.Equal(t, -1, at)
	assert.Equal(t, len("<tool_"), hold)
	at, _ = CallStart("Sure. <tool_call>{")
	assert.Equal(t, len("Sure. "), at)
	at, hold = CallStart("no call here")
	assert.Equal(t, -1, at)
	assert.Zero(t, hold)
	assert.True(t, MightStartCall("  {\"na"))
	assert.True(t, MightStartCall("[TOOL"))
	assert.True(t, MightStartCall(""))
	assert.False(t, MightStartCall("Hello"))
}

// FuzzParseToolCalls feeds any text to the parser: it never panics, every
// call has a name and an object of arguments, and the content is part of
// the input.
func FuzzParseToolCalls(f *testing.F) {
	for _, s := range []string{"", "hi", "<tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>",
		"[TOOL_CALLS] [{\"name\":\"f\",\"arguments\":{\"a\":1}}]", "[TOOL_CALLS]f[ARGS]{}", "<|python_tag|>{\"name\":\"f\"};",
		"{\"name\":\"f\",\"parameters\":\"{}\"}", "```json\n[{\"name\":\"f\"}]\n```", "<tool_call><tool_call></tool_call>", "{\"name\":1}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		content, calls := ParseToolCalls(in)
		if len(content) > len(in) {
			t.Fatalf("content longer than the input: %q from %q", content, in)
		}
		for _, c := range calls {
			if strings.TrimSpace(c.Name) == "" {
				t.Fatalf("a call without a name from %q", in)
			}
			var obj map[string]any
			if err := json.Unmarshal(c.Arguments, &obj); err != nil {
				t.Fatalf("arguments %q are not an object (from %q): %v", c.Arguments, in, err)
			}
		}
		if utf8.ValidString(in) && !utf8.ValidString(content) {
			t.Fatalf("invalid UTF-8 content from valid input %q", in)
		}
		at, hold := CallStart(in)
		if at > len(in) || hold > len(in) {
			t.Fatalf("CallStart out of range on %q", in)
		}
		_ = MightStartCall(in)
	})
}

func TestConstrainedCallPrompt(t *testing.T) {
	other := Tool{Name: "ping"}
	p := ToolPrompt{Tools: []Tool{weather, other}, Required: true, Constrained: true}
	hermes := Template{Family: ChatML, Tools: ToolsHermes}
	assert.Equal(t, "arguments", hermes.ArgumentsKey())
	assert.Equal(t, "parameters", Template{Family: Llama3, Tools: ToolsLlama3}.ArgumentsKey())
	assert.Equal(t, "arguments", Template{Family: Gemma}.ArgumentsKey())

	// Constrained: the prompt ends with the marker alone.
	for tmpl, want := range map[Template]string{hermes: "<tool_call>\n", {Family: MistralV3, Tools: ToolsMistral}: "[TOOL_CALLS] ",
		{Family: Llama3, Tools: ToolsLlama3}: ""} {
		segs, prefill, err := tmpl.FormatTools([]Message{{Role: RoleUser, Content: "hi"}}, p, true)
		require.NoError(t, err)
		assert.Equal(t, want, prefill)
		assert.True(t, strings.HasSuffix(Join(segs), want))
	}
}
