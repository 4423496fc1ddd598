package orchestrator

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/sse"
	"rbee/internal/sshtest"
	"rbee/internal/testutil"
)

// These tests reach "remote" nodes through a real OpenSSH server on a
// loopback port (internal/sshtest), logged into as the current user: the
// nodes workstation and mac are two install paths and hive ports on this
// machine, as a queen would see two machines.

// postStream posts body to one of the queen's streaming endpoints and
// reads the answer to its end.
func postStream(t *testing.T, url, path string, body any) *taskResult {
	t.Helper()
	data, err := json.Marshal(body)
	require.NoError(t, err)
	resp, err := http.Post(url+path, "application/json", strings.NewReader(string(data)))
	require.NoError(t, err)
	defer resp.Body.Close()
	res := &taskResult{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		var env api.Envelope
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&env), "an error answer is an envelope")
		res.envelope = env.Error
		return res
	}
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	for ev, err := range sse.Read(resp.Body) {
		if err != nil {
			res.streamErr = err
			break
		}
		res.events = append(res.events, ev)
	}
	return res
}

// narrations returns every narration line, in order.
func (r *taskResult) narrations() []string {
	var out []string
	for _, ev := range r.events {
		if ev.Kind == api.KindNarration {
			out = append(out, ev.Narration.Human)
		}
	}
	return out
}

// remoteSetup is a queen and the sshd its nodes are reached through.
type remoteSetup struct {
	tq  *testQueen
	ssh *sshtest.Server
}

