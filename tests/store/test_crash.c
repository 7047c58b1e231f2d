/*
 * test_crash.c -- acknowledged writes survive a killed process and a failing
 * disk.
 *
 * crash: a child process opens the database under COHORT_FSYNC_ALWAYS and
 * writes events in a loop, each a pair of counters (a, b) updated together,
 * reporting every acknowledged write to the parent through a pipe. The
 * parent SIGKILLs it at a random moment, reopens the directory, and checks
 * that every acknowledged write is there and that no event is half applied
 * (a == b on every row). Many rounds, one directory: each round also
 * replays every earlier round's log.
 *
 * faults: the I/O layer under the log (io_int.h) makes the Nth write short,
 * or fail it with EIO or ENOSPC, or fails the Nth sync, on the io_uring path
 * and on the pwrite path. A short write is continued; a failure is reported
 * as COHORT_EIO with its cause, every later write is refused, nothing
 * refused is applied, and the directory reopens with everything that was
 * acknowledged.
 *
 * Every test works in its own mkdtemp directory under /tmp, removed at the
 * end.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cohort.h"
#include "tmpdir.h"
#include "io_int.h"

#define T0 1700000000000LL

/* ---- directories ---------------------------------------------------------- */

static void make_tmpdir(char *dir, size_t len)
{
	tmpdir_make(dir, len, "crash");
}

static void remove_test_dir(void)
{
	io_fault_reset();
	tmpdir_remove();
}

/* ---- opening ------------------------------------------------------------ */

static cohort_options opts_of(cohort_fsync pol, bool no_uring)
{
	cohort_options o;
	cohort_options_init(&o);
	o.fsync = pol;
	o.no_uring = no_uring;
	return o;
}

static cohort_db *open_ok(const char *dir, const cohort_options *o)
{
	cohort_db *db = NULL;
	int rc = cohort_open(dir, o, &db);
	cr_assert_eq(rc, 0, "open %s: %s (%s)", dir, cohort_strerror(rc),
		     cohort_errdetail());
	return db;
}

static void close_ok(cohort_db *db)
{
	int rc = cohort_close(db);
	cr_assert_eq(rc, 0, "close: %s (%s)", cohort_strerror(rc),
		     cohort_errdetail());
}

#define OK(call)                                                              \
	do {                                                                  \
		int rc_ = (call);                                             \
		cr_assert_eq(rc_, 0, "%s: %s (%s)", #call,                   \
			     cohort_strerror(rc_), cohort_errdetail());       \
	} while (0)

/* Every test table: v i64, and two counters an event updates together. */
enum { C_V, C_A, C_B, NC };
static const cohort_column_def pair_cols[NC] = {
	{ "v", COHORT_I64, 0, 0 },
	{ "a", COHORT_COUNTER, 0, 0 },
	{ "b", COHORT_COUNTER, 0, 0 },
};

static cohort_table *table_of(cohort_db *db, const char *name)
{
	cohort_table *t = NULL;
	OK(cohort_table_open(db, name, &t));
	return t;
}

/* The event every writer makes: v = i, a += add, b += add. */
static int pair_event(cohort_table *t, const char *key, int64_t i, int add)
{
	cohort_update u[] = {
		{ C_V, COHORT_OP_SET, cohort_i64(i) },
		{ C_A, COHORT_OP_ADD, cohort_i32(add) },
		{ C_B, COHORT_OP_ADD, cohort_i32(add) },
	};
	return cohort_event(t, key, strlen(key), T0 + i, u, NC);
}

