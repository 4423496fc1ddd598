package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee"
	"rbee/api"
)

// jsonLine is one line of rbee infer --json.
type jsonLine struct {
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

func parseJSONLines(t *testing.T, out string) []jsonLine {
	t.Helper()
	var lines []jsonLine
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var jl jsonLine
		require.NoError(t, json.Unmarshal([]byte(l), &jl), l)
		lines = append(lines, jl)
	}
	return lines
}

// errorEvent reads the error of an --json error line ({"error": {...}}).
func errorEvent(t *testing.T, l jsonLine) *api.Error {
	t.Helper()
	var env api.Envelope
	require.NoError(t, json.Unmarshal(l.Data, &env), string(l.Data))
	require.NotNil(t, env.Error, string(l.Data))
	return env.Error
}

// TestS35BusyWorker runs a second rbee infer for a model whose only worker
// is busy with a long generation (EC6), with the queen's queue off: the
// worker answers ALL_SLOTS_BUSY,
// the queen retries after each of its busy delays (1, 2 and 4 s by
// default; shorter here), saying so, then gives up with the
// suggestion to wait or use another node, and the keeper exits 1. The
// running generation is untouched and is cancelled at the end.
func TestS35BusyWorker(t *testing.T) {
	c := newCluster(t, slowModel(t))
	// The policy is 1, 2 and 4 s (DefaultBusyRetryDelays); the test keeps
	// its shape, doubling, but shorter, so that the long generation below
	// outlasts the retries by far even on a fast machine.
	// With the queue off (--max-queue 0), as here, the queen retries the
	// busy worker; with it on, the task would wait its turn instead.
	c.startQueen("--busy-retry-delays", "250ms,500ms,1s", "--max-queue", "0")

	// A generation far longer than the test: 4000 tokens, about 13 s on two
	// cores; the retries take under 2 s.
	long := c.start(c.inferArgs("--max-tokens", "4000")...)
	long.waitFirstToken(t)
	ws := c.workers()
	require.Len(t, ws, 1)
	worker := ws[0]

	// Two more tasks for the same model at once: the keeper's lines, and
	// the events as JSON.
	var plain, asJSON result
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		plain = c.rbee(c.inferArgs("--max-tokens", "8", "--prompt", "A second question")...)
	}()
	go func() {
		defer wg.Done()
		asJSON = c.rbee(c.inferArgs("--max-tokens", "8", "--prompt", "A third question", "--json")...)
	}()
	wg.Wait()

	select {
	case <-long.exited:
		t.Fatalf("the long generation ended while the others retried:\n%s", long.wait(t))
	default:
	}

	t.Run("S35", func(t *testing.T) {
		r := plain
		assert.Equal(t, 1, r.code, "%s%s", r, c.logs())
		assert.Empty(t, r.stdout, "no token came")
		assert.Contains(t, r.stderr, "[queen] Worker "+worker.ID+" with file:"+c.model+" on local is busy (1/1 slots in use); waiting for a free slot\n",
			"the queen takes the busy worker rather than spawning another (S11)")
		assert.NotContains(t, r.stderr, "Spawning")
		assert.Contains(t, r.stderr, "rbee infer: worker "+worker.ID+" on local is still busy after 3 retries (1 of 1 slots in use)\n")
		assert.True(t, strings.HasSuffix(r.stderr, "hint: wait for the running inference to finish or use another node\n"), r.stderr)
		assert.Len(t, c.workers(), 1, "no second worker")
	})

	t.Run("S41", func(t *testing.T) {
		// The retries are narrated one per line, in order, with their delays.
		re := regexp.MustCompile(`\[queen\] Worker (\S+) is busy \(1 of 1 slots in use\); retrying in (\S+) \(retry (\d)/3\)\n`)
		var got []string
		for _, m := range re.FindAllStringSubmatch(plain.stderr, -1) {
			assert.Equal(t, worker.ID, m[1])
			got = append(got, m[2]+" "+m[3])
		}
		assert.Equal(t, []string{"250ms 1", "500ms 2", "1s 3"}, got, plain.stderr)
		assert.GreaterOrEqual(t, plain.took, 1750*time.Millisecond, "the queen waited between the attempts")

		// The same through --json: three busy_retry narrations, then the
		// error event ALL_SLOTS_BUSY with its details and hint.
		r := asJSON
		assert.Equal(t, 1, r.code, "%s%s", r, c.logs())
		lines := parseJSONLines(t, r.stdout)
		require.NotEmpty(t, lines)
		var retries []string
		for _, l := range lines {
			if l.Event != "narration" {
				continue
			}
			var n rbee.Narration
			require.NoError(t, json.Unmarshal(l.Data, &n))
			if n.Action == "busy_retry" {
				retries = append(retries, n.Human)
			}
		}
		assert.Len(t, retries, 3, r.stdout)
		last := lines[len(lines)-1]
		require.Equal(t, "error", last.Event, r.stdout)
		e := errorEvent(t, last)
		assert.Equal(t, api.CodeAllSlotsBusy, e.Code)
		assert.EqualValues(t, 1, e.Details["slots_total"])
		assert.EqualValues(t, 1, e.Details["slots_busy"])
		assert.EqualValues(t, 3, e.Details["retries"])
		assert.Equal(t, "wait for the running inference to finish or use another node", e.Details["hint"])
	})

	// The long generation still runs; Ctrl+C ends it and frees the slot.
	require.NoError(t, long.cmd.Process.Signal(syscall.SIGINT))
	r := long.wait(t)
	assert.Equal(t, 130, r.code, "%s%s", r, c.logs())
	assert.NotContains(t, r.stderr, "is busy", "the first task never waited")
	eventually(t, 10*time.Second, func() bool {
		ws := c.workers()
		return len(ws) == 1 && ws[0].State == rbee.StateIdle
	}, "the worker did not go back to idle: %v", c.workers())
}

