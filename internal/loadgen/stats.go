package loadgen

import (
	"math"
	"slices"
	"time"
)

// Percentile is the p-th percentile (0 ≤ p ≤ 100) of sorted, interpolating
// linearly between the two nearest ranks (rank p/100·(n−1), counted from 0):
// the 50th percentile of 1, 2, 3, 4 is 2.5. It is NaN for no values.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 || math.IsNaN(p) {
		return math.NaN()
	}
	p = min(max(p, 0), 100)
	rank := p / 100 * float64(n-1)
	lo := int(math.Floor(rank))
	hi := min(lo+1, n-1)
	return sorted[lo] + (rank-float64(lo))*(sorted[hi]-sorted[lo])
}

// Stats summarise a set of durations, in milliseconds.
type Stats struct {
	N    int     `json:"n"` // how many values
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
}

// summarise is the Stats of ds, or nil when there are none.
func summarise(ds []time.Duration) *Stats {
	if len(ds) == 0 {
		return nil
	}
	ms := make([]float64, len(ds))
	var sum float64
	for i, d := range ds {
		ms[i] = float64(d) / float64(time.Millisecond)
		sum += ms[i]
	}
	slices.Sort(ms)
	return &Stats{N: len(ms), Mean: sum / float64(len(ms)),
		P50: Percentile(ms, 50), P90: Percentile(ms, 90), P99: Percentile(ms, 99)}
}
