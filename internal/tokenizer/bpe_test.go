package tokenizer

import (
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Special tokens of the test BPE vocabularies, after the byte tokens and the
// merged tokens.
var bpeSpecials = []struct {
	text string
	typ  int32
}{
	{"<|begin_of_text|>", TypeControl},
	{"<|end_of_text|>", TypeControl},
	{"<|eot_id|>", TypeControl},
	{"<tool>", TypeUserDefined},
}

// bpeVocab builds a byte-level BPE vocabulary: id b (0…255) is byte b, then
// the result of each merge in order, then the extra tokens, then
// bpeSpecials. Merges and extra tokens are written with real bytes (" the"),
// and mapped to their byte-level form here.
func bpeVocab(pre string, merges []string, extra ...string) Vocab {
	enc := func(s string) string { return string(byteLevelEncode(s, nil)) }
	v := Vocab{Model: "gpt2", Pre: pre, BOS: -1, EOS: -1, UNK: -1, PAD: -1, EOT: -1}
	seen := map[string]bool{}
	add := func(s string, typ int32) {
		if !seen[s] {
			seen[s] = true
			v.Tokens = append(v.Tokens, s)
			v.Types = append(v.Types, typ)
		}
	}
	for b := range 256 {
		add(enc(string([]byte{byte(b)})), TypeNormal)
	}
	for _, m := range merges {
		a, b, ok := strings.Cut(m, "|")
		if !ok {
			panic("merge without |: " + m)
		}
		v.Merges = append(v.Merges, enc(a)+" "+enc(b))
		add(enc(a+b), TypeNormal)
	}
	for _, e := range extra {
		add(enc(e), TypeNormal)
	}
	for _, s := range bpeSpecials {
		add(s.text, s.typ)
	}
	v.BOS = len(v.Tokens) - 4
	v.EOS = len(v.Tokens) - 3
	v.AddBOS = preKinds[pre] != nil && preKinds[pre].addBOS
	return v
}

// handMerges are the merges of TestBPEEncode, "left|right" in rank order.
var handMerges = []string{
	"h|e",       // 256 he
	"l|l",       // 257 ll
	" |t",       // 258 " t"
	" t|he",     // 259 " the"
	"he|ll",     // 260 hell
	"hell|o",    // 261 hello
	" |w",       // 262 " w"
	"o|r",       // 263 or
	" w|or",     // 264 " wor"
	" wor|l",    // 265 " worl"
	" worl|d",   // 266 " world"
	"1|2",       // 267 12
	"'|s",       // 268 's
	"\n|\n",     // 269 "\n\n"
	" | ",       // 270 "  "
	"\xf0|\x9f", // 271 the first two bytes of many emoji
}

func TestBPEEncode(t *testing.T) {
	v := bpeVocab("llama-bpe", handMerges, " hello") // " hello": 272, not reachable by merges
	llama3, err := New(v)
	require.NoError(t, err)
	v.Pre = "gpt-2"
	v.AddBOS = false
	gpt2, err := New(v)
	require.NoError(t, err)
	const bos, eos, eot, tool = 273, 274, 275, 276
	require.Equal(t, "<tool>", llama3.TokenText(tool))
	require.Equal(t, "Ġhello", llama3.TokenText(272))

	tests := []struct {
		name         string
		tok          *Tokenizer
		text         string
		addSpecial   bool
		parseSpecial bool
		want         []int
	}{
		// hello: he(0) first, then ll(1), hell(4), hello(5).
		// " world": " w"(6) before or(7), then " wor", " worl", " world".
		{"merges by rank", gpt2, "hello world", false, false, []int{261, 266}},
		// " the": he(0) before " t"(2), then " the"(3).
		{"lower rank first", gpt2, " the", false, false, []int{259}},
		// Two ll pairs of one rank: the leftmost merges, the last l stays.
		{"ties to the left", gpt2, "lll", false, false, []int{257, 'l'}},
		// Llama 3 takes a word that is a token as is (ignore_merges);
		// GPT-2 merges it: " " and "hello".
		{"ignore merges", llama3, "say hello", false, false, []int{'s', 'a', 'y', 272}},
		{"merges without ignore", gpt2, "say hello", false, false, []int{'s', 'a', 'y', ' ', 261}},
		{"BOS added", llama3, "hello", true, false, []int{bos, 261}},
		{"no BOS for gpt-2", gpt2, "hello", true, false, []int{261}},
		{"contraction", llama3, "it's", false, false, []int{'i', 't', 268}},
		{"numbers", llama3, "12345", false, false, []int{267, '3', '4', '5'}},
		{"newlines", llama3, "a\n\n\nb", false, false, []int{'a', 269, '\n', 'b'}},
		{"trailing spaces", llama3, "a   ", false, false, []int{'a', 270, ' '}},
		// 🦙 is F0 9F A6 99: the first two bytes merge, the rest stay bytes.
		{"emoji as bytes", llama3, "🦙", false, false, []int{271, 0xA6, 0x99}},
		{"unicode letters", llama3, "é", false, false, []int{0xC3, 0xA9}},
		{"special parsed", llama3, "<|begin_of_text|>hello<|eot_id|>", false, true, []int{bos, 261, eot}},
		{"special as text", llama3, "<|eot_id|>", false, false, []int{'<', '|', 'e', 'o', 't', '_', 'i', 'd', '|', '>'}},
		{"user-defined always", llama3, "a<tool>b", false, false, []int{'a', tool, 'b'}},
		{"empty", llama3, "", false, false, []int{}},
		{"empty with BOS", llama3, "", true, false, []int{bos}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.tok.Encode(tc.text, tc.addSpecial, tc.parseSpecial)
			assert.Equal(t, tc.want, got)
			if !tc.parseSpecial {
				// Without special tokens decoding gives the text back.
				assert.Equal(t, tc.text, tc.tok.Decode(got))
			}
		})
	}

	assert.Equal(t, eot, llama3.EOT(), "EOT found by its text")
	for id, want := range map[int]bool{bos: false, eos: true, eot: true, tool: false, 261: false} {
		assert.Equal(t, want, llama3.IsEOG(id), "IsEOG(%d)", id)
	}
	assert.Equal(t, "", llama3.Decode([]int{bos, eos, eot}), "control tokens decode to nothing")
	assert.Equal(t, "<tool>", llama3.Decode([]int{tool}), "user-defined tokens decode to their text")
	assert.Equal(t, []byte(" world"), llama3.Piece(266))
	assert.Equal(t, []byte{0xF0, 0x9F}, llama3.Piece(271))
}

