package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"rbee/worker/engine"
)

// The scheduler is one goroutine, owned by Run, that drives every running
// generation of the worker. A request's handler takes a slot (acquire) and
// submits a job; the loop starts the job's generation on the slot's session
// at its next turn, then calls the model's Step over all running generations
// at once: each generating one advances by a token, each one still reading
// its prompt by a chunk of it (at most Config.PromptChunk prompt tokens per
// step in all). A request that arrives while others generate joins them at
// the next step.
//
// Tokens go from the loop to the request's handler through the job's
// mailbox, which never blocks the loop: a client that reads slowly has its
// text queued (at most max_tokens pieces) while the others go on.
// Cancellation (DELETE, a closed connection, shutdown) ends the request's
// context; the loop notices at the next step boundary, cancels the
// generation, frees the slot and posts the job's end.

// job is one request's generation, from its submission to its end.
type job struct {
	id     string
	sl     *slot
	req    engine.Request
	ctx    context.Context         // the request's context: its end cancels the generation
	cancel context.CancelCauseFunc // with errCancelRequested, errClientGone or errWorkerStopping
	start  time.Time
	// paced jobs (only with a test's tokenHook) are not stepped while their
	// handler has tokens it has not finished with, so that a hook that
	// blocks holds its generation as it did when handlers ran the engine.
	paced bool

	done chan struct{} // closed once the slot is free
	box  mailbox

	// Owned by the loop.
	gen        *engine.Generation
	failed     error // why the loop ended the generation, when the engine did not say
	firstToken time.Duration
	stopWake   func() bool // stops the wake-up on the end of ctx
}

// jobEnd is how a job ended: the engine's result, and the error that ended
// it (a failure, or the cause of its context's end), if any.
type jobEnd struct {
	res        engine.Result
	err        error
	firstToken time.Duration // from the start of the request to its first token; 0 if none
	elapsed    time.Duration // from the start of the request to its end
}

// mailbox carries a job's tokens and its end from the loop to the handler
// without ever blocking the loop.
type mailbox struct {
	mu      sync.Mutex
	tokens  []engine.Token
	end     *jobEnd
	notify  chan struct{} // capacity 1: something was posted
	unacked atomic.Int64  // tokens posted and not yet handled
}

func (b *mailbox) signal() {
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

func (b *mailbox) put(t engine.Token) {
	b.unacked.Add(1)
	b.mu.Lock()
	b.tokens = append(b.tokens, t)
	b.mu.Unlock()
	b.signal()
}

func (b *mailbox) close(e jobEnd) {
	b.mu.Lock()
	b.end = &e
	b.mu.Unlock()
	b.signal()
}

// take returns the tokens posted since the last take and, once the job has
// ended and every token was taken, its end.
func (b *mailbox) take(into []engine.Token) ([]engine.Token, *jobEnd) {
	b.mu.Lock()
	defer b.mu.Unlock()
	into = append(into[:0], b.tokens...)
	clear(b.tokens)
	b.tokens = b.tokens[:0]
	return into, b.end
}

// schedStats are the scheduler's figures for /v1/health.
type schedStats struct {
	steps     atomic.Int64 // forward passes run
	lastBatch atomic.Int64 // generations in the last one
	batches   batchHistogram
}

// wakeLoop tells the loop that something changed: a job was submitted, a
// request's context ended or a paced handler caught up.
func (s *Server) wakeLoop() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// schedule is the scheduler loop. It returns when ctx ends, after ending
// every job it still holds (and any submitted one) as stopped by shutdown.
func (s *Server) schedule(ctx context.Context, m *engine.Model) {
	var (
		running []*job
		gens    []*engine.Generation
		byGen   = map[*engine.Generation]*job{}
	)
	defer func() {
		s.mu.Lock()
		left := append(running, s.pending...)
		s.pending = nil
		s.mu.Unlock()
		for _, j := range left {
			j.cancel(errWorkerStopping)
			if j.gen != nil && !j.gen.Done() {
				j.gen.Cancel()
			}
			s.endJob(j, errWorkerStopping)
		}
	}()
	emit := func(g *engine.Generation, t engine.Token) {
		j := byGen[g]
		if j == nil {
			return
		}
		if j.firstToken == 0 && t.ID >= 0 {
			j.firstToken = max(time.Since(j.start), time.Microsecond)
		}
		if t.Text != "" {
			j.box.put(t)
		}
	}
	for {
		// Admit the jobs submitted since the last turn.
		s.mu.Lock()
		admitted := s.pending
		s.pending = nil
		s.mu.Unlock()
		for _, j := range admitted {
			j.stopWake = context.AfterFunc(j.ctx, s.wakeLoop)
			g, err := j.sl.sess.Start(j.req)
			if err != nil {
				s.endJob(j, err)
				continue
			}
			j.gen = g
			byGen[g] = j
			running = append(running, j)
		}

		// Cancel the generations whose requests ended; end the finished
		// ones; step the rest.
		gens = gens[:0]
		kept := running[:0]
		for _, j := range running {
			var cause error
			if j.ctx.Err() != nil && !j.gen.Done() {
				j.gen.Cancel()
				cause = context.Cause(j.ctx)
			}
			held := j.paced && j.box.unacked.Load() > 0
			if j.gen.Done() && (!held || j.ctx.Err() != nil) {
				delete(byGen, j.gen)
				err := j.gen.Err()
				if err == nil {
					err = cause
				}
				if err == nil {
					err = j.failed
				}
				s.endJob(j, err)
				continue
			}
			kept = append(kept, j)
			if !held && !j.gen.Done() {
				gens = append(gens, j.gen)
			}
		}
		clear(running[len(kept):])
		running = kept

		if len(gens) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			}
			continue
		}
		err := m.Step(ctx, gens, s.cfg.PromptChunk, emit)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// The pass could not run (the model was closed): the engine
			// failed its generations; any it left unfinished end here.
			s.log.Error("a forward pass failed", "generations", len(gens), "error", err)
			for _, g := range gens {
				if !g.Done() {
					byGen[g].failed = fmt.Errorf("the forward pass failed: %w", err)
					g.Cancel()
				}
			}
			continue
		}
		s.stats.steps.Add(1)
		s.stats.lastBatch.Store(int64(len(gens)))
		s.stats.batches.observe(len(gens))
		if h := s.cfg.stepHook; h != nil {
			h(ctx, len(gens))
		}
	}
}

// endJob frees the job's slot, then posts its end to the handler (so that a
// client that reads the done event finds the slot free).
func (s *Server) endJob(j *job, err error) {
	if j.stopWake != nil {
		j.stopWake()
	}
	var res engine.Result
	if j.gen != nil {
		res = j.gen.Result()
	}
	end := jobEnd{res: res, err: err, firstToken: j.firstToken, elapsed: time.Since(j.start)}
	s.mu.Lock()
	j.sl.busy = false
	delete(s.active, j.id)
	s.lastActivity = time.Now()
	s.mu.Unlock()
	close(j.done)
	s.gens.Done()
	j.box.close(end)
}

// errClientGone ends the context of a request whose client stopped reading.
var errClientGone = errors.New("the client went away")
