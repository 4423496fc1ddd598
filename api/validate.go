package api

import (
	"math"
	"path"
	"strings"
	"unicode/utf8"
)

// Limits of the validation rules (docs/protocol.md).
const (
	MaxNodeNameLen = 63
	MaxWorkerIDLen = 64
	MaxModelRefLen = 512
	MaxPromptChars = 32768
	MaxStopStrings = 4
	MaxStopBytes   = 100
	MaxTokensLimit = 32768 // the largest max_tokens the queen accepts; workers check their context
	MaxTemperature = 2
)

// ValidateNodeName checks a node name: DNS-safe (lowercase letters, digits
// and inner hyphens), 1 to 63 characters.
func ValidateNodeName(name string) *Error {
	const field = "node"
	if name == "" {
		return InvalidField(field, "a node name is required")
	}
	if len(name) > MaxNodeNameLen {
		return InvalidField(field, "a node name has at most %d characters", MaxNodeNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(name)-1
		if !ok {
			return InvalidField(field, "a node name has lowercase letters, digits and inner hyphens only (DNS-safe)")
		}
	}
	return nil
}

// ValidateWorkerID checks a worker id: [A-Za-z0-9_-], 1 to 64 characters.
func ValidateWorkerID(id string) *Error {
	const field = "worker_id"
	if id == "" || len(id) > MaxWorkerIDLen {
		return InvalidField(field, "a worker id has 1 to %d characters", MaxWorkerIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return InvalidField(field, "a worker id has letters, digits, '_' and '-' only")
		}
	}
	return nil
}

// ModelRef is a parsed model reference.
type ModelRef struct {
	Provider string // "hf" or "file"
	Repo     string // hf: ORG/REPO
	Quant    string // hf: the :QUANT suffix ("Q8_0"), if any
	File     string // hf: FILE.gguf inside the repo, if given
	Path     string // file: the absolute path
}

// ParseModelRef checks and parses a model reference: hf:ORG/REPO,
// hf:ORG/REPO:QUANT, hf:ORG/REPO/FILE.gguf or file:/abs/path.gguf; at most
// 512 bytes of [A-Za-z0-9-_/:.] and no "..".
func ParseModelRef(ref string) (ModelRef, *Error) { return parseModelRef(ref, "model") }

// parseModelRef reports problems under the JSON field name the caller uses
// ("model" in tasks, "model_ref" in the hive's and worker's bodies).
func parseModelRef(ref, field string) (ModelRef, *Error) {
	if ref == "" {
		return ModelRef{}, InvalidField(field, "a model reference is required (hf:ORG/REPO or file:/path/model.gguf)")
	}
	if len(ref) > MaxModelRefLen {
		return ModelRef{}, InvalidField(field, "a model reference has at most %d bytes", MaxModelRefLen)
	}
	for i := 0; i < len(ref); i++ {
		c := ref[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_/:.", c) >= 0) {
			return ModelRef{}, InvalidField(field, "a model reference has letters, digits and - _ / : . only")
		}
	}
	if strings.Contains(ref, "..") {
		return ModelRef{}, InvalidField(field, `a model reference must not contain ".."`)
	}
	provider, rest, ok := strings.Cut(ref, ":")
	if !ok {
		return ModelRef{}, InvalidField(field, "a model reference starts with hf: or file:")
	}
	switch provider {
	case "file":
		if !strings.HasPrefix(rest, "/") || path.Clean(rest) != rest {
			return ModelRef{}, InvalidField(field, "a file: reference needs a clean absolute path (file:/path/model.gguf)")
		}
		return ModelRef{Provider: "file", Path: rest}, nil
	case "hf":
		r := ModelRef{Provider: "hf"}
		if repo, quant, ok := strings.Cut(rest, ":"); ok {
			if quant == "" || strings.ContainsAny(quant, "/:") {
				return ModelRef{}, InvalidField(field, "hf:ORG/REPO:QUANT needs a quantization name after the colon")
			}
			rest, r.Quant = repo, quant
		}
		parts := strings.Split(rest, "/")
		if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
			return ModelRef{}, InvalidField(field, "an hf: reference names ORG/REPO")
		}
		r.Repo = parts[0] + "/" + parts[1]
		if len(parts) > 2 {
			r.File = strings.Join(parts[2:], "/")
			if r.Quant != "" || !strings.HasSuffix(r.File, ".gguf") || strings.Contains(r.File, "//") {
				return ModelRef{}, InvalidField(field, "hf:ORG/REPO/FILE names a .gguf file")
			}
		}
		return r, nil
	}
	return ModelRef{}, InvalidField(field, "unknown model provider %q: use hf: or file:", provider)
}

