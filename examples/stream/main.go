// Command stream streams one inference from a running queen: the tokens to
// stdout as they arrive, what the queen does to stderr.
//
//	rbee queen &
//	go run ./examples/stream --model file:/models/tinyllama-Q4_K_M.gguf --prompt "Once upon a time"
//
// Ctrl+C cancels the inference at the queen.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"rbee"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "stream:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("stream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	queen := fs.String("queen-url", rbee.DefaultURL, "the queen's address")
	node := fs.String("node", rbee.LocalNode, "node to run on")
	model := fs.String("model", "", "model reference (required)")
	prompt := fs.String("prompt", "Once upon a time", "text to continue")
	maxTokens := fs.Int("max-tokens", 32, "most tokens to generate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *model == "" {
		return fmt.Errorf("--model is required")
	}

	c := &rbee.Client{BaseURL: *queen, Token: os.Getenv("RBEE_API_KEY")}
	req := rbee.TaskRequest{Node: *node, Model: *model, Prompt: *prompt, SamplingParams: rbee.SamplingParams{MaxTokens: *maxTokens}}
	var taskID string
	for ev, err := range c.Infer(ctx, req) {
		if err != nil {
			if ctx.Err() != nil && taskID != "" {
				// Interrupted: stop the generation (the queen would also
				// notice the closed connection).
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = c.CancelTask(cctx, taskID)
			}
			return err
		}
		switch ev.Kind {
		case rbee.KindNarration:
			if ev.Narration.Action == rbee.ActionTaskStart {
				taskID = ev.Narration.RequestID
			}
			fmt.Fprintln(stderr, ev.Narration.Human)
		case rbee.KindProgress:
			if ev.Progress.Stage == rbee.StageLoading {
				fmt.Fprintf(stderr, "loading %d/%d layers\n", ev.Progress.LayersLoaded, ev.Progress.LayersTotal)
			}
		case rbee.KindToken:
			fmt.Fprint(stdout, ev.Token.Token)
		case rbee.KindDone:
			fmt.Fprintln(stdout)
			fmt.Fprintf(stderr, "%d tokens in %d ms (%s)\n", ev.Done.TotalTokens, ev.Done.DurationMs, ev.Done.StopReason)
		}
	}
	return nil
}
