/*
 * test_rw.c -- puts, gets, get_many batches, deletes and growth.
 *
 * One table with a column of every type; values are written with cohort_put
 * and read back with cohort_get and cohort_get_many, then deleted and
 * re-inserted to check slot reuse, and grown through many resizes.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cohort.h"

#define T0 1700000000000LL
#define DIM 5

enum { C_F32, C_F64, C_I32, C_I64, C_BOOL, C_CAT, C_VEC, C_CNT, C_DEC,
       C_MIN, C_MAX, C_LAST, NCOLS };

static const cohort_column_def every_type[NCOLS] = {
	{ "f32", COHORT_F32, 0, 0 },
	{ "f64", COHORT_F64, 0, 0 },
	{ "i32", COHORT_I32, 0, 0 },
	{ "i64", COHORT_I64, 0, 0 },
	{ "flag", COHORT_BOOL, 0, 0 },
	{ "city", COHORT_CAT, 0, 0 },
	{ "emb", COHORT_VEC, DIM, 0 },
	{ "clicks", COHORT_COUNTER, 0, 0 },
	{ "heat", COHORT_DECAY, 0, 1000 },
	{ "lo", COHORT_MIN, 0, 0 },
	{ "hi", COHORT_MAX, 0, 0 },
	{ "latest", COHORT_LAST, 0, 0 },
};
static const int all_cols[NCOLS] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 };

static cohort_db *db;
static cohort_table *tbl;

static void setup(void)
{
	cr_assert_eq(cohort_open(NULL, NULL, &db), 0);
	cr_assert_eq(cohort_table_create(db, "rw", every_type, NCOLS, NULL, &tbl),
		     0);
}

static void teardown(void)
{
	cohort_close(db);
	db = NULL;
	tbl = NULL;
}

TestSuite(put, .init = setup, .fini = teardown);
TestSuite(get, .init = setup, .fini = teardown);
TestSuite(get_many, .init = setup, .fini = teardown);
TestSuite(delete, .init = setup, .fini = teardown);
TestSuite(growth, .init = setup, .fini = teardown);

static const char *const cities[] = { "paris", "rome", "oslo", "lima",
				      "tokyo" };

/* Deterministic contents of row i, written at T0 + i % 7. */
static void row_vec(int i, float v[DIM])
{
	for (int d = 0; d < DIM; d++)
		v[d] = (float)i * 0.5f + (float)d;
}

static void put_row(const char *key, int i)
{
	float v[DIM];
	cohort_field f[NCOLS];

	row_vec(i, v);
	f[C_F32] = (cohort_field){ C_F32, cohort_f32((float)i / 4.0f) };
	f[C_F64] = (cohort_field){ C_F64, cohort_f64(i * 1.25) };
	f[C_I32] = (cohort_field){ C_I32, cohort_i32(-i) };
	f[C_I64] = (cohort_field){ C_I64, cohort_i64((int64_t)i << 33) };
	f[C_BOOL] = (cohort_field){ C_BOOL, cohort_bool(i % 2) };
	f[C_CAT] = (cohort_field){ C_CAT, cohort_cat(cities[i % 5]) };
	f[C_VEC] = (cohort_field){ C_VEC, cohort_vec(v, DIM) };
	f[C_CNT] = (cohort_field){ C_CNT, cohort_i64(i) };
	f[C_DEC] = (cohort_field){ C_DEC, cohort_f64(i) };
	f[C_MIN] = (cohort_field){ C_MIN, cohort_f32(-1.5f * (float)i) };
	f[C_MAX] = (cohort_field){ C_MAX, cohort_i32(3 * i) };
	f[C_LAST] = (cohort_field){ C_LAST, cohort_f64(i + 0.5) };
	cr_assert_eq(cohort_put(tbl, key, strlen(key), T0, f, NCOLS), 0,
		     "put %s", key);
}

static void check_row(const cohort_value *out, int i)
{
	float v[DIM];

	row_vec(i, v);
	cr_assert_eq(out[C_F32].type, COHORT_F32);
	cr_assert_eq(out[C_F32].v.f32, (float)i / 4.0f);
	cr_assert_eq(out[C_F64].type, COHORT_F64);
	cr_assert_eq(out[C_F64].v.f64, i * 1.25);
	cr_assert_eq(out[C_I32].type, COHORT_I32);
	cr_assert_eq(out[C_I32].v.i32, -i);
	cr_assert_eq(out[C_I64].type, COHORT_I64);
	cr_assert_eq(out[C_I64].v.i64, (int64_t)i << 33);
	cr_assert_eq(out[C_BOOL].type, COHORT_BOOL);
	cr_assert_eq(out[C_BOOL].v.b, (bool)(i % 2));
	cr_assert_eq(out[C_CAT].type, COHORT_CAT);
	cr_assert_eq(out[C_CAT].v.str.len, strlen(cities[i % 5]));
	cr_assert_str_eq(out[C_CAT].v.str.ptr, cities[i % 5]);
	cr_assert_eq(out[C_VEC].type, COHORT_VEC);
	cr_assert_eq(out[C_VEC].v.vec.dim, DIM);
	cr_assert_eq(memcmp(out[C_VEC].v.vec.ptr, v, sizeof v), 0);
	for (int c = C_CNT; c <= C_LAST; c++)
		cr_assert_eq(out[c].type, COHORT_F64, "aggregate %d", c);
	cr_assert_eq(out[C_CNT].v.f64, (double)i);
	cr_assert_eq(out[C_DEC].v.f64, (double)i); /* read at its own time */
	cr_assert_eq(out[C_MIN].v.f64, -1.5 * i);
	cr_assert_eq(out[C_MAX].v.f64, 3.0 * i);
	cr_assert_eq(out[C_LAST].v.f64, i + 0.5);
}

