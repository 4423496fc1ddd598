package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/api"
	"rbee/internal/gguf"
	"rbee/internal/testutil"
	"rbee/internal/tokenizer"
)

// runStdin runs an rbee command with stdin as its standard input.
func runStdin(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	e := &Env{Stdin: stdin, Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	code := Run(context.Background(), e, args)
	return result{code, out.String(), errb.String()}
}

// gpt2Byte is GPT-2's byte-level stand-in for byte b.
func gpt2Byte(b int) rune {
	n := 0
	for c := range b {
		if !(c >= '!' && c <= '~' || c >= 0xA1 && c <= 0xAC || c >= 0xAE) {
			n++
		}
	}
	if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE {
		return rune(b)
	}
	return rune(256 + n)
}

// writeVocabOnly writes a vocab-only GGUF (no tensors) with a small
// byte-level BPE vocabulary: the 256 bytes, a few merges, and the control
// tokens <|endoftext|> (BOS and EOS) and <|im_end|>.
func writeVocabOnly(t *testing.T, pre string) string {
	t.Helper()
	var tokens []string
	var types []int32
	for b := range 256 {
		tokens = append(tokens, string(gpt2Byte(b)))
		types = append(types, tokenizer.TypeNormal)
	}
	sp := string(gpt2Byte(' '))
	merges := []string{"h e", "l l", "he ll", "hell o", sp + " w", "o r", sp + "w or"}
	for _, m := range merges {
		tokens = append(tokens, strings.ReplaceAll(m, " ", ""))
		types = append(types, tokenizer.TypeNormal)
	}
	tokens = append(tokens, "<|endoftext|>", "<|im_end|>")
	types = append(types, tokenizer.TypeControl, tokenizer.TypeControl)
	var w gguf.Writer
	for _, kv := range []struct {
		k string
		v any
	}{
		{"general.architecture", "qwen2"},
		{"tokenizer.ggml.model", "gpt2"},
		{"tokenizer.ggml.pre", pre},
		{"tokenizer.ggml.tokens", tokens},
		{"tokenizer.ggml.token_type", types},
		{"tokenizer.ggml.merges", merges},
		{"tokenizer.ggml.bos_token_id", uint32(len(tokens) - 2)},
		{"tokenizer.ggml.eos_token_id", uint32(len(tokens) - 2)},
		{"tokenizer.ggml.add_bos_token", true},
	} {
		require.NoError(t, w.Set(kv.k, kv.v))
	}
	path := filepath.Join(t.TempDir(), "vocab.gguf")
	require.NoError(t, w.WriteFile(path))
	return path
}

func idList(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return "[" + strings.Join(s, ", ") + "]\n"
}

func TestTokenizeVocabOnly(t *testing.T) {
	path := writeVocabOnly(t, "qwen2")
	tok, err := tokenizer.Open(path)
	require.NoError(t, err)
	const text = "hello world<|im_end|> x"
	eot := tok.VocabSize() - 1
	bos := tok.VocabSize() - 2

	plain := tok.Encode(text, false, false)
	assert.NotContains(t, plain, eot)
	r := runStdin(t, nil, "tokenize", "--model", path, text)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, idList(plain), r.stdout)
	assert.Equal(t, "hello", tok.TokenText(plain[0]), "merges apply")

	// Flags after TEXT count too; --parse-special reads <|im_end|> as the
	// token; --add-special adds BOS.
	r = runStdin(t, nil, "tokenize", "--model", path, text, "--parse-special", "--add-special")
	require.Equal(t, 0, r.code, r.stderr)
	both := tok.Encode(text, true, true)
	assert.Equal(t, bos, both[0])
	assert.Contains(t, both, eot)
	assert.Equal(t, idList(both), r.stdout)

	// Standard input, without TEXT or with "-".
	for _, args := range [][]string{{"tokenize", "--model", path}, {"tokenize", "--model", path, "-"}} {
		r = runStdin(t, strings.NewReader(text), args...)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Equal(t, idList(plain), r.stdout)
	}
	// "--" ends the flags: a text may start with "-".
	r = runStdin(t, nil, "tokenize", "--model", path, "--", "-hello")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, idList(tok.Encode("-hello", false, false)), r.stdout)

	// Empty text: an empty list.
	r = runStdin(t, strings.NewReader(""), "tokenize", "--model", path)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "[]\n", r.stdout)
}

