/*
 * dist.c -- dispatch of the distance kernels (dist_kern.c, compiled once per
 * SIMD target), the packing of centroids for the tiled kernels, and the
 * checked entry points.
 */
#include <errno.h>
#include <math.h>

#include "alloc.h"
#include "dist.h"

extern const dist_kernels dist_kernels_scalar;
extern const dist_kernels dist_kernels_sse4;
extern const dist_kernels dist_kernels_avx2;
extern const dist_kernels dist_kernels_avx512;

const dist_kernels *dist_for_level(simd_level level)
{
	switch (level) {
	case SIMD_SCALAR: return &dist_kernels_scalar;
	case SIMD_SSE4: return &dist_kernels_sse4;
	case SIMD_AVX2: return &dist_kernels_avx2;
	case SIMD_AVX512: return &dist_kernels_avx512;
	default: return NULL;
	}
}

const dist_kernels *dist_get(void)
{
	return dist_for_level(simd_level_get());
}

int dist_pack(const float *centroids, size_t k, size_t dim, size_t stride,
	      dist_packed *out)
{
	*out = (dist_packed){0};
	if (!centroids || k == 0 || dim == 0 || stride < dim || k > UINT32_MAX)
		return -EINVAL;
	size_t nblocks = (k + DIST_BLOCK - 1) / DIST_BLOCK;
	size_t lanes = nblocks * DIST_BLOCK;
	if (dim > SIZE_MAX / sizeof(float) / lanes)
		return -EINVAL;

	/* caligned zeroes: the padding centroids are zero vectors. */
	float *blocks = caligned(64, lanes * dim * sizeof(float));
	float *norms = caligned(64, lanes * sizeof(float));
	if (!blocks || !norms) {
		cfree(blocks);
		cfree(norms);
		return -ENOMEM;
	}
	for (size_t c = 0; c < k; c++) {
		const float *src = centroids + c * stride;
		float *dst = blocks + (c / DIST_BLOCK) * dim * DIST_BLOCK +
			     c % DIST_BLOCK;
		double nrm = 0;
		for (size_t j = 0; j < dim; j++) {
			dst[j * DIST_BLOCK] = src[j];
			nrm += (double)src[j] * src[j];
		}
		norms[c] = (float)nrm;
	}
	for (size_t c = k; c < lanes; c++)
		norms[c] = INFINITY;

	out->k = k;
	out->dim = dim;
	out->nblocks = nblocks;
	out->blocks = blocks;
	out->norms = norms;
	return 0;
}

void dist_packed_free(dist_packed *p)
{
	cfree(p->blocks);
	cfree(p->norms);
	*p = (dist_packed){0};
}

int dist_assign(const dist_packed *c, const float *x, size_t nq,
		size_t x_stride, uint32_t *label, float *dist)
{
	if (!c || !c->blocks || x_stride < c->dim)
		return -EINVAL;
	if (nq == 0)
		return 0;
	if (!x || !label || !dist)
		return -EINVAL;
	dist_get()->assign(c, x, nq, x_stride, label, dist);
	return 0;
}

int dist_topm(const dist_packed *c, const float *x, size_t nq,
	      size_t x_stride, size_t m, uint32_t *labels, float *dists)
{
	if (!c || !c->blocks || x_stride < c->dim || m == 0 ||
	    m > DIST_TOPM_MAX || m > c->k)
		return -EINVAL;
	if (nq == 0)
		return 0;
	if (!x || !labels || !dists)
		return -EINVAL;
	dist_get()->topm(c, x, nq, x_stride, m, labels, dists);
	return 0;
}
