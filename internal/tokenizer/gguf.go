package tokenizer

import (
	"fmt"

	"rbee/internal/gguf"
)

// GGUF metadata keys read by VocabFromGGUF.
const (
	keyModel          = "tokenizer.ggml.model"
	keyPre            = "tokenizer.ggml.pre"
	keyTokens         = "tokenizer.ggml.tokens"
	keyScores         = "tokenizer.ggml.scores"
	keyTypes          = "tokenizer.ggml.token_type"
	keyMerges         = "tokenizer.ggml.merges"
	keyBOS            = "tokenizer.ggml.bos_token_id"
	keyEOS            = "tokenizer.ggml.eos_token_id"
	keyUNK            = "tokenizer.ggml.unknown_token_id"
	keyPAD            = "tokenizer.ggml.padding_token_id"
	keyEOT            = "tokenizer.ggml.eot_token_id"
	keyAddBOS         = "tokenizer.ggml.add_bos_token"
	keyAddEOS         = "tokenizer.ggml.add_eos_token"
	keyAddSpacePrefix = "tokenizer.ggml.add_space_prefix"
	keyName           = "general.name"
)

// moreKeys are the keys of further special ids, in llama.cpp's order (a
// later key wins: the deprecated prefix/suffix/middle names come last).
var moreKeys = []struct {
	key  string
	kind Special
}{
	{"tokenizer.ggml.eom_token_id", SpecialEOM},
	{"tokenizer.ggml.fim_pre_token_id", SpecialFIMPre},
	{"tokenizer.ggml.fim_suf_token_id", SpecialFIMSuf},
	{"tokenizer.ggml.fim_mid_token_id", SpecialFIMMid},
	{"tokenizer.ggml.fim_pad_token_id", SpecialFIMPad},
	{"tokenizer.ggml.fim_rep_token_id", SpecialFIMRep},
	{"tokenizer.ggml.fim_sep_token_id", SpecialFIMSep},
	{"tokenizer.ggml.prefix_token_id", SpecialFIMPre},
	{"tokenizer.ggml.suffix_token_id", SpecialFIMSuf},
	{"tokenizer.ggml.middle_token_id", SpecialFIMMid},
}

// FromGGUF builds the Tokenizer described by the tokenizer.ggml.* keys of f.
// It is [VocabFromGGUF] followed by [New].
func FromGGUF(f *gguf.File) (*Tokenizer, error) {
	v, err := VocabFromGGUF(f)
	if err != nil {
		return nil, err
	}
	return New(v)
}

// Open reads the tokenizer of the GGUF file at path and closes the file. It
// reads the metadata only: the file may hold no tensors at all (llama.cpp's
// vocab-only files), and tensors that are there are neither read nor
// checked, so any architecture's file will do.
func Open(path string) (*Tokenizer, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	tok, err := FromGGUF(f)
	if cerr := f.Close(); err == nil && cerr != nil {
		return nil, fmt.Errorf("tokenizer: closing %s: %w", path, cerr)
	}
	return tok, err
}

// VocabFromGGUF reads the tokenizer.ggml.* keys of f, with llama.cpp's
// defaults for keys that are absent:
//   - llama: BOS 1, EOS 2, UNK 0, add BOS, add a space prefix;
//   - gpt2: BOS and EOS 11 (when in range), add BOS for the Llama 3
//     pre-tokenizers only, pre-tokenizer "default".
//
// A special id out of range is ignored (the default stays), as llama.cpp
// does. The returned slices share f's metadata; do not modify them.
func VocabFromGGUF(f *gguf.File) (Vocab, error) {
	v := Vocab{BOS: -1, EOS: -1, UNK: -1, PAD: -1, EOT: -1}
	var ok bool
	if v.Model, ok = f.GetString(keyModel); !ok {
		return Vocab{}, fmt.Errorf("%w: no string %s", ErrInvalidVocab, keyModel)
	}
	if v.Tokens, ok = f.GetStrings(keyTokens); !ok {
		return Vocab{}, fmt.Errorf("%w: no string array %s", ErrInvalidVocab, keyTokens)
	}
	if _, has := f.Get(keyScores); has {
		if v.Scores, ok = f.GetFloat32s(keyScores); !ok {
			return Vocab{}, fmt.Errorf("%w: %s is not a float array", ErrInvalidVocab, keyScores)
		}
	}
	if _, has := f.Get(keyTypes); has {
		if v.Types, ok = f.GetInt32s(keyTypes); !ok {
			return Vocab{}, fmt.Errorf("%w: %s is not an integer array", ErrInvalidVocab, keyTypes)
		}
	}
	if pre, has := f.GetString(keyPre); has {
		v.Pre = pre
	}

	n := len(v.Tokens)
	inRange := func(id int) int {
		if id >= n {
			return -1
		}
		return id
	}
	switch v.Model {
	case "llama":
		v.BOS, v.EOS, v.UNK = inRange(1), inRange(2), inRange(0)
		v.AddBOS, v.AddSpacePrefix = true, true
	case "gpt2":
		if v.Merges, ok = f.GetStrings(keyMerges); !ok {
			return Vocab{}, fmt.Errorf("%w: gpt2 vocabulary without string array %s", ErrInvalidVocab, keyMerges)
		}
		if v.Pre == "" {
			v.Pre = "default"
		}
		v.BOS, v.EOS = inRange(11), inRange(11)
		if pre, ok := preKinds[v.Pre]; ok {
			v.AddBOS = pre.addBOS
			if pre.noBOS {
				v.BOS = -1
			}
		}
	default:
		return Vocab{}, fmt.Errorf("%w: tokenizer model %q", ErrUnsupported, v.Model)
	}

	for _, k := range []struct {
		key string
		id  *int
	}{{keyBOS, &v.BOS}, {keyEOS, &v.EOS}, {keyUNK, &v.UNK}, {keyPAD, &v.PAD}, {keyEOT, &v.EOT}} {
		if u, has := f.GetUint(k.key); has && u < uint64(n) {
			*k.id = int(u)
		}
	}
	for _, k := range moreKeys {
		if u, has := f.GetUint(k.key); has && u < uint64(n) {
			if v.More == nil {
				v.More = make(map[Special]int)
			}
			v.More[k.kind] = int(u)
		}
	}
	v.Name, _ = f.GetString(keyName)
	for _, k := range []struct {
		key string
		b   *bool
	}{{keyAddBOS, &v.AddBOS}, {keyAddEOS, &v.AddEOS}, {keyAddSpacePrefix, &v.AddSpacePrefix}} {
		if b, has := f.GetBool(k.key); has {
			*k.b = b
		}
	}
	return v, nil
}
