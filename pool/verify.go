package pool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"rbee/api"
)

// A model file in the catalog is checked, not trusted. Its row keeps the
// file's size, SHA-256 and modification time as they were when it was
// catalogued (or last verified). A file whose size and modification time
// still match is used without reading it (hashing gigabytes on every spawn
// would be too slow); one whose size or time changed is hashed again, and a
// different SHA-256 means the file is not the one catalogued: an hf: model
// is downloaded again, a file: model (the user's own file) is refused.

// fileState is what a fresh look at a catalogued model's file found.
type fileState int

const (
	fileSame    fileState = iota // the file is the one catalogued
	fileChanged                  // its content differs from the catalogued one
	fileMissing                  // there is no file at the path any more
)

// fileCheck is the outcome of checkFile.
type fileCheck struct {
	state  fileState
	row    modelRow // the row, with size and time brought up to date when the file matched
	hashed bool     // the file was read (its size or time had changed)
	change string   // for fileChanged: what differs, in words ("its SHA-256 is now …")
	sha    string   // the file's SHA-256, when it was hashed
	size   int64    // the file's size now
}

// mtimeNs is a file's modification time in nanoseconds since 1970.
func mtimeNs(fi fs.FileInfo) int64 { return fi.ModTime().UnixNano() }

// stampMatches reports whether a file's size and modification time are
// those its catalog row recorded (a row from before the catalog kept times
// never matches: its file is hashed once).
func stampMatches(r modelRow, fi fs.FileInfo) bool {
	return r.MTimeNs != 0 && fi.Size() == r.SizeBytes && mtimeNs(fi) == r.MTimeNs
}

// checkFile compares a catalogued model's file with its row: by size and
// modification time, and when either changed, by SHA-256. A file that
// matches gets its row's size and time updated. A row without a SHA-256
// (a file: model catalogued by an older rbee) takes the file's, unless the
// size changed. Errors: the file cannot be read (an *api.Error), or ctx
// ended.
func (h *Hive) checkFile(ctx context.Context, r modelRow) (fileCheck, error) {
	fi, err := os.Stat(r.LocalPath)
	if errors.Is(err, fs.ErrNotExist) {
		return fileCheck{state: fileMissing, row: r}, nil
	}
	if err != nil {
		return fileCheck{}, api.Errorf(api.CodeModelNotFound, "model file %s cannot be read: %v", r.LocalPath, errText(err)).
			With("model_ref", r.Reference).With("file", r.LocalPath)
	}
	if !fi.Mode().IsRegular() {
		return fileCheck{state: fileChanged, row: r, size: fi.Size(),
			change: "it is no longer a regular file"}, nil
	}
	if stampMatches(r, fi) {
		return fileCheck{state: fileSame, row: r, size: fi.Size()}, nil
	}
	sha, fi2, err := h.hashStable(ctx, r.LocalPath, fi)
	if err != nil {
		return fileCheck{}, err
	}
	c := fileCheck{row: r, hashed: true, sha: sha, size: fi2.Size()}
	if r.SHA256 == "" && fi2.Size() != r.SizeBytes || r.SHA256 != "" && sha != r.SHA256 {
		c.state = fileChanged
		c.change = describeChange(r, fi2, sha)
		return c, nil
	}
	if err := h.catalog.reverified(ctx, r.Reference, r.LocalPath, fi2.Size(), sha, mtimeNs(fi2)); err != nil {
		// The file is fine; it is only hashed again next time.
		h.log.Warn("recording the re-verified model file failed", "model", r.Reference, "error", err)
	}
	c.row.SizeBytes, c.row.SHA256, c.row.MTimeNs = fi2.Size(), sha, mtimeNs(fi2)
	h.log.Info("model file re-verified: its size or modification time changed, its SHA-256 did not", "model", r.Reference,
		"path", r.LocalPath, "sha256", sha)
	return c, nil
}

