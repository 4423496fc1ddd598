package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/hashicorp/go-hclog"

	"rbee/api"
	"rbee/internal/config"
	"rbee/internal/httpx"
	"rbee/sshx"
)

// remotes reaches registry nodes over SSH: it keeps one connection per
// node (dialled again when it has died), the tunnels of nodes in tunnel
// mode, and the hives this queen started on nodes, so that it can stop
// them (whoever started a process stops it).
//
// A remote hive is started as
//
//	<binary_path> hive --host H --port <hive_port> --home <install_path>/home
//	    --worker-port-start <RemoteWorkerPortStart> --log-file <install_path>/logs/hive.log
//	    [--advertise-host <ssh_host>]
//
// detached from the SSH session, logging to <install_path>/logs/hive.log
// (which --log-file tells it, so that GET /v1/logs serves it),
// with RBEE_API_KEY (the node's token, made by the queen and kept in its
// registry), RBEE_CHILD=1 and the queen's allowed hosts and origins
// (RBEE_ALLOWED_HOSTS, RBEE_ALLOWED_ORIGINS) in its environment, which
// travels over the session's standard input, never on a command line. H is 0.0.0.0, and
// worker URLs carry the node's ssh_host; in tunnel mode H is 127.0.0.1 and
// the queen forwards the hive's port, and each worker's, over the SSH
// connection.
type remotes struct {
	cfg   Config
	log   hclog.Logger
	store *store
	http  *http.Client
	locks keyedLocks // one dial per node at a time

	mu     sync.Mutex
	conns  map[string]*nodeConn
	hives  map[string]*remoteHive // by node name
	tunnel map[string]bool        // nodes last seen in tunnel mode
	closed bool
}

// nodeConn is the SSH connection to one node and its tunnels.
type nodeConn struct {
	id  string // what it was dialled with: a changed registry row dials anew
	c   *sshx.Client
	fwd map[string]string // remote host:port → local 127.0.0.1:port
}

// remoteHive is a hive this queen started over SSH.
type remoteHive struct {
	node  api.Node
	pid   int
	token string
	log   string // its log file on the node
}

func newRemotes(cfg Config, log hclog.Logger, st *store, hc *http.Client) *remotes {
	return &remotes{cfg: cfg, log: log, store: st, http: hc,
		conns: map[string]*nodeConn{}, hives: map[string]*remoteHive{}, tunnel: map[string]bool{}}
}

// sshConfig is how the queen dials a node.
func (r *remotes) sshConfig(n api.Node, acceptNew bool) sshx.Config {
	return sshx.Config{Host: n.SSHHost, Port: n.SSHPort, User: n.SSHUser, KeyPath: n.SSHKeyPath,
		KnownHostsPath: r.cfg.KnownHostsPath, AcceptNewHostKey: acceptNew,
		Timeout: r.cfg.SSHTimeout, RetryDelays: r.cfg.SSHRetryDelays, Logger: r.log.Named("ssh")}
}

func connID(n api.Node) string {
	return n.SSHUser + "@" + net.JoinHostPort(n.SSHHost, strconv.Itoa(n.SSHPort)) + "|" + n.SSHKeyPath
}

// dial opens a new connection (not kept): add-node's test.
func (r *remotes) dial(ctx context.Context, n api.Node, acceptNew bool) (*sshx.Client, error) {
	c, err := sshx.Dial(ctx, r.sshConfig(n, acceptNew))
	if err != nil {
		return nil, nodeSSHError(n.Name, err)
	}
	return c, nil
}

// nodeSSHError adds the node to an SSH failure's details.
func nodeSSHError(node string, err error) error {
	var e *api.Error
	if errors.As(err, &e) {
		return e.With("node", node)
	}
	return err
}

