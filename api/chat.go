package api

import (
	"strconv"
	"unicode/utf8"
)

// ChatMessage is one message of a chat request (TaskRequest.Messages,
// InferenceRequest.Messages): the worker formats them with the model's chat
// template.
type ChatMessage struct {
	Role    string `json:"role"` // system, user, assistant or tool
	Content string `json:"content"`
	// ToolCallID is, in a tool message, the id of the call whose result it
	// carries, when the client gave one.
	ToolCallID string `json:"tool_call_id,omitempty"`
	// ToolCalls are, in an assistant message, the functions it called;
	// the worker writes them back in the template's tool format.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// Chat roles. A tool message carries the result of a function call back to
// the model.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// MaxChatMessages bounds the messages of one chat request; their contents
// together have at most MaxPromptChars characters.
const MaxChatMessages = 256

// MaxToolCallIDBytes bounds a tool message's ToolCallID.
const MaxToolCallIDBytes = 256

// ValidateMessages checks chat messages: 1 to 256 of them, roles system,
// user, assistant or tool, each content empty or following the prompt rules
// (chat interfaces keep empty turns in the history they send back), each
// tool call id at most 256 bytes of the same characters, and at most 32768
// characters of content in all. Problems name the field
// ("messages[2].content").
func ValidateMessages(msgs []ChatMessage) *Error {
	const field = "messages"
	if len(msgs) == 0 {
		return InvalidField(field, "at least one message is needed")
	}
	if len(msgs) > MaxChatMessages {
		return InvalidField(field, "at most %d messages", MaxChatMessages)
	}
	total := 0
	for i, m := range msgs {
		switch m.Role {
		case RoleSystem, RoleUser, RoleAssistant, RoleTool:
		default:
			return InvalidField(fieldAt(i, "role"), "a role is system, user, assistant or tool")
		}
		if m.Content != "" {
			if e := validateText(fieldAt(i, "content"), "content", m.Content); e != nil {
				return e
			}
		}
		if m.ToolCallID != "" {
			field := fieldAt(i, "tool_call_id")
			if len(m.ToolCallID) > MaxToolCallIDBytes {
				return InvalidField(field, "a tool call id has at most %d bytes", MaxToolCallIDBytes)
			}
			if e := validateText(field, "tool call id", m.ToolCallID); e != nil {
				return e
			}
		}
		if len(m.ToolCalls) > 0 && m.Role != RoleAssistant {
			return InvalidField(fieldAt(i, "tool_calls"), "only an assistant message has tool calls")
		}
		for j, c := range m.ToolCalls {
			if e := validateCall(fieldAt(i, "tool_calls["+strconv.Itoa(j)+"]"), c); e != nil {
				return e
			}
			total += utf8.RuneCount(c.Function.Arguments)
		}
		total += utf8.RuneCountInString(m.Content)
	}
	if total > MaxPromptChars {
		return InvalidField(field, "the messages have %d characters in all; at most %d", total, MaxPromptChars)
	}
	return nil
}

func fieldAt(i int, name string) string {
	return "messages[" + strconv.Itoa(i) + "]." + name
}

// validateInput checks the input of a task or an inference: exactly one of
// a prompt and chat messages (nil messages mean a prompt request).
func validateInput(prompt string, msgs []ChatMessage) *Error {
	if msgs == nil {
		return ValidatePrompt(prompt)
	}
	if prompt != "" {
		return InvalidField("messages", "give either a prompt or messages, not both")
	}
	return ValidateMessages(msgs)
}
