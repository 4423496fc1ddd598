package ggml

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gemmCase is a Gemm problem: rows×n weights of typ with padded rows, cols
// activation vectors with padded strides, and an output with padded columns.
type gemmCase struct {
	typ                        Type
	n, rows, cols              int
	stride, xStride, outStride int
	w, x                       []byte
}

func newGemmCase(t *testing.T, typ Type, n, rows, cols, pad int, realistic bool) gemmCase {
	t.Helper()
	xt := VecDotType(typ)
	c := gemmCase{typ: typ, n: n, rows: rows, cols: cols,
		stride: typ.RowSize(n) + pad, xStride: xt.RowSize(n) + 3*pad, outStride: rows + pad}
	seed := uint64(n*131 + rows*17 + cols*5 + pad)
	c.w = make([]byte, (rows-1)*c.stride+typ.RowSize(n))
	for r := 0; r < rows; r++ {
		var enc []byte
		if realistic {
			var err error
			enc, err = Quantize(typ, randFloats(seed+uint64(r), n, 0.05))
			require.NoError(t, err)
		} else {
			enc = randomWeights(typ, n, 1, seed+uint64(r))
		}
		copy(c.w[r*c.stride:], enc)
	}
	c.x = make([]byte, (cols-1)*c.xStride+xt.RowSize(n))
	for k := 0; k < cols; k++ {
		enc, err := Quantize(xt, randFloats(seed+1000+uint64(k), n, 1+float32(k%3)))
		require.NoError(t, err)
		copy(c.x[k*c.xStride:], enc)
	}
	return c
}

// run calls Gemm into a fresh output whose padding holds a sentinel.
func (c gemmCase) run() []float32 {
	out := make([]float32, (c.cols-1)*c.outStride+c.rows+1)
	for i := range out {
		out[i] = -12345
	}
	Gemm(c.typ, c.n, c.w, c.stride, c.rows, c.x, c.xStride, c.cols, out, c.outStride)
	return out
}

// check compares every product with VecDot (computed the same way, SIMD or
// not) within float32 rounding of the products' magnitudes, and checks that
// Gemm left the padding alone.
func (c gemmCase) check(t *testing.T, out []float32) {
	t.Helper()
	wd := make([]float32, c.n)
	xd := make([]float32, c.n)
	for k := 0; k < c.cols; k++ {
		require.NoError(t, Dequantize(VecDotType(c.typ), c.x[k*c.xStride:], xd))
		for r := 0; r < c.rows; r++ {
			require.NoError(t, Dequantize(c.typ, c.w[r*c.stride:], wd))
			_, mag := exactDot(wd, xd)
			want := VecDot(c.typ, c.n, c.w[r*c.stride:], c.x[k*c.xStride:])
			got := out[k*c.outStride+r]
			if !assert.InDelta(t, want, got, 4e-6*mag+1e-30, "row %d col %d", r, k) {
				return
			}
		}
		if k < c.cols-1 {
			for i := k*c.outStride + c.rows; i < (k+1)*c.outStride; i++ {
				require.Equal(t, float32(-12345), out[i], "padding at %d", i)
			}
		}
	}
	require.Equal(t, float32(-12345), out[len(out)-1], "after the last column")
}

// TestGemmMatchesVecDot checks Gemm element by element against VecDot for
// every weight type, ragged row and column counts and padded strides, with
// the fastest kernels, with AVX2 only and with the portable Go code.
func TestGemmMatchesVecDot(t *testing.T) {
	modes := []struct {
		name string
		wrap func(func())
	}{
		{"simd", func(f func()) { f() }},
		{"avx2", withoutVNNI},
		{"generic", withoutSIMD},
	}
	for _, typ := range weightTypes {
		sizes := dotSizes(typ)
		for _, n := range []int{sizes[0], sizes[len(sizes)-2]} {
			for _, shape := range [][2]int{{1, 1}, {8, 1}, {8, 4}, {9, 5}, {16, 3}, {23, 9}, {40, 2}} {
				rows, cols := shape[0], shape[1]
				for _, pad := range []int{0, 7} {
					name := fmt.Sprintf("%s/n=%d/%dx%d/pad=%d", typ, n, rows, cols, pad)
					t.Run(name, func(t *testing.T) {
						for _, realistic := range []bool{false, true} {
							c := newGemmCase(t, typ, n, rows, cols, pad, realistic)
							for _, m := range modes {
								var out []float32
								m.wrap(func() { out = c.run() })
								m.wrap(func() { c.check(t, out) })
							}
						}
					})
				}
			}
		}
	}
}

