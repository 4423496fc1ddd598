//go:build !amd64

package ggml

// gemvnSIMD reports false: there are no assembly kernels for this architecture.
func gemvnSIMD(t Type, n int, w []byte, stride, rows int, x []byte, xStride, cols int, out []float32, outStride int) bool {
	return false
}
