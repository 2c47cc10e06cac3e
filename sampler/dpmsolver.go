package sampler

import (
	"fmt"
	"math"

	"github.com/ddpm/ddpm/schedule"
)

// Algorithm is DPM-Solver's algorithm_type. The zero value is DPMSolverPP.
type Algorithm int

const (
	// DPMSolverPP is the multistep DPM-Solver++ of Lu et al. 2022 (arXiv:2211.01095v2, Algorithm 2), an
	// ODE solver on the data prediction. diffusers "dpmsolver++".
	DPMSolverPP Algorithm = iota
	// SDEDPMSolverPP is its SDE variant (same paper, Sec. 5 and Appendix; diffusers "sde-dpmsolver++"),
	// which adds fresh noise at every step.
	SDEDPMSolverPP
)

var algorithmNames = [...]string{DPMSolverPP: "dpmsolver++", SDEDPMSolverPP: "sde-dpmsolver++"}

func (a Algorithm) String() string { return enumString(algorithmNames[:], int(a), "Algorithm") }

// MarshalText encodes diffusers' name.
func (a Algorithm) MarshalText() ([]byte, error) {
	return enumMarshal(algorithmNames[:], int(a), "algorithm_type")
}

// UnmarshalText decodes diffusers' name. The noise-prediction variants "dpmsolver" and "sde-dpmsolver"
// are not supported.
func (a *Algorithm) UnmarshalText(b []byte) error {
	return enumUnmarshal(algorithmNames[:], (*int)(a), b, "algorithm_type")
}

// SolverType is DPM-Solver's second-order rule (diffusers solver_type). The zero value is Midpoint.
type SolverType int

const (
	Midpoint SolverType = iota // diffusers "midpoint"
	HeunType                   // diffusers "heun"
)

var solverTypeNames = [...]string{Midpoint: "midpoint", HeunType: "heun"}

func (s SolverType) String() string { return enumString(solverTypeNames[:], int(s), "SolverType") }

// MarshalText encodes diffusers' name.
func (s SolverType) MarshalText() ([]byte, error) {
	return enumMarshal(solverTypeNames[:], int(s), "solver_type")
}

// UnmarshalText decodes diffusers' name.
func (s *SolverType) UnmarshalText(b []byte) error {
	return enumUnmarshal(solverTypeNames[:], (*int)(s), b, "solver_type")
}

// DPMSolver configures diffusers' DPMSolverMultistepScheduler with algorithm_type dpmsolver++ or
// sde-dpmsolver++ (Lu et al. 2022, arXiv:2211.01095v2). JSON names are diffusers'. Not supported:
// thresholding, the noise-prediction algorithms, use_lu_lambdas, use_exponential_sigmas, use_beta_sigmas,
// use_flow_sigmas, variance_type learned.
//
// With sigma from the run's list, alpha_s = 1/sqrt(sigma^2 + 1), sigma_s = sigma alpha_s and
// lambda = log(alpha_s/sigma_s), the model output converts to the data prediction D0 = x0Hat (Convert at
// alphaBar = alpha_s^2), and with h = lambda_next - lambda, the next sample is (Eq. 8-9 of the paper,
// diffusers' dpm_solver_first_order_update, multistep_dpm_solver_second/third_order_update):
//
//	order 1:  x' = (sigma_t/sigma_s) x - alpha_t (e^-h - 1) D0
//	order 2:  ... - 1/2 alpha_t (e^-h - 1) D1            (midpoint; heun: + alpha_t ((e^-h - 1)/h + 1) D1)
//	order 3:  ... + alpha_t ((e^-h - 1)/h + 1) D1 - alpha_t ((e^-h - 1 + h)/h^2 - 1/2) D2
//
// where D1 and D2 are divided differences of the current and previous data predictions (kept in the
// saved buffers h1, h2), and for the SDE variant x' = (sigma_t/sigma_s) e^-h x + alpha_t (1 - e^-2h) D0
// + ... + sigma_t sqrt(1 - e^-2h) z. Every step is linear in (x, D0, h1, h2, z): one Coefficients row.
type DPMSolver struct {
	Prediction      Prediction  `json:"prediction_type"`
	Algorithm       Algorithm   `json:"algorithm_type"`
	Order           int         `json:"solver_order"`
	SolverType      SolverType  `json:"solver_type"`
	LowerOrderFinal bool        `json:"lower_order_final"`
	EulerAtFinal    bool        `json:"euler_at_final"`
	Karras          bool        `json:"use_karras_sigmas"`
	FinalSigmas     FinalSigmas `json:"final_sigmas_type"`
	// LambdaMinClipped drops the timesteps whose lambda is below it (diffusers lambda_min_clipped, default
	// -Inf: none; suggested -5.1 for the cosine schedule).
	LambdaMinClipped float64          `json:"-"`
	Spacing          schedule.Spacing `json:"timestep_spacing"`
	StepsOffset      int              `json:"steps_offset"`
}

