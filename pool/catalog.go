package pool

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"rbee/internal/sqlitex"
	"strings"

	"rbee/api"
	"rbee/internal/httpx"
)

// ErrCatalogCorrupt means models.db exists but is not a usable SQLite
// database. The hive never recreates it silently: the operator moves it aside.
var ErrCatalogCorrupt = errors.New("model catalog is corrupt")

// ErrNotInCatalog means no catalog row has the reference.
var ErrNotInCatalog = errors.New("model not in the catalog")

// Catalog is the hive's model catalog: the table models of
// <home>/models.db (DESIGN §4). It is safe for concurrent use.
type Catalog struct {
	db   *sql.DB
	path string
}

// migrations bring a catalog to the current schema; migration i moves a
// database from user_version i to i+1. Each runs once, in a transaction.
var migrations = []string{
	`CREATE TABLE IF NOT EXISTS models (
		id                 TEXT PRIMARY KEY,
		provider           TEXT NOT NULL,
		reference          TEXT NOT NULL UNIQUE,
		local_path         TEXT NOT NULL,
		size_bytes         INTEGER NOT NULL,
		sha256             TEXT NOT NULL DEFAULT '',
		downloaded_at_unix INTEGER NOT NULL
	)`,
}

// OpenCatalog opens (creating it if absent) the catalog database at path,
// in WAL mode with a busy timeout, and brings its schema up to date. A file
// that is not a SQLite database, or fails its integrity check, gives an
// error wrapping ErrCatalogCorrupt.
func OpenCatalog(ctx context.Context, path string) (*Catalog, error) {
	db, err := sqlitex.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening model catalog: %w", err)
	}
	c := &Catalog{db: db, path: path}
	if err := c.check(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := c.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return c, nil
}

// corrupt wraps a database error that shows the file is unusable.
func (c *Catalog) corrupt(err error) error {
	return fmt.Errorf("%w: %s: %v (move the file aside to start with an empty catalog; models under the models folder stay on disk)", ErrCatalogCorrupt, c.path, err)
}

// check runs SQLite's quick integrity check: it also catches a file that is
// not a database at all (the first statement on it fails).
func (c *Catalog) check(ctx context.Context) error {
	var res string
	if err := c.db.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&res); err != nil {
		if isCorruptErr(err) {
			return c.corrupt(err)
		}
		return fmt.Errorf("opening model catalog %s: %w", c.path, err)
	}
	if res != "ok" {
		return c.corrupt(errors.New(res))
	}
	return nil
}

// isCorruptErr reports whether a SQLite error says the file is damaged or
// not a database (SQLITE_NOTADB, SQLITE_CORRUPT).
func isCorruptErr(err error) bool {
	s := err.Error()
	return strings.Contains(s, "not a database") || strings.Contains(s, "malformed") || strings.Contains(s, "SQLITE_NOTADB") || strings.Contains(s, "SQLITE_CORRUPT")
}

func (c *Catalog) migrate(ctx context.Context) error {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("model catalog %s: %w", c.path, err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("model catalog %s: reading the schema version: %w", c.path, err)
	}
	if version > len(migrations) {
		return fmt.Errorf("model catalog %s has schema version %d, newer than this rbee knows (%d): upgrade rbee", c.path, version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("model catalog %s: migration %d: %w", c.path, i+1, err)
		}
	}
	if version < len(migrations) {
		// PRAGMA takes no parameters; the value is a constant of this package.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
			return fmt.Errorf("model catalog %s: %w", c.path, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("model catalog %s: %w", c.path, err)
	}
	return nil
}

// Path is the database file.
func (c *Catalog) Path() string { return c.path }

// Close closes the database.
func (c *Catalog) Close() error { return c.db.Close() }

const modelColumns = "id, provider, reference, local_path, size_bytes, sha256, downloaded_at_unix"

type scanner interface{ Scan(dest ...any) error }

func scanModel(s scanner) (api.ModelEntry, error) {
	var e api.ModelEntry
	err := s.Scan(&e.ID, &e.Provider, &e.Reference, &e.LocalPath, &e.SizeBytes, &e.SHA256, &e.DownloadedAtUnix)
	return e, err
}

// Get returns the row of a model reference, or an error wrapping
// ErrNotInCatalog.
func (c *Catalog) Get(ctx context.Context, ref string) (api.ModelEntry, error) {
	e, err := scanModel(c.db.QueryRowContext(ctx, "SELECT "+modelColumns+" FROM models WHERE reference = ?", ref))
	if errors.Is(err, sql.ErrNoRows) {
		return api.ModelEntry{}, fmt.Errorf("%s: %w", ref, ErrNotInCatalog)
	}
	if err != nil {
		return api.ModelEntry{}, fmt.Errorf("model catalog: %w", err)
	}
	return e, nil
}

// Register inserts a row for e.Reference unless one exists, and returns the
// row the catalog holds (the existing one when there was one: a reference
// never has two rows). An empty e.ID gets a new id.
func (c *Catalog) Register(ctx context.Context, e api.ModelEntry) (api.ModelEntry, error) {
	if e.Reference == "" || e.Provider == "" || e.LocalPath == "" {
		return api.ModelEntry{}, fmt.Errorf("model catalog: a row needs a reference, a provider and a local path")
	}
	if e.ID == "" {
		e.ID = httpx.NewID("m-")
	}
	_, err := c.db.ExecContext(ctx, "INSERT INTO models ("+modelColumns+") VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(reference) DO NOTHING",
		e.ID, e.Provider, e.Reference, e.LocalPath, e.SizeBytes, e.SHA256, e.DownloadedAtUnix)
	if err != nil {
		return api.ModelEntry{}, fmt.Errorf("model catalog: adding %s: %w", e.Reference, err)
	}
	return c.Get(ctx, e.Reference)
}

// List returns every row, ordered by reference (never nil).
func (c *Catalog) List(ctx context.Context) ([]api.ModelEntry, error) {
	rows, err := c.db.QueryContext(ctx, "SELECT "+modelColumns+" FROM models ORDER BY reference")
	if err != nil {
		return nil, fmt.Errorf("model catalog: %w", err)
	}
	defer rows.Close()
	out := []api.ModelEntry{}
	for rows.Next() {
		e, err := scanModel(rows)
		if err != nil {
			return nil, fmt.Errorf("model catalog: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("model catalog: %w", err)
	}
	return out, nil
}

// Remove deletes the row of a reference and reports whether there was one.
// The model file is left alone.
func (c *Catalog) Remove(ctx context.Context, ref string) (bool, error) {
	res, err := c.db.ExecContext(ctx, "DELETE FROM models WHERE reference = ?", ref)
	if err != nil {
		return false, fmt.Errorf("model catalog: removing %s: %w", ref, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}
