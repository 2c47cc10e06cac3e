package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/cpu"
	"github.com/ddpm/ddpm/models"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/pipeline"
	rundir "github.com/ddpm/ddpm/run"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/train"
	"github.com/ddpm/ddpm/unet"
	"github.com/ddpm/ddpm/viz"
	"github.com/gomlx/gomlx/backends"
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

// sampleFlags are the flags of ddpm sample.
type sampleFlags struct {
	fs                                       *flag.FlagSet
	run, model, sampler, scheduler, variance *string
	out, init, noise, trajectory, backend    *string
	steps, n, cols, scale, perCall           *int
	eta                                      *float64
	seed                                     *int64
	online, exact, karras                    *bool
	threads                                  *int
	schedSet                                 *[]string
	cond                                     condSampleFlags
}

func newSampleFlags(stderr io.Writer) *sampleFlags {
	fs := newFlags("sample", "[--run DIR | --model DIR_OR_HUB_NAME] [flags]", stderr)
	return &sampleFlags{fs: fs,
		run:        fs.String("run", "", "a run folder of ddpm train (its EMA weights)"),
		model:      fs.String("model", "", "a diffusers pipeline folder, a bundled model (mnist, mnist-cond, fashion-mnist, fashion-mnist-cond) or a hub name such as google/ddpm-cifar10-32 (default: the bundled MNIST model)"),
		sampler:    fs.String("sampler", "", "dpmsolver++, sde-dpmsolver++, euler, euler_ancestral, heun, ddim or ddpm (default: the pipeline's scheduler; for a bundled model, pipeline.DefaultSamplerFor: DPM-Solver++ 2M, Karras sigmas for Fashion-MNIST)"),
		scheduler:  fs.String("scheduler", "", "same as --sampler, in diffusers' words (a class name such as DPMSolverMultistepScheduler also works)"),
		karras:     fs.Bool("karras", false, "Karras sigmas (use_karras_sigmas) for dpmsolver++, euler and heun"),
		schedSet:   stringsFlag(fs, "scheduler-config", "a scheduler setting key=value over the pipeline's scheduler_config.json, e.g. solver_order=3 (repeatable)"),
		steps:      fs.Int("steps", 0, "sampling steps, 1 to the model's T (default: T for ddpm, 50 for ddim, 10 for the bundled model on the pure-Go backend)"),
		eta:        fs.Float64("eta", 0, "DDIM eta >= 0: 0 deterministic, 1 DDPM-like"),
		variance:   fs.String("variance", "", "DDPM variance: fixed_large (beta_t), fixed_small (beta-tilde) or fixed_small_log (default: the scheduler config's)"),
		n:          fs.Int("n", 64, "number of samples, >= 1"),
		cols:       fs.Int("cols", 0, "grid columns (0: square)"),
		seed:       fs.Int64("seed", 0, "seed of x_T and the step noise (same seed, same samples on the same backend)"),
		out:        fs.String("out", "samples.png", "output: .png (a grid, clamped to [-1, 1]) or .safetensors (key \"sample\", [N,C,H,W] float32, model space, unclamped)"),
		init:       fs.String("init", "", "x_T from FILE.safetensors#KEY ([N,C,H,W] float32, unit normal: the scheduler multiplies it by its init_noise_sigma) instead of the seed"),
		noise:      fs.String("noise", "", "the step noise from FILE.safetensors#KEY ([steps,N,C,H,W], in step order) instead of the seed"),
		trajectory: fs.String("trajectory", "", "also write ~10 frames of the reverse process (x_t and the model's x0 estimate) to this .png or .gif"),
		online:     fs.Bool("online", false, "with --run: use the online weights of the last checkpoint instead of the EMA weights"),
		scale:      fs.Int("scale", 0, "grid upscale factor, 1 to 32 (0: 2 for images under 64 pixels, else 1)"),
		perCall:    fs.Int("steps-per-call", 0, "sampling steps per compiled call (0: 1; more steps per call compile longer than they save)"),
		exact:      fs.Bool("exact", false, "float32-exact products and convolutions on GPUs (3 TF32 passes, 3x slower; default: TF32 tensor cores)"),
		backend:    backendFlag(fs),
		cond:       addCondSampleFlags(fs),
		threads:    fs.Int("threads", 0, "threads of the CPU engine (default: all cores)"),
	}
}

