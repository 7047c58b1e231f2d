/*
 * bench_ann.c -- suite `ann`: cohort's HNSW graph (index/hnsw.h) against
 * hnswlib and FAISS's IndexHNSWFlat, on one thread each, in the same run, on
 * the same data, with the same M = 16 and ef_construction = 200.
 *
 * Data sets (L2):
 *   fmnist  Fashion-MNIST (Debian dataset-fashion-mnist): the 60,000
 *           training images as the base, the first 1,000 test images as the
 *           queries; 784 uint8 pixels each, taken as floats 0..255 (so
 *           that cohort's 8-bit codes over [0, 255] are the pixels
 *           themselves: no quantisation loss on this set)
 *   synth   clustered "customer" vectors, d=64 (described at synth_make
 *           and in a note): 200,000 by default (the whole suite: about 6
 *           minutes on 2 cores with FAISS after the others, 4 with it
 *           beside them); --ann-n N sets the size: 1000000 for the
 *           full-size figure (one-thread builds of 3.5, 3.5 and 10
 *           minutes: about 11 minutes for the set, FAISS beside the other
 *           two); 1,000 queries from the same segments
 * --quick takes 10,000 base vectors and 200 queries of each.
 * COHORT_BENCH_ANN=PARTS (a comma list of fmnist, synth, store, faiss)
 * runs only those parts of the suite, e.g. COHORT_BENCH_ANN=fmnist for
 * the Fashion-MNIST figures alone, without FAISS beside them (about a
 * minute: what to iterate on); unset, the whole suite runs.
 * The truth is the exact top 10 by a brute-force scan (dist_get()->l2sq_many,
 * all cores). A returned vector counts towards recall@10 when its exact
 * squared distance is at most the true 10th's times (1 + 1e-5), so that
 * a tie at the 10th place is not counted as a miss (the 1,000 fmnist
 * queries have none: their 10 nearest are at whole-number distances below
 * 2^24, exact in every kernel, and the 11th is never level with the 10th).
 *
 * The libraries, each built by inserting the base one vector at a time on
 * one thread, labels = row numbers:
 *   cohort   hnsw_insert into a graph of 8-bit codes (lo, hi = the base's
 *            minimum and maximum), searched with hnsw_search {k=10, ef,
 *            rerank = ef: every candidate that can still make the top 10
 *            (hnsw.c's rerank) re-ranked with the exact f32 vector the
 *            callback hands back from the base array; vec_hint prefetches
 *            the first lines of each a couple of candidates ahead}
 *   hnswlib  HierarchicalNSW<float> over L2Space (bench/peer_hnswlib.cc,
 *            compiled with -march=native), searchKnn with setEf(ef)
 *   faiss    IndexHNSWFlat through /usr/bin/python3 (python3-faiss, with
 *            OPENBLAS_NUM_THREADS=1 and omp_set_num_threads(1)): add() of
 *            the whole base, then search() of all the queries at once for
 *            each ef; left out, saying so, where FAISS is not installed.
 *            The process runs beside the in-process libraries, on the
 *            other core (each of the three still one thread; cohort's and
 *            hnswlib's turns see the same neighbour), which takes its
 *            minutes off the suite; --ann-serial runs it after them, alone
 *
 * Figures, per data set D:
 *   D_qps                queries/s at each ef of 10..256 (one line per library
 *                        and ef, the recall beside it): a full pass over the
 *                        queries, best of 3 passes (1 with --quick); cohort's
 *                        and hnswlib's passes take turns
 *   D_build              seconds to insert the base; bytes per vector of the
 *                        index (what each includes is in `mem`)
 *   D_qps_at_r95         queries/s at recall@10 = 0.95: interpolated between
 *                        the two ef of the sweep that bracket 0.95 (log of
 *                        queries/s linear in recall); the first ef reaching
 *                        0.95 and its queries/s beside it
 * and the ratios (fmnist under their plain names, synth with a synth_
 * prefix), FAISS's figures beside them:
 *   qps_vs_hnswlib_at_r95     cohort / hnswlib, interpolated at 0.95 (the
 *                             ratio at the first ef reaching it beside, and
 *                             the ratio interpolated at 0.99)
 *   build_time_vs_hnswlib     cohort seconds / hnswlib seconds
 *   mem_per_vector_vs_hnswlib cohort index bytes / hnswlib index bytes.
 *     cohort: hnsw_get_stats().bytes: the node records (header, 2M level-0
 *     links, the 8-bit codes) in whole chunks of 16K nodes, the upper
 *     links, the fixed head; NOT the f32 vectors, which the caller keeps
 *     (in the store, the table's column) and which the re-rank reads; the
 *     line adds them in cohort_with_f32_bytes. hnswlib: its f32 vectors,
 *     links and labels, plus its per-element bookkeeping (peer_hnswlib_int.h).
 *     faiss: its f32 vectors, neighbour table, levels and offsets.
 * Beside every time, the cpu time of the thread (of the python process for
 * FAISS) and its share of the wall time: below 0.9 the figure is marked
 * disturbed (something else had the core), and the ratios are given from
 * cpu time as well (cpu_ratio, cpu_qps), which other load moves least.
 *
 * The curves go to ann_fmnist.dat and ann_synth.dat (gnuplot blocks, one
 * per library) and, with gnuplot, to ann_fmnist.png and ann_synth.png,
 * under docs/ (run from the top of the tree), or beside the --json-file
 * (make bench: bench/report.py draws docs/bench/ from the JSON); another
 * --ann-n writes ann_synth_N.*; a --quick run writes them under /tmp instead, so that
 * docs/ keeps the figures of a full run.
 */
#include "bench_int.h"
#include "dist.h"
#include "hnsw.h"
#include "parallel.h"
#include "peer_hnswlib_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define SEED 0x616e6e73ull           /* "anns" */
#define TOPK 10
#define LINKS_M 16
#define EF_CONSTRUCTION 200
#define TARGET_RECALL 0.95
#define RECALL_TOL 1e-5              /* relative, on squared distances */
#define SYNTH_N_DEFAULT 200000
#define DISTURBED 0.9                /* cpu share below: flagged */
#define HINT_BYTES 512               /* of a vector: base_hint prefetches */
#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static const size_t efs[] = { 10, 16, 24, 32, 48, 64, 96, 128, 192, 256 };
#define NEF (sizeof efs / sizeof efs[0])

