package httpx

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// APIKeyEnv is the environment variable every daemon and the keeper read
// their bearer token from.
const APIKeyEnv = "RBEE_API_KEY"

// ReadAPIKey returns a daemon's API key: the contents of file when one is
// given, else env (trimmed; it may be empty, which serves loopback only).
// A token file must be readable by its owner only (mode 0600 or
// 0400); anything wider is refused. Messages never contain the token.
func ReadAPIKey(file, env string) (string, error) {
	if file == "" {
		return strings.TrimSpace(env), nil
	}
	st, err := os.Stat(file)
	if err != nil {
		return "", fmt.Errorf("API key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("API key file %s is not a regular file", file)
	}
	if perm := st.Mode().Perm(); perm&^0o600 != 0 {
		return "", fmt.Errorf("API key file %s has mode %04o; it must be 0600 (chmod 600 %s)", file, perm, file)
	}
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("API key file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("API key file: %w", err)
	}
	key := strings.TrimSpace(string(b))
	switch {
	case key == "":
		return "", fmt.Errorf("API key file %s is empty", file)
	case strings.ContainsAny(key, " \t\r\n"):
		return "", fmt.Errorf("API key file %s holds more than one word; it must hold only the key", file)
	}
	return key, nil
}
