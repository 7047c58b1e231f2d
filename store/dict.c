/*
 * dict.c -- the dictionary of a cat column: string <-> dense code.
 *
 * Codes are 0, 1, 2 ... in first-seen order and never change or get reused,
 * so a code stored in a row stays meaningful for the life of the table.
 * code -> string is lock-free: an array published with a release store
 * (grown by copying; the old array is retired, strings never move).
 * string -> code is an open-addressing map under the rwlock: lookups shared,
 * inserts exclusive.
 */
#include <string.h>

#include "store_int.h"

int dict_init(dict *d, uint64_t *mem)
{
	memset(d, 0, sizeof(*d));
	d->mem = mem;
	if (pthread_rwlock_init(&d->lock, NULL) != 0)
		return COHORT_ENOMEM;
	d->map_cap = 16;
	d->map = ccalloc_acct(d->map_cap, sizeof(uint64_t), mem);
	d->strs_cap = 8;
	dict_str *s = ccalloc_acct(d->strs_cap, sizeof(dict_str), mem);
	if (!d->map || !s) {
		cfree_acct(d->map, mem);
		cfree_acct(s, mem);
		pthread_rwlock_destroy(&d->lock);
		return COHORT_ENOMEM;
	}
	atomic_store(&d->strs, s);
	return 0;
}

void dict_free(dict *d)
{
	dict_str *s = atomic_load(&d->strs);
	uint32_t n = atomic_load(&d->nstrs);
	for (uint32_t i = 0; i < n; i++)
		cfree_acct(s[i].ptr, d->mem);
	cfree_acct(s, d->mem);
	cfree_acct(d->map, d->mem);
	for (retired *r = d->old, *next; r; r = next) {
		next = r->next;
		cfree_acct(r->ptr, d->mem);
		cfree_acct(r, d->mem);
	}
	pthread_rwlock_destroy(&d->lock);
}

/* Code of s in the map, or -1. Under the lock (either mode). */
static int64_t map_find(const dict *d, const char *s, uint32_t len,
			uint32_t tag)
{
	const dict_str *strs = atomic_load_explicit(&((dict *)d)->strs,
						    memory_order_acquire);
	uint32_t i = oa_home(tag, d->map_cap);
	for (;;) {
		uint64_t e = d->map[i];
		if (e == 0)
			return -1;
		if ((uint32_t)(e >> 32) == tag) {
			uint32_t code = (uint32_t)e - 1;
			if (strs[code].len == len &&
			    memcmp(strs[code].ptr, s, len) == 0)
				return code;
		}
		if (++i == d->map_cap)
			i = 0;
	}
}

int dict_find(dict *d, const char *s, uint32_t len, uint32_t *code)
{
	uint32_t tag = (uint32_t)key_hash(s, len);
	pthread_rwlock_rdlock(&d->lock);
	int64_t c = map_find(d, s, len, tag);
	pthread_rwlock_unlock(&d->lock);
	if (c < 0)
		return COHORT_ENOTFOUND;
	*code = (uint32_t)c;
	return 0;
}

/* Insert s (known absent) under the exclusive lock. */
static int insert(dict *d, const char *s, uint32_t len, uint32_t tag,
		  uint32_t *code)
{
	uint32_t n = atomic_load_explicit(&d->nstrs, memory_order_relaxed);
	if (n == UINT32_MAX - 1)
		return seterr(COHORT_ELIMIT, "dictionary full");
	/* Room first, so that a failure leaves the dictionary unchanged. */
	if ((uint64_t)(n + 1) * 4 > (uint64_t)d->map_cap * 3) {
		uint32_t cap = d->map_cap * 2;
		uint64_t *m = ccalloc_acct(cap, sizeof(uint64_t), d->mem);
		if (!m)
			return COHORT_ENOMEM;
		for (uint32_t i = 0; i < d->map_cap; i++)
			if (d->map[i])
				oa_place(m, cap, d->map[i]);
		cfree_acct(d->map, d->mem);
		d->map = m;
		d->map_cap = cap;
	}
	dict_str *strs = atomic_load_explicit(&d->strs, memory_order_relaxed);
	if (n == d->strs_cap) {
		uint32_t cap = d->strs_cap * 2;
		dict_str *ns = ccalloc_acct(cap, sizeof(dict_str), d->mem);
		retired *r = cmalloc(sizeof(*r));
		if (!ns || !r) {
			cfree_acct(ns, d->mem);
			cfree(r);
			return COHORT_ENOMEM;
		}
		__atomic_fetch_add(d->mem, csize(r), __ATOMIC_RELAXED);
		memcpy(ns, strs, n * sizeof(dict_str));
		r->ptr = strs;
		r->next = d->old;
		d->old = r;
		atomic_store_explicit(&d->strs, ns, memory_order_release);
		strs = ns;
		d->strs_cap = cap;
	}
	char *copy = ccalloc_acct(len + 1, 1, d->mem);
	if (!copy)
		return COHORT_ENOMEM;
	memcpy(copy, s, len);
	strs[n].ptr = copy;
	strs[n].len = len;
	atomic_store_explicit(&d->nstrs, n + 1, memory_order_release);
	oa_place(d->map, d->map_cap, ((uint64_t)tag << 32) | (n + 1u));
	*code = n;
	return 0;
}

int dict_intern(dict *d, const char *s, uint32_t len, uint32_t *code)
{
	if (dict_find(d, s, len, code) == 0)
		return 0;
	uint32_t tag = (uint32_t)key_hash(s, len);
	pthread_rwlock_wrlock(&d->lock);
	int64_t c = map_find(d, s, len, tag);
	int rc = 0;
	if (c >= 0)
		*code = (uint32_t)c;
	else
		rc = insert(d, s, len, tag, code);
	pthread_rwlock_unlock(&d->lock);
	return rc;
}

const char *dict_get(const dict *d, uint32_t code, uint32_t *len)
{
	uint32_t n = atomic_load_explicit(&((dict *)d)->nstrs,
					  memory_order_acquire);
	if (code >= n)
		return NULL;
	const dict_str *strs = atomic_load_explicit(&((dict *)d)->strs,
						    memory_order_acquire);
	if (len)
		*len = strs[code].len;
	return strs[code].ptr;
}

uint32_t dict_count(const dict *d)
{
	return atomic_load_explicit(&((dict *)d)->nstrs, memory_order_acquire);
}
