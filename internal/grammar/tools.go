package grammar

import (
	"bytes"
	"errors"
	"fmt"

	"rbee/api"
)

// CompileToolCalls compiles the grammar of one call of any of tools: a JSON
// object {"name": NAME, ARGS: ARGUMENTS} with exactly those two properties
// in that order, where NAME is one of the functions' names and ARGUMENTS is
// valid against that function's parameters schema (any object when it has
// none). argsKey names the arguments property as the chat template writes
// it: "arguments" (Hermes, Qwen 2.5, Mistral) or "parameters" (Llama 3.1).
// Each function's schema is compiled on its own, so its $refs resolve
// against its own root. A schema that cannot be enforced fails with a
// *SchemaError whose path starts with /tools/I/function/parameters.
//
// For tool_choice "required" pass every tool; for a named function, only
// that one.
func CompileToolCalls(tools []api.Tool, argsKey string) (*Grammar, error) {
	if len(tools) == 0 {
		return nil, &SchemaError{Message: "no tools to call", Hint: "declare at least one function in tools"}
	}
	if argsKey == "" || argsKey == "name" {
		return nil, fmt.Errorf("grammar: the arguments key must be set and differ from \"name\"")
	}
	root := &node{kind: kAnyOf, sat: true}
	for i, t := range tools {
		params := bytes.TrimSpace(t.Function.Parameters)
		if len(params) == 0 || string(params) == "null" {
			params = []byte(`{"type":"object"}`)
		}
		args, err := CompileSchema(params)
		if err != nil {
			var se *SchemaError
			if errors.As(err, &se) {
				p := *se
				p.Path = fmt.Sprintf("/tools/%d/function/parameters%s", i, se.Path)
				return nil, &p
			}
			return nil, err
		}
		name, err := encodeCompact(t.Function.Name)
		if err != nil || t.Function.Name == "" {
			return nil, &SchemaError{Path: fmt.Sprintf("/tools/%d/function/name", i), Message: "a function needs a name"}
		}
		call := &node{kind: kObject, sat: true, maxItems: -1, maxLen: -1, props: []prop{
			{name: "name", schema: &node{kind: kLiteral, sat: true, lits: newTrie([]string{name})}, required: true},
			{name: argsKey, schema: args.root, required: true},
		}}
		call.buildKeys()
		root.alts = append(root.alts, call)
	}
	return &Grammar{root: root}, nil
}
