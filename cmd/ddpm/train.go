package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/data"
	rundir "github.com/ddpm/ddpm/run"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/train"
	"github.com/ddpm/ddpm/unet"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// trainFlags are the flags of ddpm train.
type trainFlags struct {
	fs                                                  *flag.FlagSet
	data, dataDir, out, resume, preset, unetCfg         *string
	prediction, betaSched, precision, variance, backend *string
	lrSched                                             *string
	epochs, batch, timesteps, perCall, sampleEvery      *int
	sampleSteps, keep, logEvery                         *int
	maxSteps, ckptSteps, lrWarmup                       *int64
	lr, wd, emaDecay, gradClip, holdout, ckptMinutes    *float64
	seed                                                *uint64
	emaWarmup, force                                    *bool
	devices, threads                                    *int
	cond                                                condTrainFlags
}

func newTrainFlags(stderr io.Writer) *trainFlags {
	fs := newFlags("train", "--out DIR [flags]  |  ddpm train --resume DIR [flags]", stderr)
	def := train.Default()
	return &trainFlags{fs: fs,
		data:        fs.String("data", "mnist", "dataset: "+strings.Join(data.Names(), ", ")+", or a folder of PNG/JPEG images"),
		dataDir:     fs.String("data-dir", "", "folder holding the dataset's idx .gz files (default: the cache, the Go module, a download)"),
		out:         fs.String("out", "", "run folder to create (checkpoints, logs, samples, diffusers files)"),
		force:       fs.Bool("force", false, "with --out: start an existing run folder again, deleting its checkpoints"),
		resume:      fs.String("resume", "", "continue the run in this folder from its last checkpoint (or from step 0 if it has none)"),
		preset:      fs.String("preset", "", "UNet preset: "+presetNames()+" (default mnist)"),
		unetCfg:     fs.String("unet-config", "", "UNet2DModel config.json to train instead of a preset"),
		epochs:      fs.Int("epochs", 40, "epochs to train"),
		maxSteps:    fs.Int64("max-steps", 0, "stop after this many optimizer steps (0: --epochs decides)"),
		batch:       fs.Int("batch", def.BatchSize, "batch size"),
		lr:          fs.Float64("lr", def.LR, "AdamW learning rate"),
		lrSched:     fs.String("lr-scheduler", train.LRConstant, "learning-rate schedule, diffusers' get_scheduler: "+strings.Join(train.LRSchedulers(), ", ")+" (linear and cosine decay to 0 at the run's last step)"),
		lrWarmup:    fs.Int64("lr-warmup-steps", 0, "steps of linear warmup from 0 (constant_with_warmup, linear, cosine)"),
		wd:          fs.Float64("weight-decay", def.WeightDecay, "AdamW weight decay"),
		emaDecay:    fs.Float64("ema-decay", def.EMADecay, "EMA decay, applied every step, in [0, 1)"),
		emaWarmup:   fs.Bool("ema-warmup", false, "use diffusers' EMA warm-up min(decay, (1+n)/(10+n))"),
		gradClip:    fs.Float64("max-grad-norm", 0, "clip the gradient's global norm (0: off)"),
		prediction:  fs.String("prediction", "epsilon", "training target: epsilon, sample or v_prediction"),
		betaSched:   fs.String("beta-schedule", "linear", "linear, scaled_linear, squaredcos_cap_v2 or sigmoid"),
		timesteps:   fs.Int("timesteps", 1000, "diffusion steps T"),
		holdout:     fs.Float64("holdout", 0, "fraction of the training set held out (never trained on), in [0, 1)"),
		seed:        fs.Uint64("seed", 0, "seed of the weights, batches and noise"),
		perCall:     fs.Int("steps-per-call", 0, "optimizer steps per compiled call (0: 1, the fastest measured)"),
		sampleEvery: fs.Int("sample-every", 5, "write a grid of EMA samples every N epochs (0: only at the end)"),
		sampleSteps: fs.Int("sample-steps", 50, "DDIM steps for those grids"),
		ckptSteps:   fs.Int64("checkpoint-every", 5000, "checkpoint every N steps"),
		ckptMinutes: fs.Float64("checkpoint-minutes", 10, "and at least every N minutes"),
		keep:        fs.Int("keep", 3, "checkpoints to keep"),
		logEvery:    fs.Int("log-every", 1, "write the loss every N steps"),
		precision:   fs.String("precision", "fp32", "compute precision: fp32, or bf16 (bfloat16 compute, float32 master weights and EMA)"),
		variance:    fs.String("ddpm-variance", "fixed_large", "the DDPM sampler's variance in the saved scheduler: fixed_large (beta_t) or fixed_small (beta-tilde)"),
		backend:     backendFlag(fs),
		devices:     fs.Int("devices", 0, devicesUsage), // data parallel (devices.go)
		cond:        addCondTrainFlags(fs),
		threads:     fs.Int("threads", 0, "threads of the CPU engine (default: all cores)"),
	}
}

