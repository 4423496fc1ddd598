package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHiveIdleTimeout(t *testing.T) {
	tests := []struct {
		toml string
		want time.Duration
		bad  bool
	}{
		{"", 0, false},
		{"[hive]\nidle_timeout = \"90s\"\n", 90 * time.Second, false},
		{"[hive]\nidle_timeout = \"1h30m\"\n", 90 * time.Minute, false},
		{"[hive]\nidle_timeout = \"soon\"\n", 0, true},
		{"[hive]\nidle_timeout = \"-5m\"\n", 0, true},
		{"[hive]\nidle_timeout = 300\n", 0, true}, // nanoseconds: surely not meant
		{"[hive]\nidle = \"5m\"\n", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.toml, func(t *testing.T) {
			f, err := Parse("/etc/rbee/config.toml", []byte(tc.toml), Env{UserHome: "/home/u"})
			if tc.bad {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrInvalid)
				assert.Contains(t, err.Error(), "/etc/rbee/config.toml")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, f.Hive.IdleTimeout)
		})
	}
}
