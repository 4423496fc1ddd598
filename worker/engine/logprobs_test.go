package engine

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSamplerPenalties checks OpenAI's presence and frequency penalties on
// crafted logits: a token generated c times loses c×frequency + presence,
// tokens never generated and prompt tokens keep their logits.
func TestSamplerPenalties(t *testing.T) {
	logits := []float32{5, 4.5, 4, 0}
	prompt := []int{2, 2, 2} // the prompt's repeats do not count
	cases := []struct {
		name     string
		cfg      Sampling
		accepted []int
		want     []float32
		greedy   int
	}{
		{"off", Sampling{}, []int{0, 0}, []float32{5, 4.5, 4, 0}, 0},
		{"presence", Sampling{PresencePenalty: 1}, []int{0, 0, 0}, []float32{4, 4.5, 4, 0}, 1},
		{"frequency", Sampling{FrequencyPenalty: 0.5}, []int{0, 0, 0, 1}, []float32{3.5, 4, 4, 0}, 1},
		{"both", Sampling{PresencePenalty: 0.25, FrequencyPenalty: 0.5}, []int{0, 1, 1}, []float32{4.25, 3.25, 4, 0}, 0},
		{"negative favours repeats", Sampling{PresencePenalty: -2, FrequencyPenalty: -1}, []int{3}, []float32{5, 4.5, 4, 3}, 0},
		{"negative presence lifts the repeat to the top", Sampling{PresencePenalty: -2}, []int{2}, []float32{5, 4.5, 6, 0}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSampler(c.cfg)
			for _, id := range c.accepted {
				s.accept(id)
			}
			l := append([]float32(nil), logits...)
			s.penalizeGenerated(l)
			assert.InDeltaSlice(t, c.want, l, 1e-6)
			l = append([]float32(nil), logits...)
			id, err := s.sample(l, append(append([]int(nil), prompt...), c.accepted...))
			require.NoError(t, err)
			assert.Equal(t, c.greedy, id, "greedy choice after the penalties")
		})
	}
}

// TestSamplerPenaltiesShiftFrequencies samples at temperature 1: a strong
// frequency penalty on a token already generated makes it rarer, as
// exp(logit − c·penalty) predicts.
func TestSamplerPenaltiesShiftFrequencies(t *testing.T) {
	logits := []float32{1, 1}
	s := newSampler(Sampling{Temperature: 1, FrequencyPenalty: 1, Seed: 7})
	s.accept(0) // token 0 generated once: its logit drops by 1
	n, zeros := 4000, 0
	for range n {
		id, err := s.sample(append([]float32(nil), logits...), nil)
		require.NoError(t, err)
		if id == 0 {
			zeros++
		}
	}
	want := math.Exp(0) / (math.Exp(0) + math.Exp(1)) // ≈ 0.27
	assert.InDelta(t, want, float64(zeros)/float64(n), 0.03)
}

// TestSamplerLogprobs checks the reported log-probabilities against a
// log-softmax of the raw logits, whatever the sampling filters did.
func TestSamplerLogprobs(t *testing.T) {
	logits := []float32{2, 1, 3, 0.5, 3}
	want := LogSoftmax(logits)
	var sum float64
	for _, v := range want {
		sum += math.Exp(v)
	}
	require.InDelta(t, 1, sum, 1e-12)

	s := newSampler(Sampling{Temperature: 0.5, TopK: 2, RepeatPenalty: 1.5, PresencePenalty: 2, Seed: 3})
	s.accept(2)
	l := append([]float32(nil), logits...)
	s.keepRaw(l)
	id, err := s.sample(l, []int{4})
	require.NoError(t, err)
	lp := s.logprobs(id, 3)
	require.NotNil(t, lp)
	assert.InDelta(t, want[id], lp.Logprob, 1e-9, "the raw log-softmax, not the penalized one")
	require.Len(t, lp.Top, 3)
	assert.Equal(t, []int{2, 4, 0}, []int{lp.Top[0].ID, lp.Top[1].ID, lp.Top[2].ID}, "most likely first, ties by id")
	for _, tp := range lp.Top {
		assert.InDelta(t, want[tp.ID], tp.Logprob, 1e-9)
	}
	assert.Len(t, s.logprobs(id, 100).Top, len(logits), "top is capped by the vocabulary")
	assert.Empty(t, s.logprobs(id, 0).Top)
	assert.Nil(t, s.logprobs(-1, 1))
}

func TestRequestValidatePenaltiesAndLogprobs(t *testing.T) {
	ok := Request{Prompt: "x", MaxTokens: 1}
	require.NoError(t, ok.Validate())
	for name, r := range map[string]Request{
		"presence high":   {Prompt: "x", MaxTokens: 1, Sampling: Sampling{PresencePenalty: 2.5}},
		"frequency low":   {Prompt: "x", MaxTokens: 1, Sampling: Sampling{FrequencyPenalty: -3}},
		"frequency NaN":   {Prompt: "x", MaxTokens: 1, Sampling: Sampling{FrequencyPenalty: float32(math.NaN())}},
		"top_logprobs>20": {Prompt: "x", MaxTokens: 1, Logprobs: true, TopLogprobs: 21},
		"top_logprobs<0":  {Prompt: "x", MaxTokens: 1, Logprobs: true, TopLogprobs: -1},
	} {
		assert.ErrorIs(t, r.Validate(), ErrInvalidRequest, name)
	}
}

// BenchmarkSamplerLogprobs measures what log-probabilities add to one
// sampling step on a 32k and a 128k vocabulary (top-k 40, temperature
// 0.8): the copy of the raw logits, the log-sum-exp and the top 20.
func BenchmarkSamplerLogprobs(b *testing.B) {
	for _, n := range []int{32000, 128256} {
		logits := make([]float32, n)
		for i := range logits {
			logits[i] = float32((i*7919)%1000) / 100
		}
		work := make([]float32, n)
		for _, on := range []bool{false, true} {
			name := fmt.Sprintf("vocab=%d/logprobs=%v", n, on)
			b.Run(name, func(b *testing.B) {
				s := newSampler(DefaultSampling())
				for b.Loop() {
					copy(work, logits)
					if on {
						s.keepRaw(work)
					}
					id, err := s.sample(work, nil)
					if err != nil {
						b.Fatal(err)
					}
					if on && s.logprobs(id, 20) == nil {
						b.Fatal("no logprobs")
					}
				}
			})
		}
	}
}
