package orchestrator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
)

func TestOllamaModelNames(t *testing.T) {
	for name, want := range map[string]string{
		"hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M": "hf:bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
		"HF.CO/org/repo:q8_0":                               "hf:org/repo:q8_0",
		"huggingface.co/org/repo":                           "hf:org/repo",
		"hf.co/org/repo:latest":                             "hf:org/repo",
		"hf.co/org/repo/model-Q8_0.gguf":                    "hf:org/repo/model-Q8_0.gguf",
		"hf:org/repo:Q8_0":                                  "hf:org/repo:Q8_0",
		"hf:org/repo:latest":                                "hf:org/repo",
		"file:/models/m.gguf":                               "file:/models/m.gguf",
	} {
		got, e := ollamaModel(name)
		require.Nil(t, e, name)
		assert.Equal(t, want, got, name)
		back, e := ollamaModel(ollamaName(got))
		require.Nil(t, e, name)
		assert.Equal(t, got, back, "%s: the listed name names the same model", name)
	}
	assert.Equal(t, "hf.co/org/repo:Q8_0", ollamaName("hf:org/repo:Q8_0"))
	assert.Equal(t, "hf.co/org/repo:latest", ollamaName("hf:org/repo"))
	assert.Equal(t, "file:/m.gguf", ollamaName("file:/m.gguf"))

	for _, name := range []string{"llama3.2", "llama3.2:latest", "hf.co/", "hf.co/org", "hf.co/org/repo:Q4:x", "hf.co/../etc/passwd",
		"registry.ollama.ai/library/llama3:8b", strings.Repeat("x", 600)} {
		_, e := ollamaModel(name)
		require.NotNil(t, e, name)
		assert.Equal(t, api.CodeModelNotFound, e.Code, name)
		assert.Equal(t, http.StatusNotFound, e.HTTPStatus(), name)
		assert.NotEmpty(t, e.Hint(), name)
	}
	_, e := ollamaModel("")
	require.NotNil(t, e)
	assert.Equal(t, api.CodeInvalidRequest, e.Code)
}

func TestOllamaKeepAlive(t *testing.T) {
	for raw, want := range map[string]time.Duration{
		`"5m"`: 5 * time.Minute, `300`: 5 * time.Minute, `"0"`: 0, `0`: 0, `"-1"`: -time.Second, `-1`: -time.Second,
		`"1h30m"`: 90 * time.Minute, `1.5`: 1500 * time.Millisecond, `"10"`: 10 * time.Second,
	} {
		d, e := keepAlive(json.RawMessage(raw))
		require.Nil(t, e, raw)
		require.NotNil(t, d, raw)
		assert.Equal(t, want, *d, raw)
	}
	for _, raw := range []string{``, `null`} {
		d, e := keepAlive(json.RawMessage(raw))
		assert.Nil(t, e, raw)
		assert.Nil(t, d, raw)
	}
	for _, raw := range []string{`"soon"`, `true`, `[]`, `{}`} {
		_, e := keepAlive(json.RawMessage(raw))
		require.NotNil(t, e, raw)
		assert.Equal(t, "keep_alive", e.Details["field"], raw)
	}
}

func TestOllamaParameterSize(t *testing.T) {
	for n, want := range map[int64]string{0: "", 999: "999", 494_032_768: "494M", 1_235_814_400: "1.24B", 8_030_261_248: "8.03B",
		70_553_706_496: "70.6B", 135_000_000: "135M", 12_500_000: "12.5M"} {
		assert.Equal(t, want, parameterSize(n), n)
	}
}

