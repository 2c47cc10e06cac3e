package toy

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"github.com/ddpm/ddpm/internal/shared"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ddpm/ddpm/data"
	"github.com/ddpm/ddpm/nn"
	"github.com/ddpm/ddpm/schedule"
	"github.com/ddpm/ddpm/train"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

func TestSpecsAreAPyTorchStateDict(t *testing.T) {
	var got []string
	for _, s := range DefaultMLP().Specs() {
		got = append(got, fmt.Sprint(s.Name, s.Shape))
	}
	want := []string{"net.0.weight[128 18]", "net.0.bias[128]", "net.2.weight[128 128]", "net.2.bias[128]",
		"net.4.weight[128 128]", "net.4.bias[128]", "net.6.weight[2 128]", "net.6.bias[2]"}
	if !slices.Equal(got, want) {
		t.Errorf("DefaultMLP().Specs() = %v; want %v", got, want)
	}
}

// mlpLoss compiles (weights..., x_t, t, target) -> (mean squared error, gradients...) of m.
func mlpLoss(t *testing.T, b backends.Backend, m MLP) func(w []*tensors.Tensor, xt, ts, target *tensors.Tensor) (float64, [][]float32) {
	specs := m.Specs()
	exec, err := graph.NewExec(b, func(in []*graph.Node) []*graph.Node {
		p := in[:len(specs)]
		xt, ts, target := in[len(specs)], in[len(specs)+1], in[len(specs)+2]
		out := m.Forward(nn.NewWeights(specs, p).Scope(), xt, ts, nil)
		l := graph.ReduceAllMean(graph.Square(graph.Sub(out, target)))
		return append([]*graph.Node{l}, graph.Gradient(l, p...)...)
	})
	if err != nil {
		t.Fatal(err)
	}
	return func(w []*tensors.Tensor, xt, ts, target *tensors.Tensor) (float64, [][]float32) {
		args := make([]any, 0, len(w)+3)
		for _, x := range w {
			args = append(args, x)
		}
		args = append(args, xt, ts, target)
		out, err := exec.Exec(args...)
		if err != nil {
			t.Fatal(err)
		}
		grads := make([][]float32, len(specs))
		for i := range grads {
			grads[i] = tensors.MustCopyFlatData[float32](out[1+i])
		}
		return float64(tensors.MustCopyFlatData[float32](out[0])[0]), grads
	}
}

// TestGradientMatchesFiniteDifferences checks the autodiff gradient of the training loss with
// respect to elements of every weight tensor, first layer included, against central differences.
func TestGradientMatchesFiniteDifferences(t *testing.T) {
	b := shared.GoBackend(t)
	m := DefaultMLP()
	specs := m.Specs()
	loss := mlpLoss(t, b, m)
	xt := tensors.FromFlatDataAndDimensions([]float32{0.1, 0.2, -0.3, 0.5, 1, -1, 0.7, 0.01}, 4, 2)
	ts := tensors.FromFlatDataAndDimensions([]int32{0, 17, 120, 199}, 4)
	target := tensors.FromFlatDataAndDimensions([]float32{0.5, -1, 0.3, 0.2, -0.8, 1.1, 0, 0.4}, 4, 2)
	w0 := nn.InitTensors(specs, 1)
	l0, grads := loss(w0, xt, ts, target)
	const h = 1e-2
	for i, s := range specs {
		for _, k := range []int{0, 1, s.Size() / 2, s.Size() - 1} {
			at := func(d float32) float64 {
				w := slices.Clone(w0)
				v := tensors.MustCopyFlatData[float32](w0[i])
				v[k] += d
				w[i] = tensors.FromFlatDataAndDimensions(v, s.Shape...)
				l, _ := loss(w, xt, ts, target)
				return l
			}
			// Richardson extrapolation of central differences at h and h/2 cancels the h^2 term of the
			// truncation error, which is large for the first layer's x columns (their inputs are
			// multiplied by InputScale = 20).
			d1, d2 := (at(h)-at(-h))/(2*h), (at(h/2)-at(-h/2))/h
			fd := (4*d2 - d1) / 3
			// The loss is computed in float32 through a few hundred operations: a few ulps of rounding,
			// up to ~4e-7 * loss. d2, a difference of two losses over h = 1e-2, then carries up to
			// 8e-5 * loss, d1 half that, and (4 d2 - d1)/3 up to 1.2e-4 * loss (9e-5 here; the errors
			// measured are up to 1.5e-5). Allow that + 1e-3 relative.
			tol := 1.2e-4*l0 + 1e-3*math.Abs(fd)
			if g := float64(grads[i][k]); math.Abs(g-fd) > tol {
				t.Errorf("d loss / d %s[%d] = %.6g; central difference %.6g (tolerance %.2g)", s.Name, k, g, fd, tol)
			}
		}
	}
}

