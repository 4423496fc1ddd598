// Package config reads rbee's configuration file (the README's Configuration section).
//
// # Where it is
//
// The first file found wins: $RBEE_CONFIG (which must then exist),
// ~/.config/rbee/config.toml, /etc/rbee/config.toml. No file at all is
// fine: every setting has a default.
//
// # What wins
//
// Flags beat environment variables beat the file beats the defaults. The
// helpers [File.QueenURL] and [File.Home] apply that order for the settings
// that have all four (--queen-url / $RBEE_QUEEN_URL / [queen] url, and
// --home / $RBEE_HOME / [paths] home); a daemon applies it to its own flags
// by taking from the file only what no flag set.
//
// # The file
//
//	[queen]
//	url = "http://127.0.0.1:8080"   # where keepers find the queen
//	host = "127.0.0.1"              # where `rbee queen` listens
//	port = 8080
//	local_hive_port = 9200          # the local node's hive
//	local_worker_port_start = 8001
//
//	[hive]
//	idle_timeout = "5m"             # workers idle this long are stopped (the local hive)
//
//	[paths]
//	home = "~/.rbee"                # state: registry, catalog, models, logs
//
//	[ssh]
//	known_hosts = "~/.ssh/known_hosts"
//
//	[remote]
//	binary_path = "/opt/rbee/bin/rbee"  # the rbee binary on every node
//	git_repo_dir = "/opt/rbee/src"      # where install builds from source
//	worker_port_start = 8001            # first worker port of remote hives
//
//	[security]
//	allowed_hosts = ["gpu-box.example.com", "*.lan"]  # names requests may use besides loopback and IPs
//	allowed_origins = ["http://localhost:3000"]       # web pages that may call the daemons
//
// Unknown keys are an error naming the key and the file, so that a typo
// never goes unnoticed. Local paths may start with "~/" (this machine's
// home). Remote paths are absolute, or relative to each node's install
// path; "~" there would name the wrong machine's home and is refused.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"rbee/internal/httpx"
)

// Environment variables the configuration reads.
const (
	EnvConfig   = "RBEE_CONFIG"    // the configuration file
	EnvHome     = "RBEE_HOME"      // the state directory
	EnvQueenURL = "RBEE_QUEEN_URL" // where keepers find the queen
)

// Defaults.
const (
	DefaultQueenURL = "http://127.0.0.1:8080"
	// SystemFile is the last place looked at.
	SystemFile = "/etc/rbee/config.toml"
	// maxFileSize bounds what is read of a configuration file.
	maxFileSize = 1 << 20
)

// ErrInvalid is wrapped by every error about a file's contents (syntax, an
// unknown key, a bad value); errors.Is(err, ErrInvalid) tells them from a
// file that cannot be read.
var ErrInvalid = errors.New("invalid configuration")

// File is the contents of a configuration file. Zero fields were not set.
type File struct {
	Queen  Queen  `toml:"queen"`
	Hive   Hive   `toml:"hive"`
	Paths  Paths  `toml:"paths"`
	SSH    SSH    `toml:"ssh"`
	Remote Remote `toml:"remote"`
	// Security is read by the queen, which passes it on to the hives it
	// starts, and they to their workers.
	Security Security `toml:"security"`
	// UI is read by the queen: its web console.
	UI UI `toml:"ui"`

	// Path is the file these settings came from; "" when none was found.
	Path string `toml:"-"`
}

// Queen is the [queen] table.
type Queen struct {
	// URL is where keepers find the queen ("http://host:port").
	URL string `toml:"url"`
	// Host and Port are where `rbee queen` listens; when URL is empty,
	// keepers look for the queen there too.
	Host string `toml:"host"`
	Port int    `toml:"port"`
	// LocalHivePort is the port of the local node's hive;
	// LocalWorkerPortStart the first port it tries for workers.
	LocalHivePort        int `toml:"local_hive_port"`
	LocalWorkerPortStart int `toml:"local_worker_port_start"`
	// MaxQueue is how many tasks may wait for a free slot before more are
	// refused (0: no queue). QueueTimeout is how long one may wait ("5m").
	MaxQueue     *int          `toml:"max_queue"`
	QueueTimeout time.Duration `toml:"queue_timeout"`
	// MaxWorkersPerModel is how many workers of one model the queen may run
	// per node and device while tasks wait for a slot (0: the default, 1).
	MaxWorkersPerModel int `toml:"max_workers_per_model"`
}

// Hive is the [hive] table: settings of the hive the queen starts on the
// local node.
type Hive struct {
	// IdleTimeout is how long a worker may stay idle before its hive stops
	// it ("5m"; at least a second; default 5 minutes).
	IdleTimeout time.Duration `toml:"idle_timeout"`
}

