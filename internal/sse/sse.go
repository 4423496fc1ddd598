// Package sse writes and reads rbee's Server-Sent Event streams (docs/protocol.md) on
// top of github.com/tmaxmax/go-sse: every event carries a self-describing JSON
// object, and every stream ends with "data: [DONE]".
package sse

import (
	"errors"
	"fmt"
	"iter"
	"net/http"
	"sync"

	gosse "github.com/tmaxmax/go-sse"
	"io"

	"rbee/api"
)

// ErrStreamClosed means a stream ended without its final [DONE]: the other
// side went away mid-stream.
var ErrStreamClosed = errors.New("stream closed unexpectedly")

// Writer sends events on an HTTP response, flushing each one. It is safe for
// concurrent use (a relay may write from two goroutines).
type Writer struct {
	mu   sync.Mutex
	w    http.ResponseWriter
	rc   *http.ResponseController
	done bool
}

// NewWriter starts an event stream: it sets the headers and writes the status.
func NewWriter(w http.ResponseWriter) *Writer {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	sw := &Writer{w: w, rc: http.NewResponseController(w)}
	_ = sw.rc.Flush()
	return sw
}

// Send writes one event and flushes it.
func (s *Writer) Send(ev api.Event) error {
	data, err := ev.MarshalData()
	if err != nil {
		return err
	}
	msg := &gosse.Message{Type: gosse.Type(string(ev.Kind))}
	msg.AppendData(string(data))
	return s.write(msg)
}

func (s *Writer) write(msg *gosse.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return fmt.Errorf("sse: stream already ended")
	}
	if _, err := msg.WriteTo(s.w); err != nil {
		return err
	}
	return s.rc.Flush()
}

// Error sends an error event, then ends the stream.
func (s *Writer) Error(e *api.Error) error {
	if err := s.Send(api.Event{Kind: api.KindError, Error: e}); err != nil {
		return err
	}
	return s.Close()
}

// Close ends the stream with "data: [DONE]". Later calls do nothing.
func (s *Writer) Close() error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	msg := &gosse.Message{}
	msg.AppendData(api.DoneData)
	err := s.write(msg)
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
	return err
}

// Read parses an event stream. It yields every event (error events included,
// as events of kind error) and ends after [DONE]. A stream that ends without
// [DONE] yields ErrStreamClosed, and a malformed event yields its parse error;
// either way iteration then stops.
func Read(r io.Reader) iter.Seq2[api.Event, error] {
	return func(yield func(api.Event, error) bool) {
		for e, err := range gosse.Read(r, &gosse.ReadConfig{MaxEventSize: api.MaxBodyBytes}) {
			if err != nil {
				yield(api.Event{}, fmt.Errorf("%w: %w", ErrStreamClosed, err))
				return
			}
			if e.Data == api.DoneData {
				return
			}
			ev, err := api.ParseEvent(e.Type, []byte(e.Data))
			if err != nil {
				yield(api.Event{}, err)
				return
			}
			if !yield(ev, nil) {
				return
			}
		}
		yield(api.Event{}, ErrStreamClosed)
	}
}
