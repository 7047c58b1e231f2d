/*
 * bench_store.c -- suite `store`: the embedded API on one wide table.
 *
 * The table: 1M rows (50k with --quick) of 32 f32 columns c0..c31,
 * values uniform in [0, 1), keys the decimal text of the row number, loaded
 * with one cohort_put per row. Everything is drawn from fixed seeds and
 * stamped with fixed times, so two runs do the same work.
 *
 * Figures, each with one thread and with two:
 *   get_32cols          cohort_get of all 32 columns of a random key
 *   get_many_100        cohort_get_many of 100 random keys (and keys/s)
 *   put_32cols          cohort_put of all 32 columns of a random existing key
 *   event_3aggs         cohort_event with 3 updates (counter, decay, max),
 *                       on columns added to the live table after loading
 *   filter_scan         cohort_filter_count of c0 > 0.5 AND c1 < 0.25 over
 *                       all rows, GB/s of the two columns' data, beside
 *   plain_read          a plain sum of two float arrays of the same size, in
 *                       the same run (same cache regime), and their ratio
 *                       filter_scan_vs_membw (target >= 0.6)
 *   dram_read           a plain read of a 512 MB buffer, for context
 * and once, after loading: memory per row against the raw size of a row
 * (bytes_per_row_vs_raw, target <= 1.3) and the growth of the process RSS.
 *
 * Every call's result is checked: a benchmark that times error paths
 * reports nothing and fails.
 */
#include "bench_int.h"
#include "cohort.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCOLS 32
#define MANY 100                  /* keys per get_many */
#define SEED 0x636f686f7274ull    /* "cohort" */
#define T_LOAD 1700000000000ll    /* fixed event times: runs repeat exactly */
#define T_PUT (T_LOAD + 1000)
#define T_EVENT (T_LOAD + 2000)
#define T_READ (T_LOAD + 3000)
#define HALF_LIFE_MS (7ll * 24 * 3600 * 1000)

#define TARGET_MEM 1.3            /* bytes_per_row_vs_raw <= */
#define TARGET_SCAN 0.6           /* filter_scan_vs_membw >= */
#define DISTURBED 0.9             /* a run whose threads got less cpu than
                                     this share of the wall time was slowed
                                     by other work on the machine */

typedef struct store_data {
	cohort_db *db;
	cohort_table *t;
	uint64_t nrows;
	char *key_bytes;          /* all keys, back to back */
	cohort_key *keys;         /* keys[i]: the key of row i */
	double avg_key_len;
	int cols[NCOLS];
	int agg_counter, agg_decay, agg_max;
	float *plain_a, *plain_b; /* copies of c0 and c1 as loaded */
	size_t plain_n;           /* nrows rounded up to 64 (zero padded) */
	float *dram;              /* the 512 MB buffer */
	size_t dram_n;
} store_data;

/* One thread's state; 64-byte aligned, one allocation per thread. */
typedef struct store_thread {
	store_data *d;
	bench_rng rng;
	int err;                  /* first failure: a COHORT_E* code, or 1 */
	const char *err_what;
	char err_detail[256];
	cohort_batch *batch;
	cohort_filter *filter;
	int root;
	uint64_t matches;
	size_t dram_lo, dram_hi, dram_pos;
	float sum;
	char key[24];             /* the current key's text (get, put, event) */
	char many[MANY][24];      /* the keys of one get_many */
	cohort_key req[MANY];
	cohort_value out[NCOLS];
	cohort_field fields[NCOLS];
} store_thread;

static void thread_fail(store_thread *st, const char *what, int rc)
{
	if (st->err)
		return;
	st->err = rc ? rc : 1;
	st->err_what = what;
	snprintf(st->err_detail, sizeof st->err_detail, "%s", cohort_errdetail());
}

