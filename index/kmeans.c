/*
 * kmeans.c -- see kmeans.h.
 *
 * Determinism: every parallel phase cuts the points into NPARTS fixed
 * ranges; threads take ranges in any order, but each range's partial sums
 * go to its own slot and are added in range order, and every random choice
 * comes from one generator advanced on the calling thread. So the result
 * depends on the seed and the data only.
 */
#include "kmeans.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "alloc.h"
#include "dist.h"
#include "parallel.h"

#define NPARTS PAR_PARTS
#define ASSIGN_STEP 256          /* queries per assign call */

static uint64_t rnd(uint64_t *s)
{
	return par_rnd(s);
}

static double rnd_unit(uint64_t *s)
{
	return (double)(rnd(s) >> 11) * (1.0 / 9007199254740992.0);
}

static size_t rnd_below(uint64_t *s, size_t n)
{
	return (size_t)(((unsigned __int128)rnd(s) * n) >> 64);
}

/* ------------------------------------------------------------------------
 * Assignment and the objective
 * ------------------------------------------------------------------------ */
typedef struct assign_ctx {
	const dist_packed *c;
	const float *x;
	size_t stride, dim;
	uint32_t *labels;
	float *dists;
	const float *centroids;  /* for exact distances (objective) */
	double part_sum[NPARTS];
	size_t changed[NPARTS];
	const uint32_t *old;     /* previous labels, or NULL */
} assign_ctx;

static double exact_l2(const float *a, const float *b, size_t dim)
{
	double s = 0;
	for (size_t j = 0; j < dim; j++) {
		double d = (double)a[j] - (double)b[j];
		s += d * d;
	}
	return s;
}

static void assign_part(void *arg, int part, size_t lo, size_t hi)
{
	assign_ctx *a = arg;
	size_t changed = 0;
	double sum = 0;
	for (size_t i = lo; i < hi; i += ASSIGN_STEP) {
		size_t nq = hi - i < ASSIGN_STEP ? hi - i : ASSIGN_STEP;
		uint32_t prev[ASSIGN_STEP];
		if (a->old)
			memcpy(prev, a->old + i, nq * sizeof(uint32_t));
		dist_assign(a->c, a->x + i * a->stride, nq, a->stride,
			    a->labels + i, a->dists + i);
		for (size_t q = 0; q < nq; q++) {
			if (a->old && prev[q] != a->labels[i + q])
				changed++;
			if (a->centroids)
				sum += exact_l2(a->x + (i + q) * a->stride,
						a->centroids +
						(size_t)a->labels[i + q] * a->dim,
						a->dim);
		}
	}
	a->part_sum[part] = sum;
	a->changed[part] = changed;
}

/* Assign all points; *changed (may be NULL) counts labels that moved from
 * old; *objective (may be NULL) gets the exact sum of squared distances. */
static int assign_all(const float *x, size_t n, size_t dim, size_t stride,
		      const float *centroids, size_t k, uint32_t threads,
		      uint32_t *labels, const uint32_t *old, size_t *changed,
		      double *objective)
{
	dist_packed P;
	int rc = dist_pack(centroids, k, dim, dim, &P);
	if (rc)
		return rc;
	float *dists = cmalloc(n * sizeof(float));
	if (!dists) {
		dist_packed_free(&P);
		return -ENOMEM;
	}
	assign_ctx a = { .c = &P, .x = x, .stride = stride, .dim = dim,
			 .labels = labels, .dists = dists,
			 .centroids = objective ? centroids : NULL, .old = old };
	par_run(threads, n, assign_part, &a);
	double sum = 0;
	size_t ch = 0;
	for (int p = 0; p < NPARTS; p++) {
		sum += a.part_sum[p];
		ch += a.changed[p];
	}
	if (objective)
		*objective = sum;
	if (changed)
		*changed = ch;
	cfree(dists);
	dist_packed_free(&P);
	return 0;
}

int kmeans_objective(const float *x, size_t n, size_t dim, size_t stride,
		     const float *centroids, size_t k, uint32_t threads,
		     double *objective)
{
	if (!x || !centroids || !objective || !n || !k || !dim || stride < dim)
		return -EINVAL;
	uint32_t *labels = cmalloc(n * sizeof(uint32_t));
	if (!labels)
		return -ENOMEM;
	int rc = assign_all(x, n, dim, stride, centroids, k,
			    par_threads(threads), labels, NULL, NULL, objective);
	cfree(labels);
	return rc;
}

