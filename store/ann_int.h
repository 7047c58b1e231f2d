/*
 * ann_int.h -- similarity indexes inside the store: the write path's hooks
 * and what persistence needs. Not public.
 *
 * Per index, per slot (chunks of CHUNK_ROWS allocated with the table's):
 *   seq     bumped by every write or delete of the column, under the row's
 *           stripe (exclusive): lets the worker see it was overtaken;
 *   phash   the hash of the key of the row's latest write: the stripe to
 *           lock to read it. A freed slot keeps its last key's hash until
 *           a new key takes it: ann_slot_retire then moves it, under the
 *           old key's stripe too, so a reader holding that stripe either
 *           finishes before the new key's row is written or finds the hash
 *           changed and locks the new key's stripe (lock_slot);
 *   node1   the graph node of the slot + 1 (0: none); the worker's alone;
 *   pending bit: set by the write, cleared by the worker once the graph
 *           holds the row as of that write.
 * Locks, in order: t->ilock (the set of indexes), db->lock, an index's
 * work_lock (its worker's batches; the snapshot cut takes them all), the
 * stripes.
 */
#ifndef COHORT_ANN_INT_H
#define COHORT_ANN_INT_H

#include "persist_int.h"

struct annidx;

typedef struct aw_ctx {
	int n;
	struct {
		struct annidx *ix;
		uint32_t seq;
	} e[COHORT_MAX_INDEXES];
	uint32_t slot;
	uint64_t hash;
} aw_ctx;

static inline bool ann_active(const cohort_table *t)
{
	return atomic_load_explicit(&((cohort_table *)t)->nindexes,
				    memory_order_relaxed) > 0;
}

/* Under the row's stripe (exclusive), after a write commits: mark the row
 * pending in the indexes on the columns it wrote (cols: bitmap; reset: the
 * row was cleared) or, with del, in every index. */
void ann_row_written(cohort_table *t, aw_ctx *w, uint32_t slot,
		     uint64_t hash, const uint64_t *cols, bool reset, bool del);
/* A free slot about to take the key of hash (its stripe held exclusive,
 * and the table's alloc_lock): under the stripes of the slot's last keys
 * as well, taken without waiting, bump its sequence and point its hash at
 * the new key, so that no reader or worker that found it by an old key
 * reads the new row while it is written. False when one of those stripes
 * is busy: the caller takes another slot. */
bool ann_slot_retire(cohort_table *t, uint32_t slot, uint64_t hash);
/* After the lock: queue the rows for the workers. */
void ann_row_end(cohort_table *t, aw_ctx *w);

int ann_chunk_add(cohort_table *t, uint32_t chunk);
void ann_table_free(cohort_table *t);
/* Wait until no index of the database has pending rows (at most 30 s:
 * COHORT_EBUSY then, and close skips its snapshot: the log has it all). */
int ann_drain(cohort_db *db);
/* The snapshot cut: hold (and release) every index's worker. */
void ann_pause(cohort_table *t);
void ann_resume(cohort_table *t);
/* Snapshot section of index i: definition, pending rows and graph, slots
 * written as row ranks (rank[slot]; UINT32_MAX: not a live row). */
int ann_encode(cohort_table *t, int i, const uint32_t *rank,
	       int (*put)(void *ctx, const void *p, size_t n), void *ctx);
/* Load a snapshot section into a freshly loaded table (slots = ranks). */
int ann_restore(cohort_table *t, const uint8_t *p, size_t len);
/* Replay REC_INDEX_CREATE / REC_INDEX_DROP. */
int ann_replay(cohort_db *db, uint8_t type, bytes_in *r, uint64_t lsn);

#endif
