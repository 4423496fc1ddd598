package ggml

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var weightTypes = []Type{F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K}

// dotSizes returns the vector lengths the dot tests use for weights of type t.
func dotSizes(t Type) []int {
	switch t.BlockSize() {
	case 1:
		return []int{1, 3, 8, 31, 32, 33, 64, 100, 128, 255, 1000, 2048}
	case QK:
		return []int{32, 64, 96, 256, 416, 2048 + 32}
	}
	return []int{256, 512, 2048, 5632}
}

// encodePair returns random weights encoded as t and random activations encoded
// as VecDotType(t), together with their dequantized values.
func encodePair(t *testing.T, typ Type, n int, seed uint64) (w, x []byte, wf, xf []float32) {
	t.Helper()
	var err error
	w, err = Quantize(typ, randFloats(seed, n, 0.05))
	require.NoError(t, err)
	x, err = Quantize(VecDotType(typ), randFloats(seed+1000, n, 2))
	require.NoError(t, err)
	wf, xf = make([]float32, n), make([]float32, n)
	require.NoError(t, Dequantize(typ, w, wf))
	require.NoError(t, Dequantize(VecDotType(typ), x, xf))
	return w, x, wf, xf
}

// exactDot is the float64 dot product and the sum of the products' magnitudes
// (the scale rounding errors are relative to).
func exactDot(a, b []float32) (dot, mag float64) {
	for i := range a {
		p := float64(a[i]) * float64(b[i])
		dot += p
		mag += math.Abs(p)
	}
	return dot, mag
}

func TestVecDotMatchesDequantized(t *testing.T) {
	for _, typ := range weightTypes {
		for _, n := range dotSizes(typ) {
			t.Run(fmt.Sprintf("%s/n=%d", typ, n), func(t *testing.T) {
				for seed := uint64(1); seed <= 3; seed++ {
					w, x, wf, xf := encodePair(t, typ, n, seed*uint64(n))
					want, mag := exactDot(wf, xf)
					got := VecDot(typ, n, w, x)
					assert.InDelta(t, want, float64(got), 2e-6*mag+1e-30, "seed %d", seed)
					generic := dotFunc(typ)(n, w, x)
					assert.InDelta(t, want, float64(generic), 2e-6*mag+1e-30, "generic, seed %d", seed)
				}
			})
		}
	}
}

func TestVecDotHandBuilt(t *testing.T) {
	// A Q4_K block with known scales and mins against a Q8_K block of ones: the
	// min correction must use the activation's bsums.
	w := make([]byte, 144)
	putF16(w[0:], 1)
	putF16(w[2:], 2)
	copy(w[4:], kScaleBytes[:])
	for i := 16; i < 144; i++ {
		w[i] = 0x31 // low nibble 1, high nibble 3
	}
	x, err := Quantize(Q8_K, onesTimes(256, -1)) // max -1: iscale 127, d = 1/127, q = -127
	require.NoError(t, err)
	var want float64
	for j := 0; j < 8; j++ {
		q := 1.0
		if j%2 == 1 {
			q = 3
		}
		want += 32 * (float64(kScales[j])*q - 2*float64(kMins[j])) * -1
	}
	assert.InDelta(t, want, float64(VecDot(Q4_K, 256, w, x)), 1e-3)

	// Q6_K: all quants 33 (value 1) with scale g+1 in group g, d = 0.5, against ones.
	w6 := make([]byte, 210)
	for i := 0; i < 128; i++ {
		w6[i] = 0x11
	}
	for i := 128; i < 192; i++ {
		w6[i] = 0xAA // high bits 2 everywhere: q = 1 | 2<<4 = 33
	}
	for g := 0; g < 16; g++ {
		w6[192+g] = byte(g + 1)
	}
	putF16(w6[208:], 0.5)
	x, err = Quantize(Q8_K, onesTimes(256, 1))
	require.NoError(t, err)
	assert.InDelta(t, 0.5*16*136, float64(VecDot(Q6_K, 256, w6, x)), 1e-3)
}

