package api

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func goodAdd() AddNodeRequest {
	return AddNodeRequest{Name: "workstation", SSHHost: "workstation.home.arpa", SSHUser: "vince",
		SSHKeyPath: "/home/vince/.ssh/id_ed25519", GitRepoURL: "https://github.com/example/rbee.git", InstallPath: "/opt/rbee"}
}

func TestAddNodeValidateDefaults(t *testing.T) {
	r := goodAdd()
	require.Nil(t, r.Validate())
	assert.Equal(t, 22, r.SSHPort)
	assert.Equal(t, 9200, r.HivePort)
	assert.Equal(t, "main", r.GitBranch)
	n := r.Node()
	assert.Equal(t, NodeUnknown, n.Status)
	assert.Equal(t, "/opt/rbee", n.InstallPath)
}

func TestAddNodeValidate(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*AddNodeRequest)
		field string // "" when valid
	}{
		{"ok", func(*AddNodeRequest) {}, ""},
		{"ipv4", func(r *AddNodeRequest) { r.SSHHost = "192.168.1.10" }, ""},
		{"ipv6", func(r *AddNodeRequest) { r.SSHHost = "::1" }, ""},
		{"no user", func(r *AddNodeRequest) { r.SSHUser = "" }, ""},
		{"no key", func(r *AddNodeRequest) { r.SSHKeyPath = "" }, ""},
		{"no repo", func(r *AddNodeRequest) { r.GitRepoURL = "" }, ""},
		{"scp repo", func(r *AddNodeRequest) { r.GitRepoURL = "git@github.com:example/rbee.git" }, ""},
		{"path repo", func(r *AddNodeRequest) { r.GitRepoURL = "/srv/git/rbee.git" }, ""},
		{"file repo", func(r *AddNodeRequest) { r.GitRepoURL = "file:///srv/git/rbee.git" }, ""},
		{"branch with slash", func(r *AddNodeRequest) { r.GitBranch = "release/0.1" }, ""},
		{"empty name", func(r *AddNodeRequest) { r.Name = "" }, "node_name"},
		{"upper name", func(r *AddNodeRequest) { r.Name = "Workstation" }, "node_name"},
		{"local", func(r *AddNodeRequest) { r.Name = "local" }, "node_name"},
		{"auto", func(r *AddNodeRequest) { r.Name = "auto" }, "node_name"},
		{"long name", func(r *AddNodeRequest) { r.Name = strings.Repeat("a", 64) }, "node_name"},
		{"no host", func(r *AddNodeRequest) { r.SSHHost = "" }, "ssh_host"},
		{"host injection", func(r *AddNodeRequest) { r.SSHHost = "a;rm -rf /" }, "ssh_host"},
		{"host option", func(r *AddNodeRequest) { r.SSHHost = "-oProxyCommand=x" }, "ssh_host"},
		{"host bracketed", func(r *AddNodeRequest) { r.SSHHost = "[::1]" }, "ssh_host"},
		{"host label too long", func(r *AddNodeRequest) { r.SSHHost = strings.Repeat("a", 64) + ".lan" }, "ssh_host"},
		{"port high", func(r *AddNodeRequest) { r.SSHPort = 65536 }, "ssh_port"},
		{"port negative", func(r *AddNodeRequest) { r.SSHPort = -1 }, "ssh_port"},
		{"hive port", func(r *AddNodeRequest) { r.HivePort = 70000 }, "hive_port"},
		{"user space", func(r *AddNodeRequest) { r.SSHUser = "a b" }, "ssh_user"},
		{"user option", func(r *AddNodeRequest) { r.SSHUser = "-l" }, "ssh_user"},
		{"user long", func(r *AddNodeRequest) { r.SSHUser = strings.Repeat("u", 33) }, "ssh_user"},
		{"key relative", func(r *AddNodeRequest) { r.SSHKeyPath = "id_ed25519" }, "ssh_key_path"},
		{"key dotdot", func(r *AddNodeRequest) { r.SSHKeyPath = "/home/../etc/shadow" }, "ssh_key_path"},
		{"repo option", func(r *AddNodeRequest) { r.GitRepoURL = "--upload-pack=touch /tmp/x" }, "git_repo_url"},
		{"repo ext", func(r *AddNodeRequest) { r.GitRepoURL = "ext::sh -c touch% /tmp/pwned" }, "git_repo_url"},
		{"repo shell", func(r *AddNodeRequest) { r.GitRepoURL = "https://x/$(id)" }, "git_repo_url"},
		{"repo relative", func(r *AddNodeRequest) { r.GitRepoURL = "rbee.git" }, "git_repo_url"},
		{"branch option", func(r *AddNodeRequest) { r.GitBranch = "-b" }, "git_branch"},
		{"branch dotdot", func(r *AddNodeRequest) { r.GitBranch = "a..b" }, "git_branch"},
		{"branch lock", func(r *AddNodeRequest) { r.GitBranch = "main.lock" }, "git_branch"},
		{"branch space", func(r *AddNodeRequest) { r.GitBranch = "my branch" }, "git_branch"},
		{"no install path", func(r *AddNodeRequest) { r.InstallPath = "" }, "install_path"},
		{"install relative", func(r *AddNodeRequest) { r.InstallPath = "opt/rbee" }, "install_path"},
		{"install unclean", func(r *AddNodeRequest) { r.InstallPath = "/opt/rbee/" }, "install_path"},
		{"install dotdot", func(r *AddNodeRequest) { r.InstallPath = "/opt/../etc" }, "install_path"},
		{"install root", func(r *AddNodeRequest) { r.InstallPath = "/" }, "install_path"},
		{"install newline", func(r *AddNodeRequest) { r.InstallPath = "/opt/rbee\nx" }, "install_path"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := goodAdd()
			c.edit(&r)
			e := r.Validate()
			if c.field == "" {
				assert.Nil(t, e)
				return
			}
			require.NotNil(t, e)
			assert.Equal(t, CodeInvalidRequest, e.Code)
			assert.Equal(t, c.field, e.Details["field"])
		})
	}
}

// TestTaskRequestAutoNode: an empty node or "auto" leaves the node to the
// queen (Node becomes ""); a named node is kept and checked.
func TestTaskRequestAutoNode(t *testing.T) {
	for _, node := range []string{"", AutoNode} {
		r := TaskRequest{Node: node, Model: "file:/m.gguf", Prompt: "hi"}
		_, e := r.Validate()
		require.Nil(t, e, "%q", node)
		assert.Empty(t, r.Node, "%q", node)
	}
	r := TaskRequest{Node: "ws", Model: "file:/m.gguf", Prompt: "hi"}
	_, e := r.Validate()
	require.Nil(t, e)
	assert.Equal(t, "ws", r.Node)
	r = TaskRequest{Node: "Bad_Node", Model: "file:/m.gguf", Prompt: "hi"}
	_, e = r.Validate()
	require.NotNil(t, e)
	assert.Equal(t, "node", e.Details["field"])
}
