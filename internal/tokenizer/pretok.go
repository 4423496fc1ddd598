package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// preKind selects a hand-written splitter for the most used pre-tokenizers;
// preRegex runs a pre-tokenizer's steps one after the other.
type preKind uint8

const (
	// preRegex runs the steps of the pre-tokenizer.
	preRegex preKind = iota
	// preDefault is llama.cpp's LLAMA_VOCAB_PRE_TYPE_DEFAULT: runs of
	// punctuation split off, then GPT-2's rules, then numbers split off and
	// cut into groups of three ASCII digits.
	preDefault
	// preLlama3 is Llama 3's regex, with numbers of up to three digits.
	preLlama3
	// preQwen2 is Llama 3's regex with single-digit numbers.
	preQwen2
	// preGPT2 is GPT-2's regex.
	preGPT2
)

// preStep is one split of a pre-tokenizer: GPT-2's or Llama 3's rules
// (which llama.cpp runs as hand-written code too), or a regex.
type preStep struct {
	gpt2, llama3 bool
	re           *regex
	collapsed    bool // re runs on category stand-ins, not code points
}

// preTokenizer is one of llama.cpp's pre-tokenizer types.
type preTokenizer struct {
	name  string
	kind  preKind
	steps []preStep
	// ignoreMerges takes a word that is a token as a whole directly;
	// addBOS is the default of tokenizer.ggml.add_bos_token; noBOS drops
	// the BOS token (ChatGLM 4).
	ignoreMerges, addBOS, noBOS bool
}

// GPT-2's and Llama 3's patterns, which llama.cpp recognizes by their text
// and runs as hand-written code.
const (
	patGPT2   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
	patLlama3 = `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patQwen2  = `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patBloom  = ` ?[^(\s|.,!?…。，、।۔،)]+`
)