func TestTokenizePieces(t *testing.T) {
	path := writeVocabOnly(t, "qwen2")
	tok, err := tokenizer.Open(path)
	require.NoError(t, err)
	r := runStdin(t, nil, "tokenize", "--model", path, "--pieces", "--parse-special", "hello<|im_end|>\xe6\x97")
	require.Equal(t, 0, r.code, r.stderr)
	hello, _ := tok.TokenID("hello")
	want := fmt.Sprintf("%6d -> 'hello'\n%6d -> '<|im_end|>'\n", hello, tok.VocabSize()-1)
	assert.True(t, strings.HasPrefix(r.stdout, want), "got %q", r.stdout)
	// A piece that is not UTF-8 on its own (one byte of "é") is shown in hex.
	r = runStdin(t, nil, "tokenize", "--model", path, "--pieces", "é")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, fmt.Sprintf("%6d -> '<c3>' (utf-8 decode failure)\n%6d -> '<a9>' (utf-8 decode failure)\n",
		bytePos(tok, 0xc3), bytePos(tok, 0xa9)), r.stdout)
}

// bytePos is the id of the token of byte b in writeVocabOnly's vocabulary.
func bytePos(tok *tokenizer.Tokenizer, b int) int {
	id, _ := tok.TokenID(string(gpt2Byte(b)))
	return id
}

func TestTokenizeJSONL(t *testing.T) {
	path := writeVocabOnly(t, "qwen2")
	tok, err := tokenizer.Open(path)
	require.NoError(t, err)
	texts := []string{"hello world", "", "a\nb\r\n", "<|im_end|>"}
	var in bytes.Buffer
	for _, s := range texts {
		b, _ := json.Marshal(s)
		in.Write(b)
		in.WriteString("\n")
	}
	r := runStdin(t, bytes.NewReader(in.Bytes()), "tokenize", "--model", path, "--jsonl", "--parse-special")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, len(texts))
	for i, s := range texts {
		var got []int
		require.NoError(t, json.Unmarshal([]byte(lines[i]), &got), "line %d: %s", i, lines[i])
		want := tok.Encode(s, false, true)
		if len(want) == 0 {
			want = nil
		}
		if len(got) == 0 {
			got = nil
		}
		assert.Equal(t, want, got, "line %d", i)
	}

	// A bad line gets an error envelope in its place; the others are
	// tokenized; the exit status is 1. The last line may lack "\n".
	r = runStdin(t, strings.NewReader("\"hello\"\nnot json\r\n42\n\"x\""), "tokenize", "--model", path, "--jsonl")
	assert.Equal(t, 1, r.code)
	lines = strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 4, r.stdout)
	assert.Equal(t, strings.TrimSuffix(idList(tok.Encode("hello", false, false)), "\n"), strings.ReplaceAll(lines[0], ",", ", "))
	for _, l := range lines[1:3] {
		var env api.Envelope
		require.NoError(t, json.Unmarshal([]byte(l), &env), l)
		require.NotNil(t, env.Error)
		assert.Equal(t, api.CodeInvalidRequest, env.Error.Code)
		assert.Contains(t, env.Error.Message, "not a JSON string")
		assert.NotEmpty(t, env.Error.Hint())
	}
	assert.Contains(t, r.stderr, "2 of 4 input lines")
	assert.Contains(t, r.stderr, "hint:")
}

