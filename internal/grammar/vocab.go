package grammar

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"unicode/utf8"
)

// Vocab is a tokenizer's vocabulary as the matcher needs it: the bytes each
// token decodes to, in tries, and which tokens end a generation. Build it
// once per tokenizer; it is immutable and safe for concurrent use.
type Vocab struct {
	n      int
	pieces [][]byte
	eog    []int
	all    flatTrie // every token with bytes
	// plain marks the tokens that are ordinary string content: whole UTF-8
	// characters, none of them a quote, a backslash or a control character.
	// Inside a string without a length limit they are all allowed, so a
	// mask there only walks the others (rest).
	plain []uint64
	rest  flatTrie
}

// flatTrie is a trie of token pieces in depth-first order: node i has byte
// label[i] at depth depth[i] (1 for a first byte), its subtree ends before
// skip[i], and the tokens whose piece ends at it are toks[off[i]:off[i+1]].
type flatTrie struct {
	label    []byte
	depth    []uint16
	skip     []int32
	off      []int32
	toks     []int32
	maxDepth int
}

// NewVocab builds the vocabulary of n tokens: piece(id) is the bytes token
// id decodes to (nil or empty for control tokens, which are never allowed),
// isEOG(id) whether it ends a generation (allowed once the value is
// complete).
func NewVocab(n int, piece func(id int) []byte, isEOG func(id int) bool) *Vocab {
	v := &Vocab{n: n, pieces: make([][]byte, n), plain: make([]uint64, (n+63)/64)}
	var all, rest []int
	for id := range n {
		if isEOG != nil && isEOG(id) {
			v.eog = append(v.eog, id)
			continue
		}
		p := piece(id)
		if len(p) == 0 || len(p) > math.MaxUint16 {
			continue
		}
		v.pieces[id] = slices.Clone(p)
		all = append(all, id)
		if isPlain(p) {
			v.plain[id>>6] |= 1 << (id & 63)
		} else {
			rest = append(rest, id)
		}
	}
	v.all = buildTrie(v.pieces, all)
	v.rest = buildTrie(v.pieces, rest)
	return v
}

// Size is the number of tokens.
func (v *Vocab) Size() int { return v.n }

