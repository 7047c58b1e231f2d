/*
 * wal.c -- the write-ahead log; the format and the rules are in wal_int.h.
 *
 * Concurrency: w->mu guards the active buffer, the LSN counters, the file
 * offset of the next group, the slots' bookkeeping (`taken`, `published`)
 * and orders the setting of the error. The durable LSN and the error are
 * atomics, so that a writer checking on its record takes no lock.
 *
 * Groups and slots: whoever flushes (a waiter, a writer thread, an
 * appender out of room, wal_flush) takes the active buffer under mu as
 * group `taken` + 1 into slot (group % nslot), gives it its place in the
 * file, then writes it without the lock and publishes under mu. Groups
 * publish in order: the durable LSN is the end of the longest run of
 * written groups, so a group that completes before an older one waits for
 * it. With buffered writes one group is in flight at a time (nslot 1); with
 * direct writes up to NSLOT, because concurrent O_DSYNC writes share the
 * device's cache flushes (measured on this machine's virtio disk: 1 write
 * in flight 8.4-11 K writes/s at 90-110 us, 4 in flight 22-26 K/s at
 * 145-165 us; buffered write + fdatasync gains only 1.3x from 2 threads).
 *
 * Leader and followers (under ALWAYS; PostgreSQL's XLogFlush, MySQL's
 * binlog group commit): a thread that must wait for its LSN and finds its
 * record still buffered and a slot free flushes the active buffer itself,
 * its own record and every record appended before it. One whose record is
 * in flight sleeps until its group is published; one whose record is
 * buffered with every slot busy sleeps until a slot frees, and one such
 * sleeper leads the next group (FUTEX bitsets on the publication counter,
 * one bit per group number mod 32), so no thread is woken only to sleep
 * again, and the common case hands nothing to another thread.
 *
 * The writer threads (one, or nslot under ALWAYS with direct writes):
 * under INTERVAL and NONE one writes every interval (or at half a buffer).
 * Under ALWAYS the first looks once an interval for a group that no one
 * has taken for a whole interval, and any takes a group asked for without
 * waiting (below) at once.
 *
 * Without waiting (wal_sync_start, for event loops): the caller records
 * the LSN it wants in `want` and a writer thread flushes it at once, into
 * a free slot, so a loop's groups follow one another without waiting for
 * the previous one. A start names the loop's registered eventfd
 * (wal_notify), and after the publication that makes its LSN durable (or
 * the failure) the log writes to that descriptor: only loops with
 * something to release are woken. nmu guards the descriptors, so that
 * unregistering waits for a notification in progress and no descriptor is
 * written after its owner took it back.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
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
#define BLK 4096                /* the unit of direct writes */
/* direct writes: groups in flight at most (measured with 64 writers and
 * with cohortd's event bench: 2, 3 and 4 alike for the first, 4 best for
 * the second; 8 worse for both) */
#define NSLOT 4
#define ZERO_CHUNK (1u << 20)
#define ANY_SEG UINT64_MAX      /* make_space: whatever the segment */
/* a group's end record: header, the durable end offset at issue, padding */
#define GROUP_END_MIN (WAL_HEADER + 8)

typedef struct walbuf {
	char *p;                   /* BLK-aligned */
	size_t len, cap;
	uint32_t nrec;             /* records in it */
	uint64_t last_lsn;         /* LSN of the last record in it */
} walbuf;

/* One group in flight: its records, where they go, how it went. */
typedef struct slot {
	walbuf buf;
	off_t off;
	int rc;
	bool done;                 /* written (or failed), not yet published */
	bool ring_ok;
	struct io_uring ring;      /* used by the slot's flusher only */
} slot;

struct wal {
	wal_config cfg;
	int fd;
	char path[4200];
	char io_path[160];
	char mode[64];             /* wal_write_mode */
	bool uring;
	bool direct;               /* O_DIRECT | O_DSYNC, whole blocks */
	int nslot;                 /* groups in flight at most */
	slot slots[NSLOT];

