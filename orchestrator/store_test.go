package orchestrator

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
)

func openTestStore(t *testing.T) (*store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "beehives.db")
	s, err := openStore(t.Context(), path)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestStoreAddGetListRemove(t *testing.T) {
	s, path := openTestStore(t)
	ctx := t.Context()

	nodes, err := s.List(ctx)
	require.NoError(t, err)
	assert.NotNil(t, nodes, "an empty registry lists as [] not null")
	assert.Empty(t, nodes)

	ws := api.Node{Name: "workstation", SSHHost: "10.0.0.2", SSHUser: "vince", SSHKeyPath: "/home/v/.ssh/id_ed25519",
		InstallPath: "/opt/rbee"}
	require.NoError(t, s.Add(ctx, ws))
	require.NoError(t, s.Add(ctx, api.Node{Name: "mac", SSHHost: "mac.lan", SSHPort: 2222, HivePort: 9300, GitBranch: "dev"}))

	got, err := s.Get(ctx, "workstation")
	require.NoError(t, err)
	want := ws
	want.SSHPort, want.GitBranch, want.HivePort, want.Status = 22, "main", 9200, api.NodeUnknown
	assert.Equal(t, want, got, "defaults applied")

	nodes, err = s.List(ctx)
	require.NoError(t, err)
	require.Len(t, nodes, 2)
	assert.Equal(t, "mac", nodes[0].Name, "sorted by name")
	assert.Equal(t, 2222, nodes[0].SSHPort)
	assert.Equal(t, 9300, nodes[0].HivePort)
	assert.Equal(t, "dev", nodes[0].GitBranch)

	err = s.Add(ctx, ws)
	assert.ErrorIs(t, err, api.ErrNodeAlreadyExists)

	require.NoError(t, s.Remove(ctx, "mac"))
	assert.ErrorIs(t, s.Remove(ctx, "mac"), api.ErrNodeNotFound)
	_, err = s.Get(ctx, "mac")
	require.ErrorIs(t, err, api.ErrNodeNotFound)
	assert.Contains(t, api.AsError(err).Hint(), "rbee setup add-node --name mac")

	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// The rows survive a reopen.
	require.NoError(t, s.Close())
	s2, err := openStore(ctx, path)
	require.NoError(t, err)
	defer s2.Close()
	nodes, err = s2.List(ctx)
	require.NoError(t, err)
	require.Len(t, nodes, 1)
	assert.Equal(t, "workstation", nodes[0].Name)
}

func TestStoreSetStatus(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := t.Context()
	require.NoError(t, s.Add(ctx, api.Node{Name: "ws", SSHHost: "h"}))

	at := time.Unix(1_700_000_000, 0)
	require.NoError(t, s.SetStatus(ctx, "ws", api.NodeReachable, at, ""))
	n, err := s.Get(ctx, "ws")
	require.NoError(t, err)
	assert.Equal(t, api.NodeReachable, n.Status)
	assert.Equal(t, at.Unix(), n.LastConnectedUnix)

	require.NoError(t, s.SetStatus(ctx, "ws", api.NodeUnreachable, time.Time{}, "connection refused"))
	n, err = s.Get(ctx, "ws")
	require.NoError(t, err)
	assert.Equal(t, api.NodeUnreachable, n.Status)
	assert.Equal(t, at.Unix(), n.LastConnectedUnix, "a failure keeps the last connection time")
	assert.Equal(t, "connection refused", n.LastError)

	assert.ErrorIs(t, s.SetStatus(ctx, "nope", api.NodeReachable, at, ""), api.ErrNodeNotFound)
	assert.ErrorIs(t, s.SetStatus(ctx, "ws", "sleepy", at, ""), api.ErrInvalidRequest)
}

func TestStoreBadInput(t *testing.T) {
	s, _ := openTestStore(t)
	cases := []struct {
		name  string
		node  api.Node
		field string
	}{
		{"empty name", api.Node{SSHHost: "h"}, "node_name"},
		{"bad name", api.Node{Name: "Bad_Name", SSHHost: "h"}, "node_name"},
		{"local", api.Node{Name: "local"}, "node_name"},
		{"ssh port", api.Node{Name: "a", SSHPort: 70000}, "ssh_port"},
		{"hive port", api.Node{Name: "a", HivePort: -1}, "hive_port"},
		{"status", api.Node{Name: "a", Status: "sleepy"}, "status"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Add(t.Context(), tc.node)
			require.ErrorIs(t, err, api.ErrInvalidRequest)
			assert.Equal(t, tc.field, api.AsError(err).Details["field"])
		})
	}
	nodes, err := s.List(t.Context())
	require.NoError(t, err)
	assert.Empty(t, nodes, "nothing half-saved")
}

func TestStoreConcurrentWriters(t *testing.T) {
	s, _ := openTestStore(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			name := string(rune('a'+i)) + "-node"
			assert.NoError(t, s.Add(t.Context(), api.Node{Name: name, SSHHost: "h"}))
			assert.NoError(t, s.SetStatus(t.Context(), name, api.NodeReachable, time.Now(), ""))
		})
	}
	wg.Wait()
	nodes, err := s.List(t.Context())
	require.NoError(t, err)
	assert.Len(t, nodes, 8)
}

func TestStoreRefusesCorruptAndNewerFiles(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.db")
	junk := []byte("this is not a database, it is a text file that happens to be long enough to have a header")
	require.NoError(t, os.WriteFile(corrupt, junk, 0o600))
	_, err := openStore(t.Context(), corrupt)
	require.Error(t, err)
	assert.Contains(t, err.Error(), corrupt)
	after, rerr := os.ReadFile(corrupt)
	require.NoError(t, rerr)
	assert.Equal(t, junk, after, "a corrupt registry is never recreated")

	newer := filepath.Join(dir, "newer.db")
	s, err := openStore(t.Context(), newer)
	require.NoError(t, err)
	_, err = s.db.Exec("PRAGMA user_version = 99")
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = openStore(t.Context(), newer)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "newer rbee")
}
