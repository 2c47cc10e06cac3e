package train

import (
	"math"
	"testing"

	"github.com/ddpm/ddpm/internal/shared"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/sampler"
	"github.com/gomlx/gomlx/pkg/core/graph"
)

// TestEMAWarmupInGraph checks the warmup that the compiled step applies (updateEMA), not the host
// formula alone: over 16 steps (the ramp reaches the decay at step 14) the EMA follows ema_n = d_n ema_{n-1} + (1-d_n) p_n with d_n =
// EMADecayAt(n) = min(decay, (1+k)/(10+k)), k = n-1, with one step per call (checked after each step)
// and with four steps per call (after each call; the weights p_n do not depend on the random draws with
// constModel, so they are those of the one-step run).
func TestEMAWarmupInGraph(t *testing.T) {
	b := shared.GoBackend(t)
	cfg := Default()
	cfg.BatchSize, cfg.LR, cfg.EMADecay, cfg.EMAWarmup = 4, 0.05, 0.6, true
	cfg.Prediction = sampler.Sample
	if cfg.EMADecayAt(1) != 0 || cfg.EMADecayAt(3) != 3.0/12 || cfg.EMADecayAt(16) != 0.6 {
		t.Fatalf("the ramp is not the one tested: %g %g %g", cfg.EMADecayAt(1), cfg.EMADecayAt(3), cfg.EMADecayAt(16))
	}
	batch := []int{0, 1, 2, 3}
	var params, emas []float64 // after each step, host recurrence
	for _, perCall := range []int{1, 4} {
		cfg.StepsPerCall = perCall
		tr, err := New(b, cfg, constModel{}, linearSchedule(t, 10), bars(8), []int{8, 1, 8, 8}, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := tr.Init(3)
		ema := float64(host(t, st.Params)[0])
		for n := perCall; n <= 16; n += perCall {
			batches := make([][]int, perCall)
			for i := range batches {
				batches[i] = batch
			}
			if _, err := tr.Step(st, batches); err != nil {
				t.Fatal(err)
			}
			if perCall == 1 {
				params = append(params, float64(host(t, st.Params)[0]))
				d := cfg.EMADecayAt(int64(n))
				ema = d*ema + (1-d)*params[n-1]
				emas = append(emas, ema)
			}
			if got, want := float64(host(t, st.EMA)[0]), emas[n-1]; math.Abs(got-want) > 1e-6*max(1, math.Abs(want)) {
				t.Fatalf("%d steps per call, step %d (decay %.4f): ema %.8g, want %.8g", perCall, n, cfg.EMADecayAt(int64(n)), got, want)
			}
		}
	}
}

// constModel predicts w everywhere, whatever x_t: with prediction_type "sample" the loss is
// mean((w - x0)^2), whose gradient 2 (w - mean(x0)) the host knows exactly, with no random draw in it.
type constModel struct{}

func (constModel) Specs() []nn.Spec {
	return []nn.Spec{{Name: "w", Shape: []int{1}, Init: nn.FanIn, FanIn: 1}}
}

func (constModel) Forward(w nn.Scope, xt, t, y *graph.Node) *graph.Node {
	return graph.BroadcastToShape(graph.Reshape(w.Get("w"), 1, 1, 1, 1), xt.Shape())
}

// TestAdamWSeveralSteps runs 12 AdamW steps (weight decay, and gradient clipping in one case; one and
// four steps per compiled call) against torch.optim.AdamW's update computed in float64 on the host. The
// learning rate is large enough that w overshoots its optimum and the gradient changes sign, so that
// m/sqrt(v) is far from the +-1 of the first step and the bias corrections matter.
func TestAdamWSeveralSteps(t *testing.T) {
	b := shared.GoBackend(t)
	images := bars(8) // every image: one row of 1 in a field of -1, mean -0.75
	const mean = -0.75
	for _, c := range []struct {
		name     string
		clip     float64
		perCall  int
		schedule string
		warmup   int64
	}{
		{"plain", 0, 1, "", 0}, {"four per call", 0, 4, "", 0}, {"clipped", 0.5, 1, "", 0},
		{"cosine schedule, warmup 3", 0, 4, LRCosine, 3}, {"linear schedule", 0, 1, LRLinear, 0},
		{"constant with warmup 2", 0, 1, LRConstantWithWarmup, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			cfg.BatchSize, cfg.LR, cfg.WeightDecay, cfg.MaxGradNorm, cfg.StepsPerCall = 4, 0.3, 0.1, c.clip, c.perCall
			// A schedule over 10 steps: the last two of the 12 are taken at rate 0 by linear and cosine.
			cfg.LRScheduler, cfg.LRWarmupSteps = c.schedule, c.warmup
			if cfg.DecaysLR() {
				cfg.LRTotalSteps = 10
			}
			cfg.Prediction = sampler.Sample
			tr, err := New(b, cfg, constModel{}, linearSchedule(t, 10), images, []int{8, 1, 8, 8}, nil)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := tr.Init(7)
			p := float64(host(t, st.Params)[0])
			var m, v, gMax float64
			signs := map[bool]bool{}
			for n := 1; n <= 12; n++ {
				if _, err := tr.Step(st, [][]int{{0, 1, 2, 3}}); err != nil {
					t.Fatal(err)
				}
				g := 2 * (p - mean)
				signs[g > 0] = true
				gMax = max(gMax, math.Abs(g))
				if c.clip > 0 && math.Abs(g) > c.clip {
					g *= c.clip / (math.Abs(g) + 1e-6)
				}
				lr := cfg.LR * cfg.LRFactor(int64(n-1)) // torch: LambdaLR stepped after each optimizer step
				p *= 1 - lr*cfg.WeightDecay
				m = cfg.Beta1*m + (1-cfg.Beta1)*g
				v = cfg.Beta2*v + (1-cfg.Beta2)*g*g
				mHat := m / (1 - math.Pow(cfg.Beta1, float64(n)))
				vHat := v / (1 - math.Pow(cfg.Beta2, float64(n)))
				p -= lr * mHat / (math.Sqrt(vHat) + cfg.Eps)
				// float32 against float64, relative to each quantity's scale: m and v are sums of terms of
				// the gradient's size that cancel when it changes sign.
				for _, x := range []struct {
					name             string
					got, want, scale float64
				}{
					{"w", float64(host(t, st.Params)[0]), p, max(1, math.Abs(p))},
					{"m", float64(host(t, st.M)[0]), m, gMax},
					{"v", float64(host(t, st.V)[0]), v, gMax * gMax},
				} {
					if math.Abs(x.got-x.want) > 1e-5*x.scale {
						t.Fatalf("step %d: %s = %.8g, want %.8g (float64 AdamW)", n, x.name, x.got, x.want)
					}
				}
			}
			if !signs[true] || !signs[false] {
				t.Fatalf("the gradient kept one sign over 12 steps; the test wants it to change")
			}
		})
	}
}
