package orchestrator

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/gguf"
	"rbee/internal/synth"
	"rbee/internal/testutil"
	"rbee/internal/tokenizer"
)

// TestOpenAIRealWorker runs the OpenAI-compatible endpoints of an
// in-process queen against a real `rbee hive` and `rbee worker` on a tiny
// model whose GGUF carries a chatml template: chat, its stream and the
// equivalent raw completion generate the same greedy text from the same
// prompt tokens; /v1/models and /metrics report the worker.
func TestOpenAIRealWorker(t *testing.T) {
	skipShort(t)
	spec := synth.Tiny("Q8_0")
	spec.ChatTemplate = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}" +
		"{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
	spec.SpecialTokens = []string{"<|im_start|>", "<|im_end|>"}
	path := filepath.Join(t.TempDir(), "chat.gguf")
	require.NoError(t, synth.Write(path, spec))
	model := "file:" + path

	// The prompt the worker must build, tokenized as llama.cpp would.
	const formatted = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nOnce upon a time<|im_end|>\n<|im_start|>assistant\n"
	f, err := gguf.Open(path)
	require.NoError(t, err)
	tok, err := tokenizer.FromGGUF(f)
	require.NoError(t, err)
	promptTokens := len(tok.Encode(formatted, true, true))
	f.Close()

	q, err := New(Config{Home: t.TempDir(), Binary: testutil.RbeeBinary(t), LocalHivePort: testutil.FreePort(t),
		LocalWorkerPortStart: testutil.FreePort(t), HiveRetryDelays: []time.Duration{0}})
	require.NoError(t, err)
	url := newHTTPTestServer(t, q)
	t.Cleanup(func() { assert.NoError(t, q.Close()) })

	messages := []map[string]string{{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Once upon a time"}}
	params := map[string]any{"model": model, "temperature": 0, "max_tokens": 8, "seed": 1}
	body := func(extra map[string]any) map[string]any {
		b := map[string]any{}
		for k, v := range params {
			b[k] = v
		}
		for k, v := range extra {
			b[k] = v
		}
		return b
	}

	// Non-streaming chat (a cold start: hive, worker, model load).
	a := oaiCall(t, "POST", url+"/v1/chat/completions", "", body(map[string]any{"messages": messages}), nil)
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	chat := decodeResponse(t, a.body, "chat.completion")
	require.Len(t, chat.Choices, 1)
	require.NotNil(t, chat.Choices[0].Message.Content)
	reply := *chat.Choices[0].Message.Content
	require.NotNil(t, chat.Choices[0].FinishReason)
	finish := *chat.Choices[0].FinishReason
	assert.Contains(t, []string{"stop", "length"}, finish)
	require.NotNil(t, chat.Usage)
	assert.Equal(t, promptTokens, chat.Usage.PromptTokens, "the worker formatted the chat with the model's template")
	assert.Positive(t, chat.Usage.CompletionTokens)
	assert.LessOrEqual(t, chat.Usage.CompletionTokens, 8)

	// Streaming: the same reply in deltas, then the usage.
	data := readStream(t, oaiCall(t, "POST", url+"/v1/chat/completions", "",
		body(map[string]any{"messages": messages, "stream": true, "stream_options": map[string]any{"include_usage": true}}), nil))
	var text strings.Builder
	var streamFinish string
	for _, d := range data {
		c := decodeResponse(t, []byte(d), "chat.completion.chunk")
		if c.Usage != nil {
			assert.Equal(t, *chat.Usage, *c.Usage)
			continue
		}
		require.Len(t, c.Choices, 1)
		if c.Choices[0].Delta.Content != nil {
			text.WriteString(*c.Choices[0].Delta.Content)
		}
		if c.Choices[0].FinishReason != nil {
			streamFinish = *c.Choices[0].FinishReason
		}
	}
	assert.Equal(t, reply, text.String())
	assert.Equal(t, finish, streamFinish)

	// The formatted prompt as a raw completion: the same tokens, the same text.
	a = oaiCall(t, "POST", url+"/v1/completions", "", body(map[string]any{"prompt": formatted}), nil)
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	cmpl := decodeResponse(t, a.body, "text_completion")
	require.NotNil(t, cmpl.Choices[0].Text)
	assert.Equal(t, reply, *cmpl.Choices[0].Text)
	assert.Equal(t, promptTokens, cmpl.Usage.PromptTokens)

	// The model is listed: loaded, in the local catalog.
	a = oaiCall(t, "GET", url+"/v1/models", "", nil, nil)
	require.Equal(t, http.StatusOK, a.status)
	var list openAIModelList
	require.NoError(t, json.Unmarshal(a.body, &list))
	require.Len(t, list.Data, 1, "%s", a.body)
	assert.Equal(t, model, list.Data[0].ID)
	assert.True(t, list.Data[0].Loaded)
	assert.Equal(t, []string{"local"}, list.Data[0].Nodes)
	assert.Positive(t, list.Data[0].Created, "registered in the catalog at the spawn")

	a = oaiCall(t, "GET", url+"/metrics", "", nil, nil)
	require.Equal(t, http.StatusOK, a.status)
	checkExposition(t, string(a.body))
	for _, line := range []string{`rbee_tasks_total{outcome="done"} 3`, `rbee_hive_up{node="local"} 1`,
		`rbee_workers{node="local",state="idle"} 1`} {
		assert.Contains(t, string(a.body), "\n"+line+"\n")
	}
	// The worker's batch sizes, scraped from it: every pass of the three
	// requests advanced one inference.
	passes := regexp.MustCompile(`\nrbee_worker_batch_size_count\{node="local",worker="[^"]+"\} (\d+)\n`).FindStringSubmatch(string(a.body))
	require.NotNil(t, passes, "the worker's batch sizes are on the queen's /metrics:\n%s", a.body)
	assert.NotEqual(t, "0", passes[1])
	assert.Contains(t, string(a.body), "\nrbee_batch_size_bucket{le=\"1\"} "+passes[1]+"\n")
	assert.Contains(t, string(a.body), "\nrbee_batch_size_count "+passes[1]+"\n")
}
