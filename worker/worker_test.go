package worker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/ggml"
	"rbee/internal/gguf"
	"rbee/internal/httpx"
	"rbee/internal/testutil"
	"rbee/worker/engine"
)

// gate holds generations at their first token until released: reached gets
// each held request id; release (closed) lets them all go on. A held
// generation also goes on when it is cancelled.
type gate struct {
	reached chan string
	release chan struct{}
	once    sync.Once
}

func newGate() *gate {
	return &gate{reached: make(chan string, 16), release: make(chan struct{})}
}

func (g *gate) hook(ctx context.Context, requestID string, index int) {
	if index != 0 {
		return
	}
	g.reached <- requestID
	select {
	case <-g.release:
	case <-ctx.Done():
	}
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

// waitReached waits for a generation to be held.
func (g *gate) waitReached(t *testing.T) string {
	t.Helper()
	select {
	case id := <-g.reached:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("no generation reached the gate")
		return ""
	}
}

func greedy(prompt string, maxTokens int) api.InferenceRequest {
	return api.InferenceRequest{Prompt: prompt, SamplingParams: api.SamplingParams{MaxTokens: maxTokens, Temperature: ptr(0.0)}}
}

// Scenario S19 of DESIGN §12.
func TestS19LoadsQuantizedGGUF(t *testing.T) {
	t.Run("synthetic Q4_K_M", func(t *testing.T) {
		tw := startWorker(t, Config{ModelPath: writeModel(t, "Q4_K_M")})
		tw.waitReady(t)
		tw.srv.mu.Lock()
		info := tw.srv.model.Info()
		tw.srv.mu.Unlock()
		assert.Equal(t, "llama", info.Architecture)
		assert.Equal(t, "Q4_K_M", info.Quantization)

		txt, done := text(t, tw.infer(t, greedy("Once upon a time", 8)))
		assert.NotEmpty(t, txt)
		assert.Positive(t, done.TotalTokens)
		assert.LessOrEqual(t, done.TotalTokens, 8)
		assert.Contains(t, []api.StopReason{api.StopMaxTokens, api.StopEOS}, done.StopReason)
	})

	t.Run("fixture Q4_K_M", func(t *testing.T) {
		dir := testutil.Fixtures(t)
		tw := startWorker(t, Config{ModelPath: filepath.Join(dir, "tiny-Q4_K_M.gguf")})
		tw.waitReady(t)
		f, err := os.Open(filepath.Join(dir, "tiny-Q4_K_M.golden.jsonl"))
		require.NoError(t, err)
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		checked := 0
		for sc.Scan() {
			var g struct {
				PromptHex   string      `json:"prompt_hex"`
				PiecesHex   []string    `json:"greedy_pieces_hex"`
				Steps       [][]float64 `json:"steps_top2"`
				GreedyIDsIn []int       `json:"greedy_ids"`
			}
			require.NoError(t, json.Unmarshal(sc.Bytes(), &g))
			prompt, err := hex.DecodeString(g.PromptHex)
			require.NoError(t, err)
			// Generation agrees with llama.cpp's up to its first near-tie.
			n := 0
			for n < len(g.Steps) && n < len(g.PiecesHex) && g.Steps[n][1]-g.Steps[n][3] >= 1.0 {
				n++
			}
			if n == 0 {
				continue
			}
			var want []byte
			for _, p := range g.PiecesHex[:n] {
				b, err := hex.DecodeString(p)
				require.NoError(t, err)
				want = append(want, b...)
			}
			txt, done := text(t, tw.infer(t, greedy(string(prompt), n)))
			assert.Equal(t, string(want), txt, "prompt %q: the first %d greedy tokens", prompt, n)
			assert.Equal(t, n, done.TotalTokens)
			checked++
		}
		require.NoError(t, sc.Err())
		assert.Positive(t, checked)
	})
}

// TestLoading covers S30 (/v1/ready while loading), S31 (the progress
// stream, for an early and a late subscriber, then ready) and S32 (/v1/ready
// once loaded). A load hook holds the load at every layer.
func TestLoading(t *testing.T) {
	steps := make(chan engine.LoadProgress)
	next := make(chan struct{})
	hook := func(ctx context.Context, p engine.LoadProgress) {
		select {
		case steps <- p:
		case <-ctx.Done():
			return
		}
		select {
		case <-next:
		case <-ctx.Done():
		}
	}
	tw := startWorker(t, Config{loadHook: hook})
	step := func() engine.LoadProgress {
		t.Helper()
		select {
		case p := <-steps:
			return p
		case <-time.After(10 * time.Second):
			t.Fatal("the load did not reach the next step")
			return engine.LoadProgress{}
		}
	}
	first := step()
	require.Equal(t, 0, first.LayersLoaded)
	require.Equal(t, 3, first.LayersTotal, "2 blocks plus the embedding and output")
	// The load waits at each of its 4 steps until told to go on. S31 walks
	// it through; finishLoad ends it when S32 runs without S31.
	released := 0
	goOn := func() {
		next <- struct{}{}
		released++
	}
	finishLoad := func(t *testing.T) {
		for released < 4 {
			goOn()
			if released < 4 {
				step()
			}
		}
		tw.progress(t) // until ready
	}

	t.Run("S30", func(t *testing.T) {
		r := tw.ready(t)
		assert.False(t, r.Ready)
		assert.Equal(t, api.StateLoading, r.State)
		assert.Equal(t, "/v1/loading/progress", r.ProgressURL)
		assert.False(t, r.ModelLoaded)
		assert.Equal(t, 3, r.LayersTotal)
		assert.Equal(t, api.StateLoading, tw.health(t).State)

		err := tw.client.Do(t.Context(), http.MethodPost, "/v1/inference", greedy("hello", 4), nil)
		e := apiError(t, err)
		assert.Equal(t, api.CodeAllSlotsBusy, e.Code)
		assert.Equal(t, "the model is still loading", e.Message)
		assert.Equal(t, string(api.StateLoading), e.Details["state"])
	})

	t.Run("S31", func(t *testing.T) {
		early := openProgress(t, tw)
		ev := early.event(t)
		require.Equal(t, api.KindProgress, ev.Kind)
		assert.Equal(t, api.StageLoading, ev.Progress.Stage)
		assert.Equal(t, 0, ev.Progress.LayersLoaded)
		assert.Equal(t, 3, ev.Progress.LayersTotal)
		assert.Equal(t, "w-test", ev.Progress.WorkerID)

		var late *stream
		var lastMB int64
		for layer := 1; layer <= 3; layer++ {
			goOn()
			p := step()
			require.Equal(t, layer, p.LayersLoaded)
			ev := early.event(t)
			require.Equal(t, api.KindProgress, ev.Kind)
			assert.Equal(t, api.StageLoading, ev.Progress.Stage)
			assert.Equal(t, layer, ev.Progress.LayersLoaded)
			assert.Equal(t, 3, ev.Progress.LayersTotal)
			assert.Positive(t, ev.Progress.VramMB)
			assert.GreaterOrEqual(t, ev.Progress.VramMB, lastMB)
			lastMB = ev.Progress.VramMB
			assert.Equal(t, layer, tw.ready(t).LayersLoaded)
			if layer == 1 {
				// A late subscriber starts with the current state.
				late = openProgress(t, tw)
				ev := late.event(t)
				require.Equal(t, api.KindProgress, ev.Kind)
				assert.Equal(t, 1, ev.Progress.LayersLoaded)
			}
		}
		goOn() // the load finishes
		for _, s := range []*stream{early, late} {
			evs := s.rest(t)
			require.NotEmpty(t, evs)
			last := evs[len(evs)-1]
			require.Equal(t, api.KindProgress, last.Kind)
			assert.Equal(t, api.StageReady, last.Progress.Stage)
			for _, ev := range evs[:len(evs)-1] {
				assert.Equal(t, api.StageLoading, ev.Progress.Stage)
			}
		}
	})

	t.Run("S32", func(t *testing.T) {
		finishLoad(t)
		r := tw.ready(t)
		assert.True(t, r.Ready)
		assert.Equal(t, api.StateIdle, r.State)
		assert.True(t, r.ModelLoaded)
		assert.Empty(t, r.ProgressURL)
		// Once loaded, the progress stream is ready and [DONE] at once.
		evs := tw.progress(t)
		require.Len(t, evs, 1)
		assert.Equal(t, api.StageReady, evs[0].Progress.Stage)
	})
}

// openProgress opens the loading progress stream.
func openProgress(t *testing.T, tw *testWorker) *stream {
	t.Helper()
	resp, err := tw.client.Stream(t.Context(), http.MethodGet, "/v1/loading/progress", nil, nil)
	require.NoError(t, err)
	return pullStream(t, resp)
}

// Scenario S34 of DESIGN §12.
func TestS34StreamAndStates(t *testing.T) {
	g := newGate()
	tw := startWorker(t, Config{tokenHook: g.hook})
	tw.waitReady(t)
	defer g.open()
	before := tw.health(t)
	require.Equal(t, api.StateIdle, before.State)
	assert.Equal(t, "ok", before.Status)
	assert.Equal(t, api.Version, before.Version)
	assert.Equal(t, "w-test", before.WorkerID)
	assert.Equal(t, 1, before.SlotsTotal)
	assert.Equal(t, 0, before.SlotsBusy)

	s := tw.openStream(t, greedy("Once upon a time", 12), "task-s34")
	assert.Equal(t, "task-s34", s.resp.Header.Get(httpx.RequestIDHeader))
	assert.Equal(t, "text/event-stream", s.resp.Header.Get("Content-Type"))
	ev := s.event(t)
	require.Equal(t, api.KindNarration, ev.Kind)
	assert.Equal(t, api.ActorWorker, ev.Narration.Actor)
	assert.Equal(t, "inference_start", ev.Narration.Action)
	assert.Equal(t, "task-s34", ev.Narration.RequestID)
	assert.Equal(t, "w-test", ev.Narration.WorkerID)
	assert.NotEmpty(t, ev.Narration.Human)

	assert.Equal(t, "task-s34", g.waitReached(t))
	busy := tw.health(t)
	assert.Equal(t, api.StateBusy, busy.State)
	assert.Equal(t, 1, busy.SlotsBusy)
	assert.Equal(t, api.StateBusy, tw.ready(t).State)
	g.open()

	evs := s.rest(t)
	require.NotEmpty(t, evs)
	tokens := 0
	for i, ev := range evs[:len(evs)-1] {
		require.Equal(t, api.KindToken, ev.Kind, "event %d", i)
		assert.Equal(t, i, ev.Token.Index)
		assert.NotEmpty(t, ev.Token.Token)
		tokens++
	}
	done := evs[len(evs)-1]
	require.Equal(t, api.KindDone, done.Kind)
	d := done.Done
	assert.True(t, d.Done)
	assert.Equal(t, "task-s34", d.RequestID)
	assert.Equal(t, "w-test", d.WorkerID)
	assert.Contains(t, []api.StopReason{api.StopMaxTokens, api.StopEOS}, d.StopReason)
	if d.StopReason == api.StopMaxTokens {
		assert.Equal(t, 12, d.TotalTokens)
	}
	assert.GreaterOrEqual(t, d.TotalTokens, tokens)
	assert.Positive(t, d.PromptTokens)
	assert.Positive(t, d.TokensPerSecond)

	after := tw.health(t)
	assert.Equal(t, api.StateIdle, after.State)
	assert.Equal(t, 0, after.SlotsBusy)
	assert.True(t, after.LastActivity.After(before.LastActivity), "last_activity moves at the end of an inference")
	// Health and readiness do not move the idle clock.
	assert.Equal(t, after.LastActivity, tw.health(t).LastActivity)
}

func TestAllSlotsBusy(t *testing.T) {
	g := newGate()
	tw := startWorker(t, Config{tokenHook: g.hook})
	tw.waitReady(t)
	defer g.open()
	s := tw.openStream(t, greedy("Once upon a time", 4), "")
	g.waitReached(t)

	err := tw.client.Do(t.Context(), http.MethodPost, "/v1/inference", greedy("hello", 4), nil)
	e := apiError(t, err)
	assert.Equal(t, api.CodeAllSlotsBusy, e.Code)
	assert.Equal(t, float64(1), e.Details["slots_total"])
	assert.Equal(t, float64(1), e.Details["slots_busy"])
	assert.NotEmpty(t, e.RequestID)

	g.open()
	_, done := text(t, s.rest(t))
	assert.NotEmpty(t, done.StopReason)
	// The slot is free again.
	_, done = text(t, tw.infer(t, greedy("hello", 4)))
	assert.Positive(t, done.TotalTokens)
}

func TestTwoSlotsServeTwoStreams(t *testing.T) {
	g := newGate()
	tw := startWorker(t, Config{Slots: 2, tokenHook: g.hook})
	tw.waitReady(t)
	defer g.open()
	a := tw.openStream(t, greedy("Once upon a time", 6), "req-a")
	b := tw.openStream(t, greedy("hello world", 6), "req-b")
	held := []string{g.waitReached(t), g.waitReached(t)}
	assert.ElementsMatch(t, []string{"req-a", "req-b"}, held, "both generations run at once")
	h := tw.health(t)
	assert.Equal(t, api.StateBusy, h.State)
	assert.Equal(t, 2, h.SlotsTotal)
	assert.Equal(t, 2, h.SlotsBusy)

	err := tw.client.Do(t.Context(), http.MethodPost, "/v1/inference", greedy("third", 4), nil)
	e := apiError(t, err)
	assert.Equal(t, api.CodeAllSlotsBusy, e.Code)
	assert.Equal(t, float64(2), e.Details["slots_total"])
	assert.Equal(t, float64(2), e.Details["slots_busy"])

	g.open()
	for _, s := range []*stream{a, b} {
		_, done := text(t, s.rest(t))
		assert.Contains(t, []api.StopReason{api.StopMaxTokens, api.StopEOS}, done.StopReason)
	}
	assert.Equal(t, api.StateIdle, tw.health(t).State)
}

func TestSlotWithLongestPrefixIsPreferred(t *testing.T) {
	var current atomic.Pointer[gate]
	g := newGate()
	current.Store(g)
	hook := func(ctx context.Context, id string, i int) { current.Load().hook(ctx, id, i) }
	tw := startWorker(t, Config{Slots: 2, tokenHook: hook})
	tw.waitReady(t)
	defer g.open()
	// Fill slot 0 with one prompt and, while it is held, slot 1 with another.
	a := tw.openStream(t, greedy("Once upon a time there was a fox", 2), "req-a")
	g.waitReached(t)
	b := tw.openStream(t, greedy("the quick brown fox jumps over the lazy dog", 2), "req-b")
	g.waitReached(t)
	busySlots := func() []bool {
		tw.srv.mu.Lock()
		defer tw.srv.mu.Unlock()
		return []bool{tw.srv.slots[0].busy, tw.srv.slots[1].busy}
	}
	require.Equal(t, []bool{true, true}, busySlots())
	g.open()
	text(t, a.rest(t))
	text(t, b.rest(t))

	// The second prompt again goes to slot 1, which caches it.
	g2 := newGate()
	current.Store(g2)
	defer g2.open()
	c := tw.openStream(t, greedy("the quick brown fox jumps over the lazy cat", 2), "req-c")
	g2.waitReached(t)
	assert.Equal(t, []bool{false, true}, busySlots())
	g2.open()
	text(t, c.rest(t))
}

func TestCancel(t *testing.T) {
	g := newGate() // never opened: the generation waits for its cancellation
	tw := startWorker(t, Config{tokenHook: g.hook})
	tw.waitReady(t)
	s := tw.openStream(t, greedy("Once upon a time", 50), "req-cancel")
	require.Equal(t, api.KindNarration, s.event(t).Kind)
	g.waitReached(t)
	require.Equal(t, 1, tw.health(t).SlotsBusy)

	del := func(id string) int {
		req, err := tw.client.NewRequest(t.Context(), http.MethodDelete, "/v1/inference/"+id, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusNoContent, del("req-cancel"))
	// The slot is free once DELETE answers.
	h := tw.health(t)
	assert.Equal(t, 0, h.SlotsBusy)
	assert.Equal(t, api.StateIdle, h.State)

	evs := s.rest(t)
	require.NotEmpty(t, evs)
	last := evs[len(evs)-1]
	require.Equal(t, api.KindDone, last.Kind)
	assert.Equal(t, api.StopCancelled, last.Done.StopReason)
	assert.Equal(t, "req-cancel", last.Done.RequestID)
	assert.Less(t, last.Done.TotalTokens, 50)

	// Idempotent, and unknown ids are fine too.
	assert.Equal(t, http.StatusNoContent, del("req-cancel"))
	assert.Equal(t, http.StatusNoContent, del("never-ran"))
	// Without a token DELETE is refused.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodDelete, tw.url+"/v1/inference/req-cancel", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestSamplingOverHTTP(t *testing.T) {
	tw := startWorker(t, Config{})
	tw.waitReady(t)
	const prompt = "Once upon a time"

	t.Run("max_tokens", func(t *testing.T) {
		for _, n := range []int{1, 5} {
			evs := tw.infer(t, greedy(prompt, n))
			_, done := text(t, evs)
			require.Equal(t, api.StopMaxTokens, done.StopReason, "the tiny model does not end this prompt early")
			assert.Equal(t, n, done.TotalTokens)
		}
	})

	full, done := text(t, tw.infer(t, greedy(prompt, 24)))
	require.Equal(t, api.StopMaxTokens, done.StopReason)

	t.Run("stop string", func(t *testing.T) {
		// A stop string taken from the middle of the greedy text cuts it there.
		stop := ""
		for i := 4; i+3 <= len(full); i++ {
			cand := full[i : i+3]
			if strings.Trim(cand, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ") == "" {
				stop = cand
				break
			}
		}
		require.NotEmpty(t, stop, "no ASCII stop string in %q", full)
		cut := strings.Index(full, stop)
		txt, done := text(t, tw.infer(t, api.InferenceRequest{Prompt: prompt, SamplingParams: api.SamplingParams{MaxTokens: 24, Temperature: ptr(0.0),
			Stop: []string{"never-generated-zzz", stop}}}))
		assert.Equal(t, api.StopString, done.StopReason)
		assert.Equal(t, full[:cut], txt)
	})

	t.Run("seed", func(t *testing.T) {
		req := func(seed uint64) api.InferenceRequest {
			return api.InferenceRequest{Prompt: prompt, SamplingParams: api.SamplingParams{MaxTokens: 16, Temperature: ptr(1.5), TopK: ptr(0),
				TopP: ptr(1.0), MinP: ptr(0.0), Seed: ptr(seed)}}
		}
		a, _ := text(t, tw.infer(t, req(42)))
		b, _ := text(t, tw.infer(t, req(42)))
		c, _ := text(t, tw.infer(t, req(43)))
		assert.Equal(t, a, b, "the same seed gives the same text")
		assert.NotEqual(t, a, c, "another seed gives another text (16 tokens at temperature 1.5)")
	})

	t.Run("stream false", func(t *testing.T) {
		var res api.InferenceResult
		r := greedy(prompt, 24)
		r.Stream = ptr(false)
		require.NoError(t, tw.client.Do(t.Context(), http.MethodPost, "/v1/inference", r, &res))
		assert.Equal(t, full, res.Text)
		assert.True(t, res.Done.Done)
		assert.Equal(t, 24, res.TotalTokens)
		assert.Equal(t, api.StopMaxTokens, res.StopReason)
		assert.Equal(t, "w-test", res.WorkerID)
		assert.NotEmpty(t, res.RequestID)
	})
}

// TestAdminShutdownEndsStreams: a worker shut down by another client (POST
// /v1/admin/shutdown, as its hive does) mid-stream ends the stream with
// SHUTTING_DOWN, never with a done "cancelled" its client did not ask for.
func TestAdminShutdownEndsStreams(t *testing.T) {
	g := newGate() // never opened: the generation waits for its cancellation
	tw := startWorker(t, Config{tokenHook: g.hook})
	tw.waitReady(t)
	s := tw.openStream(t, greedy("Once upon a time", 50), "req-inflight")
	g.waitReached(t)

	// A wrong token does not stop the worker.
	status, e := tw.post(t, "/v1/admin/shutdown", "wrong-token-0123456789", nil)
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Equal(t, api.CodeInvalidAPIKey, e.Code)

	status, e = tw.post(t, "/v1/admin/shutdown", testToken, nil)
	require.Nil(t, e)
	assert.Equal(t, http.StatusAccepted, status)

	assertStoppedStream(t, s.rest(t), "req-inflight", 50)
	assert.NoError(t, tw.wait(t))
}

// assertStoppedStream checks the end of a stream the worker's shutdown cut
// short: tokens, then an error event SHUTTING_DOWN (and no done).
func assertStoppedStream(t *testing.T, evs []api.Event, requestID string, maxTokens int) {
	t.Helper()
	require.NotEmpty(t, evs)
	tokens := 0
	for _, ev := range evs {
		assert.NotEqual(t, api.KindDone, ev.Kind, "no done event: the generation did not finish")
		if ev.Kind == api.KindToken {
			tokens++
		}
	}
	last := evs[len(evs)-1]
	require.Equal(t, api.KindError, last.Kind, "%+v", last)
	e := last.Error
	assert.Equal(t, api.CodeShuttingDown, e.Code)
	assert.Contains(t, e.Message, "worker w-test is shutting down")
	assert.Equal(t, requestID, e.RequestID)
	assert.EqualValues(t, tokens, e.Details["tokens_generated"])
	assert.EqualValues(t, maxTokens, e.Details["max_tokens"])
	assert.Equal(t, "w-test", e.Details["worker_id"])
	assert.NotEmpty(t, e.Hint())
}

// TestSignalEndsStreams: a worker whose Run context ends (SIGTERM, or its
// hive killed) mid-stream ends the stream with SHUTTING_DOWN too, and a
// non-streaming request gets 503 SHUTTING_DOWN.
func TestSignalEndsStreams(t *testing.T) {
	g := newGate()
	tw := startWorker(t, Config{tokenHook: g.hook, Slots: 2})
	tw.waitReady(t)
	s := tw.openStream(t, greedy("Once upon a time", 40), "req-stream")
	g.waitReached(t)
	type answer struct {
		status int
		body   []byte
	}
	plain := make(chan answer, 1)
	go func() {
		body, _ := json.Marshal(api.InferenceRequest{Prompt: "Once upon a time", SamplingParams: api.SamplingParams{MaxTokens: 40, Temperature: ptr(0.0)}, Stream: ptr(false)})
		req, err := http.NewRequest(http.MethodPost, tw.url+"/v1/inference", bytes.NewReader(body))
		if err != nil {
			plain <- answer{}
			return
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set(httpx.RequestIDHeader, "req-plain")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			plain <- answer{}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		plain <- answer{resp.StatusCode, b}
	}()
	g.waitReached(t)

	tw.cancel() // what SIGTERM does to rbee worker
	assertStoppedStream(t, s.rest(t), "req-stream", 40)
	a := <-plain
	assert.Equal(t, http.StatusServiceUnavailable, a.status, "%s", a.body)
	var env api.Envelope
	require.NoError(t, json.Unmarshal(a.body, &env), "%s", a.body)
	require.NotNil(t, env.Error)
	assert.Equal(t, api.CodeShuttingDown, env.Error.Code)
	assert.Equal(t, "req-plain", env.Error.RequestID)
	assert.NoError(t, tw.wait(t))
}

func TestContextEndStopsRun(t *testing.T) {
	tw := startWorker(t, Config{})
	tw.waitReady(t)
	tw.cancel()
	assert.NoError(t, tw.wait(t))
	_, err := http.Get(tw.url + "/v1/health")
	assert.Error(t, err, "the port is closed")
}

func TestShutdownWhileLoading(t *testing.T) {
	held := make(chan struct{})
	tw := startWorker(t, Config{loadHook: func(ctx context.Context, p engine.LoadProgress) {
		if p.LayersLoaded == 1 {
			close(held)
			<-ctx.Done()
		}
	}})
	<-held
	s := openProgress(t, tw)
	require.Equal(t, 1, s.event(t).Progress.LayersLoaded)
	tw.srv.Shutdown()
	evs := s.rest(t)
	require.Len(t, evs, 1)
	require.Equal(t, api.KindError, evs[0].Kind)
	assert.Equal(t, api.CodeShuttingDown, evs[0].Error.Code)
	assert.NoError(t, tw.wait(t))
}

func TestLoadFailure(t *testing.T) {
	t.Run("not GGUF", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "model.gguf")
		require.NoError(t, os.WriteFile(path, []byte("this is not a model"), 0o600))
		tw := startWorker(t, Config{ModelPath: path})
		err := tw.wait(t)
		require.Error(t, err)
		assert.ErrorIs(t, err, gguf.ErrNotGGUF)
		assert.Contains(t, err.Error(), path)
	})
	t.Run("unsupported architecture", func(t *testing.T) {
		// A GGUF file the header reader accepts and the engine refuses: the
		// progress stream ends with the error and Run fails.
		path := filepath.Join(t.TempDir(), "gpt2.gguf")
		var w gguf.Writer
		require.NoError(t, w.Set("general.architecture", "gpt2"))
		require.NoError(t, w.Set("gpt2.block_count", uint32(2)))
		require.NoError(t, w.AddTensorF32("token_embd.weight", ggml.F32, []uint64{4, 4}, make([]float32, 16)))
		require.NoError(t, w.WriteFile(path))
		started := make(chan struct{})
		release := make(chan struct{})
		tw := startWorker(t, Config{ModelPath: path, loadHook: func(ctx context.Context, p engine.LoadProgress) {
			close(started)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}})
		<-started
		s := openProgress(t, tw)
		ev := s.event(t)
		require.Equal(t, api.KindProgress, ev.Kind)
		assert.Equal(t, 3, ev.Progress.LayersTotal)
		close(release)
		evs := s.rest(t)
		require.Len(t, evs, 1)
		require.Equal(t, api.KindError, evs[0].Kind)
		assert.Equal(t, api.CodeInferenceFailed, evs[0].Error.Code)
		assert.Contains(t, evs[0].Error.Message, "gpt2")
		err := tw.wait(t)
		assert.ErrorIs(t, err, engine.ErrUnsupported)
	})
}

func TestBadInput(t *testing.T) {
	tw := startWorker(t, Config{})
	tw.waitReady(t)
	long := strings.Repeat("a", api.MaxPromptChars+1)
	manyTokens := strings.Repeat("the ", 600) // over the 512-token context
	cases := []struct {
		name  string
		body  string
		field string // "" for errors about the whole body
	}{
		{"empty prompt", `{"prompt":""}`, "prompt"},
		{"no prompt", `{"max_tokens":4}`, "prompt"},
		{"control character", `{"prompt":"a\u0001b"}`, "prompt"},
		{"escape", `{"prompt":"a\u001b[2Jb"}`, "prompt"},
		{"bidi override", `{"prompt":"a\u202eb"}`, "prompt"},
		{"prompt too long", `{"prompt":"` + long + `"}`, "prompt"},
		{"prompt over the context", `{"prompt":"` + manyTokens + `"}`, "prompt"},
		{"max_tokens negative", `{"prompt":"hi","max_tokens":-1}`, "max_tokens"},
		{"max_tokens over the context", `{"prompt":"hi","max_tokens":513}`, "max_tokens"},
		{"max_tokens not a number", `{"prompt":"hi","max_tokens":"ten"}`, "max_tokens"},
		{"temperature negative", `{"prompt":"hi","temperature":-0.1}`, "temperature"},
		{"temperature over 2", `{"prompt":"hi","temperature":2.01}`, "temperature"},
		{"top_p over 1", `{"prompt":"hi","top_p":1.5}`, "top_p"},
		{"top_p negative", `{"prompt":"hi","top_p":-0.5}`, "top_p"},
		{"top_k negative", `{"prompt":"hi","top_k":-1}`, "top_k"},
		{"top_k fractional", `{"prompt":"hi","top_k":1.5}`, "top_k"},
		{"min_p over 1", `{"prompt":"hi","min_p":1.1}`, "min_p"},
		{"repeat_penalty over 10", `{"prompt":"hi","repeat_penalty":11}`, "repeat_penalty"},
		{"repeat_penalty negative", `{"prompt":"hi","repeat_penalty":-1}`, "repeat_penalty"},
		{"seed negative", `{"prompt":"hi","seed":-1}`, "seed"},
		{"five stop strings", `{"prompt":"hi","stop":["a","b","c","d","e"]}`, "stop"},
		{"empty stop string", `{"prompt":"hi","stop":[""]}`, "stop"},
		{"stop string over 100 bytes", `{"prompt":"hi","stop":["` + strings.Repeat("x", 101) + `"]}`, "stop"},
		{"stop not a list", `{"prompt":"hi","stop":"x"}`, "stop"},
		{"stream not a bool", `{"prompt":"hi","stream":"yes"}`, "stream"},
		{"unknown field", `{"prompt":"hi","n_predict":4}`, "n_predict"},
		{"not JSON", `prompt=hi`, ""},
		{"empty body", ``, ""},
		{"trailing data", `{"prompt":"hi"} {}`, ""},
		{"array", `["hi"]`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, e := tw.post(t, "/v1/inference", testToken, []byte(c.body))
			require.NotNil(t, e)
			assert.Equal(t, http.StatusBadRequest, status)
			assert.Equal(t, api.CodeInvalidRequest, e.Code)
			assert.NotEmpty(t, e.Message)
			assert.NotEmpty(t, e.RequestID)
			if c.field != "" {
				assert.Equal(t, c.field, e.Details["field"], "message %q", e.Message)
			}
		})
	}

	t.Run("body over 1 MiB", func(t *testing.T) {
		body := `{"prompt":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`
		status, e := tw.post(t, "/v1/inference", testToken, []byte(body))
		require.NotNil(t, e)
		assert.Equal(t, http.StatusRequestEntityTooLarge, status)
		assert.Equal(t, api.CodePayloadTooLarge, e.Code)
	})

	// After all that, the worker still serves.
	assert.Equal(t, api.StateIdle, tw.health(t).State)
	_, done := text(t, tw.infer(t, greedy("hi", 2)))
	assert.Equal(t, 2, done.TotalTokens)
}

