package worker

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/gguf"
	"rbee/internal/httpx"
	"rbee/internal/testutil"
)

// writeNaNModel writes the tiny synthetic model in quant with every weight of
// one tensor set to NaN (copied through the project's GGUF writer), as a
// model file damaged on disk, and returns its path.
func writeNaNModel(t *testing.T, quant, tensor string) string {
	t.Helper()
	f, err := gguf.Open(writeModel(t, quant))
	require.NoError(t, err)
	defer f.Close()
	var w gguf.Writer
	for _, kv := range f.KV {
		require.NoError(t, w.Set(kv.Key, kv.Value))
	}
	found := false
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		if ti.Name != tensor {
			require.NoError(t, w.AddTensor(ti.Name, ti.Type, ti.Shape, f.TensorData(ti)))
			continue
		}
		found = true
		vals := make([]float32, ti.Elements())
		for j := range vals {
			vals[j] = float32(nan())
		}
		require.NoError(t, w.AddTensorF32(ti.Name, ti.Type, ti.Shape, vals))
	}
	require.True(t, found, "no tensor %s", tensor)
	path := filepath.Join(t.TempDir(), "nan-"+quant+".gguf")
	require.NoError(t, w.WriteFile(path))
	return path
}

func nan() float64 { var zero float64; return zero / zero }

// nonFiniteMessage is what a client is told when the model's logits are NaN or Inf.
const nonFiniteMessage = "the model produced non-finite values (NaN/Inf); its weights may be damaged"

// TestNonFiniteLogitsOverHTTP: a worker serving a model with NaN weights
// answers every request, streaming or not, greedy or sampled, with
// INFERENCE_FAILED and a message saying why (no token, no done event, no
// panic), logs it, and keeps serving.
func TestNonFiniteLogitsOverHTTP(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	tw := startWorker(t, Config{ModelPath: writeNaNModel(t, "Q8_0", "blk.0.ffn_down.weight"),
		Logger: hclog.New(&hclog.LoggerOptions{Name: "worker", Level: hclog.Info, Output: logs})})
	tw.waitReady(t)

	requests := map[string]api.InferenceRequest{
		"greedy":           greedy("Once upon a time", 8),
		"default sampling": {Prompt: "Once upon a time", SamplingParams: api.SamplingParams{MaxTokens: 8, Seed: ptr(uint64(1))}},
		"temperature 1.2, top-k and top-p": {Prompt: "Once upon a time", SamplingParams: api.SamplingParams{MaxTokens: 8,
			Temperature: ptr(1.2), TopK: ptr(10), TopP: ptr(0.5), MinP: ptr(0.0), RepeatPenalty: ptr(1.2), Seed: ptr(uint64(2))}},
	}
	checkError := func(t *testing.T, e *api.Error) {
		t.Helper()
		assert.Equal(t, api.CodeInferenceFailed, e.Code)
		assert.Equal(t, nonFiniteMessage, e.Message)
		assert.EqualValues(t, 0, e.Details["tokens_generated"])
		assert.NotEmpty(t, e.Hint())
		assert.NotEmpty(t, e.RequestID)
	}
	for name, req := range requests {
		t.Run(name+", stream", func(t *testing.T) {
			evs := tw.infer(t, req)
			require.NotEmpty(t, evs)
			last := evs[len(evs)-1]
			for _, ev := range evs[:len(evs)-1] {
				assert.Equal(t, api.KindNarration, ev.Kind, "only narration before the error: %+v", ev)
			}
			require.Equal(t, api.KindError, last.Kind, "the stream ends with an error event: %+v", last)
			checkError(t, last.Error)
		})
		t.Run(name+", stream false", func(t *testing.T) {
			r := req
			r.Stream = ptr(false)
			body, err := json.Marshal(r)
			require.NoError(t, err)
			status, e := tw.post(t, "/v1/inference", testToken, body)
			assert.Equal(t, http.StatusInternalServerError, status)
			require.NotNil(t, e)
			checkError(t, e)
		})
	}

	// Logged once per request, with the engine's own words, at error level.
	n := strings.Count(logs.String(), "[ERROR] worker: the model produced non-finite logits; its weights may be damaged")
	assert.Equal(t, 2*len(requests), n, "logs:\n%s", logs.String())
	assert.Contains(t, logs.String(), "logits, the first for token")

	// The worker is still up, idle, with every slot free.
	assert.Equal(t, api.StateIdle, tw.ready(t).State)
}

// TestNonFiniteLogitsProcess runs `rbee worker` as a child process on a model
// with NaN weights: a request fails with INFERENCE_FAILED, the worker says so
// on stderr, does not crash, and still exits 0 when asked to.
func TestNonFiniteLogitsProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the rbee binary")
	}
	const token = "nan-token-0123456789abcdef"
	wp := startProc(t, []string{"--model", writeNaNModel(t, "F16", "output.weight"), "--threads", "1"}, APIKeyEnv+"="+token)
	waitHealthy(t, wp.base, wp.exited)
	c := &httpx.Client{BaseURL: wp.base, Token: token}
	waitLoaded(t, c)

	req := api.InferenceRequest{Prompt: "Once upon a time", SamplingParams: api.SamplingParams{MaxTokens: 8, Seed: ptr(uint64(3))}} // default sampling
	resp, err := c.Stream(t.Context(), http.MethodPost, "/v1/inference", req, nil)
	require.NoError(t, err)
	evs := pullStream(t, resp).rest(t)
	require.NotEmpty(t, evs)
	last := evs[len(evs)-1]
	require.Equal(t, api.KindError, last.Kind, "%+v", evs)
	assert.Equal(t, api.CodeInferenceFailed, last.Error.Code)
	assert.Equal(t, nonFiniteMessage, last.Error.Message)

	require.NoError(t, c.Do(t.Context(), http.MethodPost, "/v1/admin/shutdown", nil, nil))
	assert.Equal(t, 0, wp.exitCode(t))
	// Read once the process is gone, so that all it wrote has arrived.
	assert.Contains(t, wp.stderr.String(), "[ERROR] rbee-worker: the model produced non-finite logits")
	assert.NotContains(t, wp.stderr.String(), "panic")
}
