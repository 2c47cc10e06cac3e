// Package toy is the lesson's first diffusion model: a small MLP that learns a 2-D point cloud (the
// swiss roll, two moons, a ring of Gaussians), trained with the DDPM objective and sampled with the
// DDPM sampler, both from the packages train and sampler (Ho et al. 2020, arXiv:2006.11239v2,
// Algorithms 1 and 2):
//
//	training:  x0 ~ data, t ~ U{0..T-1}, eps ~ N(0, I)
//	           x_t  = sqrt(alphaBar_t) x0 + sqrt(1 - alphaBar_t) eps                       (Eq. 4)
//	           loss = |eps - MLP(x_t, t)|^2                                                (Eq. 14)
//	sampling:  x_T ~ N(0, I); for t = T-1 .. 0:
//	           x0Hat  = (x_t - sqrt(1 - alphaBar_t) MLP(x_t, t)) / sqrt(alphaBar_t)
//	           x_prev = sqrt(alphaBar_prev) beta_t / (1 - alphaBar_t) x0Hat
//	                  + sqrt(alpha_t) (1 - alphaBar_prev) / (1 - alphaBar_t) x_t + sigma_t z    (Eq. 7)
//	           sigma_t^2 = (1 - alphaBar_prev) / (1 - alphaBar_t) beta_t, and z = 0 at t = 0
//
// Everything runs on a GoMLX backend; the gradient is GoMLX's reverse-mode autodiff through every
// layer (with package nn's matmul-shaped gradient for the linear layers).
//
// # Choices
//
// T = 200 linear betas from 5e-4 to 0.1: diffusers' 1e-4 .. 0.02 for T = 1000, scaled by 1000/T as
// improved DDPM does (Nichol & Dhariwal 2021, arXiv:2102.09672v2), so that x_T is noise (alphaBar_T
// = 3e-5; unscaled it would be 0.13). The sampler's variance is beta-tilde (fixed_small) and x0Hat
// is not clipped: the data are not images in [-1, 1].
//
// SiLU, not ReLU: in a sweep of the same recipe (PyTorch on an H200, two seeds each, 3,000 steps,
// batch 128) ReLU's samples lay farther from the data (mean nearest-neighbour distance 0.043
// against 0.037 with SiLU), and SiLU's noise prediction is smooth in x_t.
//
// The MLP scales x_t by 20 before its first layer (MLP.InputScale). The lesson's network as written
// learns the roll slowly: in that sweep, after 3,000 steps at batch 128 its samples' mean distance
// to the nearest training point was 0.094 (a blob; a fresh draw of the data gives 0.007), 0.052
// after 20,000 steps (a ring). With x_t scaled by 10 it was 0.037 after 3,000 steps, by 30 0.035,
// and 0.016 after 30,000 steps. Larger batches helped more than more steps of the same cost (batch
// 256 for 3,000 steps: 0.028; batch 64 for 6,000: 0.041); the EMA decay (0.99 to 0.999), Adam's
// beta2, twice the width and the scale of t in the embedding made no difference. DefaultConfig
// trains 2,000 steps at batch 256 with learning rate 5e-3: on the pure-Go backend (2 cores, an
// otherwise idle machine) 29 s of training and 8 s of sampling, with samples 0.030 from the nearest
// training point (a fresh draw: 0.0073). The roll and its inner turn come out sharp; the outer arm,
// farthest from the origin, stays blurred.
//
// Frames of the reverse process are spaced evenly in the noise level sqrt(1 - alphaBar_t), not in
// t (FrameTimes): the cloud changes little until the last quarter of the steps.
package toy
