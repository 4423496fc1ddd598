package worker

import (
	"crypto/rand"
	"strings"

	"rbee/api"
	"rbee/internal/chat"
)

// toolPrompt maps a request's tools onto the chat package's, and returns
// the parser of the reply, or nils when no tools are offered (none given,
// or tool_choice none).
func toolPrompt(u api.ToolUse) (chat.ToolPrompt, *toolReply) {
	if len(u.Tools) == 0 || u.ToolChoice != nil && u.ToolChoice.Mode == api.ToolNone {
		return chat.ToolPrompt{}, nil
	}
	p := chat.ToolPrompt{Tools: make([]chat.Tool, len(u.Tools))}
	r := &toolReply{names: make(map[string]bool, len(u.Tools))}
	for i, t := range u.Tools {
		p.Tools[i] = chat.Tool{Name: t.Function.Name, Description: t.Function.Description, Parameters: t.Function.Parameters}
		r.names[t.Function.Name] = true
	}
	if c := u.ToolChoice; c != nil {
		p.Required = c.Mode == api.ToolRequired
		if c.Mode == api.ToolNamed {
			p.Name = c.Name
		}
		r.holdAll = p.Required || p.Name != ""
	}
	return p, r
}

// toolReply separates a reply's tool calls from its text while it
// streams. Text that cannot be part of a call is released at once; from
// the point where a call may begin (a call marker, or a reply that starts
// like a JSON call) the text is held until the end, where the calls are
// parsed out and the rest is released. A reply that must be a call
// (tool_choice required or a named function) is held whole.
type toolReply struct {
	names   map[string]bool
	prefill string
	holdAll bool // the reply is a call (required or named): hold it whole

	held    strings.Builder
	decided bool // the reply's start is not a call
	inCall  bool // a call may have begun: hold everything
}

// feed takes the next piece of the reply and returns the text to release.
func (r *toolReply) feed(text string) string {
	if text == "" {
		return ""
	}
	r.held.WriteString(text)
	if r.inCall || r.holdAll {
		return ""
	}
	all := r.held.String()
	if !r.decided {
		if chat.MightStartCall(all) {
			return ""
		}
		r.decided = true
	}
	at, hold := chat.CallStart(all)
	if at >= 0 {
		r.inCall = true
		r.held.Reset()
		r.held.WriteString(all[at:])
		return all[:at]
	}
	r.held.Reset()
	r.held.WriteString(all[len(all)-hold:])
	return all[:len(all)-hold]
}

// finish parses what was held and returns the text to release and the
// calls. Calls of functions that were not offered make the held text plain
// content: the client could not run them.
func (r *toolReply) finish() (string, []api.ToolCall) {
	held := r.held.String()
	r.held.Reset()
	content, calls := chat.ParseToolCalls(r.prefill + held)
	if len(calls) == 0 {
		return held, nil
	}
	out := make([]api.ToolCall, len(calls))
	for i, c := range calls {
		if !r.names[c.Name] {
			return held, nil
		}
		out[i].ID = c.ID
		if out[i].ID == "" {
			out[i].ID = newCallID()
		}
		out[i].Type = "function"
		out[i].Function.Name = c.Name
		out[i].Function.Arguments = c.Arguments
	}
	return content, out
}

// newCallID makes a call id: "call_" and 9 random letters and digits (9
// because Mistral's formats expect ids of 9 characters at the end).
func newCallID() string {
	const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 9)
	_, _ = rand.Read(b) // never fails
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return "call_" + string(b)
}
