/*
 * cmp_kern.c -- comparison kernels (see cmp.h), one source compiled per SIMD
 * target: KERN_SUFFIX names the target. The scalar target (KERN_SCALAR) is
 * plain C; the others are written once with simde's 512-bit intrinsics,
 * which compile to native AVX-512 with -mavx512*, to pairs of AVX2
 * operations with -mavx2 and to SSE4.1 with -msse4.1.
 */
#include "cmp.h"

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define NAME(fn) CAT(fn, KERN_SUFFIX)

#ifdef KERN_SCALAR

/* One loop per op so the comparison is fixed inside the loop. */
#define SCALAR_LOOP(T, EXPR)                                                  \
	for (size_t w = 0; w < n / 64; w++) {                                 \
		const T *p = x + w * 64;                                      \
		uint64_t bits = 0;                                            \
		for (int i = 0; i < 64; i++)                                  \
			bits |= (uint64_t)(EXPR) << i;                        \
		out[w] = bits & (mask ? mask[w] : ~UINT64_C(0));              \
	}

#define SCALAR_KERNEL(T, fn)                                                  \
	static void NAME(fn)(const T *x, size_t n, int op, T c,               \
			     const uint64_t *mask, uint64_t *out)             \
	{                                                                     \
		switch (op) {                                                 \
		case CMP_EQ: SCALAR_LOOP(T, p[i] == c) break;                 \
		case CMP_NE: SCALAR_LOOP(T, p[i] != c) break;                 \
		case CMP_LT: SCALAR_LOOP(T, p[i] < c) break;                  \
		case CMP_LE: SCALAR_LOOP(T, p[i] <= c) break;                 \
		case CMP_GT: SCALAR_LOOP(T, p[i] > c) break;                  \
		default: SCALAR_LOOP(T, p[i] >= c) break;                     \
		}                                                             \
	}

SCALAR_KERNEL(float, cmp_f32)
SCALAR_KERNEL(double, cmp_f64)
SCALAR_KERNEL(int32_t, cmp_i32)
SCALAR_KERNEL(int64_t, cmp_i64)
SCALAR_KERNEL(uint8_t, cmp_u8)
SCALAR_KERNEL(uint32_t, cmp_u32)

#else /* SIMD targets */

#include <simde/x86/avx512.h>

/*
 * LANES values per vector, 64/LANES vectors per output word. MASK(v) gives
 * the lane mask of one vector for the op at hand; ops without a direct
 * compare are complements (no NaN in the data).
 */
#define SIMD_LOOP(T, LANES, LOAD, MASK, INVERT)                              \
	for (size_t w = 0; w < n / 64; w++) {                                 \
		const T *p = x + w * 64;                                      \
		uint64_t bits = 0;                                            \
		_Pragma("GCC unroll 8")                                       \
		for (int j = 0; j < 64 / (LANES); j++) {                      \
			uint64_t m = (uint64_t)(MASK(LOAD(p + j * (LANES)))); \
			bits |= m << (j * (LANES));                           \
		}                                                             \
		bits = (INVERT) ? ~bits : bits;                               \
		out[w] = bits & (mask ? mask[w] : ~UINT64_C(0));              \
	}

/* f32 */
#define LD_F32(ptr) simde_mm512_loadu_ps(ptr)
#define EQ_F32(v) simde_mm512_cmp_ps_mask(v, cv, SIMDE_CMP_EQ_OQ)
#define LT_F32(v) simde_mm512_cmp_ps_mask(v, cv, SIMDE_CMP_LT_OQ)
#define GT_F32(v) simde_mm512_cmp_ps_mask(v, cv, SIMDE_CMP_GT_OQ)
static void NAME(cmp_f32)(const float *x, size_t n, int op, float c,
			  const uint64_t *mask, uint64_t *out)
{
	simde__m512 cv = simde_mm512_set1_ps(c);
	switch (op) {
	case CMP_EQ: SIMD_LOOP(float, 16, LD_F32, EQ_F32, 0) break;
	case CMP_NE: SIMD_LOOP(float, 16, LD_F32, EQ_F32, 1) break;
	case CMP_LT: SIMD_LOOP(float, 16, LD_F32, LT_F32, 0) break;
	case CMP_GE: SIMD_LOOP(float, 16, LD_F32, LT_F32, 1) break;
	case CMP_GT: SIMD_LOOP(float, 16, LD_F32, GT_F32, 0) break;
	default: SIMD_LOOP(float, 16, LD_F32, GT_F32, 1) break;
	}
}

