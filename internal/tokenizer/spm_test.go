package tokenizer

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/gguf"
)

// readVocabTests reads llama.cpp's tokenizer test files: in the .inp file every
// input is followed by "\n__ggml_vocab_test__\n"; the .out file has one line
// of space-separated ids per input.
func readVocabTests(t *testing.T, inp, out string) ([]string, [][]int) {
	t.Helper()
	in, err := os.ReadFile(inp)
	require.NoError(t, err)
	const sep = "\n__ggml_vocab_test__\n"
	texts := strings.Split(string(in), sep)
	require.Equal(t, "", texts[len(texts)-1], "the .inp file ends with a separator")
	texts = texts[:len(texts)-1]

	o, err := os.ReadFile(out)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(o), "\n"), "\n")
	require.Len(t, lines, len(texts))
	ids := make([][]int, len(lines))
	for i, l := range lines {
		ids[i] = []int{}
		for _, f := range strings.Fields(l) {
			id, err := strconv.Atoi(f)
			require.NoError(t, err)
			ids[i] = append(ids[i], id)
		}
	}
	return texts, ids
}

func TestSPMVocabConformance(t *testing.T) {
	tok := llamaTokenizer(t)
	texts, want := readVocabTests(t, fixture(t, "tokenizer-llama-spm.inp"), fixture(t, "tokenizer-llama-spm.out"))
	require.Len(t, texts, 46)
	for i, text := range texts {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			got := tok.Encode(text, false, false)
			assert.Equal(t, want[i], got, "input %q", text)
			assert.Equal(t, want[i], tok.Encode(text, false, true), "input %q with parseSpecial", text)
			if text != "" {
				assert.Equal(t, " "+text, tok.Decode(got), "decode(encode(%q))", text)
			}
		})
	}
}

// golden is one line of tiny-*.golden.jsonl.
type golden struct {
	PromptHex       string   `json:"prompt_hex"`
	PromptIDs       []int    `json:"prompt_ids"`
	GreedyIDs       []int    `json:"greedy_ids"`
	GreedyPiecesHex []string `json:"greedy_pieces_hex"`
	GreedyTextHex   string   `json:"greedy_text_hex"`
}

func readGoldens(t *testing.T) []golden {
	t.Helper()
	f, err := os.Open(fixture(t, "tiny-F16.golden.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	var gs []golden
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var g golden
		require.NoError(t, json.Unmarshal(sc.Bytes(), &g))
		gs = append(gs, g)
	}
	require.NoError(t, sc.Err())
	return gs
}

func unhex(t *testing.T, s string) string {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return string(b)
}

func TestSPMPrompts(t *testing.T) {
	tok := llamaTokenizer(t)
	gs := readGoldens(t)
	prompts, err := os.ReadFile(fixture(t, "prompts.txt"))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(prompts), "\n"), "\n")
	require.Len(t, gs, 5)
	require.Len(t, lines, len(gs))

	for i, g := range gs {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			prompt := unhex(t, g.PromptHex)
			require.Equal(t, lines[i], prompt)
			assert.Equal(t, g.PromptIDs, tok.Encode(prompt, true, true))
			assert.Equal(t, g.PromptIDs, tok.Encode(prompt, true, false))

			require.Len(t, g.GreedyPiecesHex, len(g.GreedyIDs))
			for j, id := range g.GreedyIDs {
				assert.Equal(t, unhex(t, g.GreedyPiecesHex[j]), string(tok.Piece(id)), "piece of %d", id)
			}
			text := unhex(t, g.GreedyTextHex)
			assert.Equal(t, text, tok.Decode(g.GreedyIDs))

			d := tok.NewDecoder()
			var streamed strings.Builder
			for _, id := range g.GreedyIDs {
				streamed.WriteString(d.Next(id))
			}
			streamed.WriteString(d.Flush())
			assert.Equal(t, string([]rune(text)), streamed.String())
		})
	}
}

func TestSPMSpecials(t *testing.T) {
	tok := llamaTokenizer(t)
	assert.Equal(t, 32000, tok.VocabSize())
	assert.Equal(t, 1, tok.BOS())
	assert.Equal(t, 2, tok.EOS())
	assert.True(t, tok.IsEOG(2))
	assert.False(t, tok.IsEOG(1))
	assert.False(t, tok.IsEOG(13))
	assert.Equal(t, "<s>", tok.TokenText(1))
	assert.Equal(t, "<0x0A>", tok.TokenText(13))
	assert.Equal(t, "", tok.TokenText(-1))
	assert.Equal(t, "", tok.TokenText(32000))
	assert.Equal(t, []byte("\n"), tok.Piece(13))
	assert.Empty(t, tok.Piece(1), "control tokens have no text")
	assert.Empty(t, tok.Piece(0), "the unknown token has no text")
	assert.Empty(t, tok.Piece(-5))
	assert.Empty(t, tok.Piece(1<<40))
	assert.Equal(t, " Hello", string(tok.Piece(15043)))
	assert.Equal(t, "", tok.Decode([]int{-1, 1, 2, 32000}))

	tests := []struct {
		name         string
		text         string
		addSpecial   bool
		parseSpecial bool
		want         []int
	}{
		{"empty", "", false, false, []int{}},
		{"empty with BOS", "", true, false, []int{1}},
		{"BOS", "Hello", true, false, []int{1, 15043}},
		// "<s>" parsed: the text after a special token gets the space
		// prefix again, so "Hello" is "▁Hello" (15043) and "world" "▁world" (3186).
		{"special parsed", "<s>Hello</s>", false, true, []int{1, 15043, 2}},
		{"special parsed with BOS", "Hello<s>world", true, true, []int{1, 15043, 1, 3186}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tok.Encode(tc.text, tc.addSpecial, tc.parseSpecial))
		})
	}

	// Without parseSpecial "<s>" is plain text and decodes back to itself.
	plain := tok.Encode("<s>Hello</s>", false, false)
	assert.NotContains(t, plain, 1)
	assert.NotContains(t, plain, 2)
	assert.Equal(t, " <s>Hello</s>", tok.Decode(plain))
}

