package ggml

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
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

// BenchmarkSoftcap is Gemma 2's final soft-cap over a 32k vocabulary, with
// Tanh32 and with math.Tanh.
func BenchmarkSoftcap(b *testing.B) {
	x := make([]float32, 32000)
	for i := range x {
		x[i] = float32(i%200-100) / 7
	}
	y := make([]float32, len(x))
	b.Run("Tanh32", func(b *testing.B) {
		for b.Loop() {
			copy(y, x)
			Softcap(y, 30)
		}
	})
	b.Run("math.Tanh", func(b *testing.B) {
		for b.Loop() {
			copy(y, x)
			for i, v := range y {
				y[i] = float32(math.Tanh(float64(v*(1.0/30)))) * 30
			}
		}
	})
}
