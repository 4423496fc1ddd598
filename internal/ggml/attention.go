package ggml

import (
	"math"
	"unsafe"
)

// AttnScratch is the working space of AttendF16 for one caller at a time:
// query heads as float32, the scores of every head over the cache, and one
// block of keys as float32.
type AttnScratch struct {
	q, s, kf []float32
	part     [8]float32
	sums     [4]float64
	// The last partial block of 8 positions, zero-padded for the kernels:
	// keys [8][hd] F16, their scores [g][8], values [hd][8] F16,
	// probabilities [g][8] and the values' sums [g][hd].
	tk, tv []byte
	ts, tp []float32
	to     []float32
}

// grow makes room for g heads of hd elements over n positions.
func (a *AttnScratch) grow(g, hd, n int) {
	if cap(a.q) < g*hd {
		a.q = make([]float32, g*hd)
	}
	if cap(a.s) < g*n {
		a.s = make([]float32, g*n+g*n/4) // grows with the cache, so leave headroom
	}
	if cap(a.kf) < 8*hd {
		a.kf = make([]float32, 8*hd)
	}
	a.q, a.s, a.kf = a.q[:g*hd], a.s[:g*n], a.kf[:8*hd]
	if cap(a.tk) < 16*hd {
		a.tk, a.tv = make([]byte, 16*hd), make([]byte, 16*hd)
	}
	if cap(a.ts) < 8*g || cap(a.to) < g*hd {
		a.ts, a.tp, a.to = make([]float32, 8*g), make([]float32, 8*g), make([]float32, g*hd)
	}
	a.tk, a.tv, a.ts, a.tp, a.to = a.tk[:16*hd], a.tv[:16*hd], a.ts[:8*g], a.tp[:8*g], a.to[:g*hd]
}

// AttendF16 computes scaled dot-product attention for g query heads that
// share one key/value head (grouped-query attention; g = 1 is plain
// multi-head attention) over n cached positions:
//
//	out[h] = softmax(scale · q[h]·Kᵀ) · V
//
// q holds the g heads' queries (hd floats each, one after another) and out
// receives their results the same way. Keys are F16 rows of hd elements,
// kStride bytes apart (position i at k[i·kStride:]); values are stored
// transposed, F16 rows of positions, vStride bytes apart (element d of every
// position at v[d·vStride:]).
//
// Like llama.cpp, queries and probabilities are rounded to F16 to meet the
// F16 cache, scores and the softmax are float32 with the softmax's sum in
// float64. Every key and value is read once for all g heads, which is what
// makes grouped-query attention over a long cache cheap: the cache is the
// bytes that count there, as the weights are for the rest of a decode step.
//
// AttendF16 neither allocates (after the scratch has grown to the cache's
// size) nor validates beyond slice bounds checks.
func AttendF16(hd, n, g int, q []float32, k []byte, kStride int, v []byte, vStride int, scale float32, out []float32, a *AttnScratch) {
	attendF16(hd, n, g, q, k, kStride, v, vStride, scale, 0, out, a)
}

// AttendF16Capped is AttendF16 with Gemma 2's soft-capped scores: each
// score q·k becomes softcap·tanh(q·k/softcap) (Softcap's arithmetic) and is
// then multiplied by scale before the softmax.
//
//	out[h] = softmax(scale · softcap·tanh(q[h]·Kᵀ/softcap)) · V
func AttendF16Capped(hd, n, g int, q []float32, k []byte, kStride int, v []byte, vStride int, scale, softcap float32, out []float32, a *AttnScratch) {
	attendF16(hd, n, g, q, k, kStride, v, vStride, scale, softcap, out, a)
}

// attendF16 is AttendF16, with the scores capped when softcap > 0.
func attendF16(hd, n, g int, q []float32, k []byte, kStride int, v []byte, vStride int, scale, softcap float32, out []float32, a *AttnScratch) {
	if n <= 0 || g <= 0 || hd <= 0 {
		return
	}
	a.grow(g, hd, n)
	q, out = q[:g*hd], out[:g*hd]
	copy(a.q, q)
	roundF16(a.q[:g*hd])
	// Index expressions check against len (a reslice would only check cap).
	_ = k[(n-1)*kStride+2*hd-1]
	_ = v[(hd-1)*vStride+2*n-1]

	// Scores: blocks of 8 keys in assembly (the last one copied and padded
	// with zeros), or all here without AVX2.
	simd := useAVX2 && hd%8 == 0 && kStride >= 0 && vStride >= 0
	ks := scale // what the score kernels multiply by: 1 when capping comes first
	if softcap > 0 {
		ks = 1
	}
	nb := 0
	if simd {
		nb = n / 8
		if nb > 0 {
			attnScoresAVX2(&k[0], kStride, nb, &a.q[0], g, hd, &a.s[0], 4*n, ks, &a.kf[0])
		}
		if rest := n - 8*nb; rest > 0 {
			clear(a.tk)
			for i := 0; i < rest; i++ {
				copy(a.tk[i*2*hd:(i+1)*2*hd], k[(8*nb+i)*kStride:])
			}
			attnScoresAVX2(&a.tk[0], 2*hd, 1, &a.q[0], g, hd, &a.ts[0], 32, ks, &a.kf[0])
			for h := 0; h < g; h++ {
				copy(a.s[h*n+8*nb:(h+1)*n], a.ts[8*h:8*h+rest])
			}
		}
		nb = n // all scored
	}
	for i := 8 * nb; i < n; i++ {
		row := k[i*kStride : i*kStride+2*hd]
		for h := 0; h < g; h++ {
			qh := a.q[h*hd : (h+1)*hd]
			var sum float32
			for d, x := range qh {
				sum += F16ToF32(le16(row[2*d:])) * x
			}
			a.s[h*n+i] = sum * ks
		}
	}
	if softcap > 0 {
		sc := a.s[:g*n]
		Softcap(sc, softcap)
		for i := range sc {
			sc[i] *= scale
		}
	}

	// Softmax per head; probabilities rounded to F16 in place.
	for h := 0; h < g; h++ {
		a.softmaxF16(a.s[h*n : (h+1)*n])
	}

	// Probabilities times values: whole chunks of 8 positions in assembly,
	// up to 4 heads per pass over the values, the rest here.
	nch := 0
	if simd {
		nch = n / 8
		if nch > 0 {
			attnValues(&v[0], vStride, nch, &a.s[0], 4*n, g, hd, &out[0])
		} else {
			clear(out)
		}
		if start := 8 * nch; start < n {
			rest := n - start
			clear(a.tv)
			clear(a.tp)
			for d := 0; d < hd; d++ {
				copy(a.tv[d*16:d*16+2*rest], v[d*vStride+2*start:])
			}
			for h := 0; h < g; h++ {
				copy(a.tp[8*h:8*h+rest], a.s[h*n+start:(h+1)*n])
			}
			attnValues(&a.tv[0], 16, 1, &a.tp[0], 32, g, hd, &a.to[0])
			for i, x := range a.to {
				out[i] += x
			}
		}
		return
	}
	clear(out)
	if start := 8 * nch; start < n {
		for d := 0; d < hd; d++ {
			row := v[d*vStride+2*start : d*vStride+2*n]
			for h := 0; h < g; h++ {
				p := a.s[h*n+start : (h+1)*n]
				var sum float32
				for i, x := range p {
					sum += F16ToF32(le16(row[2*i:])) * x
				}
				out[h*hd+d] += sum
			}
		}
	}
}

