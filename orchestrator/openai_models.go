package orchestrator

import (
	"context"
	"net/http"
	"slices"
	"sync"

	"rbee/api"
	"rbee/internal/httpx"
)

// openAIModel is an entry of GET /v1/models in OpenAI's shape; id is the
// model reference to put in requests. Nodes and Loaded are rbee's
// additions: where the model is (running or in a hive's catalog) and
// whether a worker has it loaded.
type openAIModel struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"` // "model"
	Created int64    `json:"created"`
	OwnedBy string   `json:"owned_by"`
	Nodes   []string `json:"nodes"`
	Loaded  bool     `json:"loaded"`
}

type openAIModelList struct {
	Object string        `json:"object"` // "list"
	Data   []openAIModel `json:"data"`
}

// nodeCatalog is one node's workers and the models of its hive's catalog
// (nil when the catalog could not be read).
type nodeCatalog struct {
	nodeWorkers
	models []api.ModelEntry
}

// clusterCatalogs asks every node whose hive answers for its workers and
// its catalog (in parallel, within clusterListTimeout each; no hive is
// started). Nodes that did not answer come back with their error.
func (q *Queen) clusterCatalogs(ctx context.Context) ([]nodeCatalog, error) {
	all, err := q.clusterWorkers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]nodeCatalog, len(all))
	var wg sync.WaitGroup
	for i, nw := range all {
		out[i].nodeWorkers = nw
		if nw.hive == nil || nw.err != nil {
			continue
		}
		wg.Go(func() {
			lctx, cancel := context.WithTimeout(ctx, clusterListTimeout)
			defer cancel()
			var list api.ModelList
			if err := nw.hive.c.Do(lctx, http.MethodGet, "/v1/models", nil, &list); err != nil {
				q.log.Info("node's catalog left out of the model list", "node", nw.hive.node, "error", err)
				return
			}
			out[i].models = list.Models
		})
	}
	wg.Wait()
	return out, nil
}

// clusterModels lists the models of running workers and of the hives'
// catalogs on every node whose hive answers (see clusterCatalogs), sorted
// by id.
func (q *Queen) clusterModels(ctx context.Context) ([]openAIModel, error) {
	all, err := q.clusterCatalogs(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string]*openAIModel{}
	entry := func(id, node string) *openAIModel {
		m := byID[id]
		if m == nil {
			m = &openAIModel{ID: id, Object: "model", OwnedBy: "rbee", Nodes: []string{}}
			byID[id] = m
		}
		if !slices.Contains(m.Nodes, node) {
			m.Nodes = append(m.Nodes, node)
		}
		return m
	}
	for _, nw := range all {
		if nw.hive == nil || nw.err != nil {
			continue
		}
		for _, w := range nw.workers {
			entry(w.ModelRef, nw.hive.node).Loaded = true
		}
		for _, me := range nw.models {
			m := entry(me.Reference, nw.hive.node)
			if me.DownloadedAtUnix > 0 && (m.Created == 0 || me.DownloadedAtUnix < m.Created) {
				m.Created = me.DownloadedAtUnix
			}
		}
	}
	out := make([]openAIModel, 0, len(byID))
	for _, m := range byID {
		slices.Sort(m.Nodes)
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b openAIModel) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out, nil
}

// handleModels serves GET /v1/models: {"object":"list","data":[…]}.
func (q *Queen) handleModels(w http.ResponseWriter, r *http.Request) {
	models, err := q.clusterModels(r.Context())
	if err != nil {
		writeOpenAIError(w, r, err, "")
		return
	}
	httpx.WriteJSON(w, http.StatusOK, openAIModelList{Object: "list", Data: models})
}

// handleModel serves GET /v1/models/{model}: one entry of the list, or
// MODEL_NOT_FOUND (any valid reference may still be used in a request:
// the hive registers file: models and downloads hf: ones).
func (q *Queen) handleModel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("model")
	if _, e := api.ParseModelRef(id); e != nil {
		writeOpenAIError(w, r, unknownModel(id, e), "")
		return
	}
	models, err := q.clusterModels(r.Context())
	if err != nil {
		writeOpenAIError(w, r, err, "")
		return
	}
	for _, m := range models {
		if m.ID == id {
			httpx.WriteJSON(w, http.StatusOK, m)
			return
		}
	}
	writeOpenAIError(w, r, api.Errorf(api.CodeModelNotFound, "model %s is neither loaded nor in the catalog of a node that answered", id).
		WithHint("a request with this model loads it (file: models are registered, hf: models downloaded)"), "")
}
