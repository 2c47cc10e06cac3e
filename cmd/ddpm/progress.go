package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress draws a one-line progress bar on a terminal, or prints a line every few seconds when the
// output is a file, so logs stay readable.
type progress struct {
	w        io.Writer
	total    int64
	start    time.Time
	last     time.Time
	tty      bool
	interval time.Duration
	width    int
}

func newProgress(w io.Writer, total int64) *progress {
	p := &progress{w: w, total: total, start: time.Now(), interval: 10 * time.Second}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty, p.interval = true, 200*time.Millisecond
		}
	}
	return p
}

// update shows done of total, with a message; force draws even when the last draw was recent.
func (p *progress) update(done int64, msg string, force bool) {
	now := time.Now()
	if !force && now.Sub(p.last) < p.interval {
		return
	}
	p.last = now
	frac := 0.0
	if p.total > 0 {
		frac = float64(done) / float64(p.total)
	}
	eta := ""
	if el := now.Sub(p.start); done > 0 && frac > 0 && frac < 1 {
		eta = " ETA " + fmtDuration(time.Duration(float64(el)*(1/frac-1)))
	}
	line := fmt.Sprintf("%3.0f%% %s%s", 100*frac, msg, eta)
	if p.tty {
		const bar = 20
		n := int(frac * bar)
		line = "[" + strings.Repeat("=", n) + strings.Repeat(" ", bar-n) + "] " + line
		pad := ""
		if len(line) < p.width {
			pad = strings.Repeat(" ", p.width-len(line))
		}
		p.width = len(line)
		fmt.Fprintf(p.w, "\r%s%s", line, pad)
	} else {
		fmt.Fprintln(p.w, line)
	}
}

// done ends the bar's line.
func (p *progress) done() {
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.0fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}
