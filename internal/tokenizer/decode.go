package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// makePiece computes the text token id stands for, as llama.cpp's
// token_to_piece without special rendering: control and unknown tokens give
// "", user-defined tokens their text, SentencePiece normal tokens their text
// with "▁" as space, byte tokens their byte, and byte-level BPE tokens their
// text mapped back to bytes.
func (t *Tokenizer) makePiece(id int) string {
	a := t.attrs[id]
	text := t.text(id)
	switch {
	case a&(attrControl|attrUnknown) != 0:
		return ""
	case a&attrUserDefined != 0:
		return text
	}
	switch t.model {
	case modelSPM:
		switch {
		case a&attrNormal != 0:
			return strings.ReplaceAll(text, "▁", " ")
		case a&attrByte != 0:
			return string([]byte{byteOfToken(text)})
		}
	case modelBPE:
		if a&attrNormal != 0 {
			return byteLevelDecode(text)
		}
	}
	return ""
}

// byteOfToken reads the byte of a token spelled "<0xXX>" the way llama.cpp
// does (strtol on the two characters after "<0x"): leading hex digits count,
// anything else gives 0.
func byteOfToken(text string) byte {
	var v byte
	for i := 3; i < len(text) && i < 5; i++ {
		c := text[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return v
		}
		v = v<<4 | d
	}
	return v
}

// Piece returns the bytes token id stands for (a space for "▁", "\n" for
// <0x0A>, the original bytes of a byte-level BPE token); nil for control
// tokens and ids out of range. A piece may be part of a UTF-8 character.
func (t *Tokenizer) Piece(id int) []byte {
	if id < 0 || id >= len(t.pieces) || t.pieces[id] == "" {
		return nil
	}
	return []byte(t.pieces[id])
}

// Decode returns the concatenated pieces of ids. Ids out of range add
// nothing. The space a SentencePiece vocabulary put before the text is kept
// (" Hello" for "Hello"). The result may hold invalid UTF-8 when the ids end inside a
// character; use a [Decoder] to stream text.
func (t *Tokenizer) Decode(ids []int) string {
	n := 0
	for _, id := range ids {
		if id >= 0 && id < len(t.pieces) {
			n += len(t.pieces[id])
		}
	}
	var b strings.Builder
	b.Grow(n)
	for _, id := range ids {
		if id >= 0 && id < len(t.pieces) {
			b.WriteString(t.pieces[id])
		}
	}
	return b.String()
}

// Decoder turns a stream of token ids into text without ever splitting a
// UTF-8 character: bytes of a character still incomplete are held until the
// tokens that complete it arrive. A Decoder is not safe for concurrent use.
type Decoder struct {
	t    *Tokenizer
	held []byte
}

// NewDecoder returns a streaming decoder.
func (t *Tokenizer) NewDecoder() *Decoder { return &Decoder{t: t} }

// Next adds token id and returns the text it completes: whole, valid UTF-8
// characters only. Bytes that can never form a valid character come out as
// U+FFFD (one per byte); the bytes of a character still incomplete are held.
func (d *Decoder) Next(id int) string {
	if id < 0 || id >= len(d.t.pieces) {
		return ""
	}
	p := d.t.pieces[id]
	if len(d.held) == 0 && utf8.ValidString(p) {
		return p // the common case: whole characters, nothing held
	}
	d.held = append(d.held, p...)
	var out []byte
	i := 0
	for i < len(d.held) && utf8.FullRune(d.held[i:]) {
		r, n := utf8.DecodeRune(d.held[i:])
		if r == utf8.RuneError && n == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, d.held[i:i+n]...)
		}
		i += n
	}
	d.held = append(d.held[:0], d.held[i:]...)
	return string(out)
}

// Flush returns the held bytes, each as U+FFFD since they end inside a
// character, and empties the decoder.
func (d *Decoder) Flush() string {
	s := strings.Repeat(string(utf8.RuneError), len(d.held))
	d.held = d.held[:0]
	return s
}