static int get_all(const char *key, cohort_time at, cohort_value *out,
		   float *vec_buf, cohort_time *row_time)
{
	return cohort_get(tbl, key, strlen(key), all_cols, NCOLS, at, out,
			  vec_buf, DIM, row_time);
}

static void fill_garbage(cohort_value *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		out[i].type = COHORT_I64;
		out[i].v.i64 = 0x5a5a5a5a;
	}
}

static void assert_all_null(const cohort_value *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(out[i].type, COHORT_NULL, "value %zu not null", i);
}

static int put1(const char *key, cohort_time time, int col, cohort_value v)
{
	cohort_field f = { col, v };

	return cohort_put(tbl, key, strlen(key), time, &f, 1);
}

static cohort_table_info describe(void)
{
	cohort_table_info info;

	cr_assert_eq(cohort_table_describe(tbl, &info), 0);
	return info;
}

/* ---- put --------------------------------------------------------------- */

Test(put, stores_and_reads_every_type)
{
	cohort_value out[NCOLS];
	float vb[DIM];

	put_row("alice", 12);
	cr_assert_eq(get_all("alice", T0, out, vb, NULL), COHORT_ROW_PRESENT);
	check_row(out, 12);
}

Test(put, stores_extreme_values)
{
	cohort_field f[4] = {
		{ C_I32, cohort_i32(INT32_MIN) },
		{ C_I64, cohort_i64(INT64_MAX) },
		{ C_F64, cohort_f64(-0.0) },
		{ C_F32, cohort_f32(1e-45f) },
	};
	int cols[4] = { C_I32, C_I64, C_F64, C_F32 };
	cohort_value out[4];

	cr_assert_eq(cohort_put(tbl, "x", 1, T0, f, 4), 0);
	cr_assert_eq(cohort_get(tbl, "x", 1, cols, 4, T0, out, NULL, 0, NULL),
		     COHORT_ROW_PRESENT);
	cr_assert_eq(out[0].v.i32, INT32_MIN);
	cr_assert_eq(out[1].v.i64, INT64_MAX);
	cr_assert(out[2].v.f64 == 0.0 && signbit(out[2].v.f64));
	cr_assert_eq(out[3].v.f32, 1e-45f);
}

Test(put, stores_null_over_a_value)
{
	cohort_field f[NCOLS];
	cohort_value out[NCOLS];
	float vb[DIM];

	put_row("alice", 3);
	for (int c = 0; c < NCOLS; c++)
		f[c] = (cohort_field){ c, cohort_null() };
	cr_assert_eq(cohort_put(tbl, "alice", 5, T0 + 1, f, NCOLS), 0);
	fill_garbage(out, NCOLS);
	cr_assert_eq(get_all("alice", T0 + 1, out, vb, NULL), COHORT_ROW_PRESENT);
	assert_all_null(out, NCOLS);
}

Test(put, upserts_some_columns)
{
	cohort_field f[2] = {
		{ C_I32, cohort_i32(777) },
		{ C_CAT, cohort_cat("berlin") },
	};
	cohort_value out[NCOLS];
	float vb[DIM];

	put_row("alice", 9);
	cr_assert_eq(cohort_put(tbl, "alice", 5, T0, f, 2), 0);
	cr_assert_eq(get_all("alice", T0, out, vb, NULL), COHORT_ROW_PRESENT);
	cr_assert_eq(out[C_I32].v.i32, 777);
	cr_assert_str_eq(out[C_CAT].v.str.ptr, "berlin");
	/* every other column as put_row left it */
	out[C_I32] = cohort_i32(-9);
	out[C_CAT] = cohort_cat(cities[9 % 5]);
	check_row(out, 9);
}

