package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/models"
	"github.com/ddpm/ddpm/pipeline"
	rundir "github.com/ddpm/ddpm/run"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/viz"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// runViz draws the lesson's pictures of a run:
//
//	ddpm viz step --run DIR   one training step at several t: x0 | eps | x_t | eps_hat | eps_hat - eps
//	ddpm viz loss --run DIR   the loss curve of loss.csv (log scale, smoothed over the raw points);
//	                          --run DIR1,DIR2 draws several runs on one plot and prints their final means
func runViz(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// The picture's name is the first argument; flags may also come before it.
	pos := slices.IndexFunc(args, func(a string) bool { return a == "step" || a == "loss" })
	if pos < 0 {
		if slices.ContainsFunc(args, isHelpFlag) {
			fmt.Fprint(stderr, vizUsage)
			return flag.ErrHelp
		}
		return usagef("viz: want a picture: ddpm viz step --run DIR, or ddpm viz loss --run DIR (see `ddpm help viz`)")
	}
	rest := append(append([]string{}, args[:pos]...), args[pos+1:]...)
	if args[pos] == "loss" {
		return vizLoss(rest, stdout, stderr)
	}
	return vizStep(ctx, rest, stdout, stderr)
}

const vizUsage = `Usage: ddpm viz PICTURE --run DIR [flags]

Pictures:
  step   one training step at several t: x0 | eps | x_t | eps_hat | eps_hat - eps  (ddpm viz step -h)
  loss   the loss curve of a run's loss.csv; --run DIR1,DIR2 compares runs        (ddpm viz loss -h)
`

func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" || a == "--h" }

func vizLoss(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("viz loss", "--run DIR[,DIR2,...] [--out FILE.png]", stderr)
	runDir := fs.String("run", "", "a run folder of ddpm train, or several separated by commas to compare them")
	out := fs.String("out", "", "the PNG to write (default: RUN/loss.png)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *runDir == "" {
		return usagef("viz loss: --run DIR is required (or DIR1,DIR2,... to compare runs)")
	}
	dirs := strings.Split(*runDir, ",")
	if *out == "" {
		*out = filepath.Join(dirs[0], "loss.png")
	}
	if err := checkOutput("viz loss", "out", *out, ".png"); err != nil {
		return err
	}
	var series []viz.Series
	var names []string
	for _, d := range dirs {
		s, err := rundir.ReadLoss(filepath.Join(d, rundir.LossFile))
		if err != nil {
			return err
		}
		if len(dirs) > 1 {
			s.Name = filepath.Base(d)
			// The mean of the last tenth of the run: what two runs of the same length compare by.
			tail := s.Loss[len(s.Loss)-max(len(s.Loss)/10, 1):]
			sum := 0.0
			for _, l := range tail {
				sum += l
			}
			fmt.Fprintf(stdout, "%s: %d losses up to step %.0f; mean of the last %d: %.5f\n", d, len(s.Loss),
				s.Steps[len(s.Steps)-1], len(tail), sum/float64(len(tail)))
		}
		series, names = append(series, s), append(names, filepath.Base(d))
	}
	if err := rundir.PlotLoss(series, *out, strings.Join(names, " vs ")); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", *out)
	return nil
}

func vizStep(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("viz step", "[--run DIR] [--out FILE.png] [flags]", stderr)
	runDir := fs.String("run", "", "a run folder of ddpm train, or any pipeline folder (default: the bundled MNIST model)")
	out := fs.String("out", "", "the PNG to write (default: RUN/step.png, or step.png without --run)")
	ts := fs.String("t", "50,250,500,750,950", "the timesteps of the rows, comma-separated, each in [0, T)")
	seed := fs.Uint64("seed", 0, "seed of the images and the noise")
	dataDir := fs.String("data-dir", "", "where the dataset's idx files are (default: the run's, the cache or the Go module)")
	bk := backendFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	dir := *runDir
	if dir == "" {
		var err error
		if dir, err = models.Dir("mnist"); err != nil {
			return err
		}
	} else if err := checkRunDir("viz step", dir); err != nil {
		return err
	}
	if *out == "" {
		*out = "step.png"
		if *runDir != "" {
			*out = filepath.Join(*runDir, "step.png")
		}
	}
	if err := checkOutput("viz step", "out", *out, ".png"); err != nil {
		return err
	}
	var steps []int
	for _, f := range strings.Split(*ts, ",") {
		t, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return usagef("viz step: --t %q: want comma-separated timesteps", *ts)
		}
		steps = append(steps, t)
	}
	name := filepath.Base(dir)
	if *runDir == "" {
		name = "the bundled MNIST model"
	}
	if err := stepPanel(ctx, dir, name, *dataDir, steps, *seed, *bk, *out, stderr); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", *out)
	return nil
}

