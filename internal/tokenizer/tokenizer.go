// Package tokenizer turns text into token ids and back the way llama.cpp does
// for GGUF models.
//
// Two vocabulary kinds are supported, chosen by the GGUF key
// tokenizer.ggml.model:
//
//   - "llama": SentencePiece with scores (llama.cpp's llm_tokenizer_spm).
//     Spaces become "▁", adjacent pieces are merged best score first, and
//     characters missing from the vocabulary fall back to <0xXX> byte tokens.
//   - "gpt2": byte-level BPE with ranked merges (llama.cpp's
//     llm_tokenizer_bpe), with the pre-tokenizer named by tokenizer.ggml.pre:
//     every name llama.cpp knows (Llama 3, Qwen 2, GPT-2, DeepSeek, Falcon,
//     StarCoder, BLOOM, Tekken, Chameleon, … and its "default" when the key
//     is absent). Most of them are regex splits, which run on a small
//     backtracking engine with std::regex's semantics over the same
//     category stand-ins llama.cpp uses, so that the splits agree exactly.
//
// A [Tokenizer] is immutable after [New] or [FromGGUF] and safe for
// concurrent use. No method panics, whatever the input text or ids.
package tokenizer

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Errors returned by [New] and [FromGGUF]; test with errors.Is.
var (
	// ErrInvalidVocab reports vocabulary data that is inconsistent: arrays
	// of different lengths, special ids out of range, missing keys.
	ErrInvalidVocab = errors.New("tokenizer: invalid vocabulary")
	// ErrUnsupported reports a tokenizer model or pre-tokenizer that this
	// package does not implement.
	ErrUnsupported = errors.New("tokenizer: unsupported")
)

// Token types as stored in tokenizer.ggml.token_type.
const (
	TypeUndefined   = 0
	TypeNormal      = 1
	TypeUnknown     = 2
	TypeControl     = 3
	TypeUserDefined = 4
	TypeUnused      = 5
	TypeByte        = 6
)

// Vocab is the tokenizer data of a GGUF file (the tokenizer.ggml.* keys).
type Vocab struct {
	// Model is tokenizer.ggml.model: "llama" (SentencePiece) or "gpt2"
	// (byte-level BPE).
	Model string
	// Pre is tokenizer.ggml.pre, the pre-tokenizer of a gpt2 vocabulary,
	// by llama.cpp's names ("llama-bpe", "qwen2", "gpt-2", "falcon",
	// "deepseek-coder", …), or "default"/"" (llama.cpp's default). An
	// unknown name is ErrUnsupported. It is ignored for llama vocabularies.
	Pre string
	// Tokens holds each token's text; the index is the id.
	Tokens []string
	// Scores holds each token's score (SentencePiece merge priority); nil
	// means all zero.
	Scores []float32
	// Types holds each token's type (TypeNormal, TypeControl, …); nil means
	// all normal.
	Types []int32
	// Merges holds the BPE merges of a gpt2 vocabulary, "left right", in
	// rank order (first is merged first).
	Merges []string
	// BOS, EOS, UNK, PAD and EOT are special token ids, -1 when absent. EOT
	// is the end-of-turn token (e.g. <|eot_id|>); when it is -1, New looks
	// for the usual end-of-turn texts as llama.cpp does.
	BOS, EOS, UNK, PAD, EOT int
	// AddBOS and AddEOS say whether Encode adds BOS/EOS when asked to add
	// special tokens.
	AddBOS, AddEOS bool
	// AddSpacePrefix makes a llama vocabulary prepend a space to text at the
	// start and after special tokens. It is ignored for gpt2 vocabularies.
	AddSpacePrefix bool
	// More holds further special ids by kind (SpecialEOM, SpecialFIMPre,
	// …); a kind that is missing is looked for by its usual texts, as
	// llama.cpp does.
	More map[Special]int
	// Name is the model's name (general.name). llama.cpp applies rules by
	// name: a model whose lower-cased name contains "phi-3" or "phi3"
	// drops the white space after special tokens and "</s>" (but not after
	// "<unk>", "<s>" and "<|endoftext|>").
	Name string
}

// Special names the special tokens of [Vocab.More].
type Special string

// Special token kinds beyond BOS, EOS, UNK, PAD and EOT.
const (
	SpecialEOM    Special = "eom"     // end of message (<|eom_id|>)
	SpecialFIMPre Special = "fim_pre" // fill-in-the-middle prefix
	SpecialFIMSuf Special = "fim_suf" // fill-in-the-middle suffix
	SpecialFIMMid Special = "fim_mid" // fill-in-the-middle middle
	SpecialFIMPad Special = "fim_pad" // fill-in-the-middle padding
	SpecialFIMRep Special = "fim_rep" // repository name
	SpecialFIMSep Special = "fim_sep" // file separator
)

