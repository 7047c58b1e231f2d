/*
 * simd.h -- run-time choice of the SIMD path.
 *
 * Kernel families are compiled once per target (scalar, sse4, avx2, avx512)
 * from one simde source each; simd_level() picks the path once, from cpuid,
 * unless the environment variable COHORT_SIMD=scalar|sse4|avx2|avx512 forces
 * one (a forced level the CPU lacks is lowered to the best it has, with a
 * warning on stderr). Thread-safe; the first call decides.
 */
#ifndef COHORT_SIMD_H
#define COHORT_SIMD_H

typedef enum simd_level {
	SIMD_SCALAR = 0,
	SIMD_SSE4,
	SIMD_AVX2,
	SIMD_AVX512,
	SIMD_NLEVELS
} simd_level;

/* The path in use. */
simd_level simd_level_get(void);
/* The best path this CPU supports. */
simd_level simd_level_best(void);
/* "scalar", "sse4", "avx2", "avx512". */
const char *simd_level_name(simd_level level);
/* Force a path for the rest of the process (tests, benchmarks); lowered to
 * the best supported. Returns the level now in use. */
simd_level simd_level_set(simd_level level);

#endif
