/*
 * test_threads.c -- concurrent writers and readers on one table.
 *
 * Writers put a, b, c together with b = a + 1 and c = 2a, and apply events
 * that increment two counters together; readers check on every read that
 * columns written together agree, so they never see half a put or event.
 * Worker threads never call Criterion's asserts (those unwind the calling
 * thread): they count failures and keep the first message, which the main
 * thread asserts on after joining them.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cohort.h"

#define T0 1700000000000LL
#define NKEYS 16

enum { C_A, C_B, C_C, C_C1, C_C2, NBASE };

static const cohort_column_def base_cols[NBASE] = {
	{ "a", COHORT_I64, 0, 0 },
	{ "b", COHORT_I64, 0, 0 },
	{ "c", COHORT_I64, 0, 0 },
	{ "c1", COHORT_COUNTER, 0, 0 },
	{ "c2", COHORT_COUNTER, 0, 0 },
};

typedef struct ctx {
	cohort_table *t;
	atomic_bool stop;
	atomic_int nfail;
	atomic_long nreads;
	atomic_long nwrites;
	atomic_long nevents[NKEYS];
	bool with_events;
	bool with_deletes;
	pthread_mutex_t msg_lock;
	char msg[256];
} ctx;

typedef struct worker {
	ctx *c;
	uint64_t seed;
} worker;

static cohort_db *db;
static ctx shared;

static void setup(void)
{
	cr_assert_eq(cohort_open(NULL, NULL, &db), 0);
	memset(&shared, 0, sizeof shared);
	pthread_mutex_init(&shared.msg_lock, NULL);
	cr_assert_eq(cohort_table_create(db, "th", base_cols, NBASE, NULL,
					 &shared.t), 0);
}

static void teardown(void)
{
	pthread_mutex_destroy(&shared.msg_lock);
	cohort_close(db);
	db = NULL;
}

TestSuite(threads, .init = setup, .fini = teardown);

static void failf(ctx *c, const char *fmt, ...)
{
	if (atomic_fetch_add(&c->nfail, 1) == 0) {
		va_list ap;

		pthread_mutex_lock(&c->msg_lock);
		va_start(ap, fmt);
		vsnprintf(c->msg, sizeof c->msg, fmt, ap);
		va_end(ap);
		pthread_mutex_unlock(&c->msg_lock);
	}
}

static uint64_t next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void key_of(int k, char *key)
{
	snprintf(key, 8, "key%02d", k);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* ---- workers ------------------------------------------------------------ */

static int put_abc(cohort_table *t, const char *key, int64_t x)
{
	cohort_field f[3] = {
		{ C_A, cohort_i64(x) },
		{ C_B, cohort_i64(x + 1) },
		{ C_C, cohort_i64(2 * x) },
	};

	return cohort_put(t, key, strlen(key), T0, f, 3);
}

static void *writer(void *arg)
{
	worker *w = arg;
	ctx *c = w->c;
	char key[8];

	while (!atomic_load(&c->stop)) {
		int k = (int)(next(&w->seed) % NKEYS);
		uint64_t r = next(&w->seed);
		int rc;

		key_of(k, key);
		if (c->with_deletes && r % 4 == 0) {
			rc = cohort_delete(c->t, key, strlen(key));
			if (rc != 0 && rc != COHORT_ENOTFOUND)
				failf(c, "delete %s: %d", key, rc);
		} else if (c->with_events && r % 2 == 0) {
			cohort_update u[2] = {
				{ C_C1, COHORT_OP_ADD, cohort_f64(1) },
				{ C_C2, COHORT_OP_ADD, cohort_i32(1) },
			};

			rc = cohort_event(c->t, key, strlen(key), T0, u, 2);
			if (rc != 0)
				failf(c, "event %s: %d", key, rc);
			else
				atomic_fetch_add(&c->nevents[k], 1);
		} else {
			rc = put_abc(c->t, key, (int64_t)(r % 1000000000000ull));
			if (rc != 0)
				failf(c, "put %s: %d", key, rc);
		}
		atomic_fetch_add(&c->nwrites, 1);
	}
	return NULL;
}

