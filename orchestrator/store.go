package orchestrator

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"rbee/api"
	"rbee/internal/sqlitex"
)

// store is the queen's node registry: the beehives table in
// <home>/beehives.db. The node "local" never has a row. Every method is safe
// for concurrent use (database/sql pools connections; SQLite serialises
// writers, and the busy timeout makes them wait instead of failing).
//
// A query that fails for another reason than the caller's context is
// logged with its cause and returned as an *api.Error: INTERNAL (naming a
// damaged file), INSUFFICIENT_DISK, or SHUTTING_DOWN once the store is
// closed.
type store struct {
	db     *sql.DB
	path   string
	log    hclog.Logger // nil: nothing is logged
	closed atomic.Bool
}

// schema creates the table. It is idempotent: it runs on every open.
const schema = `
CREATE TABLE IF NOT EXISTS beehives (
	node_name           TEXT PRIMARY KEY NOT NULL,
	ssh_host            TEXT NOT NULL DEFAULT '',
	ssh_port            INTEGER NOT NULL DEFAULT 22,
	ssh_user            TEXT NOT NULL DEFAULT '',
	ssh_key_path        TEXT NOT NULL DEFAULT '',
	git_repo_url        TEXT NOT NULL DEFAULT '',
	git_branch          TEXT NOT NULL DEFAULT 'main',
	install_path        TEXT NOT NULL DEFAULT '',
	hive_port           INTEGER NOT NULL DEFAULT 9200,
	last_connected_unix INTEGER NOT NULL DEFAULT 0,
	last_error          TEXT NOT NULL DEFAULT '',
	status              TEXT NOT NULL DEFAULT 'unknown'
	                    CHECK (status IN ('unknown', 'reachable', 'unreachable')),
	tunnel              INTEGER NOT NULL DEFAULT 0,
	hive_token          TEXT NOT NULL DEFAULT ''
);`

// addedColumns are the columns schema 2 added to schema 1's table (the
// queen reaches hives through SSH tunnels, and keeps the token it gave each
// remote hive). ADD COLUMN runs only for those a table lacks.
var addedColumns = []struct{ name, def string }{
	{"tunnel", "INTEGER NOT NULL DEFAULT 0"},
	{"hive_token", "TEXT NOT NULL DEFAULT ''"},
}

// schemaVersion is recorded in PRAGMA user_version; a newer file is refused.
const schemaVersion = 2

// openStore opens (creating if needed) the registry at path. A file that
// is not a SQLite database or fails its integrity check, or one written by
// a newer rbee, is an error naming the file: it is never silently
// recreated. An empty (zero-byte) file is an empty registry.
func openStore(ctx context.Context, path string) (*store, error) {
	// The registry holds hive tokens: sqlitex keeps the files 0600.
	db, err := sqlitex.Open(ctx, path)
	if err != nil {
		if errors.Is(err, sqlitex.ErrDamaged) {
			return nil, fmt.Errorf("node registry %w (move it aside, e.g. mv %s %s.damaged, and start the queen again: "+
				"it creates an empty registry; then add the remote nodes again with rbee setup add-node)", err, path, path)
		}
		return nil, fmt.Errorf("node registry: %w", err)
	}
	s := &store{db: db, path: path}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("node registry %s: %w", path, err)
	}
	return s, nil
}

// failed turns a failed query into the error its caller returns, and logs
// it with its cause (the client only sees the envelope). doing says what
// the store was doing ("listing the nodes"). A query cut short by its
// context returns the context's error unlogged.
func (s *store) failed(ctx context.Context, doing string, err error) error {
	if s.closed.Load() {
		return shuttingDown()
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return err
	}
	if s.log != nil {
		s.log.Error("node registry query failed", "doing", doing, "path", s.path, "error", err)
	}
	switch {
	case sqlitex.IsDamaged(err):
		return api.Errorf(api.CodeInternal, "the node registry %s is damaged (%s: %v)", s.path, doing, err).
			With("path", s.path).
			WithHint("stop the queen and move the file aside: it then starts with an empty registry; add the remote nodes again with rbee setup add-node")
	case sqlitex.IsFull(err):
		return api.Errorf(api.CodeInsufficientDisk, "the node registry %s could not be written (%s): the disk is full", s.path, doing).
			With("path", s.path).WithHint("free space on the queen's machine")
	}
	return api.Errorf(api.CodeInternal, "the node registry failed while %s: %v", doing, err).With("path", s.path)
}

