package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/ggml"
)

// raw builds GGUF bytes field by field, so that tests can write what the Writer
// refuses to.
type raw struct{ b []byte }

func (r *raw) u32(v uint32) *raw { r.b = binary.LittleEndian.AppendUint32(r.b, v); return r }
func (r *raw) u64(v uint64) *raw { r.b = binary.LittleEndian.AppendUint64(r.b, v); return r }
func (r *raw) str(s string) *raw { r.u64(uint64(len(s))); r.b = append(r.b, s...); return r }
func (r *raw) bytes(b ...byte) *raw {
	r.b = append(r.b, b...)
	return r
}

// header starts a v3 file.
func header(nTensors, nKV uint64) *raw {
	r := &raw{b: []byte("GGUF")}
	return r.u32(3).u64(nTensors).u64(nKV)
}

// kvU32 appends a uint32 metadata entry.
func (r *raw) kvU32(key string, v uint32) *raw { return r.str(key).u32(uint32(Uint32)).u32(v) }

// tensor appends a tensor info.
func (r *raw) tensor(name string, typ ggml.Type, offset uint64, dims ...uint64) *raw {
	r.str(name).u32(uint32(len(dims)))
	for _, d := range dims {
		r.u64(d)
	}
	return r.u32(uint32(typ)).u64(offset)
}

