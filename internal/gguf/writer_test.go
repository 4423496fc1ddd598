package gguf

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"rbee/internal/ggml"
)

// allTypesKV is metadata of every value type, including arrays of strings and
// nested arrays, in the order it is set.
func allTypesKV(t testing.TB) []KV {
	t.Helper()
	inner1, err := ValueOf([]int32{1, -2, 3})
	require.NoError(t, err)
	inner2, err := ValueOf([]string{"a", "", "ü"})
	require.NoError(t, err)
	innerEmpty, err := ValueOf([]float64{})
	require.NoError(t, err)
	nested, err := ValueOf([]Value{inner1, inner2, innerEmpty})
	require.NoError(t, err)
	nested2, err := ValueOf([]Value{nested, inner1})
	require.NoError(t, err)
	vals := []struct {
		key string
		v   any
	}{
		{"general.architecture", "llama"},
		{"t.uint8", uint8(200)},
		{"t.int8", int8(-100)},
		{"t.uint16", uint16(60000)},
		{"t.int16", int16(-30000)},
		{"t.uint32", uint32(4000000000)},
		{"t.int32", int32(-2000000000)},
		{"t.float32", float32(1.5e-5)},
		{"t.bool.true", true},
		{"t.bool.false", false},
		{"t.string", "héllo\x00world"},
		{"t.string.empty", ""},
		{"t.uint64", uint64(math.MaxUint64)},
		{"t.int64", int64(math.MinInt64)},
		{"t.float64", math.Pi},
		{"t.arr.uint8", []uint8{0, 1, 255}},
		{"t.arr.int8", []int8{-128, 0, 127}},
		{"t.arr.uint16", []uint16{0, 65535}},
		{"t.arr.int16", []int16{-32768, 32767}},
		{"t.arr.uint32", []uint32{0, math.MaxUint32}},
		{"t.arr.int32", []int32{math.MinInt32, 0, math.MaxInt32}},
		{"t.arr.float32", []float32{-1, 0.25, float32(math.Inf(1))}},
		{"t.arr.bool", []bool{true, false, true}},
		{"t.arr.string", []string{"<unk>", "<s>", "", "▁the"}},
		{"t.arr.uint64", []uint64{math.MaxUint64, 7}},
		{"t.arr.int64", []int64{math.MinInt64, -1}},
		{"t.arr.float64", []float64{math.SmallestNonzeroFloat64, -2}},
		{"t.arr.empty", []string{}},
		{"t.arr.nested", nested},
		{"t.arr.nested2", nested2},
		{"t.int.small", 7}, // Go int: stored as uint32
	}
	kvs := make([]KV, len(vals))
	for i, kv := range vals {
		v, err := ValueOf(kv.v)
		require.NoError(t, err, kv.key)
		kvs[i] = KV{Key: kv.key, Value: v}
	}
	return kvs
}

type testTensor struct {
	name  string
	typ   ggml.Type
	shape []uint64
	data  []byte
}

// testTensors returns tensors of several types with random bytes.
func testTensors(t testing.TB, seed uint64) []testTensor {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	specs := []testTensor{
		{"f32.vec", ggml.F32, []uint64{5}, nil},
		{"f16.mat", ggml.F16, []uint64{3, 7}, nil},
		{"q8_0.mat", ggml.Q8_0, []uint64{64, 3}, nil},
		{"q4_k.4d", ggml.Q4_K, []uint64{256, 2, 1, 2}, nil},
		{"q6_k.mat", ggml.Q6_K, []uint64{256, 1}, nil},
		{"iq2_xxs.unsupported", ggml.IQ2_XXS, []uint64{256, 2}, nil},
		{"bf16.3d", ggml.BF16, []uint64{2, 3, 4}, nil},
	}
	for i := range specs {
		size, msg := tensorSize(specs[i].typ, specs[i].shape)
		require.Empty(t, msg)
		specs[i].data = make([]byte, size)
		for j := range specs[i].data {
			specs[i].data[j] = byte(r.Uint32())
		}
	}
	return specs
}

