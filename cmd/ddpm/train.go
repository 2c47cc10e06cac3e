package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/ddpm/ddpm/internal/atomicfile"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ddpm/ddpm/backend"
	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/train"
	"github.com/ddpm/ddpm/unet"
	"github.com/ddpm/ddpm/viz"
)

// runConfig is everything that defines a training run; it is saved as train.json in the run
// directory and inside every checkpoint, so a run can be resumed and reproduced.
type runConfig struct {
	Data         string           `json:"data"`
	DataDir      string           `json:"data_dir,omitempty"`
	HoldOut      float64          `json:"holdout"`
	HoldOutSeed  uint64           `json:"holdout_seed"`
	Epochs       int              `json:"epochs"`
	MaxSteps     int64            `json:"max_steps"`
	Seed         uint64           `json:"seed"`
	UNet         json.RawMessage  `json:"unet"`
	Schedule     schedule.Config  `json:"schedule"`
	Train        train.Config     `json:"train"`
	SampleEvery  int              `json:"sample_every_epochs"`
	SampleSteps  int              `json:"sample_steps"`
	CkptSteps    int64            `json:"checkpoint_every_steps"`
	CkptMinutes  float64          `json:"checkpoint_every_minutes"`
	KeepCkpts    int              `json:"keep_checkpoints"`
	LogEvery     int              `json:"log_every_steps"`
	DDPMVariance sampler.Variance `json:"ddpm_variance"`
	Devices      int              `json:"-"` // --devices: of this process, not of the run
}

const (
	runConfigFile = "train.json"
	lossLogFile   = "loss.csv"
	ckptDir       = "checkpoints"
)

