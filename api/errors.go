package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Code is a machine-readable error code (docs/errors.md lists them).
type Code string

// The error codes and, in HTTPStatus, their HTTP statuses.
const (
	CodeInvalidRequest      Code = "INVALID_REQUEST"
	CodeMissingAPIKey       Code = "MISSING_API_KEY"
	CodeInvalidAPIKey       Code = "INVALID_API_KEY"
	CodeForbidden           Code = "FORBIDDEN"
	CodeNodeNotFound        Code = "NODE_NOT_FOUND"
	CodeWorkerNotFound      Code = "WORKER_NOT_FOUND"
	CodeModelNotFound       Code = "MODEL_NOT_FOUND"
	CodeNotFound            Code = "NOT_FOUND"
	CodeMethodNotAllowed    Code = "METHOD_NOT_ALLOWED"
	CodeNotImplemented      Code = "NOT_IMPLEMENTED"
	CodeRequestTimeout      Code = "REQUEST_TIMEOUT"
	CodeNodeAlreadyExists   Code = "NODE_ALREADY_EXISTS"
	CodeVersionMismatch     Code = "VERSION_MISMATCH"
	CodePayloadTooLarge     Code = "PAYLOAD_TOO_LARGE"
	CodeRateLimited         Code = "RATE_LIMITED"
	CodeInferenceFailed     Code = "INFERENCE_FAILED"
	CodeInternal            Code = "INTERNAL"
	CodeSSHConnectionFailed Code = "SSH_CONNECTION_FAILED"
	CodeSSHAuthFailed       Code = "SSH_AUTH_FAILED"
	CodeHostKeyMismatch     Code = "HOST_KEY_MISMATCH"
	CodeDownloadFailed      Code = "DOWNLOAD_FAILED"
	CodeChecksumMismatch    Code = "CHECKSUM_MISMATCH"
	CodeWorkerCrashed       Code = "WORKER_CRASHED"
	CodeAllSlotsBusy        Code = "ALL_SLOTS_BUSY"
	CodeShuttingDown        Code = "SHUTTING_DOWN"
	CodeConnectionTimeout   Code = "CONNECTION_TIMEOUT"
	CodeDownloadTimeout     Code = "DOWNLOAD_TIMEOUT"
	CodeLoadingTimeout      Code = "LOADING_TIMEOUT"
	CodeInsufficientRAM     Code = "INSUFFICIENT_RAM"
	CodeVRAMExhausted       Code = "VRAM_EXHAUSTED"
	CodeInsufficientDisk    Code = "INSUFFICIENT_DISK"
	CodeBackendUnavailable  Code = "BACKEND_UNAVAILABLE"
)

var statuses = map[Code]int{
	CodeInvalidRequest:      http.StatusBadRequest,
	CodeMissingAPIKey:       http.StatusUnauthorized,
	CodeInvalidAPIKey:       http.StatusUnauthorized,
	CodeForbidden:           http.StatusForbidden,
	CodeNodeNotFound:        http.StatusNotFound,
	CodeWorkerNotFound:      http.StatusNotFound,
	CodeModelNotFound:       http.StatusNotFound,
	CodeNotFound:            http.StatusNotFound,
	CodeMethodNotAllowed:    http.StatusMethodNotAllowed,
	CodeNotImplemented:      http.StatusNotImplemented,
	CodeRequestTimeout:      http.StatusRequestTimeout,
	CodeNodeAlreadyExists:   http.StatusConflict,
	CodeVersionMismatch:     http.StatusConflict,
	CodePayloadTooLarge:     http.StatusRequestEntityTooLarge,
	CodeRateLimited:         http.StatusTooManyRequests,
	CodeInferenceFailed:     http.StatusInternalServerError,
	CodeInternal:            http.StatusInternalServerError,
	CodeSSHConnectionFailed: http.StatusBadGateway,
	CodeSSHAuthFailed:       http.StatusBadGateway,
	CodeHostKeyMismatch:     http.StatusBadGateway,
	CodeDownloadFailed:      http.StatusBadGateway,
	CodeChecksumMismatch:    http.StatusBadGateway,
	CodeWorkerCrashed:       http.StatusBadGateway,
	CodeAllSlotsBusy:        http.StatusServiceUnavailable,
	CodeShuttingDown:        http.StatusServiceUnavailable,
	CodeConnectionTimeout:   http.StatusGatewayTimeout,
	CodeDownloadTimeout:     http.StatusGatewayTimeout,
	CodeLoadingTimeout:      http.StatusGatewayTimeout,
	CodeInsufficientRAM:     http.StatusInsufficientStorage,
	CodeVRAMExhausted:       http.StatusInsufficientStorage,
	CodeInsufficientDisk:    http.StatusInsufficientStorage,
	CodeBackendUnavailable:  http.StatusBadRequest,
}

