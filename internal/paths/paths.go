// Package paths says where rbee keeps its state: RBEE_HOME, or ~/.rbee.
package paths

import (
	"fmt"
	"os"
	"path/filepath"
)

// Home returns rbee's state directory: $RBEE_HOME when set, else ~/.rbee.
func Home() (string, error) {
	if h := os.Getenv("RBEE_HOME"); h != "" {
		return filepath.Abs(h)
	}
	u, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory (set RBEE_HOME): %w", err)
	}
	return filepath.Join(u, ".rbee"), nil
}

// The files and folders under the home directory.
func QueenDB(home string) string   { return filepath.Join(home, "beehives.db") }
func HiveDB(home string) string    { return filepath.Join(home, "models.db") }
func ModelsDir(home string) string { return filepath.Join(home, "models") }
func LogsDir(home string) string   { return filepath.Join(home, "logs") }
func RunDir(home string) string    { return filepath.Join(home, "run") }

// Ensure creates the home directory and its folders (0700: they hold tokens and logs).
func Ensure(home string) error {
	for _, d := range []string{home, ModelsDir(home), LogsDir(home), RunDir(home)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	return nil
}
