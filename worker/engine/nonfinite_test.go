package engine

import (
	"encoding/binary"
	"errors"
	"math"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/gguf"
	"rbee/internal/synth"
)

var (
	nan    = float32(math.NaN())
	posInf = float32(math.Inf(1))
	negInf = float32(math.Inf(-1))
)

// writeDamagedModel writes the synthetic model spec with every value of one
// tensor replaced by v (NaN or ±Inf), copying the rest through the project's
// GGUF writer, and returns its path: a model whose weights went bad on disk.
func writeDamagedModel(t testing.TB, spec synth.Spec, tensor string, v float32) string {
	t.Helper()
	f, err := gguf.Open(writeModel(t, spec))
	require.NoError(t, err)
	defer f.Close()
	var w gguf.Writer
	for _, kv := range f.KV {
		require.NoError(t, w.Set(kv.Key, kv.Value))
	}
	found := false
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		if ti.Name != tensor {
			require.NoError(t, w.AddTensor(ti.Name, ti.Type, ti.Shape, f.TensorData(ti)))
			continue
		}
		found = true
		vals := make([]float32, ti.Elements())
		for j := range vals {
			vals[j] = v
		}
		require.NoError(t, w.AddTensorF32(ti.Name, ti.Type, ti.Shape, vals))
	}
	require.True(t, found, "no tensor %s in the model", tensor)
	path := filepath.Join(t.TempDir(), "damaged.gguf")
	require.NoError(t, w.WriteFile(path)) // before f.Close: the data is f's mapping
	return path
}

// TestNonFiniteLogitsFailGeneration: a model whose weights hold NaN or
// Inf fails Generate with ErrNonFinite, greedy or sampled, before any token
// reaches the callback; it neither panics nor reports a normal stop.
func TestNonFiniteLogitsFailGeneration(t *testing.T) {
	models := []struct {
		name   string
		spec   synth.Spec
		tensor string
		value  float32
	}{
		{"NaN feed-forward weights, F32", synth.Tiny("F32"), "blk.0.ffn_down.weight", nan},
		{"NaN attention weights, Q8_0", synth.Tiny("Q8_0"), "blk.1.attn_q.weight", nan},
		{"+Inf output norm, F32", synth.Tiny("F32"), "output_norm.weight", posInf},
		{"-Inf output head, F16", synth.Tiny("F16"), "output.weight", negInf},
	}
	samplings := []struct {
		name string
		s    Sampling
	}{
		{"greedy", Sampling{}},
		{"default sampling", func() Sampling { s := DefaultSampling(); s.Seed = 7; return s }()},
		{"temperature without filters", Sampling{Temperature: 1, Seed: 7}},
		{"repetition penalty", Sampling{Temperature: 0.5, RepeatPenalty: 1.3, TopK: 5, Seed: 7}},
	}
	for _, mc := range models {
		t.Run(mc.name, func(t *testing.T) {
			m, err := Load(t.Context(), writeDamagedModel(t, mc.spec, mc.tensor, mc.value), Options{Threads: 2})
			require.NoError(t, err)
			defer m.Close()
			for _, sc := range samplings {
				t.Run(sc.name, func(t *testing.T) {
					yields := 0
					res, err := m.NewSession().Generate(t.Context(),
						Request{Prompt: "Once upon a time", MaxTokens: 8, Sampling: sc.s},
						func(Token) error { yields++; return nil })
					require.ErrorIs(t, err, ErrNonFinite)
					assert.Contains(t, err.Error(), "choosing token 1")
					assert.Zero(t, yields, "no token may reach the callback")
					assert.Zero(t, res.Tokens)
					assert.Empty(t, res.StopReason, "a failed generation has no stop reason")
					assert.Equal(t, len(m.tok.Encode("Once upon a time", true, true)), res.PromptTokens, "the prompt was evaluated")
				})
			}
		})
	}
}

