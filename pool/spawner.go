package pool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"rbee/api"
	"rbee/internal/gguf"
	"rbee/internal/httpx"
	"rbee/internal/paths"
	"rbee/internal/proc"
	"rbee/internal/sqlitex"
)

// ExitPortInUse is the exit status of a worker that could not bind its port;
// the hive then retries on the next free port.
const ExitPortInUse = 3

// maxPortAttempts bounds the port-busy retries of one spawn.
const maxPortAttempts = 10

// hfHint says how an hf: model gets into the catalog.
const hfHint = "download it first: POST /v1/models/download {\"model_ref\": …} (rbee infer through the queen does this for you)"

// model is a resolved model: its catalog row and what its header says.
type model struct {
	entry api.ModelEntry
	info  gguf.ModelInfo
}

// errPortBusy means the worker exited with ExitPortInUse.
var errPortBusy = errors.New("worker port is in use")

// Spawn starts a worker for req: it resolves the model
// through the catalog, runs the preflight, starts `<binary> worker …` on a
// free port and waits until the worker answers its health check. The worker
// is then registered and loading its model; WaitUntilReady waits for the
// load. Errors are *api.Error.
func (h *Hive) Spawn(ctx context.Context, req api.SpawnRequest) (*Worker, error) {
	if req.Backend == "" {
		req.Backend = api.BackendCPU
	}
	if err := validateSpawn(&req); err != nil {
		return nil, err
	}
	if h.closing.Load() {
		return nil, errRegistryClosed
	}
	ref, _ := api.ParseModelRef(req.ModelRef)
	m, err := h.resolveModel(ctx, ref)
	if err != nil {
		return nil, err
	}
	h.log.Info("model resolved", "model", m.entry.Reference, "path", m.entry.LocalPath, "size_bytes", m.info.FileSize,
		"architecture", m.info.Architecture, "quantization", m.info.Quantization, "vocab_size", m.info.VocabSize,
		"bos", m.info.BOS, "eos", m.info.EOS, "context_length", m.info.ContextLength)
	if err := h.preflight(m.info.FileSize, m.info.Quantization, req.Backend, req.Device); err != nil {
		h.log.Info("preflight refused the spawn", "model", m.entry.Reference, "backend", req.Backend, "device", req.Device, "code", err.Code, "reason", err.Message)
		return nil, err
	}
	return h.start(ctx, m, req.Backend, req.Device)
}

// validateSpawn checks a spawn request, naming the JSON field that fails.
func validateSpawn(req *api.SpawnRequest) *api.Error { return req.Validate() }

// resolveModel finds the model of a reference: its catalog row,
// whose file is checked first (see checkFile), or, for a file: reference
// not yet catalogued, the file itself, which it then registers with its
// size, modification time and SHA-256.
func (h *Hive) resolveModel(ctx context.Context, ref api.ModelRef) (model, *api.Error) {
	canon := ref.String()
	r, err := h.catalog.row(ctx, canon)
	switch {
	case err == nil:
		return h.catalogued(ctx, r)
	case !errors.Is(err, ErrNotInCatalog):
		h.log.Error("model catalog lookup failed", "model", canon, "error", err)
		return model{}, catalogError(err, "read")
	}
	if ref.Provider != "file" {
		return model{}, api.Errorf(api.CodeModelNotFound, "model %s is not in this node's catalog", canon).With("model_ref", canon).WithHint(hfHint)
	}
	before, serr := os.Stat(ref.Path)
	info, aerr := readModel(ref.Path, canon)
	if aerr != nil {
		return model{}, aerr
	}
	if serr != nil {
		return model{}, api.Errorf(api.CodeModelNotFound, "model file %s cannot be read: %v", ref.Path, errText(serr)).With("model_ref", canon)
	}
	sha, after, herr := h.hashStable(ctx, ref.Path, before)
	if herr != nil {
		return model{}, api.AsError(herr)
	}
	r, err = h.catalog.register(ctx, modelRow{ModelEntry: api.ModelEntry{Provider: "file", Reference: canon, LocalPath: ref.Path,
		SizeBytes: after.Size(), SHA256: sha, DownloadedAtUnix: time.Now().Unix()}, MTimeNs: mtimeNs(after)})
	if err != nil {
		h.log.Error("registering the model failed", "model", canon, "error", err)
		return model{}, catalogError(err, "updated")
	}
	h.log.Info("model registered in the catalog", "model", canon, "id", r.ID, "size_bytes", r.SizeBytes, "sha256", r.SHA256)
	if r.SHA256 != sha || r.LocalPath != ref.Path {
		// Another request registered it at the same time: check against its row.
		return h.catalogued(ctx, r)
	}
	return model{entry: r.ModelEntry, info: info}, nil
}

