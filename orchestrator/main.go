package orchestrator

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"rbee/internal/cliutil"
	"rbee/internal/config"
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
// setting comes from its flag, else the environment (RBEE_HOME,
// RBEE_API_KEY), else the configuration file ($RBEE_CONFIG,
// ~/.config/rbee/config.toml or /etc/rbee/config.toml), else the default.
func parseArgs(args []string, out io.Writer, getenv func(string) string) (Config, hclog.Level, error) {
	var cfg Config
	hidden := map[string]*string{"hive-retry-delays": new(string), "busy-retry-delays": new(string), "hive-start-timeout": new(string),
		"ssh-retry-delays": new(string), "ssh-timeout": new(string), "local-fake-devices": new(string)}
	args, err := extractHidden(args, hidden)
	if err != nil {
		return cfg, 0, err
	}
	fs := cliutil.NewFlagSet("queen")
	host := fs.String("host", "127.0.0.1", "address to listen on (anything but loopback needs an API key)")
	port := fs.Int("port", 8080, "port to listen on")
	keyFile := fs.String("api-key-file", "", "file holding the API key (mode 0600); default $RBEE_API_KEY")
	fs.StringVar(&cfg.Home, "home", "", "state directory (default $RBEE_HOME or ~/.rbee)")
	fs.StringVar(&cfg.Binary, "binary", "", "rbee binary the local hive is started from (default this executable)")
	fs.IntVar(&cfg.LocalHivePort, "local-hive-port", 9200, "port of the local node's hive")
	fs.IntVar(&cfg.LocalWorkerPortStart, "local-worker-port-start", 8001, "first port the local hive tries for workers")
	fs.DurationVar(&cfg.LoadingTimeout, "loading-timeout", DefaultLoadingTimeout, "how long a worker may take to load its model")
	fs.DurationVar(&cfg.LocalIdleTimeout, "local-idle-timeout", 0, "stop a local worker idle for this long (default [hive] idle_timeout, else the hive's 5m)")
	maxQueue := fs.Int("max-queue", DefaultMaxQueue, "most tasks waiting for a free slot before more are refused (0 = no queue: retry a busy worker, then fail)")
	fs.DurationVar(&cfg.QueueTimeout, "queue-timeout", DefaultQueueTimeout, "how long a task may wait for a free slot")
	fs.IntVar(&cfg.MaxWorkersPerModel, "max-workers-per-model", DefaultMaxWorkersPerModel, "most workers of one model per node and device; more than 1 lets the queen start another while tasks wait")
	logLevel := fs.String("log-level", "info", "log level: trace, debug, info, warn or error")
	allowedHosts := fs.String("allowed-hosts", "", "comma-separated host names requests may use besides IP addresses and localhost (*.domain and * allowed; default $"+httpx.AllowedHostsEnv+", else [security] allowed_hosts)")
	allowedOrigins := fs.String("allowed-origins", "", "comma-separated web origins whose pages may call the queen, like http://localhost:3000 (default $"+httpx.AllowedOriginsEnv+", else [security] allowed_origins)")
	if err := cliutil.Parse(fs, args, out, usageLine, summary); err != nil {
		return cfg, 0, err
	}
	if err := applyFile(&cfg, fs, host, port, getenv); err != nil {
		return cfg, 0, err
	}
	if cfg.MaxQueue == nil {
		cfg.MaxQueue = MaxQueueOf(*maxQueue)
	}
	if *cfg.MaxQueue < 0 {
		return cfg, 0, cliutil.Usagef("--max-queue %d: give 0 (no queue) or more", *cfg.MaxQueue)
	}
	if cfg.MaxWorkersPerModel < 1 {
		return cfg, 0, cliutil.Usagef("--max-workers-per-model %d: give 1 or more", cfg.MaxWorkersPerModel)
	}
	if cfg.QueueTimeout < time.Second {
		return cfg, 0, cliutil.Usagef("--queue-timeout %s: give at least a second, like 5m", cfg.QueueTimeout)
	}
	if err := applySecurity(&cfg, fs, *allowedHosts, *allowedOrigins, getenv); err != nil {
		return cfg, 0, err
	}
	if *port < 0 || *port > 65535 {
		return cfg, 0, cliutil.Usagef("--port %d: a port is between 0 and 65535", *port)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"--local-hive-port", cfg.LocalHivePort}, {"--local-worker-port-start", cfg.LocalWorkerPortStart}} {
		if p.v < 1 || p.v > 65535 {
			return cfg, 0, cliutil.Usagef("%s %d: a port is between 1 and 65535", p.name, p.v)
		}
	}
	if *port == cfg.LocalHivePort {
		return cfg, 0, cliutil.Usagef("--port and --local-hive-port are both %d; they must differ", *port)
	}
	if cfg.LoadingTimeout <= 0 {
		return cfg, 0, cliutil.Usagef("--loading-timeout must be positive")
	}
	if cfg.LocalIdleTimeout < 0 {
		return cfg, 0, cliutil.Usagef("--local-idle-timeout must be positive")
	}
	if *host == "" {
		return cfg, 0, cliutil.Usagef("--host must not be empty")
	}
	level := hclog.LevelFromString(*logLevel)
	if level == hclog.NoLevel {
		return cfg, 0, cliutil.Usagef("--log-level %q: use trace, debug, info, warn or error", *logLevel)
	}
	cfg.Addr = net.JoinHostPort(*host, strconv.Itoa(*port))
	if v := *hidden["hive-retry-delays"]; v != "" {
		if cfg.HiveRetryDelays, err = parseDelays("--hive-retry-delays", v); err != nil {
			return cfg, 0, err
		}
		if len(cfg.HiveRetryDelays) == 0 {
			return cfg, 0, cliutil.Usagef("--hive-retry-delays needs at least one delay (the first attempt's)")
		}
	}
	if v := *hidden["busy-retry-delays"]; v != "" {
		if cfg.BusyRetryDelays, err = parseDelays("--busy-retry-delays", v); err != nil {
			return cfg, 0, err
		}
	}
	if v := *hidden["hive-start-timeout"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return cfg, 0, cliutil.Usagef("--hive-start-timeout %q: a positive duration like 60s", v)
		}
		cfg.HiveStartTimeout = d
	}
	if v := *hidden["ssh-retry-delays"]; v != "" {
		if cfg.SSHRetryDelays, err = parseDelays("--ssh-retry-delays", v); err != nil {
			return cfg, 0, err
		}
		if len(cfg.SSHRetryDelays) == 0 {
			return cfg, 0, cliutil.Usagef("--ssh-retry-delays needs at least one delay (the first attempt's)")
		}
	}
	if v := *hidden["ssh-timeout"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return cfg, 0, cliutil.Usagef("--ssh-timeout %q: a positive duration like 10s", v)
		}
		cfg.SSHTimeout = d
	}
	if v := *hidden["local-fake-devices"]; v != "" && v != "none" {
		// The local hive checks the list (backend:index:vram_mb,…).
		cfg.localHiveArgs = append(cfg.localHiveArgs, "--fake-devices", v)
	}
	if cfg.Token, err = httpx.ReadAPIKey(*keyFile, getenv(httpx.APIKeyEnv)); err != nil {
		return cfg, 0, err
	}
	return cfg, level, nil
}

