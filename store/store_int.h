/*
 * store_int.h -- internals of the store module (tables, columns, key map,
 * dictionaries), shared by the store sources and by white-box tests. Not public.
 *
 * Layout
 *   A table's rows are slots 0..hwm. Slot s lives in chunk s >> CHUNK_SHIFT at
 *   offset s & (CHUNK_ROWS - 1). Every column keeps a directory of chunks;
 *   each chunk holds a validity bitmap and one or two value planes, each
 *   64-byte aligned. Chunks never move: a directory that fills up is copied
 *   into one twice its size, published with a release store, and the old
 *   copy is kept (retired) until the table is freed, so a reader holding an
 *   old directory still reads the same chunks. The table itself keeps three
 *   per-slot planes in its own directory: the key reference, the row's event
 *   time and the live bitmap.
 *
 * Locks
 *   stripe[i].lock (rwlock): the key map entries of stripe i and every value
 *     of the rows whose key hashes to stripe i. Readers of a row take it
 *     shared, writers exclusive. A scan over the whole table (filters) takes
 *     all stripes shared, in index order.
 *   table->alloc_lock (mutex): slot allocation, the free list, chunk growth,
 *     the key arena and adding columns. Taken inside a stripe lock, never
 *     the other way round. Slots are allocated and freed only under some
 *     stripe's exclusive lock, so a scan holding every stripe shared sees
 *     neither.
 *   dictionary locks: innermost.
 *   Bitmap words (validity, live) are shared by rows of different stripes,
 *   so writers change them with atomic fetch-or/and; readers under a stripe
 *   lock read them with relaxed loads.
 */
#ifndef COHORT_STORE_INT_H
#define COHORT_STORE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "cohort.h"

#define CHUNK_SHIFT 14
#define CHUNK_ROWS (1u << CHUNK_SHIFT)
#define CHUNK_WORDS (CHUNK_ROWS / 64)
#define NSTRIPES 256
#define KEY_ARENA_CHUNK (1u << 20)
#define MAX_UPDATES 4096          /* updates in one event */
#define MAX_FILTER_NODES 1024

