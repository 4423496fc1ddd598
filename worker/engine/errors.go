package engine

import "errors"

// Errors the engine returns, wrapped with details; test with errors.Is.
var (
	// ErrNotGGUF: the file is not a GGUF file (no GGUF magic at its start).
	ErrNotGGUF = errors.New("not a GGUF file")
	// ErrInvalidModel: the file is not a usable model: a GGUF file that is
	// truncated, corrupt or of a version the engine cannot read, or one whose
	// metadata is missing or inconsistent, or whose tensors have the wrong shape.
	ErrInvalidModel = errors.New("invalid model")
	// ErrUnsupported: the model uses something the engine does not implement
	// (an architecture, a tensor type, a rope scaling).
	ErrUnsupported = errors.New("unsupported model")
	// ErrContextFull: the prompt and the tokens to generate do not fit the context.
	ErrContextFull = errors.New("context full")
	// ErrInvalidRequest: a generation parameter is out of range.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrClosed: the model was closed.
	ErrClosed = errors.New("model closed")
	// ErrNonFinite: the forward pass produced a NaN or infinite logit, so no
	// token can be chosen. Finite weights and inputs do not do that; damaged
	// weights (a corrupt or badly converted file) do. Generate fails with it
	// instead of sampling.
	ErrNonFinite = errors.New("the model produced non-finite values (NaN or Inf)")
	// ErrConstraint: the request's Constraint allows no token of the
	// vocabulary, or refused the token chosen.
	ErrConstraint = errors.New("the output constraint cannot be met")
)
