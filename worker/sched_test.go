package worker

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/ggml"
	"rbee/internal/gguf"
	"rbee/worker/engine"
)

// stepGate is a scheduler stepHook: it records the batch of every forward
// pass and, while holding, keeps the loop waiting after each pass until the
// test lets it go on.
type stepGate struct {
	mu      sync.Mutex
	batches []int
	gate    chan struct{} // non-nil: a pass waits for it to close
	held    chan int      // the batch of each pass that waits
}

func newStepGate() *stepGate { return &stepGate{held: make(chan int, 64)} }

func (g *stepGate) hook(ctx context.Context, batch int) {
	g.mu.Lock()
	g.batches = append(g.batches, batch)
	wait := g.gate
	g.mu.Unlock()
	if wait == nil {
		return
	}
	g.held <- batch
	select {
	case <-wait:
	case <-ctx.Done():
	}
}

// hold makes the passes from now on wait.
func (g *stepGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate == nil {
		g.gate = make(chan struct{})
	}
}

// advance lets the waiting pass go on and holds the next one.
func (g *stepGate) advance() {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.gate
	g.gate = make(chan struct{})
	close(old)
}

// letGo stops holding.
func (g *stepGate) letGo() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
}

// waitHeld waits for a pass to be held and returns its batch.
func (g *stepGate) waitHeld(t *testing.T) int {
	t.Helper()
	select {
	case b := <-g.held:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no forward pass was held")
		return 0
	}
}

// batchesSince returns the batches of the passes after the first n.
func (g *stepGate) batchesSince(n int) []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.batches[n:])
}

func (g *stepGate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.batches)
}

// clearGreedy is a greedy request for prompt without a repetition penalty.
func clearGreedy(prompt string, maxTokens int) api.InferenceRequest {
	return api.InferenceRequest{Prompt: prompt, SamplingParams: api.SamplingParams{MaxTokens: maxTokens, Temperature: ptr(0.0), RepeatPenalty: ptr(1.0)}}
}

// clearMargin is the logit gap between the best and the second-best token
// that rounding differences between one forward pass and another (a batch
// of other generations, a cached prefix) cannot close.
const clearMargin = 0.05

// clearTokens runs prompt greedily on the model alone and returns how many
// of its first limit tokens win by at least clearMargin: a generation of
// that many tokens is the same however the passes are batched.
func clearTokens(t *testing.T, m *engine.Model, prompt string, limit int) int {
	t.Helper()
	s := m.NewSession()
	logits, err := s.Eval(t.Context(), m.Tokenizer().Encode(prompt, true, true))
	require.NoError(t, err)
	for k := range limit {
		best, second := -1, -1
		for id, v := range logits {
			switch {
			case best < 0 || v > logits[best]:
				best, second = id, best
			case second < 0 || v > logits[second]:
				second = id
			}
		}
		if logits[best]-logits[second] < clearMargin {
			return k
		}
		if m.Tokenizer().IsEOG(best) {
			return k + 1
		}
		logits, err = s.Eval(t.Context(), []int{best})
		require.NoError(t, err)
	}
	return limit
}

// batchPrompts are four prompts and the margin-clear length of each on the
// model at path (each at least 4 tokens, at most 20).
func batchPrompts(t *testing.T, path string) ([]string, []int) {
	t.Helper()
	m := loadModel(t, path)
	prompts := []string{"Once upon a time", "the quick brown fox", "In a hole in the ground", "hello world, said the"}
	n := make([]int, len(prompts))
	for i, p := range prompts {
		n[i] = clearTokens(t, m, p, 20)
		require.GreaterOrEqual(t, n[i], 4, "prompt %q: too few margin-clear tokens to compare", p)
	}
	return prompts, n
}

// soloTexts runs each request alone on a one-slot worker of the model at path.
func soloTexts(t *testing.T, path string, reqs []api.InferenceRequest) []string {
	t.Helper()
	ref := startWorker(t, Config{ModelPath: path, Slots: 1})
	ref.waitReady(t)
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i], _ = text(t, ref.infer(t, r))
	}
	return out
}

