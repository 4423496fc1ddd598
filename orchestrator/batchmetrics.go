package orchestrator

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"rbee/api"
)

// The workers keep the histogram of how many inferences each of their
// forward passes advanced (rbee_worker_batch_size on a worker's own GET
// /metrics). The queen's /metrics asks every ready worker for it while it
// is scraped, like the worker list, and shows it per worker (node and
// worker labels) and summed over the cluster (rbee_batch_size): one place
// to see whether the workers are batching. A worker's counts start at zero
// when it starts and leave with it; a worker that does not answer within
// the scrape's bound is left out of that scrape.

// batchFamily is the name of the histogram on a worker's /metrics.
const batchFamily = "rbee_worker_batch_size"

// workerBatches is one worker's batch-size histogram as it reported it.
type workerBatches struct {
	node, worker string
	bounds       []string // the finite upper bounds, as the worker wrote them
	cum          []uint64 // cumulative counts per bound
	count        uint64   // every pass (the +Inf bucket)
	sum          float64
}

// parseBatchHistogram reads the rbee_worker_batch_size histogram from a
// worker's /metrics text. It reports false when the text has no such
// histogram or a sample of it cannot be read.
func parseBatchHistogram(r io.Reader) (workerBatches, bool) {
	var h workerBatches
	var haveCount, haveSum bool
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, batchFamily+"_") {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			return h, false
		}
		switch {
		case strings.HasPrefix(name, batchFamily+`_bucket{le="`) && strings.HasSuffix(name, `"}`):
			le := strings.TrimSuffix(strings.TrimPrefix(name, batchFamily+`_bucket{le="`), `"}`)
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return h, false
			}
			if le == "+Inf" {
				continue // the same as _count
			}
			if _, err := strconv.ParseFloat(le, 64); err != nil {
				return h, false
			}
			h.bounds = append(h.bounds, le)
			h.cum = append(h.cum, n)
		case name == batchFamily+"_count":
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return h, false
			}
			h.count, haveCount = n, true
		case name == batchFamily+"_sum":
			f, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return h, false
			}
			h.sum, haveSum = f, true
		}
	}
	if sc.Err() != nil || !haveCount || !haveSum || len(h.bounds) == 0 {
		return h, false
	}
	return h, true
}

// workerBatchSizes asks every idle or busy worker of the nodes that
// answered for its batch-size histogram, all at once, each within
// clusterListTimeout, and returns those that answered, sorted by node and
// worker.
func (q *Queen) workerBatchSizes(ctx context.Context, all []nodeWorkers) []workerBatches {
	var (
		mu  sync.Mutex
		out []workerBatches
		wg  sync.WaitGroup
	)
	for _, nw := range all {
		if nw.err != nil || nw.hive == nil {
			continue
		}
		node := nw.hive.node
		for _, w := range nw.workers {
			if w.State != api.StateIdle && w.State != api.StateBusy {
				continue
			}
			wg.Go(func() {
				wctx, cancel := context.WithTimeout(ctx, clusterListTimeout)
				defer cancel()
				h, err := q.scrapeBatches(wctx, node, w.ID, w.URL, w.APIKey)
				if err != nil {
					q.log.Debug("worker did not report its batch sizes", "node", node, "worker_id", w.ID, "error", err)
					return
				}
				mu.Lock()
				out = append(out, h)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b workerBatches) int {
		return cmp.Or(cmp.Compare(a.node, b.node), cmp.Compare(a.worker, b.worker))
	})
	return out
}

// scrapeBatches reads one worker's GET /metrics.
func (q *Queen) scrapeBatches(ctx context.Context, node, id, rawURL, token string) (workerBatches, error) {
	wc, err := q.newWorkerClient(node, id, rawURL, token)
	if err != nil {
		return workerBatches{}, err
	}
	req, err := wc.c.NewRequest(ctx, http.MethodGet, "/metrics", nil)
	if err != nil {
		return workerBatches{}, err
	}
	hc := wc.c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return workerBatches{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return workerBatches{}, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	h, ok := parseBatchHistogram(io.LimitReader(resp.Body, 1<<20))
	if !ok {
		return workerBatches{}, fmt.Errorf("GET /metrics: no readable %s histogram", batchFamily)
	}
	h.node, h.worker = node, id
	return h, nil
}

// writeBatchSizes writes the workers' histograms, one series set per
// worker, and their sum over the workers that share the first one's
// bounds (every worker of one rbee version does).
func writeBatchSizes(b *bytes.Buffer, hs []workerBatches) {
	family := func(name, help string) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	}
	family(batchFamily, "Inferences advanced by one forward pass, per ready worker, as the worker counts them since it started.")
	for _, h := range hs {
		labels := "node=" + labelValue(h.node) + ",worker=" + labelValue(h.worker)
		for i, le := range h.bounds {
			fmt.Fprintf(b, "%s_bucket{%s,le=%s} %d\n", batchFamily, labels, labelValue(le), h.cum[i])
		}
		fmt.Fprintf(b, "%s_bucket{%s,le=\"+Inf\"} %d\n", batchFamily, labels, h.count)
		fmt.Fprintf(b, "%s_sum{%s} %s\n", batchFamily, labels, formatFloat(h.sum))
		fmt.Fprintf(b, "%s_count{%s} %d\n", batchFamily, labels, h.count)
	}

	family("rbee_batch_size", "Inferences advanced by one forward pass, summed over the ready workers of every node.")
	var total workerBatches
	for _, h := range hs {
		if total.bounds == nil {
			total.bounds, total.cum = h.bounds, make([]uint64, len(h.bounds))
		}
		if !slices.Equal(h.bounds, total.bounds) {
			continue
		}
		for i, n := range h.cum {
			total.cum[i] += n
		}
		total.count += h.count
		total.sum += h.sum
	}
	for i, le := range total.bounds {
		fmt.Fprintf(b, "rbee_batch_size_bucket{le=%s} %d\n", labelValue(le), total.cum[i])
	}
	fmt.Fprintf(b, "rbee_batch_size_bucket{le=\"+Inf\"} %d\n", total.count)
	fmt.Fprintf(b, "rbee_batch_size_sum %s\n", formatFloat(total.sum))
	fmt.Fprintf(b, "rbee_batch_size_count %d\n", total.count)
}
