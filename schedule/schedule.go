// Package schedule holds the noise schedule of a discrete-time diffusion model: the tables beta_t,
// alpha_t and alphaBar_t for t = 0..T-1, the timesteps a sampler visits, and the closed-form forward
// process. It is pure Go in float64 and imports nothing of ours and no GoMLX.
//
// The forward process (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", arXiv:2006.11239v2)
// adds Gaussian noise with variance beta_t at step t:
//
//	q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)                    (Eq. 2)
//	alpha_t    = 1 - beta_t
//	alphaBar_t = prod_{s<=t} alpha_s
//	q(x_t | x_0) = N(sqrt(alphaBar_t) x_0, (1 - alphaBar_t) I)                   (Eq. 4)
//
// so x_t can be drawn from x_0 in one jump (AddNoise). Timesteps are 0-based as in diffusers: t = 0 is the
// first noising step (the paper's t = 1), t = T-1 the last.
//
// The beta schedules and the timestep spacings reproduce Hugging Face diffusers' DDPMScheduler and
// DDIMScheduler (names, defaults and rounding). diffusers builds the tables in float32; this package builds
// them in float64, so the two differ by float32 rounding: beta by up to 3e-7 relative, alphaBar (a float32
// cumulative product in diffusers) by up to 4.3e-7 absolute, which is 1.3e-5 relative where the cosine
// schedule's alphaBar is tiny (measured against diffusers' tables in the golden tests).
package schedule

import (
	"fmt"
	"math"
	"strings"
)

// BetaSchedule names how beta_t is laid out over t = 0..T-1, with diffusers' names.
// The zero value is Linear.
type BetaSchedule int

const (
	// Linear: beta_t = linspace(BetaStart, BetaEnd, T) (Ho et al. 2020, Sec. 4). diffusers "linear".
	Linear BetaSchedule = iota
	// ScaledLinear: beta_t = linspace(sqrt(BetaStart), sqrt(BetaEnd), T)^2, the latent diffusion schedule.
	// diffusers "scaled_linear".
	ScaledLinear
	// SquaredCosCapV2: the cosine schedule of Nichol & Dhariwal 2021 (arXiv:2102.09672v1, Eq. 17):
	// alphaBar(s) = cos^2((s + 0.008)/1.008 * pi/2), beta_t = min(1 - alphaBar((t+1)/T)/alphaBar(t/T), 0.999).
	// BetaStart and BetaEnd are ignored. diffusers "squaredcos_cap_v2".
	SquaredCosCapV2
	// Sigmoid: beta_t = sigmoid(linspace(-6, 6, T)) * (BetaEnd - BetaStart) + BetaStart (GeoDiff,
	// Xu et al. 2022). diffusers "sigmoid".
	Sigmoid
)

var betaScheduleNames = [...]string{
	Linear:          "linear",
	ScaledLinear:    "scaled_linear",
	SquaredCosCapV2: "squaredcos_cap_v2",
	Sigmoid:         "sigmoid",
}

// String returns diffusers' name of the schedule.
func (s BetaSchedule) String() string {
	if s >= 0 && int(s) < len(betaScheduleNames) {
		return betaScheduleNames[s]
	}
	return fmt.Sprintf("BetaSchedule(%d)", int(s))
}

// MarshalText encodes the schedule as diffusers' name.
func (s BetaSchedule) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(betaScheduleNames) {
		return nil, fmt.Errorf("schedule: invalid beta schedule %d (valid: %s)", int(s), validNames(betaScheduleNames[:]))
	}
	return []byte(betaScheduleNames[s]), nil
}

// UnmarshalText decodes diffusers' name of a schedule.
func (s *BetaSchedule) UnmarshalText(text []byte) error {
	for i, name := range betaScheduleNames {
		if string(text) == name {
			*s = BetaSchedule(i)
			return nil
		}
	}
	return fmt.Errorf("schedule: unknown beta schedule %q (valid: %s)", text, validNames(betaScheduleNames[:]))
}

