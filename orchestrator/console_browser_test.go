package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/hftest"
	"rbee/internal/testutil"
)

// The console's tests drive the page in headless Chromium (Debian's
// chromium package; CI installs it) against a real queen. They skip, saying
// why, on a machine without the browser. With $RBEE_UI_SHOTS set they
// write a screenshot of each view into that directory, and the page's
// weight into weight.txt there.

// chromiumPath finds the browser: $RBEE_CHROMIUM, else chromium on PATH.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RBEE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium on this machine (apt-get install chromium, or set RBEE_CHROMIUM): the console's browser tests need one")
	return ""
}

// newBrowser starts a headless Chromium with a fresh profile that talks
// to nothing but the test's loopback servers, and returns its context.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath(t)
	dir, err := os.MkdirTemp("", "rbee-chromium-")
	require.NoError(t, err)
	t.Cleanup(func() {
		// Chromium's helpers may still write into the profile for a moment
		// after the browser is gone.
		for range 50 {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-features", "MediaRouter,OptimizationHints,Translate"), chromedp.NoFirstRun,
		chromedp.UserDataDir(dir), chromedp.WindowSize(1280, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	_, err = chromedp.Run(bctx, chromedp.Evaluate[int](`1`))
	require.NoError(t, err, "starting Chromium")
	return bctx
}

// pageWatch records what a tab did: console errors, exceptions, failed
// requests and the bytes its requests transferred.
type pageWatch struct {
	mu       sync.Mutex
	problems []string
	urls     map[network.RequestID]string
	bytes    map[string]float64 // finished requests: bytes transferred, by URL
	statuses map[string]int64   // responses by URL (the last one)
}

// newTab opens a tab of the browser and watches it.
func newTab(t *testing.T, bctx context.Context) (context.Context, *pageWatch) {
	t.Helper()
	ctx, cancel := chromedp.NewContext(bctx)
	t.Cleanup(cancel)
	w := &pageWatch{urls: map[network.RequestID]string{}, bytes: map[string]float64{}, statuses: map[string]int64{}}
	require.NoError(t, chromedp.Listen(ctx, w.event))
	_, err := chromedp.Run(ctx, chromedp.Evaluate[int](`1`))
	require.NoError(t, err)
	return ctx, w
}

func (w *pageWatch) event(ev any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
			w.problems = append(w.problems, fmt.Sprintf("console.%s: %d arguments", e.Type, len(e.Args)))
		}
	case *runtime.EventExceptionThrown:
		text := e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil {
			text += " " + e.ExceptionDetails.Exception.Description
		}
		w.problems = append(w.problems, "exception: "+text)
	case *log.EventEntryAdded:
		if e.Entry.Level == log.EntryLevelError {
			w.problems = append(w.problems, "log: "+e.Entry.Text+" "+e.Entry.URL)
		}
	case *network.EventRequestWillBeSent:
		w.urls[e.RequestID] = e.Request.URL
	case *network.EventResponseReceived:
		w.statuses[e.Response.URL] = e.Response.Status
		if e.Response.Status >= 400 {
			w.problems = append(w.problems, fmt.Sprintf("HTTP %d for %s", e.Response.Status, e.Response.URL))
		}
	case *network.EventLoadingFailed:
		if !e.Canceled {
			w.problems = append(w.problems, "request failed: "+e.ErrorText+" "+w.urls[e.RequestID])
		}
	case *network.EventLoadingFinished:
		w.bytes[w.urls[e.RequestID]] += e.EncodedDataLength
	}
}

func (w *pageWatch) report() (problems []string, bytes map[string]float64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := make(map[string]float64, len(w.bytes))
	for k, v := range w.bytes {
		b[k] = v
	}
	return slices.Clone(w.problems), b
}

// shot writes a screenshot of the tab to $RBEE_UI_SHOTS/name.png, when
// the variable is set.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("RBEE_UI_SHOTS")
	if dir == "" {
		return
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

// wait polls a JavaScript expression until it is true, for at most d.
func wait(t *testing.T, ctx context.Context, expr string, d time.Duration) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(50*time.Millisecond)))
	require.NoError(t, err, "waiting for %s", expr)
}

