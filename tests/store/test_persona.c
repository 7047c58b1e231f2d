/*
 * test_persona.c -- persona models through the public API: every row's
 * kept persona equals the brute-force argmin after random updates (at once
 * and in the background), sizes and members agree with it, the change feed,
 * uploads and names, numeric inputs with standardisation and nulls, models
 * surviving restarts (log and snapshot), a retrain swapped in under
 * concurrent writers, and the errors.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cohort.h"
#include "tmpdir.h"

#define OK(x)                                                                 \
	do {                                                                  \
		int rc_ = (x);                                                \
		cr_assert(rc_ >= 0, "%s: %s (%s)", #x, cohort_strerror(rc_),  \
			  cohort_errdetail());                                \
	} while (0)

#define DIM 8
#define NCLUST 6

static uint64_t rng_state = 42;

static double urand(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

static void clustered(float *v, int c, double sigma)
{
	for (int j = 0; j < DIM; j++)
		v[j] = (float)(((c * 7 + j * 3) % 11) * 2.0 +
			       sigma * (urand() * 2 - 1));
}

static int keyf(char *buf, int i)
{
	return snprintf(buf, 32, "cust%06d", i);
}

static cohort_table *vec_table(cohort_db *db, const char *name, int n)
{
	cohort_column_def cols[] = { { "v", COHORT_VEC, DIM, 0 },
				     { "n", COHORT_COUNTER, 0, 0 },
				     { "seg", COHORT_I32, 0, 0 } };
	cohort_table *t;
	OK(cohort_table_create(db, name, cols, 3, NULL, &t));
	for (int i = 0; i < n; i++) {
		float v[DIM];
		clustered(v, i % NCLUST, 1.0);
		char k[32];
		int kl = keyf(k, i);
		cohort_field f[] = { { 0, cohort_vec(v, DIM) },
				     { 2, cohort_i32(i % 3) } };
		OK(cohort_put(t, k, (size_t)kl, 1000, f, 2));
	}
	return t;
}

/* The centroids of the current version (vec model: input space). */
static int centroids(cohort_table *t, const char *model, double *c)
{
	cohort_persona_info info;
	OK(cohort_persona_describe(t, model, &info));
	for (uint32_t p = 0; p < info.k; p++)
		OK(cohort_persona_centroid(t, model, p, NULL,
					   c + (size_t)p * info.dim, NULL, NULL));
	return (int)info.k;
}

static uint32_t argmin(const double *c, int k, const float *x, int dim)
{
	uint32_t best = COHORT_PERSONA_NONE;
	double bd = INFINITY;
	for (int p = 0; p < k; p++) {
		double s = 0;
		for (int j = 0; j < dim; j++) {
			double d = (double)x[j] - c[(size_t)p * dim + j];
			s += d * d;
		}
		if (s < bd) {
			bd = s;
			best = (uint32_t)p;
		}
	}
	return best;
}

static void wait_drained(cohort_table *t, const char *model)
{
	for (int i = 0; i < 2000; i++) {
		cohort_persona_info info;
		OK(cohort_persona_describe(t, model, &info));
		if (info.pending == 0)
			return;
		struct timespec ts = { 0, 2000000 };
		nanosleep(&ts, NULL);
	}
	cr_assert_fail("the background worker did not drain its queue");
}

static int count_cb(const void *key, size_t len, void *ctx)
{
	(void)key;
	(void)len;
	(*(uint64_t *)ctx)++;
	return 0;
}

/* Every row (keys 0..n) against the brute-force argmin; sizes and members
 * against the kept personas. */
