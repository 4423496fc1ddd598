package engine

import (
	"context"
	"fmt"
)

// Session is one conversation's state on a model: its KV cache (F16 keys and
// values for every layer, as llama.cpp keeps them) and the tokens it holds.
// A worker's inference slot is a Session. A Session is not safe for concurrent
// use; several Sessions of one Model may run at once.
type Session struct {
	m      *Model
	k, v   [][]uint16  // per layer: keys [ctx][kvDim]; values transposed [kvDim][ctx]
	tokens []int       // the tokens whose keys and values are cached, in order
	logits []float32   // after the last token evaluated that asked for them
	gen    *Generation // the latest generation started on the session
}

// NewSession allocates a session with an empty KV cache of the model's context
// size. Besides the cache a session holds only its logits and tokens: the
// working space of the forward pass belongs to the model.
func (m *Model) NewSession() *Session {
	c := m.cfg
	kvDim := c.HeadsKV * c.HeadDim
	s := &Session{
		m:      m,
		k:      make([][]uint16, c.Layers),
		v:      make([][]uint16, c.Layers),
		logits: make([]float32, c.VocabSize),
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
// values, which Generate refuses with ErrNonFinite. Eval, Reset and Truncate
// are for a session with no unfinished Generation: they would move the
// cache under it.
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
		if err := s.m.forward([]batchPart{{s: s, tokens: tokens[:n], wantLogits: n == len(tokens)}}); err != nil {
			return nil, err
		}
		tokens = tokens[n:]
	}
	return s.logits, nil
}
