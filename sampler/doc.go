// Package sampler turns a trained denoiser into samples: the DDPM ancestral step, the DDIM step, the fast
// samplers of diffusers (DPM-Solver++ and its SDE variant, Euler, Euler ancestral, Heun, Karras sigmas),
// the conversions between what a model predicts (eps, x0 or v) and what a step needs, and two loops over
// one plan of steps: Run (and Runner), which keeps the whole sampling run on the compute device, and
// RunHost, for a denoiser computed outside GoMLX.
//
// Papers, in the versions read: Ho et al. 2020, "Denoising Diffusion Probabilistic Models",
// arXiv:2006.11239v2 (DDPM); Song et al. 2021, "Denoising Diffusion Implicit Models", arXiv:2010.02502v4
// (DDIM); Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models",
// arXiv:2202.00512v2 (v-prediction). The numbers follow Hugging Face diffusers' DDPMScheduler and
// DDIMScheduler (v0.40), which the golden tests pin, including their quirks (noted where they matter).
//
// # Predictions
//
// With a = sqrt(alphaBar_t), b = sqrt(1 - alphaBar_t) and x_t = a x0 + b eps, a model output m is one of
//
//	epsilon: m = eps             x0Hat = (x_t - b m)/a     epsHat = m
//	sample:  m = x0              x0Hat = m                 epsHat = (x_t - a m)/b
//	v:       m = a eps - b x0    x0Hat = a x_t - b m       epsHat = b x_t + a m
//
// (the v rows use a^2 + b^2 = 1). Each is linear in (x_t, m); Prediction.Convert gives the weights, and is
// the only place where these formulas live.
//
// # One form for every step
//
// Every step below, for every prediction type, is
//
//	x0Hat  = clip(A x_t + B m)                 (clip to [-r, r] only when enabled)
//	x_prev = C x0Hat + D x_t + E m + sigma z
//
// with scalars A..E, sigma computed per step on the host in float64 (Coefficients). (A, B) are Convert's
// x0 weights. Let abT = alphaBar_t and abP = alphaBar_prev, with diffusers' rules for prev: DDPM steps to
// the run's next timestep (-1 after the last; schedule.PreviousTimestep), DDIM to t - floor(T/n) for n
// sampling steps (not always the next timestep with trailing or linspace spacing). Past the end (prev < 0)
// abP = 1, or for DDIM without set_alpha_to_one alphaBar_0.
//
// DDPM (Ho et al. 2020, Eq. 6-7; for strided runs alpha and beta are those of the jump t -> prev):
//
//	alpha   = abT/abP,  beta = 1 - alpha
//	C       = sqrt(abP) beta / (1 - abT)                  (Eq. 7, coefficient of x0Hat in mu-tilde)
//	D       = sqrt(alpha) (1 - abP) / (1 - abT)           (Eq. 7, coefficient of x_t)
//	E       = 0
//	sigma^2 = max((1 - abP)/(1 - abT) beta, 1e-20)        fixed_small, fixed_small_log (beta-tilde, Eq. 7)
//	sigma^2 = beta                                        fixed_large (Sec. 3.2; diffusers uses the jump's beta)
//	sigma   = 0 when t = 0                                (diffusers adds noise iff t > 0)
//
// DDIM (Song et al. 2021, Eq. 12 and 16, diffusers with use_clipped_model_output false): epsHat comes from
// x_t and m, not from the clipped x0Hat, epsHat = F x_t + G m with (F, G) Convert's eps weights, so
//
//	sigma = eta sqrt((1 - abP)/(1 - abT)) sqrt(1 - abT/abP)   (Eq. 16)
//	dir   = sqrt(max(1 - abP - sigma^2, 0))                   ("direction pointing to x_t", Eq. 12)
//	C     = sqrt(abP),  D = dir F,  E = dir G
//
// A step is thus a pure function of (x_t, m, t, z): Step applies it on the host, GraphStep inside a graph,
// where the coefficients are a float32 [7] input so that one compiled graph serves every step of a run.
// The slow references in the tests follow diffusers' order of operations; run in float32 on diffusers'
// float32 table they reproduce its recorded steps bit for bit, and the coefficient form is checked against
// them in float64.
//
// # The fast samplers
//
// DPMSolver, Euler, EulerAncestral and Heun (sigmas.go, dpmsolver.go, euler.go) follow diffusers'
// DPMSolverMultistepScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler and
// HeunDiscreteScheduler (v0.30-0.40): their timestep lists for each timestep_spacing, their sigmas
// (sigma_t = sqrt((1 - alphaBar_t)/alphaBar_t), interpolated at the timesteps, or Karras et al. 2022's
// rho = 7 ramp with use_karras_sigmas), final_sigmas_type, init_noise_sigma and scale_model_input. Each of
// their steps is linear in x_t, the model output, up to two earlier buffers and the noise, so it is one more
// row of the same form, widened (Coefficients):
//
//	m      = model(In x_t, t)
//	x0Hat  = clip(A x_t + B m)
//	x_prev = C x0Hat + D x_t + E m + H1 h1 + H2 h2 + Sigma z
//	h1', h2' = combinations of (x_t, x0Hat, h1, h2)
//
// where h1, h2 carry the previous data predictions of multistep DPM-Solver++ (orders 2 and 3: the divided
// differences D1, D2 are linear in them) or the sample and data prediction of Heun's first stage into its
// second. A plan starts from a unit normal x_T: its first step's weights of x_t include init_noise_sigma.
// One compiled graph thus serves every step of every sampler (the buffers are graph inputs and outputs
// only when a plan uses them, so DDPM and DDIM compile as before), and RunHost applies the same rows.
//
// Left out: thresholding (dynamic thresholding), the noise-prediction algorithms dpmsolver and
// sde-dpmsolver, use_lu_lambdas, exponential, beta and flow sigmas, Euler's interpolation_type log_linear
// and timestep_type continuous, Euler's s_churn (its step default 0 is what runs). Where diffusers feeds
// the model a fractional timestep (Euler and Heun with Karras sigmas or linspace spacing), the model here
// gets it rounded to the nearest integer: Denoiser takes int32 timesteps. For some step counts numpy's
// arange makes trailing spacing list one timestep too many, the last -1; as schedule.Timesteps, the n
// intended ones are kept.
//
// # Precision
//
// Tables and coefficients are float64 here, float32 in diffusers. At t <= 10 diffusers' float32
// 1 - alphaBar_t/alphaBar_prev (about 1e-4) keeps ~3 digits, so its steps differ from exact math by up to
// ~7e-5 relative there; elsewhere the two agree to ~3e-7. On the device the step runs in float32.
package sampler
