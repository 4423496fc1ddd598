package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"rbee/internal/ggml"
	"rbee/internal/synth"
	"rbee/worker/engine"
)

// benchResult is what one measurement (one model, one thread count, in its
// own process) reports.
type benchResult struct {
	Model        string  `json:"model"`
	Name         string  `json:"name"`
	Quantization string  `json:"quantization"`
	FileBytes    int64   `json:"file_bytes"`
	Parameters   int64   `json:"parameters"`
	DecodeParams int64   `json:"decode_parameters"` // read per decoded token: all but the unread rows of an untied embedding table
	KVBytes      int64   `json:"kv_cache_bytes"`
	Threads      int     `json:"threads"`
	LoadSeconds  float64 `json:"load_seconds"`
	Depth        int     `json:"depth"` // tokens in the cache before the timed prompt and decode
	PromptTokens int     `json:"prompt_tokens"`
	GenTokens    int     `json:"gen_tokens"`
	PromptTPS    float64 `json:"prompt_tokens_per_second"`
	DecodeTPS    float64 `json:"decode_tokens_per_second"`
	PeakRSS      int64   `json:"peak_rss_bytes"`
	RSSBudget    int64   `json:"rss_budget_bytes"` // file + KV cache + 100 MiB
}

func runBench(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 && args[0] == "serve" {
		return runBenchServe(ctx, env, args[1:])
	}
	fs := newFlags(env, "bench")
	var models stringList
	fs.Var(&models, "model", "GGUF model to measure (repeatable); default: synthetic TinyLlama-shaped models")
	quants := fs.String("quant", "Q4_K_M,Q8_0", "encodings of the synthetic models, when no --model is given")
	threads := fs.String("threads", "1,2", "comma-separated thread counts")
	promptTokens := fs.Int("prompt-tokens", 128, "prompt length")
	depth := fs.Int("depth", 0, "tokens put in the cache (untimed) before the prompt and the decode are timed, to measure speed with a long context behind it (as llama-bench's -d)")
	genTokens := fs.Int("gen-tokens", 64, "tokens to generate")
	reps := fs.Int("reps", 3, "repetitions; the median is reported")
	dir := fs.String("dir", "", "where synthetic models are kept (default: the user cache directory)")
	asJSON := fs.Bool("json", false, "print results as JSON lines")
	measure := fs.Bool("measure", false, "internal: measure one configuration in this process and print JSON")
	if err := parseFlags(env, fs, args); err != nil {
		return err
	}
	if *promptTokens < 1 || *genTokens < 2 || *reps < 1 || *depth < 0 {
		return usagef("--prompt-tokens must be at least 1, --gen-tokens at least 2, --reps at least 1, --depth at least 0")
	}
	var threadCounts []int
	for _, s := range strings.Split(*threads, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 1024 {
			return usagef("--threads: %q is not a thread count", s)
		}
		threadCounts = append(threadCounts, n)
	}
	if *measure {
		if len(models) != 1 || len(threadCounts) != 1 {
			return usagef("--measure takes one --model and one thread count")
		}
		r, err := benchOne(ctx, models[0], threadCounts[0], *depth, *promptTokens, *genTokens, *reps)
		if err != nil {
			return err
		}
		return json.NewEncoder(env.Stdout).Encode(r)
	}

	if len(models) == 0 {
		d := *dir
		if d == "" {
			cache, err := os.UserCacheDir()
			if err != nil {
				return fmt.Errorf("no cache directory (%w); give --dir", err)
			}
			d = filepath.Join(cache, "rbee", "bench")
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		for _, q := range strings.Split(*quants, ",") {
			q = strings.ToUpper(strings.TrimSpace(q))
			if !slices.Contains(synth.Quants(), q) {
				return usagef("--quant: %q is not one of %s", q, strings.Join(synth.Quants(), ", "))
			}
			path := filepath.Join(d, "tinyllama-synthetic-"+q+".gguf")
			if _, err := os.Stat(path); err != nil {
				fmt.Fprintf(env.Stderr, "rbee: writing a TinyLlama-shaped %s model with random weights to %s (once)\n", q, path)
				if err := synth.Write(path, synth.TinyLlama(q)); err != nil {
					return err
				}
			}
			models = append(models, path)
		}
	}

	fmt.Fprintf(env.Stderr, "rbee bench: %s, %d CPUs, %s kernels, %s/%s, rbee %s\n", cpuName(), runtime.NumCPU(), ggml.SIMD(), runtime.GOOS, runtime.GOARCH, Version)
	fmt.Fprintf(env.Stderr, "prompt: %d tokens; decode: %d tokens; depth: %d tokens; median of %d\n", *promptTokens, *genTokens, *depth, *reps)
	if !*asJSON {
		fmt.Fprintf(env.Stdout, "%-32s %-8s %9s %7s %8s %12s %12s %10s %10s\n", "model", "quant", "size", "threads", "load", "prompt tok/s", "decode tok/s", "peak RSS", "budget")
	}
	for _, model := range models {
		for _, n := range threadCounts {
			if err := ctx.Err(); err != nil {
				return err
			}
			r, err := benchChild(ctx, env, model, n, *depth, *promptTokens, *genTokens, *reps)
			if err != nil {
				return err
			}
			if *asJSON {
				json.NewEncoder(env.Stdout).Encode(r)
				continue
			}
			fmt.Fprintf(env.Stdout, "%-32s %-8s %9s %7d %8s %12.1f %12.1f %10s %10s\n", r.Name, r.Quantization,
				formatBytes(r.FileBytes), r.Threads, formatDuration(time.Duration(r.LoadSeconds*float64(time.Second))),
				r.PromptTPS, r.DecodeTPS, formatBytes(r.PeakRSS), formatBytes(r.RSSBudget))
		}
	}
	return nil
}

// benchChild measures one configuration in a fresh rbee process, so that its
// peak RSS is its own.
func benchChild(ctx context.Context, env *Env, model string, threads, depth, promptTokens, genTokens, reps int) (benchResult, error) {
	var r benchResult
	if env.Executable == "" {
		return r, errors.New("cannot find the rbee executable to run measurements in")
	}
	cmd := exec.CommandContext(ctx, env.Executable, "bench", "--measure", "--model", model,
		"--threads", strconv.Itoa(threads), "--depth", strconv.Itoa(depth), "--prompt-tokens", strconv.Itoa(promptTokens),
		"--gen-tokens", strconv.Itoa(genTokens), "--reps", strconv.Itoa(reps))
	cmd.Stderr = env.Stderr
	out, err := cmd.Output()
	if err != nil {
		return r, fmt.Errorf("measuring %s with %d threads: %w", model, threads, err)
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("measuring %s: unreadable result %q: %w", model, out, err)
	}
	return r, nil
}

// benchOne loads a model, warms it up, fills the cache with depth random
// tokens (untimed, once), then reps times: times a prompt of promptTokens
// random tokens after them, drops it from the cache, and times genTokens
// single-token decode steps after the depth tokens. Like llama-bench, prompt
// and decode are each measured at the given depth, the decode not after the
// prompt.
func benchOne(ctx context.Context, path string, threads, depth, promptTokens, genTokens, reps int) (benchResult, error) {
	ctxSize := depth + max(promptTokens, genTokens) + 8
	m, err := engine.Load(ctx, path, engine.Options{Threads: threads, ContextSize: ctxSize, BatchSize: promptTokens})
	if err != nil {
		return benchResult{}, modelError(path, err)
	}
	defer m.Close()
	info := m.Info()
	r := benchResult{Model: path, Name: displayName(info, path), Quantization: info.Quantization, FileBytes: m.FileSize(),
		Parameters: info.Parameters, DecodeParams: info.DecodeParameters,
		KVBytes: m.KVCacheBytes(), Threads: threads, LoadSeconds: m.LoadDuration().Seconds(),
		Depth: depth, PromptTokens: promptTokens, GenTokens: genTokens}
	vocab := m.Config().VocabSize
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []int {
		t := make([]int, n)
		for i := range t {
			t[i] = 3 + rng.IntN(vocab-3)
		}
		return t
	}
	prompt := random(promptTokens)
	s := m.NewSession()
	if _, err := s.Eval(ctx, prompt[:min(8, len(prompt))]); err != nil { // warm-up
		return r, err
	}
	s.Reset()
	if depth > 0 {
		if _, err := s.Eval(ctx, random(depth)); err != nil {
			return r, err
		}
	}
	var pt, dt []float64
	for range reps {
		s.Truncate(depth)
		start := time.Now()
		logits, err := s.Eval(ctx, prompt)
		if err != nil {
			return r, err
		}
		pt = append(pt, float64(promptTokens)/time.Since(start).Seconds())
		next := argmaxF(logits)
		s.Truncate(depth)
		start = time.Now()
		for i := 0; i < genTokens; i++ {
			if logits, err = s.Eval(ctx, []int{next}); err != nil {
				return r, err
			}
			next = argmaxF(logits)
		}
		dt = append(dt, float64(genTokens)/time.Since(start).Seconds())
	}
	r.PromptTPS, r.DecodeTPS = median(pt), median(dt)
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		r.PeakRSS = ru.Maxrss * 1024 // kilobytes on Linux
	}
	r.RSSBudget = r.FileBytes + r.KVBytes + 100<<20
	return r, nil
}

func argmaxF(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

func median(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	return s[len(s)/2]
}

func cpuName() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
