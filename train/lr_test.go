package train

import (
	"math"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/internal/shared"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// The factors of diffusers' get_scheduler lambdas (optimization.py), worked by hand for warmup 10 and
// 110 training steps: the warmup ramps from 0, linear and cosine reach 0.5 halfway through the decay
// (k = 60); past the end linear stays at 0 and cosine, as in diffusers, climbs again (its progress is
// not clamped: at k = 160 it is half way back up).
func TestLRFactorDiffusersLambdas(t *testing.T) {
	cfg := func(s string, w int64) Config {
		c := Default()
		c.LRScheduler, c.LRWarmupSteps, c.LRTotalSteps = s, w, 110
		return c
	}
	for _, c := range []struct {
		cfg  Config
		k    int64
		want float64
	}{
		{cfg("", 0), 0, 1}, {cfg(LRConstant, 0), 500, 1},
		{cfg(LRConstantWithWarmup, 10), 0, 0}, {cfg(LRConstantWithWarmup, 10), 5, 0.5}, {cfg(LRConstantWithWarmup, 10), 10, 1}, {cfg(LRConstantWithWarmup, 10), 1000, 1},
		{cfg(LRLinear, 10), 0, 0}, {cfg(LRLinear, 10), 5, 0.5}, {cfg(LRLinear, 10), 10, 1}, {cfg(LRLinear, 10), 60, 0.5}, {cfg(LRLinear, 10), 110, 0}, {cfg(LRLinear, 10), 200, 0},
		{cfg(LRCosine, 10), 0, 0}, {cfg(LRCosine, 10), 10, 1}, {cfg(LRCosine, 10), 35, (1 + math.Sqrt2/2) / 2}, {cfg(LRCosine, 10), 60, 0.5}, {cfg(LRCosine, 10), 110, 0}, {cfg(LRCosine, 10), 160, 0.5},
		{cfg(LRCosine, 0), 0, 1}, {cfg(LRLinear, 0), 55, 0.5},
	} {
		if got := c.cfg.LRFactor(c.k); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s, warmup %d: factor at k = %d is %v, want %v", c.cfg.LRScheduler, c.cfg.LRWarmupSteps, c.k, got, c.want)
		}
	}
}

// The compiled step's float32 factor follows LRFactor at every step of a schedule and past its end.
func TestLRFactorInGraph(t *testing.T) {
	b := shared.GoBackend(t)
	for _, s := range []string{LRConstantWithWarmup, LRLinear, LRCosine} {
		for _, w := range []int64{0, 7} {
			c := Default()
			c.LRScheduler, c.LRWarmupSteps, c.LRTotalSteps = s, w, 40
			exec := graph.MustNewExec(b, func(n *graph.Node) *graph.Node { return c.lrFactor(n) })
			for n := int64(1); n <= 50; n++ {
				got := float64(tensors.ToScalar[float32](exec.MustExec1(float32(n))))
				if want := c.LRFactor(n - 1); math.Abs(got-want) > 1e-6 {
					t.Errorf("%s, warmup %d, step %d: graph factor %v, want %v", s, w, n, got, want)
				}
			}
		}
	}
	c := Default()
	if c.lrFactor(graph.Scalar(graph.NewGraph(b, "g"), dtypes.Float32, 1)) != nil {
		t.Errorf("the constant schedule adds a factor to the graph; want none (the step of the lesson unchanged)")
	}
}

func TestLRScheduleValidate(t *testing.T) {
	for _, c := range []struct {
		sched         string
		warmup, total int64
		want          string
	}{
		{"cosine_with_restarts", 0, 10, `lr_scheduler = "cosine_with_restarts": want one of`},
		{LRCosine, 0, 0, "lr_total_steps, which is 0"},
		{LRLinear, -1, 10, "lr_warmup_steps = -1"},
		{LRConstant, 5, 0, `use "constant_with_warmup"`},
		{LRConstantWithWarmup, 0, -3, "lr_total_steps = -3"},
	} {
		cfg := Default()
		cfg.LRScheduler, cfg.LRWarmupSteps, cfg.LRTotalSteps = c.sched, c.warmup, c.total
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s warmup %d total %d: error %v; want one that says %q", c.sched, c.warmup, c.total, err, c.want)
		}
	}
	cfg := Default()
	cfg.LRScheduler, cfg.LRWarmupSteps, cfg.LRTotalSteps = LRCosine, 100, 1000
	if err := cfg.Validate(); err != nil {
		t.Errorf("cosine with warmup: %v", err)
	}
}
