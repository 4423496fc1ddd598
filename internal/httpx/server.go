// Package httpx holds what rbee's daemons share on both sides of HTTP: JSON
// bodies with the 1 MiB limit, the error envelope, request ids, bearer-token
// authentication, panic recovery, and a JSON client that turns error
// envelopes back into *api.Error.
//
// Every daemon serves through [NewServer], whose [Limits] keep slow and
// idle clients from holding its connections, behind a [Guard], which keeps
// web pages from driving it (Host and Origin checks, CORS for the origins
// the user allowed).
package httpx

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"rbee/api"
)

type ctxKey int

const requestIDKey ctxKey = 0

// RequestIDHeader carries a request's id between client and daemons.
const RequestIDHeader = "X-Request-ID"

// NewID returns a random id with a prefix ("req-3f9a…"): 16 hex digits.
func NewID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// RequestID returns the request's id (set by Middleware).
func RequestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey).(string)
	return id
}

// validRequestID accepts ids a client may choose: the worker-id alphabet.
func validRequestID(id string) bool { return id != "" && api.ValidateWorkerID(id) == nil }

// withRequestID gives r its id, unless an outer handler (a Guard) did:
// the client's X-Request-ID when it is well formed, else a new one. The id
// is echoed in the response.
func withRequestID(w http.ResponseWriter, r *http.Request) *http.Request {
	if RequestID(r) != "" {
		return r
	}
	id := r.Header.Get(RequestIDHeader)
	if !validRequestID(id) {
		id = NewID("req-")
	}
	w.Header().Set(RequestIDHeader, id)
	return r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
}

// Middleware gives every request an id (the client's X-Request-ID when it is
// well formed, else a new one), echoes it in the response, and turns a panic
// into an INTERNAL error envelope logged with its stack.
func Middleware(log hclog.Logger, next http.Handler) http.Handler {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = withRequestID(w, r)
		id := RequestID(r)
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "request_id", id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				WriteError(w, r, api.Errorf(api.CodeInternal, "internal error (request %s)", id))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// WriteJSON writes v as a JSON response with the status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError writes err in the error envelope with its code's status. Errors
// that are not *api.Error become INTERNAL with a generic message (their text
// may hold paths or other details meant for logs).
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	e := ToAPIError(err)
	if e.RequestID == "" && r != nil {
		e = copyWithRequestID(e, RequestID(r))
	}
	if e.Code == api.CodeMissingAPIKey || e.Code == api.CodeInvalidAPIKey {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rbee"`)
	}
	SetRetryAfter(w, e)
	WriteJSON(w, e.HTTPStatus(), api.Envelope{Error: e})
}

// SetRetryAfter sets the Retry-After header (whole seconds, at least 1)
// from an error that says how long to wait (api.DetailRetryAfter).
func SetRetryAfter(w http.ResponseWriter, e *api.Error) {
	if d := e.RetryAfter(); d > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(max(1, (d+time.Second-1)/time.Second)), 10))
	}
}

func copyWithRequestID(e *api.Error, id string) *api.Error {
	c := *e
	c.RequestID = id
	return &c
}

// ToAPIError maps err to the envelope's error: an *api.Error as is, a
// cancelled or expired context as REQUEST_TIMEOUT, anything else INTERNAL.
func ToAPIError(err error) *api.Error {
	var e *api.Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, context.DeadlineExceeded):
		return api.Errorf(api.CodeRequestTimeout, "the request took too long")
	case errors.Is(err, context.Canceled):
		return api.Errorf(api.CodeRequestTimeout, "the request was cancelled")
	}
	return api.Errorf(api.CodeInternal, "internal error: %v", err)
}

// DecodeJSON reads a JSON body of at most api.MaxBodyBytes into v. Unknown
// fields and trailing data are INVALID_REQUEST; a larger body is
// PAYLOAD_TOO_LARGE; a body that stalls past its deadline is REQUEST_TIMEOUT.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) *api.Error {
	return decodeJSON(w, r, v, true)
}

