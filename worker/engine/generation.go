package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"rbee/internal/tokenizer"
)

// DefaultChunk is the number of prompt tokens one Step reads, in all, when
// its caller does not say.
const DefaultChunk = 256

// Generation is one request in progress on a Session: the prompt still to be
// read, the sampler, the stop-string matcher and what was generated so far.
// [Session.Start] makes one without running the model; [Model.Step] advances
// any number of them, from different sessions of the same model, together.
//
// A Generation is not safe for concurrent use: one goroutine (the scheduler)
// starts, steps and cancels it. [Session.Generate] is Start followed by Steps
// of the one generation until it is done.
type Generation struct {
	s      *Session
	req    Request
	prompt []int
	read   int // prompt tokens in the cache, the reused prefix included
	next   int // the sampled token to feed at the next step, once reading is over

	smp     *sampler
	dec     *tokenizer.Decoder
	stop    stopMatcher
	text    strings.Builder
	history []int // prompt and generated tokens, for the repetition penalty

	res         Result
	err         error
	done        bool
	promptStart time.Time
	decodeStart time.Time
}

// Start prepares req on the session: it validates the request, tokenizes the
// prompt and keeps the longest prefix of the session's cache that the prompt
// shares (always reading at least the prompt's last token, for fresh logits).
// It does not run the model: [Model.Step] does. The session holds at most one
// unfinished Generation; starting another while one is unfinished fails with
// ErrInvalidRequest. Errors wrap ErrInvalidRequest or ErrContextFull.
func (s *Session) Start(req Request) (*Generation, error) {
	g, err := s.start(req)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// start is Start, returning the generation even when it fails so that
// Generate can report the prompt's size.
func (s *Session) start(req Request) (*Generation, error) {
	g := &Generation{s: s, req: req, next: -1}
	if err := req.Validate(); err != nil {
		return g, err
	}
	if s.gen != nil && !s.gen.done {
		return g, fmt.Errorf("%w: the session is busy with another generation", ErrInvalidRequest)
	}
	m := s.m
	prompt := slices.Clone(req.PromptTokens) // the caller may reuse its slice
	if prompt == nil {
		prompt = m.tok.Encode(req.Prompt, true, true)
	}
	g.res.PromptTokens = len(prompt)
	if len(prompt) == 0 {
		return g, fmt.Errorf("%w: the prompt has no tokens", ErrInvalidRequest)
	}
	if len(prompt) >= m.ctxSize {
		return g, fmt.Errorf("%w: the prompt has %d tokens; the context holds %d", ErrContextFull, len(prompt), m.ctxSize)
	}
	for _, t := range prompt {
		if t < 0 || t >= m.cfg.VocabSize {
			return g, fmt.Errorf("%w: token id %d is outside the vocabulary (0…%d)", ErrInvalidRequest, t, m.cfg.VocabSize-1)
		}
	}
	common := 0
	for common < len(s.tokens) && common < len(prompt)-1 && s.tokens[common] == prompt[common] {
		common++
	}
	s.Truncate(common)
	g.prompt = prompt
	g.read = common
	g.res.CachedTokens = common
	g.smp = newSampler(req.Sampling)
	g.smp.con = req.Constraint
	g.dec = m.tok.NewDecoder()
	g.stop = stopMatcher{stops: req.Stop}
	g.history = append(make([]int, 0, len(prompt)+min(req.MaxTokens, m.ctxSize)), prompt...)
	s.gen = g
	return g, nil
}

// Session returns the session the generation runs on.
func (g *Generation) Session() *Session { return g.s }

// Done reports whether the generation has finished: it has a stop reason, or
// it failed (see Err).
func (g *Generation) Done() bool { return g.done }

// Err is why the generation failed (wrapping ErrNonFinite, ErrContextFull,
// ErrClosed…), or nil.
func (g *Generation) Err() error { return g.err }

// Result is the generation's summary so far, final once Done.
func (g *Generation) Result() Result {
	r := g.res
	r.Text = g.text.String()
	return r
}

// Reading reports whether the generation is still reading its prompt.
func (g *Generation) Reading() bool { return !g.done && g.read < len(g.prompt) }

// Cancel ends an unfinished generation at once with stop reason "cancelled".
// Text held back because it might have grown into a stop string is dropped
// (Generate, cancelled through its context, releases it instead). Call it
// between steps, from the goroutine that steps the generation.
func (g *Generation) Cancel() { g.finish(StopCancelled, nil) }

// finish ends the generation with reason, releasing held-back text through
// emit when it is set.
func (g *Generation) finish(reason string, emit func(*Generation, Token)) {
	if g.done {
		return
	}
	g.done = true
	g.res.StopReason = reason
	if !g.decodeStart.IsZero() {
		g.res.DecodeDuration = time.Since(g.decodeStart)
	}
	if reason != StopString && emit != nil {
		if tail := g.stop.flush(g.dec.Flush()); tail != "" {
			g.release(Token{Index: g.res.Tokens - 1, ID: -1, Text: tail}, emit)
		}
	}
}

// fail ends the generation with err and no stop reason.
func (g *Generation) fail(err error) {
	if g.done {
		return
	}
	g.done = true
	g.err = err
	if !g.decodeStart.IsZero() {
		g.res.DecodeDuration = time.Since(g.decodeStart)
	}
}

func (g *Generation) release(t Token, emit func(*Generation, Token)) {
	g.text.WriteString(t.Text)
	if emit != nil {
		emit(g, t)
	}
}

// advance chooses the next token from logits, releases it and decides
// whether the generation goes on.
func (g *Generation) advance(logits []float32, emit func(*Generation, Token)) {
	m := g.s.m
	if g.req.Logprobs {
		g.smp.keepRaw(logits)
	}
	id, err := g.smp.sample(logits, g.history)
	if err != nil {
		g.fail(fmt.Errorf("choosing token %d: %w", g.res.Tokens+1, err))
		return
	}
	if con := g.req.Constraint; con != nil {
		// The constraint allowed the token; a complete value ends here
		// even with IgnoreEOS.
		if err := con.Accept(id); err != nil {
			g.fail(fmt.Errorf("%w: token %d: %w", ErrConstraint, g.res.Tokens+1, err))
			return
		}
		if m.tok.IsEOG(id) {
			g.finish(StopEOS, emit)
			return
		}
	}
	g.smp.accept(id)
	if !g.req.IgnoreEOS && m.tok.IsEOG(id) {
		g.finish(StopEOS, emit)
		return
	}
	if g.res.Tokens == 0 {
		g.decodeStart = time.Now()
	}
	g.res.Tokens++
	g.history = append(g.history, id)
	out, hit := g.stop.feed(g.dec.Next(id))
	t := Token{Index: g.res.Tokens - 1, ID: id, Text: out}
	if g.req.Logprobs {
		t.Logprobs = g.smp.logprobs(id, g.req.TopLogprobs)
	}
	g.release(t, emit)
	switch {
	case hit:
		g.finish(StopString, emit)
	case g.res.Tokens >= g.req.MaxTokens || g.s.Len() >= m.ctxSize:
		g.finish(StopMaxTokens, emit)
	default:
		g.next = id
	}
}

// part is one generation's share of a forward pass: the tokens it feeds
// and whether it needs the logits after the last of them.
type part struct {
	g          *Generation
	tokens     []int
	wantLogits bool
}

// Step advances every unfinished generation in gens by one forward pass of
// the model: a generating one by one token, a reading one by a chunk of its
// prompt. chunk caps the prompt tokens the pass reads in all (DefaultChunk
// when chunk <= 0, and never more than the model's batch size); the reading
// generations take it in the order of gens, so a long prompt holds the others
// back by at most one chunk per step and a generation beyond the budget waits.
// A generation that reads the rest of its prompt in this pass also chooses
// its first token.
//
// After the pass, emit (which may be nil) is called for each token a
// generation releases, with the same Tokens as Generate's callback, in the
// order of gens. A generation that fails (non-finite logits, a full context)
// ends with Err set and does not disturb the others. Done generations are
// skipped; a generation listed twice advances once; a generation of another
// model, or one whose session has started another since, fails with
// ErrInvalidRequest. Step returns an error only when the pass cannot run at
// all: ctx ended (the generations are left as they were, to be stepped again
// or cancelled) or the model was closed (the generations in the pass fail
// with ErrClosed).
//
// Several goroutines may call Step on one model at once, with disjoint
// generations: their passes take turns.
func (m *Model) Step(ctx context.Context, gens []*Generation, chunk int, emit func(*Generation, Token)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if chunk <= 0 {
		chunk = DefaultChunk
	}
	budget := min(chunk, m.batch)
	parts := make([]part, 0, len(gens))
	for _, g := range gens {
		if g == nil || g.done {
			continue
		}
		switch {
		case g.s.m != m:
			g.fail(fmt.Errorf("%w: the generation belongs to another model", ErrInvalidRequest))
			continue
		case g.s.gen != g:
			g.fail(fmt.Errorf("%w: the session has started another generation", ErrInvalidRequest))
			continue
		case slices.ContainsFunc(parts, func(p part) bool { return p.g == g }):
			continue // listed twice: it advances once
		}
		if g.Reading() {
			n := min(budget, len(g.prompt)-g.read)
			if n == 0 {
				continue
			}
			budget -= n
			if g.promptStart.IsZero() {
				g.promptStart = time.Now()
			}
			parts = append(parts, part{g: g, tokens: g.prompt[g.read : g.read+n], wantLogits: g.read+n == len(g.prompt)})
			continue
		}
		parts = append(parts, part{g: g, tokens: []int{g.next}, wantLogits: true})
	}
	if len(parts) == 0 {
		return nil
	}
	if err := m.forwardParts(parts); err != nil {
		if errors.Is(err, ErrClosed) {
			for _, p := range parts {
				p.g.fail(err)
			}
		}
		return err
	}
	for _, p := range parts {
		g := p.g
		if p.g.err != nil {
			continue
		}
		if g.Reading() {
			g.read += len(p.tokens)
			if g.read < len(g.prompt) {
				continue
			}
			g.res.PromptDuration = time.Since(g.promptStart)
		}
		g.advance(g.s.logits, emit)
	}
	return nil
}

// forwardParts runs one forward pass over every part that fits its
// session's context; a part that does not fails its generation alone.
func (m *Model) forwardParts(parts []part) error {
	bp := make([]batchPart, 0, len(parts))
	for _, p := range parts {
		s := p.g.s
		if len(s.tokens)+len(p.tokens) > m.ctxSize {
			p.g.fail(fmt.Errorf("%w: %d cached + %d new tokens exceed the context of %d", ErrContextFull, len(s.tokens), len(p.tokens), m.ctxSize))
			continue
		}
		bp = append(bp, batchPart{s: s, tokens: p.tokens, wantLogits: p.wantLogits})
	}
	return m.forward(bp)
}
