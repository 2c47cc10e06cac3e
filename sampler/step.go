package sampler

import (
	"fmt"
	"math"

	"github.com/ddpm/ddpm/schedule"
	"github.com/gomlx/gomlx/pkg/core/graph"
)

// Variance is the DDPM step's noise variance choice, with diffusers' names. The zero value is FixedSmall.
type Variance int

const (
	// FixedSmall: sigma^2 = beta-tilde = (1 - abP)/(1 - abT) beta, clamped at 1e-20 (Ho et al. 2020, Eq. 7).
	// diffusers "fixed_small".
	FixedSmall Variance = iota
	// FixedSmallLog: the same variance, its standard deviation computed as exp(log(sigma^2)/2) (diffusers
	// "fixed_small_log"); here sigma = sqrt(sigma^2), equal up to rounding.
	FixedSmallLog
	// FixedLarge: sigma^2 = beta of the step, 1 - abT/abP (Ho et al. 2020, Sec. 3.2). diffusers "fixed_large".
	FixedLarge
)

var varianceNames = [...]string{FixedSmall: "fixed_small", FixedSmallLog: "fixed_small_log", FixedLarge: "fixed_large"}

// String returns diffusers' name of the variance type.
func (v Variance) String() string {
	if v >= 0 && int(v) < len(varianceNames) {
		return varianceNames[v]
	}
	return fmt.Sprintf("Variance(%d)", int(v))
}

// MarshalText encodes the variance type as diffusers' name.
func (v Variance) MarshalText() ([]byte, error) {
	if err := v.validate(); err != nil {
		return nil, err
	}
	return []byte(varianceNames[v]), nil
}

// UnmarshalText decodes diffusers' name of a variance type. The learned variances ("learned",
// "learned_range") and "fixed_large_log" are not supported.
func (v *Variance) UnmarshalText(text []byte) error {
	for i, name := range varianceNames {
		if string(text) == name {
			*v = Variance(i)
			return nil
		}
	}
	return fmt.Errorf("sampler: unsupported variance type %q (supported: %s)", text, quoted(varianceNames[:]))
}

func (v Variance) validate() error {
	if v < 0 || int(v) >= len(varianceNames) {
		return fmt.Errorf("sampler: invalid variance type %d (supported: %s)", int(v), quoted(varianceNames[:]))
	}
	return nil
}

// Coefficients are the scalars of one sampling step in the form shared by every sampler and prediction type
// (see the package documentation for their derivation):
//
//	x0Hat  = clip(A x_t + B m)
//	x_prev = C x0Hat + D x_t + E m + Sigma z
//
// where m is the model output and z standard normal noise.
type Coefficients struct {
	A, B, C, D, E, Sigma float64
	// Clip is the clip range r: x0Hat is clamped to [-r, r]. Zero means no clipping.
	Clip float64
}

// RowSize is the length of Coefficients.Row.
const RowSize = 7

// Row returns the coefficients as the float32 [7] input of GraphStep: A, B, C, D, E, Sigma and the clip range
// (+Inf when clipping is off).
func (c Coefficients) Row() []float32 {
	r := float32(math.Inf(1))
	if c.Clip > 0 {
		r = float32(c.Clip)
	}
	return []float32{float32(c.A), float32(c.B), float32(c.C), float32(c.D), float32(c.E), float32(c.Sigma), r}
}

// A PlanStep is one step of a sampling run.
type PlanStep struct {
	T    int          // the timestep t at which the model is evaluated, 0..T-1
	Coef Coefficients // the step from x_t to x_prev
}

// A Plan is a whole sampling run, in order: from x_T, each step maps x_t to x_prev.
type Plan []PlanStep

