package train

import (
	"fmt"
	"math"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
)

// The learning-rate schedules of diffusers' get_scheduler (diffusers/optimization.py), by the names
// its training scripts take in --lr_scheduler. "" is "constant", the lesson's recipe.
const (
	LRConstant           = "constant"
	LRConstantWithWarmup = "constant_with_warmup"
	LRLinear             = "linear"
	LRCosine             = "cosine"
)

// LRSchedulers lists the names Config.LRScheduler accepts.
func LRSchedulers() []string {
	return []string{LRConstant, LRConstantWithWarmup, LRLinear, LRCosine}
}

// DecaysLR reports whether the learning-rate schedule decays over LRTotalSteps (linear, cosine).
func (c Config) DecaysLR() bool { return c.LRScheduler == LRLinear || c.LRScheduler == LRCosine }

// validateLR names the first learning-rate schedule field out of range.
func (c Config) validateLR() error {
	switch c.LRScheduler {
	case "", LRConstant:
		if c.LRWarmupSteps != 0 {
			return fmt.Errorf("train: lr_warmup_steps = %d with lr_scheduler %q, which has no warmup: use %q, or set the warmup to 0",
				c.LRWarmupSteps, LRConstant, LRConstantWithWarmup)
		}
	case LRConstantWithWarmup, LRLinear, LRCosine:
	default:
		return fmt.Errorf("train: lr_scheduler = %q: want one of %q", c.LRScheduler, LRSchedulers())
	}
	switch {
	case c.LRWarmupSteps < 0:
		return fmt.Errorf("train: lr_warmup_steps = %d: want >= 0", c.LRWarmupSteps)
	case c.LRTotalSteps < 0:
		return fmt.Errorf("train: lr_total_steps = %d: want >= 0", c.LRTotalSteps)
	case c.DecaysLR() && c.LRTotalSteps == 0:
		return fmt.Errorf("train: lr_scheduler %q decays to 0 over lr_total_steps, which is 0: set it to the run's number of optimizer steps", c.LRScheduler)
	}
	return nil
}

// LRFactor is the factor the schedule applies to LR at the optimizer step that follows k earlier ones
// (k = 0 for the first step), as torch's LambdaLR with diffusers' lambdas does when the training loop
// calls lr_scheduler.step() after each optimizer.step() (diffusers' train_unconditional.py):
//
//	constant               1
//	constant_with_warmup   k/W while k < W, then 1
//	linear                 k/W while k < W, then max(0, (N-k)/(N-W))
//	cosine                 k/W while k < W, then max(0, (1 + cos(pi (k-W)/(N-W))) / 2)
//
// with W = LRWarmupSteps and N = LRTotalSteps (denominators at least 1, as diffusers has them). Like
// diffusers, a warmup starts at 0: the first step of a run with W > 0 does not move the weights; and
// cosine past N climbs again (diffusers does not clamp its progress), which only a run trained past the
// N it was planned for meets.
func (c Config) LRFactor(k int64) float64 {
	w, n := float64(c.LRWarmupSteps), float64(c.LRTotalSteps)
	x := float64(k)
	if c.LRScheduler == "" || c.LRScheduler == LRConstant {
		return 1
	}
	if x < w {
		return x / max(1, w)
	}
	switch c.LRScheduler {
	case LRLinear:
		return max(0, (n-x)/max(1, n-w))
	case LRCosine:
		return max(0, 0.5*(1+math.Cos(math.Pi*(x-w)/max(1, n-w))))
	}
	return 1
}

// lrFactor is LRFactor in the compiled step, in float32, at the 1-based step n (a float32 scalar);
// nil for the constant schedule, whose step stays the graph it always was.
func (c Config) lrFactor(n *graph.Node) *graph.Node {
	if c.LRScheduler == "" || c.LRScheduler == LRConstant {
		return nil
	}
	g := n.Graph()
	scalar := func(v float64) *graph.Node { return graph.Scalar(g, dtypes.Float32, v) }
	w, tot := float64(c.LRWarmupSteps), float64(c.LRTotalSteps)
	k := graph.AddScalar(n, -1)
	after := scalar(1)
	switch c.LRScheduler {
	case LRLinear:
		after = graph.DivScalar(graph.Sub(scalar(tot), k), max(1, tot-w))
	case LRCosine:
		progress := graph.DivScalar(graph.AddScalar(k, -w), max(1, tot-w))
		after = graph.MulScalar(graph.OnePlus(graph.Cos(graph.MulScalar(progress, math.Pi))), 0.5)
	}
	after = graph.Max(after, scalar(0))
	if w == 0 {
		return after
	}
	return graph.Where(graph.LessThan(k, scalar(w)), graph.DivScalar(k, max(1, w)), after)
}
