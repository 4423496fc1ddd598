package tokenizer

import (
	"fmt"
	"unicode"
)

// This file holds a small backtracking regular-expression engine with the
// semantics of ECMAScript regexes as C++'s std::regex runs them: ordered
// alternation (the first alternative that lets the whole pattern match
// wins), greedy quantifiers that give back on failure, and lookahead. llama.cpp
// splits text with std::regex for most pre-tokenizers, after mapping every
// non-ASCII character to a stand-in (its Unicode category, or a space for
// white space); running the same patterns over the same stand-ins reproduces
// its splits exactly, quirks included.
//
// The engine works on units (runes). It supports literals, classes with
// ranges and \s \S \d \w, groups ((…), (?:…)), lookahead ((?=…), (?!…)),
// the quantifiers ? * + {n} {n,} {n,m}, alternation and the anchors ^ and
// $ (at the start and end of the piece being split).

type reOp uint8

const (
	reLit reOp = iota
	reClass
	reCat
	reAlt
	reRep
	reLook
	reBegin
	reEnd
)

type reNode struct {
	op       reOp
	r        rune
	cls      *reCharClass
	subs     []*reNode
	min, max int  // reRep: max < 0 is unbounded
	neg      bool // reLook: negative lookahead
	// unit, when not nil, says the node always consumes exactly one unit
	// and accepts it when unit returns true (no backtracking inside).
	unit func(rune) bool
}

type reCharClass struct {
	ascii          [2]uint64 // membership of units below 0x80, precomputed
	neg            bool
	ranges         []rune // pairs lo, hi
	space, nospace bool   // \s and \S inside the class
	digit, word    bool   // \d and \w inside the class
}

// isSpaceUnit is std::regex's \s in the C locale: ASCII white space only
// (llama.cpp maps other white space to \v before matching).
func isSpaceUnit(r rune) bool { return r == ' ' || r >= '\t' && r <= '\r' }

func isWordUnit(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_'
}

// has reports whether unit u is in the class.
func (c *reCharClass) has(u rune) bool {
	if u >= 0 && u < 0x80 {
		return c.ascii[u>>6]&(1<<(u&63)) != 0
	}
	return c.slowHas(u)
}

func (c *reCharClass) slowHas(u rune) bool {
	in := c.space && isSpaceUnit(u) || c.nospace && !isSpaceUnit(u) ||
		c.digit && u >= '0' && u <= '9' || c.word && isWordUnit(u)
	for i := 0; !in && i+1 < len(c.ranges); i += 2 {
		in = u >= c.ranges[i] && u <= c.ranges[i+1]
	}
	return in != c.neg
}

// regex is a compiled pattern.
type regex struct {
	src  string
	root *reNode
}

// compileRegex parses pattern (as runes, so that stand-in units above 0x7F
// can appear in it). It fails on syntax it does not know.
func compileRegex(pattern []rune) (*regex, error) {
	p := reParser{p: pattern}
	root, err := p.alt()
	if err == nil && p.i < len(p.p) {
		err = p.errorf("unexpected %q", p.p[p.i])
	}
	if err != nil {
		return nil, err
	}
	return &regex{src: string(pattern), root: root}, nil
}

type reParser struct {
	p []rune
	i int
}

func (p *reParser) errorf(format string, args ...any) error {
	return fmt.Errorf("regex %q at %d: %s", string(p.p), p.i, fmt.Sprintf(format, args...))
}

func (p *reParser) more() bool { return p.i < len(p.p) }

func (p *reParser) peek(r rune) bool { return p.i < len(p.p) && p.p[p.i] == r }

func (p *reParser) alt() (*reNode, error) {
	var subs []*reNode
	for {
		n, err := p.cat()
		if err != nil {
			return nil, err
		}
		subs = append(subs, n)
		if !p.peek('|') {
			break
		}
		p.i++
	}
	if len(subs) == 1 {
		return subs[0], nil
	}
	n := &reNode{op: reAlt, subs: subs}
	n.unit = func(r rune) bool { return false }
	for _, s := range subs {
		if s.unit == nil {
			n.unit = nil
			break
		}
	}
	if n.unit != nil {
		// Alternatives that all take one unit: any of them will do.
		n.unit = func(r rune) bool {
			for _, s := range subs {
				if s.unit(r) {
					return true
				}
			}
			return false
		}
	}
	return n, nil
}

