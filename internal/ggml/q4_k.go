package ggml

import (
	"encoding/binary"
	"math"
)

// Q4_K: super-blocks of 256 elements in 144 bytes (block_q4_K), 8 sub-blocks of
// 32 elements, each with a 6-bit scale and a 6-bit min:
//
//	offset 0   d       F16 super-block scale of the scales
//	offset 2   dmin    F16 super-block scale of the mins
//	offset 4   scales  12 bytes holding 8 scales and 8 mins of 6 bits (see scaleMinK4)
//	offset 16  qs      128 bytes of nibbles: for chunk c (0..3) of 64 elements,
//	                   byte qs[32c+l] holds element 64c+l in its low nibble
//	                   (sub-block 2c) and element 64c+32+l in its high nibble
//	                   (sub-block 2c+1)
//
// Element value in sub-block j: d·sc[j]·q − dmin·m[j].
const q4KSize = 144

// scaleMinK4 unpacks the 8 6-bit scales and mins of a Q4_K or Q5_K block
// (ggml's get_scale_min_k4): for j < 4, sc[j] is the low 6 bits of s[j] and m[j]
// the low 6 bits of s[j+4]; for j ≥ 4, sc[j] is the low nibble of s[j+4] with the
// top 2 bits of s[j-4] above it, and m[j] the high nibble of s[j+4] with the
// top 2 bits of s[j] above it.
func scaleMinK4(s []byte) (sc, m [8]uint8) {
	s = s[:12]
	for j := 0; j < 4; j++ {
		sc[j] = s[j] & 63
		m[j] = s[j+4] & 63
		sc[j+4] = s[j+8]&15 | (s[j]>>6)<<4
		m[j+4] = s[j+8]>>4 | (s[j+4]>>6)<<4
	}
	return sc, m
}

// packScaleMinK4 is the inverse of scaleMinK4 (values must be below 64).
func packScaleMinK4(s []byte, sc, m *[8]uint8) {
	s = s[:12]
	for j := 0; j < 4; j++ {
		s[j] = sc[j] | (sc[j+4]>>4)<<6
		s[j+4] = m[j] | (m[j+4]>>4)<<6
		s[j+8] = sc[j+4]&15 | (m[j+4]&15)<<4
	}
}

func dequantQ4K(src []byte, dst []float32) {
	for i := 0; i < len(dst)/QKK; i++ {
		b := (*[q4KSize]byte)(src[i*q4KSize:])
		y := (*[QKK]float32)(dst[i*QKK:])
		d, dmin := f16(b[0:]), f16(b[2:])
		sc, m := scaleMinK4(b[4:16])
		for c := 0; c < 4; c++ {
			d1, m1 := d*float32(sc[2*c]), dmin*float32(m[2*c])
			d2, m2 := d*float32(sc[2*c+1]), dmin*float32(m[2*c+1])
			q := (*[32]byte)(b[16+32*c:])
			for l, v := range q {
				y[64*c+l] = d1*float32(v&15) - m1
				y[64*c+32+l] = d2*float32(v>>4) - m2
			}
		}
	}
}

// kSubBlockFit computes, for a super-block of 256 values, the per-sub-block
// scale and (negated) min of the affine Q4_K/Q5_K encodings with levels
// 0..nmax, with llama.cpp's weighting av_x + |x| (av_x the sub-block's RMS).
func kSubBlockFit(x *[QKK]float32, nmax int, rmin, rdelta float32, nstep int) (scales, mins [8]float32) {
	var w [32]float32
	for j := 0; j < 8; j++ {
		xs := (*[32]float32)(x[32*j:])
		var sumX2 float32
		for _, v := range xs {
			sumX2 += v * v
		}
		av := float32(math.Sqrt(float64(sumX2 / 32)))
		for l, v := range xs {
			w[l] = av + abs32(v)
		}
		scales[j], mins[j] = fitScaleMin(xs, &w, nmax, rmin, rdelta, nstep)
	}
	return scales, mins
}

