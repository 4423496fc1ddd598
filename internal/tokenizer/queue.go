package tokenizer

// session holds the buffers of one Encode call; Encode takes one from the
// Tokenizer's pool and gives it back.
type session struct {
	syms  []symbol
	queue bigramQueue
	enc   []byte
	pre   preSession
}

func (t *Tokenizer) getSession() *session {
	if s, ok := t.pool.Get().(*session); ok {
		return s
	}
	return new(session)
}

// maxPooled bounds the buffers kept for reuse, so that one huge text does not
// pin its memory.
const maxPooled = 1 << 16

func (t *Tokenizer) putSession(s *session) {
	if cap(s.syms) > maxPooled || cap(s.queue) > maxPooled || cap(s.enc) > maxPooled || cap(s.pre.cpts) > maxPooled {
		return
	}
	t.pool.Put(s)
}

// bigram is a candidate merge of two adjacent symbols.
type bigram struct {
	prio  float64 // lower merges first: -score for SPM, rank for BPE
	left  int     // index of the left symbol
	right int     // index of the right symbol
	size  int     // byte length of the merged text when queued
}

// before orders bigrams: lower priority value first, then leftmost.
func (a bigram) before(b bigram) bool {
	return a.prio < b.prio || (a.prio == b.prio && a.left < b.left)
}

// bigramQueue is a binary min-heap of bigrams.
type bigramQueue []bigram

func (q *bigramQueue) push(b bigram) {
	h := append(*q, b)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h[i].before(h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	*q = h
}

func (q *bigramQueue) pop() bigram {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	h.down(0)
	*q = h
	return top
}

// init orders a queue filled by plain appends.
func (q bigramQueue) init() {
	for i := len(q)/2 - 1; i >= 0; i-- {
		q.down(i)
	}
}

// down moves h[i] down to its place.
func (h bigramQueue) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		m := l
		if r := l + 1; r < len(h) && h[r].before(h[l]) {
			m = r
		}
		if !h[m].before(h[i]) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// symbol is a run of bytes text[start:start+n] in a doubly linked list of
// symbols; n is 0 once the symbol was merged into its left neighbour.
type symbol struct {
	start, n   int
	prev, next int
}

// utf8Len is the length of a UTF-8 sequence judged by its first byte alone,
// as llama.cpp's unicode_len_utf8: continuation bytes count as 1.
func utf8Len(b byte) int {
	switch {
	case b < 0xC0:
		return 1
	case b < 0xE0:
		return 2
	case b < 0xF0:
		return 3
	}
	return 4
}

// splitSymbols appends one symbol per character of s (llama.cpp's rule:
// lengths from the first byte, clipped at the end) to syms.
func splitSymbols(s string, syms []symbol) []symbol {
	syms = syms[:0]
	for off := 0; off < len(s); {
		n := min(utf8Len(s[off]), len(s)-off)
		i := len(syms)
		next := i + 1
		if off+n == len(s) {
			next = -1
		}
		syms = append(syms, symbol{start: off, n: n, prev: i - 1, next: next})
		off += n
	}
	return syms
}
