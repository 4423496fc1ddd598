package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/gguf"
	"rbee/internal/loadgen"
	"rbee/internal/synth"
	"rbee/internal/testutil"
	"rbee/internal/tokenizer"
	"rbee/orchestrator"
)

// TestBenchServeRealQueen runs rbee bench serve against a queen (in this
// process) that starts a real `rbee hive` and `rbee worker` on a tiny
// model: every request of a one-at-a-time run succeeds, and its prompt and
// output token counts are the tokenizer's and agree with the queen's
// metrics. With more requests in flight than the worker has slots, every
// failure is the queen's 503 all_slots_busy, and the counts still add up.
func TestBenchServeRealQueen(t *testing.T) {
	if testing.Short() {
		t.Skip("builds rbee and runs hive and worker processes")
	}
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	require.NoError(t, synth.Write(path, synth.Tiny("Q8_0")))
	model := "file:" + path
	f, err := gguf.Open(path)
	require.NoError(t, err)
	tok, err := tokenizer.FromGGUF(f)
	require.NoError(t, err)
	f.Close()

	q, err := orchestrator.New(orchestrator.Config{Home: t.TempDir(), Binary: testutil.RbeeBinary(t),
		LocalHivePort: testutil.FreePort(t), LocalWorkerPortStart: testutil.FreePort(t),
		HiveRetryDelays: []time.Duration{0}, BusyRetryDelays: []time.Duration{}})
	require.NoError(t, err)
	srv := httptest.NewServer(q.Handler())
	t.Cleanup(func() {
		srv.Close()
		assert.NoError(t, q.Close())
	})

	const promptTokens, maxTokens = 12, 8
	bench := func(concurrency, requests, seed int, calibrate bool) loadgen.Report {
		t.Helper()
		r := run(t, t.Context(), nil, nil, "bench", "serve", "--url", srv.URL+"/v1", "--model", model,
			"--concurrency", strconv.Itoa(concurrency), "--requests", strconv.Itoa(requests), "--warmup", "0",
			"--prompt-tokens", strconv.Itoa(promptTokens), "--max-tokens", strconv.Itoa(maxTokens),
			"--seed", strconv.Itoa(seed), "--calibrate="+strconv.FormatBool(calibrate), "--json")
		require.Equal(t, 0, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
		var rep loadgen.Report
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep), r.stdout)
		return rep
	}
	promptLen := func(seed, requests, words int) int {
		n := 0
		for i := range requests {
			n += len(tok.Encode(loadgen.PromptWords(uint64(seed), i, words), true, true))
		}
		return n
	}

	// One at a time (the first request is the cold start: hive, worker, load).
	rep := bench(1, 4, 1, false)
	assert.Equal(t, 4, rep.Completed, "%v", rep.ErrorMessages)
	assert.Zero(t, rep.Failed)
	assert.Equal(t, loadgen.FromUsage, rep.OutputTokensFrom, "the queen reports usage")
	assert.Equal(t, promptTokens-1, rep.PromptWords, "not calibrated: one token per word and one for the beginning of text")
	assert.Nil(t, rep.TokensPerWord)
	assert.Equal(t, promptLen(1, 4, rep.PromptWords), rep.TotalPromptTokens, "the prompts as the model's tokenizer counts them")
	assert.Positive(t, rep.TotalOutputTokens)
	assert.LessOrEqual(t, rep.TotalOutputTokens, 4*maxTokens)
	require.NotNil(t, rep.TTFT)
	require.NotNil(t, rep.Latency)
	assert.Equal(t, 4, rep.Latency.N)
	m := queenMetrics(t, srv.URL)
	assert.Equal(t, rep.TotalOutputTokens, m["rbee_tokens_generated_total"])
	assert.Equal(t, rep.TotalPromptTokens, m["rbee_prompt_tokens_total"])
	assert.Equal(t, 4, m[`rbee_tasks_total{outcome="done"}`])

	// More in flight than the worker's one slot: the queen refuses the rest
	// (or, once it queues them, serves them all).
	rep2 := bench(3, 6, 2, false)
	t.Logf("3 in flight: %d ok, errors %v", rep2.Completed, rep2.Errors)
	assert.Equal(t, 6, rep2.Completed+rep2.Failed)
	assert.Positive(t, rep2.Completed)
	for code := range rep2.Errors {
		assert.Equal(t, "503 all_slots_busy", code, rep2.ErrorMessages[code])
	}
	m2 := queenMetrics(t, srv.URL)
	assert.Equal(t, rep2.TotalOutputTokens, m2["rbee_tokens_generated_total"]-m["rbee_tokens_generated_total"])
	assert.Equal(t, rep2.TotalPromptTokens, m2["rbee_prompt_tokens_total"]-m["rbee_prompt_tokens_total"])
	assert.Equal(t, rep2.Completed, m2[`rbee_tasks_total{outcome="done"}`]-4)
	assert.Equal(t, rep2.Failed, m2[`rbee_task_errors_total{code="ALL_SLOTS_BUSY"}`])

	// Calibrated: this tiny model's vocabulary splits the words into
	// several tokens, and the prompts are sized to it.
	rep3 := bench(1, 4, 3, true)
	require.NotNil(t, rep3.TokensPerWord, "the queen reports prompt tokens, so the prompts were calibrated")
	require.NotNil(t, rep3.MeanPromptTokens)
	t.Logf("calibrated: %.2f tokens per word, %d words, mean prompt %.1f tokens (asked %d)",
		*rep3.TokensPerWord, rep3.PromptWords, *rep3.MeanPromptTokens, promptTokens)
	assert.Greater(t, *rep3.TokensPerWord, 1.5)
	assert.Less(t, rep3.PromptWords, promptTokens-1)
	assert.Equal(t, promptLen(3, 4, rep3.PromptWords), rep3.TotalPromptTokens)
	assert.InDelta(t, promptTokens, *rep3.MeanPromptTokens, 0.35*promptTokens, "calibrated prompts are about the length asked for")
}

// queenMetrics reads the queen's counters: "name{labels}" → value.
func queenMetrics(t *testing.T, url string) map[string]int {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	out := map[string]int{}
	line := regexp.MustCompile(`^(\S+) ([0-9]+)$`)
	for _, l := range strings.Split(string(b), "\n") {
		if m := line.FindStringSubmatch(l); m != nil {
			out[m[1]], _ = strconv.Atoi(m[2])
		}
	}
	return out
}