func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newTrainFlags(stderr)
	if err := parse(f.fs, args); err != nil {
		return err
	}
	r, err := f.open()
	if err != nil {
		return err
	}
	defer r.Close()
	s, info, closeEngine, err := f.start(ctx, r, stderr)
	if err != nil {
		return err
	}
	defer closeEngine()
	announceTrain(stderr, s)
	if s.State.Step >= s.Total {
		fmt.Fprintf(stdout, "%s is at step %d already, the end of this run (%d steps); to train further, resume with a larger --max-steps or --epochs\n",
			r.Dir, s.State.Step, s.Total)
		return nil
	}
	rep := newTrainReport(stderr, s, info)
	err = s.Train(ctx, rep.report)
	rep.bar.finish()
	if err != nil {
		return trainStopped(s, err, stderr)
	}
	return finishTrain(ctx, s, rep, stdout, stderr)
}

// start opens the backend (the CPU engine's steps when the backend choice picks it, engine.go) and
// the session of r on it; closeEngine releases the engine.
func (f *trainFlags) start(ctx context.Context, r *rundir.Run, stderr io.Writer) (s *rundir.Session, info backend.Info, closeEngine func(), err error) {
	closeEngine = func() {}
	uc, err := r.Config.UNetConfig()
	if err != nil {
		return nil, backend.Info{}, closeEngine, err
	}
	if *f.threads != 0 {
		if err := setEngineThreads(*f.threads); err != nil {
			return nil, backend.Info{}, closeEngine, err
		}
	}
	onEngine, name, err := trainOnEngine(*f.backend, uc, r.Config.Train, stderr)
	if err != nil {
		return nil, backend.Info{}, closeEngine, err
	}
	b, info, err := openBackend(name, stderr)
	if err != nil {
		return nil, info, closeEngine, err
	}
	s, err = r.Start(ctx, b, *f.resume != "", data.Options{Dir: *f.dataDir, Progress: downloadProgress(stderr)}, stepsPerCall)
	if err != nil {
		return nil, info, closeEngine, err
	}
	if _, err := useDevices(s.Trainer, b, info, *f.devices, s.TrainConfig.BatchSize, stderr); err != nil {
		return nil, info, closeEngine, err
	}
	if onEngine {
		ds := s.Data
		if info, closeEngine, err = attachTrainEngine(s.Trainer, b, s.TrainConfig, uc, s.Schedule, ds.Images, []int{ds.Len(), ds.C, ds.H, ds.W}, s.Labels, stderr); err != nil {
			return nil, info, closeEngine, err
		}
		s.Sample = func(m *unet.Model, w *tensors.Tensor, plan sampler.Plan, opts sampler.Options) ([]float32, error) {
			return engineSample(m.Config, w, plan, opts)
		}
	}
	return s, info, closeEngine, nil
}

