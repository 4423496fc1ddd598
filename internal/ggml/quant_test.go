package ggml

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var convertTypes = []Type{F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K, Q8_K}

func randFloats(seed uint64, n int, scale float32) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(rng.NormFloat64()) * scale
	}
	return out
}

func rms(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s / float64(len(x)))
}

func relRMSErr(want, got []float32) float64 {
	diff := make([]float32, len(want))
	for i := range want {
		diff[i] = got[i] - want[i]
	}
	return rms(diff) / rms(want)
}

func roundTrip(t *testing.T, typ Type, x []float32) []float32 {
	t.Helper()
	enc, err := Quantize(typ, x)
	require.NoError(t, err)
	require.Len(t, enc, typ.RowSize(len(x)))
	out := make([]float32, len(x))
	require.NoError(t, Dequantize(typ, enc, out))
	for i, v := range out {
		require.False(t, math.IsNaN(float64(v)) || math.IsInf(float64(v), 0), "%s element %d is %v", typ, i, v)
	}
	return out
}

func TestRoundTripError(t *testing.T) {
	// Relative RMS error bounds on Gaussian data (measured values are about 70 %
	// of these).
	bounds := map[Type]float64{F32: 0, F16: 4e-4, BF16: 3e-3, Q8_0: 0.006, Q8_K: 0.009,
		Q6_K: 0.025, Q5_K: 0.045, Q4_K: 0.09, Q4_0: 0.13}
	for _, typ := range convertTypes {
		t.Run(typ.String(), func(t *testing.T) {
			x := randFloats(uint64(typ)+1, 4096, 0.02)
			got := roundTrip(t, typ, x)
			e := relRMSErr(x, got)
			t.Logf("%s relative RMS error %.5f", typ, e)
			assert.LessOrEqual(t, e, bounds[typ])
		})
	}
}

func TestRoundTripDeterministic(t *testing.T) {
	x := randFloats(7, 1024, 1)
	for _, typ := range convertTypes {
		a, err := Quantize(typ, x)
		require.NoError(t, err)
		b, err := Quantize(typ, x)
		require.NoError(t, err)
		assert.Equal(t, a, b, typ.String())
	}
}

func TestWeightQuantAccuracyMatchesLlamaCpp(t *testing.T) {
	// Relative RMS errors of llama.cpp's reference quantizers (quantize_row_*_ref
	// of ggml at 2025-02, measured on 2^20 Gaussian values and on their cubes),
	// with 3 % headroom: the encoders here are not bit-identical but must be as
	// accurate.
	llama := map[bool]map[Type]float64{
		false: {Q4_K: 0.07130, Q5_K: 0.03608, Q6_K: 0.01771, Q4_0: 0.08589},
		true:  {Q4_K: 0.08973, Q5_K: 0.04958, Q6_K: 0.02449, Q4_0: 0.11024},
	}
	for _, cube := range []bool{false, true} {
		x := randFloats(21, 1<<16, 1)
		if cube { // heavy tails, as in real weights
			for i := range x {
				x[i] = x[i] * x[i] * x[i]
			}
		}
		for typ, ref := range llama[cube] {
			e := relRMSErr(x, roundTrip(t, typ, x))
			t.Logf("cube=%v %s: %.5f (llama.cpp %.5f)", cube, typ, e, ref)
			assert.LessOrEqual(t, e, 1.03*ref, "cube=%v %s", cube, typ)
		}
	}
}

func TestFitScaleMinSearchHelps(t *testing.T) {
	// The candidate search never does worse than the plain min/max fit it starts
	// from, and does clearly better on average.
	x := randFloats(13, 32*500, 1)
	var sumSearch, sumPlain float64
	for b := 0; b < 500; b++ {
		xs := (*[32]float32)(x[32*b:])
		var w [32]float32
		for i, v := range xs {
			w[i] = 1 + abs32(v)
		}
		errOf := func(scale, negMin float32) float64 {
			var e float64
			for i, v := range xs {
				l := max(0, min(15, nearestInt((v+negMin)/scale)))
				d := float64(scale*float32(l) - negMin - v)
				e += float64(w[i]) * d * d
			}
			return e
		}
		es := errOf(fitScaleMin(xs, &w, 15, -1, 0.1, 20))
		ep := errOf(fitScaleMin(xs, &w, 15, -1, 0.1, -1))
		require.LessOrEqual(t, es, ep*1.0001, "block %d", b)
		sumSearch += es
		sumPlain += ep
	}
	t.Logf("search %.3f, plain %.3f", sumSearch, sumPlain)
	assert.Less(t, sumSearch, 0.9*sumPlain)
}

