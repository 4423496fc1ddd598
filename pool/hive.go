package pool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"rbee/api"
	"rbee/internal/hf"
	"rbee/internal/httpx"
	"rbee/internal/paths"
)

// Defaults of Config's zero fields.
const (
	DefaultIdleTimeout    = 5 * time.Minute
	DefaultHealthInterval = 30 * time.Second
	DefaultReadyTimeout   = 30 * time.Second
	DefaultStopGrace      = 5 * time.Second
	DefaultKillAfter      = 10 * time.Second
)

// Config configures a hive. Zero fields take the defaults noted.
type Config struct {
	// Home is the state directory holding models.db, models/ and logs/
	// (default paths.Home(): $RBEE_HOME or ~/.rbee).
	Home string
	// Host and Port are where the hive listens (127.0.0.1, 9200).
	Host string
	Port int
	// Token is the hive's API key; every endpoint but health needs it. Empty
	// is allowed on loopback only.
	Token string
	// Binary is the rbee binary the workers run as `<Binary> worker …`
	// (default os.Executable()).
	Binary string
	// WorkerPortStart is the first port tried for a worker (8001).
	WorkerPortStart int
	// WorkerHost is the address workers listen on (default Host).
	WorkerHost string
	// AdvertiseHost is the host put in worker URLs, the name other machines
	// reach this node by (default WorkerHost, else Host when it is not an
	// unspecified address like 0.0.0.0, else the machine's host name). The
	// queen sets it to the node's ssh_host when it starts a hive over SSH.
	AdvertiseHost string
	// IdleTimeout stops a worker idle for longer (5 min).
	IdleTimeout time.Duration
	// HealthInterval is the period of the health monitor (30 s).
	HealthInterval time.Duration
	// ReadyTimeout bounds the wait for a new worker's first health answer (30 s).
	ReadyTimeout time.Duration
	// StopGrace is how long a worker asked to shut down may take before
	// SIGTERM (5 s); KillAfter is when SIGKILL follows, counted from the
	// request (10 s).
	StopGrace time.Duration
	KillAfter time.Duration
	// Devices are the node's accelerators; nil means DetectDevices. Tests
	// pass stand-ins (the hidden --fake-devices flag).
	Devices []Device
	// FakeMemoryMB, when positive, replaces the node's available memory in
	// the RAM check (the hidden --fake-memory-mb flag).
	FakeMemoryMB int64
	// HFEndpoint is the Hugging Face hub models are downloaded from (default
	// $HF_ENDPOINT, else the public hub); HFToken is sent to it (default
	// $HF_TOKEN) and never logged.
	HFEndpoint string
	HFToken    string
	// DownloadStallTimeout fails a download attempt that received no byte
	// for that long (60 s); DownloadRetryDelay is the wait before a
	// download's second attempt, doubling for each later one (100 ms).
	DownloadStallTimeout time.Duration
	DownloadRetryDelay   time.Duration
	// DiskFree, when set, replaces the free space check of downloads (tests).
	DiskFree func(dir string) (int64, error)
	// Logger receives the hive's log (default: none).
	Logger hclog.Logger
	// LogFile is the file the hive's own log goes to, as whoever started it
	// redirected it (the queen: <home>/logs/hive-local.log, or
	// <install_path>/logs/hive.log on a remote node). GET /v1/logs serves it
	// as the "hive" source; when empty, the hive*.log files in <home>/logs.
	LogFile string
	// AllowedHosts and AllowedOrigins keep web pages from driving the hive
	// and its workers, which get the same lists. A request must name the
	// hive by an IP address, localhost (or *.localhost), Host (with a
	// wildcard Host, the machine's host name), AdvertiseHost, or a name in
	// AllowedHosts ("gpu-box.example.com", "*.example.com", "*"); a request
	// with an Origin header must come from the hive's own origin or one in
	// AllowedOrigins ("http://localhost:3000", "https://*.example.com",
	// "*"). Anything else is FORBIDDEN (403). The queen passes its
	// [security] lists to the hives it starts.
	AllowedHosts   []string
	AllowedOrigins []string

	// limits bound slow and idle clients (tests shorten them; zero fields
	// take the defaults).
	limits httpx.Limits
}

