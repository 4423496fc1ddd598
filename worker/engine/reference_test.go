package engine

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"rbee/internal/ggml"
	"rbee/internal/gguf"
)

// referenceModel is a deliberately plain forward pass in float64 over
// dequantized weights, written from the architectures' definitions rather
// than from the engine: an independent oracle for the engine's logits. It
// knows llama and the families' differences: qwen2's biases, NEOX rotation,
// phi3's fused matrices and window, gemma2's scaled embedding, post-norms,
// GELU, soft-caps and windows on even layers.
type referenceModel struct {
	cfg    Config
	f      *gguf.File
	tokens []int
	k, v   [][][]float64 // [layer][pos][kvDim]
}

func newReference(t *testing.T, path string) *referenceModel {
	f, err := gguf.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	cfg, err := readConfig(f)
	require.NoError(t, err)
	return &referenceModel{cfg: cfg, f: f, k: make([][][]float64, cfg.Layers), v: make([][][]float64, cfg.Layers)}
}

func (r *referenceModel) tensor(t *testing.T, name string) ([]float64, int) {
	ti, ok := r.f.Tensor(name)
	require.True(t, ok, name)
	vals := make([]float32, ti.Elements())
	require.NoError(t, ggml.Dequantize(ti.Type, r.f.TensorData(ti), vals))
	out := make([]float64, len(vals))
	for i, v := range vals {
		out[i] = float64(v)
	}
	return out, int(ti.Shape[0])
}

func (r *referenceModel) matvec(t *testing.T, name string, x []float64) []float64 {
	w, cols := r.tensor(t, name)
	require.Equal(t, len(x), cols, name)
	out := make([]float64, len(w)/cols)
	for i := range out {
		var s float64
		for j, xv := range x {
			s += w[i*cols+j] * xv
		}
		out[i] = s
	}
	return out
}

func (r *referenceModel) norm(t *testing.T, name string, x []float64) []float64 {
	w, _ := r.tensor(t, name)
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	scale := 1 / math.Sqrt(ss/float64(len(x))+float64(r.cfg.NormEpsilon))
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = v * scale * w[i]
	}
	return out
}

func (r *referenceModel) rope(x []float64, heads, pos int) {
	c := r.cfg
	half := c.RopeDims / 2
	for h := 0; h < heads; h++ {
		for i := 0; i < half; i++ {
			freq := math.Pow(float64(c.RopeBase), -2*float64(i)/float64(c.RopeDims))
			theta := float64(pos) * freq * float64(c.RopeFreqScale)
			// The pair rotated: adjacent elements, or i and i+half (NEOX).
			ia, ib := h*c.HeadDim+2*i, h*c.HeadDim+2*i+1
			if c.RopeNeox {
				ia, ib = h*c.HeadDim+i, h*c.HeadDim+i+half
			}
			a, b := x[ia], x[ib]
			x[ia] = a*math.Cos(theta) - b*math.Sin(theta)
			x[ib] = a*math.Sin(theta) + b*math.Cos(theta)
		}
	}
}

func (r *referenceModel) has(name string) bool { _, ok := r.f.Tensor(name); return ok }

func (r *referenceModel) addBias(t *testing.T, name string, x []float64) {
	if !r.has(name) {
		return
	}
	b, _ := r.tensor(t, name)
	for i := range x {
		x[i] += b[i]
	}
}

func softcap64(x, cp float64) float64 { return cp * math.Tanh(x/cp) }

