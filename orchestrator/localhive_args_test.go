package orchestrator

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The hidden --local-fake-devices flag reaches the local hive's command
// line as --fake-devices (S38 runs the whole path through the binary).
func TestParseArgsLocalFakeDevices(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"absent", nil, nil},
		{"separate value", []string{"--local-fake-devices", "cuda:0:1"}, []string{"--fake-devices", "cuda:0:1"}},
		{"joined value", []string{"--local-fake-devices=cuda:0:1024,cuda:1:8"}, []string{"--fake-devices", "cuda:0:1024,cuda:1:8"}},
		{"empty", []string{"--local-fake-devices="}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := parseArgs(tc.args, &bytes.Buffer{}, noEnv)
			require.NoError(t, err)
			assert.Equal(t, tc.want, cfg.localHiveArgs)
		})
	}
	var out bytes.Buffer
	_, _, _ = parseArgs([]string{"--help"}, &out, noEnv)
	assert.NotContains(t, out.String(), "fake-devices", "a test flag stays out of --help")
}
