package tokenizer

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/gguf"
)

func TestNewRejects(t *testing.T) {
	good := func() Vocab {
		return Vocab{Model: "llama", Tokens: []string{"<unk>", "<s>", "</s>", "a"}, BOS: 1, EOS: 2, UNK: 0, PAD: -1, EOT: -1}
	}
	tests := []struct {
		name   string
		change func(*Vocab)
		want   error
	}{
		{"no tokens", func(v *Vocab) { v.Tokens = nil }, ErrInvalidVocab},
		{"scores length", func(v *Vocab) { v.Scores = []float32{0} }, ErrInvalidVocab},
		{"types length", func(v *Vocab) { v.Types = []int32{1, 1} }, ErrInvalidVocab},
		{"BOS out of range", func(v *Vocab) { v.BOS = 4 }, ErrInvalidVocab},
		{"EOS below -1", func(v *Vocab) { v.EOS = -2 }, ErrInvalidVocab},
		{"EOT out of range", func(v *Vocab) { v.EOT = 99 }, ErrInvalidVocab},
		{"AddBOS without BOS", func(v *Vocab) { v.BOS, v.AddBOS = -1, true }, ErrInvalidVocab},
		{"AddEOS without EOS", func(v *Vocab) { v.EOS, v.AddEOS = -1, true }, ErrInvalidVocab},
		{"unknown model", func(v *Vocab) { v.Model = "bert" }, ErrUnsupported},
		{"unknown pre", func(v *Vocab) { v.Model, v.Pre = "gpt2", "no-such-pre" }, ErrUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := good()
			tc.change(&v)
			tok, err := New(v)
			assert.ErrorIs(t, err, tc.want)
			assert.Nil(t, tok)
		})
	}
	tok, err := New(good())
	require.NoError(t, err)
	assert.Equal(t, 4, tok.VocabSize())
}

func TestNewTypesAndEOG(t *testing.T) {
	v := Vocab{
		Model:  "llama",
		Tokens: []string{"<unk>", "<s>", "</s>", "▁a", "<|im_end|>", "<0x41>", "<x>", "", "▁b"},
		Types:  []int32{TypeUnknown, TypeControl, TypeControl, TypeNormal, TypeNormal, TypeByte, TypeUserDefined, TypeNormal, TypeUnused},
		BOS:    1, EOS: 2, UNK: 0, PAD: -1, EOT: -1, AddBOS: true, AddSpacePrefix: true,
	}
	tok, err := New(v)
	require.NoError(t, err)
	assert.Equal(t, 4, tok.EOT(), "<|im_end|> is found as the end of turn")
	assert.True(t, tok.IsEOG(4))
	assert.True(t, tok.IsEOG(2))
	assert.False(t, tok.IsEOG(1))
	assert.False(t, tok.IsEOG(-1))
	assert.True(t, tok.IsControl(4), "an end-of-turn text becomes a control token")
	assert.Empty(t, tok.Piece(4))
	assert.Equal(t, " a", string(tok.Piece(3)))
	assert.Equal(t, "A", string(tok.Piece(5)))
	assert.Equal(t, "<x>", string(tok.Piece(6)), "user-defined tokens show their text")
	assert.Equal(t, "", string(tok.Piece(8)), "unused tokens show nothing")
	assert.Equal(t, "", tok.TokenText(7))
	id, ok := tok.TokenID("[EMPTY_7]")
	assert.True(t, ok, "an empty token is known as [EMPTY_<id>], as in llama.cpp")
	assert.Equal(t, 7, id)
	// "<x>" is user-defined: split out even without parseSpecial; text
	// after it gets the space prefix again. "b" is not a token here ("▁b"
	// is unused but still a vocabulary entry).
	assert.Equal(t, []int{3, 6, 8}, tok.Encode("a<x>b", false, false))
	// "<|im_end|>" became a control token: matched only with parseSpecial.
	assert.Equal(t, []int{1, 3, 4}, tok.Encode("a<|im_end|>", true, true))
}