// specialTexts are the texts by which llama.cpp finds a special token that
// the metadata does not name; the token becomes a control token.
var specialTexts = []struct {
	kind  Special
	texts []string
}{
	{SpecialEOM, []string{"<|eom_id|>"}},
	{SpecialFIMPre, []string{"<|fim_prefix|>", "<fim-prefix>", "<｜fim▁begin｜>", "<PRE>"}},
	{SpecialFIMSuf, []string{"<|fim_suffix|>", "<fim-suffix>", "<｜fim▁hole｜>", "<SUF>"}},
	{SpecialFIMMid, []string{"<|fim_middle|>", "<fim-middle>", "<｜fim▁end｜>", "<MID>"}},
	{SpecialFIMPad, []string{"<|fim_pad|>", "<fim-pad>", "<PAD>"}},
	{SpecialFIMRep, []string{"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"}},
	{SpecialFIMSep, []string{"<|file_sep|>"}},
}

type modelKind uint8

const (
	modelSPM modelKind = iota + 1
	modelBPE
)

// Token attributes, as llama.cpp derives them from token types.
const (
	attrUndefined uint8 = 0
	attrUnknown   uint8 = 1 << iota
	attrUnused
	attrNormal
	attrControl
	attrUserDefined
	attrByte
)

// Strip flags of special tokens: white space next to the token is dropped
// when the text is split at it.
const (
	stripLeft uint8 = 1 << iota
	stripRight
)

// Tokenizer encodes text to token ids and decodes ids to text.
type Tokenizer struct {
	model        modelKind
	pre          *preTokenizer
	ignoreMerges bool

	tokens []string
	scores []float32
	attrs  []uint8
	pieces []string // decoded text of each token (empty for control tokens)
	toID   map[string]int

	bos, eos, unk, pad, eot int
	addBOS, addEOS          bool
	addSpacePrefix          bool

	specials []int // control, user-defined and unknown tokens, longest text first
	strip    map[int]uint8
	more     map[Special]int
	eog      map[int]struct{}

	byteTok  [256]int          // SPM: id of <0xXX> for each byte, -1 if none
	spmWords bool              // SPM: no token has "▁" after other text, so words merge alone
	merges   map[[2]string]int // BPE: rank of each merge pair

	pool sync.Pool // of *session
}

// eogTexts are token texts llama.cpp treats as end of generation.
var eogTexts = []string{
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
	"<|eom_id|>", "<EOT>",
}

// eotTexts are the texts llama.cpp looks for when no end-of-turn id is given.
var eotTexts = []string{
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
	"<EOT>", "<｜end▁of▁sentence｜>",
}

// New builds a Tokenizer from v. It checks that the arrays agree in length,
// that the special ids are in range and that the model and pre-tokenizer are
// known. The vocabulary's slices are not modified; New keeps its own copies
// of what it needs.
func New(v Vocab) (*Tokenizer, error) {
	n := len(v.Tokens)
	if n == 0 {
		return nil, fmt.Errorf("%w: no tokens", ErrInvalidVocab)
	}
	if v.Scores != nil && len(v.Scores) != n {
		return nil, fmt.Errorf("%w: %d scores for %d tokens", ErrInvalidVocab, len(v.Scores), n)
	}
	if v.Types != nil && len(v.Types) != n {
		return nil, fmt.Errorf("%w: %d token types for %d tokens", ErrInvalidVocab, len(v.Types), n)
	}
	t := &Tokenizer{
		bos: v.BOS, eos: v.EOS, unk: v.UNK, pad: v.PAD, eot: v.EOT,
		addBOS: v.AddBOS, addEOS: v.AddEOS,
	}
	for _, s := range []struct {
		name string
		id   int
	}{{"BOS", v.BOS}, {"EOS", v.EOS}, {"UNK", v.UNK}, {"PAD", v.PAD}, {"EOT", v.EOT}} {
		if s.id < -1 || s.id >= n {
			return nil, fmt.Errorf("%w: %s id %d outside [-1, %d)", ErrInvalidVocab, s.name, s.id, n)
		}
	}
	if v.AddBOS && v.BOS < 0 {
		return nil, fmt.Errorf("%w: AddBOS without a BOS token", ErrInvalidVocab)
	}
	t.more = make(map[Special]int, len(v.More))
	for k, id := range v.More {
		if id < 0 || id >= n {
			return nil, fmt.Errorf("%w: %s id %d outside [0, %d)", ErrInvalidVocab, k, id, n)
		}
		t.more[k] = id
	}
	if v.AddEOS && v.EOS < 0 {
		return nil, fmt.Errorf("%w: AddEOS without an EOS token", ErrInvalidVocab)
	}

	switch v.Model {
	case "llama":
		t.model = modelSPM
		t.addSpacePrefix = v.AddSpacePrefix
	case "gpt2":
		t.model = modelBPE
		pre, ok := preKinds[v.Pre]
		if !ok {
			return nil, fmt.Errorf("%w: pre-tokenizer %q", ErrUnsupported, v.Pre)
		}
		t.pre = pre
		t.ignoreMerges = pre.ignoreMerges
	default:
		return nil, fmt.Errorf("%w: tokenizer model %q", ErrUnsupported, v.Model)
	}

	t.tokens = append([]string(nil), v.Tokens...)
	t.scores = make([]float32, n)
	copy(t.scores, v.Scores)
	t.attrs = make([]uint8, n)
	t.toID = make(map[string]int, n)
	for id, text := range t.tokens {
		t.attrs[id] = attrNormal
		if v.Types != nil {
			t.attrs[id] = attrOfType(v.Types[id])
		}
		// llama.cpp renames empty tokens so that every text is non-empty,
		// and a later duplicate text wins the lookup.
		t.toID[lookupText(id, text)] = id
	}

	t.findEOG()

	for id, a := range t.attrs {
		if a&(attrControl|attrUserDefined|attrUnknown) != 0 {
			t.specials = append(t.specials, id)
		}
	}
	sort.SliceStable(t.specials, func(i, j int) bool {
		return len(t.text(t.specials[i])) > len(t.text(t.specials[j]))
	})
	t.nameRules(v.Name, v.Pre)

	switch t.model {
	case modelSPM:
		t.initSPM()
	case modelBPE:
		t.initBPE(v.Merges)
	}
	t.pieces = make([]string, n)
	for id := range t.pieces {
		t.pieces[id] = t.makePiece(id)
	}
	return t, nil
}

