// ops.c: the UNet's element-wise and normalization layers, forward and backward side by side.
// Plain loops over contiguous channels-last memory that gcc vectorizes; DDPM_KERNEL builds each hot
// loop twice (AVX2+FMA and baseline x86-64) and picks one when the library loads, so the binary runs
// on any x86-64. Compiled with fp-contract=off (the pragma below; cgo refuses the flag): no fused multiply-adds, so AdamW and EMA round
// exactly as train/train.go's graph does.
#pragma GCC optimize("fp-contract=off")
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DDPM_KERNEL __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DDPM_KERNEL
#endif

// A serial stand-in, replaced at link time by parallel.c's definition when it is there.
__attribute__((weak)) void ddpm_parallel_for(long n, ddpm_range_fn fn, void *ctx) {
  if (n > 0) fn(ctx, 0, n);
}

// Element-wise work is split in blocks of this many values.
#define BLOCK 16384L
static long nblocks(long n) { return (n + BLOCK - 1) / BLOCK; }

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

// ---------------------------------------------------------------------------------------------
// GroupNorm (+ bias before) (+ SiLU after).

typedef struct {
  float *y, *mean, *rstd, *dx, *dbias, *scratch;
  const float *x, *bias, *gamma, *beta, *dy, *cmean, *crstd;
  int N, HW, C, G, silu;
  float eps;
} gn_args;

// Forward of samples [n0, n1): x [N,HW,C] -> y [N,HW,C], mean and rstd [N,G].
DDPM_KERNEL static void gn_forward_range(void *ctx, long n0, long n1) {
  gn_args *a = ctx;
  const int HW = a->HW, C = a->C, G = a->G, cg = C / G;
  const double M = (double)HW * cg;
  float acc[C], shift[C], scale[C];
  for (long n = n0; n < n1; n++) {
    const float *x = a->x + n * HW * C;
    float *y = a->y + n * HW * C;
    const float *b = a->bias ? a->bias + n * C : NULL;
    for (int c = 0; c < C; c++) acc[c] = 0;
    for (int p = 0; p < HW; p++) {
      const float *xp = x + (long)p * C;
      for (int c = 0; c < C; c++) acc[c] += xp[c];
    }
    // Group means in double; shift[c] = bias[c] - mean_g, so that x + shift = (x + bias) - mean.
    for (int g = 0; g < G; g++) {
      double s = 0;
      for (int c = g * cg; c < (g + 1) * cg; c++) s += (double)acc[c] + (b ? (double)b[c] * HW : 0);
      float mu = (float)(s / M);
      a->mean[n * G + g] = mu;
      for (int c = g * cg; c < (g + 1) * cg; c++) shift[c] = (b ? b[c] : 0.0f) - mu;
    }
    for (int c = 0; c < C; c++) acc[c] = 0;
    for (int p = 0; p < HW; p++) {
      const float *xp = x + (long)p * C;
      for (int c = 0; c < C; c++) {
        float d = xp[c] + shift[c];
        acc[c] += d * d;
      }
    }
    for (int g = 0; g < G; g++) {
      double s = 0;
      for (int c = g * cg; c < (g + 1) * cg; c++) s += acc[c];
      float r = 1.0f / sqrtf((float)(s / M) + a->eps);
      a->rstd[n * G + g] = r;
      for (int c = g * cg; c < (g + 1) * cg; c++) scale[c] = r * a->gamma[c];
    }
    const float *beta = a->beta;
    for (int p = 0; p < HW; p++) {
      const float *xp = x + (long)p * C;
      float *yp = y + (long)p * C;
      if (a->silu) {
        for (int c = 0; c < C; c++) {
          float z = (xp[c] + shift[c]) * scale[c] + beta[c];
          yp[c] = z * sigmoidf(z);
        }
      } else {
        for (int c = 0; c < C; c++) yp[c] = (xp[c] + shift[c]) * scale[c] + beta[c];
      }
    }
  }
}

void ddpm_groupnorm_forward(float *y, float *mean, float *rstd, const float *x, const float *bias,
                            const float *gamma, const float *beta, int N, int HW, int C, int G,
                            float eps, int silu) {
  gn_args a = {.y = y, .mean = mean, .rstd = rstd, .x = x, .bias = bias, .gamma = gamma,
               .beta = beta, .N = N, .HW = HW, .C = C, .G = G, .silu = silu, .eps = eps};
  ddpm_parallel_for(N, gn_forward_range, &a);
}