func TestWriterRoundTrip(t *testing.T) {
	cases := []struct {
		name      string
		version   uint32
		alignment uint64
		wantAlign uint64
	}{
		{"v3 default", 0, 0, 32},
		{"v2", 2, 0, 32},
		{"v3 align 64", 3, 64, 64},
		{"v2 align 8", 2, 8, 8},
		{"align 1", 3, 1, 1},
		{"align 4096", 3, 4096, 4096},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kvs := allTypesKV(t)
			tensors := testTensors(t, uint64(tc.alignment))
			w := &Writer{Version: tc.version, Alignment: tc.alignment}
			for _, kv := range kvs {
				require.NoError(t, w.Set(kv.Key, kv.Value))
			}
			for i, tt := range tensors {
				if i%2 == 0 {
					require.NoError(t, w.AddTensor(tt.name, tt.typ, tt.shape, tt.data))
				} else {
					data := tt.data
					require.NoError(t, w.AddTensorFunc(tt.name, tt.typ, tt.shape, func(out io.Writer) error {
						// Write in two pieces to check that partial writes add up.
						if _, err := out.Write(data[:len(data)/2]); err != nil {
							return err
						}
						_, err := out.Write(data[len(data)/2:])
						return err
					}))
				}
			}
			var buf bytes.Buffer
			n, err := w.WriteTo(&buf)
			require.NoError(t, err)
			assert.Equal(t, int64(buf.Len()), n)

			f, err := Parse(buf.Bytes())
			require.NoError(t, err)
			wantVersion := tc.version
			if wantVersion == 0 {
				wantVersion = 3
			}
			assert.Equal(t, wantVersion, f.Version)
			assert.Equal(t, tc.wantAlign, f.Alignment)
			assert.Equal(t, int64(buf.Len()), f.Size)
			assert.Zero(t, f.DataOffset%int64(tc.wantAlign))
			assert.Empty(t, f.Path)

			wantKV := kvs
			if tc.wantAlign != 32 {
				wantKV = append(wantKV, KV{Key: alignmentKey, Value: Value{typ: Uint32, x: uint32(tc.wantAlign)}})
			}
			require.Len(t, f.KV, len(wantKV))
			for i, kv := range f.KV {
				assert.Equal(t, wantKV[i].Key, kv.Key)
				assert.Equal(t, wantKV[i].Value.Type(), kv.Value.Type(), kv.Key)
				assert.Equal(t, wantKV[i].Value.ElemType(), kv.Value.ElemType(), kv.Key)
				assert.Equal(t, wantKV[i].Value.Len(), kv.Value.Len(), kv.Key)
				assert.Equal(t, wantKV[i].Value.Any(), kv.Value.Any(), kv.Key)
			}

			require.Len(t, f.Tensors, len(tensors))
			for i, tt := range tensors {
				ti := &f.Tensors[i]
				assert.Equal(t, tt.name, ti.Name)
				assert.Equal(t, tt.typ, ti.Type)
				assert.Equal(t, tt.shape, ti.Shape)
				assert.Equal(t, int64(len(tt.data)), ti.Size)
				assert.Zero(t, ti.Offset%tc.wantAlign, ti.Name)
				assert.Equal(t, tt.data, f.TensorData(ti), ti.Name)
				got, ok := f.Tensor(tt.name)
				require.True(t, ok)
				assert.Same(t, ti, got)
			}
			// The data is aliased, not copied.
			first := f.TensorData(&f.Tensors[0])
			assert.Same(t, &buf.Bytes()[f.DataOffset+int64(f.Tensors[0].Offset)], &first[0])

			// Writing what was read gives the same bytes again.
			w2 := &Writer{Version: f.Version}
			for _, kv := range f.KV {
				require.NoError(t, w2.Set(kv.Key, kv.Value))
			}
			for i := range f.Tensors {
				ti := &f.Tensors[i]
				require.NoError(t, w2.AddTensor(ti.Name, ti.Type, ti.Shape, f.TensorData(ti)))
			}
			var buf2 bytes.Buffer
			_, err = w2.WriteTo(&buf2)
			require.NoError(t, err)
			assert.Equal(t, buf.Bytes(), buf2.Bytes())
		})
	}
}

