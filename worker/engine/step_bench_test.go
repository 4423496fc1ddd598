package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkStepDecode times Step over 1, 2, 4 and 8 sessions that are all
// generating, on the TinyLlama-shaped Q4_K_M model (see benchModel): each
// step is one forward pass giving every session its next token. tok/s is
// the aggregate over the sessions; against the one-session figure it shows
// what batching gains when the weights are read once per step for all.
func BenchmarkStepDecode(b *testing.B) {
	for _, n := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			benchmarkStepDecode(b, "tinyllama-synthetic-Q4_K_M.gguf", n)
		})
	}
}

func benchmarkStepDecode(b *testing.B, file string, sessions int) {
	m := benchModel(b, file, 2)
	prompt := benchPrompt(m)
	ctx := context.Background()
	gens := make([]*Generation, sessions)
	start := func(i int, s *Session) {
		// Different 16-token prompts; greedy, and long enough to run until
		// the context is full, when the session starts over on its prompt.
		g, err := s.Start(Request{PromptTokens: prompt[i : i+16], MaxTokens: 1 << 20, IgnoreEOS: true})
		if err != nil {
			b.Fatal(err)
		}
		gens[i] = g
	}
	for i := range gens {
		start(i, m.NewSession())
	}
	// Read the prompts and take a first step of decoding before timing.
	for range 2 {
		if err := m.Step(ctx, gens, 0, nil); err != nil {
			b.Fatal(err)
		}
	}
	tokens := 0
	emit := func(_ *Generation, t Token) {
		if t.ID >= 0 {
			tokens++
		}
	}
	b.ResetTimer()
	for b.Loop() {
		for i, g := range gens {
			if g.Done() {
				if err := g.Err(); err != nil {
					b.Fatal(err)
				}
				start(i, g.Session())
			}
		}
		if err := m.Step(ctx, gens, 0, emit); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tok/s")
}

// BenchmarkNewSession reports, as B/op, what one session of the
// TinyLlama-shaped model costs with the default context and batch sizes.
func BenchmarkNewSession(b *testing.B) {
	benchModel(b, "tinyllama-synthetic-Q4_K_M.gguf", 1) // skips when the model is absent
	dir := os.Getenv("RBEE_BENCH_DIR")
	if dir == "" {
		cache, _ := os.UserCacheDir()
		dir = filepath.Join(cache, "rbee", "bench")
	}
	m, err := Load(context.Background(), filepath.Join(dir, "tinyllama-synthetic-Q4_K_M.gguf"), Options{Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	b.ReportAllocs()
	for b.Loop() {
		_ = m.NewSession()
	}
}

// BenchmarkGenerateQ4_K_M times Session.Generate decoding 32 tokens after a
// 16-token prompt that the session has cached (so each run reads one prompt
// token), on the TinyLlama-shaped Q4_K_M model: a single stream through the
// whole generation path, sampling and stop handling included.
func BenchmarkGenerateQ4_K_M(b *testing.B) {
	m := benchModel(b, "tinyllama-synthetic-Q4_K_M.gguf", 2)
	prompt := benchPrompt(m)
	s := m.NewSession()
	req := Request{PromptTokens: prompt[:16], MaxTokens: 32, IgnoreEOS: true}
	ctx := context.Background()
	yield := func(Token) error { return nil }
	if _, err := s.Generate(ctx, req, yield); err != nil {
		b.Fatal(err)
	}
	tokens := 0
	b.ResetTimer()
	for b.Loop() {
		res, err := s.Generate(ctx, req, yield)
		if err != nil {
			b.Fatal(err)
		}
		tokens += res.Tokens
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tok/s")
}

// BenchmarkStepMixed times a step in which seven sessions decode while an
// eighth reads a new prompt of 32 tokens in the same pass, as happens when a
// request joins running ones: the pass then has 39 rows and goes through
// Gemm rather than the small-batch kernels. Compare its ns/op with
// BenchmarkStepDecode/sessions=8 to see what an arrival costs the sessions
// already generating.
func BenchmarkStepMixed(b *testing.B) {
	m := benchModel(b, "tinyllama-synthetic-Q4_K_M.gguf", 2)
	prompt := benchPrompt(m)
	ctx := context.Background()
	const decoding = 7
	gens := make([]*Generation, decoding+1)
	for i := range decoding {
		g, err := m.NewSession().Start(Request{PromptTokens: prompt[i : i+16], MaxTokens: 1 << 20, IgnoreEOS: true})
		if err != nil {
			b.Fatal(err)
		}
		gens[i] = g
	}
	for range 2 {
		if err := m.Step(ctx, gens[:decoding], 0, nil); err != nil {
			b.Fatal(err)
		}
	}
	reader := m.NewSession()
	b.ResetTimer()
	for b.Loop() {
		for i, g := range gens[:decoding] {
			if g.Done() {
				b.Fatalf("session %d stopped: %v", i, g.Err())
			}
			if g.Session().Len() >= m.ContextSize()-2 {
				g.Session().Truncate(16)
			}
		}
		reader.Reset()
		g, err := reader.Start(Request{PromptTokens: prompt[32:64], MaxTokens: 1 << 20, IgnoreEOS: true})
		if err != nil {
			b.Fatal(err)
		}
		gens[decoding] = g
		if err := m.Step(ctx, gens, 0, nil); err != nil {
			b.Fatal(err)
		}
		if g.Reading() {
			b.Fatal("the prompt was not read in one step")
		}
		g.Cancel()
	}
}