func isPlain(p []byte) bool {
	if !utf8.Valid(p) {
		return false
	}
	for _, c := range p {
		if c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func buildTrie(pieces [][]byte, ids []int) flatTrie {
	ids = slices.Clone(ids)
	slices.SortStableFunc(ids, func(a, b int) int { return bytes.Compare(pieces[a], pieces[b]) })
	var t flatTrie
	var path []int32 // node of each depth of the previous piece
	var prev []byte
	var tokAt [][]int32
	for _, id := range ids {
		p := pieces[id]
		common := 0
		for common < len(p) && common < len(prev) && p[common] == prev[common] {
			common++
		}
		for len(path) > common {
			t.skip[path[len(path)-1]] = int32(len(t.label))
			path = path[:len(path)-1]
		}
		for d := common; d < len(p); d++ {
			path = append(path, int32(len(t.label)))
			t.label = append(t.label, p[d])
			t.depth = append(t.depth, uint16(d+1))
			t.skip = append(t.skip, 0)
			tokAt = append(tokAt, nil)
		}
		last := path[len(path)-1]
		tokAt[last] = append(tokAt[last], int32(id))
		t.maxDepth = max(t.maxDepth, len(p))
		prev = p
	}
	for _, i := range path {
		t.skip[i] = int32(len(t.label))
	}
	t.off = make([]int32, len(t.label)+1)
	for i, ts := range tokAt {
		t.toks = append(t.toks, ts...)
		t.off[i+1] = int32(len(t.toks))
	}
	return t
}

// ErrNoToken: no token of the vocabulary can continue the output (the
// grammar needs bytes that no token spells, or nesting deeper than
// MaxNesting).
var ErrNoToken = errors.New("no token can continue the structured output")

// Matcher follows one generation against a grammar: which tokens may come
// next, and the tokens chosen. It is not safe for concurrent use.
type Matcher struct {
	g      *Grammar
	v      *Vocab
	states []state
	done   bool // an end-of-generation token was accepted

	buf    [2][]state
	levels [][]state
	bits   []uint64
}

// NewMatcher starts matching g with the tokens of v.
func (g *Grammar) NewMatcher(v *Vocab) *Matcher {
	return &Matcher{g: g, v: v, states: []state{initial(g)}, bits: make([]uint64, (v.n+63)/64)}
}

// Complete reports whether the output so far is a whole value, so that an
// end-of-generation token may come next.
func (m *Matcher) Complete() bool {
	for _, s := range m.states {
		if canEnd(s) {
			return true
		}
	}
	return false
}

// feed runs bytes p from states and returns the states after them (in one
// of the scratch buffers), or none.
func (m *Matcher) feed(states []state, p []byte) []state {
	cur := states
	for i, c := range p {
		out := m.buf[i&1][:0]
		out = stepAll(cur, c, out)
		m.buf[i&1] = out
		if len(out) == 0 {
			return nil
		}
		cur = out
	}
	return cur
}

// AcceptBytes feeds text to the matcher as if tokens had spelled it and
// reports whether it was allowed; if not, nothing changes.
func (m *Matcher) AcceptBytes(p []byte) bool {
	if m.done {
		return len(p) == 0
	}
	next := m.feed(m.states, p)
	if next == nil {
		return len(p) == 0
	}
	m.states = append(m.states[:0:0], next...)
	return true
}

func (m *Matcher) isEOG(id int) bool { return slices.Contains(m.v.eog, id) }

// Allows reports whether token id may come next.
func (m *Matcher) Allows(id int) bool {
	if id < 0 || id >= m.v.n || m.done {
		return false
	}
	if m.isEOG(id) {
		return m.Complete()
	}
	p := m.v.pieces[id]
	return len(p) > 0 && m.feed(m.states, p) != nil
}

// Accept records token id as chosen. It fails, changing nothing, when id
// is not allowed.
func (m *Matcher) Accept(id int) error {
	if !m.Allows(id) {
		return fmt.Errorf("token %d does not fit the structured output", id)
	}
	if m.isEOG(id) {
		m.done = true
		return nil
	}
	next := m.feed(m.states, m.v.pieces[id])
	m.states = append(m.states[:0:0], next...)
	return nil
}

// Mask sets the logits of the tokens that may not come next to -Inf and
// returns how many may. With none, it leaves logits alone and returns 0
// with ErrNoToken.
func (m *Matcher) Mask(logits []float32) (int, error) {
	set := m.allowed()
	n := 0
	for _, w := range set {
		n += popcount(w)
	}
	if n == 0 {
		return 0, ErrNoToken
	}
	inf := float32(math.Inf(-1))
	for i := range logits {
		if i >= m.v.n || set[i>>6]&(1<<(i&63)) == 0 {
			logits[i] = inf
		}
	}
	return n, nil
}

// AllowedCount is the number of tokens that may come next (for tests and
// benchmarks).
func (m *Matcher) AllowedCount() int {
	n := 0
	for _, w := range m.allowed() {
		n += popcount(w)
	}
	return n
}

func popcount(w uint64) int { return bits.OnesCount64(w) }

// allowed computes the bitset of the tokens that may come next.
func (m *Matcher) allowed() []uint64 {
	bits := m.bits
	clear(bits)
	if m.done {
		return bits
	}
	if m.Complete() {
		for _, id := range m.v.eog {
			bits[id>>6] |= 1 << (id & 63)
		}
	}
	if len(m.states) == 1 && plainInside(m.states[0]) {
		copy(bits, m.v.plain)
		m.walk(&m.v.rest, bits)
		return bits
	}
	m.walk(&m.v.all, bits)
	return bits
}

// plainInside reports whether s is inside a string, between characters,
// where every plain token is allowed.
func plainInside(s state) bool {
	f := s.top
	return f.k == kString && f.st == sBody && (f.isKey || f.n.maxLen < 0)
}

// walk sets the bits of the tokens of t that the current states allow:
// a depth-first walk in which a byte no state accepts skips its subtree.
func (m *Matcher) walk(t *flatTrie, bits []uint64) {
	if len(m.levels) < t.maxDepth+1 {
		m.levels = make([][]state, t.maxDepth+1)
	}
	levels := m.levels
	levels[0] = append(levels[0][:0], m.states...)
	for i := 0; i < len(t.label); {
		d := t.depth[i]
		next := stepAll(levels[d-1], t.label[i], levels[d][:0])
		levels[d] = next
		if len(next) == 0 {
			i = int(t.skip[i])
			continue
		}
		for _, id := range t.toks[t.off[i]:t.off[i+1]] {
			bits[id>>6] |= 1 << (id & 63)
		}
		i++
	}
}
