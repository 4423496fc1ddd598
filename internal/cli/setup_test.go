package cli

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

// narrations answers a node endpoint with narration lines, then done (or
// an error event).
func narrations(fail *api.Error, lines ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := sse.NewWriter(w)
		for _, l := range lines {
			_ = s.Send(api.NarrationEvent(api.ActorQueen, "step", l))
		}
		if fail != nil {
			_ = s.Error(fail)
			return
		}
		_ = s.Send(api.Event{Kind: api.KindDone, Done: &api.Done{Done: true}})
		_ = s.Close()
	}
}

func TestSetupAddNode(t *testing.T) {
	f := newFakeQueen(t)
	var got api.AddNodeRequest
	ok := narrations(nil, "Testing SSH connection to vince@10.0.0.2:22", "SSH connection to vince@10.0.0.2:22 works; node workstation saved to the registry as reachable")
	f.handle("POST /v2/registry/beehives/add", func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, json.NewDecoder(r.Body).Decode(&got))
		ok(w, r)
	})
	q := []string{"--queen-url", f.srv.URL}
	args := []string{"setup", "add-node", "--name", "workstation", "--ssh-host", "10.0.0.2", "--ssh-user", "vince",
		"--ssh-key", "/home/vince/.ssh/id_ed25519", "--git-repo", "https://example.com/rbee.git", "--install-path", "/opt/rbee",
		"--hive-port", "9300", "--tunnel", "--accept-new-host-key"}
	r := run(t, t.Context(), nil, nil, append(args, q...)...)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "[queen] Testing SSH connection to vince@10.0.0.2:22\n"+
		"[queen] SSH connection to vince@10.0.0.2:22 works; node workstation saved to the registry as reachable\n"+
		"Node workstation added. Install rbee on it with: rbee setup install --node workstation\n", r.stdout)
	assert.Equal(t, api.AddNodeRequest{Name: "workstation", SSHHost: "10.0.0.2", SSHPort: 22, SSHUser: "vince",
		SSHKeyPath: "/home/vince/.ssh/id_ed25519", GitRepoURL: "https://example.com/rbee.git", GitBranch: "main",
		InstallPath: "/opt/rbee", HivePort: 9300, AcceptNewHostKey: true, Tunnel: true}, got)

	t.Run("failure", func(t *testing.T) {
		f.handle("POST /v2/registry/beehives/add", narrations(
			api.Errorf(api.CodeSSHConnectionFailed, "SSH connection to vince@10.0.0.9:22 failed: connection refused").WithHint("check that 10.0.0.9 is up"),
			"Testing SSH connection to vince@10.0.0.9:22"))
		r := run(t, t.Context(), nil, nil, append([]string{"setup", "add-node", "--name", "gone", "--ssh-host", "10.0.0.9",
			"--install-path", "/opt/rbee"}, q...)...)
		assert.Equal(t, 1, r.code)
		assert.Equal(t, "[queen] Testing SSH connection to vince@10.0.0.9:22\n", r.stdout)
		assert.Equal(t, "rbee setup: SSH connection to vince@10.0.0.9:22 failed: connection refused\nhint: check that 10.0.0.9 is up\n", r.stderr)
	})

	t.Run("relative key made absolute", func(t *testing.T) {
		wd, err := os.Getwd()
		require.NoError(t, err)
		f.handle("POST /v2/registry/beehives/add", func(w http.ResponseWriter, r *http.Request) {
			require.NoError(t, json.NewDecoder(r.Body).Decode(&got))
			ok(w, r)
		})
		r := run(t, t.Context(), nil, nil, append([]string{"setup", "add-node", "--name", "mac", "--ssh-host", "mac.lan",
			"--ssh-key", "id_test", "--install-path", "/opt/rbee"}, q...)...)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, filepath.Join(wd, "id_test"), got.SSHKeyPath)
	})

	before := len(f.requests())
	usage := []struct {
		args []string
		want string
	}{
		{[]string{"--ssh-host", "h", "--install-path", "/opt/rbee"}, "--name is required"},
		{[]string{"--name", "n", "--install-path", "/opt/rbee"}, "--ssh-host is required"},
		{[]string{"--name", "n", "--ssh-host", "h"}, "--install-path is required"},
		{[]string{"--name", "Bad_Name", "--ssh-host", "h", "--install-path", "/opt/rbee"}, "--name: "},
		{[]string{"--name", "local", "--ssh-host", "h", "--install-path", "/opt/rbee"}, "--name: "},
		{[]string{"--name", "n", "--ssh-host", "h;reboot", "--install-path", "/opt/rbee"}, "--ssh-host: "},
		{[]string{"--name", "n", "--ssh-host", "h", "--ssh-port", "0", "--install-path", "/opt/rbee"}, "--ssh-port: "},
		{[]string{"--name", "n", "--ssh-host", "h", "--ssh-user", "-oops", "--install-path", "/opt/rbee"}, "--ssh-user: "},
		{[]string{"--name", "n", "--ssh-host", "h", "--install-path", "opt/rbee"}, "--install-path: "},
		{[]string{"--name", "n", "--ssh-host", "h", "--install-path", "/opt/rbee", "--git-repo", "--upload-pack=x"}, "--git-repo: "},
		{[]string{"--name", "n", "--ssh-host", "h", "--install-path", "/opt/rbee", "--git-branch", "a..b"}, "--git-branch: "},
		{[]string{"--name", "n", "--ssh-host", "h", "--install-path", "/opt/rbee", "--hive-port", "99999"}, "--hive-port: "},
	}
	for _, u := range usage {
		t.Run(strings.Join(u.args, " "), func(t *testing.T) {
			r := run(t, t.Context(), nil, nil, append(append([]string{"setup", "add-node"}, u.args...), q...)...)
			assert.Equal(t, ExitUsage, r.code, r.stderr)
			assert.Contains(t, r.stderr, u.want)
		})
	}
	assert.Len(t, f.requests(), before, "bad flags never reach the queen")
}

