package worker

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"rbee/api"
)

// batchBuckets are the upper bounds of rbee_worker_batch_size: how many
// inferences one forward pass advanced.
var batchBuckets = []int{1, 2, 3, 4, 6, 8, 12, 16, 32, 64}

// batchHistogram counts the forward passes by batch size. The zero value is
// ready; it is safe for concurrent use.
type batchHistogram struct {
	mu     sync.Mutex
	counts []uint64 // per batchBuckets, not cumulative
	sum    uint64
	n      uint64
}

func (h *batchHistogram) observe(batch int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counts == nil {
		h.counts = make([]uint64, len(batchBuckets))
	}
	if i, _ := slices.BinarySearch(batchBuckets, batch); i < len(batchBuckets) {
		h.counts[i]++
	}
	h.sum += uint64(batch)
	h.n++
}

// write writes the histogram's series under name, in Prometheus's text format.
func (h *batchHistogram) write(b *bytes.Buffer, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var cum uint64
	for i, le := range batchBuckets {
		if h.counts != nil {
			cum += h.counts[i]
		}
		fmt.Fprintf(b, "%s_bucket{le=\"%d\"} %d\n", name, le, cum)
	}
	fmt.Fprintf(b, "%s_bucket{le=\"+Inf\"} %d\n", name, h.n)
	fmt.Fprintf(b, "%s_sum %d\n", name, h.sum)
	fmt.Fprintf(b, "%s_count %d\n", name, h.n)
}

// handleMetrics serves GET /metrics: the worker's slots and its scheduler's
// forward passes, in Prometheus's text format.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	h := s.Health()
	var b bytes.Buffer
	fmt.Fprintf(&b, "# HELP rbee_worker_slots The worker's inference slots.\n# TYPE rbee_worker_slots gauge\n")
	fmt.Fprintf(&b, "rbee_worker_slots %d\n", h.SlotsTotal)
	fmt.Fprintf(&b, "# HELP rbee_worker_slots_busy The slots running an inference now.\n# TYPE rbee_worker_slots_busy gauge\n")
	fmt.Fprintf(&b, "rbee_worker_slots_busy %d\n", h.SlotsBusy)
	fmt.Fprintf(&b, "# HELP rbee_worker_up 1 while the worker serves its model (idle or busy).\n# TYPE rbee_worker_up gauge\n")
	up := 0
	if h.State == api.StateIdle || h.State == api.StateBusy {
		up = 1
	}
	fmt.Fprintf(&b, "rbee_worker_up %d\n", up)
	fmt.Fprintf(&b, "# HELP rbee_worker_steps_total Forward passes run by the scheduler.\n# TYPE rbee_worker_steps_total counter\n")
	fmt.Fprintf(&b, "rbee_worker_steps_total %d\n", h.Steps)
	fmt.Fprintf(&b, "# HELP rbee_worker_batch_size Inferences advanced by one forward pass.\n# TYPE rbee_worker_batch_size histogram\n")
	s.stats.batches.write(&b, "rbee_worker_batch_size")
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}
