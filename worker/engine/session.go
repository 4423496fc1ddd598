package engine

import (
	"context"
	"fmt"
	"math"

	"rbee/internal/ggml"
)

// Session is one conversation's state on a model: its KV cache (F16 keys and
// values for every layer, as llama.cpp keeps them) and the tokens it holds.
// A worker's inference slot is a Session. A Session is not safe for concurrent
// use; several Sessions of one Model may run at once.
type Session struct {
	m      *Model
	k, v   [][]uint16 // per layer: keys [ctx][kvDim]; values transposed [kvDim][ctx]
	tokens []int      // the tokens whose keys and values are cached, in order

	// Scratch for a batch of up to m.batch tokens.
	x, xn, q, kcur, vcur, attn, gate, up, tmp []float32
	logits                                    []float32
	acts                                      activations
	cos, sin                                  []float32
	work                                      []workerScratch
}

// workerScratch is one pool worker's private space for attention.
type workerScratch struct {
	attn ggml.AttnScratch
}

// NewSession allocates a session with an empty KV cache of the model's context size.
func (m *Model) NewSession() *Session {
	c := m.cfg
	kvDim := c.HeadsKV * c.HeadDim
	qDim := c.Heads * c.HeadDim
	B := m.batch
	s := &Session{
		m:      m,
		k:      make([][]uint16, c.Layers),
		v:      make([][]uint16, c.Layers),
		x:      make([]float32, B*c.Embedding),
		xn:     make([]float32, B*max(c.Embedding, qDim)),
		q:      make([]float32, B*qDim),
		kcur:   make([]float32, B*kvDim),
		vcur:   make([]float32, B*kvDim),
		attn:   make([]float32, B*qDim),
		gate:   make([]float32, B*c.FeedForward),
		up:     make([]float32, B*c.FeedForward),
		tmp:    make([]float32, B*c.Embedding),
		logits: make([]float32, c.VocabSize),
		cos:    make([]float32, B*c.RopeDims/2),
		sin:    make([]float32, B*c.RopeDims/2),
		work:   make([]workerScratch, m.threads),
	}
	for l := range s.k {
		s.k[l] = make([]uint16, m.ctxSize*kvDim)
		s.v[l] = make([]uint16, kvDim*m.ctxSize)
	}
	return s
}

// Model returns the session's model.
func (s *Session) Model() *Model { return s.m }

// Len is the number of tokens in the session's cache.
func (s *Session) Len() int { return len(s.tokens) }

// Tokens returns the tokens in the session's cache (the caller must not modify them).
func (s *Session) Tokens() []int { return s.tokens }

// Reset empties the session's cache.
func (s *Session) Reset() { s.tokens = s.tokens[:0] }

// Truncate drops cached tokens beyond the first n, so that a new prompt
// sharing a prefix with the old one reuses its keys and values.
func (s *Session) Truncate(n int) {
	if n < len(s.tokens) {
		s.tokens = s.tokens[:max(n, 0)]
	}
}

// Eval runs tokens through the model after the cached ones and returns the
// logits that predict the token after the last of them. The slice is reused
// by the next call. Long inputs are evaluated in batches. The logits are
// returned as computed: a model with damaged weights can give NaN or infinite
// values, which Generate refuses with ErrNonFinite.
func (s *Session) Eval(ctx context.Context, tokens []int) ([]float32, error) {
	if len(tokens) == 0 {
		return nil, fmt.Errorf("%w: no tokens to evaluate", ErrInvalidRequest)
	}
	if len(s.tokens)+len(tokens) > s.m.ctxSize {
		return nil, fmt.Errorf("%w: %d cached + %d new tokens exceed the context of %d", ErrContextFull, len(s.tokens), len(tokens), s.m.ctxSize)
	}
	for _, t := range tokens {
		if t < 0 || t >= s.m.cfg.VocabSize {
			return nil, fmt.Errorf("%w: token id %d is outside the vocabulary (0…%d)", ErrInvalidRequest, t, s.m.cfg.VocabSize-1)
		}
	}
	for len(tokens) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(len(tokens), s.m.batch)
		if err := s.forward(tokens[:n], n == len(tokens)); err != nil {
			return nil, err
		}
		tokens = tokens[n:]
	}
	return s.logits, nil
}

