package chat

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"
)

// Markers that open tool calls in the formats ParseToolCalls reads.
const (
	markHermes  = "<tool_call>"
	markHermesE = "</tool_call>"
	markMistral = "[TOOL_CALLS]"
	markPython  = "<|python_tag|>"
)

var callMarkers = []string{markHermes, markMistral, markPython}

// ParseToolCalls finds the function calls in a model's reply, whatever
// the tool format of its family, and returns the reply's other text as
// content. It reads:
//
//   - Hermes and Qwen 2.5 blocks: <tool_call>{"name":…,"arguments":…}</tool_call>,
//     any number, the last one possibly unclosed;
//   - Mistral's [TOOL_CALLS] followed by a JSON list of calls (or one call),
//     and its newer [TOOL_CALLS]name[ARGS]{…} form;
//   - Llama 3.1's <|python_tag|> followed by calls separated by ";";
//   - a reply that is nothing but a call, or a list of calls, as JSON
//     (Llama 3.1's JSON tool calling, and Mistral's when the marker is a
//     control token that decodes to nothing), optionally in a ```json fence.
//
// A call is a JSON object with a string "name" and its arguments as an
// object under "arguments" or "parameters" (a JSON string holding an object
// is accepted too; missing arguments are {}); an "id" is kept. Text that
// does not parse as calls stays in the content: the parser never fails and
// never panics, whatever the input.
func ParseToolCalls(text string) (content string, calls []ToolCall) {
	// A reply that is only JSON.
	if c, ok := bareCalls(text); ok {
		return "", c
	}
	first, at := -1, len(text)
	for i, m := range callMarkers {
		if j := strings.Index(text, m); j >= 0 && j < at {
			first, at = i, j
		}
	}
	if first < 0 {
		return text, nil
	}
	content = text[:at]
	rest := text[at:]
	switch callMarkers[first] {
	case markHermes:
		var other strings.Builder
		for {
			i := strings.Index(rest, markHermes)
			if i < 0 {
				other.WriteString(rest)
				break
			}
			other.WriteString(rest[:i])
			body, next, closed := strings.Cut(rest[i+len(markHermes):], markHermesE)
			switch cs, ok := callsIn(body); {
			case ok:
				calls = append(calls, cs...)
			case closed:
				other.WriteString(rest[i : len(rest)-len(next)]) // not a call: keep the block as text
			default:
				other.WriteString(rest[i:])
			}
			if !closed {
				break
			}
			rest = next
		}
		content += other.String()
	case markMistral:
		body := rest[len(markMistral):]
		if cs, ok := callsIn(body); ok {
			calls = cs
		} else if cs, ok := mistralArgs(body); ok {
			calls = cs
		} else {
			content += rest
		}
	case markPython:
		body := rest[len(markPython):]
		ok := true
		for part := range strings.SplitSeq(body, ";") {
			if strings.TrimSpace(part) == "" {
				continue
			}
			cs, good := callsIn(part)
			if !good {
				ok = false
				break
			}
			calls = append(calls, cs...)
		}
		if !ok || len(calls) == 0 {
			calls = nil
			content += rest
		}
	}
	return strings.TrimRightFunc(content, unicode.IsSpace), calls
}

// bareCalls reads a text that is one call or a list of calls as JSON, in
// an optional ```json fence.
func bareCalls(text string) ([]ToolCall, bool) {
	s := strings.TrimSpace(text)
	if rest, ok := strings.CutPrefix(s, "```"); ok {
		rest = strings.TrimPrefix(rest, "json")
		body, ok := strings.CutSuffix(strings.TrimSpace(rest), "```")
		if !ok {
			return nil, false
		}
		s = strings.TrimSpace(body)
	}
	if s == "" || s[0] != '{' && s[0] != '[' {
		return nil, false
	}
	return callsIn(s)
}

// callsIn reads text that is exactly one JSON value (surrounded by
// space) holding a call or a non-empty list of calls.
func callsIn(text string) ([]ToolCall, bool) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var v json.RawMessage
	if dec.Decode(&v) != nil {
		return nil, false
	}
	if strings.TrimSpace(text[dec.InputOffset():]) != "" {
		return nil, false
	}
	v = bytes.TrimSpace(v)
	if len(v) > 0 && v[0] == '[' {
		var list []json.RawMessage
		if json.Unmarshal(v, &list) != nil || len(list) == 0 {
			return nil, false
		}
		calls := make([]ToolCall, 0, len(list))
		for _, item := range list {
			c, ok := oneCall(item)
			if !ok {
				return nil, false
			}
			calls = append(calls, c)
		}
		return calls, true
	}
	c, ok := oneCall(v)
	if !ok {
		return nil, false
	}
	return []ToolCall{c}, true
}

