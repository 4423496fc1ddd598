// Package ggml describes the tensor encodings of the ggml family of formats (the
// encodings GGUF files store) and implements the block formats rbee's engine
// computes with: conversion of half-precision floats, dequantization,
// quantization and the dot products between quantized weights and quantized
// activations.
//
// Block layouts follow ggml's definitions byte for byte, so data read from a GGUF
// file is used in place, straight from the memory map.
package ggml

import "fmt"

// Type is a tensor encoding, numbered as ggml numbers it (enum ggml_type). The
// numbers are part of the GGUF file format.
type Type uint32

// The encodings GGUF files use. Only those listed in [Type.Supported] can be
// computed with; the rest are known so that a file holding them can still be
// read, and so that errors can name them.
const (
	F32     Type = 0
	F16     Type = 1
	Q4_0    Type = 2
	Q4_1    Type = 3
	Q5_0    Type = 6
	Q5_1    Type = 7
	Q8_0    Type = 8
	Q8_1    Type = 9
	Q2_K    Type = 10
	Q3_K    Type = 11
	Q4_K    Type = 12
	Q5_K    Type = 13
	Q6_K    Type = 14
	Q8_K    Type = 15
	IQ2_XXS Type = 16
	IQ2_XS  Type = 17
	IQ3_XXS Type = 18
	IQ1_S   Type = 19
	IQ4_NL  Type = 20
	IQ3_S   Type = 21
	IQ2_S   Type = 22
	IQ4_XS  Type = 23
	I8      Type = 24
	I16     Type = 25
	I32     Type = 26
	I64     Type = 27
	F64     Type = 28
	IQ1_M   Type = 29
	BF16    Type = 30
	TQ1_0   Type = 34
	TQ2_0   Type = 35
	MXFP4   Type = 39
)

// QK is the number of elements in a block of the 32-element formats (Q4_0, Q8_0, …);
// QKK is the number in a block of the K-quant formats ("super-blocks" of 256).
const (
	QK  = 32
	QKK = 256
)

type typeInfo struct {
	name      string
	blockSize int // elements per block
	typeSize  int // bytes per block
	supported bool
}

// types is indexed by Type (a table, not a map: BlockSize and TypeSize sit on
// hot paths); entries with blockSize 0 are unknown numbers.
var types = [...]typeInfo{
	F32:     {"F32", 1, 4, true},
	F16:     {"F16", 1, 2, true},
	Q4_0:    {"Q4_0", QK, 2 + QK/2, true},
	Q4_1:    {"Q4_1", QK, 4 + QK/2, false},
	Q5_0:    {"Q5_0", QK, 2 + 4 + QK/2, true},
	Q5_1:    {"Q5_1", QK, 4 + 4 + QK/2, false},
	Q8_0:    {"Q8_0", QK, 2 + QK, true},
	Q8_1:    {"Q8_1", QK, 4 + QK, false},
	Q2_K:    {"Q2_K", QKK, QKK/16 + QKK/4 + 4, false},
	Q3_K:    {"Q3_K", QKK, QKK/8 + QKK/4 + 12 + 2, false},
	Q4_K:    {"Q4_K", QKK, 4 + 12 + QKK/2, true},
	Q5_K:    {"Q5_K", QKK, 4 + 12 + QKK/8 + QKK/2, true},
	Q6_K:    {"Q6_K", QKK, QKK/2 + QKK/4 + QKK/16 + 2, true},
	Q8_K:    {"Q8_K", QKK, 4 + QKK + QKK/16*2, false},
	IQ2_XXS: {"IQ2_XXS", QKK, 2 + QKK/8*2, false},
	IQ2_XS:  {"IQ2_XS", QKK, 2 + QKK/8*2 + QKK/32, false},
	IQ3_XXS: {"IQ3_XXS", QKK, 2 + 3*QKK/8, false},
	IQ1_S:   {"IQ1_S", QKK, 2 + QKK/8 + QKK/16, false},
	IQ4_NL:  {"IQ4_NL", QK, 2 + QK/2, false},
	IQ3_S:   {"IQ3_S", QKK, 2 + QKK/4 + QKK/32 + QKK/8 + QKK/64, false},
	IQ2_S:   {"IQ2_S", QKK, 2 + QKK/4 + QKK/32 + QKK/32, false},
	IQ4_XS:  {"IQ4_XS", QKK, 2 + 2 + QKK/64 + QKK/2, false},
	I8:      {"I8", 1, 1, false},
	I16:     {"I16", 1, 2, false},
	I32:     {"I32", 1, 4, false},
	I64:     {"I64", 1, 8, false},
	F64:     {"F64", 1, 8, false},
	IQ1_M:   {"IQ1_M", QKK, QKK/8 + QKK/16 + QKK/32, false},
	BF16:    {"BF16", 1, 2, true},
	TQ1_0:   {"TQ1_0", QKK, 2 + 4*13, false},
	TQ2_0:   {"TQ2_0", QKK, 2 + 64, false},
	MXFP4:   {"MXFP4", QK, 1 + QK/2, false},
}

// Known reports whether t is an encoding this package can describe (its block
// size and byte size are known), whether or not it can compute with it.
func (t Type) Known() bool { _, ok := t.info(); return ok }

// info returns t's entry in the table and whether t is known.
func (t Type) info() (typeInfo, bool) {
	if int64(t) >= int64(len(types)) {
		return typeInfo{}, false
	}
	ti := types[t]
	return ti, ti.blockSize != 0
}

// Supported reports whether rbee's engine can compute with tensors of type t.
func (t Type) Supported() bool { ti, _ := t.info(); return ti.supported }

// String returns ggml's name for t ("Q4_K"), or "type(N)" for an unknown number.
func (t Type) String() string {
	if ti, ok := t.info(); ok {
		return ti.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// BlockSize is the number of elements one block of t encodes (0 if t is unknown).
func (t Type) BlockSize() int { ti, _ := t.info(); return ti.blockSize }

// TypeSize is the number of bytes one block of t occupies (0 if t is unknown).
func (t Type) TypeSize() int { ti, _ := t.info(); return ti.typeSize }

// RowSize is the number of bytes n elements of t occupy. n must be a multiple of
// the block size; RowSize returns -1 when it is not, or when t is unknown.
func (t Type) RowSize(n int) int {
	ti, ok := t.info()
	if !ok || n < 0 || n%ti.blockSize != 0 {
		return -1
	}
	return n / ti.blockSize * ti.typeSize
}

// ParseType returns the type named s (as [Type.String] spells it).
func ParseType(s string) (Type, bool) {
	for t, ti := range types {
		if ti.blockSize != 0 && ti.name == s {
			return Type(t), true
		}
	}
	return 0, false
}

// FileType is the "general.file_type" of a GGUF file: the overall encoding that
// llama.cpp's quantize tool was asked for (enum llama_ftype).
type FileType uint32

var fileTypeNames = map[FileType]string{
	0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
	10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
	16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
	22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
	28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
	36: "TQ1_0", 37: "TQ2_0",
}

// String returns the quantization name llama.cpp uses for the file type
// ("Q4_K_M"), or "ftype(N)" when the number is unknown.
func (f FileType) String() string {
	if s, ok := fileTypeNames[f]; ok {
		return s
	}
	return fmt.Sprintf("ftype(%d)", uint32(f))
}