func newRemoteSetup(t *testing.T, mutate func(*Config)) *remoteSetup {
	t.Helper()
	srv := sshtest.Start(t)
	cfg := Config{Binary: testutil.RbeeBinary(t), KnownHostsPath: srv.KnownHostsPath,
		RemoteWorkerPortStart: testutil.FreePort(t), HiveStartTimeout: 30 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	return &remoteSetup{tq: newTestQueen(t, cfg), ssh: srv}
}

// node is an add-node request for a node on the test sshd with its own
// install path and hive port.
func (rs *remoteSetup) node(t *testing.T, name string) api.AddNodeRequest {
	return api.AddNodeRequest{Name: name, SSHHost: rs.ssh.Host, SSHPort: rs.ssh.Port, SSHUser: rs.ssh.User,
		SSHKeyPath: rs.ssh.ClientKeyPath, InstallPath: filepath.Join(t.TempDir(), name, "rbee"), HivePort: testutil.FreePort(t)}
}

func (rs *remoteSetup) add(t *testing.T, req api.AddNodeRequest) *taskResult {
	t.Helper()
	res := postStream(t, rs.tq.url, "/v2/registry/beehives/add", req)
	require.Equal(t, http.StatusOK, res.status, "%+v", res.envelope)
	return res
}

func (rs *remoteSetup) install(t *testing.T, req api.InstallRequest) *taskResult {
	t.Helper()
	res := postStream(t, rs.tq.url, "/v2/registry/beehives/install", req)
	require.Equal(t, http.StatusOK, res.status, "%+v", res.envelope)
	return res
}

// TestS01AddNode: the queen tests SSH with echo over a real connection,
// narrates two lines, and saves the node as reachable with
// last_connected_unix and a private hive token.
func TestS01AddNode(t *testing.T) {
	skipShort(t)
	rs := newRemoteSetup(t, nil)
	req := rs.node(t, "workstation")
	before := time.Now().Unix()
	res := rs.add(t, req)
	require.Nil(t, res.errorEvent(), "%+v", res.errorEvent())
	require.NotNil(t, res.done(), "the stream ends with done")
	lines := res.narrations()
	require.Len(t, lines, 2, "the two narration lines: %q", lines)
	target := rs.ssh.User + "@127.0.0.1:" + strconv.Itoa(rs.ssh.Port)
	assert.Equal(t, "Testing SSH connection to "+target, lines[0])
	assert.Equal(t, "SSH connection to "+target+" works; node workstation saved to the registry as reachable", lines[1])

	n, err := rs.tq.q.store.Get(t.Context(), "workstation")
	require.NoError(t, err)
	assert.Equal(t, api.NodeReachable, n.Status)
	assert.GreaterOrEqual(t, n.LastConnectedUnix, before)
	assert.Equal(t, req.InstallPath, n.InstallPath)
	assert.Equal(t, req.HivePort, n.HivePort)
	assert.Equal(t, "main", n.GitBranch)
	token, err := rs.tq.q.store.Token(t.Context(), "workstation")
	require.NoError(t, err)
	assert.GreaterOrEqual(t, len(token), 32, "a hive token is made for the node")
	st, err := os.Stat(filepath.Join(rs.tq.cfg.Home, "beehives.db"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the registry holds tokens")

	var list api.NodeList
	_, e := call(t, "GET", rs.tq.url+"/v2/registry/beehives/list", "", nil, &list)
	require.Nil(t, e)
	require.Len(t, list.Nodes, 1)
	raw, _ := json.Marshal(list)
	assert.NotContains(t, string(raw), token, "the token is never listed")

	t.Run("duplicate", func(t *testing.T) {
		res := postStream(t, rs.tq.url, "/v2/registry/beehives/add", req)
		assert.Equal(t, http.StatusConflict, res.status)
		assertEnvelope(t, res.envelope, api.CodeNodeAlreadyExists, "")
		assert.Contains(t, res.envelope.Hint(), "remove-node --name workstation")
	})
}

// TestS02AddUnreachableNode: no SSH server, or one that never answers:
// the failure is reported and nothing is saved.
func TestS02AddUnreachableNode(t *testing.T) {
	stall := sshtest.StartFake(t, sshtest.FakeOptions{Mode: sshtest.FakeStall})
	tq := newTestQueen(t, Config{SSHTimeout: 300 * time.Millisecond, SSHRetryDelays: []time.Duration{0, 20 * time.Millisecond, 40 * time.Millisecond},
		KnownHostsPath: stall.KnownHostsPath})
	key := sshtest.NewKey(t, sshtest.Ed25519, "")
	for name, port := range map[string]int{"refused": testutil.FreePort(t), "stalled": stall.Port} {
		t.Run(name, func(t *testing.T) {
			res := postStream(t, tq.url, "/v2/registry/beehives/add", api.AddNodeRequest{Name: "gone", SSHHost: "127.0.0.1", SSHPort: port,
				SSHKeyPath: key.Path, InstallPath: "/opt/rbee"})
			require.Equal(t, http.StatusOK, res.status)
			e := res.errorEvent()
			assertEnvelope(t, e, api.CodeSSHConnectionFailed, "")
			assert.Contains(t, e.Message, "after 3 attempts")
			assert.Equal(t, "gone", e.Details["node"])
			assert.NotEmpty(t, e.Hint())
			assert.Nil(t, res.done())
			assert.Equal(t, []string{"Testing SSH connection to 127.0.0.1:" + strconv.Itoa(port)}, res.narrations())
			_, err := tq.q.store.Get(t.Context(), "gone")
			assert.ErrorIs(t, err, api.ErrNodeNotFound, "nothing is saved")
		})
	}
	assert.Equal(t, 3, stall.Conns(), "three attempts at the stalled server")
}

// TestAddNodeHostKeys: an unknown host is refused unless the request
// accepts it, which records its key; a changed key is HOST_KEY_MISMATCH;
// a key the node does not authorize is SSH_AUTH_FAILED.
func TestAddNodeHostKeys(t *testing.T) {
	skipShort(t)
	srv := sshtest.Start(t)
	known := srv.EmptyKnownHosts(t)
	tq := newTestQueen(t, Config{KnownHostsPath: known})
	req := api.AddNodeRequest{Name: "workstation", SSHHost: srv.Host, SSHPort: srv.Port, SSHUser: srv.User,
		SSHKeyPath: srv.ClientKeyPath, InstallPath: "/opt/rbee"}

	res := postStream(t, tq.url, "/v2/registry/beehives/add", req)
	e := res.errorEvent()
	assertEnvelope(t, e, api.CodeSSHConnectionFailed, "")
	assert.Contains(t, e.Message, "not in "+known)
	assert.Contains(t, e.Hint(), "--accept-new-host-key")
	_, err := tq.q.store.Get(t.Context(), "workstation")
	require.ErrorIs(t, err, api.ErrNodeNotFound)

	req.AcceptNewHostKey = true
	res = postStream(t, tq.url, "/v2/registry/beehives/add", req)
	require.Nil(t, res.errorEvent(), "%+v", res.errorEvent())
	data, err := os.ReadFile(known)
	require.NoError(t, err)
	assert.Contains(t, string(data), strings.TrimSpace(srv.KnownHostsLine(srv.HostPublicKey)), "the key is recorded")

	t.Run("mismatch", func(t *testing.T) {
		other := sshtest.NewKey(t, sshtest.Ed25519, "")
		wrong := filepath.Join(t.TempDir(), "known_hosts")
		require.NoError(t, os.WriteFile(wrong, []byte(srv.KnownHostsLine(other.PublicKey())+"\n"), 0o600))
		tq := newTestQueen(t, Config{KnownHostsPath: wrong})
		req := req
		req.AcceptNewHostKey = true // never overrides a changed key
		res := postStream(t, tq.url, "/v2/registry/beehives/add", req)
		e := res.errorEvent()
		assertEnvelope(t, e, api.CodeHostKeyMismatch, "")
		assert.Contains(t, e.Hint(), "ssh-keygen -R")
		_, err := tq.q.store.Get(t.Context(), "workstation")
		assert.ErrorIs(t, err, api.ErrNodeNotFound)
	})
	t.Run("auth failure", func(t *testing.T) {
		stranger := sshtest.NewKey(t, sshtest.Ed25519, "")
		tq := newTestQueen(t, Config{KnownHostsPath: srv.KnownHostsPath})
		req := req
		req.SSHKeyPath = stranger.Path
		res := postStream(t, tq.url, "/v2/registry/beehives/add", req)
		e := res.errorEvent()
		assertEnvelope(t, e, api.CodeSSHAuthFailed, "")
		assert.Contains(t, e.Hint(), "authorized_keys")
		_, err := tq.q.store.Get(t.Context(), "workstation")
		assert.ErrorIs(t, err, api.ErrNodeNotFound)
	})
}

// TestAddNodeBadInput: every field is checked before anything connects.
func TestAddNodeBadInput(t *testing.T) {
	fake := sshtest.StartFake(t, sshtest.FakeOptions{})
	tq := newTestQueen(t, Config{KnownHostsPath: fake.KnownHostsPath})
	good := api.AddNodeRequest{Name: "ws", SSHHost: "127.0.0.1", SSHPort: fake.Port, InstallPath: "/opt/rbee"}
	cases := []struct {
		name  string
		body  any
		field string
	}{
		{"name", func() api.AddNodeRequest { r := good; r.Name = "WS!"; return r }(), "node_name"},
		{"local", func() api.AddNodeRequest { r := good; r.Name = "local"; return r }(), "node_name"},
		{"host", func() api.AddNodeRequest { r := good; r.SSHHost = "$(reboot)"; return r }(), "ssh_host"},
		{"port", func() api.AddNodeRequest { r := good; r.SSHPort = 70000; return r }(), "ssh_port"},
		{"user", func() api.AddNodeRequest { r := good; r.SSHUser = "root;id"; return r }(), "ssh_user"},
		{"key", func() api.AddNodeRequest { r := good; r.SSHKeyPath = "../id"; return r }(), "ssh_key_path"},
		{"repo", func() api.AddNodeRequest { r := good; r.GitRepoURL = "-u x"; return r }(), "git_repo_url"},
		{"branch", func() api.AddNodeRequest { r := good; r.GitBranch = "--force"; return r }(), "git_branch"},
		{"install path", func() api.AddNodeRequest { r := good; r.InstallPath = "rbee"; return r }(), "install_path"},
		{"hive port", func() api.AddNodeRequest { r := good; r.HivePort = -1; return r }(), "hive_port"},
		{"unknown field", `{"node_name":"ws","ssh_host":"h","install_path":"/x","password":"p"}`, "password"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, e := call(t, "POST", tq.url+"/v2/registry/beehives/add", "", c.body, nil)
			assert.Equal(t, http.StatusBadRequest, status)
			assertEnvelope(t, e, api.CodeInvalidRequest, "")
			assert.Equal(t, c.field, e.Details["field"])
		})
	}
	assert.Zero(t, fake.Conns(), "no connection was made for a bad request")
	nodes, err := tq.q.store.List(t.Context())
	require.NoError(t, err)
	assert.Empty(t, nodes)

	for name, body := range map[string]any{"no name": api.InstallRequest{}, "local": api.InstallRequest{Name: "local"}} {
		status, e := call(t, "POST", tq.url+"/v2/registry/beehives/install", "", body, nil)
		assert.Equal(t, http.StatusBadRequest, status, name)
		assertEnvelope(t, e, api.CodeInvalidRequest, "")
	}
	status, e := call(t, "POST", tq.url+"/v2/registry/beehives/install", "", api.InstallRequest{Name: "mac"}, nil)
	assert.Equal(t, http.StatusNotFound, status)
	assertEnvelope(t, e, api.CodeNodeNotFound, "")
}

// TestS03InstallUpload: the node's uname matches this machine, so the
// queen's own binary is uploaded; each step is narrated and the installed
// binary answers its version.
func TestS03InstallUpload(t *testing.T) {
	skipShort(t)
	rs := newRemoteSetup(t, nil)
	req := rs.node(t, "workstation")
	rs.add(t, req)

	// add-node's connection is kept as the node's; one that died is
	// dialled again.
	rm := rs.tq.q.hives.remote
	rm.mu.Lock()
	first := rm.conns["workstation"]
	rm.mu.Unlock()
	require.NotNil(t, first, "the tested connection is kept")
	require.NoError(t, first.c.Close())

	res := rs.install(t, api.InstallRequest{Name: "workstation"})
	require.Nil(t, res.errorEvent(), "%+v", res.errorEvent())
	require.NotNil(t, res.done())
	rm.mu.Lock()
	second := rm.conns["workstation"]
	rm.mu.Unlock()
	require.NotNil(t, second)
	assert.NotSame(t, first, second, "a dead connection is replaced")
	bin := filepath.Join(req.InstallPath, "bin", "rbee")
	for _, action := range []string{"install_connect", "install_platform", "install_dirs", "install_upload", "install_verify", "install_done"} {
		assert.NotEmpty(t, res.narration(action), "step %s is narrated: %q", action, res.narrations())
	}
	assert.Contains(t, res.narration("install_upload")[0], "to workstation:"+bin)
	assert.Equal(t, "rbee "+api.Version+" is installed on workstation at "+bin, res.narration("install_done")[0])
	st, err := os.Stat(bin)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), st.Mode().Perm())
	out, err := exec.Command(bin, "version").Output()
	require.NoError(t, err)
	assert.Equal(t, "rbee "+api.Version+"\n", string(out))
	assert.NotEmpty(t, res.narration("install_platform"))

	t.Run("from source without a repository", func(t *testing.T) {
		res := rs.install(t, api.InstallRequest{Name: "workstation", FromSource: true})
		e := res.errorEvent()
		assertEnvelope(t, e, api.CodeInvalidRequest, "")
		assert.Contains(t, e.Message, "no git_repo_url")
		assert.Contains(t, e.Hint(), "--git-repo")
	})
}

