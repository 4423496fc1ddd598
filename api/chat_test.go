package api

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidateMessages(t *testing.T) {
	user := func(s string) ChatMessage { return ChatMessage{Role: RoleUser, Content: s} }
	many := make([]ChatMessage, MaxChatMessages+1)
	for i := range many {
		many[i] = user("hi")
	}
	tests := []struct {
		name  string
		msgs  []ChatMessage
		field string // "" means valid
	}{
		{"one user message", []ChatMessage{user("hi")}, ""},
		{"a conversation", []ChatMessage{{Role: RoleSystem, Content: "Be brief."}, user("hi"), {Role: RoleAssistant, Content: "hello"}, user("and?")}, ""},
		{"empty user and assistant turns", []ChatMessage{user(""), {Role: RoleAssistant}, user("and now?")}, ""},
		{"only an empty user message", []ChatMessage{user("")}, ""},
		{"a tool call and its result", []ChatMessage{user("weather?"), {Role: RoleAssistant},
			{Role: RoleTool, Content: `{"temp": 21}`, ToolCallID: "call_abc123"}, {Role: RoleTool, Content: ""}}, ""},
		{"tool call id at the limit", []ChatMessage{{Role: RoleTool, Content: "x", ToolCallID: strings.Repeat("a", MaxToolCallIDBytes)}}, ""},
		{"tabs and newlines", []ChatMessage{user("a\tb\r\nc")}, ""},
		{"256 messages", many[:MaxChatMessages], ""},
		{"empty list", []ChatMessage{}, "messages"},
		{"257 messages", many, "messages"},
		{"unknown role", []ChatMessage{user("hi"), {Role: "function", Content: "x"}}, "messages[1].role"},
		{"no role", []ChatMessage{{Role: "", Content: "x"}}, "messages[0].role"},
		{"role case", []ChatMessage{{Role: "User", Content: "x"}}, "messages[0].role"},
		{"tool call id too long", []ChatMessage{{Role: RoleTool, Content: "x", ToolCallID: strings.Repeat("a", MaxToolCallIDBytes+1)}}, "messages[0].tool_call_id"},
		{"tool call id with a control character", []ChatMessage{user("hi"), {Role: RoleTool, ToolCallID: "call\x1b[2J"}}, "messages[1].tool_call_id"},
		{"control character", []ChatMessage{user("a\x1b[31m")}, "messages[0].content"},
		{"bidi override", []ChatMessage{user("a\u202eb")}, "messages[0].content"},
		{"invalid UTF-8", []ChatMessage{user("a\xffb")}, "messages[0].content"},
		{"one content too long", []ChatMessage{user(strings.Repeat("é", MaxPromptChars+1))}, "messages[0].content"},
		{"too long in all", []ChatMessage{user(strings.Repeat("a", MaxPromptChars/2)), user(strings.Repeat("b", MaxPromptChars/2+1))}, "messages"},
		{"exactly the limit in all", []ChatMessage{user(strings.Repeat("a", MaxPromptChars/2)), user(strings.Repeat("b", MaxPromptChars/2))}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := ValidateMessages(tc.msgs)
			if tc.field == "" {
				assert.Nil(t, e)
				return
			}
			require.NotNil(t, e)
			assert.Equal(t, CodeInvalidRequest, e.Code)
			assert.Equal(t, tc.field, e.Details["field"])
			assert.NotContains(t, e.Message, "\x1b", "the value is not echoed")
		})
	}
}

func TestPromptOrMessages(t *testing.T) {
	msgs := []ChatMessage{{Role: RoleUser, Content: "hi"}}
	tests := []struct {
		name     string
		prompt   string
		messages []ChatMessage
		field    string
	}{
		{"prompt", "Once upon a time", nil, ""},
		{"messages", "", msgs, ""},
		{"neither", "", nil, "prompt"},
		{"both", "Once", msgs, "messages"},
		{"empty messages", "", []ChatMessage{}, "messages"},
		{"bad message", "", []ChatMessage{{Role: RoleUser, Content: "a\x00b"}}, "messages[0].content"},
		{"empty message", "", []ChatMessage{{Role: RoleUser}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			task := TaskRequest{Model: "file:/m.gguf", Prompt: tc.prompt, Messages: tc.messages}
			_, te := task.Validate()
			inf := task.Inference()
			assert.Equal(t, tc.messages, inf.Messages, "the task passes its messages on")
			_, ie := inf.Validate(512)
			for _, e := range []*Error{te, ie} {
				if tc.field == "" {
					assert.Nil(t, e)
					continue
				}
				require.NotNil(t, e)
				assert.Equal(t, tc.field, e.Details["field"])
			}
		})
	}
	assert.Equal(t, "invalid prompt: the prompt is empty", ValidatePrompt("").Message, "the prompt's messages are unchanged")
}
