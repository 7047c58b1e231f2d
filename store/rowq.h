/*
 * rowq.h -- a bounded queue of changed rows and the background worker that
 * drains it in batches: what persona models (BACKGROUND) and similarity
 * indexes use to keep up with writes without making them wait.
 *
 * A writer pushes (slot, seq, key hash) after releasing its stripe lock;
 * the worker takes up to `batch` entries once the oldest has waited half
 * of max_delay_ms (or at once when a batch is full) and hands them to fn.
 * Entries stay counted as queued until fn returns, so the age of the
 * oldest says how stale the consumer may be. A writer that finds the queue
 * full waits for room: that is what bounds the delay when writes outrun
 * the worker. The entry's seq lets fn drop entries that a newer write of
 * the same slot has superseded (the newer one is queued too).
 */
#ifndef COHORT_ROWQ_H
#define COHORT_ROWQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rowq_ent {
	uint32_t slot, seq;
	uint64_t hash;            /* of the row's key: its stripe */
	int64_t time;             /* the write's event time */
	int64_t queued_ms;        /* monotonic */
} rowq_ent;

typedef void (*rowq_fn)(void *ctx, const rowq_ent *batch, size_t n);

typedef struct rowq {
	pthread_mutex_t mu;
	pthread_cond_t cv, room;
	rowq_ent *q;
	size_t head, len, cap, batch;
	uint32_t max_delay_ms;
	bool stop, on;
	pthread_t th;
	rowq_fn fn;
	void *ctx;
} rowq;

int rowq_init(rowq *q, size_t cap, size_t batch, uint32_t max_delay_ms,
	      rowq_fn fn, void *ctx);
/* Start the worker (once); COHORT_ENOMEM if the thread cannot start. */
int rowq_start(rowq *q);
/* Queue an entry (queued_ms is filled in); waits while the queue is full.
 * Dropped once the queue is stopped. */
void rowq_push(rowq *q, rowq_ent e);
/* Entries queued or being handled, and the age of the oldest (ms). */
size_t rowq_pending(rowq *q, int64_t *oldest_ms);
/* Stop the worker (entries left are dropped) and free. */
void rowq_stop(rowq *q);
void rowq_free(rowq *q);

int64_t mono_ms(void);

#endif
