/*
 * wal.c -- the write-ahead log; the format and the rules are in wal_int.h.
 *
 * Concurrency: w->mu guards the buffers, the LSN counters, `busy` and
 * `taken`, and orders the setting of the error. The durable LSN and the
 * error are atomics, so that a writer checking on its record takes no lock.
 *
 * One flush at a time: whoever flushes (a waiter, the writer thread, an
 * appender out of room, wal_flush) sets `busy` under mu, swaps the buffers,
 * writes and syncs the full one without the lock, then publishes under mu.
 * `busy` makes it the only user of the file offset and of the ring, so any
 * thread may be the flusher; mu hands them from one flusher to the next.
 *
 * Leader and followers (under ALWAYS; PostgreSQL's XLogFlush, MySQL's
 * binlog group commit): a thread that must wait for its LSN and finds no
 * flush in flight flushes the active buffer itself, its own record and
 * every record appended before it. One that finds a flush in flight sleeps
 * until the group holding its record is durable. Groups are numbered
 * (`taken` is the number of the group in flight): a sleeper whose record is
 * in flight waits for group `taken`, one whose record is still buffered for
 * `taken` + 1. A flush that completes group g wakes the sleepers of g, which
 * return, and one sleeper of g + 1, which leads the next flush (FUTEX
 * bitsets on the completion counter), so no thread is woken only to sleep
 * again, and the common case hands nothing to another thread.
 *
 * The writer thread: under INTERVAL and NONE it writes every interval (or
 * at half a buffer) as before. Under ALWAYS it flushes only a group that no
 * one has taken for a whole interval (its appenders deferred their wait, or
 * never wait), and appenders signal it only while it sleeps with nothing to
 * watch, so a busy log costs it one wake-up per interval at most.
 *
 * Without waiting (wal_sync_start, for event loops): the caller records
 * the LSN it wants in `want` and the writer flushes it at once, and again
 * right after each flush while `want` is ahead of the durable LSN, so a
 * loop keeps serving while its groups follow one another. A start names
 * the loop's registered eventfd (wal_notify), and after the flush that
 * makes its LSN durable (or fails) the log writes to that descriptor: only
 * loops with something to release are woken. nmu guards the descriptors,
 * so that unregistering waits for a notification in progress and no
 * descriptor is written after its owner took it back.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "io_int.h"
#include "store_int.h"
#include "wal_int.h"

#define BUF_INITIAL (1u << 20)
#define PREALLOC (16 << 20)     /* segments grow by this much at a time */

typedef struct walbuf {
	char *p;
	size_t len, cap;
	uint32_t nrec;             /* records in it */
	uint64_t last_lsn;         /* LSN of the last record in it */
} walbuf;

struct wal {
	wal_config cfg;
	int fd;
	char path[4200];
	char io_path[160];
	bool uring;
	struct io_uring ring;      /* used by the flusher only */
	off_t off;                 /* end of the log; the flusher's */
	off_t alloc;               /* preallocated up to; the flusher's */
	bool no_prealloc;          /* fallocate refused: grow by writing */

	pthread_mutex_t mu;
	pthread_cond_t data, done;
	walbuf active, flushing;
	uint64_t next_lsn;         /* LSN of the next append */
	bool busy;                 /* a flush is in flight (flushing is its) */
	uint64_t taken;            /* groups taken for flushing so far */
	/* highest LSN on disk (synced, unless NONE): written by the flusher
	 * under mu, read by wal_sync without it */
	_Atomic uint64_t durable_lsn;
	/* flushes completed, bumped under mu; the futex word waiters sleep
	 * on, each with the bit of the group it waits for */
	_Atomic uint32_t flushes;
	/* sleepers per group parity, so that a flush with no one to wake
	 * makes no system call (a stale count costs one spare wake) */
	_Atomic uint32_t nwait[2];
	uint64_t bytes;            /* appended since open or rotation */
	char dir[4096];
	/* sticky: the -errno that stopped the log; written under mu, read
	 * without it on the write path */
	_Atomic int error;
	bool stop;
	bool writer_idle;          /* ALWAYS: the writer sleeps undated */
	/* wal_sync_start: the highest LSN asked for without waiting; under
	 * mu */
	uint64_t want;
	pthread_mutex_t nmu;       /* guards notify and nnotify */
	struct notify {
		int fd;
		uint64_t want;     /* LSN to write it at; 0: none */
	} *notify;
	size_t nnotify;
	_Atomic uint32_t nwant;    /* entries with a want */
	pthread_t thread;
};

