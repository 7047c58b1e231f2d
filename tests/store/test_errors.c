/*
 * test_errors.c -- error codes, messages and refusals of bad input.
 *
 * Every bad input must come back as the documented negative code, leave a
 * message in cohort_errdetail() naming the culprit, never crash, and change
 * nothing: each failed put or event is checked by reading the row back and
 * comparing it with a snapshot taken before the call.
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cohort.h"

#define T0 1700000000000LL
#define NCOLS 8

static cohort_db *db;
static cohort_table *tbl;
/* score f64, ratio f32, age i32, emb vec(3), city cat, clicks counter,
 * heat decay, lo min: ids 0..7 in this order. */
static const int all_cols[NCOLS] = { 0, 1, 2, 3, 4, 5, 6, 7 };
enum { C_SCORE, C_RATIO, C_AGE, C_EMB, C_CITY, C_CLICKS, C_HEAT, C_LO };

static void setup(void)
{
	static const cohort_column_def cols[NCOLS] = {
		{ "score", COHORT_F64, 0, 0 },
		{ "ratio", COHORT_F32, 0, 0 },
		{ "age", COHORT_I32, 0, 0 },
		{ "emb", COHORT_VEC, 3, 0 },
		{ "city", COHORT_CAT, 0, 0 },
		{ "clicks", COHORT_COUNTER, 0, 0 },
		{ "heat", COHORT_DECAY, 0, 60000 },
		{ "lo", COHORT_MIN, 0, 0 },
	};
	static const float emb[3] = { 1, 2, 3 };
	cohort_field f[NCOLS];

	cr_assert_eq(cohort_open(NULL, NULL, &db), 0);
	cr_assert_eq(cohort_table_create(db, "bank", cols, NCOLS, NULL, &tbl), 0);
	f[0] = (cohort_field){ C_SCORE, cohort_f64(1.5) };
	f[1] = (cohort_field){ C_RATIO, cohort_f32(0.25f) };
	f[2] = (cohort_field){ C_AGE, cohort_i32(30) };
	f[3] = (cohort_field){ C_EMB, cohort_vec(emb, 3) };
	f[4] = (cohort_field){ C_CITY, cohort_cat("paris") };
	f[5] = (cohort_field){ C_CLICKS, cohort_f64(2) };
	f[6] = (cohort_field){ C_HEAT, cohort_f64(4) };
	f[7] = (cohort_field){ C_LO, cohort_f64(-1) };
	cr_assert_eq(cohort_put(tbl, "alice", 5, T0, f, NCOLS), 0);
}

static void teardown(void)
{
	cohort_close(db);
	db = NULL;
	tbl = NULL;
}

TestSuite(errors, .init = setup, .fini = teardown);
TestSuite(errdetail, .init = setup, .fini = teardown);

/* ---- snapshots: a failed call must leave the row exactly as it was ---- */

typedef struct snap {
	int status;
	cohort_time time;
	cohort_value v[NCOLS];
	float vec_buf[16];
} snap;

static void take(const char *key, snap *s)
{
	memset(s, 0, sizeof *s);
	s->status = cohort_get(tbl, key, strlen(key), all_cols, NCOLS,
			       T0 + 1000, s->v, s->vec_buf, 16, &s->time);
	cr_assert_geq(s->status, 0, "get '%s' failed: %d", key, s->status);
}

static bool same_value(const cohort_value *a, const cohort_value *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case COHORT_NULL:
		return true;
	case COHORT_F32:
		return memcmp(&a->v.f32, &b->v.f32, sizeof(float)) == 0;
	case COHORT_F64:
		return memcmp(&a->v.f64, &b->v.f64, sizeof(double)) == 0;
	case COHORT_I32:
		return a->v.i32 == b->v.i32;
	case COHORT_I64:
		return a->v.i64 == b->v.i64;
	case COHORT_BOOL:
		return a->v.b == b->v.b;
	case COHORT_CAT:
		return a->v.str.len == b->v.str.len &&
		       memcmp(a->v.str.ptr, b->v.str.ptr, a->v.str.len) == 0;
	case COHORT_VEC:
		return a->v.vec.dim == b->v.vec.dim &&
		       memcmp(a->v.vec.ptr, b->v.vec.ptr,
			      a->v.vec.dim * sizeof(float)) == 0;
	default:
		return false;
	}
}