func TestTokenizeErrors(t *testing.T) {
	path := writeVocabOnly(t, "qwen2")
	dir := t.TempDir()
	notGGUF := filepath.Join(dir, "x.gguf")
	require.NoError(t, os.WriteFile(notGGUF, []byte("hello"), 0o600))
	unknownPre := writeVocabOnly(t, "no-such-pre")

	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no model", []string{"tokenize", "hi"}, 2, "--model is required"},
		{"two texts", []string{"tokenize", "--model", path, "a", "b"}, 2, "one TEXT at most"},
		{"jsonl with text", []string{"tokenize", "--model", path, "--jsonl", "a"}, 2, "--jsonl reads standard input"},
		{"jsonl with pieces", []string{"tokenize", "--model", path, "--jsonl", "--pieces"}, 2, "do not go together"},
		{"bad flag", []string{"tokenize", "--model", path, "--nope"}, 2, "nope"},
		{"missing file", []string{"tokenize", "--model", filepath.Join(dir, "none.gguf"), "hi"}, 1, "does not exist"},
		{"not gguf", []string{"tokenize", "--model", notGGUF, "hi"}, 1, "not a readable GGUF file"},
		{"unknown pre-tokenizer", []string{"tokenize", "--model", unknownPre, "hi"}, 1, `pre-tokenizer "no-such-pre"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runStdin(t, strings.NewReader(""), tc.args...)
			assert.Equal(t, tc.code, r.code, r.stderr)
			assert.Contains(t, r.stderr, tc.msg)
			assert.Empty(t, r.stdout)
			if tc.code == 1 {
				assert.Contains(t, r.stderr, "hint:")
			}
		})
	}

	r := runStdin(t, nil, "tokenize", "--help")
	assert.Equal(t, 0, r.code)
	assert.Contains(t, r.stdout, "--jsonl")
	assert.Contains(t, r.stdout, "vocab-only")
}

// TestTokenizeFixtureVocabs tokenizes llama.cpp's 46 test inputs of every
// fixture vocabulary in one --jsonl process each and compares with
// llama.cpp's ids.
func TestTokenizeFixtureVocabs(t *testing.T) {
	dir := filepath.Join(testutil.ModuleRoot(t), "..", "shared", "fixtures", "tokenizer")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("llama.cpp's tokenizer fixtures are absent (%v)", err)
	}
	for _, name := range []string{"gpt-2", "gpt-neox", "mpt", "falcon", "deepseek-llm", "deepseek-coder", "starcoder", "refact", "phi-3", "baichuan"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, "ggml-vocab-"+name+".gguf")
			inp, err := os.ReadFile(path + ".inp")
			require.NoError(t, err)
			texts := strings.Split(string(inp), "\n__ggml_vocab_test__\n")
			texts = texts[:len(texts)-1]
			outp, err := os.ReadFile(path + ".out")
			require.NoError(t, err)
			want := strings.Split(strings.TrimSuffix(string(outp), "\n"), "\n")
			require.Len(t, want, len(texts))

			var in bytes.Buffer
			for _, s := range texts {
				b, _ := json.Marshal(s)
				in.Write(b)
				in.WriteString("\n")
			}
			r := runStdin(t, &in, "tokenize", "--model", path, "--jsonl")
			require.Equal(t, 0, r.code, r.stderr)
			got := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
			require.Len(t, got, len(texts))
			for i := range texts {
				var ids []int
				require.NoError(t, json.Unmarshal([]byte(got[i]), &ids))
				wantIDs := []int{}
				for _, f := range strings.Fields(want[i]) {
					id, err := strconv.Atoi(f)
					require.NoError(t, err)
					wantIDs = append(wantIDs, id)
				}
				assert.Equal(t, wantIDs, append([]int{}, ids...), "case %d: %q", i, texts[i])
			}
		})
	}
}

// TestTokenizeBinary runs the built rbee binary: standard input in, ids out,
// exit status 1 for a missing model.
func TestTokenizeBinary(t *testing.T) {
	bin := testutil.RbeeBinary(t)
	path := writeVocabOnly(t, "qwen2")
	tok, err := tokenizer.Open(path)
	require.NoError(t, err)
	cmd := exec.Command(bin, "tokenize", "--model", path)
	cmd.Stdin = strings.NewReader("hello world")
	out, err := cmd.Output()
	require.NoError(t, err)
	assert.Equal(t, idList(tok.Encode("hello world", false, false)), string(out))

	cmd = exec.Command(bin, "tokenize", "--model", filepath.Join(t.TempDir(), "none.gguf"), "x")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 1, ee.ExitCode())
	assert.Contains(t, stderr.String(), "does not exist")
}
