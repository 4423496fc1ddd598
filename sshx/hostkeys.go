package sshx

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"rbee/api"
)

// hostKeys checks host keys against one known_hosts file.
type hostKeys struct {
	cfg Config
	t   target
}

// addr is the host:port that known_hosts lines are matched against.
func (h hostKeys) addr() string {
	return net.JoinHostPort(h.t.host, strconv.Itoa(h.t.port))
}

// db reads the file afresh, so a key recorded by an earlier attempt (or
// another process) counts; a missing file is an empty database.
func (h hostKeys) db() (ssh.HostKeyCallback, error) {
	cb, err := knownhosts.New(h.cfg.KnownHostsPath)
	if errors.Is(err, fs.ErrNotExist) {
		return knownhosts.New()
	}
	return cb, err
}

// algorithms lists the host key algorithms of the keys known_hosts holds
// for the host, so that a server with several host keys presents one we
// can check instead of a key of another type (which knownhosts would
// report as a mismatch). It is nil when the host is unknown.
func (h hostKeys) algorithms() []string {
	cb, err := h.db()
	if err != nil {
		return nil
	}
	// Ask about a throwaway key: the error lists the keys that would match.
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil
	}
	probe, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if err := cb(h.addr(), &net.TCPAddr{IP: net.IPv4zero}, probe.PublicKey()); !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, k := range ke.Want {
		for _, a := range algorithmsFor(k.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// algorithmsFor maps a key type to the signature algorithms that prove it.
func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// newHostKey is a key accepted for a host known_hosts did not list, not
// recorded yet.
type newHostKey struct {
	hostname string
	key      ssh.PublicKey
}

// callback checks the server's key. A refusal is also stored in *failed,
// so that Dial can report it with its own code whatever the handshake
// makes of the error; a new key accepted is stored in *accepted.
func (h hostKeys) callback(failed **Error, accepted **newHostKey) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		isNew, err := h.check(hostname, remote, key)
		if err != nil {
			*failed = err
			return err
		}
		if isNew {
			*accepted = &newHostKey{hostname: hostname, key: key}
		}
		return nil
	}
}

// check checks the server's key; isNew reports a key of an unknown host
// accepted with AcceptNewHostKey, which nothing has recorded yet.
func (h hostKeys) check(hostname string, remote net.Addr, key ssh.PublicKey) (isNew bool, _ *Error) {
	fp := ssh.FingerprintSHA256(key)
	cb, err := h.db()
	if err != nil {
		return false, h.t.newError(api.CodeSSHConnectionFailed, err,
			"fix or remove the known_hosts file "+h.cfg.KnownHostsPath,
			"cannot read known_hosts for %s", h.t)
	}
	err = cb(hostname, remote, key)
	if err == nil {
		return false, nil
	}
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &ke) && len(ke.Want) == 0:
		if !h.cfg.AcceptNewHostKey {
			e := h.t.newError(api.CodeSSHConnectionFailed, ErrUnknownHostKey,
				fmt.Sprintf("check the fingerprint %s with the host's owner, then accept it (--accept-new-host-key); it will be recorded in %s", fp, h.cfg.KnownHostsPath),
				"host key of %s (%s %s) is not in %s", h.t, key.Type(), fp, h.cfg.KnownHostsPath)
			e.API = e.API.With("fingerprint", fp)
			return false, e
		}
		// Accepted for this connection only: Client.RecordHostKey writes
		// it down once the caller knows the node is wanted.
		h.cfg.Logger.Info("accepted new host key", "host", h.t.host, "port", h.t.port,
			"type", key.Type(), "fingerprint", fp)
		return true, nil
	case errors.As(err, &ke), errors.As(err, &re):
		known := ""
		if ke != nil && len(ke.Want) > 0 {
			known = fmt.Sprintf(" (known key at %s:%d)", ke.Want[0].Filename, ke.Want[0].Line)
		}
		what := "changed"
		if re != nil {
			what = "is revoked"
		}
		e := h.t.newError(api.CodeHostKeyMismatch, err,
			fmt.Sprintf("someone may be intercepting the connection; if the host was reinstalled, remove its old key with: ssh-keygen -R %s -f %s",
				Quote(knownhosts.Normalize(h.addr())), Quote(h.cfg.KnownHostsPath)),
			"host key of %s %s: got %s %s%s", h.t, what, key.Type(), fp, known)
		e.API = e.API.With("fingerprint", fp)
		return false, e
	default:
		return false, h.t.newError(api.CodeSSHConnectionFailed, err, "", "cannot check the host key of %s", h.t)
	}
}

// record writes down an accepted key, unless known_hosts lists it by now
// (another process, or an earlier connection, recorded it). A different
// key recorded meanwhile is HOST_KEY_MISMATCH, as at a connection.
func (h hostKeys) record(k *newHostKey) *Error {
	fp := ssh.FingerprintSHA256(k.key)
	isNew, e := h.check(k.hostname, &net.TCPAddr{IP: net.IPv4zero}, k.key)
	switch {
	case e != nil:
		return e
	case !isNew:
		return nil
	}
	if err := h.appendLine(k.hostname, k.key); err != nil {
		return h.t.newError(api.CodeSSHConnectionFailed, err,
			"make "+h.cfg.KnownHostsPath+" writable",
			"cannot record the host key of %s", h.t)
	}
	h.cfg.Logger.Info("recorded new host key", "host", h.t.host, "port", h.t.port,
		"type", k.key.Type(), "fingerprint", fp, "known_hosts", h.cfg.KnownHostsPath)
	return nil
}

// appendLine appends a known_hosts line for the host. One small O_APPEND
// write keeps concurrent recorders from interleaving.
func (h hostKeys) appendLine(hostname string, key ssh.PublicKey) error {
	path := h.cfg.KnownHostsPath
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key) + "\n"
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err != nil && err != io.EOF {
			f.Close()
			return err
		}
		if last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