func TestDuplicateRunningRequestID(t *testing.T) {
	g := newGate()
	tw := startWorker(t, Config{Slots: 2, tokenHook: g.hook})
	tw.waitReady(t)
	defer g.open()
	s := tw.openStream(t, greedy("hi", 2), "req-dup")
	g.waitReached(t)
	h := http.Header{httpx.RequestIDHeader: {"req-dup"}}
	_, err := tw.client.Stream(t.Context(), http.MethodPost, "/v1/inference", greedy("hi", 2), h)
	e := apiError(t, err)
	assert.Equal(t, api.CodeInvalidRequest, e.Code)
	assert.Equal(t, httpx.RequestIDHeader, e.Details["field"])
	assert.Equal(t, 1, tw.health(t).SlotsBusy, "the refused request took no slot")
	g.open()
	text(t, s.rest(t))
}

func TestAuth(t *testing.T) {
	tw := startWorker(t, Config{})
	tw.waitReady(t)
	endpoints := []struct{ method, path, body string }{
		{http.MethodGet, "/v1/ready", ""},
		{http.MethodGet, "/v1/loading/progress", ""},
		{http.MethodPost, "/v1/inference", `{"prompt":"hi"}`},
		{http.MethodDelete, "/v1/inference/req-x", ""},
		{http.MethodPost, "/v1/admin/shutdown", ""},
	}
	for _, ep := range endpoints {
		for _, c := range []struct {
			name, auth string
			code       api.Code
		}{
			{"missing", "", api.CodeMissingAPIKey},
			{"wrong", "Bearer not-the-token-0123456789", api.CodeInvalidAPIKey},
			{"not bearer", "Basic " + testToken, api.CodeMissingAPIKey},
		} {
			t.Run(ep.method+" "+ep.path+" "+c.name, func(t *testing.T) {
				req, err := http.NewRequestWithContext(t.Context(), ep.method, tw.url+ep.path, strings.NewReader(ep.body))
				require.NoError(t, err)
				if c.auth != "" {
					req.Header.Set("Authorization", c.auth)
				}
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
				assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
				var env api.Envelope
				require.NoError(t, json.NewDecoder(resp.Body).Decode(&env))
				require.NotNil(t, env.Error)
				assert.Equal(t, c.code, env.Error.Code)
				assert.NotContains(t, env.Error.Message, testToken)
			})
		}
	}
	// Health is public; the worker is still up after every refused call.
	h := tw.health(t)
	assert.Equal(t, api.StateIdle, h.State)
}

