package ggml

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// attnCase is a cache of n positions for one key/value head with g query
// heads, laid out as the engine keeps it: keys [ctx][kvDim] (this head's
// columns at its offset), values transposed [kvDim][ctx].
type attnCase struct {
	hd, n, g         int
	q                []float32
	k, v             []byte
	kStride, vStride int
	kvals, vvals     [][]float32 // [pos][d], [d][pos] as the F16 values hold them
}

func newAttnCase(seed uint64, hd, n, g int) *attnCase {
	rng := rand.New(rand.NewPCG(seed, 7))
	const heads = 3 // other heads' columns sit between this one's rows
	ctx := n + 5
	c := &attnCase{hd: hd, n: n, g: g, kStride: 2 * heads * hd, vStride: 2 * ctx}
	c.q = make([]float32, g*hd)
	for i := range c.q {
		c.q[i] = float32(rng.NormFloat64())
	}
	c.k = make([]byte, ctx*c.kStride)
	c.v = make([]byte, hd*c.vStride+2*ctx)
	c.kvals = make([][]float32, n)
	for i := 0; i < n; i++ {
		c.kvals[i] = make([]float32, hd)
		for d := 0; d < hd; d++ {
			h := F32ToF16(float32(rng.NormFloat64()))
			c.k[i*c.kStride+2*d], c.k[i*c.kStride+2*d+1] = byte(h), byte(h>>8)
			c.kvals[i][d] = F16ToF32(h)
		}
	}
	c.vvals = make([][]float32, hd)
	for d := 0; d < hd; d++ {
		c.vvals[d] = make([]float32, n)
		for i := 0; i < ctx; i++ {
			h := F32ToF16(float32(rng.NormFloat64()))
			if i >= n {
				h = 0x7e00 // NaN past the cache's end must not be read
			}
			c.v[d*c.vStride+2*i], c.v[d*c.vStride+2*i+1] = byte(h), byte(h>>8)
			if i < n {
				c.vvals[d][i] = F16ToF32(h)
			}
		}
	}
	return c
}

// reference is attention in float64 with llama.cpp's roundings: queries and
// probabilities to F16. It returns each output and the sum of its terms'
// magnitudes.
func (c *attnCase) reference(scale float32) (out, mag []float64) {
	return c.referenceCapped(scale, 0)
}

// referenceCapped is reference with each score q·k soft-capped,
// softcap·tanh(q·k/softcap), before it is scaled (none when softcap is 0).
func (c *attnCase) referenceCapped(scale, softcap float32) (out, mag []float64) {
	out, mag = make([]float64, c.g*c.hd), make([]float64, c.g*c.hd)
	for h := 0; h < c.g; h++ {
		s := make([]float64, c.n)
		m := math.Inf(-1)
		for i := range s {
			for d := 0; d < c.hd; d++ {
				s[i] += float64(F16ToF32(F32ToF16(c.q[h*c.hd+d]))) * float64(c.kvals[i][d])
			}
			if softcap > 0 {
				s[i] = float64(softcap) * math.Tanh(s[i]/float64(softcap))
			}
			s[i] *= float64(scale)
			m = max(m, s[i])
		}
		var sum float64
		for i := range s {
			s[i] = math.Exp(s[i] - m)
			sum += s[i]
		}
		for d := 0; d < c.hd; d++ {
			for i := range s {
				p := float64(F16ToF32(F32ToF16(float32(s[i] / sum))))
				out[h*c.hd+d] += p * float64(c.vvals[d][i])
				mag[h*c.hd+d] += math.Abs(p * float64(c.vvals[d][i]))
			}
		}
	}
	return out, mag
}

func TestAttendF16MatchesReference(t *testing.T) {
	for _, level := range []string{"generic", "detected"} {
		for _, hd := range []int{64, 128, 96, 36} {
			for _, n := range []int{1, 7, 8, 9, 31, 100, 1000} {
				for _, g := range []int{1, 2, 3, 4, 5, 7, 8} {
					if hd != 64 && g != 8 && g != 3 {
						continue
					}
					t.Run(fmt.Sprintf("%s/hd=%d/n=%d/g=%d", level, hd, n, g), func(t *testing.T) {
						defer LimitSIMD(level)()
						c := newAttnCase(uint64(hd*n*g), hd, n, g)
						scale := float32(1 / math.Sqrt(float64(hd)))
						want, mag := c.reference(scale)
						out := make([]float32, g*hd)
						var a AttnScratch
						AttendF16(hd, n, g, c.q, c.k, c.kStride, c.v, c.vStride, scale, out, &a)
						for i := range out {
							// Probabilities near an F16 rounding boundary may round
							// the other way: allow one F16 step of the largest.
							require.InDelta(t, want[i], float64(out[i]), 1e-3*mag[i]+1e-6, "output %d", i)
						}
					})
				}
			}
		}
	}
}