// conn returns the node's connection, dialling it when there is none, it
// has died, or the node's SSH settings changed.
func (r *remotes) conn(ctx context.Context, n api.Node) (*sshx.Client, error) {
	unlock, err := r.locks.lock(ctx, n.Name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	id := connID(n)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, shuttingDown()
	}
	nc := r.conns[n.Name]
	r.mu.Unlock()
	if nc != nil {
		select {
		case <-nc.c.Done():
		default:
			if nc.id == id {
				return nc.c, nil
			}
		}
		r.drop(n.Name, nc)
	}
	c, err := r.dial(ctx, n, false)
	if err != nil {
		return nil, err
	}
	r.log.Debug("connected over SSH", "node", n.Name, "to", c.String())
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close()
		return nil, shuttingDown()
	}
	r.conns[n.Name] = &nodeConn{id: id, c: c, fwd: map[string]string{}}
	return c, nil
}

// adopt keeps a connection dialled for add-node as the node's connection.
func (r *remotes) adopt(n api.Node, c *sshx.Client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.conns[n.Name] != nil {
		c.Close()
		return
	}
	r.conns[n.Name] = &nodeConn{id: connID(n), c: c, fwd: map[string]string{}}
}

// drop closes a connection (and its tunnels) if it is still the node's.
func (r *remotes) drop(node string, nc *nodeConn) {
	r.mu.Lock()
	if r.conns[node] == nc {
		delete(r.conns, node)
	}
	r.mu.Unlock()
	nc.c.Close()
}

// forget closes the node's connection: it was removed from the registry.
func (r *remotes) forget(node string) {
	r.mu.Lock()
	nc := r.conns[node]
	delete(r.conns, node)
	delete(r.tunnel, node)
	r.mu.Unlock()
	if nc != nil {
		nc.c.Close()
	}
}

