/*
 * bench_wal.c -- suite `wal`: events through the write-ahead log, under each
 * fsync policy, on the machine's own disk (issue 3, benchmarks).
 *
 * The table: `events`, three aggregate columns (n_txn counter, spend_decay
 * decay with a 7-day half-life, max_amount max), 100,000 customers with keys
 * "cust<n>". Each configuration gets a fresh directory under /tmp (mkdtemp),
 * removed afterwards:
 *   1. open it under `none`, create the table, put every customer with all
 *      three columns 0, close (so every timed event updates an existing row,
 *      whatever the policy and rate);
 *   2. reopen it under the policy being measured (replaying that log) and
 *      time cohort_event with 3 updates (counter += 1, decay += amount, max
 *      observes amount) on random customers, on N threads started together
 *      by bench_run, for one run of 1 s (0.1 s with --quick);
 *   3. check: the n_txn counters sum to the events acknowledged (returned 0),
 *      in memory, and again after close and a reopen that replays the log.
 * Only acknowledged events are counted; any other return fails the suite.
 *
 * Figures (events/s, with the database's io path, cohort_db_io_path):
 *   events_always          fsync always, 1, 2 and 64 writer threads
 *   events_always_pwrite   the same log on pwrite + fdatasync (no_uring),
 *                          1 and 64 writers
 *   events_interval        fsync every 10 ms (the default), 1 and 2 threads
 *   events_none            no fsync, 1 and 2 threads
 *   raw_dsync_4k           context for the log's direct writes: 4 KiB
 *                          O_DIRECT | O_DSYNC overwrites of a file written
 *                          with zeros, through io_uring, 1 and 4 in flight
 *                          (the log's groups in flight at most); writes/s
 *   raw_fdatasync_4k       context for `always`: a plain loop of 4 KiB
 *                          pwrite (appending) + fdatasync on a temp file in
 *                          the same /tmp, in the same run; latency in us
 *   events_always_tmpfs    context for the speedup: the same 64 writers
 *                          with the database on tmpfs (/dev/shm), where
 *                          the log's writes cost no device time: what the
 *                          CPUs allow the workload when only its
 *                          threads' sleeps and wake-ups remain
 *   group_commit_speedup   events/s with 64 writers / with 1 writer under
 *                          always, io_uring path (target >= 20); and
 *                          group_commit_speedup_pwrite for the pwrite path
 * Each events line also gives `syncs`, the log's fdatasyncs during the timed
 * run, and `events_per_sync`, the group size: counted by the I/O layer's
 * test hook (io_int.h: a fault armed that never fires only counts), which
 * costs an atomic per write and per sync of the writer thread; and
 * `csw_per_event`, the process's context switches (getrusage, voluntary and
 * not) per acknowledged event.
 *
 * Sixty-four writers on a two-core machine is the point: under `always`
 * they spend their time blocked until their record is durable, and group
 * commit should make one fdatasync acknowledge many of them. Their
 * cpu_share is therefore small by design and says nothing about other load;
 * the JSON lines carry the 1-minute load average (load1) for that.
 *
 * Snapshots: a table of 1M rows x 32 f32 columns (50K with --quick) is
 * snapshotted (write GB/s = file bytes / time of cohort_snapshot, fork and
 * fsync included) next to a plain sequential write of as many bytes with
 * one fdatasync; then the database is closed and reopened (restart time;
 * load GB/s = file bytes / open time) next to a plain sequential read of
 * the same file. Both reads start from a cold page cache when the process
 * may drop it (root); otherwise both are warm and the line says so.
 */
#include "bench_int.h"
#include "cohort.h"
#include "io_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <liburing.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define NCUST 100000u             /* customers */
#define SEED 0x77616c6c6f67ull    /* "wallog" */
#define T_LOAD 1700000000000ll    /* fixed event times: runs repeat exactly */
#define T_EVENT (T_LOAD + 1000)
#define HALF_LIFE_MS (7ll * 24 * 3600 * 1000)
#define BATCH_ASYNC 64            /* events per batch when nothing waits on
                                     the disk (interval, none) */
#define MAX_THREADS 64
#define FSYNC_BLOCK 4096          /* bytes per write of the raw loop */
#define MAX_SAMPLES 200000        /* raw loop latencies kept */

#define TARGET_GROUP 20.0         /* group_commit_speedup >= */

/* One configuration: a policy, an io path, a thread count. */
typedef struct wal_conf {
	const char *metric;
	cohort_fsync fsync;
	bool no_uring;
	int threads;
	const char *base;         /* where its directory goes; NULL: /tmp */
} wal_conf;