// DefaultDPMSolver returns diffusers' DPMSolverMultistepScheduler defaults: epsilon, dpmsolver++, order 2,
// midpoint, lower_order_final on, euler_at_final off, no Karras sigmas, final sigma zero, no lambda
// clipping, linspace spacing.
func DefaultDPMSolver() DPMSolver {
	return DPMSolver{Prediction: Epsilon, Order: 2, LowerOrderFinal: true, LambdaMinClipped: math.Inf(-1),
		Spacing: schedule.Linspace}
}

// Validate reports whether c is usable.
func (c DPMSolver) Validate() error {
	if err := c.Prediction.validate(); err != nil {
		return err
	}
	if c.Order < 1 || c.Order > 3 {
		return fmt.Errorf("sampler: DPM-Solver solver_order %d; want 1, 2 or 3", c.Order)
	}
	if _, err := c.Algorithm.MarshalText(); err != nil {
		return err
	}
	if _, err := c.SolverType.MarshalText(); err != nil {
		return err
	}
	if _, err := c.FinalSigmas.MarshalText(); err != nil {
		return err
	}
	return nil
}

// Sigmas returns the timesteps (integers, as float64) and the n+1 noise levels of a run of n steps on s.
func (c DPMSolver) Sigmas(s *schedule.Schedule, n int) (timesteps, sigmas []float64, err error) {
	ts, sg, err := c.list(s, n)
	if err != nil {
		return nil, nil, err
	}
	timesteps = make([]float64, len(ts))
	for i, t := range ts {
		timesteps[i] = float64(t)
	}
	return timesteps, sg, nil
}

func (c DPMSolver) list(s *schedule.Schedule, n int) ([]int, []float64, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	if s == nil || s.T() == 0 {
		return nil, nil, fmt.Errorf("sampler: no schedule; build one with schedule.New")
	}
	T := s.T()
	table := sigmaTable(s)
	// last = T - #{t : lambda_t < lambda_min_clipped}, lambda_t = log(sqrt(alphaBar)/sqrt(1 - alphaBar)).
	last := T
	for _, sg := range table {
		if -math.Log(sg) < c.LambdaMinClipped {
			last--
		}
	}
	ts, err := dpmTimesteps(T, last, n, c.Spacing, c.StepsOffset)
	if err != nil {
		return nil, nil, err
	}
	var sigmas []float64
	if c.Karras {
		sigmas = karrasSigmas(table[0], table[T-1], n)
		logSigmas := make([]float64, T)
		for i, v := range table {
			logSigmas[i] = math.Log(v)
		}
		ts = make([]int, n)
		for i, sg := range sigmas {
			ts[i] = roundTimestep(sigmaToT(sg, logSigmas))
		}
	} else {
		sigmas = make([]float64, len(ts))
		for i, t := range ts {
			sigmas[i] = table[t]
		}
	}
	return ts, append(sigmas, c.FinalSigmas.sigma(table)), nil
}

