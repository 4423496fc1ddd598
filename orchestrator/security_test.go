package orchestrator

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

// These tests run the queen as it serves for real: Run on a loopback
// port, through httpx.NewServer, with short limits where a test needs
// them. The local hive and its workers are fakes.

// safety bounds the raw reads below, so that a daemon that fails to do
// what a test waits for fails the test instead of hanging it. It is never
// what a test waits for.
const safety = 30 * time.Second

// runQueen runs a queen with cfg (test defaults filled in) on a free
// loopback port until the test ends, and returns its base URL.
func runQueen(t *testing.T, cfg Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg.Listener = ln
	if cfg.Home == "" {
		cfg.Home = t.TempDir()
	}
	if cfg.Binary == "" {
		cfg.Binary = "/nonexistent/rbee"
	}
	if cfg.HiveRetryDelays == nil {
		cfg.HiveRetryDelays = []time.Duration{0, 20 * time.Millisecond}
	}
	q, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	return "http://" + ln.Addr().String()
}

// send does one request with the given Host (when not empty) and headers,
// and returns the response with its body read.
func send(t *testing.T, method, url, host, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	require.NoError(t, err)
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := (&http.Client{Timeout: safety}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, data
}

func forbidden(t *testing.T, resp *http.Response, data []byte, setting string) {
	t.Helper()
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "%s", data)
	var env api.Envelope
	require.NoError(t, json.Unmarshal(data, &env), "%s", data)
	assertEnvelope(t, env.Error, api.CodeForbidden, resp.Header.Get(httpx.RequestIDHeader))
	assert.Contains(t, env.Error.Hint(), setting)
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
}

func taskJSON(t *testing.T) string {
	t.Helper()
	b, err := json.Marshal(taskBody("local"))
	require.NoError(t, err)
	return string(b)
}

// TestQueenRefusesCrossSitePost: a web page's "simple" cross-site POST to
// /v2/tasks — text/plain or form encoded, which browsers send without a
// preflight, always with an Origin — is FORBIDDEN and starts nothing.
func TestQueenRefusesCrossSitePost(t *testing.T) {
	hive := newFakeHive(t, "")
	w := newFakeWorker(t, "w-idle")
	hive.addWorker(w.info(testModel, api.StateIdle))
	url := runQueen(t, Config{LocalHivePort: hive.port()})

	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json"} {
		resp, data := send(t, http.MethodPost, url+"/v2/tasks", "", taskJSON(t), "Content-Type", ct, "Origin", "https://evil.example")
		forbidden(t, resp, data, "allowed_origins")
	}
	resp, data := send(t, http.MethodPost, url+"/v2/registry/beehives/add", "",
		`{"node_name":"x","ssh_host":"evil.example","install_path":"/opt/rbee","accept_new_host_key":true}`,
		"Content-Type", "text/plain", "Origin", "https://evil.example")
	forbidden(t, resp, data, "allowed_origins")
	assert.Equal(t, 0, w.inferCount(), "no inference started")
	assert.Equal(t, 0, hive.spawnCount())
}

// TestQueenRefusesRebindingHost: a page whose name was rebound to
// 127.0.0.1 sends its own name as Host; every endpoint, health included,
// refuses it.
func TestQueenRefusesRebindingHost(t *testing.T) {
	hive := newFakeHive(t, "")
	url := runQueen(t, Config{LocalHivePort: hive.port()})
	for _, path := range []string{"/v2/workers/list", "/v2/registry/beehives/list", "/v2/logs?node=local", "/v1/models", "/metrics", "/health"} {
		resp, data := send(t, http.MethodGet, url+path, "evil.example:8080", "")
		forbidden(t, resp, data, "allowed_hosts")
		assert.Contains(t, string(data), "evil.example", path)
	}
	resp, data := send(t, http.MethodPost, url+"/v2/tasks", "evil.example:8080", taskJSON(t))
	forbidden(t, resp, data, "allowed_hosts")

	// The names the queen does answer to.
	port := strings.TrimPrefix(url, "http://127.0.0.1:")
	for _, host := range []string{"", "localhost:" + port, "[::1]:" + port, "rbee.localhost:" + port} {
		resp, data := send(t, http.MethodGet, url+"/v2/workers/list", host, "")
		assert.Equal(t, http.StatusOK, resp.StatusCode, "Host %q: %s", host, data)
	}
}

