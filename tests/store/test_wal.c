/*
 * test_wal.c -- the log's group commit, driven through wal_int.h.
 *
 * Under COHORT_FSYNC_ALWAYS a thread waiting for its LSN flushes the
 * buffer itself when no flush is in flight (leader), or sleeps until the
 * group holding its record is durable (follower); the writer thread only
 * flushes a group no one has waited for within the interval. These tests
 * check what a caller can see of that on both I/O paths: every wal_sync
 * returns only once its record is durable, with many threads, and the log
 * replays every record in LSN order; a record nobody waits for still
 * reaches the disk; a sync of an LSN never appended is refused instead of
 * waiting forever.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cohort.h"
#include "tmpdir.h"
#include "wal_int.h"

#define NTHREADS 16
#define NPER 150

static void remove_test_dir(void)
{
	tmpdir_remove();
}

TestSuite(wal, .timeout = 60, .fini = remove_test_dir);

static wal *open_log(char *dir, size_t len, int fsync, uint32_t interval_ms,
		     bool no_uring)
{
	tmpdir_make(dir, len, "wal");
	wal_config cfg = { fsync, interval_ms, no_uring };
	wal *w;
	int rc = wal_open(dir, &cfg, 1, &w);
	cr_assert_eq(rc, 0, "wal_open: %s (%s)", cohort_strerror(rc),
		     cohort_errdetail());
	return w;
}

typedef struct writer_arg {
	wal *w;
	int id;
	int bad;             /* syncs that returned before their LSN was durable */
	int err;
} writer_arg;

static void *append_and_wait(void *p)
{
	writer_arg *a = p;
	for (int i = 0; i < NPER; i++) {
		uint32_t payload[2] = { (uint32_t)a->id, (uint32_t)i };
		uint64_t lsn;
		int rc = wal_append(a->w, 1, payload, sizeof payload, &lsn);
		if (rc == 0)
			rc = wal_sync(a->w, lsn);
		if (rc) {
			a->err = rc;
			return NULL;
		}
		if (wal_durable_lsn(a->w) < lsn)
			a->bad++;
	}
	return NULL;
}

typedef struct replay_state {
	uint64_t n, last;
	int next[NTHREADS];  /* per thread: the i its next record must have */
	int order_errors;
} replay_state;

static int count_cb(void *ctx, uint8_t type, uint64_t lsn,
		    const uint8_t *payload, uint32_t len)
{
	replay_state *s = ctx;
	uint32_t v[2];
	if (type != 1 || len != sizeof v || lsn != s->last + 1)
		s->order_errors++;
	memcpy(v, payload, sizeof v);
	/* a thread's records are appended in its order: LSN order keeps it */
	if (v[0] >= NTHREADS || (int)v[1] != s->next[v[0]])
		s->order_errors++;
	else
		s->next[v[0]]++;
	s->last = lsn;
	s->n++;
	return 0;
}

static void many_writers(bool no_uring)
{
	char dir[64];
	wal *w = open_log(dir, sizeof dir, COHORT_FSYNC_ALWAYS, 10, no_uring);
	pthread_t th[NTHREADS];
	writer_arg args[NTHREADS];
	for (int i = 0; i < NTHREADS; i++) {
		args[i] = (writer_arg){ .w = w, .id = i };
		cr_assert_eq(pthread_create(&th[i], NULL, append_and_wait,
					    &args[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(args[i].err, 0, "thread %d: %s", i,
			     cohort_strerror(args[i].err));
		cr_assert_eq(args[i].bad, 0, "thread %d: %d syncs returned "
			     "before their record was durable", i, args[i].bad);
	}
	cr_assert_eq(wal_durable_lsn(w), (uint64_t)NTHREADS * NPER);
	cr_assert_eq(wal_close(w), 0);

	replay_state s;
	memset(&s, 0, sizeof s);
	uint64_t last;
	char report[256];
	cr_assert_eq(wal_replay(dir, 0, false, count_cb, &s, &last, report,
				sizeof report), 0);
	cr_assert_eq(s.n, (uint64_t)NTHREADS * NPER, "replayed %llu records",
		     (unsigned long long)s.n);
	cr_assert_eq(s.order_errors, 0);
	cr_assert_str_empty(report);
	rmrf(dir);
}

Test(wal, every_sync_returns_durable_with_many_writers_uring)
{
	many_writers(false);
}

Test(wal, every_sync_returns_durable_with_many_writers_pwrite)
{
	many_writers(true);
}

/* Under ALWAYS the waiters flush; a record no one waits for (a deferred
 * wait never made) is the writer thread's, within about an interval. */
static void unwaited_record(bool no_uring)
{
	char dir[64];
	wal *w = open_log(dir, sizeof dir, COHORT_FSYNC_ALWAYS, 20, no_uring);
	struct timespec pause = { 0, 5 * 1000000L };
	/* each round starts with the writer asleep with nothing to watch:
	 * the append alone must wake it */
	for (int round = 0; round < 3; round++) {
		struct timespec idle = { 0, 60 * 1000000L };
		nanosleep(&idle, NULL);
		uint64_t lsn;
		cr_assert_eq(wal_append(w, 1, "x", 1, &lsn), 0);
		int waited_ms = 0;
		while (wal_durable_lsn(w) < lsn && waited_ms < 2000) {
			nanosleep(&pause, NULL);
			waited_ms += 5;
		}
		cr_assert_geq(wal_durable_lsn(w), lsn, "round %d: a record no "
			      "one waited for was not written in %d ms "
			      "(interval 20 ms)", round, waited_ms);
		/* written once: a later waiter finds it durable */
		cr_assert_eq(wal_sync(w, lsn), 0);
	}
	cr_assert_eq(wal_close(w), 0);
	rmrf(dir);
}

Test(wal, unwaited_record_is_written_within_the_interval_uring)
{
	unwaited_record(false);
}

Test(wal, unwaited_record_is_written_within_the_interval_pwrite)
{
	unwaited_record(true);
}

Test(wal, sync_of_an_lsn_never_appended_is_refused)
{
	char dir[64];
	wal *w = open_log(dir, sizeof dir, COHORT_FSYNC_ALWAYS, 10, false);
	uint64_t lsn;
	cr_assert_eq(wal_append(w, 1, "x", 1, &lsn), 0);
	cr_assert_eq(wal_sync(w, lsn), 0);
	cr_assert_eq(wal_sync(w, lsn + 5), COHORT_EINVAL);
	cr_assert_eq(wal_close(w), 0);
	rmrf(dir);
}
