package tokenizer

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/gguf"
)

// qwenSpecials are Qwen 2.5's added tokens, all control tokens.
var qwenSpecials = []string{
	"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>",
	"<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
}

func TestEOGQwenFIM(t *testing.T) {
	v := bpeVocab("qwen2", nil)
	base := len(v.Tokens)
	for _, s := range qwenSpecials {
		v.Tokens = append(v.Tokens, s)
		v.Types = append(v.Types, TypeControl)
	}
	id := func(s string) int {
		for i, x := range v.Tokens {
			if x == s {
				return i
			}
		}
		t.Fatalf("no token %q", s)
		return -1
	}
	v.EOS = id("<|endoftext|>")
	tok, err := New(v)
	require.NoError(t, err)
	for _, s := range []string{"<|endoftext|>", "<|im_end|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"} {
		assert.True(t, tok.IsEOG(id(s)), "%s ends generation", s)
	}
	for _, s := range []string{"<|im_start|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"} {
		assert.False(t, tok.IsEOG(id(s)), "%s does not end generation", s)
	}
	assert.False(t, tok.IsEOG(base-1))
	pre, ok := tok.SpecialID(SpecialFIMPre)
	assert.True(t, ok)
	assert.Equal(t, id("<|fim_prefix|>"), pre)
	rep, _ := tok.SpecialID(SpecialFIMRep)
	assert.Equal(t, id("<|repo_name|>"), rep)

	// Ids given by the metadata win over texts, and EOM is EOG.
	v.More = map[Special]int{SpecialEOM: 65, SpecialFIMPad: 66}
	tok, err = New(v)
	require.NoError(t, err)
	assert.True(t, tok.IsEOG(65))
	assert.True(t, tok.IsEOG(66))
	assert.False(t, tok.IsEOG(id("<|fim_pad|>")), "fim_pad is the metadata's token now")

	v.More = map[Special]int{SpecialEOM: len(v.Tokens)}
	_, err = New(v)
	assert.ErrorIs(t, err, ErrInvalidVocab)
}

// TestEOGLlama3Model checks the end-of-generation set of the Llama 3
// vocabulary: EOS and <|eot_id|> (this vocabulary predates <|eom_id|>).
func TestEOGLlama3Model(t *testing.T) {
	f, err := gguf.Open(fixture(t, "families/llama3-Q4_K_M.gguf"))
	require.NoError(t, err)
	defer f.Close()
	tok, err := FromGGUF(f)
	require.NoError(t, err)
	for s, want := range map[string]bool{
		"<|end_of_text|>": true, "<|eot_id|>": true,
		"<|begin_of_text|>": false, "<|start_header_id|>": false, "<|end_header_id|>": false,
	} {
		id, ok := tok.TokenID(s)
		require.True(t, ok, "%s", s)
		assert.Equal(t, want, tok.IsEOG(id), "%s", s)
	}
	_, ok := tok.SpecialID(SpecialEOM)
	assert.False(t, ok)
}

// phiVocab is a small SentencePiece vocabulary where "</s>" is user-defined
// (as in Phi-3), so that it is matched without parseSpecial.
func phiVocab(name string) Vocab {
	return Vocab{
		Model: "llama", Name: name,
		Tokens: []string{"<unk>", "<s>", "</s>", "▁a", "▁b", "b", "▁", "<|endoftext|>", "<|user|>", "<|end|>"},
		Types: []int32{TypeUnknown, TypeControl, TypeUserDefined, TypeNormal, TypeNormal, TypeNormal, TypeNormal,
			TypeUserDefined, TypeUserDefined, TypeControl},
		BOS: 1, EOS: 2, UNK: 0, PAD: -1, EOT: -1, AddBOS: true, AddSpacePrefix: true,
	}
}

func TestPhi3NameRule(t *testing.T) {
	plain, err := New(phiVocab("Llama"))
	require.NoError(t, err)
	phi, err := New(phiVocab("Phi3 Mini"))
	require.NoError(t, err)
	phi2, err := New(phiVocab("microsoft/PHI-3.5"))
	require.NoError(t, err)

	// White space after "</s>" (user-defined here) is dropped for phi3.
	assert.Equal(t, phi.Encode("a</s>b", false, false), phi.Encode("a</s> \t\n b", false, false))
	assert.Equal(t, phi.Encode("a</s>b", false, false), phi2.Encode("a</s>   b", false, false))
	assert.NotEqual(t, plain.Encode("a</s>b", false, false), plain.Encode("a</s>   b", false, false))
	// And after every special token, "<|end|>" with parseSpecial included…
	assert.Equal(t, phi.Encode("a<|user|>b", false, false), phi.Encode("a<|user|>  b", false, false))
	assert.Equal(t, phi.Encode("a<|end|>b", false, true), phi.Encode("a<|end|>  b", false, true))
	// …but not after "<s>", "<unk>" and "<|endoftext|>".
	assert.Equal(t, plain.Encode("a<|endoftext|>  b", false, false), phi.Encode("a<|endoftext|>  b", false, false))
	assert.Equal(t, plain.Encode("<s>  b", false, true), phi.Encode("<s>  b", false, true))
	assert.Equal(t, plain.Encode("<unk>  b", false, true), phi.Encode("<unk>  b", false, true))
	// White space before the token stays.
	assert.Equal(t, plain.Encode("a  </s>", false, false), phi.Encode("a  </s>", false, false))
}

// TestPhi3Fixture checks the rule on the Phi-3 vocabulary, named "Phi3" in
// its metadata.
func TestPhi3Fixture(t *testing.T) {
	tok, _ := vocabTokenizer(t, "phi-3")
	end, ok := tok.TokenID("</s>")
	require.True(t, ok)
	got := tok.Encode("Hi</s>   there", false, false)
	assert.Contains(t, got, end)
	assert.Equal(t, tok.Encode("Hi</s>there", false, false), got)
}