// fakeRepo makes a bare git repository holding a tiny Go module whose
// cmd/rbee prints "rbee <version>" for `version`: the git path of install
// without network.
func fakeRepo(t *testing.T, version string) string {
	t.Helper()
	src := t.TempDir()
	write := func(name, body string) {
		p := filepath.Join(src, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	write("go.mod", "module example.com/fakerbee\n\ngo 1.22\n")
	write("cmd/rbee/main.go", `package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("rbee `+version+`")
		return
	}
	os.Exit(2)
}
`)
	git := func(dir string, args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
			"GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_SYSTEM=/dev/null")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "git %v: %s", args, out)
	}
	git(src, "init", "--quiet", "--initial-branch=main")
	git(src, "add", ".")
	git(src, "commit", "--quiet", "-m", "fake rbee")
	bare := filepath.Join(t.TempDir(), "rbee.git")
	git(src, "clone", "--quiet", "--bare", src, bare)
	return bare
}

// TestS03InstallFromSource (and S57): git clone of the node's repository at
// its branch, go build in the git repo dir, the binary at binary_path,
// both taken from the [remote] settings; a second install fetches instead
// of cloning; a missing branch names the step and git's output.
func TestS03InstallFromSource(t *testing.T) {
	skipShort(t)
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	remoteRoot := t.TempDir()
	rs := newRemoteSetup(t, func(c *Config) {
		c.RemoteBinaryPath = filepath.Join(remoteRoot, "custom", "bin", "rbee-node") // S57: absolute
		c.RemoteGitRepoDir = "checkout/rbee"                                         // relative to install_path
	})
	req := rs.node(t, "mac")
	req.GitRepoURL = fakeRepo(t, api.Version)
	rs.add(t, req)

	res := rs.install(t, api.InstallRequest{Name: "mac", FromSource: true})
	require.Nil(t, res.errorEvent(), "%+v\n%q", res.errorEvent(), res.narrations())
	repoDir := filepath.Join(req.InstallPath, "checkout", "rbee")
	bin := rs.tq.cfg.RemoteBinaryPath
	for _, action := range []string{"install_tools", "install_clone", "install_build", "install_verify", "install_done"} {
		assert.NotEmpty(t, res.narration(action), "step %s is narrated: %q", action, res.narrations())
	}
	assert.Empty(t, res.narration("install_upload"))
	assert.Contains(t, res.narration("install_clone")[0], "into "+repoDir)
	assert.Contains(t, res.narration("install_clone")[0], "branch main")
	assert.Equal(t, "rbee "+api.Version+" is installed on mac at "+bin, res.narration("install_done")[0])
	out, err := exec.Command(bin, "version").Output()
	require.NoError(t, err)
	assert.Equal(t, "rbee "+api.Version+"\n", string(out))
	_, err = os.Stat(filepath.Join(repoDir, "go.mod"))
	assert.NoError(t, err, "the sources are in the git repo dir")

	t.Run("again fetches", func(t *testing.T) {
		res := rs.install(t, api.InstallRequest{Name: "mac", FromSource: true})
		require.Nil(t, res.errorEvent(), "%+v", res.errorEvent())
		assert.NotEmpty(t, res.narration("install_fetch"))
		assert.NotEmpty(t, res.narration("install_checkout"))
		assert.Empty(t, res.narration("install_clone"))
	})
	t.Run("a missing branch", func(t *testing.T) {
		other := rs.node(t, "other")
		other.GitRepoURL = req.GitRepoURL
		other.GitBranch = "no-such-branch"
		rs.add(t, other)
		res := rs.install(t, api.InstallRequest{Name: "other", FromSource: true})
		e := res.errorEvent()
		assertEnvelope(t, e, api.CodeInternal, "")
		assert.Equal(t, "git clone", e.Details["step"])
		assert.Contains(t, e.Details["output"], "no-such-branch", "git's own words")
		assert.Contains(t, e.Message, "git clone on other failed")
	})
	t.Run("a version this queen cannot use", func(t *testing.T) {
		rs := newRemoteSetup(t, nil)
		old := rs.node(t, "old")
		old.GitRepoURL = fakeRepo(t, "0.0.9")
		rs.add(t, old)
		res := rs.install(t, api.InstallRequest{Name: "old", FromSource: true})
		e := res.errorEvent()
		assertEnvelope(t, e, api.CodeVersionMismatch, "")
		assert.Equal(t, "verify", e.Details["step"])
	})
}

