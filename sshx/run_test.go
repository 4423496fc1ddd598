package sshx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/sshtest"
)

func TestRun(t *testing.T) {
	s := sshtest.Start(t)
	c := dialServer(t, s)
	ctx := t.Context()

	t.Run("streams stdout and stderr", func(t *testing.T) {
		var out, errb bytes.Buffer
		var outLines, errLines []string
		err := c.Run(ctx, Cmd{
			Argv:   []string{"sh", "-c", `echo one; echo warn >&2; printf 'two\r\nthree'`},
			Stdout: &out, Stderr: &errb,
			StdoutLine: func(l string) { outLines = append(outLines, l) },
			StderrLine: func(l string) { errLines = append(errLines, l) },
		})
		require.NoError(t, err)
		assert.Equal(t, "one\ntwo\r\nthree", out.String())
		assert.Equal(t, "warn\n", errb.String())
		assert.Equal(t, []string{"one", "two", "three"}, outLines)
		assert.Equal(t, []string{"warn"}, errLines)
	})
	t.Run("output arrives while the command runs", func(t *testing.T) {
		// The command waits for input that is only sent once its first
		// line has been seen.
		first := make(chan string, 1)
		done := make(chan error, 1)
		pr, pw := io.Pipe()
		defer pw.Close()
		go func() {
			done <- c.Run(ctx, Cmd{
				Argv: []string{"sh", "-c", `echo ready; read x; exit 0`},
				StdoutLine: func(l string) {
					select {
					case first <- l:
					default:
					}
				},
				Stdin: pr,
			})
		}()
		select {
		case l := <-first:
			assert.Equal(t, "ready", l)
		case err := <-done:
			t.Fatalf("command ended before its output was seen: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("no line while the command was running")
		}
		require.NoError(t, pw.Close())
		require.NoError(t, <-done)
	})
	t.Run("one writer for both streams", func(t *testing.T) {
		var both bytes.Buffer
		err := c.Run(ctx, Cmd{
			Argv:   []string{"sh", "-c", `for i in 1 2 3 4 5 6 7 8; do echo out$i; echo err$i >&2; done`},
			Stdout: &both, Stderr: &both,
		})
		require.NoError(t, err)
		assert.Equal(t, 16, strings.Count(both.String(), "\n"))
	})
	t.Run("exit status and stderr tail", func(t *testing.T) {
		err := c.Run(ctx, Cmd{Argv: []string{"sh", "-c", `echo first >&2; echo "disk full" >&2; exit 3`}})
		var ee *ExitError
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, 3, ee.Status)
		assert.Equal(t, "first\ndisk full\n", ee.Stderr)
		assert.Equal(t, `remote command "sh" exited with status 3: disk full`, ee.Error())
		assert.False(t, errors.Is(err, api.ErrSSHConnectionFailed))
	})
	t.Run("long stderr keeps the tail", func(t *testing.T) {
		err := c.Run(ctx, Cmd{Argv: []string{"sh", "-c", `i=0; while [ $i -lt 2000 ]; do echo "line $i" >&2; i=$((i+1)); done; exit 1`}})
		var ee *ExitError
		require.ErrorAs(t, err, &ee)
		assert.LessOrEqual(t, len(ee.Stderr), stderrTailSize)
		assert.True(t, strings.HasSuffix(ee.Stderr, "line 1999\n"))
	})
	t.Run("killed by a signal", func(t *testing.T) {
		err := c.Run(ctx, Cmd{Argv: []string{"sh", "-c", `kill -KILL $$`}})
		var ee *ExitError
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, "KILL", ee.Signal)
		assert.Equal(t, -1, ee.Status)
	})
	t.Run("program not found", func(t *testing.T) {
		err := c.Run(ctx, Cmd{Argv: []string{"no-such-program-rbee"}})
		var ee *ExitError
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, 127, ee.Status)
	})
	t.Run("stdin", func(t *testing.T) {
		var out bytes.Buffer
		require.NoError(t, c.Run(ctx, Cmd{Argv: []string{"cat"}, Stdin: strings.NewReader("piped\n"), Stdout: &out}))
		assert.Equal(t, "piped\n", out.String())
	})
	t.Run("dir", func(t *testing.T) {
		dir := t.TempDir()
		out, err := runOut(c, ctx, Cmd{Argv: []string{"pwd"}, Dir: dir})
		require.NoError(t, err)
		assert.Equal(t, dir+"\n", out)
		err = c.Run(ctx, Cmd{Argv: []string{"pwd"}, Dir: filepath.Join(dir, "missing")})
		var ee *ExitError
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, 125, ee.Status)
	})
	t.Run("env travels on stdin", func(t *testing.T) {
		secret := "tok-" + strings.Repeat("x", 20) + " 'q' $(id) `id`\nsecond line"
		out, err := runOut(c, ctx, Cmd{
			Argv: []string{"sh", "-c", `printf '%s|%s' "$RBEE_TOKEN" "$OTHER"`},
			Env:  map[string]string{"RBEE_TOKEN": secret, "OTHER": "2"},
		})
		require.NoError(t, err)
		assert.Equal(t, secret+"|2", out)

		script, _, err := Cmd{Argv: []string{"x"}, Env: map[string]string{"RBEE_TOKEN": secret}}.script()
		require.NoError(t, err)
		assert.NotContains(t, script, "tok-", "the secret is not on the command line")

		err = c.Run(ctx, Cmd{Argv: []string{"cat"}, Env: map[string]string{"A": "1"}, Stdin: strings.NewReader("x")})
		assert.Error(t, err)
	})
	t.Run("bad argv", func(t *testing.T) {
		for _, argv := range [][]string{nil, {""}, {"-rf"}, {"echo", "a\x00"}} {
			assert.ErrorIs(t, c.Run(ctx, Cmd{Argv: argv}), ErrBadArgv, "%q", argv)
		}
	})
	t.Run("context cancel stops the command", func(t *testing.T) {
		pidc := make(chan int, 1)
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- c.Run(cctx, Cmd{
				Argv: []string{"sh", "-c", `echo $$; exec sleep 30`},
				StdoutLine: func(l string) {
					if pid, err := strconv.Atoi(l); err == nil {
						pidc <- pid
					}
				},
			})
		}()
		var pid int
		select {
		case pid = <-pidc:
		case <-time.After(10 * time.Second):
			t.Fatal("no pid")
		}
		cancel()
		err := <-done
		assert.ErrorIs(t, err, context.Canceled)
		assert.Eventually(t, func() bool {
			alive, err := c.Alive(ctx, pid)
			return err == nil && !alive
		}, 10*time.Second, 50*time.Millisecond, "the remote command was stopped")
	})
}

