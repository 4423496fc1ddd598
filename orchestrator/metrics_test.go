package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/testutil"
)

// cancelledCtx is a context ended with cause.
func cancelledCtx(cause error) context.Context {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	return ctx
}

func TestMetricsExposition(t *testing.T) {
	var m queenMetrics
	bg := context.Background()
	m.taskEnded(bg, nil, &api.Done{TotalTokens: 5, PromptTokens: 3, StopReason: api.StopMaxTokens}, 300*time.Millisecond)
	m.taskEnded(bg, nil, &api.Done{TotalTokens: 2, PromptTokens: 4, StopReason: api.StopCancelled}, 1200*time.Millisecond)
	m.taskEnded(cancelledCtx(errTaskCancelled), context.Canceled, nil, 100*time.Millisecond)
	m.taskEnded(bg, api.Errorf(api.CodeModelNotFound, "no such model"), nil, 50*time.Millisecond)
	m.taskEnded(bg, errors.New("something odd"), nil, 2*time.Second)
	m.taskEnded(cancelledCtx(errQueenShutdown), context.Canceled, &api.Done{TotalTokens: 1}, 400*time.Second)

	m.queueWaited(1500 * time.Millisecond)
	m.queueWaited(20 * time.Millisecond)
	m.generated(300*time.Millisecond, 12.5)
	m.generated(2*time.Second, 0) // no rate reported: only the first token counts

	var b bytes.Buffer
	m.write(&b, 2, []nodeState{
		{node: "local", up: true, workers: map[api.WorkerState]int{api.StateIdle: 1, api.StateBusy: 2}},
		{node: "mac", up: false},
		{node: "odd", up: true, workers: map[api.WorkerState]int{"weird\"state": 1}},
	}, map[queueKey]int{{node: "mac", model: "hf:a/b"}: 1, {node: "local", model: "file:/m.gguf"}: 2}, []workerBatches{
		{node: "local", worker: "w-1", bounds: []string{"1", "2", "4"}, cum: []uint64{3, 5, 6}, count: 6, sum: 11},
		{node: "local", worker: "w-2", bounds: []string{"1", "2", "4"}, cum: []uint64{1, 1, 2}, count: 2, sum: 5},
		{node: "mac", worker: "old", bounds: []string{"1", "8"}, cum: []uint64{4, 4}, count: 4, sum: 4},
	})
	want := `# HELP rbee_build_info The queen's version (always 1).
# TYPE rbee_build_info gauge
rbee_build_info{version="` + api.Version + `"} 1
# HELP rbee_tasks_total Tasks (POST /v2/tasks and OpenAI-compatible requests) that ended, by outcome.
# TYPE rbee_tasks_total counter
rbee_tasks_total{outcome="cancelled"} 2
rbee_tasks_total{outcome="done"} 1
rbee_tasks_total{outcome="failed"} 3
# HELP rbee_task_errors_total Failed tasks by error code.
# TYPE rbee_task_errors_total counter
rbee_task_errors_total{code="INTERNAL"} 1
rbee_task_errors_total{code="MODEL_NOT_FOUND"} 1
rbee_task_errors_total{code="SHUTTING_DOWN"} 1
# HELP rbee_tasks_running Tasks running now.
# TYPE rbee_tasks_running gauge
rbee_tasks_running 2
# HELP rbee_tokens_generated_total Tokens the workers generated for the queen's tasks.
# TYPE rbee_tokens_generated_total counter
rbee_tokens_generated_total 8
# HELP rbee_prompt_tokens_total Prompt tokens of the queen's tasks, as the workers counted them.
# TYPE rbee_prompt_tokens_total counter
rbee_prompt_tokens_total 7
# HELP rbee_task_duration_seconds Time from a task's request to its last event, cold starts included.
# TYPE rbee_task_duration_seconds histogram
rbee_task_duration_seconds_bucket{le="0.1"} 2
rbee_task_duration_seconds_bucket{le="0.25"} 2
rbee_task_duration_seconds_bucket{le="0.5"} 3
rbee_task_duration_seconds_bucket{le="1"} 3
rbee_task_duration_seconds_bucket{le="2.5"} 5
rbee_task_duration_seconds_bucket{le="5"} 5
rbee_task_duration_seconds_bucket{le="10"} 5
rbee_task_duration_seconds_bucket{le="30"} 5
rbee_task_duration_seconds_bucket{le="60"} 5
rbee_task_duration_seconds_bucket{le="120"} 5
rbee_task_duration_seconds_bucket{le="300"} 5
rbee_task_duration_seconds_bucket{le="+Inf"} 6
rbee_task_duration_seconds_sum 403.65
rbee_task_duration_seconds_count 6
# HELP rbee_queue_depth Tasks waiting in the queen's queue for a free slot, by node and model (the total without labels).
# TYPE rbee_queue_depth gauge
rbee_queue_depth 3
rbee_queue_depth{node="local",model="file:/m.gguf"} 2
rbee_queue_depth{node="mac",model="hf:a/b"} 1
# HELP rbee_queue_wait_seconds How long tasks waited in the queue for a free slot (those that got one and those that left).
# TYPE rbee_queue_wait_seconds histogram
rbee_queue_wait_seconds_bucket{le="0.01"} 0
rbee_queue_wait_seconds_bucket{le="0.1"} 1
rbee_queue_wait_seconds_bucket{le="0.5"} 1
rbee_queue_wait_seconds_bucket{le="1"} 1
rbee_queue_wait_seconds_bucket{le="2.5"} 2
rbee_queue_wait_seconds_bucket{le="5"} 2
rbee_queue_wait_seconds_bucket{le="10"} 2
rbee_queue_wait_seconds_bucket{le="30"} 2
rbee_queue_wait_seconds_bucket{le="60"} 2
rbee_queue_wait_seconds_bucket{le="120"} 2
rbee_queue_wait_seconds_bucket{le="300"} 2
rbee_queue_wait_seconds_bucket{le="+Inf"} 2
rbee_queue_wait_seconds_sum 1.52
rbee_queue_wait_seconds_count 2
# HELP rbee_time_to_first_token_seconds Time from a task's request to its first token, queueing and cold starts included.
# TYPE rbee_time_to_first_token_seconds histogram
rbee_time_to_first_token_seconds_bucket{le="0.05"} 0
rbee_time_to_first_token_seconds_bucket{le="0.1"} 0
rbee_time_to_first_token_seconds_bucket{le="0.25"} 0
rbee_time_to_first_token_seconds_bucket{le="0.5"} 1
rbee_time_to_first_token_seconds_bucket{le="1"} 1
rbee_time_to_first_token_seconds_bucket{le="2.5"} 2
rbee_time_to_first_token_seconds_bucket{le="5"} 2
rbee_time_to_first_token_seconds_bucket{le="10"} 2
rbee_time_to_first_token_seconds_bucket{le="30"} 2
rbee_time_to_first_token_seconds_bucket{le="60"} 2
rbee_time_to_first_token_seconds_bucket{le="+Inf"} 2
rbee_time_to_first_token_seconds_sum 2.3
rbee_time_to_first_token_seconds_count 2
# HELP rbee_task_tokens_per_second Output tokens per second of each task that generated tokens, as its worker measured it.
# TYPE rbee_task_tokens_per_second histogram
rbee_task_tokens_per_second_bucket{le="1"} 0
rbee_task_tokens_per_second_bucket{le="2"} 0
rbee_task_tokens_per_second_bucket{le="5"} 0
rbee_task_tokens_per_second_bucket{le="10"} 0
rbee_task_tokens_per_second_bucket{le="20"} 1
rbee_task_tokens_per_second_bucket{le="50"} 1
rbee_task_tokens_per_second_bucket{le="100"} 1
rbee_task_tokens_per_second_bucket{le="200"} 1
rbee_task_tokens_per_second_bucket{le="500"} 1
rbee_task_tokens_per_second_bucket{le="+Inf"} 1
rbee_task_tokens_per_second_sum 12.5
rbee_task_tokens_per_second_count 1
# HELP rbee_hive_up Whether the node's hive answered this scrape (1) or not (0).
# TYPE rbee_hive_up gauge
rbee_hive_up{node="local"} 1
rbee_hive_up{node="mac"} 0
rbee_hive_up{node="odd"} 1
# HELP rbee_workers Workers by node and state, for the nodes whose hive answered.
# TYPE rbee_workers gauge
rbee_workers{node="local",state="loading"} 0
rbee_workers{node="local",state="idle"} 1
rbee_workers{node="local",state="busy"} 2
rbee_workers{node="local",state="stopping"} 0
rbee_workers{node="local",state="failed"} 0
rbee_workers{node="odd",state="loading"} 0
rbee_workers{node="odd",state="idle"} 0
rbee_workers{node="odd",state="busy"} 0
rbee_workers{node="odd",state="stopping"} 0
rbee_workers{node="odd",state="failed"} 0
rbee_workers{node="odd",state="weird\"state"} 1
# HELP rbee_worker_batch_size Inferences advanced by one forward pass, per ready worker, as the worker counts them since it started.
# TYPE rbee_worker_batch_size histogram
rbee_worker_batch_size_bucket{node="local",worker="w-1",le="1"} 3
rbee_worker_batch_size_bucket{node="local",worker="w-1",le="2"} 5
rbee_worker_batch_size_bucket{node="local",worker="w-1",le="4"} 6
rbee_worker_batch_size_bucket{node="local",worker="w-1",le="+Inf"} 6
rbee_worker_batch_size_sum{node="local",worker="w-1"} 11
rbee_worker_batch_size_count{node="local",worker="w-1"} 6
rbee_worker_batch_size_bucket{node="local",worker="w-2",le="1"} 1
rbee_worker_batch_size_bucket{node="local",worker="w-2",le="2"} 1
rbee_worker_batch_size_bucket{node="local",worker="w-2",le="4"} 2
rbee_worker_batch_size_bucket{node="local",worker="w-2",le="+Inf"} 2
rbee_worker_batch_size_sum{node="local",worker="w-2"} 5
rbee_worker_batch_size_count{node="local",worker="w-2"} 2
rbee_worker_batch_size_bucket{node="mac",worker="old",le="1"} 4
rbee_worker_batch_size_bucket{node="mac",worker="old",le="8"} 4
rbee_worker_batch_size_bucket{node="mac",worker="old",le="+Inf"} 4
rbee_worker_batch_size_sum{node="mac",worker="old"} 4
rbee_worker_batch_size_count{node="mac",worker="old"} 4
# HELP rbee_batch_size Inferences advanced by one forward pass, summed over the ready workers of every node.
# TYPE rbee_batch_size histogram
rbee_batch_size_bucket{le="1"} 4
rbee_batch_size_bucket{le="2"} 6
rbee_batch_size_bucket{le="4"} 8
rbee_batch_size_bucket{le="+Inf"} 8
rbee_batch_size_sum 16
rbee_batch_size_count 8
`
	assert.Equal(t, want, b.String())
	checkExposition(t, b.String())

	// A fresh queen exposes its counters at zero.
	var fresh queenMetrics
	b.Reset()
	fresh.write(&b, 0, nil, nil, nil)
	assert.Contains(t, b.String(), "rbee_tasks_total{outcome=\"done\"} 0\n")
	assert.Contains(t, b.String(), "rbee_batch_size_count 0\n")
	assert.Contains(t, b.String(), "rbee_task_duration_seconds_bucket{le=\"+Inf\"} 0\n")
	assert.Contains(t, b.String(), "rbee_task_duration_seconds_sum 0\n")
	checkExposition(t, b.String())
}

