package orchestrator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/testutil"
)

// formatSchema uses most of what structured output supports: required and
// optional properties, a nested object, an enum, an array with bounds,
// anyOf with null, a string length and a $ref.
const formatSchema = `{
  "$defs": {"point": {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "number"}},
                      "required": ["x", "y"], "additionalProperties": false}},
  "type": "object",
  "properties": {
    "name": {"type": "string", "maxLength": 12},
    "kind": {"enum": ["cat", "dog", "fox"]},
    "alive": {"type": "boolean"},
    "where": {"$ref": "#/$defs/point"},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
    "owner": {"anyOf": [{"type": "string", "maxLength": 8}, {"type": "null"}]}
  },
  "required": ["name", "kind", "alive", "where"],
  "additionalProperties": false
}`

// TestOpenAIResponseFormat drives a real queen, hive and worker (a tiny
// random-weights chat model) through OpenAI's official Go client: with a
// json_schema response format, 20 seeds at temperature 1 each give JSON that
// a JSON Schema validator accepts; json_object gives valid JSON; streamed
// equals non-streamed at temperature 0; a schema the grammar cannot enforce
// is the SDK's 400 naming response_format.
func TestOpenAIResponseFormat(t *testing.T) {
	skipShort(t)
	model := chatModel(t)

	const token = "format-queen-token-0123456789"
	q, err := New(Config{Home: t.TempDir(), Binary: testutil.RbeeBinary(t), LocalHivePort: testutil.FreePort(t),
		LocalWorkerPortStart: testutil.FreePort(t), HiveRetryDelays: []time.Duration{0}, Token: token})
	require.NoError(t, err)
	url := newHTTPTestServer(t, q)
	t.Cleanup(func() { assert.NoError(t, q.Close()) })
	client := openai.NewClient(option.WithBaseURL(url+"/v1/"), option.WithAPIKey(token), option.WithMaxRetries(0))
	ctx := t.Context()

	var schemaDoc any
	require.NoError(t, json.Unmarshal([]byte(formatSchema), &schemaDoc))
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(formatSchema))
	require.NoError(t, err)
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource("schema.json", doc))
	validator, err := c.Compile("schema.json")
	require.NoError(t, err)

	schemaFormat := openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
		JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "animal", Schema: schemaDoc, Strict: openai.Bool(true)}}}
	messages := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Describe an animal as JSON.")}

	t.Run("json_schema, 20 seeds at temperature 1", func(t *testing.T) {
		for seed := range int64(20) {
			resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, Messages: messages,
				MaxTokens: openai.Int(400), Temperature: openai.Float(1), Seed: openai.Int(seed), ResponseFormat: schemaFormat})
			require.NoError(t, err)
			require.Len(t, resp.Choices, 1)
			content := resp.Choices[0].Message.Content
			require.Equal(t, "stop", resp.Choices[0].FinishReason, "seed %d: %q", seed, content)
			v, err := jsonschema.UnmarshalJSON(strings.NewReader(content))
			require.NoError(t, err, "seed %d: %q", seed, content)
			assert.NoError(t, validator.Validate(v), "seed %d: %q", seed, content)
		}
	})

	t.Run("json_object", func(t *testing.T) {
		for seed := range int64(5) {
			resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, Messages: messages,
				MaxTokens: openai.Int(400), Temperature: openai.Float(1), Seed: openai.Int(seed),
				ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}}})
			require.NoError(t, err)
			content := resp.Choices[0].Message.Content
			switch resp.Choices[0].FinishReason {
			case "stop":
				assert.True(t, json.Valid([]byte(content)), "seed %d: %q", seed, content)
			case "length":
				// A value still open at max_tokens: cut short, and said so.
			default:
				t.Fatalf("seed %d: finish reason %q", seed, resp.Choices[0].FinishReason)
			}
		}
	})

	t.Run("streamed equals non-streamed at temperature 0", func(t *testing.T) {
		params := openai.ChatCompletionNewParams{Model: model, Messages: messages, MaxTokens: openai.Int(400),
			Temperature: openai.Float(0), Seed: openai.Int(3), ResponseFormat: schemaFormat}
		resp, err := client.Chat.Completions.New(ctx, params)
		require.NoError(t, err)
		want := resp.Choices[0].Message.Content
		stream := client.Chat.Completions.NewStreaming(ctx, params)
		var b strings.Builder
		finish := ""
		for stream.Next() {
			ch := stream.Current()
			if len(ch.Choices) > 0 {
				b.WriteString(ch.Choices[0].Delta.Content)
				if ch.Choices[0].FinishReason != "" {
					finish = ch.Choices[0].FinishReason
				}
			}
		}
		require.NoError(t, stream.Err())
		assert.Equal(t, want, b.String())
		assert.Equal(t, "stop", finish)
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(want))
		require.NoError(t, err, want)
		assert.NoError(t, validator.Validate(v))
	})

	t.Run("unsupported schema", func(t *testing.T) {
		for i, schema := range []string{
			`{"type":"string","pattern":"^a+$"}`,
			`{"type":"object","properties":{"n":{"type":"integer","minimum":1}}}`,
			`{"type":"object","required":["x"],"additionalProperties":false}`,
		} {
			var s any
			require.NoError(t, json.Unmarshal([]byte(schema), &s))
			_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, Messages: messages,
				ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
					JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: fmt.Sprint("s", i), Schema: s}}}})
			e := sdkAPIError(t, err)
			assert.Equal(t, http.StatusBadRequest, e.StatusCode, schema)
			assert.Equal(t, "response_format", e.Param, schema)
			assert.Equal(t, "invalid_request_error", e.Type, schema)
		}
	})
}
