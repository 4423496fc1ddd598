package orchestrator

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/paths"
	"rbee/internal/sqlitex"
	"rbee/internal/testutil"
)

// fillRegistry makes a registry at path with enough nodes to span many
// pages, and closes it.
func fillRegistry(t *testing.T, path string) {
	t.Helper()
	s, err := openStore(t.Context(), path)
	require.NoError(t, err)
	for i := range 120 {
		require.NoError(t, s.Add(t.Context(), api.Node{Name: fmt.Sprintf("node-%03d", i), SSHHost: "10.0.0.1",
			SSHUser: "rbee", InstallPath: "/opt/rbee/" + strings.Repeat("x", 60)}))
	}
	require.NoError(t, s.Close())
}

// TestDamagedRegistryRefusesToStart overwrites a page in the middle of a
// real beehives.db with garbage: the queen does not start, and its error
// names the file and says what to do.
func TestDamagedRegistryRefusesToStart(t *testing.T) {
	home := t.TempDir()
	require.NoError(t, paths.Ensure(home))
	db := paths.QueenDB(home)
	fillRegistry(t, db)
	testutil.DamageSQLite(t, db)
	before, err := os.ReadFile(db)
	require.NoError(t, err)

	_, err = New(Config{Home: home})
	require.Error(t, err)
	assert.ErrorIs(t, err, sqlitex.ErrDamaged)
	assert.Contains(t, err.Error(), "node registry "+db+" is damaged: ")
	assert.Contains(t, err.Error(), "mv "+db+" "+db+".damaged")

	var stderr testutil.SyncBuffer
	err = Main(t.Context(), []string{"--port", "0", "--home", home}, &stderr)
	require.Error(t, err, "rbee queen refuses to start")
	assert.Contains(t, err.Error(), db+" is damaged")
	after, err := os.ReadFile(db)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the damaged file is left for the operator")

	// Moved aside, the queen starts with an empty registry.
	require.NoError(t, os.Rename(db, db+".damaged"))
	q, err := New(Config{Home: home})
	require.NoError(t, err)
	nodes, err := q.store.List(t.Context())
	require.NoError(t, err)
	assert.Empty(t, nodes)
	require.NoError(t, q.Close())
}

// TestZeroByteRegistryIsEmpty: a zero-byte beehives.db is an empty SQLite
// database, not damage: the queen starts, creates its table and works.
func TestZeroByteRegistryIsEmpty(t *testing.T) {
	home := t.TempDir()
	require.NoError(t, paths.Ensure(home))
	require.NoError(t, os.WriteFile(paths.QueenDB(home), nil, 0o600))
	tq := newTestQueen(t, Config{Home: home})
	var list api.NodeList
	_, e := call(t, http.MethodGet, tq.url+"/v2/registry/beehives/list", "", nil, &list)
	require.Nil(t, e)
	assert.Empty(t, list.Nodes)
	require.NoError(t, tq.q.store.Add(t.Context(), api.Node{Name: "ws", SSHHost: "h"}))
	_, e = call(t, http.MethodGet, tq.url+"/v2/registry/beehives/list", "", nil, &list)
	require.Nil(t, e)
	require.Len(t, list.Nodes, 1)
	assert.Equal(t, "ws", list.Nodes[0].Name)
}

// TestDamagedRegistryPageIsLogged damages a page of the beehives table
// while the queen runs (through SQLite's page table, so that every
// connection sees it): listing the nodes answers INTERNAL naming the file,
// and the queen's log has the cause.
func TestDamagedRegistryPageIsLogged(t *testing.T) {
	home := t.TempDir()
	require.NoError(t, paths.Ensure(home))
	fillRegistry(t, paths.QueenDB(home))
	var logs testutil.SyncBuffer
	tq := newTestQueen(t, Config{Home: home, Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})})

	var pgno int64
	require.NoError(t, tq.q.store.db.QueryRow(`SELECT pageno FROM dbstat WHERE name = 'beehives' AND pagetype = 'leaf' LIMIT 1 OFFSET 1`).Scan(&pgno))
	_, err := tq.q.store.db.Exec(`UPDATE sqlite_dbpage SET data = randomblob(length(data)) WHERE pgno = ?`, pgno)
	require.NoError(t, err)

	status, e := call(t, http.MethodGet, tq.url+"/v2/registry/beehives/list", "", nil, &api.NodeList{})
	assert.Equal(t, http.StatusInternalServerError, status)
	require.NotNil(t, e)
	assert.Equal(t, api.CodeInternal, e.Code)
	assert.Contains(t, e.Message, "the node registry "+paths.QueenDB(home)+" is damaged (listing the nodes: ")
	assert.Contains(t, e.Hint(), "move the file aside")
	assert.Contains(t, logs.String(), "node registry query failed")
	assert.Contains(t, logs.String(), "doing=\"listing the nodes\"")
	assert.Contains(t, logs.String(), "malformed", "the cause is in the log")
}

// TestStoreAfterCloseIsShuttingDown: a registry call racing the queen's
// Close gets SHUTTING_DOWN, not an internal error about a closed database.
func TestStoreAfterCloseIsShuttingDown(t *testing.T) {
	s, _ := openTestStore(t)
	require.NoError(t, s.Close())
	_, err := s.List(t.Context())
	assert.ErrorIs(t, err, api.ErrShuttingDown)
	_, err = s.Get(t.Context(), "ws")
	assert.ErrorIs(t, err, api.ErrShuttingDown)
	assert.ErrorIs(t, s.Add(t.Context(), api.Node{Name: "ws", SSHHost: "h"}), api.ErrShuttingDown)
}
