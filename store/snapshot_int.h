/*
 * snapshot_int.h -- columnar snapshots of a whole database.
 *
 * File dir/snap-<LSN, 20 digits>.snap holds the state after the record
 * with that LSN. Layout, little-endian:
 *   "COHSNAP1", u32 version (1), u32 ntables, u64 lsn, u32 crc of these
 *   then, per table, sections; then an end section.
 *   A section: u32 kind, u32 table, u32 column, u64 payload length, u32 crc
 *   of those 20 bytes, payload, u32 crc of the payload.
 *     SEC_TABLE   name, ttl, ncols, column defs, u64 nrows
 *     SEC_KEYS    nrows x (u8 len, key bytes)
 *     SEC_TIMES   nrows x i64 row event time
 *     SEC_COLUMN  validity (nrows bits, in u64 words), nrows values of the
 *                 column's width (vec: dim floats), plane1 (nrows x i64) for
 *                 decay and last; cat: u32 nstrings, (u16 len, bytes) each,
 *                 then the values as codes into that list
 *     SEC_END     empty
 *   Rows are the live rows in slot order; deleted rows are not written, and
 *   a cat column lists only the strings its live rows use, so a deleted
 *   customer's key and values are in no snapshot written after the delete.
 *
 * Writing (snapshot_write_fork): the caller holds every table's stripes and
 * alloc_lock and the database lock (a consistent cut; no write is half
 * done) and forks; the child serialises its copy-on-write image of memory
 * while the parent releases the locks at once and goes on serving. The
 * child writes a temp file, fsyncs it, renames it into place and fsyncs the
 * directory; its exit status says whether that worked.
 */
#ifndef COHORT_SNAPSHOT_INT_H
#define COHORT_SNAPSHOT_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "store_int.h"

/* Fork a child that writes the snapshot of db at lsn into dir. Called with
 * the cut held; returns the child's pid or an error. */
int snapshot_fork(cohort_db *db, uint64_t lsn, pid_t *child);
/* Wait for the child: 0 when the snapshot is durable, else an error. */
int snapshot_wait(pid_t child, uint64_t lsn);

/* Write the snapshot in this process (what the child runs). */
int snapshot_write(cohort_db *db, const char *dir, uint64_t lsn);

/* Newest snapshot in dir: *lsn = 0 and *path = "" when there is none. */
int snapshot_newest(const char *dir, uint64_t *lsn, char *path, size_t len);
/* Load a snapshot into an empty db (no logging). ECORRUPT names the file
 * and offset of a bad section. With salvage, a column section whose
 * contents are damaged loads as all null and lost says so; damage to a
 * section header, a table's schema or its keys is still ECORRUPT. */
int snapshot_load(cohort_db *db, const char *path, bool salvage,
		  uint64_t *lsn, char *lost, size_t lost_len);

/* Remove snapshots older than lsn, leftover temp files, and (wal_prune)
 * the log segments the snapshot at lsn covers. */
int snapshot_prune(const char *dir, uint64_t lsn);

#endif