func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("train", "--data mnist --out runs/mnist [flags]", stderr)
	def := train.Default()
	devices := fs.Int("devices", 0, devicesUsage) // data parallel (devices.go)
	var (
		dataName    = fs.String("data", "mnist", "dataset: "+strings.Join(data.Names(), ", "))
		dataDir     = fs.String("data-dir", "", "directory holding the dataset's idx .gz files (default: cache, Go module, download)")
		out         = fs.String("out", "", "run directory to create (checkpoints, logs, samples, diffusers files)")
		resume      = fs.String("resume", "", "continue the run in this directory from its last checkpoint")
		preset      = fs.String("preset", "", "UNet preset: mnist, cifar10 (default: mnist for 28x28 data)")
		unetCfg     = fs.String("unet-config", "", "UNet2DModel config.json to train instead of a preset")
		epochs      = fs.Int("epochs", 40, "epochs to train")
		maxSteps    = fs.Int64("max-steps", 0, "stop after this many optimizer steps (0: epochs decide)")
		batch       = fs.Int("batch", def.BatchSize, "batch size")
		lr          = fs.Float64("lr", def.LR, "AdamW learning rate")
		wd          = fs.Float64("weight-decay", def.WeightDecay, "AdamW weight decay")
		emaDecay    = fs.Float64("ema-decay", def.EMADecay, "EMA decay, applied every step")
		emaWarmup   = fs.Bool("ema-warmup", false, "use diffusers' EMA warm-up min(decay, (1+n)/(10+n))")
		gradClip    = fs.Float64("max-grad-norm", 0, "clip the gradient's global norm (0: off)")
		prediction  = fs.String("prediction", "epsilon", "training target: epsilon, sample, v_prediction")
		betaSched   = fs.String("beta-schedule", "linear", "linear, scaled_linear, squaredcos_cap_v2, sigmoid")
		timesteps   = fs.Int("timesteps", 1000, "diffusion steps T")
		holdout     = fs.Float64("holdout", 0, "fraction of the training set held out (never trained on), e.g. 0.1")
		seed        = fs.Uint64("seed", 0, "seed of the weights, batches and noise")
		perCall     = fs.Int("steps-per-call", 0, "optimizer steps per compiled call (0: 1, the fastest measured)")
		sampleEvery = fs.Int("sample-every", 5, "write a grid of EMA samples every N epochs (0: only at the end)")
		sampleSteps = fs.Int("sample-steps", 50, "DDIM steps for those grids")
		ckptSteps   = fs.Int64("checkpoint-every", 5000, "checkpoint every N steps")
		ckptMinutes = fs.Float64("checkpoint-minutes", 10, "and at least every N minutes")
		keep        = fs.Int("keep", 3, "checkpoints to keep")
		logEvery    = fs.Int("log-every", 1, "write the loss every N steps")
		precision   = fs.String("precision", "fp32", "compute precision: fp32, or bf16 (bfloat16 compute, float32 master weights and EMA)")
		variance    = fs.String("ddpm-variance", "fixed_large", "the DDPM sampler's variance in the saved scheduler: fixed_large (beta_t) or fixed_small (beta-tilde)")
		bk          = backendFlag(fs)
		cond        = addCondTrainFlags(fs)
		threads     = fs.Int("threads", 0, "threads of the CPU engine (default: all cores)")
	)
	if err := parse(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["threads"] {
		if err := setEngineThreads(*threads); err != nil {
			return err
		}
	}

	var rc runConfig
	var dir string
	switch {
	case *resume != "" && *out != "":
		return usagef("train: give --resume DIR or --out DIR, not both")
	case *resume != "":
		dir = *resume
		b, err := os.ReadFile(filepath.Join(dir, runConfigFile))
		if err != nil {
			return fmt.Errorf("train: --resume %s: %w (is it a run directory made by ddpm train?)", dir, err)
		}
		if err := json.Unmarshal(b, &rc); err != nil {
			return fmt.Errorf("train: %s: %w", filepath.Join(dir, runConfigFile), err)
		}
		for name := range set {
			switch name {
			case "epochs":
				rc.Epochs = *epochs
			case "max-steps":
				rc.MaxSteps = *maxSteps
			case "backend", "resume", "data-dir", "devices", "threads":
			case "steps-per-call":
				rc.Train.StepsPerCall = *perCall
			case "checkpoint-every":
				rc.CkptSteps = *ckptSteps
			case "checkpoint-minutes":
				rc.CkptMinutes = *ckptMinutes
			case "keep":
				rc.KeepCkpts = *keep
			case "sample-every":
				rc.SampleEvery = *sampleEvery
			default:
				return usagef("train: --%s cannot change when resuming (it is fixed in %s); start a new run with --out", name, runConfigFile)
			}
		}
		if set["data-dir"] {
			rc.DataDir = *dataDir
		}
	case *out == "":
		return usagef("train: --out DIR is required (or --resume DIR)")
	default:
		dir = *out
		if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
			return fmt.Errorf("train: %s exists and is not empty: resume it with --resume %s, or choose another --out", dir, dir)
		}
		cfg := def
		cfg.BatchSize, cfg.LR, cfg.WeightDecay = *batch, *lr, *wd
		cfg.EMADecay, cfg.EMAWarmup, cfg.MaxGradNorm = *emaDecay, *emaWarmup, *gradClip
		if err := cfg.Prediction.UnmarshalText([]byte(*prediction)); err != nil {
			return usagef("train: --prediction: %v", err)
		}
		cfg.ZeroInit = []string{"conv_out.weight", "conv_out.bias"}
		cfg.StepsPerCall = *perCall
		if err := cfg.Precision.UnmarshalText([]byte(*precision)); err != nil {
			return usagef("train: --precision: %v", err)
		}
		sc := schedule.Default()
		sc.T = *timesteps
		if err := sc.BetaSchedule.UnmarshalText([]byte(*betaSched)); err != nil {
			return usagef("train: --beta-schedule: %v", err)
		}
		var v sampler.Variance
		if err := v.UnmarshalText([]byte(*variance)); err != nil {
			return usagef("train: --ddpm-variance: %v", err)
		}
		rc = runConfig{Data: *dataName, DataDir: *dataDir, HoldOut: *holdout, HoldOutSeed: 1234,
			Epochs: *epochs, MaxSteps: *maxSteps, Seed: *seed, Schedule: sc, Train: cfg,
			SampleEvery: *sampleEvery, SampleSteps: *sampleSteps, CkptSteps: *ckptSteps,
			CkptMinutes: *ckptMinutes, KeepCkpts: *keep, LogEvery: *logEvery, DDPMVariance: v}
		uc, err := chooseUNet(*preset, *unetCfg)
		if err != nil {
			return err
		}
		if err := cond.apply(fs, *dataName, &rc.Train, &uc); err != nil {
			return err
		}
		if rc.UNet, err = json.Marshal(uc); err != nil {
			return err
		}
	}
	if err := rc.validate(); err != nil {
		return err
	}
	rc.Devices = *devices
	return trainRun(ctx, dir, rc, *bk, *resume != "", stdout, stderr)
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
	return unet.Preset(preset)
}

