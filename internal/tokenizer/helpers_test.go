package tokenizer

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"rbee/internal/gguf"
)

// fixturesDir finds ../shared/fixtures next to the module root (the directory
// holding go.mod), or returns "" when it is absent.
func fixturesDir() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			fx := filepath.Join(dir, "..", "shared", "fixtures")
			if st, err := os.Stat(fx); err == nil && st.IsDir() {
				return fx
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// fixture returns the path of a fixture file, skipping the test when the
// fixtures are not there.
func fixture(t testing.TB, name string) string {
	t.Helper()
	dir := fixturesDir()
	if dir == "" {
		t.Skip("../shared/fixtures (next to the module root) is absent: llama.cpp conformance data not available")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("fixture %s is absent: %v", name, err)
	}
	return p
}

var llamaOnce struct {
	sync.Once
	tok *Tokenizer
	err error
}

// llamaTokenizer loads the 32000-token llama SentencePiece vocabulary of the
// tiny fixture model (once per test binary).
func llamaTokenizer(t testing.TB) *Tokenizer {
	t.Helper()
	path := fixture(t, "tiny-F16.gguf")
	llamaOnce.Do(func() {
		f, err := gguf.Open(path)
		if err != nil {
			llamaOnce.err = err
			return
		}
		defer f.Close()
		llamaOnce.tok, llamaOnce.err = FromGGUF(f)
	})
	require.NoError(t, llamaOnce.err)
	return llamaOnce.tok
}

// textAlphabet is what random test texts are made of: ASCII words and
// punctuation, white space of several kinds, accented Latin, Cyrillic, CJK,
// Khmer, emoji (with joiners and variation selectors) and digits.
var textAlphabet = []string{
	"a", "e", "t", "h", "the", "Hello", "world", " ", " ", " ", "  ", "\n", "\n\n", "\t", "\r\n",
	"'s", "'t", "'RE", "'ll", "'", "!", "?", ".", ",", "...", "(", ")", "$", "+", "<", "=", "|", "`", "-", "_",
	"0", "1", "2", "3", "42", "12345", "½", "²", "٣",
	"é", "ü", "ß", "Führer", "Việt", "ñ",
	"и", "привет", "мир",
	"日", "本", "語", "我想在apple工作",
	"ខ្មែរ", "ា",
	"🦙", "😁", "👍🏽", "❤️", "👨‍👩‍👧", "✅",
	"\u00a0", "\u3000", "\u2028", "\u200b", "\u0085",
	"<s>", "</s>",
}

// randomText returns a random string of n pieces of textAlphabet, with an
// occasional random code point.
func randomText(rng *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		if rng.IntN(10) == 0 {
			b.WriteRune(rune(rng.IntN(0x30000)))
			continue
		}
		b.WriteString(textAlphabet[rng.IntN(len(textAlphabet))])
	}
	return b.String()
}

// streamDecode feeds ids one by one through a Decoder, checks that every
// output is valid UTF-8, and returns the concatenated outputs and Flush.
func streamDecode(t *testing.T, tok *Tokenizer, ids []int) string {
	t.Helper()
	d := tok.NewDecoder()
	var b strings.Builder
	for _, id := range ids {
		s := d.Next(id)
		if !utf8.ValidString(s) {
			t.Fatalf("Next(%d) gave invalid UTF-8 %q", id, s)
		}
		b.WriteString(s)
	}
	s := d.Flush()
	if !utf8.ValidString(s) {
		t.Fatalf("Flush gave invalid UTF-8 %q", s)
	}
	b.WriteString(s)
	return b.String()
}