// TestGemmLongRows covers rows longer than one repacked run of blocks.
func TestGemmLongRows(t *testing.T) {
	for _, typ := range []Type{Q8_0, Q4_0, Q4_K, Q5_K, Q6_K} {
		n := 64 * typ.BlockSize()
		if typ.BlockSize() == QKK {
			n = 22 * QKK
		}
		t.Run(typ.String(), func(t *testing.T) {
			c := newGemmCase(t, typ, n, 16, 6, 5, true)
			c.check(t, c.run())
		})
	}
}

func TestGemmBoundsPanic(t *testing.T) {
	for _, typ := range []Type{Q8_0, Q4_K} {
		n := typ.BlockSize() * 2
		rs, xs := typ.RowSize(n), VecDotType(typ).RowSize(n)
		w := make([]byte, 8*rs)
		x := make([]byte, 2*xs)
		out := make([]float32, 16)
		assert.Panics(t, func() { Gemm(typ, n, w[:8*rs-1], rs, 8, x, xs, 2, out, 8) }, typ.String())
		assert.Panics(t, func() { Gemm(typ, n, w, rs, 8, x[:2*xs-1], xs, 2, out, 8) }, typ.String())
		assert.Panics(t, func() { Gemm(typ, n, w, rs, 8, x, xs, 2, out[:15], 8) }, typ.String())
		assert.NotPanics(t, func() { Gemm(typ, n, w, rs, 8, x, xs, 2, out, 8) }, typ.String())
	}
}

func TestGemmDoesNotAllocate(t *testing.T) {
	for _, typ := range weightTypes {
		n := dotSizes(typ)[2]
		c := newGemmCase(t, typ, n, 16, 4, 0, true)
		out := make([]float32, 64)
		allocs := testing.AllocsPerRun(10, func() {
			Gemm(typ, n, c.w, c.stride, c.rows, c.x, c.xStride, c.cols, out, c.outStride)
		})
		assert.Zero(t, allocs, typ.String())
	}
}

// BenchmarkGemm multiplies a band of weight rows by a batch of 128 activation
// vectors, the shape of the engine's prompt pass: kernel=gemv is one Gemv per
// column (what the engine did before Gemm), kernel=gemm is Gemm with the best
// kernels, kernel=gemm-avx2 Gemm without VNNI. Compare them with
// `benchstat -col /kernel`.
func BenchmarkGemm(b *testing.B) {
	const cols = 128
	for _, typ := range []Type{Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, F16} {
		for _, s := range []struct{ rows, n int }{{64, 2048}, {64, 5632}} {
			w := randomWeights(typ, s.n, s.rows, 1)
			xt := VecDotType(typ)
			xs := xt.RowSize(s.n)
			x := make([]byte, cols*xs)
			for c := 0; c < cols; c++ {
				enc, err := Quantize(xt, randFloats(uint64(2+c), s.n, 1))
				if err != nil {
					b.Fatal(err)
				}
				copy(x[c*xs:], enc)
			}
			out := make([]float32, cols*s.rows)
			stride := typ.RowSize(s.n)
			run := func(name string, f func()) {
				b.Run(fmt.Sprintf("type=%s/shape=%dx%dx%d/kernel=%s", typ, s.rows, s.n, cols, name), func(b *testing.B) {
					for b.Loop() {
						f()
					}
					b.ReportMetric(float64(s.rows*s.n*cols)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GMAC/s")
				})
			}
			run("gemv", func() { gemmByColumns(typ, s.n, w, stride, s.rows, x, xs, cols, out, s.rows) })
			run("gemm", func() { Gemm(typ, s.n, w, stride, s.rows, x, xs, cols, out, s.rows) })
			if useVNNI {
				run("gemm-avx2", func() {
					withoutVNNI(func() { Gemm(typ, s.n, w, stride, s.rows, x, xs, cols, out, s.rows) })
				})
			}
		}
	}
}

// TestGemmKernelCoverage makes sure the kernels the tests above compare are
// the ones Gemm picks on this machine, with and without VNNI.
func TestGemmKernelCoverage(t *testing.T) {
	if !useAVX2 {
		t.Skip("no SIMD kernels on this machine")
	}
	check := func(mode string) {
		for _, typ := range []Type{Q8_0, Q4_0, Q4_K, Q5_K, Q6_K} {
			c := newGemmCase(t, typ, typ.BlockSize()*8, 8, 2, 0, true)
			out := make([]float32, 16)
			assert.True(t, gemmSIMD(typ, c.n, c.w, c.stride, 8, c.x, c.xStride, 2, out, 8), "%s %s", mode, typ)
		}
		assert.False(t, gemmSIMD(F16, 64, make([]byte, 8*128), 128, 8, make([]byte, 256), 128, 2, make([]float32, 16), 8), mode)
	}
	if useVNNI {
		check("vnni")
	}
	withoutVNNI(func() { check("avx2") })
}
