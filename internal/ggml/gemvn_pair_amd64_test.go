package ggml

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
				f := d8
				if i >= 4 {
					f /= 16
				}
				binary.LittleEndian.PutUint32(to[4*i:], math.Float32bits(f))
				bsum := int32(int16(binary.LittleEndian.Uint16(from[260+4*i:]))) + int32(int16(binary.LittleEndian.Uint16(from[262+4*i:])))
				binary.LittleEndian.PutUint32(to[64+4*i:], math.Float32bits(float32(bsum)*d8))
			}
			for ch := range 8 {
				line := ch ^ c%2 // the second vector's chunks swapped in pairs
				for i, sb := range sbs {
					copy(to[128+64*line+4*i:128+64*line+4*i+4], from[4+32*sb+4*ch:])
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
				gemvnPairQ4K(&src[c*xStride], nb, &got[c/2*nb*gemvnPairBlock+c%2*32], c%2)
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

// TestGemvNPairKernels checks the Q4_K pair kernels and the kernels of one
// vector per register against VecDot on the same cases: every batch size
// from 1 to 17 (pairs with a zero second vector for odd sizes, groups of 8
// then the rest), short rows and rows taken in parts (40 and 33 blocks),
// ragged row counts and padded strides.
func TestGemvNPairKernels(t *testing.T) {
	if !useVNNI {
		t.Skip("no AVX-512 VNNI")
	}
	saved := gemvnPaired
	defer func() { gemvnPaired = saved }()
	for _, nb := range []int{1, 3, 33, 40} {
		for cols := 1; cols <= 17; cols++ {
			if nb > 3 && cols%3 != 0 && cols != 8 {
				continue // long rows: a few batch sizes are enough
			}
			for _, rows := range []int{1, 13} {
				pad := (cols + rows + nb) % 2 * 5
				c := newGemmCase(t, Q4_K, nb*QKK, rows, cols, pad, true)
				for _, paired := range []bool{true, false} {
					t.Run(fmt.Sprintf("nb=%d/%dx%d/pad=%d/paired=%v", nb, rows, cols, pad, paired), func(t *testing.T) {
						gemvnPaired = paired
						c.check(t, c.runGemvN())
					})
				}
			}
		}
	}
}

// TestGemvNActsKeepsPairs: activations prepared in pairs keep the pair
// kernels, bit for bit, when the pair kernels are switched off after Prepare.
func TestGemvNActsKeepsPairs(t *testing.T) {
	if !useVNNI {
		t.Skip("no AVX-512 VNNI")
	}
	n := 9 * QKK
	c := newGemmCase(t, Q4_K, n, 19, 8, 3, true)
	want := make([]float32, 7*c.outStride+19)
	GemvN(Q4_K, n, c.w, c.stride, 19, c.x, c.xStride, 8, want, c.outStride)
	var a GemvNActs
	a.Prepare(Q4_K, n, c.x, c.xStride, 8)
	got := make([]float32, len(want))
	saved := gemvnPaired
	gemvnPaired = false
	a.GemvN(c.w, c.stride, 19, got, c.outStride)
	gemvnPaired = saved
	for j := range want {
		if j%c.outStride < 19 {
			require.Equal(t, math.Float32bits(want[j]), math.Float32bits(got[j]), "output %d", j)
		}
	}
}

// BenchmarkGemvNPairs compares the Q4_K pair kernels with the AVX-512
// kernels of one vector per register, on a band of 128 rows, which stays in
// the L2 cache as the engine's bands of rows mostly do while several
// vectors go over them (the kernels' own speed), and on whole matrices of
// BenchmarkGemvN's shapes, larger than the L2 cache. Each iteration times
// one call of each, alternating, and the benchmark reports each one's
// fastest tenth and median per call (z-p10-ns, pair-p10-ns, …): on a shared
// machine those say more than the mean of ns/op.
func BenchmarkGemvNPairs(b *testing.B) {
	if !useVNNI {
		b.Skip("no AVX-512 VNNI")
	}
	shapes := []struct{ rows, n int }{{128, 2048}, {128, 5632}, {5632, 2048}, {2048, 5632}}
	for _, s := range shapes {
		rows, n := s.rows, s.n
		w := randomWeights(Q4_K, n, rows, 1)
		stride := Q4_K.RowSize(n)
		xs := Q8_K.RowSize(n)
		colsList := []int{2, 3, 4, 5, 6, 7, 8}
		if rows > 128 {
			colsList = []int{4, 8}
		}
		for _, cols := range colsList {
			x := make([]byte, cols*xs)
			for c := range cols {
				enc, err := Quantize(Q8_K, randFloats(uint64(2+c), n, 1))
				if err != nil {
					b.Fatal(err)
				}
				copy(x[c*xs:], enc)
			}
			out := make([]float32, cols*rows)
			b.Run(fmt.Sprintf("shape=%dx%dx%d", rows, n, cols), func(b *testing.B) {
				saved := gemvnPaired
				defer func() { gemvnPaired = saved }()
				var times [2][]float64
				for b.Loop() {
					for k, pair := range []bool{false, true} {
						gemvnPaired = pair
						t0 := time.Now()
						GemvN(Q4_K, n, w, stride, rows, x, xs, cols, out, rows)
						times[k] = append(times[k], float64(time.Since(t0).Nanoseconds()))
					}
				}
				for k, name := range []string{"z", "pair"} {
					slices.Sort(times[k])
					t := times[k]
					b.ReportMetric(t[len(t)/10], name+"-p10-ns")
					b.ReportMetric(t[len(t)/2], name+"-med-ns")
				}
			})
		}
	}
}
