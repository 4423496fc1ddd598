package engine

import (
	"context"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/ggml"
	"rbee/internal/gguf"
	"rbee/internal/synth"
)

// writeModel writes a synthetic model for a test and returns its path.
func writeModel(t testing.TB, spec synth.Spec) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), spec.Name+".gguf")
	require.NoError(t, synth.Write(path, spec))
	return path
}

func loadModel(t testing.TB, spec synth.Spec, opts Options) *Model {
	t.Helper()
	m, err := Load(context.Background(), writeModel(t, spec), opts)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close() })
	return m
}

// TestMatchesReference runs every supported encoding through the engine and
// through the float64 reference on the same file, feeding the same tokens,
// and compares all logits. Quantized activations (Q8_0, Q8_K, F16) explain
// small differences; a wrong layout, rope or attention would not be small.
func TestMatchesReference(t *testing.T) {
	cases := []struct {
		quant string
		tol   float64 // relative to the logits' RMS
	}{
		{"F32", 2e-3}, {"F16", 0.01}, {"BF16", 0.01}, {"Q8_0", 0.03}, {"Q4_0", 0.06},
		{"Q4_K_M", 0.05}, {"Q5_K_M", 0.04}, {"Q6_K", 0.04},
	}
	tokens := []int{1, 300, 301, 302, 450, 7, 99, 260, 311, 400}
	for _, c := range cases {
		t.Run(c.quant, func(t *testing.T) {
			spec := synth.Tiny(c.quant)
			spec.TiedOutput = c.quant == "Q8_0" // one case exercises the tied output head
			path := writeModel(t, spec)
			m, err := Load(t.Context(), path, Options{Threads: 2})
			require.NoError(t, err)
			defer m.Close()
			ref := newReference(t, path)
			s := m.NewSession()
			// Half the tokens as a batch, the rest one by one.
			logits, err := s.Eval(t.Context(), tokens[:5])
			require.NoError(t, err)
			var want []float64
			for _, tok := range tokens[:5] {
				want = ref.next(t, tok)
			}
			compareLogits(t, want, logits, c.tol, "after the batch")
			for _, tok := range tokens[5:] {
				logits, err = s.Eval(t.Context(), []int{tok})
				require.NoError(t, err)
				compareLogits(t, ref.next(t, tok), logits, c.tol, "token by token")
			}
		})
	}
}

func compareLogits(t *testing.T, want []float64, got []float32, relTol float64, what string) {
	t.Helper()
	require.Len(t, got, len(want))
	var rms, worst float64
	for _, w := range want {
		rms += w * w
	}
	rms = math.Sqrt(rms / float64(len(want)))
	require.Greater(t, rms, 0.1, "reference logits are degenerate")
	for i := range want {
		require.False(t, math.IsNaN(float64(got[i])) || math.IsInf(float64(got[i]), 0), "logit %d is %v", i, got[i])
		worst = max(worst, math.Abs(float64(got[i])-want[i]))
	}
	assert.LessOrEqual(t, worst/rms, relTol, "%s: largest difference %.5f with logits RMS %.3f", what, worst, rms)
}

// A prompt evaluated in one batch and token by token gives the same logits.
func TestBatchEqualsSequential(t *testing.T) {
	m := loadModel(t, synth.Tiny("Q4_K_M"), Options{Threads: 2, BatchSize: 4})
	prompt := []int{1, 320, 330, 340, 350, 360, 370, 380, 390, 400, 410}
	batched, err := m.NewSession().Eval(t.Context(), prompt) // three batches of ≤ 4
	require.NoError(t, err)
	batched = append([]float32(nil), batched...)
	s := m.NewSession()
	var seq []float32
	for _, tok := range prompt {
		seq, err = s.Eval(t.Context(), []int{tok})
		require.NoError(t, err)
	}
	require.Len(t, seq, len(batched))
	for i := range seq {
		require.InDelta(t, batched[i], seq[i], 1e-4, "logit %d", i)
	}
}

func collect(t *testing.T, s *Session, req Request) ([]int, Result) {
	t.Helper()
	var ids []int
	res, err := s.Generate(t.Context(), req, func(tok Token) error {
		if tok.ID >= 0 {
			ids = append(ids, tok.ID)
		}
		return nil
	})
	require.NoError(t, err)
	return ids, res
}

func TestSeedDeterminism(t *testing.T) {
	m := loadModel(t, synth.Tiny("Q8_0"), Options{Threads: 2})
	req := Request{Prompt: "Once upon a time", MaxTokens: 24, IgnoreEOS: true, Sampling: DefaultSampling()}
	req.Temperature = 1.5
	req.Seed = 42
	a, _ := collect(t, m.NewSession(), req)
	b, _ := collect(t, m.NewSession(), req)
	assert.Equal(t, a, b, "same seed, same tokens")
	req.Seed = 43
	c, _ := collect(t, m.NewSession(), req)
	assert.NotEqual(t, a, c, "another seed, other tokens")
	assert.Len(t, a, 24)
}

