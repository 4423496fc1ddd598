package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
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

	"rbee/internal/synth"
	"rbee/internal/testutil"
)

func tinyModel(t *testing.T, quant string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tiny-"+quant+".gguf")
	require.NoError(t, synth.Write(path, synth.Tiny(quant)))
	return path
}

// runCLI runs an rbee command in this process with captured output.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	code = Run(t.Context(), env, args)
	return out.String(), errb.String(), code
}

func TestGenerateStreamsOnlyTheContinuation(t *testing.T) {
	model := tinyModel(t, "Q8_0")
	out, errOut, code := runCLI(t, "generate", "--model", model, "--prompt", "once upon a time", "--max-tokens", "12", "--temperature", "0", "--threads", "1")
	require.Equal(t, ExitOK, code, errOut)
	assert.NotContains(t, out, "once upon a time", "stdout holds the continuation, not the prompt")
	assert.NotContains(t, out, "tok/s")
	assert.NotEmpty(t, strings.TrimSpace(out))
	assert.Contains(t, errOut, "loaded synthetic-tiny-Q8_0")
	assert.Regexp(t, `prompt \d+ tokens at [\d.]+ tok/s; generated 12 tokens at [\d.]+ tok/s; stop: max_tokens`, errOut)

	// Greedy is deterministic; so is sampling with a seed.
	again, _, _ := runCLI(t, "generate", "--model", model, "--prompt", "once upon a time", "--max-tokens", "12", "--temperature", "0")
	assert.Equal(t, out, again)
	a, _, _ := runCLI(t, "generate", "--model", model, "--prompt", "hello", "--max-tokens", "16", "--seed", "7", "--temperature", "1.2")
	b, _, _ := runCLI(t, "generate", "--model", model, "--prompt", "hello", "--max-tokens", "16", "--seed", "7", "--temperature", "1.2")
	assert.Equal(t, a, b)
}

func TestGenerateFixture(t *testing.T) {
	dir := testutil.Fixtures(t)
	// llama.cpp's greedy continuation of the first fixture prompt, as bytes.
	out, errOut, code := runCLI(t, "generate", "--model", filepath.Join(dir, "tiny-Q8_0.gguf"), "--prompt", "Once upon a time", "--max-tokens", "4", "--temperature", "0")
	require.Equal(t, ExitOK, code, errOut)
	assert.True(t, strings.HasPrefix(out, "partialський"), "got %q", out)
}

func TestGenerateBadInput(t *testing.T) {
	model := tinyModel(t, "Q8_0")
	notGGUF := filepath.Join(t.TempDir(), "notes.txt")
	require.NoError(t, os.WriteFile(notGGUF, []byte("hello"), 0o644))
	truncated := filepath.Join(t.TempDir(), "cut.gguf")
	b, err := os.ReadFile(model)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(truncated, b[:len(b)/2], 0o644))
	// A model whose output head is all NaN (a damaged file): every logit is NaN.
	nanSpec := synth.Tiny("F32")
	nanSpec.OutputScale = float32(math.NaN())
	nanModel := filepath.Join(t.TempDir(), "nan.gguf")
	require.NoError(t, synth.Write(nanModel, nanSpec))
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no model", []string{"--prompt", "x"}, ExitUsage, "--model is required"},
		{"no prompt", []string{"--model", model}, ExitUsage, "--prompt is required"},
		{"unknown flag", []string{"--model", model, "--prompt", "x", "--bogus"}, ExitUsage, "bogus"},
		{"bad number", []string{"--model", model, "--prompt", "x", "--max-tokens", "many"}, ExitUsage, "max-tokens"},
		{"temperature", []string{"--model", model, "--prompt", "x", "--temperature", "3"}, ExitUsage, "temperature"},
		{"max tokens", []string{"--model", model, "--prompt", "x", "--max-tokens", "0"}, ExitUsage, "max_tokens"},
		{"threads", []string{"--model", model, "--prompt", "x", "--threads", "-1"}, ExitUsage, "threads"},
		{"missing file", []string{"--model", "/no/such/model.gguf", "--prompt", "x"}, ExitFailure, "does not exist"},
		{"not gguf", []string{"--model", notGGUF, "--prompt", "x"}, ExitFailure, "not a GGUF file"},
		{"truncated", []string{"--model", truncated, "--prompt", "x"}, ExitFailure, "truncated"},
		{"context", []string{"--model", model, "--prompt", strings.Repeat("hello world ", 100), "--ctx-size", "32"}, ExitFailure, "context"},
		{"NaN weights, greedy", []string{"--model", nanModel, "--prompt", "x", "--temperature", "0"}, ExitFailure, "non-finite values (NaN or Inf)"},
		{"NaN weights, sampled", []string{"--model", nanModel, "--prompt", "x", "--seed", "1"}, ExitFailure, "weights may be damaged"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, append([]string{"generate"}, c.args...)...)
			assert.Equal(t, c.code, code, errOut)
			assert.Contains(t, errOut, c.msg)
			assert.Empty(t, strings.TrimSpace(out))
			assert.NotContains(t, errOut, "goroutine", "no stack traces")
			var lines []string
			for _, l := range strings.Split(strings.TrimSpace(errOut), "\n") {
				if !strings.HasPrefix(l, "rbee: loaded") { // narration before the failure
					lines = append(lines, l)
				}
			}
			assert.LessOrEqual(t, len(lines), 2, "one line and at most a hint or usage line: %q", errOut)
		})
	}
}

