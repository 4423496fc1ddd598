package hf

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/hashicorp/go-hclog"

	"rbee/api"
)

// DiskMargin is the share of a file's size a download wants free beyond the
// bytes it still has to write.
const DiskMargin = 0.10

// Progress is how far a download is.
type Progress struct {
	Downloaded int64 // bytes in the file so far, resumed bytes included
	Total      int64 // the file's size; 0 while unknown
}

// RetryInfo describes a failed attempt that is about to be retried.
type RetryInfo struct {
	Attempt  int           // the attempt that failed, from 1
	Attempts int           // how many attempts there are in all
	Err      error         // why it failed
	Stalled  bool          // no byte came for the stall timeout
	Delay    time.Duration // the wait before the next attempt
	Offset   int64         // the byte the next attempt resumes from
}

// Options observe a download. Both functions are called from the
// downloading goroutine and must not block.
type Options struct {
	// Progress is called after every chunk written to the file, and once at
	// the start with what a partial file already holds.
	Progress func(Progress)
	// Retry is called before each retry.
	Retry func(RetryInfo)
}

// Result describes a finished download.
type Result struct {
	Path     string // the file, renamed into place
	Size     int64
	SHA256   string // of the file's bytes (always computed)
	Verified bool   // the hub gave a SHA-256 and the file matches it
	Attempts int
	Resumed  int64 // bytes a partial file from an earlier run contributed
}

// PartPath is the temporary file a download of f to dest writes: beside
// dest, named after the expected hash when the hub gave one, so that a
// partial file of another version of the file is never resumed.
func PartPath(dest string, f File) string {
	if f.SHA256 != "" {
		return dest + "." + f.SHA256[:12] + ".part"
	}
	return dest + ".part"
}

// errStalled is the cause of an attempt ended by the stall timeout.
var errStalled = errors.New("stalled")

// download is the state of one Download call.
type download struct {
	c       *Client
	f       File
	url     string
	opt     Options
	log     hclog.Logger
	file    *os.File
	h       hash.Hash
	offset  int64 // bytes in file (all hashed into h)
	total   int64 // 0 while unknown
	checked bool  // the disk space check ran
	dir     string

	headerSHA string // a SHA-256 from the answer's headers
	stalled   bool   // the last attempt stalled
	lastErr   error
}

