/*
 * kmeans.h -- k-means over f32 vectors: greedy k-means++ seeding, Lloyd
 * iterations on the tiled nearest-centroid kernel (dist.h), repair of empty
 * clusters, and a mini-batch variant for large inputs. Multi-threaded and
 * deterministic: for a given seed the result does not depend on the number
 * of threads (the work is cut into a fixed number of parts whose partial
 * sums are added in part order).
 *
 * Pure algorithm: no store headers; returns 0 or a negative errno value.
 */
#ifndef COHORT_KMEANS_H
#define COHORT_KMEANS_H

#include <stddef.h>
#include <stdint.h>

typedef struct kmeans_opts {
	uint32_t iters;          /* Lloyd iterations (mini-batch: batches); 0: 20 */
	uint64_t seed;
	uint32_t threads;        /* 0: all online cores */
	size_t seed_sample;      /* k-means++ runs on at most this many points,
	                            drawn at random; 0: min(n, max(32 k, 16 K)) */
	size_t batch;            /* > 0: mini-batch k-means with batches of
	                            this size, else full Lloyd */
} kmeans_opts;

typedef struct kmeans_stats {
	double objective;        /* sum of squared distances to the nearest
	                            centroid, over all n points, at the end */
	uint32_t iters;          /* iterations run */
	uint32_t repaired;       /* empty clusters repaired */
} kmeans_stats;

/*
 * Cluster n points of dim floats (point i at x + i * stride, stride >= dim)
 * into k clusters. centroids (k x dim, row-major) gets the result; labels
 * (may be NULL; n entries) the final assignment; stats (may be NULL).
 * opts may be NULL for the defaults. k <= n.
 * Returns 0, -EINVAL, or -ENOMEM.
 */
int kmeans_train(const float *x, size_t n, size_t dim, size_t stride,
		 size_t k, const kmeans_opts *opts, float *centroids /* out */,
		 uint32_t *labels /* out */, kmeans_stats *stats /* out */);

/* Sum of squared distances of the n points to their nearest of k
 * centroids (exact, in double), with the tiled kernel for the argmin. */
int kmeans_objective(const float *x, size_t n, size_t dim, size_t stride,
		     const float *centroids, size_t k, uint32_t threads,
		     double *objective /* out */);

#endif
