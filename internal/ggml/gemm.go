package ggml

// Gemm computes out[c*outStride + r] = VecDot(t, n, w[r*stride:], x[c*xStride:])
// for r < rows and c < cols: rows of a weight matrix (stride bytes apart)
// against cols activation vectors encoded as VecDotType(t) (xStride bytes
// apart). It is the batched form of [Gemv]: the prompt of a language model
// multiplies every weight matrix by many tokens at once, and a kernel that
// decodes each block of weights once for several tokens does far less work
// per product than one Gemv per token.
//
// The integer sums inside blocks are exact, as in VecDot; the float
// combination of the blocks may round differently from VecDot's (within
// float32 rounding of the same terms). Like Gemv, Gemm neither allocates nor
// validates beyond slice bounds checks (short slices panic).
func Gemm(t Type, n int, w []byte, stride, rows int, x []byte, xStride, cols int, out []float32, outStride int) {
	if rows <= 0 || cols <= 0 {
		return
	}
	if cols > 1 && gemmSIMD(t, n, w, stride, rows, x, xStride, cols, out, outStride) {
		return
	}
	gemmByColumns(t, n, w, stride, rows, x, xStride, cols, out, outStride)
}

// gemmByColumns is Gemm as one Gemv per activation vector.
func gemmByColumns(t Type, n int, w []byte, stride, rows int, x []byte, xStride, cols int, out []float32, outStride int) {
	_ = out[(cols-1)*outStride+rows-1] // against len, as in the kernels
	for c := 0; c < cols; c++ {
		Gemv(t, n, w, stride, x[c*xStride:], out[c*outStride:c*outStride+rows])
	}
}
