package pool

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"rbee/api"
	"rbee/internal/config"
	"rbee/internal/httpx"
	"rbee/internal/settings"
)

// hiveArgs is what the settings of `rbee hive` fill in: the Config, and the
// values that become parts of it once all are read.
type hiveArgs struct {
	Config
	keyFile string
	envKey  string
	level   hclog.Level
}

// hiveSettings declares every setting of `rbee hive` once: its flag and
// environment variable, default, help, and how it sets the Config. A flag
// beats the environment, which beats the default; the hive reads no
// configuration file (the queen that starts it passes what it needs). A new
// setting is one more entry here.
var hiveSettings = settings.Table[hiveArgs]{
	{Flag: "host", Default: "127.0.0.1", Example: "0.0.0.0",
		Usage: "`address` to listen on",
		Set: func(a *hiveArgs, v string) error {
			if strings.TrimSpace(v) == "" {
				return errors.New("the host must not be empty")
			}
			a.Host = v
			return nil
		}},
	{Flag: "port", Default: strconv.Itoa(api.DefaultHivePort), Example: "19200",
		Usage: "`port` to listen on",
		Set:   settings.Port(func(a *hiveArgs) *int { return &a.Port }, 1)},
	{Flag: "api-key-file", Example: "/etc/rbee/hive.key",
		Usage: "`file` holding the hive's API key (mode 0600); default $" + httpx.APIKeyEnv,
		Set:   settings.String(func(a *hiveArgs) *string { return &a.keyFile })},
	{Env: httpx.APIKeyEnv, Example: "env-token-0123456789",
		Usage: "the API key, when no --api-key-file is given",
		Set:   settings.String(func(a *hiveArgs) *string { return &a.envKey })},
	{Flag: "home", Env: config.EnvHome, Example: "/srv/rbee",
		Usage: "state `directory` (default ~/.rbee)",
		Set: func(a *hiveArgs, v string) error {
			h, err := filepath.Abs(v)
			a.Home = h
			return err
		}},
	{Flag: "binary", Example: "/usr/local/bin/rbee",
		Usage: "rbee `binary` to run workers with (default this program)",
		Set:   settings.String(func(a *hiveArgs) *string { return &a.Binary })},
	{Flag: "worker-port-start", Default: strconv.Itoa(api.DefaultWorkerPort), Example: "18001",
		Usage: "first `port` tried for a worker",
		Set:   settings.Port(func(a *hiveArgs) *int { return &a.WorkerPortStart }, 1)},
	{Flag: "worker-host", Example: "0.0.0.0",
		Usage: "`address` workers listen on (default --host)",
		Set:   settings.String(func(a *hiveArgs) *string { return &a.WorkerHost })},
	{Flag: "advertise-host", Example: "gpu-box.lan",
		Usage: "host `name` put in worker URLs, as other machines reach this node (default --worker-host, else --host unless it is 0.0.0.0, else the host name)",
		Set: func(a *hiveArgs, v string) error {
			if strings.ContainsAny(v, " \t\r\n/@?#[]") {
				return errors.New("not a host name or address")
			}
			a.AdvertiseHost = v
			return nil
		}},
	{Flag: "idle-timeout", Default: DefaultIdleTimeout.String(), Example: "10m0s",
		Usage: "stop a worker idle for this `duration`",
		Set:   settings.Duration(func(a *hiveArgs) *time.Duration { return &a.IdleTimeout }, false)},
	{Flag: "health-interval", Default: DefaultHealthInterval.String(), Example: "5s",
		Usage: "period of the worker health checks (a `duration`)",
		Set:   settings.Duration(func(a *hiveArgs) *time.Duration { return &a.HealthInterval }, false)},
	{Flag: "ready-timeout", Default: DefaultReadyTimeout.String(), Example: "1m0s",
		Usage: "how long a new worker may take to answer its health check (a `duration`)",
		Set:   settings.Duration(func(a *hiveArgs) *time.Duration { return &a.ReadyTimeout }, false)},
	{Flag: "log-level", Default: "info", Example: "debug",
		Usage: "log `level`: trace, debug, info, warn or error",
		Set: func(a *hiveArgs, v string) error {
			if a.level = hclog.LevelFromString(v); a.level == hclog.NoLevel {
				return errors.New("want trace, debug, info, warn or error")
			}
			return nil
		}},
	{Flag: "log-file", Example: "/var/log/rbee-hive.log",
		Usage: "the `file` this hive's output is redirected to, served by GET /v1/logs (default the hive*.log files in HOME/logs)",
		Set:   settings.String(func(a *hiveArgs) *string { return &a.LogFile })},
	{Flag: "allowed-hosts", Env: httpx.AllowedHostsEnv, Example: "gpu-box.example.com,*.lan",
		Usage: "comma-separated host `names` requests may use besides IP addresses, localhost and --advertise-host (*.domain and * allowed)",
		Set:   settings.List(func(a *hiveArgs) *[]string { return &a.AllowedHosts }, httpx.CheckAllowedHosts)},
	{Flag: "allowed-origins", Env: httpx.AllowedOriginsEnv, Example: "http://localhost:3000",
		Usage: "comma-separated web `origins` whose pages may call the hive, like http://localhost:3000",
		Set:   settings.List(func(a *hiveArgs) *[]string { return &a.AllowedOrigins }, httpx.CheckAllowedOrigins)},

	// Test knobs, left out of --help.
	{Flag: "fake-devices", Hidden: true, Example: "cuda:0:8192",
		Usage: "stand-in GPUs: backend:index:vram_mb,…",
		Set: func(a *hiveArgs, v string) error {
			if v == "" {
				a.Devices = nil
				return nil
			}
			devs, err := ParseDevices(v)
			a.Devices = devs
			return err
		}},
	{Flag: "fake-memory-mb", Hidden: true, Example: "4096",
		Usage: "available RAM in MiB",
		Set: func(a *hiveArgs, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return errors.New("a number of MiB, not negative")
			}
			a.FakeMemoryMB = n
			return nil
		}},
	{Flag: "download-stall-timeout", Hidden: true, Example: "2s",
		Usage: "fail a download attempt without a byte for this long (default 60s)",
		Set:   settings.Duration(func(a *hiveArgs) *time.Duration { return &a.DownloadStallTimeout }, true)},
	{Flag: "download-retry-delay", Hidden: true, Example: "10ms",
		Usage: "wait before a download's second attempt, doubling after (default 100ms)",
		Set:   settings.Duration(func(a *hiveArgs) *time.Duration { return &a.DownloadRetryDelay }, true)},
}
