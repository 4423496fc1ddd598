package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
	"unicode/utf8"

	"rbee/internal/ggml"
)

// Limits on what a file may declare. They are far above what real models use and
// keep a hostile header from making the reader allocate or loop without end.
const (
	maxTensors    = 1 << 20 // tensor infos in one file
	maxKV         = 1 << 20 // metadata entries in one file
	maxArrayLen   = 1 << 32 // elements of one metadata array
	maxStringLen  = 1 << 32 // bytes of one string
	maxDims       = 4       // dimensions of a tensor (GGML_MAX_DIMS)
	maxNameLen    = 63      // bytes of a tensor name (GGML_MAX_NAME is 64 with the NUL)
	maxAlignment  = 1 << 24 // largest general.alignment accepted
	defaultAlign  = 32      // general.alignment when the key is absent
	alignmentKey  = "general.alignment"
	magic         = "GGUF"
	minKVSize     = 8 + 4 + 1     // key length, value type, one value byte
	minTensorSize = 8 + 4 + 4 + 8 // name length, n_dims, type, offset
)

// parser reads the header, metadata and tensor infos of a GGUF file from memory.
type parser struct {
	data []byte
	off  int
	path string
}

func (p *parser) left() int { return len(p.data) - p.off }

func (p *parser) fail(off int, err error, format string, args ...any) *FormatError {
	return &FormatError{Path: p.path, Offset: int64(off), Err: err, What: fmt.Sprintf(format, args...)}
}

func (p *parser) u32() (uint32, bool) {
	if p.left() < 4 {
		return 0, false
	}
	v := binary.LittleEndian.Uint32(p.data[p.off:])
	p.off += 4
	return v, true
}

func (p *parser) u64() (uint64, bool) {
	if p.left() < 8 {
		return 0, false
	}
	v := binary.LittleEndian.Uint64(p.data[p.off:])
	p.off += 8
	return v, true
}

// strBytes reads a length-prefixed string and returns its bytes, aliasing the
// input. what describes the string for errors.
func (p *parser) strBytes(what func() string) ([]byte, *FormatError) {
	start := p.off
	n, ok := p.u64()
	if !ok {
		return nil, p.fail(start, ErrTruncated, "%s", what())
	}
	if n > maxStringLen {
		return nil, p.fail(start, ErrCorrupt, "%s: length %d is absurd", what(), n)
	}
	if n > uint64(p.left()) {
		return nil, p.fail(start, ErrTruncated, "%s (%d bytes)", what(), n)
	}
	b := p.data[p.off : p.off+int(n) : p.off+int(n)]
	p.off += int(n)
	return b, nil
}

// Parse parses a GGUF file held in memory. The tensor data of the returned File
// aliases data: it is not copied, and data must stay unchanged while the File is
// used. Metadata is copied, so it stays valid after data is gone.
func Parse(data []byte) (*File, error) {
	f, err := parse(data, "")
	if err != nil {
		return nil, err
	}
	return f, nil
}

