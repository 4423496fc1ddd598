package orchestrator

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/config"
	"rbee/internal/httpx"
	"rbee/internal/settings"
	"rbee/internal/settings/settingstest"
)

// parseWith runs the queen's table on args with env and a configuration
// file of the given contents (empty: a file that sets nothing).
func parseWith(t *testing.T, args []string, env map[string]string, file string) (queenArgs, map[int]settings.Origin) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(path, []byte(file), 0o600))
	getenv := func(k string) string {
		if k == config.EnvConfig {
			return path
		}
		return env[k]
	}
	var a queenArgs
	origins, err := queenSettings.Parse(&a, "queen", args, &bytes.Buffer{}, usageLine, summary, queenSources(getenv))
	require.NoError(t, err, "args %q env %v file %q", args, env, file)
	return a, origins
}

// TestQueenSettingsWired sets each setting of the table in turn through its
// flag, its environment variable and its configuration key, and sees the
// setting change from its default and come from that source; with several
// sources at once, the flag wins, then the environment, then the file.
func TestQueenSettingsWired(t *testing.T) {
	settingstest.Wired(t, queenSettings, parseWith)
	for _, e := range queenSettings {
		if e.Key != "" {
			assert.Contains(t, config.KnownKeys(), e.Key)
		}
	}
}

// Every key of the configuration file is a setting of the queen's, but
// queen.url, which tells keepers where the queen is.
func TestQueenSettingsCoverTheFile(t *testing.T) {
	keys := map[string]bool{}
	flags := map[string]bool{}
	for _, e := range queenSettings {
		if e.Key != "" {
			assert.False(t, keys[e.Key], "key %s twice", e.Key)
			keys[e.Key] = true
		}
		if e.Flag != "" {
			assert.False(t, flags[e.Flag], "flag %s twice", e.Flag)
			flags[e.Flag] = true
		}
	}
	for _, k := range config.KnownKeys() {
		if k != "queen.url" {
			assert.True(t, keys[k], "no queen setting reads %s", k)
		}
	}
}

// A bad value names where it came from: a flag is a usage error, a
// variable or a key of the file an error naming it.
func TestQueenSettingsErrorsNameTheSource(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(path, []byte("[security]\nallowed_hosts = [\"ok.lan\"]\n"), 0o600))
	env := map[string]string{config.EnvConfig: path, httpx.AllowedHostsEnv: "bad host:1"}
	_, _, err := parseArgs(nil, &bytes.Buffer{}, func(k string) string { return env[k] })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "$"+httpx.AllowedHostsEnv)

	delete(env, httpx.AllowedHostsEnv)
	cfg, _, err := parseArgs(nil, &bytes.Buffer{}, func(k string) string { return env[k] })
	require.NoError(t, err)
	assert.Equal(t, []string{"ok.lan"}, cfg.AllowedHosts)
	cfg, _, err = parseArgs([]string{"--allowed-hosts="}, &bytes.Buffer{}, func(k string) string { return env[k] })
	require.NoError(t, err)
	assert.Empty(t, cfg.AllowedHosts, "a flag given empty clears the file's list")
}

// docs/settings.md shows the queen's table as it is; RBEE_UPDATE_DOCS=1
// rewrites it.
func TestQueenSettingsDoc(t *testing.T) {
	settingstest.Doc(t, "../docs/settings.md", "queen", queenSettings)
}
