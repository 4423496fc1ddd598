package api

import (
	"encoding/json"
	"fmt"
)

// EventKind names an SSE event: the stream's "event:" field.
type EventKind string

// The events of rbee's streams (docs/protocol.md).
const (
	KindNarration EventKind = "narration"
	KindProgress  EventKind = "progress"
	KindToken     EventKind = "token"
	KindDone      EventKind = "done"
	KindError     EventKind = "error"
)

// DoneData is the data of the final SSE message of every stream.
const DoneData = "[DONE]"

// Event is one event of a stream. Exactly one of the pointers matches Kind.
// The data objects are self-describing, so a reader that ignores event names
// can tell them apart by their fields.
type Event struct {
	Kind      EventKind
	Narration *Narration
	Progress  *Progress
	Token     *Token
	Done      *Done
	Error     *Error
	Log       *LogLine
}

// Narration is a sentence for people about what a daemon is doing.
type Narration struct {
	Actor     string `json:"actor"`  // rbee-queen, rbee-hive, rbee-worker, rbee-keeper
	Action    string `json:"action"` // a stable word for programs: spawn, download, load, …
	Human     string `json:"human"`  // the sentence
	Node      string `json:"node,omitempty"`
	WorkerID  string `json:"worker_id,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// Stage says what a Progress event reports.
type Stage string

// Progress stages.
const (
	StageDownloading Stage = "downloading"     // BytesDownloaded of BytesTotal, MegabytesPerSecond
	StageComplete    Stage = "complete"        // download finished at LocalPath
	StageLoading     Stage = "loading_to_vram" // LayersLoaded of LayersTotal; VramMB is the model's memory on its device (RAM for cpu)
	StageReady       Stage = "ready"           // the worker is ready
)

// Progress reports a download or a model load.
type Progress struct {
	Stage           Stage `json:"stage"`
	BytesDownloaded int64 `json:"bytes_downloaded,omitempty"`
	BytesTotal      int64 `json:"bytes_total,omitempty"`
	// MegabytesPerSecond is the download's recent speed in MB/s (10^6
	// bytes); its JSON name is historical.
	MegabytesPerSecond float64 `json:"speed_mbps,omitempty"`
	LayersLoaded       int     `json:"layers_loaded,omitempty"`
	LayersTotal        int     `json:"layers_total,omitempty"`
	VramMB             int64   `json:"vram_mb,omitempty"`
	LocalPath          string  `json:"local_path,omitempty"`
	WorkerID           string  `json:"worker_id,omitempty"`
}

// Token is one piece of generated text.
type Token struct {
	Token string `json:"token"`
	Index int    `json:"index"`
	// Logprob is the generated token's log-probability when the request
	// asked for logprobs (nil otherwise, and for a final piece of held-back
	// text), TopLogprobs the most likely tokens at its position, most likely
	// first. Piece is the token's own text, which can differ from Token:
	// Token is the text the step releases, and text is held back while a
	// UTF-8 character or a possible stop string is incomplete.
	Logprob     *float64       `json:"logprob,omitempty"`
	TopLogprobs []TokenLogprob `json:"top_logprobs,omitempty"`
	Piece       string         `json:"piece,omitempty"`
	// PieceBytes holds Piece exactly when it is not valid UTF-8 (see
	// TokenLogprob.Bytes).
	PieceBytes []byte `json:"piece_bytes,omitempty"`
}

// StopReason says why a generation ended.
type StopReason string

// Stop reasons of a Done event.
const (
	StopMaxTokens StopReason = "max_tokens"
	StopEOS       StopReason = "eos"
	StopString    StopReason = "stop"
	StopCancelled StopReason = "cancelled"
)

// Done ends an inference.
type Done struct {
	Done            bool       `json:"done"`
	TotalTokens     int        `json:"total_tokens"`
	DurationMs      int64      `json:"duration_ms"`
	StopReason      StopReason `json:"stop_reason"`
	PromptTokens    int        `json:"prompt_tokens,omitempty"`
	TokensPerSecond float64    `json:"tokens_per_second,omitempty"`
	FirstTokenMs    int64      `json:"first_token_ms,omitempty"`
	RequestID       string     `json:"request_id,omitempty"`
	WorkerID        string     `json:"worker_id,omitempty"`
	// ToolCalls are the function calls the reply made, parsed out of its
	// text (which then holds only the rest), when the request offered tools.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// MarshalData returns the event's SSE data (JSON).
func (e Event) MarshalData() ([]byte, error) {
	switch e.Kind {
	case KindNarration:
		return json.Marshal(e.Narration)
	case KindProgress:
		return json.Marshal(e.Progress)
	case KindToken:
		return json.Marshal(e.Token)
	case KindDone:
		return json.Marshal(e.Done)
	case KindError:
		return json.Marshal(Envelope{Error: e.Error})
	case KindLog:
		return json.Marshal(e.Log)
	}
	return nil, fmt.Errorf("api: unknown event kind %q", e.Kind)
}

// ParseEvent decodes an SSE message. kind may be empty: the data's fields
// then tell the event apart.
func ParseEvent(kind string, data []byte) (Event, error) {
	k := EventKind(kind)
	if k == "" {
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(data, &probe); err != nil {
			return Event{}, fmt.Errorf("api: event data is not a JSON object: %w", err)
		}
		switch {
		case probe["error"] != nil:
			k = KindError
		case probe["done"] != nil:
			k = KindDone
		case probe["token"] != nil:
			k = KindToken
		case probe["stage"] != nil:
			k = KindProgress
		case probe["human"] != nil:
			k = KindNarration
		case probe["line"] != nil && probe["source"] != nil:
			k = KindLog
		default:
			return Event{}, fmt.Errorf("api: unrecognized event data")
		}
	}
	e := Event{Kind: k}
	var err error
	switch k {
	case KindNarration:
		e.Narration = new(Narration)
		err = json.Unmarshal(data, e.Narration)
	case KindProgress:
		e.Progress = new(Progress)
		err = json.Unmarshal(data, e.Progress)
	case KindToken:
		e.Token = new(Token)
		err = json.Unmarshal(data, e.Token)
	case KindDone:
		e.Done = new(Done)
		err = json.Unmarshal(data, e.Done)
	case KindError:
		var env Envelope
		err = json.Unmarshal(data, &env)
		if err == nil && env.Error == nil {
			err = fmt.Errorf("no error object")
		}
		e.Error = env.Error
	case KindLog:
		e.Log = new(LogLine)
		err = json.Unmarshal(data, e.Log)
	default:
		return Event{}, fmt.Errorf("api: unknown event %q", kind)
	}
	if err != nil {
		return Event{}, fmt.Errorf("api: %s event: %w", k, err)
	}
	return e, nil
}

// NarrationEvent makes a narration event.
func NarrationEvent(actor, action, human string) Event {
	return Event{Kind: KindNarration, Narration: &Narration{Actor: actor, Action: action, Human: human}}
}

// Actors of narration.
const (
	ActorKeeper = "rbee-keeper"
	ActorQueen  = "rbee-queen"
	ActorHive   = "rbee-hive"
	ActorWorker = "rbee-worker"
)
