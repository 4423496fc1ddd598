package pool

import (
	"context"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"time"

	"rbee/api"
	"rbee/internal/hivewire"
	"rbee/internal/httpx"
)

// publicPaths need no API key: health, and the ready callback, which checks
// its caller itself (the hive's token or the token of the worker it names).
var publicPaths = []string{"/v1/health", "/v1/workers/ready"}

func (h *Hive) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", h.handleHealth)
	mux.HandleFunc("GET /v1/info", h.handleInfo)
	mux.HandleFunc("POST /v1/workers/spawn", h.handleSpawn)
	mux.HandleFunc("POST /v1/workers/ready", h.handleReady)
	mux.HandleFunc("POST /v1/workers/preflight", h.handlePreflight)
	mux.HandleFunc("GET /v1/workers/list", h.handleList)
	mux.HandleFunc("POST /v1/workers/shutdown", h.handleShutdownWorker)
	mux.HandleFunc("GET /v1/models", h.handleModels)
	mux.HandleFunc("POST /v1/models/download", h.handleDownload)
	mux.HandleFunc("GET /v1/models/download/progress", h.handleDownloadProgress)
	mux.HandleFunc("POST /v1/models/delete", h.handleDeleteModel)
	mux.HandleFunc("POST /v1/admin/shutdown", h.handleAdminShutdown)
	mux.HandleFunc("GET /v1/logs", h.handleLogs)
	routes := httpx.Routes(mux, "the hive", "the hive's endpoints are under /v1/: health, workers/spawn, workers/ready, workers/list, "+
		"workers/shutdown, models, models/download, models/download/progress, models/delete, logs and admin/shutdown")
	return httpx.Middleware(h.log.Named("http"), httpx.Auth(h.cfg.Token, publicPaths, routes))
}

// handleHealth serves GET /v1/health: alive with the versions, or 503
// SHUTTING_DOWN once a shutdown began, so that the queen does not send a
// task to a hive that will refuse it, but waits for it to go and starts
// another.
func (h *Hive) handleHealth(w http.ResponseWriter, r *http.Request) {
	if h.closing.Load() {
		httpx.WriteError(w, r, api.Errorf(api.CodeShuttingDown, "the hive is shutting down").WithHint("try again in a moment; the queen starts a new local hive once this one has exited"))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, api.HiveHealth{Status: "alive", Version: api.Version, APIVersion: api.APIVersion})
}

// handleInfo serves GET /v1/info: the node's version, available memory,
// CPUs and accelerators, for the queen's console. Unlike health it needs
// the API key: it describes the machine.
func (h *Hive) handleInfo(w http.ResponseWriter, r *http.Request) {
	info := api.HiveInfo{Version: api.Version, CPUs: runtime.NumCPU(), Devices: make([]api.DeviceInfo, 0, len(h.devices))}
	if mb, err := h.memAvailableMB(); err == nil {
		info.RAMAvailableMB = mb
	}
	for _, d := range h.devices {
		info.Devices = append(info.Devices, api.DeviceInfo{Backend: d.Backend, Index: d.Index, VRAMMB: d.VRAMMB})
	}
	httpx.WriteJSON(w, http.StatusOK, info)
}

func (h *Hive) handleSpawn(w http.ResponseWriter, r *http.Request) {
	var req api.SpawnRequest
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	wk, err := h.Spawn(r.Context(), req)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, hivewire.Spawned{
		SpawnResponse: api.SpawnResponse{WorkerID: wk.ID, URL: wk.URL, State: api.StateLoading}, APIKey: wk.token})
}

// handlePreflight answers whether a worker of a catalogued model would
// pass the preflight now, without starting anything: the queen asks it to
// place a task on a node that holds the model.
func (h *Hive) handlePreflight(w http.ResponseWriter, r *http.Request) {
	var req api.SpawnRequest
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	res, err := h.Preflight(r.Context(), req)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, res)
}

