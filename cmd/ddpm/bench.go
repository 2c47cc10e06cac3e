package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/models"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/pipeline"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/train"
	"github.com/ddpm/ddpm/unet"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// runBench measures one figure of docs/benchmarks.md and prints it as a JSON object (one line), so
// that bench/gpu_bench.sh can put ours beside PyTorch's.
//
//	ddpm bench --what train --batch 64 --steps 2000       training throughput, first call apart
//	ddpm bench --what sample --sampler ddpm --steps 1000  wall time from the weights to the PNG
//
// --what sample reports, in seconds unless named _ms: wall_s, from loading the weights to the PNG
// written; load_s, the loading part of it (weights, model, plan); first_call_s, the first compiled call
// (compilation + its steps_per_call steps); steps_s, all the step calls, the first included;
// steady_step_ms, the mean time of one step after the first call. With --repeat N the whole sampling
// (x_T, steps, PNG) runs N-1 more times in the same process with the graphs already compiled, and
// repeat_wall_s is the mean wall time of those later runs.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newBenchFlags(stderr)
	if err := parse(f.fs, args); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	b, info, err := openBackend(*f.backend, stderr)
	if err != nil {
		return err
	}
	res := map[string]any{"what": *f.what, "backend": info.Kind.String(), "device": info.Device}
	if *f.what == "train" {
		err = benchTrain(ctx, b, info, f, res, stderr)
	} else {
		err = benchSample(ctx, b, f, res, stderr)
	}
	if err != nil {
		return err
	}
	if info.Kind != backend.Go {
		compileStats(info, res)
	}
	j, _ := json.Marshal(res)
	fmt.Fprintln(stdout, string(j))
	return nil
}

// benchFlags are the flags of ddpm bench.
type benchFlags struct {
	fs                                     *flag.FlagSet
	what, preset, sampler, precision, out  *string
	backend                                *string
	batch, steps, perCall, repeat, devices *int
	random                                 *bool
}

func newBenchFlags(stderr io.Writer) *benchFlags {
	fs := newFlags("bench", "--what train|sample [flags]", stderr)
	return &benchFlags{fs: fs,
		what:      fs.String("what", "train", "train or sample"),
		preset:    fs.String("preset", "mnist", "UNet preset (train), or with --what sample the model: mnist (bundled) or a pipeline folder / hub name"),
		batch:     fs.Int("batch", 64, "batch size (train) or number of samples (sample)"),
		steps:     fs.Int("steps", 1000, "optimizer steps after the first call (train), or sampling steps; on a CPU start with 3"),
		perCall:   fs.Int("steps-per-call", 0, "steps per compiled call (0: the CLI's default, 1)"),
		sampler:   fs.String("sampler", "ddpm", "ddpm or ddim (sample)"),
		precision: fs.String("precision", "fp32", "fp32 or bf16 (train)"),
		out:       fs.String("out", "", "sample: the PNG to write (default: a temporary file)"),
		random:    fs.Bool("random-weights", false, "sample: a UNet of --preset with random weights and a default DDPM scheduler (for timing)"),
		repeat:    fs.Int("repeat", 1, "sample: run the whole sampling this many times in one process, the later runs with the graphs compiled (reported as repeat_wall_s)"),
		backend:   backendFlag(fs),
		devices:   fs.Int("devices", 0, devicesUsage),
	}
}

func (f *benchFlags) check() error {
	for _, c := range []struct {
		flag  string
		v, lo int
	}{{"batch", *f.batch, 1}, {"steps", *f.steps, 1}, {"steps-per-call", *f.perCall, 0}, {"repeat", *f.repeat, 1}} {
		if err := checkInt("bench", c.flag, c.v, c.lo, -1, ""); err != nil {
			return err
		}
	}
	if err := checkChoice("bench", "what", *f.what, "train", "sample"); err != nil {
		return err
	}
	if err := checkChoice("bench", "sampler", *f.sampler, "ddpm", "ddim"); err != nil {
		return err
	}
	if err := checkChoice("bench", "precision", *f.precision, "fp32", "bf16"); err != nil {
		return err
	}
	if *f.out != "" {
		return checkOutput("bench", "out", *f.out, ".png")
	}
	return nil
}

