package grammar

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// byteVocab has one token per byte (id = byte) and an end token 256.
var byteVocab = NewVocab(257, func(id int) []byte {
	if id < 256 {
		return []byte{byte(id)}
	}
	return nil
}, func(id int) bool { return id == 256 })

// match feeds text and reports whether it was allowed and whether the
// value is then complete.
func match(g *Grammar, text string) (ok, complete bool) {
	m := g.NewMatcher(byteVocab)
	if !m.AcceptBytes([]byte(text)) {
		return false, false
	}
	return true, m.Complete()
}

func mustSchema(t testing.TB, schema string) *Grammar {
	t.Helper()
	g, err := CompileSchema(json.RawMessage(schema))
	require.NoError(t, err, schema)
	return g
}

type matchCase struct {
	text     string
	ok, done bool
}

func checkCases(t *testing.T, g *Grammar, cases []matchCase) {
	t.Helper()
	for _, c := range cases {
		ok, done := match(g, c.text)
		assert.Equal(t, c.ok, ok, "allowed: %q", c.text)
		assert.Equal(t, c.done, done, "complete: %q", c.text)
	}
}

func TestAnyJSON(t *testing.T) {
	checkCases(t, JSON(), []matchCase{
		{`{}`, true, true},
		{`[]`, true, true},
		{`"a"`, true, true},
		{`0`, true, true},
		{`-0`, true, true},
		{`123`, true, true},
		{`1.5e+10`, true, true},
		{`-2.25E-3`, true, true},
		{`true`, true, true},
		{`false`, true, true},
		{`null`, true, true},
		{`{"a":[1,2,{"b":null}],"c":"d"}`, true, true},
		{" \n{\"a\" : 1 ,\n  \"b\": [ true ] }", true, true},
		{`"\u00e9\n\"\\\/\b\f\r\t"`, true, true},
		{`"é日本🎉"`, true, true},
		{`"\uD7FF\uE000"`, true, true},
		// prefixes
		{`{"a":`, true, false},
		{`"abc`, true, false},
		{`-`, true, false},
		{`1.`, true, false},
		{`1e`, true, false},
		{`1e-`, true, false},
		{`tr`, true, false},
		{`[1,`, true, false},
		{"\"\xe6\x97", true, false},
		// refused
		{`01`, false, false},
		{`1.e5`, false, false},
		{`+1`, false, false},
		{`.5`, false, false},
		{`1e999`, false, false},
		{`{"a" 1}`, false, false},
		{`[1,]`, false, false},
		{`{,}`, false, false},
		{`{"a":1,}`, false, false},
		{`{"a":1}}`, false, false},
		{`{} `, false, false},
		{`tru e`, false, false},
		{`nul`, true, false},
		{`nulll`, false, false},
		{"\"\x01\"", false, false},
		{`"\q"`, false, false},
		{`"\ud800"`, false, false},
		{`"\uDBFF"`, false, false},
		{`"\u12g4"`, false, false},
		{"\"\xff\"", false, false},
		{"\"\xc0\x80\"", false, false},
		{"\"\xed\xa0\x80\"", false, false},
		{"\"\xf4\x90\x80\x80\"", false, false},
		{"\"\xe6\x97\"", false, false},
		{`{"a":1 "b":2}`, false, false},
		{strings.Repeat(" ", maxIndent) + "1", true, true},
		{strings.Repeat(" ", maxIndent+1) + "1", false, false},
		{"{\n" + strings.Repeat("\t", maxIndent) + `"a"` + " :\n  [1,\n    2\n  ]\n}", true, true},
		{" \t \n  1", true, true},
		{"[1,\n\n2]", false, false},
		{"[1,\r\n2]", false, false},
		{"[1\r]", false, false},
		{"1" + strings.Repeat("0", maxDigits-1), true, true},
		{"1" + strings.Repeat("0", maxDigits), false, false},
		{strings.Repeat("[", MaxNesting) + strings.Repeat("]", MaxNesting), true, true},
		{strings.Repeat("[", MaxNesting+1), false, false},
	})
}

