package pool

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"rbee/api"
	"rbee/internal/httpx"
	"rbee/internal/paths"
	"rbee/internal/sse"
)

// Log streaming (GET /v1/logs, docs/protocol.md): the node's log files are the
// hive's own (Config.LogFile, else hive*.log in <home>/logs) and one
// worker-<id>.log per worker in <home>/logs. Only regular files found by
// listing that directory are read (never a path from the request, never a
// symbolic link), so nothing outside it is served but the hive's own log.
const (
	// logPollInterval is how often a followed stream looks for new lines,
	// and for new, rotated or truncated files.
	logPollInterval = 200 * time.Millisecond
	// maxLogLine splits longer lines into several events.
	maxLogLine = 16 << 10
	// maxLogRead bounds one read of a growing file; the rest waits for the
	// next poll, so that one busy file cannot hold the others back.
	maxLogRead = 1 << 20
	// maxLogScan bounds how far back from a file's end the last lines are
	// looked for.
	maxLogScan = 16 << 20
)

// logSource is one log file and whose it is.
type logSource struct {
	name string // api.SourceHive or the worker id
	path string
}

// logSources lists the node's log files: the hive's first, then the
// workers' by file name.
func (h *Hive) logSources() ([]logSource, error) {
	var out []logSource
	if h.cfg.LogFile != "" {
		out = append(out, logSource{name: api.SourceHive, path: h.cfg.LogFile})
	}
	dir := paths.LogsDir(h.cfg.Home)
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var workers []logSource
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".log") {
			continue
		}
		p := filepath.Join(dir, name)
		switch {
		case strings.HasPrefix(name, "worker-"):
			id := strings.TrimSuffix(strings.TrimPrefix(name, "worker-"), ".log")
			if api.ValidateWorkerID(id) == nil {
				workers = append(workers, logSource{name: id, path: p})
			}
		case strings.HasPrefix(name, "hive") && h.cfg.LogFile == "":
			out = append(out, logSource{name: api.SourceHive, path: p})
		}
	}
	return append(out, workers...), nil
}

// handleLogs serves GET /v1/logs?follow=true&lines=N: an event stream of
// log events {source, line, time}. It first sends the last N lines of all
// the node's logs together, oldest first; without follow it then ends.
// With follow it goes on with the lines written after, from files that
// grow and from files that appear (new workers), until the client goes
// away or the hive shuts down. A file that is truncated or replaced
// (rotated) is read again from its start.
func (h *Hive) handleLogs(w http.ResponseWriter, r *http.Request) {
	q, e := api.ParseLogQuery(r.URL.Query())
	if e != nil {
		httpx.WriteError(w, r, e)
		return
	}
	srcs, err := h.logSources()
	if err != nil {
		h.log.Error("listing the log files failed", "error", err)
		httpx.WriteError(w, r, api.Errorf(api.CodeInternal, "the log directory could not be read"))
		return
	}
	tails := make([]*fileTail, 0, len(srcs))
	var backlog []logEntry
	for _, s := range srcs {
		t, lines, err := openTail(s, q.Lines, !q.Follow)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				h.log.Warn("reading a log file failed", "path", s.path, "error", err)
			}
			continue
		}
		tails = append(tails, t)
		backlog = lastEntries(append(backlog, lines...), q.Lines)
	}
	out := sse.NewWriter(w)
	for _, l := range backlog {
		if out.Send(l.event()) != nil {
			return
		}
	}
	if !q.Follow {
		_ = out.Close()
		return
	}
	f := &logFollower{h: h, tails: map[string]*fileTail{}}
	for _, t := range tails {
		f.tails[t.src.path] = t
	}
	ticker := time.NewTicker(logPollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.logsDone:
			// The hive stops: the lines its workers wrote while stopping
			// go out, then the stream ends.
			_ = f.poll(out)
			_ = out.Close()
			return
		case <-ticker.C:
			if f.poll(out) != nil {
				return
			}
		}
	}
}

// logFollower follows a node's log files for one stream.
type logFollower struct {
	h     *Hive
	tails map[string]*fileTail // by path
}

