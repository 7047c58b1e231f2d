/*
 * test_event.c -- cohort_event: ADD, OBSERVE and SET on plain and aggregate
 * columns, all-or-nothing application, integer overflow, and exact,
 * order-independent decay checked against a long double reference.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cohort.h"

#define T0 1700000000000LL
#define HALF_LIFE 60000LL /* decay column: one minute */

enum { C_F32, C_F64, C_I32, C_I64, C_CNT, C_MIN, C_MAX, C_LAST, C_DEC, C_CAT,
       C_VEC, C_BOOL, NCOLS };

static const int all_cols[NCOLS] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 };

static cohort_db *db;
static cohort_table *tbl;

static void setup(void)
{
	static const cohort_column_def cols[NCOLS] = {
		{ "f32", COHORT_F32, 0, 0 },
		{ "f64", COHORT_F64, 0, 0 },
		{ "i32", COHORT_I32, 0, 0 },
		{ "i64", COHORT_I64, 0, 0 },
		{ "cnt", COHORT_COUNTER, 0, 0 },
		{ "lo", COHORT_MIN, 0, 0 },
		{ "hi", COHORT_MAX, 0, 0 },
		{ "latest", COHORT_LAST, 0, 0 },
		{ "heat", COHORT_DECAY, 0, HALF_LIFE },
		{ "city", COHORT_CAT, 0, 0 },
		{ "emb", COHORT_VEC, 2, 0 },
		{ "flag", COHORT_BOOL, 0, 0 },
	};

	cr_assert_eq(cohort_open(NULL, NULL, &db), 0);
	cr_assert_eq(cohort_table_create(db, "ev", cols, NCOLS, NULL, &tbl), 0);
}

static void teardown(void)
{
	cohort_close(db);
	db = NULL;
	tbl = NULL;
}

TestSuite(event, .init = setup, .fini = teardown);
TestSuite(decay, .init = setup, .fini = teardown);

static uint64_t rng_state;

static uint64_t rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int ev1(const char *key, cohort_time t, int col, cohort_op op,
	       cohort_value v)
{
	cohort_update u = { col, op, v };

	return cohort_event(tbl, key, strlen(key), t, &u, 1);
}

static cohort_value get1(const char *key, int col, cohort_time at)
{
	cohort_value out;
	static float vb[2];

	cr_assert_eq(cohort_get(tbl, key, strlen(key), &col, 1, at, &out, vb, 2,
				NULL), COHORT_ROW_PRESENT, "key %s", key);
	return out;
}

static double get_f64(const char *key, int col, cohort_time at)
{
	cohort_value v = get1(key, col, at);

	cr_assert_eq(v.type, COHORT_F64, "column %d reads type %d", col, v.type);
	return v.v.f64;
}

typedef struct snap {
	int status;
	cohort_time time;
	cohort_value v[NCOLS];
	float vb[2];
} snap;

static void take(const char *key, snap *s)
{
	memset(s, 0, sizeof *s);
	s->status = cohort_get(tbl, key, strlen(key), all_cols, NCOLS,
			       T0 + 100000, s->v, s->vb, 2, &s->time);
	cr_assert_geq(s->status, 0);
}

static void assert_same(const snap *a, const snap *b)
{
	cr_assert_eq(a->status, b->status);
	cr_assert_eq(a->time, b->time);
	for (int i = 0; i < NCOLS; i++) {
		const cohort_value *x = &a->v[i], *y = &b->v[i];

		bool same;

		cr_assert_eq(x->type, y->type, "column %d type changed", i);
		switch (x->type) {
		case COHORT_VEC:
			same = memcmp(x->v.vec.ptr, y->v.vec.ptr,
				      2 * sizeof(float)) == 0;
			break;
		case COHORT_CAT:
			same = strcmp(x->v.str.ptr, y->v.str.ptr) == 0;
			break;
		case COHORT_F32:
			same = x->v.f32 == y->v.f32;
			break;
		case COHORT_F64:
			same = x->v.f64 == y->v.f64;
			break;
		case COHORT_I32:
			same = x->v.i32 == y->v.i32;
			break;
		case COHORT_I64:
			same = x->v.i64 == y->v.i64;
			break;
		case COHORT_BOOL:
			same = x->v.b == y->v.b;
			break;
		default:
			same = true;
		}
		cr_assert(same, "column %d value changed", i);
	}
}

