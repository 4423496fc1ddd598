package orchestrator

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
	"rbee/orchestrator/ui"
)

// The web console's side of the queen: the page itself (package ui,
// served without a token: it holds no data and asks for the key), one
// event stream of cluster snapshots (GET /v2/events), the nodes' catalogs
// (GET /v2/models) and pulling a model onto a node (POST
// /v2/models/download). Everything the page shows comes through the API
// with the same token and the same Host and Origin checks as any client.

const (
	// defaultEventsEvery is how often the events streams look at the
	// cluster: one worker list per node each time (and an info request
	// every nodeInfoEvery), shared by all open streams.
	defaultEventsEvery = time.Second
	// eventsKeepAlive is the longest an events stream stays silent: a
	// comment line then tells proxies and the page it is alive.
	eventsKeepAlive = 15 * time.Second
	// nodeInfoEvery is how often a node's info (free memory above all) is
	// asked for again; ramStepMB is the granularity of its free memory in
	// snapshots. Free memory drifts all the time: asked for every second
	// and exact, it would make every look a change to send.
	nodeInfoEvery = 10 * time.Second
	ramStepMB     = 256
)

// nodeInfo is a node's info as last asked for.
type nodeInfo struct {
	at   time.Time
	info *api.HiveInfo // nil: the hive has none (an older hive)
}

// withConsole serves the console's page at / and under /ui/ ahead of the
// API (without authentication: the page is static and asks for the API
// key itself), unless the configuration turned it off.
func (q *Queen) withConsole(next http.Handler) http.Handler {
	if q.cfg.DisableUI {
		return next
	}
	return divert(func(path string) bool { return path == "/" || path == "/ui" || strings.HasPrefix(path, "/ui/") }, ui.Handler(), next)
}

// tokenCounters count the tokens the queen relayed, per worker and in all,
// for the speeds the snapshots carry. The zero value is ready.
type tokenCounters struct {
	mu        sync.Mutex
	total     int64
	perWorker map[workerKey]int64
}

// token counts one token of task t: on the task, and on its worker once
// the task knows it.
func (c *tokenCounters) token(t *task) {
	if t.tokens.Add(1) == 1 {
		t.firstToken.Store(time.Now().UnixNano())
	}
	t.mu.Lock()
	w := t.worker
	t.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total++
	if w != nil {
		if c.perWorker == nil {
			c.perWorker = make(map[workerKey]int64)
		}
		c.perWorker[workerKey{node: w.node, id: w.id}]++
	}
}

// read returns the counts.
func (c *tokenCounters) read() (int64, map[workerKey]int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[workerKey]int64, len(c.perWorker))
	for k, v := range c.perWorker {
		m[k] = v
	}
	return c.total, m
}

// downloadState is one download the queen follows.
type downloadState struct {
	snap api.DownloadSnapshot
}

// downloadList holds the downloads the queen follows (a task's cold start,
// POST /v2/models/download). The zero value is ready.
type downloadList struct {
	mu   sync.Mutex
	list []*downloadState
}

func (l *downloadList) add(node, model, id string) *downloadState {
	d := &downloadState{snap: api.DownloadSnapshot{ID: id, Node: node, ModelRef: model, Stage: string(api.StageDownloading), Started: time.Now()}}
	l.mu.Lock()
	l.list = append(l.list, d)
	l.mu.Unlock()
	return d
}

func (l *downloadList) update(d *downloadState, p *api.Progress) {
	if p == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	d.snap.Stage = string(p.Stage)
	if p.BytesTotal > 0 || p.BytesDownloaded > 0 {
		d.snap.BytesDownloaded, d.snap.BytesTotal, d.snap.SpeedMBps = p.BytesDownloaded, p.BytesTotal, p.MegabytesPerSecond
	}
}

func (l *downloadList) remove(d *downloadState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = slices.DeleteFunc(l.list, func(x *downloadState) bool { return x == d })
}

// snapshot lists the downloads, one entry per hive download (two tasks
// waiting for the same download show it once).
func (l *downloadList) snapshot() []api.DownloadSnapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []api.DownloadSnapshot{}
	seen := map[string]bool{}
	for _, d := range l.list {
		key := d.snap.Node + "\x00" + d.snap.ID
		if !seen[key] {
			seen[key] = true
			out = append(out, d.snap)
		}
	}
	return out
}

