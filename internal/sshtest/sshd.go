// Package sshtest starts SSH servers for tests: a real OpenSSH sshd on a
// loopback port (Start), and an in-process server built on
// golang.org/x/crypto/ssh for faults sshd cannot easily produce
// (StartFake).
package sshtest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"rbee/internal/testutil"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHDPath is where Start looks for OpenSSH's server.
const SSHDPath = "/usr/sbin/sshd"

// Options change what Start sets up.
type Options struct {
	// HostKeyTypes are the host keys sshd presents; {Ed25519} when empty.
	HostKeyTypes []KeyType
}

// Server is a running sshd that accepts ClientKey for User.
type Server struct {
	Host string // 127.0.0.1
	Port int
	User string // the current user

	ClientKey     *Key   // an ed25519 key listed in authorized_keys
	ClientKeyPath string // ClientKey.Path
	// KnownHostsPath is a known_hosts file listing every host key for
	// [Host]:Port.
	KnownHostsPath string
	HostPublicKey  ssh.PublicKey // the first host key
	HostKeys       []*Key
	Dir            string // holds the config, keys and logs

	authorizedKeys string
	cmd            *exec.Cmd
	exited         chan struct{}
	log            *testutil.SyncBuffer
}

// Start runs sshd with Options{} for the rest of the test; see StartWith.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith runs /usr/sbin/sshd -D -e with a generated configuration on a
// free loopback port as the current user (root may log in with keys
// only), waits until it answers with an SSH banner, and stops it when the
// test ends. It skips the test when sshd is not installed, and with -short.
//
// As root, sshd needs its privilege separation directory /run/sshd; StartWith
// creates it (mode 0755) when it is missing, as the ssh service would.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("sshtest: runs a real OpenSSH sshd")
	}
	if _, err := os.Stat(SSHDPath); err != nil {
		t.Skipf("sshtest: OpenSSH server not installed (%v); apt-get install openssh-server", err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Skipf("sshtest: sshd as root needs /run/sshd: %v", err)
		}
	}
	types := opts.HostKeyTypes
	if len(types) == 0 {
		types = []KeyType{Ed25519}
	}

	s := &Server{Host: "127.0.0.1", User: u.Username, Dir: t.TempDir()}
	for _, typ := range types {
		k, err := GenerateKey(typ)
		if err != nil {
			t.Fatalf("sshtest: host key: %v", err)
		}
		if err := k.Write(filepath.Join(s.Dir, "ssh_host_"+string(typ)+"_key"), ""); err != nil {
			t.Fatalf("sshtest: %v", err)
		}
		s.HostKeys = append(s.HostKeys, k)
	}
	s.HostPublicKey = s.HostKeys[0].PublicKey()

	s.ClientKey, err = GenerateKey(Ed25519)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	if err := s.ClientKey.Write(filepath.Join(s.Dir, "id_ed25519"), ""); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	s.ClientKeyPath = s.ClientKey.Path
	s.authorizedKeys = filepath.Join(s.Dir, "authorized_keys")
	if err := os.WriteFile(s.authorizedKeys, ssh.MarshalAuthorizedKey(s.ClientKey.PublicKey()), 0o600); err != nil {
		t.Fatalf("sshtest: %v", err)
	}

	// A free port can be taken between our probe and sshd's bind: retry.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("sshtest: %v", err)
		}
		s.Port = port
		if lastErr = s.launch(t); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("sshtest: sshd did not start: %v\n%s", lastErr, s.Log())
	}

	s.KnownHostsPath = filepath.Join(s.Dir, "known_hosts")
	var lines strings.Builder
	for _, k := range s.HostKeys {
		lines.WriteString(s.KnownHostsLine(k.PublicKey()) + "\n")
	}
	if err := os.WriteFile(s.KnownHostsPath, []byte(lines.String()), 0o600); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	return s
}

// launch writes the config for s.Port, starts sshd and waits for its
// banner. On failure sshd is stopped and the error returned.
func (s *Server) launch(t testing.TB) error {
	cfg := filepath.Join(s.Dir, "sshd_config")
	if err := os.WriteFile(cfg, []byte(s.config()), 0o600); err != nil {
		return err
	}
	s.log = &testutil.SyncBuffer{}
	s.cmd = exec.Command(SSHDPath, "-D", "-e", "-f", cfg)
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.exited = make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(10 * time.Second); err != nil {
		s.stop()
		return err
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("sshtest: sshd log:\n%s", s.Log())
		}
	})
	return nil
}

// config is sshd_config for a test server.
func (s *Server) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Port %d\nListenAddress 127.0.0.1\n", s.Port)
	for _, k := range s.HostKeys {
		fmt.Fprintf(&b, "HostKey %s\n", k.Path)
	}
	fmt.Fprintf(&b, "AuthorizedKeysFile %s\n", s.authorizedKeys)
	b.WriteString(`PidFile none
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
MaxStartups 100
MaxSessions 100
LogLevel VERBOSE
`)
	if penaltiesSupported() {
		// OpenSSH 9.8 and later penalize a source address after failed
		// logins; tests fail logins on purpose.
		b.WriteString("PerSourcePenalties no\n")
	}
	return b.String()
}

var opensshVersion = regexp.MustCompile(`OpenSSH_(\d+)\.(\d+)`)

// penaltiesSupported reports whether the installed sshd knows the
// PerSourcePenalties option (OpenSSH 9.8 and later).
func penaltiesSupported() bool {
	out, _ := exec.Command(SSHDPath, "-V").CombinedOutput()
	m := opensshVersion.FindSubmatch(out)
	if m == nil {
		return false
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	return major > 9 || major == 9 && minor >= 8
}

// waitReady waits until sshd sends its banner on s.Port.
func (s *Server) waitReady(d time.Duration) error {
	deadline := time.Now().Add(d)
	addr := s.Addr()
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("sshd exited: %v", s.cmd.ProcessState)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "SSH-2.0-") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("sshd sent no banner in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends sshd: SIGTERM, then SIGKILL after 5 s.
func (s *Server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// Addr is Host:Port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// KnownHostsLine is a known_hosts line that gives key to this server.
func (s *Server) KnownHostsLine(key ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr())}, key)
}

// EmptyKnownHosts returns the path of a new, empty known_hosts file.
func (s *Server) EmptyKnownHosts(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	return p
}

// Authorize adds key to authorized_keys; sshd reads it at every login.
func (s *Server) Authorize(t testing.TB, key ssh.PublicKey) {
	t.Helper()
	f, err := os.OpenFile(s.authorizedKeys, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	defer f.Close()
	if _, err := f.Write(ssh.MarshalAuthorizedKey(key)); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
}

// Log returns what sshd has logged so far.
func (s *Server) Log() string {
	if s.log == nil {
		return ""
	}
	return s.log.String()
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