static void put_base(const char *key)
{
	static const float v[2] = { 1, 2 };
	cohort_field f[NCOLS] = {
		{ C_F32, cohort_f32(1.5f) },
		{ C_F64, cohort_f64(2.5) },
		{ C_I32, cohort_i32(10) },
		{ C_I64, cohort_i64(1LL << 40) },
		{ C_CNT, cohort_f64(4) },
		{ C_MIN, cohort_f64(0) },
		{ C_MAX, cohort_f64(0) },
		{ C_LAST, cohort_f64(0) },
		{ C_DEC, cohort_f64(16) },
		{ C_CAT, cohort_cat("red") },
		{ C_VEC, cohort_vec(v, 2) },
		{ C_BOOL, cohort_bool(true) },
	};

	cr_assert_eq(cohort_put(tbl, key, strlen(key), T0, f, NCOLS), 0);
}

/* ---- plain columns and simple aggregates ------------------------------- */

Test(event, add_to_plain_numeric_columns)
{
	cohort_update u[4] = {
		{ C_F32, COHORT_OP_ADD, cohort_f32(0.25f) },
		{ C_F64, COHORT_OP_ADD, cohort_f64(0.5) },
		{ C_I32, COHORT_OP_ADD, cohort_i32(-3) },
		{ C_I64, COHORT_OP_ADD, cohort_i64(5) },
	};

	put_base("k");
	cr_assert_eq(cohort_event(tbl, "k", 1, T0 + 1, u, 4), 0);
	cr_assert_eq(get1("k", C_F32, T0).v.f32, 1.75f);
	cr_assert_eq(get1("k", C_F64, T0).v.f64, 3.0);
	cr_assert_eq(get1("k", C_I32, T0).v.i32, 7);
	cr_assert_eq(get1("k", C_I64, T0).v.i64, (1LL << 40) + 5);
}

Test(event, add_to_null_starts_from_zero)
{
	cohort_update u[4] = {
		{ C_I32, COHORT_OP_ADD, cohort_i32(5) },
		{ C_F64, COHORT_OP_ADD, cohort_f64(2.5) },
		{ C_CNT, COHORT_OP_ADD, cohort_f64(3) },
		{ C_I64, COHORT_OP_ADD, cohort_i64(-9) },
	};

	cr_assert_eq(cohort_event(tbl, "k", 1, T0, u, 4), 0);
	cr_assert_eq(get1("k", C_I32, T0).v.i32, 5);
	cr_assert_eq(get1("k", C_F64, T0).v.f64, 2.5);
	cr_assert_eq(get_f64("k", C_CNT, T0), 3.0);
	cr_assert_eq(get1("k", C_I64, T0).v.i64, -9);
	cr_assert_eq(get1("k", C_F32, T0).type, COHORT_NULL);
}

Test(event, add_to_counter_sums_any_numeric_type)
{
	cr_assert_eq(ev1("k", T0, C_CNT, COHORT_OP_ADD, cohort_f64(1)), 0);
	cr_assert_eq(ev1("k", T0, C_CNT, COHORT_OP_ADD, cohort_f32(2.5f)), 0);
	cr_assert_eq(ev1("k", T0, C_CNT, COHORT_OP_ADD, cohort_i32(3)), 0);
	cr_assert_eq(ev1("k", T0, C_CNT, COHORT_OP_ADD, cohort_i64(4)), 0);
	cr_assert_eq(ev1("k", T0, C_CNT, COHORT_OP_ADD, cohort_f64(-0.5)), 0);
	cr_assert_eq(get_f64("k", C_CNT, T0), 10.0);
}

Test(event, observe_on_counter_adds)
{
	for (int i = 1; i <= 100; i++)
		cr_assert_eq(ev1("k", T0 + i, C_CNT, COHORT_OP_OBSERVE,
				 cohort_i32(i)), 0);
	cr_assert_eq(get_f64("k", C_CNT, T0 + 100), 5050.0);
}

