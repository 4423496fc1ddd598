package grammar

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
)

func TestCompileToolCalls(t *testing.T) {
	tools := []api.Tool{
		{Type: "function", Function: api.ToolFunction{Name: "get_weather", Parameters: json.RawMessage(
			`{"type":"object","properties":{"city":{"type":"string"},"unit":{"$ref":"#/$defs/unit"}},"required":["city"],"$defs":{"unit":{"enum":["c","f"]}}}`)}},
		{Type: "function", Function: api.ToolFunction{Name: "now"}},
	}
	g, err := CompileToolCalls(tools, "arguments")
	require.NoError(t, err)
	checkCases(t, g, []matchCase{
		{`{"name":"get_weather","arguments":{"city":"Oslo","unit":"c"}}`, true, true},
		{`{"name": "now", "arguments": {}}`, true, true},
		{`{"name":"now","arguments":{"tz":"UTC"}}`, true, true},
		{`{"name":"get_weather","arguments":{}}`, false, false},
		{`{"name":"later"`, false, false},
		{`{"arguments":{}`, false, false},
	})
	_, err = CompileToolCalls([]api.Tool{{Function: api.ToolFunction{Name: "f", Parameters: json.RawMessage(`{"not":{}}`)}}}, "parameters")
	var se *SchemaError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "/tools/0/function/parameters/not", se.Path)
	_, err = CompileToolCalls(nil, "arguments")
	require.Error(t, err)
}