func TestSampleRejectsNonFiniteLogits(t *testing.T) {
	tests := []struct {
		name   string
		logits []float32
		cfg    Sampling
		want   string
	}{
		{"all NaN, default sampling", []float32{nan, nan, nan}, DefaultSampling(), "3 of 3 logits, the first for token 0 (NaN)"},
		{"one NaN, greedy", []float32{1, 2, nan, 0}, Sampling{}, "1 of 4 logits, the first for token 2 (NaN)"},
		{"+Inf, top-k", []float32{0, posInf, 1}, Sampling{Temperature: 1, TopK: 1}, "1 of 3 logits, the first for token 1 (+Inf)"},
		{"-Inf, top-p", []float32{negInf, 0, 1, negInf}, Sampling{Temperature: 1, TopP: 0.5}, "2 of 4 logits, the first for token 0 (-Inf)"},
		{"mixed, min-p and penalty", []float32{3, negInf, posInf, nan}, Sampling{Temperature: 0.7, MinP: 0.1, RepeatPenalty: 1.1}, "3 of 4 logits, the first for token 1 (-Inf)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := newSampler(tc.cfg).sample(tc.logits, []int{0, 1, 2})
			require.ErrorIs(t, err, ErrNonFinite)
			assert.Equal(t, -1, id)
			assert.Equal(t, ErrNonFinite.Error()+": "+tc.want, err.Error())
		})
	}
	_, err := newSampler(DefaultSampling()).sample(nil, nil)
	assert.ErrorIs(t, err, ErrInvalidRequest, "no logits at all")
}

// TestSampleExtremeParameters: with finite logits, parameters that a request
// could not carry (Validate refuses them) still give a valid token.
func TestSampleExtremeParameters(t *testing.T) {
	logits := []float32{3, -math.MaxFloat32, math.MaxFloat32, 0, -2}
	cfgs := map[string]Sampling{
		"NaN temperature":           {Temperature: nan},
		"infinite temperature":      {Temperature: posInf, Seed: 1},
		"tiny temperature":          {Temperature: math.SmallestNonzeroFloat32, Seed: 1},
		"NaN min-p":                 {Temperature: 1, MinP: nan},
		"min-p above 1":             {Temperature: 1, MinP: 5},
		"NaN top-p":                 {Temperature: 1, TopP: nan},
		"negative top-k":            {Temperature: 1, TopK: -3},
		"penalty overflows":         {Temperature: 1, RepeatPenalty: 1e-30},
		"infinite penalty":          {Temperature: 1, RepeatPenalty: posInf},
		"NaN penalty":               {Temperature: 1, RepeatPenalty: nan},
		"negative last-n":           {Temperature: 1, RepeatPenalty: 2, RepeatLastN: -5},
		"everything on at once":     {Temperature: 2, TopK: 2, TopP: 0.01, MinP: 1, RepeatPenalty: 1e30, Seed: 3},
		"greedy, penalty overflows": {RepeatPenalty: 1e-30},
	}
	for name, cfg := range cfgs {
		t.Run(name, func(t *testing.T) {
			l := append([]float32(nil), logits...)
			id, err := newSampler(cfg).sample(l, []int{0, 1, 2, 3, -1, 99})
			require.NoError(t, err)
			assert.GreaterOrEqual(t, id, 0)
			assert.Less(t, id, len(logits))
			assert.NoError(t, checkFinite(l), "the penalty keeps logits finite")
		})
	}
}

