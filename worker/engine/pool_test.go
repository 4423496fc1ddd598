package engine

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPoolRunsEveryTaskOnce runs many jobs of varied sizes back to back,
// waiting for the helpers to park between some of them, and checks
// that each task runs exactly once, on a valid worker, with no two concurrent
// calls sharing a worker.
func TestPoolRunsEveryTaskOnce(t *testing.T) {
	for _, threads := range []int{1, 2, 3, 4} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
			p := newPool(threads)
			defer p.stop()
			for round := 0; round < 300; round++ {
				tasks := []int{1, 2, 3, 7, 64}[round%5]
				counts := make([]atomic.Int32, tasks)
				busy := make([]atomic.Int32, threads)
				var bad atomic.Int32
				p.run(tasks, func(w, task int) {
					if w < 0 || w >= threads || busy[w].Add(1) != 1 {
						bad.Add(1)
						return
					}
					counts[task].Add(1)
					busy[w].Add(-1)
				})
				require.Zero(t, bad.Load(), "round %d: bad or shared worker id", round)
				for i := range counts {
					require.Equal(t, int32(1), counts[i].Load(), "round %d task %d", round, i)
				}
				if round%50 == 49 {
					waitParked(t, p)
				}
			}
		})
	}
}

// waitParked waits until every helper of p has parked.
func waitParked(t *testing.T, p *pool) {
	t.Helper()
	require.Eventually(t, func() bool {
		for w := 1; w < p.n; w++ {
			if !p.workers[w].parked.Load() {
				return false
			}
		}
		return true
	}, 10*time.Second, 100*time.Microsecond, "the helpers did not park")
}

// TestPoolUsesHelpers checks that a job with enough tasks is shared: some
// task runs on a worker other than the caller's.
func TestPoolUsesHelpers(t *testing.T) {
	p := newPool(2)
	defer p.stop()
	var others atomic.Int32
	for i := 0; i < 50 && others.Load() == 0; i++ {
		p.run(64, func(w, task int) {
			if w != 0 {
				others.Add(1)
			}
			time.Sleep(10 * time.Microsecond)
		})
	}
	assert.NotZero(t, others.Load())
}

func TestPoolStop(t *testing.T) {
	p := newPool(3)
	p.run(8, func(int, int) {})
	waitParked(t, p)
	done := make(chan struct{})
	go func() { p.stop(); p.stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not return")
	}
	q := newPool(2)
	q.stop() // helpers still spinning
}

// BenchmarkPoolRun measures short jobs like a decode step's (a few hundred
// per token): 16 tasks of about a microsecond each, so that with two threads
// a run ideally takes about 8 µs.
func BenchmarkPoolRun(b *testing.B) {
	p := newPool(2)
	defer p.stop()
	var sink atomic.Int64
	for b.Loop() {
		p.run(16, func(_, task int) { sink.Add(busyWork(task)) })
	}
}

// busyWork takes about a microsecond.
func busyWork(seed int) int64 {
	x := int64(seed) | 1
	for i := 0; i < 1000; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}