// String returns the canonical reference.
func (r ModelRef) String() string {
	switch r.Provider {
	case "file":
		return "file:" + r.Path
	case "hf":
		s := "hf:" + r.Repo
		if r.File != "" {
			s += "/" + r.File
		}
		if r.Quant != "" {
			s += ":" + r.Quant
		}
		return s
	}
	return ""
}

// ValidatePrompt checks a prompt: 1 to 32768 characters of valid UTF-8, no
// control characters but tab, newline and carriage return, and no bidi
// overrides.
func ValidatePrompt(p string) *Error { return validateText("prompt", "prompt", p) }

// validateText checks text with the prompt rules, naming field in the error
// and what in its message ("the prompt is empty").
func validateText(field, what, p string) *Error {
	if p == "" {
		return InvalidField(field, "the %s is empty", what)
	}
	if !utf8.ValidString(p) {
		return InvalidField(field, "the %s is not valid UTF-8", what)
	}
	n := 0
	for _, r := range p {
		n++
		switch {
		case r == '\t' || r == '\n' || r == '\r':
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
			return InvalidField(field, "the %s contains a control character (U+%04X)", what, r)
		case r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069:
			return InvalidField(field, "the %s contains a bidirectional override (U+%04X)", what, r)
		}
	}
	if n > MaxPromptChars {
		return InvalidField(field, "the %s has %d characters; at most %d", what, n, MaxPromptChars)
	}
	return nil
}

// Sampling holds validated generation parameters with defaults applied.
type Sampling struct {
	MaxTokens     int
	Temperature   float64
	TopP          float64
	TopK          int
	MinP          float64
	RepeatPenalty float64
	Seed          *uint64
	Stop          []string
	// PresencePenalty and FrequencyPenalty are 0 when off.
	PresencePenalty  float64
	FrequencyPenalty float64
	Logprobs         bool
	TopLogprobs      int
	Format           *Format // nil: free text
}

// MaxTopLogprobs bounds top_logprobs, as OpenAI's API does.
const MaxTopLogprobs = 20

