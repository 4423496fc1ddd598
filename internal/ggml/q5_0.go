package ggml

import "encoding/binary"

// Q5_0: blocks of 32 elements in 22 bytes (block_q5_0):
//
//	offset 0  d   F16 scale
//	offset 2  qh  32 bits, little-endian: bit j is the fifth bit of element j
//	offset 6  qs  16 bytes; element j (0..15) has its low four bits in the
//	              low nibble of qs[j], element j+16 in the high nibble
//
// Element value: (q − 16)·d. llama.cpp's quantizer falls back to Q5_0 for
// matrices whose rows are not a multiple of 256 (Qwen's widths, say).
const q5_0Size = 22

func dequantQ5_0(src []byte, dst []float32) {
	for i := 0; i < len(dst)/QK; i++ {
		b := (*[q5_0Size]byte)(src[i*q5_0Size:])
		y := (*[QK]float32)(dst[i*QK:])
		d := f16(b[0:])
		qh := le32(b[2:])
		for j := 0; j < 16; j++ {
			lo := int32(b[6+j]&15) | int32(qh>>j&1)<<4
			hi := int32(b[6+j]>>4) | int32(qh>>(j+16)&1)<<4
			y[j] = float32(lo-16) * d
			y[j+16] = float32(hi-16) * d
		}
	}
}

// quantQ5_0 follows quantize_row_q5_0_ref.
func quantQ5_0(dst []byte, src []float32) {
	for i := 0; i < len(src)/QK; i++ {
		x := (*[QK]float32)(src[i*QK:])
		b := (*[q5_0Size]byte)(dst[i*q5_0Size:])
		var amax, vmax float32
		for _, v := range x {
			if a := abs32(v); a > amax {
				amax, vmax = a, v
			}
		}
		d := vmax / -16
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(b[0:], F32ToF16(d))
		var qh uint32
		for j := 0; j < 16; j++ {
			lo, hi := q5Level(x[j]*id), q5Level(x[j+16]*id)
			b[6+j] = lo&15 | (hi&15)<<4
			qh |= uint32(lo>>4) << j
			qh |= uint32(hi>>4) << (j + 16)
		}
		binary.LittleEndian.PutUint32(b[2:], qh)
	}
}

// q5Level is min(31, trunc(v + 16.5)), kept within 0..31 for any input.
func q5Level(v float32) byte {
	f := v + 16.5
	switch {
	case f >= 31:
		return 31
	case f > 0:
		return byte(f)
	}
	return 0
}

// dotQ5_0 is the generic Q5_0 × Q8_0 dot product: exact integer sums per
// block, scaled by the product of the two block scales.
func dotQ5_0(n int, w, x []byte) float32 {
	var sum float32
	for i := 0; i < n/QK; i++ {
		b := (*[q5_0Size]byte)(w[i*q5_0Size:])
		y := (*[q8_0Size]byte)(x[i*q8_0Size:])
		qh := le32(b[2:])
		var s int32
		for j := 0; j < 16; j++ {
			lo := int32(b[6+j]&15) | int32(qh>>j&1)<<4
			hi := int32(b[6+j]>>4) | int32(qh>>(j+16)&1)<<4
			s += (lo - 16) * int32(int8(y[2+j]))
			s += (hi - 16) * int32(int8(y[18+j]))
		}
		sum += float32(s) * (f16(b[0:]) * f16(y[0:]))
	}
	return sum
}
