//go:build !amd64

package ggml

// gemvSIMD reports false: there are no assembly kernels for this architecture.
func gemvSIMD(t Type, n int, w []byte, stride int, x []byte, out []float32) bool { return false }
