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
