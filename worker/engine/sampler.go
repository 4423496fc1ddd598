package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Sampling chooses the next token from the logits. The zero value is greedy
// decoding with nothing else enabled.
//
// The filters run in llama.cpp's order: repetition penalty, top-k, top-p,
// min-p, then temperature and a draw from what is left. Temperature 0 means
// greedy (the highest logit after the penalty).
type Sampling struct {
	Temperature   float32 // 0 = greedy; up to 2
	TopK          int     // keep the K most likely tokens; 0 = off
	TopP          float32 // keep the smallest set whose probability reaches P; 0 or 1 = off
	MinP          float32 // drop tokens less likely than MinP × the most likely; 0 = off
	RepeatPenalty float32 // divide positive (multiply negative) logits of recent tokens; 0 or 1 = off
	RepeatLastN   int     // how many recent tokens the penalty looks at; 0 = 64
	Seed          uint64  // the random stream; the same seed and request give the same tokens
	// PresencePenalty and FrequencyPenalty are OpenAI's penalties (-2 to
	// 2; 0 = off), applied with the repetition penalty over the tokens
	// generated so far (not the prompt): see penalizeGenerated.
	PresencePenalty  float32
	FrequencyPenalty float32
}

// DefaultSampling is what llama.cpp's tools use by default.
func DefaultSampling() Sampling {
	return Sampling{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, RepeatPenalty: 1, RepeatLastN: 64}
}

type candidate struct {
	id    int
	logit float32
	p     float32
}

// sampler holds the random stream and scratch space for one generation.
type sampler struct {
	cfg   Sampling
	rng   *rand.Rand
	cands []candidate
	// counts is how often each token was generated (see accept), for the
	// presence and frequency penalties; raw holds the logits before any
	// filter when log-probabilities are wanted.
	counts map[int]int
	raw    []float32
	con    Constraint // nil: any token
}

