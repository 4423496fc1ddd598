package engine

import (
	"context"
	"encoding/binary"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/ggml"
	"rbee/internal/gguf"
	"rbee/internal/synth"
)

// stepped is what a test saw of one generation driven by Step.
type stepped struct {
	ids  []int
	text string
}

// runSteps steps gens until all are done (bounded), recording the tokens each
// releases; before step i it calls before(i) when set, which may add
// generations by returning them.
func runSteps(t *testing.T, m *Model, gens []*Generation, chunk int, before func(step int) []*Generation) map[*Generation]*stepped {
	t.Helper()
	seen := map[*Generation]*stepped{}
	for _, g := range gens {
		seen[g] = &stepped{}
	}
	emit := func(g *Generation, tok Token) {
		st := seen[g]
		require.NotNil(t, st, "emit for a generation not in the step")
		if tok.ID >= 0 {
			st.ids = append(st.ids, tok.ID)
		}
		st.text += tok.Text
	}
	for step := 0; ; step++ {
		require.Less(t, step, 10000, "generations did not finish")
		if before != nil {
			for _, g := range before(step) {
				gens = append(gens, g)
				seen[g] = &stepped{}
			}
		}
		if !slices.ContainsFunc(gens, func(g *Generation) bool { return !g.Done() }) {
			return seen
		}
		require.NoError(t, m.Step(t.Context(), gens, chunk, emit))
	}
}

// soloGreedy generates req alone on a fresh session and returns its tokens
// and, for each, how far the chosen logit stands above the runner-up.
func soloGreedy(t *testing.T, m *Model, req Request) (ids []int, margins []float32) {
	t.Helper()
	ids, _ = collect(t, m.NewSession(), req)
	s := m.NewSession()
	prompt := req.PromptTokens
	if prompt == nil {
		prompt = m.Tokenizer().Encode(req.Prompt, true, true)
	}
	logits, err := s.Eval(t.Context(), prompt)
	require.NoError(t, err)
	for _, id := range ids {
		require.Equal(t, argmax(logits), id)
		second := float32(math.Inf(-1))
		for j, v := range logits {
			if j != id {
				second = max(second, v)
			}
		}
		margins = append(margins, logits[id]-second)
		if logits, err = s.Eval(t.Context(), []int{id}); err != nil {
			break // the last token need not fit
		}
	}
	return ids, margins
}

// clearMargin is the gap between the two best logits above which batching
// cannot change the choice. The batched matrix product rounds the sum of its
// blocks differently from the single-row one (by a float32 ulp or so); where
// that moves an activation across a rounding boundary of its 8-bit encoding
// for the next product the difference grows, on the synthetic models with
// their random weights to a few hundredths of a logit.
const clearMargin = 0.2

// sameUnlessClose checks a generation in company (got) against the same
// request alone (want, with the solo margins): they agree token for token,
// or part where the solo choice was close. It returns how many leading tokens
// agree, which callers sum to make sure enough was compared.
func sameUnlessClose(t *testing.T, want, got []int, margins []float32, what string) int {
	t.Helper()
	d := 0
	for d < len(want) && d < len(got) && want[d] == got[d] {
		d++
	}
	if d == len(want) {
		assert.Equal(t, want, got, "%s", what)
		return d
	}
	if d < len(got) {
		assert.Less(t, margins[d], float32(clearMargin), "%s: token %d differs (%d, alone %d) although the choice alone was clear", what, d, got[d], want[d])
	}
	return d
}

var companyPrompts = []string{
	"Once upon a time",
	"the quick brown fox jumps over the lazy dog and then",
	"hello",
	"In a hole in the ground there lived a hobbit. Not a nasty, dirty, wet hole",
}

