/*
 * alloc.c -- see alloc.h. With COHORT_JEMALLOC the program is linked against
 * jemalloc, which replaces malloc/free; the calls below then go to it.
 */
#include "alloc.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifdef COHORT_JEMALLOC
#include <jemalloc/jemalloc.h>

/*
 * jemalloc reads this at start-up. Columns are large arrays that are
 * written once and scanned often: transparent huge pages cut the page
 * faults of filling them (a 1M x 32 snapshot loads twice as fast) and the
 * TLB misses of scanning them. A program may still override it with the
 * MALLOC_CONF environment variable.
 */
const char *malloc_conf = "thp:always,metadata_thp:auto";
#endif

static atomic_long fail_countdown = -1;

void alloc_fail_after(long n)
{
	atomic_store(&fail_countdown, n);
}

/* True when fault injection says this allocation must fail. */
static int injected_failure(void)
{
	long c = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
	if (c < 0)
		return 0;
	c = atomic_fetch_sub(&fail_countdown, 1);
	if (c == 0)
		return 1;
	if (c < 0)
		atomic_store(&fail_countdown, -1);
	return 0;
}

void *cmalloc(size_t n)
{
	if (injected_failure())
		return NULL;
	return malloc(n ? n : 1);
}

void *ccalloc(size_t count, size_t size)
{
	if (injected_failure())
		return NULL;
	return calloc(count ? count : 1, size ? size : 1);
}

void *crealloc(void *p, size_t n)
{
	if (injected_failure())
		return NULL;
	return realloc(p, n ? n : 1);
}

void cfree(void *p)
{
	free(p);
}

void *caligned(size_t align, size_t n)
{
	if (injected_failure())
		return NULL;
#ifdef COHORT_JEMALLOC
	/* jemalloc knows when fresh pages are already zero and skips the
	 * memset, so a large chunk costs no RSS until it is written. */
	return mallocx(n ? n : 1, MALLOCX_ALIGN(align) | MALLOCX_ZERO);
#else
	/* aligned_alloc wants a size that is a multiple of the alignment. */
	size_t sz = (n + align - 1) & ~(align - 1);
	if (sz == 0)
		sz = align;
	void *p = aligned_alloc(align, sz);
	if (p)
		memset(p, 0, sz);
	return p;
#endif
}

size_t csize(const void *p)
{
	return p ? malloc_usable_size((void *)p) : 0;
}

static void acct_add(uint64_t *acct, const void *p)
{
	if (acct && p)
		__atomic_fetch_add(acct, csize(p), __ATOMIC_RELAXED);
}

void *ccalloc_acct(size_t count, size_t size, uint64_t *acct)
{
	void *p = ccalloc(count, size);
	acct_add(acct, p);
	return p;
}

void *caligned_acct(size_t align, size_t n, uint64_t *acct)
{
	void *p = caligned(align, n);
	acct_add(acct, p);
	return p;
}

void cfree_acct(void *p, uint64_t *acct)
{
	if (acct && p)
		__atomic_fetch_sub(acct, csize(p), __ATOMIC_RELAXED);
	cfree(p);
}
