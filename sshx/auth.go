package sshx

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"rbee/api"
)

// keys holds the signers one Dial offers, and the agent connection that
// some of them sign through (closed when the Dial is over).
type keys struct {
	signers []ssh.Signer
	agent   net.Conn
}

func (k *keys) close() {
	if k.agent != nil {
		k.agent.Close()
	}
}

// add appends signers whose public key is not offered yet.
func (k *keys) add(ss ...ssh.Signer) {
	for _, s := range ss {
		dup := false
		for _, have := range k.signers {
			if bytes.Equal(have.PublicKey().Marshal(), s.PublicKey().Marshal()) {
				dup = true
				break
			}
		}
		if !dup {
			k.signers = append(k.signers, s)
		}
	}
}

// loadKeys gathers the keys for cfg: KeyPath first, then the agent's keys,
// then (without KeyPath) the default key files. Problems with KeyPath are
// errors; an unreachable agent is only logged unless nothing else is left.
func loadKeys(cfg Config, t target) (*keys, error) {
	k := &keys{}
	agentSigners, agentErr := agentKeys(cfg, k)
	if agentErr != nil {
		cfg.Logger.Warn("ssh-agent unavailable", "socket", cfg.AgentSocket, "error", agentErr)
	}

	if cfg.KeyPath != "" {
		s, err := keyFile(cfg, agentSigners)
		if err != nil {
			k.close()
			return nil, t.keyError(cfg.KeyPath, err)
		}
		k.add(s...)
	}
	k.add(agentSigners...)
	if cfg.KeyPath == "" {
		k.add(defaultKeys(cfg)...)
	}
	if len(k.signers) == 0 {
		k.close()
		cause := ErrNoKeys
		if agentErr != nil {
			cause = fmt.Errorf("%w (ssh-agent: %v)", ErrNoKeys, agentErr)
		}
		return nil, t.newError(api.CodeSSHAuthFailed, cause,
			"give the node an ssh_key_path, or load a key into ssh-agent (ssh-add) and set SSH_AUTH_SOCK",
			"no SSH key for %s", t)
	}
	return k, nil
}

// keyError turns a problem with the key file into SSH_AUTH_FAILED.
func (t target) keyError(path string, err error) *Error {
	hint := "check ssh_key_path: it must name a readable private key (ed25519, RSA or ECDSA)"
	if errors.Is(err, ErrEncryptedKey) {
		hint = fmt.Sprintf("the key is encrypted: load it into ssh-agent (ssh-add %s) and set SSH_AUTH_SOCK, or use a key without a passphrase", path)
	}
	return t.newError(api.CodeSSHAuthFailed, err, hint, "cannot use SSH key %s for %s", path, t)
}

// keyFile reads cfg.KeyPath. An encrypted key is opened with
// cfg.Passphrase, or else used through the agent when the agent holds it.
func keyFile(cfg Config, agentSigners []ssh.Signer) ([]ssh.Signer, error) {
	data, err := os.ReadFile(cfg.KeyPath)
	if err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(data)
	if err == nil {
		return []ssh.Signer{s}, nil
	}
	var missing *ssh.PassphraseMissingError
	if !errors.As(err, &missing) {
		return nil, err
	}
	if cfg.Passphrase != nil {
		pass, err := cfg.Passphrase()
		if err != nil {
			return nil, fmt.Errorf("passphrase: %w", err)
		}
		s, err := ssh.ParsePrivateKeyWithPassphrase(data, pass)
		if err != nil {
			return nil, err
		}
		return []ssh.Signer{s}, nil
	}
	// An encrypted key that the agent holds: offer the agent's copy.
	if missing.PublicKey != nil {
		want := missing.PublicKey.Marshal()
		for _, as := range agentSigners {
			if bytes.Equal(as.PublicKey().Marshal(), want) {
				return []ssh.Signer{as}, nil
			}
		}
	}
	return nil, ErrEncryptedKey
}

// agentKeys connects to the agent, if there is one, and lists its keys;
// the connection is kept in k until the Dial ends.
func agentKeys(cfg Config, k *keys) ([]ssh.Signer, error) {
	if cfg.AgentSocket == "" {
		return nil, nil
	}
	conn, err := net.DialTimeout("unix", cfg.AgentSocket, 2*time.Second)
	if err != nil {
		return nil, err
	}
	signers, err := agent.NewClient(conn).Signers()
	if err != nil {
		conn.Close()
		return nil, err
	}
	k.agent = conn
	return signers, nil
}

// defaultKeys reads the usual key files that exist and need no passphrase.
func defaultKeys(cfg Config) []ssh.Signer {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil
	}
	var out []ssh.Signer
	for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		data, err := os.ReadFile(filepath.Join(home, ".ssh", name))
		if err != nil {
			continue
		}
		s, err := ssh.ParsePrivateKey(data)
		if err != nil {
			cfg.Logger.Debug("skipping default key", "file", name, "error", err)
			continue
		}
		out = append(out, s)
	}
	return out
}
