package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/paths"
)

// Queen is the orchestrator daemon (docs/architecture.md): the node registry, the
// local hive it starts as a child process, the task flow that finds or
// spawns a worker and relays its stream, and the cluster-wide worker view.
//
// Make one with New, then either Run it (it listens and serves until its
// context ends, then shuts down) or mount Handler in a server of your own and
// call Close when done. Close, or the end of Run, stops the hives the queen
// started (and, through them, their workers); hives it did not start are left
// running.
//
// A Queen runs no goroutine of its own outside Run: the work of a request
// runs on the request's goroutine, and the local hive is a child process.
type Queen struct {
	cfg     Config
	log     hclog.Logger
	store   *store
	hives   *hiveManager
	tasks   taskRegistry
	metrics queenMetrics
	queue   *slotQueue
	placing placements
	logs    logStreams
	// counters and downloads feed the console's snapshots.
	counters  tokenCounters
	downloads downloadList
	snapCache snapshotCache
	http      *http.Client
	handler   http.Handler

	running   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New opens the node registry under cfg.Home (creating the folder) and
// returns a Queen ready to Run or to serve its Handler. Nothing is started:
// the local hive starts with the first task on node local.
func New(cfg Config) (*Queen, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("queen config: %w", err)
	}
	if err := paths.Ensure(cfg.Home); err != nil {
		return nil, fmt.Errorf("preparing %s: %w", cfg.Home, err)
	}
	st, err := openStore(context.Background(), paths.QueenDB(cfg.Home))
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{
		Proxy:               nil, // hives and workers are reached directly, never through a proxy
		DialContext:         (&net.Dialer{Timeout: hiveAttemptTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}
	q := &Queen{cfg: cfg, log: cfg.Logger.Named("queen"), store: st, http: &http.Client{Transport: transport}}
	st.log = q.log.Named("registry")
	q.queue = newSlotQueue(*cfg.MaxQueue, cfg.QueueTimeout, q.metrics.queueWaited)
	q.hives = &hiveManager{cfg: cfg, log: q.log.Named("hives"), store: st, http: q.http,
		remote: newRemotes(cfg, q.log.Named("remote"), st, q.http)}
	q.handler = q.routes()
	// The Host and Origin checks come first, before authentication.
	guard, err := httpx.NewGuard(httpx.GuardConfig{ListenAddr: cfg.listenAddr(), AllowedHosts: cfg.AllowedHosts,
		AllowedOrigins: cfg.AllowedOrigins, Logger: q.log.Named("http")})
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("queen config: %w", err)
	}
	q.handler = guard.Wrap(q.handler)
	return q, nil
}

// listenAddr is where the queen serves: its Listener's address, else Addr.
func (c Config) listenAddr() string {
	if c.Listener != nil {
		return c.Listener.Addr().String()
	}
	return c.Addr
}

// Handler returns the queen's HTTP API: the Host and Origin checks (see
// Config.AllowedHosts), request ids, panic recovery and, with a Token,
// bearer authentication on everything but GET /health. It works without
// Run; a server of your own that is reached by a host name other than
// localhost needs that name in AllowedHosts.
func (q *Queen) Handler() http.Handler { return q.handler }

// Run serves the API on cfg.Listener (or a listener on cfg.Addr) until ctx
// ends, then shuts down: new requests are refused, running tasks end with a
// SHUTTING_DOWN error event (their generations are cancelled on the
// workers), and the hives the queen started are stopped with their workers.
// It returns nil after a clean shutdown. Run may be called once; it closes
// the Queen when it returns.
func (q *Queen) Run(ctx context.Context) error {
	if !q.running.CompareAndSwap(false, true) {
		return errors.New("queen: Run called twice")
	}
	ln := q.cfg.Listener
	addr := q.cfg.Addr
	if ln != nil {
		addr = ln.Addr().String()
	}
	if err := httpx.CheckBind(addr, q.cfg.Token); err != nil {
		if ln != nil {
			ln.Close()
		}
		q.Close()
		return err
	}
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			q.Close()
			return fmt.Errorf("queen: %w", err)
		}
	}
	srv := httpx.NewServer(q.handler, q.log.Named("http"), q.cfg.limits)
	q.log.Info("queen listening", "addr", ln.Addr().String(), "version", api.Version,
		"api_key", httpx.Fingerprint(q.cfg.Token), "home", q.cfg.Home, "queue", q.queue.String())
	if !q.cfg.DisableUI {
		q.log.Info("web console at http://" + ln.Addr().String() + "/")
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
		q.log.Info("shutting down")
	case err = <-serveErr:
		q.log.Error("server stopped", "error", err)
	}
	// Running tasks end first (their streams would keep Shutdown waiting),
	// then the server stops, then the hives.
	q.tasks.closeAll()
	q.logs.closeAll()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	if serr := srv.Shutdown(sctx); serr != nil {
		_ = srv.Close()
	}
	cancel()
	if err == nil {
		<-serveErr // http.ErrServerClosed
	}
	if cerr := q.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close ends running tasks, stops the hives this queen started (each is
// asked to shut down, which stops its workers; SIGTERM then SIGKILL if it
// does not exit in time) and closes the registry. It is safe to call more
// than once; later calls return the first result.
func (q *Queen) Close() error {
	q.closeOnce.Do(func() {
		q.tasks.closeAll()
		q.logs.closeAll()
		q.hives.close(context.Background())
		q.http.CloseIdleConnections()
		q.closeErr = q.store.Close()
	})
	return q.closeErr
}

// routes builds the API.
func (q *Queen) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range q.endpoints() {
		mux.HandleFunc(rt.method+" "+rt.path, rt.h)
	}
	// Unknown paths and wrong methods are answered in the error envelope.
	fallback := httpx.Routes(mux, "the queen", "the queen's endpoints are under /v2/, /v1/ (OpenAI-compatible) and /api/ (ollama-compatible), with GET /health and GET /metrics")
	return httpx.Middleware(q.log.Named("http"), q.withConsole(q.withOpenAI(q.withOllama(httpx.Auth(q.cfg.Token, []string{"/health"}, fallback)))))
}

type endpoint struct {
	method, path string
	h            http.HandlerFunc
}

func (q *Queen) endpoints() []endpoint {
	return []endpoint{
		{"GET", "/health", q.handleHealth},
		{"POST", "/v2/tasks", q.handleTask},
		{"DELETE", "/v2/tasks/{id}", q.handleTaskCancel},
		{"GET", "/v2/workers/list", q.handleWorkersList},
		{"GET", "/v2/workers/health", q.handleWorkersHealth},
		{"POST", "/v2/workers/shutdown", q.handleWorkersShutdown},
		{"GET", "/v2/registry/beehives/list", q.handleNodesList},
		{"POST", "/v2/registry/beehives/remove", q.handleNodesRemove},
		{"POST", "/v2/registry/beehives/add", q.handleNodesAdd},
		{"POST", "/v2/registry/beehives/install", q.handleNodesInstall},
		{"GET", "/v2/logs", q.handleLogs},
		{"GET", "/v2/queue", q.handleQueue},
		{"GET", "/metrics", q.handleMetrics},
		{"GET", "/v2/events", q.handleEvents},
		{"GET", "/v2/models", q.handleClusterModels},
		{"POST", "/v2/models/download", q.handlePull},
	}
}

func (q *Queen) handleHealth(w http.ResponseWriter, r *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, api.Health{Status: "ok", Version: api.Version})
}
