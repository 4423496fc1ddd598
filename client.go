package rbee

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strings"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

// DefaultURL is where a [Client] with no BaseURL finds the queen.
const DefaultURL = "http://127.0.0.1:8080"

// Client talks to a queen. Its zero value talks to the queen at [DefaultURL]
// without a token; a Client is safe for concurrent use, and its fields must
// not change once it is in use.
//
// Every method takes a context first: cancelling it abandons the call. A
// failure the queen reports is an *[Error] (match it with errors.Is against
// [ErrNodeNotFound] and the other sentinels); a failure to reach the queen
// is returned as the HTTP client reported it, wrapped.
type Client struct {
	// BaseURL is the queen's address, "http://host:port"; empty means
	// [DefaultURL].
	BaseURL string
	// Token is sent as "Authorization: Bearer TOKEN" when not empty.
	Token string
	// HTTPClient sends the requests; nil means http.DefaultClient. Leave its
	// Timeout at zero: inference streams last as long as the generation.
	HTTPClient *http.Client
}

func (c *Client) http() *httpx.Client {
	base := c.BaseURL
	if base == "" {
		base = DefaultURL
	}
	return &httpx.Client{BaseURL: base, Token: c.Token, HTTP: c.HTTPClient}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	h := c.http()
	err := h.Do(ctx, method, path, in, out)
	var e *api.Error
	if err == nil || errors.As(err, &e) {
		return err
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return ctx.Err()
	}
	return fmt.Errorf("rbee: %s %s%s: %w", method, strings.TrimRight(h.BaseURL, "/"), path, err)
}

// Health asks the queen whether it runs and which version it is. It is the
// one call that needs no token.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var h Health
	if err := c.do(ctx, http.MethodGet, "/health", nil, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// Infer runs one inference through the queen and yields its events as they
// arrive: narration and progress while the queen finds or starts a worker,
// then one token event per piece of text, then a done event, after which the
// sequence ends.
//
// The first event is always a narration whose Action is [ActionTaskStart]
// and whose RequestID is the task's id: pass it to [Client.CancelTask] to
// stop the generation from elsewhere.
//
// Error events are not yielded as events: a request the queen refuses, an
// error event in the stream (an *[Error]) or a stream that breaks off (an
// error wrapping [ErrStreamClosed]) is yielded once as the error, and then
// the sequence ends. When ctx ends the sequence yields ctx.Err() and ends;
// the queen then cancels the generation, since its client went away.
// Breaking out of the loop closes the stream the same way.
//
// A done event with stop reason [StopCancelled] comes only when the task
// was cancelled with [Client.CancelTask] (by this program or another that
// knows the task id). A generation cut short by anything else is an error,
// so that truncated text is never taken for a whole answer: one matching
// [ErrWorkerCrashed] when the worker process died or its stream broke, or
// [ErrShuttingDown] when the worker, its hive or the queen shut down; its
// Details hold tokens_generated and max_tokens when the worker had begun.
func (c *Client) Infer(ctx context.Context, req TaskRequest) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		var taskID string
		first := true
		for ev, err := range c.stream(ctx, http.MethodPost, "/v2/tasks", req, true, func(h http.Header) {
			taskID = h.Get(httpx.RequestIDHeader)
		}) {
			if err != nil {
				var e *api.Error
				if errors.As(err, &e) && e.RequestID == "" && taskID != "" {
					c := *e
					c.RequestID = taskID
					err = &c
				}
				yield(Event{}, err)
				return
			}
			if first {
				first = false
				if ev.Kind != KindNarration || ev.Narration.Action != ActionTaskStart {
					start := api.NarrationEvent(api.ActorKeeper, ActionTaskStart, "Task "+taskID+" accepted by the queen")
					start.Narration.RequestID = taskID
					if !yield(start, nil) {
						return
					}
				} else if ev.Narration.RequestID == "" {
					n := *ev.Narration
					n.RequestID = taskID
					ev.Narration = &n
				}
			}
			if !yield(ev, nil) {
				return
			}
		}
	}
}

// CancelTask stops a running inference: the worker ends its stream with a
// done event whose stop reason is [StopCancelled] and frees its slot. It
// succeeds for unknown or finished tasks too.
func (c *Client) CancelTask(ctx context.Context, taskID string) error {
	if taskID == "" {
		return api.InvalidField("task_id", "a task id is required")
	}
	return c.do(ctx, http.MethodDelete, "/v2/tasks/"+url.PathEscape(taskID), nil, nil)
}

// Workers lists the workers of every node the queen can reach, with the
// node each runs on and its state. Nodes whose hive does not answer are left
// out; [Client.WorkerList] says which.
func (c *Client) Workers(ctx context.Context) ([]WorkerInfo, error) {
	l, err := c.WorkerList(ctx)
	if err != nil {
		return nil, err
	}
	return l.Workers, nil
}

// WorkerList lists the workers of every node the queen can reach, as
// Workers does, and the nodes it could not ask (Unreachable, each with the
// error, such as [ErrConnectionTimeout] with a hint): a node missing from
// the workers is then known to be down, not idle. A node whose hive simply
// does not run yet (the local one before its first inference) is in
// neither.
func (c *Client) WorkerList(ctx context.Context) (*WorkerList, error) {
	var l api.WorkerList
	if err := c.do(ctx, http.MethodGet, "/v2/workers/list", nil, &l); err != nil {
		return nil, err
	}
	if l.Workers == nil {
		l.Workers = []WorkerInfo{}
	}
	return &l, nil
}

