package orchestrator

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
	"rbee/internal/testutil"
)

// logHive serves a hive's GET /v1/logs: the lines it was given, then,
// when followed, whatever is sent on more, until the client goes away (or
// cut, which drops the connection).
type logHive struct {
	srv   *httptest.Server
	lines []api.LogLine
	more  chan api.LogLine
	cut   chan struct{}
	gone  chan struct{} // closed when a followed request ended

	mu       sync.Mutex
	queries  []url.Values
	requests []string // X-Request-ID of each
}

func newLogHive(t *testing.T, token string, lines ...string) *logHive {
	t.Helper()
	h := &logHive{more: make(chan api.LogLine, 8), cut: make(chan struct{}), gone: make(chan struct{})}
	for _, l := range lines {
		h.lines = append(h.lines, api.LogLine{Source: api.SourceHive, Line: l})
	}
	var goneOnce sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, 200, api.HiveHealth{Status: "alive", Version: api.Version, APIVersion: api.APIVersion})
	})
	mux.HandleFunc("GET /v1/logs", func(w http.ResponseWriter, r *http.Request) {
		q, e := api.ParseLogQuery(r.URL.Query())
		if e != nil {
			httpx.WriteError(w, r, e)
			return
		}
		h.mu.Lock()
		h.queries = append(h.queries, r.URL.Query())
		h.requests = append(h.requests, r.Header.Get(httpx.RequestIDHeader))
		h.mu.Unlock()
		out := sse.NewWriter(w)
		for _, l := range h.lines {
			_ = out.Send(api.Event{Kind: api.KindLog, Log: &l})
		}
		if !q.Follow {
			_ = out.Close()
			return
		}
		defer goneOnce.Do(func() { close(h.gone) })
		for {
			select {
			case l := <-h.more:
				if out.Send(api.Event{Kind: api.KindLog, Log: &l}) != nil {
					return
				}
			case <-h.cut:
				panic(http.ErrAbortHandler)
			case <-r.Context().Done():
				return
			}
		}
	})
	h.srv = httptest.NewServer(httpx.Middleware(nil, httpx.Auth(token, []string{"/v1/health"}, mux)))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *logHive) port() int { return h.srv.Listener.Addr().(*net.TCPAddr).Port }

// logsResult is what a client saw of GET /v2/logs.
type logsResult struct {
	status   int
	envelope *api.Error
	header   http.Header
	events   []api.Event
	err      error // nil when [DONE] came
}