// poll sends what was written since the last poll, in the order of
// logSources, first picking up new files (read from their start) and
// dropping removed ones. It fails only when the client is gone.
func (f *logFollower) poll(out *sse.Writer) error {
	srcs, err := f.h.logSources()
	if err != nil {
		f.h.log.Warn("listing the log files failed", "error", err)
	}
	seen := map[string]bool{}
	for _, s := range srcs {
		seen[s.path] = true
		t := f.tails[s.path]
		if t == nil {
			t = &fileTail{src: s}
			f.tails[s.path] = t
		}
		lines, err := t.read()
		if errors.Is(err, fs.ErrNotExist) {
			delete(f.tails, s.path)
		} else if err != nil {
			f.h.log.Debug("reading a log file failed", "path", s.path, "error", err)
		}
		for _, l := range lines {
			if err := out.Send(l.event()); err != nil {
				return err
			}
		}
	}
	if err == nil {
		for p := range f.tails {
			if !seen[p] {
				delete(f.tails, p)
			}
		}
	}
	return nil
}

// logEntry is a line read from a log file. Its time orders lines of
// several files: the line's own timestamp, or for a line without one, the
// time of the line it continues.
type logEntry struct {
	line api.LogLine
}

func (l logEntry) event() api.Event {
	ll := l.line
	return api.Event{Kind: api.KindLog, Log: &ll}
}

// lastEntries orders entries by time (stable: a file's lines stay in their
// order, and files in theirs, so a multi-line entry, whose lines share a
// time, stays whole) and keeps the last n.
func lastEntries(es []logEntry, n int) []logEntry {
	slices.SortStableFunc(es, func(a, b logEntry) int { return a.line.Time.Compare(b.line.Time) })
	if len(es) > n {
		es = slices.Clone(es[len(es)-n:])
	}
	return es
}

// fileTail is where a followed log file has been read up to.
type fileTail struct {
	src  logSource
	info os.FileInfo // the file read so far (nil: none yet)
	off  int64       // bytes of it consumed
	part []byte      // a line begun but not yet ended
	last time.Time   // the time of the last dated line read
}

// openTail opens a log file: its last n lines, and a tail positioned after
// them for following. With partial, a last line without its line break is
// included in the lines; otherwise the tail keeps it until it ends.
func openTail(s logSource, n int, partial bool) (*fileTail, []logEntry, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, nil, errors.New("not a regular file")
	}
	t := &fileTail{src: s, info: info}
	size := info.Size()
	scan := n
	if last := make([]byte, 1); !partial && size > 0 {
		// A line still being written is not one of the n: it is sent when
		// it ends.
		if _, err := f.ReadAt(last, size-1); err == nil && last[0] != '\n' {
			scan++
		}
	}
	start := lastLinesStart(f, size, scan)
	data := make([]byte, size-start)
	if _, err := f.ReadAt(data, start); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	t.off = size
	if first, _, _ := bytes.Cut(data, []byte("\n")); len(data) > 0 && start > 0 {
		if _, dated := lineTime(string(first)); !dated {
			// The window begins inside an entry (the end of a stack trace,
			// say): its lines take the time of the line it began with.
			t.last = timeBefore(f, start)
		}
	}
	if !partial {
		if i := bytes.LastIndexByte(data, '\n'); i < len(data)-1 {
			t.part = slices.Clone(data[i+1:])
			data = data[:i+1]
		}
	}
	lines := t.split(data, partial)
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return t, lines, nil
}

// lastLinesStart returns where the last n lines of the file begin: just
// after the nth line break from the end (a break that ends the file does
// not count), looking back at most maxLogScan bytes.
func lastLinesStart(f io.ReaderAt, size int64, n int) int64 {
	if n == 0 {
		return size
	}
	const chunk = 64 << 10
	floor := max(0, size-maxLogScan)
	found := 0
	buf := make([]byte, chunk)
	end := size
	for end > floor {
		begin := max(floor, end-chunk)
		b := buf[:end-begin]
		if _, err := f.ReadAt(b, begin); err != nil && !errors.Is(err, io.EOF) {
			return end
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' || begin+int64(i) == size-1 {
				continue
			}
			found++
			if found == n {
				return begin + int64(i) + 1
			}
		}
		end = begin
	}
	if floor > 0 {
		// The scan stopped inside a line: start at the next full one.
		b := make([]byte, min(chunk, size-floor))
		if k, _ := f.ReadAt(b, floor); k > 0 {
			if i := bytes.IndexByte(b[:k], '\n'); i >= 0 {
				return floor + int64(i) + 1
			}
		}
	}
	return floor
}

