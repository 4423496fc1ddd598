package engine_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"rbee/internal/synth"
	"rbee/worker/engine"
)

// Example loads a model and generates a few tokens greedily. The model is a
// tiny one with random weights, written for the example, so its text is
// gibberish; the output shows what does not depend on the weights or on the
// CPU's kernels: the model's shape, the tokenizer, and how the generation
// ended.
func Example() {
	dir, err := os.MkdirTemp("", "engine-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "tiny.gguf")
	if err := synth.Write(path, synth.Tiny("Q8_0")); err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	m, err := engine.Load(ctx, path, engine.Options{Threads: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	info, cfg := m.Info(), m.Config()
	fmt.Printf("%s, %s: %d layers of width %d, %d tokens\n", info.Architecture, info.Quantization,
		cfg.Layers, cfg.Embedding, m.Tokenizer().VocabSize())

	tok := m.Tokenizer()
	ids := tok.Encode("Once upon a time", true, false)
	fmt.Printf("the prompt is %d tokens, starting with BOS: %v\n", len(ids), ids[0] == tok.BOS())

	s := m.NewSession()
	var text []byte
	res, err := s.Generate(ctx, engine.Request{
		PromptTokens: ids,
		MaxTokens:    8,
		IgnoreEOS:    true, // with random weights, do not let an early end-of-sequence cut the example short
		Sampling:     engine.Sampling{Temperature: 0},
	}, func(t engine.Token) error {
		text = append(text, t.Text...)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("generated %d tokens, stop reason %q\n", res.Tokens, res.StopReason)
	fmt.Printf("the session holds %d tokens; the callbacks got all the text: %v\n", s.Len(), string(text) == res.Text)
	// Output:
	// llama, Q8_0: 2 layers of width 256, 512 tokens
	// the prompt is 13 tokens, starting with BOS: true
	// generated 8 tokens, stop reason "max_tokens"
	// the session holds 20 tokens; the callbacks got all the text: true
}

// ExampleModel_Step serves three requests at once, the way a server's
// scheduler does: each request is started on its own session, and one loop
// steps every unfinished generation together, one forward pass per step,
// until all are done. A request could join the loop at any step.
func ExampleModel_Step() {
	dir, err := os.MkdirTemp("", "engine-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "tiny.gguf")
	if err := synth.Write(path, synth.Tiny("Q8_0")); err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	m, err := engine.Load(ctx, path, engine.Options{Threads: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	var gens []*engine.Generation
	for i, prompt := range []string{"Once upon a time", "The capital of France is", "1, 2, 3,"} {
		g, err := m.NewSession().Start(engine.Request{Prompt: prompt, MaxTokens: 4 + 2*i, IgnoreEOS: true})
		if err != nil {
			log.Fatal(err)
		}
		gens = append(gens, g)
	}
	released := map[*engine.Generation]int{}
	steps := 0
	for {
		var active []*engine.Generation
		for _, g := range gens {
			if !g.Done() {
				active = append(active, g)
			}
		}
		if len(active) == 0 {
			break
		}
		// Up to 8 prompt tokens per step in all, beside the generating ones.
		if err := m.Step(ctx, active, 8, func(g *engine.Generation, t engine.Token) {
			if t.ID >= 0 {
				released[g]++
			}
		}); err != nil {
			log.Fatal(err)
		}
		steps++
	}
	for _, g := range gens {
		res := g.Result()
		fmt.Printf("%d prompt tokens, %d generated (%d released), %s\n", res.PromptTokens, res.Tokens, released[g], res.StopReason)
	}
	fmt.Println("steps:", steps)
	// Output:
	// 13 prompt tokens, 4 generated (4 released), max_tokens
	// 16 prompt tokens, 6 generated (6 released), max_tokens
	// 7 prompt tokens, 8 generated (8 released), max_tokens
	// steps: 12
}
