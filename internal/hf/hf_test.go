package hf

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/gguf"
	"rbee/internal/hftest"
)

func apiErr(t *testing.T, err error) *api.Error {
	t.Helper()
	var e *api.Error
	require.True(t, errors.As(err, &e), "want an *api.Error, got %v", err)
	return e
}

func ref(t *testing.T, s string) api.ModelRef {
	t.Helper()
	r, e := api.ParseModelRef(s)
	require.Nil(t, e, "%s", s)
	return r
}

func TestPick(t *testing.T) {
	files := []File{
		{Name: "README.md", Size: 10},
		{Name: "model.Q8_0.gguf", Size: 800},
		{Name: "model.Q4_K_M.gguf", Size: 500},
		{Name: "model.Q4_K_S.gguf", Size: 480},
		{Name: "model-q4_0.gguf", Size: 400},
		{Name: "model.Q2_K.gguf", Size: 300},
		{Name: "mmproj-model-f16.gguf", Size: 100},             // a projector, never a model
		{Name: "big/model.Q2_K-00001-of-00002.gguf", Size: 50}, // one part of a split file
		{Name: "odd name.Q3_K_M.gguf", Size: 60},               // an unsafe name
		{Name: "sub/model.Q5_K_M.gguf", Size: 600},
	}
	noQ4KM := []File{{Name: "a.Q8_0.gguf", Size: 800}, {Name: "a.Q5_K_M.gguf", Size: 600}, {Name: "a.Q6_K.gguf", Size: 700}}
	tests := []struct {
		name, ref string
		files     []File
		want      string // the file picked; "" for MODEL_NOT_FOUND
		msg       string // in the error message
	}{
		{"Q4_K_M preferred over smaller files", "hf:o/r", files, "model.Q4_K_M.gguf", ""},
		{"smallest without Q4_K_M", "hf:o/r", noQ4KM, "a.Q5_K_M.gguf", ""},
		{"quant with dots", "hf:o/r:Q8_0", files, "model.Q8_0.gguf", ""},
		{"quant is case-insensitive", "hf:o/r:q8_0", files, "model.Q8_0.gguf", ""},
		{"quant after a dash, lower case", "hf:o/r:Q4_0", files, "model-q4_0.gguf", ""},
		{"quant in a sub folder", "hf:o/r:Q5_K_M", files, "sub/model.Q5_K_M.gguf", ""},
		{"Q4_K does not match Q4_K_M or Q4_K_S", "hf:o/r:Q4_K", files, "", "has no Q4_K GGUF file; it has Q2_K, Q4_0, Q4_K_M, Q4_K_S, Q5_K_M, Q8_0"},
		{"missing quant lists the repo", "hf:o/r:Q6_K", files, "", "has no Q6_K GGUF file; it has"},
		{"split parts are not picked", "hf:o/r:Q2_K", files, "model.Q2_K.gguf", ""},
		{"file by name", "hf:o/r/model.Q8_0.gguf", files, "model.Q8_0.gguf", ""},
		{"file in a sub folder", "hf:o/r/sub/model.Q5_K_M.gguf", files, "sub/model.Q5_K_M.gguf", ""},
		{"missing file", "hf:o/r/nope.gguf", files, "", "has no file nope.gguf"},
		{"no GGUF at all", "hf:o/r", []File{{Name: "README.md"}, {Name: "model.safetensors"}}, "", "has no GGUF model file"},
		{"empty repo", "hf:o/r:Q8_0", nil, "", "has no GGUF model file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Pick(tc.files, ref(t, tc.ref))
			if tc.want != "" {
				require.NoError(t, err)
				assert.Equal(t, tc.want, f.Name)
				return
			}
			e := apiErr(t, err)
			assert.Equal(t, api.CodeModelNotFound, e.Code)
			assert.Contains(t, e.Message, tc.msg)
			assert.Equal(t, tc.ref, e.Details["model_ref"])
			assert.NotContains(t, e.Details["files"], "mmproj-model-f16.gguf")
		})
	}
}

func newClient(hub *hftest.Hub, mutate func(*Client)) *Client {
	c := &Client{Endpoint: hub.URL, FirstDelay: time.Millisecond, StallTimeout: 5 * time.Second}
	if mutate != nil {
		mutate(c)
	}
	return c
}

