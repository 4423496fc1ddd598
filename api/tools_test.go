package api

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSamplingPenaltiesAndLogprobs(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	s, e := SamplingParams{PresencePenalty: f(-2), FrequencyPenalty: f(1.5), Logprobs: true, TopLogprobs: 20}.Validate(100)
	require.Nil(t, e)
	assert.Equal(t, -2.0, s.PresencePenalty)
	assert.Equal(t, 1.5, s.FrequencyPenalty)
	assert.True(t, s.Logprobs)
	assert.Equal(t, 20, s.TopLogprobs)
	for field, p := range map[string]SamplingParams{
		"presence_penalty":  {PresencePenalty: f(2.01)},
		"frequency_penalty": {FrequencyPenalty: f(-2.5)},
		"top_logprobs":      {Logprobs: true, TopLogprobs: 21},
	} {
		_, e := p.Validate(100)
		require.NotNil(t, e, field)
		assert.Equal(t, field, e.Details["field"])
	}
	_, e = SamplingParams{TopLogprobs: 2}.Validate(100)
	require.NotNil(t, e, "top_logprobs needs logprobs")
	assert.Equal(t, "top_logprobs", e.Details["field"])
}

func TestToolUseValidate(t *testing.T) {
	fn := func(name, params string) Tool {
		return Tool{Type: "function", Function: ToolFunction{Name: name, Parameters: json.RawMessage(params)}}
	}
	msgs := []ChatMessage{{Role: RoleUser, Content: "hi"}}
	ok := InferenceRequest{Messages: msgs, ToolUse: ToolUse{Tools: []Tool{fn("get_weather", `{"type":"object"}`), fn("b-2", "")},
		ToolChoice: &ToolChoice{Mode: ToolNamed, Name: "b-2"}}}
	_, e := ok.Validate(100)
	require.Nil(t, e)
	for name, tc := range map[string]struct {
		req   InferenceRequest
		field string
	}{
		"tools with a prompt": {InferenceRequest{Prompt: "x", ToolUse: ToolUse{Tools: []Tool{fn("f", "")}}}, "tools"},
		"type":                {InferenceRequest{Messages: msgs, ToolUse: ToolUse{Tools: []Tool{{Type: "code", Function: ToolFunction{Name: "f"}}}}}, "tools[0].type"},
		"name":                {InferenceRequest{Messages: msgs, ToolUse: ToolUse{Tools: []Tool{fn("a.b", "")}}}, "tools[0].function.name"},
		"duplicate":           {InferenceRequest{Messages: msgs, ToolUse: ToolUse{Tools: []Tool{fn("f", ""), fn("f", "")}}}, "tools[1].function.name"},
		"parameters":          {InferenceRequest{Messages: msgs, ToolUse: ToolUse{Tools: []Tool{fn("f", `[1]`)}}}, "tools[0].function.parameters"},
		"required without":    {InferenceRequest{Messages: msgs, ToolUse: ToolUse{ToolChoice: &ToolChoice{Mode: ToolRequired}}}, "tool_choice"},
		"unknown named":       {InferenceRequest{Messages: msgs, ToolUse: ToolUse{Tools: []Tool{fn("f", "")}, ToolChoice: &ToolChoice{Mode: ToolNamed, Name: "g"}}}, "tool_choice"},
		"unknown mode":        {InferenceRequest{Messages: msgs, ToolUse: ToolUse{Tools: []Tool{fn("f", "")}, ToolChoice: &ToolChoice{Mode: "always"}}}, "tool_choice"},
		"call by a user":      {InferenceRequest{Messages: []ChatMessage{{Role: RoleUser, ToolCalls: []ToolCall{{}}}}}, "messages[0].tool_calls"},
		"call arguments":      {InferenceRequest{Messages: []ChatMessage{{Role: RoleAssistant, ToolCalls: []ToolCall{callOf("f", `"x"`)}}}}, "messages[0].tool_calls[0].function.arguments"},
		"call name":           {InferenceRequest{Messages: []ChatMessage{{Role: RoleAssistant, ToolCalls: []ToolCall{callOf("", `{}`)}}}}, "messages[0].tool_calls[0].function.name"},
	} {
		_, e := tc.req.Validate(100)
		if assert.NotNil(t, e, name) {
			assert.Equal(t, CodeInvalidRequest, e.Code, name)
			assert.Equal(t, tc.field, e.Details["field"], name)
		}
	}
}

func callOf(name, args string) ToolCall {
	var c ToolCall
	c.Type = "function"
	c.Function.Name = name
	c.Function.Arguments = json.RawMessage(args)
	return c
}