// stepPanel draws one training step of the model in dir at each timestep: a real image x0 (from the
// run's dataset, else MNIST's test split), noise eps, the closed-form jump x_t and the model's eps_hat,
// with the loss of each row.
func stepPanel(ctx context.Context, dir, name, dataDir string, steps []int, seed uint64, backendName, out string, stderr io.Writer) error {
	p, err := pipeline.Load(dir)
	if err != nil {
		return err
	}
	sched, err := schedule.New(p.Schedule)
	if err != nil {
		return err
	}
	for _, t := range steps {
		if t < 0 || t >= sched.T() {
			return usagef("viz step: --t: timestep %d: want each in [0, %d)", t, sched.T())
		}
	}
	uc := p.UNet.Config
	c, h, w := uc.InChannels, 28, 28
	if uc.SampleSize != nil {
		h, w = uc.SampleSize[0], uc.SampleSize[1]
	}
	dsName := "mnist"
	if rc, err := rundir.ReadConfig(dir); err == nil {
		dsName = rc.Data
		if dataDir == "" {
			dataDir = rc.DataDir
		}
	}
	ds, err := data.Load(ctx, dsName, "test", data.Options{Dir: dataDir, Progress: downloadProgress(stderr)})
	if err != nil {
		return err
	}
	if ds.C != c || ds.H != h || ds.W != w {
		return fmt.Errorf("viz step: the model takes %dx%dx%d images, %s has %dx%dx%d", c, h, w, dsName, ds.C, ds.H, ds.W)
	}
	k := len(steps)
	size := c * h * w
	r := rand.New(rand.NewPCG(seed, 1))
	x0 := make([]float32, 0, k*size)
	eps := make([]float32, 0, k*size)
	xt := make([]float32, 0, k*size)
	tv := make([]int32, k)
	for i, t := range steps {
		img := ds.Image(r.IntN(ds.Len()))
		e := make([]float32, size)
		for j := range e {
			e[j] = float32(r.NormFloat64())
		}
		x0 = append(x0, img...)
		eps = append(eps, e...)
		xt = append(xt, schedule.AddNoise(img, e, sched.AlphaBar[t])...)
		tv[i] = int32(t)
	}
	b, _, err := openBackend(backendName, stderr)
	if err != nil {
		return err
	}
	model, err := newUNetModel(p.UNet, p.Weights)
	if err != nil {
		return err
	}
	predT, err := graph.ExecOnce(b, func(in []*graph.Node) *graph.Node {
		return model.Denoiser(in[:1])(in[1], in[2], nil)
	}, model.Weights()[0], tensors.FromFlatDataAndDimensions(xt, k, c, h, w), tensors.FromFlatDataAndDimensions(tv, k))
	if err != nil {
		return fmt.Errorf("viz step: %w", err)
	}
	pred := tensors.MustCopyFlatData[float32](predT)
	rows := make([]viz.TrainingRow, k)
	for i, t := range steps {
		sl := func(v []float32) []float32 { return v[i*size : (i+1)*size] }
		// The panel shows the model's estimate of the noise, whatever its prediction type.
		conv := p.DDPM.Prediction.Convert(sched.AlphaBar[t])
		epsHat := make([]float32, size)
		for j := range epsHat {
			epsHat[j] = float32(conv.EpsXt*float64(sl(xt)[j]) + conv.EpsM*float64(sl(pred)[j]))
		}
		rows[i] = viz.TrainingRow{T: t, AlphaBar: sched.AlphaBar[t], X0: sl(x0), Eps: sl(eps), Xt: sl(xt), EpsHat: epsHat}
	}
	img, err := viz.TrainingPanel(rows, c, h, w, viz.TrainingPanelOptions{Title: "one training step of " + name})
	if err != nil {
		return err
	}
	return viz.WritePNG(out, img)
}
