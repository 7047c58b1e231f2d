/*
 * test_ann.c -- similarity indexes through the public API: recall against
 * exact search, every acknowledged write visible to the next query (the
 * pending set), churn, filters at 50%, 5% and 0.5% (exactly k results),
 * persona filters, cosine and inner product, restart from the log and from
 * a snapshot with identical answers, concurrent writers and queries, and
 * the errors.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cohort.h"
#include "store_int.h"
#include "tmpdir.h"

#define OK(x)                                                                 \
	do {                                                                  \
		int rc_ = (x);                                                \
		cr_assert(rc_ >= 0, "%s: %s (%s)", #x, cohort_strerror(rc_),  \
			  cohort_errdetail());                                \
	} while (0)

#define D 16
#define K 10

static uint64_t rs = 11;

static double urand(void)
{
	uint64_t z = (rs += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

static float cent[40][D];

static void centres(void)
{
	for (int c = 0; c < 40; c++)
		for (int j = 0; j < D; j++)
			cent[c][j] = (float)(urand() * 2 - 1);
}

static void vec_near(float *v, int c)
{
	for (int j = 0; j < D; j++)
		v[j] = cent[c][j] + (float)((urand() - 0.5) * 0.3);
}

static int keyf(char *b, int i)
{
	return snprintf(b, 32, "u%07d", i);
}

/* A table of n rows: v (vec), grp (i32: i % 200), and the truth copy. */
static cohort_table *table(cohort_db *db, int n, float *truth)
{
	centres();
	cohort_column_def cols[] = { { "v", COHORT_VEC, D, 0 },
				     { "grp", COHORT_I32, 0, 0 } };
	cohort_table *t;
	OK(cohort_table_create(db, "c", cols, 2, NULL, &t));
	for (int i = 0; i < n; i++) {
		float *v = truth + (size_t)i * D;
		vec_near(v, (int)(urand() * 40));
		char k[32];
		int kl = keyf(k, i);
		cohort_field f[] = { { 0, cohort_vec(v, D) },
				     { 1, cohort_i32(i % 200) } };
		OK(cohort_put(t, k, (size_t)kl, 1000, f, 2));
	}
	return t;
}

static float l2(const float *a, const float *b)
{
	double s = 0;
	for (int j = 0; j < D; j++)
		s += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
	return (float)s;
}

/* Exact top k among alive rows passing ok (NULL: all), not `self`. */
static size_t exact(const float *truth, const uint8_t *alive, int n,
		    const float *q, size_t k, bool (*ok)(int), int self,
		    int *out)
{
	float best[1000];
	size_t have = 0;
	for (int i = 0; i < n; i++) {
		if ((alive && !alive[i]) || (ok && !ok(i)) || i == self)
			continue;
		float d = l2(q, truth + (size_t)i * D);
		if (have == k && d >= best[k - 1])
			continue;
		size_t r = have < k ? have++ : k - 1;
		while (r > 0 && best[r - 1] > d) {
			best[r] = best[r - 1];
			out[r] = out[r - 1];
			r--;
		}
		best[r] = d;
		out[r] = i;
	}
	return have;
}

static int key_id(const cohort_neighbor *nb)
{
	char b[32];
	memcpy(b, nb->key, nb->key_len);
	b[nb->key_len] = 0;
	return atoi(b + 1);
}

/* recall@k of nq queries by vector (or by key when by_key). */
static double recall(cohort_table *t, const float *truth, const uint8_t *alive,
		     int n, int nq, size_t k, const cohort_filter *f, int root,
		     bool (*ok)(int), bool by_key)
{
	size_t hit = 0, want = 0;
	cohort_neighbor *out = malloc(k * sizeof(*out));
	int *tr = malloc(k * sizeof(int));
	for (int qi = 0; qi < nq; qi++) {
		int self = -1;
		float q[D];
		cohort_knn_query kq = { .k = k, .filter = f, .root = root,
					.at = COHORT_NOW };
		char kb[32];
		if (by_key) {
			do
				self = (int)(urand() * n);
			while (alive && !alive[self]);
			memcpy(q, truth + (size_t)self * D, sizeof(q));
			kq.key = kb;
			kq.key_len = (size_t)keyf(kb, self);
		} else {
			vec_near(q, (int)(urand() * 40));
			kq.vec = q;
			kq.dim = D;
		}
		size_t nt = exact(truth, alive, n, q, k, ok, self, tr);
		size_t got;
		OK(cohort_knn(t, "ix", &kq, out, &got));
		cr_assert_eq(got, nt, "query %d: %zu results, %zu rows match",
			     qi, got, nt);
		for (size_t i = 0; i < got; i++) {
			int id = key_id(&out[i]);
			cr_assert(id != self, "the query key came back");
			cr_assert(!alive || alive[id], "deleted row %d came back",
				  id);
			cr_assert(!ok || ok(id), "row %d fails the filter", id);
			cr_assert_float_eq(out[i].distance,
					   l2(q, truth + (size_t)id * D), 1e-3);
			for (size_t j = 0; j < nt; j++)
				hit += tr[j] == id;
		}
		want += nt;
	}
	free(out);
	free(tr);
	return want ? (double)hit / (double)want : 1;
}

Test(ann, recall_by_vector_and_key)
{
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	int n = 20000;
	float *truth = malloc((size_t)n * D * sizeof(float));
	cohort_table *t = table(db, n, truth);
	OK(cohort_index_create(t, "ix", 0, NULL));
	cohort_index_info in;
	OK(cohort_index_describe(t, "ix", &in));
	cr_assert_eq(in.nodes, (uint64_t)n);
	cr_assert_eq(in.pending, 0);
	cr_assert(in.lo < -1 && in.hi > 1);
	double r = recall(t, truth, NULL, n, 200, K, NULL, 0, NULL, false);
	cr_assert(r >= 0.95, "recall@10 by vector %.4f", r);
	r = recall(t, truth, NULL, n, 200, K, NULL, 0, NULL, true);
	cr_assert(r >= 0.95, "recall@10 by key %.4f", r);
	/* k = 1000 */
	r = recall(t, truth, NULL, n, 5, 1000, NULL, 0, NULL, false);
	cr_assert(r >= 0.9, "recall@1000 %.4f", r);
	cohort_close(db);
	free(truth);
}

Test(ann, writes_are_visible_at_once)
{
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	int n = 5000;
	float *truth = malloc((size_t)(n + 1000) * D * sizeof(float));
	cohort_table *t = table(db, n, truth);
	OK(cohort_index_create(t, "ix", 0, NULL));
	uint8_t *alive = calloc((size_t)n + 1000, 1);
	memset(alive, 1, (size_t)n);
	int total = n;
	for (int round = 0; round < 300; round++) {
		char k[32];
		double u = urand();
		int i;
		if (u < 0.3) {                    /* a new row */
			i = total++;
			vec_near(truth + (size_t)i * D, (int)(urand() * 40));
			alive[i] = 1;
		} else {
			i = (int)(urand() * total);
			if (!alive[i])
				continue;
		}
		int kl = keyf(k, i);
		if (u >= 0.3 && u < 0.5) {        /* delete */
			OK(cohort_delete(t, k, (size_t)kl));
			alive[i] = 0;
		} else {                          /* put (new or moved) */
			if (u >= 0.5)
				vec_near(truth + (size_t)i * D,
					 (int)(urand() * 40));
			cohort_field f = { 0, cohort_vec(truth + (size_t)i * D,
							 D) };
			OK(cohort_put(t, k, (size_t)kl, 2000, &f, 1));
		}
		/* the very next query sees it: its own vector finds it */
		if (alive[i]) {
			cohort_neighbor nb[1];
			size_t got;
			cohort_knn_query q = { .vec = truth + (size_t)i * D,
					       .dim = D, .k = 1 };
			OK(cohort_knn(t, "ix", &q, nb, &got));
			cr_assert_eq(got, 1);
			cr_assert_eq(key_id(&nb[0]), i, "round %d: got %d at "
				     "%g", round, key_id(&nb[0]),
				     (double)nb[0].distance);
			cr_assert_float_eq(nb[0].distance, 0, 1e-6);
		} else {
			cohort_neighbor nb[K];
			size_t got;
			cohort_knn_query q = { .vec = truth + (size_t)i * D,
					       .dim = D, .k = K };
			OK(cohort_knn(t, "ix", &q, nb, &got));
			for (size_t j = 0; j < got; j++)
				cr_assert_neq(key_id(&nb[j]), i);
		}
	}
	double r = recall(t, truth, alive, total, 100, K, NULL, 0, NULL,
			  false);
	cr_assert(r >= 0.95, "recall@10 while pending %.4f", r);
	OK(cohort_index_wait(t, "ix"));
	r = recall(t, truth, alive, total, 100, K, NULL, 0, NULL, false);
	cr_assert(r >= 0.95, "recall@10 after the worker %.4f", r);
	cohort_close(db);
	free(truth);
	free(alive);
}

