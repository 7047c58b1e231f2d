/*
 * test_table.c -- databases, tables and columns: open/close, create with
 * every column type, describe, open by name, add a column to a live table,
 * and the table list.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "cohort.h"
#include "tmpdir.h"

#define T0 1700000000000LL

static cohort_db *db;

static void setup(void)
{
	cr_assert_eq(cohort_open(NULL, NULL, &db), 0);
	cr_assert_not_null(db);
}

static void teardown(void)
{
	cohort_close(db);
	db = NULL;
}

TestSuite(db, .init = setup, .fini = teardown);
TestSuite(table, .init = setup, .fini = teardown);
TestSuite(column, .init = setup, .fini = teardown);

/* One column of every type, in type order. */
static const cohort_column_def every_type[] = {
	{ "f32", COHORT_F32, 0, 0 },
	{ "f64", COHORT_F64, 0, 0 },
	{ "i32", COHORT_I32, 0, 0 },
	{ "i64", COHORT_I64, 0, 0 },
	{ "flag", COHORT_BOOL, 0, 0 },
	{ "city", COHORT_CAT, 0, 0 },
	{ "emb", COHORT_VEC, 17, 0 },
	{ "clicks", COHORT_COUNTER, 0, 0 },
	{ "heat", COHORT_DECAY, 0, 3600000 },
	{ "lo", COHORT_MIN, 0, 0 },
	{ "hi", COHORT_MAX, 0, 0 },
	{ "latest", COHORT_LAST, 0, 0 },
};
#define NEVERY (sizeof every_type / sizeof every_type[0])

static uint64_t table_nrows(const cohort_table *t)
{
	cohort_table_info info;

	cr_assert_eq(cohort_table_describe(t, &info), 0);
	return info.nrows;
}

/* ---- database ---------------------------------------------------------- */

Test(db, opens_and_closes_in_memory)
{
	cohort_db *d = NULL;

	cr_assert_eq(cohort_open(NULL, NULL, &d), 0);
	cr_assert_not_null(d);
	cr_assert_eq(cohort_db_ntables(d), 0);
	cr_assert_eq(cohort_close(d), 0);
}

Test(db, close_null_is_a_noop)
{
	cr_assert_eq(cohort_close(NULL), 0);
}

Test(db, directory_is_locked_against_a_second_open, .fini = tmpdir_remove)
{
	char dir[64];
	tmpdir_make(dir, sizeof(dir), "lock");
	cohort_db *d = NULL, *d2 = NULL;
	cr_assert_eq(cohort_open(dir, NULL, &d), 0, "%s", cohort_errdetail());
	cr_assert_eq(cohort_open(dir, NULL, &d2), COHORT_EBUSY);
	cr_assert_null(d2);
	cr_assert(strstr(cohort_errdetail(), dir) != NULL);
	cr_assert_eq(cohort_close(d), 0);
	cr_assert_eq(cohort_open(dir, NULL, &d2), 0);
	cr_assert_eq(cohort_close(d2), 0);
}

Test(db, options_init_fills_defaults)
{
	cohort_options o;

	memset(&o, 0xff, sizeof o);
	cohort_options_init(&o);
	cr_assert_eq(o.fsync, COHORT_FSYNC_INTERVAL);
	cr_assert_eq(o.fsync_interval_ms, 10);
}

Test(db, opens_in_memory_with_options)
{
	cohort_options o;
	cohort_db *d = NULL;

	cohort_options_init(&o);
	o.fsync = COHORT_FSYNC_NONE;
	cr_assert_eq(cohort_open(NULL, &o, &d), 0);
	cr_assert_not_null(d);
	cr_assert_eq(cohort_close(d), 0);
}

Test(db, close_frees_tables_with_rows)
{
	cohort_db *d = NULL;
	cohort_table *t = NULL;
	cohort_field f = { 1, cohort_f64(1) };
	char key[16];

	/* under ASan this is the leak check for a populated database */
	cr_assert_eq(cohort_open(NULL, NULL, &d), 0);
	cr_assert_eq(cohort_table_create(d, "t", every_type, NEVERY, NULL, &t), 0);
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(cohort_put(t, key, strlen(key), T0, &f, 1), 0);
	}
	cr_assert_eq(cohort_close(d), 0);
}

