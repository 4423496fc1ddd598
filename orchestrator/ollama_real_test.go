package orchestrator

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	ollama "github.com/ollama/ollama/api"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/gguf"
	"rbee/internal/hftest"
	"rbee/internal/testutil"
	"rbee/internal/tokenizer"
)

// bearer adds an API key to every request, as a program that uses ollama's
// Go client against a queen with a key does.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// ollamaClient is ollama's official Go client for the queen at base.
func ollamaClient(t *testing.T, base, token string) *ollama.Client {
	t.Helper()
	u, err := url.Parse(base)
	require.NoError(t, err)
	var rt http.RoundTripper = http.DefaultTransport
	if token != "" {
		rt = bearer{token: token, next: rt}
	}
	return ollama.NewClient(u, &http.Client{Transport: rt})
}

// statusError returns err as the ollama client's error for a status,
// failing the test if it is not one.
func statusError(t *testing.T, err error) ollama.StatusError {
	t.Helper()
	var e ollama.StatusError
	require.True(t, errors.As(err, &e), "not an ollama status error: %v", err)
	return e
}

// TestOllamaRealWorker drives a queen with an API key, a real hive and a
// real worker on a tiny chatml model through ollama's official Go client
// and compares it with OpenAI's official client on the OpenAI routes: at
// temperature 0, Chat and Generate give the OpenAI chat route's text,
// streamed and not, and a raw Generate the completion route's; an empty
// prompt loads the model; List, Show, ListRunning, Version and Delete
// answer as ollama does; an unknown model is the client's 404, images its
// 400, a missing key its 401.
func TestOllamaRealWorker(t *testing.T) {
	skipShort(t)
	model := chatModel(t)
	path := strings.TrimPrefix(model, "file:")
	const formatted = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nOnce upon a time<|im_end|>\n<|im_start|>assistant\n"
	f, err := gguf.Open(path)
	require.NoError(t, err)
	tok, err := tokenizer.FromGGUF(f)
	require.NoError(t, err)
	promptTokens := len(tok.Encode(formatted, true, true))
	f.Close()

	const token = "ollama-queen-token-0123456789"
	q, err := New(Config{Home: t.TempDir(), Binary: testutil.RbeeBinary(t), LocalHivePort: testutil.FreePort(t),
		LocalWorkerPortStart: testutil.FreePort(t), HiveRetryDelays: []time.Duration{0}, Token: token, LocalIdleTimeout: 7 * time.Minute})
	require.NoError(t, err)
	base := newHTTPTestServer(t, q)
	t.Cleanup(func() { assert.NoError(t, q.Close()) })
	client := ollamaClient(t, base, token)
	oai := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey(token), option.WithMaxRetries(0))
	ctx := t.Context()

	v, err := client.Version(ctx)
	require.NoError(t, err)
	assert.Equal(t, ollamaAPIVersion, v)

	// An empty prompt loads the model (a cold start: hive, worker, load).
	var loads []ollama.GenerateResponse
	require.NoError(t, client.Generate(ctx, &ollama.GenerateRequest{Model: model}, func(r ollama.GenerateResponse) error {
		loads = append(loads, r)
		return nil
	}))
	require.Len(t, loads, 1)
	assert.True(t, loads[0].Done)
	assert.Equal(t, "load", loads[0].DoneReason)
	assert.Equal(t, model, loads[0].Model)

	running, err := client.ListRunning(ctx)
	require.NoError(t, err)
	require.Len(t, running.Models, 1)
	assert.Equal(t, model, running.Models[0].Name)
	assert.Equal(t, "llama", running.Models[0].Details.Family)
	assert.Positive(t, running.Models[0].Size)
	assert.WithinDuration(t, time.Now().Add(7*time.Minute), running.Models[0].ExpiresAt, 30*time.Second,
		"an idle worker expires an idle timeout after its last activity")

	list, err := client.List(ctx)
	require.NoError(t, err)
	require.Len(t, list.Models, 1)
	m := list.Models[0]
	assert.Equal(t, model, m.Name)
	assert.Equal(t, model, m.Model)
	assert.Equal(t, "gguf", m.Details.Format)
	assert.Equal(t, "llama", m.Details.Family)
	assert.Equal(t, "Q8_0", m.Details.QuantizationLevel)
	assert.NotEmpty(t, m.Details.ParameterSize)
	assert.Positive(t, m.Size)

	show, err := client.Show(ctx, &ollama.ShowRequest{Model: model})
	require.NoError(t, err)
	assert.Contains(t, show.Template, "<|im_start|>")
	assert.Equal(t, "llama", show.ModelInfo["general.architecture"])
	assert.Contains(t, show.ModelInfo, "llama.context_length")
	assert.Contains(t, show.Modelfile, "FROM "+model)
	assert.Equal(t, "Q8_0", show.Details.QuantizationLevel)

	// The OpenAI chat route's answer at temperature 0.
	const maxTokens = 8
	oaiChat, err := oai.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model,
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Once upon a time")},
		Temperature: openai.Float(0), MaxTokens: openai.Int(maxTokens), Seed: openai.Int(1)})
	require.NoError(t, err)
	want := oaiChat.Choices[0].Message.Content
	require.NotEmpty(t, want)
	wantReason := map[string]string{"stop": "stop", "length": "length"}[oaiChat.Choices[0].FinishReason]
	options := map[string]any{"temperature": 0, "num_predict": maxTokens, "seed": 1}
	messages := []ollama.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Once upon a time"}}

	for _, stream := range []bool{true, false} {
		name := map[bool]string{true: "streamed", false: "whole"}[stream]
		t.Run("chat "+name, func(t *testing.T) {
			var text strings.Builder
			var last ollama.ChatResponse
			n := 0
			require.NoError(t, client.Chat(ctx, &ollama.ChatRequest{Model: model, Messages: messages, Options: options, Stream: &stream},
				func(r ollama.ChatResponse) error {
					n++
					assert.Equal(t, "assistant", r.Message.Role)
					text.WriteString(r.Message.Content)
					last = r
					return nil
				}))
			assert.Equal(t, want, text.String())
			if stream {
				assert.Greater(t, n, 1, "a token per object, then the last")
			} else {
				assert.Equal(t, 1, n)
			}
			assert.True(t, last.Done)
			assert.Equal(t, wantReason, last.DoneReason)
			assert.Equal(t, promptTokens, last.PromptEvalCount, "the worker formatted the chat with the model's template")
			assert.Equal(t, int(oaiChat.Usage.CompletionTokens), last.EvalCount)
			assert.Positive(t, last.TotalDuration)
			assert.GreaterOrEqual(t, last.TotalDuration, last.EvalDuration+last.PromptEvalDuration)
		})
		t.Run("generate "+name, func(t *testing.T) {
			var text strings.Builder
			var last ollama.GenerateResponse
			require.NoError(t, client.Generate(ctx, &ollama.GenerateRequest{Model: model, System: "Be brief.", Prompt: "Once upon a time",
				Options: options, Stream: &stream}, func(r ollama.GenerateResponse) error {
				text.WriteString(r.Response)
				last = r
				return nil
			}))
			assert.Equal(t, want, text.String(), "the prompt is the user's turn in the model's template")
			assert.True(t, last.Done)
			assert.Equal(t, promptTokens, last.PromptEvalCount)
		})
	}

	t.Run("raw generate", func(t *testing.T) {
		cmpl, err := oai.Completions.New(ctx, openai.CompletionNewParams{Model: openai.CompletionNewParamsModel(model),
			Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String(formatted)},
			Temperature: openai.Float(0), MaxTokens: openai.Int(maxTokens)})
		require.NoError(t, err)
		var text strings.Builder
		require.NoError(t, client.Generate(ctx, &ollama.GenerateRequest{Model: model, Prompt: formatted, Raw: true, Options: options},
			func(r ollama.GenerateResponse) error {
				text.WriteString(r.Response)
				return nil
			}))
		assert.Equal(t, cmpl.Choices[0].Text, text.String())
		assert.Equal(t, want, text.String())
	})

	t.Run("errors", func(t *testing.T) {
		for _, name := range []string{"llama3.2", "llama3.2:latest", "file:/nonexistent/model.gguf"} {
			err := client.Chat(ctx, &ollama.ChatRequest{Model: name, Messages: messages}, func(ollama.ChatResponse) error { return nil })
			e := statusError(t, err)
			assert.Equal(t, http.StatusNotFound, e.StatusCode, name)
			assert.NotEmpty(t, e.ErrorMessage, name)
		}
		_, err := client.Show(ctx, &ollama.ShowRequest{Model: "llama3.2"})
		assert.Equal(t, http.StatusNotFound, statusError(t, err).StatusCode)

		err = client.Generate(ctx, &ollama.GenerateRequest{Model: model, Prompt: "Describe this", Images: []ollama.ImageData{[]byte("\x89PNG")}},
			func(ollama.GenerateResponse) error { return nil })
		e := statusError(t, err)
		assert.Equal(t, http.StatusBadRequest, e.StatusCode)
		assert.Contains(t, e.ErrorMessage, "images")
		err = client.Chat(ctx, &ollama.ChatRequest{Model: model, Messages: []ollama.Message{{Role: "user", Content: "Hi",
			Images: []ollama.ImageData{[]byte("\x89PNG")}}}}, func(ollama.ChatResponse) error { return nil })
		assert.Equal(t, http.StatusBadRequest, statusError(t, err).StatusCode)

		_, err = client.Embed(ctx, &ollama.EmbedRequest{Model: model, Input: "Hi"})
		assert.Equal(t, http.StatusNotImplemented, statusError(t, err).StatusCode)

		_, err = ollamaClient(t, base, "").List(ctx)
		var auth ollama.AuthorizationError
		require.True(t, errors.As(err, &auth), "%v", err)
		assert.Equal(t, http.StatusUnauthorized, auth.StatusCode)
	})

	t.Run("keep_alive 0 unloads", func(t *testing.T) {
		require.NoError(t, client.Generate(ctx, &ollama.GenerateRequest{Model: model, KeepAlive: &ollama.Duration{Duration: 0}},
			func(r ollama.GenerateResponse) error {
				assert.Equal(t, "unload", r.DoneReason)
				return nil
			}))
		require.Eventually(t, func() bool {
			running, err := client.ListRunning(ctx)
			return err == nil && len(running.Models) == 0
		}, 15*time.Second, 100*time.Millisecond)
	})

	t.Run("delete", func(t *testing.T) {
		require.NoError(t, client.Delete(ctx, &ollama.DeleteRequest{Model: model}))
		list, err := client.List(ctx)
		require.NoError(t, err)
		assert.Empty(t, list.Models)
		assert.FileExists(t, path, "a file: model's file is the user's")
		err = client.Delete(ctx, &ollama.DeleteRequest{Model: model})
		assert.Equal(t, http.StatusNotFound, statusError(t, err).StatusCode)
	})
}