func TestEdgeCases(t *testing.T) {
	zeros := make([]float32, 512)
	huge := randFloats(3, 512, 1)
	huge[100] = 3000
	negMax := randFloats(4, 512, 1)
	negMax[300] = -50
	constant := make([]float32, 512)
	for i := range constant {
		constant[i] = 0.75
	}
	for _, typ := range convertTypes {
		t.Run(typ.String(), func(t *testing.T) {
			for _, v := range roundTrip(t, typ, zeros) {
				require.Zero(t, v)
			}
			got := roundTrip(t, typ, huge)
			assert.InEpsilon(t, 3000, got[100], 0.02, "huge value")
			got = roundTrip(t, typ, negMax)
			assert.InEpsilon(t, -50, got[300], 0.02, "negative max")
			got = roundTrip(t, typ, constant)
			assert.InEpsilon(t, 0.75, got[0], 0.02, "constant")
			assert.InEpsilon(t, 0.75, got[511], 0.02, "constant")
		})
	}
}

func TestQuantizeNonFiniteDoesNotPanic(t *testing.T) {
	x := randFloats(5, 256, 1)
	x[3] = float32(math.NaN())
	x[77] = float32(math.Inf(1))
	x[200] = float32(math.Inf(-1))
	for _, typ := range convertTypes {
		_, err := Quantize(typ, x)
		assert.NoError(t, err, typ.String())
	}
}

func TestQ8_0MatchesAVX2Rule(t *testing.T) {
	t.Run("ties to even, id = 127/amax", func(t *testing.T) {
		x := make([]float32, 32)
		x[0] = 127 // amax 127: d = 1, id = 1
		x[1], x[2], x[3], x[4] = 2.5, 3.5, -0.5, -3.5
		enc, err := Quantize(Q8_0, x)
		require.NoError(t, err)
		assert.Equal(t, uint16(0x3c00), binary.LittleEndian.Uint16(enc))
		assert.Equal(t, []int8{127, 2, 4, 0, -4}, []int8{int8(enc[2]), int8(enc[3]), int8(enc[4]), int8(enc[5]), int8(enc[6])})
	})
	t.Run("random blocks", func(t *testing.T) {
		x := randFloats(9, 32*200, 3)
		enc, err := Quantize(Q8_0, x)
		require.NoError(t, err)
		for b := 0; b < 200; b++ {
			blk := x[32*b : 32*b+32]
			var amax float32
			for _, v := range blk {
				amax = max(amax, float32(math.Abs(float64(v))))
			}
			id := 127 / amax
			assert.Equal(t, F32ToF16(amax/127), binary.LittleEndian.Uint16(enc[34*b:]))
			for j, v := range blk {
				want := int8(math.RoundToEven(float64(v * id)))
				require.Equal(t, want, int8(enc[34*b+2+j]), "block %d element %d", b, j)
			}
		}
	})
}