Test(db, databases_are_independent)
{
	cohort_db *d2 = NULL;
	cohort_table *t1 = NULL, *t2 = NULL;
	static const cohort_column_def c = { "x", COHORT_I64, 0, 0 };
	cohort_field f = { 0, cohort_i64(1) };

	cr_assert_eq(cohort_open(NULL, NULL, &d2), 0);
	cr_assert_eq(cohort_table_create(db, "same", &c, 1, NULL, &t1), 0);
	cr_assert_eq(cohort_table_create(d2, "same", &c, 1, NULL, &t2), 0);
	cr_assert_eq(cohort_put(t1, "k", 1, T0, &f, 1), 0);
	cr_assert_eq(table_nrows(t1), 1);
	cr_assert_eq(table_nrows(t2), 0);
	cr_assert_eq(cohort_close(d2), 0);
}

/* ---- tables ------------------------------------------------------------ */

Test(table, creates_every_column_type)
{
	cohort_table *t = NULL;
	cohort_table_info info;

	cr_assert_eq(cohort_table_create(db, "users", every_type, NEVERY, NULL,
					 &t), 0);
	cr_assert_not_null(t);
	cr_assert_eq(cohort_table_describe(t, &info), 0);
	cr_assert_eq(info.ncolumns, NEVERY);
}

Test(table, describe_reports_name_columns_rows_and_ttl)
{
	cohort_table *t = NULL;
	cohort_table_options o = { .ttl_ms = 86400000 };
	cohort_table_info info;
	cohort_field f = { 2, cohort_i32(5) };

	cr_assert_eq(cohort_table_create(db, "users", every_type, NEVERY, &o, &t),
		     0);
	cr_assert_eq(cohort_put(t, "a", 1, T0, &f, 1), 0);
	cr_assert_eq(cohort_put(t, "b", 1, T0, &f, 1), 0);
	cr_assert_eq(cohort_put(t, "a", 1, T0, &f, 1), 0);
	memset(&info, 0, sizeof info);
	cr_assert_eq(cohort_table_describe(t, &info), 0);
	cr_assert_str_eq(info.name, "users");
	cr_assert_eq(info.ncolumns, NEVERY);
	cr_assert_eq(info.nrows, 2);
	cr_assert_eq(info.ttl_ms, 86400000);
	cr_assert_gt(info.mem_bytes, 0);
}

Test(table, ttl_defaults_to_zero)
{
	cohort_table *t = NULL;
	cohort_table_info info;

	cr_assert_eq(cohort_table_create(db, "t", every_type, 1, NULL, &t), 0);
	cr_assert_eq(cohort_table_describe(t, &info), 0);
	cr_assert_eq(info.ttl_ms, 0);
	cr_assert_eq(info.nrows, 0);
}

Test(table, mem_bytes_grows_with_rows)
{
	cohort_table *t = NULL;
	cohort_table_info before, after;
	cohort_field f = { 1, cohort_f64(2) };
	char key[32];

	cr_assert_eq(cohort_table_create(db, "t", every_type, NEVERY, NULL, &t),
		     0);
	cr_assert_eq(cohort_table_describe(t, &before), 0);
	for (int i = 0; i < 20000; i++) {
		snprintf(key, sizeof key, "key-%d", i);
		cr_assert_eq(cohort_put(t, key, strlen(key), T0, &f, 1), 0);
	}
	cr_assert_eq(cohort_table_describe(t, &after), 0);
	/* 20000 rows of 12 columns, one a 17-float vector: at least 20000 *
	 * (17 * 4) bytes */
	cr_assert_gt(after.mem_bytes, before.mem_bytes + 20000ull * 68,
		     "mem_bytes %llu -> %llu",
		     (unsigned long long)before.mem_bytes,
		     (unsigned long long)after.mem_bytes);
}

