package pool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"rbee/api"
	"rbee/internal/hf"
	"rbee/internal/httpx"
	"rbee/internal/paths"
)

// downloadKeep is how long a finished download can still be followed.
const downloadKeep = 10 * time.Minute

// speedWindow is the span the reported download speed is measured over.
const speedWindow = 500 * time.Millisecond

// Download is one model download of the hive (POST /v1/models/download):
// shared by every request for its model while it runs, and followed with
// GET /v1/models/download/progress?id=.
type Download struct {
	ID       string
	ModelRef string
	Started  time.Time

	ended time.Time // when it finished (set before finished is closed)

	cancel   context.CancelFunc
	finished chan struct{} // closed when it ended

	mu      sync.Mutex
	file    string // the repository file, once resolved
	bytes   int64
	total   int64
	speed   float64 // MB/s over the last speedWindow
	mark    time.Time
	markAt  int64
	session int64 // bytes fetched by this download (resumed bytes excluded)
	notes   []api.Event
	noted   chan struct{} // closed and replaced when a note is added
	entry   api.ModelEntry
	err     *api.Error
	summary string // the narration after the final progress event ("Downloaded …")
}

// DownloadStatus is a snapshot of a download.
type DownloadStatus struct {
	BytesDownloaded int64
	BytesTotal      int64
	SpeedMBps       float64
	Done            bool
	Entry           api.ModelEntry // the catalog row, once done without error
	Err             *api.Error     // why it failed, once done
}

// Status returns how far the download is.
func (d *Download) Status() DownloadStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := DownloadStatus{BytesDownloaded: d.bytes, BytesTotal: d.total, SpeedMBps: d.speed}
	select {
	case <-d.finished:
		s.Done, s.Entry, s.Err = true, d.entry, d.err
	default:
	}
	return s
}

// Done is closed when the download ended.
func (d *Download) Done() <-chan struct{} { return d.finished }

// Wait waits for the end of the download and returns its catalog row.
func (d *Download) Wait(ctx context.Context) (api.ModelEntry, error) {
	select {
	case <-d.finished:
	case <-ctx.Done():
		return api.ModelEntry{}, ctx.Err()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return api.ModelEntry{}, d.err
	}
	return d.entry, nil
}

func (d *Download) progress(p hf.Progress) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	first := d.mark.IsZero()
	if first || p.Downloaded < d.markAt {
		// The start (a partial file's bytes are not this transfer's), or the
		// file started over.
		d.mark, d.markAt = now, p.Downloaded
	}
	if !first && p.Downloaded > d.bytes {
		d.session += p.Downloaded - d.bytes
	}
	d.bytes, d.total = p.Downloaded, p.Total
	if el := now.Sub(d.mark); el >= speedWindow {
		d.speed = float64(p.Downloaded-d.markAt) / 1e6 / el.Seconds()
		d.mark, d.markAt = now, p.Downloaded
	}
}

// have records a file that was there already: no transfer, no speed.
func (d *Download) have(size int64) {
	d.mu.Lock()
	d.bytes, d.total = size, size
	d.mu.Unlock()
}

// note adds a narration of the hive to the download's stream.
func (d *Download) note(action, format string, a ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ev := api.NarrationEvent(api.ActorHive, action, fmt.Sprintf(format, a...))
	d.notes = append(d.notes, ev)
	close(d.noted)
	d.noted = make(chan struct{})
}

// end records the outcome; the final speed is the average of the whole
// transfer.
func (d *Download) end(entry api.ModelEntry, err *api.Error) {
	d.mu.Lock()
	d.entry, d.err, d.ended = entry, err, time.Now()
	if el := time.Since(d.Started); el > 0 && d.session > 0 {
		d.speed = float64(d.session) / 1e6 / el.Seconds()
	}
	d.mu.Unlock()
	close(d.finished)
}

// downloads runs the hive's downloads: one per model reference at a time,
// and one per file (two references may name the same file).
type downloads struct {
	h   *Hive
	hf  *hf.Client
	log hclog.Logger

	mu     sync.Mutex
	active map[string]*Download // by reference, while running
	byID   map[string]*Download // running, and finished within downloadKeep
	byPath map[string]*Download // the download writing each file
	closed bool
}

