/*
 * persona.c -- ThreadSanitizer: two writers (puts and deletes), a reader
 * of every persona call, and retrains (at once and in the background)
 * over a model kept current at once, then in the background.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "tsan_common.h"

#define D 8
#define N 5000

static cohort_table *t;
static atomic_bool stop;

static void *writer(void *arg)
{
	uint64_t s = (uintptr_t)arg * 99 + 1;
	for (int n = 0; !atomic_load(&stop) || n < 1000; n++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		int i = (int)((s >> 33) % N);
		char k[32];
		int kl = snprintf(k, sizeof k, "k%d", i);
		float v[D];
		for (int j = 0; j < D; j++)
			v[j] = (float)(((s >> (j * 4)) & 15) % 7);
		if ((s >> 60) == 0) {
			cohort_delete(t, k, (size_t)kl);
		} else {
			cohort_field f = { 0, cohort_vec(v, D) };
			CHECK(cohort_put(t, k, (size_t)kl, 5, &f, 1));
		}
	}
	return NULL;
}

static void *reader(void *arg)
{
	(void)arg;
	uint64_t cur = 0;
	static cohort_persona_change ch[64];
	while (!atomic_load(&stop)) {
		cohort_persona_state st;
		CHECK(cohort_persona_get(t, "p", "k1", 2, &st));
		cohort_persona_result r;
		CHECK(cohort_persona_assign(t, "p", "k2", 2, 2, &r));
		uint64_t sz[16];
		CHECK(cohort_persona_sizes(t, "p", sz, 16, NULL));
		CHECK(cohort_persona_changes(t, "p", &cur, ch, 64, NULL));
		cohort_persona_info in;
		CHECK(cohort_persona_describe(t, "p", &in));
	}
	return NULL;
}

static void run(cohort_persona_mode mode)
{
	cohort_db *db;
	CHECK(cohort_open(NULL, NULL, &db));
	cohort_column_def c = { "v", COHORT_VEC, D, 0 };
	CHECK(cohort_table_create(db, "t", &c, 1, NULL, &t));
	for (int i = 0; i < N; i++) {
		char k[32];
		int kl = snprintf(k, sizeof k, "k%d", i);
		float v[D];
		for (int j = 0; j < D; j++)
			v[j] = (float)((i * 7 + j) % 5);
		cohort_field f = { 0, cohort_vec(v, D) };
		CHECK(cohort_put(t, k, (size_t)kl, 1, &f, 1));
	}
	int in[] = { 0 };
	cohort_persona_def def = { in, 1, mode, 0, 128 };
	cohort_train_opts o = { .k = 6, .seed = 1 };
	CHECK(cohort_persona_train(t, "p", &def, &o));
	atomic_store(&stop, false);
	pthread_t th[3];
	pthread_create(&th[0], NULL, writer, (void *)1);
	pthread_create(&th[1], NULL, writer, (void *)2);
	pthread_create(&th[2], NULL, reader, NULL);
	for (int r = 0; r < 3; r++) {
		cohort_train_opts o2 = { .k = 8 + (uint32_t)r,
					 .seed = (uint64_t)r,
					 .background = r % 2 };
		int rc = cohort_persona_train(t, "p", NULL, &o2);
		if (rc != COHORT_EBUSY)
			CHECK(rc);
		struct timespec ts = { 0, 100000000 };
		nanosleep(&ts, NULL);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	CHECK(cohort_close(db));
}

int main(void)
{
	run(COHORT_PERSONA_AT_ONCE);
	run(COHORT_PERSONA_BACKGROUND);
	return 0;
}
