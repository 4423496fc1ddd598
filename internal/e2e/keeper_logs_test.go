package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee"
)

// rbeeWith runs one rbee command with extra environment variables
// ("NAME=value") on top of the cluster's.
func (c *cluster) rbeeWith(env []string, args ...string) result {
	c.t.Helper()
	return runRbee(c.t, c.bin, append(c.env(), env...), args...)
}

// stdout returns what a running command printed so far.
func (r *running) stdoutSoFar() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stdout.String()
}

// TestS62Logs: rbee logs --node local shows the hive's and the worker's
// log lines through a persistent queen; with --follow it prints lines as
// they are written until Ctrl+C (exit 130), without it it exits 0.
func TestS62Logs(t *testing.T) {
	c := newCluster(t, tinyModel(t))
	c.startQueen()
	r := c.rbee(c.inferArgs("--max-tokens", "4")...)
	require.Equal(t, 0, r.code, "%s%s", r, c.logs())
	ws := c.workers()
	require.Len(t, ws, 1)
	worker := ws[0].ID
	workerLine := regexp.MustCompile(`(?m)^\[` + regexp.QuoteMeta(worker) + `\] \d{4}-\d\d-\d\dT`)

	t.Run("follow", func(t *testing.T) {
		run := c.start("logs", "--node", "local", "--follow", "--queen-url", c.queenURL())
		eventually(t, 20*time.Second, func() bool {
			out := run.stdoutSoFar()
			return workerLine.MatchString(out) && strings.Contains(out, "[hive] ")
		}, "rbee logs --follow did not show the worker's and the hive's lines:\n%s", run.stdoutSoFar())

		// Lines written while following: the hive's about stopping the
		// worker, then a new worker's, from a file that did not exist.
		r := c.rbee("workers", "shutdown", "--id", worker, "--queen-url", c.queenURL())
		require.Equal(t, 0, r.code, r.String())
		eventually(t, 20*time.Second, func() bool {
			return strings.Contains(run.stdoutSoFar(), "shutting down worker on request")
		}, "the hive's new line did not come:\n%s", run.stdoutSoFar())
		r = c.rbee(c.inferArgs("--max-tokens", "2")...)
		require.Equal(t, 0, r.code, "%s%s", r, c.logs())
		ws := c.workers()
		require.Len(t, ws, 1)
		require.NotEqual(t, worker, ws[0].ID)
		eventually(t, 20*time.Second, func() bool {
			return strings.Contains(run.stdoutSoFar(), "["+ws[0].ID+"] ")
		}, "the new worker's lines did not come:\n%s", run.stdoutSoFar())

		require.NoError(t, run.cmd.Process.Signal(syscall.SIGINT))
		res := run.wait(t)
		assert.Equal(t, 130, res.code, "%s%s", res, c.logs())
		assert.Equal(t, "Canceled.\n", res.stderr)
	})

	t.Run("last lines", func(t *testing.T) {
		r := c.rbee("logs", "--node", "local", "--lines", "5", "--queen-url", c.queenURL())
		require.Equal(t, 0, r.code, r.String())
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		assert.Len(t, lines, 5, r.stdout)
		for _, l := range lines {
			assert.Regexp(t, `^\[(hive|w-[0-9a-f]{12})\] `, l)
		}
		assert.Empty(t, r.stderr)

		r = c.rbee("logs", "--node", "local", "--json", "--queen-url", c.queenURL())
		require.Equal(t, 0, r.code, r.String())
		sources := map[string]bool{}
		for _, l := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
			var ll rbee.LogLine
			require.NoError(t, json.Unmarshal([]byte(l), &ll), l)
			assert.Equal(t, "local", ll.Node)
			sources[ll.Source] = true
		}
		assert.True(t, sources["hive"], "the hive's lines: %v", sources)
		assert.True(t, sources[worker], "the worker's lines: %v", sources)
		assert.NotContains(t, r.stdout, "queen listening", "the queen's own log is not the node's")
	})

	t.Run("unknown node", func(t *testing.T) {
		r := c.rbee("logs", "--node", "nowhere", "--queen-url", c.queenURL())
		assert.Equal(t, 1, r.code, r.String())
		assert.Contains(t, r.stderr, "rbee logs: ")
		assert.Contains(t, r.stderr, "rbee setup add-node --name nowhere")
	})
}