static void assert_unchanged(const char *key, const snap *before)
{
	snap now;

	take(key, &now);
	cr_assert_eq(now.status, before->status, "status of '%s' changed", key);
	if (before->status == COHORT_ROW_PRESENT)
		cr_assert_eq(now.time, before->time, "event time of '%s' changed",
			     key);
	for (int i = 0; i < NCOLS; i++)
		cr_assert(same_value(&now.v[i], &before->v[i]),
			  "column %d of '%s' changed by a failed call", i, key);
}

static uint64_t nrows(void)
{
	cohort_table_info info;

	cr_assert_eq(cohort_table_describe(tbl, &info), 0);
	return info.nrows;
}

/* rc must be `code`, and the thread's detail non-empty and, when needle is
 * given, naming it. */
static void expect_fail(int rc, int code, const char *needle)
{
	const char *d;

	cr_assert_eq(rc, code, "expected %d (%s), got %d (%s)", code,
		     cohort_strerror(code), rc, cohort_strerror(rc));
	d = cohort_errdetail();
	cr_assert_not_null(d);
	cr_assert(d[0] != '\0', "empty errdetail after %s", cohort_strerror(code));
	if (needle)
		cr_assert(strstr(d, needle) != NULL,
			  "errdetail '%s' does not name '%s'", d, needle);
}

static int put1(const char *key, int col, cohort_value v)
{
	cohort_field f = { col, v };

	return cohort_put(tbl, key, strlen(key), T0 + 10, &f, 1);
}

/* ---- cohort_strerror --------------------------------------------------- */

Test(strerror, names_every_code)
{
#define CHECK_MSG(name, value, msg)                                           \
	cr_assert_str_eq(cohort_strerror(COHORT_##name), msg,                 \
			 "cohort_strerror(%d)", (int)(value));
	COHORT_ERRORS(CHECK_MSG)
#undef CHECK_MSG
}

Test(strerror, codes_have_documented_values)
{
	cr_assert_eq(COHORT_OK, 0);
	cr_assert_eq(COHORT_EINVAL, -1);
	cr_assert_eq(COHORT_EBADNAME, -17);
	cr_assert_str_eq(cohort_strerror(-17),
			 "name must be 1 to 64 characters of [A-Za-z0-9_]");
}

Test(strerror, unknown_code_is_unknown_error)
{
	static const int codes[] = { 1, 2, -99, -100, 1000, INT_MIN, INT_MAX };

	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
		const char *m = cohort_strerror(codes[i]);

		cr_assert_not_null(m, "cohort_strerror(%d) is NULL", codes[i]);
		cr_assert_str_eq(m, "unknown error", "cohort_strerror(%d)",
				 codes[i]);
	}
}

/* ---- cohort_errdetail -------------------------------------------------- */

static void *read_detail(void *arg)
{
	const char **out = arg;

	*out = cohort_errdetail();
	return NULL;
}

Test(errdetail, empty_in_a_thread_that_never_failed)
{
	pthread_t th;
	const char *d = NULL;

	/* make this thread fail first: the detail is per thread */
	cr_assert_eq(cohort_table_column(tbl, "nope"), COHORT_ENOCOLUMN);
	cr_assert(cohort_errdetail()[0] != '\0');
	cr_assert_eq(pthread_create(&th, NULL, read_detail, &d), 0);
	pthread_join(th, NULL);
	cr_assert_not_null(d);
	cr_assert_str_eq(d, "");
}

Test(errdetail, names_unknown_column)
{
	expect_fail(cohort_table_column(tbl, "agee"), COHORT_ENOCOLUMN, "agee");
}

Test(errdetail, names_unknown_table)
{
	cohort_table *t = NULL;

	expect_fail(cohort_table_open(db, "nosuchtable", &t), COHORT_ENOTABLE,
		    "nosuchtable");
}

Test(errdetail, names_column_of_wrong_type)
{
	expect_fail(put1("alice", C_SCORE, cohort_i64(3)), COHORT_ETYPE,
		    "score");
}

Test(errdetail, names_column_of_wrong_dimension)
{
	static const float v[4] = { 1, 2, 3, 4 };

	expect_fail(put1("alice", C_EMB, cohort_vec(v, 4)), COHORT_EDIM, "emb");
}

