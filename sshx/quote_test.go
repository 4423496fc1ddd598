package sshx

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// shPrintf runs /bin/sh -c "printf %s WORDS" and returns what it printed.
func shPrintf(t testing.TB, words string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command("/bin/sh", "-c", "printf %s "+words)
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Run(), "sh said: %s", errb.String())
	return out.String()
}

func TestQuote(t *testing.T) {
	cases := []struct {
		in, want string
	}{
		{"", "''"},
		{"plain", "plain"},
		{"/usr/local/bin/rbee", "/usr/local/bin/rbee"},
		{"127.0.0.1:9200", "127.0.0.1:9200"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"--port=9200", "'--port=9200'"},
		{"~/x", "'~/x'"},
		{"$HOME", "'$HOME'"},
		{"; rm -rf /", "'; rm -rf /'"},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			assert.Equal(t, c.want, Quote(c.in))
			if c.in != "" {
				assert.Equal(t, c.in, shPrintf(t, Quote(c.in)))
			}
		})
	}
}

// injections are words that would run a command if a shell read them
// unquoted; each would create the file named by CANARY.
var injections = []string{
	"; touch CANARY",
	"$(touch CANARY)",
	"`touch CANARY`",
	"\ntouch CANARY",
	"' ; touch CANARY ; '",
	"\" ; touch CANARY ; \"",
	"x && touch CANARY",
	"x || touch CANARY",
	"| touch CANARY",
	"> CANARY",
	"$(touch CANARY)'\"`touch CANARY`\"'",
	"\\'; touch CANARY; echo \\'",
	"${IFS}touch${IFS}CANARY",
	"*",
	"~root",
}

func TestQuoteInjectionsAreInert(t *testing.T) {
	dir := t.TempDir()
	canary := dir + "/canary"
	for _, inj := range injections {
		inj = strings.ReplaceAll(inj, "CANARY", canary)
		t.Run(inj, func(t *testing.T) {
			assert.Equal(t, inj, shPrintf(t, Quote(inj)))
			assert.NoFileExists(t, canary)
		})
	}
}

func TestJoin(t *testing.T) {
	cases := []struct {
		name string
		argv []string
		want string
		err  bool
	}{
		{"simple", []string{"rbee", "hive", "--port", "9200"}, "'rbee' hive --port 9200", false},
		{"program is always quoted", []string{"time"}, "'time'", false},
		{"assignment-looking program", []string{"X=1", "sh"}, "'X=1' sh", false},
		{"spaces", []string{"/opt/my app/rbee", "a b"}, "'/opt/my app/rbee' 'a b'", false},
		{"empty argument", []string{"echo", ""}, "'echo' ''", false},
		{"no argv", nil, "", true},
		{"empty program", []string{""}, "", true},
		{"option as program", []string{"-c", "x"}, "", true},
		{"NUL", []string{"echo", "a\x00b"}, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Join(c.argv)
			if c.err {
				require.Error(t, err)
				assert.True(t, errors.Is(err, ErrBadArgv))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
}

func TestJoinRunsArgvExactly(t *testing.T) {
	argv := append([]string{"printf", "%s|"}, injections...)
	line, err := Join(argv)
	require.NoError(t, err)
	out, err := exec.Command("/bin/sh", "-c", line).Output()
	require.NoError(t, err)
	assert.Equal(t, strings.Join(injections, "|")+"|", string(out))
}

func TestEnvPrefix(t *testing.T) {
	secret := "s3cr3t 'q' $(touch x) `y`\nline2"
	prefix, in, err := envPrefix(map[string]string{"RBEE_TOKEN": secret, "A": "1"})
	require.NoError(t, err)
	assert.NotContains(t, prefix, "s3cr3t", "the value must not be on the command line")
	body := new(bytes.Buffer)
	_, err = body.ReadFrom(in)
	require.NoError(t, err)
	assert.Equal(t, "export A=1\nexport RBEE_TOKEN="+Quote(secret)+"\n", body.String())

	// A local shell reading the same input gets the exact value.
	cmd := exec.Command("/bin/sh", "-c", prefix+`printf %s "$RBEE_TOKEN"`)
	_, in, _ = envPrefix(map[string]string{"RBEE_TOKEN": secret})
	cmd.Stdin = in
	cmd.Dir = t.TempDir()
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, secret, string(out))
	assert.NoFileExists(t, cmd.Dir+"/x")

	for _, bad := range []map[string]string{{"1A": "x"}, {"A-B": "x"}, {"": "x"}, {"A B": "x"}, {"A": "nul\x00"}} {
		_, _, err := envPrefix(bad)
		assert.ErrorIs(t, err, ErrBadArgv, "%q", bad)
	}
}

// FuzzQuote: for any bytes without NUL, /bin/sh reads Quote(s) back as s.
func FuzzQuote(f *testing.F) {
	for _, s := range append([]string{"", "a", "'", "''", "\\", "\n", "é", "\xff\xfe", "-n", "%s"}, injections...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.IndexByte(s, 0) >= 0 {
			t.Skip("NUL cannot be in a shell word")
		}
		if got := shPrintf(t, Quote(s)); got != s {
			t.Fatalf("Quote(%q) = %s, read back as %q", s, Quote(s), got)
		}
	})
}

func TestQuotePath(t *testing.T) {
	assert.Equal(t, "./-rf", quotePath("-rf"))
	assert.Equal(t, "'./- x'", quotePath("- x"))
	assert.Equal(t, "'/a b'", quotePath("/a b"))
	assert.Equal(t, "rel/x", quotePath("rel/x"))
}
