package pool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/cliutil"
	"rbee/internal/httpx"
	"rbee/internal/testutil"
)

func TestMainRunsUntilContextEnds(t *testing.T) {
	self, err := os.Executable()
	require.NoError(t, err)
	keyFile := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(keyFile, []byte("main-test-token-0123456789\n"), 0o600))
	port := testutil.FreePort(t)
	var stderr testutil.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, []string{"--port", strconv.Itoa(port), "--home", t.TempDir(), "--binary", self,
			"--api-key-file", keyFile, "--idle-timeout", "1m", "--health-interval", "1s", "--log-level", "debug",
			"--fake-devices", "cuda:0:1024", "--fake-memory-mb", "64"}, &stderr)
	}()
	c := &httpx.Client{BaseURL: "http://127.0.0.1:" + strconv.Itoa(port), Token: "main-test-token-0123456789"}
	require.Eventually(t, func() bool { return c.Do(ctx, "GET", "/v1/workers/list", nil, nil) == nil }, 10*time.Second, 10*time.Millisecond,
		"the hive serves with the key from the file: %s", stderr.String())
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err, "a clean shutdown returns nil")
	case <-time.After(30 * time.Second):
		t.Fatal("Main did not return after its context ended")
	}
	log := stderr.String()
	assert.Contains(t, log, "hive listening")
	assert.Contains(t, log, `devices=["cpu", "cuda:0"]`)
	assert.Contains(t, log, "token="+httpx.Fingerprint("main-test-token-0123456789"))
	assert.NotContains(t, log, "main-test-token-0123456789", "never the token itself")
}

func TestMainFlags(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		usage bool
		want  string
	}{
		{"help", []string{"--help"}, false, ""},
		{"port zero", []string{"--port", "0"}, true, "--port"},
		{"port too large", []string{"--port", "65536"}, true, "--port"},
		{"worker port", []string{"--worker-port-start", "0"}, true, "--worker-port-start"},
		{"idle timeout", []string{"--idle-timeout", "0s"}, true, "--idle-timeout"},
		{"health interval", []string{"--health-interval", "-1s"}, true, "--health-interval"},
		{"ready timeout", []string{"--ready-timeout", "0s"}, true, "--ready-timeout"},
		{"log level", []string{"--log-level", "loud"}, true, "--log-level"},
		{"fake devices", []string{"--fake-devices", "cuda:0"}, true, "--fake-devices"},
		{"fake memory", []string{"--fake-memory-mb", "-5"}, true, "--fake-memory-mb"},
		{"fake memory not a number", []string{"--fake-memory-mb=lots"}, true, "fake-memory-mb"},
		{"empty host", []string{"--host", ""}, true, "--host"},
		{"unknown flag", []string{"--gpus", "2"}, true, "gpus"},
		{"stray argument", []string{"start"}, true, "start"},
		{"missing key file", []string{"--api-key-file", "/no/such/key"}, false, "API key file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Main(t.Context(), append(tc.args, "--home", t.TempDir()), &out)
			require.Error(t, err)
			if tc.name == "help" {
				assert.ErrorIs(t, err, cliutil.ErrHelp)
				assert.Contains(t, out.String(), "-worker-port-start")
				assert.NotContains(t, out.String(), "fake", "test flags are hidden")
				return
			}
			var ue *cliutil.UsageError
			assert.Equal(t, tc.usage, errors.As(err, &ue), "usage error: %v", err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
