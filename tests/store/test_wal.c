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
#include "crc32c.h"
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

/* How the log writes: io_uring or pwrite; under ALWAYS direct (O_DIRECT,
 * groups in flight together) or buffered + fdatasync. */
enum { URING = 0, PWRITE = 1, BUFFERED = 2 };

static wal *open_log(char *dir, size_t len, int fsync, uint32_t interval_ms,
		     int mode)
{
	tmpdir_make(dir, len, "wal");
	wal_config cfg = { fsync, interval_ms, mode & PWRITE,
			   (mode & BUFFERED) != 0 };
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

static void many_writers(int mode)
{
	char dir[64];
	wal *w = open_log(dir, sizeof dir, COHORT_FSYNC_ALWAYS, 10, mode);
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
	many_writers(URING);
}

Test(wal, every_sync_returns_durable_with_many_writers_pwrite)
{
	many_writers(PWRITE);
}

Test(wal, every_sync_returns_durable_with_many_writers_uring_buffered)
{
	many_writers(URING | BUFFERED);
}

Test(wal, every_sync_returns_durable_with_many_writers_pwrite_buffered)
{
	many_writers(PWRITE | BUFFERED);
}

/* Under ALWAYS the waiters flush; a record no one waits for (a deferred
 * wait never made) is the writer thread's, within about an interval. */
static void unwaited_record(int mode)
{
	char dir[64];
	wal *w = open_log(dir, sizeof dir, COHORT_FSYNC_ALWAYS, 20, mode);
	struct timespec pause = { 0, 5 * 1000000L };
	/* each round starts with the writers idle and no one told of the
	 * append: the first writer's look once an interval must find it */
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
	unwaited_record(URING);
}

Test(wal, unwaited_record_is_written_within_the_interval_pwrite)
{
	unwaited_record(PWRITE);
}

Test(wal, sync_of_an_lsn_never_appended_is_refused)
{
	char dir[64];
	wal *w = open_log(dir, sizeof dir, COHORT_FSYNC_ALWAYS, 10, URING);
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
static void start_without_waiting(int mode)
{
	char dir[64];
	wal *w = open_log(dir, sizeof dir, COHORT_FSYNC_ALWAYS, 10000, mode);
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
	start_without_waiting(URING);
}

Test(wal, start_without_waiting_notifies_once_durable_pwrite)
{
	start_without_waiting(PWRITE);
}

Test(wal, start_without_waiting_notifies_once_durable_uring_buffered)
{
	start_without_waiting(URING | BUFFERED);
}

Test(wal, start_without_waiting_notifies_and_refuses_when_the_sync_fails)
{
	char dir[64];
	wal *w = open_log(dir, sizeof dir, COHORT_FSYNC_ALWAYS, 10000, URING);
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

/* Where the records of the segment at path end: the first header that is
 * all zeros, or the end of the file. */
static off_t records_end(const char *path)
{
	FILE *f = fopen(path, "rb");
	cr_assert(f);
	off_t off = 0;
	unsigned char h[20];
	while (fseeko(f, off, SEEK_SET) == 0 && fread(h, 1, 20, f) == 20) {
		uint32_t n;
		memcpy(&n, h, 4);
		bool zero = true;
		for (int i = 0; i < 20; i++)
			zero = zero && h[i] == 0;
		if (zero)
			break;
		off += 20 + (off_t)n;
	}
	fclose(f);
	return off;
}

static void preallocated_segment(int mode)
{
	char dir[64], path[512], report[512];
	wal *w = open_log(dir, sizeof dir, COHORT_FSYNC_ALWAYS, 10, mode);
	uint64_t lsn = 0;
	for (int i = 0; i < 100; i++) {
		uint32_t payload[2] = { 0, (uint32_t)i };
		cr_assert_eq(wal_append(w, 1, payload, sizeof payload, &lsn), 0);
	}
	cr_assert_eq(wal_sync(w, lsn), 0);
	/* open: records, then zeros (as a crash would leave it) */
	off_t open_size = segment_size(dir, path, sizeof path);
	off_t records = records_end(path);
	cr_assert_geq(records, 100 * (20 + 8));
	if (mode & BUFFERED)
		cr_assert_eq(records, 100 * (20 + 8));
	else
		cr_assert_eq(records % 4096, 0, "direct groups end on a block");
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

Test(wal, preallocated_segment_replays_its_records_and_is_cut_on_close)
{
	preallocated_segment(URING | BUFFERED);
}

Test(wal, zero_filled_direct_segment_replays_its_records_and_is_cut_on_close)
{
	preallocated_segment(URING);
}

/*
 * Groups in flight together: a direct log of five groups of one record
 * each (one block each). Blank the third, as a crash leaves it when the
 * fourth and fifth reached the disk first: the group ends of the fourth
 * and fifth must say that the file was durable only up to the third block
 * when they were issued, and replay then cuts a torn tail there. Where
 * they say it was durable further (it was synced before them), the blank
 * is damage.
 */
static void rewrite_group_end(const char *path, int block, uint64_t durable)
{
	FILE *f = fopen(path, "r+b");
	cr_assert(f);
	unsigned char b[4096];
	cr_assert_eq(fseek(f, (long)block * 4096, SEEK_SET), 0);
	cr_assert_eq(fread(b, 1, sizeof b, f), sizeof b);
	/* the block: one record of 20 + 4 bytes, then the group end */
	size_t e = 24;
	uint32_t n;
	memcpy(&n, b + e, 4);
	cr_assert_eq(b[e + 4], WAL_GROUP_END);
	cr_assert_eq(e + 20 + n, sizeof b);
	memcpy(b + e + 20, &durable, 8);
	uint32_t crc = crc32c(crc32c(0, b + e, 16), b + e + 20, n);
	memcpy(b + e + 16, &crc, 4);
	cr_assert_eq(fseek(f, (long)block * 4096, SEEK_SET), 0);
	cr_assert_eq(fwrite(b, 1, sizeof b, f), sizeof b);
	fclose(f);
}

static void check_group_ends(const char *path);

/* A direct log of five groups of one record each, synced one by one. */
static void direct_groups(char *dir, size_t len, char *path, size_t plen)
{
	wal *w = open_log(dir, len, COHORT_FSYNC_ALWAYS, 10000, URING);
	for (uint32_t i = 0; i < 5; i++) {
		uint64_t lsn;
		cr_assert_eq(wal_append(w, 1, &i, sizeof i, &lsn), 0);
		cr_assert_eq(wal_sync(w, lsn), 0);
	}
	if (strncmp(wal_write_mode(w), "direct", 6) != 0) {
		wal_close(w);
		rmrf(dir);
		cr_skip_test("the file system under %s refuses O_DIRECT", dir);
	}
	cr_assert_eq(wal_close(w), 0);
	cr_assert_eq(segment_size(dir, path, plen), 5 * 4096);
	check_group_ends(path);
}

static void five_groups(char *dir, size_t len, char *path, size_t plen)
{
	direct_groups(dir, len, path, plen);
	FILE *f = fopen(path, "r+b");
	cr_assert(f);
	static const unsigned char zero[4096];
	cr_assert_eq(fseek(f, 2 * 4096, SEEK_SET), 0);
	cr_assert_eq(fwrite(zero, 1, sizeof zero, f), sizeof zero);
	fclose(f);
}

/* Each group end says how far the file was durable at its issue. */
static void check_group_ends(const char *path)
{
	FILE *f = fopen(path, "rb");
	cr_assert(f);
	for (int b = 0; b < 5; b++) {
		uint64_t durable;
		cr_assert_eq(fseek(f, (long)b * 4096 + 24 + 20, SEEK_SET), 0);
		cr_assert_eq(fread(&durable, 8, 1, f), 1);
		cr_assert_eq(durable, (uint64_t)b * 4096, "group %d", b);
	}
	fclose(f);
}

Test(wal, later_groups_issued_before_a_blank_one_was_durable_are_a_torn_tail)
{
	char dir[64], path[512], report[512];
	five_groups(dir, sizeof dir, path, sizeof path);
	rewrite_group_end(path, 3, 2 * 4096);
	rewrite_group_end(path, 4, 2 * 4096);
	int rc;
	cr_assert_eq(replay_count(dir, report, sizeof report, &rc), 2);
	cr_assert_eq(rc, 0, "%s", cohort_errdetail());
	cr_assert(strstr(report, "torn tail") && strstr(report, "8192"),
		  "report: %s", report);
	cr_assert_eq(segment_size(dir, path, sizeof path), 2 * 4096);
	rmrf(dir);
}

Test(wal, a_blank_group_that_was_durable_before_a_later_one_is_damage)
{
	char dir[64], path[512], report[512];
	five_groups(dir, sizeof dir, path, sizeof path);
	/* the fourth was issued with two blocks durable, the fifth with
	 * four: the third was on disk */
	rewrite_group_end(path, 3, 2 * 4096);
	int rc;
	replay_count(dir, report, sizeof report, &rc);
	cr_assert_eq(rc, COHORT_ECORRUPT, "a lost durable group replayed "
		     "as a torn tail: %s", report);
	cr_assert(strstr(cohort_errdetail(), "8192"), "%s", cohort_errdetail());
	cr_assert_eq(segment_size(dir, path, sizeof path), 5 * 4096,
		     "a damaged log was cut");
	rmrf(dir);
}

/* Every byte of a direct log of five groups, flipped in turn (all of each
 * block's records and group-end header, every 7th byte of the padding):
 * in the last group it reads as a torn tail, anywhere else as damage. A
 * flip in the padding of a group end, with the records before it intact,
 * is damage too: the next group was issued with that block durable, and
 * cutting there would drop acknowledged groups. */
Test(wal, every_flipped_byte_of_a_direct_log_is_detected)
{
	char dir[64], path[512], report[512];
	direct_groups(dir, sizeof dir, path, sizeof path);
	FILE *f = fopen(path, "rb");
	cr_assert(f);
	static unsigned char orig[5 * 4096];
	cr_assert_eq(fread(orig, 1, sizeof orig, f), sizeof orig);
	fclose(f);
	int ntorn = 0, ncorrupt = 0;
	for (size_t off = 0; off < sizeof orig; off++) {
		if (off % 4096 >= 64 && off % 7)
			continue;
		f = fopen(path, "wb");
		cr_assert(f);
		cr_assert_eq(fwrite(orig, 1, sizeof orig, f), sizeof orig);
		fclose(f);
		f = fopen(path, "r+b");
		cr_assert_eq(fseek(f, (long)off, SEEK_SET), 0);
		fputc(orig[off] ^ (off % 2 ? 0x01 : 0x80), f);
		fclose(f);
		int rc;
		uint64_t n = replay_count(dir, report, sizeof report, &rc);
		if (off >= 4 * 4096) {
			cr_assert_eq(rc, 0, "byte %zu: %s", off, cohort_errdetail());
			/* the last record (24 bytes) or its group end */
			uint64_t want = off >= 4 * 4096 + 24 ? 5 : 4;
			cr_assert_eq(n, want, "byte %zu: %llu records", off,
				     (unsigned long long)n);
			cr_assert(strstr(report, "torn tail"), "byte %zu: %s",
				  off, report);
			ntorn++;
		} else {
			cr_assert_eq(rc, COHORT_ECORRUPT, "byte %zu read as: "
				     "%s (%llu records)", off, report,
				     (unsigned long long)n);
			ncorrupt++;
		}
	}
	cr_assert_gt(ntorn, 0);
	cr_assert_gt(ncorrupt, 0);
	rmrf(dir);
}

/* A direct log well past several 16 MiB steps of zeros, which the first
 * writer thread writes ahead while groups go on: every record replays, in
 * order, and close cuts the file back to its records. */
Test(wal, a_direct_log_across_many_zero_steps_replays_whole)
{
	char dir[64], path[512], report[512];
	wal *w = open_log(dir, sizeof dir, COHORT_FSYNC_ALWAYS, 10, URING);
	static uint32_t payload[1024];
	const int n = 12000;            /* about 48 MiB */
	uint64_t lsn = 0;
	for (int i = 0; i < n; i++) {
		payload[0] = 0;
		payload[1] = (uint32_t)i;
		cr_assert_eq(wal_append(w, 1, payload, sizeof payload, &lsn), 0);
		if (i % 16 == 15)
			cr_assert_eq(wal_sync(w, lsn), 0);
	}
	cr_assert_eq(wal_sync(w, lsn), 0);
	cr_assert_eq(wal_close(w), 0);
	off_t size = segment_size(dir, path, sizeof path);
	cr_assert_geq(size, (off_t)n * (20 + (off_t)sizeof payload));
	cr_assert_eq(records_end(path), size, "not cut back to its records");
	int rc;
	cr_assert_eq(replay_count(dir, report, sizeof report, &rc),
		     (uint64_t)n);
	cr_assert_eq(rc, 0, "%s", cohort_errdetail());
	cr_assert_str_empty(report);
	rmrf(dir);
}

/* Rotations right after the log passed half of its zeros, while the first
 * writer thread may be writing the next ones: each old segment is cut back
 * to its records, the new one gets no zeros meant for the old, and replay
 * reads every record of every segment. */
Test(wal, rotation_while_zeros_are_written_ahead)
{
	char dir[64], report[512];
	wal *w = open_log(dir, sizeof dir, COHORT_FSYNC_ALWAYS, 10, URING);
	static uint32_t payload[2048];
	const int per = 1200;           /* about 9.6 MiB a segment */
	uint64_t lsn = 0;
	for (int seg = 0; seg < 3; seg++) {
		for (int i = 0; i < per; i++) {
			payload[1] = (uint32_t)(seg * per + i);
			cr_assert_eq(wal_append(w, 1, payload, sizeof payload,
						&lsn), 0);
			if (i % 8 == 7)
				cr_assert_eq(wal_sync(w, lsn), 0);
		}
		uint64_t last;
		cr_assert_eq(wal_rotate(w, &last), 0);
		cr_assert_eq(last, lsn);
	}
	cr_assert_eq(wal_close(w), 0);
	DIR *d = opendir(dir);
	cr_assert(d);
	struct dirent *e;
	int nseg = 0;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "wal-", 4) != 0)
			continue;
		char path[512];
		struct stat st;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		cr_assert_eq(stat(path, &st), 0);
		cr_assert_eq(records_end(path), st.st_size,
			     "%s: %lld bytes, records end at %lld", e->d_name,
			     (long long)st.st_size, (long long)records_end(path));
		nseg++;
	}
	closedir(d);
	cr_assert_eq(nseg, 4);
	replay_state s;
	memset(&s, 0, sizeof s);
	uint64_t last;
	cr_assert_eq(wal_replay(dir, 0, false, count_cb, &s, &last, report,
				sizeof report), 0, "%s", cohort_errdetail());
	cr_assert_eq(s.n, (uint64_t)3 * per);
	cr_assert_str_empty(report);
	rmrf(dir);
}
