package orchestrator

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/cliutil"
)

// TestLocalIdleTimeoutSetting: the local hive's idle timeout comes from
// --local-idle-timeout, else [hive] idle_timeout, else the hive's default.
func TestLocalIdleTimeoutSetting(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(file, []byte("[hive]\nidle_timeout = \"90s\"\n"), 0o600))
	noFile := filepath.Join(t.TempDir(), "empty.toml")
	require.NoError(t, os.WriteFile(noFile, nil, 0o600))
	tests := []struct {
		name   string
		config string
		args   []string
		want   time.Duration
		usage  bool
	}{
		{"default", noFile, nil, 0, false},
		{"flag", noFile, []string{"--local-idle-timeout", "2s"}, 2 * time.Second, false},
		{"file", file, nil, 90 * time.Second, false},
		{"flag beats file", file, []string{"--local-idle-timeout=10m"}, 10 * time.Minute, false},
		{"negative", noFile, []string{"--local-idle-timeout", "-1s"}, 0, true},
		{"not a duration", noFile, []string{"--local-idle-timeout", "soon"}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return map[string]string{"RBEE_CONFIG": tc.config}[k] }
			cfg, _, err := parseArgs(tc.args, &bytes.Buffer{}, getenv)
			if tc.usage {
				var ue *cliutil.UsageError
				assert.ErrorAs(t, err, &ue)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, cfg.LocalIdleTimeout)
		})
	}
	_, err := Config{Home: t.TempDir(), Binary: "/bin/true", LocalIdleTimeout: -time.Second}.withDefaults()
	assert.Error(t, err, "a negative LocalIdleTimeout is refused")
}

// TestLocalIdleTimeoutPassed: the local hive is started with
// --idle-timeout when the queen has one, and without it otherwise.
func TestLocalIdleTimeoutPassed(t *testing.T) {
	for _, tc := range []struct {
		idle time.Duration
		want string
	}{{2500 * time.Millisecond, "--idle-timeout 2.5s"}, {0, ""}} {
		t.Run(tc.idle.String(), func(t *testing.T) {
			bin, dir := fakeBinary(t, `exit 3`)
			tq := newTestQueen(t, Config{Binary: bin, LocalHivePort: newAcceptRecorder(t).port(), LocalIdleTimeout: tc.idle})
			res := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
			require.NotNil(t, res.errorEvent(), "the stand-in hive exits")
			args, err := os.ReadFile(filepath.Join(dir, "args"))
			require.NoError(t, err)
			line := strings.Join(strings.Fields(string(args)), " ")
			if tc.want == "" {
				assert.NotContains(t, line, "--idle-timeout")
			} else {
				assert.Contains(t, line, tc.want)
			}
		})
	}
}
