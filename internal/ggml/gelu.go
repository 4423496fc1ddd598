package ggml

import (
	"math"
	"sync"
)

// GELUMul writes gelu(g)·u to dst, GELU in its tanh form, as ggml's CPU
// backend computes it: an input in (−10, 10) is rounded to F16 and looks up
// the function's value at that F16 (itself rounded to F16); at or below −10
// GELU is 0, at or above 10 the identity. On CPUs with AVX2 eight inputs at
// a time convert with VCVTPS2PH and gather from the table, which gives the
// same bits as the scalar code. dst may be g.
func GELUMul(dst, g, u []float32) {
	n := len(g)
	u, dst = u[:n], dst[:n]
	tab := geluTable()
	nch := 0
	if useAVX2 {
		nch = n / 8
		if nch > 0 {
			geluMulAVX2(&dst[0], &g[0], &u[0], nch, &tab[0])
		}
	}
	for i := 8 * nch; i < n; i++ {
		dst[i] = gelu(tab, g[i]) * u[i]
	}
}

// gelu is GELUMul's activation of one input.
func gelu(tab *[1 << 16]float32, v float32) float32 {
	switch {
	case v <= -10:
		return 0
	case v >= 10:
		return v
	}
	return tab[F32ToF16(v)] // NaN too: the table holds NaN at NaN inputs
}

// geluTable holds GELU at every F16 input, rounded to F16 and widened back
// to float32 (exactly), so that the kernel gathers 32-bit words. It is built
// on first use: only models with a GELU gate pay for its 256 KiB.
var geluTable = sync.OnceValue(func() *[1 << 16]float32 {
	const sqrt2OverPi = 0.79788456080286535587989211986876
	const coefA = 0.044715
	var t [1 << 16]float32
	for i := range t {
		x := F16ToF32(uint16(i))
		inner := float32(sqrt2OverPi) * x * (1 + float32(coefA)*x*x)
		y := 0.5 * x * (1 + float32(math.Tanh(float64(inner))))
		t[i] = F16ToF32(F32ToF16(y))
	}
	return &t
})
