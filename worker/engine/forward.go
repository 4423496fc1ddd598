package engine

import (
	"fmt"

	"rbee/internal/ggml"
)

// The forward pass runs over a batch of rows, one per token, that may come
// from several sessions: the next token of each generating session and
// chunks of prompts being read. The rows are stacked into one activation
// matrix, so every weight matrix is read once per pass and multiplied by all
// rows together (the Gemm kernels decode a block of weights once for every
// row); only attention is per row, against the row's own session's cache at
// the row's position. A session therefore costs its KV cache and its logits;
// the activations live in the model's scratch, sized for the largest batch
// seen and shared by all passes (which take turns on the model's lock).

// batchPart is one session's share of a pass: tokens to append to its cache
// and whether it needs the logits that predict the token after the last.
type batchPart struct {
	s          *Session
	tokens     []int
	wantLogits bool
}

// batchRow says where one row of the pass belongs.
type batchRow struct {
	s   *Session
	pos int // the position of its token in its session
}

// scratch is the model's working space for a pass of up to cap rows.
type scratch struct {
	cap                                       int
	x, xn, q, kcur, vcur, attn, gate, up, tmp []float32
	cos, sin                                  []float32
	wide                                      []float32 // fused projections' outputs (phi3), rows of qDim+2·kvDim or 2·FeedForward
	vh                                        []uint16  // each row's values in F16, before they are scattered into the transposed cache
	logits                                    []float32 // one row of VocabSize per row that wants logits
	rows                                      []batchRow
	sel                                       []int // rows that produce logits, ascending
	acts                                      activations
	prods                                     []product
	xq                                        [][]byte          // each product's activations, encoded for its weights
	gv                                        []*ggml.GemvNActs // and prepared for GemvN, for a few tokens
	bands                                     []band
	work                                      []workerScratch
}

// workerScratch is one pool worker's private space for attention.
type workerScratch struct {
	attn ggml.AttnScratch
}

// ensure makes room for a pass of n rows, growing (never shrinking) the
// buffers; the logits buffer grows separately, as rows that want logits
// are usually few.
func (sc *scratch) ensure(m *Model, n int) {
	if n <= sc.cap {
		return
	}
	c := m.cfg
	kvDim, qDim := c.HeadsKV*c.HeadDim, c.Heads*c.HeadDim
	sc.cap = n
	sc.x = make([]float32, n*c.Embedding)
	sc.xn = make([]float32, n*max(c.Embedding, qDim))
	sc.q = make([]float32, n*qDim)
	sc.kcur = make([]float32, n*kvDim)
	sc.vcur = make([]float32, n*kvDim)
	sc.vh = make([]uint16, n*kvDim)
	sc.attn = make([]float32, n*qDim)
	sc.gate = make([]float32, n*c.FeedForward)
	sc.up = make([]float32, n*c.FeedForward)
	sc.tmp = make([]float32, n*c.Embedding)
	sc.cos = make([]float32, n*c.RopeDims/2)
	sc.sin = make([]float32, n*c.RopeDims/2)
	if c.Architecture == "phi3" {
		sc.wide = make([]float32, n*max(qDim+2*kvDim, 2*c.FeedForward))
	}
	if sc.work == nil {
		sc.work = make([]workerScratch, m.threads)
	}
}

