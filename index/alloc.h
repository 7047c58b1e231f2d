/*
 * alloc.h -- the one allocation wrapper of cohort.
 *
 * Every allocation in index/ and store/ goes through these functions. They
 * are backed by jemalloc (linked in place of the C library's malloc) and by
 * the C library's malloc in sanitizer builds (MALLOC=libc). They return NULL
 * when memory runs out; library code turns that into COHORT_ENOMEM, and only
 * a program's top level may abort.
 *
 * Accounting: a caller that wants to know what it holds passes a counter
 * (may be NULL) to the _acct variants; it is adjusted by the usable size of
 * each block, allocator rounding included, with relaxed atomics.
 *
 * Fault injection: alloc_fail_after(n) makes the (n+1)-th allocation from
 * now fail (n < 0 disables); tests use it to walk every failure path.
 */
#ifndef COHORT_ALLOC_H
#define COHORT_ALLOC_H

#include <stddef.h>
#include <stdint.h>

void *cmalloc(size_t n);
void *ccalloc(size_t count, size_t size);
void *crealloc(void *p, size_t n);
void cfree(void *p);
/* Zeroed block of n bytes aligned to `align` (a power of two >= 8). */
void *caligned(size_t align, size_t n);

/* Variants that add/subtract the block's usable size to/from *acct. */
void *ccalloc_acct(size_t count, size_t size, uint64_t *acct);
void *caligned_acct(size_t align, size_t n, uint64_t *acct);
void cfree_acct(void *p, uint64_t *acct);

/* Usable size of a block from this wrapper. */
size_t csize(const void *p);

/* Fail the (n+1)-th allocation from now; n < 0 turns injection off. */
void alloc_fail_after(long n);

#endif
