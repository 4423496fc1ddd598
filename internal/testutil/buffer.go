package testutil

import (
	"bytes"
	"sync"
)

// SyncBuffer is a bytes.Buffer that a child process's output copier, a
// logger's goroutines and the test may use at once. Its zero value is ready
// to use.
type SyncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{} // closed by the first write of at least one byte
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(p) > 0 {
		s.initLocked()
		select {
		case <-s.wrote:
		default:
			close(s.wrote)
		}
	}
	return s.b.Write(p)
}

// Wrote returns a channel that is closed once something has been written.
func (s *SyncBuffer) Wrote() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	return s.wrote
}

func (s *SyncBuffer) initLocked() {
	if s.wrote == nil {
		s.wrote = make(chan struct{})
	}
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Len returns how many bytes were written so far.
func (s *SyncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}
