package pool

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/paths"
	"rbee/internal/sse"
)

// logStream is a GET /v1/logs stream read in the background.
type logStream struct {
	events chan api.Event
	ended  chan error // nil: [DONE]; else why the stream broke
	cancel context.CancelFunc
}

func openLogs(t *testing.T, th *testHive, query string) *logStream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	resp, err := th.client.Stream(ctx, http.MethodGet, "/v1/logs"+query, nil, nil)
	require.NoError(t, err)
	s := &logStream{events: make(chan api.Event, 1000), ended: make(chan error, 1), cancel: cancel}
	go func() {
		defer resp.Body.Close()
		for ev, err := range sse.Read(resp.Body) {
			if err != nil {
				s.ended <- err
				return
			}
			s.events <- ev
		}
		s.ended <- nil
	}()
	t.Cleanup(cancel)
	return s
}

// lines collects the stream's log events until it ends.
func (s *logStream) all(t *testing.T) []api.LogLine {
	t.Helper()
	var out []api.LogLine
	for {
		select {
		case ev := <-s.events:
			require.Equal(t, api.KindLog, ev.Kind)
			out = append(out, *ev.Log)
		case err := <-s.ended:
			require.NoError(t, err, "the stream ends with [DONE]")
			for len(s.events) > 0 {
				out = append(out, *(<-s.events).Log)
			}
			return out
		case <-time.After(10 * time.Second):
			t.Fatal("the log stream did not end")
		}
	}
}

// next waits for the next log event whose line contains want; events
// before it are returned too.
func (s *logStream) next(t *testing.T, want string) (api.LogLine, []api.LogLine) {
	t.Helper()
	var skipped []api.LogLine
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-s.events:
			require.Equal(t, api.KindLog, ev.Kind)
			if strings.Contains(ev.Log.Line, want) {
				return *ev.Log, skipped
			}
			skipped = append(skipped, *ev.Log)
		case err := <-s.ended:
			t.Fatalf("the stream ended (%v) before a line with %q; got %v", err, want, skipped)
		case <-timeout:
			t.Fatalf("no line with %q within 10 s; got %v", want, skipped)
		}
	}
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	_, err = f.WriteString(text)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

func texts(ls []api.LogLine) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Source + ": " + l.Line
	}
	return out
}

// stamp is a log line as hclog writes it, s seconds into 2025-01-02 10:00.
func stamp(s int, msg string) string {
	at := time.Date(2025, 1, 2, 10, 0, s, 0, time.UTC)
	return at.Format("2006-01-02T15:04:05.000Z0700") + " [INFO]  " + msg
}

func TestLogsLastLines(t *testing.T) {
	th := startHive(t, nil)
	dir := paths.LogsDir(th.Config().Home)
	appendFile(t, filepath.Join(dir, "hive-local.log"), stamp(1, "hive: listening")+"\n"+stamp(4, "hive: worker started")+"\n"+stamp(7, "hive: still here")+"\n")
	appendFile(t, filepath.Join(dir, "worker-w-aaa.log"), stamp(2, "worker: binding")+"\nno timestamp here\n"+stamp(5, "worker: loaded")+"\n"+stamp(8, "worker: partial"))
	appendFile(t, filepath.Join(dir, "queen.log"), stamp(3, "queen: not a hive log")+"\n")
	appendFile(t, filepath.Join(dir, "worker-bad.id.log"), stamp(3, "not a worker id")+"\n")
	outside := filepath.Join(t.TempDir(), "secret.txt")
	appendFile(t, outside, "outside the logs dir\n")
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "worker-w-evil.log")))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "worker-w-dir.log"), 0o700))

	all := []string{
		"hive: " + stamp(1, "hive: listening"),
		"w-aaa: " + stamp(2, "worker: binding"),
		"w-aaa: no timestamp here",
		"hive: " + stamp(4, "hive: worker started"),
		"w-aaa: " + stamp(5, "worker: loaded"),
		"hive: " + stamp(7, "hive: still here"),
		"w-aaa: " + stamp(8, "worker: partial"),
	}
	tests := []struct {
		query string
		want  []string
	}{
		{"", all},
		{"?lines=100&follow=false", all},
		{"?lines=3", all[4:]},
		{"?lines=1", all[6:]},
		{"?lines=0", []string{}},
	}
	for _, tc := range tests {
		t.Run("query"+tc.query, func(t *testing.T) {
			got := openLogs(t, th, tc.query).all(t)
			assert.Equal(t, tc.want, texts(got))
			for _, l := range got {
				assert.Empty(t, l.Node, "the hive leaves node to the queen")
				assert.False(t, l.Time.IsZero(), "a line has its time, or that of the line it continues: %q", l.Line)
				if l.Line == "no timestamp here" {
					assert.Equal(t, time.Date(2025, 1, 2, 10, 0, 2, 0, time.UTC), l.Time.UTC(), "the time of the line it continues")
				}
			}
		})
	}
	got := openLogs(t, th, "?lines=1").all(t)
	require.Len(t, got, 1)
	assert.Equal(t, time.Date(2025, 1, 2, 10, 0, 8, 0, time.UTC), got[0].Time.UTC())
}

