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

type openAIChatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// openAIDelta is a chat chunk's change: the role in the first chunk, then
// content; {} in the last.
type openAIDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

// openAIChoice is one choice: Message (chat), Delta (chat chunk) or Text
// (completion and its chunks).
type openAIChoice struct {
	Index        int                `json:"index"`
	Message      *openAIChatMessage `json:"message,omitempty"`
	Delta        *openAIDelta       `json:"delta,omitempty"`
	Text         *string            `json:"text,omitempty"`
	Logprobs     *struct{}          `json:"logprobs"` // always null
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
	finishStop   = "stop"
	finishLength = "length"
)

// finishReason maps a done event's stop reason: max_tokens is "length";
// EOS, a stop string and a cancellation are "stop".
func finishReason(d *api.Done) string {
	if d != nil && d.StopReason == api.StopMaxTokens {
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
	id, model    string
	created      int64

	mu      sync.Mutex
	started bool // the stream's headers and first chunk are out
	ended   bool
	text    strings.Builder
	pieces  int // token events, in case no done event comes
	done    *api.Done
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
		if !s.stream {
			s.text.WriteString(ev.Token.Token)
			return nil
		}
		if err := s.start(); err != nil {
			return err
		}
		text := ev.Token.Token
		return s.writeChunk(s.chunk(&text, nil))
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
			resp = s.response("chat.completion", openAIChoice{Message: &openAIChatMessage{Role: "assistant", Content: s.text.String()},
				FinishReason: &finish})
		} else {
			text := s.text.String()
			resp = s.response("text_completion", openAIChoice{Text: &text, FinishReason: &finish})
		}
		resp.Usage = s.usage()
		s.served()
		httpx.WriteJSON(s.w, http.StatusOK, resp)
		return nil
	}
	if err := s.start(); err != nil {
		return err
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