/* ------------------------------------------------------------------------
 * Centroid update: per-part sums, added in part order
 * ------------------------------------------------------------------------ */
typedef struct update_ctx {
	const float *x;
	size_t stride, dim, k;
	const uint32_t *labels;
	double *sums;            /* NPARTS x k x dim */
	uint64_t *counts;        /* NPARTS x k */
} update_ctx;

static void update_part(void *arg, int part, size_t lo, size_t hi)
{
	update_ctx *u = arg;
	double *sums = u->sums + (size_t)part * u->k * u->dim;
	uint64_t *counts = u->counts + (size_t)part * u->k;
	memset(sums, 0, u->k * u->dim * sizeof(double));
	memset(counts, 0, u->k * sizeof(uint64_t));
	for (size_t i = lo; i < hi; i++) {
		uint32_t c = u->labels[i];
		const float *p = u->x + i * u->stride;
		double *s = sums + (size_t)c * u->dim;
		for (size_t j = 0; j < u->dim; j++)
			s[j] += p[j];
		counts[c]++;
	}
}

/* Split the largest cluster to refill each empty one (as FAISS does):
 * the empty centroid becomes the big one nudged one way, the big one is
 * nudged the other, and the big one's count is shared between them. */
static uint32_t repair_empty(float *centroids, uint64_t *count, size_t k,
			     size_t dim, uint64_t *rng)
{
	const float eps = 1.0f / 1024;
	uint32_t repaired = 0;
	for (size_t e = 0; e < k; e++) {
		if (count[e])
			continue;
		size_t big = 0;
		for (size_t c = 1; c < k; c++)
			if (count[c] > count[big])
				big = c;
		if (count[big] < 2)
			break;
		float *ce = centroids + e * dim, *cb = centroids + big * dim;
		for (size_t j = 0; j < dim; j++) {
			float d = (rnd(rng) & 1) ? eps : -eps;
			float scale = fabsf(cb[j]) > 1e-6f ? fabsf(cb[j]) : 1e-3f;
			ce[j] = cb[j] + d * scale;
			cb[j] = cb[j] - d * scale;
		}
		count[e] = count[big] / 2;
		count[big] -= count[e];
		repaired++;
	}
	return repaired;
}

/* ------------------------------------------------------------------------
 * k-means++ seeding on a sample
 * ------------------------------------------------------------------------ */
#define MAX_TRIALS 16

typedef struct seed_ctx {
	const float *sample;
	size_t dim;
	const float *cand[MAX_TRIALS];
	size_t ntrials;
	float *d;                /* ntrials x m distances */
	size_t m;
	const double *dmin;
	double pot[NPARTS][MAX_TRIALS];
} seed_ctx;

/* Distances of this part's sample points to every candidate, and each
 * candidate's share of the new potential sum(min(dmin, d)). */
static void seed_part(void *arg, int part, size_t lo, size_t hi)
{
	seed_ctx *c = arg;
	const dist_kernels *K = dist_get();
	for (size_t t = 0; t < c->ntrials; t++) {
		float *d = c->d + t * c->m;
		K->l2sq_many(c->cand[t], c->sample + lo * c->dim, c->dim, hi - lo,
			     c->dim, d + lo);
		double pot = 0;
		for (size_t i = lo; i < hi; i++)
			pot += d[i] < c->dmin[i] ? d[i] : c->dmin[i];
		c->pot[part][t] = pot;
	}
}

/* Index of the point where the running sum of w passes target: binary
 * search over the prefix sums. */