Test(event, counter_continues_from_a_put_value)
{
	put_base("k"); /* counter 4 */
	cr_assert_eq(ev1("k", T0 + 1, C_CNT, COHORT_OP_ADD, cohort_f64(6)), 0);
	cr_assert_eq(get_f64("k", C_CNT, T0 + 1), 10.0);
}

Test(event, observe_min_keeps_smallest)
{
	static const double xs[] = { 5, 3, 7, -1, 2, 0 };

	for (size_t i = 0; i < 6; i++) {
		cr_assert_eq(ev1("k", T0 + (cohort_time)i, C_MIN, COHORT_OP_OBSERVE,
				 cohort_f64(xs[i])), 0);
		if (i == 0) /* null starts from v */
			cr_assert_eq(get_f64("k", C_MIN, T0), 5.0);
	}
	cr_assert_eq(get_f64("k", C_MIN, T0 + 10), -1.0);
}

Test(event, observe_max_keeps_largest)
{
	static const double xs[] = { -5, -3, -7, -1.5, -2 };

	for (size_t i = 0; i < 5; i++) {
		cr_assert_eq(ev1("k", T0 + (cohort_time)i, C_MAX, COHORT_OP_OBSERVE,
				 cohort_f64(xs[i])), 0);
		if (i == 0) /* null starts from v, not from 0 */
			cr_assert_eq(get_f64("k", C_MAX, T0), -5.0);
	}
	cr_assert_eq(get_f64("k", C_MAX, T0 + 10), -1.5);
}

Test(event, observe_min_max_ignore_arrival_order)
{
	cr_assert_eq(ev1("k", T0 + 50, C_MIN, COHORT_OP_OBSERVE, cohort_i64(4)), 0);
	cr_assert_eq(ev1("k", T0 + 10, C_MIN, COHORT_OP_OBSERVE, cohort_i64(9)), 0);
	cr_assert_eq(ev1("k", T0 + 50, C_MAX, COHORT_OP_OBSERVE, cohort_i64(4)), 0);
	cr_assert_eq(ev1("k", T0 + 10, C_MAX, COHORT_OP_OBSERVE, cohort_i64(9)), 0);
	cr_assert_eq(get_f64("k", C_MIN, T0 + 50), 4.0);
	cr_assert_eq(get_f64("k", C_MAX, T0 + 50), 9.0);
}

Test(event, observe_last_keeps_latest_event_time)
{
	cr_assert_eq(ev1("k", T0 + 300, C_LAST, COHORT_OP_OBSERVE, cohort_f64(3)),
		     0);
	cr_assert_eq(ev1("k", T0 + 100, C_LAST, COHORT_OP_OBSERVE, cohort_f64(1)),
		     0);
	cr_assert_eq(ev1("k", T0 + 200, C_LAST, COHORT_OP_OBSERVE, cohort_f64(2)),
		     0);
	cr_assert_eq(get_f64("k", C_LAST, T0 + 300), 3.0,
		     "an older event replaced the last value");
	cr_assert_eq(ev1("k", T0 + 400, C_LAST, COHORT_OP_OBSERVE, cohort_f64(4)),
		     0);
	cr_assert_eq(ev1("k", T0 + 350, C_LAST, COHORT_OP_OBSERVE, cohort_f64(9)),
		     0);
	cr_assert_eq(get_f64("k", C_LAST, T0 + 400), 4.0);
}

Test(event, observe_last_ignores_other_columns_times)
{
	/* the row's time moves on through another column; "last" still
	 * compares against its own latest observation */
	cr_assert_eq(ev1("k", T0 + 100, C_LAST, COHORT_OP_OBSERVE, cohort_f64(1)),
		     0);
	cr_assert_eq(ev1("k", T0 + 500, C_CNT, COHORT_OP_ADD, cohort_f64(1)), 0);
	cr_assert_eq(ev1("k", T0 + 200, C_LAST, COHORT_OP_OBSERVE, cohort_f64(2)),
		     0);
	cr_assert_eq(get_f64("k", C_LAST, T0 + 500), 2.0);
}

