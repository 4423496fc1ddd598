package gguf

import (
	"errors"
	"fmt"
	"os"
)

// Open maps the file at path read-only (on systems without mmap support in this
// package it reads the file into memory), then parses and validates it. Close
// the File to release the mapping.
//
// Errors about the file's content are [*FormatError]s carrying the path; errors
// opening or mapping it are the operating system's, wrapped.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("gguf: %s: not a regular file", path)
	}
	data, unmap, err := mapFile(fh, st.Size())
	if err != nil {
		return nil, fmt.Errorf("gguf: mapping %s: %w", path, err)
	}
	f, err := parse(data, path)
	if err != nil {
		if unmap != nil {
			err = errors.Join(err, unmap())
		}
		return nil, err
	}
	f.unmap = unmap
	return f, nil
}

// ReadInfo opens the file at path, summarizes its metadata and closes it: what
// the pool daemon needs for its RAM preflight and catalog.
func ReadInfo(path string) (ModelInfo, error) {
	f, err := Open(path)
	if err != nil {
		return ModelInfo{}, err
	}
	info := f.ModelInfo()
	if err := f.Close(); err != nil {
		return ModelInfo{}, fmt.Errorf("gguf: closing %s: %w", path, err)
	}
	return info, nil
}
