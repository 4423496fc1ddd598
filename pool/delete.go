package pool

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/paths"
)

// DeleteModel removes a reference from the catalog. A downloaded hf: file
// is removed too when it lies under the hive's models folder and no other
// catalog entry uses it (hf:ORG/REPO and hf:ORG/REPO:Q4_K_M may share one
// file); a file: model's file belongs to the user and is never touched.
// Workers running the model keep running on the open file: the caller
// stops them first if it wants the memory back. A reference the catalog
// does not have is MODEL_NOT_FOUND.
func (h *Hive) DeleteModel(ctx context.Context, ref string) (api.ModelDeleteResponse, error) {
	out := api.ModelDeleteResponse{ModelRef: ref}
	r, err := h.catalog.row(ctx, ref)
	if errors.Is(err, ErrNotInCatalog) {
		return out, api.Errorf(api.CodeModelNotFound, "model %s is not in this node's catalog", ref).With("model_ref", ref).
			WithHint("GET /v1/models lists the catalog")
	}
	if err != nil {
		return out, err
	}
	if out.Removed, err = h.catalog.Remove(ctx, ref); err != nil {
		return out, err
	}
	h.log.Info("model removed from the catalog", "model", ref)
	if r.Provider != "hf" || !insideDir(paths.ModelsDir(h.cfg.Home), r.LocalPath) {
		return out, nil
	}
	rest, err := h.catalog.List(ctx)
	if err != nil {
		return out, err
	}
	for _, e := range rest {
		if e.LocalPath == r.LocalPath {
			return out, nil // another reference uses the file
		}
	}
	if err := os.Remove(r.LocalPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		h.log.Warn("removing the model file failed", "model", ref, "path", r.LocalPath, "error", err)
		return out, nil
	}
	out.FileRemoved = true
	h.log.Info("model file removed", "model", ref, "path", r.LocalPath)
	return out, nil
}

// insideDir reports whether path lies strictly inside dir.
func insideDir(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && !filepath.IsAbs(rel) && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// handleDeleteModel serves POST /v1/models/delete {model_ref}.
func (h *Hive) handleDeleteModel(w http.ResponseWriter, r *http.Request) {
	var req api.ModelDeleteRequest
	if e := httpx.DecodeJSON(w, r, &req); e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	ref, e := api.ParseModelRef(req.ModelRef)
	if e != nil {
		httpx.WriteError(w, r, api.InvalidField("model_ref", "%s", e.Message))
		return
	}
	res, err := h.DeleteModel(r.Context(), ref.String())
	if err != nil {
		var ae *api.Error
		if !errors.As(err, &ae) {
			h.log.Error("deleting a model failed", "model", ref.String(), "error", err)
			err = catalogError(err, "updated")
		}
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, res)
}