Test(ann, churn_keeps_recall)
{
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	int n = 20000;
	float *truth = malloc((size_t)n * D * sizeof(float));
	cohort_table *t = table(db, n, truth);
	OK(cohort_index_create(t, "ix", 0, NULL));
	uint8_t *alive = malloc((size_t)n);
	memset(alive, 1, (size_t)n);
	for (int i = 0; i < n; i++) {
		double u = urand();
		char k[32];
		int kl = keyf(k, i);
		if (u < 0.3) {
			OK(cohort_delete(t, k, (size_t)kl));
			alive[i] = 0;
		} else if (u < 0.6) {
			vec_near(truth + (size_t)i * D, (int)(urand() * 40));
			cohort_field f = { 0, cohort_vec(truth + (size_t)i * D,
							 D) };
			OK(cohort_put(t, k, (size_t)kl, 2000, &f, 1));
		}
	}
	OK(cohort_index_wait(t, "ix"));
	double r = recall(t, truth, alive, n, 200, K, NULL, 0, NULL, false);
	cr_assert(r >= 0.95, "recall@10 after churn %.4f", r);
	cohort_close(db);
	free(truth);
	free(alive);
}

static int sel_mod;
static bool sel_ok(int i)
{
	return (i % 200) < sel_mod;
}

Test(ann, filters_give_exactly_k)
{
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	int n = 20000;
	float *truth = malloc((size_t)n * D * sizeof(float));
	cohort_table *t = table(db, n, truth);
	OK(cohort_index_create(t, "ix", 0, NULL));
	int mods[] = { 100, 10, 1 };          /* 50%, 5%, 0.5% */
	for (int m = 0; m < 3; m++) {
		sel_mod = mods[m];
		cohort_filter *f;
		OK(cohort_filter_new(t, &f));
		int root = cohort_filter_cmp(f, 1, COHORT_LT,
					     cohort_i32(mods[m]));
		OK(root);
		double r = recall(t, truth, NULL, n, 100, K, f, root, sel_ok,
				  false);
		cr_assert(r >= 0.95, "recall@10 at %d/200: %.4f", mods[m], r);
		cohort_filter_free(f);
	}
	/* fewer matching rows than k: all of them */
	cohort_filter *f;
	OK(cohort_filter_new(t, &f));
	int root = cohort_filter_cmp(f, 1, COHORT_EQ, cohort_i32(7));
	cohort_neighbor nb[200];
	size_t got;
	cohort_knn_query q = { .vec = truth, .dim = D, .k = 200, .filter = f,
			       .root = root };
	OK(cohort_knn(t, "ix", &q, nb, &got));
	cr_assert_eq(got, 100);
	cohort_filter_free(f);
	cohort_close(db);
	free(truth);
}

static uint32_t *persona_of;
static uint32_t want_persona;
static bool persona_ok(int i)
{
	return persona_of[i] == want_persona;
}

