/*
 * ann.c -- ThreadSanitizer: two writers (puts and deletes) and a reader
 * (plain and filtered queries) over a similarity index and its worker,
 * then drop.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "tsan_common.h"

#define D 8
#define N 3000

static cohort_table *t;
static atomic_bool stop;

static void *writer(void *arg)
{
	uint64_t s = (uintptr_t)arg;
	for (int r = 0; r < 4000; r++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		int i = (int)((s >> 33) % N);
		char k[32];
		int kl = snprintf(k, sizeof k, "k%d", i);
		float v[D];
		for (int j = 0; j < D; j++)
			v[j] = (float)((s >> (j * 4)) & 15) / 8.0f - 1;
		if ((s >> 60) == 0) {
			cohort_delete(t, k, (size_t)kl);
		} else {
			cohort_field f[] = { { 0, cohort_vec(v, D) },
					     { 1, cohort_i32(i % 50) } };
			CHECK(cohort_put(t, k, (size_t)kl, 5, f, 2));
		}
	}
	return NULL;
}

static void *reader(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		float q[D] = { 0 };
		cohort_neighbor nb[10];
		size_t n;
		cohort_knn_query kq = { .vec = q, .dim = D, .k = 10 };
		CHECK(cohort_knn(t, "ix", &kq, nb, &n));
		EXPECT(n == 10, "%zu results", n);
		cohort_filter *f;
		CHECK(cohort_filter_new(t, &f));
		int root = cohort_filter_cmp(f, 1, COHORT_EQ, cohort_i32(3));
		kq.filter = f;
		kq.root = root;
		CHECK(cohort_knn(t, "ix", &kq, nb, &n));
		cohort_filter_free(f);
	}
	return NULL;
}

int main(void)
{
	cohort_db *db;
	CHECK(cohort_open(NULL, NULL, &db));
	cohort_column_def c[] = { { "v", COHORT_VEC, D, 0 },
				  { "g", COHORT_I32, 0, 0 } };
	CHECK(cohort_table_create(db, "t", c, 2, NULL, &t));
	for (int i = 0; i < N; i++) {
		char k[32];
		int kl = snprintf(k, sizeof k, "k%d", i);
		float v[D];
		for (int j = 0; j < D; j++)
			v[j] = (float)((i * 7 + j) % 13) / 6.5f - 1;
		cohort_field f[] = { { 0, cohort_vec(v, D) },
				     { 1, cohort_i32(i % 50) } };
		CHECK(cohort_put(t, k, (size_t)kl, 1, f, 2));
	}
	CHECK(cohort_index_create(t, "ix", 0, NULL));
	pthread_t th[3];
	pthread_create(&th[0], NULL, writer, (void *)1);
	pthread_create(&th[1], NULL, writer, (void *)2);
	pthread_create(&th[2], NULL, reader, NULL);
	pthread_join(th[0], NULL);
	pthread_join(th[1], NULL);
	atomic_store(&stop, true);
	pthread_join(th[2], NULL);
	CHECK(cohort_index_wait(t, "ix"));
	CHECK(cohort_index_drop(t, "ix"));
	CHECK(cohort_close(db));
	return 0;
}
