package rbee

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"rbee/internal/cliutil"
	"rbee/pool"
	"rbee/worker"
)

// ChildEnv is the environment variable rbee sets to "1" on the hives and
// workers it starts, so that a program embedding an [Orchestrator] can tell
// that it was started as one (see [HandleChildProcess]).
const ChildEnv = "RBEE_CHILD"

// HandleChildProcess lets a program that embeds an [Orchestrator] be its own
// hive and worker binary. Call it first thing in main:
//
//	func main() {
//		rbee.HandleChildProcess()
//		// … the program …
//	}
//
// When the process was started by rbee as a hive or a worker (RBEE_CHILD=1
// in its environment and "hive" or "worker" as its first argument), it runs
// that daemon until it is told to stop or gets SIGINT or SIGTERM, then exits
// the process with the daemon's exit status. Otherwise it returns at once
// and does nothing.
func HandleChildProcess() {
	code, ok := runChild(context.Background(), os.Args, os.Getenv, os.Stderr)
	if ok {
		os.Exit(code)
	}
}

// runChild is HandleChildProcess without the exit: it reports whether args
// named a child role and, if so, the daemon's exit status.
func runChild(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) (code int, ok bool) {
	if getenv(ChildEnv) != "1" || len(args) < 2 {
		return 0, false
	}
	var run func(context.Context, []string, io.Writer) error
	switch args[1] {
	case "hive":
		run = pool.Main
	case "worker":
		run = worker.Main
	default:
		return 0, false
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return exitStatus(args[1], run(ctx, args[2:], stderr), stderr), true
}

// exitStatus turns a daemon's error into its exit status (the rbee command's
// convention): 0 for nil, 2 for a usage error, the error's own ExitCode when
// it has one (a worker whose port is taken exits 3), else 1.
func exitStatus(role string, err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, cliutil.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "rbee %s: %v\n", role, err)
	var ue *cliutil.UsageError
	if errors.As(err, &ue) {
		return 2
	}
	var coded interface{ ExitCode() int }
	if errors.As(err, &coded) {
		return coded.ExitCode()
	}
	return 1
}
