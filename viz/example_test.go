package viz_test

import (
	"log"
	"math"
	"os"
	"path/filepath"

	"github.com/ddpm/ddpm/viz"
)

// Sixty-four 28x28 gray samples [64,1,28,28] in [-1, 1], in an 8x8 grid at twice the size.
func ExampleGrid() {
	samples := make([]float32, 64*28*28) // from a sampler
	img, err := viz.Grid(samples, 64, 1, 28, 28, 8, viz.GridOptions{Padding: 2, Scale: 2})
	if err != nil {
		log.Print(err)
		return
	}
	if err := viz.WritePNG(filepath.Join(os.TempDir(), "samples.png"), img); err != nil {
		log.Print(err)
	}
}

// Two runs compared on one log-scale plot.
func ExampleLossPlot() {
	var fp32, bf16 viz.Series
	fp32.Name, bf16.Name = "fp32", "bf16"
	for step := 0; step < 1000; step++ {
		loss := 0.03 + math.Exp(-float64(step)/100)
		fp32.Steps = append(fp32.Steps, float64(step))
		fp32.Loss = append(fp32.Loss, loss)
		bf16.Steps = append(bf16.Steps, float64(step))
		bf16.Loss = append(bf16.Loss, 1.1*loss)
	}
	img, err := viz.LossPlot([]viz.Series{fp32, bf16}, viz.LossPlotOptions{Title: "training loss"})
	if err != nil {
		log.Print(err)
		return
	}
	if err := viz.WritePNG(filepath.Join(os.TempDir(), "loss.png"), img); err != nil {
		log.Print(err)
	}
}

// The reverse process of four samples, as a strip and as an animation.
func ExampleTrajectory() {
	const n, c, h, w = 4, 1, 28, 28
	var frames []viz.Frame
	for _, t := range []int{999, 800, 600, 400, 200, 0} {
		frames = append(frames, viz.Frame{
			T:     t,
			Xt:    make([]float32, n*c*h*w), // x_t from the sampler at step t
			X0Hat: make([]float32, n*c*h*w), // its estimate of x_0
		})
	}
	strip, err := viz.Trajectory(frames, n, c, h, w, viz.TrajectoryOptions{})
	if err != nil {
		log.Print(err)
		return
	}
	anim, err := viz.TrajectoryGIF(frames, n, c, h, w, viz.TrajectoryOptions{})
	if err != nil {
		log.Print(err)
		return
	}
	dir := os.TempDir()
	if err := viz.WritePNG(filepath.Join(dir, "trajectory.png"), strip); err != nil {
		log.Print(err)
	}
	if err := viz.WriteGIF(filepath.Join(dir, "trajectory.gif"), anim, 20); err != nil {
		log.Print(err)
	}
}
