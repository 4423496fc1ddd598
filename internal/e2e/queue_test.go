package e2e

import (
	"context"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee"
)

// TestQueueWaitsForAFreeSlot runs a second rbee infer while the only slot
// of the model's worker is busy, with the queen's queue on (the default):
// the task waits with the narration, GET /v2/queue and rbee workers list
// show it, and it succeeds once the first generation ends (here by Ctrl+C).
func TestQueueWaitsForAFreeSlot(t *testing.T) {
	c := newCluster(t, slowModel(t))
	c.startQueen()

	long := c.start(c.inferArgs("--max-tokens", "4000")...)
	long.waitFirstToken(t)
	ws := c.workers()
	require.Len(t, ws, 1)
	worker := ws[0]
	require.Equal(t, 1, worker.SlotsTotal, "the test needs a 1-slot worker")

	second := c.start(c.inferArgs("--max-tokens", "8", "--prompt", "A second question")...)
	var st *rbee.QueueStatus
	eventually(t, 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		st, err = c.client().Queue(ctx)
		return err == nil && st.Depth == 1
	}, "the second task never queued: %+v%s", st, c.logs())
	require.Len(t, st.Queues, 1)
	assert.Equal(t, "file:"+c.model, st.Queues[0].Model)
	require.Len(t, st.Queues[0].Tasks, 1)
	assert.Equal(t, worker.ID, st.Queues[0].Tasks[0].WorkerID)
	require.Len(t, st.Workers, 1)
	assert.Equal(t, rbee.WorkerSlots{Node: "local", WorkerID: worker.ID, Model: "file:" + c.model, SlotsBusy: 1, SlotsTotal: 1, QueueDepth: 1}, st.Workers[0])

	list := c.rbee("workers", "list", "--queen-url", c.queenURL())
	require.Equal(t, 0, list.code, "%s", list)
	assert.Regexp(t, regexp.MustCompile(`(?m)^local\s+`+regexp.QuoteMeta(worker.ID)+`\s+\S+\s+cpu:0\s+busy\s+1/1\s+1\s`), list.stdout)

	// The long generation is stopped: its slot goes to the waiting task.
	select {
	case <-second.exited:
		t.Fatalf("the second task ended while the first ran:\n%s", second.wait(t))
	default:
	}
	require.NoError(t, long.cmd.Process.Signal(syscall.SIGINT))
	assert.Equal(t, 130, long.wait(t).code)

	r := second.wait(t)
	assert.Equal(t, 0, r.code, "%s%s", r, c.logs())
	assert.NotEmpty(t, r.stdout, "the waiting task generated")
	assert.Contains(t, r.stderr, "[queen] Waiting for a free slot on worker "+worker.ID+" (0 ahead)\n")
	assert.NotContains(t, r.stderr, "retrying in", "the queue, not the busy retries")
	assert.Len(t, c.workers(), 1, "no second worker")
}

// TestQueueStartsSecondWorker: with --max-workers-per-model 2, a task that
// finds the model's only (1-slot) worker busy has the queen start a second
// worker on the node (the hive's preflight passes) and runs there while the
// first generation goes on; rbee workers list then shows both.
func TestQueueStartsSecondWorker(t *testing.T) {
	c := newCluster(t, slowModel(t))
	c.startQueen("--max-workers-per-model", "2")

	long := c.start(c.inferArgs("--max-tokens", "4000")...)
	long.waitFirstToken(t)
	ws := c.workers()
	require.Len(t, ws, 1)
	first := ws[0]
	require.Equal(t, 1, first.SlotsTotal, "the test needs a 1-slot worker")

	r := c.rbee(c.inferArgs("--max-tokens", "8", "--prompt", "A second question")...)
	assert.Equal(t, 0, r.code, "%s%s", r, c.logs())
	assert.NotEmpty(t, r.stdout, "the second task generated")
	assert.Contains(t, r.stderr, "are busy; starting another (at most 2 per model)", "%s", r)
	select {
	case <-long.exited:
		t.Fatalf("the first generation ended before the second task:\n%s", long.wait(t))
	default:
	}
	ws = c.workers()
	require.Len(t, ws, 2, "a second worker of the model")
	for _, w := range ws {
		assert.Equal(t, "file:"+c.model, w.ModelRef)
	}

	require.NoError(t, long.cmd.Process.Signal(syscall.SIGINT))
	assert.Equal(t, 130, long.wait(t).code)
}