/* What a configuration measured. */
typedef struct wal_result {
	double rate;              /* acknowledged events/s */
	uint64_t events;          /* acknowledged events */
	double seconds;
	double cpu_share;
	double csw;               /* the process's context switches */
	long syncs;               /* fdatasyncs of the log during the run */
	char io_path[160];
} wal_result;

/* The open database of one configuration. */
typedef struct wal_db {
	char dir[64];
	cohort_db *db;
	cohort_table *t;
	int col_n, col_decay, col_max;
} wal_db;

/* One thread's state; 64-byte aligned, one allocation per thread. */
typedef struct wal_thread {
	const wal_db *w;
	bench_rng rng;
	int batch;                /* events per call of event_batch */
	int err;                  /* first failure: a COHORT_E* code */
	const char *err_what;
	char err_detail[256];
	char key[24];
} wal_thread;

static int fail_errno(const char *what, const char *path, int e)
{
	fprintf(stderr, "cohort-bench wal: %s %s: %s\n", what, path,
		strerror(e));
	return 1;
}

/* "cust<n>" into buf (no NUL); returns its length. */
static size_t cust_key(uint64_t n, char *buf)
{
	char tmp[20];
	size_t len = 0, k = 0;
	do {
		tmp[len++] = (char)('0' + n % 10);
		n /= 10;
	} while (n);
	memcpy(buf, "cust", 4);
	k = 4;
	for (size_t i = 0; i < len; i++)
		buf[k++] = tmp[len - 1 - i];
	return k;
}

/* ------------------------------------------------------------------------
 * Directories
 * ------------------------------------------------------------------------ */
static int make_dir_in(const char *base, char *dir, size_t len)
{
	snprintf(dir, len, "%s/cohort-bench-wal-XXXXXX", base);
	if (!mkdtemp(dir))
		return fail_errno("mkdtemp", dir, errno);
	return 0;
}

static int make_dir(char *dir, size_t len)
{
	return make_dir_in("/tmp", dir, len);
}

/* Remove dir and the files in it (the database writes no subdirectories). */
static int remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[64 + 256 + 2];
	int rc = 0;

	if (!d)
		return fail_errno("opendir", dir, errno);
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (unlink(path) != 0)
			rc = fail_errno("unlink", path, errno);
	}
	closedir(d);
	if (rmdir(dir) != 0)
		rc = fail_errno("rmdir", dir, errno);
	return rc;
}

/* ------------------------------------------------------------------------
 * The database of one configuration
 * ------------------------------------------------------------------------ */
static int db_open(wal_db *w, cohort_fsync fsync, bool no_uring)
{
	cohort_options o;
	cohort_options_init(&o);
	o.fsync = fsync;
	o.no_uring = no_uring;
	int rc = cohort_open(w->dir, &o, &w->db);
	if (rc < 0)
		return bench_fail("wal", "cohort_open", rc);
	return 0;
}

static int db_columns(wal_db *w)
{
	int rc = cohort_table_open(w->db, "events", &w->t);
	if (rc < 0)
		return bench_fail("wal", "cohort_table_open", rc);
	if ((w->col_n = cohort_table_column(w->t, "n_txn")) < 0)
		return bench_fail("wal", "cohort_table_column (n_txn)", w->col_n);
	if ((w->col_decay = cohort_table_column(w->t, "spend_decay")) < 0)
		return bench_fail("wal", "cohort_table_column (spend_decay)", w->col_decay);
	if ((w->col_max = cohort_table_column(w->t, "max_amount")) < 0)
		return bench_fail("wal", "cohort_table_column (max_amount)", w->col_max);
	return 0;
}

static int db_close(wal_db *w)
{
	int rc = cohort_close(w->db);
	w->db = NULL;
	w->t = NULL;
	if (rc < 0)
		return bench_fail("wal", "cohort_close", rc);
	return 0;
}

/* Create the table and put every customer, under `none`; then close. */
static int db_prefill(wal_db *w)
{
	cohort_column_def defs[3];
	cohort_field fields[3];
	char key[24];
	int rc;

	memset(defs, 0, sizeof defs);
	defs[0].name = "n_txn";
	defs[0].type = COHORT_COUNTER;
	defs[1].name = "spend_decay";
	defs[1].type = COHORT_DECAY;
	defs[1].half_life_ms = HALF_LIFE_MS;
	defs[2].name = "max_amount";
	defs[2].type = COHORT_MAX;
	if (db_open(w, COHORT_FSYNC_NONE, false))
		return 1;
	rc = cohort_table_create(w->db, "events", defs, 3, NULL, &w->t);
	if (rc < 0)
		return bench_fail("wal", "cohort_table_create", rc);
	if (db_columns(w))
		return 1;
	fields[0].column = w->col_n;
	fields[1].column = w->col_decay;
	fields[2].column = w->col_max;
	for (int c = 0; c < 3; c++)
		fields[c].value = cohort_f64(0.0);
	for (uint32_t i = 0; i < NCUST; i++) {
		size_t len = cust_key(i, key);
		rc = cohort_put(w->t, key, len, T_LOAD, fields, 3);
		if (rc < 0)
			return bench_fail("wal", "cohort_put (prefill)", rc);
	}
	return db_close(w);
}

