package ggml

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLayoutQ5_0 builds a block byte by byte from block_q5_0's layout: the
// fifth bit of element j is bit j of qh, for the low-nibble elements 0..15
// and the high-nibble ones 16..31 alike.
func TestLayoutQ5_0(t *testing.T) {
	b := make([]byte, 22)
	b[0], b[1] = 0x00, 0x38 // d = 0.5
	var qh uint32
	for j := 0; j < 16; j++ {
		lo, hi := j*2, 31-j // five-bit levels
		b[6+j] = byte(lo&15) | byte(hi&15)<<4
		qh |= uint32(lo>>4) << j
		qh |= uint32(hi>>4) << (j + 16)
	}
	binary.LittleEndian.PutUint32(b[2:], qh)
	got := dequant(t, Q5_0, b, 32)
	for j := 0; j < 16; j++ {
		assert.Equal(t, float32(j*2-16)*0.5, got[j], "element %d", j)
		assert.Equal(t, float32(31-j-16)*0.5, got[16+j], "element %d", 16+j)
	}
}

// TestQ5_0RoundTripAndDot quantizes random rows, checks the decoded values
// are within half a step of the input (a whole step where the reference
// quantizer clips the top level, 16 steps above the block's scale being out
// of its 0..31 range), and that the dot product with a Q8_0
// activation equals the sum over the decoded values.
func TestQ5_0RoundTripAndDot(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 0))
	const n = 256
	w := make([]float32, n)
	x := make([]float32, n)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
		x[i] = float32(rng.NormFloat64())
	}
	wq, err := Quantize(Q5_0, w)
	require.NoError(t, err)
	require.Len(t, wq, Q5_0.RowSize(n))
	back := dequant(t, Q5_0, wq, n)
	for b := 0; b < n/QK; b++ {
		var amax float32
		for _, v := range w[b*QK : (b+1)*QK] {
			amax = max(amax, abs32(v))
		}
		step := amax / 16
		for i := b * QK; i < (b+1)*QK; i++ {
			assert.InDelta(t, w[i], back[i], float64(step)*1.01+1e-3, "element %d", i)
		}
	}
	require.Equal(t, Q8_0, VecDotType(Q5_0))
	xq, err := Quantize(Q8_0, x)
	require.NoError(t, err)
	xd := dequant(t, Q8_0, xq, n)
	var want float64
	for i := range back {
		want += float64(back[i]) * float64(xd[i])
	}
	got := VecDot(Q5_0, n, wq, xq)
	assert.InDelta(t, want, got, 1e-3*(1+abs64(want)))
	// Gemm over several activation rows agrees with VecDot per row.
	out := make([]float32, 3)
	Gemm(Q5_0, n, wq, len(wq), 1, append(append(append([]byte{}, xq...), xq...), xq...), len(xq), 3, out, 1)
	for _, v := range out {
		assert.Equal(t, got, v)
	}
}

func abs64(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
