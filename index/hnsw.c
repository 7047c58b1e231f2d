/*
 * hnsw.c -- see hnsw.h.
 *
 * Layout. A node is one fixed-size record: header (lock, level, flags,
 * level-0 link count, sum of codes, quantisation error, label), the codes,
 * then 2M level-0 links; records live in chunks of 2^14 that never move.
 * A distance reads the header and the codes, side by side in as few lines
 * as the codes alone (records are whole lines where that costs little);
 * an expansion reads the lock and the links. A node above level 0 has a
 * separate array of its upper levels' links (count + M each).
 *
 * Searching waits on memory more than it computes: the codes of the next
 * neighbours are prefetched while one is measured, distances measured
 * against a bound stop early, and the exact re-rank measures only the
 * candidates that can still make the best k (see rerank()).
 *
 * Construction follows Malkov and Yashunin: a level drawn with
 * mL = 1 / ln M, a greedy descent on the upper levels, a beam search of
 * ef_construction on each level of the node, neighbours chosen by the
 * heuristic that drops a candidate closer to an already chosen neighbour
 * than to the node, and back links that are pruned by the same heuristic
 * when a list is full. All distances inside the graph are between codes.
 */
#include "hnsw.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "dist.h"
#include "parallel.h"

#define NODE_SHIFT 14
#define NODE_CHUNK (1u << NODE_SHIFT)
#define MAX_CHUNKS 65536          /* 2^30 nodes */
#define MAX_LEVEL 15
#define NONE UINT32_MAX
#define F_DELETED 1
#define F_FREE 2                  /* reclaimed, on the free list */
#define RSTRIPES 64
#define AHEAD 2                   /* nodes whose codes are on their way
                                     while one is measured: more only
                                     crowd the line fill buffers */
#define PREFETCH_BYTES 512        /* of each of those (prefetch_node) */

typedef struct node {
	atomic_flag lock;
	uint8_t level;
	_Atomic uint8_t flags;
	uint16_t n0;              /* level-0 links in use */
	int32_t codesum;
	float qerr;               /* |x - decoded code|, rounded up */
	uint64_t label;
	uint32_t *up;             /* levels 1..level: (count, M links) each */
	/* then: uint8_t code[dim]; uint32_t links0[2M] (4-byte aligned) */
} node;

struct hnsw {
	hnsw_params p;
	uint32_t M, M0, efc;
	size_t rec;               /* bytes per node record */
	size_t links0_off, code_off;
	float scale;              /* (hi - lo) / 255 */
	double ml;
	const dist_kernels *k;

	_Atomic(char *) chunks[MAX_CHUNKS];
	pthread_mutex_t grow;     /* chunks, free list */
	atomic_uint next;         /* node numbers handed out: 0..next */
	uint32_t *freelist;
	size_t nfree, free_cap;

	pthread_mutex_t entry_mu;
	_Atomic uint64_t entry;   /* node | level << 32; NONE: empty */

	atomic_size_t live, deleted, up_bytes;

	pthread_mutex_t vis_mu;   /* the pool of visited sets */
	struct visited *vis_pool;

	/* reclaim waits for every call inside the graph to leave; calls
	 * count themselves in one of RSTRIPES counters (no shared line) */
	struct {
		atomic_int n;
		char pad[60];
	} inside[RSTRIPES];
	atomic_bool reclaiming;
	pthread_mutex_t reclaim_mu;
};

static atomic_uint thread_ids;
static _Thread_local int my_stripe = -1;

static int enter(hnsw *h)
{
	if (my_stripe < 0)
		my_stripe = (int)(atomic_fetch_add(&thread_ids, 1) % RSTRIPES);
	int s = my_stripe;
	for (;;) {
		atomic_fetch_add(&h->inside[s].n, 1);
		if (!atomic_load(&h->reclaiming))
			return s;
		atomic_fetch_sub(&h->inside[s].n, 1);
		while (atomic_load(&h->reclaiming))
			sched_yield();
	}
}

static void leave(hnsw *h, int s)
{
	atomic_fetch_sub(&h->inside[s].n, 1);
}

/* ------------------------------------------------------------------------
 * Nodes
 * ------------------------------------------------------------------------ */
static inline node *node_at(const hnsw *h, uint32_t n)
{
	char *c = atomic_load_explicit(&((hnsw *)h)->chunks[n >> NODE_SHIFT],
				       memory_order_acquire);
	return (node *)(c + (size_t)(n & (NODE_CHUNK - 1)) * h->rec);
}

static inline uint32_t *links0(const hnsw *h, node *x)
{
	return (uint32_t *)((char *)x + h->links0_off);
}

static inline const uint8_t *code_of(const hnsw *h, const node *x)
{
	return (const uint8_t *)x + h->code_off;
}

/* The link list of x at level l: *cnt and the array (count in [0] for
 * upper levels). */
static inline uint32_t *links_at(const hnsw *h, node *x, int l,
				 uint32_t **cnt_slot, uint32_t *cap)
{
	if (l == 0) {
		*cap = h->M0;
		*cnt_slot = NULL;
		return links0(h, x);
	}
	uint32_t *u = x->up + (size_t)(l - 1) * (h->M + 1);
	*cap = h->M;
	*cnt_slot = u;
	return u + 1;
}

static inline uint32_t links_count(node *x, int l, const uint32_t *cnt_slot)
{
	return l == 0 ? x->n0 : *cnt_slot;
}

static inline void links_set_count(node *x, int l, uint32_t *cnt_slot,
				   uint32_t n)
{
	if (l == 0)
		x->n0 = (uint16_t)n;
	else
		*cnt_slot = n;
}

static inline void lock_node(node *x)
{
	while (atomic_flag_test_and_set_explicit(&x->lock,
						 memory_order_acquire))
		__builtin_ia32_pause();
}

static inline void unlock_node(node *x)
{
	atomic_flag_clear_explicit(&x->lock, memory_order_release);
}

static inline bool is_deleted(const node *x)
{
	return atomic_load_explicit(&((node *)x)->flags,
				    memory_order_acquire) & F_DELETED;
}

/* Start fetching the lines of [p, p + len). */
static inline void prefetch_span(const char *p, size_t len)
{
	uintptr_t a = (uintptr_t)p & ~(uintptr_t)63, end = (uintptr_t)p + len;
	for (; a < end; a += 64)
		__builtin_prefetch((const void *)a);
}

/* Start fetching node n's header and the start of its codes (what a
 * distance reads first). Only the start: most of the distances measured
 * with a bound stop past it, and the lines of a node that does not stop
 * come on by the hardware's stream prefetcher; fetching whole nodes of
 * 784 codes was 5% slower than this (Fashion-MNIST, ef 10 and 16). */
static inline void prefetch_node(const hnsw *h, uint32_t n)
{
	size_t len = h->code_off + h->p.dim;
	prefetch_span((const char *)node_at(h, n),
		      len < PREFETCH_BYTES ? len : PREFETCH_BYTES);
}

