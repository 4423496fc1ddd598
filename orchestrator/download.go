package orchestrator

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/hashicorp/go-hclog"

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
	return download(ctx, hive, canon, r.log, func(ev api.Event) error {
		if ev.Kind == api.KindNarration {
			ev.Narration.RequestID = r.t.id
		}
		return r.send(ev)
	})
}

// download has the hive download the hf: model canon (a model already in
// its catalog completes at once) and passes the download's narration (with
// the node set) and progress to emit until it completes. An error from emit
// ends it with that error.
func download(ctx context.Context, hive *hiveClient, canon string, log hclog.Logger, emit func(api.Event) error) error {
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
	log.Info("model download started on the hive", "download_id", started.DownloadID)
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
		case api.KindProgress:
			if ev.Progress.Stage == api.StageComplete {
				complete = true
			}
		default:
			continue // nothing else belongs in a download stream
		}
		if err := emit(ev); err != nil {
			return err
		}
	}
	if !complete {
		return api.Errorf(api.CodeDownloadFailed, "the download of %s on %s ended without completing", canon, hive.node).
			With("model_ref", canon).With("node", hive.node).WithHint(fmt.Sprintf("check the hive log (rbee logs --node %s)", hive.node))
	}
	log.Info("model download complete", "download_id", started.DownloadID)
	return nil
}