Test(put, new_row_starts_all_null)
{
	cohort_value out[NCOLS];
	float vb[DIM];

	cr_assert_eq(put1("bob", T0, C_F64, cohort_f64(1)), 0);
	fill_garbage(out, NCOLS);
	cr_assert_eq(get_all("bob", T0, out, vb, NULL), COHORT_ROW_PRESENT);
	cr_assert_eq(out[C_F64].type, COHORT_F64);
	out[C_F64] = cohort_null();
	assert_all_null(out, NCOLS);
}

Test(put, cat_from_bytes_needs_no_nul)
{
	static const char buf[] = "parisXYZ";
	int col = C_CAT;
	cohort_value out;

	cr_assert_eq(put1("k", T0, C_CAT, cohort_catn(buf, 5)), 0);
	cr_assert_eq(cohort_get(tbl, "k", 1, &col, 1, T0, &out, NULL, 0, NULL),
		     COHORT_ROW_PRESENT);
	cr_assert_eq(out.v.str.len, 5);
	cr_assert_str_eq(out.v.str.ptr, "paris");
}

Test(put, aggregates_take_any_numeric_type)
{
	cohort_field f[4] = {
		{ C_CNT, cohort_i32(-3) },
		{ C_MIN, cohort_i64(1LL << 40) },
		{ C_MAX, cohort_f32(0.5f) },
		{ C_LAST, cohort_f64(2.25) },
	};
	int cols[4] = { C_CNT, C_MIN, C_MAX, C_LAST };
	cohort_value out[4];

	cr_assert_eq(cohort_put(tbl, "k", 1, T0, f, 4), 0);
	cr_assert_eq(cohort_get(tbl, "k", 1, cols, 4, T0, out, NULL, 0, NULL),
		     COHORT_ROW_PRESENT);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(out[i].type, COHORT_F64);
	cr_assert_eq(out[0].v.f64, -3.0);
	cr_assert_eq(out[1].v.f64, (double)(1LL << 40));
	cr_assert_eq(out[2].v.f64, 0.5);
	cr_assert_eq(out[3].v.f64, 2.25);
}

Test(put, replaces_a_vector)
{
	float a[DIM] = { 1, 2, 3, 4, 5 }, b[DIM] = { -1, -2, -3, -4, -5 };
	int col = C_VEC;
	cohort_value out;
	float vb[DIM];

	cr_assert_eq(put1("k", T0, C_VEC, cohort_vec(a, DIM)), 0);
	cr_assert_eq(put1("k", T0, C_VEC, cohort_vec(b, DIM)), 0);
	cr_assert_eq(cohort_get(tbl, "k", 1, &col, 1, T0, &out, vb, DIM, NULL),
		     COHORT_ROW_PRESENT);
	cr_assert_eq(memcmp(out.v.vec.ptr, b, sizeof b), 0);
}

Test(put, now_uses_the_wall_clock)
{
	cohort_time before, after, rt = 0;
	int col = C_F64;
	cohort_value out;

	before = cohort_now();
	cr_assert_eq(put1("k", COHORT_NOW, C_F64, cohort_f64(1)), 0);
	after = cohort_now();
	cr_assert_eq(cohort_get(tbl, "k", 1, &col, 1, COHORT_NOW, &out, NULL, 0,
				&rt), COHORT_ROW_PRESENT);
	cr_assert(rt >= before && rt <= after, "row time %lld not in [%lld, %lld]",
		  (long long)rt, (long long)before, (long long)after);
	/* sanity: after 2023 */
	cr_assert_gt(before, T0);
}

Test(put, keys_are_binary)
{
	static const char k1[3] = { 'a', '\0', 'b' }, k2[3] = { 'a', '\0', 'c' };
	int col = C_I32;
	cohort_value out;

	cr_assert_eq(cohort_put(tbl, k1, 3, T0, &(cohort_field){ C_I32,
			cohort_i32(1) }, 1), 0);
	cr_assert_eq(cohort_put(tbl, k2, 3, T0, &(cohort_field){ C_I32,
			cohort_i32(2) }, 1), 0);
	cr_assert_eq(describe().nrows, 2);
	cr_assert_eq(cohort_get(tbl, k1, 3, &col, 1, T0, &out, NULL, 0, NULL),
		     COHORT_ROW_PRESENT);
	cr_assert_eq(out.v.i32, 1);
	cr_assert_eq(cohort_get(tbl, k2, 3, &col, 1, T0, &out, NULL, 0, NULL),
		     COHORT_ROW_PRESENT);
	cr_assert_eq(out.v.i32, 2);
	cr_assert_eq(cohort_get(tbl, "a", 1, &col, 1, T0, &out, NULL, 0, NULL),
		     COHORT_ROW_MISSING);
}

/* ---- get --------------------------------------------------------------- */

Test(get, missing_key_reads_missing_with_null_values)
{
	cohort_value out[NCOLS];
	float vb[DIM];

	put_row("alice", 1);
	fill_garbage(out, NCOLS);
	cr_assert_eq(get_all("nobody", T0, out, vb, NULL), COHORT_ROW_MISSING);
	assert_all_null(out, NCOLS);
}