// TestStepCompanyDoesNotChangeAnswers: four greedy requests stepped together,
// their prompts read in chunks beside the others' decoding, give the tokens
// each gives alone wherever the choice is clear.
func TestStepCompanyDoesNotChangeAnswers(t *testing.T) {
	for _, quant := range []string{"Q4_K_M", "Q8_0", "F16"} {
		t.Run(quant, func(t *testing.T) {
			m := loadModel(t, synth.Tiny(quant), Options{Threads: 2})
			var reqs []Request
			var want [][]int
			var margins [][]float32
			for i, p := range companyPrompts {
				req := Request{Prompt: p, MaxTokens: 12 + 3*i, IgnoreEOS: true}
				ids, mg := soloGreedy(t, m, req)
				reqs, want, margins = append(reqs, req), append(want, ids), append(margins, mg)
			}
			var gens []*Generation
			for _, req := range reqs {
				g, err := m.NewSession().Start(req)
				require.NoError(t, err)
				gens = append(gens, g)
			}
			got := runSteps(t, m, gens, 5, nil)
			agreed, total := 0, 0
			for i, g := range gens {
				require.NoError(t, g.Err())
				res := g.Result()
				assert.Equal(t, StopMaxTokens, res.StopReason)
				assert.Equal(t, reqs[i].MaxTokens, res.Tokens)
				assert.Equal(t, got[g].text, res.Text)
				agreed += sameUnlessClose(t, want[i], got[g].ids, margins[i], companyPrompts[i])
				total += len(want[i])
				if quant == "F16" { // no batched kernel: company changes nothing at all
					assert.Equal(t, want[i], got[g].ids)
				}
			}
			assert.GreaterOrEqual(t, 2*agreed, total, "most tokens compared")
		})
	}
}

// TestStepJoinMidGeneration: a request that starts while others are
// generating joins at the next step and gets its solo answer; the others are
// not disturbed.
func TestStepJoinMidGeneration(t *testing.T) {
	m := loadModel(t, synth.Tiny("Q4_K_M"), Options{Threads: 2})
	reqs := make([]Request, len(companyPrompts))
	want := make([][]int, len(reqs))
	margins := make([][]float32, len(reqs))
	for i, p := range companyPrompts {
		reqs[i] = Request{Prompt: p, MaxTokens: 16, IgnoreEOS: true}
		want[i], margins[i] = soloGreedy(t, m, reqs[i])
	}
	var gens []*Generation
	for _, req := range reqs[:2] {
		g, err := m.NewSession().Start(req)
		require.NoError(t, err)
		gens = append(gens, g)
	}
	var late []*Generation
	got := runSteps(t, m, gens, 0, func(step int) []*Generation {
		if step != 5 && step != 9 {
			return nil
		}
		for _, g := range gens {
			assert.False(t, g.Reading(), "the first requests are generating when the others join")
			assert.False(t, g.Done())
		}
		g, err := m.NewSession().Start(reqs[2+len(late)])
		require.NoError(t, err)
		assert.True(t, g.Reading())
		late = append(late, g)
		return []*Generation{g}
	})
	require.Len(t, late, 2)
	agreed := 0
	for i, g := range append(gens, late...) {
		require.NoError(t, g.Err())
		assert.Equal(t, 16, g.Result().Tokens)
		agreed += sameUnlessClose(t, want[i], got[g].ids, margins[i], companyPrompts[i])
	}
	assert.GreaterOrEqual(t, agreed, 32, "most tokens compared")
}

// TestStepSeededSamplingInCompany: a seeded, sampled request draws the same
// tokens in company as alone, whatever the others do: each generation has
// its own random stream and sampler. The model is F16, whose products have
// no batched kernel, so its logits in company equal those alone to the bit
// and any difference would be the sampling's; with 8-bit weights batching
// can move a logit by a rounding step, and a draw that falls that close to
// the edge between two tokens can go either way.
func TestStepSeededSamplingInCompany(t *testing.T) {
	m := loadModel(t, synth.Tiny("F16"), Options{Threads: 2})
	var reqs []Request
	var want [][]int
	for i, p := range companyPrompts {
		req := Request{Prompt: p, MaxTokens: 20, IgnoreEOS: true, Sampling: DefaultSampling()}
		req.Temperature = 1.2
		req.Seed = uint64(100 + i)
		if i == 3 {
			req.Sampling = Sampling{} // a greedy neighbour
		}
		ids, _ := collect(t, m.NewSession(), req)
		reqs, want = append(reqs, req), append(want, ids)
	}
	// Twice, in different orders: the company's order does not matter either.
	for _, order := range [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}} {
		var gens []*Generation
		for _, i := range order {
			g, err := m.NewSession().Start(reqs[i])
			require.NoError(t, err)
			gens = append(gens, g)
		}
		got := runSteps(t, m, gens, 3, nil)
		for k, i := range order {
			assert.Equal(t, want[i], got[gens[k]].ids, "request %d in order %v", i, order)
		}
	}
}

