package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testEnv is an Env with its own home, system file and variables.
type testEnv struct {
	home, system string
	vars         map[string]string
}

func newTestEnv(t *testing.T) *testEnv {
	dir := t.TempDir()
	return &testEnv{home: filepath.Join(dir, "home"), system: filepath.Join(dir, "etc", "rbee", "config.toml"), vars: map[string]string{}}
}

func (te *testEnv) env() Env {
	return Env{Getenv: func(k string) string { return te.vars[k] }, UserHome: te.home, SystemFile: te.system}
}

func (te *testEnv) userFile() string { return filepath.Join(te.home, ".config", "rbee", "config.toml") }

func write(t *testing.T, path, body string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
}

// TestS56LookupOrder: $RBEE_CONFIG, then ~/.config/rbee/config.toml, then
// /etc/rbee/config.toml; the first found wins, whole (no merging).
// Scenario S56 of DESIGN §12.
func TestS56LookupOrder(t *testing.T) {
	te := newTestEnv(t)
	explicit := filepath.Join(t.TempDir(), "explicit.toml")
	write(t, explicit, "[queen]\nurl = \"http://10.0.0.1:1\"\n")
	write(t, te.userFile(), "[queen]\nurl = \"http://10.0.0.2:2\"\n")
	write(t, te.system, "[queen]\nurl = \"http://10.0.0.3:3\"\n[paths]\nhome = \"/srv/rbee\"\n")

	steps := []struct {
		name   string
		before func()
		path   string
		url    string
		home   string
	}{
		{"RBEE_CONFIG first", func() { te.vars[EnvConfig] = explicit }, explicit, "http://10.0.0.1:1", ""},
		{"then the user's file", func() { delete(te.vars, EnvConfig) }, te.userFile(), "http://10.0.0.2:2", ""},
		{"then the system's file", func() { require.NoError(t, os.Remove(te.userFile())) }, te.system, "http://10.0.0.3:3", "/srv/rbee"},
		{"then none", func() { require.NoError(t, os.Remove(te.system)) }, "", DefaultQueenURL, ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.before()
			assert.Equal(t, s.path != "" && s.path == explicit, len(te.env().Candidates()) == 1)
			f, err := Load(te.env())
			require.NoError(t, err)
			assert.Equal(t, s.path, f.Path)
			assert.Equal(t, s.url, f.QueenURL("", "--queen-url", te.env()).Value)
			assert.Equal(t, s.home, f.Paths.Home, "files are not merged")
		})
	}

	t.Run("RBEE_CONFIG naming a missing file is an error", func(t *testing.T) {
		te.vars[EnvConfig] = filepath.Join(t.TempDir(), "missing.toml")
		defer delete(te.vars, EnvConfig)
		_, err := Load(te.env())
		require.Error(t, err)
		assert.Contains(t, err.Error(), "RBEE_CONFIG")
		assert.Contains(t, err.Error(), "missing.toml")
	})
}

// TestPrecedence: flags beat environment beat the file beat defaults.
func TestPrecedence(t *testing.T) {
	te := newTestEnv(t)
	write(t, te.userFile(), "[queen]\nurl = \"http://file:1\"\n[paths]\nhome = \"~/state\"\n")
	f, err := Load(te.env())
	require.NoError(t, err)

	url := f.QueenURL("http://flag:1", "--queen-url", te.env())
	assert.Equal(t, Setting{"http://flag:1", "--queen-url"}, url)
	te.vars[EnvQueenURL] = "http://env:1"
	assert.Equal(t, Setting{"http://flag:1", "--queen-url"}, f.QueenURL("http://flag:1", "--queen-url", te.env()))
	assert.Equal(t, Setting{"http://env:1", "$RBEE_QUEEN_URL"}, f.QueenURL("", "--queen-url", te.env()))
	delete(te.vars, EnvQueenURL)
	assert.Equal(t, Setting{"http://file:1", "queen.url in " + te.userFile()}, f.QueenURL("", "--queen-url", te.env()))
	assert.Equal(t, Setting{DefaultQueenURL, "default"}, (&File{}).QueenURL("", "--queen-url", te.env()))
	hostPort := &File{Queen: Queen{Host: "0.0.0.0", Port: 9999}}
	assert.Equal(t, "http://127.0.0.1:9999", hostPort.QueenURL("", "--queen-url", te.env()).Value, "the queen's listen address, on loopback")

	home, err := f.Home("/flag/home", te.env())
	require.NoError(t, err)
	assert.Equal(t, "/flag/home", home)
	te.vars[EnvHome] = "/env/home"
	home, err = f.Home("", te.env())
	require.NoError(t, err)
	assert.Equal(t, "/env/home", home)
	delete(te.vars, EnvHome)
	home, err = f.Home("", te.env())
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(te.home, "state"), home, "~/ is expanded")
	home, err = (&File{}).Home("", te.env())
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(te.home, ".rbee"), home)
}