// parse returns a *FormatError as its error (never a typed nil).
func parse(data []byte, path string) (*File, error) {
	p := &parser{data: data, path: path}
	f := &File{Path: path, Size: int64(len(data)), data: data}

	// Header: magic, version, tensor count, metadata count.
	if len(data) < 4 {
		if strings.HasPrefix(magic, string(data)) {
			return nil, p.fail(0, ErrTruncated, "the magic (file is %d bytes)", len(data))
		}
		return nil, p.fail(0, ErrNotGGUF, "magic %q", data)
	}
	if string(data[:4]) != magic {
		return nil, p.fail(0, ErrNotGGUF, "magic %q", data[:4])
	}
	p.off = 4
	version, ok := p.u32()
	if !ok {
		return nil, p.fail(4, ErrTruncated, "the version")
	}
	switch {
	case version == 2 || version == 3:
	case version == 1:
		return nil, p.fail(4, ErrVersion, "version 1 (GGUF v1 uses 32-bit counts; only versions 2 and 3 are read)")
	case version&0xffff == 0 && bits.ReverseBytes32(version) >= 1 && bits.ReverseBytes32(version) <= 3:
		return nil, p.fail(4, ErrVersion, "version reads as %#x: a big-endian GGUF file (version %d); only little-endian files are read",
			version, bits.ReverseBytes32(version))
	default:
		return nil, p.fail(4, ErrVersion, "version %d (only versions 2 and 3 are read)", version)
	}
	f.Version = version
	nTensors, ok := p.u64()
	if !ok {
		return nil, p.fail(8, ErrTruncated, "the tensor count")
	}
	nKV, ok := p.u64()
	if !ok {
		return nil, p.fail(16, ErrTruncated, "the metadata count")
	}
	if nTensors > maxTensors {
		return nil, p.fail(8, ErrCorrupt, "tensor count %d is absurd (limit %d)", nTensors, maxTensors)
	}
	if nKV > maxKV {
		return nil, p.fail(16, ErrCorrupt, "metadata count %d is absurd (limit %d)", nKV, maxKV)
	}
	if need := nTensors*minTensorSize + nKV*minKVSize; need > uint64(p.left()) {
		return nil, p.fail(p.off, ErrTruncated, "%d metadata entries and %d tensor infos (at least %d bytes; %d left)",
			nKV, nTensors, need, p.left())
	}

	// Metadata.
	f.KV = make([]KV, 0, nKV)
	f.kvIndex = make(map[string]int, nKV)
	alignOff := 0 // where general.alignment is, for errors
	for i := range int(nKV) {
		start := p.off
		kb, err := p.strBytes(func() string { return fmt.Sprintf("metadata key %d", i) })
		if err != nil {
			return nil, err
		}
		if len(kb) == 0 || !utf8.Valid(kb) {
			return nil, p.fail(start, ErrCorrupt, "metadata key %d (%q) is empty or not UTF-8", i, kb)
		}
		key := string(kb)
		if key == alignmentKey {
			alignOff = start
		}
		if j, dup := f.kvIndex[key]; dup {
			return nil, p.fail(start, ErrCorrupt, "metadata key %d (%q) repeats key %d", i, key, j)
		}
		what := func() string { return fmt.Sprintf("metadata value %d (%q)", i, key) }
		typeOff := p.off
		t, ok := p.u32()
		if !ok {
			return nil, p.fail(typeOff, ErrTruncated, "the type of %s", what())
		}
		v, err := p.value(ValueType(t), typeOff, 0, what)
		if err != nil {
			return nil, err
		}
		f.kvIndex[key] = i
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}

	// Alignment.
	f.Alignment = defaultAlign
	if v, ok := f.Get(alignmentKey); ok {
		a, err := alignmentOf(v)
		if err != nil {
			return nil, p.fail(alignOff, ErrCorrupt, "%s", err)
		}
		f.Alignment = a
	}

	// Tensor infos.
	f.Tensors = make([]TensorInfo, nTensors)
	f.tensorIndex = make(map[string]int, nTensors)
	starts := make([]int, nTensors)
	for i := range f.Tensors {
		starts[i] = p.off
		if err := p.tensorInfo(f, i); err != nil {
			return nil, err
		}
	}

	// Tensor data: aligned, inside the file, not overlapping.
	dataOff, ok := alignUp(uint64(p.off), f.Alignment)
	if !ok {
		return nil, p.fail(p.off, ErrCorrupt, "data section start overflows")
	}
	f.DataOffset = int64(dataOff)
	if len(f.Tensors) == 0 {
		return f, nil
	}
	if dataOff > uint64(len(data)) {
		return nil, p.fail(p.off, ErrTruncated, "the padding before the tensor data (data starts at byte %d; file is %d bytes)",
			dataOff, len(data))
	}
	dataLen := uint64(len(data)) - dataOff
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Offset%f.Alignment != 0 {
			return nil, p.fail(starts[i], ErrCorrupt, "tensor %d (%q): data offset %d is not a multiple of the alignment %d",
				i, t.Name, t.Offset, f.Alignment)
		}
		end, carry := bits.Add64(t.Offset, uint64(t.Size), 0)
		if carry != 0 || end > math.MaxInt64-dataOff {
			return nil, p.fail(starts[i], ErrCorrupt, "tensor %d (%q): data offset %d is out of range", i, t.Name, t.Offset)
		}
		if end > dataLen {
			return nil, p.fail(int(min(dataOff+t.Offset, uint64(len(data)))), ErrTruncated,
				"tensor data %d (%q): it ends at byte %d, past the end of the file (%d bytes)",
				i, t.Name, dataOff+end, len(data))
		}
	}
	order := make([]int, len(f.Tensors))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		oa, ob := f.Tensors[a].Offset, f.Tensors[b].Offset
		switch {
		case oa < ob:
			return -1
		case oa > ob:
			return 1
		}
		return a - b
	})
	for k := 1; k < len(order); k++ {
		a, b := &f.Tensors[order[k-1]], &f.Tensors[order[k]]
		if a.Offset+uint64(a.Size) > b.Offset {
			return nil, p.fail(starts[order[k]], ErrCorrupt, "tensor data of %q [%d, %d) overlaps that of %q [%d, %d)",
				b.Name, b.Offset, b.Offset+uint64(b.Size), a.Name, a.Offset, a.Offset+uint64(a.Size))
		}
	}
	return f, nil
}

