// Package synth writes GGUF models with random weights (llama, qwen2, phi3 and
// gemma2 architectures): tiny
// ones that tests build in a temporary directory, and full-size ones (the
// shape of TinyLlama 1.1B) for benchmarks. Model files never live in the
// repository; they are made when needed.
package synth

import (
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"

	"rbee/internal/ggml"
	"rbee/internal/gguf"
)

// Spec describes a model to write.
type Spec struct {
	Name string
	// Arch is the architecture: "llama" (also when empty), "qwen2" (biases
	// on the query, key and value projections), "phi3" (fused attn_qkv and
	// gate+up matrices, a sliding window) or "gemma2" (post-norms, soft-caps,
	// a sliding window on even layers, a tied head).
	Arch        string
	Embedding   int
	Layers      int
	Heads       int
	HeadsKV     int
	FeedForward int
	Vocab       int // at least 300: three control tokens, 256 byte tokens, some text pieces
	Context     int
	// Quant is the encoding, as llama.cpp names file types: F32, F16, BF16,
	// Q8_0, Q4_0, Q4_K_M, Q5_K_M or Q6_K. The K-quant mixes follow llama.cpp's
	// choices (Q6_K for the output head and for attn_v and ffn_down in some layers).
	Quant string
	// Seed makes the weights; the same spec writes the same bytes.
	Seed uint64
	// TiedOutput leaves out output.weight, so the embedding doubles as the output head.
	TiedOutput bool
	RopeBase   float32 // 0 means 10000
	// OutputScale multiplies the output head's weights (1 when 0), making
	// logits larger so that greedy choices are clear, as the fixtures do.
	OutputScale float32
	// ChatTemplate, when set, is written as tokenizer.chat_template.
	ChatTemplate string
	// SpecialTokens are control tokens ("<|im_start|>", "<|im_end|>") that
	// take the last ids of the vocabulary, for the chat template to use.
	SpecialTokens []string
	// HeadDim, when set, is the size of a head (key_length and value_length)
	// instead of Embedding/Heads.
	HeadDim int
	// SlidingWindow is written as attention.sliding_window when positive
	// (0 leaves gemma2 at its default, and a phi3 file without the key its
	// readers need).
	SlidingWindow int
	// AttnSoftcap and FinalSoftcap are gemma2's soft-caps (written when positive).
	AttnSoftcap, FinalSoftcap float32
	// Metadata adds or overrides keys, and ExtraTensors adds F32 vectors,
	// for tests of what a reader refuses.
	Metadata     map[string]any
	ExtraTensors map[string][]float32
}

// Archs lists the architectures Write accepts.
func Archs() []string { return []string{"llama", "qwen2", "phi3", "gemma2"} }

// Family is the tiny model of Tiny in another architecture, with the
// features that set it apart turned up so that they matter on short prompts:
// qwen2 gets a NEOX base of 1e6; phi3 a window of 6; gemma2 a window of 5
// and soft-caps of 4 (attention) and 30 (logits), and heads of 128 over a
// width of 256 (so that the heads' total is not the width).
func Family(arch, quant string) Spec {
	s := Tiny(quant)
	if arch == "llama" || arch == "" {
		return s
	}
	s.Arch = arch
	s.Name = "synthetic-tiny-" + arch + "-" + quant
	switch arch {
	case "qwen2":
		s.RopeBase = 1e6
	case "phi3":
		s.SlidingWindow = 6
	case "gemma2":
		s.SlidingWindow = 5
		s.AttnSoftcap, s.FinalSoftcap = 4, 30
		s.HeadDim = 128
		s.TiedOutput = true
	}
	return s
}

// TinyLlama is the shape of TinyLlama 1.1B: 22 blocks of width 2048, 32 heads
// sharing 4 key/value heads, feed-forward 5632, 32000 tokens.
func TinyLlama(quant string) Spec {
	return Spec{Name: "synthetic-tinyllama-" + quant, Embedding: 2048, Layers: 22, Heads: 32, HeadsKV: 4,
		FeedForward: 5632, Vocab: 32000, Context: 2048, Quant: quant, Seed: 1}
}

