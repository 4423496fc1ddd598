package orchestrator

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"rbee/api"
	"rbee/internal/gguf"
	"rbee/internal/hivewire"
	"rbee/internal/httpx"
)

// ollama's API (docs/ollama.md): the routes ollama serves under /api/, in
// its request, response, NDJSON stream and error shapes, so that ollama's
// own clients, chat front-ends and editor plugins work against the queen.
//
// Generation requests become tasks, exactly as the OpenAI-compatible
// routes' do: placed (or run on the node the X-Rbee-Node header or the
// "node" field names), queued for a free slot, with the same auth and Host
// and Origin checks. Model names are rbee references (hf:…, file:…) or
// ollama's spelling of a Hugging Face model, hf.co/ORG/REPO:QUANT; there is
// no library of short names like "llama3.2" (see ollamaModel).

// ollamaAPIVersion is what GET /api/version reports: the level of ollama's
// API that these routes follow (rbee's own version is in "rbee_version").
const ollamaAPIVersion = "0.5.0"

// hiveDefaultIdleTimeout is how long a hive keeps an idle worker unless
// configured otherwise (the hive's own default).
const hiveDefaultIdleTimeout = 5 * time.Minute

// withOllama serves /api/ paths with ollama's API (its own bearer check,
// answering in ollama's error shape) and the rest with next.
func (q *Queen) withOllama(next http.Handler) http.Handler {
	return divert(pathPrefix("/api/"), q.ollamaHandler(), next)
}

func (q *Queen) ollamaHandler() http.Handler {
	routes := []endpoint{
		{"GET", "/api/version", q.handleOllamaVersion},
		{"GET", "/api/tags", q.handleOllamaTags},
		{"POST", "/api/show", q.handleOllamaShow},
		{"GET", "/api/ps", q.handleOllamaPS},
		{"POST", "/api/generate", func(w http.ResponseWriter, r *http.Request) { q.serveOllama(w, r, false) }},
		{"POST", "/api/chat", func(w http.ResponseWriter, r *http.Request) { q.serveOllama(w, r, true) }},
		{"POST", "/api/pull", q.handleOllamaPull},
		{"DELETE", "/api/delete", q.handleOllamaDelete},
		{"POST", "/api/embed", ollamaNotServed("rbee serves no embeddings: its engine runs generative models only")},
		{"POST", "/api/embeddings", ollamaNotServed("rbee serves no embeddings: its engine runs generative models only")},
		{"POST", "/api/copy", ollamaNotServed("rbee has no model aliases to copy: name a model by its reference (hf.co/ORG/REPO:QUANT, hf:… or file:…)")},
		{"POST", "/api/create", ollamaNotServed("rbee does not create models from Modelfiles: use a GGUF file (file:/path/model.gguf) or a Hugging Face repository (hf.co/ORG/REPO:QUANT)")},
		{"POST", "/api/push", ollamaNotServed("rbee does not push models to a registry")},
		{"HEAD", "/api/blobs/{digest}", ollamaNotServed("rbee keeps no blob store: models come from Hugging Face or local GGUF files")},
		{"POST", "/api/blobs/{digest}", ollamaNotServed("rbee keeps no blob store: models come from Hugging Face or local GGUF files")},
	}
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.HandleFunc(rt.method+" "+rt.path, rt.h)
	}
	router := &httpx.Router{Mux: mux, Daemon: "the queen",
		Hint:       "the queen's ollama-compatible endpoints are /api/version, /api/tags, /api/show, /api/ps, /api/generate, /api/chat, /api/pull and /api/delete",
		WriteError: writeOllamaError}
	token := q.cfg.Token
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" && !httpx.BearerMatches(r, token) {
			e := api.Errorf(api.CodeInvalidAPIKey, "the API key is not valid")
			if got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); !ok || got == "" {
				e = api.Errorf(api.CodeMissingAPIKey, "this endpoint needs an API key: Authorization: Bearer TOKEN")
			}
			writeOllamaError(w, r, e)
			return
		}
		router.ServeHTTP(w, r)
	})
}

