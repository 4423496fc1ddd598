package gguf

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Parse and Open return them wrapped in a [*FormatError] that
// says where and what; test for them with errors.Is.
var (
	// ErrNotGGUF means the file does not start with the GGUF magic.
	ErrNotGGUF = errors.New("gguf: not a GGUF file")
	// ErrVersion means the file is a GGUF file of a version this package does not
	// read: v1 (32-bit counts), a version above 3, or a big-endian file.
	ErrVersion = errors.New("gguf: unsupported version")
	// ErrTruncated means the file ends before a value it declares.
	ErrTruncated = errors.New("gguf: truncated file")
	// ErrCorrupt means values in the file are inconsistent: bad alignment,
	// overlapping, misaligned or out-of-range tensor data, duplicate keys or
	// tensor names, bad dimensions, counts larger than the file can hold.
	ErrCorrupt = errors.New("gguf: corrupt file")
	// ErrUnknownType means a tensor type that ggml.Type does not know, or a
	// metadata value type above 12.
	ErrUnknownType = errors.New("gguf: unknown type")
)

// FormatError describes why a file could not be read: which file, the byte
// offset of the offending field, the sentinel error (Err) and a description of
// the field or problem (What).
type FormatError struct {
	Path   string // the file's path; "" for [Parse]
	Offset int64  // byte offset of the field that could not be read or is wrong
	Err    error  // one of the sentinel errors
	What   string // what was being read, or what is wrong with it
}

// Error reads like
// `gguf: /x/model.gguf: truncated at byte 1234 reading tensor info 5 ("blk.0.attn_q.weight")`.
func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("gguf: ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	switch {
	case errors.Is(e.Err, ErrTruncated):
		fmt.Fprintf(&b, "truncated at byte %d reading %s", e.Offset, e.What)
	case errors.Is(e.Err, ErrNotGGUF):
		fmt.Fprintf(&b, "not a GGUF file (%s)", e.What)
	default:
		kind := "error"
		switch {
		case errors.Is(e.Err, ErrVersion):
			kind = "unsupported version"
		case errors.Is(e.Err, ErrCorrupt):
			kind = "corrupt"
		case errors.Is(e.Err, ErrUnknownType):
			kind = "unknown type"
		case e.Err != nil:
			kind = e.Err.Error()
		}
		fmt.Fprintf(&b, "%s at byte %d: %s", kind, e.Offset, e.What)
	}
	return b.String()
}

// Unwrap returns the sentinel error.
func (e *FormatError) Unwrap() error { return e.Err }