Test(get, vec_buf_too_small_is_erange)
{
	cohort_value out[NCOLS];
	float vb[DIM];

	put_row("alice", 1);
	cr_assert_eq(cohort_get(tbl, "alice", 5, all_cols, NCOLS, T0, out, vb,
				DIM - 1, NULL), COHORT_ERANGE);
	cr_assert_eq(cohort_get(tbl, "alice", 5, all_cols, NCOLS, T0, out, NULL,
				0, NULL), COHORT_ERANGE);
}

Test(get, vectors_fill_vec_buf_one_after_another)
{
	int cols[3] = { C_VEC, C_I32, C_VEC };
	cohort_value out[3];
	float vb[2 * DIM], v[DIM];

	put_row("alice", 4);
	row_vec(4, v);
	cr_assert_eq(cohort_get(tbl, "alice", 5, cols, 3, T0, out, vb, 2 * DIM,
				NULL), COHORT_ROW_PRESENT);
	cr_assert_eq(out[0].v.vec.ptr, vb);
	cr_assert_eq(out[2].v.vec.ptr, vb + DIM);
	cr_assert_eq(memcmp(vb, v, sizeof v), 0);
	cr_assert_eq(memcmp(vb + DIM, v, sizeof v), 0);
	cr_assert_eq(cohort_get(tbl, "alice", 5, cols, 3, T0, out, vb,
				2 * DIM - 1, NULL), COHORT_ERANGE);
}

Test(get, row_time_is_max_of_event_times)
{
	cohort_update u = { C_CNT, COHORT_OP_ADD, cohort_f64(1) };
	cohort_time rt = 0;
	int col = C_CNT;
	cohort_value out;

	cr_assert_eq(put1("k", T0 + 10, C_I32, cohort_i32(1)), 0);
	cr_assert_eq(put1("k", T0, C_I32, cohort_i32(2)), 0);
	cr_assert_eq(cohort_event(tbl, "k", 1, T0 + 5, &u, 1), 0);
	cr_assert_eq(cohort_get(tbl, "k", 1, &col, 1, T0 + 100, &out, NULL, 0,
				&rt), COHORT_ROW_PRESENT);
	cr_assert_eq(rt, T0 + 10);
	cr_assert_eq(cohort_event(tbl, "k", 1, T0 + 20, &u, 1), 0);
	cr_assert_eq(cohort_get(tbl, "k", 1, &col, 1, T0 + 100, &out, NULL, 0,
				&rt), COHORT_ROW_PRESENT);
	cr_assert_eq(rt, T0 + 20);
	cr_assert_eq(out.v.f64, 2.0);
}

Test(get, decay_value_decays_to_read_time)
{
	int col = C_DEC;
	cohort_value out;

	/* half-life 1000 ms: 8 at T0 is 4 at T0 + 1000, 1 at T0 + 3000 */
	cr_assert_eq(put1("k", T0, C_DEC, cohort_f64(8)), 0);
	cr_assert_eq(cohort_get(tbl, "k", 1, &col, 1, T0 + 1000, &out, NULL, 0,
				NULL), COHORT_ROW_PRESENT);
	cr_assert_float_eq(out.v.f64, 4.0, 1e-12);
	cr_assert_eq(cohort_get(tbl, "k", 1, &col, 1, T0 + 3000, &out, NULL, 0,
				NULL), COHORT_ROW_PRESENT);
	cr_assert_float_eq(out.v.f64, 1.0, 1e-12);
}

Test(get, no_columns_reads_status_only)
{
	cohort_time rt = 0;

	put_row("alice", 2);
	cr_assert_eq(cohort_get(tbl, "alice", 5, NULL, 0, T0, NULL, NULL, 0, &rt),
		     COHORT_ROW_PRESENT);
	cr_assert_eq(rt, T0);
	cr_assert_eq(cohort_get(tbl, "bob", 3, NULL, 0, T0, NULL, NULL, 0, NULL),
		     COHORT_ROW_MISSING);
}

Test(get, cat_strings_stay_valid_as_the_dictionary_grows)
{
	int col = C_CAT;
	cohort_value out;
	const char *p;
	char key[32], s[32];

	cr_assert_eq(put1("first", T0, C_CAT, cohort_cat("original")), 0);
	cr_assert_eq(cohort_get(tbl, "first", 5, &col, 1, T0, &out, NULL, 0,
				NULL), COHORT_ROW_PRESENT);
	p = out.v.str.ptr;
	for (int i = 0; i < 20000; i++) {
		snprintf(key, sizeof key, "k%d", i);
		snprintf(s, sizeof s, "city-%d", i);
		cr_assert_eq(put1(key, T0, C_CAT, cohort_cat(s)), 0);
	}
	cr_assert_str_eq(p, "original");
	cr_assert_eq(cohort_get(tbl, "k19999", 6, &col, 1, T0, &out, NULL, 0,
				NULL), COHORT_ROW_PRESENT);
	cr_assert_str_eq(out.v.str.ptr, "city-19999");
}