// TinyLlamaAs is TinyLlama's shape in another architecture ("llama" gives
// TinyLlama itself), with each family's everyday settings: qwen2 a rope base
// of 1e6, phi3 Phi-3 mini's window of 2047, gemma2 a window of 4096,
// soft-caps of 50 and 30 and a tied head. For comparing speeds per family.
func TinyLlamaAs(arch, quant string) Spec {
	s := TinyLlama(quant)
	if arch == "llama" || arch == "" {
		return s
	}
	s.Arch = arch
	s.Name = "synthetic-tinyllama-" + arch + "-" + quant
	switch arch {
	case "qwen2":
		s.RopeBase = 1e6
	case "phi3":
		s.SlidingWindow = 2047
	case "gemma2":
		s.SlidingWindow = 4096
		s.AttnSoftcap, s.FinalSoftcap = 50, 30
		s.TiedOutput = true
	}
	return s
}

// Tiny is a small model for tests: width 256, 2 blocks, 4 heads over 2
// key/value heads, 512 tokens; it loads in milliseconds.
func Tiny(quant string) Spec {
	return Spec{Name: "synthetic-tiny-" + quant, Embedding: 256, Layers: 2, Heads: 4, HeadsKV: 2,
		FeedForward: 768, Vocab: 512, Context: 512, Quant: quant, Seed: 1, OutputScale: 8}
}