func (rc runConfig) validate() error {
	switch {
	case rc.Epochs < 1 && rc.MaxSteps < 1:
		return usagef("train: --epochs %d: want at least 1 (or --max-steps)", rc.Epochs)
	case rc.MaxSteps < 0:
		return usagef("train: --max-steps %d: want >= 0", rc.MaxSteps)
	case rc.HoldOut < 0 || rc.HoldOut >= 1:
		return usagef("train: --holdout %g: want a fraction in [0, 1)", rc.HoldOut)
	case rc.SampleSteps < 1:
		return usagef("train: --sample-steps %d: want >= 1", rc.SampleSteps)
	case rc.CkptSteps < 1:
		return usagef("train: --checkpoint-every %d: want >= 1", rc.CkptSteps)
	case rc.KeepCkpts < 1:
		return usagef("train: --keep %d: want >= 1", rc.KeepCkpts)
	case rc.LogEvery < 1:
		return usagef("train: --log-every %d: want >= 1", rc.LogEvery)
	case rc.Train.StepsPerCall < 0:
		return usagef("train: --steps-per-call %d: want >= 0", rc.Train.StepsPerCall)
	}
	if rc.Train.StepsPerCall > 0 {
		if err := rc.Train.Validate(); err != nil {
			return usageError{err.Error()}
		}
	}
	return rc.Schedule.Validate()
}

