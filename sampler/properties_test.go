package sampler

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ddpm/ddpm/schedule"
)

var predictions = []Prediction{Epsilon, Sample, V}

func schedules(t *testing.T) map[string]*schedule.Schedule {
	t.Helper()
	out := map[string]*schedule.Schedule{}
	for _, bs := range []schedule.BetaSchedule{schedule.Linear, schedule.ScaledLinear, schedule.SquaredCosCapV2, schedule.Sigmoid} {
		for _, T := range []int{1000, 37} {
			c := schedule.Default()
			c.BetaSchedule, c.T = bs, T
			s, err := schedule.New(c)
			if err != nil {
				t.Fatal(err)
			}
			out[fmt.Sprintf("%v/T=%d", bs, T)] = s
		}
	}
	return out
}

// TestCoefficientsMatchReference checks the coefficient form (Plan, then Step) against the slow float64
// references in diffusers' order of operations, for every sampler setting, on random inputs, at every step
// of runs up to 50 steps (a sample of the steps of longer runs). Tolerance 1e-7 relative to 1 + |want|: both compute in float64 from the same float32 inputs;
// Step rounds its result to float32 (2^-24 = 6e-8).
func TestCoefficientsMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 11))
	const size = 24
	xt, m, z := normals(rng, size), normals(rng, size), normals(rng, size)
	for i := range xt {
		xt[i] *= 2 // some values beyond the clip range
	}
	for name, s := range schedules(t) {
		T := s.T()
		for _, n := range []int{1, 7, T / 3, T} {
			for sp := range 3 {
				spacing := schedule.Spacing(sp)
				var configs []any
				for _, p := range predictions {
					for _, clip := range []float64{0, 0.5, 1} {
						for v := range 3 {
							c := DDPM{Prediction: p, Variance: Variance(v), ClipSample: clip > 0, ClipSampleRange: clip, Spacing: spacing}
							configs = append(configs, c)
						}
						for _, eta := range []float64{0, 0.3, 1} {
							for _, one := range []bool{true, false} {
								configs = append(configs, DDIM{Prediction: p, Eta: eta, SetAlphaToOne: one,
									ClipSample: clip > 0, ClipSampleRange: clip, Spacing: spacing})
							}
						}
					}
				}
				t.Run(fmt.Sprintf("%s/n=%d/%v", name, n, spacing), func(t *testing.T) {
					for _, c := range configs {
						var plan Plan
						var err error
						var ref func(t int) (prev, x0 []float64)
						xt64, m64, z64 := to64(xt), to64(m), to64(z)
						switch c := c.(type) {
						case DDPM:
							plan, err = c.Plan(s, n)
							ts := make([]int, len(plan))
							for i, st := range plan {
								ts[i] = st.T
							}
							ref = func(t int) ([]float64, []float64) { return refDDPMStep(s.AlphaBar, c, ts, t, xt64, m64, z64) }
						case DDIM:
							plan, err = c.Plan(s, n)
							ref = func(t int) ([]float64, []float64) { return refDDIMStep(s.AlphaBar, c, n, t, xt64, m64, z64) }
						}
						if err != nil {
							t.Fatalf("%+v: %v", c, err)
						}
						if len(plan) != n {
							t.Fatalf("%+v: plan has %d steps; want %d", c, len(plan), n)
						}
						for i, st := range plan {
							if n > 50 && i%37 != 0 && i < n-3 { // long runs: a sample of the steps and the last three
								continue
							}
							prev, x0 := Step(st.Coef, xt, m, z)
							wantPrev, wantX0 := ref(st.T)
							var e errStat
							if i, ok := e.check(to64(prev), wantPrev, 1e-7); !ok {
								t.Fatalf("%T%+v: Step(t=%d) prev[%d] = %.9g; reference %.9g", c, c, st.T, i, prev[i], wantPrev[i])
							}
							if i, ok := e.check(to64(x0), wantX0, 1e-7); !ok {
								t.Fatalf("%T%+v: Step(t=%d) x0Hat[%d] = %.9g; reference %.9g", c, c, st.T, i, x0[i], wantX0[i])
							}
						}
					}
				})
			}
		}
	}
}