enum { LIB_COHORT, LIB_HNSWLIB, LIB_FAISS, NLIB };
static const char *const lib_names[NLIB] = { "cohort", "hnswlib", "faiss" };

typedef struct ann_data {
	const char *name;        /* fmnist, synth: metric prefix */
	char file[32];           /* the curves' file names: ann_FILE.dat */
	const char *prefix;      /* of the ratio metrics: "" or "synth_" */
	char what[160];          /* for the lines and the plot */
	size_t n, nq, dim;
	float *base;             /* n x dim */
	float *queries;          /* nq x dim */
	float *gt_dist;          /* nq x TOPK: the true distances, ascending */
	float lo, hi;            /* of the base, for cohort's codes */
} ann_data;

typedef struct ann_curve {
	bool ok;
	double build_s;
	double build_cpu_s;      /* the build's cpu time */
	double build_share;      /* cpu time / wall time of the build */
	double search_share;     /* the lowest of the best passes' */
	double bytes;            /* the index */
	char mem[200];           /* what bytes includes */
	double recall[NEF], qps[NEF];
	double qps_cpu[NEF];     /* queries per cpu second (the least cpu time
	                            of the passes): what another load on the
	                            machine disturbs least */
	double extra_bytes;      /* cohort: the f32 vectors it does not hold */
} ann_curve;

/* ------------------------------------------------------------------------
 * Data
 * ------------------------------------------------------------------------ */
static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* The first `want` images of a gzip'd IDX3 file as floats (a new array,
 * want x *dim); want is cut to the images there are. */
static float *idx_load(const char *path, size_t *want, size_t *dim)
{
	gzFile f = gzopen(path, "rb");
	unsigned char head[16];
	float *out = NULL;
	unsigned char *px = NULL;

	if (!f)
		return NULL;
	if (gzread(f, head, sizeof head) != (int)sizeof head ||
	    be32(head) != 0x803)
		goto out;
	size_t count = be32(head + 4);
	size_t d = (size_t)be32(head + 8) * be32(head + 12);
	if (*want > count)
		*want = count;
	size_t bytes = *want * d;
	px = malloc(bytes);
	out = px ? bench_alloc(bytes * sizeof(float)) : NULL;
	if (!out)
		goto out;
	for (size_t got = 0; got < bytes;) {
		unsigned chunk = bytes - got > (1u << 30) ? 1u << 30 :
				 (unsigned)(bytes - got);
		int r = gzread(f, px + got, chunk);
		if (r <= 0) {
			free(out);
			out = NULL;
			goto out;
		}
		got += (size_t)r;
	}
	for (size_t i = 0; i < bytes; i++)
		out[i] = (float)px[i];
	*dim = d;
out:
	free(px);
	gzclose(f);
	return out;
}

static int fmnist_load(const bench_ctx *ctx, ann_data *d)
{
	size_t dim_q = 0;
	d->name = "fmnist";
	snprintf(d->file, sizeof d->file, "fmnist");
	d->prefix = "";
	d->n = ctx->quick ? 10000 : 60000;
	d->nq = ctx->quick ? 200 : 1000;
	d->base = idx_load(FMNIST_DIR "/train-images-idx3-ubyte.gz", &d->n,
			   &d->dim);
	d->queries = idx_load(FMNIST_DIR "/t10k-images-idx3-ubyte.gz", &d->nq,
			      &dim_q);
	if (!d->base || !d->queries || dim_q != d->dim)
		return -1;
	snprintf(d->what, sizeof d->what, "Fashion-MNIST, %zu x %zu, %zu "
		 "queries", d->n, d->dim, d->nq);
	return 0;
}

/* A standard normal (Box-Muller; the second value is thrown away). */
static float gauss(bench_rng *r)
{
	double u1 = (bench_rng_next(r) >> 11) * 0x1p-53, u2 = bench_rng_float(r);
	return (float)(sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2));
}

/*
 * Synthetic customers: 1024 segments; a segment has a centre N(0, 1) in
 * each coordinate, a size drawn so that the largest segments are about 30
 * times the smallest, and a spread: each customer is its centre plus
 * N(0, s^2) in each coordinate with s in [0.15, 0.45] by segment. Queries
 * are new customers drawn the same way, from a stream of their own (the
 * same queries whatever the size of the base).
 */
#define SYN_SEGMENTS 1024
#define SYN_DIM 64

static void synth_fill(bench_rng *rng, const float *centres,
		       const float *spread, const double *cum, float *out,
		       size_t n)
{
	for (size_t i = 0; i < n; i++) {
		double u = (bench_rng_next(rng) >> 11) * 0x1p-53;
		size_t lo = 0, hi = SYN_SEGMENTS - 1;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (cum[mid] < u)
				lo = mid + 1;
			else
				hi = mid;
		}
		const float *c = centres + lo * SYN_DIM;
		for (size_t j = 0; j < SYN_DIM; j++)
			out[i * SYN_DIM + j] = c[j] + spread[lo] * gauss(rng);
	}
}