func TestNewRejectsBadConfig(t *testing.T) {
	model := writeModel(t, "Q8_0")
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no model", Config{}, "model path is required"},
		{"bad worker id", Config{ModelPath: model, WorkerID: "w/1"}, "worker id"},
		{"bad model ref", Config{ModelPath: model, ModelRef: "ftp:x"}, "model reference"},
		{"cuda", Config{ModelPath: model, Backend: api.BackendCUDA}, "not available"},
		{"unknown backend", Config{ModelPath: model, Backend: "tpu"}, "backend"},
		{"device", Config{ModelPath: model, Device: -1}, "device"},
		{"port", Config{ModelPath: model, Port: 70000}, "port"},
		{"slots", Config{ModelPath: model, Slots: MaxSlots + 1}, "slots"},
		{"threads", Config{ModelPath: model, Threads: -2}, "threads"},
		{"context", Config{ModelPath: model, ContextSize: -1}, "context"},
		{"callback URL", Config{ModelPath: model, CallbackURL: "ftp://hive/ready"}, "callback URL"},
		{"callback URL without host", Config{ModelPath: model, CallbackURL: "http:///v1/workers/ready"}, "callback URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.cfg)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrConfig)
			assert.Contains(t, err.Error(), c.want)
		})
	}

	t.Run("defaults", func(t *testing.T) {
		s, err := New(Config{ModelPath: model})
		require.NoError(t, err)
		assert.Equal(t, "file:"+model, s.cfg.ModelRef)
		assert.Equal(t, api.BackendCPU, s.cfg.Backend)
		assert.Equal(t, api.DefaultWorkerPort, s.cfg.Port)
		assert.Equal(t, 1, s.cfg.Slots)
		assert.Equal(t, DefaultReadyTimeout, s.cfg.ReadyTimeout)
		assert.Nil(t, api.ValidateWorkerID(s.WorkerID()))
		assert.True(t, strings.HasPrefix(s.WorkerID(), "w-"))
		assert.Empty(t, s.URL(), "no URL before Run")
	})
}

func TestNonLoopbackNeedsToken(t *testing.T) {
	s, err := New(Config{ModelPath: writeModel(t, "Q8_0"), Host: "0.0.0.0", Port: -1})
	require.NoError(t, err)
	err = s.Run(t.Context())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "without an API key")
}

func TestRunTwice(t *testing.T) {
	tw := startWorker(t, Config{})
	tw.waitReady(t)
	assert.Error(t, tw.srv.Run(t.Context()))
	assert.Equal(t, tw.url, tw.srv.URL())
}
