package orchestrator

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"rbee/api"
	"rbee/internal/config"
	"rbee/internal/httpx"
	"rbee/internal/paths"
)

// Config configures a Queen. The zero value works: every empty field takes
// the default named in its comment (the same defaults as `rbee queen`).
type Config struct {
	// Addr is where Run listens when Listener is nil (default
	// "127.0.0.1:8080"). Without a Token it must be a loopback address.
	Addr string
	// Listener, when set, is where Run serves (Addr is then ignored). An
	// embedder that wants a free port listens on "127.0.0.1:0" itself and
	// knows the URL before Run starts. Run closes it.
	Listener net.Listener
	// Token is the bearer token every endpoint but GET /health requires
	// ("" disables authentication: loopback only). Hives the queen did not
	// start are called with it too.
	Token string
	// Home is rbee's state directory: the node registry beehives.db and
	// logs/ (default $RBEE_HOME or ~/.rbee). The local hive uses it too.
	Home string
	// Binary is the rbee executable the local hive is started from (default
	// os.Executable()). It runs as `Binary hive …` with RBEE_CHILD=1 in its
	// environment, so a program embedding rbee can serve as its own binary
	// (see rbee.HandleChildProcess).
	Binary string
	// LocalHivePort is the port of the local node's hive on 127.0.0.1
	// (default 9200).
	LocalHivePort int
	// LocalWorkerPortStart is where the local hive starts probing for
	// worker ports (default 8001).
	LocalWorkerPortStart int
	// LocalIdleTimeout is how long a worker of the local hive may stay idle
	// before the hive stops it (0: the hive's default, 5 minutes). It is
	// passed to the hive when the queen starts it.
	LocalIdleTimeout time.Duration
	// LoadingTimeout bounds how long a task waits for a worker to load its
	// model before LOADING_TIMEOUT (default 5 minutes).
	LoadingTimeout time.Duration
	// HiveRetryDelays are the waits before each attempt to reach a hive:
	// len(HiveRetryDelays) attempts (default 0, 200 ms, 400 ms: three).
	HiveRetryDelays []time.Duration
	// BusyRetryDelays are the waits before each retry of an inference whose
	// worker answered ALL_SLOTS_BUSY (default 1 s, 2 s, 4 s). A non-nil empty
	// slice means no retries.
	BusyRetryDelays []time.Duration
	// MaxQueue is how many tasks may wait for a free slot, over all the
	// queen's queues, before more are refused with ALL_SLOTS_BUSY and a
	// Retry-After. nil means the default, 256; a pointer to 0 turns the
	// queue off: a task whose worker is busy is then retried after each of
	// BusyRetryDelays and fails after the last. Use MaxQueueOf to set it.
	MaxQueue *int
	// QueueTimeout is how long a task may wait in the queue before it fails
	// with ALL_SLOTS_BUSY and a Retry-After (default 5 minutes).
	QueueTimeout time.Duration
	// MaxWorkersPerModel is how many workers of one model the queen runs
	// per node and device (0: the default, 1). Above 1, when every worker of
	// a model on a node is busy and tasks wait for a slot, the queen starts
	// another copy there if the node's preflight allows it. One copy per
	// device is the default because a second copy on the same cores or GPU
	// shares their speed rather than adding to it; more helps a node whose
	// workers have fewer slots than it has cores to spare.
	MaxWorkersPerModel int
	// HiveStartTimeout bounds how long a freshly started local hive may take
	// to answer its health check (default 60 s).
	HiveStartTimeout time.Duration
	// KnownHostsPath is the known_hosts file remote nodes' host keys are
	// checked against and recorded in (default ~/.ssh/known_hosts; the
	// configuration's [ssh] known_hosts).
	KnownHostsPath string
	// RemoteBinaryPath is where the rbee binary lives on remote nodes:
	// absolute, or relative to each node's install_path (default
	// "bin/rbee"; the configuration's [remote] binary_path).
	RemoteBinaryPath string
	// RemoteGitRepoDir is where `rbee setup install` clones and builds rbee
	// on a node: absolute, or relative to its install_path (default "src";
	// [remote] git_repo_dir).
	RemoteGitRepoDir string
	// RemoteWorkerPortStart is the first port a hive started over SSH tries
	// for its workers (default 8001; [remote] worker_port_start).
	RemoteWorkerPortStart int
	// SSHTimeout bounds one SSH connection attempt and SSHRetryDelays are
	// the waits before each attempt (defaults: 10 s; 0, 200 ms, 400 ms).
	SSHTimeout     time.Duration
	SSHRetryDelays []time.Duration
	// AllowedHosts and AllowedOrigins keep web pages from driving the
	// queen. A request must name the queen by an IP address, localhost (or
	// *.localhost), the host of Addr (with a wildcard Addr, the machine's
	// host name) or a name in AllowedHosts ("gpu-box.example.com",
	// "*.example.com", "*" for any); a request with an Origin header must
	// come from the queen's own origin or one in AllowedOrigins
	// ("http://localhost:3000", "https://*.example.com", "app://*", "*"),
	// which get CORS answers. Anything else is FORBIDDEN (403). Programs
	// that send no Origin (curl, the rbee client) are not affected. The
	// hives the queen starts get the same lists (the configuration's
	// [security] table).
	AllowedHosts   []string
	AllowedOrigins []string
	// DisableUI leaves out the web console that the queen otherwise serves
	// at / and /ui/ (the configuration's [ui] enabled = false). The API is
	// the same either way.
	DisableUI bool
	// Logger receives the queen's logs (default: discarded). Tokens are
	// logged only as fingerprints.
	Logger hclog.Logger

	// limits bound slow and idle clients (tests shorten them; zero fields
	// take the defaults: header 10 s, body 30 s, idle 120 s, 1024
	// connections).
	limits httpx.Limits

	// eventsEvery is how often GET /v2/events looks at the cluster
	// (default 1 s; tests shorten it).
	eventsEvery time.Duration

	// localHiveArgs are extra flags for the local hive's command line
	// (tests: the hidden --local-fake-devices flag of rbee queen).
	localHiveArgs []string
}

