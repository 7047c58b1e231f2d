/*
 * test_filter.c -- filters against a plain loop over the same data.
 *
 * The big fixture writes ~20k random rows (about 10% nulls per column, some
 * rows deleted and some of those re-inserted) into a table with a column of
 * every type, and keeps the same data in `ref`. Every operator on every
 * column type, and random and/or/not trees of them, are counted by the
 * library and by a loop that follows SQL's three-valued logic; the counts
 * must agree exactly. Constants are chosen to probe exact comparison: f32
 * against doubles like 0.1, ints against 2.5 and 1e30, i64 beyond 2^53.
 *
 * A small fixture holds hand-made rows for the exactness and null-logic
 * cases where the expected answer is written out.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cohort.h"

#define T0 1700000000000LL
#define HL 1000LL                 /* decay half-life */
#define AT (T0 + 10 * HL)         /* read time of every filter */
#define NROWS 20000
#define VDIM 3

enum { C_F32, C_F64, C_I32, C_I64, C_BOOL, C_CAT, C_VEC, C_CNT, C_DEC,
       C_MIN, C_MAX, C_LAST, NCOLS };

static const cohort_column_def big_cols[NCOLS] = {
	{ "f32", COHORT_F32, 0, 0 },
	{ "f64", COHORT_F64, 0, 0 },
	{ "i32", COHORT_I32, 0, 0 },
	{ "i64", COHORT_I64, 0, 0 },
	{ "flag", COHORT_BOOL, 0, 0 },
	{ "color", COHORT_CAT, 0, 0 },
	{ "emb", COHORT_VEC, VDIM, 0 },
	{ "cnt", COHORT_COUNTER, 0, 0 },
	{ "heat", COHORT_DECAY, 0, HL },
	{ "lo", COHORT_MIN, 0, 0 },
	{ "hi", COHORT_MAX, 0, 0 },
	{ "latest", COHORT_LAST, 0, 0 },
};

static const char *const colors[] = { "red", "green", "blue", "cyan",
				      "magenta", "a_rather_longer_colour_name" };
#define NCOLORS 6

static cohort_db *db;
static cohort_table *tbl;
static cohort_filter *flt;

/* ---- reference data ------------------------------------------------------ */

typedef struct ref_row {
	bool live;
	bool null[NCOLS];
	float f32;
	double f64;
	int32_t i32;
	int64_t i64;
	bool b;
	int color;
	double cnt;
	double dec_x;           /* decay: dec_x * 2^-dec_j at AT */
	int dec_j;
	double lo, hi, last;
} ref_row;

static ref_row *ref;
static struct node *nodes;

static uint64_t rng_state;

static uint64_t rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int rnd(int n)
{
	return (int)(rng() % (uint64_t)n);
}

static void row_key(int i, char *key)
{
	snprintf(key, 16, "r%05d", i);
}

static float gen_f32(void)
{
	static const float special[] = { 0.1f, 0.5f, -1.25f, 2.0f, 0.0f,
					 1e-45f, 16777216.0f, FLT_MAX, -FLT_MAX,
					 3.0f, 2.5f };

	switch (rnd(3)) {
	case 0: return special[rnd(sizeof special / sizeof special[0])];
	case 1: return (float)(rnd(161) - 80) / 8.0f;
	default: return (float)((double)rnd(1000000) / 1e5 - 5.0);
	}
}

static double gen_f64(void)
{
	static const double special[] = { 0.1, 2.5, 0.0, -3.0, 9007199254740992.0,
					  9223372036854775808.0,
					  -9223372036854775808.0, 1e300, 3.0,
					  (double)0.1f };

	switch (rnd(3)) {
	case 0: return special[rnd(sizeof special / sizeof special[0])];
	case 1: return (double)(rnd(161) - 80) / 4.0;
	default: return (double)rnd(1000000000) / 1e7 - 50.0;
	}
}

static int32_t gen_i32(void)
{
	static const int32_t special[] = { 2, 3, INT32_MIN, INT32_MAX, 0, -1,
					   16777217 };

	if (rnd(4) == 0)
		return special[rnd(sizeof special / sizeof special[0])];
	return rnd(61) - 30;
}

static int64_t gen_i64(void)
{
	static const int64_t special[] = {
		2, 3, INT64_MIN, INT64_MAX, 9007199254740992LL,
		9007199254740993LL, -9007199254740993LL, 0, INT64_MAX - 1,
	};

	switch (rnd(4)) {
	case 0: return special[rnd(sizeof special / sizeof special[0])];
	case 1: return (int64_t)rng();
	default: return rnd(61) - 30;
	}
}

static double gen_quarter(void)
{
	return (double)(rnd(161) - 80) / 4.0;
}

/* Write row i (a new row: it is absent or was deleted) and record it. */
static void gen_row(int i)
{
	ref_row *r = &ref[i];
	char key[16];
	cohort_field f[NCOLS + 1];
	cohort_field nulls[NCOLS];
	size_t nf = 0, nn = 0;
	float vec[VDIM];
	bool explicit_null[NCOLS];

	row_key(i, key);
	memset(r, 0, sizeof *r);
	r->live = true;
	for (int c = 0; c < NCOLS; c++) {
		r->null[c] = rnd(10) == 0;
		explicit_null[c] = r->null[c] && rnd(2);
	}
	r->f32 = gen_f32();
	r->f64 = gen_f64();
	r->i32 = gen_i32();
	r->i64 = gen_i64();
	r->b = rnd(2);
	r->color = rnd(NCOLORS);
	for (int d = 0; d < VDIM; d++)
		vec[d] = (float)rnd(100);
	r->cnt = rnd(5) == 0 ? gen_f64() : (double)(rnd(71) - 20);
	if (!isfinite(r->cnt) || fabs(r->cnt) > 1e200)
		r->cnt = 7;
	r->dec_x = rnd(21);
	r->dec_j = rnd(3);
	r->lo = gen_quarter();
	r->hi = gen_quarter();
	r->last = gen_quarter();

	/* first put: every column that is not null, plus a value for the
	 * columns nulled explicitly afterwards */
	for (int c = 0; c < NCOLS; c++) {
		cohort_value v;

		if (c == C_DEC || (r->null[c] && !explicit_null[c]))
			continue;
		switch (c) {
		case C_F32: v = cohort_f32(r->f32); break;
		case C_F64: v = cohort_f64(r->f64); break;
		case C_I32: v = cohort_i32(r->i32); break;
		case C_I64: v = cohort_i64(r->i64); break;
		case C_BOOL: v = cohort_bool(r->b); break;
		case C_CAT: v = cohort_cat(colors[r->color]); break;
		case C_VEC: v = cohort_vec(vec, VDIM); break;
		case C_CNT: v = cohort_f64(r->cnt); break;
		case C_MIN: v = cohort_f64(r->lo); break;
		case C_MAX: v = cohort_f64(r->hi); break;
		default: v = cohort_f64(r->last); break;
		}
		f[nf++] = (cohort_field){ c, v };
		if (explicit_null[c])
			nulls[nn++] = (cohort_field){ c, cohort_null() };
	}
	if (nf == 0) /* a row must exist even when every value is null */
		f[nf++] = (cohort_field){ C_VEC, cohort_null() };
	cr_assert_eq(cohort_put(tbl, key, 6, AT - 5 * HL, f, nf), 0, "put %d", i);
	if (!r->null[C_DEC] || explicit_null[C_DEC]) {
		cohort_field d = { C_DEC, cohort_f64(r->dec_x) };

		cr_assert_eq(cohort_put(tbl, key, 6, AT - r->dec_j * HL, &d, 1), 0);
		if (explicit_null[C_DEC])
			nulls[nn++] = (cohort_field){ C_DEC, cohort_null() };
	}
	if (nn)
		cr_assert_eq(cohort_put(tbl, key, 6, AT - 4 * HL, nulls, nn), 0);

	/* some aggregates move on through events */
	if (!r->null[C_CNT] && rnd(3) == 0) {
		int k = rnd(9) - 4;
		cohort_update u = { C_CNT, COHORT_OP_ADD, cohort_i32(k) };

		cr_assert_eq(cohort_event(tbl, key, 6, AT - 3 * HL, &u, 1), 0);
		r->cnt += k;
	}
	if (!r->null[C_MIN] && !r->null[C_MAX] && rnd(3) == 0) {
		double x = gen_quarter();
		cohort_update u[2] = {
			{ C_MIN, COHORT_OP_OBSERVE, cohort_f64(x) },
			{ C_MAX, COHORT_OP_OBSERVE, cohort_f64(x) },
		};

		cr_assert_eq(cohort_event(tbl, key, 6, AT - 3 * HL, u, 2), 0);
		r->lo = fmin(r->lo, x);
		r->hi = fmax(r->hi, x);
	}
	if (!r->null[C_LAST] && rnd(3) == 0) {
		double x = gen_quarter();
		cohort_update u = { C_LAST, COHORT_OP_OBSERVE, cohort_f64(x) };

		cr_assert_eq(cohort_event(tbl, key, 6, AT - 2 * HL, &u, 1), 0);
		r->last = x;
	}
}

