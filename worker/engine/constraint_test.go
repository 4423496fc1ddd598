package engine

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/grammar"
	"rbee/internal/testutil"
)

// evenOnly allows the even token ids.
type evenOnly struct{ accepted []int }

func (e *evenOnly) Allows(id int) bool { return id%2 == 0 }
func (e *evenOnly) Mask(logits []float32) (int, error) {
	n := 0
	for i := range logits {
		if i%2 != 0 {
			logits[i] = float32(math.Inf(-1))
		} else {
			n++
		}
	}
	return n, nil
}
func (e *evenOnly) Accept(id int) error { e.accepted = append(e.accepted, id); return nil }

// A constrained draw has the distribution of a draw from the masked logits:
// the first choice is kept when allowed, redrawn from the allowed otherwise.
func TestSamplerConstraintDistribution(t *testing.T) {
	logits := []float32{1, 3, 2, 0.5, 0, -1}
	for _, cfg := range []Sampling{{Temperature: 1, Seed: 7}, {Temperature: 1, TopP: 0.9, Seed: 8}, {Temperature: 0.7, TopK: 3, Seed: 9}, {}} {
		s := newSampler(cfg)
		s.con = &evenOnly{}
		counts := make([]float64, len(logits))
		const n = 6000
		for range n {
			id, err := s.sample(append([]float32(nil), logits...), nil)
			require.NoError(t, err)
			require.Zero(t, id%2, "an odd token was drawn")
			counts[id]++
		}
		ref := newSampler(cfg)
		// The reference masks with a finite floor (the sampler refuses -Inf
		// from the model).
		masked := append([]float32(nil), logits...)
		for i := 1; i < len(masked); i += 2 {
			masked[i] = -1e30
		}
		want := make([]float64, len(logits))
		for range n {
			id, err := ref.sample(append([]float32(nil), masked...), nil)
			require.NoError(t, err)
			want[id]++
		}
		for i := range counts {
			assert.InDelta(t, want[i]/n, counts[i]/n, 0.03, "token %d with %+v", i, cfg)
		}
	}
}

func TestSamplerConstraintWithNoToken(t *testing.T) {
	s := newSampler(Sampling{})
	v := grammar.NewVocab(2, func(id int) []byte { return [][]byte{[]byte("x"), nil}[id] }, func(id int) bool { return id == 1 })
	s.con = grammar.JSON().NewMatcher(v)
	_, err := s.sample([]float32{1, 0}, nil)
	require.ErrorIs(t, err, ErrConstraint)
}

// On the fixture model (random weights, so the text is gibberish), every
// seed at temperature 1 gives a complete value valid for the schema, ending
// with the end-of-sequence token.
func TestConstrainedGenerationIsValid(t *testing.T) {
	m, err := Load(t.Context(), filepath.Join(testutil.Fixtures(t), "tiny-Q8_0.gguf"), Options{Threads: 2})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	tok := m.Tokenizer()
	vocab := grammar.NewVocab(tok.VocabSize(), tok.Piece, tok.IsEOG)
	g, err := grammar.CompileSchema(json.RawMessage(`{"type":"object","properties":{
		"ok":{"type":"boolean"},"n":{"type":"integer"},"color":{"enum":["red","green","blue"]},
		"note":{"type":"string","maxLength":12}},"required":["ok","n","color","note"],"additionalProperties":false}`))
	require.NoError(t, err)
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			req := Request{Prompt: "Answer in JSON:", MaxTokens: 300, Constraint: g.NewMatcher(vocab),
				Sampling: Sampling{Temperature: 1, Seed: seed}}
			res, err := m.NewSession().Generate(t.Context(), req, func(Token) error { return nil })
			require.NoError(t, err)
			require.Equal(t, StopEOS, res.StopReason, "text %q", res.Text)
			var v struct {
				OK    *bool   `json:"ok"`
				N     *int64  `json:"n"`
				Color string  `json:"color"`
				Note  *string `json:"note"`
			}
			require.NoError(t, json.Unmarshal([]byte(res.Text), &v), res.Text)
			assert.NotNil(t, v.OK)
			assert.NotNil(t, v.N)
			assert.Contains(t, []string{"red", "green", "blue"}, v.Color)
			require.NotNil(t, v.Note)
			assert.LessOrEqual(t, len([]rune(*v.Note)), 12)
		})
	}
}

// Without the value complete, generation stops at max_tokens with that
// reason and a prefix of a valid value.
func TestConstrainedGenerationHitsMaxTokens(t *testing.T) {
	m, err := Load(t.Context(), filepath.Join(testutil.Fixtures(t), "tiny-Q8_0.gguf"), Options{Threads: 2})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	tok := m.Tokenizer()
	vocab := grammar.NewVocab(tok.VocabSize(), tok.Piece, tok.IsEOG)
	g, err := grammar.CompileSchema(json.RawMessage(`{"type":"array","items":{"type":"string"},"minItems":50}`))
	require.NoError(t, err)
	req := Request{Prompt: "List:", MaxTokens: 5, Constraint: g.NewMatcher(vocab), Sampling: Sampling{Temperature: 1, Seed: 1}}
	res, err := m.NewSession().Generate(t.Context(), req, func(Token) error { return nil })
	require.NoError(t, err)
	assert.Equal(t, StopMaxTokens, res.StopReason)
	assert.Equal(t, 5, res.Tokens)
	check := g.NewMatcher(grammar.NewVocab(0, nil, nil))
	assert.True(t, check.AcceptBytes([]byte(res.Text)), "%q is a prefix of a valid value", res.Text)
}