Test(event, observe_last_tie_keeps_latest_applied)
{
	cr_assert_eq(ev1("k", T0 + 100, C_LAST, COHORT_OP_OBSERVE, cohort_f64(1)),
		     0);
	cr_assert_eq(ev1("k", T0 + 100, C_LAST, COHORT_OP_OBSERVE, cohort_f64(2)),
		     0);
	cr_assert_eq(get_f64("k", C_LAST, T0 + 100), 2.0);
}

Test(event, set_stores_values_of_every_type)
{
	static const float v[2] = { -3, 4 };
	cohort_update u[6] = {
		{ C_I32, COHORT_OP_SET, cohort_i32(42) },
		{ C_CAT, COHORT_OP_SET, cohort_cat("green") },
		{ C_VEC, COHORT_OP_SET, cohort_vec(v, 2) },
		{ C_BOOL, COHORT_OP_SET, cohort_bool(false) },
		{ C_LAST, COHORT_OP_SET, cohort_f64(8) },
		{ C_F32, COHORT_OP_SET, cohort_null() },
	};
	cohort_value out;

	put_base("k");
	cr_assert_eq(cohort_event(tbl, "k", 1, T0 + 5, u, 6), 0);
	cr_assert_eq(get1("k", C_I32, T0).v.i32, 42);
	cr_assert_str_eq(get1("k", C_CAT, T0).v.str.ptr, "green");
	out = get1("k", C_VEC, T0);
	cr_assert_eq(out.v.vec.ptr[0], -3.0f);
	cr_assert_eq(out.v.vec.ptr[1], 4.0f);
	out = get1("k", C_BOOL, T0);
	cr_assert_eq(out.type, COHORT_BOOL);
	cr_assert_eq(out.v.b, false);
	cr_assert_eq(get_f64("k", C_LAST, T0), 8.0);
	cr_assert_eq(get1("k", C_F32, T0).type, COHORT_NULL);
}

Test(event, updates_apply_in_order)
{
	cohort_update a[3] = {
		{ C_I32, COHORT_OP_SET, cohort_i32(5) },
		{ C_I32, COHORT_OP_ADD, cohort_i32(1) },
		{ C_I32, COHORT_OP_ADD, cohort_i32(2) },
	};
	cohort_update b[2] = {
		{ C_I32, COHORT_OP_ADD, cohort_i32(100) },
		{ C_I32, COHORT_OP_SET, cohort_i32(-4) },
	};

	cr_assert_eq(cohort_event(tbl, "k", 1, T0, a, 3), 0);
	cr_assert_eq(get1("k", C_I32, T0).v.i32, 8);
	cr_assert_eq(cohort_event(tbl, "k", 1, T0, b, 2), 0);
	cr_assert_eq(get1("k", C_I32, T0).v.i32, -4);
}

Test(event, on_new_key_creates_the_row)
{
	cohort_table_info info;
	cohort_time rt = 0;
	int col = C_CNT;
	cohort_value out;

	cr_assert_eq(ev1("fresh", T0 + 77, C_CNT, COHORT_OP_ADD, cohort_f64(1)), 0);
	cr_assert_eq(cohort_table_describe(tbl, &info), 0);
	cr_assert_eq(info.nrows, 1);
	cr_assert_eq(cohort_get(tbl, "fresh", 5, &col, 1, T0 + 77, &out, NULL, 0,
				&rt), COHORT_ROW_PRESENT);
	cr_assert_eq(out.v.f64, 1.0);
	cr_assert_eq(rt, T0 + 77);
}

Test(event, row_time_is_max_of_event_times)
{
	cohort_time rt = 0;

	cr_assert_eq(ev1("k", T0 + 300, C_CNT, COHORT_OP_ADD, cohort_f64(1)), 0);
	cr_assert_eq(ev1("k", T0 + 100, C_CNT, COHORT_OP_ADD, cohort_f64(1)), 0);
	cr_assert_eq(cohort_get(tbl, "k", 1, NULL, 0, T0 + 300, NULL, NULL, 0,
				&rt), COHORT_ROW_PRESENT);
	cr_assert_eq(rt, T0 + 300);
}