/* a, b, c all null or all set and consistent; c1 and c2 equal */
static void check_values(ctx *c, const char *key, const cohort_value *v)
{
	bool an = v[0].type == COHORT_NULL, bn = v[1].type == COHORT_NULL,
	     cn = v[2].type == COHORT_NULL;

	if (an != bn || bn != cn) {
		failf(c, "%s: half a put: null a=%d b=%d c=%d", key, an, bn, cn);
		return;
	}
	if (!an && (v[1].v.i64 != v[0].v.i64 + 1 || v[2].v.i64 != 2 * v[0].v.i64))
		failf(c, "%s: half a put: a=%lld b=%lld c=%lld", key,
		      (long long)v[0].v.i64, (long long)v[1].v.i64,
		      (long long)v[2].v.i64);
	if ((v[3].type == COHORT_NULL) != (v[4].type == COHORT_NULL))
		failf(c, "%s: half an event: one counter null", key);
	else if (v[3].type != COHORT_NULL && v[3].v.f64 != v[4].v.f64)
		failf(c, "%s: half an event: c1=%g c2=%g", key, v[3].v.f64,
		      v[4].v.f64);
}

static void read_one(ctx *c, int k)
{
	static const int cols[NBASE] = { C_A, C_B, C_C, C_C1, C_C2 };
	cohort_value out[NBASE];
	char key[8];
	int st;

	key_of(k, key);
	st = cohort_get(c->t, key, strlen(key), cols, NBASE, T0, out, NULL, 0,
			NULL);
	if (st < 0) {
		failf(c, "get %s: %d", key, st);
		return;
	}
	if (st == COHORT_ROW_EXPIRED)
		failf(c, "get %s: expired in a table without TTL", key);
	if (st == COHORT_ROW_MISSING) {
		for (int i = 0; i < NBASE; i++)
			if (out[i].type != COHORT_NULL)
				failf(c, "get %s: missing row with a value", key);
		return;
	}
	check_values(c, key, out);
}

static void read_many(ctx *c, cohort_batch *b, const cohort_key *keys)
{
	if (cohort_get_many(c->t, keys, NKEYS, T0, b) != 0) {
		failf(c, "get_many failed");
		return;
	}
	for (int k = 0; k < NKEYS; k++) {
		cohort_value v[NBASE];
		char key[8];

		key_of(k, key);
		if (b->status[k] != COHORT_ROW_PRESENT) {
			for (int i = 0; i < NBASE; i++)
				if (b->cols[i].valid[k])
					failf(c, "get_many %s: status %d with a "
					      "valid value", key, b->status[k]);
			continue;
		}
		for (int i = 0; i < NBASE; i++) {
			if (!b->cols[i].valid[k]) {
				v[i] = cohort_null();
			} else if (i < C_C1) {
				v[i] = cohort_i64(((int64_t *)b->cols[i].values)[k]);
			} else {
				v[i] = cohort_f64(((double *)b->cols[i].values)[k]);
			}
		}
		check_values(c, key, v);
	}
}

static void *reader(void *arg)
{
	worker *w = arg;
	ctx *c = w->c;
	static const int cols[NBASE] = { C_A, C_B, C_C, C_C1, C_C2 };
	cohort_batch *b = NULL;
	cohort_key keys[NKEYS];
	char names[NKEYS][8];

	for (int k = 0; k < NKEYS; k++) {
		key_of(k, names[k]);
		keys[k] = (cohort_key){ names[k], strlen(names[k]) };
	}
	if (cohort_batch_new(c->t, cols, NBASE, &b) != 0) {
		failf(c, "batch_new failed");
		return NULL;
	}
	while (!atomic_load(&c->stop)) {
		uint64_t r = next(&w->seed);

		if (r % 8 == 0)
			read_many(c, b, keys);
		else
			read_one(c, (int)(r % NKEYS));
		atomic_fetch_add(&c->nreads, 1);
	}
	cohort_batch_free(b);
	return NULL;
}

typedef struct run {
	pthread_t th[8];
	worker w[8];
	int n;
} run;

static void start(run *r, void *(*fn)(void *), uint64_t seed)
{
	r->w[r->n] = (worker){ &shared, seed };
	cr_assert_eq(pthread_create(&r->th[r->n], NULL, fn, &r->w[r->n]), 0);
	r->n++;
}

/* Let the workers run for ms, then on until readers and writers have
 * each done more than 100 operations (on a loaded machine, under the
 * sanitizers, a fixed time may not give the writers a turn), for at most
 * 20 s more: assert_no_failures's liveness check then means something
 * other than "the machine was busy". */
static void run_for(long ms)
{
	sleep_ms(ms);
	for (int i = 0; i < 1000 && (atomic_load(&shared.nreads) <= 100 ||
				     atomic_load(&shared.nwrites) <= 100); i++)
		sleep_ms(20);
}

static void stop_all(run *r)
{
	atomic_store(&shared.stop, true);
	for (int i = 0; i < r->n; i++)
		pthread_join(r->th[i], NULL);
}

