package tokenizer

import (
	"strings"
	"testing"
)

// englishPrompt returns about n bytes of English prose.
func englishPrompt(n int) string {
	const para = "The quick brown fox jumps over the lazy dog. In 1923, a small team of " +
		"engineers built the first prototype; it weighed 340 kg and ran for 12 hours " +
		"before it stopped. \"We didn't expect it to work,\" said one of them, \"but it did!\"\n" +
		"Today, models like these answer questions, write code and translate text — " +
		"often faster than we can read it. What's next? Nobody knows for sure.\n\n"
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(para)
	}
	return b.String()[:n]
}

func BenchmarkEncodeSPM4K(b *testing.B) {
	tok := llamaTokenizer(b)
	text := englishPrompt(4096)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		tok.Encode(text, true, false)
	}
}

func BenchmarkEncodeSPM32K(b *testing.B) {
	tok := llamaTokenizer(b)
	text := englishPrompt(32768)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		tok.Encode(text, true, false)
	}
}

func BenchmarkEncodeBPE4K(b *testing.B) {
	tok, err := New(bpeVocab("llama-bpe", trainedMerges(b)))
	if err != nil {
		b.Fatal(err)
	}
	text := englishPrompt(4096)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		tok.Encode(text, true, false)
	}
}

func BenchmarkDecoder(b *testing.B) {
	tok, err := New(bpeVocab("llama-bpe", trainedMerges(b)))
	if err != nil {
		b.Fatal(err)
	}
	ids := tok.Encode(englishPrompt(4096)+"日本語 🦙", false, false)
	b.ReportAllocs()
	for b.Loop() {
		d := tok.NewDecoder()
		for _, id := range ids {
			d.Next(id)
		}
		d.Flush()
	}
}
