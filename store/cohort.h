/*
 * cohort.h -- the embedded API of cohort, an in-memory feature store and
 * vector index for real-time customer personalisation.
 *
 * This header is the single source of truth for the public API: anything not
 * declared here is internal.
 *
 * Model
 *   A database holds named tables. A table holds one row per key (an opaque
 *   byte string of 1..255 bytes). A row has one value per column; every value
 *   may be null. Every row carries its event time: the latest event time of
 *   any put or event applied to it. A table may have a TTL: a row whose event
 *   time is older than (read time - TTL) reads as EXPIRED, without its data.
 *
 * Time
 *   Times are signed 64-bit milliseconds since the Unix epoch (cohort_time).
 *   COHORT_NOW stands for the wall clock at the moment of the call.
 *
 * Errors
 *   Every function that can fail returns an int: >= 0 on success, a negative
 *   COHORT_E* code on failure. cohort_strerror() names a code;
 *   cohort_errdetail() gives the calling thread's message for its most recent
 *   failure, naming what was wrong ("column 'agee' not found in table 'bank'").
 *   Results come back through pointer arguments marked out.
 *
 * Threads
 *   Every function taking a cohort_table may be called from any number of
 *   threads at once. Rows are protected by lock stripes chosen by key hash:
 *   readers do not block each other, and a reader never sees half of a put or
 *   an event. cohort_close must not race with any other call on the database.
 *
 * Ownership
 *   Objects returned through out parameters (cohort_db, cohort_batch,
 *   cohort_filter, cohort_bitmap) belong to the caller and are released with
 *   their _close/_free function. A cohort_table handle, column names and cat
 *   strings returned by the library belong to the database and stay valid
 *   until cohort_close.
 */
#ifndef COHORT_H
#define COHORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Errors: one table generates the codes and their messages.
 * ------------------------------------------------------------------------ */
#define COHORT_ERRORS(X)                                                      \
	X(OK, 0, "success")                                                   \
	X(EINVAL, -1, "invalid argument")                                     \
	X(ENOMEM, -2, "out of memory")                                        \
	X(ENOTFOUND, -3, "key not found")                                     \
	X(ENOTABLE, -4, "no such table")                                      \
	X(ENOCOLUMN, -5, "no such column")                                    \
	X(EEXIST, -6, "already exists")                                       \
	X(ETYPE, -7, "value type does not match the column type")            \
	X(EDIM, -8, "vector dimension does not match the column")            \
	X(EKEY, -9, "key must be 1 to 255 bytes")                             \
	X(ENAN, -10, "NaN or infinity where a finite number is required")     \
	X(EOP, -11, "operation not valid for this column type")               \
	X(ERANGE, -12, "value or buffer out of range")                        \
	X(ELIMIT, -13, "limit exceeded")                                      \
	X(ENOTSUP, -14, "not supported")                                      \
	X(EIO, -15, "I/O error")                                              \
	X(ECORRUPT, -16, "data is corrupt")                                   \
	X(EBADNAME, -17, "name must be 1 to 64 characters of [A-Za-z0-9_]") \
	X(EBUSY, -18, "in use by another process")

enum {
#define COHORT_X_ENUM(name, value, msg) COHORT_##name = (value),
	COHORT_ERRORS(COHORT_X_ENUM)
#undef COHORT_X_ENUM
};

/* The message of an error code; never NULL ("unknown error" for others). */
const char *cohort_strerror(int code);

/* The calling thread's message for its most recent failed call, naming the
 * table, column, key index or value at fault. Valid until the thread's next
 * call into cohort. Empty string when nothing has failed yet. */
const char *cohort_errdetail(void);

/* ------------------------------------------------------------------------
 * Limits
 * ------------------------------------------------------------------------ */
#define COHORT_MAX_KEY 255        /* bytes in a key */
#define COHORT_MAX_NAME 64        /* bytes in a table or column name */
#define COHORT_MAX_COLUMNS 1024   /* columns per table */
#define COHORT_MAX_TABLES 256     /* tables per database */
#define COHORT_MAX_DIM 4096       /* dimension of a vec column */
#define COHORT_MAX_CAT 1024       /* bytes in one cat string */

/* ------------------------------------------------------------------------
 * Time
 * ------------------------------------------------------------------------ */
typedef int64_t cohort_time;      /* milliseconds since the Unix epoch */
#define COHORT_NOW INT64_MIN      /* "the wall clock now" */

/* The wall clock in cohort_time. */
cohort_time cohort_now(void);