// FileType is the GGUF general.file_type of the quantization name.
var fileTypes = map[string]ggml.FileType{"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18, "BF16": 32}

// Quants lists the encodings Write accepts.
func Quants() []string {
	return []string{"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"}
}

func (s Spec) validate() error {
	if _, ok := fileTypes[s.Quant]; !ok {
		return fmt.Errorf("synth: unknown quantization %q (want one of %v)", s.Quant, Quants())
	}
	if s.Embedding <= 0 || s.Layers <= 0 || s.Heads <= 0 || s.HeadsKV <= 0 || s.FeedForward <= 0 || s.Context <= 0 {
		return fmt.Errorf("synth: every size must be positive: %+v", s)
	}
	if s.Arch != "" && !slices.Contains(Archs(), s.Arch) {
		return fmt.Errorf("synth: unknown architecture %q (want one of %v)", s.Arch, Archs())
	}
	if s.Embedding%s.Heads != 0 || s.Heads%s.HeadsKV != 0 || (s.Embedding/s.Heads)%2 != 0 || s.HeadDim%2 != 0 {
		return fmt.Errorf("synth: width %d, heads %d and key/value heads %d do not divide evenly", s.Embedding, s.Heads, s.HeadsKV)
	}
	if s.Vocab < 300 {
		return fmt.Errorf("synth: vocabulary %d is below 300", s.Vocab)
	}
	if len(s.SpecialTokens) > s.Vocab-300 {
		return fmt.Errorf("synth: %d special tokens do not fit a vocabulary of %d", len(s.SpecialTokens), s.Vocab)
	}
	seen := map[string]bool{}
	for _, t := range s.SpecialTokens {
		if t == "" || seen[t] {
			return fmt.Errorf("synth: special tokens must be distinct and non-empty: %q", s.SpecialTokens)
		}
		seen[t] = true
	}
	return nil
}

// tensorType picks the encoding of a tensor the way llama.cpp's quantize does
// for the file type: norms stay F32; K-quant mixes give the output head and
// some attn_v / ffn_down matrices Q6_K. A model whose head is tied to its
// token embeddings (Gemma, tied Qwen) has that table encoded as the head
// would be, as llama.cpp does, since every token reads all of it.
func (s Spec) tensorType(name string, layer int) ggml.Type {
	base := map[string]ggml.Type{"F32": ggml.F32, "F16": ggml.F16, "BF16": ggml.BF16, "Q8_0": ggml.Q8_0,
		"Q4_0": ggml.Q4_0, "Q4_K_M": ggml.Q4_K, "Q5_K_M": ggml.Q5_K, "Q6_K": ggml.Q6_K}[s.Quant]
	head := name == "output.weight" || (s.TiedOutput && name == "token_embd.weight")
	switch s.Quant {
	case "Q4_0":
		if head {
			return ggml.Q6_K
		}
	case "Q4_K_M", "Q5_K_M":
		if head {
			return ggml.Q6_K
		}
		if (name == "attn_v.weight" || name == "ffn_down.weight") && moreBits(layer, s.Layers) {
			return ggml.Q6_K
		}
	}
	return base
}

// moreBits is llama.cpp's use_more_bits: the first and last eighth of the
// layers and every third one between them.
func moreBits(i, n int) bool {
	return i < n/8 || i >= 7*n/8 || (i-n/8)%3 == 2
}

// Write writes the model described by s to path (through a temporary file).
func Write(path string, s Spec) error {
	if err := s.validate(); err != nil {
		return err
	}
	if s.RopeBase == 0 {
		s.RopeBase = 10000
	}
	if s.OutputScale == 0 {
		s.OutputScale = 1
	}
	var w gguf.Writer
	var setErr error
	set := func(k string, v any) {
		if _, over := s.Metadata[k]; over {
			return // written below
		}
		if setErr == nil {
			setErr = w.Set(k, v)
		}
	}
	headDim := s.Embedding / s.Heads
	if s.HeadDim > 0 {
		headDim = s.HeadDim
	}
	arch := s.Arch
	if arch == "" {
		arch = "llama"
	}
	set("general.architecture", arch)
	set("general.name", s.Name)
	set(arch+".context_length", uint32(s.Context))
	set(arch+".embedding_length", uint32(s.Embedding))
	set(arch+".block_count", uint32(s.Layers))
	set(arch+".feed_forward_length", uint32(s.FeedForward))
	set(arch+".rope.dimension_count", uint32(headDim))
	set(arch+".attention.head_count", uint32(s.Heads))
	set(arch+".attention.head_count_kv", uint32(s.HeadsKV))
	set(arch+".attention.layer_norm_rms_epsilon", float32(1e-5))
	set(arch+".rope.freq_base", s.RopeBase)
	set(arch+".vocab_size", uint32(s.Vocab))
	if s.HeadDim > 0 {
		set(arch+".attention.key_length", uint32(headDim))
		set(arch+".attention.value_length", uint32(headDim))
	}
	if s.SlidingWindow > 0 {
		set(arch+".attention.sliding_window", uint32(s.SlidingWindow))
	}
	if s.AttnSoftcap > 0 {
		set(arch+".attn_logit_softcapping", s.AttnSoftcap)
	}
	if s.FinalSoftcap > 0 {
		set(arch+".final_logit_softcapping", s.FinalSoftcap)
	}
	tokens, scores, types := Vocabulary(s.Vocab - len(s.SpecialTokens))
	for _, t := range s.SpecialTokens {
		if slices.Contains(tokens, t) {
			return fmt.Errorf("synth: special token %q is already in the vocabulary", t)
		}
		tokens = append(tokens, t)
		scores = append(scores, 0)
		types = append(types, 3) // control
	}
	if s.ChatTemplate != "" {
		set("tokenizer.chat_template", s.ChatTemplate)
	}
	set("tokenizer.ggml.model", "llama")
	set("tokenizer.ggml.tokens", tokens)
	set("tokenizer.ggml.scores", scores)
	set("tokenizer.ggml.token_type", types)
	set("tokenizer.ggml.bos_token_id", uint32(1))
	set("tokenizer.ggml.eos_token_id", uint32(2))
	set("tokenizer.ggml.unknown_token_id", uint32(0))
	set("tokenizer.ggml.add_bos_token", true)
	set("tokenizer.ggml.add_eos_token", false)
	set("general.quantization_version", uint32(2))
	set("general.file_type", uint32(fileTypes[s.Quant]))
	for _, k := range slices.Sorted(maps.Keys(s.Metadata)) {
		if setErr == nil {
			setErr = w.Set(k, s.Metadata[k])
		}
	}
	if setErr != nil {
		return fmt.Errorf("synth: %w", setErr)
	}

	add := func(name string, layer int, rows, cols int, std, mean float32) error {
		typ := ggml.F32
		short := name
		if layer >= 0 {
			short = name[len(fmt.Sprintf("blk.%d.", layer)):]
		}
		if rows > 1 {
			typ = s.tensorType(short, layer)
		}
		if typ.RowSize(cols) < 0 {
			return fmt.Errorf("synth: %s: %d columns do not fit %s blocks of %d", name, cols, typ, typ.BlockSize())
		}
		shape := []uint64{uint64(cols)}
		if rows > 1 {
			shape = append(shape, uint64(rows))
		}
		seed := s.Seed ^ nameHash(name)
		return w.AddTensorFunc(name, typ, shape, func(out io.Writer) error {
			return writeRandom(out, typ, rows, cols, std, mean, seed)
		})
	}
	E, F := s.Embedding, s.FeedForward
	kv := s.HeadsKV * headDim
	const std = 0.02
	var steps []tensorSpec
	if !s.TiedOutput {
		steps = append(steps, tensorSpec{"output.weight", -1, s.Vocab, E, std * s.OutputScale, 0})
	}
	steps = append(steps,
		tensorSpec{"output_norm.weight", -1, 1, E, 0.05, 1},
		tensorSpec{"token_embd.weight", -1, s.Vocab, E, std * 10, 0})
	Q := s.Heads * headDim
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		steps = append(steps, tensorSpec{p + "attn_norm.weight", l, 1, E, 0.05, 1})
		if arch == "phi3" {
			steps = append(steps, tensorSpec{p + "attn_qkv.weight", l, Q + 2*kv, E, std * 2, 0})
		} else {
			steps = append(steps,
				tensorSpec{p + "attn_q.weight", l, Q, E, std * 2, 0},
				tensorSpec{p + "attn_k.weight", l, kv, E, std * 2, 0},
				tensorSpec{p + "attn_v.weight", l, kv, E, std, 0})
		}
		if arch == "qwen2" {
			steps = append(steps,
				tensorSpec{p + "attn_q.bias", l, 1, Q, 0.5, 0},
				tensorSpec{p + "attn_k.bias", l, 1, kv, 0.5, 0},
				tensorSpec{p + "attn_v.bias", l, 1, kv, 0.1, 0})
		}
		steps = append(steps,
			tensorSpec{p + "attn_output.weight", l, E, Q, std, 0},
			tensorSpec{p + "ffn_norm.weight", l, 1, E, 0.05, 1})
		if arch == "phi3" {
			steps = append(steps, tensorSpec{p + "ffn_up.weight", l, 2 * F, E, std, 0})
		} else {
			steps = append(steps,
				tensorSpec{p + "ffn_gate.weight", l, F, E, std, 0},
				tensorSpec{p + "ffn_up.weight", l, F, E, std, 0})
		}
		steps = append(steps, tensorSpec{p + "ffn_down.weight", l, E, F, std, 0})
		if arch == "gemma2" {
			steps = append(steps,
				tensorSpec{p + "post_attention_norm.weight", l, 1, E, 0.05, 1},
				tensorSpec{p + "post_ffw_norm.weight", l, 1, E, 0.05, 1})
		}
	}
	for _, t := range steps {
		if err := add(t.name, t.layer, t.rows, t.cols, t.std, t.mean); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.ExtraTensors)) {
		v := s.ExtraTensors[name]
		data, err := ggml.Quantize(ggml.F32, v)
		if err != nil {
			return fmt.Errorf("synth: %s: %w", name, err)
		}
		if err := w.AddTensor(name, ggml.F32, []uint64{uint64(len(v))}, data); err != nil {
			return fmt.Errorf("synth: %w", err)
		}
	}
	return w.WriteFile(path)
}

