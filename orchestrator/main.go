package orchestrator

import (
	"context"
	"io"
	"net"
	"os"
	"strconv"

	"github.com/hashicorp/go-hclog"

	"rbee/internal/cliutil"
	"rbee/internal/httpx"
)

const (
	usageLine = "[--host 127.0.0.1] [--port 8080] [--api-key-file F] [--home DIR] [--binary PATH] [--local-hive-port 9200] [flags]"
	summary   = "run the orchestrator daemon (the queen)"
)

// Main runs `rbee queen` with its command line until ctx ends (SIGINT or
// SIGTERM), then shuts down (stopping the local hive it started and that
// hive's workers) and returns nil. Its token comes from --api-key-file or
// the RBEE_API_KEY environment variable; without one it serves on loopback
// only. Logs go to stderr.
func Main(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, level, err := parseArgs(args, stderr, os.Getenv)
	if err != nil {
		return err
	}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "rbee", Level: level, Output: stderr})
	q, err := New(cfg)
	if err != nil {
		return err
	}
	return q.Run(ctx)
}

// parseArgs turns the command line into a Config and a log level. Each
// setting of queenSettings comes from its flag, else its environment
// variable, else the configuration file ($RBEE_CONFIG,
// ~/.config/rbee/config.toml or /etc/rbee/config.toml), else its default.
func parseArgs(args []string, out io.Writer, getenv func(string) string) (Config, hclog.Level, error) {
	var a queenArgs
	if _, err := queenSettings.Parse(&a, "queen", args, out, usageLine, summary, queenSources(getenv)); err != nil {
		return Config{}, 0, err
	}
	cfg := a.Config
	if a.port == cfg.LocalHivePort {
		return cfg, 0, cliutil.Usagef("--port and --local-hive-port are both %d; they must differ", a.port)
	}
	cfg.Addr = net.JoinHostPort(a.host, strconv.Itoa(a.port))
	var err error
	if cfg.Token, err = httpx.ReadAPIKey(a.keyFile, a.envKey); err != nil {
		return cfg, 0, err
	}
	return cfg, a.level, nil
}
