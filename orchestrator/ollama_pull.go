package orchestrator

import (
	"cmp"
	"encoding/json"
	"net/http"
	"sync"

	"rbee/api"
	"rbee/internal/httpx"
)

// ollamaPullRequest is the body of POST /api/pull ("name" is the older
// spelling of "model"; insecure, username and password are ignored, as
// ollama ignores them).
type ollamaPullRequest struct {
	Model  string `json:"model"`
	Name   string `json:"name"`
	Stream *bool  `json:"stream"`
	// Node is rbee's addition: the node that downloads the model (else the
	// X-Rbee-Node header; else the local node).
	Node string `json:"node"`
}

// ollamaProgress is an object of a pull's stream.
type ollamaProgress struct {
	Status    string `json:"status"`
	Digest    string `json:"digest,omitempty"`
	Total     int64  `json:"total,omitempty"`
	Completed int64  `json:"completed,omitempty"`
}

// handleOllamaPull serves POST /api/pull: the node's hive downloads an hf:
// model into its catalog (the local node unless one is named: a pull has
// no task to place, and a later request placed automatically prefers a
// node whose catalog has the model). The stream is ollama's: "pulling
// manifest", then objects whose digest is the reference being downloaded
// with total and completed bytes, then "verifying sha256 digest" and
// "success". A model already in the catalog goes straight to "success".
// Errors before the download starts (an unknown repository, a node that
// does not answer) keep their HTTP status.
func (q *Queen) handleOllamaPull(w http.ResponseWriter, r *http.Request) {
	id := httpx.NewID("pull-")
	w.Header().Set(httpx.RequestIDHeader, id)
	fail := func(err error) {
		e := *httpx.ToAPIError(err)
		e.RequestID = id
		writeOllamaError(w, r, &e)
	}
	var req ollamaPullRequest
	if e := httpx.DecodeJSONLenient(w, r, &req); e != nil {
		fail(e)
		return
	}
	ref, e := ollamaModel(cmp.Or(req.Model, req.Name))
	if e != nil {
		fail(e)
		return
	}
	if parsed, _ := api.ParseModelRef(ref); parsed.Provider != "hf" {
		fail(api.InvalidField("model", "a file: model is used where it is: there is nothing to pull").
			WithHint("pull Hugging Face models: hf.co/ORG/REPO:QUANT or hf:ORG/REPO[:QUANT]"))
		return
	}
	node, e := requestNode(r, req.Node)
	if e != nil {
		fail(e)
		return
	}
	if node == "" {
		node = api.LocalNode
	}
	if node != api.LocalNode {
		if _, err := q.store.Get(r.Context(), node); err != nil {
			fail(err)
			return
		}
	}
	ctx := r.Context()
	hive, err := q.hives.ensure(ctx, node, func(string, string) {})
	if err != nil {
		fail(err)
		return
	}
	out := &pullStream{w: w, rc: http.NewResponseController(w), stream: req.Stream == nil || *req.Stream, ref: ref}
	log := q.log.Named("pull").With("pull", id, "node", node, "model", ref)
	log.Info("pull started")
	err = q.download(ctx, hive, ref, id, out.event)
	if err != nil {
		e := *httpx.ToAPIError(err)
		e.RequestID = id
		log.Info("pull failed", "code", e.Code, "error", e.Message)
		if !out.started {
			writeOllamaError(w, r, &e)
			return
		}
		_ = out.write(toOllamaError(&e))
		return
	}
	log.Info("pull complete")
	if out.stream {
		_ = out.begin()
		_ = out.write(ollamaProgress{Status: "verifying sha256 digest"})
	}
	_ = out.write(ollamaProgress{Status: "success"})
}

// pullStream writes a pull's progress: NDJSON objects, or with stream false
// only the last one. Nothing is written before the first progress event,
// so that an early failure keeps its HTTP status.
type pullStream struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	stream bool
	ref    string

	mu      sync.Mutex
	started bool
}

// begin sends the headers and the first object.
func (p *pullStream) begin() error {
	if p.started {
		return nil
	}
	p.started = true
	p.w.Header().Set("Content-Type", "application/x-ndjson")
	p.w.WriteHeader(http.StatusOK)
	if !p.stream {
		return nil
	}
	return p.line(ollamaProgress{Status: "pulling manifest"})
}

func (p *pullStream) write(v any) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.begin(); err != nil {
		return err
	}
	return p.line(v)
}

func (p *pullStream) line(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := p.w.Write(append(data, '\n')); err != nil {
		return err
	}
	return p.rc.Flush()
}

// event takes one event of the hive's download stream: download progress
// becomes a progress object; narration is dropped.
func (p *pullStream) event(ev api.Event) error {
	if ev.Kind != api.KindProgress || !p.stream {
		return nil
	}
	switch ev.Progress.Stage {
	case api.StageDownloading:
		return p.write(ollamaProgress{Status: "pulling " + p.ref, Digest: p.ref, Total: ev.Progress.BytesTotal,
			Completed: ev.Progress.BytesDownloaded})
	}
	return nil
}
