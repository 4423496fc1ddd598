package httpx

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
)

// safety bounds every raw read of these tests: a server that fails to do
// what a test waits for fails the test instead of hanging it. It is never
// what a test waits for.
const safety = 30 * time.Second

// startServer serves h through NewServer on a loopback port until the
// test ends; ln, when not nil, wraps the listener first.
func startServer(t *testing.T, h http.Handler, limits Limits, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	srv := NewServer(h, nil, limits)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		assert.ErrorIs(t, <-done, http.ErrServerClosed)
	})
	return addr
}

// rawConn is a client connection written by hand, to misbehave.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(safety)))
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

func (c *rawConn) send(t *testing.T, s string) {
	t.Helper()
	_, err := io.WriteString(c, s)
	require.NoError(t, err)
}

// response reads one response and its body.
func (c *rawConn) response(t *testing.T) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	require.NoError(t, err, "a response, before the safety deadline")
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

// closedByServer waits until the server closes the connection: a read
// ends with EOF (or a reset), not with the safety deadline.
func (c *rawConn) closedByServer(t *testing.T) {
	t.Helper()
	_, err := c.br.ReadByte()
	for err == nil {
		_, err = c.br.ReadByte()
	}
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server should have closed the connection: %v", err)
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "%v", err)
}

func echoHandler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		var b body
		if err := DecodeJSON(w, r, &b); err != nil {
			WriteError(w, r, err)
			return
		}
		WriteJSON(w, 200, b)
	})
	return Middleware(nil, Auth(token, []string{"/health"}, mux))
}

func decodeEnvelope(t *testing.T, data []byte) *api.Error {
	t.Helper()
	var env api.Envelope
	require.NoError(t, json.Unmarshal(data, &env), "%s", data)
	require.NotNil(t, env.Error, "%s", data)
	return env.Error
}

// TestServerClosesSlowBody: a client that sends its headers and half its
// body, then stalls, gets REQUEST_TIMEOUT once the body timeout passes,
// and its connection is closed.
func TestServerClosesSlowBody(t *testing.T) {
	addr := startServer(t, echoHandler(""), Limits{BodyTimeout: 200 * time.Millisecond}, nil)
	c := dialRaw(t, addr)
	c.send(t, "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":\"half a bo")
	resp, data := c.response(t)
	assert.Equal(t, http.StatusRequestTimeout, resp.StatusCode)
	assert.Equal(t, api.CodeRequestTimeout, decodeEnvelope(t, data).Code)
	assert.True(t, resp.Close, "Connection: close")
	c.closedByServer(t)

	// A body that arrives in time is served, on a connection kept alive.
	c = dialRaw(t, addr)
	req := `{"name":"whole","n":1}`
	c.send(t, fmt.Sprintf("POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s", len(req), req))
	resp, data = c.response(t)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", data)
	assert.False(t, resp.Close)
	assert.JSONEq(t, req, string(data))
}

// TestServerRefusesBeforeReadingBody: without a token, a request whose
// body stalls gets its 401 at once — with a body timeout far longer than
// the test's safety bound — and the connection is closed after it.
func TestServerRefusesBeforeReadingBody(t *testing.T) {
	addr := startServer(t, echoHandler("0123456789abcdef"), Limits{BodyTimeout: time.Hour}, nil)
	c := dialRaw(t, addr)
	c.send(t, "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{\"name\":")
	resp, data := c.response(t)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Equal(t, api.CodeMissingAPIKey, decodeEnvelope(t, data).Code)
	assert.True(t, resp.Close, "Connection: close")
	c.closedByServer(t)
}

