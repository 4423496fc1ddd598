package ggml

import (
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