// ollamaErrorBody is ollama's error answer, {"error": "…"}, with rbee's
// code, hint and request id beside it (ollama's clients read only
// "error").
type ollamaErrorBody struct {
	Error     string   `json:"error"`
	Code      api.Code `json:"code,omitempty"`
	Hint      string   `json:"hint,omitempty"`
	RequestID string   `json:"request_id,omitempty"`
}

func toOllamaError(e *api.Error) ollamaErrorBody {
	return ollamaErrorBody{Error: e.Message, Code: e.Code, Hint: e.Hint(), RequestID: e.RequestID}
}

// writeOllamaError answers err in ollama's shape with its code's status.
func writeOllamaError(w http.ResponseWriter, r *http.Request, err error) {
	e := *httpx.ToAPIError(err)
	if e.RequestID == "" {
		e.RequestID = httpx.RequestID(r)
	}
	if e.Code == api.CodeMissingAPIKey || e.Code == api.CodeInvalidAPIKey {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rbee"`)
	}
	httpx.SetRetryAfter(w, &e)
	httpx.WriteJSON(w, e.HTTPStatus(), toOllamaError(&e))
}

// ollamaNotServed answers a route of ollama's that rbee has no use for
// with 501 Not Implemented and why.
func ollamaNotServed(why string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeOllamaError(w, r, api.Errorf(api.CodeNotImplemented, "%s", why).WithHint("see docs/ollama.md for the routes rbee serves"))
	}
}

// ollamaModel turns a model name as an ollama client sends it into an rbee
// reference: hf.co/ORG/REPO:QUANT (or huggingface.co/…, ollama's spelling
// of a Hugging Face GGUF repository) is hf:ORG/REPO:QUANT; rbee's own
// hf:… and file:… references stay as they are; a ":latest" tag, which
// ollama's tools add to a name without one, means no quantization (the
// repository's Q4_K_M file, else its smallest). Any other name ("llama3.2")
// is MODEL_NOT_FOUND: rbee has no library of short names.
func ollamaModel(name string) (string, *api.Error) {
	if name == "" {
		return "", api.InvalidField("model", "model is required: hf.co/ORG/REPO:QUANT, hf:ORG/REPO[:QUANT] or file:/path/model.gguf")
	}
	n := name
	for _, host := range []string{"hf.co/", "huggingface.co/"} {
		if len(n) > len(host) && strings.EqualFold(n[:len(host)], host) {
			n = "hf:" + n[len(host):]
			break
		}
	}
	n = strings.TrimSuffix(n, ":latest")
	ref, e := api.ParseModelRef(n)
	if e != nil {
		return "", ollamaUnknownModel(name, e.Message)
	}
	return ref.String(), nil
}

// ollamaUnknownModel is ollama's "model not found" (404) for a name that is
// no model rbee can name, or one no node has.
func ollamaUnknownModel(name, why string) *api.Error {
	shown := "the model"
	if len(name) <= api.MaxModelRefLen && utf8.ValidString(name) {
		shown = fmt.Sprintf("model %q", name)
	}
	e := api.Errorf(api.CodeModelNotFound, "%s not found: rbee names models hf.co/ORG/REPO:QUANT, hf:ORG/REPO[:QUANT] or file:/path/model.gguf", shown).
		With("field", "model").
		WithHint("GET /api/tags lists the models of the cluster; POST /api/pull {\"model\": \"hf.co/ORG/REPO:QUANT\"} downloads one")
	if why != "" {
		e = e.With("reason", why)
	}
	return e
}

