/*
 * bench_persona.c -- suite `persona`: nearest-centroid assignment, the
 * kernel under personas (issue 4, benchmarks), on one thread; then what
 * keeping every row's persona current costs the store's writes.
 *
 * Data: K centroids and a pool of 4096 query vectors (1024 with --quick),
 * coordinates uniform in [-1, 1), from fixed seeds; the centroids are
 * packed once (dist_pack). The kernels are those of the SIMD path in use
 * (COHORT_SIMD forces one), reported as `path` on every line.
 *
 * Figures:
 *   fma_peak            multiply-adds/s of a register-only loop of
 *                       independent multiply-adds compiled for the same
 *                       path (dist_kernels.fma_peak): the ceiling
 *   assign_d64_k1024    vectors/s through the tiled assign kernel at
 *   assign_d32_k64      (d, K); each batch assigns a slice of the pool
 *   assign_d128_k4096   (about 8M multiply-adds), cycling through it; with
 *                       the multiply-adds/s that is (K x d per vector) and
 *                       its share of the peak
 *   topm8_d64_k1024     the same with the 8 nearest per vector (soft
 *                       membership)
 *   assign_vs_peak      multiply-adds/s of assign_d64_k1024 / fma_peak
 *                       (target >= 0.7)
 * The peak is measured before and after the assignments and the higher
 * kept, so that a clock that ramps during the run does not flatter the
 * ratio.
 *
 * Against FAISS (through /usr/bin/python3 with python3-faiss, the same data
 * written to a temp file; the figures are left out, saying so, where FAISS
 * is not installed):
 *   assign_vs_faiss     vectors/s of our assign against IndexFlatL2.search
 *                       with k=1, one thread each, d=64, K=1024, the same
 *                       20,000 queries (target >= 2)
 *   kmeans_time_vs_faiss  seconds of our k-means against faiss.Kmeans, both
 *                       on all 1M x 64 points (50K with --quick), K=1024
 *                       (64), 10 iterations, all cores (target <= 0.5)
 *
 * Before timing, every configuration's assignments of 64 pool vectors are
 * checked against a brute-force scan with the l2sq kernel (the chosen
 * centroid's exact distance must be the minimum, up to the expanded form's
 * rounding); a mismatch fails the suite.
 *
 * Persona models in an in-memory database (cohort_persona_upload of the
 * true centres of clustered data, K=1024, one vec column of d=64; the data
 * is described at struct clusters and printed as a note):
 *   put_d64_at_once     ns per cohort_put of one row's vector moved by a
 *                       small step, with an AT_ONCE model, beside the same
 *                       puts on a table without one (100K rows, 20K with
 *                       --quick); the difference is reassign_ns
 *   fullscan_d64_k1024  ns for the nearest of the K centres of one vector,
 *                       dist_assign one query a call
 *   reassign_vs_fullscan  fullscan / reassign (target >= 3)
 *   ingest_load         rows/s loading three tables of 1M rows (50K), and
 *                       the seconds of the two uploads
 *   ingest_*            events/s of cohort_event (SET the vector, ADD 1 to
 *                       a counter) on random keys from 2 threads, 2M events
 *                       (200K): no model, BACKGROUND (the time to drain its
 *                       queue included), AT_ONCE; small steps, then jumps to
 *                       another cluster (ingest_jump_*, 500K events
 *                       (50K)), where no bound holds and every event
 *                       costs a scan
 *   ingest_with_persona_vs_without  BACKGROUND / no model for small steps
 *                       (target >= 0.5), beside the AT_ONCE and jump ratios
 * Medians of paired repetitions, since a write's own cost varies more than
 * the kernels'. Afterwards 1000 random rows of each model are checked: the
 * persona kept must be the nearest centre of the stored vector, nothing
 * pending, every row assigned; a mismatch fails the suite.
 */
#include "bench_int.h"
#include "cohort.h"
#include "dist.h"
#include "kmeans.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SEED 0x70657273ull        /* "pers" */
#define TARGET_PEAK 0.7           /* assign_vs_peak >= */
#define DISTURBED 0.9
#define BATCH_MADDS (8u << 20)    /* multiply-adds per batch */

typedef struct persona_run {
	const dist_kernels *k;
	dist_packed c;
	float *pool;              /* npool x dim */
	size_t npool, dim, batch, pos, m;
	uint32_t *labels;         /* batch * m */
	float *dists;
	uint64_t peak_iters;
	float sink[4];
} persona_run;

static uint64_t assign_batch(void *p)
{
	persona_run *r = p;
	if (r->pos + r->batch > r->npool)
		r->pos = 0;
	const float *x = r->pool + r->pos * r->dim;
	if (r->m == 0)
		r->k->assign(&r->c, x, r->batch, r->dim, r->labels, r->dists);
	else
		r->k->topm(&r->c, x, r->batch, r->dim, r->m, r->labels,
			   r->dists);
	r->pos += r->batch;
	return r->batch;
}

static uint64_t peak_batch(void *p)
{
	persona_run *r = p;
	return r->k->fma_peak(r->peak_iters, r->sink);
}

static void fill(bench_rng *rng, float *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		v[i] = 2.0f * bench_rng_float(rng) - 1.0f;
}

