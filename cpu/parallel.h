// The engine's one parallel-for, on the OpenMP runtime that oneDNN itself runs on (libgomp, found
// with dlsym once libdnnl is loaded), so that our loops and oneDNN's share one team of threads and
// never oversubscribe the cores. Without that runtime the loops run on the calling thread.
#ifndef DDPM_CPU_PARALLEL_H
#define DDPM_CPU_PARALLEL_H

typedef void (*ddpm_range_fn)(void *ctx, long begin, long end);

// ddpm_parallel_for calls fn(ctx, begin, end) on disjoint ranges covering [0, n), one per thread.
void ddpm_parallel_for(long n, ddpm_range_fn fn, void *ctx);

// ddpm_set_threads sets the number of threads of the calling thread's team (ours and oneDNN's);
// n <= 0: all cores. ddpm_threads reports it.
void ddpm_set_threads(int n);
int ddpm_threads(void);

// ddpm_parallel_init looks up the OpenMP runtime in the dependencies of lib (a dlopen handle).
void ddpm_parallel_init(void *lib);

#endif