// naiveSPM is a slow reference of SentencePiece merging: find the adjacent
// pair whose concatenation is the highest-scoring token (leftmost on ties),
// merge it, repeat; then tokens, or bytes for what is not a token.
func naiveSPM(tok *Tokenizer, text string) []int {
	s := strings.ReplaceAll(" "+text, " ", "▁")
	var syms []string
	for off := 0; off < len(s); {
		n := min(utf8Len(s[off]), len(s)-off)
		syms = append(syms, s[off:off+n])
		off += n
	}
	for {
		best, bestScore := -1, float32(0)
		for i := 0; i+1 < len(syms); i++ {
			id, ok := tok.toID[syms[i]+syms[i+1]]
			if ok && (best < 0 || tok.scores[id] > bestScore) {
				best, bestScore = i, tok.scores[id]
			}
		}
		if best < 0 {
			break
		}
		syms[best] += syms[best+1]
		syms = append(syms[:best+1], syms[best+2:]...)
	}
	ids := []int{}
	for _, sym := range syms {
		if id, ok := tok.toID[sym]; ok {
			ids = append(ids, id)
			continue
		}
		for i := 0; i < len(sym); i++ {
			ids = append(ids, tok.byteTok[sym[i]])
		}
	}
	return ids
}

func TestSPMMatchesNaiveReference(t *testing.T) {
	tok := llamaTokenizer(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		text := randomText(rng, 1+rng.IntN(40))
		got := tok.Encode(text, false, false)
		require.Equal(t, naiveSPM(tok, text), got, "case %d: %q", i, text)
		assert.Equal(t, " "+text, tok.Decode(got), "case %d: %q", i, text)
		assert.Equal(t, string([]rune(tok.Decode(got))), streamDecode(t, tok, got), "case %d: %q", i, text)
	}
}

func TestSPMInvalidUTF8(t *testing.T) {
	tok := llamaTokenizer(t)
	// llama.cpp cuts characters by their first byte only: "\xC3A" is one
	// two-byte symbol, not a token, so it falls back to the bytes C3 and 41.
	tests := []struct {
		name string
		text string
		want []int
	}{
		{"lead byte then ASCII", "\xC3A", []int{29871, tok.byteTok[0xC3], tok.byteTok['A']}},
		{"lone continuation", "\x80", []int{29871, tok.byteTok[0x80]}},
		{"truncated at end", "a\xE6\x97", []int{263, tok.byteTok[0xE6], tok.byteTok[0x97]}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tok.Encode(tc.text, false, false)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, " "+tc.text, tok.Decode(got), "bytes come back unchanged")
			assert.Equal(t, string([]rune(" "+tc.text)), streamDecode(t, tok, got))
		})
	}
}

func TestSPMLongPrompt(t *testing.T) {
	tok := llamaTokenizer(t)
	rng := rand.New(rand.NewPCG(3, 4))
	var b strings.Builder
	for b.Len() < 32768 {
		b.WriteString(randomText(rng, 20))
	}
	text := b.String()
	ids := tok.Encode(text, true, false)
	require.NotEmpty(t, ids)
	assert.Equal(t, 1, ids[0])
	assert.Equal(t, " "+text, tok.Decode(ids[1:]))
}

func TestSPMWordSplitMatchesWhole(t *testing.T) {
	tok := llamaTokenizer(t)
	require.True(t, tok.spmWords, "the llama vocabulary has no token with an inner ▁")

	f, err := gguf.Open(fixture(t, "tiny-F16.gguf"))
	require.NoError(t, err)
	defer f.Close()
	v, err := VocabFromGGUF(f)
	require.NoError(t, err)
	whole, err := New(v)
	require.NoError(t, err)
	whole.spmWords = false // merge each fragment as one piece, as llama.cpp does

	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 200 {
		text := randomText(rng, 1+rng.IntN(60))
		require.Equal(t, whole.Encode(text, true, true), tok.Encode(text, true, true), "case %d: %q", i, text)
	}
}

func TestSPMBrokenCharacterSwallowsSpace(t *testing.T) {
	tok := llamaTokenizer(t)
	// "\xd0" announces two bytes, so the symbol is D0 plus the first byte of
	// the "▁" that replaced the space; all of it falls back to bytes, and the
	// space decodes as the three bytes of "▁". This is llama.cpp's behaviour.
	ids := tok.Encode("C\xd0 0", false, false)
	b := tok.byteTok
	assert.Equal(t, []int{315 /* ▁C */, b[0xD0], b[0xE2], b[0x96], b[0x81], 29900}, ids)
	assert.Equal(t, " C\xd0▁0", tok.Decode(ids))
}
