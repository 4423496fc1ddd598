package sshx

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Cmd is a remote command. The program and its arguments travel as argv
// and are quoted by [Join]; nothing is ever pasted into a shell line
// unquoted. The remote login shell must be a POSIX shell (sh, bash, dash,
// ksh, zsh).
type Cmd struct {
	Argv []string
	// Env is added to the command's environment. It travels on the
	// session's standard input, read by the remote shell, so secrets never
	// appear on a command line. A command with Env reads no other input
	// (Stdin must be nil).
	Env map[string]string
	// Dir is the working directory; the remote user's home when empty.
	Dir string

	Stdin io.Reader
	// Stdout and Stderr receive the output as it arrives.
	Stdout, Stderr io.Writer
	// StdoutLine and StderrLine receive the output line by line, without
	// the line ending; the last line need not end in a newline.
	StdoutLine, StderrLine func(line string)
}

// stderrTailSize is how much of stderr an ExitError keeps.
const stderrTailSize = 4 << 10

// maxLine bounds a line handed to a line callback; longer ones are split.
const maxLine = 64 << 10

// Run runs cmd and waits for it. Output is streamed to the writers and
// callbacks, never to two of them at once. A non-zero exit is an
// *[ExitError] carrying the status and the tail of stderr; a lost
// connection is an *[Error] (SSH_CONNECTION_FAILED). When ctx ends, the
// command's process group is sent SIGTERM, the session is closed and
// ctx's error is returned.
func (c *Client) Run(ctx context.Context, cmd Cmd) error {
	script, stdin, err := cmd.script()
	if err != nil {
		return err
	}
	return c.runScript(ctx, cmd, script, stdin)
}

// Output runs argv and returns its standard output.
func (c *Client) Output(ctx context.Context, argv ...string) (string, error) {
	var out bytes.Buffer
	err := c.Run(ctx, Cmd{Argv: argv, Stdout: &out})
	return out.String(), err
}

// script builds the shell line for cmd and the input that goes with it.
func (cmd Cmd) script() (string, io.Reader, error) {
	line, err := Join(cmd.Argv)
	if err != nil {
		return "", nil, err
	}
	prefix, envIn, err := envPrefix(cmd.Env)
	if err != nil {
		return "", nil, err
	}
	stdin := cmd.Stdin
	if envIn != nil {
		if stdin != nil {
			return "", nil, errors.New("sshx: a command with Env cannot read Stdin")
		}
		stdin = envIn
	}
	if cmd.Dir != "" {
		if err := checkWord("Dir", cmd.Dir); err != nil {
			return "", nil, err
		}
		prefix += "cd " + quotePath(cmd.Dir) + " || exit 125; "
	}
	return prefix + "exec " + line, stdin, nil
}

// envPrefix returns the shell text that imports env from standard input,
// and that input: one "export NAME='value'" line per variable, evaluated
// by the remote shell. Values may hold any byte but NUL.
func envPrefix(env map[string]string) (string, io.Reader, error) {
	if len(env) == 0 {
		return "", nil, nil
	}
	names := make([]string, 0, len(env))
	for name, v := range env {
		if !envName(name) {
			return "", nil, fmt.Errorf("%w: environment variable name %q", ErrBadArgv, name)
		}
		if err := checkWord("environment variable "+name, v); err != nil {
			return "", nil, err
		}
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		b.WriteString("export " + name + "=" + Quote(env[name]) + "\n")
	}
	return `eval "$(cat)" || exit 125; `, strings.NewReader(b.String()), nil
}

// runScript runs a shell line built by this package.
//
// The line first reports its shell's pid on stderr in a marker line that
// the stderr stream drops: sshd starts every command as a session and
// process group leader, and the line ends in exec, so that pid is the
// command's and its process group's. When ctx ends, the group is sent
// SIGTERM over a second session; a session "signal" request alone is not
// enough, as OpenSSH ignores it for root logins.
func (c *Client) runScript(ctx context.Context, cmd Cmd, script string, stdin io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s, err := c.session()
	if err != nil {
		return err
	}
	defer s.Close()

	var mu sync.Mutex
	var writeErr error
	errTail := &tail{max: stderrTailSize}
	outLines := newLines(cmd.StdoutLine)
	errLines := newLines(cmd.StderrLine)
	pf, err := newPidFilter(newSink(&mu, &writeErr, cmd.Stderr, errLines.writer(), errTail))
	if err != nil {
		return err
	}
	s.Stdin = stdin
	s.Stdout = newSink(&mu, &writeErr, cmd.Stdout, outLines.writer())
	s.Stderr = pf

	stop := context.AfterFunc(ctx, func() {
		_ = s.Signal(ssh.SIGTERM)
		if pid := pf.pid.Load(); pid > 1 {
			c.killGroup(int(pid))
		}
		s.Close()
	})
	err = s.Run(pf.announce + script)
	canceled := !stop()
	pf.flush()
	mu.Lock()
	outLines.flush()
	errLines.flush()
	mu.Unlock()
	if canceled {
		return fmt.Errorf("sshx: %s on %s: %w", cmd.Argv[0], c.t, context.Cause(ctx))
	}

	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil && writeErr != nil:
		return fmt.Errorf("sshx: %s on %s: writing its output: %w", cmd.Argv[0], c.t, writeErr)
	case err == nil:
		return nil
	case errors.As(err, &ee):
		x := &ExitError{Argv: cmd.Argv, Status: ee.ExitStatus(), Signal: ee.Signal(), Stderr: errTail.String()}
		if x.Signal != "" {
			x.Status = -1
		}
		return x
	case c.gone():
		return c.lost(err)
	case errors.As(err, &missing):
		return &ExitError{Argv: cmd.Argv, Status: -1, Stderr: errTail.String()}
	default:
		return fmt.Errorf("sshx: %s on %s: %w", cmd.Argv[0], c.t, err)
	}
}