Test(event, add_on_min_max_last_is_eop)
{
	snap s0, s1;

	put_base("k");
	take("k", &s0);
	cr_assert_eq(ev1("k", T0, C_MIN, COHORT_OP_ADD, cohort_f64(1)), COHORT_EOP);
	cr_assert_eq(ev1("k", T0, C_MAX, COHORT_OP_ADD, cohort_f64(1)), COHORT_EOP);
	cr_assert_eq(ev1("k", T0, C_LAST, COHORT_OP_ADD, cohort_f64(1)),
		     COHORT_EOP);
	cr_assert_eq(ev1("k", T0, C_BOOL, COHORT_OP_ADD, cohort_bool(true)),
		     COHORT_EOP);
	take("k", &s1);
	assert_same(&s0, &s1);
}

Test(event, add_to_a_column_holding_infinity_keeps_infinity)
{
	cohort_field f = { C_F64, cohort_f64(INFINITY) };
	int rc;

	/* infinity is a value of a plain f64 column (only NaN is refused
	 * there), and inf += 1 is inf: nothing overflows */
	cr_assert_eq(cohort_put(tbl, "k", 1, T0, &f, 1), 0);
	rc = ev1("k", T0, C_F64, COHORT_OP_ADD, cohort_f64(1));
	cr_assert_eq(rc, 0, "ADD 1 to +inf returned %d (%s)", rc,
		     cohort_errdetail());
	cr_assert(isinf(get1("k", C_F64, T0).v.f64));
}

/* ---- atomicity ---------------------------------------------------------- */

Test(event, invalid_update_changes_nothing)
{
	cohort_update u[4] = {
		{ C_CNT, COHORT_OP_ADD, cohort_f64(1) },
		{ C_F64, COHORT_OP_SET, cohort_f64(99) },
		{ C_DEC, COHORT_OP_ADD, cohort_f64(5) },
		{ C_MIN, COHORT_OP_OBSERVE, cohort_f64(NAN) },
	};
	snap s0, s1;

	put_base("k");
	take("k", &s0);
	cr_assert_eq(cohort_event(tbl, "k", 1, T0 + 50, u, 4), COHORT_ENAN);
	take("k", &s1);
	assert_same(&s0, &s1);
}

Test(event, unknown_column_changes_nothing)
{
	cohort_update u[2] = {
		{ C_CNT, COHORT_OP_ADD, cohort_f64(1) },
		{ 99, COHORT_OP_ADD, cohort_f64(1) },
	};
	snap s0, s1;

	put_base("k");
	take("k", &s0);
	cr_assert_eq(cohort_event(tbl, "k", 1, T0 + 50, u, 2), COHORT_ENOCOLUMN);
	take("k", &s1);
	assert_same(&s0, &s1);
}

Test(event, wrong_type_changes_nothing)
{
	cohort_update u[2] = {
		{ C_I64, COHORT_OP_ADD, cohort_i64(1) },
		{ C_CAT, COHORT_OP_SET, cohort_i32(1) },
	};
	snap s0, s1;

	put_base("k");
	take("k", &s0);
	cr_assert_eq(cohort_event(tbl, "k", 1, T0 + 50, u, 2), COHORT_ETYPE);
	take("k", &s1);
	assert_same(&s0, &s1);
}

Test(event, invalid_update_on_new_key_creates_nothing)
{
	cohort_update u[2] = {
		{ C_CNT, COHORT_OP_ADD, cohort_f64(1) },
		{ C_VEC, COHORT_OP_SET, cohort_f64(1) },
	};
	cohort_table_info info;

	cr_assert_lt(cohort_event(tbl, "new", 3, T0, u, 2), 0);
	cr_assert_eq(cohort_table_describe(tbl, &info), 0);
	cr_assert_eq(info.nrows, 0);
	cr_assert_eq(cohort_get(tbl, "new", 3, NULL, 0, T0, NULL, NULL, 0, NULL),
		     COHORT_ROW_MISSING);
}

