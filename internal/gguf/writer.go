package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"unicode/utf8"

	"rbee/internal/ggml"
)

// Writer builds a GGUF file: metadata set with Set, tensors added with the
// AddTensor methods, then WriteTo or WriteFile. Tensor data given as bytes is
// kept by reference (do not change it before writing); data given as a function
// is streamed when the file is written, so files larger than memory can be
// built. The zero Writer is ready to use. A Writer is not safe for concurrent
// use.
type Writer struct {
	// Version is the GGUF version written: 2 or 3 (0 means 3). Both have the
	// same layout.
	Version uint32
	// Alignment is the alignment of tensor data, a power of two. 0 means the
	// value of a general.alignment key given to Set, else 32.
	// general.alignment is written (as a uint32, after the other metadata)
	// when the alignment is not 32 and was not set.
	Alignment uint64

	kv          []KV
	kvIndex     map[string]int
	tensors     []wtensor
	tensorIndex map[string]int
}

type wtensor struct {
	info  TensorInfo
	data  []byte                // the bytes, or nil when write is set
	write func(io.Writer) error // streams the bytes at WriteTo
}

// Set adds the metadata entry key = value. value may be any type [ValueOf]
// accepts (sized integers, floats, bool, string, slices of those, a Value, or
// []Value for an array of arrays; a Go int is stored as uint32 when it fits).
// Set fails for other types, an empty or non-UTF-8 key, or a key already set.
func (w *Writer) Set(key string, value any) error {
	if key == "" || !utf8.ValidString(key) {
		return fmt.Errorf("gguf: metadata key %q is empty or not UTF-8", key)
	}
	if _, dup := w.kvIndex[key]; dup {
		return fmt.Errorf("gguf: metadata key %q set twice", key)
	}
	v, err := ValueOf(value)
	if err != nil {
		return fmt.Errorf("gguf: metadata key %q: %w", key, err)
	}
	if key == alignmentKey {
		if _, err := alignmentOf(v); err != nil {
			return fmt.Errorf("gguf: %w", err)
		}
	}
	if w.kvIndex == nil {
		w.kvIndex = map[string]int{}
	}
	w.kvIndex[key] = len(w.kv)
	w.kv = append(w.kv, KV{Key: key, Value: v})
	return nil
}

// AddTensor adds a tensor whose encoded bytes are data; len(data) must be the
// size of the shape in type typ. data is kept, not copied, until WriteTo.
func (w *Writer) AddTensor(name string, typ ggml.Type, shape []uint64, data []byte) error {
	info, err := w.newTensor(name, typ, shape)
	if err != nil {
		return err
	}
	if int64(len(data)) != info.Size {
		return fmt.Errorf("gguf: tensor %q: %d bytes of data for a %s %v tensor of %d bytes",
			name, len(data), typ, shape, info.Size)
	}
	if data == nil {
		data = []byte{}
	}
	w.addTensor(wtensor{info: info, data: data})
	return nil
}

// AddTensorFunc adds a tensor whose bytes write produces when the file is
// written. write must write exactly the tensor's size in bytes; more or fewer
// fail WriteTo.
func (w *Writer) AddTensorFunc(name string, typ ggml.Type, shape []uint64, write func(io.Writer) error) error {
	if write == nil {
		return fmt.Errorf("gguf: tensor %q: nil write function", name)
	}
	info, err := w.newTensor(name, typ, shape)
	if err != nil {
		return err
	}
	w.addTensor(wtensor{info: info, write: write})
	return nil
}

// AddTensorF32 adds a tensor given as float32 values (as many as the shape has
// elements), encoding them in type typ now with [ggml.Quantize] (F32, F16,
// BF16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K, Q8_K). Only the encoded bytes are kept.
func (w *Writer) AddTensorF32(name string, typ ggml.Type, shape []uint64, values []float32) error {
	info, err := w.newTensor(name, typ, shape)
	if err != nil {
		return err
	}
	if int64(len(values)) != info.Elements() {
		return fmt.Errorf("gguf: tensor %q: %d values for a %v tensor of %d elements",
			name, len(values), shape, info.Elements())
	}
	data, err := ggml.Quantize(typ, values)
	if err != nil {
		return fmt.Errorf("gguf: tensor %q: %w", name, err)
	}
	if int64(len(data)) != info.Size {
		return fmt.Errorf("gguf: tensor %q: encoding gave %d bytes, want %d", name, len(data), info.Size)
	}
	w.addTensor(wtensor{info: info, data: data})
	return nil
}

