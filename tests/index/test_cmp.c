/*
 * Comparison kernels against a plain loop, on every SIMD path this CPU has,
 * with every operator and values chosen to hit equality often.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "cmp.h"

#define N 4096

static uint64_t rng = 0x1234567;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Expected bit for op on a < b, a == b. */
static int truth(int op, int lt, int eq)
{
	switch (op) {
	case CMP_EQ: return eq;
	case CMP_NE: return !eq;
	case CMP_LT: return lt;
	case CMP_LE: return lt || eq;
	case CMP_GT: return !lt && !eq;
	default: return !lt;
	}
}

#define CHECK_KERNEL(T, FIELD, GEN, NOPS)                                      \
	do {                                                                   \
		T *x = caligned(64, N * sizeof(T));                            \
		uint64_t out[N / 64], mask[N / 64];                            \
		for (int w = 0; w < N / 64; w++)                               \
			mask[w] = next_rand();                                 \
		for (int i = 0; i < N; i++)                                    \
			x[i] = (T)(GEN);                                       \
		for (int lv = 0; lv <= (int)simd_level_best(); lv++) {        \
			const cmp_kernels *k = cmp_for_level((simd_level)lv);  \
			for (int op = CMP_EQ; op < CMP_EQ + (NOPS); op++) {    \
				for (int trial = 0; trial < 8; trial++) {      \
					T c = x[next_rand() % N];              \
					k->FIELD(x, N, op, c,                   \
						 trial & 1 ? mask : NULL, out);            \
					for (int i = 0; i < N; i++) {          \
						int want = truth(op, x[i] < c, \
								 x[i] == c);   \
						if (trial & 1)                 \
							want &= (int)((mask[i / 64] >> (i % 64)) & 1); \
						int got = (out[i / 64] >>      \
							   (i % 64)) & 1;      \
						cr_assert_eq(got, want,        \
							     "%s op %d at %d", \
							     simd_level_name(  \
								     lv),      \
							     op, i);           \
					}                                      \
				}                                              \
			}                                                      \
		}                                                              \
		cfree(x);                                                      \
	} while (0)

Test(cmp, f32_matches_plain_loop)
{
	CHECK_KERNEL(float, f32, (int)(next_rand() % 41) * 0.25f - 5.0f, 6);
}

Test(cmp, f64_matches_plain_loop)
{
	CHECK_KERNEL(double, f64, (int)(next_rand() % 41) * 0.5 - 10.0, 6);
}

Test(cmp, i32_matches_plain_loop)
{
	CHECK_KERNEL(int32_t, i32, (int32_t)(next_rand() % 100) - 50 +
		     (next_rand() % 5 == 0 ? INT32_MIN / 2 : 0), 6);
}

Test(cmp, i64_matches_plain_loop)
{
	CHECK_KERNEL(int64_t, i64, (int64_t)(next_rand() % 100) - 50 +
		     (next_rand() % 5 == 0 ? INT64_MIN / 2 : 0), 6);
}

Test(cmp, u8_eq_ne_match_plain_loop)
{
	CHECK_KERNEL(uint8_t, u8, next_rand() % 3, 2);
}

Test(cmp, u32_eq_ne_match_plain_loop)
{
	CHECK_KERNEL(uint32_t, u32, next_rand() % 7 + 0x80000000u * (next_rand() & 1), 2);
}

Test(simd, forced_level_is_used_and_capped)
{
	simd_level best = simd_level_best();
	cr_assert_eq(simd_level_set(SIMD_SCALAR), SIMD_SCALAR);
	cr_assert_eq(simd_level_get(), SIMD_SCALAR);
	cr_assert_eq(cmp_get(), cmp_for_level(SIMD_SCALAR));
	cr_assert_eq(simd_level_set(SIMD_AVX512), best > SIMD_AVX512 ? SIMD_AVX512 : best);
	cr_assert_str_eq(simd_level_name(SIMD_AVX2), "avx2");
}

Test(cmp, mask_count_ands_and_counts)
{
	uint64_t t[37], m[37], want_t[37], want = 0;
	for (int i = 0; i < 37; i++) {
		t[i] = next_rand();
		m[i] = next_rand();
		want_t[i] = t[i] & m[i];
		want += (uint64_t)__builtin_popcountll(want_t[i]);
	}
	for (int lv = 0; lv <= (int)simd_level_best(); lv++) {
		uint64_t copy[37];
		memcpy(copy, t, sizeof(t));
		cr_assert_eq(cmp_for_level((simd_level)lv)->mask_count(copy, m, 37),
			     want, "%s", simd_level_name((simd_level)lv));
		cr_assert_arr_eq(copy, want_t, sizeof(copy));
	}
}