// TestQueenAllowedHostsSetting: a name in AllowedHosts is answered.
func TestQueenAllowedHostsSetting(t *testing.T) {
	url := runQueen(t, Config{AllowedHosts: []string{"queen.example.com", "*.lan"}})
	for host, want := range map[string]int{"queen.example.com:8080": 200, "box.lan": 200, "evil.example": 403} {
		resp, data := send(t, http.MethodGet, url+"/health", host, "")
		assert.Equal(t, want, resp.StatusCode, "Host %q: %s", host, data)
	}
}

// TestQueenCurlStylePost: a POST without Content-Type and without Origin,
// as `curl -d` or an SDK sends it, still runs a task.
func TestQueenCurlStylePost(t *testing.T) {
	hive := newFakeHive(t, "")
	w := newFakeWorker(t, "w-idle")
	hive.addWorker(w.info(testModel, api.StateIdle))
	url := runQueen(t, Config{LocalHivePort: hive.port()})

	for _, ct := range []string{"", "application/x-www-form-urlencoded", "text/plain"} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/v2/tasks", strings.NewReader(taskJSON(t)))
		require.NoError(t, err)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "Content-Type %q", ct)
		var text strings.Builder
		var done *api.Done
		for ev, err := range sse.Read(resp.Body) {
			require.NoError(t, err)
			if ev.Kind == api.KindToken {
				text.WriteString(ev.Token.Token)
			}
			if ev.Kind == api.KindDone {
				done = ev.Done
			}
		}
		resp.Body.Close()
		assert.Equal(t, "Once upon a time", text.String())
		require.NotNil(t, done)
	}
	assert.Equal(t, 3, w.inferCount())
}

// TestQueenAllowedOriginGetsCORS: a browser app at an allowed origin gets
// its preflight answered (without a token, as browsers send it) and its
// requests served, with CORS headers; the queen's own pages need no
// setting.
func TestQueenAllowedOriginGetsCORS(t *testing.T) {
	const token = "queen-token-0123456789"
	const app = "http://localhost:3000"
	hive := newFakeHive(t, "")
	w := newFakeWorker(t, "w-idle")
	hive.addWorker(w.info(testModel, api.StateIdle))
	url := runQueen(t, Config{LocalHivePort: hive.port(), Token: token, AllowedOrigins: []string{app}})

	resp, data := send(t, http.MethodOptions, url+"/v2/tasks", "", "", "Origin", app,
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type")
	require.Equal(t, http.StatusNoContent, resp.StatusCode, "%s", data)
	assert.Equal(t, app, resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "POST")
	assert.Contains(t, resp.Header.Get("Access-Control-Allow-Headers"), "Authorization")

	resp, data = send(t, http.MethodPost, url+"/v2/tasks", "", taskJSON(t), "Origin", app,
		"Content-Type", "application/json", "Authorization", "Bearer "+token)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", data)
	assert.Equal(t, app, resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Contains(t, string(data), "[DONE]")
	assert.Equal(t, 1, w.inferCount())

	resp, data = send(t, http.MethodGet, url+"/v2/workers/list", "", "", "Origin", app)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the token is still required: %s", data)
	assert.Equal(t, app, resp.Header.Get("Access-Control-Allow-Origin"), "so that the page can read why")

	resp, data = send(t, http.MethodGet, url+"/v2/workers/list", "", "", "Origin", url, "Authorization", "Bearer "+token)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the queen's own origin: %s", data)

	resp, data = send(t, http.MethodOptions, url+"/v2/tasks", "", "", "Origin", "http://localhost:3001", "Access-Control-Request-Method", "POST")
	forbidden(t, resp, data, "allowed_origins")
}

// rawConn is a connection written by hand, to misbehave.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, url string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
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

func (c *rawConn) response(t *testing.T) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	require.NoError(t, err, "a response, before the safety deadline")
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, data
}

// closedByServer reads until the daemon closes the connection (EOF or a
// reset; the safety deadline fails the test).
func (c *rawConn) closedByServer(t *testing.T) {
	t.Helper()
	_, err := c.br.ReadByte()
	for err == nil {
		_, err = c.br.ReadByte()
	}
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the daemon should have closed the connection: %v", err)
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "%v", err)
}

