package engine

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

// expf stays within 2 ulp of float32(e^x) across the range softmax and SiLU
// use, and matches math.Exp at and beyond the edges.
func TestExpf(t *testing.T) {
	ulp := func(f float32) float64 {
		b := math.Float32bits(f)
		return float64(math.Float32frombits(b+1) - f)
	}
	worst := 0.0
	for x := float32(-90); x < 89; x += 0.00137 {
		want := float32(math.Exp(float64(x)))
		got := expf(x)
		if want == 0 || math.IsInf(float64(want), 0) {
			assert.Equal(t, want, got, "x=%g", x)
			continue
		}
		worst = math.Max(worst, math.Abs(float64(got-want))/ulp(want))
	}
	assert.LessOrEqual(t, worst, 2.0)
	assert.Equal(t, float32(1), expf(0))
	assert.True(t, math.IsNaN(float64(expf(float32(math.NaN())))))
	assert.Equal(t, float32(0), expf(float32(math.Inf(-1))))
	t.Logf("largest error %.2f ulp", worst)
}

func BenchmarkExpf(b *testing.B) {
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(i)/256 - 8
	}
	b.Run("expf", func(b *testing.B) {
		for b.Loop() {
			for _, v := range x {
				_ = expf(v)
			}
		}
	})
	b.Run("math.Exp", func(b *testing.B) {
		for b.Loop() {
			for _, v := range x {
				_ = float32(math.Exp(float64(v)))
			}
		}
	})
}
