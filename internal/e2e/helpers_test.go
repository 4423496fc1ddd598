package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"rbee"
	"rbee/internal/proc"
	"rbee/internal/synth"
	"rbee/internal/testutil"
)

// commandTimeout bounds one rbee command in a test.
const commandTimeout = 90 * time.Second

// cluster is one rbee installation for a test: the binary, a home, a model
// and free ports for the queen, the local hive and its workers.
type cluster struct {
	t          testing.TB
	bin        string
	home       string
	model      string
	queenPort  int
	hivePort   int
	workerPort int
}

// skipShort skips a test with -short: every test here runs real daemons.
func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs real queen, hive and worker processes")
	}
}

func newCluster(t testing.TB, model string) *cluster {
	t.Helper()
	skipShort(t)
	c := &cluster{
		t:          t,
		bin:        testutil.RbeeBinary(t),
		home:       t.TempDir(),
		model:      model,
		queenPort:  testutil.FreePort(t),
		hivePort:   testutil.FreePort(t),
		workerPort: testutil.FreePort(t),
	}
	t.Cleanup(func() { c.assertNoProcesses(t) })
	return c
}

func (c *cluster) queenURL() string { return "http://127.0.0.1:" + strconv.Itoa(c.queenPort) }

// client is the library client of this cluster's queen.
func (c *cluster) client() *rbee.Client { return &rbee.Client{BaseURL: c.queenURL()} }

// oneSlot gives the workers of a cluster one slot each (a worker inherits
// its hive's environment, and a local hive its queen's): the scenarios were
// written for workers that a second task finds busy.
const oneSlot = "RBEE_WORKER_SLOTS=1"

// env is the environment of the commands: RBEE_HOME set, one slot per
// worker, and nothing of the test runner's rbee settings.
func (c *cluster) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RBEE_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "RBEE_HOME="+c.home, oneSlot)
}

// tinyModel writes the small synthetic model the scenarios use.
func tinyModel(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tiny-Q8_0.gguf")
	require.NoError(t, synth.Write(path, synth.Tiny("Q8_0")))
	return path
}

// slowModel writes a model large enough that a long generation lasts
// seconds: time to interrupt it or kill its worker mid-stream.
func slowModel(t testing.TB) string {
	t.Helper()
	skipShort(t) // before the model takes its seconds to write
	path := filepath.Join(t.TempDir(), "slow-Q8_0.gguf")
	spec := synth.Spec{Name: "synthetic-slow-Q8_0", Embedding: 768, Layers: 8, Heads: 12, HeadsKV: 4,
		FeedForward: 2048, Vocab: 2048, Context: 4096, Quant: "Q8_0", Seed: 3, OutputScale: 4}
	require.NoError(t, synth.Write(path, spec))
	return path
}

// inferArgs is an rbee infer command line for this cluster's model.
func (c *cluster) inferArgs(extra ...string) []string {
	args := []string{"infer", "--queen-url", c.queenURL(),
		"--hive-port", strconv.Itoa(c.hivePort), "--worker-port-start", strconv.Itoa(c.workerPort),
		"--model", "file:" + c.model, "--prompt", "Once upon a time", "--temperature", "0"}
	return append(args, extra...)
}

type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %s\n--- stdout\n%s\n--- stderr\n%s", r.code, r.took, r.stdout, r.stderr)
}

// rbee runs one rbee command to its end.
func (c *cluster) rbee(args ...string) result {
	c.t.Helper()
	return runRbee(c.t, c.bin, c.env(), args...)
}

