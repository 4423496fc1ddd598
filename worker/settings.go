package worker

import (
	"errors"
	"strconv"

	"github.com/hashicorp/go-hclog"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/settings"
	"rbee/worker/engine"
)

// workerArgs is what the settings of `rbee worker` fill in: the Config,
// and the values that become parts of it once all are read.
type workerArgs struct {
	Config
	keyFile string
	envKey  string
	level   hclog.Level
}

// workerSettings declares every setting of `rbee worker` once: its flag
// and environment variable, default, help, and how it sets the Config. A
// flag beats the environment, which beats the default; a worker reads no
// configuration file (its hive passes what it needs). A new setting is one
// more entry here.
var workerSettings = settings.Table[workerArgs]{
	{Flag: "model", Example: "/models/tiny.gguf",
		Usage: "GGUF model `file` to serve (required)",
		Set:   settings.String(func(a *workerArgs) *string { return &a.ModelPath })},
	{Flag: "model-ref", Example: "hf:org/repo",
		Usage: "the model's reference in the hive's catalog (default file:PATH)",
		Set:   settings.String(func(a *workerArgs) *string { return &a.ModelRef })},
	{Flag: "backend", Default: string(api.BackendCPU), Example: string(api.BackendCUDA),
		Usage: "compute `backend` (only cpu in this build)",
		Set:   func(a *workerArgs, v string) error { a.Backend = api.Backend(v); return nil }},
	{Flag: "device", Default: "0", Example: "1",
		Usage: "device `index` on the backend",
		Set:   settings.Int(func(a *workerArgs) *int { return &a.Device }, -1<<31, 1<<31-1)},
	{Flag: "host", Default: "127.0.0.1", Example: "0.0.0.0",
		Usage: "`address` to listen on",
		Set:   settings.String(func(a *workerArgs) *string { return &a.Host })},
	{Flag: "port", Default: strconv.Itoa(api.DefaultWorkerPort), Example: "18001",
		Usage: "`port` to listen on",
		Set:   settings.Port(func(a *workerArgs) *int { return &a.Port }, 1)},
	{Flag: "callback-url", Example: "http://127.0.0.1:9200/v1/workers/ready",
		Usage: "the hive's ready endpoint, called once the model is loaded",
		Set:   settings.String(func(a *workerArgs) *string { return &a.CallbackURL })},
	{Flag: "worker-id", Example: "worker-1",
		Usage: "the worker's id (default a new one)",
		Set:   settings.String(func(a *workerArgs) *string { return &a.WorkerID })},
	{Flag: "api-key-file", Example: "/etc/rbee/worker.key",
		Usage: "`file` holding the API key (mode 0600); default $" + APIKeyEnv,
		Set:   settings.String(func(a *workerArgs) *string { return &a.keyFile })},
	{Env: APIKeyEnv, Example: "env-token-0123456789",
		Usage: "the API key, when no --api-key-file is given",
		Set:   settings.String(func(a *workerArgs) *string { return &a.envKey })},
	{Flag: "slots", Env: SlotsEnv, Default: "0", Example: "4",
		Usage: "inferences served at once, sharing each forward pass (0: 8, fewer if their KV caches would not fit in the memory left after the model)",
		Set:   settings.Int(func(a *workerArgs) *int { return &a.Slots }, 0, MaxSlots)},
	{Flag: "chunk", Default: strconv.Itoa(engine.DefaultChunk), Example: "512",
		Usage: "at most this many prompt tokens read per forward pass, over all slots",
		Set:   settings.Int(func(a *workerArgs) *int { return &a.PromptChunk }, 1, MaxPromptChunk)},
	{Flag: "threads", Default: "0", Example: "2",
		Usage: "threads per forward pass (0: one per CPU)",
		Set:   settings.Int(func(a *workerArgs) *int { return &a.Threads }, 0, 1<<31-1)},
	{Flag: "ctx-size", Default: "0", Example: "2048",
		Usage: "context size in tokens per slot (0: the model's, at most 4096)",
		Set:   settings.Int(func(a *workerArgs) *int { return &a.ContextSize }, 0, 1<<31-1)},
	{Flag: "log-level", Default: "info", Example: "debug",
		Usage: "log `level`: trace, debug, info, warn or error",
		Set: func(a *workerArgs, v string) error {
			if a.level = hclog.LevelFromString(v); a.level == hclog.NoLevel {
				return errors.New("use trace, debug, info, warn or error")
			}
			return nil
		}},
	// The hive passes the names and web origins the worker answers to.
	{Env: httpx.AllowedHostsEnv, Example: "gpu-box.example.com,*.lan",
		Usage: "comma-separated host names requests may use besides IP addresses and localhost",
		Set:   settings.List(func(a *workerArgs) *[]string { return &a.AllowedHosts }, nil)},
	{Env: httpx.AllowedOriginsEnv, Example: "http://localhost:3000",
		Usage: "comma-separated web origins whose pages may call the worker",
		Set:   settings.List(func(a *workerArgs) *[]string { return &a.AllowedOrigins }, nil)},
}
