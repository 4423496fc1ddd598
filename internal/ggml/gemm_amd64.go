package ggml

// Gemm on amd64 (gemm_amd64.s and the generated gemm_*_amd64.s) for Q8_0,
// Q4_0, Q4_K, Q5_K and Q6_K, with AVX2 or AVX-512 VNNI kernels (other types
// run one Gemv per column). Weight rows are taken 8 at a time (with VNNI two
// such groups, 16 rows) and a run of their blocks is repacked into a buffer
// on the stack so that lane i of every 32-byte vector belongs to row i; the
// kernel then runs every activation vector over the buffer while it sits in
// L1, one VPDPBUSD (or VPMADDUBSW pair) with 4 bytes of an activation
// broadcast advancing 8 row products at once.
//
// Kernel arguments: p the repacked records, nb their number, x the first
// activation vector (at the first block the records cover), xStride the bytes
// between activation vectors, cols their number, out the first output of the
// group (row g·8 of column 0), outStride the floats between columns; acc = 0
// stores the sums, otherwise they are added to out (for runs after the first).

// Block-32 layout (Q8_0, Q4_0), one 320-byte record per block of 8 rows:
//
//	offset 0    8 vectors: vector k holds quants 4k…4k+3 of rows 0…7 (signed)
//	offset 256  8 int32: 128 · Σ quants of each row (undoes the VNNI
//	            kernel's unsigned view of the activations; the AVX2 kernel
//	            multiplies |w| by x·sign(w) instead and ignores it)
//	offset 288  8 float32: the rows' block scales
//
// K-quant layout (Q4_K, Q5_K, Q6_K), one 2880-byte record per super-block of
// 8 rows, the quants unpacked to bytes:
//
//	offset 0     64 vectors: vector m holds quants 4m…4m+3 of rows 0…7
//	             (unsigned: Q6_K's are stored +32)
//	offset 2048  16 vectors of int32 group scales S_g: Q4_K and Q5_K use 8
//	             (groups of 32), Q6_K 16 (groups of 16)
//	offset 2560  8 vectors of int16 pairs M_p, dotted with the activation's
//	             bsum pairs (b_2p, b_2p+1): Q4_K/Q5_K (m_p, m_p), Q6_K
//	             (sc_2p, sc_2p+1)
//	offset 2816  8 float32 dA: d
//	offset 2848  8 float32 dB: dmin (Q4_K, Q5_K; Q6_K's −32 offset is
//	             subtracted in int32 instead)
//
// A row's dot product is d8·(dA·Σ_g S_g·Σ q·x − dB·Σ_p M_p·b_p) per
// super-block, the integer sums exact as in ggml.

//go:noescape
func prefetchRows(w *byte, stride int, rows int, n int)

//go:noescape
func repackQ8_0x8(w *byte, stride int, nb int, dst *byte, recStride int)

//go:noescape
func repackQ4_0x8(w *byte, stride int, nb int, dst *byte, recStride int)

//go:noescape
func repackQ4Kx8(w *byte, stride int, nb int, dst *byte, recStride int)

//go:noescape
func repackQ5Kx8(w *byte, stride int, nb int, dst *byte, recStride int)

//go:noescape
func repackQ6Kx8(w *byte, stride int, nb int, dst *byte, recStride int)

//go:noescape
func gemmK32x8VNNI(p *byte, nb int, x *byte, xStride int, cols int, out *float32, outStride int, acc int)

//go:noescape
func gemmK16x8VNNI(p *byte, nb int, x *byte, xStride int, cols int, out *float32, outStride int, acc int)

//go:noescape
func gemmK32x8AVX2(p *byte, nb int, x *byte, xStride int, cols int, out *float32, outStride int, acc int)

//go:noescape
func gemmK16x8AVX2(p *byte, nb int, x *byte, xStride int, cols int, out *float32, outStride int, acc int)

//go:noescape
func gemmQ8x8AVX2(p *byte, nb int, x *byte, xStride int, cols int, out *float32, outStride int, acc int)

//go:noescape
func gemmK32x16VNNI(p *byte, nb int, x *byte, xStride int, cols int, out *float32, outStride int, acc int)

//go:noescape
func gemmK16x16VNNI(p *byte, nb int, x *byte, xStride int, cols int, out *float32, outStride int, acc int)

//go:noescape
func gemmQ8x16VNNI(p *byte, nb int, x *byte, xStride int, cols int, out *float32, outStride int, acc int)

//go:noescape
func gemmQ8x8VNNI(p *byte, nb int, x *byte, xStride int, cols int, out *float32, outStride int, acc int)

const (
	gemmRecQ8  = 320  // bytes per repacked block of 8 rows (block-32 types)
	gemmBlocks = 16   // blocks repacked at a time (10 KiB for two 8-row groups of block-32 types)
	gemmRecK   = 2880 // bytes per repacked super-block of 8 rows (K-quants)
	gemmSuper  = 4    // super-blocks repacked at a time (11.25 KiB)
)