// TestConvertRoundTrip checks that the conversions invert the forward process exactly: with
// x_t = a x0 + b eps and m = TgtX0 x0 + TgtEps eps, x0Hat = x0 and epsHat = eps, as identities of the weights
// (float64) and on data (Split of Target, float32).
func TestConvertRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 13))
	x0, eps := normals(rng, 50), normals(rng, 50)
	for _, p := range predictions {
		for _, ab := range []float64{0.9999, 0.99, 0.5, 1e-2, 4e-5} {
			t.Run(fmt.Sprintf("%v/alphaBar=%g", p, ab), func(t *testing.T) {
				c := p.Convert(ab)
				a, b := math.Sqrt(ab), math.Sqrt(1-ab)
				for _, id := range []struct {
					name      string
					got, want float64
				}{
					{"x0Hat: x0 weight", c.X0Xt*a + c.X0M*c.TgtX0, 1},
					{"x0Hat: eps weight", c.X0Xt*b + c.X0M*c.TgtEps, 0},
					{"epsHat: x0 weight", c.EpsXt*a + c.EpsM*c.TgtX0, 0},
					{"epsHat: eps weight", c.EpsXt*b + c.EpsM*c.TgtEps, 1},
				} {
					if math.Abs(id.got-id.want) > 1e-12*max(1, math.Abs(c.X0Xt), math.Abs(c.EpsXt)) {
						t.Errorf("%s = %v; want %v", id.name, id.got, id.want)
					}
				}
				xt := schedule.AddNoise(x0, eps, ab)
				x0Hat, epsHat := p.Split(xt, p.Target(x0, eps, ab), ab)
				// float32 inputs: x_t and m carry 6e-8 relative rounding, amplified by up to 1/sqrt(alphaBar) ~ 158.
				tol := 1e-6 * max(1/a, 1/b)
				for i := range x0 {
					if math.Abs(float64(x0Hat[i]-x0[i])) > tol || math.Abs(float64(epsHat[i]-eps[i])) > tol {
						t.Fatalf("[%d]: Split(Target) = (%v, %v); want (%v, %v)", i, x0Hat[i], epsHat[i], x0[i], eps[i])
					}
				}
			})
		}
	}
}

// TestStepRecoversX0 checks that with the true model output (the true noise for epsilon) a step predicts x0
// exactly, for DDPM and DDIM, and that a deterministic DDIM step lands on the forward process at prev:
// x_prev = sqrt(abP) x0 + sqrt(1 - abP) eps.
func TestStepRecoversX0(t *testing.T) {
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(14, 15))
	eps := normals(rng, 40)
	x0 := make([]float32, 40)
	for i := range x0 {
		x0[i] = float32(2*rng.Float64() - 1) // in the clip range
	}
	const n = 100
	for _, p := range predictions {
		for _, clip := range []bool{false, true} {
			for _, tt := range []int{990, 500, 10, 0} {
				t.Run(fmt.Sprintf("%v/clip=%v/t=%d", p, clip, tt), func(t *testing.T) {
					ab := s.AlphaBar[tt]
					xt := schedule.AddNoise(x0, eps, ab)
					m := p.Target(x0, eps, ab)
					ddpm := DDPM{Prediction: p, ClipSample: clip, ClipSampleRange: 1}
					ddim := DDIM{Prediction: p, SetAlphaToOne: true, ClipSample: clip, ClipSampleRange: 1}
					kDDPM, err := ddpm.Coefficients(s, s.T(), tt)
					if err != nil {
						t.Fatal(err)
					}
					kDDIM, err := ddim.Coefficients(s, n, tt)
					if err != nil {
						t.Fatal(err)
					}
					// float32 x_t and m, amplified by 1/sqrt(alphaBar) (~150 at t = 990) for epsilon.
					tol := 1e-6 / math.Sqrt(ab*(1-ab))
					for _, k := range []Coefficients{kDDPM, kDDIM} {
						_, x0Hat := Step(k, xt, m, nil)
						for i := range x0 {
							if math.Abs(float64(x0Hat[i]-x0[i])) > tol {
								t.Fatalf("x0Hat[%d] = %v; want x0 = %v", i, x0Hat[i], x0[i])
							}
						}
					}
					prev, _ := Step(kDDIM, xt, m, nil)
					abP := 1.0
					if tt-s.T()/n >= 0 {
						abP = s.AlphaBar[tt-s.T()/n]
					}
					want := schedule.AddNoise(x0, eps, abP)
					for i := range want {
						if math.Abs(float64(prev[i]-want[i])) > tol {
							t.Fatalf("DDIM eta=0 prev[%d] = %v; want the forward process at prev, %v", i, prev[i], want[i])
						}
					}
				})
			}
		}
	}
}

