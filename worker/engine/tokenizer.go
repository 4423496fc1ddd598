package engine

import "rbee/internal/tokenizer"

// Tokenizer turns text into a model's token ids and ids back into text, with
// the vocabulary and rules stored in the model file (SentencePiece or
// byte-level BPE, as llama.cpp reads them). Get one from [Model.Tokenizer].
// A Tokenizer is safe for concurrent use.
type Tokenizer struct {
	tok *tokenizer.Tokenizer
}

// Segment is a piece of a prompt for [Tokenizer.EncodeSegments].
type Segment struct {
	Text string
	// Special makes texts of control tokens in Text ("<|im_start|>", "</s>")
	// those tokens. Set it for text your program wrote (a chat template);
	// leave it false for text that came from a user, so that a message cannot
	// forge a turn boundary.
	Special bool
}

// Encode returns the token ids of text. With addSpecial it adds the
// beginning (and, if the vocabulary asks for it, end) of sequence tokens.
// With parseSpecial, text that spells a control token ("<s>",
// "<|eot_id|>") becomes that token; otherwise it stays plain text.
func (t *Tokenizer) Encode(text string, addSpecial, parseSpecial bool) []int {
	return t.tok.Encode(text, addSpecial, parseSpecial)
}

// EncodeSegments tokenizes the concatenation of segs, parsing control-token
// texts only inside the segments marked Special. Neighbouring plain segments
// are tokenized together, so the ids are those of the joined text wherever no
// control token is involved. addSpecial is as for Encode.
func (t *Tokenizer) EncodeSegments(segs []Segment, addSpecial bool) []int {
	ts := make([]tokenizer.Segment, len(segs))
	for i, s := range segs {
		ts[i] = tokenizer.Segment{Text: s.Text, Special: s.Special}
	}
	return t.tok.EncodeSegments(ts, addSpecial)
}

// Decode returns the text of ids, their pieces joined; ids out of range add
// nothing. The result can end inside a UTF-8 character when the ids do.
func (t *Tokenizer) Decode(ids []int) string { return t.tok.Decode(ids) }

// Piece returns the bytes token id decodes to (a space for SentencePiece's
// "▁", a newline for "<0x0A>"): nil for control tokens and ids out of range.
// A piece can be part of a UTF-8 character.
func (t *Tokenizer) Piece(id int) []byte { return t.tok.Piece(id) }

// TokenText returns the vocabulary entry of id as the file spells it
// ("▁Hello", "<0x0A>", "<s>"), or "" for an id out of range.
func (t *Tokenizer) TokenText(id int) string { return t.tok.TokenText(id) }

// TokenID returns the id whose vocabulary entry is text, if there is one.
func (t *Tokenizer) TokenID(text string) (int, bool) { return t.tok.TokenID(text) }

// VocabSize is the number of tokens in the vocabulary.
func (t *Tokenizer) VocabSize() int { return t.tok.VocabSize() }

// BOS is the beginning-of-sequence token, or -1 when the model has none.
func (t *Tokenizer) BOS() int { return t.tok.BOS() }

// EOS is the end-of-sequence token, or -1 when the model has none.
func (t *Tokenizer) EOS() int { return t.tok.EOS() }

// IsEOG reports whether id ends a generation: the end of sequence, the end
// of a turn, and the other tokens llama.cpp treats so ("<|eot_id|>",
// "<|im_end|>", …).
func (t *Tokenizer) IsEOG(id int) bool { return t.tok.IsEOG(id) }

// IsControl reports whether id is a control or unknown token, which decodes
// to nothing.
func (t *Tokenizer) IsControl(id int) bool { return t.tok.IsControl(id) }
