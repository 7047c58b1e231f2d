/*
 * Distance kernels against a plain double-precision reference, on every
 * SIMD path this CPU has, at dimensions 1, 3, 7, 16, 17, 64, 129, 784 (short
 * of, at, and past the vector widths and their tails), with every vector at
 * an address 1..3 floats off its allocation's start and ending exactly at
 * the allocation's end, so that a kernel reading past a tail is caught by
 * ASan in `make test`.
 *
 * Tolerances. A float sum of n terms, in any order and with or without FMA,
 * is within gamma_n * sum |term| of the exact sum (Higham, Accuracy and
 * Stability, 3.1; gamma_n = n u / (1 - n u), u = 2^-24); the differences
 * a_i - b_i of l2sq and the final rounding add a few more u, hence
 * gamma_(dim+4) * sum |term| for l2sq and ip. Cosine: the dot is off by at
 * most gamma |a| |b| and each norm by a relative gamma, so 1 - cos is off
 * by at most 3 gamma plus the final rounding. The tiled kernels use the
 * expanded form |x|^2 - 2 x.c + |c|^2, whose error is absolute: at most
 * gamma_(dim+5) (|x| + |c|)^2 per candidate, so the chosen centroid's exact
 * distance is within twice that of the true minimum.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "dist.h"

static const size_t dims[] = {1, 3, 7, 16, 17, 64, 129, 784};
#define NDIMS (sizeof dims / sizeof dims[0])

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Uniform in [-1, 1). */
static float rand_unit(void)
{
	return (float)(next_rand() >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

static double gamma_n(size_t n)
{
	double u = ldexp(1.0, -24);
	return (double)n * u / (1.0 - (double)n * u);
}

/* n floats at `off` floats into a block that ends right after them; the
 * block is returned in *block for cfree. */
static float *vec_alloc(size_t n, size_t off, float **block)
{
	*block = cmalloc((off + n) * sizeof(float));
	cr_assert_not_null(*block);
	return *block + off;
}

static void fill(float *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		v[i] = rand_unit();
}

static double ref_l2sq(const float *a, const float *b, size_t dim)
{
	double s = 0;
	for (size_t i = 0; i < dim; i++)
		s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
	return s;
}

static double ref_ip(const float *a, const float *b, size_t dim)
{
	double s = 0;
	for (size_t i = 0; i < dim; i++)
		s += (double)a[i] * b[i];
	return s;
}

static double ref_abs_ip(const float *a, const float *b, size_t dim)
{
	double s = 0;
	for (size_t i = 0; i < dim; i++)
		s += fabs((double)a[i] * b[i]);
	return s;
}

static double ref_cosine(const float *a, const float *b, size_t dim)
{
	double aa = ref_ip(a, a, dim), bb = ref_ip(b, b, dim);
	if (aa == 0 || bb == 0)
		return 1.0;
	return 1.0 - ref_ip(a, b, dim) / sqrt(aa * bb);
}

static double cos_tol(size_t dim)
{
	return 3 * gamma_n(dim + 4) + 4 * ldexp(1.0, -24);
}

enum metric { M_L2, M_IP, M_COS };

/* The expected value and its tolerance for one pair. */
static double ref_of(enum metric m, const float *a, const float *b,
		     size_t dim, double *tol)
{
	switch (m) {
	case M_L2: {
		double r = ref_l2sq(a, b, dim);
		*tol = gamma_n(dim + 4) * r;
		return r;
	}
	case M_IP:
		*tol = gamma_n(dim + 4) * ref_abs_ip(a, b, dim);
		return ref_ip(a, b, dim);
	default:
		*tol = cos_tol(dim);
		return ref_cosine(a, b, dim);
	}
}

static float call_pair(const dist_kernels *k, enum metric m, const float *a,
		       const float *b, size_t dim)
{
	return m == M_L2 ? k->l2sq(a, b, dim) :
	       m == M_IP ? k->ip(a, b, dim) : k->cosine(a, b, dim);
}

static void check_pairs(enum metric m)
{
	for (int lv = 0; lv <= (int)simd_level_best(); lv++) {
		const dist_kernels *k = dist_for_level((simd_level)lv);
		cr_assert_not_null(k);
		for (size_t di = 0; di < NDIMS; di++) {
			size_t dim = dims[di];
			for (size_t off = 1; off <= 3; off++) {
				float *ba, *bb;
				float *a = vec_alloc(dim, off, &ba);
				float *b = vec_alloc(dim, off % 3 + 1, &bb);
				fill(a, dim);
				fill(b, dim);
				/* Also b = -a and b = 3a: cosine 2 and 0. */
				for (int shape = 0; shape < 3; shape++) {
					if (shape)
						for (size_t i = 0; i < dim; i++)
							b[i] = (shape == 1 ? -1.0f : 3.0f) * a[i];
					double tol, want = ref_of(m, a, b, dim, &tol);
					float got = call_pair(k, m, a, b, dim);
					cr_assert(fabs(got - want) <= tol,
						  "%s metric %d dim %zu off %zu shape %d: "
						  "got %.9g want %.9g (tol %.3g)",
						  simd_level_name((simd_level)lv), (int)m,
						  dim, off, shape, (double)got, want, tol);
				}
				cfree(ba);
				cfree(bb);
			}
		}
	}
}

Test(dist, l2sq_matches_reference)
{
	check_pairs(M_L2);
}

Test(dist, ip_matches_reference)
{
	check_pairs(M_IP);
}

Test(dist, cosine_matches_reference)
{
	check_pairs(M_COS);
}

Test(dist, cosine_with_zero_vector_is_one)
{
	float z[17] = {0}, a[17];
	fill(a, 17);
	for (int lv = 0; lv <= (int)simd_level_best(); lv++) {
		const dist_kernels *k = dist_for_level((simd_level)lv);
		cr_assert_eq(k->cosine(a, z, 17), 1.0f);
		cr_assert_eq(k->cosine(z, z, 17), 1.0f);
		float out[1];
		k->cosine_many(z, a, 17, 1, 17, out);
		cr_assert_eq(out[0], 1.0f);
	}
}

/* One query against 13 rows (the 4-row groups of the SIMD kernels and a
 * remainder), rows dim + 3 floats apart so that they are unaligned too. */
static void check_many(enum metric m)
{
	const size_t nrows = 13;
	for (int lv = 0; lv <= (int)simd_level_best(); lv++) {
		const dist_kernels *k = dist_for_level((simd_level)lv);
		for (size_t di = 0; di < NDIMS; di++) {
			size_t dim = dims[di], stride = dim + 3;
			size_t off = di % 3 + 1;
			float *bq, *bbase, out[13];
			float *q = vec_alloc(dim, off, &bq);
			float *base = vec_alloc((nrows - 1) * stride + dim,
						4 - off, &bbase);
			fill(q, dim);
			fill(base, (nrows - 1) * stride + dim);
			if (m == M_L2)
				k->l2sq_many(q, base, stride, nrows, dim, out);
			else if (m == M_IP)
				k->ip_many(q, base, stride, nrows, dim, out);
			else
				k->cosine_many(q, base, stride, nrows, dim, out);
			for (size_t r = 0; r < nrows; r++) {
				double tol, want = ref_of(m, q, base + r * stride,
							  dim, &tol);
				cr_assert(fabs(out[r] - want) <= tol,
					  "%s metric %d dim %zu row %zu: got %.9g "
					  "want %.9g (tol %.3g)",
					  simd_level_name((simd_level)lv), (int)m,
					  dim, r, (double)out[r], want, tol);
			}
			cfree(bq);
			cfree(bbase);
		}
	}
}

Test(dist, l2sq_many_matches_reference)
{
	check_many(M_L2);
}

Test(dist, ip_many_matches_reference)
{
	check_many(M_IP);
}

Test(dist, cosine_many_matches_reference)
{
	check_many(M_COS);
}

Test(dist, fma_peak_counts_its_work)
{
	for (int lv = 0; lv <= (int)simd_level_best(); lv++) {
		float sink[4] = {0.999f, 0.001f, 1.0f, 0};
		uint64_t n = dist_for_level((simd_level)lv)->fma_peak(1000, sink);
		cr_assert(n >= 1000 && n % 1000 == 0, "%s: %llu",
			  simd_level_name((simd_level)lv), (unsigned long long)n);
		cr_assert(isfinite(sink[3]) && sink[3] > 0);
	}
}

/* ------------------------------------------------------------------------
 * 8-bit codes: exact.
 * ------------------------------------------------------------------------ */
static void check_u8(int ip)
{
	static const size_t udims[] = {1, 3, 7, 16, 17, 63, 64, 65, 129, 784};
	for (int lv = 0; lv <= (int)simd_level_best(); lv++) {
		const dist_kernels *k = dist_for_level((simd_level)lv);
		for (size_t di = 0; di < sizeof udims / sizeof udims[0]; di++) {
			size_t dim = udims[di];
			for (size_t off = 1; off <= 3; off++) {
				uint8_t *ba = cmalloc(dim + off);
				uint8_t *bb = cmalloc(dim + 4 - off);
				uint8_t *a = ba + off, *b = bb + 4 - off;
				int64_t want = 0;
				for (size_t i = 0; i < dim; i++) {
					/* Extremes often: 0 and 255 stress the
					 * widening and the signs of differences. */
					uint64_t r = next_rand();
					a[i] = r % 4 == 0 ? 255 : (uint8_t)(r >> 8);
					b[i] = r % 5 == 0 ? 0 : (uint8_t)(r >> 16);
					int d = (int)a[i] - (int)b[i];
					want += ip ? (int64_t)a[i] * b[i] : (int64_t)d * d;
				}
				int32_t got = ip ? k->ip_u8(a, b, dim)
						 : k->l2sq_u8(a, b, dim);
				cr_assert_eq((int64_t)got, want,
					     "%s dim %zu off %zu: got %d want %lld",
					     simd_level_name((simd_level)lv), dim, off,
					     got, (long long)want);
				cfree(ba);
				cfree(bb);
			}
		}
	}
}

Test(dist_int8, l2sq_u8_is_exact)
{
	check_u8(0);
}

Test(dist_int8, ip_u8_is_exact)
{
	check_u8(1);
}

/* The documented bound: at DIST_U8_MAX_DIM, all terms at their maximum,
 * the sums are still exact. */
Test(dist_int8, sums_exact_at_max_dim)
{
	size_t dim = DIST_U8_MAX_DIM;
	int64_t want = (int64_t)dim * 255 * 255;
	cr_assert_leq(want, INT32_MAX);
	cr_assert_gt(want + 255 * 255, INT32_MAX, "the bound is tight");
	uint8_t *hi = cmalloc(dim), *lo = ccalloc(dim, 1);
	memset(hi, 255, dim);
	for (int lv = 0; lv <= (int)simd_level_best(); lv++) {
		const dist_kernels *k = dist_for_level((simd_level)lv);
		cr_assert_eq((int64_t)k->l2sq_u8(hi, lo, dim), want, "%s",
			     simd_level_name((simd_level)lv));
		cr_assert_eq((int64_t)k->ip_u8(hi, hi, dim), want, "%s",
			     simd_level_name((simd_level)lv));
	}
	cfree(hi);
	cfree(lo);
}

/* ------------------------------------------------------------------------
 * The tiled kernels: packing, assignment, top-m.
 * ------------------------------------------------------------------------ */
Test(dist_tiled, pack_lays_out_blocks_and_pads)
{
	const size_t k = 37, dim = 3, stride = 5;
	float c[37 * 5];
	fill(c, k * stride);
	dist_packed p;
	cr_assert_eq(dist_pack(c, k, dim, stride, &p), 0);
	cr_assert_eq(p.k, k);
	cr_assert_eq(p.dim, dim);
	cr_assert_eq(p.nblocks, 3);
	cr_assert_eq((uintptr_t)p.blocks % 64, 0);
	for (size_t i = 0; i < 48; i++) {
		double n = 0;
		for (size_t j = 0; j < dim; j++) {
			float want = i < k ? c[i * stride + j] : 0.0f;
			cr_assert_eq(p.blocks[(i / 16) * dim * 16 + j * 16 + i % 16],
				     want);
			n += (double)want * want;
		}
		if (i < k)
			cr_assert_eq(p.norms[i], (float)n);
		else
			cr_assert(isinf(p.norms[i]) && p.norms[i] > 0);
	}
	dist_packed_free(&p);
	cr_assert_null(p.blocks);
	dist_packed_free(&p);
}

Test(dist_tiled, pack_rejects_bad_arguments_and_reports_enomem)
{
	float c[8] = {0};
	dist_packed p;
	cr_assert_eq(dist_pack(c, 0, 2, 2, &p), -EINVAL);
	cr_assert_eq(dist_pack(c, 2, 0, 2, &p), -EINVAL);
	cr_assert_eq(dist_pack(c, 2, 3, 2, &p), -EINVAL);
	for (long n = 0; n < 2; n++) {
		alloc_fail_after(n);
		cr_assert_eq(dist_pack(c, 4, 2, 2, &p), -ENOMEM, "failing #%ld", n);
		alloc_fail_after(-1);
		cr_assert_null(p.blocks);
	}
	cr_assert_eq(dist_pack(c, 4, 2, 2, &p), 0);
	dist_packed_free(&p);
}

typedef struct tiled_case {
	size_t nq, k, dim, xs, off;
	float *xblock, *x, *c;
	double *ref;          /* nq x k exact distances */
	double *tol;          /* nq: the expanded form's bound */
	dist_packed p;
} tiled_case;

static void case_make(tiled_case *t, size_t nq, size_t k, size_t dim)
{
	t->nq = nq;
	t->k = k;
	t->dim = dim;
	t->xs = dim + 1 + dim % 3;              /* unaligned rows */
	t->off = nq % 3 + 1;
	t->x = vec_alloc((nq - 1) * t->xs + dim, t->off, &t->xblock);
	t->c = cmalloc(k * dim * sizeof(float));
	t->ref = cmalloc(nq * k * sizeof(double));
	t->tol = cmalloc(nq * sizeof(double));
	fill(t->x, (nq - 1) * t->xs + dim);
	fill(t->c, k * dim);
	cr_assert_eq(dist_pack(t->c, k, dim, dim, &t->p), 0);
	double cmax = 0;
	for (size_t j = 0; j < k; j++)
		cmax = fmax(cmax, sqrt(ref_ip(t->c + j * dim, t->c + j * dim, dim)));
	for (size_t i = 0; i < nq; i++) {
		const float *xi = t->x + i * t->xs;
		double xn = sqrt(ref_ip(xi, xi, dim));
		t->tol[i] = 2 * gamma_n(dim + 5) * (xn + cmax) * (xn + cmax);
		for (size_t j = 0; j < k; j++)
			t->ref[i * k + j] = ref_l2sq(xi, t->c + j * dim, dim);
	}
}

static void case_free(tiled_case *t)
{
	dist_packed_free(&t->p);
	cfree(t->xblock);
	cfree(t->c);
	cfree(t->ref);
	cfree(t->tol);
}

/* The brute-force minimum and its lowest index for query i. */
static size_t case_argmin(const tiled_case *t, size_t i)
{
	size_t best = 0;
	for (size_t j = 1; j < t->k; j++)
		if (t->ref[i * t->k + j] < t->ref[i * t->k + best])
			best = j;
	return best;
}

static void check_assign(tiled_case *t)
{
	uint32_t *label = cmalloc(t->nq * sizeof(uint32_t));
	float *dist = cmalloc(t->nq * sizeof(float));
	for (int lv = 0; lv <= (int)simd_level_best(); lv++) {
		const dist_kernels *k = dist_for_level((simd_level)lv);
		k->assign(&t->p, t->x, t->nq, t->xs, label, dist);
		for (size_t i = 0; i < t->nq; i++) {
			size_t want = case_argmin(t, i);
			cr_assert_lt(label[i], t->k);
			double got_d = t->ref[i * t->k + label[i]];
			double min_d = t->ref[i * t->k + want];
			/* Equal labels, or a near tie within the bound. */
			cr_assert(label[i] == want || got_d - min_d <= t->tol[i],
				  "%s Q=%zu K=%zu dim %zu query %zu: label %u "
				  "(%.9g), brute force %zu (%.9g), tol %.3g",
				  simd_level_name((simd_level)lv), t->nq, t->k,
				  t->dim, i, label[i], got_d, want, min_d,
				  t->tol[i]);
			cr_assert(fabs(dist[i] - got_d) <= t->tol[i],
				  "%s dim %zu query %zu: dist %.9g exact %.9g",
				  simd_level_name((simd_level)lv), t->dim, i,
				  (double)dist[i], got_d);
		}
	}
	cfree(label);
	cfree(dist);
}

Test(dist_tiled, assign_matches_brute_force)
{
	/* Q and K off the tile sizes (6 queries x 4 blocks of 16 on
	 * AVX-512), K below one block, at one block, past a full tile. */
	static const size_t shapes[][2] = {{13, 37}, {13, 1}, {7, 16},
					   {13, 67}, {1, 5}};
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
		for (size_t di = 0; di < NDIMS; di++) {
			tiled_case t;
			case_make(&t, shapes[s][0], shapes[s][1], dims[di]);
			check_assign(&t);
			case_free(&t);
		}
	}
}

/* Enough queries for two query batches and enough centroids for two
 * chunks at dim 129, so that results merge across chunks. */
Test(dist_tiled, assign_merges_across_batches_and_chunks)
{
	tiled_case t;
	case_make(&t, 70, 600, 129);
	check_assign(&t);
	case_free(&t);
}

static void check_topm(tiled_case *t, size_t m)
{
	uint32_t *labels = cmalloc(t->nq * m * sizeof(uint32_t));
	float *dists = cmalloc(t->nq * m * sizeof(float));
	uint32_t *alabel = cmalloc(t->nq * sizeof(uint32_t));
	float *adist = cmalloc(t->nq * sizeof(float));
	double *sorted = cmalloc(t->k * sizeof(double));
	for (int lv = 0; lv <= (int)simd_level_best(); lv++) {
		const dist_kernels *k = dist_for_level((simd_level)lv);
		const char *name = simd_level_name((simd_level)lv);
		k->topm(&t->p, t->x, t->nq, t->xs, m, labels, dists);
		k->assign(&t->p, t->x, t->nq, t->xs, alabel, adist);
		for (size_t i = 0; i < t->nq; i++) {
			const uint32_t *l = labels + i * m;
			const float *d = dists + i * m;
			/* The m smallest exact distances, by a partial
			 * selection sort (K is small here). */
			memcpy(sorted, t->ref + i * t->k, t->k * sizeof(double));
			for (size_t r = 0; r < m; r++)
				for (size_t j = r + 1; j < t->k; j++)
					if (sorted[j] < sorted[r]) {
						double tmp = sorted[r];
						sorted[r] = sorted[j];
						sorted[j] = tmp;
					}
			/* Rank 1 is what assign chooses: same values, same
			 * tie rule. */
			cr_assert_eq(l[0], alabel[i], "%s dim %zu query %zu", name,
				     t->dim, i);
			for (size_t r = 0; r < m; r++) {
				cr_assert_lt(l[r], t->k);
				for (size_t s = 0; s < r; s++)
					cr_assert_neq(l[s], l[r], "%s: repeated label",
						      name);
				if (r > 0)
					cr_assert_leq(d[r - 1], d[r], "%s: not sorted",
						      name);
				double exact = t->ref[i * t->k + l[r]];
				cr_assert(fabs(exact - sorted[r]) <= t->tol[i],
					  "%s m %zu dim %zu query %zu rank %zu: "
					  "label %u (%.9g), rank's true distance %.9g",
					  name, m, t->dim, i, r, l[r], exact, sorted[r]);
				cr_assert(fabs(d[r] - exact) <= t->tol[i],
					  "%s: reported %.9g exact %.9g", name,
					  (double)d[r], exact);
			}
		}
	}
	cfree(labels);
	cfree(dists);
	cfree(alabel);
	cfree(adist);
	cfree(sorted);
}

Test(dist_tiled, topm_matches_brute_force)
{
	static const size_t ms[] = {1, 5, 16};
	for (size_t mi = 0; mi < 3; mi++) {
		for (size_t di = 0; di < NDIMS; di++) {
			tiled_case t;
			case_make(&t, 13, 37, dims[di]);
			check_topm(&t, ms[mi]);
			case_free(&t);
		}
	}
	tiled_case t;
	case_make(&t, 70, 600, 129);
	check_topm(&t, DIST_TOPM_MAX);
	case_free(&t);
}

/* Centroid i is a copy of centroid i % 4: copies give bit-identical
 * values, and every path must pick the lowest index among them, and rank
 * copies by index in top-m. Period 4 puts copies both in other lanes of the
 * same block and in the same lane of other blocks. */
Test(dist_tiled, ties_go_to_the_lowest_index)
{
	const size_t k = 37, dim = 17, nq = 13;
	float c[37 * 17], x[13 * 17];
	fill(c, 4 * dim);
	for (size_t i = 4; i < k; i++)
		memcpy(c + i * dim, c + (i % 4) * dim, dim * sizeof(float));
	fill(x, nq * dim);
	dist_packed p;
	cr_assert_eq(dist_pack(c, k, dim, dim, &p), 0);
	for (int lv = 0; lv <= (int)simd_level_best(); lv++) {
		const dist_kernels *kk = dist_for_level((simd_level)lv);
		uint32_t label[13], labels[13 * 16];
		float dist[13], dists[13 * 16];
		kk->assign(&p, x, nq, dim, label, dist);
		kk->topm(&p, x, nq, dim, 16, labels, dists);
		for (size_t i = 0; i < nq; i++) {
			cr_assert_lt(label[i], 4, "%s query %zu: label %u",
				     simd_level_name((simd_level)lv), i, label[i]);
			for (size_t r = 1; r < 16; r++)
				if (dists[i * 16 + r] == dists[i * 16 + r - 1])
					cr_assert_lt(labels[i * 16 + r - 1],
						     labels[i * 16 + r]);
			/* Nine or ten copies of the nearest come first. */
			cr_assert_eq(labels[i * 16], label[i]);
			cr_assert_eq(labels[i * 16 + 1], label[i] + 4);
		}
	}
	dist_packed_free(&p);
}

Test(dist_tiled, checked_calls_validate_arguments)
{
	float c[4 * 3], x[2 * 3];
	fill(c, 12);
	fill(x, 6);
	dist_packed p;
	uint32_t label[2 * 4];
	float dist[2 * 4];
	cr_assert_eq(dist_pack(c, 4, 3, 3, &p), 0);
	cr_assert_eq(dist_assign(&p, x, 2, 2, label, dist), -EINVAL);
	cr_assert_eq(dist_assign(&p, x, 0, 3, NULL, NULL), 0);
	cr_assert_eq(dist_assign(&p, x, 2, 3, label, dist), 0);
	cr_assert_eq(dist_topm(&p, x, 2, 3, 0, label, dist), -EINVAL);
	cr_assert_eq(dist_topm(&p, x, 2, 3, 5, label, dist), -EINVAL);
	cr_assert_eq(dist_topm(&p, x, 2, 3, 4, label, dist), 0);
	/* m = K: every centroid once, nearest first. */
	for (size_t i = 0; i < 2; i++) {
		unsigned seen = 0;
		for (size_t r = 0; r < 4; r++) {
			cr_assert_lt(label[i * 4 + r], 4);
			seen |= 1u << label[i * 4 + r];
			if (r > 0)
				cr_assert_leq(dist[i * 4 + r - 1], dist[i * 4 + r]);
		}
		cr_assert_eq(seen, 0xfu);
	}
	dist_packed_free(&p);
}

/* l2sq_u8_max: exact when the distance is at most the bound, else above
 * the bound; on every path and at dimensions with tails (shorter than a
 * vector, and past whole vectors: 63, 65, 129, 784 for every width). */
Test(dist_int8, l2sq_u8_max_exact_below_the_bound)
{
	static const size_t udims[] = {1, 3, 7, 16, 17, 63, 64, 65, 129, 784};
	uint64_t seed = 5;
	for (size_t di = 0; di < sizeof udims / sizeof udims[0]; di++) {
		size_t dim = udims[di];
		uint8_t *a = cmalloc(dim), *b = cmalloc(dim);
		for (int rep = 0; rep < 50; rep++) {
			for (size_t j = 0; j < dim; j++) {
				seed = seed * 6364136223846793005ull + 1;
				a[j] = (uint8_t)(seed >> 56);
				b[j] = (uint8_t)(seed >> 48);
			}
			int64_t want = 0;
			for (size_t j = 0; j < dim; j++)
				want += ((int)a[j] - b[j]) * ((int)a[j] - b[j]);
			int32_t bounds[] = { 0, (int32_t)(want / 3),
					     (int32_t)want - 1, (int32_t)want,
					     (int32_t)want + 1, INT32_MAX };
			for (int lv = 0; lv <= (int)simd_level_best(); lv++) {
				const dist_kernels *k =
					dist_for_level((simd_level)lv);
				for (int bi = 0; bi < 6; bi++) {
					int32_t r = k->l2sq_u8_max(a, b, dim,
								   bounds[bi]);
					if (want <= bounds[bi])
						cr_assert_eq(r, want, "%s dim %zu",
							     simd_level_name(
								(simd_level)lv),
							     dim);
					else
						cr_assert_gt(r, bounds[bi],
							     "%s dim %zu",
							     simd_level_name(
								(simd_level)lv),
							     dim);
				}
			}
		}
		cfree(a);
		cfree(b);
	}
}
