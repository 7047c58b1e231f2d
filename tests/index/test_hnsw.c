/*
 * test_hnsw.c -- the HNSW graph on its own: recall@10 against exact search
 * on Fashion-MNIST (Debian's dataset-fashion-mnist) and on clustered
 * vectors, after churn (30% deleted, 30% re-inserted, reclaimed), with an
 * allowed set at 50% and 5% (exactly k results whenever k rows pass),
 * inner product, and inserts, deletes and searches on several threads;
 * the bounded re-rank against measuring every candidate; saving, and
 * loading both formats.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "hnsw.h"

#define K 10
#define FMNIST "/usr/share/datasets/fashion-mnist"

static uint64_t rs = 7;

static double urand(void)
{
	uint64_t z = (rs += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

static double gauss(void)
{
	double u = urand() + 1e-12, v = urand();
	return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* n clustered vectors of dim d in [-1, 1]-ish */
static float *clustered(size_t n, size_t d, size_t nclust)
{
	float *c = malloc(nclust * d * sizeof(float));
	float *x = malloc(n * d * sizeof(float));
	for (size_t i = 0; i < nclust * d; i++)
		c[i] = (float)(urand() * 2 - 1);
	for (size_t i = 0; i < n; i++) {
		size_t k = (size_t)(urand() * nclust);
		for (size_t j = 0; j < d; j++)
			x[i * d + j] = c[k * d + j] + (float)(0.15 * gauss());
	}
	free(c);
	return x;
}

typedef struct data {
	const float *x;
	size_t d;
	const uint8_t *alive;     /* NULL: all */
	const uint8_t *allowed;   /* NULL: all */
} data;

static const float *vec_of(void *ctx, uint64_t label, float *buf)
{
	(void)buf;
	const data *D = ctx;
	if (D->alive && !D->alive[label])
		return NULL;
	return D->x + label * D->d;
}

static bool allow_of(void *ctx, uint64_t label)
{
	const data *D = ctx;
	return D->allowed[label];
}

/* Exact top-K labels of q among live, allowed rows. */
static size_t exact(const data *D, size_t n, const float *q, bool ip,
		    uint64_t *out)
{
	const dist_kernels *k = dist_get();
	float best[K];
	size_t have = 0;
	for (size_t i = 0; i < n; i++) {
		if ((D->alive && !D->alive[i]) || (D->allowed && !D->allowed[i]))
			continue;
		float d = ip ? -k->ip(q, D->x + i * D->d, D->d) :
			k->l2sq(q, D->x + i * D->d, D->d);
		if (have == K && d >= best[K - 1])
			continue;
		size_t r = have < K ? have++ : K - 1;
		while (r > 0 && best[r - 1] > d) {
			best[r] = best[r - 1];
			out[r] = out[r - 1];
			r--;
		}
		best[r] = d;
		out[r] = i;
	}
	return have;
}

/* recall@K of nq queries; every query must return min(K, matching). */
static double recall(hnsw *h, const data *D, size_t n, const float *qs,
		     size_t nq, size_t ef, bool ip)
{
	size_t hit = 0, want = 0;
	for (size_t q = 0; q < nq; q++) {
		uint64_t truth[K];
		size_t nt = exact(D, n, qs + q * D->d, ip, truth);
		hnsw_query qp = { .k = K, .ef = ef, .rerank = ef,
				  .vec = vec_of, .vec_ctx = (void *)D,
				  .allow = D->allowed ? allow_of : NULL,
				  .allow_ctx = (void *)D };
		hnsw_hit hits[K];
		size_t got;
		cr_assert_eq(hnsw_search(h, qs + q * D->d, &qp, hits, &got), 0);
		cr_assert_eq(got, nt, "query %zu: %zu results, %zu match", q,
			     got, nt);
		for (size_t i = 0; i < got; i++) {
			cr_assert(!D->alive || D->alive[hits[i].label],
				  "a deleted row came back");
			cr_assert(!D->allowed || D->allowed[hits[i].label],
				  "a row outside the allowed set came back");
			for (size_t j = 0; j < nt; j++)
				hit += hits[i].label == truth[j];
		}
		want += nt;
	}
	return want ? (double)hit / (double)want : 1.0;
}