	/* Space ahead of the log: preallocated (buffered) or written with
	 * zeros (direct) up to alloc; zmu makes one thread do it while the
	 * flushers whose group lies past alloc wait (the others go on). */
	pthread_mutex_t zmu;
	_Atomic int64_t alloc;
	_Atomic bool no_prealloc;  /* refused: grow by writing */
	bool fill_ahead;           /* direct: the first writer is to write
	                              the next zeros; under mu */
	uint64_t segno;            /* rotations so far; under mu and zmu */
	char *zeros;               /* direct: ZERO_CHUNK zero bytes */

	pthread_mutex_t mu;
	pthread_cond_t data, done;
	walbuf active;
	size_t reserve;            /* room kept in active for the group end */
	off_t off;                 /* where the next group goes */
	off_t durable_off;         /* end of the published groups */
	uint64_t next_lsn;         /* LSN of the next append */
	uint64_t taken;            /* groups taken for flushing so far */
	uint64_t published;        /* groups written and published, in order */
	uint64_t taken_lsn;        /* last LSN of the groups taken */
	/* highest LSN on disk (synced, unless NONE): written under mu, read
	 * by wal_sync without it */
	_Atomic uint64_t durable_lsn;
	/* publications so far, bumped under mu; the futex word waiters sleep
	 * on, each with the bit of the group it waits for */
	_Atomic uint32_t flushes;
	/* sleepers per group number mod 32, so that a publication with no
	 * one to wake makes no system call (a stale count costs one spare
	 * wake) */
	_Atomic uint32_t nwait[32];
	uint64_t bytes;            /* appended since open or rotation, with
	                              the padding of direct groups */
	char dir[4096];
	/* sticky: the -errno that stopped the log; written under mu, read
	 * without it on the write path */
	_Atomic int error;
	bool stop;
	_Atomic int writer_ids;    /* the first writer thread is 0 */
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
	int nthreads;
	pthread_t threads[NSLOT];
};

static bool room(const wal *w)
{
	return w->taken - w->published < (uint64_t)w->nslot;
}

static bool in_flight(const wal *w)
{
	return w->taken != w->published;
}

/* Asked for without waiting, buffered, and a slot free: flush now. */
static bool wanted(const wal *w)
{
	return w->want > w->taken_lsn && w->active.len > 0 && room(w);
}

/* Grow b to hold cap bytes, keeping it BLK-aligned: 0 or -ENOMEM. */
static int buf_grow(walbuf *b, size_t cap)
{
	if (cap <= b->cap)
		return 0;
	cap = (cap + BLK - 1) / BLK * BLK;
	char *p = caligned(BLK, cap);
	if (!p)
		return -ENOMEM;
	if (b->len)
		memcpy(p, b->p, b->len);
	cfree(b->p);
	b->p = p;
	b->cap = cap;
	return 0;
}

/* ------------------------------------------------------------------------
 * Writing one group
 * ------------------------------------------------------------------------ */

/* One write through the slot's ring, submitted and waited for in one
 * system call; returns bytes written (may be short) or -errno. */
static ssize_t uring_write(wal *w, slot *s, const char *p, size_t len,
			   off_t off)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
	io_uring_prep_write(sqe, w->fd, p, (unsigned)len, (uint64_t)off);
	int rc;
	do {
		rc = io_uring_submit_and_wait(&s->ring, 1);
	} while (rc == -EINTR || rc == -EAGAIN);
	if (rc < 0)
		return rc;
	struct io_uring_cqe *cqe;
	do {
		rc = io_uring_wait_cqe(&s->ring, &cqe);
	} while (rc == -EINTR || rc == -EAGAIN);
	if (rc < 0)
		return rc;
	ssize_t res = cqe->res;
	io_uring_cqe_seen(&s->ring, cqe);
	return io_fault_filter(IO_WRITE, res, len);
}

