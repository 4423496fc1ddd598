package worker

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
)

func TestInferenceFormat(t *testing.T) {
	tw := startWorker(t, Config{})
	tw.waitReady(t)
	schema := json.RawMessage(`{"type":"object","properties":{"ok":{"type":"boolean"},"n":{"type":"integer"}},"required":["ok","n"],"additionalProperties":false}`)
	for seed := range uint64(4) {
		req := api.InferenceRequest{Prompt: "JSON please:", SamplingParams: api.SamplingParams{
			MaxTokens: 200, Temperature: ptr(1.0), Seed: ptr(seed),
			Format: &api.Format{Type: api.FormatJSONSchema, Schema: schema}}}
		out, done := text(t, tw.infer(t, req))
		require.Equal(t, api.StopReason("eos"), done.StopReason, "text %q", out)
		var v struct {
			OK *bool `json:"ok"`
			N  *int  `json:"n"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &v), out)
		assert.NotNil(t, v.OK)
		assert.NotNil(t, v.N)
	}
	anyJSON := api.InferenceRequest{Prompt: "x", SamplingParams: api.SamplingParams{MaxTokens: 200, Temperature: ptr(0.0),
		Format: &api.Format{Type: api.FormatJSON}}}
	out, done := text(t, tw.infer(t, anyJSON))
	if done.StopReason == "eos" {
		assert.True(t, json.Valid([]byte(out)), out)
	}

	for _, bad := range []string{
		`{"prompt":"x","format":{"type":"json_schema","schema":{"type":"string","pattern":"a+"}}}`,
		`{"prompt":"x","format":{"type":"json_schema"}}`,
		`{"prompt":"x","format":{"type":"yaml"}}`,
	} {
		status, e := tw.post(t, "/v1/inference", testToken, []byte(bad))
		require.Equal(t, http.StatusBadRequest, status, bad)
		assert.Equal(t, api.CodeInvalidRequest, e.Code)
		assert.Equal(t, "format", e.Details["field"], bad)
	}
}
