package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"rbee/internal/cliutil"
	"rbee/internal/httpx"
	"rbee/internal/loadgen"
)

const benchServeUsage = "--url URL --model REF [--concurrency 8] [--requests 32] [--prompt-tokens 128] [--max-tokens 64] [flags]"

const benchServeSummary = `load-test an OpenAI-compatible server (rbee's queen, llama.cpp's server, vLLM, …)

  Keeps --concurrency streaming requests in flight until --requests have been
  sent, after --warmup requests that are not measured, and prints requests/s,
  aggregate output tokens/s, time to first token (TTFT), inter-token latency
  (ITL) and end-to-end latency (mean, p50, p90, p99, in ms), and the failed
  requests by error code (HTTP status and the server's code, or
  connection_refused, timeout, stream_cut, …). Prompts are common words,
  different for every request and fixed by --seed. First two requests of one
  output token, not measured, size them to the server's tokenizer, so that
  the server counts about --prompt-tokens for each (with --calibrate=false a
  word counts as one token, as for most English models' vocabularies); the
  prompt and output token counts are the server's usage when it reports them.
  No request is retried: a 503 (a full server) is an error here. Progress goes
  to stderr, the report to stdout (--json: one JSON object). Exit status 0,
  or 1 when no request succeeded; Ctrl+C prints what was measured and exits
  130. The API key comes from --api-key, else $RBEE_API_KEY, else
  $OPENAI_API_KEY.`

// serveUsagef is a usage error of rbee bench serve, pointing to its flags
// (the usage line printed with it is rbee bench's).
func serveUsagef(format string, a ...any) error {
	return usagef(format+"; see 'rbee bench serve --help'", a...)
}

