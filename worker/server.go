package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"rbee/api"
	"rbee/internal/gguf"
	"rbee/internal/httpx"
	"rbee/internal/sysmem"
	"rbee/worker/engine"
)

// phase is where the worker is in its life; idle and busy are both
// phaseServing (busy while any slot is in use).
type phase int

const (
	phaseLoading phase = iota
	phaseServing
	phaseStopping
	phaseFailed
)

// Server is a worker: one model, its inference slots and the HTTP API of
// docs/protocol.md. Make one with New and call Run.
type Server struct {
	cfg     Config
	log     hclog.Logger
	handler http.Handler
	load    *loadBroadcast
	started atomic.Bool

	shutdownOnce sync.Once
	shutdownCh   chan struct{} // closed by POST /v1/admin/shutdown

	mu           sync.Mutex
	phase        phase
	model        *engine.Model
	slots        []*slot
	active       map[string]*job // running jobs by request id
	pending      []*job          // submitted, not yet taken by the scheduler loop
	gens         sync.WaitGroup  // running jobs (Add under mu while serving)
	lastActivity time.Time
	url          string // the worker's own base URL, once bound
	slotsTotal   int    // the configured slots (DefaultSlots when automatic) until the model is loaded

	wake    chan struct{} // capacity 1: wakes the scheduler loop
	stats   schedStats
	formats formats // compiled output formats and the vocabulary they need
}

// New checks cfg and makes a worker. It neither binds nor loads: Run does.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:          cfg,
		log:          cfg.Logger.With("worker_id", cfg.WorkerID),
		load:         newLoadBroadcast(),
		shutdownCh:   make(chan struct{}),
		active:       make(map[string]*job),
		wake:         make(chan struct{}, 1),
		lastActivity: time.Now(),
		slotsTotal:   cfg.Slots,
	}
	if s.slotsTotal == 0 {
		s.slotsTotal = DefaultSlots
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", s.handleHealth)
	mux.HandleFunc("GET /v1/ready", s.handleReady)
	mux.HandleFunc("GET /v1/loading/progress", s.handleProgress)
	mux.HandleFunc("POST /v1/inference", s.handleInference)
	mux.HandleFunc("DELETE /v1/inference/{id}", s.handleCancel)
	mux.HandleFunc("POST /v1/admin/shutdown", s.handleShutdown)
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	routes := httpx.Routes(mux, "the worker", "the worker's endpoints are under /v1/: health, ready, loading/progress, inference and admin/shutdown; and GET /metrics")
	s.handler = httpx.Middleware(s.log, httpx.Auth(cfg.APIKey, []string{"/v1/health"}, routes))
	// The Host and Origin checks come first, before authentication.
	listen := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	if cfg.Listener != nil {
		listen = cfg.Listener.Addr().String()
	}
	guard, err := httpx.NewGuard(httpx.GuardConfig{ListenAddr: listen, AllowedHosts: cfg.AllowedHosts,
		AllowedOrigins: cfg.AllowedOrigins, Logger: s.log.Named("http")})
	if err != nil {
		return nil, configErr("%v", err)
	}
	s.handler = guard.Wrap(s.handler)
	return s, nil
}

// Handler returns the worker's HTTP API: the handler Run serves. It answers
// as a loading worker until Run has loaded the model, so a program that
// mounts it elsewhere still calls Run (with a Listener) to load and stop.
func (s *Server) Handler() http.Handler { return s.handler }

// WorkerID returns the worker's id.
func (s *Server) WorkerID() string { return s.cfg.WorkerID }

// URL returns the worker's base URL ("http://127.0.0.1:8001") once Run has
// bound its port, else "".
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Shutdown asks a running worker to stop, as POST /v1/admin/shutdown does:
// Run ends the running inferences (their clients get SHUTTING_DOWN), closes
// the model and returns nil.
func (s *Server) Shutdown() {
	s.shutdownOnce.Do(func() { close(s.shutdownCh) })
}