// preDefs lists llama.cpp's pre-tokenizer types: their tokenizer.ggml.pre
// names and their patterns, applied in order, each to every piece the
// previous one left.
var preDefs = []struct {
	names    []string
	kind     preKind
	patterns []string
	flags    string // "i" ignore merges, "b" add BOS, "n" no BOS
}{
	{[]string{"default"}, preDefault, []string{`[\p{P}\$\+<=>\^~\|]+`, patGPT2, `\p{N}+`, `[0-9][0-9][0-9]`}, ""},
	{[]string{"llama3", "llama-v3", "llama-bpe", "falcon3"}, preLlama3, []string{patLlama3}, "ib"},
	{[]string{"dbrx", "smaug-bpe"}, preLlama3, []string{patLlama3}, ""},
	{[]string{"chatglm-bpe"}, preLlama3, []string{patLlama3}, "n"},
	{[]string{"deepseek-llm"}, preRegex, []string{
		"[\r\n]",
		`\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+`,
		`\s?[!-/:-~！-／：-～‘-‟　-。]+`,
		`\s+$`,
		`[一-龥ࠀ-一가-퟿]+`,
		`\p{N}+`,
	}, ""},
	{[]string{"deepseek-v3"}, preRegex, []string{
		`\p{N}{1,3}`,
		`[一-龥぀-ゟ゠-ヿ]+`,
		"[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
	}, ""},
	{[]string{"deepseek-coder"}, preRegex, []string{"[\r\n]", `\s?\p{L}+`, `\s?\p{P}+`, `[一-龥ࠀ-一가-퟿]+`, `\p{N}`}, ""},
	{[]string{"falcon"}, preRegex, []string{"[\\p{P}\\$\\+<=>\\^~\\|`]+", patGPT2, `[0-9][0-9][0-9]`}, ""},
	{[]string{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"}, preRegex, []string{`\p{N}`, patGPT2}, ""},
	{[]string{"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en", "jina-v2-es", "jina-v2-de", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais"}, preGPT2, []string{patGPT2}, ""},
	{[]string{"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"}, preQwen2, []string{patQwen2}, ""},
	{[]string{"poro-chat", "bloom", "gpt3-finnish"}, preRegex, []string{patBloom}, ""},
	{[]string{"viking"}, preRegex, []string{patBloom, `\p{N}`}, ""},
	{[]string{"tekken"}, preRegex, []string{`[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`}, "ib"},
	{[]string{"chameleon"}, preRegex, []string{
		`<sentinel:[0-9]+>`,
		`(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z`,
		`([\t\n]|    |  )`,
		`\p{N}`,
		"[\\p{P}!-/:-@\\[-`{-~]",
		patGPT2,
	}, "b"},
}

// preKinds maps tokenizer.ggml.pre values to pre-tokenizers, following
// llama.cpp's names ("" is the default too, as for a file without the key).
var preKinds = func() map[string]*preTokenizer {
	m := make(map[string]*preTokenizer)
	for _, d := range preDefs {
		p := &preTokenizer{
			name: d.names[0], kind: d.kind,
			ignoreMerges: strings.Contains(d.flags, "i"),
			addBOS:       strings.Contains(d.flags, "b"),
			noBOS:        strings.Contains(d.flags, "n"),
		}
		for _, pat := range d.patterns {
			p.steps = append(p.steps, mustStep(pat))
		}
		for _, n := range d.names {
			m[n] = p
		}
	}
	m[""] = m["default"]
	return m
}()

// mustStep compiles one pattern; the patterns are constants, checked by the
// tests, so a failure is a bug in this file.
func mustStep(pat string) preStep {
	switch pat {
	case patGPT2:
		return preStep{gpt2: true}
	case patLlama3:
		return preStep{llama3: true}
	}
	units := []rune(pat)
	collapsed := usesCategories(pat)
	if collapsed {
		var err error
		if units, err = collapsePattern(pat); err != nil {
			panic(err)
		}
	}
	re, err := compileRegex(units)
	if err != nil {
		panic(err)
	}
	return preStep{re: re, collapsed: collapsed}
}

// Character classes of the pre-tokenizer rules.
const (
	fIn     uint8 = 1 << iota // a character (zero flags: outside the text)
	fLetter                   // \p{L}
	fNumber                   // \p{N}
	fSpace                    // \s (Unicode White_Space)
	fPunct                    // \p{P} or one of $+<=>^~| (the default pre-tokenizer's first split)
)

var asciiFlags = func() [128]uint8 {
	var t [128]uint8
	for c := range 128 {
		t[c] = slowFlags(rune(c))
	}
	return t
}()

func slowFlags(r rune) uint8 {
	f := fIn
	switch {
	case isLetter(r):
		f |= fLetter
	case unicode.IsNumber(r):
		f |= fNumber
	case unicode.IsSpace(r):
		f |= fSpace
	}
	if unicode.IsPunct(r) {
		f |= fPunct
	}
	switch r {
	case '$', '+', '<', '=', '>', '^', '~', '|':
		f |= fPunct
	}
	return f
}

func cptFlags(r rune) uint8 {
	if r >= 0 && r < 128 {
		return asciiFlags[r]
	}
	return slowFlags(r)
}

// decodeCpt decodes the code point at s[i], as llama.cpp's
// unicode_cpt_from_utf8: it checks the lead byte and that enough
// continuation bytes follow, but accepts overlong forms and surrogates. An
// invalid byte gives U+FFFD and a length of 1. Code points above U+10FFFF,
// on which llama.cpp fails, are treated as invalid too.
func decodeCpt(s string, i int) (rune, int) {
	b := s[i]
	cont := func(k int) bool { return i+k < len(s) && s[i+k]&0xC0 == 0x80 }
	switch {
	case b < 0x80:
		return rune(b), 1
	case b&0x40 == 0:
	case b&0x20 == 0:
		if cont(1) {
			return rune(b&0x1F)<<6 | rune(s[i+1]&0x3F), 2
		}
	case b&0x10 == 0:
		if cont(1) && cont(2) {
			return rune(b&0x0F)<<12 | rune(s[i+1]&0x3F)<<6 | rune(s[i+2]&0x3F), 3
		}
	case b&0x08 == 0:
		if cont(1) && cont(2) && cont(3) {
			r := rune(b&0x07)<<18 | rune(s[i+1]&0x3F)<<12 | rune(s[i+2]&0x3F)<<6 | rune(s[i+3]&0x3F)
			if r <= unicode.MaxRune {
				return r, 4
			}
		}
	}
	return utf8.RuneError, 1
}

// appendCpt appends the UTF-8 form of r, without Go's refusal of
// surrogates (llama.cpp's unicode_cpt_to_utf8).
func appendCpt(b []byte, r rune) []byte {
	switch {
	case r < 0x80:
		return append(b, byte(r))
	case r < 0x800:
		return append(b, 0xC0|byte(r>>6), 0x80|byte(r)&0x3F)
	case r < 0x10000:
		return append(b, 0xE0|byte(r>>12), 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F)
	}
	return append(b, 0xF0|byte(r>>18), 0x80|byte(r>>12)&0x3F, 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F)
}

// preSession holds buffers reused by pretokenize.
type preSession struct {
	cpts  []rune
	flags []uint8
	offs  []int // byte offset of each code point in the text, and the end
	lens  []int // piece lengths in code points
	tmp   []int
	words []span
	clean []byte
	// units of the code points for regex steps: category stand-ins, and
	// code points with non-ASCII white space as \v
	collapsed, wide []rune
}

// span is a word's byte range in the text.
type span struct{ start, end int }

// pretokenize splits raw text into words as llama.cpp's unicode_regex_split
// does with the vocabulary's rules. The text is first decoded into code
// points; when it is not valid UTF-8 it is rebuilt from them (each invalid
// byte becoming U+FFFD), and the words index that rebuilt text, which is
// returned.
func (t *Tokenizer) pretokenize(text string, ps *preSession) (string, []span) {
	cpts, offs := ps.cpts[:0], ps.offs[:0]
	clean := ps.clean[:0]
	rebuilt := false
	for i := 0; i < len(text); {
		r, n := decodeCpt(text, i)
		if !rebuilt && (r == utf8.RuneError && n == 1 || n > 1 && utf8.RuneLen(r) != n) {
			// Invalid or overlong: from here on the text is rebuilt.
			rebuilt = true
			clean = append(clean, text[:i]...)
		}
		if rebuilt {
			offs = append(offs, len(clean))
			clean = appendCpt(clean, r)
		} else {
			offs = append(offs, i)
		}
		cpts = append(cpts, r)
		i += n
	}
	if rebuilt {
		offs = append(offs, len(clean))
		text = string(clean)
	} else {
		offs = append(offs, len(text))
	}
	flags := ps.flags[:0]
	for _, r := range cpts {
		flags = append(flags, cptFlags(r))
	}

	lens := append(ps.lens[:0], len(cpts))
	tmp := ps.tmp[:0]
	switch t.pre.kind {
	case preLlama3:
		lens, tmp = splitLlama3(cpts, flags, lens, tmp, 3), lens
	case preQwen2:
		lens, tmp = splitLlama3(cpts, flags, lens, tmp, 1), lens
	case preGPT2:
		lens, tmp = splitGPT2(cpts, flags, lens, tmp), lens
	case preDefault:
		lens, tmp = splitPunct(flags, lens, tmp), lens
		lens, tmp = splitGPT2(cpts, flags, lens, tmp[:0]), lens
		lens, tmp = splitNumbers(flags, lens, tmp[:0]), lens
		lens, tmp = splitDigits3(cpts, lens, tmp[:0]), lens
	default:
		lens, tmp = t.pre.runSteps(cpts, flags, lens, tmp, ps)
	}

	words := ps.words[:0]
	pos := 0
	for _, n := range lens {
		if n > 0 {
			words = append(words, span{offs[pos], offs[pos+n]})
		}
		pos += n
	}
	ps.cpts, ps.flags, ps.offs, ps.lens, ps.tmp, ps.words, ps.clean = cpts, flags, offs, lens, tmp, words, clean
	return text, words
}

// runSteps applies every step of p in order; it returns the final piece
// lengths and the spare buffer.
func (p *preTokenizer) runSteps(cpts []rune, flags []uint8, lens, tmp []int, ps *preSession) ([]int, []int) {
	haveWide, haveCollapsed := false, false
	for _, st := range p.steps {
		switch {
		case st.gpt2:
			lens, tmp = splitGPT2(cpts, flags, lens, tmp[:0]), lens
		case st.llama3:
			lens, tmp = splitLlama3(cpts, flags, lens, tmp[:0], 3), lens
		case st.collapsed:
			if !haveCollapsed {
				ps.collapsed = ps.collapsed[:0]
				for _, r := range cpts {
					ps.collapsed = append(ps.collapsed, collapseUnit(r))
				}
				haveCollapsed = true
			}
			lens, tmp = st.re.split(ps.collapsed, lens, tmp[:0]), lens
		default:
			if !haveWide {
				ps.wide = ps.wide[:0]
				for _, r := range cpts {
					ps.wide = append(ps.wide, wideUnit(r))
				}
				haveWide = true
			}
			lens, tmp = st.re.split(ps.wide, lens, tmp[:0]), lens
		}
	}
	return lens, tmp
}

// cursor reads one piece [lo, hi) of the code points: outside it, at gives
// -1 and flags 0, so rules never look across piece boundaries.
type cursor struct {
	cpts   []rune
	flags  []uint8
	lo, hi int
}

func (c *cursor) at(i int) rune {
	if i < c.lo || i >= c.hi {
		return -1
	}
	return c.cpts[i]
}

func (c *cursor) fl(i int) uint8 {
	if i < c.lo || i >= c.hi {
		return 0
	}
	return c.flags[i]
}

// other reports a character that is not a letter, number or space (and is
// inside the piece): [^\s\p{L}\p{N}].
func other(f uint8) bool { return f&fIn != 0 && f&(fLetter|fNumber|fSpace) == 0 }

func lowerASCII(r rune) rune {
	if r >= 'A' && r <= 'Z' {
		return r + 'a' - 'A'
	}
	return r
}

// contraction returns the length of an English contraction ('s 't 're 've
// 'm 'll 'd) at i, 0 if none; fold makes it case-insensitive.
func (c *cursor) contraction(i int, fold bool) int {
	if c.at(i) != '\'' || i+1 >= c.hi {
		return 0
	}
	low := func(r rune) rune {
		if fold {
			return lowerASCII(r)
		}
		return r
	}
	switch low(c.at(i + 1)) {
	case 's', 't', 'm', 'd':
		return 2
	}
	if i+2 >= c.hi {
		return 0
	}
	a, b := low(c.at(i+1)), low(c.at(i+2))
	if (a == 'r' || a == 'v') && b == 'e' || a == 'l' && b == 'l' {
		return 3
	}
	return 0
}

// spaceRun measures the white space starting at i: its length, and the end of
// its last \r or \n (-1 if none).
func (c *cursor) spaceRun(i int) (n, lastNL int) {
	lastNL = -1
	for c.fl(i+n)&fSpace != 0 {
		if r := c.at(i + n); r == '\r' || r == '\n' {
			lastNL = i + n + 1
		}
		n++
	}
	return n, lastNL
}

// splitLlama3 splits each piece by Llama 3's regex
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//	 ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// with maxDigits in place of 3, taking at each position the first
// alternative that matches.
func splitLlama3(cpts []rune, flags []uint8, lens, out []int, maxDigits int) []int {
	c := cursor{cpts: cpts, flags: flags}
	for _, n := range lens {
		c.lo, c.hi = c.hi, c.hi+n
		for pos := c.lo; pos < c.hi; {
			end := pos + 1 // a lone character when nothing matches
			r, f := c.at(pos), c.fl(pos)
			switch {
			case c.contraction(pos, true) > 0:
				end = pos + c.contraction(pos, true)
			case r != '\r' && r != '\n' && f&fNumber == 0 && (f&fLetter != 0 || c.fl(pos+1)&fLetter != 0):
				end = pos + 1
				for c.fl(end)&fLetter != 0 {
					end++
				}
			case f&fNumber != 0:
				end = pos + 1
				for end-pos < maxDigits && c.fl(end)&fNumber != 0 {
					end++
				}
			case other(f) || r == ' ' && other(c.fl(pos+1)):
				end = pos
				if r == ' ' {
					end++
				}
				for other(c.fl(end)) {
					end++
				}
				for c.at(end) == '\r' || c.at(end) == '\n' {
					end++
				}
			default:
				ns, lastNL := c.spaceRun(pos)
				switch {
				case lastNL >= 0:
					end = lastNL
				case ns > 1 && pos+ns < c.hi:
					end = pos + ns - 1
				case ns > 0:
					end = pos + ns
				}
			}
			out = append(out, end-pos)
			pos = end
		}
	}
	return out
}

// splitGPT2 splits each piece by GPT-2's regex
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
func splitGPT2(cpts []rune, flags []uint8, lens, out []int) []int {
	c := cursor{cpts: cpts, flags: flags}
	for _, n := range lens {
		c.lo, c.hi = c.hi, c.hi+n
		for pos := c.lo; pos < c.hi; {
			end := pos + 1
			r := c.at(pos)
			f2, first := c.fl(pos), pos
			if r == ' ' {
				f2, first = c.fl(pos+1), pos+1
			}
			run := func(ok func(uint8) bool) int {
				e := first
				for ok(c.fl(e)) {
					e++
				}
				return e
			}
			switch {
			case c.contraction(pos, false) > 0:
				end = pos + c.contraction(pos, false)
			case f2&fLetter != 0:
				end = run(func(f uint8) bool { return f&fLetter != 0 })
			case f2&fNumber != 0:
				end = run(func(f uint8) bool { return f&fNumber != 0 })
			case other(f2):
				end = run(other)
			default:
				ns, _ := c.spaceRun(pos)
				switch {
				case ns > 1 && pos+ns < c.hi:
					end = pos + ns - 1
				case ns > 0:
					end = pos + ns
				}
			}
			out = append(out, end-pos)
			pos = end
		}
	}
	return out
}

// splitPunct is the default pre-tokenizer's first step, the regex
// [\p{P}\$\+<=>\^~\|]+: each run of such characters becomes a piece, and
// the runs between them pieces too.
func splitPunct(flags []uint8, lens, out []int) []int {
	return splitRuns(lens, out, func(i int) bool { return flags[i]&fPunct != 0 }, 0)
}

// splitNumbers is the default pre-tokenizer's third step, \p{N}+: runs of
// numbers and runs of other characters become separate pieces.
func splitNumbers(flags []uint8, lens, out []int) []int {
	return splitRuns(lens, out, func(i int) bool { return flags[i]&fNumber != 0 }, 0)
}

// splitRuns cuts each piece into maximal runs of characters that match and
// that do not; with limit > 0 a matching run is cut into runs of at most
// limit characters.
func splitRuns(lens, out []int, match func(int) bool, limit int) []int {
	start := 0
	for _, n := range lens {
		lo, hi := start, start+n
		start = hi
		for pos := lo; pos < hi; {
			m := match(pos)
			end := pos + 1
			for end < hi && match(end) == m && (!m || limit == 0 || end-pos < limit) {
				end++
			}
			out = append(out, end-pos)
			pos = end
		}
	}
	return out
}

// splitDigits3 is the default pre-tokenizer's last step, [0-9][0-9][0-9]:
// each group of three ASCII digits, found left to right, becomes a piece, and
// the text between groups pieces too.
func splitDigits3(cpts []rune, lens, out []int) []int {
	digit := func(i int) bool { return cpts[i] >= '0' && cpts[i] <= '9' }
	start := 0
	for _, n := range lens {
		lo, hi := start, start+n
		start = hi
		prev := lo
		for pos := lo; pos+3 <= hi; {
			if digit(pos) && digit(pos+1) && digit(pos+2) {
				if pos > prev {
					out = append(out, pos-prev)
				}
				out = append(out, 3)
				pos += 3
				prev = pos
				continue
			}
			pos++
		}
		if hi > prev {
			out = append(out, hi-prev)
		}
	}
	return out
}
