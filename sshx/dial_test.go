package sshx

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"rbee/api"
	"rbee/internal/sshtest"
)

// serverConfig is a Config for s with its client key and known_hosts,
// one fast attempt, and no agent (so the developer's agent cannot help).
func serverConfig(s *sshtest.Server) Config {
	return Config{
		Host:           s.Host,
		Port:           s.Port,
		User:           s.User,
		KeyPath:        s.ClientKeyPath,
		KnownHostsPath: s.KnownHostsPath,
		DisableAgent:   true,
		Timeout:        5 * time.Second,
		RetryDelays:    []time.Duration{0},
	}
}

func dialServer(t *testing.T, s *sshtest.Server) *Client {
	t.Helper()
	c, err := Dial(t.Context(), serverConfig(s))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// whoami proves the connection works by running a command.
func whoami(t *testing.T, c *Client) string {
	t.Helper()
	out, err := c.Output(t.Context(), "id", "-un")
	require.NoError(t, err)
	return strings.TrimSpace(out)
}

// apiError returns the *api.Error in err, failing the test without one.
func apiError(t *testing.T, err error) *api.Error {
	t.Helper()
	var ae *api.Error
	require.ErrorAs(t, err, &ae)
	return ae
}

func TestDialKeyTypes(t *testing.T) {
	s := sshtest.Start(t)
	for _, typ := range []sshtest.KeyType{sshtest.Ed25519, sshtest.RSA, sshtest.ECDSA} {
		t.Run(string(typ), func(t *testing.T) {
			k := sshtest.NewKey(t, typ, "")
			s.Authorize(t, k.PublicKey())
			cfg := serverConfig(s)
			cfg.KeyPath = k.Path
			c, err := Dial(t.Context(), cfg)
			require.NoError(t, err)
			defer c.Close()
			assert.Equal(t, s.User, whoami(t, c))
			assert.Equal(t, s.User+"@"+s.Addr(), c.String())
		})
	}
}

func TestDialEncryptedKey(t *testing.T) {
	s := sshtest.Start(t)
	k := sshtest.NewKey(t, sshtest.Ed25519, "open sesame")
	s.Authorize(t, k.PublicKey())
	cfg := serverConfig(s)
	cfg.KeyPath = k.Path

	t.Run("no passphrase source", func(t *testing.T) {
		_, err := Dial(t.Context(), cfg)
		require.Error(t, err)
		assert.ErrorIs(t, err, api.ErrSSHAuthFailed)
		assert.ErrorIs(t, err, ErrEncryptedKey)
		ae := apiError(t, err)
		assert.Contains(t, ae.Message, k.Path)
		assert.Contains(t, ae.Message, "encrypted")
		assert.Contains(t, ae.Hint(), "ssh-add")
		var se *Error
		require.ErrorAs(t, err, &se)
		assert.Zero(t, se.Attempts, "a bad key file is found before connecting")
	})
	t.Run("passphrase", func(t *testing.T) {
		cfg := cfg
		cfg.Passphrase = func() ([]byte, error) { return []byte("open sesame"), nil }
		c, err := Dial(t.Context(), cfg)
		require.NoError(t, err)
		defer c.Close()
		assert.Equal(t, s.User, whoami(t, c))
	})
}

func TestDialKeyFileProblems(t *testing.T) {
	s := sshtest.Start(t)
	garbage := filepath.Join(t.TempDir(), "garbage")
	require.NoError(t, os.WriteFile(garbage, []byte("not a key"), 0o600))
	for name, path := range map[string]string{
		"missing": filepath.Join(t.TempDir(), "nope"),
		"garbage": garbage,
	} {
		t.Run(name, func(t *testing.T) {
			cfg := serverConfig(s)
			cfg.KeyPath = path
			_, err := Dial(t.Context(), cfg)
			assert.ErrorIs(t, err, api.ErrSSHAuthFailed)
			assert.Contains(t, apiError(t, err).Message, path)
		})
	}
}

// startAgent serves keyring on a unix socket and points SSH_AUTH_SOCK at it.
func startAgent(t *testing.T, keys ...*sshtest.Key) {
	t.Helper()
	keyring := agent.NewKeyring()
	for _, k := range keys {
		require.NoError(t, keyring.Add(agent.AddedKey{PrivateKey: k.Private}))
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = agent.ServeAgent(keyring, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	t.Setenv("SSH_AUTH_SOCK", sock)
}

func TestDialAgent(t *testing.T) {
	s := sshtest.Start(t)
	t.Setenv("HOME", t.TempDir()) // no default keys

	t.Run("agent only", func(t *testing.T) {
		k, err := sshtest.GenerateKey(sshtest.RSA)
		require.NoError(t, err)
		s.Authorize(t, k.PublicKey())
		startAgent(t, k)
		cfg := serverConfig(s)
		cfg.KeyPath = ""
		cfg.DisableAgent = false
		c, err := Dial(t.Context(), cfg)
		require.NoError(t, err)
		defer c.Close()
		assert.Equal(t, s.User, whoami(t, c))
	})
	t.Run("encrypted key held by the agent", func(t *testing.T) {
		k := sshtest.NewKey(t, sshtest.Ed25519, "pw")
		s.Authorize(t, k.PublicKey())
		other, err := sshtest.GenerateKey(sshtest.ECDSA)
		require.NoError(t, err)
		startAgent(t, other, k)
		cfg := serverConfig(s)
		cfg.KeyPath = k.Path
		cfg.DisableAgent = false
		c, err := Dial(t.Context(), cfg)
		require.NoError(t, err)
		defer c.Close()
		assert.Equal(t, s.User, whoami(t, c))
	})
	t.Run("agent disabled", func(t *testing.T) {
		k, err := sshtest.GenerateKey(sshtest.Ed25519)
		require.NoError(t, err)
		s.Authorize(t, k.PublicKey())
		startAgent(t, k)
		cfg := serverConfig(s)
		cfg.KeyPath = ""
		_, err = Dial(t.Context(), cfg)
		assert.ErrorIs(t, err, api.ErrSSHAuthFailed)
		assert.ErrorIs(t, err, ErrNoKeys)
	})
	t.Run("dead agent socket and no key", func(t *testing.T) {
		t.Setenv("SSH_AUTH_SOCK", filepath.Join(t.TempDir(), "gone.sock"))
		cfg := serverConfig(s)
		cfg.KeyPath = ""
		cfg.DisableAgent = false
		_, err := Dial(t.Context(), cfg)
		assert.ErrorIs(t, err, ErrNoKeys)
		assert.Contains(t, err.Error(), "ssh-agent")
	})
}

func TestDialUnknownHost(t *testing.T) {
	s := sshtest.Start(t)

	t.Run("refused", func(t *testing.T) {
		cfg := serverConfig(s)
		cfg.KnownHostsPath = s.EmptyKnownHosts(t)
		cfg.RetryDelays = []time.Duration{0, time.Millisecond, time.Millisecond}
		_, err := Dial(t.Context(), cfg)
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrUnknownHostKey)
		assert.ErrorIs(t, err, api.ErrSSHConnectionFailed)
		ae := apiError(t, err)
		fp := ssh.FingerprintSHA256(s.HostPublicKey)
		assert.Contains(t, ae.Message, fp)
		assert.Contains(t, ae.Hint(), "accept")
		assert.Equal(t, fp, ae.Details["fingerprint"])
		assert.Equal(t, s.Host, ae.Details["host"])
		assert.Equal(t, s.Port, ae.Details["port"])
		var se *Error
		require.ErrorAs(t, err, &se)
		assert.Equal(t, 1, se.Attempts, "an unknown host is not retried")
		data, err := os.ReadFile(cfg.KnownHostsPath)
		require.NoError(t, err)
		assert.Empty(t, data, "nothing recorded")
	})
	t.Run("accepted and recorded", func(t *testing.T) {
		cfg := serverConfig(s)
		cfg.KnownHostsPath = filepath.Join(t.TempDir(), "new", "known_hosts") // missing dir and file
		cfg.AcceptNewHostKey = true
		c, err := Dial(t.Context(), cfg)
		require.NoError(t, err)
		_, err = os.Stat(cfg.KnownHostsPath)
		require.ErrorIs(t, err, os.ErrNotExist, "accepted for the connection, not recorded yet")
		require.NoError(t, c.RecordHostKey())
		require.NoError(t, c.RecordHostKey(), "recorded once")
		c.Close()
		data, err := os.ReadFile(cfg.KnownHostsPath)
		require.NoError(t, err)
		assert.Equal(t, s.KnownHostsLine(s.HostPublicKey)+"\n", string(data))
		st, err := os.Stat(cfg.KnownHostsPath)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

		// Now known: it connects without accepting, and records nothing more.
		cfg.AcceptNewHostKey = false
		c, err = Dial(t.Context(), cfg)
		require.NoError(t, err)
		c.Close()
		again, err := os.ReadFile(cfg.KnownHostsPath)
		require.NoError(t, err)
		assert.Equal(t, string(data), string(again))
	})
	t.Run("recorded after other hosts", func(t *testing.T) {
		cfg := serverConfig(s)
		cfg.KnownHostsPath = filepath.Join(t.TempDir(), "known_hosts")
		other, err := sshtest.GenerateKey(sshtest.Ed25519)
		require.NoError(t, err)
		prior := "[otherhost]:2222 " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other.PublicKey())))
		require.NoError(t, os.WriteFile(cfg.KnownHostsPath, []byte(prior), 0o600)) // no final newline
		cfg.AcceptNewHostKey = true
		c, err := Dial(t.Context(), cfg)
		require.NoError(t, err)
		require.NoError(t, c.RecordHostKey())
		c.Close()
		data, err := os.ReadFile(cfg.KnownHostsPath)
		require.NoError(t, err)
		assert.Equal(t, prior+"\n"+s.KnownHostsLine(s.HostPublicKey)+"\n", string(data))
	})
	t.Run("never recorded when the login fails", func(t *testing.T) {
		cfg := serverConfig(s)
		cfg.KnownHostsPath = s.EmptyKnownHosts(t)
		cfg.AcceptNewHostKey = true
		cfg.KeyPath = sshtest.NewKey(t, sshtest.Ed25519, "").Path // not authorized on the server
		_, err := Dial(t.Context(), cfg)
		require.ErrorIs(t, err, api.ErrSSHAuthFailed)
		data, err := os.ReadFile(cfg.KnownHostsPath)
		require.NoError(t, err)
		assert.Empty(t, data, "a host we could not log in to is not recorded")
	})
	t.Run("not recorded twice when another recorded it meanwhile", func(t *testing.T) {
		cfg := serverConfig(s)
		cfg.KnownHostsPath = s.EmptyKnownHosts(t)
		cfg.AcceptNewHostKey = true
		c, err := Dial(t.Context(), cfg)
		require.NoError(t, err)
		defer c.Close()
		line := s.KnownHostsLine(s.HostPublicKey) + "\n"
		require.NoError(t, os.WriteFile(cfg.KnownHostsPath, []byte(line), 0o600))
		require.NoError(t, c.RecordHostKey())
		data, err := os.ReadFile(cfg.KnownHostsPath)
		require.NoError(t, err)
		assert.Equal(t, line, string(data))
	})
}

