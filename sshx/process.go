package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrBadPid reports a pid that must not be signalled: 0, 1 and negative
// numbers name process groups or every process.
var ErrBadPid = errors.New("sshx: pid must be greater than 1")

// StartDetached starts argv on the node as a process that outlives the
// session and this Client, and returns its pid. Its standard output and
// error are appended to logFile (relative paths are relative to the remote
// user's home), its standard input is /dev/null, and it runs in a new
// session (setsid) where the node has setsid, otherwise under nohup.
//
// env is added to its environment the way [Cmd.Env] is: over the
// session's standard input, never on a command line or in a file.
// A program that cannot be found is an *[ExitError] with status 127.
func (c *Client) StartDetached(ctx context.Context, argv []string, env map[string]string, logFile string) (int, error) {
	line, err := Join(argv)
	if err != nil {
		return 0, err
	}
	if logFile == "" {
		return 0, errors.New("sshx: StartDetached: empty log file")
	}
	if err := checkWord("log file", logFile); err != nil {
		return 0, err
	}
	prefix, stdin, err := envPrefix(env)
	if err != nil {
		return 0, err
	}
	prog := Quote(argv[0])
	redirect := " >> " + Quote(logFile) + " 2>&1 < /dev/null &"
	script := prefix +
		"command -v " + prog + " > /dev/null 2>&1 || { echo " + Quote(argv[0]+": command not found") + " >&2; exit 127; }; " +
		"if command -v setsid > /dev/null 2>&1; then setsid " + line + redirect +
		" else nohup " + line + redirect + " fi; echo $!"

	var out bytes.Buffer
	err = c.runScript(ctx, Cmd{Argv: argv, Stdout: &out}, script, stdin)
	if err != nil {
		return 0, err
	}
	pid, perr := strconv.Atoi(strings.TrimSpace(out.String()))
	if perr != nil || pid <= 1 {
		return 0, fmt.Errorf("sshx: start %s on %s: no pid in %q", argv[0], c.t, out.String())
	}
	c.cfg.Logger.Debug("started detached process", "host", c.t.host, "program", argv[0], "pid", pid, "log", logFile)
	return pid, nil
}

// Alive reports whether process pid exists on the node, is not a zombie
// and can be signalled by the remote user.
func (c *Client) Alive(ctx context.Context, pid int) (bool, error) {
	if pid <= 1 {
		return false, ErrBadPid
	}
	p := strconv.Itoa(pid)
	script := "kill -0 " + p + " 2> /dev/null || exit 1; " +
		"if [ -r /proc/" + p + "/stat ]; then case \"$(sed 's/.*) //' /proc/" + p + "/stat)\" in Z*) exit 1;; esac; " +
		"elif command -v ps > /dev/null 2>&1; then case \"$(ps -o stat= -p " + p + ")\" in Z*) exit 1;; esac; fi; exit 0"
	err := c.shell(ctx, "alive", script, nil, nil)
	var ee *ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.Status == 1:
		return false, nil
	default:
		return false, err
	}
}

// stopPoll is how often Stop looks whether the process is gone.
const stopPoll = 100 * time.Millisecond

// Stop ends process pid: SIGTERM, then up to grace for it to exit, then
// SIGKILL (and up to 5 s more). SIGKILL goes to the whole process group
// when pid leads one, as StartDetached's processes do where the node has
// setsid, so that children it could not stop die with it. A process that
// is already gone is not an error. It fails with ErrBadPid for pid ≤ 1.
//
// A pid names a process only while it lives: call Stop for processes
// this program started and has watched with Alive.
func (c *Client) Stop(ctx context.Context, pid int, grace time.Duration) error {
	if pid <= 1 {
		return ErrBadPid
	}
	p := strconv.Itoa(pid)
	if err := c.shell(ctx, "kill", "kill -TERM "+p+" 2> /dev/null || true", nil, nil); err != nil {
		return err
	}
	gone, err := c.waitGone(ctx, pid, grace)
	if err != nil || gone {
		return err
	}
	c.cfg.Logger.Warn("process ignored SIGTERM, killing it", "host", c.t.host, "pid", pid, "grace", grace)
	if err := c.shell(ctx, "kill", "kill -KILL -"+p+" 2> /dev/null || kill -KILL "+p+" 2> /dev/null || true", nil, nil); err != nil {
		return err
	}
	gone, err = c.waitGone(ctx, pid, 5*time.Second)
	if err != nil {
		return err
	}
	if !gone {
		return fmt.Errorf("sshx: process %d on %s survived SIGKILL", pid, c.t)
	}
	return nil
}

// waitGone polls Alive until the process is gone or d has passed.
func (c *Client) waitGone(ctx context.Context, pid int, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		alive, err := c.Alive(ctx, pid)
		if err != nil || !alive {
			return !alive && err == nil, err
		}
		if !time.Now().Before(deadline) {
			return false, nil
		}
		t := time.NewTimer(min(stopPoll, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return false, context.Cause(ctx)
		case <-t.C:
		}
	}
}
