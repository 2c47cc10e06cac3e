// ops.h: the UNet's element-wise and normalization layers on the CPU, forward and backward side by
// side (llm.c style). Activations are float32, channels last: [N, H*W, C] (NHWC). Every entry point
// parallelises itself with ddpm_parallel_for; call them from the engine's one thread.
#ifndef DDPM_OPS_H
#define DDPM_OPS_H

// The engine's one parallel-for (parallel.c): fn(ctx, begin, end) over a split of [0, n).
typedef void (*ddpm_range_fn)(void *ctx, long begin, long end);
void ddpm_parallel_for(long n, ddpm_range_fn fn, void *ctx);

// GroupNorm (torch.nn.GroupNorm, biased variance) of x + bias, optionally followed by SiLU:
//   x [N,HW,C], bias [N,C] or NULL (ResnetBlock2D's time embedding, added before norm2),
//   gamma, beta [C], y [N,HW,C] (may alias x), mean, rstd [N,G] saved for the backward.
//   y = silu?( ((x + bias) - mean_g) * rstd_g * gamma + beta ),  rstd_g = 1/sqrt(var_g + eps)
void ddpm_groupnorm_forward(float *y, float *mean, float *rstd, const float *x, const float *bias,
                            const float *gamma, const float *beta, int N, int HW, int C, int G,
                            float eps, int silu);
// dx [N,HW,C] (may alias dy), dbias [N,C] or NULL, dgamma, dbeta [C] (overwritten),
// scratch 2*N*C floats. x, bias, gamma, beta, mean, rstd as given to / returned by the forward.
void ddpm_groupnorm_backward(float *dx, float *dbias, float *dgamma, float *dbeta, float *scratch,
                             const float *dy, const float *x, const float *bias, const float *gamma,
                             const float *beta, const float *mean, const float *rstd, int N, int HW,
                             int C, int G, int silu);

// SiLU y = x * sigmoid(x), n values (y may alias x); backward dx = dy * s (1 + x (1 - s)).
void ddpm_silu_forward(float *y, const float *x, long n);
void ddpm_silu_backward(float *dx, const float *dy, const float *x, long n);

// Softmax over each row of x [rows, L] of scale * x (the attention scores' 1/sqrt(d) folded in),
// max subtracted first; y may alias x. Backward: dx = scale * y * (dy - sum(dy * y)).
void ddpm_softmax_forward(float *y, const float *x, long rows, int L, float scale);
void ddpm_softmax_backward(float *dx, const float *dy, const float *y, long rows, int L, float scale);

// Nearest 2x upsampling: x [N,H,W,C] -> y [N,2H,2W,C]; backward sums each 2x2 block of dy.
void ddpm_upsample2x_forward(float *y, const float *x, int N, int H, int W, int C);
void ddpm_upsample2x_backward(float *dx, const float *dy, int N, int H, int W, int C);

// Channel concatenation of a [P,Ca] and b [P,Cb] into y [P,Ca+Cb] (P = N*H*W); backward splits.
void ddpm_concat_forward(float *y, const float *a, const float *b, long P, int Ca, int Cb);
void ddpm_concat_backward(float *da, float *db, const float *dy, long P, int Ca, int Cb);

// Residual y = (a + b) / s (s = 1: a plain sum); y may alias a or b. Backward: da = db = dy / s.
void ddpm_add_forward(float *y, const float *a, const float *b, long n, float s);
void ddpm_scale_backward(float *dx, const float *dy, long n, float s);

// Column sums: out[c] = sum over m of x [M,C] (the bias gradient of a linear or a convolution).
void ddpm_colsum(float *out, const float *x, long M, int C);

// Sinusoidal timestep embedding: emb [N,dim] = [sin(t f), cos(t f)] ([cos, sin] when flip),
// t [N], freqs [dim/2] (nn.TimestepFrequencies), a zero last column when dim is odd.
void ddpm_timestep_embedding(float *emb, const float *t, const float *freqs, int N, int dim, int flip);

// Mean squared error mean((pred - target)^2) over n values; writes its gradient
// dpred = 2 (pred - target) / n and returns the loss.
double ddpm_mse_forward_backward(float *dpred, const float *pred, const float *target, long n);

// AdamW (torch.optim.AdamW) over n flat values, as train/train.go's graph computes it in float32:
//   p = p * wdMul;  m = b1 m + omb1 g;  v = b2 v + omb2 g^2;  p = p - (m / bc1) / (sqrt(v / bc2) + eps) * lr
// with wdMul = 1 - lr wd, omb = 1 - b, bc = 1 - b^n given by the caller (rounded to float32 as there).
// gscale multiplies g first (gradient clipping; 1: none).
void ddpm_adamw(float *p, float *m, float *v, const float *g, long n, float lr, float wdMul,
                float b1, float omb1, float b2, float omb2, float bc1, float bc2, float eps,
                float gscale);
// EMA: ema = ema * d + p * omd (omd = 1 - d, in float32).
void ddpm_ema(float *ema, const float *p, long n, float d, float omd);
// Sum of squares of n values (for gradient clipping), accumulated in double.
double ddpm_sumsq(const float *x, long n);

#endif