// check checks every flag and output path before anything is loaded.
func (f *sampleFlags) check() error {
	if *f.scheduler != "" {
		if *f.sampler != "" && *f.sampler != *f.scheduler {
			return usagef("sample: --sampler %s and --scheduler %s disagree", *f.sampler, *f.scheduler)
		}
		*f.sampler = *f.scheduler
	}
	switch {
	case *f.run != "" && *f.model != "":
		return usagef("sample: give --run or --model, not both")
	case *f.online && *f.run == "":
		return usagef("sample: --online needs --run")
	case *f.eta < 0:
		return usagef("sample: --eta %g: want >= 0", *f.eta)
	case *f.trajectory != "" && abs(*f.trajectory) == abs(*f.out):
		return usagef("sample: --trajectory and --out are the same file")
	}
	if *f.sampler != "" {
		var k pipeline.Scheduler
		if err := k.UnmarshalText([]byte(*f.sampler)); err != nil && k.UnmarshalText([]byte(strings.ToLower(*f.sampler))) != nil {
			return usagef("sample: --sampler %q: %v", *f.sampler, unprefix(err))
		}
	}
	if *f.variance != "" {
		if err := checkChoice("sample", "variance", *f.variance, "fixed_large", "fixed_small", "fixed_small_log"); err != nil {
			return err
		}
	}
	for _, c := range []struct {
		flag      string
		v, lo, hi int
		note      string
	}{{"n", *f.n, 1, 1 << 20, ""}, {"cols", *f.cols, 0, 1 << 20, "(0: square)"}, {"scale", *f.scale, 0, 32, "(0: automatic)"},
		{"steps", *f.steps, 0, -1, "(0: the sampler's default)"}, {"steps-per-call", *f.perCall, 0, -1, ""}} {
		if err := checkInt("sample", c.flag, c.v, c.lo, c.hi, c.note); err != nil {
			return err
		}
	}
	for _, a := range []struct{ flag, v string }{{"init", *f.init}, {"noise", *f.noise}} {
		if path, key, ok := strings.Cut(a.v, "#"); a.v != "" && (!ok || key == "" || path == "") {
			return usagef("sample: --%s %q: want FILE.safetensors#KEY", a.flag, a.v)
		}
	}
	if err := checkOutput("sample", "out", *f.out, ".png", ".safetensors"); err != nil {
		return err
	}
	if *f.trajectory != "" {
		return checkOutput("sample", "trajectory", *f.trajectory, ".png", ".gif")
	}
	return nil
}

func runSample(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newSampleFlags(stderr)
	if err := parse(f.fs, args); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	p, src, err := f.load(ctx, stderr)
	if err != nil {
		return err
	}
	model, err := newUNetModel(p.UNet, p.Weights)
	if err != nil {
		return err
	}
	eng, b, info, err := f.open(p, model, stderr)
	if err != nil {
		return err
	}
	if *f.exact {
		nn.SetPrecision(nn.Highest)
	}
	plan, desc, err := f.plan(p, info)
	if err != nil {
		return err
	}
	opts, err := f.options(p, plan)
	if err != nil {
		return err
	}
	model, desc, err = f.conditional(p, &opts, model, desc)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "sampling %d images of %dx%dx%d from %s: %s\n", opts.N, opts.Shape[0], opts.Shape[1], opts.Shape[2], src, desc)
	var frames []viz.Frame
	if *f.trajectory != "" {
		opts.Record = recordSteps(len(plan), 10)
		opts.OnStep = func(i, t int, xt, x0 *tensors.Tensor) {
			frames = append(frames, viz.Frame{T: t, Xt: tensors.MustCopyFlatData[float32](xt), X0Hat: tensors.MustCopyFlatData[float32](x0)})
		}
	}
	start := time.Now()
	vals, err := f.sample(ctx, eng, b, info, p.UNet.Config, model, plan, opts, stderr)
	if err != nil {
		return err
	}
	el := time.Since(start)
	written, err := f.write(vals, frames, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%d samples, %s, %.1fs on %s)\n", strings.Join(written, " and "), opts.N, desc, el.Seconds(), info.Kind)
	return nil
}

