package worker

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"rbee/internal/settings"
	"rbee/internal/settings/settingstest"
)

// TestWorkerSettingsWired sets each setting of `rbee worker` in turn
// through its flag and its environment variable and sees the Config change.
func TestWorkerSettingsWired(t *testing.T) {
	settingstest.Wired(t, workerSettings, func(t *testing.T, args []string, env map[string]string, file string) (workerArgs, map[int]settings.Origin) {
		t.Helper()
		require.Empty(t, file, "a worker reads no configuration file")
		var a workerArgs
		origins, err := workerSettings.Parse(&a, "worker", args, &bytes.Buffer{}, "", "", settings.Sources{Getenv: func(k string) string { return env[k] }})
		require.NoError(t, err, "args %q env %v", args, env)
		return a, origins
	})
}

// docs/settings.md shows the worker's table as it is; RBEE_UPDATE_DOCS=1
// rewrites it.
func TestWorkerSettingsDoc(t *testing.T) {
	settingstest.Doc(t, "../docs/settings.md", "worker", workerSettings)
}
