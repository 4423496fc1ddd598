package orchestrator

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"sync"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/paths"
	"rbee/internal/sse"
)

// handleLogs serves GET /v2/logs?node=N&follow=true&lines=N: the node's
// hive and worker log lines, relayed from the hive's GET /v1/logs with
// node set on each line. The node is local or a registry node, reached as
// tasks reach it (through its SSH tunnel in tunnel mode); its hive is not
// started for this. Without follow the stream ends after the last lines;
// with follow it lasts until the client goes away, the hive ends it, or
// the queen shuts down (an error event SHUTTING_DOWN).
func (q *Queen) handleLogs(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	node := v.Get("node")
	if node == "" {
		httpx.WriteError(w, r, api.InvalidField("node", "the node query parameter is required (?node=NAME)"))
		return
	}
	if e := api.ValidateNodeName(node); e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	lq, e := api.ParseLogQuery(v)
	if e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	id, ok := q.logs.add(cancel)
	if !ok {
		httpx.WriteError(w, r, shuttingDown())
		return
	}
	defer q.logs.remove(id)

	t, err := q.hives.target(ctx, node)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	h := q.hives.client(t)
	header := http.Header{httpx.RequestIDHeader: {httpx.RequestID(r)}}
	resp, err := h.c.Stream(ctx, http.MethodGet, "/v1/logs?"+lq.Values().Encode(), nil, header)
	if err != nil {
		if errors.Is(context.Cause(ctx), errQueenShutdown) {
			httpx.WriteError(w, r, shuttingDown())
			return
		}
		if ctx.Err() != nil {
			return // the client went away
		}
		e := h.unreachable(err, "reading its logs")
		if t.local && q.hives.startedLocal() == nil {
			log := filepath.Join(paths.LogsDir(q.cfg.Home), "hive-local.log")
			e = e.With("log", log).WithHint("the local hive is not running; its last log is " + log +
				" (the first inference on node local starts it: rbee infer --node local …)")
		}
		httpx.WriteError(w, r, e)
		return
	}
	defer resp.Body.Close()
	out := sse.NewWriter(w)
	for ev, err := range sse.Read(resp.Body) {
		if err != nil {
			switch {
			case errors.Is(context.Cause(ctx), errQueenShutdown):
				_ = out.Error(shuttingDown())
			case ctx.Err() == nil:
				e := api.Errorf(api.CodeConnectionTimeout, "lost contact with rbee-hive on %s while streaming its logs", node).
					With("node", node).WithHint(hiveHint(node))
				e.RequestID = httpx.RequestID(r)
				_ = out.Error(e)
			}
			return
		}
		if ev.Kind == api.KindLog && ev.Log != nil {
			ev.Log.Node = node
		}
		if err := out.Send(ev); err != nil {
			return
		}
	}
	_ = out.Close()
}

// logStreams are the running GET /v2/logs streams, which the shutdown ends
// (a followed stream would otherwise hold the server open).
type logStreams struct {
	mu     sync.Mutex
	next   int
	m      map[int]context.CancelCauseFunc
	closed bool
}

// add registers a stream's cancel function; it reports false once the
// queen is shutting down.
func (s *logStreams) add(cancel context.CancelCauseFunc) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, false
	}
	if s.m == nil {
		s.m = map[int]context.CancelCauseFunc{}
	}
	s.next++
	s.m[s.next] = cancel
	return s.next, true
}

func (s *logStreams) remove(id int) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// closeAll refuses new streams and ends the running ones with
// errQueenShutdown.
func (s *logStreams) closeAll() {
	s.mu.Lock()
	s.closed = true
	cancels := make([]context.CancelCauseFunc, 0, len(s.m))
	for _, c := range s.m {
		cancels = append(cancels, c)
	}
	s.mu.Unlock()
	for _, c := range cancels {
		c(errQueenShutdown)
	}
}
