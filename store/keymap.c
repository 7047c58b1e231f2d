/*
 * keymap.c -- key -> slot map: open addressing with linear probing, split
 * into NSTRIPES independent tables by the top 8 bits of the key hash.
 *
 * An entry is one 64-bit word: the low 32 bits of the hash (the tag) and
 * slot + 1 (0 marks an empty entry). The key bytes live in the table's key
 * arena, so a key costs no allocation of its own; a probe compares tags and
 * reads the key only on a tag match. A tag's home position is
 * (tag * cap) >> 32, so capacities need not be powers of two: they follow
 * 16, 24, 32, 48, 64 ... (x1.5, x1.33), exact jemalloc size classes.
 * Removal shifts the following entries back (no tombstones), so probe
 * lengths never degrade under churn. A bulk load into an empty stripe
 * (a snapshot's keys) places its entries in order of home position.
 *
 * Concurrency: every function runs under the stripe's lock (shared for
 * keymap_find, exclusive otherwise); see store_int.h.
 */
#include <string.h>

#include "store_int.h"

#define MAX_LOAD_NUM 17   /* grow beyond 85% full */
#define MAX_LOAD_DEN 20

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* Multiply and fold the 128-bit product: the mixing step. */
static inline uint64_t fold_mul(uint64_t a, uint64_t b)
{
	__uint128_t r = (__uint128_t)a * b;
	return (uint64_t)r ^ (uint64_t)(r >> 64);
}

uint64_t key_hash(const void *key, size_t len)
{
	const uint64_t k0 = 0x9e3779b97f4a7c15ull, k1 = 0xc2b2ae3d27d4eb4full,
		       k2 = 0x165667b19e3779f9ull;
	const unsigned char *p = key;
	uint64_t h = fold_mul(len ^ k0, k1);
	while (len >= 16) {
		h = fold_mul(load64(p) ^ k1, load64(p + 8) ^ h ^ k2);
		p += 16;
		len -= 16;
	}
	uint64_t a = 0, b = 0;
	if (len >= 8) {
		a = load64(p);
		b = load64(p + len - 8);
	} else if (len >= 4) {
		uint32_t x, y;
		memcpy(&x, p, 4);
		memcpy(&y, p + len - 4, 4);
		a = x;
		b = y;
	} else if (len > 0) {
		a = ((uint64_t)p[0] << 16) | ((uint64_t)p[len >> 1] << 8) |
		    p[len - 1];
	}
	h = fold_mul(a ^ k2 ^ h, b ^ k0);
	return fold_mul(h ^ (h >> 29), k1);
}

static uint32_t next_cap(uint32_t cap)
{
	/* powers of two grow by 1.5, the 1.5 steps by 4/3 */
	return (cap & (cap - 1)) == 0 ? cap + cap / 2 : cap / 3 * 4;
}

int keymap_init(stripe *s, uint64_t *mem)
{
	if (pthread_rwlock_init(&s->lock, NULL) != 0)
		return COHORT_ENOMEM;
	s->cap = 16;
	s->count = 0;
	s->entries = ccalloc_acct(s->cap, sizeof(uint64_t), mem);
	if (!s->entries) {
		pthread_rwlock_destroy(&s->lock);
		return COHORT_ENOMEM;
	}
	return 0;
}

void keymap_free(stripe *s, uint64_t *mem)
{
	cfree_acct(s->entries, mem);
	s->entries = NULL;
	pthread_rwlock_destroy(&s->lock);
}

int64_t keymap_find(const cohort_table *t, const stripe *s, uint64_t hash,
		    const void *key, uint32_t key_len)
{
	uint32_t tag = (uint32_t)hash, cap = s->cap;
	uint32_t i = oa_home(tag, cap);
	for (;;) {
		uint64_t e = s->entries[i];
		if (e == 0)
			return -1;
		if ((uint32_t)(e >> 32) == tag) {
			uint32_t slot = (uint32_t)e - 1, len;
			const char *k = table_slot_key(t, slot, &len);
			if (len == key_len && memcmp(k, key, len) == 0)
				return slot;
		}
		if (++i == cap)
			i = 0;
	}
}

