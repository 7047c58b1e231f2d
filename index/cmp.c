/*
 * cmp.c -- dispatch of the comparison kernels (cmp_kern.c, compiled once per
 * SIMD target).
 */
#include "cmp.h"

extern const cmp_kernels cmp_kernels_scalar;
extern const cmp_kernels cmp_kernels_sse4;
extern const cmp_kernels cmp_kernels_avx2;
extern const cmp_kernels cmp_kernels_avx512;

const cmp_kernels *cmp_for_level(simd_level level)
{
	switch (level) {
	case SIMD_SCALAR: return &cmp_kernels_scalar;
	case SIMD_SSE4: return &cmp_kernels_sse4;
	case SIMD_AVX2: return &cmp_kernels_avx2;
	case SIMD_AVX512: return &cmp_kernels_avx512;
	default: return NULL;
	}
}

const cmp_kernels *cmp_get(void)
{
	return cmp_for_level(simd_level_get());
}
