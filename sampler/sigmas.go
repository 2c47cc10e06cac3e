package sampler

import (
	"fmt"
	"math"
	"slices"

	"github.com/ddpm/ddpm/schedule"
)

// The samplers of this file work with the noise level sigma_t = sqrt((1 - alphaBar_t)/alphaBar_t) instead of
// t (Karras et al. 2022, arXiv:2206.00364v2, Sec. 2 and Table 1: x_t/sqrt(alphaBar_t) = x0 + sigma_t eps).
// Their timesteps and sigmas follow diffusers' set_timesteps (v0.30-0.40), computed here in float64.

// sigmaTable returns sigma_t for t = 0..T-1.
func sigmaTable(s *schedule.Schedule) []float64 {
	out := make([]float64, s.T())
	for t, ab := range s.AlphaBar {
		out[t] = math.Sqrt((1 - ab) / ab)
	}
	return out
}

// interp is np.interp(x, arange(len(ys)), ys): linear interpolation on the integer grid, clamped at the ends.
func interp(x float64, ys []float64) float64 {
	if x <= 0 {
		return ys[0]
	}
	if x >= float64(len(ys)-1) {
		return ys[len(ys)-1]
	}
	i := int(math.Floor(x))
	w := x - float64(i)
	if w == 0 {
		return ys[i]
	}
	return ys[i] + w*(ys[i+1]-ys[i])
}

// karrasSigmas returns the n noise levels of Karras et al. 2022 (Eq. 5, rho = 7) from sigmaMax down to
// sigmaMin: (max^(1/rho) + i/(n-1) (min^(1/rho) - max^(1/rho)))^rho.
func karrasSigmas(sigmaMin, sigmaMax float64, n int) []float64 {
	const rho = 7.0
	minInv, maxInv := math.Pow(sigmaMin, 1/rho), math.Pow(sigmaMax, 1/rho)
	out := make([]float64, n)
	for i := range out {
		ramp := 0.0
		if n > 1 {
			ramp = float64(i) / float64(n-1)
		}
		if i == n-1 {
			ramp = 1
		}
		out[i] = math.Pow(maxInv+ramp*(minInv-maxInv), rho)
	}
	return out
}

// sigmaToT inverts sigma_t by linear interpolation of log sigma between the two neighbouring timesteps
// (diffusers' _sigma_to_t): a fractional timestep.
func sigmaToT(sigma float64, logSigmas []float64) float64 {
	logSigma := math.Log(math.Max(sigma, 1e-10))
	low := 0 // the last index with logSigmas[i] <= logSigma, at most T-2
	for i, l := range logSigmas {
		if logSigma-l >= 0 {
			low = i
		}
	}
	low = min(low, len(logSigmas)-2)
	lo, hi := logSigmas[low], logSigmas[low+1]
	w := (lo - logSigma) / (lo - hi)
	w = math.Max(0, math.Min(1, w))
	return (1-w)*float64(low) + w*float64(low+1)
}

// roundTimestep rounds a fractional timestep half to even, as numpy's round, for a model that takes integer
// timesteps.
func roundTimestep(t float64) int { return int(math.RoundToEven(t)) }

// eulerTimesteps are the timesteps of diffusers' EulerDiscreteScheduler, EulerAncestralDiscreteScheduler and
// HeunDiscreteScheduler (before Heun's repetition), descending, possibly fractional (linspace):
//
//	linspace: linspace(0, T-1, n) reversed (not rounded; float32 in diffusers)
//	leading:  (i * floor(T/n)) for i = n-1..0, + steps_offset
//	trailing: round(arange(T, 0, -T/n)) - 1
func eulerTimesteps(T, n int, spacing schedule.Spacing, offset int) ([]float64, error) {
	if n < 1 || n > T {
		return nil, fmt.Errorf("sampler: %d sampling steps with %d training timesteps; choose between 1 and %d", n, T, T)
	}
	ts := make([]float64, n)
	switch spacing {
	case schedule.Linspace:
		if n == 1 {
			break
		}
		step := float64(T-1) / float64(n-1)
		for i := range ts {
			ts[n-1-i] = float64(float32(float64(i) * step))
		}
		ts[0] = float64(T - 1)
	default:
		its, err := schedule.Timesteps(T, n, spacing, offset)
		if err != nil {
			return nil, err
		}
		for i, t := range its {
			ts[i] = float64(t)
		}
	}
	return ts, nil
}

// dpmTimesteps are the timesteps of diffusers' DPMSolverMultistepScheduler, descending, with last the
// number of timesteps kept by lambda_min_clipped (T when it is -Inf):
//
//	linspace: round(linspace(0, last-1, n+1)) reversed, without its last value (0)
//	leading:  (i * floor(last/(n+1))) for i = n..1, + steps_offset
//	trailing: round(arange(last, 0, -T/n)) - 1
func dpmTimesteps(T, last, n int, spacing schedule.Spacing, offset int) ([]int, error) {
	if n < 1 || n > T {
		return nil, fmt.Errorf("sampler: %d sampling steps with %d training timesteps; choose between 1 and %d", n, T, T)
	}
	ts := make([]int, n)
	switch spacing {
	case schedule.Linspace:
		step := float64(last-1) / float64(n)
		for i := range ts { // value i+1 of the n+1, reversed
			k := n - i
			v := float64(k) * step
			if k == n {
				v = float64(last - 1)
			}
			ts[i] = int(math.RoundToEven(v))
		}
	case schedule.Leading:
		ratio := last / (n + 1)
		for i := range ts {
			ts[i] = (n-i)*ratio + offset
		}
	case schedule.Trailing:
		step := -float64(T) / float64(n)
		start := float64(last)
		delta := (start + step) - start
		// For some n (3, 6, 7, ...) numpy's arange yields a last value ~1e-13, so diffusers lists n+1
		// timesteps, the last -1; as schedule.Timesteps, keep the n intended ones.
		ts = ts[:0]
		for i := 0; i < n; i++ {
			v := start + float64(i)*delta
			if v <= 0 {
				break
			}
			ts = append(ts, int(math.RoundToEven(v))-1)
		}
	default:
		return nil, fmt.Errorf("sampler: invalid timestep spacing %d", int(spacing))
	}
	for _, t := range ts {
		if t < 0 || t >= T {
			return nil, fmt.Errorf("sampler: timesteps %v leave 0..%d (steps_offset %d?)", ts, T-1, offset)
		}
	}
	return ts, nil
}