func newSampler(cfg Sampling) *sampler {
	return &sampler{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
}

// sample picks a token from logits (which it may modify) given the recent
// history for the repetition penalty. It fails with ErrNonFinite, before
// touching anything, when a logit is NaN or infinite: no probability can be
// made from those. Whatever the parameters, it either returns a valid index
// of logits or an error.
func (s *sampler) sample(logits []float32, history []int) (int, error) {
	if len(logits) == 0 {
		return -1, fmt.Errorf("%w: no logits to sample from", ErrInvalidRequest)
	}
	if err := checkFinite(logits); err != nil {
		return -1, err
	}
	s.penalize(logits, history)
	id := s.choose(logits)
	if s.con != nil && !s.con.Allows(id) {
		// Drawing again from the allowed tokens gives each the probability
		// it has when the others are masked from the start.
		if _, err := s.con.Mask(logits); err != nil {
			return -1, fmt.Errorf("%w: %w", ErrConstraint, err)
		}
		id = s.choose(logits)
	}
	return id, nil
}

// penalize applies the repetition penalty to logits in place.
func (s *sampler) penalize(logits []float32, history []int) {
	c := s.cfg
	if c.RepeatPenalty > 0 && c.RepeatPenalty != 1 && c.RepeatPenalty <= math.MaxFloat32 {
		n := c.RepeatLastN
		if n <= 0 {
			n = 64
		}
		recent := history[max(0, len(history)-n):]
		seen := make(map[int]bool, len(recent))
		for _, id := range recent {
			if seen[id] || id < 0 || id >= len(logits) {
				continue
			}
			seen[id] = true
			// A finite logit and a finite, positive penalty cannot make a NaN,
			// but an extreme penalty can overflow: keep the result finite.
			if logits[id] > 0 {
				logits[id] = clampFinite(logits[id] / c.RepeatPenalty)
			} else {
				logits[id] = clampFinite(logits[id] * c.RepeatPenalty)
			}
		}
	}
	s.penalizeGenerated(logits)
}

// choose draws a token from logits (not modified) after top-k, top-p and
// min-p; -Inf logits are never drawn unless all are.
func (s *sampler) choose(logits []float32) int {
	c := s.cfg
	// NaN and non-positive temperatures are greedy.
	if !(c.Temperature > 0) {
		return argmax(logits)
	}
	temp := min(c.Temperature, math.MaxFloat32)

	var cands []candidate
	sorted := false
	if c.TopK > 0 && c.TopK < len(logits) {
		cands = s.topK(logits, c.TopK)
		sorted = true
	} else {
		cands = s.cands[:0]
		for id, l := range logits {
			if l < -math.MaxFloat32 {
				continue // masked by a constraint: never drawn
			}
			cands = append(cands, candidate{id: id, logit: l})
		}
		s.cands = cands
	}
	if c.TopP > 0 && c.TopP < 1 {
		if !sorted {
			slices.SortFunc(cands, byLogitDesc)
		}
		softmaxCands(cands, 1)
		var cum float32
		keep := len(cands)
		for i := range cands {
			cum += cands[i].p
			if cum >= c.TopP {
				keep = i + 1
				break
			}
		}
		cands = cands[:keep]
	}
	if c.MinP > 0 && c.MinP <= 1 {
		top := cands[0].logit
		for _, k := range cands {
			top = max(top, k.logit)
		}
		// p_i ≥ minP·p_max  ⇔  logit_i ≥ logit_max + ln(minP). ln(minP) ≤ 0,
		// so the most likely token always stays.
		floor := top + float32(math.Log(float64(c.MinP)))
		kept := cands[:0]
		for _, k := range cands {
			if k.logit >= floor {
				kept = append(kept, k)
			}
		}
		cands = kept
	}
	softmaxCands(cands, temp)
	r := s.rng.Float32()
	var cum float32
	for _, k := range cands {
		cum += k.p
		if r < cum {
			return k.id
		}
	}
	// Rounding left r past the sum: the last token that has a probability
	// (masked tokens have none).
	for i := len(cands) - 1; i > 0; i-- {
		if cands[i].p > 0 {
			return cands[i].id
		}
	}
	return cands[0].id
}

// checkFinite returns an error wrapping ErrNonFinite when a logit is NaN or
// ±Inf, saying how many and which came first. One pass over the row; v-v is
// 0 for every finite v and NaN for NaN and both infinities.
func checkFinite(logits []float32) error {
	for i, v := range logits {
		if v-v == 0 {
			continue
		}
		bad := 0
		for _, w := range logits[i:] {
			if w-w != 0 {
				bad++
			}
		}
		return fmt.Errorf("%w: %d of %d logits, the first for token %d (%v)", ErrNonFinite, bad, len(logits), i, v)
	}
	return nil
}

// clampFinite maps ±Inf to the largest finite float32 of the same sign.
func clampFinite(v float32) float32 {
	return max(-math.MaxFloat32, min(v, math.MaxFloat32))
}

// topK returns the k highest logits, best first, in O(n log k): a min-heap of
// the best k seen so far, whose root is the one to beat.
func (s *sampler) topK(logits []float32, k int) []candidate {
	h := s.cands[:0]
	// worse reports whether a ranks below b (lower logit; on ties the higher id).
	worse := func(a, b candidate) bool { return a.logit < b.logit || a.logit == b.logit && a.id > b.id }
	down := func(i int) {
		for {
			l, m := 2*i+1, i
			if l < len(h) && worse(h[l], h[m]) {
				m = l
			}
			if r := l + 1; r < len(h) && worse(h[r], h[m]) {
				m = r
			}
			if m == i {
				return
			}
			h[i], h[m] = h[m], h[i]
			i = m
		}
	}
	for id, l := range logits {
		c := candidate{id: id, logit: l}
		if len(h) < k {
			h = append(h, c)
			for i := len(h) - 1; i > 0; {
				p := (i - 1) / 2
				if !worse(h[i], h[p]) {
					break
				}
				h[i], h[p] = h[p], h[i]
				i = p
			}
			continue
		}
		if worse(h[0], c) {
			h[0] = c
			down(0)
		}
	}
	s.cands = h
	slices.SortFunc(h, byLogitDesc)
	return h
}

func byLogitDesc(a, b candidate) int {
	switch {
	case a.logit > b.logit:
		return -1
	case a.logit < b.logit:
		return 1
	}
	return a.id - b.id
}

func softmaxCands(cands []candidate, temp float32) {
	maxl := float32(math.Inf(-1))
	for _, k := range cands {
		maxl = max(maxl, k.logit)
	}
	var sum float64
	for i := range cands {
		e := math.Exp(float64((cands[i].logit - maxl) / temp))
		cands[i].p = float32(e)
		sum += e
	}
	for i := range cands {
		cands[i].p = float32(float64(cands[i].p) / sum)
	}
}

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}
