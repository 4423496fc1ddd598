package loadgen

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/gguf"
	"rbee/internal/testutil"
	"rbee/internal/tokenizer"
)

func TestPercentile(t *testing.T) {
	oneToTen := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		name   string
		sorted []float64
		p      float64
		want   float64
	}{
		{"one value", []float64{7}, 99, 7},
		{"median of an even count", []float64{1, 2, 3, 4}, 50, 2.5},
		{"median of an odd count", []float64{1, 2, 10}, 50, 2},
		{"p0 is the least", oneToTen, 0, 1},
		{"p100 is the most", oneToTen, 100, 10},
		{"p50 of 1..10", oneToTen, 50, 5.5},
		{"p90 of 1..10", oneToTen, 90, 9.1},
		{"p99 of 1..10", oneToTen, 99, 9.91},
		{"p25 between unequal gaps", []float64{0, 10, 100}, 25, 5},
		{"p75 between unequal gaps", []float64{0, 10, 100}, 75, 55},
		{"equal values", []float64{3, 3, 3}, 90, 3},
		{"p below 0 is p0", oneToTen, -5, 1},
		{"p above 100 is p100", oneToTen, 150, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.InDelta(t, tc.want, Percentile(tc.sorted, tc.p), 1e-9)
		})
	}
	assert.True(t, math.IsNaN(Percentile(nil, 50)), "no values, no percentile")
}

func TestSummarise(t *testing.T) {
	assert.Nil(t, summarise(nil))
	ms := time.Millisecond
	s := summarise([]time.Duration{40 * ms, 10 * ms, 30 * ms, 20 * ms})
	require.NotNil(t, s)
	assert.Equal(t, 4, s.N)
	assert.InDelta(t, 25, s.Mean, 1e-9)
	assert.InDelta(t, 25, s.P50, 1e-9)
	assert.InDelta(t, 37, s.P90, 1e-9)
	assert.InDelta(t, 39.7, s.P99, 1e-9)
	s = summarise([]time.Duration{1500 * time.Microsecond})
	assert.InDelta(t, 1.5, s.P99, 1e-9, "milliseconds keep their fraction")
}

func TestPrompt(t *testing.T) {
	a := Prompt(1, 0, 128)
	assert.Equal(t, a, Prompt(1, 0, 128), "the same seed and index give the same prompt")
	assert.Len(t, strings.Fields(a), 127, "one word per token, less the beginning-of-text token")
	assert.Len(t, strings.Fields(Prompt(1, 0, 1)), 1)
	seen := map[string]bool{}
	for i := range 50 {
		p := Prompt(1, i, 32)
		first := strings.Join(strings.Fields(p)[:4], " ")
		assert.False(t, seen[first], "request %d starts like an earlier one: %q", i, first)
		seen[first] = true
	}
	assert.NotEqual(t, a, Prompt(2, 0, 128), "another seed, other prompts")
	for _, w := range strings.Fields(a) {
		assert.Regexp(t, `^[a-z]+$`, w)
	}
}

func TestBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080":          "http://127.0.0.1:8080",
		"http://127.0.0.1:8080/":         "http://127.0.0.1:8080",
		"http://127.0.0.1:8080/v1":       "http://127.0.0.1:8080",
		"http://127.0.0.1:8080/v1/":      "http://127.0.0.1:8080",
		" https://example.test/api/v1 ":  "https://example.test/api",
		"http://[::1]:8000/proxy/":       "http://[::1]:8000/proxy",
		"http://host:1/v1beta":           "http://host:1/v1beta",
		"http://user@host:1/openai/v1//": "http://user@host:1/openai",
	} {
		got, err := BaseURL(in)
		if assert.NoError(t, err, in) {
			assert.Equal(t, want, got, in)
		}
	}
	for _, bad := range []string{"", "127.0.0.1:8080", "ftp://host/", "http://", "http://host/v1?x=1", "http://host/#frag", "://"} {
		_, err := BaseURL(bad)
		assert.Error(t, err, "%q", bad)
	}
}

// TestPromptLengthWithRealVocabularies: with the vocabularies of real models
// (Llama's SentencePiece one, as Phi-3 ships it, and GPT-2's BPE) a prompt
// asked for 128 tokens is within a few tokens of it, beginning-of-text
// included. (The synthetic models' small vocabulary splits words further.)
func TestPromptLengthWithRealVocabularies(t *testing.T) {
	dir := testutil.Fixtures(t)
	for _, vocab := range []string{"phi-3", "gpt-2"} {
		t.Run(vocab, func(t *testing.T) {
			f, err := gguf.Open(filepath.Join(dir, "tokenizer", "ggml-vocab-"+vocab+".gguf"))
			require.NoError(t, err)
			defer f.Close()
			tok, err := tokenizer.FromGGUF(f)
			require.NoError(t, err)
			total := 0
			for i := range 16 {
				total += len(tok.Encode(Prompt(0, i, 128), true, false))
			}
			assert.InDelta(t, 128, float64(total)/16, 4)
		})
	}
}
