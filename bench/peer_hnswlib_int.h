/*
 * peer_hnswlib_int.h -- hnswlib (header-only C++, Debian libhnswlib-dev)
 * behind a few C functions, so that the `ann` suite can build and query it
 * beside cohort's graph in the same process. The implementation is
 * bench/peer_hnswlib.cc, the one C++ file of cohort-bench.
 *
 * The index is HierarchicalNSW<float> over L2Space (squared L2), with the
 * vectors copied in. One thread at a time: the suite builds and searches
 * it on one thread. Functions return 0 or a negative errno value; C++
 * exceptions never cross into C.
 */
#ifndef PEER_HNSWLIB_INT_H
#define PEER_HNSWLIB_INT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct peer_hnswlib peer_hnswlib;

/* What the index holds, in bytes, counted from its data structures. */
typedef struct peer_hnswlib_mem {
	size_t level0;           /* max_elements x size_data_per_element_: the
	                            level-0 links, the f32 vector and the label
	                            of every element */
	size_t upper;            /* the upper levels' link lists, as allocated */
	size_t other;            /* per-element bookkeeping: the upper-list
	                            pointers, levels, one mutex per element, the
	                            label map (estimated: buckets + one 32-byte
	                            node an entry), the visited lists, and the
	                            65536 fixed update locks */
	size_t total;            /* the sum */
} peer_hnswlib_mem;

/* A new empty index for up to max_elements vectors of dim floats, with M
 * links a node (2M on level 0), ef_construction, and the level draws
 * seeded. *out is owned by the caller (peer_hnswlib_free). -ENOMEM. */
int peer_hnswlib_new(size_t dim, size_t max_elements, size_t M,
		     size_t ef_construction, uint64_t seed,
		     peer_hnswlib **out /* out */);
void peer_hnswlib_free(peer_hnswlib *h);

/* Insert x (copied) under label. -ENOSPC when full, -ENOMEM. */
int peer_hnswlib_add(peer_hnswlib *h, const float *x, uint64_t label);

/* The candidate list size of searches (hnswlib's ef; it searches with
 * max(ef, k)). */
void peer_hnswlib_set_ef(peer_hnswlib *h, size_t ef);

/* The k nearest to q, nearest first: labels[i], dists[i] (squared L2);
 * *n gets how many were found. -ENOMEM. */
int peer_hnswlib_search(peer_hnswlib *h, const float *q, size_t k,
			uint64_t *labels /* out */, float *dists /* out */,
			size_t *n /* out */);

void peer_hnswlib_memory(const peer_hnswlib *h,
			 peer_hnswlib_mem *out /* out */);

#ifdef __cplusplus
}
#endif

#endif /* PEER_HNSWLIB_INT_H */
