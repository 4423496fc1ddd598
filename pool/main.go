package pool

import (
	"context"
	"flag"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"rbee/api"
	"rbee/internal/cliutil"
	"rbee/internal/httpx"
)

// Main runs `rbee hive` from its command line: it parses the flags, reads
// the API key (RBEE_API_KEY, or --api-key-file, which must be mode 0600),
// logs to stderr and runs the hive until ctx ends (SIGINT/SIGTERM) or POST
// /v1/admin/shutdown. It returns nil after a clean shutdown. Models are
// downloaded from $HF_ENDPOINT (default the public Hugging Face hub) with the
// token of $HF_TOKEN.
func Main(ctx context.Context, args []string, stderr io.Writer) error {
	fs := cliutil.NewFlagSet("hive")
	var (
		cfg          Config
		keyFile      string
		logLevel     string
		fakeDevices  string
		idle, health time.Duration
		ready        time.Duration
	)
	fs.StringVar(&cfg.Host, "host", "127.0.0.1", "address to listen on")
	fs.IntVar(&cfg.Port, "port", api.DefaultHivePort, "port to listen on")
	fs.StringVar(&keyFile, "api-key-file", "", "file holding the hive's API key (mode 0600); default $RBEE_API_KEY")
	fs.StringVar(&cfg.Home, "home", "", "state directory (default $RBEE_HOME or ~/.rbee)")
	fs.StringVar(&cfg.Binary, "binary", "", "rbee binary to run workers with (default this program)")
	fs.IntVar(&cfg.WorkerPortStart, "worker-port-start", api.DefaultWorkerPort, "first port tried for a worker")
	fs.StringVar(&cfg.WorkerHost, "worker-host", "", "address workers listen on (default --host)")
	fs.StringVar(&cfg.AdvertiseHost, "advertise-host", "", "host name put in worker URLs, as other machines reach this node (default --worker-host, else --host unless it is 0.0.0.0, else the host name)")
	fs.DurationVar(&idle, "idle-timeout", DefaultIdleTimeout, "stop a worker idle for this long")
	fs.DurationVar(&health, "health-interval", DefaultHealthInterval, "period of the worker health checks")
	fs.DurationVar(&ready, "ready-timeout", DefaultReadyTimeout, "how long a new worker may take to answer its health check")
	fs.StringVar(&logLevel, "log-level", "info", "log level: trace, debug, info, warn or error")
	fs.StringVar(&cfg.LogFile, "log-file", "", "the file this hive's output is redirected to, served by GET /v1/logs (default the hive*.log files in HOME/logs)")
	allowedHosts := fs.String("allowed-hosts", "", "comma-separated host names requests may use besides IP addresses, localhost and --advertise-host (*.domain and * allowed; default $"+httpx.AllowedHostsEnv+")")
	allowedOrigins := fs.String("allowed-origins", "", "comma-separated web origins whose pages may call the hive, like http://localhost:3000 (default $"+httpx.AllowedOriginsEnv+")")
	// Hidden test flags, left out of --help.
	hidden := cliutil.NewFlagSet("hive")
	hidden.StringVar(&fakeDevices, "fake-devices", "", "stand-in GPUs: backend:index:vram_mb,…")
	hidden.Int64Var(&cfg.FakeMemoryMB, "fake-memory-mb", 0, "available RAM in MiB")
	hidden.DurationVar(&cfg.DownloadStallTimeout, "download-stall-timeout", 0, "fail a download attempt without a byte for this long (default 60s)")
	hidden.DurationVar(&cfg.DownloadRetryDelay, "download-retry-delay", 0, "wait before a download's second attempt, doubling after (default 100ms)")
	args, hiddenArgs := splitFlags(args, hidden)
	if err := cliutil.Parse(fs, args, stderr, "[--port 9200] [flags]", "run a node's pool daemon (the hive)"); err != nil {
		return err
	}
	if err := hidden.Parse(hiddenArgs); err != nil {
		return cliutil.Usagef("%s", strings.TrimPrefix(err.Error(), "flag: "))
	}
	switch {
	case cfg.Port < 1 || cfg.Port > 65535:
		return cliutil.Usagef("--port %d: want 1 to 65535", cfg.Port)
	case cfg.WorkerPortStart < 1 || cfg.WorkerPortStart > 65535:
		return cliutil.Usagef("--worker-port-start %d: want 1 to 65535", cfg.WorkerPortStart)
	case idle <= 0:
		return cliutil.Usagef("--idle-timeout must be positive")
	case health <= 0:
		return cliutil.Usagef("--health-interval must be positive")
	case ready <= 0:
		return cliutil.Usagef("--ready-timeout must be positive")
	case cfg.FakeMemoryMB < 0:
		return cliutil.Usagef("--fake-memory-mb must be positive")
	case cfg.DownloadStallTimeout < 0 || cfg.DownloadRetryDelay < 0:
		return cliutil.Usagef("--download-stall-timeout and --download-retry-delay must be positive")
	case strings.TrimSpace(cfg.Host) == "":
		return cliutil.Usagef("--host must not be empty")
	case strings.ContainsAny(cfg.AdvertiseHost, " \t\r\n/@?#[]"):
		return cliutil.Usagef("--advertise-host %q is not a host name or address", cfg.AdvertiseHost)
	}
	cfg.IdleTimeout, cfg.HealthInterval, cfg.ReadyTimeout = idle, health, ready
	if err := securityFlags(&cfg, fs, *allowedHosts, *allowedOrigins, os.Getenv); err != nil {
		return err
	}
	level := hclog.LevelFromString(logLevel)
	if level == hclog.NoLevel {
		return cliutil.Usagef("--log-level %q: want trace, debug, info, warn or error", logLevel)
	}
	if fakeDevices != "" {
		devs, err := ParseDevices(fakeDevices)
		if err != nil {
			return cliutil.Usagef("--fake-devices: %v", err)
		}
		cfg.Devices = devs
	}
	token, err := httpx.ReadAPIKey(keyFile, os.Getenv(httpx.APIKeyEnv))
	if err != nil {
		return err
	}
	cfg.Token = token
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "rbee-hive", Level: level, Output: stderr})
	h, err := New(cfg)
	if err != nil {
		return err
	}
	return h.Run(ctx)
}