// TestAttendF16CappedMatchesReference: Gemma 2's soft-capped attention, at
// every SIMD level, head sizes and group sizes of its models, and queries
// large enough that the cap bends the scores (tanh of ±1 and beyond).
func TestAttendF16CappedMatchesReference(t *testing.T) {
	for _, level := range []string{"generic", "detected"} {
		for _, hd := range []int{64, 256} {
			for _, n := range []int{1, 7, 9, 100, 600} {
				for _, g := range []int{1, 2, 8} {
					t.Run(fmt.Sprintf("%s/hd=%d/n=%d/g=%d", level, hd, n, g), func(t *testing.T) {
						defer LimitSIMD(level)()
						c := newAttnCase(uint64(hd*n*g+1), hd, n, g)
						for i := range c.q {
							c.q[i] *= 4 // scores of tens, against a cap of 50
						}
						const softcap = 50
						scale := float32(1 / math.Sqrt(float64(hd)))
						want, mag := c.referenceCapped(scale, softcap)
						uncapped, _ := c.reference(scale)
						out := make([]float32, g*hd)
						var a AttnScratch
						AttendF16Capped(hd, n, g, c.q, c.k, c.kStride, c.v, c.vStride, scale, softcap, out, &a)
						differs := false
						for i := range out {
							require.InDelta(t, want[i], float64(out[i]), 1e-3*mag[i]+1e-6, "output %d", i)
							differs = differs || math.Abs(want[i]-uncapped[i]) > 1e-2*mag[i]+1e-6
						}
						if n > 1 {
							assert.True(t, differs, "the cap should change the result")
						}
					})
				}
			}
		}
	}
}

// TestAttendF16SIMDMatchesGeneric: the assembly and the portable code agree
// closely on a long cache, scratch reused across calls of growing length.
func TestAttendF16SIMDMatchesGeneric(t *testing.T) {
	if !useAVX2 {
		t.Skip("no AVX2")
	}
	var simd, generic AttnScratch
	for _, n := range []int{17, 300, 1800} {
		c := newAttnCase(uint64(n), 64, n, 8)
		got, want := make([]float32, 8*64), make([]float32, 8*64)
		AttendF16(64, n, 8, c.q, c.k, c.kStride, c.v, c.vStride, 0.125, got, &simd)
		restore := LimitSIMD("generic")
		AttendF16(64, n, 8, c.q, c.k, c.kStride, c.v, c.vStride, 0.125, want, &generic)
		restore()
		for i := range got {
			assert.InDelta(t, want[i], got[i], 2e-3*(1+math.Abs(float64(want[i]))), "n=%d output %d", n, i)
		}
	}
}

// TestExpSubMatchesExpf: the assembly exp is Expf lane for lane where Expf
// gives a normal float, 0 below, and keeps NaN.
func TestExpSubMatchesExpf(t *testing.T) {
	if !useAVX2 {
		t.Skip("no AVX2")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, 4096)
	for i := range x {
		x[i] = float32(rng.Float64()*120 - 100)
	}
	x[5] = float32(math.NaN())
	x[6] = float32(math.Inf(-1))
	x[7] = 0
	const m = 3.5
	got := append([]float32(nil), x...)
	var sums [4]float64
	expSubAVX2(&got[0], len(got)/8, m, &sums)
	for i, v := range x {
		switch {
		case v != v:
			assert.True(t, got[i] != got[i], "NaN stays NaN")
			continue
		case v-m <= -87:
			assert.Zero(t, got[i], "x=%v", v)
		default:
			assert.Equal(t, Expf(v-m), got[i], "x=%v", v)
		}
	}
	assert.True(t, math.IsNaN(sums[0]+sums[1]+sums[2]+sums[3]), "a NaN makes the sum NaN")
}

func BenchmarkAttendF16(b *testing.B) {
	for _, n := range []int{128, 1800} {
		c := newAttnCase(1, 64, n, 8)
		out := make([]float32, 8*64)
		var a AttnScratch
		b.Run(fmt.Sprintf("hd=64/g=8/n=%d", n), func(b *testing.B) {
			b.SetBytes(int64(2 * 2 * 64 * n)) // keys and values read
			for b.Loop() {
				AttendF16(64, n, 8, c.q, c.k, c.kStride, c.v, c.vStride, 0.125, out, &a)
			}
		})
	}
}
