package sampler

import (
	"testing"

	"github.com/ddpm/ddpm/schedule"
)

// Golden tests against every step case of diffusers' schedulers.json. Errors are measured as
// |got - want| / (1 + |want|) (x0Hat reaches ~100 at t = 999 with epsilon prediction).
//
// diffusers computes in float32 with float32 tables; this package in float64. Where the two differ, the
// float32 emulation (the reference in float32 with diffusers' own alphas_cumprod table) shows the
// difference is diffusers' rounding: it reproduces the fixture to float32 precision in every case.
const (
	// emulationTol: float32 emulation vs fixture. Remaining differences are float32 ulps (torch's pow, log and
	// exp vs Go's; Go may fuse multiply-adds on arm64). Observed on amd64: 0, bit-exact in all 201 cases.
	emulationTol = 5e-7
	// hostTol: float64 coefficient form and float64 reference vs fixture, for t > 10. diffusers' float32
	// alphaBar is off by up to ~3.6e-7 relative (schedule's golden test) and is divided by sqrt(alphaBar) ~ 6e-3
	// at t = 999. Observed max 3.4e-7.
	hostTol = 2e-6
	// hostSmallTTol: the same for t <= 10, where diffusers' float32 1 - alphaBar_t/alphaBar_prev (about 1e-4)
	// keeps only ~3 significant digits of beta, so diffusers' prev_sample is off from exact math by ~1e-4
	// relative in the step's coefficients. Observed max 6.5e-5 (t = 1); the float32 emulation matches there.
	hostSmallTTol = 1e-4
	// graphTol: GraphStep in float32 with float32 coefficients vs the host Step (float64), same inputs. A x_t + B m
	// at t = 999 cancels two terms of magnitude ~150 in float32. Observed max 2.7e-7.
	graphTol = 1e-6
)

// goldenCase is a fixture case resolved to its configuration and coefficients.
type goldenCase struct {
	name  string
	c     stepCase
	coef  Coefficients
	ddpm  *DDPM
	ddim  *DDIM
	n     int
	ts    []int // the DDPM run for the reference; nil: no set_timesteps
	inRun bool  // t is a step of the run's Plan, with the same coefficients
}

func goldenCases(t *testing.T, f *stepFixture) []goldenCase {
	t.Helper()
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	var out []goldenCase
	counts := map[string]int{}
	for _, c := range f.Cases {
		counts[c.Op]++
		ddpm, ddim, n, name := c.config(s.T())
		g := goldenCase{name: name, c: c, ddpm: ddpm, ddim: ddim, n: n}
		var p Plan
		if ddpm != nil {
			if c.Op == "ddpm_step_strided" {
				g.ts, err = schedule.Timesteps(s.T(), n, ddpm.Spacing, ddpm.StepsOffset)
			}
			if err == nil {
				g.coef, err = ddpm.Coefficients(s, n, c.T)
			}
			if err == nil {
				p, err = ddpm.Plan(s, n)
			}
		} else {
			g.coef, err = ddim.Coefficients(s, n, c.T)
			if err == nil {
				p, err = ddim.Plan(s, n)
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, st := range p {
			if st.T == c.T {
				g.inRun = st.Coef == g.coef
			}
		}
		out = append(out, g)
	}
	// 3 variance types x 3 predictions x 2 clip x 5 t; 3 spacings; 3 predictions x 2 alpha_to_one x 2 clip
	// x 3 t x 3 eta.
	if counts["ddpm_step"] != 90 || counts["ddpm_step_strided"] != 3 || counts["ddim_step"] != 108 {
		t.Fatalf("fixture has %v step cases; want 90 ddpm_step, 3 ddpm_step_strided, 108 ddim_step", counts)
	}
	return out
}

// reference runs the slow reference of the case on alphaBar, in F.
func reference[F float](g goldenCase, alphaBar []F, f *stepFixture) (prev, x0 []F) {
	sample, m, z := convert[F](f.Sample), convert[F](f.ModelOutput), convert[F](f.Noise)
	if g.ddpm != nil {
		return refDDPMStep(alphaBar, *g.ddpm, g.ts, g.c.T, sample, m, z)
	}
	return refDDIMStep(alphaBar, *g.ddim, g.n, g.c.T, sample, m, z)
}

func convert[F, G float](x []G) []F {
	y := make([]F, len(x))
	for i, v := range x {
		y[i] = F(v)
	}
	return y
}

// checkCase compares a step's outputs with the fixture case.
func checkCase(t *testing.T, what string, stat *errStat, g goldenCase, prev, x0 []float64, tol float64) {
	t.Helper()
	if i, ok := stat.check(prev, g.c.PrevSample, tol); !ok {
		t.Errorf("%s(t=%d) prev[%d] = %.8g; want %.8g (diffusers)", what, g.c.T, i, prev[i], g.c.PrevSample[i])
	}
	if g.c.PredOriginalSample == nil { // ddpm_step_strided records prev_sample only
		return
	}
	if i, ok := stat.check(x0, g.c.PredOriginalSample, tol); !ok {
		t.Errorf("%s(t=%d) x0Hat[%d] = %.8g; want %.8g (diffusers)", what, g.c.T, i, x0[i], g.c.PredOriginalSample[i])
	}
}

// TestStepGoldenEmulation checks the reference in float32 with diffusers' float32 table against the fixture:
// the order of operations and the timestep rules are diffusers'. Tolerance: emulationTol.
func TestStepGoldenEmulation(t *testing.T) {
	f := loadStepFixture(t)
	var stat errStat
	for _, g := range goldenCases(t, f) {
		t.Run(g.name, func(t *testing.T) {
			prev, x0 := reference(g, f.AlphasCumprod, f)
			checkCase(t, "reference[float32]", &stat, g, to64(prev), to64(x0), emulationTol)
		})
	}
	t.Logf("max error / (1 + |want|): %.3g (tolerance %g)", stat.max, emulationTol)
}

// TestStepGolden checks the coefficient form (Coefficients, then Step) and the float64 reference against
// the fixture. Tolerances: hostTol, hostSmallTTol.
func TestStepGolden(t *testing.T) {
	f := loadStepFixture(t)
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	var stat [2]struct{ step, ref errStat } // t > 10, t <= 10
	for _, g := range goldenCases(t, f) {
		t.Run(g.name, func(t *testing.T) {
			if !g.inRun {
				t.Errorf("t=%d is not a step of the run's Plan with the same coefficients", g.c.T)
			}
			tol, k := hostTol, 0
			if g.c.T <= 10 {
				tol, k = hostSmallTTol, 1
			}
			prev, x0 := Step(g.coef, to32(f.Sample), to32(f.ModelOutput), to32(f.Noise))
			checkCase(t, "Step", &stat[k].step, g, to64(prev), to64(x0), tol)
			refPrev, refX0 := reference(g, s.AlphaBar, f)
			checkCase(t, "reference[float64]", &stat[k].ref, g, refPrev, refX0, tol)
		})
	}
	t.Logf("max error / (1 + |want|), t > 10: Step %.3g, reference %.3g (tolerance %g)",
		stat[0].step.max, stat[0].ref.max, hostTol)
	t.Logf("max error / (1 + |want|), t <= 10: Step %.3g, reference %.3g (tolerance %g)",
		stat[1].step.max, stat[1].ref.max, hostSmallTTol)
}
