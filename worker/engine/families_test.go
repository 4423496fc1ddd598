package engine

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/ggml"
	"rbee/internal/testutil"
)

// familyFixtures lists the model-family fixtures: models of the architectures
// besides plain llama, with llama.cpp's outputs on them.
var familyFixtures = []string{
	"llama3-Q4_K_M",
	"qwen2-Q4_K_M",
	"qwen2-tied-Q4_K_M",
	"phi3-Q4_K_M",
	"phi3-Q8_0",
	"gemma2-Q4_K_M",
}

// TestFamiliesConformWithLlamaCpp checks every family fixture, at every kernel
// level this machine has, teacher-forced as the fixtures' README says: the
// prompt tokenizes to llama.cpp's ids; after the prompt and after each of
// llama.cpp's greedy tokens the logit of llama.cpp's top token is within 1.5
// and the argmax agrees wherever llama.cpp's top two are at least 1.5 apart;
// the greedy tokens' pieces are llama.cpp's.
func TestFamiliesConformWithLlamaCpp(t *testing.T) {
	dir := filepath.Join(testutil.Fixtures(t), "families")
	if _, err := os.Stat(filepath.Join(dir, "README.md")); err != nil {
		t.Skipf("family fixtures not present: %v", err)
	}
	detected := ggml.SIMD()
	for _, level := range []string{"generic", "avx2", detected} {
		t.Run(level, func(t *testing.T) {
			if testing.Short() && level != detected {
				t.Skip("-short checks the detected kernel level only")
			}
			defer ggml.LimitSIMD(level)()
			if level == "avx2" && ggml.SIMD() == "generic" {
				t.Skip("this CPU has no AVX2")
			}
			for _, file := range familyFixtures {
				t.Run(file, func(t *testing.T) { familyConformance(t, dir, file) })
			}
		})
	}
}

// familyGolden adds the pieces of the greedy tokens to a golden line.
type familyGolden struct {
	golden
	PiecesHex []string `json:"greedy_pieces_hex"`
}

func familyConformance(t *testing.T, dir, file string) {
	const tol, margin = 1.5, 1.5
	m, err := Load(t.Context(), filepath.Join(dir, file+".gguf"), Options{Threads: 2})
	require.NoError(t, err)
	defer m.Close()
	goldens := readFamilyGoldens(t, filepath.Join(dir, "golden-"+file+".jsonl"))
	require.NotEmpty(t, goldens)
	var worst float64
	var checked, agreed int
	for gi, g := range goldens {
		prompt, err := hex.DecodeString(g.PromptHex)
		require.NoError(t, err)
		assert.Equal(t, g.PromptIDs, m.Tokenizer().Encode(string(prompt), true, false), "prompt %d tokens", gi)
		s := m.NewSession()
		logits, err := s.Eval(t.Context(), g.PromptIDs)
		require.NoError(t, err)
		for _, p := range g.Top5 {
			worst = max(worst, math.Abs(float64(logits[int(p[0])])-p[1]))
			assert.InDelta(t, p[1], logits[int(p[0])], tol, "prompt %d: top5 token %d", gi, int(p[0]))
		}
		for step, st := range g.StepsTop2 {
			top1, l1, l2 := int(st[0]), st[1], st[3]
			d := math.Abs(float64(logits[top1]) - l1)
			worst = max(worst, d)
			checked++
			assert.LessOrEqual(t, d, tol, "prompt %d step %d: logit of token %d is %.4f, llama.cpp %.4f", gi, step, top1, logits[top1], l1)
			if l1-l2 >= margin {
				agreed++
				assert.Equal(t, top1, argmax(logits), "prompt %d step %d: argmax (llama.cpp margin %.3f)", gi, step, l1-l2)
			}
			if step < len(g.GreedyIDs) {
				logits, err = s.Eval(t.Context(), []int{g.GreedyIDs[step]})
				require.NoError(t, err)
			}
		}
		require.Len(t, g.PiecesHex, len(g.GreedyIDs))
		for i, id := range g.GreedyIDs {
			want, err := hex.DecodeString(g.PiecesHex[i])
			require.NoError(t, err)
			assert.Equal(t, string(want), string(m.Tokenizer().Piece(id)), "prompt %d piece %d (token %d)", gi, i, id)
		}
	}
	assert.Greater(t, agreed, checked/4, "too few clear positions to check the argmax")
	t.Logf("%s: %d positions, largest logit difference %.4f (tolerance %.1f), argmax agreed at %d clear positions", file, checked, worst, tol, agreed)
}

func readFamilyGoldens(t *testing.T, path string) []familyGolden {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []familyGolden
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var g familyGolden
		require.NoError(t, json.Unmarshal(line, &g))
		out = append(out, g)
	}
	return out
}