// getLogs reads GET /v2/logs?query to its end; each event is also sent on
// each when not nil.
func getLogs(t *testing.T, ctx context.Context, tq *testQueen, token, query string, each chan<- api.Event) logsResult {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, tq.url+"/v2/logs?"+query, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	res := logsResult{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode != http.StatusOK {
		res.envelope = httpx.ResponseError(resp).(*api.Error)
		return res
	}
	for ev, err := range sse.Read(resp.Body) {
		if err != nil {
			res.err = err
			break
		}
		res.events = append(res.events, ev)
		if each != nil {
			each <- ev
		}
	}
	return res
}

const logsToken = "queen-token-0123456789abcdef"

func TestLogsRelay(t *testing.T) {
	local := newLogHive(t, logsToken, "local line 1", "local line 2")
	mac := newLogHive(t, "mac-token-0123456789abcdef", "mac line")
	tq := newTestQueen(t, Config{Token: logsToken, LocalHivePort: local.port()})
	require.NoError(t, tq.q.store.AddWithToken(t.Context(), api.Node{Name: "mac", SSHHost: "127.0.0.1", HivePort: mac.port()}, "mac-token-0123456789abcdef"))

	tests := []struct {
		node, query string
		hive        *logHive
		want        []string
		wantQuery   url.Values
	}{
		{"local", "", local, []string{"local line 1", "local line 2"}, url.Values{"follow": {"false"}, "lines": {"100"}}},
		{"local", "&lines=7&follow=0", local, []string{"local line 1", "local line 2"}, url.Values{"follow": {"false"}, "lines": {"7"}}},
		{"mac", "&lines=0", mac, []string{"mac line"}, url.Values{"follow": {"false"}, "lines": {"0"}}},
	}
	for _, tc := range tests {
		t.Run(tc.node+tc.query, func(t *testing.T) {
			res := getLogs(t, t.Context(), tq, logsToken, "node="+tc.node+tc.query, nil)
			require.Equal(t, http.StatusOK, res.status, "%v", res.envelope)
			require.NoError(t, res.err)
			var got []string
			for _, ev := range res.events {
				require.Equal(t, api.KindLog, ev.Kind)
				assert.Equal(t, tc.node, ev.Log.Node, "the queen names the node")
				assert.Equal(t, api.SourceHive, ev.Log.Source)
				got = append(got, ev.Log.Line)
			}
			assert.Equal(t, tc.want, got)
			tc.hive.mu.Lock()
			defer tc.hive.mu.Unlock()
			require.NotEmpty(t, tc.hive.queries)
			assert.Equal(t, tc.wantQuery, tc.hive.queries[len(tc.hive.queries)-1])
			assert.Equal(t, res.header.Get(httpx.RequestIDHeader), tc.hive.requests[len(tc.hive.requests)-1], "the request id travels to the hive")
		})
	}
}

func TestLogsFollowRelay(t *testing.T) {
	hive := newLogHive(t, logsToken, "backlog")
	tq := newTestQueen(t, Config{Token: logsToken, LocalHivePort: hive.port()})

	t.Run("until the client goes away", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		events := make(chan api.Event, 10)
		done := make(chan logsResult, 1)
		go func() { done <- getLogs(t, ctx, tq, logsToken, "node=local&follow=true", events) }()
		for _, want := range []string{"backlog", "new 1", "new 2"} {
			if want != "backlog" {
				hive.more <- api.LogLine{Source: "w-1", Line: want}
			}
			select {
			case ev := <-events:
				assert.Equal(t, want, ev.Log.Line)
				assert.Equal(t, "local", ev.Log.Node)
			case <-time.After(10 * time.Second):
				t.Fatalf("line %q was not relayed", want)
			}
		}
		cancel()
		select {
		case <-hive.gone:
		case <-time.After(10 * time.Second):
			t.Fatal("the queen kept the hive's stream after its client left")
		}
		<-done
	})

	t.Run("the hive goes away", func(t *testing.T) {
		hive2 := newLogHive(t, logsToken, "one line")
		tq2 := newTestQueen(t, Config{Token: logsToken, LocalHivePort: hive2.port()})
		done := make(chan logsResult, 1)
		events := make(chan api.Event, 10)
		go func() { done <- getLogs(t, t.Context(), tq2, logsToken, "node=local&follow=true", events) }()
		<-events
		close(hive2.cut)
		res := <-done
		require.NoError(t, res.err, "the queen ends the stream properly")
		last := res.events[len(res.events)-1]
		require.Equal(t, api.KindError, last.Kind)
		assertEnvelope(t, last.Error, api.CodeConnectionTimeout, res.header.Get(httpx.RequestIDHeader))
		assert.Contains(t, last.Error.Hint(), "Check if rbee-hive is running on local")
	})

	t.Run("the queen shuts down", func(t *testing.T) {
		events := make(chan api.Event, 10)
		done := make(chan logsResult, 1)
		go func() { done <- getLogs(t, t.Context(), tq, logsToken, "node=local&follow=true&lines=1", events) }()
		<-events
		require.NoError(t, tq.q.Close())
		select {
		case res := <-done:
			require.NoError(t, res.err)
			last := res.events[len(res.events)-1]
			require.Equal(t, api.KindError, last.Kind)
			assert.Equal(t, api.CodeShuttingDown, last.Error.Code)
		case <-time.After(10 * time.Second):
			t.Fatal("the stream outlived the queen")
		}
		res := getLogs(t, t.Context(), tq, logsToken, "node=local", nil)
		assert.Equal(t, http.StatusServiceUnavailable, res.status)
		require.NotNil(t, res.envelope)
		assert.Equal(t, api.CodeShuttingDown, res.envelope.Code)
	})
}

func TestLogsRelayErrors(t *testing.T) {
	tq := newTestQueen(t, Config{Token: logsToken, LocalHivePort: testutil.FreePort(t)})
	tests := []struct {
		name, token, query string
		status             int
		code               api.Code
		field              string
	}{
		{"no node", logsToken, "", 400, api.CodeInvalidRequest, "node"},
		{"bad node", logsToken, "node=Not_A_Node", 400, api.CodeInvalidRequest, "node"},
		{"bad follow", logsToken, "node=local&follow=often", 400, api.CodeInvalidRequest, "follow"},
		{"bad lines", logsToken, "node=local&lines=-5", 400, api.CodeInvalidRequest, "lines"},
		{"too many lines", logsToken, "node=local&lines=20000", 400, api.CodeInvalidRequest, "lines"},
		{"unknown node", logsToken, "node=nowhere", 404, api.CodeNodeNotFound, ""},
		{"no token", "", "node=local", 401, api.CodeMissingAPIKey, ""},
		{"wrong token", "wrong-token-0123456789abcdef", "node=local", 401, api.CodeInvalidAPIKey, ""},
		{"local hive not running", logsToken, "node=local", 504, api.CodeConnectionTimeout, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := getLogs(t, t.Context(), tq, tc.token, tc.query, nil)
			assert.Equal(t, tc.status, res.status)
			require.NotNil(t, res.envelope)
			assertEnvelope(t, res.envelope, tc.code, "")
			if tc.field != "" {
				assert.Equal(t, tc.field, res.envelope.Details["field"])
			}
			if tc.name == "local hive not running" {
				assert.Contains(t, res.envelope.Hint(), "hive-local.log", "the hint says where the log is")
			}
			if tc.code == api.CodeNodeNotFound {
				assert.True(t, strings.Contains(res.envelope.Hint(), "add-node"), res.envelope.Hint())
			}
		})
	}
}
