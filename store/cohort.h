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
	X(EBUSY, -18, "in use by another process")                            \
	X(EPROTO, -19, "malformed protocol frame")                            \
	X(EAUTH, -20, "not authenticated, or a wrong token")                  \
	X(EDENIED, -21, "the connection's role does not allow this")          \
	X(ECLOSED, -22, "connection closed")

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
	bool no_direct;                /* under COHORT_FSYNC_ALWAYS, log with
	                                  buffered writes + fdatasync even where
	                                  the file system takes O_DIRECT */
	bool snapshot_on_close;        /* cohort_close writes a snapshot even
	                                  without similarity indexes, so the
	                                  next open loads it instead of
	                                  replaying the log (servers) */
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
 * tables included. A database with similarity indexes first lets their
 * pending rows into the graphs and writes a snapshot, so that the next
 * open loads the graphs instead of rebuilding them; with
 * opts.snapshot_on_close every database with a directory does (a failed
 * snapshot is reported on stderr: the log still holds everything). No other call on the database may be running. NULL is
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

/*
 * Deferred durability, for servers that answer many clients from one
 * thread. After cohort_sync_defer(true), writes made by the calling thread
 * return once logged, without waiting for the fsync policy's promise;
 * cohort_sync_wait then waits, once, until every write the thread made
 * since its last wait is as durable as the policy promises (under ALWAYS:
 * on disk). A caller must not acknowledge a deferred write before
 * cohort_sync_wait returned 0 for it; COHORT_EIO means the log has failed
 * and none of those writes may be acknowledged. Thread-local; off by
 * default.
 */
void cohort_sync_defer(bool on);
int cohort_sync_wait(cohort_db *db);

/*
 * The same without blocking, for event loops that keep serving while the
 * log syncs. cohort_sync_notify(db, efd, true) registers an eventfd
 * (eventfd(2)) for the loop; it must stay open until unregistered
 * (on = false), which waits for a notification in progress (COHORT_EINVAL
 * for a bad descriptor, COHORT_ENOMEM). cohort_sync_start takes the calling
 * thread's deferred writes (as cohort_sync_wait would) and has the log
 * start making them durable at once; *ticket gets 0 when there is nothing
 * to wait for (no writes, already durable, or a policy that promises no
 * more), else the log will write efd (registered, or -1 for none) once the
 * ticket is durable or the log has failed. cohort_sync_check returns 1
 * once a ticket's writes are as durable as the policy promises, 0 while
 * not yet, COHORT_EIO if the log failed (then none of them may be
 * acknowledged). Tickets of one database complete in order: a ticket done
 * means every earlier one is. A database without a log never notifies.
 */
int cohort_sync_start(cohort_db *db, int efd, uint64_t *ticket /* out */);
int cohort_sync_check(cohort_db *db, uint64_t ticket);
int cohort_sync_notify(cohort_db *db, int efd, bool on);

/* How the log writes: "io_uring", "pwrite (...reason...)", or "memory". */
const char *cohort_db_io_path(const cohort_db *db);
/* How log groups reach the disk: "direct (...)" under COHORT_FSYNC_ALWAYS
 * where the file system takes O_DIRECT, "buffered (...)" otherwise, or
 * "memory". */
const char *cohort_db_log_mode(const cohort_db *db);
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

/* ------------------------------------------------------------------------
 * Personas: K centroids over a table's features, each row kept assigned to
 * its nearest one (squared Euclidean distance).
 *
 * A model's inputs are either one vec column, or up to
 * COHORT_PERSONA_MAX_INPUTS numeric columns (f32, f64, i32, i64, bool and the aggregates), then
 * standardised with the mean and standard deviation per column that the
 * model carries: z = (value - mean) / sd, and a null value counts as the
 * mean (z = 0). A row with a null vector, or with every numeric input null,
 * has no persona (COHORT_PERSONA_NONE). Aggregates are taken as stored at
 * the row's last write (a decay column is not decayed further by the clock).
 *
 * Every put, event or delete that changes a row's inputs reassigns the row:
 * at once, inside the write (COHORT_PERSONA_AT_ONCE), or by a background
 * worker that takes changed rows in micro-batches within max_delay_ms
 * (COHORT_PERSONA_BACKGROUND). Either way the new persona is the exact
 * argmin of the distances; a bound on the runner-up's distance lets most
 * small changes skip the scan of the K centroids.
 *
 * A model has versions: training or uploading makes a new one, built while
 * reads and writes go on and swapped in at once with every row reassigned;
 * a reader sees the old version or the new one, never a mix. Models are
 * logged and snapshotted: they and every row's persona survive a restart.
 * ------------------------------------------------------------------------ */