// MaxQueueOf returns a pointer to n, for Config.MaxQueue.
func MaxQueueOf(n int) *int { return &n }

// Defaults of Config.
const (
	DefaultAddr             = "127.0.0.1:8080"
	DefaultLoadingTimeout   = 5 * time.Minute
	DefaultHiveStartTimeout = 60 * time.Second
	// DefaultMaxWorkersPerModel is one worker of a model per node and device.
	DefaultMaxWorkersPerModel = 1
	// DefaultRemoteBinaryPath and DefaultRemoteGitRepoDir are relative to
	// each node's install_path.
	DefaultRemoteBinaryPath = "bin/rbee"
	DefaultRemoteGitRepoDir = "src"
)

// DefaultHiveRetryDelays and DefaultBusyRetryDelays are the retry policies of
// the retry policy of docs/architecture.md. Callers must not modify them.
var (
	DefaultHiveRetryDelays = []time.Duration{0, 200 * time.Millisecond, 400 * time.Millisecond}
	DefaultBusyRetryDelays = []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second}
)

// Timeouts the policy fixes (docs/architecture.md).
const (
	hiveAttemptTimeout = 10 * time.Second       // one health check of a hive
	hiveStopTimeout    = 30 * time.Second       // a hive's own shutdown cascade
	hiveKillGrace      = 5 * time.Second        // after SIGTERM, before SIGKILL
	listTimeout        = 10 * time.Second       // a hive's worker list during a task
	clusterListTimeout = 2 * time.Second        // each node's list for GET /v2/workers/list
	spawnTimeout       = 2 * time.Minute        // the hive's spawn (it waits for the worker's health)
	cancelTimeout      = 5 * time.Second        // DELETE of a generation on a worker
	cancelGrace        = 5 * time.Second        // a cancelled generation's stream may take this long to end
	shutdownGrace      = 5 * time.Second        // in-flight requests after Run's context ends
	startBackoffFirst  = 100 * time.Millisecond // health polls of a hive just started
	startBackoffMax    = 2 * time.Second
	tunnelOpenTimeout  = 30 * time.Second // dialling a node again to open a tunnel to a worker
)

// securityEnv is the environment that gives a hive the queen's allowed
// hosts and origins. Both are always set, so that a hive never inherits
// other lists from the environment it starts in.
func (c Config) securityEnv() map[string]string {
	return map[string]string{
		httpx.AllowedHostsEnv:   strings.Join(c.AllowedHosts, ","),
		httpx.AllowedOriginsEnv: strings.Join(c.AllowedOrigins, ","),
	}
}