/* ---- get_many ---------------------------------------------------------- */

static const void *block_at(const cohort_block *blk, size_t i)
{
	return (const char *)blk->values + i * blk->width;
}

static cohort_batch *new_batch(void)
{
	cohort_batch *b = NULL;

	cr_assert_eq(cohort_batch_new(tbl, all_cols, NCOLS, &b), 0);
	cr_assert_not_null(b);
	return b;
}

static void check_block_row(const cohort_batch *b, size_t k, int i)
{
	float v[DIM];
	const cohort_block *c = b->cols;
	uint32_t len = 0;
	const char *s;

	row_vec(i, v);
	for (int col = 0; col < NCOLS; col++)
		cr_assert_eq(c[col].valid[k], 1, "key %zu col %d invalid", k, col);
	cr_assert_eq(*(const float *)block_at(&c[C_F32], k), (float)i / 4.0f);
	cr_assert_eq(*(const double *)block_at(&c[C_F64], k), i * 1.25);
	cr_assert_eq(*(const int32_t *)block_at(&c[C_I32], k), -i);
	cr_assert_eq(*(const int64_t *)block_at(&c[C_I64], k), (int64_t)i << 33);
	cr_assert_eq(*(const uint8_t *)block_at(&c[C_BOOL], k), (uint8_t)(i % 2));
	s = cohort_cat_string(tbl, C_CAT, *(const uint32_t *)block_at(&c[C_CAT], k),
			      &len);
	cr_assert_not_null(s);
	cr_assert_eq(len, strlen(cities[i % 5]));
	cr_assert_str_eq(s, cities[i % 5]);
	cr_assert_eq(memcmp(block_at(&c[C_VEC], k), v, sizeof v), 0);
	cr_assert_eq(*(const double *)block_at(&c[C_CNT], k), (double)i);
	cr_assert_eq(*(const double *)block_at(&c[C_DEC], k), (double)i);
	cr_assert_eq(*(const double *)block_at(&c[C_MIN], k), -1.5 * i);
	cr_assert_eq(*(const double *)block_at(&c[C_MAX], k), 3.0 * i);
	cr_assert_eq(*(const double *)block_at(&c[C_LAST], k), i + 0.5);
}

Test(get_many, describes_each_block)
{
	static const cohort_type want[NCOLS] = {
		COHORT_F32, COHORT_F64, COHORT_I32, COHORT_I64, COHORT_BOOL,
		COHORT_CAT, COHORT_VEC, COHORT_F64, COHORT_F64, COHORT_F64,
		COHORT_F64, COHORT_F64,
	};
	static const size_t width[NCOLS] = { 4, 8, 4, 8, 1, 4, 0, 8, 8, 8, 8, 8 };
	cohort_batch *b = new_batch();
	cohort_key k = { "alice", 5 };

	put_row("alice", 1);
	cr_assert_eq(cohort_get_many(tbl, &k, 1, T0, b), 0);
	cr_assert_eq(b->nkeys, 1);
	cr_assert_eq(b->ncols, NCOLS);
	for (int c = 0; c < NCOLS; c++) {
		cr_assert_eq(b->cols[c].column, c);
		cr_assert_eq(b->cols[c].type, want[c], "column %d", c);
		if (c == C_VEC) {
			cr_assert_eq(b->cols[c].dim, DIM);
			cr_assert_geq(b->cols[c].width, DIM * sizeof(float));
			cr_assert_eq(b->cols[c].width % sizeof(float), 0);
		} else {
			cr_assert_eq(b->cols[c].dim, 1, "column %d", c);
			cr_assert_eq(b->cols[c].width, width[c], "column %d", c);
		}
	}
	cohort_batch_free(b);
}

Test(get_many, reads_every_type_columnar)
{
	cohort_batch *b = new_batch();
	cohort_key keys[40];
	char names[40][16];

	for (int i = 0; i < 40; i++) {
		snprintf(names[i], sizeof names[i], "user%d", i);
		put_row(names[i], i * 3);
		keys[39 - i] = (cohort_key){ names[i], strlen(names[i]) };
	}
	cr_assert_eq(cohort_get_many(tbl, keys, 40, T0, b), 0);
	cr_assert_eq(b->nkeys, 40);
	for (int k = 0; k < 40; k++) {
		cr_assert_eq(b->status[k], COHORT_ROW_PRESENT);
		cr_assert_eq(b->time[k], T0);
		check_block_row(b, (size_t)k, (39 - k) * 3);
	}
	cohort_batch_free(b);
}

