package gguf

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/ggml"
)

func TestModelInfo(t *testing.T) {
	type tensor struct {
		typ   ggml.Type
		shape []uint64
	}
	cases := []struct {
		name    string
		kv      map[string]any
		tensors []tensor
		want    ModelInfo // FileSize is filled in by the test
	}{
		{
			name: "everything stated",
			kv: map[string]any{
				"general.architecture": "qwen2", "general.name": "Q", "general.file_type": uint32(17),
				"qwen2.context_length": uint32(32768), "qwen2.embedding_length": uint64(896),
				"qwen2.block_count": int32(24), "qwen2.attention.head_count": uint32(14),
				"qwen2.attention.head_count_kv": uint16(2), "qwen2.feed_forward_length": uint32(4864),
				"qwen2.vocab_size": uint32(151936), "tokenizer.ggml.tokens": []string{"a", "b"},
				"tokenizer.ggml.bos_token_id": uint32(151643), "tokenizer.ggml.eos_token_id": int32(151645),
			},
			tensors: []tensor{{ggml.Q4_K, []uint64{256, 4}}, {ggml.F32, []uint64{7}}},
			want: ModelInfo{
				Architecture: "qwen2", Name: "Q", ContextLength: 32768, EmbeddingLength: 896, BlockCount: 24,
				HeadCount: 14, HeadCountKV: 2, FeedForwardLength: 4864, VocabSize: 151936, BOS: 151643, EOS: 151645,
				FileType: 17, Quantization: "Q5_K_M", TensorCount: 2, Parameters: 256*4 + 7,
			},
		},
		{
			name: "guessed and defaulted",
			kv: map[string]any{
				"general.architecture":       "llama",
				"llama.attention.head_count": []int32{8, 8, 32, 8}, // per layer: the largest
				"tokenizer.ggml.tokens":      []string{"<unk>", "<s>", "</s>"},
				"llama.feed_forward_length":  "not a number",
			},
			tensors: []tensor{
				{ggml.Q8_0, []uint64{32, 2}}, {ggml.Q4_0, []uint64{32, 3}}, {ggml.Q4_0, []uint64{32, 1}},
				{ggml.F32, []uint64{32}}, {ggml.F32, []uint64{32}}, {ggml.F32, []uint64{32}},
			},
			want: ModelInfo{
				Architecture: "llama", HeadCount: 32, HeadCountKV: 32, VocabSize: 3, BOS: -1, EOS: -1,
				FileType: 2, Quantization: "Q4_0", TensorCount: 6, Parameters: 64 + 96 + 32 + 3*32,
			},
		},
		{
			name: "tie goes to the type with more elements",
			kv:   map[string]any{},
			tensors: []tensor{
				{ggml.F16, []uint64{4, 4}}, {ggml.Q6_K, []uint64{256, 1}},
			},
			want: ModelInfo{BOS: -1, EOS: -1, FileType: 18, Quantization: "Q6_K", TensorCount: 2, Parameters: 16 + 256},
		},
		{
			name: "nothing to go on",
			kv:   map[string]any{},
			want: ModelInfo{BOS: -1, EOS: -1},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := &Writer{}
			for k, v := range tc.kv {
				require.NoError(t, w.Set(k, v))
			}
			for i, tt := range tc.tensors {
				size, msg := tensorSize(tt.typ, tt.shape)
				require.Empty(t, msg)
				require.NoError(t, w.AddTensor(string(rune('a'+i)), tt.typ, tt.shape, make([]byte, size)))
			}
			var buf bytes.Buffer
			_, err := w.WriteTo(&buf)
			require.NoError(t, err)
			f, err := Parse(buf.Bytes())
			require.NoError(t, err)
			want := tc.want
			want.FileSize = int64(buf.Len())
			assert.Equal(t, want, f.ModelInfo())
		})
	}
}
