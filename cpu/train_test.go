package cpu

import (
	"context"
	"fmt"
	"math"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/internal/shared"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/train"
	"github.com/ddpm/ddpm/unet"
	"github.com/gomlx/gomlx/pkg/core/tensors"
	"math/rand/v2"
)

// Bars: 8x8 images of one bright row or column on a dark background (as train's tests).
func bars(n int) []float32 {
	out := make([]float32, 0, n*64)
	for i := 0; i < n; i++ {
		k := i % 16
		for y := 0; y < 8; y++ {
			for x := 0; x < 8; x++ {
				v := float32(-1)
				if (k < 8 && y == k) || (k >= 8 && x == k-8) {
					v = 1
				}
				out = append(out, v)
			}
		}
	}
	return out
}

// The same run of train.Trainer.Run, once on the compiled GoMLX step (pure-Go backend) and once on
// the engine, from the same seed: the same noise and timesteps (the engine draws them from the state's
// RNG with the same ops), so the losses agree to float32 noise, step by step. The weights agree to
// a few AdamW steps of lr: the first steps of Adam move each weight by about lr * sign(g), and a
// gradient that is zero in exact arithmetic (to_k.bias) has a sign set by rounding.
func TestTrainerMatchesGoMLX(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	b := shared.GoBackend(t)
	for _, tc := range []struct {
		name string
		mod  func(*train.Config, *unet.Config)
	}{
		{"recipe", func(*train.Config, *unet.Config) {}},
		{"warmup, clipping, class dropout", func(c *train.Config, u *unet.Config) {
			c.EMAWarmup, c.MaxGradNorm = true, 0.5
			c.NumClasses, c.ClassDropout = 4, 0.3
			k := 5
			u.NumClassEmbeds = &k
		}},
		{"cosine learning-rate schedule with warmup", func(c *train.Config, _ *unet.Config) {
			c.LRScheduler, c.LRWarmupSteps, c.LRTotalSteps = train.LRCosine, 2, 5
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := train.Default()
			cfg.BatchSize, cfg.LR, cfg.EMADecay = 8, 1e-3, 0.9
			uc := tinyConfig()
			tc.mod(&cfg, &uc)
			m, err := unet.New(uc)
			if err != nil {
				t.Fatal(err)
			}
			sc := schedule.Default()
			sc.T = 50
			s, err := schedule.New(sc)
			if err != nil {
				t.Fatal(err)
			}
			imgs, dims := bars(32), []int{32, 1, 8, 8}
			var labels []int
			if cfg.NumClasses > 0 {
				for i := 0; i < 32; i++ {
					labels = append(labels, i%cfg.NumClasses)
				}
			}
			const steps = 5
			runOn := func(engine bool) (*train.State, []float32) {
				tr, err := train.New(b, cfg, m, s, imgs, dims, labels)
				if err != nil {
					t.Fatal(err)
				}
				if engine {
					e, err := NewTrainer(b, cfg, uc, s, imgs, dims, labels)
					if err != nil {
						t.Fatal(err)
					}
					defer e.Close()
					tr.SetEngine(e)
				}
				st, err := tr.Init(3)
				if err != nil {
					t.Fatal(err)
				}
				bt, err := data.NewBatcher(data.BatcherState{N: 32, BatchSize: 8, DropLast: true, Seed: 4})
				if err != nil {
					t.Fatal(err)
				}
				var losses []float32
				err = tr.Run(context.Background(), st, bt, steps, func(_ *train.State, _ int, l []float32) error {
					losses = append(losses, l...)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				return st, losses
			}
			want, wantLoss := runOn(false)
			got, gotLoss := runOn(true)
			if got.Step != steps || len(gotLoss) != steps {
				t.Fatalf("engine: step %d with %d losses, want %d", got.Step, len(gotLoss), steps)
			}
			for i := range wantLoss {
				if d := math.Abs(float64(gotLoss[i]-wantLoss[i])) / float64(wantLoss[i]); d > 1e-4 {
					t.Errorf("loss at step %d: %v, want %v (GoMLX)", i+1, gotLoss[i], wantLoss[i])
				}
			}
			t.Logf("losses: engine %v, GoMLX %v", gotLoss, wantLoss)
			rng := func(st *train.State) []uint64 { return tensors.MustCopyFlatData[uint64](st.RNG) }
			for i, v := range rng(want) {
				if rng(got)[i] != v {
					t.Fatalf("RNG state differs after %d steps", steps)
				}
			}
			lim := 2.5 * cfg.LR * steps
			for _, p := range []struct {
				name      string
				got, want *tensors.Tensor
			}{{"params", got.Params, want.Params}, {"ema", got.EMA, want.EMA}} {
				g, w := tensors.MustCopyFlatData[float32](p.got), tensors.MustCopyFlatData[float32](p.want)
				worst := 0.0
				for i := range w {
					worst = max(worst, math.Abs(float64(g[i]-w[i])))
				}
				if worst > lim {
					t.Errorf("%s differ by up to %.3g after %d steps, want <= %.3g", p.name, worst, steps, lim)
				}
				t.Logf("%s: max difference %.3g", p.name, worst)
			}
		})
	}
}

// BenchmarkTrainStep is one training step (forward, loss, backward, AdamW, EMA; no data loading) of
// the mnist preset at batch 64 on the engine: go test ./cpu -run X -bench TrainStep -benchtime 10x.
func BenchmarkTrainStep(b *testing.B) {
	benchThreads(b)
	uc, err := unet.Preset("mnist")
	if err != nil {
		b.Fatal(err)
	}
	g, err := NewGrad(uc)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	m, _ := unet.New(uc)
	flatT, _ := nn.Flatten(m.Specs(), nn.InitTensors(m.Specs(), 1))
	if err := g.SetWeights(tensors.MustCopyFlatData[float32](flatT)); err != nil {
		b.Fatal(err)
	}
	const n = 64
	rng := rand.New(rand.NewPCG(1, 2))
	x, target := randn(rng, n*28*28), randn(rng, n*28*28)
	ts := make([]int32, n)
	for i := range ts {
		ts[i] = int32(rng.IntN(1000))
	}
	p := g.Weights()
	mom, v, ema := make([]float32, len(p)), make([]float32, len(p)), append([]float32(nil), p...)
	opt := AdamWConfig{LR: 2e-4, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
	step := func(k int64) {
		if _, err := g.LossGrad(x, target, n, 28, 28, ts, nil); err != nil {
			b.Fatal(err)
		}
		AdamW(opt, p, mom, v, g.Gradient(), k)
		if err := g.Pack(); err != nil {
			b.Fatal(err)
		}
		EMA(ema, p, 0.999)
	}
	step(1) // builds the plan
	if os.Getenv("DDPM_PROFILE") != "" {
		g.Profile = map[string]time.Duration{}
		defer func() {
			type kv struct {
				k string
				v time.Duration
			}
			var all []kv
			for k, v := range g.Profile {
				all = append(all, kv{k, v})
			}
			sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
			for _, e := range all[:min(40, len(all))] {
				fmt.Fprintf(os.Stderr, "%-50s %8.1f ms/step\n", e.k, float64(e.v.Microseconds())/1000/float64(b.N))
			}
		}()
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		step(int64(i + 2))
	}
	el := b.Elapsed().Seconds()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(n*b.N), "cpu-ms/image")
	b.ReportMetric(1000*el/float64(b.N), "ms/step")
	b.ReportMetric(1000*el/float64(n*b.N), "ms/image")
	b.ReportMetric(float64(n*b.N)/el, "img/s")
}

// The engine takes its learning rate from the schedule: the first step of a warmup is taken at rate 0
// (diffusers' ramp starts at 0) and leaves every weight as it was, bit for bit, where the constant
// schedule moves them.
func TestTrainerFollowsLRSchedule(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	b := shared.GoBackend(t)
	uc := tinyConfig()
	sc := schedule.Default()
	sc.T = 50
	s, err := schedule.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	m, err := unet.New(uc)
	if err != nil {
		t.Fatal(err)
	}
	imgs, dims := bars(8), []int{8, 1, 8, 8}
	for _, warmup := range []int64{0, 3} {
		cfg := train.Default()
		cfg.BatchSize, cfg.LR = 8, 1e-3
		if warmup > 0 {
			cfg.LRScheduler, cfg.LRWarmupSteps = train.LRConstantWithWarmup, warmup
		}
		tr, err := train.New(b, cfg, m, s, imgs, dims, nil)
		if err != nil {
			t.Fatal(err)
		}
		e, err := NewTrainer(b, cfg, uc, s, imgs, dims, nil)
		if err != nil {
			t.Fatal(err)
		}
		tr.SetEngine(e)
		st, err := tr.Init(3)
		if err != nil {
			t.Fatal(err)
		}
		before := tensors.MustCopyFlatData[float32](st.Params)
		if _, err := tr.Step(st, [][]int{{0, 1, 2, 3, 4, 5, 6, 7}}); err != nil {
			t.Fatal(err)
		}
		moved := 0
		for i, v := range tensors.MustCopyFlatData[float32](st.Params) {
			if v != before[i] {
				moved++
			}
		}
		switch {
		case warmup > 0 && moved > 0:
			t.Errorf("warmup %d: the first step moved %d weights; want none (rate 0)", warmup, moved)
		case warmup == 0 && moved < len(before)/2:
			t.Errorf("constant schedule: the first step moved %d of %d weights; want most", moved, len(before))
		}
		e.Close()
	}
}