Test(ann, persona_filter)
{
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	int n = 10000;
	float *truth = malloc((size_t)n * D * sizeof(float));
	cohort_table *t = table(db, n, truth);
	OK(cohort_index_create(t, "ix", 0, NULL));
	int in[] = { 0 };
	cohort_persona_def def = { in, 1, COHORT_PERSONA_AT_ONCE, 0, 0 };
	cohort_train_opts o = { .k = 8, .seed = 2 };
	OK(cohort_persona_train(t, "seg", &def, &o));
	persona_of = malloc((size_t)n * sizeof(uint32_t));
	for (int i = 0; i < n; i++) {
		char k[32];
		int kl = keyf(k, i);
		cohort_persona_state st;
		OK(cohort_persona_get(t, "seg", k, (size_t)kl, &st));
		persona_of[i] = st.persona;
	}
	want_persona = 3;
	cohort_filter *f;
	OK(cohort_filter_new(t, &f));
	int root = cohort_filter_persona(f, "seg", 3);
	OK(root);
	double r = recall(t, truth, NULL, n, 100, K, f, root, persona_ok,
			  false);
	cr_assert(r >= 0.95, "recall@10 in persona 3: %.4f", r);
	int bad = cohort_filter_persona(f, "nope", 0);
	OK(bad);
	uint64_t cnt;
	cr_assert_eq(cohort_filter_count(f, bad, COHORT_NOW, &cnt),
		     COHORT_ENOTFOUND);
	cohort_filter_free(f);
	free(persona_of);
	cohort_close(db);
	free(truth);
}

Test(ann, cosine_and_inner_product)
{
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	int n = 5000;
	float *truth = malloc((size_t)n * D * sizeof(float));
	cohort_table *t = table(db, n, truth);
	cohort_index_opts oc = { .metric = COHORT_METRIC_COSINE };
	cohort_index_opts oi = { .metric = COHORT_METRIC_IP };
	OK(cohort_index_create(t, "cos", 0, &oc));
	OK(cohort_index_create(t, "ip", 0, &oi));
	const char *names[] = { "cos", "ip" };
	for (int m = 0; m < 2; m++) {
		size_t hit = 0;
		for (int qi = 0; qi < 50; qi++) {
			float q[D];
			vec_near(q, qi % 40);
			double qn = 0;
			for (int j = 0; j < D; j++)
				qn += (double)q[j] * q[j];
			/* exact top 10 */
			float best[K];
			int tr[K];
			size_t have = 0;
			for (int i = 0; i < n; i++) {
				const float *v = truth + (size_t)i * D;
				double ip = 0, vn = 0;
				for (int j = 0; j < D; j++) {
					ip += (double)q[j] * v[j];
					vn += (double)v[j] * v[j];
				}
				float d = m == 0 ?
					(float)(1 - ip / sqrt(qn * vn)) :
					(float)-ip;
				if (have == K && d >= best[K - 1])
					continue;
				size_t r = have < K ? have++ : K - 1;
				while (r > 0 && best[r - 1] > d) {
					best[r] = best[r - 1];
					tr[r] = tr[r - 1];
					r--;
				}
				best[r] = d;
				tr[r] = i;
			}
			cohort_neighbor nb[K];
			size_t got;
			cohort_knn_query kq = { .vec = q, .dim = D, .k = K,
						.ef = 128 };
			OK(cohort_knn(t, names[m], &kq, nb, &got));
			cr_assert_eq(got, K);
			for (size_t i = 0; i < got; i++) {
				for (int j = 0; j < K; j++)
					hit += tr[j] == key_id(&nb[i]);
				if (i == 0 && key_id(&nb[0]) == tr[0])
					cr_assert_float_eq(nb[0].distance,
							   best[0], 1e-4);
			}
		}
		cr_assert(hit >= 0.95 * 50 * K, "%s recall %.3f", names[m],
			  hit / (50.0 * K));
	}
	cohort_close(db);
	free(truth);
}

static void same_answers(cohort_table *a_t, cohort_neighbor (*before)[K],
			 const float *qs, int nq)
{
	for (int qi = 0; qi < nq; qi++) {
		cohort_neighbor nb[K];
		size_t got;
		cohort_knn_query q = { .vec = qs + (size_t)qi * D, .dim = D,
				       .k = K };
		OK(cohort_knn(a_t, "ix", &q, nb, &got));
		cr_assert_eq(got, K);
		for (int i = 0; i < K; i++) {
			cr_assert_eq(nb[i].key_len, before[qi][i].key_len);
			cr_assert(memcmp(nb[i].key, before[qi][i].key,
					 nb[i].key_len) == 0,
				  "query %d rank %d differs", qi, i);
		}
	}
}