// ollamaName is the name /api/tags and /api/ps give a reference: ollama's
// spelling for a Hugging Face model (hf.co/ORG/REPO:QUANT, ":latest" when
// the reference names no quantization), the reference itself otherwise.
// ollamaModel turns each back into the reference.
func ollamaName(ref string) string {
	r, e := api.ParseModelRef(ref)
	if e != nil || r.Provider != "hf" {
		return ref
	}
	s := "hf.co/" + r.Repo
	switch {
	case r.File != "":
		return s + "/" + r.File
	case r.Quant != "":
		return s + ":" + r.Quant
	}
	return s + ":latest"
}

// requestNode is the node a request names: the body's "node" field or the
// X-Rbee-Node header ("" or "auto" for none).
func requestNode(r *http.Request, body string) (string, *api.Error) {
	node := body
	if h := r.Header.Get(NodeHeader); h != "" {
		if node != "" && node != h {
			return "", api.InvalidField("node", "the node field and the %s header name different nodes", NodeHeader)
		}
		node = h
	}
	if node == api.AutoNode {
		node = ""
	}
	if node != "" {
		if e := api.ValidateNodeName(node); e != nil {
			return "", e
		}
	}
	return node, nil
}

// ollamaDetails is the "details" of a model in ollama's answers.
type ollamaDetails struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
}

// ollamaListModel is an entry of GET /api/tags; the fields after Details
// are set in GET /api/ps only.
type ollamaListModel struct {
	Name       string        `json:"name"`
	Model      string        `json:"model"`
	ModifiedAt time.Time     `json:"modified_at,omitzero"`
	Size       int64         `json:"size"`
	Digest     string        `json:"digest"`
	Details    ollamaDetails `json:"details"`
	// GET /api/ps only.
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	SizeVRAM      *int64     `json:"size_vram,omitempty"`
	ContextLength int        `json:"context_length,omitempty"`
	// Node is rbee's addition: where the model is (/api/tags: the first
	// node whose catalog has it; /api/ps: where the worker runs).
	Node string `json:"node,omitempty"`
}

type ollamaListResponse struct {
	Models []ollamaListModel `json:"models"`
}

// details describes a catalog entry from its GGUF header summary.
func details(m *api.ModelMeta) ollamaDetails {
	d := ollamaDetails{Format: "gguf", Families: []string{}}
	if m == nil {
		return d
	}
	d.Family, d.QuantizationLevel, d.ParameterSize = m.Architecture, m.Quantization, parameterSize(m.Parameters)
	if m.Architecture != "" {
		d.Families = []string{m.Architecture}
	}
	return d
}

// parameterSize writes a parameter count as ollama does: "494.03M",
// "1.24B", "8.0B", "70B".
func parameterSize(n int64) string {
	if n <= 0 {
		return ""
	}
	v, unit := float64(n), ""
	for _, u := range []struct {
		div  float64
		name string
	}{{1e12, "T"}, {1e9, "B"}, {1e6, "M"}, {1e3, "K"}} {
		if v >= u.div {
			v, unit = v/u.div, u.name
			break
		}
	}
	switch {
	case unit == "":
		return fmt.Sprintf("%d", n)
	case v >= 100:
		return fmt.Sprintf("%.0f%s", v, unit)
	case v >= 10:
		return fmt.Sprintf("%.1f%s", v, unit)
	}
	return fmt.Sprintf("%.2f%s", v, unit)
}

func listEntry(node string, m api.ModelEntry) ollamaListModel {
	e := ollamaListModel{Name: ollamaName(m.Reference), Model: ollamaName(m.Reference), Size: m.SizeBytes, Digest: m.SHA256,
		Details: details(m.Meta), Node: node}
	if m.DownloadedAtUnix > 0 {
		e.ModifiedAt = time.Unix(m.DownloadedAtUnix, 0).UTC()
	}
	return e
}

// handleOllamaVersion serves GET /api/version.
func (q *Queen) handleOllamaVersion(w http.ResponseWriter, r *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, struct {
		Version     string `json:"version"`
		RbeeVersion string `json:"rbee_version"`
	}{ollamaAPIVersion, api.Version})
}

