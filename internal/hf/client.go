// Package hf fetches GGUF models from a Hugging Face hub: it
// lists a repository's files, resolves rbee's hf: references to one GGUF
// file, and downloads it with resumption, retries, stall detection, a disk
// space check and SHA-256 verification.
//
// The hub is $HF_ENDPOINT (default [DefaultEndpoint]); a token from
// $HF_TOKEN is sent as a bearer token and never logged or put in a message.
// Errors are *api.Error (MODEL_NOT_FOUND, DOWNLOAD_FAILED, DOWNLOAD_TIMEOUT,
// CHECKSUM_MISMATCH, INSUFFICIENT_DISK, INVALID_REQUEST) unless ctx ended.
package hf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/hashicorp/go-hclog"

	"rbee/api"
)

// DefaultEndpoint is the public hub, used when HF_ENDPOINT is not set.
const DefaultEndpoint = "https://huggingface.co"

// Environment variables the client reads in FromEnv.
const (
	EnvEndpoint = "HF_ENDPOINT"
	EnvToken    = "HF_TOKEN"
)

// Defaults of the Client's zero fields.
const (
	DefaultAttempts     = 6
	DefaultFirstDelay   = 100 * time.Millisecond
	DefaultStallTimeout = 60 * time.Second
	// DefaultRevision is the branch files are downloaded from.
	DefaultRevision = "main"
)

// maxRepoInfoBytes bounds the answer of the repository API.
const maxRepoInfoBytes = 32 << 20

// Client talks to one hub. The zero value uses DefaultEndpoint without a
// token; FromEnv reads HF_ENDPOINT and HF_TOKEN.
type Client struct {
	// Endpoint is the hub's base URL (default DefaultEndpoint).
	Endpoint string
	// Token, when set, is sent as "Authorization: Bearer TOKEN".
	Token string
	// HTTP sends the requests (nil: a client without an overall timeout;
	// contexts and the stall timeout bound every request).
	HTTP *http.Client
	// Attempts is how many times a request is tried (6); FirstDelay is the
	// wait before the second attempt, doubling after each (100 ms).
	Attempts   int
	FirstDelay time.Duration
	// StallTimeout ends an attempt that received no byte for that long (60 s).
	StallTimeout time.Duration
	// DiskFree reports the free bytes of the file system holding dir (nil:
	// statfs).
	DiskFree func(dir string) (int64, error)
	// Logger receives the client's log (nil: none). It never sees the token.
	Logger hclog.Logger
}

// FromEnv returns a client for $HF_ENDPOINT (default DefaultEndpoint) with
// the token of $HF_TOKEN.
func FromEnv() *Client {
	return &Client{Endpoint: strings.TrimSpace(os.Getenv(EnvEndpoint)), Token: strings.TrimSpace(os.Getenv(EnvToken))}
}

// BaseURL is the hub the client talks to: Endpoint without a trailing
// slash, or DefaultEndpoint.
func (c *Client) BaseURL() string { return c.endpoint() }

func (c *Client) endpoint() string {
	e := strings.TrimRight(strings.TrimSpace(c.Endpoint), "/")
	if e == "" {
		return DefaultEndpoint
	}
	return e
}

// CheckEndpoint reports whether the endpoint is an http(s) URL.
func (c *Client) CheckEndpoint() error {
	u, err := url.Parse(c.endpoint())
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("hugging face endpoint %q is not an http(s) URL (check $%s)", c.endpoint(), EnvEndpoint)
	}
	return nil
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) log() hclog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return hclog.NewNullLogger()
}

func (c *Client) attempts() int {
	if c.Attempts > 0 {
		return c.Attempts
	}
	return DefaultAttempts
}

func (c *Client) stallTimeout() time.Duration {
	if c.StallTimeout > 0 {
		return c.StallTimeout
	}
	return DefaultStallTimeout
}

