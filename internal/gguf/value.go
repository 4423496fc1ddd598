package gguf

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// ValueType is the type of a metadata value, numbered as the GGUF format numbers
// it (enum gguf_type).
type ValueType uint32

// The metadata value types.
const (
	Uint8   ValueType = 0
	Int8    ValueType = 1
	Uint16  ValueType = 2
	Int16   ValueType = 3
	Uint32  ValueType = 4
	Int32   ValueType = 5
	Float32 ValueType = 6
	Bool    ValueType = 7
	String  ValueType = 8
	Array   ValueType = 9
	Uint64  ValueType = 10
	Int64   ValueType = 11
	Float64 ValueType = 12
)

var valueTypeNames = [...]string{
	Uint8: "uint8", Int8: "int8", Uint16: "uint16", Int16: "int16",
	Uint32: "uint32", Int32: "int32", Float32: "float32", Bool: "bool",
	String: "string", Array: "array", Uint64: "uint64", Int64: "int64", Float64: "float64",
}

// String returns the type's name ("uint32"), or "ValueType(N)" for a number the
// format does not define.
func (t ValueType) String() string {
	if t.valid() {
		return valueTypeNames[t]
	}
	return "ValueType(" + strconv.FormatUint(uint64(t), 10) + ")"
}

func (t ValueType) valid() bool { return t <= Float64 }

// size is the encoded size of one scalar of type t; 0 for String and Array,
// whose sizes vary.
func (t ValueType) size() int {
	switch t {
	case Uint8, Int8, Bool:
		return 1
	case Uint16, Int16:
		return 2
	case Uint32, Int32, Float32:
		return 4
	case Uint64, Int64, Float64:
		return 8
	}
	return 0
}

// minSize is the smallest number of bytes one value of type t occupies in a
// file, used to bound counts before allocating.
func (t ValueType) minSize() int {
	switch t {
	case String:
		return 8 // the length
	case Array:
		return 4 + 8 // element type and count
	}
	return t.size()
}

// maxDepth bounds the nesting of arrays of arrays, in files and in the writer.
const maxDepth = 8

// Value is one metadata value: a scalar, a string, or an array of values of one
// type (arrays of arrays hold a [Value] per element). The zero Value holds
// nothing: its Any returns nil.
//
// Arrays returned by Any and by the File.Get… helpers share memory with the
// Value: treat them as read-only.
type Value struct {
	typ  ValueType
	elem ValueType // for arrays
	x    any       // the Go value, as Any returns it
}

// Type returns the value's type.
func (v Value) Type() ValueType { return v.typ }

// ElemType returns the type of an array's elements. For a value that is not an
// array it returns the value's own type.
func (v Value) ElemType() ValueType {
	if v.typ == Array {
		return v.elem
	}
	return v.typ
}

// Len returns the number of elements of an array, and 0 for other values.
func (v Value) Len() int {
	if v.typ != Array {
		return 0
	}
	switch a := v.x.(type) {
	case []uint8:
		return len(a)
	case []int8:
		return len(a)
	case []uint16:
		return len(a)
	case []int16:
		return len(a)
	case []uint32:
		return len(a)
	case []int32:
		return len(a)
	case []float32:
		return len(a)
	case []bool:
		return len(a)
	case []string:
		return len(a)
	case []uint64:
		return len(a)
	case []int64:
		return len(a)
	case []float64:
		return len(a)
	case []Value:
		return len(a)
	}
	return 0
}

// Any returns the value as a Go value: uint8, int8, uint16, int16, uint32,
// int32, float32, bool, string, uint64, int64 or float64 for scalars; for arrays
// a slice of one of those ([]string, []float32, …), or []Value for an array of
// arrays. The slices are shared, not copied.
func (v Value) Any() any { return v.x }