/* ------------------------------------------------------------------------
 * Types and values
 * ------------------------------------------------------------------------ */
typedef enum cohort_type {
	COHORT_NULL = 0,  /* only as a value's type: the value is null */
	COHORT_F32,
	COHORT_F64,
	COHORT_I32,
	COHORT_I64,
	COHORT_BOOL,
	COHORT_CAT,       /* string, dictionary-encoded per column */
	COHORT_VEC,       /* dim f32 values */
	/* Aggregate columns, fed by events; their values read as COHORT_F64. */
	COHORT_COUNTER,   /* sum of the values added */
	COHORT_DECAY,     /* sum of x_i * 2^(-(t - t_i) / half_life), read at t */
	COHORT_MIN,       /* smallest value observed */
	COHORT_MAX,       /* largest value observed */
	COHORT_LAST       /* value with the latest event time (ties: latest applied) */
} cohort_type;

/* Name of a type ("f32", "decay", ...); "?" for others. */
const char *cohort_type_name(cohort_type type);

/*
 * A value. type says which member holds it; COHORT_NULL means null.
 * As input, str.ptr and vec.ptr are read during the call only.
 * As output of cohort_get, str.ptr points into the column's dictionary
 * (NUL-terminated, valid until cohort_close) and vec.ptr into the caller's
 * vec_buf.
 */
typedef struct cohort_value {
	cohort_type type;
	union {
		float f32;
		double f64;
		int32_t i32;
		int64_t i64;
		bool b;
		struct {
			const char *ptr;
			uint32_t len;
		} str;
		struct {
			const float *ptr;
			uint32_t dim;
		} vec;
	} v;
} cohort_value;

static inline cohort_value cohort_null(void)
{ cohort_value x = { COHORT_NULL, { .vec = { 0, 0 } } }; return x; }
static inline cohort_value cohort_f32(float f)
{ cohort_value x = { COHORT_F32, { .vec = { 0, 0 } } }; x.v.f32 = f; return x; }
static inline cohort_value cohort_f64(double f)
{ cohort_value x = { COHORT_F64, { .vec = { 0, 0 } } }; x.v.f64 = f; return x; }
static inline cohort_value cohort_i32(int32_t i)
{ cohort_value x = { COHORT_I32, { .vec = { 0, 0 } } }; x.v.i32 = i; return x; }
static inline cohort_value cohort_i64(int64_t i)
{ cohort_value x = { COHORT_I64, { .vec = { 0, 0 } } }; x.v.i64 = i; return x; }
static inline cohort_value cohort_bool(bool b)
{ cohort_value x = { COHORT_BOOL, { .vec = { 0, 0 } } }; x.v.b = b; return x; }
/* A cat value from len bytes (need not be NUL-terminated). */
static inline cohort_value cohort_catn(const char *s, uint32_t len)
{ cohort_value x = { COHORT_CAT, { .vec = { 0, 0 } } }; x.v.str.ptr = s; x.v.str.len = len; return x; }
/* A cat value from a NUL-terminated string. */
cohort_value cohort_cat(const char *s);
static inline cohort_value cohort_vec(const float *p, uint32_t dim)
{ cohort_value x = { COHORT_VEC, { .vec = { 0, 0 } } }; x.v.vec.ptr = p; x.v.vec.dim = dim; return x; }

/* ------------------------------------------------------------------------
 * Database
 * ------------------------------------------------------------------------ */
typedef struct cohort_db cohort_db;
typedef struct cohort_table cohort_table;

typedef enum cohort_fsync {
	COHORT_FSYNC_ALWAYS = 0,   /* a write returns once it is durable */
	COHORT_FSYNC_INTERVAL,     /* synced every fsync_interval_ms */
	COHORT_FSYNC_NONE          /* left to the operating system */
} cohort_fsync;

typedef struct cohort_options {
	cohort_fsync fsync;            /* default COHORT_FSYNC_INTERVAL */
	uint32_t fsync_interval_ms;    /* default 10 */
	uint64_t snapshot_log_bytes;   /* automatic snapshot after this much log; 0 = never */
	bool salvage;                  /* open what is intact past damage (and
	                                  say loudly what was lost) instead of
	                                  failing with COHORT_ECORRUPT */
	bool no_uring;                 /* log with pwrite + fdatasync even where
	                                  io_uring works (tests, old kernels) */
} cohort_options;

/* Fill *opts with the defaults. */
void cohort_options_init(cohort_options *opts);