/* Read key: its status, and v, a, b when present; a must equal b. */
static int read_pair(cohort_table *t, const char *key, int64_t *v, double *a)
{
	static const int cols[NC] = { C_V, C_A, C_B };
	cohort_value out[NC];
	int st = cohort_get(t, key, strlen(key), cols, NC, INT64_MAX - 1, out,
			    NULL, 0, NULL);
	cr_assert_geq(st, 0, "get %s: %s", key, cohort_errdetail());
	if (st != COHORT_ROW_PRESENT)
		return st;
	cr_assert_eq(out[C_A].type, COHORT_F64, "%s: a is null", key);
	cr_assert_eq(out[C_B].type, COHORT_F64, "%s: b is null", key);
	cr_assert_eq(out[C_A].v.f64, out[C_B].v.f64,
		     "%s: half an event applied: a = %g, b = %g", key,
		     out[C_A].v.f64, out[C_B].v.f64);
	*v = out[C_V].type == COHORT_I64 ? out[C_V].v.i64 : -1;
	*a = out[C_A].v.f64;
	return st;
}

/* ---- crash: a child killed at random moments ------------------------------ */

#define MAXTH 4
#define MAXROUNDS 24

typedef struct ack {
	int32_t thread, i;
} ack;

typedef struct child_arg {
	cohort_table *t;
	int fd, thread, round;
} child_arg;

/* The child never uses Criterion: it reports through its exit status. */
static void *child_writer(void *arg)
{
	child_arg *c = arg;
	for (int32_t i = 0;; i++) {
		char key[48];
		if (pair_event(c->t, "total", c->round, 1))
			_exit(20);
		snprintf(key, sizeof key, "r%d-t%d-%d", c->round, c->thread, i);
		if (pair_event(c->t, key, i, i + 1))
			_exit(21);
		/* acknowledged: tell the parent (8 bytes: an atomic pipe write) */
		ack a = { c->thread, i };
		if (write(c->fd, &a, sizeof a) != (ssize_t)sizeof a)
			_exit(22);
	}
	return NULL;
}