func TestGreedyIsArgmax(t *testing.T) {
	m := loadModel(t, synth.Tiny("Q8_0"), Options{})
	s := m.NewSession()
	ids, res := collect(t, s, Request{Prompt: "hello world", MaxTokens: 8, IgnoreEOS: true})
	assert.Equal(t, StopMaxTokens, res.StopReason)
	assert.Equal(t, 8, res.Tokens)
	prompt := m.Tokenizer().Encode("hello world", true, true)
	check := m.NewSession()
	logits, err := check.Eval(t.Context(), prompt)
	require.NoError(t, err)
	for i, id := range ids {
		require.Equal(t, argmax(logits), id, "token %d", i)
		logits, err = check.Eval(t.Context(), []int{id})
		require.NoError(t, err)
	}
}

// A second request sharing a prefix reuses the cache and gives what a fresh
// session gives.
func TestPrefixReuse(t *testing.T) {
	m := loadModel(t, synth.Tiny("Q4_K_M"), Options{})
	s := m.NewSession()
	req := Request{Prompt: "the quick brown fox jumps over the lazy dog", MaxTokens: 6, IgnoreEOS: true}
	collect(t, s, req)
	req.Prompt = "the quick brown fox jumps over the lazy cat"
	got, res := collect(t, s, req)
	assert.Greater(t, res.CachedTokens, 5)
	want, fresh := collect(t, m.NewSession(), req)
	assert.Zero(t, fresh.CachedTokens)
	assert.Equal(t, want, got)
}

func TestStopString(t *testing.T) {
	m := loadModel(t, synth.Tiny("Q8_0"), Options{})
	req := Request{Prompt: "once upon a time", MaxTokens: 30, IgnoreEOS: true}
	_, free := collect(t, m.NewSession(), req)
	require.GreaterOrEqual(t, len(free.Text), 6, "need some generated text")
	// Stop at a piece of text the model is known to produce.
	stop := free.Text[len(free.Text)/2 : len(free.Text)/2+3]
	req.Stop = []string{stop}
	var streamed strings.Builder
	res, err := m.NewSession().Generate(t.Context(), req, func(tok Token) error {
		streamed.WriteString(tok.Text)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, StopString, res.StopReason)
	assert.Equal(t, free.Text[:strings.Index(free.Text, stop)], res.Text)
	assert.Equal(t, res.Text, streamed.String())
	assert.NotContains(t, res.Text, stop)
}

func TestStopMatcherHoldsPossiblePrefixes(t *testing.T) {
	m := stopMatcher{stops: []string{"END", "xyz"}}
	out, hit := m.feed("abcE")
	assert.Equal(t, "abc", out)
	assert.False(t, hit)
	out, hit = m.feed("N")
	assert.Equal(t, "", out)
	assert.False(t, hit)
	out, hit = m.feed("X")
	assert.Equal(t, "ENX", out)
	assert.False(t, hit)
	out, hit = m.feed("12EN")
	assert.Equal(t, "12", out)
	assert.False(t, hit)
	out, hit = m.feed("D tail")
	assert.Equal(t, "", out)
	assert.True(t, hit)
}

func TestCancel(t *testing.T) {
	m := loadModel(t, synth.Tiny("Q8_0"), Options{})
	ctx, cancel := context.WithCancel(t.Context())
	n := 0
	res, err := m.NewSession().Generate(ctx, Request{Prompt: "hello", MaxTokens: 100, IgnoreEOS: true}, func(Token) error {
		n++
		if n == 3 {
			cancel()
		}
		return nil
	})
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, StopCancelled, res.StopReason)
	assert.Equal(t, 3, res.Tokens)
}

func TestYieldErrorStops(t *testing.T) {
	m := loadModel(t, synth.Tiny("Q8_0"), Options{})
	boom := errors.New("client went away")
	res, err := m.NewSession().Generate(t.Context(), Request{Prompt: "hello", MaxTokens: 100, IgnoreEOS: true}, func(Token) error { return boom })
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, 1, res.Tokens)
}

