package e2e

import (
	"context"
	"io"
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
)

// TestExternalStopIsNoSuccess stops a worker mid-stream in the ways that are
// not the keeper's own Ctrl+C (S40) — SIGTERM to the worker, another client
// running rbee workers shutdown, SIGTERM to the hive (its shutdown cascade),
// the hive killed with SIGKILL — and checks
// that each is an honest ending: the stream ends with SHUTTING_DOWN (the
// worker was told to stop; a killed hive's workers get SIGTERM from the
// kernel), the keeper exits 1 with the partial text saved and tokens n/m
// shown (the S39 crash path), and the queen logs and counts the task as
// failed with that code, never as done or cancelled.
func TestExternalStopIsNoSuccess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a queen, a hive and workers, with long generations")
	}
	c := newCluster(t, slowModel(t))
	c.startQueen()
	long := c.inferArgs("--max-tokens", "3000")

	tests := []struct {
		name string
		stop func(t *testing.T, workerID string)
	}{
		{"worker gets SIGTERM", func(t *testing.T, workerID string) {
			require.NoError(t, syscall.Kill(c.pidOf(t, "worker", workerID), syscall.SIGTERM))
		}},
		{"another client shuts the worker down", func(t *testing.T, workerID string) {
			r := c.rbee("workers", "shutdown", "--id", workerID, "--queen-url", c.queenURL())
			require.Equal(t, 0, r.code, r.String())
		}},
		{"hive gets SIGTERM", func(t *testing.T, _ string) {
			hives := c.role("hive")
			require.Len(t, hives, 1)
			require.NoError(t, syscall.Kill(hives[0].pid, syscall.SIGTERM))
		}},
		{"hive killed", func(t *testing.T, _ string) {
			hives := c.role("hive")
			require.Len(t, hives, 1)
			require.NoError(t, syscall.Kill(hives[0].pid, syscall.SIGKILL))
		}},
	}
	failed := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run := c.start(long...)
			run.waitFirstToken(t)
			ws := c.workers()
			require.Len(t, ws, 1)
			tc.stop(t, ws[0].ID)

			r := run.wait(t)
			require.Equal(t, 1, r.code, "%s%s", r, c.logs())
			assertPartialSaved(t, r, 3000)
			assert.Contains(t, r.stderr, "(SHUTTING_DOWN)\n", "the error names its code")
			assert.Contains(t, r.stderr, "is shutting down")
			assert.NotContains(t, r.stderr, "stop: cancelled")
			assert.NotContains(t, r.stderr, "Canceled.")

			failed++
			task := taskID(t, r.stderr)
			ended := c.taskEnded(t, task)
			assert.Contains(t, ended, "outcome=failed", ended)
			assert.Contains(t, ended, "code=SHUTTING_DOWN", ended)
			eventually(t, 10*time.Second, func() bool {
				return c.metric(`rbee_tasks_total{outcome="failed"}`) == failed &&
					c.metric(`rbee_task_errors_total{code="SHUTTING_DOWN"}`) == failed
			}, "the queen did not count the task as failed with SHUTTING_DOWN:\n%s", c.metrics())
			assert.Equal(t, 0, c.metric(`rbee_tasks_total{outcome="done"}`), "no task counts as done")
			assert.Equal(t, 0, c.metric(`rbee_tasks_total{outcome="cancelled"}`), "no task counts as cancelled")
			eventually(t, 15*time.Second, func() bool { return len(c.role("worker")) == 0 },
				"the stopped worker is still running: %v", c.role("worker"))
			// The next case starts at once: its task may meet a hive told
			// to stop still finishing its shutdown. The hive's health then
			// says SHUTTING_DOWN and the queen replaces it.
		})
	}
}

// assertPartialSaved checks the keeper's crash path: "stream closed
// unexpectedly", the tokens generated out of want, and the partial text in
// the file it names, equal to what it printed.
func assertPartialSaved(t *testing.T, r result, want int) {
	t.Helper()
	assert.Contains(t, r.stderr, "stream closed unexpectedly\n")
	m := regexp.MustCompile(`tokens generated: (\d+)/` + strconv.Itoa(want) + `\n`).FindStringSubmatch(r.stderr)
	require.NotNil(t, m, r.stderr)
	n, _ := strconv.Atoi(m[1])
	assert.Positive(t, n)
	assert.Less(t, n, want)
	saved := regexp.MustCompile(`partial text saved to (\S+)\n`).FindStringSubmatch(r.stderr)
	require.NotNil(t, saved, r.stderr)
	t.Cleanup(func() { os.Remove(saved[1]) })
	text, err := os.ReadFile(saved[1])
	require.NoError(t, err)
	assert.NotEmpty(t, text)
	assert.Equal(t, strings.TrimSuffix(r.stdout, "\n"), string(text), "the file holds what was printed")
}

// taskID reads the task id from the keeper's narration ("[queen] Task task-…:").
func taskID(t *testing.T, stderr string) string {
	t.Helper()
	m := regexp.MustCompile(`\[queen\] Task (task-[A-Za-z0-9_-]+):`).FindStringSubmatch(stderr)
	require.NotNil(t, m, stderr)
	return m[1]
}

// pidOf returns the pid of the cluster's process playing role whose
// command line holds marker.
func (c *cluster) pidOf(t *testing.T, role, marker string) int {
	t.Helper()
	for _, p := range c.role(role) {
		if strings.Contains(strings.Join(p.args, " "), marker) {
			return p.pid
		}
	}
	t.Fatalf("no %s process with %q", role, marker)
	return 0
}

// taskEnded waits for the persistent queen's "task ended" log line of the
// task and returns it.
func (c *cluster) taskEnded(t *testing.T, task string) string {
	t.Helper()
	var line string
	eventually(t, 10*time.Second, func() bool {
		data, _ := os.ReadFile(filepath.Join(c.home, "queen-test.log"))
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, "task ended") && strings.Contains(l, "task="+task) {
				line = l
				return true
			}
		}
		return false
	}, "the queen did not log the end of %s:\n%s", task, c.logs())
	return line
}

// metrics returns the queen's GET /metrics ("" when it does not answer).
func (c *cluster) metrics() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.queenURL()+"/metrics", nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return ""
	}
	return string(b)
}

// metric returns the value of one series of the queen's metrics ("name{labels}"),
// or -1 when it is not there.
func (c *cluster) metric(series string) int {
	for _, l := range strings.Split(c.metrics(), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err == nil {
				return n
			}
		}
	}
	return -1
}
