package cli

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/config"
	"rbee/internal/testutil"
)

// installRun is one run of the real rbee binary's install command.
type installRun struct {
	code           int
	stdout, stderr string
}

// runInstallBinary runs `bin install args…` under umask 077 (so that the
// modes checked are the ones install sets, not the umask's) with only the
// environment given.
func runInstallBinary(t *testing.T, bin string, env []string, args ...string) installRun {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", `umask 077; exec "$0" install "$@"`, bin}, args...)...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := installRun{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("running rbee install: %v", err)
	}
	return r
}

func assertMode(t *testing.T, path string, want fs.FileMode, dir bool) {
	t.Helper()
	st, err := os.Stat(path)
	if !assert.NoError(t, err) {
		return
	}
	assert.Equal(t, dir, st.IsDir(), "%s is a directory", path)
	assert.Equal(t, want, st.Mode().Perm(), "mode of %s", path)
}

// installedVersion runs the installed binary's version command.
func installedVersion(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "version").CombinedOutput()
	require.NoError(t, err, string(out))
	return string(out)
}

// checkInstall checks what an install wrote: the binary (a copy of src that
// runs), the directories and a configuration rbee reads, whose [paths] home
// is the data directory.
func checkInstall(t *testing.T, src string, l installLayout) {
	t.Helper()
	bin := filepath.Join(l.binDir, "rbee")
	assertMode(t, bin, 0o755, false)
	want, err := os.ReadFile(src)
	require.NoError(t, err)
	got, err := os.ReadFile(bin)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, got), "the installed binary is a copy of the running one")
	assert.Equal(t, "rbee "+Version+"\n", installedVersion(t, bin))

	assertMode(t, l.binDir, 0o755, true)
	assertMode(t, l.configDir, 0o755, true)
	assertMode(t, l.dataDir, 0o700, true)
	assertMode(t, filepath.Join(l.dataDir, "models"), 0o700, true)
	assertMode(t, l.configFile(), 0o644, false)

	cf, err := config.Read(l.configFile(), config.Env{UserHome: l.userHome, Getenv: func(string) string { return "" }})
	require.NoError(t, err, "the default configuration parses")
	assert.Equal(t, l.dataDir, cf.Paths.Home)
	home, err := cf.Home("", config.Env{UserHome: l.userHome, Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	assert.Equal(t, l.dataDir, home, "rbee's state goes to the data directory")
	assert.Zero(t, cf.Queen, "everything else is left at its default")
	assert.Zero(t, cf.Remote)
}

// Scenario S54 of DESIGN §12.
func TestS54InstallUser(t *testing.T) {
	src := testutil.RbeeBinary(t)
	home := t.TempDir()
	l := installLayout{userHome: home, binDir: filepath.Join(home, ".local", "bin"),
		configDir: filepath.Join(home, ".config", "rbee"), dataDir: filepath.Join(home, ".local", "share", "rbee")}
	env := []string{"HOME=" + home, "PATH=/usr/bin:/bin"}

	r := runInstallBinary(t, src, env)
	require.Equal(t, 0, r.code, "%s%s", r.stdout, r.stderr)
	checkInstall(t, src, l)
	size := regexp.MustCompile(`\(\d+(\.\d+)? [KMG]?i?B, `)
	assert.Equal(t, "Created directory "+l.binDir+" (mode 0755)\n"+
		"Installed rbee "+Version+" to "+l.binDir+"/rbee (SIZE, mode 0755)\n"+
		"Created directory "+l.configDir+" (mode 0755)\n"+
		"Wrote the configuration "+l.configFile()+" (mode 0644) with [paths] home = "+l.dataDir+"\n"+
		"Created directory "+l.dataDir+" (mode 0700)\n"+
		"Created directory "+l.dataDir+"/models (mode 0700)\n"+
		"hint: "+l.binDir+" is not on your PATH; add it, for example:\n"+
		`  echo 'export PATH="$HOME/.local/bin:$PATH"' >> ~/.profile`+"\n"+
		"Done. Run '"+l.binDir+"/rbee help' to see the commands.\n",
		size.ReplaceAllString(r.stdout, "(SIZE, "), "what it did, line by line")
	assert.Empty(t, r.stderr)
	content, err := os.ReadFile(l.configFile())
	require.NoError(t, err)
	assert.Contains(t, string(content), `home = "~/.local/share/rbee"`, "the file names the home as the user would")
	assert.Contains(t, string(content), "\n# url = ", "the other settings are there, commented out")

	t.Run("idempotent", func(t *testing.T) {
		r := runInstallBinary(t, src, append(env[:1:1], "PATH=/usr/bin:"+l.binDir))
		require.Equal(t, 0, r.code, "%s%s", r.stdout, r.stderr)
		checkInstall(t, src, l)
		assert.NotContains(t, r.stdout, "Created")
		assert.NotContains(t, r.stdout, "Installed")
		assert.Contains(t, r.stdout, l.binDir+"/rbee is already this rbee "+Version)
		assert.Contains(t, r.stdout, "Configuration "+l.configFile()+" is already the default")
		assert.NotContains(t, r.stdout, "hint:", "the bin directory is on PATH now")
	})

	t.Run("existing config survives", func(t *testing.T) {
		mine := "[queen]\nport = 9090\n"
		require.NoError(t, os.Remove(l.configFile()))
		require.NoError(t, os.WriteFile(l.configFile(), []byte(mine), 0o600))
		r := runInstallBinary(t, src, env)
		require.Equal(t, 0, r.code, "%s%s", r.stdout, r.stderr)
		assert.Contains(t, r.stdout, "Kept the existing configuration "+l.configFile()+" (rbee install --force replaces it)\n")
		got, err := os.ReadFile(l.configFile())
		require.NoError(t, err)
		assert.Equal(t, mine, string(got))
		assertMode(t, l.configFile(), 0o600, false)

		r = runInstallBinary(t, src, env, "--force")
		require.Equal(t, 0, r.code, "%s%s", r.stdout, r.stderr)
		assert.Contains(t, r.stdout, "Replaced the configuration "+l.configFile()+" with the default (mode 0644); the old one is "+l.configFile()+".bak\n")
		checkInstall(t, src, l)
		got, err = os.ReadFile(l.configFile() + ".bak")
		require.NoError(t, err)
		assert.Equal(t, mine, string(got), "the old file is kept beside")
	})

	t.Run("broken config is kept with a warning", func(t *testing.T) {
		require.NoError(t, os.WriteFile(l.configFile(), []byte("[queen]\nprot = 1\n"), 0o644))
		r := runInstallBinary(t, src, env)
		require.Equal(t, 0, r.code, "%s%s", r.stdout, r.stderr)
		assert.Contains(t, r.stdout, "Kept the existing configuration")
		assert.Contains(t, r.stdout, "warning: configuration file "+l.configFile()+": invalid configuration: unknown key queen.prot")
	})

	t.Run("new binary replaces the old", func(t *testing.T) {
		require.NoError(t, os.WriteFile(filepath.Join(l.binDir, "rbee"), []byte("#!/bin/sh\necho old\n"), 0o700))
		r := runInstallBinary(t, src, env)
		require.Equal(t, 0, r.code, "%s%s", r.stdout, r.stderr)
		assert.Contains(t, r.stdout, "Replaced "+l.binDir+"/rbee with rbee "+Version)
		assertMode(t, filepath.Join(l.binDir, "rbee"), 0o755, false)
		assert.Equal(t, "rbee "+Version+"\n", installedVersion(t, filepath.Join(l.binDir, "rbee")))
		left, err := filepath.Glob(filepath.Join(l.binDir, ".rbee.tmp-*"))
		require.NoError(t, err)
		assert.Empty(t, left, "no temporary file is left")
	})

	t.Run("another rbee first on PATH", func(t *testing.T) {
		other := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(other, "rbee"), []byte("#!/bin/sh\n"), 0o755))
		r := runInstallBinary(t, src, append(env[:1:1], "PATH="+other+":"+l.binDir))
		require.Equal(t, 0, r.code, "%s%s", r.stdout, r.stderr)
		assert.Contains(t, r.stdout, "note: "+other+"/rbee comes first on your PATH; run "+l.binDir+"/rbee, or remove the other\n")
		r = runInstallBinary(t, src, append(env[:1:1], "PATH="+l.binDir+":"+other))
		require.Equal(t, 0, r.code, "%s%s", r.stdout, r.stderr)
		assert.NotContains(t, r.stdout, "note:", "the installed one comes first")
	})

	t.Run("the installed binary installs itself", func(t *testing.T) {
		r := runInstallBinary(t, filepath.Join(l.binDir, "rbee"), env)
		require.Equal(t, 0, r.code, "%s%s", r.stdout, r.stderr)
		assert.Contains(t, r.stdout, l.binDir+"/rbee is the running rbee "+Version+": nothing to copy")
	})
}