// FinalSigmas is diffusers' final_sigmas_type: the noise level after the last step.
type FinalSigmas int

const (
	// FinalZero ends at sigma = 0, a clean sample. diffusers "zero".
	FinalZero FinalSigmas = iota
	// FinalSigmaMin ends at sigma_0 of the training schedule. diffusers "sigma_min".
	FinalSigmaMin
)

var finalSigmasNames = [...]string{FinalZero: "zero", FinalSigmaMin: "sigma_min"}

func (f FinalSigmas) String() string { return enumString(finalSigmasNames[:], int(f), "FinalSigmas") }

// MarshalText encodes diffusers' name.
func (f FinalSigmas) MarshalText() ([]byte, error) {
	return enumMarshal(finalSigmasNames[:], int(f), "final_sigmas_type")
}

// UnmarshalText decodes diffusers' name.
func (f *FinalSigmas) UnmarshalText(b []byte) error {
	return enumUnmarshal(finalSigmasNames[:], (*int)(f), b, "final_sigmas_type")
}

func enumString(names []string, v int, typ string) string {
	if v >= 0 && v < len(names) {
		return names[v]
	}
	return fmt.Sprintf("%s(%d)", typ, v)
}

func enumMarshal(names []string, v int, field string) ([]byte, error) {
	if v < 0 || v >= len(names) {
		return nil, fmt.Errorf("sampler: invalid %s %d (valid: %s)", field, v, quoted(names))
	}
	return []byte(names[v]), nil
}

func enumUnmarshal(names []string, dst *int, b []byte, field string) error {
	if i := slices.Index(names, string(b)); i >= 0 {
		*dst = i
		return nil
	}
	return fmt.Errorf("sampler: unsupported %s %q (supported: %s)", field, b, quoted(names))
}

// finalSigma returns the noise level after the last step.
func (f FinalSigmas) sigma(table []float64) float64 {
	if f == FinalSigmaMin {
		return table[0]
	}
	return 0
}

// euler-family init_noise_sigma: the largest sigma, or sqrt(sigma^2 + 1) of it for leading spacing
// (diffusers' init_noise_sigma of EulerDiscreteScheduler, EulerAncestralDiscreteScheduler and
// HeunDiscreteScheduler).
func initNoiseSigma(sigmas []float64, spacing schedule.Spacing) float64 {
	m := slices.Max(sigmas)
	if spacing == schedule.Linspace || spacing == schedule.Trailing {
		return m
	}
	return math.Sqrt(m*m + 1)
}

// sigmaX0 returns the x0 weights (A, B) of x0Hat = A x + B m for a model output m of p at noise level
// sigma, in the scaled space of the Euler and Heun samplers (x = x0 + sigma eps):
//
//	epsilon: x0Hat = x - sigma m
//	sample:  x0Hat = m
//	v:       x0Hat = x/(sigma^2 + 1) - sigma/sqrt(sigma^2 + 1) m
func sigmaX0(p Prediction, sigma float64) (a, b float64) {
	switch p {
	case Sample:
		return 0, 1
	case V:
		return 1 / (sigma*sigma + 1), -sigma / math.Sqrt(sigma*sigma+1)
	default:
		return 1, -sigma
	}
}

// eulerSigmas are the settings shared by the Euler and Heun schedulers' sigma lists.
type eulerSigmas struct {
	spacing  schedule.Spacing
	offset   int
	karras   bool
	final    FinalSigmas
	sigmaMin float64 // 0: unset
	sigmaMax float64
}

// list returns the timesteps (fractional) and the n+1 sigmas of a run of n steps.
func (e eulerSigmas) list(s *schedule.Schedule, n int) (ts, sigmas []float64, err error) {
	if s == nil || s.T() == 0 {
		return nil, nil, fmt.Errorf("sampler: no schedule; build one with schedule.New")
	}
	ts, err = eulerTimesteps(s.T(), n, e.spacing, e.offset)
	if err != nil {
		return nil, nil, err
	}
	table := sigmaTable(s)
	logSigmas := make([]float64, len(table))
	for i, v := range table {
		logSigmas[i] = math.Log(v)
	}
	sigmas = make([]float64, n)
	for i, t := range ts {
		sigmas[i] = interp(t, table)
	}
	if e.karras {
		lo, hi := sigmas[n-1], sigmas[0]
		if e.sigmaMin > 0 {
			lo = e.sigmaMin
		}
		if e.sigmaMax > 0 {
			hi = e.sigmaMax
		}
		sigmas = karrasSigmas(lo, hi, n)
		for i, sg := range sigmas {
			ts[i] = sigmaToT(sg, logSigmas)
		}
	}
	return ts, append(sigmas, e.final.sigma(table)), nil
}
