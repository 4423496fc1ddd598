package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/worker/engine"
)

// Config configures a worker. ModelPath is required; the zero value of every
// other field has a sensible default.
type Config struct {
	// ModelPath is the GGUF file to serve.
	ModelPath string
	// ModelRef is the reference the hive knows the model by; "" means
	// "file:" + the absolute ModelPath.
	ModelRef string
	// Backend and Device name where the model runs. Only "cpu" (the default)
	// exists in this build.
	Backend api.Backend
	Device  int

	// Host and Port are where the worker listens (default 127.0.0.1 and
	// api.DefaultWorkerPort); Port -1 picks any free port. Listener, when
	// set, is used instead of binding Host:Port (Run closes it).
	Host     string
	Port     int
	Listener net.Listener

	// CallbackURL is the hive's POST /v1/workers/ready, called once the model
	// is loaded; "" means no callback.
	CallbackURL string
	// WorkerID names the worker (default a new "w-…" id).
	WorkerID string
	// APIKey is the bearer token every endpoint but /v1/health requires. It
	// may be empty only when the worker listens on loopback.
	APIKey string
	// AllowedHosts and AllowedOrigins keep web pages from driving the
	// worker. A request must name it by an IP address, localhost (or
	// *.localhost), Host (with a wildcard Host, the machine's host name),
	// or a name in AllowedHosts ("gpu-box.example.com", "*.example.com",
	// "*"); a request with an Origin header must come from the worker's own
	// origin or one in AllowedOrigins. Anything else is FORBIDDEN (403).
	// A hive passes its own lists, and the name in the worker's URL.
	AllowedHosts   []string
	AllowedOrigins []string

	// Slots is the number of inferences served at once; each slot is an
	// engine session with its own KV cache, and the running inferences share
	// every forward pass. 0 (the default) chooses DefaultSlots, fewer when
	// their KV caches would not fit in the memory left after the weights
	// (see AutoSlots); a number given is used as is.
	Slots int
	// PromptChunk caps the prompt tokens one forward pass reads, over all the
	// slots (default engine.DefaultChunk, 256): a long prompt then delays the
	// tokens of the other running inferences by at most one chunk's pass.
	PromptChunk int
	// Threads is the goroutines of a forward pass (0: one per CPU).
	Threads int
	// ContextSize is the tokens a slot holds (0: the engine's default).
	ContextSize int

	// Logger receives the worker's logs (default: none). Tokens appear only
	// as fingerprints.
	Logger hclog.Logger
	// HTTPClient makes the ready callback (default: 5 s timeout per attempt).
	HTTPClient *http.Client
	// ReadyTimeout bounds the retries of the ready callback (default 30 s);
	// after it Run fails.
	ReadyTimeout time.Duration
	// ShutdownGrace bounds how long shutdown waits for running inferences to
	// end their streams and for connections to close (default 5 s).
	ShutdownGrace time.Duration

	// limits bound slow and idle clients (tests shorten them; zero fields
	// take the defaults).
	limits httpx.Limits

	// loadHook, when set (by tests), is called before the load starts and
	// after each layer, with the progress so far; the load waits for it.
	loadHook func(ctx context.Context, p engine.LoadProgress)
	// tokenHook, when set (by tests), is called by the request's handler
	// after each piece of text a generation emits (index counts them from
	// 0); the generation waits for it: the scheduler does not step it (but
	// does step the others) until the handler has dealt with every token
	// it was given. ctx ends when the generation is cancelled.
	tokenHook func(ctx context.Context, requestID string, index int)
	// slowClient, set by tests with a tokenHook, makes the hook a slow
	// client instead: the generation goes on while the hook blocks, and its
	// tokens wait for the handler.
	slowClient bool
	// stepHook, when set (by tests), is called by the scheduler loop after
	// each forward pass with the number of generations it advanced; the
	// loop waits for it.
	stepHook func(ctx context.Context, batch int)
}

// Limits on the configuration.
const (
	MaxSlots       = 64
	MaxPromptChunk = 4096
)

// Defaults.
const (
	// DefaultSlots is the number of slots a worker serves when its
	// configuration does not say, unless memory is short (see AutoSlots).
	// Decoding is bound by reading the weights, and one forward pass reads
	// them once for every slot in the batch: on a CPU, eight concurrent
	// streams get several times the aggregate tokens/s of one, where four
	// slots would leave half of eight clients waiting in the queen's queue.
	DefaultSlots         = 8
	DefaultReadyTimeout  = 30 * time.Second
	DefaultShutdownGrace = 5 * time.Second
)

// ErrConfig is wrapped by every configuration error New returns.
var ErrConfig = errors.New("invalid worker configuration")

