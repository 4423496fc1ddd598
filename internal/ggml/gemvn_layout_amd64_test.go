package ggml

// The layouts of the activations that the AVX-512 GemvN kernels read, each
// checked byte for byte against a plain-Go version (amd64 only: the layouts
// and their routines exist only there).

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

// gemvnPermuteQ8K is gemvnPermuteZ in plain Go, to check it: it copies cols Q8_K vectors of nb blocks from x (xStride
// bytes apart) to dst, nb·gemvnPermBlock bytes apart, in blocks of
// gemvnPermBlock bytes: each block's d at 0 as it is, and from 64 its 32
// qwords of quants reordered for the AVX-512 Q4_K kernels. Qword 8c+p of the
// copy is qword 4·sb+c of the block (elements 8c…8c+7 of sub-block sb), sb
// being 0, 2, 4, 6, 1, 3, 5, 7 for p = 0…7: the order in which those kernels
// gather a Q4_K block's weights in chunk c. With dst on a 64-byte boundary,
// each 64 bytes the kernels load lie in one cache line. The bsums are not
// copied (the kernels take them from gemvnBsumsZ's floats).
func gemvnPermuteQ8K(dst, x []byte, xStride, nb, cols int) {
	const xs, ps = 292, gemvnPermBlock
	sbs := [8]int{0, 2, 4, 6, 1, 3, 5, 7}
	for c := range cols {
		src := x[c*xStride : c*xStride+nb*xs]
		out := dst[c*nb*ps : (c+1)*nb*ps]
		for b := range nb {
			from, to := src[b*xs:(b+1)*xs], out[b*ps:(b+1)*ps]
			copy(to[:4], from[:4])
			for k := range 4 {
				for p, sb := range sbs {
					q := binary.LittleEndian.Uint64(from[4+8*(4*sb+k):])
					binary.LittleEndian.PutUint64(to[64+8*(8*k+p):], q)
				}
			}
		}
	}
}

// TestGemvNPermuteZ checks gemvnPermuteZ byte for byte against
// gemvnPermuteQ8K, for 1 to 9 vectors of 1 to 5 blocks with
// padded strides.
func TestGemvNPermuteZ(t *testing.T) {
	if !useVNNI {
		t.Skip("no AVX-512 VNNI")
	}
	src := make([]byte, 9*(5*292+13))
	for i := range src {
		src[i] = byte(i*167 + i>>8) // every qword of it distinct
	}
	for cols := 1; cols <= 9; cols++ {
		for nb := 1; nb <= 5; nb++ {
			xStride := nb*292 + 13
			want := make([]byte, cols*nb*gemvnPermBlock)
			got := make([]byte, len(want))
			gemvnPermuteQ8K(want, src, xStride, nb, cols)
			gemvnPermuteZ(&src[0], xStride, nb, cols, &got[0])
			assert.True(t, bytes.Equal(want, got), "%d vectors of %d blocks", cols, nb)
		}
	}
}

// TestGemvNAlignZ checks gemvnAlignZ byte for byte against the layout
// gemvnAlignBlock describes, built here with copy, for 1 to 9 vectors of 1
// to 5 blocks with padded strides; the gaps stay as they were.
func TestGemvNAlignZ(t *testing.T) {
	if !useVNNI {
		t.Skip("no AVX-512 VNNI")
	}
	const xs, as = 292, gemvnAlignBlock
	src := make([]byte, 9*(5*xs+13))
	for i := range src {
		src[i] = byte(i*167 + i>>8)
	}
	for cols := 1; cols <= 9; cols++ {
		for nb := 1; nb <= 5; nb++ {
			xStride := nb*xs + 13
			want := make([]byte, cols*nb*as)
			for c := range cols {
				for b := range nb {
					from, to := src[c*xStride+b*xs:], want[(c*nb+b)*as:]
					copy(to[:4], from[:4])
					copy(to[16:48], from[260:292])
					copy(to[64:320], from[4:260])
				}
			}
			got := make([]byte, len(want))
			gemvnAlignZ(&src[0], xStride, nb, cols, &got[0])
			assert.True(t, bytes.Equal(want, got), "%d vectors of %d blocks", cols, nb)
		}
	}
}