static void big_setup(void)
{
	char key[16];

	cr_assert_eq(cohort_open(NULL, NULL, &db), 0);
	cr_assert_eq(cohort_table_create(db, "big", big_cols, NCOLS, NULL, &tbl),
		     0);
	ref = calloc(NROWS, sizeof *ref);
	cr_assert_not_null(ref);
	rng_state = 12345;
	for (int i = 0; i < NROWS; i++)
		gen_row(i);
	/* delete ~6%, then re-insert a third of those with new data */
	for (int i = 0; i < NROWS; i++) {
		if (rnd(16) != 0)
			continue;
		row_key(i, key);
		cr_assert_eq(cohort_delete(tbl, key, 6), 0);
		ref[i].live = false;
		if (rnd(3) == 0)
			gen_row(i);
	}
	cr_assert_eq(cohort_filter_new(tbl, &flt), 0);
}

static void teardown(void)
{
	cohort_filter_free(flt);
	flt = NULL;
	cohort_close(db);
	db = NULL;
	tbl = NULL;
	free(ref);
	ref = NULL;
	free(nodes);
	nodes = NULL;
}

/* ---- expressions, built in the library and in the reference at once ---- */

enum { K_CMP, K_IN, K_ISNULL, K_NOTNULL, K_AND, K_OR, K_NOT };
enum { FALSE3 = 0, TRUE3 = 1, UNKNOWN3 = 2 };

#define MAXNODES 20000
#define MAXSET 4

typedef struct node {
	int kind;
	int col;
	cohort_cmp cmp;
	cohort_value val;
	int set[MAXSET];          /* K_IN: indexes into colors, or -1 absent */
	int nset;
	int a, b;
	int lib;                  /* the library's node id */
	char desc[96];
} node;

static int nnodes;

static const char *const cmp_names[] = { "?", "=", "!=", "<", "<=", ">", ">=" };

static void nodes_init(void)
{
	if (!nodes)
		nodes = calloc(MAXNODES, sizeof *nodes);
	cr_assert_not_null(nodes);
	nnodes = 0;
}

static void value_desc(cohort_value v, char *buf, size_t n)
{
	switch (v.type) {
	case COHORT_F32: snprintf(buf, n, "f32 %.9g", (double)v.v.f32); break;
	case COHORT_F64: snprintf(buf, n, "f64 %.17g", v.v.f64); break;
	case COHORT_I32: snprintf(buf, n, "i32 %d", v.v.i32); break;
	case COHORT_I64: snprintf(buf, n, "i64 %lld", (long long)v.v.i64); break;
	case COHORT_BOOL: snprintf(buf, n, "bool %d", v.v.b); break;
	case COHORT_CAT: snprintf(buf, n, "'%.*s'", (int)v.v.str.len,
				  v.v.str.ptr); break;
	default: snprintf(buf, n, "type %d", v.type);
	}
}

static int add_node(node *x)
{
	cr_assert_lt(nnodes, MAXNODES);
	cr_assert_geq(x->lib, 0, "building %s failed: %d (%s) %s", x->desc,
		      x->lib, cohort_strerror(x->lib), cohort_errdetail());
	nodes[nnodes] = *x;
	return nnodes++;
}

static int n_cmp(int col, cohort_cmp cmp, cohort_value v)
{
	node x = { .kind = K_CMP, .col = col, .cmp = cmp, .val = v };
	char vd[64];

	value_desc(v, vd, sizeof vd);
	snprintf(x.desc, sizeof x.desc, "%s %s %s", big_cols[col].name,
		 cmp_names[cmp], vd);
	x.lib = cohort_filter_cmp(flt, col, cmp, v);
	return add_node(&x);
}

/* cat IN set; idx[i] < 0 stands for a string absent from the data */
static int n_in(const int *idx, int n)
{
	node x = { .kind = K_IN, .col = C_CAT, .nset = n };
	cohort_value set[MAXSET];

	for (int i = 0; i < n; i++) {
		x.set[i] = idx[i];
		set[i] = cohort_cat(idx[i] >= 0 ? colors[idx[i]] : "purple");
	}
	snprintf(x.desc, sizeof x.desc, "color in {%d items}", n);
	x.lib = cohort_filter_in(flt, C_CAT, set, (size_t)n);
	return add_node(&x);
}

static int n_isnull(int col, bool is_null)
{
	node x = { .kind = is_null ? K_ISNULL : K_NOTNULL, .col = col };

	snprintf(x.desc, sizeof x.desc, "%s is %snull", big_cols[col].name,
		 is_null ? "" : "not ");
	x.lib = is_null ? cohort_filter_is_null(flt, col) :
		cohort_filter_not_null(flt, col);
	return add_node(&x);
}

static int n_bin(int kind, int a, int b)
{
	node x = { .kind = kind, .a = a, .b = b };

	snprintf(x.desc, sizeof x.desc, "(#%d %s #%d)", a,
		 kind == K_AND ? "and" : "or", b);
	x.lib = kind == K_AND ? cohort_filter_and(flt, nodes[a].lib, nodes[b].lib)
		: cohort_filter_or(flt, nodes[a].lib, nodes[b].lib);
	return add_node(&x);
}

static int n_not(int a)
{
	node x = { .kind = K_NOT, .a = a };

	snprintf(x.desc, sizeof x.desc, "not #%d", a);
	x.lib = cohort_filter_not(flt, nodes[a].lib);
	return add_node(&x);
}

/* The value of a numeric column of a live row, exactly. */
static long double ref_num(const ref_row *r, int col)
{
	switch (col) {
	case C_F32: return r->f32;
	case C_F64: return r->f64;
	case C_I32: return r->i32;
	case C_I64: return r->i64;
	case C_CNT: return r->cnt;
	case C_DEC: return ldexpl(r->dec_x, -r->dec_j);
	case C_MIN: return r->lo;
	case C_MAX: return r->hi;
	default: return r->last;
	}
}

static long double value_num(cohort_value v)
{
	switch (v.type) {
	case COHORT_F32: return v.v.f32;
	case COHORT_F64: return v.v.f64;
	case COHORT_I32: return v.v.i32;
	case COHORT_I64: return v.v.i64;
	default: cr_assert_fail("not a number"); return 0;
	}
}

static bool compare(long double a, cohort_cmp cmp, long double b)
{
	switch (cmp) {
	case COHORT_EQ: return a == b;
	case COHORT_NE: return a != b;
	case COHORT_LT: return a < b;
	case COHORT_LE: return a <= b;
	case COHORT_GT: return a > b;
	default: return a >= b;
	}
}

