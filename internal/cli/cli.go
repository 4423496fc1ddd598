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
		{name: "bench", args: "[--model PATH]... [--threads 1,2] [flags]", summary: "measure prompt and decode speed and peak memory", run: runBench},
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

// usageError is a mistake on the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// hinted errors carry a line of advice printed after the message.
type hinted struct {
	err  error
	hint string
}

func (h *hinted) Error() string { return h.err.Error() }
func (h *hinted) Unwrap() error { return h.err }

func withHint(err error, hint string) error { return &hinted{err, hint} }

// errHelp is returned by flag parsing when the user asked for --help.
var errHelp = errors.New("help requested")

func report(env *Env, c *command, err error, ctx context.Context) int {
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, errHelp) {
		return ExitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(env.Stderr, "rbee %s: %s\nusage: rbee %s %s (see 'rbee %s --help')\n", c.name, ue.msg, c.name, c.args, c.name)
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
	return ExitFailure
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

// newFlags makes a flag set for a command whose parse errors become usage
// errors and whose --help prints the flags to stdout.
func newFlags(env *Env, c string) *flag.FlagSet {
	fs := flag.NewFlagSet(c, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

func parseFlags(env *Env, fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		c := find(fs.Name())
		fmt.Fprintf(env.Stdout, "usage: rbee %s %s\n  %s\n\nFlags:\n", c.name, c.args, c.summary)
		fs.SetOutput(env.Stdout)
		fs.PrintDefaults()
		return errHelp
	}
	if err != nil {
		return usagef("%s", strings.TrimPrefix(err.Error(), "flag: "))
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
