// Package sshx is how the queen reaches remote nodes: an SSH client built
// on golang.org/x/crypto/ssh that authenticates with key files or
// ssh-agent, checks host keys against known_hosts, retries connecting
// (docs/architecture.md, "Retries and timeouts"), and offers just what starting and stopping a hive needs.
//
// # Connecting
//
// [Dial] takes a [Config] and returns a [Client]. Failures are *[Error]
// values that carry an *api.Error (codes SSH_CONNECTION_FAILED,
// SSH_AUTH_FAILED, HOST_KEY_MISMATCH, with details {host, port, hint})
// and wrap their cause. An unknown host is refused unless
// Config.AcceptNewHostKey is set, which accepts its key for that
// connection; [Client.RecordHostKey] then writes it to known_hosts, once
// the caller knows it keeps the host. A changed key is always refused.
//
// # Running things
//
// Commands are argv, never strings: [Client.Run] and [Client.Output] run
// one and stream its output; [Client.Upload] writes a file atomically with
// a given mode; [Client.StartDetached] starts a process that outlives the
// connection and returns its pid, [Client.Alive] and [Client.Stop] watch
// and end it; [Client.Forward] opens a local tunnel to an address on the
// node; [Client.Uname] tells the node's platform in Go's names.
//
// Every word is quoted with [Quote] (POSIX single quotes), so nothing from
// a registry field or request can inject shell syntax. Secrets never go
// on a command line: environment variables travel over the session's
// standard input (Cmd.Env, StartDetached's env), and files are written
// with Upload under umask 077. The remote login shell must be a POSIX
// shell.
package sshx
