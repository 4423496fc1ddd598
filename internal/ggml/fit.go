package ggml

import "math"

// Scale searches used by the K-quant weight encoders. They follow the ideas of
// llama.cpp's make_qkx2_quants and make_qx_quants (try a handful of candidate
// scales around the obvious one and keep the least-squares best) but are written
// for speed: the weighted error of a candidate is computed in closed form from
// running sums instead of a second pass over the elements.

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

// fitScaleMin fits the 32 values x with scale·l − negMin, l an integer in
// 0..nmax, minimizing Σ w·(scale·l − negMin − x)². The offset is the block's
// minimum or better, never positive (negMin ≥ 0). Candidate scales are
// (nmax + rmin + rdelta·k)/(max − min) for k = 0..nstep, plus nmax/(max − min).
func fitScaleMin(x, w *[32]float32, nmax int, rmin, rdelta float32, nstep int) (scale, negMin float32) {
	lo, hi := x[0], x[0]
	var a affineFit
	for i, v := range x {
		lo = min(lo, v)
		hi = max(hi, v)
		wi := float64(w[i])
		a.w[i], a.wx[i] = wi, wi*float64(v)
		a.sumW += wi
		a.sumX += wi * float64(v)
		a.sumX2 += wi * float64(v) * float64(v)
	}
	lo = min(lo, 0)
	if hi == lo || !(hi-lo < math.MaxFloat32) {
		return 0, -lo
	}
	for i, v := range x {
		a.xm[i] = v - lo
	}
	a.nmax = int32(nmax)
	rng := hi - lo

	iscale := float32(nmax) / rng
	bestS, bestM := float64(1/iscale), float64(lo)
	sl, sl2, sxl := a.sums(iscale)
	best := a.sqErr(bestS, bestM, sl, sl2, sxl)
	for k := 0; k <= nstep; k++ {
		iscale = (rmin + rdelta*float32(k) + float32(nmax)) / rng
		sl, sl2, sxl = a.sums(iscale)
		det := a.sumW*sl2 - sl*sl
		if !(det > 0) {
			continue
		}
		s := (a.sumW*sxl - a.sumX*sl) / det
		m := (sl2*a.sumX - sl*sxl) / det
		if m > 0 {
			m = 0
			s = sxl / sl2
		}
		if e := a.sqErr(s, m, sl, sl2, sxl); e < best {
			best, bestS, bestM = e, s, m
		}
	}
	return float32(bestS), float32(-bestM)
}

// affineFit holds what fitScaleMin's candidates share: the values shifted by
// the block minimum, the weights, and the weighted sums of the values.
type affineFit struct {
	xm                [32]float32 // x − min(x, 0) ≥ 0
	w, wx             [32]float64 // weights, weights·x
	sumW, sumX, sumX2 float64
	nmax              int32
}

// sums quantizes with inverse scale iscale (l = round(iscale·xm) capped at nmax;
// xm ≥ 0 so rounding is truncation of +0.5) and returns Σw·l, Σw·l², Σw·l·x.
// Two sets of accumulators halve the loop-carried latency.
func (a *affineFit) sums(iscale float32) (sl, sl2, sxl float64) {
	var sl0, sl1, sq0, sq1, sx0, sx1 float64
	for i := 0; i < 32; i += 2 {
		l0 := float64(min(int32(iscale*a.xm[i]+0.5), a.nmax))
		l1 := float64(min(int32(iscale*a.xm[i+1]+0.5), a.nmax))
		w0, w1 := a.w[i]*l0, a.w[i+1]*l1
		sl0 += w0
		sl1 += w1
		sq0 += w0 * l0
		sq1 += w1 * l1
		sx0 += a.wx[i] * l0
		sx1 += a.wx[i+1] * l1
	}
	return sl0 + sl1, sq0 + sq1, sx0 + sx1
}

// sqErr is Σ w·(s·l + m − x)² expanded over the running sums.
func (a *affineFit) sqErr(s, m, sl, sl2, sxl float64) float64 {
	return s*s*sl2 + 2*s*m*sl + m*m*a.sumW - 2*s*sxl - 2*m*a.sumX + a.sumX2
}

// fitSymmetric fits the 16 values x with scale·l, l an integer in -nmax..nmax-1,
// minimizing Σ x²·(scale·l − x)² (the weighting of make_qx_quants with
// rmse_type 1). The scale has the opposite sign of the element of largest
// magnitude, so that element maps to l = -nmax. It returns 0 for a block of
// (near) zeros.
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
	var sym symFit
	for i, v := range x {
		x64 := float64(v)
		sym.x[i] = v
		sym.wx[i] = x64 * x64 * x64
		sym.w[i] = x64 * x64
	}
	sym.lo, sym.hi = int32(-nmax), int32(nmax-1)
	top := float32(nmax)
	slx, sl2 := sym.sums(-top / vmax)
	var scale float64
	if sl2 > 0 {
		scale = slx / sl2
	}
	best := scale * slx
	for k := -9; k <= 9; k++ {
		if k == 0 {
			continue
		}
		slx, sl2 = sym.sums(-(top + 0.1*float32(k)) / vmax)
		if sl2 > 0 && slx*slx > best*sl2 {
			scale = slx / sl2
			best = scale * slx
		}
	}
	return float32(scale)
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// symFit holds the values and weights fitSymmetric's candidates share.
type symFit struct {
	x      [16]float32
	w, wx  [16]float64 // weights x², and x²·x
	lo, hi int32
}

// sums quantizes with inverse scale iscale (l = round(iscale·x) clamped to
// lo..hi) and returns Σw·l·x and Σw·l², in two sets of accumulators.
func (f *symFit) sums(iscale float32) (slx, sl2 float64) {
	var a0, a1, b0, b1 float64
	for i := 0; i < 16; i += 2 {
		// |iscale·x| is at most about nmax here, so the magic-number rounding of
		// nearestInt applies without its range check (NaN only yields a
		// clamped garbage level).
		l0 := float64(max(f.lo, min(f.hi, roundSmall(iscale*f.x[i]))))
		l1 := float64(max(f.lo, min(f.hi, roundSmall(iscale*f.x[i+1]))))
		a0 += f.wx[i] * l0
		a1 += f.wx[i+1] * l1
		b0 += f.w[i] * l0 * l0
		b1 += f.w[i+1] * l1 * l1
	}
	return a0 + a1, b0 + b1
}

// roundSmall is nearestInt for |f| < 2²², without the range check.
func roundSmall(f float32) int32 {
	return int32(math.Float32bits(f+12582912)&0x7fffff) - 0x400000
}