// handleOllamaTags serves GET /api/tags: the models in the catalogs of the
// nodes whose hive answers, each once (from the local node first, then the
// registry's order), sorted by name.
func (q *Queen) handleOllamaTags(w http.ResponseWriter, r *http.Request) {
	all, err := q.clusterCatalogs(r.Context())
	if err != nil {
		writeOllamaError(w, r, err)
		return
	}
	out := ollamaListResponse{Models: []ollamaListModel{}}
	seen := map[string]bool{}
	for _, nc := range all {
		for _, m := range nc.models {
			if seen[m.Reference] {
				continue
			}
			seen[m.Reference] = true
			out.Models = append(out.Models, listEntry(nc.node, m))
		}
	}
	slices.SortFunc(out.Models, func(a, b ollamaListModel) int { return cmp.Compare(a.Name, b.Name) })
	httpx.WriteJSON(w, http.StatusOK, out)
}

// idleTimeout is how long the node's hive keeps worker w idle: what the
// hive says in its list, else the local hive's setting or the hive
// default.
func (q *Queen) idleTimeout(node string, w hivewire.Worker) time.Duration {
	switch {
	case w.IdleTimeoutMs > 0:
		return time.Duration(w.IdleTimeoutMs) * time.Millisecond
	case node == api.LocalNode && q.cfg.LocalIdleTimeout > 0:
		return q.cfg.LocalIdleTimeout
	}
	return hiveDefaultIdleTimeout
}

// handleOllamaPS serves GET /api/ps: the running workers (loading, idle or
// busy) of every node that answers. expires_at is when the hive's idle
// timeout stops the worker if no request comes (a busy worker's clock
// starts when it is idle again, so its expiry is an idle timeout from now).
func (q *Queen) handleOllamaPS(w http.ResponseWriter, r *http.Request) {
	all, err := q.clusterCatalogs(r.Context())
	if err != nil {
		writeOllamaError(w, r, err)
		return
	}
	now := time.Now().UTC()
	out := ollamaListResponse{Models: []ollamaListModel{}}
	for _, nc := range all {
		if nc.err != nil {
			continue
		}
		for _, wk := range nc.workers {
			switch wk.State {
			case api.StateLoading, api.StateIdle, api.StateBusy:
			default:
				continue
			}
			e := ollamaListModel{Name: ollamaName(wk.ModelRef), Model: ollamaName(wk.ModelRef), Details: details(nil), Node: nc.node}
			for _, m := range nc.models {
				if m.Reference == wk.ModelRef {
					e = listEntry(nc.node, m)
					if m.Meta != nil {
						e.ContextLength = m.Meta.ContextLength
					}
				}
			}
			e.ModifiedAt = time.Time{}
			idle := q.idleTimeout(nc.node, wk)
			expires := wk.LastActivity.UTC().Add(idle)
			if wk.State != api.StateIdle || wk.LastActivity.IsZero() {
				expires = now.Add(idle)
			}
			vram := int64(0)
			if wk.Backend != api.BackendCPU && wk.Backend != "" {
				vram = e.Size
			}
			e.ExpiresAt, e.SizeVRAM = &expires, &vram
			out.Models = append(out.Models, e)
		}
	}
	slices.SortFunc(out.Models, func(a, b ollamaListModel) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Node, b.Node))
	})
	httpx.WriteJSON(w, http.StatusOK, out)
}

// ollamaModelRequest is the body of /api/show and /api/delete: "name" is
// the older spelling of "model"; "node", rbee's addition, limits the
// request to one node.
type ollamaModelRequest struct {
	Model   string `json:"model"`
	Name    string `json:"name"`
	Verbose bool   `json:"verbose"`
	Node    string `json:"node"`
}