func TestQ8KMatchesReference(t *testing.T) {
	t.Run("hand block", func(t *testing.T) {
		x := make([]float32, 256)
		x[0] = -127 // signed max: iscale = 1, d = 1
		x[1], x[2], x[3], x[17] = 2.5, 3.5, -0.5, 127
		enc, err := Quantize(Q8_K, x)
		require.NoError(t, err)
		assert.Equal(t, float32(1), math.Float32frombits(binary.LittleEndian.Uint32(enc)))
		assert.Equal(t, []int8{-127, 2, 4, 0}, []int8{int8(enc[4]), int8(enc[5]), int8(enc[6]), int8(enc[7])})
		assert.Equal(t, int8(127), int8(enc[4+17]))
		assert.Equal(t, int16(-127+2+4), int16(binary.LittleEndian.Uint16(enc[260:])))
		assert.Equal(t, int16(127), int16(binary.LittleEndian.Uint16(enc[262:])))
	})
	t.Run("positive max gives negative d", func(t *testing.T) {
		x := make([]float32, 256)
		x[5], x[6] = 63.5, -10
		enc, err := Quantize(Q8_K, x)
		require.NoError(t, err)
		assert.Equal(t, float32(1)/(-127/float32(63.5)), math.Float32frombits(binary.LittleEndian.Uint32(enc)))
		assert.Equal(t, int8(-127), int8(enc[4+5]))
		assert.Equal(t, int8(20), int8(enc[4+6]))
	})
	t.Run("random blocks", func(t *testing.T) {
		x := randFloats(10, 256*20, 2)
		enc, err := Quantize(Q8_K, x)
		require.NoError(t, err)
		for b := 0; b < 20; b++ {
			blk := x[256*b : 256*b+256]
			var amax, vmax float32
			for _, v := range blk {
				if a := float32(math.Abs(float64(v))); a > amax {
					amax, vmax = a, v
				}
			}
			iscale := -127 / vmax
			o := enc[292*b:]
			assert.Equal(t, 1/iscale, math.Float32frombits(binary.LittleEndian.Uint32(o)))
			for g := 0; g < 16; g++ {
				var sum int
				for j := 16 * g; j < 16*g+16; j++ {
					want := int8(min(127, math.RoundToEven(float64(iscale*blk[j]))))
					require.Equal(t, want, int8(o[4+j]), "block %d element %d", b, j)
					sum += int(want)
				}
				assert.Equal(t, int16(sum), int16(binary.LittleEndian.Uint16(o[260+2*g:])))
			}
		}
	})
}

func TestNearestInt(t *testing.T) {
	cases := map[float32]int32{0: 0, 0.5: 0, 1.5: 2, 2.5: 2, -0.5: 0, -1.5: -2, -2.6: -3, 1e9: 4194303, -1e9: -4194303}
	for in, want := range cases {
		assert.Equal(t, want, nearestInt(in), "nearestInt(%v)", in)
	}
	assert.Equal(t, int32(0), nearestInt(float32(math.NaN())))
}

func TestConversionErrors(t *testing.T) {
	cases := []struct {
		name string
		run  func() error
		want error
	}{
		{"dequantize unsupported", func() error { return Dequantize(Q2_K, make([]byte, 84), make([]float32, 256)) }, ErrUnsupportedType},
		{"dequantize unknown", func() error { return Dequantize(Type(99), nil, nil) }, ErrUnsupportedType},
		{"dequantize partial block", func() error { return Dequantize(Q4_K, make([]byte, 144), make([]float32, 100)) }, ErrLength},
		{"dequantize short source", func() error { return Dequantize(Q8_0, make([]byte, 33), make([]float32, 32)) }, ErrLength},
		{"quantize unsupported", func() error { _, err := Quantize(IQ4_NL, make([]float32, 32)); return err }, ErrUnsupportedType},
		{"quantize partial block", func() error { _, err := Quantize(Q6_K, make([]float32, 300)); return err }, ErrLength},
		{"quantize into short", func() error { return QuantizeInto(Q8_K, make([]byte, 291), make([]float32, 256)) }, ErrLength},
		{"quantize into partial", func() error { return QuantizeInto(Q8_0, make([]byte, 100), make([]float32, 31)) }, ErrLength},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.ErrorIs(t, c.run(), c.want)
		})
	}
	// Empty input is valid and writes nothing.
	assert.NoError(t, Dequantize(Q4_K, nil, nil))
	enc, err := Quantize(Q4_K, nil)
	assert.NoError(t, err)
	assert.Empty(t, enc)
}

func TestQuantizeIntoMatchesQuantize(t *testing.T) {
	x := randFloats(12, 512, 1)
	for _, typ := range convertTypes {
		want, err := Quantize(typ, x)
		require.NoError(t, err)
		dst := make([]byte, len(want)+5)
		for i := range dst {
			dst[i] = 0xAA
		}
		require.NoError(t, QuantizeInto(typ, dst, x))
		assert.Equal(t, want, dst[:len(want)], typ.String())
		assert.Equal(t, []byte{0xAA, 0xAA, 0xAA, 0xAA, 0xAA}, dst[len(want):], typ.String())
	}
}

func TestVecDotType(t *testing.T) {
	want := map[Type]Type{F32: F32, F16: F16, BF16: BF16, Q4_0: Q8_0, Q8_0: Q8_0, Q4_K: Q8_K, Q5_K: Q8_K, Q6_K: Q8_K, Q2_K: F32}
	for w, x := range want {
		assert.Equal(t, x, VecDotType(w), w.String())
	}
}