// lookupText is the text under which token id is found: llama.cpp replaces an
// empty text with "[EMPTY_<id>]".
func lookupText(id int, text string) string {
	if text == "" {
		return "[EMPTY_" + strconv.Itoa(id) + "]"
	}
	return text
}

// text is the token's lookup text (never empty).
func (t *Tokenizer) text(id int) string { return lookupText(id, t.tokens[id]) }

func attrOfType(typ int32) uint8 {
	switch typ {
	case TypeNormal:
		return attrNormal
	case TypeUnknown:
		return attrUnknown
	case TypeControl:
		return attrControl
	case TypeUserDefined:
		return attrUserDefined
	case TypeUnused:
		return attrUnused
	case TypeByte:
		return attrByte
	}
	return attrUndefined
}

// findEOG fills the end-of-generation set as llama.cpp does: EOS, EOT and
// EOM (found by text when not given), the fill-in-the-middle padding,
// repository and file-separator tokens, and tokens whose text marks an end
// of turn. Tokens found by text become control tokens.
func (t *Tokenizer) findEOG() {
	if t.eot < 0 {
		for _, s := range eotTexts {
			if id, ok := t.toID[s]; ok {
				t.eot = id
				t.attrs[id] = attrControl
				break
			}
		}
	}
	for _, st := range specialTexts {
		if _, ok := t.more[st.kind]; ok {
			continue
		}
		for _, s := range st.texts {
			if id, ok := t.toID[s]; ok {
				t.more[st.kind] = id
				t.attrs[id] = attrControl
				break
			}
		}
	}
	t.eog = make(map[int]struct{})
	for _, k := range []Special{SpecialFIMPad, SpecialFIMRep, SpecialFIMSep, SpecialEOM} {
		if id, ok := t.more[k]; ok {
			t.eog[id] = struct{}{}
		}
	}
	for _, s := range eogTexts {
		if id, ok := t.toID[s]; ok {
			t.eog[id] = struct{}{}
			t.attrs[id] = attrControl
		}
	}
	if t.eos >= 0 {
		t.eog[t.eos] = struct{}{}
	}
	if t.eot >= 0 {
		t.eog[t.eot] = struct{}{}
	}
}

// nameRules applies llama.cpp's rules by model and pre-tokenizer name: Jina
// v2 drops the white space before "<mask>"; Phi-3 drops the white space after
// its special tokens and "</s>", except "<unk>", "<s>" and "<|endoftext|>".
// A token the rule names but the vocabulary lacks is skipped.
func (t *Tokenizer) nameRules(name, pre string) {
	t.strip = make(map[int]uint8)
	name = strings.ToLower(name)
	switch {
	case t.model == modelBPE && (strings.Contains(pre, "jina-v2-de") || strings.Contains(pre, "jina-v2-es") || strings.Contains(pre, "jina-v2-code")):
		if id, ok := t.toID["<mask>"]; ok {
			t.strip[id] |= stripLeft
		}
	case strings.Contains(name, "phi-3") || strings.Contains(name, "phi3"):
		for _, id := range t.specials {
			t.strip[id] |= stripRight
		}
		if id, ok := t.toID["</s>"]; ok {
			t.strip[id] |= stripRight
		}
		for _, s := range []string{"<unk>", "<s>", "<|endoftext|>"} {
			if id, ok := t.toID[s]; ok {
				t.strip[id] &^= stripRight
			}
		}
	}
}