// gemmSIMD runs Gemm with the assembly kernels when the CPU has AVX2 and the
// type has them, and reports whether it did. Rows beyond the last multiple of
// 8 go through Gemv.
func gemmSIMD(t Type, n int, w []byte, stride, rows int, x []byte, xStride, cols int, out []float32, outStride int) bool {
	if !useAVX2 || rows < 8 || stride < 0 || xStride < 0 || outStride < 0 {
		return false
	}
	var chunk int // blocks repacked at a time
	switch t {
	case Q8_0, Q4_0:
		chunk = gemmBlocks
	case Q4_K, Q5_K, Q6_K:
		chunk = gemmSuper
	default:
		return false
	}
	bs := t.BlockSize()
	nb := n / bs
	if nb < 1 || n%bs != 0 {
		return false
	}
	ts, xs := t.TypeSize(), VecDotType(t).TypeSize()
	groups := rows / 8
	// Index expressions check against len (a reslice would only check cap).
	_ = w[(groups*8-1)*stride+nb*ts-1]
	_ = x[(cols-1)*xStride+nb*xs-1]
	_ = out[(cols-1)*outStride+groups*8-1]
	var buf [gemmSuper * gemmRecK]byte
	for g := 0; g < groups; g++ {
		// With VNNI, two 8-row groups go together, their records
		// interleaved: the kernels share each activation load between them.
		pair := useVNNI && g+1 < groups
		step := chunk
		if pair && chunk == gemmSuper {
			step = gemmSuper / 2 // keep the K-quant buffer at 11.25 KiB
		}
		for b0 := 0; b0 < nb; b0 += step {
			kb := min(step, nb-b0)
			wp, xp, op, p := &w[g*8*stride+b0*ts], &x[b0*xs], &out[g*8], &buf[0]
			var wp2 *byte
			if pair {
				wp2 = &w[(g+1)*8*stride+b0*ts]
			}
			acc := 0
			if b0 > 0 {
				acc = 1
			}
			gemmPrefetch(w, stride, ts, g, groups, pair, b0, step, nb)
			switch t {
			case Q8_0, Q4_0:
				rec := gemmRecQ8
				if pair {
					rec = 2 * gemmRecQ8
				}
				if t == Q8_0 {
					repackQ8_0x8(wp, stride, kb, p, rec)
				} else {
					repackQ4_0x8(wp, stride, kb, p, rec)
				}
				switch {
				case pair:
					if t == Q8_0 {
						repackQ8_0x8(wp2, stride, kb, &buf[gemmRecQ8], rec)
					} else {
						repackQ4_0x8(wp2, stride, kb, &buf[gemmRecQ8], rec)
					}
					gemmQ8x16VNNI(p, kb, xp, xStride, cols, op, outStride, acc)
				case useVNNI:
					gemmQ8x8VNNI(p, kb, xp, xStride, cols, op, outStride, acc)
				default:
					gemmQ8x8AVX2(p, kb, xp, xStride, cols, op, outStride, acc)
				}
			case Q4_K, Q5_K, Q6_K:
				rec := gemmRecK
				if pair {
					rec = 2 * gemmRecK
				}
				repackK(t, wp, stride, kb, p, rec)
				if pair {
					repackK(t, wp2, stride, kb, &buf[gemmRecK], rec)
				}
				switch {
				case pair && t == Q6_K:
					gemmK16x16VNNI(p, kb, xp, xStride, cols, op, outStride, acc)
				case pair:
					gemmK32x16VNNI(p, kb, xp, xStride, cols, op, outStride, acc)
				case useVNNI && t == Q6_K:
					gemmK16x8VNNI(p, kb, xp, xStride, cols, op, outStride, acc)
				case useVNNI:
					gemmK32x8VNNI(p, kb, xp, xStride, cols, op, outStride, acc)
				case t == Q6_K:
					gemmK16x8AVX2(p, kb, xp, xStride, cols, op, outStride, acc)
				default:
					gemmK32x8AVX2(p, kb, xp, xStride, cols, op, outStride, acc)
				}
			}
		}
		if pair {
			g++
		}
	}
	if r0 := groups * 8; r0 < rows {
		for c := 0; c < cols; c++ {
			Gemv(t, n, w[r0*stride:], stride, x[c*xStride:], out[c*outStride+r0:c*outStride+rows])
		}
	}
	return true
}

// repackK repacks kb super-blocks of the 8 K-quant rows at w into records
// recStride bytes apart at p.
func repackK(t Type, w *byte, stride, kb int, p *byte, recStride int) {
	switch t {
	case Q4_K:
		repackQ4Kx8(w, stride, kb, p, recStride)
	case Q5_K:
		repackQ5Kx8(w, stride, kb, p, recStride)
	case Q6_K:
		repackQ6Kx8(w, stride, kb, p, recStride)
	}
}

// gemmPrefetch prefetches the weights gemmSIMD repacks after those of group
// g (and g+1 when pair) at blocks b0…b0+step: the same rows' next blocks, or
// the first blocks of the next group(s). Weights stream from memory in runs
// too short for the hardware prefetchers, and the repacks would otherwise
// stall on them.
func gemmPrefetch(w []byte, stride, ts, g, groups int, pair bool, b0, step, nb int) {
	rows, tile := 8, 1
	if pair {
		rows, tile = 16, 2
	}
	switch {
	case b0+step < nb:
		kb := min(step, nb-b0-step)
		prefetchRows(&w[g*8*stride+(b0+step)*ts], stride, rows, kb*ts)
	case g+tile < groups:
		next := min(16, (groups-g-tile)*8) // the next tile is at most 16 rows
		prefetchRows(&w[(g+tile)*8*stride], stride, next, min(step, nb)*ts)
	}
}