func TestSchemaObject(t *testing.T) {
	g := mustSchema(t, `{"type":"object","properties":{
		"name":{"type":"string"},
		"age":{"type":"integer"},
		"tags":{"type":"array","items":{"type":"string"}},
		"ok":{"type":"boolean"}},
		"required":["name","ok"],"additionalProperties":false}`)
	checkCases(t, g, []matchCase{
		{`{"name":"x","ok":true}`, true, true},
		{`{"name":"x","age":3,"ok":false}`, true, true},
		{`{"name":"x","age":3,"tags":["a","b"],"ok":false}`, true, true},
		{`{ "name" : "x" , "tags" : [ ] , "ok" : true }`, true, true},
		{`{"name":"x"`, true, false},
		{`{"name":"x"}`, false, false},                   // ok is required
		{`{"ok":true}`, false, false},                    // name first, and required
		{`{"name":"x","ok":true,"age":3}`, false, false}, // properties in order
		{`{"name":1`, false, false},
		{`{"name":"x","age":3.5`, false, false}, // integer
		{`{"name":"x","age":-0,"ok":null`, false, false},
		{`{"nam":`, false, false},
		{`{"name":"x","extra":1`, false, false},
		{`{}`, false, false},
	})
}

func TestSchemaOptionalAndAdditional(t *testing.T) {
	g := mustSchema(t, `{"properties":{"a":{"type":"number"},"b":{"type":"null"}},"additionalProperties":{"type":"string"}}`)
	checkCases(t, g, []matchCase{
		{`{}`, true, true},
		{`{"b":null}`, true, true},
		{`{"a":1,"b":null,"c":"x","d":"y"}`, true, true},
		{`{"c":"x"}`, true, true},
		{`{"ab":"x"}`, true, true},
		{`{"c":1`, false, false},
		{`{"c":"x","a":1`, false, false}, // declared ones come first
		{`{"a":`, true, false},
		{`{"b":"x"`, false, false}, // a declared name keeps its schema
		{`{"c\n":"x"}`, false, false},
	})
	free := mustSchema(t, `{"type":"object"}`)
	checkCases(t, free, []matchCase{
		{`{"any\u0041":[1,{"x":null}]}`, true, true},
		{`[]`, false, false},
	})
}

func TestSchemaScalars(t *testing.T) {
	checkCases(t, mustSchema(t, `{"type":"string","minLength":2,"maxLength":3}`), []matchCase{
		{`"ab"`, true, true},
		{`"abc"`, true, true},
		{`"é🎉"`, true, true},
		{`"a\n"`, true, true},
		{`"a"`, false, false},
		{`"abcd`, false, false},
	})
	checkCases(t, mustSchema(t, `{"enum":["red","green",3,null,{"a":[1]}]}`), []matchCase{
		{`"red"`, true, true},
		{`"green"`, true, true},
		{`3`, true, true},
		{`null`, true, true},
		{`{"a":[1]}`, true, true},
		{`"blue"`, false, false},
		{`30`, false, false},
		{`"re`, true, false},
	})
	checkCases(t, mustSchema(t, `{"type":"string","enum":["a","b",1]}`), []matchCase{
		{`"a"`, true, true},
		{`1`, false, false},
	})
	checkCases(t, mustSchema(t, `{"const":"fixed"}`), []matchCase{
		{`"fixed"`, true, true},
		{`"fixe"`, false, false},
	})
	checkCases(t, mustSchema(t, `{"type":["integer","null"]}`), []matchCase{
		{`12`, true, true},
		{`null`, true, true},
		{`1.5`, false, false},
	})
	checkCases(t, mustSchema(t, `{"type":"number"}`), []matchCase{
		{`1.5`, true, true},
		{`-0.0e0`, true, true},
		{`"1"`, false, false},
	})
}

