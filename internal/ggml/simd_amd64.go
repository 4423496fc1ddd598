package ggml

import "math"

// Assembly kernels (gemv_amd64.s). Each computes out[r] for r < rows over rows
// of weights stride bytes apart against one activation vector x, looping over
// the rows itself. Block kernels take the number of blocks per row (≥ 1);
// float kernels the number of 32-element chunks (≥ 1) and leave the tail to
// the caller. The Go code checks every bound before calling them.

//go:noescape
func gemvQ4KAVX2(w *byte, stride int, x *byte, nb int, out *float32, rows int)

//go:noescape
func gemvQ5KAVX2(w *byte, stride int, x *byte, nb int, out *float32, rows int)

//go:noescape
func gemvQ6KAVX2(w *byte, stride int, x *byte, nb int, out *float32, rows int)

//go:noescape
func gemvQ8_0AVX2(w *byte, stride int, x *byte, nb int, out *float32, rows int)

//go:noescape
func gemvQ8_0x8AVX2(w *byte, stride int, x *byte, nb int, out *float32, rows int, xs *float32)

//go:noescape
func gemvQ4_0AVX2(w *byte, stride int, x *byte, nb int, out *float32, rows int)

//go:noescape
func gemvF16AVX2(w *byte, stride int, x *byte, nb int, out *float32, rows int)

//go:noescape
func gemvBF16AVX2(w *byte, stride int, x *byte, nb int, out *float32, rows int)

//go:noescape
func gemvF32AVX2(w *byte, stride int, x *byte, nb int, out *float32, rows int)

// gemvSIMD runs Gemv with the assembly kernels when the CPU has them and the
// type has one, and reports whether it did. It checks the slice bounds the
// kernels rely on (panicking like a slice expression when they are short).
func gemvSIMD(t Type, n int, w []byte, stride int, x []byte, out []float32) bool {
	if !useAVX2 {
		return false
	}
	rows := len(out)
	var chunk, chunkBytes int // elements and weight bytes per kernel step
	switch t {
	case Q4_K, Q5_K, Q6_K, Q8_0, Q4_0:
		chunk, chunkBytes = t.BlockSize(), t.TypeSize()
	case F16, BF16:
		chunk, chunkBytes = 32, 64
	case F32:
		chunk, chunkBytes = 32, 128
	default:
		return false
	}
	steps := n / chunk
	if steps < 1 {
		if t == F16 && n > 0 {
			// Shorter than one chunk (attention over the first positions):
			// everything is tail, summed in float64 as dotF16 does.
			clear(out)
			addF16Tails(0, n, w, stride, x, out)
			return true
		}
		return false
	}
	rowBytes := steps * chunkBytes // what the kernel reads
	if t.BlockSize() == 1 {
		rowBytes = n * t.TypeSize() // float rows: the tail too
	}
	if rows > 1 && stride < rowBytes {
		return false
	}
	// Index expressions check against len (a reslice would only check cap).
	xt := VecDotType(t)
	_ = w[(rows-1)*stride+rowBytes-1]
	_ = x[rowBytes/t.TypeSize()*t.BlockSize()/xt.BlockSize()*xt.TypeSize()-1]
	wp, xp, op := &w[0], &x[0], &out[0]
	switch t {
	case Q4_K:
		gemvQ4KAVX2(wp, stride, xp, steps, op, rows)
	case Q5_K:
		gemvQ5KAVX2(wp, stride, xp, steps, op, rows)
	case Q6_K:
		gemvQ6KAVX2(wp, stride, xp, steps, op, rows)
	case Q8_0:
		gemvQ8_0(wp, stride, x, steps, op, rows)
	case Q4_0:
		gemvQ4_0AVX2(wp, stride, xp, steps, op, rows)
	case F16:
		gemvF16AVX2(wp, stride, xp, steps, op, rows)
	case BF16:
		gemvBF16AVX2(wp, stride, xp, steps, op, rows)
	case F32:
		gemvF32AVX2(wp, stride, xp, steps, op, rows)
	}
	if tail := n - steps*chunk; tail > 0 && t.BlockSize() == 1 {
		addFloatTails(t, n, tail, w, stride, x, out)
	}
	return true
}

// gemvQ8_0 runs the Q8_0 kernel that converts eight blocks' scales at a
// time, with the activation's scales converted here once, when there are at
// least 8 blocks and at most q8ScaleMax; otherwise the one-block kernel.
func gemvQ8_0(wp *byte, stride int, x []byte, nb int, op *float32, rows int) {
	const q8ScaleMax = 512
	if nb < 8 || nb > q8ScaleMax {
		gemvQ8_0AVX2(wp, stride, &x[0], nb, op, rows)
		return
	}
	var xs [q8ScaleMax]float32
	_ = x[nb*q8_0Size-1]
	for b := range xs[:nb] {
		xs[b] = F16ToF32(le16(x[b*q8_0Size:]))
	}
	gemvQ8_0x8AVX2(wp, stride, &x[0], nb, op, rows, &xs[0])
}

// addFloatTails adds to each out[r] the products of the last tail elements of
// row r and x, in float64 as ggml's float dot products do.
func addFloatTails(t Type, n, tail int, w []byte, stride int, x []byte, out []float32) {
	start := n - tail
	if t == F16 {
		addF16Tails(start, n, w, stride, x, out)
		return
	}
	for r := range out {
		row := w[r*stride:]
		sum := float64(out[r])
		for i := start; i < n; i++ {
			sum += float64(floatAt(t, row, i) * floatAt(t, x, i))
		}
		out[r] = float32(sum)
	}
}