// SpecialID returns the id of a special token kind, if the vocabulary has one.
func (t *Tokenizer) SpecialID(k Special) (int, bool) {
	id, ok := t.more[k]
	return id, ok
}

// VocabSize returns the number of tokens.
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// BOS returns the beginning-of-sequence id, or -1.
func (t *Tokenizer) BOS() int { return t.bos }

// EOS returns the end-of-sequence id, or -1.
func (t *Tokenizer) EOS() int { return t.eos }

// EOT returns the end-of-turn id, or -1.
func (t *Tokenizer) EOT() int { return t.eot }

// AddBOS reports whether Encode adds BOS when asked to add special tokens.
func (t *Tokenizer) AddBOS() bool { return t.addBOS }

// IsEOG reports whether id ends generation: EOS, EOT, EOM and the other
// tokens llama.cpp treats so (<|eot_id|>, <|im_end|>, <|endoftext|>, the
// fill-in-the-middle padding, repository and file-separator tokens, …).
func (t *Tokenizer) IsEOG(id int) bool {
	_, ok := t.eog[id]
	return ok
}

// IsControl reports whether id is a control or unknown token (one whose piece
// is empty).
func (t *Tokenizer) IsControl(id int) bool {
	return id >= 0 && id < len(t.attrs) && t.attrs[id]&(attrControl|attrUnknown) != 0
}

// TokenText returns the vocabulary text of id ("▁Hello", "<0x0A>", "<s>"),
// or "" for an id out of range.
func (t *Tokenizer) TokenText(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// TokenID returns the id whose vocabulary text is text.
func (t *Tokenizer) TokenID(text string) (int, bool) {
	id, ok := t.toID[text]
	return id, ok
}

// fragment is a part of the input: raw text (tok < 0) or a special token.
type fragment struct {
	text string
	tok  int
}

// Encode returns the token ids of text. With addSpecial it adds BOS and EOS
// as the vocabulary says. With parseSpecial, text that spells a control token
// ("<s>", "<|eot_id|>") becomes that token; otherwise it is plain text.
// User-defined tokens are always matched, as in llama.cpp. Invalid UTF-8 is
// handled as llama.cpp does: SentencePiece falls back to byte tokens, BPE
// replaces each invalid byte with U+FFFD.
func (t *Tokenizer) Encode(text string, addSpecial, parseSpecial bool) []int {
	frags := t.partition(text, parseSpecial)
	out := make([]int, 0, len(text)/3+4)
	if addSpecial && t.addBOS {
		out = append(out, t.bos)
	}
	switch t.model {
	case modelSPM:
		out = t.encodeSPM(frags, out)
	case modelBPE:
		out = t.encodeBPE(frags, out)
	}
	if addSpecial && t.addEOS {
		out = append(out, t.eos)
	}
	return out
}

// partition splits text at occurrences of special tokens, longest token text
// first, the way llama.cpp's tokenizer_st_partition does.
func (t *Tokenizer) partition(text string, parseSpecial bool) []fragment {
	if text == "" {
		return nil
	}
	frags := []fragment{{text: text, tok: -1}}
	var next []fragment
	for _, id := range t.specials {
		if !parseSpecial && t.attrs[id]&(attrControl|attrUnknown) != 0 {
			continue
		}
		sp := t.text(id)
		if !containsIn(frags, sp) {
			continue
		}
		strip := t.strip[id]
		next = next[:0]
		for _, f := range frags {
			if f.tok >= 0 {
				next = append(next, f)
				continue
			}
			s := f.text
			for {
				i := strings.Index(s, sp)
				if i < 0 {
					break
				}
				left := s[:i]
				if strip&stripLeft != 0 {
					left = strings.TrimRight(left, asciiSpace)
				}
				if left != "" {
					next = append(next, fragment{text: left, tok: -1})
				}
				next = append(next, fragment{tok: id})
				s = s[i+len(sp):]
				if strip&stripRight != 0 {
					s = strings.TrimLeft(s, asciiSpace)
				}
			}
			if s != "" {
				next = append(next, fragment{text: s, tok: -1})
			}
		}
		frags, next = next, frags
	}
	return frags
}

// asciiSpace is C's isspace set, which llama.cpp strips next to tokens.
const asciiSpace = " \t\n\v\f\r"

func containsIn(frags []fragment, s string) bool {
	for _, f := range frags {
		if f.tok < 0 && strings.Contains(f.text, s) {
			return true
		}
	}
	return false
}
