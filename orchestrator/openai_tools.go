package orchestrator

import (
	"bytes"
	"encoding/json"
	"fmt"

	"rbee/api"
)

// OpenAI's function calling. A chat request's tools and tool_choice reach
// the worker, which describes the tools in the model's chat template and
// parses the calls out of the reply; the calls come back on the done event
// and are answered as OpenAI does: message.tool_calls (content null when
// the reply has no other text) and finish_reason "tool_calls", or, in a
// stream, delta.tool_calls chunks (for each call one with its index, id,
// type and name and empty arguments, then one with the arguments) before
// the finish chunk. The worker holds a call's text back until the reply
// ends, so a call's chunks come at the end of the stream.

// openAITool is a tool of a chat request.
type openAITool struct {
	Type     string `json:"type"`
	Function *struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
	} `json:"function"`
}

// openAIToolCall is a call in an assistant message, and in a response;
// its arguments are a JSON object as a string.
type openAIToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// openAIToolCallDelta is a call's piece in a stream chunk.
type openAIToolCallDelta struct {
	Index    int                `json:"index"`
	ID       string             `json:"id,omitempty"`
	Type     string             `json:"type,omitempty"`
	Function openAIFunctionPart `json:"function"`
}

type openAIFunctionPart struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// toolUse maps tools and tool_choice ("auto", "none", "required" or
// {"type":"function","function":{"name":…}}) onto rbee's.
func toolUse(tools []openAITool, choice json.RawMessage) (api.ToolUse, *api.Error) {
	var u api.ToolUse
	for i, t := range tools {
		if t.Type != "function" || t.Function == nil {
			return u, api.InvalidField(fmt.Sprintf("tools[%d].type", i), `only tools of type "function" are supported`)
		}
		u.Tools = append(u.Tools, api.Tool{Type: "function", Function: api.ToolFunction{Name: t.Function.Name,
			Description: t.Function.Description, Parameters: t.Function.Parameters}})
	}
	choice = bytes.TrimSpace(choice)
	if len(choice) == 0 || string(choice) == "null" {
		return u, nil
	}
	var mode string
	if json.Unmarshal(choice, &mode) == nil {
		switch mode {
		case api.ToolAuto, api.ToolNone, api.ToolRequired:
			u.ToolChoice = &api.ToolChoice{Mode: mode}
			return u, nil
		}
		return u, api.InvalidField("tool_choice", `tool_choice is "auto", "none", "required" or {"type":"function","function":{"name":…}}`)
	}
	var named struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if json.Unmarshal(choice, &named) != nil || named.Type != "function" || named.Function.Name == "" {
		return u, api.InvalidField("tool_choice", `tool_choice is "auto", "none", "required" or {"type":"function","function":{"name":…}}`)
	}
	u.ToolChoice = &api.ToolChoice{Mode: api.ToolNamed, Name: named.Function.Name}
	return u, nil
}

// messageToolCalls maps an assistant message's calls: their arguments, a
// string, must hold a JSON object (or nothing).
func messageToolCalls(i int, in []openAIToolCall) ([]api.ToolCall, *api.Error) {
	out := make([]api.ToolCall, len(in))
	for j, c := range in {
		if c.Type != "" && c.Type != "function" {
			return nil, api.InvalidField(fmt.Sprintf("messages[%d].tool_calls[%d].type", i, j), `only calls of type "function" are supported`)
		}
		out[j].ID, out[j].Type, out[j].Function.Name = c.ID, "function", c.Function.Name
		if a := bytes.TrimSpace([]byte(c.Function.Arguments)); len(a) > 0 {
			var obj map[string]json.RawMessage
			if json.Unmarshal(a, &obj) != nil {
				return nil, api.InvalidField(fmt.Sprintf("messages[%d].tool_calls[%d].function.arguments", i, j),
					"a call's arguments are a JSON object, as a string")
			}
			out[j].Function.Arguments = json.RawMessage(a)
		}
	}
	return out, nil
}

// responseToolCalls is the calls of a done event in OpenAI's shape.
func responseToolCalls(calls []api.ToolCall) []openAIToolCall {
	out := make([]openAIToolCall, len(calls))
	for i, c := range calls {
		out[i].ID, out[i].Type, out[i].Function.Name = c.ID, "function", c.Function.Name
		out[i].Function.Arguments = string(c.Function.Arguments)
		if out[i].Function.Arguments == "" {
			out[i].Function.Arguments = "{}"
		}
	}
	return out
}