static void check_all(cohort_table *t, const char *model, int n)
{
	double c[64 * DIM];
	int k = centroids(t, model, c);
	uint64_t count[64] = { 0 }, present = 0;
	int vcol = 0;
	for (int i = 0; i < n; i++) {
		char key[32];
		int kl = keyf(key, i);
		cohort_value v;
		float buf[DIM];
		int st = cohort_get(t, key, (size_t)kl, &vcol, 1, COHORT_NOW,
				    &v, buf, DIM, NULL);
		cr_assert(st >= 0);
		cohort_persona_state ps;
		int gs = cohort_persona_get(t, model, key, (size_t)kl, &ps);
		cr_assert_eq(gs, st);
		if (st != COHORT_ROW_PRESENT)
			continue;
		cr_assert(!ps.pending, "row %d still pending", i);
		uint32_t want = v.type == COHORT_VEC ?
			argmin(c, k, buf, DIM) : COHORT_PERSONA_NONE;
		cr_assert_eq(ps.persona, want, "row %d: kept %u, argmin %u", i,
			     ps.persona, want);
		if (want != COHORT_PERSONA_NONE) {
			count[want]++;
			present++;
		}
	}
	uint64_t sizes[64], ver;
	OK(cohort_persona_sizes(t, model, sizes, 64, &ver));
	for (int p = 0; p < k; p++) {
		cr_assert_eq(sizes[p], count[p], "persona %d: size %llu, rows "
			     "%llu", p, (unsigned long long)sizes[p],
			     (unsigned long long)count[p]);
		uint64_t members = 0, calls = 0;
		OK(cohort_persona_members(t, model, (uint32_t)p, NULL, 0,
					  COHORT_NOW, count_cb, &calls,
					  &members));
		cr_assert_eq(members, count[p]);
		cr_assert_eq(calls, count[p]);
	}
	(void)present;
}

static void train_vec(cohort_table *t, const char *model,
		      cohort_persona_mode mode, uint32_t k)
{
	int in[] = { 0 };
	cohort_persona_def def = { in, 1, mode, 0, 0 };
	cohort_train_opts o = { .k = k, .seed = 3 };
	OK(cohort_persona_train(t, model, &def, &o));
}

/* Random updates: small moves, jumps to other clusters, nulls, deletes,
 * new rows and events that do not touch the inputs. */
static void churn(cohort_table *t, int n, int rounds, int *nrows)
{
	for (int r = 0; r < rounds; r++) {
		int i = (int)(urand() * *nrows);
		char k[32];
		int kl = keyf(k, i);
		double u = urand();
		float v[DIM];
		if (u < 0.4) {
			clustered(v, i % NCLUST, 1.0);
			cohort_field f = { 0, cohort_vec(v, DIM) };
			OK(cohort_put(t, k, (size_t)kl, 2000, &f, 1));
		} else if (u < 0.6) {
			clustered(v, (int)(urand() * NCLUST), 3.0);
			cohort_update up[] = {
				{ 0, COHORT_OP_SET, cohort_vec(v, DIM) },
				{ 1, COHORT_OP_ADD, cohort_f64(1) } };
			OK(cohort_event(t, k, (size_t)kl, 2000, up, 2));
		} else if (u < 0.7) {
			cohort_update up = { 1, COHORT_OP_ADD, cohort_f64(2) };
			OK(cohort_event(t, k, (size_t)kl, 2000, &up, 1));
		} else if (u < 0.75) {
			cohort_field f = { 0, cohort_null() };
			OK(cohort_put(t, k, (size_t)kl, 2000, &f, 1));
		} else if (u < 0.85) {
			cohort_delete(t, k, (size_t)kl);
		} else {
			int j = *nrows < n ? (*nrows)++ : i;
			kl = keyf(k, j);
			clustered(v, (int)(urand() * NCLUST), 2.0);
			cohort_field f = { 0, cohort_vec(v, DIM) };
			OK(cohort_put(t, k, (size_t)kl, 2000, &f, 1));
		}
	}
}

Test(persona, trained_clusters_and_sizes)
{
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	cohort_table *t = vec_table(db, "c", 6000);
	train_vec(t, "p", COHORT_PERSONA_AT_ONCE, NCLUST);
	uint64_t sizes[NCLUST], ver;
	OK(cohort_persona_sizes(t, "p", sizes, NCLUST, &ver));
	cr_assert_eq(ver, 1);
	for (int p = 0; p < NCLUST; p++)
		cr_assert_eq(sizes[p], 1000, "persona %d has %llu rows", p,
			     (unsigned long long)sizes[p]);
	check_all(t, "p", 6000);
	cohort_persona_info info;
	OK(cohort_persona_describe(t, "p", &info));
	cr_assert_eq(info.k, NCLUST);
	cr_assert_eq(info.dim, DIM);
	cr_assert_eq(info.assigned, 6000);
	cohort_close(db);
}

