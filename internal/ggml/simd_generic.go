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

// The attention kernels are never called without AVX2; these satisfy the
// compiler on other architectures.

func attnScoresAVX2(k *byte, kStride int, nblk int, q *float32, heads int, hd int, s *float32, sStride int, scale float32, kf *float32) {
	panic("ggml: no assembly kernels")
}

func attnValues1AVX2(v *byte, vStride int, nch int, p *float32, pStride int, hd int, out *float32, oStride int) {
	panic("ggml: no assembly kernels")
}

func attnValues2AVX2(v *byte, vStride int, nch int, p *float32, pStride int, hd int, out *float32, oStride int) {
	panic("ggml: no assembly kernels")
}

func attnValues3AVX2(v *byte, vStride int, nch int, p *float32, pStride int, hd int, out *float32, oStride int) {
	panic("ggml: no assembly kernels")
}

func attnValues4AVX2(v *byte, vStride int, nch int, p *float32, pStride int, hd int, out *float32, oStride int) {
	panic("ggml: no assembly kernels")
}

func maxAVX2(x *float32, nch int, out *[8]float32) { panic("ggml: no assembly kernels") }

func expSubAVX2(x *float32, nch int, m float32, sum *[4]float64) { panic("ggml: no assembly kernels") }

func scaleRoundF16AVX2(x *float32, nch int, s float32) { panic("ggml: no assembly kernels") }

func siluMulAVX2(dst, gate, u *float32, nch int) { panic("ggml: no assembly kernels") }

func geluMulAVX2(dst, gate, u *float32, nch int, tab *float32) { panic("ggml: no assembly kernels") }

func softcapAVX2(x *float32, nch int, inv, cp float32) { panic("ggml: no assembly kernels") }