// gemvnQ6PrepQ8K is gemvnQ6PrepZ in plain Go, to check it: cols Q8_K
// vectors of nb blocks from x (xStride bytes apart) rewritten into dst,
// nb·gemvnQ6Block bytes apart, as gemvnQ6Block describes, and their blocks'
// d into d8 (block b of vector c at b·cols + c).
func gemvnQ6PrepQ8K(dst []byte, d8 []float32, x []byte, xStride, nb, cols int) {
	const xs, ps = 292, gemvnQ6Block
	for c := range cols {
		for b := range nb {
			from, to := x[c*xStride+b*xs:][:xs], dst[(c*nb+b)*ps:][:ps]
			d8[b*cols+c] = math.Float32frombits(binary.LittleEndian.Uint32(from))
			for sb := range 16 {
				bsum := int16(binary.LittleEndian.Uint16(from[260+2*sb:]))
				binary.LittleEndian.PutUint32(to[4*sb:], uint32(-32*int32(bsum)))
				for k := range 4 {
					copy(to[64+64*k+4*sb:][:4], from[4+16*sb+4*k:][:4])
				}
			}
		}
	}
}

// TestGemvNQ6PrepZ checks gemvnQ6PrepZ byte for byte against
// gemvnQ6PrepQ8K, for 1 to 9 vectors of 1 to 5 blocks with padded strides
// and bsums of both signs up to the extremes of int16.
func TestGemvNQ6PrepZ(t *testing.T) {
	if !useGFNI {
		t.Skip("no AVX-512 GFNI")
	}
	const xs = 292
	src := make([]byte, 9*(5*xs+13))
	for i := range src {
		src[i] = byte(i*167 + i>>8)
	}
	for _, v := range []int16{-32768, 32767, -1, 0} {
		binary.LittleEndian.PutUint16(src[260:], uint16(v))
		for cols := 1; cols <= 9; cols++ {
			for nb := 1; nb <= 5; nb++ {
				xStride := nb*xs + 13
				want := make([]byte, cols*nb*gemvnQ6Block)
				got := make([]byte, len(want))
				wantD, gotD := make([]float32, cols*nb), make([]float32, cols*nb)
				gemvnQ6PrepQ8K(want, wantD, src, xStride, nb, cols)
				gemvnQ6PrepZ(&src[0], xStride, nb, cols, &got[0], &gotD[0])
				assert.True(t, bytes.Equal(want, got), "%d vectors of %d blocks, bsum %d", cols, nb, v)
				for i := range wantD {
					assert.Equal(t, math.Float32bits(wantD[i]), math.Float32bits(gotD[i]), "d8 %d of %d vectors of %d blocks", i, cols, nb)
				}
			}
		}
	}
}

// BenchmarkGemvNQ6KGFNI compares, in one process, the AVX-512 Q6_K GemvN
// kernels with GFNI (gfni=on) and without (gfni=off) on a model's shapes;
// with -count, the two alternate. The 512×2048 matrix (860 KB) stays in
// the L2 cache, so that it measures the kernels' arithmetic.
func BenchmarkGemvNQ6KGFNI(b *testing.B) {
	if !useGFNI {
		b.Skip("no AVX-512 GFNI")
	}
	for _, s := range []struct{ rows, n int }{{512, 2048}, {5632, 2048}, {2048, 5632}} {
		w := randomWeights(Q6_K, s.n, s.rows, 1)
		stride := Q6_K.RowSize(s.n)
		xs := Q8_K.RowSize(s.n)
		for _, cols := range []int{4, 8} {
			x := make([]byte, cols*xs)
			for c := range cols {
				enc, err := Quantize(Q8_K, randFloats(uint64(2+c), s.n, 1))
				if err != nil {
					b.Fatal(err)
				}
				copy(x[c*xs:], enc)
			}
			out := make([]float32, cols*s.rows)
			for _, on := range []bool{false, true} {
				name := map[bool]string{false: "off", true: "on"}[on]
				b.Run(fmt.Sprintf("shape=%dx%dx%d/gfni=%s", s.rows, s.n, cols, name), func(b *testing.B) {
					saved := useGFNI
					useGFNI = on
					defer func() { useGFNI = saved }()
					for b.Loop() {
						GemvN(Q6_K, s.n, w, stride, s.rows, x, xs, cols, out, s.rows)
					}
				})
			}
		}
	}
}
