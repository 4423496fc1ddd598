package orchestrator

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/hivewire"
)

// twoNodes is a queen with two nodes, each a hive on loopback: local (the
// queen's local hive port) and ws (a registry node reached directly).
type twoNodes struct {
	tq            *testQueen
	local, remote *fakeHive
}

func newTwoNodes(t *testing.T, cfg Config) *twoNodes {
	t.Helper()
	n := &twoNodes{local: newFakeHive(t, ""), remote: newFakeHive(t, "")}
	cfg.LocalHivePort = n.local.port()
	n.tq = newTestQueen(t, cfg)
	require.NoError(t, n.tq.q.store.Add(t.Context(), api.Node{Name: "ws", SSHHost: "127.0.0.1", HivePort: n.remote.port()}))
	return n
}

// gatedWorker is a 1-slot idle worker of testModel on hive h whose
// generations wait until the returned open is called.
func gatedWorker(t *testing.T, h *fakeHive, id string) (*fakeWorker, func()) {
	t.Helper()
	w := newFakeWorker(t, id)
	gate := make(chan struct{})
	w.gate = gate
	h.addWorker(w.info(testModel, api.StateIdle))
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open)
	return w, open
}

func (w *fakeWorker) activeNow() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.active
}

// background posts a task and returns its result once it ended.
func background(t *testing.T, url string, body api.TaskRequest) <-chan *taskResult {
	out := make(chan *taskResult, 1)
	go func() { out <- postTask(t, context.Background(), url, "", body, nil) }()
	return out
}

func doneWorker(t *testing.T, r *taskResult) string {
	t.Helper()
	require.Nil(t, r.errorEvent(), "the task failed")
	d := r.done()
	require.NotNil(t, d, "no done event")
	return d.WorkerID
}

// TestPlacementSpreadsTasksOverTwoNodes: tasks without a node go to a
// worker with a free slot, whichever node it is on: the first to the
// local node (it wins a tie), the second, while the first holds the local
// worker's only slot, to the other node. A node whose hive does not answer
// is skipped, not fatal.
func TestPlacementSpreadsTasksOverTwoNodes(t *testing.T) {
	n := newTwoNodes(t, Config{})
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadPort := dead.Addr().(*net.TCPAddr).Port
	require.NoError(t, dead.Close())
	require.NoError(t, n.tq.q.store.Add(t.Context(), api.Node{Name: "dead", SSHHost: "127.0.0.1", HivePort: deadPort}))
	wl, gateL := gatedWorker(t, n.local, "w-local")
	wr, gateR := gatedWorker(t, n.remote, "w-ws")

	first := background(t, n.tq.url, taskBody(""))
	require.Eventually(t, func() bool { return wl.activeNow() == 1 }, 10*time.Second, 5*time.Millisecond, "the first task reaches the local worker")
	second := background(t, n.tq.url, taskBody(api.AutoNode))
	require.Eventually(t, func() bool { return wr.activeNow() == 1 }, 10*time.Second, 5*time.Millisecond, "the second task reaches the other node's worker")
	gateL()
	gateR()

	r1, r2 := recv(t, first, "the first task"), recv(t, second, "the second task")
	assert.Equal(t, "w-local", doneWorker(t, r1))
	assert.Equal(t, "w-ws", doneWorker(t, r2))
	assert.Equal(t, []string{"Placing on node local: worker w-local has a free slot (0 of 1 slot in use)"}, r1.narration("placement"))
	assert.Equal(t, []string{"Placing on node ws: worker w-ws has a free slot (0 of 1 slot in use)"}, r2.narration("placement"))
	assert.Contains(t, r2.narration("task_start")[0], "on node ws")
	for _, ev := range r2.events {
		if ev.Kind == api.KindNarration && ev.Narration.Actor == api.ActorQueen {
			assert.Equal(t, "ws", ev.Narration.Node, "narration after placement names the node")
		}
	}
}

