package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"rbee/internal/ggml"
	"rbee/internal/gguf"
	"rbee/internal/tokenizer"
)

// Options configure Load. The zero value is ready to use.
type Options struct {
	// Threads is the number of goroutines a forward pass uses; 0 means one per CPU.
	Threads int
	// ContextSize is the number of positions a session's KV cache holds; 0 means
	// the model's training context, capped at DefaultContextSize.
	ContextSize int
	// BatchSize is the number of prompt tokens evaluated together; 0 means 256.
	// It also caps the prompt tokens one Step reads. The model keeps working
	// space for the largest pass it has run (about BatchSize rows of
	// activations), shared by all its sessions.
	BatchSize int
	// Progress, when set, is called as layers are loaded (from the goroutine that
	// called Load).
	Progress func(LoadProgress)
}

// DefaultContextSize caps the context when Options.ContextSize is 0, so that a
// model trained on 128k positions does not reserve gigabytes of KV cache.
const DefaultContextSize = 4096

// LoadProgress reports the loading of a model, one call per layer.
type LoadProgress struct {
	LayersLoaded int   // layers whose weights are in memory
	LayersTotal  int   // blocks plus one for the embedding and output tensors
	BytesLoaded  int64 // bytes of tensor data in memory
	BytesTotal   int64
}

// Model is a loaded GGUF model: its weights, memory-mapped from the file and
// used in place, its tokenizer, and a pool of goroutines for the forward pass.
// A Model is safe for concurrent use by several Sessions; their forward passes
// take turns.
type Model struct {
	cfg      Config
	file     *gguf.File
	tok      *tokenizer.Tokenizer
	tokens   *Tokenizer // tok, as the package's users see it
	info     ModelInfo
	ctxSize  int
	batch    int
	threads  int
	loadTime time.Duration

	embed      matrix
	output     matrix
	outputNorm []float32
	ropeFreqs  []float32 // per-pair frequency divisors (Llama 3.1's rope_freqs), or nil
	layers     []layer
	qPreScale  bool // queries are scaled by QueryScale before the product with keys (phi3, gemma2), not the scores after
	geluGate   bool // the feed-forward gate is GELU (gemma2), not SiLU

	mu      sync.Mutex // serializes forward passes (they share the pool and scratch)
	pool    *pool
	scratch scratch // the forward pass's working space, sized for the largest batch
	passes  int     // forward passes run, for tests
	closed  bool
}

// matrix is a weight matrix in the file's encoding: rows of cols elements.
type matrix struct {
	name   string
	typ    ggml.Type
	rows   int
	cols   int
	stride int // bytes per row
	data   []byte
}

type layer struct {
	attnNorm, ffnNorm []float32
	wq, wk, wv, wo    matrix
	wgate, wup, wdown matrix

	// wqkv, when it has rows, holds wq, wk and wv stacked (phi3's attn_qkv);
	// wq, wk and wv are then empty. Likewise a gate-less layer's wup holds
	// the gate's rows followed by the up rows (phi3's fused ffn_up).
	wqkv          matrix
	bq, bk, bv    []float32 // biases added after wq, wk, wv (qwen2), or nil
	postAttnNorm  []float32 // norm of the attention output before the residual (gemma2), or nil
	postFFNNorm   []float32 // norm of the feed-forward output before the residual (gemma2), or nil
	fusedGateUp   bool
	slidingWindow bool // attends to the latest Config.SlidingWindow positions only
}