// Step applies one step's coefficients on the host, with arithmetic in float64:
//
//	x0Hat  = clip(A x_t + B m)
//	x_prev = C x0Hat + D x_t + E m + Sigma z
//
// xt, m and z have the same length; z may be nil, meaning no noise.
func Step(c Coefficients, xt, m, z []float32) (prev, x0Hat []float32) {
	mustSameLen("Step", "x_t", "m", len(xt), len(m))
	if z != nil {
		mustSameLen("Step", "x_t", "z", len(xt), len(z))
	}
	prev, x0Hat = make([]float32, len(xt)), make([]float32, len(xt))
	for i := range xt {
		x, y := float64(xt[i]), float64(m[i])
		x0 := c.A*x + c.B*y
		if c.Clip > 0 {
			x0 = math.Max(-c.Clip, math.Min(c.Clip, x0))
		}
		p := c.C*x0 + c.D*x + c.E*y
		if z != nil {
			p += c.Sigma * float64(z[i])
		}
		prev[i], x0Hat[i] = float32(p), float32(x0)
	}
	return prev, x0Hat
}

// GraphStep is Step inside a graph: row is the float32 [7] Coefficients.Row of the step, xt, m and z are
// float32 tensors of one shape (z nil: no noise). Because the coefficients are an input, one compiled graph
// serves every step of a run. It returns x_prev and x0Hat, in float32. Like GoMLX ops it panics on bad shapes.
func GraphStep(row, xt, m, z *graph.Node) (prev, x0Hat *graph.Node) {
	if row.Rank() != 1 || row.Shape().Dimensions[0] != RowSize {
		panic(fmt.Errorf("sampler: coefficient row has shape %s; want [%d] from Coefficients.Row", row.Shape(), RowSize))
	}
	if !xt.Shape().Equal(m.Shape()) || (z != nil && !xt.Shape().Equal(z.Shape())) {
		panic(fmt.Errorf("sampler: x_t %s and model output %s (and noise) must have the same shape", xt.Shape(), m.Shape()))
	}
	coef := func(k int) *graph.Node { return graph.Reshape(graph.Slice(row, graph.AxisElem(k))) }
	r := coef(6)
	x0Hat = graph.Add(graph.Mul(coef(0), xt), graph.Mul(coef(1), m))
	x0Hat = graph.Min(graph.Max(x0Hat, graph.Neg(r)), r)
	prev = graph.Add(graph.Add(graph.Mul(coef(2), x0Hat), graph.Mul(coef(3), xt)), graph.Mul(coef(4), m))
	if z != nil {
		prev = graph.Add(prev, graph.Mul(coef(5), z))
	}
	return prev, x0Hat
}

// checkStep validates a (schedule, n, t) triple shared by both samplers.
func checkStep(s *schedule.Schedule, n, t int) error {
	if s == nil || s.T() == 0 {
		return fmt.Errorf("sampler: no schedule; build one with schedule.New")
	}
	if n < 1 || n > s.T() {
		return fmt.Errorf("sampler: %d sampling steps with %d training timesteps; choose between 1 and %d", n, s.T(), s.T())
	}
	if t < 0 || t >= s.T() {
		return fmt.Errorf("sampler: timestep %d outside 0..%d", t, s.T()-1)
	}
	return nil
}

func checkClip(clip bool, r float64) error {
	if clip && !(r > 0) {
		return fmt.Errorf("sampler: clip_sample_range is %g; want > 0 when clip_sample is on (diffusers' default is 1)", r)
	}
	return nil
}

// DDPM configures the ancestral sampler of Ho et al. 2020 (Algorithm 2), as diffusers' DDPMScheduler.
// JSON names are diffusers'.
type DDPM struct {
	Prediction      Prediction       `json:"prediction_type"`
	Variance        Variance         `json:"variance_type"`
	ClipSample      bool             `json:"clip_sample"`
	ClipSampleRange float64          `json:"clip_sample_range"`
	Spacing         schedule.Spacing `json:"timestep_spacing"`
	StepsOffset     int              `json:"steps_offset"`
}

// DefaultDDPM returns diffusers' DDPMScheduler defaults: epsilon prediction, fixed_small variance,
// clip_sample on with range 1, leading spacing, no offset.
func DefaultDDPM() DDPM {
	return DDPM{Prediction: Epsilon, Variance: FixedSmall, ClipSample: true, ClipSampleRange: 1}
}

