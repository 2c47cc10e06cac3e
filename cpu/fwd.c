// See fwd.h.

// Without these the compiler keeps the branches of clamps (a float compare could trap) and calls libm
// for every math function, so the element loops stay scalar. (cgo rejects them as -f flags.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math", "no-math-errno")
#endif

#include "fwd.h"
#include "parallel.h"

#include <math.h>
#include <string.h>

// HOT marks the loops worth an AVX2+FMA build (chosen at load time by the CPU; the default build runs
// everywhere else).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HOT __attribute__((target_clones("arch=haswell", "default")))
#else
#define HOT
#endif

// fast_expf is e^x to about 2 ulp (Cephes' expf: x = n ln2 + r, a degree-6 polynomial in r, 2^n from the
// exponent bits), branch-free so that the loops calling it vectorize.
static inline float fast_expf(float x) {
	x = x < -87.3f ? -87.3f : x;
	x = x > 88.7f ? 88.7f : x;
	// n = round(x / ln2) by the 1.5 * 2^23 trick (no rounding instruction needed).
	float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
	float r = x - n * 0.693359375f + n * 2.12194440e-4f;
	float p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * r * r + r + 1.0f;
	union {
		int i;
		float f;
	} e = {((int)n + 127) << 23};
	return p * e.f;
}

// pfor is ddpm_parallel_for for a loop that touches about work floats: below 32k of them, waking the
// other threads costs more than it saves, so it runs here.
static void pfor(long n, long work, ddpm_range_fn fn, void *ctx) {
	if (work < 32768) {
		fn(ctx, 0, n);
		return;
	}
	ddpm_parallel_for(n, fn, ctx);
}

static inline float silu(float v) { return v / (1.0f + fast_expf(-v)); }

typedef struct {
	const float *x, *addb, *gamma, *beta, *scale, *shift;
	long n, hw, c, g, addb_stride, ss_stride;
	float eps;
	int silu;
	float *y, *mean, *rstd, *ab;
} gn_args;

// sum_rows adds the rows of x [rows, c] (minus m [c] and squared, when m is not NULL) into s [c], in
// float over blocks of 32 rows and in double across blocks.
HOT static void sum_rows(const float *x, long rows, long c, const float *m, double *s) {
	float acc[c];
	for (long p0 = 0; p0 < rows; p0 += 32) {
		long p1 = p0 + 32 < rows ? p0 + 32 : rows;
		for (long k = 0; k < c; k++) {
			acc[k] = 0;
		}
		for (long p = p0; p < p1; p++) {
			const float *row = x + p * c;
			if (m) {
				for (long k = 0; k < c; k++) {
					float d = row[k] - m[k];
					acc[k] += d * d;
				}
			} else {
				for (long k = 0; k < c; k++) {
					acc[k] += row[k];
				}
			}
		}
		for (long k = 0; k < c; k++) {
			s[k] += acc[k];
		}
	}
}

// gn_stats computes, per sample, the group statistics and the per-channel affine map y = x*A + B.
static void gn_stats(void *p, long begin, long end) {
	gn_args *a = p;
	long c = a->c, cpg = c / a->g;
	double s[c], s2[c];
	float m[c];
	for (long i = begin; i < end; i++) {
		const float *x = a->x + i * a->hw * c;
		const float *b = a->addb ? a->addb + i * a->addb_stride : NULL;
		for (long k = 0; k < c; k++) {
			s[k] = 0;
			s2[k] = 0;
		}
		sum_rows(x, a->hw, c, NULL, s);
		double cnt = (double)(a->hw * cpg);
		for (long gi = 0; gi < a->g; gi++) {
			double t = 0;
			for (long k = gi * cpg; k < (gi + 1) * cpg; k++) {
				t += s[k] + (b ? (double)b[k] * a->hw : 0);
			}
			float mu = (float)(t / cnt);
			a->mean[i * a->g + gi] = mu;
			for (long k = gi * cpg; k < (gi + 1) * cpg; k++) {
				m[k] = mu - (b ? b[k] : 0); // x + b - mu = x - m
			}
		}
		// Two passes: the variance from the centered values, not E[x^2] - E[x]^2.
		sum_rows(x, a->hw, c, m, s2);
		float *A = a->ab + i * 2 * c, *B = A + c;
		for (long gi = 0; gi < a->g; gi++) {
			double t = 0;
			for (long k = gi * cpg; k < (gi + 1) * cpg; k++) {
				t += s2[k];
			}
			float r = 1.0f / sqrtf((float)(t / cnt) + a->eps);
			a->rstd[i * a->g + gi] = r;
			for (long k = gi * cpg; k < (gi + 1) * cpg; k++) {
				float ak = r * a->gamma[k], bk = a->beta[k] - m[k] * ak;
				if (a->scale) {
					float sc = 1.0f + a->scale[i * a->ss_stride + k], sh = a->shift[i * a->ss_stride + k];
					ak *= sc;
					bk = bk * sc + sh;
				}
				A[k] = ak;
				B[k] = bk;
			}
		}
	}
}

