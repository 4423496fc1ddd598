package grammar

// The byte-level pushdown automaton. A state is the frame on top (a value)
// and the frames below it (a persistent linked list shared between states,
// so forking a state costs nothing and a rejected byte leaves no garbage to
// undo).

const (
	maxIndent  = 20 // spaces or tabs in a row between two symbols, on either side of a line break
	maxStates  = 32 // alternatives followed at once (anyOf)
	maxRefHops = 32 // $ref and anyOf levels entered for one value
	maxDigits  = 20 // digits of an integer part or a fraction
	maxExp     = 2  // digits of an exponent (1e99 still parses as float64)
)

const kRoot kind = 100 // the frame under the value: before it, or done

// Sub-states of the frames.
const (
	rBefore uint8 = iota // root: whitespace, then the value
	rDone                // root: the value is complete
)

const (
	oStart uint8 = iota // expect '{'
	oOpen               // after '{'
	oKey                // in a declared key (b: key trie node)
	oColon              // after a key
	oValue              // after ':'
	oAfter              // after a value
	oComma              // after ','
)

const (
	aStart uint8 = iota // expect '['
	aOpen               // after '['
	aAfter              // after an item
	aComma              // after ','
)

const (
	sStart uint8 = iota // expect '"'
	sBody               // characters
	sUTF                // inside a multi-byte character
	sEsc                // after '\'
	sHex                // in \uXXXX (b: digits read)
)

const (
	nStart uint8 = iota
	nMinus
	nZero // complete
	nInt  // complete
	nDot
	nFrac // complete
	nE
	nESign
	nExp // complete
)

// frame is one open value: its schema node, kind and progress.
type frame struct {
	n      *node
	k      kind
	st     uint8
	ws     uint8 // whitespace between two symbols: spaces and tabs in a row, and wsBreak once a line break came
	u      uint8 // sUTF: continuation bytes still expected; sHex: 1 after a leading 'd'
	lo, hi byte  // sUTF: the range of the next byte
	isKey  bool  // a string that is an object's (undeclared) key; n is the object
	// object: a = the next property index, c = the property whose value
	// comes next (-1: an undeclared one), b = key trie node.
	// array: a = items so far. string: a = characters so far, b = hex digits,
	// c = node of the object's key trie the key has followed, or -1.
	// number: a = digits of the current part. literal: a = trie node.
	a, b, c int32
}

type stack struct {
	f     frame
	next  *stack
	depth int32
}

type state struct {
	top  frame
	rest *stack
}

func (s state) depth() int32 {
	if s.rest == nil {
		return 0
	}
	return s.rest.depth
}

func (s state) pop() state { return state{top: s.rest.f, rest: s.rest.next} }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// wsBreak marks, in a frame's ws, that the whitespace between two symbols
// already holds its one line break.
const wsBreak uint8 = 0x80

// space handles whitespace for frames that allow it; it reports whether c
// was whitespace (and out has the state if it was allowed). Any other byte
// ends the run: the frame's count starts again. Between two symbols there
// may be up to maxIndent spaces or tabs, then one line break ("\n") and up
// to maxIndent more: room for any indentation style, but not for a model to
// fill its budget with blank lines. A carriage return is whitespace to JSON
// but never needed, so it is not allowed.
func space(s *state, c byte, out []state) ([]state, bool) {
	switch c {
	case ' ', '\t':
		if s.top.ws&^wsBreak >= maxIndent {
			return out, true
		}
		s.top.ws++
	case '\n':
		if s.top.ws&wsBreak != 0 {
			return out, true
		}
		s.top.ws = wsBreak
	case '\r':
		return out, true
	default:
		s.top.ws = 0
		return out, false
	}
	return append(out, *s), true
}

func initial(g *Grammar) state { return state{top: frame{k: kRoot, n: g.root}} }