/* ------------------------------------------------------------------------
 * Writing one buffer
 * ------------------------------------------------------------------------ */

/* One write through io_uring, submitted and waited for in one system
 * call; returns bytes written (may be short) or -errno. */
static ssize_t uring_write(wal *w, const char *p, size_t len, off_t off)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	io_uring_prep_write(sqe, w->fd, p, (unsigned)len, (uint64_t)off);
	int rc;
	do {
		rc = io_uring_submit_and_wait(&w->ring, 1);
	} while (rc == -EINTR || rc == -EAGAIN);
	if (rc < 0)
		return rc;
	struct io_uring_cqe *cqe;
	do {
		rc = io_uring_wait_cqe(&w->ring, &cqe);
	} while (rc == -EINTR || rc == -EAGAIN);
	if (rc < 0)
		return rc;
	ssize_t res = cqe->res;
	io_uring_cqe_seen(&w->ring, cqe);
	return io_fault_filter(IO_WRITE, res, len);
}

/*
 * Space for len more bytes at w->off, allocated ahead (PostgreSQL's
 * segment preallocation): an fdatasync after a write that grew the file
 * must also write the inode's new size, one that stays inside allocated
 * space does not (measured on this ext4: 137-175 us against
 * 85-120 us per write + fdatasync). The log's end is then the first
 * all-zero header, which replay reads as the segment's clean end (and
 * close and rotation cut the file back to its records). Where fallocate
 * is refused the file grows by writing, as before.
 */
static void prealloc(wal *w, size_t len)
{
	if (w->no_prealloc || w->off + (off_t)len <= w->alloc)
		return;
	off_t want = (w->off + (off_t)len + PREALLOC - 1) / PREALLOC * PREALLOC;
	if (fallocate(w->fd, 0, w->alloc, want - w->alloc) == 0)
		w->alloc = want;
	else
		w->no_prealloc = true;  /* a full disk fails the write itself */
}

/* Cut the file back to its records (the preallocated zeros past them
 * would read as a clean end anyway: no sync needed). */
static void cut_prealloc(wal *w)
{
	if (w->alloc > w->off && ftruncate(w->fd, w->off) == 0)
		w->alloc = w->off;
}

/* Write len bytes at w->off and sync them if asked: 0 or -errno. */
static int write_out(wal *w, const char *p, size_t len, bool sync)
{
	prealloc(w, len);
	if (!w->uring) {
		int rc = io_pwrite_all(w->fd, p, len, w->off);
		if (rc)
			return rc;
		w->off += (off_t)len;
		return sync ? io_fdatasync(w->fd) : 0;
	}
	/*
	 * The sync follows the write's completion, from this thread, which
	 * has nothing else to do meanwhile. (Linking an fsync SQE behind the
	 * write was measured slower: io_uring hands fsync to an io-wq worker,
	 * one more thread to wake per group on a small machine.)
	 */
	for (;;) {
		ssize_t n = uring_write(w, p, len, w->off);
		if (n == -EINTR || n == -EAGAIN)
			continue;
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO;
		w->off += n;
		p += n;
		len -= (size_t)n;
		if (len > 0)
			continue;   /* short: write the rest */
		return sync ? io_fdatasync(w->fd) : 0;
	}
}

/* ------------------------------------------------------------------------
 * Flushing a group
 * ------------------------------------------------------------------------ */
static uint32_t group_bit(uint64_t group)
{
	return 1u << (group & 31);
}

/* Sleep while *word == seen, until a wake-up for one of bits. */
static void futex_wait_bits(_Atomic uint32_t *word, uint32_t seen,
			    uint32_t bits)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET_PRIVATE, seen,
		NULL, NULL, bits);
}

static void futex_wake_bits(_Atomic uint32_t *word, int n, uint32_t bits)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_BITSET_PRIVATE, n,
		NULL, NULL, bits);
}

/* Tell the event loops whose LSN is now durable (all, if the log
 * failed). */
