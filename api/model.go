package api

// ModelMeta is what a GGUF file's header says about its model:
// read by the hive from the file itself, never guessed from its name.
type ModelMeta struct {
	Architecture  string `json:"architecture"`
	Name          string `json:"name,omitempty"`
	Quantization  string `json:"quantization"` // e.g. "Q4_K_M"; "" when the file neither says nor shows it
	VocabSize     int    `json:"vocab_size"`
	BOSTokenID    int    `json:"bos_token_id"` // -1 when the file has none
	EOSTokenID    int    `json:"eos_token_id"` // -1 when the file has none
	ContextLength int    `json:"context_length"`
	BlockCount    int    `json:"block_count"`
	Parameters    int64  `json:"parameters"`
}

// ModelDeleteRequest is the body of the hive's POST /v1/models/delete.
type ModelDeleteRequest struct {
	ModelRef string `json:"model_ref"`
}

// ModelDeleteResponse answers a model deletion: whether the catalog had
// the reference, and whether its file was removed (only a downloaded hf:
// file that no other catalog entry uses is; a file: model's file is the
// user's and stays).
type ModelDeleteResponse struct {
	ModelRef    string `json:"model_ref"`
	Removed     bool   `json:"removed"`
	FileRemoved bool   `json:"file_removed"`
}