func newDownloads(h *Hive) *downloads {
	log := h.log.Named("download")
	client := &hf.Client{Endpoint: h.cfg.HFEndpoint, Token: h.cfg.HFToken, StallTimeout: h.cfg.DownloadStallTimeout,
		FirstDelay: h.cfg.DownloadRetryDelay, DiskFree: h.cfg.DiskFree, Logger: log,
		HTTP: newDownloadHTTPClient()}
	return &downloads{h: h, hf: client, log: log, active: map[string]*Download{}, byID: map[string]*Download{}, byPath: map[string]*Download{}}
}

// DownloadModel starts downloading an hf: model into the catalog, or joins
// the download of it that runs. A model in the catalog whose file is there
// gives a download that is complete at once. Errors: INVALID_REQUEST for a
// reference that is not hf:, SHUTTING_DOWN.
func (h *Hive) DownloadModel(ctx context.Context, modelRef string) (*Download, error) {
	req := api.DownloadRequest{ModelRef: modelRef}
	ref, e := req.Validate()
	if e != nil {
		return nil, e
	}
	return h.dl.start(ctx, ref)
}

// FindDownload returns a running download, or one that finished within the
// last ten minutes.
func (h *Hive) FindDownload(id string) (*Download, bool) {
	h.dl.mu.Lock()
	defer h.dl.mu.Unlock()
	d, ok := h.dl.byID[id]
	return d, ok
}

func (m *downloads) newDownload(ref string) *Download {
	return &Download{ID: httpx.NewID("dl-"), ModelRef: ref, Started: time.Now(), finished: make(chan struct{}), noted: make(chan struct{})}
}

func (m *downloads) start(ctx context.Context, ref api.ModelRef) (*Download, error) {
	canon := ref.String()
	m.mu.Lock()
	if m.closed || m.h.closing.Load() {
		m.mu.Unlock()
		return nil, errRegistryClosed
	}
	m.prune()
	if d := m.active[canon]; d != nil {
		m.mu.Unlock()
		m.log.Debug("joining the running download", "model", canon, "download_id", d.ID)
		return d, nil
	}
	m.mu.Unlock()

	// A model in the catalog whose file still has the size and modification
	// time the catalog recorded, and a readable header, is there: the
	// download is complete at once. Any other catalogued file is checked by
	// the download first (hashing takes a while), and fetched again if it is
	// damaged or gone.
	var prior *modelRow
	if r, err := m.h.catalog.row(ctx, canon); err == nil {
		if fi, serr := os.Stat(r.LocalPath); serr == nil && fi.Mode().IsRegular() && stampMatches(r, fi) {
			if _, aerr := readModel(r.LocalPath, canon); aerr == nil {
				d := m.newDownload(canon)
				d.have(r.SizeBytes)
				d.end(r.ModelEntry, nil)
				m.mu.Lock()
				m.byID[d.ID] = d
				m.mu.Unlock()
				return d, nil
			}
		}
		prior = &r
	} else if !errors.Is(err, ErrNotInCatalog) {
		m.log.Error("model catalog lookup failed", "model", canon, "error", err)
		return nil, catalogError(err, "read")
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errRegistryClosed
	}
	if d := m.active[canon]; d != nil {
		return d, nil
	}
	if !m.h.track() {
		return nil, errRegistryClosed
	}
	d := m.newDownload(canon)
	dctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	m.active[canon] = d
	m.byID[d.ID] = d
	m.log.Info("download started", "model", canon, "download_id", d.ID)
	go func() {
		defer m.h.wg.Done()
		defer cancel()
		entry, err := m.run(dctx, d, ref, prior)
		m.mu.Lock()
		delete(m.active, canon)
		m.mu.Unlock()
		if err != nil {
			m.log.Info("download failed", "model", canon, "download_id", d.ID, "code", err.Code, "error", err.Message)
		}
		d.end(entry, err)
	}()
	return d, nil
}

// prune forgets downloads that finished more than downloadKeep ago. Callers
// hold m.mu.
func (m *downloads) prune() {
	for id, d := range m.byID {
		select {
		case <-d.finished:
			if time.Since(d.ended) > downloadKeep {
				delete(m.byID, id)
			}
		default:
		}
	}
}

