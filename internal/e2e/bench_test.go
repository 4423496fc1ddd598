package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"rbee"
	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
	"rbee/internal/testutil"
)

const (
	benchPrompt = "Once upon a time, in a small village at the edge of the forest, there lived"
	benchTokens = 64
)

// benchModel is $RBEE_BENCH_MODEL when set (for example the TinyLlama-shaped
// model rbee bench writes, to see the relay's cost at a real model's pace),
// else the fixtures' tiny Q8_0 model when the fixtures are there (a real
// llama vocabulary), else the synthetic tiny model.
func benchModel(b *testing.B) string {
	if p := os.Getenv("RBEE_BENCH_MODEL"); p != "" {
		b.Logf("model: %s", p)
		return p
	}
	dir := os.Getenv("RBEE_FIXTURES")
	if dir == "" {
		dir = filepath.Join(testutil.ModuleRoot(b), "..", "shared", "fixtures")
	}
	if p := filepath.Join(dir, "tiny-Q8_0.gguf"); fileExists(p) {
		b.Logf("model: %s", p)
		return p
	}
	b.Log("model: synthetic tiny Q8_0 (fixtures not found)")
	return tinyModel(b)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// timing is what one streamed inference measured.
type timing struct {
	firstToken time.Duration // from sending the request to the first token
	decode     float64       // tokens per second after the first token
	tokens     int
}

// measure consumes a stream of events and times it from start.
func measure(b *testing.B, start time.Time, events func(yield func(api.Event, error) bool)) timing {
	var t timing
	var first time.Time
	for ev, err := range events {
		if err != nil {
			b.Fatal(err)
		}
		switch ev.Kind {
		case api.KindToken:
			if t.tokens == 0 {
				first = time.Now()
				t.firstToken = first.Sub(start)
			}
			t.tokens++
		case api.KindDone:
			if t.tokens > 1 {
				t.decode = float64(t.tokens-1) / time.Since(first).Seconds()
			}
		}
	}
	if t.tokens == 0 {
		b.Fatal("no tokens")
	}
	return t
}

// BenchmarkChain streams the same greedy inference through keeper (the
// rbee.Client) → queen → hive → worker, and straight to that same worker
// (with the key the hive gave it), alternating the two paths request by
// request so that both meet the same machine state, and reports time to
// first token and decode speed of each, and what the relay costs.
func BenchmarkChain(b *testing.B) {
	model := benchModel(b)
	c := newCluster(b, model)
	c.startQueen()
	greedy := 0.0
	req := rbee.TaskRequest{Node: rbee.LocalNode, Model: "file:" + model, Prompt: benchPrompt, SamplingParams: rbee.SamplingParams{MaxTokens: benchTokens, Temperature: &greedy}}
	ctx := context.Background()
	measure(b, time.Now(), c.client().Infer(ctx, req)) // spawns the worker
	workers := c.workers()
	require.Len(b, workers, 1)
	direct := &httpx.Client{BaseURL: workers[0].URL, Token: workerKey(b, workers[0].PID)}
	ireq := req.Inference()
	measure(b, time.Now(), directStream(b, ctx, direct, ireq)) // the key works

	var chain, straight []timing
	for b.Loop() {
		chain = append(chain, measure(b, time.Now(), c.client().Infer(ctx, req)))
		straight = append(straight, measure(b, time.Now(), directStream(b, ctx, direct, ireq)))
	}
	ct, cr := averages(chain)
	dt, dr := averages(straight)
	b.ReportMetric(ct, "chain_ttft_ms")
	b.ReportMetric(dt, "direct_ttft_ms")
	b.ReportMetric(cr, "chain_tok/s")
	b.ReportMetric(dr, "direct_tok/s")
	b.ReportMetric(ct-dt, "relay_ttft_ms")
	b.ReportMetric(100*(dr-cr)/dr, "relay_cost_%")
}

// directStream sends an inference straight to a worker.
func directStream(b *testing.B, ctx context.Context, w *httpx.Client, req api.InferenceRequest) func(yield func(api.Event, error) bool) {
	return func(yield func(api.Event, error) bool) {
		resp, err := w.Stream(ctx, http.MethodPost, "/v1/inference", req, nil)
		require.NoError(b, err)
		defer resp.Body.Close()
		for ev, err := range sse.Read(resp.Body) {
			if !yield(ev, err) {
				return
			}
		}
	}
}

// workerKey reads a worker's API key from its environment, where its hive
// put it (Linux; the test runs as the worker's user).
func workerKey(b *testing.B, pid int) string {
	env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	if err != nil {
		b.Skipf("cannot read the worker's environment: %v", err)
	}
	for _, kv := range strings.Split(string(env), "\x00") {
		if v, ok := strings.CutPrefix(kv, httpx.APIKeyEnv+"="); ok {
			return v
		}
	}
	b.Fatal("the worker has no API key in its environment")
	return ""
}

func averages(ts []timing) (ttftMS, tps float64) {
	for _, t := range ts {
		ttftMS += float64(t.firstToken.Microseconds()) / 1000
		tps += t.decode
	}
	n := float64(len(ts))
	return ttftMS / n, tps / n
}

// BenchmarkWarmStart times whole rbee infer commands (8 tokens) against a
// running queen whose worker is loaded and idle (S08).
func BenchmarkWarmStart(b *testing.B) {
	c := newCluster(b, benchModel(b))
	c.startQueen()
	args := c.inferArgs("--max-tokens", "8")
	if r := c.rbee(args...); r.code != 0 {
		b.Fatalf("%s%s", r, c.logs())
	}
	for b.Loop() {
		if r := c.rbee(args...); r.code != 0 {
			b.Fatalf("%s%s", r, c.logs())
		}
	}
}

// BenchmarkEphemeral times whole rbee infer commands (8 tokens) with no
// queen running: each starts a queen, its hive and a worker, and stops
// them all (S51).
func BenchmarkEphemeral(b *testing.B) {
	c := newCluster(b, benchModel(b))
	args := c.inferArgs("--max-tokens", "8")
	for b.Loop() {
		if r := c.rbee(args...); r.code != 0 {
			b.Fatalf("%s%s", r, c.logs())
		}
	}
}
