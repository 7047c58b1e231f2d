/*
 * k-means: recovery of well-separated clusters (adjusted Rand index),
 * determinism across thread counts, empty-cluster repair, the mini-batch
 * variant, and the objective against FAISS's k-means on the same data
 * (through /usr/bin/python3 with python3-faiss; skipped, saying so, where
 * that is not installed).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kmeans.h"

static uint64_t rng_state;

static double unit(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (double)(rng_state >> 11) / 9007199254740992.0;
}

static double gauss(void)
{
	double u = unit() + 1e-12, v = unit();
	return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

/* n points around k centres spread over [-scale, scale]^dim, unit noise. */
static float *mixture(size_t n, size_t dim, size_t k, double scale,
		      uint32_t *truth, uint64_t seed)
{
	rng_state = seed;
	float *centres = malloc(k * dim * sizeof(float));
	for (size_t i = 0; i < k * dim; i++)
		centres[i] = (float)((unit() * 2 - 1) * scale);
	float *x = malloc(n * dim * sizeof(float));
	for (size_t i = 0; i < n; i++) {
		size_t c = i % k;
		if (truth)
			truth[i] = (uint32_t)c;
		for (size_t j = 0; j < dim; j++)
			x[i * dim + j] = centres[c * dim + j] + (float)gauss();
	}
	free(centres);
	return x;
}

/* Adjusted Rand index of two labelings (Hubert and Arabie). */
static double ari(const uint32_t *a, const uint32_t *b, size_t n, size_t ka,
		  size_t kb)
{
	double *t = calloc(ka * kb, sizeof(double));
	double *ra = calloc(ka, sizeof(double)), *rb = calloc(kb, sizeof(double));
	for (size_t i = 0; i < n; i++) {
		t[a[i] * kb + b[i]]++;
		ra[a[i]]++;
		rb[b[i]]++;
	}
	double sij = 0, sa = 0, sb = 0;
	for (size_t i = 0; i < ka * kb; i++)
		sij += t[i] * (t[i] - 1) / 2;
	for (size_t i = 0; i < ka; i++)
		sa += ra[i] * (ra[i] - 1) / 2;
	for (size_t i = 0; i < kb; i++)
		sb += rb[i] * (rb[i] - 1) / 2;
	double pairs = (double)n * (double)(n - 1) / 2;
	double expected = sa * sb / pairs, max = (sa + sb) / 2;
	free(t);
	free(ra);
	free(rb);
	return (sij - expected) / (max - expected);
}

Test(kmeans, recovers_well_separated_clusters)
{
	const size_t n = 8000, dim = 16, k = 10;
	uint32_t *truth = malloc(n * sizeof(uint32_t));
	uint32_t *labels = malloc(n * sizeof(uint32_t));
	float *x = mixture(n, dim, k, 30, truth, 7);
	float *c = malloc(k * dim * sizeof(float));
	kmeans_opts o = { .seed = 1 };
	kmeans_stats st;
	cr_assert_eq(kmeans_train(x, n, dim, dim, k, &o, c, labels, &st), 0);
	double r = ari(truth, labels, n, k, k);
	cr_assert_geq(r, 0.95, "ARI %.4f", r);
	/* the objective of a perfect clustering is about n * dim (unit noise) */
	cr_assert_lt(st.objective, 1.2 * (double)n * dim, "objective %g",
		     st.objective);
	free(truth);
	free(labels);
	free(x);
	free(c);
}

/* Fewer points than the parallel loop has ranges (16): the empty ranges'
 * partial sums must not leak into the centroids. */
Test(kmeans, fewer_points_than_parallel_ranges)
{
	for (size_t n = 2; n < 20; n++) {
		float x[20];
		uint32_t labels[20];
		for (size_t i = 0; i < n; i++)
			x[i] = (i % 2) ? 10.0f : 0.0f;
		float c[2];
		kmeans_opts o = { .seed = n, .threads = 2 };
		kmeans_stats st;
		cr_assert_eq(kmeans_train(x, n, 1, 1, 2, &o, c, labels, &st),
			     0);
		float lo = c[0] < c[1] ? c[0] : c[1];
		float hi = c[0] < c[1] ? c[1] : c[0];
		cr_assert(lo == 0.0f && hi == 10.0f,
			  "n %zu: centroids %g %g", n, (double)c[0],
			  (double)c[1]);
		cr_assert_eq(st.objective, 0.0, "n %zu", n);
	}
}

Test(kmeans, same_result_on_one_thread_and_on_four)
{
	const size_t n = 5000, dim = 12, k = 17;
	float *x = mixture(n, dim, 9, 5, NULL, 3);
	float *c1 = malloc(k * dim * sizeof(float));
	float *c4 = malloc(k * dim * sizeof(float));
	kmeans_opts o = { .seed = 42, .threads = 1, .iters = 8 };
	cr_assert_eq(kmeans_train(x, n, dim, dim, k, &o, c1, NULL, NULL), 0);
	o.threads = 4;
	cr_assert_eq(kmeans_train(x, n, dim, dim, k, &o, c4, NULL, NULL), 0);
	cr_assert_arr_eq(c1, c4, k * dim * sizeof(float));
	o.seed = 43;
	cr_assert_eq(kmeans_train(x, n, dim, dim, k, &o, c4, NULL, NULL), 0);
	cr_assert(memcmp(c1, c4, k * dim * sizeof(float)) != 0,
		  "another seed should give other centroids");
	free(x);
	free(c1);
	free(c4);
}