// ollama's options land in rbee's sampling parameters; ollama's "no
// limit" and "random seed" values take rbee's defaults; a wrong type names
// the option.
func TestOllamaOptionsCarrySampling(t *testing.T) {
	body := `{"model":"hf.co/org/repo:Q8_0","prompt":"hi","options":{"temperature":0.5,"top_p":0.9,"top_k":20,"min_p":0.1,` +
		`"repeat_penalty":1.1,"seed":42,"stop":["\n\n"],"num_predict":7,"num_ctx":4096,"num_thread":2,"mirostat":0}}`
	var req ollamaGenerateRequest
	r := httptest.NewRequest("POST", "/api/generate", strings.NewReader(body))
	require.Nil(t, decodeOpenAI(httptest.NewRecorder(), r, &req))
	task, keep, e := req.task(r)
	require.Nil(t, e)
	assert.Nil(t, keep)
	f := func(v float64) *float64 { return &v }
	k, seed := 20, uint64(42)
	assert.Equal(t, api.SamplingParams{MaxTokens: 7, Temperature: f(0.5), TopP: f(0.9), TopK: &k, MinP: f(0.1),
		RepeatPenalty: f(1.1), Seed: &seed, Stop: []string{"\n\n"}}, task.SamplingParams)
	assert.Equal(t, "hf:org/repo:Q8_0", task.Model)
	assert.Empty(t, task.Node, "no node: the queen places the request")

	req = ollamaGenerateRequest{}
	r = httptest.NewRequest("POST", "/api/generate", strings.NewReader(`{"model":"hf:o/r","options":{"seed":-1,"num_predict":-1}}`))
	r.Header.Set(NodeHeader, "gpu-box")
	require.Nil(t, decodeOpenAI(httptest.NewRecorder(), r, &req))
	task, _, e = req.task(r)
	require.Nil(t, e)
	assert.Equal(t, api.SamplingParams{}, task.SamplingParams)
	assert.Equal(t, "gpu-box", task.Node)

	for body, field := range map[string]string{
		`{"options":{"temperature":"hot"}}`: "options.temperature",
		`{"options":{"stop":"x"}}`:          "options.stop",
		`{"options":{"num_predict":1.5}}`:   "options.num_predict",
	} {
		var req ollamaChatRequest
		e := decodeOpenAI(httptest.NewRecorder(), httptest.NewRequest("POST", "/", strings.NewReader(body)), &req)
		require.NotNil(t, e, body)
		assert.Equal(t, field, e.Details["field"], body)
	}
}

// ollamaAnswer is one answer of the ollama API: its status, headers and
// NDJSON lines (one line for a plain answer).
type ollamaAnswer struct {
	status int
	header http.Header
	lines  []map[string]any
}

func ollamaCall(t *testing.T, method, url, body string, header ...string) ollamaAnswer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	a := ollamaAnswer{status: resp.StatusCode, header: resp.Header}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal(line, &m), "%s", line)
		a.lines = append(a.lines, m)
	}
	require.NoError(t, sc.Err())
	return a
}

// ollamaRefused checks a plain error answer in ollama's shape.
func ollamaRefused(t *testing.T, a ollamaAnswer, status int, contains string) {
	t.Helper()
	require.Equal(t, status, a.status, "%v", a.lines)
	require.Len(t, a.lines, 1)
	msg, ok := a.lines[0]["error"].(string)
	require.True(t, ok, "an error string: %v", a.lines[0])
	assert.Contains(t, msg, contains)
	assert.Equal(t, "application/json", a.header.Get("Content-Type"))
	// rbee's code rides along in every refusal.
	code, _ := a.lines[0]["code"].(string)
	assert.True(t, api.Code(code).Known(), "a known code: %v", a.lines[0])
	assert.Equal(t, status, api.Code(code).HTTPStatus(), "%v", a.lines[0])
}