static void argmin_after_churn(cohort_persona_mode mode)
{
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	int n = 4000, nrows = 3000;
	cohort_table *t = vec_table(db, "c", nrows);
	train_vec(t, "p", mode, NCLUST);
	churn(t, n, 20000, &nrows);
	if (mode == COHORT_PERSONA_BACKGROUND)
		wait_drained(t, "p");
	check_all(t, "p", n);
	cohort_close(db);
}

Test(persona, argmin_after_random_updates_at_once)
{
	argmin_after_churn(COHORT_PERSONA_AT_ONCE);
}

Test(persona, argmin_after_random_updates_background)
{
	argmin_after_churn(COHORT_PERSONA_BACKGROUND);
}

Test(persona, many_personas_near_ties)
{
	/* K = 64 centroids on a lattice, rows on and between them: the
	 * kernel's near ties must be settled exactly */
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	cohort_column_def col = { "v", COHORT_VEC, DIM, 0 };
	cohort_table *t;
	OK(cohort_table_create(db, "lat", &col, 1, NULL, &t));
	float cent[64 * DIM];
	for (int p = 0; p < 64; p++)
		for (int j = 0; j < DIM; j++)
			cent[p * DIM + j] = (float)(((p >> (j % 6)) & 1) * 1000 +
						    j * 0.001);
	int in[] = { 0 };
	cohort_persona_def def = { in, 1, COHORT_PERSONA_AT_ONCE, 0, 0 };
	OK(cohort_persona_upload(t, "lat", &def, 64, DIM, cent, NULL, NULL));
	for (int i = 0; i < 3000; i++) {
		float v[DIM];
		int a = (int)(urand() * 64), b = (int)(urand() * 64);
		double w = i % 3 == 0 ? 0.5 : urand();
		for (int j = 0; j < DIM; j++)
			v[j] = (float)(w * cent[a * DIM + j] +
				       (1 - w) * cent[b * DIM + j]);
		char k[32];
		int kl = keyf(k, i);
		cohort_field f = { 0, cohort_vec(v, DIM) };
		OK(cohort_put(t, k, (size_t)kl, 1, &f, 1));
	}
	check_all(t, "lat", 3000);
	cohort_close(db);
}

