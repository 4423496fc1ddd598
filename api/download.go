package api

// DownloadRequest is the body of the hive's POST /v1/models/download.
type DownloadRequest struct {
	ModelRef string `json:"model_ref"`
}

// DownloadResponse answers a download request. Concurrent requests for one
// model get the same id; a model already in the catalog gets the id of a
// download that is complete at once.
type DownloadResponse struct {
	DownloadID string `json:"download_id"`
}

// Validate checks a download request: an hf: reference (file: models are
// used where they are, never downloaded).
func (d *DownloadRequest) Validate() (ModelRef, *Error) {
	ref, err := parseModelRef(d.ModelRef, "model_ref")
	if err != nil {
		return ModelRef{}, err
	}
	if ref.Provider != "hf" {
		return ModelRef{}, InvalidField("model_ref", "only hf: references are downloaded; a file: model is used where it is")
	}
	return ref, nil
}
