package sshx

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
)

// Forward opens a local tunnel to remoteAddr as seen from the node
// (usually "127.0.0.1:9200", a hive bound to the node's loopback): it
// listens on 127.0.0.1 on a free port and carries every connection made
// there through the SSH connection. It returns the local address and a
// function that closes the tunnel and its connections; the tunnel also
// closes when ctx ends or the Client is closed.
func (c *Client) Forward(ctx context.Context, remoteAddr string) (string, func() error, error) {
	if _, _, err := net.SplitHostPort(remoteAddr); err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	f := &forward{c: c, remote: remoteAddr, ln: ln, conns: map[net.Conn]struct{}{}}
	// Dials through the tunnel end when it closes, not with ctx's values.
	dialCtx, cancelDials := context.WithCancel(context.Background())
	f.cancelDials = cancelDials
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		ln.Close()
		return "", nil, net.ErrClosed
	}
	if c.forwards == nil {
		c.forwards = map[*forward]struct{}{}
	}
	c.forwards[f] = struct{}{}
	c.mu.Unlock()

	f.wg.Add(1)
	go f.serve(dialCtx)
	stop := context.AfterFunc(ctx, func() { f.close() })
	f.mu.Lock()
	f.stopCtx = stop
	f.mu.Unlock()
	return ln.Addr().String(), f.close, nil
}

// forward is one tunnel: an accept loop and two copiers per connection,
// all waited for by close.
type forward struct {
	c      *Client
	remote string
	ln     net.Listener
	wg     sync.WaitGroup
	once   sync.Once

	cancelDials context.CancelFunc // cuts short dials still under way at close

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closed  bool
	stopCtx func() bool // unregisters the ctx watch; nil until set
}

func (f *forward) serve(ctx context.Context) {
	defer f.wg.Done()
	for {
		lc, err := f.ln.Accept()
		if err != nil {
			return
		}
		if !f.track(lc) {
			lc.Close()
			return
		}
		f.wg.Add(1)
		go f.pipe(ctx, lc)
	}
}

// track registers a connection unless the tunnel is closing.
func (f *forward) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forward) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// pipe carries one local connection to the remote address, passing each
// direction's end on as a half-close.
func (f *forward) pipe(ctx context.Context, lc net.Conn) {
	defer f.wg.Done()
	defer f.untrack(lc)
	defer lc.Close()
	rc, err := f.c.conn.DialContext(ctx, "tcp", f.remote)
	if err != nil {
		f.c.cfg.Logger.Warn("tunnel: cannot reach remote address", "host", f.c.t.host, "remote", f.remote, "error", err)
		return
	}
	if !f.track(rc) {
		rc.Close()
		return
	}
	defer f.untrack(rc)
	defer rc.Close()

	done := make(chan struct{})
	go func() {
		defer close(done)
		copyHalf(rc, lc)
	}()
	copyHalf(lc, rc)
	<-done
}

// copyHalf copies src to dst, then closes dst for writing.
func copyHalf(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
	}
}

// close stops the tunnel, closes its connections and waits for its
// goroutines. It is safe to call more than once.
func (f *forward) close() error {
	var err error
	f.once.Do(func() {
		f.cancelDials()
		f.mu.Lock()
		f.closed = true
		for c := range f.conns {
			c.Close()
		}
		stop := f.stopCtx
		f.mu.Unlock()
		if stop != nil {
			stop()
		}
		err = f.ln.Close()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		f.wg.Wait()
		f.c.mu.Lock()
		delete(f.c.forwards, f)
		f.c.mu.Unlock()
	})
	return err
}
