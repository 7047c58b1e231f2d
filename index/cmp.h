/*
 * cmp.h -- comparison kernels: one column chunk against a constant, into a
 * bitmap.
 *
 * Each kernel reads n values (n a multiple of 64) and writes n/64 words to
 * out: bit i of word i/64 is set when x[i] <op> c (and the mask bit is). The u8 and u32 kernels
 * (bool and dictionary codes) take CMP_EQ and CMP_NE only. Inputs hold no
 * NaN (the store refuses it), so NE is the complement of EQ, LE of GT and GE
 * of LT. The table of kernels for the SIMD path in use comes from cmp_get().
 */
#ifndef COHORT_CMP_H
#define COHORT_CMP_H

#include <stddef.h>
#include <stdint.h>

#include "simd.h"

enum { CMP_EQ = 1, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE };

typedef struct cmp_kernels {
	/* out[w] = (bits of x[64w .. 64w+63] <op> c) & mask[w]; mask may be
	 * NULL (all ones) and may be the same array as out. */
	void (*f32)(const float *x, size_t n, int op, float c,
		    const uint64_t *mask, uint64_t *out);
	void (*f64)(const double *x, size_t n, int op, double c,
		    const uint64_t *mask, uint64_t *out);
	void (*i32)(const int32_t *x, size_t n, int op, int32_t c,
		    const uint64_t *mask, uint64_t *out);
	void (*i64)(const int64_t *x, size_t n, int op, int64_t c,
		    const uint64_t *mask, uint64_t *out);
	void (*u8)(const uint8_t *x, size_t n, int op, uint8_t c,
		   const uint64_t *mask, uint64_t *out);
	void (*u32)(const uint32_t *x, size_t n, int op, uint32_t c,
		    const uint64_t *mask, uint64_t *out);
	/* t[i] &= mask[i] for nwords words; returns the bits left set. */
	uint64_t (*mask_count)(uint64_t *t, const uint64_t *mask, size_t nwords);
} cmp_kernels;

/* The kernels of the path in use (simd_level_get()). */
const cmp_kernels *cmp_get(void);
/* The kernels of one path; NULL if not compiled in. */
const cmp_kernels *cmp_for_level(simd_level level);

#endif
