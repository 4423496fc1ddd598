package sshx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults of [Config] (docs/architecture.md, "Retries and timeouts").
const (
	DefaultPort    = 22
	DefaultTimeout = 10 * time.Second
)

// DefaultRetryDelays returns the delays before each connection attempt:
// three attempts, 0, 200 and 400 ms.
func DefaultRetryDelays() []time.Duration {
	return []time.Duration{0, 200 * time.Millisecond, 400 * time.Millisecond}
}

// Config says where and how to connect. The zero value of every field but
// Host has a useful default.
type Config struct {
	Host string // host name or IP address; required
	Port int    // DefaultPort when 0
	User string // the current user when empty

	// KeyPath is a private key file (OpenSSH, PEM or PKCS#8; ed25519, RSA
	// or ECDSA). When empty, the agent's keys and the default keys
	// ~/.ssh/id_ed25519, id_ecdsa and id_rsa that need no passphrase are
	// offered.
	KeyPath string
	// Passphrase is asked for the passphrase of an encrypted KeyPath. When
	// it is nil, an encrypted key is used through the agent if the agent
	// holds it, and is otherwise an error (ErrEncryptedKey).
	Passphrase func() ([]byte, error)
	// AgentSocket is the ssh-agent socket; empty means $SSH_AUTH_SOCK.
	AgentSocket string
	// DisableAgent turns the agent off even when a socket is known.
	DisableAgent bool

	// KnownHostsPath is the known_hosts file that host keys are checked
	// against; empty means ~/.ssh/known_hosts. A missing file holds no keys.
	KnownHostsPath string
	// AcceptNewHostKey accepts the key of a host that known_hosts does not
	// list, for the connection Dial makes; [Client.RecordHostKey] records
	// it there. A key that differs from a recorded one is always refused
	// (HOST_KEY_MISMATCH).
	AcceptNewHostKey bool

	// Timeout bounds each attempt: TCP connect plus SSH handshake and
	// authentication. DefaultTimeout when 0.
	Timeout time.Duration
	// RetryDelays holds one delay per connection attempt, slept before it;
	// DefaultRetryDelays() when nil. Only connection failures are retried,
	// never a refused key or a host key problem.
	RetryDelays []time.Duration
	// DialContext opens the TCP connection; a net.Dialer when nil. Tests
	// use it to observe attempts; a program may use it for a proxy.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// Logger receives connection attempts and host key records; a null
	// logger when nil. Nothing secret is logged.
	Logger hclog.Logger
}

// withDefaults fills in the defaults; it fails only when Host is empty or
// no user or home directory can be found.
func (c Config) withDefaults() (Config, error) {
	if c.Host == "" {
		return c, errors.New("sshx: Config.Host is empty")
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Port < 0 || c.Port > 65535 {
		return c, fmt.Errorf("sshx: Config.Port %d is out of range", c.Port)
	}
	if c.User == "" {
		u, err := user.Current()
		if err != nil {
			return c, err
		}
		c.User = u.Username
	}
	if c.KnownHostsPath == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return c, err
		}
		c.KnownHostsPath = filepath.Join(home, ".ssh", "known_hosts")
	}
	if c.AgentSocket == "" {
		c.AgentSocket = os.Getenv("SSH_AUTH_SOCK")
	}
	if c.DisableAgent {
		c.AgentSocket = ""
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.RetryDelays == nil {
		c.RetryDelays = DefaultRetryDelays()
	}
	if len(c.RetryDelays) == 0 {
		c.RetryDelays = []time.Duration{0}
	}
	if c.DialContext == nil {
		var d net.Dialer
		c.DialContext = d.DialContext
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return c, nil
}