var trained struct {
	sync.Once
	merges []string
}

// trainedMerges returns 400 merges learned from corpus (once per test binary).
func trainedMerges(t testing.TB) []string {
	trained.Do(func() { trained.merges = trainBPE(t, corpus(), 400) })
	require.Len(t, trained.merges, 400)
	return trained.merges
}

func TestBPERoundTrip(t *testing.T) {
	merges := trainedMerges(t)
	rng := rand.New(rand.NewPCG(9, 10))
	for _, pre := range []string{"llama-bpe", "qwen2", "gpt-2", "default"} {
		t.Run(pre, func(t *testing.T) {
			tok, err := New(bpeVocab(pre, merges))
			require.NoError(t, err)
			for i := range 300 {
				text := randomText(rng, 1+rng.IntN(40))
				ids := tok.Encode(text, false, false)
				require.Equal(t, text, tok.Decode(ids), "case %d: %q", i, text)
				require.Equal(t, naiveBPE(tok, text), ids, "case %d: %q", i, text)
				require.Equal(t, text, streamDecode(t, tok, ids), "case %d: %q", i, text)
			}
			// Merges do happen: English text takes fewer tokens than bytes.
			en := englishPrompt(2000)
			assert.Less(t, len(tok.Encode(en, false, false)), len(en)/2)
		})
	}
}

// naiveBPE is a slow reference of byte-level BPE on the tokenizer's own
// pre-tokens: merge the adjacent pair of lowest rank (leftmost on ties) until
// none is left.
func naiveBPE(tok *Tokenizer, text string) []int {
	var ps preSession
	clean, spans := tok.pretokenize(text, &ps)
	ids := []int{}
	for _, w := range spans {
		word := string(byteLevelEncode(clean[w.start:w.end], nil))
		if id, ok := tok.toID[word]; ok && tok.ignoreMerges {
			ids = append(ids, id)
			continue
		}
		var syms []string
		for _, r := range word {
			syms = append(syms, string(r))
		}
		for {
			best, bestRank := -1, 0
			for i := 0; i+1 < len(syms); i++ {
				if r, ok := tok.merges[[2]string{syms[i], syms[i+1]}]; ok && (best < 0 || r < bestRank) {
					best, bestRank = i, r
				}
			}
			if best < 0 {
				break
			}
			syms[best] += syms[best+1]
			syms = append(syms[:best+1], syms[best+2:]...)
		}
		for _, s := range syms {
			ids = append(ids, tok.toID[s])
		}
	}
	return ids
}

// corpus is training text for trainBPE.
func corpus() string {
	rng := rand.New(rand.NewPCG(11, 12))
	var b strings.Builder
	b.WriteString(englishPrompt(3000))
	for range 200 {
		b.WriteString(randomText(rng, 10))
	}
	return b.String()
}

// trainBPE learns n merges from text, test-only and slow: split into
// space-led words, then repeatedly merge the most frequent adjacent pair
// (ties broken by the pair's text). Merges are "left|right" in real bytes.
func trainBPE(t testing.TB, text string, n int) []string {
	t.Helper()
	counts := map[string]int{}
	for len(text) > 0 {
		i := strings.IndexByte(text[1:], ' ') + 1
		if i == 0 {
			i = len(text)
		}
		counts[text[:i]]++
		text = text[i:]
	}
	type word struct {
		syms  []string
		count int
	}
	var ws []word
	for w, c := range counts {
		var syms []string
		for i := 0; i < len(w); i++ {
			syms = append(syms, w[i:i+1])
		}
		ws = append(ws, word{syms, c})
	}
	var merges []string
	for len(merges) < n {
		pairs := map[[2]string]int{}
		for _, w := range ws {
			for i := 0; i+1 < len(w.syms); i++ {
				pairs[[2]string{w.syms[i], w.syms[i+1]}] += w.count
			}
		}
		if len(pairs) == 0 {
			break
		}
		var best [2]string
		bestN := 0
		for k, c := range pairs {
			if c > bestN || c == bestN && (k[0] < best[0] || k[0] == best[0] && k[1] < best[1]) {
				best, bestN = k, c
			}
		}
		merges = append(merges, best[0]+"|"+best[1])
		for k := range ws {
			s := ws[k].syms
			var out []string
			for i := 0; i < len(s); i++ {
				if i+1 < len(s) && s[i] == best[0] && s[i+1] == best[1] {
					out = append(out, s[i]+s[i+1])
					i++
					continue
				}
				out = append(out, s[i])
			}
			ws[k].syms = out
		}
	}
	require.Len(t, merges, n)
	return merges
}
