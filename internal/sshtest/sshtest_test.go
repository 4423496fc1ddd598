package sshtest

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// dial connects with x/crypto directly, checking the host key against
// knownHosts.
func dial(t *testing.T, addr, user, knownHosts string, hostKeyAlgos []string, signers ...ssh.Signer) (*ssh.Client, error) {
	t.Helper()
	cb, err := knownhosts.New(knownHosts)
	require.NoError(t, err)
	return ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User:              user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback:   cb,
		HostKeyAlgorithms: hostKeyAlgos,
		Timeout:           5 * time.Second,
	})
}

func output(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	s, err := c.NewSession()
	require.NoError(t, err)
	defer s.Close()
	out, err := s.Output(cmd)
	require.NoError(t, err)
	return string(out)
}

func TestStartServesTheClientKey(t *testing.T) {
	s := Start(t)
	assert.Equal(t, "127.0.0.1", s.Host)
	assert.NotZero(t, s.Port)
	c, err := dial(t, s.Addr(), s.User, s.KnownHostsPath, nil, s.ClientKey.Signer)
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, "hello\n", output(t, c, "echo hello"))
	assert.Equal(t, s.User+"\n", output(t, c, "id -un"))

	// The key file on disk is the same key, unencrypted.
	data, err := os.ReadFile(s.ClientKeyPath)
	require.NoError(t, err)
	signer, err := ssh.ParsePrivateKey(data)
	require.NoError(t, err)
	assert.Equal(t, s.ClientKey.PublicKey().Marshal(), signer.PublicKey().Marshal())
}

func TestStartRefusesOtherKeysUntilAuthorized(t *testing.T) {
	s := Start(t)
	other := NewKey(t, ECDSA, "")
	_, err := dial(t, s.Addr(), s.User, s.KnownHostsPath, nil, other.Signer)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unable to authenticate")

	s.Authorize(t, other.PublicKey())
	c, err := dial(t, s.Addr(), s.User, s.KnownHostsPath, nil, other.Signer)
	require.NoError(t, err)
	c.Close()
}

func TestStartWithSeveralHostKeys(t *testing.T) {
	s := StartWith(t, Options{HostKeyTypes: []KeyType{Ed25519, RSA}})
	require.Len(t, s.HostKeys, 2)
	lines, err := os.ReadFile(s.KnownHostsPath)
	require.NoError(t, err)
	assert.Equal(t, 2, strings.Count(string(lines), "\n"))
	for _, algo := range []string{ssh.KeyAlgoED25519, ssh.KeyAlgoRSASHA256} {
		c, err := dial(t, s.Addr(), s.User, s.KnownHostsPath, []string{algo}, s.ClientKey.Signer)
		require.NoError(t, err, algo)
		c.Close()
	}
}

func TestEmptyKnownHostsRefusesTheServer(t *testing.T) {
	s := Start(t)
	p := s.EmptyKnownHosts(t)
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Empty(t, data)
	_, err = dial(t, s.Addr(), s.User, p, nil, s.ClientKey.Signer)
	var ke *knownhosts.KeyError
	require.ErrorAs(t, err, &ke)
	assert.Empty(t, ke.Want)
}

func TestNewKey(t *testing.T) {
	for _, typ := range []KeyType{Ed25519, RSA, ECDSA} {
		t.Run(string(typ), func(t *testing.T) {
			k := NewKey(t, typ, "")
			data, err := os.ReadFile(k.Path)
			require.NoError(t, err)
			s, err := ssh.ParsePrivateKey(data)
			require.NoError(t, err)
			assert.Equal(t, k.PublicKey().Marshal(), s.PublicKey().Marshal())
			assert.Equal(t, string(typ), map[string]string{
				ssh.KeyAlgoED25519: "ed25519", ssh.KeyAlgoRSA: "rsa", ssh.KeyAlgoECDSA256: "ecdsa",
			}[s.PublicKey().Type()])
		})
	}
}

// TestNewKeyEncrypted checks one type: encryption does not depend on it,
// and its key derivation is slow under the race detector.
func TestNewKeyEncrypted(t *testing.T) {
	for _, typ := range []KeyType{Ed25519} {
		t.Run(string(typ), func(t *testing.T) {
			k := NewKey(t, typ, "secret")
			data, err := os.ReadFile(k.Path)
			require.NoError(t, err)
			_, err = ssh.ParsePrivateKey(data)
			var missing *ssh.PassphraseMissingError
			require.ErrorAs(t, err, &missing)
			s, err := ssh.ParsePrivateKeyWithPassphrase(data, []byte("secret"))
			require.NoError(t, err)
			assert.Equal(t, k.PublicKey().Marshal(), s.PublicKey().Marshal())
			st, err := os.Stat(k.Path)
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
		})
	}
}

func TestFake(t *testing.T) {
	client := NewKey(t, Ed25519, "")

	t.Run("accept", func(t *testing.T) {
		f := StartFake(t, FakeOptions{AuthorizedKeys: []ssh.PublicKey{client.PublicKey()}})
		c, err := dial(t, f.Addr(), "anyone", f.KnownHostsPath, nil, client.Signer)
		require.NoError(t, err)
		defer c.Close()
		assert.Equal(t, "uname -sm\n", output(t, c, "uname -sm"))
		assert.Equal(t, 1, f.Conns())
	})
	t.Run("reject auth", func(t *testing.T) {
		f := StartFake(t, FakeOptions{Mode: FakeRejectAuth, AuthorizedKeys: []ssh.PublicKey{client.PublicKey()}})
		_, err := dial(t, f.Addr(), "anyone", f.KnownHostsPath, nil, client.Signer)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "unable to authenticate")
	})
	t.Run("stall", func(t *testing.T) {
		f := StartFake(t, FakeOptions{Mode: FakeStall})
		c, err := net.Dial("tcp", f.Addr())
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
		n, err := c.Read(make([]byte, 1))
		assert.Zero(t, n)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		assert.True(t, ne.Timeout())
	})
	t.Run("given host key", func(t *testing.T) {
		hk := NewKey(t, ECDSA, "")
		f := StartFake(t, FakeOptions{HostKey: hk.Signer, AuthorizedKeys: []ssh.PublicKey{client.PublicKey()}})
		assert.Equal(t, hk.PublicKey().Marshal(), f.HostPublicKey.Marshal())
		c, err := dial(t, f.Addr(), "anyone", f.KnownHostsPath, nil, client.Signer)
		require.NoError(t, err)
		c.Close()
	})
}