/* Start fetching node n's lock and level-0 links (what an expansion
 * reads). */
static inline void prefetch_links0(const hnsw *h, uint32_t n)
{
	const char *p = (const char *)node_at(h, n);
	__builtin_prefetch(p);
	prefetch_span(p + h->links0_off, h->M0 * sizeof(uint32_t));
}

/* Copy x's links at level l under its lock; returns the count. */
static uint32_t links_copy(const hnsw *h, node *x, int l, uint32_t *out)
{
	uint32_t *cs, cap;
	lock_node(x);
	uint32_t *ls = links_at(h, x, l, &cs, &cap);
	uint32_t n = links_count(x, l, cs);
	memcpy(out, ls, n * sizeof(uint32_t));
	unlock_node(x);
	return n;
}

/* ------------------------------------------------------------------------
 * Codes and distances
 * ------------------------------------------------------------------------ */
/* x's code and sum of codes, and *err >= |x - decoded code| (decoded:
 * lo + code * scale): how far the code distance can put x from where it
 * is, clamping included. */
static void quantise(const hnsw *h, const float *x, uint8_t *code,
		     int32_t *sum, float *err)
{
	const float lo = h->p.lo, inv = 1.0f / h->scale;
	const uint32_t dim = h->p.dim;
	int32_t s = 0;
	for (uint32_t j = 0; j < dim; j++) {
		float v = (x[j] - lo) * inv + 0.5f;
		int q = v <= 0 ? 0 : v >= 255 ? 255 : (int)v;
		code[j] = (uint8_t)q;
		s += q;
	}
	*sum = s;
	/* in double, four sums at a time: one sum's chain of additions
	 * would take longer than the rest of the loop */
	double dlo = lo, scale = h->scale, s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	uint32_t j = 0;
#define QERR(t) ((double)x[j + (t)] - (dlo + code[j + (t)] * scale))
	for (; j + 4 <= dim; j += 4) {
		double e0 = QERR(0), e1 = QERR(1), e2 = QERR(2), e3 = QERR(3);
		s0 += e0 * e0;
		s1 += e1 * e1;
		s2 += e2 * e2;
		s3 += e3 * e3;
	}
	for (; j < dim; j++)
		s0 += QERR(0) * QERR(0);
#undef QERR
	/* rounded up past every rounding: relative ones of the sums and the
	 * root, and the decoded values' own (2^-53 of |lo| + 255 scale,
	 * absolute, per coordinate) */
	double e = sqrt((s0 + s1) + (s2 + s3)) *
		   (1 + (double)(dim + 8) * 0x1p-50) +
		   (fabs(dlo) + 255 * scale) * (double)dim * 0x1p-52;
	float f = (float)e;
	*err = (double)f < e ? nextafterf(f, INFINITY) : f;
}

/* Distance between codes a (sum sa) and b (sum sb): L2 in code units, or
 * minus the inner product of the decoded vectors for IP. */
static inline float cdist(const hnsw *h, const uint8_t *a, int32_t sa,
			  const uint8_t *b, int32_t sb)
{
	if (h->p.metric == HNSW_L2)
		return (float)h->k->l2sq_u8(a, b, h->p.dim);
	double s = h->scale, lo = h->p.lo;
	double ip = s * s * (double)h->k->ip_u8(a, b, h->p.dim) +
		    s * lo * (double)(sa + sb) + (double)h->p.dim * lo * lo;
	return (float)-ip;
}

static inline float ndist_full(const hnsw *h, const uint8_t *q, int32_t qs,
			       uint32_t n)
{
	const node *x = node_at(h, n);
	return cdist(h, q, qs, code_of(h, x), x->codesum);
}

/* ndist when only a distance below `below` matters: L2 stops early past
 * it (the result is then some value >= below). */
static inline float ndist_below(const hnsw *h, const uint8_t *q, int32_t qs,
				uint32_t n, float below)
{
	if (h->p.metric != HNSW_L2 || !(below < 2147483520.0f))
		return ndist_full(h, q, qs, n);
	const node *x = node_at(h, n);
	/* code distances are integers: d < below iff d <= ceil(below) - 1 */
	int32_t bound = (int32_t)ceilf(below) - 1;
	return (float)h->k->l2sq_u8_max(q, code_of(h, x), h->p.dim, bound);
}

static inline float ndist(const hnsw *h, const uint8_t *q, int32_t qs,
			  uint32_t n)
{
	return ndist_full(h, q, qs, n);
}

/* ------------------------------------------------------------------------
 * Visited sets: a tag per node, a new generation per search
 * ------------------------------------------------------------------------ */
typedef struct visited {
	uint16_t *tag;
	size_t cap;
	uint16_t gen;
	struct visited *next;
} visited;

static visited *vis_get(hnsw *h)
{
	size_t need = atomic_load(&h->next);
	pthread_mutex_lock(&h->vis_mu);
	visited *v = h->vis_pool;
	if (v)
		h->vis_pool = v->next;
	pthread_mutex_unlock(&h->vis_mu);
	if (!v) {
		v = ccalloc(1, sizeof(*v));
		if (!v)
			return NULL;
	}
	if (v->cap < need) {
		size_t cap = need + need / 2 + 1024;
		uint16_t *t = ccalloc(cap, sizeof(uint16_t));
		if (!t) {
			cfree(v->tag);
			cfree(v);
			return NULL;
		}
		cfree(v->tag);
		v->tag = t;
		v->cap = cap;
		v->gen = 0;
	}
	if (++v->gen == 0) {
		memset(v->tag, 0, v->cap * sizeof(uint16_t));
		v->gen = 1;
	}
	return v;
}

static void vis_put(hnsw *h, visited *v)
{
	pthread_mutex_lock(&h->vis_mu);
	v->next = h->vis_pool;
	h->vis_pool = v;
	pthread_mutex_unlock(&h->vis_mu);
}

/* Marks n; false if it was already marked (or is past the set). */
static inline bool vis_mark(visited *v, uint32_t n)
{
	if (n >= v->cap || v->tag[n] == v->gen)
		return false;
	v->tag[n] = v->gen;
	return true;
}

/* ------------------------------------------------------------------------
 * Heaps of (dist, node)
 * ------------------------------------------------------------------------ */
typedef struct cand {
	float d;
	uint32_t n;
} cand;

/* A max-heap (worst on top: a beam) or a min-heap (best on top: the
 * candidates), which the callers name as a constant: inlined, each of
 * them compares one way only. */
typedef struct heap {
	cand *a;
	size_t n, cap;
} heap;

enum { MIN_HEAP = 0, MAX_HEAP = 1 };

static inline bool above(bool max, cand x, cand y)
{
	return max ? x.d > y.d : x.d < y.d;
}

