package gguf

import (
	"math"

	"rbee/internal/ggml"
)

// ModelInfo summarizes a model file's metadata. Integer fields are 0 when the
// file does not say (BOS and EOS are -1).
type ModelInfo struct {
	Architecture      string // general.architecture, e.g. "llama"
	Name              string // general.name
	ContextLength     int    // <arch>.context_length
	EmbeddingLength   int    // <arch>.embedding_length
	BlockCount        int    // <arch>.block_count
	HeadCount         int    // <arch>.attention.head_count (the largest, if given per layer)
	HeadCountKV       int    // <arch>.attention.head_count_kv; HeadCount when absent
	FeedForwardLength int    // <arch>.feed_forward_length (the largest, if given per layer)
	VocabSize         int    // <arch>.vocab_size, else the length of tokenizer.ggml.tokens
	BOS, EOS          int    // tokenizer.ggml.bos_token_id / eos_token_id; -1 when absent

	// FileType is general.file_type; when absent it is guessed from the most
	// common type of the file's matrices (for example Q4_K gives Q4_K_M).
	FileType     ggml.FileType
	Quantization string // FileType.String(), e.g. "Q4_K_M"; "" when neither stated nor guessable

	TensorCount int
	Parameters  int64 // total elements of all tensors
	FileSize    int64 // bytes
}

// ModelInfo summarizes the file's metadata. Keys that hold a model's
// hyperparameters are prefixed by its architecture ("llama.context_length").
func (f *File) ModelInfo() ModelInfo {
	arch, _ := f.GetString("general.architecture")
	name, _ := f.GetString("general.name")
	m := ModelInfo{
		Architecture:      arch,
		Name:              name,
		ContextLength:     f.intKey(arch + ".context_length"),
		EmbeddingLength:   f.intKey(arch + ".embedding_length"),
		BlockCount:        f.intKey(arch + ".block_count"),
		HeadCount:         f.intKey(arch + ".attention.head_count"),
		HeadCountKV:       f.intKey(arch + ".attention.head_count_kv"),
		FeedForwardLength: f.intKey(arch + ".feed_forward_length"),
		VocabSize:         f.intKey(arch + ".vocab_size"),
		BOS:               -1,
		EOS:               -1,
		TensorCount:       len(f.Tensors),
		FileSize:          f.Size,
	}
	if _, ok := f.Get(arch + ".attention.head_count_kv"); !ok {
		m.HeadCountKV = m.HeadCount
	}
	if m.VocabSize == 0 {
		if v, ok := f.Get("tokenizer.ggml.tokens"); ok {
			m.VocabSize = v.Len()
		}
	}
	if id, ok := f.GetUint("tokenizer.ggml.bos_token_id"); ok && id <= math.MaxInt32 {
		m.BOS = int(id)
	}
	if id, ok := f.GetUint("tokenizer.ggml.eos_token_id"); ok && id <= math.MaxInt32 {
		m.EOS = int(id)
	}
	for i := range f.Tensors {
		m.Parameters += f.Tensors[i].Elements()
	}
	if ft, ok := f.GetUint("general.file_type"); ok && ft <= math.MaxUint32 {
		m.FileType = ggml.FileType(ft)
		m.Quantization = m.FileType.String()
	} else if ft, ok := f.guessFileType(); ok {
		m.FileType = ft
		m.Quantization = ft.String()
	}
	return m
}

// intKey returns an integer value as an int: 0 when absent, not an integer or
// too large; the largest element for an integer array (per-layer values).
func (f *File) intKey(key string) int {
	v, ok := f.Get(key)
	if !ok {
		return 0
	}
	if v.Type() == Array {
		best := 0
		if s, ok := f.GetInt32s(key); ok {
			for _, e := range s {
				best = max(best, int(e))
			}
		}
		return best
	}
	u, ok := asUint(v.Any())
	if !ok || u > math.MaxInt32 {
		return 0
	}
	return int(u)
}

// fileTypeOf maps the type of a file's matrices to the file type llama.cpp's
// quantize tool would have been asked for to produce it.
var fileTypeOf = map[ggml.Type]ggml.FileType{
	ggml.F32: 0, ggml.F16: 1, ggml.Q4_0: 2, ggml.Q4_1: 3, ggml.Q8_0: 7, ggml.Q5_0: 8,
	ggml.Q5_1: 9, ggml.Q2_K: 10, ggml.Q3_K: 12, ggml.Q4_K: 15, ggml.Q5_K: 17, ggml.Q6_K: 18,
	ggml.IQ2_XXS: 19, ggml.IQ2_XS: 20, ggml.IQ3_XXS: 23, ggml.IQ1_S: 24, ggml.IQ4_NL: 25,
	ggml.IQ3_S: 26, ggml.IQ2_S: 28, ggml.IQ4_XS: 30, ggml.IQ1_M: 31, ggml.BF16: 32,
	ggml.TQ1_0: 36, ggml.TQ2_0: 37,
}

// guessFileType picks the type held by the most matrices (tensors of two or
// more dimensions; ties go to the type with more elements).
func (f *File) guessFileType() (ggml.FileType, bool) {
	type tally struct {
		count int
		elems int64
	}
	counts := map[ggml.Type]*tally{}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if len(t.Shape) < 2 {
			continue
		}
		c := counts[t.Type]
		if c == nil {
			c = &tally{}
			counts[t.Type] = c
		}
		c.count++
		c.elems += t.Elements()
	}
	var best ggml.Type
	var bestTally *tally
	for typ, c := range counts {
		if _, ok := fileTypeOf[typ]; !ok {
			continue
		}
		if bestTally == nil || c.count > bestTally.count ||
			(c.count == bestTally.count && (c.elems > bestTally.elems || (c.elems == bestTally.elems && typ < best))) {
			best, bestTally = typ, c
		}
	}
	if bestTally == nil {
		return 0, false
	}
	return fileTypeOf[best], true
}