// eval runs a JavaScript expression and decodes its value.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(t, err, "evaluating %s", expr)
	return v
}

// consoleQueen starts an in-process queen (with a real hive and workers
// from the rbee binary) and serves it on loopback.
func consoleQueen(t *testing.T, token string) (*Queen, string) {
	t.Helper()
	q, err := New(Config{Home: t.TempDir(), Binary: testutil.RbeeBinary(t), LocalHivePort: testutil.FreePort(t),
		LocalWorkerPortStart: testutil.FreePort(t), HiveRetryDelays: []time.Duration{0}, Token: token,
		eventsEvery: 200 * time.Millisecond})
	require.NoError(t, err)
	url := newHTTPTestServer(t, q)
	t.Cleanup(func() { assert.NoError(t, q.Close()) })
	return q, url
}

// cliEnv is the environment of an rbee command the test runs: an empty
// configuration file and no API key of the machine's.
func cliEnv(t *testing.T) []string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(cfg, nil, 0o600))
	return append(os.Environ(), "RBEE_CONFIG="+cfg, "RBEE_API_KEY=", "HOME="+t.TempDir())
}

// workersTable reads the console's workers table: one row of cell texts
// per worker.
const workersTable = `Array.from(document.querySelectorAll('#workers tbody tr'), (tr) => Array.from(tr.cells, (c) => c.textContent).slice(0, 7))`

