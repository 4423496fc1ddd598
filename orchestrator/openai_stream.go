package orchestrator

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"

	"rbee/api"
	"rbee/internal/httpx"
)

// OpenAI's response shapes.

type openAIUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// openAIChatMessage is a chat answer's message: content is null when a
// reply made only tool calls.
type openAIChatMessage struct {
	Role      string           `json:"role"`
	Content   *string          `json:"content"`
	ToolCalls []openAIToolCall `json:"tool_calls,omitempty"`
}

// openAIDelta is a chat chunk's change: the role in the first chunk, then
// content; {} in the last.
type openAIDelta struct {
	Role      string                `json:"role,omitempty"`
	Content   *string               `json:"content,omitempty"`
	ToolCalls []openAIToolCallDelta `json:"tool_calls,omitempty"`
}

// openAIChoice is one choice: Message (chat), Delta (chat chunk) or Text
// (completion and its chunks).
type openAIChoice struct {
	Index        int                `json:"index"`
	Message      *openAIChatMessage `json:"message,omitempty"`
	Delta        *openAIDelta       `json:"delta,omitempty"`
	Text         *string            `json:"text,omitempty"`
	Logprobs     any                `json:"logprobs"` // null, *chatLogprobs or *completionLogprobs
	FinishReason *string            `json:"finish_reason"`
}

// openAIResponse is a completion, a chat completion or one chunk of their
// streams (Object says which).
type openAIResponse struct {
	ID                string         `json:"id"`
	Object            string         `json:"object"`
	Created           int64          `json:"created"`
	Model             string         `json:"model"`
	SystemFingerprint string         `json:"system_fingerprint"`
	Choices           []openAIChoice `json:"choices"`
	Usage             *openAIUsage   `json:"usage,omitempty"`
}

// chunkWithUsage is a stream chunk that always has its usage key: a client
// that asks for usage gets "usage": null in every chunk but the last, as
// OpenAI sends them. (The outer Usage hides the embedded one.)
type chunkWithUsage struct {
	openAIResponse
	Usage *openAIUsage `json:"usage"`
}

// Finish reasons.
const (
	finishStop      = "stop"
	finishLength    = "length"
	finishToolCalls = "tool_calls"
)

// finishReason maps a done event's stop reason: a reply with tool calls is
// "tool_calls"; max_tokens is "length"; EOS, a stop string and a
// cancellation are "stop".
func finishReason(d *api.Done) string {
	switch {
	case d != nil && len(d.ToolCalls) > 0:
		return finishToolCalls
	case d != nil && d.StopReason == api.StopMaxTokens:
		return finishLength
	}
	return finishStop
}

// openAISink translates a task's events into OpenAI's answer: one JSON
// response, or a stream of chunks ("data: {…}" lines ending with
// "data: [DONE]"). Nothing is written before the first token (or the end),
// so that an error before it keeps its HTTP status; narration and progress
// have no place in OpenAI's shapes and are dropped.
type openAISink struct {
	w            http.ResponseWriter
	r            *http.Request
	rc           *http.ResponseController
	chat         bool
	stream       bool
	includeUsage bool
	logprobs     bool // the request asked for log-probabilities
	id, model    string
	created      int64

	mu      sync.Mutex
	started bool // the stream's headers and first chunk are out
	ended   bool
	text    strings.Builder
	pieces  int // token events, in case no done event comes
	done    *api.Done
	lps     []*api.Token // the token events with log-probabilities, for the whole response
	// node and worker are where the task runs, from its narration: sent
	// as the X-Rbee-Node and X-Rbee-Worker headers of the answer.
	node, worker string
}

// WorkerHeader names the worker that served an OpenAI-compatible request
// (rbee's addition; the node is in NodeHeader).
const WorkerHeader = "X-Rbee-Worker"

// served sets the headers naming the node and worker, when known.
func (s *openAISink) served() {
	if s.node != "" {
		s.w.Header().Set(NodeHeader, s.node)
	}
	if s.worker != "" {
		s.w.Header().Set(WorkerHeader, s.worker)
	}
}

func (s *openAISink) response(object string, choice openAIChoice) openAIResponse {
	return openAIResponse{ID: s.id, Object: object, Created: s.created, Model: s.model,
		SystemFingerprint: "rbee-" + api.Version, Choices: []openAIChoice{choice}}
}

