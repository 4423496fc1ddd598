package ggml

// gemvSIMD runs Gemv with the assembly kernels when the CPU has them and the
// type has one, and reports whether it did.
func gemvSIMD(t Type, n int, w []byte, stride int, x []byte, out []float32) bool {
	if !useAVX2 {
		return false
	}
	return false
}
