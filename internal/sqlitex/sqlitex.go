// Package sqlitex opens rbee's SQLite files (the queen's node registry, a
// hive's model catalog) the same way: pure-Go SQLite (modernc.org/sqlite, no
// cgo), WAL journal, a busy timeout for concurrent handlers, files only
// their owner can read (the registry holds hive tokens), and an integrity
// check before anything uses them: a damaged file is reported, never
// silently recreated or used.
package sqlitex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"modernc.org/sqlite"
)

// dsnOptions: wait up to 5 s for a lock instead of failing, WAL so readers
// never block the writer, and NORMAL sync (durable across process crashes,
// which is what WAL guarantees with it).
const dsnOptions = "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"

// SQLite's primary result codes this package tells apart (the low byte of
// an extended code).
const (
	codeCorrupt = 11 // SQLITE_CORRUPT
	codeFull    = 13 // SQLITE_FULL
	codeNotADB  = 26 // SQLITE_NOTADB
)

// ErrDamaged matches (errors.Is) the error of a file that is not a SQLite
// database or fails its integrity check.
var ErrDamaged = errors.New("the database file is damaged")

// DamagedError says which database file is damaged and what SQLite found.
type DamagedError struct {
	Path   string
	Reason string // SQLite's words: the failed query's error, or quick_check's findings
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("%s is damaged: %s", e.Path, e.Reason)
}

// Is makes errors.Is(err, ErrDamaged) true.
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// Open opens (creating it if absent) the database file at path and checks
// it with PRAGMA quick_check before returning it. The file and its -wal and
// -shm companions are made mode 0600 before SQLite uses them. An empty
// (zero-byte) file is a valid empty database. A file that is not a
// database, or whose pages fail the check, gives a *DamagedError (matching
// ErrDamaged) and is left as it was; other failures (a folder that cannot
// be written, say) are returned wrapped.
func Open(ctx context.Context, path string) (*sql.DB, error) {
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("%s: the path must not contain '?' or '#'", path)
	}
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
		f.Close()
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	db, err := sql.Open("sqlite", path+dsnOptions)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := Check(ctx, db, path); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// maxFindings bounds how many of quick_check's lines an error repeats.
const maxFindings = 3

// Check runs PRAGMA quick_check on db (the file at path): nil when SQLite
// answers "ok", a *DamagedError when the file is not a database or its
// pages are inconsistent.
func Check(ctx context.Context, db *sql.DB, path string) error {
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return classify(path, err)
	}
	defer rows.Close()
	var findings []string
	n := 0
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return classify(path, err)
		}
		if s == "ok" {
			continue
		}
		n++
		if len(findings) < maxFindings {
			findings = append(findings, s)
		}
	}
	if err := rows.Err(); err != nil {
		return classify(path, err)
	}
	if n == 0 {
		return nil
	}
	reason := "quick_check found: " + strings.Join(findings, "; ")
	if n > len(findings) {
		reason += fmt.Sprintf(" (and %d more)", n-len(findings))
	}
	return &DamagedError{Path: path, Reason: reason}
}

// classify turns a failed integrity check into a *DamagedError when SQLite
// said the file is damaged or not a database, else wraps it.
func classify(path string, err error) error {
	if IsDamaged(err) {
		return &DamagedError{Path: path, Reason: err.Error()}
	}
	return fmt.Errorf("checking %s: %w", path, err)
}

// IsDamaged reports whether err is SQLite saying the file is corrupt
// (SQLITE_CORRUPT, "database disk image is malformed") or not a database
// (SQLITE_NOTADB), or a *DamagedError.
func IsDamaged(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrDamaged) {
		return true
	}
	if c, ok := resultCode(err); ok {
		return c == codeCorrupt || c == codeNotADB
	}
	s := err.Error()
	return strings.Contains(s, "malformed") || strings.Contains(s, "not a database")
}

// IsFull reports whether err is a write that failed for want of space:
// SQLite's SQLITE_FULL ("database or disk is full"), or ENOSPC or EDQUOT
// from the file system.
func IsFull(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return true
	}
	if c, ok := resultCode(err); ok {
		return c == codeFull
	}
	return strings.Contains(err.Error(), "database or disk is full")
}

// resultCode is the primary SQLite result code of err, if it carries one.
func resultCode(err error) (int, bool) {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff, true
	}
	return 0, false
}
