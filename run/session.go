package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/train"
	"github.com/ddpm/ddpm/unet"
	"github.com/ddpm/ddpm/viz"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// A Session is one process's training of a Run: the model, the data, the trainer and the state.
type Session struct {
	Run      *Run
	Model    *unet.Model
	Schedule *schedule.Schedule
	Data     *data.Dataset
	Trainer  *train.Trainer
	State    *train.State
	Batcher  *data.Batcher
	// Total is the step the run trains to; PerEpoch the steps of one epoch.
	Total, PerEpoch int64
	// TrainConfig is the run's optimization config with its defaults filled in.
	TrainConfig train.Config
	// Restored is the checkpoint the session resumed from; nil for a start at step 0.
	Restored *Restored
	// Saved is the newest checkpoint written by this session, "" before the first.
	Saved string
	// Labels are the training labels of a class-conditional run, else nil.
	Labels []int
	// Sample, if not nil, draws the sample grids instead of the session's backend.
	Sample SampleFunc

	backend backends.Backend
}

// Start builds the session of r on backend b: from the newest readable checkpoint when resume is set
// and there is one, else from step 0 (a new run, or a run stopped before its first checkpoint).
// perCall is the number of steps per compiled call when the config says 0.
func (r *Run) Start(ctx context.Context, b backends.Backend, resume bool, opts data.Options, perCall int) (*Session, error) {
	c := r.Config
	uc, err := c.UNetConfig()
	if err != nil {
		return nil, err
	}
	if uc.Dropout > 0 {
		return nil, fmt.Errorf("run: the UNet config has dropout %g; training with dropout is not supported yet (set it to 0)", uc.Dropout)
	}
	s := &Session{Run: r, backend: b}
	if s.Model, err = unet.New(uc); err != nil {
		return nil, err
	}
	if s.Schedule, err = schedule.New(c.Schedule); err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		opts.Dir = c.DataDir
	}
	if s.Data, err = loadData(ctx, c, opts); err != nil {
		return nil, err
	}
	ds := s.Data
	if uc.InChannels != ds.C || (uc.SampleSize != nil && (uc.SampleSize[0] != ds.H || uc.SampleSize[1] != ds.W)) {
		return nil, fmt.Errorf("run: the UNet takes %d channels at %v, the data is %dx%dx%d", uc.InChannels, uc.SampleSize, ds.C, ds.H, ds.W)
	}
	tc := c.Train
	if tc.StepsPerCall == 0 {
		tc.StepsPerCall = perCall
	}
	s.TrainConfig = tc
	if ds.Len() < tc.BatchSize {
		return nil, fmt.Errorf("run: the batch size %d is larger than the data set (%d images)", tc.BatchSize, ds.Len())
	}
	if s.Labels, err = trainLabels(tc, uc, ds); err != nil {
		return nil, err
	}
	s.PerEpoch = int64(ds.Len() / tc.BatchSize)
	s.Total = int64(c.Epochs) * s.PerEpoch
	if c.MaxSteps > 0 && (c.Epochs < 1 || c.MaxSteps < s.Total) {
		s.Total = c.MaxSteps
	}
	if tc.DecaysLR() && tc.LRTotalSteps == 0 {
		// lr_total_steps 0: the schedule spans the run's planned steps (recomputed on resume, so a
		// larger --epochs or --max-steps there stretches what is left of it).
		tc.LRTotalSteps = s.Total
		s.TrainConfig = tc
	}
	if s.Trainer, err = train.New(b, tc, s.Model, s.Schedule, ds.Images, []int{ds.Len(), ds.C, ds.H, ds.W}, s.Labels); err != nil {
		return nil, err
	}
	bs := data.BatcherState{N: ds.Len(), BatchSize: tc.BatchSize, DropLast: true, Seed: c.Seed + 1}
	if resume {
		s.Restored, err = Latest(r.Dir, s.Model.Specs())
		switch {
		case err == nil:
			s.State, bs = s.Restored.State, s.Restored.Batcher
		case errors.Is(err, ErrNoCheckpoint):
			s.Restored = nil
		default:
			return nil, err
		}
	}
	if s.State == nil {
		if s.State, err = s.Trainer.Init(c.Seed); err != nil {
			return nil, err
		}
	}
	if s.Batcher, err = data.NewBatcher(bs); err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	return s, nil
}