static void crash_child(const char *dir, int fd, int nthreads, int round,
			uint64_t snap_bytes)
{
	cohort_options o = opts_of(COHORT_FSYNC_ALWAYS, false);
	o.snapshot_log_bytes = snap_bytes;
	cohort_db *db;
	cohort_table *t;
	child_arg args[MAXTH];
	pthread_t th[MAXTH];

	if (cohort_open(dir, &o, &db))
		_exit(10);
	if (cohort_table_open(db, "c", &t))
		_exit(11);
	for (int i = 0; i < nthreads; i++) {
		args[i] = (child_arg){ t, fd, i, round };
		if (i + 1 < nthreads &&
		    pthread_create(&th[i], NULL, child_writer, &args[i]))
			_exit(12);
	}
	child_writer(&args[nthreads - 1]);
	_exit(13);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct acks {
	int32_t n[MAXTH];            /* acknowledged writes per thread */
	unsigned char part[sizeof(ack)];
	size_t npart;
} acks;

static void take_acks(acks *A, const unsigned char *buf, size_t len, int round)
{
	for (size_t k = 0; k < len; k++) {
		A->part[A->npart++] = buf[k];
		if (A->npart < sizeof(ack))
			continue;
		ack a;
		memcpy(&a, A->part, sizeof a);
		A->npart = 0;
		cr_assert(a.thread >= 0 && a.thread < MAXTH, "bad ack thread %d",
			  a.thread);
		cr_assert_eq(a.i, A->n[a.thread], "round %d thread %d: ack %d "
			     "out of order (expected %d)", round, a.thread, a.i,
			     A->n[a.thread]);
		A->n[a.thread]++;
	}
}

/* Run one round: fork the writer, kill it after delay_ms, collect acks. */
static void crash_round(const char *dir, int nthreads, int round, int delay_ms,
			uint64_t snap_bytes, acks *A)
{
	int fds[2];
	unsigned char buf[4096];

	memset(A, 0, sizeof *A);
	cr_assert_eq(pipe(fds), 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		close(fds[0]);
		crash_child(dir, fds[1], nthreads, round, snap_bytes);
	}
	close(fds[1]);
	int64_t deadline = now_ms() + delay_ms;
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			break;
		struct pollfd p = { fds[0], POLLIN, 0 };
		int n = poll(&p, 1, (int)left);
		if (n <= 0)
			continue;
		ssize_t r = read(fds[0], buf, sizeof buf);
		if (r <= 0)
			break;    /* the child died on its own: see below */
		take_acks(A, buf, (size_t)r, round);
	}
	kill(pid, SIGKILL);
	ssize_t r;
	while ((r = read(fds[0], buf, sizeof buf)) > 0)
		take_acks(A, buf, (size_t)r, round);
	close(fds[0]);
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		  "round %d: the writer did not run until killed: %s %d "
		  "(10 open, 11 table, 2x a write failed)", round,
		  WIFEXITED(status) ? "exit" : "signal",
		  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* After round `round`: everything acknowledged is there, nothing beyond the
 * one write in flight per thread, no half event. *total is the 'total'
 * counter after the previous round; it becomes this round's. */
static void crash_check(cohort_db *db, int nthreads, int round, const acks *A,
			double *total)
{
	cohort_table *t = table_of(db, "c");
	int64_t v;
	double a = 0;
	int32_t sum = 0;

	for (int th = 0; th < nthreads; th++) {
		char key[48];
		sum += A->n[th];
		for (int32_t i = 0; i <= A->n[th] + 1; i++) {
			snprintf(key, sizeof key, "r%d-t%d-%d", round, th, i);
			int st = read_pair(t, key, &v, &a);
			if (i < A->n[th])
				cr_assert_eq(st, COHORT_ROW_PRESENT, "round %d: "
					     "acknowledged %s lost (%d acked)",
					     round, key, A->n[th]);
			else if (i == A->n[th] + 1)
				cr_assert_eq(st, COHORT_ROW_MISSING, "round %d: %s "
					     "written after the kill", round, key);
			if (st == COHORT_ROW_PRESENT) {
				cr_assert_eq(v, i, "%s: v = %" PRId64, key, v);
				cr_assert_eq(a, i + 1, "%s: a = %g", key, a);
			}
		}
	}
	int st = read_pair(t, "total", &v, &a);
	if (st != COHORT_ROW_PRESENT)
		a = 0;
	cr_assert(a >= *total + sum && a <= *total + sum + nthreads,
		  "round %d: total %g, expected %g + %d acknowledged "
		  "(+ at most %d in flight)", round, a, *total, sum, nthreads);
	*total = a;
}

/* Files in dir named snap-*.snap. */
static int count_snapshots(const char *dir)
{
	DIR *d = opendir(dir);
	cr_assert_not_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		n += strncmp(e->d_name, "snap-", 5) == 0 && l > 5 &&
		     strcmp(e->d_name + l - 5, ".snap") == 0;
	}
	closedir(d);
	return n;
}

/* Open after a kill. A snapshot writer the killed process forked outlives
 * it and holds the directory's lock until it is done: wait for it (and
 * count the waits). */
static cohort_db *open_after_kill(const char *dir, const cohort_options *o,
				  int *nbusy)
{
	int64_t deadline = now_ms() + 5000;
	cohort_db *db = NULL;
	int rc;
	while ((rc = cohort_open(dir, o, &db)) == COHORT_EBUSY &&
	       now_ms() < deadline) {
		++*nbusy;
		usleep(2000);
	}
	cr_assert_eq(rc, 0, "open %s after a kill: %s (%s)", dir,
		     cohort_strerror(rc), cohort_errdetail());
	return db;
}