// TestDDIMDeterministic checks that eta = 0 gives sigma = 0 at every step, so the step ignores z.
func TestDDIMDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 17))
	xt, m, z1, z2 := normals(rng, 8), normals(rng, 8), normals(rng, 8), normals(rng, 8)
	for name, s := range schedules(t) {
		for _, p := range predictions {
			t.Run(fmt.Sprintf("%s/%v", name, p), func(t *testing.T) {
				c := DefaultDDIM()
				c.Prediction, c.SetAlphaToOne = p, false
				plan, err := c.Plan(s, min(50, s.T()))
				if err != nil {
					t.Fatal(err)
				}
				for _, st := range plan {
					if st.Coef.Sigma != 0 {
						t.Fatalf("DDIM eta=0 t=%d: Sigma = %v; want 0", st.T, st.Coef.Sigma)
					}
					a, _ := Step(st.Coef, xt, m, z1)
					b, _ := Step(st.Coef, xt, m, z2)
					if fmt.Sprint(a) != fmt.Sprint(b) {
						t.Fatalf("DDIM eta=0 t=%d: the step depends on z", st.T)
					}
				}
			})
		}
	}
}

// TestLastStep checks the end of a run: DDPM and DDIM (set_alpha_to_one) return x0Hat itself at their
// last step, and DDPM adds no noise at t = 0.
func TestLastStep(t *testing.T) {
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		plan func() (Plan, error)
	}{
		{"ddpm/n=1000", func() (Plan, error) { return DefaultDDPM().Plan(s, 1000) }},
		{"ddpm/n=50/linspace", func() (Plan, error) {
			c := DefaultDDPM()
			c.Spacing, c.Variance = schedule.Linspace, FixedLarge
			return c.Plan(s, 50)
		}},
		{"ddim/n=50/eta=1", func() (Plan, error) { c := DefaultDDIM(); c.Eta = 1; return c.Plan(s, 50) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := tc.plan()
			if err != nil {
				t.Fatal(err)
			}
			last := plan[len(plan)-1]
			if last.T != 0 || last.Coef.C != 1 || last.Coef.D != 0 || last.Coef.E != 0 || last.Coef.Sigma != 0 {
				t.Fatalf("last step %+v; want t = 0 with C = 1, D = E = Sigma = 0", last)
			}
		})
	}
	// diffusers adds noise whenever t > 0, also at the last trailing step (t = 19 -> -1).
	c := DefaultDDPM()
	c.Spacing, c.Variance = schedule.Trailing, FixedLarge
	plan, err := c.Plan(s, 50)
	if err != nil {
		t.Fatal(err)
	}
	last := plan[len(plan)-1]
	if want := math.Sqrt(1 - s.AlphaBar[19]); last.T != 19 || math.Abs(last.Coef.Sigma-want) > 1e-15 {
		t.Fatalf("trailing fixed_large last step %+v; want t = 19 and Sigma = sqrt(1 - alphaBar_19) = %v", last, want)
	}
}

