package pool

import (
	"context"
	"io"
	"os"

	"github.com/hashicorp/go-hclog"

	"rbee/internal/httpx"
	"rbee/internal/settings"
)

// Main runs `rbee hive` from its command line: it parses the flags, reads
// the API key (RBEE_API_KEY, or --api-key-file, which must be mode 0600),
// logs to stderr and runs the hive until ctx ends (SIGINT/SIGTERM) or POST
// /v1/admin/shutdown. It returns nil after a clean shutdown. Models are
// downloaded from $HF_ENDPOINT (default the public Hugging Face hub) with the
// token of $HF_TOKEN.
func Main(ctx context.Context, args []string, stderr io.Writer) error {
	var a hiveArgs
	if _, err := hiveSettings.Parse(&a, "hive", args, stderr, "[--port 9200] [flags]", "run a node's pool daemon (the hive)",
		settings.Sources{Getenv: os.Getenv}); err != nil {
		return err
	}
	cfg := a.Config
	token, err := httpx.ReadAPIKey(a.keyFile, a.envKey)
	if err != nil {
		return err
	}
	cfg.Token = token
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "rbee-hive", Level: a.level, Output: stderr})
	h, err := New(cfg)
	if err != nil {
		return err
	}
	return h.Run(ctx)
}