static hnsw *build(const float *x, size_t n, size_t d, float lo, float hi,
		   int metric)
{
	hnsw_params p = { .dim = (uint32_t)d, .metric = metric, .M = 16,
			  .ef_construction = 200, .lo = lo, .hi = hi,
			  .seed = 1 };
	hnsw *h;
	cr_assert_eq(hnsw_new(&p, &h), 0);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(hnsw_insert(h, x + i * d, i, NULL), 0);
	return h;
}

Test(hnsw, clustered_recall)
{
	size_t n = 20000, d = 32, nq = 200;
	float *x = clustered(n + nq, d, 50);
	hnsw *h = build(x, n, d, -2, 2, HNSW_L2);
	data D = { x, d, NULL, NULL };
	double r = recall(h, &D, n, x + n * d, nq, 64, false);
	cr_assert(r >= 0.95, "recall@10 %.4f", r);
	hnsw_stats st;
	hnsw_get_stats(h, &st);
	cr_assert_eq(st.nodes, n);
	hnsw_free(h);
	free(x);
}

Test(hnsw, inner_product)
{
	size_t n = 10000, d = 24, nq = 100;
	float *x = clustered(n + nq, d, 30);
	hnsw *h = build(x, n, d, -2, 2, HNSW_IP);
	data D = { x, d, NULL, NULL };
	double r = recall(h, &D, n, x + n * d, nq, 128, true);
	cr_assert(r >= 0.95, "recall@10 %.4f", r);
	hnsw_free(h);
	free(x);
}

Test(hnsw, churn_keeps_recall)
{
	size_t n = 20000, d = 32, nq = 200;
	float *x = clustered(2 * n + nq, d, 50);
	hnsw *h = build(x, n, d, -2, 2, HNSW_L2);
	uint8_t *alive = calloc(2 * n, 1);
	uint32_t *node = malloc(2 * n * sizeof(uint32_t));
	/* nodes were numbered in insertion order */
	for (size_t i = 0; i < n; i++) {
		alive[i] = 1;
		node[i] = (uint32_t)i;
	}
	/* delete 30%; "update" another 30%: delete, insert the new vector
	 * under a new label (rows n..2n hold the new vectors) */
	for (size_t i = 0; i < n; i++) {
		double u = urand();
		if (u < 0.6) {
			cr_assert_eq(hnsw_delete(h, node[i]), 0);
			alive[i] = 0;
		}
		if (u >= 0.3 && u < 0.6) {
			cr_assert_eq(hnsw_insert(h, x + (n + i) * d, n + i,
						 &node[n + i]), 0);
			alive[n + i] = 1;
		}
	}
	cr_assert_eq(hnsw_delete(h, node[0]) == -ENOENT || alive[0], true);
	data D = { x, d, alive, NULL };
	cr_assert_eq(hnsw_check(h), 0);
	double r = recall(h, &D, 2 * n, x + 2 * n * d, nq, 64, false);
	cr_assert(r >= 0.95, "recall@10 after churn %.4f", r);
	size_t freed = hnsw_reclaim(h);
	cr_assert_eq(hnsw_check(h), 0);
	hnsw_stats st;
	hnsw_get_stats(h, &st);
	cr_assert_eq(st.deleted, 0);
	cr_assert(freed > n / 2);
	r = recall(h, &D, 2 * n, x + 2 * n * d, nq, 64, false);
	cr_assert(r >= 0.95, "recall@10 after reclaim %.4f", r);
	/* freed numbers are reused */
	uint32_t nn;
	cr_assert_eq(hnsw_insert(h, x, 0, &nn), 0);
	cr_assert(nn < 2 * n);
	/* churn again over reused numbers, then check the graph */
	for (size_t i = 0; i < 3000; i++) {
		uint32_t a;
		cr_assert_eq(hnsw_insert(h, x + (i % n) * d, 9000000 + i, &a),
			     0);
		if (i % 2)
			cr_assert_eq(hnsw_delete(h, a), 0);
		if (i % 500 == 0)
			hnsw_reclaim(h);
	}
	cr_assert_eq(hnsw_check(h), 0);
	hnsw_free(h);
	free(alive);
	free(node);
	free(x);
}