func TestWriterGetters(t *testing.T) {
	w := &Writer{}
	for _, kv := range allTypesKV(t) {
		require.NoError(t, w.Set(kv.Key, kv.Value))
	}
	require.NoError(t, w.Set("t.arr.uint8.small", []uint8{1, 2}))
	require.NoError(t, w.Set("t.arr.int64.big", []int64{1 << 40}))
	require.NoError(t, w.Set("t.int.neg", -5))
	require.NoError(t, w.Set("t.int.big", 1<<40))
	var buf bytes.Buffer
	_, err := w.WriteTo(&buf)
	require.NoError(t, err)
	f, err := Parse(buf.Bytes())
	require.NoError(t, err)

	s, ok := f.GetString("t.string")
	assert.True(t, ok)
	assert.Equal(t, "héllo\x00world", s)
	_, ok = f.GetString("t.uint8")
	assert.False(t, ok, "GetString on a uint8")
	_, ok = f.GetString("missing")
	assert.False(t, ok)

	for key, want := range map[string]uint64{
		"t.uint8": 200, "t.uint16": 60000, "t.uint32": 4000000000, "t.uint64": math.MaxUint64, "t.int.small": 7,
	} {
		got, ok := f.GetUint(key)
		assert.True(t, ok, key)
		assert.Equal(t, want, got, key)
	}
	for _, key := range []string{"t.int8", "t.int16", "t.int32", "t.int64", "t.float32", "t.string", "t.arr.uint8", "missing"} {
		_, ok := f.GetUint(key)
		assert.False(t, ok, "GetUint(%s) of a negative or non-integer value", key)
	}
	for key, want := range map[string]int64{
		"t.int8": -100, "t.int16": -30000, "t.int32": -2000000000, "t.int64": math.MinInt64,
		"t.uint32": 4000000000, "t.int.neg": -5, "t.int.big": 1 << 40,
	} {
		got, ok := f.GetInt(key)
		assert.True(t, ok, key)
		assert.Equal(t, want, got, key)
	}
	_, ok = f.GetInt("t.uint64")
	assert.False(t, ok, "MaxUint64 does not fit an int64")
	_, ok = f.GetInt("t.bool.true")
	assert.False(t, ok)

	v, ok := f.GetFloat("t.float64")
	assert.True(t, ok)
	assert.Equal(t, math.Pi, v)
	v, ok = f.GetFloat("t.float32")
	assert.True(t, ok)
	assert.Equal(t, float64(float32(1.5e-5)), v)
	v, ok = f.GetFloat("t.int16")
	assert.True(t, ok)
	assert.Equal(t, -30000.0, v)
	_, ok = f.GetFloat("t.string")
	assert.False(t, ok)

	b, ok := f.GetBool("t.bool.true")
	assert.True(t, ok)
	assert.True(t, b)
	b, ok = f.GetBool("t.bool.false")
	assert.True(t, ok)
	assert.False(t, b)
	_, ok = f.GetBool("t.uint8")
	assert.False(t, ok)

	ss, ok := f.GetStrings("t.arr.string")
	assert.True(t, ok)
	assert.Equal(t, []string{"<unk>", "<s>", "", "▁the"}, ss)
	_, ok = f.GetStrings("t.string")
	assert.False(t, ok)

	fs, ok := f.GetFloat32s("t.arr.float32")
	assert.True(t, ok)
	assert.Equal(t, []float32{-1, 0.25, float32(math.Inf(1))}, fs)
	fs, ok = f.GetFloat32s("t.arr.float64")
	assert.True(t, ok)
	assert.Equal(t, []float32{float32(math.SmallestNonzeroFloat64), -2}, fs)
	_, ok = f.GetFloat32s("t.arr.int32")
	assert.False(t, ok)

	is, ok := f.GetInt32s("t.arr.int32")
	assert.True(t, ok)
	assert.Equal(t, []int32{math.MinInt32, 0, math.MaxInt32}, is)
	is, ok = f.GetInt32s("t.arr.uint8.small")
	assert.True(t, ok)
	assert.Equal(t, []int32{1, 2}, is)
	is, ok = f.GetInt32s("t.arr.int16")
	assert.True(t, ok)
	assert.Equal(t, []int32{-32768, 32767}, is)
	for _, key := range []string{"t.arr.uint32", "t.arr.int64.big", "t.arr.uint64", "t.arr.float32", "t.int32"} {
		_, ok = f.GetInt32s(key)
		assert.False(t, ok, "GetInt32s(%s): values do not fit or are not integers", key)
	}

	nv, ok := f.Get("t.arr.nested")
	require.True(t, ok)
	assert.Equal(t, Array, nv.Type())
	assert.Equal(t, Array, nv.ElemType())
	assert.Equal(t, 3, nv.Len())
	elems, ok := nv.Any().([]Value)
	require.True(t, ok)
	assert.Equal(t, []int32{1, -2, 3}, elems[0].Any())
	assert.Equal(t, String, elems[1].ElemType())
	assert.Equal(t, `[[1 -2 3] ["a" "" "ü"] []]`, nv.String())
}

