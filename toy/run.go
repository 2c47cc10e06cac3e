package toy

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/train"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// Config is a whole toy run: data, model, schedule, optimizer, sampler. Zero values are not
// defaults: start from DefaultConfig.
type Config struct {
	Data     Dataset         `json:"data"`
	Points   int             `json:"points"`  // training points drawn from Data
	Steps    int64           `json:"steps"`   // optimizer steps
	Samples  int             `json:"samples"` // points sampled after training
	Frames   int             `json:"frames"`  // snapshots of the reverse process, x_T and the samples included
	Seed     uint64          `json:"seed"`    // seeds the data, weights, batches, training noise and sampler
	MLP      MLP             `json:"mlp"`
	Schedule schedule.Config `json:"schedule"`
	Train    train.Config    `json:"train"`
	Sampler  sampler.DDPM    `json:"sampler"`
}

// DefaultConfig is the lesson's swiss roll: 10,000 points, the MLP of DefaultMLP, T = 200 steps of
// the cosine schedule, 2,000 AdamW steps at batch 512 with EMA and the learning rate decayed from 1e-2
// to 0 by diffusers' cosine schedule, then 2,000 DDPM samples over all 200 steps. On the pure-Go backend (2 cores) it trains and samples in under 2 minutes; its samples are
// within MaxRatio of a fresh draw of the roll (see the package documentation for the measurements).
//
// The betas are the cosine schedule of improved DDPM (Nichol & Dhariwal 2021, arXiv:2102.09672v2,
// Eq. 17; diffusers' squaredcos_cap_v2): alphaBar_t = f(t/T) / f(0), f(u) = cos((u + 0.008) / 1.008
// pi/2)^2, each beta capped at 0.999. Compared with the linear schedule scaled to T = 200 (5e-4 ..
// 0.1, which leaves 80% of the training timesteps at noise levels above 0.6, where the roll is one
// blob), it spends more of the training on the low noise levels that separate and sharpen the arms.
// beta_start and beta_end are diffusers' defaults, unused by this schedule.
//
// The sampler adds noise of variance beta-tilde (fixed_small) and does not clip x0Hat to [-1, 1]:
// the toy data are not images in [-1, 1] (the swiss roll reaches 1.4).
func DefaultConfig() Config {
	tc := train.Default()
	tc.BatchSize = 512
	tc.LR = 1e-2
	tc.LRScheduler = train.LRCosine
	tc.WeightDecay = 0
	tc.EMADecay = 0.995
	tc.EMAWarmup = true
	tc.StepsPerCall = 10
	sc := sampler.DefaultDDPM()
	sc.Variance = sampler.FixedSmall
	sc.ClipSample = false
	tc.LRTotalSteps = defaultSteps
	return Config{
		Data:     SwissRoll,
		Points:   10000,
		Steps:    defaultSteps,
		Samples:  2000,
		Frames:   10,
		MLP:      DefaultMLP(),
		Schedule: schedule.Config{T: 200, BetaStart: 1e-4, BetaEnd: 0.02, BetaSchedule: schedule.SquaredCosCapV2},
		Train:    tc,
		Sampler:  sc,
	}
}

const defaultSteps = 2000

// SetSteps sets the number of optimizer steps and the learning-rate schedule's length with it (the
// cosine decay reaches 0 at the last step).
func (c *Config) SetSteps(n int64) {
	c.Steps = n
	if c.Train.DecaysLR() {
		c.Train.LRTotalSteps = n
	}
}

// Validate names the first field out of range.
func (c Config) Validate() error {
	switch {
	case c.Data < 0 || int(c.Data) >= len(datasetNames):
		return fmt.Errorf("toy: data = %d: want one of %s", int(c.Data), quoted(datasetNames[:]))
	case c.Points < 1:
		return fmt.Errorf("toy: points = %d: want >= 1", c.Points)
	case c.Steps < 1:
		return fmt.Errorf("toy: steps = %d: want >= 1", c.Steps)
	case c.Samples < 1:
		return fmt.Errorf("toy: samples = %d: want >= 1", c.Samples)
	case c.Frames < 2:
		return fmt.Errorf("toy: frames = %d: want >= 2 (x_T and the samples)", c.Frames)
	case c.Points < c.Train.BatchSize:
		return fmt.Errorf("toy: points = %d are fewer than batch_size %d: draw more points or lower the batch size", c.Points, c.Train.BatchSize)
	}
	if err := c.MLP.Validate(); err != nil {
		return err
	}
	if err := c.Schedule.Validate(); err != nil {
		return err
	}
	if err := c.Train.Validate(); err != nil {
		return err
	}
	if c.Train.Prediction != c.Sampler.Prediction {
		return fmt.Errorf("toy: train prediction_type %s, sampler prediction_type %s: want the same", c.Train.Prediction, c.Sampler.Prediction)
	}
	if c.Train.NumClasses != 0 {
		return fmt.Errorf("toy: train num_classes = %d: the toy model is unconditional, want 0", c.Train.NumClasses)
	}
	return c.Sampler.Validate()
}

// A Frame is the point cloud x_t [N,2] of the reverse process at timestep T, counted as in the
// paper: T = Config.Schedule.T is the start x_T ~ N(0, I), T = 0 the samples x_0. (The sampler's
// 0-based timestep t evaluates the model on the paper's x_{t+1}.)
type Frame struct {
	T  int
	XY []float32
}