func TestSchemaArrays(t *testing.T) {
	checkCases(t, mustSchema(t, `{"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":2}`), []matchCase{
		{`[1]`, true, true},
		{`[1, 2]`, true, true},
		{`[]`, false, false},
		{`[1,2,`, false, false},
		{`[1,"a"]`, false, false},
	})
	checkCases(t, mustSchema(t, `{"type":"array","maxItems":0}`), []matchCase{
		{`[]`, true, true},
		{`[1`, false, false},
	})
}

func TestSchemaAnyOfRefs(t *testing.T) {
	g := mustSchema(t, `{
		"$defs":{
			"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"],"additionalProperties":false}
		},
		"$ref":"#/$defs/node"}`)
	checkCases(t, g, []matchCase{
		{`{"v":1,"next":null}`, true, true},
		{`{"v":1,"next":{"v":2,"next":{"v":3,"next":null}}}`, true, true},
		{`{"v":1,"next":{"v":2}}`, false, false},
		{`{"v":1,"next":"x"`, false, false},
	})
	ambiguous := mustSchema(t, `{"anyOf":[
		{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":false},
		{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"boolean"}},"required":["a","b"],"additionalProperties":false},
		{"type":"integer"},{"type":"number"}]}`)
	checkCases(t, ambiguous, []matchCase{
		{`{"a":1}`, true, true},
		{`{"a":"x","b":true}`, true, true},
		{`{"a":"x"}`, false, false},
		{`{"a":1,"b":true}`, false, false},
		{`7`, true, true},
		{`7.5`, true, true},
	})
	// Recursion through the root.
	checkCases(t, mustSchema(t, `{"type":"array","items":{"anyOf":[{"$ref":"#"},{"type":"integer"}]}}`), []matchCase{
		{`[[1,[2]],3]`, true, true},
		{`[[1,"x"]]`, false, false},
	})
	// allOf with one subschema.
	checkCases(t, mustSchema(t, `{"$defs":{"x":{"type":"boolean"}},"allOf":[{"$ref":"#/$defs/x"}],"description":"d"}`), []matchCase{
		{`true`, true, true},
		{`1`, false, false},
	})
}

func TestSchemaDropsWhatMatchesNothing(t *testing.T) {
	// The optional property b and the second alternative match nothing; the
	// matcher must never offer them.
	g := mustSchema(t, `{"type":"object","properties":{"a":{"type":"integer"},"b":{"enum":[]}},"additionalProperties":false}`)
	checkCases(t, g, []matchCase{
		{`{"a":1}`, true, true},
		{`{"b"`, false, false},
	})
	checkCases(t, mustSchema(t, `{"anyOf":[{"type":"string"},{"type":"string","minLength":3,"maxLength":2}]}`), []matchCase{
		{`"x"`, true, true},
	})
}