// Ctrl+C during a generation: the real binary prints "Canceled." and exits 130.
func TestGenerateInterrupted(t *testing.T) {
	bin := testutil.RbeeBinary(t)
	model := tinyModel(t, "Q8_0")
	cmd := exec.Command(bin, "generate", "--model", model, "--prompt", "hello", "--max-tokens", "100000", "--ctx-size", "100000", "--temperature", "0")
	var stdout, stderr testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	// Wait until tokens flow, then interrupt.
	select {
	case <-stdout.Wrote():
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("no token within 30 s:\n%s", stderr.String())
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	err := cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, stderr.String())
	assert.Equal(t, ExitInterrupted, ee.ExitCode())
	assert.Contains(t, stderr.String(), "Canceled.")
}

func TestBenchMeasuresInFreshProcesses(t *testing.T) {
	bin := testutil.RbeeBinary(t)
	model := tinyModel(t, "Q4_K_M")
	cmd := exec.Command(bin, "bench", "--model", model, "--threads", "1,2", "--prompt-tokens", "16", "--gen-tokens", "8", "--reps", "1", "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), stderr.String())
	assert.Contains(t, stderr.String(), "CPUs")
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	require.Len(t, lines, 2)
	for i, line := range lines {
		var r benchResult
		require.NoError(t, json.Unmarshal([]byte(line), &r))
		assert.Equal(t, i+1, r.Threads)
		assert.Greater(t, r.PromptTPS, 0.0)
		assert.Greater(t, r.DecodeTPS, 0.0)
		assert.Greater(t, r.PeakRSS, int64(0))
		assert.Equal(t, "Q4_K_M", r.Quantization)
		assert.Equal(t, r.FileBytes+r.KVBytes+100<<20, r.RSSBudget)
		assert.Greater(t, r.DecodeParams, int64(0))
		assert.Less(t, r.DecodeParams, r.Parameters, "an untied embedding table is read one row per token")
		assert.LessOrEqual(t, r.PeakRSS, r.RSSBudget, "peak RSS within file + KV cache + 100 MiB")
	}
}

// TestBenchDepth: --depth fills the cache before timing, so the cache is
// sized for it and the result says so; a negative depth is a usage error.
func TestBenchDepth(t *testing.T) {
	bin := testutil.RbeeBinary(t)
	model := tinyModel(t, "Q4_K_M")
	measure := func(depth int) benchResult {
		cmd := exec.Command(bin, "bench", "--model", model, "--threads", "2", "--depth", strconv.Itoa(depth),
			"--prompt-tokens", "16", "--gen-tokens", "8", "--reps", "2", "--json")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), stderr.String())
		assert.Contains(t, stderr.String(), fmt.Sprintf("depth: %d tokens", depth))
		var r benchResult
		require.NoError(t, json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &r), stdout.String())
		return r
	}
	shallow, deep := measure(0), measure(200)
	assert.Equal(t, 0, shallow.Depth)
	assert.Equal(t, 200, deep.Depth)
	assert.Greater(t, deep.PromptTPS, 0.0)
	assert.Greater(t, deep.DecodeTPS, 0.0)
	// The KV cache grows linearly with its context: 200 more positions.
	assert.Equal(t, shallow.KVBytes*(200+16+8)/(16+8), deep.KVBytes)

	_, errOut, code := runCLI(t, "bench", "--model", model, "--depth", "-1")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, errOut, "--depth")
}

func TestSynthModelCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "m.gguf")
	_, errOut, code := runCLI(t, "synth-model", "--preset", "tiny", "--quant", "q8_0", "--out", out)
	require.Equal(t, ExitOK, code, errOut)
	_, errOut, code = runCLI(t, "generate", "--model", out, "--prompt", "hi", "--max-tokens", "2")
	assert.Equal(t, ExitOK, code, errOut)
	_, errOut, code = runCLI(t, "synth-model", "--preset", "huge", "--out", out)
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, errOut, "--preset")
	_, _, code = runCLI(t, "synth-model", "--quant", "Q2_K", "--out", out)
	assert.Equal(t, ExitUsage, code)
	// Other architectures: a tiny gemma2 generates; an unknown one is a usage error.
	_, errOut, code = runCLI(t, "synth-model", "--preset", "tiny", "--arch", "gemma2", "--quant", "q8_0", "--out", out)
	require.Equal(t, ExitOK, code, errOut)
	_, errOut, code = runCLI(t, "generate", "--model", out, "--prompt", "hi", "--max-tokens", "2")
	assert.Equal(t, ExitOK, code, errOut)
	_, errOut, code = runCLI(t, "synth-model", "--arch", "mamba", "--out", out)
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, errOut, "--arch")
}

func TestTopLevel(t *testing.T) {
	out, _, code := runCLI(t, "help")
	assert.Equal(t, ExitOK, code)
	assert.Contains(t, out, "generate")
	_, errOut, code := runCLI(t, "frobnicate")
	assert.Equal(t, ExitUsage, code)
	assert.Contains(t, errOut, `unknown command "frobnicate"`)
	out, _, code = runCLI(t, "generate", "--help")
	assert.Equal(t, ExitOK, code)
	assert.Contains(t, out, "-max-tokens")
	_ = context.Background
}
