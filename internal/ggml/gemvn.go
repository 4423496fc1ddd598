package ggml

// GemvN computes the same products as [Gemm] (out[c*outStride + r] for
// r < rows and c < cols), with kernels made for a few activation vectors: the
// decode steps of several generations sharing one forward pass. Each weight
// row is read once, block by block as stored, and every block is multiplied
// by up to four vectors while it is in registers; Gemm instead repacks the
// weights into tiles first, which pays off only over many vectors (a prompt).
//
// GemvNMaxCols is the batch size up to which GemvN is the faster of the two
// on the machines we measured; GemvN still gives correct results beyond it.
// Types without a small-batch kernel (and machines without AVX2) run Gemm.
// Like Gemm, GemvN neither allocates nor validates beyond slice bounds
// checks, and may round the float combination of blocks differently from
// VecDot, within float32 rounding of the same terms.
func GemvN(t Type, n int, w []byte, stride, rows int, x []byte, xStride, cols int, out []float32, outStride int) {
	if rows <= 0 || cols <= 0 {
		return
	}
	if cols > 1 && gemvnSIMD(t, n, w, stride, rows, x, xStride, cols, out, outStride) {
		return
	}
	Gemm(t, n, w, stride, rows, x, xStride, cols, out, outStride)
}

// GemvNMaxCols is the largest batch for which GemvN beats Gemm (see GemvN).
const GemvNMaxCols = 16