// forward returns a local address that reaches remoteAddr as the node sees
// it, through the node's SSH connection; tunnels are kept per connection.
func (r *remotes) forward(ctx context.Context, n api.Node, remoteAddr string) (string, error) {
	c, err := r.conn(ctx, n)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	nc := r.conns[n.Name]
	if nc != nil && nc.c == c {
		if local, ok := nc.fwd[remoteAddr]; ok {
			r.mu.Unlock()
			return local, nil
		}
	}
	r.mu.Unlock()
	// The tunnel lives as long as the connection, not as this call.
	local, _, err := c.Forward(context.WithoutCancel(ctx), remoteAddr)
	if err != nil {
		return "", api.Errorf(api.CodeSSHConnectionFailed, "cannot open an SSH tunnel to %s on %s: %v", remoteAddr, n.Name, err).
			With("node", n.Name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if nc := r.conns[n.Name]; nc != nil && nc.c == c {
		if have, ok := nc.fwd[remoteAddr]; ok {
			return have, nil // another caller won; ours closes with the connection
		}
		nc.fwd[remoteAddr] = local
	}
	r.log.Debug("SSH tunnel opened", "node", n.Name, "remote", remoteAddr, "local", local)
	return local, nil
}

// hiveURL is where the queen reaches the node's hive: ssh_host:hive_port,
// or, in tunnel mode, the local end of a tunnel to 127.0.0.1:hive_port.
func (r *remotes) hiveURL(ctx context.Context, n api.Node) (string, error) {
	r.mu.Lock()
	r.tunnel[n.Name] = n.Tunnel
	r.mu.Unlock()
	if !n.Tunnel {
		return "http://" + net.JoinHostPort(n.SSHHost, strconv.Itoa(n.HivePort)), nil
	}
	local, err := r.forward(ctx, n, net.JoinHostPort("127.0.0.1", strconv.Itoa(n.HivePort)))
	if err != nil {
		return "", err
	}
	return "http://" + local, nil
}

// workerURL maps a worker URL a hive gave to one the queen can call: as
// is, or for a node in tunnel mode, through a tunnel to the worker's port.
func (r *remotes) workerURL(ctx context.Context, node, raw string) (string, error) {
	r.mu.Lock()
	tunnel := r.tunnel[node]
	r.mu.Unlock()
	if !tunnel {
		return raw, nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("worker URL %q", raw)
	}
	n, err := r.store.Get(ctx, node)
	if err != nil {
		return "", err
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	local, err := r.forward(ctx, n, net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return "", err
	}
	u.Host = local
	return u.String(), nil
}

// paths of rbee on a node.
func (r *remotes) binaryPath(n api.Node) string {
	return config.RemotePath(r.cfg.RemoteBinaryPath, n.InstallPath, DefaultRemoteBinaryPath)
}

func (r *remotes) gitRepoDir(n api.Node) string {
	return config.RemotePath(r.cfg.RemoteGitRepoDir, n.InstallPath, DefaultRemoteGitRepoDir)
}

func hiveHome(n api.Node) string { return path.Join(n.InstallPath, "home") }
func hiveLog(n api.Node) string  { return path.Join(n.InstallPath, "logs", "hive.log") }

// startHive starts the node's hive over SSH and waits for its health
// (backoff from 100 ms, ×2, capped at 2 s, for HiveStartTimeout), then
// checks its version. A hive this queen started before that no longer
// answers is stopped first.
func (r *remotes) startHive(ctx context.Context, n api.Node, token string, say narrateFunc) (*hiveClient, error) {
	c, err := r.conn(ctx, n)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	stale := r.hives[n.Name]
	delete(r.hives, n.Name)
	r.mu.Unlock()
	if stale != nil {
		r.log.Warn("remote hive stopped answering; restarting it", "node", n.Name, "pid", stale.pid)
		if err := c.Stop(ctx, stale.pid, hiveKillGrace); err != nil {
			r.log.Warn("stopping the old remote hive", "node", n.Name, "pid", stale.pid, "error", err)
		}
	}

	bin := r.binaryPath(n)
	logPath := hiveLog(n)
	if err := c.Run(ctx, sshx.Cmd{Argv: []string{"mkdir", "-p", "--", path.Dir(logPath), hiveHome(n)}}); err != nil {
		return nil, remoteFailure(n.Name, "preparing "+n.InstallPath, err)
	}
	// In tunnel mode the hive and its workers stay on the node's loopback;
	// otherwise they listen everywhere and workers are advertised by the
	// name the queen reaches the node by.
	host := "0.0.0.0"
	if n.Tunnel {
		host = "127.0.0.1"
	}
	argv := []string{bin, "hive", "--host", host, "--port", strconv.Itoa(n.HivePort), "--home", hiveHome(n),
		"--worker-port-start", strconv.Itoa(r.cfg.RemoteWorkerPortStart), "--log-file", logPath}
	if !n.Tunnel {
		argv = append(argv, "--advertise-host", n.SSHHost)
	}
	env := map[string]string{"RBEE_API_KEY": token, "RBEE_CHILD": "1"}
	maps.Copy(env, r.cfg.securityEnv())

	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		return nil, shuttingDown()
	}
	// The start is not cut short by the task's end: a hive started but not
	// recorded would be one nobody stops.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hiveAttemptTimeout)
	pid, err := c.StartDetached(sctx, argv, env, logPath)
	cancel()
	if err != nil {
		var xe *sshx.ExitError
		if errors.As(err, &xe) && xe.Status == 127 {
			return nil, api.Errorf(api.CodeConnectionTimeout, "rbee is not installed on %s: there is no %s", n.Name, bin).
				With("node", n.Name).With("binary", bin).
				WithHint("install it with: rbee setup install --node " + n.Name)
		}
		return nil, remoteFailure(n.Name, "starting rbee-hive", err)
	}
	rh := &remoteHive{node: n, pid: pid, token: token, log: logPath}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = c.Stop(context.WithoutCancel(ctx), pid, hiveKillGrace)
		return nil, shuttingDown()
	}
	r.hives[n.Name] = rh
	r.mu.Unlock()
	r.log.Info("started remote hive", "node", n.Name, "pid", pid, "port", n.HivePort, "binary", bin,
		"token", httpx.Fingerprint(token), "log", logPath, "tunnel", n.Tunnel)
	via := ""
	if n.Tunnel {
		via = ", reached through an SSH tunnel,"
	}
	say.say("hive_start", "Starting rbee-hive on %s over SSH%s (port %d, pid %d)", n.Name, via, n.HivePort, pid)

	hiveURL, err := r.hiveURL(ctx, n)
	if err != nil {
		return nil, err
	}
	h := &hiveClient{node: n.Name, url: hiveURL, c: &httpx.Client{BaseURL: hiveURL, Token: token, HTTP: r.http}}
	hh, err := r.waitHealthy(ctx, c, h, rh)
	if err == nil {
		if verr := checkVersion(n.Name, hh.Version); verr != nil {
			return nil, verr
		}
		say.say("hive_ready", "rbee-hive on %s is up (version %s)", n.Name, hh.Version)
		return h, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	details := func(e *api.Error) *api.Error {
		return e.With("node", n.Name).With("log", logPath).
			WithHint(fmt.Sprintf("%s (see %s on %s)", hiveHint(n.Name), logPath, n.Name))
	}
	if errors.Is(err, errHiveExited) {
		r.mu.Lock()
		if r.hives[n.Name] == rh {
			delete(r.hives, n.Name)
		}
		r.mu.Unlock()
		return nil, details(api.Errorf(api.CodeInternal, "rbee-hive on %s exited while starting: %s",
			n.Name, r.lastLogLine(ctx, c, logPath)))
	}
	return nil, details(api.Errorf(api.CodeConnectionTimeout, "rbee-hive on %s did not answer within %s of its start: %s",
		n.Name, r.cfg.HiveStartTimeout, shortNetErr(err)))
}

// waitHealthy polls a hive just started until it answers; it fails with
// errHiveExited as soon as its process is gone.
func (r *remotes) waitHealthy(ctx context.Context, c *sshx.Client, h *hiveClient, rh *remoteHive) (api.HiveHealth, error) {
	sctx, cancel := context.WithTimeout(ctx, r.cfg.HiveStartTimeout)
	defer cancel()
	var lastErr error
	op := func() (api.HiveHealth, error) {
		actx, acancel := context.WithTimeout(sctx, startBackoffMax)
		hh, err := h.health(actx)
		acancel()
		if err == nil && hh.Version == "" {
			err = fmt.Errorf("the answer at %s is not an rbee-hive health report", h.url)
		}
		if err == nil {
			return hh, nil
		}
		lastErr = err
		if alive, aerr := c.Alive(sctx, rh.pid); aerr == nil && !alive {
			return hh, backoff.Permanent(errHiveExited)
		}
		return hh, err
	}
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(startBackoffFirst), backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0), backoff.WithMaxInterval(startBackoffMax), backoff.WithMaxElapsedTime(0))
	hh, err := backoff.RetryWithData(op, backoff.WithContext(b, sctx))
	if err != nil && !errors.Is(err, errHiveExited) && lastErr != nil {
		err = lastErr
	}
	return hh, err
}

