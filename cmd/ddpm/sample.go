package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/pipeline"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/train"
	"github.com/ddpm/ddpm/unet"
	"github.com/ddpm/ddpm/viz"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// unetModel adapts a UNet and its weights, one flat vector (nn.Flatten), to sampler.Model: one
// device buffer per call instead of one per weight.
type unetModel struct {
	m    *unet.Model
	flat *tensors.Tensor
}

func newUNetModel(m *unet.Model, weights []*tensors.Tensor) (unetModel, error) {
	flat, err := nn.Flatten(m.Specs(), weights)
	return unetModel{m, flat}, err
}

func (u unetModel) Weights() []*tensors.Tensor { return []*tensors.Tensor{u.flat} }

func (u unetModel) Denoiser(nodes []*graph.Node) sampler.Denoiser {
	w := nn.NewWeights(u.m.Specs(), nn.SplitFlat(u.m.Specs(), nodes[0])).Scope()
	return func(xt, t, y *graph.Node) *graph.Node { return u.m.Forward(w, xt, t, y) }
}

func runSample(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sample", "[--run DIR | --model DIR_OR_HUB_NAME] [flags]", stderr)
	var (
		runDir     = fs.String("run", "", "a run directory of ddpm train (its EMA weights)")
		modelFlag  = fs.String("model", "", "a diffusers pipeline directory or a hub name such as google/ddpm-cifar10-32 (default: the bundled MNIST model)")
		samplerArg = fs.String("sampler", "", "dpmsolver++, sde-dpmsolver++, euler, euler_ancestral, heun, ddim or ddpm (default: the pipeline's scheduler; see pipeline.DefaultSampler for the bundled model)")
		schedArg   = fs.String("scheduler", "", "same as --sampler, in diffusers' words (a class name such as DPMSolverMultistepScheduler also works)")
		karras     = fs.Bool("karras", false, "Karras sigmas (use_karras_sigmas) for dpmsolver++, euler and heun")
		schedSet   = stringsFlag(fs, "scheduler-config", "a scheduler setting key=value over the pipeline's scheduler_config.json, e.g. solver_order=3 (repeatable)")
		steps      = fs.Int("steps", 0, "sampling steps (default: all T for ddpm, 50 for ddim, 10 for the bundled model on the pure-Go backend)")
		eta        = fs.Float64("eta", 0, "DDIM eta: 0 deterministic, 1 DDPM-like")
		variance   = fs.String("variance", "", "DDPM variance: fixed_large (beta_t) or fixed_small (beta-tilde) (default: the scheduler config's)")
		n          = fs.Int("n", 64, "number of samples")
		cols       = fs.Int("cols", 0, "grid columns (default: square)")
		seed       = fs.Int64("seed", 0, "seed of x_T and the step noise (same seed, same samples on the same backend)")
		out        = fs.String("out", "samples.png", "output: .png (a grid, clamped to [-1, 1]) or .safetensors (key \"sample\", [N,C,H,W] float32, model space, unclamped)")
		initArg    = fs.String("init", "", "x_T from FILE.safetensors#KEY ([N,C,H,W] float32, unit normal: the scheduler multiplies it by its init_noise_sigma) instead of the seed")
		noiseArg   = fs.String("noise", "", "the step noise from FILE.safetensors#KEY ([steps,N,C,H,W], in step order) instead of the seed")
		trajectory = fs.String("trajectory", "", "also write ~10 frames of the reverse process (x_t and the model's x0 estimate) to this .png or .gif")
		online     = fs.Bool("online", false, "with --run: use the online weights of the last checkpoint instead of the EMA weights")
		scale      = fs.Int("scale", 0, "grid upscale factor (default: 2 for images under 64 pixels)")
		perCall    = fs.Int("steps-per-call", 0, "sampling steps per compiled call (default 1: more steps per call compile longer than they save)")
		exact      = fs.Bool("exact", false, "float32-exact products and convolutions on GPUs (3 TF32 passes, 3x slower; default: TF32 tensor cores)")
		bk         = backendFlag(fs)
		cond       = addCondSampleFlags(fs)
		threads    = fs.Int("threads", 0, "threads of the CPU engine (default: all cores)")
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
		if src, err = cond.bundled(); err != nil {
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

	eng, info, bkName, err := openEngine(*bk, p.UNet.Config, model.flat, *threads, stderr)
	if err != nil {
		return err
	}
	var b backends.Backend
	if eng == nil {
		if b, info, err = openBackend(bkName, stderr); err != nil {
			return err
		}
	}
	if *exact {
		nn.SetPrecision(nn.Highest)
	}
	plan, desc, err := chooseSampler(p, *samplerArg, *steps, *eta, *variance, *karras, *schedSet, bundled, info.Kind == backend.Go || info.Kind == backend.OneDNN)
	if err != nil {
		return err
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
	guided, classCols, condDesc, err := cond.apply(fs, p.UNet.Config, &opts, model, *cols)
	if err != nil {
		return err
	}
	if classCols > 0 {
		*cols = classCols
	}
	if condDesc != "" {
		desc += ", " + condDesc
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
	var x *tensors.Tensor
	if eng != nil {
		den, err := engineDenoiser(eng, cond, p.UNet.Config, opts.Shape)
		if err != nil {
			return err
		}
		if x, err = sampler.RunHost(den, plan, opts); err != nil {
			return err
		}
	} else {
		runner, err := sampler.NewRunner(b, guided)
		if err != nil {
			return err
		}
		defer runner.Finalize()
		if x, err = runner.Run(plan, opts); err != nil {
			return err
		}
		if info.Kind != backend.Go {
			st := runner.Stats()
			fmt.Fprintf(stderr, "first call (compile + %d steps): %.1fs%s; then %.2f ms per step\n", st.StepsPerCall,
				(st.Draw + st.FirstCall).Seconds(), compileNote(info), st.SteadyStep().Seconds()*1000)
		}
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

// chooseSampler builds the sampling plan the flags ask for (pipeline.Choice: the scheduler class built from
// the pipeline's scheduler_config.json as diffusers' from_config does), or the default one.
func chooseSampler(p *pipeline.Pipeline, class string, steps int, eta float64, variance string, karras bool, settings []string, bundled, cpu bool) (sampler.Plan, string, error) {
	cfg, err := p.SchedulerJSON()
	if err != nil {
		return nil, "", err
	}
	c := pipeline.Choice{Class: class, Steps: steps, Eta: eta, Karras: karras, Overrides: settings}
	if class == "" {
		switch {
		case bundled:
			def := pipeline.DefaultSampler(cpu)
			c.Class = def.Class
			if steps == 0 {
				c = def
				c.Eta, c.Karras, c.Overrides = eta, karras, settings
			}
		case p.DefaultScheduler() == pipeline.DDIMScheduler:
			c.Class = "ddim"
		default:
			c.Class = p.DefaultScheduler().String()
		}
	}
	if variance != "" {
		c.Overrides = append(c.Overrides, "variance_type="+variance)
	}
	if c.Steps == 0 {
		c.Steps = 50 // diffusers pipelines' default; all T for DDPM
		if cls := strings.ToLower(c.Class); cls == "ddpm" || cls == "ddpmscheduler" {
			c.Steps = p.Schedule.T
		}
	}
	r, err := c.Plan(cfg)
	if err != nil {
		return nil, "", usagef("sample: %v", err)
	}
	return r.Plan, r.Desc, nil
}

// stringsFlag is a repeatable string flag.
func stringsFlag(fs *flag.FlagSet, name, usage string) *[]string {
	var v stringList
	fs.Var(&v, name, usage)
	return (*[]string)(&v)
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

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

// sampleGrid writes an 8x8 grid of EMA samples with DDIM (fixed seed, so grids compare across epochs);
// for a class-conditional model one row of 8 per class, of the plain conditional model (guidance 1).
func sampleGrid(b backends.Backend, kind backend.Kind, model *unet.Model, ema *tensors.Tensor, sched *schedule.Schedule, rc runConfig, path string) error {
	c := sampler.DefaultDDIM()
	c.Prediction = rc.Train.Prediction
	plan, err := c.Plan(sched, rc.SampleSteps)
	if err != nil {
		return err
	}
	uc := model.Config
	shape := []int{uc.InChannels, uc.SampleSize[0], uc.SampleSize[1]}
	n, labels, err := gridClasses(uc)
	if err != nil {
		return err
	}
	opts := sampler.Options{N: n, Shape: shape, Seed: 1, StepsPerCall: stepsPerCall, Labels: labels}
	if kind == backend.OneDNN {
		vals, err := engineSample(model.Config, ema, plan, opts)
		if err != nil {
			return err
		}
		return writeSamples(path, vals, n, shape, 8, 2)
	}
	x, err := sampler.Run(b, unetModel{model, ema}, plan, opts)
	if err != nil {
		return err
	}
	return writeSamples(path, tensors.MustCopyFlatData[float32](x), n, shape, 8, 2)
}

// writePipeline writes the run directory's diffusers files (model_index.json, unet/, scheduler/) with
// the EMA weights.
func writePipeline(dir string, model *unet.Model, ema *tensors.Tensor, rc runConfig) error {
	weights, err := nn.Unflatten(model.Specs(), ema)
	if err != nil {
		return err
	}
	ddpm := sampler.DefaultDDPM()
	ddpm.Prediction = rc.Train.Prediction
	ddpm.Variance = rc.DDPMVariance
	p, err := pipeline.New(model.Config, weights, rc.Schedule, ddpm)
	if err != nil {
		return err
	}
	return pipeline.Save(dir, p, checkpoint.F32)
}

func resolveModel(ctx context.Context, name string, stderr io.Writer) (string, error) {
	if fi, err := os.Stat(name); err == nil && fi.IsDir() {
		return name, nil
	}
	return pipeline.Resolve(ctx, name, pipeline.Options{Token: os.Getenv("HF_TOKEN"), Progress: downloadProgress(stderr)})
}

var _ = train.Default
