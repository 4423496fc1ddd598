package tokenizer

import (
	"testing"

	"rbee/internal/gguf"
)

// BenchmarkEncodeVocab encodes 4 KiB of English prose with each fixture
// vocabulary (gpt-neox runs the default pre-tokenizer, falcon and the
// DeepSeek ones the regex engine).
func BenchmarkEncodeVocab(b *testing.B) {
	for _, name := range []string{"gpt-2", "gpt-neox", "falcon", "deepseek-llm", "deepseek-coder", "starcoder"} {
		b.Run(name, func(b *testing.B) {
			f, err := gguf.Open(fixture(b, "tokenizer/ggml-vocab-"+name+".gguf"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			tok, err := FromGGUF(f)
			if err != nil {
				b.Skipf("%s: %v", name, err)
			}
			text := englishPrompt(4096)
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				tok.Encode(text, false, false)
			}
		})
	}
}