func TestRow(t *testing.T) {
	k := Coefficients{A: 1, B: 2, C: 3, D: 4, E: 5, Sigma: 6}
	if r := k.Row(); len(r) != RowSize || r[5] != 6 || !math.IsInf(float64(r[6]), 1) || r[7] != 1 {
		t.Fatalf("Row() without clipping = %v; want [1 2 3 4 5 6 +Inf 1 0...]", r)
	}
	k.In, k.H2, k.Save[1][3] = 0.5, 7, 8
	if r := k.Row(); r[7] != 0.5 || r[9] != 7 || r[RowSize-1] != 8 {
		t.Fatalf("Row() with In 0.5, H2 7, Save[1][3] 8 = %v", r)
	}
	k.Clip = 0.5
	if r := k.Row(); r[6] != 0.5 {
		t.Fatalf("Row() with clip 0.5 = %v; want last 0.5", r)
	}
}

func TestEnumsText(t *testing.T) {
	type textEnum interface {
		MarshalText() ([]byte, error)
		String() string
	}
	for _, tc := range []struct {
		name  string
		val   textEnum
		parse func(string) (textEnum, error)
	}{
		{"epsilon", Epsilon, func(s string) (textEnum, error) { var p Prediction; return p, p.UnmarshalText([]byte(s)) }},
		{"sample", Sample, func(s string) (textEnum, error) { var p Prediction; err := p.UnmarshalText([]byte(s)); return p, err }},
		{"v_prediction", V, func(s string) (textEnum, error) { var p Prediction; err := p.UnmarshalText([]byte(s)); return p, err }},
		{"fixed_small", FixedSmall, func(s string) (textEnum, error) { var v Variance; err := v.UnmarshalText([]byte(s)); return v, err }},
		{"fixed_small_log", FixedSmallLog, func(s string) (textEnum, error) { var v Variance; err := v.UnmarshalText([]byte(s)); return v, err }},
		{"fixed_large", FixedLarge, func(s string) (textEnum, error) { var v Variance; err := v.UnmarshalText([]byte(s)); return v, err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text, err := tc.val.MarshalText()
			if err != nil || string(text) != tc.name || tc.val.String() != tc.name {
				t.Fatalf("MarshalText = %q, %v; String = %q; want %q", text, err, tc.val.String(), tc.name)
			}
			got, err := tc.parse(tc.name)
			if err != nil || got != tc.val {
				t.Fatalf("UnmarshalText(%q) = %v, %v; want %v", tc.name, got, err, tc.val)
			}
		})
	}
	var p Prediction
	if err := p.UnmarshalText([]byte("eps")); err == nil || !strings.Contains(err.Error(), `"v_prediction"`) {
		t.Errorf("Prediction.UnmarshalText(eps) = %v; want an error listing the valid names", err)
	}
	var v Variance
	if err := v.UnmarshalText([]byte("learned_range")); err == nil || !strings.Contains(err.Error(), `"fixed_large"`) {
		t.Errorf("Variance.UnmarshalText(learned_range) = %v; want an error listing the supported names", err)
	}
}

func TestConfigJSON(t *testing.T) {
	var c DDIM
	dec := json.NewDecoder(strings.NewReader(`{"prediction_type": "v_prediction", "eta": 0.5, "set_alpha_to_one": false,
		"clip_sample": true, "clip_sample_range": 2, "timestep_spacing": "trailing", "steps_offset": 1}`))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	want := DDIM{Prediction: V, Eta: 0.5, ClipSample: true, ClipSampleRange: 2, Spacing: schedule.Trailing, StepsOffset: 1}
	if c != want {
		t.Fatalf("decoded %+v; want %+v", c, want)
	}
	data, err := json.Marshal(DefaultDDPM())
	if err != nil {
		t.Fatal(err)
	}
	if w := `{"prediction_type":"epsilon","variance_type":"fixed_small","clip_sample":true,"clip_sample_range":1,"timestep_spacing":"leading","steps_offset":0}`; string(data) != w {
		t.Fatalf("json.Marshal(DefaultDDPM()) = %s; want %s", data, w)
	}
}