// Validate checks the generation parameters and returns them with the
// defaults applied. maxTokensLimit bounds max_tokens (a worker passes its
// context size).
func (p SamplingParams) Validate(maxTokensLimit int) (Sampling, *Error) {
	temperature, topP, topK, minP, repeatPenalty, stop := p.Temperature, p.TopP, p.TopK, p.MinP, p.RepeatPenalty, p.Stop
	s := Sampling{MaxTokens: p.MaxTokens, Temperature: DefaultTemperature, TopP: DefaultTopP, TopK: DefaultTopK,
		MinP: DefaultMinP, RepeatPenalty: 1, Seed: p.Seed, Stop: stop, Format: p.Format}
	if s.MaxTokens == 0 {
		s.MaxTokens = min(DefaultMaxTokens, maxTokensLimit)
	}
	if s.MaxTokens < 1 || s.MaxTokens > maxTokensLimit {
		return s, InvalidField("max_tokens", "max_tokens must be between 1 and %d", maxTokensLimit)
	}
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	if temperature != nil {
		if !finite(*temperature) || *temperature < 0 || *temperature > MaxTemperature {
			return s, InvalidField("temperature", "temperature must be between 0 and 2")
		}
		s.Temperature = *temperature
	}
	if topP != nil {
		if !finite(*topP) || *topP < 0 || *topP > 1 {
			return s, InvalidField("top_p", "top_p must be between 0 and 1")
		}
		s.TopP = *topP
	}
	if topK != nil {
		if *topK < 0 || *topK > 1<<20 {
			return s, InvalidField("top_k", "top_k must be 0 (off) or positive")
		}
		s.TopK = *topK
	}
	if minP != nil {
		if !finite(*minP) || *minP < 0 || *minP > 1 {
			return s, InvalidField("min_p", "min_p must be between 0 and 1")
		}
		s.MinP = *minP
	}
	if repeatPenalty != nil {
		if !finite(*repeatPenalty) || *repeatPenalty < 0 || *repeatPenalty > 10 {
			return s, InvalidField("repeat_penalty", "repeat_penalty must be between 0 and 10")
		}
		s.RepeatPenalty = *repeatPenalty
	}
	for _, pen := range []struct {
		field string
		v     *float64
		dst   *float64
	}{{"presence_penalty", p.PresencePenalty, &s.PresencePenalty}, {"frequency_penalty", p.FrequencyPenalty, &s.FrequencyPenalty}} {
		if pen.v == nil {
			continue
		}
		if !finite(*pen.v) || *pen.v < -2 || *pen.v > 2 {
			return s, InvalidField(pen.field, "%s must be between -2 and 2", pen.field)
		}
		*pen.dst = *pen.v
	}
	if p.TopLogprobs < 0 || p.TopLogprobs > MaxTopLogprobs {
		return s, InvalidField("top_logprobs", "top_logprobs must be between 0 and %d", MaxTopLogprobs)
	}
	if p.TopLogprobs > 0 && !p.Logprobs {
		return s, InvalidField("top_logprobs", "top_logprobs needs logprobs: true")
	}
	s.Logprobs, s.TopLogprobs = p.Logprobs, p.TopLogprobs
	if len(stop) > MaxStopStrings {
		return s, InvalidField("stop", "at most %d stop strings", MaxStopStrings)
	}
	for _, st := range stop {
		if st == "" || len(st) > MaxStopBytes || !utf8.ValidString(st) {
			return s, InvalidField("stop", "stop strings have 1 to %d bytes of UTF-8", MaxStopBytes)
		}
	}
	if e := p.Format.Validate(); e != nil {
		return s, e
	}
	return s, nil
}

// Validate checks a task request and returns its sampling parameters. A
// node of AutoNode becomes "": the queen places the task.
func (t *TaskRequest) Validate() (Sampling, *Error) {
	if t.Node == AutoNode {
		t.Node = ""
	}
	if t.Node != "" {
		if err := ValidateNodeName(t.Node); err != nil {
			return Sampling{}, err
		}
	}
	if _, err := ParseModelRef(t.Model); err != nil {
		return Sampling{}, err
	}
	if err := validateInput(t.Prompt, t.Messages); err != nil {
		return Sampling{}, err
	}
	if err := t.ToolUse.validate(t.Messages != nil); err != nil {
		return Sampling{}, err
	}
	dev := 0
	if t.Device != nil {
		dev = *t.Device
	}
	if err := ValidateBackend(t.Backend, dev); err != nil {
		return Sampling{}, err
	}
	return t.SamplingParams.Validate(MaxTokensLimit)
}

// Validate checks an inference request against a model context of ctx tokens.
func (r *InferenceRequest) Validate(ctx int) (Sampling, *Error) {
	if err := validateInput(r.Prompt, r.Messages); err != nil {
		return Sampling{}, err
	}
	if err := r.ToolUse.validate(r.Messages != nil); err != nil {
		return Sampling{}, err
	}
	return r.SamplingParams.Validate(ctx)
}

// ValidateBackend checks the shape of a backend and device ("" means cpu);
// whether the node has it is preflight's question.
func ValidateBackend(backend Backend, device int) *Error {
	switch backend {
	case "", BackendCPU, BackendCUDA, BackendMetal:
	default:
		return InvalidField("backend", "backend must be cpu, cuda or metal")
	}
	if device < 0 || device > 255 {
		return InvalidField("device", "device must be between 0 and 255")
	}
	return nil
}

// Validate checks a spawn request.
func (s *SpawnRequest) Validate() *Error {
	if _, err := parseModelRef(s.ModelRef, "model_ref"); err != nil {
		return err
	}
	return ValidateBackend(s.Backend, s.Device)
}