// readOllamaModelRequest reads the body of a request about one model
// (show, delete): the name as the client sent it (ollama's older clients
// send "name"), its rbee reference, and the node asked for in the body or
// the X-Rbee-Node header ("" for any).
func readOllamaModelRequest(w http.ResponseWriter, r *http.Request) (name, ref, node string, e *api.Error) {
	var req ollamaModelRequest
	if e := httpx.DecodeJSONLenient(w, r, &req); e != nil {
		return "", "", "", e
	}
	name = cmp.Or(req.Model, req.Name)
	if ref, e = ollamaModel(name); e != nil {
		return "", "", "", e
	}
	if node, e = requestNode(r, req.Node); e != nil {
		return "", "", "", e
	}
	return name, ref, node, nil
}

// ollamaShowResponse is the answer of POST /api/show.
type ollamaShowResponse struct {
	Modelfile    string         `json:"modelfile"`
	Parameters   string         `json:"parameters,omitempty"`
	Template     string         `json:"template"`
	Details      ollamaDetails  `json:"details"`
	ModelInfo    map[string]any `json:"model_info"`
	Capabilities []string       `json:"capabilities"`
	ModifiedAt   time.Time      `json:"modified_at,omitzero"`
}

// findModel returns the catalog entry of ref on the first node (of node,
// when named) whose catalog has it.
func (q *Queen) findModel(ctx context.Context, ref, node string) (string, api.ModelEntry, bool, error) {
	all, err := q.clusterCatalogs(ctx)
	if err != nil {
		return "", api.ModelEntry{}, false, err
	}
	for _, nc := range all {
		if node != "" && nc.node != node {
			continue
		}
		for _, m := range nc.models {
			if m.Reference == ref {
				return nc.node, m, true, nil
			}
		}
	}
	return "", api.ModelEntry{}, false, nil
}

// handleOllamaShow serves POST /api/show for a model in a node's catalog:
// its details, model_info with the GGUF header's keys, and the chat
// template. The whole header (and so the template) is read where the queen
// can read the file, on the local node; for a model on another node the
// answer has the header summary the hive gives (architecture, parameter
// count, context length, block count, vocabulary) and no template.
func (q *Queen) handleOllamaShow(w http.ResponseWriter, r *http.Request) {
	name, ref, wantNode, e := readOllamaModelRequest(w, r)
	if e != nil {
		writeOllamaError(w, r, e)
		return
	}
	node, m, ok, err := q.findModel(r.Context(), ref, wantNode)
	if err != nil {
		writeOllamaError(w, r, err)
		return
	}
	if !ok {
		writeOllamaError(w, r, ollamaUnknownModel(name, "no node that answered has it in its catalog"))
		return
	}
	out := ollamaShowResponse{Details: details(m.Meta), ModelInfo: metaInfo(m.Meta), Capabilities: []string{"completion"}}
	if m.DownloadedAtUnix > 0 {
		out.ModifiedAt = time.Unix(m.DownloadedAtUnix, 0).UTC()
	}
	if node == api.LocalNode && m.Meta != nil {
		if info, tmpl, ok := headerInfo(m.LocalPath); ok {
			out.ModelInfo, out.Template = info, tmpl
		}
	}
	if strings.Contains(out.Template, "tools") {
		out.Capabilities = append(out.Capabilities, "tools")
	}
	var mf strings.Builder
	fmt.Fprintf(&mf, "# Modelfile for %s, made by rbee from the model's GGUF header\nFROM %s\n", ollamaName(ref), ref)
	if out.Template != "" {
		fmt.Fprintf(&mf, "TEMPLATE \"\"\"%s\"\"\"\n", out.Template)
	}
	out.Modelfile = mf.String()
	httpx.WriteJSON(w, http.StatusOK, out)
}

