package main

import (
	"context"
	"encoding/json"
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
	fs := newFlags("bench", "--what train|sample [flags]", stderr)
	var (
		what      = fs.String("what", "train", "train or sample")
		preset    = fs.String("preset", "mnist", "UNet preset (train), or with --what sample the model: mnist (bundled) or a pipeline directory / hub name")
		batch     = fs.Int("batch", 64, "batch size (train) or number of samples (sample)")
		steps     = fs.Int("steps", 1000, "optimizer steps after the first call (train), or sampling steps")
		perCall   = fs.Int("steps-per-call", 0, "steps per compiled call (0: the CLI's default)")
		kind      = fs.String("sampler", "ddpm", "ddpm or ddim (sample)")
		precision = fs.String("precision", "fp32", "fp32 or bf16 (train)")
		out       = fs.String("out", "", "sample: the PNG to write (default: a temporary file)")
		random    = fs.Bool("random-weights", false, "sample: a UNet of --preset with random weights and a default DDPM scheduler (for timing)")
		repeat    = fs.Int("repeat", 1, "sample: run the whole sampling this many times in one process, the later runs with the graphs compiled (reported as repeat_wall_s)")
		bk        = backendFlag(fs)
		devices   = fs.Int("devices", 0, devicesUsage)
	)
	if err := parse(fs, args); err != nil {
		return err
	}
	b, info, err := openBackend(*bk, stderr)
	if err != nil {
		return err
	}
	res := map[string]any{"what": *what, "backend": info.Kind.String(), "device": info.Device}
	switch *what {
	case "train":
		cfg, err := unet.Preset(*preset)
		if err != nil {
			return err
		}
		m, err := unet.New(cfg)
		if err != nil {
			return err
		}
		tc := train.Default()
		tc.BatchSize = *batch
		tc.ZeroInit = []string{"conv_out.weight", "conv_out.bias"}
		tc.StepsPerCall = *perCall
		if tc.StepsPerCall == 0 {
			tc.StepsPerCall = stepsPerCall
		}
		if err := tc.Precision.UnmarshalText([]byte(*precision)); err != nil {
			return usagef("bench: --precision: %v", err)
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
		if res["devices"], err = useDevices(tr, b, info, *devices, tc.BatchSize, stderr); err != nil {
			return err
		}
		st, err := tr.Init(0)
		if err != nil {
			return err
		}
		bt, _ := data.NewBatcher(data.BatcherState{N: n, BatchSize: tc.BatchSize, DropLast: true, Seed: 3})
		k := int64(tc.StepsPerCall)
		t0 := time.Now()
		if err := tr.Run(ctx, st, bt, k, nil); err != nil {
			return err
		}
		first := time.Since(t0)
		until := k + int64(*steps)/k*k
		var last []float32
		t1 := time.Now()
		err = tr.Run(ctx, st, bt, until, func(_ *train.State, _ int, l []float32) error { last = l; return nil })
		if err != nil {
			return err
		}
		el := time.Since(t1)
		ran := until - k
		res["batch"], res["steps_per_call"], res["precision"] = tc.BatchSize, tc.StepsPerCall, *precision
		res["params"] = paramCount(m)
		res["first_call_s"] = first.Seconds()
		res["steps"] = ran
		res["step_ms"] = el.Seconds() * 1000 / float64(ran)
		res["images_per_s"] = float64(ran) * float64(tc.BatchSize) / el.Seconds()
		res["last_loss"] = last[len(last)-1]
		flops := 3 * float64(m.FLOPs(h, w)) * float64(tc.BatchSize) // forward + backward
		res["train_step_gflop"] = flops / 1e9
		res["tflops"] = flops / (el.Seconds() / float64(ran)) / 1e12
	case "sample":
		if *repeat < 1 {
			return usagef("bench: --repeat %d: want at least 1", *repeat)
		}
		t0 := time.Now()
		var p *pipeline.Pipeline
		if *random {
			cfg, err := unet.Preset(*preset)
			if err != nil {
				return err
			}
			m, err := unet.New(cfg)
			if err != nil {
				return err
			}
			if p, err = pipeline.New(cfg, nn.InitTensors(m.Specs(), 0), schedule.Default(), sampler.DefaultDDPM()); err != nil {
				return err
			}
			res["params"] = paramCount(m)
		} else {
			src := *preset
			if src == "mnist" {
				if src, err = models.Dir("mnist"); err != nil {
					return err
				}
			} else if src, err = resolveModel(ctx, src, stderr); err != nil {
				return err
			}
			if p, err = pipeline.Load(src); err != nil {
				return err
			}
		}
		model, err := newUNetModel(p.UNet, p.Weights)
		if err != nil {
			return err
		}
		s, err := schedule.New(p.Schedule)
		if err != nil {
			return err
		}
		var plan sampler.Plan
		if *kind == "ddim" {
			plan, err = p.DDIM.Plan(s, *steps)
		} else {
			plan, err = p.DDPM.Plan(s, *steps)
		}
		if err != nil {
			return err
		}
		uc := p.UNet.Config
		shape := []int{uc.InChannels, uc.SampleSize[0], uc.SampleSize[1]}
		opts := sampler.Options{N: *batch, Shape: shape, StepsPerCall: *perCall}
		if *perCall == 0 {
			opts.StepsPerCall = stepsPerCall
		}
		runner, err := sampler.NewRunner(b, model)
		if err != nil {
			return err
		}
		defer runner.Finalize()
		load := time.Since(t0)
		path := *out
		if path == "" {
			dir, err := os.MkdirTemp("", "ddpm-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			path = filepath.Join(dir, "samples.png")
		}
		// sample runs the whole sampling once, from drawing x_T to the PNG, through the one Runner.
		sample := func() error {
			x, err := runner.Run(plan, opts)
			if err != nil {
				return err
			}
			defer x.FinalizeAll()
			return writeSamples(path, tensors.MustCopyFlatData[float32](x), *batch, shape, 0, 0)
		}
		if err := sample(); err != nil {
			return err
		}
		res["wall_s"] = time.Since(t0).Seconds()
		st := runner.Stats()
		res["sampler"], res["steps"], res["n"], res["steps_per_call"] = *kind, *steps, *batch, opts.StepsPerCall
		res["load_s"] = load.Seconds()
		res["first_call_s"] = st.FirstCall.Seconds()
		res["steps_s"] = st.Loop.Seconds()
		if st.Calls > 1 { // else no call after the first
			res["steady_step_ms"] = float64(st.SteadyStep()) / float64(time.Millisecond)
		}
		if *repeat > 1 {
			t1 := time.Now()
			for range *repeat - 1 {
				if err := sample(); err != nil {
					return err
				}
			}
			res["repeat"] = *repeat
			res["repeat_wall_s"] = time.Since(t1).Seconds() / float64(*repeat-1)
		}
	default:
		return usagef("bench: --what %q: want train or sample", *what)
	}
	if info.Kind != backend.Go {
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
	j, _ := json.Marshal(res)
	fmt.Fprintln(stdout, string(j))
	return nil
}