func TestRequestValidation(t *testing.T) {
	ok := Request{Prompt: "x", MaxTokens: 1}
	cases := map[string]func(r *Request){
		"max tokens":       func(r *Request) { r.MaxTokens = 0 },
		"temperature high": func(r *Request) { r.Temperature = 2.5 },
		"temperature nan":  func(r *Request) { r.Temperature = float32(math.NaN()) },
		"top p":            func(r *Request) { r.TopP = 1.5 },
		"min p":            func(r *Request) { r.MinP = -0.1 },
		"top k":            func(r *Request) { r.TopK = -1 },
		"penalty":          func(r *Request) { r.RepeatPenalty = -1 },
		"stops":            func(r *Request) { r.Stop = []string{"a", "b", "c", "d", "e"} },
		"empty stop":       func(r *Request) { r.Stop = []string{""} },
		"long stop":        func(r *Request) { r.Stop = []string{strings.Repeat("a", 101)} },
		"empty prompt":     func(r *Request) { r.Prompt = "" },
	}
	require.NoError(t, ok.Validate())
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			r := ok
			mutate(&r)
			assert.ErrorIs(t, r.Validate(), ErrInvalidRequest)
		})
	}
}

func TestContextFull(t *testing.T) {
	m := loadModel(t, synth.Tiny("Q8_0"), Options{ContextSize: 16})
	_, err := m.NewSession().Generate(t.Context(), Request{Prompt: strings.Repeat("hello world ", 20), MaxTokens: 4}, func(Token) error { return nil })
	assert.ErrorIs(t, err, ErrContextFull)
	// A generation that reaches the end of the context stops there.
	ids, res := collect(t, m.NewSession(), Request{Prompt: "hello", MaxTokens: 100, IgnoreEOS: true})
	assert.Equal(t, StopMaxTokens, res.StopReason)
	assert.Equal(t, 16-res.PromptTokens+1, len(ids))
	_, err = m.NewSession().Eval(t.Context(), []int{1, 99999})
	assert.ErrorIs(t, err, ErrInvalidRequest)
}

func TestLoadProgressAndInfo(t *testing.T) {
	spec := synth.Tiny("Q4_K_M")
	var calls []LoadProgress
	m, err := Load(t.Context(), writeModel(t, spec), Options{Progress: func(p LoadProgress) { calls = append(calls, p) }})
	require.NoError(t, err)
	defer m.Close()
	require.Len(t, calls, spec.Layers+1)
	for i, p := range calls {
		assert.Equal(t, i+1, p.LayersLoaded)
		assert.Equal(t, spec.Layers+1, p.LayersTotal)
		if i > 0 {
			assert.Greater(t, p.BytesLoaded, calls[i-1].BytesLoaded)
		}
	}
	assert.Equal(t, calls[len(calls)-1].BytesTotal, calls[len(calls)-1].BytesLoaded)
	info := m.Info()
	assert.Equal(t, "llama", info.Architecture)
	assert.Equal(t, "Q4_K_M", info.Quantization)
	assert.Equal(t, spec.Name, info.Name)
	assert.EqualValues(t, 15, info.FileType, "llama.cpp's number for Q4_K_M")
	assert.Equal(t, 3+9*spec.Layers, info.Tensors)
	E, F, V, kv := spec.Embedding, spec.FeedForward, spec.Vocab, spec.HeadsKV*spec.Embedding/spec.Heads
	perLayer := 2*E + 2*E*E + 2*kv*E + 3*F*E // norms, q and output, k and v, feed-forward
	assert.EqualValues(t, 2*V*E+E+spec.Layers*perLayer, info.Parameters, "embedding, output head and norm, blocks")
	assert.EqualValues(t, V*E+E+E+spec.Layers*perLayer, info.DecodeParameters, "one row of the embedding table, the rest whole")
	tied := spec
	tied.TiedOutput = true
	mt, err := Load(t.Context(), writeModel(t, tied), Options{})
	require.NoError(t, err)
	defer mt.Close()
	assert.EqualValues(t, V*E+E+spec.Layers*perLayer, mt.Info().Parameters)
	assert.Equal(t, mt.Info().Parameters, mt.Info().DecodeParameters, "a tied table is the output head, read whole")
	assert.Equal(t, m.FileSize(), info.FileSize)
	assert.Equal(t, 512, m.Config().VocabSize)
	assert.Equal(t, 512, m.Tokenizer().VocabSize())
	assert.Equal(t, 2, m.Tokenizer().EOS())
	assert.Equal(t, spec.Layers, m.Config().Layers)
}

