package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee"
	"rbee/internal/proc"
	"rbee/internal/sshtest"
	"rbee/internal/testutil"
)

// remoteCluster is a cluster whose queen reaches "remote" nodes through a
// real OpenSSH server on a loopback port, with a configuration file
// ($RBEE_CONFIG) that the keeper and the queen both read.
type remoteCluster struct {
	*cluster
	ssh        *sshtest.Server
	config     string
	knownHosts string
	root       string // the nodes' install paths are under it
}

func newRemoteCluster(t *testing.T) *remoteCluster {
	t.Helper()
	srv := sshtest.Start(t)
	rc := &remoteCluster{cluster: newCluster(t, ""), ssh: srv, knownHosts: srv.EmptyKnownHosts(t), root: t.TempDir()}
	rc.config = filepath.Join(t.TempDir(), "config.toml")
	// [remote] paths relative to each node's install path (S57).
	require.NoError(t, os.WriteFile(rc.config, []byte(`# rbee configuration for the remote-node scenarios
[ssh]
known_hosts = "`+rc.knownHosts+`"

[remote]
binary_path = "custom/bin/rbee"
git_repo_dir = "custom/src"
worker_port_start = `+strconv.Itoa(freePortNot(t, rc.cluster))+`
`), 0o600))
	t.Cleanup(func() { rc.assertNoRemoteProcesses(t) })
	return rc
}

func (rc *remoteCluster) env() []string {
	return append(rc.cluster.env(), "RBEE_CONFIG="+rc.config)
}

// rbee runs one rbee command with the cluster's configuration.
func (rc *remoteCluster) rbee(args ...string) result {
	rc.t.Helper()
	return runRbee(rc.t, rc.bin, rc.env(), args...)
}

// startQueen runs `rbee queen` with the configuration; the test stops it.
func (rc *remoteCluster) startQueen() *proc.Process {
	rc.t.Helper()
	p, err := proc.Start(proc.Spec{Path: rc.bin, Env: []string{"RBEE_HOME=" + rc.home, "RBEE_CONFIG=" + rc.config, "RBEE_API_KEY="},
		Args: []string{"queen", "--port", strconv.Itoa(rc.queenPort), "--local-hive-port", strconv.Itoa(rc.hivePort),
			"--local-worker-port-start", strconv.Itoa(rc.workerPort)},
		LogFile: filepath.Join(rc.home, "queen-test.log")})
	require.NoError(rc.t, err)
	rc.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		_ = p.Stop(ctx, 35*time.Second)
	})
	rc.waitHealthy(rc.client(), p)
	return p
}

// addArgs is an add-node command line for a node on the test sshd.
func (rc *remoteCluster) addArgs(name string, hivePort int, extra ...string) []string {
	return append([]string{"setup", "add-node", "--queen-url", rc.queenURL(), "--name", name,
		"--ssh-host", rc.ssh.Host, "--ssh-port", strconv.Itoa(rc.ssh.Port), "--ssh-user", rc.ssh.User,
		"--ssh-key", rc.ssh.ClientKeyPath, "--install-path", rc.installPath(name), "--hive-port", strconv.Itoa(hivePort)}, extra...)
}

func (rc *remoteCluster) installPath(name string) string { return filepath.Join(rc.root, name, "rbee") }

// remoteProcesses lists live processes run from the nodes' install paths:
// the hives started over SSH and their workers.
func (rc *remoteCluster) remoteProcesses() []process {
	entries, _ := os.ReadDir("/proc")
	var out []process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if strings.HasPrefix(args[0], rc.root+"/") && !isZombie(pid) {
			out = append(out, process{pid, args})
		}
	}
	return out
}

func (rc *remoteCluster) remoteRole(role string) []process {
	var out []process
	for _, p := range rc.remoteProcesses() {
		if len(p.args) > 1 && p.args[1] == role {
			out = append(out, p)
		}
	}
	return out
}