func (p *reParser) cat() (*reNode, error) {
	var subs []*reNode
	for p.more() && !p.peek('|') && !p.peek(')') {
		a, err := p.atom()
		if err != nil {
			return nil, err
		}
		if a, err = p.quantifier(a); err != nil {
			return nil, err
		}
		subs = append(subs, a)
	}
	if len(subs) == 1 {
		return subs[0], nil
	}
	n := &reNode{op: reCat, subs: subs}
	// Lookaheads on single units followed by one single unit test that unit.
	var preds []func(rune) bool
	consuming := 0
	for _, s := range subs {
		switch {
		case consuming > 0:
			consuming = -1 // something after the consuming unit
		case s.op == reLook && s.subs[0].unit != nil:
			f := s.subs[0].unit
			if s.neg {
				preds = append(preds, func(r rune) bool { return !f(r) })
			} else {
				preds = append(preds, f)
			}
		case s.unit != nil:
			preds = append(preds, s.unit)
			consuming++
		default:
			consuming = -1
		}
		if consuming < 0 {
			break
		}
	}
	if consuming == 1 {
		n.unit = func(r rune) bool {
			for _, f := range preds {
				if !f(r) {
					return false
				}
			}
			return true
		}
	}
	return n, nil
}

func (p *reParser) atom() (*reNode, error) {
	c := p.p[p.i]
	p.i++
	switch c {
	case '(':
		look, neg := false, false
		if p.peek('?') {
			if p.i+1 >= len(p.p) {
				return nil, p.errorf("unfinished group")
			}
			switch p.p[p.i+1] {
			case ':':
			case '=':
				look = true
			case '!':
				look, neg = true, true
			default:
				return nil, p.errorf("unsupported group (?%c", p.p[p.i+1])
			}
			p.i += 2
		}
		n, err := p.alt()
		if err != nil {
			return nil, err
		}
		if !p.peek(')') {
			return nil, p.errorf("missing )")
		}
		p.i++
		if look {
			return &reNode{op: reLook, subs: []*reNode{n}, neg: neg}, nil
		}
		return n, nil
	case '[':
		return p.class()
	case '\\':
		cls, r, err := p.escape()
		if err != nil {
			return nil, err
		}
		if cls != nil {
			return classNode(cls), nil
		}
		return litNode(r), nil
	case '$':
		return &reNode{op: reEnd}, nil
	case '^':
		return &reNode{op: reBegin}, nil
	case '.':
		return classNode(&reCharClass{neg: true, ranges: []rune{'\n', '\n', '\r', '\r', 0x2028, 0x2029}}), nil
	case ')', '*', '+', '?', '{', '|':
		p.i--
		return nil, p.errorf("unexpected %q", c)
	}
	return litNode(c), nil
}

func litNode(r rune) *reNode {
	return &reNode{op: reLit, r: r, unit: func(u rune) bool { return u == r }}
}

func classNode(c *reCharClass) *reNode {
	for u := range rune(0x80) {
		if c.slowHas(u) {
			c.ascii[u>>6] |= 1 << (u & 63)
		}
	}
	return &reNode{op: reClass, cls: c, unit: c.has}
}

// escape reads what follows a backslash: a class escape or a literal.
func (p *reParser) escape() (*reCharClass, rune, error) {
	if !p.more() {
		return nil, 0, p.errorf("trailing backslash")
	}
	c := p.p[p.i]
	p.i++
	switch c {
	case 's':
		return &reCharClass{space: true}, 0, nil
	case 'S':
		return &reCharClass{nospace: true}, 0, nil
	case 'd':
		return &reCharClass{digit: true}, 0, nil
	case 'D':
		return &reCharClass{digit: true, neg: true}, 0, nil
	case 'w':
		return &reCharClass{word: true}, 0, nil
	case 'W':
		return &reCharClass{word: true, neg: true}, 0, nil
	case 'r':
		return nil, '\r', nil
	case 'n':
		return nil, '\n', nil
	case 't':
		return nil, '\t', nil
	case 'f':
		return nil, '\f', nil
	case 'v':
		return nil, '\v', nil
	case '0':
		return nil, 0, nil
	case 'p', 'P', 'x', 'u', 'b', 'B', 'c', 'k':
		return nil, 0, p.errorf("unsupported escape \\%c", c)
	}
	return nil, c, nil
}