// open creates the run folder (--out) or opens it (--resume), after checking every flag.
func (f *trainFlags) open() (*rundir.Run, error) {
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	switch {
	case *f.resume != "" && *f.out != "":
		return nil, usagef("train: give --resume DIR or --out DIR, not both")
	case *f.resume == "" && *f.out == "":
		return nil, usagef("train: --out DIR is required (or --resume DIR)")
	case *f.resume != "":
		if set["force"] {
			return nil, usagef("train: --force goes with --out (to start a run folder again), not with --resume")
		}
		c, err := rundir.ReadConfig(*f.resume)
		if err != nil {
			return nil, err
		}
		if err := f.override(&c, set); err != nil {
			return nil, err
		}
		r, err := rundir.Open(*f.resume)
		if err != nil {
			return nil, err
		}
		if err := r.SetConfig(c); err != nil {
			r.Close()
			return nil, err
		}
		return r, nil
	}
	c, err := f.config()
	if err != nil {
		return nil, err
	}
	if err := checkOutputDir("train", "out", *f.out); err != nil {
		return nil, err
	}
	if err := rundir.CheckNew(*f.out, *f.force); err != nil {
		return nil, err
	}
	return rundir.Create(*f.out, c, *f.force)
}

// override applies to a resumed run's config the flags that may change; the others are an error.
func (f *trainFlags) override(c *rundir.Config, set map[string]bool) error {
	for name := range set {
		switch name {
		case "epochs":
			c.Epochs = *f.epochs
		case "max-steps":
			c.MaxSteps = *f.maxSteps
		case "steps-per-call":
			c.Train.StepsPerCall = *f.perCall
		case "checkpoint-every":
			c.CkptSteps = *f.ckptSteps
		case "checkpoint-minutes":
			c.CkptMinutes = *f.ckptMinutes
		case "keep":
			c.KeepCkpts = *f.keep
		case "sample-every":
			c.SampleEvery = *f.sampleEvery
		case "data-dir":
			c.DataDir = *f.dataDir
		case "backend", "resume", "devices", "threads":
		default:
			return usagef("train: --%s cannot change when resuming (it is fixed in %s); start a new run with --out", name, rundir.ConfigFile)
		}
	}
	return checkTrainFlags(*c)
}

// config builds a new run's config from the flags.
func (f *trainFlags) config() (rundir.Config, error) {
	tc := train.Default()
	tc.BatchSize, tc.LR, tc.WeightDecay = *f.batch, *f.lr, *f.wd
	tc.LRScheduler, tc.LRWarmupSteps = *f.lrSched, *f.lrWarmup
	if tc.LRScheduler == train.LRConstant {
		tc.LRScheduler = "" // the lesson's recipe: train.json as it always was
	}
	tc.EMADecay, tc.EMAWarmup, tc.MaxGradNorm = *f.emaDecay, *f.emaWarmup, *f.gradClip
	tc.ZeroInit = []string{"conv_out.weight", "conv_out.bias"}
	tc.StepsPerCall = *f.perCall
	sc := schedule.Default()
	sc.T = *f.timesteps
	var v sampler.Variance
	for _, e := range []struct {
		flag, value string
		into        interface{ UnmarshalText([]byte) error }
	}{{"prediction", *f.prediction, &tc.Prediction}, {"precision", *f.precision, &tc.Precision},
		{"beta-schedule", *f.betaSched, &sc.BetaSchedule}, {"ddpm-variance", *f.variance, &v}} {
		if err := e.into.UnmarshalText([]byte(e.value)); err != nil {
			return rundir.Config{}, usagef("train: --%s %s: %v", e.flag, e.value, unprefix(err))
		}
	}
	if fi, err := os.Stat(*f.data); err == nil && fi.IsDir() {
		*f.data, _ = filepath.Abs(*f.data) // a folder: found again from any directory
	}
	c := rundir.Config{Data: *f.data, DataDir: *f.dataDir, HoldOut: *f.holdout, HoldOutSeed: 1234,
		Epochs: *f.epochs, MaxSteps: *f.maxSteps, Seed: *f.seed, Schedule: sc, Train: tc,
		SampleEvery: *f.sampleEvery, SampleSteps: *f.sampleSteps, CkptSteps: *f.ckptSteps,
		CkptMinutes: *f.ckptMinutes, KeepCkpts: *f.keep, LogEvery: *f.logEvery, DDPMVariance: v}
	if err := checkTrainFlags(c); err != nil {
		return c, err
	}
	uc, err := chooseUNet(*f.preset, *f.unetCfg)
	if err != nil {
		return c, err
	}
	if err := f.cond.apply(f.fs, *f.data, &c.Train, &uc); err != nil {
		return c, err
	}
	c.UNet, err = json.Marshal(uc)
	return c, err
}