Test(get_many, missing_keys_are_invalid_with_time_0)
{
	cohort_batch *b = new_batch();
	cohort_key keys[3] = { { "alice", 5 }, { "ghost", 5 }, { "bob", 3 } };

	put_row("alice", 7);
	put_row("bob", 8);
	cr_assert_eq(cohort_get_many(tbl, keys, 3, T0, b), 0);
	cr_assert_eq(b->status[0], COHORT_ROW_PRESENT);
	cr_assert_eq(b->status[1], COHORT_ROW_MISSING);
	cr_assert_eq(b->status[2], COHORT_ROW_PRESENT);
	cr_assert_eq(b->time[1], 0);
	for (int c = 0; c < NCOLS; c++)
		cr_assert_eq(b->cols[c].valid[1], 0, "column %d", c);
	check_block_row(b, 0, 7);
	check_block_row(b, 2, 8);
	cohort_batch_free(b);
}

Test(get_many, null_values_are_invalid)
{
	static const int cols[2] = { C_I32, C_F64 };
	cohort_batch *b = NULL;
	cohort_key k = { "k", 1 };

	cr_assert_eq(put1("k", T0, C_I32, cohort_i32(5)), 0);
	cr_assert_eq(cohort_batch_new(tbl, cols, 2, &b), 0);
	cr_assert_eq(cohort_get_many(tbl, &k, 1, T0, b), 0);
	cr_assert_eq(b->status[0], COHORT_ROW_PRESENT);
	cr_assert_eq(b->cols[0].valid[0], 1);
	cr_assert_eq(((int32_t *)b->cols[0].values)[0], 5);
	cr_assert_eq(b->cols[1].valid[0], 0);
	cohort_batch_free(b);
}

Test(get_many, duplicate_keys_read_the_same_row)
{
	cohort_batch *b = new_batch();
	cohort_key keys[4] = { { "a", 1 }, { "a", 1 }, { "b", 1 }, { "a", 1 } };

	put_row("a", 5);
	put_row("b", 6);
	cr_assert_eq(cohort_get_many(tbl, keys, 4, T0, b), 0);
	check_block_row(b, 0, 5);
	check_block_row(b, 1, 5);
	check_block_row(b, 2, 6);
	check_block_row(b, 3, 5);
	cohort_batch_free(b);
}

Test(get_many, cat_codes_decode_with_cat_string)
{
	static const int col = C_CAT;
	cohort_batch *b = NULL;
	cohort_key keys[5];
	char names[5][8];
	static const char *vals[5] = { "x", "yy", "x", "zzz", "yy" };

	for (int i = 0; i < 5; i++) {
		snprintf(names[i], sizeof names[i], "k%d", i);
		keys[i] = (cohort_key){ names[i], strlen(names[i]) };
		cr_assert_eq(put1(names[i], T0, C_CAT, cohort_cat(vals[i])), 0);
	}
	cr_assert_eq(cohort_batch_new(tbl, &col, 1, &b), 0);
	cr_assert_eq(cohort_get_many(tbl, keys, 5, T0, b), 0);
	{
		const uint32_t *codes = b->cols[0].values;
		uint32_t len;

		cr_assert_eq(codes[0], codes[2], "same string, different codes");
		cr_assert_eq(codes[1], codes[4]);
		cr_assert_neq(codes[0], codes[1]);
		cr_assert_neq(codes[0], codes[3]);
		for (int i = 0; i < 5; i++) {
			const char *s = cohort_cat_string(tbl, C_CAT, codes[i],
							  &len);

			cr_assert_not_null(s);
			cr_assert_str_eq(s, vals[i]);
			cr_assert_eq(len, strlen(vals[i]));
		}
	}
	cohort_batch_free(b);
}

Test(get_many, vectors_are_contiguous)
{
	static const int col = C_VEC;
	cohort_batch *b = NULL;
	cohort_key keys[9];
	char names[9][8];

	for (int i = 0; i < 9; i++) {
		snprintf(names[i], sizeof names[i], "k%d", i);
		keys[i] = (cohort_key){ names[i], strlen(names[i]) };
		put_row(names[i], i + 100);
	}
	cr_assert_eq(cohort_batch_new(tbl, &col, 1, &b), 0);
	cr_assert_eq(cohort_get_many(tbl, keys, 9, T0, b), 0);
	cr_assert_eq(b->cols[0].dim, DIM);
	for (int i = 0; i < 9; i++) {
		float v[DIM];

		row_vec(i + 100, v);
		cr_assert_eq(b->cols[0].valid[i], 1);
		cr_assert_eq(memcmp(block_at(&b->cols[0], (size_t)i), v, sizeof v),
			     0, "vector %d", i);
	}
	cohort_batch_free(b);
}