func TestLoadCancelled(t *testing.T) {
	path := writeModel(t, synth.Tiny("Q8_0"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Load(ctx, path, Options{})
	assert.ErrorIs(t, err, context.Canceled)
}

// The weights stay in the file's memory map: loading does not copy them.
func TestWeightsAreNotCopied(t *testing.T) {
	spec := synth.Tiny("F32") // the largest encoding: 4 bytes a weight
	spec.Vocab = 8000
	path := writeModel(t, spec)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := Load(t.Context(), path, Options{ContextSize: 64})
	require.NoError(t, err)
	defer m.Close()
	runtime.ReadMemStats(&after)
	size := m.FileSize()
	grown := int64(after.TotalAlloc - before.TotalAlloc)
	assert.Less(t, grown, size/4, "loading a %d-byte model allocated %d bytes", size, grown)
}

func TestUnsupportedModels(t *testing.T) {
	base := func() *gguf.Writer {
		var w gguf.Writer
		require.NoError(t, w.Set("general.architecture", "llama"))
		return &w
	}
	write := func(t *testing.T, w *gguf.Writer) string {
		p := filepath.Join(t.TempDir(), "m.gguf")
		require.NoError(t, w.WriteFile(p))
		return p
	}
	t.Run("architecture", func(t *testing.T) {
		var w gguf.Writer
		require.NoError(t, w.Set("general.architecture", "falcon"))
		_, err := Load(t.Context(), write(t, &w), Options{})
		assert.ErrorIs(t, err, ErrUnsupported)
		assert.ErrorContains(t, err, `"falcon"`)
	})
	t.Run("missing metadata", func(t *testing.T) {
		_, err := Load(t.Context(), write(t, base()), Options{})
		assert.ErrorIs(t, err, ErrInvalidModel)
		assert.ErrorContains(t, err, "embedding_length")
	})
	t.Run("tensor type", func(t *testing.T) {
		path := writeModel(t, synth.Tiny("Q4_K_M"))
		f, err := gguf.Open(path)
		require.NoError(t, err)
		defer f.Close()
		// Rewrite the file with one matrix declared as Q2_K.
		var w gguf.Writer
		for _, kv := range f.KV {
			require.NoError(t, w.Set(kv.Key, kv.Value.Any()))
		}
		for i := range f.Tensors {
			ti := &f.Tensors[i]
			typ, data := ti.Type, f.TensorData(ti)
			if ti.Name == "blk.1.ffn_up.weight" {
				typ = ggml.Q2_K
				data = make([]byte, ggml.Q2_K.RowSize(int(ti.Shape[0]))*int(ti.Rows()))
			}
			require.NoError(t, w.AddTensor(ti.Name, typ, ti.Shape, data))
		}
		_, err = Load(t.Context(), write(t, &w), Options{})
		assert.ErrorIs(t, err, ErrUnsupported)
		assert.ErrorContains(t, err, "blk.1.ffn_up.weight has type Q2_K")
	})
	t.Run("not gguf", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "x.gguf")
		require.NoError(t, writeFile(p, []byte("PK\x03\x04 this is a zip file")))
		_, err := Load(t.Context(), p, Options{})
		assert.ErrorIs(t, err, ErrNotGGUF)
		assert.ErrorIs(t, err, gguf.ErrNotGGUF)
		assert.ErrorContains(t, err, p, "the reader's message, with the path")
	})
	t.Run("truncated", func(t *testing.T) {
		b, err := os.ReadFile(writeModel(t, synth.Tiny("Q8_0")))
		require.NoError(t, err)
		p := filepath.Join(t.TempDir(), "short.gguf")
		require.NoError(t, writeFile(p, b[:len(b)/2]))
		_, err = Load(t.Context(), p, Options{})
		assert.ErrorIs(t, err, ErrInvalidModel)
		assert.NotErrorIs(t, err, ErrNotGGUF)
		assert.ErrorIs(t, err, gguf.ErrTruncated, "the reader's own sentinel still matches")
	})
	t.Run("missing", func(t *testing.T) {
		_, err := Load(t.Context(), filepath.Join(t.TempDir(), "absent.gguf"), Options{})
		assert.ErrorIs(t, err, fs.ErrNotExist)
		assert.NotErrorIs(t, err, ErrInvalidModel)
	})
}

// S21: Q4_K_M, Q5_K_M and Q8_0 files all load and generate (and so do the
// other encodings the engine supports).
func TestS21QuantizationsLoadAndGenerate(t *testing.T) {
	for _, quant := range synth.Quants() {
		t.Run(quant, func(t *testing.T) {
			m := loadModel(t, synth.Tiny(quant), Options{Threads: 2})
			assert.Equal(t, quant, m.Info().Quantization)
			ids, res := collect(t, m.NewSession(), Request{Prompt: "once upon a time", MaxTokens: 16, IgnoreEOS: true, Sampling: DefaultSampling()})
			assert.Len(t, ids, 16)
			assert.Equal(t, StopMaxTokens, res.StopReason)
			assert.NotEmpty(t, res.Text)
		})
	}
}
