package httpx

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// The defaults of [Limits].
const (
	DefaultHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout   = 30 * time.Second
	DefaultIdleTimeout   = 120 * time.Second
	DefaultMaxConns      = 1024
)

// Limits bound what one client can hold of a daemon, so that slow or idle
// clients cannot use up its connections or open files. Zero fields take
// the defaults.
//
// There is no limit on writing a response, nor on a request once its body
// has arrived: token streams last as long as generation does.
type Limits struct {
	// HeaderTimeout bounds reading a request's line and headers, from its
	// first byte (or the connection's opening) on (default 10 s).
	HeaderTimeout time.Duration
	// BodyTimeout bounds reading a request's body, counted from the end of
	// its headers (default 30 s). The deadline is lifted as soon as the
	// body has been read to its end, so a stream answering the request is
	// not cut by it.
	BodyTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits this long for
	// its next request (default 120 s).
	IdleTimeout time.Duration
	// MaxConns is how many connections the daemon keeps open at once
	// (default 1024). Further clients wait, unaccepted, until one closes.
	MaxConns int
}

func (l Limits) withDefaults() Limits {
	if l.HeaderTimeout <= 0 {
		l.HeaderTimeout = DefaultHeaderTimeout
	}
	if l.BodyTimeout <= 0 {
		l.BodyTimeout = DefaultBodyTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
	}
	return l
}

// Server is an HTTP server with rbee's limits; every daemon serves through
// one. Make it with NewServer.
type Server struct {
	srv    *http.Server
	limits Limits
}

// NewServer makes a server of handler with the limits (zero fields take
// the defaults). The server's own errors go to log (nil: discarded).
//
// A request with a body must deliver it within BodyTimeout. An answer of
// 400 or more given while the body is not read to its end (a refused token,
// say) goes out at once with "Connection: close": the server does not
// wait for the rest of the body first, and drops the connection after.
func NewServer(handler http.Handler, log hclog.Logger, limits Limits) *Server {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	l := limits.withDefaults()
	return &Server{limits: l, srv: &http.Server{
		Handler:           bodyLimits(l.BodyTimeout, handler),
		ReadHeaderTimeout: l.HeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}}
}

// Limits returns the limits in force, defaults filled in.
func (s *Server) Limits() Limits { return s.limits }

// Serve accepts connections on ln, at most MaxConns open at once, until
// Shutdown or Close; it then returns http.ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(LimitListener(ln, s.limits.MaxConns))
}

// Shutdown stops accepting, waits for the requests in flight until ctx
// ends, and closes the connections (see http.Server.Shutdown).
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Close closes the listener and every connection at once.
func (s *Server) Close() error { return s.srv.Close() }

// bodyLimits gives a request's body its read deadline, lifts it once the
// body has been read, and closes at once on an error answer given before
// that.
func bodyLimits(timeout time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if rc.SetReadDeadline(time.Now().Add(timeout)) != nil {
			next.ServeHTTP(w, r)
			return
		}
		b := &limitedBody{ReadCloser: r.Body, rc: rc}
		r.Body = b
		next.ServeHTTP(&limitedWriter{ResponseWriter: w, body: b}, r)
	})
}

// limitedBody is a request body under its read deadline.
type limitedBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	read atomic.Bool // read to its end: the deadline is lifted
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && b.read.CompareAndSwap(false, true) {
		// From here the server watches the connection for the client
		// going away; a deadline left in force would end that watch, and
		// with it the request's context, in the middle of a stream. The
		// server lifts it too when it starts watching; lifting it here
		// does not depend on that.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// limitedWriter closes the connection on an error answer given before the
// body was read to its end.
type limitedWriter struct {
	http.ResponseWriter
	body  *limitedBody
	wrote bool
}

func (w *limitedWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.wrote = true
		if code >= 400 && !w.body.read.Load() {
			// Without this the server would first try to read the rest of
			// the body, for keep-alive, and a client that stalls would
			// wait for its answer until the body deadline. The deadline
			// set to now makes the server give up the body at once.
			w.Header().Set("Connection", "close")
			_ = w.body.rc.SetReadDeadline(time.Now())
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the server's writer (flushes
// of event streams, deadlines).
func (w *limitedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// LimitListener returns a listener that keeps at most n of ln's
// connections open at once: Accept waits for one to close first. Closing
// it closes ln and ends waiting Accepts.
func LimitListener(ln net.Listener, n int) net.Listener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

// limitConn gives its slot back when closed (once, however often it is
// closed).
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// CloseWrite half-closes the connection, as the server does before it
// closes one, so that the client reads the last answer before a reset.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
