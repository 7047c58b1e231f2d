/*
 * rowq.c -- see rowq.h.
 */
#include "rowq.h"

#include <time.h>

#include "alloc.h"
#include "cohort.h"

int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rowq_init(rowq *q, size_t cap, size_t batch, uint32_t max_delay_ms,
	      rowq_fn fn, void *ctx)
{
	*q = (rowq){ .cap = cap, .batch = batch, .max_delay_ms = max_delay_ms,
		     .fn = fn, .ctx = ctx };
	q->q = cmalloc(cap * sizeof(rowq_ent));
	if (!q->q)
		return COHORT_ENOMEM;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	pthread_cond_init(&q->room, NULL);
	return 0;
}

static void *worker(void *arg)
{
	rowq *q = arg;
	rowq_ent *b = cmalloc(q->batch * sizeof(rowq_ent));
	pthread_mutex_lock(&q->mu);
	while (b) {
		while (q->len == 0 && !q->stop)
			pthread_cond_wait(&q->cv, &q->mu);
		if (q->stop)
			break;
		/* let a batch gather, but never past half the delay bound */
		int64_t due = q->q[q->head].queued_ms + q->max_delay_ms / 2;
		while (q->len < q->batch && !q->stop) {
			int64_t now = mono_ms();
			if (now >= due)
				break;
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			int64_t ns = ts.tv_nsec + (due - now) * 1000000;
			ts.tv_sec += ns / 1000000000;
			ts.tv_nsec = ns % 1000000000;
			pthread_cond_timedwait(&q->cv, &q->mu, &ts);
		}
		if (q->stop)
			break;
		size_t n = q->len < q->batch ? q->len : q->batch;
		for (size_t i = 0; i < n; i++)
			b[i] = q->q[(q->head + i) % q->cap];
		pthread_mutex_unlock(&q->mu);
		q->fn(q->ctx, b, n);
		pthread_mutex_lock(&q->mu);
		/* dequeued only now: until here the oldest says how stale */
		q->head = (q->head + n) % q->cap;
		q->len -= n;
		pthread_cond_broadcast(&q->room);
	}
	pthread_mutex_unlock(&q->mu);
	cfree(b);
	return NULL;
}

int rowq_start(rowq *q)
{
	if (q->on)
		return 0;
	if (pthread_create(&q->th, NULL, worker, q))
		return COHORT_ENOMEM;
	q->on = true;
	return 0;
}

void rowq_push(rowq *q, rowq_ent e)
{
	e.queued_ms = mono_ms();
	pthread_mutex_lock(&q->mu);
	while (q->len == q->cap && !q->stop)
		pthread_cond_wait(&q->room, &q->mu);
	if (!q->stop) {
		q->q[(q->head + q->len) % q->cap] = e;
		q->len++;
		if (q->len == 1 || q->len == q->batch)
			pthread_cond_signal(&q->cv);
	}
	pthread_mutex_unlock(&q->mu);
}

size_t rowq_pending(rowq *q, int64_t *oldest_ms)
{
	pthread_mutex_lock(&q->mu);
	size_t n = q->len;
	int64_t age = n ? mono_ms() - q->q[q->head].queued_ms : 0;
	pthread_mutex_unlock(&q->mu);
	if (oldest_ms)
		*oldest_ms = age < 0 ? 0 : age;
	return n;
}

void rowq_stop(rowq *q)
{
	if (!q->q)
		return;
	pthread_mutex_lock(&q->mu);
	q->stop = true;
	pthread_cond_broadcast(&q->cv);
	pthread_cond_broadcast(&q->room);
	pthread_mutex_unlock(&q->mu);
	if (q->on)
		pthread_join(q->th, NULL);
	q->on = false;
}

void rowq_free(rowq *q)
{
	if (!q->q)
		return;
	rowq_stop(q);
	cfree(q->q);
	q->q = NULL;
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	pthread_cond_destroy(&q->room);
}
