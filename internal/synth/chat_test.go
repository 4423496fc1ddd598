package synth

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/gguf"
)

func TestChatTemplateAndSpecialTokens(t *testing.T) {
	s := Tiny("Q8_0")
	s.ChatTemplate = "{{ '<|im_start|>' + m['role'] }}"
	s.SpecialTokens = []string{"<|im_start|>", "<|im_end|>"}
	f, err := gguf.Open(write(t, s))
	require.NoError(t, err)
	defer f.Close()
	tmpl, ok := f.GetString("tokenizer.chat_template")
	require.True(t, ok)
	assert.Equal(t, s.ChatTemplate, tmpl)
	tokens, ok := f.GetStrings("tokenizer.ggml.tokens")
	require.True(t, ok)
	require.Len(t, tokens, s.Vocab, "the vocabulary keeps its size")
	assert.Equal(t, []string{"<|im_start|>", "<|im_end|>"}, tokens[s.Vocab-2:])
	types, ok := f.GetInt32s("tokenizer.ggml.token_type")
	require.True(t, ok)
	assert.Equal(t, []int32{3, 3}, types[s.Vocab-2:], "control tokens")

	plain, err := gguf.Open(write(t, Tiny("Q8_0")))
	require.NoError(t, err)
	defer plain.Close()
	_, ok = plain.GetString("tokenizer.chat_template")
	assert.False(t, ok, "no template unless asked")

	for _, bad := range [][]string{{""}, {"<x>", "<x>"}, {"</s>"}, make([]string, 300)} {
		s := Tiny("Q8_0")
		s.SpecialTokens = bad
		assert.Error(t, Write(t.TempDir()+"/bad.gguf", s), "%q", bad)
	}
}
