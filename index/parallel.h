/*
 * parallel.h -- a parallel loop over a fixed number of ranges, and the small
 * random generator the algorithms share.
 *
 * par_run cuts n items into PAR_PARTS fixed ranges; threads take ranges in
 * any order. A caller that keeps one partial result per range and combines
 * them in range order gets a result that does not depend on the number of
 * threads (k-means relies on it).
 */
#ifndef COHORT_PARALLEL_H
#define COHORT_PARALLEL_H

#include <stddef.h>
#include <stdint.h>

#define PAR_PARTS 16

typedef void (*par_fn)(void *ctx, int part, size_t lo, size_t hi);

/* Threads to use: asked, or all online cores when 0; at most PAR_PARTS. */
uint32_t par_threads(uint32_t asked);

/* Run fn over the PAR_PARTS ranges of 0..n on up to `threads` threads (the
 * caller's included); returns when all are done. Every range is run once,
 * empty ones (lo == hi, when n < PAR_PARTS) included, so that per-range
 * outputs are always written. */
void par_run(uint32_t threads, size_t n, par_fn fn, void *ctx);

/* splitmix64: small, fast, good enough for sampling. */
static inline uint64_t par_rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

#endif