func TestResolve(t *testing.T) {
	hub := hftest.New(t)
	tests := []struct {
		name, ref, token string
		want             string // the file; "" for an error
		size             int64
		code             api.Code
		msg              []string
	}{
		{"Q4_K_M preferred", "hf:" + hftest.RepoTiny, "", "tiny.Q4_K_M.gguf", int64(len(hub.File(hftest.RepoTiny, "tiny.Q4_K_M.gguf"))), "", nil},
		{"smallest otherwise", "hf:" + hftest.RepoNoQ4KM, "", "tiny.Q4_0.gguf", int64(len(hub.File(hftest.RepoNoQ4KM, "tiny.Q4_0.gguf"))), "", nil},
		{":QUANT", "hf:" + hftest.RepoTiny + ":Q8_0", "", "tiny.Q8_0.gguf", int64(len(hub.File(hftest.RepoTiny, "tiny.Q8_0.gguf"))), "", nil},
		{":quant lower case file", "hf:" + hftest.RepoTiny + ":Q4_0", "", "tiny-q4_0.gguf", 0, "", nil},
		{"/FILE", "hf:" + hftest.RepoTiny + "/tiny.Q8_0.gguf", "", "tiny.Q8_0.gguf", 0, "", nil},
		{"missing quant", "hf:" + hftest.RepoTiny + ":Q6_K", "", "", 0, api.CodeModelNotFound, []string{"has no Q6_K GGUF file", "Q4_0, Q4_K_M, Q8_0"}},
		{"missing repo", "hf:rbee-test/nothing-here", "", "", 0, api.CodeModelNotFound, []string{"no repository rbee-test/nothing-here (404)"}},
		{"private without a token", "hf:" + hftest.RepoPrivate, "", "", 0, api.CodeModelNotFound, []string{"401", "private"}},
		{"private with a wrong token", "hf:" + hftest.RepoPrivate, "hf_wrong_token_abcdef", "", 0, api.CodeModelNotFound, []string{"refused the token", "HF_TOKEN"}},
		{"private with the token", "hf:" + hftest.RepoPrivate, hftest.Token, "tiny.Q4_K_M.gguf", 0, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(hub, func(c *Client) { c.Token = tc.token })
			f, err := c.Resolve(t.Context(), ref(t, tc.ref))
			if tc.want != "" {
				require.NoError(t, err)
				assert.Equal(t, tc.want, f.Name)
				assert.Equal(t, ref(t, tc.ref).Repo, f.Repo)
				assert.Len(t, f.SHA256, 64, "the LFS hash of the listing")
				if tc.size > 0 {
					assert.Equal(t, tc.size, f.Size)
				}
				return
			}
			e := apiErr(t, err)
			assert.Equal(t, tc.code, e.Code)
			for _, m := range tc.msg {
				assert.Contains(t, e.Message, m)
			}
			if tc.token != "" {
				assert.NotContains(t, e.Message+e.Hint(), tc.token, "the token never appears in an error")
			}
		})
	}
	t.Run("private hint names HF_TOKEN", func(t *testing.T) {
		_, err := newClient(hub, nil).Resolve(t.Context(), ref(t, "hf:"+hftest.RepoPrivate))
		assert.Contains(t, apiErr(t, err).Hint(), "HF_TOKEN")
	})
	t.Run("the token is sent only when set", func(t *testing.T) {
		before := len(hub.Requests())
		_, err := newClient(hub, func(c *Client) { c.Token = hftest.Token }).ListRepo(t.Context(), hftest.RepoTiny)
		require.NoError(t, err)
		_, err = newClient(hub, nil).ListRepo(t.Context(), hftest.RepoTiny)
		require.NoError(t, err)
		reqs := hub.Requests()[before:]
		require.Len(t, reqs, 2)
		assert.Equal(t, "valid", reqs[0].Auth)
		assert.Equal(t, "", reqs[1].Auth)
	})
}

// recorder collects a download's callbacks.
type recorder struct {
	mu       sync.Mutex
	progress []Progress
	retries  []RetryInfo
}

func (r *recorder) options() Options {
	return Options{
		Progress: func(p Progress) { r.mu.Lock(); r.progress = append(r.progress, p); r.mu.Unlock() },
		Retry:    func(i RetryInfo) { r.mu.Lock(); r.retries = append(r.retries, i); r.mu.Unlock() },
	}
}