static size_t pick_weighted(const double *prefix, size_t m, double target)
{
	size_t lo = 0, hi = m - 1;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (prefix[mid] > target)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

static int seed_plusplus(const float *x, size_t n, size_t dim, size_t stride,
			 size_t k, size_t m, uint32_t threads, uint64_t *rng,
			 float *centroids)
{
	size_t trials = 2 + (size_t)log((double)k);
	if (trials > MAX_TRIALS)
		trials = MAX_TRIALS;
	/* the sample: m distinct points, by a partial Fisher-Yates shuffle */
	uint32_t *idx = cmalloc(n * sizeof(uint32_t));
	double *dmin = cmalloc(m * sizeof(double));
	double *prefix = cmalloc(m * sizeof(double));
	float *d = cmalloc(trials * m * sizeof(float));
	float *sample = cmalloc(m * dim * sizeof(float));
	int rc = idx && dmin && prefix && d && sample ? 0 : -ENOMEM;
	if (rc == 0) {
		for (size_t i = 0; i < n; i++)
			idx[i] = (uint32_t)i;
		for (size_t i = 0; i < m; i++) {
			size_t j = i + rnd_below(rng, n - i);
			uint32_t t = idx[i];
			idx[i] = idx[j];
			idx[j] = t;
			memcpy(sample + i * dim, x + (size_t)idx[i] * stride,
			       dim * sizeof(float));
		}
		for (size_t i = 0; i < m; i++)
			dmin[i] = INFINITY;
	}
	/*
	 * Greedy k-means++ (as scikit-learn does): each step draws a few
	 * candidates by D^2 sampling and keeps the one that lowers the
	 * potential most, which avoids most of plain k-means++'s bad seeds.
	 * The candidates' distances are computed in parallel; the draws and
	 * the sums stay in a fixed order, so the result does not depend on
	 * the threads.
	 */
	seed_ctx c = { .sample = sample, .dim = dim, .d = d, .m = m,
		       .dmin = dmin };
	for (size_t step = 0; step < k && rc == 0; step++) {
		double total = step ? prefix[m - 1] : 0;
		size_t picks[MAX_TRIALS];
		c.ntrials = step ? trials : 1;
		for (size_t t = 0; t < c.ntrials; t++) {
			picks[t] = step && total > 0 ?
				pick_weighted(prefix, m, rnd_unit(rng) * total) :
				rnd_below(rng, m);
			c.cand[t] = sample + picks[t] * dim;
		}
		par_run(threads, m, seed_part, &c);
		size_t best = 0;
		double best_pot = INFINITY;
		for (size_t t = 0; t < c.ntrials; t++) {
			double pot = 0;
			for (int p = 0; p < NPARTS; p++)
				pot += c.pot[p][t];
			if (pot < best_pot) {
				best_pot = pot;
				best = t;
			}
		}
		memcpy(centroids + step * dim, c.cand[best], dim * sizeof(float));
		const float *db = d + best * m;
		double acc = 0;
		for (size_t i = 0; i < m; i++) {
			if (db[i] < dmin[i])
				dmin[i] = db[i];
			acc += dmin[i];
			prefix[i] = acc;
		}
	}
	cfree(idx);
	cfree(dmin);
	cfree(prefix);
	cfree(d);
	cfree(sample);
	return rc;
}

/* ------------------------------------------------------------------------
 * Training
 * ------------------------------------------------------------------------ */
static int lloyd(const float *x, size_t n, size_t dim, size_t stride, size_t k,
		 uint32_t iters, uint32_t threads, uint64_t *rng,
		 float *centroids, uint32_t *labels, kmeans_stats *st)
{
	uint32_t *old = cmalloc(n * sizeof(uint32_t));
	double *sums = cmalloc((size_t)NPARTS * k * dim * sizeof(double));
	uint64_t *counts = cmalloc((size_t)NPARTS * k * sizeof(uint64_t));
	uint64_t *count = cmalloc(k * sizeof(uint64_t));
	int rc = old && sums && counts && count ? 0 : -ENOMEM;
	uint32_t repaired_last = 0;
	for (uint32_t it = 0; it < iters && rc == 0; it++) {
		size_t changed = 0;
		rc = assign_all(x, n, dim, stride, centroids, k, threads, labels,
				it ? old : NULL, &changed, NULL);
		if (rc)
			break;
		st->iters = it + 1;
		/* converged: the centroids would not move (unless the last
		 * repair moved some, which this assignment has to settle) */
		if (it > 0 && changed == 0 && !repaired_last)
			break;
		update_ctx u = { x, stride, dim, k, labels, sums, counts };
		par_run(threads, n, update_part, &u);
		memset(count, 0, k * sizeof(uint64_t));
		for (size_t c = 0; c < k; c++) {
			for (int p = 0; p < NPARTS; p++)
				count[c] += counts[(size_t)p * k + c];
			if (!count[c])
				continue;
			float *cc = centroids + c * dim;
			for (size_t j = 0; j < dim; j++) {
				double s = 0;
				for (int p = 0; p < NPARTS; p++)
					s += sums[((size_t)p * k + c) * dim + j];
				cc[j] = (float)(s / (double)count[c]);
			}
		}
		/* repair only when another assignment follows to settle it */
		repaired_last = it + 1 < iters ?
			repair_empty(centroids, count, k, dim, rng) : 0;
		st->repaired += repaired_last;
		memcpy(old, labels, n * sizeof(uint32_t));
	}
	cfree(old);
	cfree(sums);
	cfree(counts);
	cfree(count);
	return rc;
}

/* Mini-batch k-means (Sculley, 2010): each batch is assigned in parallel,
 * then every point pulls its centroid towards it with rate 1 / count. */
static int minibatch(const float *x, size_t n, size_t dim, size_t stride,
		     size_t k, size_t batch, uint32_t iters, uint32_t threads,
		     uint64_t *rng, float *centroids, kmeans_stats *st)
{
	if (batch > n)
		batch = n;
	float *bx = cmalloc(batch * dim * sizeof(float));
	uint32_t *bl = cmalloc(batch * sizeof(uint32_t));
	uint64_t *count = ccalloc(k, sizeof(uint64_t));
	int rc = bx && bl && count ? 0 : -ENOMEM;
	for (uint32_t it = 0; it < iters && rc == 0; it++) {
		for (size_t i = 0; i < batch; i++)
			memcpy(bx + i * dim, x + rnd_below(rng, n) * stride,
			       dim * sizeof(float));
		rc = assign_all(bx, batch, dim, dim, centroids, k, threads, bl,
				NULL, NULL, NULL);
		for (size_t i = 0; i < batch && rc == 0; i++) {
			uint32_t c = bl[i];
			float eta = 1.0f / (float)++count[c];
			float *cc = centroids + (size_t)c * dim;
			const float *p = bx + i * dim;
			for (size_t j = 0; j < dim; j++)
				cc[j] += eta * (p[j] - cc[j]);
		}
		st->iters = it + 1;
	}
	cfree(bx);
	cfree(bl);
	cfree(count);
	return rc;
}

int kmeans_train(const float *x, size_t n, size_t dim, size_t stride,
		 size_t k, const kmeans_opts *opts, float *centroids,
		 uint32_t *labels, kmeans_stats *stats)
{
	if (!x || !centroids || !n || !dim || !k || k > n || stride < dim ||
	    k > UINT32_MAX || n > UINT32_MAX)
		return -EINVAL;
	kmeans_opts o = { 0 };
	if (opts)
		o = *opts;
	uint32_t iters = o.iters ? o.iters : 20;
	uint32_t threads = par_threads(o.threads);
	uint64_t rng = o.seed ^ 0x5eed5eed5eed5eedull;
	/* 32 points per centroid (at least 16 K) is enough for the seeds to
	 * cover the data; the seeding costs m x k x trials distances */
	size_t m = o.seed_sample ? o.seed_sample :
		32 * k > 16384 ? 32 * k : 16384;
	if (m > n)
		m = n;
	if (m < k)
		m = k;
	kmeans_stats st = { 0 };
	int rc = seed_plusplus(x, n, dim, stride, k, m, threads, &rng,
			       centroids);
	uint32_t *lab = labels ? labels : cmalloc(n * sizeof(uint32_t));
	if (rc == 0 && !lab)
		rc = -ENOMEM;
	if (rc == 0)
		rc = o.batch ?
			minibatch(x, n, dim, stride, k, o.batch, iters, threads,
				  &rng, centroids, &st) :
			lloyd(x, n, dim, stride, k, iters, threads, &rng,
			      centroids, lab, &st);
	if (rc == 0)
		rc = assign_all(x, n, dim, stride, centroids, k, threads, lab,
				NULL, NULL, &st.objective);
	if (lab != labels)
		cfree(lab);
	if (rc == 0 && stats)
		*stats = st;
	return rc;
}