// step feeds c to s and appends every state that results (none when c is
// not allowed).
func step(s state, c byte, out []state) []state {
	for {
		f := &s.top
		switch f.k {
		case kRoot:
			if f.st == rDone {
				return out
			}
			if out, ws := space(&s, c, out); ws {
				return out
			}
			f.st = rDone
			return enter(s, f.n, c, out, 0)

		case kObject:
			n := f.n
			switch f.st {
			case oStart:
				if c != '{' {
					return out
				}
				f.st = oOpen
				return append(out, s)
			case oOpen, oComma:
				if out, ws := space(&s, c, out); ws {
					return out
				}
				switch {
				case c == '"':
					return startKey(s, out)
				case c == '}' && f.st == oOpen && n.nextReq[f.a] == len(n.props):
					return append(out, s.pop())
				}
				return out
			case oKey:
				nx := n.keys.child(f.b, c)
				if nx < 0 || !n.keys.anyIn(nx, int(f.a), keyLimit(n, f.a)) {
					return out
				}
				f.b = nx
				if t := n.keys.nodes[nx].term; t >= 0 {
					f.st, f.c, f.a = oColon, t, t+1
				}
				return append(out, s)
			case oColon:
				if out, ws := space(&s, c, out); ws {
					return out
				}
				if c != ':' {
					return out
				}
				f.st = oValue
				return append(out, s)
			case oValue:
				if out, ws := space(&s, c, out); ws {
					return out
				}
				v := n.addl
				if f.c >= 0 {
					v = n.props[f.c].schema
				}
				f.st = oAfter
				return enter(s, v, c, out, 0)
			case oAfter:
				if out, ws := space(&s, c, out); ws {
					return out
				}
				switch c {
				case ',':
					if int(f.a) < len(n.props) || n.addl != nil {
						f.st = oComma
						return append(out, s)
					}
				case '}':
					if n.nextReq[f.a] == len(n.props) {
						return append(out, s.pop())
					}
				}
				return out
			}

		case kArray:
			n := f.n
			switch f.st {
			case aStart:
				if c != '[' {
					return out
				}
				f.st = aOpen
				return append(out, s)
			case aOpen, aComma:
				if out, ws := space(&s, c, out); ws {
					return out
				}
				if c == ']' && f.st == aOpen {
					if n.minItems == 0 {
						return append(out, s.pop())
					}
					return out
				}
				if n.maxItems >= 0 && int(f.a) >= n.maxItems {
					return out
				}
				f.st = aAfter
				f.a++
				return enter(s, n.items, c, out, 0)
			case aAfter:
				if out, ws := space(&s, c, out); ws {
					return out
				}
				switch c {
				case ',':
					if n.maxItems < 0 || int(f.a) < n.maxItems {
						f.st = aComma
						return append(out, s)
					}
				case ']':
					if int(f.a) >= n.minItems {
						return append(out, s.pop())
					}
				}
				return out
			}

		case kString:
			return stepString(s, c, out)

		case kNumber, kInteger:
			switch f.st {
			case nStart, nMinus:
				switch {
				case c == '-' && f.st == nStart:
					f.st = nMinus
				case c == '0':
					f.st = nZero
				case c >= '1' && c <= '9':
					f.st, f.a = nInt, 1
				default:
					return out
				}
				return append(out, s)
			case nZero, nInt, nFrac:
				switch {
				case isDigit(c) && f.st != nZero:
					if f.a >= maxDigits {
						return out
					}
					f.a++
					return append(out, s)
				case c == '.' && f.k == kNumber && f.st != nFrac:
					f.st = nDot
					return append(out, s)
				case (c == 'e' || c == 'E') && f.k == kNumber:
					f.st = nE
					return append(out, s)
				}
			case nDot:
				if !isDigit(c) {
					return out
				}
				f.st, f.a = nFrac, 1
				return append(out, s)
			case nE:
				if c == '+' || c == '-' {
					f.st = nESign
					return append(out, s)
				}
				fallthrough
			case nESign:
				if !isDigit(c) {
					return out
				}
				f.st, f.a = nExp, 1
				return append(out, s)
			case nExp:
				if isDigit(c) {
					if f.a >= maxExp {
						return out
					}
					f.a++
					return append(out, s)
				}
			}
			// A complete number ends at the first byte that cannot continue
			// it; that byte belongs to the frame below.
			s = s.pop()
			continue

		case kLiteral:
			t := f.n.lits
			if nx := t.child(f.a, c); nx >= 0 {
				f.a = nx
				return append(out, s)
			}
			if f.st == 1 && t.nodes[f.a].term >= 0 {
				s = s.pop()
				continue
			}
			return out
		}
		return out
	}
}

