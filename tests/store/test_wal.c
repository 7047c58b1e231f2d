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
 * waiting forever. Without waiting (wal_sync_start, cohortd's loops): the
 * registered eventfd is written once the LSN is durable, and when the log
 * fails. Preallocated segments: a closed one holds its records and no
 * more; an open one's zero tail replays as a clean end, while a stray
 * byte in it is still a damaged tail.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cohort.h"
#include "io_int.h"
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

/* Is efd written within ms? (reads it back to zero) */
static bool notified_within(int efd, int ms)
{
	struct pollfd pfd = { .fd = efd, .events = POLLIN };
	if (poll(&pfd, 1, ms) != 1)
		return false;
	uint64_t v;
	return read(efd, &v, sizeof v) == (ssize_t)sizeof v && v > 0;
}

/* The interval is 10 s: only the start can have the writer flush. */
static void start_without_waiting(bool no_uring)
{
	char dir[64];
	wal *w = open_log(dir, sizeof dir, COHORT_FSYNC_ALWAYS, 10000, no_uring);
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	cr_assert_geq(efd, 0);
	cr_assert_eq(wal_notify(w, efd, true), 0);
	uint64_t lsn = 0;
	for (int round = 0; round < 20; round++) {
		for (int i = 0; i <= round; i++)
			cr_assert_eq(wal_append(w, 1, &i, sizeof i, &lsn), 0);
		int rc = wal_sync_start(w, lsn, efd);
		cr_assert_eq(rc, 0, "round %d: start returned %d with the "
			     "record buffered", round, rc);
		cr_assert(notified_within(efd, 5000), "round %d: no word "
			  "that LSN %llu is durable", round,
			  (unsigned long long)lsn);
		cr_assert_eq(wal_sync_check(w, lsn), 1);
		cr_assert_geq(wal_durable_lsn(w), lsn);
		/* durable already: said at once, nothing to notify */
		cr_assert_eq(wal_sync_start(w, lsn, efd), 1);
	}
	cr_assert_eq(wal_sync_start(w, lsn + 1, efd), COHORT_EINVAL);
	cr_assert_eq(wal_notify(w, efd, false), 0);
	cr_assert_eq(wal_close(w), 0);
	close(efd);
	rmrf(dir);
}

Test(wal, start_without_waiting_notifies_once_durable_uring)
{
	start_without_waiting(false);
}

Test(wal, start_without_waiting_notifies_once_durable_pwrite)
{
	start_without_waiting(true);
}

Test(wal, start_without_waiting_notifies_and_refuses_when_the_sync_fails)
{
	char dir[64];
	wal *w = open_log(dir, sizeof dir, COHORT_FSYNC_ALWAYS, 10000, false);
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	cr_assert_eq(wal_notify(w, efd, true), 0);
	uint64_t lsn;
	cr_assert_eq(wal_append(w, 1, "x", 1, &lsn), 0);
	io_fault_arm(IO_SYNC, 0, IO_FAULT_EIO);
	cr_assert_eq(wal_sync_start(w, lsn, efd), 0);
	cr_assert(notified_within(efd, 5000), "no word of the failed sync");
	io_fault_reset();
	cr_assert_eq(wal_sync_check(w, lsn), COHORT_EIO);
	cr_assert_lt(wal_durable_lsn(w), lsn);
	cr_assert_eq(wal_append(w, 1, "y", 1, &lsn), COHORT_EIO);
	wal_notify(w, efd, false);
	cr_assert_eq(wal_close(w), COHORT_EIO);
	close(efd);
	rmrf(dir);
}

/* The one segment in dir: its path and size. */
static off_t segment_size(const char *dir, char *path, size_t len)
{
	DIR *d = opendir(dir);
	cr_assert(d);
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d)))
		if (strncmp(e->d_name, "wal-", 4) == 0) {
			snprintf(path, len, "%s/%s", dir, e->d_name);
			n++;
		}
	closedir(d);
	cr_assert_eq(n, 1, "%d segments", n);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	return st.st_size;
}

static uint64_t replay_count(const char *dir, char *report, size_t len,
			     int *rc)
{
	replay_state s;
	memset(&s, 0, sizeof s);
	uint64_t last;
	*rc = wal_replay(dir, 0, false, count_cb, &s, &last, report, len);
	return s.n;
}

Test(wal, preallocated_segment_replays_its_records_and_is_cut_on_close)
{
	char dir[64], path[512], report[512];
	wal *w = open_log(dir, sizeof dir, COHORT_FSYNC_ALWAYS, 10, false);
	uint64_t lsn = 0;
	for (int i = 0; i < 100; i++) {
		uint32_t payload[2] = { 0, (uint32_t)i };
		cr_assert_eq(wal_append(w, 1, payload, sizeof payload, &lsn), 0);
	}
	cr_assert_eq(wal_sync(w, lsn), 0);
	/* open: records, then zeros (as a crash would leave it) */
	off_t open_size = segment_size(dir, path, sizeof path);
	off_t records = 100 * (20 + 8);
	int rc;
	cr_assert_eq(replay_count(dir, report, sizeof report, &rc), 100);
	cr_assert_eq(rc, 0);
	cr_assert_str_empty(report, "a clean end reported as: %s", report);
	if (open_size > records) {
		/* a stray byte in the zeros: a damaged tail, cut */
		FILE *f = fopen(path, "r+b");
		cr_assert(f);
		fseek(f, (long)(open_size - 100), SEEK_SET);
		fputc(0x5a, f);
		fclose(f);
		cr_assert_eq(replay_count(dir, report, sizeof report, &rc), 100);
		cr_assert_eq(rc, 0);
		cr_assert(strstr(report, "torn tail"), "report: %s", report);
		cr_assert_eq(segment_size(dir, path, sizeof path), records);
	}
	cr_assert_eq(wal_close(w), 0);
	cr_assert_eq(segment_size(dir, path, sizeof path), records,
		     "closed segment of %lld bytes for %lld of records",
		     (long long)segment_size(dir, path, sizeof path),
		     (long long)records);
	cr_assert_eq(replay_count(dir, report, sizeof report, &rc), 100);
	cr_assert_eq(rc, 0);
	rmrf(dir);
}
