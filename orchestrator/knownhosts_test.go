package orchestrator

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh/knownhosts"

	"rbee/api"
	"rbee/internal/sshtest"
)

// TestAddNodeRecordsHostKeyOnlyWhenSaved: with accept_new_host_key, an
// add-node whose login fails (a key the node does not authorize, or a
// user it does not have) saves nothing and leaves known_hosts exactly as
// it was; one that succeeds saves the node and records the key.
func TestAddNodeRecordsHostKeyOnlyWhenSaved(t *testing.T) {
	skipShort(t)
	srv := sshtest.Start(t)
	known := filepath.Join(t.TempDir(), "known_hosts")
	other := sshtest.NewKey(t, sshtest.Ed25519, "")
	before := knownhosts.Line([]string{"[otherhost]:2222"}, other.PublicKey()) + "\n"
	require.NoError(t, os.WriteFile(known, []byte(before), 0o600))
	tq := newTestQueen(t, Config{KnownHostsPath: known})
	good := api.AddNodeRequest{Name: "workstation", SSHHost: srv.Host, SSHPort: srv.Port, SSHUser: srv.User,
		SSHKeyPath: srv.ClientKeyPath, InstallPath: "/opt/rbee", AcceptNewHostKey: true}

	for name, mutate := range map[string]func(*api.AddNodeRequest){
		"wrong key":  func(r *api.AddNodeRequest) { r.SSHKeyPath = sshtest.NewKey(t, sshtest.Ed25519, "").Path },
		"wrong user": func(r *api.AddNodeRequest) { r.SSHUser = "rbee-no-such-user" },
	} {
		t.Run(name, func(t *testing.T) {
			req := good
			mutate(&req)
			res := postStream(t, tq.url, "/v2/registry/beehives/add", req)
			assertEnvelope(t, res.errorEvent(), api.CodeSSHAuthFailed, "")
			_, err := tq.q.store.Get(t.Context(), req.Name)
			assert.ErrorIs(t, err, api.ErrNodeNotFound, "nothing saved")
			data, err := os.ReadFile(known)
			require.NoError(t, err)
			assert.Equal(t, before, string(data), "known_hosts is untouched")
		})
	}

	res := postStream(t, tq.url, "/v2/registry/beehives/add", good)
	require.Nil(t, res.errorEvent(), "%+v", res.errorEvent())
	_, err := tq.q.store.Get(t.Context(), good.Name)
	require.NoError(t, err, "saved")
	data, err := os.ReadFile(known)
	require.NoError(t, err)
	assert.Equal(t, before+srv.KnownHostsLine(srv.HostPublicKey)+"\n", string(data), "the key is recorded after the save, once")
}