// forward evaluates one batch at the end of the cache; with wantLogits it
// computes the logits of the batch's last token.
func (s *Session) forward(tokens []int, wantLogits bool) error {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	c := m.cfg
	T := len(tokens)
	p0 := len(s.tokens)
	E := c.Embedding
	qDim, kvDim := c.Heads*c.HeadDim, c.HeadsKV*c.HeadDim

	// Token embeddings.
	for t, id := range tokens {
		row := m.embed.data[id*m.embed.stride : (id+1)*m.embed.stride]
		if err := ggml.Dequantize(m.embed.typ, row, s.x[t*E:(t+1)*E]); err != nil {
			return fmt.Errorf("embedding of token %d: %w", id, err)
		}
	}
	// Rotary tables for the batch's positions.
	half := c.RopeDims / 2
	for t := 0; t < T; t++ {
		ropeCache(s.cos[t*half:(t+1)*half], s.sin[t*half:(t+1)*half], p0+t, c.RopeDims, c.RopeBase, c.RopeFreqScale, m.ropeFreqs)
	}

	for li := range m.layers {
		l := &m.layers[li]
		last := li == len(m.layers)-1
		// Attention block.
		m.pool.run(T, func(_, t int) {
			rmsNorm(s.xn[t*E:(t+1)*E], s.x[t*E:(t+1)*E], l.attnNorm, c.NormEpsilon)
		})
		s.acts.set(s.xn, T, E)
		s.matmul(l.wq, s.q)
		s.matmul(l.wk, s.kcur)
		s.matmul(l.wv, s.vcur)
		// Rotate queries and keys; cache keys and values (each token writes
		// its own rows and columns, so tokens run in parallel).
		m.pool.run(T, func(_, t int) {
			cos, sin := s.cos[t*half:(t+1)*half], s.sin[t*half:(t+1)*half]
			rope(s.q[t*qDim:(t+1)*qDim], c.Heads, c.HeadDim, cos, sin)
			rope(s.kcur[t*kvDim:(t+1)*kvDim], c.HeadsKV, c.HeadDim, cos, sin)
			pos := p0 + t
			toF16(s.k[li][pos*kvDim:(pos+1)*kvDim], s.kcur[t*kvDim:(t+1)*kvDim])
			vt := s.v[li]
			for i, val := range s.vcur[t*kvDim : (t+1)*kvDim] {
				vt[i*m.ctxSize+pos] = ggml.F32ToF16(val)
			}
		})
		// In the last layer only the rows that produce logits matter: keys and
		// values of every token are cached above, the rest runs on one row.
		first := 0
		if last {
			if !wantLogits {
				break
			}
			first = T - 1
		}
		rows := T - first
		s.attention(li, p0, first, T)
		s.acts.set(s.attn[first*qDim:T*qDim], rows, qDim)
		s.matmul(l.wo, s.tmp)
		x := s.x[first*E : T*E]
		add(x, s.tmp[:rows*E])

		// Feed-forward block.
		m.pool.run(rows, func(_, t int) {
			rmsNorm(s.xn[t*E:(t+1)*E], x[t*E:(t+1)*E], l.ffnNorm, c.NormEpsilon)
		})
		s.acts.set(s.xn, rows, E)
		F := c.FeedForward
		s.matmul(l.wgate, s.gate)
		s.matmul(l.wup, s.up)
		const siluChunk = 2048
		g, u := s.gate[:rows*F], s.up[:rows*F]
		m.pool.run((len(g)+siluChunk-1)/siluChunk, func(_, i int) {
			a, b := i*siluChunk, min((i+1)*siluChunk, len(g))
			siluMul(g[a:b], g[a:b], u[a:b])
		})
		s.acts.set(s.gate, rows, F)
		s.matmul(l.wdown, s.tmp)
		add(x, s.tmp[:rows*E])
		if last {
			copy(s.x[:E], x[(rows-1)*E:rows*E])
		}
	}
	s.tokens = append(s.tokens, tokens...)
	if !wantLogits {
		return nil
	}
	rmsNorm(s.xn[:E], s.x[:E], m.outputNorm, c.NormEpsilon)
	s.acts.set(s.xn, 1, E)
	s.matmul(m.output, s.logits)
	return nil
}