// trainRun trains in dir, fresh or from its last checkpoint.
func trainRun(ctx context.Context, dir string, rc runConfig, backendName string, resuming bool, stdout, stderr io.Writer) error {
	uc, err := unet.ParseConfig(rc.UNet)
	if err != nil {
		return err
	}
	model, err := unet.New(uc)
	if err != nil {
		return err
	}
	if uc.Dropout > 0 {
		return fmt.Errorf("train: the UNet config has dropout %g; training with dropout is not supported yet (set it to 0)", uc.Dropout)
	}
	sched, err := schedule.New(rc.Schedule)
	if err != nil {
		return err
	}
	ds, err := data.Load(ctx, rc.Data, "train", data.Options{Dir: rc.DataDir, Progress: downloadProgress(stderr)})
	if err != nil {
		return err
	}
	if rc.HoldOut > 0 {
		if ds, _, err = ds.HoldOut(rc.HoldOut, rc.HoldOutSeed); err != nil {
			return err
		}
	}
	if uc.InChannels != ds.C || (uc.SampleSize != nil && (uc.SampleSize[0] != ds.H || uc.SampleSize[1] != ds.W)) {
		return fmt.Errorf("train: the UNet takes %d channels at %v, the data is %dx%dx%d", uc.InChannels, uc.SampleSize, ds.C, ds.H, ds.W)
	}
	onEngine, backendName, err := trainOnEngine(backendName, uc, rc.Train, stderr)
	if err != nil {
		return err
	}
	b, info, err := openBackend(backendName, stderr)
	if err != nil {
		return err
	}
	cfg := rc.Train
	if cfg.StepsPerCall == 0 {
		cfg.StepsPerCall = stepsPerCall
	}
	labels, err := trainLabels(cfg, uc, ds)
	if err != nil {
		return err
	}
	tr, err := train.New(b, cfg, model, sched, ds.Images, []int{ds.Len(), ds.C, ds.H, ds.W}, labels)
	if err != nil {
		return err
	}
	if onEngine {
		var closeEngine func()
		if info, closeEngine, err = attachTrainEngine(tr, b, cfg, uc, sched, ds.Images, []int{ds.Len(), ds.C, ds.H, ds.W}, labels, stderr); err != nil {
			return err
		}
		defer closeEngine()
	} else if _, err := useDevices(tr, b, info, rc.Devices, cfg.BatchSize, stderr); err != nil {
		return err
	}
	perEpoch := int64(ds.Len() / cfg.BatchSize)
	total := int64(rc.Epochs) * perEpoch
	if rc.MaxSteps > 0 && (rc.Epochs < 1 || rc.MaxSteps < total) {
		total = rc.MaxSteps
	}

	if err := os.MkdirAll(filepath.Join(dir, ckptDir), 0o755); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	rcJSON, _ := json.MarshalIndent(rc, "", "  ")
	var st *train.State
	bstate := data.BatcherState{N: ds.Len(), BatchSize: cfg.BatchSize, DropLast: true, Seed: rc.Seed + 1}
	if resuming {
		var path string
		st, bstate, path, err = loadLatest(dir, model)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "resuming %s at step %d (epoch %d)\n", path, st.Step, bstate.Epoch)
	} else {
		if err := writeFileAtomic(filepath.Join(dir, runConfigFile), rcJSON); err != nil {
			return err
		}
		if st, err = tr.Init(rc.Seed); err != nil {
			return err
		}
	}
	batcher, err := data.NewBatcher(bstate)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	log, err := openLossLog(filepath.Join(dir, lossLogFile), st.Step)
	if err != nil {
		return err
	}
	defer log.Close()

	fmt.Fprintf(stderr, "training %s: %s parameters, %d images, batch %d, %d steps (%.1f epochs of %d), %d steps per call\n",
		rc.Data, fmtCount(paramCount(model)), ds.Len(), cfg.BatchSize, total, float64(total)/float64(perEpoch), perEpoch, cfg.StepsPerCall)

	saveCkpt := func() error {
		return saveCheckpoint(dir, model, st, batcher.State(), rc, rcJSON, sched)
	}
	var (
		start      = time.Now()
		lastCkpt   = time.Now()
		bar        = newProgress(stderr, total-st.Step)
		startStep  = st.Step
		step0      = st.Step
		start0     = time.Now()
		lastEpoch  = batcher.Epoch()
		warned     = info.Kind != backend.Go
		recentLoss []float32
		firstCall  = true
	)
	after := func(st *train.State, epoch int, losses []float32) error {
		el := time.Since(start).Seconds()
		if firstCall {
			firstCall = false
			fmt.Fprintf(stderr, "first call (compile + %d steps): %.1fs%s\n", len(losses), el, compileNote(info))
			start, startStep = time.Now(), st.Step
			el = 1e-9
		}
		for i, l := range losses {
			step := st.Step - int64(len(losses)) + int64(i) + 1
			if step%int64(rc.LogEvery) == 0 {
				if err := log.Write(step, float64(step)/float64(perEpoch), l, el); err != nil {
					return err
				}
			}
		}
		recentLoss = append(recentLoss, losses...)
		if len(recentLoss) > 100 {
			recentLoss = recentLoss[len(recentLoss)-100:]
		}
		done := st.Step - startStep
		rate := float64(done) * float64(cfg.BatchSize) / el
		if done == 0 {
			rate = math.NaN()
		}
		if !warned && done >= 3 {
			warned = true
			eta := time.Duration(float64(total-st.Step) * float64(cfg.BatchSize) / rate * float64(time.Second))
			if eta > 10*time.Minute {
				fmt.Fprintf(stderr, "note: on the pure-Go backend this run takes about %s (%.1f images/s); a GPU takes minutes (--backend cuda), or shorten it with --max-steps\n", fmtDuration(eta), rate)
			}
		}
		bar.update(st.Step-step0, fmt.Sprintf("step %d/%d epoch %d/%d loss %.4f %.0f img/s", st.Step, total,
			int(st.Step/perEpoch)+1, (total+perEpoch-1)/perEpoch, mean32(recentLoss), rate), st.Step == total)
		if epoch != lastEpoch {
			lastEpoch = epoch
			if rc.SampleEvery > 0 && epoch%rc.SampleEvery == 0 && st.Step < total {
				p := filepath.Join(dir, "samples", fmt.Sprintf("epoch-%03d.png", epoch))
				if err := sampleGrid(b, info.Kind, model, st.EMA, sched, rc, p); err != nil {
					return err
				}
			}
		}
		if st.Step-lastStep(dir) >= rc.CkptSteps || time.Since(lastCkpt).Minutes() >= rc.CkptMinutes {
			lastCkpt = time.Now()
			if err := saveCkpt(); err != nil {
				return err
			}
		}
		return nil
	}
	err = tr.Run(ctx, st, batcher, total, after)
	bar.done()
	el := time.Since(start)
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		fmt.Fprintf(stderr, "interrupted at step %d: saving a checkpoint\n", st.Step)
		if err := saveCkpt(); err != nil {
			return err
		}
		return context.Canceled
	}
	if err := saveCkpt(); err != nil {
		return err
	}
	if err := sampleGrid(b, info.Kind, model, st.EMA, sched, rc, filepath.Join(dir, "samples", "final.png")); err != nil {
		return err
	}
	if err := plotLoss(filepath.Join(dir, lossLogFile), filepath.Join(dir, "loss.png"), rc.Data); err != nil {
		return err
	}
	steady := max(st.Step-startStep, 1)
	fmt.Fprintf(stdout, "trained %d steps in %s; steady state %.2f s/epoch, %.0f images/s; final loss (mean of last 100 steps) %.4f\n",
		st.Step-step0, fmtDuration(time.Since(start0)), el.Seconds()/float64(steady)*float64(perEpoch),
		float64(steady)*float64(cfg.BatchSize)/el.Seconds(), mean32(recentLoss))
	fmt.Fprintf(stdout, "run directory %s: samples/final.png, loss.png, %s; sample with `ddpm sample --run %s`\n", dir, lossLogFile, dir)
	return nil
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