// Load opens the GGUF model at path and makes it ready to generate. The file is
// memory-mapped: its tensors are read in place, not copied to the heap, and the
// pages are brought in layer by layer so that Progress can report them.
// Load stops early, returning ctx.Err(), when ctx ends.
func Load(ctx context.Context, path string, opts Options) (*Model, error) {
	if !hostLittleEndian {
		return nil, fmt.Errorf("%w: this machine is big-endian; the engine reads the file's little-endian tensors in place", ErrUnsupported)
	}
	start := time.Now()
	f, err := gguf.Open(path)
	if err != nil {
		return nil, fileError(err)
	}
	m, err := newModel(f, opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := m.touch(ctx, opts.Progress); err != nil {
		m.Close()
		return nil, err
	}
	m.pool = newPool(m.threads)
	m.loadTime = time.Since(start)
	return m, nil
}

func newModel(f *gguf.File, opts Options) (*Model, error) {
	cfg, err := readConfig(f)
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		return nil, fmt.Errorf("%w: tokenizer: %w", ErrInvalidModel, err)
	}
	if tok.VocabSize() != cfg.VocabSize {
		return nil, fmt.Errorf("%w: the tokenizer has %d tokens, the model %d", ErrInvalidModel, tok.VocabSize(), cfg.VocabSize)
	}
	gi := f.ModelInfo()
	m := &Model{cfg: cfg, file: f, tok: tok, tokens: &Tokenizer{tok: tok}, info: ModelInfo{
		Architecture: gi.Architecture, Name: gi.Name, Quantization: gi.Quantization,
		FileType: uint32(gi.FileType), Parameters: gi.Parameters, Tensors: gi.TensorCount, FileSize: gi.FileSize,
	}}
	m.threads = opts.Threads
	if m.threads <= 0 {
		m.threads = runtime.NumCPU()
	}
	m.ctxSize = opts.ContextSize
	if m.ctxSize <= 0 {
		m.ctxSize = min(cfg.TrainContext, DefaultContextSize)
	}
	if m.ctxSize > 1<<20 {
		return nil, fmt.Errorf("%w: context size %d is too large", ErrInvalidRequest, m.ctxSize)
	}
	m.batch = opts.BatchSize
	if m.batch <= 0 {
		m.batch = 256
	}
	m.batch = min(m.batch, m.ctxSize)
	if err := m.bind(); err != nil {
		return nil, err
	}
	m.info.DecodeParameters = m.info.Parameters
	if m.output.data != nil && &m.output.data[0] != &m.embed.data[0] {
		m.info.DecodeParameters -= int64(m.embed.rows-1) * int64(m.embed.cols)
	}
	m.qPreScale = cfg.Architecture == "phi3" || cfg.Architecture == "gemma2"
	m.geluGate = cfg.Architecture == "gemma2"
	return m, nil
}

// bind finds every tensor the forward pass needs and checks its type and shape.
func (m *Model) bind() error {
	c := m.cfg
	var err error
	mat := func(name string, rows, cols int) matrix {
		if err != nil {
			return matrix{}
		}
		var w matrix
		w, err = m.matrix(name, rows, cols)
		return w
	}
	vec := func(name string, n int) []float32 {
		if err != nil {
			return nil
		}
		var v []float32
		v, err = m.vector(name, n)
		return v
	}
	m.embed = mat("token_embd.weight", c.VocabSize, c.Embedding)
	m.outputNorm = vec("output_norm.weight", c.Embedding)
	if err != nil {
		return err
	}
	if _, ok := m.file.Tensor("output.weight"); ok {
		m.output = mat("output.weight", c.VocabSize, c.Embedding)
	} else {
		m.output = m.embed // tied embeddings
	}
	if _, ok := m.file.Tensor("rope_freqs.weight"); ok {
		m.ropeFreqs = vec("rope_freqs.weight", c.RopeDims/2)
	}
	qDim, kvDim := c.Heads*c.HeadDim, c.HeadsKV*c.HeadDim
	has := func(name string) bool { _, ok := m.file.Tensor(name); return ok }
	if err == nil {
		// Phi-3's long-context files carry two sets of frequency factors
		// picked by the context size (LongRoPE); the engine has not learnt that.
		for _, name := range []string{"rope_factors_long.weight", "rope_factors_short.weight"} {
			if has(name) {
				return fmt.Errorf("%w: %s (LongRoPE frequency factors, as in Phi-3 128k models)", ErrUnsupported, name)
			}
		}
	}
	m.layers = make([]layer, c.Layers)
	for i := range m.layers {
		p := fmt.Sprintf("blk.%d.", i)
		l := layer{
			attnNorm:      vec(p+"attn_norm.weight", c.Embedding),
			ffnNorm:       vec(p+"ffn_norm.weight", c.Embedding),
			wo:            mat(p+"attn_output.weight", c.Embedding, qDim),
			wdown:         mat(p+"ffn_down.weight", c.Embedding, c.FeedForward),
			slidingWindow: c.Sliding(i),
		}
		switch c.Architecture {
		case "phi3":
			if has(p + "attn_qkv.weight") {
				l.wqkv = mat(p+"attn_qkv.weight", qDim+2*kvDim, c.Embedding)
			} else {
				l.wq = mat(p+"attn_q.weight", qDim, c.Embedding)
				l.wk = mat(p+"attn_k.weight", kvDim, c.Embedding)
				l.wv = mat(p+"attn_v.weight", kvDim, c.Embedding)
			}
			l.wup = mat(p+"ffn_up.weight", 2*c.FeedForward, c.Embedding)
			l.fusedGateUp = true
		default:
			l.wq = mat(p+"attn_q.weight", qDim, c.Embedding)
			l.wk = mat(p+"attn_k.weight", kvDim, c.Embedding)
			l.wv = mat(p+"attn_v.weight", kvDim, c.Embedding)
			l.wgate = mat(p+"ffn_gate.weight", c.FeedForward, c.Embedding)
			l.wup = mat(p+"ffn_up.weight", c.FeedForward, c.Embedding)
		}
		if c.Architecture == "qwen2" {
			l.bq = vec(p+"attn_q.bias", qDim)
			l.bk = vec(p+"attn_k.bias", kvDim)
			l.bv = vec(p+"attn_v.bias", kvDim)
		}
		if c.Architecture == "gemma2" {
			l.postAttnNorm = vec(p+"post_attention_norm.weight", c.Embedding)
			l.postFFNNorm = vec(p+"post_ffw_norm.weight", c.Embedding)
		}
		m.layers[i] = l
	}
	return err
}