// Backward of samples [n0, n1). With xhat = ((x + bias) - mean) * rstd and z = xhat * gamma + beta:
//   dz     = dy * silu'(z)            (dy itself without SiLU), silu'(z) = s (1 + z (1 - s))
//   dbeta  = sum dz,  dgamma = sum dz xhat                  (per channel, over positions)
//   dx     = rstd (gamma dz - mean_g(gamma dz) - xhat mean_g(gamma dz xhat))
//   dbias  = sum over positions of dx
// dz is kept in dx between the two passes; the per-sample dgamma, dbeta go to scratch.
DDPM_KERNEL static void gn_backward_range(void *ctx, long n0, long n1) {
  gn_args *a = ctx;
  const int HW = a->HW, C = a->C, G = a->G, cg = C / G;
  const double M = (double)HW * cg;
  const float *gamma = a->gamma, *beta = a->beta;
  float shift[C], r[C], m1[C], m2[C], db[C];
  for (long n = n0; n < n1; n++) {
    const float *x = a->x + n * HW * C, *dy = a->dy + n * HW * C;
    float *dx = a->dx + n * HW * C;
    const float *b = a->bias ? a->bias + n * C : NULL;
    float *A = a->scratch + n * C, *B = a->scratch + (a->N + n) * C;
    for (int g = 0; g < G; g++) {
      for (int c = g * cg; c < (g + 1) * cg; c++) {
        shift[c] = (b ? b[c] : 0.0f) - a->cmean[n * G + g];
        r[c] = a->crstd[n * G + g];
      }
    }
    for (int c = 0; c < C; c++) A[c] = B[c] = 0;
    for (int p = 0; p < HW; p++) {
      const float *xp = x + (long)p * C, *dyp = dy + (long)p * C;
      float *dxp = dx + (long)p * C;
      if (a->silu) {
        for (int c = 0; c < C; c++) {
          float xh = (xp[c] + shift[c]) * r[c];
          float z = xh * gamma[c] + beta[c];
          float s = sigmoidf(z);
          float dz = dyp[c] * (s * (1.0f + z * (1.0f - s)));
          dxp[c] = dz;
          A[c] += dz;
          B[c] += dz * xh;
        }
      } else {
        for (int c = 0; c < C; c++) {
          float xh = (xp[c] + shift[c]) * r[c];
          float dz = dyp[c];
          dxp[c] = dz;
          A[c] += dz;
          B[c] += dz * xh;
        }
      }
    }
    for (int g = 0; g < G; g++) {
      double s1 = 0, s2 = 0;
      for (int c = g * cg; c < (g + 1) * cg; c++) {
        s1 += (double)gamma[c] * A[c];
        s2 += (double)gamma[c] * B[c];
      }
      for (int c = g * cg; c < (g + 1) * cg; c++) {
        m1[c] = (float)(s1 / M);
        m2[c] = (float)(s2 / M);
      }
    }
    for (int c = 0; c < C; c++) db[c] = 0;
    for (int p = 0; p < HW; p++) {
      const float *xp = x + (long)p * C;
      float *dxp = dx + (long)p * C;
      for (int c = 0; c < C; c++) {
        float xh = (xp[c] + shift[c]) * r[c];
        float d = r[c] * (gamma[c] * dxp[c] - m1[c] - xh * m2[c]);
        dxp[c] = d;
        db[c] += d;
      }
    }
    if (a->dbias) memcpy(a->dbias + n * C, db, sizeof(float) * C);
  }
}

