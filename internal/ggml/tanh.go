package ggml

import "math"

// Softcap replaces x with cp·tanh(x/cp), in three float32 roundings as ggml
// computes it (scale by 1/cp, tanh, scale by cp).
// On CPUs with AVX2 four at a time, with the same bits.
func Softcap(x []float32, cp float32) {
	inv := 1 / cp
	nch := 0
	if useAVX2 {
		nch = len(x) / 4
		if nch > 0 {
			softcapAVX2(&x[0], nch, inv, cp)
		}
	}
	for i := 4 * nch; i < len(x); i++ {
		x[i] = Tanh32(x[i]*inv) * cp
	}
}

// Tanh32 is float32(math.Tanh(float64(y))) to within one unit in the last
// place, about twice as fast: Gemma 2 soft-caps every attention score
// and every logit, so tanh is on its decode path tens of thousands of times
// per token. Below 0.5 it sums tanh's odd Taylor series to the y¹⁷ term
// (the next term is under 10⁻⁸ of the value there); above, it is
// (1 − e)/(1 + e) with e = exp(−2|y|) from a Taylor polynomial of degree 9
// on the reduced argument r = −2|y| − k·ln 2, |r| ≤ ln 2/2, scaled by 2^k.
// All of it in float64, rounded to float32 once. The conversions keep every
// product rounded (no fused multiply-add) so that Softcap's vector kernel,
// which rounds each one too, gives the same bits.
func Tanh32(y float32) float32 {
	a := math.Abs(float64(y))
	var t float64
	switch {
	case a != a: // NaN
		return y
	case a >= 9: // tanh(9) rounds to 1 in float32
		t = 1
	case a < 0.5:
		z := a * a
		// Coefficients of tanh's series: 1, −1/3, 2/15, −17/315, 62/2835,
		// −1382/155925, 21844/6081075, −929569/638512875, 6404582/10854718875.
		p := 6404582.0 / 10854718875
		p = float64(p*z) - 929569.0/638512875
		p = float64(p*z) + 21844.0/6081075
		p = float64(p*z) - 1382.0/155925
		p = float64(p*z) + 62.0/2835
		p = float64(p*z) - 17.0/315
		p = float64(p*z) + 2.0/15
		p = float64(p*z) - 1.0/3
		t = a + float64(a*z*p)
	default:
		v := -2 * a
		k := math.RoundToEven(v * (1 / math.Ln2))
		r := v - float64(k*math.Ln2)
		q := 1.0 / 362880
		q = float64(q*r) + 1.0/40320
		q = float64(q*r) + 1.0/5040
		q = float64(q*r) + 1.0/720
		q = float64(q*r) + 1.0/120
		q = float64(q*r) + 1.0/24
		q = float64(q*r) + 1.0/6
		q = float64(q*r) + 0.5
		q = float64(q*r) + 1
		q = float64(q*r) + 1
		e := q * math.Float64frombits(uint64(int64(k)+1023)<<52) // k is in [−26, −1]
		t = (1 - e) / (1 + e)
	}
	if y < 0 {
		t = -t
	}
	return float32(t)
}
