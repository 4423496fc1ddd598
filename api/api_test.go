package api

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestErrorsIs(t *testing.T) {
	err := fmt.Errorf("relaying: %w", Errorf(CodeNodeNotFound, "node %q is not registered", "x").WithHint("rbee setup add-node"))
	assert.ErrorIs(t, err, ErrNodeNotFound)
	assert.NotErrorIs(t, err, ErrWorkerNotFound)
	var e *Error
	require.True(t, errors.As(err, &e))
	assert.Equal(t, 404, e.HTTPStatus())
	assert.Equal(t, "rbee setup add-node", e.Hint())
	assert.Len(t, Codes(), 32)
	assert.Equal(t, 403, CodeForbidden.HTTPStatus())
	assert.Equal(t, 404, CodeNotFound.HTTPStatus())
	assert.Equal(t, 405, CodeMethodNotAllowed.HTTPStatus())
	assert.Equal(t, 501, CodeNotImplemented.HTTPStatus())
	for _, c := range Codes() {
		if c == CodeInternal || c == CodeInferenceFailed {
			assert.Equal(t, 500, c.HTTPStatus(), c)
			continue
		}
		assert.NotEqual(t, 500, c.HTTPStatus(), c, "only INTERNAL and INFERENCE_FAILED are 500")
	}
}

func TestNodeNames(t *testing.T) {
	for _, ok := range []string{"local", "workstation", "mac", "a", "node-1", strings.Repeat("a", 63)} {
		assert.Nil(t, ValidateNodeName(ok), ok)
	}
	for _, bad := range []string{"", "-a", "a-", "Mac", "a_b", "a.b", "a b", strings.Repeat("a", 64), "a;rm -rf /"} {
		e := ValidateNodeName(bad)
		require.NotNil(t, e, bad)
		assert.Equal(t, "node", e.Details["field"])
		if bad != "" {
			assert.NotContains(t, e.Message, bad, "the value is not echoed")
		}
	}
}

func TestModelRefs(t *testing.T) {
	cases := map[string]ModelRef{
		"hf:TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF": {Provider: "hf", Repo: "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF"},
		"hf:org/repo:Q8_0":                          {Provider: "hf", Repo: "org/repo", Quant: "Q8_0"},
		"hf:org/repo/sub/model.Q4_K_M.gguf":         {Provider: "hf", Repo: "org/repo", File: "sub/model.Q4_K_M.gguf"},
		"file:/models/tiny.gguf":                    {Provider: "file", Path: "/models/tiny.gguf"},
	}
	for ref, want := range cases {
		got, err := ParseModelRef(ref)
		require.Nil(t, err, ref)
		assert.Equal(t, want, got)
		assert.Equal(t, ref, got.String())
	}
	for _, bad := range []string{"", "tiny.gguf", "file:relative.gguf", "file:/a/../b.gguf", "file:/a//b", "hf:org", "hf:org/repo:",
		"s3:bucket/x", "file:/x y.gguf", "hf:org/repo/file.bin", strings.Repeat("a", 513), "file:/a;rm"} {
		_, err := ParseModelRef(bad)
		assert.NotNil(t, err, bad)
	}
}

func TestPrompts(t *testing.T) {
	assert.Nil(t, ValidatePrompt("Hello, world!\n\tÜnïcödé 日本語 🐝\r\n"))
	assert.Nil(t, ValidatePrompt(strings.Repeat("é", MaxPromptChars)))
	for name, bad := range map[string]string{"empty": "", "nul": "a\x00b", "esc": "a\x1b[31m", "del": "a\x7f", "c1": "a\u0085",
		"bidi": "a\u202eb", "isolate": "a\u2066b", "invalid utf8": "a\xffb", "too long": strings.Repeat("a", MaxPromptChars+1)} {
		e := ValidatePrompt(bad)
		require.NotNil(t, e, name)
		assert.Equal(t, "prompt", e.Details["field"], name)
	}
}

func TestSampling(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	s, err := SamplingParams{}.Validate(2048)
	require.Nil(t, err)
	assert.Equal(t, DefaultMaxTokens, s.MaxTokens)
	assert.Equal(t, DefaultTemperature, s.Temperature)
	bad := map[string]func() *Error{
		"max_tokens":  func() *Error { _, e := SamplingParams{MaxTokens: 5000}.Validate(2048); return e },
		"temperature": func() *Error { _, e := SamplingParams{MaxTokens: 1, Temperature: f(2.1)}.Validate(2048); return e },
		"top_p":       func() *Error { _, e := SamplingParams{MaxTokens: 1, TopP: f(-0.1)}.Validate(2048); return e },
		"stop": func() *Error {
			_, e := SamplingParams{MaxTokens: 1, Stop: []string{"a", "b", "c", "d", "e"}}.Validate(2048)
			return e
		},
	}
	for field, fn := range bad {
		e := fn()
		require.NotNil(t, e, field)
		assert.Equal(t, field, e.Details["field"])
	}
}

func TestEventRoundTrip(t *testing.T) {
	evs := []Event{
		NarrationEvent(ActorHive, "download", "Downloading model from Hugging Face"),
		{Kind: KindProgress, Progress: &Progress{Stage: StageDownloading, BytesDownloaded: 5, BytesTotal: 10, MegabytesPerSecond: 1.5}},
		{Kind: KindToken, Token: &Token{Token: " upon", Index: 1}},
		{Kind: KindDone, Done: &Done{Done: true, TotalTokens: 20, DurationMs: 1234, StopReason: StopMaxTokens}},
		{Kind: KindError, Error: Errorf(CodeVRAMExhausted, "Insufficient VRAM").With("required", 6000)},
	}
	for _, ev := range evs {
		data, err := ev.MarshalData()
		require.NoError(t, err)
		for _, name := range []string{string(ev.Kind), ""} { // named, and self-describing
			got, err := ParseEvent(name, data)
			require.NoError(t, err)
			assert.Equal(t, ev.Kind, got.Kind)
		}
	}
	_, err := ParseEvent("", []byte(`{"nothing":1}`))
	assert.Error(t, err)
}
