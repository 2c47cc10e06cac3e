package schedule

import (
	"fmt"
	"math"
)

// Spacing names how a sampler with n < T steps picks its timesteps among 0..T-1, with diffusers' names
// (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed", arXiv:2305.08891v4,
// Table 2). The zero value is Leading, diffusers' default.
type Spacing int

const (
	// Leading: t_i = i * (T / n) (integer division) + stepsOffset, i = n-1..0. diffusers "leading".
	Leading Spacing = iota
	// Trailing: t_i = round(T - i * T/n) - 1, i = 0..n-1 (starts at T-1). diffusers "trailing".
	Trailing
	// Linspace: round(linspace(0, T-1, n)), reversed (starts at T-1, ends at 0). diffusers "linspace".
	Linspace
)

var spacingNames = [...]string{Leading: "leading", Trailing: "trailing", Linspace: "linspace"}

// String returns diffusers' name of the spacing.
func (s Spacing) String() string {
	if s >= 0 && int(s) < len(spacingNames) {
		return spacingNames[s]
	}
	return fmt.Sprintf("Spacing(%d)", int(s))
}

// MarshalText encodes the spacing as diffusers' name.
func (s Spacing) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(spacingNames) {
		return nil, fmt.Errorf("schedule: invalid timestep spacing %d (valid: %s)", int(s), validNames(spacingNames[:]))
	}
	return []byte(spacingNames[s]), nil
}

// UnmarshalText decodes diffusers' name of a spacing.
func (s *Spacing) UnmarshalText(text []byte) error {
	for i, name := range spacingNames {
		if string(text) == name {
			*s = Spacing(i)
			return nil
		}
	}
	return fmt.Errorf("schedule: unknown timestep spacing %q (valid: %s)", text, validNames(spacingNames[:]))
}

// Timesteps returns the n timesteps, in descending order, that a sampler with n steps visits on a schedule of
// T training steps, as diffusers' DDPMScheduler.set_timesteps and DDIMScheduler.set_timesteps compute them
// (the two agree). stepsOffset (diffusers steps_offset) is added for Leading spacing only, as diffusers does.
//
//	leading:  t_i = i * floor(T/n) + stepsOffset,             i = n-1, ..., 0
//	trailing: t_i = round(T - i * T/n) - 1,                   i = 0, ..., n-1
//	linspace: t_i = round((n-1-i) * (T-1)/(n-1)),             i = 0, ..., n-1
//
// Rounding is half to even, with numpy's arithmetic. For some (T, n), e.g. (1000, 61), numpy's float arange
// makes diffusers' trailing spacing produce n+1 values, the last one -1; Timesteps returns the n intended
// ones.
func Timesteps(T, n int, spacing Spacing, stepsOffset int) ([]int, error) {
	if T < 1 {
		return nil, fmt.Errorf("schedule: %d training timesteps; want at least 1", T)
	}
	if n < 1 || n > T {
		return nil, fmt.Errorf("schedule: %d sampling steps with %d training timesteps; choose between 1 and %d", n, T, T)
	}
	ts := make([]int, n)
	switch spacing {
	case Leading:
		ratio := T / n
		for i := range ts {
			ts[i] = (n-1-i)*ratio + stepsOffset
		}
		if ts[0] >= T || ts[n-1] < 0 {
			return nil, fmt.Errorf("schedule: steps_offset %d moves leading timesteps %d..%d outside 0..%d; use a smaller offset",
				stepsOffset, ts[n-1], ts[0], T-1)
		}
	case Trailing:
		// numpy: np.arange(T, 0, -T/n) fills buffer[i] = start + i*delta with delta = (start + step) - start.
		step := -float64(T) / float64(n)
		start := float64(T)
		delta := (start + step) - start
		for i := range ts {
			ts[i] = int(math.RoundToEven(start+float64(float64(i)*delta))) - 1
		}
	case Linspace:
		// numpy: np.linspace(0, T-1, n) is i * ((T-1)/(n-1)), with the last value set to T-1 exactly.
		if n == 1 {
			ts[0] = 0
			break
		}
		step := float64(T-1) / float64(n-1)
		for i := range ts {
			ts[n-1-i] = int(math.RoundToEven(float64(i) * step))
		}
		ts[0] = T - 1
	default:
		return nil, fmt.Errorf("schedule: invalid timestep spacing %d (valid: %s)", int(spacing), validNames(spacingNames[:]))
	}
	return ts, nil
}

// PreviousTimestep returns the timestep that follows t in a run over timesteps (descending, as Timesteps
// returns them), or -1 after the last one, as diffusers' DDPMScheduler.previous_timestep computes it once
// set_timesteps has run. (Without set_timesteps diffusers steps t -> t-1, the same as the run of
// Timesteps(T, T, Leading, 0).) It is an error if t is not one of timesteps.
//
// DDIMScheduler uses another rule, t - floor(T/n), which for Trailing and Linspace spacings is not always
// the next timestep of the run; package sampler applies it for DDIM.
func PreviousTimestep(timesteps []int, t int) (int, error) {
	for i, v := range timesteps {
		if v == t {
			if i+1 < len(timesteps) {
				return timesteps[i+1], nil
			}
			return -1, nil
		}
	}
	return 0, fmt.Errorf("schedule: timestep %d is not one of the run's %d timesteps; step only from the timesteps that Timesteps returns",
		t, len(timesteps))
}
