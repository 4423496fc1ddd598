package worker

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
)

// TestToolReplyStreaming feeds replies piece by piece, as the engine
// releases them: text that cannot be a call streams at once, a call is held
// and parsed at the end, the released text plus the rest equals the reply
// without its calls.
func TestToolReplyStreaming(t *testing.T) {
	tools := api.ToolUse{Tools: []api.Tool{{Type: "function", Function: api.ToolFunction{Name: "get_weather"}}}}
	cases := []struct {
		name     string
		prefill  bool
		pieces   []string
		early    string // released before the end
		content  string // all the text
		calls    int
		callArgs string
	}{
		{"plain text streams", false, []string{"Hel", "lo", " there"}, "Hello there", "Hello there", 0, ""},
		{"text then a call", false, []string{"Let me", " look.\n<tool", "_call>\n{\"name\": \"get_weather\", ", "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"},
			"Let me look.\n", "Let me look.", 1, `{"city":"Paris"}`},
		{"bare JSON call", false, []string{" {\"name\"", ": \"get_weather\", \"parameters\": {}}"}, "", "", 1, `{}`},
		{"JSON that is no call comes at the end", false, []string{"{\"a\"", ": 1}"}, "", "{\"a\": 1}", 0, ""},
		{"a call of an unknown function stays text", false, []string{"<tool_call>{\"name\": \"rm\"}</tool_call>"}, "", "<tool_call>{\"name\": \"rm\"}</tool_call>", 0, ""},
		{"a marker prefix that is not one", false, []string{"a <tool", "box> b"}, "a <toolbox> b", "a <toolbox> b", 0, ""},
		{"prefilled named call", true, []string{"{\"city\"", ": \"Oslo\"}}\n</tool_call>"}, "", "", 1, `{"city":"Oslo"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := tools
			if tc.prefill {
				u.ToolChoice = &api.ToolChoice{Mode: api.ToolNamed, Name: "get_weather"}
			}
			_, r := toolPrompt(u)
			require.NotNil(t, r)
			if tc.prefill {
				r.prefill = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
			}
			var early strings.Builder
			for _, p := range tc.pieces {
				early.WriteString(r.feed(p))
			}
			assert.Equal(t, tc.early, early.String())
			rest, calls := r.finish()
			assert.Equal(t, tc.content, strings.TrimRight(early.String()+rest, " \n"))
			require.Len(t, calls, tc.calls)
			for _, c := range calls {
				assert.Equal(t, "get_weather", c.Function.Name)
				assert.Equal(t, "function", c.Type)
				assert.Regexp(t, `^call_[A-Za-z0-9]{9}$`, c.ID)
				assert.JSONEq(t, tc.callArgs, string(c.Function.Arguments))
			}
		})
	}
	p, r := toolPrompt(api.ToolUse{Tools: tools.Tools, ToolChoice: &api.ToolChoice{Mode: api.ToolNone}})
	assert.Nil(t, r, "tool_choice none: no tools offered, nothing parsed")
	assert.Empty(t, p.Tools)
}
