package sampler

import (
	"fmt"
	"math"

	"github.com/ddpm/ddpm/schedule"
)

// Euler configures the Euler sampler of Karras et al. 2022 (arXiv:2206.00364v2, Algorithm 2 with
// S_churn = 0), as diffusers' EulerDiscreteScheduler with its step's default s_churn = 0 (deterministic).
// JSON names are diffusers'. Not supported: interpolation_type "log_linear", timestep_type "continuous",
// use_exponential_sigmas, use_beta_sigmas, rescale_betas_zero_snr.
//
// With x = x0 + sigma eps (the scaled sample; x_T = sigma_max z), each step is
//
//	m      = model(x/sqrt(sigma^2 + 1), t)        (scale_model_input)
//	x0Hat  = sigmaX0(prediction, sigma)           (x - sigma m for epsilon)
//	x_next = x + (x - x0Hat)/sigma (sigma_next - sigma)
//
// Karras sigmas give fractional timesteps; the model, which takes integer timesteps here, gets them
// rounded (diffusers passes the fraction to the UNet's time embedding). The same holds for linspace spacing,
// whose timesteps diffusers does not round.
type Euler struct {
	Prediction  Prediction       `json:"prediction_type"`
	Karras      bool             `json:"use_karras_sigmas"`
	FinalSigmas FinalSigmas      `json:"final_sigmas_type"`
	Spacing     schedule.Spacing `json:"timestep_spacing"`
	StepsOffset int              `json:"steps_offset"`
	// SigmaMin and SigmaMax, when > 0, replace the ends of the Karras sigmas (diffusers sigma_min and
	// sigma_max, default None).
	SigmaMin float64 `json:"sigma_min,omitempty"`
	SigmaMax float64 `json:"sigma_max,omitempty"`
}

// DefaultEuler returns diffusers' EulerDiscreteScheduler defaults: epsilon, no Karras sigmas, final sigma
// zero, linspace spacing.
func DefaultEuler() Euler {
	return Euler{Prediction: Epsilon, Spacing: schedule.Linspace}
}

// Validate reports whether c is usable.
func (c Euler) Validate() error {
	if err := c.Prediction.validate(); err != nil {
		return err
	}
	if c.FinalSigmas < 0 || int(c.FinalSigmas) >= len(finalSigmasNames) {
		return fmt.Errorf("sampler: invalid final_sigmas_type %d", int(c.FinalSigmas))
	}
	return nil
}

func (c Euler) sigmas() eulerSigmas {
	return eulerSigmas{spacing: c.Spacing, offset: c.StepsOffset, karras: c.Karras, final: c.FinalSigmas,
		sigmaMin: c.SigmaMin, sigmaMax: c.SigmaMax}
}

// Plan returns the n steps of an Euler run on s, from a unit normal x_T.
func (c Euler) Plan(s *schedule.Schedule, n int) (Plan, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	ts, sigmas, err := c.sigmas().list(s, n)
	if err != nil {
		return nil, err
	}
	p := make(Plan, n)
	for i := range p {
		sigma, next := sigmas[i], sigmas[i+1]
		a, b := sigmaX0(c.Prediction, sigma)
		dt := next - sigma
		p[i] = PlanStep{T: roundTimestep(ts[i]), Coef: Coefficients{
			In: 1 / math.Sqrt(sigma*sigma+1), A: a, B: b,
			C: -dt / sigma, D: 1 + dt/sigma,
		}}
	}
	p[0].Coef = p[0].Coef.scaleInput(initNoiseSigma(sigmas, c.Spacing))
	return p, nil
}

// Sigmas returns the timesteps (fractional, as diffusers lists them) and the n+1 noise levels of a run of
// n steps on s.
func (c Euler) Sigmas(s *schedule.Schedule, n int) (timesteps, sigmas []float64, err error) {
	return c.sigmas().list(s, n)
}

// EulerAncestral configures the ancestral Euler sampler (k-diffusion's sample_euler_ancestral), as
// diffusers' EulerAncestralDiscreteScheduler: each step goes deterministically down to sigma_down and adds
// fresh noise of level sigma_up,
//
//	sigma_up   = sqrt(sigma_next^2 (sigma^2 - sigma_next^2)/sigma^2),  sigma_down = sqrt(sigma_next^2 - sigma_up^2)
//	x_next     = x + (x - x0Hat)/sigma (sigma_down - sigma) + sigma_up z
//
// with the model input and x0Hat of Euler. As in diffusers, prediction type "sample" is refused.
type EulerAncestral struct {
	Prediction  Prediction       `json:"prediction_type"`
	Spacing     schedule.Spacing `json:"timestep_spacing"`
	StepsOffset int              `json:"steps_offset"`
}

// DefaultEulerAncestral returns diffusers' EulerAncestralDiscreteScheduler defaults: epsilon, linspace.
func DefaultEulerAncestral() EulerAncestral {
	return EulerAncestral{Prediction: Epsilon, Spacing: schedule.Linspace}
}

// Validate reports whether c is usable.
func (c EulerAncestral) Validate() error {
	if err := c.Prediction.validate(); err != nil {
		return err
	}
	if c.Prediction == Sample {
		return fmt.Errorf("sampler: EulerAncestral with prediction_type \"sample\": diffusers does not implement it")
	}
	return nil
}

