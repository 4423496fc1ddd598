package ggml

import "encoding/binary"

// Q8_0: blocks of 32 elements in 34 bytes (block_q8_0):
//
//	offset 0  d   F16 scale
//	offset 2  qs  32 int8 quants
//
// Element value: q·d.
const q8_0Size = 34

func dequantQ8_0(src []byte, dst []float32) {
	for i := 0; i < len(dst)/QK; i++ {
		b := (*[q8_0Size]byte)(src[i*q8_0Size:])
		y := (*[QK]float32)(dst[i*QK:])
		d := f16(b[0:])
		for j := range y {
			y[j] = float32(int8(b[2+j])) * d
		}
	}
}

// quantizeRowQ8_0Go follows ggml's AVX2 quantize_row_q8_0 (see QuantizeInto);
// quantizeRowQ8_0 runs it or its assembly twin.
func quantizeRowQ8_0Go(dst []byte, src []float32) {
	for i := 0; i < len(src)/QK; i++ {
		x := (*[QK]float32)(src[i*QK:])
		b := (*[q8_0Size]byte)(dst[i*q8_0Size:])
		var amax float32
		for _, v := range x {
			amax = max(amax, abs32(v))
		}
		binary.LittleEndian.PutUint16(b[0:], F32ToF16(amax/127))
		var id float32
		if amax != 0 {
			id = 127 / amax
		}
		for j, v := range x {
			b[2+j] = byte(int8(max(-128, min(127, nearestInt(v*id)))))
		}
	}
}

// dotQ8_0 is the generic Q8_0 × Q8_0 dot product.
func dotQ8_0(n int, w, x []byte) float32 {
	var sum float32
	for i := 0; i < n/QK; i++ {
		b := (*[q8_0Size]byte)(w[i*q8_0Size:])
		y := (*[q8_0Size]byte)(x[i*q8_0Size:])
		var s int32
		for j := 2; j < q8_0Size; j++ {
			s += int32(int8(b[j])) * int32(int8(y[j]))
		}
		sum += float32(s) * (f16(b[0:]) * f16(y[0:]))
	}
	return sum
}