// TestOneStepMovesEveryWeight runs one AdamW step through train and checks that every element of
// every weight moved by the learning rate: Adam's first step is lr * g / (|g| + eps) (weight decay
// off), so an element moves by lr unless its gradient is 0 or below ~eps. A layer cut off from the
// gradient would not move at all.
func TestOneStepMovesEveryWeight(t *testing.T) {
	b := shared.GoBackend(t)
	cfg := DefaultConfig()
	cfg.Train.BatchSize = 64
	cfg.Train.WeightDecay = 0
	s, err := schedule.New(cfg.Schedule)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := SwissRoll.Points(64, 3)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := train.New(b, cfg.Train, cfg.MLP, s, pts, []int{64, 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := tr.Init(5)
	if err != nil {
		t.Fatal(err)
	}
	before, err := nn.Unflatten(cfg.MLP.Specs(), st.Params)
	if err != nil {
		t.Fatal(err)
	}
	batch := make([]int, 64)
	for i := range batch {
		batch[i] = i
	}
	if _, err := tr.Step(st, [][]int{batch}); err != nil {
		t.Fatal(err)
	}
	after, err := nn.Unflatten(cfg.MLP.Specs(), st.Params)
	if err != nil {
		t.Fatal(err)
	}
	lr := cfg.Train.LR
	for i, s := range cfg.MLP.Specs() {
		b, a := tensors.MustCopyFlatData[float32](before[i]), tensors.MustCopyFlatData[float32](after[i])
		still, far := 0, 0
		for k := range b {
			d := math.Abs(float64(a[k]) - float64(b[k]))
			if d == 0 {
				still++
			}
			// float32 weights of size up to 0.25 round to 1.5e-8: 1% of lr is far above that.
			if d > lr*1.01 {
				far++
			}
		}
		if still > 0 || far > 0 {
			t.Errorf("%s: after one step %d of %d elements did not move and %d moved more than lr = %g; want all to move by about lr",
				s.Name, still, len(b), far, lr)
		}
	}
}

// TestInputScaleIsFirstLayerScaling checks what MLP documents: scaling x_t by s is the same network
// as scaling the x columns of net.0.weight by s.
func TestInputScaleIsFirstLayerScaling(t *testing.T) {
	b := shared.GoBackend(t)
	scaled := DefaultMLP()
	plain := scaled
	plain.InputScale = 1
	w := nn.InitTensors(scaled.Specs(), 2)
	w0 := tensors.MustCopyFlatData[float32](w[0]) // net.0.weight [128, 18]: columns 0, 1 take x_t
	for r := 0; r < scaled.Hidden; r++ {
		w0[r*(2+scaled.EmbedDim)] *= float32(scaled.InputScale)
		w0[r*(2+scaled.EmbedDim)+1] *= float32(scaled.InputScale)
	}
	wPlain := slices.Clone(w)
	wPlain[0] = tensors.FromFlatDataAndDimensions(w0, scaled.Specs()[0].Shape...)
	xt := tensors.FromFlatDataAndDimensions([]float32{0.1, 0.2, -0.9, 1.3, 2, -2}, 3, 2)
	ts := tensors.FromFlatDataAndDimensions([]int32{0, 99, 199}, 3)
	forward := func(m MLP, w []*tensors.Tensor) []float32 {
		out, err := graph.NewExec(b, func(in []*graph.Node) *graph.Node {
			return m.Forward(nn.NewWeights(m.Specs(), in[:len(w)]).Scope(), in[len(w)], in[len(w)+1], nil)
		})
		if err != nil {
			t.Fatal(err)
		}
		args := []any{}
		for _, x := range w {
			args = append(args, x)
		}
		res, err := out.Exec(append(args, xt, ts)...)
		if err != nil {
			t.Fatal(err)
		}
		return tensors.MustCopyFlatData[float32](res[0])
	}
	a, c := forward(scaled, w), forward(plain, wPlain)
	for i := range a {
		// float32: the products differ in rounding only, a few ulps of values ~1.
		if math.Abs(float64(a[i]-c[i])) > 1e-5 {
			t.Errorf("output %d: InputScale %g gives %g, scaled first-layer columns give %g; want equal to 1e-5", i, scaled.InputScale, a[i], c[i])
		}
	}
}

// quickConfig is a short run of the swiss roll for the tests: 2,000 points, 1,000 steps at batch
// 128 (10-20 s on 2 cores), 500 samples.
func quickConfig() Config {
	c := DefaultConfig()
	c.Points, c.Samples, c.Seed = 2000, 500, 1
	c.SetSteps(1000) // the learning rate decays to 0 over these 1,000 steps
	c.Train.BatchSize = 128
	return c
}

var quick struct {
	once sync.Once
	res  *Result
	err  error
	took time.Duration
}

func quickRun(t *testing.T) *Result {
	t.Helper()
	quick.once.Do(func() {
		start := time.Now()
		quick.res, quick.err = Run(context.Background(), shared.GoBackend(t), quickConfig(), nil)
		quick.took = time.Since(start)
	})
	if quick.err != nil {
		t.Fatal(quick.err)
	}
	return quick.res
}

// TestSampleQuality trains briefly and checks that the samples lie on the roll.
//
// The measure is the mean distance from a sample to its nearest training point (MeanNearest). The
// bound is not a bare number: it is the same measure for a draw of a swiss roll with 4 times the
// lesson's noise (2.0 instead of 0.5: arms 0.2 thick instead of 0.05), 5.3 times that of a fresh
// draw of the data itself. 1,000 steps learn the roll's shape but not yet its thickness (measured:
// 2.4 times the fresh draw's distance, 0.0359 against the bound's 0.0808; the command's 2,000 steps
// at batch 512 on 10,000 training points come near the thickness). The bound discriminates: a
// standard normal cloud and the untrained model's samples must lie more than 3 times as far out as
// it (measured: N(0, I) 3.8 times; the untrained network's samples ~10^5 away, its noise estimate
// divided by sqrt(alphaBar_T) throwing them far).
//
// Coverage (the mean distance from a fresh data point to its nearest sample) catches a model that
// samples only part of the roll: it must be within 2 times that of two fresh draws (measured: 1.2
// times), which a cloud of only the inner half of the roll (radius < 0.94) fails by far (7 times).
func TestSampleQuality(t *testing.T) {
	res := quickRun(t)
	cfg := res.Config
	q, err := res.Quality()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("quick run (%d points, %d steps at batch %d, %d samples): %v", cfg.Points, cfg.Steps, cfg.Train.BatchSize, cfg.Samples, quick.took.Round(time.Millisecond))
	n := cfg.Samples
	precision := func(xy []float32) float64 {
		d, err := MeanNearest(xy, res.Data)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	bound := precision(data.SwissRoll(n, 2.0, 77))
	gauss := make([]float32, 2*n)
	r := rand.New(rand.NewPCG(9, 9))
	for i := range gauss {
		gauss[i] = float32(r.NormFloat64())
	}
	sched, err := schedule.New(cfg.Schedule)
	if err != nil {
		t.Fatal(err)
	}
	untrained, _, err := Sample(shared.GoBackend(t), cfg.MLP, nn.InitTensors(cfg.MLP.Specs(), cfg.Seed), sched, cfg.Sampler, n, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	pGauss, pUntrained := precision(gauss), precision(untrained)
	t.Logf("mean distance to the nearest training point: samples %.4f, fresh draw %.4f, bound (roll with noise 2.0) %.4f = %.1fx fresh, N(0, I) %.4f, untrained model %.4f",
		q.Precision, q.FreshPrecision, bound, bound/q.FreshPrecision, pGauss, pUntrained)
	if q.Precision >= bound {
		t.Errorf("samples lie %.4f from the data on average; want < %.4f, a swiss roll with 4x the noise", q.Precision, bound)
	}
	if bound > 6*q.FreshPrecision {
		t.Errorf("bound %.4f is %.1f times a fresh draw's %.4f; want at most 6 (the bound is meant to be tight-ish)", bound, bound/q.FreshPrecision, q.FreshPrecision)
	}
	for _, c := range []struct {
		name string
		d    float64
	}{{"N(0, I)", pGauss}, {"the untrained model's samples", pUntrained}} {
		if c.d < 3*bound {
			t.Errorf("%s lie %.4f from the data; want > 3 x bound = %.4f, or the bound does not discriminate", c.name, c.d, 3*bound)
		}
	}

	var inner []float32
	fresh := data.SwissRoll(2*n, 0.5, 78)
	for i := 0; i < len(fresh); i += 2 {
		if math.Hypot(float64(fresh[i]), float64(fresh[i+1])) < 0.94 {
			inner = append(inner, fresh[i], fresh[i+1])
		}
	}
	freshA, err := SwissRoll.Points(n, cfg.Seed+101)
	if err != nil {
		t.Fatal(err)
	}
	cInner, err := MeanNearest(freshA, inner)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("coverage (fresh point to nearest sample): samples %.4f, second fresh draw %.4f, inner half of the roll only %.4f",
		q.Coverage, q.FreshCoverage, cInner)
	if q.Coverage >= 2*q.FreshCoverage {
		t.Errorf("coverage %.4f; want < 2 x %.4f (two fresh draws)", q.Coverage, q.FreshCoverage)
	}
	if cInner < 2*q.FreshCoverage {
		t.Errorf("a cloud of only the inner half of the roll has coverage %.4f; want >= 2 x %.4f, or the coverage bound does not discriminate", cInner, q.FreshCoverage)
	}
}

// TestQualityImprovesWithTraining checks that training is what makes the samples good: the quick
// run's 1,000 steps must bring both ratios to a fresh draw (Quality.PrecisionRatio, CoverageRatio)
// well below those of the same run stopped after 100 steps.
func TestQualityImprovesWithTraining(t *testing.T) {
	long := quickRun(t)
	cfg := long.Config
	cfg.Steps = 100 // stopped early: the learning-rate schedule stays that of the 1,000 steps
	short, err := Run(context.Background(), shared.GoBackend(t), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	qs, err := short.Quality()
	if err != nil {
		t.Fatal(err)
	}
	ql, err := long.Quality()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after %d steps: %v", cfg.Steps, qs)
	t.Logf("after %d steps: %v", long.Config.Steps, ql)
	if ql.PrecisionRatio() > qs.PrecisionRatio()/2 {
		t.Errorf("precision ratio %.2f after %d steps, %.2f after %d; want at most half", ql.PrecisionRatio(), long.Config.Steps, qs.PrecisionRatio(), cfg.Steps)
	}
	if ql.CoverageRatio() > qs.CoverageRatio()/1.2 {
		t.Errorf("coverage ratio %.2f after %d steps, %.2f after %d; want at most 1/1.2 of it", ql.CoverageRatio(), long.Config.Steps, qs.CoverageRatio(), cfg.Steps)
	}
}

func TestRunWritesEveryFile(t *testing.T) {
	res := quickRun(t)
	cfg := res.Config
	dir := filepath.Join(t.TempDir(), "out")
	files, err := res.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{ConfigFile, DataFile, SamplesFile, ScatterFile, TrajectoryFile, LossFile, LossPlotFile}
	for i := range want {
		want[i] = filepath.Join(dir, want[i])
	}
	if !slices.Equal(files, want) {
		t.Fatalf("Write returned %v; want %v", files, want)
	}
	for _, c := range []struct {
		name   string
		header string
		rows   int
	}{{DataFile, "x,y", cfg.Points}, {SamplesFile, "x,y", cfg.Samples}, {LossFile, "step,loss", int(cfg.Steps)}} {
		rows := readCSV(t, filepath.Join(dir, c.name))
		if len(rows) != c.rows+1 || strings.Join(rows[0], ",") != c.header {
			t.Errorf("%s: %d rows with header %v; want %q and %d rows", c.name, len(rows)-1, rows[0], c.header, c.rows)
			continue
		}
		for i, r := range rows[1:] {
			for _, f := range r {
				if v, err := strconv.ParseFloat(f, 64); err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("%s row %d: %q is not a finite number", c.name, i+1, f)
				}
			}
		}
	}
	if got := readCSV(t, filepath.Join(dir, SamplesFile))[1]; got[0] != strconv.FormatFloat(float64(res.Samples[0]), 'g', -1, 32) {
		t.Errorf("samples.csv starts with %v; want the first sample %v", got, res.Samples[:2])
	}
	// Panels: scatter 2 of 320 px side by side; trajectory 10 of 200 px in 2 rows of 5.
	for _, c := range []struct {
		name         string
		minW, minH   int
		maxW, maxH   int
		wantWideness bool
	}{
		{ScatterFile, 2 * 320, 320, 2*320 + 300, 320 + 200, true},
		{TrajectoryFile, 5 * 200, 2 * 200, 5*200 + 300, 2*200 + 300, true},
		{LossPlotFile, 720, 440, 720, 440, true},
	} {
		f, err := os.Open(filepath.Join(dir, c.name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		w, h := img.Bounds().Dx(), img.Bounds().Dy()
		if w < c.minW || h < c.minH || w > c.maxW || h > c.maxH {
			t.Errorf("%s is %dx%d; want between %dx%d and %dx%d", c.name, w, h, c.minW, c.minH, c.maxW, c.maxH)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var back Config
	if err := dec.Decode(&back); err != nil {
		t.Fatalf("%s: %v", ConfigFile, err)
	}
	if !reflect.DeepEqual(back, cfg) {
		t.Errorf("%s decodes to %+v; want %+v", ConfigFile, back, cfg)
	}
	if len(res.Frames) != cfg.Frames || res.Frames[0].T != cfg.Schedule.T || res.Frames[len(res.Frames)-1].T != 0 {
		t.Errorf("%d frames from t=%d to t=%d; want %d from %d to 0", len(res.Frames), res.Frames[0].T, res.Frames[len(res.Frames)-1].T, cfg.Frames, cfg.Schedule.T)
	}
	if !slices.Equal(res.Frames[len(res.Frames)-1].XY, res.Samples) {
		t.Error("the last frame is not the samples")
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rows
}
