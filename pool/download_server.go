package pool

import (
	"net/http"
	"time"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/sse"
)

// progressInterval is how often a download's progress stream reports bytes.
const progressInterval = 200 * time.Millisecond

// newDownloadHTTPClient is the client for the hub: proxies from the
// environment (never for loopback), no overall timeout (the stall timeout
// and contexts bound every request).
func newDownloadHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 2,
		IdleConnTimeout: 30 * time.Second, TLSHandshakeTimeout: 30 * time.Second, ResponseHeaderTimeout: 0}}
}

// handleDownload serves POST /v1/models/download {model_ref} →
// {download_id}: a new download, the running one of the model, or one
// complete at once when the model is in the catalog.
func (h *Hive) handleDownload(w http.ResponseWriter, r *http.Request) {
	var req api.DownloadRequest
	if err := httpx.DecodeJSON(w, r, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	d, err := h.DownloadModel(r.Context(), req.ModelRef)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, api.DownloadResponse{DownloadID: d.ID})
}

// handleDownloadProgress serves GET /v1/models/download/progress?id= as an
// event stream: the hive's narration (start, retries), progress events
// {"stage":"downloading","bytes_downloaded","bytes_total","speed_mbps"} at
// most every 200 ms and once at the end, then {"stage":"complete",
// "local_path"} and [DONE], or an error event.
func (h *Hive) handleDownloadProgress(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" {
		httpx.WriteError(w, r, api.InvalidField("id", "the download id is required (?id=dl-…)"))
		return
	}
	if api.ValidateWorkerID(id) != nil {
		httpx.WriteError(w, r, api.InvalidField("id", "a download id has letters, digits, '_' and '-' only"))
		return
	}
	d, ok := h.FindDownload(id)
	if !ok {
		httpx.WriteError(w, r, api.InvalidField("id", "no download with this id on this node (finished downloads are kept for %s)", downloadKeep))
		return
	}
	out := sse.NewWriter(w)
	ticker := time.NewTicker(progressInterval)
	defer ticker.Stop()
	sentNotes := 0
	var last DownloadStatus
	sentAny := false
	sendProgress := func(s DownloadStatus) error {
		last, sentAny = s, true
		return out.Send(api.Event{Kind: api.KindProgress, Progress: &api.Progress{Stage: api.StageDownloading,
			BytesDownloaded: s.BytesDownloaded, BytesTotal: s.BytesTotal, MegabytesPerSecond: round2(s.SpeedMBps)}})
	}
	for {
		d.mu.Lock()
		notes := d.notes[sentNotes:]
		sentNotes = len(d.notes)
		noted := d.noted
		d.mu.Unlock()
		for _, ev := range notes {
			if out.Send(ev) != nil {
				return
			}
		}
		s := d.Status()
		if s.Done {
			if s.Err != nil {
				e := *s.Err
				e.RequestID = httpx.RequestID(r)
				_ = out.Error(&e)
				return
			}
			// The last progress event says 100 %, then where the file is.
			s.BytesDownloaded, s.BytesTotal = s.Entry.SizeBytes, s.Entry.SizeBytes
			if sendProgress(s) != nil {
				return
			}
			d.mu.Lock()
			summary := d.summary
			d.mu.Unlock()
			if summary != "" {
				_ = out.Send(api.NarrationEvent(api.ActorHive, "download_complete", summary))
			}
			_ = out.Send(api.Event{Kind: api.KindProgress, Progress: &api.Progress{Stage: api.StageComplete, LocalPath: s.Entry.LocalPath}})
			_ = out.Close()
			return
		}
		if (!sentAny || s.BytesDownloaded != last.BytesDownloaded || s.BytesTotal != last.BytesTotal) && s.BytesTotal > 0 {
			if sendProgress(s) != nil {
				return
			}
		}
		select {
		case <-ticker.C:
		case <-noted:
		case <-d.finished:
		case <-r.Context().Done():
			return
		}
	}
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }
