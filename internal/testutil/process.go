package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

var (
	mainRan atomic.Bool // Main runs this package's tests

	buildMu   sync.Mutex
	buildDir  string // holds the binary RbeeBinary built; Main removes it
	buildPath string
	buildErr  error
	buildOut  []byte
)

// Main runs a test binary's tests and then removes what RbeeBinary built, so
// that no build is left in the temporary directory. A package whose tests
// call RbeeBinary runs them through it:
//
//	func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }
func Main(m *testing.M) int {
	mainRan.Store(true)
	code := m.Run()
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		if err := os.RemoveAll(buildDir); err != nil {
			fmt.Fprintln(os.Stderr, "testutil: removing the test build:", err)
		}
		buildDir, buildPath, buildErr = "", "", nil
	}
	return code
}

// RbeeBinary builds ./cmd/rbee once per test process and returns its path, for
// tests that run real daemons as child processes. The build cache makes
// repeated builds across packages cheap. The package's TestMain must run its
// tests through Main, which removes the build at the end. With -short it
// skips the test: building and running real daemons is the slow part of the
// suite.
func RbeeBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the rbee binary and runs it")
	}
	if !mainRan.Load() {
		t.Fatal("testutil.RbeeBinary needs the package's TestMain to call testutil.Main, which removes the build afterwards")
	}
	root := ModuleRoot(t)
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildPath == "" && buildErr == nil {
		buildPath, buildOut, buildErr = build(root)
	}
	if buildErr != nil {
		t.Fatalf("building rbee: %v\n%s", buildErr, buildOut)
	}
	return buildPath
}

// build compiles ./cmd/rbee into a new temporary directory.
func build(root string) (string, []byte, error) {
	dir, err := os.MkdirTemp("", "rbee-test-bin-")
	if err != nil {
		return "", nil, err
	}
	buildDir = dir
	bin := filepath.Join(dir, "rbee")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/rbee")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", out, err
	}
	return bin, out, nil
}

// givenPorts holds the ports FreePort has returned in this process.
var givenPorts sync.Map

// FreePort returns a loopback TCP port that was free a moment ago and that it
// has not returned before in this process (the system may offer a port again
// as soon as it is closed, and a test that asks for two ports needs two).
func FreePort(t testing.TB) int {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if _, given := givenPorts.LoadOrStore(port, true); !given {
			return port
		}
	}
}

// FreeAddr returns "127.0.0.1:PORT" for a free port.
func FreeAddr(t testing.TB) string {
	return "127.0.0.1:" + strconv.Itoa(FreePort(t))
}
