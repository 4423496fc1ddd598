package httpx

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadAPIKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), mode))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	cases := []struct {
		name, file, env, want, wantErr string
	}{
		{"env", "", " env-token-0123456789\n", "env-token-0123456789", ""},
		{"no token", "", "", "", ""},
		{"file 0600 beats env", write("k600", " file-token-0123456789 \n", 0o600), "env-token", "file-token-0123456789", ""},
		{"file 0400", write("k400", "ro-token-0123456789", 0o400), "", "ro-token-0123456789", ""},
		{"file 0644", write("k644", "leaky-token-0123456789", 0o644), "", "", "mode 0644; it must be 0600"},
		{"file 0640", write("k640", "leaky-token-0123456789", 0o640), "", "", "mode 0640"},
		{"file 0604", write("k604", "leaky-token-0123456789", 0o604), "", "", "mode 0604"},
		{"file 0700", write("k700", "exec-token-0123456789", 0o700), "", "", "mode 0700"},
		{"two words", write("two", "a-token-0123456789 another", 0o600), "", "", "more than one word"},
		{"empty file", write("empty", " \n", 0o600), "", "", "empty"},
		{"missing file", filepath.Join(dir, "absent"), "", "", "no such file"},
		{"directory", dir, "", "", "not a regular file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ReadAPIKey(c.file, c.env)
			if c.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), c.wantErr)
				assert.NotContains(t, err.Error(), "token-0123456789", "the token is never in a message")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
}
