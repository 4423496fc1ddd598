package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"

	"rbee"
	"rbee/internal/proc"
	"rbee/internal/testutil"
)

// TestEphemeral runs rbee infer with no queen running: the keeper starts
// the queen, the queen the local hive, the hive a worker; the tokens come
// out on stdout; and when the command ends nothing is left running.
func TestEphemeral(t *testing.T) {
	c := newCluster(t, tinyModel(t))
	r := c.rbee(c.inferArgs("--max-tokens", "12")...)
	require.Equal(t, 0, r.code, "%s%s", r, c.logs())

	t.Run("S58", func(t *testing.T) {
		assert.NotEmpty(t, strings.TrimSpace(r.stdout), "tokens on stdout")
		assert.NotContains(t, r.stdout, "[queen]", "narration stays off stdout")
		for _, want := range []string{
			"[keeper] No queen at " + c.queenURL() + ": starting one (ephemeral mode)",
			"[queen] Task task-",
			"[queen] Spawning a worker for file:" + c.model,
			"[keeper] 12 tokens",
		} {
			assert.Contains(t, r.stderr, want)
		}
		assert.NotContains(t, r.stderr, r.stdout[:min(len(r.stdout), 8)], "tokens stay off stderr")
	})
	t.Run("S51", func(t *testing.T) {
		assert.Empty(t, c.processes(), "queen, hive and worker are gone when the keeper exits")
		_, err := os.Stat(filepath.Join(c.home, "logs", "queen.log"))
		assert.NoError(t, err, "the ephemeral queen logs to RBEE_HOME/logs/queen.log")
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err = c.client().Health(ctx)
		assert.Error(t, err, "no queen answers any more")
	})
}

