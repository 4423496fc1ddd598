package ggml

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSIMDMatchesGeneric runs the assembly kernels (through Gemv) and the
// portable Go kernels on the same data, many shapes, random blocks with every
// bit pattern in the quants as well as realistic quantized rows.
func TestSIMDMatchesGeneric(t *testing.T) {
	if !useAVX2 {
		t.Skip("no SIMD kernels on this machine")
	}
	for _, typ := range weightTypes {
		for _, n := range dotSizes(typ) {
			for _, rows := range []int{1, 3, 8} {
				for _, pad := range []int{0, 13} {
					name := fmt.Sprintf("%s/n=%d/rows=%d/pad=%d", typ, n, rows, pad)
					t.Run(name, func(t *testing.T) {
						checkSIMD(t, typ, n, rows, pad)
					})
				}
			}
		}
	}
}

func checkSIMD(t *testing.T, typ Type, n, rows, pad int) {
	rowSize := typ.RowSize(n)
	stride := rowSize + pad
	seed := uint64(n*31 + rows*7 + pad)
	for _, realistic := range []bool{false, true} {
		w := make([]byte, (rows-1)*stride+rowSize)
		for r := 0; r < rows; r++ {
			var enc []byte
			if realistic {
				var err error
				enc, err = Quantize(typ, randFloats(seed+uint64(r), n, 0.05))
				require.NoError(t, err)
			} else {
				enc = randomWeights(typ, n, 1, seed+uint64(r))
			}
			copy(w[r*stride:], enc)
		}
		xf := randFloats(seed+99, n, 1)
		x, err := Quantize(VecDotType(typ), xf)
		require.NoError(t, err)

		got := make([]float32, rows)
		Gemv(typ, n, w, stride, x, got)
		want := make([]float32, rows)
		gemvGeneric(typ, n, w, stride, x, want)

		xd := make([]float32, n)
		require.NoError(t, Dequantize(VecDotType(typ), x, xd))
		wd := make([]float32, n)
		for r := 0; r < rows; r++ {
			require.NoError(t, Dequantize(typ, w[r*stride:], wd))
			_, mag := exactDot(wd, xd)
			assert.InDelta(t, want[r], got[r], 2e-6*mag+1e-30, "row %d realistic=%v", r, realistic)
		}
	}
}

func TestSIMDBoundsPanic(t *testing.T) {
	if !useAVX2 {
		t.Skip("no SIMD kernels on this machine")
	}
	w := make([]byte, 2*144-1) // two Q4_K rows, one byte short
	x := make([]byte, 292)
	assert.Panics(t, func() { Gemv(Q4_K, 256, w, 144, x, make([]float32, 2)) })
	assert.Panics(t, func() { Gemv(Q4_K, 256, w, 144, x[:291], make([]float32, 1)) })
	assert.Panics(t, func() { Gemv(F16, 40, make([]byte, 79), 80, make([]byte, 80), make([]float32, 1)) })
	assert.NotPanics(t, func() { Gemv(Q4_K, 256, w, 144, x, make([]float32, 1)) })
}

// withoutSIMD runs f with the assembly kernels switched off.
func withoutSIMD(f func()) {
	savedAVX2, savedVNNI := useAVX2, useVNNI
	useAVX2, useVNNI = false, false
	defer func() { useAVX2, useVNNI = savedAVX2, savedVNNI }()
	f()
}

// withoutVNNI runs f with the AVX-512 VNNI kernels switched off (AVX2 only).
func withoutVNNI(f func()) {
	saved := useVNNI
	useVNNI = false
	defer func() { useVNNI = saved }()
	f()
}

func TestFitSumsSIMDBitIdentical(t *testing.T) {
	if !useAVX2 {
		t.Skip("no SIMD kernels on this machine")
	}
	for seed := uint64(1); seed <= 50; seed++ {
		x := randFloats(seed, 32, float32(seed))
		if seed%5 == 0 {
			x[3] = float32(math.NaN())
		}
		var d fitData
		for i, v := range x {
			d.x[i] = abs32(v)
			d.w[i] = 1 + abs32(v)
			d.wx[i] = d.w[i] * v
		}
		iscales := []float32{0.1, 1, 3.3, 7.5 / float32(seed), 15, 31.7, 1e9}
		got := make([]float32, 3*len(iscales))
		want := make([]float32, 3*len(iscales))
		affineSums(&d, iscales, 15, got)
		affineSumsGo(&d, iscales, 15, want)
		requireSameBits(t, want, got, "affine seed %d", seed)

		sym := []float32{-32, 32, -31.1, 33.3, 5.5, -1e10}
		got, want = got[:2*len(sym)], want[:2*len(sym)]
		symSums(&d, sym, -32, 31, got)
		symSumsGo(&d, sym, -32, 31, want)
		requireSameBits(t, want, got, "symmetric seed %d", seed)
	}
}