// newTensor validates a tensor's name, type and shape and returns its info.
func (w *Writer) newTensor(name string, typ ggml.Type, shape []uint64) (TensorInfo, error) {
	if name == "" || len(name) > maxNameLen || !utf8.ValidString(name) {
		return TensorInfo{}, fmt.Errorf("gguf: tensor name %q is empty, longer than %d bytes or not UTF-8", name, maxNameLen)
	}
	if _, dup := w.tensorIndex[name]; dup {
		return TensorInfo{}, fmt.Errorf("gguf: tensor %q added twice", name)
	}
	if !typ.Known() {
		return TensorInfo{}, fmt.Errorf("gguf: tensor %q: unknown tensor type %s", name, typ)
	}
	size, msg := tensorSize(typ, shape)
	if msg != "" {
		return TensorInfo{}, fmt.Errorf("gguf: tensor %q: %s", name, msg)
	}
	return TensorInfo{Name: name, Shape: append([]uint64(nil), shape...), Type: typ, Size: size}, nil
}

func (w *Writer) addTensor(t wtensor) {
	if w.tensorIndex == nil {
		w.tensorIndex = map[string]int{}
	}
	w.tensorIndex[t.info.Name] = len(w.tensors)
	w.tensors = append(w.tensors, t)
}

// layout returns the version and alignment to write and the metadata,
// including general.alignment when it must be added.
func (w *Writer) layout() (uint32, uint64, []KV, error) {
	version := w.Version
	if version == 0 {
		version = 3
	}
	if version != 2 && version != 3 {
		return 0, 0, nil, fmt.Errorf("gguf: cannot write version %d (only 2 and 3)", version)
	}
	kvs := w.kv
	set, hasSet := uint64(0), false
	if i, ok := w.kvIndex[alignmentKey]; ok {
		set, _ = alignmentOf(w.kv[i].Value) // checked by Set
		hasSet = true
	}
	align := w.Alignment
	switch {
	case align == 0 && hasSet:
		align = set
	case align == 0:
		align = defaultAlign
	case align&(align-1) != 0 || align > maxAlignment:
		return 0, 0, nil, fmt.Errorf("gguf: alignment %d is not a power of two up to %d", align, maxAlignment)
	case hasSet && set != align:
		return 0, 0, nil, fmt.Errorf("gguf: alignment %d disagrees with %s = %d", align, alignmentKey, set)
	}
	if !hasSet && align != defaultAlign {
		kvs = append(kvs[:len(kvs):len(kvs)], KV{Key: alignmentKey, Value: Value{typ: Uint32, x: uint32(align)}})
	}
	return version, align, kvs, nil
}

// WriteTo writes the file to out and returns the number of bytes written.
// Tensor data functions run in the order the tensors were added.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	version, align, kvs, err := w.layout()
	if err != nil {
		return 0, err
	}

	// Header, metadata and tensor infos, with data offsets packed in order.
	le := binary.LittleEndian
	head := []byte(magic)
	head = le.AppendUint32(head, version)
	head = le.AppendUint64(head, uint64(len(w.tensors)))
	head = le.AppendUint64(head, uint64(len(kvs)))
	for _, kv := range kvs {
		head = appendString(head, kv.Key)
		head = le.AppendUint32(head, uint32(kv.Value.typ))
		head = appendValue(head, kv.Value)
	}
	offsets := make([]uint64, len(w.tensors))
	var off uint64
	for i := range w.tensors {
		t := &w.tensors[i].info
		offsets[i] = off
		head = appendString(head, t.Name)
		head = le.AppendUint32(head, uint32(len(t.Shape)))
		for _, d := range t.Shape {
			head = le.AppendUint64(head, d)
		}
		head = le.AppendUint32(head, uint32(t.Type))
		head = le.AppendUint64(head, off)
		var ok bool
		if off, ok = alignUp(off+uint64(t.Size), align); !ok {
			return 0, fmt.Errorf("gguf: tensor data larger than 2^63 bytes")
		}
	}
	dataOff, _ := alignUp(uint64(len(head)), align)
	head = append(head, make([]byte, dataOff-uint64(len(head)))...)

	cw := &countWriter{w: out}
	bw := bufio.NewWriterSize(cw, 1<<20)
	if _, err := bw.Write(head); err != nil {
		return cw.n, err
	}
	zeros := make([]byte, min(align, 4096))
	for i := range w.tensors {
		t := &w.tensors[i]
		if t.data != nil {
			if _, err := bw.Write(t.data); err != nil {
				return cw.n, err
			}
		} else {
			ew := &exactWriter{w: bw, left: t.info.Size}
			if err := t.write(ew); err != nil {
				if ew.err != nil {
					return cw.n, fmt.Errorf("gguf: writing tensor %q: %w", t.info.Name, ew.err)
				}
				return cw.n, fmt.Errorf("gguf: writing tensor %q: %w", t.info.Name, err)
			}
			if ew.err != nil {
				return cw.n, fmt.Errorf("gguf: writing tensor %q: %w", t.info.Name, ew.err)
			}
			if ew.left != 0 {
				return cw.n, fmt.Errorf("gguf: writing tensor %q: wrote %d of its %d bytes",
					t.info.Name, t.info.Size-ew.left, t.info.Size)
			}
		}
		pad := int64(-uint64(t.info.Size) & (align - 1))
		for pad > 0 {
			n := min(pad, int64(len(zeros)))
			if _, err := bw.Write(zeros[:n]); err != nil {
				return cw.n, err
			}
			pad -= n
		}
	}
	if err := bw.Flush(); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