// Run binds the worker's port (a *PortInUseError when it is taken), loads the
// model in the background while serving the API, calls the hive back once the
// model is loaded, and serves until ctx ends or Shutdown is called; it then
// ends the running inferences, closes the model and returns nil. A failed
// load or a callback that never succeeds ends Run with the error. Run may be
// called once.
func (s *Server) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("worker: Run called twice")
	}
	ln, err := s.listen()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.url = "http://" + net.JoinHostPort(advertisedHost(s.cfg.Host, ln.Addr()), strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	s.mu.Unlock()
	s.log.Info("listening", "addr", ln.Addr().String(), "url", s.URL(), "model", s.cfg.ModelPath,
		"model_ref", s.cfg.ModelRef, "slots", s.cfg.Slots, "api_key", httpx.Fingerprint(s.cfg.APIKey))

	srv := httpx.NewServer(s.handler, s.log.Named("http"), s.cfg.limits)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	loadCtx, cancelLoad := context.WithCancel(ctx)
	defer cancelLoad()
	// The scheduler loop outlives the load: it stops after the running
	// inferences have ended (or the grace period is over).
	schedCtx, cancelSched := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSched()
	fatal := make(chan error, 1)
	var bg sync.WaitGroup
	bg.Go(func() {
		m, err := s.loadModel(loadCtx)
		if err != nil {
			fatal <- err
			return
		}
		if m == nil {
			return // shut down while loading
		}
		bg.Go(func() { s.schedule(schedCtx, m) })
		if s.cfg.CallbackURL == "" || loadCtx.Err() != nil {
			return
		}
		if err := s.callback(loadCtx); err != nil && loadCtx.Err() == nil {
			fatal <- err
		}
	})

	var runErr error
	select {
	case <-ctx.Done():
		s.log.Info("stopping: signal or context ended")
	case <-s.shutdownCh:
		s.log.Info("stopping: shutdown requested")
	case runErr = <-fatal:
		s.log.Error("stopping", "error", runErr)
	case err := <-serveErr:
		runErr = fmt.Errorf("serving %s: %w", ln.Addr(), err)
		s.log.Error("stopping", "error", runErr)
	}

	// Stop taking work, end the running inferences (their streams end with
	// an error event SHUTTING_DOWN, not as if their clients had cancelled
	// them), then let the connections finish.
	s.stop()
	cancelLoad()
	deadline := time.Now().Add(s.cfg.ShutdownGrace)
	if !waitTimeout(&s.gens, s.cfg.ShutdownGrace) {
		s.log.Warn("inferences still running after the grace period")
	}
	cancelSched()
	shutCtx, cancelShut := context.WithDeadline(context.Background(), deadline.Add(time.Second))
	if err := srv.Shutdown(shutCtx); err != nil {
		s.log.Warn("closing connections that did not finish", "error", err)
		_ = srv.Close()
	}
	cancelShut()
	bg.Wait()

	s.mu.Lock()
	m := s.model
	s.mu.Unlock()
	if m != nil {
		if err := m.Close(); err != nil {
			s.log.Warn("closing the model", "error", err)
		}
	}
	s.log.Info("stopped")
	return runErr
}

// listen binds the configured address (or takes the configured listener).
func (s *Server) listen() (net.Listener, error) {
	if s.cfg.Listener != nil {
		if err := httpx.CheckBind(s.cfg.Listener.Addr().String(), s.cfg.APIKey); err != nil {
			s.cfg.Listener.Close()
			return nil, err
		}
		return s.cfg.Listener, nil
	}
	addr := net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
	if err := httpx.CheckBind(addr, s.cfg.APIKey); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, &PortInUseError{Port: s.cfg.Port, Err: err}
		}
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	return ln, nil
}

// advertisedHost is the host others reach the worker at: the configured
// one, or for a wildcard address the machine's name.
func advertisedHost(host string, addr net.Addr) string {
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsUnspecified() {
		return host
	}
	if name, err := os.Hostname(); err == nil && name != "" {
		return name
	}
	if ta, ok := addr.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return host
}