// close cancels the running downloads (their partial files stay for a
// later resume) and refuses new ones.
func (m *downloads) close() {
	m.mu.Lock()
	m.closed = true
	running := make([]*Download, 0, len(m.active))
	for _, d := range m.active {
		running = append(running, d)
	}
	m.mu.Unlock()
	for _, d := range running {
		m.log.Info("cancelling the download: the hive is shutting down", "model", d.ModelRef, "download_id", d.ID)
		d.cancel()
	}
}

// run resolves, downloads, checks and registers one model. prior is its
// catalog row when the catalog has one whose file must be checked first.
func (m *downloads) run(ctx context.Context, d *Download, ref api.ModelRef, prior *modelRow) (api.ModelEntry, *api.Error) {
	canon := ref.String()
	fail := func(err error) (api.ModelEntry, *api.Error) {
		if ctx.Err() != nil {
			return api.ModelEntry{}, api.Errorf(api.CodeShuttingDown, "the hive is shutting down; the download of %s stopped (it resumes next time)", canon).
				With("model_ref", canon)
		}
		e := api.AsError(err)
		if e.Code == api.CodeInternal {
			m.log.Error("download failed", "model", canon, "error", err)
		}
		return api.ModelEntry{}, e.With("model_ref", canon)
	}
	if prior != nil {
		entry, ok, err := m.recheck(ctx, d, *prior)
		if err != nil {
			return fail(err)
		}
		if ok {
			return entry, nil
		}
	}
	f, err := m.hf.Resolve(ctx, ref)
	if err != nil {
		return fail(err)
	}
	dest, err := hf.LocalPath(paths.ModelsDir(m.h.cfg.Home), f)
	if err != nil {
		return fail(err)
	}
	d.mu.Lock()
	d.file, d.total = f.Name, f.Size
	d.mu.Unlock()

	// One download per file: a second reference to the same file waits.
	unlock, err := m.lockPath(ctx, dest, d)
	if err != nil {
		return fail(err)
	}
	defer unlock()

	sum, have := m.existing(dest, f)
	var size int64
	if have {
		m.log.Info("the file is already on disk; registering it", "model", canon, "path", dest)
		st, _ := os.Stat(dest)
		size = st.Size()
		d.have(size)
	} else {
		d.note("download", "Downloading %s (%s) from Hugging Face repository %s", f.Name, sizeText(f.Size), f.Repo)
		res, err := m.hf.Download(ctx, f, dest, hf.Options{
			Progress: d.progress,
			Retry: func(r hf.RetryInfo) {
				why := r.Err.Error()
				if r.Stalled {
					why = "stalled: " + why
				}
				d.note("download_retry", "Download of %s interrupted (attempt %d/%d: %s); resuming at byte %d in %s",
					f.Name, r.Attempt, r.Attempts, why, r.Offset, r.Delay)
			},
		})
		if err != nil {
			return fail(err)
		}
		sum, size = res.SHA256, res.Size
	}
	if _, aerr := readModel(dest, canon); aerr != nil {
		_ = os.Remove(dest)
		return fail(api.Errorf(aerr.Code, "%s from %s is not a usable GGUF model: %s", f.Name, f.Repo, aerr.Message).With("file", f.Name))
	}
	var mtime int64
	if fi, err := os.Stat(dest); err == nil && fi.Size() == size {
		mtime = mtimeNs(fi)
	}
	row, err := m.h.catalog.register(ctx, modelRow{ModelEntry: api.ModelEntry{Provider: "hf", Reference: canon, LocalPath: dest,
		SizeBytes: size, SHA256: sum, DownloadedAtUnix: time.Now().Unix()}, MTimeNs: mtime})
	if err != nil {
		m.log.Error("registering the model failed", "model", canon, "error", err)
		e := catalogError(err, "updated")
		if e.Code == api.CodeInsufficientDisk {
			e = m.diskFull(e, filepath.Dir(m.h.catalog.Path()))
		}
		return fail(e)
	}
	entry := row.ModelEntry
	m.log.Info("model downloaded and registered", "model", canon, "id", entry.ID, "path", dest, "size_bytes", size, "sha256", sum)
	verb := "Downloaded"
	if have {
		verb = "Found"
	}
	d.mu.Lock()
	d.summary = fmt.Sprintf("%s %s (%s, SHA-256 %s…); added to the catalog as %s", verb, f.Name, sizeText(size), sum[:12], entry.ID)
	d.mu.Unlock()
	return entry, nil
}