/*
 * Open a database. dir == NULL: in memory only. Otherwise the directory
 * (created if missing) holds the write-ahead log; opening replays it, so the
 * database holds exactly what was acknowledged before. Every mutation
 * (create table, add column, put, event, delete) is logged; under
 * COHORT_FSYNC_ALWAYS it returns only once durable. A torn tail (a crash
 * during an append) is cut; damage anywhere else fails with COHORT_ECORRUPT
 * naming the file and offset, unless opts->salvage. One process at a time:
 * COHORT_EBUSY if another holds the directory. opts may be NULL (defaults).
 * After an I/O error on the log every write returns COHORT_EIO for good.
 * Returns 0 and *out, or COHORT_EINVAL / ENOMEM / EIO / ECORRUPT / EBUSY.
 */
int cohort_open(const char *dir, const cohort_options *opts, cohort_db **out);

/* Close the database: write and sync the log, free everything it owns, its
 * tables included. No other call on the database may be running. NULL is
 * a no-op. COHORT_EIO if the final sync failed. */
int cohort_close(cohort_db *db);

/*
 * Write a snapshot of the whole database and drop the log it makes
 * redundant. The cut is taken in an instant (writers pause for it); the
 * snapshot is written by a forked child from a copy-on-write image while
 * this database keeps serving reads and writes. Returns once the snapshot
 * is durable (temp file, fsync, rename, fsync of the directory). Deleted
 * rows are in no snapshot written after the delete. With
 * opts.snapshot_log_bytes set, snapshots also happen by themselves.
 * COHORT_EINVAL for an in-memory database.
 */
int cohort_snapshot(cohort_db *db);

/* How the log writes: "io_uring", "pwrite (...reason...)", or "memory". */
const char *cohort_db_io_path(const cohort_db *db);
/* What the last open's recovery cut or lost ("" when nothing). */
const char *cohort_db_recovery(const cohort_db *db);

/* ------------------------------------------------------------------------
 * Tables and columns
 * ------------------------------------------------------------------------ */
typedef struct cohort_column_def {
	const char *name;        /* 1..COHORT_MAX_NAME of [A-Za-z0-9_] */
	cohort_type type;        /* COHORT_F32 .. COHORT_LAST */
	uint32_t dim;            /* COHORT_VEC: 1..COHORT_MAX_DIM; else 0 */
	int64_t half_life_ms;    /* COHORT_DECAY: > 0; else 0 */
} cohort_column_def;

typedef struct cohort_table_options {
	int64_t ttl_ms;          /* 0: rows never expire */
} cohort_table_options;

/*
 * Create a table. ncols may be 0 (columns added later). opts may be NULL.
 * *out (may be NULL) gets the table's handle, valid until cohort_close.
 * Errors: COHORT_EBADNAME, COHORT_EEXIST (table or duplicate column),
 * COHORT_EINVAL (bad type, dim or half-life), COHORT_ELIMIT, COHORT_ENOMEM.
 */
int cohort_table_create(cohort_db *db, const char *name,
			const cohort_column_def *cols, size_t ncols,
			const cohort_table_options *opts,
			cohort_table **out);

/* Find a table by name. COHORT_ENOTABLE when there is none. */
int cohort_table_open(cohort_db *db, const char *name, cohort_table **out);

/* Number of tables, and the name of the i-th (0-based, creation order). */
size_t cohort_db_ntables(cohort_db *db);
const char *cohort_db_table_name(cohort_db *db, size_t i);

/*
 * Add a column to a live table; existing rows read null in it.
 * *out_id (may be NULL) gets its column id. Safe while other threads read
 * and write the table.
 */
int cohort_table_add_column(cohort_table *t, const cohort_column_def *col,
			    int *out_id);

/* The id (>= 0) of a column by name, or COHORT_ENOCOLUMN. Ids are stable:
 * 0, 1, 2 ... in creation order. */
int cohort_table_column(const cohort_table *t, const char *name);

typedef struct cohort_table_info {
	const char *name;        /* owned by the database */
	size_t ncolumns;
	uint64_t nrows;          /* rows present (expired rows included) */
	int64_t ttl_ms;
	uint64_t mem_bytes;      /* memory the table holds, allocator rounding included */
} cohort_table_info;

typedef struct cohort_column_info {
	const char *name;        /* owned by the database */
	cohort_type type;
	uint32_t dim;
	int64_t half_life_ms;
	uint32_t ncat;           /* COHORT_CAT: distinct strings in the dictionary */
} cohort_column_info;