static void notify_loops(wal *w, uint64_t durable, bool stopped)
{
	uint64_t one = 1;
	pthread_mutex_lock(&w->nmu);
	for (size_t i = 0; i < w->nnotify; i++) {
		struct notify *e = &w->notify[i];
		if (!e->want || (e->want > durable && !stopped))
			continue;
		e->want = 0;
		atomic_fetch_sub(&w->nwant, 1);
		ssize_t n = write(e->fd, &one, sizeof one);
		(void)n;   /* EAGAIN: the counter is full, the loop is due anyway */
	}
	pthread_mutex_unlock(&w->nmu);
}

/*
 * Take the active buffer and write it (and sync it, if asked) as group
 * taken + 1, then publish and wake its sleepers. Called with mu held, no
 * flush in flight and something buffered; returns with mu released.
 */
static void flush_group(wal *w, bool sync)
{
	walbuf tmp = w->flushing;
	w->flushing = w->active;
	w->active = tmp;
	w->active.len = 0;
	w->active.nrec = 0;
	w->busy = true;
	uint64_t g = ++w->taken;
	int err = w->error;
	pthread_mutex_unlock(&w->mu);

	int rc = err ? 0 : write_out(w, w->flushing.p, w->flushing.len, sync);

	pthread_mutex_lock(&w->mu);
	if (rc && !w->error) {
		atomic_store(&w->error, rc);
		fprintf(stderr, "cohort: log %s: %s; the log is stopped "
			"and the database refuses writes\n", w->path,
			strerror(-rc));
	}
	if (!rc && !err)
		atomic_store(&w->durable_lsn, w->flushing.last_lsn);
	w->flushing.len = 0;
	w->flushing.nrec = 0;
	w->busy = false;
	atomic_fetch_add(&w->flushes, 1);
	bool stopped = w->error != 0;
	uint64_t durable = atomic_load(&w->durable_lsn);
	pthread_cond_broadcast(&w->done);
	pthread_mutex_unlock(&w->mu);

	/* Wake after unlocking, so that the woken do not queue on mu. */
	if (atomic_load(&w->nwant))
		notify_loops(w, durable, stopped);
	if (stopped) {
		futex_wake_bits(&w->flushes, INT_MAX, UINT32_MAX);
		return;
	}
	/* the next group's leader first: woken after the group just done it
	 * would queue behind all of them for a CPU, and the disk would idle
	 * meanwhile; the rest of its group sleeps on */
	if (atomic_load(&w->nwait[(g + 1) & 1]))
		futex_wake_bits(&w->flushes, 1, group_bit(g + 1));
	if (atomic_load(&w->nwait[g & 1]))
		futex_wake_bits(&w->flushes, INT_MAX, group_bit(g));
}

/* ------------------------------------------------------------------------
 * The writer thread
 * ------------------------------------------------------------------------ */