// attention computes, for the batch rows first…T-1 at positions p0+t, every
// head's softmax(q·K/√d)·V over the cached positions up to its own (causal).
// A task takes the query heads that share one key/value head (or a part of
// them, when there are too few tasks to keep the threads busy), so that the
// cache is read once per group rather than once per query head.
func (s *Session) attention(li, p0, first, T int) {
	m := s.m
	c := m.cfg
	hd := c.HeadDim
	qDim, kvDim := c.Heads*hd, c.HeadsKV*hd
	group := c.Heads / c.HeadsKV
	parts := attentionParts(T-first, c.HeadsKV, group, m.threads)
	per := group / parts
	scale := float32(1 / math.Sqrt(float64(hd)))
	kb := u16Bytes(s.k[li])
	vb := u16Bytes(s.v[li])
	ctx := m.ctxSize
	m.pool.run((T-first)*c.HeadsKV*parts, func(w, task int) {
		t := first + task/(c.HeadsKV*parts)
		h0 := task % (c.HeadsKV * parts) * per // first query head
		kvh := h0 / group
		q := s.q[t*qDim+h0*hd : t*qDim+(h0+per)*hd]
		out := s.attn[t*qDim+h0*hd : t*qDim+(h0+per)*hd]
		ggml.AttendF16(hd, p0+t+1, per, q, kb[kvh*hd*2:], kvDim*2, vb[kvh*hd*ctx*2:], ctx*2, scale, out, &s.work[w].attn)
	})
}

// attentionParts is how many parts the query heads of a group are split into:
// 1, unless rows·kvHeads tasks would leave threads idle, then the smallest
// divisor of group that gives every thread a task.
func attentionParts(rows, kvHeads, group, threads int) int {
	for p := 1; p <= group; p++ {
		if group%p == 0 && rows*kvHeads*p >= threads {
			return p
		}
	}
	return group
}

// matmul computes out[t·rows + r] = w[r]·x[t] for the rows of w and the
// current activations x, splitting rows across the pool. Each task takes a
// band of rows and runs every token over it while the band is in cache.
func (s *Session) matmul(w matrix, out []float32) {
	a := &s.acts
	vt := ggml.VecDotType(w.typ)
	xq := a.quantized(vt, s.m.pool)
	rs := vt.RowSize(a.n)
	T := a.rows
	band := bandRows(w.rows, T, s.m.threads)
	tasks := (w.rows + band - 1) / band
	s.m.pool.run(tasks, func(_, task int) {
		r0 := task * band
		r1 := min(r0+band, w.rows)
		wb := w.data[r0*w.stride:]
		if T == 1 {
			ggml.Gemv(w.typ, w.cols, wb, w.stride, xq[:rs], out[r0:r1])
			return
		}
		ggml.Gemm(w.typ, w.cols, wb, w.stride, r1-r0, xq, rs, T, out[r0:], w.rows)
	})
}

// bandRows picks how many rows one task of a matrix multiply covers: for a
// single token enough tasks to balance the threads; for a batch a multiple of
// the 16 rows the Gemm kernels take at a time, with enough tasks that a
// worker slowed by the rest of the machine does not hold up the others.
// (Gemm keeps the weights it works on in L1 itself, so the band need not fit
// in cache.)
func bandRows(rows, tokens, threads int) int {
	if tokens == 1 {
		return max(16, rows/(threads*8))
	}
	return max(16, (rows/(threads*8))&^15)
}

// activations holds the input of the next matrix multiplies as floats and,
// made on demand once per input, in each encoding the weights ask for.
type activations struct {
	x    []float32
	rows int
	n    int
	enc  [3]encoded
}

type encoded struct {
	typ   ggml.Type
	valid bool
	buf   []byte
}

func (a *activations) set(x []float32, rows, n int) {
	a.x, a.rows, a.n = x[:rows*n], rows, n
	for i := range a.enc {
		a.enc[i].valid = false
	}
}

func (a *activations) quantized(t ggml.Type, p *pool) []byte {
	if t == ggml.F32 {
		return f32Bytes(a.x)
	}
	free := -1
	for i := range a.enc {
		e := &a.enc[i]
		if e.valid && e.typ == t {
			return e.buf
		}
		if !e.valid && free < 0 {
			free = i
		}
	}
	if free < 0 {
		free = 0
	}
	e := &a.enc[free]
	rs := t.RowSize(a.n)
	if cap(e.buf) < rs*a.rows {
		e.buf = make([]byte, rs*a.rows)
	}
	e.buf = e.buf[:rs*a.rows]
	e.typ, e.valid = t, true
	buf, x, n := e.buf, a.x, a.n
	p.run(a.rows, func(_, r int) {
		// Shapes were checked at load, so quantizing a row cannot fail.
		_ = ggml.QuantizeInto(t, buf[r*rs:(r+1)*rs], x[r*n:(r+1)*n])
	})
	return e.buf
}