Test(table, describes_every_column)
{
	cohort_table *t = NULL;
	cohort_column_info ci;

	cr_assert_eq(cohort_table_create(db, "users", every_type, NEVERY, NULL,
					 &t), 0);
	for (size_t i = 0; i < NEVERY; i++) {
		memset(&ci, 0, sizeof ci);
		cr_assert_eq(cohort_column_describe(t, (int)i, &ci), 0);
		cr_assert_str_eq(ci.name, every_type[i].name);
		cr_assert_eq(ci.type, every_type[i].type, "column %zu", i);
		/* a vec column reports its dim; the def of any other says 0
		 * and a block says 1: either reading is fine */
		if (every_type[i].type == COHORT_VEC)
			cr_assert_eq(ci.dim, every_type[i].dim);
		else
			cr_assert_leq(ci.dim, 1, "column %zu dim %u", i, ci.dim);
		cr_assert_eq(ci.half_life_ms, every_type[i].half_life_ms,
			     "column %zu", i);
		cr_assert_eq(ci.ncat, 0, "column %zu", i);
	}
}

Test(table, column_ids_follow_creation_order)
{
	cohort_table *t = NULL;

	cr_assert_eq(cohort_table_create(db, "users", every_type, NEVERY, NULL,
					 &t), 0);
	for (size_t i = 0; i < NEVERY; i++)
		cr_assert_eq(cohort_table_column(t, every_type[i].name), (int)i);
	cr_assert_eq(cohort_table_column(t, "F32"), COHORT_ENOCOLUMN);
}

Test(table, open_by_name_finds_the_table)
{
	cohort_table *t = NULL, *again = NULL;
	cohort_field f = { 3, cohort_i64(123456789012LL) };
	int col = 3;
	cohort_value out;

	cr_assert_eq(cohort_table_create(db, "users", every_type, NEVERY, NULL,
					 &t), 0);
	cr_assert_eq(cohort_table_create(db, "other", every_type, 2, NULL, NULL),
		     0);
	cr_assert_eq(cohort_put(t, "k", 1, T0, &f, 1), 0);
	cr_assert_eq(cohort_table_open(db, "users", &again), 0);
	cr_assert_not_null(again);
	cr_assert_eq(cohort_get(again, "k", 1, &col, 1, T0, &out, NULL, 0, NULL),
		     COHORT_ROW_PRESENT);
	cr_assert_eq(out.v.i64, 123456789012LL);
}

Test(table, open_missing_name_is_enotable)
{
	cohort_table *t = NULL;

	cr_assert_eq(cohort_table_create(db, "users", every_type, 1, NULL, NULL),
		     0);
	cr_assert_eq(cohort_table_open(db, "Users", &t), COHORT_ENOTABLE);
	cr_assert_eq(cohort_table_open(db, "user", &t), COHORT_ENOTABLE);
}

Test(table, create_existing_name_is_eexist)
{
	cohort_table *t = NULL;

	cr_assert_eq(cohort_table_create(db, "users", every_type, 2, NULL, NULL),
		     0);
	cr_assert_eq(cohort_table_create(db, "users", every_type, 3, NULL, &t),
		     COHORT_EEXIST);
	cr_assert(strstr(cohort_errdetail(), "users") != NULL,
		  "errdetail '%s'", cohort_errdetail());
	cr_assert_eq(cohort_db_ntables(db), 1);
	cr_assert_eq(cohort_table_open(db, "users", &t), 0);
	{
		cohort_table_info info;

		cr_assert_eq(cohort_table_describe(t, &info), 0);
		cr_assert_eq(info.ncolumns, 2, "the first table was replaced");
	}
}

Test(table, lists_tables_in_creation_order)
{
	static const char *names[] = { "zeta", "alpha", "mid_1", "B" };

	for (size_t i = 0; i < 4; i++)
		cr_assert_eq(cohort_table_create(db, names[i], NULL, 0, NULL,
						 NULL), 0);
	cr_assert_eq(cohort_db_ntables(db), 4);
	for (size_t i = 0; i < 4; i++) {
		const char *n = cohort_db_table_name(db, i);

		cr_assert_not_null(n);
		cr_assert_str_eq(n, names[i]);
	}
}

Test(table, create_with_no_columns_then_add)
{
	cohort_table *t = NULL;
	cohort_column_def c = { "x", COHORT_F64, 0, 0 };
	int id = -100;
	cohort_field f = { 0, cohort_f64(2.5) };
	cohort_value out;

	cr_assert_eq(cohort_table_create(db, "empty", NULL, 0, NULL, &t), 0);
	cr_assert_eq(cohort_table_add_column(t, &c, &id), 0);
	cr_assert_eq(id, 0);
	cr_assert_eq(cohort_put(t, "k", 1, T0, &f, 1), 0);
	cr_assert_eq(cohort_get(t, "k", 1, &id, 1, T0, &out, NULL, 0, NULL),
		     COHORT_ROW_PRESENT);
	cr_assert_eq(out.v.f64, 2.5);
}

Test(table, add_column_gets_next_id)
{
	cohort_table *t = NULL;
	cohort_column_def c = { "added", COHORT_VEC, 5, 0 };
	cohort_column_info ci;
	int id = -100;

	cr_assert_eq(cohort_table_create(db, "users", every_type, NEVERY, NULL,
					 &t), 0);
	cr_assert_eq(cohort_table_add_column(t, &c, &id), 0);
	cr_assert_eq(id, (int)NEVERY);
	cr_assert_eq(cohort_table_column(t, "added"), (int)NEVERY);
	cr_assert_eq(cohort_column_describe(t, id, &ci), 0);
	cr_assert_str_eq(ci.name, "added");
	cr_assert_eq(ci.type, COHORT_VEC);
	cr_assert_eq(ci.dim, 5);
}

Test(table, add_column_to_live_table_reads_null_for_existing_rows)
{
	cohort_table *t = NULL;
	cohort_column_def c = { "late", COHORT_I32, 0, 0 };
	cohort_field f[2] = { { 1, cohort_f64(0) }, { 2, cohort_i32(0) } };
	char key[32];
	int id = -1;

	cr_assert_eq(cohort_table_create(db, "users", every_type, NEVERY, NULL,
					 &t), 0);
	/* enough rows to span several chunks */
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof key, "u%d", i);
		f[0].value = cohort_f64(i);
		f[1].value = cohort_i32(i);
		cr_assert_eq(cohort_put(t, key, strlen(key), T0, f, 2), 0);
	}
	cr_assert_eq(cohort_table_add_column(t, &c, &id), 0);
	for (int i = 0; i < 5000; i++) {
		int cols[3] = { 1, 2, id };
		cohort_value out[3];

		snprintf(key, sizeof key, "u%d", i);
		cr_assert_eq(cohort_get(t, key, strlen(key), cols, 3, T0, out,
					NULL, 0, NULL), COHORT_ROW_PRESENT);
		cr_assert_eq(out[0].v.f64, (double)i);
		cr_assert_eq(out[1].v.i32, i);
		cr_assert_eq(out[2].type, COHORT_NULL, "row %d", i);
	}
}

Test(table, add_column_to_live_table_accepts_new_writes)
{
	cohort_table *t = NULL;
	cohort_column_def c = { "late", COHORT_COUNTER, 0, 0 };
	cohort_field f = { 2, cohort_i32(7) };
	char key[32];
	int id = -1;

	cr_assert_eq(cohort_table_create(db, "users", every_type, NEVERY, NULL,
					 &t), 0);
	for (int i = 0; i < 3000; i++) {
		snprintf(key, sizeof key, "u%d", i);
		cr_assert_eq(cohort_put(t, key, strlen(key), T0, &f, 1), 0);
	}
	cr_assert_eq(cohort_table_add_column(t, &c, &id), 0);
	for (int i = 0; i < 3000; i += 3) {
		cohort_update u = { id, COHORT_OP_ADD, cohort_i32(i) };

		snprintf(key, sizeof key, "u%d", i);
		cr_assert_eq(cohort_event(t, key, strlen(key), T0 + 1, &u, 1), 0);
	}
	for (int i = 0; i < 3000; i++) {
		int cols[2] = { 2, id };
		cohort_value out[2];

		snprintf(key, sizeof key, "u%d", i);
		cr_assert_eq(cohort_get(t, key, strlen(key), cols, 2, T0 + 1, out,
					NULL, 0, NULL), COHORT_ROW_PRESENT);
		cr_assert_eq(out[0].v.i32, 7);
		if (i % 3 == 0) {
			cr_assert_eq(out[1].type, COHORT_F64, "row %d", i);
			cr_assert_eq(out[1].v.f64, (double)i);
		} else {
			cr_assert_eq(out[1].type, COHORT_NULL, "row %d", i);
		}
	}
}

