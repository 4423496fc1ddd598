package engine

import (
	"fmt"
	"math"

	"rbee/internal/gguf"
)

// Config holds a llama model's hyperparameters, read from GGUF metadata.
type Config struct {
	Architecture  string
	Name          string
	Embedding     int // model width (n_embd)
	Heads         int // attention heads
	HeadsKV       int // key/value heads (grouped-query attention when fewer than Heads)
	HeadDim       int // size of one head
	FeedForward   int // hidden width of the feed-forward block
	Layers        int
	VocabSize     int
	TrainContext  int     // context length the model was trained with
	NormEpsilon   float32 // RMSNorm epsilon
	RopeBase      float32 // rotary frequency base
	RopeFreqScale float32 // 1/linear scaling factor (1 when unscaled)
	RopeDims      int     // leading dimensions of a head that rotate
	// RopeNeox rotates each head's element i with element i+RopeDims/2
	// (GPT-NeoX's layout, used by qwen2, phi3 and gemma2) instead of
	// adjacent pairs (llama's).
	RopeNeox bool

	// SlidingWindow, when positive, limits attention to the SlidingWindow
	// latest positions (the row's own included) in the layers that
	// SlidingLayers selects.
	SlidingWindow int
	SlidingLayers SlidingLayers
	// QueryScale multiplies the attention scores: 1/√HeadDim, except for the
	// largest Gemma 2 (1/√(Embedding/Heads)).
	QueryScale float32
	// AttnSoftcap and FinalSoftcap, when positive, squash attention scores
	// and output logits into (−cap, cap) with cap·tanh(x/cap) (Gemma 2).
	AttnSoftcap, FinalSoftcap float32
	// EmbedScale, when not 1, multiplies the token embeddings (Gemma 2: √Embedding).
	EmbedScale float32
}

// SlidingLayers says which layers a sliding window applies to.
type SlidingLayers uint8

const (
	SlidingAll  SlidingLayers = iota // every layer (phi3)
	SlidingEven                      // layers 0, 2, 4, … (gemma2)
)

// Sliding reports whether layer li attends only within the sliding window.
func (c Config) Sliding(li int) bool {
	if c.SlidingWindow <= 0 {
		return false
	}
	return c.SlidingLayers == SlidingAll || li%2 == 0
}

// supportedArchitectures lists what the engine's forward pass implements.
// Mistral-style models are published with the "llama" architecture; Qwen 2
// and 2.5 (and the DeepSeek-R1 distills built on them) as "qwen2"; Phi-3
// and 3.5 as "phi3"; Gemma 2 as "gemma2".
var supportedArchitectures = map[string]bool{"llama": true, "qwen2": true, "phi3": true, "gemma2": true}

// SupportedArchitecture reports whether the engine runs models whose
// general.architecture is arch.
func SupportedArchitecture(arch string) bool { return supportedArchitectures[arch] }

// SupportedArchitectures lists the architectures the engine runs.
func SupportedArchitectures() []string { return []string{"llama", "qwen2", "phi3", "gemma2"} }