static ssize_t plain_write(wal *w, const char *p, size_t len, off_t off)
{
	ssize_t n = pwrite(w->fd, p, len, off);
	return io_fault_filter(IO_WRITE, n < 0 ? -errno : n, len);
}

/*
 * Space up to end, made ahead (PostgreSQL's segment preallocation and
 * zero-filling): an fdatasync after a buffered write that grew the file
 * must also write the inode's new size, one into allocated space does not
 * (measured on this ext4: 137-175 us against 85-120 us per write +
 * fdatasync). Direct writes need more: into fallocated (unwritten) space
 * each would convert extents (237 us), into written zeros it is a plain
 * overwrite (90-110 us); so direct segments are written with zeros ahead,
 * with O_DSYNC, so that the space and the size are durable before a group
 * relies on them. The log's end is the first all-zero header, which replay
 * reads as the segment's clean end (and close and rotation cut the file
 * back to its records). Where the space cannot be made the file grows by
 * writing, as before; a full disk fails the group's own write.
 */
static void make_space(wal *w, off_t end, uint64_t segno)
{
	if (end <= atomic_load(&w->alloc))
		return;                 /* made already, or being extended */
	pthread_mutex_lock(&w->zmu);
	/* segno: the segment asked for (a fill ahead that a rotation
	 * overtook must not fill the new one); ANY_SEG from a flusher,
	 * which no rotation overtakes */
	if ((segno == ANY_SEG || segno == w->segno) && !w->no_prealloc &&
	    end > w->alloc) {
		off_t want = (end + PREALLOC - 1) / PREALLOC * PREALLOC;
		if (!w->direct) {
			if (fallocate(w->fd, 0, w->alloc, want - w->alloc) == 0)
				w->alloc = want;
			else
				w->no_prealloc = true;
		}
		while (w->direct && w->alloc < want) {
			ssize_t n = pwrite(w->fd, w->zeros, ZERO_CHUNK, w->alloc);
			if (n < 0 && errno == EINTR)
				continue;
			if (n != (ssize_t)ZERO_CHUNK) {
				w->no_prealloc = true;
				break;
			}
			w->alloc += ZERO_CHUNK;
		}
	}
	pthread_mutex_unlock(&w->zmu);
}

/* Cut the file back to its records (the zeros past them would read as a
 * clean end anyway: no sync needed). Nothing in flight, and no one
 * making space (zmu held, or the writers stopped). */
static void cut_prealloc(wal *w)
{
	if (w->alloc > w->off && ftruncate(w->fd, w->off) == 0)
		w->alloc = w->off;
}

/*
 * Write the slot's group at its offset and sync it if asked: 0 or -errno.
 * Through the slot's ring, or pwrite. A direct write is whole blocks and
 * durable when it completes (O_DSYNC); a short one is continued from the
 * last whole block it wrote. A buffered one is followed by fdatasync from
 * this thread once the write has completed, so the sync never overtakes
 * it. (Linking an fsync SQE behind the write was measured slower:
 * io_uring hands fsync to an io-wq worker, one more thread to wake per
 * group on a small machine.)
 */