// securityFlags sets the allowed hosts and origins from --allowed-hosts
// and --allowed-origins (a flag given empty clears its list), else from
// $RBEE_ALLOWED_HOSTS and $RBEE_ALLOWED_ORIGINS, which is how the queen
// passes its lists to the hives it starts.
func securityFlags(cfg *Config, fs *flag.FlagSet, hosts, origins string, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["allowed-hosts"] {
		hosts = getenv(httpx.AllowedHostsEnv)
	}
	if !set["allowed-origins"] {
		origins = getenv(httpx.AllowedOriginsEnv)
	}
	cfg.AllowedHosts, cfg.AllowedOrigins = httpx.SplitList(hosts), httpx.SplitList(origins)
	if err := httpx.CheckAllowedHosts(cfg.AllowedHosts); err != nil {
		return cliutil.Usagef("--allowed-hosts or $%s: %v", httpx.AllowedHostsEnv, err)
	}
	if err := httpx.CheckAllowedOrigins(cfg.AllowedOrigins); err != nil {
		return cliutil.Usagef("--allowed-origins or $%s: %v", httpx.AllowedOriginsEnv, err)
	}
	return nil
}

// splitFlags moves the flags that set defines (-name, --name, with "=value"
// or the next argument as the value) out of args, up to a "--".
func splitFlags(args []string, set *flag.FlagSet) (rest, taken []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(rest, args[i:]...), taken
		}
		name, hasValue := strings.TrimLeft(a, "-"), false
		if n, _, ok := strings.Cut(name, "="); ok {
			name, hasValue = n, true
		}
		if !strings.HasPrefix(a, "-") || set.Lookup(name) == nil {
			rest = append(rest, a)
			continue
		}
		taken = append(taken, a)
		if !hasValue && i+1 < len(args) {
			taken = append(taken, args[i+1])
			i++
		}
	}
	return rest, taken
}
