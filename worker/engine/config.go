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
}

// supportedArchitectures lists what the engine's forward pass implements.
// Mistral-style models are published with the "llama" architecture.
var supportedArchitectures = map[string]bool{"llama": true}

func readConfig(f *gguf.File) (Config, error) {
	var c Config
	arch, ok := f.GetString("general.architecture")
	if !ok {
		return c, fmt.Errorf("%w: general.architecture is missing", ErrInvalidModel)
	}
	if !supportedArchitectures[arch] {
		return c, fmt.Errorf("%w: architecture %q (the engine runs llama-architecture models: Llama 2 and 3, TinyLlama, Mistral)", ErrUnsupported, arch)
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