func (m *Model) tensor(name string) (*gguf.TensorInfo, error) {
	t, ok := m.file.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%w: tensor %s is missing", ErrInvalidModel, name)
	}
	if !t.Type.Supported() {
		return nil, fmt.Errorf("%w: tensor %s has type %s (the engine computes with F32, F16, BF16, Q4_0, Q5_0, Q8_0, Q4_K, Q5_K and Q6_K)", ErrUnsupported, name, t.Type)
	}
	return t, nil
}

func (m *Model) matrix(name string, rows, cols int) (matrix, error) {
	t, err := m.tensor(name)
	if err != nil {
		return matrix{}, err
	}
	if len(t.Shape) != 2 || t.Shape[0] != uint64(cols) || t.Shape[1] != uint64(rows) {
		return matrix{}, fmt.Errorf("%w: tensor %s has shape %v, want [%d %d]", ErrInvalidModel, name, t.Shape, cols, rows)
	}
	data := m.file.TensorData(t)
	if t.Type == ggml.Q5_0 {
		// Q5_0 has only portable kernels; its values are Q8_0 values with
		// the same scales, so re-encode it once: the products are the same
		// integers and run on the Q8_0 kernels, for half again the bytes.
		return matrix{name: name, typ: ggml.Q8_0, rows: rows, cols: cols, stride: ggml.Q8_0.RowSize(cols), data: q5_0ToQ8_0(data)}, nil
	}
	return matrix{name: name, typ: t.Type, rows: rows, cols: cols, stride: t.Type.RowSize(cols), data: data}, nil
}

// q5_0ToQ8_0 re-encodes Q5_0 blocks (F16 scale, 32 fifth bits, 16 bytes of
// nibbles) as Q8_0 blocks (the same scale, 32 signed bytes) holding the
// same values, level − 16.
func q5_0ToQ8_0(src []byte) []byte {
	const in, out = 22, 34
	nb := len(src) / in
	dst := make([]byte, nb*out)
	for i := 0; i < nb; i++ {
		b, o := src[i*in:(i+1)*in], dst[i*out:(i+1)*out]
		o[0], o[1] = b[0], b[1]
		qh := binary.LittleEndian.Uint32(b[2:])
		for j := 0; j < 16; j++ {
			lo := int(b[6+j]&15) | int(qh>>j&1)<<4
			hi := int(b[6+j]>>4) | int(qh>>(j+16)&1)<<4
			o[2+j] = byte(int8(lo - 16))
			o[18+j] = byte(int8(hi - 16))
		}
	}
	return dst
}

func (m *Model) vector(name string, n int) ([]float32, error) {
	t, err := m.tensor(name)
	if err != nil {
		return nil, err
	}
	if t.Elements() != int64(n) {
		return nil, fmt.Errorf("%w: tensor %s has shape %v, want [%d]", ErrInvalidModel, name, t.Shape, n)
	}
	v := make([]float32, n)
	if err := ggml.Dequantize(t.Type, m.file.TensorData(t), v); err != nil {
		return nil, fmt.Errorf("%w: tensor %s: %w", ErrInvalidModel, name, err)
	}
	return v, nil
}