Test(errdetail, names_column_given_nan)
{
	expect_fail(put1("alice", C_SCORE, cohort_f64(NAN)), COHORT_ENAN,
		    "score");
}

Test(errdetail, names_duplicate_column_in_create)
{
	static const cohort_column_def cols[] = {
		{ "x", COHORT_F64, 0, 0 },
		{ "dupcol", COHORT_I32, 0, 0 },
		{ "dupcol", COHORT_F32, 0, 0 },
	};

	expect_fail(cohort_table_create(db, "t2", cols, 3, NULL, NULL),
		    COHORT_EEXIST, "dupcol");
}

Test(errdetail, names_key_index_in_get_many)
{
	cohort_batch *b = NULL;
	cohort_key keys[9];
	static const int cols[] = { C_SCORE };

	for (int i = 0; i < 9; i++)
		keys[i] = (cohort_key){ "alice", 5 };
	keys[7] = (cohort_key){ "", 0 };
	cr_assert_eq(cohort_batch_new(tbl, cols, 1, &b), 0);
	expect_fail(cohort_get_many(tbl, keys, 9, T0, b), COHORT_EKEY, "7");
	cohort_batch_free(b);
}

/* ---- puts ------------------------------------------------------------- */

Test(errors, put_wrong_type_changes_nothing)
{
	snap s;

	take("alice", &s);
	expect_fail(put1("alice", C_SCORE, cohort_i64(3)), COHORT_ETYPE, NULL);
	expect_fail(put1("alice", C_AGE, cohort_f64(3)), COHORT_ETYPE, "age");
	expect_fail(put1("alice", C_CITY, cohort_i32(3)), COHORT_ETYPE, "city");
	expect_fail(put1("alice", C_RATIO, cohort_f64(3)), COHORT_ETYPE, "ratio");
	expect_fail(put1("alice", C_EMB, cohort_f32(3)), COHORT_ETYPE, "emb");
	assert_unchanged("alice", &s);
}

Test(errors, put_inexact_conversion_is_etype)
{
	static const cohort_column_def c = { "big", COHORT_I64, 0, 0 };
	int big = -1;
	snap s;

	/* only exact widenings are taken (i32 into i64 or f64, f32 into
	 * f64); anything that could round or truncate is a type error */
	cr_assert_eq(cohort_table_add_column(tbl, &c, &big), 0);
	take("alice", &s);
	expect_fail(put1("alice", C_SCORE, cohort_i64(3)), COHORT_ETYPE, "score");
	expect_fail(put1("alice", C_RATIO, cohort_i32(3)), COHORT_ETYPE, "ratio");
	expect_fail(put1("alice", C_AGE, cohort_i64(3)), COHORT_ETYPE, "age");
	expect_fail(put1("alice", big, cohort_f64(3)), COHORT_ETYPE, "big");
	expect_fail(put1("alice", big, cohort_f32(3)), COHORT_ETYPE, "big");
	assert_unchanged("alice", &s);
}

Test(errors, put_exact_widening_is_accepted)
{
	static const cohort_column_def c = { "big", COHORT_I64, 0, 0 };
	int big = -1, cols[2];
	cohort_value out[2];

	cr_assert_eq(cohort_table_add_column(tbl, &c, &big), 0);
	cols[0] = C_SCORE;
	cols[1] = big;
	cr_assert_eq(put1("alice", C_SCORE, cohort_i32(INT32_MIN)), 0);
	cr_assert_eq(put1("alice", big, cohort_i32(INT32_MAX)), 0);
	cr_assert_eq(cohort_get(tbl, "alice", 5, cols, 2, T0 + 10, out, NULL, 0,
				NULL), COHORT_ROW_PRESENT);
	cr_assert_eq(out[0].type, COHORT_F64);
	cr_assert_eq(out[0].v.f64, (double)INT32_MIN);
	cr_assert_eq(out[1].type, COHORT_I64);
	cr_assert_eq(out[1].v.i64, INT32_MAX);
	cr_assert_eq(put1("alice", C_SCORE, cohort_f32(0.1f)), 0);
	cr_assert_eq(cohort_get(tbl, "alice", 5, cols, 1, T0 + 10, out, NULL, 0,
				NULL), COHORT_ROW_PRESENT);
	cr_assert_eq(out[0].v.f64, (double)0.1f);
}