Test(get_many, values_are_64_byte_aligned)
{
	cohort_batch *b = new_batch();
	cohort_key keys[3] = { { "a", 1 }, { "b", 1 }, { "c", 1 } };

	put_row("a", 1);
	cr_assert_eq(cohort_get_many(tbl, keys, 3, T0, b), 0);
	for (int c = 0; c < NCOLS; c++)
		cr_assert_eq((uintptr_t)b->cols[c].values % 64, 0, "column %d", c);
	cohort_batch_free(b);
}

Test(get_many, batch_is_resized_between_calls)
{
	cohort_batch *b = new_batch();
	static cohort_key keys[3000];
	static char names[3000][12];

	for (int i = 0; i < 3000; i++) {
		snprintf(names[i], sizeof names[i], "k%d", i);
		keys[i] = (cohort_key){ names[i], strlen(names[i]) };
		put_row(names[i], i);
	}
	cr_assert_eq(cohort_get_many(tbl, keys, 2, T0, b), 0);
	cr_assert_eq(b->nkeys, 2);
	check_block_row(b, 1, 1);
	cr_assert_eq(cohort_get_many(tbl, keys, 3000, T0, b), 0);
	cr_assert_eq(b->nkeys, 3000);
	for (int i = 0; i < 3000; i++) {
		cr_assert_eq(b->status[i], COHORT_ROW_PRESENT);
		check_block_row(b, (size_t)i, i);
	}
	cr_assert_eq(cohort_get_many(tbl, keys + 2990, 3, T0, b), 0);
	cr_assert_eq(b->nkeys, 3);
	check_block_row(b, 2, 2992);
	cohort_batch_free(b);
}

Test(get_many, zero_keys_is_empty)
{
	cohort_batch *b = new_batch();

	cr_assert_eq(cohort_get_many(tbl, NULL, 0, T0, b), 0);
	cr_assert_eq(b->nkeys, 0);
	cohort_batch_free(b);
}

Test(get_many, agrees_with_get_on_row_time)
{
	cohort_batch *b = new_batch();
	cohort_key k = { "k", 1 };
	cohort_time rt = 0;

	cr_assert_eq(put1("k", T0 + 50, C_I32, cohort_i32(1)), 0);
	cr_assert_eq(put1("k", T0 + 20, C_I32, cohort_i32(2)), 0);
	cr_assert_eq(cohort_get_many(tbl, &k, 1, T0 + 100, b), 0);
	cr_assert_eq(cohort_get(tbl, "k", 1, NULL, 0, T0 + 100, NULL, NULL, 0,
				&rt), COHORT_ROW_PRESENT);
	cr_assert_eq(b->time[0], T0 + 50);
	cr_assert_eq(rt, T0 + 50);
	cohort_batch_free(b);
}

/* ---- delete ------------------------------------------------------------ */

Test(delete, removes_the_row)
{
	cohort_value out[NCOLS];
	float vb[DIM];

	put_row("alice", 3);
	cr_assert_eq(cohort_delete(tbl, "alice", 5), 0);
	fill_garbage(out, NCOLS);
	cr_assert_eq(get_all("alice", T0, out, vb, NULL), COHORT_ROW_MISSING);
	assert_all_null(out, NCOLS);
	cr_assert_eq(describe().nrows, 0);
}

Test(delete, second_delete_is_enotfound)
{
	put_row("alice", 3);
	cr_assert_eq(cohort_delete(tbl, "alice", 5), 0);
	cr_assert_eq(cohort_delete(tbl, "alice", 5), COHORT_ENOTFOUND);
}

Test(delete, keeps_other_keys)
{
	cohort_value out[NCOLS];
	float vb[DIM];

	put_row("alice", 3);
	put_row("bob", 4);
	put_row("carol", 5);
	cr_assert_eq(cohort_delete(tbl, "bob", 3), 0);
	cr_assert_eq(get_all("alice", T0, out, vb, NULL), COHORT_ROW_PRESENT);
	check_row(out, 3);
	cr_assert_eq(get_all("carol", T0, out, vb, NULL), COHORT_ROW_PRESENT);
	check_row(out, 5);
	cr_assert_eq(describe().nrows, 2);
}

Test(delete, reinserted_key_starts_all_null)
{
	cohort_value out[NCOLS];
	float vb[DIM];
	cohort_time rt = 0;

	put_row("alice", 3);
	cr_assert_eq(cohort_delete(tbl, "alice", 5), 0);
	cr_assert_eq(put1("alice", T0 - 500, C_I64, cohort_i64(1)), 0);
	fill_garbage(out, NCOLS);
	cr_assert_eq(get_all("alice", T0, out, vb, &rt), COHORT_ROW_PRESENT);
	cr_assert_eq(out[C_I64].v.i64, 1);
	out[C_I64] = cohort_null();
	assert_all_null(out, NCOLS);
	/* the event time starts over too */
	cr_assert_eq(rt, T0 - 500);
}

