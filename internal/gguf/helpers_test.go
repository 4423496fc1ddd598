package gguf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// fixturesDir returns the shared fixtures folder (../shared/fixtures relative to
// the module root), or skips the test when it is absent.
func fixturesDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("module root (go.mod) not found above the test's directory, so ../shared/fixtures cannot be located")
		}
		dir = parent
	}
	fx := filepath.Join(dir, "..", "shared", "fixtures")
	if _, err := os.Stat(filepath.Join(fx, "tiny-Q4_K_M.gguf")); err != nil {
		t.Skipf("%s/shared/fixtures not present: %v", filepath.Dir(dir), err)
	}
	return fx
}

// fixture returns the path of a fixture file, skipping when it is absent.
func fixture(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(fixturesDir(t), name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("fixture %s not present: %v", p, err)
	}
	return p
}
