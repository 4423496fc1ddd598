package rbee

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/orchestrator"
)

// DefaultAddr is where an [Orchestrator] with no Addr listens.
const DefaultAddr = orchestrator.DefaultAddr

// ErrOrchestratorClosed is returned by [Orchestrator.Start] after
// [Orchestrator.Close].
var ErrOrchestratorClosed = errors.New("rbee: the orchestrator is closed")

// Orchestrator is a queen embedded in a Go program: the same daemon as
// `rbee queen`, modelled on tsnet.Server. Set its settings, then call
// [Orchestrator.Start] to serve on Addr, or use [Orchestrator.Handler] or
// [Orchestrator.Client] without listening at all. [Orchestrator.Close]
// stops it, and with it the local hive it started and that hive's workers.
//
// The settings are those of the daemon, an [orchestrator.Config] embedded
// whole, so every knob of `rbee queen` is a field here too, declared and
// documented once in package orchestrator. Write them in a literal as
//
//	o := &rbee.Orchestrator{Config: orchestrator.Config{Addr: "127.0.0.1:0", Home: dir}}
//
// or set them on the value: o.Addr, o.Token and the rest are promoted.
// Start listens on Config.Listener when it is set, else on Addr.
//
// The queen starts the local node's hive as a child process of Binary, and
// the hive starts its workers the same way. By default Binary is the running
// program, which must then call [HandleChildProcess] at the start of main;
// or set Binary to an installed rbee command.
//
// The settings must be set before the first method call and not changed
// after. The zero value is a queen on [DefaultAddr] with its state in
// $RBEE_HOME (or ~/.rbee), its logs discarded.
type Orchestrator struct {
	orchestrator.Config

	initOnce sync.Once
	queen    *orchestrator.Queen
	initErr  error
	client   *Client

	mu       sync.Mutex
	started  bool
	startErr error
	closed   bool
	url      string
	srv      *httpx.Server
	done     chan struct{} // closed when the server stops
	runErr   error
}

// init makes the queen once: New opens the registry but starts nothing.
func (o *Orchestrator) init() error {
	o.initOnce.Do(func() {
		o.queen, o.initErr = orchestrator.New(o.Config)
		if o.initErr != nil {
			o.initErr = fmt.Errorf("rbee: %w", o.initErr)
		}
	})
	return o.initErr
}

// Start makes the queen and serves its API on Addr in the background. It
// returns once the address is bound (ctx bounds only that); the queen runs
// until [Orchestrator.Close]. Calling Start again returns the first call's
// result.
func (o *Orchestrator) Start(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return ErrOrchestratorClosed
	}
	if o.started {
		return o.startErr
	}
	o.started = true
	o.startErr = o.start(ctx)
	return o.startErr
}

func (o *Orchestrator) start(ctx context.Context) error {
	addr := o.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	if o.Listener != nil {
		addr = o.Listener.Addr().String()
	}
	if err := httpx.CheckBind(addr, o.Token); err != nil {
		return fmt.Errorf("rbee: %w", err)
	}
	if err := o.init(); err != nil {
		return err
	}
	ln := o.Listener
	if ln == nil {
		var lc net.ListenConfig
		var err error
		if ln, err = lc.Listen(ctx, "tcp", addr); err != nil {
			return fmt.Errorf("rbee: orchestrator: %w", err)
		}
	}
	o.url = "http://" + ln.Addr().String()
	if o.Logger != nil {
		o.Logger.Named("queen").Info("orchestrator listening", "url", o.url, "version", Version, "api_key", httpx.Fingerprint(o.Token))
	}
	o.srv = httpx.NewServer(o.queen.Handler(), o.Logger, httpx.Limits{})
	o.done = make(chan struct{})
	go func() {
		defer close(o.done)
		if err := o.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			o.runErr = fmt.Errorf("rbee: orchestrator: %w", err)
		}
	}()
	return nil
}

