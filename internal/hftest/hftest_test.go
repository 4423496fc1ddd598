package hftest

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func get(t *testing.T, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

func TestHub(t *testing.T) {
	hub := New(t)
	data := hub.File(RepoTiny, "tiny.Q8_0.gguf")
	sha := hub.SHA256(RepoTiny, "tiny.Q8_0.gguf")
	require.NotEmpty(t, data)

	t.Run("listing with blobs", func(t *testing.T) {
		resp, body := get(t, hub.URL+"/api/models/"+RepoTiny+"?blobs=true", nil)
		require.Equal(t, 200, resp.StatusCode)
		var info struct {
			ID       string `json:"id"`
			Siblings []struct {
				RFilename string `json:"rfilename"`
				Size      int64  `json:"size"`
				LFS       *struct {
					SHA256 string `json:"sha256"`
					Size   int64  `json:"size"`
				} `json:"lfs"`
			} `json:"siblings"`
		}
		require.NoError(t, json.Unmarshal(body, &info))
		assert.Equal(t, RepoTiny, info.ID)
		var names []string
		for _, s := range info.Siblings {
			names = append(names, s.RFilename)
			if s.RFilename == "tiny.Q8_0.gguf" {
				require.NotNil(t, s.LFS)
				assert.Equal(t, sha, s.LFS.SHA256)
				assert.Equal(t, int64(len(data)), s.Size)
			}
			if s.RFilename == "README.md" {
				assert.Nil(t, s.LFS, "small files are not LFS")
			}
		}
		assert.Equal(t, []string{"README.md", "config.json", "tiny-q4_0.gguf", "tiny.Q4_K_M.gguf", "tiny.Q8_0.gguf"}, names)
	})
	t.Run("resolve redirects with the hash", func(t *testing.T) {
		resp, _ := get(t, hub.URL+"/"+RepoTiny+"/resolve/main/tiny.Q8_0.gguf", nil)
		require.Equal(t, http.StatusFound, resp.StatusCode)
		assert.Equal(t, `"`+sha+`"`, resp.Header.Get("X-Linked-Etag"))
		assert.Equal(t, "/cdn/"+RepoTiny+"/tiny.Q8_0.gguf?expires=3600", resp.Header.Get("Location"))
	})
	t.Run("ranges", func(t *testing.T) {
		resp, body := get(t, hub.URL+"/cdn/"+RepoTiny+"/tiny.Q8_0.gguf", map[string]string{"Range": "bytes=1000-"})
		require.Equal(t, http.StatusPartialContent, resp.StatusCode)
		assert.Equal(t, data[1000:], body)
		assert.Equal(t, "bytes 1000-"+itoa(len(data)-1)+"/"+itoa(len(data)), resp.Header.Get("Content-Range"))
		resp, _ = get(t, hub.URL+"/cdn/"+RepoTiny+"/tiny.Q8_0.gguf", map[string]string{"Range": "bytes=" + itoa(len(data)) + "-"})
		assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode)
	})
	t.Run("errors", func(t *testing.T) {
		resp, _ := get(t, hub.URL+"/api/models/rbee-test/none", nil)
		assert.Equal(t, 404, resp.StatusCode)
		assert.Equal(t, "RepoNotFound", resp.Header.Get("X-Error-Code"))
		resp, _ = get(t, hub.URL+"/api/models/"+RepoPrivate, nil)
		assert.Equal(t, 401, resp.StatusCode)
		resp, _ = get(t, hub.URL+"/api/models/"+RepoPrivate, map[string]string{"Authorization": "Bearer " + Token})
		assert.Equal(t, 200, resp.StatusCode)
		resp, _ = get(t, hub.URL+"/"+RepoTiny+"/resolve/main/none.gguf", nil)
		assert.Equal(t, 404, resp.StatusCode)
		assert.Equal(t, "EntryNotFound", resp.Header.Get("X-Error-Code"))
	})
	t.Run("a cut answer is short", func(t *testing.T) {
		before := len(hub.Transfers(RepoTiny, "tiny.Q8_0.gguf"))
		hub.SetFault(RepoTiny, "tiny.Q8_0.gguf", Fault{CutAfter: 5000, CutTimes: 1})
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, hub.URL+"/"+RepoTiny+"/resolve/main/tiny.Q8_0.gguf", nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
		assert.Equal(t, data[:5000], body)
		_, body = get(t, hub.URL+"/cdn/"+RepoTiny+"/tiny.Q8_0.gguf", nil)
		assert.Equal(t, data, body, "only the first answer is cut")
		assert.Len(t, hub.Transfers(RepoTiny, "tiny.Q8_0.gguf"), before+2, "two more transfers")
	})
}

func itoa(n int) string { return strconv.Itoa(n) }
