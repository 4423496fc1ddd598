package engine

import (
	"sync"
	"sync/atomic"
	"time"
)

// pool is a fixed set of goroutines that split the work of one forward pass.
// Starting goroutines per matrix multiply would cost more than the multiply for
// a single token, so the workers live as long as the model. The goroutine that
// calls run takes part as worker 0.
//
// A decode step runs a few hundred short jobs back to back, and waking a
// parked goroutine costs tens of microseconds, so between jobs a worker first
// spins for a while watching for the next one, and only then parks on its
// channel. The caller of run likewise spins briefly before it blocks waiting
// for the last task to finish.
//
// A job is done when its tasks are, not when every helper has seen it: a
// helper that the operating system has not scheduled (the machine is busy
// with other work) finds the tasks taken when it comes back, and the caller
// does not wait for it. On a machine where our threads share the cores with
// other programs this keeps a step from costing a context switch per job.
//
// A pool runs one job at a time; the model serializes forward passes.
type pool struct {
	n       int
	cur     atomic.Pointer[job] // the latest job; a new pointer means new work
	workers []poolWorker
	wg      sync.WaitGroup // the worker goroutines, for close
	closed  atomic.Bool
	close   sync.Once
	// The caller of run parks here (mainParked set) once it has spun for
	// waitSpin and tasks are still running; the helper that finishes the
	// last task wakes it.
	mainParked atomic.Bool
	mainWake   chan struct{}
}

// poolWorker is a helper's parking place: parked is set while it sleeps (or
// is about to) on wake, which holds at most one pending wake-up.
type poolWorker struct {
	parked atomic.Bool
	wake   chan struct{}
}

// Spin budgets: long enough to bridge the gaps between the jobs of a forward
// pass (and a helper's lateness when the machine is busy), short enough that
// idle workers soon stop using the CPU. In a decode step of 8 sessions the
// last task of a matrix multiply takes tens of microseconds; the caller of
// run waits for it, and once parked it comes back late (a futex wake-up and
// a context switch) while the next job waits on it. At 15 µs for the caller
// and 30 µs for the helpers, threads parked about 1,700 times a second and
// the two cores were idle 5–6 % of such a step; at 60 µs they park half as
// often and are idle under 3 % (BenchmarkStepDecode/sessions=8, per-thread
// schedstat over 10 s).
const (
	workerSpin = 60 * time.Microsecond
	waitSpin   = 60 * time.Microsecond
)

// spin calls done until it reports true or the budget has passed, and
// returns done's last answer.
func spin(budget time.Duration, done func() bool) bool {
	var start time.Time
	for i := 0; ; i++ {
		if done() {
			return true
		}
		if i&63 == 63 {
			if start.IsZero() {
				start = time.Now()
			} else if time.Since(start) > budget {
				return false
			}
		}
	}
}

// job is one parallel loop: tasks 0…n-1 handed out through an atomic counter
// so that a worker slowed by the rest of the machine takes fewer of them. A
// task is claimed by taking its number from next; a worker adds the tasks it
// ran to finished when it finds none left (one shared write per worker and
// job rather than per task), and the job is over when finished reaches n.
// The two counters sit on separate cache lines: the workers take tasks
// while the caller, done with its share, watches finished.
type job struct {
	n        int64
	fn       func(worker, task int)
	next     atomic.Int64
	_        [56]byte
	finished atomic.Int64
}

func newPool(threads int) *pool {
	if threads < 1 {
		threads = 1
	}
	p := &pool{n: threads, workers: make([]poolWorker, threads), mainWake: make(chan struct{}, 1)}
	for w := 1; w < threads; w++ {
		p.workers[w].wake = make(chan struct{}, 1)
		p.wg.Add(1)
		go p.loop(w)
	}
	return p
}

// loop is helper w's life: wait for a job newer than the last one it saw,
// take what tasks are left of it, repeat until the pool stops.
func (p *pool) loop(w int) {
	defer p.wg.Done()
	var seen *job
	for {
		j := p.await(w, seen)
		if j == nil {
			return
		}
		seen = j
		p.work(j, w)
	}
}

// await returns the first job other than seen, or nil once the pool stops.
func (p *pool) await(w int, seen *job) *job {
	var j *job
	if spin(workerSpin, func() bool {
		j = p.cur.Load()
		return j != seen || p.closed.Load()
	}) {
		if j == seen {
			return nil // closed
		}
		return j
	}
	pw := &p.workers[w]
	for {
		pw.parked.Store(true)
		// Re-check after announcing the park: run publishes the job before it
		// looks at parked, so one of the two sides sees the other.
		if j := p.cur.Load(); j != seen || p.closed.Load() {
			if !pw.parked.CompareAndSwap(true, false) {
				<-pw.wake // run took the flag and is sending the wake-up
			}
			if p.closed.Load() {
				return nil
			}
			return j
		}
		<-pw.wake
		if j := p.cur.Load(); j != seen {
			return j
		}
		if p.closed.Load() {
			return nil
		}
	}
}

// work runs tasks of j on worker w until none is left, and wakes the caller
// of run if w's tasks were the last to finish while it was parked.
func (p *pool) work(j *job, w int) {
	var ran int64
	for {
		t := j.next.Add(1) - 1
		if t >= j.n {
			break
		}
		j.fn(w, int(t))
		ran++
	}
	if ran == 0 {
		return
	}
	if j.finished.Add(ran) == j.n {
		if p.mainParked.Load() && p.mainParked.CompareAndSwap(true, false) {
			p.mainWake <- struct{}{}
		}
	}
}

// run calls fn(worker, task) for every task in [0, tasks), spread over the
// pool, and returns when all have finished. worker is in [0, p.n) and no two
// concurrent calls share one, so fn may use per-worker scratch space.
func (p *pool) run(tasks int, fn func(worker, task int)) {
	if tasks <= 0 {
		return
	}
	helpers := min(p.n, tasks) - 1
	if helpers == 0 {
		for t := 0; t < tasks; t++ {
			fn(0, t)
		}
		return
	}
	j := &job{n: int64(tasks), fn: fn}
	p.cur.Store(j)
	for w := 1; w <= helpers; w++ {
		p.unpark(w)
	}
	p.work(j, 0)
	if spin(waitSpin, func() bool { return j.finished.Load() == j.n }) {
		return
	}
	for {
		p.mainParked.Store(true)
		// Re-check after announcing the park: the last task's worker counts
		// it before it looks at mainParked, so one side sees the other.
		if j.finished.Load() == j.n {
			if !p.mainParked.CompareAndSwap(true, false) {
				<-p.mainWake // a worker took the flag and is sending
			}
			return
		}
		<-p.mainWake
		if j.finished.Load() == j.n {
			return
		}
	}
}

// unpark wakes helper w if it is parked (or about to park).
func (p *pool) unpark(w int) {
	pw := &p.workers[w]
	if pw.parked.Load() && pw.parked.CompareAndSwap(true, false) {
		pw.wake <- struct{}{}
	}
}

// stop ends the worker goroutines and waits for them. It must not be called
// while run is in progress.
func (p *pool) stop() {
	p.close.Do(func() {
		p.closed.Store(true)
		for w := 1; w < p.n; w++ {
			p.unpark(w)
		}
		p.wg.Wait()
	})
}