// TestPersistent runs the keeper against a queen that was already running:
// the queen, hive and worker outlive the command, a second inference
// reuses the worker, and the workers commands see and stop it.
func TestPersistent(t *testing.T) {
	c := newCluster(t, tinyModel(t))
	queen := c.startQueen()

	r := c.rbee(c.inferArgs("--max-tokens", "8")...)
	require.Equal(t, 0, r.code, "%s%s", r, c.logs())
	assert.NotContains(t, r.stderr, "ephemeral")
	assert.NotEmpty(t, strings.TrimSpace(r.stdout))
	// The worker the subtests below build on (each can run alone).
	ws := c.workers()
	require.Len(t, ws, 1)
	worker := ws[0]

	t.Run("S52", func(t *testing.T) {
		select {
		case <-queen.Exited():
			t.Fatal("the keeper stopped a queen it did not start")
		default:
		}
		_, err := c.client().Health(t.Context())
		assert.NoError(t, err, "the queen still answers")
	})
	t.Run("S50", func(t *testing.T) {
		assert.Len(t, c.role("hive"), 1, "the hive keeps running")
		assert.Len(t, c.role("worker"), 1, "the worker keeps running")
		assert.Equal(t, rbee.StateIdle, worker.State)
		assert.Equal(t, "file:"+c.model, worker.ModelRef)
	})

	t.Run("S08", func(t *testing.T) {
		r := c.rbee(c.inferArgs("--max-tokens", "8", "--prompt", "The second time")...)
		require.Equal(t, 0, r.code, "%s%s", r, c.logs())
		assert.Contains(t, r.stderr, "Reusing idle worker "+worker.ID)
		assert.NotContains(t, r.stderr, "Spawning")
		assert.NotContains(t, r.stderr, "Starting rbee-hive")
		ws := c.workers()
		require.Len(t, ws, 1, "no new worker")
		assert.Equal(t, worker.ID, ws[0].ID)
		t.Logf("warm start: the whole rbee infer command took %s", r.took)
	})

	// A second node: a hive on another port with its own home, registered
	// in the queen's registry as "mac" (as add-node would after its SSH
	// check), reached at ssh_host:hive_port.
	mac := startHive(t, c)
	registerNode(t, c, "mac", mac)

	t.Run("S59", func(t *testing.T) {
		r := c.rbee(c.inferArgs("--node", "mac", "--max-tokens", "4")...)
		require.Equal(t, 0, r.code, "%s%s", r, c.logs())
		r = c.rbee("workers", "list", "--queen-url", c.queenURL())
		require.Equal(t, 0, r.code, r.String())
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		require.Len(t, lines, 3, "a header and one worker per node:\n%s", r.stdout)
		assert.Regexp(t, `^NODE\s+WORKER\s+MODEL\s+BACKEND\s+STATE`, lines[0])
		nodes := map[string]string{}
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			nodes[f[0]] = f[4]
		}
		assert.Equal(t, map[string]string{"local": "idle", "mac": "idle"}, nodes)

		r = c.rbee("workers", "list", "--json", "--queen-url", c.queenURL())
		require.Equal(t, 0, r.code, r.String())
		assert.NotContains(t, r.stdout, "api_key", "worker tokens never reach keepers")
	})

	t.Run("S59 unreachable node", func(t *testing.T) {
		// A registered node whose hive does not answer is shown, not left out.
		listed := len(c.workers()) // local's, and mac's after S59
		registerNode(t, c, "gone", freePortNot(t, c))
		t.Cleanup(func() { c.rbee("setup", "remove-node", "--name", "gone", "--queen-url", c.queenURL()) })
		r := c.rbee("workers", "list", "--queen-url", c.queenURL())
		require.Equal(t, 0, r.code, r.String())
		assert.Regexp(t, `(?m)^gone\s+-\s+-\s+-\s+unreachable\s`, r.stdout)
		assert.Regexp(t, `(?m)^local\s+w-\S+\s+\S+\s+cpu:0\s+idle\s`, r.stdout, "the others are still listed")
		assert.Contains(t, r.stderr, "node gone is unreachable: ")
		assert.Contains(t, r.stderr, "(CONNECTION_TIMEOUT)\n")
		assert.Contains(t, r.stderr, "hint: Check if rbee-hive is running on gone (rbee workers health --node gone)\n")

		r = c.rbee("workers", "list", "--json", "--queen-url", c.queenURL())
		require.Equal(t, 0, r.code, r.String())
		var l rbee.WorkerList
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &l), r.stdout)
		require.Len(t, l.Unreachable, 1, r.stdout)
		assert.Equal(t, "gone", l.Unreachable[0].Node)
		assert.Equal(t, rbee.ErrConnectionTimeout.Code, l.Unreachable[0].Error.Code)
		assert.Len(t, l.Workers, listed, "the reachable nodes' workers are all listed")
	})

	t.Run("S60", func(t *testing.T) {
		r := c.rbee("workers", "health", "--node", "local", "--queen-url", c.queenURL())
		require.Equal(t, 0, r.code, r.String())
		assert.Contains(t, r.stdout, "Node local: hive alive (version "+rbee.Version+", api v1) at http://127.0.0.1:"+strconv.Itoa(c.hivePort))
		assert.Contains(t, r.stdout, worker.ID)
		assert.Regexp(t, regexp.MustCompile(regexp.QuoteMeta(worker.ID)+`\s+\S+\s+cpu:0\s+idle\s+0/1\s+0\s`), r.stdout, "idle: 0 of 1 slots busy, nothing queued")

		r = c.rbee("workers", "health", "--node", "nowhere", "--queen-url", c.queenURL())
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, "rbee workers: ")
		assert.Contains(t, r.stderr, "hint: ")
	})

	t.Run("S61", func(t *testing.T) {
		var found bool
		for _, p := range c.role("worker") {
			found = found || strings.Contains(strings.Join(p.args, " "), worker.ID)
		}
		require.True(t, found, "the worker runs before")
		r := c.rbee("workers", "shutdown", "--id", worker.ID, "--queen-url", c.queenURL())
		require.Equal(t, 0, r.code, r.String())
		assert.Equal(t, "Worker "+worker.ID+" stopped.\n", r.stdout)
		for _, w := range c.workers() {
			assert.NotEqual(t, worker.ID, w.ID, "the worker is gone from the list")
		}
		eventually(t, 10*time.Second, func() bool {
			for _, p := range c.role("worker") {
				if strings.Contains(strings.Join(p.args, " "), worker.ID) {
					return false
				}
			}
			return true
		}, "the worker process is still running")

		r = c.rbee("workers", "shutdown", "--id", worker.ID, "--queen-url", c.queenURL())
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, worker.ID)
	})

	t.Run("S05", func(t *testing.T) {
		r := c.rbee("setup", "list-nodes", "--queen-url", c.queenURL())
		require.Equal(t, 0, r.code, r.String())
		assert.Contains(t, r.stdout, "mac (127.0.0.1)")
		r = c.rbee("setup", "remove-node", "--name", "mac", "--queen-url", c.queenURL())
		require.Equal(t, 0, r.code, r.String())
		assert.Equal(t, "Removed node mac.\n", r.stdout)
		r = c.rbee("setup", "list-nodes", "--queen-url", c.queenURL())
		assert.NotContains(t, r.stdout, "mac")
	})
}