// oneCall reads {"name": …, "arguments" or "parameters": …, "id": …}.
func oneCall(raw json.RawMessage) (ToolCall, bool) {
	var obj struct {
		Name       *string         `json:"name"`
		Arguments  json.RawMessage `json:"arguments"`
		Parameters json.RawMessage `json:"parameters"`
		ID         any             `json:"id"`
	}
	if json.Unmarshal(raw, &obj) != nil || obj.Name == nil || strings.TrimSpace(*obj.Name) == "" {
		return ToolCall{}, false
	}
	a := obj.Arguments
	if len(a) == 0 || string(a) == "null" {
		a = obj.Parameters
	}
	argsObj, ok := argumentsObject(a)
	if !ok {
		return ToolCall{}, false
	}
	c := ToolCall{Name: strings.TrimSpace(*obj.Name), Arguments: argsObj}
	if id, ok := obj.ID.(string); ok {
		c.ID = id
	}
	return c, true
}

// argumentsObject returns a call's arguments as a compact JSON object:
// {} when missing, the object inside a JSON string that holds one.
func argumentsObject(a json.RawMessage) (json.RawMessage, bool) {
	a = bytes.TrimSpace(a)
	if len(a) == 0 || string(a) == "null" {
		return json.RawMessage("{}"), true
	}
	if a[0] == '"' {
		var s string
		if json.Unmarshal(a, &s) != nil {
			return nil, false
		}
		a = bytes.TrimSpace([]byte(s))
		if len(a) == 0 {
			return json.RawMessage("{}"), true
		}
	}
	if a[0] != '{' || !json.Valid(a) {
		return nil, false
	}
	var buf bytes.Buffer
	if json.Compact(&buf, a) != nil {
		return nil, false
	}
	return buf.Bytes(), true
}

// mistralArgs reads Mistral's newer form: name[ARGS]{…}, repeated after
// further [TOOL_CALLS] markers.
func mistralArgs(body string) ([]ToolCall, bool) {
	var calls []ToolCall
	for part := range strings.SplitSeq(body, markMistral) {
		name, a, ok := strings.Cut(part, "[ARGS]")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, "{}[]\"") {
			return nil, false
		}
		obj, ok := argumentsObject(json.RawMessage(a))
		if !ok {
			return nil, false
		}
		calls = append(calls, ToolCall{Name: name, Arguments: obj})
	}
	return calls, len(calls) > 0
}

// MightStartCall reports whether text, the start of a reply, could still
// become a tool call that ParseToolCalls reads: it is empty or blank, a
// prefix of a marker, or starts (after space) with a marker, "{", "[" or
// "```". A streaming caller holds such text back until the reply ends or
// the text rules a call out.
func MightStartCall(text string) bool {
	s := strings.TrimLeftFunc(text, unicode.IsSpace)
	if s == "" {
		return true
	}
	switch s[0] {
	case '{', '[':
		return true
	}
	if strings.HasPrefix(s, "```") || strings.HasPrefix("```", s) {
		return true
	}
	for _, m := range callMarkers {
		if strings.HasPrefix(s, m) || strings.HasPrefix(m, s) {
			return true
		}
	}
	return false
}

// CallStart returns the index in text where a tool-call marker begins, or
// -1; with a -1, hold is the length of the longest tail of text that is a
// prefix of a marker (text a streaming caller holds back for now).
func CallStart(text string) (at, hold int) {
	at = -1
	for _, m := range callMarkers {
		if i := strings.Index(text, m); i >= 0 && (at < 0 || i < at) {
			at = i
		}
	}
	if at >= 0 {
		return at, 0
	}
	for _, m := range callMarkers {
		for k := min(len(m)-1, len(text)); k > hold; k-- {
			if strings.HasSuffix(text, m[:k]) {
				hold = k
				break
			}
		}
	}
	return -1, hold
}