// quantizeKScales quantizes 8 non-negative sub-block scales and mins to 6 bits
// against their maxima, returning the F16 super-block scales and the 6-bit
// values as stored.
func quantizeKScales(scales, mins *[8]float32) (d, dmin uint16, ls, lm [8]uint8) {
	var maxScale, maxMin float32
	for j := range scales {
		maxScale = max(maxScale, scales[j])
		maxMin = max(maxMin, mins[j])
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	for j := range scales {
		ls[j] = uint8(max(0, min(63, nearestInt(invScale*scales[j]))))
		lm[j] = uint8(max(0, min(63, nearestInt(invMin*mins[j]))))
	}
	return F32ToF16(maxScale / 63), F32ToF16(maxMin / 63), ls, lm
}

// kLevels quantizes the 32 values of a sub-block to levels 0..nmax given the
// stored scale d·sc and min dmin·m: l = round((x + dmin·m)/(d·sc)).
func kLevels(x *[32]float32, d, dm float32, nmax int32, out *[32]uint8) {
	if d == 0 {
		*out = [32]uint8{}
		return
	}
	for l, v := range x {
		out[l] = uint8(max(0, min(nmax, nearestInt((v+dm)/d))))
	}
}

func quantQ4K(dst []byte, src []float32) {
	for i := 0; i < len(src)/QKK; i++ {
		x := (*[QKK]float32)(src[i*QKK:])
		b := (*[q4KSize]byte)(dst[i*q4KSize:])
		scales, mins := kSubBlockFit(x, 15, -1, 0.1, 20)
		d, dmin, ls, lm := quantizeKScales(&scales, &mins)
		binary.LittleEndian.PutUint16(b[0:], d)
		binary.LittleEndian.PutUint16(b[2:], dmin)
		packScaleMinK4(b[4:16], &ls, &lm)
		df, mf := F16ToF32(d), F16ToF32(dmin)
		var lo, hi [32]uint8
		for c := 0; c < 4; c++ {
			kLevels((*[32]float32)(x[64*c:]), df*float32(ls[2*c]), mf*float32(lm[2*c]), 15, &lo)
			kLevels((*[32]float32)(x[64*c+32:]), df*float32(ls[2*c+1]), mf*float32(lm[2*c+1]), 15, &hi)
			q := (*[32]byte)(b[16+32*c:])
			for l := range q {
				q[l] = lo[l] | hi[l]<<4
			}
		}
	}
}

// q8KBsumPairs returns, for a Q8_K block, the sums of its quants over each
// sub-block of 32 (pairs of bsums).
func q8KBsumPairs(y *[q8KSize]byte) (s [8]int32) {
	for j := range s {
		s[j] = int32(int16(le16(y[260+4*j:]))) + int32(int16(le16(y[262+4*j:])))
	}
	return s
}

// dotQ4K is the generic Q4_K × Q8_K dot product: per super-block the exact
// integer Σ sc[j]·Σ q·q8 scaled by d·d8, minus dmin·d8·Σ m[j]·bsum[j] with the
// bsums of the Q8_K block.
func dotQ4K(n int, w, x []byte) float32 {
	var acc, accMin float32
	for i := 0; i < n/QKK; i++ {
		b := (*[q4KSize]byte)(w[i*q4KSize:])
		y := (*[q8KSize]byte)(x[i*q8KSize:])
		sc, m := scaleMinK4(b[4:16])
		var isum, msum int32
		for c := 0; c < 4; c++ {
			q := (*[32]byte)(b[16+32*c:])
			y0 := (*[32]byte)(y[4+64*c:])
			y1 := (*[32]byte)(y[4+64*c+32:])
			var s0, s1 int32
			for l, v := range q {
				s0 += int32(v&15) * int32(int8(y0[l]))
				s1 += int32(v>>4) * int32(int8(y1[l]))
			}
			isum += s0*int32(sc[2*c]) + s1*int32(sc[2*c+1])
		}
		bs := q8KBsumPairs(y)
		for j := range bs {
			msum += int32(m[j]) * bs[j]
		}
		yd := math.Float32frombits(le32(y[0:]))
		acc += yd * f16(b[0:]) * float32(isum)
		accMin += yd * f16(b[2:]) * float32(msum)
	}
	return acc - accMin
}
