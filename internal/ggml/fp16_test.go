package ggml

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestF16RoundTripsEveryValue(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := F16ToF32(h)
		if f != f { // NaN: payload may be quieted, but must stay NaN
			assert.True(t, F16ToF32(F32ToF16(f)) != F16ToF32(F32ToF16(f)), "NaN %#04x", h)
			continue
		}
		if got := F32ToF16(f); got != h {
			t.Fatalf("F32ToF16(F16ToF32(%#04x) = %g) = %#04x", h, f, got)
		}
	}
}

func TestF32ToF16Rounding(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3c00},
		{-2, 0xc000},
		{65504, 0x7bff},
		{65520, 0x7c00}, // rounds up to infinity
		{1e-8, 0x0000},  // below half the smallest subnormal
		{5.960464477539063e-08, 0x0001},
		{1 + 1.0/2048, 0x3c00},        // exact tie, even stays
		{1 + 3.0/2048, 0x3c02},        // exact tie, odd rounds up
		{1 + 1.0/2048 + 1e-7, 0x3c01}, // past the tie
		{float32(math.Inf(-1)), 0xfc00},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, F32ToF16(c.in), "F32ToF16(%g)", c.in)
	}
}

func TestBF16(t *testing.T) {
	assert.Equal(t, uint16(0x3f80), F32ToBF16(1))
	assert.Equal(t, float32(1), BF16ToF32(0x3f80))
	assert.Equal(t, uint16(0x3f80), F32ToBF16(math.Float32frombits(0x3f808000))) // tie to even
	assert.Equal(t, uint16(0x3f82), F32ToBF16(math.Float32frombits(0x3f818000))) // tie, odd up
	assert.True(t, math.IsNaN(float64(BF16ToF32(F32ToBF16(float32(math.NaN()))))))
}

func TestTypeSizes(t *testing.T) {
	// Byte sizes of the blocks, as ggml's block structs define them.
	want := map[Type]int{F32: 4, F16: 2, BF16: 2, Q4_0: 18, Q8_0: 34, Q4_K: 144, Q5_K: 176, Q6_K: 210, Q8_K: 292,
		Q2_K: 84, Q3_K: 110, Q4_1: 20, Q5_0: 22, Q5_1: 24, Q8_1: 36, IQ4_NL: 18, IQ4_XS: 136}
	for typ, size := range want {
		assert.Equal(t, size, typ.TypeSize(), typ.String())
	}
	assert.Equal(t, 144*8, Q4_K.RowSize(2048))
	assert.Equal(t, -1, Q4_K.RowSize(100))
	assert.Equal(t, "type(99)", Type(99).String())
	assert.False(t, Type(99).Known())
	assert.True(t, Q6_K.Supported())
	assert.False(t, Q2_K.Supported())
	assert.Equal(t, "Q4_K_M", FileType(15).String())
}

// TestF32ToF16SliceMatches checks the bulk conversion element by element
// against F32ToF16: every exponent (normal, subnormal, overflow), ties, NaNs
// and infinities, for lengths around the 8-element steps.
func TestF32ToF16SliceMatches(t *testing.T) {
	var src []float32
	for e := uint32(0); e < 256; e++ {
		for _, m := range []uint32{0, 1, 0x1000, 0x2000, 0x3000, 0x7fe000, 0x7ff000, 0x7fffff, 0x400001} {
			for _, sign := range []uint32{0, 1 << 31} {
				src = append(src, math.Float32frombits(sign|e<<23|m))
			}
		}
	}
	for _, n := range []int{0, 1, 7, 8, 9, 31, len(src)} {
		got := make([]uint16, n+3)
		F32ToF16Slice(got, src[:n])
		for i := 0; i < n; i++ {
			require.Equal(t, F32ToF16(src[i]), got[i], "n=%d element %d (%08x)", n, i, math.Float32bits(src[i]))
		}
		assert.Equal(t, []uint16{0, 0, 0}, got[n:], "n=%d: wrote past len(src)", n)
	}
	assert.Panics(t, func() { F32ToF16Slice(make([]uint16, 3), make([]float32, 4)) })
}

func TestRoundF16Matches(t *testing.T) {
	var src []float32
	for e := uint32(0); e < 255; e++ { // every exponent but NaN and infinity
		for _, m := range []uint32{0, 1, 0x1000, 0x2000, 0x3000, 0x7fe000, 0x7ff000, 0x7fffff, 0x400001} {
			for _, sign := range []uint32{0, 1 << 31} {
				src = append(src, math.Float32frombits(sign|e<<23|m))
			}
		}
	}
	src = append(src, float32(math.Inf(1)), float32(math.Inf(-1)))
	for _, n := range []int{1, 7, 8, 9, 31, len(src)} {
		x := append([]float32(nil), src[:n]...)
		roundF16(x)
		for i := range x {
			want := F16ToF32(F32ToF16(src[i]))
			require.Equal(t, math.Float32bits(want), math.Float32bits(x[i]), "n=%d element %d (%08x)", n, i, math.Float32bits(src[i]))
		}
	}
}

func BenchmarkF32ToF16Slice(b *testing.B) {
	src := make([]float32, 4096)
	for i := range src {
		src[i] = float32(i)*0.37 - 700
	}
	dst := make([]uint16, len(src))
	b.Run("slice", func(b *testing.B) {
		for b.Loop() {
			F32ToF16Slice(dst, src)
		}
	})
	b.Run("loop", func(b *testing.B) {
		for b.Loop() {
			for i, v := range src {
				dst[i] = F32ToF16(v)
			}
		}
	})
}