HOT static void gn_apply(void *p, long begin, long end) {
	gn_args *a = p;
	long c = a->c;
	for (long r = begin; r < end; r++) {
		long i = r / a->hw;
		const float *A = a->ab + i * 2 * c, *B = A + c;
		const float *x = a->x + r * c;
		float *y = a->y + r * c;
		if (a->silu) {
			for (long k = 0; k < c; k++) {
				y[k] = silu(x[k] * A[k] + B[k]);
			}
		} else {
			for (long k = 0; k < c; k++) {
				y[k] = x[k] * A[k] + B[k];
			}
		}
	}
}

void ddpm_groupnorm_fwd(const float *x, long n, long hw, long c, long g, const float *addb, long addb_stride,
                        const float *gamma, const float *beta, const float *scale, const float *shift, long ss_stride,
                        float eps, int silu, float *y, float *mean, float *rstd, float *ab) {
	gn_args a = {x, addb, gamma, beta, scale, shift, n, hw, c, g, addb_stride, ss_stride, eps, silu, y, mean, rstd, ab};
	pfor(n, n * hw * c, gn_stats, &a);
	pfor(n * hw, n * hw * c, gn_apply, &a);
}

typedef struct {
	float *x;
	long len;
	float scale;
} sm_args;

HOT static void softmax_rows(void *p, long begin, long end) {
	sm_args *a = p;
	for (long r = begin; r < end; r++) {
		float *x = a->x + r * a->len;
		float mx = x[0];
		for (long k = 1; k < a->len; k++) {
			mx = x[k] > mx ? x[k] : mx;
		}
		float sum = 0;
		for (long k = 0; k < a->len; k++) {
			x[k] = fast_expf(a->scale * (x[k] - mx));
			sum += x[k];
		}
		float inv = 1.0f / sum;
		for (long k = 0; k < a->len; k++) {
			x[k] *= inv;
		}
	}
}

void ddpm_softmax_rows(float *x, long rows, long len, float scale) {
	sm_args a = {x, len, scale};
	pfor(rows, rows * len, softmax_rows, &a);
}

typedef struct {
	const float *x;
	long h, w, c;
	float *y;
} up_args;

static void upsample_rows(void *p, long begin, long end) {
	up_args *a = p;
	long c = a->c, w = a->w;
	for (long r = begin; r < end; r++) { // r = sample*h + row
		const float *src = a->x + r * w * c;
		float *d0 = a->y + r * 2 * (2 * w) * c, *d1 = d0 + 2 * w * c;
		for (long j = 0; j < w; j++) {
			memcpy(d0 + 2 * j * c, src + j * c, c * sizeof(float));
			memcpy(d0 + (2 * j + 1) * c, src + j * c, c * sizeof(float));
		}
		memcpy(d1, d0, 2 * w * c * sizeof(float));
	}
}

void ddpm_upsample2x(const float *x, long n, long h, long w, long c, float *y) {
	up_args a = {x, h, w, c, y};
	pfor(n * h, n * h * w * c * 4, upsample_rows, &a);
}

typedef struct {
	const float *a, *b;
	long ca, cb;
	float *y;
} cat_args;

static void concat_rows(void *p, long begin, long end) {
	cat_args *a = p;
	for (long r = begin; r < end; r++) {
		float *y = a->y + r * (a->ca + a->cb);
		memcpy(y, a->a + r * a->ca, a->ca * sizeof(float));
		memcpy(y + a->ca, a->b + r * a->cb, a->cb * sizeof(float));
	}
}

void ddpm_concat_c(const float *a, long ca, const float *b, long cb, long p, float *y) {
	cat_args args = {a, b, ca, cb, y};
	pfor(p, p * (ca + cb), concat_rows, &args);
}

void ddpm_nchw_to_nhwc(const float *x, long n, long c, long hw, float *y) {
	for (long i = 0; i < n; i++) {
		for (long k = 0; k < c; k++) {
			for (long p = 0; p < hw; p++) {
				y[(i * hw + p) * c + k] = x[(i * c + k) * hw + p];
			}
		}
	}
}

void ddpm_nhwc_to_nchw(const float *x, long n, long c, long hw, float *y) {
	for (long i = 0; i < n; i++) {
		for (long k = 0; k < c; k++) {
			for (long p = 0; p < hw; p++) {
				y[(i * c + k) * hw + p] = x[(i * hw + p) * c + k];
			}
		}
	}
}

void ddpm_scale(float *x, long len, float s) {
	for (long k = 0; k < len; k++) {
		x[k] *= s;
	}
}