// TestBatchFourSlotsEightRequests: on a 4-slot worker, four requests run
// together (one forward pass advances all four) while four more are refused
// with ALL_SLOTS_BUSY (the queen queues them, not the worker); at
// temperature 0 each answer equals the same request run alone.
func TestBatchFourSlotsEightRequests(t *testing.T) {
	path := writeModel(t, "Q8_0")
	prompts, n := batchPrompts(t, path)
	reqs := make([]api.InferenceRequest, len(prompts))
	for i, p := range prompts {
		reqs[i] = clearGreedy(p, n[i])
	}
	solo := soloTexts(t, path, reqs)

	sg := newStepGate()
	tw := startWorker(t, Config{ModelPath: path, Slots: 4, stepHook: sg.hook})
	tw.waitReady(t)
	defer sg.letGo()
	sg.hold()
	mark := sg.count()
	streams := []*stream{tw.openStream(t, reqs[0], "req-0")}
	assert.Equal(t, 1, sg.waitHeld(t), "the first request runs alone")
	for i := 1; i < 4; i++ {
		streams = append(streams, tw.openStream(t, reqs[i], ""))
	}
	h := tw.health(t)
	assert.Equal(t, api.StateBusy, h.State)
	assert.Equal(t, 4, h.SlotsTotal)
	assert.Equal(t, 4, h.SlotsBusy)

	// Four more at once: the worker is full.
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			errs <- tw.client.Do(t.Context(), http.MethodPost, "/v1/inference", clearGreedy(prompts[i], 4), nil)
		}()
	}
	for range 4 {
		e := apiError(t, <-errs)
		assert.Equal(t, api.CodeAllSlotsBusy, e.Code)
		assert.EqualValues(t, 4, e.Details["slots_total"])
		assert.EqualValues(t, 4, e.Details["slots_busy"])
	}

	sg.letGo()
	for i, s := range streams {
		got, done := text(t, s.rest(t))
		assert.Equal(t, solo[i], got, "request %d in a batch answers as it does alone", i)
		assert.Equal(t, n[i], done.TotalTokens)
	}
	batches := sg.batchesSince(mark)
	assert.Equal(t, 4, slices.Max(batches), "one pass advanced all four: %v", batches)
	h = tw.health(t)
	assert.Equal(t, api.StateIdle, h.State)
	assert.Equal(t, 0, h.SlotsBusy)
	assert.EqualValues(t, sg.count(), h.Steps)
	assert.Equal(t, batches[len(batches)-1], h.Batch)

	// /metrics counts the passes by batch size.
	m := metricsText(t, tw)
	fours := 0
	for _, b := range sg.batchesSince(0) {
		if b == 4 {
			fours++
		}
	}
	le3, le4 := metricValue(t, m, `rbee_worker_batch_size_bucket{le="3"}`), metricValue(t, m, `rbee_worker_batch_size_bucket{le="4"}`)
	assert.Equal(t, fours, le4-le3, "passes of four:\n%s", m)
	assert.Equal(t, sg.count(), metricValue(t, m, "rbee_worker_batch_size_count"))
	assert.Equal(t, sg.count(), metricValue(t, m, "rbee_worker_steps_total"))
	assert.Equal(t, 4, metricValue(t, m, "rbee_worker_slots"))
	assert.Equal(t, 0, metricValue(t, m, "rbee_worker_slots_busy"))
}

// metricsText reads the worker's GET /metrics (which needs the token).
func metricsText(t *testing.T, tw *testWorker) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, tw.url+"/metrics", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "no token, no metrics")
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// metricValue finds the sample named series (with its labels) in a
// Prometheus text exposition.
func metricValue(t *testing.T, text, series string) int {
	t.Helper()
	for line := range strings.Lines(text) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			n, err := strconv.Atoi(v)
			require.NoError(t, err, "%s", line)
			return n
		}
	}
	t.Fatalf("no %s in\n%s", series, text)
	return 0
}

// TestBatchJoinMidGeneration: a request that arrives while another is
// generating joins it at the next forward pass; both answer as alone.
func TestBatchJoinMidGeneration(t *testing.T) {
	path := writeModel(t, "Q8_0")
	prompts, n := batchPrompts(t, path)
	a, b := clearGreedy(prompts[0], n[0]), clearGreedy(prompts[1], n[1])
	solo := soloTexts(t, path, []api.InferenceRequest{a, b})

	sg := newStepGate()
	tw := startWorker(t, Config{ModelPath: path, Slots: 2, stepHook: sg.hook})
	tw.waitReady(t)
	defer sg.letGo()
	sg.hold()
	sa := tw.openStream(t, a, "req-a")
	require.Equal(t, 1, sg.waitHeld(t))
	sg.advance()
	require.Equal(t, 1, sg.waitHeld(t))
	// A has generated: its first tokens are out.
	require.Equal(t, api.KindNarration, sa.event(t).Kind)
	first := sa.event(t)
	require.Equal(t, api.KindToken, first.Kind, "%+v", first)

	sb := tw.openStream(t, b, "req-b")
	sg.advance()
	assert.Equal(t, 2, sg.waitHeld(t), "B joins A at the next pass")
	sg.letGo()
	gotA, doneA := text(t, append([]api.Event{first}, sa.rest(t)...))
	gotB, doneB := text(t, sb.rest(t))
	assert.Equal(t, solo[0], gotA)
	assert.Equal(t, solo[1], gotB)
	assert.Equal(t, n[0], doneA.TotalTokens)
	assert.Equal(t, n[1], doneB.TotalTokens)
}

