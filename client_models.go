package rbee

import (
	"context"
	"iter"
	"net/http"

	"rbee/api"
)

// Models lists the model catalog of every node whose hive answers (the
// local node's only while its hive runs), each entry with what its GGUF
// header says (architecture, quantization, …); a node whose hive does not
// answer carries its error instead of models.
func (c *Client) Models(ctx context.Context) (*ClusterModels, error) {
	var out ClusterModels
	if err := c.do(ctx, http.MethodGet, "/v2/models", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Pull has a node's hive download an hf: model into its catalog ahead of
// time (node "" is the local node, whose hive is started if it does not
// run). It yields the download's narration and progress events as they
// come, the last a progress event of stage [StageComplete]; a model
// already in the catalog completes at once. A refused request
// ([ErrInvalidRequest] for a reference that is not hf:, [ErrNodeNotFound])
// or a failed download ([ErrDownloadFailed], [ErrChecksumMismatch],
// [ErrInsufficientDisk], …) is yielded once as the error, then the
// sequence ends. Leaving the loop stops following the download, not the
// download itself.
func (c *Client) Pull(ctx context.Context, node, modelRef string) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		req := PullRequest{Node: node, ModelRef: modelRef}
		if node != "" {
			if e := api.ValidateNodeName(node); e != nil {
				yield(Event{}, e)
				return
			}
		}
		if _, e := (&api.DownloadRequest{ModelRef: modelRef}).Validate(); e != nil {
			yield(Event{}, e)
			return
		}
		for ev, err := range c.stream(ctx, http.MethodPost, "/v2/models/download", req, false, nil) {
			if !yield(ev, err) || err != nil {
				return
			}
		}
	}
}
