package sampler_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"testing"
	"time"

	"github.com/ddpm/ddpm/checkpoint"
	"github.com/ddpm/ddpm/internal/shared"
	"github.com/ddpm/ddpm/pipeline"
	"github.com/ddpm/ddpm/sampler"
	"github.com/ddpm/ddpm/schedule"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// samplerRun is one entry of samplers-mnist/samplers.json.
type samplerRun struct {
	Name      string          `json:"name"`
	Scheduler string          `json:"scheduler"`
	Steps     int             `json:"steps"`
	Eta       float64         `json:"eta"`
	Config    json.RawMessage `json:"config"`
}

// fixtureClass maps the fixture's scheduler names to diffusers' classes.
var fixtureClass = map[string]string{
	"dpmsolver_multistep": "DPMSolverMultistepScheduler",
	"euler":               "EulerDiscreteScheduler",
	"euler_ancestral":     "EulerAncestralDiscreteScheduler",
	"heun":                "HeunDiscreteScheduler",
	"ddim":                "DDIMScheduler",
}

// TestSamplersGolden reproduces every whole run of diffusers' schedulers on the bundled MNIST model
// (samplers-mnist): the scheduler is built from the model's own scheduler_config.json with the run's
// overrides, as Scheduler.from_config does; its timesteps and sigmas must equal diffusers' (to float32
// rounding: diffusers computes them in float32), and the sample x_0, from the recorded x_T and step noise,
// must agree to 1e-3 (max |difference| / (1 + |want|)) on the pure-Go backend. One Runner serves all runs.
func TestSamplersGolden(t *testing.T) {
	dir := shared.Path(t, "diffusers/samplers-mnist")
	raw, err := os.ReadFile(dir + "/samplers.json")
	if err != nil {
		t.Fatal(err)
	}
	var runs []samplerRun
	if err := json.Unmarshal(raw, &runs); err != nil {
		t.Fatal(err)
	}
	if len(runs) != 8 {
		t.Fatalf("samplers.json lists %d runs; want 8", len(runs))
	}
	io, err := checkpoint.ReadSafetensors(dir + "/samplers_io.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Load("../models/mnist")
	if err != nil {
		t.Fatal(err)
	}
	cfgData, err := os.ReadFile(p.Files.SchedulerConfig)
	if err != nil {
		t.Fatal(err)
	}
	b := shared.GoBackend(t)
	runner, err := sampler.NewRunner(b, unetModel{p.UNet, p.Weights})
	if err != nil {
		t.Fatal(err)
	}
	defer runner.Finalize()

	f32 := func(name string) *tensors.Tensor {
		t.Helper()
		x, ok := io.Tensors[name]
		if !ok {
			t.Fatalf("fixture has no %s", name)
		}
		v, err := x.Float32()
		if err != nil {
			t.Fatal(err)
		}
		return tensors.FromFlatDataAndDimensions(v, x.Shape...)
	}
	f64 := func(name string) []float64 {
		t.Helper()
		v, err := io.Tensors[name].Float64()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	table32 := float32Table(t)
	for _, r := range runs {
		t.Run(r.Name, func(t *testing.T) {
			start := time.Now()
			class, ok := fixtureClass[r.Scheduler]
			if !ok {
				t.Fatalf("unknown scheduler %q", r.Scheduler)
			}
			var overrides map[string]json.RawMessage
			if err := json.Unmarshal(r.Config, &overrides); err != nil {
				t.Fatal(err)
			}
			choice := pipeline.Choice{Class: class, Steps: r.Steps, Eta: r.Eta}
			for k, v := range overrides {
				choice.Overrides = append(choice.Overrides, k+"="+string(v))
			}
			run, err := choice.Plan(cfgData)
			if err != nil {
				t.Fatal(err)
			}
			wantTs := f64(r.Name + "/timesteps")
			if fmt.Sprint(run.Timesteps) != fmt.Sprint(wantTs) {
				t.Fatalf("timesteps %v\nwant      %v", run.Timesteps, wantTs)
			}
			if key := r.Name + "/sigmas"; io.Tensors[key] != nil {
				want := f64(key)
				// The plan's sigmas, from float64 tables, differ from diffusers' float32 ones by up to
				// ~1e-4 relative near t = 0 (its 1 - alphaBar_0 keeps 4 digits); from diffusers' own
				// float32 alphas_cumprod they agree to float32 rounding.
				checkSigmas(t, "plan", run.Sigmas, want, 2e-4)
				_, sg, err := run.Config.(interface {
					Sigmas(*schedule.Schedule, int) ([]float64, []float64, error)
				}).Sigmas(table32, r.Steps)
				if err != nil {
					t.Fatal(err)
				}
				if run.Class == pipeline.HeunDiscreteScheduler {
					sg = heunRepeat(sg)
				}
				checkSigmas(t, "float32 table", sg, want, 5e-7)
			}
			xT := f32(r.Name + "/x_T")
			dims := xT.Shape().Dimensions
			opts := sampler.Options{N: dims[0], Shape: dims[1:], Init: xT}
			if key := r.Name + "/noise"; io.Tensors[key] != nil {
				opts.Noise = f32(key)
			}
			got, err := runner.Run(run.Plan, opts)
			if err != nil {
				t.Fatal(err)
			}
			gv, err := tensors.CopyFlatData[float32](got)
			if err != nil {
				t.Fatal(err)
			}
			wv, _ := io.Tensors[r.Name+"/x_0"].Float32()
			d := 0.0
			for i := range wv {
				d = max(d, math.Abs(float64(gv[i])-float64(wv[i]))/(1+math.Abs(float64(wv[i]))))
			}
			t.Logf("%d model evaluations, max |x_0 - diffusers| / (1 + |diffusers|) = %.3g (%v)", len(run.Plan), d, time.Since(start).Round(time.Millisecond))
			if !(d <= 1e-3) {
				t.Fatalf("x_0 differs from diffusers' by %.3g; want <= 1e-3", d)
			}
		})
	}
}

// float32Table is the linear schedule with diffusers' own float32 alphas_cumprod (schedulers.json).
func float32Table(t *testing.T) *schedule.Schedule {
	raw, err := os.ReadFile(shared.Path(t, "diffusers/schedulers.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		AlphaBar []float64 `json:"alphas_cumprod/linear"`
	}
	if err := json.Unmarshal(raw, &f); err != nil || len(f.AlphaBar) != 1000 {
		t.Fatalf("schedulers.json: %d alphas_cumprod/linear, %v; want 1000", len(f.AlphaBar), err)
	}
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	s.AlphaBar = f.AlphaBar
	return s
}

// heunRepeat lists Heun's sigmas as diffusers does: the first, the inner ones twice, the last.
func heunRepeat(sg []float64) []float64 {
	out := []float64{sg[0]}
	for _, v := range sg[1 : len(sg)-1] {
		out = append(out, v, v)
	}
	return append(out, sg[len(sg)-1])
}

func checkSigmas(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d sigmas; want %d: %v", what, len(got), len(want), want)
	}
	worst := 0.0
	for i := range want {
		d := math.Abs(got[i]-want[i]) / math.Max(want[i], 1e-3)
		worst = max(worst, d)
		if !(d <= tol) {
			t.Fatalf("%s: sigma %d = %.9g; want %.9g (relative difference %.2g > %.2g)\nsigmas %v\nwant   %v", what, i, got[i], want[i], d, tol, got, want)
		}
	}
	t.Logf("%s: sigmas agree with diffusers' to %.2g relative", what, worst)
}
