package schedule

import (
	"encoding/json"
	"fmt"
	"github.com/ddpm/ddpm/internal/shared"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
)

// fixturePath is shared.Path: the fixture under ../shared/testdata ($DDPM_SHARED_TESTDATA).
func fixturePath(t *testing.T, rel string) string { return shared.Path(t, rel) }

// diffusersCase is one entry of schedulers.json's "cases" (only the fields this package checks).
type diffusersCase struct {
	Op                string    `json:"op"`
	T                 int       `json:"t"`
	Out               []float64 `json:"out"`
	NumInferenceSteps int       `json:"num_inference_steps"`
	TimestepSpacing   Spacing   `json:"timestep_spacing"`
	Timesteps         []int     `json:"timesteps"`
}

type diffusersFixture struct {
	Sample      []float64 `json:"sample"`
	ModelOutput []float64 `json:"model_output"`
	Cases       []diffusersCase
	Tables      map[string][]float64 // "betas/<schedule>", "alphas_cumprod/<schedule>"
}

// fixtureCache holds the parsed schedulers.json, shared by the tests of one run.
var fixtureCache struct {
	once sync.Once
	f    *diffusersFixture
	err  error
}

func loadFixture(t *testing.T) *diffusersFixture {
	t.Helper()
	path := fixturePath(t, "diffusers/schedulers.json")
	fixtureCache.once.Do(func() { fixtureCache.f, fixtureCache.err = parseFixture(path) })
	if fixtureCache.err != nil {
		t.Fatal(fixtureCache.err)
	}
	return fixtureCache.f
}

func parseFixture(path string) (*diffusersFixture, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	f := &diffusersFixture{Tables: map[string][]float64{}}
	for key, msg := range top {
		var err error
		switch {
		case key == "sample":
			err = json.Unmarshal(msg, &f.Sample)
		case key == "model_output":
			err = json.Unmarshal(msg, &f.ModelOutput)
		case key == "cases":
			err = json.Unmarshal(msg, &f.Cases)
		case strings.HasPrefix(key, "betas/"), strings.HasPrefix(key, "alphas_cumprod/"):
			var v []float64
			err = json.Unmarshal(msg, &v)
			f.Tables[key] = v
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %v", path, key, err)
		}
	}
	return f, nil
}

