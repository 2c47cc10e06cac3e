package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/models"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/pipeline"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/train"
	"github.com/ddpm/ddpm/unet"
	"github.com/ddpm/ddpm/viz"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// newUNetModel is a UNet with its weights as the sampler takes it (one flat vector, train.SamplerModel).
func newUNetModel(m *unet.Model, weights []*tensors.Tensor) (sampler.Model, error) {
	flat, err := nn.Flatten(m.Specs(), weights)
	if err != nil {
		return nil, err
	}
	return train.SamplerModel(m, flat), nil
}

func runSample(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sample", "[--run DIR | --model DIR_OR_HUB_NAME] [flags]", stderr)
	var (
		runDir     = fs.String("run", "", "a run directory of ddpm train (its EMA weights)")
		modelFlag  = fs.String("model", "", "a diffusers pipeline directory or a hub name such as google/ddpm-cifar10-32 (default: the bundled MNIST model)")
		samplerArg = fs.String("sampler", "", "ddpm (ancestral) or ddim (default: the pipeline's scheduler; ddim for the bundled model)")
		schedArg   = fs.String("scheduler", "", "same as --sampler, in diffusers' words")
		steps      = fs.Int("steps", 0, "sampling steps (default: all T for ddpm, 50 for ddim, 10 for the bundled model on the pure-Go backend)")
		eta        = fs.Float64("eta", 0, "DDIM eta: 0 deterministic, 1 DDPM-like")
		variance   = fs.String("variance", "", "DDPM variance: fixed_large (beta_t) or fixed_small (beta-tilde) (default: the scheduler config's)")
		n          = fs.Int("n", 64, "number of samples")
		cols       = fs.Int("cols", 0, "grid columns (default: square)")
		seed       = fs.Int64("seed", 0, "seed of x_T and the step noise (same seed, same samples on the same backend)")
		out        = fs.String("out", "samples.png", "output: .png (a grid, clamped to [-1, 1]) or .safetensors (key \"sample\", [N,C,H,W] float32, model space, unclamped)")
		initArg    = fs.String("init", "", "x_T from FILE.safetensors#KEY ([N,C,H,W] float32) instead of the seed")
		noiseArg   = fs.String("noise", "", "the step noise from FILE.safetensors#KEY ([steps,N,C,H,W], in step order) instead of the seed")
		trajectory = fs.String("trajectory", "", "also write ~10 frames of the reverse process (x_t and the model's x0 estimate) to this .png or .gif")
		online     = fs.Bool("online", false, "with --run: use the online weights of the last checkpoint instead of the EMA weights")
		scale      = fs.Int("scale", 0, "grid upscale factor (default: 2 for images under 64 pixels)")
		perCall    = fs.Int("steps-per-call", 0, "sampling steps per compiled call (default 1: more steps per call compile longer than they save)")
		exact      = fs.Bool("exact", false, "float32-exact products and convolutions on GPUs (3 TF32 passes, 3x slower; default: TF32 tensor cores)")
		bk         = backendFlag(fs)
	)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *schedArg != "" {
		if *samplerArg != "" && *samplerArg != *schedArg {
			return usagef("sample: --sampler %s and --scheduler %s disagree", *samplerArg, *schedArg)
		}
		*samplerArg = *schedArg
	}
	if *runDir != "" && *modelFlag != "" {
		return usagef("sample: give --run or --model, not both")
	}
	if *online && *runDir == "" {
		return usagef("sample: --online needs --run")
	}
	ext := strings.ToLower(filepath.Ext(*out))
	if ext != ".png" && ext != ".safetensors" {
		return usagef("sample: --out %s: want a .png or .safetensors file", *out)
	}

	bundled := *runDir == "" && *modelFlag == ""
	src := *runDir
	if *modelFlag != "" {
		var err error
		if src, err = resolveModel(ctx, *modelFlag, stderr); err != nil {
			return err
		}
	}
	if bundled {
		var err error
		if src, err = models.Dir("mnist"); err != nil {
			return err
		}
	}
	p, err := loadPipeline(src, *online, stderr)
	if err != nil {
		return err
	}
	model, err := newUNetModel(p.UNet, p.Weights)
	if err != nil {
		return err
	}

	b, info, err := openBackend(*bk, stderr)
	if err != nil {
		return err
	}
	if *exact {
		nn.SetPrecision(nn.Highest)
	}
	kind := strings.ToLower(*samplerArg)
	if kind == "" {
		kind = "ddpm"
		if p.DefaultScheduler() == pipeline.DDIMScheduler || bundled {
			kind = "ddim"
		}
	}
	sched, err := schedule.New(p.Schedule)
	if err != nil {
		return err
	}
	nSteps := *steps
	if nSteps == 0 {
		switch {
		case kind == "ddpm":
			nSteps = sched.T()
		case bundled && info.Kind == backend.Go:
			nSteps = 10 // 64 images in ~2.5 minutes on 2 cores
		default:
			nSteps = 50
		}
	}
	var plan sampler.Plan
	var desc string
	switch kind {
	case "ddpm":
		if err := p.Check(pipeline.DDPMScheduler); err != nil {
			return err
		}
		c := p.DDPM
		if *variance != "" {
			if err := c.Variance.UnmarshalText([]byte(*variance)); err != nil {
				return usagef("sample: --variance: %v", err)
			}
		}
		if plan, err = c.Plan(sched, nSteps); err != nil {
			return err
		}
		desc = fmt.Sprintf("DDPM, %d steps, variance %s", nSteps, c.Variance)
	case "ddim":
		if err := p.Check(pipeline.DDIMScheduler); err != nil {
			return err
		}
		c := p.DDIM
		c.Eta = *eta
		if plan, err = c.Plan(sched, nSteps); err != nil {
			return err
		}
		desc = fmt.Sprintf("DDIM, %d steps, eta %g", nSteps, c.Eta)
	default:
		return usagef("sample: --sampler %q: want ddpm or ddim", kind)
	}

	uc := p.UNet.Config
	h, w := 32, 32
	if uc.SampleSize != nil {
		h, w = uc.SampleSize[0], uc.SampleSize[1]
	}
	opts := sampler.Options{N: *n, Shape: []int{uc.InChannels, h, w}, Seed: *seed, StepsPerCall: *perCall}
	if *perCall == 0 {
		opts.StepsPerCall = stepsPerCall
	}
	if *initArg != "" {
		if opts.Init, err = readTensorArg(*initArg); err != nil {
			return err
		}
		d := opts.Init.Shape().Dimensions
		if len(d) != 4 {
			return fmt.Errorf("sample: --init %s: shape %v, want [N,C,H,W]", *initArg, d)
		}
		opts.N, opts.Shape = d[0], d[1:]
	}
	if *noiseArg != "" {
		if opts.Noise, err = readTensorArg(*noiseArg); err != nil {
			return err
		}
	}
	var frames []viz.Frame
	if *trajectory != "" {
		opts.Record = recordSteps(len(plan), 10)
		opts.OnStep = func(i, t int, xt, x0 *tensors.Tensor) {
			frames = append(frames, viz.Frame{T: t, Xt: tensors.MustCopyFlatData[float32](xt), X0Hat: tensors.MustCopyFlatData[float32](x0)})
		}
	}
	fmt.Fprintf(stderr, "sampling %d images of %dx%dx%d from %s: %s\n", opts.N, opts.Shape[0], opts.Shape[1], opts.Shape[2], describeSource(src, bundled), desc)
	start := time.Now()
	runner, err := sampler.NewRunner(b, model)
	if err != nil {
		return err
	}
	defer runner.Finalize()
	x, err := runner.Run(plan, opts)
	if err != nil {
		return err
	}
	if info.Kind != backend.Go {
		st := runner.Stats()
		fmt.Fprintf(stderr, "first call (compile + %d steps): %.1fs%s; then %.2f ms per step\n", st.StepsPerCall,
			(st.Draw + st.FirstCall).Seconds(), compileNote(info), st.SteadyStep().Seconds()*1000)
	}
	vals := tensors.MustCopyFlatData[float32](x)
	el := time.Since(start)
	if err := writeSamples(*out, vals, opts.N, opts.Shape, *cols, *scale); err != nil {
		return err
	}
	if *trajectory != "" {
		// The last frame is the returned sample itself (x_0, nothing left to predict).
		frames = append(frames, viz.Frame{T: -1, Xt: vals, X0Hat: vals})
		if err := writeTrajectory(*trajectory, frames, opts.N, opts.Shape); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "wrote %s (%d samples, %s, %.1fs on %s)\n", *out, opts.N, desc, el.Seconds(), info.Kind)
	return nil
}