// Plan returns the steps of a DPM-Solver run of n steps on s (n model evaluations; with trailing spacing
// diffusers may list one step more or fewer), from a unit normal x_T.
func (c DPMSolver) Plan(s *schedule.Schedule, n int) (Plan, error) {
	ts, sg, err := c.list(s, n)
	if err != nil {
		return nil, err
	}
	n = len(ts)
	alphaSigma := func(sigma float64) (alpha, sig, lambda float64) {
		alpha = 1 / math.Sqrt(sigma*sigma+1)
		sig = sigma * alpha
		return alpha, sig, math.Log(alpha) - math.Log(sig)
	}
	sde := c.Algorithm == SDEDPMSolverPP
	p := make(Plan, n)
	for i := range p {
		conv := c.Prediction.Convert(1 / (sg[i]*sg[i] + 1))
		k := Coefficients{A: conv.X0Xt, B: conv.X0M}
		k.Save[0][1], k.Save[1][2] = 1, 1 // h1 = this x0Hat, h2 = the previous one

		lowerFinal := i == n-1 && (c.EulerAtFinal || (c.LowerOrderFinal && n < 15) || c.FinalSigmas == FinalZero)
		lowerSecond := i == n-2 && c.LowerOrderFinal && n < 15
		lowerNums := min(i, c.Order) // diffusers' lower_order_nums before this step
		order := 3
		switch {
		case c.Order == 1 || lowerNums < 1 || lowerFinal:
			order = 1
		case c.Order == 2 || lowerNums < 2 || lowerSecond:
			order = 2
		}

		alphaT, sigmaT, lambdaT := alphaSigma(sg[i+1])
		_, sigmaS0, lambdaS0 := alphaSigma(sg[i])
		if sg[i+1] == 0 { // the last step to sigma = 0: lambda = +Inf, x' = D0
			k.C = 1
			p[i] = PlanStep{T: ts[i], Coef: k}
			continue
		}
		h := lambdaT - lambdaS0
		em, em2 := math.Expm1(-h), -math.Expm1(-2*h) // e^-h - 1, 1 - e^-2h
		// x' = ax x + c[0] m0 + c[1] m1 + c[2] m2, with m0 = x0Hat, m1 = h1, m2 = h2.
		var ax float64
		var c0, c1, c2 float64 // weights of D0, D1, D2
		if sde {
			ax = sigmaT / sigmaS0 * math.Exp(-h)
			c0 = alphaT * em2
			k.Sigma = sigmaT * math.Sqrt(em2)
		} else {
			ax = sigmaT / sigmaS0
			c0 = -alphaT * em
		}
		var w [3]float64 // weights of m0, m1, m2
		w[0] = c0
		switch order {
		case 2:
			_, _, lambdaS1 := alphaSigma(sg[i-1])
			r0 := (lambdaS0 - lambdaS1) / h
			switch {
			case !sde && c.SolverType == Midpoint:
				c1 = -0.5 * alphaT * em
			case !sde && c.SolverType == HeunType:
				c1 = alphaT * (em/h + 1)
			case sde && c.SolverType == Midpoint:
				c1 = 0.5 * alphaT * em2
			default:
				c1 = alphaT * (em2/(-2*h) + 1)
			}
			// D1 = (m0 - m1)/r0
			w[0] += c1 / r0
			w[1] -= c1 / r0
		case 3:
			_, _, lambdaS1 := alphaSigma(sg[i-1])
			_, _, lambdaS2 := alphaSigma(sg[i-2])
			r0, r1 := (lambdaS0-lambdaS1)/h, (lambdaS1-lambdaS2)/h
			if sde {
				c1 = alphaT * (em2/(-2*h) + 1)
				c2 = alphaT * ((em2-2*h)/(4*h*h) - 0.5)
			} else {
				c1 = alphaT * (em/h + 1)
				c2 = -alphaT * ((em+h)/(h*h) - 0.5)
			}
			// D1_0 = (m0 - m1)/r0, D1_1 = (m1 - m2)/r1, D1 = D1_0 + r0/(r0 + r1) (D1_0 - D1_1),
			// D2 = (D1_0 - D1_1)/(r0 + r1).
			d10 := [3]float64{1 / r0, -1 / r0, 0}
			d11 := [3]float64{0, 1 / r1, -1 / r1}
			for j := range w {
				diff := d10[j] - d11[j]
				w[j] += c1*(d10[j]+r0/(r0+r1)*diff) + c2*diff/(r0+r1)
			}
		}
		k.D, k.C, k.H1, k.H2 = ax, w[0], w[1], w[2]
		p[i] = PlanStep{T: ts[i], Coef: k}
	}
	return p, nil
}