// catalogued checks a catalog row's file before it is used: a damaged
// file: model is refused with CHECKSUM_MISMATCH naming what changed; a
// damaged hf: model is removed (row and file) so that it is downloaded
// again, and the spawn fails with CHECKSUM_MISMATCH saying so.
func (h *Hive) catalogued(ctx context.Context, r modelRow) (model, *api.Error) {
	c, err := h.checkFile(ctx, r)
	if err != nil {
		if ctx.Err() != nil {
			return model{}, api.Errorf(api.CodeRequestTimeout, "the spawn was cancelled while checking %s", r.LocalPath)
		}
		return model{}, api.AsError(err)
	}
	switch c.state {
	case fileMissing:
		_, aerr := readModel(r.LocalPath, r.Reference) // MODEL_NOT_FOUND naming the file
		return model{}, aerr
	case fileChanged:
		h.log.Warn("catalogued model file changed", "model", r.Reference, "path", r.LocalPath, "change", c.change)
		removed := r.Provider == "hf" && h.forgetDamaged(ctx, r)
		return model{}, damagedFile(r, c, removed)
	}
	info, aerr := readModel(r.LocalPath, r.Reference)
	if aerr != nil {
		h.log.Warn("catalogued model file cannot be read as GGUF", "model", r.Reference, "path", r.LocalPath, "reason", aerr.Message)
		if r.Provider == "hf" && h.forgetDamaged(ctx, r) {
			aerr = aerr.WithHint("the damaged copy was removed: download it again (POST /v1/models/download; rbee infer through the queen does this for you)")
		}
		return model{}, aerr
	}
	if info.FileSize != c.row.SizeBytes {
		h.log.Warn("model file size differs from the catalog", "model", r.Reference, "catalog_bytes", c.row.SizeBytes, "file_bytes", info.FileSize)
	}
	return model{entry: c.row.ModelEntry, info: info}, nil
}

// forgetDamaged removes a damaged hf: model, its catalog row and its file
// (a download of it then starts from nothing), and reports whether both
// went.
func (h *Hive) forgetDamaged(ctx context.Context, r modelRow) bool {
	if _, err := h.catalog.Remove(context.WithoutCancel(ctx), r.Reference); err != nil {
		h.log.Error("removing the damaged model from the catalog failed", "model", r.Reference, "error", err)
		return false
	}
	if err := os.Remove(r.LocalPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		h.log.Error("removing the damaged model file failed", "model", r.Reference, "path", r.LocalPath, "error", err)
		return false
	}
	h.log.Info("damaged model removed; it is downloaded again at its next use", "model", r.Reference, "path", r.LocalPath)
	return true
}

// catalogError is the error of a catalog that could not be read or
// updated: INSUFFICIENT_DISK when the disk is full, else INTERNAL (the
// cause is in the hive's log).
func catalogError(err error, doing string) *api.Error {
	if sqlitex.IsFull(err) {
		return api.Errorf(api.CodeInsufficientDisk, "the model catalog could not be %s: the disk is full", doing).
			WithHint("free space on the node")
	}
	if sqlitex.IsDamaged(err) {
		return api.Errorf(api.CodeInternal, "the model catalog could not be %s: its file is damaged (%v)", doing, err).
			WithHint("stop the hive and move models.db aside: the hive then starts with an empty catalog and adds models back as they are used")
	}
	return api.Errorf(api.CodeInternal, "the model catalog could not be %s (see the hive's log)", doing)
}