static void synth_make(const bench_ctx *ctx, ann_data *d)
{
	bench_rng rng;
	float *centres = bench_alloc(SYN_SEGMENTS * SYN_DIM * sizeof(float));
	float spread[SYN_SEGMENTS];
	double cum[SYN_SEGMENTS], total = 0;

	d->name = "synth";
	d->prefix = "synth_";
	d->dim = SYN_DIM;
	d->n = ctx->ann_n ? ctx->ann_n : ctx->quick ? 10000 : SYNTH_N_DEFAULT;
	d->nq = ctx->quick ? 200 : 1000;
	if (ctx->ann_n && ctx->ann_n != SYNTH_N_DEFAULT)
		snprintf(d->file, sizeof d->file, "synth_%zu", d->n);
	else
		snprintf(d->file, sizeof d->file, "synth");
	bench_rng_seed(&rng, SEED);
	for (size_t s = 0; s < SYN_SEGMENTS; s++) {
		for (size_t j = 0; j < SYN_DIM; j++)
			centres[s * SYN_DIM + j] = gauss(&rng);
		spread[s] = 0.15f + 0.3f * bench_rng_float(&rng);
		total += exp(3.4 * bench_rng_float(&rng));   /* e^3.4 ~ 30 */
		cum[s] = total;
	}
	for (size_t s = 0; s < SYN_SEGMENTS; s++)
		cum[s] /= total;
	d->base = bench_alloc(d->n * SYN_DIM * sizeof(float));
	d->queries = bench_alloc(d->nq * SYN_DIM * sizeof(float));
	bench_rng qrng;
	bench_rng_seed(&qrng, SEED ^ 0x71756572ull);        /* "quer" */
	synth_fill(&rng, centres, spread, cum, d->base, d->n);
	synth_fill(&qrng, centres, spread, cum, d->queries, d->nq);
	free(centres);
	bench_note(ctx, "synth: %d segments, centres N(0, 1) in each of %d "
		   "coordinates, sizes from 1 to about 30 (e^U(0, 3.4)), a "
		   "customer = its centre + N(0, s^2) a coordinate, s = "
		   "U(0.15, 0.45) by segment", SYN_SEGMENTS, SYN_DIM);
	snprintf(d->what, sizeof d->what, "synthetic customers, %zu x %d in "
		 "%d Gaussian segments, %zu queries", d->n, SYN_DIM,
		 SYN_SEGMENTS, d->nq);
}

static void data_range(ann_data *d)
{
	float lo = d->base[0], hi = d->base[0];
	for (size_t i = 0; i < d->n * d->dim; i++) {
		lo = d->base[i] < lo ? d->base[i] : lo;
		hi = d->base[i] > hi ? d->base[i] : hi;
	}
	d->lo = lo;
	d->hi = hi > lo ? hi : lo + 1;
}

/* The truth: the TOPK smallest distances of each query, all cores. The
 * base goes by in blocks of about 256 KB that each query of the range
 * scans while the block is in cache: one pass over the base per range,
 * not per query. */
static void truth_part(void *p, int part, size_t lo, size_t hi)
{
	ann_data *d = p;
	const dist_kernels *k = dist_get();
	size_t rows = (256u << 10) / (d->dim * sizeof(float));
	rows = rows < 16 ? 16 : rows;
	float *dist = bench_alloc(rows * sizeof(float));
	(void)part;
	for (size_t q = lo; q < hi; q++)
		for (size_t i = 0; i < TOPK; i++)
			d->gt_dist[q * TOPK + i] = INFINITY;
	for (size_t b = 0; b < d->n; b += rows) {
		size_t nb = d->n - b < rows ? d->n - b : rows;
		for (size_t q = lo; q < hi; q++) {
			float *best = d->gt_dist + q * TOPK;
			k->l2sq_many(d->queries + q * d->dim,
				     d->base + b * d->dim, d->dim, nb, d->dim,
				     dist);
			for (size_t i = 0; i < nb; i++) {
				if (dist[i] >= best[TOPK - 1])
					continue;
				size_t j = TOPK - 1;
				while (j > 0 && best[j - 1] > dist[i]) {
					best[j] = best[j - 1];
					j--;
				}
				best[j] = dist[i];
			}
		}
	}
	free(dist);
}

static void truth(ann_data *d)
{
	d->gt_dist = bench_alloc(d->nq * TOPK * sizeof(float));
	par_run(par_threads(0), d->nq, truth_part, d);
}

/* recall@10 of the results (nq x TOPK labels; UINT64_MAX: none). */
static double recall_of(const ann_data *d, const uint64_t *labels)
{
	const dist_kernels *k = dist_get();
	size_t hits = 0;
	for (size_t q = 0; q < d->nq; q++) {
		const float *x = d->queries + q * d->dim;
		double thr = (double)d->gt_dist[q * TOPK + TOPK - 1] *
			     (1 + RECALL_TOL);
		for (size_t i = 0; i < TOPK; i++) {
			uint64_t l = labels[q * TOPK + i];
			if (l >= d->n)
				continue;
			if (k->l2sq(x, d->base + l * d->dim, d->dim) <= thr)
				hits++;
		}
	}
	return (double)hits / (double)(d->nq * TOPK);
}

static int passes(const bench_ctx *ctx)
{
	return ctx->quick ? 1 : 3;
}

/* Wall and cpu time of this thread: a share of cpu below 1 says that
 * something else had the core for part of the time. */
typedef struct span {
	double wall, cpu;
} span;

static double thread_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static span span_start(void)
{
	return (span){ bench_now(), thread_cpu() };
}

static span span_end(span s)
{
	return (span){ bench_now() - s.wall, thread_cpu() - s.cpu };
}

/* ------------------------------------------------------------------------
 * cohort
 * ------------------------------------------------------------------------ */
static const float *base_vec(void *p, uint64_t label, float *buf)
{
	const ann_data *d = p;
	(void)buf;
	return label < d->n ? d->base + label * d->dim : NULL;
}

/* The re-rank's hint: the first lines of the vector set on their way (the
 * hardware's stream prefetcher follows on with the rest). */
static void base_hint(void *p, uint64_t label)
{
	const ann_data *d = p;
	if (label >= d->n)
		return;
	const char *v = (const char *)(d->base + label * d->dim);
	size_t len = d->dim * sizeof(float);
	for (size_t o = 0; o < len && o < HINT_BYTES; o += 64)
		__builtin_prefetch(v + o);
}

