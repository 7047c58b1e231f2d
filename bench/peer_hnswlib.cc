/*
 * peer_hnswlib.cc -- see peer_hnswlib_int.h.
 *
 * hnswlib picks its distance kernel from the macros of the compiler target
 * (__AVX__, __AVX512F__) and then from cpuid; the Makefile compiles this
 * file alone with -march=native, as hnswlib's own Python package is built,
 * so that the peer runs at its best on the machine that runs the suite.
 */
#include "peer_hnswlib_int.h"

#include <cerrno>
#include <mutex>
#include <new>
#include <stdexcept>

#include <hnswlib/hnswlib.h>

struct peer_hnswlib {
	hnswlib::L2Space space;
	hnswlib::HierarchicalNSW<float> index;

	peer_hnswlib(size_t dim, size_t max_elements, size_t M, size_t efc,
		     uint64_t seed)
		: space(dim), index(&space, max_elements, M, efc, seed)
	{
	}
};

extern "C" int peer_hnswlib_new(size_t dim, size_t max_elements, size_t M,
				size_t ef_construction, uint64_t seed,
				peer_hnswlib **out)
{
	*out = nullptr;
	try {
		*out = new peer_hnswlib(dim, max_elements, M, ef_construction,
					seed);
	} catch (const std::bad_alloc &) {
		return -ENOMEM;
	} catch (const std::runtime_error &) {
		/* hnswlib throws runtime_error when malloc fails */
		return -ENOMEM;
	}
	return 0;
}

extern "C" void peer_hnswlib_free(peer_hnswlib *h)
{
	delete h;
}

extern "C" int peer_hnswlib_add(peer_hnswlib *h, const float *x,
				uint64_t label)
{
	if (h->index.cur_element_count >= h->index.max_elements_)
		return -ENOSPC;
	try {
		h->index.addPoint(x, (hnswlib::labeltype)label);
	} catch (const std::bad_alloc &) {
		return -ENOMEM;
	} catch (const std::runtime_error &) {
		return -ENOMEM;
	}
	return 0;
}

extern "C" void peer_hnswlib_set_ef(peer_hnswlib *h, size_t ef)
{
	h->index.setEf(ef);
}

extern "C" int peer_hnswlib_search(peer_hnswlib *h, const float *q, size_t k,
				   uint64_t *labels, float *dists, size_t *n)
{
	*n = 0;
	try {
		/* a max-heap: the farthest on top */
		auto top = h->index.searchKnn(q, k);
		size_t m = top.size();
		for (size_t i = m; i-- > 0;) {
			dists[i] = top.top().first;
			labels[i] = top.top().second;
			top.pop();
		}
		*n = m;
	} catch (const std::bad_alloc &) {
		return -ENOMEM;
	}
	return 0;
}

extern "C" void peer_hnswlib_memory(const peer_hnswlib *h,
				    peer_hnswlib_mem *out)
{
	const hnswlib::HierarchicalNSW<float> &ix = h->index;
	size_t n = ix.cur_element_count, upper = 0;

	for (size_t i = 0; i < n; i++)
		if (ix.element_levels_[i] > 0)
			upper += ix.size_links_per_element_ *
				 (size_t)ix.element_levels_[i];
	out->level0 = ix.max_elements_ * ix.size_data_per_element_;
	out->upper = upper;
	out->other = ix.max_elements_ * sizeof(void *) +
		     ix.element_levels_.capacity() * sizeof(int) +
		     ix.link_list_locks_.size() * sizeof(std::mutex) +
		     ix.link_list_update_locks_.size() * sizeof(std::mutex) +
		     ix.label_lookup_.bucket_count() * sizeof(void *) +
		     ix.label_lookup_.size() * 32 +
		     /* one visited list (2-byte marks) per searching thread;
		      * one thread here */
		     ix.max_elements_ * sizeof(hnswlib::vl_type);
	out->total = out->level0 + out->upper + out->other;
}