func (p *reParser) class() (*reNode, error) {
	cls := &reCharClass{}
	if p.peek('^') {
		cls.neg = true
		p.i++
	}
	// item reads one class member: a rune, or a class escape merged in.
	item := func() (rune, bool, error) {
		c := p.p[p.i]
		p.i++
		if c != '\\' {
			return c, true, nil
		}
		sub, r, err := p.escape()
		if err != nil {
			return 0, false, err
		}
		if sub != nil {
			if sub.neg {
				return 0, false, p.errorf("negated class escape inside a class")
			}
			cls.space = cls.space || sub.space
			cls.nospace = cls.nospace || sub.nospace
			cls.digit = cls.digit || sub.digit
			cls.word = cls.word || sub.word
			return 0, false, nil
		}
		return r, true, nil
	}
	for {
		if !p.more() {
			return nil, p.errorf("missing ]")
		}
		if p.peek(']') {
			p.i++
			return classNode(cls), nil
		}
		lo, ok, err := item()
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		hi := lo
		if p.peek('-') && p.i+1 < len(p.p) && p.p[p.i+1] != ']' {
			p.i++
			if hi, ok, err = item(); err != nil {
				return nil, err
			}
			if !ok || hi < lo {
				return nil, p.errorf("bad range")
			}
		}
		cls.ranges = append(cls.ranges, lo, hi)
	}
}

func (p *reParser) quantifier(a *reNode) (*reNode, error) {
	if !p.more() {
		return a, nil
	}
	lo, hi := 0, 0
	switch p.p[p.i] {
	case '?':
		lo, hi = 0, 1
	case '*':
		lo, hi = 0, -1
	case '+':
		lo, hi = 1, -1
	case '{':
		j := p.i + 1
		num := func() (int, bool) {
			n, start := 0, j
			for j < len(p.p) && p.p[j] >= '0' && p.p[j] <= '9' && n < 1<<20 {
				n = n*10 + int(p.p[j]-'0')
				j++
			}
			return n, j > start
		}
		var ok bool
		if lo, ok = num(); !ok {
			return nil, p.errorf("bad repeat")
		}
		hi = lo
		if j < len(p.p) && p.p[j] == ',' {
			j++
			if j < len(p.p) && p.p[j] == '}' {
				hi = -1
			} else if hi, ok = num(); !ok || hi < lo {
				return nil, p.errorf("bad repeat")
			}
		}
		if j >= len(p.p) || p.p[j] != '}' {
			return nil, p.errorf("bad repeat")
		}
		p.i = j
	default:
		return a, nil
	}
	p.i++
	if p.peek('?') || p.peek('+') {
		return nil, p.errorf("lazy and possessive quantifiers are not supported")
	}
	if a.op == reLook || a.op == reBegin || a.op == reEnd {
		return nil, p.errorf("quantified assertion")
	}
	return &reNode{op: reRep, subs: []*reNode{a}, min: lo, max: hi}, nil
}

// reMatcher runs a pattern on units[lo:hi].
type reMatcher struct {
	u      []rune
	lo, hi int
}

// match reports whether n matches at pos and k accepts where it ends,
// trying n's ways of matching in the regex's order of preference.
func (m *reMatcher) match(n *reNode, pos int, k func(int) bool) bool {
	if n.unit != nil {
		return pos < m.hi && n.unit(m.u[pos]) && k(pos+1)
	}
	switch n.op {
	case reCat:
		return m.cat(n.subs, pos, k)
	case reAlt:
		for _, s := range n.subs {
			if m.match(s, pos, k) {
				return true
			}
		}
		return false
	case reRep:
		if f := n.subs[0].unit; f != nil {
			// One unit per iteration: count greedily, then give back.
			c := 0
			for pos+c < m.hi && (n.max < 0 || c < n.max) && f(m.u[pos+c]) {
				c++
			}
			for ; c >= n.min; c-- {
				if k(pos + c) {
					return true
				}
			}
			return false
		}
		return m.rep(n, 0, pos, k)
	case reLook:
		ok := m.match(n.subs[0], pos, func(int) bool { return true })
		return ok != n.neg && k(pos)
	case reBegin:
		return pos == m.lo && k(pos)
	case reEnd:
		return pos == m.hi && k(pos)
	}
	return false
}

func (m *reMatcher) cat(subs []*reNode, pos int, k func(int) bool) bool {
	if len(subs) == 0 {
		return k(pos)
	}
	return m.match(subs[0], pos, func(e int) bool { return m.cat(subs[1:], e, k) })
}

// rep matches the repetition n after count iterations: greedily one more,
// else stop if count is enough. An iteration that matches nothing ends the
// loop, as in ECMAScript.
func (m *reMatcher) rep(n *reNode, count, pos int, k func(int) bool) bool {
	if n.max < 0 || count < n.max {
		more := m.match(n.subs[0], pos, func(e int) bool {
			return e != pos && m.rep(n, count+1, e, k)
		})
		if more {
			return true
		}
	}
	return count >= n.min && k(pos)
}

