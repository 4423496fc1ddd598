package orchestrator

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/synth"
	"rbee/internal/testutil"
	"rbee/worker/engine"
)

// chatmlTemplate is a minimal chatml chat template with no tool format.
const chatmlTemplate = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}" +
	"{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// chatModel writes the tiny model with the chatml template and returns its
// reference (file: and the path).
func chatModel(t *testing.T) string {
	t.Helper()
	spec := synth.Tiny("Q8_0")
	spec.ChatTemplate = chatmlTemplate
	spec.SpecialTokens = []string{"<|im_start|>", "<|im_end|>"}
	path := filepath.Join(t.TempDir(), "chat.gguf")
	require.NoError(t, synth.Write(path, spec))
	return "file:" + path
}

// startSDKQueen starts an in-process queen on loopback and returns an
// official OpenAI client for it.
func startSDKQueen(t *testing.T) openai.Client {
	t.Helper()
	q, err := New(Config{Home: t.TempDir(), Binary: testutil.RbeeBinary(t), LocalHivePort: testutil.FreePort(t),
		LocalWorkerPortStart: testutil.FreePort(t), HiveRetryDelays: []time.Duration{0}})
	require.NoError(t, err)
	url := newHTTPTestServer(t, q)
	t.Cleanup(func() { assert.NoError(t, q.Close()) })
	return openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithMaxRetries(0))
}

