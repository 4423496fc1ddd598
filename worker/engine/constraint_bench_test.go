package engine

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"rbee/internal/grammar"
	"rbee/internal/testutil"
	"rbee/internal/tokenizer"
)

// benchDoc is a nested JSON document valid for benchSchema, long enough that
// a benchmark passes every kind of position (inside strings, between
// properties, deep in arrays).
const benchSchema = `{"$defs":{"s":{"type":"object","properties":{"title":{"type":"string"},"n":{"type":"number"},
"tags":{"type":"array","items":{"type":"string"}},"children":{"type":"array","items":{"$ref":"#/$defs/s"}}},
"required":["title","n","children"],"additionalProperties":false}},"$ref":"#/$defs/s"}`

func benchDoc() string {
	var b strings.Builder
	var sec func(d int)
	sec = func(d int) {
		fmt.Fprintf(&b, `{"title": "Abschnitt %d — “Zitat” mit \"Escapes\" und 日本語", "n": %d.25e-2, "tags": ["a", "b c"], "children": [`, d, d)
		if d < 5 {
			sec(d + 1)
			b.WriteString(", ")
			sec(d + 1)
		}
		b.WriteString("]}")
	}
	sec(1)
	return b.String()
}

// BenchmarkSampleConstrained measures one sampling step with top-k off
// (every token a candidate) and random logits, so that the first draw is
// almost always refused and the whole vocabulary is masked: the worst case
// of a constrained step. "free" is the same step without a constraint; the
// difference is what the schema adds per token.
func BenchmarkSampleConstrained(b *testing.B) {
	for _, vf := range []struct{ name, file string }{{"32k", "tiny-F16.gguf"}, {"128k", "families/llama3-Q4_K_M.gguf"}} {
		tok, err := tokenizer.Open(filepath.Join(testutil.Fixtures(b), vf.file))
		if err != nil {
			b.Fatal(err)
		}
		vocab := grammar.NewVocab(tok.VocabSize(), tok.Piece, tok.IsEOG)
		g, err := grammar.CompileSchema(json.RawMessage(benchSchema))
		if err != nil {
			b.Fatal(err)
		}
		doc := tok.Encode(benchDoc(), false, false)
		rng := rand.New(rand.NewPCG(1, 2))
		rows := make([][]float32, 64)
		for i := range rows {
			rows[i] = make([]float32, tok.VocabSize())
			for j := range rows[i] {
				rows[i][j] = float32(rng.NormFloat64() * 3)
			}
		}
		logits := make([]float32, tok.VocabSize())
		cfg := Sampling{Temperature: 1, Seed: 1}
		for _, constrained := range []bool{false, true} {
			name := vf.name + "/free"
			if constrained {
				name = vf.name + "/schema"
			}
			b.Run(name, func(b *testing.B) {
				s := newSampler(cfg)
				var m *grammar.Matcher
				pos := 0
				for i := 0; b.Loop(); i++ {
					if constrained && (m == nil || pos == len(doc)) {
						m, pos = g.NewMatcher(vocab), 0
						s.con = m
					}
					copy(logits, rows[i%len(rows)])
					if _, err := s.sample(logits, nil); err != nil {
						b.Fatal(err)
					}
					if constrained {
						if err := m.Accept(doc[pos]); err != nil {
							b.Fatal(err)
						}
						pos++
					}
				}
			})
		}
	}
}