static int eval3(int n, const ref_row *r)
{
	const node *x = &nodes[n];
	int a, b;

	switch (x->kind) {
	case K_ISNULL: return r->null[x->col] ? TRUE3 : FALSE3;
	case K_NOTNULL: return r->null[x->col] ? FALSE3 : TRUE3;
	case K_CMP:
		if (r->null[x->col])
			return UNKNOWN3;
		if (x->col == C_BOOL)
			return (r->b == x->val.v.b) == (x->cmp == COHORT_EQ);
		if (x->col == C_CAT) {
			bool eq = strlen(colors[r->color]) == x->val.v.str.len &&
				  memcmp(colors[r->color], x->val.v.str.ptr,
					 x->val.v.str.len) == 0;

			return eq == (x->cmp == COHORT_EQ);
		}
		return compare(ref_num(r, x->col), x->cmp, value_num(x->val));
	case K_IN:
		if (r->null[C_CAT])
			return UNKNOWN3;
		for (int i = 0; i < x->nset; i++)
			if (x->set[i] == r->color)
				return TRUE3;
		return FALSE3;
	case K_NOT:
		a = eval3(x->a, r);
		return a == UNKNOWN3 ? UNKNOWN3 : !a;
	case K_AND:
		a = eval3(x->a, r);
		b = eval3(x->b, r);
		if (a == FALSE3 || b == FALSE3)
			return FALSE3;
		return a == TRUE3 && b == TRUE3 ? TRUE3 : UNKNOWN3;
	default: /* K_OR */
		a = eval3(x->a, r);
		b = eval3(x->b, r);
		if (a == TRUE3 || b == TRUE3)
			return TRUE3;
		return a == FALSE3 && b == FALSE3 ? FALSE3 : UNKNOWN3;
	}
}

static uint64_t ref_count(int n)
{
	uint64_t c = 0;

	for (int i = 0; i < NROWS; i++)
		if (ref[i].live && eval3(n, &ref[i]) == TRUE3)
			c++;
	return c;
}

static uint64_t lib_count(int n)
{
	uint64_t c = UINT64_MAX;
	int rc = cohort_filter_count(flt, nodes[n].lib, AT, &c);

	cr_assert_eq(rc, 0, "count of %s: %d %s", nodes[n].desc, rc,
		     cohort_errdetail());
	return c;
}

/* Library and loop agree on node n; returns the count. */
static uint64_t check(int n)
{
	uint64_t want = ref_count(n), got = lib_count(n);

	cr_assert_eq(got, want, "%s: library counts %llu, loop %llu",
		     nodes[n].desc, (unsigned long long)got,
		     (unsigned long long)want);
	return got;
}

static const cohort_cmp all_cmps[6] = { COHORT_EQ, COHORT_NE, COHORT_LT,
					COHORT_LE, COHORT_GT, COHORT_GE };

/* Every comparison of column col against every constant, and their NOTs. */
static void check_all_cmps(int col, const cohort_value *consts, size_t n)
{
	uint64_t total = 0;

	nodes_init();
	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < 6; k++) {
			int leaf = n_cmp(col, all_cmps[k], consts[i]);

			total += check(leaf);
			check(n_not(leaf));
		}
	cr_assert_gt(total, 0, "no comparison on %s matched anything",
		     big_cols[col].name);
}

/* ---- every operator on every column type -------------------------------- */

Test(filter, cmp_on_f32_matches_loop, .init = big_setup, .fini = teardown)
{
	const cohort_value c[] = {
		cohort_f64(0.1), cohort_f32(0.1f), cohort_f64((double)0.1f),
		cohort_f64(0.5), cohort_i32(2), cohort_f64(-1.25), cohort_f64(2.5),
		cohort_f64(1e30), cohort_f64(-1e30), cohort_i64(0),
		cohort_f64(1e-50), cohort_f64(-1e-50), cohort_f64(3.5e38),
		cohort_f64(-3.5e38), cohort_f64(FLT_MAX),
		cohort_f64(nextafter((double)FLT_MAX, INFINITY)),
		cohort_i64(16777217), cohort_i32(16777216), cohort_f64(1.2345678),
		cohort_f32(-3.75f), cohort_i64(INT64_MIN),
	};

	check_all_cmps(C_F32, c, sizeof c / sizeof c[0]);
}

Test(filter, cmp_on_f64_matches_loop, .init = big_setup, .fini = teardown)
{
	const cohort_value c[] = {
		cohort_f64(0.1), cohort_f32(0.1f), cohort_f64(2.5), cohort_i32(2),
		cohort_i32(-3), cohort_i64(9007199254740993LL),
		cohort_i64(9007199254740992LL), cohort_i64(INT64_MAX),
		cohort_i64(INT64_MIN), cohort_f64(1e300), cohort_f64(-12.3456),
		cohort_f64(0.0), cohort_f64(-0.0), cohort_f64(DBL_MAX),
	};

	check_all_cmps(C_F64, c, sizeof c / sizeof c[0]);
}

Test(filter, cmp_on_i32_matches_loop, .init = big_setup, .fini = teardown)
{
	const cohort_value c[] = {
		cohort_i32(2), cohort_i32(3), cohort_f64(2.5), cohort_f64(-2.5),
		cohort_f64(1e30), cohort_f64(-1e30), cohort_i64(INT64_MAX),
		cohort_i64(2147483648LL), cohort_i64(-2147483649LL),
		cohort_i32(INT32_MIN), cohort_i32(INT32_MAX),
		cohort_f64(2147483647.5), cohort_f64(-2147483648.5),
		cohort_f64(-2147483648.0), cohort_f32(2.5f), cohort_f64(0.5),
		cohort_f64(-0.0), cohort_f32(16777217.0f), cohort_i64(16777217),
	};

	check_all_cmps(C_I32, c, sizeof c / sizeof c[0]);
}

Test(filter, cmp_on_i64_matches_loop, .init = big_setup, .fini = teardown)
{
	const cohort_value c[] = {
		cohort_i64(2), cohort_i32(3), cohort_f64(2.5), cohort_f64(1e30),
		cohort_f64(-1e30), cohort_i64(9007199254740993LL),
		cohort_f64(9007199254740992.0), cohort_f64(9007199254740994.0),
		cohort_f64(9223372036854775808.0),
		cohort_f64(-9223372036854775808.0), cohort_i64(INT64_MAX),
		cohort_i64(INT64_MIN), cohort_f32(2.5f), cohort_f64(-0.5),
		cohort_f64(4611686018427387904.5), cohort_f64(1e18),
	};

	check_all_cmps(C_I64, c, sizeof c / sizeof c[0]);
}

Test(filter, cmp_on_bool_matches_loop, .init = big_setup, .fini = teardown)
{
	uint64_t t, f;

	nodes_init();
	t = check(n_cmp(C_BOOL, COHORT_EQ, cohort_bool(true)));
	f = check(n_cmp(C_BOOL, COHORT_EQ, cohort_bool(false)));
	check(n_cmp(C_BOOL, COHORT_NE, cohort_bool(true)));
	check(n_cmp(C_BOOL, COHORT_NE, cohort_bool(false)));
	check(n_not(n_cmp(C_BOOL, COHORT_EQ, cohort_bool(true))));
	cr_assert_gt(t, 0);
	cr_assert_gt(f, 0);
}

Test(filter, cmp_on_cat_matches_loop, .init = big_setup, .fini = teardown)
{
	uint64_t total = 0;

	nodes_init();
	for (int i = 0; i < NCOLORS; i++) {
		total += check(n_cmp(C_CAT, COHORT_EQ, cohort_cat(colors[i])));
		check(n_cmp(C_CAT, COHORT_NE, cohort_cat(colors[i])));
		check(n_not(n_cmp(C_CAT, COHORT_EQ, cohort_cat(colors[i]))));
	}
	/* a string the dictionary has never seen */
	cr_assert_eq(check(n_cmp(C_CAT, COHORT_EQ, cohort_cat("purple"))), 0);
	cr_assert_gt(check(n_cmp(C_CAT, COHORT_NE, cohort_cat("purple"))), 0);
	/* a prefix of a real string is another string */
	cr_assert_eq(check(n_cmp(C_CAT, COHORT_EQ, cohort_catn("redx", 2))), 0);
	cr_assert_gt(check(n_cmp(C_CAT, COHORT_EQ, cohort_catn("redx", 3))), 0);
	cr_assert_gt(total, 0);
}