func TestConfigErrors(t *testing.T) {
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	ddpm, ddim := DefaultDDPM(), DefaultDDIM()
	for _, tc := range []struct {
		name    string
		call    func() error
		wantErr string
	}{
		{"ddim eta", func() error { c := ddim; c.Eta = 1.5; return c.Validate() }, "eta"},
		{"clip range", func() error { c := ddpm; c.ClipSampleRange = 0; return c.Validate() }, "clip_sample_range"},
		{"prediction", func() error { c := ddim; c.Prediction = 5; return c.Validate() }, "prediction type"},
		{"variance", func() error { c := ddpm; c.Variance = -1; return c.Validate() }, "variance type"},
		{"t range", func() error { _, err := ddim.Coefficients(s, 10, 1000); return err }, "timestep 1000"},
		{"n range", func() error { _, err := ddim.Plan(s, 1001); return err }, "sampling steps"},
		{"ddpm t not in run", func() error { _, err := ddpm.Coefficients(s, 50, 921); return err }, "not one of the run"},
		{"no schedule", func() error { _, err := ddpm.Plan(nil, 10); return err }, "schedule.New"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) ||
				!(strings.HasPrefix(err.Error(), "sampler: ") || strings.HasPrefix(err.Error(), "schedule: ")) {
				t.Fatalf("error = %v; want one about %q", err, tc.wantErr)
			}
		})
	}
}

// TestDiffusersSchedulerConfig decodes the scheduler_config.json of a real diffusers DDPMPipeline into
// schedule.Config and DDPM (both use diffusers' JSON names) and checks the plans against the timesteps
// that pipeline recorded: DDPMScheduler.set_timesteps(20) and DDIMScheduler.from_config(...).set_timesteps(10).
func TestDiffusersSchedulerConfig(t *testing.T) {
	dir := fixturePath(t, "diffusers/tiny-ddpm-cifar10")
	raw, err := os.ReadFile(filepath.Join(dir, "scheduler", "scheduler_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sc schedule.Config
	ddpm, ddim := DefaultDDPM(), DefaultDDIM()
	for _, v := range []any{&sc, &ddpm, &ddim} {
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatalf("scheduler_config.json into %T: %v", v, err)
		}
	}
	if sc.T != 1000 || sc.BetaStart != 1e-4 || sc.BetaEnd != 0.02 || sc.BetaSchedule != schedule.Linear || sc.TrainedBetas != nil ||
		ddpm.Variance != FixedLarge ||
		!ddpm.ClipSample || ddpm.ClipSampleRange != 1 || ddpm.Prediction != Epsilon || ddpm.Spacing != schedule.Leading {
		t.Fatalf("decoded %+v and %+v; want the file's values", sc, ddpm)
	}
	s, err := schedule.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	ref := filepath.Join(dir, "reference_io.safetensors")
	for _, tc := range []struct {
		name string
		plan func() (Plan, error)
		want []int
	}{
		{"ddpm20", func() (Plan, error) { return ddpm.Plan(s, 20) }, safetensorsInt64(t, ref, "ddpm20_timesteps")},
		{"ddim10", func() (Plan, error) { return ddim.Plan(s, 10) }, safetensorsInt64(t, ref, "ddim10_timesteps")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := tc.plan()
			if err != nil {
				t.Fatal(err)
			}
			got := make([]int, len(plan))
			for i, st := range plan {
				got[i] = st.T
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("plan timesteps %v; want %v (diffusers)", got, tc.want)
			}
		})
	}
}
