package orchestrator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"rbee/api"
	"rbee/internal/hivewire"
	"rbee/internal/httpx"
)

// workerClient calls one worker directly, with the worker's own token (which
// the hive handed to the queen and the queen never shows anyone).
type workerClient struct {
	id   string
	node string
	url  string
	c    *httpx.Client
}

// newWorkerClient checks the URL a hive gave for a worker: an http(s) URL
// with a host and nothing else. A worker of a node in tunnel mode is called
// through a tunnel to its port over the node's SSH connection.
func (q *Queen) newWorkerClient(node, id, rawURL, token string) (*workerClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return nil, api.Errorf(api.CodeInternal, "rbee-hive on %s gave worker %s an unusable URL", node, id).With("node", node).With("worker_id", id)
	}
	if node != api.LocalNode {
		ctx, cancel := context.WithTimeout(context.Background(), tunnelOpenTimeout)
		rawURL, err = q.hives.remote.workerURL(ctx, node, rawURL)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	return &workerClient{id: id, node: node, url: rawURL, c: &httpx.Client{BaseURL: rawURL, Token: token, HTTP: q.http}}, nil
}

// cancel asks the worker to stop the generation with the request id (204,
// idempotent). It is bounded by cancelTimeout and survives the caller's
// cancellation: it runs precisely when a task's context has ended.
func (w *workerClient) cancel(ctx context.Context, requestID string) error {
	ctx, c := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
	defer c()
	return w.c.Do(ctx, http.MethodDelete, "/v1/inference/"+url.PathEscape(requestID), nil, nil)
}

// strip returns a worker entry for keepers: node set, token left behind.
func strip(node string, w hivewire.Worker) api.WorkerInfo {
	info := w.WorkerInfo
	info.Node = node
	return info
}

// nodeWorkers is one node's part of the cluster-wide worker list.
type nodeWorkers struct {
	node    string
	hive    *hiveClient       // nil when the node could not even be resolved
	workers []hivewire.Worker // as the hive gave them (tokens included)
	err     error
}

// absent reports whether the node is the local one and its hive simply
// does not run: this queen did not start it and nothing answers in its
// place. That is no failure — the first inference on node local starts it —
// so such a node is neither listed nor reported unreachable.
func (q *Queen) absent(nw nodeWorkers) bool {
	var e *api.Error
	return nw.node == api.LocalNode && nw.err != nil && !errors.As(nw.err, &e) && q.hives.startedLocal() == nil
}

// unreachableNode describes a node whose workers could not be listed: the
// error envelope of the failure, with the node, and a hint.
func unreachableNode(nw nodeWorkers) api.UnreachableNode {
	var e *api.Error
	switch {
	case nw.hive != nil:
		e = nw.hive.unreachable(nw.err, "listing its workers")
	case errors.As(nw.err, &e):
	default:
		e = api.Errorf(api.CodeConnectionTimeout, "could not reach node %s: %s", nw.node, shortNetErr(nw.err))
	}
	if _, ok := e.Details["node"]; !ok {
		e = e.With("node", nw.node)
	}
	if e.Hint() == "" {
		e = e.WithHint(hiveHint(nw.node))
	}
	e = e.WithHint(e.Hint() + " (rbee workers health --node " + nw.node + ")")
	return api.UnreachableNode{Node: nw.node, Error: e}
}

