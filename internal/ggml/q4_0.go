package ggml

import "encoding/binary"

// Q4_0: blocks of 32 elements in 18 bytes (block_q4_0):
//
//	offset 0  d   F16 scale
//	offset 2  qs  16 bytes; element j (0..15) is the low nibble of qs[j],
//	              element j+16 the high nibble
//
// Element value: (q − 8)·d.
const q4_0Size = 18

func dequantQ4_0(src []byte, dst []float32) {
	for i := 0; i < len(dst)/QK; i++ {
		b := (*[q4_0Size]byte)(src[i*q4_0Size:])
		y := (*[QK]float32)(dst[i*QK:])
		d := f16(b[0:])
		for j := 0; j < 16; j++ {
			y[j] = float32(int32(b[2+j]&15)-8) * d
			y[j+16] = float32(int32(b[2+j]>>4)-8) * d
		}
	}
}

// quantQ4_0 follows quantize_row_q4_0_ref.
func quantQ4_0(dst []byte, src []float32) {
	for i := 0; i < len(src)/QK; i++ {
		x := (*[QK]float32)(src[i*QK:])
		b := (*[q4_0Size]byte)(dst[i*q4_0Size:])
		var amax, vmax float32
		for _, v := range x {
			if a := abs32(v); a > amax {
				amax, vmax = a, v
			}
		}
		d := vmax / -8
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(b[0:], F32ToF16(d))
		for j := 0; j < 16; j++ {
			b[2+j] = q4Nibble(x[j]*id) | q4Nibble(x[j+16]*id)<<4
		}
	}
}

// q4Nibble is min(15, trunc(v + 8.5)), kept within 0..15 for any input.
func q4Nibble(v float32) byte {
	f := v + 8.5
	switch {
	case f >= 15:
		return 15
	case f > 0:
		return byte(f)
	}
	return 0
}

// dotQ4_0 is the generic Q4_0 × Q8_0 dot product: exact integer sums per block,
// scaled by the product of the two block scales.
func dotQ4_0(n int, w, x []byte) float32 {
	var sum float32
	for i := 0; i < n/QK; i++ {
		b := (*[q4_0Size]byte)(w[i*q4_0Size:])
		y := (*[q8_0Size]byte)(x[i*q8_0Size:])
		var s int32
		for j := 0; j < 16; j++ {
			s += (int32(b[2+j]&15) - 8) * int32(int8(y[2+j]))
			s += (int32(b[2+j]>>4) - 8) * int32(int8(y[18+j]))
		}
		sum += float32(s) * (f16(b[0:]) * f16(y[0:]))
	}
	return sum
}
