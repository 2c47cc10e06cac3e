package sampler

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ddpm/ddpm/internal/shared"
	"github.com/ddpm/ddpm/schedule"
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// The slow references below follow diffusers' step functions as written (a state machine over the
// scheduler's lists, the model output converted every step), in float64, so that the coefficient rows of
// the plans are checked against an independent reading of the same formulas, for the settings the
// golden runs do not cover (v and sample prediction, heun solver_type, sigma_min, orders 1-3, SDE, Karras,
// trailing and linspace spacing).

// refModel is the fake model on the host: m = w in + u t/1000.
func refModel(f fakeModel, in []float64, t int) []float64 {
	m := make([]float64, len(in))
	for i, v := range in {
		m[i] = float64(f.w)*float64(float32(v)) + float64(f.u)*float64(float32(t)/1000)
	}
	return m
}

func refDPM(c DPMSolver, s *schedule.Schedule, n int, f fakeModel, xT []float64, noise [][]float64) []float64 {
	ts, sg, err := c.list(s, n)
	if err != nil {
		panic(err)
	}
	n = len(ts)
	as := func(sigma float64) (float64, float64) { a := 1 / math.Sqrt(sigma*sigma+1); return a, sigma * a }
	x := slices.Clone(xT)
	var outs [][]float64
	lowerNums := 0
	for i := 0; i < n; i++ {
		m := refModel(f, x, ts[i])
		a, sgm := as(sg[i])
		x0 := make([]float64, len(x))
		for k := range x {
			switch c.Prediction {
			case Epsilon:
				x0[k] = (x[k] - sgm*m[k]) / a
			case Sample:
				x0[k] = m[k]
			case V:
				x0[k] = a*x[k] - sgm*m[k]
			}
		}
		outs = append(outs, x0)
		lowerFinal := i == n-1 && (c.EulerAtFinal || (c.LowerOrderFinal && n < 15) || c.FinalSigmas == FinalZero)
		lowerSecond := i == n-2 && c.LowerOrderFinal && n < 15
		order := 3
		if c.Order == 1 || lowerNums < 1 || lowerFinal {
			order = 1
		} else if c.Order == 2 || lowerNums < 2 || lowerSecond {
			order = 2
		}
		alphaT, sigmaT := as(sg[i+1])
		_, sigmaS0 := as(sg[i])
		lam := func(sigma float64) float64 { a, s := as(sigma); return math.Log(a) - math.Log(s) }
		h := lam(sg[i+1]) - lam(sg[i])
		sde := c.Algorithm == SDEDPMSolverPP
		next := make([]float64, len(x))
		for k := range x {
			m0 := outs[len(outs)-1][k]
			var d1, d2 float64
			switch order {
			case 2:
				r0 := (lam(sg[i]) - lam(sg[i-1])) / h
				d1 = (m0 - outs[len(outs)-2][k]) / r0
			case 3:
				r0, r1 := (lam(sg[i])-lam(sg[i-1]))/h, (lam(sg[i-1])-lam(sg[i-2]))/h
				m1, m2 := outs[len(outs)-2][k], outs[len(outs)-3][k]
				d10, d11 := (m0-m1)/r0, (m1-m2)/r1
				d1 = d10 + r0/(r0+r1)*(d10-d11)
				d2 = (d10 - d11) / (r0 + r1)
			}
			if sg[i+1] == 0 {
				next[k] = m0
				continue
			}
			z := 0.0
			if noise != nil {
				z = noise[i][k]
			}
			if !sde {
				v := sigmaT/sigmaS0*x[k] - alphaT*(math.Exp(-h)-1)*m0
				switch {
				case order == 2 && c.SolverType == Midpoint:
					v -= 0.5 * alphaT * (math.Exp(-h) - 1) * d1
				case order == 2:
					v += alphaT * ((math.Exp(-h)-1)/h + 1) * d1
				case order == 3:
					v += alphaT*((math.Exp(-h)-1)/h+1)*d1 - alphaT*((math.Exp(-h)-1+h)/(h*h)-0.5)*d2
				}
				next[k] = v
				continue
			}
			v := sigmaT/sigmaS0*math.Exp(-h)*x[k] + alphaT*(1-math.Exp(-2*h))*m0
			switch {
			case order == 2 && c.SolverType == Midpoint:
				v += 0.5 * alphaT * (1 - math.Exp(-2*h)) * d1
			case order == 2:
				v += alphaT * ((1-math.Exp(-2*h))/(-2*h) + 1) * d1
			case order == 3:
				v += alphaT*((1-math.Exp(-2*h))/(-2*h)+1)*d1 + alphaT*((1-math.Exp(-2*h)-2*h)/(4*h*h)-0.5)*d2
			}
			next[k] = v + sigmaT*math.Sqrt(1-math.Exp(-2*h))*z
		}
		x = next
		lowerNums = min(lowerNums+1, c.Order)
	}
	return x
}