// recheck looks at the file of a catalogued model that changed, went
// missing or cannot be read: the same SHA-256 as the catalog's makes it
// complete at once (ok); otherwise the row and file are removed, with a
// narration saying why, and the caller downloads the model again.
func (m *downloads) recheck(ctx context.Context, d *Download, r modelRow) (api.ModelEntry, bool, error) {
	name := filepath.Base(r.LocalPath)
	if fi, err := os.Stat(r.LocalPath); err == nil && !stampMatches(r, fi) {
		if r.MTimeNs == 0 {
			d.note("download_check", "The catalog has not checked the file of %s (%s) since an upgrade of rbee; checking its SHA-256 once", r.Reference, name)
		} else {
			d.note("download_check", "The file of %s (%s) changed since it was catalogued; checking its SHA-256", r.Reference, name)
		}
	}
	c, err := m.h.checkFile(ctx, r)
	if err != nil {
		return api.ModelEntry{}, false, err
	}
	switch c.state {
	case fileSame:
		_, aerr := readModel(r.LocalPath, r.Reference)
		if aerr == nil {
			d.have(c.row.SizeBytes)
			d.mu.Lock()
			d.summary = fmt.Sprintf("Checked %s (%s): its SHA-256 %s… still matches; nothing to download", name, sizeText(c.row.SizeBytes), short(c.row.SHA256))
			d.mu.Unlock()
			return c.row.ModelEntry, true, nil
		}
		d.note("download_damaged", "The file of %s (%s) cannot be read as a GGUF model (%s); downloading it again", r.Reference, name, aerr.Message)
	case fileMissing:
		d.note("download_missing", "The file of %s (%s) is gone; downloading it again", r.Reference, r.LocalPath)
	case fileChanged:
		d.note("download_damaged", "The file of %s (%s) is damaged: %s; downloading it again", r.Reference, name, c.change)
	}
	m.log.Warn("catalogued model file is missing or damaged; downloading it again", "model", r.Reference, "path", r.LocalPath, "change", c.change)
	if !m.h.forgetDamaged(ctx, r) {
		return api.ModelEntry{}, false, api.Errorf(api.CodeInternal, "the damaged copy of %s could not be removed (see the hive's log)", r.Reference).
			With("file", r.LocalPath)
	}
	return api.ModelEntry{}, false, nil
}

// diskFull adds the free space of dir to an INSUFFICIENT_DISK error.
func (m *downloads) diskFull(e *api.Error, dir string) *api.Error {
	free := m.h.cfg.DiskFree
	if free == nil {
		free = hf.DiskFree
	}
	if have, err := free(dir); err == nil {
		e = e.With("available_bytes", have).With("available", (have+(1<<20-1))>>20)
	}
	return e.With("dir", dir)
}

// existing reports whether dest already holds the file (an earlier
// download whose row was removed, or another reference to the same file),
// with its SHA-256.
func (m *downloads) existing(dest string, f hf.File) (string, bool) {
	st, err := os.Stat(dest)
	if err != nil || !st.Mode().IsRegular() || f.Size > 0 && st.Size() != f.Size {
		return "", false
	}
	fh, err := os.Open(dest)
	if err != nil {
		return "", false
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return "", false
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if f.SHA256 != "" && sum != f.SHA256 {
		m.log.Warn("the file on disk differs from the hub's; downloading it again", "path", dest)
		return "", false
	}
	return sum, f.SHA256 != "" || f.Size > 0
}

// lockPath makes d the download of the file at dest, waiting while another
// one writes it.
func (m *downloads) lockPath(ctx context.Context, dest string, d *Download) (func(), error) {
	for {
		m.mu.Lock()
		other := m.byPath[dest]
		if other == nil {
			m.byPath[dest] = d
			m.mu.Unlock()
			return func() {
				m.mu.Lock()
				delete(m.byPath, dest)
				m.mu.Unlock()
			}, nil
		}
		m.mu.Unlock()
		d.note("download_wait", "Waiting for the download of the same file for %s", other.ModelRef)
		select {
		case <-other.finished:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// sizeText is a size for people: "1.1 MB", "640.2 MB", "4.37 GB".
func sizeText(n int64) string {
	switch {
	case n <= 0:
		return "size unknown"
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}