Test(errors, failed_put_does_not_grow_the_cat_dictionary)
{
	cohort_field f[2] = {
		{ C_CITY, cohort_cat("atlantis") },
		{ C_EMB, cohort_f64(1) }, /* wrong type, after the cat */
	};
	cohort_column_info before, after;

	cr_assert_eq(cohort_column_describe(tbl, C_CITY, &before), 0);
	expect_fail(cohort_put(tbl, "alice", 5, T0, f, 2), COHORT_ETYPE, "emb");
	cr_assert_eq(cohort_column_describe(tbl, C_CITY, &after), 0);
	cr_assert_eq(after.ncat, before.ncat,
		     "a failed put added its string to the dictionary (%u -> %u)",
		     before.ncat, after.ncat);
}

Test(errors, put_aggregate_with_non_number_is_etype)
{
	snap s;

	take("alice", &s);
	expect_fail(put1("alice", C_CLICKS, cohort_cat("x")), COHORT_ETYPE,
		    "clicks");
	expect_fail(put1("alice", C_LO, cohort_bool(true)), COHORT_ETYPE, "lo");
	assert_unchanged("alice", &s);
}

Test(errors, put_unknown_column_id_is_enocolumn)
{
	snap s;

	take("alice", &s);
	expect_fail(put1("alice", 99, cohort_f64(1)), COHORT_ENOCOLUMN, NULL);
	expect_fail(put1("alice", -1, cohort_f64(1)), COHORT_ENOCOLUMN, NULL);
	expect_fail(put1("alice", NCOLS, cohort_f64(1)), COHORT_ENOCOLUMN, NULL);
	assert_unchanged("alice", &s);
}

Test(errors, put_empty_key_is_ekey)
{
	uint64_t n = nrows();
	cohort_field f = { C_SCORE, cohort_f64(1) };

	expect_fail(cohort_put(tbl, "", 0, T0, &f, 1), COHORT_EKEY, "bank");
	expect_fail(cohort_put(tbl, NULL, 0, T0, &f, 1), COHORT_EKEY, NULL);
	cr_assert_eq(nrows(), n);
}

Test(errors, put_key_of_256_bytes_is_ekey)
{
	char key[256];
	cohort_field f = { C_SCORE, cohort_f64(1) };
	uint64_t n = nrows();
	cohort_value out;
	int col = C_SCORE;

	memset(key, 'k', sizeof key);
	expect_fail(cohort_put(tbl, key, 256, T0, &f, 1), COHORT_EKEY, "256");
	cr_assert_eq(nrows(), n);
	/* the 255-byte prefix must not have been created either */
	cr_assert_eq(cohort_get(tbl, key, 255, &col, 1, T0, &out, NULL, 0, NULL),
		     COHORT_ROW_MISSING);
}

Test(errors, put_key_of_255_bytes_is_accepted)
{
	char key[255];
	cohort_field f = { C_SCORE, cohort_f64(7) };
	cohort_value out;
	int col = C_SCORE;

	memset(key, 0xAB, sizeof key);
	cr_assert_eq(cohort_put(tbl, key, 255, T0, &f, 1), 0);
	cr_assert_eq(cohort_get(tbl, key, 255, &col, 1, T0, &out, NULL, 0, NULL),
		     COHORT_ROW_PRESENT);
	cr_assert_eq(out.type, COHORT_F64);
	cr_assert_eq(out.v.f64, 7.0);
}

Test(errors, put_vec_of_wrong_dimension_changes_nothing)
{
	static const float v2[2] = { 9, 9 };
	static const float v4[4] = { 9, 9, 9, 9 };
	snap s;

	take("alice", &s);
	expect_fail(put1("alice", C_EMB, cohort_vec(v2, 2)), COHORT_EDIM, "emb");
	expect_fail(put1("alice", C_EMB, cohort_vec(v4, 4)), COHORT_EDIM, "emb");
	assert_unchanged("alice", &s);
}