// Validate reports whether c is usable.
func (c DDPM) Validate() error {
	if err := c.Prediction.validate(); err != nil {
		return err
	}
	if err := c.Variance.validate(); err != nil {
		return err
	}
	return checkClip(c.ClipSample, c.ClipSampleRange)
}

// Coefficients returns the coefficients of the DDPM step from timestep t in a run of n steps on s
// (Ho et al. 2020, Eq. 6-7, generalized to the jump t -> prev, where prev is the run's next timestep or -1,
// as diffusers' previous_timestep):
//
//	alpha = abT/abP, beta = 1 - alpha, with abP = 1 when prev < 0
//	A, B  = the x0 weights of c.Prediction.Convert(abT)
//	C     = sqrt(abP) beta / (1 - abT),  D = sqrt(alpha) (1 - abP)/(1 - abT),  E = 0
//	Sigma = sqrt(max((1 - abP)/(1 - abT) beta, 1e-20)) (fixed_small, fixed_small_log) or sqrt(beta)
//	        (fixed_large); 0 at t = 0.
//
// t must be one of the run's timesteps, schedule.Timesteps(T, n, c.Spacing, c.StepsOffset).
func (c DDPM) Coefficients(s *schedule.Schedule, n, t int) (Coefficients, error) {
	if err := c.Validate(); err != nil {
		return Coefficients{}, err
	}
	if err := checkStep(s, n, t); err != nil {
		return Coefficients{}, err
	}
	ts, err := schedule.Timesteps(s.T(), n, c.Spacing, c.StepsOffset)
	if err != nil {
		return Coefficients{}, err
	}
	prev, err := schedule.PreviousTimestep(ts, t)
	if err != nil {
		return Coefficients{}, err
	}
	return c.coefficients(s, t, prev), nil
}

func (c DDPM) coefficients(s *schedule.Schedule, t, prev int) Coefficients {
	abT, abP := s.AlphaBar[t], 1.0
	if prev >= 0 {
		abP = s.AlphaBar[prev]
	}
	alpha := abT / abP
	beta := 1 - alpha
	conv := c.Prediction.Convert(abT)
	k := Coefficients{
		A: conv.X0Xt,
		B: conv.X0M,
		C: math.Sqrt(abP) * beta / (1 - abT),
		D: math.Sqrt(alpha) * (1 - abP) / (1 - abT),
	}
	if t > 0 { // diffusers adds noise iff t > 0, also at a last strided step with t > 0
		switch c.Variance {
		case FixedSmall, FixedSmallLog:
			k.Sigma = math.Sqrt(math.Max((1-abP)/(1-abT)*beta, 1e-20))
		case FixedLarge:
			k.Sigma = math.Sqrt(beta)
		}
	}
	if c.ClipSample {
		k.Clip = c.ClipSampleRange
	}
	return k
}

// Plan returns the n steps of a DDPM run on s: the timesteps of schedule.Timesteps(T, n, c.Spacing,
// c.StepsOffset), each with its Coefficients.
func (c DDPM) Plan(s *schedule.Schedule, n int) (Plan, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	ts, err := timesteps(s, n, c.Spacing, c.StepsOffset)
	if err != nil {
		return nil, err
	}
	p := make(Plan, len(ts))
	for i, t := range ts {
		prev := -1
		if i+1 < len(ts) {
			prev = ts[i+1]
		}
		p[i] = PlanStep{T: t, Coef: c.coefficients(s, t, prev)}
	}
	return p, nil
}

func timesteps(s *schedule.Schedule, n int, spacing schedule.Spacing, offset int) ([]int, error) {
	if s == nil || s.T() == 0 {
		return nil, fmt.Errorf("sampler: no schedule; build one with schedule.New")
	}
	return schedule.Timesteps(s.T(), n, spacing, offset)
}

