package orchestrator

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/httpx"
)

// TestTaskBadInput: every TaskRequest field that fails validation is
// INVALID_REQUEST naming it, before any stream and before any hive is
// touched.
func TestTaskBadInput(t *testing.T) {
	hive := newFakeHive(t, "")
	tq := newTestQueen(t, Config{LocalHivePort: hive.port()})
	good := `"node":"local","model":"file:/m.gguf","prompt":"hi"`
	cases := []struct {
		name  string
		body  string
		field string // "" when no field is to blame
	}{
		{"node", `{"node":"Not_A_Node","model":"file:/m.gguf","prompt":"hi"}`, "node"},
		{"node too long", `{"node":"` + strings.Repeat("a", 64) + `","model":"file:/m.gguf","prompt":"hi"}`, "node"},
		{"model missing", `{"node":"local","prompt":"hi"}`, "model"},
		{"model provider", `{"node":"local","model":"s3:bucket/m","prompt":"hi"}`, "model"},
		{"model dotdot", `{"node":"local","model":"file:/a/../etc/passwd","prompt":"hi"}`, "model"},
		{"prompt missing", `{"node":"local","model":"file:/m.gguf"}`, "prompt"},
		{"prompt control", `{"node":"local","model":"file:/m.gguf","prompt":"a\u001b[31m"}`, "prompt"},
		{"prompt bidi", `{"node":"local","model":"file:/m.gguf","prompt":"a\u202eb"}`, "prompt"},
		{"prompt too long", `{"node":"local","model":"file:/m.gguf","prompt":"` + strings.Repeat("a", api.MaxPromptChars+1) + `"}`, "prompt"},
		{"max_tokens negative", `{` + good + `,"max_tokens":-1}`, "max_tokens"},
		{"max_tokens huge", `{` + good + `,"max_tokens":1000000}`, "max_tokens"},
		{"max_tokens type", `{` + good + `,"max_tokens":"ten"}`, "max_tokens"},
		{"temperature", `{` + good + `,"temperature":2.5}`, "temperature"},
		{"top_p", `{` + good + `,"top_p":1.5}`, "top_p"},
		{"top_k", `{` + good + `,"top_k":-3}`, "top_k"},
		{"min_p", `{` + good + `,"min_p":-0.1}`, "min_p"},
		{"repeat_penalty", `{` + good + `,"repeat_penalty":11}`, "repeat_penalty"},
		{"seed type", `{` + good + `,"seed":-1}`, "seed"},
		{"stop count", `{` + good + `,"stop":["a","b","c","d","e"]}`, "stop"},
		{"stop empty", `{` + good + `,"stop":[""]}`, "stop"},
		{"stop long", `{` + good + `,"stop":["` + strings.Repeat("s", 101) + `"]}`, "stop"},
		{"backend", `{` + good + `,"backend":"tpu"}`, "backend"},
		{"device", `{` + good + `,"device":300}`, "device"},
		{"unknown field", `{` + good + `,"bogus":1}`, "bogus"},
		{"not json", `{{`, ""},
		{"empty body", ``, ""},
		{"array", `[1,2]`, ""},
		{"trailing data", `{` + good + `} {}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := postTask(t, t.Context(), tq.url, "", tc.body, nil)
			require.Equal(t, http.StatusBadRequest, res.status)
			assertEnvelope(t, res.envelope, api.CodeInvalidRequest, res.header.Get(httpx.RequestIDHeader))
			if tc.field != "" {
				assert.Equal(t, tc.field, res.envelope.Details["field"])
			}
		})
	}
	t.Run("413", func(t *testing.T) {
		res := postTask(t, t.Context(), tq.url, "", `{"node":"local","model":"file:/m.gguf","prompt":"`+strings.Repeat("a", api.MaxBodyBytes)+`"}`, nil)
		require.Equal(t, http.StatusRequestEntityTooLarge, res.status)
		assertEnvelope(t, res.envelope, api.CodePayloadTooLarge, "")
	})
	assert.Equal(t, 0, hive.spawnCount())
	assert.Equal(t, 0, tq.q.tasks.running())
}

// TestAuth: with a token, everything but GET /health needs it (401 with
// WWW-Authenticate, MISSING_API_KEY or INVALID_API_KEY).
func TestAuth(t *testing.T) {
	const token = "queen-token-0123456789"
	tq := newTestQueen(t, Config{Token: token})
	status, e := call(t, http.MethodGet, tq.url+"/health", "", nil, nil)
	assert.Nil(t, e)
	assert.Equal(t, http.StatusOK, status)

	for _, ep := range []struct{ method, path, body string }{
		{"POST", "/v2/tasks", `{"model":"file:/m.gguf","prompt":"hi"}`},
		{"DELETE", "/v2/tasks/task-1", ""},
		{"GET", "/v2/workers/list", ""},
		{"GET", "/v2/workers/health?node=local", ""},
		{"POST", "/v2/workers/shutdown", `{"worker_id":"w-1"}`},
		{"GET", "/v2/registry/beehives/list", ""},
		{"POST", "/v2/registry/beehives/remove", `{"node_name":"a"}`},
		{"GET", "/v2/nothing-here", ""},
	} {
		for _, tc := range []struct {
			name, token string
			code        api.Code
		}{{"missing", "", api.CodeMissingAPIKey}, {"wrong", "wrong-token-0123456789", api.CodeInvalidAPIKey}} {
			t.Run(ep.method+" "+ep.path+" "+tc.name, func(t *testing.T) {
				req, err := http.NewRequest(ep.method, tq.url+ep.path, strings.NewReader(ep.body))
				require.NoError(t, err)
				if tc.token != "" {
					req.Header.Set("Authorization", "Bearer "+tc.token)
				}
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
				assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
				var env api.Envelope
				require.NoError(t, json.NewDecoder(resp.Body).Decode(&env))
				assertEnvelope(t, env.Error, tc.code, "")
			})
		}
	}
	var list api.NodeList
	status, e = call(t, http.MethodGet, tq.url+"/v2/registry/beehives/list", token, nil, &list)
	require.Nil(t, e)
	assert.Equal(t, http.StatusOK, status)
}

// TestEndpointsBadInput: bad input at the other endpoints is INVALID_REQUEST
// (or the right code) naming the field; the registry stays intact.
func TestEndpointsBadInput(t *testing.T) {
	tq := newTestQueen(t, Config{})
	require.NoError(t, tq.q.store.Add(t.Context(), api.Node{Name: "keep", SSHHost: "h"}))
	cases := []struct {
		name, method, path, body string
		code                     api.Code
		field                    string
	}{
		{"cancel bad id", "DELETE", "/v2/tasks/bad.id!", "", api.CodeInvalidRequest, "id"},
		{"cancel long id", "DELETE", "/v2/tasks/" + strings.Repeat("a", 65), "", api.CodeInvalidRequest, "id"},
		{"health no node", "GET", "/v2/workers/health", "", api.CodeInvalidRequest, "node"},
		{"health bad node", "GET", "/v2/workers/health?node=Bad_Node", "", api.CodeInvalidRequest, "node"},
		{"health unknown node", "GET", "/v2/workers/health?node=nowhere", "", api.CodeNodeNotFound, ""},
		{"shutdown empty", "POST", "/v2/workers/shutdown", `{}`, api.CodeInvalidRequest, "worker_id"},
		{"shutdown bad id", "POST", "/v2/workers/shutdown", `{"worker_id":"w 1; rm"}`, api.CodeInvalidRequest, "worker_id"},
		{"shutdown unknown field", "POST", "/v2/workers/shutdown", `{"worker_id":"w-1","x":1}`, api.CodeInvalidRequest, "x"},
		{"shutdown not json", "POST", "/v2/workers/shutdown", `nope`, api.CodeInvalidRequest, ""},
		{"shutdown unknown worker", "POST", "/v2/workers/shutdown", `{"worker_id":"w-123"}`, api.CodeWorkerNotFound, ""},
		{"remove empty", "POST", "/v2/registry/beehives/remove", `{}`, api.CodeInvalidRequest, "node_name"},
		{"remove bad name", "POST", "/v2/registry/beehives/remove", `{"node_name":"../etc"}`, api.CodeInvalidRequest, "node_name"},
		{"remove wrong type", "POST", "/v2/registry/beehives/remove", `{"node_name":7}`, api.CodeInvalidRequest, "node_name"},
		{"remove local", "POST", "/v2/registry/beehives/remove", `{"node_name":"local"}`, api.CodeInvalidRequest, "node_name"},
		{"remove unknown", "POST", "/v2/registry/beehives/remove", `{"node_name":"nowhere"}`, api.CodeNodeNotFound, ""},
		{"remove too large", "POST", "/v2/registry/beehives/remove", `{"node_name":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`, api.CodePayloadTooLarge, ""},
		{"unknown endpoint", "GET", "/v2/nothing-here", "", api.CodeNotFound, ""},
		{"wrong method", "GET", "/v2/tasks", "", api.CodeMethodNotAllowed, ""},
		{"wrong method on list", "POST", "/v2/workers/list", "", api.CodeMethodNotAllowed, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			status, e := call(t, tc.method, tq.url+tc.path, "", body, nil)
			assertEnvelope(t, e, tc.code, "")
			assert.Equal(t, tc.code.HTTPStatus(), status)
			if tc.field != "" {
				assert.Equal(t, tc.field, e.Details["field"])
			}
			assert.NotEmpty(t, e.RequestID)
		})
	}
	nodes, err := tq.q.store.List(t.Context())
	require.NoError(t, err)
	require.Len(t, nodes, 1)
	assert.Equal(t, "keep", nodes[0].Name)
}

// TestUnknownRoutes: the queen answers a path it does not serve with
// NOT_FOUND (404) and a method a path does not take with METHOD_NOT_ALLOWED
// (405) and an Allow header, both in the error envelope.
func TestUnknownRoutes(t *testing.T) {
	tq := newTestQueen(t, Config{})
	for _, tc := range []struct {
		method, path string
		code         api.Code
		allow        string
	}{
		{"GET", "/favicon.ico", api.CodeNotFound, ""},
		{"GET", "/uinot", api.CodeNotFound, ""},
		{"GET", "/v2/nothing-here", api.CodeNotFound, ""},
		{"POST", "/v3/tasks", api.CodeNotFound, ""},
		{"GET", "/v2/tasks", api.CodeMethodNotAllowed, "POST"},
		{"GET", "/v2/tasks/task-1", api.CodeMethodNotAllowed, "DELETE"},
		{"POST", "/health", api.CodeMethodNotAllowed, "GET, HEAD"},
		{"DELETE", "/v2/workers/list", api.CodeMethodNotAllowed, "GET, HEAD"},
		{"PUT", "/metrics", api.CodeMethodNotAllowed, "GET, HEAD"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			a := oaiCall(t, tc.method, tq.url+tc.path, "", nil, nil)
			assert.Equal(t, tc.code.HTTPStatus(), a.status, "%s", a.body)
			assert.Equal(t, tc.allow, a.header.Get("Allow"))
			var env api.Envelope
			require.NoError(t, json.Unmarshal(a.body, &env), "%s", a.body)
			assertEnvelope(t, env.Error, tc.code, a.header.Get(httpx.RequestIDHeader))
			assert.Equal(t, tc.method, env.Error.Details["method"])
			if tc.code == api.CodeNotFound {
				assert.Contains(t, env.Error.Hint(), "/v2/", "the hint says where the endpoints are")
			}
		})
	}
}

// TestHealth: GET /health is public and says ok with the version.
func TestHealth(t *testing.T) {
	tq := newTestQueen(t, Config{Token: "queen-token-0123456789"})
	var h api.Health
	status, e := call(t, http.MethodGet, tq.url+"/health", "", nil, &h)
	require.Nil(t, e)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, api.Health{Status: "ok", Version: api.Version}, h)
}

// TestRegistryListRemove: the registry endpoints list and remove nodes.
func TestRegistryListRemove(t *testing.T) {
	tq := newTestQueen(t, Config{})
	var list api.NodeList
	_, e := call(t, http.MethodGet, tq.url+"/v2/registry/beehives/list", "", nil, &list)
	require.Nil(t, e)
	assert.NotNil(t, list.Nodes, "[] not null")
	assert.Empty(t, list.Nodes)

	require.NoError(t, tq.q.store.Add(t.Context(), api.Node{Name: "workstation", SSHHost: "10.0.0.2", SSHUser: "v", InstallPath: "/opt/rbee"}))
	require.NoError(t, tq.q.store.Add(t.Context(), api.Node{Name: "mac", SSHHost: "mac.lan"}))
	_, e = call(t, http.MethodGet, tq.url+"/v2/registry/beehives/list", "", nil, &list)
	require.Nil(t, e)
	require.Len(t, list.Nodes, 2)
	assert.Equal(t, "mac", list.Nodes[0].Name)
	assert.Equal(t, "workstation", list.Nodes[1].Name)
	assert.Equal(t, "/opt/rbee", list.Nodes[1].InstallPath)
	assert.Equal(t, api.NodeUnknown, list.Nodes[1].Status)

	var removed api.NodeRequest
	status, e := call(t, http.MethodPost, tq.url+"/v2/registry/beehives/remove", "", api.NodeRequest{Name: "mac"}, &removed)
	require.Nil(t, e)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "mac", removed.Name)
	_, e = call(t, http.MethodPost, tq.url+"/v2/registry/beehives/remove", "", api.NodeRequest{Name: "mac"}, nil)
	assertEnvelope(t, e, api.CodeNodeNotFound, "")
	assert.Contains(t, e.Hint(), "rbee setup list-nodes")

	_, e = call(t, http.MethodGet, tq.url+"/v2/registry/beehives/list", "", nil, &list)
	require.Nil(t, e)
	require.Len(t, list.Nodes, 1)
	assert.Equal(t, "workstation", list.Nodes[0].Name)
}

// TestWorkersEndpoints: list across the local hive and registry nodes (a
// dead node is listed as unreachable, with why), tokens stripped and nodes
// named; health of one node; shutdown finds the worker's node and asks its
// hive.
func TestWorkersEndpoints(t *testing.T) {
	local := newFakeHive(t, "")
	remote := newFakeHive(t, "")
	dead := newAcceptRecorder(t)
	wl := newFakeWorker(t, "w-local")
	wr := newFakeWorker(t, "w-remote")
	local.addWorker(wl.info(testModel, api.StateIdle))
	remote.addWorker(wr.info("file:/models/big.gguf", api.StateBusy))
	tq := newTestQueen(t, Config{LocalHivePort: local.port()})
	require.NoError(t, tq.q.store.Add(t.Context(), api.Node{Name: "workstation", SSHHost: "127.0.0.1", HivePort: remote.port()}))
	require.NoError(t, tq.q.store.Add(t.Context(), api.Node{Name: "gone", SSHHost: "127.0.0.1", HivePort: dead.port()}))

	raw := func(path string) string {
		resp, err := http.Get(tq.url + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}
	body := raw("/v2/workers/list")
	assert.NotContains(t, body, "api_key")
	assert.NotContains(t, body, "worker-token-")

	var list api.WorkerList
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Len(t, list.Workers, 2)
	assert.Equal(t, "local", list.Workers[0].Node)
	assert.Equal(t, "w-local", list.Workers[0].ID)
	assert.Equal(t, "workstation", list.Workers[1].Node)
	assert.Equal(t, "w-remote", list.Workers[1].ID)
	assert.Equal(t, api.StateBusy, list.Workers[1].State)
	require.Len(t, list.Unreachable, 1, "the dead node is named, not silently left out: %s", body)
	down := list.Unreachable[0]
	assert.Equal(t, "gone", down.Node)
	assertEnvelope(t, down.Error, api.CodeConnectionTimeout, "")
	assert.Contains(t, down.Error.Message, "rbee-hive on gone")
	assert.Equal(t, "gone", down.Error.Details["node"])
	assert.Equal(t, "Check if rbee-hive is running on gone (rbee workers health --node gone)", down.Error.Hint())

	var nh api.NodeHealth
	_, e := call(t, http.MethodGet, tq.url+"/v2/workers/health?node=workstation", "", nil, &nh)
	require.Nil(t, e)
	assert.Equal(t, "workstation", nh.Node)
	assert.Equal(t, "alive", nh.Hive.Status)
	assert.Equal(t, api.Version, nh.Hive.Version)
	assert.Equal(t, remote.srv.URL, nh.HiveURL)
	require.Len(t, nh.Workers, 1)
	assert.Equal(t, "workstation", nh.Workers[0].Node)
	assert.NotContains(t, raw("/v2/workers/health?node=workstation"), "worker-token-", "no worker token reaches a keeper")

	_, e = call(t, http.MethodGet, tq.url+"/v2/workers/health?node=gone", "", nil, nil)
	assertEnvelope(t, e, api.CodeConnectionTimeout, "")
	assert.Equal(t, "Check if rbee-hive is running on gone", e.Hint())

	var res map[string]string
	status, e := call(t, http.MethodPost, tq.url+"/v2/workers/shutdown", "", api.WorkerShutdownRequest{WorkerID: "w-remote"}, &res)
	require.Nil(t, e)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, map[string]string{"worker_id": "w-remote", "node": "workstation"}, res)
	assert.Equal(t, []string{"w-remote"}, remote.stopped)
	assert.Empty(t, local.stopped)

	// A worker no node that answered runs may be on the dead one: the
	// error says so.
	_, e = call(t, http.MethodPost, tq.url+"/v2/workers/shutdown", "", api.WorkerShutdownRequest{WorkerID: "w-elsewhere"}, nil)
	assertEnvelope(t, e, api.CodeWorkerNotFound, "")
	assert.Equal(t, "no node that answered runs worker w-elsewhere", e.Message)
	assert.Equal(t, []any{"gone"}, e.Details["unreachable_nodes"])
	assert.Contains(t, e.Hint(), "did not answer (gone)")

	list = api.WorkerList{}
	_, e = call(t, http.MethodGet, tq.url+"/v2/workers/list", "", nil, &list)
	require.Nil(t, e)
	require.Len(t, list.Workers, 1)
	assert.Equal(t, "w-local", list.Workers[0].ID)
}

// TestWorkersListWithoutHives: nothing running anywhere is an empty list,
// not an error.
func TestWorkersListWithoutHives(t *testing.T) {
	tq := newTestQueen(t, Config{LocalHivePort: newAcceptRecorder(t).port()})
	var list api.WorkerList
	status, e := call(t, http.MethodGet, tq.url+"/v2/workers/list", "", nil, &list)
	require.Nil(t, e)
	assert.Equal(t, http.StatusOK, status)
	assert.NotNil(t, list.Workers)
	assert.Empty(t, list.Workers)
	assert.Empty(t, list.Unreachable, "a local hive that was never started is not down")
	raw, err := http.Get(tq.url + "/v2/workers/list")
	require.NoError(t, err)
	b, err := io.ReadAll(raw.Body)
	raw.Body.Close()
	require.NoError(t, err)
	assert.JSONEq(t, `{"workers":[]}`, string(b), "the answer of old stays as it was")

	_, e = call(t, http.MethodGet, tq.url+"/v2/workers/health?node=local", "", nil, nil)
	assertEnvelope(t, e, api.CodeConnectionTimeout, "")
	assert.Contains(t, e.Hint(), "the first inference on node local starts it")
}

// TestS53ErrorEnvelopes: every error the queen returns, before a stream
// (with its HTTP status) or inside one (as an error event followed by
// [DONE]), is the envelope with a defined code, a readable message, the
// request id and details a program or a person can act on.
func TestS53ErrorEnvelopes(t *testing.T) {
	const token = "queen-token-0123456789"
	type result struct {
		status int
		err    *api.Error
		rid    string
		stream bool
	}
	run := func(t *testing.T, tq *testQueen, tok string, body any) result {
		res := postTask(t, t.Context(), tq.url, tok, body, nil)
		rid := res.header.Get(httpx.RequestIDHeader)
		if res.envelope != nil {
			return result{res.status, res.envelope, rid, false}
		}
		require.NoError(t, res.streamErr, "an error event is followed by [DONE]")
		require.Equal(t, api.KindError, res.events[len(res.events)-1].Kind, "the error event is the last one")
		return result{res.status, res.errorEvent(), rid, true}
	}
	hiveWith := func(t *testing.T, setup func(h *fakeHive, w *fakeWorker)) *testQueen {
		h := newFakeHive(t, "")
		w := newFakeWorker(t, "w-1")
		setup(h, w)
		return newTestQueen(t, Config{LocalHivePort: h.port(), LoadingTimeout: 200 * time.Millisecond, QueueTimeout: 300 * time.Millisecond})
	}
	cases := []struct {
		name string
		code api.Code
		run  func(t *testing.T) result
		keys []string // details that must be there
	}{
		{"invalid field", api.CodeInvalidRequest, func(t *testing.T) result {
			return run(t, newTestQueen(t, Config{}), "", `{"model":"file:/m.gguf","prompt":"hi","top_p":7}`)
		}, []string{"field"}},
		{"too large", api.CodePayloadTooLarge, func(t *testing.T) result {
			return run(t, newTestQueen(t, Config{}), "", `{"prompt":"`+strings.Repeat("a", api.MaxBodyBytes)+`"}`)
		}, []string{"limit"}},
		{"missing key", api.CodeMissingAPIKey, func(t *testing.T) result {
			return run(t, newTestQueen(t, Config{Token: token}), "", taskBody("local"))
		}, nil},
		{"unknown node", api.CodeNodeNotFound, func(t *testing.T) result {
			return run(t, newTestQueen(t, Config{}), "", taskBody("workstation"))
		}, []string{"node", "hint"}},
		{"shutting down", api.CodeShuttingDown, func(t *testing.T) result {
			tq := newTestQueen(t, Config{})
			require.NoError(t, tq.q.Close())
			return run(t, tq, "", taskBody("local"))
		}, []string{"hint"}},
		{"hive unreachable", api.CodeConnectionTimeout, func(t *testing.T) result {
			tq := newTestQueen(t, Config{})
			require.NoError(t, tq.q.store.Add(t.Context(), api.Node{Name: "ws", SSHHost: "127.0.0.1", HivePort: newAcceptRecorder(t).port()}))
			return run(t, tq, "", taskBody("ws"))
		}, []string{"node", "url", "attempts", "hint"}},
		{"version mismatch", api.CodeVersionMismatch, func(t *testing.T) result {
			return run(t, hiveWith(t, func(h *fakeHive, w *fakeWorker) { h.version = "1.0.0" }), "", taskBody("local"))
		}, []string{"hive_version", "queen_version", "hint"}},
		{"preflight relayed", api.CodeInsufficientRAM, func(t *testing.T) result {
			return run(t, hiveWith(t, func(h *fakeHive, w *fakeWorker) {
				h.spawnErr = api.Errorf(api.CodeInsufficientRAM, "need 1200 MB, have 800 MB").With("required", 1200).With("available", 800)
			}), "", taskBody("local"))
		}, []string{"required", "available"}},
		{"loading timeout", api.CodeLoadingTimeout, func(t *testing.T) result {
			return run(t, hiveWith(t, func(h *fakeHive, w *fakeWorker) { w.hangLoad = true; h.spawnNext = w }), "", taskBody("local"))
		}, []string{"worker_id", "layers_loaded", "layers_total", "hint"}},
		{"busy", api.CodeAllSlotsBusy, func(t *testing.T) result {
			return run(t, hiveWith(t, func(h *fakeHive, w *fakeWorker) { w.busyFor = 100; h.addWorker(w.info(testModel, api.StateBusy)) }), "", taskBody("local"))
		}, []string{"slots_total", "slots_busy", "hint", api.DetailRetryAfter}},
		{"stream cut", api.CodeWorkerCrashed, func(t *testing.T) result {
			return run(t, hiveWith(t, func(h *fakeHive, w *fakeWorker) { w.cutAfter = 2; h.addWorker(w.info(testModel, api.StateIdle)) }), "", taskBody("local"))
		}, []string{"tokens_generated", "max_tokens", "worker_id", "hint"}},
		{"worker gone", api.CodeWorkerCrashed, func(t *testing.T) result {
			return run(t, hiveWith(t, func(h *fakeHive, w *fakeWorker) { h.addWorker(w.info(testModel, api.StateIdle)); w.srv.Close() }), "", taskBody("local"))
		}, []string{"worker_id", "hint"}},
		{"worker error relayed", api.CodeInferenceFailed, func(t *testing.T) result {
			return run(t, hiveWith(t, func(h *fakeHive, w *fakeWorker) {
				w.failAfter, w.failWith = 1, api.Errorf(api.CodeInferenceFailed, "the model produced NaN").With("token_index", 1)
				h.addWorker(w.info(testModel, api.StateIdle))
			}), "", taskBody("local"))
		}, []string{"token_index"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.run(t)
			assertEnvelope(t, r.err, tc.code, r.rid)
			if !r.stream {
				assert.Equal(t, tc.code.HTTPStatus(), r.status)
			}
			for _, k := range tc.keys {
				assert.Contains(t, r.err.Details, k)
			}
			if hint := r.err.Hint(); hint != "" {
				assert.NotEqual(t, r.err.Message, hint)
			}
		})
	}
}