// stepsPerCall is the default number of steps per compiled call, of sampling and of training, on
// every backend. Measured on an H200: DDPM-1000 of 64 MNIST images took 4.9 s with one step per call,
// 17.2 s with 10 and 84.6 s with 50, the difference being the compilation of the unrolled steps;
// training at batch 64 ran 11.1k images/s with one step per call and 9.9k with ten, whose first call
// took 36.7 s to compile instead of 15.6 s (bench/results/2026-11-26-H200-first-session.json). With
// asynchronous launches and the executable cache the same held: ten steps per call trained at 9.0-9.7k
// against 11.0k images/s, and DDPM-1000 took 2.96 s against 1.86 s with a warm cache
// (bench/results/2026-11-26-H200-cache-probe.jsonl).
const stepsPerCall = 1

func describeSource(src string, bundled bool) string {
	if bundled {
		return "the bundled MNIST model"
	}
	return src
}

// recordSteps picks about k step indices spread over n steps, the first and last included.
func recordSteps(n, k int) []int {
	if n <= k {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	out := make([]int, 0, k)
	for i := 0; i < k; i++ {
		s := i * (n - 1) / (k - 1)
		if len(out) == 0 || out[len(out)-1] != s {
			out = append(out, s)
		}
	}
	return out
}

// readTensorArg reads FILE.safetensors#KEY as a float32 tensor.
func readTensorArg(arg string) (*tensors.Tensor, error) {
	path, key, ok := strings.Cut(arg, "#")
	if !ok || key == "" {
		return nil, usagef("%q: want FILE.safetensors#KEY", arg)
	}
	f, err := checkpoint.ReadSafetensors(path)
	if err != nil {
		return nil, err
	}
	t, ok := f.Tensors[key]
	if !ok {
		return nil, fmt.Errorf("%s has no tensor %q (it has %s)", path, key, strings.Join(f.Names(), ", "))
	}
	v, err := t.Float32()
	if err != nil {
		return nil, fmt.Errorf("%s#%s: %w", path, key, err)
	}
	return tensors.FromFlatDataAndDimensions(v, t.Shape...), nil
}

func writeSamples(path string, vals []float32, n int, shape []int, cols, scale int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if strings.EqualFold(filepath.Ext(path), ".safetensors") {
		f := &checkpoint.File{Tensors: map[string]*checkpoint.Tensor{
			"sample": checkpoint.NewF32(append([]int{n}, shape...), vals)}}
		return checkpoint.WriteSafetensors(path, f)
	}
	if scale == 0 {
		scale = 1
		if shape[1] < 64 {
			scale = 2
		}
	}
	img, err := viz.Grid(vals, n, shape[0], shape[1], shape[2], cols, viz.GridOptions{Padding: 2, Scale: scale})
	if err != nil {
		return err
	}
	return viz.WritePNG(path, img)
}

func writeTrajectory(path string, frames []viz.Frame, n int, shape []int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	n = min(n, 8)
	per := shape[0] * shape[1] * shape[2]
	for i := range frames {
		frames[i].Xt = frames[i].Xt[:n*per]
		frames[i].X0Hat = frames[i].X0Hat[:n*per]
	}
	if strings.EqualFold(filepath.Ext(path), ".gif") {
		imgs, err := viz.TrajectoryGIF(frames, n, shape[0], shape[1], shape[2], viz.TrajectoryOptions{})
		if err != nil {
			return err
		}
		return viz.WriteGIF(path, imgs, 25)
	}
	img, err := viz.Trajectory(frames, n, shape[0], shape[1], shape[2], viz.TrajectoryOptions{})
	if err != nil {
		return err
	}
	return viz.WritePNG(path, img)
}

func resolveModel(ctx context.Context, name string, stderr io.Writer) (string, error) {
	if fi, err := os.Stat(name); err == nil && fi.IsDir() {
		return name, nil
	}
	return pipeline.Resolve(ctx, name, pipeline.Options{Token: os.Getenv("HF_TOKEN"), Progress: downloadProgress(stderr)})
}
