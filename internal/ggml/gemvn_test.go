package ggml

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runGemvN calls GemvN into a fresh output whose padding holds a sentinel.
func (c gemmCase) runGemvN() []float32 {
	out := make([]float32, (c.cols-1)*c.outStride+c.rows+1)
	for i := range out {
		out[i] = -12345
	}
	GemvN(c.typ, c.n, c.w, c.stride, c.rows, c.x, c.xStride, c.cols, out, c.outStride)
	return out
}

// TestGemvNMatchesVecDot checks GemvN element by element against VecDot for
// the types with small-batch kernels, every batch size from 1 to 17 (odd
// ones leave groups of 2 and 3 vectors), ragged row counts and padded
// strides, with the fastest kernels, with AVX2 only and with the portable Go
// code.
func TestGemvNMatchesVecDot(t *testing.T) {
	modes := []struct {
		name string
		wrap func(func())
	}{
		{"simd", func(f func()) { f() }},
		{"avx2", withoutVNNI},
		{"generic", withoutSIMD},
		{"nogfni", withoutGFNI},
	}
	for _, typ := range []Type{Q4_K, Q6_K} {
		sizes := dotSizes(typ)
		for _, n := range []int{sizes[0], sizes[len(sizes)-2]} {
			for cols := 1; cols <= 17; cols++ {
				for _, rows := range []int{1, 3, 8, 23} {
					pad := (cols + rows) % 2 * 7
					name := fmt.Sprintf("%s/n=%d/%dx%d/pad=%d", typ, n, rows, cols, pad)
					t.Run(name, func(t *testing.T) {
						c := newGemmCase(t, typ, n, rows, cols, pad, cols%3 != 0)
						for _, m := range modes {
							var out []float32
							m.wrap(func() { out = c.runGemvN() })
							m.wrap(func() { c.check(t, out) })
						}
					})
				}
			}
		}
	}
}

// TestGemvNOtherTypes checks that the types without a small-batch kernel
// still get Gemm's results.
func TestGemvNOtherTypes(t *testing.T) {
	for _, typ := range weightTypes {
		n := dotSizes(typ)[1]
		c := newGemmCase(t, typ, n, 9, 5, 3, true)
		c.check(t, c.runGemvN())
	}
}

// TestGemvNLongRows covers rows long enough that a tile holds a few rows
// only, so that the vectors' groups go over several tiles.
func TestGemvNLongRows(t *testing.T) {
	for _, typ := range []Type{Q4_K, Q6_K} {
		n := 22 * QKK
		t.Run(typ.String(), func(t *testing.T) {
			c := newGemmCase(t, typ, n, 37, 11, 5, true)
			c.check(t, c.runGemvN())
		})
	}
}

// TestGemvNRowParts covers rows so long that the AVX-512 kernels take them
// in several parts, adding each part's sums to the output: four parts of
// 10 blocks, over more rows than one tile holds, with groups of 7 and 2
// vectors and padded strides.
func TestGemvNRowParts(t *testing.T) {
	for _, typ := range []Type{Q4_K, Q6_K} {
		n := 40 * QKK
		t.Run(typ.String(), func(t *testing.T) {
			c := newGemmCase(t, typ, n, 13, 9, 3, true)
			c.check(t, c.runGemvN())
		})
	}
}

// TestGemvNOddBlocks covers rows of an odd number of blocks, short ones and
// ones that the AVX-512 kernels take in parts of an odd number of blocks
// (three of 11 for 8 vectors), for a group of 3 vectors, of 8, and of 8
// then 2: the Q4_K kernels read a
// reordered copy of the activations, block by block and vector by vector.
func TestGemvNOddBlocks(t *testing.T) {
	for _, typ := range []Type{Q4_K, Q6_K} {
		for _, nb := range []int{3, 33} {
			for _, cols := range []int{3, 8, 10} {
				t.Run(fmt.Sprintf("%s/nb=%d/cols=%d", typ, nb, cols), func(t *testing.T) {
					c := newGemmCase(t, typ, nb*QKK, 5, cols, 1, true)
					c.check(t, c.runGemvN())
				})
			}
		}
	}
}

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