func TestDialHostKeyMismatch(t *testing.T) {
	impostor, err := sshtest.GenerateKey(sshtest.Ed25519)
	require.NoError(t, err)
	check := func(t *testing.T, err error, knownHosts string) {
		t.Helper()
		require.Error(t, err)
		assert.ErrorIs(t, err, api.ErrHostKeyMismatch)
		assert.False(t, errors.Is(err, api.ErrSSHConnectionFailed))
		ae := apiError(t, err)
		assert.Contains(t, ae.Message, "changed")
		assert.Contains(t, ae.Hint(), "ssh-keygen -R")
		var se *Error
		require.ErrorAs(t, err, &se)
		assert.Equal(t, 1, se.Attempts, "a mismatch is not retried")
		// Never silently replaced, even with AcceptNewHostKey.
		data, rerr := os.ReadFile(knownHosts)
		require.NoError(t, rerr)
		assert.Equal(t, 1, strings.Count(string(data), "\n"))
	}

	t.Run("sshd with a changed key", func(t *testing.T) {
		s := sshtest.Start(t)
		cfg := serverConfig(s)
		cfg.KnownHostsPath = filepath.Join(t.TempDir(), "known_hosts")
		require.NoError(t, os.WriteFile(cfg.KnownHostsPath, []byte(s.KnownHostsLine(impostor.PublicKey())+"\n"), 0o600))
		cfg.AcceptNewHostKey = true
		cfg.RetryDelays = []time.Duration{0, time.Millisecond}
		_, err := Dial(t.Context(), cfg)
		check(t, err, cfg.KnownHostsPath)
		assert.Contains(t, apiError(t, err).Message, ssh.FingerprintSHA256(s.HostPublicKey))
	})
	t.Run("in-process server with another key", func(t *testing.T) {
		client := sshtest.NewKey(t, sshtest.Ed25519, "")
		f := sshtest.StartFake(t, sshtest.FakeOptions{AuthorizedKeys: []ssh.PublicKey{client.PublicKey()}})
		kh := filepath.Join(t.TempDir(), "known_hosts")
		require.NoError(t, os.WriteFile(kh, []byte(f.KnownHostsLine(impostor.PublicKey())+"\n"), 0o600))
		_, err := Dial(t.Context(), Config{Host: f.Host, Port: f.Port, User: "u", KeyPath: client.Path,
			KnownHostsPath: kh, DisableAgent: true, AcceptNewHostKey: true})
		check(t, err, kh)
	})
}