func halfTask(t *testing.T, auth string) string {
	t.Helper()
	body := taskJSON(t)
	return fmt.Sprintf("POST /v2/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s",
		auth, len(body), body[:len(body)/2])
}

// TestQueenClosesSlowBody: a client that sends its headers and half its
// body, then stalls, is answered REQUEST_TIMEOUT after the body timeout and
// its connection closed; no task starts.
func TestQueenClosesSlowBody(t *testing.T) {
	hive := newFakeHive(t, "")
	url := runQueen(t, Config{LocalHivePort: hive.port(), limits: httpx.Limits{BodyTimeout: 200 * time.Millisecond}})
	c := dialRaw(t, url)
	c.send(t, halfTask(t, ""))
	resp, data := c.response(t)
	assert.Equal(t, http.StatusRequestTimeout, resp.StatusCode, "%s", data)
	assert.Contains(t, string(data), string(api.CodeRequestTimeout))
	c.closedByServer(t)
	assert.Equal(t, 0, hive.spawnCount())
}

// TestQueenUnauthenticatedStalledBody: without a token, a request whose
// body stalls gets its 401 at once (the body timeout is an hour), and the
// connection is closed after it.
func TestQueenUnauthenticatedStalledBody(t *testing.T) {
	url := runQueen(t, Config{Token: "queen-token-0123456789", limits: httpx.Limits{BodyTimeout: time.Hour}})
	for _, auth := range []string{"", "Authorization: Bearer wrong-token-0123456789\r\n"} {
		c := dialRaw(t, url)
		c.send(t, halfTask(t, auth))
		resp, data := c.response(t)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s", data)
		assert.True(t, resp.Close, "Connection: close")
		c.closedByServer(t)
	}
}

// TestQueenClosesIdleKeepAlive: a keep-alive connection left idle is
// closed after the idle timeout.
func TestQueenClosesIdleKeepAlive(t *testing.T) {
	url := runQueen(t, Config{limits: httpx.Limits{IdleTimeout: 200 * time.Millisecond}})
	c := dialRaw(t, url)
	c.send(t, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	resp, _ := c.response(t)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.False(t, resp.Close, "kept alive")
	c.closedByServer(t)
}

// TestQueenTaskStreamOutlivesBodyTimeout: a token stream that flows for
// longer than the body timeout is not cut by it.
func TestQueenTaskStreamOutlivesBodyTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	hive := newFakeHive(t, "")
	w := newFakeWorker(t, "w-slow")
	w.tokens = []string{"Once", " upon", " a", " time", " there", " was"}
	w.tokenDelay = timeout / 2 // six tokens: three body timeouts
	hive.addWorker(w.info(testModel, api.StateIdle))
	url := runQueen(t, Config{LocalHivePort: hive.port(), limits: httpx.Limits{BodyTimeout: timeout}})

	res := postTask(t, t.Context(), url, "", taskBody("local"), nil)
	require.Equal(t, http.StatusOK, res.status)
	require.NoError(t, res.streamErr, "the stream ends with [DONE]")
	assert.Equal(t, "Once upon a time there was", res.text())
	require.NotNil(t, res.done())
	assert.Equal(t, api.StopMaxTokens, res.done().StopReason)
}