// runBenchServe is `rbee bench serve`.
func runBenchServe(ctx context.Context, env *Env, args []string) error {
	fs := cliutil.NewFlagSet("bench serve")
	url := fs.String("url", "", "the server's base URL, with or without /v1 (required), e.g. http://127.0.0.1:8080")
	model := fs.String("model", "", `the "model" of the requests (required): an rbee model reference (hf:… or file:…) for the queen`)
	concurrency := fs.Int("concurrency", 8, "requests in flight at once")
	requests := fs.Int("requests", 32, "requests to send")
	promptTokens := fs.Int("prompt-tokens", 128, "approximate prompt length in tokens")
	maxTokens := fs.Int("max-tokens", 64, "max_tokens of each request")
	apiKey := fs.String("api-key", "", "bearer token (default $"+httpx.APIKeyEnv+", else $OPENAI_API_KEY)")
	endpoint := fs.String("endpoint", loadgen.Completions, "completions (POST /v1/completions, a raw prompt) or chat (POST /v1/chat/completions, one user message)")
	temperature := fs.Float64("temperature", 0, "sampling temperature, 0 to 2")
	seed := fs.Int64("seed", 0, "seed of the prompts' words, also sent as each request's seed")
	ignoreEOS := fs.Bool("ignore-eos", false, `send "ignore_eos": true so that every request generates --max-tokens tokens (llama.cpp and vLLM honour it; rbee ignores it; OpenAI's API refuses it)`)
	timeout := fs.Duration("timeout", 5*time.Minute, "time limit of one request, its stream included")
	calibrate := fs.Bool("calibrate", true, "size the prompts' words to the server's tokenizer first (two requests of one token, not measured), from its usage.prompt_tokens")
	warmup := fs.Int("warmup", 1, "requests sent one at a time before the run and not measured (a cold start of the model is not a measure)")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	if err := cliutil.Parse(fs, args, env.Stdout, benchServeUsage, benchServeSummary); err != nil {
		return err
	}
	switch {
	case *url == "":
		return serveUsagef("--url is required (the server's base URL, e.g. http://127.0.0.1:8080)")
	case *model == "":
		return serveUsagef("--model is required")
	case *concurrency < 1 || *concurrency > 4096:
		return serveUsagef("--concurrency must be between 1 and 4096")
	case *requests < 1 || *requests > 1_000_000:
		return serveUsagef("--requests must be between 1 and 1000000")
	case *promptTokens < 1 || *promptTokens > 100_000:
		return serveUsagef("--prompt-tokens must be between 1 and 100000")
	case *maxTokens < 1:
		return serveUsagef("--max-tokens must be at least 1")
	case *temperature < 0 || *temperature > 2:
		return serveUsagef("--temperature must be between 0 and 2")
	case *seed < 0:
		return serveUsagef("--seed must not be negative")
	case *timeout <= 0:
		return serveUsagef("--timeout must be positive")
	case *warmup < 0 || *warmup > 100:
		return serveUsagef("--warmup must be between 0 and 100")
	case *endpoint != loadgen.Completions && *endpoint != loadgen.Chat:
		return serveUsagef("--endpoint must be completions or chat")
	}
	if _, err := loadgen.BaseURL(*url); err != nil {
		return serveUsagef("--url: %v", err)
	}
	key := *apiKey
	if key == "" {
		key = env.Getenv(httpx.APIKeyEnv)
	}
	if key == "" {
		key = env.Getenv("OPENAI_API_KEY")
	}
	g, err := loadgen.New(loadgen.Config{URL: *url, Endpoint: *endpoint, Model: *model, APIKey: key,
		Concurrency: *concurrency, Requests: *requests, PromptTokens: *promptTokens, MaxTokens: *maxTokens,
		Temperature: *temperature, Seed: uint64(*seed), IgnoreEOS: *ignoreEOS, Timeout: *timeout})
	if err != nil {
		return serveUsagef("%v", err)
	}

	say := func(format string, a ...any) { fmt.Fprintf(env.Stderr, "rbee bench serve: "+format+"\n", a...) }
	say("%s, model %s: %d requests, %d at a time, prompts of about %d tokens, max_tokens %d",
		g.Endpoint(), *model, *requests, min(*concurrency, *requests), *promptTokens, *maxTokens)
	if *calibrate {
		c, err := g.Calibrate(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			say("prompts not calibrated (%v): %d words each, about one token per word", err, g.Words())
		default:
			say("the server counts %.2f tokens per word: prompts of %d words", c.TokensPerWord, c.Words)
		}
	}
	for i := range *warmup {
		say("warm-up request %d/%d (not measured)…", i+1, *warmup)
		// Warm-up prompts follow the run's, so that none is cached for it.
		r := g.Do(ctx, *requests+i)
		if r.Interrupted || ctx.Err() != nil {
			return ctx.Err()
		}
		if r.Err != nil {
			return withHint(fmt.Errorf("the warm-up request failed: %w", r.Err),
				"check --url, --model and the API key; --warmup 0 skips the warm-up and counts every failure in the report")
		}
	}
	step := max(1, *requests/10)
	rep, runErr := g.Run(ctx, func(done, failed int) {
		if done%step == 0 || done == *requests {
			say("%d/%d done (%d failed)", done, *requests, failed)
		}
	})
	if *asJSON {
		if err := json.NewEncoder(env.Stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		printServeReport(env.Stdout, rep)
	}
	if runErr != nil {
		return runErr // interrupted: Canceled., exit 130
	}
	if rep.Completed == 0 {
		return fmt.Errorf("no request succeeded (%d failed, most with %s)", rep.Failed, commonestError(rep))
	}
	return nil
}

// commonestError is the code that failed the most requests, with its message.
func commonestError(rep *loadgen.Report) string {
	best := ""
	for code, n := range rep.Errors {
		if best == "" || n > rep.Errors[best] || (n == rep.Errors[best] && code < best) {
			best = code
		}
	}
	if m := rep.ErrorMessages[best]; m != "" {
		return best + ": " + m
	}
	return best
}

// printServeReport prints a run's report as a table.
func printServeReport(w io.Writer, rep *loadgen.Report) {
	line := func(label, format string, a ...any) {
		fmt.Fprintf(w, "%-24s "+format+"\n", append([]any{label + ":"}, a...)...)
	}
	fmt.Fprintf(w, "%s (%s), model %s\n", rep.URL, rep.Endpoint, rep.Model)
	if rep.Interrupted {
		fmt.Fprintf(w, "Interrupted: %d of %d requests ended; figures for those.\n", rep.Completed+rep.Failed, rep.Requests)
	}
	line("Requests ok / failed", "%d / %d (of %d, %d at a time)", rep.Completed, rep.Failed, rep.Requests, rep.Concurrency)
	line("Duration", "%.3f s", rep.DurationS)
	line("Requests/s", "%.2f", rep.RequestsPerS)
	line("Output tokens/s", "%.1f (all requests together)", rep.OutputTokensPerS)
	if rep.MeanPromptTokens != nil {
		line("Mean prompt tokens", "%.1f (the server's count; about %d asked for)", *rep.MeanPromptTokens, rep.PromptTokens)
	} else {
		line("Mean prompt tokens", "not reported by the server (about %d asked for)", rep.PromptTokens)
	}
	from := map[string]string{
		loadgen.FromUsage:  "the server's count",
		loadgen.FromChunks: "chunks with text counted: the server reported no usage",
		loadgen.FromMixed:  "the server's count for some requests, chunks counted for others",
	}[rep.OutputTokensFrom]
	if from == "" {
		from = "no request succeeded"
	}
	line("Mean output tokens", "%.1f (%s; max_tokens %d)", rep.MeanOutputTokens, from, rep.MaxTokens)
	fmt.Fprintf(w, "\n%-24s %10s %10s %10s %10s %8s\n", "", "mean", "p50", "p90", "p99", "n")
	for _, s := range []struct {
		name string
		st   *loadgen.Stats
	}{{"TTFT (ms)", rep.TTFT}, {"ITL (ms)", rep.ITL}, {"E2E latency (ms)", rep.Latency}} {
		if s.st == nil {
			fmt.Fprintf(w, "%-24s %10s %10s %10s %10s %8d\n", s.name, "-", "-", "-", "-", 0)
			continue
		}
		fmt.Fprintf(w, "%-24s %10.2f %10.2f %10.2f %10.2f %8d\n", s.name, s.st.Mean, s.st.P50, s.st.P90, s.st.P99, s.st.N)
	}
	if len(rep.Errors) == 0 {
		fmt.Fprintln(w, "\nErrors: none")
		return
	}
	fmt.Fprintln(w, "\nErrors:")
	codes := make([]string, 0, len(rep.Errors))
	for c := range rep.Errors {
		codes = append(codes, c)
	}
	slices.SortFunc(codes, func(a, b string) int {
		if d := rep.Errors[b] - rep.Errors[a]; d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	for _, c := range codes {
		msg := []rune(oneLine(rep.ErrorMessages[c]))
		if len(msg) > 100 {
			msg = append(msg[:100], '…')
		}
		fmt.Fprintf(w, "  %-28s %6d  %s\n", c, rep.Errors[c], string(msg))
	}
}
