// Package cli is the rbee command line: it parses flags, calls the library and
// prints. Every command returns an error instead of exiting, and Main turns it
// into the exit code: 0 success, 1 failure, 2 usage, 130 interrupted.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"rbee/internal/cliutil"
	"rbee/orchestrator"
	"rbee/pool"
	"rbee/worker"
)

// Exit codes.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2
	ExitInterrupted = 130
)

// Env is what a command may touch of the outside world; tests give their own.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
	// Executable is the path of the rbee binary, for commands that start
	// copies of it (bench measures each configuration in a fresh process).
	Executable string
}

type command struct {
	name    string
	args    string // usage after the name
	summary string
	hidden  bool
	run     func(ctx context.Context, env *Env, args []string) error
}

func commands() []*command {
	return []*command{
		{name: "generate", args: "--model PATH --prompt TEXT [flags]", summary: "generate text from a GGUF model file in this process", run: runGenerate},
		{name: "bench", args: "[--model PATH]... [--threads 1,2] [flags] | serve --url URL --model REF [flags]", summary: "measure prompt and decode speed and peak memory; serve: load-test an OpenAI-compatible server", run: runBench},
		{name: "infer", args: "--node NAME|auto --model REF --prompt TEXT [flags]", summary: "run an inference on a node through the queen (starts one if none runs)", run: runInfer},
		{name: "workers", args: "list | health --node NAME | shutdown --id ID", summary: "list, check or stop workers across nodes", run: runWorkers},
		{name: "logs", args: "[--node NAME] [--follow] [--lines N] [--json]", summary: "print a node's hive and worker logs (--follow streams until Ctrl+C)", run: runLogs},
		{name: "setup", args: "add-node | install --node NAME | list-nodes | remove-node --name NAME", summary: "add remote nodes, install rbee on them, list or remove them", run: runSetup},
		{name: "install", args: "[--system] [--force]", summary: "install this rbee binary, its directories and a default configuration", run: runInstall},
		{name: "queen", args: "[--port 8080] [flags]", summary: "run the orchestrator daemon", run: daemonCommand(orchestrator.Main)},
		{name: "hive", args: "[--port 9200] [flags]", summary: "run a node's pool daemon", run: daemonCommand(pool.Main)},
		{name: "worker", args: "--model PATH --port PORT [flags]", summary: "run a worker serving one model (started by a hive)", hidden: true, run: daemonCommand(worker.Main)},
		{name: "tokenize", args: "--model PATH [--pieces] [--add-special] [--parse-special] [--jsonl] [TEXT]", summary: "print the token ids of TEXT or standard input (any GGUF with a tokenizer, vocab-only files too)", run: runTokenize},
		{name: "synth-model", args: "--out PATH [--preset tinyllama|tiny] [--quant Q4_K_M]", summary: "write a llama model with random weights (for tests and benchmarks)", run: runSynth},
	}
}

// Main runs the rbee command with the process's environment and returns its
// exit code. SIGINT and SIGTERM cancel the command's context.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	exe, _ := os.Executable()
	env := &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Executable: exe}
	return Run(ctx, env, args)
}

// Run runs one rbee command and returns its exit code.
func Run(ctx context.Context, env *Env, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c := find(args[1]); c != nil {
				fmt.Fprintf(env.Stdout, "usage: rbee %s %s\n  %s\n", c.name, c.args, c.summary)
				return ExitOK
			}
		}
		usage(env.Stdout)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	if args[0] == "version" || args[0] == "--version" {
		fmt.Fprintln(env.Stdout, "rbee", Version)
		return ExitOK
	}
	c := find(args[0])
	if c == nil {
		fmt.Fprintf(env.Stderr, "rbee: unknown command %q\nRun 'rbee help' for the list of commands.\n", args[0])
		return ExitUsage
	}
	err := c.run(ctx, env, args[1:])
	return report(env, c, err, ctx)
}

// Version is the rbee release this binary is.
const Version = "0.1.0"

func find(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "rbee runs large language models on the machines you already own.")
	fmt.Fprintln(w, "\nUsage: rbee COMMAND [flags]\n\nCommands:")
	cs := commands()
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		if !c.hidden {
			fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprintln(w, "\nRun 'rbee help COMMAND' or 'rbee COMMAND --help' for a command's flags.")
}

func usagef(format string, a ...any) error { return cliutil.Usagef(format, a...) }

// hinted errors carry a line of advice printed after the message.
type hinted struct {
	err  error
	hint string
}

func (h *hinted) Error() string { return h.err.Error() }
func (h *hinted) Unwrap() error { return h.err }

func withHint(err error, hint string) error { return &hinted{err, hint} }

func report(env *Env, c *command, err error, ctx context.Context) int {
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, cliutil.ErrHelp) {
		return ExitOK
	}
	var ue *cliutil.UsageError
	if errors.As(err, &ue) {
		fmt.Fprintf(env.Stderr, "rbee %s: %s\nusage: rbee %s %s (see 'rbee %s --help')\n", c.name, ue.Msg, c.name, c.args, c.name)
		return ExitUsage
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, ctx.Err())) {
		fmt.Fprintln(env.Stderr, "Canceled.")
		return ExitInterrupted
	}
	fmt.Fprintf(env.Stderr, "rbee %s: %s\n", c.name, oneLine(err.Error()))
	var h *hinted
	if errors.As(err, &h) && h.hint != "" {
		fmt.Fprintf(env.Stderr, "hint: %s\n", h.hint)
	}
	// Errors may choose their exit status (a worker whose port is taken
	// exits 3, so that its hive retries on the next port).
	var coded interface{ ExitCode() int }
	if errors.As(err, &coded) && coded.ExitCode() > 0 {
		return coded.ExitCode()
	}
	return ExitFailure
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

// newFlags makes a flag set for a command; parseFlags reports its errors as
// usage errors and prints --help to stdout.
func newFlags(env *Env, c string) *flag.FlagSet { return cliutil.NewFlagSet(c) }

func parseFlags(env *Env, fs *flag.FlagSet, args []string) error {
	c := find(fs.Name())
	return cliutil.Parse(fs, args, env.Stdout, c.args, c.summary)
}

// daemonCommand runs a daemon's Main: its flags are its own, it runs until
// the context ends (SIGINT/SIGTERM) or it is told to shut down.
func daemonCommand(main func(ctx context.Context, args []string, stderr io.Writer) error) func(context.Context, *Env, []string) error {
	return func(ctx context.Context, env *Env, args []string) error { return main(ctx, args, env.Stderr) }
}