func onesTimes(n int, v float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestGemvMatchesVecDot(t *testing.T) {
	const rows = 7
	for _, typ := range weightTypes {
		for _, n := range dotSizes(typ)[:3] {
			for _, pad := range []int{0, 5, 64} {
				t.Run(fmt.Sprintf("%s/n=%d/pad=%d", typ, n, pad), func(t *testing.T) {
					rowSize := typ.RowSize(n)
					stride := rowSize + pad
					w := make([]byte, (rows-1)*stride+rowSize)
					for r := 0; r < rows; r++ {
						enc, err := Quantize(typ, randFloats(uint64(100*r+n), n, 0.1))
						require.NoError(t, err)
						copy(w[r*stride:], enc)
					}
					x, err := Quantize(VecDotType(typ), randFloats(7, n, 1))
					require.NoError(t, err)
					out := make([]float32, rows)
					Gemv(typ, n, w, stride, x, out)
					for r := 0; r < rows; r++ {
						assert.Equal(t, VecDot(typ, n, w[r*stride:], x), out[r], "row %d", r)
					}
				})
			}
		}
	}
}

func TestVecDotUnsupportedIsNaN(t *testing.T) {
	assert.True(t, math.IsNaN(float64(VecDot(Q2_K, 256, make([]byte, 84), make([]byte, 292)))))
}

func TestDotZeroBlocks(t *testing.T) {
	for _, typ := range weightTypes {
		n := dotSizes(typ)[2]
		w, err := Quantize(typ, make([]float32, n))
		require.NoError(t, err)
		x, err := Quantize(VecDotType(typ), make([]float32, n))
		require.NoError(t, err)
		assert.Zero(t, VecDot(typ, n, w, x), typ.String())
	}
}

// randomWeights returns rows×RowSize(n) random bytes that are valid blocks of
// t: the scale fields hold small normal F16 values so that no kernel meets
// infinities, NaNs or subnormals.
func randomWeights(typ Type, n, rows int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, rows*typ.RowSize(n))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	fix := func(off int) { putF16(b[off:], float32(rng.Float64()*0.01+0.001)) }
	switch typ {
	case F16:
		for i := 0; i < len(b); i += 2 {
			fix(i)
		}
	case BF16:
		for i := 0; i < len(b); i += 2 {
			b[i+1] = 0x3c // exponent near 2^-7, any mantissa
		}
	case F32:
		for i := 0; i < len(b); i += 4 {
			b[i+3] = 0x3c
		}
	case Q4_0, Q8_0:
		for i := 0; i < len(b); i += typ.TypeSize() {
			fix(i)
		}
	case Q4_K, Q5_K:
		for i := 0; i < len(b); i += typ.TypeSize() {
			fix(i)
			fix(i + 2)
		}
	case Q6_K:
		for i := 0; i < len(b); i += typ.TypeSize() {
			fix(i + 208)
		}
	}
	return b
}

var benchShapes = []struct{ rows, n int }{{2048, 2048}, {2048, 5632}}

func BenchmarkGemv(b *testing.B) {
	for _, typ := range weightTypes {
		for _, s := range benchShapes {
			w := randomWeights(typ, s.n, s.rows, 1)
			x, err := Quantize(VecDotType(typ), randFloats(2, s.n, 1))
			if err != nil {
				b.Fatal(err)
			}
			out := make([]float32, s.rows)
			run := func(name string, f func()) {
				b.Run(fmt.Sprintf("%s/%dx%d/%s", typ, s.rows, s.n, name), func(b *testing.B) {
					b.SetBytes(int64(len(w)))
					for b.Loop() {
						f()
					}
				})
			}
			stride := typ.RowSize(s.n)
			run("generic", func() { gemvGeneric(typ, s.n, w, stride, x, out) })
			if useAVX2 {
				run(SIMD(), func() { Gemv(typ, s.n, w, stride, x, out) })
			}
		}
	}
}

func BenchmarkVecDot(b *testing.B) {
	for _, typ := range weightTypes {
		n := 2048
		w := randomWeights(typ, n, 1, 3)
		x, err := Quantize(VecDotType(typ), randFloats(4, n, 1))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%s/n=%d", typ, n), func(b *testing.B) {
			b.SetBytes(int64(len(w)))
			for b.Loop() {
				VecDot(typ, n, w, x)
			}
		})
	}
}

func BenchmarkQuantize(b *testing.B) {
	const n = 1 << 16
	src := randFloats(5, n, 1)
	for _, typ := range []Type{F16, Q8_0, Q8_K, Q4_0, Q4_K, Q5_K, Q6_K} {
		dst := make([]byte, typ.RowSize(n))
		b.Run(typ.String(), func(b *testing.B) {
			b.SetBytes(4 * n) // float32 input
			for b.Loop() {
				if err := QuantizeInto(typ, dst, src); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
		})
	}
}

func TestHotPathsDoNotAllocate(t *testing.T) {
	for _, typ := range weightTypes {
		n := dotSizes(typ)[2]
		w, x, _, _ := encodePair(t, typ, n, 5)
		out := make([]float32, 1)
		xf := randFloats(6, n, 1)
		xq := make([]byte, VecDotType(typ).RowSize(n))
		allocs := testing.AllocsPerRun(20, func() {
			_ = VecDot(typ, n, w, x)
			Gemv(typ, n, w, len(w), x, out)
			_ = QuantizeInto(VecDotType(typ), xq, xf)
		})
		assert.Zero(t, allocs, typ.String())
	}
}
