package sshx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"rbee/api"
)

// Client is one authenticated SSH connection to a node. Its methods may be
// called from several goroutines at once; each opens its own session.
type Client struct {
	conn *ssh.Client
	t    target
	cfg  Config

	done chan struct{} // closed when the connection has ended

	mu       sync.Mutex
	forwards map[*forward]struct{}
	closed   bool
	newKey   *newHostKey // accepted, not recorded yet
}

// Dial connects to cfg.Host and authenticates, checking the host key
// against known_hosts. The key of a host known_hosts does not list is
// refused, unless cfg.AcceptNewHostKey accepts it for this connection;
// nothing is written to known_hosts until [Client.RecordHostKey], so that a
// caller records only hosts it keeps. Connection failures are retried after each of
// cfg.RetryDelays (3 attempts, 10 s each by default); authentication and
// host key failures are not. Errors are *[Error] values carrying an
// *api.Error with code SSH_CONNECTION_FAILED, SSH_AUTH_FAILED or
// HOST_KEY_MISMATCH; a Config without Host (or with a port out of range)
// is an *api.Error INVALID_REQUEST.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, api.Errorf(api.CodeInvalidRequest, "%v", err)
	}
	t := target{user: cfg.User, host: cfg.Host, port: cfg.Port}
	k, err := loadKeys(cfg, t)
	if err != nil {
		return nil, err
	}
	defer k.close()

	hk := hostKeys{cfg: cfg, t: t}
	log := cfg.Logger.With("host", cfg.Host, "port", cfg.Port)
	var last *Error
	for i, delay := range cfg.RetryDelays {
		if delay > 0 {
			timer := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil, t.canceled(ctx, i, last)
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			return nil, t.canceled(ctx, i, last)
		}
		conn, newKey, err := dialOnce(ctx, cfg, t, hk, k)
		if err == nil {
			log.Debug("connected", "attempt", i+1)
			c := &Client{conn: conn, t: t, cfg: cfg, done: make(chan struct{}), newKey: newKey}
			go func() {
				_ = conn.Wait()
				close(c.done)
			}()
			return c, nil
		}
		err.Attempts = i + 1
		last = err
		if !errors.Is(err, api.ErrSSHConnectionFailed) || errors.Is(err, ErrUnknownHostKey) || ctx.Err() != nil {
			return nil, err
		}
		log.Debug("connection attempt failed", "attempt", i+1, "error", err.Cause)
	}
	if n := len(cfg.RetryDelays); n > 1 {
		last.API.Message = fmt.Sprintf("SSH connection to %s failed after %d attempts: %v", t, n, last.Cause)
	}
	last.API = last.API.With("attempts", len(cfg.RetryDelays))
	return nil, last
}

// canceled reports a Dial whose context ended before it succeeded.
func (t target) canceled(ctx context.Context, attempts int, last *Error) *Error {
	cause := context.Cause(ctx)
	if last != nil {
		cause = fmt.Errorf("%w (last attempt: %w)", cause, last.Cause)
	}
	e := t.newError(api.CodeSSHConnectionFailed, cause, "", "SSH connection to %s canceled", t)
	e.Attempts = attempts
	return e
}

// dialOnce makes one attempt: TCP connect, handshake, authentication,
// all within cfg.Timeout. It also returns the host key it accepted for an
// unknown host (AcceptNewHostKey), if any.
func dialOnce(ctx context.Context, cfg Config, t target, hk hostKeys, k *keys) (*ssh.Client, *newHostKey, *Error) {
	actx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	nc, err := cfg.DialContext(actx, "tcp", addr)
	if err != nil {
		return nil, nil, t.connError(ctx, cfg, err)
	}
	// The handshake has no context of its own: closing the connection when
	// the attempt's time is up (or the caller gives up) ends it.
	stop := context.AfterFunc(actx, func() { nc.Close() })

	var hostKeyErr *Error
	var newKey *newHostKey
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, &ssh.ClientConfig{
		User:              cfg.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(k.signers...)},
		HostKeyCallback:   hk.callback(&hostKeyErr, &newKey),
		HostKeyAlgorithms: hk.algorithms(),
		ClientVersion:     "SSH-2.0-rbee",
	})
	if !stop() {
		// The attempt timed out or was canceled, even if the handshake
		// finished just now: its connection is closed.
		if err == nil {
			sc.Close()
		}
		nc.Close()
		if ctx.Err() != nil {
			return nil, nil, t.connError(ctx, cfg, context.Cause(ctx))
		}
		return nil, nil, t.connError(ctx, cfg, fmt.Errorf("no SSH handshake within %s: %w", cfg.Timeout, os.ErrDeadlineExceeded))
	}
	switch {
	case hostKeyErr != nil:
		return nil, nil, hostKeyErr
	case err != nil && isAuthFailure(err):
		return nil, nil, t.newError(api.CodeSSHAuthFailed, fmt.Errorf("%w: %w", ErrAuthRejected, err),
			authHint(cfg), "SSH authentication as %s to %s failed", cfg.User, t)
	case err != nil:
		return nil, nil, t.connError(ctx, cfg, err)
	}
	return ssh.NewClient(sc, chans, reqs), newKey, nil
}