// Hive is the pool daemon of one node: its model catalog, its workers and
// their HTTP API (docs/protocol.md). Create it with New, serve it with Run (or mount
// Handler and call Close).
type Hive struct {
	cfg           Config
	log           hclog.Logger
	catalog       *Catalog
	devices       []Device
	reg           *registry
	dl            *downloads
	handler       http.Handler
	httpClient    *http.Client
	advertiseHost string // the host in worker URLs

	running      atomic.Bool
	closing      atomic.Bool // no more spawns
	shutdownOnce sync.Once
	shutdownReq  chan struct{}
	logsDone     chan struct{} // closed when Close is done: log streams end

	bgMu     sync.Mutex
	bgClosed bool
	wg       sync.WaitGroup // process watchers and background stops

	closeOnce sync.Once
	closeErr  error
}

// New checks cfg, fills in its defaults, creates the home folders and opens
// the model catalog. A corrupt models.db is an error wrapping
// ErrCatalogCorrupt.
func New(cfg Config) (*Hive, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := paths.Ensure(cfg.Home); err != nil {
		return nil, fmt.Errorf("hive: state directory %s: %w", cfg.Home, err)
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cat, err := OpenCatalog(ctx, paths.HiveDB(cfg.Home))
	if err != nil {
		return nil, fmt.Errorf("hive: %w", err)
	}
	devices := cfg.Devices
	if devices == nil {
		devices = DetectDevices(ctx)
	}
	h := &Hive{cfg: cfg, log: log, catalog: cat, devices: devices, reg: newRegistry(),
		httpClient: newHTTPClient(), shutdownReq: make(chan struct{}), logsDone: make(chan struct{})}
	h.advertiseHost = cfg.AdvertiseHost
	if h.advertiseHost == "" {
		h.advertiseHost = advertiseHost(cfg.WorkerHost, cfg.Host)
	}
	h.dl = newDownloads(h)
	h.handler = h.routes()
	// The Host and Origin checks come first, before authentication.
	guard, err := httpx.NewGuard(httpx.GuardConfig{ListenAddr: h.Addr(), AllowedHosts: h.workerAllowedHosts(),
		AllowedOrigins: cfg.AllowedOrigins, Logger: log.Named("http")})
	if err != nil {
		cat.Close()
		return nil, fmt.Errorf("hive: %w", err)
	}
	h.handler = guard.Wrap(h.handler)
	return h, nil
}

// workerAllowedHosts are the host names the hive and its workers answer
// to besides their own: AllowedHosts and the name in worker URLs, by which
// the queen reaches this node.
func (h *Hive) workerAllowedHosts() []string {
	hosts := slices.Clone(h.cfg.AllowedHosts)
	if h.advertiseHost != "" && !slices.Contains(hosts, h.advertiseHost) {
		hosts = append(hosts, h.advertiseHost)
	}
	return hosts
}

func (c *Config) setDefaults() error {
	if c.Home == "" {
		home, err := paths.Home()
		if err != nil {
			return fmt.Errorf("hive: %w", err)
		}
		c.Home = home
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Port == 0 {
		c.Port = api.DefaultHivePort
	}
	if c.WorkerPortStart == 0 {
		c.WorkerPortStart = api.DefaultWorkerPort
	}
	if c.WorkerHost == "" {
		c.WorkerHost = c.Host
	}
	if c.HFEndpoint == "" {
		c.HFEndpoint = strings.TrimSpace(os.Getenv(hf.EnvEndpoint))
	}
	if c.HFToken == "" {
		c.HFToken = strings.TrimSpace(os.Getenv(hf.EnvToken))
	}
	if err := (&hf.Client{Endpoint: c.HFEndpoint}).CheckEndpoint(); err != nil {
		return fmt.Errorf("hive: %w", err)
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.IdleTimeout, DefaultIdleTimeout}, {&c.HealthInterval, DefaultHealthInterval}, {&c.ReadyTimeout, DefaultReadyTimeout},
		{&c.StopGrace, DefaultStopGrace}, {&c.KillAfter, DefaultKillAfter},
		{&c.DownloadStallTimeout, hf.DefaultStallTimeout}, {&c.DownloadRetryDelay, hf.DefaultFirstDelay}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	switch {
	case c.Port < 1 || c.Port > 65535:
		return fmt.Errorf("hive: port %d is out of range 1-65535", c.Port)
	case c.WorkerPortStart < 1 || c.WorkerPortStart > 65535:
		return fmt.Errorf("hive: worker port start %d is out of range 1-65535", c.WorkerPortStart)
	case c.IdleTimeout < 0 || c.HealthInterval < 0 || c.ReadyTimeout < 0 || c.StopGrace < 0 || c.KillAfter < 0 ||
		c.DownloadStallTimeout < 0 || c.DownloadRetryDelay < 0:
		return errors.New("hive: timeouts and intervals must be positive")
	case c.KillAfter < c.StopGrace:
		return fmt.Errorf("hive: kill-after %s is shorter than the stop grace %s", c.KillAfter, c.StopGrace)
	case c.FakeMemoryMB < 0:
		return errors.New("hive: fake memory must be positive")
	}
	if err := httpx.CheckBind(net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), c.Token); err != nil {
		return fmt.Errorf("hive: %w", err)
	}
	if err := httpx.CheckAllowedHosts(c.AllowedHosts); err != nil {
		return fmt.Errorf("hive: %w", err)
	}
	if err := httpx.CheckAllowedOrigins(c.AllowedOrigins); err != nil {
		return fmt.Errorf("hive: %w", err)
	}
	if c.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("hive: finding the rbee binary (set --binary): %w", err)
		}
		c.Binary = exe
	}
	if st, err := os.Stat(c.Binary); err != nil || st.IsDir() {
		return fmt.Errorf("hive: the rbee binary %s is not usable: %v", c.Binary, errOrDir(err))
	}
	return nil
}