// TestParseBatchHistogram reads the batch-size histogram out of a worker's
// /metrics text, and refuses text without one or with a damaged sample.
func TestParseBatchHistogram(t *testing.T) {
	text := `# HELP rbee_worker_slots The worker's inference slots.
# TYPE rbee_worker_slots gauge
rbee_worker_slots 4
# HELP rbee_worker_steps_total Forward passes run by the scheduler.
# TYPE rbee_worker_steps_total counter
rbee_worker_steps_total 9
# HELP rbee_worker_batch_size Inferences advanced by one forward pass.
# TYPE rbee_worker_batch_size histogram
rbee_worker_batch_size_bucket{le="1"} 2
rbee_worker_batch_size_bucket{le="2"} 5
rbee_worker_batch_size_bucket{le="64"} 9
rbee_worker_batch_size_bucket{le="+Inf"} 9
rbee_worker_batch_size_sum 21
rbee_worker_batch_size_count 9
`
	h, ok := parseBatchHistogram(strings.NewReader(text))
	require.True(t, ok)
	assert.Equal(t, workerBatches{bounds: []string{"1", "2", "64"}, cum: []uint64{2, 5, 9}, count: 9, sum: 21}, h)

	for name, bad := range map[string]string{
		"none":       "rbee_worker_slots 4\n",
		"no count":   strings.ReplaceAll(text, "rbee_worker_batch_size_count 9\n", ""),
		"bad count":  strings.ReplaceAll(text, "_count 9", "_count nine"),
		"bad bucket": strings.ReplaceAll(text, `{le="2"} 5`, `{le="2"} -5`),
		"bad bound":  strings.ReplaceAll(text, `{le="2"}`, `{le="two"}`),
		"no value":   strings.ReplaceAll(text, "_sum 21", "_sum"),
	} {
		_, ok := parseBatchHistogram(strings.NewReader(bad))
		assert.False(t, ok, name)
	}
}

