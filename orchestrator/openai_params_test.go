package orchestrator

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
)

// Both OpenAI endpoints read every sampling parameter under rbee's keys
// (max_tokens, seed and stop in OpenAI's shapes) and hand them to the task
// unchanged; a type error names the JSON key.
func TestOpenAIParamsCarrySampling(t *testing.T) {
	const sampling = `"max_tokens":7,"temperature":0.5,"top_p":0.9,"top_k":20,"min_p":0.1,"repeat_penalty":1.1,"seed":42,"stop":"\n\n"`
	f := func(v float64) *float64 { return &v }
	k, seed := 20, uint64(42)
	want := api.SamplingParams{MaxTokens: 7, Temperature: f(0.5), TopP: f(0.9), TopK: &k, MinP: f(0.1),
		RepeatPenalty: f(1.1), Seed: &seed, Stop: []string{"\n\n"}}

	bodies := map[string]struct {
		body   string
		params func() (any, *openAIParams)
	}{
		"chat": {`{"model":"file:/m.gguf","messages":[{"role":"user","content":"hi"}],` + sampling + `}`,
			func() (any, *openAIParams) { var r openAIChatRequest; return &r, &r.openAIParams }},
		"completion": {`{"model":"file:/m.gguf","prompt":"hi",` + sampling + `}`,
			func() (any, *openAIParams) { var r openAICompletionRequest; return &r, &r.openAIParams }},
	}
	for name, tc := range bodies {
		t.Run(name, func(t *testing.T) {
			v, p := tc.params()
			r := httptest.NewRequest("POST", "/v1/x", strings.NewReader(tc.body))
			require.Nil(t, decodeOpenAI(httptest.NewRecorder(), r, v))
			task, e := p.task(r)
			require.Nil(t, e)
			assert.Equal(t, want, task.SamplingParams)
			assert.Empty(t, task.Node, "no node: the queen places the request")
		})
	}

	for body, field := range map[string]string{
		`{"temperature":"hot"}`: "temperature",
		`{"repeat_penalty":[]}`: "repeat_penalty",
		`{"max_tokens":"10"}`:   "max_tokens",
		`{"seed":1.5}`:          "seed",
	} {
		var req openAIChatRequest
		e := decodeOpenAI(httptest.NewRecorder(), httptest.NewRequest("POST", "/", strings.NewReader(body)), &req)
		require.NotNil(t, e, body)
		assert.Equal(t, field, e.Details["field"], body)
		assert.NotContains(t, e.Message, "Params", body)
	}
}
