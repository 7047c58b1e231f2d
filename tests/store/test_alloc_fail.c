/*
 * Fault injection: fail the Nth allocation for every N a workload makes.
 * Each failure must come back as COHORT_ENOMEM and leave the table
 * consistent: what was acknowledged is there, what failed is absent.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "store_int.h"

#define NKEYS 5000

static int workload(cohort_table *t, bool *acked, int *enomem)
{
	char key[32];
	for (int i = 0; i < NKEYS; i++) {
		int n = snprintf(key, sizeof(key), "c%d", i);
		float v[3] = { (float)i, 1, 2 };
		cohort_field f[] = { { 0, cohort_i32(i) },
				     { 1, cohort_cat(i % 2 ? "odd" : "even") },
				     { 2, cohort_vec(v, 3) } };
		int rc = cohort_put(t, key, (size_t)n, 100, f, 3);
		if (rc == COHORT_ENOMEM)
			(*enomem)++;
		else if (rc != 0)
			return rc;
		acked[i] = rc == 0;
	}
	cohort_column_def extra = { "extra", COHORT_COUNTER, 0, 0 };
	int rc = cohort_table_add_column(t, &extra, NULL);
	if (rc == COHORT_ENOMEM)
		(*enomem)++;
	else if (rc)
		return rc;
	cohort_filter *f = NULL;
	rc = cohort_filter_new(t, &f);
	if (rc == 0) {
		int root = cohort_filter_cmp(f, 1, COHORT_EQ, cohort_cat("odd"));
		cohort_bitmap *bm = NULL;
		rc = root < 0 ? root : cohort_filter_eval(f, root, 100, &bm);
		cohort_bitmap_free(bm);
		cohort_filter_free(f);
	}
	if (rc == COHORT_ENOMEM)
		(*enomem)++;
	else if (rc)
		return rc;
	return 0;
}

Test(alloc_fail, every_failure_is_enomem_and_consistent)
{
	static bool acked[NKEYS];
	for (long fail_at = 0;; fail_at += fail_at < 200 ? 1 : 37) {
		cohort_db *db;
		cohort_table *t;
		cr_assert_eq(cohort_open(NULL, NULL, &db), 0);
		cohort_column_def cols[] = { { "n", COHORT_I32, 0, 0 },
					     { "parity", COHORT_CAT, 0, 0 },
					     { "v", COHORT_VEC, 3, 0 } };
		cr_assert_eq(cohort_table_create(db, "t", cols, 3, NULL, &t), 0);
		memset(acked, 0, sizeof(acked));
		int enomem = 0;
		alloc_fail_after(fail_at);
		int rc = workload(t, acked, &enomem);
		alloc_fail_after(-1);
		cr_assert_eq(rc, 0, "fail_at %ld: %s (%s)", fail_at,
			     cohort_strerror(rc), cohort_errdetail());
		/* what was acknowledged is there, the rest is absent */
		uint64_t nacked = 0;
		for (int i = 0; i < NKEYS; i++) {
			char key[32];
			int n = snprintf(key, sizeof(key), "c%d", i);
			int col = 0;
			cohort_value v;
			int st = cohort_get(t, key, (size_t)n, &col, 1, 100, &v,
					    NULL, 0, NULL);
			cr_assert_eq(st, acked[i] ? COHORT_ROW_PRESENT :
						    COHORT_ROW_MISSING,
				     "fail_at %ld key %d", fail_at, i);
			if (acked[i]) {
				cr_assert_eq(v.v.i32, i);
				nacked++;
			}
		}
		cohort_table_info info;
		cohort_table_describe(t, &info);
		cr_assert_eq(info.nrows, nacked, "fail_at %ld", fail_at);
		/* and the table still takes writes */
		cohort_field f = { 0, cohort_i32(7) };
		cr_assert_eq(cohort_put(t, "after", 5, 100, &f, 1), 0);
		cohort_close(db);
		if (enomem == 0)
			break;
		cr_assert_lt(fail_at, 100000, "injection never stops failing");
	}
}
