package engine

import (
	"sync"
	"sync/atomic"
)

// pool is a fixed set of goroutines that split the work of one forward pass.
// Starting goroutines per matrix multiply would cost more than the multiply for
// a single token, so the workers live as long as the model and wait on their
// own channel between jobs. The goroutine that calls run takes part as worker 0.
//
// A pool runs one job at a time; the model serializes forward passes.
type pool struct {
	n     int
	wake  []chan *job
	wg    sync.WaitGroup // the worker goroutines, for close
	close sync.Once
}

// job is one parallel loop: tasks 0…n-1 handed out through an atomic counter
// so that a worker slowed by the rest of the machine takes fewer of them.
type job struct {
	n    int64
	next atomic.Int64
	fn   func(worker, task int)
	done sync.WaitGroup
}

func newPool(threads int) *pool {
	if threads < 1 {
		threads = 1
	}
	p := &pool{n: threads, wake: make([]chan *job, threads)}
	for w := 1; w < threads; w++ {
		ch := make(chan *job)
		p.wake[w] = ch
		p.wg.Add(1)
		go func(w int) {
			defer p.wg.Done()
			for j := range ch {
				j.work(w)
				j.done.Done()
			}
		}(w)
	}
	return p
}

func (j *job) work(worker int) {
	for {
		t := j.next.Add(1) - 1
		if t >= j.n {
			return
		}
		j.fn(worker, int(t))
	}
}

// run calls fn(worker, task) for every task in [0, tasks), spread over the
// pool, and returns when all have finished. worker is in [0, p.n) and no two
// concurrent calls share one, so fn may use per-worker scratch space.
func (p *pool) run(tasks int, fn func(worker, task int)) {
	if tasks <= 0 {
		return
	}
	j := &job{n: int64(tasks), fn: fn}
	helpers := min(p.n, tasks) - 1
	j.done.Add(helpers)
	for w := 1; w <= helpers; w++ {
		p.wake[w] <- j
	}
	j.work(0)
	j.done.Wait()
}

// stop ends the worker goroutines and waits for them. It must not be called
// while run is in progress.
func (p *pool) stop() {
	p.close.Do(func() {
		for _, ch := range p.wake[1:] {
			close(ch)
		}
		p.wg.Wait()
	})
}
