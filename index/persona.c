/*
 * persona.c -- see persona.h.
 */
#include "persona.h"

#include <errno.h>
#include <float.h>
#include <math.h>

#define NEAREST_STEP 64          /* queries per kernel call */

int persona_cents_init(persona_cents *pc, const float *c, size_t k,
		       size_t dim, dist_packed *packed)
{
	if (!pc || !c || !packed || k == 0 || dim == 0)
		return -EINVAL;
	int rc = dist_pack(c, k, dim, dim, packed);
	if (rc)
		return rc;
	double cmax = 0;
	for (size_t i = 0; i < k; i++) {
		double s = 0;
		for (size_t j = 0; j < dim; j++)
			s += (double)c[i * dim + j] * c[i * dim + j];
		if (s > cmax)
			cmax = s;
	}
	pc->k = k;
	pc->dim = dim;
	pc->c = c;
	pc->packed = packed;
	pc->cmax = sqrt(cmax);
	return 0;
}

double persona_dist_sq(const float *x, const float *c, size_t dim)
{
	double s = 0;
	for (size_t j = 0; j < dim; j++) {
		double d = (double)x[j] - (double)c[j];
		s += d * d;
	}
	return s;
}

/* The largest float not above v (v >= 0): a bound stays a bound. */
static float float_down(double v)
{
	if (v <= 0)
		return 0;
	if (v >= FLT_MAX)
		return v == INFINITY ? INFINITY : FLT_MAX;
	float f = (float)v;
	return (double)f > v ? nextafterf(f, 0) : f;
}

/* The best and second best of all k centroids by exact distance. */
static void exact_two(const persona_cents *pc, const float *x, uint32_t *best,
		      double *d_best, double *d_second)
{
	double b1 = INFINITY, b2 = INFINITY;
	uint32_t i1 = 0;
	for (size_t i = 0; i < pc->k; i++) {
		double d = persona_dist_sq(x, pc->c + i * pc->dim, pc->dim);
		if (d < b1) {
			b2 = b1;
			b1 = d;
			i1 = (uint32_t)i;
		} else if (d < b2) {
			b2 = d;
		}
	}
	*best = i1;
	*d_best = b1;
	*d_second = b2;
}

/* A bound on the kernel's error in a squared distance to any centroid. */
static double kernel_err(const persona_cents *pc, const float *x)
{
	double nx = 0;
	for (size_t j = 0; j < pc->dim; j++)
		nx += (double)x[j] * x[j];
	double r = sqrt(nx) + pc->cmax;
	/* gamma_(dim+4) with u = 2^-24, doubled for the norms' rounding */
	double u = 0x1p-24 * (double)(pc->dim + 4);
	return 2.0 * u / (1.0 - u) * r * r + DBL_MIN;
}

void persona_nearest(const persona_cents *pc, const float *x, size_t nq,
		     size_t stride, uint32_t *label, float *d1, float *lb)
{
	uint32_t tl[NEAREST_STEP * 2];
	float td[NEAREST_STEP * 2];
	size_t m = pc->k >= 2 ? 2 : 1;
	for (size_t q0 = 0; q0 < nq; q0 += NEAREST_STEP) {
		size_t nb = nq - q0 < NEAREST_STEP ? nq - q0 : NEAREST_STEP;
		const float *xb = x + q0 * stride;
		dist_topm(pc->packed, xb, nb, stride, m, tl, td);
		for (size_t i = 0; i < nb; i++) {
			const float *xi = xb + i * stride;
			size_t q = q0 + i;
			if (m == 1) {
				label[q] = 0;
				d1[q] = (float)sqrt(persona_dist_sq(xi, pc->c,
								    pc->dim));
				lb[q] = INFINITY;
				continue;
			}
			double e = kernel_err(pc, xi);
			double first = td[i * 2], second = td[i * 2 + 1];
			/* a near tie, or float overflow (huge inputs give
			 * infinite or NaN distances and no label): settle it
			 * exactly, in double */
			if (!(second - first > 2 * e) || !isfinite(first) ||
			    tl[i * 2] >= pc->k) {
				uint32_t b;
				double db, ds;
				exact_two(pc, xi, &b, &db, &ds);
				label[q] = b;
				d1[q] = (float)sqrt(db);
				lb[q] = float_down(sqrt(ds) * (1 - 1e-12));
				continue;
			}
			uint32_t b = tl[i * 2];
			label[q] = b;
			d1[q] = (float)sqrt(persona_dist_sq(
				xi, pc->c + (size_t)b * pc->dim, pc->dim));
			double low = second - e;
			lb[q] = float_down(low > 0 ? sqrt(low) * (1 - 1e-12) : 0);
		}
	}
}

bool persona_keep(const persona_cents *pc, const float *x, uint32_t label,
		  double lb, double drift, float *d1, float *lb_new)
{
	double d = sqrt(persona_dist_sq(x, pc->c + (size_t)label * pc->dim,
					pc->dim));
	*d1 = (float)d;
	double bound = lb - drift;
	/* strict, with room for the rounding of d and of the drift sum */
	if (!(d < bound * (1 - 1e-9)))
		return false;
	*lb_new = float_down(bound);
	return true;
}

void persona_topm_exact(const persona_cents *pc, const float *x, size_t m,
			uint32_t *labels, float *dists)
{
	double best[DIST_TOPM_MAX];
	if (m > pc->k)
		m = pc->k;
	if (m > DIST_TOPM_MAX)
		m = DIST_TOPM_MAX;
	size_t have = 0;
	for (size_t i = 0; i < pc->k; i++) {
		double d = persona_dist_sq(x, pc->c + i * pc->dim, pc->dim);
		if (have == m && d >= best[m - 1])
			continue;
		size_t r = have < m ? have++ : m - 1;
		while (r > 0 && best[r - 1] > d) {
			best[r] = best[r - 1];
			labels[r] = labels[r - 1];
			r--;
		}
		best[r] = d;
		labels[r] = (uint32_t)i;
	}
	for (size_t r = 0; r < have; r++)
		dists[r] = (float)sqrt(best[r]);
}

size_t persona_explain(const float *x, const float *a, const float *b,
		       size_t dim, size_t n, uint32_t *idx, double *contrib)
{
	if (n > dim)
		n = dim;
	size_t have = 0;
	for (size_t j = 0; j < dim; j++) {
		double da = (double)x[j] - a[j];
		double v = -da * da;
		if (b) {
			double db = (double)x[j] - b[j];
			v += db * db;
		}
		if (have == n && v <= contrib[n - 1])
			continue;
		size_t r = have < n ? have++ : n - 1;
		while (r > 0 && contrib[r - 1] < v) {
			contrib[r] = contrib[r - 1];
			idx[r] = idx[r - 1];
			r--;
		}
		contrib[r] = v;
		idx[r] = (uint32_t)j;
	}
	return have;
}
