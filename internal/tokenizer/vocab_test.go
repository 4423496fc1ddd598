package tokenizer

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/gguf"
)

// fixtureVocabs are the vocab-only GGUF files of ../shared/fixtures/tokenizer,
// each with llama.cpp's ids for its 46 test inputs.
var fixtureVocabs = []string{
	"gpt-2", "gpt-neox", "mpt", "falcon", "deepseek-llm", "deepseek-coder",
	"starcoder", "refact", "phi-3", "baichuan",
}

// vocabTokenizer loads tokenizer/ggml-vocab-NAME.gguf, skipping when the
// fixtures are absent.
func vocabTokenizer(t *testing.T, name string) (*Tokenizer, string) {
	t.Helper()
	path := fixture(t, "tokenizer/ggml-vocab-"+name+".gguf")
	return fileTokenizer(t, path), path
}

// fileTokenizer loads the tokenizer of the GGUF file at path.
func fileTokenizer(t *testing.T, path string) *Tokenizer {
	t.Helper()
	f, err := gguf.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	tok, err := FromGGUF(f)
	require.NoError(t, err)
	return tok
}

func TestVocabConformance(t *testing.T) {
	for _, name := range fixtureVocabs {
		t.Run(name, func(t *testing.T) {
			tok, path := vocabTokenizer(t, name)
			texts, want := readVocabTests(t, path+".inp", path+".out")
			require.Len(t, texts, 46)
			for i, text := range texts {
				assert.Equal(t, want[i], tok.Encode(text, false, false), "case %d: %q", i, text)
			}
		})
	}
}

// TestVocabRoundTrip decodes what each fixture vocabulary encodes: byte-level
// BPE gives the text back exactly (valid UTF-8 in), SentencePiece with a
// leading space.
func TestVocabRoundTrip(t *testing.T) {
	for _, name := range fixtureVocabs {
		t.Run(name, func(t *testing.T) {
			tok, path := vocabTokenizer(t, name)
			texts, _ := readVocabTests(t, path+".inp", path+".out")
			for i, text := range texts {
				got := tok.Decode(tok.Encode(text, false, false))
				if tok.model == modelSPM && text != "" {
					text = " " + text
				}
				assert.Equal(t, text, got, "case "+strconv.Itoa(i))
			}
		})
	}
}