// keyLimit is the last property index whose key may come next: up to the
// first required property not yet written.
func keyLimit(n *node, a int32) int {
	r := n.nextReq[a]
	if r == len(n.props) {
		return r - 1
	}
	return r
}

// startKey handles the '"' that opens a key: a declared name (followed in
// the object's key trie) or, where other properties are allowed and no
// required one is left, any other name.
func startKey(s state, out []state) []state {
	f := s.top
	n := f.n
	if int(f.a) < len(n.props) && n.keys.anyIn(0, int(f.a), keyLimit(n, f.a)) {
		d := s
		d.top.st, d.top.b = oKey, 0
		out = append(out, d)
	}
	if n.addl != nil && n.nextReq[f.a] == len(n.props) && s.depth() < MaxNesting {
		parent := f
		parent.st, parent.c, parent.a = oColon, -1, int32(len(n.props))
		key := frame{n: n, k: kString, st: sBody, isKey: true, c: -1}
		if len(n.props) > 0 {
			key.c = 0
		}
		out = append(out, state{top: key, rest: &stack{f: parent, next: s.rest, depth: s.depth() + 1}})
	}
	return out
}

// canStart reports whether a value of n may begin with c, without looking
// through kRef and kAnyOf.
func canStart(n *node, c byte) bool {
	switch n.kind {
	case kAny:
		return c == '{' || c == '[' || c == '"' || c == '-' || isDigit(c) || jsonWords.child(0, c) >= 0
	case kObject:
		return c == '{'
	case kArray:
		return c == '['
	case kString:
		return c == '"'
	case kNumber, kInteger:
		return c == '-' || isDigit(c)
	case kLiteral:
		return n.lits.child(0, c) >= 0
	}
	return false
}

// enter starts a value of n whose first byte is c, on top of s (whose top
// frame is already in the state that follows the value).
func enter(s state, n *node, c byte, out []state, hops int) []state {
	if n.kind == kRef || n.kind == kAnyOf {
		var buf [8]*node
		seen := buf[:0]
		return enterAlts(s, n, c, out, hops, &seen)
	}
	return enterValue(s, n, c, out)
}

// enterAlts enters a $ref or anyOf node. Each of them is entered at most
// once per value (seen, shared by all branches), since entering it again from the same state gives
// the same states: schemas such as anyOf [{$ref: #}, {$ref: #}] would
// otherwise branch exponentially.
func enterAlts(s state, n *node, c byte, out []state, hops int, seen *[]*node) []state {
	switch n.kind {
	case kRef, kAnyOf:
		if hops >= maxRefHops || len(out) >= maxStates {
			return out
		}
		for _, v := range *seen {
			if v == n {
				return out
			}
		}
		*seen = append(*seen, n)
		if n.kind == kRef {
			return enterAlts(s, n.ref, c, out, hops+1, seen)
		}
		for _, a := range n.alts {
			out = enterAlts(s, a, c, out, hops+1, seen)
		}
		return out
	}
	return enterValue(s, n, c, out)
}

// enterValue starts a value of a concrete (not ref or anyOf) node.
func enterValue(s state, n *node, c byte, out []state) []state {
	if !canStart(n, c) || s.depth() >= MaxNesting {
		return out
	}
	var child frame
	switch n.kind {
	case kAny:
		switch {
		case c == '{':
			child = frame{n: anyObject, k: kObject}
		case c == '[':
			child = frame{n: anyArray, k: kArray}
		case c == '"':
			child = frame{n: anyString, k: kString, c: -1}
		case c == '-' || isDigit(c):
			child = frame{n: anyNumber, k: kNumber}
		default:
			child = frame{n: anyWord, k: kLiteral}
		}
	case kString:
		child = frame{n: n, k: kString, c: -1}
	default:
		child = frame{n: n, k: n.kind}
	}
	rest := &stack{f: s.top, next: s.rest, depth: s.depth() + 1}
	return stepStarted(state{top: child, rest: rest}, c, out)
}

// stepStarted feeds a fresh frame its first byte; literal frames mark that
// they have begun (st 1), so that an empty literal never ends.
func stepStarted(s state, c byte, out []state) []state {
	if s.top.k == kLiteral {
		s.top.st = 1
	}
	return step(s, c, out)
}

