package ggml

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestSiLUMulMatchesScalar: the kernel gives the scalar formula's float32
// result exactly where e^-g is a normal float, the same to float32 precision
// beyond, and keeps NaN; lengths that are not multiples of 8 too.
func TestSiLUMulMatchesScalar(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 7, 8, 9, 100, 5632} {
		g, u := make([]float32, n), make([]float32, n)
		for i := range g {
			g[i] = float32(rng.NormFloat64() * 6)
			u[i] = float32(rng.NormFloat64())
		}
		if n >= 8 {
			g[0], g[1], g[2], g[3] = float32(math.NaN()), -95, 95, 0
		}
		got := make([]float32, n)
		SiLUMul(got, g, u)
		for i, v := range g {
			want := v / (1 + Expf(-v)) * u[i]
			switch {
			case v != v:
				assert.True(t, got[i] != got[i], "NaN stays NaN")
			case v > -87 && v < 87:
				assert.Equal(t, want, got[i], "g=%v", v)
			default:
				assert.InDelta(t, want, got[i], 1e-30+1e-6*math.Abs(float64(want)), "g=%v", v)
			}
		}
		// In place, as the engine calls it.
		SiLUMul(g, g, u)
		skip := 0 // the NaN
		if n >= 8 {
			skip = 1
		}
		assert.Equal(t, got[skip:], g[skip:])
	}
}
