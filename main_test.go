package rbee_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"rbee/internal/synth"
)

// The examples run real daemons: they need an rbee binary for the hive and
// worker processes and a model file. exampleEnv builds both once per test
// run, in a directory TestMain removes.
var (
	scratch      string
	exampleOnce  sync.Once
	exampleSetup exampleEnv
	exampleErr   error
)

// exampleEnv is what a runnable example needs that a real program would
// have already: an rbee binary, a model, and free ports for the hive and
// its workers.
type exampleEnv struct {
	Binary          string // an rbee binary
	Model           string // a GGUF model file
	HivePort        int
	WorkerPortStart int
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rbee-root-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	scratch = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// newExampleEnv builds ./cmd/rbee and writes a tiny random llama model
// (once), and picks free ports (each call).
func newExampleEnv() exampleEnv {
	exampleOnce.Do(func() {
		bin := filepath.Join(scratch, "rbee")
		out, err := exec.Command("go", "build", "-o", bin, "./cmd/rbee").CombinedOutput()
		if err != nil {
			exampleErr = fmt.Errorf("building rbee: %v\n%s", err, out)
			return
		}
		model := filepath.Join(scratch, "tiny-Q8_0.gguf")
		if err := synth.Write(model, synth.Tiny("Q8_0")); err != nil {
			exampleErr = err
			return
		}
		exampleSetup = exampleEnv{Binary: bin, Model: model}
	})
	if exampleErr != nil {
		panic(exampleErr)
	}
	e := exampleSetup
	e.HivePort, e.WorkerPortStart = freePort(), freePort()
	return e
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tempHome() string {
	dir, err := os.MkdirTemp(scratch, "home-")
	if err != nil {
		panic(err)
	}
	return dir
}
