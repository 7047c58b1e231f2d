/*
 * simd.c -- see simd.h. The level lives in one atomic int; -1 = undecided.
 */
#include "simd.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_int current = -1;

static const char *const names[SIMD_NLEVELS] = {
	"scalar", "sse4", "avx2", "avx512"
};

const char *simd_level_name(simd_level level)
{
	return (unsigned)level < SIMD_NLEVELS ? names[level] : "?";
}

simd_level simd_level_best(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") &&
	    __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512dq") &&
	    __builtin_cpu_supports("avx512vl"))
		return SIMD_AVX512;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return SIMD_AVX2;
	if (__builtin_cpu_supports("sse4.1"))
		return SIMD_SSE4;
#endif
	return SIMD_SCALAR;
}

simd_level simd_level_set(simd_level level)
{
	simd_level best = simd_level_best();
	if (level > best) {
		fprintf(stderr, "cohort: SIMD path %s not supported by this CPU, "
			"using %s\n", simd_level_name(level), simd_level_name(best));
		level = best;
	}
	atomic_store(&current, (int)level);
	return level;
}

simd_level simd_level_get(void)
{
	int l = atomic_load_explicit(&current, memory_order_acquire);
	if (l >= 0)
		return (simd_level)l;
	simd_level level = simd_level_best();
	const char *env = getenv("COHORT_SIMD");
	if (env && *env) {
		int found = 0;
		for (int i = 0; i < SIMD_NLEVELS; i++) {
			if (strcmp(env, names[i]) == 0) {
				level = (simd_level)i;
				found = 1;
			}
		}
		if (!found)
			fprintf(stderr, "cohort: COHORT_SIMD=%s unknown "
				"(scalar|sse4|avx2|avx512), using %s\n", env,
				simd_level_name(level));
		return simd_level_set(level);
	}
	atomic_store(&current, (int)level);
	return level;
}
