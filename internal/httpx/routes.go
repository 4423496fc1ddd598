package httpx

import (
	"net/http"
	"strings"

	"rbee/api"
)

// probeMethods are the methods Router tries when a request's method has no
// route, to find those its path does have. A route registered for GET also
// serves HEAD, so both are listed for it.
var probeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions}

// Router serves a ServeMux and answers the requests none of its patterns
// matches in rbee's error envelope, where the bare ServeMux would answer in
// plain text: a path that no pattern serves gets NOT_FOUND (404), and a path
// served only with other methods gets METHOD_NOT_ALLOWED (405) with an
// Allow header that lists them. Register every route with a method
// ("POST /v1/inference"): a pattern without one matches all methods and so
// leaves nothing for Router to answer.
type Router struct {
	// Mux holds the routes.
	Mux *http.ServeMux
	// Daemon names the server in messages ("the queen").
	Daemon string
	// Hint, when set, is the details.hint of NOT_FOUND answers: where the
	// server's endpoints are.
	Hint string
	// WriteError answers with the error; nil means WriteError, the error
	// envelope. A server that speaks another API's error shape sets its own.
	WriteError func(w http.ResponseWriter, r *http.Request, err error)
}

// Routes returns a Router over mux that answers in the error envelope.
func Routes(mux *http.ServeMux, daemon, hint string) *Router {
	return &Router{Mux: mux, Daemon: daemon, Hint: hint}
}

// ServeHTTP serves r with the mux when one of its patterns matches (a
// redirect to the cleaned path included), and otherwise answers NOT_FOUND or
// METHOD_NOT_ALLOWED.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := rt.Mux.Handler(r); pattern != "" {
		rt.Mux.ServeHTTP(w, r)
		return
	}
	write := rt.WriteError
	if write == nil {
		write = WriteError
	}
	if allowed := rt.Allowed(r); len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		write(w, r, api.Errorf(api.CodeMethodNotAllowed, "%s is not allowed on %q (use %s)", r.Method, r.URL.Path, strings.Join(allowed, " or ")).
			With("method", r.Method).With("allowed", allowed))
		return
	}
	daemon := rt.Daemon
	if daemon == "" {
		daemon = "this server"
	}
	e := api.Errorf(api.CodeNotFound, "%s has no endpoint %s %q", daemon, r.Method, r.URL.Path).With("method", r.Method)
	if rt.Hint != "" {
		e = e.WithHint(rt.Hint)
	}
	write(w, r, e)
}

// Allowed lists the methods the mux serves r's path with, in the order of
// an Allow header; none when no pattern serves the path.
func (rt *Router) Allowed(r *http.Request) []string {
	var allowed []string
	for _, m := range probeMethods {
		p := r.WithContext(r.Context()) // a shallow copy whose method may change
		p.Method = m
		if _, pattern := rt.Mux.Handler(p); pattern != "" {
			allowed = append(allowed, m)
		}
	}
	return allowed
}
