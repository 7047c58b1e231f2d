/*
 * test_ttl.c -- rows of a table with a TTL expire at read time.
 *
 * A row whose event time is older than (at - ttl) reads EXPIRED with null
 * values; a put at a time the row is already expired starts from an empty
 * row; filters never match expired rows.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "cohort.h"

#define T0 1700000000000LL
#define TTL 60000LL

enum { C_A, C_B, C_CNT, C_V, NCOLS };

static cohort_db *db;
static cohort_table *tbl;
static const int all_cols[NCOLS] = { C_A, C_B, C_CNT, C_V };

static void setup(void)
{
	static const cohort_column_def cols[NCOLS] = {
		{ "a", COHORT_I64, 0, 0 },
		{ "b", COHORT_CAT, 0, 0 },
		{ "cnt", COHORT_COUNTER, 0, 0 },
		{ "v", COHORT_VEC, 2, 0 },
	};
	cohort_table_options o = { .ttl_ms = TTL };

	cr_assert_eq(cohort_open(NULL, NULL, &db), 0);
	cr_assert_eq(cohort_table_create(db, "sessions", cols, NCOLS, &o, &tbl),
		     0);
}

static void teardown(void)
{
	cohort_close(db);
	db = NULL;
	tbl = NULL;
}

TestSuite(ttl, .init = setup, .fini = teardown);

static void put_full(const char *key, cohort_time time, int64_t a)
{
	static const float v[2] = { 1, 2 };
	cohort_field f[NCOLS] = {
		{ C_A, cohort_i64(a) },
		{ C_B, cohort_cat("blue") },
		{ C_CNT, cohort_f64(3) },
		{ C_V, cohort_vec(v, 2) },
	};

	cr_assert_eq(cohort_put(tbl, key, strlen(key), time, f, NCOLS), 0);
}

static int get_all(const char *key, cohort_time at, cohort_value *out)
{
	static float vb[2];

	for (int i = 0; i < NCOLS; i++) {
		out[i].type = COHORT_I64;
		out[i].v.i64 = 0x5a5a;
	}
	return cohort_get(tbl, key, strlen(key), all_cols, NCOLS, at, out, vb, 2,
			  NULL);
}

static void assert_all_null(const cohort_value *out)
{
	for (int i = 0; i < NCOLS; i++)
		cr_assert_eq(out[i].type, COHORT_NULL, "column %d not null", i);
}

Test(ttl, describe_reports_ttl)
{
	cohort_table_info info;

	cr_assert_eq(cohort_table_describe(tbl, &info), 0);
	cr_assert_eq(info.ttl_ms, TTL);
}

Test(ttl, row_within_ttl_reads_present)
{
	cohort_value out[NCOLS];

	put_full("k", T0, 5);
	cr_assert_eq(get_all("k", T0 + TTL - 1, out), COHORT_ROW_PRESENT);
	cr_assert_eq(out[C_A].v.i64, 5);
}

Test(ttl, row_exactly_ttl_old_is_not_expired)
{
	cohort_value out[NCOLS];

	/* expired means older than (at - ttl), strictly */
	put_full("k", T0, 5);
	cr_assert_eq(get_all("k", T0 + TTL, out), COHORT_ROW_PRESENT);
	cr_assert_eq(out[C_A].v.i64, 5);
}

Test(ttl, row_older_than_ttl_reads_expired_with_null_values)
{
	cohort_value out[NCOLS];

	put_full("k", T0, 5);
	cr_assert_eq(get_all("k", T0 + TTL + 1, out), COHORT_ROW_EXPIRED);
	assert_all_null(out);
}

Test(ttl, expiry_is_judged_at_each_read)
{
	cohort_value out[NCOLS];

	put_full("k", T0, 5);
	cr_assert_eq(get_all("k", T0 + 10 * TTL, out), COHORT_ROW_EXPIRED);
	/* a read does not destroy the row: an earlier `at` still sees it */
	cr_assert_eq(get_all("k", T0 + 1, out), COHORT_ROW_PRESENT);
	cr_assert_eq(out[C_A].v.i64, 5);
}

Test(ttl, latest_write_keeps_the_row_alive)
{
	cohort_value out[NCOLS];
	cohort_field f = { C_CNT, cohort_f64(1) };

	put_full("k", T0, 5);
	cr_assert_eq(cohort_put(tbl, "k", 1, T0 + TTL / 2, &f, 1), 0);
	cr_assert_eq(get_all("k", T0 + TTL + TTL / 4, out), COHORT_ROW_PRESENT);
	cr_assert_eq(out[C_A].v.i64, 5);
	cr_assert_eq(out[C_CNT].v.f64, 1.0);
}

