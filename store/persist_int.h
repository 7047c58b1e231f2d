/*
 * persist_int.h -- log records of the embedded API's mutations (encoding
 * here, replay in persist.c) and opening a database directory.
 *
 * A writer encodes its record before taking its lock, appends it with
 * persist_log() at the point where the change can no longer fail (under
 * the lock that orders it), and after releasing the lock waits with
 * persist_sync() for it to be durable under the database's policy. With no
 * directory (in-memory databases, and replay itself) both are no-ops.
 */
#ifndef COHORT_PERSIST_INT_H
#define COHORT_PERSIST_INT_H

#include "store_int.h"

enum rec_type {
	REC_CREATE_TABLE = 1,
	REC_ADD_COLUMN = 2,
	REC_PUT = 3,
	REC_EVENT = 4,
	REC_DELETE = 5,
	REC_PERSONA_MODEL = 6,   /* a model's new version (persona.c) */
	REC_PERSONA_NAME = 7,
	REC_PERSONA_DROP = 8,
	REC_INDEX_CREATE = 9,    /* ann.c */
	REC_INDEX_DROP = 10
};

/* A record being built: starts in a small inline buffer. */
typedef struct recbuf {
	unsigned char *p;
	size_t len, cap;
	unsigned char stack[512];
} recbuf;

void rec_init(recbuf *b);
void rec_free(recbuf *b);
int rec_reserve(recbuf *b, size_t more);
int rec_put(recbuf *b, const void *p, size_t n);
int rec_create_table(recbuf *b, const char *name, int64_t ttl,
		     const cohort_column_def *cols, size_t ncols);
int rec_add_column(recbuf *b, uint32_t table, const cohort_column_def *c);
/* A put or an event: the header, then n rec_update calls. */
int rec_row_begin(recbuf *b, uint32_t table, int64_t time, const void *key,
		  size_t key_len, size_t n);
int rec_update(recbuf *b, int column, int op, const cohort_value *v,
	       uint32_t dim);
int rec_delete(recbuf *b, uint32_t table, const void *key, size_t key_len);

/* A table's schema as the log's CREATE_TABLE record and the snapshot's
 * table section both carry it (rec_create_table writes it). */
typedef struct schema {
	char name[COHORT_MAX_NAME + 1];
	cohort_table_options opts;
	uint16_t ncols;
	cohort_column_def *defs;
	char (*names)[COHORT_MAX_NAME + 1];
} schema;

/* Decode a schema: 0, COHORT_ECORRUPT (malformed; b->bad set) or
 * COHORT_ENOMEM. schema_free releases it in any case. */
int schema_read(bytes_in *b, schema *out);
void schema_free(schema *s);
/* The definition of table t's columns, as rec_create_table takes them
 * (names owned by the table). NULL when out of memory. */
cohort_column_def *schema_defs_of(const cohort_table *t);

/* Append the record (no-op without a log); *lsn = 0 when not logged. */
int persist_log(cohort_db *db, uint8_t type, const recbuf *b, uint64_t *lsn);
/* Wait for lsn to be durable as the fsync policy says. */
int persist_sync(cohort_db *db, uint64_t lsn);

/* Lock dir, replay its log into db (empty), start a new log segment. */
int persist_open(cohort_db *db, const char *dir);
/* Flush and close the log, release the lock. */
int persist_close(cohort_db *db);

#endif