Test(persona, numeric_inputs_standardised_with_nulls)
{
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	cohort_column_def cols[] = { { "age", COHORT_I32, 0, 0 },
				     { "balance", COHORT_F64, 0, 0 },
				     { "spend", COHORT_DECAY, 0, 3600000 },
				     { "name", COHORT_CAT, 0, 0 } };
	cohort_table *t;
	OK(cohort_table_create(db, "b", cols, 4, NULL, &t));
	for (int i = 0; i < 3000; i++) {
		char k[32];
		int kl = keyf(k, i);
		int g = i % 3;
		cohort_field f[] = {
			{ 0, cohort_i32(20 + g * 20 + (int)(urand() * 5)) },
			{ 1, i % 17 == 0 ? cohort_null() :
				     cohort_f64(g * 50000.0 + urand() * 3000) },
			{ 2, cohort_f64(g * 10 + urand()) } };
		OK(cohort_put(t, k, (size_t)kl, 1000, f, 3));
	}
	int in[] = { 0, 1, 2 };
	cohort_persona_def def = { in, 3, COHORT_PERSONA_AT_ONCE, 0, 0 };
	cohort_train_opts o = { .k = 3, .seed = 1 };
	OK(cohort_persona_train(t, "seg", &def, &o));
	uint64_t sizes[3];
	OK(cohort_persona_sizes(t, "seg", sizes, 3, NULL));
	cr_assert_eq(sizes[0] + sizes[1] + sizes[2], 3000);
	for (int p = 0; p < 3; p++)
		cr_assert(sizes[p] >= 900 && sizes[p] <= 1100,
			  "persona %d: %llu", p, (unsigned long long)sizes[p]);
	/* the centroid comes back in column units */
	double c[3];
	OK(cohort_persona_centroid(t, "seg", 0, NULL, c, NULL, NULL));
	cr_assert(c[0] > 15 && c[0] < 70, "age centroid %f", c[0]);
	/* a key and the same values ad hoc agree, explanation included */
	char k[32];
	int kl = keyf(k, 17);
	cohort_persona_result a, b;
	cr_assert_eq(cohort_persona_assign(t, "seg", k, (size_t)kl, 3, &a),
		     COHORT_ROW_PRESENT);
	cohort_value vals[3];
	int cols3[] = { 0, 1, 2 };
	OK(cohort_get(t, k, (size_t)kl, cols3, 3, 1000, vals, NULL, 0, NULL));
	cr_assert_eq(vals[1].type, COHORT_NULL);
	OK(cohort_persona_assign_values(t, "seg", vals, 3, 3, &b));
	cr_assert_eq(a.persona, b.persona);
	cr_assert_float_eq(a.distance, b.distance, 1e-5);
	cr_assert_eq(a.m, 3);
	cr_assert(a.distances[0] <= a.distances[1] &&
		  a.distances[1] <= a.distances[2]);
	cr_assert(a.nexplain >= 1 && a.nexplain <= 3);
	double sum = 0;
	for (size_t i = 0; i < a.nexplain; i++)
		sum += a.explain[i].contribution;
	double margin = (double)a.distances[1] * a.distances[1] -
		(double)a.distances[0] * a.distances[0];
	cr_assert(fabs(sum - margin) < 1e-3 * (1 + margin),
		  "contributions %f, margin %f", sum, margin);
	/* a typical customer is not anomalous (row 17's balance is null, so
	 * it sits at the mean balance, between the groups) */
	cohort_persona_result typ;
	int kl18 = keyf(k, 18);
	cr_assert_eq(cohort_persona_assign(t, "seg", k, (size_t)kl18, 1, &typ),
		     COHORT_ROW_PRESENT);
	cr_assert(typ.anomaly > 0 && typ.anomaly < 4, "anomaly %f",
		  typ.anomaly);
	kl = keyf(k, 17);
	/* an outlier is anomalous */
	cohort_value odd[] = { cohort_i32(40), cohort_f64(5e6), cohort_f64(10) };
	OK(cohort_persona_assign_values(t, "seg", odd, 3, 1, &b));
	cr_assert(b.anomaly > 10, "outlier anomaly %f", b.anomaly);
	cr_assert_eq(b.explain[0].column, 1, "balance explains the outlier");
	/* all inputs null: no persona */
	cohort_field nul[] = { { 0, cohort_null() }, { 1, cohort_null() },
			       { 2, cohort_null() } };
	OK(cohort_put(t, k, (size_t)kl, 2000, nul, 3));
	cohort_persona_state st;
	OK(cohort_persona_get(t, "seg", k, (size_t)kl, &st));
	cr_assert_eq(st.persona, COHORT_PERSONA_NONE);
	OK(cohort_persona_sizes(t, "seg", sizes, 3, NULL));
	cr_assert_eq(sizes[0] + sizes[1] + sizes[2], 2999);
	cohort_close(db);
}

