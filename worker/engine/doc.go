// Package engine is rbee's inference engine: it runs llama-architecture GGUF
// models in pure Go, with no cgo, so that one static binary runs everywhere
// and a Go program gets inference with go get.
//
// # What it computes
//
// The forward pass is llama's (TinyLlama, Llama 2 and 3, Mistral-style
// grouped-query attention): token embedding, RMSNorm, rotary position
// embeddings (base and linear scaling from the metadata, Llama 3.1 frequency
// factors), attention with an F16 KV cache, SwiGLU feed-forward, and an output
// head tied to the embedding when the file has none. Weights are used in place
// from the file's memory map in any of F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q5_K and
// Q6_K (what Q4_K_M, Q5_K_M and Q8_0 files hold).
//
// It follows llama.cpp's arithmetic where it matters for agreement: activations
// are quantized once per matrix multiply to the encoding llama.cpp pairs with
// the weights (Q8_0 for Q4_0 and Q8_0, Q8_K for K-quants, F16 for F16), the KV
// cache holds F16, and queries and attention probabilities are rounded to F16
// before they meet it. The tests check the logits against llama.cpp's on the
// shared fixtures.
//
// # Use
//
//	m, err := engine.Load(ctx, "model.gguf", engine.Options{})
//	if err != nil { … }
//	defer m.Close()
//	s := m.NewSession()
//	res, err := s.Generate(ctx, engine.Request{Prompt: "Once upon a time", MaxTokens: 64,
//		Sampling: engine.DefaultSampling()}, func(t engine.Token) error {
//		fmt.Print(t.Text)
//		return nil
//	})
//
// A [Model] holds the weights and a pool of goroutines; a [Session] holds one
// conversation's KV cache and reuses the longest common prefix between
// requests. Matrix multiplies split rows over the pool; rbee's kernels use
// AVX2 (and AVX-512 VNNI) where the CPU has it and portable Go elsewhere.
//
// # Serving many requests at once
//
// A server with several conversations in flight does not run them one after
// another. [Session.Start] prepares a request on a session without running
// the model, and [Model.Step] advances any number of such generations with
// one forward pass: the next token of each one that is generating and a
// chunk of the prompt of each one still reading it, all stacked into one
// batch so that every weight matrix is read from memory once per step for
// all of them. Attention runs per conversation against its own cache. A
// session therefore costs its KV cache (and one row of logits); the working
// space of the pass belongs to the model. [Session.Generate] is Start
// followed by Steps of its one generation.
//
// Company does not change what a request gets: each generation has its own
// sampler and random stream, stop strings and cancellation. The one
// difference is rounding: a batched matrix product sums its blocks in a
// different order from a single-row one, so a logit can move by a float32
// rounding step (more where that moves an 8-bit activation to its
// neighbouring value). A greedy choice between two nearly tied tokens, or a
// random draw that falls at the edge between two tokens, can then go the
// other way, as it can in llama.cpp's server with a different batch size.
//
// The package knows nothing of HTTP: the worker daemon serves it.
package engine
