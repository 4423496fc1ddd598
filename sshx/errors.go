package sshx

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"rbee/api"
)

// Sentinels for errors.Is on the cause of an [Error].
var (
	// ErrUnknownHostKey: the host is not in known_hosts and the caller did
	// not accept new host keys (code SSH_CONNECTION_FAILED).
	ErrUnknownHostKey = errors.New("sshx: host key is unknown")
	// ErrEncryptedKey: the key file is encrypted and there is neither a
	// passphrase source nor an ssh-agent holding the key (SSH_AUTH_FAILED).
	ErrEncryptedKey = errors.New("sshx: key file is encrypted and no passphrase was given")
	// ErrNoKeys: no key file and no agent key to authenticate with
	// (SSH_AUTH_FAILED).
	ErrNoKeys = errors.New("sshx: no SSH key to authenticate with")
	// ErrAuthRejected: the server refused every key offered (SSH_AUTH_FAILED).
	ErrAuthRejected = errors.New("sshx: the server refused every key")
)

// Error is the error [Dial] and the [Client] methods return when the SSH
// connection itself fails. It carries an *api.Error (code
// SSH_CONNECTION_FAILED, SSH_AUTH_FAILED or HOST_KEY_MISMATCH, details
// {host, port, hint, …}, a message naming host and cause) and wraps the
// cause, so both errors.Is(err, api.ErrSSHAuthFailed) and, for example,
// errors.Is(err, syscall.ECONNREFUSED) hold; errors.As(err, &apiErr) and
// api.AsError give the *api.Error.
type Error struct {
	API      *api.Error
	Cause    error
	Attempts int // connection attempts made; 0 when none was (bad key file)
}

// Error returns the message of the *api.Error, which names the cause.
func (e *Error) Error() string { return e.API.Error() }

// Unwrap returns the *api.Error and the cause.
func (e *Error) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.API}
	}
	return []error{e.API, e.Cause}
}

// target names the remote end in messages.
type target struct {
	user string
	host string
	port int
}

func (t target) String() string {
	return t.user + "@" + t.host + ":" + strconv.Itoa(t.port)
}

// newError builds an *Error for t with code, a message "what: cause" and
// a hint.
func (t target) newError(code api.Code, cause error, hint, format string, a ...any) *Error {
	msg := fmt.Sprintf(format, a...)
	if cause != nil {
		msg += ": " + cause.Error()
	}
	ae := api.Errorf(code, "%s", msg).With("host", t.host).With("port", t.port)
	if hint != "" {
		ae = ae.WithHint(hint)
	}
	return &Error{API: ae, Cause: cause}
}

// ExitError reports a remote command that ran and exited with a non-zero
// status or was killed by a signal.
type ExitError struct {
	Argv   []string
	Status int    // exit status; -1 when killed by a signal or unknown
	Signal string // the signal name ("TERM", "KILL") when killed by one
	Stderr string // the last few KiB of its standard error
}

// Error names the program, the status and the last line of stderr.
func (e *ExitError) Error() string {
	name := "remote command"
	if len(e.Argv) > 0 {
		name += " " + strconv.Quote(e.Argv[0])
	}
	var msg string
	switch {
	case e.Signal != "":
		msg = fmt.Sprintf("%s killed by signal %s", name, e.Signal)
	case e.Status < 0:
		msg = name + " exited without a status"
	default:
		msg = fmt.Sprintf("%s exited with status %d", name, e.Status)
	}
	if last := lastLine(e.Stderr); last != "" {
		msg += ": " + last
	}
	return msg
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\r\n\t ")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

// tail keeps the last max bytes written to it.
type tail struct {
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return n, nil
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

func (t *tail) String() string { return string(t.buf) }