Test(persona, change_feed_in_order)
{
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	cohort_column_def col = { "v", COHORT_VEC, 2, 0 };
	cohort_table *t;
	OK(cohort_table_create(db, "f", &col, 1, NULL, &t));
	float cent[] = { 0, 0, 10, 10 };
	int in[] = { 0 };
	cohort_persona_def def = { in, 1, COHORT_PERSONA_AT_ONCE, 0, 8 };
	OK(cohort_persona_upload(t, "m", &def, 2, 2, cent, NULL, NULL));
	OK(cohort_persona_name(t, "m", 1, "rich"));
	const char *name;
	OK(cohort_persona_centroid(t, "m", 1, &name, NULL, NULL, NULL));
	cr_assert_str_eq(name, "rich");
	uint64_t cur = 0, lost = 0;
	cohort_persona_change ch[16];
	int n = cohort_persona_changes(t, "m", &cur, ch, 16, &lost);
	cr_assert_eq(n, 1, "the upload's swap is published");
	cr_assert_eq(ch[0].key_len, 0);
	float a[] = { 1, 1 }, b[] = { 9, 9 };
	cohort_field fa = { 0, cohort_vec(a, 2) }, fb = { 0, cohort_vec(b, 2) };
	OK(cohort_put(t, "x", 1, 100, &fa, 1));   /* none -> 0 */
	OK(cohort_put(t, "x", 1, 200, &fb, 1));   /* 0 -> 1 */
	OK(cohort_put(t, "x", 1, 300, &fb, 1));   /* no change */
	OK(cohort_delete(t, "x", 1));             /* 1 -> none */
	n = cohort_persona_changes(t, "m", &cur, ch, 16, &lost);
	cr_assert_eq(n, 3);
	cr_assert_eq(lost, 0);
	cr_assert_eq(ch[0].old_persona, COHORT_PERSONA_NONE);
	cr_assert_eq(ch[0].new_persona, 0);
	cr_assert_eq(ch[0].time, 100);
	cr_assert_eq(ch[1].old_persona, 0);
	cr_assert_eq(ch[1].new_persona, 1);
	cr_assert_eq(ch[1].time, 200);
	cr_assert_eq(ch[2].new_persona, COHORT_PERSONA_NONE);
	cr_assert(ch[0].seq < ch[1].seq && ch[1].seq < ch[2].seq);
	cr_assert_eq(ch[1].key_len, 1);
	cr_assert_eq(ch[1].key[0], 'x');
	/* more changes than kept: the consumer is told how many it lost */
	for (int i = 0; i < 10; i++)
		OK(cohort_put(t, "y", 1, 400 + i, i % 2 ? &fa : &fb, 1));
	n = cohort_persona_changes(t, "m", &cur, ch, 16, &lost);
	cr_assert_eq(n, 8);
	cr_assert_eq(lost, 2);
	n = cohort_persona_changes(t, "m", &cur, ch, 16, &lost);
	cr_assert_eq(n, 0);
	cohort_close(db);
}

static void reopen_check(const char *dir, bool snapshot)
{
	cohort_db *db;
	OK(cohort_open(dir, NULL, &db));
	int nrows = 2000;
	cohort_table *t = vec_table(db, "c", nrows);
	train_vec(t, "p", COHORT_PERSONA_BACKGROUND, NCLUST);
	OK(cohort_persona_name(t, "p", 2, "savers"));
	churn(t, 2500, 3000, &nrows);
	if (snapshot)
		OK(cohort_snapshot(db));
	churn(t, 2500, 1000, &nrows);
	wait_drained(t, "p");
	cohort_persona_state before[2500];
	for (int i = 0; i < 2500; i++) {
		char k[32];
		int kl = keyf(k, i);
		cohort_persona_get(t, "p", k, (size_t)kl, &before[i]);
	}
	double c0[NCLUST * DIM];
	centroids(t, "p", c0);
	OK(cohort_close(db));

	OK(cohort_open(dir, NULL, &db));
	OK(cohort_table_open(db, "c", &t));
	cohort_persona_info info;
	OK(cohort_persona_describe(t, "p", &info));
	cr_assert_eq(info.version, 1);
	cr_assert_eq(info.mode, COHORT_PERSONA_BACKGROUND);
	wait_drained(t, "p");
	double c1[NCLUST * DIM];
	centroids(t, "p", c1);
	cr_assert(memcmp(c0, c1, sizeof(c0)) == 0, "centroids survive");
	const char *name;
	OK(cohort_persona_centroid(t, "p", 2, &name, NULL, NULL, NULL));
	cr_assert_str_eq(name, "savers");
	for (int i = 0; i < 2500; i++) {
		char k[32];
		int kl = keyf(k, i);
		cohort_persona_state s;
		cohort_persona_get(t, "p", k, (size_t)kl, &s);
		cr_assert_eq(s.persona, before[i].persona, "row %d", i);
	}
	check_all(t, "p", 2500);
	OK(cohort_close(db));
}