// Paths is the [paths] table.
type Paths struct {
	// Home is rbee's state directory (default ~/.rbee).
	Home string `toml:"home"`
}

// SSH is the [ssh] table.
type SSH struct {
	// KnownHosts is the known_hosts file host keys are checked against and
	// new ones recorded in (default ~/.ssh/known_hosts).
	KnownHosts string `toml:"known_hosts"`
}

// Remote is the [remote] table: where rbee lives on nodes.
type Remote struct {
	// BinaryPath is the rbee binary on every node (default
	// <install_path>/bin/rbee); relative paths are relative to the node's
	// install path.
	BinaryPath string `toml:"binary_path"`
	// GitRepoDir is where `rbee setup install` clones and builds rbee on a
	// node (default <install_path>/src); relative like BinaryPath.
	GitRepoDir string `toml:"git_repo_dir"`
	// WorkerPortStart is the first port remote hives try for workers
	// (default 8001).
	WorkerPortStart int `toml:"worker_port_start"`
}

// Security is the [security] table: which requests the daemons answer,
// to keep web pages from driving them. Browsers let any page send requests
// to loopback; the daemons refuse those that name them by a host name they
// do not know (DNS rebinding) or that come from another web origin.
// Programs that send no Origin header (curl, the rbee client, SDKs) are
// not affected. The queen takes these lists, unless --allowed-hosts,
// --allowed-origins, $RBEE_ALLOWED_HOSTS or $RBEE_ALLOWED_ORIGINS set
// them, and passes them to the hives it starts, which pass them to their
// workers.
type Security struct {
	// AllowedHosts are the names requests may give in their Host header
	// besides IP addresses, localhost and *.localhost, the name a daemon
	// listens on and, when it listens on 0.0.0.0 or ::, the machine's
	// host name. An entry is a host name without port
	// ("gpu-box.example.com"), "*.example.com" (any subdomain of it), or
	// "*" (any name: the check is off). Default: none.
	AllowedHosts []string `toml:"allowed_hosts"`
	// AllowedOrigins are the web origins whose pages may call the daemons
	// (with CORS answers, so that browser apps work): exact origins with
	// their port ("http://localhost:3000"), "https://*.example.com" (any
	// subdomain, any port), "app://*" (any origin of a scheme), or "*" (any
	// page). Default: none but a daemon's own origin.
	AllowedOrigins []string `toml:"allowed_origins"`
}

// UI is the [ui] table: the queen's web console.
type UI struct {
	// Enabled serves the console at / and /ui/ (default true; false
	// leaves those paths unanswered, the API unchanged).
	Enabled *bool `toml:"enabled"`
}

// Env is what Find and Load read of the outside world. The zero value
// reads the process's environment.
type Env struct {
	// Getenv reads a variable; os.Getenv when nil.
	Getenv func(string) string
	// UserHome is the user's home directory; $HOME (through Getenv), else
	// os.UserHomeDir, when empty.
	UserHome string
	// SystemFile is the system-wide file; [SystemFile] when empty.
	SystemFile string
}

func (e Env) getenv(name string) string {
	if e.Getenv == nil {
		return os.Getenv(name)
	}
	return e.Getenv(name)
}

// home returns the user's home directory, or "" when there is none.
func (e Env) home() string {
	if e.UserHome != "" {
		return e.UserHome
	}
	if h := e.getenv("HOME"); h != "" {
		return h
	}
	h, _ := os.UserHomeDir()
	return h
}

// Candidates lists the files Find looks at, in order.
func (e Env) Candidates() []string {
	var out []string
	if p := e.getenv(EnvConfig); p != "" {
		return []string{p}
	}
	if h := e.home(); h != "" {
		out = append(out, filepath.Join(h, ".config", "rbee", "config.toml"))
	}
	sys := e.SystemFile
	if sys == "" {
		sys = SystemFile
	}
	return append(out, sys)
}

// Find returns the configuration file to read: $RBEE_CONFIG (an error if
// it does not exist), else the first of the user's and the system's files
// that exists, else "".
func Find(e Env) (string, error) {
	if p := e.getenv(EnvConfig); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$%s names %s: %w", EnvConfig, p, err)
		}
		return p, nil
	}
	for _, p := range e.Candidates() {
		_, err := os.Stat(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("configuration file %s: %w", p, err)
		}
	}
	return "", nil
}

// Load finds the configuration file and reads it; with no file it returns
// an empty File.
func Load(e Env) (*File, error) {
	p, err := Find(e)
	if err != nil {
		return nil, err
	}
	if p == "" {
		return &File{}, nil
	}
	return Read(p, e)
}