// handleReady takes a worker's ready callback. The caller is either the
// queen-side holder of the hive's token or the worker itself with its own
// token; anyone else gets 401 without learning whether the worker exists.
func (h *Hive) handleReady(w http.ResponseWriter, r *http.Request) {
	hiveAuth := h.cfg.Token == "" || httpx.BearerMatches(r, h.cfg.Token)
	if !hiveAuth && r.Header.Get("Authorization") == "" {
		httpx.WriteError(w, r, api.Errorf(api.CodeMissingAPIKey, "this endpoint needs an API key: Authorization: Bearer TOKEN"))
		return
	}
	var cb api.ReadyCallback
	if err := httpx.DecodeJSON(w, r, &cb); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if err := api.ValidateWorkerID(cb.WorkerID); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	wk, ok := h.reg.get(cb.WorkerID)
	if !hiveAuth && (!ok || !httpx.BearerMatches(r, wk.token)) {
		httpx.WriteError(w, r, api.Errorf(api.CodeInvalidAPIKey, "the API key is not valid"))
		return
	}
	if !ok {
		httpx.WriteError(w, r, api.Errorf(api.CodeWorkerNotFound, "no worker %s on this node", cb.WorkerID).With("worker_id", cb.WorkerID))
		return
	}
	if err := checkCallback(cb, wk); err != nil {
		wk.log.Warn("ready callback does not match the worker", "field", err.Details["field"])
		httpx.WriteError(w, r, err)
		return
	}
	wk.markReady()
	wk.log.Info("worker ready", "model", wk.ModelRef, "loading_took", timeSince(wk.Started))
	httpx.WriteJSON(w, http.StatusOK, struct{}{})
}

// checkCallback checks that a ready callback describes the registered worker.
func checkCallback(cb api.ReadyCallback, wk *Worker) *api.Error {
	backend := cb.Backend
	if backend == "" {
		backend = api.BackendCPU
	}
	switch {
	case cb.URL == "":
		return api.InvalidField("url", "the worker's url is required")
	case callbackPort(cb.URL) != wk.Port:
		// Hosts may be spelled differently (a name for 0.0.0.0); the port may not.
		return api.InvalidField("url", "does not name the port the hive gave worker %s", wk.ID)
	case cb.ModelRef == "":
		return api.InvalidField("model_ref", "the worker's model_ref is required")
	case cb.ModelRef != wk.ModelRef:
		return api.InvalidField("model_ref", "does not match the model worker %s was started with", wk.ID)
	case backend != wk.Backend:
		return api.InvalidField("backend", "does not match the backend worker %s was started with", wk.ID)
	case cb.Device != wk.Device:
		return api.InvalidField("device", "does not match the device worker %s was started with", wk.ID)
	}
	return nil
}

func (h *Hive) handleList(w http.ResponseWriter, r *http.Request) {
	// The list goes to the queen, which needs each worker's token to call it.
	ws := h.refreshedWorkers(r.Context())
	list := hivewire.WorkerList{Workers: make([]hivewire.Worker, 0, len(ws))}
	for _, wk := range ws {
		list.Workers = append(list.Workers, hivewire.Worker{WorkerInfo: wk.Info(), APIKey: wk.token,
			IdleTimeoutMs: h.cfg.IdleTimeout.Milliseconds()})
	}
	httpx.WriteJSON(w, http.StatusOK, list)
}

func (h *Hive) handleShutdownWorker(w http.ResponseWriter, r *http.Request) {
	var req api.WorkerShutdownRequest
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if err := api.ValidateWorkerID(req.WorkerID); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	// A caller that hangs up does not turn the graceful stop into a kill.
	if err := h.ShutdownWorker(context.WithoutCancel(r.Context()), req.WorkerID); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, struct{}{})
}

func (h *Hive) handleModels(w http.ResponseWriter, r *http.Request) {
	ms, err := h.Models(r.Context())
	if err != nil {
		h.log.Error("listing the catalog failed", "error", err)
		httpx.WriteError(w, r, api.Errorf(api.CodeInternal, "the model catalog could not be read"))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, api.ModelList{Models: ms})
}

func (h *Hive) handleAdminShutdown(w http.ResponseWriter, r *http.Request) {
	httpx.WriteJSON(w, http.StatusAccepted, struct{}{})
	h.log.Info("shutdown requested over the API")
	h.requestShutdown()
}

func timeSince(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// callbackPort is the port of a worker's URL as it reports it (0 when the
// URL is not http://host:port).
func callbackPort(raw string) int {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" {
		return 0
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		return 0
	}
	return p
}