func runOut(c *Client, ctx context.Context, cmd Cmd) (string, error) {
	var out bytes.Buffer
	cmd.Stdout = &out
	err := c.Run(ctx, cmd)
	return out.String(), err
}

// TestRunInjectionIsInert: words that would run commands if a shell read
// them reach the program unchanged, and run nothing.
func TestRunInjectionIsInert(t *testing.T) {
	s := sshtest.Start(t)
	c := dialServer(t, s)
	canary := filepath.Join(t.TempDir(), "canary")
	for _, inj := range injections {
		inj = strings.ReplaceAll(inj, "CANARY", canary)
		t.Run(inj, func(t *testing.T) {
			out, err := runOut(c, t.Context(), Cmd{Argv: []string{"printf", "%s", inj}})
			require.NoError(t, err)
			assert.Equal(t, inj, out)

			// The same word as program name, directory and environment value.
			err = c.Run(t.Context(), Cmd{Argv: []string{"x" + inj}})
			var ee *ExitError
			require.ErrorAs(t, err, &ee)
			assert.Equal(t, 127, ee.Status)
			err = c.Run(t.Context(), Cmd{Argv: []string{"true"}, Dir: inj})
			require.ErrorAs(t, err, &ee)
			out, err = runOut(c, t.Context(), Cmd{Argv: []string{"sh", "-c", `printf %s "$V"`}, Env: map[string]string{"V": inj}})
			require.NoError(t, err)
			assert.Equal(t, inj, out)

			assert.NoFileExists(t, canary)
		})
	}
}

