package ggml

// SiLUMul writes silu(g)·u to dst, silu(x) = x/(1+e^-x) (SwiGLU's gate),
// with Expf's arithmetic, eight at a time on CPUs with AVX2. dst may be g.
func SiLUMul(dst, g, u []float32) {
	n := len(g)
	u, dst = u[:n], dst[:n]
	nch := 0
	if useAVX2 {
		nch = n / 8
		if nch > 0 {
			siluMulAVX2(&dst[0], &g[0], &u[0], nch)
		}
	}
	for i := 8 * nch; i < n; i++ {
		v := g[i]
		dst[i] = v / (1 + Expf(-v)) * u[i]
	}
}