// backoff is the retry policy: Attempts tries in all, FirstDelay doubling
// between them, without jitter (one hive downloads from one hub).
func (c *Client) backoff(ctx context.Context) backoff.BackOff {
	first := c.FirstDelay
	if first <= 0 {
		first = DefaultFirstDelay
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = first
	b.Multiplier = 2
	b.RandomizationFactor = 0
	b.MaxInterval = 30 * time.Second
	b.MaxElapsedTime = 0
	return backoff.WithContext(backoff.WithMaxRetries(b, uint64(c.attempts()-1)), ctx)
}

// newRequest builds a GET for the hub with the token.
func (c *Client) newRequest(ctx context.Context, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	req.Header.Set("User-Agent", "rbee/"+api.Version)
	return req, nil
}

// escapePath escapes each segment of a slash-separated path.
func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// Repo is what the hub says about a repository.
type Repo struct {
	ID    string // ORG/REPO
	SHA   string // the commit of the listing
	Files []File
}

// File is one file of a repository.
type File struct {
	Repo     string // ORG/REPO
	Name     string // its path in the repository
	Size     int64  // bytes; 0 when the hub did not say
	SHA256   string // lowercase hex from the LFS metadata; "" when the hub did not say
	Revision string // the revision it is downloaded from ("main" when empty)
}

// repoInfo is the part of GET /api/models/{repo}?blobs=true rbee reads.
type repoInfo struct {
	ID       string `json:"id"`
	SHA      string `json:"sha"`
	Siblings []struct {
		RFilename string `json:"rfilename"`
		Size      int64  `json:"size"`
		LFS       *struct {
			SHA256 string `json:"sha256"`
			Size   int64  `json:"size"`
		} `json:"lfs"`
	} `json:"siblings"`
}

// transientError marks a failure worth another attempt.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// ListRepo lists a repository's files with their sizes and LFS hashes
// (GET {endpoint}/api/models/{repo}?blobs=true), retrying network failures
// and 5xx/429 answers. A repository the hub does not show is
// MODEL_NOT_FOUND, saying whether a token would help.
func (c *Client) ListRepo(ctx context.Context, repo string) (Repo, error) {
	if err := validRepo(repo); err != nil {
		return Repo{}, err
	}
	if err := c.CheckEndpoint(); err != nil {
		return Repo{}, api.Errorf(api.CodeDownloadFailed, "%s", err.Error())
	}
	u := c.endpoint() + "/api/models/" + escapePath(repo) + "?blobs=true"
	var info repoInfo
	attempt := 0
	op := func() error {
		attempt++
		err := c.getRepo(ctx, u, repo, &info)
		var te *transientError
		if err != nil && !errors.As(err, &te) {
			return backoff.Permanent(err)
		}
		return err
	}
	notify := func(err error, next time.Duration) {
		c.log().Warn("listing the repository failed; retrying", "repo", repo, "attempt", attempt, "error", err, "retry_in", next)
	}
	if err := backoff.RetryNotify(op, c.backoff(ctx), notify); err != nil {
		if ctx.Err() != nil {
			return Repo{}, ctx.Err()
		}
		var ae *api.Error
		if errors.As(err, &ae) {
			return Repo{}, ae
		}
		return Repo{}, api.Errorf(api.CodeDownloadFailed, "listing %s on %s failed after %d attempts: %v", repo, c.endpoint(), attempt, err).
			With("repo", repo).With("attempts", attempt).WithHint("check the node's network and $" + EnvEndpoint)
	}
	out := Repo{ID: info.ID, SHA: info.SHA}
	for _, s := range info.Siblings {
		f := File{Repo: repo, Name: s.RFilename, Size: s.Size, Revision: DefaultRevision}
		if s.LFS != nil {
			if isSHA256(strings.ToLower(s.LFS.SHA256)) {
				f.SHA256 = strings.ToLower(s.LFS.SHA256)
			}
			if f.Size == 0 {
				f.Size = s.LFS.Size
			}
		}
		out.Files = append(out.Files, f)
	}
	return out, nil
}

func (c *Client) getRepo(ctx context.Context, u, repo string, out *repoInfo) error {
	req, err := c.newRequest(ctx, u)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &transientError{err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return c.statusError(resp.StatusCode, repo, "")
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxRepoInfoBytes)).Decode(out); err != nil {
		return &transientError{fmt.Errorf("unreadable answer from %s: %w", c.endpoint(), err)}
	}
	return nil
}

// statusError maps a hub answer that is not a success: 401/403/404 are
// MODEL_NOT_FOUND (with what would help), 429 and 5xx transient, the rest
// DOWNLOAD_FAILED.
func (c *Client) statusError(status int, repo, file string) error {
	what := "repository " + repo
	if file != "" {
		what = "file " + file + " of " + repo
	}
	e := func(msg, hint string) *api.Error {
		out := api.Errorf(api.CodeModelNotFound, "%s", msg).With("repo", repo).With("hub_status", status)
		if file != "" {
			out = out.With("file", file)
		}
		return out.WithHint(hint)
	}
	switch {
	case status == http.StatusUnauthorized && c.Token == "":
		return e(fmt.Sprintf("Hugging Face refused access to %s (401): it is private, gated or does not exist", what),
			"if the repository is private or gated, set "+EnvToken+" on the node to a Hugging Face token that can read it")
	case status == http.StatusUnauthorized:
		return e(fmt.Sprintf("Hugging Face refused the token for %s (401): the repository does not exist or "+EnvToken+" cannot read it", what),
			"check the repository name and that "+EnvToken+" is a valid token with access to it")
	case status == http.StatusForbidden:
		return e(fmt.Sprintf("Hugging Face denied access to %s (403): the repository is gated", what),
			"accept the repository's terms on Hugging Face and set "+EnvToken+" to a token of that account")
	case status == http.StatusNotFound:
		return e(fmt.Sprintf("Hugging Face has no %s (404)", what), "check the reference: hf:ORG/REPO, hf:ORG/REPO:QUANT or hf:ORG/REPO/FILE.gguf")
	case status == http.StatusTooManyRequests || status >= 500:
		return &transientError{fmt.Errorf("the hub answered %d %s", status, http.StatusText(status))}
	}
	return api.Errorf(api.CodeDownloadFailed, "Hugging Face answered %d %s for %s", status, http.StatusText(status), what).
		With("repo", repo).With("hub_status", status)
}

// validRepo checks ORG/REPO.
func validRepo(repo string) error {
	parts := strings.Split(repo, "/")
	if len(parts) != 2 || !safeName(parts[0]) || !safeName(parts[1]) {
		return api.InvalidField("model_ref", "a Hugging Face repository is ORG/REPO of letters, digits, '.', '_' and '-'")
	}
	return nil
}

// isSHA256 reports whether s is 64 lowercase hex digits.
func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// etagSHA256 returns the SHA-256 an ETag carries (W/ and quotes removed),
// or "" when it is something else (a git blob id, an opaque tag).
func etagSHA256(tag string) string {
	tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
	tag = strings.ToLower(strings.Trim(tag, `"`))
	if isSHA256(tag) {
		return tag
	}
	return ""
}