// Queue returns the queen's queue: the tasks waiting for a free slot per
// node and model (oldest first), and per worker its slots in use, its slot
// count and how many tasks wait for it.
//
// A task the queue turns away (it is full, or the task waited too long)
// fails with [ErrAllSlotsBusy]; (*Error).RetryAfter then says how long the
// queen suggests waiting before trying again.
func (c *Client) Queue(ctx context.Context) (*QueueStatus, error) {
	var st api.QueueStatus
	if err := c.do(ctx, http.MethodGet, "/v2/queue", nil, &st); err != nil {
		return nil, err
	}
	if st.Queues == nil {
		st.Queues = []Queue{}
	}
	if st.Workers == nil {
		st.Workers = []WorkerSlots{}
	}
	return &st, nil
}

// WorkersHealth checks a node's hive and its workers.
func (c *Client) WorkersHealth(ctx context.Context, node string) (*NodeHealth, error) {
	if err := api.ValidateNodeName(node); err != nil {
		return nil, err
	}
	var h NodeHealth
	if err := c.do(ctx, http.MethodGet, "/v2/workers/health?node="+url.QueryEscape(node), nil, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// ShutdownWorker stops a worker, on whichever node it runs; its model is
// unloaded. An unknown id is an error matching [ErrWorkerNotFound].
func (c *Client) ShutdownWorker(ctx context.Context, workerID string) error {
	if err := api.ValidateWorkerID(workerID); err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, "/v2/workers/shutdown", api.WorkerShutdownRequest{WorkerID: workerID}, nil)
}

// Nodes lists the queen's node registry. The local node needs no
// registration and is not listed.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var l api.NodeList
	if err := c.do(ctx, http.MethodGet, "/v2/registry/beehives/list", nil, &l); err != nil {
		return nil, err
	}
	if l.Nodes == nil {
		l.Nodes = []Node{}
	}
	return l.Nodes, nil
}

// RemoveNode removes a node from the registry. An unknown name is an error
// matching [ErrNodeNotFound].
func (c *Client) RemoveNode(ctx context.Context, name string) error {
	if err := api.ValidateNodeName(name); err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, "/v2/registry/beehives/remove", api.NodeRequest{Name: name}, nil)
}

// AddNode registers a node in the queen's registry: the queen checks
// every field, then connects to the node over SSH and runs echo there, and
// saves the node, as reachable, only if that worked. It yields the queen's
// narration as it happens ("Testing SSH connection to …", then the outcome)
// and a final done event, after which the sequence ends.
//
// A refusal is yielded once as the error: an invalid field
// ([ErrInvalidRequest], before any connection), a name already taken
// ([ErrNodeAlreadyExists]), or the SSH failure ([ErrSSHConnectionFailed],
// [ErrSSHAuthFailed], [ErrHostKeyMismatch]); nothing is saved then. A host
// whose key is not in the queen's known_hosts is refused unless
// req.AcceptNewHostKey is set, which records its key.
func (c *Client) AddNode(ctx context.Context, req AddNodeRequest) iter.Seq2[Event, error] {
	return c.nodeStream(ctx, "/v2/registry/beehives/add", req)
}

// InstallNode installs rbee on a registered node over SSH: the
// queen's own binary is uploaded when the node's OS and architecture
// match, else the node's git repository is cloned and built there with go
// build (req.FromSource asks for that in any case). Each step is yielded
// as a narration event as it happens, then a done event; a failed step is
// yielded once as the error, naming the step and its output.
func (c *Client) InstallNode(ctx context.Context, req InstallRequest) iter.Seq2[Event, error] {
	return c.nodeStream(ctx, "/v2/registry/beehives/install", req)
}

// nodeStream posts body and yields the events of the answer until done.
func (c *Client) nodeStream(ctx context.Context, path string, body any) iter.Seq2[Event, error] {
	return c.stream(ctx, http.MethodPost, path, body, true, nil)
}

// stream sends a request whose answer is an event stream and yields its
// events. A refused request, an error event or a stream that breaks off is
// yielded once as the error, then the sequence ends; when ctx ends, ctx.Err()
// is. With untilDone the stream must carry a done event (ending without one
// is ErrStreamClosed) and what follows it is read off, not yielded. onOpen,
// when set, sees the answer's headers first.
func (c *Client) stream(ctx context.Context, method, path string, body any, untilDone bool, onOpen func(http.Header)) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		h := c.http()
		resp, err := h.Stream(ctx, method, path, body, nil)
		if err != nil {
			var e *api.Error
			switch {
			case errors.As(err, &e):
			case ctx.Err() != nil:
				err = ctx.Err()
			default:
				err = fmt.Errorf("rbee: %s %s%s: %w", method, strings.TrimRight(h.BaseURL, "/"), path, err)
			}
			yield(Event{}, err)
			return
		}
		defer resp.Body.Close()
		if onOpen != nil {
			onOpen(resp.Header)
		}
		done := false
		for ev, err := range sse.Read(resp.Body) {
			if done {
				continue // drain to the end marker so the connection can be reused
			}
			if err != nil {
				if ctx.Err() != nil {
					err = ctx.Err()
				}
				yield(Event{}, err)
				return
			}
			if ev.Kind == KindError {
				yield(Event{}, ev.Error)
				return
			}
			if !yield(ev, nil) {
				return
			}
			done = ev.Kind == KindDone
		}
		switch {
		case done || !untilDone:
		case ctx.Err() != nil:
			yield(Event{}, ctx.Err())
		default:
			yield(Event{}, fmt.Errorf("%w: the stream ended before its done event", ErrStreamClosed))
		}
	}
}
