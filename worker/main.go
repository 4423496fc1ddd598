package worker

import (
	"context"
	"io"
	"os"

	"github.com/hashicorp/go-hclog"

	"rbee/internal/cliutil"
	"rbee/internal/httpx"
	"rbee/internal/settings"
)

// APIKeyEnv is the environment variable a worker reads its token from when no
// --api-key-file is given.
const APIKeyEnv = httpx.APIKeyEnv

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
	var a workerArgs
	if _, err := workerSettings.Parse(&a, "worker", args, stderr, usageLine, summary, settings.Sources{Getenv: os.Getenv}); err != nil {
		return err
	}
	cfg := a.Config
	if cfg.ModelPath == "" {
		return cliutil.Usagef("--model is required")
	}
	key, err := httpx.ReadAPIKey(a.keyFile, a.envKey)
	if err != nil {
		return err
	}
	cfg.APIKey = key
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "rbee-worker", Level: a.level, Output: stderr})

	srv, err := New(cfg)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