// refEulerFamily runs Euler (ancestral: EulerAncestral) or Heun as diffusers' step functions do.
func refEulerFamily(kind string, p Prediction, clip float64, ts, sg []float64, init float64, f fakeModel, xT []float64, noise [][]float64) []float64 {
	x0Of := func(x, m, sigma float64) float64 {
		var v float64
		switch p {
		case Epsilon:
			v = x - sigma*m
		case Sample:
			v = m
		case V:
			v = m*(-sigma/math.Sqrt(sigma*sigma+1)) + x/(sigma*sigma+1)
		}
		if clip > 0 {
			v = math.Max(-clip, math.Min(clip, v))
		}
		return v
	}
	x := make([]float64, len(xT))
	for k := range x {
		x[k] = xT[k] * init
	}
	scaled := func(sigma float64) []float64 {
		in := make([]float64, len(x))
		for k := range x {
			in[k] = x[k] / math.Sqrt(sigma*sigma+1)
		}
		return in
	}
	step := 0
	for i := range ts {
		sigma, next := sg[i], sg[i+1]
		m := refModel(f, scaled(sigma), roundTimestep(ts[i]))
		switch kind {
		case "euler", "euler_ancestral":
			up, down := 0.0, next
			if kind == "euler_ancestral" {
				up = math.Sqrt(next * next * (sigma*sigma - next*next) / (sigma * sigma))
				down = math.Sqrt(next*next - up*up)
			}
			for k := range x {
				d := (x[k] - x0Of(x[k], m[k], sigma)) / sigma
				x[k] += d * (down - sigma)
				if noise != nil {
					x[k] += noise[step][k] * up
				}
			}
			step++
		case "heun":
			dt := next - sigma
			saved, deriv := slices.Clone(x), make([]float64, len(x))
			for k := range x {
				deriv[k] = (x[k] - x0Of(x[k], m[k], sigma)) / sigma
				x[k] += deriv[k] * dt
			}
			step++
			if i == len(ts)-1 {
				break
			}
			m2 := refModel(f, scaled(next), roundTimestep(ts[i+1]))
			for k := range x {
				d2 := (x[k] - x0Of(x[k], m2[k], next)) / next
				x[k] = saved[k] + (deriv[k]+d2)/2*dt
			}
			step++
		}
	}
	return x
}

func runPlanHost(t *testing.T, f fakeModel, plan Plan, xT []float32, noise [][]float32, dims []int) []float32 {
	t.Helper()
	opts := Options{N: dims[0], Shape: dims[1:], Init: tensors.FromFlatDataAndDimensions(slices.Clone(xT), dims...)}
	if noise != nil {
		var flat []float32
		for _, z := range noise {
			flat = append(flat, z...)
		}
		opts.Noise = tensors.FromFlatDataAndDimensions(flat, append([]int{len(noise)}, dims...)...)
	}
	size := 1
	for _, d := range dims[1:] {
		size *= d
	}
	x, err := RunHost(f.hostDenoiser(size), plan, opts)
	if err != nil {
		t.Fatal(err)
	}
	return flat32(t, x)
}