// applyFile fills in what no flag set from the configuration file: the
// queen's host, port, local hive ports and queue bounds, the local hive's idle timeout
// ([hive] idle_timeout), the home (unless $RBEE_HOME names one), known_hosts,
// the [remote] settings and the [security] lists.
func applyFile(cfg *Config, fs *flag.FlagSet, host *string, port *int, getenv func(string) string) error {
	file, err := config.Load(config.Env{Getenv: getenv})
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["host"] && file.Queen.Host != "" {
		*host = file.Queen.Host
	}
	if !set["port"] && file.Queen.Port != 0 {
		*port = file.Queen.Port
	}
	if !set["local-hive-port"] && file.Queen.LocalHivePort != 0 {
		cfg.LocalHivePort = file.Queen.LocalHivePort
	}
	if !set["local-worker-port-start"] && file.Queen.LocalWorkerPortStart != 0 {
		cfg.LocalWorkerPortStart = file.Queen.LocalWorkerPortStart
	}
	if !set["max-queue"] && file.Queen.MaxQueue != nil {
		cfg.MaxQueue = MaxQueueOf(*file.Queen.MaxQueue)
	}
	if !set["max-workers-per-model"] && file.Queen.MaxWorkersPerModel != 0 {
		cfg.MaxWorkersPerModel = file.Queen.MaxWorkersPerModel
	}
	if !set["queue-timeout"] && file.Queen.QueueTimeout != 0 {
		cfg.QueueTimeout = file.Queen.QueueTimeout
	}
	if !set["local-idle-timeout"] {
		cfg.LocalIdleTimeout = file.Hive.IdleTimeout
	}
	if cfg.Home == "" && getenv(config.EnvHome) == "" {
		cfg.Home = file.Paths.Home
	}
	cfg.KnownHostsPath = file.SSH.KnownHosts
	cfg.RemoteBinaryPath = file.Remote.BinaryPath
	cfg.RemoteGitRepoDir = file.Remote.GitRepoDir
	cfg.RemoteWorkerPortStart = file.Remote.WorkerPortStart
	cfg.AllowedHosts = file.Security.AllowedHosts
	cfg.AllowedOrigins = file.Security.AllowedOrigins
	return nil
}

