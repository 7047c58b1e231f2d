/*
 * parallel.c -- see parallel.h.
 */
#include "parallel.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

typedef struct pool {
	par_fn fn;
	void *ctx;
	size_t n;
	atomic_int next;
} pool;

static void *pool_worker(void *arg)
{
	pool *p = arg;
	for (;;) {
		int part = atomic_fetch_add(&p->next, 1);
		if (part >= PAR_PARTS)
			break;
		size_t lo = p->n * (size_t)part / PAR_PARTS;
		size_t hi = p->n * (size_t)(part + 1) / PAR_PARTS;
		/* empty ranges too: each range's partial result is then
		 * always written, so a caller never combines stale slots */
		p->fn(p->ctx, part, lo, hi);
	}
	return NULL;
}

uint32_t par_threads(uint32_t asked)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	uint32_t t = asked ? asked : (uint32_t)(cores > 0 ? cores : 1);
	return t > PAR_PARTS ? PAR_PARTS : t;
}

void par_run(uint32_t threads, size_t n, par_fn fn, void *ctx)
{
	pool p = { fn, ctx, n, 0 };
	pthread_t th[PAR_PARTS];
	uint32_t started = 0;
	for (uint32_t i = 1; i < threads && i < PAR_PARTS; i++)
		if (pthread_create(&th[started], NULL, pool_worker, &p) == 0)
			started++;
	pool_worker(&p);
	for (uint32_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
}
