// Package gguf reads and writes GGUF files, the format llama.cpp stores models
// in: a header, typed metadata (key/value pairs) and tensor infos, followed by
// aligned tensor data.
//
// [Open] memory-maps a file and parses it; tensor data is then used in place
// ([File.TensorData] returns a slice of the mapping) until [File.Close]. [Parse]
// does the same over bytes in memory. [ReadInfo] and [File.ModelInfo] summarize
// a model's metadata for the pool daemon's RAM preflight and catalog. A
// [Writer] builds files, streaming tensor data.
//
// Versions 2 and 3 (little-endian) are read; version 1 and big-endian files are
// refused with [ErrVersion]. Every count and length in a file is checked against
// the bytes that remain before anything is allocated for it, so a corrupt or
// hostile file yields a [*FormatError] rather than a panic or a huge
// allocation.
package gguf

import (
	"math"
	"sync"

	"rbee/internal/ggml"
)

// File is a parsed GGUF file. Its exported fields describe the file; metadata
// is held on the heap, tensor data stays in the mapping (or the bytes given to
// [Parse]).
//
// A File is safe for concurrent use by readers; Close must not run concurrently
// with other methods.
type File struct {
	Path       string       // the file's path; "" for Parse
	Version    uint32       // 2 or 3
	Alignment  uint64       // alignment of tensor data (general.alignment, default 32)
	KV         []KV         // metadata in file order
	Tensors    []TensorInfo // tensor infos in file order
	DataOffset int64        // file offset where tensor data starts
	Size       int64        // file size in bytes

	data        []byte       // the whole file: mapping or Parse's bytes
	unmap       func() error // releases the mapping; nil when there is none
	closeOnce   sync.Once
	closeErr    error
	kvIndex     map[string]int
	tensorIndex map[string]int
}

// KV is one metadata entry.
type KV struct {
	Key   string
	Value Value
}

// TensorInfo describes one tensor.
type TensorInfo struct {
	Name   string
	Shape  []uint64  // ggml order: Shape[0] is the row length (contiguous dimension)
	Type   ggml.Type // encoding; may be known but not supported by the engine
	Offset uint64    // of the data, relative to File.DataOffset
	Size   int64     // bytes: Type.RowSize(Shape[0]) * Rows()
}

// Elements returns the number of elements of the tensor.
func (t *TensorInfo) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// Rows returns the number of rows: the product of Shape[1:] (1 for a vector).
func (t *TensorInfo) Rows() int64 {
	n := int64(1)
	for _, d := range t.Shape[min(1, len(t.Shape)):] {
		n *= int64(d)
	}
	return n
}

// Close releases the mapping. TensorData slices must not be used afterwards.
// Close is idempotent; metadata stays readable after it.
func (f *File) Close() error {
	f.closeOnce.Do(func() {
		if f.unmap != nil {
			f.closeErr = f.unmap()
		}
		f.data = nil
	})
	return f.closeErr
}

// Tensor returns the info of the tensor called name.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	i, ok := f.tensorIndex[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// TensorData returns the bytes of tensor t, a slice of the mapping (or of the
// bytes given to Parse), valid until Close. The bytes are read-only: writing to
// a mapped file's slice faults. It returns nil after Close, or when t does not
// lie inside the file.
func (f *File) TensorData(t *TensorInfo) []byte {
	if t == nil || t.Size < 0 || f.DataOffset < 0 {
		return nil
	}
	start := uint64(f.DataOffset) + t.Offset
	end := start + uint64(t.Size)
	if start < t.Offset || end < start || end > uint64(len(f.data)) {
		return nil
	}
	return f.data[start:end:end]
}

// Get returns the metadata value of key.
func (f *File) Get(key string) (Value, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return Value{}, false
	}
	return f.KV[i].Value, true
}

// GetString returns the string value of key.
func (f *File) GetString(key string) (string, bool) {
	v, _ := f.Get(key)
	s, ok := v.Any().(string)
	return s, ok
}

// GetUint returns the value of key when it is an integer of any type holding a
// non-negative value.
func (f *File) GetUint(key string) (uint64, bool) {
	v, _ := f.Get(key)
	return asUint(v.Any())
}

// GetInt returns the value of key when it is an integer of any type that fits
// an int64.
func (f *File) GetInt(key string) (int64, bool) {
	v, _ := f.Get(key)
	return asInt(v.Any())
}

// GetFloat returns the value of key when it is a float32, a float64 or an
// integer.
func (f *File) GetFloat(key string) (float64, bool) {
	v, _ := f.Get(key)
	switch x := v.Any().(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	case uint64:
		return float64(x), true
	}
	if i, ok := asInt(v.Any()); ok {
		return float64(i), true
	}
	return 0, false
}

// GetBool returns the value of key when it is a bool.
func (f *File) GetBool(key string) (bool, bool) {
	v, _ := f.Get(key)
	b, ok := v.Any().(bool)
	return b, ok
}

// GetStrings returns the value of key when it is an array of strings. The slice
// is shared: do not modify it.
func (f *File) GetStrings(key string) ([]string, bool) {
	v, _ := f.Get(key)
	s, ok := v.Any().([]string)
	return s, ok
}

// GetFloat32s returns the value of key when it is an array of float32 (shared:
// do not modify it), or an array of float64 (converted).
func (f *File) GetFloat32s(key string) ([]float32, bool) {
	v, _ := f.Get(key)
	switch x := v.Any().(type) {
	case []float32:
		return x, true
	case []float64:
		s := make([]float32, len(x))
		for i, e := range x {
			s[i] = float32(e)
		}
		return s, true
	}
	return nil, false
}

// GetInt32s returns the value of key when it is an array of int32 (shared: do
// not modify it), or an array of another integer type whose values all fit an
// int32 (converted).
func (f *File) GetInt32s(key string) ([]int32, bool) {
	v, _ := f.Get(key)
	switch x := v.Any().(type) {
	case []int32:
		return x, true
	case []uint8:
		return convertInts(x)
	case []int8:
		return convertInts(x)
	case []uint16:
		return convertInts(x)
	case []int16:
		return convertInts(x)
	case []uint32:
		return convertInts(x)
	case []uint64:
		return convertInts(x)
	case []int64:
		return convertInts(x)
	}
	return nil, false
}

type integer interface {
	~uint8 | ~int8 | ~uint16 | ~int16 | ~uint32 | ~int32 | ~uint64 | ~int64
}

func convertInts[T integer](s []T) ([]int32, bool) {
	out := make([]int32, len(s))
	for i, e := range s {
		if int64(e) < math.MinInt32 || (e > 0 && uint64(e) > math.MaxInt32) {
			return nil, false
		}
		out[i] = int32(e)
	}
	return out, true
}

func asUint(x any) (uint64, bool) {
	if u, ok := x.(uint64); ok {
		return u, true
	}
	i, ok := asInt(x)
	if !ok || i < 0 {
		return 0, false
	}
	return uint64(i), true
}

func asInt(x any) (int64, bool) {
	switch x := x.(type) {
	case uint8:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	}
	return 0, false
}
