package rbee

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"rbee/internal/cliutil"
)

type exitErr struct{ code int }

func (e exitErr) Error() string { return fmt.Sprintf("exit %d", e.code) }
func (e exitErr) ExitCode() int { return e.code }

func TestRunChildIgnoresOtherProcesses(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		child string
	}{
		{"no marker", []string{"prog", "hive"}, ""},
		{"marker not 1", []string{"prog", "hive"}, "yes"},
		{"no role", []string{"prog"}, "1"},
		{"other role", []string{"prog", "queen"}, "1"},
		{"program's own command", []string{"prog", "serve", "--port", "80"}, "1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == ChildEnv {
					return tc.child
				}
				return ""
			}
			var stderr bytes.Buffer
			_, ok := runChild(t.Context(), tc.args, getenv, &stderr)
			assert.False(t, ok)
			assert.Empty(t, stderr.String())
		})
	}
}

func TestRunChildRunsTheRole(t *testing.T) {
	getenv := func(k string) string { return map[string]string{ChildEnv: "1"}[k] }
	for _, role := range []string{"hive", "worker"} {
		t.Run(role, func(t *testing.T) {
			var stderr bytes.Buffer
			code, ok := runChild(t.Context(), []string{"prog", role, "--no-such-flag"}, getenv, &stderr)
			assert.True(t, ok)
			assert.Equal(t, 2, code, "a bad flag is a usage error: %s", stderr.String())
			assert.Contains(t, stderr.String(), "rbee "+role+":")
		})
	}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"clean shutdown", nil, 0},
		{"help", cliutil.ErrHelp, 0},
		{"usage", cliutil.Usagef("bad flag"), 2},
		{"own exit code", fmt.Errorf("binding: %w", exitErr{3}), 3},
		{"failure", errors.New("model file is corrupt"), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			assert.Equal(t, tc.want, exitStatus("worker", tc.err, &stderr))
			if tc.want != 0 {
				assert.Contains(t, stderr.String(), tc.err.Error())
			}
		})
	}
}
