//go:build !unix

package gguf

import (
	"fmt"
	"io"
	"math"
	"os"
)

// mapFile reads the whole file into memory: this package maps files only on
// unix systems.
func mapFile(fh *os.File, size int64) ([]byte, func() error, error) {
	if size < 0 || uint64(size) > math.MaxInt {
		return nil, nil, fmt.Errorf("file size %d does not fit in memory", size)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(fh, data); err != nil {
		return nil, nil, err
	}
	return data, nil, nil
}
