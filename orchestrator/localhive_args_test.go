package orchestrator

import (
	"bytes"
	"testing"
	"time"

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

// The busy-worker policy of DESIGN §8 (EC6): retries after 1, 2 and 4 s.
// The end-to-end test S35 runs it with shorter delays of the same shape.
func TestDefaultBusyPolicy(t *testing.T) {
	cfg, err := Config{Home: t.TempDir(), Binary: "/bin/true"}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, cfg.BusyRetryDelays)
}
