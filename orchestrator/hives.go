package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/hashicorp/go-hclog"

	"rbee/api"
	"rbee/internal/hivewire"
	"rbee/internal/httpx"
	"rbee/internal/paths"
	"rbee/internal/proc"
)

// narrateFunc reports a step of a task to its client (nil: nobody listens).
type narrateFunc func(action, human string)

func (n narrateFunc) say(action, format string, a ...any) {
	if n != nil {
		n(action, fmt.Sprintf(format, a...))
	}
}

// hiveClient calls one node's hive.
type hiveClient struct {
	node string
	url  string
	c    *httpx.Client
}

func (h *hiveClient) health(ctx context.Context) (api.HiveHealth, error) {
	var out api.HiveHealth
	err := h.c.Do(ctx, http.MethodGet, "/v1/health", nil, &out)
	return out, err
}

func (h *hiveClient) workers(ctx context.Context) ([]hivewire.Worker, error) {
	var out hivewire.WorkerList
	if err := h.c.Do(ctx, http.MethodGet, "/v1/workers/list", nil, &out); err != nil {
		return nil, err
	}
	return out.Workers, nil
}

func (h *hiveClient) spawn(ctx context.Context, req api.SpawnRequest) (hivewire.Spawned, error) {
	var out hivewire.Spawned
	err := h.c.Do(ctx, http.MethodPost, "/v1/workers/spawn", req, &out)
	return out, err
}

func (h *hiveClient) shutdownWorker(ctx context.Context, id string) error {
	return h.c.Do(ctx, http.MethodPost, "/v1/workers/shutdown", api.WorkerShutdownRequest{WorkerID: id}, nil)
}

func (h *hiveClient) shutdown(ctx context.Context) error {
	return h.c.Do(ctx, http.MethodPost, "/v1/admin/shutdown", nil, nil)
}

// unreachable maps a failure to talk to the hive to the envelope: an
// *api.Error the hive answered stays as it is; anything else (refused,
// reset, timed out) is CONNECTION_TIMEOUT with the check-the-hive hint.
func (h *hiveClient) unreachable(err error, doing string) *api.Error {
	var e *api.Error
	if errors.As(err, &e) {
		return e
	}
	return api.Errorf(api.CodeConnectionTimeout, "lost contact with rbee-hive on %s while %s: %s", h.node, doing, shortNetErr(err)).
		With("node", h.node).With("url", h.url).WithHint(hiveHint(h.node))
}

func hiveHint(node string) string { return "Check if rbee-hive is running on " + node }

// shortNetErr drops the method and URL net/http puts in front of an error.
func shortNetErr(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	return err.Error()
}

// hiveTarget is where a node's hive answers and with which token.
type hiveTarget struct {
	node  string
	url   string
	token string
	local bool
	row   *api.Node // the registry row of a remote node
}

// startable reports whether the queen may start the node's hive over SSH:
// it knows where rbee lives there.
func (t hiveTarget) startable() bool { return t.row != nil && t.row.InstallPath != "" }

// localHive is the hive this queen started as its child.
type localHive struct {
	proc  *proc.Process
	token string
	log   string
}

// hiveManager reaches hives, starts the local one (one start at a time per
// node, whatever the number of concurrent tasks) and stops what it started.
// It runs no goroutine of its own: every call runs on its caller's.
type hiveManager struct {
	cfg    Config
	log    hclog.Logger
	store  *store
	http   *http.Client
	remote *remotes // SSH connections and the hives started over them

	locks keyedLocks

	mu     sync.Mutex
	local  *localHive // nil until started; cleared when stopped
	closed bool
}

// target resolves a node: local is the hive on 127.0.0.1:LocalHivePort;
// other nodes come from the registry (NODE_NOT_FOUND if absent) and are
// reached at ssh_host:hive_port, or through an SSH tunnel in tunnel mode,
// with the token the queen made for the node (the queen's own token for a
// node that has none).
func (m *hiveManager) target(ctx context.Context, node string) (hiveTarget, error) {
	if node == api.LocalNode {
		t := hiveTarget{node: node, url: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(m.cfg.LocalHivePort)),
			token: m.cfg.Token, local: true}
		m.mu.Lock()
		if m.local != nil {
			t.token = m.local.token
		}
		m.mu.Unlock()
		return t, nil
	}
	n, err := m.store.Get(ctx, node)
	if err != nil {
		return hiveTarget{}, err
	}
	token, err := m.store.Token(ctx, node)
	if err != nil {
		return hiveTarget{}, err
	}
	if token == "" {
		token = m.cfg.Token
	}
	url, err := m.remote.hiveURL(ctx, n)
	if err != nil {
		return hiveTarget{}, err
	}
	return hiveTarget{node: node, url: url, token: token, row: &n}, nil
}

