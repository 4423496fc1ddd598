package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSecuritySection reads [security] and refuses entries the daemons
// could not use, naming the key.
func TestSecuritySection(t *testing.T) {
	te := newTestEnv(t)
	f, err := Parse("sec.toml", []byte(`
[security]
allowed_hosts = ["gpu-box.example.com", "*.lan", "*"]
allowed_origins = ["http://localhost:3000", "https://*.example.com", "app://*", "*"]
`), te.env())
	require.NoError(t, err)
	assert.Equal(t, []string{"gpu-box.example.com", "*.lan", "*"}, f.Security.AllowedHosts)
	assert.Equal(t, []string{"http://localhost:3000", "https://*.example.com", "app://*", "*"}, f.Security.AllowedOrigins)

	empty, err := Parse("empty.toml", nil, te.env())
	require.NoError(t, err)
	assert.Empty(t, empty.Security.AllowedHosts, "default: no further host")
	assert.Empty(t, empty.Security.AllowedOrigins, "default: no other origin")

	for body, want := range map[string]string{
		"[security]\nallowed_hosts = [\"gpu-box:9200\"]\n":          "security.allowed_hosts",
		"[security]\nallowed_hosts = [\"http://gpu-box\"]\n":        "security.allowed_hosts",
		"[security]\nallowed_origins = [\"localhost:3000\"]\n":      "security.allowed_origins",
		"[security]\nallowed_origins = [\"http://a.b/path\"]\n":     "security.allowed_origins",
		"[security]\nallowed_origins = \"http://localhost:3000\"\n": "allowed_origins",
		"[security]\nallowed_hostnames = [\"x\"]\n":                 "security.allowed_hostnames",
	} {
		_, err := Parse("bad.toml", []byte(body), te.env())
		require.Error(t, err, body)
		assert.ErrorIs(t, err, ErrInvalid, body)
		assert.Contains(t, err.Error(), want, body)
		assert.Contains(t, err.Error(), "bad.toml", body)
	}
}