static int cohort_build(const ann_data *d, ann_curve *c, hnsw **out)
{
	hnsw_params p = {
		.dim = (uint32_t)d->dim, .metric = HNSW_L2, .M = LINKS_M,
		.ef_construction = EF_CONSTRUCTION, .lo = d->lo, .hi = d->hi,
		.seed = SEED,
	};
	hnsw *h;
	int rc = hnsw_new(&p, &h);
	if (rc < 0) {
		fprintf(stderr, "cohort-bench ann: hnsw_new: %s\n",
			strerror(-rc));
		return 1;
	}
	span sp = span_start();
	for (size_t i = 0; i < d->n && rc == 0; i++)
		rc = hnsw_insert(h, d->base + i * d->dim, i, NULL);
	sp = span_end(sp);
	if (rc < 0) {
		fprintf(stderr, "cohort-bench ann: hnsw_insert: %s\n",
			strerror(-rc));
		hnsw_free(h);
		return 1;
	}
	c->build_s = sp.wall;
	c->build_cpu_s = sp.cpu;
	c->build_share = sp.cpu / sp.wall;
	hnsw_stats st;
	hnsw_get_stats(h, &st);
	c->bytes = (double)st.bytes / (double)d->n;
	c->extra_bytes = (double)(d->dim * sizeof(float));
	snprintf(c->mem, sizeof c->mem, "hnsw_get_stats bytes: node records "
		 "(links, 8-bit codes) and upper links; the f32 vectors, kept "
		 "by the caller, not included");
	*out = h;
	return 0;
}

