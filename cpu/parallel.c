// See parallel.h.
#include "parallel.h"

#include <dlfcn.h>
#include <unistd.h>

static void (*gomp_parallel)(void (*fn)(void *), void *data, unsigned nthreads, unsigned flags);
static int (*omp_thread_num)(void);
static int (*omp_num_threads)(void);
static int (*omp_max_threads)(void);
static void (*omp_set_threads)(int);
static int threads = 1;

void ddpm_parallel_init(void *lib) {
	*(void **)&gomp_parallel = dlsym(lib, "GOMP_parallel");
	*(void **)&omp_thread_num = dlsym(lib, "omp_get_thread_num");
	*(void **)&omp_num_threads = dlsym(lib, "omp_get_num_threads");
	*(void **)&omp_max_threads = dlsym(lib, "omp_get_max_threads");
	*(void **)&omp_set_threads = dlsym(lib, "omp_set_num_threads");
	if (!gomp_parallel || !omp_thread_num || !omp_num_threads || !omp_max_threads || !omp_set_threads) {
		gomp_parallel = 0;
		return;
	}
	threads = omp_max_threads();
}

void ddpm_set_threads(int n) {
	if (n <= 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		n = c > 0 ? (int)c : 1;
	}
	threads = gomp_parallel ? n : 1;
	if (omp_set_threads) {
		omp_set_threads(n);
	}
}

int ddpm_threads(void) { return threads; }

typedef struct {
	long n;
	ddpm_range_fn fn;
	void *ctx;
} job;

static void run_job(void *p) {
	job *j = p;
	long t = omp_thread_num(), nt = omp_num_threads();
	long begin = j->n * t / nt, end = j->n * (t + 1) / nt;
	if (begin < end) {
		j->fn(j->ctx, begin, end);
	}
}

void ddpm_parallel_for(long n, ddpm_range_fn fn, void *ctx) {
	if (n <= 0) {
		return;
	}
	if (!gomp_parallel || threads <= 1 || n == 1) {
		fn(ctx, 0, n);
		return;
	}
	job j = {n, fn, ctx};
	unsigned nt = n < threads ? (unsigned)n : (unsigned)threads;
	gomp_parallel(run_job, &j, nt, 0);
}