// waitTimeout waits for wg up to d; it reports whether wg finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// loadModel loads the model, reporting progress to the subscribers, and
// returns it once the worker serves it. A load cut short by shutdown returns
// no model and no error.
func (s *Server) loadModel(ctx context.Context) (*engine.Model, error) {
	start := time.Now()
	fail := func(err error) (*engine.Model, error) {
		if ctx.Err() != nil {
			// Cut short by shutdown (Run is stopping the worker).
			s.load.update(func(st *loadStatus) {
				st.err = api.Errorf(api.CodeShuttingDown, "the worker is shutting down")
			})
			return nil, nil
		}
		s.mu.Lock()
		if s.phase == phaseLoading {
			s.phase = phaseFailed
		}
		s.mu.Unlock()
		e := api.Errorf(api.CodeInferenceFailed, "loading the model failed: %v", err)
		s.load.update(func(st *loadStatus) { st.err = e })
		return nil, fmt.Errorf("loading model %s: %w", s.cfg.ModelPath, err)
	}
	info, err := gguf.ReadInfo(s.cfg.ModelPath)
	if err != nil {
		return fail(err)
	}
	memBefore, memErr := sysmem.Available()
	initial := engine.LoadProgress{LayersTotal: info.BlockCount + 1}
	s.load.update(func(st *loadStatus) { st.progress = initial })
	s.log.Info("loading model", "path", s.cfg.ModelPath, "architecture", info.Architecture,
		"quantization", info.Quantization, "layers", info.BlockCount, "size_bytes", info.FileSize)
	if s.cfg.loadHook != nil {
		s.cfg.loadHook(ctx, initial)
	}
	m, err := engine.Load(ctx, s.cfg.ModelPath, engine.Options{
		Threads:     s.cfg.Threads,
		ContextSize: s.cfg.ContextSize,
		Progress: func(p engine.LoadProgress) {
			s.load.update(func(st *loadStatus) { st.progress = p })
			s.log.Debug("loading", "layers_loaded", p.LayersLoaded, "layers_total", p.LayersTotal)
			if s.cfg.loadHook != nil {
				s.cfg.loadHook(ctx, p)
			}
		},
	})
	if err != nil {
		return fail(err)
	}
	n := s.cfg.Slots
	if n == 0 {
		n = AutoSlots(memBefore, memErr, m.FileSize(), m.KVCacheBytes())
	} else if memErr == nil && memBefore > 0 && sessionBudget(memBefore, m.FileSize()) < int64(n)*m.KVCacheBytes() {
		s.log.Warn("the KV caches of the slots may not fit in the memory left after the weights",
			"slots", n, "kv_cache_bytes", m.KVCacheBytes(), "available_bytes", memBefore, "model_bytes", m.FileSize())
	}
	slots := make([]*slot, n)
	for i := range slots {
		slots[i] = &slot{id: i, sess: m.NewSession()}
	}
	s.mu.Lock()
	if s.phase != phaseLoading {
		s.mu.Unlock()
		m.Close()
		return nil, nil
	}
	s.model, s.slots, s.slotsTotal, s.phase = m, slots, len(slots), phaseServing
	s.mu.Unlock()
	s.load.update(func(st *loadStatus) { st.ready = true })
	s.log.Info("model loaded", "duration", time.Since(start).Round(time.Millisecond),
		"context_size", m.ContextSize(), "threads", m.Threads(), "slots", len(slots), "kv_cache_bytes", m.KVCacheBytes(), "prompt_chunk", s.cfg.PromptChunk,
		"chat_template", chatTemplateName(m))
	return m, nil
}

// stop moves the worker to stopping and cancels every running generation
// with errWorkerStopping.
func (s *Server) stop() {
	s.mu.Lock()
	prev := s.phase
	s.phase = phaseStopping
	for _, g := range s.active {
		g.cancel(errWorkerStopping)
	}
	s.mu.Unlock()
	if prev == phaseLoading {
		s.load.update(func(st *loadStatus) {
			st.err = api.Errorf(api.CodeShuttingDown, "the worker is shutting down")
		})
	}
}

// stateLocked is the worker's state as the API names it. s.mu is held.
func (s *Server) stateLocked() (state api.WorkerState, busy int) {
	for _, sl := range s.slots {
		if sl.busy {
			busy++
		}
	}
	switch s.phase {
	case phaseLoading:
		return api.StateLoading, busy
	case phaseStopping:
		return api.StateStopping, busy
	case phaseFailed:
		return api.StateFailed, busy
	}
	if busy > 0 {
		return api.StateBusy, busy
	}
	return api.StateIdle, busy
}

// Health returns what GET /v1/health answers.
func (s *Server) Health() api.WorkerHealth {
	s.mu.Lock()
	defer s.mu.Unlock()
	state, busy := s.stateLocked()
	return api.WorkerHealth{Status: "ok", Version: api.Version, WorkerID: s.cfg.WorkerID, ModelRef: s.cfg.ModelRef,
		State: state, SlotsTotal: s.slotsTotal, SlotsBusy: busy, LastActivity: s.lastActivity,
		Batch: int(s.stats.lastBatch.Load()), Steps: s.stats.steps.Load()}
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, s.Health())
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	state, _ := s.stateLocked()
	s.mu.Unlock()
	resp := api.ReadyResponse{State: state}
	switch state {
	case api.StateIdle, api.StateBusy:
		resp.Ready, resp.ModelLoaded = true, true
	case api.StateLoading:
		st, _ := s.load.get()
		resp.ProgressURL = "/v1/loading/progress"
		resp.LayersLoaded, resp.LayersTotal = st.progress.LayersLoaded, st.progress.LayersTotal
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}

func (s *Server) handleShutdown(w http.ResponseWriter, r *http.Request) {
	s.log.Info("shutdown requested", "request_id", httpx.RequestID(r))
	httpx.WriteJSON(w, http.StatusAccepted, map[string]api.WorkerState{"state": api.StateStopping})
	s.Shutdown()
}
