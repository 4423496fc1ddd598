package engine

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/ggml"
	"rbee/internal/testutil"
)

// golden is one line of the fixtures' tiny-*.golden.jsonl: what llama.cpp
// computed for one prompt.
type golden struct {
	PromptHex string       `json:"prompt_hex"`
	PromptIDs []int        `json:"prompt_ids"`
	Top5      [][2]float64 `json:"top5"`
	GreedyIDs []int        `json:"greedy_ids"`
	StepsTop2 [][4]float64 `json:"steps_top2"`
	TextHex   string       `json:"greedy_text_hex"`
}

func readGoldens(t *testing.T, path string) []golden {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []golden
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var g golden
		require.NoError(t, json.Unmarshal(sc.Bytes(), &g))
		out = append(out, g)
	}
	require.NoError(t, sc.Err())
	return out
}

// TestConformanceWithLlamaCpp checks the engine against llama.cpp's outputs on
// the three fixture models, as the fixtures' README prescribes: prompts
// tokenize to exactly llama.cpp's ids, and with teacher forcing (prompt ids,
// then llama.cpp's greedy ids one by one) the logit of llama.cpp's top token
// is within the tolerance at every position, and the argmax agrees wherever
// llama.cpp's margin between its top two is clear.
func TestConformanceWithLlamaCpp(t *testing.T) {
	// Every kernel level this machine has must agree with llama.cpp: the
	// portable Go code, AVX2 alone, and the detected level (VNNI here).
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
			conformance(t)
		})
	}
}

func conformance(t *testing.T) {
	dir := testutil.Fixtures(t)
	// The README allows 0.05 (F16) and 1.0 (Q8_0, Q4_K_M) and calls a tighter
	// bound a fair goal. These are tighter, with room above what every kernel
	// level measures (F16 0.012; Q8_0 0.22-0.27; Q4_K_M 0.30-0.50, the spread
	// being float summation order: one F16 rounding flip in the KV cache of
	// this random model moves logits by up to about 0.5).
	cases := []struct {
		file      string
		tol       float64 // |our logit − llama.cpp's| for llama.cpp's top token
		margin    float64 // argmax must agree where llama.cpp's top1−top2 ≥ margin
		minAgreed int     // positions with such a margin (the README's counts)
	}{
		{"tiny-F16", 0.025, 0.1, 118},
		{"tiny-Q8_0", 0.6, 1.0, 89},
		{"tiny-Q4_K_M", 0.7, 1.0, 77},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			m, err := Load(t.Context(), filepath.Join(dir, c.file+".gguf"), Options{Threads: 2})
			require.NoError(t, err)
			defer m.Close()
			goldens := readGoldens(t, filepath.Join(dir, c.file+".golden.jsonl"))
			require.Len(t, goldens, 5)
			var worst float64
			var checked, agreed int
			for gi, g := range goldens {
				prompt, err := hex.DecodeString(g.PromptHex)
				require.NoError(t, err)
				assert.Equal(t, g.PromptIDs, m.Tokenizer().Encode(string(prompt), true, false), "prompt %d tokens", gi)

				s := m.NewSession()
				logits, err := s.Eval(t.Context(), g.PromptIDs)
				require.NoError(t, err)
				// top5 after the prompt: all five logits within tolerance.
				for _, p := range g.Top5 {
					assert.InDelta(t, p[1], logits[int(p[0])], c.tol, "prompt %d: top5 token %d", gi, int(p[0]))
				}
				for step, st := range g.StepsTop2 {
					top1, l1, l2 := int(st[0]), st[1], st[3]
					d := math.Abs(float64(logits[top1]) - l1)
					worst = max(worst, d)
					checked++
					assert.LessOrEqual(t, d, c.tol, "prompt %d step %d: logit of token %d is %.4f, llama.cpp %.4f", gi, step, top1, logits[top1], l1)
					if l1-l2 >= c.margin {
						agreed++
						assert.Equal(t, top1, argmax(logits), "prompt %d step %d: argmax (llama.cpp margin %.3f)", gi, step, l1-l2)
					}
					if step < len(g.GreedyIDs) {
						logits, err = s.Eval(t.Context(), []int{g.GreedyIDs[step]})
						require.NoError(t, err)
					}
				}
				// Decoding llama.cpp's greedy ids gives its text, byte for byte.
				want, err := hex.DecodeString(g.TextHex)
				require.NoError(t, err)
				assert.Equal(t, string(want), m.Tokenizer().Decode(g.GreedyIDs), "prompt %d text", gi)
			}
			assert.Equal(t, 120, checked)
			assert.GreaterOrEqual(t, agreed, c.minAgreed)
			t.Logf("%s: %d positions, largest logit difference %.4f (tolerance %.2f), argmax checked at %d", c.file, checked, worst, c.tol, agreed)
		})
	}
}

// TestConformanceFreeRunning generates greedily with the engine's own
// Generate and compares with llama.cpp's greedy ids up to the first position
// where llama.cpp's margin is small (after a near-tie the two may diverge).
func TestConformanceFreeRunning(t *testing.T) {
	dir := testutil.Fixtures(t)
	for _, file := range []string{"tiny-F16", "tiny-Q8_0", "tiny-Q4_K_M"} {
		t.Run(file, func(t *testing.T) {
			m, err := Load(t.Context(), filepath.Join(dir, file+".gguf"), Options{})
			require.NoError(t, err)
			defer m.Close()
			for gi, g := range readGoldens(t, filepath.Join(dir, file+".golden.jsonl")) {
				prompt, _ := hex.DecodeString(g.PromptHex)
				var ids []int
				_, err := m.NewSession().Generate(t.Context(), Request{Prompt: string(prompt), MaxTokens: len(g.GreedyIDs), IgnoreEOS: true},
					func(tok Token) error {
						if tok.ID >= 0 {
							ids = append(ids, tok.ID)
						}
						return nil
					})
				require.NoError(t, err)
				margin := 1.0
				if strings.HasSuffix(file, "F16") {
					margin = 0.1
				}
				for i, st := range g.StepsTop2 {
					if i >= len(ids) || st[1]-st[3] < margin {
						break
					}
					require.Equal(t, g.GreedyIDs[i], ids[i], "prompt %d: token %d", gi, i)
				}
			}
		})
	}
}
