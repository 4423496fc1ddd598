package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/cliutil"
	"rbee/internal/testutil"
)

func noEnv(string) string { return "" }

func TestParseArgs(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		cfg, level, err := parseArgs(nil, &bytes.Buffer{}, noEnv)
		require.NoError(t, err)
		assert.Equal(t, "127.0.0.1:8080", cfg.Addr)
		assert.Equal(t, 9200, cfg.LocalHivePort)
		assert.Equal(t, 8001, cfg.LocalWorkerPortStart)
		assert.Equal(t, DefaultLoadingTimeout, cfg.LoadingTimeout)
		assert.Nil(t, cfg.HiveRetryDelays, "New applies the default policy")
		assert.Nil(t, cfg.BusyRetryDelays)
		assert.Empty(t, cfg.Token)
		assert.Equal(t, hclog.Info, level)
	})
	t.Run("everything", func(t *testing.T) {
		cfg, level, err := parseArgs([]string{"--host", "0.0.0.0", "--port", "18080", "--home", "/tmp/h", "--binary", "/bin/rbee",
			"--local-hive-port", "19200", "--local-worker-port-start", "18001", "--loading-timeout", "90s", "--log-level", "debug",
			"--hive-retry-delays", "0s,10ms", "--busy-retry-delays=5ms,6ms", "--hive-start-timeout", "3s"},
			&bytes.Buffer{}, func(k string) string {
				if k == "RBEE_API_KEY" {
					return " env-token-0123456789 \n"
				}
				return ""
			})
		require.NoError(t, err)
		assert.Equal(t, "0.0.0.0:18080", cfg.Addr)
		assert.Equal(t, "/tmp/h", cfg.Home)
		assert.Equal(t, "/bin/rbee", cfg.Binary)
		assert.Equal(t, 19200, cfg.LocalHivePort)
		assert.Equal(t, 18001, cfg.LocalWorkerPortStart)
		assert.Equal(t, 90*time.Second, cfg.LoadingTimeout)
		assert.Equal(t, []time.Duration{0, 10 * time.Millisecond}, cfg.HiveRetryDelays)
		assert.Equal(t, []time.Duration{5 * time.Millisecond, 6 * time.Millisecond}, cfg.BusyRetryDelays)
		assert.Equal(t, 3*time.Second, cfg.HiveStartTimeout)
		assert.Equal(t, "env-token-0123456789", cfg.Token)
		assert.Equal(t, hclog.Debug, level)
	})
	t.Run("no busy retries", func(t *testing.T) {
		cfg, _, err := parseArgs([]string{"--busy-retry-delays="}, &bytes.Buffer{}, noEnv)
		require.NoError(t, err)
		assert.NotNil(t, cfg.BusyRetryDelays)
		assert.Empty(t, cfg.BusyRetryDelays)
	})
	t.Run("help hides the test flags", func(t *testing.T) {
		var out bytes.Buffer
		_, _, err := parseArgs([]string{"--help"}, &out, noEnv)
		require.ErrorIs(t, err, cliutil.ErrHelp)
		assert.Contains(t, out.String(), "--local-hive-port")
		assert.NotContains(t, out.String(), "retry-delays")
		assert.NotContains(t, out.String(), "hive-start-timeout")
	})

	bad := []struct {
		name string
		args []string
	}{
		{"unknown flag", []string{"--bogus"}},
		{"stray argument", []string{"extra"}},
		{"port", []string{"--port", "70000"}},
		{"port type", []string{"--port", "eighty"}},
		{"hive port", []string{"--local-hive-port", "0"}},
		{"worker port", []string{"--local-worker-port-start", "-5"}},
		{"same ports", []string{"--port", "9300", "--local-hive-port", "9300"}},
		{"loading timeout", []string{"--loading-timeout", "-1s"}},
		{"log level", []string{"--log-level", "loud"}},
		{"empty host", []string{"--host", ""}},
		{"hive delays", []string{"--hive-retry-delays", "soon"}},
		{"hive delays empty", []string{"--hive-retry-delays="}},
		{"busy delays negative", []string{"--busy-retry-delays", "1s,-2s"}},
		{"start timeout", []string{"--hive-start-timeout", "0s"}},
		{"hidden flag without value", []string{"--hive-start-timeout"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseArgs(tc.args, &bytes.Buffer{}, noEnv)
			var ue *cliutil.UsageError
			require.True(t, errors.As(err, &ue), "a usage error (exit 2), got %v", err)
		})
	}
}

func TestAPIKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	good := write("good", "file-token-0123456789\n", 0o600)
	cfg, _, err := parseArgs([]string{"--api-key-file", good}, &bytes.Buffer{}, func(k string) string {
		if k == "RBEE_API_KEY" {
			return "env-token-ignored"
		}
		return ""
	})
	require.NoError(t, err)
	assert.Equal(t, "file-token-0123456789", cfg.Token, "the flag beats the environment")

	for name, path := range map[string]string{
		"group readable": write("wide", "file-token-0123456789", 0o640),
		"world readable": write("world", "file-token-0123456789", 0o644),
		"empty":          write("empty", "\n", 0o600),
		"two words":      write("two", "a b", 0o600),
		"missing":        filepath.Join(dir, "missing"),
		"directory":      dir,
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := parseArgs([]string{"--api-key-file", path}, &bytes.Buffer{}, noEnv)
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "file-token-0123456789", "the key is never echoed")
		})
	}
}

// TestRunRefusesOpenBindWithoutToken: beyond loopback a token is required.
func TestRunRefusesOpenBindWithoutToken(t *testing.T) {
	q, err := New(Config{Home: t.TempDir(), Addr: "0.0.0.0:0"})
	require.NoError(t, err)
	err = q.Run(t.Context())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "API key")
	assert.Error(t, q.Run(t.Context()), "Run runs once")
}

// TestMainServesUntilCancelled: Main serves the API and returns nil when its
// context ends.
func TestMainServesUntilCancelled(t *testing.T) {
	port := testutil.FreePort(t)
	ctx, cancel := context.WithCancel(t.Context())
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, []string{"--port", strconv.Itoa(port), "--home", t.TempDir(), "--local-hive-port",
			strconv.Itoa(testutil.FreePort(t))}, &stderr)
	}()
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Main did not return after its context ended")
	}
	assert.Contains(t, stderr.String(), "queen listening")
}

// TestListenerConfig: a queen given a listener serves on it.
func TestListenerConfig(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	q, err := New(Config{Home: t.TempDir(), Listener: ln})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + ln.Addr().String() + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)
	var h map[string]string
	status, e := call(t, http.MethodGet, "http://"+ln.Addr().String()+"/health", "", nil, &h)
	require.Nil(t, e)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "ok", h["status"])
	cancel()
	require.NoError(t, <-done)
}