func requireSameBits(t *testing.T, want, got []float32, msg string, args ...any) {
	t.Helper()
	for i := range want {
		require.Equal(t, math.Float32bits(want[i]), math.Float32bits(got[i]), "%s: index %d: %v vs %v", fmt.Sprintf(msg, args...), i, want[i], got[i])
	}
}

func TestQuantizeSameWithoutSIMD(t *testing.T) {
	if !useAVX2 {
		t.Skip("no SIMD kernels on this machine")
	}
	x := randFloats(77, 4096, 0.3)
	for i := 0; i < len(x); i += 97 {
		x[i] *= 40 // outliers
	}
	for _, typ := range []Type{Q4_K, Q5_K, Q6_K} {
		simd, err := Quantize(typ, x)
		require.NoError(t, err)
		var generic []byte
		withoutSIMD(func() { generic, err = Quantize(typ, x) })
		require.NoError(t, err)
		assert.Equal(t, generic, simd, typ.String())
	}
}

// TestQuantizeQ8_0SIMDBitIdentical compares the assembly Q8_0 quantizer with
// the Go one on blocks of every scale, zeros, ties and subnormals.
func TestQuantizeQ8_0SIMDBitIdentical(t *testing.T) {
	if !useAVX2 {
		t.Skip("no SIMD kernels on this machine")
	}
	var x []float32
	for _, scale := range []float32{1e-30, 1e-6, 0.02, 1, 3, 1000, 6e4, 1e30} {
		x = append(x, randFloats(uint64(scale*7)+1, 32*8, scale)...)
	}
	x = append(x, make([]float32, 32)...) // an all-zero block
	ties := make([]float32, 32)
	ties[0] = 127
	for i := 1; i < 32; i++ {
		ties[i] = float32(i) - 16.5 // every .5 rounds to even
	}
	x = append(x, ties...)
	sub := make([]float32, 32)
	for i := range sub {
		sub[i] = math.Float32frombits(uint32(i*977 + 1)) // subnormals
	}
	x = append(x, sub...)
	got := make([]byte, Q8_0.RowSize(len(x)))
	quantizeRowQ8_0(got, x)
	want := make([]byte, len(got))
	quantizeRowQ8_0Go(want, x)
	for b := 0; b < len(x)/32; b++ {
		require.Equal(t, want[34*b:34*b+34], got[34*b:34*b+34], "block %d", b)
	}
}

// TestQuantizeQ8KSIMDBitIdentical compares the assembly Q8_K quantizer with
// the Go one: blocks of many scales, zeros, ties of magnitude with either
// sign first, and subnormals.
func TestQuantizeQ8KSIMDBitIdentical(t *testing.T) {
	if !useAVX2 {
		t.Skip("no SIMD kernels on this machine")
	}
	var x []float32
	for _, scale := range []float32{1e-30, 1e-6, 0.02, 1, 3, 1000, 6e4, 1e30} {
		x = append(x, randFloats(uint64(scale*13)+3, 256*3, scale)...)
	}
	x = append(x, make([]float32, 256)...)   // all zero
	for _, first := range []float32{-2, 2} { // equal magnitudes, the first wins
		tie := randFloats(5, 256, 1)
		tie[37], tie[200] = first, -first
		x = append(x, tie...)
	}
	half := make([]float32, 256)
	half[3] = -127
	for i := 4; i < 256; i++ {
		half[i] = float32(i%64) - 31.5 // ties to even
	}
	x = append(x, half...)
	sub := make([]float32, 256)
	for i := range sub {
		sub[i] = math.Float32frombits(uint32(i*7919+1) & 0x807fffff) // subnormals of both signs
	}
	x = append(x, sub...)
	got := make([]byte, Q8_K.RowSize(len(x)))
	quantizeRowQ8K(got, x)
	want := make([]byte, len(got))
	quantizeRowQ8KGo(want, x)
	for b := 0; b < len(x)/256; b++ {
		require.Equal(t, want[292*b:292*b+292], got[292*b:292*b+292], "block %d", b)
	}
}

// TestF16ShortRowsBitIdentical: F16 rows shorter than one 32-element chunk
// (the attention's first positions) take the float64 tail path, which must
// give dotF16's bits exactly.
func TestF16ShortRowsBitIdentical(t *testing.T) {
	for _, n := range []int{1, 2, 7, 16, 31} {
		for _, rows := range []int{1, 3, 4, 9} {
			stride := 2*n + 6
			wm := make([]byte, (rows-1)*stride+2*n)
			for r := 0; r < rows; r++ {
				copy(wm[r*stride:], randomWeights(F16, n, 1, uint64(n*rows+r)))
			}
			x := randomWeights(F16, n, 1, uint64(n+100))
			got := make([]float32, rows)
			Gemv(F16, n, wm, stride, x, got)
			want := make([]float32, rows)
			gemvGeneric(F16, n, wm, stride, x, want)
			requireSameBits(t, want, got, "n=%d rows=%d", n, rows)
		}
	}
}
