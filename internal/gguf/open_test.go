package gguf

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenDoesNotCopyTensorData opens the 13 MB fixture and checks that the
// heap grows by far less than the file: tensor data stays in the mapping.
func TestOpenDoesNotCopyTensorData(t *testing.T) {
	path := fixture(t, "tiny-Q4_K_M.gguf")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f, err := Open(path)
	require.NoError(t, err)
	runtime.ReadMemStats(&after)
	defer f.Close()

	allocated := int64(after.TotalAlloc - before.TotalAlloc)
	t.Logf("Open of a %d-byte file allocated %d bytes in %d allocations",
		f.Size, allocated, after.Mallocs-before.Mallocs)
	// The metadata (32,000 tokens, scores and types) takes about 1 MB; the
	// tensor data is 12.3 MB.
	assert.Less(t, allocated, f.Size/8)
	assert.Less(t, after.Mallocs-before.Mallocs, uint64(1000), "string arrays are not allocated string by string")

	// The tensor data is the mapping itself.
	ti, ok := f.Tensor("token_embd.weight")
	require.True(t, ok)
	data := f.TensorData(ti)
	require.Len(t, data, int(ti.Size))
	assert.Same(t, &f.data[f.DataOffset+int64(ti.Offset)], &data[0])
}

func BenchmarkOpen(b *testing.B) {
	path := fixture(b, "tiny-Q4_K_M.gguf")
	b.ReportAllocs()
	for b.Loop() {
		f, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadInfo(b *testing.B) {
	path := fixture(b, "tiny-Q4_K_M.gguf")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadInfo(path); err != nil {
			b.Fatal(err)
		}
	}
}