Test(ttl, expired_rows_still_count_in_nrows)
{
	cohort_table_info info;

	put_full("a", T0, 1);
	put_full("b", T0 + 5 * TTL, 2);
	cr_assert_eq(cohort_table_describe(tbl, &info), 0);
	cr_assert_eq(info.nrows, 2);
}

Test(ttl, get_many_reads_expired_with_null_values)
{
	cohort_batch *b = NULL;
	cohort_key keys[3] = { { "old", 3 }, { "new", 3 }, { "none", 4 } };

	put_full("old", T0, 1);
	put_full("new", T0 + 2 * TTL, 2);
	cr_assert_eq(cohort_batch_new(tbl, all_cols, NCOLS, &b), 0);
	cr_assert_eq(cohort_get_many(tbl, keys, 3, T0 + 2 * TTL + 1, b), 0);
	cr_assert_eq(b->status[0], COHORT_ROW_EXPIRED);
	cr_assert_eq(b->status[1], COHORT_ROW_PRESENT);
	cr_assert_eq(b->status[2], COHORT_ROW_MISSING);
	cr_assert_eq(b->time[0], 0);
	cr_assert_eq(b->time[1], T0 + 2 * TTL);
	for (int c = 0; c < NCOLS; c++) {
		cr_assert_eq(b->cols[c].valid[0], 0, "column %d", c);
		cr_assert_eq(b->cols[c].valid[1], 1, "column %d", c);
	}
	cr_assert_eq(((int64_t *)b->cols[C_A].values)[1], 2);
	cohort_batch_free(b);
}

Test(ttl, put_after_expiry_starts_from_an_empty_row)
{
	cohort_value out[NCOLS];
	cohort_field f = { C_CNT, cohort_f64(7) };
	cohort_time rt = 0;

	put_full("k", T0, 5);
	cr_assert_eq(cohort_put(tbl, "k", 1, T0 + TTL + 1000, &f, 1), 0);
	cr_assert_eq(get_all("k", T0 + TTL + 1000, out), COHORT_ROW_PRESENT);
	cr_assert_eq(out[C_CNT].v.f64, 7.0);
	cr_assert_eq(out[C_A].type, COHORT_NULL, "expired column a came back");
	cr_assert_eq(out[C_B].type, COHORT_NULL, "expired column b came back");
	cr_assert_eq(out[C_V].type, COHORT_NULL, "expired column v came back");
	cr_assert_eq(cohort_get(tbl, "k", 1, NULL, 0, T0 + TTL + 1000, NULL, NULL,
				0, &rt), COHORT_ROW_PRESENT);
	cr_assert_eq(rt, T0 + TTL + 1000);
}

Test(ttl, put_after_expiry_does_not_resurrect_at_earlier_reads)
{
	cohort_value out[NCOLS];
	cohort_field f = { C_CNT, cohort_f64(7) };

	/* the row was cleared by the put: reading "in the past" cannot bring
	 * the old values back */
	put_full("k", T0, 5);
	cr_assert_eq(cohort_put(tbl, "k", 1, T0 + 3 * TTL, &f, 1), 0);
	cr_assert_eq(get_all("k", T0 + 1, out), COHORT_ROW_PRESENT);
	cr_assert_eq(out[C_A].type, COHORT_NULL);
}

Test(ttl, put_before_expiry_keeps_other_columns)
{
	cohort_value out[NCOLS];
	cohort_field f = { C_CNT, cohort_f64(7) };

	put_full("k", T0, 5);
	cr_assert_eq(cohort_put(tbl, "k", 1, T0 + TTL - 1, &f, 1), 0);
	cr_assert_eq(get_all("k", T0 + TTL - 1, out), COHORT_ROW_PRESENT);
	cr_assert_eq(out[C_A].v.i64, 5);
	cr_assert_eq(out[C_CNT].v.f64, 7.0);
}

Test(ttl, event_after_expiry_does_not_bring_old_values_back)
{
	cohort_value out[NCOLS];
	cohort_update u = { C_CNT, COHORT_OP_ADD, cohort_f64(1) };

	/* an expired row reads "without its data": adding to it must start
	 * from an empty row, not from the expired counter (3) */
	put_full("k", T0, 5);
	cr_assert_eq(cohort_event(tbl, "k", 1, T0 + TTL + 1000, &u, 1), 0);
	cr_assert_eq(get_all("k", T0 + TTL + 1000, out), COHORT_ROW_PRESENT);
	cr_assert_eq(out[C_A].type, COHORT_NULL, "expired column a came back");
	cr_assert_eq(out[C_CNT].v.f64, 1.0, "counter %g continued the expired one",
		     out[C_CNT].v.f64);
}