// ggufKV is one metadata entry for writeGGUF: value is a string, bool,
// uint32, int32, float32, []string, []float32 or []int32.
type ggufKV struct {
	key   string
	value any
}

// writeGGUF encodes a GGUF v3 file without tensors.
func writeGGUF(t *testing.T, kvs []ggufKV) []byte {
	t.Helper()
	le := binary.LittleEndian
	b := []byte("GGUF")
	b = le.AppendUint32(b, 3)
	b = le.AppendUint64(b, 0)
	b = le.AppendUint64(b, uint64(len(kvs)))
	str := func(s string) {
		b = le.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, kv := range kvs {
		str(kv.key)
		switch v := kv.value.(type) {
		case string:
			b = le.AppendUint32(b, 8)
			str(v)
		case bool:
			b = le.AppendUint32(b, 7)
			if v {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		case uint32:
			b = le.AppendUint32(b, 4)
			b = le.AppendUint32(b, v)
		case int32:
			b = le.AppendUint32(b, 5)
			b = le.AppendUint32(b, uint32(v))
		case []string:
			b = le.AppendUint32(b, 9)
			b = le.AppendUint32(b, 8)
			b = le.AppendUint64(b, uint64(len(v)))
			for _, s := range v {
				str(s)
			}
		case []float32:
			b = le.AppendUint32(b, 9)
			b = le.AppendUint32(b, 6)
			b = le.AppendUint64(b, uint64(len(v)))
			for _, f := range v {
				b = le.AppendUint32(b, math.Float32bits(f))
			}
		case []int32:
			b = le.AppendUint32(b, 9)
			b = le.AppendUint32(b, 5)
			b = le.AppendUint64(b, uint64(len(v)))
			for _, x := range v {
				b = le.AppendUint32(b, uint32(x))
			}
		default:
			t.Fatalf("writeGGUF: %T", v)
		}
	}
	return b
}

func parseGGUF(t *testing.T, kvs ...ggufKV) *gguf.File {
	t.Helper()
	f, err := gguf.Parse(writeGGUF(t, kvs))
	require.NoError(t, err)
	return f
}

func TestFromGGUFBPE(t *testing.T) {
	v := bpeVocab("llama-bpe", handMerges)
	f := parseGGUF(t,
		ggufKV{"tokenizer.ggml.model", "gpt2"},
		ggufKV{"tokenizer.ggml.pre", "llama-bpe"},
		ggufKV{"tokenizer.ggml.tokens", v.Tokens},
		ggufKV{"tokenizer.ggml.token_type", v.Types},
		ggufKV{"tokenizer.ggml.merges", v.Merges},
		ggufKV{"tokenizer.ggml.bos_token_id", uint32(v.BOS)},
		ggufKV{"tokenizer.ggml.eos_token_id", uint32(v.EOS)},
		ggufKV{"tokenizer.ggml.padding_token_id", uint32(999999)}, // out of range: ignored
	)
	got, err := VocabFromGGUF(f)
	require.NoError(t, err)
	assert.Equal(t, v.Tokens, got.Tokens)
	assert.Equal(t, v.Merges, got.Merges)
	assert.Nil(t, got.Scores)
	assert.Equal(t, v.BOS, got.BOS)
	assert.Equal(t, v.EOS, got.EOS)
	assert.Equal(t, -1, got.UNK)
	assert.Equal(t, -1, got.PAD)
	assert.True(t, got.AddBOS, "Llama 3 vocabularies add BOS by default")
	assert.False(t, got.AddSpacePrefix)

	tok, err := FromGGUF(f)
	require.NoError(t, err)
	assert.Equal(t, []int{v.BOS, 261, 266}, tok.Encode("hello world", true, false))
	assert.Equal(t, len(v.Tokens)-2, tok.EOT(), "<|eot_id|> found by its text")

	// The same file but with the add_bos_token key off, and pre "gpt2"
	// (no BOS by default).
	f = parseGGUF(t,
		ggufKV{"tokenizer.ggml.model", "gpt2"},
		ggufKV{"tokenizer.ggml.tokens", v.Tokens},
		ggufKV{"tokenizer.ggml.merges", v.Merges},
		ggufKV{"tokenizer.ggml.add_bos_token", false},
	)
	got, err = VocabFromGGUF(f)
	require.NoError(t, err)
	assert.Equal(t, "default", got.Pre, "no pre key means llama.cpp's default")
	assert.False(t, got.AddBOS)
	assert.Equal(t, 11, got.BOS, "gpt2's default BOS id")
}

func TestFromGGUFLlamaDefaults(t *testing.T) {
	tokens := []string{"<unk>", "<s>", "</s>", "▁a", "a"}
	f := parseGGUF(t,
		ggufKV{"tokenizer.ggml.model", "llama"},
		ggufKV{"tokenizer.ggml.tokens", tokens},
		ggufKV{"tokenizer.ggml.scores", []float32{0, 0, 0, -1, -2}},
	)
	v, err := VocabFromGGUF(f)
	require.NoError(t, err)
	assert.Equal(t, Vocab{
		Model: "llama", Tokens: tokens, Scores: []float32{0, 0, 0, -1, -2},
		BOS: 1, EOS: 2, UNK: 0, PAD: -1, EOT: -1, AddBOS: true, AddSpacePrefix: true,
	}, v)
	tok, err := New(v)
	require.NoError(t, err)
	assert.Equal(t, []int{1, 3}, tok.Encode("a", true, false))

	f = parseGGUF(t,
		ggufKV{"tokenizer.ggml.model", "llama"},
		ggufKV{"tokenizer.ggml.tokens", tokens},
		ggufKV{"tokenizer.ggml.add_space_prefix", false},
		ggufKV{"tokenizer.ggml.add_eos_token", true},
		ggufKV{"tokenizer.ggml.eos_token_id", uint32(4)},
	)
	tok, err = FromGGUF(f)
	require.NoError(t, err)
	assert.Equal(t, []int{1, 4, 4}, tok.Encode("a", true, false), "no space prefix; EOS (4) added")
}

func TestFromGGUFRejects(t *testing.T) {
	tokens := []string{"<unk>", "<s>", "</s>"}
	tests := []struct {
		name string
		kvs  []ggufKV
		want error
	}{
		{"no model", []ggufKV{{"tokenizer.ggml.tokens", tokens}}, ErrInvalidVocab},
		{"no tokens", []ggufKV{{"tokenizer.ggml.model", "llama"}}, ErrInvalidVocab},
		{"tokens not strings", []ggufKV{{"tokenizer.ggml.model", "llama"}, {"tokenizer.ggml.tokens", []int32{1}}}, ErrInvalidVocab},
		{"scores not floats", []ggufKV{{"tokenizer.ggml.model", "llama"}, {"tokenizer.ggml.tokens", tokens}, {"tokenizer.ggml.scores", []string{"x"}}}, ErrInvalidVocab},
		{"types not integers", []ggufKV{{"tokenizer.ggml.model", "llama"}, {"tokenizer.ggml.tokens", tokens}, {"tokenizer.ggml.token_type", []float32{1}}}, ErrInvalidVocab},
		{"scores too short", []ggufKV{{"tokenizer.ggml.model", "llama"}, {"tokenizer.ggml.tokens", tokens}, {"tokenizer.ggml.scores", []float32{1}}}, ErrInvalidVocab},
		{"gpt2 without merges", []ggufKV{{"tokenizer.ggml.model", "gpt2"}, {"tokenizer.ggml.tokens", tokens}}, ErrInvalidVocab},
		{"unknown pre", []ggufKV{{"tokenizer.ggml.model", "gpt2"}, {"tokenizer.ggml.pre", "no-such-pre"}, {"tokenizer.ggml.tokens", tokens}, {"tokenizer.ggml.merges", []string{}}}, ErrUnsupported},
		{"unknown model", []ggufKV{{"tokenizer.ggml.model", "t5"}, {"tokenizer.ggml.tokens", tokens}}, ErrUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := FromGGUF(parseGGUF(t, tc.kvs...))
			assert.ErrorIs(t, err, tc.want)
			assert.Nil(t, tok)
		})
	}
}