func downloadProgress(w io.Writer) func(file string, done, total int64) {
	var p *progress
	var cur string
	return func(file string, done, total int64) {
		if file != cur {
			cur = file
			p = newProgress(w, total)
		}
		p.update(done, "downloading "+filepath.Base(file), done == total)
		if done == total {
			p.done()
		}
	}
}

// Checkpoints are checkpoints/step-00001234.safetensors, each complete in itself (written to a
// temporary name and renamed), the newest KeepCkpts kept.
func ckptPath(dir string, step int64) string {
	return filepath.Join(dir, ckptDir, fmt.Sprintf("step-%08d.safetensors", step))
}

func listCkpts(dir string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, ckptDir, "step-*.safetensors"))
	sort.Strings(m)
	return m
}

func lastStep(dir string) int64 {
	c := listCkpts(dir)
	if len(c) == 0 {
		return 0
	}
	var s int64
	fmt.Sscanf(filepath.Base(c[len(c)-1]), "step-%d.safetensors", &s)
	return s
}

func saveCheckpoint(dir string, model *unet.Model, st *train.State, bs data.BatcherState, rc runConfig, rcJSON []byte, sched *schedule.Schedule) error {
	bj, _ := json.Marshal(bs)
	f, err := train.StateFile(st, model.Specs(), map[string]string{"batcher": string(bj), "config": string(rcJSON)})
	if err != nil {
		return err
	}
	if err := checkpoint.WriteSafetensors(ckptPath(dir, st.Step), f); err != nil {
		return err
	}
	if err := writePipeline(dir, model, st.EMA, rc); err != nil {
		return err
	}
	all := listCkpts(dir)
	for len(all) > rc.KeepCkpts {
		if err := os.Remove(all[0]); err != nil {
			return fmt.Errorf("train: removing an old checkpoint: %w", err)
		}
		all = all[1:]
	}
	return nil
}