func (s *store) migrate(ctx context.Context) error {
	var v int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("reading the schema version (is it a SQLite database?): %w", err)
	}
	if v > schemaVersion {
		return fmt.Errorf("written by a newer rbee (schema %d, this rbee knows %d)", v, schemaVersion)
	}
	if _, err := s.db.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("creating the beehives table: %w", err)
	}
	if v < 2 {
		have := map[string]bool{}
		rows, err := s.db.QueryContext(ctx, "SELECT name FROM pragma_table_info('beehives')")
		if err != nil {
			return fmt.Errorf("reading the beehives table: %w", err)
		}
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				rows.Close()
				return fmt.Errorf("reading the beehives table: %w", err)
			}
			have[name] = true
		}
		rows.Close()
		for _, c := range addedColumns {
			if have[c.name] {
				continue
			}
			if _, err := s.db.ExecContext(ctx, "ALTER TABLE beehives ADD COLUMN "+c.name+" "+c.def); err != nil {
				return fmt.Errorf("adding column %s: %w", c.name, err)
			}
		}
	}
	if v < schemaVersion {
		if _, err := s.db.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
			return fmt.Errorf("recording the schema version: %w", err)
		}
	}
	return nil
}

// Close closes the database; later calls fail with SHUTTING_DOWN.
func (s *store) Close() error {
	s.closed.Store(true)
	return s.db.Close()
}

const nodeColumns = `node_name, ssh_host, ssh_port, ssh_user, ssh_key_path, git_repo_url, git_branch,
	install_path, hive_port, last_connected_unix, last_error, status, tunnel`

func scanNode(row interface{ Scan(...any) error }) (api.Node, error) {
	var n api.Node
	err := row.Scan(&n.Name, &n.SSHHost, &n.SSHPort, &n.SSHUser, &n.SSHKeyPath, &n.GitRepoURL, &n.GitBranch,
		&n.InstallPath, &n.HivePort, &n.LastConnectedUnix, &n.LastError, &n.Status, &n.Tunnel)
	return n, err
}

// Add inserts a node without a hive token; see AddWithToken.
func (s *store) Add(ctx context.Context, n api.Node) error { return s.AddWithToken(ctx, n, "") }

// AddWithToken inserts a node and the token its hive will be given. Empty
// fields take their defaults (ssh_port 22, git_branch main, hive_port 9200,
// status unknown). A node with the same name is NODE_ALREADY_EXISTS;
// "local" and invalid names are INVALID_REQUEST.
func (s *store) AddWithToken(ctx context.Context, n api.Node, token string) error {
	if err := validateNodeField("node_name", n.Name); err != nil {
		return err
	}
	if n.Name == api.LocalNode {
		return api.InvalidField("node_name", "%q is the built-in local node; it needs no registration", api.LocalNode)
	}
	if n.SSHPort == 0 {
		n.SSHPort = 22
	}
	if n.GitBranch == "" {
		n.GitBranch = "main"
	}
	if n.HivePort == 0 {
		n.HivePort = api.DefaultHivePort
	}
	if n.Status == "" {
		n.Status = api.NodeUnknown
	}
	if n.SSHPort < 1 || n.SSHPort > 65535 {
		return api.InvalidField("ssh_port", "a port is between 1 and 65535")
	}
	if n.HivePort < 1 || n.HivePort > 65535 {
		return api.InvalidField("hive_port", "a port is between 1 and 65535")
	}
	if !validStatus(n.Status) {
		return api.InvalidField("status", "status is unknown, reachable or unreachable")
	}
	// One statement, no read-then-write transaction: in WAL mode a deferred
	// transaction that upgrades to a write fails at once under contention.
	res, err := s.db.ExecContext(ctx, `INSERT INTO beehives (`+nodeColumns+`, hive_token) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (node_name) DO NOTHING`,
		n.Name, n.SSHHost, n.SSHPort, n.SSHUser, n.SSHKeyPath, n.GitRepoURL, n.GitBranch,
		n.InstallPath, n.HivePort, n.LastConnectedUnix, n.LastError, n.Status, n.Tunnel, token)
	if err != nil {
		return s.failed(ctx, "adding node "+n.Name, err)
	}
	if added, err := res.RowsAffected(); err == nil && added == 0 {
		return api.Errorf(api.CodeNodeAlreadyExists, "node %s is already registered", n.Name).
			With("node", n.Name).WithHint("remove it first: rbee setup remove-node --name " + n.Name)
	}
	return nil
}