Test(persona, survives_restart_from_log)
{
	char dir[64];
	tmpdir_make(dir, sizeof dir, "persona");
	reopen_check(dir, false);
}

Test(persona, survives_restart_from_snapshot)
{
	char dir[64];
	tmpdir_make(dir, sizeof dir, "persona");
	reopen_check(dir, true);
}

/* ---- retrain under concurrent writers ---- */
typedef struct wctx {
	cohort_table *t;
	int n, id;
	atomic_bool *stop;
	atomic_long *writes;
} wctx;

static void *writer(void *arg)
{
	wctx *w = arg;
	uint64_t s = (uint64_t)w->id * 7919 + 1;
	while (!atomic_load(w->stop)) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		int i = (int)((s >> 33) % (uint64_t)w->n);
		char k[32];
		int kl = keyf(k, i);
		float v[DIM];
		for (int j = 0; j < DIM; j++)
			v[j] = (float)((((s >> (j * 4)) & 15) % 11) * 2.0);
		cohort_field f = { 0, cohort_vec(v, DIM) };
		cr_assert(cohort_put(w->t, k, (size_t)kl, 3000, &f, 1) == 0);
		atomic_fetch_add(w->writes, 1);
	}
	return NULL;
}

static void retrain_under_writers(cohort_persona_mode mode)
{
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	int n = 20000;
	cohort_table *t = vec_table(db, "c", n);
	train_vec(t, "p", mode, NCLUST);
	atomic_bool stop = false;
	atomic_long writes = 0;
	pthread_t th[2];
	wctx w[2];
	for (int i = 0; i < 2; i++) {
		w[i] = (wctx){ t, n, i, &stop, &writes };
		pthread_create(&th[i], NULL, writer, &w[i]);
	}
	/* retrain in the background with k = 8 while they write; readers
	 * see whole versions: sizes always sum to n (no row lacks inputs) */
	cohort_train_opts o = { .k = 8, .seed = 9, .background = true };
	OK(cohort_persona_train(t, "p", NULL, &o));
	uint64_t last = 1;
	for (int spin = 0; spin < 20000; spin++) {
		uint64_t sizes[8] = { 0 }, ver;
		OK(cohort_persona_sizes(t, "p", sizes, 8, &ver));
		uint64_t sum = 0;
		for (int p = 0; p < 8; p++)
			sum += sizes[p];
		if (mode == COHORT_PERSONA_AT_ONCE)
			cr_assert_eq(sum, (uint64_t)n, "version %llu: sizes "
				     "sum to %llu", (unsigned long long)ver,
				     (unsigned long long)sum);
		cr_assert(ver >= last);
		last = ver;
		if (ver == 1 && spin % 64 == 0) {
			/* a reader of one row sees a whole version too */
			cohort_persona_state ps;
			OK(cohort_persona_get(t, "p", "cust000001", 10, &ps));
			cr_assert(ps.persona < (ps.version == 1 ? NCLUST : 8u));
		}
		cohort_persona_info info;
		OK(cohort_persona_describe(t, "p", &info));
		cr_assert_eq(info.k, info.version == 1 ? NCLUST : 8u);
		if (info.version == 2 && !info.training)
			break;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	cr_assert_eq(last, 2, "the retrain finished");
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	cr_assert(atomic_load(&writes) > 100);
	if (mode == COHORT_PERSONA_BACKGROUND)
		wait_drained(t, "p");
	check_all(t, "p", n);
	cohort_close(db);
}

Test(persona, retrain_swaps_under_writers_at_once)
{
	retrain_under_writers(COHORT_PERSONA_AT_ONCE);
}

Test(persona, retrain_swaps_under_writers_background)
{
	retrain_under_writers(COHORT_PERSONA_BACKGROUND);
}

Test(persona, members_with_filter)
{
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	cohort_table *t = vec_table(db, "c", 3000);
	train_vec(t, "p", COHORT_PERSONA_AT_ONCE, NCLUST);
	cohort_filter *f;
	OK(cohort_filter_new(t, &f));
	int root = cohort_filter_cmp(f, 2, COHORT_EQ, cohort_i32(1));
	OK(root);
	uint64_t total = 0;
	for (uint32_t p = 0; p < NCLUST; p++) {
		uint64_t m = 0, calls = 0;
		OK(cohort_persona_members(t, "p", p, f, root, COHORT_NOW,
					  count_cb, &calls, &m));
		cr_assert_eq(m, calls);
		total += m;
	}
	uint64_t want;
	OK(cohort_filter_count(f, root, COHORT_NOW, &want));
	cr_assert_eq(total, want);
	cr_assert_eq(want, 1000);
	cohort_filter_free(f);
	cohort_close(db);
}

Test(persona, drop_and_errors)
{
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	cohort_column_def cols[] = { { "v", COHORT_VEC, 4, 0 },
				     { "c", COHORT_CAT, 0, 0 },
				     { "x", COHORT_F32, 0, 0 } };
	cohort_table *t;
	OK(cohort_table_create(db, "e", cols, 3, NULL, &t));
	int vin[] = { 0 }, cin[] = { 1 }, mix[] = { 0, 2 }, bad[] = { 9 };
	cohort_persona_def d = { vin, 1, COHORT_PERSONA_AT_ONCE, 0, 0 };
	cohort_train_opts o = { .k = 2 };
	cr_assert_eq(cohort_persona_train(t, "m", &d, &o), COHORT_EINVAL,
		     "an empty table has fewer rows than k");
	cohort_persona_def dc = { cin, 1, COHORT_PERSONA_AT_ONCE, 0, 0 };
	cr_assert_eq(cohort_persona_train(t, "m", &dc, &o), COHORT_EOP);
	cohort_persona_def dm = { mix, 2, COHORT_PERSONA_AT_ONCE, 0, 0 };
	cr_assert_eq(cohort_persona_train(t, "m", &dm, &o), COHORT_EOP);
	cohort_persona_def db_ = { bad, 1, COHORT_PERSONA_AT_ONCE, 0, 0 };
	cr_assert_eq(cohort_persona_train(t, "m", &db_, &o), COHORT_ENOCOLUMN);
	cr_assert_eq(cohort_persona_train(t, "m", NULL, &o), COHORT_EINVAL);
	cr_assert_eq(cohort_persona_train(t, "bad name", &d, &o),
		     COHORT_EBADNAME);
	cohort_train_opts o0 = { .k = 0 };
	cr_assert_eq(cohort_persona_train(t, "m", &d, &o0), COHORT_EINVAL);
	float c[8] = { 0, 0, 0, 0, 1, 1, 1, 1 };
	cr_assert_eq(cohort_persona_upload(t, "m", &d, 2, 3, c, NULL, NULL),
		     COHORT_EDIM);
	c[3] = NAN;
	cr_assert_eq(cohort_persona_upload(t, "m", &d, 2, 4, c, NULL, NULL),
		     COHORT_ENAN);
	c[3] = 0;
	OK(cohort_persona_upload(t, "m", &d, 2, 4, c, NULL, NULL));
	cr_assert_eq(cohort_persona_upload(t, "m", &dm, 2, 4, c, NULL, NULL),
		     COHORT_EINVAL, "other inputs");
	cohort_persona_result r;
	cr_assert_eq(cohort_persona_assign(t, "m", "k", 1, 0, &r),
		     COHORT_EINVAL);
	cr_assert_eq(cohort_persona_assign(t, "m", "k", 1, 1, &r),
		     COHORT_ROW_MISSING);
	cr_assert_eq(cohort_persona_assign(t, "zz", "k", 1, 1, &r),
		     COHORT_ENOTFOUND);
	cr_assert_eq(cohort_persona_name(t, "m", 2, "x"), COHORT_ERANGE);
	uint64_t sizes[1];
	cr_assert_eq(cohort_persona_sizes(t, "m", sizes, 1, NULL),
		     COHORT_ERANGE);
	float v3[3] = { 1, 2, 3 };
	cohort_value vv = cohort_vec(v3, 3);
	cr_assert_eq(cohort_persona_assign_values(t, "m", &vv, 1, 1, &r),
		     COHORT_EDIM);
	cohort_value num = cohort_f64(1);
	cr_assert_eq(cohort_persona_assign_values(t, "m", &num, 1, 1, &r),
		     COHORT_ETYPE);
	OK(cohort_persona_drop(t, "m"));
	cr_assert_eq(cohort_persona_drop(t, "m"), COHORT_ENOTFOUND);
	size_t nm;
	OK(cohort_persona_models(t, NULL, 0, &nm));
	cr_assert_eq(nm, 0);
	/* writes go on without the model */
	float v4[4] = { 1, 2, 3, 4 };
	cohort_field f = { 0, cohort_vec(v4, 4) };
	OK(cohort_put(t, "k", 1, 1, &f, 1));
	cohort_close(db);
}

/* A tiny sd (standardised inputs beyond float's range) or huge vectors
 * (squared distances beyond it): rows still get a valid persona, the
 * nearest one. */
Test(persona, overflowing_inputs_get_valid_personas)
{
	cohort_db *db;
	cr_assert_eq(cohort_open(NULL, NULL, &db), 0);
	cohort_column_def cols[] = { { "a", COHORT_I32, 0, 0 },
				     { "b", COHORT_F64, 0, 0 },
				     { "v", COHORT_VEC, 2, 0 } };
	cohort_table *t;
	cr_assert_eq(cohort_table_create(db, "t", cols, 3, NULL, &t), 0);
	for (int i = 0; i < 32; i++) {
		char k[32];
		int kl = keyf(k, i);
		float v[2] = { (i % 2 ? 1e30f : -1e30f), 3e38f };
		cohort_field f[] = { { 0, cohort_i32(i) },
				     { 1, cohort_f64(i * 0.5) },
				     { 2, cohort_vec(v, 2) } };
		cr_assert_eq(cohort_put(t, k, (size_t)kl, 1000, f, 3), 0);
	}
	int num[] = { 0, 1 }, vec[] = { 2 };
	cohort_persona_def dn = { num, 2, COHORT_PERSONA_AT_ONCE, 0, 0 };
	cohort_persona_def dv = { vec, 1, COHORT_PERSONA_AT_ONCE, 0, 0 };
	float cn[4] = { 0, 0, 1, 1 };
	double mean[2] = { 10, 5 }, sd[2] = { 1e-300, 3 };
	cr_assert_eq(cohort_persona_upload(t, "n", &dn, 2, 2, cn, mean, sd), 0,
		     "%s", cohort_errdetail());
	float cv[4] = { -1e30f, 3e38f, 1e30f, 3e38f };
	cr_assert_eq(cohort_persona_upload(t, "v", &dv, 2, 2, cv, NULL, NULL),
		     0, "%s", cohort_errdetail());
	uint64_t sizes[2], ver;
	cr_assert_eq(cohort_persona_sizes(t, "n", sizes, 2, &ver), 0);
	cr_assert_eq(sizes[0] + sizes[1], 32);
	cr_assert_eq(cohort_persona_sizes(t, "v", sizes, 2, &ver), 0);
	cr_assert_eq(sizes[0], 16);
	cr_assert_eq(sizes[1], 16);
	for (int i = 0; i < 32; i++) {
		char k[32];
		int kl = keyf(k, i);
		cohort_persona_state st;
		cr_assert_eq(cohort_persona_get(t, "v", k, (size_t)kl, &st), 1);
		cr_assert_eq(st.persona, (uint32_t)(i % 2), "row %d", i);
		cr_assert_eq(cohort_persona_get(t, "n", k, (size_t)kl, &st), 1);
		cr_assert_lt(st.persona, 2u, "row %d", i);
	}
	cohort_close(db);
}
