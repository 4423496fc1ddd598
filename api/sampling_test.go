package api

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// samplingJSON sets every sampling parameter, as a client sends them.
const samplingJSON = `"max_tokens":7,"temperature":0.5,"top_p":0.9,"top_k":20,"min_p":0.1,` +
	`"repeat_penalty":1.1,"seed":42,"stop":["\n\n"]`

func allSampling() SamplingParams {
	f := func(v float64) *float64 { return &v }
	k, seed := 20, uint64(42)
	return SamplingParams{MaxTokens: 7, Temperature: f(0.5), TopP: f(0.9), TopK: &k, MinP: f(0.1),
		RepeatPenalty: f(1.1), Seed: &seed, Stop: []string{"\n\n"}}
}

// keys is the set of top-level keys of a JSON object.
func keys(t *testing.T, b []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &m), "%s", b)
	return slices.Sorted(maps.Keys(m))
}

// The sampling parameters sit at the top level of every request that
// carries them, under the same keys as before they were one struct, and a
// body decodes back to the same values.
func TestSamplingParamsWire(t *testing.T) {
	sampling := []string{"max_tokens", "min_p", "repeat_penalty", "seed", "stop", "temperature", "top_k", "top_p"}
	cases := []struct {
		name  string
		value any
		other []string // the request's own keys
		into  func() (any, *SamplingParams)
	}{
		{"TaskRequest", TaskRequest{Node: "local", Model: "file:/m.gguf", Prompt: "hi", SamplingParams: allSampling(), Backend: BackendCPU},
			[]string{"backend", "model", "node", "prompt"},
			func() (any, *SamplingParams) { var r TaskRequest; return &r, &r.SamplingParams }},
		{"InferenceRequest", InferenceRequest{Prompt: "hi", SamplingParams: allSampling(), Stream: new(bool)},
			[]string{"prompt", "stream"},
			func() (any, *SamplingParams) { var r InferenceRequest; return &r, &r.SamplingParams }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.value)
			require.NoError(t, err)
			assert.Equal(t, slices.Sorted(slices.Values(append(tc.other, sampling...))), keys(t, b))

			v, got := tc.into()
			require.NoError(t, json.Unmarshal(b, v))
			assert.Equal(t, allSampling(), *got)
			again, err := json.Marshal(v)
			require.NoError(t, err)
			assert.JSONEq(t, string(b), string(again))

			// A body written by hand decodes the same.
			*got = SamplingParams{}
			require.NoError(t, json.Unmarshal([]byte(`{"prompt":"hi",`+samplingJSON+`}`), v))
			assert.Equal(t, allSampling(), *got)
		})
	}

	t.Run("unset parameters are left out", func(t *testing.T) {
		b, err := json.Marshal(InferenceRequest{Prompt: "hi"})
		require.NoError(t, err)
		assert.Equal(t, []string{"prompt"}, keys(t, b))
	})

	t.Run("a task's inference carries them all", func(t *testing.T) {
		task := TaskRequest{Prompt: "hi", SamplingParams: allSampling(), Messages: []ChatMessage{{Role: RoleUser, Content: "x"}}}
		inf := task.Inference()
		assert.Equal(t, task.SamplingParams, inf.SamplingParams)
		assert.Equal(t, task.Messages, inf.Messages)
	})
}

func TestSamplingParamsValidate(t *testing.T) {
	s, err := allSampling().Validate(2048)
	require.Nil(t, err)
	assert.Equal(t, Sampling{MaxTokens: 7, Temperature: 0.5, TopP: 0.9, TopK: 20, MinP: 0.1, RepeatPenalty: 1.1,
		Seed: allSampling().Seed, Stop: []string{"\n\n"}}, s)

	s, err = SamplingParams{}.Validate(64)
	require.Nil(t, err)
	assert.Equal(t, 64, s.MaxTokens, "the default max_tokens is capped by the limit")
	assert.Equal(t, Sampling{MaxTokens: 64, Temperature: DefaultTemperature, TopP: DefaultTopP, TopK: DefaultTopK,
		MinP: DefaultMinP, RepeatPenalty: 1}, s)
}