// DDIM configures the sampler of Song et al. 2021, as diffusers' DDIMScheduler with
// use_clipped_model_output false. JSON names are diffusers' (eta is a step argument there).
type DDIM struct {
	Prediction Prediction `json:"prediction_type"`
	// Eta in [0, 1] scales the noise: 0 is the deterministic DDIM, 1 the DDPM posterior variance (Eq. 16).
	Eta float64 `json:"eta"`
	// SetAlphaToOne: past the last step use alphaBar = 1 (true) or alphaBar_0 (false).
	SetAlphaToOne   bool             `json:"set_alpha_to_one"`
	ClipSample      bool             `json:"clip_sample"`
	ClipSampleRange float64          `json:"clip_sample_range"`
	Spacing         schedule.Spacing `json:"timestep_spacing"`
	StepsOffset     int              `json:"steps_offset"`
}

// DefaultDDIM returns diffusers' DDIMScheduler defaults: epsilon prediction, eta 0, set_alpha_to_one on,
// clip_sample on with range 1, leading spacing, no offset.
func DefaultDDIM() DDIM {
	return DDIM{Prediction: Epsilon, SetAlphaToOne: true, ClipSample: true, ClipSampleRange: 1}
}

// Validate reports whether c is usable.
func (c DDIM) Validate() error {
	if err := c.Prediction.validate(); err != nil {
		return err
	}
	if !(c.Eta >= 0 && c.Eta <= 1) {
		return fmt.Errorf("sampler: DDIM eta is %g; want it in [0, 1] (0: deterministic, 1: DDPM-like)", c.Eta)
	}
	return checkClip(c.ClipSample, c.ClipSampleRange)
}

// Coefficients returns the coefficients of the DDIM step from timestep t in a run of n steps on s
// (Song et al. 2021, arXiv:2010.02502v4, Eq. 12 and 16), with diffusers' prev = t - floor(T/n) (for
// trailing and linspace spacings not always the run's next timestep; diffusers' rule, kept):
//
//	abP   = alphaBar_prev, or 1 (SetAlphaToOne) or alphaBar_0 when prev < 0
//	Sigma = eta sqrt((1 - abP)/(1 - abT)) sqrt(1 - abT/abP)
//	dir   = sqrt(max(1 - abP - Sigma^2, 0))
//	A, B  = the x0 weights and F, G the eps weights of c.Prediction.Convert(abT)
//	C     = sqrt(abP),  D = dir F,  E = dir G
//
// epsHat comes from the unclipped prediction, as diffusers with use_clipped_model_output false.
func (c DDIM) Coefficients(s *schedule.Schedule, n, t int) (Coefficients, error) {
	if err := c.Validate(); err != nil {
		return Coefficients{}, err
	}
	if err := checkStep(s, n, t); err != nil {
		return Coefficients{}, err
	}
	return c.coefficients(s, n, t), nil
}

func (c DDIM) coefficients(s *schedule.Schedule, n, t int) Coefficients {
	abT := s.AlphaBar[t]
	abP := s.AlphaBar[0]
	if prev := t - s.T()/n; prev >= 0 {
		abP = s.AlphaBar[prev]
	} else if c.SetAlphaToOne {
		abP = 1
	}
	sigma := c.Eta * math.Sqrt((1-abP)/(1-abT)*(1-abT/abP))
	// 1 - abP - sigma^2 >= 0 in exact arithmetic; clamp the rounding.
	dir := math.Sqrt(math.Max(1-abP-sigma*sigma, 0))
	conv := c.Prediction.Convert(abT)
	k := Coefficients{
		A:     conv.X0Xt,
		B:     conv.X0M,
		C:     math.Sqrt(abP),
		D:     dir * conv.EpsXt,
		E:     dir * conv.EpsM,
		Sigma: sigma,
	}
	if c.ClipSample {
		k.Clip = c.ClipSampleRange
	}
	return k
}

// Plan returns the n steps of a DDIM run on s: the timesteps of schedule.Timesteps(T, n, c.Spacing,
// c.StepsOffset), each with its Coefficients.
func (c DDIM) Plan(s *schedule.Schedule, n int) (Plan, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	ts, err := timesteps(s, n, c.Spacing, c.StepsOffset)
	if err != nil {
		return nil, err
	}
	p := make(Plan, len(ts))
	for i, t := range ts {
		p[i] = PlanStep{T: t, Coef: c.coefficients(s, n, t)}
	}
	return p, nil
}