// forward evaluates every part in one pass: each part's tokens are appended
// to its session's cache, and a part that wants logits gets those after its
// last token in its session's logits. The caller has checked that the
// tokens are in the vocabulary and fit each session's context, and that no
// session appears twice.
func (m *Model) forward(parts []batchPart) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	c := m.cfg
	E := c.Embedding
	qDim, kvDim := c.Heads*c.HeadDim, c.HeadsKV*c.HeadDim
	half := c.RopeDims / 2
	sc := &m.scratch

	R := 0
	for _, p := range parts {
		R += len(p.tokens)
	}
	if R == 0 {
		return nil
	}
	sc.ensure(m, R)
	m.passes++
	sc.rows, sc.sel = sc.rows[:0], sc.sel[:0]
	for _, p := range parts {
		p0 := len(p.s.tokens)
		for t, id := range p.tokens {
			r := len(sc.rows)
			sc.rows = append(sc.rows, batchRow{s: p.s, pos: p0 + t})
			row := m.embed.data[id*m.embed.stride : (id+1)*m.embed.stride]
			if err := ggml.Dequantize(m.embed.typ, row, sc.x[r*E:(r+1)*E]); err != nil {
				return fmt.Errorf("embedding of token %d: %w", id, err)
			}
			if c.EmbedScale != 1 {
				scale(sc.x[r*E:(r+1)*E], c.EmbedScale)
			}
			ropeCache(sc.cos[r*half:(r+1)*half], sc.sin[r*half:(r+1)*half], p0+t, c.RopeDims, c.RopeBase, c.RopeFreqScale, m.ropeFreqs)
		}
		if p.wantLogits {
			sc.sel = append(sc.sel, len(sc.rows)-1)
		}
	}

	for li := range m.layers {
		l := &m.layers[li]
		last := li == len(m.layers)-1
		// Attention block.
		m.pool.run(R, func(_, r int) {
			rmsNorm(sc.xn[r*E:(r+1)*E], sc.x[r*E:(r+1)*E], l.attnNorm, c.NormEpsilon)
		})
		sc.acts.set(sc.xn, R, E)
		if l.wqkv.rows > 0 {
			m.matmul(l.wqkv, sc.wide)
		} else {
			sc.prods = append(sc.prods[:0], product{l.wq, sc.q}, product{l.wk, sc.kcur}, product{l.wv, sc.vcur})
			m.matmuls(sc.prods, nil)
		}
		// Split fused projections, add biases, rotate queries and keys
		// (scaling the queries where the model does that before the
		// product with the keys); cache keys and values (each row writes
		// its own session's row and column at its position, so rows run in
		// parallel).
		m.pool.run(R, func(_, r int) {
			q, k, v := sc.q[r*qDim:(r+1)*qDim], sc.kcur[r*kvDim:(r+1)*kvDim], sc.vcur[r*kvDim:(r+1)*kvDim]
			if l.wqkv.rows > 0 {
				w := sc.wide[r*(qDim+2*kvDim):]
				copy(q, w[:qDim])
				copy(k, w[qDim:qDim+kvDim])
				copy(v, w[qDim+kvDim:qDim+2*kvDim])
			}
			if l.bq != nil {
				add(q, l.bq)
				add(k, l.bk)
				add(v, l.bv)
			}
			cos, sin := sc.cos[r*half:(r+1)*half], sc.sin[r*half:(r+1)*half]
			if c.RopeNeox {
				ropeNeox(q, c.Heads, c.HeadDim, cos, sin)
				ropeNeox(k, c.HeadsKV, c.HeadDim, cos, sin)
			} else {
				rope(q, c.Heads, c.HeadDim, cos, sin)
				rope(k, c.HeadsKV, c.HeadDim, cos, sin)
			}
			if m.qPreScale {
				scale(q, c.QueryScale)
			}
			s, pos := sc.rows[r].s, sc.rows[r].pos
			toF16(s.k[li][pos*kvDim:(pos+1)*kvDim], sc.kcur[r*kvDim:(r+1)*kvDim])
			// The value cache is transposed (a column per position): convert
			// the row at once, then scatter it.
			vh, vt := sc.vh[r*kvDim:(r+1)*kvDim], s.v[li]
			toF16(vh, sc.vcur[r*kvDim:(r+1)*kvDim])
			for i, h := range vh {
				vt[i*m.ctxSize+pos] = h
			}
		})
		// In the last layer only the rows that produce logits matter: keys and
		// values of every row are cached above; the rows that want logits are
		// gathered to the front and the rest of the layer runs on them alone.
		rows := R
		if last {
			if len(sc.sel) == 0 {
				break
			}
			rows = len(sc.sel)
			m.attention(li, sc.sel)
			for i, r := range sc.sel { // i ≤ r: moving rows forward never overwrites one still needed
				if i != r {
					copy(sc.x[i*E:(i+1)*E], sc.x[r*E:(r+1)*E])
				}
			}
		} else {
			m.attention(li, nil)
		}
		sc.acts.set(sc.attn, rows, qDim)
		m.matmul(l.wo, sc.tmp)
		x := sc.x[:rows*E]
		m.residual(x, sc.tmp[:rows*E], l.postAttnNorm, rows)

		// Feed-forward block.
		m.pool.run(rows, func(_, r int) {
			rmsNorm(sc.xn[r*E:(r+1)*E], x[r*E:(r+1)*E], l.ffnNorm, c.NormEpsilon)
		})
		sc.acts.set(sc.xn, rows, E)
		F := c.FeedForward
		g, u := sc.gate[:rows*F], sc.up[:rows*F]
		if l.fusedGateUp {
			// One matrix gives each row's gate then its up projection.
			m.matmul(l.wup, sc.wide)
			m.pool.run(rows, func(_, r int) {
				w := sc.wide[r*2*F : (r+1)*2*F]
				siluMul(g[r*F:(r+1)*F], w[:F], w[F:])
			})
		} else {
			// Each task applies the activation to the band of rows it
			// has just computed, for every token.
			act := siluMul
			if m.geluGate {
				act = ggml.GELUMul
			}
			sc.prods = append(sc.prods[:0], product{l.wgate, sc.gate}, product{l.wup, sc.up})
			m.matmuls(sc.prods, func(r0, r1 int) {
				for t := 0; t < rows; t++ {
					a, b := t*F+r0, t*F+r1
					act(g[a:b], g[a:b], u[a:b])
				}
			})
		}
		sc.acts.set(sc.gate, rows, F)
		m.matmul(l.wdown, sc.tmp)
		m.residual(x, sc.tmp[:rows*E], l.postFFNNorm, rows)
	}
	for _, p := range parts {
		p.s.tokens = append(p.s.tokens, p.tokens...)
	}
	L := len(sc.sel)
	if L == 0 {
		return nil
	}
	V := c.VocabSize
	m.pool.run(L, func(_, r int) {
		rmsNorm(sc.xn[r*E:(r+1)*E], sc.x[r*E:(r+1)*E], m.outputNorm, c.NormEpsilon)
	})
	sc.acts.set(sc.xn, L, E)
	if len(sc.logits) < L*V {
		sc.logits = make([]float32, L*V)
	}
	m.matmul(m.output, sc.logits)
	if cp := c.FinalSoftcap; cp > 0 {
		lg := sc.logits[:L*V]
		const capChunk = 4096
		m.pool.run((len(lg)+capChunk-1)/capChunk, func(_, i int) {
			ggml.Softcap(lg[i*capChunk:min((i+1)*capChunk, len(lg))], cp)
		})
	}
	i := 0
	for _, p := range parts {
		if p.wantLogits {
			copy(p.s.logits, sc.logits[i*V:(i+1)*V])
			i++
		}
	}
	return nil
}

