package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"rbee/internal/paths"
	"rbee/internal/proc"
)

// ephemeralQueen is a queen rbee infer started because none answered: it
// runs for one command and is stopped (with everything it started) after.
type ephemeralQueen struct {
	p   *proc.Process
	log string
}

// Ephemeral-mode timings.
const (
	queenProbeTimeout = time.Second      // is a queen already there?
	queenStartTimeout = 30 * time.Second // the child queen must answer within
	queenStopTimeout  = 40 * time.Second // its cascade takes at most 30 s
)

// startQueen runs "<rbee> queen" on the loopback port of q's address, logs
// to <home>/logs/queen.log, and waits until it answers.
func startQueen(ctx context.Context, env *Env, q *queen, hivePort, workerPortStart int) (*ephemeralQueen, error) {
	if env.Executable == "" {
		return nil, fmt.Errorf("cannot start a queen: the path of the rbee binary is unknown")
	}
	// $RBEE_HOME, else [paths] home of the configuration, else ~/.rbee.
	home, err := q.file.Home("", q.cenv)
	if err != nil {
		return nil, err
	}
	if err := paths.Ensure(home); err != nil {
		return nil, fmt.Errorf("preparing %s: %w", home, err)
	}
	port := q.url.Port()
	if port == "" {
		port = "80"
		if q.url.Scheme == "https" {
			return nil, fmt.Errorf("cannot start a queen for %s: an ephemeral queen serves plain http", q.url)
		}
	}
	args := []string{"queen", "--host", "127.0.0.1", "--port", port, "--home", home}
	if hivePort > 0 {
		args = append(args, "--local-hive-port", strconv.Itoa(hivePort))
	}
	if workerPortStart > 0 {
		args = append(args, "--local-worker-port-start", strconv.Itoa(workerPortStart))
	}
	logFile := filepath.Join(paths.LogsDir(home), "queen.log")
	p, err := proc.Start(proc.Spec{Path: env.Executable, Args: args, Env: []string{"RBEE_CHILD=1", envHome + "=" + home}, LogFile: logFile})
	if err != nil {
		return nil, err
	}
	eq := &ephemeralQueen{p: p, log: logFile}

	ctx, cancel := context.WithTimeout(ctx, queenStartTimeout)
	defer cancel()
	delay := 50 * time.Millisecond
	for {
		probe, cancelProbe := context.WithTimeout(ctx, queenProbeTimeout)
		_, herr := q.Health(probe)
		cancelProbe()
		if herr == nil {
			return eq, nil
		}
		select {
		case <-p.Exited():
			return nil, fmt.Errorf("the queen it started exited (status %d) before answering: %s", p.ExitCode(), tail(logFile, 5))
		case <-ctx.Done():
			eq.stop()
			if err := ctx.Err(); err == context.DeadlineExceeded {
				return nil, fmt.Errorf("the queen it started did not answer within %s (see %s)", queenStartTimeout, logFile)
			}
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// stop sends the queen SIGTERM (it shuts its hives and workers down), waits
// for it, and kills it if it takes too long.
func (eq *ephemeralQueen) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), queenStopTimeout)
	defer cancel()
	_ = eq.p.Stop(ctx, queenStopTimeout)
}

// tail returns the last n lines of a file, joined with " | ".
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "no log"
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = string(l)
	}
	return strings.Join(out, " | ")
}