Test(table, add_column_grows_ncolumns)
{
	cohort_table *t = NULL;
	cohort_table_info info;
	char name[16];

	cr_assert_eq(cohort_table_create(db, "users", every_type, 2, NULL, &t), 0);
	for (int i = 0; i < 40; i++) {
		cohort_column_def c = { name, COHORT_F32, 0, 0 };

		snprintf(name, sizeof name, "extra%d", i);
		cr_assert_eq(cohort_table_add_column(t, &c, NULL), 0);
	}
	cr_assert_eq(cohort_table_describe(t, &info), 0);
	cr_assert_eq(info.ncolumns, 42);
	cr_assert_eq(cohort_table_column(t, "extra39"), 41);
}

/* ---- columns ----------------------------------------------------------- */

Test(column, type_names)
{
	static const struct { cohort_type type; const char *name; } names[] = {
		{ COHORT_F32, "f32" }, { COHORT_F64, "f64" },
		{ COHORT_I32, "i32" }, { COHORT_I64, "i64" },
		{ COHORT_BOOL, "bool" }, { COHORT_CAT, "cat" },
		{ COHORT_VEC, "vec" }, { COHORT_COUNTER, "counter" },
		{ COHORT_DECAY, "decay" }, { COHORT_MIN, "min" },
		{ COHORT_MAX, "max" }, { COHORT_LAST, "last" },
	};

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		cr_assert_str_eq(cohort_type_name(names[i].type), names[i].name);
	cr_assert_str_eq(cohort_type_name((cohort_type)99), "?");
	cr_assert_str_eq(cohort_type_name((cohort_type)-5), "?");
}

Test(column, cat_dictionary_counts_distinct_strings)
{
	cohort_table *t = NULL;
	static const char *cities[] = { "paris", "rome", "paris", "oslo", "rome",
					"paris" };
	cohort_column_info ci;
	char key[16];

	cr_assert_eq(cohort_table_create(db, "users", every_type, NEVERY, NULL,
					 &t), 0);
	for (int i = 0; i < 6; i++) {
		cohort_field f = { 5, cohort_cat(cities[i]) };

		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(cohort_put(t, key, strlen(key), T0, &f, 1), 0);
	}
	cr_assert_eq(cohort_column_describe(t, 5, &ci), 0);
	cr_assert_eq(ci.ncat, 3);
}

Test(column, cat_string_of_unknown_code_is_null)
{
	cohort_table *t = NULL;
	cohort_field f = { 5, cohort_cat("paris") };
	uint32_t len = 777;

	cr_assert_eq(cohort_table_create(db, "users", every_type, NEVERY, NULL,
					 &t), 0);
	cr_assert_eq(cohort_put(t, "k", 1, T0, &f, 1), 0);
	cr_assert_null(cohort_cat_string(t, 5, 1000000, &len));
	cr_assert_null(cohort_cat_string(t, 5, UINT32_MAX, NULL));
}

Test(column, cat_strings_keep_embedded_bytes)
{
	cohort_table *t = NULL;
	static const char raw[] = { 'a', '\0', 'b' };
	cohort_field f = { 5, cohort_catn(raw, 3) };
	int col = 5;
	cohort_value out;

	cr_assert_eq(cohort_table_create(db, "users", every_type, NEVERY, NULL,
					 &t), 0);
	cr_assert_eq(cohort_put(t, "k", 1, T0, &f, 1), 0);
	cr_assert_eq(cohort_get(t, "k", 1, &col, 1, T0, &out, NULL, 0, NULL),
		     COHORT_ROW_PRESENT);
	cr_assert_eq(out.type, COHORT_CAT);
	cr_assert_eq(out.v.str.len, 3);
	cr_assert_eq(memcmp(out.v.str.ptr, raw, 3), 0);
	cr_assert_eq(out.v.str.ptr[3], '\0', "cat string not NUL-terminated");
}