// TestConsoleBrowser drives the console against a real queen: the page
// loads without console errors or failed requests; a worker started from
// the CLI appears in the cluster view without a reload; the workers table
// equals `rbee workers list --json`; the playground streams the same text
// as the OpenAI route at temperature 0 and names the worker; the models
// and activity views show the catalog, the task and the node's log.
func TestConsoleBrowser(t *testing.T) {
	skipShort(t)
	bctx := newBrowser(t)
	_, url := consoleQueen(t, "")
	model := tinyModel(t)
	ctx, watch := newTab(t, bctx)

	// First load: the page, its script and style, the first snapshot.
	_, err := chromedp.Run(ctx, chromedp.NavigateResponse(url+"/"))
	require.NoError(t, err)
	wait(t, ctx, `document.querySelector('#nodes [data-node="local"]') !== null && document.getElementById('conn').textContent === 'live'`, 10*time.Second)
	assert.Equal(t, "not running", eval[string](t, ctx, `document.querySelector('#nodes [data-node="local"] .badge').textContent`))
	assert.Equal(t, 0, eval[int](t, ctx, `document.querySelectorAll('#workers tbody tr').length`))
	problems, bytes := watch.report()
	assert.Empty(t, problems, "the first load is clean")
	weight := 0.0
	for u, b := range bytes {
		if strings.HasPrefix(u, url+"/") {
			weight += b
		}
		t.Logf("first load: %s %.0f bytes", strings.TrimPrefix(u, url), b)
	}
	t.Logf("page weight on first load: %.0f bytes transferred", weight)
	assert.Positive(t, weight)
	assert.Less(t, weight, 40000.0, "the page stays small")
	if dir := os.Getenv("RBEE_UI_SHOTS"); dir != "" {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "weight.txt"), fmt.Appendf(nil, "%.0f bytes transferred on first load\n", weight), 0o644))
	}
	shot(t, ctx, "cluster-empty")

	// Every control has a name a screen reader can say, and the keyboard
	// reaches the views' links.
	unnamed := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('input, select, textarea, button'))
		.filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
		.map((e) => e.id || e.outerHTML)`)
	assert.Empty(t, unnamed, "controls without a label")
	require.NoError(t, chromedp.Do(ctx, chromedp.Focus(chromedp.ID("nav-cluster")), chromedp.KeyEvent(kb.Tab)))
	assert.Equal(t, "nav-models", eval[string](t, ctx, `document.activeElement.id`))
	require.NoError(t, chromedp.Do(ctx, chromedp.KeyEvent(kb.Enter)))
	wait(t, ctx, `!document.getElementById('view-models').hidden && document.getElementById('view-cluster').hidden`, 5*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.ID("nav-cluster"))))

	// A worker started from the CLI shows up without a reload (the mark
	// set on the page now would be gone after one).
	eval[int](t, ctx, `window.notReloaded = 1`)
	cmd := exec.Command(testutil.RbeeBinary(t), "infer", "--queen-url", url, "--node", "local", "--model", model,
		"--prompt", "Once upon a time", "--max-tokens", "4", "--temperature", "0")
	cmd.Env = cliEnv(t)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	wait(t, ctx, `document.querySelectorAll('#workers tbody tr').length === 1`, 20*time.Second)
	assert.Equal(t, 1, eval[int](t, ctx, `window.notReloaded`))
	wait(t, ctx, `document.querySelector('#nodes [data-node="local"] .badge').textContent === 'reachable'`, 5*time.Second)
	assert.Contains(t, eval[string](t, ctx, `document.querySelector('#nodes [data-node="local"]').textContent`), "RAM free")

	// The table equals the CLI's list (once the worker settled as idle).
	cliList := func() [][]string {
		cmd := exec.Command(testutil.RbeeBinary(t), "workers", "list", "--json", "--queen-url", url)
		cmd.Env = cliEnv(t)
		out, err := cmd.Output()
		require.NoError(t, err)
		var l api.WorkerList
		require.NoError(t, json.Unmarshal(out, &l))
		rows := [][]string{}
		for _, w := range l.Workers {
			rows = append(rows, []string{w.ID, w.Node, w.ModelRef, fmt.Sprintf("%s:%d", w.Backend, w.Device), string(w.State),
				fmt.Sprintf("%d/%d", w.SlotsBusy, w.SlotsTotal), fmt.Sprint(w.QueueDepth)})
		}
		return rows
	}
	want := cliList()
	require.Len(t, want, 1)
	assert.Equal(t, "idle", want[0][4])
	wait(t, ctx, `document.querySelector('#workers tbody tr').cells[4].textContent === 'idle'`, 5*time.Second)
	assert.Equal(t, want, eval[[][]string](t, ctx, workersTable))
	workerID := want[0][0]
	shot(t, ctx, "cluster")

	// Playground: a completion at temperature 0 streams what the OpenAI
	// route answers.
	const prompt = "The quick brown fox"
	a := oaiCall(t, "POST", url+"/v1/completions", "", map[string]any{"model": model, "prompt": prompt, "temperature": 0,
		"max_tokens": 12, "seed": 1}, nil)
	require.Equal(t, http.StatusOK, a.status, "%s", a.body)
	cmpl := decodeResponse(t, a.body, "text_completion")
	require.NotNil(t, cmpl.Choices[0].Text)
	wantText := *cmpl.Choices[0].Text
	require.NotEmpty(t, wantText)

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("nav-playground")),
		chromedp.WaitVisible(chromedp.ID("pg-form")),
		chromedp.Click(chromedp.CSS(`input[name="pg-mode"][value="completion"]`)),
		chromedp.SetValue(chromedp.ID("pg-model"), model),
		chromedp.SetValue(chromedp.ID("pg-node"), "local"),
		chromedp.SetValue(chromedp.ID("pg-temp"), "0"),
		chromedp.SetValue(chromedp.ID("pg-max"), "12"),
		chromedp.SetValue(chromedp.ID("pg-seed"), "1"),
		chromedp.SetValue(chromedp.ID("pg-prompt"), prompt),
		chromedp.Click(chromedp.ID("pg-send")),
	))
	wait(t, ctx, `/tokens/.test(document.getElementById('pg-stats').textContent) && !document.getElementById('pg-send').disabled`, 30*time.Second)
	assert.Equal(t, wantText, eval[string](t, ctx, `document.getElementById('pg-output').textContent`))
	stats := eval[string](t, ctx, `document.getElementById('pg-stats').textContent`)
	assert.Contains(t, stats, "served by worker "+workerID+" on local")
	assert.Regexp(t, `^\d+ tokens, [\d.]+ tokens/s, first token after \d+ ms`, stats)
	shot(t, ctx, "playground")

	// With a JSON schema the playground asks for structured output: the
	// answer of a random-weights model is JSON valid against the schema.
	// (It is not compared with the OpenAI route's: under the mask the
	// model's near-ties can fall either way between two runs.)
	const schema = `{"type":"object","properties":{"kind":{"enum":["cat","dog","fox"]},"alive":{"type":"boolean"}},"required":["kind","alive"],"additionalProperties":false}`
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("pg-max"), "200"),
		chromedp.SetValue(chromedp.ID("pg-schema"), schema),
		chromedp.Click(chromedp.ID("pg-send")),
	))
	wait(t, ctx, `/tokens/.test(document.getElementById('pg-stats').textContent) && !document.getElementById('pg-send').disabled`, 30*time.Second)
	assert.Contains(t, eval[string](t, ctx, `document.getElementById('pg-stats').textContent`), "(stop), JSON shown indented")
	answer := eval[string](t, ctx, `document.getElementById('pg-output').textContent`)
	var animal map[string]any
	require.NoError(t, json.Unmarshal([]byte(answer), &animal), "%q", answer)
	assert.Len(t, animal, 2, "%q", answer)
	assert.Contains(t, []any{"cat", "dog", "fox"}, animal["kind"], "%q", answer)
	assert.IsType(t, false, animal["alive"], "%q", answer)
	shot(t, ctx, "playground-schema")
	// A schema that is not JSON is caught on the page, before any request.
	require.NoError(t, chromedp.Do(ctx, chromedp.SetValue(chromedp.ID("pg-schema"), "{nope"), chromedp.Click(chromedp.ID("pg-send"))))
	wait(t, ctx, `document.getElementById('pg-stats').textContent.startsWith('The JSON schema is not JSON')`, 5*time.Second)
	assert.Equal(t, answer, eval[string](t, ctx, `document.getElementById('pg-output').textContent`), "nothing was sent")
	eval[int](t, ctx, `document.getElementById('pg-schema').value = '', document.getElementById('pg-max').value = '12', 1`)

	// Chat mode works too, and keeps the conversation.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`input[name="pg-mode"][value="chat"]`)),
		chromedp.SetValue(chromedp.ID("pg-prompt"), "Hello"),
		chromedp.Click(chromedp.ID("pg-send")),
	))
	wait(t, ctx, `document.querySelectorAll('#pg-history .msg').length === 2`, 30*time.Second)
	assert.NotContains(t, eval[string](t, ctx, `document.getElementById('pg-stats').textContent`), "Failed")

	// Models: the catalog lists the model registered at the spawn.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.ID("nav-models")), chromedp.WaitVisible(chromedp.ID("catalog"))))
	wait(t, ctx, `document.querySelectorAll('#catalog tbody tr').length === 1`, 5*time.Second)
	cells := eval[[]string](t, ctx, `Array.from(document.querySelector('#catalog tbody tr').cells, (c) => c.textContent)`)
	assert.Equal(t, []string{"local", model, "Q8_0"}, cells[:3])
	assert.Equal(t, "llama", cells[4])
	// A pull of a bad reference is refused with the API's message.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("pull-ref"), "hf:nope"),
		chromedp.Click(chromedp.CSS(`#pull-form button`)),
	))
	wait(t, ctx, `document.getElementById('pull-status').textContent.startsWith('Pull failed')`, 5*time.Second)
	shot(t, ctx, "models")

	// Activity: a slow task shows while it runs; the log stream follows.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.ID("nav-activity")), chromedp.WaitVisible(chromedp.ID("chart"))))
	// Generations one after another (a random model may stop early), until
	// the test has seen what it needs.
	done, stop := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for seed := range 30 {
			select {
			case <-stop:
				return
			default:
			}
			body := fmt.Sprintf(`{"model":%q,"prompt":"Tell a long story","max_tokens":400,"temperature":1,"seed":%d}`, model, seed)
			if resp, err := http.Post(url+"/v1/completions", "application/json", strings.NewReader(body)); err == nil {
				resp.Body.Close()
			}
		}
	}()
	wait(t, ctx, `Array.from(document.querySelectorAll('#tasks tbody tr')).some((tr) => tr.cells[4].textContent === 'running' && tr.cells[3].textContent === '`+workerID+`')`, 20*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.SetValue(chromedp.ID("logs-node"), "local"), chromedp.Click(chromedp.ID("logs-go"))))
	wait(t, ctx, `document.getElementById('logs').textContent.includes('[hive]')`, 10*time.Second)
	wait(t, ctx, `state.history.filter((p) => p.tps > 0).length >= 3`, 15*time.Second)
	shot(t, ctx, "activity")
	close(stop)
	<-done
	wait(t, ctx, `document.querySelectorAll('#tasks tbody tr').length === 0`, 10*time.Second)
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.ID("logs-stop"))))

	// The cluster view on a phone-sized screen.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.ID("nav-cluster")), chromedp.EmulateViewport(390, 844)))
	shot(t, ctx, "cluster-phone")
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)))
	// And in the dark.
	_, err = chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
	require.NoError(t, err)
	shot(t, ctx, "cluster-dark")

	// Stop the worker from the table, with the keyboard.
	require.NoError(t, chromedp.Do(ctx, chromedp.Focus(chromedp.CSS(`#workers tbody tr button`)), chromedp.KeyEvent(kb.Enter)))
	wait(t, ctx, `document.querySelectorAll('#workers tbody tr').length === 0`, 15*time.Second)

	problems, _ = watch.report()
	// The pull of a bad reference answered 400 on purpose.
	problems = slices.DeleteFunc(problems, func(p string) bool { return strings.Contains(p, "/v2/models/download") })
	assert.Empty(t, problems, "no console errors or failed requests")
}

