package worker

import (
	"context"
	"io"
	"os"
	"strconv"

	"github.com/hashicorp/go-hclog"

	"rbee/api"
	"rbee/internal/cliutil"
	"rbee/internal/httpx"
	"rbee/worker/engine"
)

// APIKeyEnv is the environment variable a worker reads its token from when no
// --api-key-file is given.
const APIKeyEnv = httpx.APIKeyEnv

// SlotsEnv is the environment variable a worker reads its slot count from
// when no --slots is given. A worker inherits its hive's environment, so
// RBEE_WORKER_SLOTS set for a hive (or a queen that starts the local hive)
// applies to all its workers.
const SlotsEnv = "RBEE_WORKER_SLOTS"

const (
	usageLine = "--model PATH --port PORT [flags]"
	summary   = "run a worker serving one model (started by a hive)"
)

// Main runs `rbee worker` from its command line (flags as in the hive's spawn
// command) until ctx ends or it is told to shut down; it returns nil after a
// clean shutdown. Logs go to stderr. The token comes from --api-key-file (a
// file of mode 0600 or narrower) or RBEE_API_KEY, never from an argument;
// the allowed hosts and origins from RBEE_ALLOWED_HOSTS and
// RBEE_ALLOWED_ORIGINS (comma-separated, set by the hive). A taken port is
// a *PortInUseError (exit status ExitPortInUse).
func Main(ctx context.Context, args []string, stderr io.Writer) error {
	fs := cliutil.NewFlagSet("worker")
	var cfg Config
	fs.StringVar(&cfg.ModelPath, "model", "", "GGUF model `file` to serve (required)")
	fs.StringVar(&cfg.ModelRef, "model-ref", "", "the model's reference in the hive's catalog (default file:PATH)")
	backend := fs.String("backend", string(api.BackendCPU), "compute backend (only cpu in this build)")
	fs.IntVar(&cfg.Device, "device", 0, "device index on the backend")
	fs.StringVar(&cfg.Host, "host", "127.0.0.1", "address to listen on")
	fs.IntVar(&cfg.Port, "port", api.DefaultWorkerPort, "port to listen on")
	fs.StringVar(&cfg.CallbackURL, "callback-url", "", "the hive's ready endpoint, called once the model is loaded")
	fs.StringVar(&cfg.WorkerID, "worker-id", "", "the worker's id (default a new one)")
	keyFile := fs.String("api-key-file", "", "file holding the API key (mode 0600); default $"+APIKeyEnv)
	slotsDefault := 0
	if v := os.Getenv(SlotsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > MaxSlots {
			return cliutil.Usagef("$%s=%q: want a number of slots from 0 (automatic) to %d", SlotsEnv, v, MaxSlots)
		}
		slotsDefault = n
	}
	fs.IntVar(&cfg.Slots, "slots", slotsDefault, "inferences served at once, sharing each forward pass (0: 4, fewer if their KV caches would not fit in the memory left after the model); default $"+SlotsEnv+", else 0")
	fs.IntVar(&cfg.PromptChunk, "chunk", engine.DefaultChunk, "at most this many prompt tokens read per forward pass, over all slots")
	fs.IntVar(&cfg.Threads, "threads", 0, "threads per forward pass (0: one per CPU)")
	fs.IntVar(&cfg.ContextSize, "ctx-size", 0, "context size in tokens per slot (0: the model's, at most 4096)")
	logLevel := fs.String("log-level", "info", "log level: trace, debug, info, warn or error")
	if err := cliutil.Parse(fs, args, stderr, usageLine, summary); err != nil {
		return err
	}

	cfg.Backend = api.Backend(*backend)
	if cfg.ModelPath == "" {
		return cliutil.Usagef("--model is required")
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return cliutil.Usagef("--port must be between 1 and 65535")
	}
	if cfg.Slots < 0 || cfg.Slots > MaxSlots {
		return cliutil.Usagef("--slots must be between 0 (automatic) and %d", MaxSlots)
	}
	if cfg.PromptChunk < 1 || cfg.PromptChunk > MaxPromptChunk {
		return cliutil.Usagef("--chunk must be between 1 and %d", MaxPromptChunk)
	}
	if cfg.Threads < 0 {
		return cliutil.Usagef("--threads must not be negative")
	}
	if cfg.ContextSize < 0 {
		return cliutil.Usagef("--ctx-size must not be negative")
	}
	level := hclog.LevelFromString(*logLevel)
	if level == hclog.NoLevel {
		return cliutil.Usagef("--log-level %q: use trace, debug, info, warn or error", *logLevel)
	}
	key, err := httpx.ReadAPIKey(*keyFile, os.Getenv(APIKeyEnv))
	if err != nil {
		return err
	}
	cfg.APIKey = key
	// The hive passes the names and web origins the worker answers to.
	cfg.AllowedHosts = httpx.SplitList(os.Getenv(httpx.AllowedHostsEnv))
	cfg.AllowedOrigins = httpx.SplitList(os.Getenv(httpx.AllowedOriginsEnv))
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "rbee-worker", Level: level, Output: stderr})

	srv, err := New(cfg)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