// Result is everything a run produced.
type Result struct {
	Config  Config
	Data    []float32         // the training points [Points,2]
	Samples []float32         // [Samples,2]
	Frames  []Frame           // from x_T to the samples, T decreasing
	Loss    []float32         // the training loss of every optimizer step
	EMA     []*tensors.Tensor // the averaged weights the samples come from, in MLP.Specs order
	// TrainTime is the wall time of training, FirstCall that of its first compiled call (which
	// includes compiling the training step), SampleTime that of sampling.
	TrainTime, FirstCall, SampleTime time.Duration
}

// Progress is called after every compiled training call with the steps done, the total, and the
// loss of the last step.
type Progress func(done, total int64, loss float32)

// Run draws the data, trains the MLP for cfg.Steps steps on backend b, and samples cfg.Samples
// points from its EMA weights, recording cfg.Frames frames of the reverse process. progress may be
// nil. A cancelled ctx stops training between compiled calls and returns ctx's error.
func Run(ctx context.Context, b backends.Backend, cfg Config, progress Progress) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sched, err := schedule.New(cfg.Schedule)
	if err != nil {
		return nil, err
	}
	pts, err := cfg.Data.Points(cfg.Points, cfg.Seed)
	if err != nil {
		return nil, err
	}
	res := &Result{Config: cfg, Data: pts}
	tr, err := train.New(b, cfg.Train, cfg.MLP, sched, pts, []int{cfg.Points, 2}, nil)
	if err != nil {
		return nil, err
	}
	st, err := tr.Init(cfg.Seed)
	if err != nil {
		return nil, err
	}
	batcher, err := data.NewBatcher(data.BatcherState{N: cfg.Points, BatchSize: cfg.Train.BatchSize, DropLast: true, Seed: cfg.Seed + 1})
	if err != nil {
		return nil, fmt.Errorf("toy: %w", err)
	}
	res.Loss = make([]float32, 0, cfg.Steps)
	start := time.Now()
	err = tr.Run(ctx, st, batcher, cfg.Steps, func(st *train.State, _ int, losses []float32) error {
		if res.FirstCall == 0 {
			res.FirstCall = time.Since(start)
		}
		res.Loss = append(res.Loss, losses...)
		if progress != nil {
			progress(st.Step, cfg.Steps, losses[len(losses)-1])
		}
		return nil
	})
	res.TrainTime = time.Since(start)
	if err != nil {
		return nil, err
	}
	if res.EMA, err = nn.Unflatten(cfg.MLP.Specs(), st.EMA); err != nil {
		return nil, fmt.Errorf("toy: reading the EMA weights: %w", err)
	}
	start = time.Now()
	res.Samples, res.Frames, err = Sample(b, cfg.MLP, res.EMA, sched, cfg.Sampler, cfg.Samples, int64(cfg.Seed)+2, cfg.Frames)
	res.SampleTime = time.Since(start)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Sample draws n points [N,2] from the MLP m with weights w (in m.Specs order) with the DDPM sampler
// c over all timesteps of s, x_T and the step noise from seed, and returns them with about frames
// snapshots of the reverse process (see FrameTimes).
func Sample(b backends.Backend, m MLP, w []*tensors.Tensor, s *schedule.Schedule, c sampler.DDPM, n int, seed int64, frames int) ([]float32, []Frame, error) {
	flat, err := nn.Flatten(m.Specs(), w)
	if err != nil {
		return nil, nil, fmt.Errorf("toy: the MLP's weights: %w", err)
	}
	plan, err := c.Plan(s, s.T())
	if err != nil {
		return nil, nil, err
	}
	T := s.T()
	times := FrameTimes(s, frames)
	var record []int
	for _, tau := range times[:len(times)-1] {
		record = append(record, T-tau) // step i takes the paper's x_{T-i}
	}
	var fr []Frame
	opts := sampler.Options{N: n, Shape: []int{2}, Seed: seed, Record: record,
		OnStep: func(i, t int, xt, _ *tensors.Tensor) {
			fr = append(fr, Frame{T: t + 1, XY: tensors.MustCopyFlatData[float32](xt)})
		}}
	x, err := sampler.Run(b, train.SamplerModel(m, flat), plan, opts)
	if err != nil {
		return nil, nil, err
	}
	out, err := tensors.CopyFlatData[float32](x)
	if err != nil {
		return nil, nil, fmt.Errorf("toy: reading the samples: %w", err)
	}
	fr = append(fr, Frame{T: 0, XY: out})
	return out, fr, nil
}

// FrameTimes returns the paper's timesteps, T first and 0 last, of k snapshots of the reverse
// process: between them, the timesteps whose noise level sqrt(1 - alphaBar) is nearest to
// (k-2)/(k-1), ..., 1/(k-1). Spacing by noise level rather than by t puts the frames where the
// cloud changes: most of the structure appears in the last quarter of the steps. Timesteps that
// coincide are kept once, so fewer than k may come back when T is small.
func FrameTimes(s *schedule.Schedule, k int) []int {
	T := s.T()
	out := []int{T}
	for j := k - 2; j >= 1; j-- {
		level := float64(j) / float64(k-1)
		best, bestD := T, math.Inf(1)
		for tau := 1; tau <= T; tau++ {
			d := math.Abs(math.Sqrt(1-s.AlphaBar[tau-1]) - level)
			if d < bestD {
				best, bestD = tau, d
			}
		}
		if best < out[len(out)-1] {
			out = append(out, best)
		}
	}
	return append(out, 0)
}