/* The first 64 pool vectors against a brute-force scan. */
static int check(persona_run *r, const float *cents, size_t kk)
{
	size_t n = r->npool < 64 ? r->npool : 64;
	uint32_t label[64];
	float dist[64], *all = bench_alloc(kk * sizeof(float));
	r->k->assign(&r->c, r->pool, n, r->dim, label, dist);
	int bad = 0;
	for (size_t i = 0; i < n && !bad; i++) {
		const float *x = r->pool + i * r->dim;
		r->k->l2sq_many(x, cents, r->dim, kk, r->dim, all);
		float lo = all[0];
		for (size_t j = 1; j < kk; j++)
			lo = all[j] < lo ? all[j] : lo;
		/* Coordinates in [-1, 1): |x| + |c| <= 2 sqrt(d); the expanded
		 * form is within about (d + 5) 2^-24 (|x| + |c|)^2 (dist.h). */
		double tol = 2.0 * (double)(r->dim + 5) * ldexp(1.0, -24) *
			     4.0 * (double)r->dim;
		if (label[i] >= kk || all[label[i]] - lo > tol) {
			fprintf(stderr, "cohort-bench persona: d=%zu K=%zu vector "
				"%zu: assigned %u at %g, the minimum is %g\n",
				r->dim, kk, i, label[i],
				label[i] < kk ? (double)all[label[i]] : NAN,
				(double)lo);
			bad = 1;
		}
	}
	free(all);
	return bad;
}

static void report(const bench_ctx *ctx, const char *metric, double value,
		   const char *unit, const bench_stats *s, const char *path)
{
	char stat[32];
	snprintf(stat, sizeof stat, "best of %d", s->runs);
	bench_line l = bench_line_make(metric, value, unit, 1);
	bench_line_str(&l, "stat", stat);
	bench_line_str(&l, "path", path);
	bench_line_num(&l, "cpu_share", s->cpu_share);
	if (s->cpu_share < DISTURBED)
		bench_line_bool(&l, "disturbed", true);
	bench_report(ctx, &l);
}

static int measure_peak(const bench_ctx *ctx, persona_run *r,
			bench_stats *s)
{
	void *targ = r;
	r->sink[0] = 0.999999f;
	r->sink[1] = 1e-3f;
	r->sink[2] = 1.0f;
	/* about 0.1 ms a batch at 50 G multiply-adds/s */
	r->peak_iters = 20000;
	if (bench_measure(ctx, 1, peak_batch, &targ, s) != 0)
		return 1;
	/* ops are multiply-adds here: the batch returns them */
	bench_sink(r->sink[3]);
	return 0;
}

typedef struct shape {
	const char *metric;
	size_t dim, k, m;
} shape;