// addF16Tails is addFloatTails for F16, four rows at a time: each row's sum
// is still taken in order, but the four chains of float64 additions overlap.
func addF16Tails(start, n int, w []byte, stride int, x []byte, out []float32) {
	var xf [32]float32 // a tail is shorter than one 32-element chunk
	tail := xf[:min(n-start, len(xf))]
	for i := range tail {
		tail[i] = f16Table[le16(x[2*(start+i):])]
	}
	r := 0
	for ; r+4 <= len(out); r += 4 {
		b0 := w[r*stride+2*start:][:2*len(tail)]
		b1 := w[(r+1)*stride+2*start:][:2*len(tail)]
		b2 := w[(r+2)*stride+2*start:][:2*len(tail)]
		b3 := w[(r+3)*stride+2*start:][:2*len(tail)]
		s0, s1, s2, s3 := float64(out[r]), float64(out[r+1]), float64(out[r+2]), float64(out[r+3])
		for i, xv := range tail {
			s0 += float64(f16Table[le16(b0[2*i:])] * xv)
			s1 += float64(f16Table[le16(b1[2*i:])] * xv)
			s2 += float64(f16Table[le16(b2[2*i:])] * xv)
			s3 += float64(f16Table[le16(b3[2*i:])] * xv)
		}
		out[r], out[r+1], out[r+2], out[r+3] = float32(s0), float32(s1), float32(s2), float32(s3)
	}
	for ; r < len(out); r++ {
		b := w[r*stride+2*start:][:2*len(tail)]
		s := float64(out[r])
		for i, xv := range tail {
			s += float64(f16Table[le16(b[2*i:])] * xv)
		}
		out[r] = float32(s)
	}
}

// floatAt reads element i of a float vector of type t (F32, F16 or BF16).
func floatAt(t Type, b []byte, i int) float32 {
	switch t {
	case F16:
		return F16ToF32(le16(b[2*i:]))
	case BF16:
		return BF16ToF32(le16(b[2*i:]))
	}
	return math.Float32frombits(le32(b[4*i:]))
}

// The activation quantizers and the F16 conversion below are in quantize_amd64.s.

//go:noescape
func quantizeQ8_0AVX2(src *float32, dst *byte, nb int)

// quantizeRowQ8_0 encodes len(src)/32 blocks of Q8_0 (see QuantizeInto), with
// the assembly kernel when the CPU has AVX2; both give the same bytes for
// finite inputs.
func quantizeRowQ8_0(dst []byte, src []float32) {
	nb := len(src) / QK
	if !useAVX2 || nb == 0 {
		quantizeRowQ8_0Go(dst, src)
		return
	}
	_ = dst[nb*q8_0Size-1]
	quantizeQ8_0AVX2(&src[0], &dst[0], nb)
}

//go:noescape
func quantizeQ8KAVX2(src *float32, dst *byte, nb int)

// quantizeRowQ8K encodes len(src)/256 blocks of Q8_K (see QuantizeInto), with
// the assembly kernel when the CPU has AVX2; both give the same bytes for
// finite inputs.
func quantizeRowQ8K(dst []byte, src []float32) {
	nb := len(src) / QKK
	if !useAVX2 || nb == 0 {
		quantizeRowQ8KGo(dst, src)
		return
	}
	_ = dst[nb*q8KSize-1]
	quantizeQ8KAVX2(&src[0], &dst[0], nb)
}

//go:noescape
func f32ToF16AVX2(dst *uint16, src *float32, n int)

// f32ToF16Bulk converts the largest multiple of 8 leading elements with
// VCVTPS2PH when the CPU has AVX2 (and F16C, which every AVX2 CPU has) and
// returns how many it converted.
func f32ToF16Bulk(dst []uint16, src []float32) int {
	n := len(src) &^ 7
	if !useAVX2 || n == 0 {
		return 0
	}
	_ = dst[n-1]
	f32ToF16AVX2(&dst[0], &src[0], n)
	return n
}

//go:noescape
func affineSumsAVX2(d *fitData, iscales *float32, nc int, nmax int32, out *float32)

//go:noescape
func symSumsAVX2(d *fitData, iscales *float32, nc int, lo, hi int32, out *float32)

// affineSums computes the candidate sums of fitScaleMin (see affineSumsGo);
// out holds 3 floats per inverse scale.
func affineSums(d *fitData, iscales []float32, nmax int32, out []float32) {
	if !useAVX2 || len(iscales) == 0 {
		affineSumsGo(d, iscales, nmax, out)
		return
	}
	_ = out[3*len(iscales)-1]
	affineSumsAVX2(d, &iscales[0], len(iscales), nmax, &out[0])
}

// symSums computes the candidate sums of fitSymmetric (see symSumsGo); out
// holds 2 floats per inverse scale.
func symSums(d *fitData, iscales []float32, lo, hi int32, out []float32) {
	if !useAVX2 || len(iscales) == 0 {
		symSumsGo(d, iscales, lo, hi, out)
		return
	}
	_ = out[2*len(iscales)-1]
	symSumsAVX2(d, &iscales[0], len(iscales), lo, hi, &out[0])
}
