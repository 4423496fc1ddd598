package orchestrator

import (
	"bytes"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/cliutil"
)

// TestS57ParseArgsConfigFile: rbee queen takes what no flag sets from the
// configuration file, [remote] paths included; flags still win, and
// $RBEE_HOME beats [paths] home.
func TestS57ParseArgsConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(file, []byte(`
[queen]
host = "127.0.0.2"
port = 18080
local_hive_port = 19200
local_worker_port_start = 18001
[paths]
home = "/srv/rbee"
[ssh]
known_hosts = "/etc/rbee/known_hosts"
[remote]
binary_path = "/usr/local/bin/rbee"
git_repo_dir = "src/rbee"
worker_port_start = 18500
`), 0o600))
	env := map[string]string{"RBEE_CONFIG": file}
	getenv := func(k string) string { return env[k] }

	cfg, _, err := parseArgs(nil, &bytes.Buffer{}, getenv)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.2:18080", cfg.Addr)
	assert.Equal(t, 19200, cfg.LocalHivePort)
	assert.Equal(t, 18001, cfg.LocalWorkerPortStart)
	assert.Equal(t, "/srv/rbee", cfg.Home)
	assert.Equal(t, "/etc/rbee/known_hosts", cfg.KnownHostsPath)
	assert.Equal(t, "/usr/local/bin/rbee", cfg.RemoteBinaryPath)
	assert.Equal(t, "src/rbee", cfg.RemoteGitRepoDir)
	assert.Equal(t, 18500, cfg.RemoteWorkerPortStart)

	cfg, _, err = parseArgs([]string{"--port", "28080", "--local-hive-port", "29200", "--home", "/flag/home"}, &bytes.Buffer{}, getenv)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.2:28080", cfg.Addr, "flags beat the file")
	assert.Equal(t, 29200, cfg.LocalHivePort)
	assert.Equal(t, "/flag/home", cfg.Home)

	env["RBEE_HOME"] = "/env/home"
	cfg, _, err = parseArgs(nil, &bytes.Buffer{}, getenv)
	require.NoError(t, err)
	assert.Equal(t, "/env/home", cfg.Home, "$RBEE_HOME beats the file")

	require.NoError(t, os.WriteFile(file, []byte("[remote]\nbinary = \"/x\"\n"), 0o600))
	_, _, err = parseArgs(nil, &bytes.Buffer{}, getenv)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unknown key remote.binary")
	assert.Contains(t, err.Error(), file)
}

// TestConfigRemotePaths: the [remote] paths resolve against each node's
// install path unless absolute, and bad ones are refused.
func TestConfigRemotePaths(t *testing.T) {
	n := api.Node{InstallPath: "/opt/rbee"}
	for _, c := range []struct{ bin, repo, wantBin, wantRepo string }{
		{"", "", "/opt/rbee/bin/rbee", "/opt/rbee/src"},
		{"/usr/local/bin/rbee", "/srv/src/rbee", "/usr/local/bin/rbee", "/srv/src/rbee"},
		{"tools/rbee", "build/rbee", "/opt/rbee/tools/rbee", "/opt/rbee/build/rbee"},
	} {
		cfg, err := Config{Home: t.TempDir(), Binary: "/bin/true", RemoteBinaryPath: c.bin, RemoteGitRepoDir: c.repo}.withDefaults()
		require.NoError(t, err)
		r := &remotes{cfg: cfg}
		assert.Equal(t, c.wantBin, r.binaryPath(n))
		assert.Equal(t, c.wantRepo, r.gitRepoDir(n))
	}
	for _, bad := range []string{"~/bin/rbee", "../bin/rbee", "/opt//rbee", "/opt/rbee/"} {
		_, err := Config{Home: t.TempDir(), Binary: "/bin/true", RemoteBinaryPath: bad}.withDefaults()
		assert.Error(t, err, bad)
	}
}