#define COHORT_MAX_MODELS 16       /* persona models per table */
#define COHORT_MAX_PERSONAS 65536  /* K */
#define COHORT_PERSONA_NONE UINT32_MAX
#define COHORT_PERSONA_M_MAX 32    /* nearest personas in one assign */
#define COHORT_PERSONA_EXPLAIN 8   /* features in an explanation */
#define COHORT_PERSONA_MAX_INPUTS 64 /* numeric input columns of a model */

typedef enum cohort_persona_mode {
	COHORT_PERSONA_AT_ONCE = 0,  /* reassigned inside the write */
	COHORT_PERSONA_BACKGROUND    /* by a worker, within max_delay_ms */
} cohort_persona_mode;

/* What a model is over and how it is kept current. */
typedef struct cohort_persona_def {
	const int *columns;          /* one vec column, or numeric columns */
	size_t ncolumns;
	cohort_persona_mode mode;
	uint32_t max_delay_ms;       /* BACKGROUND: 0 means 10 */
	uint32_t changes_kept;       /* changes kept for consumers; 0: 65536 */
} cohort_persona_def;

typedef struct cohort_train_opts {
	uint32_t k;                  /* personas, 1..COHORT_MAX_PERSONAS */
	uint32_t iters;              /* 0: 20 */
	uint64_t seed;
	uint64_t sample;             /* train on at most this many rows, drawn
	                                at random; 0: max(256 k, 100000) */
	uint32_t threads;            /* 0: all cores */
	bool minibatch;              /* mini-batch k-means (large samples) */
	bool background;             /* retrain: return at once; the new
	                                version is swapped in when ready
	                                (describe says training until then).
	                                A new model is always trained before
	                                the call returns. */
} cohort_train_opts;

/*
 * Train a model on the live table: k-means++ then Lloyd (or mini-batch)
 * over a sample of the rows that have inputs. A new model needs def; an
 * existing one is retrained (def NULL, or the same inputs) into a new
 * version. Persona names are cleared by a retrain (they name old
 * centroids). COHORT_EINVAL for fewer rows than k, COHORT_EBUSY while the
 * model is already training, COHORT_EOP for an input of the wrong type.
 */
int cohort_persona_train(cohort_table *t, const char *model,
			 const cohort_persona_def *def,
			 const cohort_train_opts *opts);

/*
 * Upload k centroids as a new version of a model (created with def when
 * new). dim is the number of inputs (numeric) or the vec column's
 * dimension. centroids: k x dim in the standardised space; mean and sd:
 * dim each (numeric models; NULL for vec models, or to use the table's
 * current mean and standard deviation).
 */
int cohort_persona_upload(cohort_table *t, const char *model,
			  const cohort_persona_def *def, uint32_t k,
			  uint32_t dim, const float *centroids,
			  const double *mean, const double *sd);

/* Name persona p of the model's current version ("" clears it). */
int cohort_persona_name(cohort_table *t, const char *model, uint32_t p,
			const char *name);

/* Drop a model: its assignments and change feed go with it. */
int cohort_persona_drop(cohort_table *t, const char *model);

typedef struct cohort_persona_info {
	uint64_t version;            /* 1, 2, ... per swap */
	uint32_t k, dim;             /* personas; inputs after expansion */
	size_t ncolumns;             /* input columns */
	int columns[COHORT_PERSONA_MAX_INPUTS]; /* their ids */
	cohort_persona_mode mode;
	uint32_t max_delay_ms;
	bool training;               /* a new version is being built */
	uint64_t pending;            /* changed rows not yet reassigned */
	uint64_t assigned;           /* rows with a persona */
} cohort_persona_info;

/* Model names of a table: *n gets their number, names[i] (up to max) their
 * names, owned by the table. */
int cohort_persona_models(const cohort_table *t, const char **names,
			  size_t max, size_t *n);
int cohort_persona_describe(const cohort_table *t, const char *model,
			    cohort_persona_info *out);