// data pads to 32 and appends n zero bytes of tensor data.
func (r *raw) data(n int) []byte {
	for len(r.b)%32 != 0 {
		r.b = append(r.b, 0)
	}
	return append(r.b, make([]byte, n)...)
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		want error
		msg  string // part of the message
	}{
		{"wrong magic", []byte("PK\x03\x04 rest of a zip file"), ErrNotGGUF, `not a GGUF file (magic "PK\x03\x04")`},
		{"short non-GGUF", []byte("{}"), ErrNotGGUF, `magic "{}"`},
		{"empty", nil, ErrTruncated, "reading the magic"},
		{"v1", (&raw{b: []byte("GGUF")}).u32(1).u32(0).u32(0).b, ErrVersion, "version 1 (GGUF v1 uses 32-bit counts"},
		{"v0", (&raw{b: []byte("GGUF")}).u32(0).u64(0).u64(0).b, ErrVersion, "version 0 (only versions 2 and 3"},
		{"v4", (&raw{b: []byte("GGUF")}).u32(4).u64(0).u64(0).b, ErrVersion, "version 4"},
		{"big-endian", append([]byte("GGUF\x00\x00\x00\x03"), make([]byte, 16)...), ErrVersion, "big-endian"},
		{"huge tensor count", append(header(1<<60, 0).b, make([]byte, 16)...), ErrCorrupt, "tensor count 1152921504606846976 is absurd"},
		{"huge metadata count", header(0, 1<<62).b, ErrCorrupt, "metadata count 4611686018427387904 is absurd"},
		{"counts beyond the file", append(header(1000, 1000).b, make([]byte, 100)...), ErrTruncated, "1000 metadata entries and 1000 tensor infos"},
		{"unknown value type", header(0, 1).str("k").u32(13).u32(0).b, ErrUnknownType, `metadata value 0 ("k"): value type 13`},
		{"unknown array element type", header(0, 1).str("k").u32(uint32(Array)).u32(99).u64(0).b, ErrUnknownType, "array element type 99"},
		{"huge array", header(0, 1).str("k").u32(uint32(Array)).u32(uint32(Uint8)).u64(1 << 40).b, ErrCorrupt, "array length 1099511627776 is absurd"},
		{"array beyond the file", header(0, 1).str("k").u32(uint32(Array)).u32(uint32(String)).u64(100).bytes(make([]byte, 100)...).b,
			ErrTruncated, `metadata value 0 ("k") (100 elements of type string)`},
		{"huge string", header(0, 1).str("k").u32(uint32(String)).u64(1 << 50).b, ErrCorrupt, "length 1125899906842624 is absurd"},
		{"string beyond the file", header(0, 1).str("k").u32(uint32(String)).u64(10).bytes('a').b, ErrTruncated, `metadata value 0 ("k") (10 bytes)`},
		{"empty key", header(0, 1).str("").u32(uint32(Uint8)).bytes(1).b, ErrCorrupt, "empty or not UTF-8"},
		{"key not UTF-8", header(0, 1).str("\xff\xfe").u32(uint32(Uint8)).bytes(1).b, ErrCorrupt, "empty or not UTF-8"},
		{"duplicate key", header(0, 2).kvU32("a", 1).kvU32("a", 2).b, ErrCorrupt, `metadata key 1 ("a") repeats key 0`},
		{"arrays nested too deep", func() []byte {
			r := header(0, 1).str("k").u32(uint32(Array))
			for range 9 {
				r.u32(uint32(Array)).u64(1)
			}
			return r.u32(uint32(Uint8)).u64(0).b
		}(), ErrCorrupt, "nested deeper than 8"},
		{"alignment 48", header(0, 2).kvU32("a", 1).kvU32(alignmentKey, 48).b, ErrCorrupt,
			"corrupt at byte 41: general.alignment 48 is not a power of two"},
		{"alignment 0", header(0, 1).kvU32(alignmentKey, 0).b, ErrCorrupt, "general.alignment 0 is not a power of two"},
		{"alignment string", header(0, 1).str(alignmentKey).u32(uint32(String)).str("32").b, ErrCorrupt, "not an unsigned integer"},
		{"unknown tensor type", header(1, 0).tensor("w", ggml.Type(99), 0, 4).data(16), ErrUnknownType, `tensor info 0 ("w"): tensor type 99`},
		{"dims 0", header(1, 0).tensor("w", ggml.F32, 0).data(16), ErrCorrupt, `tensor info 0 ("w"): 0 dimensions`},
		{"dims 5", header(1, 0).tensor("w", ggml.F32, 0, 1, 1, 1, 1, 1).data(16), ErrCorrupt, `tensor info 0 ("w"): 5 dimensions`},
		{"dimension 0", header(1, 0).tensor("w", ggml.F32, 0, 4, 0).data(16), ErrCorrupt, "dimension 1 is 0"},
		{"element overflow", header(1, 0).tensor("w", ggml.F32, 0, 1<<32, 1<<32).data(16), ErrCorrupt, "more than 2^63 elements"},
		{"byte overflow", header(1, 0).tensor("w", ggml.F32, 0, 1<<62).data(16), ErrCorrupt, "larger than 2^63 bytes"},
		{"partial block", header(1, 0).tensor("w", ggml.Q4_K, 0, 32).data(144), ErrCorrupt, "not a multiple of Q4_K's block size 256"},
		{"empty tensor name", header(1, 0).tensor("", ggml.F32, 0, 4).data(16), ErrCorrupt, "empty, longer than 63 bytes"},
		{"long tensor name", header(1, 0).tensor(strings.Repeat("n", 64), ggml.F32, 0, 4).data(16), ErrCorrupt, "longer than 63 bytes"},
		{"duplicate tensor name", header(2, 0).tensor("w", ggml.F32, 0, 4).tensor("w", ggml.F32, 32, 4).data(64),
			ErrCorrupt, `tensor info 1: name "w" repeats tensor 0`},
		{"misaligned offset", header(1, 0).tensor("w", ggml.F32, 4, 4).data(64), ErrCorrupt,
			`tensor 0 ("w"): data offset 4 is not a multiple of the alignment 32`},
		{"overlapping tensors", header(2, 0).tensor("a", ggml.F32, 0, 16).tensor("b", ggml.F32, 32, 4).data(64), ErrCorrupt,
			`tensor data of "b" [32, 48) overlaps that of "a" [0, 64)`},
		{"same offset", header(2, 0).tensor("a", ggml.F32, 32, 4).tensor("b", ggml.F32, 32, 4).data(64), ErrCorrupt, "overlaps"},
		{"offset out of range", header(1, 0).tensor("w", ggml.F32, 1<<63, 4).data(64), ErrCorrupt, "data offset 9223372036854775808 is out of range"},
		{"data past the end", header(1, 0).tensor("w", ggml.F32, 32, 4).data(40), ErrTruncated, `tensor data 0 ("w"): it ends at byte`},
		{"no data section", header(1, 0).tensor("w", ggml.F32, 0, 4).b, ErrTruncated, "the padding before the tensor data"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.data)
			require.Error(t, err)
			assert.Nil(t, f)
			assert.ErrorIs(t, err, tc.want)
			for _, other := range []error{ErrNotGGUF, ErrVersion, ErrTruncated, ErrCorrupt, ErrUnknownType} {
				if other != tc.want {
					assert.NotErrorIs(t, err, other)
				}
			}
			var fe *FormatError
			require.ErrorAs(t, err, &fe)
			assert.Contains(t, err.Error(), tc.msg)
			assert.True(t, strings.HasPrefix(err.Error(), "gguf: "), err.Error())
			assert.GreaterOrEqual(t, fe.Offset, int64(0))
			assert.LessOrEqual(t, fe.Offset, int64(len(tc.data)))
		})
	}
}

