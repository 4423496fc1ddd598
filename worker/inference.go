package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
	"rbee/worker/engine"
)

// Why a generation's context ended (context.Cause); the end of the request's
// own context means its client went away.
var (
	errCancelRequested = errors.New("the client cancelled the generation")
	errWorkerStopping  = errors.New("the worker is shutting down")
)

// slot is one inference slot: an engine session (its KV cache outlives the
// request, so a later prompt with the same prefix skips re-evaluating it).
type slot struct {
	id   int
	sess *engine.Session
	busy bool
}

// unavailableLocked says why the worker cannot take an inference now, or nil.
// s.mu is held.
func (s *Server) unavailableLocked() *api.Error {
	switch s.phase {
	case phaseLoading:
		return api.Errorf(api.CodeAllSlotsBusy, "the model is still loading").With("state", api.StateLoading).
			WithHint("follow GET /v1/loading/progress and retry once the model is ready")
	case phaseStopping:
		return api.Errorf(api.CodeShuttingDown, "the worker is shutting down")
	case phaseFailed:
		return api.Errorf(api.CodeInferenceFailed, "the model failed to load").With("state", api.StateFailed)
	}
	return nil
}

// acquire takes a free slot for the request, preferring the one whose cache
// shares the longest prefix with the prompt, registers the job under the
// request id and submits it to the scheduler loop.
func (s *Server) acquire(j *job) *api.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.unavailableLocked(); e != nil {
		return e
	}
	if _, dup := s.active[j.id]; dup {
		return api.Errorf(api.CodeInvalidRequest, "request id %s is already running on this worker", j.id).
			With("field", httpx.RequestIDHeader)
	}
	var best *slot
	bestLen, busy := -1, 0
	for _, sl := range s.slots {
		if sl.busy {
			busy++
			continue
		}
		if n := commonPrefix(sl.sess.Tokens(), j.req.PromptTokens); n > bestLen {
			best, bestLen = sl, n
		}
	}
	if best == nil {
		return api.Errorf(api.CodeAllSlotsBusy, "all %d inference slots of worker %s are busy", len(s.slots), s.cfg.WorkerID).
			With("slots_total", len(s.slots)).With("slots_busy", busy)
	}
	best.busy = true
	j.sl = best
	s.active[j.id] = j
	s.pending = append(s.pending, j)
	s.gens.Add(1)
	s.wakeLoop()
	return nil
}

func commonPrefix(a, b []int) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// handleInference serves POST /v1/inference: an SSE stream of narration,
// tokens and done (or one JSON result with "stream": false).
func (s *Server) handleInference(w http.ResponseWriter, r *http.Request) {
	var req api.InferenceRequest
	if e := httpx.DecodeJSON(w, r, &req); e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	s.mu.Lock()
	e := s.unavailableLocked()
	m := s.model
	s.mu.Unlock()
	if e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	smp, e := req.Validate(m.ContextSize())
	if e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	prompt, stop, tools, e := promptTokens(m, &req, smp.Stop)
	if e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	if len(prompt) >= m.ContextSize() {
		httpx.WriteError(w, r, api.InvalidField(inputField(&req), "the prompt has %d tokens; the context holds %d", len(prompt), m.ContextSize()))
		return
	}

	con, e := s.formats.constraint(m, smp.Format)
	if e == nil && tools != nil && len(tools.callable) > 0 {
		// A required or named call: the call's grammar replaces any format.
		con, e = s.formats.toolConstraint(m, tools.callable, tools.argKey)
	}
	if e != nil {
		httpx.WriteError(w, r, e)
		return
	}

	requestID := httpx.RequestID(r)
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	seed := rand.Uint64()
	if smp.Seed != nil {
		seed = *smp.Seed
	}
	j := &job{id: requestID, ctx: ctx, cancel: cancel, start: time.Now(), paced: s.cfg.tokenHook != nil && !s.cfg.slowClient,
		done: make(chan struct{}), box: mailbox{notify: make(chan struct{}, 1)},
		req: engine.Request{PromptTokens: prompt, MaxTokens: smp.MaxTokens, Stop: stop, Constraint: con, Sampling: engine.Sampling{
			Temperature: float32(smp.Temperature), TopK: smp.TopK, TopP: float32(smp.TopP), MinP: float32(smp.MinP),
			RepeatPenalty: float32(smp.RepeatPenalty), Seed: seed,
			PresencePenalty: float32(smp.PresencePenalty), FrequencyPenalty: float32(smp.FrequencyPenalty),
		}, Logprobs: smp.Logprobs, TopLogprobs: smp.TopLogprobs}}
	if e := s.acquire(j); e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	// However the handler ends, the job ends: the loop sees the context's
	// end at its next step boundary.
	defer func() {
		cancel(errClientGone)
		<-j.done
	}()

	log := s.log.With("request_id", requestID, "slot", j.sl.id)
	log.Info("inference started", "prompt_tokens", len(prompt), "max_tokens", smp.MaxTokens)

	run := &inference{s: s, j: j, tok: m.Tokenizer(), tools: tools}
	if req.Stream != nil && !*req.Stream {
		run.json(ctx, w, r)
	} else {
		run.stream(ctx, w, r)
	}
	log.Info("inference ended", "stop_reason", run.done.StopReason, "tokens", run.done.TotalTokens,
		"duration_ms", run.done.DurationMs, "error", run.err)
}

// inference is one request's handler: it passes what the scheduler loop
// posts to the job's mailbox on to the client.
type inference struct {
	s     *Server
	j     *job
	tok   *engine.Tokenizer
	tools *toolReply // parses tool calls out of the reply; nil without tools

	done api.Done
	err  error
}

// generate waits for the job's tokens, calling emit for every one (its
// piece of text, and its log-probabilities when asked), until the job ends. The loop has freed the slot by then, so that a
// client that reads the done event finds the worker idle. An emit error (the
// client went away) cancels the generation; the rest of its text is dropped.
func (in *inference) generate(ctx context.Context, emit func(t engine.Token) error) (engine.Result, error) {
	j := in.j
	var (
		buf     []engine.Token
		end     *jobEnd
		emitErr error
		emitted int
	)
	for end == nil {
		<-j.box.notify
		buf, end = j.box.take(buf)
		for _, t := range buf {
			if emitErr == nil {
				if emitErr = emit(t); emitErr != nil {
					j.cancel(errClientGone)
				} else if h := in.s.cfg.tokenHook; h != nil {
					h(ctx, j.id, emitted)
				}
				emitted++
			}
			if j.box.unacked.Add(-1) == 0 && j.paced {
				in.s.wakeLoop()
			}
		}
	}
	res, err := end.res, end.err
	if emitErr != nil && err == nil {
		err = emitErr
	}
	reason := res.StopReason
	if err != nil && ctx.Err() != nil {
		reason = engine.StopCancelled
	}
	tps := res.DecodeTokensPerSecond()
	if tps == 0 && res.Tokens > 0 && end.elapsed > 0 {
		tps = float64(res.Tokens) / end.elapsed.Seconds()
	}
	in.done = api.Done{Done: true, TotalTokens: res.Tokens, DurationMs: end.elapsed.Milliseconds(), StopReason: api.StopReason(reason),
		PromptTokens: res.PromptTokens, TokensPerSecond: tps, FirstTokenMs: end.firstToken.Milliseconds(),
		RequestID: j.id, WorkerID: in.s.cfg.WorkerID}
	in.err = err
	return res, err
}

// failed turns a generation error into the error to report, or nil when the
// generation ended well. A generation its own client cancelled (DELETE
// /v1/inference/{id}, or the connection closed) ends well, with stop reason
// cancelled; one cut short because the worker is stopping does not: its
// client is told SHUTTING_DOWN, so that it does not take the truncated text
// for a finished answer.
func (in *inference) failed(ctx context.Context, err error) *api.Error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		if errors.Is(context.Cause(ctx), errWorkerStopping) {
			return in.stoppedError()
		}
		return nil
	}
	e := api.Errorf(api.CodeInferenceFailed, "inference failed: %v", err)
	switch {
	case errors.Is(err, engine.ErrContextFull):
		e = e.WithHint("use a shorter prompt or fewer max_tokens")
	case errors.Is(err, engine.ErrConstraint):
		e = e.WithHint("the model's vocabulary cannot continue the requested format here; simplify the schema")
	case errors.Is(err, engine.ErrNonFinite):
		// Not the client's fault, and likely to recur with this model: tell
		// whoever reads the worker's log too.
		in.s.log.Error("the model produced non-finite logits; its weights may be damaged",
			"request_id", in.j.id, "slot", in.j.sl.id, "model", in.s.cfg.ModelPath, "error", err)
		e = api.Errorf(api.CodeInferenceFailed, "the model produced non-finite values (NaN/Inf); its weights may be damaged").
			With("tokens_generated", in.done.TotalTokens).
			WithHint("check the model file: download it again or use another copy or quantization")
	}
	e.RequestID = in.j.id
	return e
}

// stoppedError is the SHUTTING_DOWN error of a generation that the
// worker's shutdown cut short.
func (in *inference) stoppedError() *api.Error {
	id := in.s.cfg.WorkerID
	e := api.Errorf(api.CodeShuttingDown, "worker %s is shutting down: the generation stopped after %d of at most %d tokens",
		id, in.done.TotalTokens, in.j.req.MaxTokens).
		With("worker_id", id).With("tokens_generated", in.done.TotalTokens).With("max_tokens", in.j.req.MaxTokens).
		WithHint("the worker was told to stop (by its hive, an administrator or a signal); run the request again")
	e.RequestID = in.j.id
	return e
}

func (in *inference) stream(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	sw := sse.NewWriter(w)
	s := in.s
	human := fmt.Sprintf("Generating up to %d tokens from a %d-token prompt on slot %d of worker %s",
		in.j.req.MaxTokens, len(in.j.req.PromptTokens), in.j.sl.id, s.cfg.WorkerID)
	start := api.Event{Kind: api.KindNarration, Narration: &api.Narration{Actor: api.ActorWorker, Action: "inference_start",
		Human: human, WorkerID: s.cfg.WorkerID, RequestID: in.j.id}}
	if err := sw.Send(start); err != nil {
		return // the client went away: the deferred cancel ends the job
	}
	index := 0
	_, err := in.generate(ctx, func(t engine.Token) error {
		ev := apiToken(in.tok, t, index)
		if in.tools != nil {
			ev.Token = in.tools.feed(ev.Token)
		}
		if err := sw.Send(api.Event{Kind: api.KindToken, Token: &ev}); err != nil {
			return fmt.Errorf("client gone: %w", err)
		}
		index++
		return nil
	})
	if r.Context().Err() != nil {
		return // the client went away: nobody to tell
	}
	if e := in.failed(ctx, err); e != nil {
		in.err = e
		_ = sw.Error(e)
		return
	}
	if in.tools != nil {
		var rest string
		rest, in.done.ToolCalls = in.tools.finish()
		if rest != "" {
			if sw.Send(api.Event{Kind: api.KindToken, Token: &api.Token{Token: rest, Index: index}}) != nil {
				return
			}
		}
	}
	d := in.done
	if sw.Send(api.Event{Kind: api.KindDone, Done: &d}) == nil {
		_ = sw.Close()
	}
}

func (in *inference) json(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	res, err := in.generate(ctx, func(engine.Token) error { return nil })
	if r.Context().Err() != nil {
		return
	}
	if e := in.failed(ctx, err); e != nil {
		in.err = e
		httpx.WriteError(w, r, e)
		return
	}
	text := res.Text
	if in.tools != nil {
		text = in.tools.feed(text)
		rest, calls := in.tools.finish()
		text += rest
		in.done.ToolCalls = calls
	}
	httpx.WriteJSON(w, http.StatusOK, api.InferenceResult{Text: text, Done: in.done})
}

// handleCancel serves DELETE /v1/inference/{id}: it cancels the generation
// (if any), waits briefly for its slot to be free, and answers 204.
func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	g := s.active[id]
	s.mu.Unlock()
	if g != nil {
		s.log.Info("cancelling inference", "request_id", id)
		g.cancel(errCancelRequested)
		t := time.NewTimer(s.cfg.ShutdownGrace)
		select {
		case <-g.done:
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
	}
	w.WriteHeader(http.StatusNoContent)
}

// apiToken is the token event of an engine token: its released text and,
// when the request asked for them, its log-probability, its own text and
// the most likely tokens at its position, named by their text.
func apiToken(tok *engine.Tokenizer, t engine.Token, index int) api.Token {
	ev := api.Token{Token: t.Text, Index: index}
	if lp := t.Logprobs; lp != nil {
		v := lp.Logprob
		ev.Logprob = &v
		ev.Piece, ev.PieceBytes = pieceText(tok.Piece(t.ID))
		if len(lp.Top) > 0 {
			ev.TopLogprobs = make([]api.TokenLogprob, len(lp.Top))
			for i, tp := range lp.Top {
				text, raw := pieceText(tok.Piece(tp.ID))
				ev.TopLogprobs[i] = api.TokenLogprob{Token: text, ID: tp.ID, Logprob: tp.Logprob, Bytes: raw}
			}
		}
	}
	return ev
}

// pieceText returns a token's piece as text, and its exact bytes too when
// they are not valid UTF-8 (JSON would replace them).
func pieceText(b []byte) (string, []byte) {
	if utf8.Valid(b) {
		return string(b), nil
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), b
}