func (m *hiveManager) client(t hiveTarget) *hiveClient {
	return &hiveClient{node: t.node, url: t.url, c: &httpx.Client{BaseURL: t.url, Token: t.token, HTTP: m.http}}
}

// ensure makes sure the node's hive answers with a compatible version and
// returns a client for it: health with the retry policy, then, for the local
// node, a start as a child process. Concurrent calls for one node run one
// at a time, so a second task waits for the first one's start and then
// finds the hive up.
func (m *hiveManager) ensure(ctx context.Context, node string, say narrateFunc) (*hiveClient, error) {
	unlock, err := m.locks.lock(ctx, "hive\x00"+node)
	if err != nil {
		return nil, err
	}
	defer unlock()
	t, err := m.target(ctx, node)
	if err != nil {
		if t.row == nil && node != api.LocalNode {
			if n, gerr := m.store.Get(ctx, node); gerr == nil {
				m.record(ctx, hiveTarget{node: node, row: &n}, api.NodeUnreachable, err.Error())
			}
		}
		return nil, err
	}
	h := m.client(t)
	say.say("hive_check", "Checking rbee-hive on %s at %s", node, t.url)
	if (t.local || t.startable() && !t.row.Tunnel) && m.nothingListening(ctx, h) {
		// Nothing listens on the hive's port: there is no hive to wait for,
		// so start one at once instead of retrying (EC1 is for hives that
		// exist but are slow or restarting).
		if t.local {
			return m.startLocal(ctx, say)
		}
		return m.startRemote(ctx, t, say)
	}
	health, err := m.reach(ctx, h, say)
	if err == nil {
		if verr := checkVersion(node, health.Version); verr != nil {
			m.record(ctx, t, api.NodeReachable, verr.Message)
			return nil, verr
		}
		m.record(ctx, t, api.NodeReachable, "")
		return h, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if t.startable() {
		return m.startRemote(ctx, t, say)
	}
	if !t.local {
		e := api.Errorf(api.CodeConnectionTimeout, "rbee-hive on %s did not answer at %s after %d attempts: %s",
			node, t.url, len(m.cfg.HiveRetryDelays), shortNetErr(err)).
			With("node", node).With("url", t.url).With("attempts", len(m.cfg.HiveRetryDelays)).WithHint(hiveHint(node))
		m.record(ctx, t, api.NodeUnreachable, e.Message)
		return nil, e
	}
	return m.startLocal(ctx, say)
}

// startRemote starts a registry node's hive over SSH and records the
// outcome in the registry.
func (m *hiveManager) startRemote(ctx context.Context, t hiveTarget, say narrateFunc) (*hiveClient, error) {
	token, err := m.store.EnsureToken(ctx, t.node, httpx.NewToken())
	if err != nil {
		return nil, err
	}
	say.say("hive_ssh", "rbee-hive is not running on %s; starting it over SSH (%s@%s:%d)", t.node, t.row.SSHUser, t.row.SSHHost, t.row.SSHPort)
	h, err := m.remote.startHive(ctx, *t.row, token, say)
	if err != nil {
		if ctx.Err() == nil {
			var e *api.Error
			if !errors.As(err, &e) || e.Code != api.CodeVersionMismatch {
				m.record(ctx, t, api.NodeUnreachable, err.Error())
			} else {
				m.record(ctx, t, api.NodeReachable, e.Message)
			}
		}
		return nil, err
	}
	m.record(ctx, t, api.NodeReachable, "")
	return h, nil
}

// nothingListening reports whether a health check is refused outright:
// nothing is bound to the hive's port.
func (m *hiveManager) nothingListening(ctx context.Context, h *hiveClient) bool {
	actx, cancel := context.WithTimeout(ctx, hiveAttemptTimeout)
	defer cancel()
	_, err := h.health(actx)
	return errors.Is(err, syscall.ECONNREFUSED)
}

// record saves the outcome of reaching a registry node (local has no row).
func (m *hiveManager) record(ctx context.Context, t hiveTarget, status api.NodeStatus, lastErr string) {
	if t.local {
		return
	}
	var at time.Time
	if status == api.NodeReachable {
		at = time.Now()
	}
	if err := m.store.SetStatus(context.WithoutCancel(ctx), t.node, status, at, lastErr); err != nil {
		m.log.Warn("recording node status", "node", t.node, "error", err)
	}
}

// reach checks the hive's health with the EC1 policy: one attempt after each
// of HiveRetryDelays, hiveAttemptTimeout each. Failed attempts are narrated.
func (m *hiveManager) reach(ctx context.Context, h *hiveClient, say narrateFunc) (api.HiveHealth, error) {
	delays := m.cfg.HiveRetryDelays
	if err := sleepCtx(ctx, delays[0]); err != nil {
		return api.HiveHealth{}, err
	}
	attempt := 0
	op := func() (api.HiveHealth, error) {
		attempt++
		actx, cancel := context.WithTimeout(ctx, hiveAttemptTimeout)
		defer cancel()
		hh, err := h.health(actx)
		if err != nil {
			var e *api.Error
			if errors.As(err, &e) && (e.Code == api.CodeMissingAPIKey || e.Code == api.CodeInvalidAPIKey) {
				return hh, backoff.Permanent(err) // health is public: this is not a hive
			}
			return hh, err
		}
		if hh.Version == "" {
			return hh, fmt.Errorf("the answer at %s is not an rbee-hive health report", h.url)
		}
		return hh, nil
	}
	notify := func(err error, next time.Duration) {
		m.log.Debug("hive health attempt failed", "node", h.node, "attempt", attempt, "error", err)
		say.say("hive_retry", "rbee-hive on %s did not answer (attempt %d/%d: %s); retrying in %s",
			h.node, attempt, len(delays), shortNetErr(err), next)
	}
	b := backoff.WithContext(&listBackOff{delays: delays[1:]}, ctx)
	hh, err := backoff.RetryNotifyWithData(op, b, notify)
	if err != nil && ctx.Err() == nil {
		m.log.Info("hive unreachable", "node", h.node, "url", h.url, "attempts", attempt, "error", err)
		say.say("hive_unreachable", "rbee-hive on %s did not answer (attempt %d/%d: %s)", h.node, attempt, len(delays), shortNetErr(err))
	}
	return hh, err
}

// startLocal starts the local hive as a child process and waits for its
// health (backoff from 100 ms, ×2, capped at 2 s, for HiveStartTimeout).
func (m *hiveManager) startLocal(ctx context.Context, say narrateFunc) (*hiveClient, error) {
	if err := paths.Ensure(m.cfg.Home); err != nil {
		return nil, fmt.Errorf("preparing %s: %w", m.cfg.Home, err)
	}
	// A child of ours that no longer answers is replaced.
	m.mu.Lock()
	stale := m.local
	m.local = nil
	m.mu.Unlock()
	if stale != nil {
		m.log.Warn("local hive stopped answering; restarting it", "pid", stale.proc.Pid())
		_ = stale.proc.Stop(ctx, hiveKillGrace)
	}

	token := httpx.NewToken()
	logPath := filepath.Join(paths.LogsDir(m.cfg.Home), "hive-local.log")
	port := strconv.Itoa(m.cfg.LocalHivePort)
	spec := proc.Spec{
		Path: m.cfg.Binary,
		Args: []string{"hive", "--host", "127.0.0.1", "--port", port,
			"--worker-port-start", strconv.Itoa(m.cfg.LocalWorkerPortStart), "--home", m.cfg.Home},
		Env:     []string{"RBEE_API_KEY=" + token, "RBEE_CHILD=1"},
		LogFile: logPath,
	}
	for name, v := range m.cfg.securityEnv() {
		spec.Env = append(spec.Env, name+"="+v)
	}
	if m.cfg.LocalIdleTimeout > 0 {
		spec.Args = append(spec.Args, "--idle-timeout", m.cfg.LocalIdleTimeout.String())
	}
	spec.Args = append(spec.Args, m.cfg.localHiveArgs...)
	// What the child writes to its log from here on says why, if it fails.
	var logFrom int64
	if st, err := os.Stat(logPath); err == nil {
		logFrom = st.Size()
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, shuttingDown()
	}
	p, err := proc.Start(spec)
	if err != nil {
		m.mu.Unlock()
		return nil, api.Errorf(api.CodeInternal, "could not start rbee-hive on %s: %v", api.LocalNode, err).
			With("node", api.LocalNode).With("binary", m.cfg.Binary).
			WithHint("check that " + m.cfg.Binary + " is an rbee binary this user can run")
	}
	lh := &localHive{proc: p, token: token, log: logPath}
	m.local = lh
	m.mu.Unlock()
	m.log.Info("started local hive", "pid", p.Pid(), "port", port, "token", httpx.Fingerprint(token), "log", logPath)
	say.say("hive_start", "Starting rbee-hive on %s (port %s, pid %d)", api.LocalNode, port, p.Pid())

	url := "http://" + net.JoinHostPort("127.0.0.1", port)
	h := &hiveClient{node: api.LocalNode, url: url, c: &httpx.Client{BaseURL: url, Token: token, HTTP: m.http}}
	hh, err := waitStarted(ctx, h, p, m.cfg.HiveStartTimeout)
	if err == nil {
		if verr := checkVersion(api.LocalNode, hh.Version); verr != nil {
			return nil, verr
		}
		say.say("hive_ready", "rbee-hive on %s is up (version %s)", api.LocalNode, hh.Version)
		return h, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if errors.Is(err, errHiveExited) {
		m.mu.Lock()
		if m.local == lh {
			m.local = nil
		}
		m.mu.Unlock()
		tail := logTailFrom(logPath, logFrom, hiveLogTailLines)
		reason := "it wrote nothing to its log"
		if len(tail) > 0 {
			reason = tail[len(tail)-1]
		}
		m.log.Error("local hive exited while starting", "pid", p.Pid(), "exit_code", p.ExitCode(), "log", logPath,
			"log_tail", strings.Join(tail, "\n"))
		// Not a timeout: the hive ran and stopped, and its last words say why.
		return nil, api.Errorf(api.CodeInternal, "rbee-hive on %s exited while starting (%s): %s", api.LocalNode, exitText(p), reason).
			With("node", api.LocalNode).With("exit_code", p.ExitCode()).With("log", logPath).With("log_tail", tail).
			WithHint("the hive's log " + logPath + " says why it stopped; fix that, then try again")
	}
	return nil, api.Errorf(api.CodeConnectionTimeout, "rbee-hive on %s did not answer within %s of its start: %s",
		api.LocalNode, m.cfg.HiveStartTimeout, shortNetErr(err)).
		With("node", api.LocalNode).With("log", logPath).WithHint(hiveHint(api.LocalNode) + " (see " + logPath + ")")
}

// hiveLogTailLines is how many of its last log lines a hive that exited
// while starting is reported with.
const hiveLogTailLines = 10

// waitStarted polls the health of a hive just started as the child p,
// with backoff from startBackoffFirst (doubling, capped at startBackoffMax),
// for up to timeout. A child that exits meanwhile ends the wait at once
// with errHiveExited; otherwise the error is the last failed check's, or
// ctx's.
func waitStarted(ctx context.Context, h *hiveClient, p *proc.Process, timeout time.Duration) (api.HiveHealth, error) {
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	delay := startBackoffFirst
	var lastErr error
	for {
		actx, acancel := context.WithTimeout(sctx, startBackoffMax)
		hh, err := h.health(actx)
		acancel()
		if err == nil && hh.Version == "" {
			err = fmt.Errorf("the answer at %s is not an rbee-hive health report", h.url)
		}
		if err == nil {
			return hh, nil
		}
		if sctx.Err() == nil || lastErr == nil {
			lastErr = err
		}
		t := time.NewTimer(delay)
		select {
		case <-p.Exited():
			t.Stop()
			return api.HiveHealth{}, errHiveExited
		case <-sctx.Done():
			t.Stop()
			if ctx.Err() != nil {
				return api.HiveHealth{}, ctx.Err()
			}
			return api.HiveHealth{}, lastErr
		case <-t.C:
		}
		delay = min(2*delay, startBackoffMax)
	}
}

// exitText says how a process ended: "exit status 1", or the signal.
func exitText(p *proc.Process) string {
	if code := p.ExitCode(); code >= 0 {
		return fmt.Sprintf("exit status %d", code)
	}
	return "killed by a signal"
}

// logTailFrom returns the last n non-empty lines written to a log file
// after byte offset from (at most its last 16 KiB are read); none when
// there is no such file.
func logTailFrom(path string, from int64, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() <= from {
		return nil
	}
	const most = 16 << 10
	start := max(from, st.Size()-most)
	buf := make([]byte, st.Size()-start)
	got, _ := f.ReadAt(buf, start)
	lines := strings.Split(string(buf[:got]), "\n")
	if start > from && len(lines) > 0 {
		lines = lines[1:] // cut in the middle
	}
	out := []string{}
	for _, l := range lines {
		if l = strings.TrimRight(l, "\r "); l != "" {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

var errHiveExited = errors.New("the hive process exited")

// startedLocal reports whether the queen runs the local hive it started.
func (m *hiveManager) startedLocal() *localHive {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.local == nil {
		return nil
	}
	select {
	case <-m.local.proc.Exited():
		return nil
	default:
		return m.local
	}
}

// close stops the hives this queen started — the local one and those it
// started over SSH, at the same time — and refuses later starts. Hives it
// did not start are left alone. A hive is asked to shut down (its own
// cascade stops its workers); if it has not exited after hiveStopTimeout it
// gets SIGTERM, then SIGKILL.
func (m *hiveManager) close(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { m.remote.close(ctx) })
	defer wg.Wait()
	m.mu.Lock()
	m.closed = true
	lh := m.local
	m.local = nil
	m.mu.Unlock()
	if lh == nil {
		return
	}
	select {
	case <-lh.proc.Exited():
		return
	default:
	}
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(m.cfg.LocalHivePort))
	h := &hiveClient{node: api.LocalNode, url: url, c: &httpx.Client{BaseURL: url, Token: lh.token, HTTP: m.http}}
	actx, cancel := context.WithTimeout(ctx, hiveAttemptTimeout)
	err := h.shutdown(actx)
	cancel()
	grace := hiveStopTimeout
	if err != nil {
		m.log.Warn("local hive refused to shut down; sending SIGTERM", "pid", lh.proc.Pid(), "error", err)
		grace = hiveKillGrace
	} else {
		m.log.Info("asked the local hive to shut down", "pid", lh.proc.Pid())
		t := time.NewTimer(hiveStopTimeout)
		select {
		case <-lh.proc.Exited():
		case <-t.C:
			m.log.Warn("local hive did not exit in time; sending SIGTERM", "pid", lh.proc.Pid())
		case <-ctx.Done():
		}
		t.Stop()
		grace = hiveKillGrace
	}
	_ = lh.proc.Stop(ctx, grace)
	m.log.Info("local hive stopped", "pid", lh.proc.Pid(), "exit_code", lh.proc.ExitCode())
}

// checkVersion compares major.minor of the hive's version with this rbee's.
func checkVersion(node, hiveVersion string) *api.Error {
	hm, ok1 := majorMinor(hiveVersion)
	qm, ok2 := majorMinor(api.Version)
	if ok1 && ok2 && hm == qm {
		return nil
	}
	return api.Errorf(api.CodeVersionMismatch, "rbee-hive on %s runs version %s but this queen runs %s; their major.minor versions must match",
		node, hiveVersion, api.Version).
		With("node", node).With("hive_version", hiveVersion).With("queen_version", api.Version).
		WithHint(fmt.Sprintf("upgrade rbee on %s to %s (or upgrade this machine if %s is newer)", node, api.Version, node))
}

func majorMinor(v string) (string, bool) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return "", false
	}
	for _, p := range parts[:2] {
		if _, err := strconv.Atoi(p); err != nil || p == "" {
			return "", false
		}
	}
	return parts[0] + "." + parts[1], true
}

// listBackOff is a backoff.BackOff that waits each of delays in turn, then stops.
type listBackOff struct {
	delays []time.Duration
	i      int
}

func (b *listBackOff) NextBackOff() time.Duration {
	if b.i >= len(b.delays) {
		return backoff.Stop
	}
	d := b.delays[b.i]
	b.i++
	return d
}

func (b *listBackOff) Reset() { b.i = 0 }

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// keyedLocks is a set of mutexes by key whose Lock gives up when the
// caller's context ends. Unused keys are dropped.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	ch   chan struct{}
	refs int
}

func (k *keyedLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[string]*keyedLock)
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-l.ch
			release()
		})
	}, nil
}

func shuttingDown() *api.Error {
	return api.Errorf(api.CodeShuttingDown, "the queen is shutting down").WithHint("start it again (rbee queen) or let rbee infer start one")
}
