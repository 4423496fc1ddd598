package engine

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Request is one text generation.
type Request struct {
	// Prompt is the text to continue. It is tokenized with the model's BOS
	// token and leading-space rule, and text naming a special token (such as
	// "<|eot_id|>") becomes that token, as llama.cpp's server does.
	Prompt string
	// PromptTokens, when set, is used instead of Prompt.
	PromptTokens []int
	// MaxTokens caps the generated tokens (required, at least 1). Generation
	// also stops where the context is full, with stop reason "max_tokens".
	MaxTokens int
	// Stop strings end generation when the text produces one; the stop string
	// itself is not returned. At most 4, each at most 100 bytes.
	Stop []string
	// IgnoreEOS keeps generating past the end-of-generation token. A
	// Constraint overrides it: a constrained generation ends when the value
	// is complete.
	IgnoreEOS bool
	// Logprobs reports each generated token's log-probability on its
	// Token (see [Logprobs]), with the TopLogprobs (0 to 20) most likely
	// tokens at its position.
	Logprobs    bool
	TopLogprobs int
	// Constraint, when set, limits the tokens the sampler may choose (for
	// example to JSON valid against a schema). It holds the progress of one
	// generation: give each request its own.
	Constraint Constraint
	Sampling
}

// Constraint limits which tokens a generation may choose. The sampler
// draws as usual and asks Allows about its choice; only when that is
// refused does it call Mask and draw again from the allowed tokens, so the
// common case costs one check. End-of-generation tokens are allowed when the
// constrained output is complete.
type Constraint interface {
	// Allows reports whether token id may come next.
	Allows(id int) bool
	// Mask sets the logits of the tokens that may not come next to -Inf.
	// It fails when no token may come next.
	Mask(logits []float32) (int, error)
	// Accept records the chosen token.
	Accept(id int) error
}

// Stop reasons, as the worker's done event reports them.
const (
	StopMaxTokens = "max_tokens"
	StopEOS       = "eos"
	StopString    = "stop"
	StopCancelled = "cancelled"
)

// Token is one step of a generation, passed to the callback of Generate.
type Token struct {
	Index int    // 0 for the first generated token
	ID    int    // the token's id; -1 for the final piece of held-back text
	Text  string // text this step releases: may be empty while a character or a possible stop string is incomplete
	// Logprobs is how likely the token was, when the request asked
	// (nil otherwise, and for the final piece of held-back text).
	Logprobs *Logprobs
}

// Result summarizes a generation.
type Result struct {
	Text           string // everything released to the callback
	PromptTokens   int
	CachedTokens   int // prompt tokens whose keys and values were reused from the session
	Tokens         int // tokens generated
	StopReason     string
	PromptDuration time.Duration // evaluating the prompt
	DecodeDuration time.Duration // generating after the first token
}

// PromptTokensPerSecond is the prompt evaluation rate.
func (r Result) PromptTokensPerSecond() float64 {
	return rate(r.PromptTokens-r.CachedTokens, r.PromptDuration)
}

// DecodeTokensPerSecond is the generation rate after the first token.
func (r Result) DecodeTokensPerSecond() float64 { return rate(r.Tokens-1, r.DecodeDuration) }

