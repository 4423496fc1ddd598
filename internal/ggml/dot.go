package ggml

import "math"

// VecDot returns Σ w[i]·x[i] over n elements: w encoded as t, x encoded as
// VecDotType(t). For F32, F16 and BF16 n can be any positive number; for block
// types it must be a multiple of the block size. The integer products inside
// blocks are exact, as in ggml; the float combination matches ggml's within
// float32 rounding.
//
// VecDot is a hot path: it neither allocates nor validates beyond slice bounds
// checks (short slices panic). For a type VecDot does not handle it returns NaN.
func VecDot(t Type, n int, w, x []byte) float32 {
	var out [1]float32
	Gemv(t, n, w, 0, x, out[:])
	return out[0]
}

// Gemv computes out[r] = VecDot(t, n, w[r*stride:], x) for r < len(out): rows of
// a weight matrix (stride bytes apart; stride >= t.RowSize(n)) against one
// activation vector. Like VecDot it does not allocate or validate.
func Gemv(t Type, n int, w []byte, stride int, x []byte, out []float32) {
	if len(out) == 0 {
		return
	}
	if gemvSIMD(t, n, w, stride, x, out) {
		return
	}
	gemvGeneric(t, n, w, stride, x, out)
}

// dotFunc returns the portable dot product for weights of type t, or nil.
func dotFunc(t Type) func(n int, w, x []byte) float32 {
	switch t {
	case F32:
		return dotF32
	case F16:
		return dotF16
	case BF16:
		return dotBF16
	case Q4_0:
		return dotQ4_0
	case Q5_0:
		return dotQ5_0
	case Q8_0:
		return dotQ8_0
	case Q4_K:
		return dotQ4K
	case Q5_K:
		return dotQ5K
	case Q6_K:
		return dotQ6K
	}
	return nil
}

// gemvGeneric is Gemv in portable Go.
func gemvGeneric(t Type, n int, w []byte, stride int, x []byte, out []float32) {
	dot := dotFunc(t)
	if dot == nil {
		for r := range out {
			out[r] = float32(math.NaN())
		}
		return
	}
	for r := range out {
		out[r] = dot(n, w[r*stride:], x)
	}
}