Test(event, i32_add_overflow_is_erange_and_changes_nothing)
{
	cohort_update u[2] = {
		{ C_CNT, COHORT_OP_ADD, cohort_f64(1) },
		{ C_I32, COHORT_OP_ADD, cohort_i32(1) },
	};
	cohort_field f = { C_I32, cohort_i32(INT32_MAX) };
	snap s0, s1;

	put_base("k");
	cr_assert_eq(cohort_put(tbl, "k", 1, T0, &f, 1), 0);
	take("k", &s0);
	cr_assert_eq(cohort_event(tbl, "k", 1, T0 + 1, u, 2), COHORT_ERANGE);
	take("k", &s1);
	assert_same(&s0, &s1);
	cr_assert_eq(s1.v[C_I32].v.i32, INT32_MAX);
}

Test(event, i32_add_underflow_is_erange)
{
	cohort_field f = { C_I32, cohort_i32(INT32_MIN + 1) };

	cr_assert_eq(cohort_put(tbl, "k", 1, T0, &f, 1), 0);
	cr_assert_eq(ev1("k", T0, C_I32, COHORT_OP_ADD, cohort_i32(-1)), 0);
	cr_assert_eq(ev1("k", T0, C_I32, COHORT_OP_ADD, cohort_i32(-1)),
		     COHORT_ERANGE);
	cr_assert_eq(get1("k", C_I32, T0).v.i32, INT32_MIN);
}

Test(event, i64_add_overflow_is_erange_and_changes_nothing)
{
	cohort_update u[2] = {
		{ C_F64, COHORT_OP_SET, cohort_f64(-7) },
		{ C_I64, COHORT_OP_ADD, cohort_i64(INT64_MAX) },
	};
	cohort_field f = { C_I64, cohort_i64(2) };
	snap s0, s1;

	put_base("k");
	cr_assert_eq(cohort_put(tbl, "k", 1, T0, &f, 1), 0);
	take("k", &s0);
	cr_assert_eq(cohort_event(tbl, "k", 1, T0 + 1, u, 2), COHORT_ERANGE);
	take("k", &s1);
	assert_same(&s0, &s1);
	cr_assert_eq(s1.v[C_I64].v.i64, 2);
	u[1].value = cohort_i64(INT64_MIN);
	f.value = cohort_i64(-1);
	cr_assert_eq(cohort_put(tbl, "k", 1, T0, &f, 1), 0);
	cr_assert_eq(cohort_event(tbl, "k", 1, T0 + 1, u, 2), COHORT_ERANGE);
	cr_assert_eq(get1("k", C_I64, T0).v.i64, -1);
}

Test(event, overflow_in_a_later_update_of_the_same_column_changes_nothing)
{
	cohort_update u[2] = {
		{ C_I32, COHORT_OP_ADD, cohort_i32(1) },
		{ C_I32, COHORT_OP_ADD, cohort_i32(1) },
	};
	cohort_field f = { C_I32, cohort_i32(INT32_MAX - 1) };

	/* the first ADD alone fits; applied in order the second overflows */
	cr_assert_eq(cohort_put(tbl, "k", 1, T0, &f, 1), 0);
	cr_assert_eq(cohort_event(tbl, "k", 1, T0 + 1, u, 2), COHORT_ERANGE);
	cr_assert_eq(get1("k", C_I32, T0).v.i32, INT32_MAX - 1);
}

Test(event, infinity_into_an_aggregate_is_enan)
{
	snap s0, s1;

	put_base("k");
	take("k", &s0);
	cr_assert_eq(ev1("k", T0, C_CNT, COHORT_OP_ADD, cohort_f64(INFINITY)),
		     COHORT_ENAN);
	cr_assert_eq(ev1("k", T0, C_MAX, COHORT_OP_OBSERVE, cohort_f64(-INFINITY)),
		     COHORT_ENAN);
	cr_assert_eq(ev1("k", T0, C_DEC, COHORT_OP_ADD, cohort_f32(INFINITY)),
		     COHORT_ENAN);
	take("k", &s1);
	assert_same(&s0, &s1);
}

/* ---- decay ------------------------------------------------------------- */

#define NDEC 64