// TestBatchClientGoneFreesSlot: a client that goes away mid-batch frees its
// slot; the others finish undisturbed and answer as alone.
func TestBatchClientGoneFreesSlot(t *testing.T) {
	path := writeModel(t, "Q8_0")
	prompts, n := batchPrompts(t, path)
	reqs := make([]api.InferenceRequest, len(prompts))
	for i, p := range prompts {
		reqs[i] = clearGreedy(p, n[i])
	}
	solo := soloTexts(t, path, reqs)

	g := newGate()
	tw := startWorker(t, Config{ModelPath: path, Slots: 4, tokenHook: g.hook})
	tw.waitReady(t)
	defer g.open()
	const gone = 2
	goneCtx, hangUp := context.WithCancel(t.Context())
	defer hangUp()
	streams := make([]*stream, len(reqs))
	for i, r := range reqs {
		if i == gone {
			resp, err := tw.client.Stream(goneCtx, http.MethodPost, "/v1/inference", r, nil)
			require.NoError(t, err)
			streams[i] = pullStream(t, resp)
			continue
		}
		streams[i] = tw.openStream(t, r, "")
	}
	for range reqs {
		g.waitReached(t)
	}
	require.Equal(t, 4, tw.health(t).SlotsBusy)

	hangUp()
	deadline := time.Now().Add(10 * time.Second)
	for tw.health(t).SlotsBusy != 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	require.Equal(t, 3, tw.health(t).SlotsBusy, "the slot of the client that went away is free")

	g.open()
	for i, s := range streams {
		if i == gone {
			continue
		}
		got, done := text(t, s.rest(t))
		assert.Equal(t, solo[i], got, "request %d", i)
		assert.Equal(t, n[i], done.TotalTokens)
	}
	assert.Equal(t, 0, tw.health(t).SlotsBusy)
}

// TestBatchShutdownEndsEveryStream: a worker shut down while four requests
// generate together ends each stream with SHUTTING_DOWN.
func TestBatchShutdownEndsEveryStream(t *testing.T) {
	g := newGate() // never opened
	tw := startWorker(t, Config{Slots: 4, tokenHook: g.hook})
	tw.waitReady(t)
	ids := []string{"req-s0", "req-s1", "req-s2", "req-s3"}
	streams := make([]*stream, len(ids))
	for i, id := range ids {
		streams[i] = tw.openStream(t, greedy("Once upon a time", 40), id)
	}
	for range ids {
		g.waitReached(t)
	}
	tw.srv.Shutdown()
	for i, s := range streams {
		assertStoppedStream(t, s.rest(t), ids[i], 40)
	}
	assert.NoError(t, tw.wait(t))
}

// writeNaNTokenModel writes the tiny F16 model with the embedding of one
// token set to NaN: a prompt with that token makes non-finite logits, any
// other prompt runs normally.
func writeNaNTokenModel(t *testing.T, token int) string {
	t.Helper()
	f, err := gguf.Open(writeModel(t, "F16"))
	require.NoError(t, err)
	defer f.Close()
	var w gguf.Writer
	for _, kv := range f.KV {
		require.NoError(t, w.Set(kv.Key, kv.Value))
	}
	found := false
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		if ti.Name != "token_embd.weight" {
			require.NoError(t, w.AddTensor(ti.Name, ti.Type, ti.Shape, f.TensorData(ti)))
			continue
		}
		found = true
		vals := make([]float32, ti.Elements())
		require.NoError(t, ggml.Dequantize(ti.Type, f.TensorData(ti), vals))
		row := int(ti.Shape[0])
		for j := token * row; j < (token+1)*row; j++ {
			vals[j] = float32(nan())
		}
		require.NoError(t, w.AddTensorF32(ti.Name, ti.Type, ti.Shape, vals))
	}
	require.True(t, found, "no token embeddings")
	path := filepath.Join(t.TempDir(), "nan-token.gguf")
	require.NoError(t, w.WriteFile(path))
	return path
}

