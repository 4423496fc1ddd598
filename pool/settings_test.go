package pool

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"rbee/internal/settings"
	"rbee/internal/settings/settingstest"
)

// TestHiveSettingsWired sets each setting of `rbee hive` in turn through
// its flag and its environment variable and sees the Config change.
func TestHiveSettingsWired(t *testing.T) {
	settingstest.Wired(t, hiveSettings, func(t *testing.T, args []string, env map[string]string, file string) (hiveArgs, map[int]settings.Origin) {
		t.Helper()
		require.Empty(t, file, "the hive reads no configuration file")
		var a hiveArgs
		origins, err := hiveSettings.Parse(&a, "hive", args, &bytes.Buffer{}, "", "", settings.Sources{Getenv: func(k string) string { return env[k] }})
		require.NoError(t, err, "args %q env %v", args, env)
		return a, origins
	})
}

// docs/settings.md shows the hive's table as it is; RBEE_UPDATE_DOCS=1
// rewrites it.
func TestHiveSettingsDoc(t *testing.T) {
	settingstest.Doc(t, "../docs/settings.md", "hive", hiveSettings)
}