func readConfig(f *gguf.File) (Config, error) {
	var c Config
	arch, ok := f.GetString("general.architecture")
	if !ok {
		return c, fmt.Errorf("%w: general.architecture is missing", ErrInvalidModel)
	}
	if !supportedArchitectures[arch] {
		return c, fmt.Errorf("%w: architecture %q (the engine runs llama, qwen2, phi3 and gemma2 models)", ErrUnsupported, arch)
	}
	c.Architecture = arch
	c.Name, _ = f.GetString("general.name")

	geti := func(key string, def int, required bool) (int, error) {
		v, ok := f.GetUint(arch + "." + key)
		if !ok {
			if required {
				return 0, fmt.Errorf("%w: %s.%s is missing", ErrInvalidModel, arch, key)
			}
			return def, nil
		}
		if v == 0 || v > 1<<24 {
			return 0, fmt.Errorf("%w: %s.%s = %d is out of range", ErrInvalidModel, arch, key, v)
		}
		return int(v), nil
	}
	getf := func(key string, def float64) float32 {
		if v, ok := f.GetFloat(arch + "." + key); ok {
			return float32(v)
		}
		return float32(def)
	}
	var err error
	if c.Embedding, err = geti("embedding_length", 0, true); err != nil {
		return c, err
	}
	if c.Heads, err = geti("attention.head_count", 0, true); err != nil {
		return c, err
	}
	if c.HeadsKV, err = geti("attention.head_count_kv", c.Heads, false); err != nil {
		return c, err
	}
	if c.FeedForward, err = geti("feed_forward_length", 0, true); err != nil {
		return c, err
	}
	if c.Layers, err = geti("block_count", 0, true); err != nil {
		return c, err
	}
	if c.TrainContext, err = geti("context_length", 2048, false); err != nil {
		return c, err
	}
	if c.Embedding%c.Heads != 0 {
		return c, fmt.Errorf("%w: embedding length %d is not a multiple of the head count %d", ErrInvalidModel, c.Embedding, c.Heads)
	}
	if c.HeadDim, err = geti("attention.key_length", c.Embedding/c.Heads, false); err != nil {
		return c, err
	}
	if vl, err := geti("attention.value_length", c.HeadDim, false); err != nil {
		return c, err
	} else if vl != c.HeadDim {
		return c, fmt.Errorf("%w: value heads of %d differ from key heads of %d", ErrUnsupported, vl, c.HeadDim)
	}
	if c.Heads%c.HeadsKV != 0 {
		return c, fmt.Errorf("%w: head count %d is not a multiple of the key/value head count %d", ErrInvalidModel, c.Heads, c.HeadsKV)
	}
	if c.HeadDim%2 != 0 {
		return c, fmt.Errorf("%w: head size %d is odd", ErrInvalidModel, c.HeadDim)
	}
	if c.RopeDims, err = geti("rope.dimension_count", c.HeadDim, false); err != nil {
		return c, err
	}
	if c.RopeDims > c.HeadDim || c.RopeDims%2 != 0 {
		return c, fmt.Errorf("%w: rope dimension count %d does not fit head size %d", ErrInvalidModel, c.RopeDims, c.HeadDim)
	}
	c.NormEpsilon = getf("attention.layer_norm_rms_epsilon", 1e-5)
	c.RopeBase = getf("rope.freq_base", 10000)
	c.RopeFreqScale = 1
	scaling, _ := f.GetString(arch + ".rope.scaling.type")
	switch scaling {
	case "", "none":
		// Older files give a linear factor under its own key.
		if s := getf("rope.scale_linear", 0); s > 0 {
			c.RopeFreqScale = 1 / s
		}
	case "linear":
		if s := getf("rope.scaling.factor", 0); s > 0 {
			c.RopeFreqScale = 1 / s
		}
	default:
		return c, fmt.Errorf("%w: rope scaling %q (the engine implements none and linear)", ErrUnsupported, scaling)
	}
	if err := c.readFamily(f, geti, getf); err != nil {
		return c, err
	}
	if !(c.NormEpsilon > 0) || !(c.RopeBase > 0) || math.IsInf(float64(c.RopeBase), 0) {
		return c, fmt.Errorf("%w: norm epsilon %g or rope base %g out of range", ErrInvalidModel, c.NormEpsilon, c.RopeBase)
	}
	if v, ok := f.GetUint(arch + ".vocab_size"); ok {
		c.VocabSize = int(v)
	} else if toks, ok := f.GetStrings("tokenizer.ggml.tokens"); ok {
		c.VocabSize = len(toks)
	}
	if c.VocabSize <= 0 {
		return c, fmt.Errorf("%w: vocabulary size unknown (no %s.vocab_size, no tokenizer.ggml.tokens)", ErrInvalidModel, arch)
	}
	return c, nil
}

// readFamily reads what sets arch apart from plain llama.
func (c *Config) readFamily(f *gguf.File, geti func(string, int, bool) (int, error), getf func(string, float64) float32) error {
	arch := c.Architecture
	c.QueryScale = float32(1 / math.Sqrt(float64(c.HeadDim)))
	c.EmbedScale = 1
	var err error
	switch arch {
	case "qwen2":
		c.RopeNeox = true
	case "phi3":
		c.RopeNeox = true
		// Files converted before the window had its own key leave it out;
		// llama.cpp then assumes the window of the published Phi-3 models
		// of that shape, and so does this.
		def := 0
		switch {
		case (c.Layers == 32 || c.Layers == 40) && c.TrainContext == 4096:
			def = 2047
		case c.Layers == 32 && c.HeadsKV == 32 && c.TrainContext == 131072:
			def = 262144
		case c.Layers == 40 && c.TrainContext == 131072:
			def = 131072
		}
		// A window of 0 (Phi-4, published as phi3) means none.
		if v, ok := f.GetUint(arch + ".attention.sliding_window"); ok {
			if v > 1<<24 {
				return fmt.Errorf("%w: %s.attention.sliding_window = %d is out of range", ErrInvalidModel, arch, v)
			}
			c.SlidingWindow = int(v)
		} else if def > 0 {
			c.SlidingWindow = def
		} else {
			return fmt.Errorf("%w: %s.attention.sliding_window is missing", ErrInvalidModel, arch)
		}
		c.SlidingLayers = SlidingAll
	case "gemma2":
		c.RopeNeox = true
		if c.SlidingWindow, err = geti("attention.sliding_window", 4096, false); err != nil {
			return err
		}
		c.SlidingLayers = SlidingEven
		c.AttnSoftcap = getf("attn_logit_softcapping", 50)
		c.FinalSoftcap = getf("final_logit_softcapping", 30)
		if !(c.AttnSoftcap > 0) || !(c.FinalSoftcap > 0) {
			return fmt.Errorf("%w: soft-capping %g / %g must be positive", ErrInvalidModel, c.AttnSoftcap, c.FinalSoftcap)
		}
		c.EmbedScale = float32(math.Sqrt(float64(c.Embedding)))
		// Gemma 2 27B (46 blocks) scales queries by the model width per
		// head rather than by the head size; the smaller ones by the head.
		if c.Layers == 46 {
			c.QueryScale = float32(1 / math.Sqrt(float64(c.Embedding/c.Heads)))
		}
	}
	return nil
}
