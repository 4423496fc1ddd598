package rbee_test

import (
	"os"
	"testing"

	"rbee"
)

// TestMain lets this test binary serve as the hive and worker processes
// that ExampleOrchestrator's queen starts: like any program that embeds an
// Orchestrator, it calls rbee.HandleChildProcess first.
func TestMain(m *testing.M) {
	rbee.HandleChildProcess()
	// Children built with -race would otherwise sleep a second as they exit.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	os.Exit(m.Run())
}