Test(filter, in_set_on_cat_matches_loop, .init = big_setup, .fini = teardown)
{
	static const int sets[][MAXSET] = {
		{ 0 }, { 1, 2 }, { 5, 0, 3 }, { -1, 4 }, { -1 }, { 2, 2, 2, 1 },
		{ 0, 1, 2, 3 },
	};
	static const int lens[] = { 1, 2, 3, 2, 1, 4, 4 };

	nodes_init();
	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		int leaf = n_in(sets[i], lens[i]);

		check(leaf);
		check(n_not(leaf));
	}
	cr_assert_gt(lib_count(0), 0);
}

Test(filter, cmp_on_counter_matches_loop, .init = big_setup, .fini = teardown)
{
	const cohort_value c[] = {
		cohort_f64(0), cohort_i32(3), cohort_f64(2.5), cohort_f64(0.1),
		cohort_i64(9007199254740993LL), cohort_f64(1e300), cohort_f32(7.0f),
		cohort_f64(-19.75), cohort_i64(INT64_MIN),
	};

	check_all_cmps(C_CNT, c, sizeof c / sizeof c[0]);
}

Test(filter, cmp_on_decay_at_read_time_matches_loop, .init = big_setup,
     .fini = teardown)
{
	/* values are x * 2^-j at AT with integer x; constants stay clear of
	 * them so that the last bit of exp2 does not decide */
	const cohort_value c[] = {
		cohort_f64(2.3), cohort_f64(0.7), cohort_f64(5.1), cohort_f64(10.45),
		cohort_f64(-1), cohort_f64(100), cohort_f32(3.3f), cohort_f64(0.1),
	};

	check_all_cmps(C_DEC, c, sizeof c / sizeof c[0]);
}

Test(filter, cmp_on_decay_depends_on_read_time, .init = big_setup,
     .fini = teardown)
{
	int leaf;
	uint64_t now = 0, later = 0, want = 0;

	/* at AT + 10 half-lives every value is below 20 / 1024 */
	nodes_init();
	leaf = n_cmp(C_DEC, COHORT_GT, cohort_f64(0.02));
	cr_assert_eq(cohort_filter_count(flt, nodes[leaf].lib, AT, &now), 0);
	cr_assert_eq(cohort_filter_count(flt, nodes[leaf].lib, AT + 10 * HL,
					 &later), 0);
	for (int i = 0; i < NROWS; i++)
		if (ref[i].live && !ref[i].null[C_DEC] &&
		    ldexpl(ref[i].dec_x, -ref[i].dec_j) > 0.02L)
			want++;
	cr_assert_eq(now, want);
	cr_assert_eq(later, 0);
}

Test(filter, cmp_on_min_matches_loop, .init = big_setup, .fini = teardown)
{
	const cohort_value c[] = {
		cohort_f64(0), cohort_f64(-5.25), cohort_f64(5.1), cohort_i32(-3),
		cohort_f32(2.5f), cohort_i64(20),
	};

	check_all_cmps(C_MIN, c, sizeof c / sizeof c[0]);
}

Test(filter, cmp_on_max_matches_loop, .init = big_setup, .fini = teardown)
{
	const cohort_value c[] = {
		cohort_f64(0), cohort_f64(-5.25), cohort_f64(5.1), cohort_i32(3),
		cohort_f32(12.75f), cohort_i64(-20),
	};

	check_all_cmps(C_MAX, c, sizeof c / sizeof c[0]);
}

Test(filter, cmp_on_last_matches_loop, .init = big_setup, .fini = teardown)
{
	const cohort_value c[] = {
		cohort_f64(0), cohort_f64(-5.25), cohort_f64(5.1), cohort_i32(3),
		cohort_f32(-0.25f), cohort_i64(1),
	};

	check_all_cmps(C_LAST, c, sizeof c / sizeof c[0]);
}

Test(filter, is_null_on_every_column_matches_loop, .init = big_setup,
     .fini = teardown)
{
	nodes_init();
	for (int c = 0; c < NCOLS; c++)
		cr_assert_gt(check(n_isnull(c, true)), 0, "column %d", c);
}

Test(filter, not_null_on_every_column_matches_loop, .init = big_setup,
     .fini = teardown)
{
	nodes_init();
	for (int c = 0; c < NCOLS; c++)
		cr_assert_gt(check(n_isnull(c, false)), 0, "column %d", c);
}

Test(filter, null_and_not_null_partition_live_rows, .init = big_setup,
     .fini = teardown)
{
	uint64_t live = 0;

	for (int i = 0; i < NROWS; i++)
		live += ref[i].live;
	nodes_init();
	for (int c = 0; c < NCOLS; c++) {
		uint64_t a = check(n_isnull(c, true));
		uint64_t b = check(n_isnull(c, false));

		cr_assert_eq(a + b, live, "column %d", c);
	}
}

/* ---- and / or / not ------------------------------------------------------ */

static int random_leaf(void)
{
	static const int numeric[] = { C_F32, C_F64, C_I32, C_I64, C_CNT, C_DEC,
				       C_MIN, C_MAX, C_LAST };
	const cohort_cmp cmp = all_cmps[rnd(6)];

	switch (rnd(8)) {
	case 0:
		return n_isnull(rnd(NCOLS), rnd(2));
	case 1:
		return n_cmp(C_BOOL, rnd(2) ? COHORT_EQ : COHORT_NE,
			     cohort_bool(rnd(2)));
	case 2:
		return n_cmp(C_CAT, rnd(2) ? COHORT_EQ : COHORT_NE,
			     cohort_cat(colors[rnd(NCOLORS)]));
	case 3: {
		int set[3] = { rnd(NCOLORS), rnd(NCOLORS), rnd(NCOLORS) - 1 };

		return n_in(set, 1 + rnd(3));
	}
	default: {
		int col = numeric[rnd(9)];
		cohort_value v;

		if (col == C_DEC)
			v = cohort_f64(0.3 + rnd(20));
		else if (col == C_I32 || col == C_I64)
			v = rnd(2) ? cohort_i32(rnd(61) - 30) :
				cohort_f64(rnd(61) - 30.5);
		else if (col == C_F32)
			v = cohort_f64((double)gen_f32());
		else
			v = cohort_f64(gen_quarter());
		return n_cmp(col, cmp, v);
	}
	}
}

static int random_tree(int depth)
{
	if (depth == 0 || rnd(4) == 0)
		return random_leaf();
	switch (rnd(3)) {
	case 0: return n_not(random_tree(depth - 1));
	case 1: return n_bin(K_AND, random_tree(depth - 1),
			     random_tree(depth - 1));
	default: return n_bin(K_OR, random_tree(depth - 1),
			      random_tree(depth - 1));
	}
}

Test(filter, and_or_not_trees_follow_three_valued_logic, .init = big_setup,
     .fini = teardown)
{
	uint64_t nonzero = 0;

	rng_state = 777;
	for (int i = 0; i < 150; i++) {
		int root;

		/* a fresh filter per tree: a filter holds a bounded number of
		 * nodes */
		cohort_filter_free(flt);
		cr_assert_eq(cohort_filter_new(tbl, &flt), 0);
		nodes_init();
		root = random_tree(4);

		nonzero += check(root) > 0;
	}
	cr_assert_gt(nonzero, 20, "the trees match too rarely to mean much");
}

Test(filter, shared_subexpressions_are_reused, .init = big_setup,
     .fini = teardown)
{
	int a, b, ab, nab, x;

	/* a node may be an operand of several others */
	nodes_init();
	a = n_cmp(C_I32, COHORT_LT, cohort_i32(0));
	b = n_isnull(C_F64, true);
	ab = n_bin(K_OR, a, b);
	nab = n_not(ab);
	x = n_bin(K_AND, n_bin(K_OR, ab, nab), n_bin(K_OR, a, n_not(a)));
	check(x);
	check(n_bin(K_AND, ab, ab));
	check(n_bin(K_OR, nab, n_not(nab)));
}