static void assert_no_failures(void)
{
	cr_log_info("%ld reads, %ld writes", atomic_load(&shared.nreads),
		    atomic_load(&shared.nwrites));
	cr_assert_eq(atomic_load(&shared.nfail), 0, "%d failures, first: %s",
		     atomic_load(&shared.nfail), shared.msg);
	cr_assert_gt(atomic_load(&shared.nreads), 100, "readers barely ran");
	cr_assert_gt(atomic_load(&shared.nwrites), 100, "writers barely ran");
}

/* ---- tests ------------------------------------------------------------ */

Test(threads, readers_never_see_half_a_put_or_event)
{
	run r = { .n = 0 };

	shared.with_events = true;
	start(&r, writer, 1);
	start(&r, writer, 2);
	start(&r, reader, 3);
	start(&r, reader, 4);
	run_for(1000);
	stop_all(&r);
	assert_no_failures();
}

Test(threads, concurrent_events_lose_no_increment)
{
	run r = { .n = 0 };
	static const int cols[2] = { C_C1, C_C2 };

	shared.with_events = true;
	start(&r, writer, 5);
	start(&r, writer, 6);
	start(&r, reader, 7);
	run_for(400);
	stop_all(&r);
	assert_no_failures();
	for (int k = 0; k < NKEYS; k++) {
		cohort_value out[2];
		char key[8];
		long n = atomic_load(&shared.nevents[k]);

		key_of(k, key);
		cr_assert_eq(cohort_get(shared.t, key, strlen(key), cols, 2, T0,
					out, NULL, 0, NULL), COHORT_ROW_PRESENT);
		cr_assert_gt(n, 0);
		cr_assert_eq(out[0].v.f64, (double)n, "key %d: c1 %g, %ld events",
			     k, out[0].v.f64, n);
		cr_assert_eq(out[1].v.f64, (double)n, "key %d: c2 %g, %ld events",
			     k, out[1].v.f64, n);
	}
}

#define NADD 48

static void *adder(void *arg)
{
	worker *w = arg;
	ctx *c = w->c;
	char name[16];

	for (int i = 0; i < NADD && !atomic_load(&c->stop); i++) {
		cohort_column_def def = { name, i % 3 == 2 ? COHORT_VEC :
					  i % 3 == 1 ? COHORT_COUNTER : COHORT_I64,
					  i % 3 == 2 ? 4u : 0u, 0 };
		int id = -1, rc;

		snprintf(name, sizeof name, "x%d", i);
		rc = cohort_table_add_column(c->t, &def, &id);
		if (rc != 0)
			failf(c, "add_column %s: %d", name, rc);
		else if (id != NBASE + i)
			failf(c, "add_column %s: id %d, want %d", name, id,
			      NBASE + i);
		sleep_ms(5);
	}
	return NULL;
}

/* writes a, b, c and the newest i64 column added so far */
static void *writer_new_columns(void *arg)
{
	worker *w = arg;
	ctx *c = w->c;
	char key[8];

	while (!atomic_load(&c->stop)) {
		cohort_table_info info;
		int64_t x = (int64_t)(next(&w->seed) % 1000000);
		cohort_field f[4] = {
			{ C_A, cohort_i64(x) },
			{ C_B, cohort_i64(x + 1) },
			{ C_C, cohort_i64(2 * x) },
		};
		size_t nf = 3;
		int rc;

		key_of((int)(next(&w->seed) % NKEYS), key);
		if (cohort_table_describe(c->t, &info) != 0) {
			failf(c, "describe failed");
			break;
		}
		for (int id = (int)info.ncolumns - 1; id >= NBASE; id--)
			if ((id - NBASE) % 3 == 0) {
				f[nf++] = (cohort_field){ id, cohort_i64(x) };
				break;
			}
		rc = cohort_put(c->t, key, strlen(key), T0, f, nf);
		if (rc != 0)
			failf(c, "put %s with %zu fields: %d (%s)", key, nf, rc,
			      cohort_errdetail());
		atomic_fetch_add(&c->nwrites, 1);
	}
	return NULL;
}

