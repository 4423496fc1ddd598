package engine

import (
	"math"
	"unsafe"

	"rbee/internal/ggml"
)

// The element-wise operations of the forward pass, written to round where
// ggml rounds, so that the engine's logits follow llama.cpp's closely.

// rmsNorm writes x / sqrt(mean(x²) + eps) · w to dst. ggml normalizes and
// multiplies by the weight as two operations, each rounded to float32, and
// sums the squares in double precision; so does this.
func rmsNorm(dst, x, w []float32, eps float32) {
	var sum float64
	for _, v := range x {
		sum += float64(v * v)
	}
	mean := float32(sum / float64(len(x)))
	scale := 1 / float32(math.Sqrt(float64(mean+eps)))
	w = w[:len(x)]
	dst = dst[:len(x)]
	for i, v := range x {
		y := v * scale
		dst[i] = y * w[i]
	}
}

// siluMul writes silu(g)·u to dst (SwiGLU's gate), silu(x) = x/(1+e^-x).
func siluMul(dst, g, u []float32) { ggml.SiLUMul(dst, g, u) }

func add(dst, a []float32) {
	a = a[:len(dst)]
	for i := range dst {
		dst[i] += a[i]
	}
}

// ropeCache fills cos/sin (len dims/2) for position pos the way ggml's
// rope_cache_init does: theta starts at the position and is multiplied by
// base^(-2/dims) in float32 for each pair, divided by the pair's frequency
// factor when the model has them, and scaled by freqScale (linear scaling).
func ropeCache(cos, sin []float32, pos int, dims int, base, freqScale float32, factors []float32) {
	thetaScale := float32(math.Pow(float64(base), -2.0/float64(dims)))
	theta := float32(pos)
	for i := 0; i < dims/2; i++ {
		t := theta
		if factors != nil {
			t /= factors[i]
		}
		t *= freqScale
		cos[i] = float32(math.Cos(float64(t)))
		sin[i] = float32(math.Sin(float64(t)))
		theta *= thetaScale
	}
}

// rope rotates the leading 2·len(cos) elements of each head of x in adjacent
// pairs (llama's "normal" rope mode).
func rope(x []float32, heads, headDim int, cos, sin []float32) {
	for h := 0; h < heads; h++ {
		v := x[h*headDim : h*headDim+2*len(cos)]
		for i := range cos {
			x0, x1 := v[2*i], v[2*i+1]
			v[2*i] = x0*cos[i] - x1*sin[i]
			v[2*i+1] = x0*sin[i] + x1*cos[i]
		}
	}
}

func toF16(dst []uint16, src []float32) { ggml.F32ToF16Slice(dst, src) }

// expf is e^x in float32, within 2 ulp of the exact value, as ggml's SIMD
// expf is (see ggml.Expf; the attention's softmax uses the same function).
func expf(x float32) float32 { return ggml.Expf(x) }

// bytesOf views float32 or uint16 slices as the little-endian bytes the ggml
// kernels take. The engine refuses big-endian hosts at load (hostLittleEndian).
func f32Bytes(s []float32) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*4)
}

func u16Bytes(s []uint16) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*2)
}

var hostLittleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// scale multiplies x by s in place.
func scale(x []float32, s float32) {
	for i := range x {
		x[i] *= s
	}
}

// ropeNeox rotates the leading 2·len(cos) elements of each head of x the
// GPT-NeoX way: element i with element i+len(cos).
func ropeNeox(x []float32, heads, headDim int, cos, sin []float32) {
	n := len(cos)
	for h := 0; h < heads; h++ {
		v := x[h*headDim : h*headDim+2*n]
		a, b := v[:n], v[n:2*n]
		for i := range cos {
			x0, x1 := a[i], b[i]
			a[i] = x0*cos[i] - x1*sin[i]
			b[i] = x0*sin[i] + x1*cos[i]
		}
	}
}
