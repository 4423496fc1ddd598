package httpx

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"

	"rbee/api"
)

// Environment variables holding comma-separated allowed_hosts and
// allowed_origins lists. Every daemon reads them; the queen passes its
// lists to the hives it starts this way, and each hive to its workers.
const (
	AllowedHostsEnv   = "RBEE_ALLOWED_HOSTS"
	AllowedOriginsEnv = "RBEE_ALLOWED_ORIGINS"
)

// GuardConfig says which requests a daemon answers. The zero value answers
// loopback names and IP addresses only, and no web page of another origin.
type GuardConfig struct {
	// ListenAddr is the address the daemon listens on ("127.0.0.1:8080",
	// "gpu-box:9200", "0.0.0.0:9200"; a host alone is fine too). When its
	// host is a name, requests may use that name. When it is a wildcard
	// address (0.0.0.0, ::, or empty), the machine's host name is allowed.
	ListenAddr string
	// AllowedHosts are further names requests may give in their Host
	// header: "gpu-box.example.com", "*.example.com" (any subdomain, not
	// example.com itself), or "*" (any name: turns the check off).
	AllowedHosts []string
	// AllowedOrigins are the web origins whose pages may call the daemon:
	// "https://app.example.com:3000" (exact; the port is part of the
	// origin), "https://*.example.com" (any subdomain, any port),
	// "app://*" (any origin of that scheme), or "*" (any page at all).
	AllowedOrigins []string
	// Hostname returns the machine's host name; os.Hostname when nil.
	Hostname func() (string, error)
	// Logger receives a warning for each refused request (default none).
	Logger hclog.Logger
}

// Guard keeps web pages from driving a daemon. Browsers let any page send
// requests to any address, including loopback: a cross-site "simple" POST
// (text/plain or form encoded) goes out without a CORS preflight, and a
// page whose own name was rebound in DNS to 127.0.0.1 can even read the
// answers. Two checks stop both, while programs like curl and the rbee
// client, which send no Origin header, keep working with any content type:
//
//   - Host: the request must name the daemon by an IP address, a loopback
//     name (localhost, *.localhost), the name it listens on (or, bound to
//     a wildcard address, the machine's host name), or an allowed host.
//     A rebinding page's requests carry its own name, and are refused.
//     An IP address is fine: rebinding needs a name.
//   - Origin: a request that carries one is refused unless it is the
//     daemon's own origin (scheme://Host of the request itself) or one of
//     the allowed origins. Browsers send Origin on every cross-site POST.
//
// Both checks cover every endpoint, health included: health needs no token,
// but a web page has no business probing it either. Allowed origins get
// CORS answers, preflight included, so that browser apps the user allowed
// can call the API with their bearer token. A refusal is FORBIDDEN (403)
// with a hint naming the setting.
type Guard struct {
	anyHost  bool
	hosts    map[string]bool // exact names, lowercased
	suffixes []string        // ".example.com" from "*.example.com"

	anyOrigin bool
	origins   map[string]bool // exact origins, normalized
	patterns  []originPattern

	log hclog.Logger
}

// originPattern is a wildcard origin: a scheme and a host suffix ("" for
// any host of the scheme), and a port ("" for any).
type originPattern struct {
	scheme, suffix, port string
}

// NewGuard checks the allowed lists (see [CheckAllowedHosts] and
// [CheckAllowedOrigins]) and makes the guard.
func NewGuard(cfg GuardConfig) (*Guard, error) {
	if err := CheckAllowedHosts(cfg.AllowedHosts); err != nil {
		return nil, err
	}
	if err := CheckAllowedOrigins(cfg.AllowedOrigins); err != nil {
		return nil, err
	}
	g := &Guard{hosts: map[string]bool{}, origins: map[string]bool{}, log: cfg.Logger}
	if g.log == nil {
		g.log = hclog.NewNullLogger()
	}
	listen := hostOnly(cfg.ListenAddr)
	switch {
	case listen == "" || isWildcard(listen):
		hostname := cfg.Hostname
		if hostname == nil {
			hostname = os.Hostname
		}
		if name, err := hostname(); err == nil && name != "" {
			g.hosts[canonHost(name)] = true
		}
	case net.ParseIP(listen) == nil:
		g.hosts[canonHost(listen)] = true
	}
	for _, h := range cfg.AllowedHosts {
		h = canonHost(strings.TrimSpace(h))
		switch {
		case h == "*":
			g.anyHost = true
		case strings.HasPrefix(h, "*."):
			g.suffixes = append(g.suffixes, h[1:])
		default:
			g.hosts[h] = true
		}
	}
	for _, o := range cfg.AllowedOrigins {
		o = strings.TrimSpace(o)
		if o == "*" {
			g.anyOrigin = true
			continue
		}
		p, _ := parseOriginPattern(o) // checked above
		if strings.HasPrefix(p.host, "*") {
			g.patterns = append(g.patterns, originPattern{scheme: p.scheme, suffix: strings.TrimPrefix(p.host, "*"), port: p.port})
			continue
		}
		g.origins[p.String()] = true
	}
	return g, nil
}