func TestGemvNBoundsPanic(t *testing.T) {
	for _, typ := range []Type{Q4_K, Q6_K} {
		n := typ.BlockSize() * 2
		rs, xs := typ.RowSize(n), VecDotType(typ).RowSize(n)
		w := make([]byte, 8*rs)
		x := make([]byte, 3*xs)
		out := make([]float32, 24)
		assert.Panics(t, func() { GemvN(typ, n, w[:8*rs-1], rs, 8, x, xs, 3, out, 8) }, typ.String())
		assert.Panics(t, func() { GemvN(typ, n, w, rs, 8, x[:3*xs-1], xs, 3, out, 8) }, typ.String())
		assert.Panics(t, func() { GemvN(typ, n, w, rs, 8, x, xs, 3, out[:23], 8) }, typ.String())
		assert.NotPanics(t, func() { GemvN(typ, n, w, rs, 8, x, xs, 3, out, 8) }, typ.String())
	}
}

func TestGemvNDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops buffers at random under the race detector")
	}
	for _, typ := range []Type{Q4_K, Q6_K} {
		n := dotSizes(typ)[2]
		c := newGemmCase(t, typ, n, 16, 7, 0, true)
		out := make([]float32, 16*7)
		allocs := testing.AllocsPerRun(10, func() {
			GemvN(typ, n, c.w, c.stride, c.rows, c.x, c.xStride, c.cols, out, c.outStride)
		})
		assert.Zero(t, allocs, typ.String())
	}
}

// TestGemvNActsMatchesGemvN: activations prepared once and used for bands
// of rows on several goroutines at once (as the engine's threads do) give
// bit for bit what GemvN gives on the whole matrix, for the types with
// small-batch kernels and one without, at every kernel level; and a
// GemvNActs prepared again for other activations forgets the first.
func TestGemvNActsMatchesGemvN(t *testing.T) {
	modes := []struct {
		name string
		wrap func(func())
	}{
		{"simd", func(f func()) { f() }},
		{"avx2", withoutVNNI},
		{"generic", withoutSIMD},
		{"nogfni", withoutGFNI},
	}
	for _, typ := range []Type{Q4_K, Q6_K, Q8_0} {
		n := dotSizes(typ)[len(dotSizes(typ))-2]
		for _, cols := range []int{1, 2, 3, 5, 8, 9} {
			for _, m := range modes {
				m.wrap(func() {
					var a GemvNActs
					for round, rows := range []int{23, 40} {
						c := newGemmCase(t, typ, n, rows, cols, round*5, true)
						want := make([]float32, (cols-1)*c.outStride+rows)
						GemvN(typ, n, c.w, c.stride, rows, c.x, c.xStride, cols, want, c.outStride)
						a.Prepare(typ, n, c.x, c.xStride, cols)
						got := make([]float32, len(want))
						var wg sync.WaitGroup
						for r0 := 0; r0 < rows; r0 += 8 {
							wg.Go(func() {
								a.GemvN(c.w[r0*c.stride:], c.stride, min(8, rows-r0), got[r0:], c.outStride)
							})
						}
						wg.Wait()
						for j := range want {
							if j%c.outStride < rows {
								require.Equal(t, math.Float32bits(want[j]), math.Float32bits(got[j]),
									"%s %s cols=%d rows=%d output %d", m.name, typ, cols, rows, j)
							}
						}
					}
				})
			}
		}
	}
}

// TestGemvNActsKeepsKernels: Q6_K activations prepared for the GFNI
// kernels are multiplied by those kernels even if GFNI is turned off before
// the product (the layout is theirs), and give GemvN's results bit for bit.
func TestGemvNActsKeepsKernels(t *testing.T) {
	if !useGFNI {
		t.Skip("no AVX-512 GFNI")
	}
	n := 9 * QKK
	c := newGemmCase(t, Q6_K, n, 19, 8, 3, true)
	want := make([]float32, 7*c.outStride+19)
	GemvN(Q6_K, n, c.w, c.stride, 19, c.x, c.xStride, 8, want, c.outStride)
	var a GemvNActs
	a.Prepare(Q6_K, n, c.x, c.xStride, 8)
	got := make([]float32, len(want))
	withoutGFNI(func() { a.GemvN(c.w, c.stride, 19, got, c.outStride) })
	for j := range want {
		if j%c.outStride < 19 {
			require.Equal(t, math.Float32bits(want[j]), math.Float32bits(got[j]), "output %d", j)
		}
	}
}

