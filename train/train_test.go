package train

import (
	"context"
	"github.com/ddpm/ddpm/internal/shared"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/unet"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

func tinyUNet(t *testing.T) *unet.Model {
	t.Helper()
	c := unet.Default()
	c.InChannels, c.OutChannels = 1, 1
	c.BlockOutChannels = []int{8, 16}
	c.DownBlockTypes = []string{"DownBlock2D", "AttnDownBlock2D"}
	c.UpBlockTypes = []string{"AttnUpBlock2D", "UpBlock2D"}
	c.LayersPerBlock = 1
	g := 4
	c.NormNumGroups = &g
	c.AttentionHeadDim = nil
	m, err := unet.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Bars: 8x8 images of one bright row or column on a dark background.
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

func linearSchedule(t *testing.T, T int) *schedule.Schedule {
	t.Helper()
	c := schedule.Default()
	c.T = T
	s, err := schedule.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTrainingLowersLoss(t *testing.T) {
	b := shared.GoBackend(t)
	cfg := Default()
	cfg.BatchSize = 16
	cfg.LR = 2e-3
	cfg.ZeroInit = []string{"conv_out.weight", "conv_out.bias"}
	tr, err := New(b, cfg, tinyUNet(t), linearSchedule(t, 100), bars(64), []int{64, 1, 8, 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := tr.Init(1)
	if err != nil {
		t.Fatal(err)
	}
	batcher, _ := data.NewBatcher(data.BatcherState{N: 64, BatchSize: 16, DropLast: true, Seed: 2})
	var losses []float32
	err = tr.Run(context.Background(), st, batcher, 40, func(st *State, epoch int, l []float32) error {
		losses = append(losses, l...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Step != 40 || len(losses) != 40 {
		t.Fatalf("ran %d steps with %d losses, want 40", st.Step, len(losses))
	}
	mean := func(x []float32) float64 {
		s := 0.0
		for _, v := range x {
			s += float64(v)
		}
		return s / float64(len(x))
	}
	first, last := mean(losses[:8]), mean(losses[32:])
	t.Logf("loss: first 8 steps %.3f, last 8 steps %.3f", first, last)
	// Zero-initialized output: the first loss is mean(eps^2) ~ 1. Predicting eps from x_t is easy
	// where x_t is mostly noise, so 40 steps must take a good part of it away.
	if first < 0.7 || last > 0.75*first {
		t.Errorf("loss went from %.3f to %.3f in 40 steps; want a drop of at least 25%%", first, last)
	}
}

// linearModel predicts w * x_t with one weight, so AdamW and the EMA can be checked by hand.
type linearModel struct{}

func (linearModel) Specs() []nn.Spec {
	return []nn.Spec{{Name: "w", Shape: []int{1}, Init: nn.FanIn, FanIn: 1}}
}

func (linearModel) Forward(w nn.Scope, xt, t, y *graph.Node) *graph.Node {
	return graph.Mul(xt, graph.ExpandLeftToRank(w.Get("w"), xt.Rank()))
}

func host(t *testing.T, x *tensors.Tensor) []float32 {
	t.Helper()
	v, err := tensors.CopyFlatData[float32](x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// EMA with decay d follows ema_n = d ema_{n-1} + (1-d) p_n exactly; decay 0 copies the weights.
func TestEMA(t *testing.T) {
	b := shared.GoBackend(t)
	for _, d := range []float64{0, 0.5, 0.9} {
		cfg := Default()
		cfg.BatchSize, cfg.EMADecay, cfg.LR = 4, d, 0.05
		tr, err := New(b, cfg, linearModel{}, linearSchedule(t, 10), bars(8), []int{8, 1, 8, 8}, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := tr.Init(3)
		ema := float64(host(t, st.Params)[0])
		for i := 0; i < 5; i++ {
			if _, err := tr.Step(st, [][]int{{0, 1, 2, 3}}); err != nil {
				t.Fatal(err)
			}
			p := float64(host(t, st.Params)[0])
			ema = d*ema + (1-d)*p
			got := float64(host(t, st.EMA)[0])
			if math.Abs(got-ema) > 1e-6 {
				t.Fatalf("decay %g, step %d: ema %g, want %g", d, i+1, got, ema)
			}
		}
	}
}

func TestEMAWarmupDecay(t *testing.T) {
	c := Default()
	c.EMAWarmup = true
	for _, tc := range []struct {
		n    int64
		want float64
	}{{1, 0}, {2, 2.0 / 11}, {11, 11.0 / 20}, {100000, 0.999}} {
		if got := c.EMADecayAt(tc.n); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("EMADecayAt(%d) = %g, want %g", tc.n, got, tc.want)
		}
	}
}

// AdamW against torch.optim.AdamW's formulas, computed on the host from the gradient of the linear
// model: loss = mean((w x_t - eps)^2) has d/dw = mean(2 (w x_t - eps) x_t). We recover the gradient
// from the first step, where Adam moves every weight by lr exactly (m/sqrt(v) = sign(g)).
func TestAdamWFirstStepMovesByLR(t *testing.T) {
	b := shared.GoBackend(t)
	cfg := Default()
	cfg.BatchSize, cfg.LR, cfg.WeightDecay = 4, 0.01, 0.1
	tr, err := New(b, cfg, linearModel{}, linearSchedule(t, 10), bars(8), []int{8, 1, 8, 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := tr.Init(5)
	w0 := float64(host(t, st.Params)[0])
	if _, err := tr.Step(st, [][]int{{0, 1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	w1 := float64(host(t, st.Params)[0])
	m := float64(host(t, st.M)[0])
	v := float64(host(t, st.V)[0])
	g := m / (1 - cfg.Beta1)
	if math.Abs(v-(1-cfg.Beta2)*g*g) > 1e-6*math.Abs(v) {
		t.Errorf("v = %g, want (1-b2) g^2 = %g", v, (1-cfg.Beta2)*g*g)
	}
	// p1 = p0 (1 - lr wd) - lr * ghat / (|ghat| + eps') with ghat = g, so a step of lr * sign(g).
	want := w0*(1-cfg.LR*cfg.WeightDecay) - cfg.LR*g/(math.Abs(g)+cfg.Eps)
	if math.Abs(w1-want) > 1e-6 {
		t.Errorf("w after one AdamW step = %.7f, want %.7f", w1, want)
	}
}

// Resuming from a copy of the state taken after N steps reproduces an uninterrupted 2N-step run
// exactly: the RNG state, moments, EMA and step counter are the whole state.
func TestResumeMatchesUninterrupted(t *testing.T) {
	b := shared.GoBackend(t)
	cfg := Default()
	cfg.BatchSize = 8
	cfg.LR = 1e-3
	tr, err := New(b, cfg, tinyUNet(t), linearSchedule(t, 50), bars(32), []int{32, 1, 8, 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bs := data.BatcherState{N: 32, BatchSize: 8, DropLast: true, Seed: 4}
	ctx := context.Background()
	run := func(st *State, bs data.BatcherState, until int64) (*State, data.BatcherState) {
		bt, _ := data.NewBatcher(bs)
		if err := tr.Run(ctx, st, bt, until, nil); err != nil {
			t.Fatal(err)
		}
		return st, bt.State()
	}
	copyState := func(st *State) *State {
		c := &State{Step: st.Step}
		cp := func(x *tensors.Tensor) *tensors.Tensor {
			return tensors.FromFlatDataAndDimensions(host(t, x), x.Shape().Dimensions...)
		}
		c.Params, c.EMA, c.M, c.V = cp(st.Params), cp(st.EMA), cp(st.M), cp(st.V)
		r, _ := tensors.CopyFlatData[uint64](st.RNG)
		c.RNG = tensors.FromFlatDataAndDimensions(r, st.RNG.Shape().Dimensions...)
		return c
	}
	a2, _ := tr.Init(7)
	a2, bsMid := run(a2, bs, 3)
	resumed, _ := run(copyState(a2), bsMid, 6)
	straight, _ := tr.Init(7)
	straight, _ = run(straight, bs, 6)
	if resumed.Step != 6 {
		t.Fatalf("resumed run ended at step %d, want 6", resumed.Step)
	}
	for i, pair := range [][2]*tensors.Tensor{{straight.Params, resumed.Params}, {straight.EMA, resumed.EMA}, {straight.M, resumed.M}, {straight.V, resumed.V}} {
		x, y := host(t, pair[0]), host(t, pair[1])
		for j := range x {
			if x[j] != y[j] {
				t.Fatalf("state tensor %d differs after resume at %d: %g vs %g", i, j, x[j], y[j])
			}
		}
	}
}

// A state survives the trip through a checkpoint file exactly, and a file for another model is refused.
func TestStateFileRoundTrip(t *testing.T) {
	b := shared.GoBackend(t)
	m := tinyUNet(t)
	tr, err := New(b, Default(), m, linearSchedule(t, 10), bars(64), []int{64, 1, 8, 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := tr.Init(9)
	st.Step = 17
	f, err := StateFile(st, m.Specs(), map[string]string{"note": "x"})
	if err != nil {
		t.Fatal(err)
	}
	back, err := StateFromFile(f, m.Specs())
	if err != nil {
		t.Fatal(err)
	}
	if back.Step != 17 || f.Metadata["note"] != "x" {
		t.Errorf("step %d, metadata %v", back.Step, f.Metadata)
	}
	for i, pair := range [][2]*tensors.Tensor{{st.Params, back.Params}, {st.EMA, back.EMA}, {st.M, back.M}, {st.V, back.V}} {
		x, y := host(t, pair[0]), host(t, pair[1])
		for j := range x {
			if x[j] != y[j] {
				t.Fatalf("tensor %d value %d: %g after the round trip, want %g", i, j, y[j], x[j])
			}
		}
	}
	delete(f.Tensors, "ema.conv_in.weight")
	if _, err := StateFromFile(f, m.Specs()); err == nil || !strings.Contains(err.Error(), "ema.conv_in.weight") {
		t.Errorf("missing tensor: err = %v, want it named", err)
	}
}

// Mixed precision (bfloat16 compute, float32 master weights) follows the float32 run closely over the
// first steps: the same init, batches and noise, losses within bfloat16's 3 significant digits
// compounded over a few steps (5%).
func TestBF16TracksFP32(t *testing.T) {
	b := shared.GoBackend(t)
	losses := map[Precision][]float32{}
	for _, p := range []Precision{FP32, BF16} {
		cfg := Default()
		cfg.BatchSize, cfg.LR, cfg.Precision = 8, 1e-3, p
		tr, err := New(b, cfg, tinyUNet(t), linearSchedule(t, 50), bars(16), []int{16, 1, 8, 8}, nil)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := tr.Init(11)
		l, err := tr.Step(st, [][]int{{0, 1, 2, 3, 4, 5, 6, 7}, {8, 9, 10, 11, 12, 13, 14, 15}, {0, 2, 4, 6, 8, 10, 12, 14}})
		if err != nil {
			t.Fatal(err)
		}
		losses[p] = l
	}
	for i := range losses[FP32] {
		a, c := losses[FP32][i], losses[BF16][i]
		if math.Abs(float64(a-c)) > 0.05*float64(a) {
			t.Errorf("step %d: bf16 loss %g, fp32 %g: more than 5%% apart", i+1, c, a)
		}
		if a == c {
			t.Errorf("step %d: bf16 and fp32 losses are identical (%g): is bf16 compute on?", i+1, a)
		}
	}
}

// Run reads losses in groups of calls; the losses, their order and the state are those of running the
// steps one by one, every step is reported once, and a group ends where an epoch begins.
func TestRunGroupsReadsWithoutChangingResults(t *testing.T) {
	b := shared.GoBackend(t)
	cfg := Default()
	cfg.BatchSize, cfg.LR = 4, 0.01
	tr, err := New(b, cfg, linearModel{}, linearSchedule(t, 10), bars(16), []int{16, 1, 8, 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bs := data.BatcherState{N: 16, BatchSize: 4, DropLast: true, Seed: 9} // 4 steps per epoch
	const steps = 14
	st, _ := tr.Init(2)
	bt, _ := data.NewBatcher(bs)
	var got []float32
	var ends []int64
	err = tr.Run(context.Background(), st, bt, steps, func(st *State, epoch int, l []float32) error {
		got = append(got, l...)
		if int64(len(got)) != st.Step {
			t.Errorf("after at step %d: %d losses reported so far; want one per step", st.Step, len(got))
		}
		ends = append(ends, st.Step)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	one, _ := tr.Init(2)
	bt1, _ := data.NewBatcher(bs)
	var want []float32
	for range steps {
		l, err := tr.Step(one, [][]int{bt1.Next()})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, l...)
	}
	if len(got) != steps {
		t.Fatalf("%d losses reported, want %d", len(got), steps)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("loss of step %d: %g grouped, %g one by one", i+1, got[i], want[i])
		}
	}
	if p, q := host(t, st.Params), host(t, one.Params); p[0] != q[0] {
		t.Errorf("weights after %d steps: %g grouped, %g one by one", steps, p[0], q[0])
	}
	if len(ends) >= steps { // each call of this model takes microseconds, far under readEvery
		t.Errorf("after was called after every call (at %v); want the reads grouped", ends)
	}
	for _, first := range []int64{5, 9, 13} { // the first step of epochs 2, 3, 4
		if !slices.Contains(ends, first) {
			t.Errorf("no group ended at step %d, the first of an epoch (groups ended at %v)", first, ends)
		}
	}
}