// TestServerClosesIdleKeepAlive: a keep-alive connection that sends no
// next request is closed after the idle timeout; one that stalls in its
// headers after the header timeout.
func TestServerClosesIdleKeepAlive(t *testing.T) {
	addr := startServer(t, echoHandler(""), Limits{IdleTimeout: 200 * time.Millisecond, HeaderTimeout: 200 * time.Millisecond}, nil)
	c := dialRaw(t, addr)
	c.send(t, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	resp, _ := c.response(t)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.False(t, resp.Close, "kept alive")
	c.closedByServer(t)

	c = dialRaw(t, addr)
	c.send(t, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
	c.closedByServer(t)
}

// TestServerStreamsOutliveBodyTimeout: event streams, answering a POST
// with a body or a GET, flow for longer than the body timeout, and their
// requests' contexts stay alive.
func TestServerStreamsOutliveBodyTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	const events = 8
	type outcome struct {
		sent int
		err  error
	}
	outcomes := make(chan outcome, 2)
	stream := func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			var b body
			if err := DecodeJSON(w, r, &b); err != nil {
				WriteError(w, r, err)
				return
			}
		}
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		// A slow generation: one event every half body timeout, four body
		// timeouts in all.
		tick := time.NewTicker(timeout / 2)
		defer tick.Stop()
		sent := 0
		for sent < events {
			select {
			case <-r.Context().Done():
				outcomes <- outcome{sent, r.Context().Err()}
				return
			case <-tick.C:
			}
			fmt.Fprintf(w, "data: %d\n\n", sent)
			if err := rc.Flush(); err != nil {
				outcomes <- outcome{sent, err}
				return
			}
			sent++
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
		outcomes <- outcome{sent, r.Context().Err()}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /stream", stream)
	mux.HandleFunc("GET /stream", stream)
	addr := startServer(t, Middleware(nil, mux), Limits{BodyTimeout: timeout}, nil)
	client := &http.Client{Timeout: safety}

	for _, method := range []string{http.MethodPost, http.MethodGet} {
		t.Run(method, func(t *testing.T) {
			var rd io.Reader
			if method == http.MethodPost {
				rd = strings.NewReader(`{"name":"stream"}`)
			}
			req, err := http.NewRequestWithContext(t.Context(), method, "http://"+addr+"/stream", rd)
			require.NoError(t, err)
			resp, err := client.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			data, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, events+1, strings.Count(string(data), "data: "), "%s", data)
			assert.Contains(t, string(data), "[DONE]")
			o := <-outcomes
			assert.Equal(t, events, o.sent)
			assert.NoError(t, o.err, "the request's context lived through the stream")
		})
	}
}

// countingListener records how many of its connections are open at once.
type countingListener struct {
	net.Listener
	mu       sync.Mutex
	open     int
	maxOpen  int
	accepted int
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.open++
	l.accepted++
	l.maxOpen = max(l.maxOpen, l.open)
	l.mu.Unlock()
	return &countingConn{Conn: c, l: l}, nil
}

type countingConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countingConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// TestServerConnectionCap: with more slow clients than the cap, at most
// the cap is open at once, and a genuine request is served once the slow
// ones have been dropped by the header timeout.
func TestServerConnectionCap(t *testing.T) {
	const maxConns = 2
	counting := &countingListener{}
	addr := startServer(t, echoHandler(""), Limits{MaxConns: maxConns, HeaderTimeout: 200 * time.Millisecond},
		func(ln net.Listener) net.Listener { counting.Listener = ln; return counting })

	var slow []*rawConn
	for range maxConns + 2 {
		c := dialRaw(t, addr) // the kernel completes the handshake; the server need not accept
		c.send(t, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
		slow = append(slow, c)
	}
	client := &http.Client{Timeout: safety, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/health")
	require.NoError(t, err, "the genuine request is served")
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	for _, c := range slow {
		c.closedByServer(t)
	}

	counting.mu.Lock()
	defer counting.mu.Unlock()
	assert.LessOrEqual(t, counting.maxOpen, maxConns, "never more than the cap open")
	assert.Equal(t, maxConns+3, counting.accepted, "every client was accepted in turn")
}

// TestLimitListenerClose: closing the listener ends an Accept that waits
// for a free slot.
func TestLimitListenerClose(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := LimitListener(inner, 1)
	c, err := net.Dial("tcp", inner.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	first, err := ln.Accept()
	require.NoError(t, err)
	defer first.Close()
	accepted := make(chan error, 1)
	go func() {
		_, err := ln.Accept() // waits: the one slot is taken
		accepted <- err
	}()
	require.NoError(t, ln.Close())
	assert.ErrorIs(t, <-accepted, net.ErrClosed)
}

func TestLimitsDefaults(t *testing.T) {
	l := NewServer(http.NotFoundHandler(), nil, Limits{}).Limits()
	assert.Equal(t, Limits{HeaderTimeout: 10 * time.Second, BodyTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second, MaxConns: 1024}, l)
	l = NewServer(http.NotFoundHandler(), nil, Limits{BodyTimeout: time.Second}).Limits()
	assert.Equal(t, time.Second, l.BodyTimeout)
	assert.Equal(t, DefaultHeaderTimeout, l.HeaderTimeout)
}