// withDefaults returns c with every empty field set.
func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Home == "" {
		h, err := paths.Home()
		if err != nil {
			return c, err
		}
		c.Home = h
	}
	if c.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return c, fmt.Errorf("finding the rbee binary (set Binary): %w", err)
		}
		c.Binary = exe
	}
	if c.LocalHivePort == 0 {
		c.LocalHivePort = api.DefaultHivePort
	}
	if c.LocalWorkerPortStart == 0 {
		c.LocalWorkerPortStart = api.DefaultWorkerPort
	}
	if c.RemoteWorkerPortStart == 0 {
		c.RemoteWorkerPortStart = api.DefaultWorkerPort
	}
	if c.RemoteBinaryPath == "" {
		c.RemoteBinaryPath = DefaultRemoteBinaryPath
	}
	if c.RemoteGitRepoDir == "" {
		c.RemoteGitRepoDir = DefaultRemoteGitRepoDir
	}
	if c.SSHRetryDelays != nil {
		c.SSHRetryDelays = slices.Clone(c.SSHRetryDelays)
	}
	if c.LoadingTimeout == 0 {
		c.LoadingTimeout = DefaultLoadingTimeout
	}
	if len(c.HiveRetryDelays) == 0 {
		c.HiveRetryDelays = DefaultHiveRetryDelays
	}
	if c.BusyRetryDelays == nil {
		c.BusyRetryDelays = DefaultBusyRetryDelays
	}
	c.HiveRetryDelays = slices.Clone(c.HiveRetryDelays)
	c.BusyRetryDelays = slices.Clone(c.BusyRetryDelays)
	if c.HiveStartTimeout == 0 {
		c.HiveStartTimeout = DefaultHiveStartTimeout
	}
	if c.MaxQueue == nil {
		c.MaxQueue = MaxQueueOf(DefaultMaxQueue)
	} else {
		c.MaxQueue = MaxQueueOf(*c.MaxQueue)
	}
	if *c.MaxQueue < 0 {
		return c, fmt.Errorf("MaxQueue %d: give 0 (no queue) or more", *c.MaxQueue)
	}
	if c.QueueTimeout == 0 {
		c.QueueTimeout = DefaultQueueTimeout
	}
	if c.MaxWorkersPerModel == 0 {
		c.MaxWorkersPerModel = DefaultMaxWorkersPerModel
	}
	if c.MaxWorkersPerModel < 0 {
		return c, fmt.Errorf("MaxWorkersPerModel %d: give 1 or more", c.MaxWorkersPerModel)
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.eventsEvery <= 0 {
		c.eventsEvery = defaultEventsEvery
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"LocalHivePort", c.LocalHivePort}, {"LocalWorkerPortStart", c.LocalWorkerPortStart}, {"RemoteWorkerPortStart", c.RemoteWorkerPortStart}} {
		if p.v < 1 || p.v > 65535 {
			return c, fmt.Errorf("%s %d: a port is between 1 and 65535", p.name, p.v)
		}
	}
	for _, p := range []struct{ name, v string }{{"RemoteBinaryPath", c.RemoteBinaryPath}, {"RemoteGitRepoDir", c.RemoteGitRepoDir}} {
		if err := config.CheckRemotePath(p.v); err != nil {
			return c, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	if c.LoadingTimeout < 0 || c.HiveStartTimeout < 0 || c.QueueTimeout < 0 || c.SSHTimeout < 0 || c.LocalIdleTimeout < 0 {
		return c, fmt.Errorf("timeouts must be positive")
	}
	if err := httpx.CheckAllowedHosts(c.AllowedHosts); err != nil {
		return c, err
	}
	if err := httpx.CheckAllowedOrigins(c.AllowedOrigins); err != nil {
		return c, err
	}
	c.AllowedHosts = slices.Clone(c.AllowedHosts)
	c.AllowedOrigins = slices.Clone(c.AllowedOrigins)
	for _, d := range slices.Concat(c.HiveRetryDelays, c.BusyRetryDelays, c.SSHRetryDelays) {
		if d < 0 {
			return c, fmt.Errorf("retry delays must not be negative")
		}
	}
	return c, nil
}
