package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
)

func dlProgress(done, total int64, mbps float64) api.Event {
	return api.Event{Kind: api.KindProgress, Progress: &api.Progress{Stage: api.StageDownloading, BytesDownloaded: done, BytesTotal: total, MegabytesPerSecond: mbps}}
}

func downloadEvents() []api.Event {
	return []api.Event{
		start("task-abc"),
		api.NarrationEvent(api.ActorQueen, "download", "Downloading model from Hugging Face: hf:org/repo is not on local yet"),
		api.NarrationEvent(api.ActorHive, "download", "Downloading m.Q4_K_M.gguf (4.0 MB) from Hugging Face repository org/repo"),
		dlProgress(0, 4_000_000, 0),
		dlProgress(1_000_000, 4_000_000, 5),
		dlProgress(4_000_000, 4_000_000, 6.25),
		api.NarrationEvent(api.ActorHive, "download_complete", "Downloaded m.Q4_K_M.gguf (4.0 MB, SHA-256 0123456789ab…); added to the catalog as m-1"),
		{Kind: api.KindProgress, Progress: &api.Progress{Stage: api.StageComplete, LocalPath: "/home/.rbee/models/hf/org/repo/m.Q4_K_M.gguf"}},
		api.NarrationEvent(api.ActorQueen, "spawn", "Spawning a worker"),
		tok("Hi", 0),
		{Kind: api.KindDone, Done: &api.Done{Done: true, TotalTokens: 1, StopReason: "eos"}},
	}
}

// TestS16KeeperShowsTheDownload: without a terminal, the download is shown
// as plain lines with percent, MB and speed, and always at 100 %.
func TestS16KeeperShowsTheDownload(t *testing.T) {
	f := newFakeQueen(t)
	f.stream(downloadEvents(), false)
	r := run(t, t.Context(), map[string]string{"RBEE_QUEEN_URL": f.srv.URL}, nil, "infer", "--model", "hf:org/repo", "--prompt", "hi")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "Hi\n", r.stdout)
	for _, want := range []string{
		"[queen] Downloading model from Hugging Face: hf:org/repo is not on local yet\n",
		"[hive] Downloading m.Q4_K_M.gguf (4.0 MB) from Hugging Face repository org/repo\n",
		"[keeper] Downloading model:   0% 0.0/4.0 MB\n",
		"[keeper] Downloading model: 100% 4.0/4.0 MB at 6.2 MB/s\n",
		"[hive] Downloaded m.Q4_K_M.gguf",
	} {
		assert.Contains(t, r.stderr, want)
	}
	assert.NotContains(t, r.stderr, "25%", "plain lines come at most every 2 s, and at the end")
	assert.NotContains(t, r.stderr, "\r", "no carriage returns without a terminal")
	assert.Less(t, strings.Index(r.stderr, "100%"), strings.Index(r.stderr, "[hive] Downloaded"))
	assert.Less(t, strings.Index(r.stderr, "[hive] Downloaded"), strings.Index(r.stderr, "[queen] Spawning"))
}

func TestS16KeeperDownloadJSON(t *testing.T) {
	f := newFakeQueen(t)
	f.stream(downloadEvents(), false)
	r := run(t, t.Context(), map[string]string{"RBEE_QUEEN_URL": f.srv.URL}, nil, "infer", "--model", "hf:org/repo", "--prompt", "hi", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	var stages []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var ev struct {
			Event string         `json:"event"`
			Data  map[string]any `json:"data"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &ev), line)
		if ev.Event == "progress" {
			stages = append(stages, ev.Data["stage"].(string))
			if ev.Data["stage"] == "downloading" {
				assert.Contains(t, ev.Data, "bytes_total")
			}
		}
	}
	assert.Equal(t, []string{"downloading", "downloading", "downloading", "complete"}, stages)
	assert.Empty(t, r.stderr)
}

// TestDownloadBar draws the terminal bar: percent, MB done/total, speed.
func TestDownloadBar(t *testing.T) {
	var b bytes.Buffer
	p := &progress{w: &b, label: "Downloading model", tty: true}
	p.download(450_000_000, 1_000_000_000, 12.34)
	out := b.String()
	assert.True(t, strings.HasPrefix(out, "\rDownloading model "), "%q", out)
	assert.Contains(t, out, strings.Repeat("█", 13)+strings.Repeat("░", 17))
	assert.Contains(t, out, " 45% 450/1000 MB at 12.3 MB/s")
	assert.True(t, strings.HasSuffix(out, "\033[K"))

	b.Reset()
	p.download(460_000_000, 1_000_000_000, 12)
	assert.Empty(t, b.String(), "redrawn at most every 50 ms")
	p.download(1_000_000_000, 1_000_000_000, 12)
	assert.Contains(t, b.String(), "100% 1000/1000 MB", "the end is always drawn")
	b.Reset()
	p.done()
	assert.Equal(t, "\r\033[K", b.String())

	for _, tc := range []struct {
		done, total int64
		mbps        float64
		want        string
	}{
		{0, 0, 0, "0.0 MB"},
		{2_500_000, 0, 1.5, "2.5 MB at 1.5 MB/s"},
		{640_200_000, 640_200_000, 80, "100% 640/640 MB at 80.0 MB/s"},
		{1_100_000, 1_143_072, 0, " 96% 1.1/1.1 MB"},
	} {
		assert.Equal(t, tc.want, downloadText(tc.done, tc.total, tc.mbps))
	}
}

func TestPlainDownloadLines(t *testing.T) {
	var b bytes.Buffer
	p := &progress{w: &b, label: "Downloading model"}
	p.download(0, 100, 0)
	p.download(50, 100, 1)
	assert.Equal(t, "[keeper] Downloading model:   0% 0.0/0.0 MB\n", b.String(), "one line, then none within 2 s")
	p.plainAt = time.Now().Add(-plainEvery)
	p.download(60, 100, 1)
	p.download(100, 100, 1)
	p.download(100, 100, 1)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	require.Len(t, lines, 3, "%q", lines)
	assert.Contains(t, lines[1], " 60%")
	assert.Contains(t, lines[2], "100%", "the end once")
}
