// Package sqlitex opens rbee's SQLite files (the queen's node registry, a
// hive's model catalog) the same way: pure-Go SQLite (modernc.org/sqlite, no
// cgo), WAL journal, a busy timeout for concurrent handlers, and files only
// their owner can read (the registry holds hive tokens).
package sqlitex

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// dsnOptions: wait up to 5 s for a lock instead of failing, WAL so readers
// never block the writer, and NORMAL sync (durable across process crashes,
// which is what WAL guarantees with it).
const dsnOptions = "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"

// Open opens (creating it if absent) the database file at path. The file and
// its -wal and -shm companions are made mode 0600 before SQLite uses them.
// Opening is lazy: the first query reports a file that is not a database.
func Open(path string) (*sql.DB, error) {
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
	return sql.Open("sqlite", path+dsnOptions)
}
