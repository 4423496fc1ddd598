package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// plainEvery is how often a download's progress is printed as a plain line
// when stderr is not a terminal.
const plainEvery = 2 * time.Second

// progress draws a one-line bar on a terminal ("Loading model ██████░░░░ 12/23
// layers"). When the output is not one, loading stays silent and a download
// prints a plain line now and then (and at 100 %), so that logs and scripts
// get no carriage returns.
type progress struct {
	w     io.Writer
	label string
	tty   bool
	last  time.Time
	drawn bool
	note  string // shown after the counts ("12.5 MB/s"), when set

	plainAt   time.Time // the last plain line
	plainDone bool      // the 100 % line was printed
}

func newProgress(w io.Writer, label string) *progress {
	return &progress{w: w, label: label, tty: isTerminal(w)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// bar draws the bar with its text (on a terminal, at most every 50 ms
// unless final).
func (p *progress) bar(done, total int64, text string, final bool) {
	now := time.Now()
	if !final && now.Sub(p.last) < 50*time.Millisecond {
		return
	}
	p.last = now
	const width = 30
	filled := 0
	if total > 0 {
		filled = int(int64(width) * min(done, total) / total)
	}
	fmt.Fprintf(p.w, "\r%s %s%s %s", p.label, strings.Repeat("█", filled), strings.Repeat("░", width-filled), text)
	if p.note != "" {
		fmt.Fprintf(p.w, " %s", p.note)
	}
	fmt.Fprint(p.w, "\033[K")
	p.drawn = true
}

func (p *progress) update(done, total int64, unit string) {
	if !p.tty || total <= 0 {
		return
	}
	p.bar(done, total, fmt.Sprintf("%3d%% %d/%d %s", 100*done/total, done, total, unit), done >= total)
}

// download shows a download: percent, MB done of the total and the speed.
func (p *progress) download(done, total int64, mbps float64) {
	text := downloadText(done, total, mbps)
	final := total > 0 && done >= total
	if p.tty {
		p.note = ""
		p.bar(done, total, text, final)
		return
	}
	now := time.Now()
	if p.plainDone || !final && !p.plainAt.IsZero() && now.Sub(p.plainAt) < plainEvery {
		return
	}
	p.plainAt, p.plainDone = now, final
	fmt.Fprintf(p.w, "[keeper] %s: %s\n", p.label, text)
}

// downloadText is "45% 0.5/1.1 MB at 2.3 MB/s" (no percent when the total
// is unknown).
func downloadText(done, total int64, mbps float64) string {
	var b strings.Builder
	if total > 0 {
		fmt.Fprintf(&b, "%3d%% %s/%s MB", 100*min(done, total)/total, mbText(done), mbText(total))
	} else {
		fmt.Fprintf(&b, "%s MB", mbText(done))
	}
	if mbps > 0 {
		fmt.Fprintf(&b, " at %.1f MB/s", mbps)
	}
	return b.String()
}

// mbText is bytes in MB (10^6) with one decimal, or none from 100 MB on.
func mbText(n int64) string {
	mb := float64(n) / 1e6
	if mb >= 100 {
		return fmt.Sprintf("%.0f", mb)
	}
	return fmt.Sprintf("%.1f", mb)
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}