func TestGemvNActsDoesNotAllocate(t *testing.T) {
	for _, typ := range []Type{Q4_K, Q6_K} {
		n := dotSizes(typ)[2]
		c := newGemmCase(t, typ, n, 16, 7, 0, true)
		out := make([]float32, 16*7)
		var a GemvNActs
		a.Prepare(typ, n, c.x, c.xStride, c.cols)
		allocs := testing.AllocsPerRun(10, func() {
			a.Prepare(typ, n, c.x, c.xStride, c.cols)
			a.GemvN(c.w, c.stride, c.rows, out, c.outStride)
		})
		assert.Zero(t, allocs, typ.String())
	}
}

// TestGemvNKernelCoverage makes sure the kernels the tests above compare are
// the ones GemvN picks on this machine.
func TestGemvNKernelCoverage(t *testing.T) {
	if !useAVX2 {
		t.Skip("no SIMD kernels on this machine")
	}
	check := func(mode string) {
		for _, typ := range []Type{Q4_K, Q6_K} {
			c := newGemmCase(t, typ, typ.BlockSize()*2, 3, 4, 0, true)
			out := make([]float32, 12)
			assert.True(t, gemvnSIMD(typ, c.n, c.w, c.stride, 3, c.x, c.xStride, 4, out, 3, nil), "%s %s", mode, typ)
		}
	}
	if useVNNI {
		check("vnni")
	}
	withoutVNNI(func() { check("avx2") })
	assert.False(t, gemvnSIMD(Q8_0, QK, make([]byte, 3*34), 34, 3, make([]byte, 2*34), 34, 2, make([]float32, 6), 3, nil))
	assert.False(t, gemvnSIMD(Q5_K, QKK, make([]byte, 3*176), 176, 3, make([]byte, 2*292), 292, 2, make([]float32, 6), 3, nil))
}

// BenchmarkGemvN multiplies a whole weight matrix, larger than the L2 cache
// as a model's are, by a few activation vectors (the engine's batched
// decode): kernel=gemvn is GemvN, kernel=gemm Gemm, kernel=gemv one Gemv per
// vector. Compare them with `benchstat -col /kernel`.
func BenchmarkGemvN(b *testing.B) {
	for _, typ := range []Type{Q4_K, Q6_K} {
		for _, s := range []struct{ rows, n int }{{5632, 2048}, {2048, 5632}} {
			w := randomWeights(typ, s.n, s.rows, 1)
			stride := typ.RowSize(s.n)
			xt := VecDotType(typ)
			xs := xt.RowSize(s.n)
			for _, cols := range []int{2, 4, 5, 6, 8, 16} {
				x := make([]byte, cols*xs)
				for c := 0; c < cols; c++ {
					enc, err := Quantize(xt, randFloats(uint64(2+c), s.n, 1))
					if err != nil {
						b.Fatal(err)
					}
					copy(x[c*xs:], enc)
				}
				out := make([]float32, cols*s.rows)
				run := func(name string, f func()) {
					b.Run(fmt.Sprintf("type=%s/shape=%dx%dx%d/kernel=%s", typ, s.rows, s.n, cols, name), func(b *testing.B) {
						for b.Loop() {
							f()
						}
						b.ReportMetric(float64(s.rows*s.n*cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GMAC/s")
					})
				}
				run("gemvn", func() { GemvN(typ, s.n, w, stride, s.rows, x, xs, cols, out, s.rows) })
				run("gemm", func() { Gemm(typ, s.n, w, stride, s.rows, x, xs, cols, out, s.rows) })
				run("gemv", func() { gemmByColumns(typ, s.n, w, stride, s.rows, x, xs, cols, out, s.rows) })
			}
		}
	}
}

// withoutGFNI runs f with the AVX-512 Q6_K GemvN kernels that need no GFNI
// (gemvnKernelsZ's), as on a CPU with AVX-512 VNNI but not GFNI.
func withoutGFNI(f func()) {
	saved := useGFNI
	useGFNI = false
	defer func() { useGFNI = saved }()
	f()
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