// greedyLogprobs runs the engine directly on prompt, greedily for n
// tokens, and returns each chosen token with the log-softmax of the logits
// that chose it.
func greedyLogprobs(t *testing.T, path, prompt string, n int) (ids []int, lsm [][]float64, tok *engine.Tokenizer) {
	t.Helper()
	m, err := engine.Load(t.Context(), path, engine.Options{Threads: 1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	tok = m.Tokenizer()
	s := m.NewSession()
	logits, err := s.Eval(t.Context(), tok.Encode(prompt, true, true))
	require.NoError(t, err)
	for range n {
		row := engine.LogSoftmax(logits)
		id := 0
		for i, v := range row {
			if v > row[id] {
				id = i
			}
		}
		if tok.IsEOG(id) {
			break
		}
		ids, lsm = append(ids, id), append(lsm, row)
		logits, err = s.Eval(t.Context(), []int{id})
		require.NoError(t, err)
	}
	return ids, lsm, tok
}

// TestOpenAILogprobs asks a real queen and worker for log-probabilities
// through OpenAI's Go client, on chat and legacy completions, streamed and
// not: the chosen tokens' logprobs equal the engine's log-softmax of its
// own logits (computed here from the engine directly on the same prompt),
// top_logprobs are sorted, at most N and start with the greedy choice, and
// the streamed entries equal the non-streamed ones; presence and
// frequency penalties give the reply the engine gives with them; bad
// values are 400s naming the field.
func TestOpenAILogprobs(t *testing.T) {
	skipShort(t)
	model := chatModel(t)
	path := strings.TrimPrefix(model, "file:")
	client := startSDKQueen(t)
	ctx := t.Context()

	const formatted = "<|im_start|>user\nOnce upon a time<|im_end|>\n<|im_start|>assistant\n"
	const maxTokens = 6
	ids, lsm, tok := greedyLogprobs(t, path, formatted, maxTokens)
	require.NotEmpty(t, ids)

	// check compares entries (token text, logprob, top list) with the engine.
	type entry struct {
		token   string
		bytes   []byte
		logprob float64
		top     []float64
		topText []string
	}
	check := func(t *testing.T, got []entry, n int) {
		t.Helper()
		require.Len(t, got, len(ids))
		for i, e := range got {
			assert.Equal(t, strings.ToValidUTF8(string(tok.Piece(ids[i])), "\uFFFD"), e.token, "token %d", i)
			if e.bytes != nil {
				assert.Equal(t, tok.Piece(ids[i]), e.bytes, "token %d: exact bytes", i)
			}
			assert.InDelta(t, lsm[i][ids[i]], e.logprob, 1e-3, "token %d: the engine's log-softmax", i)
			assert.LessOrEqual(t, e.logprob, 0.0)
			require.LessOrEqual(t, len(e.top), n)
			require.Len(t, e.top, n, "the vocabulary has more than %d tokens", n)
			assert.InDelta(t, e.logprob, e.top[0], 1e-9, "greedy: the chosen token is the most likely")
			for j := 1; j < len(e.top); j++ {
				assert.GreaterOrEqual(t, e.top[j-1], e.top[j], "token %d: top_logprobs sorted", i)
			}
		}
	}

	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Once upon a time")}
	params := openai.ChatCompletionNewParams{Model: model, Messages: msgs, MaxTokens: openai.Int(int64(len(ids))),
		Temperature: openai.Float(0), Logprobs: openai.Bool(true), TopLogprobs: openai.Int(3)}
	var chat []entry
	t.Run("chat", func(t *testing.T) {
		resp, err := client.Chat.Completions.New(ctx, params)
		require.NoError(t, err)
		require.Len(t, resp.Choices, 1)
		var text []byte
		for _, c := range resp.Choices[0].Logprobs.Content {
			e := entry{token: c.Token, bytes: int64sToBytes(c.Bytes), logprob: c.Logprob}
			for _, tl := range c.TopLogprobs {
				e.top = append(e.top, tl.Logprob)
				e.topText = append(e.topText, tl.Token)
			}
			chat = append(chat, e)
			text = append(text, e.bytes...)
		}
		check(t, chat, 3)
		assert.Equal(t, resp.Choices[0].Message.Content, strings.ToValidUTF8(string(text), "\uFFFD"), "the tokens' bytes spell the reply")
	})

	t.Run("chat stream", func(t *testing.T) {
		stream := client.Chat.Completions.NewStreaming(ctx, params)
		var got []entry
		for stream.Next() {
			c := stream.Current()
			if len(c.Choices) == 0 {
				continue
			}
			for _, lp := range c.Choices[0].Logprobs.Content {
				e := entry{token: lp.Token, bytes: int64sToBytes(lp.Bytes), logprob: lp.Logprob}
				for _, tl := range lp.TopLogprobs {
					e.top = append(e.top, tl.Logprob)
					e.topText = append(e.topText, tl.Token)
				}
				got = append(got, e)
			}
		}
		require.NoError(t, stream.Err())
		check(t, got, 3)
		if chat != nil {
			assert.Equal(t, chat, got, "streamed logprobs equal the non-streamed ones")
		}
	})

	t.Run("completion", func(t *testing.T) {
		cp := openai.CompletionNewParams{Model: openai.CompletionNewParamsModel(model),
			Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String(formatted)},
			MaxTokens: openai.Int(int64(len(ids))), Temperature: openai.Float(0), Logprobs: openai.Int(2)}
		resp, err := client.Completions.New(ctx, cp)
		require.NoError(t, err)
		require.Len(t, resp.Choices, 1)
		lp := resp.Choices[0].Logprobs
		var got []entry
		for i, tk := range lp.Tokens {
			e := entry{token: tk, logprob: lp.TokenLogprobs[i]}
			for _, v := range lp.TopLogprobs[i] {
				e.top = append(e.top, v)
			}
			// a map has no order: sort the values for the check
			sortDesc(e.top)
			got = append(got, e)
		}
		check(t, got, 2)
		require.Len(t, lp.TextOffset, len(ids))
		text := resp.Choices[0].Text
		for i, off := range lp.TextOffset {
			assert.LessOrEqual(t, int(off), len(text), "token %d at offset %d", i, off)
			if i > 0 {
				assert.GreaterOrEqual(t, off, lp.TextOffset[i-1])
			}
		}

		stream := client.Completions.NewStreaming(ctx, cp)
		var streamed []string
		var offsets []int64
		for stream.Next() {
			c := stream.Current()
			if len(c.Choices) == 0 {
				continue
			}
			streamed = append(streamed, c.Choices[0].Logprobs.Tokens...)
			offsets = append(offsets, c.Choices[0].Logprobs.TextOffset...)
		}
		require.NoError(t, stream.Err())
		assert.Equal(t, lp.Tokens, streamed)
		assert.Equal(t, lp.TextOffset, offsets)
	})

	t.Run("penalties reach the engine", func(t *testing.T) {
		m, err := engine.Load(ctx, path, engine.Options{Threads: 1})
		require.NoError(t, err)
		defer m.Close()
		gen := func(pp, fp float32) string {
			res, err := m.NewSession().Generate(ctx, engine.Request{Prompt: formatted, MaxTokens: 24,
				Sampling: engine.Sampling{PresencePenalty: pp, FrequencyPenalty: fp}}, func(engine.Token) error { return nil })
			require.NoError(t, err)
			return res.Text
		}
		plain, penalized := gen(0, 0), gen(1.5, 2)
		require.NotEqual(t, plain, penalized, "the penalties change this greedy reply (else this test proves nothing)")
		resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, Messages: msgs,
			MaxTokens: openai.Int(24), Temperature: openai.Float(0), PresencePenalty: openai.Float(1.5), FrequencyPenalty: openai.Float(2)})
		require.NoError(t, err)
		assert.Equal(t, penalized, resp.Choices[0].Message.Content)
	})

	t.Run("bad values", func(t *testing.T) {
		for name, p := range map[string]openai.ChatCompletionNewParams{
			"top_logprobs 21":               {Model: model, Messages: msgs, Logprobs: openai.Bool(true), TopLogprobs: openai.Int(21)},
			"top_logprobs without logprobs": {Model: model, Messages: msgs, TopLogprobs: openai.Int(2)},
			"presence_penalty 2.5":          {Model: model, Messages: msgs, PresencePenalty: openai.Float(2.5)},
			"frequency_penalty -3":          {Model: model, Messages: msgs, FrequencyPenalty: openai.Float(-3)},
			"n 2":                           {Model: model, Messages: msgs, N: openai.Int(2)},
		} {
			_, err := client.Chat.Completions.New(ctx, p)
			e := sdkAPIError(t, err)
			assert.Equal(t, http.StatusBadRequest, e.StatusCode, name)
			assert.Equal(t, "invalid_request", e.Code, name)
			assert.NotEmpty(t, e.Param, name)
		}
		_, err := client.Completions.New(ctx, openai.CompletionNewParams{Model: openai.CompletionNewParamsModel(model),
			Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")}, Logprobs: openai.Int(21)})
		e := sdkAPIError(t, err)
		assert.Equal(t, http.StatusBadRequest, e.StatusCode)
		assert.Equal(t, "logprobs", e.Param)
	})
}

func int64sToBytes(v []int64) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

func sortDesc(v []float64) {
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j] > v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
}