// TestConsoleBrowserLogin: with an API key, the page shows a login and no
// data until the key is given; a wrong key is refused; the right one shows
// the cluster; forgetting it hides the data again.
func TestConsoleBrowserLogin(t *testing.T) {
	skipShort(t)
	bctx := newBrowser(t)
	const token = "console-test-token-0123456789"
	_, url := consoleQueen(t, token)
	ctx, _ := newTab(t, bctx)

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(url+"/ui/")))
	wait(t, ctx, `!document.getElementById('login').hidden`, 10*time.Second)
	assert.True(t, eval[bool](t, ctx, `['cluster','models','activity','playground'].every((v) => getComputedStyle(document.getElementById('view-' + v)).display === 'none')`))
	assert.Equal(t, 0, eval[int](t, ctx, `document.querySelectorAll('#nodes .card, #workers tbody tr').length`), "no data without the key")
	assert.Equal(t, "none", eval[string](t, ctx, `getComputedStyle(document.querySelector('nav')).display`), "no views to go to")
	shot(t, ctx, "login")

	require.NoError(t, chromedp.Do(ctx, chromedp.SetValue(chromedp.ID("login-key"), "wrong-key-0123456789"),
		chromedp.Click(chromedp.CSS(`#login-form button`))))
	wait(t, ctx, `document.getElementById('login-err').textContent.includes('refused')`, 10*time.Second)
	assert.Equal(t, 0, eval[int](t, ctx, `document.querySelectorAll('#nodes .card').length`))

	require.NoError(t, chromedp.Do(ctx, chromedp.SetValue(chromedp.ID("login-key"), token),
		chromedp.Click(chromedp.CSS(`#login-form button`))))
	wait(t, ctx, `document.querySelector('#nodes [data-node="local"]') !== null && document.getElementById('login').hidden`, 10*time.Second)
	assert.Equal(t, token, eval[string](t, ctx, `sessionStorage.getItem('rbee-api-key')`), "kept for this tab only")

	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.ID("logout"))))
	wait(t, ctx, `!document.getElementById('login').hidden && document.querySelectorAll('#nodes .card').length === 0`, 5*time.Second)
	assert.Equal(t, 0, eval[int](t, ctx, `document.querySelectorAll('#logs-node option, #pull-node option, #pg-models option').length`),
		"nothing of the cluster stays on the page")
	assert.Nil(t, eval[*string](t, ctx, `sessionStorage.getItem('rbee-api-key')`))
}

