package gguf

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/ggml"
)

func TestFixtures(t *testing.T) {
	cases := []struct {
		file     string
		fileType ggml.FileType
		quant    string
		types    map[string]ggml.Type
	}{
		{"tiny-F16.gguf", 1, "F16", map[string]ggml.Type{
			"output.weight": ggml.F16, "token_embd.weight": ggml.F16, "output_norm.weight": ggml.F32,
		}},
		{"tiny-Q8_0.gguf", 7, "Q8_0", map[string]ggml.Type{
			"output.weight": ggml.Q8_0, "blk.0.attn_q.weight": ggml.Q8_0, "blk.1.ffn_norm.weight": ggml.F32,
		}},
		{"tiny-Q4_K_M.gguf", 15, "Q4_K_M", map[string]ggml.Type{
			"output.weight": ggml.Q6_K, "token_embd.weight": ggml.Q4_K, "blk.1.attn_v.weight": ggml.Q6_K,
			"blk.1.ffn_down.weight": ggml.Q6_K, "blk.0.ffn_down.weight": ggml.Q4_K, "output_norm.weight": ggml.F32,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			path := fixture(t, tc.file)
			f, err := Open(path)
			require.NoError(t, err)
			t.Cleanup(func() { assert.NoError(t, f.Close()) })

			assert.Equal(t, path, f.Path)
			assert.Equal(t, uint32(3), f.Version)
			assert.Equal(t, uint64(32), f.Alignment)
			assert.Len(t, f.Tensors, 21)
			assert.Zero(t, f.DataOffset%32)

			info := f.ModelInfo()
			assert.Equal(t, "llama", info.Architecture)
			assert.Equal(t, 2048, info.ContextLength)
			assert.Equal(t, 256, info.EmbeddingLength)
			assert.Equal(t, 2, info.BlockCount)
			assert.Equal(t, 4, info.HeadCount)
			assert.Equal(t, 2, info.HeadCountKV)
			assert.Equal(t, 768, info.FeedForwardLength)
			assert.Equal(t, 32000, info.VocabSize)
			assert.Equal(t, 1, info.BOS)
			assert.Equal(t, 2, info.EOS)
			assert.Equal(t, tc.fileType, info.FileType)
			assert.Equal(t, tc.quant, info.Quantization)
			assert.Equal(t, 21, info.TensorCount)
			assert.Equal(t, f.Size, info.FileSize)
			// 2 × (256×32000) embeddings + norms + 2 blocks of attention and FFN.
			want := int64(2*256*32000 + 256 + 2*(256*256*2+256*128*2+3*256*768+2*256))
			assert.Equal(t, want, info.Parameters)

			for name, typ := range tc.types {
				ti, ok := f.Tensor(name)
				if assert.True(t, ok, name) {
					assert.Equal(t, typ, ti.Type, name)
				}
			}
			out, ok := f.Tensor("output.weight")
			require.True(t, ok)
			assert.Equal(t, []uint64{256, 32000}, out.Shape)
			assert.Equal(t, int64(32000), out.Rows())
			assert.Equal(t, int64(256*32000), out.Elements())
			assert.Equal(t, int64(out.Type.RowSize(256))*32000, out.Size)
			data := f.TensorData(out)
			assert.Len(t, data, int(out.Size))

			tokens, ok := f.GetStrings("tokenizer.ggml.tokens")
			require.True(t, ok)
			require.Len(t, tokens, 32000)
			assert.Equal(t, []string{"<unk>", "<s>", "</s>", "<0x00>"}, tokens[:4])
			scores, ok := f.GetFloat32s("tokenizer.ggml.scores")
			assert.True(t, ok)
			assert.Len(t, scores, 32000)
			types, ok := f.GetInt32s("tokenizer.ggml.token_type")
			assert.True(t, ok)
			assert.Equal(t, []int32{2, 3, 3, 6}, types[:4])
			eps, ok := f.GetFloat("llama.attention.layer_norm_rms_epsilon")
			assert.True(t, ok)
			assert.InDelta(t, 1e-5, eps, 1e-9)
			addBOS, ok := f.GetBool("tokenizer.ggml.add_bos_token")
			assert.True(t, ok)
			assert.True(t, addBOS)

			fromReadInfo, err := ReadInfo(path)
			require.NoError(t, err)
			assert.Equal(t, info, fromReadInfo)

			require.NoError(t, f.Close())
			assert.Nil(t, f.TensorData(out), "no data after Close")
			assert.NoError(t, f.Close(), "Close is idempotent")
		})
	}
}