// Scenario S55 of DESIGN §12.
func TestS55InstallSystem(t *testing.T) {
	src := testutil.RbeeBinary(t)
	root, home := t.TempDir(), t.TempDir()
	l := installLayout{system: true, userHome: home, binDir: filepath.Join(root, "usr", "local", "bin"),
		configDir: filepath.Join(root, "etc", "rbee"), dataDir: filepath.Join(root, "var", "lib", "rbee")}
	env := []string{"HOME=" + home, "PATH=/usr/bin:/bin", EnvInstallRoot + "=" + root}

	r := runInstallBinary(t, src, env, "--system")
	require.Equal(t, 0, r.code, "%s%s", r.stdout, r.stderr)
	checkInstall(t, src, l)
	for _, want := range []string{
		"Installed rbee " + Version + " to " + l.binDir + "/rbee (",
		"Wrote the configuration " + l.configFile() + " (mode 0644) with [paths] home = " + l.dataDir + "\n",
		"Created directory " + l.dataDir + "/models (mode 0700)\n",
		"note: " + l.dataDir + " is private to its owner (mode 0700); other users keep their state elsewhere with $RBEE_HOME or their own rbee install\n",
	} {
		assert.Contains(t, r.stdout, want)
	}
	entries, err := os.ReadDir(home)
	require.NoError(t, err)
	assert.Empty(t, entries, "a system install writes nothing in the user's home")

	t.Run("idempotent", func(t *testing.T) {
		r := runInstallBinary(t, src, env, "--system")
		require.Equal(t, 0, r.code, "%s%s", r.stdout, r.stderr)
		assert.NotContains(t, r.stdout, "Created")
		assert.Contains(t, r.stdout, "is already the default")
		checkInstall(t, src, l)
	})

	t.Run("a user configuration is read first", func(t *testing.T) {
		user := filepath.Join(home, ".config", "rbee", "config.toml")
		require.NoError(t, os.MkdirAll(filepath.Dir(user), 0o755))
		require.NoError(t, os.WriteFile(user, []byte("[queen]\n"), 0o644))
		r := runInstallBinary(t, src, env, "--system")
		require.Equal(t, 0, r.code, "%s%s", r.stdout, r.stderr)
		assert.Contains(t, r.stdout, "note: rbee reads "+user+" first; "+l.configFile()+" applies only without it\n")
	})
}

