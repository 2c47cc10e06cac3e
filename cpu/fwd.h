// The forward pass's element loops (NHWC, float32), each a plain loop over contiguous memory run
// through ddpm_parallel_for. Shapes in the comments; n = batch, hw = height*width, c = channels.
#ifndef DDPM_CPU_FWD_H
#define DDPM_CPU_FWD_H

// ddpm_groupnorm_fwd is GroupNorm over x [n,hw,c] with g groups, optionally after adding a per-sample
// bias addb [n,c] (row stride addb_stride; the time embedding of ResnetBlock2D), optionally followed by
// the scale-shift y*(1+scale)+shift (scale, shift [n,c], row stride ss_stride) and by SiLU:
//
//	y = silu(((x + addb - mean) * rstd * gamma + beta) * (1 + scale) + shift)
//
// mean and rstd [n,g] receive the statistics (for the backward pass); ab is scratch [2*n*c].
void ddpm_groupnorm_fwd(const float *x, long n, long hw, long c, long g, const float *addb, long addb_stride,
                        const float *gamma, const float *beta, const float *scale, const float *shift, long ss_stride,
                        float eps, int silu, float *y, float *mean, float *rstd, float *ab);

// ddpm_softmax_rows replaces each of the rows of x [rows, len] by softmax(scale * row).
void ddpm_softmax_rows(float *x, long rows, long len, float scale);

// ddpm_upsample2x repeats every pixel of x [n,h,w,c] into a 2x2 block of y [n,2h,2w,c].
void ddpm_upsample2x(const float *x, long n, long h, long w, long c, float *y);

// ddpm_concat_c concatenates a [p,ca] and b [p,cb] along channels into y [p,ca+cb] (p = n*hw).
void ddpm_concat_c(const float *a, long ca, const float *b, long cb, long p, float *y);

// ddpm_nchw_to_nhwc and ddpm_nhwc_to_nchw transpose [n,c,hw] <-> [n,hw,c].
void ddpm_nchw_to_nhwc(const float *x, long n, long c, long hw, float *y);
void ddpm_nhwc_to_nchw(const float *x, long n, long c, long hw, float *y);

// ddpm_scale multiplies x [len] by s in place.
void ddpm_scale(float *x, long len, float s);

#endif