// next feeds one token and returns the logits for the following one.
func (r *referenceModel) next(t *testing.T, token int) []float64 {
	c := r.cfg
	pos := len(r.tokens)
	r.tokens = append(r.tokens, token)
	emb, E := r.tensor(t, "token_embd.weight")
	x := append([]float64(nil), emb[token*E:(token+1)*E]...)
	if c.Architecture == "gemma2" {
		for i := range x {
			x[i] *= math.Sqrt(float64(E))
		}
	}
	qDim, kvDim := c.Heads*c.HeadDim, c.HeadsKV*c.HeadDim
	for l := 0; l < c.Layers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		xn := r.norm(t, p+"attn_norm.weight", x)
		var q, k, v []float64
		if r.has(p + "attn_qkv.weight") {
			qkv := r.matvec(t, p+"attn_qkv.weight", xn)
			q, k, v = qkv[:qDim], qkv[qDim:qDim+kvDim], qkv[qDim+kvDim:]
		} else {
			q = r.matvec(t, p+"attn_q.weight", xn)
			k = r.matvec(t, p+"attn_k.weight", xn)
			v = r.matvec(t, p+"attn_v.weight", xn)
		}
		r.addBias(t, p+"attn_q.bias", q)
		r.addBias(t, p+"attn_k.bias", k)
		r.addBias(t, p+"attn_v.bias", v)
		r.rope(q, c.Heads, pos)
		r.rope(k, c.HeadsKV, pos)
		r.k[l] = append(r.k[l], k)
		r.v[l] = append(r.v[l], v)
		att := make([]float64, c.Heads*c.HeadDim)
		for h := 0; h < c.Heads; h++ {
			kvh := h / (c.Heads / c.HeadsKV)
			scores := make([]float64, pos+1)
			maxs := math.Inf(-1)
			for j := range scores {
				var s float64
				for i := 0; i < c.HeadDim; i++ {
					s += q[h*c.HeadDim+i] * r.k[l][j][kvh*c.HeadDim+i]
				}
				scores[j] = s * float64(c.QueryScale)
				if c.AttnSoftcap > 0 {
					scores[j] = softcap64(scores[j], float64(c.AttnSoftcap))
				}
				maxs = math.Max(maxs, scores[j])
			}
			var sum float64
			for j := range scores {
				if c.Sliding(l) && pos-j >= c.SlidingWindow {
					scores[j] = 0 // outside the window
					continue
				}
				scores[j] = math.Exp(scores[j] - maxs)
				sum += scores[j]
			}
			for j := range scores {
				for i := 0; i < c.HeadDim; i++ {
					att[h*c.HeadDim+i] += scores[j] / sum * r.v[l][j][kvh*c.HeadDim+i]
				}
			}
		}
		o := r.matvec(t, p+"attn_output.weight", att)
		if r.has(p + "post_attention_norm.weight") {
			o = r.norm(t, p+"post_attention_norm.weight", o)
		}
		for i := range x {
			x[i] += o[i]
		}
		xn = r.norm(t, p+"ffn_norm.weight", x)
		var g, u []float64
		if r.has(p + "ffn_gate.weight") {
			g = r.matvec(t, p+"ffn_gate.weight", xn)
			u = r.matvec(t, p+"ffn_up.weight", xn)
		} else { // fused: the gate's rows, then the up rows
			gu := r.matvec(t, p+"ffn_up.weight", xn)
			g, u = gu[:len(gu)/2], gu[len(gu)/2:]
		}
		for i := range g {
			if c.Architecture == "gemma2" {
				a := g[i]
				g[i] = 0.5 * a * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(a+0.044715*a*a*a))) * u[i]
			} else {
				g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
			}
		}
		d := r.matvec(t, p+"ffn_down.weight", g)
		if r.has(p + "post_ffw_norm.weight") {
			d = r.norm(t, p+"post_ffw_norm.weight", d)
		}
		for i := range x {
			x[i] += d[i]
		}
	}
	xn := r.norm(t, "output_norm.weight", x)
	out := "output.weight"
	if !r.has(out) {
		out = "token_embd.weight"
	}
	logits := r.matvec(t, out, xn)
	if c.FinalSoftcap > 0 {
		for i := range logits {
			logits[i] = softcap64(logits[i], float64(c.FinalSoftcap))
		}
	}
	return logits
}
