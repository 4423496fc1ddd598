package ggml

import "math"

// Scale searches used by the K-quant weight encoders. They follow the ideas of
// llama.cpp's make_qkx2_quants and make_qx_quants (try a handful of candidate
// scales around the obvious one and keep the least-squares best) but are written
// for speed: the sums each candidate needs are computed for all candidates in
// one pass of 8-lane float32 arithmetic (assembly where available, the same
// operations in Go elsewhere, so the encodings are identical either way), and
// the weighted error of a candidate comes in closed form from those sums.

// nearestInt rounds f to the nearest integer, ties to even, as ggml's
// nearest_int does (adding 1.5·2²³ makes the float32 addition do the rounding).
// Out-of-range values are clamped and NaN gives 0, so the result is always safe.
func nearestInt(f float32) int32 {
	if !(f > -4194303 && f < 4194303) {
		switch {
		case f >= 4194303:
			return 4194303
		case f <= -4194303:
			return -4194303
		}
		return 0
	}
	v := f + 12582912
	return int32(math.Float32bits(v)&0x7fffff) - 0x400000
}

// fitData holds the per-element inputs of a candidate search: values, weights
// and weights·values (the symmetric search uses the first 16 of each).
type fitData struct {
	x, w, wx [32]float32
}

// maxCandidates bounds the candidate scales of one search.
const maxCandidates = 24

// fitScaleMin fits the 32 values x with scale·l − negMin, l an integer in
// 0..nmax, minimizing Σ w·(scale·l − negMin − x)². The offset is the block's
// minimum or better, never positive (negMin ≥ 0). Candidate inverse scales are
// nmax/(max − min), then (nmax + rmin + rdelta·k)/(max − min) for k = 0..nstep
// (nstep < maxCandidates-1).
func fitScaleMin(x, w *[32]float32, nmax int, rmin, rdelta float32, nstep int) (scale, negMin float32) {
	lo, hi := x[0], x[0]
	var sumW, sumX, sumX2 float64
	for i, v := range x {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
		wi, xi := float64(w[i]), float64(v)
		sumW += wi
		sumX += wi * xi
		sumX2 += wi * xi * xi
	}
	if lo > 0 {
		lo = 0
	}
	if hi == lo || !(hi-lo <= math.MaxFloat32) {
		return 0, -lo
	}
	var d fitData
	for i, v := range x {
		d.x[i] = v - lo // ≥ 0
		d.w[i] = w[i]
		d.wx[i] = w[i] * v
	}
	rng := hi - lo
	var iscales [maxCandidates]float32
	iscales[0] = float32(nmax) / rng
	nc := 1
	for k := 0; k <= nstep && nc < maxCandidates; k++ {
		iscales[nc] = (rmin + rdelta*float32(k) + float32(nmax)) / rng
		nc++
	}
	var sums [3 * maxCandidates]float32
	affineSums(&d, iscales[:nc], int32(nmax), sums[:3*nc])

	// sqErr is Σ w·(s·l + m − x)² expanded over the sums.
	sqErr := func(s, m, sl, sl2, sxl float64) float64 {
		return s*s*sl2 + 2*s*m*sl + m*m*sumW - 2*s*sxl - 2*m*sumX + sumX2
	}
	bestS, bestM := float64(1/iscales[0]), float64(lo)
	best := sqErr(bestS, bestM, float64(sums[0]), float64(sums[1]), float64(sums[2]))
	for k := 1; k < nc; k++ {
		sl, sl2, sxl := float64(sums[3*k]), float64(sums[3*k+1]), float64(sums[3*k+2])
		det := sumW*sl2 - sl*sl
		if !(det > 0) {
			continue
		}
		s := (sumW*sxl - sumX*sl) / det
		m := (sl2*sumX - sl*sxl) / det
		if m > 0 {
			m = 0
			s = sxl / sl2
		}
		if e := sqErr(s, m, sl, sl2, sxl); e < best {
			best, bestS, bestM = e, s, m
		}
	}
	return float32(bestS), float32(-bestM)
}