// TestQueenConnectionCap: with more slow clients than the connection cap,
// a genuine request is served once the header timeout has dropped them.
func TestQueenConnectionCap(t *testing.T) {
	const maxConns = 2
	url := runQueen(t, Config{limits: httpx.Limits{MaxConns: maxConns, HeaderTimeout: 200 * time.Millisecond}})
	var slow []*rawConn
	for range maxConns + 2 {
		c := dialRaw(t, url)
		c.send(t, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n") // headers never end
		slow = append(slow, c)
	}
	client := &http.Client{Timeout: safety, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url + "/health")
	require.NoError(t, err, "the genuine request is served")
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	for _, c := range slow {
		c.closedByServer(t)
	}
}

// TestLocalHiveGetsAllowedLists: the local hive is started with the
// queen's allowed hosts and origins in its environment.
func TestLocalHiveGetsAllowedLists(t *testing.T) {
	bin, dir := fakeBinary(t, `printf '%s\n%s\n' "$RBEE_ALLOWED_HOSTS" "$RBEE_ALLOWED_ORIGINS" > "$(dirname "$0")/allowed"; exit 3`)
	tq := newTestQueen(t, Config{Binary: bin, LocalHivePort: newAcceptRecorder(t).port(),
		AllowedHosts: []string{"queen.example.com", "*.lan"}, AllowedOrigins: []string{"http://localhost:3000"}})
	res := postTask(t, t.Context(), tq.url, "", taskBody("local"), nil)
	require.NotNil(t, res.errorEvent(), "the fake hive exits")
	data, err := os.ReadFile(filepath.Join(dir, "allowed"))
	require.NoError(t, err)
	assert.Equal(t, "queen.example.com,*.lan\nhttp://localhost:3000\n", string(data))
	args, err := os.ReadFile(filepath.Join(dir, "args"))
	require.NoError(t, err)
	assert.NotContains(t, string(args), "allowed", "by environment, not on the command line")
}

// TestParseArgsAllowedLists: --allowed-hosts and --allowed-origins beat
// $RBEE_ALLOWED_HOSTS and $RBEE_ALLOWED_ORIGINS, which beat [security] in
// the configuration file; bad entries are refused, naming their source.
func TestParseArgsAllowedLists(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(file, []byte("[security]\nallowed_hosts = [\"file.example\"]\nallowed_origins = [\"http://file.example:3000\"]\n"), 0o600))
	env := map[string]string{"RBEE_CONFIG": file}
	getenv := func(k string) string { return env[k] }
	parse := func(args ...string) (Config, error) {
		cfg, _, err := parseArgs(args, io.Discard, getenv)
		return cfg, err
	}

	cfg, err := parse()
	require.NoError(t, err)
	assert.Equal(t, []string{"file.example"}, cfg.AllowedHosts)
	assert.Equal(t, []string{"http://file.example:3000"}, cfg.AllowedOrigins)

	env[httpx.AllowedHostsEnv] = "env.example, *.lan"
	env[httpx.AllowedOriginsEnv] = "http://env.example:3000"
	cfg, err = parse()
	require.NoError(t, err)
	assert.Equal(t, []string{"env.example", "*.lan"}, cfg.AllowedHosts)
	assert.Equal(t, []string{"http://env.example:3000"}, cfg.AllowedOrigins)

	cfg, err = parse("--allowed-hosts", "flag.example", "--allowed-origins=")
	require.NoError(t, err)
	assert.Equal(t, []string{"flag.example"}, cfg.AllowedHosts)
	assert.Empty(t, cfg.AllowedOrigins, "a flag given empty clears the list")

	_, err = parse("--allowed-hosts", "flag.example:8080")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--allowed-hosts")
	env[httpx.AllowedOriginsEnv] = "env.example"
	_, err = parse()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "$"+httpx.AllowedOriginsEnv)
}
