package grammar

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/testutil"
	"rbee/internal/tokenizer"
)

// The vocabularies of the fixtures: llama's 32,000-token SentencePiece
// (byte fallback tokens such as <0xE2>) and Llama 3's 128,256-token
// byte-level BPE.
var vocabFiles = []struct{ name, path string }{
	{"spm32k", "tiny-F16.gguf"},
	{"bpe128k", "families/llama3-Q4_K_M.gguf"},
}

type testVocab struct {
	tok *tokenizer.Tokenizer
	v   *Vocab
}

var (
	vocabMu    sync.Mutex
	vocabCache = map[string]testVocab{}
)

func loadVocab(t testing.TB, file string) testVocab {
	t.Helper()
	vocabMu.Lock()
	defer vocabMu.Unlock()
	if tv, ok := vocabCache[file]; ok {
		return tv
	}
	tok, err := tokenizer.Open(filepath.Join(testutil.Fixtures(t), file))
	require.NoError(t, err)
	tv := testVocab{tok: tok, v: NewVocab(tok.VocabSize(), tok.Piece, tok.IsEOG)}
	vocabCache[file] = tv
	return tv
}

// docSchema and doc are a long document with deep nesting, strings with
// escapes and non-ASCII text, numbers and optional properties.
const docSchema = `{
  "$defs": {
    "section": {"type": "object", "properties": {
      "title": {"type": "string"},
      "level": {"type": "integer"},
      "score": {"type": "number"},
      "tags": {"type": "array", "items": {"enum": ["draft", "final", "review"]}, "maxItems": 4},
      "children": {"type": "array", "items": {"$ref": "#/$defs/section"}}
    }, "required": ["title", "level", "children"], "additionalProperties": false}
  },
  "type": "object",
  "properties": {
    "name": {"type": "string", "minLength": 1},
    "author": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    "published": {"type": "boolean"},
    "meta": {"type": "object"},
    "sections": {"type": "array", "items": {"$ref": "#/$defs/section"}, "minItems": 1}
  },
  "required": ["name", "sections"],
  "additionalProperties": false
}`

func longDoc() string {
	var b strings.Builder
	var section func(depth int, i int)
	section = func(depth, i int) {
		fmt.Fprintf(&b, `{"title": "Kapitel %d.%d — “Überblick” über \"Daten\" und 日本語テキスト 🎉\n", "level": %d, "score": %d.%de-3, "tags": ["draft", "review"], "children": [`, depth, i, depth, i, depth)
		if depth < 4 {
			for j := range 2 {
				if j > 0 {
					b.WriteString(", ")
				}
				section(depth+1, j)
			}
		}
		b.WriteString("]}")
	}
	b.WriteString("{\n  \"name\": \"A long document: ünïcödé, tabs\\tand \\u00e9scapes\",\n  \"author\": null,\n  \"published\": true,\n  \"meta\": {\"k\": [1, 2.5, -3e10, {\"x\": \"y\"}], \"ok\": false},\n  \"sections\": [")
	section(1, 0)
	b.WriteString("]\n}")
	return b.String()
}

// matcherAt is a matcher positioned after the first n tokens of ids.
func positions(t testing.TB, g *Grammar, v *Vocab, ids []int) []*Matcher {
	t.Helper()
	m := g.NewMatcher(v)
	out := []*Matcher{clone(m)}
	for i, id := range ids {
		require.NoError(t, m.Accept(id), "token %d (%d) of the document", i, id)
		out = append(out, clone(m))
	}
	return out
}

func clone(m *Matcher) *Matcher {
	c := m.g.NewMatcher(m.v)
	c.states = append(c.states[:0], m.states...)
	c.done = m.done
	return c
}

func TestDocumentValid(t *testing.T) {
	doc := longDoc()
	var v any
	require.NoError(t, json.Unmarshal([]byte(doc), &v))
	ok, done := match(mustSchema(t, docSchema), doc)
	require.True(t, ok)
	require.True(t, done)
}