// applySecurity lets --allowed-hosts and --allowed-origins, else
// $RBEE_ALLOWED_HOSTS and $RBEE_ALLOWED_ORIGINS, replace the lists of the
// configuration file. A flag given empty clears its list.
func applySecurity(cfg *Config, fs *flag.FlagSet, hosts, origins string, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, s := range []struct {
		flag, env, value string
		dst              *[]string
		check            func([]string) error
	}{
		{"allowed-hosts", httpx.AllowedHostsEnv, hosts, &cfg.AllowedHosts, httpx.CheckAllowedHosts},
		{"allowed-origins", httpx.AllowedOriginsEnv, origins, &cfg.AllowedOrigins, httpx.CheckAllowedOrigins},
	} {
		switch {
		case set[s.flag]:
			*s.dst = httpx.SplitList(s.value)
			if err := s.check(*s.dst); err != nil {
				return cliutil.Usagef("--%s: %v", s.flag, err)
			}
		case getenv(s.env) != "":
			*s.dst = httpx.SplitList(getenv(s.env))
			if err := s.check(*s.dst); err != nil {
				return fmt.Errorf("$%s: %w", s.env, err)
			}
		}
	}
	return nil
}

// extractHidden takes the test-only flags (not shown by --help) out of args.
// An empty value ("--busy-retry-delays=") is recorded as "none".
func extractHidden(args []string, hidden map[string]*string) ([]string, error) {
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(rest, args[i:]...), nil
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		dst, ok := hidden[name]
		if !ok || !strings.HasPrefix(a, "-") {
			rest = append(rest, a)
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				return nil, cliutil.Usagef("flag needs an argument: --%s", name)
			}
			i++
			value = args[i]
		}
		if value == "" {
			value = "none"
		}
		*dst = value
	}
	return rest, nil
}

// parseDelays parses "0s,200ms,400ms" ("none" is an empty list).
func parseDelays(flag, v string) ([]time.Duration, error) {
	out := []time.Duration{}
	if v == "none" {
		return out, nil
	}
	for _, s := range strings.Split(v, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d < 0 {
			return nil, cliutil.Usagef("%s %q: a comma-separated list of durations like 0s,200ms,400ms", flag, v)
		}
		out = append(out, d)
	}
	return out, nil
}