// split cuts each piece (lens, in units) as llama.cpp's regex split does:
// every leftmost match becomes a piece, and so does the text between
// matches. None of the pre-tokenizer patterns can match empty text; an empty
// match is ignored.
func (re *regex) split(units []rune, lens, out []int) []int {
	m := reMatcher{u: units}
	start := 0
	for _, n := range lens {
		m.lo, m.hi = start, start+n
		start = m.hi
		cur := m.lo
		for s := m.lo; s < m.hi; {
			end := -1
			if m.match(re.root, s, func(e int) bool { end = e; return true }) && end > s {
				if s > cur {
					out = append(out, s-cur)
				}
				out = append(out, end-s)
				cur, s = end, end
				continue
			}
			s++
		}
		if m.hi > cur {
			out = append(out, m.hi-cur)
		}
	}
	return out
}

// Stand-in units for non-ASCII characters in patterns that name Unicode
// categories, as llama.cpp collapses them: one byte value per category.
const (
	unitOther  rune = 0xD0
	unitNumber rune = 0xD1
	unitLetter rune = 0xD2
	unitPunct  rune = 0xD3
	unitMark   rune = 0xD4
	unitSymbol rune = 0xD5
)

// catClasses gives, for each \p{X} llama.cpp knows, its stand-in unit and
// the ASCII characters of that category, written as class members.
var catClasses = map[string]string{
	`\p{N}`: string(unitNumber) + `0-9`,
	`\p{L}`: string(unitLetter) + `A-Za-z`,
	`\p{P}`: string(unitPunct) + `!-#%-*,-/:-;?-@\[-\]_\{\}`,
	`\p{M}`: string(unitMark),
	`\p{S}`: string(unitSymbol) + `\$\+<->^` + "`" + `\|`,
}

// usesCategories reports whether pattern names a Unicode category; such a
// pattern runs on collapsed units, the others on code points.
func usesCategories(pattern string) bool {
	for i := 0; i+4 < len(pattern); i++ {
		if pattern[i] == '\\' && pattern[i+1] == 'p' && pattern[i+2] == '{' && pattern[i+4] == '}' {
			if _, ok := catClasses[pattern[i:i+5]]; ok {
				return true
			}
		}
	}
	return false
}

// collapsePattern rewrites each \p{X} of an ASCII pattern into a class of
// its stand-in unit and its ASCII members (the bracketed members alone
// inside a class), as llama.cpp does before handing the pattern to
// std::regex. A '[' or ']' right after a backslash does not open or close a
// class.
func collapsePattern(pattern string) ([]rune, error) {
	var out []rune
	inside := false
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if c >= 0x80 {
			return nil, fmt.Errorf("regex %q: Unicode categories with non-ASCII text are not supported", pattern)
		}
		switch {
		case c == '[' && (i == 0 || pattern[i-1] != '\\'):
			inside = true
		case c == ']' && inside && pattern[i-1] != '\\':
			inside = false
		case c == '\\' && i+4 < len(pattern) && pattern[i+1] == 'p' && pattern[i+2] == '{' && pattern[i+4] == '}':
			if members, ok := catClasses[pattern[i:i+5]]; ok {
				if !inside {
					out = append(out, '[')
				}
				out = append(out, []rune(members)...)
				if !inside {
					out = append(out, ']')
				}
				i += 4
				continue
			}
		}
		out = append(out, rune(c))
	}
	return out, nil
}

// collapseUnit is the stand-in of code point r in collapsed text: ASCII as
// itself, white space as \v, others by their Unicode category.
func collapseUnit(r rune) rune {
	if r < 0x80 {
		return r
	}
	switch {
	case unicode.IsSpace(r):
		return '\v'
	case isLetter(r):
		return unitLetter
	case unicode.IsNumber(r):
		return unitNumber
	case unicode.IsPunct(r):
		return unitPunct
	case unicode.IsMark(r):
		return unitMark
	case isSymbol(r):
		return unitSymbol
	}
	return unitOther
}

// wideUnit is the unit of code point r for patterns without categories:
// r itself, except that non-ASCII white space becomes \v (std::regex's \s
// knows ASCII white space only).
func wideUnit(r rune) rune {
	if r >= 0x80 && unicode.IsSpace(r) {
		return '\v'
	}
	return r
}
