/*
 * persona.h -- the arithmetic of persona assignment: the nearest centroid
 * with a proof of how far the runner-up is, the bound test that lets a
 * changed vector keep its persona without a scan, and the explanation of
 * an assignment. Pure algorithm over vectors (no store headers).
 *
 * Distances here are Euclidean (not squared) unless a name says sq.
 *
 * Exactness. The tiled kernel (dist.h) ranks centroids by the expanded form
 * |c|^2 - 2 x.c, whose error is up to about gamma_(dim+4) (|x| + |c|)^2.
 * persona_nearest bounds that error (E below), and when the kernel's best
 * two are closer than 2E it settles the winner by an exact scan in double
 * precision; otherwise the kernel's winner is provably the exact argmin.
 * The winner's distance is always recomputed exactly. Ties in the exact
 * distance go to the lower index. So the label equals the argmin of the
 * exact distances, which is what a brute-force check computes.
 *
 * Bounds (Hamerly). lb is a lower bound on the distance from x to every
 * centroid other than its own. When x moves by at most delta (the sum of
 * the lengths of its changes, triangle inequality), every other centroid is
 * still at least lb - delta away; if the exact distance to its own centroid
 * is below that, the persona cannot have changed and no scan is needed.
 */
#ifndef COHORT_PERSONA_H
#define COHORT_PERSONA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dist.h"

typedef struct persona_cents {
	size_t k, dim;
	const float *c;          /* k x dim, row-major */
	const dist_packed *packed;
	double cmax;             /* the largest |c| */
} persona_cents;

/* Fill in packed (caller frees it with dist_packed_free) and cmax for k
 * centroids c of dim floats. Returns 0, -EINVAL or -ENOMEM. */
int persona_cents_init(persona_cents *pc, const float *c, size_t k,
		       size_t dim, dist_packed *packed);

/* Exact squared distance in double precision. */
double persona_dist_sq(const float *x, const float *c, size_t dim);

/*
 * Nearest centroid of nq vectors (vector i at x + i * stride): label[i]
 * (the exact argmin), d1[i] its exact distance, lb[i] a lower bound on the
 * distance to every other centroid (+inf when k == 1).
 */
void persona_nearest(const persona_cents *pc, const float *x, size_t nq,
		     size_t stride, uint32_t *label /* out */,
		     float *d1 /* out */, float *lb /* out */);

/*
 * The bound test: x (already moved) had persona `label` with lower bound
 * lb on the others before moving by at most `drift`. Computes the exact
 * distance to its centroid into *d1; returns true, with *lb_new, when that
 * proves the persona unchanged.
 */
bool persona_keep(const persona_cents *pc, const float *x, uint32_t label,
		  double lb, double drift, float *d1 /* out */,
		  float *lb_new /* out */);

/* The m nearest centroids of x, nearest first, exact distances: labels[r],
 * dists[r] for r < m (m <= k). Ties go to the lower index. */
void persona_topm_exact(const persona_cents *pc, const float *x, size_t m,
			uint32_t *labels /* out */, float *dists /* out */);

/*
 * Why x is in persona a rather than b: the contribution of coordinate j is
 * (x_j - b_j)^2 - (x_j - a_j)^2 (they sum to |x - b|^2 - |x - a|^2); with
 * b == NULL (a single persona) it is -(x_j - a_j)^2. The n coordinates
 * with the largest contributions, largest first, go to idx and contrib.
 * Returns how many (min(n, dim)).
 */
size_t persona_explain(const float *x, const float *a, const float *b,
		       size_t dim, size_t n, uint32_t *idx /* out */,
		       double *contrib /* out */);

#endif