// TestPlacementNamedNodeHonoured: a task naming a node runs there even
// when a worker on another node is free, and says nothing of placement.
func TestPlacementNamedNodeHonoured(t *testing.T) {
	n := newTwoNodes(t, Config{})
	_, gateL := gatedWorker(t, n.local, "w-local")
	_, gateR := gatedWorker(t, n.remote, "w-ws")
	gateL()
	gateR()
	for _, tc := range []struct{ node, worker string }{{"ws", "w-ws"}, {"local", "w-local"}} {
		r := postTask(t, t.Context(), n.tq.url, "", taskBody(tc.node), nil)
		assert.Equal(t, tc.worker, doneWorker(t, r), "node %s", tc.node)
		assert.Empty(t, r.narration("placement"))
	}
}

// TestPlacementRoundRobinOnTies: tasks without a node sent one after
// another, each ended before the next, find both workers free every time;
// the tie goes to the worker given a task the longest ago, so they
// alternate from the local node on, and both nodes serve.
func TestPlacementRoundRobinOnTies(t *testing.T) {
	n := newTwoNodes(t, Config{})
	_, gateL := gatedWorker(t, n.local, "w-local")
	_, gateR := gatedWorker(t, n.remote, "w-ws")
	gateL()
	gateR()
	var got []string
	for range 4 {
		got = append(got, doneWorker(t, postTask(t, t.Context(), n.tq.url, "", taskBody(""), nil)))
	}
	assert.Equal(t, []string{"w-local", "w-ws", "w-local", "w-ws"}, got)
}

// TestPlacementShortestQueue: with every worker of the model busy, a task
// without a node goes to the node whose workers have the shortest queue.
func TestPlacementShortestQueue(t *testing.T) {
	n := newTwoNodes(t, Config{})
	wl, gateL := gatedWorker(t, n.local, "w-local")
	wr, gateR := gatedWorker(t, n.remote, "w-ws")
	// Local: one task runs and one waits; ws: one runs, none waits.
	l1 := background(t, n.tq.url, taskBody("local"))
	require.Eventually(t, func() bool { return wl.activeNow() == 1 }, 10*time.Second, 5*time.Millisecond)
	l2 := background(t, n.tq.url, taskBody("local"))
	w1 := background(t, n.tq.url, taskBody("ws"))
	require.Eventually(t, func() bool {
		return wr.activeNow() == 1 && n.tq.q.queue.depths()[queueKey{"local", testModel}] == 1
	}, 10*time.Second, 5*time.Millisecond)

	placed := background(t, n.tq.url, taskBody(""))
	require.Eventually(t, func() bool { return n.tq.q.queue.depths()[queueKey{"ws", testModel}] == 1 }, 10*time.Second, 5*time.Millisecond,
		"the task waits on ws")
	gateL()
	gateR()
	for _, c := range []<-chan *taskResult{l1, l2, w1} {
		doneWorker(t, recv(t, c, "a task"))
	}
	r := recv(t, placed, "the placed task")
	assert.Equal(t, "w-ws", doneWorker(t, r))
	assert.Equal(t, []string{"Placing on node ws: its workers for " + testModel + " have the shortest queue (0 waiting)"}, r.narration("placement"))
}

// TestPlacementCatalogAndPreflight: with no worker of the model anywhere,
// a task goes to a node whose catalog holds the model and that passes
// preflight; when that node fails preflight, to the local node.
func TestPlacementCatalogAndPreflight(t *testing.T) {
	ref, e := api.ParseModelRef(testModel)
	require.Nil(t, e)
	entry := api.ModelEntry{Provider: "file", Reference: ref.String(), Meta: &api.ModelMeta{}}

	n := newTwoNodes(t, Config{})
	n.remote.models = []api.ModelEntry{entry}
	n.remote.spawnNext = newFakeWorker(t, "w-new-ws")
	n.local.spawnNext = newFakeWorker(t, "w-new-local")
	r := postTask(t, t.Context(), n.tq.url, "", taskBody(""), nil)
	assert.Equal(t, "w-new-ws", doneWorker(t, r))
	require.Len(t, r.narration("placement"), 1)
	assert.True(t, strings.HasPrefix(r.narration("placement")[0], "Placing on node ws: its catalog holds "+testModel+" and it passes preflight"),
		r.narration("placement")[0])
	assert.Equal(t, 1, n.remote.spawnCount())
	assert.Zero(t, n.local.spawnCount())

	m := newTwoNodes(t, Config{})
	m.remote.models = []api.ModelEntry{entry}
	m.remote.preflight = api.Errorf(api.CodeInsufficientRAM, "Insufficient RAM: need 1200 MB, have 800 MB")
	m.local.spawnNext = newFakeWorker(t, "w-new-local")
	r = postTask(t, t.Context(), m.tq.url, "", taskBody(""), nil)
	assert.Equal(t, "w-new-local", doneWorker(t, r))
	assert.Equal(t, []string{"Placing on node local: no node holds " + testModel + " yet; the local node fetches it"}, r.narration("placement"))
	assert.Equal(t, 1, m.remote.preflights)
	assert.Zero(t, m.remote.spawnCount())
}

