package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

func logLine(source, line string) api.Event {
	return api.Event{Kind: api.KindLog, Log: &api.LogLine{Node: "local", Source: source, Line: line}}
}

func TestLogsPrints(t *testing.T) {
	f := newFakeQueen(t)
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	f.handle("GET /v2/logs", func(w http.ResponseWriter, r *http.Request) {
		s := sse.NewWriter(w)
		_ = s.Send(logLine("hive", "2025-01-02T03:04:05.000Z [INFO]  rbee-hive: listening"))
		dated := logLine("w-0123456789ab", "loaded <model> & ready")
		dated.Log.Time = at
		_ = s.Send(dated)
		_ = s.Send(logLine("w-0123456789ab", "evil \x1b[2J\x1b[31mred\u202e\ttab"))
		_ = s.Close()
	})
	tests := []struct {
		name  string
		args  []string
		query string
		check func(t *testing.T, stdout string)
	}{
		{"text", nil, "follow=false&lines=100&node=local", func(t *testing.T, stdout string) {
			assert.Equal(t, "[hive] 2025-01-02T03:04:05.000Z [INFO]  rbee-hive: listening\n"+
				"[w-0123456789ab] loaded <model> & ready\n"+
				"[w-0123456789ab] evil ?[2J?[31mred?\ttab\n", stdout)
		}},
		{"json", []string{"--json", "--node", "mac", "--lines", "0"}, "follow=false&lines=0&node=mac", func(t *testing.T, stdout string) {
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			require.Len(t, lines, 3)
			var got api.LogLine
			require.NoError(t, json.Unmarshal([]byte(lines[1]), &got))
			assert.Equal(t, api.LogLine{Node: "local", Source: "w-0123456789ab", Line: "loaded <model> & ready", Time: at}, got)
			assert.Contains(t, lines[1], "<model> &", "no HTML escaping")
			assert.NotContains(t, lines[0], `"time"`, "an undated line has no time")
			require.NoError(t, json.Unmarshal([]byte(lines[2]), &got))
			assert.Equal(t, "evil \x1b[2J\x1b[31mred\u202e\ttab", got.Line, "JSON keeps the line as it is")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, t.Context(), map[string]string{"RBEE_API_KEY": "the-token-0123456789"}, nil,
				append([]string{"logs", "--queen-url", f.srv.URL}, tc.args...)...)
			require.Equal(t, ExitOK, r.code, r.stderr)
			assert.Empty(t, r.stderr)
			tc.check(t, r.stdout)
			reqs := f.requests()
			assert.Equal(t, "GET /v2/logs?"+tc.query, reqs[len(reqs)-1])
			assert.Equal(t, "Bearer the-token-0123456789", f.auth[len(f.auth)-1])
		})
	}
}

func TestLogsFollowUntilInterrupted(t *testing.T) {
	f := newFakeQueen(t)
	gone := make(chan struct{})
	f.handle("GET /v2/logs", func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "true", r.URL.Query().Get("follow"))
		s := sse.NewWriter(w)
		_ = s.Send(logLine("w-1", "first"))
		<-r.Context().Done()
		close(gone)
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	first := &signalWriter{ch: make(chan struct{})}
	go func() {
		select {
		case <-first.ch:
			cancel() // Ctrl+C once the first line is out
		case <-time.After(10 * time.Second):
		}
	}()
	r := run(t, ctx, nil, first, "logs", "--queen-url", f.srv.URL, "--follow")
	assert.Equal(t, ExitInterrupted, r.code, r.stderr)
	assert.Equal(t, "[w-1] first\n", r.stdout, "a followed line is printed at once")
	assert.Equal(t, "Canceled.\n", r.stderr)
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream was not closed")
	}
}

func TestLogsErrors(t *testing.T) {
	f := newFakeQueen(t)
	f.handle("GET /v2/logs", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("node") {
		case "gone":
			s := sse.NewWriter(w)
			_ = s.Send(logLine("hive", "last words"))
			_ = s.Error(api.Errorf(api.CodeConnectionTimeout, "lost contact with rbee-hive on gone while streaming its logs").WithHint("Check if rbee-hive is running on gone"))
		case "cut":
			s := sse.NewWriter(w)
			_ = s.Send(logLine("hive", "half"))
		default:
			httpx.WriteError(w, r, api.Errorf(api.CodeNodeNotFound, "node gpu is not in the registry").WithHint("rbee setup add-node --name gpu …"))
		}
	})
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	home := t.TempDir()

	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stdout string
		stderr []string
	}{
		{"unknown node", nil, []string{"--node", "gpu"}, ExitFailure, "",
			[]string{"rbee logs: node gpu is not in the registry\nhint: rbee setup add-node --name gpu …\n"}},
		{"error event", nil, []string{"--node", "gone", "--follow"}, ExitFailure, "[hive] last words\n",
			[]string{"rbee logs: lost contact with rbee-hive on gone", "hint: Check if rbee-hive is running on gone"}},
		{"stream cut", nil, []string{"--node", "cut"}, ExitFailure, "[hive] half\n", []string{"rbee logs: the log stream from the queen at " + f.srv.URL + " broke off: stream closed unexpectedly", "hint: "}},
		{"bad node", nil, []string{"--node", "Bad_Node"}, ExitUsage, "", []string{"rbee logs: --node: "}},
		{"bad lines", nil, []string{"--lines", "-1"}, ExitUsage, "", []string{"rbee logs: --lines -1: want 0 to 10000"}},
		{"too many lines", nil, []string{"--lines", "10001"}, ExitUsage, "", []string{"--lines 10001"}},
		{"no queen, local", map[string]string{"RBEE_QUEEN_URL": closed.URL, "RBEE_HOME": home}, nil, ExitFailure, "",
			[]string{"rbee logs: no queen answers at " + closed.URL, "the local logs are files in " + filepath.Join(home, "logs")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"logs"}, tc.args...)
			if tc.env == nil {
				args = append(args, "--queen-url", f.srv.URL)
			}
			r := run(t, t.Context(), tc.env, nil, args...)
			assert.Equal(t, tc.code, r.code, r.stderr)
			assert.Equal(t, tc.stdout, r.stdout)
			for _, want := range tc.stderr {
				assert.Contains(t, r.stderr, want)
			}
		})
	}
	t.Run("no queen, remote node", func(t *testing.T) {
		r := run(t, t.Context(), map[string]string{"RBEE_QUEEN_URL": closed.URL, "RBEE_HOME": home}, nil, "logs", "--node", "mac")
		assert.Equal(t, ExitFailure, r.code)
		assert.NotContains(t, r.stderr, "local logs", "another node's files are not here")
	})
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain line":         "plain line",
		"tab\tkept":          "tab\tkept",
		"\x1b[31mred\x1b[0m": "?[31mred?[0m",
		"cr\rback":           "cr?back",
		"bidi\u202eflip":     "bidi?flip",
		"nul\x00byte":        "nul?byte",
		"unicode é ✓":        "unicode é ✓",
	} {
		assert.Equal(t, want, printable(in), "%q", in)
	}
}