// benchTrain measures training throughput on random images, the first call apart.
func benchTrain(ctx context.Context, b backends.Backend, info backend.Info, f *benchFlags, res map[string]any, stderr io.Writer) error {
	cfg, err := unet.Preset(*f.preset)
	if err != nil {
		return usagef("bench: --preset %s: want one of %s", *f.preset, presetNames())
	}
	m, err := unet.New(cfg)
	if err != nil {
		return err
	}
	tc := train.Default()
	tc.BatchSize, tc.StepsPerCall = *f.batch, *f.perCall
	tc.ZeroInit = []string{"conv_out.weight", "conv_out.bias"}
	if tc.StepsPerCall == 0 {
		tc.StepsPerCall = stepsPerCall
	}
	if err := tc.Precision.UnmarshalText([]byte(*f.precision)); err != nil {
		return usagef("bench: --precision: %v", unprefix(err))
	}
	s, _ := schedule.New(schedule.Default())
	// Random images: the speed of a step does not depend on the pixels.
	n := 4096
	c, h, w := cfg.InChannels, cfg.SampleSize[0], cfg.SampleSize[1]
	imgs := make([]float32, n*c*h*w)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range imgs {
		imgs[i] = float32(2*r.Float64() - 1)
	}
	tr, err := train.New(b, tc, m, s, imgs, []int{n, c, h, w}, nil)
	if err != nil {
		return err
	}
	if res["devices"], err = useDevices(tr, b, info, *f.devices, tc.BatchSize, stderr); err != nil {
		return err
	}
	st, err := tr.Init(0)
	if err != nil {
		return err
	}
	bt, _ := data.NewBatcher(data.BatcherState{N: n, BatchSize: tc.BatchSize, DropLast: true, Seed: 3})
	k := int64(tc.StepsPerCall)
	until := k + int64(*f.steps)/k*k
	bar := newProgress(stderr, "training", until, "steps", "make it shorter with --steps, or use a GPU (--backend cuda)")
	defer bar.finish()
	t0 := time.Now()
	if err := tr.Run(ctx, st, bt, k, nil); err != nil {
		return err
	}
	first := time.Since(t0)
	var last []float32
	t1 := time.Now()
	err = tr.Run(ctx, st, bt, until, func(st *train.State, _ int, l []float32) error {
		last = l
		bar.update(st.Step, "")
		return nil
	})
	if err != nil {
		return err
	}
	el := time.Since(t1)
	ran := until - k
	res["batch"], res["steps_per_call"], res["precision"] = tc.BatchSize, tc.StepsPerCall, *f.precision
	res["params"] = paramCount(m)
	res["first_call_s"] = first.Seconds()
	res["steps"] = ran
	res["step_ms"] = el.Seconds() * 1000 / float64(ran)
	res["images_per_s"] = float64(ran) * float64(tc.BatchSize) / el.Seconds()
	res["last_loss"] = last[len(last)-1]
	flops := 3 * float64(m.FLOPs(h, w)) * float64(tc.BatchSize) // forward + backward
	res["train_step_gflop"] = flops / 1e9
	res["tflops"] = flops / (el.Seconds() / float64(ran)) / 1e12
	return nil
}

// benchPipeline is the pipeline --what sample times: the bundled model, a folder or hub name, or a
// UNet of --preset with random weights.
func benchPipeline(ctx context.Context, f *benchFlags, res map[string]any, stderr io.Writer) (*pipeline.Pipeline, error) {
	if *f.random {
		cfg, err := unet.Preset(*f.preset)
		if err != nil {
			return nil, usagef("bench: --preset %s: want one of %s", *f.preset, presetNames())
		}
		m, err := unet.New(cfg)
		if err != nil {
			return nil, err
		}
		res["params"] = paramCount(m)
		return pipeline.New(cfg, nn.InitTensors(m.Specs(), 0), schedule.Default(), sampler.DefaultDDPM())
	}
	src := *f.preset
	var err error
	if src == "mnist" {
		src, err = models.Dir("mnist")
	} else {
		src, err = resolveModel(ctx, src, stderr)
	}
	if err != nil {
		return nil, err
	}
	return pipeline.Load(src)
}

