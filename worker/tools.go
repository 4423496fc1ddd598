package worker

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"

	"rbee/api"
	"rbee/internal/chat"
	"rbee/internal/grammar"
	"rbee/worker/engine"
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
		if p.Required || p.Name != "" {
			// The reply is constrained to one call object of the offered
			// functions (or the named one).
			r.holdAll, p.Constrained = true, true
			for _, t := range u.Tools {
				if p.Name == "" || t.Function.Name == p.Name {
					r.callable = append(r.callable, t)
				}
			}
		}
	}
	return p, r
}

// toolConstraint returns the constraint of a reply that must be a call of
// one of tools, whose arguments the template names argKey ("arguments" or
// "parameters"): a grammar of the call object, compiled once per distinct
// set of tools. A parameters schema it cannot enforce is INVALID_REQUEST
// naming the tool's parameters.
func (fs *formats) toolConstraint(m *engine.Model, tools []api.Tool, argKey string) (engine.Constraint, *api.Error) {
	raw, err := json.Marshal(tools)
	if err != nil {
		return nil, api.InvalidField("tools", "%v", err)
	}
	key := "tools:" + argKey + ":" + string(raw)
	fs.mu.Lock()
	g, ok := fs.compiled[key]
	fs.mu.Unlock()
	if !ok {
		if g, err = grammar.CompileToolCalls(tools, argKey); err != nil {
			var se *grammar.SchemaError
			if errors.As(err, &se) {
				return nil, se.APIError("tools")
			}
			return nil, api.InvalidField("tools", "%v", err)
		}
		fs.mu.Lock()
		if fs.compiled == nil || len(fs.compiled) >= maxCachedFormats {
			fs.compiled = make(map[string]*grammar.Grammar)
		}
		fs.compiled[key] = g
		fs.mu.Unlock()
	}
	fs.once.Do(func() {
		tok := m.Tokenizer()
		fs.vocab = grammar.NewVocab(tok.VocabSize(), tok.Piece, tok.IsEOG)
	})
	return g.NewMatcher(fs.vocab), nil
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
	// callable are the functions a required or named call may call: the
	// reply is constrained to one call object of them, whose arguments
	// the template names argKey.
	callable []api.Tool
	argKey   string

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