Test(errors, put_nan_is_enan)
{
	snap s;

	take("alice", &s);
	expect_fail(put1("alice", C_SCORE, cohort_f64(NAN)), COHORT_ENAN, "score");
	expect_fail(put1("alice", C_RATIO, cohort_f32(NAN)), COHORT_ENAN, "ratio");
	expect_fail(put1("alice", C_CLICKS, cohort_f64(NAN)), COHORT_ENAN,
		    "clicks");
	expect_fail(put1("alice", C_HEAT, cohort_f32(NAN)), COHORT_ENAN, "heat");
	expect_fail(put1("alice", C_LO, cohort_f64(-NAN)), COHORT_ENAN, "lo");
	assert_unchanged("alice", &s);
}

Test(errors, put_nan_in_vector_is_enan)
{
	float v[3] = { 1, NAN, 3 };
	snap s;

	take("alice", &s);
	expect_fail(put1("alice", C_EMB, cohort_vec(v, 3)), COHORT_ENAN, "emb");
	assert_unchanged("alice", &s);
}

Test(errors, put_infinity_in_vector_is_enan)
{
	float v[3] = { 1, 2, INFINITY };
	snap s;

	take("alice", &s);
	expect_fail(put1("alice", C_EMB, cohort_vec(v, 3)), COHORT_ENAN, "emb");
	v[2] = -INFINITY;
	expect_fail(put1("alice", C_EMB, cohort_vec(v, 3)), COHORT_ENAN, "emb");
	assert_unchanged("alice", &s);
}

Test(errors, put_infinity_in_aggregate_is_enan)
{
	snap s;

	take("alice", &s);
	expect_fail(put1("alice", C_CLICKS, cohort_f64(INFINITY)), COHORT_ENAN,
		    "clicks");
	expect_fail(put1("alice", C_HEAT, cohort_f64(-INFINITY)), COHORT_ENAN,
		    "heat");
	expect_fail(put1("alice", C_LO, cohort_f32(INFINITY)), COHORT_ENAN, "lo");
	assert_unchanged("alice", &s);
}

Test(errors, put_infinity_in_plain_float_is_stored)
{
	cohort_value out;
	int col = C_SCORE;

	/* only NaN is refused everywhere; infinity only in vec and aggregates */
	cr_assert_eq(put1("alice", C_SCORE, cohort_f64(INFINITY)), 0);
	cr_assert_eq(cohort_get(tbl, "alice", 5, &col, 1, T0 + 10, &out, NULL, 0,
				NULL), COHORT_ROW_PRESENT);
	cr_assert_eq(out.type, COHORT_F64);
	cr_assert(isinf(out.v.f64) && out.v.f64 > 0);
}

Test(errors, put_same_column_twice_is_refused)
{
	cohort_field f[2] = {
		{ C_SCORE, cohort_f64(8) },
		{ C_SCORE, cohort_f64(9) },
	};
	snap s;
	int rc;

	take("alice", &s);
	rc = cohort_put(tbl, "alice", 5, T0 + 10, f, 2);
	cr_assert_lt(rc, 0, "a column twice in one put returned %d", rc);
	cr_assert(cohort_errdetail()[0] != '\0');
	assert_unchanged("alice", &s);
}

Test(errors, failed_put_with_one_bad_field_changes_nothing)
{
	cohort_field f[3] = {
		{ C_SCORE, cohort_f64(100) },
		{ C_AGE, cohort_i32(99) },
		{ C_CITY, cohort_f64(1) }, /* wrong type, last */
	};
	snap s;

	take("alice", &s);
	expect_fail(cohort_put(tbl, "alice", 5, T0 + 500, f, 3), COHORT_ETYPE,
		    "city");
	assert_unchanged("alice", &s);
}

Test(errors, failed_put_does_not_create_row)
{
	cohort_field f[2] = {
		{ C_SCORE, cohort_f64(100) },
		{ C_EMB, cohort_f64(1) },
	};
	uint64_t n = nrows();
	snap s;

	expect_fail(cohort_put(tbl, "bob", 3, T0, f, 2), COHORT_ETYPE, "emb");
	cr_assert_eq(nrows(), n);
	take("bob", &s);
	cr_assert_eq(s.status, COHORT_ROW_MISSING);
}

Test(errors, put_cat_longer_than_limit_is_refused)
{
	static char big[COHORT_MAX_CAT + 1];
	snap s;
	int rc;

	memset(big, 'z', sizeof big);
	take("alice", &s);
	rc = put1("alice", C_CITY, cohort_catn(big, COHORT_MAX_CAT + 1));
	cr_assert_lt(rc, 0, "a %d-byte cat string was accepted",
		     COHORT_MAX_CAT + 1);
	assert_unchanged("alice", &s);
	cr_assert_eq(put1("alice", C_CITY, cohort_catn(big, COHORT_MAX_CAT)), 0);
}