typedef struct dec_event {
	cohort_time t;
	double x;
} dec_event;

/* NDEC events over ten half-lives, values in [0.1, 10] */
static void make_events(dec_event *e, uint64_t seed)
{
	rng_state = seed;
	for (int i = 0; i < NDEC; i++) {
		e[i].t = T0 + (cohort_time)(rng() % (uint64_t)(10 * HALF_LIFE));
		e[i].x = 0.1 + (double)(rng() % 99001) / 10000.0;
	}
}

static long double exact_decay(const dec_event *e, int n, cohort_time at)
{
	long double s = 0;

	for (int i = 0; i < n; i++)
		s += (long double)e[i].x *
		     exp2l(-(long double)(at - e[i].t) / (long double)HALF_LIFE);
	return s;
}

static int by_time(const void *a, const void *b)
{
	const dec_event *x = a, *y = b;

	return (x->t > y->t) - (x->t < y->t);
}

static void apply_events(const char *key, const dec_event *e, int n,
			 cohort_op op)
{
	for (int i = 0; i < n; i++)
		cr_assert_eq(ev1(key, e[i].t, C_DEC, op, cohort_f64(e[i].x)), 0,
			     "event %d", i);
}

static void assert_decay(const char *key, const dec_event *e, int n,
			 cohort_time at)
{
	long double want = exact_decay(e, n, at);
	double got = get_f64(key, C_DEC, at);
	long double rel = fabsl((long double)got - want) / fabsl(want);

	cr_assert(rel <= 1e-9L, "%s at %+lld: got %.17g, want %.17Lg (rel %Lg)",
		  key, (long long)(at - T0), got, want, rel);
}

Test(decay, events_in_order_match_exact_sum)
{
	dec_event e[NDEC];

	make_events(e, 1);
	qsort(e, NDEC, sizeof e[0], by_time);
	apply_events("k", e, NDEC, COHORT_OP_ADD);
	assert_decay("k", e, NDEC, T0 + 10 * HALF_LIFE);
	assert_decay("k", e, NDEC, T0 + 12 * HALF_LIFE + 123);
}

Test(decay, events_in_reverse_match_exact_sum)
{
	dec_event e[NDEC], r[NDEC];

	make_events(e, 2);
	qsort(e, NDEC, sizeof e[0], by_time);
	for (int i = 0; i < NDEC; i++)
		r[i] = e[NDEC - 1 - i];
	apply_events("k", r, NDEC, COHORT_OP_ADD);
	assert_decay("k", e, NDEC, T0 + 10 * HALF_LIFE);
	assert_decay("k", e, NDEC, T0 + 12 * HALF_LIFE + 123);
}

Test(decay, events_shuffled_match_exact_sum)
{
	for (uint64_t seed = 10; seed < 16; seed++) {
		dec_event e[NDEC];
		char key[16];

		make_events(e, seed);
		/* make_events already draws times in random order; shuffle
		 * again with Fisher-Yates for good measure */
		for (int i = NDEC - 1; i > 0; i--) {
			int j = (int)(rng() % (uint64_t)(i + 1));
			dec_event tmp = e[i];

			e[i] = e[j];
			e[j] = tmp;
		}
		snprintf(key, sizeof key, "s%llu", (unsigned long long)seed);
		apply_events(key, e, NDEC, COHORT_OP_ADD);
		assert_decay(key, e, NDEC, T0 + 10 * HALF_LIFE);
		assert_decay(key, e, NDEC, T0 + 15 * HALF_LIFE + 7);
	}
}

Test(decay, observe_adds_like_add)
{
	dec_event e[NDEC];

	make_events(e, 3);
	apply_events("k", e, NDEC, COHORT_OP_OBSERVE);
	assert_decay("k", e, NDEC, T0 + 11 * HALF_LIFE);
}