// DecodeJSONLenient is DecodeJSON for APIs that imitate another one (OpenAI's):
// fields v does not have are ignored, as that API's servers do.
func DecodeJSONLenient(w http.ResponseWriter, r *http.Request, v any) *api.Error {
	return decodeJSON(w, r, v, false)
}

func decodeJSON(w http.ResponseWriter, r *http.Request, v any, strict bool) *api.Error {
	body := http.MaxBytesReader(w, r.Body, api.MaxBodyBytes)
	dec := json.NewDecoder(body)
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooLarge):
			return api.Errorf(api.CodePayloadTooLarge, "the request body is over %d bytes", api.MaxBodyBytes).With("limit", api.MaxBodyBytes)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return api.Errorf(api.CodeRequestTimeout, "the request body did not arrive in time")
		case errors.Is(err, io.EOF):
			return api.Errorf(api.CodeInvalidRequest, "the request body is empty; a JSON object is expected")
		case errors.As(err, &typeErr):
			field := jsonPath(reflect.TypeOf(v), typeErr.Field)
			return api.InvalidField(field, "wrong JSON type (want %s)", typeErr.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return api.InvalidField(field, "unknown field")
		}
		return api.Errorf(api.CodeInvalidRequest, "the request body is not valid JSON")
	}
	if dec.More() {
		return api.Errorf(api.CodeInvalidRequest, "the request body has data after the JSON object")
	}
	return nil
}

// jsonPath drops from encoding/json's dotted field path the names of
// embedded structs (api.SamplingParams in a request), whose fields appear at
// the top level of the JSON, so that the path names only JSON keys.
func jsonPath(t reflect.Type, path string) string {
	var out []string
	for _, name := range strings.Split(path, ".") {
		for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map) {
			t = t.Elem()
		}
		if t == nil || t.Kind() != reflect.Struct {
			out = append(out, name)
			t = nil
			continue
		}
		f, ok := t.FieldByName(name)
		if ok && f.Anonymous && f.Tag.Get("json") == "" {
			t = f.Type
			continue
		}
		out = append(out, name)
		t = jsonField(t, name)
	}
	return strings.Join(out, ".")
}

// jsonField is the type of t's field whose JSON key is key, or nil.
func jsonField(t reflect.Type, key string) reflect.Type {
	for _, f := range reflect.VisibleFields(t) {
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == key || tag == "" && strings.EqualFold(f.Name, key) {
			return f.Type
		}
	}
	return nil
}

// Auth requires "Authorization: Bearer TOKEN" on every request but those whose
// path is in public. An empty token disables the check (daemons bound to
// loopback may run without one). Tokens compare in constant time.
func Auth(token string, public []string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, p := range public {
			if r.URL.Path == p {
				next.ServeHTTP(w, r)
				return
			}
		}
		h := r.Header.Get("Authorization")
		got, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || got == "" {
			WriteError(w, r, api.Errorf(api.CodeMissingAPIKey, "this endpoint needs an API key: Authorization: Bearer TOKEN"))
			return
		}
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			WriteError(w, r, api.Errorf(api.CodeInvalidAPIKey, "the API key is not valid"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// BearerMatches reports whether r carries the token (constant time).
func BearerMatches(r *http.Request, token string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// Fingerprint identifies a token in logs without revealing it: the first 6
// hex digits of its SHA-256.
func Fingerprint(token string) string {
	if token == "" {
		return "none"
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])[:6]
}

// NewToken returns a random 256-bit token in hex.
func NewToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// MinTokenLength is the shortest token a daemon accepts when bound beyond loopback.
const MinTokenLength = 16

// CheckBind refuses to serve a non-loopback address without a token of at
// least MinTokenLength characters (docs/security.md).
func CheckBind(addr, token string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if IsLoopback(host) {
		return nil
	}
	if len(token) < MinTokenLength {
		return fmt.Errorf("refusing to listen on %s without an API key of at least %d characters (set one, or bind to 127.0.0.1)", addr, MinTokenLength)
	}
	return nil
}

// IsLoopback reports whether host is a loopback name or address.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