func to64s(x [][]float32) [][]float64 {
	if x == nil {
		return nil
	}
	out := make([][]float64, len(x))
	for i, v := range x {
		out[i] = to64(v)
	}
	return out
}

// TestSigmaSamplersMatchReference checks the plans of DPM-Solver++, Euler, Euler ancestral and Heun,
// run by RunHost, against the slow references, in many settings. Tolerance 1e-4 relative to 1 + |want|:
// the host loop keeps x in float32 between steps (observed ~1e-6).
func TestSigmaSamplersMatchReference(t *testing.T) {
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	cosine := schedule.Default()
	cosine.BetaSchedule = schedule.SquaredCosCapV2
	sCos, err := schedule.New(cosine)
	if err != nil {
		t.Fatal(err)
	}
	f := fakeModel{w: 0.3, u: 0.2}
	dims := []int{2, 1, 2, 3}
	size := 6
	type tc struct {
		name string
		plan func() (Plan, error)
		ref  func(xT []float64, noise [][]float64) []float64
		n    int // noise draws
	}
	var cases []tc
	dpm := func(name string, n int, s *schedule.Schedule, edit func(*DPMSolver)) {
		c := DefaultDPMSolver()
		edit(&c)
		draws := 0
		if c.Algorithm == SDEDPMSolverPP {
			draws = n
		}
		cases = append(cases, tc{"dpm/" + name, func() (Plan, error) { return c.Plan(s, n) },
			func(xT []float64, z [][]float64) []float64 { return refDPM(c, s, n, f, xT, z) }, draws})
	}
	dpm("2M/linspace/n=8", 8, s, func(c *DPMSolver) {})
	dpm("2M/heun/v/trailing/n=10", 10, s, func(c *DPMSolver) { c.SolverType, c.Prediction, c.Spacing = HeunType, V, schedule.Trailing })
	dpm("3M/sample/leading/n=16/sigma_min", 16, s, func(c *DPMSolver) {
		c.Order, c.Prediction, c.Spacing, c.FinalSigmas = 3, Sample, schedule.Leading, FinalSigmaMin
	})
	dpm("3M/n=20/euler_at_final", 20, s, func(c *DPMSolver) { c.Order, c.EulerAtFinal = 3, true })
	dpm("1/karras/n=6", 6, s, func(c *DPMSolver) { c.Order, c.Karras = 1, true })
	dpm("sde 2M/heun/karras/n=9", 9, s, func(c *DPMSolver) { c.Algorithm, c.SolverType, c.Karras = SDEDPMSolverPP, HeunType, true })
	dpm("sde 3M/v/n=17/sigma_min", 17, s, func(c *DPMSolver) {
		c.Algorithm, c.Order, c.Prediction, c.FinalSigmas = SDEDPMSolverPP, 3, V, FinalSigmaMin
	})
	dpm("2M/cosine/lambda_min_clipped -5.1/n=12", 12, sCos, func(c *DPMSolver) { c.LambdaMinClipped = -5.1 })

	euler := func(name, kind string, n int, p Prediction, spacing schedule.Spacing, karras bool, clip float64) {
		cases = append(cases, tc{kind + "/" + name,
			func() (Plan, error) {
				switch kind {
				case "euler":
					return Euler{Prediction: p, Spacing: spacing, Karras: karras}.Plan(s, n)
				case "euler_ancestral":
					return EulerAncestral{Prediction: p, Spacing: spacing}.Plan(s, n)
				}
				r := 1.0
				if clip > 0 {
					r = clip
				}
				return Heun{Prediction: p, Spacing: spacing, Karras: karras, ClipSample: clip > 0, ClipSampleRange: r}.Plan(s, n)
			},
			func(xT []float64, z [][]float64) []float64 {
				ts, sg, err := eulerSigmas{spacing: spacing, karras: karras}.list(s, n)
				if err != nil {
					panic(err)
				}
				return refEulerFamily(kind, p, clip, ts, sg, initNoiseSigma(sg, spacing), f, xT, z)
			}, map[bool]int{true: n, false: 0}[kind == "euler_ancestral"]})
	}
	euler("linspace/n=7", "euler", 7, Epsilon, schedule.Linspace, false, 0)
	euler("v/leading/karras/n=9", "euler", 9, V, schedule.Leading, true, 0)
	euler("sample/trailing/n=5", "euler", 5, Sample, schedule.Trailing, false, 0)
	euler("linspace/n=8", "euler_ancestral", 8, Epsilon, schedule.Linspace, false, 0)
	euler("v/leading/n=6", "euler_ancestral", 6, V, schedule.Leading, false, 0)
	euler("linspace/n=5", "heun", 5, Epsilon, schedule.Linspace, false, 0)
	euler("v/trailing/karras/n=4", "heun", 4, V, schedule.Trailing, true, 0)
	euler("sample/leading/clip/n=6", "heun", 6, Sample, schedule.Leading, false, 0.5)

	worst := 0.0
	for k, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan, err := c.plan()
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(3, uint64(k)))
			xT := normals(rng, 2*size)
			var noise [][]float32
			if c.n > 0 {
				for range plan {
					noise = append(noise, normals(rng, 2*size))
				}
			}
			got := runPlanHost(t, f, plan, xT, noise, dims)
			want := to32(c.ref(to64(xT), to64s(noise)))
			d := maxRelDiff(got, want)
			worst = max(worst, d)
			if !(d <= 1e-4) {
				t.Fatalf("plan of %d steps: x_0 = %v\nreference   %v\nmax relative difference %.3g; want <= 1e-4", len(plan), got, want, d)
			}
		})
	}
	t.Logf("max difference / (1 + |want|): %.3g", worst)
}