// lastLogLine reads the last line of a log file on the node.
func (r *remotes) lastLogLine(ctx context.Context, c *sshx.Client, logPath string) string {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	out, err := c.Output(lctx, "tail", "-n", "20", "--", logPath)
	if err != nil {
		return "its log cannot be read"
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	line := strings.TrimSpace(lines[len(lines)-1])
	if line == "" {
		return "its log is empty"
	}
	if len(line) > 300 {
		line = line[:300]
	}
	return line
}

// remoteFailure reports a command on a node that failed: an SSH failure
// keeps its code; a command that ran and failed is INTERNAL naming the
// step, its status and the end of its output.
func remoteFailure(node, step string, err error) error {
	var e *api.Error
	if errors.As(err, &e) {
		return e.With("node", node).With("step", step)
	}
	var xe *sshx.ExitError
	if errors.As(err, &xe) {
		out := strings.TrimSpace(xe.Stderr)
		e := api.Errorf(api.CodeInternal, "%s on %s failed: %v", step, node, xe).
			With("node", node).With("step", step).With("exit_status", xe.Status)
		if out != "" {
			e = e.With("output", tailLines(out, 20))
		}
		return e
	}
	return api.Errorf(api.CodeInternal, "%s on %s failed: %v", step, node, err).With("node", node).With("step", step)
}

// tailLines keeps the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// close stops every hive this queen started over SSH, in parallel (each is
// asked to shut down, which stops its workers; if it has not exited after
// hiveStopTimeout it gets SIGTERM, then SIGKILL over SSH), then closes
// every connection. Later starts are refused.
func (r *remotes) close(ctx context.Context) {
	r.mu.Lock()
	r.closed = true
	hives := make([]*remoteHive, 0, len(r.hives))
	for _, h := range r.hives {
		hives = append(hives, h)
	}
	r.hives = map[string]*remoteHive{}
	r.mu.Unlock()

	var wg sync.WaitGroup
	for _, rh := range hives {
		wg.Go(func() { r.stopHive(ctx, rh) })
	}
	wg.Wait()

	r.mu.Lock()
	conns := r.conns
	r.conns = map[string]*nodeConn{}
	r.mu.Unlock()
	for _, nc := range conns {
		nc.c.Close()
	}
}

// stopHive stops one remote hive this queen started.
func (r *remotes) stopHive(ctx context.Context, rh *remoteHive) {
	n := rh.node
	log := r.log.With("node", n.Name, "pid", rh.pid)
	c, err := r.liveConn(ctx, n)
	if err != nil {
		log.Error("cannot reach the node to stop its hive", "error", err)
		return
	}
	alive, err := c.Alive(ctx, rh.pid)
	if err == nil && !alive {
		log.Info("remote hive already gone")
		return
	}
	grace := hiveKillGrace
	if err := r.askShutdown(ctx, c, rh); err != nil {
		log.Warn("remote hive refused to shut down; sending SIGTERM", "error", err)
	} else {
		log.Info("asked the remote hive to shut down")
		if gone := r.waitGone(ctx, c, rh.pid, hiveStopTimeout); gone {
			log.Info("remote hive stopped")
			return
		}
		log.Warn("remote hive did not exit in time; sending SIGTERM")
	}
	if err := c.Stop(ctx, rh.pid, grace); err != nil {
		log.Error("stopping the remote hive", "error", err)
		return
	}
	log.Info("remote hive stopped")
}

// liveConn returns the node's connection, dialling again if it died (the
// close path, after r.closed is set).
func (r *remotes) liveConn(ctx context.Context, n api.Node) (*sshx.Client, error) {
	r.mu.Lock()
	nc := r.conns[n.Name]
	r.mu.Unlock()
	if nc != nil {
		select {
		case <-nc.c.Done():
		default:
			return nc.c, nil
		}
	}
	c, err := r.dial(ctx, n, false)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.conns[n.Name+"\x00stop"] = &nodeConn{c: c, fwd: map[string]string{}} // closed with the others
	r.mu.Unlock()
	return c, nil
}

// askShutdown sends POST /v1/admin/shutdown to a remote hive, through a
// fresh tunnel in tunnel mode (the hive's own may have gone with a dead
// connection).
func (r *remotes) askShutdown(ctx context.Context, c *sshx.Client, rh *remoteHive) error {
	actx, cancel := context.WithTimeout(ctx, hiveAttemptTimeout)
	defer cancel()
	base := "http://" + net.JoinHostPort(rh.node.SSHHost, strconv.Itoa(rh.node.HivePort))
	if rh.node.Tunnel {
		local, closeTunnel, err := c.Forward(actx, net.JoinHostPort("127.0.0.1", strconv.Itoa(rh.node.HivePort)))
		if err != nil {
			return err
		}
		defer closeTunnel()
		base = "http://" + local
	}
	h := &hiveClient{node: rh.node.Name, url: base, c: &httpx.Client{BaseURL: base, Token: rh.token, HTTP: r.http}}
	return h.shutdown(actx)
}

// waitGone polls whether pid still lives on the node, for up to d.
func (r *remotes) waitGone(ctx context.Context, c *sshx.Client, pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		alive, err := c.Alive(ctx, pid)
		if err == nil && !alive {
			return true
		}
		if err != nil || time.Now().After(deadline) {
			return false
		}
		if sleepCtx(ctx, 100*time.Millisecond) != nil {
			return false
		}
	}
}