static void deadline_in(struct timespec *ts, uint32_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static void *writer(void *arg)
{
	wal *w = arg;
	bool always = w->cfg.fsync == COHORT_FSYNC_ALWAYS;
	bool sync = w->cfg.fsync != COHORT_FSYNC_NONE;
	struct timespec ts;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		if (w->busy) {
			pthread_cond_wait(&w->done, &w->mu);
			continue;
		}
		if (w->stop) {
			if (w->active.len == 0)
				break;
		} else if (always) {
			if (w->active.len == 0) {
				w->writer_idle = true;
				pthread_cond_wait(&w->data, &w->mu);
				w->writer_idle = false;
				continue;
			}
			/* buffered and asked for without waiting (no flush in
			 * flight, so it is in the active buffer): now. Else
			 * leave the group to its waiters for one interval. */
			if (w->want <= atomic_load(&w->durable_lsn)) {
				uint64_t taken = w->taken;
				deadline_in(&ts, w->cfg.interval_ms);
				while (!w->stop && w->taken == taken &&
				       w->want <= atomic_load(&w->durable_lsn) &&
				       pthread_cond_timedwait(&w->data, &w->mu,
							      &ts) == 0)
					;
				if (w->stop || w->busy || w->taken != taken ||
				    w->active.len == 0)
					continue;
			}
		} else {
			/* batch for one interval, or until the buffer is half
			 * full, then write whatever is there */
			deadline_in(&ts, w->cfg.interval_ms);
			while (!w->stop && w->active.len < w->active.cap / 2 &&
			       pthread_cond_timedwait(&w->data, &w->mu, &ts) == 0)
				;
			if (w->busy || w->active.len == 0)
				continue;
		}
		flush_group(w, sync);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* ------------------------------------------------------------------------
 * Open, append, sync, close
 * ------------------------------------------------------------------------ */
int wal_open(const char *dir, const wal_config *cfg, uint64_t next_lsn,
	     wal **out)
{
	*out = NULL;
	wal *w = ccalloc(1, sizeof(*w));
	if (!w)
		return seterr(COHORT_ENOMEM, "log: out of memory");
	w->cfg = *cfg;
	if (w->cfg.interval_ms == 0)
		w->cfg.interval_ms = 10;
	w->next_lsn = next_lsn;
	atomic_store(&w->durable_lsn, next_lsn - 1);
	snprintf(w->dir, sizeof(w->dir), "%s", dir);
	snprintf(w->path, sizeof(w->path), "%s/wal-%020" PRIu64 ".log", dir,
		 next_lsn);
	w->fd = open(w->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (w->fd < 0) {
		int e = errno;
		cfree(w);
		return seterr(COHORT_EIO, "log: cannot create %s: %s",
			      w->path, strerror(e));
	}
	/* the new file must survive a crash before any record relies on it */
	int rc = io_fsync_dir(dir);
	if (rc) {
		close(w->fd);
		cfree(w);
		return seterr(COHORT_EIO, "log: fsync of %s: %s", dir,
			      strerror(-rc));
	}
	if (cfg->no_uring) {
		snprintf(w->io_path, sizeof(w->io_path),
			 "pwrite (io_uring turned off)");
	} else {
		rc = io_uring_queue_init(8, &w->ring, 0);
		if (rc == 0) {
			w->uring = true;
			snprintf(w->io_path, sizeof(w->io_path), "io_uring");
		} else {
			snprintf(w->io_path, sizeof(w->io_path),
				 "pwrite (io_uring unavailable: %s)",
				 strerror(-rc));
		}
	}
	w->active.p = cmalloc(BUF_INITIAL);
	w->flushing.p = cmalloc(BUF_INITIAL);
	w->active.cap = w->flushing.cap = BUF_INITIAL;
	pthread_mutex_init(&w->mu, NULL);
	pthread_mutex_init(&w->nmu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->data, &ca);
	pthread_cond_init(&w->done, &ca);
	pthread_condattr_destroy(&ca);
	if (!w->active.p || !w->flushing.p ||
	    pthread_create(&w->thread, NULL, writer, w) != 0) {
		cfree(w->active.p);
		cfree(w->flushing.p);
		if (w->uring)
			io_uring_queue_exit(&w->ring);
		close(w->fd);
		cfree(w);
		return seterr(COHORT_ENOMEM, "log: cannot start the writer");
	}
	*out = w;
	return 0;
}

static int failed(const wal *w)
{
	return seterr(COHORT_EIO, "the log has stopped after an I/O error "
		      "(%s) on %s: writes are refused; reopen the database to "
		      "recover what was made durable", strerror(-w->error),
		      w->path);
}

/* failed(), called with mu held (the message names the segment, which a
 * rotation may change); releases it. */
static int failed_unlock(wal *w)
{
	int rc = failed(w);
	pthread_mutex_unlock(&w->mu);
	return rc;
}

int wal_append(wal *w, uint8_t type, const void *payload, uint32_t len,
	       uint64_t *lsn)
{
	if (len > WAL_MAX_RECORD)
		return seterr(COHORT_ELIMIT, "log record of %u bytes (max %u)",
			      len, WAL_MAX_RECORD);
	size_t need = WAL_HEADER + (size_t)len;
	bool always = w->cfg.fsync == COHORT_FSYNC_ALWAYS;
	pthread_mutex_lock(&w->mu);
	/* out of room: flush the buffer, or wait for the flush in flight */
	while (!w->error && w->active.len > 0 &&
	       w->active.len + need > w->active.cap) {
		if (w->busy) {
			pthread_cond_wait(&w->done, &w->mu);
		} else {
			flush_group(w, w->cfg.fsync != COHORT_FSYNC_NONE);
			pthread_mutex_lock(&w->mu);
		}
	}
	if (w->error) {
		pthread_mutex_unlock(&w->mu);
		return failed(w);
	}
	if (need > w->active.cap) {
		char *p = crealloc(w->active.p, need);
		if (!p) {
			pthread_mutex_unlock(&w->mu);
			return seterr(COHORT_ENOMEM, "log: out of memory");
		}
		w->active.p = p;
		w->active.cap = need;
	}
	uint64_t l = w->next_lsn++;
	unsigned char *h = (unsigned char *)w->active.p + w->active.len;
	memcpy(h, &len, 4);
	h[4] = type;
	h[5] = h[6] = h[7] = 0;
	memcpy(h + 8, &l, 8);
	uint32_t crc = crc32c(crc32c(0, h, 16), payload, len);
	memcpy(h + 16, &crc, 4);
	if (len)
		memcpy(h + WAL_HEADER, payload, len);
	w->active.len += need;
	w->active.nrec++;
	w->active.last_lsn = l;
	w->bytes += need;
	/* ALWAYS: the waiters flush; the writer only watches for a group no
	 * one takes, and needs a signal only when it sleeps with nothing to
	 * watch. Otherwise: half a buffer is worth writing now. */
	if (always ? w->active.nrec == 1 && w->writer_idle :
	    w->active.len >= w->active.cap / 2)
		pthread_cond_signal(&w->data);
	pthread_mutex_unlock(&w->mu);
	*lsn = l;
	return 0;
}

int wal_sync(wal *w, uint64_t lsn)
{
	if (w->cfg.fsync != COHORT_FSYNC_ALWAYS) {
		if (!atomic_load(&w->error))
			return 0;
		pthread_mutex_lock(&w->mu);
		return failed_unlock(w);
	}
	for (;;) {
		if (atomic_load(&w->durable_lsn) >= lsn)
			return 0;
		pthread_mutex_lock(&w->mu);
		if (atomic_load(&w->durable_lsn) >= lsn) {
			pthread_mutex_unlock(&w->mu);
			return 0;
		}
		if (w->error)
			return failed_unlock(w);
		if (lsn >= w->next_lsn) {
			pthread_mutex_unlock(&w->mu);
			return seterr(COHORT_EINVAL, "log: sync of LSN %" PRIu64
				      ", which was never appended", lsn);
		}
		if (!w->busy) {
			/* not durable, not in flight: buffered. Lead. */
			flush_group(w, true);
			continue;
		}
		uint64_t g = lsn <= w->flushing.last_lsn ? w->taken :
			w->taken + 1;
		uint32_t seen = atomic_load(&w->flushes);
		atomic_fetch_add(&w->nwait[g & 1], 1);
		pthread_mutex_unlock(&w->mu);
		futex_wait_bits(&w->flushes, seen, group_bit(g));
		atomic_fetch_sub(&w->nwait[g & 1], 1);
	}
}

/* Have efd written once lsn is durable. */
static void want_notify(wal *w, int efd, uint64_t lsn)
{
	pthread_mutex_lock(&w->nmu);
	for (size_t i = 0; i < w->nnotify; i++) {
		struct notify *e = &w->notify[i];
		if (e->fd != efd)
			continue;
		if (!e->want)
			atomic_fetch_add(&w->nwant, 1);
		if (lsn > e->want)
			e->want = lsn;
		break;
	}
	pthread_mutex_unlock(&w->nmu);
}

int wal_sync_start(wal *w, uint64_t lsn, int efd)
{
	if (!atomic_load(&w->error) && (w->cfg.fsync != COHORT_FSYNC_ALWAYS ||
					atomic_load(&w->durable_lsn) >= lsn))
		return 1;
	pthread_mutex_lock(&w->mu);
	if (w->error)
		return failed_unlock(w);
	if (lsn >= w->next_lsn) {
		pthread_mutex_unlock(&w->mu);
		return seterr(COHORT_EINVAL, "log: sync of LSN %" PRIu64
			      ", which was never appended", lsn);
	}
	if (atomic_load(&w->durable_lsn) >= lsn) {
		pthread_mutex_unlock(&w->mu);
		return 1;
	}
	if (lsn > w->want)
		w->want = lsn;
	/* before the writer can finish the flush: it notifies after */
	if (efd >= 0)
		want_notify(w, efd, lsn);
	/* in flight: the writer, woken by its end, takes the rest */
	if (!w->busy)
		pthread_cond_signal(&w->data);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

int wal_sync_check(wal *w, uint64_t lsn)
{
	if (atomic_load(&w->durable_lsn) >= lsn)
		return 1;
	if (!atomic_load(&w->error))
		return 0;
	pthread_mutex_lock(&w->mu);
	return failed_unlock(w);
}

int wal_notify(wal *w, int efd, bool on)
{
	int rc = 0;
	pthread_mutex_lock(&w->nmu);
	size_t i = 0;
	while (i < w->nnotify && w->notify[i].fd != efd)
		i++;
	if (!on) {
		if (i < w->nnotify) {
			if (w->notify[i].want)
				atomic_fetch_sub(&w->nwant, 1);
			w->notify[i] = w->notify[--w->nnotify];
		}
	} else if (i == w->nnotify) {
		struct notify *n = crealloc(w->notify,
					    (w->nnotify + 1) * sizeof(*n));
		if (n) {
			w->notify = n;
			n[w->nnotify++] = (struct notify){ .fd = efd };
		} else {
			rc = seterr(COHORT_ENOMEM, "log: out of memory");
		}
	}
	pthread_mutex_unlock(&w->nmu);
	return rc;
}

int wal_flush(wal *w)
{
	pthread_mutex_lock(&w->mu);
	uint64_t target = w->next_lsn - 1;
	while (!w->error && atomic_load(&w->durable_lsn) < target) {
		if (w->busy) {
			pthread_cond_wait(&w->done, &w->mu);
		} else if (w->active.len) {
			flush_group(w, w->cfg.fsync != COHORT_FSYNC_NONE);
			pthread_mutex_lock(&w->mu);
		} else {
			break;  /* not reached: not durable is buffered or in flight */
		}
	}
	int rc = w->error ? failed(w) : 0;
	pthread_mutex_unlock(&w->mu);
	/* under NONE the flush did not sync: do it here */
	if (rc == 0 && w->cfg.fsync == COHORT_FSYNC_NONE) {
		int s = io_fdatasync(w->fd);
		if (s)
			rc = seterr(COHORT_EIO, "log: fdatasync of %s: %s",
				    w->path, strerror(-s));
	}
	return rc;
}

int wal_rotate(wal *w, uint64_t *last)
{
	int rc = wal_flush(w);
	if (rc)
		return rc;
	pthread_mutex_lock(&w->mu);
	/* no one appends (the caller holds the cut); a flush that found
	 * nothing new may still be publishing */
	while (w->busy)
		pthread_cond_wait(&w->done, &w->mu);
	uint64_t l = w->next_lsn - 1;
	char path[sizeof(w->path) + 64];
	snprintf(path, sizeof(path), "%s/wal-%020" PRIu64 ".log", w->dir, l + 1);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		pthread_mutex_unlock(&w->mu);
		return seterr(COHORT_EIO, "log: cannot create %s: %s", path,
			      strerror(e));
	}
	int d = io_fsync_dir(w->dir);
	if (d) {
		close(fd);
		unlink(path);
		pthread_mutex_unlock(&w->mu);
		return seterr(COHORT_EIO, "log: fsync of %s: %s", w->dir,
			      strerror(-d));
	}
	cut_prealloc(w);
	close(w->fd);
	w->fd = fd;
	w->off = 0;
	w->alloc = 0;
	w->no_prealloc = false;
	w->bytes = 0;
	memcpy(w->path, path, sizeof(w->path) - 1);
	w->path[sizeof(w->path) - 1] = 0;
	pthread_mutex_unlock(&w->mu);
	*last = l;
	return 0;
}

uint64_t wal_bytes_since_rotate(wal *w)
{
	pthread_mutex_lock(&w->mu);
	uint64_t b = w->bytes;
	pthread_mutex_unlock(&w->mu);
	return b;
}

int wal_close(wal *w)
{
	if (!w)
		return 0;
	int rc = wal_flush(w);
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->data);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	if (w->uring)
		io_uring_queue_exit(&w->ring);
	cut_prealloc(w);
	if (close(w->fd) && rc == 0)
		rc = seterr(COHORT_EIO, "log: close of %s: %s", w->path,
			    strerror(errno));
	pthread_mutex_destroy(&w->mu);
	pthread_mutex_destroy(&w->nmu);
	cfree(w->notify);
	pthread_cond_destroy(&w->data);
	pthread_cond_destroy(&w->done);
	cfree(w->active.p);
	cfree(w->flushing.p);
	cfree(w);
	return rc;
}

const char *wal_io_path(const wal *w)
{
	return w->io_path;
}

uint64_t wal_durable_lsn(wal *w)
{
	return atomic_load(&w->durable_lsn);
}

int wal_error(wal *w)
{
	return atomic_load(&w->error);
}

/* ------------------------------------------------------------------------
 * Replay
 * ------------------------------------------------------------------------ */
typedef struct segment {
	uint64_t first;
	char name[64];
} segment;

static int seg_cmp(const void *a, const void *b)
{
	const segment *x = a, *y = b;
	return x->first < y->first ? -1 : x->first > y->first;
}

/* The segments of dir, sorted by first LSN. */
static int list_segments(const char *dir, segment **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return seterr(COHORT_EIO, "log: cannot read %s: %s", dir,
			      strerror(errno));
	size_t cap = 0;
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d)) != NULL) {
		uint64_t first;
		char tail[8];
		if (strlen(e->d_name) != 28 ||
		    sscanf(e->d_name, "wal-%20" SCNu64 "%4s", &first, tail) != 2 ||
		    strcmp(tail, ".log") != 0)
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			segment *s = crealloc(*out, cap * sizeof(segment));
			if (!s) {
				rc = seterr(COHORT_ENOMEM, "log: out of memory");
				break;
			}
			*out = s;
		}
		(*out)[*n].first = first;
		snprintf((*out)[*n].name, sizeof((*out)[*n].name), "%s",
			 e->d_name);
		(*n)++;
	}
	closedir(d);
	if (rc == 0 && *n)
		qsort(*out, *n, sizeof(segment), seg_cmp);
	return rc;
}