func (s *openAISink) usage() *openAIUsage {
	u := &openAIUsage{CompletionTokens: s.pieces}
	if s.done != nil {
		u.PromptTokens, u.CompletionTokens = s.done.PromptTokens, s.done.TotalTokens
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

// chunk is a stream chunk with text (nil: none) and a finish reason (nil:
// not finished).
func (s *openAISink) chunk(text *string, finish *string) openAIResponse {
	if s.chat {
		return s.response("chat.completion.chunk", openAIChoice{Delta: &openAIDelta{Content: text}, FinishReason: finish})
	}
	if text == nil {
		text = new(string)
	}
	return s.response("text_completion", openAIChoice{Text: text, FinishReason: finish})
}

// logprobsOf is the logprobs object of the token events toks (chat's
// content list, or the completions' parallel lists), whose text starts at
// byte offset of the completion's text; nil when the request did not ask.
func (s *openAISink) logprobsOf(toks []*api.Token, offset int) any {
	if !s.logprobs {
		return nil
	}
	if s.chat {
		return chatLogprobsOf(toks)
	}
	return completionLogprobsOf(toks, offset)
}

// write sends one "data:" line and flushes it.
func (s *openAISink) write(v any) error {
	var data []byte
	if str, ok := v.(string); ok {
		data = []byte(str)
	} else {
		var err error
		if data, err = json.Marshal(v); err != nil {
			return err
		}
	}
	if _, err := s.w.Write(append(append([]byte("data: "), data...), '\n', '\n')); err != nil {
		return err
	}
	return s.rc.Flush()
}

// writeChunk sends one chunk, with "usage": null unless it has the usage
// when the client asked for usage.
func (s *openAISink) writeChunk(c openAIResponse) error {
	if s.includeUsage {
		return s.write(chunkWithUsage{openAIResponse: c, Usage: c.Usage})
	}
	return s.write(c)
}

// start sends the stream's headers and, for chat, the chunk that gives the
// assistant's role.
func (s *openAISink) start() error {
	if s.started {
		return nil
	}
	s.started = true
	s.served()
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
	if !s.chat {
		return s.rc.Flush()
	}
	empty := ""
	return s.writeChunk(s.response("chat.completion.chunk", openAIChoice{Delta: &openAIDelta{Role: "assistant", Content: &empty}}))
}

// Send takes one task event: tokens become content, the done event is kept
// for the end.
func (s *openAISink) Send(ev api.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch ev.Kind {
	case api.KindToken:
		s.pieces++
		offset := s.text.Len()
		s.text.WriteString(ev.Token.Token)
		var lp []*api.Token
		if ev.Token.Logprob != nil {
			lp = []*api.Token{ev.Token}
		}
		if !s.stream {
			s.lps = append(s.lps, lp...)
			return nil
		}
		if err := s.start(); err != nil {
			return err
		}
		text := ev.Token.Token
		c := s.chunk(&text, nil)
		if lp != nil {
			c.Choices[0].Logprobs = s.logprobsOf(lp, offset)
		}
		return s.writeChunk(c)
	case api.KindDone:
		d := *ev.Done
		s.done = &d
		if d.WorkerID != "" {
			s.worker = d.WorkerID
		}
	case api.KindNarration:
		if ev.Narration.Node != "" {
			s.node = ev.Narration.Node
		}
		if ev.Narration.WorkerID != "" {
			s.worker = ev.Narration.WorkerID
		}
	}
	return nil
}

// Close ends a task that went well: the whole response, or the last chunk
// (with its finish reason), the usage chunk if asked for, and [DONE].
func (s *openAISink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil
	}
	s.ended = true
	finish := finishReason(s.done)
	if !s.stream {
		var resp openAIResponse
		if s.chat {
			msg := &openAIChatMessage{Role: "assistant"}
			if text := s.text.String(); text != "" || s.done == nil || len(s.done.ToolCalls) == 0 {
				msg.Content = &text
			}
			if s.done != nil && len(s.done.ToolCalls) > 0 {
				msg.ToolCalls = responseToolCalls(s.done.ToolCalls)
			}
			resp = s.response("chat.completion", openAIChoice{Message: msg, FinishReason: &finish, Logprobs: s.logprobsOf(s.lps, 0)})
		} else {
			text := s.text.String()
			resp = s.response("text_completion", openAIChoice{Text: &text, FinishReason: &finish, Logprobs: s.logprobsOf(s.lps, 0)})
		}
		resp.Usage = s.usage()
		s.served()
		httpx.WriteJSON(s.w, http.StatusOK, resp)
		return nil
	}
	if err := s.start(); err != nil {
		return err
	}
	if s.chat && s.done != nil {
		for i, c := range responseToolCalls(s.done.ToolCalls) {
			head := openAIToolCallDelta{Index: i, ID: c.ID, Type: "function", Function: openAIFunctionPart{Name: c.Function.Name}}
			args := openAIToolCallDelta{Index: i, Function: openAIFunctionPart{Arguments: c.Function.Arguments}}
			for _, d := range []openAIToolCallDelta{head, args} {
				if err := s.writeChunk(s.response("chat.completion.chunk",
					openAIChoice{Delta: &openAIDelta{ToolCalls: []openAIToolCallDelta{d}}})); err != nil {
					return err
				}
			}
		}
	}
	if err := s.writeChunk(s.chunk(nil, &finish)); err != nil {
		return err
	}
	if s.includeUsage {
		last := s.chunk(nil, nil)
		last.Choices = []openAIChoice{}
		last.Usage = s.usage()
		if err := s.writeChunk(last); err != nil {
			return err
		}
	}
	return s.write(api.DoneData)
}

// Error ends a task that failed: with the error's status when nothing was
// sent yet, else with an error chunk and [DONE].
func (s *openAISink) Error(e *api.Error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return nil
	}
	s.ended = true
	if !s.started {
		writeOpenAIError(s.w, s.r, e, s.id)
		return nil
	}
	c := *e
	c.RequestID = s.id
	if err := s.write(openAIErrorBody{Error: toOpenAIError(&c)}); err != nil {
		return err
	}
	return s.write(api.DoneData)
}