// TestFullFile reads every key.
func TestFullFile(t *testing.T) {
	te := newTestEnv(t)
	f, err := Parse("full.toml", []byte(`
# every key
[queen]
url = "http://127.0.0.1:8081"
host = "0.0.0.0"
port = 8081
local_hive_port = 9201
local_worker_port_start = 8101

[paths]
home = "/var/lib/rbee"

[ssh]
known_hosts = "~/.ssh/rbee_known_hosts"

[remote]
binary_path = "/usr/local/bin/rbee"
git_repo_dir = "src/rbee"
worker_port_start = 8200
`), te.env())
	require.NoError(t, err)
	assert.Equal(t, File{
		Queen:  Queen{URL: "http://127.0.0.1:8081", Host: "0.0.0.0", Port: 8081, LocalHivePort: 9201, LocalWorkerPortStart: 8101},
		Paths:  Paths{Home: "/var/lib/rbee"},
		SSH:    SSH{KnownHosts: filepath.Join(te.home, ".ssh", "rbee_known_hosts")},
		Remote: Remote{BinaryPath: "/usr/local/bin/rbee", GitRepoDir: "src/rbee", WorkerPortStart: 8200},
		Path:   "full.toml",
	}, *f)
	assert.Equal(t, "/usr/local/bin/rbee", RemotePath(f.Remote.BinaryPath, "/opt/rbee", "bin/rbee"))
	assert.Equal(t, "/opt/rbee/src/rbee", RemotePath(f.Remote.GitRepoDir, "/opt/rbee", "src"))
	assert.Equal(t, "/opt/rbee/bin/rbee", RemotePath("", "/opt/rbee", "bin/rbee"))
}