Test(ttl, now_is_judged_against_the_wall_clock)
{
	cohort_value out[NCOLS];
	cohort_time now = cohort_now();

	put_full("fresh", COHORT_NOW, 1);
	put_full("stale", now - 2 * TTL, 2);
	cr_assert_eq(get_all("fresh", COHORT_NOW, out), COHORT_ROW_PRESENT);
	cr_assert_eq(out[C_A].v.i64, 1);
	cr_assert_eq(get_all("stale", COHORT_NOW, out), COHORT_ROW_EXPIRED);
}

Test(ttl, event_on_expired_row_row_time_moves_on)
{
	cohort_update u = { C_CNT, COHORT_OP_ADD, cohort_f64(1) };
	cohort_time rt = 0;

	put_full("k", T0, 5);
	cr_assert_eq(cohort_event(tbl, "k", 1, T0 + 2 * TTL, &u, 1), 0);
	cr_assert_eq(cohort_get(tbl, "k", 1, NULL, 0, T0 + 2 * TTL + 1, NULL, NULL,
				0, &rt), COHORT_ROW_PRESENT);
	cr_assert_eq(rt, T0 + 2 * TTL);
}

/* ---- filters ----------------------------------------------------------- */

static uint64_t count(cohort_filter *f, int root, cohort_time at)
{
	uint64_t n = 999999;

	cr_assert_geq(root, 0, "filter build failed: %d", root);
	cr_assert_eq(cohort_filter_count(f, root, at, &n), 0);
	return n;
}

static int seen_expired;

static int note_key_cb(const void *key, size_t key_len, void *ctx)
{
	(void)ctx;
	if (key_len >= 3 && memcmp(key, "old", 3) == 0)
		seen_expired++;
	return 0;
}

Test(ttl, filters_never_match_expired_rows)
{
	cohort_filter *f = NULL;
	char key[16];
	cohort_time at = T0 + TTL + 10;
	int n_a, n_null_a, n_null_b, n_cnt, n_any, n_not;
	cohort_bitmap *bm = NULL;
	uint64_t nkeys = 0;

	/* 30 expired rows "old*", 20 fresh rows "new*", 10 fresh with a null */
	for (int i = 0; i < 30; i++) {
		snprintf(key, sizeof key, "old%d", i);
		put_full(key, T0, i);
	}
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof key, "new%d", i);
		put_full(key, T0 + TTL, i);
	}
	for (int i = 0; i < 10; i++) {
		cohort_field fl = { C_CNT, cohort_f64(3) };

		snprintf(key, sizeof key, "half%d", i);
		cr_assert_eq(cohort_put(tbl, key, strlen(key), T0 + TTL, &fl, 1),
			     0);
	}
	cr_assert_eq(cohort_filter_new(tbl, &f), 0);
	n_a = cohort_filter_cmp(f, C_A, COHORT_GE, cohort_i64(0));
	n_null_a = cohort_filter_is_null(f, C_A);
	n_null_b = cohort_filter_is_null(f, C_B);
	n_cnt = cohort_filter_cmp(f, C_CNT, COHORT_EQ, cohort_f64(3));
	n_any = cohort_filter_or(f, n_null_a, cohort_filter_not_null(f, C_A));
	n_not = cohort_filter_not(f, cohort_filter_cmp(f, C_A, COHORT_LT,
						       cohort_i64(0)));
	cr_assert_eq(count(f, n_a, at), 20);
	cr_assert_eq(count(f, n_null_a, at), 10);
	cr_assert_eq(count(f, n_null_b, at), 10);
	cr_assert_eq(count(f, n_cnt, at), 30);
	cr_assert_eq(count(f, n_any, at), 30);
	cr_assert_eq(count(f, n_not, at), 20);
	/* the same filter before expiry sees the old rows */
	cr_assert_eq(count(f, n_a, T0 + TTL), 50);
	cr_assert_eq(count(f, n_any, T0 + TTL), 60);

	cr_assert_eq(cohort_filter_eval(f, n_any, at, &bm), 0);
	cr_assert_eq(cohort_bitmap_count(bm), 30);
	cohort_bitmap_free(bm);
	seen_expired = 0;
	cr_assert_eq(cohort_filter_keys(f, n_any, at, note_key_cb, NULL, &nkeys),
		     0);
	cr_assert_eq(seen_expired, 0);
	cr_assert_eq(nkeys, 30);
	cohort_filter_free(f);
}