// TestStepCancelOneLeavesOthers: cancelling one generation between steps ends
// it with "cancelled"; the others finish as they would have, and the
// cancelled session takes a new request.
func TestStepCancelOneLeavesOthers(t *testing.T) {
	m := loadModel(t, synth.Tiny("Q4_K_M"), Options{Threads: 2})
	reqs := make([]Request, 3)
	want := make([][]int, 3)
	margins := make([][]float32, 3)
	for i := range reqs {
		reqs[i] = Request{Prompt: companyPrompts[i], MaxTokens: 14, IgnoreEOS: true}
		want[i], margins[i] = soloGreedy(t, m, reqs[i])
	}
	var gens []*Generation
	for _, req := range reqs {
		g, err := m.NewSession().Start(req)
		require.NoError(t, err)
		gens = append(gens, g)
	}
	got := runSteps(t, m, gens, 0, func(step int) []*Generation {
		if step == 4 {
			gens[1].Cancel()
			assert.True(t, gens[1].Done())
		}
		return nil
	})
	res := gens[1].Result()
	assert.Equal(t, StopCancelled, res.StopReason)
	assert.NoError(t, gens[1].Err())
	assert.Equal(t, 4, res.Tokens, "one token per step before the cancel")
	assert.Equal(t, want[1][:4], got[gens[1]].ids)
	agreed := 0
	for _, i := range []int{0, 2} {
		require.NoError(t, gens[i].Err())
		assert.Equal(t, StopMaxTokens, gens[i].Result().StopReason)
		agreed += sameUnlessClose(t, want[i], got[gens[i]].ids, margins[i], companyPrompts[i])
	}
	assert.GreaterOrEqual(t, agreed, 14, "most tokens compared")
	// The cancelled session is free again, and a cancelled generation is not stepped.
	g, err := gens[1].Session().Start(reqs[1])
	require.NoError(t, err)
	assert.Greater(t, g.Result().CachedTokens, 0, "the prompt's keys and values are reused")
	before := gens[1].Session().Len()
	require.NoError(t, m.Step(t.Context(), []*Generation{gens[1]}, 0, nil))
	assert.Equal(t, before, gens[1].Session().Len())
	// The new generation, reading only what the cache lacks, gets the
	// answer a fresh session gets.
	again := runSteps(t, m, []*Generation{g}, 0, nil)
	require.NoError(t, g.Err())
	sameUnlessClose(t, want[1], again[g].ids, margins[1], "restarted")
}

// writeModelWithNaNToken writes the F32 synthetic model with the embedding of
// one token replaced by NaN: a prompt holding that token yields NaN logits,
// any other prompt is unaffected.
func writeModelWithNaNToken(t *testing.T, token int) string {
	t.Helper()
	f, err := gguf.Open(writeModel(t, synth.Tiny("F32")))
	require.NoError(t, err)
	defer f.Close()
	var w gguf.Writer
	for _, kv := range f.KV {
		require.NoError(t, w.Set(kv.Key, kv.Value))
	}
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		data := f.TensorData(ti)
		if ti.Name == "token_embd.weight" {
			require.Equal(t, ggml.F32, ti.Type)
			data = slices.Clone(data)
			row := int(ti.Shape[0]) * 4
			for off := token * row; off < (token+1)*row; off += 4 {
				binary.LittleEndian.PutUint32(data[off:], math.Float32bits(nan))
			}
		}
		require.NoError(t, w.AddTensor(ti.Name, ti.Type, ti.Shape, data))
	}
	path := filepath.Join(t.TempDir(), "nan-token.gguf")
	require.NoError(t, w.WriteFile(path))
	return path
}

// TestStepNonFiniteFailsOnlyThatOne: the generation whose prompt makes NaN
// logits fails with ErrNonFinite; its companions finish normally.
func TestStepNonFiniteFailsOnlyThatOne(t *testing.T) {
	const bad = 333
	m, err := Load(t.Context(), writeModelWithNaNToken(t, bad), Options{Threads: 2})
	require.NoError(t, err)
	defer m.Close()
	good := []Request{
		{PromptTokens: []int{1, 300, 301, 302}, MaxTokens: 10, IgnoreEOS: true},
		{PromptTokens: []int{1, 400, 410, 420, 430}, MaxTokens: 10, IgnoreEOS: true},
	}
	want := make([][]int, len(good))
	margins := make([][]float32, len(good))
	for i, req := range good {
		want[i], margins[i] = soloGreedy(t, m, req)
	}
	badReq := Request{PromptTokens: []int{1, 300, bad, 302}, MaxTokens: 10, IgnoreEOS: true}
	var gens []*Generation
	for _, req := range []Request{good[0], badReq, good[1]} {
		g, err := m.NewSession().Start(req)
		require.NoError(t, err)
		gens = append(gens, g)
	}
	got := runSteps(t, m, gens, 0, nil)
	require.ErrorIs(t, gens[1].Err(), ErrNonFinite)
	assert.Contains(t, gens[1].Err().Error(), "choosing token 1")
	assert.Empty(t, gens[1].Result().StopReason)
	assert.Zero(t, gens[1].Result().Tokens)
	assert.Empty(t, got[gens[1]].ids, "no token of the failed generation was released")
	agreed := 0
	for k, i := range []int{0, 2} {
		require.NoError(t, gens[i].Err())
		assert.Equal(t, StopMaxTokens, gens[i].Result().StopReason)
		agreed += sameUnlessClose(t, want[k], got[gens[i]].ids, margins[k], "good request")
	}
	assert.GreaterOrEqual(t, agreed, 10, "most tokens compared")
}