// clusterWorkers asks every hive for its workers in parallel: the local
// hive if one answers, and every registry node, each within
// clusterListTimeout. A node that does not answer comes back with its
// error (and is logged), unless absent says it has no hive to ask.
func (q *Queen) clusterWorkers(ctx context.Context) ([]nodeWorkers, error) {
	nodes, err := q.store.List(ctx)
	if err != nil {
		return nil, err
	}
	names := []string{api.LocalNode}
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	out := make([]nodeWorkers, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		out[i].node = name
		wg.Go(func() {
			// The bound covers reaching the node too: a node in tunnel mode
			// is reached through an SSH connection that may need dialling.
			lctx, cancel := context.WithTimeout(ctx, clusterListTimeout)
			defer cancel()
			t, err := q.hives.target(lctx, name)
			if err != nil {
				out[i].err = err
				return
			}
			h := q.hives.client(t)
			out[i].hive = h
			out[i].workers, out[i].err = h.workers(lctx)
		})
	}
	wg.Wait()
	for _, nw := range out {
		if nw.err != nil && !q.absent(nw) {
			q.log.Info("node did not answer for the worker list", "node", nw.node, "error", nw.err)
		}
	}
	return out, nil
}

func (q *Queen) handleWorkersList(w http.ResponseWriter, r *http.Request) {
	all, err := q.clusterWorkers(r.Context())
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	list := q.workerList(all)
	httpx.WriteJSON(w, http.StatusOK, list)
}

// slotsBusy is how many slots of a worker are in use: the more of what the
// worker last reported to its hive and the tasks the queen has running on
// it (the one lags, the other misses clients calling the worker directly).
func slotsBusy(info api.WorkerInfo, c slotCount) int {
	if info.State != api.StateIdle && info.State != api.StateBusy {
		return c.busy
	}
	return max(info.SlotsTotal-info.SlotsAvailable, c.busy, 0)
}