Test(kmeans, empty_clusters_are_repaired)
{
	/* 3 distinct points, each many times, into 6 clusters */
	const size_t n = 600, dim = 4, k = 6;
	float *x = malloc(n * dim * sizeof(float));
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < dim; j++)
			x[i * dim + j] = (float)((i % 3) * 10 + j);
	float *c = malloc(k * dim * sizeof(float));
	uint32_t *labels = malloc(n * sizeof(uint32_t));
	kmeans_stats st;
	kmeans_opts o = { .seed = 5, .iters = 5 };
	cr_assert_eq(kmeans_train(x, n, dim, dim, k, &o, c, labels, &st), 0);
	cr_assert_gt(st.repaired, 0);
	/* duplicates only: every point sits on a centroid */
	cr_assert_lt(st.objective, 1e-3, "objective %g", st.objective);
	for (size_t i = 0; i < k * dim; i++)
		cr_assert(isfinite(c[i]));
	free(x);
	free(c);
	free(labels);
}

Test(kmeans, minibatch_finds_the_clusters_too)
{
	const size_t n = 20000, dim = 8, k = 6;
	uint32_t *truth = malloc(n * sizeof(uint32_t));
	uint32_t *labels = malloc(n * sizeof(uint32_t));
	float *x = mixture(n, dim, k, 25, truth, 11);
	float *c = malloc(k * dim * sizeof(float));
	kmeans_opts o = { .seed = 2, .batch = 1000, .iters = 50 };
	cr_assert_eq(kmeans_train(x, n, dim, dim, k, &o, c, labels, NULL), 0);
	double r = ari(truth, labels, n, k, k);
	cr_assert_geq(r, 0.95, "ARI %.4f", r);
	free(truth);
	free(labels);
	free(x);
	free(c);
}

Test(kmeans, bad_arguments)
{
	float x[8] = { 0 }, c[8];
	cr_assert_eq(kmeans_train(x, 2, 2, 2, 3, NULL, c, NULL, NULL), -EINVAL);
	cr_assert_eq(kmeans_train(x, 2, 2, 1, 1, NULL, c, NULL, NULL), -EINVAL);
	cr_assert_eq(kmeans_train(NULL, 2, 2, 2, 1, NULL, c, NULL, NULL), -EINVAL);
	cr_assert_eq(kmeans_train(x, 0, 2, 2, 1, NULL, c, NULL, NULL), -EINVAL);
}

/* FAISS's objective on the same data, through python3; NAN if absent. */
static double faiss_objective(const float *x, size_t n, size_t dim, size_t k)
{
	if (access("/usr/bin/python3", X_OK))
		return NAN;
	char path[] = "/tmp/cohort-kmeans-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return NAN;
	FILE *f = fdopen(fd, "wb");
	fwrite(x, sizeof(float), n * dim, f);
	fclose(f);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "/usr/bin/python3 -c 'import sys, numpy as np\n"
		 "try:\n import faiss\nexcept ImportError:\n print(\"nan\"); sys.exit(0)\n"
		 "x = np.fromfile(\"%s\", dtype=np.float32).reshape(-1, %zu)\n"
		 "km = faiss.Kmeans(%zu, %zu, niter=20, seed=1)\n"
		 "km.train(x)\n"
		 "d, _ = km.index.search(x, 1)\n"
		 "print(float(d.astype(np.float64).sum()))' 2>/dev/null",
		 path, dim, dim, k);
	FILE *p = popen(cmd, "r");
	double v = NAN;
	if (p) {
		if (fscanf(p, "%lf", &v) != 1)
			v = NAN;
		pclose(p);
	}
	unlink(path);
	return v;
}

Test(kmeans, objective_within_2_percent_of_faiss)
{
	/* overlapping clusters, so that the local optimum found matters */
	const size_t n = 20000, dim = 32, k = 50;
	float *x = mixture(n, dim, 40, 4, NULL, 99);
	double theirs = faiss_objective(x, n, dim, k);
	if (isnan(theirs)) {
		free(x);
		cr_skip_test("FAISS not available (/usr/bin/python3 with "
			     "python3-faiss and python3-numpy)");
	}
	float *c = malloc(k * dim * sizeof(float));
	kmeans_stats st;
	kmeans_opts o = { .seed = 1, .iters = 20 };
	cr_assert_eq(kmeans_train(x, n, dim, dim, k, &o, c, NULL, &st), 0);
	cr_log_info("objective: cohort %.6g, faiss %.6g (ratio %.4f)",
		    st.objective, theirs, st.objective / theirs);
	cr_assert_leq(st.objective, theirs * 1.02, "cohort %g vs faiss %g",
		      st.objective, theirs);
	free(x);
	free(c);
}