static int heap_grow(heap *h)
{
	size_t cap = h->cap ? h->cap * 2 : 64;
	cand *a = crealloc(h->a, cap * sizeof(cand));
	if (!a)
		return -ENOMEM;
	h->a = a;
	h->cap = cap;
	return 0;
}

static inline __attribute__((always_inline)) int heap_push(heap *h, cand c,
							   bool max)
{
	if (h->n == h->cap && heap_grow(h))
		return -ENOMEM;
	size_t i = h->n++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!above(max, c, h->a[p]))
			break;
		h->a[i] = h->a[p];
		i = p;
	}
	h->a[i] = c;
	return 0;
}

static inline __attribute__((always_inline)) cand heap_pop(heap *h, bool max)
{
	cand top = h->a[0], last = h->a[--h->n];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, b = i;
		cand bc = last;
		if (l < h->n && above(max, h->a[l], bc)) {
			b = l;
			bc = h->a[l];
		}
		if (r < h->n && above(max, h->a[r], bc))
			b = r;
		if (b == i)
			break;
		h->a[i] = h->a[b];
		i = b;
	}
	if (h->n)
		h->a[i] = last;
	return top;
}

static int cand_cmp(const void *a, const void *b)
{
	const cand *x = a, *y = b;
	return x->d < y->d ? -1 : x->d > y->d ? 1 :
	       x->n < y->n ? -1 : x->n > y->n;
}

/* ------------------------------------------------------------------------
 * Searching one level
 * ------------------------------------------------------------------------ */
typedef struct searcher {
	hnsw *h;
	visited *vis;
	heap cands, top;
	uint32_t *buf;            /* M0 links */
	/* results only from nodes that pass: live, and allowed */
	bool (*allow)(void *ctx, uint64_t label);
	void *allow_ctx;
} searcher;

static bool passes(const searcher *s, uint32_t n)
{
	const node *x = node_at(s->h, n);
	if (is_deleted(x))
		return false;
	return !s->allow || s->allow(s->allow_ctx, x->label);
}

/*
 * Beam search of width ef on level l from the entry points in s->top
 * (already marked visited); s->top ends with the best ef nodes that pass
 * (all nodes when filtering is off: construction passes everything but
 * deleted nodes as routes).
 */
static int search_level(searcher *s, const uint8_t *q, int32_t qs,
			const cand *eps, size_t neps, size_t ef, int l,
			bool results_filtered)
{
	hnsw *h = s->h;
	s->cands.n = 0;
	s->top.n = 0;
	int rc = 0;
	for (size_t i = 0; i < neps && rc == 0; i++) {
		rc = heap_push(&s->cands, eps[i], MIN_HEAP);
		if (rc == 0 && (!results_filtered || passes(s, eps[i].n)))
			rc = heap_push(&s->top, eps[i], MAX_HEAP);
	}
	while (s->cands.n && rc == 0) {
		cand c = heap_pop(&s->cands, MIN_HEAP);
		if (s->top.n >= ef && c.d > s->top.a[0].d)
			break;
		/* the next candidate's lock and links, meanwhile */
		if (s->cands.n)
			prefetch_links0(h, s->cands.a[0].n);
		uint32_t nl = links_copy(h, node_at(h, c.n), l, s->buf);
		/* the unvisited neighbours first, then their distances, the
		 * codes of the next AHEAD on their way while one is measured:
		 * the search waits on memory more than it computes */
		uint32_t nu = 0;
		for (uint32_t i = 0; i < nl; i++)
			if (vis_mark(s->vis, s->buf[i]))
				s->buf[nu++] = s->buf[i];
		uint32_t pf = 0;
		for (; pf < nu && pf < AHEAD; pf++)
			prefetch_node(h, s->buf[pf]);
		for (uint32_t i = 0; i < nu && rc == 0; i++) {
			uint32_t e = s->buf[i];
			if (pf < nu)
				prefetch_node(h, s->buf[pf++]);
			float d = s->top.n < ef ? ndist(h, q, qs, e) :
				ndist_below(h, q, qs, e, s->top.a[0].d);
			if (s->top.n < ef || d < s->top.a[0].d) {
				rc = heap_push(&s->cands, (cand){ d, e },
					       MIN_HEAP);
				if (rc)
					break;
				if (results_filtered && !passes(s, e))
					continue;
				rc = heap_push(&s->top, (cand){ d, e },
					       MAX_HEAP);
				if (s->top.n > ef)
					heap_pop(&s->top, MAX_HEAP);
			}
		}
	}
	return rc;
}

/* Greedy descent on level l from *ep toward q. */
static void greedy(hnsw *h, const uint8_t *q, int32_t qs, cand *ep, int l,
		   uint32_t *buf)
{
	for (bool moved = true; moved;) {
		moved = false;
		uint32_t nl = links_copy(h, node_at(h, ep->n), l, buf);
		uint32_t pf = 0;
		for (; pf < nl && pf < AHEAD; pf++)
			prefetch_node(h, buf[pf]);
		for (uint32_t i = 0; i < nl; i++) {
			if (pf < nl)
				prefetch_node(h, buf[pf++]);
			float d = ndist_below(h, q, qs, buf[i], ep->d);
			if (d < ep->d) {
				*ep = (cand){ d, buf[i] };
				moved = true;
			}
		}
	}
}

/* ------------------------------------------------------------------------
 * Choosing neighbours
 * ------------------------------------------------------------------------ */
/* Keep at most m of c[0..n) (sorted nearest first to the base node): a
 * candidate goes only if it is closer to the base than to every one
 * already kept. Returns how many, moved to the front of c. */
static size_t heuristic(const hnsw *h, cand *c, size_t n, size_t m)
{
	size_t kept = 0;
	for (size_t i = 0; i < n && kept < m; i++) {
		const node *x = node_at(h, c[i].n);
		bool good = true;
		for (size_t j = 0; j < kept && good; j++) {
			const node *y = node_at(h, c[j].n);
			float d = cdist(h, code_of(h, x), x->codesum,
					code_of(h, y), y->codesum);
			if (d < c[i].d)
				good = false;
		}
		if (good)
			c[kept++] = c[i];
	}
	return kept;
}

/* Make x's links at level l (x locked) the heuristic's choice among the
 * m candidates c (distances from x; sorted here, c is reused), with topup
 * filled to the cap with the nearest of the rest. */
static void relink(const hnsw *h, node *x, int l, uint32_t *ls,
		   uint32_t *cs, uint32_t cap, cand *c, size_t m, bool topup)
{
	qsort(c, m, sizeof(cand), cand_cmp);
	cand all[2 * 128 + 2];
	if (topup)
		memcpy(all, c, m * sizeof(cand));
	size_t k = heuristic(h, c, m, cap);
	for (size_t i = 0; topup && i < m && k < cap; i++) {
		bool in = false;
		for (size_t j = 0; j < k && !in; j++)
			in = c[j].n == all[i].n;
		if (!in)
			c[k++] = all[i];
	}
	for (size_t i = 0; i < k; i++)
		ls[i] = c[i].n;
	links_set_count(x, l, cs, (uint32_t)k);
}