/* ---- events ------------------------------------------------------------ */

Test(errors, failed_event_changes_nothing)
{
	cohort_update u[3] = {
		{ C_CLICKS, COHORT_OP_ADD, cohort_f64(5) },
		{ C_SCORE, COHORT_OP_SET, cohort_f64(42) },
		{ C_HEAT, COHORT_OP_ADD, cohort_f64(NAN) },
	};
	snap s;

	take("alice", &s);
	expect_fail(cohort_event(tbl, "alice", 5, T0 + 100, u, 3), COHORT_ENAN,
		    "heat");
	assert_unchanged("alice", &s);
}

Test(errors, event_add_on_cat_is_eop)
{
	cohort_update u = { C_CITY, COHORT_OP_ADD, cohort_cat("x") };
	snap s;

	take("alice", &s);
	expect_fail(cohort_event(tbl, "alice", 5, T0 + 1, &u, 1), COHORT_EOP,
		    "city");
	assert_unchanged("alice", &s);
}

Test(errors, event_add_on_vec_is_eop)
{
	static const float v[3] = { 1, 1, 1 };
	cohort_update u = { C_EMB, COHORT_OP_ADD, cohort_vec(v, 3) };
	snap s;

	take("alice", &s);
	expect_fail(cohort_event(tbl, "alice", 5, T0 + 1, &u, 1), COHORT_EOP,
		    "emb");
	assert_unchanged("alice", &s);
}

Test(errors, event_observe_on_plain_column_is_eop)
{
	cohort_update u = { C_AGE, COHORT_OP_OBSERVE, cohort_i32(1) };
	snap s;

	take("alice", &s);
	expect_fail(cohort_event(tbl, "alice", 5, T0 + 1, &u, 1), COHORT_EOP,
		    "age");
	assert_unchanged("alice", &s);
}

Test(errors, event_unknown_op_is_einval)
{
	cohort_update u = { C_SCORE, (cohort_op)99, cohort_f64(1) };
	snap s;

	take("alice", &s);
	expect_fail(cohort_event(tbl, "alice", 5, T0 + 1, &u, 1), COHORT_EINVAL,
		    NULL);
	u.op = (cohort_op)0;
	expect_fail(cohort_event(tbl, "alice", 5, T0 + 1, &u, 1), COHORT_EINVAL,
		    NULL);
	assert_unchanged("alice", &s);
}

Test(errors, event_bad_key_is_ekey)
{
	char key[256];
	cohort_update u = { C_CLICKS, COHORT_OP_ADD, cohort_f64(1) };
	uint64_t n = nrows();

	memset(key, 'e', sizeof key);
	expect_fail(cohort_event(tbl, key, 256, T0, &u, 1), COHORT_EKEY, NULL);
	expect_fail(cohort_event(tbl, "", 0, T0, &u, 1), COHORT_EKEY, NULL);
	cr_assert_eq(nrows(), n);
}

/* ---- tables and columns ------------------------------------------------ */

Test(errors, bad_table_names_are_ebadname)
{
	char long_name[COHORT_MAX_NAME + 2];
	const char *bad[] = { "", "a-b", "has space", "dot.name", "tab\tle",
			      "naïve", "semi;colon", long_name };
	size_t ntables = cohort_db_ntables(db);

	memset(long_name, 'n', COHORT_MAX_NAME + 1);
	long_name[COHORT_MAX_NAME + 1] = '\0';
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_fail(cohort_table_create(db, bad[i], NULL, 0, NULL, NULL),
			    COHORT_EBADNAME, bad[i][0] ? bad[i] : NULL);
	cr_assert_eq(cohort_db_ntables(db), ntables);
}

Test(errors, table_name_of_64_characters_is_accepted)
{
	char name[COHORT_MAX_NAME + 1];
	cohort_table *t = NULL;

	memset(name, 'A', COHORT_MAX_NAME);
	name[COHORT_MAX_NAME] = '\0';
	name[3] = '_';
	name[5] = '7';
	cr_assert_eq(cohort_table_create(db, name, NULL, 0, NULL, NULL), 0);
	cr_assert_eq(cohort_table_open(db, name, &t), 0);
	cr_assert_not_null(t);
}