// attention computes, for each row listed in sel (every row when sel is
// nil), every head's softmax(scale·q·K)·V over its session's cached
// positions up to its own (causal; only the latest SlidingWindow of them in
// a sliding-window layer), writing the i-th listed row's output to row i of
// the attention buffer. A task takes the query heads that share one
// key/value head (or a part of them, when there would be too few tasks to
// keep the threads busy), so that the cache is read once per group rather
// than once per query head; see ggml.AttendF16. Models that soft-cap the
// scores (Gemma 2) cap them in the same pass (ggml.AttendF16Capped).
func (m *Model) attention(li int, sel []int) {
	c := m.cfg
	sc := &m.scratch
	hd := c.HeadDim
	qDim, kvDim := c.Heads*hd, c.HeadsKV*hd
	group := c.Heads / c.HeadsKV
	ctx := m.ctxSize
	n := len(sc.rows)
	if sel != nil {
		n = len(sel)
	}
	scale, window := m.attentionScale(), m.window(li)
	parts := attentionParts(n, c.HeadsKV, group, m.threads)
	per := group / parts // query heads per task
	tasks := c.HeadsKV * parts
	m.pool.run(n*tasks, func(w, task int) {
		i := task / tasks
		r := i
		if sel != nil {
			r = sel[i]
		}
		h0 := task % tasks * per // the task's first query head
		kvh := h0 / group
		row := sc.rows[r]
		kb := u16Bytes(row.s.k[li])
		vb := u16Bytes(row.s.v[li])
		lo := window.first(row.pos)
		q := sc.q[r*qDim+h0*hd : r*qDim+(h0+per)*hd]
		out := sc.attn[i*qDim+h0*hd : i*qDim+(h0+per)*hd]
		k, v := kb[(lo*kvDim+kvh*hd)*2:], vb[(kvh*hd*ctx+lo)*2:]
		if c.AttnSoftcap > 0 { // Gemma 2
			ggml.AttendF16Capped(hd, row.pos+1-lo, per, q, k, kvDim*2, v, ctx*2, scale, c.AttnSoftcap, out, &sc.work[w].attn)
			return
		}
		ggml.AttendF16(hd, row.pos+1-lo, per, q, k, kvDim*2, v, ctx*2, scale, out, &sc.work[w].attn)
	})
}

