package api

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLogEvent(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 8e6, time.UTC)
	tests := []struct {
		name string
		line LogLine
		json string
	}{
		{"with time", LogLine{Node: "mac", Source: "w-1", Line: "loaded", Time: at},
			`{"node":"mac","source":"w-1","line":"loaded","time":"2025-03-04T05:06:07.008Z"}`},
		{"without time", LogLine{Source: SourceHive, Line: "plain text"}, `{"source":"hive","line":"plain text"}`},
		{"empty line", LogLine{Source: SourceHive}, `{"source":"hive","line":""}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := Event{Kind: KindLog, Log: &tc.line}
			data, err := ev.MarshalData()
			require.NoError(t, err)
			assert.JSONEq(t, tc.json, string(data))
			for _, kind := range []string{"log", ""} {
				got, err := ParseEvent(kind, data)
				require.NoError(t, err, "kind %q", kind)
				assert.Equal(t, KindLog, got.Kind)
				require.NotNil(t, got.Log)
				assert.True(t, tc.line.Time.Equal(got.Log.Time))
				got.Log.Time = tc.line.Time
				assert.Equal(t, tc.line, *got.Log)
			}
		})
	}
	_, err := ParseEvent("log", []byte(`{"source":1}`))
	assert.Error(t, err, "a malformed log event is an error")
}
