package e2e

import (
	"database/sql"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/hftest"
)

// hfInfer runs rbee infer of an hf: model with HF_ENDPOINT at the fake hub
// (and no HF_ settings of the test runner).
func (c *cluster) hfInfer(hub *hftest.Hub, model string, extra ...string) result {
	c.t.Helper()
	args := append([]string{"infer", "--queen-url", c.queenURL(),
		"--hive-port", strconv.Itoa(c.hivePort), "--worker-port-start", strconv.Itoa(c.workerPort),
		"--model", model, "--prompt", "Once upon a time", "--temperature", "0", "--max-tokens", "6"}, extra...)
	var env []string
	for _, kv := range c.env() {
		if !strings.HasPrefix(kv, "HF_") {
			env = append(env, kv)
		}
	}
	return runRbee(c.t, c.bin, append(env, "HF_ENDPOINT="+hub.URL), args...)
}

type catalogRow struct {
	id, provider, reference, localPath, sha256 string
	size, downloadedAt                         int64
}

// catalogRows reads the hive's models table from disk.
func (c *cluster) catalogRows() []catalogRow {
	c.t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(c.home, "models.db"))
	require.NoError(c.t, err)
	defer db.Close()
	rows, err := db.Query("SELECT id, provider, reference, local_path, size_bytes, sha256, downloaded_at_unix FROM models ORDER BY reference")
	require.NoError(c.t, err)
	defer rows.Close()
	var out []catalogRow
	for rows.Next() {
		var r catalogRow
		require.NoError(c.t, rows.Scan(&r.id, &r.provider, &r.reference, &r.localPath, &r.size, &r.sha256, &r.downloadedAt))
		out = append(out, r)
	}
	require.NoError(c.t, rows.Err())
	return out
}

// TestS16Download runs rbee infer on an hf: model the node does not have:
// the keeper shows the download's progress with percent and speed, the
// model lands in the catalog (S18), tokens follow; the next run finds it
// in the catalog and downloads nothing (S15).
func TestS16Download(t *testing.T) {
	hub := hftest.New(t)
	const file = "tiny.Q4_K_M.gguf"
	size := len(hub.File(hftest.RepoTiny, file))
	hub.SetFault(hftest.RepoTiny, file, hftest.Fault{BytesPerSecond: int64(size)}) // about a second
	c := newCluster(t, "")
	model := "hf:" + hftest.RepoTiny
	began := time.Now()
	r := c.hfInfer(hub, model)
	require.Equal(t, 0, r.code, "%s%s", r, c.logs())

	t.Run("S16", func(t *testing.T) {
		assert.NotEmpty(t, strings.TrimSpace(r.stdout), "tokens on stdout")
		for _, want := range []string{
			"[queen] Downloading model from Hugging Face: " + model + " is not on local yet",
			"[hive] Downloading tiny.Q4_K_M.gguf (1.1 MB) from Hugging Face repository " + hftest.RepoTiny,
			"[hive] Downloaded tiny.Q4_K_M.gguf (1.1 MB, SHA-256 " + hub.SHA256(hftest.RepoTiny, file)[:12],
			"[queen] Spawning a worker for " + model,
		} {
			assert.Contains(t, r.stderr, want)
		}
		assert.Regexp(t, regexp.MustCompile(`\[keeper\] Downloading model: 100% 1\.1/1\.1 MB at [0-9.]+ MB/s\n`), r.stderr,
			"the download's progress with percent, MB and speed")
		assert.Less(t, strings.Index(r.stderr, "100%"), strings.Index(r.stderr, "[queen] Spawning"))
		assert.NotContains(t, r.stdout, "Downloading")
		assert.Len(t, hub.Transfers(hftest.RepoTiny, file), 1)
	})
	t.Run("S18", func(t *testing.T) {
		rows := c.catalogRows()
		require.Len(t, rows, 1)
		row := rows[0]
		assert.Regexp(t, `^m-[0-9a-f]+$`, row.id)
		assert.Equal(t, "hf", row.provider)
		assert.Equal(t, model, row.reference)
		assert.Equal(t, filepath.Join(c.home, "models", "hf", hftest.RepoTiny, file), row.localPath)
		assert.Equal(t, int64(size), row.size)
		assert.Equal(t, hub.SHA256(hftest.RepoTiny, file), row.sha256)
		assert.GreaterOrEqual(t, row.downloadedAt, began.Unix())
		assert.LessOrEqual(t, row.downloadedAt, time.Now().Unix())
	})
	t.Run("S15", func(t *testing.T) {
		again := c.hfInfer(hub, model)
		require.Equal(t, 0, again.code, "%s%s", again, c.logs())
		assert.NotContains(t, again.stderr, "Downloading")
		assert.Len(t, hub.Transfers(hftest.RepoTiny, file), 1, "nothing downloaded again")
		assert.Equal(t, r.stdout, again.stdout, "the same model, the same greedy tokens")
	})
}

// TestS17DownloadInterrupted: a download cut twice resumes from the last
// byte (the Range headers the hub saw) and the inference goes on; one cut
// every time fails after 6 attempts with DOWNLOAD_FAILED, exit 1.
func TestS17DownloadInterrupted(t *testing.T) {
	hub := hftest.New(t)
	t.Run("resumed", func(t *testing.T) {
		const file = "tiny.Q8_0.gguf"
		hub.SetFault(hftest.RepoTiny, file, hftest.Fault{CutAfter: 700_000, CutTimes: 2})
		c := newCluster(t, "")
		r := c.hfInfer(hub, "hf:"+hftest.RepoTiny+":Q8_0")
		require.Equal(t, 0, r.code, "%s%s", r, c.logs())
		assert.Equal(t, []string{"", "bytes=700000-", "bytes=1400000-"}, rangesOf(hub.Transfers(hftest.RepoTiny, file)))
		assert.Contains(t, r.stderr, "[hive] Download of tiny.Q8_0.gguf interrupted (attempt 1/6")
		assert.Contains(t, r.stderr, "resuming at byte 700000")
		assert.Contains(t, r.stderr, "(attempt 2/6")
		assert.NotEmpty(t, strings.TrimSpace(r.stdout))
		rows := c.catalogRows()
		require.Len(t, rows, 1)
		assert.Equal(t, hub.SHA256(hftest.RepoTiny, file), rows[0].sha256)
	})
	t.Run("S37 out of attempts", func(t *testing.T) {
		const file = "tiny-q4_0.gguf"
		hub.SetFault(hftest.RepoTiny, file, hftest.Fault{CutAfter: 100_000})
		c := newCluster(t, "")
		r := c.hfInfer(hub, "hf:"+hftest.RepoTiny+":Q4_0")
		require.Equal(t, 1, r.code, "%s%s", r, c.logs())
		assert.Contains(t, r.stderr, "rbee infer: downloading tiny-q4_0.gguf from "+hftest.RepoTiny+" failed after 6 attempts at 600000 of")
		assert.Contains(t, r.stderr, "hint: check the node's connection to Hugging Face")
		assert.Contains(t, r.stderr, "(attempt 5/6")
		assert.Len(t, hub.Transfers(hftest.RepoTiny, file), 6)
		assert.Empty(t, c.catalogRows())
		assert.Empty(t, strings.TrimSpace(r.stdout))
	})
}

func rangesOf(reqs []hftest.Request) []string {
	out := []string{}
	for _, r := range reqs {
		out = append(out, r.Range)
	}
	return out
}