// checkTrainFlags checks a run's settings in the words of the flags that set them.
func checkTrainFlags(c rundir.Config) error {
	t := c.Train
	for _, k := range []struct {
		bad       bool
		flag, val string
		want      string
	}{
		{c.Epochs < 1 && c.MaxSteps < 1, "epochs", strconv.Itoa(c.Epochs), "at least 1 (or --max-steps)"},
		{c.MaxSteps < 0, "max-steps", fmt.Sprint(c.MaxSteps), ">= 0"},
		{t.BatchSize < 1, "batch", strconv.Itoa(t.BatchSize), ">= 1"},
		{!(t.LR > 0) || math.IsInf(t.LR, 0), "lr", fmt.Sprint(t.LR), "> 0"},
		{t.WeightDecay < 0, "weight-decay", fmt.Sprint(t.WeightDecay), ">= 0"},
		{t.EMADecay < 0 || t.EMADecay >= 1, "ema-decay", fmt.Sprint(t.EMADecay), "in [0, 1)"},
		{t.MaxGradNorm < 0, "max-grad-norm", fmt.Sprint(t.MaxGradNorm), ">= 0 (0: off)"},
		{c.Schedule.T < 2 || c.Schedule.T > 100000, "timesteps", strconv.Itoa(c.Schedule.T), "between 2 and 100000"},
		{c.HoldOut < 0 || c.HoldOut >= 1, "holdout", fmt.Sprint(c.HoldOut), "a fraction in [0, 1)"},
		{t.StepsPerCall < 0, "steps-per-call", strconv.Itoa(t.StepsPerCall), ">= 0"},
		{c.SampleEvery < 0, "sample-every", strconv.Itoa(c.SampleEvery), ">= 0"},
		{c.SampleSteps < 1 || c.SampleSteps > c.Schedule.T, "sample-steps", strconv.Itoa(c.SampleSteps), fmt.Sprintf("between 1 and --timesteps (%d)", c.Schedule.T)},
		{c.CkptSteps < 1, "checkpoint-every", fmt.Sprint(c.CkptSteps), ">= 1"},
		{!(c.CkptMinutes > 0), "checkpoint-minutes", fmt.Sprint(c.CkptMinutes), "> 0"},
		{c.KeepCkpts < 1, "keep", strconv.Itoa(c.KeepCkpts), ">= 1"},
		{c.LogEvery < 1, "log-every", strconv.Itoa(c.LogEvery), ">= 1"},
		{t.LRScheduler != "" && !slices.Contains(train.LRSchedulers(), t.LRScheduler), "lr-scheduler", t.LRScheduler, "one of " + strings.Join(train.LRSchedulers(), ", ")},
		{t.LRWarmupSteps < 0, "lr-warmup-steps", fmt.Sprint(t.LRWarmupSteps), ">= 0"},
		{t.LRWarmupSteps > 0 && (t.LRScheduler == "" || t.LRScheduler == train.LRConstant), "lr-warmup-steps", fmt.Sprint(t.LRWarmupSteps),
			"0 with --lr-scheduler constant, which has no warmup (or --lr-scheduler constant_with_warmup, linear or cosine)"},
	} {
		if k.bad {
			return usagef("train: --%s %s: want %s", k.flag, k.val, k.want)
		}
	}
	if err := c.Validate(); err != nil {
		return usageError{"train: " + unprefix(err).Error()}
	}
	return nil
}

