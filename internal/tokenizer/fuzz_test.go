package tokenizer

import (
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// spmVocab builds a SentencePiece vocabulary that works without the
// fixtures: <unk>, <s>, </s>, the 256 byte tokens, the ASCII letters, then
// the result of each BPE merge with spaces as "▁", scored by rank (earlier
// merges score higher).
func spmVocab(merges []string) Vocab {
	v := Vocab{Model: "llama", BOS: 1, EOS: 2, UNK: 0, PAD: -1, EOT: -1, AddBOS: true, AddSpacePrefix: true}
	seen := map[string]bool{}
	add := func(s string, score float32, typ int32) {
		if !seen[s] {
			seen[s] = true
			v.Tokens = append(v.Tokens, s)
			v.Scores = append(v.Scores, score)
			v.Types = append(v.Types, typ)
		}
	}
	add("<unk>", 0, TypeUnknown)
	add("<s>", 0, TypeControl)
	add("</s>", 0, TypeControl)
	const hex = "0123456789ABCDEF"
	for b := range 256 {
		add("<0x"+hex[b>>4:b>>4+1]+hex[b&15:b&15+1]+">", 0, TypeByte)
	}
	for c := 'a'; c <= 'z'; c++ {
		add(string(c), -1000, TypeNormal)
	}
	add("▁", -1000, TypeNormal)
	for i, m := range merges {
		if strings.ContainsAny(m, "<>") {
			// Keep merges from spelling "<s>": llama.cpp would merge such
			// text into the control token, and decoding would lose it.
			continue
		}
		add(strings.ReplaceAll(strings.Replace(m, "|", "", 1), " ", "▁"), -float32(i), TypeNormal)
	}
	return v
}

var fuzzToks struct {
	sync.Once
	spm, bpe []*Tokenizer
	err      error
}

// fuzzTokenizers returns the SentencePiece tokenizers (synthetic, with and
// without word splitting, and the fixture's when present) and the BPE ones
// (one per pre-tokenizer).
func fuzzTokenizers(t testing.TB) (spm, bpe []*Tokenizer) {
	merges := trainedMerges(t)
	withFixture := fixturesDir() != ""
	var llama *Tokenizer
	if withFixture {
		llama = llamaTokenizer(t)
	}
	fuzzToks.Do(func() {
		for _, split := range []bool{true, false} {
			tok, err := New(spmVocab(merges))
			if err != nil {
				fuzzToks.err = err
				return
			}
			tok.spmWords = tok.spmWords && split
			fuzzToks.spm = append(fuzzToks.spm, tok)
		}
		if llama != nil {
			fuzzToks.spm = append(fuzzToks.spm, llama)
		}
		for _, d := range preDefs {
			pre := d.names[0]
			tok, err := New(bpeVocab(pre, merges))
			if err != nil {
				fuzzToks.err = err
				return
			}
			fuzzToks.bpe = append(fuzzToks.bpe, tok)
		}
	})
	require.NoError(t, fuzzToks.err)
	return fuzzToks.spm, fuzzToks.bpe
}

var fuzzSeeds = []string{
	"", " ", "  ", "\n", "\t\n", "Hello world", " Hello, world!", "I'm sure you'LL see 12345 things",
	"日本語 🦙 Führer привет", "a\xffb", "\xe6\x97", "\xc0\x80", "\xed\xa0\x80", "<s>x</s>", "<|eot_id|>",
	"<tool>call</tool>", "▁▁x", "3.14159 ... !!!\r\n\r\n", "ខ្មែរ", "👨‍👩‍👧 ❤️",
}

// checkCommon checks what holds for every tokenizer: no panic, ids in range,
// BOS first when added, and streaming equal to Decode with every output valid
// UTF-8.
func checkCommon(t *testing.T, tok *Tokenizer, s string) {
	withSpecial := tok.Encode(s, true, true)
	if tok.AddBOS() {
		require.NotEmpty(t, withSpecial)
		require.Equal(t, tok.BOS(), withSpecial[0])
	}
	for _, id := range withSpecial {
		require.True(t, id >= 0 && id < tok.VocabSize(), "id %d", id)
	}
	require.Equal(t, string([]rune(tok.Decode(withSpecial))), streamDecode(t, tok, withSpecial))
	// Arbitrary ids (the input's bytes, some out of range) decode without
	// panicking, and stream the same.
	ids := make([]int, 0, len(s))
	for i := 0; i < len(s); i++ {
		ids = append(ids, int(s[i])*int(s[i])-100)
	}
	require.Equal(t, string([]rune(tok.Decode(ids))), streamDecode(t, tok, ids))
}

func FuzzEncodeSPM(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	spm, _ := fuzzTokenizers(f)
	f.Fuzz(func(t *testing.T, s string) {
		for _, tok := range spm {
			ids := tok.Encode(s, false, false)
			checkCommon(t, tok, s)
			if !utf8.ValidString(s) {
				// A broken character can swallow the first bytes of a
				// "▁" that stood for a space; then that space comes back
				// as "▁". llama.cpp does the same.
				continue
			}
			// Valid text comes back with the space prefix, except that a
			// "▁" in the input reads as a space.
			want := ""
			if s != "" {
				want = strings.ReplaceAll(" "+s, "▁", " ")
			}
			require.Equal(t, want, tok.Decode(ids), "input %q ids %v", s, ids)
		}
		require.Equal(t, spm[0].Encode(s, true, true), spm[1].Encode(s, true, true), "word splitting changes nothing")
	})
}

func FuzzEncodeBPE(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	_, bpe := fuzzTokenizers(f)
	f.Fuzz(func(t *testing.T, s string) {
		for _, tok := range bpe {
			ids := tok.Encode(s, false, false)
			want := s
			if !utf8.ValidString(s) {
				// Invalid bytes read as U+FFFD, as in llama.cpp.
				var ps preSession
				want, _ = tok.pretokenize(s, &ps)
			}
			require.Equal(t, want, tok.Decode(ids), "input %q ids %v", s, ids)
			checkCommon(t, tok, s)
		}
	})
}