/* ---- count, bitmap and keys agree --------------------------------------- */

static int key_index(const void *key, size_t key_len)
{
	char buf[16];

	cr_assert_eq(key_len, 6);
	memcpy(buf, key, 6);
	buf[6] = '\0';
	cr_assert_eq(buf[0], 'r');
	return atoi(buf + 1);
}

typedef struct seen {
	unsigned char *hits;
	uint64_t ncalls;
	uint64_t stop_after;
	int stop_value;
} seen;

static int collect_cb(const void *key, size_t key_len, void *ctx)
{
	seen *s = ctx;
	int i = key_index(key, key_len);

	s->hits[i]++;
	s->ncalls++;
	return s->stop_after && s->ncalls == s->stop_after ? s->stop_value : 0;
}

static void check_outputs(int n)
{
	uint64_t want = ref_count(n), count = 0, bits = 0, pop = 0, keys_count = 0;
	cohort_bitmap *bm = NULL;
	const uint64_t *words;
	seen s = { 0 };

	cr_assert_eq(cohort_filter_count(flt, nodes[n].lib, AT, &count), 0);
	cr_assert_eq(count, want, "%s", nodes[n].desc);

	cr_assert_eq(cohort_filter_eval(flt, nodes[n].lib, AT, &bm), 0);
	cr_assert_not_null(bm);
	cr_assert_eq(cohort_bitmap_count(bm), want, "%s", nodes[n].desc);
	for (uint64_t i = 0; i < cohort_bitmap_nbits(bm); i++)
		bits += cohort_bitmap_test(bm, i);
	cr_assert_eq(bits, want, "bits set by cohort_bitmap_test");
	cr_assert_geq(cohort_bitmap_nbits(bm), want);
	words = cohort_bitmap_words(bm);
	cr_assert_not_null(words);
	for (uint64_t w = 0; w < (cohort_bitmap_nbits(bm) + 63) / 64; w++)
		pop += (uint64_t)__builtin_popcountll(words[w]);
	cr_assert_eq(pop, want, "bits set in cohort_bitmap_words");
	cohort_bitmap_free(bm);

	s.hits = calloc(NROWS, 1);
	cr_assert_not_null(s.hits);
	cr_assert_eq(cohort_filter_keys(flt, nodes[n].lib, AT, collect_cb, &s,
					&keys_count), 0);
	cr_assert_eq(keys_count, want);
	cr_assert_eq(s.ncalls, want);
	for (int i = 0; i < NROWS; i++) {
		bool match = ref[i].live && eval3(n, &ref[i]) == TRUE3;

		cr_assert_eq(s.hits[i], match ? 1 : 0,
			     "key r%05d reported %d times, expected %d", i,
			     s.hits[i], match);
	}
	free(s.hits);
}

Test(filter, count_bitmap_and_keys_agree, .init = big_setup, .fini = teardown)
{
	nodes_init();
	check_outputs(n_cmp(C_I32, COHORT_GT, cohort_f64(2.5)));
	check_outputs(n_isnull(C_CAT, true));
	check_outputs(n_not(n_cmp(C_DEC, COHORT_LT, cohort_f64(3.3))));
	check_outputs(n_bin(K_OR, n_cmp(C_BOOL, COHORT_EQ, cohort_bool(true)),
			    n_isnull(C_F32, true)));
	/* nothing matches, everything live matches */
	check_outputs(n_cmp(C_CAT, COHORT_EQ, cohort_cat("purple")));
	check_outputs(n_bin(K_OR, n_isnull(C_VEC, true),
			    n_isnull(C_VEC, false)));
}

Test(filter, keys_stops_early_with_the_callback_value, .init = big_setup,
     .fini = teardown)
{
	seen s = { 0 };
	int leaf, rc;

	nodes_init();
	leaf = n_isnull(C_I32, false);
	cr_assert_gt(ref_count(leaf), 10);
	s.hits = calloc(NROWS, 1);
	s.stop_after = 5;
	s.stop_value = 42;
	rc = cohort_filter_keys(flt, nodes[leaf].lib, AT, collect_cb, &s, NULL);
	cr_assert_eq(rc, 42);
	cr_assert_eq(s.ncalls, 5, "callback ran %llu times after asking to stop",
		     (unsigned long long)s.ncalls);
	for (int i = 0; i < NROWS; i++)
		cr_assert(s.hits[i] == 0 || (ref[i].live && !ref[i].null[C_I32]),
			  "reported key r%05d does not match", i);
	free(s.hits);
}

Test(filter, deleted_rows_never_match, .init = big_setup, .fini = teardown)
{
	seen s = { 0 };
	int all;

	nodes_init();
	all = n_bin(K_OR, n_isnull(C_F64, true), n_isnull(C_F64, false));
	s.hits = calloc(NROWS, 1);
	cr_assert_eq(cohort_filter_keys(flt, nodes[all].lib, AT, collect_cb, &s,
					NULL), 0);
	for (int i = 0; i < NROWS; i++)
		cr_assert_eq(s.hits[i], ref[i].live ? 1 : 0, "row %d", i);
	free(s.hits);
}

Test(filter, sees_writes_made_after_it_was_built, .init = big_setup,
     .fini = teardown)
{
	char key[16];
	uint64_t before, after;
	int leaf;

	nodes_init();
	leaf = n_cmp(C_CAT, COHORT_EQ, cohort_cat("brand_new"));
	before = lib_count(leaf);
	cr_assert_eq(before, 0);
	for (int i = 0; i < 7; i++) {
		cohort_field f = { C_CAT, cohort_cat("brand_new") };

		snprintf(key, sizeof key, "x%05d", i);
		cr_assert_eq(cohort_put(tbl, key, 6, AT, &f, 1), 0);
	}
	after = lib_count(leaf);
	cr_assert_eq(after, 7);
}

/* ---- small table: written-out answers ------------------------------------ */

enum { S_F32, S_F64, S_I32, S_I64, S_X, S_Y, S_VEC, S_CAT, S_BOOL, S_DEC,
       S_CNT, NSMALL };

static void small_put(const char *key, const cohort_field *f, size_t n)
{
	cr_assert_eq(cohort_put(tbl, key, strlen(key), T0, f, n), 0);
}

static void small_setup(void)
{
	static const cohort_column_def cols[NSMALL] = {
		{ "f", COHORT_F32, 0, 0 },
		{ "d", COHORT_F64, 0, 0 },
		{ "i", COHORT_I32, 0, 0 },
		{ "l", COHORT_I64, 0, 0 },
		{ "x", COHORT_F64, 0, 0 },
		{ "y", COHORT_I32, 0, 0 },
		{ "v", COHORT_VEC, 2, 0 },
		{ "c", COHORT_CAT, 0, 0 },
		{ "b", COHORT_BOOL, 0, 0 },
		{ "h", COHORT_DECAY, 0, HL },
		{ "n", COHORT_COUNTER, 0, 0 },
	};

	cr_assert_eq(cohort_open(NULL, NULL, &db), 0);
	cr_assert_eq(cohort_table_create(db, "small", cols, NSMALL, NULL, &tbl),
		     0);
	cr_assert_eq(cohort_filter_new(tbl, &flt), 0);
}

static uint64_t count_of(int root)
{
	uint64_t n = UINT64_MAX;
	int rc;

	cr_assert_geq(root, 0, "building the filter failed: %d (%s) %s", root,
		      cohort_strerror(root), cohort_errdetail());
	rc = cohort_filter_count(flt, root, T0, &n);
	cr_assert_eq(rc, 0, "count failed: %d %s", rc, cohort_errdetail());
	return n;
}

static uint64_t cmp_count(int col, cohort_cmp cmp, cohort_value v)
{
	return count_of(cohort_filter_cmp(flt, col, cmp, v));
}

