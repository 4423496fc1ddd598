package gguf

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"rbee/internal/ggml"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpus in testdata/fuzz/FuzzParse")

// seedFiles are the fuzzer's starting points: small valid files from the Writer
// and a few corruptions of them.
func seedFiles(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{
		"small":        smallFile(t),
		"empty":        header(0, 0).b,
		"v1":           (&raw{b: []byte("GGUF")}).u32(1).u32(0).u32(0).b,
		"bigend":       append([]byte("GGUF\x00\x00\x00\x03"), make([]byte, 16)...),
		"misaligned":   header(1, 0).tensor("w", ggml.F32, 4, 4).data(64),
		"overlap":      header(2, 0).tensor("a", ggml.F32, 0, 16).tensor("b", ggml.F32, 32, 4).data(64),
		"unknown-type": header(1, 0).tensor("w", ggml.Type(99), 0, 4).data(16),
		"nested": header(0, 1).str("k").u32(uint32(Array)).u32(uint32(Array)).u64(2).
			u32(uint32(Uint8)).u64(1).bytes(7).u32(uint32(String)).u64(1).str("s").b,
	}
	for _, v := range []uint32{2, 3} {
		for _, align := range []uint64{0, 64} {
			w := &Writer{Version: v, Alignment: align}
			for _, kv := range allTypesKV(t) {
				require.NoError(t, w.Set(kv.Key, kv.Value))
			}
			for _, tt := range testTensors(t, 7)[:4] {
				require.NoError(t, w.AddTensor(tt.name, tt.typ, tt.shape, tt.data))
			}
			var buf bytes.Buffer
			_, err := w.WriteTo(&buf)
			require.NoError(t, err)
			seeds[fmt.Sprintf("all-v%d-align%d", v, align)] = buf.Bytes()
		}
	}
	return seeds
}

// TestUpdateSeeds writes the seed corpus when run with -update-seeds.
func TestUpdateSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update-seeds to rewrite testdata/fuzz/FuzzParse")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for name, data := range seedFiles(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(body), 0o644))
	}
}

// FuzzParse parses arbitrary bytes. Parse must never panic; it fails with a
// FormatError wrapping exactly one sentinel, or returns a File whose tensor data
// lies inside the input and which the Writer reproduces: writing the parsed file,
// parsing that and writing it again gives the same bytes.
func FuzzParse(f *testing.F) {
	for _, data := range seedFiles(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not a *FormatError: %v", err)
			}
			n := 0
			for _, s := range []error{ErrNotGGUF, ErrVersion, ErrTruncated, ErrCorrupt, ErrUnknownType} {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error wraps %d sentinels: %v", n, err)
			}
			if fe.Offset < 0 || fe.Offset > int64(len(data)) {
				t.Fatalf("error offset %d outside the %d-byte input: %v", fe.Offset, len(data), err)
			}
			_ = err.Error()
			return
		}
		for i := range file.Tensors {
			ti := &file.Tensors[i]
			b := file.TensorData(ti)
			if int64(len(b)) != ti.Size {
				t.Fatalf("tensor %q: %d bytes of data, size %d", ti.Name, len(b), ti.Size)
			}
		}
		_ = file.ModelInfo()
		for _, kv := range file.KV {
			_ = kv.Value.String()
		}

		once := rewrite(t, file)
		file2, err := Parse(once)
		if err != nil {
			t.Fatalf("parsing the rewritten file: %v", err)
		}
		twice := rewrite(t, file2)
		if !bytes.Equal(once, twice) {
			t.Fatalf("rewriting is not stable")
		}
	})
}

// rewrite writes a parsed file again with the Writer.
func rewrite(t *testing.T, f *File) []byte {
	w := &Writer{Version: f.Version}
	for _, kv := range f.KV {
		if err := w.Set(kv.Key, kv.Value); err != nil {
			t.Fatalf("Set(%q): %v", kv.Key, err)
		}
	}
	// Alignment 0 takes general.alignment from the metadata, as the file did.
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		if err := w.AddTensor(ti.Name, ti.Type, ti.Shape, f.TensorData(ti)); err != nil {
			t.Fatalf("AddTensor(%q): %v", ti.Name, err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	return buf.Bytes()
}