Test(errors, bad_column_name_is_ebadname_and_creates_nothing)
{
	cohort_column_def cols[2] = {
		{ "fine", COHORT_F64, 0, 0 },
		{ "bad-name", COHORT_F64, 0, 0 },
	};
	cohort_table *t = NULL;
	size_t ntables = cohort_db_ntables(db);

	expect_fail(cohort_table_create(db, "t2", cols, 2, NULL, NULL),
		    COHORT_EBADNAME, "bad-name");
	cols[1].name = "";
	expect_fail(cohort_table_create(db, "t2", cols, 2, NULL, NULL),
		    COHORT_EBADNAME, NULL);
	cr_assert_eq(cohort_db_ntables(db), ntables);
	cr_assert_eq(cohort_table_open(db, "t2", &t), COHORT_ENOTABLE);
}

Test(errors, duplicate_columns_are_eexist_and_create_nothing)
{
	static const cohort_column_def cols[] = {
		{ "a", COHORT_F64, 0, 0 },
		{ "a", COHORT_F64, 0, 0 },
	};
	cohort_table *t = NULL;

	expect_fail(cohort_table_create(db, "t2", cols, 2, NULL, NULL),
		    COHORT_EEXIST, "a");
	cr_assert_eq(cohort_table_open(db, "t2", &t), COHORT_ENOTABLE);
}

Test(errors, vec_of_dim_0_is_einval)
{
	static const cohort_column_def cols[] = { { "v", COHORT_VEC, 0, 0 } };

	expect_fail(cohort_table_create(db, "t2", cols, 1, NULL, NULL),
		    COHORT_EINVAL, "v");
}

Test(errors, vec_over_max_dim_is_einval)
{
	static const cohort_column_def cols[] = {
		{ "v", COHORT_VEC, COHORT_MAX_DIM + 1, 0 },
	};

	expect_fail(cohort_table_create(db, "t2", cols, 1, NULL, NULL),
		    COHORT_EINVAL, "v");
}

Test(errors, decay_with_half_life_0_is_einval)
{
	cohort_column_def cols[] = { { "d", COHORT_DECAY, 0, 0 } };

	expect_fail(cohort_table_create(db, "t2", cols, 1, NULL, NULL),
		    COHORT_EINVAL, "d");
	cols[0].half_life_ms = -1000;
	expect_fail(cohort_table_create(db, "t2", cols, 1, NULL, NULL),
		    COHORT_EINVAL, "d");
}

Test(errors, bad_column_type_is_einval)
{
	cohort_column_def cols[] = { { "x", COHORT_NULL, 0, 0 } };

	expect_fail(cohort_table_create(db, "t2", cols, 1, NULL, NULL),
		    COHORT_EINVAL, "x");
	cols[0].type = (cohort_type)99;
	expect_fail(cohort_table_create(db, "t2", cols, 1, NULL, NULL),
		    COHORT_EINVAL, "x");
}

Test(errors, more_than_max_columns_is_elimit)
{
	static cohort_column_def cols[COHORT_MAX_COLUMNS + 1];
	static char names[COHORT_MAX_COLUMNS + 1][12];

	for (int i = 0; i <= COHORT_MAX_COLUMNS; i++) {
		snprintf(names[i], sizeof names[i], "c%d", i);
		cols[i] = (cohort_column_def){ names[i], COHORT_I32, 0, 0 };
	}
	expect_fail(cohort_table_create(db, "wide", cols,
					COHORT_MAX_COLUMNS + 1, NULL, NULL),
		    COHORT_ELIMIT, NULL);
	cr_assert_eq(cohort_table_create(db, "wide", cols, COHORT_MAX_COLUMNS,
					 NULL, NULL), 0);
}

