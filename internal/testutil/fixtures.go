// Package testutil holds helpers shared by rbee's tests.
package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// ModuleRoot returns the directory holding rbee's go.mod, found by walking up
// from the test's working directory.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above %s", dir)
		}
		dir = parent
	}
}

// Fixtures returns the shared fixtures folder (../shared/fixtures beside the
// checkout, or $RBEE_FIXTURES), skipping the test with the reason when it is
// absent: the project's own tests do not need it.
func Fixtures(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("RBEE_FIXTURES")
	if dir == "" {
		dir = filepath.Join(ModuleRoot(t), "..", "shared", "fixtures")
	}
	if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
		t.Skipf("llama.cpp conformance fixtures not present at %s (set RBEE_FIXTURES or check out ../shared beside the repository): %v", dir, err)
	}
	return dir
}
