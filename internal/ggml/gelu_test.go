package ggml

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// geluInputs are the gates the GELU tests run: every F16 value, the float32
// values halfway between neighbouring F16s (ties, which round to even) and
// one float32 ulp either side of them, the edges ±10, infinities and NaN,
// and random values at several scales.
func geluInputs() []float32 {
	var g []float32
	for h := 0; h < 1<<16; h++ {
		v := F16ToF32(uint16(h))
		g = append(g, v)
		next := F16ToF32(uint16(h + 1))
		if h&0x7fff >= 0x7bff || v != v || next != next {
			continue // the largest finite F16, infinities, NaNs
		}
		mid := (v + next) / 2 // exact: both are F16s, one more bit fits
		g = append(g, mid, math.Nextafter32(mid, float32(math.Inf(-1))), math.Nextafter32(mid, float32(math.Inf(1))))
	}
	g = append(g, -10, 10, math.Nextafter32(-10, 0), math.Nextafter32(10, 0),
		math.Nextafter32(-10, -20), math.Nextafter32(10, 20),
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 1e-30, -1e-30, 1e30, -1e30)
	rng := rand.New(rand.NewPCG(9, 9))
	for _, s := range []float64{0.01, 1, 4, 30} {
		for range 4096 {
			g = append(g, float32(rng.NormFloat64()*s))
		}
	}
	return g
}

// TestGELUMulMatchesScalar: the vector kernel gives the scalar definition's
// bits for every input geluInputs holds (every F16 value and every rounding
// tie), at every length around the 8-element steps, in place too.
func TestGELUMulMatchesScalar(t *testing.T) {
	g := geluInputs()
	tab := geluTable()
	rng := rand.New(rand.NewPCG(3, 4))
	u := make([]float32, len(g))
	for i := range u {
		u[i] = float32(rng.NormFloat64())
	}
	u[0] = 1 // one plain gelu(+0)
	for _, n := range []int{1, 7, 8, 9, 17, 100, len(g)} {
		got := make([]float32, n+2)
		GELUMul(got[:n], g[:n], u[:n])
		for i := 0; i < n; i++ {
			want := gelu(tab, g[i]) * u[i]
			require.Equal(t, math.Float32bits(want), math.Float32bits(got[i]),
				"n=%d g=%v (%08x) u=%v: %v, want %v", n, g[i], math.Float32bits(g[i]), u[i], got[i], want)
		}
		assert.Equal(t, []float32{0, 0}, got[n:], "n=%d: wrote past len(g)", n)
		in := append([]float32(nil), g[:n]...)
		GELUMul(in, in, u[:n])
		for i := range in {
			require.Equal(t, math.Float32bits(got[i]), math.Float32bits(in[i]), "in place, n=%d element %d", n, i)
		}
	}
}

// TestGELUValues pins the function itself: 0 and the identity beyond ±10,
// the tanh form in between (to F16 precision), NaN kept.
func TestGELUValues(t *testing.T) {
	for _, c := range []struct{ g, want float32 }{
		{-10, 0}, {-1e30, 0}, {10, 10}, {123.5, 123.5}, {0, 0},
		{1, 0.8413}, {-1, -0.1587}, {2, 1.9546}, {-3, -0.0036},
	} {
		dst := make([]float32, 9)
		g := []float32{c.g, c.g, c.g, c.g, c.g, c.g, c.g, c.g, c.g} // vector and tail
		GELUMul(dst, g, []float32{1, 1, 1, 1, 1, 1, 1, 1, 1})
		for _, v := range dst {
			assert.InDelta(t, c.want, v, 2e-3, "gelu(%v)", c.g)
		}
	}
	dst := make([]float32, 8)
	nan := float32(math.NaN())
	GELUMul(dst, []float32{nan, nan, nan, nan, nan, nan, nan, nan}, []float32{1, 1, 1, 1, 1, 1, 1, 1})
	assert.True(t, dst[0] != dst[0], "NaN stays NaN")
}

func BenchmarkGELUMul(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 9216 // Gemma 2 2B's feed-forward width
	g, u := make([]float32, n), make([]float32, n)
	for i := range g {
		g[i], u[i] = float32(rng.NormFloat64()*2), float32(rng.NormFloat64())
	}
	dst := make([]float32, n)
	for _, level := range []string{"generic", "avx2"} {
		b.Run(level, func(b *testing.B) {
			defer LimitSIMD(level)()
			b.SetBytes(4 * n)
			for b.Loop() {
				GELUMul(dst, g, u)
			}
		})
	}
}