// handleQueue serves GET /v2/queue: the tasks waiting per node and model,
// and per ready worker its slots in use, its slot count and how many tasks
// wait for it.
func (q *Queen) handleQueue(w http.ResponseWriter, r *http.Request) {
	all, err := q.clusterWorkers(r.Context())
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	queues, counts, depth := q.queue.snapshot()
	out := api.QueueStatus{Depth: depth, MaxQueue: q.queue.max, TimeoutMs: q.queue.timeout.Milliseconds(),
		Queues: queues, Workers: []api.WorkerSlots{}}
	seen := map[workerKey]bool{}
	for _, nw := range all {
		if nw.err != nil {
			if !q.absent(nw) {
				out.Unreachable = append(out.Unreachable, unreachableNode(nw))
			}
			continue
		}
		for _, wi := range nw.workers {
			info := strip(nw.hive.node, wi)
			if info.State != api.StateIdle && info.State != api.StateBusy {
				continue
			}
			wk := workerKey{node: info.Node, id: info.ID}
			seen[wk] = true
			c := counts[wk]
			out.Workers = append(out.Workers, api.WorkerSlots{Node: info.Node, WorkerID: info.ID, Model: info.ModelRef,
				SlotsBusy: slotsBusy(info, c), SlotsTotal: info.SlotsTotal, QueueDepth: c.waiting})
		}
	}
	// Workers the queen has tasks on that their hive did not list (it did
	// not answer, or the worker is on its way out).
	for wk, c := range counts {
		if !seen[wk] && (c.busy > 0 || c.waiting > 0) {
			out.Workers = append(out.Workers, api.WorkerSlots{Node: wk.node, WorkerID: wk.id, Model: c.model, SlotsBusy: c.busy, SlotsTotal: c.total, QueueDepth: c.waiting})
		}
	}
	slices.SortFunc(out.Workers, func(a, b api.WorkerSlots) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.WorkerID, b.WorkerID))
	})
	slices.SortFunc(out.Unreachable, func(a, b api.UnreachableNode) int { return cmp.Compare(a.Node, b.Node) })
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (q *Queen) handleWorkersHealth(w http.ResponseWriter, r *http.Request) {
	node := r.URL.Query().Get("node")
	if node == "" {
		httpx.WriteError(w, r, api.InvalidField("node", "the node query parameter is required (?node=NAME)"))
		return
	}
	if err := api.ValidateNodeName(node); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	t, err := q.hives.target(r.Context(), node)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	h := q.hives.client(t)
	health, err := q.hives.reach(r.Context(), h, nil)
	if err != nil {
		e := h.unreachable(err, "checking its health")
		if t.local && q.hives.startedLocal() == nil {
			e = e.WithHint("the local hive is not running; the first inference on node local starts it (rbee infer --node local …)")
		}
		httpx.WriteError(w, r, e)
		return
	}
	ws, err := h.workers(r.Context())
	if err != nil {
		httpx.WriteError(w, r, h.unreachable(err, "listing its workers"))
		return
	}
	out := api.NodeHealth{Node: node, Hive: health, HiveURL: t.url, Workers: make([]api.WorkerInfo, 0, len(ws))}
	_, counts, _ := q.queue.snapshot()
	for _, wi := range ws {
		info := strip(node, wi)
		c := counts[workerKey{node: node, id: info.ID}]
		info.SlotsBusy, info.QueueDepth = slotsBusy(info, c), c.waiting
		out.Workers = append(out.Workers, info)
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

// workerShutdownResult answers POST /v2/workers/shutdown.
type workerShutdownResult struct {
	WorkerID string `json:"worker_id"`
	Node     string `json:"node"`
}

func (q *Queen) handleWorkersShutdown(w http.ResponseWriter, r *http.Request) {
	var req api.WorkerShutdownRequest
	if e := httpx.DecodeJSON(w, r, &req); e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	if e := api.ValidateWorkerID(req.WorkerID); e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	all, err := q.clusterWorkers(r.Context())
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	for _, nw := range all {
		if nw.err != nil {
			continue
		}
		for _, wi := range nw.workers {
			if wi.ID != req.WorkerID {
				continue
			}
			if err := nw.hive.shutdownWorker(r.Context(), wi.ID); err != nil {
				httpx.WriteError(w, r, nw.hive.unreachable(err, "stopping a worker"))
				return
			}
			q.log.Info("worker shut down on request", "worker_id", wi.ID, "node", nw.hive.node)
			httpx.WriteJSON(w, http.StatusOK, workerShutdownResult{WorkerID: wi.ID, Node: nw.hive.node})
			return
		}
	}
	e := api.Errorf(api.CodeWorkerNotFound, "no node runs worker %s", req.WorkerID).
		With("worker_id", req.WorkerID).WithHint("list the workers with: rbee workers list")
	var missed []string
	for _, nw := range all {
		if nw.err != nil && !q.absent(nw) {
			missed = append(missed, nw.node)
		}
	}
	if len(missed) > 0 {
		e = e.With("unreachable_nodes", missed).
			WithHint("it may run on a node that did not answer (" + strings.Join(missed, ", ") + "); list the workers with: rbee workers list")
		e.Message = fmt.Sprintf("no node that answered runs worker %s", req.WorkerID)
	}
	httpx.WriteError(w, r, e)
}

func (q *Queen) handleNodesList(w http.ResponseWriter, r *http.Request) {
	nodes, err := q.store.List(r.Context())
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, api.NodeList{Nodes: nodes})
}

func (q *Queen) handleNodesRemove(w http.ResponseWriter, r *http.Request) {
	var req api.NodeRequest
	if e := httpx.DecodeJSON(w, r, &req); e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	if e := validateNodeField("node_name", req.Name); e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	if req.Name == api.LocalNode {
		httpx.WriteError(w, r, api.InvalidField("node_name", "the local node is built in; it has no registry entry to remove"))
		return
	}
	if err := q.store.Remove(r.Context(), req.Name); err != nil {
		var e *api.Error
		if errors.As(err, &e) && e.Code == api.CodeNodeNotFound {
			e = e.WithHint("list the registered nodes with: rbee setup list-nodes")
			err = e
		}
		httpx.WriteError(w, r, err)
		return
	}
	q.hives.remote.forget(req.Name)
	q.log.Info("node removed from the registry", "node", req.Name)
	httpx.WriteJSON(w, http.StatusOK, api.NodeRequest{Name: req.Name})
}