// Download fetches f to dest (GET {endpoint}/{repo}/resolve/{revision}/{file},
// following redirects) through the temporary file PartPath(dest, f). A
// partial file left by an earlier call is resumed with a Range request, and
// so is every failed attempt (at most Attempts in all, FirstDelay doubling
// between them); an attempt without a byte for StallTimeout fails. The
// bytes' SHA-256 is checked against the hub's (the LFS hash of the listing,
// else an X-Linked-Etag or ETag that is one) before the file is renamed to
// dest. Errors:
//   - DOWNLOAD_FAILED out of attempts (details attempts, bytes_downloaded;
//     the partial file is kept for the next call),
//   - DOWNLOAD_TIMEOUT when the last attempt stalled,
//   - CHECKSUM_MISMATCH (the partial file is removed),
//   - INSUFFICIENT_DISK when the rest of the file and a 10 % margin do not fit,
//   - MODEL_NOT_FOUND for 401/403/404,
//   - ctx's error when ctx ends (the partial file is kept).
func (c *Client) Download(ctx context.Context, f File, dest string, opt Options) (Result, error) {
	if err := validRepo(f.Repo); err != nil {
		return Result{}, err
	}
	if err := c.CheckEndpoint(); err != nil {
		return Result{}, api.Errorf(api.CodeDownloadFailed, "%s", err.Error())
	}
	rev := f.Revision
	if rev == "" {
		rev = DefaultRevision
	}
	d := &download{c: c, f: f, opt: opt, h: sha256.New(), total: f.Size, dir: filepath.Dir(dest),
		url: c.endpoint() + "/" + escapePath(f.Repo) + "/resolve/" + escapePath(rev) + "/" + escapePath(f.Name),
		log: c.log().With("repo", f.Repo, "file", f.Name)}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return Result{}, d.fsError("creating the models folder "+d.dir, err)
	}
	part := PartPath(dest, f)
	file, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return Result{}, d.fsError("creating "+part, err)
	}
	d.file = file
	defer func() {
		if d.file != nil {
			_ = d.file.Close()
		}
	}()
	resumed, err := d.openPart()
	if err != nil {
		return Result{}, err
	}
	if err := d.checkDisk(); err != nil {
		return Result{}, err
	}
	d.progress()

	attempts := c.attempts()
	attempt := 0
	op := func() error {
		attempt++
		err := d.attempt(ctx)
		if err == nil {
			return nil
		}
		d.lastErr = err
		var te *transientError
		if !errors.As(err, &te) {
			return backoff.Permanent(err)
		}
		return err
	}
	notify := func(err error, next time.Duration) {
		d.log.Warn("download attempt failed; resuming", "attempt", attempt, "attempts", attempts, "error", err,
			"resume_at", d.offset, "retry_in", next)
		if opt.Retry != nil {
			opt.Retry(RetryInfo{Attempt: attempt, Attempts: attempts, Err: err, Stalled: d.stalled, Delay: next, Offset: d.offset})
		}
	}
	start := time.Now()
	err = backoff.RetryNotify(op, c.backoff(ctx), notify)
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("downloading %s: %w", f.Name, ctx.Err())
		}
		var ae *api.Error
		if errors.As(err, &ae) {
			return Result{}, ae
		}
		return Result{}, d.outOfAttempts(attempt, err)
	}

	if err := d.file.Sync(); err != nil {
		return Result{}, d.fsError("writing "+part, err)
	}
	if err := d.file.Close(); err != nil {
		d.file = nil
		return Result{}, d.fsError("writing "+part, err)
	}
	d.file = nil
	sum := hex.EncodeToString(d.h.Sum(nil))
	want := f.SHA256
	if want == "" {
		want = d.headerSHA
	}
	if want != "" && sum != want {
		_ = os.Remove(part)
		d.log.Error("checksum mismatch; partial file removed", "expected", want, "actual", sum)
		return Result{}, api.Errorf(api.CodeChecksumMismatch, "the SHA-256 of %s from %s does not match the hub's: expected %s, got %s",
			f.Name, f.Repo, want, sum).With("repo", f.Repo).With("file", f.Name).With("expected", want).With("actual", sum).
			With("bytes", d.offset).WithHint("download it again; if it keeps failing, the hub or a proxy is serving a damaged file")
	}
	if err := os.Rename(part, dest); err != nil {
		return Result{}, d.fsError("moving "+part+" into place", err)
	}
	syncDir(d.dir)
	d.log.Info("download complete", "path", dest, "bytes", d.offset, "attempts", attempt, "verified", want != "",
		"took", time.Since(start).Round(time.Millisecond))
	return Result{Path: dest, Size: d.offset, SHA256: sum, Verified: want != "", Attempts: attempt, Resumed: resumed}, nil
}

// openPart takes up a partial file: its bytes are hashed so that the
// download continues after them (one too long for the file starts over).
func (d *download) openPart() (int64, error) {
	st, err := d.file.Stat()
	if err != nil {
		return 0, api.Errorf(api.CodeInternal, "reading %s: %v", d.file.Name(), err)
	}
	n := st.Size()
	if d.total > 0 && n > d.total {
		d.log.Warn("partial file is longer than the file; starting over", "bytes", n, "size", d.total)
		return 0, d.restart()
	}
	if n > 0 {
		if _, err := io.Copy(d.h, io.NewSectionReader(d.file, 0, n)); err != nil {
			return 0, api.Errorf(api.CodeInternal, "reading %s: %v", d.file.Name(), err)
		}
		if _, err := d.file.Seek(n, io.SeekStart); err != nil {
			return 0, api.Errorf(api.CodeInternal, "reading %s: %v", d.file.Name(), err)
		}
		d.offset = n
		d.log.Info("resuming a partial download", "bytes", n, "size", d.total)
	}
	return n, nil
}

// restart empties the partial file.
func (d *download) restart() error {
	if err := d.file.Truncate(0); err != nil {
		return d.fsError("truncating "+d.file.Name(), err)
	}
	if _, err := d.file.Seek(0, io.SeekStart); err != nil {
		return api.Errorf(api.CodeInternal, "truncating %s: %v", d.file.Name(), err)
	}
	d.h.Reset()
	d.offset = 0
	return nil
}