static int write_group(wal *w, slot *s, bool sync)
{
	const char *p = s->buf.p;
	size_t len = s->buf.len;
	off_t off = s->off;
	int stuck = 0;
	make_space(w, off + (off_t)len, ANY_SEG);
	while (len > 0) {
		ssize_t n = w->uring ? uring_write(w, s, p, len, off) :
			plain_write(w, p, len, off);
		if (n == -EINTR || n == -EAGAIN)
			continue;
		if (n < 0)
			return (int)n;
		if (w->direct)
			n -= n % BLK;
		if (n == 0) {
			if (++stuck > 8)
				return -EIO;
			continue;
		}
		off += n;
		p += n;
		len -= (size_t)n;
	}
	if (!sync)
		return 0;
	/* direct: O_DSYNC synced it; the sync fault hook still applies */
	return w->direct ? (int)io_fault_filter(IO_SYNC, 0, 0) :
		io_fdatasync(w->fd);
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

/* The header of the record at h, whose len payload bytes are in place
 * after it: length, type, LSN, and the CRC32C of header and payload. */
static void seal_record(unsigned char *h, uint8_t type, uint64_t lsn,
			uint32_t len)
{
	memcpy(h, &len, 4);
	h[4] = type;
	h[5] = h[6] = h[7] = 0;
	memcpy(h + 8, &lsn, 8);
	uint32_t crc = crc32c(crc32c(0, h, 16), h + WAL_HEADER, len);
	memcpy(h + 16, &crc, 4);
}

/*
 * Direct writes: end the group with a record of type WAL_GROUP_END that
 * pads it to a whole block and carries the end of the segment's durable
 * bytes when the group was issued. Replay reads it to tell a crash with
 * groups in flight (a later group may reach the disk before an earlier
 * one) from damage (bytes that were durable before a later group was
 * issued). Under mu.
 */
static void end_group(wal *w, walbuf *b)
{
	size_t end = (b->len + GROUP_END_MIN + BLK - 1) / BLK * BLK;
	uint32_t n = (uint32_t)(end - b->len - WAL_HEADER);
	uint64_t l = b->last_lsn;       /* it takes no LSN of its own */
	uint64_t d = (uint64_t)w->durable_off;
	unsigned char *h = (unsigned char *)b->p + b->len;
	memset(h + WAL_HEADER, 0, n);
	memcpy(h + WAL_HEADER, &d, 8);
	seal_record(h, WAL_GROUP_END, l, n);
	w->bytes += end - b->len;       /* the log's size, padding included */
	b->len = end;
	b->nrec++;
}

/*
 * Publish the groups written, oldest first, up to the first still in
 * flight; wake their sleepers, one leader for the buffered records, and
 * the loops whose LSN is durable. Called with mu held; returns with mu
 * released.
 */
static void publish(wal *w)
{
	uint64_t first = w->published + 1;
	while (in_flight(w)) {
		slot *s = &w->slots[(w->published + 1) % (uint64_t)w->nslot];
		if (!s->done)
			break;
		if (s->rc && !w->error) {
			atomic_store(&w->error, s->rc);
			fprintf(stderr, "cohort: log %s: %s; the log is stopped "
				"and the database refuses writes\n", w->path,
				strerror(-s->rc));
		}
		if (!w->error) {
			atomic_store(&w->durable_lsn, s->buf.last_lsn);
			w->durable_off = s->off + (off_t)s->buf.len;
		}
		s->done = false;
		s->buf.len = 0;
		s->buf.nrec = 0;
		w->published++;
	}
	uint64_t last = w->published;
	if (last < first) {
		pthread_mutex_unlock(&w->mu);
		return;
	}
	atomic_fetch_add(&w->flushes, 1);
	bool stopped = w->error != 0;
	uint64_t durable = atomic_load(&w->durable_lsn);
	uint64_t lead = w->taken + 1;
	pthread_cond_broadcast(&w->done);
	/* Half the zeros ahead used: the first writer thread writes the
	 * next ones now, so that no group waits for them (16 MiB took
	 * 15-18 ms here, during which every flusher past them waited). */
	if (w->direct && !w->fill_ahead && !atomic_load(&w->no_prealloc) &&
	    atomic_load(&w->alloc) - w->off < PREALLOC / 2) {
		w->fill_ahead = true;
		pthread_cond_broadcast(&w->data);
	}
	/* a slot is free for what a loop asked for without waiting */
	if (wanted(w))
		pthread_cond_signal(&w->data);
	pthread_mutex_unlock(&w->mu);

	/* Wake after unlocking, so that the woken do not queue on mu. */
	if (atomic_load(&w->nwant))
		notify_loops(w, durable, stopped);
	if (stopped) {
		futex_wake_bits(&w->flushes, INT_MAX, UINT32_MAX);
		return;
	}
	/* The groups just done, then one leader for the buffered records
	 * (the rest of its group sleeps on), so that the woken may append
	 * to the group the leader takes. (The leader used to go first, so
	 * that the disk would not idle while it queued for a CPU; 64
	 * writers, alternated: direct 168-173 K events/s leader first,
	 * 172-186 K after; buffered 124-144 K and 141-144 K.) */
	for (uint64_t g = first; g <= last && g < first + 32; g++)
		if (atomic_load(&w->nwait[g & 31]))
			futex_wake_bits(&w->flushes, INT_MAX, group_bit(g));
	if (atomic_load(&w->nwait[lead & 31]))
		futex_wake_bits(&w->flushes, 1, group_bit(lead));
}

/*
 * Take the active buffer and write it (and sync it, if asked) as group
 * taken + 1, then publish. Called with mu held, a slot free and something
 * buffered; returns with mu released.
 */
static void flush_group(wal *w, bool sync)
{
	uint64_t g = ++w->taken;
	slot *s = &w->slots[g % (uint64_t)w->nslot];
	walbuf tmp = s->buf;
	s->buf = w->active;
	w->active = tmp;
	w->active.len = 0;
	w->active.nrec = 0;
	if (w->direct)
		end_group(w, &s->buf);
	w->taken_lsn = s->buf.last_lsn;
	s->off = w->off;
	w->off += (off_t)s->buf.len;
	int err = w->error;
	pthread_mutex_unlock(&w->mu);

	int rc = err ? err : write_group(w, s, sync);

	pthread_mutex_lock(&w->mu);
	s->rc = rc;
	s->done = true;
	publish(w);
}

/* ------------------------------------------------------------------------
 * The writer threads
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
	int id = atomic_fetch_add(&w->writer_ids, 1);
	bool always = w->cfg.fsync == COHORT_FSYNC_ALWAYS;
	bool sync = w->cfg.fsync != COHORT_FSYNC_NONE;
	struct timespec ts;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		if (w->stop && w->active.len == 0)
			break;
		if (id == 0 && w->fill_ahead && !w->stop) {
			w->fill_ahead = false;
			off_t end = w->off + PREALLOC;
			uint64_t seg = w->segno;
			pthread_mutex_unlock(&w->mu);
			make_space(w, end, seg);
			pthread_mutex_lock(&w->mu);
			continue;
		}
		if (!room(w)) {
			pthread_cond_wait(&w->done, &w->mu);
			continue;
		}
		if (w->stop) {
			/* flush what is left */
		} else if (always) {
			/* Buffered and asked for without waiting: now. Else
			 * the backstop, the first writer's alone: a group no
			 * one has taken for a whole interval. It looks once an
			 * interval instead of being woken by appends: a wake-up
			 * per group cost the appenders a system call and a CPU
			 * (4% of an event loop's time in cohortd's event
			 * bench, and as many wake-ups of a writer thread). */
			if (!wanted(w) && (id != 0 || w->active.len == 0)) {
				if (id != 0) {
					pthread_cond_wait(&w->data, &w->mu);
					continue;
				}
				deadline_in(&ts, w->cfg.interval_ms);
				pthread_cond_timedwait(&w->data, &w->mu, &ts);
				continue;
			}
			if (!wanted(w)) {
				uint64_t taken = w->taken;
				deadline_in(&ts, w->cfg.interval_ms);
				while (!w->stop && w->taken == taken &&
				       !wanted(w) &&
				       pthread_cond_timedwait(&w->data, &w->mu,
							      &ts) == 0)
					;
				if (w->stop || !room(w) || w->taken != taken ||
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
			if (!room(w) || w->active.len == 0)
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

/* Create a segment for direct (O_DIRECT | O_DSYNC) or buffered writes. */
static int open_segment(const char *path, bool direct)
{
	int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
	return open(path, direct ? flags | O_DIRECT | O_DSYNC : flags, 0600);
}

/* Have the writer threads write what is left and stop; join them. */
static void stop_writers(wal *w)
{
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_broadcast(&w->data);
	pthread_mutex_unlock(&w->mu);
	for (int i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
}

static void free_slots(wal *w)
{
	for (int i = 0; i < NSLOT; i++) {
		if (w->slots[i].ring_ok)
			io_uring_queue_exit(&w->slots[i].ring);
		cfree(w->slots[i].buf.p);
	}
	cfree(w->active.p);
	cfree(w->zeros);
}

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
	w->taken_lsn = next_lsn - 1;
	atomic_store(&w->durable_lsn, next_lsn - 1);
	snprintf(w->dir, sizeof(w->dir), "%s", dir);
	snprintf(w->path, sizeof(w->path), "%s/wal-%020" PRIu64 ".log", dir,
		 next_lsn);
	/* direct writes pay where each group is synced */
	w->direct = cfg->fsync == COHORT_FSYNC_ALWAYS && !cfg->no_direct;
	w->fd = open_segment(w->path, w->direct);
	if (w->fd < 0 && w->direct && errno == EINVAL) {
		w->direct = false;      /* tmpfs and the like: buffered */
		w->fd = open_segment(w->path, false);
	}
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
	w->nslot = w->direct ? NSLOT : 1;
	w->reserve = w->direct ? GROUP_END_MIN + BLK : 0;
	char why[96] = "";
	if (cfg->no_uring) {
		snprintf(why, sizeof why, " (io_uring turned off)");
	} else {
		w->uring = true;
		for (int i = 0; i < w->nslot && w->uring; i++) {
			rc = io_uring_queue_init(4, &w->slots[i].ring, 0);
			w->slots[i].ring_ok = rc == 0;
			if (rc) {
				w->uring = false;
				snprintf(why, sizeof why,
					 " (io_uring unavailable: %s)",
					 strerror(-rc));
			}
		}
	}
	snprintf(w->io_path, sizeof(w->io_path), "%s%s",
		 w->uring ? "io_uring" : "pwrite", why);
	if (w->direct)
		snprintf(w->mode, sizeof(w->mode), "direct (O_DIRECT | O_DSYNC, "
			 "%d groups in flight)", NSLOT);
	else
		snprintf(w->mode, sizeof(w->mode), "buffered (write + "
			 "fdatasync, 1 group in flight)");
	bool mem = buf_grow(&w->active, BUF_INITIAL) == 0;
	for (int i = 0; i < w->nslot; i++)
		mem = mem && buf_grow(&w->slots[i].buf, BUF_INITIAL) == 0;
	if (w->direct) {
		w->zeros = caligned(BLK, ZERO_CHUNK);
		if (w->zeros)
			memset(w->zeros, 0, ZERO_CHUNK);
		mem = mem && w->zeros;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_mutex_init(&w->nmu, NULL);
	pthread_mutex_init(&w->zmu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->data, &ca);
	pthread_cond_init(&w->done, &ca);
	pthread_condattr_destroy(&ca);
	int nthreads = w->cfg.fsync == COHORT_FSYNC_ALWAYS ? w->nslot : 1;
	while (mem && w->nthreads < nthreads &&
	       pthread_create(&w->threads[w->nthreads], NULL, writer, w) == 0)
		w->nthreads++;
	if (w->nthreads < nthreads) {
		stop_writers(w);
		free_slots(w);
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

/* A sync of an LSN not yet appended, called with mu held; releases it. */
static int never_appended_unlock(wal *w, uint64_t lsn)
{
	pthread_mutex_unlock(&w->mu);
	return seterr(COHORT_EINVAL, "log: sync of LSN %" PRIu64
		      ", which was never appended", lsn);
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
	/* out of room: flush the buffer, or wait for a slot */
	while (!w->error && w->active.len > 0 &&
	       w->active.len + need + w->reserve > w->active.cap) {
		if (!room(w)) {
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
	if (buf_grow(&w->active, need + w->reserve)) {
		pthread_mutex_unlock(&w->mu);
		return seterr(COHORT_ENOMEM, "log: out of memory");
	}
	uint64_t l = w->next_lsn++;
	unsigned char *h = (unsigned char *)w->active.p + w->active.len;
	if (len)
		memcpy(h + WAL_HEADER, payload, len);
	seal_record(h, type, l, len);
	w->active.len += need;
	w->active.nrec++;
	w->active.last_lsn = l;
	w->bytes += need;
	/* ALWAYS: the waiters flush, and the first writer thread looks for
	 * a group no one takes once an interval. Otherwise: half a buffer
	 * is worth writing now. */
	if (!always && w->active.len >= w->active.cap / 2)
		pthread_cond_signal(&w->data);
	pthread_mutex_unlock(&w->mu);
	*lsn = l;
	return 0;
}

/* The group in flight that holds lsn (taken_lsn >= lsn > durable). */
static uint64_t group_of(const wal *w, uint64_t lsn)
{
	uint64_t g = w->published + 1;
	while (g < w->taken &&
	       w->slots[g % (uint64_t)w->nslot].buf.last_lsn < lsn)
		g++;
	return g;
}

int wal_sync(wal *w, uint64_t lsn)
{
	if (w->cfg.fsync != COHORT_FSYNC_ALWAYS) {
		if (!atomic_load(&w->error))
			return 0;
		pthread_mutex_lock(&w->mu);
		return failed_unlock(w);
	}
	bool yielded = false;
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
		if (lsn >= w->next_lsn)
			return never_appended_unlock(w, lsn);
		bool buffered = lsn > w->taken_lsn;
		if (buffered && room(w) && in_flight(w) && !yielded) {
			/*
			 * Buffered, a slot free, and a group already on the
			 * disk: the writers that its predecessor's publication
			 * woke are about to append. Give them the CPU once
			 * before taking the group, so that it carries their
			 * records too (PostgreSQL's commit_delay, with a yield
			 * for the delay; a lone writer never has a group in
			 * flight when it leads, so it never yields). 64
			 * writers, 2 cores: groups of 20 events instead of 10,
			 * and 286 K events/s instead of 157 K (benchmarks.md,
			 * wal).
			 */
			yielded = true;
			pthread_mutex_unlock(&w->mu);
			sched_yield();
			continue;
		}
		if (buffered && room(w)) {
			/* not durable, not in flight: buffered. Lead. */
			flush_group(w, true);
			continue;
		}
		/* in flight: its group; buffered: the next one, whose
		 * leader is woken when a slot frees */
		uint64_t g = buffered ? w->taken + 1 : group_of(w, lsn);
		uint32_t seen = atomic_load(&w->flushes);
		atomic_fetch_add(&w->nwait[g & 31], 1);
		pthread_mutex_unlock(&w->mu);
		futex_wait_bits(&w->flushes, seen, group_bit(g));
		atomic_fetch_sub(&w->nwait[g & 31], 1);
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
	if (lsn >= w->next_lsn)
		return never_appended_unlock(w, lsn);
	if (atomic_load(&w->durable_lsn) >= lsn) {
		pthread_mutex_unlock(&w->mu);
		return 1;
	}
	if (lsn > w->want)
		w->want = lsn;
	/* before the writer can finish the flush: it notifies after */
	if (efd >= 0)
		want_notify(w, efd, lsn);
	/* a free slot: a writer takes it now; else one takes it when a
	 * group ends */
	if (wanted(w))
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
		if (w->active.len && room(w)) {
			flush_group(w, w->cfg.fsync != COHORT_FSYNC_NONE);
			pthread_mutex_lock(&w->mu);
		} else {
			/* in flight, or no slot free: wait for a group */
			pthread_cond_wait(&w->done, &w->mu);
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
	while (in_flight(w))
		pthread_cond_wait(&w->done, &w->mu);
	uint64_t l = w->next_lsn - 1;
	char path[sizeof(w->path) + 64];
	snprintf(path, sizeof(path), "%s/wal-%020" PRIu64 ".log", w->dir, l + 1);
	/* as the log began: a directory whose file system now refuses
	 * O_DIRECT fails the rotation (EINVAL) */
	int fd = open_segment(path, w->direct);
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
	pthread_mutex_lock(&w->zmu);    /* no zeros being written */
	cut_prealloc(w);
	close(w->fd);
	w->fd = fd;
	w->off = 0;
	w->durable_off = 0;
	w->alloc = 0;
	w->no_prealloc = false;
	w->fill_ahead = false;
	w->segno++;
	pthread_mutex_unlock(&w->zmu);
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
	stop_writers(w);
	cut_prealloc(w);
	if (close(w->fd) && rc == 0)
		rc = seterr(COHORT_EIO, "log: close of %s: %s", w->path,
			    strerror(errno));
	pthread_mutex_destroy(&w->mu);
	pthread_mutex_destroy(&w->nmu);
	pthread_mutex_destroy(&w->zmu);
	cfree(w->notify);
	pthread_cond_destroy(&w->data);
	pthread_cond_destroy(&w->done);
	free_slots(w);
	cfree(w);
	return rc;
}

const char *wal_io_path(const wal *w)
{
	return w->io_path;
}

const char *wal_write_mode(const wal *w)
{
	return w->mode;
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

/*
 * Is the bad record at off damage rather than a torn tail? It is when a
 * valid record after it shows that the disk once held what is now bad.
 * Where groups are written one at a time (no WAL_GROUP_END records in the
 * segment), any valid record after off does. Where groups go in flight
 * together (direct writes), a later group may have reached the disk before
 * an earlier one when the process or machine stopped: the bad bytes are
 * damage only if a group end after them says they were durable when its
 * group was issued. Records after the last group end belong to a group
 * that never completed.
 */
static bool damage_after(const unsigned char *p, size_t len, size_t off,
			 uint64_t prev, bool groups)
{
	bool loose = false;      /* a valid record after off, not a group end */
	for (size_t o = off + 1; o + WAL_HEADER <= len; o++) {
		uint32_t n;
		uint64_t lsn;
		if (!record_ok(p, len, o, &n, &lsn))
			continue;
		if (p[o + 4] != WAL_GROUP_END || n < 8) {
			loose = loose || lsn > prev;
			continue;
		}
		uint64_t durable;
		memcpy(&durable, p + o + WAL_HEADER, 8);
		if (durable > off)
			return true;
		groups = true;
	}
	return loose && !groups;
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
		bool groups = false;    /* a group end seen: direct writes */
		while (off < len && rc == 0) {
			uint32_t n;
			uint64_t lsn;
			/* preallocated and never written: the clean end */
			if (p[off] == 0 && all_zero(p + off, len - off))
				break;
			bool ok = record_ok(p, len, off, &n, &lsn);
			/* a group end repeats the LSN of the record before it */
			bool end = ok && p[off + 4] == WAL_GROUP_END;
			if (end && (lsn != prev || n < 8))
				ok = false;
			/* past the snapshot, a gap or a repeat is damage; the
			 * first record past it must be after + 1 */
			if (ok && !end && lsn > after &&
			    lsn != (prev > after ? prev + 1 : after + 1))
				ok = false;
			if (ok && !end && lsn <= after && prev > after)
				ok = false;
			if (!ok) {
				bool last = s + 1 == nseg;
				bool torn = last &&
					!damage_after(p, len, off, prev,
						      groups);
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
			if (end) {
				groups = true;  /* padding: nothing to apply */
			} else if (lsn > after) {
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
