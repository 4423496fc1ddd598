package engine

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/synth"
)

// TestTokenizer checks the package's own tokenizer type against the model's
// vocabulary: what a program outside the module gets from Model.Tokenizer.
func TestTokenizer(t *testing.T) {
	m := loadModel(t, synth.Tiny("Q8_0"), Options{Threads: 1})
	tok := m.Tokenizer()
	require.NotNil(t, tok)
	assert.Equal(t, m.Config().VocabSize, tok.VocabSize())
	assert.Equal(t, 1, tok.BOS())
	assert.Equal(t, 2, tok.EOS())
	assert.True(t, tok.IsEOG(tok.EOS()))
	assert.False(t, tok.IsEOG(tok.BOS()))
	assert.True(t, tok.IsControl(tok.BOS()))
	assert.Nil(t, tok.Piece(tok.BOS()), "control tokens decode to nothing")

	const text = "Once upon a time, the quick brown fox"
	ids := tok.Encode(text, true, false)
	require.NotEmpty(t, ids)
	assert.Equal(t, tok.BOS(), ids[0])
	assert.Equal(t, " "+text, tok.Decode(ids[1:]), "SentencePiece keeps the leading space it added")
	var pieces []byte
	for _, id := range ids {
		assert.False(t, tok.IsControl(id) && id != tok.BOS(), "token %d", id)
		pieces = append(pieces, tok.Piece(id)...)
		got, ok := tok.TokenID(tok.TokenText(id))
		assert.True(t, ok)
		assert.Equal(t, id, got, "TokenID inverts TokenText")
	}
	assert.Equal(t, tok.Decode(ids), string(pieces), "Decode joins the pieces")
	assert.Equal(t, "", tok.TokenText(-1))
	assert.Equal(t, "", tok.TokenText(tok.VocabSize()))

	// "</s>" is the end of sequence in special text, plain text elsewhere.
	eos := func(ids []int) (n int) {
		for _, id := range ids {
			if id == tok.EOS() {
				n++
			}
		}
		return n
	}
	assert.Equal(t, 1, eos(tok.Encode("a</s>b", false, true)))
	assert.Zero(t, eos(tok.Encode("a</s>b", false, false)))
	segs := tok.EncodeSegments([]Segment{{Text: "a</s>", Special: true}, {Text: "b</s>"}}, true)
	assert.Equal(t, 1, eos(segs), "only the special segment's </s> is the token")
	assert.Equal(t, tok.BOS(), segs[0])
	assert.Equal(t, tok.Encode("hello world", true, true),
		tok.EncodeSegments([]Segment{{Text: "hello"}, {Text: " world"}}, true),
		"plain segments tokenize as their joined text")
}