// TestConsoleBrowserOtherOrigin: a page of another origin (a second
// loopback server) cannot read the queen's API, though the queen runs
// without a key: the browser gets no CORS grant and the queen refuses the
// request for its Origin.
func TestConsoleBrowserOtherOrigin(t *testing.T) {
	skipShort(t)
	bctx := newBrowser(t)
	_, queenURL := consoleQueen(t, "")
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><title>other</title><script>
window.results = {};
const probe = async (name, path, init) => {
  try { const r = await fetch(%q + path, init); window.results[name] = 'read ' + r.status + ' ' + (await r.text()).slice(0, 40); }
  catch (e) { window.results[name] = 'blocked'; }
};
Promise.all([probe('workers', '/v2/workers/list'), probe('events', '/v2/events'),
  probe('task', '/v2/tasks', {method: 'POST', body: '{"node":"local","model":"file:/x.gguf","prompt":"hi"}', headers: {'Content-Type': 'text/plain'}})])
  .then(() => { window.done = true; });
</script>`, queenURL)
	}))
	t.Cleanup(other.Close)

	ctx, _ := newTab(t, bctx)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(other.URL+"/")))
	wait(t, ctx, `window.done === true`, 10*time.Second)
	results := eval[map[string]string](t, ctx, `window.results`)
	for _, name := range []string{"workers", "events", "task"} {
		assert.Equal(t, "blocked", results[name], "%s: %v", name, results)
	}

	// What the browser sent, the queen refused (403), not just the browser
	// hid: the no-cors POST never became a task.
	req, err := http.NewRequest("GET", queenURL+"/v2/workers/list", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", other.URL)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
}

// TestConsoleBrowserPull pulls an hf: model from the fake hub onto the
// local node through the models view: the download shows with its bar
// while it runs (the local hive is started for it), then the model is in
// the node's catalog.
func TestConsoleBrowserPull(t *testing.T) {
	skipShort(t)
	bctx := newBrowser(t)
	hub := hftest.New(t)
	const file = "tiny-q4_0.gguf"
	size := len(hub.File(hftest.RepoTiny, file))
	hub.SetFault(hftest.RepoTiny, file, hftest.Fault{BytesPerSecond: int64(size / 3)}) // about three seconds
	// The local hive inherits the hub's address.
	t.Setenv("HF_ENDPOINT", hub.URL)
	_, url := consoleQueen(t, "")
	ctx, watch := newTab(t, bctx)

	ref := "hf:" + hftest.RepoTiny + "/" + file
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(url+"/#models")))
	wait(t, ctx, `document.getElementById('conn').textContent === 'live' && !document.getElementById('view-models').hidden`, 10*time.Second)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("pull-node"), "local"),
		chromedp.SetValue(chromedp.ID("pull-ref"), ref),
		chromedp.Click(chromedp.CSS(`#pull-form button`)),
	))
	wait(t, ctx, `(() => { const p = document.querySelector('#downloads progress'); return p !== null && p.value > 0 && p.value < p.max; })()`, 20*time.Second)
	assert.Contains(t, eval[string](t, ctx, `document.getElementById('downloads').textContent`), ref+" → local")
	shot(t, ctx, "models-download")
	wait(t, ctx, `document.getElementById('pull-status').textContent.endsWith('is on local.')`, 30*time.Second)
	wait(t, ctx, `document.querySelectorAll('#downloads progress').length === 0`, 5*time.Second)
	wait(t, ctx, `document.querySelectorAll('#catalog tbody tr').length === 1`, 5*time.Second)
	cells := eval[[]string](t, ctx, `Array.from(document.querySelector('#catalog tbody tr').cells, (c) => c.textContent)`)
	assert.Equal(t, []string{"local", ref, "Q4_0"}, cells[:3])
	problems, _ := watch.report()
	assert.Empty(t, problems)
}