Test(decay, halves_every_half_life)
{
	cr_assert_eq(ev1("k", T0, C_DEC, COHORT_OP_ADD, cohort_f64(8)), 0);
	cr_assert_float_eq(get_f64("k", C_DEC, T0), 8.0, 1e-12);
	cr_assert_float_eq(get_f64("k", C_DEC, T0 + HALF_LIFE), 4.0, 1e-12);
	cr_assert_float_eq(get_f64("k", C_DEC, T0 + 3 * HALF_LIFE), 1.0, 1e-12);
	cr_assert_float_eq(get_f64("k", C_DEC, T0 + HALF_LIFE / 2),
			   8.0 / sqrt(2.0), 1e-12);
}

Test(decay, simultaneous_events_sum)
{
	cohort_update u[3] = {
		{ C_DEC, COHORT_OP_ADD, cohort_f64(1) },
		{ C_DEC, COHORT_OP_ADD, cohort_i32(2) },
		{ C_DEC, COHORT_OP_OBSERVE, cohort_f32(0.5f) },
	};

	cr_assert_eq(cohort_event(tbl, "k", 1, T0, u, 3), 0);
	cr_assert_eq(cohort_event(tbl, "k", 1, T0, u, 3), 0);
	cr_assert_float_eq(get_f64("k", C_DEC, T0 + 2 * HALF_LIFE), 7.0 / 4.0,
			   1e-12);
}

Test(decay, put_sets_the_value_at_its_time)
{
	dec_event e[3] = {
		{ T0 + 5 * HALF_LIFE, 100 }, /* the put */
		{ T0 + 6 * HALF_LIFE + 17, 3 },
		{ T0 + 7 * HALF_LIFE, 0.25 },
	};
	cohort_field f = { C_DEC, cohort_f64(100) };

	/* an earlier event is overwritten by the put */
	cr_assert_eq(ev1("k", T0, C_DEC, COHORT_OP_ADD, cohort_f64(1000)), 0);
	cr_assert_eq(cohort_put(tbl, "k", 1, e[0].t, &f, 1), 0);
	assert_decay("k", e, 1, e[0].t);
	apply_events("k", e + 1, 2, COHORT_OP_ADD);
	assert_decay("k", e, 3, T0 + 8 * HALF_LIFE);
}

Test(decay, survives_a_long_gap_between_events)
{
	/* 2000 half-lives apart: 2^2000 overflows a double, so an
	 * implementation must rebase rather than scale the new event up */
	dec_event e[2] = {
		{ T0, 1.0 },
		{ T0 + 2000 * HALF_LIFE, 3.0 },
	};

	apply_events("k", e, 2, COHORT_OP_ADD);
	assert_decay("k", e, 2, T0 + 2000 * HALF_LIFE);
	assert_decay("k", e, 2, T0 + 2001 * HALF_LIFE);
	apply_events("r", e + 1, 1, COHORT_OP_ADD);
	apply_events("r", e, 1, COHORT_OP_ADD);
	assert_decay("r", e, 2, T0 + 2001 * HALF_LIFE);
}

Test(decay, old_event_after_new_ones_is_decayed_on_arrival)
{
	dec_event e[3] = {
		{ T0 + 20 * HALF_LIFE, 2.0 },
		{ T0 + 21 * HALF_LIFE, 4.0 },
		{ T0, 1024.0 }, /* 21 half-lives before the last one */
	};

	apply_events("k", e, 3, COHORT_OP_ADD);
	assert_decay("k", e, 3, T0 + 21 * HALF_LIFE);
	assert_decay("k", e, 3, T0 + 30 * HALF_LIFE);
}

Test(decay, read_before_the_last_event_follows_the_formula)
{
	dec_event e[2] = { { T0, 2.0 }, { T0 + 4 * HALF_LIFE, 8.0 } };

	/* sum x_i * 2^(-(t - t_i) / h) holds for any t, also before t_i */
	apply_events("k", e, 2, COHORT_OP_ADD);
	assert_decay("k", e, 2, T0 + 2 * HALF_LIFE);
	assert_decay("k", e, 2, T0);
}

Test(decay, negative_values_are_accepted)
{
	dec_event e[2] = { { T0, 10.0 }, { T0 + HALF_LIFE, -2.0 } };

	apply_events("k", e, 2, COHORT_OP_ADD);
	assert_decay("k", e, 2, T0 + 2 * HALF_LIFE);
}