/* Every record of segment i has LSN <= lsn: the next segment starts at or
 * before lsn + 1. */
static bool covered(const segment *segs, size_t n, size_t i, uint64_t lsn)
{
	return i + 1 < n && segs[i + 1].first <= lsn + 1;
}

int wal_prune(const char *dir, uint64_t lsn)
{
	segment *segs;
	size_t n;
	int rc = list_segments(dir, &segs, &n);
	if (rc)
		return rc;
	for (size_t i = 0; covered(segs, n, i, lsn); i++) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/%s", dir, segs[i].name);
		unlink(path);
	}
	cfree(segs);
	io_fsync_dir(dir);
	return 0;
}

static int read_file(const char *path, unsigned char **buf, size_t *len)
{
	*buf = NULL;
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st)) {
		int e = errno;
		close(fd);
		return -e;
	}
	size_t n = (size_t)st.st_size;
	unsigned char *p = cmalloc(n ? n : 1);
	if (!p) {
		close(fd);
		return -ENOMEM;
	}
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(fd, p + got, n - got, (off_t)got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = r < 0 ? errno : EIO;
			cfree(p);
			close(fd);
			return -e;
		}
		got += (size_t)r;
	}
	close(fd);
	*buf = p;
	*len = n;
	return 0;
}

/* Is there a valid record at off? (header CRC, length, LSN, payload CRC) */
static bool record_ok(const unsigned char *p, size_t len, size_t off,
		      uint32_t *plen, uint64_t *lsn)
{
	if (len - off < WAL_HEADER)
		return false;
	const unsigned char *h = p + off;
	uint32_t n, crc;
	memcpy(&n, h, 4);
	memcpy(lsn, h + 8, 8);
	memcpy(&crc, h + 16, 4);
	if (n > WAL_MAX_RECORD || n > len - off - WAL_HEADER || h[5] || h[6] ||
	    h[7] || *lsn == 0)
		return false;
	if (crc32c(crc32c(0, h, 16), h + WAL_HEADER, n) != crc)
		return false;
	*plen = n;
	return true;
}

static bool all_zero(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* Does any valid record start after off? Then the damage at off is not a
 * torn tail. */
static bool valid_record_after(const unsigned char *p, size_t len, size_t off,
			       uint64_t prev_lsn)
{
	for (size_t o = off + 1; o + WAL_HEADER <= len; o++) {
		uint32_t n;
		uint64_t lsn;
		if (record_ok(p, len, o, &n, &lsn) && lsn > prev_lsn)
			return true;
	}
	return false;
}

/* After a salvage: move path and the later segments to *.damaged and
 * write path anew with its first good_len bytes. */
static void set_aside(const char *dir, const char *path,
		      const unsigned char *p, size_t good_len,
		      const segment *later, size_t nlater)
{
	char aside[4300];
	snprintf(aside, sizeof(aside), "%s.damaged", path);
	if (rename(path, aside) == 0) {
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			      0600);
		if (fd >= 0) {
			if (io_pwrite_all(fd, p, good_len, 0) == 0)
				io_fdatasync(fd);
			close(fd);
		}
	}
	for (size_t i = 0; i < nlater; i++) {
		char from[4200];
		snprintf(from, sizeof(from), "%s/%s", dir, later[i].name);
		snprintf(aside, sizeof(aside), "%s.damaged", from);
		rename(from, aside);
	}
	io_fsync_dir(dir);
}