// Read reads and checks one configuration file. "~/" in local paths is
// expanded with e's home directory.
func Read(path string, e Env) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("configuration file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("configuration file %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("configuration file %s: %w: larger than %d bytes", path, ErrInvalid, maxFileSize)
	}
	return Parse(path, data, e)
}

// Parse checks the contents of a configuration file; path names it in
// errors.
func Parse(path string, data []byte, e Env) (*File, error) {
	var c File
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("configuration file %s: %w: line %d: %s", path, ErrInvalid, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("configuration file %s: %w: %v", path, ErrInvalid, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		names := make([]string, len(und))
		for i, k := range und {
			names[i] = k.String()
		}
		return nil, fmt.Errorf("configuration file %s: %w: unknown key %s (known: %s)", path, ErrInvalid,
			strings.Join(names, ", "), strings.Join(knownKeys, ", "))
	}
	c.Path = path
	if err := c.check(e); err != nil {
		return nil, fmt.Errorf("configuration file %s: %w: %w", path, ErrInvalid, err)
	}
	return &c, nil
}

// knownKeys lists every key, for the unknown-key error: the toml tags of
// File's tables and their fields, declared nowhere else.
var knownKeys = func() []string {
	var keys []string
	ft := reflect.TypeFor[File]()
	for i := range ft.NumField() {
		table := ft.Field(i)
		tname := tomlName(table)
		if tname == "" || table.Type.Kind() != reflect.Struct {
			continue
		}
		for j := range table.Type.NumField() {
			if name := tomlName(table.Type.Field(j)); name != "" {
				keys = append(keys, tname+"."+name)
			}
		}
	}
	return keys
}()

func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

// KnownKeys lists every key a configuration file may set, as "table.key".
func KnownKeys() []string { return slices.Clone(knownKeys) }

// Lookup returns what the file sets key ("queen.port") to, in the text a
// command-line flag would take: numbers in decimal, durations as "5m0s",
// lists joined with commas. ok is false when the file leaves the key unset
// (or empty), or when key is not one of KnownKeys. A nil File sets
// nothing.
func (c *File) Lookup(key string) (value string, ok bool) {
	if c == nil {
		return "", false
	}
	tname, name, _ := strings.Cut(key, ".")
	v := reflect.ValueOf(c).Elem()
	for _, want := range []string{tname, name} {
		found := false
		for i := range v.NumField() {
			if tomlName(v.Type().Field(i)) == want {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return "", false
		}
	}
	if v.IsZero() {
		return "", false
	}
	switch x := v.Interface().(type) {
	case string:
		return x, true
	case *int: // a number where 0 differs from unset
		return strconv.Itoa(*x), true
	case *bool: // a switch where false differs from unset
		return strconv.FormatBool(*x), true
	case int:
		return strconv.Itoa(x), true
	case time.Duration:
		return x.String(), true
	case []string:
		return strings.Join(x, ","), true
	}
	return fmt.Sprint(v.Interface()), true
}

// Source names key of this file in messages ("queen.port in
// /etc/rbee/config.toml").
func (c *File) Source(key string) string { return c.source(key) }

// check validates the values and expands "~/" in local paths.
func (c *File) check(e Env) error {
	if c.Queen.URL != "" {
		if _, err := ParseQueenURL(c.Queen.URL); err != nil {
			return fmt.Errorf("queen.url: %w", err)
		}
	}
	if strings.ContainsAny(c.Queen.Host, " \t\r\n/") {
		return fmt.Errorf("queen.host %q is not a host name or address", c.Queen.Host)
	}
	for _, p := range []struct {
		key string
		v   int
	}{
		{"queen.port", c.Queen.Port},
		{"queen.local_hive_port", c.Queen.LocalHivePort},
		{"queen.local_worker_port_start", c.Queen.LocalWorkerPortStart},
		{"remote.worker_port_start", c.Remote.WorkerPortStart},
	} {
		if p.v < 0 || p.v > 65535 {
			return fmt.Errorf("%s %d: a port is between 1 and 65535", p.key, p.v)
		}
	}
	if c.Hive.IdleTimeout != 0 && c.Hive.IdleTimeout < time.Second {
		return fmt.Errorf("hive.idle_timeout %s: give a duration of at least a second, like \"5m\"", c.Hive.IdleTimeout)
	}
	var err error
	if c.Paths.Home, err = localPath("paths.home", c.Paths.Home, e); err != nil {
		return err
	}
	if c.SSH.KnownHosts, err = localPath("ssh.known_hosts", c.SSH.KnownHosts, e); err != nil {
		return err
	}
	if err := httpx.CheckAllowedHosts(c.Security.AllowedHosts); err != nil {
		return fmt.Errorf("security.%w", err)
	}
	if err := httpx.CheckAllowedOrigins(c.Security.AllowedOrigins); err != nil {
		return fmt.Errorf("security.%w", err)
	}
	for _, p := range []struct{ key, v string }{
		{"remote.binary_path", c.Remote.BinaryPath},
		{"remote.git_repo_dir", c.Remote.GitRepoDir},
	} {
		if err := CheckRemotePath(p.v); err != nil {
			return fmt.Errorf("%s: %w", p.key, err)
		}
	}
	return nil
}

// localPath expands "~/" and requires an absolute path.
func localPath(key, p string, e Env) (string, error) {
	if p == "" {
		return "", nil
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		h := e.home()
		if h == "" {
			return "", fmt.Errorf("%s %q: no home directory to expand ~ with", key, p)
		}
		p = filepath.Join(h, strings.TrimPrefix(p, "~"))
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%s %q: the path must be absolute (or start with ~/)", key, p)
	}
	return filepath.Clean(p), nil
}

// CheckRemotePath checks a path on a node as given in [remote]: absolute or
// relative to the install path, clean, no "~", no "..", no control
// characters. The empty string (unset) passes.
func CheckRemotePath(p string) error {
	if p == "" {
		return nil
	}
	if strings.HasPrefix(p, "~") {
		return fmt.Errorf("%q: ~ would be expanded on the wrong machine; give an absolute path or one relative to the install path", p)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%q: control characters are not allowed in a path", p)
		}
	}
	if path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == ".." {
		return fmt.Errorf("%q: the path must be clean (no .., no trailing /, no //)", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("%q: the path must not contain a .. element", p)
		}
	}
	return nil
}

// RemotePath resolves a [remote] path for a node: p itself when absolute,
// else p under installPath; def (relative to installPath) when p is empty.
func RemotePath(p, installPath, def string) string {
	if p == "" {
		p = def
	}
	if path.IsAbs(p) {
		return p
	}
	return path.Join(installPath, p)
}

// ParseQueenURL checks a queen address: http(s)://host[:port], with no
// path (but "/"), query, fragment or user info.
func ParseQueenURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%q is not a queen address like %s", raw, DefaultQueenURL)
	}
	u.Path = ""
	return u, nil
}