/* The sum of n_txn over all customers, which must be the number of events
 * acknowledged since the prefill (each adds 1). */
static int db_check(const wal_db *w, uint64_t want, const char *when)
{
	enum { CHUNK = 1000 };
	static char keys[CHUNK][24];
	cohort_key req[CHUNK];
	cohort_batch *b;
	double sum = 0;

	int rc = cohort_batch_new(w->t, &w->col_n, 1, &b);
	if (rc < 0)
		return bench_fail("wal", "cohort_batch_new", rc);
	for (uint32_t base = 0; base < NCUST; base += CHUNK) {
		for (uint32_t j = 0; j < CHUNK; j++) {
			req[j].ptr = keys[j];
			req[j].len = cust_key(base + j, keys[j]);
		}
		rc = cohort_get_many(w->t, req, CHUNK, T_EVENT, b);
		if (rc < 0) {
			cohort_batch_free(b);
			return bench_fail("wal", "cohort_get_many (check)", rc);
		}
		const double *v = b->cols[0].values;
		for (uint32_t j = 0; j < CHUNK; j++) {
			if (b->status[j] != COHORT_ROW_PRESENT ||
			    !b->cols[0].valid[j]) {
				cohort_batch_free(b);
				fprintf(stderr, "cohort-bench wal: check %s: "
					"customer %u missing\n", when, base + j);
				return 1;
			}
			sum += v[j];
		}
	}
	cohort_batch_free(b);
	if (sum != (double)want) {
		fprintf(stderr, "cohort-bench wal: check %s: the counters sum "
			"to %.0f, but %llu events were acknowledged\n", when,
			sum, (unsigned long long)want);
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * The timed work
 * ------------------------------------------------------------------------ */
static uint64_t event_batch(void *p)
{
	wal_thread *st = p;
	const wal_db *w = st->w;
	cohort_update up[3];
	up[0].column = w->col_n;
	up[0].op = COHORT_OP_ADD;
	up[0].value = cohort_f64(1.0);
	up[1].column = w->col_decay;
	up[1].op = COHORT_OP_ADD;
	up[2].column = w->col_max;
	up[2].op = COHORT_OP_OBSERVE;
	if (st->err)
		return 0;
	for (int i = 0; i < st->batch; i++) {
		size_t len = cust_key(bench_rng_below(&st->rng, NCUST), st->key);
		double amount = (double)bench_rng_float(&st->rng) * 100.0;
		up[1].value = cohort_f64(amount);
		up[2].value = cohort_f64(amount);
		int rc = cohort_event(w->t, st->key, len, T_EVENT, up, 3);
		if (rc != 0) {
			if (!st->err) {
				st->err = rc;
				st->err_what = "cohort_event";
				snprintf(st->err_detail, sizeof st->err_detail,
					 "%s", cohort_errdetail());
			}
			return (uint64_t)i;   /* the acknowledged ones count */
		}
	}
	return (uint64_t)st->batch;
}

static int threads_failed(wal_thread **ts, int n)
{
	for (int i = 0; i < n; i++) {
		if (!ts[i]->err)
			continue;
		fprintf(stderr, "cohort-bench wal: thread %d: %s: %s (%d)%s%s\n",
			i, ts[i]->err_what, cohort_strerror(ts[i]->err),
			ts[i]->err, *ts[i]->err_detail ? ": " : "",
			ts[i]->err_detail);
		return 1;
	}
	return 0;
}

/* Whether path is a directory on tmpfs. */
static bool is_tmpfs(const char *path)
{
	struct statfs sf;
	return statfs(path, &sf) == 0 && sf.f_type == TMPFS_MAGIC;
}

/* One configuration, from a fresh directory to its removal. */
static int run_conf(const bench_ctx *ctx, const wal_conf *c, wal_thread **ts,
		    wal_result *out)
{
	wal_db w;
	bench_result r;
	int rc = 1;

	memset(&w, 0, sizeof w);
	memset(out, 0, sizeof *out);
	if (make_dir_in(c->base ? c->base : "/tmp", w.dir, sizeof w.dir))
		return 1;
	if (db_prefill(&w) || db_open(&w, c->fsync, c->no_uring) ||
	    db_columns(&w))
		goto out;
	snprintf(out->io_path, sizeof out->io_path, "%s, %s",
		 cohort_db_io_path(w.db), cohort_db_log_mode(w.db));

	/* reseed per configuration: a figure does not depend on the others */
	uint64_t h = 0xcbf29ce484222325ull;
	for (const char *s = c->metric; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	for (int i = 0; i < c->threads; i++) {
		memset(ts[i], 0, sizeof *ts[i]);
		ts[i]->w = &w;
		ts[i]->batch = c->fsync == COHORT_FSYNC_ALWAYS ? 1 : BATCH_ASYNC;
		bench_rng_seed(&ts[i]->rng,
			       SEED ^ (h + (uint64_t)c->threads * 1000 +
				       (uint64_t)i));
	}

	/* count the log's syncs: a fault armed that never fires */
	io_fault_arm(IO_SYNC, LONG_MAX, IO_FAULT_NONE);
	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	int brc = bench_run(c->threads, ctx->quick ? 0.1 : 1.0, event_batch,
			    (void *const *)ts, &r);
	getrusage(RUSAGE_SELF, &ru1);
	out->csw = (double)(ru1.ru_nvcsw - ru0.ru_nvcsw) +
		   (double)(ru1.ru_nivcsw - ru0.ru_nivcsw);
	out->syncs = io_fault_count(IO_SYNC);
	io_fault_reset();
	if (brc != 0 || threads_failed(ts, c->threads))
		goto out;
	out->rate = r.ops_per_s;
	out->events = r.ops;
	out->seconds = r.seconds;
	out->cpu_share = r.cpu_share;

	if (db_check(&w, out->events, "in memory") || db_close(&w))
		goto out;
	/* the log holds every acknowledged event: replay it */
	if (db_open(&w, COHORT_FSYNC_NONE, false) || db_columns(&w) ||
	    db_check(&w, out->events, "after reopening") || db_close(&w))
		goto out;
	rc = 0;
out:
	if (w.db) {
		int crc = cohort_close(w.db);
		if (crc < 0 && rc == 0)
			rc = bench_fail("wal", "cohort_close", crc);
	}
	if (remove_dir(w.dir))
		rc = 1;
	return rc;
}

static void report_conf(const bench_ctx *ctx, const wal_conf *c,
			const wal_result *res, double fsync_us)
{
	char stat[48];
	snprintf(stat, sizeof stat, "one run of %.2f s", res->seconds);
	bench_line l = bench_line_make(c->metric, res->rate, "events/s",
				       c->threads);
	bench_line_str(&l, "io_path", res->io_path);
	bench_line_str(&l, "stat", stat);
	bench_line_num(&l, "events", (double)res->events);
	bench_line_num(&l, "syncs", (double)res->syncs);
	if (res->syncs > 0)
		bench_line_num(&l, "events_per_sync",
			       (double)res->events / (double)res->syncs);
	if (c->fsync == COHORT_FSYNC_ALWAYS && res->rate > 0)
		bench_line_num(&l, "ack_latency_us",
			       1e6 * c->threads / res->rate);
	if (!isnan(fsync_us))
		bench_line_num(&l, "raw_fdatasync_us", fsync_us);
	if (c->base)
		bench_line_str(&l, "dir", c->base);
	bench_line_num(&l, "cpu_share", res->cpu_share);
	if (res->events)
		bench_line_num(&l, "csw_per_event",
			       res->csw / (double)res->events);
	bench_report(ctx, &l);
}

/* ------------------------------------------------------------------------
 * The disk: 4 KiB pwrite + fdatasync, appending, on a temp file
 * ------------------------------------------------------------------------ */
#define SPEEDUP_PAIRS 5

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static int raw_fdatasync(const bench_ctx *ctx, double *mean_us)
{
	char dir[64], path[96];
	double *lat = bench_alloc(sizeof *lat * MAX_SAMPLES);
	char *buf = bench_alloc(FSYNC_BLOCK);
	int n = 0, rc = 1, fd = -1;
	double secs = ctx->quick ? 0.1 : 1.0;

	memset(buf, 'w', FSYNC_BLOCK);
	if (make_dir(dir, sizeof dir)) {
		free(lat);
		free(buf);
		return 1;
	}
	snprintf(path, sizeof path, "%s/raw", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		fail_errno("open", path, errno);
		goto out;
	}
	double t0 = bench_now(), t = t0;
	off_t off = 0;
	while (t - t0 < secs && n < MAX_SAMPLES) {
		ssize_t w = pwrite(fd, buf, FSYNC_BLOCK, off);
		if (w != FSYNC_BLOCK) {
			fail_errno("pwrite", path, w < 0 ? errno : EIO);
			goto out;
		}
		if (fdatasync(fd) != 0) {
			fail_errno("fdatasync", path, errno);
			goto out;
		}
		off += FSYNC_BLOCK;
		double t1 = bench_now();
		lat[n++] = (t1 - t) * 1e6;
		t = t1;
	}
	double total = t - t0;
	qsort(lat, (size_t)n, sizeof *lat, cmp_double);
	*mean_us = total * 1e6 / n;

	bench_line l = bench_line_make("raw_fdatasync_4k", *mean_us, "us", 1);
	bench_line_str(&l, "what", "4 KiB pwrite (appending) + fdatasync");
	bench_line_num(&l, "p50_us", lat[n / 2]);
	bench_line_num(&l, "p99_us", lat[(size_t)n * 99 / 100]);
	bench_line_num(&l, "max_us", lat[n - 1]);
	bench_line_num(&l, "syncs_per_s", n / total);
	bench_line_num(&l, "syncs", n);
	bench_line_str(&l, "dir", "/tmp");
	bench_report(ctx, &l);
	rc = 0;
out:
	if (fd >= 0 && close(fd) != 0 && rc == 0)
		rc = fail_errno("close", path, errno);
	if (remove_dir(dir))
		rc = 1;
	free(lat);
	free(buf);
	return rc;
}

#define DSYNC_SPAN (16 << 20)   /* the zero-filled file the raw loop overwrites */

/* 4 KiB O_DIRECT | O_DSYNC overwrites through io_uring, depth in flight:
 * what the log's direct groups cost on this disk, in the same run. A file
 * system without O_DIRECT gets a note instead. */
static int raw_dsync(const bench_ctx *ctx, int depth)
{
	char dir[64], path[96];
	char *buf = NULL;
	int rc = 1, fd = -1;
	bool ring = false;
	struct io_uring r;
	double secs = ctx->quick ? 0.1 : 1.0;

	if (make_dir(dir, sizeof dir))
		return 1;
	snprintf(path, sizeof path, "%s/raw", dir);
	buf = aligned_alloc(4096, 1 << 20);
	if (!buf) {
		fail_errno("aligned_alloc", path, ENOMEM);
		goto out;
	}
	memset(buf, 0, 1 << 20);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT |
		  O_DSYNC, 0600);
	if (fd < 0 && errno == EINVAL) {
		bench_note(ctx, "wal: raw_dsync_4k skipped: /tmp refuses O_DIRECT");
		rc = 0;
		goto out;
	}
	if (fd < 0) {
		fail_errno("open", path, errno);
		goto out;
	}
	for (off_t o = 0; o < DSYNC_SPAN; o += 1 << 20)
		if (pwrite(fd, buf, 1 << 20, o) != 1 << 20) {
			fail_errno("pwrite", path, errno ? errno : EIO);
			goto out;
		}
	int e = io_uring_queue_init(8, &r, 0);
	if (e) {
		bench_note(ctx, "wal: raw_dsync_4k skipped: io_uring: %s",
			   strerror(-e));
		rc = 0;
		goto out;
	}
	ring = true;
	memset(buf, 'w', 1 << 20);
	double started[8];
	double t0 = bench_now(), lat_sum = 0;
	long done = 0, issued = 0;
	int inflight = 0;
	while (bench_now() - t0 < secs || inflight) {
		while (inflight < depth && bench_now() - t0 < secs) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&r);
			long slot = issued % 8;
			off_t off = (off_t)(issued * 4096 % DSYNC_SPAN);
			io_uring_prep_write(sqe, fd, buf + slot * 4096, 4096,
					    (uint64_t)off);
			sqe->user_data = (uint64_t)slot;
			started[slot] = bench_now();
			issued++;
			inflight++;
		}
		struct io_uring_cqe *cqe;
		e = io_uring_submit_and_wait(&r, 1);
		if (e < 0 && e != -EINTR) {
			fail_errno("io_uring_submit_and_wait", path, -e);
			goto out;
		}
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&r, head, cqe) {
			if (cqe->res != 4096) {
				fail_errno("write", path,
					   cqe->res < 0 ? -cqe->res : EIO);
				goto out;
			}
			lat_sum += bench_now() - started[cqe->user_data];
			seen++;
		}
		io_uring_cq_advance(&r, seen);
		inflight -= (int)seen;
		done += seen;
	}
	double total = bench_now() - t0;
	bench_line l = bench_line_make("raw_dsync_4k", done / total,
				       "writes/s", depth);
	bench_line_str(&l, "what", "4 KiB O_DIRECT | O_DSYNC overwrite of "
		       "written zeros, io_uring, threads = writes in flight");
	bench_line_num(&l, "mean_us", lat_sum * 1e6 / (double)done);
	bench_line_num(&l, "writes", (double)done);
	bench_line_str(&l, "dir", "/tmp");
	bench_report(ctx, &l);
	rc = 0;
