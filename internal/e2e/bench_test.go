package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"rbee"
	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/proc"
	"rbee/internal/sse"
	"rbee/internal/testutil"
)

const (
	benchPrompt = "Once upon a time, in a small village at the edge of the forest, there lived"
	benchTokens = 64
)

// benchModel is the fixtures' tiny Q8_0 model when the fixtures are there
// (a real llama vocabulary), else the synthetic tiny model.
func benchModel(b *testing.B) string {
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

func report(b *testing.B, ts []timing) {
	var ttft time.Duration
	var tps float64
	for _, t := range ts {
		ttft += t.firstToken
		tps += t.decode
	}
	n := float64(len(ts))
	b.ReportMetric(float64(ttft.Microseconds())/1000/n, "ttft_ms")
	b.ReportMetric(tps/n, "tokens/s")
	b.ReportMetric(float64(ts[0].tokens), "tokens/op")
}

// BenchmarkChain streams the same greedy inference through keeper (the
// rbee.Client) → queen → hive → worker, and straight to a worker of the
// same binary and model, and reports time to first token and decode speed
// of each.
func BenchmarkChain(b *testing.B) {
	model := benchModel(b)
	c := newCluster(b, model)
	c.startQueen()
	greedy := 0.0
	req := rbee.TaskRequest{Node: rbee.LocalNode, Model: "file:" + model, Prompt: benchPrompt, MaxTokens: benchTokens, Temperature: &greedy}
	ctx := context.Background()
	measure(b, time.Now(), c.client().Infer(ctx, req)) // spawns the worker

	worker := startDirectWorker(b, c, model)
	direct := &httpx.Client{BaseURL: worker}
	ireq := req.Inference()

	b.Run("chain", func(b *testing.B) {
		var ts []timing
		for b.Loop() {
			ts = append(ts, measure(b, time.Now(), c.client().Infer(ctx, req)))
		}
		report(b, ts)
	})
	b.Run("direct", func(b *testing.B) {
		var ts []timing
		for b.Loop() {
			start := time.Now()
			resp, err := direct.Stream(ctx, http.MethodPost, "/v1/inference", ireq, nil)
			require.NoError(b, err)
			ts = append(ts, measure(b, start, sse.Read(resp.Body)))
			resp.Body.Close()
		}
		report(b, ts)
	})
}

// startDirectWorker runs a worker of the cluster's binary outside any hive
// (its ready callback goes to a stub) and returns its URL once it is ready.
func startDirectWorker(b *testing.B, c *cluster, model string) string {
	hive := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, struct{}{})
	}))
	b.Cleanup(hive.Close)
	port := testutil.FreePort(b)
	p, err := proc.Start(proc.Spec{Path: c.bin, LogFile: filepath.Join(c.home, "direct-worker.log"),
		Args: []string{"worker", "--model", model, "--model-ref", "file:" + model, "--backend", "cpu", "--device", "0",
			"--host", "127.0.0.1", "--port", strconv.Itoa(port), "--callback-url", hive.URL + "/v1/workers/ready", "--worker-id", "w-direct"}})
	require.NoError(b, err)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = p.Stop(ctx, 10*time.Second)
	})
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	hc := &httpx.Client{BaseURL: url}
	eventually(b, 30*time.Second, func() bool {
		var r api.ReadyResponse
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return hc.Do(ctx, http.MethodGet, "/v1/ready", nil, &r) == nil && r.Ready
	}, "the direct worker did not get ready: %s", c.logs())
	return url
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