// tensorInfo reads the info of tensor i into f.Tensors[i].
func (p *parser) tensorInfo(f *File, i int) *FormatError {
	start := p.off
	nb, err := p.strBytes(func() string { return fmt.Sprintf("tensor info %d name", i) })
	if err != nil {
		return err
	}
	if len(nb) == 0 || len(nb) > maxNameLen || !utf8.Valid(nb) {
		return p.fail(start, ErrCorrupt, "tensor info %d: name %q is empty, longer than %d bytes or not UTF-8", i, nb, maxNameLen)
	}
	name := string(nb)
	if j, dup := f.tensorIndex[name]; dup {
		return p.fail(start, ErrCorrupt, "tensor info %d: name %q repeats tensor %d", i, name, j)
	}
	f.tensorIndex[name] = i
	t := &f.Tensors[i]
	t.Name = name
	at := p.off
	nDims, ok := p.u32()
	if !ok {
		return p.fail(at, ErrTruncated, "tensor info %d (%q)", i, name)
	}
	if nDims == 0 || nDims > maxDims {
		return p.fail(at, ErrCorrupt, "tensor info %d (%q): %d dimensions (must be 1 to %d)", i, name, nDims, maxDims)
	}
	t.Shape = make([]uint64, nDims)
	for d := range t.Shape {
		at = p.off
		if t.Shape[d], ok = p.u64(); !ok {
			return p.fail(at, ErrTruncated, "tensor info %d (%q)", i, name)
		}
		if t.Shape[d] == 0 {
			return p.fail(at, ErrCorrupt, "tensor info %d (%q): dimension %d is 0", i, name, d)
		}
	}
	at = p.off
	typ, ok := p.u32()
	if !ok {
		return p.fail(at, ErrTruncated, "tensor info %d (%q)", i, name)
	}
	t.Type = ggml.Type(typ)
	if !t.Type.Known() {
		return p.fail(at, ErrUnknownType, "tensor info %d (%q): tensor type %d", i, name, typ)
	}
	size, msg := tensorSize(t.Type, t.Shape)
	if msg != "" {
		return p.fail(start, ErrCorrupt, "tensor info %d (%q): %s", i, name, msg)
	}
	t.Size = size
	at = p.off
	if t.Offset, ok = p.u64(); !ok {
		return p.fail(at, ErrTruncated, "tensor info %d (%q)", i, name)
	}
	return nil
}