// TestS44WrongAPIKey: against a queen with a token, a keeper with a wrong
// or no RBEE_API_KEY is refused (401 INVALID_API_KEY / MISSING_API_KEY); it
// says that authentication failed at the queen's URL, that the key comes
// from $RBEE_API_KEY and which configuration file is in use, and exits 1.
// Scenario S44 of DESIGN §12.
func TestS44WrongAPIKey(t *testing.T) {
	c := newCluster(t, tinyModel(t))
	const token = "s44-the-right-token-0123456789"
	keyFile := filepath.Join(t.TempDir(), "queen.key")
	require.NoError(t, os.WriteFile(keyFile, []byte(token+"\n"), 0o600))
	c.startQueen("--api-key-file", keyFile)
	config := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(config, []byte("[queen]\nurl = \""+c.queenURL()+"\"\n"), 0o600))

	tests := []struct {
		name string
		env  []string
		args []string
		code string
		want []string
	}{
		{"infer, wrong key", []string{"RBEE_API_KEY=not-the-right-token-01234"}, c.inferArgs(), "INVALID_API_KEY",
			[]string{"rbee infer: authentication failed at " + c.queenURL() + " (address from --queen-url)", "refused the API key in $RBEE_API_KEY"}},
		{"infer, no key", nil, c.inferArgs(), "MISSING_API_KEY",
			[]string{"rbee infer: authentication failed at " + c.queenURL(), "$RBEE_API_KEY is not set"}},
		{"workers list, wrong key, configured queen", []string{"RBEE_API_KEY=not-the-right-token-01234", "RBEE_CONFIG=" + config},
			[]string{"workers", "list"}, "INVALID_API_KEY",
			[]string{"rbee workers: authentication failed at " + c.queenURL() + " (address from queen.url in " + config + ")",
				"configuration: " + config}},
		{"logs, no key", nil, []string{"logs", "--queen-url", c.queenURL()}, "MISSING_API_KEY",
			[]string{"rbee logs: authentication failed at " + c.queenURL()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := c.rbeeWith(tc.env, tc.args...)
			assert.Equal(t, 1, r.code, r.String())
			assert.Empty(t, r.stdout)
			assert.Contains(t, r.stderr, "("+tc.code+")")
			for _, w := range tc.want {
				assert.Contains(t, r.stderr, w)
			}
			assert.Contains(t, r.stderr, "hint: set $RBEE_API_KEY to the queen's token")
			assert.NotContains(t, r.stderr, token)
			if !strings.Contains(strings.Join(tc.env, " "), "RBEE_CONFIG") {
				assert.Contains(t, r.stderr, "configuration: ", "where a configuration would be read from")
			}
		})
	}
	assert.Empty(t, c.role("hive"), "a refused keeper starts nothing")
	assert.Empty(t, c.role("worker"))

	r := c.rbeeWith([]string{"RBEE_API_KEY=" + token}, "workers", "list", "--queen-url", c.queenURL())
	assert.Equal(t, 0, r.code, r.String())
	assert.Equal(t, "No workers.\n", r.stdout, "the right key is accepted")
}

// TestS45IdleTimeout: a worker idle for longer than the local hive's idle
// timeout (set through rbee queen --local-idle-timeout) is shut down and
// unregistered, the hive stays, and the next inference cold-starts a new
// worker.
// Scenario S45 of DESIGN §12.
func TestS45IdleTimeout(t *testing.T) {
	c := newCluster(t, tinyModel(t))
	c.startQueen("--local-idle-timeout", "2s")
	r := c.rbee(c.inferArgs("--max-tokens", "4")...)
	require.Equal(t, 0, r.code, "%s%s", r, c.logs())
	assert.Contains(t, r.stderr, "[queen] Spawning a worker")
	ws := c.workers()
	require.Len(t, ws, 1)
	first := ws[0].ID

	eventually(t, 20*time.Second, func() bool { return len(c.workers()) == 0 },
		"the idle worker was not unregistered: %v\n%s", c.workers(), c.logs())
	r = c.rbee("workers", "list", "--queen-url", c.queenURL())
	require.Equal(t, 0, r.code, r.String())
	assert.Equal(t, "No workers.\n", r.stdout)
	eventually(t, 15*time.Second, func() bool { return len(c.role("worker")) == 0 }, "the idle worker process still runs")
	assert.Len(t, c.role("hive"), 1, "the idle timeout stops the worker, not the hive")
	hiveLog, err := os.ReadFile(filepath.Join(c.home, "logs", "hive-local.log"))
	require.NoError(t, err)
	assert.Contains(t, string(hiveLog), "worker idle for too long; shutting it down")
	assert.Contains(t, string(hiveLog), "idle_timeout=2s")

	r = c.rbee(c.inferArgs("--max-tokens", "4")...)
	require.Equal(t, 0, r.code, "%s%s", r, c.logs())
	assert.Contains(t, r.stderr, "[queen] Spawning a worker", "a cold start")
	assert.NotContains(t, r.stderr, "Reusing")
	ws = c.workers()
	require.Len(t, ws, 1)
	assert.NotEqual(t, first, ws[0].ID, "a new worker")
}
