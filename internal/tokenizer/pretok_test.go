package tokenizer

import (
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// preOnly returns a gpt2 tokenizer (bytes only, no merges) with pre-tokenizer pre.
func preOnly(t testing.TB, pre string) *Tokenizer {
	t.Helper()
	tok, err := New(bpeVocab(pre, nil))
	require.NoError(t, err)
	return tok
}

// words returns the pre-tokens of text.
func words(tok *Tokenizer, text string) []string {
	var ps preSession
	clean, spans := tok.pretokenize(text, &ps)
	out := []string{}
	for _, w := range spans {
		out = append(out, clean[w.start:w.end])
	}
	return out
}

func TestPretokenize(t *testing.T) {
	tests := []struct {
		pre  string
		text string
		want []string
	}{
		{"llama-bpe", "", []string{}},
		{"llama-bpe", "Hello world", []string{"Hello", " world"}},
		// Contractions, case-insensitive for Llama 3.
		{"llama-bpe", "I'm don't we'LL they've she's", []string{"I", "'m", " don", "'t", " we", "'LL", " they", "'ve", " she", "'s"}},
		{"llama-bpe", "'hello a'", []string{"'hello", " a", "'"}},
		// Numbers in groups of at most three digits.
		{"llama-bpe", "12345 1234567", []string{"123", "45", " ", "123", "456", "7"}},
		{"llama-bpe", "3.14", []string{"3", ".", "14"}},
		// Punctuation runs take one leading space and trailing newlines.
		{"llama-bpe", "Hello!!! ...world?\n\nNext", []string{"Hello", "!!!", " ...", "world", "?\n\n", "Next"}},
		// White space: up to the last newline; before a word all but one space.
		{"llama-bpe", "a \n  b", []string{"a", " \n", " ", " b"}},
		{"llama-bpe", "x\r\n\r\ny", []string{"x", "\r\n\r\n", "y"}},
		{"llama-bpe", "end   ", []string{"end", "   "}},
		{"llama-bpe", "\t\tx", []string{"\t", "\tx"}},
		// Unicode letters; emoji are neither letters nor numbers.
		{"llama-bpe", "Führer привет 日本語", []string{"Führer", " привет", " 日本語"}},
		{"llama-bpe", "🦙🦙 ok", []string{"🦙🦙", " ok"}},
		{"llama3", "x²³⁴⁵", []string{"x", "²³⁴", "⁵"}},
		// Qwen 2: Llama 3's rules with single digits.
		{"qwen2", "a 2025", []string{"a", " ", "2", "0", "2", "5"}},
		// GPT-2: case-sensitive contractions, whole numbers, no newline rule.
		{"gpt-2", "Hello world", []string{"Hello", " world"}},
		{"gpt-2", "I'm WE'LL", []string{"I", "'m", " WE", "'", "LL"}},
		{"gpt-2", "12345 42", []string{"12345", " 42"}},
		{"gpt-2", "Hello!!! ...world", []string{"Hello", "!!!", " ...", "world"}},
		{"gpt-2", "a \n  b", []string{"a", " \n ", " b"}},
		{"gpt-2", "\t\tx", []string{"\t", "\t", "x"}},
		{"gpt-2", "end   ", []string{"end", "   "}},
		// llama.cpp's default: punctuation alone, GPT-2's rules, numbers
		// apart and cut into groups of three ASCII digits.
		{"default", "Hello, world! It's 12345 $5", []string{"Hello", ",", " world", "!", " It", "'", "s", " ", "123", "45", " ", "$", "5"}},
		// Runs of punctuation and of $+<=>^~| stay together; "`" is not
		// one of them.
		{"default", "a+b=c~~d!!e", []string{"a", "+", "b", "=", "c", "~~", "d", "!!", "e"}},
		{"default", "x+=1 `a` ~/", []string{"x", "+=", "1", " `", "a", "`", " ", "~/"}},
		// StarCoder: every digit alone, then GPT-2's rules.
		{"starcoder", "abc 123 x", []string{"abc", " ", "1", "2", "3", " x"}},
		// Falcon: runs of punctuation and symbols (with "`"), GPT-2's
		// rules, groups of three digits.
		{"falcon", "a+=b~`1234", []string{"a", "+=", "b", "~`", "123", "4"}},
		// BLOOM: words up to the listed punctuation and white space.
		{"bloom", "Hello, world! (a|b)", []string{"Hello", ",", " world", "! (", "a", "|", "b", ")"}},
		// Tekken: words split before capitals.
		{"tekken", "HelloWorld ABCdef", []string{"Hello", "World", " ABCdef"}},
		{"tekken", "ABC def", []string{"ABC", " def"}},
		// DeepSeek Coder: newlines, letters, punctuation, CJK, digits.
		{"deepseek-coder", "Hi 你好, 42!\n", []string{"Hi", " ", "你好", ",", " ", "4", "2", "!", "\n"}},
		{"deepseek-llm", "Hello world\n", []string{"Hello", " world", "\n"}},
		{"deepseek-llm", "ab  ", []string{"ab", "  "}},
		{"deepseek-v3", "abc123456 日本語x", []string{"abc", "123", "456", " ", "日本語", "x"}},
		{"deepseek-v3", "x.foo", []string{"x", ".foo"}},
		{"chameleon", "<sentinel:12>IMGIMGABZx  y", []string{"<", "sentinel", ":", "1", "2", ">", "IMGIMGABZ", "x", "  ", "y"}},
		{"viking", "ab12 c", []string{"ab", "1", "2", " c"}},
		// Invalid UTF-8 becomes U+FFFD, one per byte, as in llama.cpp.
		{"llama-bpe", "a\xffb\xe6\x97", []string{"a", "\uFFFDb", "\uFFFD\uFFFD"}},
		{"llama-bpe", "\xc0\x80", []string{"\x00"}}, // an overlong NUL is taken as NUL
	}
	for i, tc := range tests {
		t.Run(strconv.Itoa(i)+"_"+tc.pre, func(t *testing.T) {
			assert.Equal(t, tc.want, words(preOnly(t, tc.pre), tc.text), "text %q", tc.text)
		})
	}
}

// White space as the \s of the pre-tokenizer regexes (Unicode White_Space).
const ws = `\t\n\v\f\r \x{85}\p{Z}`

// refSplitter splits text by the alternatives of a regex in order, the first
// that matches at each position winning. The alternative `\s+(?!\S)` (which
// Go's regexp cannot express) is the nil entry; with lookahead set.
type refSplitter struct {
	alts []*regexp.Regexp
}

func newRefSplitter(alts ...string) refSplitter {
	var r refSplitter
	for _, a := range alts {
		if a == "" {
			r.alts = append(r.alts, nil)
			continue
		}
		r.alts = append(r.alts, regexp.MustCompile(`^(?:`+a+`)`))
	}
	return r
}

var (
	refLlama3 = newRefSplitter(
		`'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]`,
		`[^\r\n\p{L}\p{N}]?\p{L}+`,
		`\p{N}{1,3}`,
		` ?[^`+ws+`\p{L}\p{N}]+[\r\n]*`,
		`[`+ws+`]*[\r\n]+`,
		"",
		`[`+ws+`]+`,
	)
	refGPT2 = newRefSplitter(
		`'s|'t|'re|'ve|'m|'ll|'d`,
		` ?\p{L}+`,
		` ?\p{N}+`,
		` ?[^`+ws+`\p{L}\p{N}]+`,
		"",
		`[`+ws+`]+`,
	)
	isSpaceRe = regexp.MustCompile(`^[` + ws + `]`)
)

func (r refSplitter) split(text string) []string {
	out := []string{}
	for pos := 0; pos < len(text); {
		n := 0
		for _, re := range r.alts {
			if re != nil {
				n = len(re.FindString(text[pos:]))
			} else {
				n = spacesNotBeforeNonSpace(text[pos:])
			}
			if n > 0 {
				break
			}
		}
		if n == 0 {
			_, n = utf8.DecodeRuneInString(text[pos:])
		}
		out = append(out, text[pos:pos+n])
		pos += n
	}
	return out
}

// spacesNotBeforeNonSpace matches \s+(?!\S) at the start of s: the whole run
// of white space at the end of s, else the run but its last character.
func spacesNotBeforeNonSpace(s string) int {
	var ends []int
	for i := 0; i < len(s); {
		if !isSpaceRe.MatchString(s[i:]) {
			break
		}
		_, n := utf8.DecodeRuneInString(s[i:])
		i += n
		ends = append(ends, i)
	}
	switch {
	case len(ends) == 0:
		return 0
	case ends[len(ends)-1] == len(s):
		return len(s)
	case len(ends) > 1:
		return ends[len(ends)-2]
	}
	return 0
}

func TestPretokenizeMatchesRegex(t *testing.T) {
	llama3, gpt2 := preOnly(t, "llama-bpe"), preOnly(t, "gpt-2")
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 2000 {
		text := randomText(rng, 1+rng.IntN(30))
		if strings.ContainsFunc(text, func(r rune) bool { return isLetter(r) != unicode.IsLetter(r) }) {
			continue // Go's regexp knows Unicode 15.0, the tokenizers 15.1 (TestUnicode151)
		}
		require.Equal(t, refLlama3.split(text), words(llama3, text), "llama3 case %d: %q", i, text)
		require.Equal(t, refGPT2.split(text), words(gpt2, text), "gpt2 case %d: %q", i, text)
	}
}

// TestPretokenizeFastPaths checks the hand-written splitters against the
// regex engine running llama.cpp's patterns, on random texts.
func TestPretokenizeFastPaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for _, pre := range []string{"default", "qwen2", "llama-bpe", "gpt-2"} {
		fast := preOnly(t, pre)
		slow := preOnly(t, pre)
		p := *slow.pre
		p.kind = preRegex
		p.steps = nil
		for _, d := range preDefs {
			if d.names[0] == p.name {
				for _, pat := range d.patterns {
					st := mustStep(pat)
					if st.gpt2 || st.llama3 {
						// Compare with the regex engine, not the
						// hand-written code llama.cpp runs for these.
						st = regexStep(t, pat)
					}
					p.steps = append(p.steps, st)
				}
			}
		}
		require.NotEmpty(t, p.steps)
		slow.pre = &p
		for i := range 2000 {
			text := randomText(rng, 1+i%40)
			require.Equal(t, words(slow, text), words(fast, text), "%s: text %q", pre, text)
		}
	}
}

func regexStep(t *testing.T, pat string) preStep {
	units, err := collapsePattern(pat)
	require.NoError(t, err)
	re, err := compileRegex(units)
	require.NoError(t, err)
	return preStep{re: re, collapsed: true}
}

func TestRegexSyntax(t *testing.T) {
	for _, bad := range []string{"(", "[a", "a{2", "a{3,1}", "\\p{L}", "a*?", "(?<x>a)", "[z-a]", ")"} {
		_, err := compileRegex([]rune(bad))
		assert.Error(t, err, "pattern %q", bad)
	}
	_, err := collapsePattern("\\p{L}é")
	assert.Error(t, err)
}
