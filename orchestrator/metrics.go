package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"rbee/api"
	"rbee/internal/httpx"
)

// Task outcomes, the values of rbee_tasks_total's outcome label.
const (
	outcomeDone      = "done"      // the worker's stream ended (EOS, stop string, max_tokens)
	outcomeCancelled = "cancelled" // DELETE /v2/tasks/{id}, or the client went away
	outcomeFailed    = "failed"    // an error ended it (its code counts in rbee_task_errors_total)
)

var outcomes = []string{outcomeCancelled, outcomeDone, outcomeFailed}

// durationBuckets are the upper bounds (seconds) of rbee_task_duration_seconds:
// a task runs from its request to its last event, cold starts included.
var durationBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// workerStates are the states rbee_workers counts (0 included) for every
// node whose hive answers.
var workerStates = []api.WorkerState{api.StateLoading, api.StateIdle, api.StateBusy, api.StateStopping, api.StateFailed}

// queenMetrics counts what the queen's tasks did since it started. The zero
// value is ready; it is safe for concurrent use.
type queenMetrics struct {
	mu           sync.Mutex
	tasks        map[string]uint64   // by outcome
	errors       map[api.Code]uint64 // failed tasks by code
	tokens       uint64              // generated
	promptTokens uint64
	buckets      []uint64 // per durationBuckets, not cumulative
	durSum       float64
	durCount     uint64

	queueWait  histogram // seconds a task waited in the queue
	firstToken histogram // seconds from a task's request to its first token
	tokensPerS histogram // a task's output tokens per second
}

// Bucket bounds of the queue's and the generation's histograms.
var (
	queueWaitBuckets  = []float64{0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	firstTokenBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	tokensPerSBuckets = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500}
)

// histogram is one Prometheus histogram: counts per bucket (not
// cumulative), their sum and count. Its owner guards it.
type histogram struct {
	counts []uint64
	sum    float64
	n      uint64
}

func (h *histogram) observe(bounds []float64, v float64) {
	if h.counts == nil {
		h.counts = make([]uint64, len(bounds))
	}
	if i, _ := slices.BinarySearch(bounds, v); i < len(bounds) {
		h.counts[i]++
	}
	h.sum += v
	h.n++
}

func (h histogram) clone() histogram {
	h.counts = slices.Clone(h.counts)
	return h
}

// write writes the histogram's series under name.
func (h histogram) write(b *bytes.Buffer, name string, bounds []float64) {
	var cum uint64
	for i, le := range bounds {
		if h.counts != nil {
			cum += h.counts[i]
		}
		fmt.Fprintf(b, "%s_bucket{le=%s} %d\n", name, labelValue(formatFloat(le)), cum)
	}
	fmt.Fprintf(b, "%s_bucket{le=\"+Inf\"} %d\n", name, h.n)
	fmt.Fprintf(b, "%s_sum %s\n", name, formatFloat(h.sum))
	fmt.Fprintf(b, "%s_count %d\n", name, h.n)
}

// queueWaited records how long a task waited in the queue.
func (m *queenMetrics) queueWaited(d time.Duration) {
	m.mu.Lock()
	m.queueWait.observe(queueWaitBuckets, d.Seconds())
	m.mu.Unlock()
}

// generated records a task's time to first token (from its request) and
// its output rate, for a task whose worker sent at least one token.
func (m *queenMetrics) generated(ttft time.Duration, tokensPerSecond float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.firstToken.observe(firstTokenBuckets, ttft.Seconds())
	if tokensPerSecond > 0 {
		m.tokensPerS.observe(tokensPerSBuckets, tokensPerSecond)
	}
}