func errOrDir(err error) error {
	if err != nil {
		return err
	}
	return errors.New("it is a directory")
}

// unspecified reports whether host means "every address" (or is empty).
func unspecified(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

// advertiseHost is the host other machines reach workers on: the worker
// host, else the hive host, else this machine's name.
func advertiseHost(workerHost, host string) string {
	switch {
	case !unspecified(workerHost):
		return workerHost
	case !unspecified(host):
		return host
	}
	if name, err := os.Hostname(); err == nil && name != "" {
		return name
	}
	return "127.0.0.1"
}

// Addr is the address the hive listens on (host:port).
func (h *Hive) Addr() string { return net.JoinHostPort(h.cfg.Host, strconv.Itoa(h.cfg.Port)) }

// URL is the hive's base URL on this machine.
func (h *Hive) URL() string {
	host := h.cfg.Host
	if unspecified(host) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(h.cfg.Port))
}

// callbackURL is where workers report that they are ready.
func (h *Hive) callbackURL() string { return h.URL() + "/v1/workers/ready" }

// Config returns the configuration in use, defaults filled in.
func (h *Hive) Config() Config { return h.cfg }

// Catalog is the hive's model catalog.
func (h *Hive) Catalog() *Catalog { return h.catalog }

// Handler is the hive's HTTP API, with the Host and Origin checks (see
// Config.AllowedHosts), request ids, panic recovery and bearer
// authentication.
func (h *Hive) Handler() http.Handler { return h.handler }

// ShutdownRequested is closed when POST /v1/admin/shutdown was accepted; Run
// then stops. An embedder serving Handler itself calls Close.
func (h *Hive) ShutdownRequested() <-chan struct{} { return h.shutdownReq }

func (h *Hive) requestShutdown() {
	h.shutdownOnce.Do(func() {
		h.closing.Store(true)
		close(h.shutdownReq)
	})
}

// Worker returns the registered worker with the id.
func (h *Hive) Worker(id string) (*Worker, bool) { return h.reg.get(id) }

// Workers returns the registered workers, oldest first (as last known: use
// ListWorkers for a fresh view).
func (h *Hive) Workers() []*Worker { return h.reg.list() }

