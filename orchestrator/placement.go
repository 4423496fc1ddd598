package orchestrator

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"rbee/api"
	"rbee/internal/hivewire"
)

// Placement. A task that names no node (an OpenAI-compatible request
// without one, POST /v2/tasks with an empty node or "auto", `rbee infer
// --node auto`) runs where the queen chooses, in this order:
//
//  1. a ready worker of the model with a free slot, on any node: the one
//     with the fewest slots in use; on a tie, the one given a task the
//     longest ago (round robin, as a load balancer's "least connections"
//     does), the local node first among those never given one;
//  2. else the node whose workers of the model have the shortest queue;
//  3. else a node whose catalog holds the model and that passes the
//     preflight for it (enough memory, the backend there): the local node
//     first, then the others by name;
//  4. else the local node, which downloads the model.
//
// Nodes whose hive does not answer within a short bound are skipped (a
// debug log says so); the local node counts even when its hive is not
// running yet, since the queen starts it. A task that names a node always
// runs there.

// placement is where a task without a node goes, and why.
type placement struct {
	node   string
	reason string
	// settle ends the reservation of the worker chosen for its free slot,
	// once the task holds a slot (the queue counts it then) or has ended.
	// Safe to call more than once.
	settle func()
}

// placements makes placements one at a time and remembers the free slots
// they promised until the tasks take them, so that tasks placed at the
// same moment spread over the free workers instead of all choosing the
// first.
type placements struct {
	choosing sync.Mutex // held while one placement chooses
	mu       sync.Mutex
	promised map[workerKey]int
	// Guarded by choosing: when each worker was last chosen for its free
	// slot (a sequence number, 0 for never), for the round robin on ties.
	last map[workerKey]uint64
	seq  uint64
}

// chosen records that wk was just chosen, and forgets the workers that are
// no longer in seen. Call with choosing held.
func (p *placements) chosen(wk workerKey, seen map[workerKey]bool) {
	if p.last == nil {
		p.last = make(map[workerKey]uint64)
	}
	for k := range p.last {
		if !seen[k] {
			delete(p.last, k)
		}
	}
	p.seq++
	p.last[wk] = p.seq
}

func (p *placements) count(wk workerKey) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.promised[wk]
}

// promise reserves a slot of worker wk and returns what ends the
// reservation.
func (p *placements) promise(wk workerKey) func() {
	p.mu.Lock()
	if p.promised == nil {
		p.promised = make(map[workerKey]int)
	}
	p.promised[wk]++
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.promised[wk]--; p.promised[wk] <= 0 {
				delete(p.promised, wk)
			}
		})
	}
}

// candidate is a ready worker of the task's model seen during placement.
type candidate struct {
	node        string
	worker      hivewire.Worker
	busy, total int
}

// place chooses the node of a task that names none. Placements run one
// at a time.
func (q *Queen) place(ctx context.Context, req api.TaskRequest) placement {
	q.placing.choosing.Lock()
	defer q.placing.choosing.Unlock()
	p := q.choose(ctx, req)
	if p.settle == nil {
		p.settle = func() {}
	}
	return p
}