// TestPlacementOpenAIWithoutNode: an OpenAI-compatible request without a
// node is placed like a task without one.
func TestPlacementOpenAIWithoutNode(t *testing.T) {
	n := newTwoNodes(t, Config{})
	_, gateR := gatedWorker(t, n.remote, "w-ws")
	gateR()
	var out struct {
		Choices []struct {
			Text string `json:"text"`
		} `json:"choices"`
	}
	status, e := call(t, "POST", n.tq.url+"/v1/completions", "", map[string]any{"model": testModel, "prompt": "Once", "max_tokens": 4}, &out)
	require.Nil(t, e)
	assert.Equal(t, 200, status)
	require.Len(t, out.Choices, 1)
	assert.Equal(t, "Once upon a time", out.Choices[0].Text, "served by the only worker, on ws")
}

// moreWorkersSetup is a queen whose local hive has one busy 1-slot worker
// (a task holds its slot until release) and would spawn spare.
type moreWorkersSetup struct {
	tq      *testQueen
	hive    *fakeHive
	first   *fakeWorker
	release func()
	holder  <-chan *taskResult
	spare   *fakeWorker
}

func newMoreWorkersSetup(t *testing.T, cfg Config) *moreWorkersSetup {
	t.Helper()
	s := &moreWorkersSetup{hive: newFakeHive(t, ""), spare: newFakeWorker(t, "w-2")}
	s.first, s.release = gatedWorker(t, s.hive, "w-1")
	s.hive.spawnNext = s.spare
	cfg.LocalHivePort = s.hive.port()
	s.tq = newTestQueen(t, cfg)
	s.holder = background(t, s.tq.url, taskBody("local"))
	require.Eventually(t, func() bool { return s.first.activeNow() == 1 }, 10*time.Second, 5*time.Millisecond)
	return s
}

// TestMoreWorkersSecondStartedWhileTasksWait: with max_workers_per_model 2,
// a task that finds the model's only worker busy has the queen start a
// second one (the hive's preflight passes) and runs there at once.
func TestMoreWorkersSecondStartedWhileTasksWait(t *testing.T) {
	s := newMoreWorkersSetup(t, Config{MaxWorkersPerModel: 2})
	r := postTask(t, t.Context(), s.tq.url, "", taskBody("local"), nil)
	assert.Equal(t, "w-2", doneWorker(t, r), "served by the new worker while the first is still busy")
	assert.Equal(t, 1, s.hive.spawnCount())
	assert.Equal(t, []string{"All 1 workers with " + testModel + " on local are busy; starting another (at most 2 per model)"}, r.narration("worker_more"))
	assert.Empty(t, r.narration("queued"))
	assert.Equal(t, 1, s.first.activeNow(), "the first task still holds its worker")
	s.release()
	assert.Equal(t, "w-1", doneWorker(t, recv(t, s.holder, "the first task")))

	// Both are there now; a third task takes whichever is free and starts
	// no third worker.
	r = postTask(t, t.Context(), s.tq.url, "", taskBody("local"), nil)
	doneWorker(t, r)
	assert.Equal(t, 1, s.hive.spawnCount())
}