Test(hnsw, allowed_sets_give_k_results)
{
	size_t n = 20000, d = 32, nq = 100;
	float *x = clustered(n + nq, d, 50);
	hnsw *h = build(x, n, d, -2, 2, HNSW_L2);
	uint8_t *allowed = malloc(n);
	double sel[] = { 0.5, 0.05 };
	for (int s = 0; s < 2; s++) {
		for (size_t i = 0; i < n; i++)
			allowed[i] = urand() < sel[s];
		data D = { x, d, NULL, allowed };
		double r = recall(h, &D, n, x + n * d, nq, 64, false);
		cr_assert(r >= 0.95, "recall@10 at %.0f%%: %.4f", sel[s] * 100,
			  r);
	}
	/* fewer rows pass than k: all of them come back */
	memset(allowed, 0, n);
	allowed[5] = allowed[17] = allowed[4000] = 1;
	data D = { x, d, NULL, allowed };
	recall(h, &D, n, x + n * d, 5, 64, false);
	hnsw_free(h);
	free(allowed);
	free(x);
}

/* ---- threads ---- */
typedef struct tctx {
	hnsw *h;
	const float *x;
	size_t d, lo, hi;
	int kind;                 /* 0 insert, 1 delete, 2 search */
	uint32_t *node;
	atomic_int *done;
} tctx;

static void *worker(void *arg)
{
	tctx *t = arg;
	if (t->kind == 0) {
		for (size_t i = t->lo; i < t->hi; i++)
			cr_assert_eq(hnsw_insert(t->h, t->x + i * t->d, i,
						 &t->node[i]), 0);
	} else if (t->kind == 1) {
		for (size_t i = t->lo; i < t->hi; i += 3)
			cr_assert_eq(hnsw_delete(t->h, t->node[i]), 0);
	} else {
		hnsw_query qp = { .k = K, .ef = 32 };
		hnsw_hit hits[K];
		size_t got;
		while (atomic_load(t->done) < 3)
			for (size_t i = t->lo; i < t->hi; i += 97)
				cr_assert_eq(hnsw_search(t->h, t->x + i * t->d,
							 &qp, hits, &got), 0);
	}
	atomic_fetch_add(t->done, 1);
	return NULL;
}

Test(hnsw, concurrent_insert_delete_search)
{
	size_t n = 12000, d = 16;
	float *x = clustered(2 * n, d, 40);
	hnsw *h = build(x, n, d, -2, 2, HNSW_L2);
	uint32_t *node = malloc(2 * n * sizeof(uint32_t));
	for (size_t i = 0; i < n; i++)
		node[i] = (uint32_t)i;
	atomic_int done = 0;
	tctx t[4] = {
		{ h, x, d, n, n + n / 2, 0, node, &done },
		{ h, x, d, n + n / 2, 2 * n, 0, node, &done },
		{ h, x, d, 0, n, 1, node, &done },
		{ h, x, d, 0, 2 * n, 2, node, &done },
	};
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, worker, &t[i]);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	uint8_t *alive = malloc(2 * n);
	for (size_t i = 0; i < 2 * n; i++)
		alive[i] = i >= n || i % 3 != 0;
	data D = { x, d, alive, NULL };
	double r = recall(h, &D, 2 * n, x, 100, 64, false);
	cr_assert(r >= 0.95, "recall@10 %.4f", r);
	hnsw_free(h);
	free(alive);
	free(node);
	free(x);
}

/* ---- Fashion-MNIST ---- */
static float *idx_load(const char *name, size_t *n, size_t *d)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "gzip -dc " FMNIST "/%s 2>/dev/null", name);
	FILE *f = popen(cmd, "r");
	if (!f)
		return NULL;
	unsigned char hd[16];
	if (fread(hd, 1, 16, f) != 16) {
		pclose(f);
		return NULL;
	}
	*n = (size_t)hd[4] << 24 | (size_t)hd[5] << 16 | (size_t)hd[6] << 8 |
	     hd[7];
	*d = ((size_t)hd[8] << 24 | (size_t)hd[9] << 16 | (size_t)hd[10] << 8 |
	      hd[11]) * ((size_t)hd[12] << 24 | (size_t)hd[13] << 16 |
			 (size_t)hd[14] << 8 | hd[15]);
	unsigned char *b = malloc(*n * *d);
	float *x = malloc(*n * *d * sizeof(float));
	size_t got = fread(b, 1, *n * *d, f);
	pclose(f);
	if (got != *n * *d) {
		free(b);
		free(x);
		return NULL;
	}
	for (size_t i = 0; i < *n * *d; i++)
		x[i] = b[i];
	free(b);
	return x;
}