/* Add link e -> n at level l, pruning e's list by the heuristic when it is
 * full. Under no lock; takes e's. */
static void link_back(hnsw *h, uint32_t e, uint32_t n, int l)
{
	node *x = node_at(h, e);
	cand c[2 * 64 + 2];
	lock_node(x);
	uint32_t *cs, cap;
	uint32_t *ls = links_at(h, x, l, &cs, &cap);
	uint32_t cnt = links_count(x, l, cs);
	for (uint32_t i = 0; i < cnt; i++)
		if (ls[i] == n) {
			unlock_node(x);
			return;
		}
	if (cnt < cap) {
		ls[cnt] = n;
		links_set_count(x, l, cs, cnt + 1);
		unlock_node(x);
		return;
	}
	const uint8_t *xc = code_of(h, x);
	for (uint32_t i = 0; i < cnt; i++) {
		const node *y = node_at(h, ls[i]);
		c[i] = (cand){ cdist(h, xc, x->codesum, code_of(h, y),
				     y->codesum), ls[i] };
	}
	const node *y = node_at(h, n);
	c[cnt] = (cand){ cdist(h, xc, x->codesum, code_of(h, y), y->codesum),
			 n };
	relink(h, x, l, ls, cs, cap, c, cnt + 1, false);
	unlock_node(x);
}

/* ------------------------------------------------------------------------
 * Creation
 * ------------------------------------------------------------------------ */
int hnsw_new(const hnsw_params *p, hnsw **out)
{
	if (!p || !out || p->dim == 0 || !(p->lo < p->hi) ||
	    !isfinite(p->lo) || !isfinite(p->hi) ||
	    (p->metric != HNSW_L2 && p->metric != HNSW_IP) ||
	    p->M > 64 || (p->M && p->M < 2) || p->dim > DIST_U8_MAX_DIM)
		return -EINVAL;
	hnsw *h = ccalloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->p = *p;
	h->M = p->M ? p->M : 16;
	h->M0 = 2 * h->M;
	h->efc = p->ef_construction ? p->ef_construction : 200;
	h->scale = (p->hi - p->lo) / 255.0f;
	h->ml = 1.0 / log((double)h->M);
	h->k = dist_get();
	/* the header beside the codes: a distance reads the two together
	 * (the header says whether the node may be a result), in as few
	 * lines as the codes alone; records whole lines where that costs
	 * at most a sixteenth more */
	h->code_off = sizeof(node);
	h->links0_off = (h->code_off + p->dim + 3) & ~(size_t)3;
	h->rec = (h->links0_off + h->M0 * sizeof(uint32_t) + 7) & ~(size_t)7;
	size_t whole = (h->rec + 63) & ~(size_t)63;
	if ((whole - h->rec) * 16 <= h->rec)
		h->rec = whole;
	pthread_mutex_init(&h->grow, NULL);
	pthread_mutex_init(&h->entry_mu, NULL);
	pthread_mutex_init(&h->vis_mu, NULL);
	pthread_mutex_init(&h->reclaim_mu, NULL);
	atomic_store(&h->entry, (uint64_t)NONE);
	*out = h;
	return 0;
}

void hnsw_free(hnsw *h)
{
	if (!h)
		return;
	uint32_t n = atomic_load(&h->next);
	for (uint32_t i = 0; i < n; i++)
		cfree(node_at(h, i)->up);
	for (uint32_t c = 0; c < MAX_CHUNKS && h->chunks[c]; c++)
		cfree(h->chunks[c]);
	for (visited *v = h->vis_pool, *next; v; v = next) {
		next = v->next;
		cfree(v->tag);
		cfree(v);
	}
	cfree(h->freelist);
	pthread_mutex_destroy(&h->grow);
	pthread_mutex_destroy(&h->entry_mu);
	pthread_mutex_destroy(&h->vis_mu);
	pthread_mutex_destroy(&h->reclaim_mu);
	cfree(h);
}

/* A node number: a reclaimed one, or the next (growing the chunks). */
static int node_alloc(hnsw *h, uint32_t *out)
{
	pthread_mutex_lock(&h->grow);
	int rc = 0;
	if (h->nfree) {
		*out = h->freelist[--h->nfree];
	} else {
		uint32_t n = atomic_load(&h->next);
		uint32_t c = n >> NODE_SHIFT;
		if (c >= MAX_CHUNKS) {
			rc = -ENOSPC;
		} else if (!h->chunks[c]) {
			char *p = caligned(64, NODE_CHUNK * h->rec);
			if (!p)
				rc = -ENOMEM;
			else
				atomic_store_explicit(&h->chunks[c], p,
						      memory_order_release);
		}
		if (rc == 0) {
			*out = n;
			atomic_store(&h->next, n + 1);
		}
	}
	pthread_mutex_unlock(&h->grow);
	return rc;
}

static int draw_level(const hnsw *h, uint64_t label)
{
	uint64_t s = h->p.seed ^ (label * 0x9e3779b97f4a7c15ull);
	double u = (double)((par_rnd(&s) >> 11) + 1) / 9007199254740993.0;
	int l = (int)(-log(u) * h->ml);
	return l > MAX_LEVEL ? MAX_LEVEL : l;
}