func presetNames() string {
	names := make([]string, 0, len(unet.Presets))
	for n := range unet.Presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func chooseUNet(preset, file string) (unet.Config, error) {
	switch {
	case preset != "" && file != "":
		return unet.Config{}, usagef("train: give --preset or --unet-config, not both")
	case file != "":
		return unet.LoadConfig(file)
	case preset == "":
		preset = "mnist"
	}
	c, err := unet.Preset(preset)
	if err != nil {
		return c, usagef("train: --preset %s: want one of %s", preset, presetNames())
	}
	return c, nil
}

func announceTrain(stderr io.Writer, s *rundir.Session) {
	if r := s.Restored; r != nil {
		for _, sk := range r.Skipped {
			fmt.Fprintf(stderr, "warning: skipping an unreadable checkpoint (left as it is): %s\n", sk)
		}
		fmt.Fprintf(stderr, "resuming %s at step %d (epoch %d of %d)\n", r.Path, s.State.Step,
			min(s.State.Step/s.PerEpoch+1, s.Epochs()), s.Epochs())
	} else if s.Run.Config.Epochs > 0 && len(rundir.Checkpoints(s.Run.Dir)) == 0 && s.State.Step == 0 {
		fmt.Fprintf(stderr, "starting %s at step 0\n", s.Run.Dir)
	}
	tc := s.TrainConfig
	fmt.Fprintf(stderr, "training %s: %s parameters, %d images, batch %d, %d steps (%.1f epochs of %d), %d steps per call\n",
		s.Run.Config.Data, fmtCount(paramCount(s.Model)), s.Data.Len(), tc.BatchSize, s.Total,
		float64(s.Total)/float64(s.PerEpoch), s.PerEpoch, tc.StepsPerCall)
	if tc.LRScheduler != "" && tc.LRScheduler != train.LRConstant {
		fmt.Fprintf(stderr, "learning rate %g, %s schedule", tc.LR, tc.LRScheduler)
		if tc.DecaysLR() {
			fmt.Fprintf(stderr, " to 0 at step %d", tc.LRTotalSteps)
		}
		fmt.Fprintf(stderr, ", warmup %d steps\n", tc.LRWarmupSteps)
	}
}

// trainReport shows a training's progress.
type trainReport struct {
	s      *rundir.Session
	info   backend.Info
	bar    *progress
	batch  int
	from   int64 // the step this process started at
	step0  int64 // the step of the first report
	start  time.Time
	train  time.Duration
	recent []float32
	w      io.Writer
}

func newTrainReport(w io.Writer, s *rundir.Session, info backend.Info) *trainReport {
	hint := "shorten it with --max-steps, or use a GPU (--backend cuda)"
	return &trainReport{s: s, info: info, w: w, start: time.Now(), batch: s.TrainConfig.BatchSize, from: s.State.Step,
		bar: newProgress(w, "training", s.Total, "steps", hint)}
}

func (t *trainReport) report(r rundir.Report) {
	if r.First {
		fmt.Fprintf(t.w, "first call (compile + %d steps): %.1fs%s\n", len(r.Losses), time.Since(t.start).Seconds(), compileNote(t.info))
		t.step0 = r.Step
	}
	t.train = r.Train
	t.recent = append(t.recent, r.Losses...)
	if len(t.recent) > 100 {
		t.recent = t.recent[len(t.recent)-100:]
	}
	detail := fmt.Sprintf("epoch %d/%d, loss %.4f", r.Epoch, t.s.Epochs(), mean32(t.recent))
	if rate := t.rate(r.Step); rate > 0 {
		detail += ", " + fmtRate(rate)
	}
	t.bar.update(r.Step, detail)
}

// rate is the images per second since the first report, 0 before it can be measured.
func (t *trainReport) rate(step int64) float64 {
	if step <= t.step0 || t.train <= 0 {
		return 0
	}
	return float64(step-t.step0) * float64(t.batch) / t.train.Seconds()
}

// trainStopped explains a training that did not finish: interrupted, diverged or failed.
func trainStopped(s *rundir.Session, err error, stderr io.Writer) error {
	var nf *rundir.NonFiniteError
	switch {
	case errors.As(err, &nf):
		return fmt.Errorf("train: %s", unprefix(err))
	case errors.Is(err, context.Canceled):
		if s.Saved != "" {
			fmt.Fprintf(stderr, "stopped at step %d; checkpoint saved: %s; continue with `ddpm train --resume %s`\n", s.State.Step, s.Saved, s.Run.Dir)
		} else {
			fmt.Fprintf(stderr, "stopped at step %d; nothing to save\n", s.State.Step)
		}
	}
	return err
}

func finishTrain(ctx context.Context, s *rundir.Session, t *trainReport, stdout, stderr io.Writer) error {
	final := filepath.Join(s.Run.Dir, rundir.SamplesDir, "final.png")
	fmt.Fprintf(stderr, "checkpoint saved: %s\ndrawing %s: %d samples x %d DDIM steps%s\n", s.Saved, final,
		rundir.GridSamples, s.Run.Config.SampleSteps, gridEstimate(s, t))
	bar := newProgress(stderr, "sampling the grid", int64(s.Run.Config.SampleSteps), "steps", "")
	err := s.Finish(ctx, func(done, _ int) { bar.update(int64(done), "") })
	bar.finish()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "stopped while drawing %s; the training is complete and saved in %s\n", final, s.Saved)
			return ctx.Err()
		}
		return err
	}
	msg := fmt.Sprintf("trained %d steps (to step %d) in %s", s.State.Step-t.from, s.State.Step, fmtDuration(time.Since(t.start)))
	if rate := t.rate(s.State.Step); rate > 0 {
		msg += fmt.Sprintf("; steady state %s, %s per epoch", fmtRate(rate),
			fmtDuration(time.Duration(float64(s.PerEpoch*int64(t.batch))/rate*float64(time.Second))))
	}
	if len(t.recent) > 0 {
		msg += fmt.Sprintf("; final loss (mean of the last %d steps) %.4f", len(t.recent), mean32(t.recent))
	}
	fmt.Fprintln(stdout, msg)
	fmt.Fprintf(stdout, "run folder %s: samples/final.png, loss.png, %s; sample with `ddpm sample --run %s`\n", s.Run.Dir, rundir.LossFile, s.Run.Dir)
	return nil
}