static void restart(bool snapshot)
{
	char dir[64];
	tmpdir_make(dir, sizeof dir, "ann");
	cohort_db *db;
	OK(cohort_open(dir, NULL, &db));
	int n = 6000, nq = 50;
	float *truth = malloc((size_t)n * D * sizeof(float));
	cohort_table *t = table(db, n, truth);
	OK(cohort_index_create(t, "ix", 0, NULL));
	for (int i = 0; i < n; i += 5) {
		char k[32];
		int kl = keyf(k, i);
		OK(cohort_delete(t, k, (size_t)kl));
	}
	if (snapshot)
		OK(cohort_snapshot(db));
	for (int i = 1; i < n; i += 7) {
		char k[32];
		int kl = keyf(k, i);
		vec_near(truth + (size_t)i * D, 3);
		cohort_field f = { 0, cohort_vec(truth + (size_t)i * D, D) };
		OK(cohort_put(t, k, (size_t)kl, 3000, &f, 1));
	}
	OK(cohort_index_wait(t, "ix"));
	float qs[50 * D];
	for (int i = 0; i < nq; i++)
		vec_near(qs + i * D, i % 40);
	cohort_neighbor before[50][K];
	for (int qi = 0; qi < nq; qi++) {
		size_t got;
		cohort_knn_query q = { .vec = qs + qi * D, .dim = D, .k = K };
		OK(cohort_knn(t, "ix", &q, before[qi], &got));
	}
	cohort_index_info b;
	OK(cohort_index_describe(t, "ix", &b));
	OK(cohort_close(db));

	OK(cohort_open(dir, NULL, &db));
	OK(cohort_table_open(db, "c", &t));
	OK(cohort_index_wait(t, "ix"));
	cohort_index_info a;
	OK(cohort_index_describe(t, "ix", &a));
	cr_assert_eq(a.nodes, b.nodes);
	cr_assert_eq(a.lo, b.lo);
	same_answers(t, before, qs, nq);
	OK(cohort_close(db));
	free(truth);
}

Test(ann, close_and_reopen_same_answers)
{
	restart(false);
}

Test(ann, snapshot_more_writes_reopen_same_answers)
{
	restart(true);
}

/* ---- concurrent writers and queries ---- */
typedef struct tctx {
	cohort_table *t;
	int id, n;
	atomic_bool *stop;
} tctx;

static void *writer(void *arg)
{
	tctx *x = arg;
	uint64_t s = (uint64_t)x->id * 977 + 3;
	for (int r = 0; r < 3000; r++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		/* each writer its own keys, so "read your write" holds */
		int i = (int)((s >> 33) % (uint64_t)(x->n / 2)) * 2 + x->id - 1;
		char k[32];
		int kl = keyf(k, i);
		float v[D];
		for (int j = 0; j < D; j++)
			v[j] = (float)(((s >> (j * 3)) & 63) / 32.0 - 1);
		if ((s >> 59) == 0) {
			cohort_delete(x->t, k, (size_t)kl);
		} else {
			cohort_field f[] = { { 0, cohort_vec(v, D) },
					     { 1, cohort_i32(i % 200) } };
			cr_assert_eq(cohort_put(x->t, k, (size_t)kl, 5, f, 2),
				     0);
			/* read your write, exactly: a selective filter (the
			 * row's group, 1/200 of the rows) scans exactly */
			cohort_filter *flt;
			cr_assert_eq(cohort_filter_new(x->t, &flt), 0);
			int root = cohort_filter_cmp(flt, 1, COHORT_EQ,
						     cohort_i32(i % 200));
			cohort_neighbor nb[1];
			size_t got;
			cohort_knn_query q = { .vec = v, .dim = D, .k = 1,
					       .filter = flt, .root = root };
			cr_assert_eq(cohort_knn(x->t, "ix", &q, nb, &got), 0);
			cr_assert_eq(got, 1);
			cr_assert_float_eq(nb[0].distance, 0, 1e-6);
			cohort_filter_free(flt);
			/* and through the graph and the pending rows */
			cohort_knn_query g = { .vec = v, .dim = D, .k = 5 };
			cohort_neighbor nb5[5];
			cr_assert_eq(cohort_knn(x->t, "ix", &g, nb5, &got), 0);
			cr_assert_eq(got, 5);
		}
	}
	return NULL;
}

