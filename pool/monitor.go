package pool

import (
	"context"
	"sync"
	"time"

	"rbee/api"
)

// failuresToRemove is how many health checks in a row a worker may fail
// before the hive removes it (docs/architecture.md).
const failuresToRemove = 3

// monitor is the hive's one long-running loop, owned by Run: every health
// interval it checks each worker's health (3 failures in a row → removed and
// killed), and a few times per idle timeout it stops workers that have been
// idle for longer than that. It returns when ctx ends; the stops it started
// are tracked by h.wg.
func (h *Hive) monitor(ctx context.Context) {
	health := time.NewTicker(h.cfg.HealthInterval)
	defer health.Stop()
	idle := time.NewTicker(idleCheckPeriod(h.cfg.IdleTimeout))
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-health.C:
			h.checkHealth(ctx)
		case <-idle.C:
			h.checkIdle(ctx)
		}
	}
}

// idleCheckPeriod checks a few times per idle timeout, between 50 ms and 30 s.
func idleCheckPeriod(timeout time.Duration) time.Duration {
	return min(max(timeout/4, 50*time.Millisecond), 30*time.Second)
}

// pingTimeout bounds one health check of the monitor.
func (h *Hive) pingTimeout() time.Duration {
	return min(max(h.cfg.HealthInterval, 500*time.Millisecond), 5*time.Second)
}

// forEachWorker runs f for every registered worker in parallel and waits.
func (h *Hive) forEachWorker(f func(w *Worker)) {
	var wg sync.WaitGroup
	for _, w := range h.reg.list() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(w)
		}()
	}
	wg.Wait()
}

// checkHealth pings every worker once.
func (h *Hive) checkHealth(ctx context.Context) {
	h.forEachWorker(func(w *Worker) {
		// A worker still starting is the spawn's to judge (it waits for the first answer).
		if w.stopping.Load() || !w.answered.Load() {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, h.pingTimeout())
		_, err := w.Ping(pctx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return
		}
		n := w.failed()
		w.log.Warn("worker failed its health check", "failures", n, "error", err)
		if n < failuresToRemove {
			return
		}
		if !h.reg.remove(w) {
			return
		}
		w.log.Error("worker removed after failing its health checks", "failures", n, "pid", w.Pid())
		h.background(func() { _ = w.Kill(context.Background()) })
	})
}

// checkIdle stops the workers that are idle, with no busy slot, and whose
// last activity is older than the idle timeout. The decision is made on a
// fresh health answer, so a worker that just became busy is kept.
func (h *Hive) checkIdle(ctx context.Context) {
	h.forEachWorker(func(w *Worker) {
		if w.stopping.Load() || !w.answered.Load() {
			return
		}
		switch w.State() {
		case api.StateLoading, api.StateStopping:
			return
		}
		pctx, cancel := context.WithTimeout(ctx, h.pingTimeout())
		hh, err := w.Ping(pctx)
		cancel()
		if err != nil || hh.State != api.StateIdle || hh.SlotsBusy > 0 || hh.LastActivity.IsZero() {
			return
		}
		idleFor := time.Since(hh.LastActivity)
		if idleFor < h.cfg.IdleTimeout {
			return
		}
		// Not listed any more from here on: the queen cannot pick it while it stops.
		if !h.reg.remove(w) {
			return
		}
		w.log.Info("worker idle for too long; shutting it down", "idle_for", idleFor.Round(time.Millisecond), "idle_timeout", h.cfg.IdleTimeout)
		h.background(func() { _ = w.Close(context.Background()) })
	})
}

// background runs f in a goroutine the hive waits for when it closes; once
// the hive has closed, f runs before background returns.
func (h *Hive) background(f func()) {
	if !h.track() {
		f()
		return
	}
	go func() {
		defer h.wg.Done()
		f()
	}()
}

// track counts one more goroutine for Close to wait for; it reports false
// once Close has started waiting.
func (h *Hive) track() bool {
	h.bgMu.Lock()
	defer h.bgMu.Unlock()
	if h.bgClosed {
		return false
	}
	h.wg.Add(1)
	return true
}