// touch brings the mapped weights into memory, a layer at a time, reporting
// progress. Reading one byte per page is enough: the kernel reads the rest.
func (m *Model) touch(ctx context.Context, progress func(LoadProgress)) error {
	groups := make([][][]byte, 0, len(m.layers)+1)
	for _, l := range m.layers {
		groups = append(groups, [][]byte{l.wq.data, l.wk.data, l.wv.data, l.wqkv.data, l.wo.data, l.wgate.data, l.wup.data, l.wdown.data})
	}
	last := [][]byte{m.embed.data}
	if &m.output.data[0] != &m.embed.data[0] {
		last = append(last, m.output.data)
	}
	groups = append(groups, last)
	var total, done int64
	for _, g := range groups {
		for _, b := range g {
			total += int64(len(b))
		}
	}
	pageSize := os.Getpagesize()
	var sink byte
	for i, g := range groups {
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, b := range g {
			for off := 0; off < len(b); off += pageSize {
				sink ^= b[off]
			}
			done += int64(len(b))
		}
		if progress != nil {
			progress(LoadProgress{LayersLoaded: i + 1, LayersTotal: len(groups), BytesLoaded: done, BytesTotal: total})
		}
	}
	// The reads above must happen: keeping the value they feed alive stops
	// the compiler from dropping the loop.
	runtime.KeepAlive(sink)
	return nil
}

// Close releases the model's memory map and goroutines. Sessions of a closed
// model return ErrClosed.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	if m.pool != nil {
		m.pool.stop()
	}
	return m.file.Close()
}

// Config returns the model's hyperparameters.
func (m *Model) Config() Config { return m.cfg }

// ModelInfo describes a model file: what its metadata says it is and how
// big it is. The hyperparameters the engine computes with are in [Config].
type ModelInfo struct {
	Architecture string // general.architecture, such as "llama"
	Name         string // general.name; "" when the file has none
	// Quantization names the file's encoding as llama.cpp does ("Q4_K_M",
	// "Q8_0", "F16"): from general.file_type, or when that is absent guessed
	// from the most common encoding of its matrices; "" when neither works.
	Quantization string
	FileType     uint32 // general.file_type, llama.cpp's number for Quantization (0 when unknown)
	Parameters   int64  // elements in all tensors
	// DecodeParameters is how many of them one decode step reads per
	// token: all but the token-embedding table, of which it reads one row,
	// unless the table is also the output head (tied embeddings, as in
	// Gemma and small Qwen models), which reads it whole. Decode speed is
	// bound by these reads, so tokens/s × DecodeParameters compares the
	// speed of models of different shapes and families.
	DecodeParameters int64
	Tensors          int   // number of tensors
	FileSize         int64 // bytes
}

// Info describes the model file.
func (m *Model) Info() ModelInfo { return m.info }

// Tokenizer returns the model's tokenizer.
func (m *Model) Tokenizer() *Tokenizer { return m.tokens }

// ContextSize is the number of positions one session holds.
func (m *Model) ContextSize() int { return m.ctxSize }

// Threads is the number of goroutines a forward pass uses.
func (m *Model) Threads() int { return m.threads }

// LoadDuration is how long Load took.
func (m *Model) LoadDuration() time.Duration { return m.loadTime }

// FileSize is the size of the mapped model file in bytes.
func (m *Model) FileSize() int64 { return m.file.Size }

// KVCacheBytes is the memory one session's KV cache takes (F16 keys and values
// for every layer and position).
func (m *Model) KVCacheBytes() int64 {
	return int64(m.cfg.Layers) * 2 * int64(m.ctxSize) * int64(m.cfg.HeadsKV*m.cfg.HeadDim) * 2
}

// fileError makes the file reader's errors about a file's content match this
// package's sentinels (ErrNotGGUF, or else ErrInvalidModel) as well as the
// reader's own, keeping the reader's message (which says where in the file).
func fileError(err error) error {
	var fe *gguf.FormatError
	if !errors.As(err, &fe) {
		return err // opening or mapping the file failed: the system's error
	}
	sentinel := ErrInvalidModel
	if errors.Is(err, gguf.ErrNotGGUF) {
		sentinel = ErrNotGGUF
	}
	return &modelFileError{sentinel: sentinel, err: err}
}

type modelFileError struct{ sentinel, err error }

func (e *modelFileError) Error() string   { return e.err.Error() }
func (e *modelFileError) Unwrap() []error { return []error{e.sentinel, e.err} }