// TestRunnerMatchesRunHostWithHistory runs plans that use the saved buffers (Heun, DPM-Solver 3M, SDE)
// through the compiled step on the pure-Go backend, several steps per call, against RunHost.
func TestRunnerMatchesRunHostWithHistory(t *testing.T) {
	b := shared.GoBackend(t)
	s, err := schedule.New(schedule.Default())
	if err != nil {
		t.Fatal(err)
	}
	f := fakeModel{w: 0.4, u: -0.1}
	dpm3 := DefaultDPMSolver()
	dpm3.Order, dpm3.Algorithm = 3, SDEDPMSolverPP
	heun := DefaultHeun()
	heun.Prediction = V
	euler := DefaultEuler()
	euler.Karras = true
	dims := []int{2, 1, 2, 2}
	r, err := NewRunner(b, f)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Finalize()
	for k, c := range []struct {
		name    string
		plan    func() (Plan, error)
		perCall int
	}{
		{"sde 3M n=8", func() (Plan, error) { return dpm3.Plan(s, 8) }, 1},
		{"sde 3M n=8, 4 per call", func() (Plan, error) { return dpm3.Plan(s, 8) }, 4},
		{"heun v n=5", func() (Plan, error) { return heun.Plan(s, 5) }, 3},
		{"euler karras n=6", func() (Plan, error) { return euler.Plan(s, 6) }, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			plan, err := c.plan()
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(5, uint64(k)))
			xT := normals(rng, 8)
			var noise [][]float32
			var flat []float32
			for range plan {
				z := normals(rng, 8)
				noise, flat = append(noise, z), append(flat, z...)
			}
			want := runPlanHost(t, f, plan, xT, noise, dims)
			x, err := r.Run(plan, Options{N: 2, Shape: dims[1:], StepsPerCall: c.perCall,
				Init:  tensors.FromFlatDataAndDimensions(slices.Clone(xT), dims...),
				Noise: tensors.FromFlatDataAndDimensions(flat, append([]int{len(plan)}, dims...)...)})
			if err != nil {
				t.Fatal(err)
			}
			if d := maxRelDiff(flat32(t, x), want); !(d <= 1e-5) {
				t.Fatalf("Runner %v\nRunHost %v\ndifference %.3g; want <= 1e-5", flat32(t, x), want, d)
			}
		})
	}
}

