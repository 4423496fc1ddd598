package ggml

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTanh32 checks Tanh32 against float64 tanh rounded to float32 at
// every 64th float32 from 2⁻¹²⁶ up to 20, both signs (about 4 million
// values covering every exponent): at most one unit in the last place apart.
func TestTanh32(t *testing.T) {
	worst, off := 0, 0
	for bits := math.Float32bits(0x1p-126); bits <= math.Float32bits(20); bits += 64 {
		for _, y := range []float32{math.Float32frombits(bits), -math.Float32frombits(bits)} {
			want := float32(math.Tanh(float64(y)))
			got := Tanh32(y)
			d := int(math.Float32bits(got)) - int(math.Float32bits(want))
			d = max(d, -d)
			worst = max(worst, d)
			if d != 0 {
				off++
			}
			if d > 1 {
				t.Fatalf("Tanh32(%g) = %g, want %g (%d ulp apart)", y, got, want, d)
			}
		}
	}
	t.Logf("largest difference %d ulp; %d values not equal", worst, off)
	assert.Equal(t, float32(0), Tanh32(0))
	assert.Equal(t, float32(1), Tanh32(100))
	assert.Equal(t, float32(-1), Tanh32(-100))
	assert.Equal(t, float32(1), Tanh32(float32(math.Inf(1))))
	assert.True(t, math.IsNaN(float64(Tanh32(float32(math.NaN())))))
}

// TestSoftcapMatchesScalar: the vector kernel gives Tanh32(x/cp)·cp bit for
// bit at every 997th float32 from 2⁻¹²⁶ to 10⁴ (both signs), around the
// formulas' boundaries (0.5 and 9 after scaling), at ±0, infinities and NaN,
// for lengths around its 4-element steps.
func TestSoftcapMatchesScalar(t *testing.T) {
	const cp = 30
	x := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 1e-40}
	for _, b := range []float32{0.5 * cp, 9 * cp} {
		for _, y := range []float32{b, math.Nextafter32(b, 0), math.Nextafter32(b, 1e9)} {
			x = append(x, y, -y)
		}
	}
	for bits := math.Float32bits(0x1p-126); bits <= math.Float32bits(1e4); bits += 997 {
		x = append(x, math.Float32frombits(bits), -math.Float32frombits(bits))
	}
	for _, n := range []int{1, 3, 4, 5, 9, len(x)} {
		got := append([]float32(nil), x[:n]...)
		Softcap(got, cp)
		for i, v := range x[:n] {
			want := Tanh32(v*(1/float32(cp))) * cp
			if want != want {
				require.True(t, got[i] != got[i], "NaN stays NaN")
				continue
			}
			require.Equal(t, math.Float32bits(want), math.Float32bits(got[i]), "n=%d x=%g (%08x): %g, want %g", n, v, math.Float32bits(v), got[i], want)
		}
	}
}

// BenchmarkSoftcap is Gemma 2's final soft-cap over a 32k vocabulary: the
// portable Tanh32, the vector kernel, and math.Tanh.
func BenchmarkSoftcap(b *testing.B) {
	x := make([]float32, 32000)
	for i := range x {
		x[i] = float32(i%200-100) / 7
	}
	y := make([]float32, len(x))
	for _, level := range []string{"generic", "avx2"} {
		b.Run(level, func(b *testing.B) {
			defer LimitSIMD(level)()
			for b.Loop() {
				copy(y, x)
				Softcap(y, 30)
			}
		})
	}
	b.Run("math.Tanh", func(b *testing.B) {
		for b.Loop() {
			copy(y, x)
			for i, v := range y {
				y[i] = float32(math.Tanh(float64(v*(1.0/30)))) * 30
			}
		}
	})
}
