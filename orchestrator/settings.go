package orchestrator

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"rbee/internal/config"
	"rbee/internal/httpx"
	"rbee/internal/settings"
)

// queenArgs is what the settings of `rbee queen` fill in: the Config, and
// the values that become parts of it once all are read (the listen address
// from host and port, the token from its file or variable).
type queenArgs struct {
	Config
	host    string
	port    int
	keyFile string
	envKey  string
	level   hclog.Level
}

// queenSettings declares every setting of `rbee queen` once: its flag,
// environment variable and configuration file key, default, help, and how
// it sets the Config. A flag beats the environment, which beats the file,
// which beats the default. A new setting is one more entry here (and, when
// the file may set it, a field with its toml tag in package config).
var queenSettings = settings.Table[queenArgs]{
	{Flag: "host", Key: "queen.host", Default: "127.0.0.1", Example: "0.0.0.0",
		Usage: "`address` to listen on (anything but loopback needs an API key)",
		Set: func(a *queenArgs, v string) error {
			if strings.TrimSpace(v) == "" {
				return errors.New("the host must not be empty")
			}
			a.host = v
			return nil
		}},
	{Flag: "port", Key: "queen.port", Default: "8080", Example: "18080",
		Usage: "`port` to listen on",
		Set:   settings.Port(func(a *queenArgs) *int { return &a.port }, 0)},
	{Flag: "api-key-file", Example: "/etc/rbee/queen.key",
		Usage: "`file` holding the API key (mode 0600); default $" + httpx.APIKeyEnv,
		Set:   settings.String(func(a *queenArgs) *string { return &a.keyFile })},
	{Env: httpx.APIKeyEnv, Example: "env-token-0123456789",
		Usage: "the API key, when no --api-key-file is given",
		Set:   settings.String(func(a *queenArgs) *string { return &a.envKey })},
	{Flag: "home", Env: config.EnvHome, Key: "paths.home", Example: "/srv/rbee",
		Usage: "state `directory` (default ~/.rbee)",
		Set: func(a *queenArgs, v string) error {
			// Absolute, as the local hive it is passed to may run elsewhere.
			h, err := filepath.Abs(v)
			a.Home = h
			return err
		}},
	{Flag: "binary", Example: "/usr/local/bin/rbee",
		Usage: "rbee `binary` the local hive is started from (default this executable)",
		Set:   settings.String(func(a *queenArgs) *string { return &a.Binary })},
	{Flag: "local-hive-port", Key: "queen.local_hive_port", Default: "9200", Example: "19200",
		Usage: "`port` of the local node's hive",
		Set:   settings.Port(func(a *queenArgs) *int { return &a.LocalHivePort }, 1)},
	{Flag: "local-worker-port-start", Key: "queen.local_worker_port_start", Default: "8001", Example: "18001",
		Usage: "first `port` the local hive tries for workers",
		Set:   settings.Port(func(a *queenArgs) *int { return &a.LocalWorkerPortStart }, 1)},
	{Flag: "loading-timeout", Default: DefaultLoadingTimeout.String(), Example: "90s",
		Usage: "how long a worker may take to load its model (a `duration`)",
		Set:   settings.Duration(func(a *queenArgs) *time.Duration { return &a.LoadingTimeout }, false)},
	{Flag: "local-idle-timeout", Key: "hive.idle_timeout", Example: "10m0s",
		Usage: "stop a local worker idle for this `duration` (default the hive's 5m)",
		Set:   settings.Duration(func(a *queenArgs) *time.Duration { return &a.LocalIdleTimeout }, true)},
	{Flag: "max-queue", Key: "queen.max_queue", Default: strconv.Itoa(DefaultMaxQueue), Example: "8",
		Usage: "most tasks waiting for a free slot before more are refused (0 = no queue: retry a busy worker, then fail)",
		Set: func(a *queenArgs, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 1<<20 {
				return errors.New("give 0 (no queue) or a positive number of tasks")
			}
			a.MaxQueue = MaxQueueOf(n)
			return nil
		}},
	{Flag: "max-workers-per-model", Key: "queen.max_workers_per_model", Default: strconv.Itoa(DefaultMaxWorkersPerModel), Example: "2",
		Usage: "most workers of one model per node and device; above 1 the queen starts another while tasks wait for a slot",
		Set:   settings.Int(func(a *queenArgs) *int { return &a.MaxWorkersPerModel }, 1, 64)},
	{Flag: "queue-timeout", Key: "queen.queue_timeout", Default: DefaultQueueTimeout.String(), Example: "90s",
		Usage: "how long a task may wait for a free slot (a `duration`, at least 1s)",
		Set: func(a *queenArgs, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < time.Second {
				return errors.New("give a duration of at least a second, like 5m")
			}
			a.QueueTimeout = d
			return nil
		}},
	{Flag: "log-level", Default: "info", Example: "debug",
		Usage: "log `level`: trace, debug, info, warn or error",
		Set: func(a *queenArgs, v string) error {
			if a.level = hclog.LevelFromString(v); a.level == hclog.NoLevel {
				return errors.New("use trace, debug, info, warn or error")
			}
			return nil
		}},
	{Flag: "allowed-hosts", Env: httpx.AllowedHostsEnv, Key: "security.allowed_hosts", Example: "gpu-box.example.com,*.lan",
		Usage: "comma-separated host `names` requests may use besides IP addresses and localhost (*.domain and * allowed)",
		Set:   settings.List(func(a *queenArgs) *[]string { return &a.AllowedHosts }, httpx.CheckAllowedHosts)},
	{Flag: "allowed-origins", Env: httpx.AllowedOriginsEnv, Key: "security.allowed_origins", Example: "http://localhost:3000",
		Usage: "comma-separated web `origins` whose pages may call the queen, like http://localhost:3000",
		Set:   settings.List(func(a *queenArgs) *[]string { return &a.AllowedOrigins }, httpx.CheckAllowedOrigins)},
	{Flag: "ui", Env: "RBEE_UI", Key: "ui.enabled", Default: "true", Example: "false",
		Usage: "serve the web console at / and /ui/ (true or false)",
		Set: func(a *queenArgs, v string) error {
			on, err := strconv.ParseBool(v)
			if err != nil {
				return errors.New("give true or false")
			}
			a.DisableUI = !on
			return nil
		}},
	{Key: "ssh.known_hosts", Example: "/etc/rbee/known_hosts",
		Usage: "the known_hosts file remote nodes' host keys are checked against and recorded in",
		Set:   settings.String(func(a *queenArgs) *string { return &a.KnownHostsPath })},
	{Key: "remote.binary_path", Example: "/opt/rbee/bin/rbee",
		Usage: "the rbee binary on remote nodes (absolute, or relative to the install path)",
		Set:   settings.String(func(a *queenArgs) *string { return &a.RemoteBinaryPath })},
	{Key: "remote.git_repo_dir", Example: "/opt/rbee/src",
		Usage: "where rbee setup install builds rbee on a node",
		Set:   settings.String(func(a *queenArgs) *string { return &a.RemoteGitRepoDir })},
	{Key: "remote.worker_port_start", Example: "18001",
		Usage: "first port the hives started over SSH try for workers",
		Set:   settings.Port(func(a *queenArgs) *int { return &a.RemoteWorkerPortStart }, 1)},

	// Test knobs, left out of --help. An empty value ("--busy-retry-delays=")
	// is an empty list.
	{Flag: "hive-retry-delays", Hidden: true, Example: "0s,10ms",
		Usage: "waits before each attempt to reach a hive",
		Set:   settings.Durations(func(a *queenArgs) *[]time.Duration { return &a.HiveRetryDelays }, true)},
	{Flag: "busy-retry-delays", Hidden: true, Example: "5ms,6ms",
		Usage: "waits before each retry of an inference whose worker was busy",
		Set:   settings.Durations(func(a *queenArgs) *[]time.Duration { return &a.BusyRetryDelays }, false)},
	{Flag: "hive-start-timeout", Hidden: true, Example: "3s",
		Usage: "how long a local hive may take to answer its first health check",
		Set:   settings.Duration(func(a *queenArgs) *time.Duration { return &a.HiveStartTimeout }, false)},
	{Flag: "ssh-retry-delays", Hidden: true, Example: "0s,10ms",
		Usage: "waits before each SSH connection attempt",
		Set:   settings.Durations(func(a *queenArgs) *[]time.Duration { return &a.SSHRetryDelays }, true)},
	{Flag: "ssh-timeout", Hidden: true, Example: "2s",
		Usage: "bound of one SSH connection attempt",
		Set:   settings.Duration(func(a *queenArgs) *time.Duration { return &a.SSHTimeout }, false)},
	{Flag: "local-fake-devices", Hidden: true, Example: "cuda:0:8192",
		Usage: "stand-in GPUs of the local hive: backend:index:vram_mb,… (the hive checks them)",
		Set: func(a *queenArgs, v string) error {
			a.localHiveArgs = nil
			if v != "" && v != "none" {
				a.localHiveArgs = []string{"--fake-devices", v}
			}
			return nil
		}},
}

// queenSources are the environment (through getenv) and the configuration
// file it finds.
func queenSources(getenv func(string) string) settings.Sources {
	return settings.Sources{Getenv: getenv, File: func() (settings.FileLookup, error) {
		file, err := config.Load(config.Env{Getenv: getenv})
		if err != nil {
			return nil, err
		}
		return func(key string) (string, string, bool) {
			v, ok := file.Lookup(key)
			return v, file.Source(key), ok
		}, nil
	}}
}