/* After a measurement: did a thread fail? Prints the first failure. */
static int threads_failed(store_thread **ts, int nthreads)
{
	for (int i = 0; i < nthreads; i++) {
		store_thread *st = ts[i];
		if (!st->err)
			continue;
		fprintf(stderr, "cohort-bench store: thread %d: %s: %s (%d)%s%s\n",
			i, st->err_what,
			st->err < 0 ? cohort_strerror(st->err) : "unexpected result",
			st->err, *st->err_detail ? ": " : "", st->err_detail);
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Batches: each does a few operations and returns how many (0 on failure).
 * ------------------------------------------------------------------------ */
/* The decimal text of v into buf (no NUL); returns its length. */
static size_t key_text(uint64_t v, char *buf)
{
	char tmp[20];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	return n;
}

/* A random existing key, written into buf as a caller would have it: in
 * its own, cache-hot memory, not in a big table of keys whose cache misses
 * would be charged to the store. */
static cohort_key random_key(store_thread *st, char *buf)
{
	cohort_key k;
	k.ptr = buf;
	k.len = key_text(bench_rng_below(&st->rng, st->d->nrows), buf);
	return k;
}

static uint64_t get_batch(void *p)
{
	store_thread *st = p;
	store_data *d = st->d;
	float acc = 0;
	for (int i = 0; i < 64; i++) {
		cohort_key k = random_key(st, st->key);
		int rc = cohort_get(d->t, k.ptr, k.len, d->cols, NCOLS, T_READ,
				    st->out, NULL, 0, NULL);
		if (rc != COHORT_ROW_PRESENT) {
			thread_fail(st, "cohort_get", rc);
			return 0;
		}
		acc += st->out[i % NCOLS].v.f32;
	}
	st->sum += acc;
	return 64;
}

static uint64_t get_many_batch(void *p)
{
	store_thread *st = p;
	store_data *d = st->d;
	for (int i = 0; i < 4; i++) {
		for (int j = 0; j < MANY; j++)
			st->req[j] = random_key(st, st->many[j]);
		int rc = cohort_get_many(d->t, st->req, MANY, T_READ, st->batch);
		if (rc < 0) {
			thread_fail(st, "cohort_get_many", rc);
			return 0;
		}
		if (st->batch->nkeys != MANY) {
			thread_fail(st, "cohort_get_many: wrong nkeys", 0);
			return 0;
		}
		for (int j = 0; j < MANY; j++)
			if (st->batch->status[j] != COHORT_ROW_PRESENT) {
				thread_fail(st, "cohort_get_many: row not present",
					    0);
				return 0;
			}
		st->sum += ((const float *)st->batch->cols[i].values)[i];
	}
	return 4;
}

static uint64_t put_batch(void *p)
{
	store_thread *st = p;
	store_data *d = st->d;
	for (int i = 0; i < 32; i++) {
		cohort_key k = random_key(st, st->key);
		for (int c = 0; c < NCOLS; c++)
			st->fields[c].value = cohort_f32(bench_rng_float(&st->rng));
		int rc = cohort_put(d->t, k.ptr, k.len, T_PUT, st->fields,
				    NCOLS);
		if (rc < 0) {
			thread_fail(st, "cohort_put", rc);
			return 0;
		}
	}
	return 32;
}

static uint64_t event_batch(void *p)
{
	store_thread *st = p;
	store_data *d = st->d;
	cohort_update up[3];
	up[0].column = d->agg_counter;
	up[0].op = COHORT_OP_ADD;
	up[0].value = cohort_f64(1.0);
	up[1].column = d->agg_decay;
	up[1].op = COHORT_OP_ADD;
	up[2].column = d->agg_max;
	up[2].op = COHORT_OP_OBSERVE;
	for (int i = 0; i < 64; i++) {
		cohort_key k = random_key(st, st->key);
		double amount = (double)bench_rng_float(&st->rng) * 100.0;
		up[1].value = cohort_f64(amount);
		up[2].value = cohort_f64(amount);
		int rc = cohort_event(d->t, k.ptr, k.len, T_EVENT, up, 3);
		if (rc < 0) {
			thread_fail(st, "cohort_event", rc);
			return 0;
		}
	}
	return 64;
}

static uint64_t filter_batch(void *p)
{
	store_thread *st = p;
	uint64_t count = 0;
	int rc = cohort_filter_count(st->filter, st->root, T_READ, &count);
	if (rc < 0) {
		thread_fail(st, "cohort_filter_count", rc);
		return 0;
	}
	/* About 1/8 of the rows match; far off means the scan is wrong. */
	if (count < st->d->nrows / 16 || count > st->d->nrows / 4) {
		thread_fail(st, "cohort_filter_count: implausible count", 0);
		return 0;
	}
	st->matches = count;
	return 1;
}

static uint64_t plain_batch(void *p)
{
	store_thread *st = p;
	st->sum += bench_read_sum2(st->d->plain_a, st->d->plain_b,
				   st->d->plain_n);
	return 1;
}

#define DRAM_CHUNK (4u << 20)    /* floats per dram batch: 16 MB */

static uint64_t dram_batch(void *p)
{
	store_thread *st = p;
	size_t n = DRAM_CHUNK;
	if (st->dram_pos >= st->dram_hi)
		st->dram_pos = st->dram_lo;
	if (n > st->dram_hi - st->dram_pos)
		n = st->dram_hi - st->dram_pos;
	st->sum += bench_read_sum(st->d->dram + st->dram_pos, n);
	st->dram_pos += n;
	return n; /* floats read */
}

/* ------------------------------------------------------------------------
 * Setup
 * ------------------------------------------------------------------------ */
static void make_keys(store_data *d)
{
	size_t cap = (size_t)d->nrows * 8, used = 0;
	uint64_t total = 0;
	d->key_bytes = bench_alloc(cap);
	d->keys = bench_alloc(sizeof *d->keys * (size_t)d->nrows);
	for (uint64_t i = 0; i < d->nrows; i++) {
		int len = snprintf(d->key_bytes + used, cap - used, "%llu",
				   (unsigned long long)i);
		d->keys[i].ptr = d->key_bytes + used;
		d->keys[i].len = (size_t)len;
		used += (size_t)len;
		total += (uint64_t)len;
	}
	d->avg_key_len = (double)total / (double)d->nrows;
}

static int load(const bench_ctx *ctx, store_data *d)
{
	cohort_column_def defs[NCOLS];
	char names[NCOLS][8];
	cohort_field fields[NCOLS];
	bench_rng rng;
	int rc;

	for (int c = 0; c < NCOLS; c++) {
		snprintf(names[c], sizeof names[c], "c%d", c);
		memset(&defs[c], 0, sizeof defs[c]);
		defs[c].name = names[c];
		defs[c].type = COHORT_F32;
	}
	rc = cohort_open(NULL, NULL, &d->db);
	if (rc < 0)
		return bench_fail("store", "cohort_open", rc);
	rc = cohort_table_create(d->db, "wide", defs, NCOLS, NULL, &d->t);
	if (rc < 0)
		return bench_fail("store", "cohort_table_create", rc);
	for (int c = 0; c < NCOLS; c++) {
		d->cols[c] = cohort_table_column(d->t, names[c]);
		if (d->cols[c] < 0)
			return bench_fail("store", "cohort_table_column", d->cols[c]);
		fields[c].column = d->cols[c];
	}

	bench_rng_seed(&rng, SEED);
	double t0 = bench_now();
	for (uint64_t i = 0; i < d->nrows; i++) {
		for (int c = 0; c < NCOLS; c++)
			fields[c].value = cohort_f32(bench_rng_float(&rng));
		d->plain_a[i] = fields[0].value.v.f32;
		d->plain_b[i] = fields[1].value.v.f32;
		rc = cohort_put(d->t, d->keys[i].ptr, d->keys[i].len, T_LOAD,
				fields, NCOLS);
		if (rc < 0)
			return bench_fail("store", "cohort_put (load)", rc);
	}
	double secs = bench_now() - t0;

	bench_line l = bench_line_make("load_put", (double)d->nrows / secs,
				       "rows/s", 1);
	bench_line_num(&l, "rows", (double)d->nrows);
	bench_line_str(&l, "stat", "one pass, new keys");
	bench_report(ctx, &l);
	return 0;
}

/* Spot checks before timing: a get returns what was put, and the filter
 * counts what a plain loop over the same values counts. */
static int check(store_data *d)
{
	cohort_value out[NCOLS];
	uint64_t row = d->nrows / 3, want = 0, got = 0;
	int rc = cohort_get(d->t, d->keys[row].ptr, d->keys[row].len, d->cols,
			    NCOLS, T_READ, out, NULL, 0, NULL);
	if (rc != COHORT_ROW_PRESENT)
		return bench_fail("store", "check: cohort_get", rc < 0 ? rc : COHORT_ENOTFOUND);
	if (out[0].type != COHORT_F32 || out[0].v.f32 != d->plain_a[row] ||
	    out[1].v.f32 != d->plain_b[row]) {
		fprintf(stderr, "cohort-bench store: check: cohort_get of row %llu"
			" does not return the values put\n",
			(unsigned long long)row);
		return 1;
	}

	cohort_filter *f;
	rc = cohort_filter_new(d->t, &f);
	if (rc < 0)
		return bench_fail("store", "check: cohort_filter_new", rc);
	int root = cohort_filter_and(f,
		cohort_filter_cmp(f, d->cols[0], COHORT_GT, cohort_f64(0.5)),
		cohort_filter_cmp(f, d->cols[1], COHORT_LT, cohort_f64(0.25)));
	if (root < 0)
		return bench_fail("store", "check: building the filter", root);
	rc = cohort_filter_count(f, root, T_READ, &got);
	cohort_filter_free(f);
	if (rc < 0)
		return bench_fail("store", "check: cohort_filter_count", rc);
	for (uint64_t i = 0; i < d->nrows; i++)
		want += (double)d->plain_a[i] > 0.5 && (double)d->plain_b[i] < 0.25;
	if (got != want) {
		fprintf(stderr, "cohort-bench store: check: filter counts %llu "
			"rows, a plain loop %llu\n", (unsigned long long)got,
			(unsigned long long)want);
		return 1;
	}
	return 0;
}

static int memory(const bench_ctx *ctx, store_data *d, uint64_t rss0)
{
	cohort_table_info info;
	int rc = cohort_table_describe(d->t, &info);
	if (rc < 0)
		return bench_fail("store", "cohort_table_describe", rc);
	uint64_t rss1 = bench_rss();
	double per_row = (double)info.mem_bytes / (double)d->nrows;
	double raw = NCOLS * 4 + d->avg_key_len;
	double ratio = per_row / raw;

	bench_line l = bench_line_make("mem_per_row", per_row, "bytes", 0);
	bench_line_num(&l, "mem_bytes", (double)info.mem_bytes);
	bench_line_num(&l, "rows", (double)info.nrows);
	bench_line_str(&l, "source", "cohort_table_describe");
	bench_report(ctx, &l);

	l = bench_line_make("raw_per_row", raw, "bytes", 0);
	bench_line_str(&l, "what", "32 x 4 + average key length");
	bench_line_num(&l, "avg_key_len", d->avg_key_len);
	bench_report(ctx, &l);

	l = bench_line_make("bytes_per_row_vs_raw", ratio, "ratio", 0);
	bench_line_str(&l, "target", "<= 1.3");
	bench_line_bool(&l, "meets_target", ratio <= TARGET_MEM);
	bench_report(ctx, &l);

	double growth = rss1 > rss0 ? (double)(rss1 - rss0) : 0;
	l = bench_line_make("rss_growth_per_row", growth / (double)d->nrows,
			    "bytes", 0);
	bench_line_num(&l, "rss_growth_mb", growth / 1048576.0);
	bench_line_num(&l, "vs_raw", growth / (double)d->nrows / raw);
	bench_report(ctx, &l);
	return 0;
}

static int add_aggregates(store_data *d)
{
	cohort_column_def def;
	int rc;

	memset(&def, 0, sizeof def);
	def.name = "n_txn";
	def.type = COHORT_COUNTER;
	if ((rc = cohort_table_add_column(d->t, &def, &d->agg_counter)) < 0)
		return bench_fail("store", "cohort_table_add_column (counter)", rc);
	def.name = "spend_decay";
	def.type = COHORT_DECAY;
	def.half_life_ms = HALF_LIFE_MS;
	if ((rc = cohort_table_add_column(d->t, &def, &d->agg_decay)) < 0)
		return bench_fail("store", "cohort_table_add_column (decay)", rc);
	def.name = "max_amount";
	def.type = COHORT_MAX;
	def.half_life_ms = 0;
	if ((rc = cohort_table_add_column(d->t, &def, &d->agg_max)) < 0)
		return bench_fail("store", "cohort_table_add_column (max)", rc);
	return 0;
}

/* ------------------------------------------------------------------------
 * Measurements
 * ------------------------------------------------------------------------ */
static void report_rate(const bench_ctx *ctx, const char *metric,
			const char *unit, int nthreads, const bench_stats *s,
			double scale)
{
	char stat[32];
	snprintf(stat, sizeof stat, "best of %d", s->runs);
	bench_line l = bench_line_make(metric, s->best * scale, unit, nthreads);
	bench_line_str(&l, "stat", stat);
	bench_line_num(&l, "median", s->median * scale);
	bench_line_num(&l, "cpu_share", s->cpu_share);
	if (s->cpu_share < DISTURBED)
		bench_line_bool(&l, "disturbed", true);
	bench_report(ctx, &l);
}

/* Each figure starts every thread from its own fixed seed, so a figure's
 * key sequence does not depend on what ran before it. */
static void reseed(store_thread **ts, int nthreads, const char *metric)
{
	uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a of the metric's name */
	for (const char *c = metric; *c; c++)
		h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
	for (int i = 0; i < nthreads; i++)
		bench_rng_seed(&ts[i]->rng, SEED ^ (h + (uint64_t)i));
}

/* One ops/s figure: measure fn on nthreads threads and report it. */
static int rate(const bench_ctx *ctx, store_thread **ts, int nthreads,
		bench_batch_fn fn, const char *metric, const char *unit,
		double scale)
{
	bench_stats s;
	reseed(ts, nthreads, metric);
	if (bench_measure(ctx, nthreads, fn, (void *const *)ts, &s) != 0 ||
	    threads_failed(ts, nthreads))
		return 1;
	report_rate(ctx, metric, unit, nthreads, &s, scale);
	return 0;
}

/* Filter scans and plain reads, alternated run by run so that both see the
 * same machine; GB/s of the same bytes (two columns of 4-byte values). */
static int scan(const bench_ctx *ctx, store_data *d, store_thread **ts,
		int nthreads)
{
	double frates[64], prates[64], fbest = -1, pbest = -1;
	double fshare = NAN, pshare = NAN;
	int n = ctx->reps < 64 ? ctx->reps : 64;
	double gb_per_op = 2.0 * 4.0 * (double)d->nrows / 1e9;

	for (int i = 0; i < nthreads; i++) {
		store_thread *st = ts[i];
		int rc = cohort_filter_new(d->t, &st->filter);
		if (rc < 0)
			return bench_fail("store", "cohort_filter_new", rc);
		st->root = cohort_filter_and(st->filter,
			cohort_filter_cmp(st->filter, d->cols[0], COHORT_GT,
					  cohort_f64(0.5)),
			cohort_filter_cmp(st->filter, d->cols[1], COHORT_LT,
					  cohort_f64(0.25)));
		if (st->root < 0)
			return bench_fail("store", "building the filter", st->root);
	}
	for (int r = 0; r < n; r++) {
		bench_result res;
		if (bench_run(nthreads, ctx->seconds, filter_batch,
			      (void *const *)ts, &res) != 0 ||
		    threads_failed(ts, nthreads))
			return 1;
		frates[r] = res.ops_per_s * gb_per_op;
		if (frates[r] > fbest) {
			fbest = frates[r];
			fshare = res.cpu_share;
		}
		if (bench_run(nthreads, ctx->seconds, plain_batch,
			      (void *const *)ts, &res) != 0)
			return 1;
		prates[r] = res.ops_per_s * gb_per_op;
		if (prates[r] > pbest) {
			pbest = prates[r];
			pshare = res.cpu_share;
		}
	}
	for (int i = 0; i < nthreads; i++) {
		cohort_filter_free(ts[i]->filter);
		ts[i]->filter = NULL;
	}

	/* Each run's ratio pairs a filter run with the plain run next to it. */
	double ratios[64];
	for (int r = 0; r < n; r++)
		ratios[r] = prates[r] > 0 ? frates[r] / prates[r] : 0;
	bench_stats fs, ps, rs;
	bench_stats_of(frates, n, &fs);
	bench_stats_of(prates, n, &ps);
	bench_stats_of(ratios, n, &rs);

	char stat[32];
	snprintf(stat, sizeof stat, "best of %d", n);
	bench_line l = bench_line_make("filter_scan", fs.best, "GB/s", nthreads);
	bench_line_str(&l, "stat", stat);
	bench_line_num(&l, "median", fs.median);
	bench_line_num(&l, "cpu_share", fshare);
	if (fshare < DISTURBED)
		bench_line_bool(&l, "disturbed", true);
	bench_line_num(&l, "matches", (double)ts[0]->matches);
	bench_line_str(&l, "filter", "c0 > 0.5 AND c1 < 0.25");
	bench_report(ctx, &l);

	l = bench_line_make("plain_read", ps.best, "GB/s", nthreads);
	bench_line_str(&l, "stat", stat);
	bench_line_num(&l, "median", ps.median);
	bench_line_num(&l, "cpu_share", pshare);
	if (pshare < DISTURBED)
		bench_line_bool(&l, "disturbed", true);
	bench_line_num(&l, "mb", gb_per_op * 1e3);
	bench_report(ctx, &l);

	double ratio = ps.best > 0 ? fs.best / ps.best : 0;
	l = bench_line_make("filter_scan_vs_membw", ratio, "ratio", nthreads);
	bench_line_str(&l, "stat", "best filter / best plain");
	bench_line_num(&l, "median_of_pairs", rs.median);
	bench_line_str(&l, "target", ">= 0.6");
	bench_line_bool(&l, "meets_target", ratio >= TARGET_SCAN);
	if (fshare < DISTURBED || pshare < DISTURBED)
		bench_line_bool(&l, "disturbed", true);
	bench_report(ctx, &l);
	return 0;
}

static int dram(const bench_ctx *ctx, store_data *d, store_thread **ts,
		int nthreads)
{
	size_t per = d->dram_n / (size_t)nthreads;
	for (int i = 0; i < nthreads; i++) {
		ts[i]->dram_lo = per * (size_t)i;
		ts[i]->dram_hi = per * (size_t)(i + 1);
		ts[i]->dram_pos = ts[i]->dram_lo;
	}
	bench_stats s;
	if (bench_measure(ctx, nthreads, dram_batch, (void *const *)ts, &s))
		return 1;
	char stat[32];
	snprintf(stat, sizeof stat, "best of %d", s.runs);
	bench_line l = bench_line_make("dram_read", s.best * 4 / 1e9, "GB/s",
				       nthreads);
	bench_line_str(&l, "stat", stat);
	bench_line_num(&l, "median", s.median * 4 / 1e9);
	bench_line_num(&l, "cpu_share", s.cpu_share);
	if (s.cpu_share < DISTURBED)
		bench_line_bool(&l, "disturbed", true);
	bench_line_num(&l, "buffer_mb", (double)d->dram_n * 4 / 1048576.0);
	bench_report(ctx, &l);
	return 0;
}

static int run_all(const bench_ctx *ctx, store_data *d, store_thread **ts)
{
	static const int nthreads[] = { 1, 2 };
	const int nn = (int)(sizeof nthreads / sizeof nthreads[0]);
	int k;

	for (k = 0; k < nn; k++)
		if (rate(ctx, ts, nthreads[k], get_batch, "get_32cols", "ops/s", 1))
			return 1;
	for (k = 0; k < nn; k++) {
		bench_stats s;
		reseed(ts, nthreads[k], "get_many_100");
		if (bench_measure(ctx, nthreads[k], get_many_batch,
				  (void *const *)ts, &s) != 0 ||
		    threads_failed(ts, nthreads[k]))
			return 1;
		report_rate(ctx, "get_many_100", "ops/s", nthreads[k], &s, 1);
		report_rate(ctx, "get_many_100_keys", "keys/s", nthreads[k], &s,
			    MANY);
	}
	for (k = 0; k < nn; k++)
		if (rate(ctx, ts, nthreads[k], put_batch, "put_32cols", "ops/s", 1))
			return 1;

	if (add_aggregates(d))
		return 1;
	for (k = 0; k < nn; k++)
		if (rate(ctx, ts, nthreads[k], event_batch, "event_3aggs",
			 "ops/s", 1))
			return 1;

	cohort_table_info info;
	int rc = cohort_table_describe(d->t, &info);
	if (rc < 0)
		return bench_fail("store", "cohort_table_describe", rc);
	bench_line l = bench_line_make("mem_per_row_35cols",
				       (double)info.mem_bytes / (double)d->nrows,
				       "bytes", 0);
	bench_line_str(&l, "what", "after adding 3 aggregate columns and events");
	bench_report(ctx, &l);

	for (k = 0; k < nn; k++)
		if (scan(ctx, d, ts, nthreads[k]))
			return 1;

	/* The 512 MB buffer only now, so that it is not in the RSS figure. */
	d->dram_n = (ctx->quick ? 32u : 512u) << 18;  /* MB -> floats */
	d->dram = bench_alloc(d->dram_n * sizeof(float));
	for (size_t i = 0; i < d->dram_n; i++)
		d->dram[i] = (float)(i & 1023);
	for (k = 0; k < nn; k++)
		if (dram(ctx, d, ts, nthreads[k]))
			return 1;
	return 0;
}

int bench_store(bench_ctx *ctx)
{
	store_data d;
	store_thread *ts[2];
	int rc = 1;

	memset(&d, 0, sizeof d);
	d.nrows = ctx->quick ? 50000 : 1000000;
	d.plain_n = (size_t)(d.nrows + 63) / 64 * 64;

	/* The harness's own memory first, so the RSS growth is the table's. */
	make_keys(&d);
	d.plain_a = bench_alloc(d.plain_n * sizeof(float));
	d.plain_b = bench_alloc(d.plain_n * sizeof(float));
	for (int i = 0; i < 2; i++) {
		ts[i] = bench_alloc(sizeof *ts[i]);
		ts[i]->d = &d;
		bench_rng_seed(&ts[i]->rng, SEED + 1 + (uint64_t)i);
	}
	uint64_t rss0 = bench_rss();

	bench_note(ctx, "%llu rows x %d f32 columns; two-thread figures share "
		   "the machine's %d cores with whatever else runs on it",
		   (unsigned long long)d.nrows, NCOLS, ctx->cores);
	if (load(ctx, &d) || memory(ctx, &d, rss0) || check(&d))
		goto out;
	for (int i = 0; i < 2; i++) {
		for (int c = 0; c < NCOLS; c++)
			ts[i]->fields[c].column = d.cols[c];
		int e = cohort_batch_new(d.t, d.cols, NCOLS, &ts[i]->batch);
		if (e < 0) {
			bench_fail("store", "cohort_batch_new", e);
			goto out;
		}
	}
	rc = run_all(ctx, &d, ts);
	for (int i = 0; i < 2; i++)
		bench_sink(ts[i]->sum);

out:
	for (int i = 0; i < 2; i++) {
		cohort_batch_free(ts[i]->batch);
		free(ts[i]);
	}
	cohort_close(d.db);
	free(d.dram);
	free(d.plain_a);
	free(d.plain_b);
	free(d.keys);
	free(d.key_bytes);
	return rc;
}