/*
 * Persona p of the current version: its name (NULL if unnamed; valid until
 * the next name change or version), its centroid in input terms (dim
 * values: for numeric inputs the standardisation undone, so in the
 * columns' units), its size (rows assigned) and the typical distance of its
 * members (their mean distance at the time of the swap). Any out may be
 * NULL.
 */
int cohort_persona_centroid(const cohort_table *t, const char *model,
			    uint32_t p, const char **name, double *centroid,
			    uint64_t *size, double *typical);

/* Sizes of all personas: sizes[0..k) (k from describe; n is the room in
 * sizes), from one version, whose number goes to *version: one consistent
 * cut (taken under the table's read locks), so they sum to the rows that
 * have a persona at that instant. */
int cohort_persona_sizes(const cohort_table *t, const char *model,
			 uint64_t *sizes, size_t n, uint64_t *version);

/* The persona a row is kept in, as maintained: what sizes and members
 * count. pending is true when a change of the row is waiting for the
 * background worker, lag_ms how long the oldest waiting change has waited. */
typedef struct cohort_persona_state {
	int status;                  /* cohort_row_status */
	uint32_t persona;            /* COHORT_PERSONA_NONE: no inputs */
	float distance;
	uint64_t version;
	bool pending;
	uint32_t lag_ms;
} cohort_persona_state;

int cohort_persona_get(const cohort_table *t, const char *model,
		       const void *key, size_t key_len,
		       cohort_persona_state *out);

typedef struct cohort_persona_feature {
	int column;                  /* input column */
	uint32_t element;            /* vec models: the vector element */
	double value;                /* the row's value (input units) */
	double centroid;             /* the persona's centroid there */
	double contribution;         /* its share of the margin over the
	                                runner-up persona (squared, in the
	                                standardised space); they sum to
	                                d(runner-up)^2 - d(persona)^2 over
	                                all inputs */
} cohort_persona_feature;

typedef struct cohort_persona_result {
	uint64_t version;
	uint32_t persona;            /* nearest; COHORT_PERSONA_NONE: no inputs */
	float distance;
	float anomaly;               /* distance / the persona's typical distance */
	size_t m;                    /* nearest personas, nearest first */
	uint32_t nearest[COHORT_PERSONA_M_MAX];
	float distances[COHORT_PERSONA_M_MAX];
	size_t nexplain;
	cohort_persona_feature explain[COHORT_PERSONA_EXPLAIN];
} cohort_persona_result;

/* Assign a row from its current values: the m (1..COHORT_PERSONA_M_MAX,
 * at most k) nearest personas, explanation and anomaly score. Returns the
 * row's status; the result is filled only when PRESENT. */
int cohort_persona_assign(const cohort_table *t, const char *model,
			  const void *key, size_t key_len, size_t m,
			  cohort_persona_result *out);

/* Assign an ad-hoc customer: values[i] for input column i of the model
 * (numeric values or null; for a vec model one COHORT_VEC value). */
int cohort_persona_assign_values(const cohort_table *t, const char *model,
				 const cohort_value *values, size_t n,
				 size_t m, cohort_persona_result *out);

/*
 * The keys of persona p's members that match filter root (f may be NULL:
 * every member), at time `at`, under the table's read locks (one
 * consistent cut; cb must not write to the table). *count (may be NULL)
 * gets the number of matching members. Returns 0 or cb's nonzero value.
 */
int cohort_persona_members(const cohort_table *t, const char *model,
			   uint32_t p, const cohort_filter *f, int root,
			   cohort_time at, cohort_key_cb cb, void *ctx,
			   uint64_t *count);

/* A change of a row's persona. A retrain publishes one change with an
 * empty key and old == new == COHORT_PERSONA_NONE: every row was
 * reassigned to the new version (read sizes and members again). */
typedef struct cohort_persona_change {
	uint64_t seq;                /* 1, 2, ... in publication order */
	cohort_time time;            /* the write's event time */
	uint64_t version;
	uint32_t old_persona, new_persona;
	uint32_t key_len;
	char key[COHORT_MAX_KEY];
} cohort_persona_change;

/*
 * Take the changes after *cursor (0 at first) in order, up to max of them;
 * returns how many and advances *cursor. The model keeps its last
 * changes_kept changes; *lost (may be NULL) gets how many the consumer
 * missed since *cursor because they had been dropped. The feed starts
 * empty when the database is opened.
 */