func TestSetupInstall(t *testing.T) {
	f := newFakeQueen(t)
	var got api.InstallRequest
	f.handle("POST /v2/registry/beehives/install", func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, json.NewDecoder(r.Body).Decode(&got))
		narrations(nil, "Connecting to mac over SSH", "Uploading rbee (12.0 MiB) to mac:/opt/rbee/bin/rbee", "rbee 0.1.0 is installed on mac at /opt/rbee/bin/rbee")(w, r)
	})
	q := []string{"--queen-url", f.srv.URL}
	r := run(t, t.Context(), nil, nil, append([]string{"setup", "install", "--node", "mac", "--from-source"}, q...)...)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, api.InstallRequest{Name: "mac", FromSource: true}, got)
	assert.Equal(t, 3, strings.Count(r.stdout, "[queen] "), r.stdout)
	assert.Contains(t, r.stdout, "[queen] rbee 0.1.0 is installed on mac at /opt/rbee/bin/rbee\n")

	f.handle("POST /v2/registry/beehives/install", narrations(
		api.Errorf(api.CodeInternal, "go build on mac failed: exit status 1").With("step", "go build").WithHint("fix the build"),
		"Building rbee"))
	r = run(t, t.Context(), nil, nil, append([]string{"setup", "install", "--node", "mac"}, q...)...)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stdout, "[queen] Building rbee\n")
	assert.Contains(t, r.stderr, "rbee setup: go build on mac failed: exit status 1\nhint: fix the build\n")

	f.handle("POST /v2/registry/beehives/install", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, api.Errorf(api.CodeNodeNotFound, "node gpu is not in the registry").WithHint("add it first"))
	})
	r = run(t, t.Context(), nil, nil, append([]string{"setup", "install", "--node", "gpu"}, q...)...)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "node gpu is not in the registry")

	for _, args := range [][]string{{}, {"--node", "Bad!"}} {
		r = run(t, t.Context(), nil, nil, append(append([]string{"setup", "install"}, args...), q...)...)
		assert.Equal(t, ExitUsage, r.code, r.stderr)
	}
}

// TestQueenURLFromConfig: the keeper finds the queen through the
// configuration file when neither flag nor environment says, and a bad
// file is an error naming the key and the file.
func TestQueenURLFromConfig(t *testing.T) {
	f := newFakeQueen(t)
	f.handle("GET /v2/registry/beehives/list", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, 200, api.NodeList{Nodes: []api.Node{}})
	})
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	require.NoError(t, os.WriteFile(good, []byte("[queen]\nurl = \""+f.srv.URL+"\"\n"), 0o600))
	r := run(t, t.Context(), map[string]string{"RBEE_CONFIG": good}, nil, "setup", "list-nodes")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "No nodes registered")

	r = run(t, t.Context(), map[string]string{"RBEE_CONFIG": good, "RBEE_QUEEN_URL": "http://127.0.0.1:1"}, nil, "setup", "list-nodes")
	assert.Equal(t, 1, r.code, "the environment beats the file")
	assert.Contains(t, r.stderr, "no queen answers at http://127.0.0.1:1")

	bad := filepath.Join(dir, "bad.toml")
	require.NoError(t, os.WriteFile(bad, []byte("[queen]\nulr = \"x\"\n"), 0o600))
	r = run(t, t.Context(), map[string]string{"RBEE_CONFIG": bad}, nil, "setup", "list-nodes")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "unknown key queen.ulr")
	assert.Contains(t, r.stderr, bad)

	notURL := filepath.Join(dir, "noturl.toml")
	require.NoError(t, os.WriteFile(notURL, []byte("[queen]\nhost = \"h\"\nport = 1\n"), 0o600))
	r = run(t, t.Context(), map[string]string{"RBEE_CONFIG": notURL}, nil, "setup", "list-nodes")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "no queen answers at http://h:1", "host and port name the queen when url is unset")
}