static void crash_test(int nthreads, int rounds, unsigned seed,
		       uint64_t snap_bytes, int max_delay_ms)
{
	int nbusy = 0;
	char dir[64];
	cohort_options o = opts_of(COHORT_FSYNC_NONE, false);
	acks all[MAXROUNDS];
	double total = 0;
	int32_t nacked = 0;

	cr_assert_leq(rounds, MAXROUNDS);
	make_tmpdir(dir, sizeof dir);
	cohort_db *db = open_ok(dir, &o);
	OK(cohort_table_create(db, "c", pair_cols, NC, NULL, NULL));
	close_ok(db);

	for (int r = 0; r < rounds; r++) {
		/* from before the child has opened to well into its writes */
		int delay = (int)(rand_r(&seed) % (unsigned)max_delay_ms);
		crash_round(dir, nthreads, r, delay, snap_bytes, &all[r]);
		db = open_after_kill(dir, &o, &nbusy);
		crash_check(db, nthreads, r, &all[r], &total);
		close_ok(db);
		for (int th = 0; th < nthreads; th++)
			nacked += all[r].n[th];
	}
	cr_log_info("crash: %d rounds, %d threads: %d acknowledged writes, "
		    "all found", rounds, nthreads, nacked);
	if (nbusy)
		cr_log_warn("crash: reopening after a kill found the directory "
			    "locked %d times (2 ms apart) by an orphaned "
			    "snapshot writer", nbusy);
	cr_assert_gt(nacked, 0, "no write was acknowledged in %d rounds", rounds);

	/* every round's acknowledged writes are still there at the end */
	db = open_ok(dir, &o);
	cohort_table *t = table_of(db, "c");
	for (int r = 0; r < rounds; r++)
		for (int th = 0; th < nthreads; th++)
			for (int32_t i = 0; i < all[r].n[th]; i++) {
				char key[48];
				int64_t v;
				double a;
				snprintf(key, sizeof key, "r%d-t%d-%d", r, th, i);
				cr_assert_eq(read_pair(t, key, &v, &a),
					     COHORT_ROW_PRESENT, "%s lost", key);
			}
	close_ok(db);
	if (snap_bytes)
		cr_assert_gt(count_snapshots(dir), 0, "no snapshot was written: "
			     "the kills never met one");
	rmrf(dir);
}

TestSuite(crash, .timeout = 120, .fini = remove_test_dir);

Test(crash, acknowledged_writes_survive_sigkill)
{
	crash_test(1, 20, 20240611u, 0, 100);
}

Test(crash, group_commit_writers_survive_sigkill)
{
	crash_test(4, 12, 777u, 0, 100);
}

Test(crash, acknowledged_writes_survive_sigkill_during_snapshots)
{
	/* automatic snapshots every 2 KB of log (checked every 50 ms): kills
	 * land before, during and after snapshot writes and log rotations */
	crash_test(2, 14, 4242u, 2048, 160);
}

/* ---- faults: the Nth write or sync fails -------------------------------- */

TestSuite(faults, .timeout = 60, .fini = remove_test_dir);

#define NBEFORE 4    /* events acknowledged before the fault is armed */
#define NTH 2        /* the fault hits the third operation after arming */
#define NTRY 10      /* events tried after arming */

static void key_name(char *key, size_t len, int i)
{
	snprintf(key, len, "k%d", i);
}

/* Under COHORT_FSYNC_ALWAYS with one writer every event is one write and one
 * sync, so the fault hits event NBEFORE + NTH exactly. */
