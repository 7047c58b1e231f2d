/*
 * hnsw.h -- a hierarchical navigable small world graph over 8-bit scalar
 * quantised codes, with an exact f32 re-rank, concurrent inserts, deletes
 * that repair the graph, and searches restricted to an allowed set.
 *
 * Pure algorithm (no store headers); returns 0 or a negative errno value.
 *
 * Nodes and labels. The graph holds nodes 0..; each carries a label (the
 * caller's id for it: in the store, a row slot). The graph keeps only the
 * 8-bit codes of the vectors; the exact f32 vectors stay with the caller,
 * who hands them back through a callback for the re-rank. A node is never
 * moved. A deleted node is unlinked at once (its in-neighbours found
 * through its out-neighbours are repaired with its neighbours as
 * candidates) and stays a tombstone that searches pass through but never
 * return, until hnsw_reclaim() sweeps the last links to it and makes its
 * number free for a new insert.
 *
 * Codes. x_j is coded as round((x_j - lo) / (hi - lo) * 255), clamped to
 * 0..255, with one lo and hi for every coordinate, so the distance between
 * codes is the squared L2 distance up to one scale factor (and rounding).
 * Cosine: the caller passes unit vectors and the graph uses L2 on them.
 * Inner product: codes plus a per-node sum of codes give x.y exactly up to
 * the rounding of the codes.
 *
 * Threads. hnsw_insert, hnsw_delete and hnsw_search may run on any number
 * of threads at once: each node's links have their own spin lock; the
 * entry point is an atomic; no lock covers a whole search. hnsw_reclaim
 * waits until every call inside the graph has left and holds new ones at
 * the door while it sweeps (calls count themselves in per-thread counters
 * on separate cache lines, so the common path shares no line).
 */
#ifndef COHORT_HNSW_H
#define COHORT_HNSW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { HNSW_L2 = 0, HNSW_IP = 1 };

typedef struct hnsw_params {
	uint32_t dim;
	int metric;              /* HNSW_L2 (also cosine on unit vectors) or
	                            HNSW_IP (similarity: larger is closer) */
	uint32_t M;              /* links per node on upper levels; 2M on
	                            level 0; 0: 16 */
	uint32_t ef_construction;/* 0: 200 */
	float lo, hi;            /* the code range (lo < hi) */
	uint64_t seed;           /* level draws */
} hnsw_params;

typedef struct hnsw hnsw;

typedef struct hnsw_hit {
	uint64_t label;
	float dist;              /* L2: squared distance; IP: -x.q */
} hnsw_hit;

/* The exact vector of a label for the re-rank; NULL if it has none any
 * more (then the hit is dropped). It must be the vector the label's node
 * was inserted with (a row that changed is re-inserted, or has none until
 * then): with L2 the re-rank trusts its code to bound its distance.
 *
 * The re-rank (L2). A node keeps how far its code is from its vector (the
 * quantisation error); a candidate's distance is at least its code
 * distance less that error and the query's, so the candidates are
 * measured in the order of that bound, up to the first whose bound is past
 * the k-th best exact distance found: the answer is that of measuring them
 * all, with fewer vectors read (k when the codes are the vectors, as 8-bit
 * pixels over [0, 255] are). Inner product measures them all. */
typedef const float *(*hnsw_vec_fn)(void *ctx, uint64_t label, float *buf);

int hnsw_new(const hnsw_params *p, hnsw **out);
void hnsw_free(hnsw *h);

/* Insert x with a label; *node (may be NULL) gets its node number. */
int hnsw_insert(hnsw *h, const float *x, uint64_t label, uint32_t *node);
/* Delete node n (see above). -ENOENT if it is not a live node. */
int hnsw_delete(hnsw *h, uint32_t n);
/* Sweep the links to deleted nodes and free their numbers. */
size_t hnsw_reclaim(hnsw *h);

typedef struct hnsw_query {
	size_t k;                /* results wanted */
	size_t ef;               /* candidate list size, >= k (raised to k) */
	size_t rerank;           /* the best candidates (by code) that are
	                            re-ranked exactly; 0: none (code
	                            distances, rescaled, are returned). L2
	                            measures only those that can still make
	                            the best k (see the re-rank below) */
	hnsw_vec_fn vec;         /* for the re-rank */
	void *vec_ctx;
	/* optional: the re-rank names a label a couple of candidates before
	 * it asks vec for it, so that the caller can start fetching the
	 * vector meanwhile (e.g. __builtin_prefetch of its lines); a hint
	 * only: it must not block, and the label may be asked for, or not.
	 * NULL: none */
	void (*vec_hint)(void *ctx, uint64_t label);
	/* an allowed set: only labels with allow(label) true are returned */
	bool (*allow)(void *ctx, uint64_t label);
	void *allow_ctx;
} hnsw_query;

/* The k nearest live nodes to q: hits (k entries) sorted nearest first;
 * *n gets how many were found. */
int hnsw_search(hnsw *h, const float *q, const hnsw_query *qp,
		hnsw_hit *hits, size_t *n);

typedef struct hnsw_stats {
	size_t nodes;            /* live */
	size_t deleted;          /* tombstones not yet reclaimed */
	size_t bytes;            /* memory held by the graph */
	uint32_t max_level;
} hnsw_stats;

void hnsw_get_stats(const hnsw *h, hnsw_stats *out);

/*
 * Saving: the whole graph through put (0 or an error stops it), each live
 * node's label passed through map (NULL: kept) -- UINT64_MAX makes the
 * node a tombstone in the copy. The graph must not change meanwhile (the
 * store saves from a forked child). Loading builds a graph from those
 * bytes: -EINVAL if they are malformed (every link is checked). The bytes
 * of the format before the quantisation errors load too (their nodes'
 * errors unknown: the re-rank measures every candidate among them).
 */
typedef uint64_t (*hnsw_map_fn)(void *ctx, uint64_t label);
typedef int (*hnsw_put_fn)(void *ctx, const void *p, size_t n);
int hnsw_save(hnsw *h, hnsw_map_fn map, void *mctx, hnsw_put_fn put,
	      void *pctx);
int hnsw_load(const uint8_t *buf, size_t len, hnsw **out);
/* The graph's invariants (tests): 0, or which one fails: -1/-2 the entry
 * point, -3 upper links, -4 a count, -5/-6 a link to no node, to a free
 * one or to one below the link's level. Run alone. */
int hnsw_check(hnsw *h);

/* Call cb for every live node (node number, label). */
void hnsw_each(hnsw *h, void (*cb)(void *ctx, uint32_t node, uint64_t label),
	       void *ctx);

#endif