// affineSumsGo is the portable affineSums. For each inverse scale it quantizes
// l = min(nmax, trunc(iscale·x + 0.5)) (x ≥ 0) and stores Σw·l, Σw·l², Σwx·l
// in out[3k:3k+3], summing in 8 float32 lanes (lane j takes elements j, j+8,
// j+16, j+24) folded by hsum8, exactly as the assembly does.
func affineSumsGo(d *fitData, iscales []float32, nmax int32, out []float32) {
	for k, is := range iscales {
		var a, b, c [8]float32
		for j := 0; j < 32; j += 8 {
			for lane := 0; lane < 8; lane++ {
				i := j + lane
				l := float32(min(cvttps(float32(is*d.x[i])+0.5), nmax))
				wl := float32(d.w[i] * l)
				a[lane] += wl
				b[lane] += float32(wl * l)
				c[lane] += float32(d.wx[i] * l)
			}
		}
		out[3*k], out[3*k+1], out[3*k+2] = hsum8(&a), hsum8(&b), hsum8(&c)
	}
}

// fitSymmetric fits the 16 values x with scale·l, l an integer in -nmax..nmax-1,
// minimizing Σ x²·(scale·l − x)² (the weighting of make_qx_quants with
// rmse_type 1). The scale has the opposite sign of the element of largest
// magnitude, so that element maps to l = -nmax. It returns 0 for a block of
// (near) zeros. The search runs on x/max|x| so that the float32 sums cannot
// overflow.
func fitSymmetric(x *[16]float32, nmax int) float32 {
	var amax, vmax float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, vmax = a, v
		}
	}
	if !(amax >= 1e-15) || amax > math.MaxFloat32 {
		return 0
	}
	var d fitData
	for i, v := range x {
		y := v / amax
		d.x[i] = y
		d.w[i] = y * y
		d.wx[i] = float32(y*y) * y
	}
	top := float32(nmax)
	sign := float32(1)
	if vmax < 0 {
		sign = -1
	}
	// iscale = -(nmax + 0.1·k)/(vmax/amax), first k = 0, then k = -9..9 without 0.
	var iscales [19]float32
	iscales[0] = -top * sign
	nc := 1
	for k := -9; k <= 9; k++ {
		if k != 0 {
			iscales[nc] = -(top + 0.1*float32(k)) * sign
			nc++
		}
	}
	var sums [2 * 19]float32
	symSums(&d, iscales[:], int32(-nmax), int32(nmax-1), sums[:])

	slx, sl2 := float64(sums[0]), float64(sums[1])
	var scale float64
	if sl2 > 0 {
		scale = slx / sl2
	}
	best := scale * slx
	for k := 1; k < nc; k++ {
		slx, sl2 = float64(sums[2*k]), float64(sums[2*k+1])
		if sl2 > 0 && slx*slx > best*sl2 {
			scale = slx / sl2
			best = scale * slx
		}
	}
	return float32(scale) * amax
}

// symSumsGo is the portable symSums. For each inverse scale it quantizes
// l = clamp(round(iscale·x), lo, hi) (ties to even) over the first 16 values and
// stores Σwx·l and Σw·l² in out[2k:2k+2], in 8 float32 lanes folded by hsum8,
// exactly as the assembly does.
func symSumsGo(d *fitData, iscales []float32, lo, hi int32, out []float32) {
	for k, is := range iscales {
		var a, b [8]float32
		for j := 0; j < 16; j += 8 {
			for lane := 0; lane < 8; lane++ {
				i := j + lane
				l := float32(max(lo, min(hi, cvtps(float32(is*d.x[i])))))
				a[lane] += float32(d.wx[i] * l)
				b[lane] += float32(float32(d.w[i]*l) * l)
			}
		}
		out[2*k], out[2*k+1] = hsum8(&a), hsum8(&b)
	}
}

// hsum8 adds 8 lanes in the order of the assembly's horizontal sum.
func hsum8(v *[8]float32) float32 {
	return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]))
}

// cvttps converts like CVTTPS2DQ: truncation, and math.MinInt32 for NaN and
// values out of range.
func cvttps(v float32) int32 {
	if !(v > -2147483648 && v < 2147483648) {
		return math.MinInt32
	}
	return int32(v)
}

// cvtps converts like CVTPS2DQ under the default rounding mode: to nearest,
// ties to even, and math.MinInt32 for NaN and values out of range.
func cvtps(v float32) int32 {
	if v > -4194304 && v < 4194304 {
		return roundSmall(v)
	}
	if !(v > -2147483648 && v < 2147483648) {
		return math.MinInt32
	}
	return int32(math.RoundToEven(float64(v)))
}

// roundSmall is nearestInt for |f| < 2²², without the range check.
func roundSmall(f float32) int32 {
	return int32(math.Float32bits(f+12582912)&0x7fffff) - 0x400000
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }
