package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"rbee"
	"rbee/api"
)

// cancelWait bounds how long a cancelled rbee infer waits for the queen to
// acknowledge the cancellation.
const cancelWait = 5 * time.Second

// runInfer is rbee infer: one inference through the queen, starting one
// (ephemeral mode) when none answers on this machine.
func runInfer(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "infer")
	qf := addQueenFlags(fs)
	node := fs.String("node", rbee.LocalNode, "the node to run on: local, a registered node, or auto to let the queen choose\n"+
		"(a worker of the model with a free slot, else the node with the shortest queue for it,\n"+
		"else a node holding the model that passes preflight, else local)")
	model := fs.String("model", "", "model reference: file:/abs/path.gguf or hf:ORG/REPO[:QUANT] (required)")
	prompt := fs.String("prompt", "", "text to continue (required; - reads standard input)")
	maxTokens := fs.Int("max-tokens", api.DefaultMaxTokens, "most tokens to generate")
	temp := fs.Float64("temperature", api.DefaultTemperature, "sampling temperature, 0 to 2 (0 = greedy)")
	topP := fs.Float64("top-p", api.DefaultTopP, "nucleus sampling threshold, 0 to 1")
	topK := fs.Int("top-k", api.DefaultTopK, "keep only the K most likely tokens (0 = off)")
	minP := fs.Float64("min-p", api.DefaultMinP, "drop tokens below this fraction of the top probability (0 = off)")
	repeat := fs.Float64("repeat-penalty", 1, "penalty for repeating recent tokens (1 = off)")
	seed := fs.Int64("seed", -1, "random seed (-1 = random)")
	var stops stringList
	fs.Var(&stops, "stop", "stop when this text is generated (repeatable, at most 4)")
	backend := fs.String("backend", string(api.BackendCPU), "backend: cpu, cuda or metal")
	device := fs.Int("device", 0, "device index of the backend")
	asJSON := fs.Bool("json", false, "print every event as one JSON object per line on stdout")
	hivePort := fs.Int("hive-port", 0, "port of the local hive, for a queen this command starts (0 = the queen's default)")
	workerPortStart := fs.Int("worker-port-start", 0, "first local worker port, for a queen this command starts (0 = the queen's default)")
	if err := parseFlags(env, fs, args); err != nil {
		return err
	}
	if *model == "" {
		return usagef("--model is required")
	}
	if *prompt == "" {
		return usagef("--prompt is required")
	}
	if *hivePort < 0 || *hivePort > 65535 || *workerPortStart < 0 || *workerPortStart > 65535 {
		return usagef("--hive-port and --worker-port-start are ports (1 to 65535, or 0)")
	}
	text := *prompt
	if text == "-" {
		b, err := readAllLimited(env.Stdin, api.MaxBodyBytes)
		if err != nil {
			return fmt.Errorf("reading the prompt from standard input: %w", err)
		}
		text = string(b)
	}
	req := rbee.TaskRequest{Node: *node, Model: *model, Prompt: text, Backend: api.Backend(*backend),
		SamplingParams: rbee.SamplingParams{MaxTokens: *maxTokens, Stop: stops}}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["temperature"] {
		req.Temperature = temp
	}
	if set["top-p"] {
		req.TopP = topP
	}
	if set["top-k"] {
		req.TopK = topK
	}
	if set["min-p"] {
		req.MinP = minP
	}
	if set["repeat-penalty"] {
		req.RepeatPenalty = repeat
	}
	if *seed >= 0 {
		s := uint64(*seed)
		req.Seed = &s
	}
	if set["device"] {
		req.Device = device
	}
	if _, verr := req.Validate(); verr != nil {
		return usagef("%s", flagMessage(verr))
	}
	q, err := qf.client(env)
	if err != nil {
		return err
	}

	// Is a queen there? If not, and the address is on this machine, start one.
	probe, cancelProbe := context.WithTimeout(ctx, queenProbeTimeout)
	_, herr := q.Health(probe)
	cancelProbe()
	if herr != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	if herr != nil {
		if !q.isLoopback() {
			return q.explain(herr)
		}
		if !*asJSON {
			fmt.Fprintf(env.Stderr, "[keeper] No queen at %s: starting one (ephemeral mode)\n", q.url)
		}
		eq, err := startQueen(ctx, env, q, *hivePort, *workerPortStart)
		if err != nil {
			return err
		}
		defer func() {
			if !*asJSON {
				fmt.Fprintln(env.Stderr, "[keeper] Stopping the queen it started, with its hive and workers")
			}
			eq.stop()
		}()
	}

	out := &inferPrinter{env: env, json: *asJSON, want: req.MaxTokens}
	err = out.runRetrying(ctx, q, req, busyRetryDelays, rand.Float64)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		out.endLine()
		if out.taskID != "" {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelWait)
			_ = q.CancelTask(cctx, out.taskID)
			cancel()
		}
		return ctx.Err() // reported as "Canceled.", exit 130
	case out.cutShort(err):
		// The answer is incomplete and this command did not ask for that:
		// keep what came, say how far it got, and fail.
		out.endLine()
		out.savePartial()
		return q.explainCut(err)
	}
	out.endLine()
	return q.explain(err)
}

