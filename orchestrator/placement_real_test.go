package orchestrator

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/testutil"
)

// TestPlacementRealHivesSpread runs two real `rbee hive` processes on
// loopback, each with a real worker of a tiny model: the queen's local
// node and a registry node "ws" reached directly (no SSH: the node is
// registered as the add-node flow would save it). Tasks naming a node run
// there; tasks naming none, sent at once, are served by workers of both
// nodes, and each ran on a worker of the node its placement named.
func TestPlacementRealHivesSpread(t *testing.T) {
	skipShort(t)
	model := tinyModel(t)
	homeB := t.TempDir()
	portB := testutil.FreePort(t)
	startDaemon(t, homeB, "hive", "/v1/health", portB, "--host", "127.0.0.1",
		"--worker-port-start", strconv.Itoa(testutil.FreePort(t)), "--home", homeB)
	q, err := New(Config{Home: t.TempDir(), Binary: testutil.RbeeBinary(t), LocalHivePort: testutil.FreePort(t),
		LocalWorkerPortStart: testutil.FreePort(t), HiveRetryDelays: []time.Duration{0}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = q.Close() })
	srv := newHTTPTestServer(t, q)
	require.NoError(t, q.store.Add(t.Context(), api.Node{Name: "ws", SSHHost: "127.0.0.1", HivePort: portB}))

	// A named node is honoured: one worker on each node.
	for _, node := range []string{"ws", api.LocalNode} {
		res := postTask(t, t.Context(), srv, "", api.TaskRequest{Node: node, Model: model, Prompt: "Hi", SamplingParams: api.SamplingParams{MaxTokens: 4}}, nil)
		require.Nil(t, res.errorEvent(), "%+v", res.errorEvent())
		require.NotNil(t, res.done())
		assert.Empty(t, res.narration("placement"))
	}
	list, body := listWorkers(t, srv)
	require.Len(t, list.Workers, 2, body)
	workersOf := map[string][]string{}
	for _, w := range list.Workers {
		workersOf[w.Node] = append(workersOf[w.Node], w.ID)
	}
	require.Len(t, workersOf["ws"], 1, body)
	require.Len(t, workersOf[api.LocalNode], 1, body)

	const tasks = 4
	results := make([]*taskResult, tasks)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			results[i] = postTask(t, t.Context(), srv, "", api.TaskRequest{Model: model, Prompt: "Once upon a time", SamplingParams: api.SamplingParams{MaxTokens: 32}}, nil)
		})
	}
	wg.Wait()
	served := map[string]int{}
	for _, res := range results {
		require.Nil(t, res.errorEvent(), "%+v", res.errorEvent())
		require.NotNil(t, res.done())
		placed := res.narration("placement")
		require.Len(t, placed, 1)
		node := strings.TrimSuffix(strings.Fields(placed[0])[3], ":") // "Placing on node X: …"
		assert.Contains(t, workersOf[node], res.done().WorkerID, "ran on a worker of the node it was placed on (%s)", placed[0])
		served[node]++
	}
	assert.Positive(t, served["ws"], "tasks without a node reached ws: %v", served)
	assert.Positive(t, served[api.LocalNode], "tasks without a node reached local: %v", served)
	list, body = listWorkers(t, srv)
	assert.Len(t, list.Workers, 2, "no worker was added: %s", body)
}

// TestPlacementOverSSHNode: the queen's local node and an SSH node on
// loopback (added, installed and its hive started over a real OpenSSH
// connection), one worker of the same model on each: tasks sent at once
// without a node are served by both nodes' workers.
func TestPlacementOverSSHNode(t *testing.T) {
	skipShort(t)
	rs := newRemoteSetup(t, func(c *Config) {
		c.LocalHivePort, c.LocalWorkerPortStart = testutil.FreePort(t), testutil.FreePort(t)
	})
	req := rs.node(t, "ws")
	rs.add(t, req)
	res := rs.install(t, api.InstallRequest{Name: "ws"})
	require.Nil(t, res.errorEvent(), "%+v", res.errorEvent())
	model := tinyModel(t) // one file both nodes read: they share this machine

	for _, node := range []string{"ws", api.LocalNode} {
		res := postTask(t, t.Context(), rs.tq.url, "", api.TaskRequest{Node: node, Model: model, Prompt: "Hi", SamplingParams: api.SamplingParams{MaxTokens: 4}}, nil)
		require.Nil(t, res.errorEvent(), "%+v", res.errorEvent())
		require.NotNil(t, res.done())
	}
	list, body := listWorkers(t, rs.tq.url)
	require.Len(t, list.Workers, 2, body)
	nodeOf := map[string]string{}
	for _, w := range list.Workers {
		nodeOf[w.ID] = w.Node
	}

	const tasks = 4
	results := make([]*taskResult, tasks)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			results[i] = postTask(t, t.Context(), rs.tq.url, "", api.TaskRequest{Model: model, Prompt: "Once upon a time", SamplingParams: api.SamplingParams{MaxTokens: 32}}, nil)
		})
	}
	wg.Wait()
	served := map[string]int{}
	for _, res := range results {
		require.Nil(t, res.errorEvent(), "%+v", res.errorEvent())
		require.NotNil(t, res.done())
		served[nodeOf[res.done().WorkerID]]++
	}
	assert.Positive(t, served["ws"], "tasks without a node reached the SSH node: %v", served)
	assert.Positive(t, served[api.LocalNode], "tasks without a node reached local: %v", served)
	assert.Equal(t, tasks, served["ws"]+served[api.LocalNode], "every task ran on a listed worker: %v", served)
}
