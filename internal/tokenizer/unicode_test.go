package tokenizer

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestUnicode151 checks the code points Unicode 15.1 added, which Go's
// tables do not know yet: the pre-tokenizers class them as llama.cpp does.
func TestUnicode151(t *testing.T) {
	for _, r := range []rune{0x2EBF0, 0x2ED00, 0x2EE5D} {
		assert.Equal(t, unitLetter, collapseUnit(r), "%U", r)
		assert.NotZero(t, slowFlags(r)&fLetter, "%U", r)
	}
	for _, r := range []rune{0x2FFC, 0x2FFF, 0x31EF} {
		assert.Equal(t, unitSymbol, collapseUnit(r), "%U", r)
	}
	for _, r := range []rune{0x2EBEF, 0x2EE5E, 0x2FFB + 0x10000} {
		assert.False(t, isLetter(r), "%U", r)
	}
	assert.True(t, isLetter('a'))
	assert.True(t, isSymbol('+'))
	assert.False(t, isSymbol(0x31F0))
}