// Get returns the node, or NODE_NOT_FOUND with the add-node hint.
func (s *store) Get(ctx context.Context, name string) (api.Node, error) {
	n, err := scanNode(s.db.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM beehives WHERE node_name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return api.Node{}, nodeNotFound(name)
	}
	if err != nil {
		return api.Node{}, s.failed(ctx, "reading node "+name, err)
	}
	return n, nil
}

// List returns every node, by name (never nil).
func (s *store) List(ctx context.Context) ([]api.Node, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+nodeColumns+` FROM beehives ORDER BY node_name`)
	if err != nil {
		return nil, s.failed(ctx, "listing the nodes", err)
	}
	defer rows.Close()
	nodes := []api.Node{}
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, s.failed(ctx, "listing the nodes", err)
		}
		nodes = append(nodes, n)
	}
	if err := rows.Err(); err != nil {
		return nil, s.failed(ctx, "listing the nodes", err)
	}
	return nodes, nil
}

// Remove deletes the node, or returns NODE_NOT_FOUND.
func (s *store) Remove(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM beehives WHERE node_name = ?`, name)
	if err != nil {
		return s.failed(ctx, "removing node "+name, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return nodeNotFound(name)
	}
	return nil
}

// SetStatus records the outcome of reaching a node: status, and when it was
// reached (a zero time keeps the previous last_connected_unix) and the last
// error ("" clears it).
func (s *store) SetStatus(ctx context.Context, name string, status api.NodeStatus, connected time.Time, lastError string) error {
	if !validStatus(status) {
		return api.InvalidField("status", "status is unknown, reachable or unreachable")
	}
	var at any
	if !connected.IsZero() {
		at = connected.Unix()
	}
	res, err := s.db.ExecContext(ctx, `UPDATE beehives SET status = ?, last_error = ?,
		last_connected_unix = COALESCE(?, last_connected_unix) WHERE node_name = ?`, status, lastError, at, name)
	if err != nil {
		return s.failed(ctx, "updating node "+name, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return nodeNotFound(name)
	}
	return nil
}

// Token returns the token the queen gives the node's hive ("" when none
// was made yet), or NODE_NOT_FOUND.
func (s *store) Token(ctx context.Context, name string) (string, error) {
	var token string
	err := s.db.QueryRowContext(ctx, `SELECT hive_token FROM beehives WHERE node_name = ?`, name).Scan(&token)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nodeNotFound(name)
	}
	if err != nil {
		return "", s.failed(ctx, "reading the token of node "+name, err)
	}
	return token, nil
}

// EnsureToken returns the node's hive token, making and saving one when it
// has none. Two callers at once get the same token.
func (s *store) EnsureToken(ctx context.Context, name, fresh string) (string, error) {
	if _, err := s.db.ExecContext(ctx, `UPDATE beehives SET hive_token = ? WHERE node_name = ? AND hive_token = ''`, fresh, name); err != nil {
		return "", s.failed(ctx, "saving the token of node "+name, err)
	}
	return s.Token(ctx, name)
}

func validStatus(s api.NodeStatus) bool {
	return s == api.NodeUnknown || s == api.NodeReachable || s == api.NodeUnreachable
}

// nodeNotFound is the NODE_NOT_FOUND error with the add-node hint.
func nodeNotFound(name string) *api.Error {
	return api.Errorf(api.CodeNodeNotFound, "node %s is not in the registry", name).With("node", name).
		WithHint(fmt.Sprintf("add it first: rbee setup add-node --name %s --ssh-host HOST --ssh-user USER --install-path PATH", name))
}

// validateNodeField checks a node name arriving in a field other than "node".
func validateNodeField(field, name string) *api.Error {
	e := api.ValidateNodeName(name)
	if e == nil {
		return nil
	}
	if field == "node" {
		return e
	}
	msg, _ := strings.CutPrefix(e.Message, "invalid node: ")
	return api.InvalidField(field, "%s", msg)
}
