// See fwd.h.
#include "fwd.h"
#include "parallel.h"

#include <math.h>
#include <string.h>

static inline float silu(float v) { return v / (1.0f + expf(-v)); }

typedef struct {
	const float *x, *addb, *gamma, *beta, *scale, *shift;
	long n, hw, c, g, addb_stride, ss_stride;
	float eps;
	int silu;
	float *y, *mean, *rstd, *ab;
} gn_args;

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
		for (long p = 0; p < a->hw; p++) {
			const float *row = x + p * c;
			for (long k = 0; k < c; k++) {
				s[k] += row[k];
			}
		}
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
		for (long p = 0; p < a->hw; p++) {
			const float *row = x + p * c;
			for (long k = 0; k < c; k++) {
				float d = row[k] - m[k];
				s2[k] += d * d;
			}
		}
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

static void gn_apply(void *p, long begin, long end) {
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
	ddpm_parallel_for(n, gn_stats, &a);
	ddpm_parallel_for(n * hw, gn_apply, &a);
}

typedef struct {
	float *x;
	long len;
	float scale;
} sm_args;

static void softmax_rows(void *p, long begin, long end) {
	sm_args *a = p;
	for (long r = begin; r < end; r++) {
		float *x = a->x + r * a->len;
		float mx = x[0];
		for (long k = 1; k < a->len; k++) {
			mx = x[k] > mx ? x[k] : mx;
		}
		float sum = 0;
		for (long k = 0; k < a->len; k++) {
			x[k] = expf(a->scale * (x[k] - mx));
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
	ddpm_parallel_for(rows, softmax_rows, &a);
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
	ddpm_parallel_for(n * h, upsample_rows, &a);
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
	ddpm_parallel_for(p, concat_rows, &args);
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