func validNames(names []string) string {
	return `"` + strings.Join(names, `", "`) + `"`
}

// Config describes a noise schedule. The JSON names are those of diffusers' scheduler_config.json.
type Config struct {
	// T is the number of training timesteps (diffusers num_train_timesteps).
	T            int          `json:"num_train_timesteps"`
	BetaStart    float64      `json:"beta_start"`
	BetaEnd      float64      `json:"beta_end"`
	BetaSchedule BetaSchedule `json:"beta_schedule"`
	// TrainedBetas, when not empty, gives beta_t directly (length T) and overrides the three fields above.
	TrainedBetas []float64 `json:"trained_betas,omitempty"`
}

// Default returns diffusers' default: linear betas from 1e-4 to 0.02 over T = 1000 steps, the schedule of
// Ho et al. 2020.
func Default() Config {
	return Config{T: 1000, BetaStart: 1e-4, BetaEnd: 0.02, BetaSchedule: Linear}
}

// MaxT bounds num_train_timesteps: the tables take 24 bytes a timestep, and published models use 1000
// (Improved DDPM: 4000). A larger T in a config file is an error, not an allocation that exhausts memory.
const MaxT = 1_000_000

// Validate reports whether c describes a usable schedule: every beta_t must lie in (0, 1) so that
// alphaBar_t is strictly decreasing in (0, 1), and T is at most MaxT.
func (c Config) Validate() error {
	if c.T < 1 {
		return fmt.Errorf("schedule: num_train_timesteps is %d; want at least 1 (diffusers' default is 1000)", c.T)
	}
	if c.T > MaxT {
		return fmt.Errorf("schedule: num_train_timesteps is %d, beyond the limit of %d (schedule.MaxT)", c.T, MaxT)
	}
	if len(c.TrainedBetas) > 0 {
		if len(c.TrainedBetas) != c.T {
			return fmt.Errorf("schedule: trained_betas has %d values but num_train_timesteps is %d; give one beta per timestep",
				len(c.TrainedBetas), c.T)
		}
		for t, b := range c.TrainedBetas {
			if !(b > 0 && b < 1) {
				return fmt.Errorf("schedule: trained_betas[%d] = %g; every beta must lie in (0, 1)", t, b)
			}
		}
		return nil
	}
	if c.BetaSchedule < 0 || int(c.BetaSchedule) >= len(betaScheduleNames) {
		return fmt.Errorf("schedule: invalid beta schedule %d (valid: %s)", int(c.BetaSchedule), validNames(betaScheduleNames[:]))
	}
	if c.BetaSchedule == SquaredCosCapV2 {
		return nil // beta_start and beta_end are not used
	}
	if !(c.BetaStart > 0 && c.BetaStart < 1) || !(c.BetaEnd > 0 && c.BetaEnd < 1) {
		return fmt.Errorf("schedule: beta_start %g and beta_end %g must lie in (0, 1) (diffusers' defaults: 0.0001 and 0.02)",
			c.BetaStart, c.BetaEnd)
	}
	return nil
}

// A Schedule holds the tables of a noise schedule, indexed by the timestep t = 0..T-1, in float64.
type Schedule struct {
	Beta     []float64 // beta_t, the variance added at step t
	Alpha    []float64 // alpha_t = 1 - beta_t
	AlphaBar []float64 // alphaBar_t = prod_{s<=t} alpha_s, strictly decreasing in (0, 1)
}

