package engine

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// The benchmarks below time the forward pass on the TinyLlama-shaped models
// that `rbee bench` writes, when they are present (RBEE_BENCH_DIR, default
// the user cache directory's rbee/bench, where rbee bench keeps them);
// without them they skip: run `rbee bench` once to make them. They mirror rbee bench: a prompt of
// 128 random tokens evaluated as one batch, and single-token decode steps.

const benchPromptTokens = 128

func benchModel(b *testing.B, file string, threads int) *Model {
	return benchModelCtx(b, file, threads, 2*benchPromptTokens)
}

func benchModelCtx(b *testing.B, file string, threads, ctxSize int) *Model {
	b.Helper()
	dir := os.Getenv("RBEE_BENCH_DIR")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			b.Skipf("no RBEE_BENCH_DIR and no cache directory: %v", err)
		}
		dir = filepath.Join(cache, "rbee", "bench")
	}
	path := filepath.Join(dir, file)
	if _, err := os.Stat(path); err != nil {
		b.Skipf("no benchmark model at %s", path)
	}
	m, err := Load(context.Background(), path, Options{Threads: threads, ContextSize: ctxSize, BatchSize: benchPromptTokens})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

func benchPrompt(m *Model) []int {
	rng := rand.New(rand.NewPCG(1, 2))
	prompt := make([]int, benchPromptTokens)
	for i := range prompt {
		prompt[i] = 3 + rng.IntN(m.Config().VocabSize-3)
	}
	return prompt
}

func benchmarkPrompt(b *testing.B, file string) { benchmarkPromptThreads(b, file, 2) }

func benchmarkPromptThreads(b *testing.B, file string, threads int) {
	m := benchModel(b, file, threads)
	prompt := benchPrompt(m)
	s := m.NewSession()
	ctx := context.Background()
	if _, err := s.Eval(ctx, prompt[:8]); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		s.Reset()
		if _, err := s.Eval(ctx, prompt); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(prompt))/b.Elapsed().Seconds(), "tok/s")
}

func benchmarkDecode(b *testing.B, file string) { benchmarkDecodeThreads(b, file, 2) }

func benchmarkDecodeThreads(b *testing.B, file string, threads int) {
	m := benchModel(b, file, threads)
	prompt := benchPrompt(m)
	s := m.NewSession()
	ctx := context.Background()
	if _, err := s.Eval(ctx, prompt[:16]); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if s.Len() >= m.ContextSize()-1 {
			s.Truncate(16)
		}
		if _, err := s.Eval(ctx, prompt[i%len(prompt):i%len(prompt)+1]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
}

func BenchmarkPromptQ8_0(b *testing.B)   { benchmarkPrompt(b, "tinyllama-synthetic-Q8_0.gguf") }
func BenchmarkPromptQ4_K_M(b *testing.B) { benchmarkPrompt(b, "tinyllama-synthetic-Q4_K_M.gguf") }
func BenchmarkDecodeQ8_0(b *testing.B)   { benchmarkDecode(b, "tinyllama-synthetic-Q8_0.gguf") }
func BenchmarkDecodeQ4_K_M(b *testing.B) { benchmarkDecode(b, "tinyllama-synthetic-Q4_K_M.gguf") }

func BenchmarkPrompt1Q8_0(b *testing.B) {
	benchmarkPromptThreads(b, "tinyllama-synthetic-Q8_0.gguf", 1)
}
func BenchmarkPrompt1Q4_K_M(b *testing.B) {
	benchmarkPromptThreads(b, "tinyllama-synthetic-Q4_K_M.gguf", 1)
}
func BenchmarkDecode1Q8_0(b *testing.B) {
	benchmarkDecodeThreads(b, "tinyllama-synthetic-Q8_0.gguf", 1)
}
func BenchmarkDecode1Q4_K_M(b *testing.B) {
	benchmarkDecodeThreads(b, "tinyllama-synthetic-Q4_K_M.gguf", 1)
}

// benchDepth is the cache depth of the DecodeDepth benchmarks: decode after a
// long conversation, where attention over the cache costs about as much as
// the weights.
const benchDepth = 1800

func benchmarkDecodeDepth(b *testing.B, file string) {
	m := benchModelCtx(b, file, 2, benchDepth+64)
	rng := rand.New(rand.NewPCG(3, 4))
	fill := make([]int, benchDepth)
	for i := range fill {
		fill[i] = 3 + rng.IntN(m.Config().VocabSize-3)
	}
	s := m.NewSession()
	ctx := context.Background()
	if _, err := s.Eval(ctx, fill); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if s.Len() >= m.ContextSize()-1 {
			s.Truncate(benchDepth)
		}
		if _, err := s.Eval(ctx, fill[i%len(fill):i%len(fill)+1]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
}

func BenchmarkDecodeDepthQ8_0(b *testing.B) { benchmarkDecodeDepth(b, "tinyllama-synthetic-Q8_0.gguf") }
func BenchmarkDecodeDepthQ4_K_M(b *testing.B) {
	benchmarkDecodeDepth(b, "tinyllama-synthetic-Q4_K_M.gguf")
}