// attentionScale is what the scores are multiplied by before the softmax:
// 1 where the queries were scaled already.
func (m *Model) attentionScale() float32 {
	if m.qPreScale {
		return 1
	}
	return m.cfg.QueryScale
}

// slidingWindow is the number of latest positions a layer attends to, 0
// for all of them.
type slidingWindow int

func (m *Model) window(li int) slidingWindow {
	if m.layers[li].slidingWindow {
		return slidingWindow(m.cfg.SlidingWindow)
	}
	return 0
}

// first is the first position a row at pos attends to.
func (w slidingWindow) first(pos int) int {
	if w > 0 {
		return max(0, pos-int(w)+1)
	}
	return 0
}

// attentionParts is how many parts the query heads of a group are split
// into: 1, unless rows·kvHeads tasks would leave threads idle, then the
// smallest divisor of group that gives every thread a task.
func attentionParts(rows, kvHeads, group, threads int) int {
	for p := 1; p <= group; p++ {
		if group%p == 0 && rows*kvHeads*p >= threads {
			return p
		}
	}
	return group
}

// product is one matrix multiply of a job: out[t·rows + r] = w[r]·x[t] for
// the rows of w and the current activations x.
type product struct {
	w   matrix
	out []float32
}

// band is one task of a matrix-multiply job: rows [r0, r1) of product p, or
// of every product of the job when p is -1.
type band struct{ p, r0, r1 int }

// matmul computes out[t·rows + r] = w[r]·x[t] for the rows of w and the
// current activations x (every row of the pass), splitting the weight rows
// across the pool. Each task takes a band of weight rows and runs every
// activation row over it while the band is in cache.
func (m *Model) matmul(w matrix, out []float32) {
	sc := &m.scratch
	sc.prods = append(sc.prods[:0], product{w, out})
	m.matmuls(sc.prods, nil)
}

// matmuls runs several products of the current activations as one job, so
// that the threads meet once for all of them rather than once per matrix
// (the query, key and value projections of a layer; its gate and up
// projections).
//
// Without after, the bands of every product are tasks of their own. With
// after, every product must have the same number of rows: a task then
// computes one band of rows in every product and calls after(r0, r1) on it,
// which may combine the products' outputs for those rows (the feed-forward
// activation), saving a pass over them and the meeting before it.
func (m *Model) matmuls(ps []product, after func(r0, r1 int)) {
	sc := &m.scratch
	a := &sc.acts
	T := a.rows
	sc.xq = sc.xq[:0]
	for _, p := range ps {
		sc.xq = append(sc.xq, a.quantized(ggml.VecDotType(p.w.typ), m.pool))
	}
	sc.gv = sc.gv[:0]
	if T > 1 && T <= ggml.GemvNMaxCols {
		// A few tokens (decode steps of several sessions): GemvN reads each
		// weight once for all of them rather than repack it for Gemm, from
		// activations prepared once here for all the bands.
		for i, p := range ps {
			sc.gv = append(sc.gv, a.gemvn(p.w.typ, sc.xq[i]))
		}
	}
	sc.bands = sc.bands[:0]
	if after != nil {
		w := ps[0].w
		// Whole multiples of 8 rows, so that the activation's eight-wide
		// kernels (SiLUMul, GELUMul) leave no scalar tail in every band.
		step := (bandRows(w.rows, w.stride*len(ps), T, m.threads) + 7) &^ 7
		for r0 := 0; r0 < w.rows; r0 += step {
			sc.bands = append(sc.bands, band{-1, r0, min(r0+step, w.rows)})
		}
	} else {
		for i, p := range ps {
			step := bandRows(p.w.rows, p.w.stride, T, m.threads)
			for r0 := 0; r0 < p.w.rows; r0 += step {
				sc.bands = append(sc.bands, band{i, r0, min(r0+step, p.w.rows)})
			}
		}
	}
	bands, xq, gv := sc.bands, sc.xq, sc.gv
	n := a.n
	band := func(i, r0, r1 int) {
		p := ps[i]
		if len(gv) > 0 {
			gv[i].GemvN(p.w.data[r0*p.w.stride:], p.w.stride, r1-r0, p.out[r0:], p.w.rows)
			return
		}
		mulBand(p.w, xq[i], ggml.VecDotType(p.w.typ).RowSize(n), T, r0, r1, p.out)
	}
	m.pool.run(len(bands), func(_, task int) {
		b := bands[task]
		if b.p >= 0 {
			band(b.p, b.r0, b.r1)
			return
		}
		for i := range ps {
			band(i, b.r0, b.r1)
		}
		after(b.r0, b.r1)
	})
}

