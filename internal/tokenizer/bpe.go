package tokenizer

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// byteToRune and runeToByte are GPT-2's reversible byte-level mapping
// (bytes_to_unicode): printable Latin-1 bytes stand for themselves, the other
// bytes for U+0100 onwards in byte order.
var byteToRune, runeToByte = func() ([256]rune, map[rune]byte) {
	var b2r [256]rune
	r2b := make(map[rune]byte, 256)
	next := rune(256)
	for b := range 256 {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			b2r[b] = rune(b)
		} else {
			b2r[b] = next
			next++
		}
		r2b[b2r[b]] = byte(b)
	}
	return b2r, r2b
}()

// byteLevelEncode maps every byte of s to its stand-in character.
func byteLevelEncode(s string, buf []byte) []byte {
	buf = buf[:0]
	for i := 0; i < len(s); i++ {
		buf = utf8.AppendRune(buf, byteToRune[s[i]])
	}
	return buf
}

// byteLevelDecode maps the characters of a token text back to bytes, as
// llama.cpp's llama_decode_text: a character outside the mapping gives
// "[UNK_BYTE_0x<its UTF-8 in hex><text>]".
func byteLevelDecode(text string) string {
	var b strings.Builder
	for i := 0; i < len(text); {
		r, n := decodeCpt(text, i)
		i += n
		if c, ok := runeToByte[r]; ok {
			b.WriteByte(c)
			continue
		}
		b.WriteString("[UNK_BYTE_0x")
		for _, c := range appendCpt(nil, r) {
			if c < 0x10 {
				b.WriteByte('0')
			}
			b.WriteString(strconv.FormatUint(uint64(c), 16))
		}
		b.WriteString(text)
		b.WriteByte(']')
	}
	return b.String()
}

// initBPE reads the merges: each is split at its first space after the first
// byte, as llama.cpp does (a merge without one becomes the pair ("", "")).
func (t *Tokenizer) initBPE(merges []string) {
	t.merges = make(map[[2]string]int, len(merges))
	for rank, m := range merges {
		var pair [2]string
		if len(m) > 1 {
			if i := strings.IndexByte(m[1:], ' '); i >= 0 {
				pair = [2]string{m[:i+1], m[i+2:]}
			}
		}
		// llama.cpp keeps the first rank of a repeated pair.
		if _, dup := t.merges[pair]; !dup {
			t.merges[pair] = rank
		}
	}
}

// encodeBPE tokenizes the fragments of a byte-level BPE vocabulary: each raw
// fragment is split into words by the pre-tokenizer, and each word is merged
// on its own.
func (t *Tokenizer) encodeBPE(frags []fragment, out []int) []int {
	ss := t.getSession()
	defer t.putSession(ss)
	for _, f := range frags {
		if f.tok >= 0 {
			out = append(out, f.tok)
			continue
		}
		text, words := t.pretokenize(f.text, &ss.pre)
		for _, w := range words {
			out = t.bpeWord(text[w.start:w.end], ss, out)
		}
	}
	return out
}

// bpeWord tokenizes one pre-token. Its bytes are mapped to their byte-level
// characters, one symbol each; then the adjacent pair with the lowest merge
// rank (ties to the leftmost) is merged until no pair has a merge. With
// ignoreMerges (Llama 3) a word that is a token as a whole is taken directly.
func (t *Tokenizer) bpeWord(word string, ss *session, out []int) []int {
	ss.enc = byteLevelEncode(word, ss.enc)
	s := string(ss.enc)
	if s == "" {
		return out
	}
	if t.ignoreMerges {
		if id, ok := t.toID[s]; ok {
			return append(out, id)
		}
	}
	syms := splitSymbols(s, ss.syms)
	pair := func(l, r int) (bigram, bool) {
		if l < 0 || r < 0 {
			return bigram{}, false
		}
		a := s[syms[l].start : syms[l].start+syms[l].n]
		b := s[syms[r].start : syms[r].start+syms[r].n]
		rank, ok := t.merges[[2]string{a, b}]
		return bigram{prio: float64(rank), left: l, right: r, size: len(a) + len(b)}, ok
	}
	q := ss.queue[:0]
	for i := 1; i < len(syms); i++ {
		if b, ok := pair(i-1, i); ok {
			q = append(q, b)
		}
	}
	q.init()
	try := func(l, r int) {
		if b, ok := pair(l, r); ok {
			q.push(b)
		}
	}
	for len(q) > 0 {
		b := q.pop()
		l, r := &syms[b.left], &syms[b.right]
		if l.n == 0 || r.n == 0 || l.n+r.n != b.size {
			continue
		}
		l.n += r.n
		r.n = 0
		l.next = r.next
		if l.next >= 0 {
			syms[l.next].prev = b.left
		}
		try(l.prev, b.left)
		try(b.left, l.next)
	}
	for i := 0; i >= 0; i = syms[i].next {
		text := s[syms[i].start : syms[i].start+syms[i].n]
		if id, ok := t.toID[text]; ok {
			out = append(out, id)
			continue
		}
		// As llama.cpp: look up each byte of the symbol's text on its own,
		// and drop the bytes that are not tokens.
		for j := 0; j < len(text); j++ {
			if id, ok := t.toID[text[j:j+1]]; ok {
				out = append(out, id)
			}
		}
	}
	ss.syms, ss.queue = syms, q
	return out
}