// readModel reads a model file's GGUF header: MODEL_NOT_FOUND when the file
// is missing, INVALID_REQUEST naming the file, the problem and where it is
// when it is not a GGUF model that rbee can read.
func readModel(path, ref string) (gguf.ModelInfo, *api.Error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return gguf.ModelInfo{}, api.Errorf(api.CodeModelNotFound, "model file %s does not exist", path).
			With("model_ref", ref).WithHint("check the path, or copy the model to this node")
	}
	if err != nil {
		return gguf.ModelInfo{}, api.Errorf(api.CodeModelNotFound, "model file %s cannot be read: %s", path, errText(err)).With("model_ref", ref)
	}
	if !st.Mode().IsRegular() {
		return gguf.ModelInfo{}, api.InvalidField("model_ref", "model file %s is not a regular file", path).With("file", path)
	}
	info, err := gguf.ReadInfo(path)
	if err != nil {
		e := api.InvalidField("model_ref", "model file %s is not a usable GGUF model: %s", path, ggufReason(err)).
			With("model_ref", ref).With("file", path).With("size_bytes", st.Size())
		var fe *gguf.FormatError
		if errors.As(err, &fe) {
			e = e.With("offset", fe.Offset)
		}
		return gguf.ModelInfo{}, e.WithHint("check that the file is a complete GGUF model (a download or copy may have been cut short)")
	}
	return info, nil
}

// ggufReason is why the GGUF reader refused a file, without the file name
// it puts in front (the message names the file already).
func ggufReason(err error) string {
	var fe *gguf.FormatError
	if errors.As(err, &fe) {
		c := *fe
		c.Path = ""
		s, _ := strings.CutPrefix(c.Error(), "gguf: ")
		return s
	}
	s, _ := strings.CutPrefix(err.Error(), "gguf: ")
	return s
}

// metaOf is the api form of a header summary.
func metaOf(i gguf.ModelInfo) *api.ModelMeta {
	return &api.ModelMeta{Architecture: i.Architecture, Name: i.Name, Quantization: i.Quantization, VocabSize: i.VocabSize,
		BOSTokenID: i.BOS, EOSTokenID: i.EOS, ContextLength: i.ContextLength, BlockCount: i.BlockCount, Parameters: i.Parameters}
}

// newWorkerID returns "w-" and 12 hex digits.
func newWorkerID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "w-" + hex.EncodeToString(b[:])
}

// start runs the worker process, retrying on the next port when the one it
// got turns out to be busy.
func (h *Hive) start(ctx context.Context, m model, backend api.Backend, device int) (*Worker, error) {
	id := newWorkerID()
	token := httpx.NewToken()
	skip := map[int]bool{}
	var tried []int
	for attempt := 0; attempt < maxPortAttempts; attempt++ {
		w, err := h.startOnce(ctx, id, token, m, backend, device, skip)
		if err == nil {
			return w, nil
		}
		if !errors.Is(err, errPortBusy) {
			return nil, err
		}
		h.log.Info("worker port was busy; trying the next one", "worker_id", id, "port", w.Port)
		skip[w.Port] = true
		tried = append(tried, w.Port)
	}
	return nil, api.Errorf(api.CodeInternal, "worker %s found no free port after %d attempts", id, maxPortAttempts).With("ports_tried", tried)
}