// Wrap puts the guard in front of next. Refusals and preflight answers do
// not reach next, so it goes outside authentication (browsers send no
// token on a preflight).
func (g *Guard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := hostOnly(r.Host)
		if !g.hostAllowed(host) {
			r = withRequestID(w, r)
			g.log.Warn("refused a request naming an unknown host (DNS rebinding?)", "host", r.Host, "method", r.Method,
				"path", r.URL.Path, "remote", r.RemoteAddr, "request_id", RequestID(r))
			WriteError(w, r, api.Errorf(api.CodeForbidden, "this daemon does not answer to the host name %q: requests must name it by an IP address, a loopback name or an allowed host", clip(host)).
				With("host", clip(host)).
				WithHint("if you reach it by that name on purpose, add the name to allowed_hosts ([security] allowed_hosts in the configuration file, $"+AllowedHostsEnv+" or --allowed-hosts)"))
			return
		}
		origin := r.Header.Get("Origin")
		if origin == "" || sameOrigin(r, origin) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Origin")
		if !g.originAllowed(origin) {
			r = withRequestID(w, r)
			g.log.Warn("refused a request from a web page", "origin", origin, "method", r.Method, "path", r.URL.Path,
				"remote", r.RemoteAddr, "request_id", RequestID(r))
			WriteError(w, r, api.Errorf(api.CodeForbidden, "requests from web pages at %q are refused: only origins in allowed_origins may use this daemon from a browser", clip(origin)).
				With("origin", clip(origin)).
				WithHint("to let a browser app at this origin use rbee, add it to allowed_origins ([security] allowed_origins in the configuration file, $"+AllowedOriginsEnv+" or --allowed-origins)"))
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Expose-Headers", RequestIDHeader)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", allowHeaders(r.Header.Get("Access-Control-Request-Headers")))
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// corsHeaders are always allowed on preflight: what rbee's API uses.
var corsHeaders = []string{"Authorization", "Content-Type", "Accept", "Last-Event-ID", RequestIDHeader, "X-Rbee-Node"}

// allowHeaders answers a preflight's Access-Control-Request-Headers: the
// headers rbee uses, and those the page asked for (an allowed origin is
// trusted; SDKs send headers of their own).
func allowHeaders(requested string) string {
	out := slices.Clone(corsHeaders)
	for _, f := range strings.Split(requested, ",") {
		f = strings.TrimSpace(f)
		if f == "" || !isToken(f) || slices.ContainsFunc(out, func(h string) bool { return strings.EqualFold(h, f) }) {
			continue
		}
		out = append(out, f)
	}
	return strings.Join(out, ", ")
}

// isToken reports whether s is an HTTP header name.
func isToken(s string) bool {
	for _, c := range s {
		if c > 0x7e || c <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c) {
			return false
		}
	}
	return s != ""
}

func (g *Guard) hostAllowed(host string) bool {
	if g.anyHost || host == "" || net.ParseIP(host) != nil {
		return true // no Host (HTTP/1.0), or an address: rebinding needs a name
	}
	h := canonHost(host)
	if h == "localhost" || strings.HasSuffix(h, ".localhost") || g.hosts[h] {
		return true
	}
	for _, s := range g.suffixes {
		if strings.HasSuffix(h, s) && len(h) > len(s) {
			return true
		}
	}
	return false
}

func (g *Guard) originAllowed(origin string) bool {
	if g.anyOrigin {
		return true
	}
	o, err := parseOrigin(origin)
	if err != nil {
		return false // "null" (sandboxed pages, file:) and anything odd
	}
	if g.origins[o.String()] {
		return true
	}
	for _, p := range g.patterns {
		if p.scheme != o.scheme || (p.port != "" && p.port != o.port) {
			continue
		}
		if p.suffix == "" || strings.HasSuffix(o.host, p.suffix) && len(o.host) > len(p.suffix) {
			return true
		}
	}
	return false
}