int cohort_table_describe(const cohort_table *t, cohort_table_info *out);
int cohort_column_describe(const cohort_table *t, int column,
			   cohort_column_info *out);

/* The string of a cat code (as found in a cohort_batch), with its length in
 * *len (may be NULL). NULL for an unknown code. Valid until cohort_close. */
const char *cohort_cat_string(const cohort_table *t, int column, uint32_t code,
			      uint32_t *len);

/* ------------------------------------------------------------------------
 * Writes
 * ------------------------------------------------------------------------ */
typedef struct cohort_field {
	int column;              /* column id */
	cohort_value value;      /* a null value stores null */
} cohort_field;

/*
 * Upsert some columns of one row (the others keep their values; a new row
 * starts all null). The value's type must be the column's type, or one that
 * widens to it exactly (i32 into i64 or f64 columns, f32 into f64); aggregate
 * columns take any finite number (COHORT_F64/F32/I32/I64) and store it as
 * their current value at `time` (a decay column's value decays from there).
 * NaN is refused everywhere, infinity in vectors and aggregates.
 * A column may appear once per put. The row's event time becomes
 * max(its event time, time). On a table with a TTL, a row already expired
 * at `time` is cleared first, so no expired value comes back.
 * Validation happens before any change: a failed put changes nothing.
 */
int cohort_put(cohort_table *t, const void *key, size_t key_len,
	       cohort_time time, const cohort_field *fields, size_t nfields);

typedef enum cohort_op {
	COHORT_OP_SET = 1,   /* any column: store the value (as cohort_put) */
	COHORT_OP_ADD,       /* f32/f64/i32/i64 (+= v), counter (+= v),
	                        decay (+= v at the event time) */
	COHORT_OP_OBSERVE    /* aggregates: feed v (counter and decay add it,
	                        min/max keep the extreme, last keeps the value
	                        with the latest event time) */
} cohort_op;

typedef struct cohort_update {
	int column;
	cohort_op op;
	cohort_value value;
} cohort_update;

/*
 * Apply an event: a list of updates to one key at one event time, all or
 * nothing. Updates apply in order; a column may appear more than once.
 * Adding to a null value starts from 0 (from v for min/max/last).
 * Decay columns are exact and order-independent: an event older than the
 * column's reference time is decayed to it on arrival.
 * An ADD on an integer column that would overflow fails with COHORT_ERANGE;
 * so does a float ADD whose result is NaN (inf - inf) and an aggregate
 * whose value would leave the finite range. A plain f32/f64 sum may reach
 * +-inf, as the column may hold it.
 */
int cohort_event(cohort_table *t, const void *key, size_t key_len,
		 cohort_time time, const cohort_update *updates, size_t nupdates);

/* Delete a row: its values and key bytes are zeroed at once and its slot is
 * reused. COHORT_ENOTFOUND when the key is absent. */
int cohort_delete(cohort_table *t, const void *key, size_t key_len);

/* ------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------ */
typedef enum cohort_row_status {
	COHORT_ROW_MISSING = 0,
	COHORT_ROW_PRESENT = 1,
	COHORT_ROW_EXPIRED = 2
} cohort_row_status;

/*
 * Read columns cols[0..ncols) of one key as of time `at` (decay values are
 * decayed to it; TTL is judged against it).
 * Returns the row's status (>= 0) or an error. out[i] gets column cols[i]:
 * its value or null; all null unless the status is PRESENT. Aggregates read
 * as COHORT_F64. Vectors are copied into vec_buf (vec_buf_len floats, one
 * after another) and out[i].v.vec.ptr points there; COHORT_ERANGE if it is
 * too small. *row_time (may be NULL) gets the row's event time.
 */
int cohort_get(const cohort_table *t, const void *key, size_t key_len,
	       const int *cols, size_t ncols, cohort_time at,
	       cohort_value *out, float *vec_buf, size_t vec_buf_len,
	       cohort_time *row_time);

/* One column of a batch: nkeys values, laid out for a scoring service. */
typedef struct cohort_block {
	int column;
	cohort_type type;        /* value type: F32, F64, I32, I64, BOOL (uint8_t),
	                            CAT (uint32_t code), VEC; aggregates read F64 */
	uint32_t dim;            /* VEC: floats per value; else 1 */
	size_t width;            /* bytes per value */
	void *values;            /* nkeys values, 64-byte aligned */
	uint8_t *valid;          /* nkeys bytes: 1 when the value is not null */
} cohort_block;

