package worker

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"

	"rbee/api"
	"rbee/internal/httpx"
)

// callback tells the hive the model is loaded: POST api.ReadyCallback to
// CallbackURL, authenticated with the worker's own token, retried with
// exponential backoff until it succeeds or ReadyTimeout passes. The hive may
// not know the worker yet when the first attempt arrives (a tiny model loads
// before the spawn call returns), so every failure is retried.
func (s *Server) callback(ctx context.Context) error {
	body := api.ReadyCallback{WorkerID: s.cfg.WorkerID, URL: s.URL(), ModelRef: s.cfg.ModelRef,
		Backend: s.cfg.Backend, Device: s.cfg.Device}
	client := &httpx.Client{BaseURL: s.cfg.CallbackURL, Token: s.cfg.APIKey, HTTP: s.cfg.HTTPClient}
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(2*time.Second),
		backoff.WithMaxElapsedTime(s.cfg.ReadyTimeout),
	)
	attempts := 0
	op := func() error {
		attempts++
		return client.Do(ctx, http.MethodPost, "", body, nil)
	}
	notify := func(err error, wait time.Duration) {
		s.log.Warn("ready callback failed; retrying", "url", s.cfg.CallbackURL, "attempt", attempts, "error", err, "retry_in", wait)
	}
	if err := backoff.RetryNotify(op, backoff.WithContext(b, ctx), notify); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.log.Error("ready callback failed; giving up", "url", s.cfg.CallbackURL, "attempts", attempts, "error", err)
		return fmt.Errorf("ready callback to %s failed after %d attempts in %s: %w", s.cfg.CallbackURL, attempts, s.cfg.ReadyTimeout, err)
	}
	s.log.Info("ready callback sent", "url", s.cfg.CallbackURL, "attempts", attempts)
	return nil
}
