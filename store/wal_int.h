/*
 * wal_int.h -- the write-ahead log.
 *
 * Records: a 20-byte header (u32 payload length, u8 type, 3 zero bytes,
 * u64 LSN, u32 CRC-32C of the header's first 16 bytes and the payload),
 * then the payload. Little-endian. LSNs are 1, 2, 3 ... with no gaps.
 *
 * Files: the log is a sequence of segments dir/wal-<first LSN, 20 digits>.log.
 * Every open starts a new segment; a snapshot (later) starts one too, so
 * that the segments older than the newest durable snapshot can be removed.
 *
 * Group commit: appenders copy their record into an in-memory buffer under
 * the log mutex and get its LSN. A flush takes the whole buffer as one
 * group (the buffers rotate, so appends continue meanwhile) and writes it
 * with one write: through io_uring, or pwrite where io_uring cannot be set
 * up. Short writes continue, EINTR and EAGAIN retry. Two ways to make it
 * durable:
 *  - direct (COHORT_FSYNC_ALWAYS, where the file system takes O_DIRECT):
 *    the segment is opened O_DIRECT | O_DSYNC and written ahead with zeros,
 *    so a group's write is a plain overwrite that is durable when it
 *    completes. Each group starts on a 4 KiB block and ends with a
 *    WAL_GROUP_END record that pads it to one and carries the durable LSN
 *    when the group was issued. Up to 4 groups are in flight together;
 *    they are published (made durable for wal_sync) in order.
 *  - buffered (INTERVAL, NONE, or where O_DIRECT is refused): write, then
 *    fdatasync once the write has completed (so it never overtakes it);
 *    one group in flight.
 * Under COHORT_FSYNC_ALWAYS wal_sync() waits for the LSN to be durable, and
 * the waiter is the flusher when its record is buffered and a group can
 * start; otherwise it sleeps until the group holding its record is
 * published, and one sleeper leads the next group when one can start.
 * Writer threads flush what no one waits for within an interval, and what
 * wal_sync_start() asks for at once. Under INTERVAL the writer thread
 * flushes and syncs every interval; under NONE it writes every interval
 * and never syncs. Both also flush when half a buffer is full, and an
 * appender that finds the buffer full flushes it.
 *
 * Replay and groups in flight: a later group may reach the disk before an
 * earlier one when the process or the machine stops. A bad record followed
 * by valid ones is a torn tail only if every group end after it says its
 * group was issued before the bad bytes were durable; otherwise the disk
 * once held them, and it is damage.
 *
 * Failure: a write or sync that fails stops the log for good: every later
 * append and sync returns COHORT_EIO, with the cause in the detail. Nothing
 * the log could not make durable is reported durable.
 */
#ifndef COHORT_WAL_INT_H
#define COHORT_WAL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WAL_HEADER 20
#define WAL_MAX_RECORD (64u << 20)
/* The log's own record: ends a group written with direct I/O, padding it
 * to a whole block; its payload starts with the u64 end of the segment's
 * durable bytes when the group was issued, and its LSN repeats the one of
 * the record before it. Replay applies nothing for it. */
#define WAL_GROUP_END 255

typedef struct wal wal;

typedef struct wal_config {
	int fsync;               /* cohort_fsync */
	uint32_t interval_ms;
	bool no_uring;           /* use pwrite + fdatasync even if io_uring works */
	bool no_direct;          /* ALWAYS: buffered writes + fdatasync even
	                            where O_DIRECT works */
} wal_config;

/* Start a new segment in dir whose first record will have LSN next_lsn. */
int wal_open(const char *dir, const wal_config *cfg, uint64_t next_lsn,
	     wal **out);
/* Write everything, sync it, stop the writer thread, close. */
int wal_close(wal *w);

/* Append one record; *lsn gets its LSN. The record is in memory only:
 * wal_sync() makes it durable (per the policy). */
int wal_append(wal *w, uint8_t type, const void *payload, uint32_t len,
	       uint64_t *lsn);
/* Under COHORT_FSYNC_ALWAYS wait until lsn is durable, flushing the
 * buffer from this thread if no flush is in flight; otherwise return at
 * once. COHORT_EIO if the log has failed, COHORT_EINVAL for an LSN not yet
 * appended. */
int wal_sync(wal *w, uint64_t lsn);
/*
 * Without waiting (cohort_sync_start): have lsn made durable at once by the
 * writer thread. 1 if it already is (or the policy promises nothing more),
 * 0 if it is on its way (then efd, if registered with wal_notify, is
 * written once it is durable or the log fails; -1: none), COHORT_EIO if
 * the log has failed, COHORT_EINVAL for an LSN not yet appended.
 * wal_sync_check: 1 durable, 0 not yet, COHORT_EIO failed. wal_notify:
 * (un)register an eventfd; unregistering waits for a notification in
 * progress.
 */
int wal_sync_start(wal *w, uint64_t lsn, int efd);
int wal_sync_check(wal *w, uint64_t lsn);
int wal_notify(wal *w, int efd, bool on);
/* Write and sync everything appended so far, whatever the policy. */
int wal_flush(wal *w);

/*
 * Start a new segment: write and sync everything appended so far to the
 * current one, then switch. *last gets the LSN of the last record in the
 * old segments. The caller must keep appends out (it holds the cut).
 */
int wal_rotate(wal *w, uint64_t *last);
/* Bytes appended since the last rotation (or open). */
uint64_t wal_bytes_since_rotate(wal *w);

/* "io_uring" or "pwrite" (with the reason io_uring was not used). */
const char *wal_io_path(const wal *w);
/* "direct (...)" or "buffered (...)": how groups reach the disk. */
const char *wal_write_mode(const wal *w);
uint64_t wal_durable_lsn(wal *w);
/* 0, or the error that stopped the log. */
int wal_error(wal *w);

/* Remove the segments whose records all have LSN <= lsn (a durable
 * snapshot holds them), oldest first so that a crash in the middle leaves
 * no hole, then fsync dir. */
int wal_prune(const char *dir, uint64_t lsn);

/*
 * Read the log in dir and call cb for every record with LSN > after, in
 * order. A torn tail (a bad record in the newest segment with nothing valid
 * after it) is cut off the file and reported. A bad record anywhere else is
 * COHORT_ECORRUPT naming the file and offset, unless salvage is set: then
 * replay stops there and the report says what was lost. *last_lsn gets the
 * LSN of the last record read (after if none). report (may be NULL) gets a
 * human-readable note of anything cut or lost ("" if nothing).
 */
typedef int (*wal_record_cb)(void *ctx, uint8_t type, uint64_t lsn,
			     const uint8_t *payload, uint32_t len);
int wal_replay(const char *dir, uint64_t after, bool salvage,
	       wal_record_cb cb, void *ctx, uint64_t *last_lsn,
	       char *report, size_t report_len);

#endif
