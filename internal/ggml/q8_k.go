package ggml

import (
	"encoding/binary"
	"math"
)

// Q8_K: blocks of 256 elements in 292 bytes (block_q8_K), the activation format
// paired with the K-quants:
//
//	offset 0    d      float32 scale
//	offset 4    qs     256 int8 quants
//	offset 260  bsums  16 int16, the sum of qs over each group of 16
//
// Element value: q·d.
const q8KSize = 292

func dequantQ8K(src []byte, dst []float32) {
	for i := 0; i < len(dst)/QKK; i++ {
		b := (*[q8KSize]byte)(src[i*q8KSize:])
		y := (*[QKK]float32)(dst[i*QKK:])
		d := math.Float32frombits(le32(b[0:]))
		for j := range y {
			y[j] = d * float32(int8(b[4+j]))
		}
	}
}

// quantizeRowQ8KGo follows quantize_row_q8_K_ref (see QuantizeInto);
// quantizeRowQ8K runs it or its assembly twin.
func quantizeRowQ8KGo(dst []byte, src []float32) {
	for i := 0; i < len(src)/QKK; i++ {
		x := (*[QKK]float32)(src[i*QKK:])
		b := (*[q8KSize]byte)(dst[i*q8KSize:])
		var amax, vmax float32
		for _, v := range x {
			if a := abs32(v); a > amax {
				amax, vmax = a, v
			}
		}
		if amax == 0 {
			clear(b[:])
			continue
		}
		iscale := -127 / vmax
		for j, v := range x {
			b[4+j] = byte(int8(max(-128, min(127, nearestInt(iscale*v)))))
		}
		for g := 0; g < QKK/16; g++ {
			var s int32
			for _, q := range b[4+16*g : 4+16*g+16] {
				s += int32(int8(q))
			}
			binary.LittleEndian.PutUint16(b[260+2*g:], uint16(int16(s)))
		}
		binary.LittleEndian.PutUint32(b[0:], math.Float32bits(1/iscale))
	}
}