// runInstallIn runs rbee install in this process with env's variables.
func runInstallIn(t *testing.T, exe string, vars map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Executable: exe,
		Getenv: func(k string) string { return vars[k] }}
	code = Run(t.Context(), env, append([]string{"install"}, args...))
	return out.String(), errb.String(), code
}

func TestInstallFailures(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "rbee")
	require.NoError(t, os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755))
	blocked := t.TempDir()
	// A file where the configuration directory should be.
	require.NoError(t, os.MkdirAll(filepath.Join(blocked, ".config"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(blocked, ".config", "rbee"), nil, 0o644))

	cases := []struct {
		name string
		exe  string
		vars map[string]string
		args []string
		code int
		msg  string
	}{
		{"stray argument", exe, map[string]string{"HOME": t.TempDir()}, []string{"now"}, ExitUsage, `unexpected argument "now"`},
		{"unknown flag", exe, map[string]string{"HOME": t.TempDir()}, []string{"--prefix", "/x"}, ExitUsage, "prefix"},
		{"relative home", exe, map[string]string{"HOME": "home"}, nil, ExitFailure, "no home directory"},
		{"relative root", exe, map[string]string{"HOME": t.TempDir(), EnvInstallRoot: "root"}, []string{"--system"}, ExitFailure, `$RBEE_INSTALL_ROOT "root" is not an absolute path`},
		{"binary unknown", "", map[string]string{"HOME": t.TempDir()}, nil, ExitFailure, "cannot tell where the running rbee binary is"},
		{"binary gone", filepath.Join(t.TempDir(), "gone"), map[string]string{"HOME": t.TempDir()}, nil, ExitFailure, "finding the running rbee binary"},
		{"file in the way", exe, map[string]string{"HOME": blocked}, nil, ExitFailure, filepath.Join(blocked, ".config", "rbee") + " exists and is not a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runInstallIn(t, tc.exe, tc.vars, tc.args...)
			assert.Equal(t, tc.code, code, "%s%s", out, errOut)
			assert.Contains(t, errOut, tc.msg)
		})
	}
	// The file in the way stopped the install after the binary: the
	// configuration was not written anywhere else.
	_, err := os.Stat(filepath.Join(blocked, ".local", "share", "rbee"))
	assert.ErrorIs(t, err, fs.ErrNotExist, "nothing after the failed step")
}

