package tokenizer

import (
	"context"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// llamaTokenizeBinary finds llama.cpp's llama-tokenize: $RBEE_LLAMA_TOKENIZE,
// else ../llama-ref/src/build/bin/llama-tokenize next to the module root.
func llamaTokenizeBinary(t *testing.T) string {
	t.Helper()
	p := os.Getenv("RBEE_LLAMA_TOKENIZE")
	if p == "" {
		fx := fixturesDir()
		if fx == "" {
			t.Skip("no fixtures directory, so no llama.cpp build next to it either")
		}
		p = filepath.Join(fx, "..", "..", "llama-ref", "src", "build", "bin", "llama-tokenize")
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("llama.cpp's llama-tokenize is absent (%v); set $RBEE_LLAMA_TOKENIZE to compare with it", err)
	}
	return p
}

// llamaCppIDs runs llama-tokenize on text without special tokens.
func llamaCppIDs(t *testing.T, bin, vocab, text string) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-m", vocab, "--stdin", "--ids", "--no-bos", "--no-escape",
		"--no-parse-special", "--log-disable")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.Output()
	require.NoError(t, err, "llama-tokenize on %q", text)
	s := strings.TrimSpace(string(out))
	s = s[strings.LastIndex(s, "[")+1:]
	s = strings.TrimSuffix(s, "]")
	ids := []int{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			id, err := strconv.Atoi(f)
			require.NoError(t, err, "output %q", out)
			ids = append(ids, id)
		}
	}
	return ids
}

// TestAgainstLlamaCpp compares every fixture vocabulary with llama.cpp's own
// tokenizer on random texts (200 each, $RBEE_LLAMA_TOKENIZE_N to change;
// $RBEE_LLAMA_TOKENIZE_VOCABS=a,b picks vocabularies),
// when a llama.cpp build is at hand. It reports the agreement and fails on
// any difference.
func TestAgainstLlamaCpp(t *testing.T) {
	if testing.Short() {
		t.Skip("runs llama.cpp once per text")
	}
	bin := llamaTokenizeBinary(t)
	n := 200
	if s := os.Getenv("RBEE_LLAMA_TOKENIZE_N"); s != "" {
		v, err := strconv.Atoi(s)
		require.NoError(t, err)
		n = min(max(v, 1), 100000)
	}
	// The vocabulary-only fixtures, and the vocabularies of the model
	// fixtures: Llama 2's SentencePiece, Llama 3's and Qwen 2's BPE,
	// Gemma 2's SentencePiece.
	files := map[string]string{
		"llama-spm": "tiny-Q8_0.gguf", "llama-bpe": "families/llama3-Q4_K_M.gguf",
		"qwen2": "families/qwen2-Q4_K_M.gguf", "gemma2": "families/gemma2-Q4_K_M.gguf",
	}
	for _, name := range fixtureVocabs {
		files[name] = "tokenizer/ggml-vocab-" + name + ".gguf"
	}
	names := slices.Sorted(maps.Keys(files))
	if only := os.Getenv("RBEE_LLAMA_TOKENIZE_VOCABS"); only != "" {
		names = strings.Split(only, ",")
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			path := fixture(t, files[name])
			tok := fileTokenizer(t, path)
			rng := rand.New(rand.NewPCG(uint64(len(name)), 2026))
			same := 0
			var diffs []string
			for i := range n {
				text := randomText(rng, 1+i%30)
				want := llamaCppIDs(t, bin, path, text)
				got := tok.Encode(text, false, false)
				if slices.Equal(want, got) {
					same++
				} else if len(diffs) < 5 {
					diffs = append(diffs, strconv.Quote(text))
				}
			}
			t.Logf("%s: %d of %d random texts tokenized as llama.cpp does", name, same, n)
			require.Equal(t, n, same, "first differences: %s", strings.Join(diffs, ", "))
		})
	}
}