// gone reports whether the connection has ended, waiting a moment for
// the reader to notice a connection that broke while a command ran.
func (c *Client) gone() bool {
	select {
	case <-c.done:
		return true
	case <-time.After(50 * time.Millisecond):
		return false
	}
}

// killGroup sends SIGTERM to process group pid (or, failing that, to the
// process), best effort, within a few seconds.
func (c *Client) killGroup(pid int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.conn.NewSession()
	if err != nil {
		return
	}
	defer s.Close()
	p := strconv.Itoa(pid)
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	_ = s.Run("kill -TERM -" + p + " 2> /dev/null || kill -TERM " + p + " 2> /dev/null")
}

// pidFilter passes stderr on, less the marker line that carries the
// remote pid. Lines before the marker (a login shell's chatter) pass
// through unchanged.
type pidFilter struct {
	w        io.Writer
	marker   []byte // the marker line up to the pid
	announce string // the shell text that prints the marker
	pid      atomic.Int64
	buf      []byte
	found    bool
}

func newPidFilter(w io.Writer) (*pidFilter, error) {
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	tag := "rbee-pid-" + hex.EncodeToString(nonce[:])
	return &pidFilter{
		w:        w,
		marker:   []byte("\x1e" + tag + " "),
		announce: "printf '\\036" + tag + " %s\\n' $$ >&2; ",
	}, nil
}

func (f *pidFilter) Write(p []byte) (int, error) {
	n := len(p)
	if f.found {
		return f.w.Write(p)
	}
	f.buf = append(f.buf, p...)
	for !f.found {
		i := bytes.IndexByte(f.buf, '\n')
		if i < 0 {
			if len(f.buf) > maxLine {
				f.flush()
			}
			return n, nil
		}
		line := f.buf[:i+1]
		if rest, ok := bytes.CutPrefix(line, f.marker); ok {
			if pid, err := strconv.ParseInt(string(bytes.TrimSpace(rest)), 10, 64); err == nil {
				f.pid.Store(pid)
			}
			f.found = true
		} else if _, err := f.w.Write(line); err != nil {
			return 0, err
		}
		f.buf = f.buf[i+1:]
	}
	if len(f.buf) > 0 {
		_, err := f.w.Write(f.buf)
		f.buf = nil
		return n, err
	}
	return n, nil
}

// flush passes on what is held back; called once the stream has ended.
func (f *pidFilter) flush() {
	if len(f.buf) > 0 {
		_, _ = f.w.Write(f.buf)
		f.buf = nil
	}
}

// sink writes to several writers under one lock shared by stdout and
// stderr, so a writer or callback given for both is never called
// concurrently. A writer that fails is dropped (the stream is still
// drained, so the remote command never blocks) and its error kept.
type sink struct {
	mu  *sync.Mutex
	ws  []io.Writer
	err *error
}

func newSink(mu *sync.Mutex, err *error, ws ...io.Writer) *sink {
	s := &sink{mu: mu, err: err}
	for _, w := range ws {
		if w != nil {
			s.ws = append(s.ws, w)
		}
	}
	return s
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < len(s.ws); i++ {
		if _, err := s.ws[i].Write(p); err != nil {
			if *s.err == nil {
				*s.err = err
			}
			s.ws = slices.Delete(s.ws, i, i+1)
			i--
		}
	}
	return len(p), nil
}

// lines splits a stream into lines for a callback.
type lines struct {
	fn  func(string)
	buf []byte
}

func newLines(fn func(string)) *lines {
	if fn == nil {
		return nil
	}
	return &lines{fn: fn}
}

// writer returns l as an io.Writer, or nil when there is no callback.
func (l *lines) writer() io.Writer {
	if l == nil {
		return nil
	}
	return l
}

func (l *lines) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.buf = append(l.buf, p...)
			for len(l.buf) >= maxLine {
				l.fn(string(l.buf[:maxLine]))
				l.buf = append(l.buf[:0], l.buf[maxLine:]...)
			}
			break
		}
		l.buf = append(l.buf, p[:i]...)
		l.fn(strings.TrimSuffix(string(l.buf), "\r"))
		l.buf = l.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (l *lines) flush() {
	if l == nil || len(l.buf) == 0 {
		return
	}
	l.fn(strings.TrimSuffix(string(l.buf), "\r"))
	l.buf = l.buf[:0]
}
