package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Tool is a function the model may call: its name, what it does and the
// JSON schema of its arguments (nil: any object).
type Tool struct {
	Name        string
	Description string
	Parameters  json.RawMessage
}

// ToolCall is a call of a function: its id ("" if none), name and
// arguments, a JSON object.
type ToolCall struct {
	ID        string
	Name      string
	Arguments json.RawMessage
}

// ToolStyle is how a template writes tools, calls and their results.
type ToolStyle string

// Tool styles. [New] picks one from the template source.
const (
	// ToolsHermes is the format of Qwen 2.5 and Hermes-style chatml
	// templates: the tools, as JSON lines inside <tools></tools>, in the
	// system message; each call as {"name":…, "arguments":…} between
	// <tool_call> and </tool_call>; results between <tool_response> and
	// </tool_response>, consecutive ones in one user turn.
	ToolsHermes ToolStyle = "hermes"
	// ToolsLlama3 is Llama 3.1 to 3.3's JSON tool calling: the tools, as
	// JSON, at the start of the first user message with the instruction to
	// answer a call as {"name":…, "parameters":…}; results in "ipython"
	// turns.
	ToolsLlama3 ToolStyle = "llama3"
	// ToolsMistral is Mistral's: [AVAILABLE_TOOLS] [...][/AVAILABLE_TOOLS]
	// before the last user turn, calls as [TOOL_CALLS] [{"name":…,
	// "arguments":…, "id":…}], results in [TOOL_RESULTS] blocks.
	ToolsMistral ToolStyle = "mistral"
	// ToolsGeneric is for templates without a tool format: the tools and
	// the instruction to answer a call between <tool_call> and </tool_call>
	// (the Hermes format, which ParseToolCalls reads) are added to the
	// system message, calls are written in that format in the assistant's
	// text, and results as the family writes tool messages.
	ToolsGeneric ToolStyle = "generic"
)

// toolStyle picks the tool style of a template source of family f.
func toolStyle(f Family, src string) ToolStyle {
	switch {
	case (f == ChatML || f == Phi4) && strings.Contains(src, "<tool_call>"):
		return ToolsHermes
	case f == Llama3 && strings.Contains(src, "ipython") && strings.Contains(src, "tools"):
		return ToolsLlama3
	case (f == MistralV3 || f == MistralV3Tekken || f == MistralV7 || f == MistralV7Tekken) && strings.Contains(src, "[AVAILABLE_TOOLS]"):
		return ToolsMistral
	}
	return ToolsGeneric
}

// ToolPrompt says how FormatTools describes the tools and what the
// assistant's turn must be.
type ToolPrompt struct {
	Tools []Tool
	// Required asks for a call of one of the tools; Name, when set, for a
	// call of that function. The generation prompt then ends with the
	// opening of a call (see Prefill), and the instructions say so.
	Required bool
	Name     string
	// Constrained says the caller constrains the reply to one call object
	// {"name": …, ArgumentsKey(): {…}} of the tools (the named one when
	// Name is set): the generation prompt then ends with the call marker
	// only ("<tool_call>\n" in the Hermes format), and the reply is the
	// object.
	Constrained bool
}

// ArgumentsKey is the name of a call's arguments in the template's tool
// style: "parameters" in the Llama 3 style, "arguments" in the others.
func (t Template) ArgumentsKey() string { return argKey(t.Tools) }

// FormatTools is Format for a conversation that may use tools: it
// describes p.Tools in the template's tool style (see ToolStyle), writes
// the assistant messages' ToolCalls in that style, and, for a required or
// named call, ends the generation prompt with the start of a call. It
// returns that start as prefill: the text the model's reply continues,
// which a caller parsing the reply for calls puts in front of it.
func (t Template) FormatTools(msgs []Message, p ToolPrompt, addAssistant bool) (segs []Segment, prefill string, err error) {
	if len(msgs) == 0 {
		return nil, "", ErrNoMessages
	}
	style := t.Tools
	if style == "" {
		style = ToolsGeneric
	}
	out := make([]Message, 0, len(msgs))
	for i, m := range msgs {
		if len(m.ToolCalls) > 0 {
			m.post = callSegments(style, m.Content != "", m.ToolCalls)
		}
		if style == ToolsHermes && m.Role == RoleTool {
			// Consecutive results share one user turn.
			open := Segment{Text: "<tool_response>\n", Special: true}
			closing := Segment{Text: "\n</tool_response>", Special: true}
			if i > 0 && msgs[i-1].Role == RoleTool {
				last := &out[len(out)-1]
				last.post = append(last.post, Segment{Text: "\n", Special: true}, open, Segment{Text: m.Content}, closing)
				continue
			}
			m.Role = RoleUser
			m.pre, m.post = []Segment{open}, []Segment{closing}
		}
		out = append(out, m)
	}
	msgs = out
	if len(p.Tools) > 0 {
		if msgs, err = describeTools(style, msgs, p); err != nil {
			return nil, "", err
		}
	}
	var b builder
	segs, err = t.Format(msgs, addAssistant)
	if err != nil {
		return nil, "", err
	}
	if addAssistant && (p.Required || p.Name != "") && len(p.Tools) > 0 {
		b.segs = segs
		if p.Constrained {
			prefill = callMarker(style)
			b.tmpl(prefill)
			return b.segs, prefill, nil
		}
		prefill = callOpener(style, p.Name)
		opener := strings.TrimSuffix(prefill, p.Name+`", "`+argKey(style)+`": `)
		b.tmpl(opener)
		if rest := prefill[len(opener):]; rest != "" {
			b.msg(rest)
		}
		segs = b.segs
	}
	return segs, prefill, nil
}