// TestTimestepLists pins the timesteps of each spacing, worked out by hand from diffusers' set_timesteps.
func TestTimestepLists(t *testing.T) {
	for _, c := range []struct {
		name string
		got  func() (any, error)
		want string
	}{
		{"dpm linspace 10", func() (any, error) { return dpmTimesteps(1000, 1000, 10, schedule.Linspace, 0) },
			"[999 899 799 699 599 500 400 300 200 100]"},
		{"dpm leading 10 offset 1", func() (any, error) { return dpmTimesteps(1000, 1000, 10, schedule.Leading, 1) },
			"[901 811 721 631 541 451 361 271 181 91]"},
		{"dpm trailing 10", func() (any, error) { return dpmTimesteps(1000, 1000, 10, schedule.Trailing, 0) },
			"[999 899 799 699 599 499 399 299 199 99]"},
		{"dpm trailing 3", func() (any, error) { return dpmTimesteps(1000, 1000, 3, schedule.Trailing, 0) },
			"[999 666 332]"},
		{"euler linspace 3", func() (any, error) { return eulerTimesteps(1000, 3, schedule.Linspace, 0) }, "[999 499.5 0]"},
		{"euler leading 4", func() (any, error) { return eulerTimesteps(1000, 4, schedule.Leading, 0) }, "[750 500 250 0]"},
		{"euler trailing 4", func() (any, error) { return eulerTimesteps(1000, 4, schedule.Trailing, 0) }, "[999 749 499 249]"},
	} {
		got, err := c.got()
		if err != nil || fmt.Sprint(got) != c.want {
			t.Errorf("%s: %v, %v; want %s", c.name, got, err, c.want)
		}
	}
}

// TestPlanShapes: Heun evaluates 2n - 1 times, its first step carries init_noise_sigma; Euler's x_T scale
// is sqrt(sigma_max^2 + 1) for leading spacing and sigma_max otherwise; DPM-Solver takes x_T as it is.
func TestPlanShapes(t *testing.T) {
	s, _ := schedule.New(schedule.Default())
	h, err := DefaultHeun().Plan(s, 10)
	if err != nil || len(h) != 19 {
		t.Fatalf("Heun 10 steps: %d evaluations, %v; want 19", len(h), err)
	}
	for _, sp := range []schedule.Spacing{schedule.Leading, schedule.Linspace} {
		e := DefaultEuler()
		e.Spacing = sp
		p, err := e.Plan(s, 10)
		if err != nil {
			t.Fatal(err)
		}
		_, sg, _ := e.Sigmas(s, 10)
		want := sg[0]
		if sp == schedule.Leading {
			want = math.Sqrt(sg[0]*sg[0] + 1)
		}
		if got := p[0].Coef.In * math.Sqrt(sg[0]*sg[0]+1); math.Abs(got-want) > 1e-9*want {
			t.Errorf("%s: first step scales x_T by %v; want init_noise_sigma %v", sp, got, want)
		}
	}
	d, _ := DefaultDPMSolver().Plan(s, 10)
	if d[0].Coef.input() != 1 {
		t.Errorf("DPM-Solver's first step scales its input by %v; want 1", d[0].Coef.input())
	}
	if _, err := (EulerAncestral{Prediction: Sample}).Plan(s, 5); err == nil {
		t.Errorf("EulerAncestral with sample prediction: no error; diffusers refuses it")
	}
}
