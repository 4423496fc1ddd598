package sshtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// FakeMode is how a Fake server behaves.
type FakeMode int

// The behaviours of a Fake server.
const (
	// FakeAccept authenticates FakeOptions.AuthorizedKeys and answers
	// every "exec" request by echoing the command line and exiting 0.
	FakeAccept FakeMode = iota
	// FakeRejectAuth completes the key exchange and refuses every key.
	FakeRejectAuth
	// FakeStall accepts TCP connections and never says a word.
	FakeStall
)

// FakeOptions configure StartFake.
type FakeOptions struct {
	Mode FakeMode
	// HostKey is the server's host key; a new ed25519 key when nil.
	HostKey ssh.Signer
	// AuthorizedKeys are the client keys FakeAccept lets in.
	AuthorizedKeys []ssh.PublicKey
}

// Fake is an in-process SSH server on a loopback port.
type Fake struct {
	Host          string // 127.0.0.1
	Port          int
	HostKey       ssh.Signer
	HostPublicKey ssh.PublicKey
	// KnownHostsPath lists HostPublicKey for [Host]:Port.
	KnownHostsPath string

	opts FakeOptions
	ln   net.Listener
	wg   sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	count  int
	closed bool
}

// StartFake starts an in-process server that lives until the test ends.
func StartFake(t testing.TB, opts FakeOptions) *Fake {
	t.Helper()
	if opts.HostKey == nil {
		k, err := GenerateKey(Ed25519)
		if err != nil {
			t.Fatalf("sshtest: %v", err)
		}
		opts.HostKey = k.Signer
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	f := &Fake{
		Host:          "127.0.0.1",
		Port:          ln.Addr().(*net.TCPAddr).Port,
		HostKey:       opts.HostKey,
		HostPublicKey: opts.HostKey.PublicKey(),
		opts:          opts,
		ln:            ln,
		conns:         map[net.Conn]struct{}{},
	}
	f.KnownHostsPath = filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(f.KnownHostsPath, []byte(f.KnownHostsLine(f.HostPublicKey)+"\n"), 0o600); err != nil {
		ln.Close()
		t.Fatalf("sshtest: %v", err)
	}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(f.close)
	return f
}

// Addr is Host:Port.
func (f *Fake) Addr() string { return net.JoinHostPort(f.Host, strconv.Itoa(f.Port)) }

// KnownHostsLine is a known_hosts line that gives key to this server.
func (f *Fake) KnownHostsLine(key ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(f.Addr())}, key)
}

// Conns returns how many TCP connections the server has accepted.
func (f *Fake) Conns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count
}

func (f *Fake) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			c.Close()
			return
		}
		f.conns[c] = struct{}{}
		f.count++
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer func() {
				f.mu.Lock()
				delete(f.conns, c)
				f.mu.Unlock()
				c.Close()
			}()
			f.handle(c)
		}()
	}
}

func (f *Fake) close() {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.ln.Close()
	f.wg.Wait()
}

func (f *Fake) handle(c net.Conn) {
	if f.opts.Mode == FakeStall {
		_, _ = io.Copy(io.Discard, c) // until the client or Cleanup hangs up
		return
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if f.opts.Mode == FakeAccept {
				for _, k := range f.opts.AuthorizedKeys {
					if bytes.Equal(k.Marshal(), key.Marshal()) {
						return &ssh.Permissions{}, nil
					}
				}
			}
			return nil, errors.New("key refused")
		},
	}
	cfg.AddHostKey(f.opts.HostKey)
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			serveSession(ch, creqs)
		}()
	}
}

// serveSession answers "exec" by echoing the command and exiting 0.
func serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for r := range reqs {
		if r.Type != "exec" || len(r.Payload) < 4 {
			_ = r.Reply(false, nil)
			continue
		}
		n := binary.BigEndian.Uint32(r.Payload)
		if int(n) > len(r.Payload)-4 {
			_ = r.Reply(false, nil)
			continue
		}
		_ = r.Reply(true, nil)
		_, _ = ch.Write(append(r.Payload[4:4+n], '\n'))
		_, _ = ch.SendRequest("exit-status", false, []byte{0, 0, 0, 0})
		return
	}
}