// TestDialPicksTheKnownHostKeyType: a server with ed25519 and RSA host
// keys, known only by its RSA key, is verified with that key rather than
// reported as a mismatch.
func TestDialPicksTheKnownHostKeyType(t *testing.T) {
	s := sshtest.StartWith(t, sshtest.Options{HostKeyTypes: []sshtest.KeyType{sshtest.Ed25519, sshtest.RSA}})
	for _, k := range s.HostKeys {
		t.Run(string(k.Type), func(t *testing.T) {
			cfg := serverConfig(s)
			cfg.KnownHostsPath = filepath.Join(t.TempDir(), "known_hosts")
			require.NoError(t, os.WriteFile(cfg.KnownHostsPath, []byte(s.KnownHostsLine(k.PublicKey())+"\n"), 0o600))
			c, err := Dial(t.Context(), cfg)
			require.NoError(t, err)
			c.Close()
		})
	}
}

func TestDialAuthFailure(t *testing.T) {
	t.Run("sshd", func(t *testing.T) {
		s := sshtest.Start(t)
		cfg := serverConfig(s)
		cfg.KeyPath = sshtest.NewKey(t, sshtest.Ed25519, "").Path // not authorized
		cfg.RetryDelays = []time.Duration{0, time.Millisecond, time.Millisecond}
		_, err := Dial(t.Context(), cfg)
		require.Error(t, err)
		assert.ErrorIs(t, err, api.ErrSSHAuthFailed)
		assert.ErrorIs(t, err, ErrAuthRejected)
		ae := apiError(t, err)
		assert.Contains(t, ae.Message, s.Host)
		assert.Contains(t, ae.Message, s.User)
		assert.Contains(t, ae.Hint(), "authorized_keys")
		var se *Error
		require.ErrorAs(t, err, &se)
		assert.Equal(t, 1, se.Attempts, "a refused key is not retried")
	})
	t.Run("in-process server", func(t *testing.T) {
		client := sshtest.NewKey(t, sshtest.ECDSA, "")
		f := sshtest.StartFake(t, sshtest.FakeOptions{Mode: sshtest.FakeRejectAuth})
		_, err := Dial(t.Context(), Config{Host: f.Host, Port: f.Port, User: "u", KeyPath: client.Path,
			KnownHostsPath: f.KnownHostsPath, DisableAgent: true})
		assert.ErrorIs(t, err, api.ErrSSHAuthFailed)
		assert.Equal(t, 1, f.Conns())
	})
}