// taskSnapshots lists the running tasks, oldest first: queued when the
// queue holds them, running once their worker streams, else preparing.
func (r *taskRegistry) snapshots(queues []api.Queue) []api.TaskSnapshot {
	queued := map[string]api.QueuedTask{}
	for _, qu := range queues {
		for _, t := range qu.Tasks {
			queued[t.ID] = t
		}
	}
	r.mu.Lock()
	ts := make([]*task, 0, len(r.tasks))
	for _, t := range r.tasks {
		ts = append(ts, t)
	}
	r.mu.Unlock()
	out := make([]api.TaskSnapshot, 0, len(ts))
	for _, t := range ts {
		s := api.TaskSnapshot{ID: t.id, Node: t.node, Model: t.model, Started: t.started, State: api.TaskPreparing, Tokens: t.tokens.Load()}
		if ft := t.firstToken.Load(); ft != 0 {
			s.FirstTokenMs = max(time.Unix(0, ft).Sub(t.started).Milliseconds(), 1)
		}
		t.mu.Lock()
		if t.worker != nil {
			s.State, s.WorkerID = api.TaskRunning, t.worker.id
		}
		t.mu.Unlock()
		if qt, ok := queued[t.id]; ok {
			s.State, s.Position, s.WorkerID = api.TaskQueued, qt.Position, qt.WorkerID
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b api.TaskSnapshot) int { return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.ID, b.ID)) })
	return out
}

// workerList is the cluster-wide worker list of GET /v2/workers/list,
// from what clusterWorkers found.
func (q *Queen) workerList(all []nodeWorkers) api.WorkerList {
	list := api.WorkerList{Workers: []api.WorkerInfo{}}
	_, counts, _ := q.queue.snapshot()
	for _, nw := range all {
		if nw.err != nil {
			if !q.absent(nw) {
				list.Unreachable = append(list.Unreachable, unreachableNode(nw))
			}
			continue
		}
		for _, wi := range nw.workers {
			info := strip(nw.hive.node, wi)
			c := counts[workerKey{node: info.Node, id: info.ID}]
			info.SlotsBusy, info.QueueDepth = slotsBusy(info, c), c.waiting
			list.Workers = append(list.Workers, info)
		}
	}
	slices.SortFunc(list.Workers, func(a, b api.WorkerInfo) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.ID, b.ID))
	})
	slices.SortFunc(list.Unreachable, func(a, b api.UnreachableNode) int { return cmp.Compare(a.Node, b.Node) })
	return list
}

// snapshot looks at the whole cluster once: every node's hive is asked
// for its workers and, when infos holds none younger than nodeInfoEvery,
// its info (in parallel, clusterListTimeout each; no hive is started).
// Speeds are left for the stream to fill in. infos is updated.
func (q *Queen) snapshot(ctx context.Context, infos map[string]nodeInfo) (api.Snapshot, error) {
	rows, err := q.store.List(ctx)
	if err != nil {
		return api.Snapshot{}, err
	}
	all, err := q.clusterWorkers(ctx)
	if err != nil {
		return api.Snapshot{}, err
	}
	byName := make(map[string]api.Node, len(rows))
	for _, n := range rows {
		byName[n.Name] = n
	}
	nodes := make([]api.NodeSnapshot, len(all))
	fetched := make([]*nodeInfo, len(all))
	now := time.Now()
	var wg sync.WaitGroup
	for i, nw := range all {
		ns := api.NodeSnapshot{Name: nw.node, Local: nw.node == api.LocalNode, Reachable: nw.err == nil, Running: nw.err == nil}
		if row, ok := byName[nw.node]; ok {
			ns.SSHHost, ns.Status, ns.LastConnectedUnix = row.SSHHost, row.Status, row.LastConnectedUnix
		}
		if nw.err != nil && !q.absent(nw) {
			ns.Error = unreachableNode(nw).Error
		}
		nodes[i] = ns
		if nw.err != nil || nw.hive == nil {
			delete(infos, nw.node) // asked for afresh once it answers again
			continue
		}
		if ni, ok := infos[nw.node]; ok && now.Sub(ni.at) < nodeInfoEvery {
			nodes[i].Info = ni.info
			continue
		}
		wg.Go(func() {
			ictx, cancel := context.WithTimeout(ctx, clusterListTimeout)
			defer cancel()
			var info api.HiveInfo
			if err := nw.hive.c.Do(ictx, http.MethodGet, "/v1/info", nil, &info); err != nil {
				// An older hive has no /v1/info: the node shows without it.
				q.log.Debug("node info unavailable", "node", nw.node, "error", err)
				if ctx.Err() == nil {
					fetched[i] = &nodeInfo{at: now}
				}
				return
			}
			info.RAMAvailableMB -= info.RAMAvailableMB % ramStepMB
			nodes[i].Info = &info
			fetched[i] = &nodeInfo{at: now, info: &info}
		})
	}
	wg.Wait()
	for i, f := range fetched {
		if f != nil {
			infos[all[i].node] = *f
		}
	}
	list := q.workerList(all)
	queues, _, depth := q.queue.snapshot()
	snap := api.Snapshot{Version: api.Version, Nodes: nodes, Workers: make([]api.WorkerSnapshot, len(list.Workers)),
		Tasks: q.tasks.snapshots(queues), Downloads: q.downloads.snapshot(), QueueDepth: depth, MaxQueue: q.queue.max}
	for i, w := range list.Workers {
		snap.Workers[i] = api.WorkerSnapshot{WorkerInfo: w}
	}
	return snap, nil
}

