package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee"
	"rbee/internal/synth"
	"rbee/internal/testutil"
)

// TestEmbed builds the example and runs it as a user would: the program is
// its own hive and worker binary (rbee.HandleChildProcess), answers
// /complete, exposes the queen's API, and stops everything on SIGINT.
func TestEmbed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the example with real child processes")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "embed")
	build := exec.Command("go", "build", "-o", bin, "./examples/embed")
	build.Dir = testutil.ModuleRoot(t)
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	model := filepath.Join(dir, "tiny.gguf")
	require.NoError(t, synth.Write(model, synth.Tiny("Q8_0")))

	addr := testutil.FreeAddr(t)
	cmd := exec.Command(bin, "--addr", addr, "--model", "file:"+model, "--max-tokens", "5",
		"--home", filepath.Join(dir, "home"),
		"--hive-port", strconv.Itoa(testutil.FreePort(t)), "--worker-port-start", strconv.Itoa(testutil.FreePort(t)))
	// A file, not a pipe: the hive and workers it starts must not keep
	// Wait waiting for a pipe to close.
	logs := &logFile{path: filepath.Join(dir, "embed.log")}
	f, err := os.Create(logs.path)
	require.NoError(t, err)
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	c := &rbee.Client{BaseURL: "http://" + addr}
	require.Eventually(t, func() bool { _, err := c.Health(t.Context()); return err == nil }, 10*time.Second, 20*time.Millisecond, "the service never answered:\n%s", logs)

	resp, err := http.Post("http://"+addr+"/complete", "text/plain", strings.NewReader("Once upon a time"))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s\n%s", body, logs)
	assert.NotEmpty(t, body)

	workers, err := c.Workers(t.Context())
	require.NoError(t, err)
	require.Len(t, workers, 1, "one worker serves the model")
	assert.Equal(t, "local", workers[0].Node)
	assert.Equal(t, "file:"+model, workers[0].ModelRef)
	workerURL := workers[0].URL

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	select {
	case <-exited:
		assert.NoError(t, waitErr, "the service exits 0 after SIGINT:\n%s", logs)
	case <-time.After(40 * time.Second):
		t.Fatalf("the service did not exit:\n%s", logs)
	}
	_, err = (&http.Client{Timeout: time.Second}).Get(workerURL + "/v1/health")
	assert.Error(t, err, "the worker was stopped with the service")
}

// logFile prints the file's contents in failure messages.
type logFile struct{ path string }

func (l *logFile) String() string {
	b, _ := os.ReadFile(l.path)
	return string(b)
}
