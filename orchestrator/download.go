package orchestrator

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"rbee/api"
	"rbee/internal/sse"
)

// ensureModel gets an hf: model onto the node before a spawn (the cold-start flow of docs/architecture.md,
// step 5): when the hive's catalog lacks it (or its file), the hive
// downloads it and the download's narration and progress are relayed to
// the client until it completes. file: models and models in the catalog
// need nothing. A download that fails ends the task with its error
// (DOWNLOAD_FAILED, DOWNLOAD_TIMEOUT, CHECKSUM_MISMATCH, INSUFFICIENT_DISK,
// MODEL_NOT_FOUND, …).
func (r *taskRun) ensureModel(ctx context.Context, hive *hiveClient) error {
	ref, e := api.ParseModelRef(r.req.Model)
	if e != nil || ref.Provider != "hf" {
		return nil // validated before; file: models are not downloaded
	}
	canon := ref.String()
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	var list api.ModelList
	err := hive.c.Do(lctx, http.MethodGet, "/v1/models", nil, &list)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return hive.unreachable(err, "listing its models")
	}
	for _, m := range list.Models {
		// Meta is there when the hive could read the file's header.
		if m.Reference == canon && m.Meta != nil {
			return nil
		}
	}

	r.narrate("download", fmt.Sprintf("Downloading model from Hugging Face: %s is not on %s yet", canon, r.req.Node))
	if err := r.q.download(ctx, hive, canon, r.t.id, r.send); err != nil {
		return err
	}
	r.log.Info("model download complete")
	return nil
}

// download has hive download the hf: model canon (already in its canonical
// form) and relays the download's narration and progress to send until it
// completes; requestID goes on the narration. While it runs the download
// is listed in the queen's snapshots (GET /v2/events). The hive shares one
// download between concurrent requests for a model, and completes at once
// one it already has.
func (q *Queen) download(ctx context.Context, hive *hiveClient, canon, requestID string, send func(api.Event) error) error {
	var started api.DownloadResponse
	sctx, scancel := context.WithTimeout(ctx, listTimeout)
	err := hive.c.Do(sctx, http.MethodPost, "/v1/models/download", api.DownloadRequest{ModelRef: canon}, &started)
	scancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return hive.unreachable(err, "starting the download of "+canon)
	}
	q.log.Info("model download started on the hive", "node", hive.node, "model", canon, "download_id", started.DownloadID)
	dl := q.downloads.add(hive.node, canon, started.DownloadID)
	defer q.downloads.remove(dl)
	resp, err := hive.c.Stream(ctx, http.MethodGet, "/v1/models/download/progress?id="+url.QueryEscape(started.DownloadID), nil, nil)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return hive.unreachable(err, "following the download of "+canon)
	}
	defer resp.Body.Close()
	complete := false
	for ev, err := range sse.Read(resp.Body) {
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return hive.unreachable(err, "downloading "+canon)
		}
		switch ev.Kind {
		case api.KindError:
			return ev.Error
		case api.KindNarration:
			if ev.Narration.Node == "" {
				ev.Narration.Node = hive.node
			}
			ev.Narration.RequestID = requestID
		case api.KindProgress:
			q.downloads.update(dl, ev.Progress)
			if ev.Progress.Stage == api.StageComplete {
				complete = true
			}
		default:
			continue // nothing else belongs in a download stream
		}
		if err := send(ev); err != nil {
			return err
		}
	}
	if !complete {
		return api.Errorf(api.CodeDownloadFailed, "the download of %s on %s ended without completing", canon, hive.node).
			With("model_ref", canon).With("node", hive.node).WithHint(fmt.Sprintf("check the hive log (rbee logs --node %s)", hive.node))
	}
	q.log.Info("model download complete", "node", hive.node, "model", canon, "download_id", started.DownloadID)
	return nil
}