out:
	if (ring)
		io_uring_queue_exit(&r);
	if (fd >= 0 && close(fd) != 0 && rc == 0)
		rc = fail_errno("close", path, errno);
	if (remove_dir(dir))
		rc = 1;
	free(buf);
	return rc;
}

/* ------------------------------------------------------------------------
 * Snapshots: write, load, restart, against the disk
 * ------------------------------------------------------------------------ */
#define SNAP_COLS 32

/* Drop the page cache so reads come from the disk; false if not allowed. */
static bool drop_caches(void)
{
	sync();
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0)
		return false;
	bool ok = write(fd, "3\n", 2) == 2;
	close(fd);
	return ok;
}

/* The snapshot file of dir (the only *.snap after a snapshot). */
static int snap_file(const char *dir, char *path, size_t len, off_t *size)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	path[0] = 0;
	if (!d)
		return fail_errno("opendir", dir, errno);
	while ((e = readdir(d)) != NULL)
		if (strstr(e->d_name, ".snap"))
			snprintf(path, len, "%s/%s", dir, e->d_name);
	closedir(d);
	struct stat st;
	if (!path[0] || stat(path, &st))
		return fail_errno("no snapshot file in", dir, ENOENT);
	*size = st.st_size;
	return 0;
}

/* Sequential write of size bytes in 1 MiB blocks and one fdatasync. */
static int disk_write(const char *dir, off_t size, double *gbs)
{
	char path[128];
	snprintf(path, sizeof path, "%s/disk-write.tmp", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return fail_errno("open", path, errno);
	char *buf = bench_alloc(1 << 20);
	memset(buf, 0x5a, 1 << 20);
	double t0 = bench_now();
	for (off_t off = 0; off < size; off += 1 << 20) {
		size_t n = size - off < (1 << 20) ? (size_t)(size - off) : 1 << 20;
		if (pwrite(fd, buf, n, off) != (ssize_t)n) {
			close(fd);
			free(buf);
			return fail_errno("pwrite", path, errno);
		}
	}
	fdatasync(fd);
	*gbs = (double)size / (bench_now() - t0) / 1e9;
	close(fd);
	unlink(path);
	free(buf);
	return 0;
}

/* Sequential read of a file in 1 MiB blocks. */
static int disk_read(const char *path, off_t size, double *gbs)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return fail_errno("open", path, errno);
	char *buf = bench_alloc(1 << 20);
	double t0 = bench_now();
	ssize_t n;
	uint64_t sum = 0;
	while ((n = read(fd, buf, 1 << 20)) > 0)
		sum += (unsigned char)buf[n - 1];
	*gbs = (double)size / (bench_now() - t0) / 1e9;
	bench_sink((double)sum);
	close(fd);
	free(buf);
	return 0;
}