// attnValues runs the values kernel over g heads, up to 4 per pass.
func attnValues(v *byte, vStride, nch int, p *float32, pStride, g, hd int, out *float32) {
	ps := unsafe.Slice(p, g*pStride/4)
	os := unsafe.Slice(out, g*hd)
	for h0 := 0; h0 < g; h0 += 4 {
		pp, op := &ps[h0*pStride/4], &os[h0*hd]
		switch min(4, g-h0) {
		case 1:
			attnValues1AVX2(v, vStride, nch, pp, pStride, hd, op, 4*hd)
		case 2:
			attnValues2AVX2(v, vStride, nch, pp, pStride, hd, op, 4*hd)
		case 3:
			attnValues3AVX2(v, vStride, nch, pp, pStride, hd, op, 4*hd)
		default:
			attnValues4AVX2(v, vStride, nch, pp, pStride, hd, op, 4*hd)
		}
	}
}

// roundF16 rounds each element of x to the nearest F16 value (kept as
// float32), as F16ToF32(F32ToF16(v)) does, 8 at a time with AVX2.
func roundF16(x []float32) {
	nch := 0
	if useAVX2 {
		nch = len(x) / 8
		if nch > 0 {
			scaleRoundF16AVX2(&x[0], nch, 1)
		}
	}
	for i := 8 * nch; i < len(x); i++ {
		x[i] = F16ToF32(F32ToF16(x[i]))
	}
}

// softmaxF16 replaces x with softmax(x) rounded to F16 (kept as float32),
// summing in float64 like ggml's soft_max.
func (a *AttnScratch) softmaxF16(x []float32) {
	nch := 0
	if useAVX2 {
		nch = len(x) / 8
	}
	m := float32(math.Inf(-1))
	if nch > 0 {
		maxAVX2(&x[0], nch, &a.part)
		for _, v := range a.part {
			m = max(m, v)
		}
	}
	for _, v := range x[8*nch:] {
		m = max(m, v)
	}
	var sum float64
	if nch > 0 {
		expSubAVX2(&x[0], nch, m, &a.sums)
		sum = (a.sums[0] + a.sums[1]) + (a.sums[2] + a.sums[3])
	}
	for i := 8 * nch; i < len(x); i++ {
		x[i] = Expf(x[i] - m)
		sum += float64(x[i])
	}
	inv := float32(1 / sum)
	if nch > 0 {
		scaleRoundF16AVX2(&x[0], nch, inv)
	}
	for i := 8 * nch; i < len(x); i++ {
		x[i] = F16ToF32(F32ToF16(x[i] * inv))
	}
}

// Expf is e^x in float32, within 2 ulp of the exact value (as ggml's SIMD
// expf is): Cody-Waite reduction x = n·ln2 + r, |r| ≤ ln2/2, then a degree-6
// polynomial for e^r (Cephes' coefficients), then the exponent n put in place.
// Outside the range where 2^n is a normal float it defers to math.Exp. The
// attention's assembly computes the same float32 operations eight at a time.
func Expf(x float32) float32 {
	if !(x > -87 && x < 88) { // also NaN
		return float32(math.Exp(float64(x)))
	}
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693359375
		ln2lo = -2.12194440e-4
	)
	// Round x·log2(e) to the nearest integer by adding and removing 1.5·2^23,
	// which pushes the fraction out of a float32's mantissa.
	const magic = 12582912
	n := x*log2e + magic - magic
	r := x - n*ln2hi - n*ln2lo
	p := float32(1.9875691500e-4)
	p = p*r + 1.3981999507e-3
	p = p*r + 8.3334519073e-3
	p = p*r + 4.1665795894e-2
	p = p*r + 1.6666665459e-1
	p = p*r + 5.0000001201e-1
	p = p*r*r + r + 1
	return p * math.Float32frombits(uint32(int32(n)+127)<<23)
}
