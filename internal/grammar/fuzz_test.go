package grammar

import (
	"encoding/json"
	"testing"
)

// FuzzCompileSchema: any JSON as a schema compiles to a grammar or fails
// with a *SchemaError, never a panic or a hang; a grammar then matches
// bytes without panicking.
func FuzzCompileSchema(f *testing.F) {
	for _, s := range []string{
		docSchema, `{}`, `true`, `false`, `{"type":"string","pattern":"a"}`,
		`{"anyOf":[{"$ref":"#"},{"type":"null"}]}`, `{"$ref":"#"}`,
		`{"type":["object","array"],"items":{"$ref":"#"},"additionalProperties":{"$ref":"#"}}`,
		`{"enum":[1,"a",null,[{}]],"const":1}`, `{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}`,
		`{"properties":{"a":{"allOf":[{"type":"integer"}]}},"required":["a","b"]}`,
	} {
		f.Add([]byte(s), []byte(`{"a":1,"b":[true,"x"]}`))
	}
	f.Fuzz(func(t *testing.T, schema, text []byte) {
		if !json.Valid(schema) {
			return
		}
		g, err := CompileSchema(schema)
		if err != nil {
			if _, ok := err.(*SchemaError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		m := g.NewMatcher(byteVocab)
		for i := range text {
			if !m.AcceptBytes(text[i : i+1]) {
				break
			}
		}
		_ = m.Complete()
		_ = m.AllowedCount()
	})
}

// FuzzMatcher: random bytes against the any-JSON grammar and a schema; the
// matcher accepts exactly the prefixes of JSON that encoding/json calls
// valid once complete, and never panics.
func FuzzMatcher(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5e3,"x\u00e9"]}`, "\"\xe2\x82\xac\"", `[[[]]]`, `-0.0`, `nul`, `{"a" :1}`} {
		f.Add([]byte(s))
	}
	schema := mustSchema(f, docSchema)
	anyJSON := JSON()
	f.Fuzz(func(t *testing.T, text []byte) {
		for _, g := range []*Grammar{anyJSON, schema} {
			m := g.NewMatcher(byteVocab)
			ok := m.AcceptBytes(text)
			if g == anyJSON && ok && m.Complete() && !json.Valid(text) {
				t.Fatalf("accepted invalid JSON %q", text)
			}
			if ok && m.Complete() {
				var v any
				if err := json.Unmarshal(text, &v); err != nil {
					t.Fatalf("accepted %q, which does not parse: %v", text, err)
				}
			}
			_ = m.AllowedCount()
		}
	})
}