// A system install by a user who may not write there fails at its first
// step with the advice to use root. Run as root, the test runs the binary
// as nobody.
func TestInstallPermissionDenied(t *testing.T) {
	src := testutil.RbeeBinary(t)
	// A place every user may read and run the binary from: the test's
	// temporary directory and the one testing made it in, nothing above.
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	exe := filepath.Join(dir, "rbee")
	_, err := copyInto(src, exe, 0o755)
	require.NoError(t, err)
	root := filepath.Join(dir, "root")
	require.NoError(t, os.Mkdir(root, 0o555))
	require.NoError(t, os.Chmod(root, 0o555))
	t.Cleanup(func() { _ = os.Chmod(root, 0o755) })

	cmd := exec.Command(exe, "install", "--system")
	cmd.Env = []string{"HOME=" + dir, EnvInstallRoot + "=" + root, "PATH=/usr/bin:/bin"}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "%s%s", out.String(), errb.String())
	assert.Equal(t, ExitFailure, ee.ExitCode())
	assert.Empty(t, out.String(), "nothing was done")
	assert.Equal(t, "rbee install: mkdir "+filepath.Join(root, "usr")+": permission denied\n"+
		"hint: a system install needs root: sudo rbee install --system (or install for yourself without --system)\n", errb.String())
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

func TestTOMLString(t *testing.T) {
	cases := []struct{ in, want string }{
		{"/var/lib/rbee", `"/var/lib/rbee"`},
		{`/a "b"\c`, `"/a \"b\"\\c"`},
		{"tab\there\x7f", `"tab\u0009here\u007F"`},
		{"é", `"é"`},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			assert.Equal(t, tc.want, tomlString(tc.in))
			var back struct{ V string }
			_, err := toml.Decode("V = "+tomlString(tc.in)+"\n", &back)
			require.NoError(t, err)
			assert.Equal(t, tc.in, back.V, "TOML reads back what was written")
		})
	}
}

func TestOnPath(t *testing.T) {
	cases := []struct {
		dir, path string
		want      bool
	}{
		{"/home/u/.local/bin", "/usr/bin:/home/u/.local/bin", true},
		{"/home/u/.local/bin", "/usr/bin:/home/u/.local/bin/", true},
		{"/home/u/.local/bin", "/usr/bin:/home/u/.local", false},
		{"/home/u/.local/bin", "", false},
		{"/usr/local/bin", "::/usr/local/bin", true},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, onPath(tc.dir, tc.path), "%q in %q", tc.dir, tc.path)
	}
}

// TestDefaultConfigNamesEveryKey uncomments every setting of the file rbee
// install writes: the result parses, and every key the configuration
// package knows appears in it, so a new setting cannot be left out.
func TestDefaultConfigNamesEveryKey(t *testing.T) {
	home := t.TempDir()
	text := defaultConfig(installLayout{homeValue: home})
	setting := regexp.MustCompile(`(?m)^# ([a-z_]+ = .*?)([ \t]+#.*)?$`)
	uncommented := setting.ReplaceAllString(text, "$1")
	env := config.Env{Getenv: func(string) string { return "" }, UserHome: home}
	f, err := config.Parse("default.toml", []byte(uncommented), env)
	require.NoError(t, err, uncommented)
	for _, key := range config.KnownKeys() {
		table, name, _ := strings.Cut(key, ".")
		assert.Regexp(t, `(?m)^\[`+table+`\]\n(?:[^\[\n].*\n|\n)*?`+name+` = `, uncommented, key)
	}
	assert.Equal(t, home, f.Paths.Home)
}