// metaInfo is model_info from a header summary, under the GGUF keys the
// values come from.
func metaInfo(m *api.ModelMeta) map[string]any {
	info := map[string]any{}
	if m == nil {
		return info
	}
	arch := m.Architecture
	info["general.architecture"] = arch
	if m.Name != "" {
		info["general.name"] = m.Name
	}
	if m.Parameters > 0 {
		info["general.parameter_count"] = m.Parameters
	}
	for key, v := range map[string]int{".context_length": m.ContextLength, ".block_count": m.BlockCount, ".vocab_size": m.VocabSize} {
		if v > 0 {
			info[arch+key] = v
		}
	}
	if m.BOSTokenID >= 0 {
		info["tokenizer.ggml.bos_token_id"] = m.BOSTokenID
	}
	if m.EOSTokenID >= 0 {
		info["tokenizer.ggml.eos_token_id"] = m.EOSTokenID
	}
	return info
}

// maxInfoString bounds the string values model_info copies from a header.
const maxInfoString = 1024

// headerInfo reads a local GGUF file's metadata: every scalar key (arrays
// such as the vocabulary are left out, as are strings over maxInfoString
// bytes) with general.parameter_count added, and the chat template.
func headerInfo(path string) (map[string]any, string, bool) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, "", false
	}
	defer f.Close()
	info := map[string]any{}
	var tmpl string
	for _, kv := range f.KV {
		switch {
		case kv.Key == "tokenizer.chat_template":
			tmpl, _ = kv.Value.Any().(string)
		case kv.Value.Type() == gguf.Array:
		case kv.Value.Type() == gguf.String:
			if s, _ := kv.Value.Any().(string); len(s) <= maxInfoString {
				info[kv.Key] = s
			}
		default:
			info[kv.Key] = kv.Value.Any()
		}
	}
	if mi := f.ModelInfo(); mi.Parameters > 0 {
		info["general.parameter_count"] = mi.Parameters
	}
	return info, tmpl, true
}

// handleOllamaDelete serves DELETE /api/delete: the model leaves the
// catalog of every node that has it (or of the node named), after the
// workers that run it there are stopped; a downloaded file goes with it,
// a file: model's file stays. 404 when no node that answered has it.
func (q *Queen) handleOllamaDelete(w http.ResponseWriter, r *http.Request) {
	name, ref, node, e := readOllamaModelRequest(w, r)
	if e != nil {
		writeOllamaError(w, r, e)
		return
	}
	all, err := q.clusterCatalogs(r.Context())
	if err != nil {
		writeOllamaError(w, r, err)
		return
	}
	deleted := 0
	for _, nc := range all {
		if nc.err != nil || node != "" && nc.node != node {
			continue
		}
		if !slices.ContainsFunc(nc.models, func(m api.ModelEntry) bool { return m.Reference == ref }) {
			continue
		}
		if err := q.stopModelWorkers(r.Context(), nc.nodeWorkers, ref, false); err != nil {
			writeOllamaError(w, r, err)
			return
		}
		var res api.ModelDeleteResponse
		if err := nc.hive.c.Do(r.Context(), http.MethodPost, "/v1/models/delete", api.ModelDeleteRequest{ModelRef: ref}, &res); err != nil {
			writeOllamaError(w, r, nc.hive.unreachable(err, "deleting "+ref))
			return
		}
		q.log.Info("model deleted", "model", ref, "node", nc.node, "file_removed", res.FileRemoved)
		deleted++
	}
	if deleted == 0 {
		writeOllamaError(w, r, ollamaUnknownModel(name, "no node that answered has it in its catalog"))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// stopModelWorkers stops the workers of model ref on a node (only the idle
// ones with idleOnly).
func (q *Queen) stopModelWorkers(ctx context.Context, nw nodeWorkers, ref string, idleOnly bool) error {
	for _, wk := range nw.workers {
		if wk.ModelRef != ref || idleOnly && wk.State != api.StateIdle {
			continue
		}
		if err := nw.hive.shutdownWorker(ctx, wk.ID); err != nil {
			return nw.hive.unreachable(err, "stopping worker "+wk.ID)
		}
		q.log.Info("worker stopped for an ollama request", "worker_id", wk.ID, "node", nw.node, "model", ref)
	}
	return nil
}

// isNull reports whether a JSON value kept as sent is absent or null.
func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}