// Setting is a resolved value and where it came from ("--queen-url",
// "$RBEE_QUEEN_URL", "queen.url in /etc/rbee/config.toml", "default"), for
// messages that must say where to change it.
type Setting struct {
	Value  string
	Source string
}

// QueenURL resolves where keepers find the queen: the flag's value when
// not empty, else $RBEE_QUEEN_URL, else [queen] url, else http:// with
// [queen] host and port when either is set, else [DefaultQueenURL]. The
// value is not checked here: ParseQueenURL does that, naming the Source.
func (c *File) QueenURL(flag, flagName string, e Env) Setting {
	switch {
	case flag != "":
		return Setting{flag, flagName}
	case e.getenv(EnvQueenURL) != "":
		return Setting{e.getenv(EnvQueenURL), "$" + EnvQueenURL}
	case c != nil && c.Queen.URL != "":
		return Setting{c.Queen.URL, c.source("queen.url")}
	case c != nil && (c.Queen.Host != "" || c.Queen.Port != 0):
		host, port := c.Queen.Host, c.Queen.Port
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		if port == 0 {
			port = 8080
		}
		return Setting{"http://" + net.JoinHostPort(host, strconv.Itoa(port)), c.source("queen.host/port")}
	}
	return Setting{DefaultQueenURL, "default"}
}

// Home resolves rbee's state directory: the flag's value, else $RBEE_HOME,
// else [paths] home, else ~/.rbee; always absolute.
func (c *File) Home(flag string, e Env) (string, error) {
	p := flag
	switch {
	case p != "":
	case e.getenv(EnvHome) != "":
		p = e.getenv(EnvHome)
	case c != nil && c.Paths.Home != "":
		p = c.Paths.Home
	default:
		h := e.home()
		if h == "" {
			return "", fmt.Errorf("no home directory: set $%s or [paths] home", EnvHome)
		}
		p = filepath.Join(h, ".rbee")
	}
	return filepath.Abs(p)
}

// source names a key of this file in messages.
func (c *File) source(key string) string {
	if c.Path == "" {
		return key
	}
	return key + " in " + c.Path
}

// Describe says which file the settings came from, for messages: the path,
// or that no file was found (and where it was looked for).
func (c *File) Describe(e Env) string {
	if c != nil && c.Path != "" {
		return c.Path
	}
	return "no configuration file (looked for " + strings.Join(e.Candidates(), ", ") + ")"
}
