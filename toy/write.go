package toy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"github.com/ddpm/ddpm/internal/atomicfile"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ddpm/ddpm/viz"
)

// Files written by Result.Write, in this order.
const (
	ConfigFile     = "config.json"    // the Config of the run
	DataFile       = "data.csv"       // the training points: an "x,y" header, then one point a line
	SamplesFile    = "samples.csv"    // the samples, in the same format
	ScatterFile    = "scatter.png"    // data and samples side by side, on the same axes
	TrajectoryFile = "trajectory.png" // the point cloud of each Frame, x_T to x_0, on the same axes
	LossFile       = "loss.csv"       // a "step,loss" header, then one optimizer step a line
	LossPlotFile   = "loss.png"       // the loss curve
)

// Write writes the run's files (ConfigFile ... LossPlotFile) into dir, creating it; each file is
// written to a temporary name and renamed into place, so an existing file is only ever replaced by
// a complete one. It returns the paths written, also when it fails part way.
func (r *Result) Write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("toy: creating the output directory: %w", err)
	}
	files := []struct {
		name  string
		write func(path string) error
	}{
		{ConfigFile, r.writeConfig},
		{DataFile, func(p string) error { return writePoints(p, r.Data) }},
		{SamplesFile, func(p string) error { return writePoints(p, r.Samples) }},
		{ScatterFile, r.writeScatter},
		{TrajectoryFile, r.writeTrajectory},
		{LossFile, func(p string) error { return writeLoss(p, r.Loss) }},
		{LossPlotFile, r.writeLossPlot},
	}
	var written []string
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := f.write(p); err != nil {
			return written, err
		}
		written = append(written, p)
	}
	return written, nil
}

func (r *Result) writeConfig(path string) error {
	b, err := json.MarshalIndent(r.Config, "", "  ")
	if err != nil {
		return fmt.Errorf("toy: encoding the config: %w", err)
	}
	return writeText(path, func(w *bufio.Writer) {
		w.Write(b)
		w.WriteByte('\n')
	})
}

// writeScatter draws the data beside the samples. The data panel shows as many points as there
// are samples (the first ones: the points are drawn independently, so any n of them are a fair
// draw), so that the two densities compare.
func (r *Result) writeScatter(path string) error {
	d := r.Data[:min(len(r.Data), len(r.Samples))]
	title := fmt.Sprintf("%s: %d training steps, DDPM with %d steps", r.Config.Data, len(r.Loss), r.Config.Schedule.T)
	img, err := viz.Scatter([]viz.ScatterPanel{
		{Title: fmt.Sprintf("data (%d of %d points)", len(d)/2, len(r.Data)/2), XY: d},
		{Title: fmt.Sprintf("samples (%d)", len(r.Samples)/2), XY: r.Samples},
	}, viz.ScatterOptions{Title: title, PanelSize: 320})
	if err != nil {
		return err
	}
	return viz.WritePNG(path, img)
}

// writeTrajectory draws the frames in rows of five.
func (r *Result) writeTrajectory(path string) error {
	if len(r.Frames) == 0 {
		return fmt.Errorf("toy: %s: the result has no frames of the reverse process", path)
	}
	panels := make([]viz.ScatterPanel, len(r.Frames))
	for i, f := range r.Frames {
		panels[i] = viz.ScatterPanel{Title: fmt.Sprintf("t=%d", f.T), XY: f.XY}
	}
	img, err := viz.Scatter(panels, viz.ScatterOptions{
		Title:     fmt.Sprintf("%s: the reverse process from x_T (t=%d) to the samples (t=0)", r.Config.Data, r.Frames[0].T),
		PanelSize: 200, Cols: 5})
	if err != nil {
		return err
	}
	return viz.WritePNG(path, img)
}

func (r *Result) writeLossPlot(path string) error {
	s := viz.Series{Steps: make([]float64, len(r.Loss)), Loss: make([]float64, len(r.Loss))}
	for i, l := range r.Loss {
		s.Steps[i], s.Loss[i] = float64(i+1), float64(l)
	}
	img, err := viz.LossPlot([]viz.Series{s}, viz.LossPlotOptions{
		Title: "training loss, " + r.Config.Data.String(), XLabel: "step", YLabel: "MSE of the predicted noise"})
	if err != nil {
		return err
	}
	return viz.WritePNG(path, img)
}

func writePoints(path string, xy []float32) error {
	return writeText(path, func(w *bufio.Writer) {
		w.WriteString("x,y\n")
		for i := 0; i+1 < len(xy); i += 2 {
			w.WriteString(strconv.FormatFloat(float64(xy[i]), 'g', -1, 32))
			w.WriteByte(',')
			w.WriteString(strconv.FormatFloat(float64(xy[i+1]), 'g', -1, 32))
			w.WriteByte('\n')
		}
	})
}

func writeLoss(path string, loss []float32) error {
	return writeText(path, func(w *bufio.Writer) {
		w.WriteString("step,loss\n")
		for i, l := range loss {
			w.WriteString(strconv.Itoa(i + 1))
			w.WriteByte(',')
			w.WriteString(strconv.FormatFloat(float64(l), 'g', -1, 32))
			w.WriteByte('\n')
		}
	})
}

// writeText writes a file through fill to a temporary name in its directory and renames it into
// place, so that a failed write leaves no partial file.
func writeText(path string, fill func(*bufio.Writer)) error {
	err := atomicfile.Write(path, func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		fill(bw)
		return bw.Flush()
	})
	if err != nil {
		return fmt.Errorf("toy: writing %s: %w", path, err)
	}
	return nil
}
