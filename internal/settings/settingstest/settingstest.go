// Package settingstest checks that every entry of a settings table is
// wired: set through each of its sources, it changes the settings.
package settingstest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/settings"
)

// Parse runs a daemon's table on a command line, an environment and a
// configuration file's contents ("" sets nothing).
type Parse[C any] func(t *testing.T, args []string, env map[string]string, file string) (C, map[int]settings.Origin)

// Wired sets each entry of table in turn to its Example through its flag,
// its environment variable and its configuration key, and checks that the
// settings change from the defaults and that the value came from that
// source; then, with all of them at once, that the flag wins, then the
// environment, then the file. It also checks that flags, variables and
// keys are not declared twice.
func Wired[C any](t *testing.T, table settings.Table[C], parse Parse[C]) {
	t.Helper()
	base, _ := parse(t, nil, nil, "")
	seen := map[string]bool{}
	for i, e := range table {
		for _, name := range []string{"--" + e.Flag, "$" + e.Env, e.Key} {
			if name != "--" && name != "$" && name != "" {
				assert.False(t, seen[name], "%s is declared twice", name)
				seen[name] = true
			}
		}
		t.Run(e.Flag+e.Env+e.Key, func(t *testing.T) {
			require.NotEmpty(t, e.Example, "every setting has an example value")
			require.NotEqual(t, e.Default, e.Example, "the example differs from the default")
			require.False(t, e.Flag == "" && e.Env == "" && e.Key == "", "a setting has a source")
			var args []string
			env := map[string]string{}
			var file string
			if e.Flag != "" {
				args = []string{"--" + e.Flag, e.Example}
				got, origins := parse(t, args, nil, "")
				assert.NotEqual(t, base, got, "--%s %s changes nothing", e.Flag, e.Example)
				assert.Equal(t, settings.FromFlag, origins[i])
			}
			if e.Env != "" {
				env[e.Env] = e.Example
				got, origins := parse(t, nil, env, "")
				assert.NotEqual(t, base, got, "$%s=%s changes nothing", e.Env, e.Example)
				assert.Equal(t, settings.FromEnv, origins[i])
			}
			if e.Key != "" {
				file = TOMLLine(e.Key, e.Example)
				got, origins := parse(t, nil, nil, file)
				assert.NotEqual(t, base, got, "%s = %s changes nothing", e.Key, e.Example)
				assert.Equal(t, settings.FromFile, origins[i])
			}
			_, origins := parse(t, args, env, file)
			want := settings.FromFile
			switch {
			case e.Flag != "":
				want = settings.FromFlag
			case e.Env != "":
				want = settings.FromEnv
			}
			assert.Equal(t, want, origins[i], "precedence")
		})
	}
}

// TOMLLine writes key = value as a configuration file: numbers and
// booleans bare, a value with a comma or of the [security] table as a list, anything else as
// a string.
func TOMLLine(key, value string) string {
	table, name, _ := strings.Cut(key, ".")
	v := strconv.Quote(value)
	if _, err := strconv.Atoi(value); err == nil || value == "true" || value == "false" {
		v = value
	} else if table == "security" || strings.Contains(value, ",") {
		var q []string
		for _, s := range strings.Split(value, ",") {
			q = append(q, strconv.Quote(strings.TrimSpace(s)))
		}
		v = "[" + strings.Join(q, ", ") + "]"
	}
	return fmt.Sprintf("[%s]\n%s = %s\n", table, name, v)
}

// Doc checks that the Markdown file at path shows table between the
// lines "<!-- settings NAME -->" and "<!-- end of settings NAME -->"; with
// RBEE_UPDATE_DOCS=1 in the environment it rewrites that part instead.
func Doc[C any](t *testing.T, path, name string, table settings.Table[C]) {
	t.Helper()
	begin, end := "<!-- settings "+name+" -->\n", "<!-- end of settings "+name+" -->\n"
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	doc := string(b)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	require.True(t, i >= 0 && j > i, "%s has no %q and %q lines", path, strings.TrimSpace(begin), strings.TrimSpace(end))
	want := doc[:i+len(begin)] + table.Markdown() + doc[j:]
	if os.Getenv("RBEE_UPDATE_DOCS") == "1" {
		require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
		return
	}
	assert.Equal(t, want, doc, "%s is out of date: run the test with RBEE_UPDATE_DOCS=1", path)
}