/* f64 */
#define LD_F64(ptr) simde_mm512_loadu_pd(ptr)
#define EQ_F64(v) simde_mm512_cmp_pd_mask(v, cv, SIMDE_CMP_EQ_OQ)
#define LT_F64(v) simde_mm512_cmp_pd_mask(v, cv, SIMDE_CMP_LT_OQ)
#define GT_F64(v) simde_mm512_cmp_pd_mask(v, cv, SIMDE_CMP_GT_OQ)
static void NAME(cmp_f64)(const double *x, size_t n, int op, double c,
			  const uint64_t *mask, uint64_t *out)
{
	simde__m512d cv = simde_mm512_set1_pd(c);
	switch (op) {
	case CMP_EQ: SIMD_LOOP(double, 8, LD_F64, EQ_F64, 0) break;
	case CMP_NE: SIMD_LOOP(double, 8, LD_F64, EQ_F64, 1) break;
	case CMP_LT: SIMD_LOOP(double, 8, LD_F64, LT_F64, 0) break;
	case CMP_GE: SIMD_LOOP(double, 8, LD_F64, LT_F64, 1) break;
	case CMP_GT: SIMD_LOOP(double, 8, LD_F64, GT_F64, 0) break;
	default: SIMD_LOOP(double, 8, LD_F64, GT_F64, 1) break;
	}
}

/* integers */
#define LD_I(ptr) simde_mm512_loadu_si512((const void *)(ptr))
#define EQ_I32(v) simde_mm512_cmpeq_epi32_mask(v, cv)
#define LT_I32(v) simde_mm512_cmpgt_epi32_mask(cv, v)
#define GT_I32(v) simde_mm512_cmpgt_epi32_mask(v, cv)
static void NAME(cmp_i32)(const int32_t *x, size_t n, int op, int32_t c,
			  const uint64_t *mask, uint64_t *out)
{
	simde__m512i cv = simde_mm512_set1_epi32(c);
	switch (op) {
	case CMP_EQ: SIMD_LOOP(int32_t, 16, LD_I, EQ_I32, 0) break;
	case CMP_NE: SIMD_LOOP(int32_t, 16, LD_I, EQ_I32, 1) break;
	case CMP_LT: SIMD_LOOP(int32_t, 16, LD_I, LT_I32, 0) break;
	case CMP_GE: SIMD_LOOP(int32_t, 16, LD_I, LT_I32, 1) break;
	case CMP_GT: SIMD_LOOP(int32_t, 16, LD_I, GT_I32, 0) break;
	default: SIMD_LOOP(int32_t, 16, LD_I, GT_I32, 1) break;
	}
}

#define EQ_I64(v) simde_mm512_cmpeq_epi64_mask(v, cv)
#define LT_I64(v) simde_mm512_cmpgt_epi64_mask(cv, v)
#define GT_I64(v) simde_mm512_cmpgt_epi64_mask(v, cv)
static void NAME(cmp_i64)(const int64_t *x, size_t n, int op, int64_t c,
			  const uint64_t *mask, uint64_t *out)
{
	simde__m512i cv = simde_mm512_set1_epi64(c);
	switch (op) {
	case CMP_EQ: SIMD_LOOP(int64_t, 8, LD_I, EQ_I64, 0) break;
	case CMP_NE: SIMD_LOOP(int64_t, 8, LD_I, EQ_I64, 1) break;
	case CMP_LT: SIMD_LOOP(int64_t, 8, LD_I, LT_I64, 0) break;
	case CMP_GE: SIMD_LOOP(int64_t, 8, LD_I, LT_I64, 1) break;
	case CMP_GT: SIMD_LOOP(int64_t, 8, LD_I, GT_I64, 0) break;
	default: SIMD_LOOP(int64_t, 8, LD_I, GT_I64, 1) break;
	}
}

#define EQ_U8(v) simde_mm512_cmpeq_epi8_mask(v, cv)
static void NAME(cmp_u8)(const uint8_t *x, size_t n, int op, uint8_t c,
			 const uint64_t *mask, uint64_t *out)
{
	simde__m512i cv = simde_mm512_set1_epi8((int8_t)c);
	if (op == CMP_NE)
		SIMD_LOOP(uint8_t, 64, LD_I, EQ_U8, 1)
	else
		SIMD_LOOP(uint8_t, 64, LD_I, EQ_U8, 0)
}

static void NAME(cmp_u32)(const uint32_t *x, size_t n, int op, uint32_t c,
			  const uint64_t *mask, uint64_t *out)
{
	simde__m512i cv = simde_mm512_set1_epi32((int32_t)c);
	if (op == CMP_NE)
		SIMD_LOOP(uint32_t, 16, LD_I, EQ_I32, 1)
	else
		SIMD_LOOP(uint32_t, 16, LD_I, EQ_I32, 0)
}

#endif

/* Plain C: the compiler vectorises the AND, and the avx2/avx512 targets are
 * built with -mpopcnt so the count is one instruction a word. */
static uint64_t NAME(mask_count)(uint64_t *t, const uint64_t *mask,
				 size_t nwords)
{
	uint64_t n = 0;
	for (size_t i = 0; i < nwords; i++) {
		t[i] &= mask[i];
		n += (uint64_t)__builtin_popcountll(t[i]);
	}
	return n;
}

const cmp_kernels CAT(cmp_kernels, KERN_SUFFIX) = {
	NAME(cmp_f32), NAME(cmp_f64), NAME(cmp_i32),
	NAME(cmp_i64), NAME(cmp_u8), NAME(cmp_u32),
	NAME(mask_count),
};