static int insert(hnsw *h, const float *x, uint64_t label, uint32_t *out)
{
	if (!h || !x)
		return -EINVAL;
	for (uint32_t j = 0; j < h->p.dim; j++)
		if (!isfinite(x[j]))
			return -EINVAL;
	int level = draw_level(h, label);
	uint32_t *up = NULL;
	if (level > 0) {
		size_t bytes = (size_t)level * (h->M + 1) * sizeof(uint32_t);
		up = ccalloc(1, bytes);
		if (!up)
			return -ENOMEM;
		atomic_fetch_add(&h->up_bytes, bytes);
	}
	uint32_t n;
	int rc = node_alloc(h, &n);
	if (rc) {
		cfree(up);
		return rc;
	}
	node *nd = node_at(h, n);
	/* the header under entry_mu: new_entry, which holds it, reads every
	 * node's flags and level, this one's too (a reclaimed record is
	 * reused here) */
	pthread_mutex_lock(&h->entry_mu);
	memset(nd, 0, h->rec);
	atomic_flag_clear(&nd->lock);
	nd->level = (uint8_t)level;
	pthread_mutex_unlock(&h->entry_mu);
	nd->label = label;
	nd->up = up;
	uint8_t *code = (uint8_t *)nd + h->code_off;
	quantise(h, x, code, &nd->codesum, &nd->qerr);
	atomic_fetch_add(&h->live, 1);
	if (out)
		*out = n;

	/* the first node becomes the entry */
	pthread_mutex_lock(&h->entry_mu);
	uint64_t ent = atomic_load(&h->entry);
	if ((uint32_t)ent == NONE) {
		atomic_store(&h->entry, (uint64_t)n | ((uint64_t)level << 32));
		pthread_mutex_unlock(&h->entry_mu);
		return 0;
	}
	pthread_mutex_unlock(&h->entry_mu);

	uint32_t ep_n = (uint32_t)ent;
	int top = (int)(ent >> 32);
	cand ep = { ndist(h, code, nd->codesum, ep_n), ep_n };
	uint32_t buf[128];
	for (int l = top; l > level; l--)
		greedy(h, code, nd->codesum, &ep, l, buf);

	searcher s = { .h = h, .buf = buf };
	s.vis = vis_get(h);
	if (!s.vis)
		return -ENOMEM;
	cand *eps = cmalloc((h->efc + 1) * sizeof(cand));
	if (!eps) {
		vis_put(h, s.vis);
		return -ENOMEM;
	}
	eps[0] = ep;
	size_t neps = 1;
	for (int l = level < top ? level : top; l >= 0 && rc == 0; l--) {
		s.vis->gen++;
		if (s.vis->gen == 0) {
			memset(s.vis->tag, 0, s.vis->cap * sizeof(uint16_t));
			s.vis->gen = 1;
		}
		for (size_t i = 0; i < neps; i++)
			vis_mark(s.vis, eps[i].n);
		vis_mark(s.vis, n);
		rc = search_level(&s, code, nd->codesum, eps, neps, h->efc, l,
				  false);
		if (rc)
			break;
		/* the beam, nearest first, minus deleted nodes */
		size_t m = 0;
		while (s.top.n) {
			cand c = heap_pop(&s.top, MAX_HEAP);
			eps[m++] = c;
		}
		for (size_t i = 0; i < m / 2; i++) {
			cand t = eps[i];
			eps[i] = eps[m - 1 - i];
			eps[m - 1 - i] = t;
		}
		neps = m;
		cand sel[128];
		size_t ns = 0;
		for (size_t i = 0; i < m && ns < 128; i++)
			if (!is_deleted(node_at(h, eps[i].n)))
				sel[ns++] = eps[i];
		ns = heuristic(h, sel, ns, h->M);
		lock_node(nd);
		uint32_t *cs, cap;
		uint32_t *ls = links_at(h, nd, l, &cs, &cap);
		for (size_t i = 0; i < ns; i++)
			ls[i] = sel[i].n;
		links_set_count(nd, l, cs, (uint32_t)ns);
		unlock_node(nd);
		for (size_t i = 0; i < ns; i++)
			link_back(h, sel[i].n, n, l);
	}
	cfree(eps);
	cfree(s.cands.a);
	cfree(s.top.a);
	vis_put(h, s.vis);
	if (rc)
		return rc;
	if (level > top) {
		pthread_mutex_lock(&h->entry_mu);
		ent = atomic_load(&h->entry);
		if ((uint32_t)ent == NONE || level > (int)(ent >> 32))
			atomic_store(&h->entry,
				     (uint64_t)n | ((uint64_t)level << 32));
		pthread_mutex_unlock(&h->entry_mu);
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Deletion
 * ------------------------------------------------------------------------ */
/* e linked to the deleted node d at level l: replace that link with the
 * best of e's other links and d's links (dn of them). */
static void repair(hnsw *h, uint32_t e, uint32_t d, int l,
		   const uint32_t *dl, uint32_t dn)
{
	node *x = node_at(h, e);
	cand c[2 * 128 + 2];
	lock_node(x);
	uint32_t *cs, cap;
	uint32_t *ls = links_at(h, x, l, &cs, &cap);
	uint32_t cnt = links_count(x, l, cs);
	bool has = false;
	for (uint32_t i = 0; i < cnt && !has; i++)
		has = ls[i] == d;
	if (!has) {
		unlock_node(x);
		return;
	}
	const uint8_t *xc = code_of(h, x);
	size_t m = 0;
	for (int pass = 0; pass < 2; pass++) {
		const uint32_t *src = pass ? dl : ls;
		uint32_t sn = pass ? dn : cnt;
		for (uint32_t i = 0; i < sn; i++) {
			uint32_t y = src[i];
			if (y == d || y == e || is_deleted(node_at(h, y)))
				continue;
			bool dup = false;
			for (size_t j = 0; j < m && !dup; j++)
				dup = c[j].n == y;
			if (dup)
				continue;
			const node *yn = node_at(h, y);
			c[m++] = (cand){ cdist(h, xc, x->codesum, code_of(h, yn),
					       yn->codesum), y };
		}
	}
	/* unlike at insertion, topped up: a repaired node keeps its degree,
	 * so the graph does not thin out under churn */
	relink(h, x, l, ls, cs, cap, c, m, true);
	unlock_node(x);
}

/* A live node to enter by, as high as possible (n excepted). */
static uint64_t new_entry(hnsw *h, uint32_t gone)
{
	uint64_t best = NONE;
	int bl = -1;
	uint32_t lim = atomic_load(&h->next);
	for (uint32_t i = 0; i < lim; i++) {
		node *x = node_at(h, i);
		if (i == gone || is_deleted(x))
			continue;
		if ((int)x->level > bl) {
			bl = x->level;
			best = (uint64_t)i | ((uint64_t)x->level << 32);
		}
	}
	return best;
}

static int delete(hnsw *h, uint32_t n)
{
	if (!h)
		return -EINVAL;
	if (n >= atomic_load(&h->next))
		return -ENOENT;
	node *x = node_at(h, n);
	uint8_t f = atomic_fetch_or(&x->flags, F_DELETED);
	if (f & (F_DELETED | F_FREE))
		return -ENOENT;
	atomic_fetch_sub(&h->live, 1);
	atomic_fetch_add(&h->deleted, 1);
	uint32_t dl[128];
	for (int l = 0; l <= x->level; l++) {
		uint32_t dn = links_copy(h, x, l, dl);
		for (uint32_t i = 0; i < dn; i++)
			if (!is_deleted(node_at(h, dl[i])))
				repair(h, dl[i], n, l, dl, dn);
	}
	pthread_mutex_lock(&h->entry_mu);
	if ((uint32_t)atomic_load(&h->entry) == n)
		atomic_store(&h->entry, new_entry(h, n));
	pthread_mutex_unlock(&h->entry_mu);
	return 0;
}

static size_t reclaim(hnsw *h)
{
	uint32_t lim = atomic_load(&h->next);
	uint32_t dl[128];
	for (uint32_t i = 0; i < lim; i++) {
		node *x = node_at(h, i);
		if (is_deleted(x))
			continue;
		for (int l = 0; l <= x->level; l++) {
			uint32_t *cs, cap;
			uint32_t *ls = links_at(h, x, l, &cs, &cap);
			uint32_t cnt = links_count(x, l, cs);
			for (uint32_t j = 0; j < cnt; j++) {
				uint32_t y = ls[j];
				node *yn = node_at(h, y);
				if (!is_deleted(yn))
					continue;
				/* route around y through its own links */
				uint32_t dn = 0;
				if (!(atomic_load(&yn->flags) & F_FREE) &&
				    l <= yn->level)
					dn = links_copy(h, yn, l, dl);
				repair(h, i, y, l, dl, dn);
				cnt = links_count(x, l, cs);
				j = (uint32_t)-1;  /* the list changed: rescan */
			}
		}
	}
	/* the entry may be a tombstone (a graph loaded from a snapshot
	 * whose rows were deleted): it must not be freed under it */
	uint64_t ent = atomic_load(&h->entry);
	if ((uint32_t)ent != NONE && is_deleted(node_at(h, (uint32_t)ent)))
		atomic_store(&h->entry, new_entry(h, NONE));
	size_t freed = 0;
	pthread_mutex_lock(&h->grow);
	for (uint32_t i = 0; i < lim; i++) {
		node *x = node_at(h, i);
		uint8_t f = atomic_load(&x->flags);
		if (!(f & F_DELETED) || (f & F_FREE))
			continue;
		if (h->nfree == h->free_cap) {
			size_t cap = h->free_cap ? h->free_cap * 2 : 1024;
			uint32_t *fl = crealloc(h->freelist, cap * 4);
			if (!fl)
				break;
			h->freelist = fl;
			h->free_cap = cap;
		}
		if (x->up)
			atomic_fetch_sub(&h->up_bytes, (size_t)x->level *
					 (h->M + 1) * sizeof(uint32_t));
		cfree(x->up);
		x->up = NULL;
		x->level = 0;
		x->n0 = 0;
		atomic_store(&x->flags, F_DELETED | F_FREE);
		h->freelist[h->nfree++] = i;
		freed++;
	}
	pthread_mutex_unlock(&h->grow);
	atomic_fetch_sub(&h->deleted, freed);
	return freed;
}

/* ------------------------------------------------------------------------
 * Search
 * ------------------------------------------------------------------------ */
/* a before b: nearer, or as near and a lower node */
static inline bool cand_less(cand a, cand b)
{
	return a.d < b.d || (a.d == b.d && a.n < b.n);
}

/*
 * The exact re-rank of the candidates res[0..r) (nearest code first):
 * res[0..*kept) gets the best k of them by exact distance, nearest first
 * (ties: lower node first); a candidate whose vector is gone is dropped.
 *
 * With L2 a candidate is measured only while it can still be among the
 * best k. Its distance is at least its code distance less the two
 * quantisation errors (the triangle inequality: |q - x| >= |q' - x'| -
 * |q - q'| - |x - x'|, primes the decoded codes), so once k exact
 * distances are in hand a candidate whose bound is past the k-th is left
 * unmeasured, and so are the rest, taken in order of the bound. The
 * answer is the full re-rank's; the bound's slack (relative, (dim + 4)
 * 2^-22: four times the f32 kernel's error) covers every rounding. Of
 * codes that are the vectors (no error: pixels over [0, 255]) about k are
 * measured instead of r. qp->vec_hint hears of each AHEAD early.
 */
static int rerank(const hnsw *h, const float *q, float qerr,
		  const hnsw_query *qp, cand *res, size_t r, size_t k,
		  size_t *kept)
{
	size_t nk = k < r ? k : r, nt = 0;
	cand *ord = cmalloc((r + nk) * sizeof(cand));
	float vbuf_stack[1024];
	float *vbuf = h->p.dim <= 1024 ? vbuf_stack :
		cmalloc(h->p.dim * sizeof(float));
	if (!ord || !vbuf) {
		cfree(ord);
		if (vbuf != vbuf_stack)
			cfree(vbuf);
		return -ENOMEM;
	}
	cand *top = ord + r;      /* the best nt so far, in cand_less order */
	bool l2 = h->p.metric == HNSW_L2;
	double slack = 1 + (double)(h->p.dim + 4) * 0x1p-22;
	/* bounds in order (insertion: nearly sorted already) */
	for (size_t i = 0; i < r; i++) {
		float lb = -INFINITY;
		if (l2) {
			const node *x = node_at(h, res[i].n);
			double sd = (double)h->scale * sqrt((double)res[i].d) *
				    (1 - 0x1p-20) - qerr - x->qerr;
			lb = sd > 0 ? (float)(sd * sd) : 0;
		}
		size_t j = i;
		for (; j > 0 && ord[j - 1].d > lb; j--)
			ord[j] = ord[j - 1];
		ord[j] = (cand){ lb, (uint32_t)i };
	}
	/* the vectors of the first AHEAD to measure set on their way; then
	 * each next one while one is measured, if it is still in the race */
	for (size_t i = 0; qp->vec_hint && i < r && i < AHEAD; i++)
		qp->vec_hint(qp->vec_ctx, node_at(h, res[ord[i].n].n)->label);
	for (size_t i = 0; i < r; i++) {
		if (nt == nk && ord[i].d > top[nk - 1].d * slack)
			break;
		size_t nx = i + AHEAD;
		if (qp->vec_hint && nx < r &&
		    (nt < nk || ord[nx].d <= top[nk - 1].d * slack))
			qp->vec_hint(qp->vec_ctx,
				     node_at(h, res[ord[nx].n].n)->label);
		uint32_t n = res[ord[i].n].n;
		const float *v = qp->vec(qp->vec_ctx, node_at(h, n)->label,
					 vbuf);
		if (!v)
			continue;
		cand c = { l2 ? h->k->l2sq(q, v, h->p.dim) :
			   -h->k->ip(q, v, h->p.dim), n };
		if (nt == nk && !cand_less(c, top[nk - 1]))
			continue;
		size_t j = nt < nk ? nt++ : nk - 1;
		for (; j > 0 && cand_less(c, top[j - 1]); j--)
			top[j] = top[j - 1];
		top[j] = c;
	}
	memcpy(res, top, nt * sizeof(cand));
	*kept = nt;
	cfree(ord);
	if (vbuf != vbuf_stack)
		cfree(vbuf);
	return 0;
}

static int search(hnsw *h, const float *q, const hnsw_query *qp,
		  hnsw_hit *hits, size_t *nout)
{
	if (!h || !q || !qp || !hits || !nout || qp->k == 0)
		return -EINVAL;
	*nout = 0;
	size_t k = qp->k, ef = qp->ef > k ? qp->ef : k;
	uint8_t stack_code[1024];
	uint8_t *code = h->p.dim <= sizeof(stack_code) ? stack_code :
		cmalloc(h->p.dim);
	if (!code)
		return -ENOMEM;
	int32_t qs;
	float qerr;
	for (uint32_t j = 0; j < h->p.dim; j++)
		if (!isfinite(q[j])) {
			if (code != stack_code)
				cfree(code);
			return -EINVAL;
		}
	quantise(h, q, code, &qs, &qerr);
	int rc = 0;
	uint64_t ent = atomic_load(&h->entry);
	searcher s = { .h = h, .allow = qp->allow, .allow_ctx = qp->allow_ctx };
	uint32_t buf[128];
	s.buf = buf;
	cand *res = NULL;
	size_t m = 0;
	if ((uint32_t)ent != NONE) {
		cand ep = { ndist(h, code, qs, (uint32_t)ent), (uint32_t)ent };
		for (int l = (int)(ent >> 32); l > 0; l--)
			greedy(h, code, qs, &ep, l, buf);
		s.vis = vis_get(h);
		if (!s.vis)
			rc = -ENOMEM;
		if (rc == 0) {
			vis_mark(s.vis, ep.n);
			rc = search_level(&s, code, qs, &ep, 1, ef, 0, true);
			vis_put(h, s.vis);
		}
		if (rc == 0) {
			m = s.top.n;
			res = cmalloc((m ? m : 1) * sizeof(cand));
			if (!res)
				rc = -ENOMEM;
			for (size_t i = m; rc == 0 && i-- > 0;)
				res[i] = heap_pop(&s.top, MAX_HEAP);
		}
	}
	if (rc == 0 && m) {
		size_t r = qp->rerank && qp->vec ?
			(qp->rerank > k ? qp->rerank : k) : 0;
		if (r > m)
			r = m;
		if (r) {
			rc = rerank(h, q, qerr, qp, res, r, k, &m);
		} else if (h->p.metric == HNSW_L2) {
			for (size_t i = 0; i < m; i++)
				res[i].d *= h->scale * h->scale;
		}
		size_t n = m < k ? m : k;
		for (size_t i = 0; rc == 0 && i < n; i++)
			hits[i] = (hnsw_hit){ node_at(h, res[i].n)->label,
					      res[i].d };
		if (rc == 0)
			*nout = n;
	}
	cfree(res);
	cfree(s.cands.a);
	cfree(s.top.a);
	if (code != stack_code)
		cfree(code);
	return rc;
}

int hnsw_insert(hnsw *h, const float *x, uint64_t label, uint32_t *out)
{
	if (!h)
		return -EINVAL;
	int st = enter(h);
	int rc = insert(h, x, label, out);
	leave(h, st);
	return rc;
}

int hnsw_delete(hnsw *h, uint32_t n)
{
	if (!h)
		return -EINVAL;
	int st = enter(h);
	int rc = delete(h, n);
	leave(h, st);
	return rc;
}

int hnsw_search(hnsw *h, const float *q, const hnsw_query *qp,
		hnsw_hit *hits, size_t *n)
{
	if (!h)
		return -EINVAL;
	int st = enter(h);
	int rc = search(h, q, qp, hits, n);
	leave(h, st);
	return rc;
}

size_t hnsw_reclaim(hnsw *h)
{
	pthread_mutex_lock(&h->reclaim_mu);
	atomic_store(&h->reclaiming, true);
	for (int i = 0; i < RSTRIPES; i++)
		while (atomic_load(&h->inside[i].n))
			sched_yield();
	size_t n = reclaim(h);
	atomic_store(&h->reclaiming, false);
	pthread_mutex_unlock(&h->reclaim_mu);
	return n;
}

void hnsw_get_stats(const hnsw *h, hnsw_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!h)
		return;
	out->nodes = atomic_load(&((hnsw *)h)->live);
	out->deleted = atomic_load(&((hnsw *)h)->deleted);
	size_t chunks = 0;
	while (chunks < MAX_CHUNKS && h->chunks[chunks])
		chunks++;
	pthread_mutex_lock(&((hnsw *)h)->grow);
	size_t free_cap = h->free_cap;
	pthread_mutex_unlock(&((hnsw *)h)->grow);
	out->bytes = sizeof(*h) + chunks * NODE_CHUNK * h->rec +
		atomic_load(&((hnsw *)h)->up_bytes) + free_cap * sizeof(uint32_t);
	uint64_t ent = atomic_load(&((hnsw *)h)->entry);
	out->max_level = (uint32_t)ent == NONE ? 0 : (uint32_t)(ent >> 32);
}

/* ------------------------------------------------------------------------
 * Saving and loading
 * ------------------------------------------------------------------------ */
/* "HNS2": each node's quantisation error after its sum of codes. "HNSW",
 * the format before it, is still read: its nodes' errors are unknown
 * (+inf), so that the re-rank measures them all as it used to. */
#define HNSW_MAGIC 0x32534e48u    /* "HNS2" */
#define HNSW_MAGIC_V1 0x57534e48u /* "HNSW" */

int hnsw_save(hnsw *h, hnsw_map_fn map, void *mctx, hnsw_put_fn put,
	      void *pctx)
{
	uint32_t next = atomic_load(&h->next);
	uint64_t ent = atomic_load(&h->entry);
	uint32_t hdr[6] = { HNSW_MAGIC, h->M, h->efc, h->p.dim,
			    (uint32_t)h->p.metric, next };
	int rc = put(pctx, hdr, sizeof(hdr));
	if (rc == 0)
		rc = put(pctx, &h->p.lo, 4) || put(pctx, &h->p.hi, 4) ||
		     put(pctx, &h->p.seed, 8) || put(pctx, &ent, 8) ? -EIO : 0;
	for (uint32_t i = 0; i < next && rc == 0; i++) {
		node *x = node_at(h, i);
		uint8_t f = atomic_load(&x->flags);
		uint64_t label = x->label;
		if (!(f & F_DELETED)) {
			label = map ? map(mctx, label) : label;
			if (label == UINT64_MAX)
				f |= F_DELETED;   /* its row is gone */
		}
		uint8_t lv = x->level;
		uint16_t n0 = (f & F_FREE) ? 0 : x->n0;
		if (put(pctx, &f, 1) || put(pctx, &lv, 1) ||
		    put(pctx, &label, 8) || put(pctx, &x->codesum, 4) ||
		    put(pctx, &x->qerr, 4) ||
		    put(pctx, code_of(h, x), h->p.dim) || put(pctx, &n0, 2) ||
		    put(pctx, links0(h, x), n0 * 4u)) {
			rc = -EIO;
			break;
		}
		for (int l = 1; l <= lv && !(f & F_FREE) && rc == 0; l++) {
			uint32_t *u = x->up + (size_t)(l - 1) * (h->M + 1);
			if (put(pctx, u, 4) || put(pctx, u + 1, u[0] * 4u))
				rc = -EIO;
		}
	}
	return rc;
}

typedef struct rd {
	const uint8_t *p;
	size_t len, off;
	bool bad;
} rd;

static const void *rd_take(rd *r, size_t n)
{
	if (r->bad || n > r->len - r->off) {
		r->bad = true;
		return NULL;
	}
	const void *q = r->p + r->off;
	r->off += n;
	return q;
}

static uint64_t rd_uint(rd *r, size_t n)
{
	uint64_t v = 0;
	const void *q = rd_take(r, n);
	if (q)
		memcpy(&v, q, n);
	return v;
}

int hnsw_load(const uint8_t *buf, size_t len, hnsw **out)
{
	rd r = { buf, len, 0, false };
	uint32_t magic = (uint32_t)rd_uint(&r, 4);
	hnsw_params p = { 0 };
	p.M = (uint32_t)rd_uint(&r, 4);
	p.ef_construction = (uint32_t)rd_uint(&r, 4);
	p.dim = (uint32_t)rd_uint(&r, 4);
	p.metric = (int)rd_uint(&r, 4);
	uint32_t next = (uint32_t)rd_uint(&r, 4);
	const void *lo = rd_take(&r, 4), *hi = rd_take(&r, 4);
	p.seed = rd_uint(&r, 8);
	uint64_t ent = rd_uint(&r, 8);
	if (r.bad || (magic != HNSW_MAGIC && magic != HNSW_MAGIC_V1))
		return -EINVAL;
	memcpy(&p.lo, lo, 4);
	memcpy(&p.hi, hi, 4);
	hnsw *h;
	int rc = hnsw_new(&p, &h);
	if (rc)
		return rc;
	for (uint32_t i = 0; i < next && rc == 0; i++) {
		uint32_t n;
		rc = node_alloc(h, &n);
		if (rc)
			break;
		node *x = node_at(h, n);
		memset(x, 0, h->rec);
		atomic_flag_clear(&x->lock);
		uint8_t f = (uint8_t)rd_uint(&r, 1);
		x->level = (uint8_t)rd_uint(&r, 1);
		x->label = rd_uint(&r, 8);
		x->codesum = (int32_t)rd_uint(&r, 4);
		x->qerr = INFINITY;
		if (magic == HNSW_MAGIC) {
			const void *e = rd_take(&r, 4);
			if (e)
				memcpy(&x->qerr, e, 4);
		}
		const void *code = rd_take(&r, h->p.dim);
		uint16_t n0 = (uint16_t)rd_uint(&r, 2);
		const void *l0 = rd_take(&r, n0 * 4u);
		if (r.bad || n0 > h->M0 || x->level > MAX_LEVEL ||
		    !(x->qerr >= 0)) {
			rc = -EINVAL;
			break;
		}
		memcpy((uint8_t *)x + h->code_off, code, h->p.dim);
		memcpy(links0(h, x), l0, n0 * 4u);
		x->n0 = n0;
		atomic_store(&x->flags, f);
		if (x->level && !(f & F_FREE)) {
			size_t bytes = (size_t)x->level * (h->M + 1) * 4;
			x->up = ccalloc(1, bytes);
			if (!x->up) {
				rc = -ENOMEM;
				break;
			}
			atomic_fetch_add(&h->up_bytes, bytes);
			for (int l = 1; l <= x->level && rc == 0; l++) {
				uint32_t *u = x->up + (size_t)(l - 1) * (h->M + 1);
				u[0] = (uint32_t)rd_uint(&r, 4);
				const void *ls = rd_take(&r, u[0] * 4u);
				if (r.bad || u[0] > h->M)
					rc = -EINVAL;
				else
					memcpy(u + 1, ls, u[0] * 4u);
			}
		}
		if (f & F_FREE) {
			x->level = 0;         /* listed as free below */
		} else if (f & F_DELETED) {
			atomic_fetch_add(&h->deleted, 1);
		} else {
			atomic_fetch_add(&h->live, 1);
		}
	}
	/* every link must name a node */
	for (uint32_t i = 0; i < next && rc == 0; i++) {
		node *x = node_at(h, i);
		for (uint16_t j = 0; j < x->n0 && rc == 0; j++)
			if (links0(h, x)[j] >= next)
				rc = -EINVAL;
		for (int l = 1; l <= x->level && x->up && rc == 0; l++) {
			uint32_t *u = x->up + (size_t)(l - 1) * (h->M + 1);
			for (uint32_t j = 0; j < u[0] && rc == 0; j++)
				if (u[1 + j] >= next)
					rc = -EINVAL;
		}
	}
	if (rc == 0 && ((uint32_t)ent != NONE && (uint32_t)ent >= next))
		rc = -EINVAL;
	/* the free numbers, once every node is in place (node_alloc would
	 * hand them out again otherwise) */
	for (uint32_t i = 0; i < next && rc == 0; i++) {
		if (!(atomic_load(&node_at(h, i)->flags) & F_FREE))
			continue;
		if (h->nfree == h->free_cap) {
			size_t cap = h->free_cap ? h->free_cap * 2 : 1024;
			uint32_t *fl = crealloc(h->freelist, cap * 4);
			if (!fl) {
				rc = -ENOMEM;
				break;
			}
			h->freelist = fl;
			h->free_cap = cap;
		}
		h->freelist[h->nfree++] = i;
	}
	if (rc == 0 && r.off != r.len)
		rc = -EINVAL;
	if (rc) {
		hnsw_free(h);
		return rc;
	}
	atomic_store(&h->entry, ent);
	*out = h;
	return 0;
}

void hnsw_each(hnsw *h, void (*cb)(void *ctx, uint32_t node, uint64_t label),
	       void *ctx)
{
	uint32_t next = atomic_load(&h->next);
	for (uint32_t i = 0; i < next; i++) {
		node *x = node_at(h, i);
		if (!is_deleted(x))
			cb(ctx, i, x->label);
	}
}

int hnsw_check(hnsw *h)
{
	uint32_t next = atomic_load(&h->next);
	uint64_t ent = atomic_load(&h->entry);
	if ((uint32_t)ent != NONE) {
		if ((uint32_t)ent >= next)
			return -1;
		node *e = node_at(h, (uint32_t)ent);
		if ((atomic_load(&e->flags) & F_FREE) ||
		    e->level != (uint8_t)(ent >> 32))
			return -2;
	}
	for (uint32_t i = 0; i < next; i++) {
		node *x = node_at(h, i);
		uint8_t f = atomic_load(&x->flags);
		if (f & F_FREE)
			continue;
		if (x->level && !x->up)
			return -3;
		for (int l = 0; l <= x->level; l++) {
			uint32_t *cs, cap;
			uint32_t *ls = links_at(h, x, l, &cs, &cap);
			uint32_t cnt = links_count(x, l, cs);
			if (cnt > cap)
				return -4;
			for (uint32_t j = 0; j < cnt; j++) {
				if (ls[j] >= next)
					return -5;
				node *y = node_at(h, ls[j]);
				if ((atomic_load(&y->flags) & F_FREE) ||
				    y->level < l)
					return -6;
			}
		}
	}
	return 0;
}