// TestLogsMultiLineEntries: lines without a timestamp continue the entry
// above them (a panic's stack trace) and take its time, even when the
// entry's first line is further back than the lines asked for, so that the
// newest entry is not pushed out by older lines of another file and an
// entry's lines stay together.
func TestLogsMultiLineEntries(t *testing.T) {
	th := startHive(t, nil)
	dir := paths.LogsDir(th.Config().Home)
	appendFile(t, filepath.Join(dir, "hive-local.log"), stamp(10, "hive: a")+"\n"+stamp(20, "hive: b")+"\n"+stamp(30, "hive: c")+"\n")
	// Enough of an older worker log that the panic's head is not near the
	// lines asked for.
	var older strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&older, "%s\n", stamp(1, fmt.Sprintf("worker: step %d", i)))
	}
	trace := []string{"goroutine 1 [running]:", "main.main()", "\t/src/main.go:12 +0x1d", "exit status 2"}
	appendFile(t, filepath.Join(dir, "worker-w-aaa.log"), older.String()+stamp(40, "panic: boom")+"\n"+strings.Join(trace, "\n")+"\n")
	at40 := time.Date(2025, 1, 2, 10, 0, 40, 0, time.UTC)
	var traceLines []string
	for _, l := range trace {
		traceLines = append(traceLines, "w-aaa: "+l)
	}

	tests := []struct {
		lines int
		want  []string
	}{
		// The worker's last four lines are the trace, whose head is further
		// back: they are the newest lines of the node, not its oldest.
		{4, traceLines},
		{6, append([]string{"hive: " + stamp(30, "hive: c"), "w-aaa: " + stamp(40, "panic: boom")}, traceLines...)},
	}
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.lines), func(t *testing.T) {
			got := openLogs(t, th, "?lines="+strconv.Itoa(tc.lines)).all(t)
			assert.Equal(t, tc.want, texts(got))
			for _, l := range got {
				if l.Source == "w-aaa" {
					assert.Equal(t, at40, l.Time.UTC(), "%q has the time of the panic it continues", l.Line)
				}
			}
		})
	}
}

func TestTimeBefore(t *testing.T) {
	lines := []string{stamp(1, "one"), "cont a", stamp(2, "two"), "cont b", "cont c"}
	data := strings.Join(lines, "\n") + "\n"
	r := strings.NewReader(data)
	at := func(s int) time.Time { return time.Date(2025, 1, 2, 10, 0, s, 0, time.UTC) }
	offset := func(i int) int64 { return int64(len(strings.Join(lines[:i], "\n")) + 1) } // start of line i
	assert.True(t, timeBefore(r, 0).IsZero(), "nothing before the file's start")
	assert.Equal(t, at(1), timeBefore(r, offset(1)).UTC(), "the first line")
	assert.Equal(t, at(1), timeBefore(r, offset(2)).UTC())
	assert.Equal(t, at(2), timeBefore(r, offset(4)).UTC())
	assert.Equal(t, at(2), timeBefore(r, int64(len(data))).UTC())
	undated := strings.NewReader("a\nb\nc\n")
	assert.True(t, timeBefore(undated, 6).IsZero(), "no dated line at all")
}