// tensorSpec is one tensor to write: a matrix (rows > 1) or a norm vector,
// with the normal distribution its values are drawn from.
type tensorSpec struct {
	name       string
	layer      int // -1 outside the blocks
	rows, cols int
	std, mean  float32
}

func nameHash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// writeRandom writes rows×cols normal(mean, std) values encoded as typ. Bands
// of rows are made and quantized in parallel, each from its own seeded stream,
// so the bytes do not depend on the number of CPUs.
func writeRandom(out io.Writer, typ ggml.Type, rows, cols int, std, mean float32, seed uint64) error {
	const band = 64
	rowSize := typ.RowSize(cols)
	nb := (rows + band - 1) / band
	workers := min(runtime.NumCPU(), nb)
	// Every band has its own buffered channel, so a worker never waits to hand
	// in a result; the writer takes them in order.
	results := make([]chan []byte, nb)
	for i := range results {
		results[i] = make(chan []byte, 1)
	}
	next := make(chan int)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // feeds band numbers until done or stopped
		defer wg.Done()
		defer close(next)
		for b := 0; b < nb; b++ {
			select {
			case next <- b:
			case <-stop:
				return
			}
		}
	}()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vals := make([]float32, band*cols)
			for b := range next {
				r0 := b * band
				n := min(band, rows-r0)
				rng := rand.New(rand.NewPCG(seed, uint64(b)))
				v := vals[:n*cols]
				for i := range v {
					v[i] = mean + std*float32(rng.NormFloat64())
				}
				buf, err := ggml.Quantize(typ, v)
				if err != nil {
					buf = nil // the writer reports the band as failed
				}
				results[b] <- buf
			}
		}()
	}
	var err error
	for b := 0; b < nb && err == nil; b++ {
		buf := <-results[b]
		if len(buf) != min(band, rows-b*band)*rowSize {
			err = fmt.Errorf("synth: quantizing %d×%d values to %s failed", rows, cols, typ)
			break
		}
		_, err = out.Write(buf)
	}
	close(stop)
	wg.Wait()
	return err
}

