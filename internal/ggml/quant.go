package ggml

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Errors returned by the conversion functions. They are wrapped with details;
// test for them with errors.Is.
var (
	// ErrUnsupportedType reports a type the function cannot convert.
	ErrUnsupportedType = errors.New("ggml: unsupported type")
	// ErrLength reports a length that does not fit the type: an element count
	// that is not a multiple of the block size, or a buffer that is too short.
	ErrLength = errors.New("ggml: bad length")
)

// convertible reports whether Dequantize and Quantize handle t.
func convertible(t Type) bool {
	switch t {
	case F32, F16, BF16, Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K, Q8_K:
		return true
	}
	return false
}

// checkShape validates a conversion of n elements of t backed by size bytes
// and returns the number of bytes the elements occupy.
func checkShape(op string, t Type, n, size int) (int, error) {
	if !convertible(t) {
		return 0, fmt.Errorf("%w: %s cannot handle %s", ErrUnsupportedType, op, t)
	}
	need := t.RowSize(n)
	if need < 0 {
		return 0, fmt.Errorf("%w: %s: %d elements is not a multiple of %s's block size %d",
			ErrLength, op, n, t, t.BlockSize())
	}
	if size < need {
		return 0, fmt.Errorf("%w: %s: %d elements of %s need %d bytes, have %d",
			ErrLength, op, n, t, need, size)
	}
	return need, nil
}

// Dequantize decodes len(dst) elements of type t from src (F32, F16, BF16, Q4_0, Q5_0,
// Q8_0, Q4_K, Q5_K, Q6_K, Q8_K). len(dst) must be a multiple of t's block size
// and src must hold at least t.RowSize(len(dst)) bytes; bytes beyond are
// ignored. The results are those of ggml's dequantize_row functions.
func Dequantize(t Type, src []byte, dst []float32) error {
	need, err := checkShape("Dequantize", t, len(dst), len(src))
	if err != nil {
		return err
	}
	src = src[:need]
	switch t {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case Q4_0:
		dequantQ4_0(src, dst)
	case Q5_0:
		dequantQ5_0(src, dst)
	case Q8_0:
		dequantQ8_0(src, dst)
	case Q4_K:
		dequantQ4K(src, dst)
	case Q5_K:
		dequantQ5K(src, dst)
	case Q6_K:
		dequantQ6K(src, dst)
	case Q8_K:
		dequantQ8K(src, dst)
	}
	return nil
}

// Quantize encodes src as type t (F32, F16, BF16, Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K,
// Q8_K) into a new slice of t.RowSize(len(src)) bytes. len(src) must be a
// multiple of t's block size. See [QuantizeInto] for the rules each type follows.
func Quantize(t Type, src []float32) ([]byte, error) {
	need, err := checkShape("Quantize", t, len(src), math.MaxInt)
	if err != nil {
		return nil, err
	}
	dst := make([]byte, need)
	quantizeInto(t, dst, src)
	return dst, nil
}

// QuantizeInto encodes src as type t into dst, which must hold at least
// t.RowSize(len(src)) bytes (only that prefix is written). It does not allocate,
// so the engine uses it to convert activations before every matrix product.
//
// The encodings follow ggml:
//   - F16 and BF16 round to nearest even, as the F16C instructions and ggml do.
//   - Q8_0 follows quantize_row_q8_0 of ggml's x86 AVX2 code path (which is not
//     the reference C path): per block of 32, amax = max|x|, d = amax/127 (float32
//     division, stored as F16), multiplier id = 127/amax (not 1/d; 0 when amax is
//     0), q = x·id rounded to nearest with ties to even (the reference path
//     rounds ties away from zero).
//   - Q8_K follows quantize_row_q8_K_ref, which ggml's x86 code uses: per block of
//     256, max is the element of largest magnitude with its sign (the first one on
//     ties), iscale = -127/max, q = nearest_int(iscale·x) (ties to even) capped at
//     127, bsums the sums of q over each 16 elements, and d = 1/iscale as a float32
//     (so d has the opposite sign of max). An all-zero block encodes d = 0.
//   - Q4_0 follows quantize_row_q4_0_ref: d = max/-8 with max the signed element of
//     largest magnitude, q = min(15, trunc(x/d + 8.5)).
//   - Q5_0 follows quantize_row_q5_0_ref the same way with d = max/-16 and
//     q = min(31, trunc(x/d + 16.5)), the fifth bits gathered in qh.
//   - Q4_K and Q5_K search, per sub-block of 32, the scale and minimum minimizing a
//     weighted squared error as llama.cpp's make_qkx2_quants does, then quantize
//     the 8 scales and mins to 6 bits against the super-block's largest.
//   - Q6_K searches, per sub-block of 16, a symmetric scale as make_qx_quants does,
//     then quantizes the 16 scales to int8.
//
// The K-quant weight encoders are deterministic and accurate but not bit-identical
// to llama.cpp's. NaN or infinite inputs never make the encoders fail or panic,
// but the bytes they produce for such blocks are unspecified.
func QuantizeInto(t Type, dst []byte, src []float32) error {
	if _, err := checkShape("QuantizeInto", t, len(src), len(dst)); err != nil {
		return err
	}
	quantizeInto(t, dst, src)
	return nil
}

// quantizeInto encodes a validated src into dst.
func quantizeInto(t Type, dst []byte, src []float32) {
	switch t {
	case F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(v))
		}
	case BF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToBF16(v))
		}
	case Q4_0:
		quantQ4_0(dst, src)
	case Q5_0:
		quantQ5_0(dst, src)
	case Q8_0:
		quantizeRowQ8_0(dst, src)
	case Q4_K:
		quantQ4K(dst, src)
	case Q5_K:
		quantQ5K(dst, src)
	case Q6_K:
		quantQ6K(dst, src)
	case Q8_K:
		quantizeRowQ8K(dst, src)
	}
}

// VecDotType is the type activations are converted to before a dot product with
// weights of type t, as in ggml's CPU backend: F32, F16 and BF16 pair with
// themselves, Q4_0, Q5_0 and Q8_0 with Q8_0, and Q4_K, Q5_K and Q6_K with Q8_K. For any
// other type it returns F32, and [VecDot] does not handle that type.
func VecDotType(t Type) Type {
	switch t {
	case F16, BF16:
		return t
	case Q4_0, Q5_0, Q8_0:
		return Q8_0
	case Q4_K, Q5_K, Q6_K:
		return Q8_K
	}
	return F32
}

// le16 and le32 read little-endian integers; f16 reads a half-precision value.
func le16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }
func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
func f16(b []byte) float32 { return F16ToF32(binary.LittleEndian.Uint16(b)) }
