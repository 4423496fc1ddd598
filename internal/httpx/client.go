package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"rbee/api"
)

// Client calls one rbee daemon's JSON API. The zero value is not usable: set
// BaseURL ("http://127.0.0.1:9200").
type Client struct {
	BaseURL string
	Token   string       // sent as a bearer token when set
	HTTP    *http.Client // nil means a client without a timeout (contexts bound calls)
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// NewRequest builds a request with the token and, when body is not nil, its JSON.
func (c *Client) NewRequest(ctx context.Context, method, path string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

// Do sends a JSON request and decodes a 2xx JSON answer into out (when not
// nil). A non-2xx answer is returned as *api.Error (from its envelope, or
// made from the status). Network failures are returned as they are.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	req, err := c.NewRequest(ctx, method, path, in)
	if err != nil {
		return err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return ResponseError(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, api.MaxBodyBytes))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("%s %s: unreadable answer: %w", method, path, err)
	}
	return nil
}

// Stream sends a request whose answer is an event stream and returns the
// response for sse.Read; the caller closes its body. A non-2xx answer or one
// that is not text/event-stream is an error.
func (c *Client) Stream(ctx context.Context, method, path string, in any, header http.Header) (*http.Response, error) {
	req, err := c.NewRequest(ctx, method, path, in)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, ResponseError(resp)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: expected an event stream, got %q", method, path, resp.Header.Get("Content-Type"))
	}
	return resp, nil
}

// ResponseError reads a non-2xx response's error envelope.
func ResponseError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, api.MaxBodyBytes))
	var env api.Envelope
	if json.Unmarshal(body, &env) == nil && env.Error != nil && env.Error.Code != "" {
		if env.Error.RequestID == "" {
			env.Error.RequestID = resp.Header.Get(RequestIDHeader)
		}
		if _, ok := env.Error.Details[api.DetailRetryAfter]; !ok {
			if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s > 0 {
				return env.Error.With(api.DetailRetryAfter, s)
			}
		}
		return env.Error
	}
	code := api.CodeInternal
	for _, c := range api.Codes() {
		if c.HTTPStatus() == resp.StatusCode && (c == api.CodeInvalidRequest || c == api.CodeRequestTimeout || c == api.CodePayloadTooLarge || c == api.CodeRateLimited) {
			code = c
		}
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return &api.Error{Code: code, Message: fmt.Sprintf("%s %s: %s %s", resp.Request.Method, resp.Request.URL.Path, resp.Status, msg),
		Details: map[string]any{"status": resp.StatusCode}}
}