func (rc *remoteCluster) assertNoRemoteProcesses(t *testing.T) {
	var left []process
	deadline := time.Now().Add(15 * time.Second)
	for {
		left = rc.remoteProcesses()
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range left {
		t.Errorf("remote process left behind: %s", p)
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
}

// nodes reads the registry through the keeper.
func (rc *remoteCluster) nodes(t *testing.T) map[string]rbee.Node {
	t.Helper()
	r := rc.rbee("setup", "list-nodes", "--json", "--queen-url", rc.queenURL())
	require.Equal(t, 0, r.code, r.String())
	var list struct {
		Nodes []rbee.Node `json:"nodes"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list), r.stdout)
	out := map[string]rbee.Node{}
	for _, n := range list.Nodes {
		out[n.Name] = n
	}
	return out
}

// copyModel puts the tiny model on a node, under its install path.
func copyModel(t *testing.T, installPath string) string {
	t.Helper()
	dst := filepath.Join(installPath, "models", "tiny-Q8_0.gguf")
	require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
	data, err := os.ReadFile(tinyModel(t))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, data, 0o644))
	return dst
}

// fakeRepo is a bare git repository of a tiny Go module whose cmd/rbee
// answers `version` like rbee: install's git path without network.
func fakeRepo(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/fakerbee\n\ngo 1.22\n",
		"cmd/rbee/main.go": "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() {\n" +
			"\tif len(os.Args) > 1 && os.Args[1] == \"version\" {\n\t\tfmt.Println(\"rbee " + rbee.Version + "\")\n\t\treturn\n\t}\n\tos.Exit(2)\n}\n",
	}
	for name, body := range files {
		p := filepath.Join(src, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	bare := filepath.Join(t.TempDir(), "rbee.git")
	for _, args := range [][]string{
		{"init", "--quiet", "--initial-branch=main"}, {"add", "."}, {"commit", "--quiet", "-m", "fake rbee"},
		{"clone", "--quiet", "--bare", src, bare},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
			"GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_SYSTEM=/dev/null")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "git %v: %s", args, out)
	}
	return bare
}

// TestRemoteNodes drives the remote-node scenarios through the rbee
// binary: a persistent queen, a real sshd, and two nodes on it —
// workstation (reached over the network) and mac (through an SSH tunnel),
// each with its own install path and hive port.
func TestRemoteNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs sshd, queen, hives and workers")
	}
	rc := newRemoteCluster(t)
	queen := rc.startQueen()
	wsPort, macPort := freePortNot(t, rc.cluster), freePortNot(t, rc.cluster)
	target := rc.ssh.User + "@127.0.0.1:" + strconv.Itoa(rc.ssh.Port)

	// Every subtest can run alone (go test -run 'TestRemoteNodes/S07_mac'):
	// these bring about what the earlier ones leave behind, when it is
	// missing.
	ports := map[string]int{"workstation": wsPort, "mac": macPort}
	registered := func(t *testing.T, name string) {
		t.Helper()
		if _, ok := rc.nodes(t)[name]; ok {
			return
		}
		port, ok := ports[name]
		if !ok {
			port = freePortNot(t, rc.cluster)
		}
		extra := []string{"--accept-new-host-key"}
		if name == "mac" {
			extra = append(extra, "--tunnel")
		}
		r := rc.rbee(rc.addArgs(name, port, extra...)...)
		require.Equal(t, 0, r.code, "%s%s", r, rc.logs())
	}
	installed := func(t *testing.T, name string) {
		t.Helper()
		if _, err := os.Stat(filepath.Join(rc.installPath(name), "custom", "bin", "rbee")); err == nil {
			return
		}
		registered(t, name)
		r := rc.rbee("setup", "install", "--node", name, "--queen-url", rc.queenURL())
		require.Equal(t, 0, r.code, "%s%s", r, rc.logs())
	}
	hasWorker := func(name string) bool {
		for _, w := range rc.workers() {
			if w.Node == name {
				return true
			}
		}
		return false
	}

	t.Run("S02", func(t *testing.T) {
		dead := testutil.FreePort(t)
		r := rc.rbee("setup", "add-node", "--queen-url", rc.queenURL(), "--name", "gone", "--ssh-host", "127.0.0.1",
			"--ssh-port", strconv.Itoa(dead), "--ssh-key", rc.ssh.ClientKeyPath, "--install-path", "/opt/rbee")
		assert.Equal(t, 1, r.code, r.String())
		assert.Contains(t, r.stdout, "[queen] Testing SSH connection to 127.0.0.1:"+strconv.Itoa(dead))
		assert.Contains(t, r.stderr, "rbee setup: SSH connection to ")
		assert.Contains(t, r.stderr, "failed after 3 attempts")
		assert.Contains(t, r.stderr, "hint: ")
		assert.NotContains(t, rc.nodes(t), "gone", "nothing is saved")
	})

	t.Run("unknown host key", func(t *testing.T) {
		r := rc.rbee(rc.addArgs("workstation", wsPort)...)
		assert.Equal(t, 1, r.code, r.String())
		assert.Contains(t, r.stderr, "is not in "+rc.knownHosts)
		assert.Contains(t, r.stderr, "--accept-new-host-key")
		assert.Empty(t, rc.nodes(t))
	})

	t.Run("S01", func(t *testing.T) {
		before := time.Now().Unix()
		r := rc.rbee(rc.addArgs("workstation", wsPort, "--accept-new-host-key")...)
		require.Equal(t, 0, r.code, "%s%s", r, rc.logs())
		assert.Equal(t, "[queen] Testing SSH connection to "+target+"\n"+
			"[queen] SSH connection to "+target+" works; node workstation saved to the registry as reachable\n"+
			"Node workstation added. Install rbee on it with: rbee setup install --node workstation\n", r.stdout)
		n := rc.nodes(t)["workstation"]
		assert.Equal(t, rbee.NodeReachable, n.Status)
		assert.GreaterOrEqual(t, n.LastConnectedUnix, before)
		known, err := os.ReadFile(rc.knownHosts)
		require.NoError(t, err)
		assert.Contains(t, string(known), strings.TrimSpace(rc.ssh.KnownHostsLine(rc.ssh.HostPublicKey)), "the accepted key is recorded")

		// The key is known now: mac needs no --accept-new-host-key.
		r = rc.rbee(rc.addArgs("mac", macPort, "--tunnel")...)
		require.Equal(t, 0, r.code, r.String())

		r = rc.rbee(rc.addArgs("mac", macPort)...)
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, "node mac is already registered")
		assert.Contains(t, r.stderr, "hint: remove it first")
	})

	t.Run("HOST_KEY_MISMATCH", func(t *testing.T) {
		impostor := sshtest.StartFake(t, sshtest.FakeOptions{})
		// known_hosts holds another key for the impostor's address.
		f, err := os.OpenFile(rc.knownHosts, os.O_APPEND|os.O_WRONLY, 0o600)
		require.NoError(t, err)
		_, err = f.WriteString(impostor.KnownHostsLine(rc.ssh.HostPublicKey) + "\n")
		require.NoError(t, err)
		require.NoError(t, f.Close())
		r := rc.rbee("setup", "add-node", "--queen-url", rc.queenURL(), "--name", "impostor", "--ssh-host", "127.0.0.1",
			"--ssh-port", strconv.Itoa(impostor.Port), "--ssh-key", rc.ssh.ClientKeyPath, "--install-path", "/opt/rbee",
			"--accept-new-host-key")
		assert.Equal(t, 1, r.code, r.String())
		assert.Contains(t, r.stderr, "changed")
		assert.Contains(t, r.stderr, "hint: someone may be intercepting the connection")
		assert.NotContains(t, rc.nodes(t), "impostor")
	})

	t.Run("auth failure", func(t *testing.T) {
		stranger := sshtest.NewKey(t, sshtest.Ed25519, "")
		args := rc.addArgs("stranger", freePortNot(t, rc.cluster), "--accept-new-host-key")
		for i, a := range args {
			if a == "--ssh-key" {
				args[i+1] = stranger.Path
			}
		}
		r := rc.rbee(args...)
		assert.Equal(t, 1, r.code, r.String())
		assert.Contains(t, r.stderr, "SSH authentication as "+rc.ssh.User)
		assert.Contains(t, r.stderr, "authorized_keys")
		assert.NotContains(t, rc.nodes(t), "stranger")
	})

	t.Run("S04", func(t *testing.T) {
		registered(t, "workstation")
		registered(t, "mac")
		r := rc.rbee("setup", "list-nodes", "--queen-url", rc.queenURL())
		require.Equal(t, 0, r.code, r.String())
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		require.Len(t, lines, 3, r.stdout)
		assert.Regexp(t, `^NODE \(HOST\)\s+STATUS\s+LAST CONNECTED\s+INSTALL PATH`, lines[0])
		host := regexp.QuoteMeta(rc.ssh.User + "@127.0.0.1:" + strconv.Itoa(rc.ssh.Port))
		assert.Regexp(t, `^mac \(`+host+`\)\s+reachable\s+(just now|\d+s ago)\s+`+regexp.QuoteMeta(rc.installPath("mac"))+`\s+`+strconv.Itoa(macPort)+`\s+yes$`, lines[1])
		assert.Regexp(t, `^workstation \(`+host+`\)\s+reachable\s+(just now|\d+s ago)\s+`+regexp.QuoteMeta(rc.installPath("workstation"))+`\s+`+strconv.Itoa(wsPort)+`\s+no$`, lines[2])
	})

	t.Run("S03", func(t *testing.T) {
		for _, name := range []string{"workstation", "mac"} {
			registered(t, name)
			r := rc.rbee("setup", "install", "--node", name, "--queen-url", rc.queenURL())
			require.Equal(t, 0, r.code, "%s%s", r, rc.logs())
			bin := filepath.Join(rc.installPath(name), "custom", "bin", "rbee")
			for _, want := range []string{
				"[queen] Connecting to " + name + " over SSH",
				"[queen] Checking the platform of " + name + " (uname -sm)",
				"[queen] Uploading rbee (",
				"[queen] rbee " + rbee.Version + " is installed on " + name + " at " + bin + "\n",
			} {
				assert.Contains(t, r.stdout, want)
			}
		}
	})

	t.Run("S57", func(t *testing.T) {
		if _, err := exec.LookPath("git"); err != nil {
			t.Skip("git is not installed")
		}
		// binary_path and git_repo_dir of [remote], relative to the
		// install path, are where install puts rbee and its sources.
		installed(t, "workstation")
		bin := filepath.Join(rc.installPath("workstation"), "custom", "bin", "rbee")
		out, err := exec.Command(bin, "version").Output()
		require.NoError(t, err)
		assert.Equal(t, "rbee "+rbee.Version+"\n", string(out))

		r := rc.rbee(rc.addArgs("builder", freePortNot(t, rc.cluster), "--git-repo", fakeRepo(t), "--git-branch", "main")...)
		require.Equal(t, 0, r.code, r.String())
		r = rc.rbee("setup", "install", "--node", "builder", "--from-source", "--queen-url", rc.queenURL())
		require.Equal(t, 0, r.code, "%s%s", r, rc.logs())
		src := filepath.Join(rc.installPath("builder"), "custom", "src")
		assert.Contains(t, r.stdout, "[queen] Cloning ")
		assert.Contains(t, r.stdout, " into "+src+"\n")
		assert.Contains(t, r.stdout, "[queen] Building rbee at main")
		_, err = os.Stat(filepath.Join(src, "cmd", "rbee", "main.go"))
		assert.NoError(t, err, "the sources are in git_repo_dir")
		out, err = exec.Command(filepath.Join(rc.installPath("builder"), "custom", "bin", "rbee"), "version").Output()
		require.NoError(t, err, "the build is at binary_path")
		assert.Equal(t, "rbee "+rbee.Version+"\n", string(out))
	})

	t.Run("S05", func(t *testing.T) {
		registered(t, "builder")
		r := rc.rbee("setup", "remove-node", "--name", "builder", "--queen-url", rc.queenURL())
		require.Equal(t, 0, r.code, r.String())
		assert.Equal(t, "Removed node builder.\n", r.stdout)
		assert.NotContains(t, rc.nodes(t), "builder")
	})

	t.Run("S06", func(t *testing.T) {
		r := rc.rbee("infer", "--queen-url", rc.queenURL(), "--node", "nowhere", "--model", "file:/m.gguf", "--prompt", "hi")
		assert.Equal(t, 1, r.code, r.String())
		assert.Contains(t, r.stderr, "rbee infer: node nowhere is not in the registry\n")
		assert.Contains(t, r.stderr, "hint: add it first: rbee setup add-node --name nowhere")
	})

	for _, name := range []string{"workstation", "mac"} {
		t.Run("S07 "+name, func(t *testing.T) {
			installed(t, name)
			model := copyModel(t, rc.installPath(name))
			r := rc.rbee("infer", "--queen-url", rc.queenURL(), "--node", name, "--model", "file:"+model,
				"--prompt", "Once upon a time", "--max-tokens", "20", "--temperature", "0")
			require.Equal(t, 0, r.code, "%s%s", r, rc.logs())
			assert.NotEmpty(t, strings.TrimSpace(r.stdout), "tokens on stdout")
			for _, want := range []string{
				"[queen] rbee-hive is not running on " + name + "; starting it over SSH (" + target + ")",
				"[queen] Starting rbee-hive on " + name + " over SSH",
				"[queen] rbee-hive on " + name + " is up (version " + rbee.Version + ")",
				"[queen] Spawning a worker for file:" + model + " on " + name,
				"[queen] Worker ",
				"[keeper] 20 tokens",
			} {
				assert.Contains(t, r.stderr, want)
			}
			if name == "mac" {
				assert.Contains(t, r.stderr, "reached through an SSH tunnel")
			}
			var w *rbee.WorkerInfo
			for _, wi := range rc.workers() {
				if wi.Node == name {
					w = &wi
				}
			}
			require.NotNil(t, w, "the worker of %s is listed", name)
			assert.Equal(t, rbee.StateIdle, w.State, "idle after the inference")
			hives := rc.remoteRole("hive")
			var found bool
			for _, h := range hives {
				found = found || strings.HasPrefix(h.args[0], rc.installPath(name)+"/custom/bin/rbee")
			}
			assert.True(t, found, "the hive runs from [remote] binary_path on %s: %v", name, hives)
		})
	}

	t.Run("cascade", func(t *testing.T) {
		for _, name := range []string{"workstation", "mac"} {
			if !hasWorker(name) {
				installed(t, name)
				r := rc.rbee("infer", "--queen-url", rc.queenURL(), "--node", name,
					"--model", "file:"+copyModel(t, rc.installPath(name)), "--prompt", "Hello", "--max-tokens", "2")
				require.Equal(t, 0, r.code, "%s%s", r, rc.logs())
			}
		}
		require.Len(t, rc.remoteRole("hive"), 2, "both remote hives run")
		require.Len(t, rc.remoteRole("worker"), 2, "with a worker each")
		require.NoError(t, queen.Signal(syscall.SIGTERM))
		select {
		case <-queen.Exited():
		case <-time.After(40 * time.Second):
			t.Fatal("the queen did not exit")
		}
		assert.Equal(t, 0, queen.ExitCode(), rc.logs())
		assert.Empty(t, rc.remoteProcesses(), "SIGTERM to the queen stops the hives it started over SSH, and their workers")
	})

	t.Run("ephemeral", func(t *testing.T) {
		installed(t, "workstation")
		model := copyModel(t, rc.installPath("workstation"))
		select { // stopped by cascade, or now
		case <-queen.Exited():
		default:
			require.NoError(t, queen.Signal(syscall.SIGTERM))
			require.True(t, queen.WaitTimeout(40*time.Second), "the queen did not exit")
		}
		// No queen runs now: rbee infer starts one (it reads the same
		// configuration and registry), which starts the node's hive over
		// SSH, and everything is gone when the command ends.
		r := rc.rbee("infer", "--queen-url", rc.queenURL(), "--node", "workstation",
			"--model", "file:"+model,
			"--prompt", "Once upon a time", "--max-tokens", "5", "--temperature", "0")
		require.Equal(t, 0, r.code, "%s%s", r, rc.logs())
		assert.Contains(t, r.stderr, "[keeper] No queen at "+rc.queenURL()+": starting one (ephemeral mode)")
		assert.Contains(t, r.stderr, "starting it over SSH")
		assert.Contains(t, r.stderr, "[keeper] 5 tokens")
		assert.Empty(t, rc.remoteProcesses(), "the ephemeral queen stopped the hive it started")
	})
}