static void fault_case(bool no_uring, io_op op, io_fault fault)
{
	char dir[64], key[16];
	cohort_options o = opts_of(COHORT_FSYNC_ALWAYS, no_uring);
	cohort_table *t;
	int failed_at = -1;

	make_tmpdir(dir, sizeof dir);
	cohort_db *db = open_ok(dir, &o);
	const char *path = cohort_db_io_path(db);
	if (no_uring)
		cr_assert(strncmp(path, "pwrite", 6) == 0, "path %s", path);
	else if (strcmp(path, "io_uring") != 0)
		cr_log_warn("faults: io_uring unavailable here, testing %s",
			    path);
	OK(cohort_table_create(db, "f", pair_cols, NC, NULL, &t));
	for (int i = 0; i < NBEFORE; i++) {
		key_name(key, sizeof key, i);
		OK(pair_event(t, key, i, 1));
	}

	io_fault_arm(op, NTH, fault);
	for (int i = NBEFORE; i < NBEFORE + NTRY; i++) {
		key_name(key, sizeof key, i);
		int rc = pair_event(t, key, i, 1);
		if (fault == IO_FAULT_SHORT) {
			cr_assert_eq(rc, 0, "event %d after a short write: %s (%s)",
				     i, cohort_strerror(rc), cohort_errdetail());
			continue;
		}
		if (failed_at < 0 && rc == 0)
			continue;
		if (failed_at < 0) {
			failed_at = i;
			cr_assert_eq(rc, COHORT_EIO, "event %d: %s (%s)", i,
				     cohort_strerror(rc), cohort_errdetail());
			const char *want = strerror(fault == IO_FAULT_ENOSPC ?
						    ENOSPC : EIO);
			cr_assert(strstr(cohort_errdetail(), want) != NULL,
				  "detail does not give the cause '%s': '%s'",
				  want, cohort_errdetail());
			cr_assert(strstr(cohort_errdetail(), "wal-") != NULL,
				  "detail does not name the log: '%s'",
				  cohort_errdetail());
			continue;
		}
		cr_assert_eq(rc, COHORT_EIO, "event %d after the log failed "
			     "at %d returned %d", i, failed_at, rc);
	}

	if (fault == IO_FAULT_SHORT) {
		/* the short write was continued: one write more than events */
		cr_assert_eq(io_fault_count(IO_WRITE), NTRY + 1,
			     "%ld writes for %d events and one short write",
			     io_fault_count(IO_WRITE), NTRY);
		io_fault_reset();
		close_ok(db);
	} else {
		cr_assert_eq(failed_at, NBEFORE + NTH,
			     "the fault armed for the %s %d from now failed "
			     "event %d", op == IO_WRITE ? "write" : "sync",
			     NTH + 1, failed_at);
		io_fault_reset();
		/* the log stays stopped: every kind of write is refused and
		 * changes nothing */
		cohort_field f = { C_V, cohort_i64(1) };
		cr_assert_eq(cohort_put(t, "late", 4, T0, &f, 1), COHORT_EIO);
		cr_assert_eq(cohort_delete(t, "k0", 2), COHORT_EIO);
		cr_assert_eq(cohort_table_create(db, "g", pair_cols, NC, NULL,
						 NULL), COHORT_EIO);
		static const cohort_column_def extra = { "x", COHORT_F64, 0, 0 };
		cr_assert_eq(cohort_table_add_column(t, &extra, NULL), COHORT_EIO);
		int64_t v;
		double a;
		cr_assert_eq(read_pair(t, "late", &v, &a), COHORT_ROW_MISSING,
			     "a refused put is visible");
		cr_assert_eq(read_pair(t, "k0", &v, &a), COHORT_ROW_PRESENT,
			     "a refused delete removed the row");
		cohort_table *g;
		cr_assert_eq(cohort_table_open(db, "g", &g), COHORT_ENOTABLE);
		cr_assert_eq(cohort_table_column(t, "x"), COHORT_ENOCOLUMN);
		cr_assert_eq(cohort_close(db), COHORT_EIO,
			     "close after a failed log reported success");
	}

	/* reopen: everything acknowledged, nothing written after the failure */
	db = open_ok(dir, &o);
	cr_assert_str_empty(cohort_db_recovery(db), "recovery: %s",
			    cohort_db_recovery(db));
	t = table_of(db, "f");
	int nacked = failed_at < 0 ? NBEFORE + NTRY : failed_at;
	for (int i = 0; i < NBEFORE + NTRY; i++) {
		int64_t v;
		double a;
		key_name(key, sizeof key, i);
		int st = read_pair(t, key, &v, &a);
		if (i < nacked)
			cr_assert_eq(st, COHORT_ROW_PRESENT, "acknowledged %s lost",
				     key);
		else if (i > nacked)
			cr_assert_eq(st, COHORT_ROW_MISSING, "refused %s came back",
				     key);
		if (st == COHORT_ROW_PRESENT) {
			cr_assert_eq(v, i);
			cr_assert_eq(a, 1);
		}
	}
	cohort_table *g;
	int64_t v;
	double a;
	cr_assert_eq(cohort_table_open(db, "g", &g), COHORT_ENOTABLE);
	cr_assert_eq(read_pair(t, "late", &v, &a), COHORT_ROW_MISSING);
	cr_assert_eq(cohort_table_column(t, "x"), COHORT_ENOCOLUMN);

	/* the reopened database writes again */
	OK(pair_event(t, "new", 99, 1));
	close_ok(db);
	db = open_ok(dir, &o);
	t = table_of(db, "f");
	cr_assert_eq(read_pair(t, "new", &v, &a), COHORT_ROW_PRESENT);
	close_ok(db);
	rmrf(dir);
}

