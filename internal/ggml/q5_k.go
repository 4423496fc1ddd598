package ggml

import (
	"encoding/binary"
	"math"
)

// Q5_K: super-blocks of 256 elements in 176 bytes (block_q5_K), laid out as
// Q4_K with a fifth bit per element:
//
//	offset 0   d       F16 super-block scale of the scales
//	offset 2   dmin    F16 super-block scale of the mins
//	offset 4   scales  12 bytes, 8 6-bit scales and mins as in Q4_K
//	offset 16  qh      32 bytes of high bits: bit 2c of qh[l] belongs to element
//	                   64c+l, bit 2c+1 to element 64c+32+l
//	offset 48  qs      128 bytes of low nibbles, arranged as in Q4_K
//
// Element value in sub-block j: d·sc[j]·q − dmin·m[j], q in 0..31.
const q5KSize = 176

func dequantQ5K(src []byte, dst []float32) {
	for i := 0; i < len(dst)/QKK; i++ {
		b := (*[q5KSize]byte)(src[i*q5KSize:])
		y := (*[QKK]float32)(dst[i*QKK:])
		d, dmin := f16(b[0:]), f16(b[2:])
		sc, m := scaleMinK4(b[4:16])
		qh := (*[32]byte)(b[16:])
		for c := 0; c < 4; c++ {
			d1, m1 := d*float32(sc[2*c]), dmin*float32(m[2*c])
			d2, m2 := d*float32(sc[2*c+1]), dmin*float32(m[2*c+1])
			q := (*[32]byte)(b[48+32*c:])
			for l, v := range q {
				h := qh[l] >> (2 * c)
				y[64*c+l] = d1*float32(v&15|(h&1)<<4) - m1
				y[64*c+32+l] = d2*float32(v>>4|(h&2)<<3) - m2
			}
		}
	}
}

func quantQ5K(dst []byte, src []float32) {
	for i := 0; i < len(src)/QKK; i++ {
		x := (*[QKK]float32)(src[i*QKK:])
		b := (*[q5KSize]byte)(dst[i*q5KSize:])
		scales, mins := kSubBlockFit(x, 31, -0.5, 0.1, 15)
		d, dmin, ls, lm := quantizeKScales(&scales, &mins)
		binary.LittleEndian.PutUint16(b[0:], d)
		binary.LittleEndian.PutUint16(b[2:], dmin)
		packScaleMinK4(b[4:16], &ls, &lm)
		df, mf := F16ToF32(d), F16ToF32(dmin)
		qh := (*[32]byte)(b[16:])
		*qh = [32]byte{}
		var lo, hi [32]uint8
		for c := 0; c < 4; c++ {
			kLevels((*[32]float32)(x[64*c:]), df*float32(ls[2*c]), mf*float32(lm[2*c]), 31, &lo)
			kLevels((*[32]float32)(x[64*c+32:]), df*float32(ls[2*c+1]), mf*float32(lm[2*c+1]), 31, &hi)
			q := (*[32]byte)(b[48+32*c:])
			for l := range q {
				q[l] = lo[l]&15 | (hi[l]&15)<<4
				qh[l] |= (lo[l]>>4)<<(2*c) | (hi[l]>>4)<<(2*c+1)
			}
		}
	}
}

// dotQ5K is the generic Q5_K × Q8_K dot product (as dotQ4K, with 5-bit quants).
func dotQ5K(n int, w, x []byte) float32 {
	var acc, accMin float32
	for i := 0; i < n/QKK; i++ {
		b := (*[q5KSize]byte)(w[i*q5KSize:])
		y := (*[q8KSize]byte)(x[i*q8KSize:])
		sc, m := scaleMinK4(b[4:16])
		qh := (*[32]byte)(b[16:])
		var isum, msum int32
		for c := 0; c < 4; c++ {
			q := (*[32]byte)(b[48+32*c:])
			y0 := (*[32]byte)(y[4+64*c:])
			y1 := (*[32]byte)(y[4+64*c+32:])
			var s0, s1 int32
			for l, v := range q {
				h := qh[l] >> (2 * c)
				s0 += int32(v&15|(h&1)<<4) * int32(int8(y0[l]))
				s1 += int32(v>>4|(h&2)<<3) * int32(int8(y1[l]))
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