// HTTPStatus is the status an error with this code is sent with outside a stream.
func (c Code) HTTPStatus() int {
	if s, ok := statuses[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Known reports whether c is one of the defined codes.
func (c Code) Known() bool { _, ok := statuses[c]; return ok }

// Codes lists every defined code.
func Codes() []Code {
	out := make([]Code, 0, len(statuses))
	for c := range statuses {
		out = append(out, c)
	}
	return out
}

// Error is rbee's error: the body of the error envelope, and the Go error
// every rbee API returns for a failure with a code.
//
// Match codes with errors.Is against the sentinels (errors.Is(err,
// api.ErrNodeNotFound)) or read the fields with errors.As.
type Error struct {
	Code      Code           `json:"code"`
	Message   string         `json:"message"`
	Details   map[string]any `json:"details,omitempty"`
	RequestID string         `json:"request_id,omitempty"`
}

// Envelope is the JSON body of an error response: {"error": {...}}.
type Envelope struct {
	Error *Error `json:"error"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return e.Message
}

// Is matches another *Error with the same code; sentinels have no message,
// so errors.Is(err, ErrNodeNotFound) asks only for the code.
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) || t == nil {
		return false
	}
	return t.Code == e.Code
}

// HTTPStatus is the status the error is sent with.
func (e *Error) HTTPStatus() int { return e.Code.HTTPStatus() }

// Hint returns details["hint"], the advice a program may show a person.
func (e *Error) Hint() string {
	h, _ := e.Details["hint"].(string)
	return h
}

// Errorf makes an *Error with a formatted message.
func Errorf(code Code, format string, a ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, a...)}
}

// With returns a copy of e with details key set to value.
func (e *Error) With(key string, value any) *Error {
	c := *e
	c.Details = make(map[string]any, len(e.Details)+1)
	for k, v := range e.Details {
		c.Details[k] = v
	}
	c.Details[key] = value
	return &c
}

// WithHint returns a copy of e with details.hint set.
func (e *Error) WithHint(hint string) *Error { return e.With("hint", hint) }

// DetailRetryAfter is the details key of how many seconds a client should
// wait before trying again (a whole number, at least 1). Servers send it as
// the Retry-After header too when the error is the whole answer; inside an
// event stream the detail is the only place for it.
const DetailRetryAfter = "retry_after_s"

// RetryAfter returns how long the server asked the client to wait before
// trying again (details.retry_after_s, filled from a Retry-After header by
// rbee's clients), or 0 when it did not say.
func (e *Error) RetryAfter() time.Duration {
	var s float64
	switch v := e.Details[DetailRetryAfter].(type) {
	case float64:
		s = v
	case int:
		s = float64(v)
	case int64:
		s = float64(v)
	default:
		return 0
	}
	if s <= 0 || s > 1e6 {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}

// AsError returns err as an *Error: itself if it is one (or wraps one),
// otherwise an INTERNAL error carrying err's text.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}

// Sentinels for errors.Is, one per code.
var (
	ErrInvalidRequest      = &Error{Code: CodeInvalidRequest}
	ErrMissingAPIKey       = &Error{Code: CodeMissingAPIKey}
	ErrInvalidAPIKey       = &Error{Code: CodeInvalidAPIKey}
	ErrForbidden           = &Error{Code: CodeForbidden}
	ErrNodeNotFound        = &Error{Code: CodeNodeNotFound}
	ErrWorkerNotFound      = &Error{Code: CodeWorkerNotFound}
	ErrModelNotFound       = &Error{Code: CodeModelNotFound}
	ErrNotFound            = &Error{Code: CodeNotFound}
	ErrMethodNotAllowed    = &Error{Code: CodeMethodNotAllowed}
	ErrRequestTimeout      = &Error{Code: CodeRequestTimeout}
	ErrNodeAlreadyExists   = &Error{Code: CodeNodeAlreadyExists}
	ErrVersionMismatch     = &Error{Code: CodeVersionMismatch}
	ErrPayloadTooLarge     = &Error{Code: CodePayloadTooLarge}
	ErrRateLimited         = &Error{Code: CodeRateLimited}
	ErrInferenceFailed     = &Error{Code: CodeInferenceFailed}
	ErrInternal            = &Error{Code: CodeInternal}
	ErrSSHConnectionFailed = &Error{Code: CodeSSHConnectionFailed}
	ErrSSHAuthFailed       = &Error{Code: CodeSSHAuthFailed}
	ErrHostKeyMismatch     = &Error{Code: CodeHostKeyMismatch}
	ErrDownloadFailed      = &Error{Code: CodeDownloadFailed}
	ErrChecksumMismatch    = &Error{Code: CodeChecksumMismatch}
	ErrWorkerCrashed       = &Error{Code: CodeWorkerCrashed}
	ErrAllSlotsBusy        = &Error{Code: CodeAllSlotsBusy}
	ErrShuttingDown        = &Error{Code: CodeShuttingDown}
	ErrConnectionTimeout   = &Error{Code: CodeConnectionTimeout}
	ErrDownloadTimeout     = &Error{Code: CodeDownloadTimeout}
	ErrLoadingTimeout      = &Error{Code: CodeLoadingTimeout}
	ErrInsufficientRAM     = &Error{Code: CodeInsufficientRAM}
	ErrVRAMExhausted       = &Error{Code: CodeVRAMExhausted}
	ErrInsufficientDisk    = &Error{Code: CodeInsufficientDisk}
	ErrBackendUnavailable  = &Error{Code: CodeBackendUnavailable}
)

// InvalidField is the INVALID_REQUEST error for one field: details.field
// names it; the value is never echoed.
func InvalidField(field, format string, a ...any) *Error {
	return (&Error{Code: CodeInvalidRequest, Message: fmt.Sprintf("invalid %s: ", field) + fmt.Sprintf(format, a...)}).With("field", field)
}