func TestWriterErrors(t *testing.T) {
	good := []byte{1, 2, 3, 4}
	cases := []struct {
		name string
		do   func(w *Writer) error
		want string
	}{
		{"unsupported value type", func(w *Writer) error { return w.Set("k", struct{}{}) }, "cannot store"},
		{"[]int", func(w *Writer) error { return w.Set("k", []int{1}) }, "cannot store"},
		{"nil value", func(w *Writer) error { return w.Set("k", nil) }, "nil"},
		{"zero Value", func(w *Writer) error { return w.Set("k", Value{}) }, "empty Value"},
		{"nested non-array", func(w *Writer) error {
			v, _ := ValueOf(uint8(1))
			return w.Set("k", []Value{v})
		}, "not an array"},
		{"duplicate key", func(w *Writer) error {
			_ = w.Set("k", uint8(1))
			return w.Set("k", uint8(2))
		}, "set twice"},
		{"empty key", func(w *Writer) error { return w.Set("", uint8(1)) }, "empty"},
		{"bad alignment key", func(w *Writer) error { return w.Set(alignmentKey, uint32(48)) }, "power of two"},
		{"signed alignment key", func(w *Writer) error { return w.Set(alignmentKey, int32(64)) }, "not an unsigned"},
		{"wrong data size", func(w *Writer) error { return w.AddTensor("t", ggml.F32, []uint64{2}, good[:3]) }, "3 bytes"},
		{"duplicate tensor", func(w *Writer) error {
			_ = w.AddTensor("t", ggml.F32, []uint64{1}, good)
			return w.AddTensor("t", ggml.F32, []uint64{1}, good)
		}, "added twice"},
		{"long name", func(w *Writer) error {
			return w.AddTensor(string(bytes.Repeat([]byte("x"), 64)), ggml.F32, []uint64{1}, good)
		}, "longer than 63"},
		{"empty name", func(w *Writer) error { return w.AddTensor("", ggml.F32, []uint64{1}, good) }, "empty"},
		{"unknown type", func(w *Writer) error { return w.AddTensor("t", ggml.Type(99), []uint64{1}, good) }, "unknown tensor type"},
		{"zero dim", func(w *Writer) error { return w.AddTensor("t", ggml.F32, []uint64{1, 0}, nil) }, "dimension 1 is 0"},
		{"five dims", func(w *Writer) error { return w.AddTensor("t", ggml.F32, []uint64{1, 1, 1, 1, 1}, good) }, "5 dimensions"},
		{"no dims", func(w *Writer) error { return w.AddTensor("t", ggml.F32, nil, nil) }, "0 dimensions"},
		{"partial block", func(w *Writer) error { return w.AddTensor("t", ggml.Q8_0, []uint64{16}, nil) }, "block size"},
		{"overflow", func(w *Writer) error {
			return w.AddTensor("t", ggml.F32, []uint64{1 << 32, 1 << 32}, nil)
		}, "2^63"},
		{"nil func", func(w *Writer) error { return w.AddTensorFunc("t", ggml.F32, []uint64{1}, nil) }, "nil write"},
		{"F32 count", func(w *Writer) error { return w.AddTensorF32("t", ggml.F32, []uint64{2}, []float32{1}) }, "1 values"},
		{"func short", func(w *Writer) error {
			_ = w.AddTensorFunc("t", ggml.F32, []uint64{2}, func(out io.Writer) error {
				_, err := out.Write(good)
				return err
			})
			_, err := w.WriteTo(io.Discard)
			return err
		}, "wrote 4 of its 8 bytes"},
		{"func long", func(w *Writer) error {
			_ = w.AddTensorFunc("t", ggml.F32, []uint64{1}, func(out io.Writer) error {
				_, err := out.Write(append(good, good...))
				return err
			})
			_, err := w.WriteTo(io.Discard)
			return err
		}, "more bytes than the tensor's size"},
		{"func error", func(w *Writer) error {
			_ = w.AddTensorFunc("t", ggml.F32, []uint64{1}, func(io.Writer) error { return errors.New("boom") })
			_, err := w.WriteTo(io.Discard)
			return err
		}, "boom"},
		{"version 1", func(w *Writer) error {
			w.Version = 1
			_, err := w.WriteTo(io.Discard)
			return err
		}, "version 1"},
		{"alignment 48", func(w *Writer) error {
			w.Alignment = 48
			_, err := w.WriteTo(io.Discard)
			return err
		}, "power of two"},
		{"alignment disagrees", func(w *Writer) error {
			w.Alignment = 64
			_ = w.Set(alignmentKey, uint32(16))
			_, err := w.WriteTo(io.Discard)
			return err
		}, "disagrees"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do(&Writer{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestWriterAlignmentFromKey(t *testing.T) {
	w := &Writer{}
	require.NoError(t, w.Set(alignmentKey, uint64(128)))
	require.NoError(t, w.AddTensor("a", ggml.F32, []uint64{3}, make([]byte, 12)))
	require.NoError(t, w.AddTensor("b", ggml.F32, []uint64{1}, make([]byte, 4)))
	var buf bytes.Buffer
	_, err := w.WriteTo(&buf)
	require.NoError(t, err)
	f, err := Parse(buf.Bytes())
	require.NoError(t, err)
	assert.Equal(t, uint64(128), f.Alignment)
	assert.Len(t, f.KV, 1, "general.alignment is not written twice")
	assert.Equal(t, uint64(128), f.Tensors[1].Offset)
	assert.Equal(t, f.DataOffset+256, f.Size, "the last tensor is padded too")
}

func TestAddTensorF32(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	values := make([]float32, 256*2)
	for i := range values {
		values[i] = r.Float32()*2 - 1
	}
	values[5] = 1e-8
	cases := []struct {
		typ ggml.Type
		tol float32 // largest error after decoding, for values in [-1, 1]
	}{
		{ggml.F32, 0},
		{ggml.F16, 1.0 / 2048},
		{ggml.BF16, 1.0 / 128},
		{ggml.Q8_0, 1.0 / 127},
		{ggml.Q6_K, 1.0 / 16},
		{ggml.Q4_K, 1.0 / 4},
	}
	for _, tc := range cases {
		t.Run(tc.typ.String(), func(t *testing.T) {
			w := &Writer{}
			require.NoError(t, w.AddTensorF32("x", tc.typ, []uint64{256, 2}, values))
			var buf bytes.Buffer
			_, err := w.WriteTo(&buf)
			require.NoError(t, err)
			f, err := Parse(buf.Bytes())
			require.NoError(t, err)
			ti, ok := f.Tensor("x")
			require.True(t, ok)
			assert.Equal(t, tc.typ, ti.Type)
			want, err := ggml.Quantize(tc.typ, values)
			require.NoError(t, err)
			assert.Equal(t, want, f.TensorData(ti))

			got := make([]float32, len(values))
			require.NoError(t, ggml.Dequantize(tc.typ, f.TensorData(ti), got))
			for i, v := range values {
				assert.InDelta(t, v, got[i], float64(tc.tol)+1e-9, "element %d", i)
			}
		})
	}
	w := &Writer{}
	assert.Error(t, w.AddTensorF32("iq", ggml.IQ2_XXS, []uint64{256}, values[:256]), "no encoder for IQ2_XXS")
	assert.Empty(t, w.tensors)
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.gguf")
	w := &Writer{}
	require.NoError(t, w.Set("general.architecture", "llama"))
	require.NoError(t, w.AddTensor("a", ggml.F32, []uint64{1}, []byte{0, 0, 128, 63}))
	require.NoError(t, w.WriteFile(path))
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left behind")

	f, err := Open(path)
	require.NoError(t, err)
	defer f.Close()
	ti, ok := f.Tensor("a")
	require.True(t, ok)
	assert.Equal(t, []byte{0, 0, 128, 63}, f.TensorData(ti))

	// A failing write leaves the old file in place and no temporary file.
	bad := &Writer{}
	require.NoError(t, bad.AddTensorFunc("a", ggml.F32, []uint64{1}, func(io.Writer) error { return errors.New("boom") }))
	require.Error(t, bad.WriteFile(path))
	entries, err = os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1)
	_, err = ReadInfo(path)
	assert.NoError(t, err)
}