func TestLogsOwnLogFile(t *testing.T) {
	own := filepath.Join(t.TempDir(), "hive.log")
	appendFile(t, own, "the hive's own line\n")
	th := startHive(t, func(c *Config) { c.LogFile = own })
	appendFile(t, filepath.Join(paths.LogsDir(th.Config().Home), "hive-local.log"), "another hive's line\n")
	assert.Equal(t, []string{"hive: the hive's own line"}, texts(openLogs(t, th, "").all(t)),
		"with --log-file, hive*.log files in the logs dir are not this hive's")
}

func TestLogsBadRequests(t *testing.T) {
	th := startHive(t, nil)
	tests := []struct {
		query, field string
	}{
		{"?follow=maybe", "follow"},
		{"?lines=-1", "lines"},
		{"?lines=ten", "lines"},
		{"?lines=" + strconv.Itoa(api.MaxLogLines+1), "lines"},
		{"?lines=1e3", "lines"},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			status, e, _ := raw(t, http.MethodGet, th.url+"/v1/logs"+tc.query, testToken, "")
			assert.Equal(t, http.StatusBadRequest, status)
			require.NotNil(t, e)
			assert.Equal(t, api.CodeInvalidRequest, e.Code)
			assert.Equal(t, tc.field, e.Details["field"])
		})
	}
	t.Run("no token", func(t *testing.T) {
		status, e, _ := raw(t, http.MethodGet, th.url+"/v1/logs", "", "")
		assert.Equal(t, http.StatusUnauthorized, status)
		require.NotNil(t, e)
		assert.Equal(t, api.CodeMissingAPIKey, e.Code)
	})
	t.Run("wrong method", func(t *testing.T) {
		status, _, _ := raw(t, http.MethodPost, th.url+"/v1/logs", testToken, "")
		assert.Equal(t, http.StatusMethodNotAllowed, status)
	})
}

func TestLogsFollow(t *testing.T) {
	th := startHive(t, nil)
	dir := paths.LogsDir(th.Config().Home)
	hiveLog := filepath.Join(dir, "hive-local.log")
	appendFile(t, hiveLog, "old 1\nold 2\nbegun ")
	s := openLogs(t, th, "?follow=true&lines=1")
	l, _ := s.next(t, "old 2")
	assert.Equal(t, api.SourceHive, l.Source)
	quiet := openLogs(t, th, "?follow=1&lines=0")

	t.Run("appended lines", func(t *testing.T) {
		appendFile(t, hiveLog, "and ended\nnew line\n")
		l, skipped := s.next(t, "new line")
		assert.Equal(t, []string{"hive: begun and ended"}, texts(skipped), "a line begun before the stream is sent once it ends")
		assert.Equal(t, "new line", l.Line)
		l, skipped = quiet.next(t, "new line")
		assert.Equal(t, []string{"hive: begun and ended"}, texts(skipped), "lines=0: no old lines, but the one being written")
	})
	t.Run("a new worker's file", func(t *testing.T) {
		appendFile(t, filepath.Join(dir, "worker-w-new.log"), stamp(1, "first worker line")+"\n")
		l, skipped := s.next(t, "first worker line")
		assert.Empty(t, skipped)
		assert.Equal(t, "w-new", l.Source)
		assert.False(t, l.Time.IsZero())
	})
	t.Run("truncation", func(t *testing.T) {
		require.NoError(t, os.WriteFile(hiveLog, []byte("after truncation\n"), 0o600))
		l, skipped := s.next(t, "after truncation")
		assert.Empty(t, skipped)
		assert.Equal(t, api.SourceHive, l.Source)
	})
	t.Run("rotation", func(t *testing.T) {
		require.NoError(t, os.Rename(hiveLog, hiveLog+".1"))
		appendFile(t, hiveLog, "in the new file\n")
		l, skipped := s.next(t, "in the new file")
		assert.Empty(t, skipped, "the rotated file is not a source any more")
		assert.Equal(t, api.SourceHive, l.Source)
	})
	t.Run("a long line in pieces", func(t *testing.T) {
		long := strings.Repeat("é", maxLogLine) // two bytes each
		// A file of its own: the hive's may hold a line begun earlier.
		appendFile(t, filepath.Join(dir, "worker-w-long.log"), long+"\n")
		var got strings.Builder
		for got.Len() < len(long) {
			select {
			case ev := <-s.events:
				assert.Equal(t, "w-long", ev.Log.Source)
				assert.LessOrEqual(t, len(ev.Log.Line), maxLogLine)
				assert.True(t, utf8.ValidString(ev.Log.Line), "pieces are cut between characters")
				got.WriteString(ev.Log.Line)
			case <-time.After(10 * time.Second):
				t.Fatal("the long line did not come")
			}
		}
		assert.Equal(t, long, got.String())
	})
	t.Run("a spawned worker", func(t *testing.T) {
		resp, err := th.spawn(t, tinyModel(t, "Q8_0", &fakeBehaviour{}))
		require.NoError(t, err)
		l, _ := s.next(t, "fake worker "+resp.WorkerID+" starting")
		assert.Equal(t, resp.WorkerID, l.Source)
	})
	t.Run("the hive stops", func(t *testing.T) {
		require.NoError(t, th.stop(t))
		select {
		case err := <-s.ended:
			assert.NoError(t, err, "the stream ends with [DONE]")
		case <-time.After(10 * time.Second):
			t.Fatal("the stream outlived the hive")
		}
	})
}