// benchSample measures sampling, from the weights to the PNG.
func benchSample(ctx context.Context, b backends.Backend, f *benchFlags, res map[string]any, stderr io.Writer) error {
	t0 := time.Now()
	p, err := benchPipeline(ctx, f, res, stderr)
	if err != nil {
		return err
	}
	model, err := newUNetModel(p.UNet, p.Weights)
	if err != nil {
		return err
	}
	s, err := schedule.New(p.Schedule)
	if err != nil {
		return err
	}
	plan, err := p.DDPM.Plan(s, *f.steps)
	if *f.sampler == "ddim" {
		plan, err = p.DDIM.Plan(s, *f.steps)
	}
	if err != nil {
		return err
	}
	uc := p.UNet.Config
	shape := []int{uc.InChannels, uc.SampleSize[0], uc.SampleSize[1]}
	bar := newProgress(stderr, "sampling", int64(len(plan)**f.repeat), "steps", "make it shorter with --steps or --batch, or use a GPU (--backend cuda)")
	defer bar.finish()
	opts := sampler.Options{N: *f.batch, Shape: shape, StepsPerCall: *f.perCall, Context: ctx}
	if *f.perCall == 0 {
		opts.StepsPerCall = stepsPerCall
	}
	runner, err := sampler.NewRunner(b, model)
	if err != nil {
		return err
	}
	defer runner.Finalize()
	load := time.Since(t0)
	path := *f.out
	if path == "" {
		dir, err := os.MkdirTemp("", "ddpm-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "samples.png")
	}
	// sample runs the whole sampling once, from drawing x_T to the PNG, through the one Runner.
	sample := func(i int) error {
		opts.Progress = func(done, total int) { bar.update(int64(i*total+done), "") }
		x, err := runner.Run(plan, opts)
		if err != nil {
			return err
		}
		defer x.FinalizeAll()
		return writeSamples(path, tensors.MustCopyFlatData[float32](x), *f.batch, shape, 0, 0)
	}
	if err := sample(0); err != nil {
		return err
	}
	res["wall_s"] = time.Since(t0).Seconds()
	st := runner.Stats()
	res["sampler"], res["steps"], res["n"], res["steps_per_call"] = *f.sampler, *f.steps, *f.batch, opts.StepsPerCall
	res["load_s"] = load.Seconds()
	res["first_call_s"] = st.FirstCall.Seconds()
	res["steps_s"] = st.Loop.Seconds()
	if st.Calls > 1 { // else no call after the first
		res["steady_step_ms"] = float64(st.SteadyStep()) / float64(time.Millisecond)
	}
	if *f.repeat > 1 {
		t1 := time.Now()
		for i := 1; i < *f.repeat; i++ {
			if err := sample(i); err != nil {
				return err
			}
		}
		res["repeat"] = *f.repeat
		res["repeat_wall_s"] = time.Since(t1).Seconds() / float64(*f.repeat-1)
	}
	return nil
}

// compileStats adds the XLA backend's compilation counts and cost analysis to res.
func compileStats(info backend.Info, res map[string]any) {
	cs := backend.Compilations()
	res["compiled"], res["loaded"], res["compile_s"], res["load_s_exec"] = cs.Compiled, cs.Loaded, cs.CompileTime.Seconds(), cs.LoadTime.Seconds()
	res["async"] = info.Async
	if cs.Problem != "" {
		res["cache_problem"] = cs.Problem
	}
	// XLA's own count for the largest program (the training step, or the sampling step): FLOPs and
	// the bytes its fused kernels move, and what that means at the measured step time.
	var big backend.ProgramCost
	for _, p := range cs.Programs {
		if p.FLOPs > big.FLOPs {
			big = p
		}
	}
	if big.FLOPs > 0 {
		res["xla_gflop"], res["xla_gbytes"] = big.FLOPs/1e9, big.Bytes/1e9
		ms, _ := res["step_ms"].(float64)
		if ms == 0 {
			ms, _ = res["steady_step_ms"].(float64)
		}
		if ms > 0 && big.Bytes > 0 {
			res["xla_tb_per_s"] = big.Bytes / (ms / 1000) / 1e12
		}
	}
}