// tensorSize returns the byte size of a tensor, or a description of why the
// shape is invalid for the type.
func tensorSize(typ ggml.Type, shape []uint64) (int64, string) {
	if len(shape) == 0 || len(shape) > maxDims {
		return 0, fmt.Sprintf("%d dimensions (must be 1 to %d)", len(shape), maxDims)
	}
	elems := uint64(1)
	for d, n := range shape {
		if n == 0 {
			return 0, fmt.Sprintf("dimension %d is 0", d)
		}
		hi, lo := bits.Mul64(elems, n)
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Sprintf("shape %v has more than 2^63 elements", shape)
		}
		elems = lo
	}
	bs := uint64(typ.BlockSize())
	if bs == 0 {
		return 0, fmt.Sprintf("unknown tensor type %s", typ)
	}
	if shape[0]%bs != 0 {
		return 0, fmt.Sprintf("row length %d is not a multiple of %s's block size %d", shape[0], typ, bs)
	}
	hi, lo := bits.Mul64(elems/bs, uint64(typ.TypeSize()))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, fmt.Sprintf("shape %v of %s is larger than 2^63 bytes", shape, typ)
	}
	return int64(lo), ""
}

// alignmentOf checks a general.alignment value.
func alignmentOf(v Value) (uint64, error) {
	var a uint64
	switch x := v.Any().(type) {
	case uint8:
		a = uint64(x)
	case uint16:
		a = uint64(x)
	case uint32:
		a = uint64(x)
	case uint64:
		a = x
	default:
		return 0, fmt.Errorf("%s is a %s, not an unsigned integer", alignmentKey, v.Type())
	}
	if a == 0 || a&(a-1) != 0 || a > maxAlignment {
		return 0, fmt.Errorf("%s %d is not a power of two up to %d", alignmentKey, a, maxAlignment)
	}
	return a, nil
}

func alignUp(n, a uint64) (uint64, bool) {
	r, carry := bits.Add64(n, a-1, 0)
	if carry != 0 || r > math.MaxInt64 {
		return 0, false
	}
	return r &^ (a - 1), true
}

// value reads a value of type t. typeOff is the offset of the type field, for
// errors; depth counts enclosing arrays.
func (p *parser) value(t ValueType, typeOff int, depth int, what func() string) (Value, *FormatError) {
	if !t.valid() {
		return Value{}, p.fail(typeOff, ErrUnknownType, "%s: value type %d", what(), uint32(t))
	}
	start := p.off
	if t == String {
		b, err := p.strBytes(what)
		if err != nil {
			return Value{}, err
		}
		return Value{typ: String, x: string(b)}, nil
	}
	if t != Array {
		n := t.size()
		if p.left() < n {
			return Value{}, p.fail(start, ErrTruncated, "%s", what())
		}
		v := scalar(t, p.data[p.off:p.off+n])
		p.off += n
		return v, nil
	}

	if depth >= maxDepth {
		return Value{}, p.fail(typeOff, ErrCorrupt, "%s: arrays nested deeper than %d levels", what(), maxDepth)
	}
	et, ok := p.u32()
	if !ok {
		return Value{}, p.fail(start, ErrTruncated, "the element type of %s", what())
	}
	elem := ValueType(et)
	if !elem.valid() {
		return Value{}, p.fail(start, ErrUnknownType, "%s: array element type %d", what(), et)
	}
	countOff := p.off
	n, ok := p.u64()
	if !ok {
		return Value{}, p.fail(countOff, ErrTruncated, "the length of %s", what())
	}
	if n > maxArrayLen {
		return Value{}, p.fail(countOff, ErrCorrupt, "%s: array length %d is absurd", what(), n)
	}
	if n*uint64(elem.minSize()) > uint64(p.left()) {
		return Value{}, p.fail(countOff, ErrTruncated, "%s (%d elements of type %s)", what(), n, elem)
	}
	count := int(n)
	switch elem {
	case String:
		return p.stringArray(count, what)
	case Array:
		vs := make([]Value, count)
		for k := range vs {
			// Each element is an array of its own: element type, count, values.
			ewhat := func() string { return fmt.Sprintf("element %d of %s", k, what()) }
			v, err := p.value(Array, p.off, depth+1, ewhat)
			if err != nil {
				return Value{}, err
			}
			vs[k] = v
		}
		return Value{typ: Array, elem: Array, x: vs}, nil
	}
	size := elem.size()
	b := p.data[p.off : p.off+count*size]
	p.off += count * size
	return Value{typ: Array, elem: elem, x: decodeArray(elem, b, count)}, nil
}

