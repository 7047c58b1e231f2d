/*
 * persona_int.h -- persona models inside the store: the hooks the write
 * path calls, and what persistence needs. Not public.
 *
 * Per model, per slot: seq (bumped by every write or delete of the row's
 * inputs) and drift (the sum of the lengths of the row's input changes,
 * in the standardised space: an upper bound on how far it has moved).
 * Per version, per slot: the kept state (pstate). Both live in chunks of
 * CHUNK_ROWS slots, allocated with the table's chunks (persona_chunk_add,
 * under alloc_lock), so a write never allocates for them.
 *
 * Locks, in order: model work_lock (background batches, swaps), db->lock,
 * the table's stripes, t->plock (the set of models and their versions, for
 * readers that hold no stripe), alloc_lock. Models are added, dropped and
 * their versions swapped with every stripe held exclusively, so anyone
 * holding a stripe sees a fixed set of models and versions.
 */
#ifndef COHORT_PERSONA_INT_H
#define COHORT_PERSONA_INT_H

#include "persist_int.h"

struct pmodel;

/* One write's persona work: the models whose inputs it changes. */
typedef struct pw_ctx {
	int n;
	struct {
		struct pmodel *m;
		bool had;             /* the row had features before */
		bool queue;           /* for the background worker */
		uint32_t seq;         /* the row's seq after this write */
		float *old;           /* features before (had) */
	} e[COHORT_MAX_MODELS];
	uint32_t slot;
	uint64_t hash;
	int64_t time;
	float *heap;
	float stack[512];
} pw_ctx;

static inline bool persona_active(const cohort_table *t)
{
	return atomic_load_explicit(&((cohort_table *)t)->nmodels,
				    memory_order_relaxed) > 0;
}

/* Under the row's stripe lock (exclusive), before the write commits: the
 * models it touches (cols: bitmap of the written columns; reset: the row
 * is new or cleared) and their features before. COHORT_ENOMEM only. */
int pw_begin(cohort_table *t, pw_ctx *w, uint32_t slot, uint64_t hash,
	     bool fresh, bool reset, const uint64_t *cols);
/* Still under the lock, after the commit: reassign (at once) or mark. */
void pw_commit(cohort_table *t, pw_ctx *w, int64_t time, const void *key,
	       uint32_t key_len);
/* After the lock is released: queue for the background worker (may wait
 * while its queue is full) and free. */
void pw_end(cohort_table *t, pw_ctx *w);

/* Under the row's stripe lock, before its slot is freed. */
void persona_row_deleted(cohort_table *t, uint32_t slot, const void *key,
			 uint32_t key_len);

/* Filters (every stripe held): COHORT_ENOTFOUND / EBUSY / ERANGE unless
 * model has a current version with persona p; the rows of chunk in it. */
int persona_check(const cohort_table *t, const char *model, uint32_t p);
void persona_chunk_members(const cohort_table *t, const char *model,
			   uint32_t p, uint32_t chunk, uint64_t *words);

/* State for chunk `chunk` of every model (under alloc_lock). */
int persona_chunk_add(cohort_table *t, uint32_t chunk);
/* Stop workers and trainers, free every model (cohort_close). */
void persona_table_free(cohort_table *t);

/* The current version of model i as a REC_PERSONA_MODEL payload (the
 * snapshot's persona section); 1 when model i has no version yet. */
int persona_encode(const cohort_table *t, int i, recbuf *b);
/* Replay a REC_PERSONA_* record (log or snapshot section). */
int persona_replay(cohort_db *db, uint8_t type, bytes_in *r, uint64_t lsn);

#endif
