package api

import (
	"bytes"
	"encoding/json"
)

// Format constrains what a generation may produce. A nil *Format means
// free text. The worker compiles it into a grammar that masks the tokens the
// sampler may choose, so the output always parses.
type Format struct {
	// Type is FormatJSON (any JSON value) or FormatJSONSchema (a value
	// valid against Schema).
	Type string `json:"type"`
	// Schema is the JSON schema of a FormatJSONSchema format.
	Schema json.RawMessage `json:"schema,omitempty"`
}

// Validate checks the shape of a format (nil is valid: free text). Whether
// the schema can be enforced is the worker's question: it compiles it and
// answers INVALID_REQUEST for the field "format" when it cannot.
func (f *Format) Validate() *Error {
	if f == nil {
		return nil
	}
	switch f.Type {
	case FormatJSON:
		return nil
	case FormatJSONSchema:
		if len(bytes.TrimSpace(f.Schema)) == 0 || string(bytes.TrimSpace(f.Schema)) == "null" {
			return InvalidField("format", "a json_schema format needs a schema").
				WithHint(`send {"type":"json_schema","schema":{…}}`)
		}
		if !json.Valid(f.Schema) {
			return InvalidField("format", "the schema is not valid JSON")
		}
		return nil
	}
	return InvalidField("format", "the format type must be %q or %q", FormatJSON, FormatJSONSchema)
}

// Format types.
const (
	FormatJSON       = "json"
	FormatJSONSchema = "json_schema"
)

// Tool is a function the model may call, described the way OpenAI's and
// ollama's APIs describe one.
type Tool struct {
	Type     string       `json:"type"` // "function"
	Function ToolFunction `json:"function"`
}

// ToolFunction names a callable function and the JSON schema of its
// arguments.
type ToolFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

// ToolCall is one call the model made: in an assistant message, and in the
// Done of a generation that ended with calls.
type ToolCall struct {
	ID       string `json:"id,omitempty"`
	Type     string `json:"type"` // "function"
	Function struct {
		Name string `json:"name"`
		// Arguments is the call's arguments as a JSON object.
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

// TokenLogprob is the log-probability of one token: the chosen one, or one
// of the most likely alternatives at that position.
type TokenLogprob struct {
	Token   string  `json:"token"`
	ID      int     `json:"id"`
	Logprob float64 `json:"logprob"`
	// Bytes holds the token's text exactly when it is not valid UTF-8 (a
	// byte token, part of a character), which Token cannot carry in JSON.
	Bytes []byte `json:"bytes,omitempty"`
}