// load loads the pipeline to sample and names its source.
func (f *sampleFlags) load(ctx context.Context, stderr io.Writer) (*pipeline.Pipeline, string, error) {
	src, name := *f.run, *f.run
	switch {
	case *f.model != "":
		var err error
		if src, err = resolveModel(ctx, *f.model, stderr); err != nil {
			return nil, "", err
		}
		name = src
	case *f.run == "":
		var err error
		if src, err = f.cond.bundled(); err != nil {
			return nil, "", err
		}
		name = "the bundled " + filepath.Base(src) + " model"
	default:
		if err := checkRunDir("sample", src); err != nil {
			return nil, "", err
		}
	}
	p, err := loadPipeline(src, *f.online, stderr)
	return p, name, err
}

// bundled names the bundled model the samples come from (no --run; no --model, or the name of a
// bundled one that is not also a folder here), which samples with pipeline.DefaultSamplerFor; "" when
// they come from elsewhere.
func (f *sampleFlags) bundled() string {
	switch {
	case *f.run != "":
		return ""
	case *f.model == "" && *f.cond.class != "":
		return "mnist-cond"
	case *f.model == "":
		return "mnist"
	}
	if _, err := os.Stat(*f.model); err == nil || !slices.Contains(models.Names(), *f.model) {
		return ""
	}
	return *f.model
}

// plan builds the sampling plan the flags ask for (chooseSampler), after checking --steps against the
// model's T.
func (f *sampleFlags) plan(p *pipeline.Pipeline, info backend.Info) (sampler.Plan, string, error) {
	if *f.steps > p.Schedule.T {
		return nil, "", usagef("sample: --steps %d: want between 1 and %d, the model's number of diffusion steps", *f.steps, p.Schedule.T)
	}
	return chooseSampler(p, *f.sampler, *f.steps, *f.eta, *f.variance, *f.karras, *f.schedSet, f.bundled(), info.Kind == backend.Go || info.Kind == backend.OneDNN)
}

