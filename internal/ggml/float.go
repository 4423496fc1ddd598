package ggml

import (
	"encoding/binary"
	"math"
)

// Generic dot products of F32, F16 and BF16 vectors. They keep ggml's SIMD
// summation structure: 32 float32 partial sums over the first n rounded down to a
// multiple of 32 (4 vectors of 8 lanes), reduced pairwise, and the remaining
// elements added in float64.

// reduce32 folds 32 partial sums the way GGML_F32x8_REDUCE does: vector 0 += 2,
// 1 += 3, then 0 += 1, then lane k += lane k+4 and two horizontal adds. (ggml's
// BF16 kernel pairs the last lanes slightly differently; the difference is
// float32 rounding.)
func reduce32(acc *[32]float32) float32 {
	var v [8]float32
	for k := range v {
		v[k] = (acc[k] + acc[16+k]) + (acc[8+k] + acc[24+k])
	}
	return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
}

func dotF32(n int, w, x []byte) float32 {
	w, x = w[:4*n], x[:4*n]
	var acc [32]float32
	np := n &^ 31
	for i := 0; i < np; i += 32 {
		a := (*[128]byte)(w[4*i:])
		b := (*[128]byte)(x[4*i:])
		for k := range acc {
			acc[k] += math.Float32frombits(binary.LittleEndian.Uint32(a[4*k:])) *
				math.Float32frombits(binary.LittleEndian.Uint32(b[4*k:]))
		}
	}
	sum := float64(reduce32(&acc))
	for i := np; i < n; i++ {
		sum += float64(math.Float32frombits(le32(w[4*i:])) * math.Float32frombits(le32(x[4*i:])))
	}
	return float32(sum)
}

func dotF16(n int, w, x []byte) float32 {
	w, x = w[:2*n], x[:2*n]
	var acc [32]float32
	np := n &^ 31
	for i := 0; i < np; i += 32 {
		a := (*[64]byte)(w[2*i:])
		b := (*[64]byte)(x[2*i:])
		for k := range acc {
			acc[k] += F16ToF32(binary.LittleEndian.Uint16(a[2*k:])) * F16ToF32(binary.LittleEndian.Uint16(b[2*k:]))
		}
	}
	sum := float64(reduce32(&acc))
	for i := np; i < n; i++ {
		sum += float64(F16ToF32(le16(w[2*i:])) * F16ToF32(le16(x[2*i:])))
	}
	return float32(sum)
}

func dotBF16(n int, w, x []byte) float32 {
	w, x = w[:2*n], x[:2*n]
	var acc [32]float32
	np := n &^ 31
	for i := 0; i < np; i += 32 {
		a := (*[64]byte)(w[2*i:])
		b := (*[64]byte)(x[2*i:])
		for k := range acc {
			acc[k] += BF16ToF32(binary.LittleEndian.Uint16(a[2*k:])) * BF16ToF32(binary.LittleEndian.Uint16(b[2*k:]))
		}
	}
	sum := float64(reduce32(&acc))
	for i := np; i < n; i++ {
		sum += float64(BF16ToF32(le16(w[2*i:])) * BF16ToF32(le16(x[2*i:])))
	}
	return float32(sum)
}
