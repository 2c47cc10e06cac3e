package sampler

import (
	"fmt"
	"github.com/ddpm/ddpm/internal/shared"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/schedule"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// fakeModel is m = w x_t + u t/1000 + 0.05 y (the label term only when labels are given), with scalar
// weights w and u: small enough to run on the pure-Go backend, and it uses every input.
type fakeModel struct{ w, u float32 }

func (f fakeModel) Weights() []*tensors.Tensor {
	return []*tensors.Tensor{tensors.FromScalar(f.w), tensors.FromScalar(f.u)}
}

func (f fakeModel) Denoiser(weights []*graph.Node) Denoiser {
	return func(xt, t, y *graph.Node) *graph.Node {
		perSample := func(v *graph.Node) *graph.Node { // [N] int32 -> [N,1,...,1] float32
			dims := slices.Repeat([]int{1}, xt.Rank())
			dims[0] = -1
			return graph.Reshape(graph.ConvertDType(v, dtypes.Float32), dims...)
		}
		m := graph.Mul(weights[0], xt)
		m = graph.Add(m, graph.Mul(weights[1], graph.DivScalar(perSample(t), 1000)))
		if y != nil {
			m = graph.Add(m, graph.MulScalar(perSample(y), 0.05))
		}
		return m
	}
}

// host evaluates the model on the host for one sample of size `size` at timestep t with label y (nil: none).
func (f fakeModel) host(xt []float32, size, t int, labels []int32) []float32 {
	m := make([]float32, len(xt))
	for i := range xt {
		v := float64(f.w)*float64(xt[i]) + float64(f.u)*float64(float32(t)/1000)
		if labels != nil {
			v += 0.05 * float64(labels[i/size])
		}
		m[i] = float32(v)
	}
	return m
}

// hostRun is the obvious sampling loop on the host: the model, then Step, for every step of the plan.
// It returns x_0 and, per step, the x_t it started from and its x0Hat.
func hostRun(f fakeModel, plan Plan, xT []float32, size int, noise [][]float32, labels []int32) (x0 []float32, xts, x0Hats [][]float32) {
	xt := xT
	for i, st := range plan {
		m := f.host(xt, size, st.T, labels)
		prev, x0Hat := Step(st.Coef, xt, m, noise[i])
		xts, x0Hats = append(xts, xt), append(x0Hats, x0Hat)
		xt = prev
	}
	return xt, xts, x0Hats
}

func normals(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

func maxRelDiff(got, want []float32) float64 {
	d := 0.0
	for i := range want {
		d = max(d, math.Abs(float64(got[i])-float64(want[i]))/(1+math.Abs(float64(want[i]))))
	}
	if len(got) != len(want) {
		return math.Inf(1)
	}
	return d
}

type runCase struct {
	name   string
	plan   func(s *schedule.Schedule) (Plan, error)
	labels []int32
}

func runCases() []runCase {
	ddpm := func(c DDPM, n int) func(*schedule.Schedule) (Plan, error) {
		return func(s *schedule.Schedule) (Plan, error) { return c.Plan(s, n) }
	}
	ddim := func(c DDIM, n int) func(*schedule.Schedule) (Plan, error) {
		return func(s *schedule.Schedule) (Plan, error) { return c.Plan(s, n) }
	}
	vLarge := DefaultDDPM()
	vLarge.Prediction, vLarge.Variance, vLarge.Spacing = V, FixedLarge, schedule.Trailing
	ddimNoisy := DefaultDDIM()
	ddimNoisy.Prediction, ddimNoisy.Eta, ddimNoisy.ClipSample = Sample, 0.5, false
	ddimAlpha0 := DefaultDDIM()
	ddimAlpha0.SetAlphaToOne, ddimAlpha0.Spacing = false, schedule.Linspace
	return []runCase{
		{"ddpm/default/n=10", ddpm(DefaultDDPM(), 10), nil},
		{"ddpm/v_prediction/fixed_large/trailing/n=8/labels", ddpm(vLarge, 8), []int32{3, -1}},
		{"ddim/sample/eta=0.5/no clip/n=10", ddim(ddimNoisy, 10), nil},
		{"ddim/epsilon/alpha_to_one=false/linspace/n=6/labels", ddim(ddimAlpha0, 6), []int32{0, 7}},
	}
}

// TestRunMatchesHostLoop runs the device loop on the pure-Go backend with a host-supplied x_T and step noise
// against the host loop of Step. Tolerance 1e-5 relative to 1 + |want|: float32 on the device vs float64
// arithmetic on the host, over up to 10 steps (observed max 3.2e-7).
func TestRunMatchesHostLoop(t *testing.T) {
	b := shared.GoBackend(t)
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	const N, size = 2, 1 * 4 * 4
	model := fakeModel{w: 0.9, u: 0.3}
	worst := 0.0
	for k, tc := range runCases() {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := tc.plan(s)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(7, uint64(k)))
			xT := normals(rng, N*size)
			noise := make([][]float32, len(plan))
			var noiseFlat []float32
			for i := range noise {
				noise[i] = normals(rng, N*size)
				noiseFlat = append(noiseFlat, noise[i]...)
			}
			want, _, _ := hostRun(model, plan, xT, size, noise, tc.labels)
			init := tensors.FromFlatDataAndDimensions(slices.Clone(xT), N, 1, 4, 4)
			got, err := Run(b, model, plan, Options{
				N: N, Shape: []int{1, 4, 4}, Seed: 1,
				Init:   init,
				Noise:  tensors.FromFlatDataAndDimensions(noiseFlat, len(plan), N, 1, 4, 4),
				Labels: tc.labels,
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := got.Shape().Check(dtypes.Float32, N, 1, 4, 4); err != nil {
				t.Fatalf("Run returned shape %s; want float32 [2 1 4 4]", got.Shape())
			}
			if fmt.Sprint(flat32(t, init)) != fmt.Sprint(xT) {
				t.Fatalf("Run modified Options.Init")
			}
			d := maxRelDiff(flat32(t, got), want)
			worst = max(worst, d)
			if !(d <= 1e-5) {
				t.Fatalf("Run = %v\nhost loop = %v\nmax relative difference %.3g; want <= 1e-5", flat32(t, got), want, d)
			}
		})
	}
	t.Logf("max difference / (1 + |want|): %.3g", worst)
}

// TestRunRecord checks that OnStep receives exactly the recorded steps, in order, with their timestep,
// the step's input x_t and its x0Hat as the host loop computes them, and that the last step's x0Hat is the
// returned sample (the last DDPM step and the last DDIM step with set_alpha_to_one return x0Hat itself).
func TestRunRecord(t *testing.T) {
	b := shared.GoBackend(t)
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	const N, size = 2, 1 * 2 * 3
	model := fakeModel{w: 0.5, u: -0.2}
	ddpm, ddim := DefaultDDPM(), DefaultDDIM()
	ddim.Eta = 1
	for _, tc := range []struct {
		name   string
		plan   func() (Plan, error)
		record []int
	}{
		{"ddpm/n=6", func() (Plan, error) { return ddpm.Plan(s, 6) }, []int{0, 3, 5}},
		{"ddim/eta=1/n=5", func() (Plan, error) { return ddim.Plan(s, 5) }, []int{4, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := tc.plan()
			if err != nil {
				t.Fatal(err)
			}
			last := plan[len(plan)-1].Coef
			if last.C != 1 || last.D != 0 || last.E != 0 || last.Sigma != 0 {
				t.Fatalf("last step coefficients %+v; want x_prev = x0Hat (C = 1, D = E = Sigma = 0)", last)
			}
			rng := rand.New(rand.NewPCG(8, 9))
			xT := normals(rng, N*size)
			noise := make([][]float32, len(plan))
			var noiseFlat []float32
			for i := range noise {
				noise[i] = normals(rng, N*size)
				noiseFlat = append(noiseFlat, noise[i]...)
			}
			_, wantXt, wantX0Hat := hostRun(model, plan, xT, size, noise, nil)

			var gotSteps []int
			var lastX0Hat []float32
			got, err := Run(b, model, plan, Options{
				N: N, Shape: []int{1, 2, 3},
				Init:   tensors.FromFlatDataAndDimensions(slices.Clone(xT), N, 1, 2, 3),
				Noise:  tensors.FromFlatDataAndDimensions(noiseFlat, len(plan), N, 1, 2, 3),
				Record: tc.record,
				OnStep: func(i, tt int, xt, x0Hat *tensors.Tensor) {
					gotSteps = append(gotSteps, i)
					if tt != plan[i].T {
						t.Errorf("OnStep(i=%d) t = %d; want %d", i, tt, plan[i].T)
					}
					if d := maxRelDiff(flat32(t, xt), wantXt[i]); !(d <= 1e-5) {
						t.Errorf("OnStep(i=%d) x_t differs from the host loop by %.3g", i, d)
					}
					if d := maxRelDiff(flat32(t, x0Hat), wantX0Hat[i]); !(d <= 1e-5) {
						t.Errorf("OnStep(i=%d) x0Hat differs from the host loop by %.3g", i, d)
					}
					if i == len(plan)-1 {
						lastX0Hat = flat32(t, x0Hat)
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Sorted(slices.Values(tc.record))
			if fmt.Sprint(gotSteps) != fmt.Sprint(want) {
				t.Fatalf("OnStep called for steps %v; want %v", gotSteps, want)
			}
			if lastX0Hat == nil {
				t.Fatalf("the last step was not recorded")
			}
			if d := maxRelDiff(flat32(t, got), lastX0Hat); d != 0 {
				t.Fatalf("returned sample differs from the last x0Hat by %.3g; want equal", d)
			}
		})
	}
}

// TestRunSeed checks the device RNG path: the same seed gives the same samples, another seed others, and a
// deterministic DDIM (eta = 0) from a given x_T does not depend on the seed.
func TestRunSeed(t *testing.T) {
	b := shared.GoBackend(t)
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	model := fakeModel{w: 0.7, u: 0.1}
	ddpmPlan, err := DefaultDDPM().Plan(s, 5)
	if err != nil {
		t.Fatal(err)
	}
	ddimPlan, err := DefaultDDIM().Plan(s, 5)
	if err != nil {
		t.Fatal(err)
	}
	run := func(plan Plan, seed int64, init *tensors.Tensor) []float32 {
		t.Helper()
		x, err := Run(b, model, plan, Options{N: 3, Shape: []int{2, 2, 2}, Seed: seed, Init: init})
		if err != nil {
			t.Fatal(err)
		}
		return flat32(t, x)
	}
	a1, a2, c := run(ddpmPlan, 42, nil), run(ddpmPlan, 42, nil), run(ddpmPlan, 43, nil)
	if fmt.Sprint(a1) != fmt.Sprint(a2) {
		t.Errorf("seed 42 twice gave different samples:\n%v\n%v", a1, a2)
	}
	if maxRelDiff(a1, c) < 1e-3 {
		t.Errorf("seeds 42 and 43 gave the same samples: %v", a1)
	}
	for _, v := range a1 {
		if math.IsNaN(float64(v)) || math.Abs(float64(v)) > 1.5 {
			t.Fatalf("DDPM sample value %v; want finite values near [-1, 1] (x0Hat is clipped)", v)
		}
	}
	init := tensors.FromFlatDataAndDimensions(normals(rand.New(rand.NewPCG(1, 1)), 3*8), 3, 2, 2, 2)
	d1, d2 := run(ddimPlan, 1, init), run(ddimPlan, 2, init)
	if fmt.Sprint(d1) != fmt.Sprint(d2) {
		t.Errorf("DDIM eta=0 from the same x_T depends on the seed:\n%v\n%v", d1, d2)
	}
}

// badShapeModel returns a model output of the wrong shape; panicModel panics with a non-error value.
type badShapeModel struct{ fakeModel }

func (badShapeModel) Denoiser([]*graph.Node) Denoiser {
	return func(xt, t, y *graph.Node) *graph.Node { return graph.ConvertDType(t, dtypes.Float32) }
}

type panicModel struct{ fakeModel }

func (panicModel) Denoiser([]*graph.Node) Denoiser {
	return func(xt, t, y *graph.Node) *graph.Node { panic("boom") }
}

func TestRunErrors(t *testing.T) {
	b := shared.GoBackend(t)
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	plan, err := DefaultDDIM().Plan(s, 3)
	if err != nil {
		t.Fatal(err)
	}
	// A DDPM run of 3 steps that ends at t = 1 > 0, whose last step draws noise.
	ddpmPlan := Plan{plan[0], plan[1], {T: 1, Coef: Coefficients{C: 1, Sigma: 0.1}}}
	good := Options{N: 2, Shape: []int{1, 2, 2}}
	with := func(f func(o *Options)) Options { o := good; f(&o); return o }
	model := fakeModel{w: 1}
	for _, tc := range []struct {
		name    string
		model   Model
		plan    Plan
		opts    Options
		wantErr string
	}{
		{"no samples", model, plan, with(func(o *Options) { o.N = 0 }), "Options.N"},
		{"no shape", model, plan, with(func(o *Options) { o.Shape = nil }), "Options.Shape"},
		{"init shape", model, plan, with(func(o *Options) { o.Init = tensors.FromShape(tensors.FromScalar(float32(0)).Shape()) }), "Options.Init"},
		{"noise shape", model, plan, with(func(o *Options) {
			o.Noise = tensors.FromFlatDataAndDimensions(make([]float32, 1*2*4), 1, 2, 1, 2, 2) // 3 or 2 draws allowed
		}), "Options.Noise"},
		{"noise without the last step's draw, which adds noise", model, ddpmPlan, with(func(o *Options) {
			o.Noise = tensors.FromFlatDataAndDimensions(make([]float32, 2*2*4), 2, 2, 1, 2, 2)
		}), "the last step adds noise"},
		{"labels", model, plan, with(func(o *Options) { o.Labels = []int32{1} }), "labels"},
		{"record range", model, plan, with(func(o *Options) { o.Record, o.OnStep = []int{3}, func(int, int, *tensors.Tensor, *tensors.Tensor) {} }), "Record"},
		{"record without OnStep", model, plan, with(func(o *Options) { o.Record = []int{0} }), "OnStep"},
		{"empty plan", model, nil, good, "empty plan"},
		{"denoiser shape", badShapeModel{}, plan, good, "denoiser returned"},
		{"denoiser panics", panicModel{}, plan, good, "boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := Run(b, tc.model, tc.plan, tc.opts)
			if err == nil || x != nil || !strings.HasPrefix(err.Error(), "sampler: ") || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Run = %v, %v; want a sampler error about %q", x, err, tc.wantErr)
			}
		})
	}
}

// Several steps per compiled call give the samples of one step per call: the same coefficients, the
// same draws from the device RNG in the same order, or the same host noise.
func TestRunStepsPerCall(t *testing.T) {
	b := shared.GoBackend(t)
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	plan, err := DefaultDDPM().Plan(s, 12)
	if err != nil {
		t.Fatal(err)
	}
	m := fakeModel{w: 0.3, u: 0.1}
	noise := make([]float32, 12*2*3)
	for i := range noise {
		noise[i] = float32(i%7) - 3
	}
	for _, host := range []bool{false, true} {
		run := func(k int) []float32 {
			opts := Options{N: 2, Shape: []int{3}, Seed: 5, StepsPerCall: k}
			if host {
				opts.Noise = tensors.FromFlatDataAndDimensions(noise, 12, 2, 3)
			}
			x, err := Run(b, m, plan, opts)
			if err != nil {
				t.Fatal(err)
			}
			return flat32(t, x)
		}
		one := run(1)
		for _, k := range []int{4, 5, 12} { // 5 rounds down to 4, a divisor of 12
			got := run(k)
			for i := range one {
				if math.Abs(float64(got[i]-one[i])) > 1e-6 {
					t.Fatalf("host noise %v, %d steps per call: sample[%d] = %g, one step per call %g", host, k, i, got[i], one[i])
				}
			}
		}
	}
	if k := stepsPerCall(Options{StepsPerCall: 7}, 1000); k != 5 {
		t.Errorf("stepsPerCall(7, 1000 steps) = %d, want 5", k)
	}
}

// countingModel counts the builds of its denoiser: one per step graph built (and compiled).
type countingModel struct {
	fakeModel
	builds *int
}

func (c countingModel) Denoiser(w []*graph.Node) Denoiser {
	*c.builds++
	return c.fakeModel.Denoiser(w)
}

// TestRunner runs batches through one Runner: each gives, bit for bit, the samples of the one-shot Run
// with the same options, and the step graph of a configuration is built once, kept when another
// configuration comes between its runs.
func TestRunner(t *testing.T) {
	b := shared.GoBackend(t)
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	plan, err := DefaultDDPM().Plan(s, 6)
	if err != nil {
		t.Fatal(err)
	}
	builds := 0
	model := countingModel{fakeModel{w: 0.8, u: 0.2}, &builds}
	r, err := NewRunner(b, model)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Finalize()
	batch := Options{N: 2, Shape: []int{1, 2, 2}, StepsPerCall: 2}
	for _, tc := range []struct {
		name       string
		opts       func(o *Options)
		wantBuilds int
	}{
		{"seed 11", func(o *Options) { o.Seed = 11 }, 1},
		{"seed 12", func(o *Options) { o.Seed = 12 }, 1},
		{"N=3", func(o *Options) { o.N, o.Seed = 3, 13 }, 2},
		{"labels", func(o *Options) { o.Labels, o.Seed = []int32{1, -1}, 14 }, 3},
		{"seed 15, the first configuration again", func(o *Options) { o.Seed = 15 }, 3},
	} {
		opts := batch
		tc.opts(&opts)
		x, err := r.Run(plan, opts)
		if err != nil {
			t.Fatalf("%s: Runner.Run: %v", tc.name, err)
		}
		got := flat32(t, x)
		st := r.Stats()
		if builds != tc.wantBuilds {
			t.Errorf("%s: %d step graphs built so far; want %d", tc.name, builds, tc.wantBuilds)
		}
		before := builds
		want, err := Run(b, model, plan, opts)
		if err != nil {
			t.Fatalf("%s: Run: %v", tc.name, err)
		}
		if builds != before+1 {
			t.Errorf("%s: the one-shot Run built %d step graphs; want 1", tc.name, builds-before)
		}
		builds = before
		if fmt.Sprint(got) != fmt.Sprint(flat32(t, want)) {
			t.Errorf("%s: Runner.Run gave\n%v\none-shot Run\n%v", tc.name, got, flat32(t, want))
		}
		newGraph := tc.name != "seed 12" && !strings.HasPrefix(tc.name, "seed 15")
		if st.Compiled != newGraph || st.Calls != 3 || st.StepsPerCall != 2 || st.FirstCall <= 0 ||
			st.Loop < st.FirstCall || st.Total < st.Loop+st.Draw || st.Draw <= 0 {
			t.Errorf("%s: Stats() = %+v; want Compiled %v, 3 calls of 2 steps, FirstCall <= Loop <= Total", tc.name, st, newGraph)
		}
		if st.SteadyStep() != (st.Loop-st.FirstCall)/4 {
			t.Errorf("%s: SteadyStep() = %v; want (Loop - FirstCall)/4", tc.name, st.SteadyStep())
		}
	}
	r.Finalize()
	if _, err := r.Run(plan, batch); err == nil || !strings.Contains(err.Error(), "Finalize") {
		t.Errorf("Run after Finalize: err = %v; want an error about Finalize", err)
	}
	if _, err := NewRunner(nil, model); err == nil || !strings.HasPrefix(err.Error(), "sampler: ") {
		t.Errorf("NewRunner(nil backend): err = %v; want a sampler error", err)
	}
}