// checkDisk refuses a download whose remaining bytes and a margin of
// DiskMargin × size do not fit; it runs once, when the size is known.
func (d *download) checkDisk() error {
	if d.checked || d.total <= 0 {
		return nil
	}
	d.checked = true
	free := d.c.DiskFree
	if free == nil {
		free = DiskFree
	}
	have, err := free(d.dir)
	if err != nil {
		d.log.Warn("cannot tell the free disk space; downloading anyway", "error", err)
		return nil
	}
	need := d.total - d.offset + int64(float64(d.total)*DiskMargin)
	if have < need {
		return api.Errorf(api.CodeInsufficientDisk, "Insufficient disk space for %s: need %d MB (the file and a 10%% margin), have %d MB in %s",
			d.f.Name, mb(need), mb(have), d.dir).
			With("required", mb(need)).With("available", mb(have)).With("required_bytes", need).With("available_bytes", have).
			With("file_size_bytes", d.total).With("dir", d.dir).
			WithHint("free space on the node, or choose a smaller quantization (a lower-bit file of the repository) or a smaller model")
	}
	return nil
}

// mb is bytes in MiB, rounded up.
func mb(n int64) int64 { return (n + (1<<20 - 1)) >> 20 }

func (d *download) progress() {
	if d.opt.Progress != nil {
		d.opt.Progress(Progress{Downloaded: d.offset, Total: d.total})
	}
}

// attempt runs one GET from the current offset to the end (or a failure).
// It returns nil, a *transientError (worth retrying) or a permanent error.
func (d *download) attempt(ctx context.Context) error {
	d.stalled = false
	stall := d.c.stallTimeout()
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(stall, func() { cancel(errStalled) })
	defer timer.Stop()

	req, err := d.c.newRequest(actx, d.url)
	if err != nil {
		return api.Errorf(api.CodeDownloadFailed, "bad download URL for %s: %v", d.f.Name, err)
	}
	req.Header.Set("Accept-Encoding", "identity")
	if d.offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(d.offset, 10)+"-")
	}
	// The hub answers with a redirect to its file store; the redirect's
	// headers carry the file's hash (X-Linked-Etag).
	var redirects []http.Header
	hc := *d.c.httpClient()
	hc.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if r.Response != nil {
			redirects = append(redirects, r.Response.Header)
		}
		return nil
	}
	resp, err := hc.Do(req)
	if err != nil {
		return d.failed(ctx, actx, err)
	}
	defer resp.Body.Close()
	if sha := headerSHA(append(redirects, resp.Header)); sha != "" {
		d.headerSHA = sha
	}

	switch resp.StatusCode {
	case http.StatusOK:
		if d.offset > 0 {
			d.log.Info("the server ignored the range; starting over", "had", d.offset)
			if err := d.restart(); err != nil {
				return err
			}
		}
		if resp.ContentLength >= 0 {
			d.setTotal(resp.ContentLength)
		}
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != d.offset {
			if err := d.restart(); err != nil {
				return err
			}
			return &transientError{fmt.Errorf("the server sent the wrong range (%q for byte %d); starting over", resp.Header.Get("Content-Range"), start)}
		}
		switch {
		case total > 0:
			d.setTotal(total)
		case resp.ContentLength >= 0:
			d.setTotal(d.offset + resp.ContentLength)
		}
	case http.StatusRequestedRangeNotSatisfiable:
		_, total, _ := parseContentRange(resp.Header.Get("Content-Range"))
		if total == 0 {
			total = d.total
		}
		if total > 0 && d.offset == total {
			return nil // the partial file holds every byte already
		}
		if err := d.restart(); err != nil {
			return err
		}
		return &transientError{fmt.Errorf("the server refused the range from byte %d; starting over", d.offset)}
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return d.c.statusError(resp.StatusCode, d.f.Repo, d.f.Name)
	}
	if err := d.checkDisk(); err != nil {
		return err
	}
	d.progress()

	buf := make([]byte, 256<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			timer.Reset(stall)
			if _, werr := d.file.Write(buf[:n]); werr != nil {
				return d.writeError(werr)
			}
			d.h.Write(buf[:n])
			d.offset += int64(n)
			d.progress()
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return d.failed(ctx, actx, rerr)
		}
	}
	switch {
	case d.total > 0 && d.offset < d.total:
		return &transientError{fmt.Errorf("the connection ended at byte %d of %d", d.offset, d.total)}
	case d.total > 0 && d.offset > d.total:
		if err := d.restart(); err != nil {
			return err
		}
		return &transientError{fmt.Errorf("the server sent more bytes than the file has; starting over")}
	}
	d.setTotal(d.offset)
	return nil
}

