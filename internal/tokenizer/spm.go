package tokenizer

import "strings"

// initSPM finds the byte-fallback token of every byte (<0xXX>, or else the
// one-character token, as llama.cpp's byte_to_token), and whether words can
// be merged one by one (see spmPiece).
func (t *Tokenizer) initSPM() {
	const hex = "0123456789ABCDEF"
	for b := range 256 {
		t.byteTok[b] = -1
		if id, ok := t.toID[string([]byte{'<', '0', 'x', hex[b>>4], hex[b&15], '>'})]; ok {
			t.byteTok[b] = id
		} else if id, ok := t.toID[string([]byte{byte(b)})]; ok && b != 0 {
			t.byteTok[b] = id
		}
	}
	t.spmWords = true
	for _, text := range t.tokens {
		if strings.Contains(strings.TrimLeft(text, "▁"), "▁") {
			t.spmWords = false
			break
		}
	}
}

// encodeSPM tokenizes the fragments of a SentencePiece vocabulary: raw text
// gets a leading space at the start and after a special token (when the
// vocabulary adds a space prefix), spaces become "▁", and each fragment is
// merged on its own.
func (t *Tokenizer) encodeSPM(frags []fragment, out []int) []int {
	ss := t.getSession()
	defer t.putSession(ss)
	prevSpecial := true
	for _, f := range frags {
		if f.tok >= 0 {
			out = append(out, f.tok)
			prevSpecial = true
			continue
		}
		s := f.text
		if t.addSpacePrefix && prevSpecial {
			s = " " + s
		}
		s = strings.ReplaceAll(s, " ", "▁")
		out = t.spmPiece(s, ss, out)
		prevSpecial = false
	}
	return out
}

// spmPiece tokenizes s (spaces already escaped). It starts from one symbol
// per character and repeatedly merges the adjacent pair whose concatenation
// is the highest-scoring token (ties to the leftmost pair). Each final symbol
// is then a token, or a character missing from the vocabulary, which falls
// back to one byte token per byte.
//
// When no token holds a "▁" after other characters (t.spmWords), no merge
// can cross the start of a run of "▁", so each word is merged on its own:
// the result is the same, with small queues.
func (t *Tokenizer) spmPiece(s string, ss *session, out []int) []int {
	if s == "" {
		return out
	}
	syms := splitSymbols(s, ss.syms)
	isSpace := func(i int) bool { return s[syms[i].start:syms[i].start+syms[i].n] == "▁" }
	q := ss.queue
	for a := 0; a < len(syms); {
		b := len(syms)
		if t.spmWords {
			b = a + 1
			for b < len(syms) && !(isSpace(b) && !isSpace(b-1)) {
				b++
			}
		}
		syms[a].prev, syms[b-1].next = -1, -1
		q = t.spmMerge(s, syms, a, b, q[:0])
		out = t.spmEmit(s, syms, a, out)
		a = b
	}
	ss.syms, ss.queue = syms, q
	return out
}

// spmMerge merges the linked symbols syms[a:b] of s.
func (t *Tokenizer) spmMerge(s string, syms []symbol, a, b int, q bigramQueue) bigramQueue {
	pair := func(l, r int) (bigram, bool) {
		if l < 0 || r < 0 {
			return bigram{}, false
		}
		text := s[syms[l].start : syms[r].start+syms[r].n]
		id, ok := t.toID[text]
		return bigram{prio: -float64(t.scores[id]), left: l, right: r, size: len(text)}, ok
	}
	for i := a + 1; i < b; i++ {
		if bg, ok := pair(i-1, i); ok {
			q = append(q, bg)
		}
	}
	q.init()
	for len(q) > 0 {
		bg := q.pop()
		l, r := &syms[bg.left], &syms[bg.right]
		// A stale pair: one side was merged away, or the right side grew.
		if l.n == 0 || r.n == 0 || l.n+r.n != bg.size {
			continue
		}
		l.n += r.n
		r.n = 0
		l.next = r.next
		if l.next >= 0 {
			syms[l.next].prev = bg.left
		}
		if nb, ok := pair(l.prev, bg.left); ok {
			q.push(nb)
		}
		if nb, ok := pair(bg.left, l.next); ok {
			q.push(nb)
		}
	}
	return q
}

// spmEmit appends the tokens of the symbol chain starting at syms[i].
func (t *Tokenizer) spmEmit(s string, syms []symbol, i int, out []int) []int {
	for ; i >= 0; i = syms[i].next {
		text := s[syms[i].start : syms[i].start+syms[i].n]
		if id, ok := t.toID[text]; ok {
			out = append(out, id)
			continue
		}
		for j := 0; j < len(text); j++ {
			// llama.cpp fails on a byte without a token; use UNK instead,
			// or drop the byte when there is none.
			if id := t.byteTok[text[j]]; id >= 0 {
				out = append(out, id)
			} else if t.unk >= 0 {
				out = append(out, t.unk)
			}
		}
	}
	return out
}