// chooseSampler builds the sampling plan the flags ask for (pipeline.Choice: the scheduler class built from
// the pipeline's scheduler_config.json as diffusers' from_config does), or the default one.
func chooseSampler(p *pipeline.Pipeline, class string, steps int, eta float64, variance string, karras bool, settings []string, bundled string, cpu bool) (sampler.Plan, string, error) {
	cfg, err := p.SchedulerJSON()
	if err != nil {
		return nil, "", err
	}
	c := pipeline.Choice{Class: class, Steps: steps, Eta: eta, Karras: karras, Overrides: settings}
	if class == "" {
		switch {
		case bundled != "":
			def := pipeline.DefaultSamplerFor(bundled, cpu)
			c.Class = def.Class
			c.Karras = karras || def.Karras
			if steps == 0 {
				c.Steps = def.Steps
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
		return nil, "", usagef("sample: %v", unprefix(err))
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

// options are the sampler's options: the shape, the seed, --init and --noise.
func (f *sampleFlags) options(p *pipeline.Pipeline, plan sampler.Plan) (sampler.Options, error) {
	uc := p.UNet.Config
	h, w := 32, 32
	if uc.SampleSize != nil {
		h, w = uc.SampleSize[0], uc.SampleSize[1]
	}
	opts := sampler.Options{N: *f.n, Shape: []int{uc.InChannels, h, w}, Seed: *f.seed, StepsPerCall: *f.perCall}
	if *f.perCall == 0 {
		opts.StepsPerCall = stepsPerCall
	}
	var err error
	if *f.init != "" {
		if opts.Init, err = readTensorArg(*f.init); err != nil {
			return opts, fmt.Errorf("sample: --init: %w", err)
		}
		d := opts.Init.Shape().Dimensions
		if len(d) != 4 || d[1] != uc.InChannels || d[2] != h || d[3] != w {
			return opts, usagef("sample: --init %s: shape %v, want [N,%d,%d,%d]", *f.init, d, uc.InChannels, h, w)
		}
		opts.N = d[0]
	}
	if *f.noise != "" {
		if opts.Noise, err = readTensorArg(*f.noise); err != nil {
			return opts, fmt.Errorf("sample: --noise: %w", err)
		}
		if d := opts.Noise.Shape().Dimensions; len(d) != 5 || d[0] < len(plan)-1 || d[0] > len(plan) || d[1] != opts.N {
			return opts, usagef("sample: --noise %s: shape %v, want [%d,%d,%d,%d,%d] ([steps,N,C,H,W]; the last step's draw may be left out)", *f.noise, d, len(plan), opts.N, uc.InChannels, h, w)
		}
	}
	return opts, nil
}

// conditional applies --class, --guidance and --null-label (cond.go): labels in opts, a guided model,
// a grid of one row per class.
func (f *sampleFlags) conditional(p *pipeline.Pipeline, opts *sampler.Options, m sampler.Model, desc string) (sampler.Model, string, error) {
	guided, classCols, condDesc, err := f.cond.apply(f.fs, p.UNet.Config, opts, m, *f.cols)
	if err != nil {
		return nil, "", err
	}
	if classCols > 0 {
		*f.cols = classCols
	}
	if condDesc != "" {
		desc += ", " + condDesc
	}
	return guided, desc, nil
}

// open opens the CPU engine (engine.go) when the backend choice picks it, else a GoMLX backend.
func (f *sampleFlags) open(p *pipeline.Pipeline, model sampler.Model, stderr io.Writer) (*cpu.Net, backends.Backend, backend.Info, error) {
	eng, info, name, err := openEngine(*f.backend, p.UNet.Config, model.Weights()[0], *f.threads, stderr)
	if err != nil || eng != nil {
		return eng, nil, info, err
	}
	b, info, err := openBackend(name, stderr)
	return nil, b, info, err
}

// sample runs the sampler on the engine or the backend with a progress bar, stopping at the next step
// when ctx is done.
func (f *sampleFlags) sample(ctx context.Context, eng *cpu.Net, b backends.Backend, info backend.Info, uc unet.Config, model sampler.Model, plan sampler.Plan, opts sampler.Options, stderr io.Writer) ([]float32, error) {
	bar := newProgress(stderr, "sampling", int64(len(plan)), "steps", "make it shorter with --steps or --n, or use a GPU (--backend cuda)")
	opts.Progress = func(done, total int) { bar.update(int64(done), "") }
	opts.Context = ctx
	var x *tensors.Tensor
	var stats *sampler.RunStats
	var err error
	if eng != nil {
		var den sampler.HostDenoiser
		if den, err = engineDenoiser(eng, f.cond, uc, opts.Shape); err == nil {
			x, err = sampler.RunHost(den, plan, opts)
		}
	} else {
		var runner *sampler.Runner
		if runner, err = sampler.NewRunner(b, model); err != nil {
			return nil, err
		}
		defer runner.Finalize()
		x, err = runner.Run(plan, opts)
		st := runner.Stats()
		stats = &st
	}
	bar.finish()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "sampling stopped: nothing was written")
			return nil, ctx.Err()
		}
		return nil, err
	}
	if stats != nil && info.Kind != backend.Go {
		fmt.Fprintf(stderr, "first call (compile + %d steps): %.1fs%s; then %.2f ms per step\n", stats.StepsPerCall,
			(stats.Draw + stats.FirstCall).Seconds(), compileNote(info), stats.SteadyStep().Seconds()*1000)
	}
	return tensors.CopyFlatData[float32](x)
}

// write writes the samples and the trajectory and returns the files written.
func (f *sampleFlags) write(vals []float32, frames []viz.Frame, opts sampler.Options) ([]string, error) {
	if err := writeSamples(*f.out, vals, opts.N, opts.Shape, *f.cols, *f.scale); err != nil {
		return nil, err
	}
	written := []string{*f.out}
	if *f.trajectory != "" {
		// The last frame is the returned sample itself (x_0, nothing left to predict).
		frames = append(frames, viz.Frame{T: -1, Xt: vals, X0Hat: vals})
		if err := writeTrajectory(*f.trajectory, frames, opts.N, opts.Shape); err != nil {
			return written, err
		}
		written = append(written, "the trajectory "+*f.trajectory)
	}
	return written, nil
}

// checkRunDir checks that dir is a folder and removes the leftovers of a killed writer if it is a run
// folder.
func checkRunDir(cmd, dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return usagef("%s: --run %s: no such folder (want a run folder of ddpm train)", cmd, dir)
	}
	if !fi.IsDir() {
		return usagef("%s: --run %s is a file (want a run folder of ddpm train)", cmd, dir)
	}
	_, err = rundir.Clean(dir)
	return err
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
	if slices.Contains(models.Names(), name) {
		return models.Dir(name) // a bundled model (a folder of that name, above, comes first)
	}
	return pipeline.Resolve(ctx, name, pipeline.Options{Token: os.Getenv("HF_TOKEN"), Progress: downloadProgress(stderr)})
}
