package ggml

// Gemm on amd64 with AVX-512 VNNI (gemm_amd64.s). Weight rows are taken 8 at
// a time and a run of their blocks is repacked into a buffer on the stack so
// that lane i of every 32-byte vector belongs to row i; the kernel then runs
// every activation vector over the buffer while it sits in L1.
//
// Block-32 layout (Q8_0, Q4_0), one 320-byte record per block of 8 rows:
//
//	offset 0    8 vectors: vector k holds quants 4k…4k+3 of rows 0…7 (signed)
//	offset 256  8 int32: 128 · Σ quants of each row (undoes the kernel's
//	            unsigned view of the activations)
//	offset 288  8 float32: the rows' block scales

//go:noescape
func repackQ8_0x8(w *byte, stride int, nb int, dst *byte)

//go:noescape
func repackQ4_0x8(w *byte, stride int, nb int, dst *byte)

//go:noescape
func gemmQ8x8VNNI(p *byte, nb int, x *byte, xStride int, cols int, out *float32, outStride int, acc int)

const (
	gemmRecQ8  = 320 // bytes per repacked block of 8 rows (block-32 types)
	gemmBlocks = 16  // blocks repacked at a time (a 5 KiB buffer for block-32 types)
)

// gemmSIMD runs Gemm with the VNNI kernels when the CPU has them and the type
// has one, and reports whether it did. Rows beyond the last multiple of 8 go
// through Gemv.
func gemmSIMD(t Type, n int, w []byte, stride, rows int, x []byte, xStride, cols int, out []float32, outStride int) bool {
	if !useVNNI || rows < 8 || stride < 0 || xStride < 0 || outStride < 0 {
		return false
	}
	if t != Q8_0 && t != Q4_0 {
		return false
	}
	nb := n / QK
	if nb < 1 || n%QK != 0 {
		return false
	}
	ts := t.TypeSize()
	groups := rows / 8
	// Index expressions check against len (a reslice would only check cap).
	_ = w[(groups*8-1)*stride+nb*ts-1]
	_ = x[(cols-1)*xStride+nb*q8_0Size-1]
	_ = out[(cols-1)*outStride+groups*8-1]
	var buf [gemmBlocks * gemmRecQ8]byte
	for g := 0; g < groups; g++ {
		for b0 := 0; b0 < nb; b0 += gemmBlocks {
			kb := min(gemmBlocks, nb-b0)
			if t == Q8_0 {
				repackQ8_0x8(&w[g*8*stride+b0*ts], stride, kb, &buf[0])
			} else {
				repackQ4_0x8(&w[g*8*stride+b0*ts], stride, kb, &buf[0])
			}
			acc := 0
			if b0 > 0 {
				acc = 1
			}
			gemmQ8x8VNNI(&buf[0], kb, &x[b0*q8_0Size], xStride, cols, &out[g*8], outStride, acc)
		}
	}
	if r0 := groups * 8; r0 < rows {
		for c := 0; c < cols; c++ {
			Gemv(t, n, w[r0*stride:], stride, x[c*xStride:], out[c*outStride+r0:c*outStride+rows])
		}
	}
	return true
}