// busyRetryDelays are the waits before each retry of a task the queen's
// queue turned away (it was full, or the task waited too long): 1, 2 and
// 4 s, each jittered by ±20 % so that many keepers turned away at once do
// not come back at once, and never shorter than the queen's Retry-After.
var busyRetryDelays = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}

// busyJitter is the fraction a busy retry's delay varies by, either way.
const busyJitter = 0.2

// busyRetryWait is how long to wait before a busy retry: base jittered by
// r (a number in [0, 1)), and at least retryAfter.
func busyRetryWait(base, retryAfter time.Duration, r float64) time.Duration {
	d := time.Duration(float64(base) * (1 - busyJitter + 2*busyJitter*r))
	return max(d, retryAfter)
}

// retryableBusy returns the ALL_SLOTS_BUSY error of a task the queen's
// queue turned away before it generated anything, or nil. Only such an
// error carries a Retry-After: a busy worker the queen already retried
// (its queue off) is not retried again here.
func (p *inferPrinter) retryableBusy(err error) *rbee.Error {
	var e *rbee.Error
	if p.tokens > 0 || !errors.As(err, &e) || e.Code != api.CodeAllSlotsBusy || e.RetryAfter() <= 0 {
		return nil
	}
	return e
}

// runRetrying runs the task as run does, and runs it again after each of
// delays (see busyRetryWait) while the queen's queue turns it away.
func (p *inferPrinter) runRetrying(ctx context.Context, q *queen, req rbee.TaskRequest, delays []time.Duration, rnd func() float64) error {
	for attempt := 0; ; attempt++ {
		p.retriesLeft = len(delays) - attempt
		err := p.run(ctx, q, req)
		e := p.retryableBusy(err)
		if e == nil || ctx.Err() != nil || attempt == len(delays) {
			return err
		}
		wait := busyRetryWait(delays[attempt], e.RetryAfter(), rnd())
		human := fmt.Sprintf("%s; retrying in %s (retry %d/%d)", strings.TrimSuffix(e.Message, "."), wait.Round(100*time.Millisecond), attempt+1, len(delays))
		if p.json {
			ev := api.NarrationEvent(api.ActorKeeper, "busy_retry", human)
			ev.Narration.RequestID = e.RequestID
			p.printJSON(ev)
		} else {
			p.clearBar()
			p.endLine()
			fmt.Fprintf(p.env.Stderr, "[keeper] %s\n", human)
		}
		p.taskID = ""
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// errCancelledElsewhere ends an rbee infer whose task ended as cancelled
// although this command did not cancel it.
var errCancelledElsewhere = errors.New("the task ended as cancelled, but this command did not cancel it: the answer is incomplete")

// cutShort reports whether err ended a generation before its end without
// this command asking: the worker crashed or its stream broke, the worker
// (or its hive, or the queen) shut down while generating, or the task was
// cancelled by someone else.
func (p *inferPrinter) cutShort(err error) bool {
	switch {
	case errors.Is(err, rbee.ErrWorkerCrashed), errors.Is(err, rbee.ErrStreamClosed), errors.Is(err, errCancelledElsewhere):
		return true
	case errors.Is(err, rbee.ErrShuttingDown):
		return p.generating
	}
	return false
}

// explainCut is explain for a generation cut short: the message names the
// error code, so that the reason is plain in a terminal and in a log.
func (q *queen) explainCut(err error) error {
	var e *rbee.Error
	switch {
	case errors.As(err, &e):
		return withHint(fmt.Errorf("%w (%s)", err, e.Code), e.Hint())
	case errors.Is(err, errCancelledElsewhere):
		return withHint(err, "another client cancelled the task (DELETE /v2/tasks/ID); run the command again for a whole answer")
	}
	return q.explain(err)
}

// flagMessage names the flag behind an INVALID_REQUEST field.
func flagMessage(e *api.Error) string {
	field, _ := e.Details["field"].(string)
	names := map[string]string{"max_tokens": "max-tokens", "top_p": "top-p", "top_k": "top-k", "min_p": "min-p", "repeat_penalty": "repeat-penalty"}
	if n, ok := names[field]; ok {
		field = n
	}
	if field == "" {
		return e.Message
	}
	return "--" + field + ": " + e.Message
}

// inferPrinter shows one inference: tokens on stdout as they come,
// narration and progress on stderr (or every event as JSON on stdout).
type inferPrinter struct {
	env    *Env
	json   bool
	want   int
	taskID string
	text   strings.Builder
	tokens int
	bar    *progress
	open   bool // stdout holds tokens not yet ended by a newline
	// generating is set once the worker started the generation (its
	// narration, or a first token came).
	generating bool
	// retriesLeft is how many busy retries runRetrying has left; an error
	// it will retry is not printed as the end of --json.
	retriesLeft int
}

func (p *inferPrinter) run(ctx context.Context, q *queen, req rbee.TaskRequest) error {
	for ev, err := range q.Infer(ctx, req) {
		if err != nil {
			if p.json && (p.retriesLeft == 0 || p.retryableBusy(err) == nil || ctx.Err() != nil) {
				p.printJSON(rbee.Event{Kind: rbee.KindError, Error: api.AsError(err)})
			}
			return err
		}
		if p.taskID == "" && ev.Kind == rbee.KindNarration {
			p.taskID = ev.Narration.RequestID
		}
		switch ev.Kind {
		case rbee.KindToken:
			p.text.WriteString(ev.Token.Token)
			p.tokens++
			p.generating = true
		case rbee.KindNarration:
			p.generating = p.generating || ev.Narration.Actor == api.ActorWorker
		}
		// A done "cancelled" is this command's only when it cancelled (and
		// then its context has ended and the stream is no longer read).
		unasked := ev.Kind == rbee.KindDone && ev.Done.StopReason == rbee.StopCancelled && ctx.Err() == nil
		switch {
		case p.json:
			p.printJSON(ev)
		case !unasked:
			p.show(ev)
		}
		if unasked {
			return errCancelledElsewhere
		}
	}
	return nil
}

// jsonEvent is the line --json prints per event.
type jsonEvent struct {
	Event rbee.EventKind  `json:"event"`
	Data  json.RawMessage `json:"data"`
}

func (p *inferPrinter) printJSON(ev rbee.Event) {
	data, err := ev.MarshalData()
	if err != nil {
		return
	}
	line, _ := json.Marshal(jsonEvent{Event: ev.Kind, Data: data})
	fmt.Fprintf(p.env.Stdout, "%s\n", line)
}

func (p *inferPrinter) show(ev rbee.Event) {
	switch ev.Kind {
	case rbee.KindNarration:
		p.clearBar()
		p.endLine()
		fmt.Fprintf(p.env.Stderr, "[%s] %s\n", actorName(ev.Narration.Actor), ev.Narration.Human)
	case rbee.KindProgress:
		p.showProgress(ev.Progress)
	case rbee.KindToken:
		p.clearBar()
		io.WriteString(p.env.Stdout, ev.Token.Token)
		p.open = !strings.HasSuffix(ev.Token.Token, "\n")
	case rbee.KindDone:
		p.clearBar()
		p.endLine()
		d := ev.Done
		line := fmt.Sprintf("[keeper] %d tokens in %s, stop: %s", d.TotalTokens, formatDuration(time.Duration(d.DurationMs)*time.Millisecond), d.StopReason)
		if d.TokensPerSecond > 0 {
			line += fmt.Sprintf(" (%.1f tokens/s", d.TokensPerSecond)
			if d.FirstTokenMs > 0 {
				line += fmt.Sprintf(", first token after %d ms", d.FirstTokenMs)
			}
			line += ")"
		}
		fmt.Fprintln(p.env.Stderr, line)
	}
}

func (p *inferPrinter) showProgress(pr *rbee.Progress) {
	switch pr.Stage {
	case rbee.StageLoading:
		p.barFor("Loading model").update(int64(pr.LayersLoaded), int64(pr.LayersTotal), "layers")
	case rbee.StageDownloading:
		// A bar with percent, MB and speed on a terminal; a plain line now
		// and then otherwise.
		p.barFor("Downloading model").download(pr.BytesDownloaded, pr.BytesTotal, pr.MegabytesPerSecond)
	default:
		p.clearBar()
	}
}

// barFor returns the progress bar with the label, ending another one.
func (p *inferPrinter) barFor(label string) *progress {
	if p.bar != nil && p.bar.label != label {
		p.clearBar()
	}
	if p.bar == nil {
		p.bar = newProgress(p.env.Stderr, label)
	}
	return p.bar
}

func (p *inferPrinter) clearBar() {
	if p.bar != nil {
		p.bar.done()
		p.bar = nil
	}
}

// endLine ends a line of streamed tokens, so that what follows on a shared
// terminal starts on a line of its own.
func (p *inferPrinter) endLine() {
	if p.open && !p.json {
		fmt.Fprintln(p.env.Stdout)
	}
	p.open = false
}

// savePartial keeps the text a crashed inference produced in a temporary
// file and says where, and how far it got.
func (p *inferPrinter) savePartial() {
	w := p.env.Stderr
	fmt.Fprintln(w, "stream closed unexpectedly")
	if p.text.Len() > 0 {
		f, err := os.CreateTemp("", "rbee-partial-*.txt")
		if err == nil {
			_, err = f.WriteString(p.text.String())
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(w, "could not save the partial text: %v\n", err)
		} else {
			fmt.Fprintf(w, "partial text saved to %s\n", f.Name())
		}
	}
	fmt.Fprintf(w, "tokens generated: %d/%d\n", p.tokens, p.want)
}

func actorName(actor string) string {
	return strings.TrimPrefix(actor, "rbee-")
}