// loadLatest restores the newest checkpoint that reads back whole; a damaged newer one is reported
// and skipped, never deleted.
func loadLatest(dir string, model *unet.Model) (*train.State, data.BatcherState, string, error) {
	all := listCkpts(dir)
	if len(all) == 0 {
		return nil, data.BatcherState{}, "", fmt.Errorf("train: no checkpoint in %s (nothing to resume; start with --out)", filepath.Join(dir, ckptDir))
	}
	var errs []string
	for i := len(all) - 1; i >= 0; i-- {
		f, err := checkpoint.ReadSafetensors(all[i])
		if err == nil {
			var st *train.State
			if st, err = train.StateFromFile(f, model.Specs()); err == nil {
				var bs data.BatcherState
				if err = json.Unmarshal([]byte(f.Metadata["batcher"]), &bs); err == nil {
					if err = bs.Validate(); err == nil {
						return st, bs, all[i], nil
					}
				}
			}
		}
		errs = append(errs, fmt.Sprintf("%s: %v", filepath.Base(all[i]), err))
	}
	return nil, data.BatcherState{}, "", fmt.Errorf("train: no readable checkpoint in %s:\n  %s", dir, strings.Join(errs, "\n  "))
}

// lossLog appends "step,epoch,loss,wall_seconds" rows to loss.csv. On resume, rows past the
// checkpoint's step (work that was lost) are dropped first, so the log matches the weights.
type lossLog struct {
	f *os.File
	w *csv.Writer
}

func openLossLog(path string, fromStep int64) (*lossLog, error) {
	var keep [][]string
	if b, err := os.ReadFile(path); err == nil && fromStep > 0 {
		rows, _ := csv.NewReader(strings.NewReader(string(b))).ReadAll()
		for i, r := range rows {
			if i == 0 {
				continue
			}
			if s, err := strconv.ParseInt(r[0], 10, 64); err == nil && s <= fromStep {
				keep = append(keep, r)
			}
		}
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	w := csv.NewWriter(f)
	w.Write([]string{"step", "epoch", "loss", "wall_seconds"})
	w.WriteAll(keep)
	if err := w.Error(); err != nil {
		f.Close()
		return nil, fmt.Errorf("train: %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		f.Close()
		return nil, fmt.Errorf("train: %w", err)
	}
	return &lossLog{f: f, w: w}, nil
}

func (l *lossLog) Write(step int64, epoch float64, loss float32, wall float64) error {
	l.w.Write([]string{strconv.FormatInt(step, 10), strconv.FormatFloat(epoch, 'f', 4, 64),
		strconv.FormatFloat(float64(loss), 'g', 6, 32), strconv.FormatFloat(wall, 'f', 3, 64)})
	l.w.Flush()
	return l.w.Error()
}

func (l *lossLog) Close() error { l.w.Flush(); return l.f.Close() }

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data)
}

// plotLoss draws the loss curve of a run's loss.csv.
func plotLoss(csvPath, pngPath, title string) error {
	s, err := readLossSeries(csvPath)
	if err != nil {
		return err
	}
	return writeLossPlot([]viz.Series{s}, pngPath, title)
}

// readLossSeries reads the step and loss columns of a loss.csv.
func readLossSeries(csvPath string) (viz.Series, error) {
	var s viz.Series
	b, err := os.ReadFile(csvPath)
	if err != nil {
		return s, err
	}
	rows, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
	if err != nil {
		return s, fmt.Errorf("%s: %w", csvPath, err)
	}
	for _, r := range rows[1:] {
		step, err1 := strconv.ParseFloat(r[0], 64)
		loss, err2 := strconv.ParseFloat(r[2], 64)
		if err1 == nil && err2 == nil {
			s.Steps = append(s.Steps, step)
			s.Loss = append(s.Loss, loss)
		}
	}
	if len(s.Loss) == 0 {
		return s, fmt.Errorf("%s: no loss rows", csvPath)
	}
	return s, nil
}

func writeLossPlot(series []viz.Series, pngPath, title string) error {
	img, err := viz.LossPlot(series, viz.LossPlotOptions{Title: "training loss, " + title, XLabel: "step", YLabel: "MSE loss"})
	if err != nil {
		return err
	}
	return viz.WritePNG(pngPath, img)
}