Test(filter, f32_against_double_0_1_compares_exactly, .init = small_setup,
     .fini = teardown)
{
	cohort_field f = { S_F32, cohort_f32(0.1f) };

	/* 0.1f is 0.100000001490116..., above the double 0.1 */
	small_put("a", &f, 1);
	cr_assert_eq(cmp_count(S_F32, COHORT_EQ, cohort_f64(0.1)), 0);
	cr_assert_eq(cmp_count(S_F32, COHORT_NE, cohort_f64(0.1)), 1);
	cr_assert_eq(cmp_count(S_F32, COHORT_GT, cohort_f64(0.1)), 1);
	cr_assert_eq(cmp_count(S_F32, COHORT_GE, cohort_f64(0.1)), 1);
	cr_assert_eq(cmp_count(S_F32, COHORT_LT, cohort_f64(0.1)), 0);
	cr_assert_eq(cmp_count(S_F32, COHORT_LE, cohort_f64(0.1)), 0);
	cr_assert_eq(cmp_count(S_F32, COHORT_EQ, cohort_f32(0.1f)), 1);
	cr_assert_eq(cmp_count(S_F32, COHORT_EQ, cohort_f64((double)0.1f)), 1);
}

Test(filter, f32_against_a_double_between_floats, .init = small_setup,
     .fini = teardown)
{
	cohort_field f = { S_F32, cohort_f32(1.0f) };
	double just_above = 1.0 + DBL_EPSILON; /* no float equals it */

	small_put("a", &f, 1);
	cr_assert_eq(cmp_count(S_F32, COHORT_LT, cohort_f64(just_above)), 1);
	cr_assert_eq(cmp_count(S_F32, COHORT_GE, cohort_f64(just_above)), 0);
	cr_assert_eq(cmp_count(S_F32, COHORT_EQ, cohort_f64(just_above)), 0);
	cr_assert_eq(cmp_count(S_F32, COHORT_GT, cohort_f64(1.0 - DBL_EPSILON)),
		     1);
	cr_assert_eq(cmp_count(S_F32, COHORT_LE, cohort_f64(1.0 - DBL_EPSILON)),
		     0);
}

Test(filter, int_against_2_5_compares_exactly, .init = small_setup,
     .fini = teardown)
{
	cohort_field a[2] = { { S_I32, cohort_i32(2) }, { S_I64, cohort_i64(2) } };
	cohort_field b[2] = { { S_I32, cohort_i32(3) }, { S_I64, cohort_i64(3) } };

	small_put("two", a, 2);
	small_put("three", b, 2);
	for (int col = S_I32; col <= S_I64; col++) {
		cr_assert_eq(cmp_count(col, COHORT_EQ, cohort_f64(2.5)), 0);
		cr_assert_eq(cmp_count(col, COHORT_NE, cohort_f64(2.5)), 2);
		cr_assert_eq(cmp_count(col, COHORT_LT, cohort_f64(2.5)), 1);
		cr_assert_eq(cmp_count(col, COHORT_LE, cohort_f64(2.5)), 1);
		cr_assert_eq(cmp_count(col, COHORT_GT, cohort_f64(2.5)), 1);
		cr_assert_eq(cmp_count(col, COHORT_GE, cohort_f64(2.5)), 1);
		cr_assert_eq(cmp_count(col, COHORT_LT, cohort_f64(-2.5)), 0);
		cr_assert_eq(cmp_count(col, COHORT_GT, cohort_f64(-2.5)), 2);
	}
}

Test(filter, int_against_1e30_compares_exactly, .init = small_setup,
     .fini = teardown)
{
	cohort_field a[2] = { { S_I32, cohort_i32(INT32_MAX) },
			      { S_I64, cohort_i64(INT64_MAX) } };
	cohort_field b[2] = { { S_I32, cohort_i32(INT32_MIN) },
			      { S_I64, cohort_i64(INT64_MIN) } };

	small_put("max", a, 2);
	small_put("min", b, 2);
	for (int col = S_I32; col <= S_I64; col++) {
		cr_assert_eq(cmp_count(col, COHORT_LT, cohort_f64(1e30)), 2);
		cr_assert_eq(cmp_count(col, COHORT_LE, cohort_f64(1e30)), 2);
		cr_assert_eq(cmp_count(col, COHORT_GT, cohort_f64(1e30)), 0);
		cr_assert_eq(cmp_count(col, COHORT_EQ, cohort_f64(1e30)), 0);
		cr_assert_eq(cmp_count(col, COHORT_NE, cohort_f64(1e30)), 2);
		cr_assert_eq(cmp_count(col, COHORT_GT, cohort_f64(-1e30)), 2);
		cr_assert_eq(cmp_count(col, COHORT_LT, cohort_f64(-1e30)), 0);
	}
}

Test(filter, i64_beyond_2_53_compares_exactly, .init = small_setup,
     .fini = teardown)
{
	cohort_field a = { S_I64, cohort_i64(9007199254740992LL) };  /* 2^53 */
	cohort_field b = { S_I64, cohort_i64(9007199254740993LL) };  /* +1 */

	small_put("a", &a, 1);
	small_put("b", &b, 1);
	cr_assert_eq(cmp_count(S_I64, COHORT_EQ, cohort_f64(9007199254740992.0)),
		     1);
	cr_assert_eq(cmp_count(S_I64, COHORT_GT, cohort_f64(9007199254740992.0)),
		     1);
	cr_assert_eq(cmp_count(S_I64, COHORT_EQ, cohort_i64(9007199254740993LL)),
		     1);
	cr_assert_eq(cmp_count(S_I64, COHORT_LT, cohort_i64(9007199254740993LL)),
		     1);
}

Test(filter, i64_max_is_below_2_pow_63, .init = small_setup, .fini = teardown)
{
	cohort_field a = { S_I64, cohort_i64(INT64_MAX) };
	cohort_field b = { S_I64, cohort_i64(INT64_MIN) };

	/* (double)INT64_MAX rounds to 2^63; the comparison must not */
	small_put("a", &a, 1);
	small_put("b", &b, 1);
	cr_assert_eq(cmp_count(S_I64, COHORT_EQ,
			       cohort_f64(9223372036854775808.0)), 0);
	cr_assert_eq(cmp_count(S_I64, COHORT_LT,
			       cohort_f64(9223372036854775808.0)), 2);
	cr_assert_eq(cmp_count(S_I64, COHORT_EQ,
			       cohort_f64(-9223372036854775808.0)), 1);
	cr_assert_eq(cmp_count(S_I64, COHORT_GE,
			       cohort_f64(-9223372036854775808.0)), 2);
}

Test(filter, f64_against_i64_compares_exactly, .init = small_setup,
     .fini = teardown)
{
	cohort_field a = { S_F64, cohort_f64(9007199254740992.0) };

	/* (double)(2^53 + 1) is 2^53: an exact comparison says less */
	small_put("a", &a, 1);
	cr_assert_eq(cmp_count(S_F64, COHORT_EQ, cohort_i64(9007199254740993LL)),
		     0);
	cr_assert_eq(cmp_count(S_F64, COHORT_LT, cohort_i64(9007199254740993LL)),
		     1);
	cr_assert_eq(cmp_count(S_F64, COHORT_NE, cohort_i64(9007199254740993LL)),
		     1);
	cr_assert_eq(cmp_count(S_F64, COHORT_EQ, cohort_i64(9007199254740992LL)),
		     1);
}

Test(filter, aggregates_against_i64_compare_exactly, .init = small_setup,
     .fini = teardown)
{
	cohort_field a[2] = { { S_DEC, cohort_f64(9007199254740992.0) },
			      { S_CNT, cohort_f64(9007199254740992.0) } };
	uint64_t n = 0;
	int eq;

	/* read at the put time, the decay factor is exactly 1 */
	small_put("a", a, 2);
	for (int col = S_DEC; col <= S_CNT; col++) {
		cr_assert_eq(cmp_count(col, COHORT_EQ,
				       cohort_i64(9007199254740993LL)), 0);
		cr_assert_eq(cmp_count(col, COHORT_LT,
				       cohort_i64(9007199254740993LL)), 1);
		cr_assert_eq(cmp_count(col, COHORT_EQ,
				       cohort_i64(9007199254740992LL)), 1);
	}
	/* one half-life later the decay value is 2^52 */
	eq = cohort_filter_cmp(flt, S_DEC, COHORT_EQ,
			       cohort_i64(4503599627370496LL));
	cr_assert_eq(cohort_filter_count(flt, eq, T0 + HL, &n), 0);
	cr_assert_eq(n, 1);
}