// read returns the lines completed since the last read. A file replaced
// by another (rotation) or shorter than what was read (truncation) is read
// again from its start. A removed file is fs.ErrNotExist.
func (t *fileTail) read() ([]logEntry, error) {
	info, err := os.Lstat(t.src.path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fs.ErrNotExist
	}
	if t.info == nil || !os.SameFile(info, t.info) || info.Size() < t.off {
		t.info, t.off, t.part = info, 0, nil
	}
	if info.Size() == t.off {
		return nil, nil
	}
	f, err := os.Open(t.src.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !os.SameFile(st, t.info) {
		return nil, nil // replaced just now: the next poll starts it over
	}
	want := min(st.Size()-t.off, maxLogRead)
	if want <= 0 {
		if st.Size() < t.off {
			t.off, t.part = 0, nil
		}
		return nil, nil
	}
	data := make([]byte, want)
	k, err := f.ReadAt(data, t.off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	t.off += int64(k)
	data = append(t.part, data[:k]...)
	t.part = nil
	if i := bytes.LastIndexByte(data, '\n'); i < len(data)-1 {
		t.part = slices.Clone(data[i+1:])
		data = data[:i+1]
	}
	lines := t.split(data, false)
	// A line too long to wait for goes out in pieces.
	for len(t.part) >= maxLogLine {
		cut := cutPoint(t.part)
		lines = append(lines, t.entry(string(t.part[:cut])))
		t.part = slices.Clone(t.part[cut:])
	}
	return lines, nil
}

// split cuts data into lines. The last piece, after the last line break,
// is a line only when partial is set.
func (t *fileTail) split(data []byte, partial bool) []logEntry {
	var out []logEntry
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		var line []byte
		if i < 0 {
			if !partial {
				break
			}
			line, data = data, nil
		} else {
			line, data = data[:i], data[i+1:]
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		for len(line) > maxLogLine {
			cut := cutPoint(line)
			out = append(out, t.entry(string(line[:cut])))
			line = line[cut:]
		}
		out = append(out, t.entry(string(line)))
	}
	return out
}

// cutPoint is where to split a line longer than maxLogLine: at most
// maxLogLine bytes, never inside a UTF-8 sequence.
func cutPoint(b []byte) int {
	cut := maxLogLine
	for c := cut; c > cut-utf8.UTFMax && c > 0; c-- {
		if utf8.RuneStart(b[c]) {
			return c
		}
	}
	return cut
}

// entry makes the event of one line, dated by its timestamp when it has
// one. A line without one continues the entry above it (a stack trace, a
// message of several lines) and takes that entry's time, so that merging
// files by time keeps entries whole and in place; before any dated line
// it has none.
func (t *fileTail) entry(line string) logEntry {
	if at, ok := lineTime(line); ok {
		t.last = at
	}
	return logEntry{line: api.LogLine{Source: t.src.name, Line: line, Time: t.last}}
}

// timeBefore returns the time of the last dated line that ends before
// offset end (the start of a line), looking back at most maxLogScan bytes;
// the zero time when there is none.
func timeBefore(f io.ReaderAt, end int64) time.Time {
	const chunk = 64 << 10
	floor := max(0, end-maxLogScan)
	var carry []byte // the start of a line whose beginning is further back
	for end > floor {
		begin := max(floor, end-chunk)
		b := make([]byte, end-begin, end-begin+int64(len(carry)))
		if _, err := f.ReadAt(b, begin); err != nil && !errors.Is(err, io.EOF) {
			return time.Time{}
		}
		b = append(b, carry...)
		for {
			i := bytes.LastIndexByte(b, '\n')
			if i < 0 {
				break
			}
			if at, ok := lineTime(string(b[i+1:])); ok {
				return at
			}
			b = b[:i]
		}
		carry = b
		end = begin
	}
	if floor == 0 {
		if at, ok := lineTime(string(carry)); ok { // the file's first line
			return at
		}
	}
	return time.Time{}
}

// lineTime parses the timestamp a log line starts with: hclog's
// (2006-01-02T15:04:05.000Z0700, the daemons' format), RFC 3339, or the
// standard library log's 2006/01/02 15:04:05 (local time).
func lineTime(line string) (time.Time, bool) {
	if len(line) < 19 || line[0] < '0' || line[0] > '9' {
		return time.Time{}, false
	}
	field, _, _ := strings.Cut(line, " ")
	for _, layout := range []string{"2006-01-02T15:04:05.000Z0700", time.RFC3339Nano, "2006-01-02T15:04:05Z0700"} {
		if t, err := time.Parse(layout, field); err == nil {
			return t, true
		}
	}
	if t, err := time.ParseInLocation("2006/01/02 15:04:05", line[:19], time.Local); err == nil {
		return t, true
	}
	return time.Time{}, false
}
