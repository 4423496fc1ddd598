package rbee

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// handlerTransport is an http.RoundTripper that serves each request with an
// http.Handler in this process: no sockets. The response body is the read
// end of a pipe the handler writes into, so streams arrive as the handler
// flushes them; closing the body cancels the request's context and makes
// the handler's later writes fail, as a client hanging up would.
type handlerTransport struct {
	handler http.Handler
}

// errBodyClosed is what a handler's writes return once the client closed
// the response body.
var errBodyClosed = errors.New("rbee: the in-process client closed the response")

func (t *handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	r := req.Clone(ctx)
	if r.Body == nil {
		r.Body = http.NoBody
	}
	r.RemoteAddr = "127.0.0.1:0"
	r.RequestURI = req.URL.RequestURI()
	if r.Host == "" {
		r.Host = req.URL.Host
	}
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1

	pr, pw := io.Pipe()
	w := &pipeResponseWriter{header: make(http.Header), pw: pw, ready: make(chan struct{})}
	go func() {
		defer cancel()
		defer func() {
			if p := recover(); p != nil {
				w.fail(fmt.Errorf("rbee: in-process handler panicked: %v", p))
				pw.CloseWithError(io.ErrUnexpectedEOF)
			}
			_ = r.Body.Close()
		}()
		t.handler.ServeHTTP(w, r)
		w.WriteHeader(http.StatusOK) // a handler that wrote nothing answers 200
		pw.Close()
	}()

	select {
	case <-w.ready:
	case <-req.Context().Done():
		// The handler sees its context end; its writes fail from now on.
		pr.CloseWithError(errBodyClosed)
		return nil, req.Context().Err()
	}
	if w.err != nil {
		pr.Close()
		return nil, w.err
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)),
		StatusCode:    w.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.sent,
		Body:          &pipeBody{pr: pr, cancel: cancel},
		ContentLength: -1,
		Request:       req,
	}, nil
}

// pipeBody is a response body: closing it hangs up on the handler.
type pipeBody struct {
	pr     *io.PipeReader
	cancel context.CancelFunc
}

func (b *pipeBody) Read(p []byte) (int, error) { return b.pr.Read(p) }

func (b *pipeBody) Close() error {
	b.cancel()
	return b.pr.CloseWithError(errBodyClosed)
}

// pipeResponseWriter is the handler's side: headers are delivered to
// RoundTrip at the first WriteHeader, Write or Flush, and the body goes
// into the pipe.
type pipeResponseWriter struct {
	header http.Header
	pw     *io.PipeWriter

	once   sync.Once
	ready  chan struct{} // closed when status and sent (or err) are set
	status int
	sent   http.Header
	err    error
}

func (w *pipeResponseWriter) Header() http.Header { return w.header }

func (w *pipeResponseWriter) WriteHeader(code int) {
	if code < 200 && code != http.StatusSwitchingProtocols {
		return // informational answers are not the response
	}
	w.once.Do(func() {
		w.status = code
		w.sent = w.header.Clone()
		close(w.ready)
	})
}

func (w *pipeResponseWriter) fail(err error) {
	w.once.Do(func() {
		w.err = err
		close(w.ready)
	})
}

func (w *pipeResponseWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(p)
}

// Flush sends the headers if they are not yet; written bytes are already
// with the reader (the pipe has no buffer).
func (w *pipeResponseWriter) Flush() { w.WriteHeader(http.StatusOK) }

// FlushError is Flush for http.ResponseController.
func (w *pipeResponseWriter) FlushError() error {
	w.Flush()
	return nil
}