// sameOrigin reports whether origin is the daemon's own, as the request
// reached it: a page the daemon served itself.
func sameOrigin(r *http.Request, origin string) bool {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return strings.EqualFold(origin, scheme+"://"+r.Host)
}

// origin is a parsed origin or origin pattern, lowercased.
type origin struct{ scheme, host, port string }

func (o origin) String() string {
	host := o.host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if o.port == "" {
		return o.scheme + "://" + host
	}
	return o.scheme + "://" + host + ":" + o.port
}

// parseOrigin parses what browsers send: scheme://host[:port].
func parseOrigin(s string) (origin, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return origin{}, fmt.Errorf("%q is not an origin like https://app.example.com:3000", s)
	}
	return origin{scheme: strings.ToLower(u.Scheme), host: canonHost(u.Hostname()), port: u.Port()}, nil
}

// parseOriginPattern parses an allowed_origins entry other than "*".
func parseOriginPattern(s string) (origin, error) {
	// url.Parse refuses "*" in a host; check the rest with a stand-in.
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return origin{}, fmt.Errorf("%q is not an origin like https://app.example.com:3000 (or https://*.example.com)", s)
	}
	wild := ""
	switch {
	case rest == "*" || strings.HasPrefix(rest, "*:") || rest == "*/":
		wild, rest = "*", "wildcard.invalid"+strings.TrimPrefix(rest, "*")
	case strings.HasPrefix(rest, "*."):
		wild, rest = "*", "wildcard"+strings.TrimPrefix(rest, "*")
	}
	o, err := parseOrigin(scheme + "://" + rest)
	if err != nil {
		return origin{}, fmt.Errorf("%q is not an origin like https://app.example.com:3000 (or https://*.example.com)", s)
	}
	switch {
	case wild != "" && o.host == "wildcard.invalid":
		o.host = "*"
	case wild != "":
		o.host = "*" + strings.TrimPrefix(o.host, "wildcard")
		if !validName(strings.TrimPrefix(o.host, "*.")) {
			return origin{}, fmt.Errorf("%q: the part after *. must be a domain name", s)
		}
	case strings.Contains(o.host, "*"):
		return origin{}, fmt.Errorf("%q: a wildcard stands only at the start of the host (https://*.example.com)", s)
	}
	return o, nil
}

// CheckAllowedHosts checks allowed_hosts entries: host names (no port, no
// scheme), "*.domain" wildcards, IP addresses, or "*".
func CheckAllowedHosts(hosts []string) error {
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
			return fmt.Errorf("allowed_hosts: an entry is empty")
		case h == "*":
		case strings.Contains(h, "/"):
			return fmt.Errorf("allowed_hosts: %q is a URL; give the host name alone (gpu-box.example.com)", h)
		case net.ParseIP(strings.Trim(h, "[]")) != nil:
		case strings.Contains(h, ":"):
			return fmt.Errorf("allowed_hosts: %q: give the host name without a port", h)
		case strings.HasPrefix(h, "*."):
			if !validName(h[2:]) {
				return fmt.Errorf("allowed_hosts: %q: the part after *. must be a domain name", h)
			}
		case !validName(h):
			return fmt.Errorf("allowed_hosts: %q is not a host name (letters, digits, -, _ and dots; a wildcard only as *.domain)", h)
		}
	}
	return nil
}

// CheckAllowedOrigins checks allowed_origins entries: origins like
// "https://app.example.com:3000", "scheme://*.domain[:port]",
// "scheme://*", or "*".
func CheckAllowedOrigins(origins []string) error {
	for _, o := range origins {
		o = strings.TrimSpace(o)
		switch {
		case o == "":
			return fmt.Errorf("allowed_origins: an entry is empty")
		case o == "*":
		default:
			if _, err := parseOriginPattern(o); err != nil {
				return fmt.Errorf("allowed_origins: %w", err)
			}
		}
	}
	return nil
}

// SplitList splits a comma-separated list (an environment variable or a
// flag), trimming spaces and dropping empty entries.
func SplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// validName reports whether s is a DNS name: dot-separated labels of
// letters, digits, '-' and '_', each 1 to 63 long, at most 253 in all.
func validName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// hostOnly is the host of a Host header or listen address, without port
// or brackets.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

// canonHost lowercases a name and drops a final dot ("LocalHost." is
// localhost).
func canonHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

func isWildcard(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// clip bounds a client-supplied value quoted in an error.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