func TestUname(t *testing.T) {
	s := sshtest.Start(t)
	c := dialServer(t, s)
	p, err := c.Uname(t.Context())
	require.NoError(t, err)
	assert.Equal(t, runtime.GOOS+"/"+runtime.GOARCH, p.String())
}

func TestParseUname(t *testing.T) {
	cases := []struct {
		in   string
		want string
	}{
		{"Linux x86_64\n", "linux/amd64"},
		{"Linux aarch64", "linux/arm64"},
		{"Darwin arm64\n", "darwin/arm64"},
		{"Darwin x86_64", "darwin/amd64"},
		{"Linux armv7l", "linux/arm"},
		{"Linux i686", "linux/386"},
		{"FreeBSD amd64", "freebsd/amd64"},
		{"Linux riscv64", "linux/riscv64"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			p, err := ParseUname(c.in)
			require.NoError(t, err)
			assert.Equal(t, c.want, p.String())
		})
	}
	for _, bad := range []string{"", "Linux", "Plan9 x86_64", "Linux vax", "a b c"} {
		_, err := ParseUname(bad)
		assert.ErrorIs(t, err, ErrUnknownPlatform, "%q", bad)
	}
}

func TestRunAfterClose(t *testing.T) {
	s := sshtest.Start(t)
	c := dialServer(t, s)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close twice")
	err := c.Run(t.Context(), Cmd{Argv: []string{"true"}})
	assert.ErrorIs(t, err, api.ErrSSHConnectionFailed)
	assert.Contains(t, fmt.Sprint(err), s.Host)
	_, err = os.Stat(s.Dir)
	require.NoError(t, err)
}

func TestPidFilter(t *testing.T) {
	cases := []struct {
		name   string
		chunks []string // MARK stands for the marker prefix
		want   string
		pid    int64
	}{
		{"marker first", []string{"MARK42\nerr\n"}, "err\n", 42},
		{"chatter before", []string{"motd line\nMARK7\nafter"}, "motd line\nafter", 7},
		{"byte by byte", []string{"bashrc says hi\nMARK1234\nxy\n"}, "bashrc says hi\nxy\n", 1234},
		{"no marker", []string{"only\nstderr"}, "only\nstderr", 0},
		{"marker text later is kept", []string{"MARK9\nMARK10\n"}, "MARK10\n", 9},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			f, err := newPidFilter(&out)
			require.NoError(t, err)
			mark := string(f.marker)
			for _, ch := range c.chunks {
				p := []byte(strings.ReplaceAll(ch, "MARK", mark))
				step := len(p)
				if c.name == "byte by byte" {
					step = 1
				}
				for len(p) > 0 {
					n, err := f.Write(p[:step])
					require.NoError(t, err)
					assert.Equal(t, step, n)
					p = p[step:]
				}
			}
			f.flush()
			assert.Equal(t, strings.ReplaceAll(c.want, "MARK", mark), out.String())
			assert.Equal(t, c.pid, f.pid.Load())
		})
	}
	t.Run("the shell prints the marker", func(t *testing.T) {
		var out bytes.Buffer
		f, err := newPidFilter(&out)
		require.NoError(t, err)
		cmd := exec.Command("/bin/sh", "-c", f.announce+"echo done >&2")
		cmd.Stderr = f
		require.NoError(t, cmd.Run())
		f.flush()
		assert.Equal(t, "done\n", out.String())
		assert.Positive(t, f.pid.Load())
	})
}