func resolve(t *testing.T, c *Client, s string) File {
	t.Helper()
	f, err := c.Resolve(t.Context(), ref(t, s))
	require.NoError(t, err)
	return f
}

func ranges(reqs []hftest.Request) []string {
	out := []string{}
	for _, r := range reqs {
		out = append(out, r.Range)
	}
	return out
}

func TestDownload(t *testing.T) {
	hub := hftest.New(t)
	const name = "tiny.Q4_K_M.gguf"
	want := hub.File(hftest.RepoTiny, name)
	size := int64(len(want))

	t.Run("S16 complete, verified, moved into place", func(t *testing.T) {
		var logs bytes.Buffer
		c := newClient(hub, func(c *Client) {
			c.Token = hftest.Token
			c.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Trace})
		})
		f := resolve(t, c, "hf:"+hftest.RepoTiny)
		dest, err := LocalPath(t.TempDir(), f)
		require.NoError(t, err)
		before := len(hub.Transfers(hftest.RepoTiny, name))
		var rec recorder
		res, err := c.Download(t.Context(), f, dest, rec.options())
		require.NoError(t, err)
		got, err := os.ReadFile(dest)
		require.NoError(t, err)
		assert.Equal(t, want, got)
		assert.Equal(t, Result{Path: dest, Size: size, SHA256: hub.SHA256(hftest.RepoTiny, name), Verified: true, Attempts: 1}, res)
		assert.NoFileExists(t, PartPath(dest, f))
		transfers := hub.Transfers(hftest.RepoTiny, name)[before:]
		assert.Equal(t, []string{""}, ranges(transfers), "one transfer, from the start")
		require.NotEmpty(t, rec.progress)
		assert.Equal(t, Progress{Downloaded: size, Total: size}, rec.progress[len(rec.progress)-1])
		for i := 1; i < len(rec.progress); i++ {
			assert.GreaterOrEqual(t, rec.progress[i].Downloaded, rec.progress[i-1].Downloaded)
		}
		_, err = gguf.ReadInfo(dest)
		assert.NoError(t, err, "the file is the GGUF model")
		assert.NotContains(t, logs.String(), hftest.Token, "the token is never logged")
	})

	t.Run("S17 resumes from the last byte after cuts", func(t *testing.T) {
		hub.SetFault(hftest.RepoTiny, name, hftest.Fault{CutAfter: 300_000, CutTimes: 3})
		t.Cleanup(func() { hub.SetFault(hftest.RepoTiny, name, hftest.Fault{}) })
		c := newClient(hub, nil)
		f := resolve(t, c, "hf:"+hftest.RepoTiny)
		dest, err := LocalPath(t.TempDir(), f)
		require.NoError(t, err)
		before := len(hub.Transfers(hftest.RepoTiny, name))
		var rec recorder
		res, err := c.Download(t.Context(), f, dest, rec.options())
		require.NoError(t, err)
		assert.Equal(t, 4, res.Attempts)
		assert.True(t, res.Verified)
		got, err := os.ReadFile(dest)
		require.NoError(t, err)
		assert.Equal(t, want, got)
		assert.Equal(t, []string{"", "bytes=300000-", "bytes=600000-", "bytes=900000-"}, ranges(hub.Transfers(hftest.RepoTiny, name)[before:]))
		require.Len(t, rec.retries, 3)
		for i, r := range rec.retries {
			assert.Equal(t, i+1, r.Attempt)
			assert.Equal(t, 6, r.Attempts)
			assert.Equal(t, int64(300_000*(i+1)), r.Offset)
			assert.False(t, r.Stalled)
		}
	})

	t.Run("S17 out of attempts: DOWNLOAD_FAILED after 6, delays doubling from 100 ms", func(t *testing.T) {
		hub.SetFault(hftest.RepoTiny, name, hftest.Fault{CutAfter: 100_000})
		t.Cleanup(func() { hub.SetFault(hftest.RepoTiny, name, hftest.Fault{}) })
		c := newClient(hub, func(c *Client) { c.FirstDelay = 0 }) // the default policy
		f := resolve(t, c, "hf:"+hftest.RepoTiny)
		dest, err := LocalPath(t.TempDir(), f)
		require.NoError(t, err)
		before := len(hub.Transfers(hftest.RepoTiny, name))
		var rec recorder
		_, err = c.Download(t.Context(), f, dest, rec.options())
		e := apiErr(t, err)
		assert.Equal(t, api.CodeDownloadFailed, e.Code)
		assert.True(t, errors.Is(err, api.ErrDownloadFailed))
		assert.Equal(t, 6, e.Details["attempts"])
		assert.Equal(t, int64(600_000), e.Details["bytes_downloaded"])
		assert.Equal(t, size, e.Details["bytes_total"])
		assert.Len(t, hub.Transfers(hftest.RepoTiny, name)[before:], 6)
		var delays []time.Duration
		for _, r := range rec.retries {
			delays = append(delays, r.Delay)
		}
		assert.Equal(t, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond}, delays)
		st, err := os.Stat(PartPath(dest, f))
		require.NoError(t, err, "the partial file is kept for the next download")
		assert.Equal(t, int64(600_000), st.Size())
		assert.NoFileExists(t, dest)

		// The next download picks it up where it stopped.
		hub.SetFault(hftest.RepoTiny, name, hftest.Fault{})
		before = len(hub.Transfers(hftest.RepoTiny, name))
		res, err := newClient(hub, nil).Download(t.Context(), f, dest, Options{})
		require.NoError(t, err)
		assert.Equal(t, int64(600_000), res.Resumed)
		assert.Equal(t, []string{"bytes=600000-"}, ranges(hub.Transfers(hftest.RepoTiny, name)[before:]))
		got, err := os.ReadFile(dest)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})

	t.Run("a server that ignores Range starts over", func(t *testing.T) {
		hub.SetFault(hftest.RepoTiny, name, hftest.Fault{CutAfter: 200_000, CutTimes: 1, IgnoreRange: true})
		t.Cleanup(func() { hub.SetFault(hftest.RepoTiny, name, hftest.Fault{}) })
		c := newClient(hub, nil)
		f := resolve(t, c, "hf:"+hftest.RepoTiny)
		dest, err := LocalPath(t.TempDir(), f)
		require.NoError(t, err)
		res, err := c.Download(t.Context(), f, dest, Options{})
		require.NoError(t, err)
		assert.Equal(t, 2, res.Attempts)
		got, err := os.ReadFile(dest)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})

	t.Run("checksum mismatch removes the partial file", func(t *testing.T) {
		hub.SetFault(hftest.RepoTiny, name, hftest.Fault{WrongSHA: true})
		t.Cleanup(func() { hub.SetFault(hftest.RepoTiny, name, hftest.Fault{}) })
		for _, source := range []string{"listing", "X-Linked-Etag"} {
			t.Run(source, func(t *testing.T) {
				c := newClient(hub, nil)
				f := resolve(t, c, "hf:"+hftest.RepoTiny)
				announced := f.SHA256
				if source != "listing" {
					f.SHA256 = "" // as if the listing had no LFS data: the redirect's header says it
				}
				dest, err := LocalPath(t.TempDir(), f)
				require.NoError(t, err)
				_, err = c.Download(t.Context(), f, dest, Options{})
				e := apiErr(t, err)
				assert.Equal(t, api.CodeChecksumMismatch, e.Code)
				assert.Equal(t, announced, e.Details["expected"])
				assert.Equal(t, hub.SHA256(hftest.RepoTiny, name), e.Details["actual"])
				assert.NoFileExists(t, PartPath(dest, f))
				assert.NoFileExists(t, dest)
			})
		}
	})

	t.Run("a stall is retried from where it stopped", func(t *testing.T) {
		hub.SetFault(hftest.RepoTiny, name, hftest.Fault{Stall: true, StallAfter: 400_000, StallTimes: 1})
		t.Cleanup(func() { hub.SetFault(hftest.RepoTiny, name, hftest.Fault{}) })
		c := newClient(hub, func(c *Client) { c.StallTimeout = 200 * time.Millisecond })
		f := resolve(t, c, "hf:"+hftest.RepoTiny)
		dest, err := LocalPath(t.TempDir(), f)
		require.NoError(t, err)
		before := len(hub.Transfers(hftest.RepoTiny, name))
		var rec recorder
		res, err := c.Download(t.Context(), f, dest, rec.options())
		require.NoError(t, err)
		assert.Equal(t, 2, res.Attempts)
		assert.Equal(t, []string{"", "bytes=400000-"}, ranges(hub.Transfers(hftest.RepoTiny, name)[before:]))
		require.Len(t, rec.retries, 1)
		assert.True(t, rec.retries[0].Stalled)
		assert.Contains(t, rec.retries[0].Err.Error(), "no data for 200ms")
	})

	t.Run("a stall that does not recover is DOWNLOAD_TIMEOUT", func(t *testing.T) {
		hub.SetFault(hftest.RepoTiny, name, hftest.Fault{Stall: true, StallAfter: 100_000})
		t.Cleanup(func() { hub.SetFault(hftest.RepoTiny, name, hftest.Fault{}) })
		c := newClient(hub, func(c *Client) { c.StallTimeout = 100 * time.Millisecond; c.Attempts = 2 })
		f := resolve(t, c, "hf:"+hftest.RepoTiny)
		dest, err := LocalPath(t.TempDir(), f)
		require.NoError(t, err)
		_, err = c.Download(t.Context(), f, dest, Options{})
		e := apiErr(t, err)
		assert.Equal(t, api.CodeDownloadTimeout, e.Code)
		assert.Equal(t, 2, e.Details["attempts"])
		assert.Equal(t, int64(100), e.Details["stall_timeout_ms"])
	})

	t.Run("a missing file is not retried", func(t *testing.T) {
		hub.SetFault(hftest.RepoTiny, name, hftest.Fault{NotFound: true})
		t.Cleanup(func() { hub.SetFault(hftest.RepoTiny, name, hftest.Fault{}) })
		c := newClient(hub, nil)
		f := resolve(t, c, "hf:"+hftest.RepoTiny)
		dest, err := LocalPath(t.TempDir(), f)
		require.NoError(t, err)
		n := len(hub.Requests())
		_, err = c.Download(t.Context(), f, dest, Options{})
		e := apiErr(t, err)
		assert.Equal(t, api.CodeModelNotFound, e.Code)
		assert.Len(t, hub.Requests()[n:], 1, "one request, no retry")
	})

	t.Run("disk check", func(t *testing.T) {
		c := newClient(hub, nil)
		f := resolve(t, c, "hf:"+hftest.RepoTiny)
		margin := int64(float64(size) * DiskMargin)
		tests := []struct {
			name    string
			free    int64
			partial int64
			ok      bool
		}{
			{"size and margin fit", size + margin, 0, true},
			{"the margin is missing", size + margin - 1, 0, false},
			{"a partial file needs less", size - 500_000 + margin, 500_000, true},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				c := newClient(hub, func(c *Client) { c.DiskFree = func(string) (int64, error) { return tc.free, nil } })
				dest, err := LocalPath(t.TempDir(), f)
				require.NoError(t, err)
				if tc.partial > 0 {
					require.NoError(t, os.MkdirAll(filepath.Dir(dest), 0o755))
					require.NoError(t, os.WriteFile(PartPath(dest, f), want[:tc.partial], 0o644))
				}
				before := len(hub.Transfers(hftest.RepoTiny, name))
				_, err = c.Download(t.Context(), f, dest, Options{})
				if tc.ok {
					require.NoError(t, err)
					return
				}
				e := apiErr(t, err)
				assert.Equal(t, api.CodeInsufficientDisk, e.Code)
				assert.Equal(t, mb(size+margin), e.Details["required"])
				assert.Equal(t, mb(tc.free), e.Details["available"])
				assert.Contains(t, e.Message, "need 2 MB")
				assert.Empty(t, hub.Transfers(hftest.RepoTiny, name)[before:], "nothing is downloaded")
			})
		}
	})

	t.Run("ctx end keeps the partial file", func(t *testing.T) {
		hub.SetFault(hftest.RepoTiny, name, hftest.Fault{Stall: true, StallAfter: 250_000})
		t.Cleanup(func() { hub.SetFault(hftest.RepoTiny, name, hftest.Fault{}) })
		c := newClient(hub, nil)
		f := resolve(t, c, "hf:"+hftest.RepoTiny)
		dest, err := LocalPath(t.TempDir(), f)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		opt := Options{Progress: func(p Progress) {
			if p.Downloaded >= 250_000 {
				cancel()
			}
		}}
		_, err = c.Download(ctx, f, dest, opt)
		assert.ErrorIs(t, err, context.Canceled)
		st, err := os.Stat(PartPath(dest, f))
		require.NoError(t, err)
		assert.Equal(t, int64(250_000), st.Size())
	})
}