// ValueOf converts a Go value to a Value. It accepts the scalar types uint8,
// int8, uint16, int16, uint32, int32, float32, bool, string, uint64, int64 and
// float64, slices of those, a Value, and []Value whose elements are all arrays
// (an array of arrays). A Go int is stored as uint32 when it is in
// [0, 2^32), as int32 when it is negative and fits, and as int64 otherwise, the
// types llama.cpp uses for counts and ids.
func ValueOf(x any) (Value, error) {
	switch x := x.(type) {
	case Value:
		if x.x == nil {
			return Value{}, fmt.Errorf("gguf: empty Value")
		}
		return x, nil
	case uint8:
		return Value{typ: Uint8, x: x}, nil
	case int8:
		return Value{typ: Int8, x: x}, nil
	case uint16:
		return Value{typ: Uint16, x: x}, nil
	case int16:
		return Value{typ: Int16, x: x}, nil
	case uint32:
		return Value{typ: Uint32, x: x}, nil
	case int32:
		return Value{typ: Int32, x: x}, nil
	case float32:
		return Value{typ: Float32, x: x}, nil
	case bool:
		return Value{typ: Bool, x: x}, nil
	case string:
		return Value{typ: String, x: x}, nil
	case uint64:
		return Value{typ: Uint64, x: x}, nil
	case int64:
		return Value{typ: Int64, x: x}, nil
	case float64:
		return Value{typ: Float64, x: x}, nil
	case int:
		switch {
		case x >= 0 && uint64(x) <= math.MaxUint32:
			return Value{typ: Uint32, x: uint32(x)}, nil
		case x < 0 && x >= math.MinInt32:
			return Value{typ: Int32, x: int32(x)}, nil
		}
		return Value{typ: Int64, x: int64(x)}, nil
	case []uint8:
		return arrayOf(Uint8, x), nil
	case []int8:
		return arrayOf(Int8, x), nil
	case []uint16:
		return arrayOf(Uint16, x), nil
	case []int16:
		return arrayOf(Int16, x), nil
	case []uint32:
		return arrayOf(Uint32, x), nil
	case []int32:
		return arrayOf(Int32, x), nil
	case []float32:
		return arrayOf(Float32, x), nil
	case []bool:
		return arrayOf(Bool, x), nil
	case []string:
		return arrayOf(String, x), nil
	case []uint64:
		return arrayOf(Uint64, x), nil
	case []int64:
		return arrayOf(Int64, x), nil
	case []float64:
		return arrayOf(Float64, x), nil
	case []Value:
		for i, e := range x {
			if e.typ != Array || e.x == nil {
				return Value{}, fmt.Errorf("gguf: element %d of an array of arrays is not an array", i)
			}
		}
		if x == nil {
			x = []Value{}
		}
		v := Value{typ: Array, elem: Array, x: x}
		if v.depth() > maxDepth {
			return Value{}, fmt.Errorf("gguf: arrays nested deeper than %d levels", maxDepth)
		}
		return v, nil
	case nil:
		return Value{}, fmt.Errorf("gguf: nil value")
	}
	return Value{}, fmt.Errorf("gguf: cannot store a %T as a metadata value", x)
}

func arrayOf[T any](elem ValueType, s []T) Value {
	if s == nil {
		s = []T{}
	}
	return Value{typ: Array, elem: elem, x: s}
}

// depth is the number of array levels in v (1 for an array of scalars).
func (v Value) depth() int {
	if v.typ != Array {
		return 0
	}
	d := 1
	if vs, ok := v.x.([]Value); ok {
		m := 0
		for _, e := range vs {
			m = max(m, e.depth())
		}
		d += m
	}
	return d
}

// String formats the value for people: scalars as Go prints them, strings
// quoted, arrays as [a b c] with long arrays shortened.
func (v Value) String() string {
	var b strings.Builder
	v.format(&b)
	return b.String()
}

const formatMaxElems = 8

func (v Value) format(b *strings.Builder) {
	switch x := v.x.(type) {
	case nil:
		b.WriteString("<none>")
	case string:
		b.WriteString(strconv.Quote(x))
	case []string:
		formatSlice(b, x, strconv.Quote)
	case []Value:
		b.WriteByte('[')
		for i, e := range x {
			if i == formatMaxElems {
				fmt.Fprintf(b, " … (%d in all)", len(x))
				break
			}
			if i > 0 {
				b.WriteByte(' ')
			}
			e.format(b)
		}
		b.WriteByte(']')
	default:
		if v.typ != Array {
			fmt.Fprint(b, x)
			return
		}
		rv := reflect.ValueOf(x)
		b.WriteByte('[')
		for i := range rv.Len() {
			if i == formatMaxElems {
				fmt.Fprintf(b, " … (%d in all)", rv.Len())
				break
			}
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprint(b, rv.Index(i).Interface())
		}
		b.WriteByte(']')
	}
}

func formatSlice[T any](b *strings.Builder, s []T, f func(T) string) {
	b.WriteByte('[')
	for i, e := range s {
		if i == formatMaxElems {
			fmt.Fprintf(b, " … (%d in all)", len(s))
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(f(e))
	}
	b.WriteByte(']')
}
