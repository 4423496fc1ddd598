package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"

	"rbee/internal/ggml"
	"rbee/worker/engine"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runGenerate(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "generate")
	d := engine.DefaultSampling()
	model := fs.String("model", "", "path of a GGUF model file (required)")
	prompt := fs.String("prompt", "", "text to continue (required; - reads standard input)")
	maxTokens := fs.Int("max-tokens", 128, "most tokens to generate")
	temp := fs.Float64("temperature", float64(d.Temperature), "sampling temperature, 0 to 2 (0 = greedy)")
	topK := fs.Int("top-k", d.TopK, "keep only the K most likely tokens (0 = off)")
	topP := fs.Float64("top-p", float64(d.TopP), "nucleus sampling threshold, 0 to 1 (1 = off)")
	minP := fs.Float64("min-p", float64(d.MinP), "drop tokens below this fraction of the top probability (0 = off)")
	repeat := fs.Float64("repeat-penalty", float64(d.RepeatPenalty), "penalty for repeating recent tokens (1 = off)")
	seed := fs.Int64("seed", -1, "random seed; the same seed and flags give the same text (-1 = random)")
	threads := fs.Int("threads", 0, "threads for the forward pass (0 = one per CPU)")
	ctxSize := fs.Int("ctx-size", 0, "context size in tokens (0 = the model's, at most 4096)")
	var stops stringList
	fs.Var(&stops, "stop", "stop when this text is generated (repeatable, at most 4)")
	if err := parseFlags(env, fs, args); err != nil {
		return err
	}
	if *model == "" {
		return usagef("--model is required")
	}
	if *prompt == "" {
		return usagef("--prompt is required")
	}
	if *threads < 0 || *threads > 1024 {
		return usagef("--threads must be between 0 and 1024")
	}
	if *ctxSize < 0 {
		return usagef("--ctx-size must not be negative")
	}
	text := *prompt
	if text == "-" {
		b, err := readAllLimited(env.Stdin, 1<<20)
		if err != nil {
			return fmt.Errorf("reading the prompt from standard input: %w", err)
		}
		text = string(b)
	}
	s := uint64(rand.Uint64())
	if *seed >= 0 {
		s = uint64(*seed)
	}
	req := engine.Request{
		Prompt:    text,
		MaxTokens: *maxTokens,
		Stop:      stops,
		Sampling: engine.Sampling{Temperature: float32(*temp), TopK: *topK, TopP: float32(*topP), MinP: float32(*minP),
			RepeatPenalty: float32(*repeat), Seed: s},
	}
	if err := req.Validate(); err != nil {
		return usagef("%s", strings.TrimPrefix(err.Error(), engine.ErrInvalidRequest.Error()+": "))
	}

	bar := newProgress(env.Stderr, "Loading model")
	m, err := engine.Load(ctx, *model, engine.Options{Threads: *threads, ContextSize: *ctxSize, Progress: func(p engine.LoadProgress) {
		bar.update(int64(p.LayersLoaded), int64(p.LayersTotal), "layers")
	}})
	bar.done()
	if err != nil {
		return modelError(*model, err)
	}
	defer m.Close()
	info := m.Info()
	fmt.Fprintf(env.Stderr, "rbee: loaded %s (%s, %s, %s) in %s; %d threads, %s kernels\n",
		displayName(info, *model), info.Architecture, info.Quantization, formatBytes(m.FileSize()),
		formatDuration(m.LoadDuration()), m.Threads(), ggml.SIMD())

	sess := m.NewSession()
	res, err := sess.Generate(ctx, req, func(t engine.Token) error {
		if t.Text == "" {
			return nil
		}
		_, err := io.WriteString(env.Stdout, t.Text)
		return err
	})
	if res.Tokens > 0 || res.StopReason != "" {
		fmt.Fprintln(env.Stdout)
	}
	if err != nil {
		if errors.Is(err, engine.ErrContextFull) {
			return withHint(err, "use a shorter prompt or a larger --ctx-size")
		}
		if errors.Is(err, engine.ErrNonFinite) {
			return withHint(err, "the model's weights may be damaged: download it again or use another copy or quantization")
		}
		return err
	}
	fmt.Fprintf(env.Stderr, "rbee: prompt %d tokens at %.1f tok/s; generated %d tokens at %.1f tok/s; stop: %s\n",
		res.PromptTokens, res.PromptTokensPerSecond(), res.Tokens, res.DecodeTokensPerSecond(), res.StopReason)
	return nil
}

// modelError explains a model that cannot be loaded.
func modelError(path string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return withHint(fmt.Errorf("model file %s does not exist", path), "give the path of a .gguf file")
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("model file %s cannot be read: permission denied", path)
	case errors.Is(err, engine.ErrNotGGUF):
		return withHint(err, "rbee reads GGUF model files (as llama.cpp and ollama do); convert other formats with llama.cpp's tools")
	case errors.Is(err, engine.ErrUnsupported):
		return err
	}
	return err
}

func displayName(info engine.ModelInfo, path string) string {
	if info.Name != "" {
		return info.Name
	}
	return path
}