// startOnce starts one worker process on a reserved port and waits for its
// health. On errPortBusy the returned handle says which port it was.
func (h *Hive) startOnce(ctx context.Context, id, token string, m model, backend api.Backend, device int, skip map[int]bool) (*Worker, error) {
	w := &Worker{ID: id, ModelRef: m.entry.Reference, ModelPath: m.entry.LocalPath, Backend: backend, Device: device,
		LogPath: filepath.Join(paths.LogsDir(h.cfg.Home), "worker-"+id+".log"), Started: time.Now(),
		token: token, stopGrace: h.cfg.StopGrace, killAfter: h.cfg.KillAfter, ready: make(chan struct{}),
		state: api.StateLoading}
	w.Port = h.reg.reservePort(w, h.cfg.WorkerPortStart, skip, h.portFree)
	if w.Port == 0 {
		return w, api.Errorf(api.CodeInternal, "no free port from %d for a worker", h.cfg.WorkerPortStart)
	}
	w.URL = "http://" + net.JoinHostPort(h.advertiseHost, strconv.Itoa(w.Port))
	w.client = &httpx.Client{BaseURL: w.URL, Token: token, HTTP: h.httpClient}
	w.log = h.log.Named("worker").With("worker_id", id)
	args := []string{"worker",
		"--model", m.entry.LocalPath,
		"--model-ref", m.entry.Reference,
		"--backend", string(backend),
		"--device", strconv.Itoa(device),
		"--host", h.cfg.WorkerHost,
		"--port", strconv.Itoa(w.Port),
		"--callback-url", h.callbackURL(),
		"--worker-id", id,
	}
	// The worker answers to the same names and origins as its hive, and to
	// the name in its URL; both lists are always set, so that nothing is
	// inherited from the hive's own environment.
	env := []string{"RBEE_API_KEY=" + token, "RBEE_CHILD=1",
		httpx.AllowedHostsEnv + "=" + strings.Join(h.workerAllowedHosts(), ","),
		httpx.AllowedOriginsEnv + "=" + strings.Join(h.cfg.AllowedOrigins, ",")}
	p, err := proc.Start(proc.Spec{Path: h.cfg.Binary, Args: args, LogFile: w.LogPath, Env: env})
	if err != nil {
		h.reg.releasePort(w, w.Port)
		h.log.Error("starting the worker failed", "worker_id", id, "binary", h.cfg.Binary, "error", err)
		return w, api.Errorf(api.CodeInternal, "the worker process could not be started").With("worker_id", id)
	}
	w.proc = p
	if err := h.reg.add(w); err != nil {
		w.stopping.Store(true)
		_ = p.Stop(context.Background(), 0)
		h.reg.releasePort(w, w.Port)
		return w, err
	}
	h.watch(w)
	w.log.Info("worker started", "pid", p.Pid(), "url", w.URL, "model", w.ModelRef, "backend", backend, "device", device,
		"log", w.LogPath, "token", httpx.Fingerprint(token))
	if err := h.waitHealthy(ctx, w); err != nil {
		h.reg.remove(w)
		if !errors.Is(err, errPortBusy) {
			w.stopping.Store(true)
			_ = w.Kill(context.Background())
		}
		return w, err
	}
	w.answered.Store(true)
	return w, nil
}

// waitHealthy polls the worker's health until it answers, the process exits
// (status ExitPortInUse gives errPortBusy), ctx ends or the ready timeout
// passes.
func (h *Hive) waitHealthy(ctx context.Context, w *Worker) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ReadyTimeout)
	defer cancel()
	delay := 20 * time.Millisecond
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		_, err := w.Ping(pctx)
		pcancel()
		if err == nil {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-w.proc.Exited():
			t.Stop()
			switch {
			case w.stopping.Load():
				return errRegistryClosed
			case w.proc.ExitCode() == ExitPortInUse:
				return errPortBusy
			}
			err := w.crashError("before answering its health check")
			w.log.Error("worker exited while starting", "exit_code", w.proc.ExitCode(), "log_tail", err.Details["log_tail"])
			return err
		case <-ctx.Done():
			t.Stop()
			if h.closing.Load() {
				return errRegistryClosed
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return api.Errorf(api.CodeConnectionTimeout, "worker %s did not answer on %s within %s", w.ID, w.URL, h.cfg.ReadyTimeout).
					With("worker_id", w.ID).WithHint("check the worker log " + w.LogPath)
			}
			return ctx.Err()
		case <-t.C:
		}
		delay = min(delay*3/2, 250*time.Millisecond)
	}
}

// portFree reports whether the worker host's port can be bound now.
func (h *Hive) portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(h.cfg.WorkerHost, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// watch removes a worker from the registry as soon as its process exits,
// and logs the exit: a crash unless the hive was stopping it.
func (h *Hive) watch(w *Worker) {
	if !h.track() {
		return // the hive has closed: the cascade stopped the process
	}
	go func() {
		defer h.wg.Done()
		<-w.proc.Exited()
		removed := h.reg.remove(w)
		code := w.proc.ExitCode()
		switch {
		case w.stopping.Load():
			w.log.Info("worker stopped", "exit_code", code)
		case w.answered.Load():
			w.log.Error("worker crashed; removed from the registry", "exit_code", code, "removed", removed, "log_tail", logTail(w.LogPath, 10))
		default:
			w.log.Debug("worker exited while starting", "exit_code", code)
		}
	}()
}

// newHTTPClient is the hive's client for its workers: no overall timeout
// (contexts bound every call), keep-alives on.
func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}}
}
