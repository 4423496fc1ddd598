package ggml

import (
	"encoding/binary"
	"math"
)

// Q6_K: super-blocks of 256 elements in 210 bytes (block_q6_K), 16 sub-blocks of
// 16 elements with int8 scales:
//
//	offset 0    ql      128 bytes of low nibbles
//	offset 128  qh      64 bytes of high bit pairs
//	offset 192  scales  16 int8 sub-block scales
//	offset 208  d       F16 super-block scale
//
// Each half h (0, 1) of 128 elements uses ql[64h:64h+64] and qh[32h:32h+32]; for
// l in 0..31 (with L = ql[64h+l], M = ql[64h+32+l], H = qh[32h+l]):
//
//	element 128h+l     = L&15 | (H>>0&3)<<4
//	element 128h+32+l  = M&15 | (H>>2&3)<<4
//	element 128h+64+l  = L>>4 | (H>>4&3)<<4
//	element 128h+96+l  = M>>4 | (H>>6&3)<<4
//
// Element e has value d·scales[e/16]·(q − 32).
const q6KSize = 210

func dequantQ6K(src []byte, dst []float32) {
	for i := 0; i < len(dst)/QKK; i++ {
		b := (*[q6KSize]byte)(src[i*q6KSize:])
		y := (*[QKK]float32)(dst[i*QKK:])
		d := f16(b[208:])
		for h := 0; h < 2; h++ {
			ql := (*[64]byte)(b[64*h:])
			qh := (*[32]byte)(b[128+32*h:])
			sc := (*[8]byte)(b[192+8*h:])
			o := (*[128]float32)(y[128*h:])
			for l := 0; l < 32; l++ {
				is := l / 16
				H := qh[l]
				q1 := int32(ql[l]&15|(H&3)<<4) - 32
				q2 := int32(ql[l+32]&15|(H>>2&3)<<4) - 32
				q3 := int32(ql[l]>>4|(H>>4&3)<<4) - 32
				q4 := int32(ql[l+32]>>4|(H>>6&3)<<4) - 32
				o[l] = d * float32(int8(sc[is])) * float32(q1)
				o[l+32] = d * float32(int8(sc[is+2])) * float32(q2)
				o[l+64] = d * float32(int8(sc[is+4])) * float32(q3)
				o[l+96] = d * float32(int8(sc[is+6])) * float32(q4)
			}
		}
	}
}

func quantQ6K(dst []byte, src []float32) {
	for i := 0; i < len(src)/QKK; i++ {
		x := (*[QKK]float32)(src[i*QKK:])
		b := (*[q6KSize]byte)(dst[i*q6KSize:])
		var scales [16]float32
		var maxScale, maxAbs float32
		for g := range scales {
			scales[g] = fitSymmetric((*[16]float32)(x[16*g:]), 32)
			if a := abs32(scales[g]); a > maxAbs {
				maxAbs, maxScale = a, scales[g]
			}
		}
		*b = [q6KSize]byte{}
		if !(maxAbs >= 1e-15) {
			continue
		}
		iscale := -128 / maxScale
		binary.LittleEndian.PutUint16(b[208:], F32ToF16(1/iscale))
		d := f16(b[208:])
		var L [QKK]uint8
		for g := range scales {
			s := max(-128, min(127, nearestInt(iscale*scales[g])))
			b[192+g] = byte(int8(s))
			dg := d * float32(s)
			if dg == 0 {
				for e := 16 * g; e < 16*g+16; e++ {
					L[e] = 32
				}
				continue
			}
			for e := 16 * g; e < 16*g+16; e++ {
				L[e] = uint8(max(-32, min(31, nearestInt(x[e]/dg))) + 32)
			}
		}
		for h := 0; h < 2; h++ {
			ql := (*[64]byte)(b[64*h:])
			qh := (*[32]byte)(b[128+32*h:])
			q := (*[128]uint8)(L[128*h:])
			for l := 0; l < 32; l++ {
				ql[l] = q[l]&15 | (q[l+64]&15)<<4
				ql[l+32] = q[l+32]&15 | (q[l+96]&15)<<4
				qh[l] = q[l]>>4 | (q[l+32]>>4)<<2 | (q[l+64]>>4)<<4 | (q[l+96]>>4)<<6
			}
		}
	}
}

// dotQ6K is the generic Q6_K × Q8_K dot product: per super-block the exact
// integer Σ scale[g]·Σ (q−32)·q8 over the 16 groups of 16, scaled by d·d8.
func dotQ6K(n int, w, x []byte) float32 {
	var acc float32
	for i := 0; i < n/QKK; i++ {
		b := (*[q6KSize]byte)(w[i*q6KSize:])
		y := (*[q8KSize]byte)(x[i*q8KSize:])
		var isum int32
		for h := 0; h < 2; h++ {
			ql := (*[64]byte)(b[64*h:])
			qh := (*[32]byte)(b[128+32*h:])
			sc := (*[8]byte)(b[192+8*h:])
			q8 := (*[128]byte)(y[4+128*h:])
			for half := 0; half < 2; half++ { // l in 0..15, then 16..31 (one scale each)
				var s1, s2, s3, s4 int32
				for l := 16 * half; l < 16*half+16; l++ {
					H := qh[l]
					s1 += (int32(ql[l]&15|(H&3)<<4) - 32) * int32(int8(q8[l]))
					s2 += (int32(ql[l+32]&15|(H>>2&3)<<4) - 32) * int32(int8(q8[l+32]))
					s3 += (int32(ql[l]>>4|(H>>4&3)<<4) - 32) * int32(int8(q8[l+64]))
					s4 += (int32(ql[l+32]>>4|(H>>6&3)<<4) - 32) * int32(int8(q8[l+96]))
				}
				isum += s1*int32(int8(sc[half])) + s2*int32(int8(sc[half+2])) +
					s3*int32(int8(sc[half+4])) + s4*int32(int8(sc[half+6]))
			}
		}
		acc += math.Float32frombits(le32(y[0:])) * f16(b[208:]) * float32(isum)
	}
	return acc
}
