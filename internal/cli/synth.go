package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"rbee/internal/synth"
)

func runSynth(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "synth-model")
	out := fs.String("out", "", "file to write (required)")
	preset := fs.String("preset", "tinyllama", "shape: tinyllama (1.1B parameters) or tiny (for tests)")
	quant := fs.String("quant", "Q4_K_M", "encoding: "+strings.Join(synth.Quants(), ", "))
	seed := fs.Uint64("seed", 1, "seed of the random weights")
	arch := fs.String("arch", "llama", "architecture: "+strings.Join(synth.Archs(), ", "))
	if err := parseFlags(env, fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usagef("--out is required")
	}
	if !slices.Contains(synth.Archs(), *arch) {
		return usagef("--arch must be one of %s", strings.Join(synth.Archs(), ", "))
	}
	var spec synth.Spec
	switch *preset {
	case "tinyllama":
		spec = synth.TinyLlamaAs(*arch, strings.ToUpper(*quant))
	case "tiny":
		spec = synth.Family(*arch, strings.ToUpper(*quant))
	default:
		return usagef("--preset must be tinyllama or tiny")
	}
	if !slices.Contains(synth.Quants(), spec.Quant) {
		return usagef("--quant must be one of %s", strings.Join(synth.Quants(), ", "))
	}
	spec.Seed = *seed
	start := time.Now()
	fmt.Fprintf(env.Stderr, "rbee: writing %s (%s) to %s\n", spec.Name, spec.Quant, *out)
	if err := synth.Write(*out, spec); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "rbee: wrote %s in %s\n", *out, formatDuration(time.Since(start)))
	return nil
}