// Vocabulary makes a SentencePiece-style vocabulary of n tokens: <unk>, <s>,
// </s>, the 256 byte tokens, then word pieces ("▁the", "ing", …) scored so that
// longer pieces win merges. It tokenizes any text (bytes fall back).
func Vocabulary(n int) (tokens []string, scores []float32, types []int32) {
	tokens = []string{"<unk>", "<s>", "</s>"}
	types = []int32{2, 3, 3}
	for b := 0; b < 256; b++ {
		tokens = append(tokens, fmt.Sprintf("<0x%02X>", b))
		types = append(types, 6)
	}
	seen := map[string]bool{}
	for _, t := range tokens {
		seen[t] = true
	}
	addPiece := func(p string) {
		if len(tokens) < n && !seen[p] {
			seen[p] = true
			tokens = append(tokens, p)
			types = append(types, 1)
		}
	}
	letters := "etaoinshrdlucmfwypvbgkjqxzETAOINSHRDLUCMFWYPVBGKJQXZ0123456789.,!?'\"-:;()"
	addPiece("▁")
	for _, r := range letters {
		addPiece(string(r))
	}
	for _, r := range letters {
		addPiece("▁" + string(r))
	}
	words := []string{"the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
		"on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they",
		"you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when",
		"will", "would", "who", "so", "no", "once", "upon", "time", "story", "write", "short", "quick", "brown",
		"fox", "jumps", "over", "lazy", "dog", "hello", "world", "ing", "ed", "er", "es", "th", "he", "an", "re"}
	for _, w := range words {
		addPiece("▁" + w)
		addPiece(w)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for len(tokens) < n {
		l := 2 + rng.IntN(6)
		b := make([]rune, 0, l+1)
		if rng.IntN(2) == 0 {
			b = append(b, '▁')
		}
		for range l {
			b = append(b, rune(letters[rng.IntN(26)]))
		}
		addPiece(string(b))
	}
	scores = make([]float32, len(tokens))
	for i := range tokens {
		if types[i] == 1 {
			scores[i] = -float32(i) / 100
		}
	}
	return tokens, scores, types
}