// FuzzSample feeds the sampler arbitrary logits (any float32 bit pattern,
// NaN and infinities included), parameters and history. It must never panic;
// it must refuse non-finite logits with ErrNonFinite and otherwise return a
// valid token that respects greedy and top-k, the same for the same seed.
// The seed corpus runs with every go test.
func FuzzSample(f *testing.F) {
	enc := func(v ...float32) []byte {
		b := make([]byte, 0, 4*len(v))
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
		return b
	}
	hist := func(ids ...int16) []byte {
		b := make([]byte, 0, 2*len(ids))
		for _, id := range ids {
			b = binary.LittleEndian.AppendUint16(b, uint16(id))
		}
		return b
	}
	d := DefaultSampling()
	// logits, temperature, top-k, top-p, min-p, repeat penalty, last n, seed, history
	f.Add(enc(nan, nan, nan, nan), d.Temperature, d.TopK, d.TopP, d.MinP, d.RepeatPenalty, d.RepeatLastN, uint64(1), hist())
	f.Add(enc(nan, nan, nan, nan), float32(0), 0, float32(0), float32(0), float32(0), 0, uint64(0), hist())
	f.Add(enc(1, posInf, 2), float32(0.8), 2, float32(0.9), float32(0.05), float32(1.1), 64, uint64(2), hist(0, 1))
	f.Add(enc(negInf, negInf), float32(1), 0, float32(0), float32(0), float32(1), 0, uint64(3), hist())
	f.Add(enc(3, 2, 1, 0, -1), float32(1), 0, float32(0.5), float32(0.2), float32(1.5), 3, uint64(4), hist(0, 0, 4, -7, 300))
	f.Add(enc(math.MaxFloat32, -math.MaxFloat32, 0), float32(0.01), 1, float32(1), float32(1), float32(1e-30), 0, uint64(5), hist(0, 1))
	f.Add(enc(5, 5, 5), nan, -1, nan, nan, nan, -1, uint64(6), hist(1))
	f.Add(enc(0.5, -0.5), posInf, 0, float32(0), float32(3), posInf, 1, uint64(7), hist(0, 1))
	f.Add(enc(), float32(0.8), 40, float32(0.95), float32(0.05), float32(1), 64, uint64(8), hist())
	f.Fuzz(func(t *testing.T, raw []byte, temp float32, topK int, topP, minP, penalty float32, lastN int, seed uint64, h []byte) {
		n := min(len(raw)/4, 4096)
		logits := make([]float32, n)
		nonFinite := false
		for i := range logits {
			logits[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			nonFinite = nonFinite || math.IsNaN(float64(logits[i])) || math.IsInf(float64(logits[i]), 0)
		}
		history := make([]int, len(h)/2)
		for i := range history {
			history[i] = int(int16(binary.LittleEndian.Uint16(h[2*i:])))
		}
		cfg := Sampling{Temperature: temp, TopK: topK, TopP: topP, MinP: minP, RepeatPenalty: penalty, RepeatLastN: lastN, Seed: seed}
		orig := append([]float32(nil), logits...)

		id, err := newSampler(cfg).sample(logits, history)
		switch {
		case n == 0:
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("no logits: got %d, %v; want ErrInvalidRequest", id, err)
			}
			return
		case nonFinite:
			if !errors.Is(err, ErrNonFinite) || id != -1 {
				t.Fatalf("non-finite logits: got %d, %v; want -1, ErrNonFinite", id, err)
			}
			return
		case err != nil:
			t.Fatalf("finite logits: %v", err)
		case id < 0 || id >= n:
			t.Fatalf("token %d outside 0…%d", id, n-1)
		}
		// After the call logits holds the penalized values the choice was made on.
		if checkFinite(logits) != nil {
			t.Fatalf("the penalty made a logit non-finite: %v", logits)
		}
		better := 0
		for j, l := range logits {
			if l > logits[id] || (l == logits[id] && j < id && !(temp > 0)) {
				better++
			}
		}
		if !(temp > 0) && better != 0 {
			t.Fatalf("greedy chose %d (%v), not the first highest logit", id, logits[id])
		}
		if temp > 0 && topK > 0 && better >= topK {
			t.Fatalf("top-%d chose %d, which %d tokens beat", topK, id, better)
		}
		again, err := newSampler(cfg).sample(append([]float32(nil), orig...), history)
		if err != nil || again != id {
			t.Fatalf("the same seed chose %d, then %d (%v)", id, again, err)
		}
	})
}