// TestMoreWorkersNotBeyondTheLimit: with the default of one worker per
// model, the task waits in the queue for the busy worker instead.
func TestMoreWorkersNotBeyondTheLimit(t *testing.T) {
	s := newMoreWorkersSetup(t, Config{})
	waiting := make(chan *taskResult, 1)
	queued := make(chan struct{}, 1)
	go func() {
		waiting <- postTask(t, context.Background(), s.tq.url, "", taskBody("local"), func(ev api.Event) {
			if ev.Kind == api.KindNarration && ev.Narration.Action == "queued" {
				queued <- struct{}{}
			}
		})
	}()
	recv(t, queued, "the queued narration")
	s.release()
	r := recv(t, waiting, "the waiting task")
	assert.Equal(t, "w-1", doneWorker(t, r))
	assert.Zero(t, s.hive.spawnCount())
	assert.Empty(t, r.narration("worker_more"))
	doneWorker(t, recv(t, s.holder, "the first task"))
}

// TestMoreWorkersPreflightRefuses: when the hive's preflight refuses
// another copy, the task says so and waits for the busy worker.
func TestMoreWorkersPreflightRefuses(t *testing.T) {
	s := newMoreWorkersSetup(t, Config{MaxWorkersPerModel: 2})
	s.hive.spawnErr = api.Errorf(api.CodeInsufficientRAM, "Insufficient RAM: need 1200 MB, have 800 MB")
	waiting := background(t, s.tq.url, taskBody("local"))
	require.Eventually(t, func() bool { return s.tq.q.queue.depths()[queueKey{"local", testModel}] == 1 }, 10*time.Second, 5*time.Millisecond)
	s.release()
	r := recv(t, waiting, "the waiting task")
	assert.Equal(t, "w-1", doneWorker(t, r))
	assert.Equal(t, 1, s.hive.spawnCount())
	assert.Equal(t, []string{"Not starting another worker on local: Insufficient RAM: need 1200 MB, have 800 MB; waiting for a free slot of worker w-1"},
		r.narration("worker_more_refused"))
	doneWorker(t, recv(t, s.holder, "the first task"))
}

// TestMoreWorkersCrashedWorkerSendsWaiterElsewhere: a task waiting for a
// worker that then stops answering is not failed when its turn comes: it
// goes to another worker of the model.
func TestMoreWorkersCrashedWorkerSendsWaiterElsewhere(t *testing.T) {
	s := newMoreWorkersSetup(t, Config{})
	waiting := background(t, s.tq.url, taskBody("local"))
	require.Eventually(t, func() bool { return s.tq.q.queue.depths()[queueKey{"local", testModel}] == 1 }, 10*time.Second, 5*time.Millisecond)
	// The busy worker dies (its hive forgets it), and a new one of the
	// model is found by the next task's look at the hive.
	s.hive.mu.Lock()
	s.hive.workers = []hivewire.Worker{s.spare.info(testModel, api.StateIdle)}
	s.hive.mu.Unlock()
	require.NoError(t, s.first.srv.Listener.Close())
	s.first.srv.CloseClientConnections()
	r := recv(t, waiting, "the waiting task")
	assert.Equal(t, []string{"No worker with " + testModel + " on local is left for this task; looking for another"}, r.narration("worker_search"))
	assert.Equal(t, "w-2", doneWorker(t, r))
	assert.Equal(t, api.CodeWorkerCrashed, recv(t, s.holder, "the first task").errorEvent().Code)
}

// TestPlacementTasksAtOnceSpread: tasks placed at the same moment spread
// over the free workers: a placement promises the slot it counted on until
// its task takes it.
func TestPlacementTasksAtOnceSpread(t *testing.T) {
	n := newTwoNodes(t, Config{})
	_, openL := gatedWorker(t, n.local, "w-local")
	_, openR := gatedWorker(t, n.remote, "w-ws")
	a := n.tq.q.place(t.Context(), taskBody(""))
	b := n.tq.q.place(t.Context(), taskBody(""))
	assert.Equal(t, "local", a.node)
	assert.Equal(t, "ws", b.node, "the local worker's slot is promised to the first task")
	a.settle()
	a.settle() // twice is harmless
	c := n.tq.q.place(t.Context(), taskBody(""))
	assert.Equal(t, "local", c.node, "the promise ended")
	b.settle()
	c.settle()
	openL()
	openR()
}
