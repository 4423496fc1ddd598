package e2e

import (
	"os"
	"testing"

	"rbee/internal/testutil"
)

// TestMain removes the rbee binary the tests build when they end.
func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }
