package ggml

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests build blocks byte by byte from the layout descriptions of ggml's
// block structs and check the decoded values, so that they pin the layouts.

func putF16(b []byte, v float32) { binary.LittleEndian.PutUint16(b, F32ToF16(v)) }

func dequant(t *testing.T, typ Type, src []byte, n int) []float32 {
	t.Helper()
	out := make([]float32, n)
	require.NoError(t, Dequantize(typ, src, out))
	return out
}

func TestLayoutFloats(t *testing.T) {
	f32 := make([]byte, 12)
	binary.LittleEndian.PutUint32(f32[0:], math.Float32bits(1.5))
	binary.LittleEndian.PutUint32(f32[4:], math.Float32bits(-2))
	binary.LittleEndian.PutUint32(f32[8:], math.Float32bits(1e-30))
	assert.Equal(t, []float32{1.5, -2, 1e-30}, dequant(t, F32, f32, 3))

	f16 := []byte{0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38, 0xff, 0x7b}
	assert.Equal(t, []float32{1, -2, 0.5, 65504}, dequant(t, F16, f16, 4))

	bf16 := []byte{0x80, 0x3f, 0x40, 0xc0, 0x00, 0x00}
	assert.Equal(t, []float32{1, -3, 0}, dequant(t, BF16, bf16, 3))
}

func TestLayoutQ4_0(t *testing.T) {
	b := make([]byte, 18)
	b[0], b[1] = 0x00, 0x38 // d = 0.5
	for j := 0; j < 16; j++ {
		b[2+j] = byte(j) | byte(15-j)<<4
	}
	got := dequant(t, Q4_0, b, 32)
	for j := 0; j < 16; j++ {
		assert.Equal(t, float32(j-8)*0.5, got[j], "element %d", j)
		assert.Equal(t, float32(15-j-8)*0.5, got[16+j], "element %d", 16+j)
	}
}

func TestLayoutQ8_0(t *testing.T) {
	b := make([]byte, 2*34)
	b[0], b[1] = 0x00, 0x34   // d = 0.25
	b[34], b[35] = 0x00, 0xc0 // d = -2
	for j := 0; j < 32; j++ {
		b[2+j] = byte(int8(j*8 - 128))
		b[36+j] = byte(int8(j - 16))
	}
	got := dequant(t, Q8_0, b, 64)
	for j := 0; j < 32; j++ {
		assert.Equal(t, float32(j*8-128)*0.25, got[j])
		assert.Equal(t, float32(j-16)*-2, got[32+j])
	}
}

// The 12 scale bytes of a Q4_K/Q5_K block holding these scales and mins,
// packed by hand from the get_scale_min_k4 description.
var (
	kScales     = [8]uint8{1, 2, 3, 63, 17, 32, 48, 5}
	kMins       = [8]uint8{0, 7, 63, 1, 33, 16, 2, 60}
	kScaleBytes = [12]byte{0x41, 0x82, 0xC3, 0x3F, 0x80, 0x47, 0x3F, 0xC1, 0x11, 0x00, 0x20, 0xC5}
)

func TestScaleMinK4(t *testing.T) {
	sc, m := scaleMinK4(kScaleBytes[:])
	assert.Equal(t, kScales, sc)
	assert.Equal(t, kMins, m)
	var packed [12]byte
	packScaleMinK4(packed[:], &kScales, &kMins)
	assert.Equal(t, kScaleBytes, packed)
}

func TestLayoutQ4K(t *testing.T) {
	b := make([]byte, 144)
	putF16(b[0:], 2)   // d
	putF16(b[2:], 0.5) // dmin
	copy(b[4:], kScaleBytes[:])
	for c := 0; c < 4; c++ {
		for l := 0; l < 32; l++ {
			b[16+32*c+l] = byte(l%16) | byte((l*7+c)%16)<<4
		}
	}
	got := dequant(t, Q4_K, b, 256)
	for c := 0; c < 4; c++ {
		for l := 0; l < 32; l++ {
			lo, hi := float32(l%16), float32((l*7+c)%16)
			assert.Equal(t, 2*float32(kScales[2*c])*lo-0.5*float32(kMins[2*c]), got[64*c+l], "element %d", 64*c+l)
			assert.Equal(t, 2*float32(kScales[2*c+1])*hi-0.5*float32(kMins[2*c+1]), got[64*c+32+l], "element %d", 64*c+32+l)
		}
	}
}

func TestLayoutQ5K(t *testing.T) {
	b := make([]byte, 176)
	putF16(b[0:], 0.25) // d
	putF16(b[2:], 1)    // dmin
	copy(b[4:], kScaleBytes[:])
	for l := 0; l < 32; l++ {
		b[16+l] = byte(l*37 + 11) // qh
	}
	for i := 0; i < 128; i++ {
		b[48+i] = byte(i*13 + 5) // qs
	}
	got := dequant(t, Q5_K, b, 256)
	for c := 0; c < 4; c++ {
		for l := 0; l < 32; l++ {
			qs, qh := b[48+32*c+l], b[16+l]
			lo := int(qs&15) + 16*int(qh>>(2*c)&1)
			hi := int(qs>>4) + 16*int(qh>>(2*c+1)&1)
			assert.Equal(t, 0.25*float32(kScales[2*c])*float32(lo)-float32(kMins[2*c]), got[64*c+l], "element %d", 64*c+l)
			assert.Equal(t, 0.25*float32(kScales[2*c+1])*float32(hi)-float32(kMins[2*c+1]), got[64*c+32+l], "element %d", 64*c+32+l)
		}
	}
}

// q6KQuant returns the 6-bit quant (0..63) of element e of a Q6_K block,
// straight from the layout description.
func q6KQuant(b []byte, e int) int {
	h, r := e/128, e%128
	part, l := r/32, r%32
	low := b[64*h+32*(part&1)+l]
	if part >= 2 {
		low >>= 4
	}
	high := b[128+32*h+l] >> (2 * part) & 3
	return int(low&15) | int(high)<<4
}

func TestLayoutQ6K(t *testing.T) {
	b := make([]byte, 210)
	for i := 0; i < 128; i++ {
		b[i] = byte(i*29 + 3) // ql
	}
	for i := 0; i < 64; i++ {
		b[128+i] = byte(i*53 + 7) // qh
	}
	for g := 0; g < 16; g++ {
		b[192+g] = byte(int8(g*17 - 128)) // scales, negative and positive
	}
	putF16(b[208:], 0.125)
	got := dequant(t, Q6_K, b, 256)
	for e := 0; e < 256; e++ {
		want := 0.125 * float32(e/16*17-128) * float32(q6KQuant(b, e)-32)
		assert.Equal(t, want, got[e], "element %d", e)
	}
	// One element fully by hand: element 200 is in half 1, part 2 (high nibble of
	// ql[64+8]), bits 4-5 of qh[32+8], scale 12.
	e := 200
	low := b[64+8] >> 4
	high := b[128+32+8] >> 4 & 3
	assert.Equal(t, 0.125*float32(12*17-128)*float32(int(low)|int(high)<<4-32), got[e])
}

func TestLayoutQ8K(t *testing.T) {
	b := make([]byte, 292)
	binary.LittleEndian.PutUint32(b[0:], math.Float32bits(-0.5))
	for j := 0; j < 256; j++ {
		b[4+j] = byte(int8(j - 128))
	}
	got := dequant(t, Q8_K, b, 256)
	for j := 0; j < 256; j++ {
		assert.Equal(t, -0.5*float32(j-128), got[j])
	}
}