void ddpm_groupnorm_backward(float *dx, float *dbias, float *dgamma, float *dbeta, float *scratch,
                             const float *dy, const float *x, const float *bias, const float *gamma,
                             const float *beta, const float *mean, const float *rstd, int N, int HW,
                             int C, int G, int silu) {
  gn_args a = {.dx = dx, .dbias = dbias, .scratch = scratch, .dy = dy, .x = x, .bias = bias,
               .gamma = gamma, .beta = beta, .cmean = mean, .crstd = rstd, .N = N, .HW = HW,
               .C = C, .G = G, .silu = silu};
  ddpm_parallel_for(N, gn_backward_range, &a);
  // Sum the per-sample parts in a fixed order: the same result whatever the thread count.
  for (int c = 0; c < C; c++) dbeta[c] = dgamma[c] = 0;
  for (int n = 0; n < N; n++) {
    const float *A = scratch + (long)n * C, *B = scratch + (long)(N + n) * C;
    for (int c = 0; c < C; c++) {
      dbeta[c] += A[c];
      dgamma[c] += B[c];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Element-wise layers.

typedef struct {
  float *y, *dx, *da, *db;
  const float *x, *a, *b, *dy, *p, *t, *freqs;
  long n, P;
  int L, Ca, Cb, H, W, C, dim, flip;
  float scale;
} ew_args;

DDPM_KERNEL static void silu_forward_range(void *ctx, long b0, long b1) {
  ew_args *a = ctx;
  long i1 = b1 * BLOCK < a->n ? b1 * BLOCK : a->n;
  for (long i = b0 * BLOCK; i < i1; i++) a->y[i] = a->x[i] * sigmoidf(a->x[i]);
}

void ddpm_silu_forward(float *y, const float *x, long n) {
  ew_args a = {.y = y, .x = x, .n = n};
  ddpm_parallel_for(nblocks(n), silu_forward_range, &a);
}

DDPM_KERNEL static void silu_backward_range(void *ctx, long b0, long b1) {
  ew_args *a = ctx;
  long i1 = b1 * BLOCK < a->n ? b1 * BLOCK : a->n;
  for (long i = b0 * BLOCK; i < i1; i++) {
    float x = a->x[i], s = sigmoidf(x);
    a->dx[i] = a->dy[i] * (s * (1.0f + x * (1.0f - s)));
  }
}

void ddpm_silu_backward(float *dx, const float *dy, const float *x, long n) {
  ew_args a = {.dx = dx, .dy = dy, .x = x, .n = n};
  ddpm_parallel_for(nblocks(n), silu_backward_range, &a);
}

DDPM_KERNEL static void softmax_forward_range(void *ctx, long r0, long r1) {
  ew_args *a = ctx;
  const int L = a->L;
  const float scale = a->scale;
  for (long r = r0; r < r1; r++) {
    const float *x = a->x + r * L;
    float *y = a->y + r * L;
    float m = -INFINITY;
    for (int j = 0; j < L; j++) m = fmaxf(m, x[j]);
    float s = 0;
    for (int j = 0; j < L; j++) {
      y[j] = expf(scale * x[j] - scale * m);
      s += y[j];
    }
    float inv = 1.0f / s;
    for (int j = 0; j < L; j++) y[j] *= inv;
  }
}

void ddpm_softmax_forward(float *y, const float *x, long rows, int L, float scale) {
  ew_args a = {.y = y, .x = x, .L = L, .scale = scale};
  ddpm_parallel_for(rows, softmax_forward_range, &a);
}

DDPM_KERNEL static void softmax_backward_range(void *ctx, long r0, long r1) {
  ew_args *a = ctx;
  const int L = a->L;
  for (long r = r0; r < r1; r++) {
    const float *dy = a->dy + r * L, *y = a->x + r * L;
    float *dx = a->dx + r * L;
    float s = 0;
    for (int j = 0; j < L; j++) s += dy[j] * y[j];
    for (int j = 0; j < L; j++) dx[j] = a->scale * y[j] * (dy[j] - s);
  }
}

void ddpm_softmax_backward(float *dx, const float *dy, const float *y, long rows, int L, float scale) {
  ew_args a = {.dx = dx, .dy = dy, .x = y, .L = L, .scale = scale};
  ddpm_parallel_for(rows, softmax_backward_range, &a);
}

// Rows are (n, i) pairs of the input: [N*H) rows of W*C values.
DDPM_KERNEL static void upsample_forward_range(void *ctx, long r0, long r1) {
  ew_args *a = ctx;
  const int W = a->W, C = a->C;
  for (long r = r0; r < r1; r++) {
    const float *x = a->x + r * W * C;
    float *y0 = a->y + r * 4 * W * C, *y1 = y0 + 2 * W * C;
    for (int j = 0; j < W; j++) {
      const float *xp = x + (long)j * C;
      float *a0 = y0 + 2L * j * C, *a1 = a0 + C, *b0 = y1 + 2L * j * C, *b1 = b0 + C;
      for (int c = 0; c < C; c++) a0[c] = a1[c] = b0[c] = b1[c] = xp[c];
    }
  }
}

void ddpm_upsample2x_forward(float *y, const float *x, int N, int H, int W, int C) {
  ew_args a = {.y = y, .x = x, .W = W, .C = C};
  ddpm_parallel_for((long)N * H, upsample_forward_range, &a);
}

DDPM_KERNEL static void upsample_backward_range(void *ctx, long r0, long r1) {
  ew_args *a = ctx;
  const int W = a->W, C = a->C;
  for (long r = r0; r < r1; r++) {
    float *dx = a->dx + r * W * C;
    const float *d0 = a->dy + r * 4 * W * C, *d1 = d0 + 2 * W * C;
    for (int j = 0; j < W; j++) {
      float *xp = dx + (long)j * C;
      const float *a0 = d0 + 2L * j * C, *a1 = a0 + C, *b0 = d1 + 2L * j * C, *b1 = b0 + C;
      for (int c = 0; c < C; c++) xp[c] = (a0[c] + a1[c]) + (b0[c] + b1[c]);
    }
  }
}

void ddpm_upsample2x_backward(float *dx, const float *dy, int N, int H, int W, int C) {
  ew_args a = {.dx = dx, .dy = dy, .W = W, .C = C};
  ddpm_parallel_for((long)N * H, upsample_backward_range, &a);
}

#define PBLOCK 256L

static void concat_forward_range(void *ctx, long b0, long b1) {
  ew_args *a = ctx;
  const int Ca = a->Ca, Cb = a->Cb, C = Ca + Cb;
  long p1 = b1 * PBLOCK < a->P ? b1 * PBLOCK : a->P;
  for (long p = b0 * PBLOCK; p < p1; p++) {
    memcpy(a->y + p * C, a->a + p * Ca, sizeof(float) * Ca);
    memcpy(a->y + p * C + Ca, a->b + p * Cb, sizeof(float) * Cb);
  }
}

void ddpm_concat_forward(float *y, const float *a, const float *b, long P, int Ca, int Cb) {
  ew_args g = {.y = y, .a = a, .b = b, .P = P, .Ca = Ca, .Cb = Cb};
  ddpm_parallel_for((P + PBLOCK - 1) / PBLOCK, concat_forward_range, &g);
}

static void concat_backward_range(void *ctx, long b0, long b1) {
  ew_args *a = ctx;
  const int Ca = a->Ca, Cb = a->Cb, C = Ca + Cb;
  long p1 = b1 * PBLOCK < a->P ? b1 * PBLOCK : a->P;
  for (long p = b0 * PBLOCK; p < p1; p++) {
    memcpy(a->da + p * Ca, a->dy + p * C, sizeof(float) * Ca);
    memcpy(a->db + p * Cb, a->dy + p * C + Ca, sizeof(float) * Cb);
  }
}

void ddpm_concat_backward(float *da, float *db, const float *dy, long P, int Ca, int Cb) {
  ew_args g = {.da = da, .db = db, .dy = dy, .P = P, .Ca = Ca, .Cb = Cb};
  ddpm_parallel_for((P + PBLOCK - 1) / PBLOCK, concat_backward_range, &g);
}

DDPM_KERNEL static void add_forward_range(void *ctx, long b0, long b1) {
  ew_args *a = ctx;
  long i1 = b1 * BLOCK < a->n ? b1 * BLOCK : a->n;
  if (a->scale == 1.0f) {
    for (long i = b0 * BLOCK; i < i1; i++) a->y[i] = a->a[i] + a->b[i];
  } else {
    for (long i = b0 * BLOCK; i < i1; i++) a->y[i] = (a->a[i] + a->b[i]) / a->scale;
  }
}

void ddpm_add_forward(float *y, const float *a, const float *b, long n, float s) {
  ew_args g = {.y = y, .a = a, .b = b, .n = n, .scale = s};
  ddpm_parallel_for(nblocks(n), add_forward_range, &g);
}

DDPM_KERNEL static void scale_backward_range(void *ctx, long b0, long b1) {
  ew_args *a = ctx;
  long i1 = b1 * BLOCK < a->n ? b1 * BLOCK : a->n;
  for (long i = b0 * BLOCK; i < i1; i++) a->dx[i] = a->dy[i] / a->scale;
}

void ddpm_scale_backward(float *dx, const float *dy, long n, float s) {
  ew_args g = {.dx = dx, .dy = dy, .n = n, .scale = s};
  ddpm_parallel_for(nblocks(n), scale_backward_range, &g);
}

DDPM_KERNEL void ddpm_colsum(float *out, const float *x, long M, int C) {
  for (int c = 0; c < C; c++) out[c] = 0;
  for (long m = 0; m < M; m++)
    for (int c = 0; c < C; c++) out[c] += x[m * C + c];
}

void ddpm_timestep_embedding(float *emb, const float *t, const float *freqs, int N, int dim, int flip) {
  const int half = dim / 2;
  for (int n = 0; n < N; n++) {
    float *e = emb + (long)n * dim;
    float *s = e + (flip ? half : 0), *c = e + (flip ? 0 : half);
    for (int i = 0; i < half; i++) {
      float arg = t[n] * freqs[i];
      s[i] = sinf(arg);
      c[i] = cosf(arg);
    }
    if (dim % 2) e[dim - 1] = 0;
  }
}

double ddpm_mse_forward_backward(float *dpred, const float *pred, const float *target, long n) {
  double s = 0;
  const float k = 2.0f / (float)n;
  for (long i = 0; i < n; i++) {
    float d = pred[i] - target[i];
    s += (double)d * d;
    dpred[i] = k * d;
  }
  return s / (double)n;
}

// ---------------------------------------------------------------------------------------------
// The optimizer over the flat weight vector.

typedef struct {
  float *p, *m, *v, *ema;
  const float *g;
  long n;
  float lr, wdMul, b1, omb1, b2, omb2, bc1, bc2, eps, gscale, d, omd;
} opt_args;

DDPM_KERNEL static void adamw_range(void *ctx, long b0, long b1) {
  opt_args *a = ctx;
  long i1 = b1 * BLOCK < a->n ? b1 * BLOCK : a->n;
  for (long i = b0 * BLOCK; i < i1; i++) {
    float g = a->g[i];
    if (a->gscale != 1.0f) g = g * a->gscale;
    float p = a->p[i] * a->wdMul;
    float m = a->m[i] * a->b1 + g * a->omb1;
    float v = a->v[i] * a->b2 + (g * g) * a->omb2;
    float den = sqrtf(v / a->bc2) + a->eps;
    a->p[i] = p - ((m / a->bc1) / den) * a->lr;
    a->m[i] = m;
    a->v[i] = v;
  }
}

void ddpm_adamw(float *p, float *m, float *v, const float *g, long n, float lr, float wdMul,
                float b1, float omb1, float b2, float omb2, float bc1, float bc2, float eps,
                float gscale) {
  opt_args a = {.p = p, .m = m, .v = v, .g = g, .n = n, .lr = lr, .wdMul = wdMul, .b1 = b1,
                .omb1 = omb1, .b2 = b2, .omb2 = omb2, .bc1 = bc1, .bc2 = bc2, .eps = eps,
                .gscale = gscale};
  ddpm_parallel_for(nblocks(n), adamw_range, &a);
}

DDPM_KERNEL static void ema_range(void *ctx, long b0, long b1) {
  opt_args *a = ctx;
  long i1 = b1 * BLOCK < a->n ? b1 * BLOCK : a->n;
  for (long i = b0 * BLOCK; i < i1; i++) a->ema[i] = a->ema[i] * a->d + a->p[i] * a->omd;
}

void ddpm_ema(float *ema, const float *p, long n, float d, float omd) {
  opt_args a = {.ema = ema, .p = (float *)p, .n = n, .d = d, .omd = omd};
  ddpm_parallel_for(nblocks(n), ema_range, &a);
}

double ddpm_sumsq(const float *x, long n) {
  double s = 0;
  for (long b = 0; b < n; b += BLOCK) {
    long e = b + BLOCK < n ? b + BLOCK : n;
    float part = 0;
    for (long i = b; i < e; i++) part += x[i] * x[i];
    s += part;
  }
  return s;
}
