package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// progress draws a one-line bar on a terminal ("Loading model ██████░░░░ 12/23
// layers") and stays silent when the output is not one, so that logs and
// scripts get no carriage returns.
type progress struct {
	w     io.Writer
	label string
	tty   bool
	last  time.Time
	drawn bool
	note  string // shown after the counts ("12.5 MB/s"), when set
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

func (p *progress) update(done, total int64, unit string) {
	if !p.tty || total <= 0 {
		return
	}
	now := time.Now()
	if done < total && now.Sub(p.last) < 50*time.Millisecond {
		return
	}
	p.last = now
	const width = 30
	filled := int(int64(width) * done / total)
	fmt.Fprintf(p.w, "\r%s %s%s %3d%% %d/%d %s", p.label, strings.Repeat("█", filled), strings.Repeat("░", width-filled),
		100*done/total, done, total, unit)
	if p.note != "" {
		fmt.Fprintf(p.w, " %s\033[K", p.note)
	}
	p.drawn = true
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}