int bench_open_probe(const char *dir)
{
	cohort_options o;
	cohort_options_init(&o);
	o.fsync = COHORT_FSYNC_NONE;
	cohort_db *db;
	double t0 = bench_now();
	int rc = cohort_open(dir, &o, &db);
	double dt = bench_now() - t0;
	if (rc < 0) {
		fprintf(stderr, "cohort-bench: open %s: %s\n", dir,
			cohort_errdetail());
		return 1;
	}
	cohort_table *t;
	cohort_table_info info;
	if (cohort_table_open(db, "wide", &t) < 0 ||
	    cohort_table_describe(t, &info) < 0)
		return 1;
	printf("%.6f %llu\n", dt, (unsigned long long)info.nrows);
	return cohort_close(db) < 0;
}

/* Run cohort-bench --open-probe DIR in a new process: its open time. */
static int open_probe(const char *dir, uint64_t nrows, double *seconds)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "/proc/%d/exe --open-probe %s", (int)getpid(),
		 dir);
	FILE *p = popen(cmd, "r");
	if (!p)
		return fail_errno("popen", cmd, errno);
	unsigned long long n = 0;
	int got = fscanf(p, "%lf %llu", seconds, &n);
	int st = pclose(p);
	if (got != 2 || st != 0 || n != nrows) {
		fprintf(stderr, "cohort-bench: restart probe failed (%d, %llu "
			"rows of %llu)\n", st, n, (unsigned long long)nrows);
		return 1;
	}
	return 0;
}