func TestSchemaErrors(t *testing.T) {
	cases := []struct{ schema, path, want string }{
		{`{"type":"string","pattern":"^a"}`, "/pattern", `"pattern" is not supported`},
		{`{"type":"object","properties":{"n":{"type":"integer","minimum":0}}}`, "/properties/n/minimum", `"minimum"`},
		{`{"oneOf":[{"type":"string"}]}`, "/oneOf", "oneOf"},
		{`{"not":{}}`, "/not", "not"},
		{`{"$ref":"other.json#/x"}`, "/$ref", "only references inside the schema"},
		{`{"$ref":"#/$defs/missing"}`, "/$ref", "nothing at"},
		{`false`, "", "no JSON value"},
		{`{"type":"object","required":["x"],"additionalProperties":false}`, "/required", `"x" is not declared`},
		{`{"type":"array","minItems":3,"maxItems":2}`, "", "no JSON value"},
		{`{"$defs":{"a":{"type":"object","properties":{"a":{"$ref":"#/$defs/a"}},"required":["a"]}},"$ref":"#/$defs/a"}`, "", "no JSON value"},
		{`{"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}`, "", "no JSON value"},
		{`{"type":"strin"}`, "/type", "unknown type"},
		{`{"type":"array","items":[{"type":"string"}]}`, "/items", "tuple"},
		{`{"minItems":-1}`, "/minItems", "non-negative integer"},
		{`{"required":"a"}`, "/required", "list of property names"},
		{`{"anyOf":[]}`, "/anyOf", "non-empty"},
		{`{"allOf":[{},{}]}`, "/allOf", "exactly one"},
		{`{"type":"string","uniqueItems":true}`, "/uniqueItems", "uniqueItems"},
		{`[1]`, "/", "must be an object or a boolean"},
		{`{"a":`, "", "not valid JSON"},
		{`{} {}`, "", "not valid JSON"},
		{`{"enum":[1,2],"type":"string"}`, "", "no JSON value"},
	}
	for _, c := range cases {
		_, err := CompileSchema(json.RawMessage(c.schema))
		var se *SchemaError
		if assert.True(t, errors.As(err, &se), c.schema) {
			assert.Contains(t, se.Error(), c.want, c.schema)
			if c.path != "" {
				assert.Equal(t, c.path, se.Path, c.schema)
			}
			ae := se.APIError("response_format")
			assert.Equal(t, "response_format", ae.Details["field"])
			assert.Equal(t, 400, ae.HTTPStatus())
		}
	}
}

func TestSchemaLimits(t *testing.T) {
	deep := strings.Repeat(`{"type":"array","items":`, MaxSchemaDepth+2) + `{}` + strings.Repeat(`}`, MaxSchemaDepth+2)
	_, err := CompileSchema(json.RawMessage(deep))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "deep")

	var many strings.Builder
	many.WriteString(`{"anyOf":[`)
	for i := range MaxSchemaNodes + 1 {
		if i > 0 {
			many.WriteByte(',')
		}
		many.WriteString(`{"type":"null"}`)
	}
	many.WriteString(`]}`)
	_, err = CompileSchema(json.RawMessage(many.String()))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "subschemas")
}

func TestPropertyOrderFollowsSchemaText(t *testing.T) {
	g := mustSchema(t, `{"type":"object","properties":{"z":{"type":"integer"},"a":{"type":"integer"}},"required":["z","a"]}`)
	checkCases(t, g, []matchCase{
		{`{"z":1,"a":2}`, true, true},
		{`{"a":2`, false, false},
	})
}

func TestEscapedPropertyNames(t *testing.T) {
	g := mustSchema(t, `{"type":"object","properties":{"say \"hi\"":{"type":"integer"},"é":{"const":true}},"required":["say \"hi\"","é"]}`)
	checkCases(t, g, []matchCase{
		{`{"say \"hi\"":1,"é":true}`, true, true},
		{`{"say "hi"":1`, false, false},
	})
}

// Alternatives that lead back to themselves must not branch exponentially.
func TestSelfReferentialAnyOfIsBounded(t *testing.T) {
	g := mustSchema(t, `{"anyOf":[{"$ref":"#"},{"$ref":"#"},{"anyOf":[{"$ref":"#"},{"type":"array","items":{"$ref":"#"}}]},{"type":"null"}]}`)
	checkCases(t, g, []matchCase{
		{`[[null,[]],null]`, true, true},
		{`[1]`, false, false},
	})
	var many strings.Builder
	many.WriteString(`{"anyOf":[`)
	for i := range 2000 {
		if i > 0 {
			many.WriteByte(',')
		}
		many.WriteString(`{"type":"array","items":{"$ref":"#"}}`)
	}
	many.WriteString(`,{"type":"null"}]}`)
	checkCases(t, mustSchema(t, many.String()), []matchCase{{`[[[null]]]`, true, true}})
}