/* Write n floats to a new temp file; its path in path (64 bytes). */
static int write_tmp(const float *v, size_t n, char *path)
{
	snprintf(path, 64, "/tmp/cohort-bench-faiss-XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	FILE *f = fdopen(fd, "wb");
	size_t w = fwrite(v, sizeof(float), n, f);
	fclose(f);
	return w == n ? 0 : -1;
}

/* Run a python snippet with FAISS; its stdout's first two numbers. */
static int faiss_run(const char *script, int threads, double *a, double *b)
{
	char cmd[2048], env[64] = "";
	/* OpenBLAS has its own threads besides FAISS's OpenMP ones */
	if (threads > 0)
		snprintf(env, sizeof env, "OPENBLAS_NUM_THREADS=%d OMP_NUM_THREADS=%d ",
			 threads, threads);
	snprintf(cmd, sizeof cmd, "%s/usr/bin/python3 -c '%s' 2>/dev/null", env,
		 script);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	int got = fscanf(p, "%lf %lf", a, b);
	int st = pclose(p);
	return got == 2 && st == 0 ? 0 : -1;
}

static int vs_faiss(const bench_ctx *ctx)
{
	if (access("/usr/bin/python3", X_OK) ||
	    system("/usr/bin/python3 -c 'import faiss, numpy' 2>/dev/null")) {
		bench_note(ctx, "FAISS not installed (python3-faiss, "
			   "python3-numpy): assign_vs_faiss and "
			   "kmeans_time_vs_faiss left out");
		return 0;
	}
	/* assignment, one thread each */
	const size_t dim = 64, kk = 1024, nq = 20000;
	bench_rng rng;
	bench_rng_seed(&rng, SEED ^ 0xfa155);
	float *cents = bench_alloc(kk * dim * sizeof(float));
	float *q = bench_alloc(nq * dim * sizeof(float));
	fill(&rng, cents, kk * dim);
	fill(&rng, q, nq * dim);
	char pc[64], pq[64], script[1536];
	if (write_tmp(cents, kk * dim, pc) || write_tmp(q, nq * dim, pq))
		return 1;
	snprintf(script, sizeof script,
		 "import time, numpy as np, faiss\n"
		 "faiss.omp_set_num_threads(1)\n"
		 "c = np.fromfile(\"%s\", dtype=np.float32).reshape(-1, %zu)\n"
		 "q = np.fromfile(\"%s\", dtype=np.float32).reshape(-1, %zu)\n"
		 "ix = faiss.IndexFlatL2(%zu); ix.add(c)\n"
		 "best = 1e9\n"
		 "for r in range(3):\n"
		 " t = time.perf_counter(); ix.search(q, 1); best = min(best, time.perf_counter() - t)\n"
		 "print(%zu / best, 0)\n", pc, dim, pq, dim, dim, nq);
	double faiss_vps = 0, unused;
	int frc = faiss_run(script, 1, &faiss_vps, &unused);
	dist_packed P;
	uint32_t *lab = bench_alloc(nq * sizeof(uint32_t));
	float *dd = bench_alloc(nq * sizeof(float));
	double ours = 1e9;
	if (dist_pack(cents, kk, dim, dim, &P) == 0) {
		for (int r = 0; r < 3; r++) {
			double t0 = bench_now();
			dist_assign(&P, q, nq, dim, lab, dd);
			double dt = bench_now() - t0;
			ours = dt < ours ? dt : ours;
		}
		dist_packed_free(&P);
	}
	unlink(pc);
	unlink(pq);
	free(cents);
	free(q);
	free(lab);
	free(dd);
	if (frc == 0) {
		double our_vps = (double)nq / ours;
		bench_line l = bench_line_make("assign_vs_faiss", our_vps / faiss_vps,
					       "ratio", 1);
		bench_line_num(&l, "cohort_vectors_s", our_vps);
		bench_line_num(&l, "faiss_vectors_s", faiss_vps);
		bench_line_str(&l, "what", "d=64 K=1024, 20000 queries, "
			       "IndexFlatL2.search k=1, one thread each");
		bench_line_str(&l, "target", ">= 2");
		bench_line_bool(&l, "meets_target", our_vps / faiss_vps >= 2);
		bench_report(ctx, &l);
	}

	/* k-means, all cores each */
	const size_t n = ctx->quick ? 50000 : 1000000;
	const size_t K = ctx->quick ? 64 : 1024;
	float *x = bench_alloc(n * dim * sizeof(float));
	/* clustered data: points around 4K centres */
	float *centres = bench_alloc(4 * K * dim * sizeof(float));
	fill(&rng, centres, 4 * K * dim);
	for (size_t i = 0; i < n; i++) {
		const float *c = centres + bench_rng_below(&rng, 4 * K) * dim;
		for (size_t j = 0; j < dim; j++)
			x[i * dim + j] = c[j] + 0.1f *
				(bench_rng_float(&rng) * 2 - 1);
	}
	free(centres);
	char px[64];
	if (write_tmp(x, n * dim, px))
		return 1;
	snprintf(script, sizeof script,
		 "import time, numpy as np, faiss\n"
		 "x = np.fromfile(\"%s\", dtype=np.float32).reshape(-1, %zu)\n"
		 "km = faiss.Kmeans(%zu, %zu, niter=10, seed=1, "
		 "max_points_per_centroid=%zu)\n"
		 "t = time.perf_counter(); km.train(x); dt = time.perf_counter() - t\n"
		 "d, _ = km.index.search(x, 1)\n"
		 "print(dt, float(d.astype(np.float64).sum()))\n",
		 px, dim, dim, K, n);
	double faiss_s = 0, faiss_obj = 0;
	frc = faiss_run(script, 0, &faiss_s, &faiss_obj);
	unlink(px);
	float *cent = bench_alloc(K * dim * sizeof(float));
	kmeans_opts o = { .iters = 10, .seed = 1 };
	kmeans_stats st;
	double t0 = bench_now();
	int rc = kmeans_train(x, n, dim, dim, K, &o, cent, NULL, &st);
	double ours_s = bench_now() - t0;
	free(x);
	free(cent);
	if (rc) {
		fprintf(stderr, "cohort-bench persona: kmeans_train: %d\n", rc);
		return 1;
	}
	if (frc == 0) {
		bench_line l = bench_line_make("kmeans_time_vs_faiss",
					       ours_s / faiss_s, "ratio", ctx->cores);
		bench_line_num(&l, "cohort_s", ours_s);
		bench_line_num(&l, "faiss_s", faiss_s);
		bench_line_num(&l, "cohort_objective", st.objective);
		bench_line_num(&l, "faiss_objective", faiss_obj);
		bench_line_str(&l, "what", ctx->quick ? "50K x 64, K=64, 10 iterations" :
			       "1M x 64, K=1024, 10 iterations, all points");
		bench_line_str(&l, "target", "<= 0.5");
		bench_line_bool(&l, "meets_target", ours_s / faiss_s <= 0.5);
		bench_report(ctx, &l);
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Persona models in the store: what keeping every row's persona current
 * costs a write.
 *
 * Data: MK cluster centres uniform in [-1, 1)^MDIM (far apart: the nearest
 * pair is printed), and row r of a table lives in cluster home(r) at
 *   centre[home(r)] + offset[o(r)] + drift[j],
 * offset from a pool of NOFF Gaussian offsets of sd SIGMA per coordinate,
 * drift from a pool of NDRIFT Gaussian vectors of sd STEP / sqrt(2). An
 * update draws a new j: the vector moves by the difference of two drifts,
 * a step of sd STEP per coordinate, and stays around its own point instead
 * of wandering off as a random walk would. A jump puts the row in a random
 * other cluster. Pools keep the cost of making a vector (two adds a
 * coordinate) far under the cost of the write, so the figures are the
 * store's. Keys are the row number as 4 bytes.
 * ------------------------------------------------------------------------ */
#define MDIM 64
#define MK 1024
#define SIGMA 0.1                 /* sd per coordinate around a centre */
#define STEP (0.05 * SIGMA)       /* sd per coordinate of one update */
#define NOFF 65536
#define NDRIFT 4096
#define T_MODEL 1700000000000ll   /* fixed event times: runs repeat exactly */
#define TARGET_REASSIGN 3.0       /* reassign_vs_fullscan >= */
#define TARGET_INGEST 0.5         /* ingest_with_persona_vs_without >= */
#define EV_BATCH 64               /* events per bench_run batch */
#define NCHECK 1000               /* rows checked against a brute force */

typedef struct clusters {
	float *centres;           /* MK x MDIM */
	float *offsets;           /* NOFF x MDIM */
	float *drifts;            /* NDRIFT x MDIM */
	double min_gap;           /* distance of the nearest two centres */
} clusters;

/* A standard normal deviate (Box-Muller, one of the pair). */
static double gauss(bench_rng *rng)
{
	double u = ((double)(bench_rng_next(rng) >> 11) + 0.5) * 0x1p-53;
	double v = (double)(bench_rng_next(rng) >> 11) * 0x1p-53;
	return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static void clusters_make(clusters *cl)
{
	bench_rng rng;
	bench_rng_seed(&rng, SEED ^ 0xc1u);
	cl->centres = bench_alloc((size_t)MK * MDIM * sizeof(float));
	cl->offsets = bench_alloc((size_t)NOFF * MDIM * sizeof(float));
	cl->drifts = bench_alloc((size_t)NDRIFT * MDIM * sizeof(float));
	fill(&rng, cl->centres, (size_t)MK * MDIM);
	for (size_t i = 0; i < (size_t)NOFF * MDIM; i++)
		cl->offsets[i] = (float)(SIGMA * gauss(&rng));
	for (size_t i = 0; i < (size_t)NDRIFT * MDIM; i++)
		cl->drifts[i] = (float)(STEP / sqrt(2.0) * gauss(&rng));
	const dist_kernels *k = dist_get();
	float all[MK];
	double lo = INFINITY;
	for (size_t i = 0; i + 1 < MK; i++) {
		k->l2sq_many(cl->centres + i * MDIM, cl->centres + (i + 1) * MDIM,
			     MDIM, MK - 1 - i, MDIM, all);
		for (size_t j = 0; j < MK - 1 - i; j++)
			lo = all[j] < lo ? all[j] : lo;
	}
	cl->min_gap = sqrt(lo);
}

static void clusters_free(clusters *cl)
{
	free(cl->centres);
	free(cl->offsets);
	free(cl->drifts);
}

static uint64_t row_hash(uint64_t r)
{
	uint64_t x = r ^ SEED;
	return bench_splitmix64(&x);
}

static uint32_t row_home(uint64_t r)
{
	return (uint32_t)(row_hash(r) % MK);
}

/* Row r's vector in cluster c with drift j. */
static void row_vec(const clusters *cl, uint64_t r, uint32_t c, uint32_t j,
		    float *out)
{
	const float *a = cl->centres + (size_t)c * MDIM;
	const float *b = cl->offsets + (size_t)((row_hash(r) >> 32) % NOFF) * MDIM;
	const float *d = cl->drifts + (size_t)j * MDIM;
	for (size_t i = 0; i < MDIM; i++)
		out[i] = a[i] + b[i] + d[i];
}

static void row_key(uint64_t r, uint8_t key[4])
{
	uint32_t k = (uint32_t)r;
	memcpy(key, &k, 4);
}

/* A table "name" of nrows rows: vec column v (MDIM) and a counter n, each
 * row at home with drift r % NDRIFT. Returns 0, or 1 after reporting. */
static int table_load(cohort_db *db, const char *name, const clusters *cl,
		      uint64_t nrows, cohort_table **t, int *vcol, int *ncol)
{
	cohort_column_def defs[2] = {
		{ .name = "v", .type = COHORT_VEC, .dim = MDIM },
		{ .name = "n", .type = COHORT_COUNTER },
	};
	int rc = cohort_table_create(db, name, defs, 2, NULL, t);
	if (rc < 0)
		return bench_fail("persona", "cohort_table_create", rc);
	*vcol = cohort_table_column(*t, "v");
	*ncol = cohort_table_column(*t, "n");
	if (*vcol < 0 || *ncol < 0)
		return bench_fail("persona", "cohort_table_column",
				  *vcol < 0 ? *vcol : *ncol);
	float v[MDIM];
	uint8_t key[4];
	cohort_field f = { .column = *vcol };
	for (uint64_t r = 0; r < nrows; r++) {
		row_vec(cl, r, row_home(r), (uint32_t)(r % NDRIFT), v);
		row_key(r, key);
		f.value = cohort_vec(v, MDIM);
		rc = cohort_put(*t, key, 4, T_MODEL, &f, 1);
		if (rc < 0)
			return bench_fail("persona", "cohort_put (load)", rc);
	}
	return 0;
}

/* Attach model "p" over column vcol: the true centres, uploaded. */
static int attach(cohort_table *t, int vcol, cohort_persona_mode mode,
		  const clusters *cl, double *secs)
{
	cohort_persona_def def = {
		.columns = &vcol, .ncolumns = 1, .mode = mode,
	};
	double t0 = bench_now();
	int rc = cohort_persona_upload(t, "p", &def, MK, MDIM, cl->centres,
				       NULL, NULL);
	*secs = bench_now() - t0;
	if (rc < 0)
		return bench_fail("persona", "cohort_persona_upload", rc);
	return 0;
}

/*
 * NCHECK random rows: the persona the store keeps must be the nearest
 * centre of the vector stored (brute force over all of them), with nothing
 * pending, and every row must have one. Returns 0, or 1 after reporting.
 */
static int check_model(cohort_table *t, int vcol, const clusters *cl,
		       uint64_t nrows, const char *what)
{
	const dist_kernels *k = dist_get();
	cohort_persona_info info;
	int rc = cohort_persona_describe(t, "p", &info);
	if (rc < 0)
		return bench_fail("persona", "cohort_persona_describe", rc);
	if (info.assigned != nrows || info.pending != 0) {
		fprintf(stderr, "cohort-bench persona: %s: %llu rows assigned "
			"of %llu, %llu pending\n", what,
			(unsigned long long)info.assigned,
			(unsigned long long)nrows,
			(unsigned long long)info.pending);
		return 1;
	}
	bench_rng rng;
	bench_rng_seed(&rng, SEED ^ 0xc4ec);
	float v[MDIM], all[MK];
	for (int i = 0; i < NCHECK; i++) {
		uint64_t r = bench_rng_below(&rng, nrows);
		uint8_t key[4];
		cohort_value val;
		cohort_persona_state ps;
		row_key(r, key);
		rc = cohort_get(t, key, 4, &vcol, 1, T_MODEL, &val, v, MDIM, NULL);
		if (rc != COHORT_ROW_PRESENT)
			return bench_fail("persona", "check: cohort_get",
					  rc < 0 ? rc : COHORT_ENOTFOUND);
		rc = cohort_persona_get(t, "p", key, 4, &ps);
		if (rc < 0)
			return bench_fail("persona", "check: cohort_persona_get", rc);
		k->l2sq_many(v, cl->centres, MDIM, MK, MDIM, all);
		float lo = all[0];
		for (size_t j = 1; j < MK; j++)
			lo = all[j] < lo ? all[j] : lo;
		/* the store ranks by exact distances, we by float sums */
		if (ps.pending || ps.persona >= MK ||
		    all[ps.persona] - lo > 1e-4f * (lo + 1.0f)) {
			fprintf(stderr, "cohort-bench persona: %s: row %llu is "
				"kept in persona %u%s, at %g; the nearest is at "
				"%g\n", what, (unsigned long long)r, ps.persona,
				ps.pending ? " (pending)" : "",
				ps.persona < MK ? (double)all[ps.persona] : NAN,
				(double)lo);
			return 1;
		}
	}
	return 0;
}

static double thread_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double median_of(double *x, int n)
{
	bench_stats s;
	bench_stats_of(x, n, &s);
	return s.median;
}

/*
 * reassign_vs_fullscan: one thread puts a single row's vector, moved by a
 * small step, into two tables holding the same rows, one with an AT_ONCE
 * model and one without; the difference of the times is what keeping the
 * persona costs. Against it, the scan that a store without bounds would do:
 * the nearest of the MK centres for one vector, dist_assign one query at a
 * time. Each repetition applies the same updates to both tables, in turn
 * first and second; the figures are medians over the repetitions.
 */
static int reassign_bench(const bench_ctx *ctx, const clusters *cl)
{
	const uint64_t nrows = ctx->quick ? 20000 : 100000;
	const size_t nput = ctx->quick ? 5000 : 50000;
	const size_t nscan = ctx->quick ? 1000 : 10000;
	const int reps = ctx->quick ? 3 : 9;
	cohort_db *db = NULL;
	cohort_table *tm, *tp;
	int vm, vp, unused, rc, bad = 1;
	double upload_s;

	rc = cohort_open(NULL, NULL, &db);
	if (rc < 0)
		return bench_fail("persona", "cohort_open", rc);
	if (table_load(db, "with_model", cl, nrows, &tm, &vm, &unused) ||
	    table_load(db, "no_model", cl, nrows, &tp, &vp, &unused) ||
	    attach(tm, vm, COHORT_PERSONA_AT_ONCE, cl, &upload_s)) {
		cohort_close(db);
		return 1;
	}

	uint32_t *rows = bench_alloc(nput * sizeof(uint32_t));
	float *vecs = bench_alloc(nput * MDIM * sizeof(float));
	double with[16], without[16], diff[16], scan[16];
	bench_rng rng;
	bench_rng_seed(&rng, SEED ^ 0x7ea5);
	dist_packed P;
	memset(&P, 0, sizeof P);
	rc = dist_pack(cl->centres, MK, MDIM, MDIM, &P);
	if (rc < 0) {
		fprintf(stderr, "cohort-bench persona: dist_pack: %d\n", rc);
		goto out;
	}
	/* repetition 0 warms both tables and is not counted */
	double wall0 = bench_now(), cpu0 = thread_cpu();
	for (int rep = 0; rep <= reps; rep++) {
		for (size_t i = 0; i < nput; i++) {
			rows[i] = (uint32_t)bench_rng_below(&rng, nrows);
			row_vec(cl, rows[i], row_home(rows[i]),
				(uint32_t)bench_rng_below(&rng, NDRIFT),
				vecs + i * MDIM);
		}
		double secs[2];
		for (int side = 0; side < 2; side++) {
			/* odd repetitions time the table without the model first */
			int which = side ^ (rep & 1);
			cohort_table *t = which ? tp : tm;
			cohort_field f = { .column = which ? vp : vm };
			double t0 = bench_now();
			for (size_t i = 0; i < nput; i++) {
				uint8_t key[4];
				row_key(rows[i], key);
				f.value = cohort_vec(vecs + i * MDIM, MDIM);
				rc = cohort_put(t, key, 4, T_MODEL, &f, 1);
				if (rc < 0) {
					bench_fail("persona", "cohort_put", rc);
					goto out;
				}
			}
			secs[which] = bench_now() - t0;
		}
		uint32_t label;
		float dist;
		double t0 = bench_now();
		for (size_t i = 0; i < nscan; i++) {
			dist_assign(&P, vecs + i * MDIM, 1, MDIM, &label, &dist);
			bench_sink(label);
		}
		double scan_s = bench_now() - t0;
		if (rep == 0)
			continue;
		with[rep - 1] = secs[0] / (double)nput * 1e9;
		without[rep - 1] = secs[1] / (double)nput * 1e9;
		diff[rep - 1] = with[rep - 1] - without[rep - 1];
		scan[rep - 1] = scan_s / (double)nscan * 1e9;
	}
	/* the share of the time this thread ran: below DISTURBED, other work
	 * on the machine took some of it */
	double share = (thread_cpu() - cpu0) / (bench_now() - wall0);
	if (check_model(tm, vm, cl, nrows, "reassign_vs_fullscan"))
		goto out;

	double with_ns = median_of(with, reps);
	double without_ns = median_of(without, reps);
	double reassign_ns = median_of(diff, reps);
	double scan_ns = median_of(scan, reps);
	char stat[32];
	snprintf(stat, sizeof stat, "median of %d", reps);

	bench_line l = bench_line_make("put_d64_at_once", with_ns, "ns/put", 1);
	bench_line_str(&l, "stat", stat);
	bench_line_num(&l, "no_model_ns", without_ns);
	bench_line_num(&l, "reassign_ns", reassign_ns);
	bench_line_num(&l, "rows", (double)nrows);
	bench_line_num(&l, "k", MK);
	bench_line_num(&l, "upload_s", upload_s);
	bench_report(ctx, &l);

	l = bench_line_make("fullscan_d64_k1024", scan_ns, "ns/vector", 1);
	bench_line_str(&l, "stat", stat);
	bench_line_str(&l, "what", "dist_assign, one query a call");
	bench_line_str(&l, "path", simd_level_name(simd_level_get()));
	bench_report(ctx, &l);

	/* a difference lost in the noise gives no ratio, not a flattering one */
	double ratio = reassign_ns > 0 ? scan_ns / reassign_ns : NAN;
	l = bench_line_make("reassign_vs_fullscan", ratio, "ratio", 1);
	bench_line_num(&l, "reassign_ns", reassign_ns);
	bench_line_num(&l, "fullscan_ns", scan_ns);
	bench_line_str(&l, "what", "put with an AT_ONCE model minus put "
		       "without, against the nearest of 1024 by dist_assign; "
		       "d=64, steps of 0.05 sigma");
	bench_line_str(&l, "target", ">= 3");
	bench_line_bool(&l, "meets_target", ratio >= TARGET_REASSIGN);
	bench_line_num(&l, "cpu_share", share);
	if (share < DISTURBED)
		bench_line_bool(&l, "disturbed", true);
	bench_report(ctx, &l);
	bad = 0;
out:
	dist_packed_free(&P);
	free(rows);
	free(vecs);
	rc = cohort_close(db);
	if (rc < 0 && !bad)
		bad = bench_fail("persona", "cohort_close", rc);
	return bad;
}

/* One ingest thread. The threads take batches of events from one shared
 * count, so that a run does exactly its number of events however the
 * threads are scheduled. */
typedef struct ingest_thread {
	cohort_table *t;
	const clusters *cl;
	int vcol, ncol;
	bool jump;
	uint64_t nrows, nevents;
	_Atomic uint64_t *taken;  /* events handed out so far */
	bench_rng rng;
	int err;
	const char *err_what;
	char err_detail[256];
	float v[MDIM];
} ingest_thread;

static uint64_t ingest_batch(void *p)
{
	ingest_thread *it = p;
	cohort_update up[2] = {
		{ .column = it->vcol, .op = COHORT_OP_SET },
		{ .column = it->ncol, .op = COHORT_OP_ADD,
		  .value = cohort_f64(1.0) },
	};
	uint64_t from = atomic_fetch_add_explicit(it->taken, EV_BATCH,
						 memory_order_relaxed);
	if (from >= it->nevents)
		return 0;
	uint64_t n = it->nevents - from < EV_BATCH ? it->nevents - from :
		     EV_BATCH;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t r = bench_rng_below(&it->rng, it->nrows);
		uint32_t c = row_home(r);
		if (it->jump)
			c = (c + 1 + (uint32_t)bench_rng_below(&it->rng, MK - 1)) % MK;
		row_vec(it->cl, r, c, (uint32_t)bench_rng_below(&it->rng, NDRIFT),
			it->v);
		up[0].value = cohort_vec(it->v, MDIM);
		uint8_t key[4];
		row_key(r, key);
		int rc = cohort_event(it->t, key, 4, T_MODEL + 1, up, 2);
		if (rc < 0) {
			it->err = rc;
			it->err_what = "cohort_event";
			snprintf(it->err_detail, sizeof it->err_detail, "%s",
				 cohort_errdetail());
			return 0;
		}
	}
	return n;
}

typedef struct ingest_figure {
	double events_s, seconds, drain_s, cpu_share;
	uint64_t events;
} ingest_figure;

/* nevents events over 2 threads on t, from seed; with a background model,
 * the time until its queue is empty counts too. */
static int ingest_run(cohort_table *t, int vcol, int ncol, bool model,
		      const clusters *cl, uint64_t nrows, uint64_t nevents,
		      bool jump, uint64_t seed, ingest_figure *out)
{
	enum { NT = 2 };
	ingest_thread *its = bench_alloc(NT * sizeof *its);
	void *targs[NT];
	_Atomic uint64_t taken;
	atomic_init(&taken, 0);
	for (uint32_t i = 0; i < NT; i++) {
		ingest_thread *it = &its[i];
		it->t = t;
		it->cl = cl;
		it->vcol = vcol;
		it->ncol = ncol;
		it->jump = jump;
		it->nrows = nrows;
		it->nevents = nevents;
		it->taken = &taken;
		/* the same seeds for every table: the same events, up to
		 * which thread gets how many of them */
		bench_rng_seed(&it->rng, seed ^ ((uint64_t)i << 32));
		targs[i] = it;
	}
	bench_result r;
	int bad = bench_run(NT, 1e9, ingest_batch, targs, &r) != 0;
	double t0 = bench_now();
	cohort_persona_info info;
	info.pending = 0;
	while (!bad && model) {
		int rc = cohort_persona_describe(t, "p", &info);
		if (rc < 0) {
			bad = bench_fail("persona", "cohort_persona_describe", rc);
			break;
		}
		if (info.pending == 0)
			break;
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
	}
	double drain = model ? bench_now() - t0 : 0;
	for (int i = 0; i < NT && !bad; i++) {
		if (!its[i].err)
			continue;
		fprintf(stderr, "cohort-bench persona: thread %d: %s: %s (%d)%s%s\n",
			i, its[i].err_what, cohort_strerror(its[i].err),
			its[i].err, *its[i].err_detail ? ": " : "",
			its[i].err_detail);
		bad = 1;
	}
	free(its);
	out->events = r.ops;
	out->seconds = r.seconds + drain;
	out->drain_s = drain;
	out->events_s = (double)r.ops / out->seconds;
	out->cpu_share = r.cpu_share;
	return bad;
}

#define INGEST_REPS_MAX 8

/* The figures of one table over the repetitions: medians, the ratio to the
 * table without a model as the median of the per-repetition ratios (each
 * pair ran back to back, so a slower spell of the machine cancels). */
typedef struct ingest_sum {
	double events_s, seconds, drain_ms, cpu_share, vs_none;
} ingest_sum;

static void ingest_sum_of(const ingest_figure *f, const ingest_figure *base,
			  int reps, ingest_sum *out)
{
	double a[INGEST_REPS_MAX], b[INGEST_REPS_MAX], c[INGEST_REPS_MAX],
	       d[INGEST_REPS_MAX], e[INGEST_REPS_MAX];
	for (int r = 0; r < reps; r++) {
		a[r] = f[r].events_s;
		b[r] = f[r].seconds;
		c[r] = f[r].drain_s * 1e3;
		d[r] = f[r].cpu_share;
		e[r] = f[r].events_s / base[r].events_s;
	}
	out->events_s = median_of(a, reps);
	out->seconds = median_of(b, reps);
	out->drain_ms = median_of(c, reps);
	out->cpu_share = median_of(d, reps);
	out->vs_none = median_of(e, reps);
}

static void ingest_report(const bench_ctx *ctx, const char *metric,
			  const ingest_sum *s, int reps, uint64_t nevents,
			  bool model)
{
	char stat[32];
	snprintf(stat, sizeof stat, reps > 1 ? "median of %d" : "%d run", reps);
	bench_line l = bench_line_make(metric, s->events_s, "events/s", 2);
	bench_line_str(&l, "stat", stat);
	bench_line_num(&l, "events", (double)nevents);
	bench_line_num(&l, "seconds", s->seconds);
	if (model) {
		bench_line_num(&l, "drain_ms", s->drain_ms);
		bench_line_num(&l, "vs_no_model", s->vs_none);
	}
	/* below 1 with a background model: its worker shares the 2 cores */
	bench_line_num(&l, "writer_cpu_share", s->cpu_share);
	bench_report(ctx, &l);
}

/*
 * ingest_with_persona_vs_without: events (SET the vector, ADD 1 to the
 * counter) on random keys from 2 threads, on three tables loaded the same:
 * no model, a BACKGROUND model and an AT_ONCE one. First small steps (the
 * target; repeated, each repetition running the three tables back to back
 * in a rotating order), then, once, jumps to a random other cluster, where
 * no bound holds and every event costs a scan (said so that nobody reads
 * the first figure as the price of every workload).
 */
static int ingest_bench(const bench_ctx *ctx, const clusters *cl)
{
	const uint64_t nrows = ctx->quick ? 50000 : 1000000;
	/* the jumps are context (no target) and each costs a full scan: a
	 * quarter of the events measures their rate as well, in a quarter of
	 * the time (AT_ONCE's took 10 s of the suite's 100 on a quiet
	 * machine, 100 s on a busy one) */
	const uint64_t nevents_of[2] = { ctx->quick ? 200000 : 2000000,
					 ctx->quick ? 50000 : 500000 };
	const int reps[2] = { ctx->quick ? 1 : 3, 1 };
	static const char *names[3] = { "no_model", "background", "at_once" };
	static const char *metrics[2][3] = {
		{ "ingest_no_model", "ingest_background", "ingest_at_once" },
		{ "ingest_jump_no_model", "ingest_jump_background",
		  "ingest_jump_at_once" },
	};
	cohort_db *db = NULL;
	cohort_table *t[3];
	int vcol[3], ncol[3], rc, bad = 1;
	double upload_s[3] = { 0, 0, 0 };
	ingest_figure fig[3][INGEST_REPS_MAX];
	ingest_sum sum[2][3];
	bool disturbed = false;

	rc = cohort_open(NULL, NULL, &db);
	if (rc < 0)
		return bench_fail("persona", "cohort_open", rc);
	double t0 = bench_now();
	for (int i = 0; i < 3; i++)
		if (table_load(db, names[i], cl, nrows, &t[i], &vcol[i], &ncol[i]))
			goto out;
	double load_s = bench_now() - t0;
	if (attach(t[1], vcol[1], COHORT_PERSONA_BACKGROUND, cl, &upload_s[1]) ||
	    attach(t[2], vcol[2], COHORT_PERSONA_AT_ONCE, cl, &upload_s[2]))
		goto out;
	bench_line l = bench_line_make("ingest_load", 3.0 * (double)nrows / load_s,
				       "rows/s", 1);
	bench_line_num(&l, "rows", (double)nrows);
	bench_line_num(&l, "tables", 3);
	bench_line_num(&l, "seconds", load_s);
	bench_line_num(&l, "upload_background_s", upload_s[1]);
	bench_line_num(&l, "upload_at_once_s", upload_s[2]);
	bench_line_str(&l, "what", "cohort_put one row at a time, then the "
		       "K=1024 centres uploaded (every row assigned)");
	bench_report(ctx, &l);

	/* all the steps before any jump: a jumped row's next step would be a
	 * jump back */
	for (int jump = 0; jump < 2; jump++) {
		const uint64_t nevents = nevents_of[jump];
		for (int r = 0; r < reps[jump]; r++) {
			uint64_t seed = SEED ^ ((uint64_t)jump << 16) ^
					((uint64_t)r << 8);
			for (int k = 0; k < 3; k++) {
				int i = (r + k) % 3;
				if (ingest_run(t[i], vcol[i], ncol[i], i == 1, cl,
					       nrows, nevents, jump, seed,
					       &fig[i][r]))
					goto out;
			}
			if (fig[0][r].cpu_share < DISTURBED)
				disturbed = true;
		}
		for (int i = 0; i < 3; i++) {
			ingest_sum_of(fig[i], fig[0], reps[jump], &sum[jump][i]);
			ingest_report(ctx, metrics[jump][i], &sum[jump][i],
				      reps[jump], nevents, i > 0);
		}
		for (int i = 1; i < 3; i++)
			if (check_model(t[i], vcol[i], cl, nrows, metrics[jump][i]))
				goto out;
	}

	double ratio = sum[0][1].vs_none;
	l = bench_line_make("ingest_with_persona_vs_without", ratio, "ratio", 2);
	bench_line_num(&l, "with_events_s", sum[0][1].events_s);
	bench_line_num(&l, "without_events_s", sum[0][0].events_s);
	bench_line_num(&l, "at_once_ratio", sum[0][2].vs_none);
	bench_line_num(&l, "jump_ratio", sum[1][1].vs_none);
	bench_line_str(&l, "what", ctx->quick ?
		       "50K rows, 200K events (SET vec d=64 by a small step, "
		       "ADD counter), BACKGROUND K=1024 against none, drain "
		       "included" :
		       "1M rows, 2M events (SET vec d=64 by a small step, "
		       "ADD counter), BACKGROUND K=1024 against none, drain "
		       "included, median of 3 paired ratios");
	bench_line_str(&l, "target", ">= 0.5");
	bench_line_bool(&l, "meets_target", ratio >= TARGET_INGEST);
	if (disturbed)
		bench_line_bool(&l, "disturbed", true);
	bench_report(ctx, &l);
	bad = 0;
out:
	rc = cohort_close(db);
	if (rc < 0 && !bad)
		bad = bench_fail("persona", "cohort_close", rc);
	return bad;
}

static int models(const bench_ctx *ctx)
{
	clusters cl;
	clusters_make(&cl);
	bench_note(ctx, "models: K=%d centres uniform in [-1, 1)^%d, the "
		   "nearest two %.2f apart; rows %.2f from their centre "
		   "(sd %.2f a coordinate), updates move %.3f (sd %.4f)",
		   MK, MDIM, cl.min_gap, SIGMA * sqrt(MDIM), SIGMA,
		   STEP * sqrt(MDIM), STEP);
	int bad = reassign_bench(ctx, &cl) || ingest_bench(ctx, &cl);
	clusters_free(&cl);
	return bad;
}

int bench_persona(bench_ctx *ctx)
{
	static const shape shapes[] = {
		{"assign_d64_k1024", 64, 1024, 0},
		{"assign_d32_k64", 32, 64, 0},
		{"assign_d128_k4096", 128, 4096, 0},
		{"topm8_d64_k1024", 64, 1024, 8},
	};
	enum { NSHAPES = sizeof shapes / sizeof shapes[0] };
	const dist_kernels *k = dist_get();
	const char *path = simd_level_name(simd_level_get());
	persona_run r;
	memset(&r, 0, sizeof r);
	r.k = k;

	bench_stats peak0, peak1;
	if (measure_peak(ctx, &r, &peak0))
		return 1;

	double rates[NSHAPES];
	bench_stats st[NSHAPES];
	for (int si = 0; si < NSHAPES; si++) {
		const shape *sh = &shapes[si];
		bench_rng rng;
		bench_rng_seed(&rng, SEED ^ (sh->dim * 131 + sh->k));
		size_t dim = sh->dim, kk = sh->k;
		float *cents = bench_alloc(kk * dim * sizeof(float));
		fill(&rng, cents, kk * dim);
		memset(&r.c, 0, sizeof r.c);
		int rc = dist_pack(cents, kk, dim, dim, &r.c);
		if (rc < 0) {
			fprintf(stderr, "cohort-bench persona: dist_pack: %d\n", rc);
			return 1;
		}
		r.dim = dim;
		r.npool = ctx->quick ? 1024 : 4096;
		r.pool = bench_alloc(r.npool * dim * sizeof(float));
		fill(&rng, r.pool, r.npool * dim);
		r.batch = BATCH_MADDS / (kk * dim);
		r.batch = r.batch < 8 ? 8 : r.batch > r.npool ? r.npool : r.batch;
		r.m = sh->m;
		r.pos = 0;
		size_t per = r.m ? r.m : 1;
		r.labels = bench_alloc(r.batch * per * sizeof(uint32_t));
		r.dists = bench_alloc(r.batch * per * sizeof(float));

		int bad = check(&r, cents, kk);
		void *targ = &r;
		if (!bad && bench_measure(ctx, 1, assign_batch, &targ, &st[si]) != 0)
			bad = 1;
		dist_packed_free(&r.c);
		free(cents);
		free(r.pool);
		free(r.labels);
		free(r.dists);
		if (bad)
			return 1;
		rates[si] = st[si].best;
	}

	if (measure_peak(ctx, &r, &peak1))
		return 1;
	bench_stats *peak = peak1.best > peak0.best ? &peak1 : &peak0;
	report(ctx, "fma_peak", peak->best / 1e9, "Gmadd/s", peak, path);

	for (int si = 0; si < NSHAPES; si++) {
		const shape *sh = &shapes[si];
		double madds = rates[si] * (double)(sh->k * sh->dim);
		char stat[32];
		snprintf(stat, sizeof stat, "best of %d", st[si].runs);
		bench_line l = bench_line_make(sh->metric, rates[si], "vectors/s", 1);
		bench_line_str(&l, "stat", stat);
		bench_line_str(&l, "path", path);
		bench_line_num(&l, "median", st[si].median);
		bench_line_num(&l, "gmadd_s", madds / 1e9);
		bench_line_num(&l, "vs_peak", madds / peak->best);
		bench_line_num(&l, "cpu_share", st[si].cpu_share);
		if (st[si].cpu_share < DISTURBED)
			bench_line_bool(&l, "disturbed", true);
		bench_report(ctx, &l);
	}

	double ratio = rates[0] * (double)(shapes[0].k * shapes[0].dim) /
		       peak->best;
	bench_line l = bench_line_make("assign_vs_peak", ratio, "ratio", 1);
	bench_line_str(&l, "what", "assign_d64_k1024 multiply-adds/s / fma_peak");
	bench_line_str(&l, "path", path);
	bench_line_str(&l, "target", ">= 0.7");
	bench_line_bool(&l, "meets_target", ratio >= TARGET_PEAK);
	bench_report(ctx, &l);
	if (vs_faiss(ctx))
		return 1;
	return models(ctx);
}