/* x: null, 1, 5; y: 0 on every row */
static void null_rows(void)
{
	cohort_field n[2] = { { S_X, cohort_null() }, { S_Y, cohort_i32(0) } };
	cohort_field one[2] = { { S_X, cohort_f64(1) }, { S_Y, cohort_i32(0) } };
	cohort_field five[2] = { { S_X, cohort_f64(5) }, { S_Y, cohort_i32(0) } };

	small_put("null", n, 2);
	small_put("one", one, 2);
	small_put("five", five, 2);
}

Test(filter, comparison_with_null_does_not_match, .init = small_setup,
     .fini = teardown)
{
	null_rows();
	cr_assert_eq(cmp_count(S_X, COHORT_EQ, cohort_f64(1)), 1);
	cr_assert_eq(cmp_count(S_X, COHORT_NE, cohort_f64(1)), 1);
	cr_assert_eq(cmp_count(S_X, COHORT_LT, cohort_f64(100)), 2);
	cr_assert_eq(cmp_count(S_X, COHORT_GE, cohort_f64(-100)), 2);
}

Test(filter, not_of_null_comparison_does_not_match, .init = small_setup,
     .fini = teardown)
{
	int lt;

	null_rows();
	lt = cohort_filter_cmp(flt, S_X, COHORT_LT, cohort_f64(3));
	cr_assert_eq(count_of(cohort_filter_not(flt, lt)), 1); /* only 5 */
	cr_assert_eq(count_of(cohort_filter_not(flt, cohort_filter_not(flt, lt))),
		     1); /* only 1 */
	cr_assert_eq(count_of(cohort_filter_not(flt, cohort_filter_or(flt, lt,
			cohort_filter_not(flt, lt)))), 0);
}

Test(filter, unknown_or_true_matches, .init = small_setup, .fini = teardown)
{
	null_rows();
	cr_assert_eq(count_of(cohort_filter_or(flt,
			cohort_filter_cmp(flt, S_X, COHORT_LT, cohort_f64(3)),
			cohort_filter_cmp(flt, S_Y, COHORT_EQ, cohort_i32(0)))), 3);
	cr_assert_eq(count_of(cohort_filter_or(flt,
			cohort_filter_cmp(flt, S_X, COHORT_LT, cohort_f64(3)),
			cohort_filter_is_null(flt, S_X))), 2);
}

Test(filter, not_of_unknown_and_false_matches, .init = small_setup,
     .fini = teardown)
{
	int and_;

	/* on the null row: unknown AND false is false, so NOT of it is true */
	null_rows();
	and_ = cohort_filter_and(flt,
		cohort_filter_cmp(flt, S_X, COHORT_LT, cohort_f64(3)),
		cohort_filter_cmp(flt, S_Y, COHORT_EQ, cohort_i32(1)));
	cr_assert_eq(count_of(and_), 0);
	cr_assert_eq(count_of(cohort_filter_not(flt, and_)), 3);
}

Test(filter, not_of_unknown_and_true_does_not_match, .init = small_setup,
     .fini = teardown)
{
	int and_;

	null_rows();
	and_ = cohort_filter_and(flt,
		cohort_filter_cmp(flt, S_X, COHORT_LT, cohort_f64(3)),
		cohort_filter_cmp(flt, S_Y, COHORT_EQ, cohort_i32(0)));
	cr_assert_eq(count_of(and_), 1);                          /* x = 1 */
	cr_assert_eq(count_of(cohort_filter_not(flt, and_)), 1);  /* x = 5 */
}

Test(filter, missing_rows_never_match_is_null, .init = small_setup,
     .fini = teardown)
{
	cohort_field f = { S_Y, cohort_i32(1) };

	small_put("a", &f, 1);
	small_put("b", &f, 1);
	cr_assert_eq(cohort_delete(tbl, "a", 1), 0);
	cr_assert_eq(count_of(cohort_filter_is_null(flt, S_X)), 1);
	cr_assert_eq(count_of(cohort_filter_not(flt,
			cohort_filter_not_null(flt, S_X))), 1);
}

Test(filter, empty_table_matches_nothing, .init = small_setup,
     .fini = teardown)
{
	cohort_bitmap *bm = NULL;
	int root = cohort_filter_is_null(flt, S_X);

	cr_assert_eq(count_of(root), 0);
	cr_assert_eq(cohort_filter_eval(flt, root, T0, &bm), 0);
	cr_assert_eq(cohort_bitmap_count(bm), 0);
	cohort_bitmap_free(bm);
}

Test(filter, bool_and_vec_null_tests, .init = small_setup, .fini = teardown)
{
	static const float v[2] = { 1, 2 };
	cohort_field a[2] = { { S_BOOL, cohort_bool(false) },
			      { S_VEC, cohort_vec(v, 2) } };
	cohort_field b = { S_Y, cohort_i32(1) };

	small_put("a", a, 2);
	small_put("b", &b, 1);
	cr_assert_eq(count_of(cohort_filter_is_null(flt, S_VEC)), 1);
	cr_assert_eq(count_of(cohort_filter_not_null(flt, S_VEC)), 1);
	cr_assert_eq(cmp_count(S_BOOL, COHORT_EQ, cohort_bool(false)), 1);
	cr_assert_eq(cmp_count(S_BOOL, COHORT_NE, cohort_bool(true)), 1);
	cr_assert_eq(cmp_count(S_BOOL, COHORT_NE, cohort_bool(false)), 0);
}

Test(filter, reused_slots_hold_no_stale_values, .init = small_setup,
     .fini = teardown)
{
	char key[16];
	cohort_field f[2] = { { S_I32, cohort_i32(0) }, { S_CAT, cohort_cat("old") } };
	cohort_field g = { S_Y, cohort_i32(1) };

	/* 3000 rows with i and c, all deleted; 3000 new keys with only y take
	 * over their slots and must read null in i and c */
	for (int i = 0; i < 3000; i++) {
		snprintf(key, sizeof key, "old%d", i);
		f[0].value = cohort_i32(i);
		small_put(key, f, 2);
	}
	for (int i = 0; i < 3000; i++) {
		snprintf(key, sizeof key, "old%d", i);
		cr_assert_eq(cohort_delete(tbl, key, strlen(key)), 0);
	}
	for (int i = 0; i < 3000; i++) {
		snprintf(key, sizeof key, "new%d", i);
		small_put(key, &g, 1);
	}
	cr_assert_eq(count_of(cohort_filter_is_null(flt, S_I32)), 3000);
	cr_assert_eq(count_of(cohort_filter_not_null(flt, S_CAT)), 0);
	cr_assert_eq(cmp_count(S_I32, COHORT_GE, cohort_i32(0)), 0);
	cr_assert_eq(cmp_count(S_CAT, COHORT_EQ, cohort_cat("old")), 0);
	cr_assert_eq(cmp_count(S_Y, COHORT_EQ, cohort_i32(1)), 3000);
}

Test(filter, column_added_later_is_null_for_old_rows, .init = small_setup,
     .fini = teardown)
{
	cohort_column_def def = { "late", COHORT_F64, 0, 0 };
	cohort_field g = { S_Y, cohort_i32(1) };
	char key[16];
	int id = -1;

	for (int i = 0; i < 2500; i++) {
		snprintf(key, sizeof key, "k%d", i);
		small_put(key, &g, 1);
	}
	cr_assert_eq(cohort_table_add_column(tbl, &def, &id), 0);
	for (int i = 0; i < 2500; i += 5) {
		cohort_field h = { id, cohort_f64(i) };

		snprintf(key, sizeof key, "k%d", i);
		small_put(key, &h, 1);
	}
	cr_assert_eq(count_of(cohort_filter_is_null(flt, id)), 2000);
	cr_assert_eq(count_of(cohort_filter_not_null(flt, id)), 500);
	cr_assert_eq(cmp_count(id, COHORT_LT, cohort_f64(1000)), 200);
	cr_assert_eq(count_of(cohort_filter_not(flt,
			cohort_filter_cmp(flt, id, COHORT_LT, cohort_f64(1000)))),
		     300);
}