func TestLocalPath(t *testing.T) {
	root := t.TempDir()
	tests := []struct {
		repo, name string
		want       string // relative to root; "" for an error
	}{
		{"org/repo", "model.Q8_0.gguf", "hf/org/repo/model.Q8_0.gguf"},
		{"org/repo", "sub/dir/model.gguf", "hf/org/repo/sub/dir/model.gguf"},
		{"org/repo", "../../../etc/passwd", ""},
		{"org/repo", "sub/../../x.gguf", ""},
		{"org/repo", "/abs/x.gguf", ""},
		{"org/repo", ".hidden.gguf", ""},
		{"org/repo", "odd name.gguf", ""},
		{"org/repo", "back\\slash.gguf", ""},
		{"org/repo", "", ""},
		{"org/repo", "a//b.gguf", ""},
		{"org/..", "x.gguf", ""},
		{"../repo", "x.gguf", ""},
		{"org", "x.gguf", ""},
		{"org/repo/extra", "x.gguf", ""},
	}
	for _, tc := range tests {
		t.Run(tc.repo+" "+tc.name, func(t *testing.T) {
			p, err := LocalPath(root, File{Repo: tc.repo, Name: tc.name})
			if tc.want == "" {
				e := apiErr(t, err)
				assert.Equal(t, api.CodeInvalidRequest, e.Code)
				assert.Equal(t, "model_ref", e.Details["field"])
				return
			}
			require.NoError(t, err)
			assert.Equal(t, filepath.Join(root, filepath.FromSlash(tc.want)), p)
		})
	}
}