Test(faults, short_write_is_continued_uring)
{
	fault_case(false, IO_WRITE, IO_FAULT_SHORT);
}

Test(faults, short_write_is_continued_pwrite)
{
	fault_case(true, IO_WRITE, IO_FAULT_SHORT);
}

Test(faults, write_eio_stops_the_log_uring)
{
	fault_case(false, IO_WRITE, IO_FAULT_EIO);
}

Test(faults, write_eio_stops_the_log_pwrite)
{
	fault_case(true, IO_WRITE, IO_FAULT_EIO);
}

Test(faults, write_enospc_stops_the_log_uring)
{
	fault_case(false, IO_WRITE, IO_FAULT_ENOSPC);
}

Test(faults, write_enospc_stops_the_log_pwrite)
{
	fault_case(true, IO_WRITE, IO_FAULT_ENOSPC);
}

Test(faults, sync_eio_stops_the_log_uring)
{
	fault_case(false, IO_SYNC, IO_FAULT_EIO);
}

Test(faults, sync_eio_stops_the_log_pwrite)
{
	fault_case(true, IO_SYNC, IO_FAULT_EIO);
}

/* Many writers share writes and syncs; a failed one acknowledges none of
 * the writes it carried and every writer is refused from then on. */
#define NWRITERS 4
#define PER_WRITER 300

typedef struct writer_arg {
	cohort_table *t;
	int id;
	int nacked;      /* events acknowledged before the first failure */
	int first_rc;    /* the first failure */
	int later_ok;    /* writes that succeeded after it */
} writer_arg;

static void *fault_writer(void *p)
{
	writer_arg *w = p;
	char key[32];
	for (int i = 0; i < PER_WRITER; i++) {
		snprintf(key, sizeof key, "w%d-%d", w->id, i);
		int rc = pair_event(w->t, key, i, 1);
		if (rc == 0) {
			w->nacked++;
			continue;
		}
		w->first_rc = rc;
		for (int j = 0; j < 3; j++) {
			snprintf(key, sizeof key, "w%d-after%d", w->id, j);
			w->later_ok += pair_event(w->t, key, j, 1) == 0;
		}
		break;
	}
	return NULL;
}

static void concurrent_fault(bool no_uring, io_op op)
{
	char dir[64];
	cohort_options o = opts_of(COHORT_FSYNC_ALWAYS, no_uring);
	cohort_table *t;
	pthread_t th[NWRITERS];
	writer_arg w[NWRITERS];

	make_tmpdir(dir, sizeof dir);
	cohort_db *db = open_ok(dir, &o);
	OK(cohort_table_create(db, "f", pair_cols, NC, NULL, &t));
	io_fault_arm(op, 15, IO_FAULT_EIO);
	for (int i = 0; i < NWRITERS; i++) {
		w[i] = (writer_arg){ t, i, 0, 0, 0 };
		cr_assert_eq(pthread_create(&th[i], NULL, fault_writer, &w[i]), 0);
	}
	for (int i = 0; i < NWRITERS; i++)
		pthread_join(th[i], NULL);
	io_fault_reset();
	for (int i = 0; i < NWRITERS; i++) {
		cr_assert_eq(w[i].first_rc, COHORT_EIO, "writer %d ended with %d "
			     "after %d acknowledged", i, w[i].first_rc,
			     w[i].nacked);
		cr_assert_eq(w[i].later_ok, 0, "writer %d: %d writes acknowledged "
			     "after the log failed", i, w[i].later_ok);
	}
	cr_assert_eq(cohort_close(db), COHORT_EIO);

	db = open_ok(dir, &o);
	t = table_of(db, "f");
	for (int i = 0; i < NWRITERS; i++) {
		for (int k = 0; k <= w[i].nacked + 1 && k < PER_WRITER; k++) {
			char key[32];
			int64_t v;
			double a;
			snprintf(key, sizeof key, "w%d-%d", i, k);
			int st = read_pair(t, key, &v, &a);
			if (k < w[i].nacked)
				cr_assert_eq(st, COHORT_ROW_PRESENT,
					     "acknowledged %s lost", key);
			else if (k == w[i].nacked + 1)
				cr_assert_eq(st, COHORT_ROW_MISSING,
					     "%s was never written", key);
		}
		char key[32];
		int64_t v;
		double a;
		snprintf(key, sizeof key, "w%d-after0", i);
		cr_assert_eq(read_pair(t, key, &v, &a), COHORT_ROW_MISSING,
			     "%s was refused but came back", key);
	}
	close_ok(db);
	rmrf(dir);
}