// TestStepChunkBudget: prompt tokens read per step stay within the chunk, in
// all, taken in the order of the generations, while generating ones advance
// one token each.
func TestStepChunkBudget(t *testing.T) {
	m := loadModel(t, synth.Tiny("Q8_0"), Options{Threads: 2})
	a, err := m.NewSession().Start(Request{PromptTokens: []int{1, 300, 301, 302, 303, 304, 305}, MaxTokens: 5, IgnoreEOS: true})
	require.NoError(t, err)
	b, err := m.NewSession().Start(Request{PromptTokens: []int{1, 310, 311, 312}, MaxTokens: 5, IgnoreEOS: true})
	require.NoError(t, err)
	gens := []*Generation{a, b}
	lens := func() [2]int { return [2]int{a.Session().Len(), b.Session().Len()} }
	steps := [][2]int{{5, 0}, {7, 3}, {8, 4}, {9, 5}}
	for i, want := range steps {
		passes := m.passes
		require.NoError(t, m.Step(t.Context(), gens, 5, nil))
		assert.Equal(t, want, lens(), "after step %d", i+1)
		assert.Equal(t, passes+1, m.passes, "one forward pass per step")
	}
	assert.False(t, a.Reading())
	assert.Equal(t, 3, a.Result().Tokens, "its first token came with the end of its prompt")
	assert.Equal(t, 2, b.Result().Tokens)
}

// TestStepErrors: misuse fails the generation or the call with a clear error
// rather than corrupting a session.
func TestStepErrors(t *testing.T) {
	m := loadModel(t, synth.Tiny("Q8_0"), Options{Threads: 2})
	s := m.NewSession()
	g, err := s.Start(Request{Prompt: "hello", MaxTokens: 3})
	require.NoError(t, err)
	_, err = s.Start(Request{Prompt: "again", MaxTokens: 3})
	require.ErrorIs(t, err, ErrInvalidRequest, "one unfinished generation per session")
	_, err = m.NewSession().Start(Request{PromptTokens: []int{1, 99999}, MaxTokens: 3})
	require.ErrorIs(t, err, ErrInvalidRequest)
	_, err = m.NewSession().Start(Request{Prompt: "x"})
	require.ErrorIs(t, err, ErrInvalidRequest)

	// A cancelled context stops the call and leaves the generation as it was.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, m.Step(ctx, []*Generation{g}, 0, nil), context.Canceled)
	assert.False(t, g.Done())
	assert.True(t, g.Reading())

	// A generation of another model fails alone.
	other := loadModel(t, synth.Tiny("Q8_0"), Options{Threads: 1})
	og, err := other.NewSession().Start(Request{Prompt: "hello", MaxTokens: 3})
	require.NoError(t, err)
	require.NoError(t, m.Step(t.Context(), []*Generation{og, g}, 0, nil))
	require.ErrorIs(t, og.Err(), ErrInvalidRequest)
	assert.False(t, g.Reading())
	assert.Equal(t, 1, g.Result().Tokens)

	// Listed twice, a generation advances once.
	require.NoError(t, m.Step(t.Context(), []*Generation{g, g}, 0, nil))
	assert.Equal(t, 2, g.Result().Tokens)

	// A closed model fails the pass and its generations.
	require.NoError(t, m.Close())
	require.ErrorIs(t, m.Step(t.Context(), []*Generation{g}, 0, nil), ErrClosed)
	require.ErrorIs(t, g.Err(), ErrClosed)
	assert.True(t, g.Done())
}
