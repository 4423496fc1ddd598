package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"rbee"
	"rbee/api"
	"rbee/internal/paths"
)

// runLogs is rbee logs: a node's hive and worker log lines through
// the queen, "[source] line" on stdout (or one JSON object per line). With
// --follow it streams until Ctrl+C (exit 130); otherwise it exits 0 when
// the last lines are printed.
func runLogs(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "logs")
	qf := addQueenFlags(fs)
	node := fs.String("node", rbee.LocalNode, "the node whose logs to show (\"local\" is this machine)")
	follow := fs.Bool("follow", false, "keep printing lines as they are written, until Ctrl+C")
	lines := fs.Int("lines", rbee.DefaultLogLines, fmt.Sprintf("how many of the last lines to print first (0 to %d)", rbee.MaxLogLines))
	asJSON := fs.Bool("json", false, "print every line as a JSON object {node, source, line, time}")
	if err := parseFlags(env, fs, args); err != nil {
		return err
	}
	if err := api.ValidateNodeName(*node); err != nil {
		return usagef("--node: %s", err.Message)
	}
	if *lines < 0 || *lines > rbee.MaxLogLines {
		return usagef("--lines %d: want 0 to %d", *lines, rbee.MaxLogLines)
	}
	q, err := qf.client(env)
	if err != nil {
		return err
	}
	out := bufio.NewWriter(env.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for l, err := range q.Logs(ctx, *node, *follow, *lines) {
		if err != nil {
			out.Flush()
			if ctx.Err() != nil {
				return ctx.Err() // Ctrl+C: "Canceled.", exit 130
			}
			return q.explainLogs(err, *node)
		}
		if *asJSON {
			if err := enc.Encode(l); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(out, "[%s] %s\n", l.Source, printable(l.Line))
		}
		// Lines go out as they come when following; a backlog is written in
		// larger pieces.
		if *follow {
			if err := out.Flush(); err != nil {
				return err
			}
		}
	}
	return out.Flush()
}

// explainLogs is explain for a log stream: a stream that breaks off says
// so, and for the local node with no queen running the hint adds where the
// log files are on this machine.
func (q *queen) explainLogs(err error, node string) error {
	if errors.Is(err, rbee.ErrStreamClosed) {
		return withHint(fmt.Errorf("the log stream from the queen at %s broke off: %w", q.url, err),
			"the queen or the connection to it went away; run the command again")
	}
	e := q.explain(err)
	var h *hinted
	var ae *rbee.Error
	if node != rbee.LocalNode || errors.As(err, &ae) || !errors.As(e, &h) {
		return e
	}
	home, herr := q.file.Home("", q.cenv)
	if herr != nil {
		return e
	}
	h.hint += "; the local logs are files in " + paths.LogsDir(home)
	return e
}

// printable replaces the control characters of a log line, but tabs, with
// '?', so that a line cannot move the cursor or recolour the terminal.
func printable(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return '?'
		}
		return r
	}, s)
}

func isControl(r rune) bool {
	return r != '\t' && (unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r))
}