// snapshotCache shares one look at the cluster between the open event
// streams: however many pages are open, the hives are asked about once per
// eventsEvery.
type snapshotCache struct {
	mu    sync.Mutex // held by the caller that looks, so that others wait and share
	at    time.Time
	snap  api.Snapshot
	infos map[string]nodeInfo // by node
}

// sharedSnapshot returns a snapshot no older than most of eventsEvery,
// looking at the cluster when the last one is older. The caller may
// change the Workers of what it gets.
func (q *Queen) sharedSnapshot(ctx context.Context) (api.Snapshot, error) {
	c := &q.snapCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) >= q.cfg.eventsEvery*9/10 {
		if c.infos == nil {
			c.infos = make(map[string]nodeInfo)
		}
		s, err := q.snapshot(ctx, c.infos)
		if err != nil {
			return s, err
		}
		c.at, c.snap = time.Now(), s
	}
	s := c.snap
	s.Workers = slices.Clone(s.Workers)
	return s, nil
}

// handleEvents serves GET /v2/events: a stream of cluster snapshots
// (event "snapshot", an api.Snapshot), the first at once, then one
// whenever something in it changed, looking every eventsEvery; a comment
// line keeps a quiet stream alive. It lasts until the client goes away or
// the queen shuts down.
func (q *Queen) handleEvents(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	id, ok := q.logs.add(cancel)
	if !ok {
		httpx.WriteError(w, r, shuttingDown())
		return
	}
	defer q.logs.remove(id)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()

	tick := time.NewTicker(q.cfg.eventsEvery)
	defer tick.Stop()
	var (
		last     []byte
		sent     time.Time
		prevAt   time.Time
		prevAll  int64
		prevEach map[workerKey]int64
	)
	for {
		snap, err := q.sharedSnapshot(ctx)
		now := time.Now()
		if err == nil {
			all, each := q.counters.read()
			if !prevAt.IsZero() {
				dt := now.Sub(prevAt).Seconds()
				snap.TokensPerSecond = rate(all-prevAll, dt)
				for i, wk := range snap.Workers {
					k := workerKey{node: wk.Node, id: wk.ID}
					snap.Workers[i].TokensPerSecond = rate(each[k]-prevEach[k], dt)
				}
			}
			snap.TokensTotal = all
			prevAt, prevAll, prevEach = now, all, each
		} else if ctx.Err() == nil {
			q.log.Info("events: the cluster could not be read", "error", err)
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			// Compared without its time, a snapshot is sent when it changed.
			body, merr := json.Marshal(snap)
			if merr != nil {
				return
			}
			if !bytes.Equal(body, last) {
				snap.Time = now.UTC()
				data, _ := json.Marshal(snap)
				if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", api.KindSnapshot, data); err != nil {
					return
				}
				if rc.Flush() != nil {
					return
				}
				last, sent = body, now
			}
		}
		if now.Sub(sent) >= eventsKeepAlive {
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
			sent = now
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// rate is n per dt seconds, rounded to a tenth.
func rate(n int64, dt float64) float64 {
	if dt <= 0 || n <= 0 {
		return 0
	}
	return float64(int64(float64(n)/dt*10+0.5)) / 10
}

// handleClusterModels serves GET /v2/models: the model catalog of every
// node whose hive answers (the local node's only while its hive runs),
// with each file's header metadata; a node that does not answer carries
// its error instead.
func (q *Queen) handleClusterModels(w http.ResponseWriter, r *http.Request) {
	all, err := q.clusterWorkers(r.Context())
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	out := api.ClusterModels{Nodes: []api.NodeModels{}}
	res := make([]api.NodeModels, len(all))
	var wg sync.WaitGroup
	for i, nw := range all {
		res[i] = api.NodeModels{Node: nw.node, Models: []api.ModelEntry{}}
		if nw.err != nil {
			if !q.absent(nw) {
				res[i].Error = unreachableNode(nw).Error
			}
			continue
		}
		wg.Go(func() {
			lctx, cancel := context.WithTimeout(r.Context(), clusterListTimeout)
			defer cancel()
			var list api.ModelList
			if err := nw.hive.c.Do(lctx, http.MethodGet, "/v1/models", nil, &list); err != nil {
				res[i].Error = nw.hive.unreachable(err, "listing its models").With("node", nw.node)
				return
			}
			res[i].Models = append(res[i].Models, list.Models...)
			slices.SortFunc(res[i].Models, func(a, b api.ModelEntry) int { return cmp.Compare(a.Reference, b.Reference) })
		})
	}
	wg.Wait()
	for i, nw := range all {
		if nw.err != nil && q.absent(nw) {
			continue
		}
		out.Nodes = append(out.Nodes, res[i])
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

// handlePull serves POST /v2/models/download {node, model_ref}: the node's
// hive (started first, for the local node, if it is not running) downloads
// the hf: model into its catalog. The answer is an event stream of the
// download's narration and progress, ending with a progress event of stage
// complete (or an error event) and [DONE]. A model already in the catalog
// completes at once. The client going away does not stop the hive's
// download; it only stops following it.
func (q *Queen) handlePull(w http.ResponseWriter, r *http.Request) {
	var req api.PullRequest
	if e := httpx.DecodeJSON(w, r, &req); e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	if req.Node == "" {
		req.Node = api.LocalNode
	}
	if e := validateNodeField("node", req.Node); e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	ref, e := (&api.DownloadRequest{ModelRef: req.ModelRef}).Validate()
	if e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	if req.Node != api.LocalNode {
		if _, err := q.store.Get(r.Context(), req.Node); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	id, ok := q.logs.add(cancel)
	if !ok {
		httpx.WriteError(w, r, shuttingDown())
		return
	}
	defer q.logs.remove(id)

	out := sse.NewWriter(w)
	rid := httpx.RequestID(r)
	say := func(action, human string) {
		_ = out.Send(api.Event{Kind: api.KindNarration, Narration: &api.Narration{Actor: api.ActorQueen, Action: action,
			Human: human, Node: req.Node, RequestID: rid}})
	}
	fail := func(err error) {
		if errors.Is(context.Cause(ctx), errQueenShutdown) {
			err = shuttingDown()
		} else if ctx.Err() != nil {
			return // the client went away
		}
		e := *httpx.ToAPIError(err)
		e.RequestID = rid
		_ = out.Error(&e)
	}
	hive, err := q.hives.ensure(ctx, req.Node, say)
	if err != nil {
		fail(err)
		return
	}
	canon := ref.String()
	say("download", fmt.Sprintf("Pulling %s onto %s", canon, req.Node))
	if err := q.download(ctx, hive, canon, rid, out.Send); err != nil {
		fail(err)
		return
	}
	q.log.Info("model pulled", "node", req.Node, "model", canon)
	_ = out.Close()
}