// ErrPortInUse is wrapped by the error Run returns when the worker's port is
// taken (see PortInUseError).
var ErrPortInUse = errors.New("port in use")

// ExitPortInUse is the exit status of `rbee worker` when its port is taken:
// the hive then retries on the next port.
const ExitPortInUse = 3

// PortInUseError reports that the worker could not bind its port because
// something else holds it. Its ExitCode is ExitPortInUse.
type PortInUseError struct {
	Port int
	Err  error // the bind error
}

func (e *PortInUseError) Error() string { return fmt.Sprintf("port %d is in use", e.Port) }

// Unwrap returns ErrPortInUse and the bind error.
func (e *PortInUseError) Unwrap() []error { return []error{ErrPortInUse, e.Err} }

// ExitCode is the process exit status for this error (ExitPortInUse).
func (e *PortInUseError) ExitCode() int { return ExitPortInUse }

func configErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
}

// withDefaults checks c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	if c.ModelPath == "" {
		return c, configErr("a model path is required")
	}
	abs, err := filepath.Abs(c.ModelPath)
	if err != nil {
		return c, configErr("model path %q: %v", c.ModelPath, err)
	}
	c.ModelPath = abs
	if c.ModelRef == "" {
		c.ModelRef = "file:" + filepath.ToSlash(abs)
	}
	if _, e := api.ParseModelRef(c.ModelRef); e != nil {
		return c, configErr("model reference: %s", e.Message)
	}
	if c.Backend == "" {
		c.Backend = api.BackendCPU
	}
	if e := api.ValidateBackend(c.Backend, c.Device); e != nil {
		return c, configErr("%s", e.Message)
	}
	if c.Backend != api.BackendCPU {
		return c, configErr("backend %s is not available: this build has only the cpu engine", c.Backend)
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	switch {
	case c.Port == 0:
		c.Port = api.DefaultWorkerPort
	case c.Port == -1:
		c.Port = 0
	case c.Port < 0 || c.Port > 65535:
		return c, configErr("port %d is out of range (1-65535)", c.Port)
	}
	if c.CallbackURL != "" {
		u, err := url.Parse(c.CallbackURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, configErr("callback URL %q is not an http(s) URL", c.CallbackURL)
		}
	}
	if c.WorkerID == "" {
		c.WorkerID = httpx.NewID("w-")
	}
	if e := api.ValidateWorkerID(c.WorkerID); e != nil {
		return c, configErr("%s", e.Message)
	}
	if err := httpx.CheckAllowedHosts(c.AllowedHosts); err != nil {
		return c, configErr("%v", err)
	}
	if err := httpx.CheckAllowedOrigins(c.AllowedOrigins); err != nil {
		return c, configErr("%v", err)
	}
	if c.Slots < 0 || c.Slots > MaxSlots {
		return c, configErr("slots must be between 0 (automatic) and %d", MaxSlots)
	}
	if c.PromptChunk == 0 {
		c.PromptChunk = engine.DefaultChunk
	}
	if c.PromptChunk < 1 || c.PromptChunk > MaxPromptChunk {
		return c, configErr("prompt chunk must be between 1 and %d tokens", MaxPromptChunk)
	}
	if c.Threads < 0 || c.Threads > 1024 {
		return c, configErr("threads must be between 0 (one per CPU) and 1024")
	}
	if c.ContextSize < 0 || c.ContextSize > 1<<20 {
		return c, configErr("context size must be between 0 (the model's) and %d", 1<<20)
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = DefaultShutdownGrace
	}
	return c, nil
}

// memoryReserve is memory AutoSlots leaves for everything but the weights
// and the KV caches: the sessions' scratch space, the Go runtime, the HTTP
// server and the rest of the machine.
const memoryReserve = 512 << 20

// sessionBudget is the memory left for the slots' KV caches when available
// bytes were free before a model file of modelBytes was loaded.
func sessionBudget(available, modelBytes int64) int64 {
	return available - modelBytes - memoryReserve
}

// AutoSlots is the number of slots a worker serves when its configuration
// leaves it open: DefaultSlots, or fewer (at least 1) when that many KV
// caches of kvBytes each would not fit in the memory that was available
// (available bytes, memErr when it could not be read) before the model of
// modelBytes was loaded, less a reserve of 512 MiB. Where the available
// memory cannot be read it is DefaultSlots.
func AutoSlots(available int64, memErr error, modelBytes, kvBytes int64) int {
	if memErr != nil || available <= 0 || kvBytes <= 0 {
		return DefaultSlots
	}
	fit := sessionBudget(available, modelBytes) / kvBytes
	return int(max(1, min(fit, DefaultSlots)))
}