static int snapshot_figures(const bench_ctx *ctx)
{
	const uint32_t nrows = ctx->quick ? 50000 : 1000000;
	wal_db w = { 0 };
	int rc = 1;
	if (make_dir(w.dir, sizeof w.dir))
		return 1;
	if (db_open(&w, COHORT_FSYNC_NONE, false))
		goto out;
	cohort_column_def defs[SNAP_COLS];
	char names[SNAP_COLS][8];
	for (int i = 0; i < SNAP_COLS; i++) {
		snprintf(names[i], sizeof names[i], "c%d", i);
		defs[i] = (cohort_column_def){ names[i], COHORT_F32, 0, 0 };
	}
	cohort_table *t;
	int e = cohort_table_create(w.db, "wide", defs, SNAP_COLS, NULL, &t);
	if (e < 0) {
		bench_fail("wal", "cohort_table_create", e);
		goto out;
	}
	bench_rng rng;
	bench_rng_seed(&rng, 42);
	cohort_field f[SNAP_COLS];
	char key[24];
	for (uint32_t r = 0; r < nrows; r++) {
		for (int i = 0; i < SNAP_COLS; i++)
			f[i] = (cohort_field){ i, cohort_f32(bench_rng_float(&rng)) };
		size_t len = cust_key(r, key);
		if ((e = cohort_put(t, key, len, T_LOAD, f, SNAP_COLS)) < 0) {
			bench_fail("wal", "cohort_put", e);
			goto out;
		}
	}
	double t0 = bench_now();
	if ((e = cohort_snapshot(w.db)) < 0) {
		bench_fail("wal", "cohort_snapshot", e);
		goto out;
	}
	double snap_s = bench_now() - t0;
	if (db_close(&w))
		goto out;
	char path[512];
	off_t size = 0;
	if (snap_file(w.dir, path, sizeof path, &size))
		goto out;
	double wgbs, rgbs = 0, open_s = 0;
	if (disk_write(w.dir, size, &wgbs))
		goto out;
	/* The disk's speed drifts here: read and load alternate, each from a
	 * cold cache, and the figures are the pair with the median ratio. */
	enum { PAIRS = 3 };
	double pr[PAIRS], po[PAIRS], ratio_of[PAIRS];
	bool cold = true;
	for (int p = 0; p < PAIRS; p++) {
		cold = drop_caches() && cold;
		if (disk_read(path, size, &pr[p]))
			goto out;
		if (cold)
			drop_caches();
		/* a restart is a new process: time the open in one */
		if (open_probe(w.dir, nrows, &po[p]))
			goto out;
		ratio_of[p] = (double)size / po[p] / 1e9 / pr[p];
	}
	int med = 0;
	for (int p = 0; p < PAIRS; p++) {
		int below = 0;
		for (int q = 0; q < PAIRS; q++)
			below += ratio_of[q] < ratio_of[p];
		if (below == PAIRS / 2)
			med = p;
	}
	rgbs = pr[med];
	open_s = po[med];
	const char *cache = cold ? "cold page cache" : "warm page cache "
		"(cannot drop it: not root)";
	bench_line l = bench_line_make("snapshot_write", (double)size / snap_s / 1e9,
				       "GB/s", 1);
	bench_line_num(&l, "rows", nrows);
	bench_line_num(&l, "bytes", (double)size);
	bench_line_num(&l, "seconds", snap_s);
	bench_line_str(&l, "what", "cut + fork + write + fsync + rename");
	bench_report(ctx, &l);
	l = bench_line_make("disk_seq_write", wgbs, "GB/s", 1);
	bench_line_str(&l, "what", "1 MiB pwrites + one fdatasync, same size");
	bench_report(ctx, &l);
	l = bench_line_make("snapshot_load", (double)size / open_s / 1e9, "GB/s", 1);
	bench_line_str(&l, "cache", cache);
	bench_report(ctx, &l);
	l = bench_line_make("disk_seq_read", rgbs, "GB/s", 1);
	bench_line_str(&l, "cache", cache);
	bench_line_str(&l, "what", "1 MiB reads of the snapshot file");
	bench_report(ctx, &l);
	double ratio = (double)size / open_s / 1e9 / rgbs;
	l = bench_line_make("snapshot_load_vs_disk", ratio, "ratio", 1);
	bench_line_str(&l, "stat", "median of 3 cold read/load pairs");
	bench_line_str(&l, "target", ">= 0.7");
	bench_line_bool(&l, "meets_target", ratio >= 0.7);
	bench_report(ctx, &l);
	l = bench_line_make(ctx->quick ? "restart_50k_x32" : "restart_1m_x32",
			    open_s, "s", 1);
	bench_line_str(&l, "what", "cohort_open in a new process: snapshot "
		       "load + log replay");
	bench_line_str(&l, "cache", cache);
	bench_report(ctx, &l);
	rc = 0;
out:
	if (w.db)
		cohort_close(w.db);
	remove_dir(w.dir);
	return rc;
}

