package testutil

import (
	"crypto/rand"
	"encoding/binary"
	"os"
	"testing"
)

// DamageSQLite overwrites a page in the middle of the closed SQLite
// database file at path with random bytes, as a failing disk or a stray
// write would, and returns the page's number (from 1). The file must have
// at least three pages, so that the header page stays whole.
func DamageSQLite(t testing.TB, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	if len(b) < 100 || string(b[:16]) != "SQLite format 3\x00" {
		t.Fatalf("%s is not a SQLite database", path)
	}
	pageSize := int64(binary.BigEndian.Uint16(b[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	pages := int64(len(b)) / pageSize
	if pages < 3 {
		t.Fatalf("%s has %d pages; damaging one would leave nothing to read", path, pages)
	}
	pgno := pages/2 + 1
	garbage := make([]byte, pageSize)
	_, _ = rand.Read(garbage)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("opening %s: %v", path, err)
	}
	defer f.Close()
	if _, err := f.WriteAt(garbage, (pgno-1)*pageSize); err != nil {
		t.Fatalf("damaging %s: %v", path, err)
	}
	return pgno
}