// Every tokenization of a valid document is allowed token by token, the
// whole-vocabulary mask agrees with the one-token check at every position,
// and the end of generation is allowed exactly at the end.
func TestTokensSpanningSymbolsAndBytes(t *testing.T) {
	for _, vf := range vocabFiles {
		t.Run(vf.name, func(t *testing.T) {
			tv := loadVocab(t, vf.path)
			g := mustSchema(t, docSchema)
			doc := longDoc()
			ids := tv.tok.Encode(doc, false, false)
			// SentencePiece adds a space in front, which the grammar allows.
			require.True(t, strings.TrimPrefix(tv.tok.Decode(ids), " ") == doc, "the tokens spell the document")
			ps := positions(t, g, tv.v, ids)
			eos := tv.tok.EOS()
			for i, m := range ps {
				assert.Equal(t, i == len(ids), m.Allows(eos), "EOS after %d tokens", i)
			}
			// Compare the mask with Allows for every token at a sample of
			// positions (all of them in the short test of the 32k vocab).
			step := 3
			if testing.Short() || tv.v.n > 50000 {
				step = 29
			}
			logits := make([]float32, tv.v.n)
			for i := 0; i < len(ps); i += step {
				m := ps[i]
				for j := range logits {
					logits[j] = 0
				}
				n, err := m.Mask(logits)
				require.NoError(t, err)
				count := 0
				for id := range tv.v.n {
					allowed := !math.IsInf(float64(logits[id]), -1)
					if allowed != m.Allows(id) {
						t.Fatalf("after %d tokens (…%q), token %d (%q): mask says %v, Allows says %v",
							i, tail(tv.tok.Decode(ids[:i])), id, tv.tok.Piece(id), allowed, !allowed)
					}
					if allowed {
						count++
					}
				}
				assert.Equal(t, count, n)
				if i < len(ids) {
					assert.False(t, math.IsInf(float64(logits[ids[i]]), -1), "the document's own next token is masked")
				}
			}
		})
	}
}

func TestByteFallbackTokens(t *testing.T) {
	tv := loadVocab(t, "tiny-F16.gguf")
	b0, ok := tv.tok.TokenID("<0xE2>")
	require.True(t, ok)
	b1, _ := tv.tok.TokenID("<0x82>")
	b2, _ := tv.tok.TokenID("<0xAC>") // E2 82 AC is €
	quote, ok := tv.tok.TokenID(`"`)
	require.True(t, ok)
	m := JSON().NewMatcher(tv.v)
	require.NoError(t, m.Accept(quote))
	require.True(t, m.Allows(b0))
	require.NoError(t, m.Accept(b0))
	assert.False(t, m.Allows(quote), "a string cannot end inside a character")
	assert.False(t, m.Allows(b0), "E2 cannot follow E2")
	require.NoError(t, m.Accept(b1))
	require.NoError(t, m.Accept(b2))
	require.NoError(t, m.Accept(quote))
	assert.True(t, m.Complete())
	assert.True(t, m.Allows(tv.tok.EOS()))
	assert.False(t, m.Allows(tv.tok.BOS()), "control tokens are never allowed")
}

func TestNoTokenError(t *testing.T) {
	// A vocabulary without '}' cannot close an object.
	v := NewVocab(3, func(id int) []byte { return [][]byte{[]byte("{"), []byte(`"`), nil}[id] }, func(id int) bool { return id == 2 })
	m := mustSchema(t, `{"type":"object","additionalProperties":false}`).NewMatcher(v)
	require.NoError(t, m.Accept(0))
	_, err := m.Mask(make([]float32, 3))
	require.ErrorIs(t, err, ErrNoToken)
}

// BenchmarkMask measures the cost of a full-vocabulary mask (what a
// rejected sample costs) at every position of a long document; ns/op is the
// mean over positions, max-ns the slowest position.
func BenchmarkMask(b *testing.B) {
	for _, vf := range vocabFiles {
		b.Run(vf.name, func(b *testing.B) {
			tv := loadVocab(b, vf.path)
			g := mustSchema(b, docSchema)
			ids := tv.tok.Encode(longDoc(), false, false)
			ps := positions(b, g, tv.v, ids)
			logits := make([]float32, tv.v.n)
			var slowest float64
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := ps[i%len(ps)].Mask(logits); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// The slowest position: the best of 5 runs of each.
			for _, m := range ps {
				best := time.Duration(math.MaxInt64)
				for range 5 {
					start := time.Now()
					_, _ = m.Mask(logits)
					best = min(best, time.Since(start))
				}
				slowest = max(slowest, float64(best.Nanoseconds()))
			}
			b.ReportMetric(slowest, "max-ns")
			b.ReportMetric(float64(len(ps)), "positions")
		})
	}
}

// BenchmarkAllows measures the check of one sampled token, the common case
// when the sampler's choice fits.
func BenchmarkAllows(b *testing.B) {
	tv := loadVocab(b, vocabFiles[0].path)
	ids := tv.tok.Encode(longDoc(), false, false)
	ps := positions(b, mustSchema(b, docSchema), tv.v, ids)
	for i := 0; b.Loop(); i++ {
		k := i % len(ids)
		if !ps[k].Allows(ids[k]) {
			b.Fatal("rejected")
		}
	}
}

func tail(s string) string { return s[max(0, len(s)-60):] }

// BenchmarkNewVocab measures building the tries of a vocabulary, which a
// worker does once, at its first constrained request.
func BenchmarkNewVocab(b *testing.B) {
	for _, vf := range vocabFiles {
		b.Run(vf.name, func(b *testing.B) {
			tok := loadVocab(b, vf.path).tok
			for b.Loop() {
				NewVocab(tok.VocabSize(), tok.Piece, tok.IsEOG)
			}
		})
	}
}