// recordingDialer records when each attempt dials.
type recordingDialer struct {
	mu    sync.Mutex
	times []time.Time
}

func (r *recordingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	r.mu.Lock()
	r.times = append(r.times, time.Now())
	r.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	return port
}

func TestDialUnreachableRetries(t *testing.T) {
	key := sshtest.NewKey(t, sshtest.Ed25519, "")
	port := closedPort(t)
	delays := []time.Duration{0, 30 * time.Millisecond, 60 * time.Millisecond}
	rec := &recordingDialer{}
	start := time.Now()
	_, err := Dial(t.Context(), Config{
		Host: "127.0.0.1", Port: port, User: "u", KeyPath: key.Path, DisableAgent: true,
		KnownHostsPath: filepath.Join(t.TempDir(), "known_hosts"),
		RetryDelays:    delays, DialContext: rec.dial,
	})
	require.Error(t, err)
	assert.ErrorIs(t, err, api.ErrSSHConnectionFailed)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	ae := apiError(t, err)
	assert.Contains(t, ae.Message, "127.0.0.1")
	assert.Contains(t, ae.Message, "3 attempts")
	assert.Equal(t, 3, ae.Details["attempts"])
	assert.Equal(t, port, ae.Details["port"])
	assert.NotEmpty(t, ae.Hint())
	var se *Error
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 3, se.Attempts)

	require.Len(t, rec.times, 3)
	assert.GreaterOrEqual(t, rec.times[0].Sub(start), delays[0])
	for i := 1; i < 3; i++ {
		assert.GreaterOrEqual(t, rec.times[i].Sub(rec.times[i-1]), delays[i], "delay before attempt %d", i+1)
	}
}