// TestBadFiles: unknown keys, bad syntax and bad values are errors naming
// the key (or line) and the file.
func TestBadFiles(t *testing.T) {
	te := newTestEnv(t)
	cases := []struct {
		name, body string
		want       []string
	}{
		{"unknown key", "[queen]\nurl = \"http://a:1\"\nprot = 1\n", []string{"unknown key queen.prot", "bad.toml"}},
		{"unknown table", "[remotes]\nbinary_path = \"/x\"\n", []string{"unknown key remotes", "bad.toml"}},
		{"syntax", "[queen]\nurl = = 1\n", []string{"line 2", "bad.toml"}},
		{"wrong type", "[queen]\nport = \"8080\"\n", []string{"bad.toml", "port"}},
		{"port out of range", "[queen]\nlocal_hive_port = 70000\n", []string{"queen.local_hive_port 70000"}},
		{"negative port", "[remote]\nworker_port_start = -1\n", []string{"remote.worker_port_start -1"}},
		{"bad url", "[queen]\nurl = \"ftp://x\"\n", []string{"queen.url", "ftp://x"}},
		{"url with a path", "[queen]\nurl = \"http://x:1/api\"\n", []string{"queen.url"}},
		{"relative home", "[paths]\nhome = \"state\"\n", []string{"paths.home", "absolute"}},
		{"remote tilde", "[remote]\nbinary_path = \"~/bin/rbee\"\n", []string{"remote.binary_path", "wrong machine"}},
		{"remote dotdot", "[remote]\ngit_repo_dir = \"/opt/../etc\"\n", []string{"remote.git_repo_dir", "clean"}},
		{"remote relative dotdot", "[remote]\ngit_repo_dir = \"../etc\"\n", []string{"remote.git_repo_dir"}},
		{"remote control char", "[remote]\nbinary_path = \"/opt/rbee\\nx\"\n", []string{"remote.binary_path", "control"}},
		{"host with a slash", "[queen]\nhost = \"a/b\"\n", []string{"queen.host"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.toml")
			write(t, path, c.body)
			_, err := Read(path, te.env())
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalid)
			for _, w := range c.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "big.toml")
		write(t, path, "# "+string(make([]byte, maxFileSize)))
		_, err := Read(path, te.env())
		assert.ErrorIs(t, err, ErrInvalid)
	})
	t.Run("unreadable is not invalid", func(t *testing.T) {
		_, err := Read(filepath.Join(t.TempDir(), "none.toml"), te.env())
		require.Error(t, err)
		assert.NotErrorIs(t, err, ErrInvalid)
	})
}

func TestDescribe(t *testing.T) {
	te := newTestEnv(t)
	assert.Equal(t, "/x/config.toml", (&File{Path: "/x/config.toml"}).Describe(te.env()))
	d := (&File{}).Describe(te.env())
	assert.Contains(t, d, "no configuration file")
	assert.Contains(t, d, te.userFile())
	assert.Contains(t, d, te.system)
}

func TestParseQueenURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"http://127.0.0.1:8080": true, "https://queen.lan": true, "http://h:1/": true,
		"": false, "127.0.0.1:8080": false, "http://": false, "http://h/x": false, "http://h?a=1": false,
		"http://u:p@h": false, "http://h#f": false, "unix:///x": false,
	} {
		_, err := ParseQueenURL(raw)
		assert.Equal(t, ok, err == nil, raw)
	}
}

// Lookup gives a key's value in a flag's text form; unset keys, unknown
// keys and a nil File give nothing.
func TestLookup(t *testing.T) {
	f, err := Parse("c.toml", []byte("[queen]\nport = 9090\nhost = \"0.0.0.0\"\n[hive]\nidle_timeout = \"90s\"\n"+
		"[security]\nallowed_hosts = [\"a.lan\", \"*.b.lan\"]\n[ui]\nenabled = false\n"), Env{Getenv: func(string) string { return "" }, UserHome: t.TempDir()})
	require.NoError(t, err)
	for key, want := range map[string]string{"queen.port": "9090", "queen.host": "0.0.0.0", "hive.idle_timeout": "1m30s",
		"security.allowed_hosts": "a.lan,*.b.lan", "ui.enabled": "false"} {
		v, ok := f.Lookup(key)
		assert.True(t, ok, key)
		assert.Equal(t, want, v, key)
	}
	for _, key := range []string{"queen.url", "queen.nope", "nope.port", "queen"} {
		_, ok := f.Lookup(key)
		assert.False(t, ok, key)
	}
	_, ok := (*File)(nil).Lookup("queen.port")
	assert.False(t, ok)
	assert.Equal(t, "queen.port in c.toml", f.Source("queen.port"))
	assert.Equal(t, []string{"queen.url", "queen.host", "queen.port", "queen.local_hive_port", "queen.local_worker_port_start",
		"queen.max_queue", "queen.queue_timeout", "queen.max_workers_per_model", "hive.idle_timeout", "paths.home", "ssh.known_hosts", "remote.binary_path", "remote.git_repo_dir",
		"remote.worker_port_start", "security.allowed_hosts", "security.allowed_origins", "ui.enabled"}, KnownKeys())
}