// What rbee cannot honour is refused with ollama's error shape before
// anything runs: images, fill-in-the-middle, custom templates, thinking,
// pulling a file: model, embeddings and the
// registry routes; unknown routes and methods answer in ollama's shape too,
// and the API key and the Origin check guard /api/ like every route.
func TestOllamaRefusals(t *testing.T) {
	s := newOAISetup(t, "ollama-queen-token-0123456789", "Hello")
	base, auth := s.tq.url, []string{"Authorization", "Bearer ollama-queen-token-0123456789"}
	post := func(path, body string) ollamaAnswer { return ollamaCall(t, "POST", base+path, body, auth...) }
	model := `"model":"` + testModel + `"`

	for body, want := range map[string]string{
		`{` + model + `,"prompt":"Describe","images":["iVBORw0KGgo="]}`: "images",
		`{` + model + `,"prompt":"def f(","suffix":"return x"}`:         "suffix",
		`{` + model + `,"prompt":"hi","template":"{{ .Prompt }}"}`:      "template",
		`{` + model + `,"prompt":"hi","think":true}`:                    "thinking",
		`{` + model + `,"prompt":"hi","think":"high"}`:                  "thinking",
		`{` + model + `,"prompt":"hi","format":"yaml"}`:                 "format",
		`{` + model + `,"prompt":"hi","keep_alive":"soon"}`:             "keep_alive",
		`{` + model + `,"prompt":"hi","options":{"temperature":3}}`:     "temperature",
		`{"model":"llama3.2","prompt":"hi"}`:                            "not found",
		`not json`:                                                      "JSON",
	} {
		a := post("/api/generate", body)
		status := http.StatusBadRequest
		if want == "not found" {
			status = http.StatusNotFound
		}
		ollamaRefused(t, a, status, want)
	}
	ollamaRefused(t, post("/api/generate", `{`+model+`,"prompt":"hi","node":"nowhere"}`), http.StatusNotFound, "nowhere")
	ollamaRefused(t, post("/api/chat", `{`+model+`,"messages":[{"role":"user","content":"hi","images":["iVBORw0KGgo="]}]}`),
		http.StatusBadRequest, "images")
	ollamaRefused(t, post("/api/chat", `{`+model+`,"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"no spaces"}}]}`),
		http.StatusBadRequest, "function name")
	ollamaRefused(t, post("/api/generate", `{`+model+`,"prompt":"hi","top_logprobs":2}`), http.StatusBadRequest, "logprobs")
	ollamaRefused(t, post("/api/chat", `{`+model+`,"messages":[{"role":"user","content":"hi"}],"options":{"presence_penalty":3}}`),
		http.StatusBadRequest, "presence_penalty")
	ollamaRefused(t, post("/api/chat", `{`+model+`,"messages":[{"role":"wizard","content":"hi"}]}`), http.StatusBadRequest, "role")
	ollamaRefused(t, post("/api/pull", `{`+model+`}`), http.StatusBadRequest, "nothing to pull")
	ollamaRefused(t, post("/api/embed", `{`+model+`,"input":"hi"}`), http.StatusNotImplemented, "embeddings")
	ollamaRefused(t, post("/api/create", `{"model":"x","from":"y"}`), http.StatusNotImplemented, "Modelfile")
	ollamaRefused(t, post("/api/copy", `{"source":"a","destination":"b"}`), http.StatusNotImplemented, "aliases")
	ollamaRefused(t, post("/api/push", `{"model":"x"}`), http.StatusNotImplemented, "push")
	ollamaRefused(t, post("/api/nothing", `{}`), http.StatusNotFound, "/api/nothing")
	a := ollamaCall(t, "GET", base+"/api/chat", "", auth...)
	ollamaRefused(t, a, http.StatusMethodNotAllowed, "POST")
	assert.Equal(t, "POST", a.header.Get("Allow"))
	assert.Equal(t, 0, len(s.worker.requests()), "nothing reached the worker")

	a = ollamaCall(t, "GET", base+"/api/tags", "")
	ollamaRefused(t, a, http.StatusUnauthorized, "API key")
	assert.Equal(t, `Bearer realm="rbee"`, a.header.Get("WWW-Authenticate"))
	ollamaRefused(t, ollamaCall(t, "GET", base+"/api/version", "", "Authorization", "Bearer wrong"), http.StatusUnauthorized, "not valid")

	resp, data := send(t, http.MethodPost, base+"/api/chat", "", `{`+model+`,"messages":[{"role":"user","content":"hi"}]}`,
		append(auth, "Content-Type", "text/plain", "Origin", "https://evil.example")...)
	forbidden(t, resp, data, "allowed_origins")
	assert.Equal(t, 0, len(s.worker.requests()), "a web page starts nothing")

	a = ollamaCall(t, "GET", base+"/api/version", "", auth...)
	require.Equal(t, http.StatusOK, a.status)
	assert.Equal(t, ollamaAPIVersion, a.lines[0]["version"])
	assert.Equal(t, api.Version, a.lines[0]["rbee_version"])
}