// describeChange says how a file differs from its catalog row.
func describeChange(r modelRow, fi fs.FileInfo, sha string) string {
	var parts []string
	if r.SHA256 != "" && sha != r.SHA256 {
		parts = append(parts, fmt.Sprintf("its SHA-256 is now %s…, the catalog has %s…", short(sha), short(r.SHA256)))
	}
	if fi.Size() != r.SizeBytes {
		parts = append(parts, fmt.Sprintf("its size is now %d bytes, it was %d", fi.Size(), r.SizeBytes))
	} else {
		parts = append(parts, fmt.Sprintf("its size is unchanged (%d bytes)", fi.Size()))
	}
	if r.MTimeNs != 0 && mtimeNs(fi) != r.MTimeNs {
		parts = append(parts, "it was modified at "+fi.ModTime().UTC().Format(time.DateTime)+" UTC")
	}
	return strings.Join(parts, "; ")
}

// short is the first 12 hex digits of a SHA-256.
func short(sha string) string { return sha[:min(12, len(sha))] }

// hashStable hashes the file at path, whose stat before reading is
// before, and returns its SHA-256 and its stat after reading. A file that
// changed while it was read is an error (try again once it is written).
func (h *Hive) hashStable(ctx context.Context, path string, before fs.FileInfo) (string, fs.FileInfo, error) {
	start := time.Now()
	sha, err := hashFile(ctx, path)
	if err != nil {
		if ctx.Err() != nil {
			return "", nil, ctx.Err()
		}
		return "", nil, api.Errorf(api.CodeModelNotFound, "model file %s cannot be read: %v", path, errText(err)).With("file", path)
	}
	after, err := os.Stat(path)
	if err != nil {
		return "", nil, api.Errorf(api.CodeModelNotFound, "model file %s cannot be read: %v", path, errText(err)).With("file", path)
	}
	if after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		return "", nil, api.Errorf(api.CodeInvalidRequest, "model file %s changed while rbee was reading it", path).
			With("file", path).WithHint("wait until it is completely written, then try again")
	}
	h.log.Debug("hashed a model file", "path", path, "size_bytes", after.Size(), "took", time.Since(start).Round(time.Millisecond))
	return sha, after, nil
}

// hashFile returns the SHA-256 of a file's bytes, giving up when ctx ends.
func hashFile(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hs := sha256.New()
	if _, err := io.CopyBuffer(hs, ctxReader{ctx, f}, make([]byte, 1<<20)); err != nil {
		return "", err
	}
	return hex.EncodeToString(hs.Sum(nil)), nil
}

// ctxReader is a reader that fails once ctx ended.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// errText is an error without the operation and path os puts in front.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// listedMeta is the header summary GET /v1/models shows for a catalog
// entry: nil when its file is missing, unreadable, or no longer has the
// size and modification time the catalog recorded (it must be checked
// before use; for an hf: model the queen then asks for a download, which
// checks it and fetches it again if it is damaged).
func (h *Hive) listedMeta(ctx context.Context, e api.ModelEntry) *api.ModelMeta {
	r, err := h.catalog.row(ctx, e.Reference)
	if err != nil {
		return nil
	}
	fi, err := os.Stat(r.LocalPath)
	if err != nil || !stampMatches(r, fi) {
		return nil
	}
	info, aerr := readModel(r.LocalPath, r.Reference)
	if aerr != nil {
		return nil
	}
	return metaOf(info)
}

// damagedFile is the error of a catalogued model whose file changed.
// A file: model is refused until its file is restored; for an hf: model
// the caller has removed the damaged copy.
func damagedFile(r modelRow, c fileCheck, removed bool) *api.Error {
	e := api.Errorf(api.CodeChecksumMismatch, "model file %s of %s changed since it was added to this node's catalog: %s",
		r.LocalPath, r.Reference, c.change).
		With("model_ref", r.Reference).With("file", r.LocalPath).
		With("expected_sha256", r.SHA256).With("actual_sha256", c.sha).
		With("expected_size_bytes", r.SizeBytes).With("size_bytes", c.size)
	if removed {
		return e.WithHint("the damaged copy was removed: download it again (POST /v1/models/download {\"model_ref\": …}; rbee infer through the queen does this for you)")
	}
	return e.WithHint("if the file was damaged, copy it again from where it came from; if you replaced it on purpose, " +
		"use it under a new path (the catalog keeps what it first found at this one), or move the node's models.db aside to forget every file: model")
}