// smallFile is a valid file with a bit of everything, built by the Writer.
func smallFile(t testing.TB) []byte {
	t.Helper()
	w := &Writer{}
	nested, err := ValueOf([]Value{mustValue(t, []int32{1, 2}), mustValue(t, []string{"x"})})
	require.NoError(t, err)
	require.NoError(t, w.Set("general.architecture", "llama"))
	require.NoError(t, w.Set("llama.block_count", uint32(1)))
	require.NoError(t, w.Set("tokenizer.ggml.tokens", []string{"<unk>", "<s>", "</s>", "a"}))
	require.NoError(t, w.Set("tokenizer.ggml.scores", []float32{0, 0, 0, -1}))
	require.NoError(t, w.Set("x.nested", nested))
	require.NoError(t, w.Set("x.f64", 0.5))
	require.NoError(t, w.AddTensor("a", ggml.F32, []uint64{3}, make([]byte, 12)))
	require.NoError(t, w.AddTensor("b", ggml.Q8_0, []uint64{32, 2}, make([]byte, 68)))
	var buf bytes.Buffer
	_, err = w.WriteTo(&buf)
	require.NoError(t, err)
	return buf.Bytes()
}

func mustValue(t testing.TB, x any) Value {
	t.Helper()
	v, err := ValueOf(x)
	require.NoError(t, err)
	return v
}

// TestParseTruncated cuts a valid file at every length: each prefix that lacks
// part of the header, metadata, tensor infos or tensor data must fail with
// ErrTruncated; prefixes missing only the final padding still parse.
func TestParseTruncated(t *testing.T) {
	data := smallFile(t)
	f, err := Parse(data)
	require.NoError(t, err)
	end := f.DataOffset
	for i := range f.Tensors {
		end = max(end, f.DataOffset+int64(f.Tensors[i].Offset)+f.Tensors[i].Size)
	}
	require.Less(t, end, int64(len(data)), "the file ends with padding")
	for n := range len(data) {
		prefix := bytes.Clone(data[:n]) // a copy, so that reading past n cannot go unnoticed
		f, err := Parse(prefix)
		if int64(n) >= end {
			assert.NoError(t, err, "prefix of %d bytes holds all the data", n)
			continue
		}
		if !assert.ErrorIs(t, err, ErrTruncated, "prefix of %d bytes", n) {
			continue
		}
		assert.Nil(t, f)
		assert.Contains(t, err.Error(), "truncated at byte")
	}
}

func TestFormatErrorMessage(t *testing.T) {
	data := header(2, 0).tensor("blk.0.attn_q.weight", ggml.F32, 0, 4).str("blk.0.attn_k.weight").u32(2).u64(4).b
	path := filepath.Join(t.TempDir(), "model.gguf")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	_, err := Open(path)
	require.Error(t, err)
	assert.Equal(t, "gguf: "+path+`: truncated at byte 114 reading tensor info 1 ("blk.0.attn_k.weight")`, err.Error())
	var fe *FormatError
	require.True(t, errors.As(err, &fe))
	assert.Equal(t, path, fe.Path)
	assert.Equal(t, int64(114), fe.Offset)
	assert.ErrorIs(t, fe.Unwrap(), ErrTruncated)

	_, err = ReadInfo(path)
	assert.ErrorIs(t, err, ErrTruncated)

	_, err = Open(filepath.Join(t.TempDir(), "missing.gguf"))
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.NotErrorIs(t, err, ErrNotGGUF)

	_, err = Open(t.TempDir())
	assert.ErrorContains(t, err, "not a regular file")

	empty := filepath.Join(t.TempDir(), "empty.gguf")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	_, err = Open(empty)
	assert.ErrorIs(t, err, ErrTruncated)
}

// TestParseHugeCountsFast checks that a tiny file claiming vast counts fails
// without allocating for them.
func TestParseHugeCountsFast(t *testing.T) {
	cases := map[string][]byte{
		"2^60 tensors":         append(header(1<<60, 0).b, make([]byte, 16)...),
		"1M tensors":           append(header(1<<20, 0).b, make([]byte, 16)...),
		"1M kv":                append(header(0, 1<<20).b, make([]byte, 16)...),
		"2^32 strings":         header(0, 1).str("k").u32(uint32(Array)).u32(uint32(String)).u64(1 << 32).b,
		"2^32 nested arrays":   header(0, 1).str("k").u32(uint32(Array)).u32(uint32(Array)).u64(1 << 32).b,
		"2^32 float64s":        header(0, 1).str("k").u32(uint32(Array)).u32(uint32(Float64)).u64(1 << 32).b,
		"string of 4 GiB":      header(0, 1).str("k").u32(uint32(String)).u64(1 << 32).b,
		"tensor name of 4 GiB": header(1, 0).u64(1 << 32).bytes(make([]byte, 40)...).b,
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(10, func() {
				_, err := Parse(data)
				if err == nil {
					t.Fatal("parsed")
				}
			})
			assert.Less(t, allocs, 20.0)
			_, err := Parse(data)
			assert.True(t, errors.Is(err, ErrTruncated) || errors.Is(err, ErrCorrupt), err)
		})
	}
}