// mulBand computes rows [r0, r1) of w times the T activation rows of xq (rs
// bytes each) into out, for one token (Gemv) or a prompt (Gemm); the few
// tokens of a decode step of several sessions go through GemvN instead.
func mulBand(w matrix, xq []byte, rs, T, r0, r1 int, out []float32) {
	wb := w.data[r0*w.stride:]
	if T == 1 {
		ggml.Gemv(w.typ, w.cols, wb, w.stride, xq[:rs], out[r0:r1])
		return
	}
	ggml.Gemm(w.typ, w.cols, wb, w.stride, r1-r0, xq, rs, T, out[r0:], w.rows)
}

// gemvTaskBytes is about how many bytes of weights one task of a
// single-token product reads. Decode steps read every weight once from
// memory, and the threads finish a job together only if its last tasks are
// short: a task of a few dozen kilobytes takes microseconds, so the thread
// that finishes first waits little for the other, while the per-task cost
// (one atomic add) stays negligible.
const gemvTaskBytes = 32 << 10

// bandRows picks how many rows one task of a matrix multiply covers, for
// rows of rowBytes bytes: for a single token about gemvTaskBytes of weights,
// with at least four tasks per thread; for a batch a multiple of the 16 rows
// the Gemm kernels take at a time, with enough tasks that a worker slowed by
// the rest of the machine does not hold up the others. (Gemm keeps the
// weights it works on in L1 itself, so the band need not fit in cache.)
func bandRows(rows, rowBytes, tokens, threads int) int {
	if tokens == 1 {
		return max(1, min(gemvTaskBytes/max(1, rowBytes), rows/(4*threads)))
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
	prep [3]prepared
}

// prepared is an encoding of the activations made ready for GemvN with
// weights of type wt (see ggml.GemvNActs): once per matrix multiply rather
// than once per band of rows.
type prepared struct {
	wt    ggml.Type
	valid bool
	xq    *byte // the encoding it was made from
	a     ggml.GemvNActs
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
	for i := range a.prep {
		a.prep[i].valid = false
	}
}

// gemvn returns the activations, encoded as xq for weights of type wt,
// prepared for GemvN: made on the first call after set, kept for the next.
func (a *activations) gemvn(wt ggml.Type, xq []byte) *ggml.GemvNActs {
	free := -1
	for i := range a.prep {
		p := &a.prep[i]
		if p.valid && p.wt == wt && p.xq == &xq[0] {
			return &p.a
		}
		if !p.valid && free < 0 {
			free = i
		}
	}
	p := &a.prep[max(free, 0)]
	p.wt, p.valid, p.xq = wt, true, &xq[0]
	p.a.Prepare(wt, a.n, xq, ggml.VecDotType(wt).RowSize(a.n), a.rows)
	return &p.a
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

// residual adds a block's output y to the residual stream x (rows of
// Embedding), normalizing y first when the model has a norm there (Gemma 2's
// post-attention and post-feed-forward norms).
func (m *Model) residual(x, y, norm []float32, rows int) {
	if norm == nil {
		add(x, y)
		return
	}
	E := m.cfg.Embedding
	eps := m.cfg.NormEpsilon
	m.pool.run(rows, func(_, r int) {
		v := y[r*E : (r+1)*E]
		rmsNorm(v, v, norm, eps)
		add(x[r*E:(r+1)*E], v)
	})
}
