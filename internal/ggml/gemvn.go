package ggml

// GemvN computes the same products as [Gemm] (out[c*outStride + r] for
// r < rows and c < cols), with kernels made for a few activation vectors: the
// decode steps of several generations sharing one forward pass. Each weight
// row is read once, block by block as stored, and every block is multiplied
// by up to four vectors (eight with AVX-512) while it is in registers; Gemm instead repacks the
// weights into tiles first, which pays off only over many vectors (a prompt).
//
// The kernels cover Q4_K and Q6_K (the weights of Q4_K_M models), whose
// blocks take real work to decode; other types, and machines without AVX2,
// run Gemm. GemvNMaxCols is the batch size up to which GemvN was the faster
// of the two in our measurements; beyond it GemvN is still correct, but
// Gemm's repacking pays for itself.
// Like Gemm, GemvN validates nothing beyond slice bounds checks, and may
// round the float combination of blocks differently from VecDot, within
// float32 rounding of the same terms. It allocates nothing once warm: what
// it derives from the activations on AVX-512 (a few floats per block and
// vector, and a reordered or aligned copy of the activations, for Q4_K two
// vectors side by side) lives in pooled buffers that grow to the largest
// call.
func GemvN(t Type, n int, w []byte, stride, rows int, x []byte, xStride, cols int, out []float32, outStride int) {
	if rows <= 0 || cols <= 0 {
		return
	}
	if cols > 1 && gemvnSIMD(t, n, w, stride, rows, x, xStride, cols, out, outStride, nil) {
		return
	}
	Gemm(t, n, w, stride, rows, x, xStride, cols, out, outStride)
}

// GemvNActs is a set of activation vectors made ready once for any number
// of GemvN products over them, such as the bands of rows of one matrix that
// a forward pass spreads over its threads. On CPUs with AVX-512 VNNI the
// kernels read the activations reordered and aligned, with a few floats per
// block derived from them; GemvN makes those on every call, Prepare once.
// The zero value is ready for Prepare, and keeps its buffers from one
// Prepare to the next. Prepare must not run while GemvN calls on the same
// GemvNActs do; GemvN calls may run concurrently with each other.
type GemvNActs struct {
	t        Type
	n        int
	x        []byte
	xStride  int
	cols     int
	prepared bool
	z        gemvnPrepared
	bufs     gemvnBufs
}

// Prepare readies cols activation vectors of n elements, encoded as
// VecDotType(t) at x (xStride bytes apart), for products with weights of
// type t. x must not change while they are in use.
func (a *GemvNActs) Prepare(t Type, n int, x []byte, xStride, cols int) {
	a.t, a.n, a.x, a.xStride, a.cols = t, n, x, xStride, cols
	a.prepared = cols > 1 && gemvnActsPrepare(a)
}

// GemvN is [GemvN] with weights of the prepared type and n columns and the
// prepared activations: out[c*outStride + r] for r < rows and c < cols.
func (a *GemvNActs) GemvN(w []byte, stride, rows int, out []float32, outStride int) {
	if !a.prepared {
		GemvN(a.t, a.n, w, stride, rows, a.x, a.xStride, a.cols, out, outStride)
		return
	}
	if rows <= 0 || !gemvnSIMD(a.t, a.n, w, stride, rows, a.x, a.xStride, a.cols, out, outStride, &a.z) {
		GemvN(a.t, a.n, w, stride, rows, a.x, a.xStride, a.cols, out, outStride)
	}
}

// GemvNMaxCols is the largest batch for which GemvN beats Gemm (see GemvN).
const GemvNMaxCols = 8