// Up starts the orchestrator if it is not running and waits until it
// answers its health check, or ctx ends.
func (o *Orchestrator) Up(ctx context.Context) error {
	if err := o.Start(ctx); err != nil {
		return err
	}
	c := &Client{BaseURL: o.URL()}
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		if _, err := c.Health(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-o.done:
			if o.runErr != nil {
				return o.runErr
			}
			return ErrOrchestratorClosed
		case <-time.After(delay):
		}
	}
}

// URL is the address the orchestrator serves on ("http://127.0.0.1:8080"),
// once Start succeeded; "" before.
func (o *Orchestrator) URL() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.startErr != nil {
		return ""
	}
	return o.url
}

// Handler returns the queen's HTTP API, to mount in a server of your own
// (it works without Start). Its Host and Origin checks are those of
// AllowedHosts and AllowedOrigins: a server reached by a name other than
// localhost or an IP address needs that name in AllowedHosts. If the queen
// cannot be made (its Home is not writable, say) every request gets an
// INTERNAL error saying why. After [Orchestrator.Close] every request gets
// SHUTTING_DOWN (503).
func (o *Orchestrator) Handler() http.Handler { return http.HandlerFunc(o.serveHTTP) }

func (o *Orchestrator) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if o.isClosed() {
		httpx.WriteError(w, r, errClosedQueen())
		return
	}
	if err := o.init(); err != nil {
		httpx.WriteError(w, r, &Error{Code: api.CodeInternal, Message: err.Error()})
		return
	}
	if o.queen == nil {
		// Close came first and made sure no queen would be made.
		httpx.WriteError(w, r, errClosedQueen())
		return
	}
	o.queen.Handler().ServeHTTP(w, r)
}

func (o *Orchestrator) isClosed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed
}

// errClosedQueen is the answer of an orchestrator after Close.
func errClosedQueen() *Error {
	return api.Errorf(api.CodeShuttingDown, "the embedded orchestrator is closed").
		WithHint("make a new rbee.Orchestrator to serve again")
}

// Client returns a [Client] of this queen that serves its requests in
// process through [Orchestrator.Handler]: no sockets, streams included. It
// works whether or not the orchestrator was started, and returns the same
// Client every time. After [Orchestrator.Close] its calls fail with
// [ErrShuttingDown].
func (o *Orchestrator) Client() *Client {
	h := o.Handler()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.client == nil {
		o.client = &Client{
			// A *.localhost name: the queen's Host check lets it through.
			BaseURL:    "http://rbee-orchestrator.localhost",
			Token:      o.Token,
			HTTPClient: &http.Client{Transport: &handlerTransport{handler: h}},
		}
	}
	return o.client
}

// Close stops the orchestrator: it stops accepting requests, running tasks
// end (their streams get a SHUTTING_DOWN error), and the hives it started
// — the local one, and those on remote nodes over SSH — are shut down with
// their workers (this can take up to 30 s while workers finish). It
// returns the first error of the server or of the shutdown. Closing twice
// is safe.
func (o *Orchestrator) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	srv, done := o.srv, o.done
	o.mu.Unlock()

	var shutdown chan struct{}
	if srv != nil {
		// The listener closes at once; connections get a grace period,
		// during which closing the queen ends the streams that hold them.
		shutdown = make(chan struct{})
		go func() {
			defer close(shutdown)
			ctx, cancel := context.WithTimeout(context.Background(), closeGrace)
			defer cancel()
			if srv.Shutdown(ctx) != nil {
				_ = srv.Close()
			}
		}()
	}
	var err error
	if o.initOnce.Do(func() {}); o.queen != nil {
		err = o.queen.Close()
	}
	if srv != nil {
		<-shutdown
		<-done
		if o.runErr != nil {
			err = o.runErr
		}
	}
	return err
}

// closeGrace is how long Close lets requests in flight finish.
const closeGrace = 5 * time.Second
