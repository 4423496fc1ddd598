package api

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// ToolUse offers a chat's model functions to call (OpenAI's tools and
// tool_choice). The worker describes the tools in the chat template's tool
// format and parses the calls out of the reply into Done.ToolCalls.
type ToolUse struct {
	Tools      []Tool      `json:"tools,omitempty"`
	ToolChoice *ToolChoice `json:"tool_choice,omitempty"`
}

// ToolChoice says whether the model may, must or must not call a tool.
type ToolChoice struct {
	// Mode is ToolAuto (the default: the model decides), ToolNone (the
	// tools are not offered), ToolRequired (at least one call) or
	// ToolNamed (a call of the function Name).
	Mode string `json:"mode"`
	Name string `json:"name,omitempty"`
}

// Tool choice modes.
const (
	ToolAuto     = "auto"
	ToolNone     = "none"
	ToolRequired = "required"
	ToolNamed    = "function"
)

// Limits of tools.
const (
	MaxTools           = 128
	MaxToolNameLen     = 64
	MaxToolSchemaBytes = 64 << 10
)

// ValidToolName reports whether name is a function name OpenAI accepts:
// 1 to 64 of a-z, A-Z, 0-9, '_' and '-'.
func ValidToolName(name string) bool {
	if name == "" || len(name) > MaxToolNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validate checks tools and the choice: only for a chat, at most 128 tools
// of type function with valid, distinct names, descriptions following the
// prompt rules, parameters a JSON object; a required or named choice needs
// tools, and a named one one of them.
func (u ToolUse) validate(chat bool) *Error {
	if len(u.Tools) == 0 && u.ToolChoice == nil {
		return nil
	}
	if !chat {
		return InvalidField("tools", "tools need a chat (messages), not a prompt")
	}
	if len(u.Tools) > MaxTools {
		return InvalidField("tools", "at most %d tools", MaxTools)
	}
	names := make(map[string]bool, len(u.Tools))
	for i, t := range u.Tools {
		field := "tools[" + strconv.Itoa(i) + "]"
		if t.Type != "function" {
			return InvalidField(field+".type", `a tool's type is "function"`)
		}
		if !ValidToolName(t.Function.Name) {
			return InvalidField(field+".function.name", "a function name has 1 to %d letters, digits, '_' or '-'", MaxToolNameLen)
		}
		if names[t.Function.Name] {
			return InvalidField(field+".function.name", "two tools are named %s", t.Function.Name)
		}
		names[t.Function.Name] = true
		if d := t.Function.Description; d != "" {
			if e := validateText(field+".function.description", "description", d); e != nil {
				return e
			}
		}
		if p := bytes.TrimSpace(t.Function.Parameters); len(p) > 0 && string(p) != "null" {
			if len(p) > MaxToolSchemaBytes {
				return InvalidField(field+".function.parameters", "a tool's parameters schema has at most %d bytes", MaxToolSchemaBytes)
			}
			var obj map[string]json.RawMessage
			if json.Unmarshal(p, &obj) != nil {
				return InvalidField(field+".function.parameters", "a tool's parameters are a JSON schema object")
			}
		}
	}
	if c := u.ToolChoice; c != nil {
		switch c.Mode {
		case ToolAuto, ToolNone:
		case ToolRequired:
			if len(u.Tools) == 0 {
				return InvalidField("tool_choice", "tool_choice required needs tools")
			}
		case ToolNamed:
			if !names[c.Name] {
				return InvalidField("tool_choice", "tool_choice names a function that is not among the tools")
			}
		default:
			return InvalidField("tool_choice", "tool_choice is auto, none, required or a function")
		}
	}
	return nil
}

// validateCall checks an assistant message's tool call: a valid function
// name, arguments a JSON object (or absent), an id following the prompt
// rules.
func validateCall(field string, c ToolCall) *Error {
	if !ValidToolName(c.Function.Name) {
		return InvalidField(field+".function.name", "a function name has 1 to %d letters, digits, '_' or '-'", MaxToolNameLen)
	}
	if a := bytes.TrimSpace(c.Function.Arguments); len(a) > 0 && string(a) != "null" {
		var obj map[string]json.RawMessage
		if !utf8.Valid(a) || json.Unmarshal(a, &obj) != nil {
			return InvalidField(field+".function.arguments", "a call's arguments are a JSON object")
		}
	}
	if c.ID != "" {
		if len(c.ID) > MaxToolCallIDBytes {
			return InvalidField(field+".id", "a tool call id has at most %d bytes", MaxToolCallIDBytes)
		}
		if e := validateText(field+".id", "tool call id", c.ID); e != nil {
			return e
		}
	}
	return nil
}