/* reads a, b, c plus every added column known at the time */
static void *reader_new_columns(void *arg)
{
	worker *w = arg;
	ctx *c = w->c;
	int cols[NBASE + NADD];
	cohort_value out[NBASE + NADD];
	float vec_buf[4 * NADD];
	char key[8];

	for (int i = 0; i < NBASE + NADD; i++)
		cols[i] = i;
	while (!atomic_load(&c->stop)) {
		cohort_table_info info;
		int st;

		key_of((int)(next(&w->seed) % NKEYS), key);
		if (cohort_table_describe(c->t, &info) != 0) {
			failf(c, "describe failed");
			break;
		}
		st = cohort_get(c->t, key, strlen(key), cols, info.ncolumns, T0,
				out, vec_buf, 4 * NADD, NULL);
		if (st < 0) {
			failf(c, "get %s of %zu columns: %d (%s)", key,
			      info.ncolumns, st, cohort_errdetail());
			continue;
		}
		if (st == COHORT_ROW_PRESENT)
			check_values(c, key, out);
		for (size_t i = NBASE; st == COHORT_ROW_PRESENT &&
		     i < info.ncolumns; i++)
			if ((i - NBASE) % 3 != 0 && out[i].type != COHORT_NULL)
				failf(c, "%s: column %zu never written reads "
				      "type %d", key, i, out[i].type);
		atomic_fetch_add(&c->nreads, 1);
	}
	return NULL;
}

/* filters and batches over every column known at the time, rebuilt each
 * round while columns are being added */
static void *scanner_new_columns(void *arg)
{
	worker *w = arg;
	ctx *c = w->c;
	int cols[NBASE + NADD];
	cohort_key keys[NKEYS];
	char names[NKEYS][8];

	for (int i = 0; i < NBASE + NADD; i++)
		cols[i] = i;
	for (int k = 0; k < NKEYS; k++) {
		key_of(k, names[k]);
		keys[k] = (cohort_key){ names[k], strlen(names[k]) };
	}
	while (!atomic_load(&c->stop)) {
		cohort_table_info info;
		cohort_filter *f = NULL;
		cohort_batch *b = NULL;
		int last, all, half;
		uint64_t n = 0;

		if (cohort_table_describe(c->t, &info) != 0 ||
		    cohort_filter_new(c->t, &f) != 0) {
			failf(c, "describe or filter_new failed");
			break;
		}
		last = (int)info.ncolumns - 1;
		all = cohort_filter_and(f, cohort_filter_not_null(f, C_A),
					cohort_filter_or(f,
						cohort_filter_is_null(f, last),
						cohort_filter_not_null(f, last)));
		half = cohort_filter_and(f, cohort_filter_is_null(f, C_A),
					 cohort_filter_not_null(f, C_C));
		if (all < 0 || half < 0)
			failf(c, "building a filter on column %d: %d %d", last,
			      all, half);
		else if (cohort_filter_count(f, all, T0, &n) != 0 || n > NKEYS)
			failf(c, "count with column %d: %llu rows", last,
			      (unsigned long long)n);
		else if (cohort_filter_count(f, half, T0, &n) != 0 || n != 0)
			failf(c, "rows with c but not a: %llu",
			      (unsigned long long)n);
		cohort_filter_free(f);

		if (cohort_batch_new(c->t, cols, info.ncolumns, &b) != 0) {
			failf(c, "batch_new of %zu columns failed", info.ncolumns);
			break;
		}
		if (cohort_get_many(c->t, keys, NKEYS, T0, b) != 0) {
			failf(c, "get_many of %zu columns failed", info.ncolumns);
		} else {
			for (int k = 0; k < NKEYS; k++) {
				const int64_t *a = b->cols[C_A].values;
				const int64_t *bb = b->cols[C_B].values;

				if (b->status[k] != COHORT_ROW_PRESENT)
					continue;
				if (b->cols[C_A].valid[k] != b->cols[C_B].valid[k] ||
				    (b->cols[C_A].valid[k] && bb[k] != a[k] + 1))
					failf(c, "get_many key %d: half a put", k);
			}
		}
		cohort_batch_free(b);
		atomic_fetch_add(&c->nreads, 1);
	}
	return NULL;
}

