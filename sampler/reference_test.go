package sampler

import (
	"math"
)

// Slow, obvious references for the steps, written in the order of operations of diffusers'
// DDPMScheduler.step and DDIMScheduler.step, one element at a time. They are generic in the float type:
// in float32 with diffusers' own float32 alphas_cumprod table they emulate diffusers' arithmetic (every
// tensor op rounds to float32), in float64 they are the exact-math reference that the fast coefficient
// form (Coefficients, Step, GraphStep) is tested against.

type float interface{ ~float32 | ~float64 }

func pow05[F float](x F) F { return F(math.Sqrt(float64(x))) }

// refX0Eps is diffusers' "compute predicted original sample" block, before clipping.
func refX0Eps[F float](p Prediction, sample, modelOutput, alphaProdT F) (x0, eps F) {
	betaProdT := 1 - alphaProdT
	switch p {
	case Epsilon:
		x0 = (sample - pow05(betaProdT)*modelOutput) / pow05(alphaProdT)
		eps = modelOutput
	case Sample:
		x0 = modelOutput
		eps = (sample - pow05(alphaProdT)*x0) / pow05(betaProdT)
	case V:
		x0 = pow05(alphaProdT)*sample - pow05(betaProdT)*modelOutput
		eps = pow05(alphaProdT)*modelOutput + pow05(betaProdT)*sample
	default:
		panic("bad prediction")
	}
	return x0, eps
}

func refClip[F float](x F, on bool, r float64) F {
	if !on {
		return x
	}
	return min(max(x, F(-r)), F(r))
}

// refDDPMStep is DDPMScheduler.step(model_output, t, sample) with step noise z. timesteps is the run of
// set_timesteps (previous_timestep is the next one, -1 after the last); nil means set_timesteps was not
// called (previous_timestep is t - 1).
func refDDPMStep[F float](alphasCumprod []F, c DDPM, timesteps []int, t int, sample, modelOutput, z []F) (prevSample, predOriginal []F) {
	prevT := t - 1
	for i, v := range timesteps {
		if v == t {
			prevT = -1
			if i+1 < len(timesteps) {
				prevT = timesteps[i+1]
			}
		}
	}
	alphaProdT := alphasCumprod[t]
	alphaProdTPrev := F(1)
	if prevT >= 0 {
		alphaProdTPrev = alphasCumprod[prevT]
	}
	betaProdT := 1 - alphaProdT
	betaProdTPrev := 1 - alphaProdTPrev
	currentAlphaT := alphaProdT / alphaProdTPrev
	currentBetaT := 1 - currentAlphaT

	predOriginalCoeff := (pow05(alphaProdTPrev) * currentBetaT) / betaProdT
	currentSampleCoeff := pow05(currentAlphaT) * betaProdTPrev / betaProdT
	var std F // _get_variance, then its square root
	if t > 0 {
		variance := (1 - alphaProdTPrev) / (1 - alphaProdT) * currentBetaT
		variance = max(variance, F(1e-20))
		switch c.Variance {
		case FixedSmall:
			std = pow05(variance)
		case FixedSmallLog:
			logVariance := F(math.Log(float64(variance)))
			std = F(math.Exp(float64(0.5 * logVariance)))
		case FixedLarge:
			std = pow05(currentBetaT)
		}
	}

	prevSample, predOriginal = make([]F, len(sample)), make([]F, len(sample))
	for i := range sample {
		x0, _ := refX0Eps(c.Prediction, sample[i], modelOutput[i], alphaProdT)
		x0 = refClip(x0, c.ClipSample, c.ClipSampleRange)
		predPrev := predOriginalCoeff*x0 + currentSampleCoeff*sample[i]
		if t > 0 {
			predPrev += std * z[i]
		}
		prevSample[i], predOriginal[i] = predPrev, x0
	}
	return prevSample, predOriginal
}

// refDDIMStep is DDIMScheduler.step(model_output, t, sample, eta, variance_noise=z) after set_timesteps(n),
// with T = len(alphasCumprod).
func refDDIMStep[F float](alphasCumprod []F, c DDIM, n, t int, sample, modelOutput, z []F) (prevSample, predOriginal []F) {
	prevTimestep := t - len(alphasCumprod)/n
	alphaProdT := alphasCumprod[t]
	finalAlphaCumprod := alphasCumprod[0]
	if c.SetAlphaToOne {
		finalAlphaCumprod = 1
	}
	alphaProdTPrev := finalAlphaCumprod
	if prevTimestep >= 0 {
		alphaProdTPrev = alphasCumprod[prevTimestep]
	}
	betaProdT := 1 - alphaProdT
	betaProdTPrev := 1 - alphaProdTPrev
	variance := (betaProdTPrev / betaProdT) * (1 - alphaProdT/alphaProdTPrev) // _get_variance
	stdDevT := F(c.Eta) * pow05(variance)
	directionCoeff := pow05(1 - alphaProdTPrev - stdDevT*stdDevT)

	prevSample, predOriginal = make([]F, len(sample)), make([]F, len(sample))
	for i := range sample {
		x0, eps := refX0Eps(c.Prediction, sample[i], modelOutput[i], alphaProdT)
		x0 = refClip(x0, c.ClipSample, c.ClipSampleRange)
		direction := directionCoeff * eps
		prev := pow05(alphaProdTPrev)*x0 + direction
		if c.Eta > 0 {
			prev += stdDevT * z[i]
		}
		prevSample[i], predOriginal[i] = prev, x0
	}
	return prevSample, predOriginal
}