/* ---- errors (error.c) ---- */
/* Set the thread's error detail and return code. */
int seterr(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- hashing (keymap.c) ---- */
uint64_t key_hash(const void *key, size_t len);

/*
 * Open addressing as the key map and the cat dictionaries use it: an entry
 * is a 64-bit word, a 32-bit hash tag in the high half and a nonzero value
 * in the low half (0 marks an empty entry); a tag's home is
 * (tag * cap) >> 32, so cap need not be a power of two; linear probing.
 */
static inline uint32_t oa_home(uint32_t tag, uint32_t cap)
{
	return (uint32_t)(((uint64_t)tag * cap) >> 32);
}

/* Put e in the first empty entry from its home (the table has room). */
static inline void oa_place(uint64_t *entries, uint32_t cap, uint64_t e)
{
	uint32_t i = oa_home((uint32_t)(e >> 32), cap);
	while (entries[i] != 0)
		if (++i == cap)
			i = 0;
	entries[i] = e;
}

/* ---- retired blocks: freed when the owner is freed ---- */
typedef struct retired {
	void *ptr;
	struct retired *next;
} retired;

/* ---- cat dictionaries (dict.c) ---- */
typedef struct dict_str {
	char *ptr;                /* NUL-terminated */
	uint32_t len;
} dict_str;

typedef struct dict {
	pthread_rwlock_t lock;    /* the hash map; inserts exclusive */
	_Atomic(dict_str *) strs; /* code -> string, published on growth */
	atomic_uint nstrs;
	uint32_t strs_cap;
	uint64_t *map;            /* (hash32 << 32) | (code + 1); 0 empty */
	uint32_t map_cap;
	retired *old;
	uint64_t *mem;            /* the table's memory counter */
} dict;

int dict_init(dict *d, uint64_t *mem);
void dict_free(dict *d);
/* Code of a string, inserting it when absent. */
int dict_intern(dict *d, const char *s, uint32_t len, uint32_t *code);
/* Code of a string; COHORT_ENOTFOUND when absent. */
int dict_find(dict *d, const char *s, uint32_t len, uint32_t *code);
/* String of a code (NULL if unknown); lock-free. */
const char *dict_get(const dict *d, uint32_t code, uint32_t *len);
uint32_t dict_count(const dict *d);

/* ---- columns ---- */
typedef struct colchunk {
	uint64_t *valid;          /* CHUNK_WORDS words, bit set = not null */
	void *plane0;             /* CHUNK_ROWS values of `width` bytes */
	int64_t *plane1;          /* decay: reference time; last: value time */
} colchunk;

typedef struct tcol {
	char name[COHORT_MAX_NAME + 1];
	cohort_type type;
	uint32_t dim;             /* vec: floats per value */
	uint32_t stride;          /* vec: floats per slot (dim padded to 16) */
	uint32_t width;           /* bytes per slot in plane0 */
	int64_t half_life_ms;
	double inv_half_life;     /* decay: 1 / half_life_ms */
	bool has_plane1;
	_Atomic(colchunk *) dir;  /* chunk directory, table->dir_cap entries */
	dict *dict;               /* cat only */
} tcol;

/* ---- per-slot planes of the table ---- */
typedef struct tabchunk {
	uint64_t *keyref;         /* arena offset | len << 48 | cap << 56 */
	int64_t *time;            /* row event time */
	uint64_t *live;           /* CHUNK_WORDS words: slot holds a row */
} tabchunk;

#define KEYREF_OFF(r) ((r) & ((UINT64_C(1) << 48) - 1))
#define KEYREF_LEN(r) ((uint32_t)(((r) >> 48) & 0xff))
#define KEYREF_CAP(r) ((uint32_t)((r) >> 56))
#define KEYREF(off, len, cap)                                                 \
	((uint64_t)(off) | ((uint64_t)(len) << 48) | ((uint64_t)(cap) << 56))

/* ---- key map stripes (keymap.c) ---- */
typedef struct stripe {
	pthread_rwlock_t lock;
	uint64_t *entries;        /* (tag << 32) | (slot + 1); 0 empty */
	uint32_t cap;
	uint32_t count;
} __attribute__((aligned(64))) stripe;

struct cohort_table {
	cohort_db *db;
	char name[COHORT_MAX_NAME + 1];
	int64_t ttl_ms;
	uint64_t mem;                    /* bytes held, atomically updated */
	atomic_int ncols;                /* published after the column is ready */
	tcol *cols[COHORT_MAX_COLUMNS];

	pthread_mutex_t alloc_lock;
	atomic_uint nchunks;             /* chunks allocated in every column */
	uint32_t dir_cap;                /* entries in each directory */
	atomic_uint hwm;                 /* slots ever used: 0..hwm */
	uint32_t free_head;              /* first free slot + 1; 0: none */
	uint32_t nfree;
	_Atomic(tabchunk *) tdir;
	uint32_t id;                     /* index in db->tables */
	char **arena;                    /* key arena chunks */
	uint32_t narena, arena_cap;
	uint32_t arena_used;             /* bytes used in the last chunk */
	retired *old;                    /* retired directories */
	atomic_ulong nrows;

	/* persona models (persona_int.h): changed with every stripe held
	 * exclusively; plock for readers that hold no stripe */
	pthread_rwlock_t plock;
	atomic_int nmodels;
	struct pmodel *models[COHORT_MAX_MODELS];

	/* similarity indexes (ann_int.h): changed with ilock exclusive and
	 * every stripe held exclusively; queries hold ilock shared */
	pthread_rwlock_t ilock;
	atomic_int nindexes;
	struct annidx *indexes[COHORT_MAX_INDEXES];

	stripe stripes[NSTRIPES];
};

struct wal;

struct cohort_db {
	pthread_mutex_t lock;            /* table creation */
	cohort_options opts;
	char *dir;                       /* NULL: in memory only */
	int lock_fd;                     /* flock on dir/LOCK */
	struct wal *wal;                 /* NULL: no logging (memory, replay) */
	char recovery[1024];             /* what recovery cut or lost */
	pthread_mutex_t snap_lock;       /* one snapshot at a time */
	pthread_cond_t snap_cv;
	pthread_t snap_thread;           /* automatic snapshots */
	bool snap_ready, snap_thread_on, snap_stop;
	atomic_size_t ntables;
	cohort_table *tables[COHORT_MAX_TABLES];
};

/* ---- table internals (table.c) ---- */
static inline colchunk *col_chunk(const tcol *c, uint32_t slot)
{
	colchunk *dir = atomic_load_explicit(&((tcol *)c)->dir,
					     memory_order_acquire);
	return &dir[slot >> CHUNK_SHIFT];
}

static inline tabchunk *tab_chunk(const cohort_table *t, uint32_t slot)
{
	tabchunk *dir = atomic_load_explicit(&((cohort_table *)t)->tdir,
					     memory_order_acquire);
	return &dir[slot >> CHUNK_SHIFT];
}

static inline bool bit_get(const uint64_t *words, uint32_t i)
{
	return (__atomic_load_n(&words[i >> 6], __ATOMIC_RELAXED) >> (i & 63)) & 1;
}

static inline void bit_set(uint64_t *words, uint32_t i)
{
	uint64_t m = UINT64_C(1) << (i & 63);
	if (!(__atomic_load_n(&words[i >> 6], __ATOMIC_RELAXED) & m))
		__atomic_fetch_or(&words[i >> 6], m, __ATOMIC_RELAXED);
}

static inline void bit_clear(uint64_t *words, uint32_t i)
{
	uint64_t m = UINT64_C(1) << (i & 63);
	if (__atomic_load_n(&words[i >> 6], __ATOMIC_RELAXED) & m)
		__atomic_fetch_and(&words[i >> 6], ~m, __ATOMIC_RELAXED);
}

static inline uint32_t slot_off(uint32_t slot)
{
	return slot & (CHUNK_ROWS - 1);
}

/* Does slot hold a row? (under its stripe lock, or every stripe) */
static inline bool slot_live(const cohort_table *t, uint32_t slot)
{
	return bit_get(tab_chunk(t, slot)->live, slot_off(slot));
}

static inline int table_ncols(const cohort_table *t)
{
	return atomic_load_explicit(&((cohort_table *)t)->ncols,
				    memory_order_acquire);
}

/* Every stripe of t shared, in index order: no write is half done and
 * none can start (filters, the snapshot cut); and their release. */
static inline void table_rdlock_all(const cohort_table *t)
{
	for (int i = 0; i < NSTRIPES; i++)
		pthread_rwlock_rdlock(&((cohort_table *)t)->stripes[i].lock);
}

/* Every stripe exclusive: no reader or writer of any row is inside. */
static inline void table_wrlock_all(cohort_table *t)
{
	for (int i = 0; i < NSTRIPES; i++)
		pthread_rwlock_wrlock(&t->stripes[i].lock);
}

static inline void table_unlock_all(const cohort_table *t)
{
	for (int i = NSTRIPES - 1; i >= 0; i--)
		pthread_rwlock_unlock(&((cohort_table *)t)->stripes[i].lock);
}

/* A table, column, model or index name: 1..COHORT_MAX_NAME characters of
 * [A-Za-z0-9_]; COHORT_EBADNAME naming `what` otherwise. */
int name_check(const char *what, const char *name);
/* Check a key's length; COHORT_EKEY with a message otherwise. */
int key_check(const cohort_table *t, size_t key_len);
/* Check a column id against the table. */
int column_check(const cohort_table *t, int column);

/* Chunks for at least nrows slots in every column (bulk loads). */
int table_reserve(cohort_table *t, uint64_t nrows);
/* Take a free slot (or a new one, growing the chunks), store the key bytes
 * and mark it live. Called under the stripe lock of the key, whose hash is
 * hash. */
int table_slot_alloc(cohort_table *t, const void *key, uint32_t key_len,
		     uint64_t hash, uint32_t *slot);
/* Zero every value of the slot and its key bytes, clear it from the live
 * bitmap and put it on the free list. Under the stripe lock. */
void table_slot_free(cohort_table *t, uint32_t slot);
/* Null every column of the slot (TTL reset). Under the stripe lock. */
void table_row_clear(cohort_table *t, uint32_t slot);
/* The key bytes of a live slot (under its stripe lock or all stripes). */
const char *table_slot_key(const cohort_table *t, uint32_t slot,
			   uint32_t *len);
/* Expired at `at`? */
static inline bool row_expired(const cohort_table *t, int64_t row_time,
			       int64_t at)
{
	if (t->ttl_ms <= 0)
		return false;
	/* at - row_time > ttl, without overflow */
	if (row_time >= at)
		return false;
	return (uint64_t)at - (uint64_t)row_time > (uint64_t)t->ttl_ms;
}

/* ---- key map (keymap.c) ---- */
static inline stripe *stripe_of(cohort_table *t, uint64_t hash)
{
	return &t->stripes[hash >> 56];
}
int keymap_init(stripe *s, uint64_t *mem);
void keymap_free(stripe *s, uint64_t *mem);
/* Slot of a key, or -1. */
int64_t keymap_find(const cohort_table *t, const stripe *s, uint64_t hash,
		    const void *key, uint32_t key_len);
/* Room for n keys in the stripe without growing again. */
int keymap_reserve(cohort_table *t, stripe *s, uint32_t n);
/* Insert key -> slot (key known absent). May grow the stripe's table. */
int keymap_insert(cohort_table *t, stripe *s, uint64_t hash, uint32_t slot);
/* The entry word of key hash -> slot. */
static inline uint64_t keymap_entry(uint64_t hash, uint32_t slot)
{
	return ((hash & 0xffffffffu) << 32) | (slot + 1u);
}
/* Insert n entries of keys known absent and hashing to this stripe
 * (bulk loads). */
int keymap_insert_entries(cohort_table *t, stripe *s, const uint64_t *e,
			  size_t n);
/* Remove the entry of a present slot. */
void keymap_remove(stripe *s, uint64_t hash, uint32_t slot);

/* ---- filters (filter.c) ---- */
/* The table a filter was built on. */
const cohort_table *filter_table(const cohort_filter *f);
/* Clears the bits of a chunk's matches that are not wanted. */
typedef void (*chunk_restrict_fn)(uint32_t chunk, uint64_t *words, void *ctx);
/* Evaluate filter root (f NULL: every live row) with every stripe of t
 * held by the caller, restricted per chunk, calling cb per matching key. */
int filter_scan_locked(const cohort_table *t, const cohort_filter *f,
		       int root, cohort_time at, chunk_restrict_fn restrict_fn,
		       void *rctx, cohort_key_cb cb, void *ctx,
		       uint64_t *count);

/* ---- bounded little-endian reads of encoded bytes (log records,
 * snapshot sections): a read past the end yields 0 / NULL and sets bad,
 * so a decoder checks once at the end ---- */
typedef struct bytes_in {
	const uint8_t *p;
	uint64_t len, off;
	bool bad;
} bytes_in;

static inline const void *bin_take(bytes_in *b, uint64_t n)
{
	if (b->bad || n > b->len - b->off) {
		b->bad = true;
		return NULL;
	}
	const void *q = b->p + b->off;
	b->off += n;
	return q;
}

/* The next n bytes (1, 2, 4 or 8) as an unsigned number. */
static inline uint64_t bin_uint(bytes_in *b, int n)
{
	uint64_t v = 0;
	const void *q = bin_take(b, (uint64_t)n);
	if (q)
		memcpy(&v, q, (size_t)n);
	return v;
}

/* The time of the call when it is COHORT_NOW. */
static inline cohort_time time_resolve(cohort_time t)
{
	return t == COHORT_NOW ? cohort_now() : t;
}

#endif