// stringArray reads count strings into slices of one shared string, so that a
// vocabulary of 100,000 tokens costs two allocations, not 100,000.
func (p *parser) stringArray(count int, what func() string) (Value, *FormatError) {
	start := p.off
	total := 0
	for k := range count {
		b, err := p.strBytes(func() string { return fmt.Sprintf("element %d of %s", k, what()) })
		if err != nil {
			return Value{}, err
		}
		total += len(b)
	}
	var sb strings.Builder
	sb.Grow(total)
	p.off = start
	for range count {
		n := int(binary.LittleEndian.Uint64(p.data[p.off:]))
		sb.Write(p.data[p.off+8 : p.off+8+n])
		p.off += 8 + n
	}
	all := sb.String()
	ss := make([]string, count)
	pos := 0
	p.off = start
	for k := range ss {
		n := int(binary.LittleEndian.Uint64(p.data[p.off:]))
		ss[k] = all[pos : pos+n]
		pos += n
		p.off += 8 + n
	}
	return Value{typ: Array, elem: String, x: ss}, nil
}

func scalar(t ValueType, b []byte) Value {
	le := binary.LittleEndian
	var x any
	switch t {
	case Uint8:
		x = b[0]
	case Int8:
		x = int8(b[0])
	case Bool:
		x = b[0] != 0
	case Uint16:
		x = le.Uint16(b)
	case Int16:
		x = int16(le.Uint16(b))
	case Uint32:
		x = le.Uint32(b)
	case Int32:
		x = int32(le.Uint32(b))
	case Float32:
		x = math.Float32frombits(le.Uint32(b))
	case Uint64:
		x = le.Uint64(b)
	case Int64:
		x = int64(le.Uint64(b))
	case Float64:
		x = math.Float64frombits(le.Uint64(b))
	}
	return Value{typ: t, x: x}
}

// decodeArray decodes n little-endian scalars of type t from b.
func decodeArray(t ValueType, b []byte, n int) any {
	le := binary.LittleEndian
	switch t {
	case Uint8:
		return slices.Clone(b[:n:n])
	case Int8:
		return decode(b, n, 1, func(b []byte) int8 { return int8(b[0]) })
	case Bool:
		return decode(b, n, 1, func(b []byte) bool { return b[0] != 0 })
	case Uint16:
		return decode(b, n, 2, le.Uint16)
	case Int16:
		return decode(b, n, 2, func(b []byte) int16 { return int16(le.Uint16(b)) })
	case Uint32:
		return decode(b, n, 4, le.Uint32)
	case Int32:
		return decode(b, n, 4, func(b []byte) int32 { return int32(le.Uint32(b)) })
	case Float32:
		return decode(b, n, 4, func(b []byte) float32 { return math.Float32frombits(le.Uint32(b)) })
	case Uint64:
		return decode(b, n, 8, le.Uint64)
	case Int64:
		return decode(b, n, 8, func(b []byte) int64 { return int64(le.Uint64(b)) })
	case Float64:
		return decode(b, n, 8, func(b []byte) float64 { return math.Float64frombits(le.Uint64(b)) })
	}
	return nil
}

func decode[T any](b []byte, n, size int, f func([]byte) T) []T {
	s := make([]T, n)
	for i := range s {
		s[i] = f(b[i*size:])
	}
	return s
}
