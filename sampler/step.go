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
//	m      = model(In x_t, t)                                  (In: diffusers' scale_model_input)
//	x0Hat  = clip(A x_t + B m)
//	x_prev = C x0Hat + D x_t + E m + H1 h1 + H2 h2 + Sigma z
//	h1'    = Save[0] . (x_t, x0Hat, h1, h2)
//	h2'    = Save[1] . (x_t, x0Hat, h1, h2)
//
// where z is standard normal noise and h1, h2 are two buffers that a step hands to the next (zero before
// the first step): the previous data predictions of a multistep solver, the sample and data prediction of
// Heun's first stage. DDPM and DDIM use neither (H1, H2 and Save zero).
type Coefficients struct {
	A, B, C, D, E, Sigma float64
	// Clip is the clip range r: x0Hat is clamped to [-r, r]. Zero means no clipping.
	Clip float64
	// In scales the model's input. The zero value stands for 1.
	In float64
	// H1 and H2 weigh the saved buffers in x_prev.
	H1, H2 float64
	// Save gives the buffers after the step as combinations of (x_t, x0Hat, h1, h2). The zero value
	// clears them.
	Save [2][4]float64
}

// RowSize is the length of Coefficients.Row.
const RowSize = 18

// Row returns the coefficients as the float32 [RowSize] input of GraphAdvance: A, B, C, D, E, Sigma, the clip
// range (+Inf when clipping is off), In (1 for 0), H1, H2, then Save[0] and Save[1].
func (c Coefficients) Row() []float32 {
	r := float32(math.Inf(1))
	if c.Clip > 0 {
		r = float32(c.Clip)
	}
	row := []float32{float32(c.A), float32(c.B), float32(c.C), float32(c.D), float32(c.E), float32(c.Sigma), r,
		float32(c.input()), float32(c.H1), float32(c.H2)}
	for _, s := range c.Save {
		for _, v := range s {
			row = append(row, float32(v))
		}
	}
	return row
}

func (c Coefficients) input() float64 {
	if c.In == 0 {
		return 1
	}
	return c.In
}

// history reports whether the step reads or writes the saved buffers.
func (c Coefficients) history() bool {
	return c.H1 != 0 || c.H2 != 0 || c.Save != [2][4]float64{}
}

// scaleInput returns the coefficients of the same step applied to x_t/s: every weight of x_t times s.
// A plan's first step takes this form so that it starts from a unit normal x_T (init_noise_sigma = s).
func (c Coefficients) scaleInput(s float64) Coefficients {
	c.In = c.input() * s
	c.A *= s
	c.D *= s
	c.Save[0][0] *= s
	c.Save[1][0] *= s
	return c
}

// A PlanStep is one step of a sampling run.
type PlanStep struct {
	T    int          // the timestep t at which the model is evaluated, 0..T-1
	Coef Coefficients // the step from x_t to x_prev
}

// A Plan is a whole sampling run, in order: from a unit normal x_T (the first step's coefficients carry
// the scheduler's init_noise_sigma), each step maps x_t to x_prev. Its length is the number of model
// evaluations.
type Plan []PlanStep

// noisy returns the number of steps that add noise (Sigma != 0).
func (p Plan) noisy() int {
	k := 0
	for _, st := range p {
		if st.Coef.Sigma != 0 {
			k++
		}
	}
	return k
}

// history reports whether any step uses the saved buffers.
func (p Plan) history() bool {
	for _, st := range p {
		if st.Coef.history() {
			return true
		}
	}
	return false
}

// Step applies one step's coefficients on the host without saved buffers (DDPM, DDIM), with arithmetic in
// float64: Advance with h1 = h2 = 0. xt, m and z have the same length; z may be nil, meaning no noise.
func Step(c Coefficients, xt, m, z []float32) (prev, x0Hat []float32) {
	prev, x0Hat, _ = Advance(c, xt, m, z, [2][]float32{})
	return prev, x0Hat
}

