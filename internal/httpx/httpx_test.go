package httpx

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
)

type body struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

func server(t *testing.T, token string) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		var b body
		if err := DecodeJSON(w, r, &b); err != nil {
			WriteError(w, r, err)
			return
		}
		WriteJSON(w, 200, b)
	})
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	srv := httptest.NewServer(Middleware(nil, Auth(token, []string{"/health"}, mux)))
	t.Cleanup(srv.Close)
	return srv
}

func TestClientServer(t *testing.T) {
	srv := server(t, "0123456789abcdef0123")
	c := &Client{BaseURL: srv.URL, Token: "0123456789abcdef0123"}
	var out body
	require.NoError(t, c.Do(t.Context(), "POST", "/echo", body{Name: "x", N: 2}, &out))
	assert.Equal(t, body{Name: "x", N: 2}, out)

	cases := []struct {
		name string
		in   string
		code api.Code
		fld  string
	}{
		{"unknown field", `{"name":"x","bogus":1}`, api.CodeInvalidRequest, "bogus"},
		{"wrong type", `{"n":"two"}`, api.CodeInvalidRequest, "n"},
		{"not json", `{{`, api.CodeInvalidRequest, ""},
		{"empty", ``, api.CodeInvalidRequest, ""},
		{"trailing", `{} {}`, api.CodeInvalidRequest, ""},
		{"too large", `{"name":"` + strings.Repeat("a", api.MaxBodyBytes) + `"}`, api.CodePayloadTooLarge, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", srv.URL+"/echo", strings.NewReader(tc.in))
			req.Header.Set("Authorization", "Bearer 0123456789abcdef0123")
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			e := ResponseError(resp).(*api.Error)
			assert.Equal(t, tc.code, e.Code)
			assert.Equal(t, tc.code.HTTPStatus(), resp.StatusCode)
			assert.NotEmpty(t, e.RequestID)
			if tc.fld != "" {
				assert.Equal(t, tc.fld, e.Details["field"])
			}
		})
	}
}

func TestAuth(t *testing.T) {
	srv := server(t, "0123456789abcdef0123")
	require.NoError(t, (&Client{BaseURL: srv.URL}).Do(t.Context(), "GET", "/health", nil, nil), "health is public")
	err := (&Client{BaseURL: srv.URL}).Do(t.Context(), "POST", "/echo", body{}, nil)
	assert.ErrorIs(t, err, api.ErrMissingAPIKey)
	err = (&Client{BaseURL: srv.URL, Token: "wrong-token-wrong-token"}).Do(t.Context(), "POST", "/echo", body{}, nil)
	assert.ErrorIs(t, err, api.ErrInvalidAPIKey)
	assert.NotContains(t, err.Error(), "wrong-token")
	resp, err := http.Post(srv.URL+"/echo", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 401, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
}

func TestPanicBecomesEnvelope(t *testing.T) {
	srv := server(t, "")
	err := (&Client{BaseURL: srv.URL}).Do(t.Context(), "GET", "/panic", nil, nil)
	assert.ErrorIs(t, err, api.ErrInternal)
	assert.NotContains(t, err.Error(), "boom", "no internals in messages")
}

func TestRequestIDEchoed(t *testing.T) {
	srv := server(t, "")
	req, _ := http.NewRequest("GET", srv.URL+"/health", nil)
	req.Header.Set(RequestIDHeader, "task-abc_1")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "task-abc_1", resp.Header.Get(RequestIDHeader))
	req.Header.Set(RequestIDHeader, "bad id with spaces")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.True(t, strings.HasPrefix(resp.Header.Get(RequestIDHeader), "req-"))
}

func TestCheckBindAndFingerprint(t *testing.T) {
	assert.NoError(t, CheckBind("127.0.0.1:8080", ""))
	assert.NoError(t, CheckBind("[::1]:8080", ""))
	assert.Error(t, CheckBind("0.0.0.0:8080", "short"))
	assert.NoError(t, CheckBind("0.0.0.0:8080", "0123456789abcdef"))
	assert.Len(t, Fingerprint("secret"), 6)
	assert.NotContains(t, Fingerprint("secret"), "secret")
}

func TestDecodeJSONStrictAndLenient(t *testing.T) {
	type body struct {
		Name string `json:"name"`
	}
	decode := func(lenient bool, payload string) (body, *api.Error) {
		var b body
		r := httptest.NewRequest("POST", "/", strings.NewReader(payload))
		w := httptest.NewRecorder()
		if lenient {
			return b, DecodeJSONLenient(w, r, &b)
		}
		return b, DecodeJSON(w, r, &b)
	}
	const extra = `{"name":"a","user":"someone"}`
	_, e := decode(false, extra)
	require.NotNil(t, e)
	assert.Equal(t, api.CodeInvalidRequest, e.Code)
	assert.Equal(t, "user", e.Details["field"])

	b, e := decode(true, extra)
	require.Nil(t, e)
	assert.Equal(t, "a", b.Name)

	for _, lenient := range []bool{false, true} {
		_, e = decode(lenient, `{"name":1}`)
		require.NotNil(t, e)
		assert.Equal(t, "name", e.Details["field"])
		_, e = decode(lenient, `{"name":"a"} {}`)
		require.NotNil(t, e)
		assert.Contains(t, e.Message, "after the JSON object")
	}
}

// A type error in a field of an embedded struct (the sampling parameters a
// request embeds) names the field by its JSON key alone, as the client wrote
// it, however deep the embedding; keys of nested objects keep their path.
func TestDecodeJSONNamesEmbeddedFields(t *testing.T) {
	type inner struct {
		Temperature *float64 `json:"temperature"`
	}
	type middle struct {
		inner
		Model string `json:"model"`
	}
	type item struct {
		Role string `json:"role"`
	}
	type body struct {
		middle
		api.SamplingParams
		Items []item `json:"items"`
	}
	cases := map[string]string{
		`{"temperature":"hot"}`:     "temperature",
		`{"model":1}`:               "model",
		`{"top_k":"many"}`:          "top_k",
		`{"items":[{"role":7}]}`:    "items.role",
		`{"stop":"one"}`:            "stop",
		`{"items":{"role":"user"}}`: "items",
	}
	for payload, field := range cases {
		for _, lenient := range []bool{false, true} {
			var b body
			r := httptest.NewRequest("POST", "/", strings.NewReader(payload))
			var e *api.Error
			if lenient {
				e = DecodeJSONLenient(httptest.NewRecorder(), r, &b)
			} else {
				e = DecodeJSON(httptest.NewRecorder(), r, &b)
			}
			require.NotNil(t, e, payload)
			assert.Equal(t, field, e.Details["field"], payload)
			assert.NotContains(t, e.Message, "SamplingParams", payload)
		}
	}
}
