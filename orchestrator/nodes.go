package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

// nodeStream is the event stream of POST /v2/registry/beehives/add and
// /install: narration lines, then a done event, or an error event.
type nodeStream struct {
	out  *sse.Writer
	node string
	id   string
}

func newNodeStream(w http.ResponseWriter, r *http.Request, node string) *nodeStream {
	return &nodeStream{out: sse.NewWriter(w), node: node, id: w.Header().Get(httpx.RequestIDHeader)}
}

// say sends one narration line (a client that went away is noticed by the
// request's context).
func (s *nodeStream) say(action, format string, a ...any) {
	_ = s.out.Send(api.Event{Kind: api.KindNarration, Narration: &api.Narration{Actor: api.ActorQueen, Action: action,
		Human: fmt.Sprintf(format, a...), Node: s.node, RequestID: s.id}})
}

// finish ends the stream with done, or with the error as an error event.
func (s *nodeStream) finish(err error) {
	if err == nil {
		_ = s.out.Send(api.Event{Kind: api.KindDone, Done: &api.Done{Done: true, RequestID: s.id}})
		_ = s.out.Close()
		return
	}
	e := *httpx.ToAPIError(err)
	e.RequestID = s.id
	_ = s.out.Error(&e)
}

// handleNodesAdd serves POST /v2/registry/beehives/add: every
// field is checked and a duplicate name refused (plain error envelopes)
// before anything connects anywhere; then, on an event stream, the queen
// connects over SSH, runs echo, and saves the node — reachable, with
// last_connected_unix and a fresh hive token — only if that worked.
// Unknown host keys are refused unless accept_new_host_key is set, which
// accepts the key for the test and records it in known_hosts once the node
// is saved.
func (q *Queen) handleNodesAdd(w http.ResponseWriter, r *http.Request) {
	var req api.AddNodeRequest
	if e := httpx.DecodeJSON(w, r, &req); e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	if e := req.Validate(); e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	if _, err := q.store.Get(r.Context(), req.Name); err == nil {
		httpx.WriteError(w, r, alreadyExists(req.Name))
		return
	} else if !errors.Is(err, api.ErrNodeNotFound) {
		q.logInternal(r, err)
		httpx.WriteError(w, r, err)
		return
	}
	n := req.Node()
	s := newNodeStream(w, r, n.Name)
	err := q.addNode(r.Context(), n, req.AcceptNewHostKey, s)
	q.logInternal(r, err)
	s.finish(err)
}

// logInternal logs, with its cause and the request, an error that reaches
// the client as INTERNAL: the client sees only the envelope, the operator
// needs the log.
func (q *Queen) logInternal(r *http.Request, err error) {
	if err == nil || r.Context().Err() != nil {
		return
	}
	if e := httpx.ToAPIError(err); e.Code == api.CodeInternal {
		q.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "request_id", httpx.RequestID(r), "error", err)
	}
}

func alreadyExists(name string) *api.Error {
	return api.Errorf(api.CodeNodeAlreadyExists, "node %s is already registered", name).
		With("node", name).WithHint("remove it first: rbee setup remove-node --name " + name)
}

// echoWord is what add-node's connection test prints on the node.
const echoWord = "rbee-ssh-ok"

func (q *Queen) addNode(ctx context.Context, n api.Node, acceptNew bool, s *nodeStream) error {
	target := n.SSHHost
	if n.SSHUser != "" {
		target = n.SSHUser + "@" + target
	}
	target = fmt.Sprintf("%s:%d", target, n.SSHPort)
	s.say("ssh_test", "Testing SSH connection to %s", target)
	c, err := q.hives.remote.dial(ctx, n, acceptNew)
	if err != nil {
		q.log.Info("add-node: SSH test failed", "node", n.Name, "error", err)
		return err
	}
	keep := false
	defer func() {
		if !keep {
			c.Close()
		}
	}()
	out, err := c.Output(ctx, "echo", echoWord)
	if err != nil {
		return remoteFailure(n.Name, "the SSH test (echo)", err)
	}
	if strings.TrimSpace(out) != echoWord {
		return api.Errorf(api.CodeSSHConnectionFailed, "the SSH test on %s printed %q instead of %q", n.Name, firstLine(out), echoWord).
			With("node", n.Name).WithHint("the remote login shell must be a POSIX shell that prints nothing of its own")
	}
	n.Status = api.NodeReachable
	n.LastConnectedUnix = time.Now().Unix()
	if err := q.store.AddWithToken(context.WithoutCancel(ctx), n, httpx.NewToken()); err != nil {
		return err
	}
	// A host key accepted for this connection is written to known_hosts
	// only now that the node is saved: a node that failed its test (or
	// its save) leaves known_hosts as it was. Should that write fail, the
	// node is not kept either, as later connections would refuse the key.
	if err := c.RecordHostKey(); err != nil {
		if rerr := q.store.Remove(context.WithoutCancel(ctx), n.Name); rerr != nil {
			q.log.Error("add-node: removing the node whose host key could not be recorded", "node", n.Name, "error", rerr)
		}
		q.log.Info("add-node: recording the host key failed", "node", n.Name, "error", err)
		return err
	}
	keep = true
	q.hives.remote.adopt(n, c)
	q.log.Info("node added", "node", n.Name, "ssh", c.String(), "install_path", n.InstallPath, "hive_port", n.HivePort, "tunnel", n.Tunnel)
	s.say("ssh_ok", "SSH connection to %s works; node %s saved to the registry as reachable", target, n.Name)
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// handleNodesInstall serves POST /v2/registry/beehives/install: the
// node must be registered (a plain NODE_NOT_FOUND otherwise); then, on an
// event stream, rbee is installed on it over SSH, each step narrated; a
// failed step ends the stream with an error naming the step and its
// output.
func (q *Queen) handleNodesInstall(w http.ResponseWriter, r *http.Request) {
	var req api.InstallRequest
	if e := httpx.DecodeJSON(w, r, &req); e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	if e := validateNodeField("node_name", req.Name); e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	if req.Name == api.LocalNode {
		httpx.WriteError(w, r, api.InvalidField("node_name", "the local node runs this queen's own binary; there is nothing to install"))
		return
	}
	n, err := q.store.Get(r.Context(), req.Name)
	if err != nil {
		q.logInternal(r, err)
		httpx.WriteError(w, r, err)
		return
	}
	s := newNodeStream(w, r, n.Name)
	in := &installer{q: q, n: n, fromSource: req.FromSource, say: s.say}
	err = in.run(r.Context())
	if err != nil && r.Context().Err() == nil {
		q.log.Info("install failed", "node", n.Name, "error", err)
	}
	q.logInternal(r, err)
	s.finish(err)
}