// Run serves the API on Host:Port and runs the health monitor until ctx ends
// or POST /v1/admin/shutdown, then shuts down: every worker is stopped in
// parallel (docs/architecture.md), the registry is cleared, the catalog is closed. It
// returns nil after a clean shutdown.
func (h *Hive) Run(ctx context.Context) error {
	if !h.running.CompareAndSwap(false, true) {
		return errors.New("hive: Run was already called")
	}
	ln, err := net.Listen("tcp", h.Addr())
	if err != nil {
		return errors.Join(fmt.Errorf("hive: listening on %s: %w", h.Addr(), err), h.Close())
	}
	srv := httpx.NewServer(h.handler, h.log.Named("http"), h.cfg.limits)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	mctx, stopMonitor := context.WithCancel(context.Background())
	monitorDone := make(chan struct{})
	go func() {
		defer close(monitorDone)
		h.monitor(mctx)
	}()
	h.log.Info("hive listening", "url", h.URL(), "version", api.Version, "home", h.cfg.Home,
		"token", httpx.Fingerprint(h.cfg.Token), "devices", h.available(), "worker_port_start", h.cfg.WorkerPortStart,
		"hf_endpoint", h.dl.hf.BaseURL(), "hf_token", h.cfg.HFToken != "")

	var runErr error
	select {
	case <-ctx.Done():
		h.log.Info("shutting down", "reason", "signal")
	case <-h.shutdownReq:
		h.log.Info("shutting down", "reason", "admin request")
	case err := <-serveErr:
		runErr = fmt.Errorf("hive: serving: %w", err)
	}
	start := time.Now()
	stopMonitor()
	<-monitorDone
	closeErr := h.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	cancel()
	h.log.Info("hive stopped", "took", time.Since(start).Round(time.Millisecond))
	return errors.Join(runErr, closeErr)
}

// Close stops every worker in parallel (admin shutdown, 5 s grace, SIGTERM,
// SIGKILL at 10 s), clears the registry, waits for the hive's goroutines and
// closes the catalog. It is safe to call more than once.
func (h *Hive) Close() error {
	h.closeOnce.Do(func() {
		h.closing.Store(true)
		h.dl.close()
		h.stopAll(context.Background())
		h.bgMu.Lock()
		h.bgClosed = true
		h.bgMu.Unlock()
		h.wg.Wait()
		h.httpClient.CloseIdleConnections()
		h.closeErr = h.catalog.Close()
		close(h.logsDone)
	})
	return h.closeErr
}

// stopAll empties the registry and stops its workers in parallel.
func (h *Hive) stopAll(ctx context.Context) {
	ws := h.reg.close()
	if len(ws) == 0 {
		return
	}
	h.log.Info("stopping workers", "count", len(ws))
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			err := w.Close(ctx)
			w.log.Info("worker shut down", "took", time.Since(start).Round(time.Millisecond), "exit_code", w.ExitCode(), "error", err)
		}()
	}
	wg.Wait()
}

// ShutdownWorker stops one worker (admin shutdown, then SIGTERM, SIGKILL) and
// unregisters it. An unknown id is WORKER_NOT_FOUND.
func (h *Hive) ShutdownWorker(ctx context.Context, id string) error {
	w, ok := h.reg.get(id)
	if !ok {
		return api.Errorf(api.CodeWorkerNotFound, "no worker %s on this node", id).With("worker_id", id)
	}
	w.log.Info("shutting down worker on request")
	err := w.Close(ctx)
	h.reg.remove(w)
	return err
}

// ListWorkers returns the registry, each entry refreshed from its worker's
// health (500 ms each, in parallel); a worker that does not answer keeps its
// last known state.
func (h *Hive) ListWorkers(ctx context.Context) []api.WorkerInfo {
	ws := h.refreshedWorkers(ctx)
	out := make([]api.WorkerInfo, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.Info())
	}
	return out
}

// refreshedWorkers returns the registry's workers after asking each for
// its health (500 ms each, in parallel).
func (h *Hive) refreshedWorkers(ctx context.Context) []*Worker {
	ws := h.reg.list()
	var wg sync.WaitGroup
	for _, w := range ws {
		if w.stopping.Load() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			_, _ = w.Ping(pctx)
		}()
	}
	wg.Wait()
	return ws
}

// Models returns the catalog, each entry with what its file's GGUF header
// says (Meta is nil when the file is missing, unreadable or changed).
func (h *Hive) Models(ctx context.Context) ([]api.ModelEntry, error) {
	ms, err := h.catalog.List(ctx)
	if err != nil {
		return nil, err
	}
	for i := range ms {
		ms[i].Meta = h.listedMeta(ctx, ms[i])
	}
	return ms, nil
}