/* One pass over the queries at ef: labels gets nq x TOPK. */
static int cohort_pass(void *ix, const ann_data *d, size_t ef,
		       uint64_t *labels)
{
	hnsw_query qp = {
		.k = TOPK, .ef = ef, .rerank = ef,
		.vec = base_vec, .vec_ctx = (void *)d, .vec_hint = base_hint,
	};
	hnsw_hit hits[TOPK];
	for (size_t q = 0; q < d->nq; q++) {
		size_t n = 0;
		int rc = hnsw_search(ix, d->queries + q * d->dim, &qp, hits, &n);
		if (rc < 0) {
			fprintf(stderr, "cohort-bench ann: hnsw_search: %s\n",
				strerror(-rc));
			return 1;
		}
		for (size_t i = 0; i < TOPK; i++)
			labels[q * TOPK + i] = i < n ? hits[i].label : UINT64_MAX;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * hnswlib
 * ------------------------------------------------------------------------ */
static int hnswlib_build(const ann_data *d, ann_curve *c, peer_hnswlib **out)
{
	peer_hnswlib *h;
	int rc = peer_hnswlib_new(d->dim, d->n, LINKS_M, EF_CONSTRUCTION, SEED,
				  &h);
	if (rc < 0) {
		fprintf(stderr, "cohort-bench ann: hnswlib: %s\n", strerror(-rc));
		return 1;
	}
	span sp = span_start();
	for (size_t i = 0; i < d->n && rc == 0; i++)
		rc = peer_hnswlib_add(h, d->base + i * d->dim, i);
	sp = span_end(sp);
	if (rc < 0) {
		fprintf(stderr, "cohort-bench ann: hnswlib add: %s\n",
			strerror(-rc));
		peer_hnswlib_free(h);
		return 1;
	}
	c->build_s = sp.wall;
	c->build_cpu_s = sp.cpu;
	c->build_share = sp.cpu / sp.wall;
	*out = h;
	return 0;
}

/* After the searches: its visited list exists by then. */
static void hnswlib_memory(const ann_data *d, const peer_hnswlib *h,
			   ann_curve *c)
{
	peer_hnswlib_mem mem;
	peer_hnswlib_memory(h, &mem);
	c->bytes = (double)mem.total / (double)d->n;
	snprintf(c->mem, sizeof c->mem, "f32 vectors, links, labels (%.0f "
		 "B/vector) + upper links (%.0f) + per-element locks, label map, "
		 "visited list (%.0f)", (double)mem.level0 / (double)d->n,
		 (double)mem.upper / (double)d->n,
		 (double)mem.other / (double)d->n);
}

static int hnswlib_pass(void *ix, const ann_data *d, size_t ef,
			uint64_t *labels)
{
	float dists[TOPK];
	peer_hnswlib_set_ef(ix, ef);
	for (size_t q = 0; q < d->nq; q++) {
		size_t n = 0;
		uint64_t *l = labels + q * TOPK;
		int rc = peer_hnswlib_search(ix, d->queries + q * d->dim, TOPK,
					     l, dists, &n);
		if (rc < 0) {
			fprintf(stderr, "cohort-bench ann: hnswlib search: %s\n",
				strerror(-rc));
			return 1;
		}
		for (size_t i = n; i < TOPK; i++)
			l[i] = UINT64_MAX;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * The sweep of the in-process libraries. Their passes take turns (for
 * each ef and each repetition, one pass of each), so that a spell of
 * other load on the machine falls on all of them alike.
 * ------------------------------------------------------------------------ */
typedef int (*pass_fn)(void *ix, const ann_data *d, size_t ef,
		       uint64_t *labels);

typedef struct swept {
	pass_fn pass;
	void *ix;
	ann_curve *c;
} swept;

static int sweep(const bench_ctx *ctx, const ann_data *d, swept *s, int ns)
{
	uint64_t *labels = bench_alloc(d->nq * TOPK * sizeof(uint64_t));
	int bad = 0;
	for (size_t e = 0; e < NEF && !bad; e++) {
		double best[NLIB], share[NLIB], cpu[NLIB];
		for (int i = 0; i < ns; i++) {
			best[i] = cpu[i] = INFINITY;
			share[i] = 1;
		}
		for (int r = 0; r < passes(ctx) && !bad; r++) {
			for (int i = 0; i < ns && !bad; i++) {
				span sp = span_start();
				bad = s[i].pass(s[i].ix, d, efs[e], labels);
				sp = span_end(sp);
				if (sp.wall < best[i]) {
					best[i] = sp.wall;
					share[i] = sp.cpu / sp.wall;
				}
				cpu[i] = sp.cpu < cpu[i] ? sp.cpu : cpu[i];
				/* the results do not change from pass to pass */
				if (r == 0)
					s[i].c->recall[e] = recall_of(d, labels);
			}
		}
		for (int i = 0; i < ns; i++) {
			ann_curve *c = s[i].c;
			c->qps[e] = (double)d->nq / best[i];
			c->qps_cpu[e] = (double)d->nq / cpu[i];
			if (e == 0 || share[i] < c->search_share)
				c->search_share = share[i];
		}
	}
	free(labels);
	return bad;
}

/* Build hnswlib, then cohort, on the same data; sweep both. */
static int run_inproc(const bench_ctx *ctx, const ann_data *d, ann_curve *co,
		      ann_curve *hl)
{
	peer_hnswlib *ph = NULL;
	hnsw *h = NULL;
	int bad = hnswlib_build(d, hl, &ph);
	if (!bad) {
		bench_note(ctx, "%s: hnswlib built in %.1f s", d->name,
			   hl->build_s);
		bad = cohort_build(d, co, &h);
	}
	if (!bad) {
		bench_note(ctx, "%s: cohort built in %.1f s", d->name,
			   co->build_s);
		swept s[2] = { { cohort_pass, h, co }, { hnswlib_pass, ph, hl } };
		bad = sweep(ctx, d, s, 2);
	}
	if (!bad) {
		hnswlib_memory(d, ph, hl);
		co->ok = hl->ok = true;
	}
	if (ph)
		peer_hnswlib_free(ph);
	if (h)
		hnsw_free(h);
	return bad;
}

/* ------------------------------------------------------------------------
 * FAISS, in a python process of its own
 * ------------------------------------------------------------------------ */
/* Write n floats to a new temp file (none: an empty one); its path in
 * path. */
static int write_tmp(const float *v, size_t n, char *path, size_t path_len)
{
	snprintf(path, path_len, "/tmp/cohort-bench-ann-XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0) {
		*path = 0;
		return -1;
	}
	if (n == 0)
		return close(fd);
	FILE *f = fdopen(fd, "wb");
	if (!f) {
		close(fd);
		return -1;
	}
	size_t w = fwrite(v, sizeof(float), n, f);
	return fclose(f) == 0 && w == n ? 0 : -1;
}

static bool faiss_present(void)
{
	return access("/usr/bin/python3", X_OK) == 0 &&
	       system("/usr/bin/python3 -c 'import faiss, numpy' "
		      "2>/dev/null") == 0;
}

/* The script prints the build's wall and cpu seconds and the index bytes,
 * then, at each ef, the wall and cpu seconds of the best pass and the
 * least cpu seconds of a pass, and writes
 * the labels of each ef (int64, nq x TOPK) to the output file. Single
 * quotes would end the shell's quoting of it: none. */
static const char faiss_script[] =
	"import time, numpy as np, faiss\n"
	"faiss.omp_set_num_threads(1)\n"
	"d, M, efc, k, reps = %zu, %d, %d, %d, %d\n"
	"b = np.fromfile(\"%s\", dtype=np.float32).reshape(-1, d)\n"
	"q = np.fromfile(\"%s\", dtype=np.float32).reshape(-1, d)\n"
	"ix = faiss.IndexHNSWFlat(d, M)\n"
	"ix.hnsw.efConstruction = efc\n"
	"t, c = time.perf_counter(), time.process_time(); ix.add(b)\n"
	"bs, bc = time.perf_counter() - t, time.process_time() - c\n"
	"h = ix.hnsw\n"
	"mem = b.nbytes + h.neighbors.size() * 4 + h.levels.size() * 4 + "
	"h.offsets.size() * 8\n"
	"print(bs, bc, mem, flush=True)\n"
	"out = open(\"%s\", \"wb\")\n"
	"for ef in (%s):\n"
	"  h.efSearch = ef\n"
	"  best, least = (1e9, 0), 1e9\n"
	"  for r in range(reps):\n"
	"    t, c = time.perf_counter(), time.process_time()\n"
	"    D, I = ix.search(q, k)\n"
	"    c = time.process_time() - c\n"
	"    best = min(best, (time.perf_counter() - t, c))\n"
	"    least = min(least, c)\n"
	"  I.astype(np.int64).tofile(out)\n"
	"  print(best[0], best[1], least, flush=True)\n"
	"out.close()\n";

/* FAISS in flight: its process and its temp files. */
typedef struct faiss_job {
	FILE *p;                 /* the script's stdout; NULL: not started */
	char pb[64], pq[64], pout[64];
} faiss_job;

static void faiss_files_free(faiss_job *j)
{
	if (*j->pb)
		unlink(j->pb);
	if (*j->pq)
		unlink(j->pq);
	if (*j->pout)
		unlink(j->pout);
	j->pb[0] = j->pq[0] = j->pout[0] = 0;
}

/* Start the FAISS script on d: it builds and sweeps in its own process
 * while this one goes on (faiss_finish collects it). 0, or 1 when it could
 * not be started (said on stderr). */
static int faiss_start(const bench_ctx *ctx, const ann_data *d, faiss_job *j)
{
	char eflist[128] = "", script[2048], cmd[2560];
	size_t el = 0;

	memset(j, 0, sizeof *j);
	if (write_tmp(d->base, d->n * d->dim, j->pb, sizeof j->pb) ||
	    write_tmp(d->queries, d->nq * d->dim, j->pq, sizeof j->pq) ||
	    write_tmp(NULL, 0, j->pout, sizeof j->pout)) {
		fprintf(stderr, "cohort-bench ann: cannot write the data for "
			"FAISS under /tmp\n");
		faiss_files_free(j);
		return 1;
	}
	for (size_t e = 0; e < NEF; e++)
		el += (size_t)snprintf(eflist + el, sizeof eflist - el, "%zu,",
				       efs[e]);
	snprintf(script, sizeof script, faiss_script, d->dim, LINKS_M,
		 EF_CONSTRUCTION, TOPK, passes(ctx), j->pb, j->pq, j->pout,
		 eflist);
	/* OpenBLAS has threads of its own besides FAISS's OpenMP ones */
	snprintf(cmd, sizeof cmd, "OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 "
		 "/usr/bin/python3 -c '%s'", script);
	fflush(NULL);            /* the child must not repeat our buffers */
	j->p = popen(cmd, "r");
	if (!j->p) {
		fprintf(stderr, "cohort-bench ann: cannot start python3 for "
			"FAISS\n");
		faiss_files_free(j);
		return 1;
	}
	return 0;
}

/* Wait for the FAISS script and read its curve into c. 0, or 1 (said). */
static int faiss_finish(const ann_data *d, faiss_job *j, ann_curve *c)
{
	int bad = 1;
	FILE *p = j->p;
	j->p = NULL;
	if (!p)
		return 1;
	double mem = 0, secs[NEF], cpu[NEF], least[NEF];
	int got = fscanf(p, "%lf %lf %lf", &c->build_s, &c->build_cpu_s,
			 &mem) == 3;
	for (size_t e = 0; e < NEF && got; e++)
		got = fscanf(p, "%lf %lf %lf", &secs[e], &cpu[e],
			     &least[e]) == 3;
	if (pclose(p) != 0 || !got) {
		fprintf(stderr, "cohort-bench ann: the FAISS script failed\n");
		goto out;
	}
	c->bytes = mem / (double)d->n;
	c->build_share = c->build_cpu_s / c->build_s;
	snprintf(c->mem, sizeof c->mem, "f32 vectors, neighbour table, levels, "
		 "offsets");

	FILE *f = fopen(j->pout, "rb");
	int64_t *ids = bench_alloc(d->nq * TOPK * sizeof(int64_t));
	uint64_t *labels = bench_alloc(d->nq * TOPK * sizeof(uint64_t));
	bad = 0;
	for (size_t e = 0; e < NEF && !bad; e++) {
		if (!f || fread(ids, sizeof(int64_t), d->nq * TOPK, f) !=
			  d->nq * TOPK) {
			fprintf(stderr, "cohort-bench ann: short FAISS results\n");
			bad = 1;
			break;
		}
		for (size_t i = 0; i < d->nq * TOPK; i++)
			labels[i] = ids[i] < 0 ? UINT64_MAX : (uint64_t)ids[i];
		c->qps[e] = (double)d->nq / secs[e];
		c->qps_cpu[e] = (double)d->nq / least[e];
		if (e == 0 || cpu[e] / secs[e] < c->search_share)
			c->search_share = cpu[e] / secs[e];
		c->recall[e] = recall_of(d, labels);
	}
	if (f)
		fclose(f);
	free(ids);
	free(labels);
	c->ok = !bad;
out:
	faiss_files_free(j);
	return bad;
}

/* ------------------------------------------------------------------------
 * Summaries, files, plot
 * ------------------------------------------------------------------------ */

/* Queries/s (per cpu second with `cpu`) at recall `target`: interpolated
 * (log queries/s linear in recall) between the first ef reaching it and
 * the one before; *first gets the index of that ef (-1: none reaches it,
 * NaN returned). At the first ef of the sweep there is nothing below to
 * interpolate with: its own queries/s. */
static double qps_at(const ann_curve *c, bool cpu, double target, int *first)
{
	const double *qps = cpu ? c->qps_cpu : c->qps;
	*first = -1;
	for (size_t e = 0; e < NEF; e++) {
		if (c->recall[e] < target)
			continue;
		*first = (int)e;
		if (e == 0 || c->recall[e] <= c->recall[e - 1])
			return qps[e];
		double t = (target - c->recall[e - 1]) /
			   (c->recall[e] - c->recall[e - 1]);
		return exp(log(qps[e - 1]) + t * (log(qps[e]) - log(qps[e - 1])));
	}
	return NAN;
}

static const char *out_dir(const bench_ctx *ctx)
{
	struct stat st;
	if (ctx->quick)
		return "/tmp/cohort-bench-";
	if (ctx->out_dir[0])
		return ctx->out_dir;
	return stat("docs", &st) == 0 && S_ISDIR(st.st_mode) ? "docs/" : NULL;
}

static void write_curves(const bench_ctx *ctx, const ann_data *d,
			 const ann_curve *c)
{
	const char *dir = out_dir(ctx);
	char dat[320], png[320];
	if (!dir) {
		bench_note(ctx, "no docs/ here (run from the top of the tree): "
			   "the curves of %s not written", d->name);
		return;
	}
	snprintf(dat, sizeof dat, "%sann_%s.dat", dir, d->file);
	snprintf(png, sizeof png, "%sann_%s.png", dir, d->file);
	FILE *f = fopen(dat, "w");
	if (!f) {
		bench_note(ctx, "cannot write %s", dat);
		return;
	}
	fprintf(f, "# cohort-bench ann: %s\n# %s, %d cores, %s\n"
		"# one thread; M=%d, ef_construction=%d, k=%d; recall@10 and "
		"queries/s by ef\n# (wall time; per cpu second beside it);\n"
		"# one block per library (gnuplot index 0, 1, ...), named by "
		"its first line\n",
		d->what, ctx->machine, ctx->cores, ctx->date, LINKS_M,
		EF_CONSTRUCTION, TOPK);
	int nblocks = 0;
	char plot[1024];
	size_t pl = 0;
	for (int l = 0; l < NLIB; l++) {
		if (!c[l].ok)
			continue;
		fprintf(f, "%s\"%s\"\n# ef recall qps qps_per_cpu_s\n",
			nblocks ? "\n\n" : "", lib_names[l]);
		for (size_t e = 0; e < NEF; e++)
			fprintf(f, "%zu %.4f %.1f %.1f\n", efs[e], c[l].recall[e],
				c[l].qps[e], c[l].qps_cpu[e]);
		pl += (size_t)snprintf(plot + pl, sizeof plot - pl,
				       "%s\"%s\" index %d using 2:3 with "
				       "linespoints title \"%s\"",
				       nblocks ? ", " : "plot ", dat, nblocks,
				       lib_names[l]);
		nblocks++;
	}
	if (fclose(f) != 0 || nblocks == 0)
		return;
	if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
		bench_note(ctx, "gnuplot not installed (gnuplot-nox): %s "
			   "written, no plot", dat);
		return;
	}
	FILE *g = popen("gnuplot", "w");
	if (!g)
		return;
	fprintf(g, "set terminal pngcairo noenhanced size 960,640 "
		"font \"sans,11\"\n"
		"set output \"%s\"\n"
		"set title \"%s\\nrecall@10 vs queries/s, one thread, M=%d, "
		"ef_construction=%d, ef 10..256; %s, %s\"\n"
		"set xlabel \"recall@10\"\nset ylabel \"queries/s\"\n"
		"set logscale y\nset grid\nset key bottom left\n"
		"set arrow from %.2f, graph 0 to %.2f, graph 1 nohead dt 2\n"
		"%s\n",
		png, d->what, LINKS_M, EF_CONSTRUCTION, ctx->machine, ctx->date,
		TARGET_RECALL, TARGET_RECALL, plot);
	if (pclose(g) == 0)
		bench_note(ctx, "curves in %s and %s", dat, png);
	else
		bench_note(ctx, "gnuplot failed on %s", dat);
}

static void report_curves(const bench_ctx *ctx, const ann_data *d,
			  const ann_curve *c, double qps95[NLIB],
			  int first95[NLIB])
{
	char metric[64];
	int unused;
	for (int l = 0; l < NLIB; l++) {
		qps95[l] = NAN;
		first95[l] = -1;
		if (!c[l].ok)
			continue;
		snprintf(metric, sizeof metric, "%s_build", d->name);
		bench_line ln = bench_line_make(metric, c[l].build_s, "s", 1);
		bench_line_str(&ln, "lib", lib_names[l]);
		bench_line_num(&ln, "vectors", (double)d->n);
		bench_line_num(&ln, "bytes_per_vector", c[l].bytes);
		bench_line_num(&ln, "inserts_s", (double)d->n / c[l].build_s);
		bench_line_num(&ln, "cpu_s", c[l].build_cpu_s);
		bench_line_num(&ln, "cpu_share", c[l].build_share);
		if (c[l].build_share < DISTURBED)
			bench_line_bool(&ln, "disturbed", true);
		bench_line_str(&ln, "mem", c[l].mem);
		bench_report(ctx, &ln);
	}
	for (int l = 0; l < NLIB; l++) {
		if (!c[l].ok)
			continue;
		snprintf(metric, sizeof metric, "%s_qps", d->name);
		for (size_t e = 0; e < NEF; e++) {
			bench_line ln = bench_line_make(metric, c[l].qps[e],
							"queries/s", 1);
			bench_line_str(&ln, "lib", lib_names[l]);
			bench_line_num(&ln, "ef", (double)efs[e]);
			bench_line_num(&ln, "recall", c[l].recall[e]);
			bench_report(ctx, &ln);
		}
		qps95[l] = qps_at(&c[l], false, TARGET_RECALL, &first95[l]);
		snprintf(metric, sizeof metric, "%s_qps_at_r95", d->name);
		bench_line ln = bench_line_make(metric, qps95[l], "queries/s", 1);
		bench_line_str(&ln, "lib", lib_names[l]);
		bench_line_str(&ln, "stat", "interpolated at recall 0.95");
		if (first95[l] >= 0) {
			bench_line_num(&ln, "first_ef", (double)efs[first95[l]]);
			bench_line_num(&ln, "first_ef_qps", c[l].qps[first95[l]]);
			bench_line_num(&ln, "first_ef_recall",
				       c[l].recall[first95[l]]);
		} else {
			bench_line_bool(&ln, "reaches_0_95", false);
		}
		bench_line_num(&ln, "cpu_qps", qps_at(&c[l], true,
						     TARGET_RECALL, &unused));
		bench_line_num(&ln, "cpu_share", c[l].search_share);
		if (c[l].search_share < DISTURBED)
			bench_line_bool(&ln, "disturbed", true);
		bench_report(ctx, &ln);
	}
}

static void report_ratios(const bench_ctx *ctx, const ann_data *d,
			  const ann_curve *c, const double qps95[NLIB],
			  const int first95[NLIB])
{
	const ann_curve *co = &c[LIB_COHORT], *hl = &c[LIB_HNSWLIB],
			*fa = &c[LIB_FAISS];
	char metric[64];
	if (!co->ok || !hl->ok)
		return;

	snprintf(metric, sizeof metric, "%sqps_vs_hnswlib_at_r95", d->prefix);
	bench_line l = bench_line_make(metric, qps95[LIB_COHORT] /
				       qps95[LIB_HNSWLIB], "ratio", 1);
	bench_line_num(&l, "cohort_qps", qps95[LIB_COHORT]);
	bench_line_num(&l, "hnswlib_qps", qps95[LIB_HNSWLIB]);
	if (fa->ok) {
		bench_line_num(&l, "faiss_qps", qps95[LIB_FAISS]);
		bench_line_num(&l, "faiss_vs_hnswlib",
			       qps95[LIB_FAISS] / qps95[LIB_HNSWLIB]);
	}
	if (first95[LIB_COHORT] >= 0 && first95[LIB_HNSWLIB] >= 0)
		bench_line_num(&l, "first_ef_ratio",
			       co->qps[first95[LIB_COHORT]] /
			       hl->qps[first95[LIB_HNSWLIB]]);
	/* where both reach 0.95 at the smallest ef (ef = k), a higher
	 * recall says more */
	int unused;
	bench_line_num(&l, "ratio_at_r99", qps_at(co, false, 0.99, &unused) /
		       qps_at(hl, false, 0.99, &unused));
	/* the same from cpu time: what the other load on a shared machine
	 * moves least */
	double cpu_hl = qps_at(hl, true, TARGET_RECALL, &unused);
	bench_line_num(&l, "cpu_ratio", qps_at(co, true, TARGET_RECALL,
					       &unused) / cpu_hl);
	if (fa->ok)
		bench_line_num(&l, "faiss_cpu_vs_hnswlib",
			       qps_at(fa, true, TARGET_RECALL, &unused) / cpu_hl);
	bench_line_str(&l, "what", d->what);
	bench_line_str(&l, "stat", "queries/s interpolated at recall@10 = "
		       "0.95 in each sweep; first_ef_ratio: at the first ef "
		       "of the sweep reaching it");
	bench_report(ctx, &l);

	snprintf(metric, sizeof metric, "%sbuild_time_vs_hnswlib", d->prefix);
	l = bench_line_make(metric, co->build_s / hl->build_s, "ratio", 1);
	bench_line_num(&l, "cohort_s", co->build_s);
	bench_line_num(&l, "hnswlib_s", hl->build_s);
	bench_line_num(&l, "cpu_ratio", co->build_cpu_s / hl->build_cpu_s);
	if (fa->ok) {
		bench_line_num(&l, "faiss_s", fa->build_s);
		bench_line_num(&l, "faiss_vs_hnswlib", fa->build_s / hl->build_s);
		bench_line_num(&l, "faiss_cpu_vs_hnswlib",
			       fa->build_cpu_s / hl->build_cpu_s);
	}
	bench_line_str(&l, "what", d->what);
	bench_report(ctx, &l);

	snprintf(metric, sizeof metric, "%smem_per_vector_vs_hnswlib",
		 d->prefix);
	l = bench_line_make(metric, co->bytes / hl->bytes, "ratio", 1);
	bench_line_num(&l, "cohort_bytes", co->bytes);
	bench_line_num(&l, "cohort_with_f32_bytes", co->bytes + co->extra_bytes);
	bench_line_num(&l, "hnswlib_bytes", hl->bytes);
	if (fa->ok) {
		bench_line_num(&l, "faiss_bytes", fa->bytes);
		bench_line_num(&l, "faiss_vs_hnswlib", fa->bytes / hl->bytes);
	}
	bench_line_str(&l, "what", "bytes of the index per vector; cohort's "
		       "index holds 8-bit codes, not the f32 vectors it "
		       "re-ranks with (cohort_with_f32_bytes adds them); "
		       "hnswlib and faiss hold the f32 vectors");
	bench_report(ctx, &l);
}

static int run_set(const bench_ctx *ctx, ann_data *d, bool faiss)
{
	ann_curve c[NLIB];
	double qps95[NLIB];
	int first95[NLIB];
	memset(c, 0, sizeof c);

	data_range(d);
	double t0 = bench_now();
	truth(d);
	bench_note(ctx, "%s: exact top %d of %zu queries in %.1f s on %u "
		   "threads; cohort's codes over [%g, %g]", d->what, TOPK,
		   d->nq, bench_now() - t0, par_threads(0), (double)d->lo,
		   (double)d->hi);
	/* FAISS in its own process on the other core while cohort and
	 * hnswlib take turns on this one (each still one thread), unless
	 * --ann-serial: then after them, alone */
	faiss_job fj = { 0 };
	bool faiss_ok = faiss && !ctx->ann_serial &&
			faiss_start(ctx, d, &fj) == 0;
	int bad = run_inproc(ctx, d, &c[LIB_COHORT], &c[LIB_HNSWLIB]);
	if (faiss && !ctx->ann_serial)
		faiss_ok = faiss_ok && faiss_finish(d, &fj, &c[LIB_FAISS]) == 0;
	if (bad)
		return 1;
	if (faiss && ctx->ann_serial)
		faiss_ok = faiss_start(ctx, d, &fj) == 0 &&
			   faiss_finish(d, &fj, &c[LIB_FAISS]) == 0;
	if (faiss && !faiss_ok)
		bench_note(ctx, "FAISS left out of %s", d->name);
	else if (faiss)
		bench_note(ctx, "%s: faiss built in %.1f s%s", d->name,
			   c[LIB_FAISS].build_s, ctx->ann_serial ? "" :
			   " (in its own process, beside cohort and hnswlib)");
	report_curves(ctx, d, c, qps95, first95);
	report_ratios(ctx, d, c, qps95, first95);
	write_curves(ctx, d, c);
	return 0;
}

static void data_free(ann_data *d)
{
	free(d->base);
	free(d->queries);
	free(d->gt_dist);
	memset(d, 0, sizeof *d);
}

/* Whether COHORT_BENCH_ANN (unset: everything) names part. */
static bool part_on(const char *part)
{
	const char *env = getenv("COHORT_BENCH_ANN");
	size_t len = strlen(part);
	if (!env || !*env)
		return true;
	for (const char *p = env; *p;) {
		size_t n = strcspn(p, ",");
		if (n == len && strncmp(p, part, len) == 0)
			return true;
		p += n;
		p += *p == ',';
	}
	return false;
}

int bench_ann(bench_ctx *ctx)
{
	ann_data d;
	int bad = 0;
	bool faiss = part_on("faiss") && faiss_present();

	if (!part_on("faiss"))
		bench_note(ctx, "FAISS left out (COHORT_BENCH_ANN)");
	else if (!faiss)
		bench_note(ctx, "FAISS not installed (python3-faiss, "
			   "python3-numpy): its figures left out");
	bench_note(ctx, "one thread each; M=%d, ef_construction=%d, k=%d; "
		   "ef %zu..%zu; cohort re-ranks the ef candidates that can "
		   "still make the top k with the f32 vectors", LINKS_M,
		   EF_CONSTRUCTION, TOPK, efs[0], efs[NEF - 1]);

	memset(&d, 0, sizeof d);
	if (!part_on("fmnist")) {
		bench_note(ctx, "Fashion-MNIST left out (COHORT_BENCH_ANN)");
	} else if (fmnist_load(ctx, &d) == 0) {
		bad |= run_set(ctx, &d, faiss);
	} else {
		bench_note(ctx, "Fashion-MNIST not found under %s (Debian "
			   "dataset-fashion-mnist): left out", FMNIST_DIR);
	}
	data_free(&d);

	if (part_on("synth")) {
		synth_make(ctx, &d);
		if (!ctx->ann_n && !ctx->quick)
			bench_note(ctx, "synthetic set at %zu vectors; --ann-n "
				   "1000000 for the full-size figure (about 11 "
				   "minutes: each library builds it on one "
				   "thread, FAISS beside the other two)", d.n);
		bad |= run_set(ctx, &d, faiss);
		data_free(&d);
	} else {
		bench_note(ctx, "synthetic set left out (COHORT_BENCH_ANN)");
	}
	/* the index inside the store: filters and ingest */
	if (part_on("store"))
		bad |= bench_ann_store(ctx);
	else
		bench_note(ctx, "the store's index left out "
			   "(COHORT_BENCH_ANN)");
	return bad;
}
