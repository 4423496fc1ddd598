package engine

import (
	"math"
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }

func frequencies(t *testing.T, cfg Sampling, logits []float32, n int) []float64 {
	t.Helper()
	s := newSampler(cfg)
	counts := make([]float64, len(logits))
	for range n {
		l := append([]float32(nil), logits...)
		id, err := s.sample(l, nil)
		require.NoError(t, err)
		counts[id]++
	}
	for i := range counts {
		counts[i] /= float64(n)
	}
	return counts
}

func TestSamplerFilters(t *testing.T) {
	// Probabilities at temperature 1: about 0.64, 0.24, 0.09, 0.03, …
	logits := []float32{3, 2, 1, 0, -1, -2}
	t.Run("greedy", func(t *testing.T) {
		f := frequencies(t, Sampling{}, logits, 100)
		assert.Equal(t, 1.0, f[0])
	})
	t.Run("top-k", func(t *testing.T) {
		f := frequencies(t, Sampling{Temperature: 1, TopK: 2, Seed: 1}, logits, 4000)
		assert.Zero(t, f[2]+f[3]+f[4]+f[5])
		assert.InDelta(t, math.E/(math.E+1), f[0], 0.03) // renormalized over two
	})
	t.Run("top-p", func(t *testing.T) {
		f := frequencies(t, Sampling{Temperature: 1, TopP: 0.8, Seed: 2}, logits, 4000)
		assert.Greater(t, f[1], 0.1)
		assert.Zero(t, f[3]+f[4]+f[5], "0.64+0.24 reaches 0.8: only two kept")
		assert.Zero(t, f[2])
	})
	t.Run("min-p", func(t *testing.T) {
		f := frequencies(t, Sampling{Temperature: 1, MinP: 0.3, Seed: 3}, logits, 4000)
		assert.Zero(t, f[2]+f[3]+f[4]+f[5], "e^-2 < 0.3 of the top")
		assert.Greater(t, f[1], 0.1)
	})
	t.Run("temperature", func(t *testing.T) {
		cold := frequencies(t, Sampling{Temperature: 0.3, Seed: 4}, logits, 4000)
		hot := frequencies(t, Sampling{Temperature: 2, Seed: 4}, logits, 4000)
		assert.Greater(t, cold[0], 0.9)
		assert.Less(t, hot[0], 0.6)
		assert.Greater(t, hot[5], 0.0)
	})
	t.Run("repetition penalty", func(t *testing.T) {
		s := newSampler(Sampling{RepeatPenalty: 4})
		l := []float32{3, 2, -1}
		id, err := s.sample(l, []int{0, 0, 2})
		require.NoError(t, err)
		assert.Equal(t, 1, id)
		assert.Equal(t, float32(0.75), l[0], "positive logits are divided once per distinct token")
		assert.Equal(t, float32(-4), l[2], "negative logits are multiplied")
	})
}

func TestTopKSelection(t *testing.T) {
	rng := newSampler(Sampling{Seed: 9}).rng
	logits := make([]float32, 5000)
	for i := range logits {
		logits[i] = float32(rng.IntN(300)) / 10 // many ties
	}
	s := newSampler(Sampling{})
	for _, k := range []int{1, 2, 40, 4999} {
		got := s.topK(logits, k)
		all := make([]candidate, len(logits))
		for i, l := range logits {
			all[i] = candidate{id: i, logit: l}
		}
		slices.SortFunc(all, byLogitDesc)
		assert.Equal(t, all[:k], got, "k=%d", k)
	}
}

func BenchmarkSampleDefault(b *testing.B) {
	rng := newSampler(Sampling{Seed: 1}).rng
	logits := make([]float32, 32000)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 3)
	}
	s := newSampler(DefaultSampling())
	buf := make([]float32, len(logits))
	for b.Loop() {
		copy(buf, logits)
		if _, err := s.sample(buf, nil); err != nil {
			b.Fatal(err)
		}
	}
}