// TestOllamaPull pulls an hf: model from a fake hub through ollama's
// client: the stream reports the download's bytes and ends in success, and
// the model is in the catalog, listed in ollama's spelling of its name,
// which then works in Generate; pulling it again downloads nothing; an
// unknown repository is the client's 404.
func TestOllamaPull(t *testing.T) {
	skipShort(t)
	hub := hftest.New(t)
	t.Setenv("HF_ENDPOINT", hub.URL)
	t.Setenv("HF_TOKEN", "")
	const file = "tiny.Q8_0.gguf"
	size := int64(len(hub.File(hftest.RepoTiny, file)))
	q, err := New(Config{Home: t.TempDir(), Binary: testutil.RbeeBinary(t), LocalHivePort: testutil.FreePort(t),
		LocalWorkerPortStart: testutil.FreePort(t), HiveRetryDelays: []time.Duration{0}})
	require.NoError(t, err)
	base := newHTTPTestServer(t, q)
	t.Cleanup(func() { assert.NoError(t, q.Close()) })
	client := ollamaClient(t, base, "")
	ctx := t.Context()

	name := "hf.co/" + hftest.RepoTiny + ":Q8_0"
	var statuses []string
	var completed, total int64
	require.NoError(t, client.Pull(ctx, &ollama.PullRequest{Model: name}, func(p ollama.ProgressResponse) error {
		statuses = append(statuses, p.Status)
		if p.Total > 0 {
			assert.Equal(t, "hf:"+hftest.RepoTiny+":Q8_0", p.Digest)
			assert.GreaterOrEqual(t, p.Completed, completed, "progress only grows")
			completed, total = p.Completed, p.Total
		}
		return nil
	}))
	require.NotEmpty(t, statuses)
	assert.Equal(t, "pulling manifest", statuses[0])
	assert.Equal(t, "success", statuses[len(statuses)-1])
	assert.Equal(t, size, total, "progress reports the file's size")
	assert.Equal(t, size, completed, "and its bytes as they arrive")

	list, err := client.List(ctx)
	require.NoError(t, err)
	require.Len(t, list.Models, 1)
	assert.Equal(t, name, list.Models[0].Name)
	assert.Equal(t, size, list.Models[0].Size)
	assert.Equal(t, hub.SHA256(hftest.RepoTiny, file), list.Models[0].Digest)
	assert.Equal(t, "Q8_0", list.Models[0].Details.QuantizationLevel)

	transfers := len(hub.Transfers(hftest.RepoTiny, file))
	statuses = nil
	require.NoError(t, client.Pull(ctx, &ollama.PullRequest{Model: "hf:" + hftest.RepoTiny + ":Q8_0"}, func(p ollama.ProgressResponse) error {
		statuses = append(statuses, p.Status)
		return nil
	}))
	assert.Equal(t, "success", statuses[len(statuses)-1])
	assert.Len(t, hub.Transfers(hftest.RepoTiny, file), transfers, "a model in the catalog is not downloaded again")

	var text strings.Builder
	require.NoError(t, client.Generate(ctx, &ollama.GenerateRequest{Model: list.Models[0].Name, Prompt: "Once upon a time", Raw: true,
		Options: map[string]any{"temperature": 0, "num_predict": 4}}, func(r ollama.GenerateResponse) error {
		text.WriteString(r.Response)
		return nil
	}))
	assert.NotEmpty(t, text.String())
	assert.Len(t, hub.Transfers(hftest.RepoTiny, file), transfers, "the pulled model is used")

	err = client.Pull(ctx, &ollama.PullRequest{Model: "hf.co/rbee-test/no-such-GGUF:Q8_0"}, func(ollama.ProgressResponse) error { return nil })
	assert.Equal(t, http.StatusNotFound, statusError(t, err).StatusCode)

	require.NoError(t, client.Delete(ctx, &ollama.DeleteRequest{Model: name}))
	list, err = client.List(ctx)
	require.NoError(t, err)
	assert.Empty(t, list.Models)
}
