package ggml

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

// gemvnPairRef is gemvnPairQ4K in plain Go, to check it: vector c of cols
// Q8_K vectors of nb blocks (xStride bytes apart) into its half of the pair
// blocks at dst, as gemvnPairBlock describes; with cols odd the last pair's
// second half is zeros.
func gemvnPairRef(dst, x []byte, xStride, nb, cols int) {
	const xs, ps = 292, gemvnPairBlock
	sbs := [8]int{0, 2, 4, 6, 1, 3, 5, 7}
	clear(dst)
	for c := range cols {
		for b := range nb {
			from := x[c*xStride+b*xs : c*xStride+(b+1)*xs]
			to := dst[(c/2*nb+b)*ps+c%2*32:]
			d8 := math.Float32frombits(binary.LittleEndian.Uint32(from))
			for i := range 8 {
				copy(to[4*i:], from[:4])
				bsum := int32(int16(binary.LittleEndian.Uint16(from[260+4*i:]))) + int32(int16(binary.LittleEndian.Uint16(from[262+4*i:])))
				binary.LittleEndian.PutUint32(to[64+4*i:], math.Float32bits(float32(bsum)*d8))
			}
			for ch := range 8 {
				for i, sb := range sbs {
					copy(to[128+64*ch+4*i:128+64*ch+4*i+4], from[4+32*sb+4*ch:])
				}
			}
		}
	}
}

// TestGemvNPairQ4K checks gemvnPairQ4K byte for byte against gemvnPairRef,
// for 1 to 9 vectors of 1 to 5 blocks with padded strides.
func TestGemvNPairQ4K(t *testing.T) {
	if !useVNNI {
		t.Skip("no AVX-512 VNNI")
	}
	for cols := 1; cols <= 9; cols++ {
		for nb := 1; nb <= 5; nb++ {
			xStride := nb*292 + 13
			src := make([]byte, cols*xStride)
			for i := range src {
				src[i] = byte(i*167 + i>>8)
			}
			for c := range cols {
				for b := range nb {
					// d8 and the bsums as in real Q8_K blocks: a float, small sums
					at := c*xStride + b*292
					binary.LittleEndian.PutUint32(src[at:], math.Float32bits(float32(c*nb+b+1)/64))
					for i := range 16 {
						binary.LittleEndian.PutUint16(src[at+260+2*i:], uint16(int16(b*i*97-3000+c)))
					}
				}
			}
			pairs := (cols + 1) / 2
			want := make([]byte, pairs*nb*gemvnPairBlock)
			got := make([]byte, len(want))
			for i := range got {
				got[i] = 0xa5
			}
			gemvnPairRef(want, src, xStride, nb, cols)
			if cols%2 != 0 {
				clear(got[(pairs-1)*nb*gemvnPairBlock:])
			}
			for c := range cols {
				gemvnPairQ4K(&src[c*xStride], nb, &got[c/2*nb*gemvnPairBlock+c%2*32])
			}
			if !assert.True(t, bytes.Equal(want, got), "%d vectors of %d blocks", cols, nb) {
				for i := range want {
					if want[i] != got[i] {
						t.Log(fmt.Sprintf("first difference at %d: %#x, want %#x", i, got[i], want[i]), got[i&^3:i&^3+32], want[i&^3:i&^3+32])
						break
					}
				}
				return
			}
		}
	}
}