/* ------------------------------------------------------------------------
 * The suite
 * ------------------------------------------------------------------------ */
static void report_speedup(const bench_ctx *ctx, const char *metric,
			   const wal_result *one, const wal_result *many,
			   int nmany, double *ratios)
{
	qsort(ratios, SPEEDUP_PAIRS, sizeof(double), cmp_double);
	double s = ratios[SPEEDUP_PAIRS / 2];
	bench_line l = bench_line_make(metric, s, "ratio", nmany);
	bench_line_str(&l, "stat", "median of 64/1-writer pairs, always");
	bench_line_num(&l, "min", ratios[0]);
	bench_line_num(&l, "max", ratios[SPEEDUP_PAIRS - 1]);
	bench_line_str(&l, "io_path", many->io_path);
	bench_line_num(&l, "w1_events_s", one->rate);
	bench_line_num(&l, "w64_events_s", many->rate);
	bench_line_str(&l, "target", ">= 20");
	bench_line_bool(&l, "meets_target", s >= TARGET_GROUP);
	bench_report(ctx, &l);
}

int bench_wal(bench_ctx *ctx)
{
	static const wal_conf confs[] = {
		{ "events_none", COHORT_FSYNC_NONE, false, 1, NULL },
		{ "events_none", COHORT_FSYNC_NONE, false, 2, NULL },
		{ "events_interval", COHORT_FSYNC_INTERVAL, false, 1, NULL },
		{ "events_interval", COHORT_FSYNC_INTERVAL, false, 2, NULL },
		{ "events_always", COHORT_FSYNC_ALWAYS, false, 1, NULL },
		{ "events_always", COHORT_FSYNC_ALWAYS, false, 2, NULL },
		{ "events_always", COHORT_FSYNC_ALWAYS, false, 64, NULL },
		{ "events_always_pwrite", COHORT_FSYNC_ALWAYS, true, 1, NULL },
		{ "events_always_pwrite", COHORT_FSYNC_ALWAYS, true, 64, NULL },
		{ "events_always_tmpfs", COHORT_FSYNC_ALWAYS, false, 64,
		  "/dev/shm" },
	};
	enum { NCONF = sizeof confs / sizeof confs[0] };
	enum { ALWAYS_1 = 4, ALWAYS_64 = 6, PWRITE_1 = 7, PWRITE_64 = 8,
	       TMPFS_64 = 9 };
	wal_result res[NCONF];
	wal_thread *ts[MAX_THREADS];
	double fsync_us = NAN;
	char load[64] = "?";
	int rc = 1;

	FILE *f = fopen("/proc/loadavg", "r");
	if (f) {
		if (!fgets(load, sizeof load, f))
			snprintf(load, sizeof load, "?");
		load[strcspn(load, "\n")] = 0;
		fclose(f);
	}
	bench_note(ctx, "%u customers, events of 3 aggregate updates; a fresh "
		   "database under /tmp per figure; one timed run of %.2f s "
		   "each; interval = 10 ms; loadavg at start: %s",
		   NCUST, ctx->quick ? 0.1 : 1.0, load);

	for (int i = 0; i < MAX_THREADS; i++)
		ts[i] = bench_alloc(sizeof *ts[i]);

	for (int k = 0; k < NCONF; k++) {
		const wal_conf *c = &confs[k];
		double raw = NAN;
		/* the disk's own fdatasync latency, just before the 1 writer
		 * `always` run it is the context of */
		if (k == ALWAYS_1) {
			if (raw_fdatasync(ctx, &fsync_us) ||
			    raw_dsync(ctx, 1) || raw_dsync(ctx, 4))
				goto out;
			raw = fsync_us;
		}
		/* no tmpfs at /dev/shm: no line (said so) */
		if (k == TMPFS_64 && !is_tmpfs(c->base)) {
			bench_note(ctx, "%s: no tmpfs at %s, skipped", c->metric,
				   c->base);
			continue;
		}
		if (run_conf(ctx, c, ts, &res[k]))
			goto out;
		report_conf(ctx, c, &res[k], raw);
	}
	/* The disk's latency drifts on a shared machine: the speedup is the
	 * median over alternating 1-writer / 64-writer pairs, each pair run
	 * back to back, the first pair being the figures above. */
	for (int path = 0; path < 2; path++) {
		int i1 = path ? PWRITE_1 : ALWAYS_1;
		int i64 = path ? PWRITE_64 : ALWAYS_64;
		double ratios[SPEEDUP_PAIRS];
		ratios[0] = res[i64].rate / res[i1].rate;
		for (int p = 1; p < SPEEDUP_PAIRS; p++) {
			wal_result one, many;
			if (run_conf(ctx, &confs[i1], ts, &one) ||
			    run_conf(ctx, &confs[i64], ts, &many))
				goto out;
			ratios[p] = many.rate / one.rate;
		}
		report_speedup(ctx, path ? "group_commit_speedup_pwrite" :
			       "group_commit_speedup", &res[i1], &res[i64],
			       confs[i64].threads, ratios);
	}

	if (snapshot_figures(ctx))
		goto out;
	rc = 0;
out:
	for (int i = 0; i < MAX_THREADS; i++)
		free(ts[i]);
	return rc;
}
