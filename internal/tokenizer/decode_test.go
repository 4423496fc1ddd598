package tokenizer

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecoderHoldsIncompleteCharacters(t *testing.T) {
	// In the test BPE vocabulary id b is the single byte b.
	tok, err := New(bpeVocab("llama-bpe", nil))
	require.NoError(t, err)
	tests := []struct {
		name  string
		ids   []int
		next  []string
		flush string
	}{
		{"日 byte by byte", []int{0xE6, 0x97, 0xA5}, []string{"", "", "日"}, ""},
		{"ASCII passes", []int{'h', 'i'}, []string{"h", "i"}, ""},
		{"emoji then text", []int{0xF0, 0x9F, 0xA6, 0x99, '!'}, []string{"", "", "", "🦙", "!"}, ""},
		{"cut by ASCII", []int{0xE6, 'A'}, []string{"", "\uFFFDA"}, ""},
		{"invalid byte at once", []int{0xFF, 'x'}, []string{"\uFFFD", "x"}, ""},
		{"lone continuation", []int{0x97}, []string{"\uFFFD"}, ""},
		{"incomplete at the end", []int{'a', 0xE6, 0x97}, []string{"a", "", ""}, "\uFFFD\uFFFD"},
		{"surrogate bytes are invalid", []int{0xED, 0xA0, 0x80}, []string{"", "\uFFFD\uFFFD", "\uFFFD"}, ""},
		{"out of range ids", []int{-1, 1 << 30, 'z'}, []string{"", "", "z"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tok.NewDecoder()
			for i, id := range tc.ids {
				assert.Equal(t, tc.next[i], d.Next(id), "Next(%#x) at %d", id, i)
			}
			assert.Equal(t, tc.flush, d.Flush())
			assert.Equal(t, "", d.Flush(), "Flush empties the decoder")
		})
	}
}

func TestDecoderRandomIDs(t *testing.T) {
	toks := map[string]*Tokenizer{}
	bpe, err := New(bpeVocab("llama-bpe", trainedMerges(t)))
	require.NoError(t, err)
	toks["bpe"] = bpe
	if fixturesDir() != "" {
		toks["spm"] = llamaTokenizer(t)
	}
	rng := rand.New(rand.NewPCG(13, 14))
	for name, tok := range toks {
		t.Run(name, func(t *testing.T) {
			n := tok.VocabSize()
			for range 500 {
				ids := make([]int, rng.IntN(30))
				for i := range ids {
					switch rng.IntN(3) {
					case 0:
						ids[i] = rng.IntN(300) // bytes in both vocabularies
					case 1:
						ids[i] = rng.IntN(n)
					default:
						ids[i] = rng.IntN(n+10) - 5 // some out of range
					}
				}
				// streamDecode checks each output is valid UTF-8.
				require.Equal(t, string([]rune(tok.Decode(ids))), streamDecode(t, tok, ids), "ids %v", ids)
			}
		})
	}
}