func stepString(s state, c byte, out []state) []state {
	f := &s.top
	n := f.n
	switch f.st {
	case sStart:
		if c != '"' {
			return out
		}
		f.st = sBody
		return append(out, s)
	case sBody:
		switch {
		case c == '"':
			if f.isKey {
				if f.c >= 0 {
					if nx := n.keys.child(f.c, '"'); nx >= 0 && n.keys.nodes[nx].term >= 0 {
						return out // a declared name, which has its own place
					}
				}
			} else if int(f.a) < n.minLen {
				return out
			}
			return append(out, s.pop())
		case c < 0x20:
			return out
		}
		if !f.isKey && n.maxLen >= 0 && int(f.a) >= n.maxLen {
			return out
		}
		switch {
		case c == '\\':
			if f.isKey && len(n.props) > 0 {
				return out // keys next to declared ones are written without escapes
			}
			f.st = sEsc
		case c < 0x80:
		case c >= 0xC2 && c <= 0xDF:
			f.st, f.u, f.lo, f.hi = sUTF, 1, 0x80, 0xBF
		case c == 0xE0:
			f.st, f.u, f.lo, f.hi = sUTF, 2, 0xA0, 0xBF
		case c == 0xED:
			f.st, f.u, f.lo, f.hi = sUTF, 2, 0x80, 0x9F
		case c >= 0xE1 && c <= 0xEF:
			f.st, f.u, f.lo, f.hi = sUTF, 2, 0x80, 0xBF
		case c == 0xF0:
			f.st, f.u, f.lo, f.hi = sUTF, 3, 0x90, 0xBF
		case c >= 0xF1 && c <= 0xF3:
			f.st, f.u, f.lo, f.hi = sUTF, 3, 0x80, 0xBF
		case c == 0xF4:
			f.st, f.u, f.lo, f.hi = sUTF, 3, 0x80, 0x8F
		default:
			return out
		}
		f.a++
		f.trackKey(c)
		return append(out, s)
	case sUTF:
		if c < f.lo || c > f.hi {
			return out
		}
		f.u--
		f.lo, f.hi = 0x80, 0xBF
		if f.u == 0 {
			f.st = sBody
		}
		f.trackKey(c)
		return append(out, s)
	case sEsc:
		switch c {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			f.st = sBody
		case 'u':
			f.st, f.b, f.u = sHex, 0, 0
		default:
			return out
		}
		return append(out, s)
	case sHex:
		var ok bool
		switch {
		case isDigit(c), c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
			ok = true
		}
		if !ok {
			return out
		}
		switch f.b {
		case 0:
			if c == 'd' || c == 'D' {
				f.u = 1
			}
		case 1:
			// \uD800 to \uDFFF are halves of surrogate pairs: refused, so
			// that every escape is a whole character (write the character
			// itself instead).
			if f.u == 1 && !(c >= '0' && c <= '7') {
				return out
			}
		}
		f.b++
		if f.b == 4 {
			f.st, f.u = sBody, 0
		}
		return append(out, s)
	}
	return out
}

// trackKey follows an undeclared key's bytes in the object's key trie, to
// refuse a key equal to a declared name at its closing quote.
func (f *frame) trackKey(c byte) {
	if f.isKey && f.c >= 0 {
		f.c = f.n.keys.child(f.c, c)
	}
}

// canEnd reports whether the output may end in state s: the value is
// complete (a number or literal at top level ends with the output).
func canEnd(s state) bool {
	for {
		f := s.top
		switch f.k {
		case kRoot:
			return f.st == rDone
		case kNumber, kInteger:
			if f.st != nZero && f.st != nInt && f.st != nFrac && f.st != nExp {
				return false
			}
		case kLiteral:
			if f.n.lits.nodes[f.a].term < 0 {
				return false
			}
		default:
			return false
		}
		s = s.pop()
	}
}

// stepAll feeds c to every state of in, appending the distinct results to
// out (at most maxStates).
func stepAll(in []state, c byte, out []state) []state {
	for _, s := range in {
		n0 := len(out)
		out = step(s, c, out)
		for j := n0; j < len(out); {
			dup := false
			for k := 0; k < j; k++ {
				if out[k] == out[j] {
					dup = true
					break
				}
			}
			if dup {
				out[j] = out[len(out)-1]
				out = out[:len(out)-1]
				continue
			}
			j++
		}
		if len(out) >= maxStates {
			return out[:maxStates]
		}
	}
	return out
}
