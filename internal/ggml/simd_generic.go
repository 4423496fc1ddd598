//go:build !amd64

package ggml

// gemvSIMD reports false: there are no assembly kernels for this architecture.
func gemvSIMD(t Type, n int, w []byte, stride int, x []byte, out []float32) bool { return false }

func affineSums(d *fitData, iscales []float32, nmax int32, out []float32) {
	affineSumsGo(d, iscales, nmax, out)
}

func symSums(d *fitData, iscales []float32, lo, hi int32, out []float32) {
	symSumsGo(d, iscales, lo, hi, out)
}

// gemmSIMD reports false: there are no assembly kernels for this architecture.
func gemmSIMD(t Type, n int, w []byte, stride, rows int, x []byte, xStride, cols int, out []float32, outStride int) bool {
	return false
}

func quantizeRowQ8_0(dst []byte, src []float32) { quantizeRowQ8_0Go(dst, src) }

func quantizeRowQ8K(dst []byte, src []float32) { quantizeRowQ8KGo(dst, src) }

func f32ToF16Bulk(dst []uint16, src []float32) int { return 0 }