/* Move the stripe's entries into a table of cap entries. */
static int rehash(cohort_table *t, stripe *s, uint32_t cap)
{
	uint64_t *e = ccalloc_acct(cap, sizeof(uint64_t), &t->mem);
	if (!e)
		return seterr(COHORT_ENOMEM, "key map of table '%s': out of "
			      "memory for %u entries", t->name, cap);
	for (uint32_t i = 0; i < s->cap; i++)
		if (s->entries[i])
			oa_place(e, cap, s->entries[i]);
	cfree_acct(s->entries, &t->mem);
	s->entries = e;
	s->cap = cap;
	return 0;
}

int keymap_reserve(cohort_table *t, stripe *s, uint32_t n)
{
	uint32_t cap = s->cap;
	while ((uint64_t)n * MAX_LOAD_DEN > (uint64_t)cap * MAX_LOAD_NUM)
		cap = next_cap(cap);
	return cap == s->cap ? 0 : rehash(t, s, cap);
}

int keymap_insert(cohort_table *t, stripe *s, uint64_t hash, uint32_t slot)
{
	if ((uint64_t)(s->count + 1) * MAX_LOAD_DEN >
	    (uint64_t)s->cap * MAX_LOAD_NUM) {
		int rc = rehash(t, s, next_cap(s->cap));
		if (rc)
			return rc;
	}
	oa_place(s->entries, s->cap, keymap_entry(hash, slot));
	s->count++;
	return 0;
}

/*
 * Fill an empty table from n entries: a counting sort by home position,
 * then each entry at max(its home, the one after the previous entry), the
 * layout that inserting them in that order gives, without a probe loop
 * and its mispredicted branches (the random inserts cost three times as
 * much). The entries that run past the end wrap around as usual, last.
 * False, having placed nothing, where the scratch cannot be allocated.
 */
static bool build_sorted(stripe *s, const uint64_t *e, uint32_t n)
{
	uint32_t cap = s->cap;
	uint32_t *at = cmalloc(((size_t)cap + 1) * sizeof(uint32_t));
	uint64_t *by_home = cmalloc((size_t)n * sizeof(uint64_t));
	if (!at || !by_home) {
		cfree(at);
		cfree(by_home);
		return false;
	}
	memset(at, 0, ((size_t)cap + 1) * sizeof(uint32_t));
	for (uint32_t i = 0; i < n; i++)
		at[oa_home((uint32_t)(e[i] >> 32), cap) + 1]++;
	for (uint32_t h = 0; h < cap; h++)
		at[h + 1] += at[h];
	for (uint32_t i = 0; i < n; i++)
		by_home[at[oa_home((uint32_t)(e[i] >> 32), cap)]++] = e[i];
	uint32_t i = 0, pos = 0;
	for (; i < n; i++) {
		uint32_t home = oa_home((uint32_t)(by_home[i] >> 32), cap);
		if (pos < home)
			pos = home;
		if (pos == cap)
			break;
		s->entries[pos++] = by_home[i];
	}
	for (; i < n; i++)
		oa_place(s->entries, cap, by_home[i]);
	cfree(at);
	cfree(by_home);
	return true;
}

int keymap_insert_entries(cohort_table *t, stripe *s, const uint64_t *e,
			  size_t n)
{
	int rc = keymap_reserve(t, s, s->count + (uint32_t)n);
	if (rc)
		return rc;
	if (s->count != 0 || n < 64 || !build_sorted(s, e, (uint32_t)n))
		for (size_t i = 0; i < n; i++)
			oa_place(s->entries, s->cap, e[i]);
	s->count += (uint32_t)n;
	return 0;
}

void keymap_remove(stripe *s, uint64_t hash, uint32_t slot)
{
	uint32_t cap = s->cap, i = oa_home((uint32_t)hash, cap);
	uint64_t want = ((hash & 0xffffffffu) << 32) | (slot + 1u);
	while (s->entries[i] != want)
		if (++i == cap)
			i = 0;
	/* Shift back every following entry that may move into the hole. */
	uint32_t hole = i, j = i;
	for (;;) {
		if (++j == cap)
			j = 0;
		uint64_t e = s->entries[j];
		if (e == 0)
			break;
		uint32_t home = oa_home((uint32_t)(e >> 32), cap);
		/* e may fill the hole if its home is not in (hole, j] */
		bool stays = hole <= j ? (home > hole && home <= j)
				       : (home > hole || home <= j);
		if (!stays) {
			s->entries[hole] = e;
			hole = j;
		}
	}
	s->entries[hole] = 0;
	s->count--;
}
