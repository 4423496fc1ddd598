package rbee_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee"
	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

func logEvent(source, line string) api.Event {
	return api.Event{Kind: api.KindLog, Log: &api.LogLine{Node: "local", Source: source, Line: line}}
}

func collectLogs(seq func(func(rbee.LogLine, error) bool)) ([]string, []error) {
	var lines []string
	var errs []error
	for l, err := range seq {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		lines = append(lines, l.Source+": "+l.Line)
	}
	return lines, errs
}

func TestLogs(t *testing.T) {
	tests := []struct {
		name    string
		events  []api.Event
		end     func(*sse.Writer)
		want    []string
		wantErr error
	}{
		{"lines then the end", []api.Event{logEvent("hive", "a"), logEvent("w-1", "b")}, closeStream, []string{"hive: a", "w-1: b"}, nil},
		{"no lines", nil, closeStream, nil, nil},
		{"an error event", []api.Event{logEvent("hive", "a")},
			func(s *sse.Writer) { _ = s.Error(api.Errorf(api.CodeConnectionTimeout, "lost contact")) },
			[]string{"hive: a"}, rbee.ErrConnectionTimeout},
		{"a stream cut short", []api.Event{logEvent("hive", "a")}, func(*sse.Writer) {}, []string{"hive: a"}, rbee.ErrStreamClosed},
		{"other events are skipped", []api.Event{api.NarrationEvent(api.ActorQueen, "x", "hello"), logEvent("hive", "a")}, closeStream,
			[]string{"hive: a"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, c := newFakeQueen(t, func(w http.ResponseWriter, r *http.Request) {
				s := sse.NewWriter(w)
				for _, ev := range tc.events {
					_ = s.Send(ev)
				}
				tc.end(s)
			})
			lines, errs := collectLogs(c.Logs(t.Context(), "local", false, 25))
			assert.Equal(t, tc.want, lines)
			if tc.wantErr == nil {
				assert.Empty(t, errs)
			} else {
				require.Len(t, errs, 1)
				assert.ErrorIs(t, errs[0], tc.wantErr)
			}
			req := f.last()
			assert.Equal(t, "GET /v2/logs", req.Method+" "+req.Path)
			q, err := url.ParseQuery(req.Query)
			require.NoError(t, err)
			assert.Equal(t, url.Values{"node": {"local"}, "follow": {"false"}, "lines": {"25"}}, q)
			assert.Equal(t, "Bearer secret-token-0123456789", req.Auth)
		})
	}
}

func TestLogsRefused(t *testing.T) {
	f, c := newFakeQueen(t, func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteError(w, r, api.Errorf(api.CodeNodeNotFound, "node mac is not registered"))
	})
	_, errs := collectLogs(c.Logs(t.Context(), "mac", true, 0))
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], rbee.ErrNodeNotFound)

	for _, tc := range []struct {
		node  string
		lines int
		field string
	}{{"Bad_Node", 1, "node"}, {"", 1, "node"}, {"local", -1, "lines"}, {"local", rbee.MaxLogLines + 1, "lines"}} {
		before := f.last()
		_, errs := collectLogs(c.Logs(t.Context(), tc.node, false, tc.lines))
		require.Len(t, errs, 1)
		var e *rbee.Error
		require.ErrorAs(t, errs[0], &e)
		assert.Equal(t, api.CodeInvalidRequest, e.Code)
		assert.Equal(t, tc.field, e.Details["field"])
		assert.Equal(t, before, f.last(), "nothing is sent")
	}
}

func TestLogsFollowUntilCancel(t *testing.T) {
	gone := make(chan struct{})
	f, c := newFakeQueen(t, func(w http.ResponseWriter, r *http.Request) {
		s := sse.NewWriter(w)
		for i := 0; ; i++ {
			if s.Send(logEvent("hive", "line")) != nil {
				break
			}
			select {
			case <-r.Context().Done():
				close(gone)
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		close(gone)
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var n int
	var errs []error
	for _, err := range c.Logs(ctx, "local", true, 10) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if n++; n == 3 {
			cancel()
		}
	}
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], context.Canceled)
	assert.Contains(t, f.last().Query, "follow=true")
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the queen did not see the client go away")
	}
}
