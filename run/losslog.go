package run

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/ddpm/ddpm/internal/atomicfile"
	"github.com/ddpm/ddpm/viz"
)

// A LossLog appends "step,epoch,loss,wall_seconds" rows to a run's loss.csv. wall_seconds counts the
// training time of the whole run, across resumes.
type LossLog struct {
	f      *os.File
	w      *csv.Writer
	offset float64
}

// OpenLossLog opens dir's loss.csv to continue after fromStep: rows past it (work lost with the
// process that wrote them) and torn rows of a killed writer are dropped first, in one atomic rewrite.
func OpenLossLog(dir string, fromStep int64) (*LossLog, error) {
	path := join(dir, LossFile)
	var keep [][]string
	offset := 0.0
	if b, err := os.ReadFile(path); err == nil && fromStep > 0 {
		for _, r := range parseRows(b) {
			if s, _ := strconv.ParseInt(r[0], 10, 64); s <= fromStep {
				keep = append(keep, r)
				offset, _ = strconv.ParseFloat(r[3], 64)
			}
		}
	}
	err := atomicfile.Write(path, func(w io.Writer) error {
		c := csv.NewWriter(w)
		c.Write([]string{"step", "epoch", "loss", "wall_seconds"})
		c.WriteAll(keep)
		return c.Error()
	})
	if err != nil {
		return nil, fmt.Errorf("run: %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	return &LossLog{f: f, w: csv.NewWriter(f), offset: offset}, nil
}

// parseRows returns the well-formed data rows of a loss.csv: four fields, an integer step.
func parseRows(b []byte) [][]string {
	var rows [][]string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		r := strings.Split(sc.Text(), ",")
		if len(r) != 4 {
			continue
		}
		if _, err := strconv.ParseInt(r[0], 10, 64); err != nil {
			continue
		}
		if _, err := strconv.ParseFloat(r[3], 64); err != nil {
			continue
		}
		rows = append(rows, r)
	}
	return rows
}

// Write appends one row; wall is the seconds this process has trained.
func (l *LossLog) Write(step int64, epoch float64, loss float32, wall float64) error {
	l.w.Write([]string{strconv.FormatInt(step, 10), strconv.FormatFloat(epoch, 'f', 4, 64),
		strconv.FormatFloat(float64(loss), 'g', 6, 32), strconv.FormatFloat(l.offset+wall, 'f', 3, 64)})
	l.w.Flush()
	return l.w.Error()
}

// Close flushes and closes the file.
func (l *LossLog) Close() error { l.w.Flush(); return l.f.Close() }

// ReadLoss reads the step and loss columns of a loss.csv.
func ReadLoss(path string) (viz.Series, error) {
	var s viz.Series
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	for _, r := range parseRows(b) {
		step, err1 := strconv.ParseFloat(r[0], 64)
		loss, err2 := strconv.ParseFloat(r[2], 64)
		if err1 == nil && err2 == nil {
			s.Steps = append(s.Steps, step)
			s.Loss = append(s.Loss, loss)
		}
	}
	if len(s.Loss) == 0 {
		return s, fmt.Errorf("%s: no loss rows", path)
	}
	return s, nil
}

// PlotLoss draws the loss curves of series into a PNG.
func PlotLoss(series []viz.Series, pngPath, title string) error {
	img, err := viz.LossPlot(series, viz.LossPlotOptions{Title: "training loss, " + title, XLabel: "step", YLabel: "MSE loss"})
	if err != nil {
		return err
	}
	return viz.WritePNG(pngPath, img)
}
