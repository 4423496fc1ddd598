package sshx

import (
	"testing"

	"rbee/internal/sshtest"
)

// BenchmarkRun measures one command round trip over an open connection
// to a local sshd.
func BenchmarkRun(b *testing.B) {
	s := sshtest.Start(b)
	c, err := Dial(b.Context(), Config{Host: s.Host, Port: s.Port, User: s.User, KeyPath: s.ClientKeyPath,
		KnownHostsPath: s.KnownHostsPath, DisableAgent: true})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for b.Loop() {
		if err := c.Run(b.Context(), Cmd{Argv: []string{"true"}}); err != nil {
			b.Fatal(err)
		}
	}
}
