package api

import (
	"net/url"
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

func TestParseLogQuery(t *testing.T) {
	tests := []struct {
		query string
		want  LogQuery
		field string
	}{
		{"", LogQuery{Lines: DefaultLogLines}, ""},
		{"follow=true", LogQuery{Follow: true, Lines: DefaultLogLines}, ""},
		{"follow=1&lines=0", LogQuery{Follow: true}, ""},
		{"follow=false&lines=10000", LogQuery{Lines: MaxLogLines}, ""},
		{"follow=yes", LogQuery{}, "follow"},
		{"lines=-1", LogQuery{}, "lines"},
		{"lines=10001", LogQuery{}, "lines"},
		{"lines=1.5", LogQuery{}, "lines"},
		{"lines=ten", LogQuery{}, "lines"},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			v, err := url.ParseQuery(tc.query)
			require.NoError(t, err)
			got, e := ParseLogQuery(v)
			if tc.field != "" {
				require.NotNil(t, e)
				assert.Equal(t, CodeInvalidRequest, e.Code)
				assert.Equal(t, tc.field, e.Details["field"])
				return
			}
			require.Nil(t, e)
			assert.Equal(t, tc.want, got)
			again, e := ParseLogQuery(got.Values())
			require.Nil(t, e)
			assert.Equal(t, got, again, "Values round-trips")
		})
	}
}