func TestLabelValue(t *testing.T) {
	assert.Equal(t, `"plain"`, labelValue("plain"))
	assert.Equal(t, `"a\\b\"c\nd"`, labelValue("a\\b\"c\nd"))
}

var (
	helpLine   = regexp.MustCompile(`^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$`)
	typeLine   = regexp.MustCompile(`^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$`)
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (\S+)$`)
	number     = regexp.MustCompile(`^(?:[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)|[-+]Inf|NaN)$`)
)

// checkExposition checks the text format's rules: HELP and TYPE lines
// before a family's samples, samples named after their family (histograms
// with _bucket, _sum and _count), valid numbers, no series twice, a final
// newline.
func checkExposition(t *testing.T, text string) {
	t.Helper()
	require.True(t, strings.HasSuffix(text, "\n"))
	types := map[string]string{}
	seen := map[string]bool{}
	family := ""
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if m := helpLine.FindStringSubmatch(line); m != nil {
			family = m[1]
			continue
		}
		if m := typeLine.FindStringSubmatch(line); m != nil {
			assert.Equal(t, family, m[1], "TYPE follows its HELP")
			assert.NotContains(t, types, m[1], "one TYPE per family")
			types[m[1]] = m[2]
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		if !assert.NotNil(t, m, "not a sample line: %q", line) {
			continue
		}
		name := m[1]
		base := name
		if types[family] == "histogram" {
			base = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		}
		assert.Equal(t, family, base, "sample %q belongs to the family above it", line)
		assert.Regexp(t, number, m[3], line)
		series := name + m[2]
		assert.False(t, seen[series], "series %s twice", series)
		seen[series] = true
	}
}

// TestMetricsEndpoint: GET /metrics needs the token, counts what the
// queen's tasks did and reports the nodes.
func TestMetricsEndpoint(t *testing.T) {
	const token = "queen-token-0123456789"
	s := newOAISetup(t, token)
	require.NoError(t, s.tq.q.store.Add(t.Context(), api.Node{Name: "mac", SSHHost: "127.0.0.1", HivePort: testutil.FreePort(t)}))

	status, e := call(t, "GET", s.tq.url+"/metrics", "", nil, nil)
	assert.Equal(t, http.StatusUnauthorized, status, "metrics are not public")
	require.NotNil(t, e)
	assert.Equal(t, api.CodeMissingAPIKey, e.Code)

	a := oaiCall(t, "POST", s.tq.url+"/v1/chat/completions", token, chatBody(nil), nil)
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	a = oaiCall(t, "POST", s.tq.url+"/v1/chat/completions", token, chatBody(map[string]any{"model": "file:/models/missing.gguf"}), nil)
	require.Equal(t, http.StatusInternalServerError, a.status, "the fake hive scripts no worker: %s", a.body)
	res := postTask(t, t.Context(), s.tq.url, token, taskBody("local"), nil)
	require.NotNil(t, res.done())

	m := oaiCall(t, "GET", s.tq.url+"/metrics", token, nil, nil)
	require.Equal(t, http.StatusOK, m.status, "%s", m.body)
	assert.Equal(t, "text/plain; version=0.0.4; charset=utf-8", m.header.Get("Content-Type"))
	text := string(m.body)
	checkExposition(t, text)
	for _, line := range []string{
		`rbee_tasks_total{outcome="done"} 2`,
		`rbee_tasks_total{outcome="failed"} 1`,
		`rbee_tasks_total{outcome="cancelled"} 0`,
		`rbee_task_errors_total{code="INTERNAL"} 1`,
		`rbee_tokens_generated_total 6`,
		`rbee_prompt_tokens_total 14`,
		`rbee_task_duration_seconds_count 3`,
		`rbee_tasks_running 0`,
		`rbee_hive_up{node="local"} 1`,
		`rbee_hive_up{node="mac"} 0`,
		`rbee_workers{node="local",state="idle"} 1`,
		`rbee_workers{node="local",state="busy"} 0`,
	} {
		assert.Contains(t, text, "\n"+line+"\n")
	}
	assert.NotContains(t, text, `rbee_workers{node="mac"`, "no worker counts for a node that did not answer")
}
