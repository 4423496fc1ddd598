package pool

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sqlitex"
)

// ErrCatalogCorrupt means models.db exists but is not a usable SQLite
// database. The hive never recreates it silently: the operator moves it aside.
var ErrCatalogCorrupt = errors.New("model catalog is corrupt")

// ErrNotInCatalog means no catalog row has the reference.
var ErrNotInCatalog = errors.New("model not in the catalog")

// Catalog is the hive's model catalog: the table models of
// <home>/models.db. It is safe for concurrent use.
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
	// The file's modification time when its size and SHA-256 were last
	// taken: a file whose size and mtime still match is trusted without
	// reading it. 0 (rows from before) means unknown: the file is hashed
	// once at its next use.
	`ALTER TABLE models ADD COLUMN mtime_unix_ns INTEGER NOT NULL DEFAULT 0`,
}

// OpenCatalog opens (creating it if absent) the catalog database at path,
// in WAL mode with a busy timeout, checks its integrity and brings its
// schema up to date. A file that is not a SQLite database, or fails its
// integrity check, gives an error wrapping ErrCatalogCorrupt that names the
// file and says what to do.
func OpenCatalog(ctx context.Context, path string) (*Catalog, error) {
	db, err := sqlitex.Open(ctx, path)
	if err != nil {
		if errors.Is(err, sqlitex.ErrDamaged) {
			return nil, corrupt(err)
		}
		return nil, fmt.Errorf("opening model catalog: %w", err)
	}
	c := &Catalog{db: db, path: path}
	if err := c.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return c, nil
}

// corrupt wraps the error of a damaged catalog file with what to do.
func corrupt(err error) error {
	return fmt.Errorf("%w: %w (move the file aside, e.g. mv models.db models.db.damaged, and start the hive again: "+
		"it creates an empty catalog and adds models back as they are used; downloaded files under models/ are checked and kept, not downloaded again)",
		ErrCatalogCorrupt, err)
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

// modelRow is a catalog row with the modification time of its file when
// the row's size and SHA-256 were taken (0: unknown).
type modelRow struct {
	api.ModelEntry
	MTimeNs int64
}

type scanner interface{ Scan(dest ...any) error }

func scanRow(s scanner) (modelRow, error) {
	var r modelRow
	err := s.Scan(&r.ID, &r.Provider, &r.Reference, &r.LocalPath, &r.SizeBytes, &r.SHA256, &r.DownloadedAtUnix, &r.MTimeNs)
	return r, err
}

// Get returns the row of a model reference, or an error wrapping
// ErrNotInCatalog.
func (c *Catalog) Get(ctx context.Context, ref string) (api.ModelEntry, error) {
	r, err := c.row(ctx, ref)
	return r.ModelEntry, err
}

// row is Get with the file's recorded modification time.
func (c *Catalog) row(ctx context.Context, ref string) (modelRow, error) {
	r, err := scanRow(c.db.QueryRowContext(ctx, "SELECT "+modelColumns+", mtime_unix_ns FROM models WHERE reference = ?", ref))
	if errors.Is(err, sql.ErrNoRows) {
		return modelRow{}, fmt.Errorf("%s: %w", ref, ErrNotInCatalog)
	}
	if err != nil {
		return modelRow{}, fmt.Errorf("model catalog: %w", err)
	}
	return r, nil
}

// Register inserts a row for e.Reference unless one exists, and returns the
// row the catalog holds (the existing one when there was one: a reference
// never has two rows). An empty e.ID gets a new id. The file's
// modification time is not known: the file is hashed at its next use.
func (c *Catalog) Register(ctx context.Context, e api.ModelEntry) (api.ModelEntry, error) {
	r, err := c.register(ctx, modelRow{ModelEntry: e})
	return r.ModelEntry, err
}

// register is Register with the modification time of the file whose size
// and SHA-256 the row holds.
func (c *Catalog) register(ctx context.Context, r modelRow) (modelRow, error) {
	e := r.ModelEntry
	if e.Reference == "" || e.Provider == "" || e.LocalPath == "" {
		return modelRow{}, fmt.Errorf("model catalog: a row needs a reference, a provider and a local path")
	}
	if e.ID == "" {
		e.ID = httpx.NewID("m-")
	}
	_, err := c.db.ExecContext(ctx, "INSERT INTO models ("+modelColumns+", mtime_unix_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(reference) DO NOTHING",
		e.ID, e.Provider, e.Reference, e.LocalPath, e.SizeBytes, e.SHA256, e.DownloadedAtUnix, r.MTimeNs)
	if err != nil {
		return modelRow{}, fmt.Errorf("model catalog: adding %s: %w", e.Reference, err)
	}
	return c.row(ctx, e.Reference)
}

// reverified records what a fresh look at a row's file found: its size,
// SHA-256 and modification time. The row must still point at path.
func (c *Catalog) reverified(ctx context.Context, ref, path string, size int64, sha string, mtimeNs int64) error {
	_, err := c.db.ExecContext(ctx, "UPDATE models SET size_bytes = ?, sha256 = ?, mtime_unix_ns = ? WHERE reference = ? AND local_path = ?",
		size, sha, mtimeNs, ref, path)
	if err != nil {
		return fmt.Errorf("model catalog: updating %s: %w", ref, err)
	}
	return nil
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
		var e api.ModelEntry
		err := rows.Scan(&e.ID, &e.Provider, &e.Reference, &e.LocalPath, &e.SizeBytes, &e.SHA256, &e.DownloadedAtUnix)
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