// argKey is the name of a call's arguments in a style's JSON.
func argKey(style ToolStyle) string {
	if style == ToolsLlama3 {
		return "parameters"
	}
	return "arguments"
}

// callMarker is what opens a call in style, before its JSON object.
func callMarker(style ToolStyle) string {
	switch style {
	case ToolsLlama3:
		return ""
	case ToolsMistral:
		return "[TOOL_CALLS] "
	}
	return "<tool_call>\n"
}

// callOpener is the start of a call in style, up to the arguments' value
// when the function is named.
func callOpener(style ToolStyle, name string) string {
	var open string
	switch style {
	case ToolsLlama3:
		open = `{"name": "`
	case ToolsMistral:
		open = `[TOOL_CALLS] [{"name": "`
	default:
		open = "<tool_call>\n" + `{"name": "`
	}
	if name == "" {
		return open
	}
	return open + name + `", "` + argKey(style) + `": `
}

// callSegments writes an assistant message's calls in style, after its
// content (hasContent: there is some).
func callSegments(style ToolStyle, hasContent bool, calls []ToolCall) []Segment {
	var b builder
	switch style {
	case ToolsLlama3:
		for i, c := range calls {
			if i > 0 || hasContent {
				b.tmpl("\n")
			}
			b.msg(`{"name": ` + quote(c.Name) + `, "parameters": ` + args(c.Arguments) + `}`)
		}
	case ToolsMistral:
		b.tmpl("[TOOL_CALLS]")
		var sb strings.Builder
		sb.WriteString(" [")
		for i, c := range calls {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(`{"name": ` + quote(c.Name) + `, "arguments": ` + args(c.Arguments))
			if c.ID != "" {
				sb.WriteString(`, "id": ` + quote(c.ID))
			}
			sb.WriteString("}")
		}
		sb.WriteString("]")
		b.msg(sb.String())
	default:
		special := style == ToolsHermes
		for i, c := range calls {
			if i > 0 || hasContent {
				b.tmpl("\n")
			}
			b.add("<tool_call>\n", special)
			b.msg(`{"name": ` + quote(c.Name) + `, "arguments": ` + args(c.Arguments) + `}`)
			b.add("\n</tool_call>", special)
		}
	}
	return b.segs
}

// describeTools adds the description of the tools where style puts it.
func describeTools(style ToolStyle, msgs []Message, p ToolPrompt) ([]Message, error) {
	lines := make([]string, len(p.Tools))
	for i, tl := range p.Tools {
		fn := map[string]any{"name": tl.Name}
		if tl.Description != "" {
			fn["description"] = tl.Description
		}
		if len(tl.Parameters) > 0 {
			fn["parameters"] = tl.Parameters
		}
		line, err := json.Marshal(map[string]any{"type": "function", "function": fn})
		if err != nil {
			return nil, fmt.Errorf("chat: tool %q: %w", tl.Name, err)
		}
		lines[i] = string(line)
	}
	must := ""
	switch {
	case p.Name != "":
		must = fmt.Sprintf(" You must call the function %s.", p.Name)
	case p.Required:
		must = " You must call at least one of them."
	}
	switch style {
	case ToolsLlama3:
		text := "Answer with a call of one of these functions when it helps: a JSON object " +
			`{"name": function name, "parameters": object of the arguments by name}, and nothing else.` + must +
			"\n\n" + strings.Join(lines, "\n\n") + "\n\n"
		for i := range msgs {
			if msgs[i].Role == RoleUser {
				msgs[i].Content = text + msgs[i].Content
				return msgs, nil
			}
		}
		return append(msgs, Message{Role: RoleUser, Content: strings.TrimSuffix(text, "\n\n")}), nil
	case ToolsMistral:
		last := -1
		for i := range msgs {
			if msgs[i].Role == RoleUser {
				last = i
			}
		}
		if last < 0 {
			return msgs, nil // no user turn to put them before
		}
		var b builder
		b.tmpl("[AVAILABLE_TOOLS]")
		b.msg(" [" + strings.Join(lines, ", ") + "]")
		b.tmpl("[/AVAILABLE_TOOLS]")
		msgs[last].before = b.segs
		if must != "" {
			msgs[last].Content += "\n\n" + strings.TrimSpace(must)
		}
		return msgs, nil
	}
	text := "# Tools\n\nYou can call functions to help with the request. Their signatures are inside <tools></tools>:\n<tools>\n" +
		strings.Join(lines, "\n") + "\n</tools>\n\nTo call one, answer with a JSON object of its name and arguments " +
		"between <tool_call> and </tool_call>, one call per block:\n<tool_call>\n" +
		`{"name": "function name", "arguments": {"argument": "value"}}` + "\n</tool_call>" + must
	if len(msgs) > 0 && msgs[0].Role == RoleSystem {
		if msgs[0].Content != "" {
			text = msgs[0].Content + "\n\n" + text
		}
		msgs[0].Content = text
		return msgs, nil
	}
	return append([]Message{{Role: RoleSystem, Content: text}}, msgs...), nil
}

// quote is s as a JSON string.
func quote(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

// args is a call's arguments as compact JSON: {} when empty, a JSON string
// when they are not JSON.
func args(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "{}"
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return quote(string(raw))
	}
	return buf.String()
}