static void *reader(void *arg)
{
	tctx *x = arg;
	while (!atomic_load(x->stop)) {
		float q[D];
		vec_near(q, 5);
		cohort_neighbor nb[K];
		size_t got;
		cohort_knn_query kq = { .vec = q, .dim = D, .k = K };
		cr_assert_eq(cohort_knn(x->t, "ix", &kq, nb, &got), 0);
		cr_assert_eq(got, K);
		for (size_t i = 1; i < got; i++)
			cr_assert(nb[i - 1].distance <= nb[i].distance);
	}
	return NULL;
}

Test(ann, concurrent_writers_and_queries)
{
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	int n = 8000;
	float *truth = malloc((size_t)n * D * sizeof(float));
	cohort_table *t = table(db, n, truth);
	OK(cohort_index_create(t, "ix", 0, NULL));
	atomic_bool stop = false;
	tctx w[3] = { { t, 1, n, &stop }, { t, 2, n, &stop },
		      { t, 3, n, &stop } };
	pthread_t th[3];
	pthread_create(&th[0], NULL, writer, &w[0]);
	pthread_create(&th[1], NULL, writer, &w[1]);
	pthread_create(&th[2], NULL, reader, &w[2]);
	pthread_join(th[0], NULL);
	pthread_join(th[1], NULL);
	atomic_store(&stop, true);
	pthread_join(th[2], NULL);
	OK(cohort_index_wait(t, "ix"));
	cohort_close(db);
	free(truth);
}

/* The slot of key k (white box: the key map under k's stripe). */
static int64_t slot_of(cohort_table *t, const char *k)
{
	uint64_t h = key_hash(k, strlen(k));
	stripe *s = stripe_of(t, h);
	pthread_rwlock_rdlock(&s->lock);
	int64_t slot = keymap_find(t, s, h, k, (uint32_t)strlen(k));
	pthread_rwlock_unlock(&s->lock);
	return slot;
}

/* A key named with prefix whose stripe is not that of avoid's hash. */
static void key_off_stripe(char *out, const char *prefix, uint64_t avoid)
{
	for (int i = 0;; i++) {
		snprintf(out, 32, "%s%d", prefix, i);
		if (key_hash(out, strlen(out)) >> 56 != avoid >> 56)
			return;
	}
}

/* A deleted row's slot is not given to a new key (of another stripe)
 * while a reader holds the stripe it found the slot by: a query or the
 * index's worker that reached the slot through the old key would read the
 * new row as it is written, under the wrong lock (ThreadSanitizer caught
 * it in tests/tsan/ann.c). Once that stripe is free the slot is reused, and
 * the index answers with the new rows. */