func TestBetaScheduleText(t *testing.T) {
	for _, tc := range []struct {
		name string
		want BetaSchedule
	}{
		{"linear", Linear}, {"scaled_linear", ScaledLinear}, {"squaredcos_cap_v2", SquaredCosCapV2}, {"sigmoid", Sigmoid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s BetaSchedule
			if err := s.UnmarshalText([]byte(tc.name)); err != nil || s != tc.want {
				t.Fatalf("UnmarshalText(%q) = %v, %v; want %v", tc.name, s, err, tc.want)
			}
			text, err := s.MarshalText()
			if err != nil || string(text) != tc.name || s.String() != tc.name {
				t.Fatalf("MarshalText(%v) = %q, %v; String() = %q; want %q", s, text, err, s.String(), tc.name)
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		var s BetaSchedule
		err := s.UnmarshalText([]byte("cosine"))
		if err == nil || !strings.Contains(err.Error(), `"squaredcos_cap_v2"`) || !strings.HasPrefix(err.Error(), "schedule: ") {
			t.Fatalf("UnmarshalText(cosine) error = %v; want one that lists the valid names", err)
		}
	})
}

func TestConfigJSON(t *testing.T) {
	c := Default()
	c.BetaSchedule = ScaledLinear
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"num_train_timesteps":1000,"beta_start":0.0001,"beta_end":0.02,"beta_schedule":"scaled_linear"}`
	if string(data) != want {
		t.Fatalf("json.Marshal = %s; want %s", data, want)
	}
	var back Config
	if err := json.Unmarshal(data, &back); err != nil || back.BetaSchedule != c.BetaSchedule || back.T != c.T ||
		back.BetaStart != c.BetaStart || back.BetaEnd != c.BetaEnd {
		t.Fatalf("json.Unmarshal(%s) = %+v, %v; want %+v", data, back, err, c)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       Config
		wantErr string // "" means valid
	}{
		{"default", Default(), ""},
		{"cosine ignores beta range", Config{T: 10, BetaSchedule: SquaredCosCapV2}, ""},
		{"trained", Config{T: 2, TrainedBetas: []float64{0.1, 0.2}}, ""},
		{"zero T", Config{BetaStart: 1e-4, BetaEnd: 0.02}, "num_train_timesteps"},
		{"zero beta_start", Config{T: 10, BetaEnd: 0.02}, "beta_start"},
		{"beta_end 1", Config{T: 10, BetaStart: 1e-4, BetaEnd: 1}, "beta_end"},
		{"bad schedule", Config{T: 10, BetaStart: 1e-4, BetaEnd: 0.02, BetaSchedule: 9}, "beta schedule"},
		{"trained length", Config{T: 3, TrainedBetas: []float64{0.1, 0.2}}, "trained_betas"},
		{"trained range", Config{T: 2, TrainedBetas: []float64{0.1, 1}}, "trained_betas[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v; want nil", err)
				}
				if _, err := New(tc.c); err != nil {
					t.Fatalf("New() = %v; want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "schedule: ") {
				t.Fatalf("Validate() = %v; want an error about %q", err, tc.wantErr)
			}
			if _, err := New(tc.c); err == nil {
				t.Fatalf("New() accepted an invalid config")
			}
		})
	}
}

// TestNewGolden compares the tables with diffusers'. diffusers builds them in float32 and this package in
// float64, so beta agrees to a few float32 ulps (observed max relative error 3.0e-7, scaled_linear) and
// alphaBar, a float32 cumulative product of up to 1000 rounded factors, to a relative 1e-6 (observed
// max 7.5e-7, scaled_linear at t = 997), except the cosine schedule's tail: there 1 - beta is near its
// 0.001 floor, where a float32 ulp of beta is 6e-5 of it, and alphaBar (2.4e-9 at t = 999) is off by
// 1.3e-5 relative. Relative, not absolute: an absolute 1e-6 would pass any value of that tail.
func TestNewGolden(t *testing.T) {
	f := loadFixture(t)
	const betaRelTol = 5e-7
	alphaBarRelTol := map[BetaSchedule]float64{Linear: 1e-6, ScaledLinear: 1e-6, Sigmoid: 1e-6, SquaredCosCapV2: 2e-5}
	for i := range betaScheduleNames {
		bs := BetaSchedule(i)
		t.Run(bs.String(), func(t *testing.T) {
			c := Default()
			c.BetaSchedule = bs
			s, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			beta, alphaBar := f.Tables["betas/"+bs.String()], f.Tables["alphas_cumprod/"+bs.String()]
			if len(beta) != c.T || len(alphaBar) != c.T {
				t.Fatalf("fixture has %d betas and %d alphas_cumprod; want %d", len(beta), len(alphaBar), c.T)
			}
			for tt := range c.T {
				if d := math.Abs(s.Beta[tt] - beta[tt]); d > betaRelTol*beta[tt] {
					t.Fatalf("Beta[%d] = %.9g; want %.9g (diffusers)", tt, s.Beta[tt], beta[tt])
				}
				if d := math.Abs(s.AlphaBar[tt] - alphaBar[tt]); !(d <= alphaBarRelTol[bs]*alphaBar[tt]) {
					t.Fatalf("AlphaBar[%d] = %.9g; want %.9g (diffusers)", tt, s.AlphaBar[tt], alphaBar[tt])
				}
				if s.Alpha[tt] != 1-s.Beta[tt] {
					t.Fatalf("Alpha[%d] = %v; want 1 - Beta = %v", tt, s.Alpha[tt], 1-s.Beta[tt])
				}
			}
		})
	}
}

// TestAlphaBarDecreasing checks that alphaBar is strictly decreasing in (0, 1] for every schedule.
func TestAlphaBarDecreasing(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	trained := make([]float64, 50)
	for i := range trained {
		trained[i] = 0.001 + 0.1*rng.Float64()
	}
	configs := []Config{{T: 50, TrainedBetas: trained}}
	for i := range betaScheduleNames {
		for _, T := range []int{1, 10, 1000, 4000} {
			c := Default()
			c.T, c.BetaSchedule = T, BetaSchedule(i)
			configs = append(configs, c)
		}
	}
	for _, c := range configs {
		name := fmt.Sprintf("%v/T=%d", c.BetaSchedule, c.T)
		if c.TrainedBetas != nil {
			name = "trained"
		}
		t.Run(name, func(t *testing.T) {
			s, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			if s.T() != c.T {
				t.Fatalf("T() = %d; want %d", s.T(), c.T)
			}
			prev := 1.0
			for tt, ab := range s.AlphaBar {
				if !(ab > 0 && ab <= 1) || (tt > 0 && ab >= prev) {
					t.Fatalf("AlphaBar[%d] = %v after %v; want strictly decreasing in (0, 1]", tt, ab, prev)
				}
				prev = ab
			}
		})
	}
}

func TestTimestepsGolden(t *testing.T) {
	f := loadFixture(t)
	n := 0
	for _, c := range f.Cases {
		if c.Op != "ddpm_timesteps" && c.Op != "ddim_timesteps" {
			continue
		}
		n++
		t.Run(fmt.Sprintf("%s/%v/n=%d", c.Op, c.TimestepSpacing, c.NumInferenceSteps), func(t *testing.T) {
			got, err := Timesteps(1000, c.NumInferenceSteps, c.TimestepSpacing, 0)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.Timesteps) {
				t.Fatalf("Timesteps(1000, %d, %v, 0) = %v; want %v", c.NumInferenceSteps, c.TimestepSpacing, got, c.Timesteps)
			}
		})
	}
	if n != 12 {
		t.Fatalf("found %d timestep cases in the fixture; want 12 (3 ddpm + 9 ddim)", n)
	}
}

func TestTimesteps(t *testing.T) {
	for _, tc := range []struct {
		T, n    int
		spacing Spacing
		offset  int
		want    string
	}{
		{1000, 10, Leading, 1, "[901 801 701 601 501 401 301 201 101 1]"},
		{1000, 3, Leading, 0, "[666 333 0]"},
		{1000, 3, Trailing, 0, "[999 666 332]"},
		{1000, 3, Linspace, 0, "[999 500 0]"}, // 499.5 rounds half to even
		{1000, 1, Linspace, 0, "[0]"},
		{1000, 1, Trailing, 0, "[999]"},
		{10, 10, Trailing, 0, "[9 8 7 6 5 4 3 2 1 0]"},
	} {
		t.Run(fmt.Sprintf("T=%d/n=%d/%v/offset=%d", tc.T, tc.n, tc.spacing, tc.offset), func(t *testing.T) {
			got, err := Timesteps(tc.T, tc.n, tc.spacing, tc.offset)
			if err != nil || fmt.Sprint(got) != tc.want {
				t.Fatalf("Timesteps = %v, %v; want %s", got, err, tc.want)
			}
		})
	}
	// Every spacing gives n strictly descending timesteps in [0, T), for every n, including the (T, n)
	// where numpy's float arange would give diffusers' trailing spacing an extra -1.
	for _, T := range []int{1, 7, 100, 1000} {
		for sp := range spacingNames {
			t.Run(fmt.Sprintf("T=%d/%v/all n", T, Spacing(sp)), func(t *testing.T) {
				for n := 1; n <= T; n++ {
					ts, err := Timesteps(T, n, Spacing(sp), 0)
					if err != nil || len(ts) != n {
						t.Fatalf("Timesteps(%d, %d) = %v, %v; want %d timesteps", T, n, ts, err, n)
					}
					for i, v := range ts {
						if v < 0 || v >= T || (i > 0 && v >= ts[i-1]) {
							t.Fatalf("Timesteps(%d, %d) = %v; want strictly descending in [0, %d)", T, n, ts, T)
						}
					}
				}
			})
		}
	}
	for _, tc := range []struct {
		name           string
		T, n, offset   int
		spacing        Spacing
		wantErrContain string
	}{
		{"n zero", 1000, 0, 0, Leading, "sampling steps"},
		{"n above T", 10, 11, 0, Leading, "sampling steps"},
		{"offset too large", 1000, 10, 100, Leading, "steps_offset"},
		{"bad spacing", 1000, 10, 0, Spacing(7), "spacing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Timesteps(tc.T, tc.n, tc.spacing, tc.offset)
			if err == nil || !strings.Contains(err.Error(), tc.wantErrContain) {
				t.Fatalf("Timesteps error = %v; want one about %q", err, tc.wantErrContain)
			}
		})
	}
}

func TestSpacingText(t *testing.T) {
	for sp, name := range spacingNames {
		var got Spacing
		if err := got.UnmarshalText([]byte(name)); err != nil || got != Spacing(sp) || got.String() != name {
			t.Fatalf("UnmarshalText(%q) = %v, %v; want %v", name, got, err, Spacing(sp))
		}
	}
	var s Spacing
	if err := s.UnmarshalText([]byte("uniform")); err == nil || !strings.Contains(err.Error(), `"trailing"`) {
		t.Fatalf("UnmarshalText(uniform) = %v; want an error listing the valid names", err)
	}
}

func TestPreviousTimestep(t *testing.T) {
	for _, tc := range []struct {
		n       int
		spacing Spacing
		t, want int
	}{
		{1000, Leading, 999, 998}, {1000, Leading, 0, -1}, {50, Leading, 920, 900},
		{50, Linspace, 938, 917}, // DDIM's rule t - floor(T/n) would give 918
		{50, Trailing, 19, -1}, {3, Trailing, 999, 666},
	} {
		t.Run(fmt.Sprintf("n=%d/%v/t=%d", tc.n, tc.spacing, tc.t), func(t *testing.T) {
			ts, err := Timesteps(1000, tc.n, tc.spacing, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := PreviousTimestep(ts, tc.t); err != nil || got != tc.want {
				t.Fatalf("PreviousTimestep(t=%d) = %d, %v; want %d", tc.t, got, err, tc.want)
			}
		})
	}
	t.Run("not in run", func(t *testing.T) {
		ts, _ := Timesteps(1000, 50, Leading, 0)
		if _, err := PreviousTimestep(ts, 921); err == nil || !strings.Contains(err.Error(), "921") {
			t.Fatalf("PreviousTimestep(921) error = %v; want one naming the timestep", err)
		}
	})
}

// TestAddNoiseVelocityGolden compares with diffusers' add_noise and get_velocity. The fixture passes its
// "sample" as x0 and its "model_output" as the noise (checked: the other pairings are off by > 1e-2).
// Tolerance 2e-6: diffusers computes 1 - alphaBar_t in float32, which near t = 0 (alphaBar = 0.9999) loses
// ~6e-8/1e-4 of relative precision, so sqrt(1 - alphaBar) is off by ~3e-4 relative there; observed max error
// 1.1e-6 (get_velocity, t = 0), 1.3e-7 at t >= 500.
func TestAddNoiseVelocityGolden(t *testing.T) {
	f := loadFixture(t)
	s, err := New(Default())
	if err != nil {
		t.Fatal(err)
	}
	const tol = 2e-6
	n := 0
	for _, c := range f.Cases {
		var fn func(x0, eps []float64, alphaBar float64) []float64
		switch c.Op {
		case "add_noise":
			fn = AddNoise[float64]
		case "get_velocity":
			fn = Velocity[float64]
		default:
			continue
		}
		n++
		t.Run(fmt.Sprintf("%s/t=%d", c.Op, c.T), func(t *testing.T) {
			got := fn(f.Sample, f.ModelOutput, s.AlphaBar[c.T])
			for i := range got {
				if math.Abs(got[i]-c.Out[i]) > tol {
					t.Fatalf("%s(t=%d)[%d] = %.8g; want %.8g (diffusers)", c.Op, c.T, i, got[i], c.Out[i])
				}
			}
		})
	}
	if n != 8 {
		t.Fatalf("found %d add_noise/get_velocity cases; want 8", n)
	}
}

// TestAddNoiseVelocityInverse checks x0 = sqrt(alphaBar) x_t - sqrt(1-alphaBar) v and
// eps = sqrt(1-alphaBar) x_t + sqrt(alphaBar) v, the rotation of Salimans & Ho 2022.
func TestAddNoiseVelocityInverse(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	x0, eps := make([]float32, 64), make([]float32, 64)
	for i := range x0 {
		x0[i], eps[i] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
	}
	for _, alphaBar := range []float64{0.9999, 0.5, 4e-5} {
		t.Run(fmt.Sprint("alphaBar=", alphaBar), func(t *testing.T) {
			xt, v := AddNoise(x0, eps, alphaBar), Velocity(x0, eps, alphaBar)
			a, b := math.Sqrt(alphaBar), math.Sqrt(1-alphaBar)
			for i := range xt {
				gotX0 := a*float64(xt[i]) - b*float64(v[i])
				gotEps := b*float64(xt[i]) + a*float64(v[i])
				if math.Abs(gotX0-float64(x0[i])) > 1e-6 || math.Abs(gotEps-float64(eps[i])) > 1e-6 {
					t.Fatalf("[%d]: recovered x0 %v, eps %v; want %v, %v", i, gotX0, gotEps, x0[i], eps[i])
				}
			}
		})
	}
}