typedef struct bctx {
	hnsw *h;
	const float *x;
	size_t d, lo, hi;
} bctx;

static void *bins(void *arg)
{
	bctx *b = arg;
	for (size_t i = b->lo; i < b->hi; i++)
		cr_assert_eq(hnsw_insert(b->h, b->x + i * b->d, i, NULL), 0);
	return NULL;
}

Test(hnsw, fashion_mnist_recall)
{
	size_t n, d, nq, d2;
	float *base = idx_load("train-images-idx3-ubyte.gz", &n, &d);
	float *qs = idx_load("t10k-images-idx3-ubyte.gz", &nq, &d2);
	if (!base || !qs) {
		free(base);
		free(qs);
		cr_skip_test("Fashion-MNIST not found in " FMNIST " (Debian "
			     "package dataset-fashion-mnist)");
	}
	cr_assert_eq(n, 60000);
	cr_assert_eq(d, 784);
	hnsw_params p = { .dim = 784, .metric = HNSW_L2, .M = 16,
			  .ef_construction = 200, .lo = 0, .hi = 255,
			  .seed = 1 };
	hnsw *h;
	cr_assert_eq(hnsw_new(&p, &h), 0);
	/* built by two threads at once */
	bctx b[2] = { { h, base, d, 0, n / 2 }, { h, base, d, n / 2, n } };
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, bins, &b[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	data D = { base, d, NULL, NULL };
	/* the default ef of the store's index is 64 */
	double r = recall(h, &D, n, qs, 300, 64, false);
	cr_assert(r >= 0.95, "Fashion-MNIST recall@10 %.4f", r);
	hnsw_stats st;
	hnsw_get_stats(h, &st);
	cr_assert(st.bytes / st.nodes < 784 * 4 / 2,
		  "%zu bytes per vector", st.bytes / st.nodes);
	hnsw_free(h);
	free(base);
	free(qs);
}

/* ---- the re-rank ---- */
typedef struct counted {
	const float *x;
	size_t d;
	size_t calls, hints;
} counted;

static const float *vec_counted(void *ctx, uint64_t label, float *buf)
{
	counted *c = ctx;
	(void)buf;
	c->calls++;
	return c->x + label * c->d;
}

static void hint_counted(void *ctx, uint64_t label)
{
	counted *c = ctx;
	(void)label;
	c->hints++;
}

/* The full re-rank by hand: the ef candidates of a search that re-ranks
 * none, measured exactly, the best K (ties: the lower label, which is the
 * node number here). Returns how many. */
static size_t full_rerank(hnsw *h, const float *x, size_t d, const float *q,
			  size_t ef, hnsw_hit *out)
{
	hnsw_query qp = { .k = ef, .ef = ef };
	hnsw_hit c[128];
	size_t nc;
	cr_assert_leq(ef, 128);
	cr_assert_eq(hnsw_search(h, q, &qp, c, &nc), 0);
	const dist_kernels *k = dist_get();
	for (size_t i = 0; i < nc; i++)
		c[i].dist = k->l2sq(q, x + c[i].label * d, d);
	for (size_t i = 1; i < nc; i++) {
		for (size_t j = i; j > 0; j--) {
			hnsw_hit a = c[j - 1], b = c[j];
			if (a.dist < b.dist ||
			    (a.dist == b.dist && a.label < b.label))
				break;
			c[j - 1] = b;
			c[j] = a;
		}
	}
	size_t n = nc < K ? nc : K;
	memcpy(out, c, n * sizeof(hnsw_hit));
	return n;
}

/* Searches of nq queries with the bounded re-rank (and hints when asked)
 * give the full re-rank's answers; *calls gets the vectors measured. */
static void same_as_full(hnsw *h, const float *x, size_t d, const float *qs,
			 size_t nq, size_t ef, bool hint, size_t *calls)
{
	counted c = { x, d, 0, 0 };
	hnsw_query qp = { .k = K, .ef = ef, .rerank = ef, .vec = vec_counted,
			  .vec_ctx = &c };
	if (hint)
		qp.vec_hint = hint_counted;
	for (size_t q = 0; q < nq; q++) {
		hnsw_hit got[K], want[K];
		size_t ng, nw = full_rerank(h, x, d, qs + q * d, ef, want);
		cr_assert_eq(hnsw_search(h, qs + q * d, &qp, got, &ng), 0);
		cr_assert_eq(ng, nw, "query %zu", q);
		for (size_t i = 0; i < ng; i++) {
			cr_assert_eq(got[i].label, want[i].label,
				     "query %zu rank %zu", q, i);
			cr_assert_float_eq(got[i].dist, want[i].dist, 0);
		}
	}
	cr_assert(!hint || c.hints > 0, "no hints");
	*calls = c.calls;
}

/* Clustered vectors rounded to whole numbers in 0..255: codes over
 * [0, 255] that are the vectors themselves. */
static float *on_grid(size_t n, size_t d)
{
	float *x = clustered(n, d, 40);
	for (size_t i = 0; i < n * d; i++) {
		float v = roundf((x[i] + 1.5f) * 85);
		x[i] = v < 0 ? 0 : v > 255 ? 255 : v;
	}
	return x;
}

Test(hnsw, rerank_measures_only_what_can_make_the_top_k)
{
	size_t n = 5000, d = 24, nq = 100, ef = 48, calls;
	float *x = on_grid(n + nq, d);
	hnsw *h = build(x, n, d, 0, 255, HNSW_L2);
	same_as_full(h, x, d, x + n * d, nq, ef, false, &calls);
	/* no quantisation error: the code distances are the distances, and
	 * about K candidates are measured (a tie at the K-th adds one) */
	cr_assert_leq(calls, nq * (K + 1), "%zu vectors for %zu queries",
		      calls, nq);
	same_as_full(h, x, d, x + n * d, nq, ef, true, &calls);
	hnsw_free(h);
	free(x);
}

Test(hnsw, rerank_bound_holds_off_the_grid)
{
	size_t n = 5000, d = 32, nq = 100, calls;
	float *x = clustered(n + nq, d, 40);
	/* a range narrower than the data: clamped codes, large errors */
	hnsw *h = build(x, n, d, -0.8f, 0.8f, HNSW_L2);
	same_as_full(h, x, d, x + n * d, nq, 64, true, &calls);
	hnsw_free(h);
	h = build(x, n, d, -2, 2, HNSW_L2);
	same_as_full(h, x, d, x + n * d, nq, 64, false, &calls);
	cr_assert_leq(calls, nq * 64);
	hnsw_free(h);
	free(x);
}

/* ---- saving and loading ---- */
typedef struct sbuf {
	uint8_t *p;
	size_t len, cap;
} sbuf;

static int sput(void *ctx, const void *p, size_t n)
{
	sbuf *b = ctx;
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static uint64_t drop_third(void *ctx, uint64_t label)
{
	(void)ctx;
	return label % 3 == 0 ? UINT64_MAX : label;
}

Test(hnsw, save_load_same_answers)
{
	size_t n = 5000, d = 16;
	float *x = clustered(n + 50, d, 20);
	hnsw *h = build(x, n, d, -2, 2, HNSW_L2);
	for (uint32_t i = 0; i < n; i += 7)
		cr_assert_eq(hnsw_delete(h, i), 0);
	sbuf b = { 0 };
	cr_assert_eq(hnsw_save(h, NULL, NULL, sput, &b), 0);
	hnsw *g;
	cr_assert_eq(hnsw_load(b.p, b.len, &g), 0);
	hnsw_query qp = { .k = K, .ef = 40 };
	for (size_t q = 0; q < 50; q++) {
		hnsw_hit a[K], c[K];
		size_t na, nc;
		cr_assert_eq(hnsw_search(h, x + (n + q) * d, &qp, a, &na), 0);
		cr_assert_eq(hnsw_search(g, x + (n + q) * d, &qp, c, &nc), 0);
		cr_assert_eq(na, nc);
		for (size_t i = 0; i < na; i++) {
			cr_assert_eq(a[i].label, c[i].label);
			cr_assert_float_eq(a[i].dist, c[i].dist, 0);
		}
	}
	/* a copy whose rows are partly gone (every third label, the entry
	 * point's likely among them): tombstones that route, then reclaimed
	 * and reused */
	sbuf b2 = { 0 };
	cr_assert_eq(hnsw_save(h, drop_third, NULL, sput, &b2), 0);
	hnsw *g2;
	cr_assert_eq(hnsw_load(b2.p, b2.len, &g2), 0);
	cr_assert_eq(hnsw_check(g2), 0);
	hnsw_reclaim(g2);
	cr_assert_eq(hnsw_check(g2), 0);
	for (size_t i = 0; i < 500; i++)
		cr_assert_eq(hnsw_insert(g2, x + i * d, i, NULL), 0);
	cr_assert_eq(hnsw_check(g2), 0);
	hnsw_free(g2);
	free(b2.p);
	/* damage is refused, not trusted */
	b.p[b.len / 2] ^= 0xff;
	hnsw *bad = NULL;
	int rc = hnsw_load(b.p, b.len - 3, &bad);
	cr_assert(rc == -EINVAL);
	hnsw_free(h);
	hnsw_free(g);
	free(b.p);
	free(x);
}

/* The bytes of the format before quantisation errors ("HNSW"): b's, each
 * node's error left out. Node records: flags, level, label, sum of codes,
 * error, codes, level-0 count and links, then (unless freed, flag 2) each
 * upper level's count and links. */
static sbuf format_v1(const sbuf *b)
{
	sbuf o = { 0 };
	uint32_t hdr[6];
	memcpy(hdr, b->p, sizeof hdr);
	size_t dim = hdr[3], next = hdr[5], off = 48;
	hdr[0] = 0x57534e48u;
	sput(&o, hdr, sizeof hdr);
	sput(&o, b->p + 24, off - 24);
	for (size_t i = 0; i < next; i++) {
		uint8_t f = b->p[off], lv = b->p[off + 1];
		sput(&o, b->p + off, 14);
		off += 18;
		uint16_t n0;
		memcpy(&n0, b->p + off + dim, 2);
		size_t len = dim + 2 + n0 * 4u;
		for (int l = 1; l <= lv && !(f & 2); l++) {
			uint32_t cnt;
			memcpy(&cnt, b->p + off + len, 4);
			len += 4 + cnt * 4u;
		}
		sput(&o, b->p + off, len);
		off += len;
	}
	cr_assert_eq(off, b->len);
	return o;
}

Test(hnsw, loads_the_format_before_errors)
{
	size_t n = 3000, d = 20, nq = 50, ef = 40;
	float *x = on_grid(n + nq, d);
	hnsw *h = build(x, n, d, 0, 255, HNSW_L2);
	sbuf b = { 0 };
	cr_assert_eq(hnsw_save(h, NULL, NULL, sput, &b), 0);
	sbuf v1 = format_v1(&b);
	hnsw *g;
	cr_assert_eq(hnsw_load(v1.p, v1.len, &g), 0);
	cr_assert_eq(hnsw_check(g), 0);
	/* the same answers; the old graph's errors unknown, every candidate
	 * is measured */
	size_t calls_h, calls_g;
	same_as_full(h, x, d, x + n * d, nq, ef, false, &calls_h);
	same_as_full(g, x, d, x + n * d, nq, ef, false, &calls_g);
	cr_assert_eq(calls_g, nq * ef);
	cr_assert_lt(calls_h, calls_g);
	/* an error below zero would prune what it must not: refused (the
	 * first node's error is at 48 + 14) */
	float neg = -1;
	memcpy(b.p + 62, &neg, 4);
	hnsw *bad = NULL;
	cr_assert_eq(hnsw_load(b.p, b.len, &bad), -EINVAL);
	hnsw_free(h);
	hnsw_free(g);
	free(b.p);
	free(v1.p);
	free(x);
}