int wal_replay(const char *dir, uint64_t after, bool salvage,
	       wal_record_cb cb, void *ctx, uint64_t *last_lsn,
	       char *report, size_t report_len)
{
	if (report && report_len)
		report[0] = 0;
	*last_lsn = after;
	segment *segs;
	size_t nseg;
	int rc = list_segments(dir, &segs, &nseg);
	if (rc)
		return rc;
	uint64_t prev = 0;          /* LSN of the last record seen */
	bool stopped = false;
	for (size_t s = 0; s < nseg && rc == 0 && !stopped; s++) {
		/* Segments the snapshot covers are not read (a prune that a
		 * crash interrupted may have left one, or a hole before it). */
		if (covered(segs, nseg, s, after))
			continue;
		char path[4200];
		snprintf(path, sizeof(path), "%s/%s", dir, segs[s].name);
		unsigned char *p;
		size_t len;
		int e = read_file(path, &p, &len);
		if (e) {
			rc = seterr(COHORT_EIO, "log: cannot read %s: %s", path,
				    strerror(-e));
			break;
		}
		size_t off = 0;
		while (off < len && rc == 0) {
			uint32_t n;
			uint64_t lsn;
			/* preallocated and never written: the clean end */
			if (p[off] == 0 && all_zero(p + off, len - off))
				break;
			bool ok = record_ok(p, len, off, &n, &lsn);
			/* past the snapshot, a gap or a repeat is damage; the
			 * first record past it must be after + 1 */
			if (ok && lsn > after &&
			    lsn != (prev > after ? prev + 1 : after + 1))
				ok = false;
			if (ok && lsn <= after && prev > after)
				ok = false;
			if (!ok) {
				bool last = s + 1 == nseg;
				bool torn = last &&
					!valid_record_after(p, len, off, prev);
				if (torn) {
					/* cut, and make the cut durable: torn
					 * bytes must not come back after a
					 * power loss */
					int tfd = open(path, O_WRONLY | O_CLOEXEC);
					int te = tfd < 0 ? -errno :
						ftruncate(tfd, (off_t)off) ? -errno :
						io_fdatasync(tfd);
					if (tfd >= 0)
						close(tfd);
					if (te) {
						rc = seterr(COHORT_EIO, "log %s: "
							    "cannot cut the torn "
							    "tail at offset %zu: "
							    "%s", path, off,
							    strerror(-te));
						break;
					}
					if (report)
						snprintf(report, report_len,
							 "log %s: torn tail of "
							 "%zu bytes at offset %zu "
							 "cut (an append the "
							 "crash interrupted)",
							 path, len - off, off);
					break;
				}
				if (salvage) {
					/* keep the damaged files aside and leave
					 * a log that replays cleanly: the good
					 * prefix of this segment, nothing after */
					set_aside(dir, path, p, off, segs + s + 1,
						  nseg - s - 1);
					if (report)
						snprintf(report, report_len,
							 "LOST: log %s is damaged "
							 "at offset %zu; replay "
							 "stopped after LSN %" PRIu64
							 ": %zu bytes of this "
							 "file and %zu later "
							 "segment(s) were not "
							 "applied (kept as "
							 "*.damaged)", path, off,
							 prev, len - off,
							 nseg - s - 1);
					stopped = true;
					break;
				}
				rc = seterr(COHORT_ECORRUPT, "log %s: bad record "
					    "at offset %zu (after LSN %" PRIu64
					    "); open with salvage to recover "
					    "what precedes it", path, off, prev);
				break;
			}
			if (lsn > after) {
				int cr = cb(ctx, p[off + 4], lsn,
					    p + off + WAL_HEADER, n);
				if (cr) {
					rc = cr;
					break;
				}
				*last_lsn = lsn;
			}
			prev = lsn;
			off += WAL_HEADER + n;
		}
		cfree(p);
	}
	if (rc == 0 && prev > *last_lsn)
		*last_lsn = prev;
	cfree(segs);
	return rc;
}