func (q *Queen) choose(ctx context.Context, req api.TaskRequest) placement {
	all, err := q.clusterWorkers(ctx)
	if err != nil {
		q.log.Debug("placement: the node registry could not be read; using the local node", "error", err)
		return placement{node: api.LocalNode, reason: "the node registry could not be read"}
	}
	_, counts, _ := q.queue.snapshot()
	depths := q.queue.depths()
	var free []candidate
	seen := map[workerKey]bool{}
	withWorkers := map[string]bool{}
	var reachable []*hiveClient
	for _, nw := range all {
		if nw.err != nil {
			if !q.absent(nw) {
				q.log.Debug("placement: skipping a node that did not answer", "node", nw.node, "error", nw.err)
			}
			continue
		}
		reachable = append(reachable, nw.hive)
		for _, w := range nw.workers {
			if !taskMatches(req, w.WorkerInfo) {
				continue
			}
			switch w.State {
			case api.StateIdle, api.StateBusy:
			case api.StateLoading:
				withWorkers[nw.node] = true
				continue
			default:
				continue
			}
			withWorkers[nw.node] = true
			wk := workerKey{node: nw.node, id: w.ID}
			seen[wk] = true
			c := counts[wk]
			busy := slotsBusy(strip(nw.node, w), c) + q.placing.count(wk)
			total := max(w.SlotsTotal, c.total)
			open := w.State == api.StateIdle || w.SlotsAvailable > 0
			if open && (total == 0 || busy < total) && c.waiting == 0 {
				free = append(free, candidate{node: nw.node, worker: w, busy: busy, total: total})
			}
		}
	}
	if len(free) > 0 {
		last := func(c candidate) uint64 { return q.placing.last[workerKey{node: c.node, id: c.worker.ID}] }
		best := slices.MinFunc(free, func(a, b candidate) int {
			return cmp.Or(cmp.Compare(a.busy, b.busy), cmp.Compare(last(a), last(b)),
				localFirst(a.node, b.node), cmp.Compare(a.worker.ID, b.worker.ID))
		})
		q.placing.chosen(workerKey{node: best.node, id: best.worker.ID}, seen)
		return placement{node: best.node, reason: fmt.Sprintf("worker %s has a free slot (%d of %s in use)",
			best.worker.ID, best.busy, slotCountText(best.total)),
			settle: q.placing.promise(workerKey{node: best.node, id: best.worker.ID})}
	}
	if len(withWorkers) > 0 {
		nodes := make([]string, 0, len(withWorkers))
		for n := range withWorkers {
			nodes = append(nodes, n)
		}
		best := slices.MinFunc(nodes, func(a, b string) int {
			return cmp.Or(cmp.Compare(depths[queueKey{a, req.Model}], depths[queueKey{b, req.Model}]), localFirst(a, b))
		})
		return placement{node: best, reason: fmt.Sprintf("its workers for %s have the shortest queue (%d waiting)",
			req.Model, depths[queueKey{best, req.Model}])}
	}
	slices.SortFunc(reachable, func(a, b *hiveClient) int { return localFirst(a.node, b.node) })
	for _, h := range reachable {
		if why, ok := q.canRun(ctx, h, req); ok {
			return placement{node: h.node, reason: why}
		} else if why != "" {
			q.log.Debug("placement: node cannot take the model", "node", h.node, "model", req.Model, "why", why)
		}
	}
	return placement{node: api.LocalNode, reason: fmt.Sprintf("no node holds %s yet; the local node fetches it", req.Model)}
}

// localFirst orders node names with the local node first, then by name.
func localFirst(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == api.LocalNode:
		return -1
	case b == api.LocalNode:
		return 1
	}
	return cmp.Compare(a, b)
}

func slotCountText(total int) string {
	if total == 0 {
		return "an unknown number of slots"
	}
	if total == 1 {
		return "1 slot"
	}
	return fmt.Sprintf("%d slots", total)
}

// taskMatches reports whether a worker serves a task's model (and its
// backend and device, when the task names them).
func taskMatches(req api.TaskRequest, w api.WorkerInfo) bool {
	if w.ModelRef != req.Model {
		return false
	}
	if req.Backend != "" && w.Backend != req.Backend {
		return false
	}
	return req.Device == nil || w.Device == *req.Device
}

// canRun reports whether the node's catalog holds the task's model (read
// from its header, so the file is there) and the node passes the preflight
// for a worker of it; otherwise it says why not ("" when the node simply
// does not hold the model).
func (q *Queen) canRun(ctx context.Context, h *hiveClient, req api.TaskRequest) (string, bool) {
	ref, e := api.ParseModelRef(req.Model)
	if e != nil {
		return "", false
	}
	canon := ref.String()
	lctx, cancel := context.WithTimeout(ctx, clusterListTimeout)
	defer cancel()
	var list api.ModelList
	if err := h.c.Do(lctx, http.MethodGet, "/v1/models", nil, &list); err != nil {
		return "its catalog could not be read: " + shortNetErr(err), false
	}
	held := slices.ContainsFunc(list.Models, func(m api.ModelEntry) bool { return m.Reference == canon && m.Meta != nil })
	if !held {
		return "", false
	}
	backend, device := req.Backend, 0
	if backend == "" {
		backend = api.BackendCPU
	}
	if req.Device != nil {
		device = *req.Device
	}
	var out api.PreflightResult
	err := h.c.Do(lctx, http.MethodPost, "/v1/workers/preflight", api.SpawnRequest{ModelRef: canon, Backend: backend, Device: device}, &out)
	if err != nil {
		return "preflight: " + shortNetErr(err), false
	}
	return fmt.Sprintf("its catalog holds %s and it passes preflight (%d MB needed, %d MB available)", req.Model, out.RequiredMB, out.AvailableMB), true
}
