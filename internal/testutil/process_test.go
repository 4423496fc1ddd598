package testutil

import (
	"fmt"
	"strings"
	"testing"
)

func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 200 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d returned twice", p)
		}
		seen[p] = true
	}
}

// This package's tests do not run through Main, so RbeeBinary refuses to
// build: nothing would remove the build.
func TestRbeeBinaryNeedsMain(t *testing.T) {
	if testing.Short() {
		t.Skip("RbeeBinary skips with -short before its check")
	}
	ft := &fatalRecorder{TB: t}
	func() {
		defer func() { _ = recover() }() // Fatal ends the call
		RbeeBinary(ft)
	}()
	if !strings.Contains(ft.msg, "testutil.Main") {
		t.Fatalf("RbeeBinary without testutil.Main: %q", ft.msg)
	}
}

// fatalRecorder records a Fatal's message and stops the call with a panic
// instead of ending the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	panic(f.msg)
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f.msg)
}