Test(delete, reused_slot_holds_no_old_values)
{
	char key[16];
	cohort_value out[NCOLS];
	float vb[DIM];

	/* delete many, then insert other keys that take over their slots */
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof key, "old%d", i);
		put_row(key, i);
	}
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof key, "old%d", i);
		cr_assert_eq(cohort_delete(tbl, key, strlen(key)), 0);
	}
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof key, "new%d", i);
		cr_assert_eq(put1(key, T0, C_BOOL, cohort_bool(true)), 0);
	}
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof key, "new%d", i);
		fill_garbage(out, NCOLS);
		cr_assert_eq(get_all(key, T0, out, vb, NULL), COHORT_ROW_PRESENT);
		cr_assert_eq(out[C_BOOL].v.b, true);
		out[C_BOOL] = cohort_null();
		assert_all_null(out, NCOLS);
		snprintf(key, sizeof key, "old%d", i);
		cr_assert_eq(get_all(key, T0, out, vb, NULL), COHORT_ROW_MISSING);
	}
}

Test(delete, slot_reuse_keeps_memory_flat)
{
	enum { N = 20000, ROUNDS = 4 };
	char key[16];
	uint64_t first = 0;

	for (int r = 0; r < ROUNDS; r++) {
		cohort_table_info info;

		for (int i = 0; i < N; i++) {
			snprintf(key, sizeof key, "r%d-%06d", r, i);
			put_row(key, i);
		}
		info = describe();
		cr_assert_eq(info.nrows, N);
		if (r == 0)
			first = info.mem_bytes;
		else
			cr_assert_leq(info.mem_bytes, first + first / 8 + 65536,
				      "round %d: mem_bytes %llu vs %llu after the "
				      "first round", r,
				      (unsigned long long)info.mem_bytes,
				      (unsigned long long)first);
		for (int i = 0; i < N; i++) {
			snprintf(key, sizeof key, "r%d-%06d", r, i);
			cr_assert_eq(cohort_delete(tbl, key, strlen(key)), 0);
		}
		cr_assert_eq(describe().nrows, 0);
	}
}

/* ---- growth ------------------------------------------------------------ */

static void growth_put(int i)
{
	char key[16];
	cohort_field f[3] = {
		{ C_I64, cohort_i64((int64_t)i * 1000003) },
		{ C_F64, cohort_f64(i * 0.5) },
		{ C_CAT, cohort_cat(cities[i % 5]) },
	};

	snprintf(key, sizeof key, "g%d", i);
	cr_assert_eq(cohort_put(tbl, key, strlen(key), T0 + i, f, 3), 0,
		     "put %d", i);
}

static void growth_check(int i, bool present)
{
	static const int cols[3] = { C_I64, C_F64, C_CAT };
	char key[16];
	cohort_value out[3];
	cohort_time rt = 0;
	int st;

	snprintf(key, sizeof key, "g%d", i);
	st = cohort_get(tbl, key, strlen(key), cols, 3, T0 + 300000, out, NULL, 0,
			&rt);
	if (!present) {
		cr_assert_eq(st, COHORT_ROW_MISSING, "key %d should be gone", i);
		return;
	}
	cr_assert_eq(st, COHORT_ROW_PRESENT, "key %d status %d", i, st);
	cr_assert_eq(out[0].v.i64, (int64_t)i * 1000003, "key %d", i);
	cr_assert_eq(out[1].v.f64, i * 0.5, "key %d", i);
	cr_assert_str_eq(out[2].v.str.ptr, cities[i % 5], "key %d", i);
	cr_assert_eq(rt, T0 + i, "key %d", i);
}

Test(growth, two_hundred_thousand_keys_read_back)
{
	enum { N = 200000 };

	for (int i = 0; i < N; i++)
		growth_put(i);
	cr_assert_eq(describe().nrows, N);
	for (int i = 0; i < N; i++)
		growth_check(i, true);
	cr_assert_eq(cohort_get(tbl, "g200000", 7, NULL, 0, T0, NULL, NULL, 0,
				NULL), COHORT_ROW_MISSING);
}

Test(growth, half_deleted_rest_intact)
{
	enum { N = 100000 };
	char key[16];

	for (int i = 0; i < N; i++)
		growth_put(i);
	for (int i = 0; i < N; i += 2) {
		snprintf(key, sizeof key, "g%d", i);
		cr_assert_eq(cohort_delete(tbl, key, strlen(key)), 0, "key %d", i);
	}
	cr_assert_eq(describe().nrows, N / 2);
	for (int i = 0; i < N; i++)
		growth_check(i, i % 2 == 1);
	/* and the freed slots take new keys without disturbing the rest */
	for (int i = N; i < N + N / 2; i++)
		growth_put(i);
	for (int i = 1; i < N; i += 2)
		growth_check(i, true);
	for (int i = N; i < N + N / 2; i++)
		growth_check(i, true);
	cr_assert_eq(describe().nrows, N);
}
