/*
 * White-box tests of the key map: growth, removal by backward shift, and
 * the spread of the hash over stripes.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "store_int.h"

static cohort_db *db;
static cohort_table *t;

static void setup(void)
{
	cr_assert_eq(cohort_open(NULL, NULL, &db), 0);
	cohort_column_def c = { "x", COHORT_I64, 0, 0 };
	cr_assert_eq(cohort_table_create(db, "k", &c, 1, NULL, &t), 0);
}

static void teardown(void)
{
	cohort_close(db);
}

static int put(uint64_t i)
{
	char key[32];
	int n = snprintf(key, sizeof(key), "key-%llu", (unsigned long long)i);
	cohort_field f = { 0, cohort_i64((int64_t)i) };
	return cohort_put(t, key, (size_t)n, 1, &f, 1);
}

static int get(uint64_t i, int64_t *v)
{
	char key[32];
	int n = snprintf(key, sizeof(key), "key-%llu", (unsigned long long)i);
	int col = 0;
	cohort_value out;
	int st = cohort_get(t, key, (size_t)n, &col, 1, 1, &out, NULL, 0, NULL);
	if (st == COHORT_ROW_PRESENT)
		*v = out.v.i64;
	return st;
}

static uint64_t stripe_total(void)
{
	uint64_t n = 0;
	for (int i = 0; i < NSTRIPES; i++) {
		n += t->stripes[i].count;
		cr_assert_leq((uint64_t)t->stripes[i].count * 20,
			      (uint64_t)t->stripes[i].cap * 17,
			      "stripe %d over its load limit", i);
	}
	return n;
}

Test(keymap, grows_past_load_factor, .init = setup, .fini = teardown)
{
	const uint64_t n = 100000;
	for (uint64_t i = 0; i < n; i++)
		cr_assert_eq(put(i), 0);
	cr_assert_eq(stripe_total(), n);
	for (uint64_t i = 0; i < n; i++) {
		int64_t v = -1;
		cr_assert_eq(get(i, &v), COHORT_ROW_PRESENT, "key %llu",
			     (unsigned long long)i);
		cr_assert_eq(v, (int64_t)i);
	}
	int64_t v;
	cr_assert_eq(get(n + 5, &v), COHORT_ROW_MISSING);
}

Test(keymap, removal_keeps_other_keys_reachable, .init = setup,
     .fini = teardown)
{
	const uint64_t n = 50000;
	for (uint64_t i = 0; i < n; i++)
		cr_assert_eq(put(i), 0);
	/* remove every key whose index is divisible by 3 or 7 */
	uint64_t removed = 0;
	for (uint64_t i = 0; i < n; i++) {
		if (i % 3 == 0 || i % 7 == 0) {
			char key[32];
			int len = snprintf(key, sizeof(key), "key-%llu",
					   (unsigned long long)i);
			cr_assert_eq(cohort_delete(t, key, (size_t)len), 0);
			removed++;
		}
	}
	cr_assert_eq(stripe_total(), n - removed);
	for (uint64_t i = 0; i < n; i++) {
		int64_t v = -1;
		int want = (i % 3 == 0 || i % 7 == 0) ? COHORT_ROW_MISSING :
							COHORT_ROW_PRESENT;
		cr_assert_eq(get(i, &v), want, "key %llu", (unsigned long long)i);
		if (want == COHORT_ROW_PRESENT)
			cr_assert_eq(v, (int64_t)i);
	}
	/* the freed slots are reused: the high-water mark does not move */
	unsigned hwm = atomic_load(&t->hwm);
	for (uint64_t i = n; i < n + removed; i++)
		cr_assert_eq(put(i), 0);
	cr_assert_eq(atomic_load(&t->hwm), hwm);
	cr_assert_eq(stripe_total(), n);
}

Test(keymap, hash_spreads_keys_over_stripes)
{
	static uint32_t counts[NSTRIPES];
	const int n = 256 * 1000;
	for (int i = 0; i < n; i++) {
		char key[16];
		int len = snprintf(key, sizeof(key), "%d", i);
		counts[key_hash(key, (size_t)len) >> 56]++;
	}
	/* each stripe expects 1000; a fair hash stays well inside +-20% */
	for (int i = 0; i < NSTRIPES; i++) {
		cr_assert_gt(counts[i], 800, "stripe %d: %u", i, counts[i]);
		cr_assert_lt(counts[i], 1200, "stripe %d: %u", i, counts[i]);
	}
}

Test(keymap, hash_depends_on_every_byte)
{
	unsigned char key[255];
	for (size_t len = 1; len <= sizeof(key); len++) {
		memset(key, 'a', len);
		uint64_t h0 = key_hash(key, len);
		for (size_t i = 0; i < len; i++) {
			key[i] ^= 1;
			cr_assert_neq(key_hash(key, len), h0, "len %zu byte %zu",
				      len, i);
			key[i] ^= 1;
		}
		cr_assert_neq(key_hash(key, len), key_hash(key, len - 1));
	}
}