// loadData loads the training split of the run's data set, or the images of a folder.
func loadData(ctx context.Context, c Config, opts data.Options) (*data.Dataset, error) {
	var ds *data.Dataset
	var err error
	if fi, serr := os.Stat(c.Data); serr == nil && fi.IsDir() {
		ds, err = data.LoadFolder(c.Data)
	} else {
		ds, err = data.Load(ctx, c.Data, "train", opts)
	}
	if err != nil {
		return nil, err
	}
	if c.HoldOut > 0 {
		if ds, _, err = ds.HoldOut(c.HoldOut, c.HoldOutSeed); err != nil {
			return nil, err
		}
	}
	return ds, nil
}

// Epochs is the number of epochs the session's Total spans, rounded up.
func (s *Session) Epochs() int64 { return (s.Total + s.PerEpoch - 1) / s.PerEpoch }

// A Report is what Train tells its caller after each group of steps.
type Report struct {
	Step   int64     // the state's step
	Losses []float32 // the losses of the steps since the last report, the last one of Step
	Epoch  int64     // the epoch being trained, from 1
	// Train is the time spent training since the first report; First marks the first report, whose
	// time (the compilation and the first steps) is not counted in Train.
	Train time.Duration
	First bool
}

// Train trains to Total, writing the loss log, the sample grids every SampleEvery epochs and the
// checkpoints every CkptSteps steps or CkptMinutes minutes. It stops at the first non-finite loss
// with a *NonFiniteError, never saving that state. When ctx is cancelled it saves a checkpoint of the
// last step and returns ctx's error.
func (s *Session) Train(ctx context.Context, report func(Report)) error {
	c := s.Run.Config
	log, err := OpenLossLog(s.Run.Dir, s.State.Step)
	if err != nil {
		return err
	}
	defer log.Close()
	var (
		start     = time.Now()
		lastCkpt  = time.Now()
		lastSaved = s.State.Step
		lastEpoch = s.Batcher.Epoch()
		first     = true
	)
	after := func(st *train.State, epoch int, losses []float32) error {
		if err := s.Run.NonFinite(st.Step, losses); err != nil {
			return err
		}
		if first {
			start = time.Now()
		}
		el := time.Since(start)
		for i, l := range losses {
			step := st.Step - int64(len(losses)-1-i)
			if step%int64(c.LogEvery) == 0 {
				if err := log.Write(step, float64(step)/float64(s.PerEpoch), l, el.Seconds()); err != nil {
					return err
				}
			}
		}
		report(Report{Step: st.Step, Losses: losses, Epoch: min(st.Step/s.PerEpoch+1, s.Epochs()), Train: el, First: first})
		first = false
		if epoch != lastEpoch {
			lastEpoch = epoch
			if c.SampleEvery > 0 && epoch%c.SampleEvery == 0 && st.Step < s.Total {
				if err := s.SampleGrid(ctx, join(s.Run.Dir, SamplesDir, fmt.Sprintf("epoch-%03d.png", epoch)), nil); err != nil {
					return err
				}
			}
		}
		if st.Step-lastSaved >= c.CkptSteps || time.Since(lastCkpt).Minutes() >= c.CkptMinutes {
			lastCkpt, lastSaved = time.Now(), st.Step
			return s.save()
		}
		return nil
	}
	err = s.Trainer.Run(ctx, s.State, s.Batcher, s.Total, after)
	var nf *NonFiniteError
	var nl *train.NonFiniteLoss
	if errors.As(err, &nl) {
		err = &NonFiniteError{Step: nl.Step, What: "the loss", Last: s.Run.last()}
	}
	switch {
	case errors.As(err, &nf):
		return err
	case err != nil && !errors.Is(err, context.Canceled):
		return err
	case s.State.Step != lastSaved:
		if serr := s.save(); serr != nil {
			return serr
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	return err
}

func (s *Session) save() error {
	p, err := s.Run.Save(s.Model, s.State, s.Batcher.State())
	if err == nil {
		s.Saved = p
	}
	return err
}

// GridSamples is the number of samples of a grid: 8x8.
const GridSamples = 64

// A SampleFunc samples a plan with the model and its flat weights elsewhere than on the session's
// backend (the CPU engine, say).
type SampleFunc func(model *unet.Model, weights *tensors.Tensor, plan sampler.Plan, opts sampler.Options) ([]float32, error)

// SampleGrid writes an 8x8 grid of EMA samples, DDIM with SampleSteps steps and a fixed seed, so that
// grids compare across epochs. It stops at the next step when ctx is done; progress, if not nil, is
// called after each step.
func (s *Session) SampleGrid(ctx context.Context, path string, progress func(done, total int)) error {
	return sampleGrid(ctx, s.backend, s.Sample, s.Model, s.State.EMA, s.Schedule, s.Run.Config, path, progress)
}

// trainLabels are the labels train.New needs: the data set's for a class-conditional run, else nil.
func trainLabels(cfg train.Config, uc unet.Config, ds *data.Dataset) ([]int, error) {
	if cfg.NumClasses == 0 {
		if uc.ClassEmbedding() != unet.NoClasses {
			return nil, fmt.Errorf("run: the UNet config has a class embedding (%s) but the run has no labels: train with --classes (which sets num_class_embeds itself)", uc.ClassEmbedding())
		}
		return nil, nil
	}
	if ds.Labels == nil {
		return nil, fmt.Errorf("run: a class-conditional run needs labels, and %s has none", ds.Name)
	}
	return ds.Labels, nil
}

// gridClasses lays out a sample grid: one row of 8 per class (classes = the null label) for a
// class-conditional model, of the plain conditional model (guidance 1), else 64 samples without labels.
func gridClasses(uc unet.Config) (n int, labels []int32, err error) {
	if uc.ClassEmbedding() == unet.NoClasses {
		return GridSamples, nil, nil
	}
	null, err := uc.GuidanceNull(-1)
	if err != nil {
		return 0, nil, err
	}
	c, err := sampler.ParseClasses("all", null, 0, 8)
	return len(c.Labels), c.Labels, err
}

// sampleGrid writes an 8x8 grid of samples of model with the weights ema (see Session.SampleGrid),
// through sample when it is not nil.
func sampleGrid(ctx context.Context, b backends.Backend, sample SampleFunc, model *unet.Model, ema *tensors.Tensor, sched *schedule.Schedule, c Config, path string, progress func(done, total int)) error {
	dc := sampler.DefaultDDIM()
	dc.Prediction = c.Train.Prediction
	plan, err := dc.Plan(sched, c.SampleSteps)
	if err != nil {
		return err
	}
	uc := model.Config
	shape := []int{uc.InChannels, uc.SampleSize[0], uc.SampleSize[1]}
	n, labels, err := gridClasses(uc)
	if err != nil {
		return err
	}
	opts := sampler.Options{N: n, Shape: shape, Seed: 1, StepsPerCall: 1, Labels: labels, Progress: progress, Context: ctx}
	var vals []float32
	if sample != nil {
		vals, err = sample(model, ema, plan, opts)
	} else {
		var x *tensors.Tensor
		if x, err = sampler.Run(b, train.SamplerModel(model, ema), plan, opts); err == nil {
			vals, err = tensors.CopyFlatData[float32](x)
		}
	}
	if err != nil {
		return err
	}
	img, err := viz.Grid(vals, n, shape[0], shape[1], shape[2], 8, viz.GridOptions{Padding: 2, Scale: 2})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return viz.WritePNG(path, img)
}

// Finish writes the end of a completed run: samples/final.png (see SampleGrid) and loss.png.
func (s *Session) Finish(ctx context.Context, progress func(done, total int)) error {
	if err := s.SampleGrid(ctx, join(s.Run.Dir, SamplesDir, "final.png"), progress); err != nil {
		return err
	}
	series, err := ReadLoss(join(s.Run.Dir, LossFile))
	if err != nil {
		return err
	}
	return PlotLoss([]viz.Series{series}, join(s.Run.Dir, LossPlotFile), s.Run.Config.Data)
}