// startHive runs a second hive, as a remote node's would run, and returns
// its port. The test stops it (the queen did not start it).
func startHive(t *testing.T, c *cluster) int {
	t.Helper()
	port := freePortNot(t, c)
	home := t.TempDir()
	p, err := proc.Start(proc.Spec{Path: c.bin, Env: []string{"RBEE_HOME=" + home, oneSlot},
		Args: []string{"hive", "--port", strconv.Itoa(port), "--home", home, "--worker-port-start", strconv.Itoa(freePortNot(t, c))},
		// The marker of c.processes: the cluster's home is in the log path.
		LogFile: filepath.Join(c.home, "hive-mac.log")})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = p.Stop(ctx, 20*time.Second)
	})
	health := "http://127.0.0.1:" + strconv.Itoa(port) + "/v1/health"
	hc := &http.Client{Timeout: time.Second}
	eventually(t, 20*time.Second, func() bool {
		resp, err := hc.Get(health)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "the second hive did not start: %s", c.logs())
	return port
}

func freePortNot(t *testing.T, c *cluster) int {
	for {
		p := testutil.FreePort(t)
		if p != c.queenPort && p != c.hivePort && p != c.workerPort {
			return p
		}
	}
}

// registerNode writes a node into the queen's registry, as add-node does
// after its SSH check.
func registerNode(t *testing.T, c *cluster, name string, hivePort int) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(c.home, "beehives.db")+"?_pragma=busy_timeout(5000)")
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(`INSERT INTO beehives (node_name, ssh_host, ssh_port, ssh_user, install_path, hive_port, status)
		VALUES (?, '127.0.0.1', 22, '', '/opt/rbee', ?, 'reachable')`, name, hivePort)
	require.NoError(t, err)
}

// TestInterrupt covers the two ways a streaming inference ends early: the
// user presses Ctrl+C (S40) and the worker dies (S39).
func TestInterrupt(t *testing.T) {
	c := newCluster(t, slowModel(t))
	c.startQueen()
	long := c.inferArgs("--max-tokens", "3000")

	t.Run("S40", func(t *testing.T) {
		run := c.start(long...)
		run.waitFirstToken(t)
		require.NoError(t, run.cmd.Process.Signal(syscall.SIGINT))
		r := run.wait(t)
		assert.Equal(t, 130, r.code, "%s%s", r, c.logs())
		assert.True(t, strings.HasSuffix(r.stderr, "Canceled.\n"), r.stderr)
		// The queen tells a cancellation by its own client from a failure.
		ended := c.taskEnded(t, taskID(t, r.stderr))
		assert.Contains(t, ended, "outcome=cancelled", ended)
		eventually(t, 10*time.Second, func() bool { return c.metric(`rbee_tasks_total{outcome="cancelled"}`) == 1 },
			"the queen did not count the task as cancelled:\n%s", c.metrics())
		// The slot is free again: the worker is idle and takes the next task.
		eventually(t, 10*time.Second, func() bool {
			ws := c.workers()
			return len(ws) == 1 && ws[0].State == rbee.StateIdle && ws[0].SlotsAvailable == ws[0].SlotsTotal
		}, "the worker did not go back to idle: %v", c.workers())
	})

	t.Run("S39", func(t *testing.T) {
		run := c.start(long...)
		run.waitFirstToken(t)
		ws := c.workers()
		require.Len(t, ws, 1)
		var pid int
		for _, p := range c.role("worker") {
			if strings.Contains(strings.Join(p.args, " "), ws[0].ID) {
				pid = p.pid
			}
		}
		require.NotZero(t, pid, "the worker process of %s", ws[0].ID)
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))

		r := run.wait(t)
		assert.Equal(t, 1, r.code, "%s%s", r, c.logs())
		assert.Contains(t, r.stderr, "stream closed unexpectedly\n")
		m := regexp.MustCompile(`tokens generated: (\d+)/3000\n`).FindStringSubmatch(r.stderr)
		require.NotNil(t, m, r.stderr)
		n, _ := strconv.Atoi(m[1])
		assert.Positive(t, n)
		assert.Less(t, n, 3000)
		saved := regexp.MustCompile(`partial text saved to (\S+)\n`).FindStringSubmatch(r.stderr)
		require.NotNil(t, saved, r.stderr)
		t.Cleanup(func() { os.Remove(saved[1]) })
		text, err := os.ReadFile(saved[1])
		require.NoError(t, err)
		assert.Equal(t, strings.TrimSuffix(r.stdout, "\n"), string(text), "the file holds what was printed")
		assert.Contains(t, r.stderr, "(WORKER_CRASHED)\n", "the error names its code")
		ended := c.taskEnded(t, taskID(t, r.stderr))
		assert.Contains(t, ended, "outcome=failed", ended)
		assert.Contains(t, ended, "code=WORKER_CRASHED", ended)
		eventually(t, 10*time.Second, func() bool { return len(c.workers()) == 0 }, "the hive did not remove the dead worker")
	})
}
