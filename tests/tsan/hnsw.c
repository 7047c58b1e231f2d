/*
 * hnsw.c -- ThreadSanitizer: inserts on two threads, deletes and searches
 * on others, then reclaim while searches go on.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "hnsw.h"

#define D 8
#define N 8000

static hnsw *h;
static float *x;
static uint32_t node[N];
static atomic_int done;

#define EXPECT0(e)                                                            \
	do {                                                                  \
		if ((e) != 0) {                                               \
			fprintf(stderr, "%s:%d: %s failed\n", __FILE__,       \
				__LINE__, #e);                                \
			exit(1);                                              \
		}                                                             \
	} while (0)

static void *ins(void *a)
{
	size_t lo = (size_t)a;
	for (size_t i = lo; i < lo + 2000; i++)
		EXPECT0(hnsw_insert(h, x + i * D, i, &node[i]));
	atomic_fetch_add(&done, 1);
	return NULL;
}

static void *del(void *a)
{
	(void)a;
	for (size_t i = 0; i < 4000; i += 3)
		EXPECT0(hnsw_delete(h, node[i]));
	atomic_fetch_add(&done, 1);
	return NULL;
}

static void *srch(void *a)
{
	(void)a;
	hnsw_query q = { .k = 10, .ef = 32 };
	hnsw_hit hit[10];
	size_t n;
	while (atomic_load(&done) < 4)
		for (size_t i = 0; i < N; i += 101)
			EXPECT0(hnsw_search(h, x + i * D, &q, hit, &n));
	return NULL;
}

static void *recl(void *a)
{
	(void)a;
	/* now and then, not back to back: a reclaim holds new calls at the
	 * door while it sweeps */
	while (atomic_load(&done) < 3) {
		hnsw_reclaim(h);
		struct timespec ts = { 0, 20000000 };
		nanosleep(&ts, NULL);
	}
	atomic_fetch_add(&done, 1);
	return NULL;
}

int main(void)
{
	x = malloc((size_t)N * D * sizeof(float));
	srand(1);
	for (int i = 0; i < N * D; i++)
		x[i] = (float)(rand() % 1000) / 500.0f - 1;
	hnsw_params p = { .dim = D, .M = 8, .ef_construction = 64, .lo = -1,
			  .hi = 1 };
	EXPECT0(hnsw_new(&p, &h));
	for (size_t i = 0; i < 4000; i++)
		EXPECT0(hnsw_insert(h, x + i * D, i, &node[i]));
	pthread_t t[5];
	pthread_create(&t[0], NULL, ins, (void *)4000);
	pthread_create(&t[1], NULL, ins, (void *)6000);
	pthread_create(&t[2], NULL, del, NULL);
	pthread_create(&t[3], NULL, srch, NULL);
	pthread_create(&t[4], NULL, recl, NULL);
	for (int i = 0; i < 5; i++)
		pthread_join(t[i], NULL);
	hnsw_reclaim(h);
	EXPECT0(hnsw_check(h));
	hnsw_free(h);
	free(x);
	return 0;
}