// gridEstimate guesses the time of a sample grid from the training speed: a sampling step of 64
// images costs about a third of a training step's images (forward only).
func gridEstimate(s *rundir.Session, t *trainReport) string {
	rate := t.rate(s.State.Step)
	if rate <= 0 {
		return ""
	}
	d := time.Duration(float64(rundir.GridSamples*s.Run.Config.SampleSteps) / (3 * rate) * float64(time.Second))
	if d < 30*time.Second {
		return ""
	}
	return fmt.Sprintf(", about %s (fewer with a smaller --sample-steps)", fmtDuration(d))
}

// fmtRate formats images per second with the digits that matter.
func fmtRate(r float64) string {
	if r < 10 {
		return fmt.Sprintf("%.2f img/s", r)
	}
	return fmt.Sprintf("%.0f img/s", r)
}

func mean32(x []float32) float64 {
	if len(x) == 0 {
		return math.NaN()
	}
	s := 0.0
	for _, v := range x {
		s += float64(v)
	}
	return s / float64(len(x))
}

func paramCount(m *unet.Model) int {
	n := 0
	for _, s := range m.Specs() {
		n += s.Size()
	}
	return n
}

func fmtCount(n int) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return strconv.Itoa(n)
}

// unprefix drops a package's "name: " from an error so that the command's own prefix stands alone.
func unprefix(err error) error {
	msg := err.Error()
	for _, p := range []string{"run: ", "train: ", "schedule: ", "sampler: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return errors.New(msg)
}
