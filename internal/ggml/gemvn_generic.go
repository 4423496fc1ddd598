//go:build !amd64

package ggml

// gemvnSIMD reports false: there are no assembly kernels for this architecture.
func gemvnSIMD(t Type, n int, w []byte, stride, rows int, x []byte, xStride, cols int, out []float32, outStride int, pre *gemvnPrepared) bool {
	return false
}

// gemvnPrepared is empty: nothing is prepared without the assembly kernels.
type gemvnPrepared struct{}

// gemvnBufs is empty likewise.
type gemvnBufs struct{}

// gemvnActsPrepare reports false: nothing to prepare.
func gemvnActsPrepare(a *GemvNActs) bool { return false }