Test(ann, a_freed_slot_is_not_reused_under_a_reader_of_its_old_key)
{
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	cohort_column_def col = { "v", COHORT_VEC, D, 0 };
	cohort_table *t;
	OK(cohort_table_create(db, "t", &col, 1, NULL, &t));
	float v[D];
	for (int i = 0; i < 50; i++) {
		char k[32];
		keyf(k, i);
		vec_near(v, i % 40);
		cohort_field f = { 0, cohort_vec(v, D) };
		OK(cohort_put(t, k, strlen(k), 1, &f, 1));
	}
	OK(cohort_index_create(t, "ix", 0, NULL));
	OK(cohort_index_wait(t, "ix"));

	const char *old = "u0000007";
	int64_t freed = slot_of(t, old);
	cr_assert_geq(freed, 0);
	OK(cohort_delete(t, old, strlen(old)));
	uint64_t oh = key_hash(old, strlen(old));
	char b[32], c[32];
	key_off_stripe(b, "b", oh);
	key_off_stripe(c, "c", oh);
	float vb[D], vc[D];
	for (int j = 0; j < D; j++) {
		vb[j] = 5.0f + (float)j;
		vc[j] = -5.0f - (float)j;
	}

	/* a reader holds the old key's stripe: the new key gets another
	 * slot, without waiting for it */
	stripe *os = stripe_of(t, oh);
	pthread_rwlock_rdlock(&os->lock);
	cohort_field fb = { 0, cohort_vec(vb, D) };
	OK(cohort_put(t, b, strlen(b), 2, &fb, 1));
	pthread_rwlock_unlock(&os->lock);
	int64_t sb = slot_of(t, b);
	cr_assert_geq(sb, 0);
	cr_assert_neq(sb, freed, "slot %lld went to '%s' while its old key's "
		      "stripe was held", (long long)sb, b);

	/* nobody holds it: the next new key takes the slot */
	cohort_field fc = { 0, cohort_vec(vc, D) };
	OK(cohort_put(t, c, strlen(c), 2, &fc, 1));
	cr_assert_eq(slot_of(t, c), freed);

	OK(cohort_index_wait(t, "ix"));
	const float *q[2] = { vb, vc };
	const char *want[2] = { b, c };
	for (int i = 0; i < 2; i++) {
		cohort_neighbor nb[1];
		size_t n;
		cohort_knn_query kq = { .vec = q[i], .dim = D, .k = 1 };
		OK(cohort_knn(t, "ix", &kq, nb, &n));
		cr_assert_eq(n, 1);
		cr_assert_eq(nb[0].key_len, strlen(want[i]));
		cr_assert_eq(memcmp(nb[0].key, want[i], nb[0].key_len), 0);
		cr_assert_float_eq(nb[0].distance, 0.0f, 1e-4);
	}
	OK(cohort_close(db));
}

Test(ann, errors)
{
	cohort_db *db;
	OK(cohort_open(NULL, NULL, &db));
	float truth[100 * D];
	cohort_table *t = table(db, 100, truth);
	cr_assert_eq(cohort_index_create(t, "ix", 1, NULL), COHORT_EOP);
	cr_assert_eq(cohort_index_create(t, "ix", 9, NULL), COHORT_ENOCOLUMN);
	cr_assert_eq(cohort_index_create(t, "i x", 0, NULL), COHORT_EBADNAME);
	cohort_index_opts bad = { .M = 1000 };
	cr_assert_eq(cohort_index_create(t, "ix", 0, &bad), COHORT_EINVAL);
	OK(cohort_index_create(t, "ix", 0, NULL));
	cr_assert_eq(cohort_index_create(t, "ix", 0, NULL), COHORT_EEXIST);
	cohort_neighbor nb[K];
	size_t got;
	cohort_knn_query q = { .vec = truth, .dim = D - 1, .k = K };
	cr_assert_eq(cohort_knn(t, "ix", &q, nb, &got), COHORT_EDIM);
	q.dim = D;
	q.k = 0;
	cr_assert_eq(cohort_knn(t, "ix", &q, nb, &got), COHORT_ELIMIT);
	q.k = 1001;
	cr_assert_eq(cohort_knn(t, "ix", &q, nb, &got), COHORT_ELIMIT);
	q.k = K;
	cr_assert_eq(cohort_knn(t, "nope", &q, nb, &got), COHORT_ENOTFOUND);
	cohort_knn_query qk = { .key = "missing", .key_len = 7, .k = K };
	cr_assert_eq(cohort_knn(t, "ix", &qk, nb, &got), COHORT_ENOTFOUND);
	float nan[D] = { NAN };
	q.vec = nan;
	cr_assert_eq(cohort_knn(t, "ix", &q, nb, &got), COHORT_ENAN);
	OK(cohort_index_drop(t, "ix"));
	cr_assert_eq(cohort_index_drop(t, "ix"), COHORT_ENOTFOUND);
	/* writes go on without it */
	cohort_field f = { 0, cohort_vec(truth, D) };
	OK(cohort_put(t, "k", 1, 1, &f, 1));
	cohort_close(db);
}
