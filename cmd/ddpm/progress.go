package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress reports the advance of a long piece of work on stderr: a bar (schollz/progressbar) on a
// terminal, a plain line every 10 seconds otherwise, each with the time left estimated from the
// measured rate. The rate is measured from the first update on, so set-up and compilation do not
// count. When the estimate first exceeds a minute and hint is set, one line says how long and how to
// make it shorter.
type progress struct {
	w        io.Writer
	what     string // "sampling", "training", ...
	unit     string // "steps", "images"
	total    int64
	hint     string
	bar      *progressbar.ProgressBar
	first    time.Time
	done0    int64
	last     time.Time
	interval time.Duration
	hinted   bool
}

// progressEvery is the interval of the plain progress lines.
var progressEvery = 10 * time.Second

func newProgress(w io.Writer, what string, total int64, unit, hint string) *progress {
	p := &progress{w: w, what: what, unit: unit, total: total, hint: hint, interval: progressEvery}
	if isTerminal(w) {
		p.bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionSetWidth(24),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionShowDescriptionAtLineEnd())
	}
	return p
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// left estimates the time to finish from the rate since the first update; ok is false before the
// rate is known.
func (p *progress) left(done int64, now time.Time) (time.Duration, bool) {
	if p.first.IsZero() || done <= p.done0 {
		return 0, false
	}
	per := now.Sub(p.first) / time.Duration(done-p.done0)
	return per * time.Duration(p.total-done), true
}

// update shows done of total with a detail ("loss 0.0312").
func (p *progress) update(done int64, detail string) {
	now := time.Now()
	firstUpdate := p.first.IsZero()
	if firstUpdate {
		p.first, p.done0 = now, done
	}
	eta, known := p.left(done, now)
	if known && !p.hinted && p.hint != "" && eta > time.Minute {
		p.hinted = true
		p.note(fmt.Sprintf("note: %s takes about %s more at this speed; %s", p.what, fmtDuration(eta), p.hint))
	}
	if p.bar != nil {
		p.bar.Describe(detail)
		p.bar.Set64(done)
		if done >= p.total {
			fmt.Fprintln(p.w)
			p.bar = nil
		}
		return
	}
	if p.w == nil {
		return
	}
	if !firstUpdate && now.Sub(p.last) < p.interval && done != p.total {
		return
	}
	p.last = now
	line := fmt.Sprintf("%s: %d/%d %s (%.0f%%)", p.what, done, p.total, p.unit, 100*float64(done)/float64(max(p.total, 1)))
	if detail != "" {
		line += ", " + detail
	}
	if known && done < p.total {
		line += ", about " + fmtDuration(eta) + " left"
	}
	fmt.Fprintln(p.w, line)
}

// note prints a line of its own above the bar.
func (p *progress) note(line string) {
	if p.bar != nil {
		p.bar.Clear()
	}
	fmt.Fprintln(p.w, line)
}

// finish ends the bar's line.
func (p *progress) finish() {
	if p.bar != nil && !p.bar.IsFinished() {
		p.bar.Exit() // leaves the bar where it stopped
		fmt.Fprintln(p.w)
		p.bar = nil
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

// downloadProgress shows the progress of downloads, one bar or line series per file.
func downloadProgress(w io.Writer) func(file string, done, total int64) {
	var p *progress
	var cur string
	return func(file string, done, total int64) {
		if file != cur {
			cur = file
			p = newProgress(w, "downloading "+filepath.Base(file), total, "bytes", "")
		}
		p.update(done, "")
		if done == total {
			p.finish()
		}
	}
}