// TestStoreMigratesSchema1: a registry written before remote nodes gains
// the tunnel and hive_token columns, and its rows survive.
func TestStoreMigratesSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "beehives.db")
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE beehives (
	node_name TEXT PRIMARY KEY NOT NULL, ssh_host TEXT NOT NULL DEFAULT '', ssh_port INTEGER NOT NULL DEFAULT 22,
	ssh_user TEXT NOT NULL DEFAULT '', ssh_key_path TEXT NOT NULL DEFAULT '', git_repo_url TEXT NOT NULL DEFAULT '',
	git_branch TEXT NOT NULL DEFAULT 'main', install_path TEXT NOT NULL DEFAULT '', hive_port INTEGER NOT NULL DEFAULT 9200,
	last_connected_unix INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '',
	status TEXT NOT NULL DEFAULT 'unknown' CHECK (status IN ('unknown', 'reachable', 'unreachable')));
	INSERT INTO beehives (node_name, ssh_host, install_path) VALUES ('mac', 'mac.lan', '/opt/rbee');
	PRAGMA user_version = 1;`)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	require.NoError(t, os.Chmod(path, 0o644))

	s, err := openStore(t.Context(), path)
	require.NoError(t, err)
	defer s.Close()
	n, err := s.Get(t.Context(), "mac")
	require.NoError(t, err)
	assert.Equal(t, "mac.lan", n.SSHHost)
	assert.False(t, n.Tunnel)
	token, err := s.Token(t.Context(), "mac")
	require.NoError(t, err)
	assert.Empty(t, token)
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "an old, wider file is made private")

	got, err := s.EnsureToken(t.Context(), "mac", "first-token-0123456789")
	require.NoError(t, err)
	assert.Equal(t, "first-token-0123456789", got)
	got, err = s.EnsureToken(t.Context(), "mac", "second-token-0123456789")
	require.NoError(t, err)
	assert.Equal(t, "first-token-0123456789", got, "a node keeps its token")
	_, err = s.EnsureToken(t.Context(), "nope", "x")
	assert.ErrorIs(t, err, api.ErrNodeNotFound)

	require.NoError(t, s.AddWithToken(t.Context(), api.Node{Name: "ws", SSHHost: "ws.lan", Tunnel: true}, "ws-token-0123456789"))
	n, err = s.Get(t.Context(), "ws")
	require.NoError(t, err)
	assert.True(t, n.Tunnel)
	for _, suffix := range []string{"-wal", "-shm"} {
		if st, err := os.Stat(path + suffix); err == nil {
			assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), suffix)
		}
	}
}

// TestQueueSettings: max_queue and queue_timeout come from their flags, else
// [queen] in the configuration file, else the defaults; max_queue 0 (queue
// off) stays 0 and a Config left unset gets 256.
func TestQueueSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.toml")
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	cfg, _, err := parseArgs(nil, &bytes.Buffer{}, getenv)
	require.NoError(t, err)
	require.NotNil(t, cfg.MaxQueue)
	assert.Equal(t, DefaultMaxQueue, *cfg.MaxQueue)
	assert.Equal(t, DefaultQueueTimeout, cfg.QueueTimeout)

	require.NoError(t, os.WriteFile(file, []byte("[queen]\nmax_queue = 0\nqueue_timeout = \"90s\"\n"), 0o600))
	env["RBEE_CONFIG"] = file
	cfg, _, err = parseArgs(nil, &bytes.Buffer{}, getenv)
	require.NoError(t, err)
	assert.Equal(t, 0, *cfg.MaxQueue, "0 from the file turns the queue off")
	assert.Equal(t, 90*time.Second, cfg.QueueTimeout)

	cfg, _, err = parseArgs([]string{"--max-queue", "12", "--queue-timeout", "2m"}, &bytes.Buffer{}, getenv)
	require.NoError(t, err)
	assert.Equal(t, 12, *cfg.MaxQueue, "flags beat the file")
	assert.Equal(t, 2*time.Minute, cfg.QueueTimeout)

	for _, args := range [][]string{{"--max-queue", "-1"}, {"--queue-timeout", "10ms"}, {"--queue-timeout", "0s"}} {
		_, _, err := parseArgs(args, &bytes.Buffer{}, getenv)
		var ue *cliutil.UsageError
		assert.True(t, errors.As(err, &ue), "%v: a usage error, got %v", args, err)
	}
	require.NoError(t, os.WriteFile(file, []byte("[queen]\nmax_queue = -3\n"), 0o600))
	_, _, err = parseArgs(nil, &bytes.Buffer{}, getenv)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "queen.max_queue")

	unset, err := Config{Home: t.TempDir(), Binary: "/bin/true"}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, DefaultMaxQueue, *unset.MaxQueue)
	off, err := Config{Home: t.TempDir(), Binary: "/bin/true", MaxQueue: MaxQueueOf(0)}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, 0, *off.MaxQueue)
	_, err = Config{Home: t.TempDir(), Binary: "/bin/true", MaxQueue: MaxQueueOf(-1)}.withDefaults()
	assert.Error(t, err)
}

// TestMaxWorkersPerModelSettings: max_workers_per_model comes from its
// flag, else [queen] in the configuration file, else 1; below 1 is refused.
func TestMaxWorkersPerModelSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.toml")
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	cfg, _, err := parseArgs(nil, &bytes.Buffer{}, getenv)
	require.NoError(t, err)
	assert.Equal(t, DefaultMaxWorkersPerModel, cfg.MaxWorkersPerModel)

	require.NoError(t, os.WriteFile(file, []byte("[queen]\nmax_workers_per_model = 3\n"), 0o600))
	env["RBEE_CONFIG"] = file
	cfg, _, err = parseArgs(nil, &bytes.Buffer{}, getenv)
	require.NoError(t, err)
	assert.Equal(t, 3, cfg.MaxWorkersPerModel)

	cfg, _, err = parseArgs([]string{"--max-workers-per-model", "2"}, &bytes.Buffer{}, getenv)
	require.NoError(t, err)
	assert.Equal(t, 2, cfg.MaxWorkersPerModel, "the flag beats the file")

	_, _, err = parseArgs([]string{"--max-workers-per-model", "0"}, &bytes.Buffer{}, getenv)
	var ue *cliutil.UsageError
	assert.True(t, errors.As(err, &ue), "a usage error, got %v", err)
	require.NoError(t, os.WriteFile(file, []byte("[queen]\nmax_workers_per_model = -1\n"), 0o600))
	_, _, err = parseArgs(nil, &bytes.Buffer{}, getenv)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "queen.max_workers_per_model")

	unset, err := Config{Home: t.TempDir(), Binary: "/bin/true"}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, 1, unset.MaxWorkersPerModel)
	_, err = Config{Home: t.TempDir(), Binary: "/bin/true", MaxWorkersPerModel: -2}.withDefaults()
	assert.Error(t, err)
}