// TestS38InsufficientVRAM asks for a cuda device too small for the model
// (EC3): the local hive, started by the queen with a stand-in GPU of 1 MB,
// refuses in its preflight with VRAM_EXHAUSTED, both sizes and a hint that
// weighs smaller quantizations (none would fit in 1 MB); no worker starts
// and the keeper exits 1.
func TestS38InsufficientVRAM(t *testing.T) {
	c := newCluster(t, tinyModel(t))
	c.startQueen("--local-fake-devices", "cuda:0:1")
	st, err := os.Stat(c.model)
	require.NoError(t, err)
	need := int64(math.Ceil(float64(st.Size()) * 1.2 / (1 << 20)))
	require.Greater(t, need, int64(1), "the model must not fit in 1 MB")

	r := c.rbee(c.inferArgs("--backend", "cuda", "--device", "0", "--max-tokens", "4")...)
	assert.Equal(t, 1, r.code, "%s%s", r, c.logs())
	assert.Empty(t, r.stdout)
	assert.Contains(t, r.stderr, "[queen] Spawning a worker for file:"+c.model+" on local (cuda:0)\n")
	assert.Contains(t, r.stderr, fmt.Sprintf("rbee infer: Insufficient VRAM on cuda:0: need %d MB, have 1 MB\n", need))
	assert.True(t, strings.HasSuffix(r.stderr,
		"hint: the model is Q8_0 (about 8.5 bits per weight); even Q2_K (about 3 bits per weight) would need about 2 MB: "+
			"use a smaller model (fewer parameters) or a node with more memory\n"), r.stderr)
	assert.Empty(t, c.workers(), "no worker registered")
	assert.Empty(t, c.role("worker"), "no worker process")

	t.Run("json", func(t *testing.T) {
		r := c.rbee(c.inferArgs("--backend", "cuda", "--device", "0", "--max-tokens", "4", "--json")...)
		assert.Equal(t, 1, r.code, "%s%s", r, c.logs())
		lines := parseJSONLines(t, r.stdout)
		require.NotEmpty(t, lines)
		last := lines[len(lines)-1]
		require.Equal(t, "error", last.Event, r.stdout)
		e := errorEvent(t, last)
		assert.Equal(t, api.CodeVRAMExhausted, e.Code)
		assert.EqualValues(t, need, e.Details["required"])
		assert.EqualValues(t, 1, e.Details["available"])
		assert.Equal(t, "cuda:0", e.Details["device"])
	})

	t.Run("cpu still works", func(t *testing.T) {
		r := c.rbee(c.inferArgs("--max-tokens", "4")...)
		assert.Equal(t, 0, r.code, "%s%s", r, c.logs())
		assert.NotEmpty(t, strings.TrimSpace(r.stdout))
	})
}