/* A columnar result of cohort_get_many. Arrays belong to the batch and are
 * valid until its next use or cohort_batch_free. */
typedef struct cohort_batch {
	size_t nkeys;
	size_t ncols;
	uint8_t *status;         /* nkeys cohort_row_status */
	cohort_time *time;       /* nkeys event times (0 unless PRESENT) */
	cohort_block *cols;      /* ncols blocks */
	struct cohort_batch_int *priv;
} cohort_batch;

typedef struct cohort_key {
	const void *ptr;
	size_t len;
} cohort_key;

/* A batch reading columns cols[0..ncols) of t. */
int cohort_batch_new(const cohort_table *t, const int *cols, size_t ncols,
		     cohort_batch **out);
void cohort_batch_free(cohort_batch *b);

/* Read nkeys keys into b (resized as needed). A bad key fails the whole
 * call with COHORT_EKEY, its index in cohort_errdetail(). */
int cohort_get_many(const cohort_table *t, const cohort_key *keys,
		    size_t nkeys, cohort_time at, cohort_batch *b);

/* ------------------------------------------------------------------------
 * Filters: predicates on columns combined with and / or / not, evaluated
 * over the whole table into a bitmap of rows.
 *
 * A filter is built node by node (at most 1024 nodes, COHORT_ELIMIT beyond);
 * each builder returns the new node's id (>= 0) or an error. A builder given an error as an operand returns that
 * error, so nested calls need one check at the end.
 * Nulls follow SQL: a comparison with null is unknown, NOT unknown is
 * unknown, and only rows where the whole expression is true match.
 * Missing and expired rows never match.
 * ------------------------------------------------------------------------ */
typedef struct cohort_filter cohort_filter;
typedef struct cohort_bitmap cohort_bitmap;

typedef enum cohort_cmp {
	COHORT_EQ = 1, COHORT_NE, COHORT_LT, COHORT_LE, COHORT_GT, COHORT_GE
} cohort_cmp;

int cohort_filter_new(const cohort_table *t, cohort_filter **out);
void cohort_filter_free(cohort_filter *f);

/*
 * column <cmp> value. Numeric and aggregate columns take any numeric value
 * and compare exactly (an f32 column against 0.1 compares with the double
 * 0.1, not its float rounding). bool: EQ/NE with a COHORT_BOOL. cat: EQ/NE
 * with a COHORT_CAT string. vec: none (COHORT_EOP).
 */
int cohort_filter_cmp(cohort_filter *f, int column, cohort_cmp cmp,
		      cohort_value value);
/* cat column in {set[0..n)}; each a COHORT_CAT value. */
int cohort_filter_in(cohort_filter *f, int column, const cohort_value *set,
		     size_t n);
int cohort_filter_is_null(cohort_filter *f, int column);
int cohort_filter_not_null(cohort_filter *f, int column);
int cohort_filter_and(cohort_filter *f, int a, int b);
int cohort_filter_or(cohort_filter *f, int a, int b);
int cohort_filter_not(cohort_filter *f, int a);

/* Evaluate node `root` at time `at` and count the matching rows. */
int cohort_filter_count(const cohort_filter *f, int root, cohort_time at,
			uint64_t *count);

/* Evaluate node `root` into a bitmap of row slots (owned by the caller). */
int cohort_filter_eval(const cohort_filter *f, int root, cohort_time at,
		       cohort_bitmap **out);

/* Called once per matching key; return nonzero to stop early. */
typedef int (*cohort_key_cb)(const void *key, size_t key_len, void *ctx);

/*
 * Evaluate node `root` and call cb for each matching key, all under the
 * table's read locks: the keys are one consistent cut. cb must not write to
 * this table. *count (may be NULL) gets the number of matching rows.
 * Returns 0, or the callback's nonzero value if it stopped early.
 */
int cohort_filter_keys(const cohort_filter *f, int root, cohort_time at,
		       cohort_key_cb cb, void *ctx, uint64_t *count);

uint64_t cohort_bitmap_count(const cohort_bitmap *bm);
uint64_t cohort_bitmap_nbits(const cohort_bitmap *bm);
bool cohort_bitmap_test(const cohort_bitmap *bm, uint64_t slot);
const uint64_t *cohort_bitmap_words(const cohort_bitmap *bm);
void cohort_bitmap_free(cohort_bitmap *bm);

#ifdef __cplusplus
}
#endif

#endif /* COHORT_H */