Test(threads, add_column_while_writing_and_reading)
{
	run r = { .n = 0 };
	cohort_table_info info;
	char key[8];

	start(&r, writer_new_columns, 11);
	start(&r, writer_new_columns, 12);
	start(&r, reader_new_columns, 13);
	start(&r, reader, 14);
	start(&r, scanner_new_columns, 16);
	start(&r, adder, 15);
	/* the adder needs NADD * 5 ms; let the rest run a little longer */
	pthread_join(r.th[5], NULL);
	r.n = 5;
	run_for(100);
	stop_all(&r);
	assert_no_failures();

	cr_assert_eq(cohort_table_describe(shared.t, &info), 0);
	cr_assert_eq(info.ncolumns, NBASE + NADD);
	for (int i = 0; i < NADD; i++) {
		char name[16];
		cohort_column_info ci;

		snprintf(name, sizeof name, "x%d", i);
		cr_assert_eq(cohort_table_column(shared.t, name), NBASE + i);
		cr_assert_eq(cohort_column_describe(shared.t, NBASE + i, &ci), 0);
		cr_assert_str_eq(ci.name, name);
	}
	/* every added column takes writes afterwards */
	key_of(0, key);
	for (int i = 0; i < NADD; i++) {
		int id = NBASE + i;
		float v[4] = { 1, 2, 3, (float)i };
		cohort_field f = { id, i % 3 == 2 ? cohort_vec(v, 4) :
				   i % 3 == 1 ? cohort_f64(i) : cohort_i64(i) };
		cohort_value out;
		float vb[4];

		cr_assert_eq(cohort_put(shared.t, key, strlen(key), T0, &f, 1), 0);
		cr_assert_eq(cohort_get(shared.t, key, strlen(key), &id, 1, T0,
					&out, vb, 4, NULL), COHORT_ROW_PRESENT);
		if (i % 3 == 2)
			cr_assert_eq(out.v.vec.ptr[3], (float)i);
		else if (i % 3 == 1)
			cr_assert_eq(out.v.f64, (double)i);
		else
			cr_assert_eq(out.v.i64, i);
	}
}

/* filter counts while rows are deleted and re-inserted: every live row has
 * a, b, c set together, so "a not null and b null" never matches and the
 * count of rows never exceeds the key set */
static void *filter_reader(void *arg)
{
	worker *w = arg;
	ctx *c = w->c;
	cohort_filter *f = NULL;
	int half, present, broken;

	if (cohort_filter_new(c->t, &f) != 0) {
		failf(c, "filter_new failed");
		return NULL;
	}
	half = cohort_filter_and(f, cohort_filter_not_null(f, C_A),
				 cohort_filter_is_null(f, C_B));
	present = cohort_filter_not_null(f, C_C);
	broken = cohort_filter_is_null(f, C_A);
	if (half < 0 || present < 0 || broken < 0) {
		failf(c, "building filters failed");
		cohort_filter_free(f);
		return NULL;
	}
	while (!atomic_load(&c->stop)) {
		uint64_t n = 0;

		if (cohort_filter_count(f, half, T0, &n) != 0 || n != 0)
			failf(c, "rows with a but not b: %llu",
			      (unsigned long long)n);
		if (cohort_filter_count(f, broken, T0, &n) != 0 || n != 0)
			failf(c, "live rows without a: %llu",
			      (unsigned long long)n);
		if (cohort_filter_count(f, present, T0, &n) != 0 || n > NKEYS)
			failf(c, "%llu rows for %d keys", (unsigned long long)n,
			      NKEYS);
		atomic_fetch_add(&c->nreads, 1);
	}
	cohort_filter_free(f);
	return NULL;
}

typedef struct key_seen {
	ctx *c;
	int hits[NKEYS];
} key_seen;

static int key_cb(const void *key, size_t key_len, void *arg)
{
	key_seen *s = arg;
	char buf[8];
	int k;

	if (key_len != 5 || memcmp(key, "key", 3) != 0) {
		failf(s->c, "filter_keys reported a foreign key of %zu bytes",
		      key_len);
		return 0;
	}
	memcpy(buf, key, 5);
	buf[5] = '\0';
	k = atoi(buf + 3);
	if (k < 0 || k >= NKEYS || ++s->hits[k] > 1)
		failf(s->c, "filter_keys reported key %d twice", k);
	return 0;
}

static void *keys_reader(void *arg)
{
	worker *w = arg;
	ctx *c = w->c;
	cohort_filter *f = NULL;
	int all;

	if (cohort_filter_new(c->t, &f) != 0) {
		failf(c, "filter_new failed");
		return NULL;
	}
	all = cohort_filter_not_null(f, C_A);
	while (!atomic_load(&c->stop)) {
		key_seen s = { .c = c };
		uint64_t n = 0;
		int got = 0;

		if (cohort_filter_keys(f, all, T0, key_cb, &s, &n) != 0)
			failf(c, "filter_keys failed");
		for (int k = 0; k < NKEYS; k++)
			got += s.hits[k];
		if ((uint64_t)got != n)
			failf(c, "filter_keys: %d callbacks, count %llu", got,
			      (unsigned long long)n);
		atomic_fetch_add(&c->nreads, 1);
	}
	cohort_filter_free(f);
	return NULL;
}

Test(threads, deletes_reinserts_get_many_and_filters)
{
	run r = { .n = 0 };

	shared.with_deletes = true;
	start(&r, writer, 21);
	start(&r, writer, 22);
	start(&r, reader, 23);
	start(&r, filter_reader, 24);
	start(&r, keys_reader, 25);
	run_for(700);
	stop_all(&r);
	assert_no_failures();
}