// WriteFile writes the file to path atomically: to a temporary file in the same
// folder, synced, then renamed over path, with mode 0644.
func (w *Writer) WriteFile(path string) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := w.WriteTo(tmp); err != nil {
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	// Make the rename durable where directories can be synced.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// errTooMuch is what a tensor's write function gets when it writes past the
// tensor's size.
var errTooMuch = errors.New("more bytes than the tensor's size")

// exactWriter passes through at most left bytes.
type exactWriter struct {
	w    io.Writer
	left int64
	err  error
}

func (e *exactWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	if int64(len(p)) > e.left {
		e.err = errTooMuch
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.left -= int64(n)
	if err != nil {
		e.err = err
	}
	return n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

// appendValue appends the encoding of v without its type tag.
func appendValue(b []byte, v Value) []byte {
	le := binary.LittleEndian
	switch x := v.x.(type) {
	case uint8:
		return append(b, x)
	case int8:
		return append(b, byte(x))
	case bool:
		if x {
			return append(b, 1)
		}
		return append(b, 0)
	case uint16:
		return le.AppendUint16(b, x)
	case int16:
		return le.AppendUint16(b, uint16(x))
	case uint32:
		return le.AppendUint32(b, x)
	case int32:
		return le.AppendUint32(b, uint32(x))
	case float32:
		return le.AppendUint32(b, math.Float32bits(x))
	case uint64:
		return le.AppendUint64(b, x)
	case int64:
		return le.AppendUint64(b, uint64(x))
	case float64:
		return le.AppendUint64(b, math.Float64bits(x))
	case string:
		return appendString(b, x)
	}
	// An array: element type, count, elements.
	b = le.AppendUint32(b, uint32(v.elem))
	b = le.AppendUint64(b, uint64(v.Len()))
	switch x := v.x.(type) {
	case []uint8:
		return append(b, x...)
	case []int8:
		return appendEach(b, x, func(b []byte, e int8) []byte { return append(b, byte(e)) })
	case []bool:
		return appendEach(b, x, func(b []byte, e bool) []byte {
			if e {
				return append(b, 1)
			}
			return append(b, 0)
		})
	case []uint16:
		return appendEach(b, x, le.AppendUint16)
	case []int16:
		return appendEach(b, x, func(b []byte, e int16) []byte { return le.AppendUint16(b, uint16(e)) })
	case []uint32:
		return appendEach(b, x, le.AppendUint32)
	case []int32:
		return appendEach(b, x, func(b []byte, e int32) []byte { return le.AppendUint32(b, uint32(e)) })
	case []float32:
		return appendEach(b, x, func(b []byte, e float32) []byte { return le.AppendUint32(b, math.Float32bits(e)) })
	case []uint64:
		return appendEach(b, x, le.AppendUint64)
	case []int64:
		return appendEach(b, x, func(b []byte, e int64) []byte { return le.AppendUint64(b, uint64(e)) })
	case []float64:
		return appendEach(b, x, func(b []byte, e float64) []byte { return le.AppendUint64(b, math.Float64bits(e)) })
	case []string:
		return appendEach(b, x, appendString)
	case []Value:
		return appendEach(b, x, appendValue)
	}
	return b
}

func appendEach[T any](b []byte, s []T, f func([]byte, T) []byte) []byte {
	for _, e := range s {
		b = f(b, e)
	}
	return b
}