// Plan returns the n steps of an ancestral Euler run on s, from a unit normal x_T.
func (c EulerAncestral) Plan(s *schedule.Schedule, n int) (Plan, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	ts, sigmas, err := c.Sigmas(s, n)
	if err != nil {
		return nil, err
	}
	p := make(Plan, n)
	for i := range p {
		sigma, next := sigmas[i], sigmas[i+1]
		up := math.Sqrt(next * next * (sigma*sigma - next*next) / (sigma * sigma))
		down := math.Sqrt(math.Max(next*next-up*up, 0))
		a, b := sigmaX0(c.Prediction, sigma)
		dt := down - sigma
		p[i] = PlanStep{T: roundTimestep(ts[i]), Coef: Coefficients{
			In: 1 / math.Sqrt(sigma*sigma+1), A: a, B: b,
			C: -dt / sigma, D: 1 + dt/sigma, Sigma: up,
		}}
	}
	p[0].Coef = p[0].Coef.scaleInput(initNoiseSigma(sigmas, c.Spacing))
	return p, nil
}

// Sigmas returns the timesteps and the n+1 noise levels of a run of n steps on s.
func (c EulerAncestral) Sigmas(s *schedule.Schedule, n int) (timesteps, sigmas []float64, err error) {
	return eulerSigmas{spacing: c.Spacing, offset: c.StepsOffset}.list(s, n)
}

// Heun configures Heun's second-order sampler (Karras et al. 2022, Algorithm 1 with S_churn = 0), as
// diffusers' HeunDiscreteScheduler: a run of n steps evaluates the model 2n - 1 times, an Euler step from
// sigma_i to sigma_{i+1} followed, except for the last, by a correction at sigma_{i+1}:
//
//	d      = (x - x0Hat(x, sigma_i))/sigma_i,  x' = x + d (sigma_{i+1} - sigma_i)
//	d'     = (x' - x0Hat(x', sigma_{i+1}))/sigma_{i+1}
//	x_next = x + (d + d')/2 (sigma_{i+1} - sigma_i)
//
// The first stage saves x (h1) and its x0Hat (h2) for the second. Karras timesteps are rounded for the
// model, as for Euler.
type Heun struct {
	Prediction      Prediction       `json:"prediction_type"`
	Karras          bool             `json:"use_karras_sigmas"`
	ClipSample      bool             `json:"clip_sample"`
	ClipSampleRange float64          `json:"clip_sample_range"`
	Spacing         schedule.Spacing `json:"timestep_spacing"`
	StepsOffset     int              `json:"steps_offset"`
}

// DefaultHeun returns diffusers' HeunDiscreteScheduler defaults: epsilon, no Karras sigmas, no clipping
// (range 1), linspace spacing.
func DefaultHeun() Heun {
	return Heun{Prediction: Epsilon, ClipSampleRange: 1, Spacing: schedule.Linspace}
}

// Validate reports whether c is usable.
func (c Heun) Validate() error {
	if err := c.Prediction.validate(); err != nil {
		return err
	}
	return checkClip(c.ClipSample, c.ClipSampleRange)
}

// Sigmas returns the timesteps and the n+1 noise levels of a run of n steps on s, before Heun repeats them
// (diffusers lists the timesteps as t_0, t_1, t_1, ..., t_{n-1}, t_{n-1}).
func (c Heun) Sigmas(s *schedule.Schedule, n int) (timesteps, sigmas []float64, err error) {
	return eulerSigmas{spacing: c.Spacing, offset: c.StepsOffset, karras: c.Karras}.list(s, n)
}

// Plan returns the 2n - 1 model evaluations of a Heun run of n steps on s, from a unit normal x_T.
func (c Heun) Plan(s *schedule.Schedule, n int) (Plan, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	ts, sg, err := c.Sigmas(s, n)
	if err != nil {
		return nil, err
	}
	clip := 0.0
	if c.ClipSample {
		clip = c.ClipSampleRange
	}
	var p Plan
	for i := 0; i < n; i++ {
		sigma, next := sg[i], sg[i+1]
		dt := next - sigma
		a, b := sigmaX0(c.Prediction, sigma)
		first := Coefficients{In: 1 / math.Sqrt(sigma*sigma+1), A: a, B: b, C: -dt / sigma, D: 1 + dt/sigma, Clip: clip}
		if i == n-1 {
			p = append(p, PlanStep{T: roundTimestep(ts[i]), Coef: first})
			break
		}
		first.Save[0][0], first.Save[1][1] = 1, 1 // h1 = x, h2 = x0Hat
		a2, b2 := sigmaX0(c.Prediction, next)
		// x_next = h1 + dt/2 ((h1 - h2)/sigma + (x' - x0Hat')/next)
		second := Coefficients{
			In: 1 / math.Sqrt(next*next+1), A: a2, B: b2, Clip: clip,
			H1: 1 + dt/(2*sigma), H2: -dt / (2 * sigma),
			D: dt / (2 * next), C: -dt / (2 * next),
		}
		p = append(p, PlanStep{T: roundTimestep(ts[i]), Coef: first}, PlanStep{T: roundTimestep(ts[i+1]), Coef: second})
	}
	p[0].Coef = p[0].Coef.scaleInput(initNoiseSigma(sg, c.Spacing))
	return p, nil
}