func TestLastLinesStart(t *testing.T) {
	tests := []struct {
		data string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc\n", 3, "a\nb\nc\n"},
		{"a\nb\nc\n", 9, "a\nb\nc\n"},
		{"a\nb\nc", 2, "b\nc"},
		{"a\nb\nc", 1, "c"},
		{"a\n\n\n", 2, "\n\n"},
		{"a\nb\n", 0, ""},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q/%d", tc.data, tc.n), func(t *testing.T) {
			r := strings.NewReader(tc.data)
			start := lastLinesStart(r, int64(len(tc.data)), tc.n)
			assert.Equal(t, tc.want, tc.data[start:])
		})
	}
	t.Run("long file", func(t *testing.T) {
		var b bytes.Buffer
		for i := range 20000 {
			fmt.Fprintf(&b, "line %d\n", i)
		}
		data := b.String()
		start := lastLinesStart(strings.NewReader(data), int64(len(data)), 3)
		assert.Equal(t, "line 19997\nline 19998\nline 19999\n", data[start:])
	})
}

func TestLineTime(t *testing.T) {
	tests := []struct {
		line string
		want time.Time
	}{
		{"2025-01-02T10:00:05.123Z [INFO]  rbee-hive: x", time.Date(2025, 1, 2, 10, 0, 5, 123e6, time.UTC)},
		{"2025-01-02T11:00:05.000+0100 [WARN]  x", time.Date(2025, 1, 2, 10, 0, 5, 0, time.UTC)},
		{"2025-01-02T10:00:05Z x", time.Date(2025, 1, 2, 10, 0, 5, 0, time.UTC)},
		{"2025-01-02T10:00:05.5+01:00 x", time.Date(2025, 1, 2, 9, 0, 5, 5e8, time.UTC)},
		{"2025/01/02 10:00:05 std log", time.Date(2025, 1, 2, 10, 0, 5, 0, time.Local)},
		{"panic: runtime error", time.Time{}},
		{"2025-01-02", time.Time{}},
		{"", time.Time{}},
		{"12345678901234567890 not a time", time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			got, ok := lineTime(tc.line)
			assert.Equal(t, !tc.want.IsZero(), ok)
			assert.True(t, tc.want.Equal(got), "got %s", got)
		})
	}
}
