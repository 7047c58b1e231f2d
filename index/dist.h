/*
 * dist.h -- distance kernels: vector against vector, one query against many
 * rows, 8-bit codes, and the tiled many-to-many kernel that assigns vectors
 * to their nearest centroids.
 *
 * Metrics, all over f32 and returned as f32:
 *   l2sq    squared Euclidean distance, sum (a_i - b_i)^2;
 *   ip      inner product, sum a_i b_i (a similarity: larger is closer);
 *   cosine  cosine distance, 1 - ip / (|a| |b|), in [0, 2]; 1 when either
 *           vector is all zeros (no direction: treated as orthogonal).
 * A dimension is any size >= 1 and vectors need no alignment: tails shorter
 * than a SIMD vector are handled in the kernels. Inputs must be finite.
 * Results are float sums in an order of the kernel's choosing, so the paths
 * differ in the last bits; each is within gamma_(dim+4) * sum |terms| of the
 * exact value (gamma_n = n u / (1 - n u), u = 2^-24), which the tests check.
 *
 * 8-bit codes are uint8 (the SQ8 codes of the ANN index: 0..255 per
 * coordinate), summed exactly in int32. A term is at most 255^2 = 65025, so
 * the sums are exact for dim <= DIST_U8_MAX_DIM (33025); past it they may
 * wrap.
 *
 * Nearest centroid. dist_pack() lays K centroids out in blocks of
 * DIST_BLOCK: block b holds centroids 16b .. 16b+15 interleaved by
 * coordinate (for each coordinate j, the 16 centroids' values), so that one
 * vector load gives coordinate j of 16 centroids; the last block is padded
 * with zero centroids whose squared norm is +inf, so they never win. The
 * assign kernel computes, for each query x, the argmin over centroids c of
 * |c|^2 - 2 x.c (the same argmin as |x - c|^2), several queries per pass
 * over a block of centroids so that each centroid load feeds several
 * multiply-adds from registers. Ties go to the lower centroid index. The
 * distance it reports, |x|^2 + min(|c|^2 - 2 x.c) clamped at 0, carries the
 * cancellation of that expanded form: its absolute error is about
 * gamma_(dim+4) (|x| + |c|)^2, not relative to the distance; a caller that
 * needs the exact distance of the winner recomputes it with l2sq.
 *
 * The table of kernels for the SIMD path in use comes from dist_get(); a
 * table is immutable, and every kernel is thread-safe (no state). Functions
 * here return 0 or a negative errno value.
 */
#ifndef COHORT_DIST_H
#define COHORT_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "simd.h"

#define DIST_BLOCK 16            /* centroids per packed block */
#define DIST_TOPM_MAX 32         /* the largest m of dist_topm */
#define DIST_U8_MAX_DIM 33025    /* INT32_MAX / 255^2: exact 8-bit sums */

/* K centroids laid out for the assign and top-m kernels (see above).
 * Read-only once packed; any number of threads may use it at once. */
typedef struct dist_packed {
	size_t k;                /* centroids */
	size_t dim;
	size_t nblocks;          /* ceil(k / DIST_BLOCK) */
	float *blocks;           /* nblocks x dim x DIST_BLOCK, 64-byte aligned:
	                            centroid c, coordinate j is at
	                            [(c / 16) * dim * 16 + j * 16 + c % 16] */
	float *norms;            /* nblocks x DIST_BLOCK: |c|^2 (rounded from
	                            double), +inf for the padding */
} dist_packed;

typedef struct dist_kernels {
	/* One pair of vectors of dim floats. */
	float (*l2sq)(const float *a, const float *b, size_t dim);
	float (*ip)(const float *a, const float *b, size_t dim);
	float (*cosine)(const float *a, const float *b, size_t dim);

	/* One query q against n rows of a row-major matrix: row r starts at
	 * base + r * stride (stride >= dim, in floats; rows need no
	 * alignment). out[r] gets the distance of row r; out has n floats. */
	void (*l2sq_many)(const float *q, const float *base, size_t stride,
			  size_t n, size_t dim, float *out);
	void (*ip_many)(const float *q, const float *base, size_t stride,
			size_t n, size_t dim, float *out);
	void (*cosine_many)(const float *q, const float *base, size_t stride,
			    size_t n, size_t dim, float *out);

	/* 8-bit codes (uint8), exact for dim <= DIST_U8_MAX_DIM. */
	int32_t (*l2sq_u8)(const uint8_t *a, const uint8_t *b, size_t dim);
	/* l2sq_u8 that may stop early: exact when the result is <= bound,
	 * otherwise some value > bound (a search's candidate test). */
	int32_t (*l2sq_u8_max)(const uint8_t *a, const uint8_t *b, size_t dim,
			       int32_t bound);
	int32_t (*ip_u8)(const uint8_t *a, const uint8_t *b, size_t dim);

	/* Nearest centroid of nq queries: query i starts at x + i * x_stride
	 * (x_stride >= c->dim, in floats). label[i] gets the index of its
	 * nearest centroid, dist[i] its squared distance (expanded form, see
	 * above). nq >= 1; label and dist have nq entries. */
	void (*assign)(const dist_packed *c, const float *x, size_t nq,
		       size_t x_stride, uint32_t *label /* out */,
		       float *dist /* out */);
	/* The m nearest centroids of each query, nearest first (ties: lower
	 * index first): labels[i * m + r], dists[i * m + r] for rank r.
	 * 1 <= m <= min(c->k, DIST_TOPM_MAX); the arrays have nq * m entries. */
	void (*topm)(const dist_packed *c, const float *x, size_t nq,
		     size_t x_stride, size_t m, uint32_t *labels /* out */,
		     float *dists /* out */);

	/* The multiply-add peak of this path: a loop of independent
	 * multiply-adds on registers, iters rounds. sink[0..2] seed it
	 * (sink[0] near 1, sink[1] small, so nothing overflows) and sink[3]
	 * receives a sum so that the work is kept. Returns the multiply-adds
	 * done (lanes included). */
	uint64_t (*fma_peak)(uint64_t iters, float *sink);
} dist_kernels;

/* The kernels of the path in use (simd_level_get()). */
const dist_kernels *dist_get(void);
/* The kernels of one path; NULL if not compiled in. */
const dist_kernels *dist_for_level(simd_level level);

/*
 * Pack k centroids of dim floats (centroid i at centroids + i * stride,
 * stride >= dim) into *out, which the caller owns and frees with
 * dist_packed_free(); the input is not kept. Returns 0, -EINVAL (k or dim
 * zero, k > UINT32_MAX, stride < dim, sizes overflow) or -ENOMEM (then *out
 * is left empty and needs no free).
 */
int dist_pack(const float *centroids, size_t k, size_t dim, size_t stride,
	      dist_packed *out /* out */);
/* Free what dist_pack allocated and zero *p; a zeroed struct is a no-op. */
void dist_packed_free(dist_packed *p);

/* Checked calls of the path in use: assign and topm of dist_get() after
 * validating the arguments. nq may be 0 (nothing done). Return 0 or -EINVAL
 * (NULL pointers, x_stride < c->dim, m out of range). */
int dist_assign(const dist_packed *c, const float *x, size_t nq,
		size_t x_stride, uint32_t *label /* out */,
		float *dist /* out */);
int dist_topm(const dist_packed *c, const float *x, size_t nq,
	      size_t x_stride, size_t m, uint32_t *labels /* out */,
	      float *dists /* out */);

#endif
