package synth

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/ggml"
	"rbee/internal/gguf"
)

func write(t *testing.T, s Spec) string {
	p := filepath.Join(t.TempDir(), "m.gguf")
	require.NoError(t, Write(p, s))
	return p
}

func TestDeterministic(t *testing.T) {
	a, err := os.ReadFile(write(t, Tiny("Q4_K_M")))
	require.NoError(t, err)
	b, err := os.ReadFile(write(t, Tiny("Q4_K_M")))
	require.NoError(t, err)
	assert.Equal(t, sha256.Sum256(a), sha256.Sum256(b))
	s := Tiny("Q4_K_M")
	s.Seed = 2
	c, err := os.ReadFile(write(t, s))
	require.NoError(t, err)
	assert.NotEqual(t, sha256.Sum256(a), sha256.Sum256(c))
}

func TestQuantMixes(t *testing.T) {
	s := Tiny("Q4_K_M")
	s.Layers = 8
	f, err := gguf.Open(write(t, s))
	require.NoError(t, err)
	defer f.Close()
	typ := func(name string) ggml.Type {
		ti, ok := f.Tensor(name)
		require.True(t, ok, name)
		return ti.Type
	}
	assert.Equal(t, ggml.Q6_K, typ("output.weight"))
	assert.Equal(t, ggml.Q4_K, typ("token_embd.weight"))
	tied := Tiny("Q4_K_M")
	tied.TiedOutput = true
	g, err := gguf.Open(write(t, tied))
	require.NoError(t, err)
	defer g.Close()
	emb, ok := g.Tensor("token_embd.weight")
	require.True(t, ok)
	assert.Equal(t, ggml.Q6_K, emb.Type, "a table that is also the head is encoded as the head, as llama.cpp's quantize does")
	assert.Equal(t, ggml.F32, typ("blk.0.attn_norm.weight"))
	// use_more_bits for 8 layers: 0, 3 (=(3-1)%3==2), 6, 7.
	for l, more := range []bool{true, false, false, true, false, false, true, true} {
		want := ggml.Q4_K
		if more {
			want = ggml.Q6_K
		}
		assert.Equal(t, want, typ(blk(l, "attn_v.weight")), "layer %d", l)
		assert.Equal(t, want, typ(blk(l, "ffn_down.weight")), "layer %d", l)
		assert.Equal(t, ggml.Q4_K, typ(blk(l, "attn_q.weight")))
	}
	info := f.ModelInfo()
	assert.Equal(t, "Q4_K_M", info.Quantization)
	assert.Equal(t, 512, info.VocabSize)
	assert.Equal(t, 8, info.BlockCount)
}

func blk(l int, name string) string { return "blk." + string(rune('0'+l)) + "." + name }

func TestTiedAndErrors(t *testing.T) {
	s := Tiny("Q8_0")
	s.TiedOutput = true
	f, err := gguf.Open(write(t, s))
	require.NoError(t, err)
	_, ok := f.Tensor("output.weight")
	assert.False(t, ok)
	f.Close()

	bad := Tiny("Q3_K")
	assert.ErrorContains(t, Write(filepath.Join(t.TempDir(), "x"), bad), "unknown quantization")
	bad = Tiny("Q4_K_M")
	bad.Embedding = 96 // not a multiple of 256
	bad.Heads = 4
	assert.ErrorContains(t, Write(filepath.Join(t.TempDir(), "x"), bad), "columns do not fit")
	bad = Tiny("F16")
	bad.Vocab = 10
	assert.ErrorContains(t, Write(filepath.Join(t.TempDir(), "x"), bad), "vocabulary")
}

func TestVocabularyTokenizesAnything(t *testing.T) {
	toks, scores, types := Vocabulary(1000)
	assert.Len(t, toks, 1000)
	assert.Len(t, scores, 1000)
	assert.Len(t, types, 1000)
	seen := map[string]bool{}
	for _, tok := range toks {
		assert.False(t, seen[tok], "duplicate %q", tok)
		seen[tok] = true
	}
	assert.Equal(t, "<0x00>", toks[3])
	assert.Equal(t, int32(6), types[3+255])
}

// TestFamilies writes each family and checks the metadata and tensors that
// set it apart, under the architecture's own key prefix.
func TestFamilies(t *testing.T) {
	cases := map[string]struct {
		has, lacks []string
		keys       []string
	}{
		"qwen2":  {has: []string{"blk.0.attn_q.bias", "blk.1.attn_v.bias", "output.weight"}, lacks: []string{"blk.0.attn_qkv.weight"}},
		"phi3":   {has: []string{"blk.0.attn_qkv.weight"}, lacks: []string{"blk.0.attn_q.weight", "blk.0.ffn_gate.weight"}, keys: []string{"phi3.attention.sliding_window"}},
		"gemma2": {has: []string{"blk.1.post_attention_norm.weight", "blk.1.post_ffw_norm.weight"}, lacks: []string{"output.weight"}, keys: []string{"gemma2.attn_logit_softcapping", "gemma2.final_logit_softcapping", "gemma2.attention.key_length"}},
	}
	for arch, c := range cases {
		t.Run(arch, func(t *testing.T) {
			s := Family(arch, "Q8_0")
			f, err := gguf.Open(write(t, s))
			require.NoError(t, err)
			defer f.Close()
			got, _ := f.GetString("general.architecture")
			assert.Equal(t, arch, got)
			_, ok := f.GetUint(arch + ".block_count")
			assert.True(t, ok)
			for _, n := range c.has {
				_, ok := f.Tensor(n)
				assert.True(t, ok, n)
			}
			for _, n := range c.lacks {
				_, ok := f.Tensor(n)
				assert.False(t, ok, n)
			}
			for _, k := range c.keys {
				_, ok := f.Get(k)
				assert.True(t, ok, k)
			}
		})
	}
	if ti, ok := mustOpen(t, Family("phi3", "F16")).Tensor("blk.0.ffn_up.weight"); assert.True(t, ok) {
		assert.Equal(t, []uint64{256, 2 * 768}, ti.Shape, "phi3's ffn_up holds the gate and the up rows")
	}
	bad := Tiny("F16")
	bad.Arch = "mamba"
	assert.ErrorContains(t, Write(filepath.Join(t.TempDir(), "x"), bad), "unknown architecture")
}

func mustOpen(t *testing.T, s Spec) *gguf.File {
	f, err := gguf.Open(write(t, s))
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}