Test(errors, add_column_past_max_columns_is_elimit)
{
	static cohort_column_def cols[COHORT_MAX_COLUMNS];
	static char names[COHORT_MAX_COLUMNS][12];
	cohort_table *t = NULL;
	cohort_column_def extra = { "extra", COHORT_F64, 0, 0 };

	for (int i = 0; i < COHORT_MAX_COLUMNS; i++) {
		snprintf(names[i], sizeof names[i], "c%d", i);
		cols[i] = (cohort_column_def){ names[i], COHORT_I32, 0, 0 };
	}
	cr_assert_eq(cohort_table_create(db, "wide", cols, COHORT_MAX_COLUMNS,
					 NULL, &t), 0);
	expect_fail(cohort_table_add_column(t, &extra, NULL), COHORT_ELIMIT,
		    NULL);
}

Test(errors, more_than_max_tables_is_elimit)
{
	char name[32];
	size_t n = cohort_db_ntables(db);

	for (size_t i = n; i < COHORT_MAX_TABLES; i++) {
		snprintf(name, sizeof name, "t%zu", i);
		cr_assert_eq(cohort_table_create(db, name, NULL, 0, NULL, NULL),
			     0, "table %zu", i);
	}
	expect_fail(cohort_table_create(db, "one_too_many", NULL, 0, NULL, NULL),
		    COHORT_ELIMIT, NULL);
	cr_assert_eq(cohort_db_ntables(db), COHORT_MAX_TABLES);
}

Test(errors, add_duplicate_column_is_eexist)
{
	cohort_column_def c = { "score", COHORT_I32, 0, 0 };
	cohort_table_info info;

	expect_fail(cohort_table_add_column(tbl, &c, NULL), COHORT_EEXIST,
		    "score");
	cr_assert_eq(cohort_table_describe(tbl, &info), 0);
	cr_assert_eq(info.ncolumns, NCOLS);
}

Test(errors, add_column_with_bad_name_is_ebadname)
{
	cohort_column_def c = { "no way", COHORT_I32, 0, 0 };

	expect_fail(cohort_table_add_column(tbl, &c, NULL), COHORT_EBADNAME,
		    NULL);
}

Test(errors, add_decay_column_with_half_life_0_is_einval)
{
	cohort_column_def c = { "d2", COHORT_DECAY, 0, 0 };
	cohort_table_info info;

	expect_fail(cohort_table_add_column(tbl, &c, NULL), COHORT_EINVAL, "d2");
	cr_assert_eq(cohort_table_describe(tbl, &info), 0);
	cr_assert_eq(info.ncolumns, NCOLS);
}

Test(errors, describe_unknown_column_is_enocolumn)
{
	cohort_column_info ci;

	expect_fail(cohort_column_describe(tbl, NCOLS, &ci), COHORT_ENOCOLUMN,
		    NULL);
	expect_fail(cohort_column_describe(tbl, -1, &ci), COHORT_ENOCOLUMN, NULL);
}

/* ---- reads and deletes ------------------------------------------------- */

Test(errors, get_unknown_column_is_enocolumn)
{
	int cols[2] = { C_SCORE, 42 };
	cohort_value out[2];

	expect_fail(cohort_get(tbl, "alice", 5, cols, 2, T0, out, NULL, 0, NULL),
		    COHORT_ENOCOLUMN, NULL);
}

Test(errors, get_bad_key_is_ekey)
{
	char key[300];
	int col = C_SCORE;
	cohort_value out;

	memset(key, 'x', sizeof key);
	expect_fail(cohort_get(tbl, "", 0, &col, 1, T0, &out, NULL, 0, NULL),
		    COHORT_EKEY, NULL);
	expect_fail(cohort_get(tbl, key, 256, &col, 1, T0, &out, NULL, 0, NULL),
		    COHORT_EKEY, NULL);
}

Test(errors, batch_with_unknown_column_is_enocolumn)
{
	int cols[2] = { C_SCORE, 77 };
	cohort_batch *b = NULL;

	expect_fail(cohort_batch_new(tbl, cols, 2, &b), COHORT_ENOCOLUMN, NULL);
}

Test(errors, delete_absent_key_is_enotfound)
{
	uint64_t n = nrows();

	expect_fail(cohort_delete(tbl, "carol", 5), COHORT_ENOTFOUND, NULL);
	cr_assert_eq(nrows(), n);
}

Test(errors, delete_bad_key_is_ekey)
{
	char key[256];

	memset(key, 'd', sizeof key);
	expect_fail(cohort_delete(tbl, "", 0), COHORT_EKEY, NULL);
	expect_fail(cohort_delete(tbl, key, 256), COHORT_EKEY, NULL);
}