func rate(n int, d time.Duration) float64 {
	if n <= 0 || d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Validate checks a request's ranges (what a client may ask for) without a model.
func (r *Request) Validate() error {
	switch {
	case r.MaxTokens < 1:
		return fmt.Errorf("%w: max_tokens must be at least 1", ErrInvalidRequest)
	case r.Temperature < 0 || r.Temperature > 2 || r.Temperature != r.Temperature:
		return fmt.Errorf("%w: temperature must be between 0 and 2", ErrInvalidRequest)
	case r.TopP < 0 || r.TopP > 1 || r.TopP != r.TopP:
		return fmt.Errorf("%w: top_p must be between 0 and 1", ErrInvalidRequest)
	case r.MinP < 0 || r.MinP > 1 || r.MinP != r.MinP:
		return fmt.Errorf("%w: min_p must be between 0 and 1", ErrInvalidRequest)
	case r.TopK < 0:
		return fmt.Errorf("%w: top_k must not be negative", ErrInvalidRequest)
	case r.RepeatPenalty < 0 || r.RepeatPenalty != r.RepeatPenalty:
		return fmt.Errorf("%w: repeat_penalty must not be negative", ErrInvalidRequest)
	case !(r.PresencePenalty >= -2 && r.PresencePenalty <= 2):
		return fmt.Errorf("%w: presence_penalty must be between -2 and 2", ErrInvalidRequest)
	case !(r.FrequencyPenalty >= -2 && r.FrequencyPenalty <= 2):
		return fmt.Errorf("%w: frequency_penalty must be between -2 and 2", ErrInvalidRequest)
	case r.TopLogprobs < 0 || r.TopLogprobs > MaxTopLogprobs:
		return fmt.Errorf("%w: top_logprobs must be between 0 and %d", ErrInvalidRequest, MaxTopLogprobs)
	case len(r.Stop) > 4:
		return fmt.Errorf("%w: at most 4 stop strings", ErrInvalidRequest)
	}
	for _, s := range r.Stop {
		if s == "" || len(s) > 100 {
			return fmt.Errorf("%w: stop strings must be 1 to 100 bytes", ErrInvalidRequest)
		}
	}
	if r.Prompt == "" && len(r.PromptTokens) == 0 {
		return fmt.Errorf("%w: the prompt is empty", ErrInvalidRequest)
	}
	return nil
}

// Generate continues req.Prompt, calling yield for every generated token with
// the text it releases, until a stop condition. The session's cache is reused
// for the longest common prefix of its tokens and the new prompt.
//
// If ctx ends, Generate returns what was generated with stop reason
// "cancelled" and ctx's error. If yield returns an error, Generate stops and
// returns it. If the model produces a NaN or infinite logit (damaged
// weights), Generate stops with an error wrapping ErrNonFinite and no stop
// reason; the tokens before it were already passed to yield.
func (s *Session) Generate(ctx context.Context, req Request, yield func(Token) error) (Result, error) {
	g, err := s.start(req)
	if err != nil {
		return g.Result(), err
	}
	var yieldErr error
	emit := func(_ *Generation, t Token) {
		if yieldErr == nil {
			yieldErr = yield(t)
		}
	}
	gens := []*Generation{g}
	for !g.done {
		if err := s.m.Step(ctx, gens, s.m.batch, emit); err != nil {
			if ctx.Err() != nil {
				g.finish(StopCancelled, emit)
			}
			g.fail(err)
			return g.Result(), err
		}
		if yieldErr != nil {
			g.finish(StopCancelled, emit)
			return g.Result(), yieldErr
		}
	}
	return g.Result(), g.err
}

// stopMatcher releases generated text except for a tail that could still
// grow into a stop string, and reports when one appears.
type stopMatcher struct {
	stops   []string
	pending string
}

// feed adds text and returns what can be released, and whether a stop string
// was found (in which case the text before it is released and the rest dropped).
func (m *stopMatcher) feed(s string) (string, bool) {
	if len(m.stops) == 0 {
		return s, false
	}
	m.pending += s
	cut := -1
	for _, st := range m.stops {
		if i := strings.Index(m.pending, st); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		out := m.pending[:cut]
		m.pending = ""
		return out, true
	}
	// Hold the longest suffix that is a prefix of some stop string.
	hold := 0
	for _, st := range m.stops {
		for k := min(len(st)-1, len(m.pending)); k > hold; k-- {
			if strings.HasSuffix(m.pending, st[:k]) {
				hold = k
				break
			}
		}
	}
	out := m.pending[:len(m.pending)-hold]
	m.pending = m.pending[len(m.pending)-hold:]
	return out, false
}

// flush returns the held text followed by s (the decoder's remainder).
func (m *stopMatcher) flush(s string) string {
	out := m.pending + s
	m.pending = ""
	return out
}