int cohort_persona_changes(const cohort_table *t, const char *model,
			   uint64_t *cursor, cohort_persona_change *out,
			   size_t max, uint64_t *lost);

/* ------------------------------------------------------------------------
 * Similarity indexes: nearest neighbours on a vec column (HNSW over 8-bit
 * codes with an exact re-rank), kept current on every write.
 *
 * Writes never wait for the graph: a put, event or delete that changes the
 * column marks the row pending; a background worker inserts pending rows
 * into the graph (a changed row's old node is deleted and its neighbours
 * repaired). Every query also scans the pending rows exactly, so a query
 * sees every write acknowledged before it began. A filter whose bitmap is
 * small (at most 2% of the rows, or at most 4096 rows) turns the query into
 * an exact scan of the matching rows, so a query returns min(k, matching
 * rows) results. Distances: COHORT_METRIC_L2 squared Euclidean,
 * COHORT_METRIC_IP minus the inner product, COHORT_METRIC_COSINE
 * 1 - cosine; smaller is nearer for all three. Indexes are logged, and
 * snapshots carry their graphs: a restart does not rebuild them.
 * ------------------------------------------------------------------------ */
#define COHORT_MAX_INDEXES 8       /* per table */
#define COHORT_MAX_K 1000

typedef enum cohort_metric {
	COHORT_METRIC_L2 = 0,
	COHORT_METRIC_IP,
	COHORT_METRIC_COSINE
} cohort_metric;

typedef struct cohort_index_opts {
	cohort_metric metric;
	uint32_t M;                  /* graph links per node; 0: 16 */
	uint32_t ef_construction;    /* 0: 200 */
	uint32_t ef_search;          /* queries' default ef; 0: 64 */
	float lo, hi;                /* the range of the 8-bit codes; lo == hi:
	                                from the rows at creation (with a 10%
	                                margin), [-1, 1] on an empty table and
	                                for cosine. Values outside are clamped
	                                in the graph (the re-rank is exact). */
} cohort_index_opts;

/* Create an index on a vec column; the rows already there are inserted
 * before it returns. */
int cohort_index_create(cohort_table *t, const char *name, int column,
			const cohort_index_opts *opts);
int cohort_index_drop(cohort_table *t, const char *name);

typedef struct cohort_index_info {
	int column;
	cohort_metric metric;
	uint32_t M, ef_construction, ef_search;
	float lo, hi;
	uint64_t nodes;              /* rows in the graph */
	uint64_t pending;            /* rows waiting for the graph */
	uint64_t tombstones;         /* deleted nodes not yet reclaimed */
	uint64_t bytes;              /* memory of the graph and its maps */
} cohort_index_info;

int cohort_index_describe(const cohort_table *t, const char *name,
			  cohort_index_info *out);
/* Index names of a table: *n gets their number, names[i] (up to max) their
 * names, owned by the table. */
int cohort_index_list(const cohort_table *t, const char **names, size_t max,
		      size_t *n);
/* Wait until no row is pending (tests, benchmarks, bulk loads). */
int cohort_index_wait(const cohort_table *t, const char *name);

typedef struct cohort_knn_query {
	const void *key;             /* by key (excluded from the results) ... */
	size_t key_len;
	const float *vec;            /* ... or by vector (key NULL) */
	uint32_t dim;
	size_t k;                    /* 1..COHORT_MAX_K */
	size_t ef;                   /* 0: the index's ef_search; raised to k */
	const cohort_filter *filter; /* NULL: every row */
	int root;
	cohort_time at;              /* filter and TTL time */
} cohort_knn_query;

typedef struct cohort_neighbor {
	float distance;
	uint32_t key_len;
	char key[COHORT_MAX_KEY];
} cohort_neighbor;

/* The k nearest rows: out (k entries) nearest first; *n gets how many.
 * COHORT_ENOTFOUND when the query key is absent or has no vector. */
int cohort_knn(const cohort_table *t, const char *index,
	       const cohort_knn_query *q, cohort_neighbor *out, size_t *n);

/* Filter leaf: the row is in persona p of a persona model's current
 * version (rows with no persona are in none). */
int cohort_filter_persona(cohort_filter *f, const char *model, uint32_t p);

#ifdef __cplusplus
}
#endif

#endif /* COHORT_H */