// A generate request's prompt is the user's turn after its system
// message (raw sends it as it is); the tokens stream as NDJSON objects and
// the last one has the worker's counts; with stream false one object has
// the whole text.
func TestOllamaGenerateShapes(t *testing.T) {
	s := newOAISetup(t, "", "Hello", ",", " world")
	model := `"model":"` + testModel + `"`

	a := ollamaCall(t, "POST", s.tq.url+"/api/generate", `{`+model+`,"system":"Be brief.","prompt":"Say hello","options":{"num_predict":5}}`)
	require.Equal(t, http.StatusOK, a.status, "%v", a.lines)
	assert.Equal(t, "application/x-ndjson", a.header.Get("Content-Type"))
	require.Len(t, a.lines, 4)
	var text strings.Builder
	for _, l := range a.lines[:3] {
		assert.Equal(t, testModel, l["model"])
		assert.Equal(t, false, l["done"])
		assert.NotEmpty(t, l["created_at"])
		text.WriteString(l["response"].(string))
	}
	assert.Equal(t, "Hello, world", text.String())
	last := a.lines[3]
	assert.Equal(t, true, last["done"])
	assert.Equal(t, "stop", last["done_reason"])
	assert.Equal(t, "", last["response"])
	assert.EqualValues(t, 3, last["eval_count"])
	assert.EqualValues(t, 7, last["prompt_eval_count"])
	assert.Positive(t, last["total_duration"])
	reqs := s.worker.requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, []api.ChatMessage{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Say hello"}}, reqs[0].Messages)
	assert.Empty(t, reqs[0].Prompt)
	assert.Equal(t, 5, reqs[0].MaxTokens)

	a = ollamaCall(t, "POST", s.tq.url+"/api/generate", `{`+model+`,"system":"ignored","prompt":"<s>raw","raw":true,"stream":false}`)
	require.Equal(t, http.StatusOK, a.status, "%v", a.lines)
	assert.Equal(t, "application/json", a.header.Get("Content-Type"))
	require.Len(t, a.lines, 1)
	assert.Equal(t, "Hello, world", a.lines[0]["response"])
	assert.Equal(t, true, a.lines[0]["done"])
	reqs = s.worker.requests()
	require.Len(t, reqs, 2)
	assert.Equal(t, "<s>raw", reqs[1].Prompt)
	assert.Empty(t, reqs[1].Messages)

	s.worker.stop = api.StopMaxTokens
	a = ollamaCall(t, "POST", s.tq.url+"/api/chat", `{`+model+`,"messages":[{"role":"user","content":"hi"}],"stream":false}`)
	require.Equal(t, http.StatusOK, a.status, "%v", a.lines)
	require.Len(t, a.lines, 1)
	assert.Equal(t, map[string]any{"role": "assistant", "content": "Hello, world"}, a.lines[0]["message"])
	assert.Equal(t, "length", a.lines[0]["done_reason"])
	assert.NotContains(t, a.lines[0], "response")
}

// An ollama request for a busy 1-slot worker waits in the queen's queue
// like any task (it shows in GET /v2/queue) and runs once the slot frees;
// the worker never runs two generations at once.
func TestOllamaRequestsQueue(t *testing.T) {
	s := newQueueSetup(t, Config{})
	body := `{"model":"` + testModel + `","prompt":"Once","raw":true}`
	answers := make(chan ollamaAnswer, 2)
	for range 2 {
		go func() { answers <- ollamaCall(t, "POST", s.tq.url+"/api/generate", body) }()
	}
	s.generating(t, 1)
	require.Eventually(t, func() bool { return s.queueStatus(t).Depth == 1 }, 10*time.Second, time.Millisecond)
	s.release()
	for range 2 {
		a := recv(t, answers, "an answer")
		require.Equal(t, http.StatusOK, a.status, "%v", a.lines)
		last := a.lines[len(a.lines)-1]
		assert.Equal(t, true, last["done"])
		assert.Equal(t, "length", last["done_reason"])
		assert.EqualValues(t, 4, last["eval_count"])
	}
	s.worker.mu.Lock()
	defer s.worker.mu.Unlock()
	assert.Equal(t, 1, s.worker.maxActive)
}

// A failure after the first token ends an NDJSON stream with an error
// object (the status is already 200), which ollama's client reports; the
// same failure without streaming keeps its HTTP status.
func TestOllamaErrorMidStream(t *testing.T) {
	s := newQueueSetup(t, Config{})
	s.release()
	s.worker.mu.Lock()
	s.worker.failAfter, s.worker.failWith = 2, api.Errorf(api.CodeInferenceFailed, "the logits are not finite")
	s.worker.mu.Unlock()
	body := `{"model":"` + testModel + `","messages":[{"role":"user","content":"hi"}]`
	a := ollamaCall(t, "POST", s.tq.url+"/api/chat", body+`}`)
	require.Equal(t, http.StatusOK, a.status)
	require.Len(t, a.lines, 3, "%v", a.lines)
	assert.Equal(t, map[string]any{"role": "assistant", "content": "Once"}, a.lines[0]["message"])
	assert.Equal(t, "the logits are not finite", a.lines[2]["error"])
	assert.Equal(t, string(api.CodeInferenceFailed), a.lines[2]["code"])

	ollamaRefused(t, ollamaCall(t, "POST", s.tq.url+"/api/chat", body+`,"stream":false}`), http.StatusInternalServerError, "not finite")
}

// GET /api/ps lists every running worker with its model, and expires_at
// from the idle timeout its hive reports (the hive default when it says
// none): an idle worker's counts from its last activity, a busy one's from
// now.
func TestOllamaPS(t *testing.T) {
	hive := newFakeHive(t, "")
	idle, busy := newFakeWorker(t, "w-idle"), newFakeWorker(t, "w-busy")
	last := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	wi := idle.info(testModel, api.StateIdle)
	wi.LastActivity, wi.IdleTimeoutMs = last, 90_000
	hive.addWorker(wi)
	wb := busy.info("hf:org/repo:Q8_0", api.StateBusy)
	wb.LastActivity = last
	hive.addWorker(wb)
	tq := newTestQueen(t, Config{LocalHivePort: hive.port()})

	a := ollamaCall(t, "GET", tq.url+"/api/ps", "")
	require.Equal(t, http.StatusOK, a.status, "%v", a.lines)
	var ps struct {
		Models []ollamaListModel `json:"models"`
	}
	raw, err := json.Marshal(a.lines[0])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &ps))
	require.Len(t, ps.Models, 2)
	assert.Equal(t, testModel, ps.Models[0].Name)
	assert.Equal(t, "hf.co/org/repo:Q8_0", ps.Models[1].Name)
	assert.Equal(t, "local", ps.Models[0].Node)
	require.NotNil(t, ps.Models[0].ExpiresAt)
	assert.WithinDuration(t, last.Add(90*time.Second), *ps.Models[0].ExpiresAt, time.Second)
	require.NotNil(t, ps.Models[1].ExpiresAt)
	assert.WithinDuration(t, time.Now().Add(hiveDefaultIdleTimeout), *ps.Models[1].ExpiresAt, 5*time.Second)
	assert.EqualValues(t, 0, *ps.Models[1].SizeVRAM, "cpu")
}

// Any model name is either a reference whose listed name names it again,
// or a 4xx error; any keep_alive is a duration or a 400: never a panic.
func FuzzOllamaNames(f *testing.F) {
	for _, s := range []string{"hf.co/org/repo:Q8_0", "llama3.2:latest", "file:/m.gguf", "hf:o/r/x.gguf", "HF.CO/a/b", "5m", "-1", "300"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		ref, e := ollamaModel(name)
		if e != nil {
			if s := e.HTTPStatus(); s != http.StatusNotFound && s != http.StatusBadRequest {
				t.Fatalf("%q: status %d", name, s)
			}
		} else {
			if _, pe := api.ParseModelRef(ref); pe != nil {
				t.Fatalf("%q gave %q, no reference: %v", name, ref, pe)
			}
			back, e := ollamaModel(ollamaName(ref))
			if e != nil || back != ref {
				t.Fatalf("%q: %q listed as %q names %q (%v)", name, ref, ollamaName(ref), back, e)
			}
		}
		raw, _ := json.Marshal(name)
		if _, e := keepAlive(raw); e != nil && e.Details["field"] != "keep_alive" {
			t.Fatalf("keep_alive %q: %v", name, e)
		}
		_, _ = keepAlive(json.RawMessage(name))
	})
}