Test(faults, concurrent_writers_are_all_refused_after_a_write_fault_uring)
{
	concurrent_fault(false, IO_WRITE);
}

Test(faults, concurrent_writers_are_all_refused_after_a_sync_fault_pwrite)
{
	concurrent_fault(true, IO_SYNC);
}

Test(faults, failed_sync_under_interval_refuses_later_writes)
{
	char dir[64], key[16];
	cohort_options o = opts_of(COHORT_FSYNC_INTERVAL, false);
	cohort_table *t;
	int rc = 0, i;

	o.fsync_interval_ms = 2;
	make_tmpdir(dir, sizeof dir);
	cohort_db *db = open_ok(dir, &o);
	OK(cohort_table_create(db, "f", pair_cols, NC, NULL, &t));
	io_fault_arm(IO_SYNC, 0, IO_FAULT_EIO);
	int64_t deadline = now_ms() + 3000;
	for (i = 0; now_ms() < deadline; i++) {
		key_name(key, sizeof key, i);
		rc = pair_event(t, key, i, 1);
		if (rc)
			break;
		usleep(1000);
	}
	cr_assert_eq(rc, COHORT_EIO, "no write refused in 3 s after a failed "
		     "sync (%d writes): %d", i, rc);
	cr_assert(strstr(cohort_errdetail(), strerror(EIO)) != NULL, "'%s'",
		  cohort_errdetail());
	cr_assert_eq(pair_event(t, "again", 1, 1), COHORT_EIO);
	io_fault_reset();
	cr_assert_eq(cohort_close(db), COHORT_EIO);

	db = open_ok(dir, &o);
	t = table_of(db, "f");
	int64_t v;
	double a;
	cr_assert_eq(read_pair(t, "again", &v, &a), COHORT_ROW_MISSING);
	close_ok(db);
	rmrf(dir);
}

Test(faults, failed_final_write_is_reported_by_close)
{
	char dir[64];
	cohort_options o = opts_of(COHORT_FSYNC_NONE, true);
	cohort_table *t;

	/* a long interval: nothing is written before close */
	o.fsync_interval_ms = 600000;
	make_tmpdir(dir, sizeof dir);
	cohort_db *db = open_ok(dir, &o);
	OK(cohort_table_create(db, "f", pair_cols, NC, NULL, &t));
	OK(pair_event(t, "k", 1, 1));
	io_fault_arm(IO_WRITE, 0, IO_FAULT_EIO);
	int rc = cohort_close(db);
	cr_assert_eq(rc, COHORT_EIO, "close with a failing final write: %d", rc);
	cr_assert_geq(io_fault_count(IO_WRITE), 1);
	io_fault_reset();

	/* nothing was acknowledged as durable; the directory still opens */
	db = open_ok(dir, &o);
	close_ok(db);
	rmrf(dir);
}
