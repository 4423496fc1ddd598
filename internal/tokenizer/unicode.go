package tokenizer

import "unicode"

// Go's unicode tables are Unicode 15.0; llama.cpp classifies code points by
// Unicode 15.1, which added 627 assigned code points: CJK Unified Ideographs
// Extension I (letters) and six symbols (four ideographic description
// characters and a CJK stroke). Without them a text holding one of these
// code points splits differently from llama.cpp's. isLetter and isSymbol are
// unicode.IsLetter and unicode.IsSymbol with those additions.
var (
	unicode151Letters = &unicode.RangeTable{R32: []unicode.Range32{{Lo: 0x2EBF0, Hi: 0x2EE5D, Stride: 1}}}
	unicode151Symbols = &unicode.RangeTable{R16: []unicode.Range16{
		{Lo: 0x2FFC, Hi: 0x2FFF, Stride: 1},
		{Lo: 0x31EF, Hi: 0x31EF, Stride: 1},
	}}
)

func isLetter(r rune) bool {
	return unicode.IsLetter(r) || r >= 0x2EBF0 && unicode.Is(unicode151Letters, r)
}

func isSymbol(r rune) bool {
	return unicode.IsSymbol(r) || r >= 0x2FFC && unicode.Is(unicode151Symbols, r)
}