func (d *download) setTotal(n int64) {
	if d.total > 0 && n != d.total {
		d.log.Warn("the server's size differs from the listing", "listing", d.total, "server", n)
	}
	d.total = n
}

// failed classifies a failed request or read: ctx's end is permanent, a
// stall or a network error transient.
func (d *download) failed(ctx, actx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(context.Cause(actx), errStalled) {
		d.stalled = true
		return &transientError{fmt.Errorf("no data for %s at byte %d", d.c.stallTimeout(), d.offset)}
	}
	return &transientError{err}
}

// writeError is the error of a failed write to the partial file.
func (d *download) writeError(err error) error {
	return d.fsError("writing "+d.file.Name(), err)
}

// fsError is INSUFFICIENT_DISK with the numbers the download knows when
// err says the disk (or the user's quota) is full, INTERNAL otherwise.
func (d *download) fsError(doing string, err error) error {
	if !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EDQUOT) {
		return api.Errorf(api.CodeInternal, "%s: %v", doing, err)
	}
	why := "the disk is full"
	if errors.Is(err, syscall.EDQUOT) {
		why = "the disk quota is used up"
	}
	e := api.Errorf(api.CodeInsufficientDisk, "Insufficient disk space for %s: %s in %s after %d of %s bytes",
		d.f.Name, why, d.dir, d.offset, sizeOrUnknown(d.total)).
		With("dir", d.dir).With("file", d.f.Name).With("bytes_downloaded", d.offset).With("bytes_total", d.total)
	if d.total > 0 {
		need := d.total - d.offset
		e = e.With("required", mb(need)).With("required_bytes", need)
	}
	free := d.c.DiskFree
	if free == nil {
		free = DiskFree
	}
	if have, ferr := free(d.dir); ferr == nil {
		e = e.With("available", mb(have)).With("available_bytes", have)
	}
	d.log.Error("the disk filled up during the download", "doing", doing, "error", err, "bytes_downloaded", d.offset, "bytes_total", d.total)
	return e.WithHint("free space on the node; the download resumes where it stopped")
}

func sizeOrUnknown(n int64) string {
	if n <= 0 {
		return "an unknown number of"
	}
	return strconv.FormatInt(n, 10)
}

// outOfAttempts is the error after the last attempt failed.
func (d *download) outOfAttempts(attempts int, err error) error {
	if d.stalled {
		return api.Errorf(api.CodeDownloadTimeout, "downloading %s from %s stalled: no data for %s, %d attempts, %d of %d bytes",
			d.f.Name, d.f.Repo, d.c.stallTimeout(), attempts, d.offset, d.total).
			With("repo", d.f.Repo).With("file", d.f.Name).With("attempts", attempts).With("bytes_downloaded", d.offset).
			With("bytes_total", d.total).With("stall_timeout_ms", d.c.stallTimeout().Milliseconds()).
			WithHint("check the node's connection to Hugging Face; the next download resumes where this one stopped")
	}
	return api.Errorf(api.CodeDownloadFailed, "downloading %s from %s failed after %d attempts at %d of %d bytes: %v",
		d.f.Name, d.f.Repo, attempts, d.offset, d.total, err).
		With("repo", d.f.Repo).With("file", d.f.Name).With("attempts", attempts).With("bytes_downloaded", d.offset).
		With("bytes_total", d.total).
		WithHint("check the node's connection to Hugging Face; the next download resumes where this one stopped")
}

// headerSHA finds a SHA-256 in X-Linked-Etag or ETag headers, the hub's
// redirect first.
func headerSHA(hs []http.Header) string {
	for _, name := range []string{"X-Linked-Etag", "Etag"} {
		for _, h := range hs {
			if sha := etagSHA256(h.Get(name)); sha != "" {
				return sha
			}
		}
	}
	return ""
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*", then
// 0) or "bytes */TOTAL".
func parseContentRange(s string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(s), "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	if tot != "*" {
		t, err := strconv.ParseInt(tot, 10, 64)
		if err != nil || t < 0 {
			return 0, 0, false
		}
		total = t
	}
	if rng == "*" {
		return 0, total, true
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	return start, total, true
}

// syncDir makes a rename durable.
func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		_ = f.Sync()
		_ = f.Close()
	}
}