func TestDialDefaults(t *testing.T) {
	cfg, err := Config{Host: "h"}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, 22, cfg.Port)
	assert.Equal(t, 10*time.Second, cfg.Timeout)
	assert.Equal(t, []time.Duration{0, 200 * time.Millisecond, 400 * time.Millisecond}, cfg.RetryDelays)
	assert.NotEmpty(t, cfg.User)
	assert.True(t, strings.HasSuffix(cfg.KnownHostsPath, filepath.Join(".ssh", "known_hosts")))

	for _, bad := range []Config{{}, {Host: "h", Port: 70000}} {
		_, err := Dial(t.Context(), bad)
		assert.ErrorIs(t, err, api.ErrInvalidRequest)
	}
}

func TestDialStalledHandshake(t *testing.T) {
	key := sshtest.NewKey(t, sshtest.Ed25519, "")
	f := sshtest.StartFake(t, sshtest.FakeOptions{Mode: sshtest.FakeStall})
	_, err := Dial(t.Context(), Config{
		Host: f.Host, Port: f.Port, User: "u", KeyPath: key.Path, DisableAgent: true,
		KnownHostsPath: f.KnownHostsPath,
		Timeout:        150 * time.Millisecond,
		RetryDelays:    []time.Duration{0, time.Millisecond},
	})
	require.Error(t, err)
	assert.ErrorIs(t, err, api.ErrSSHConnectionFailed)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.Contains(t, err.Error(), "no SSH handshake within 150ms")
	assert.Equal(t, 2, f.Conns(), "a timeout is retried")
}

func TestDialCanceled(t *testing.T) {
	key := sshtest.NewKey(t, sshtest.Ed25519, "")
	f := sshtest.StartFake(t, sshtest.FakeOptions{Mode: sshtest.FakeStall})
	ctx, cancel := context.WithCancel(t.Context())
	var dials atomic.Int32
	_, err := Dial(ctx, Config{
		Host: f.Host, Port: f.Port, User: "u", KeyPath: key.Path, DisableAgent: true,
		KnownHostsPath: f.KnownHostsPath,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Cancelled once the handshake waits for the server, which stalls.
			return &cancelOnRead{Conn: c, cancel: cancel}, nil
		},
	})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, api.ErrSSHConnectionFailed)
	assert.Equal(t, int32(1), dials.Load(), "no retry after cancel")
}

// cancelOnRead calls cancel when its first read begins.
type cancelOnRead struct {
	net.Conn
	once   sync.Once
	cancel context.CancelFunc
}

func (c *cancelOnRead) Read(p []byte) (int, error) {
	c.once.Do(c.cancel)
	return c.Conn.Read(p)
}

// TestConnectionLost: a connection cut under a running command is
// reported as SSH_CONNECTION_FAILED by the command, Ping and Done.
func TestConnectionLost(t *testing.T) {
	s := sshtest.Start(t)
	cfg := serverConfig(s)
	conns := make(chan net.Conn, 1)
	cfg.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			conns <- c
		}
		return c, err
	}
	c, err := Dial(t.Context(), cfg)
	require.NoError(t, err)
	defer c.Close()
	raw := <-conns
	require.NoError(t, c.Ping(t.Context()))
	select {
	case <-c.Done():
		t.Fatal("Done before the connection ended")
	default:
	}

	started := make(chan struct{})
	done := make(chan error, 1)
	stdin, hold := io.Pipe()
	defer hold.Close()
	go func() {
		done <- c.Run(t.Context(), Cmd{
			Argv:       []string{"sh", "-c", "echo started; read x"},
			Stdin:      stdin,
			StdoutLine: func(string) { close(started) },
		})
	}()
	<-started
	require.NoError(t, raw.Close())

	err = <-done
	assert.ErrorIs(t, err, api.ErrSSHConnectionFailed)
	assert.Contains(t, err.Error(), "lost")
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
	assert.ErrorIs(t, c.Ping(t.Context()), api.ErrSSHConnectionFailed)
	assert.ErrorIs(t, c.Run(t.Context(), Cmd{Argv: []string{"true"}}), api.ErrSSHConnectionFailed)
}
