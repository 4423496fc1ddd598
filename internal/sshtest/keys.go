package sshtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/ssh"
)

// KeyType names a kind of SSH key.
type KeyType string

// The key types GenerateKey makes.
const (
	Ed25519 KeyType = "ed25519"
	RSA     KeyType = "rsa"
	ECDSA   KeyType = "ecdsa"
)

// Key is a generated key pair and its private key file.
type Key struct {
	Type    KeyType
	Path    string // OpenSSH private key file, mode 0600
	Signer  ssh.Signer
	Private crypto.PrivateKey
}

// PublicKey returns the public half.
func (k *Key) PublicKey() ssh.PublicKey { return k.Signer.PublicKey() }

// NewKey generates a key of type typ (RSA: 2048 bits, ECDSA: P-256) and
// writes it to a new file in t's temp dir, encrypted with passphrase when
// it is not empty.
func NewKey(t testing.TB, typ KeyType, passphrase string) *Key {
	t.Helper()
	k, err := GenerateKey(typ)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	path := filepath.Join(t.TempDir(), "id_"+string(typ))
	if err := k.Write(path, passphrase); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	return k
}

// GenerateKey makes a key pair of type typ without writing it.
func GenerateKey(typ KeyType) (*Key, error) {
	var priv crypto.PrivateKey
	var err error
	switch typ {
	case Ed25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case RSA:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case ECDSA:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("unknown key type %q", typ)
	}
	if err != nil {
		return nil, err
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	return &Key{Type: typ, Signer: s, Private: priv}, nil
}

// Write stores the private key at path in OpenSSH format (mode 0600),
// encrypted when passphrase is not empty, and sets k.Path.
func (k *Key) Write(path, passphrase string) error {
	var block *pem.Block
	var err error
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(k.Private, "sshtest")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(k.Private, "sshtest", []byte(passphrase))
	}
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	k.Path = path
	return nil
}