// New builds the tables of c, in float64.
func New(c Config) (*Schedule, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var beta []float64
	switch {
	case len(c.TrainedBetas) > 0:
		beta = append([]float64(nil), c.TrainedBetas...)
	case c.BetaSchedule == Linear:
		beta = linspace(c.BetaStart, c.BetaEnd, c.T)
	case c.BetaSchedule == ScaledLinear:
		beta = linspace(math.Sqrt(c.BetaStart), math.Sqrt(c.BetaEnd), c.T)
		for t, b := range beta {
			beta[t] = b * b
		}
	case c.BetaSchedule == SquaredCosCapV2:
		beta = cosineBetas(c.T, 0.999)
	case c.BetaSchedule == Sigmoid:
		beta = linspace(-6, 6, c.T)
		for t, x := range beta {
			beta[t] = 1/(1+math.Exp(-x))*(c.BetaEnd-c.BetaStart) + c.BetaStart
		}
	}
	s := &Schedule{Beta: beta, Alpha: make([]float64, c.T), AlphaBar: make([]float64, c.T)}
	prod := 1.0
	for t, b := range beta {
		s.Alpha[t] = 1 - b
		prod *= s.Alpha[t]
		s.AlphaBar[t] = prod
	}
	for t, ab := range s.AlphaBar {
		if !(ab > 0 && ab < 1) {
			return nil, fmt.Errorf("schedule: alphaBar[%d] = %g underflows to 0 with these betas; use fewer timesteps or smaller betas", t, ab)
		}
	}
	return s, nil
}

// T returns the number of training timesteps.
func (s *Schedule) T() int { return len(s.Beta) }

// linspace returns n evenly spaced values from a to b inclusive, as torch.linspace (n = 1 gives [a]).
func linspace(a, b float64, n int) []float64 {
	v := make([]float64, n)
	if n == 1 {
		v[0] = a
		return v
	}
	step := (b - a) / float64(n-1)
	for i := range v {
		v[i] = a + float64(i)*step
	}
	v[n-1] = b
	return v
}

// cosineBetas discretizes alphaBar(s) = cos^2((s + 0.008)/1.008 * pi/2) on s = t/T
// (Nichol & Dhariwal 2021, arXiv:2102.09672v1, Eq. 17), capping beta at maxBeta.
func cosineBetas(T int, maxBeta float64) []float64 {
	f := func(s float64) float64 {
		c := math.Cos((s + 0.008) / 1.008 * math.Pi / 2)
		return c * c
	}
	beta := make([]float64, T)
	for t := range beta {
		beta[t] = math.Min(1-f(float64(t+1)/float64(T))/f(float64(t)/float64(T)), maxBeta)
	}
	return beta
}

// AddNoise returns x_t = sqrt(alphaBar_t) x0 + sqrt(1 - alphaBar_t) eps, the closed-form jump of the forward
// process (Ho et al. 2020, arXiv:2006.11239v2, Eq. 4; diffusers add_noise), with arithmetic in float64.
// x0 and eps have the same length; alphaBar is s.AlphaBar[t].
func AddNoise[F ~float32 | ~float64](x0, eps []F, alphaBar float64) []F {
	mustSameLen("AddNoise", len(x0), len(eps))
	a, b := math.Sqrt(alphaBar), math.Sqrt(1-alphaBar)
	xt := make([]F, len(x0))
	for i := range xt {
		xt[i] = F(a*float64(x0[i]) + b*float64(eps[i]))
	}
	return xt
}

// Velocity returns v = sqrt(alphaBar_t) eps - sqrt(1 - alphaBar_t) x0, the "v" target of Salimans & Ho 2022
// ("Progressive Distillation for Fast Sampling of Diffusion Models", arXiv:2202.00512v2, Sec. 4 and
// Appendix D; diffusers get_velocity), with arithmetic in float64. alphaBar is s.AlphaBar[t].
func Velocity[F ~float32 | ~float64](x0, eps []F, alphaBar float64) []F {
	mustSameLen("Velocity", len(x0), len(eps))
	a, b := math.Sqrt(alphaBar), math.Sqrt(1-alphaBar)
	v := make([]F, len(x0))
	for i := range v {
		v[i] = F(a*float64(eps[i]) - b*float64(x0[i]))
	}
	return v
}

// mustSameLen panics on a programming error: slices of different lengths.
func mustSameLen(fn string, a, b int) {
	if a != b {
		panic(fmt.Sprintf("schedule.%s: x0 has %d values and eps %d; they must have the same length", fn, a, b))
	}
}