// taskEnded records a task that ended with err (nil: done) after d; done is
// the worker's done event, if one came.
func (m *queenMetrics) taskEnded(ctx context.Context, err error, done *api.Done, d time.Duration) {
	outcome := outcomeDone
	var code api.Code
	switch {
	case err == nil:
		if done != nil && done.StopReason == api.StopCancelled {
			outcome = outcomeCancelled
		}
	case ctx.Err() != nil:
		// Cancelled (DELETE), the client gone, or the queen shutting down.
		outcome = outcomeCancelled
		if context.Cause(ctx) == errQueenShutdown {
			outcome, code = outcomeFailed, api.CodeShuttingDown
		}
	default:
		outcome, code = outcomeFailed, api.CodeInternal
		var e *api.Error
		if errors.As(err, &e) {
			code = e.Code
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tasks == nil {
		m.tasks = make(map[string]uint64)
		m.errors = make(map[api.Code]uint64)
		m.buckets = make([]uint64, len(durationBuckets))
	}
	m.tasks[outcome]++
	if code != "" {
		m.errors[code]++
	}
	if done != nil {
		m.tokens += uint64(max(done.TotalTokens, 0))
		m.promptTokens += uint64(max(done.PromptTokens, 0))
	}
	sec := d.Seconds()
	if i, _ := slices.BinarySearch(durationBuckets, sec); i < len(durationBuckets) {
		m.buckets[i]++
	}
	m.durSum += sec
	m.durCount++
}

// meteredSink passes a task's events on and keeps its done event and
// when the first token came.
type meteredSink struct {
	eventSink
	done       *api.Done
	firstToken time.Time
	tokens     int
	onToken    func() // called for each token, when set
}

func (s *meteredSink) Send(ev api.Event) error {
	if ev.Kind == api.KindToken {
		if s.tokens == 0 {
			s.firstToken = time.Now()
		}
		s.tokens++
		if s.onToken != nil {
			s.onToken()
		}
	}
	if ev.Kind == api.KindDone && ev.Done != nil {
		d := *ev.Done
		s.done = &d
	}
	return s.eventSink.Send(ev)
}

// nodeState is what a scrape learned of one node.
type nodeState struct {
	node    string
	up      bool
	workers map[api.WorkerState]int // by state
}

// writeMetrics writes the Prometheus text exposition (version 0.0.4) of the
// counters, the running tasks and the nodes.
func (m *queenMetrics) write(b *bytes.Buffer, running int, nodes []nodeState, queues map[queueKey]int, batches []workerBatches) {
	m.mu.Lock()
	queueWait, firstToken, tokensPerS := m.queueWait.clone(), m.firstToken.clone(), m.tokensPerS.clone()
	tasks := make(map[string]uint64, len(outcomes))
	for _, o := range outcomes {
		tasks[o] = m.tasks[o]
	}
	errs := make(map[api.Code]uint64, len(m.errors))
	for c, n := range m.errors {
		errs[c] = n
	}
	tokens, promptTokens := m.tokens, m.promptTokens
	buckets := slices.Clone(m.buckets)
	if buckets == nil {
		buckets = make([]uint64, len(durationBuckets))
	}
	durSum, durCount := m.durSum, m.durCount
	m.mu.Unlock()

	family := func(name, typ, help string) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	family("rbee_build_info", "gauge", "The queen's version (always 1).")
	fmt.Fprintf(b, "rbee_build_info{version=%s} 1\n", labelValue(api.Version))

	family("rbee_tasks_total", "counter", "Tasks (POST /v2/tasks and OpenAI-compatible requests) that ended, by outcome.")
	for _, o := range outcomes {
		fmt.Fprintf(b, "rbee_tasks_total{outcome=%s} %d\n", labelValue(o), tasks[o])
	}
	family("rbee_task_errors_total", "counter", "Failed tasks by error code.")
	codes := make([]string, 0, len(errs))
	for c := range errs {
		codes = append(codes, string(c))
	}
	slices.Sort(codes)
	for _, c := range codes {
		fmt.Fprintf(b, "rbee_task_errors_total{code=%s} %d\n", labelValue(c), errs[api.Code(c)])
	}
	family("rbee_tasks_running", "gauge", "Tasks running now.")
	fmt.Fprintf(b, "rbee_tasks_running %d\n", running)
	family("rbee_tokens_generated_total", "counter", "Tokens the workers generated for the queen's tasks.")
	fmt.Fprintf(b, "rbee_tokens_generated_total %d\n", tokens)
	family("rbee_prompt_tokens_total", "counter", "Prompt tokens of the queen's tasks, as the workers counted them.")
	fmt.Fprintf(b, "rbee_prompt_tokens_total %d\n", promptTokens)

	family("rbee_task_duration_seconds", "histogram", "Time from a task's request to its last event, cold starts included.")
	var cum uint64
	for i, le := range durationBuckets {
		cum += buckets[i]
		fmt.Fprintf(b, "rbee_task_duration_seconds_bucket{le=%s} %d\n", labelValue(formatFloat(le)), cum)
	}
	fmt.Fprintf(b, "rbee_task_duration_seconds_bucket{le=\"+Inf\"} %d\n", durCount)
	fmt.Fprintf(b, "rbee_task_duration_seconds_sum %s\n", formatFloat(durSum))
	fmt.Fprintf(b, "rbee_task_duration_seconds_count %d\n", durCount)

	family("rbee_queue_depth", "gauge", "Tasks waiting in the queen's queue for a free slot, by node and model (the total without labels).")
	total := 0
	keys := make([]queueKey, 0, len(queues))
	for k, n := range queues {
		keys = append(keys, k)
		total += n
	}
	slices.SortFunc(keys, func(a, b queueKey) int { return strings.Compare(a.node+"\x00"+a.model, b.node+"\x00"+b.model) })
	fmt.Fprintf(b, "rbee_queue_depth %d\n", total)
	for _, k := range keys {
		fmt.Fprintf(b, "rbee_queue_depth{node=%s,model=%s} %d\n", labelValue(k.node), labelValue(k.model), queues[k])
	}
	family("rbee_queue_wait_seconds", "histogram", "How long tasks waited in the queue for a free slot (those that got one and those that left).")
	queueWait.write(b, "rbee_queue_wait_seconds", queueWaitBuckets)
	family("rbee_time_to_first_token_seconds", "histogram", "Time from a task's request to its first token, queueing and cold starts included.")
	firstToken.write(b, "rbee_time_to_first_token_seconds", firstTokenBuckets)
	family("rbee_task_tokens_per_second", "histogram", "Output tokens per second of each task that generated tokens, as its worker measured it.")
	tokensPerS.write(b, "rbee_task_tokens_per_second", tokensPerSBuckets)

	family("rbee_hive_up", "gauge", "Whether the node's hive answered this scrape (1) or not (0).")
	for _, n := range nodes {
		up := 0
		if n.up {
			up = 1
		}
		fmt.Fprintf(b, "rbee_hive_up{node=%s} %d\n", labelValue(n.node), up)
	}
	family("rbee_workers", "gauge", "Workers by node and state, for the nodes whose hive answered.")
	for _, n := range nodes {
		if !n.up {
			continue
		}
		states := slices.Clone(workerStates)
		for s := range n.workers {
			if !slices.Contains(states, s) {
				states = append(states, s)
			}
		}
		for _, s := range states {
			fmt.Fprintf(b, "rbee_workers{node=%s,state=%s} %d\n", labelValue(n.node), labelValue(string(s)), n.workers[s])
		}
	}
	writeBatchSizes(b, batches)
}

// labelValue quotes a label value as the exposition format asks: backslash,
// double quote and newline escaped.
func labelValue(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// handleMetrics serves GET /metrics: the queen's counters and, from each
// hive's worker list (asked in parallel, 2 s each; no hive is started), the
// nodes' state, and from each ready worker its batch sizes. It needs the bearer token like every endpoint but /health.
func (q *Queen) handleMetrics(w http.ResponseWriter, r *http.Request) {
	// clusterWorkers asks the local node, then the registry's nodes in order.
	names := []string{api.LocalNode}
	if list, err := q.store.List(r.Context()); err == nil {
		for _, n := range list {
			names = append(names, n.Name)
		}
	}
	all, err := q.clusterWorkers(r.Context())
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	nodes := make([]nodeState, 0, len(all))
	for i, nw := range all {
		ns := nodeState{up: nw.err == nil, workers: map[api.WorkerState]int{}}
		switch {
		case nw.hive != nil:
			ns.node = nw.hive.node
		case len(all) == len(names):
			ns.node = names[i] // a node that could not be reached at all
		default:
			continue
		}
		for _, wi := range nw.workers {
			ns.workers[wi.State]++
		}
		nodes = append(nodes, ns)
	}
	var b bytes.Buffer
	batches := q.workerBatchSizes(r.Context(), all)
	q.metrics.write(&b, q.tasks.running(), nodes, q.queue.depths(), batches)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}