// TestBatchNonFiniteFailsOnlyItsRequest: in a batch of four, the request
// whose prompt makes non-finite values fails with INFERENCE_FAILED; the
// other three answer as alone.
func TestBatchNonFiniteFailsOnlyItsRequest(t *testing.T) {
	const bad = "zebra crossing"
	good := []string{"Once upon a time", "the quick brown fox", "In a hole in the ground"}
	// A token of the bad prompt that no good prompt has.
	tok := loadModel(t, writeModel(t, "F16")).Tokenizer()
	others := map[int]bool{}
	for _, p := range good {
		for _, id := range tok.Encode(p, true, true) {
			others[id] = true
		}
	}
	poison := -1
	for _, id := range tok.Encode(bad, true, true) {
		if !others[id] {
			poison = id
		}
	}
	require.GreaterOrEqual(t, poison, 0, "every token of %q is in a good prompt", bad)
	path := writeNaNTokenModel(t, poison)

	m := loadModel(t, path)
	reqs := make([]api.InferenceRequest, len(good))
	for i, p := range good {
		k := clearTokens(t, m, p, 16)
		require.GreaterOrEqual(t, k, 4, "prompt %q", p)
		reqs[i] = clearGreedy(p, k)
	}
	solo := soloTexts(t, path, reqs)

	sg := newStepGate()
	tw := startWorker(t, Config{ModelPath: path, Slots: 4, stepHook: sg.hook})
	tw.waitReady(t)
	defer sg.letGo()
	sg.hold()
	mark := sg.count()
	streams := []*stream{tw.openStream(t, reqs[0], "")}
	sg.waitHeld(t)
	for _, r := range reqs[1:] {
		streams = append(streams, tw.openStream(t, r, ""))
	}
	badStream := tw.openStream(t, clearGreedy(bad, 8), "req-bad")
	sg.letGo()

	evs := badStream.rest(t)
	require.NotEmpty(t, evs)
	last := evs[len(evs)-1]
	require.Equal(t, api.KindError, last.Kind, "%+v", evs)
	assert.Equal(t, api.CodeInferenceFailed, last.Error.Code)
	assert.Equal(t, nonFiniteMessage, last.Error.Message)
	assert.Equal(t, "req-bad", last.Error.RequestID)
	for i, s := range streams {
		got, _ := text(t, s.rest(t))
		assert.Equal(t, solo[i], got, "request %d", i)
	}
	assert.Equal(t, 4, slices.Max(sg.batchesSince(mark)), "the bad request ran in the batch")
	assert.Equal(t, api.StateIdle, tw.health(t).State)
}

// TestBatchSlowClientHoldsBackNobody: a client that stops reading does not
// stall the others: its generation goes on, its slot frees when it ends,
// and its text waits for it, whole.
func TestBatchSlowClientHoldsBackNobody(t *testing.T) {
	path := writeModel(t, "Q8_0")
	prompts, n := batchPrompts(t, path)
	slow, fast := clearGreedy(prompts[0], n[0]), clearGreedy(prompts[1], n[1])
	solo := soloTexts(t, path, []api.InferenceRequest{slow, fast})

	stuck := make(chan struct{})
	defer func() {
		select {
		case <-stuck:
		default:
			close(stuck)
		}
	}()
	hook := func(ctx context.Context, id string, index int) {
		if id == "req-slow" && index == 0 {
			select {
			case <-stuck:
			case <-ctx.Done():
			}
		}
	}
	tw := startWorker(t, Config{ModelPath: path, Slots: 2, tokenHook: hook, slowClient: true})
	tw.waitReady(t)
	s := tw.openStream(t, slow, "req-slow")
	f := tw.openStream(t, fast, "req-fast")
	gotFast, _ := text(t, f.rest(t))
	assert.Equal(t, solo[1], gotFast, "the other request finished while the slow client read nothing")

	// The slow client's generation ends too, and frees its slot, while its
	// handler is still stuck on the first token.
	deadline := time.Now().Add(10 * time.Second)
	for tw.health(t).SlotsBusy != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	require.Equal(t, 0, tw.health(t).SlotsBusy)
	close(stuck)
	gotSlow, done := text(t, s.rest(t))
	assert.Equal(t, solo[0], gotSlow, "nothing was dropped")
	assert.Equal(t, n[0], done.TotalTokens)
}