// RecordHostKey writes the host key that Dial accepted for a host
// known_hosts did not list (Config.AcceptNewHostKey) to known_hosts, so
// that later connections know it. Call it once the connection has done
// what made the host worth keeping (the queen: after it saved the node).
// It does nothing when no new key was accepted, or when known_hosts lists
// the key by now; it records a key once however often it is called. The
// error is an *[Error]: SSH_CONNECTION_FAILED when the file cannot be
// written, HOST_KEY_MISMATCH when another key was recorded meanwhile.
func (c *Client) RecordHostKey() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.newKey == nil {
		return nil
	}
	if err := (hostKeys{cfg: c.cfg, t: c.t}).record(c.newKey); err != nil {
		return err
	}
	c.newKey = nil
	return nil
}

// isAuthFailure reports a handshake that failed because no key was
// accepted, as opposed to a broken connection.
func isAuthFailure(err error) bool {
	s := err.Error()
	return strings.Contains(s, "unable to authenticate") ||
		strings.Contains(s, "Too many authentication failures")
}

func authHint(cfg Config) string {
	if cfg.KeyPath != "" {
		return fmt.Sprintf("add the public key of %s to ~%s/.ssh/authorized_keys on the node, and check ssh_user", cfg.KeyPath, cfg.User)
	}
	return fmt.Sprintf("add your public key to ~%s/.ssh/authorized_keys on the node, or give the node an ssh_key_path", cfg.User)
}

// connError reports a failed TCP connect or handshake (retried by Dial).
func (t target) connError(ctx context.Context, cfg Config, err error) *Error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
		err = fmt.Errorf("%w (%w)", err, os.ErrDeadlineExceeded)
	}
	return t.newError(api.CodeSSHConnectionFailed, err,
		fmt.Sprintf("check that %s is up, that sshd listens on port %d and that no firewall is in the way", t.host, t.port),
		"SSH connection to %s failed", t)
}

// Close closes the connection and every tunnel opened by Forward.
// Processes started with StartDetached keep running.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	fs := make([]*forward, 0, len(c.forwards))
	for f := range c.forwards {
		fs = append(fs, f)
	}
	c.mu.Unlock()
	for _, f := range fs {
		f.close()
	}
	err := c.conn.Close()
	// Done is closed by the time Close returns, so a caller that checks
	// Done right after closing never takes the connection for alive.
	<-c.done
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Done is closed when the connection has ended, by Close (before it
// returns) or because the node or the network dropped it.
func (c *Client) Done() <-chan struct{} { return c.done }

// Ping checks that the node still answers on this connection (an OpenSSH
// keepalive request); a dead connection is an *[Error]
// (SSH_CONNECTION_FAILED). A node that vanished without closing the TCP
// connection is only noticed when ctx ends, so give ctx a deadline.
func (c *Client) Ping(ctx context.Context) error {
	answered := make(chan error, 1)
	go func() {
		_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
		answered <- err
	}()
	select {
	case err := <-answered:
		if err != nil {
			return c.lost(err)
		}
		return nil
	case <-ctx.Done():
		return c.lost(context.Cause(ctx))
	}
}

// lost reports a connection that no longer works.
func (c *Client) lost(cause error) *Error {
	return c.t.newError(api.CodeSSHConnectionFailed, cause, "the SSH connection was lost: dial again",
		"SSH connection to %s lost", c.t)
}

// String names the connection: user@host:port.
func (c *Client) String() string { return c.t.String() }

// session opens a session; a failure means the connection is gone.
func (c *Client) session() (*ssh.Session, error) {
	s, err := c.conn.NewSession()
	if err != nil {
		return nil, c.lost(err)
	}
	return s, nil
}
