package pool

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAdvertiseHost: worker URLs carry the host other machines reach the
// node by: AdvertiseHost when set (a hive on 0.0.0.0 started over SSH),
// else the worker or hive host.
func TestAdvertiseHost(t *testing.T) {
	cases := []struct {
		name                        string
		host, workerHost, advertise string
		want                        string
	}{
		{"explicit beats all", "0.0.0.0", "0.0.0.0", "node.lan", "node.lan"},
		{"explicit beats a worker host", "127.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.3"},
		{"worker host", "127.0.0.1", "10.0.0.2", "", "10.0.0.2"},
		{"hive host", "127.0.0.1", "", "", "127.0.0.1"},
	}
	self, err := os.Executable()
	require.NoError(t, err)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := New(Config{Home: t.TempDir(), Host: c.host, WorkerHost: c.workerHost, AdvertiseHost: c.advertise,
				Token: testToken, Devices: []Device{}, Binary: self})
			require.NoError(t, err)
			t.Cleanup(func() { _ = h.Close() })
			assert.Equal(t, c.want, h.advertiseHost)
		})
	}
}
