package engine

import "math"

// MaxTopLogprobs bounds Request.TopLogprobs, as OpenAI's API does.
const MaxTopLogprobs = 20

// TokenProb is a token and its log-probability.
type TokenProb struct {
	ID      int
	Logprob float64
}

// Logprobs reports how likely a generated token was, and which tokens were
// most likely at its position.
//
// The probabilities are those of the model itself: the log-softmax of the
// raw logits over the whole vocabulary, before the penalties, temperature
// and the top-k, top-p and min-p filters change them. This is what OpenAI's
// API reports and what llama.cpp's server reports by default, so a token
// sampled at a high temperature can have a low log-probability, and the
// figures do not depend on the sampling parameters.
type Logprobs struct {
	// Logprob is the chosen token's natural-log probability (≤ 0).
	Logprob float64
	// Top holds the Request.TopLogprobs most likely tokens, most likely
	// first (ties: the lower id first); empty when TopLogprobs is 0.
	Top []TokenProb
}

// LogSoftmax returns the natural-log probability of every token given
// logits: logits[i] − log Σ exp(logits[j]), computed in float64. It is the
// reference the reported log-probabilities follow.
func LogSoftmax(logits []float32) []float64 {
	lse := logSumExp(logits)
	out := make([]float64, len(logits))
	for i, l := range logits {
		out[i] = float64(l) - lse
	}
	return out
}

// logSumExp is log Σ exp(x), shifted by the maximum so nothing overflows.
// The logits are finite (the sampler checked them).
func logSumExp(x []float32) float64 {
	mx := x[0]
	for _, v := range x[1:] {
		if v > mx {
			mx = v
		}
	}
	m := float64(mx)
	var sum float64
	for _, v := range x {
		sum += math.Exp(float64(v) - m)
	}
	return m + math.Log(sum)
}

// keepRaw copies the logits before the sampler changes them, so that the
// chosen token's log-probability can be computed afterwards.
func (s *sampler) keepRaw(logits []float32) {
	s.raw = append(s.raw[:0], logits...)
}

// logprobs reports the chosen token id against the raw logits kept by
// keepRaw, with the top most likely tokens.
func (s *sampler) logprobs(id, top int) *Logprobs {
	raw := s.raw
	if len(raw) == 0 || id < 0 || id >= len(raw) {
		return nil
	}
	lse := logSumExp(raw)
	lp := &Logprobs{Logprob: float64(raw[id]) - lse}
	if top > 0 {
		top = min(top, len(raw))
		// topK reuses the candidate scratch; the draw is over by now.
		best := s.topK(raw, top)
		lp.Top = make([]TokenProb, len(best))
		for i, c := range best {
			lp.Top[i] = TokenProb{ID: c.id, Logprob: float64(c.logit) - lse}
		}
	}
	return lp
}

// penalizeGenerated applies OpenAI's presence and frequency penalties: the logit of
// every token generated c > 0 times so far drops by
// c × FrequencyPenalty + PresencePenalty. Negative values favour repeats.
// Prompt tokens do not count (the repetition penalty covers them).
func (s *sampler) penalizeGenerated(logits []float32) {
	pp, fp := s.cfg.PresencePenalty, s.cfg.FrequencyPenalty
	if pp == 0 && fp == 0 || pp != pp || fp != fp {
		return
	}
	for id, c := range s.counts {
		if id < 0 || id >= len(logits) || c <= 0 {
			continue
		}
		logits[id] = clampFinite(logits[id] - float32(c)*fp - pp)
	}
}

// accept records a generated token for the presence and frequency
// penalties.
func (s *sampler) accept(id int) {
	if s.cfg.PresencePenalty == 0 && s.cfg.FrequencyPenalty == 0 {
		return
	}
	if s.counts == nil {
		s.counts = make(map[int]int)
	}
	s.counts[id]++
}