// Advance applies one step's coefficients on the host, with arithmetic in float64 (see Coefficients):
// it returns x_prev, x0Hat and the buffers for the next step. xt, m, z and the buffers have the same
// length; z may be nil (no noise), and a nil buffer is zero. The model input In x_t is the caller's.
func Advance(c Coefficients, xt, m, z []float32, h [2][]float32) (prev, x0Hat []float32, next [2][]float32) {
	mustSameLen("Advance", "x_t", "m", len(xt), len(m))
	if z != nil {
		mustSameLen("Advance", "x_t", "z", len(xt), len(z))
	}
	for k := range h {
		if h[k] != nil {
			mustSameLen("Advance", "x_t", "a saved buffer", len(xt), len(h[k]))
		}
	}
	prev, x0Hat = make([]float32, len(xt)), make([]float32, len(xt))
	save := [2]bool{c.Save[0] != [4]float64{}, c.Save[1] != [4]float64{}}
	for k := range next {
		if save[k] {
			next[k] = make([]float32, len(xt))
		}
	}
	at := func(b []float32, i int) float64 {
		if b == nil {
			return 0
		}
		return float64(b[i])
	}
	for i := range xt {
		x, y := float64(xt[i]), float64(m[i])
		x0 := c.A*x + c.B*y
		if c.Clip > 0 {
			x0 = math.Max(-c.Clip, math.Min(c.Clip, x0))
		}
		h1, h2 := at(h[0], i), at(h[1], i)
		p := c.C*x0 + c.D*x + c.E*y
		if c.H1 != 0 || c.H2 != 0 {
			p += c.H1*h1 + c.H2*h2
		}
		if z != nil {
			p += c.Sigma * float64(z[i])
		}
		prev[i], x0Hat[i] = float32(p), float32(x0)
		for k, s := range c.Save {
			if save[k] {
				next[k][i] = float32(s[0]*x + s[1]*x0 + s[2]*h1 + s[3]*h2)
			}
		}
	}
	return prev, x0Hat, next
}

// ModelInput returns In x_t on the host, the input the model sees at this step (x_t itself when In is 1).
func (c Coefficients) ModelInput(xt []float32) []float32 {
	in := c.input()
	if in == 1 {
		return xt
	}
	out := make([]float32, len(xt))
	for i, v := range xt {
		out[i] = float32(in * float64(v))
	}
	return out
}

// GraphStep is Step inside a graph: GraphAdvance without saved buffers.
func GraphStep(row, xt, m, z *graph.Node) (prev, x0Hat *graph.Node) {
	prev, x0Hat, _, _ = GraphAdvance(row, xt, m, z, nil, nil)
	return prev, x0Hat
}

// GraphAdvance is Advance inside a graph: row is the float32 [RowSize] Coefficients.Row of the step, xt, m,
// z and the buffers h1, h2 float32 tensors of one shape (z nil: no noise; h1 and h2 nil: no buffers, and
// nil ones returned). Because the coefficients are an input, one compiled graph serves every step of a
// run. It returns x_prev, x0Hat and the next buffers, in float32. Like GoMLX ops it panics on bad shapes.
func GraphAdvance(row, xt, m, z, h1, h2 *graph.Node) (prev, x0Hat, h1Next, h2Next *graph.Node) {
	if row.Rank() != 1 || row.Shape().Dimensions[0] != RowSize {
		panic(fmt.Errorf("sampler: coefficient row has shape %s; want [%d] from Coefficients.Row", row.Shape(), RowSize))
	}
	if !xt.Shape().Equal(m.Shape()) || (z != nil && !xt.Shape().Equal(z.Shape())) {
		panic(fmt.Errorf("sampler: x_t %s and model output %s (and noise) must have the same shape", xt.Shape(), m.Shape()))
	}
	if (h1 == nil) != (h2 == nil) || (h1 != nil && (!xt.Shape().Equal(h1.Shape()) || !xt.Shape().Equal(h2.Shape()))) {
		panic(fmt.Errorf("sampler: the saved buffers must both be given, of x_t's shape %s, or both be nil", xt.Shape()))
	}
	coef := func(k int) *graph.Node { return graph.Reshape(graph.Slice(row, graph.AxisElem(k))) }
	r := coef(6)
	x0Hat = graph.Add(graph.Mul(coef(0), xt), graph.Mul(coef(1), m))
	x0Hat = graph.Min(graph.Max(x0Hat, graph.Neg(r)), r)
	prev = graph.Add(graph.Add(graph.Mul(coef(2), x0Hat), graph.Mul(coef(3), xt)), graph.Mul(coef(4), m))
	if h1 != nil {
		prev = graph.Add(prev, graph.Add(graph.Mul(coef(8), h1), graph.Mul(coef(9), h2)))
		combo := func(k int) *graph.Node {
			base := 10 + 4*k
			s := graph.Add(graph.Mul(coef(base), xt), graph.Mul(coef(base+1), x0Hat))
			return graph.Add(s, graph.Add(graph.Mul(coef(base+2), h1), graph.Mul(coef(base+3), h2)))
		}
		h1Next, h2Next = combo(0), combo(1)
	}
	if z != nil {
		prev = graph.Add(prev, graph.Mul(coef(5), z))
	}
	return prev, x0Hat, h1Next, h2Next
}

// graphInput is In x_t inside a graph, for the row of GraphAdvance.
func graphInput(row, xt *graph.Node) *graph.Node {
	return graph.Mul(graph.Reshape(graph.Slice(row, graph.AxisElem(7))), xt)
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