typedef struct key_copy {
	int n;
	size_t len[4];
	unsigned char bytes[4][COHORT_MAX_KEY];
} key_copy;

static int copy_key_cb(const void *key, size_t key_len, void *ctx)
{
	key_copy *k = ctx;

	if (k->n < 4 && key_len <= COHORT_MAX_KEY) {
		k->len[k->n] = key_len;
		memcpy(k->bytes[k->n], key, key_len);
	}
	k->n++;
	return 0;
}

Test(filter, keys_passes_the_exact_key_bytes, .init = small_setup,
     .fini = teardown)
{
	unsigned char long_key[COHORT_MAX_KEY], nul_key[4] = { 'a', 0, 'b', 0 };
	cohort_field g = { S_Y, cohort_i32(7) };
	cohort_field h = { S_Y, cohort_i32(8) };
	key_copy k = { 0 };
	uint64_t n = 0;

	for (int i = 0; i < COHORT_MAX_KEY; i++)
		long_key[i] = (unsigned char)(i * 7 + 1);
	cr_assert_eq(cohort_put(tbl, long_key, sizeof long_key, T0, &g, 1), 0);
	cr_assert_eq(cohort_put(tbl, nul_key, sizeof nul_key, T0, &h, 1), 0);
	cr_assert_eq(cohort_put(tbl, "other", 5, T0, &h, 1), 0);
	cr_assert_eq(cohort_filter_keys(flt, cohort_filter_cmp(flt, S_Y, COHORT_EQ,
			cohort_i32(7)), T0, copy_key_cb, &k, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(k.n, 1);
	cr_assert_eq(k.len[0], COHORT_MAX_KEY);
	cr_assert_eq(memcmp(k.bytes[0], long_key, COHORT_MAX_KEY), 0);
	cr_assert_eq(cohort_delete(tbl, "other", 5), 0);
	memset(&k, 0, sizeof k);
	cr_assert_eq(cohort_filter_keys(flt, cohort_filter_cmp(flt, S_Y, COHORT_EQ,
			cohort_i32(8)), T0, copy_key_cb, &k, NULL), 0);
	cr_assert_eq(k.n, 1);
	cr_assert_eq(k.len[0], 4);
	cr_assert_eq(memcmp(k.bytes[0], nul_key, 4), 0);
}

/* ---- errors ----------------------------------------------------------- */

Test(filter, lt_on_cat_is_eop, .init = small_setup, .fini = teardown)
{
	static const cohort_cmp order[4] = { COHORT_LT, COHORT_LE, COHORT_GT,
					     COHORT_GE };

	for (int k = 0; k < 4; k++)
		cr_assert_eq(cohort_filter_cmp(flt, S_CAT, order[k],
					       cohort_cat("a")), COHORT_EOP);
	cr_assert(cohort_errdetail()[0] != '\0');
}

Test(filter, any_cmp_on_vec_is_eop, .init = small_setup, .fini = teardown)
{
	static const float v[2] = { 1, 2 };

	for (int k = 0; k < 6; k++)
		cr_assert_eq(cohort_filter_cmp(flt, S_VEC, all_cmps[k],
					       cohort_vec(v, 2)), COHORT_EOP,
			     "op %d", all_cmps[k]);
	cr_assert_eq(cohort_filter_cmp(flt, S_VEC, COHORT_EQ, cohort_f64(1)),
		     COHORT_EOP);
}

Test(filter, lt_on_bool_is_eop, .init = small_setup, .fini = teardown)
{
	cr_assert_eq(cohort_filter_cmp(flt, S_BOOL, COHORT_LT, cohort_bool(true)),
		     COHORT_EOP);
	cr_assert_eq(cohort_filter_cmp(flt, S_BOOL, COHORT_GE, cohort_bool(true)),
		     COHORT_EOP);
}

Test(filter, in_on_a_non_cat_column_is_eop, .init = small_setup,
     .fini = teardown)
{
	cohort_value set[1] = { cohort_cat("a") };

	cr_assert_eq(cohort_filter_in(flt, S_I32, set, 1), COHORT_EOP);
}

Test(filter, unknown_column_is_enocolumn, .init = small_setup,
     .fini = teardown)
{
	cr_assert_eq(cohort_filter_cmp(flt, 99, COHORT_EQ, cohort_f64(1)),
		     COHORT_ENOCOLUMN);
	cr_assert_eq(cohort_filter_is_null(flt, -1), COHORT_ENOCOLUMN);
	cr_assert_eq(cohort_filter_not_null(flt, NSMALL), COHORT_ENOCOLUMN);
}

Test(filter, value_of_the_wrong_kind_is_etype, .init = small_setup,
     .fini = teardown)
{
	cohort_value set[2] = { cohort_cat("a"), cohort_i32(1) };

	cr_assert_eq(cohort_filter_cmp(flt, S_I32, COHORT_EQ, cohort_cat("1")),
		     COHORT_ETYPE);
	cr_assert_eq(cohort_filter_cmp(flt, S_F64, COHORT_LT, cohort_bool(true)),
		     COHORT_ETYPE);
	cr_assert_eq(cohort_filter_cmp(flt, S_BOOL, COHORT_EQ, cohort_i32(1)),
		     COHORT_ETYPE);
	cr_assert_eq(cohort_filter_cmp(flt, S_CAT, COHORT_EQ, cohort_i32(1)),
		     COHORT_ETYPE);
	cr_assert_eq(cohort_filter_in(flt, S_CAT, set, 2), COHORT_ETYPE);
}

Test(filter, nan_constant_is_enan, .init = small_setup, .fini = teardown)
{
	cr_assert_eq(cohort_filter_cmp(flt, S_F64, COHORT_LT, cohort_f64(NAN)),
		     COHORT_ENAN);
	cr_assert_eq(cohort_filter_cmp(flt, S_F32, COHORT_EQ, cohort_f32(NAN)),
		     COHORT_ENAN);
}

Test(filter, errors_propagate_through_and_or_not, .init = small_setup,
     .fini = teardown)
{
	int ok = cohort_filter_is_null(flt, S_X);
	int bad = cohort_filter_cmp(flt, S_CAT, COHORT_LT, cohort_cat("a"));
	int nested;

	cr_assert_geq(ok, 0);
	cr_assert_eq(bad, COHORT_EOP);
	cr_assert_eq(cohort_filter_and(flt, bad, ok), COHORT_EOP);
	cr_assert_eq(cohort_filter_and(flt, ok, bad), COHORT_EOP);
	cr_assert_eq(cohort_filter_or(flt, bad, ok), COHORT_EOP);
	cr_assert_eq(cohort_filter_or(flt, ok, COHORT_ENOCOLUMN),
		     COHORT_ENOCOLUMN);
	cr_assert_eq(cohort_filter_not(flt, bad), COHORT_EOP);
	nested = cohort_filter_not(flt, cohort_filter_and(flt,
			cohort_filter_or(flt, ok,
				cohort_filter_cmp(flt, 99, COHORT_EQ,
						  cohort_f64(1))),
			ok));
	cr_assert_eq(nested, COHORT_ENOCOLUMN);
}

Test(filter, count_of_an_error_root_fails, .init = small_setup,
     .fini = teardown)
{
	uint64_t n = 0;
	cohort_bitmap *bm = NULL;

	cr_assert_lt(cohort_filter_count(flt, COHORT_EOP, T0, &n), 0);
	cr_assert_lt(cohort_filter_count(flt, 12345, T0, &n), 0);
	cr_assert_lt(cohort_filter_eval(flt, 12345, T0, &bm), 0);
}