func TestHeaderParsing(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	for _, tc := range []struct{ tag, want string }{
		{`"` + sha + `"`, sha},
		{`W/"` + sha + `"`, sha},
		{strings.ToUpper(sha), sha},
		{`"` + strings.Repeat("a", 40) + `"`, ""}, // a git blob id
		{`"d41d8cd98f00b204e9800998ecf8427e-12"`, ""},
		{"", ""},
	} {
		assert.Equal(t, tc.want, etagSHA256(tc.tag), tc.tag)
	}
	for _, tc := range []struct {
		s            string
		start, total int64
		ok           bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/1", 0, 1, true},
		{"bytes 5-9/*", 5, 0, true},
		{"bytes */300", 0, 300, true},
		{"bytes 9-5/10", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
		{"bytes 1-2", 0, 0, false},
		{"bytes x-2/3", 0, 0, false},
	} {
		start, total, ok := parseContentRange(tc.s)
		assert.Equal(t, tc.ok, ok, tc.s)
		if tc.ok {
			assert.Equal(t, [2]int64{tc.start, tc.total}, [2]int64{start, total}, tc.s)
		}
	}
}

func TestEndpoint(t *testing.T) {
	t.Setenv(EnvEndpoint, " http://127.0.0.1:1/ ")
	t.Setenv(EnvToken, "hf_secret_from_env")
	c := FromEnv()
	assert.Equal(t, "http://127.0.0.1:1", c.endpoint())
	assert.Equal(t, "hf_secret_from_env", c.Token)
	assert.Equal(t, DefaultEndpoint, (&Client{}).endpoint())
	bad := &Client{Endpoint: "ftp://example.invalid"}
	_, err := bad.ListRepo(t.Context(), "org/repo")
	assert.Equal(t, api.CodeDownloadFailed, apiErr(t, err).Code)
	_, err = (&Client{Endpoint: "http://127.0.0.1:1"}).ListRepo(t.Context(), "org/../x")
	assert.Equal(t, api.CodeInvalidRequest, apiErr(t, err).Code)
}

func TestListRepoRetriesThenFails(t *testing.T) {
	// Nothing listens on the port: every attempt is refused.
	c := &Client{Endpoint: "http://127.0.0.1:1", FirstDelay: time.Millisecond, Attempts: 3}
	_, err := c.ListRepo(t.Context(), "org/repo")
	e := apiErr(t, err)
	assert.Equal(t, api.CodeDownloadFailed, e.Code)
	assert.Equal(t, 3, e.Details["attempts"])
}