// copyModel puts a tiny model under the node's install path, as a user
// would copy one there, and returns its file: reference.
func copyModel(t *testing.T, installPath string) string {
	t.Helper()
	src := strings.TrimPrefix(tinyModel(t), "file:")
	dst := filepath.Join(installPath, "models", "tiny.gguf")
	require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
	data, err := os.ReadFile(src)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, data, 0o644))
	return "file:" + dst
}

// TestS07RemoteColdStart runs the whole flow on two nodes behind the same
// sshd: workstation reached over the network, mac through an SSH tunnel.
// The queen starts each hive over SSH, the hive a worker, the loading
// progress and 20 tokens come back, the worker is idle afterwards; a
// second task reuses it; closing the queen stops both hives and their
// workers (the cascade of DESIGN §7).
func TestS07RemoteColdStart(t *testing.T) {
	skipShort(t)
	rs := newRemoteSetup(t, nil)
	type nodeRun struct {
		req   api.AddNodeRequest
		model string
		cold  *taskResult // the node's first task, which started its hive
		hive  int
		work  int
	}
	runs := map[string]*nodeRun{}
	for _, name := range []string{"workstation", "mac"} {
		req := rs.node(t, name)
		req.Tunnel = name == "mac"
		rs.add(t, req)
		res := rs.install(t, api.InstallRequest{Name: name})
		require.Nil(t, res.errorEvent(), "%+v", res.errorEvent())
		runs[name] = &nodeRun{req: req, model: copyModel(t, req.InstallPath)}
	}
	// coldStart runs a node's first task, once: the subtests build on it,
	// and each can run alone.
	coldStart := func(t *testing.T, name string) *nodeRun {
		t.Helper()
		nr := runs[name]
		if nr.cold != nil {
			return nr
		}
		res := postTask(t, t.Context(), rs.tq.url, "", api.TaskRequest{Node: name, Model: nr.model, Prompt: "Once upon a time",
			SamplingParams: api.SamplingParams{MaxTokens: 20, Temperature: ptrTo(0.0)}}, nil)
		require.Equal(t, http.StatusOK, res.status, "%+v", res.envelope)
		require.Nil(t, res.errorEvent(), "%+v\n%q", res.errorEvent(), res.narrations())
		nr.cold, nr.hive = res, hivePid(t, res)
		list, _ := listWorkers(t, rs.tq.url)
		for _, w := range list.Workers {
			if w.Node == name {
				nr.work = w.PID
			}
		}
		return nr
	}

	for _, name := range []string{"workstation", "mac"} {
		t.Run("S07 "+name, func(t *testing.T) {
			nr := coldStart(t, name)
			res := nr.cold
			assert.Len(t, res.narration("hive_ssh"), 1, "the hive is started over SSH")
			assert.True(t, alive(nr.hive), "the hive runs")
			if name == "mac" {
				assert.Contains(t, res.narration("hive_start")[0], "SSH tunnel")
			}
			assert.Len(t, res.narration("hive_ready"), 1)
			// The tiny model loads at once: its progress stream may hold only
			// the ready stage.
			var ready int
			for _, ev := range res.events {
				if ev.Kind == api.KindProgress && ev.Progress.Stage == api.StageReady {
					ready++
				}
			}
			assert.Equal(t, 1, ready, "the worker's loading progress is relayed")
			d := res.done()
			require.NotNil(t, d)
			assert.Equal(t, 20, d.TotalTokens)

			n, err := rs.tq.q.store.Get(t.Context(), name)
			require.NoError(t, err)
			assert.Equal(t, api.NodeReachable, n.Status)
			assert.Empty(t, n.LastError)

			list, _ := listWorkers(t, rs.tq.url)
			var w *api.WorkerInfo
			for i := range list.Workers {
				if list.Workers[i].Node == name {
					w = &list.Workers[i]
				}
			}
			require.NotNil(t, w, "the worker of %s is listed", name)
			assert.Equal(t, api.StateIdle, w.State, "idle afterwards")
			if name == "workstation" {
				assert.Contains(t, w.URL, "127.0.0.1:", "workers are advertised by the node's ssh_host")
			} else {
				// Tunnel mode: the queen called the worker through a tunnel
				// to its port on the node.
				rm := rs.tq.q.hives.remote
				rm.mu.Lock()
				fwd := rm.conns[name].fwd
				_, viaTunnel := fwd[strings.TrimPrefix(w.URL, "http://")]
				rm.mu.Unlock()
				assert.True(t, viaTunnel, "a tunnel to %s: %v", w.URL, fwd)
			}
			require.Positive(t, w.PID)
			assert.Equal(t, nr.work, w.PID)

			var h api.NodeHealth
			_, e := call(t, "GET", rs.tq.url+"/v2/workers/health?node="+name, "", nil, &h)
			require.Nil(t, e)
			if name == "mac" {
				assert.NotContains(t, h.HiveURL, ":"+strconv.Itoa(nr.req.HivePort), "the tunnel's own port")
			} else {
				assert.Equal(t, "http://127.0.0.1:"+strconv.Itoa(nr.req.HivePort), h.HiveURL)
			}

			warm := postTask(t, t.Context(), rs.tq.url, "", api.TaskRequest{Node: name, Model: nr.model, Prompt: "Again",
				SamplingParams: api.SamplingParams{MaxTokens: 4, Temperature: ptrTo(0.0)}}, nil)
			require.Nil(t, warm.errorEvent(), "%+v", warm.errorEvent())
			assert.NotEmpty(t, warm.narration("worker_reuse"), "a warm start reuses the worker")
			assert.Empty(t, warm.narration("hive_ssh"), "the hive already runs")
		})
	}
	t.Run("the hive's token stays off command lines", func(t *testing.T) {
		token, err := rs.tq.q.store.Token(t.Context(), "workstation")
		require.NoError(t, err)
		cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(coldStart(t, "workstation").hive) + "/cmdline")
		require.NoError(t, err)
		assert.NotContains(t, string(cmdline), token)
		assert.Contains(t, string(cmdline), "--advertise-host")
		logData, err := os.ReadFile(filepath.Join(runs["workstation"].req.InstallPath, "logs", "hive.log"))
		require.NoError(t, err)
		assert.NotContains(t, string(logData), token)
	})

	t.Run("S62 logs of remote nodes", func(t *testing.T) {
		for name := range runs {
			coldStart(t, name)
			res := getLogs(t, t.Context(), rs.tq, "", "node="+name+"&lines=1000", nil)
			require.Equal(t, http.StatusOK, res.status, "%v", res.envelope)
			require.NoError(t, res.err)
			sources := map[string]int{}
			var hiveStarted bool
			for _, ev := range res.events {
				require.Equal(t, api.KindLog, ev.Kind)
				assert.Equal(t, name, ev.Log.Node)
				sources[ev.Log.Source]++
				hiveStarted = hiveStarted || ev.Log.Source == api.SourceHive && strings.Contains(ev.Log.Line, "hive listening")
			}
			assert.True(t, hiveStarted, "%s: the hive's own log (<install_path>/logs/hive.log) is served: %v", name, sources)
			var workerLines int
			for src, n := range sources {
				if strings.HasPrefix(src, "w-") {
					workerLines += n
				}
			}
			assert.Positive(t, workerLines, "%s: the worker's log is served: %v", name, sources)
		}
	})

	t.Run("a hive that died is started again", func(t *testing.T) {
		nr := coldStart(t, "workstation")
		require.NoError(t, syscall.Kill(nr.hive, syscall.SIGKILL))
		require.Eventually(t, func() bool { return !alive(nr.hive) }, 5*time.Second, 20*time.Millisecond)
		res := postTask(t, t.Context(), rs.tq.url, "", api.TaskRequest{Node: "workstation", Model: nr.model, Prompt: "Again",
			SamplingParams: api.SamplingParams{MaxTokens: 4, Temperature: ptrTo(0.0)}}, nil)
		require.Nil(t, res.errorEvent(), "%+v\n%q", res.errorEvent(), res.narrations())
		assert.Len(t, res.narration("hive_ssh"), 1)
		pid := hivePid(t, res)
		assert.NotEqual(t, nr.hive, pid)
		nr.hive = pid
		list, _ := listWorkers(t, rs.tq.url)
		for _, w := range list.Workers {
			if w.Node == "workstation" {
				nr.work = w.PID
			}
		}
	})

	t.Run("cascade", func(t *testing.T) {
		for name := range runs {
			coldStart(t, name)
		}
		start := time.Now()
		require.NoError(t, rs.tq.q.Close())
		for name, nr := range runs {
			assert.False(t, alive(nr.hive), "the hive of %s is stopped", name)
			assert.Eventually(t, func() bool { return !alive(nr.work) }, 10*time.Second, 20*time.Millisecond, "the worker of %s is stopped", name)
		}
		t.Logf("cascade over SSH took %s", time.Since(start).Round(time.Millisecond))
	})
}

// TestRemoteHiveNotInstalled: a task on a node without rbee says so and
// how to install it.
func TestRemoteHiveNotInstalled(t *testing.T) {
	skipShort(t)
	rs := newRemoteSetup(t, nil)
	req := rs.node(t, "workstation")
	rs.add(t, req)
	res := postTask(t, context.Background(), rs.tq.url, "", taskBody("workstation"), nil)
	e := res.errorEvent()
	assertEnvelope(t, e, api.CodeConnectionTimeout, res.header.Get("X-Request-ID"))
	assert.Contains(t, e.Message, "rbee is not installed on workstation")
	assert.Equal(t, "install it with: rbee setup install --node workstation", e.Hint())
	n, err := rs.tq.q.store.Get(t.Context(), "workstation")
	require.NoError(t, err)
	assert.Equal(t, api.NodeUnreachable, n.Status)
	assert.Contains(t, n.LastError, "not installed")
}