// runRbee runs bin with args and exactly env to its end (or commandTimeout)
// and returns its output and exit code; failing to run it at all fails t.
func runRbee(t testing.TB, bin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("running rbee %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// running is an rbee command in progress whose stdout the test reads as it
// comes.
type running struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	stdout  bytes.Buffer
	stderr  bytes.Buffer
	first   chan struct{} // closed at the first byte on stdout
	exited  chan struct{}
	waitErr error
}

func (c *cluster) start(args ...string) *running {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = c.env()
	r := &running{cmd: cmd, first: make(chan struct{}), exited: make(chan struct{})}
	cmd.Stderr = &lockedWriter{mu: &r.mu, w: &r.stderr}
	pipe, err := cmd.StdoutPipe()
	require.NoError(c.t, err)
	require.NoError(c.t, cmd.Start())
	go func() {
		var once sync.Once
		buf := make([]byte, 4096)
		for {
			n, err := pipe.Read(buf)
			if n > 0 {
				r.mu.Lock()
				r.stdout.Write(buf[:n])
				r.mu.Unlock()
				once.Do(func() { close(r.first) })
			}
			if err != nil {
				break
			}
		}
		r.waitErr = cmd.Wait()
		close(r.exited)
	}()
	c.t.Cleanup(func() {
		select {
		case <-r.exited:
		default:
			_ = cmd.Process.Kill()
			<-r.exited
		}
	})
	return r
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// wait waits for the command's end and returns its result.
func (r *running) wait(t testing.TB) result {
	t.Helper()
	select {
	case <-r.exited:
	case <-time.After(commandTimeout):
		t.Fatalf("rbee %s did not end", strings.Join(r.cmd.Args[1:], " "))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return result{code: r.cmd.ProcessState.ExitCode(), stdout: r.stdout.String(), stderr: r.stderr.String()}
}

// waitFirstToken waits until the command printed something on stdout.
func (r *running) waitFirstToken(t testing.TB) {
	t.Helper()
	select {
	case <-r.first:
	case <-r.exited:
		t.Fatalf("rbee ended before printing a token:\n%s", r.wait(t))
	case <-time.After(commandTimeout):
		t.Fatal("no token came")
	}
}

// startQueen runs a persistent queen (rbee queen) for the rest of the test,
// with extra flags (hidden test flags like --busy-retry-delays) if given.
func (c *cluster) startQueen(extra ...string) *proc.Process {
	c.t.Helper()
	p, err := proc.Start(proc.Spec{Path: c.bin, Env: []string{"RBEE_HOME=" + c.home, oneSlot},
		Args: append([]string{"queen", "--port", strconv.Itoa(c.queenPort), "--home", c.home,
			"--local-hive-port", strconv.Itoa(c.hivePort), "--local-worker-port-start", strconv.Itoa(c.workerPort)}, extra...),
		LogFile: filepath.Join(c.home, "queen-test.log")})
	require.NoError(c.t, err)
	c.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		_ = p.Stop(ctx, 35*time.Second)
	})
	c.waitHealthy(c.client(), p)
	return p
}

// waitHealthy waits until the queen answers (or its process ends).
func (c *cluster) waitHealthy(q *rbee.Client, p *proc.Process) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := q.Health(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-p.Exited():
			c.t.Fatalf("the daemon exited: %s", c.logs())
		case <-time.After(50 * time.Millisecond):
		}
	}
	c.t.Fatalf("the daemon did not answer: %s", c.logs())
}

// logs returns every log of the cluster, for failure messages.
func (c *cluster) logs() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(c.home, "*.log"))
	more, _ := filepath.Glob(filepath.Join(c.home, "logs", "*.log"))
	for _, f := range append(files, more...) {
		data, _ := os.ReadFile(f)
		fmt.Fprintf(&b, "\n--- %s\n%s", filepath.Base(f), data)
	}
	return b.String()
}

func (c *cluster) workers() []rbee.WorkerInfo {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, err := c.client().Workers(ctx)
	require.NoError(c.t, err)
	return ws
}

// process is a running process of this cluster.
type process struct {
	pid  int
	args []string
}

func (p process) String() string { return fmt.Sprintf("%d %s", p.pid, strings.Join(p.args, " ")) }

// processes lists the live processes of the rbee binary that belong to
// this cluster: their command line names its home or one of its ports.
func (c *cluster) processes() []process {
	markers := []string{c.home, "127.0.0.1:" + strconv.Itoa(c.hivePort) + "/", "--port " + strconv.Itoa(c.queenPort)}
	entries, _ := os.ReadDir("/proc")
	var out []process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if args[0] != c.bin || isZombie(pid) {
			continue
		}
		line := strings.Join(args, " ")
		for _, m := range markers {
			if strings.Contains(line, m) {
				out = append(out, process{pid, args})
				break
			}
		}
	}
	return out
}

func isZombie(pid int) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return true
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), "State:") {
			return strings.Contains(s.Text(), "Z")
		}
	}
	return false
}

// role returns the processes playing a role (queen, hive, worker).
func (c *cluster) role(name string) []process {
	var out []process
	for _, p := range c.processes() {
		if len(p.args) > 1 && p.args[1] == name {
			out = append(out, p)
		}
	}
	return out
}

// assertNoProcesses checks, at the end of a test, that nothing the test
// started is left; what is left is killed.
func (c *cluster) assertNoProcesses(t testing.TB) {
	var left []process
	deadline := time.Now().Add(15 * time.Second)
	for {
		left = c.processes()
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range left {
		t.Errorf("process left behind: %s", p)
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
}

// eventually polls cond every 20 ms for up to d.
func eventually(t testing.TB, d time.Duration, cond func() bool, format string, a ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(format, a...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
