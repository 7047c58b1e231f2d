/*
 * cohort_client.h -- libcohort-client, the C client of cohortd.
 *
 * This header is the single source of truth for the client's API: anything
 * not declared here is internal. It speaks docs/protocol.md (version 1)
 * through net/proto.h, whose types it shares (cohort.h's values, fields,
 * updates, neighbours and persona results are reused as they are).
 *
 * Model
 *   A cohort_client is one TCP connection to cohortd. cohort_client_connect
 *   opens it and says HELLO; cohort_client_auth sends a token. Every other
 *   call is one request and its response: the blocking calls below send,
 *   wait and decode. Batch calls (put/event/delete batches, get_many) carry
 *   many rows or keys in one round trip; cohort_client_send and
 *   cohort_client_recv pipeline any number of requests (responses come back
 *   in request order).
 *
 * Errors
 *   Every function that can fail returns an int: >= 0 on success, a
 *   negative COHORT_E* code on failure. A status the server answers with
 *   comes through unchanged (COHORT_ENOTABLE, COHORT_EDENIED, ...) and
 *   cohort_client_errmsg() gives the server's message for it. Failures of
 *   the client itself use the same codes with a message of their own:
 *   COHORT_ECLOSED when the connection is lost, times out, or the server
 *   closed it (every later call on the client returns COHORT_ECLOSED);
 *   COHORT_EPROTO for a response that does not parse (the client closes
 *   the connection); COHORT_EKEY / EBADNAME / EINVAL / ELIMIT for arguments
 *   that cannot be encoded; COHORT_EBUSY for a blocking call made while
 *   pipelined requests are still unanswered.
 *
 * Threads
 *   A client is used by one thread at a time. Different clients are
 *   independent: open one per thread.
 *
 * Ownership
 *   A cohort_client owns its socket and buffers; cohort_client_close frees
 *   them. Results that point into the client (cat strings and vectors of
 *   get, batches of get_many, key lists, stats, the table list, decoded
 *   responses) are valid until the next call on the same client, unless
 *   said otherwise. Schema descriptions (cohort_client_describe) live in the
 *   client's schema cache and stay valid until that table is described
 *   again (cohort_client_describe, or a cohort_client_column miss) or the
 *   client is closed. Inputs (keys, values, filters) are read during the
 *   call only.
 *
 * Memory
 *   One write buffer, one read buffer and one arena per client, reused:
 *   once they have grown to a workload's size, calls allocate nothing.
 */
#ifndef COHORT_CLIENT_H
#define COHORT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cohort.h"
#include "proto.h"

#ifdef __cplusplus
extern "C" {
#endif

#define COHORT_CLIENT_PORT 7411          /* cohortd's default port */

typedef struct cohort_client cohort_client;

/* ------------------------------------------------------------------------
 * Connection
 * ------------------------------------------------------------------------ */
typedef struct cohort_client_opts {
	uint32_t connect_timeout_ms;     /* 0: 5000 */
	uint32_t timeout_ms;             /* most a call waits for the server;
	                                    0: forever. A call that times out
	                                    closes the connection (its answer
	                                    would be out of step). */
	const char *name;                /* client name said in HELLO;
	                                    NULL: "libcohort_client" */
} cohort_client_opts;

/* Fill *opts with the defaults. */
void cohort_client_opts_init(cohort_client_opts *opts);

/* What the server said in HELLO (and the role as of the last AUTH). */
typedef struct cohort_client_info {
	uint16_t version;                /* protocol version in use */
	uint32_t max_frame;              /* bytes of body per frame */
	uint32_t max_batch;              /* rows or keys per request */
	uint32_t max_k;
	bool auth_required;
	int role;                        /* proto_role of this connection */
	char server_name[256];
} cohort_client_info;

/*
 * Connect to cohortd at host:port (host: a name or address; port 0 means
 * COHORT_CLIENT_PORT), set TCP_NODELAY, and say HELLO. opts may be NULL
 * (defaults). Returns 0 and *out, or:
 *   COHORT_ECLOSED  no connection (refused, unreachable, timed out, or the
 *                   server closed it during HELLO); the reason goes to
 *                   *out's errmsg when *out is set, else see below
 *   COHORT_EINVAL   bad host; COHORT_ENOMEM; COHORT_EPROTO bad HELLO answer
 * On failure *out is still set when the client could be allocated, so the
 * caller can read cohort_client_errmsg(*out); it must then be closed. When
 * *out is NULL only the code is known (out of memory).
 */
int cohort_client_connect(const char *host, uint16_t port,
			  const cohort_client_opts *opts, cohort_client **out);

/* Close the connection and free the client. NULL is a no-op. */
void cohort_client_close(cohort_client *c);

/* The server's HELLO (and current role) into *out. */
void cohort_client_info_get(const cohort_client *c, cohort_client_info *out);

/*
 * Authenticate with a token (token_len bytes, 1..255). On success the
 * connection has the token's role, also in *role (may be NULL).
 * COHORT_EAUTH for a wrong token (the server closes the connection after
 * three of them).
 */
int cohort_client_auth(cohort_client *c, const void *token, size_t token_len,
		       int *role);

/*
 * Authenticate with the token in a file, so that it never appears on a
 * command line: the first line that is neither blank nor a '#' comment
 * holds either the token alone or "<role> <token>" (a line of cohortd's
 * own token file). The file must not be readable by group or others
 * (COHORT_EINVAL, as cohortd refuses such a file too); COHORT_EIO when it
 * cannot be read.
 */
int cohort_client_auth_file(cohort_client *c, const char *path, int *role);

/* The message of the last failed call on c: the server's (naming what was
 * wrong) or the client's own. "" when nothing failed. Valid until the next
 * call on c. */
const char *cohort_client_errmsg(const cohort_client *c);

/* Whether the connection is still usable (false after COHORT_ECLOSED or
 * COHORT_EPROTO). */
bool cohort_client_connected(const cohort_client *c);

/* Round trip. */
int cohort_client_ping(cohort_client *c);

/* ------------------------------------------------------------------------
 * Schema. The client caches each table's description; callers name
 * columns by id, found with cohort_client_column.
 * ------------------------------------------------------------------------ */
typedef struct cohort_client_column_info {
	const char *name;                /* NUL-terminated */
	int id;
	cohort_type type;
	uint32_t dim;
	int64_t half_life_ms;
	uint32_t ncat;
} cohort_client_column_info;

typedef struct cohort_client_model_info {
	const char *name;
	uint64_t version;
	uint32_t k, dim;
	size_t ncolumns;
	const int *columns;              /* ncolumns input column ids */
	cohort_persona_mode mode;
	bool training;
	uint64_t pending, assigned;
} cohort_client_model_info;

typedef struct cohort_client_index_info {
	const char *name;
	int column;
	cohort_metric metric;
	uint32_t M, ef_construction, ef_search;
	uint64_t nodes, pending, bytes;
} cohort_client_index_info;

typedef struct cohort_client_table {
	const char *name;
	int64_t ttl_ms;
	uint64_t nrows, mem_bytes;
	size_t ncols;
	const cohort_client_column_info *cols;   /* by id: cols[i].id == i */
	size_t nmodels;
	const cohort_client_model_info *models;
	size_t nindexes;
	const cohort_client_index_info *indexes;
} cohort_client_table;

/* The names of the tables: *names gets *n NUL-terminated names (owned by
 * the client, valid until the next call on c). */
int cohort_client_tables(cohort_client *c, const char *const **names,
			 size_t *n);

/* Describe a table (always asks the server) and cache it. *out is owned
 * by the cache: valid until this table is described again or the client
 * closed. COHORT_ENOTABLE when there is none. */
int cohort_client_describe(cohort_client *c, const char *table,
			   const cohort_client_table **out);

/* The id (>= 0) of a column by name. Uses the cache, describing the table
 * when it is not cached or does not know the name yet (a column another
 * client added). COHORT_ENOTABLE, COHORT_ENOCOLUMN. */
int cohort_client_column(cohort_client *c, const char *table,
			 const char *name);

/* The cached type of column id of table (describing it when not cached):
 * fills *out (name valid as cohort_client_describe's). */
int cohort_client_column_info_get(cohort_client *c, const char *table,
				  int column, cohort_client_column_info *out);

/* Create a table with ncols columns (may be 0) and a TTL (0: none). Admin.
 * The embedded API's errors: COHORT_EBADNAME, EEXIST, EINVAL, ELIMIT. */
int cohort_client_table_create(cohort_client *c, const char *table,
			       const cohort_column_def *cols, size_t ncols,
			       int64_t ttl_ms);

/* Add a column; *id (may be NULL) gets its id. Admin. */
int cohort_client_column_add(cohort_client *c, const char *table,
			     const cohort_column_def *col, int *id);

/* Create or drop a similarity index (opts NULL: L2 and the defaults). */
int cohort_client_index_create(cohort_client *c, const char *table,
			       const char *index, int column,
			       const cohort_index_opts *opts);
int cohort_client_index_drop(cohort_client *c, const char *table,
			     const char *index);

/* ------------------------------------------------------------------------
 * Writes. Single forms return the row's status (0, or the embedded API's
 * error for it: COHORT_ETYPE, ENOCOLUMN, ...). Batch forms return 0 when the
 * request was applied row by row, with each row's status in
 * row_status[0..n) (may be NULL); cohort_client_errmsg() then names the
 * first failing row ("row 3: ..."), and cohort_client_batch_nfailed() says
 * how many failed. A batch over the server's max_batch is COHORT_ELIMIT.
 * time COHORT_NOW: the server's clock.
 * ------------------------------------------------------------------------ */
int cohort_client_put(cohort_client *c, const char *table, const void *key,
		      size_t key_len, cohort_time time,
		      const cohort_field *fields, size_t nfields);

int cohort_client_event(cohort_client *c, const char *table, const void *key,
			size_t key_len, cohort_time time,
			const cohort_update *updates, size_t nupdates);

/* COHORT_ENOTFOUND when the key was absent. */
int cohort_client_delete(cohort_client *c, const char *table, const void *key,
			 size_t key_len);

typedef struct cohort_client_row {
	const void *key;
	size_t key_len;
	cohort_time time;
	const cohort_field *fields;      /* put */
	const cohort_update *updates;    /* event */
	size_t n;                        /* fields or updates */
} cohort_client_row;

int cohort_client_put_batch(cohort_client *c, const char *table,
			    const cohort_client_row *rows, size_t nrows,
			    int *row_status);
int cohort_client_event_batch(cohort_client *c, const char *table,
			      const cohort_client_row *rows, size_t nrows,
			      int *row_status);
int cohort_client_delete_batch(cohort_client *c, const char *table,
			       const cohort_key *keys, size_t nkeys,
			       int *row_status);

/* Rows of the last batch call whose status was not 0. */
size_t cohort_client_batch_nfailed(const cohort_client *c);

/* ------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------ */

/*
 * Read columns cols[0..ncols) of one key (ncols 0: every column, in id
 * order) as of time `at`. Returns the row's status (COHORT_ROW_MISSING,
 * PRESENT, EXPIRED) or an error. out[0..*nout) (max_out entries of room;
 * COHORT_ERANGE when too few) get the values, all null unless PRESENT;
 * aggregates read as COHORT_F64. Cat strings (NUL-terminated) and vectors
 * point into the client: valid until the next call on c. nout and row_time
 * may be NULL.
 */
int cohort_client_get(cohort_client *c, const char *table, const void *key,
		      size_t key_len, const int *cols, size_t ncols,
		      cohort_time at, cohort_value *out, size_t max_out,
		      size_t *nout, cohort_time *row_time);

/* One column of a get_many result: nkeys values (as cohort_block). */
typedef struct cohort_client_block {
	int column;
	cohort_type type;                /* F32, F64, I32, I64, BOOL (uint8_t),
	                                    CAT (uint32_t index into the batch's
	                                    strings), VEC; aggregates are F64 */
	uint32_t dim;                    /* VEC: floats per value; else 1 */
	size_t width;                    /* bytes per value */
	const void *values;              /* nkeys * width bytes, aligned */
	const uint8_t *valid;            /* nkeys: 1 when not null */
	const char *const *strs;         /* CAT: nkeys NUL-terminated strings
	                                    (NULL where null); else NULL */
} cohort_client_block;

/* A columnar get_many result, owned by the client: valid until the next
 * call on c. */
typedef struct cohort_client_batch {
	size_t nkeys, ncols;
	const uint8_t *status;           /* nkeys cohort_row_status */
	const cohort_time *time;         /* nkeys (0 unless PRESENT) */
	const cohort_client_block *cols;
	size_t nstrings;                 /* the string table of the block */
	const char *const *strings;      /* NUL-terminated */
} cohort_client_batch;

/* Read nkeys keys (1..max_batch) in one request (ncols 0: every column). */
int cohort_client_get_many(cohort_client *c, const char *table,
			   const cohort_key *keys, size_t nkeys,
			   const int *cols, size_t ncols, cohort_time at,
			   const cohort_client_batch **out);

/* ------------------------------------------------------------------------
 * Filters, built client-side node by node as with cohort_filter_*: each
 * builder returns the new node's id (>= 0) or an error, and a builder
 * given an error as an operand returns that error, so nested calls need
 * one check at the end. The last node built is the root. Columns are ids
 * (cohort_client_column). At most PROTO_MAX_FILTER_NODES nodes
 * (COHORT_ELIMIT beyond). A filter owns copies of its cat strings.
 * ------------------------------------------------------------------------ */
typedef struct cohort_client_filter cohort_client_filter;

int cohort_client_filter_new(cohort_client_filter **out);
void cohort_client_filter_free(cohort_client_filter *f);
/* Remove every node (the filter can be reused without allocating). */
void cohort_client_filter_reset(cohort_client_filter *f);

int cohort_client_filter_cmp(cohort_client_filter *f, int column,
			     cohort_cmp cmp, cohort_value value);
int cohort_client_filter_in(cohort_client_filter *f, int column,
			    const cohort_value *set, size_t n);
int cohort_client_filter_is_null(cohort_client_filter *f, int column);
int cohort_client_filter_not_null(cohort_client_filter *f, int column);
int cohort_client_filter_and(cohort_client_filter *f, int a, int b);
int cohort_client_filter_or(cohort_client_filter *f, int a, int b);
int cohort_client_filter_not(cohort_client_filter *f, int a);
int cohort_client_filter_persona(cohort_client_filter *f, const char *model,
				 uint32_t persona);

/* The filter in proto form (for cohort_client_send), valid until the
 * filter's next change. An empty filter has nnodes 0 (every row). */
const proto_filter *cohort_client_filter_proto(const cohort_client_filter *f);

/* Rows matching f (NULL: every row) at time at. */
int cohort_client_filter_count(cohort_client *c, const char *table,
			       const cohort_client_filter *f, cohort_time at,
			       uint64_t *count);

/* The same, and the keys of at most limit of them: *keys gets *n keys
 * pointing into the client (valid until the next call on c). */
int cohort_client_filter_list(cohort_client *c, const char *table,
			      const cohort_client_filter *f, cohort_time at,
			      uint32_t limit, uint64_t *count,
			      const cohort_key **keys, size_t *n);

/* ------------------------------------------------------------------------
 * Nearest neighbours
 * ------------------------------------------------------------------------ */
typedef struct cohort_client_knn_query {
	const void *key;                 /* by key (excluded from the results) */
	size_t key_len;
	const float *vec;                /* ... or by vector (key NULL) */
	uint32_t dim;
	uint32_t k;                      /* 1..max_k */
	uint32_t ef;                     /* 0: the index's ef_search */
	const cohort_client_filter *filter;  /* NULL: every row */
	cohort_time at;                  /* filter and TTL time */
} cohort_client_knn_query;

/* The k nearest rows into out[0..k) (caller's), nearest first; *n gets
 * how many. COHORT_ENOTFOUND when the query key is absent or has no
 * vector. */
int cohort_client_knn(cohort_client *c, const char *table, const char *index,
		      const cohort_client_knn_query *q, cohort_neighbor *out,
		      size_t *n);

/* ------------------------------------------------------------------------
 * Personas
 * ------------------------------------------------------------------------ */

/* Assign a row (by key) to its m nearest personas with an explanation.
 * Returns the row's status; *out is filled only when PRESENT. */
int cohort_client_persona_assign(cohort_client *c, const char *table,
				 const char *model, const void *key,
				 size_t key_len, size_t m,
				 cohort_persona_result *out);

/* Assign an ad-hoc customer: values[i] for input i of the model. */
int cohort_client_persona_assign_values(cohort_client *c, const char *table,
					const char *model,
					const cohort_value *values, size_t n,
					size_t m, cohort_persona_result *out);

/* Members of persona p matching f (NULL: all): *count of them, and at most
 * limit keys in *keys (pointing into the client, until the next call). */
int cohort_client_persona_members(cohort_client *c, const char *table,
				  const char *model, uint32_t persona,
				  const cohort_client_filter *f,
				  cohort_time at, uint32_t limit,
				  uint64_t *count, const cohort_key **keys,
				  size_t *n);

/* Sizes of a model's personas: owned by the client until its next call. */
typedef struct cohort_client_sizes {
	uint64_t version;
	uint32_t k;
	const uint64_t *sizes;           /* k */
	const char *const *names;        /* k, "" when unnamed */
} cohort_client_sizes;

int cohort_client_persona_sizes(cohort_client *c, const char *table,
				const char *model,
				const cohort_client_sizes **out);

/*
 * A model and its personas, all from one version (PERSONA_DESCRIBE). The
 * struct and every array it points to are owned by the client and valid
 * until its next call on c (copy what must outlive it); the caller frees
 * nothing. centroids is k x dim, row-major, in input units: for a numeric
 * model one value per input column (the standardisation undone), for a
 * vec model the vector.
 */
typedef struct cohort_client_model {
	uint64_t version;
	uint32_t k, dim;
	cohort_persona_mode mode;
	bool training;                   /* a new version is being built */
	uint64_t pending;                /* changed rows not yet reassigned */
	uint64_t assigned;               /* rows with a persona */
	size_t ncolumns;
	const int *columns;              /* ncolumns: the input column ids */
	const uint64_t *sizes;           /* k: rows per persona */
	const double *typical;           /* k: members' mean distance */
	const char *const *names;        /* k, "" when unnamed */
	const double *centroids;         /* k x dim */
} cohort_client_model;

/* Describe a model with every persona's size, name and centroid. ELIMIT
 * when k x dim x 8 bytes are over the server's frame limit. */
int cohort_client_persona_describe(cohort_client *c, const char *table,
				   const char *model,
				   const cohort_client_model **out);

/* Train a model (def NULL or with no columns: retrain the existing one);
 * *version (may be NULL) gets the new version, 0 when it trains in the
 * background. opts as cohort_persona_train's (threads is the server's). */
int cohort_client_persona_train(cohort_client *c, const char *table,
				const char *model,
				const cohort_persona_def *def,
				const cohort_train_opts *opts,
				uint64_t *version);

/* Upload k x dim centroids (standardised space) with, for numeric models,
 * mean and sd (dim each; both NULL: the table's). */
int cohort_client_persona_upload(cohort_client *c, const char *table,
				 const char *model,
				 const cohort_persona_def *def, uint32_t k,
				 uint32_t dim, const float *centroids,
				 const double *mean, const double *sd,
				 uint64_t *version);

/* ------------------------------------------------------------------------
 * Subscriptions to a model's persona changes. The server pushes CHANGES
 * frames between responses; the client keeps them in a queue until read
 * with cohort_client_changes.
 * ------------------------------------------------------------------------ */
#define COHORT_CLIENT_FROM_OLDEST 0
#define COHORT_CLIENT_FROM_NOW UINT64_MAX

typedef struct cohort_client_change {
	uint32_t sub;                    /* the subscription's id */
	uint64_t lost;                   /* changes the server dropped just
	                                    before this one (this reader was
	                                    too slow) */
	cohort_persona_change change;    /* empty key: a retrain */
} cohort_client_change;

/* Subscribe to model's changes after cursor (COHORT_CLIENT_FROM_OLDEST,
 * COHORT_CLIENT_FROM_NOW, or a change's seq). *sub (may be NULL) gets the
 * id changes carry, *start (may be NULL) where it starts. At most 16 per
 * connection (COHORT_ELIMIT). */
int cohort_client_subscribe(cohort_client *c, const char *table,
			    const char *model, uint64_t cursor,
			    uint32_t *sub, uint64_t *start);
int cohort_client_unsubscribe(cohort_client *c, const char *table,
			      const char *model);

/*
 * Take up to max queued changes into out[0..*n). When none is queued, wait
 * up to timeout_ms (0: do not wait; < 0: forever) for the server to push
 * some. Pipelined responses that arrive meanwhile stay queued for
 * cohort_client_recv. Returns 0 (also when *n is 0 after the wait).
 */
int cohort_client_changes(cohort_client *c, cohort_client_change *out,
			  size_t max, int timeout_ms, size_t *n);

/* ------------------------------------------------------------------------
 * Administration
 * ------------------------------------------------------------------------ */

/* A durable snapshot of the server's database. Admin. */
int cohort_client_snapshot(cohort_client *c);

typedef struct cohort_client_stat {
	const char *name;                /* NUL-terminated */
	uint64_t value;
} cohort_client_stat;

/* The server's counters: *stats gets *n of them and *io_path (may be
 * NULL) how the server's log writes; all owned by the client until its
 * next call. */
int cohort_client_stats(cohort_client *c, const cohort_client_stat **stats,
			size_t *n, const char **io_path);

/* ------------------------------------------------------------------------
 * Pipelining: send many requests, then receive their responses in order.
 * ------------------------------------------------------------------------ */

/*
 * Queue request req (req->hdr.opcode and the opcode's fields, as
 * proto_req_encode takes them; the client sets hdr.id and flags) and
 * return its id in *id (may be NULL). Requests are buffered and written
 * when the buffer passes 64 KiB, on cohort_client_flush, and by
 * cohort_client_recv; while writing, the client also reads what the
 * server answers so that neither side can block the other. COHORT_ELIMIT
 * when the request is over the server's frame limit.
 */
int cohort_client_send(cohort_client *c, proto_req *req, uint32_t *id);

/* Write every queued request. */
int cohort_client_flush(cohort_client *c);

/* Requests sent and not yet received. */
size_t cohort_client_inflight(const cohort_client *c);

/* A response. status < 0: msg (msg_len bytes, not NUL-terminated) says
 * why. status == 0: payload is the opcode's payload (docs/protocol.md
 * §4), which the cohort_client_resp_* decoders below read. Everything
 * points into the client: valid until the next call on c. */
typedef struct cohort_client_resp {
	uint8_t opcode;
	uint32_t id;
	int status;
	const char *msg;
	size_t msg_len;
	const uint8_t *payload;
	size_t payload_len;
} cohort_client_resp;

/*
 * Flush, then wait for the next response (the oldest request in flight)
 * into *out. Returns 0 when one was received, whatever its status (in
 * out->status; errmsg is set too); COHORT_EINVAL when nothing is in
 * flight; COHORT_ECLOSED / EPROTO when the connection failed.
 */
int cohort_client_recv(cohort_client *c, cohort_client_resp *out);

/* Decoders of a received response's payload. Each returns what the
 * matching blocking call returns: resp->status when negative, else the
 * decoded result (COHORT_EPROTO when the payload does not parse; the
 * connection is then closed). Results point into the client as the
 * blocking calls' do. */
int cohort_client_resp_get(cohort_client *c, const cohort_client_resp *resp,
			   cohort_value *out, size_t max_out, size_t *nout,
			   cohort_time *row_time);
int cohort_client_resp_get_many(cohort_client *c,
				const cohort_client_resp *resp,
				const cohort_client_batch **out);
/* A batch write's result (PUT, EVENT, DELETE): row statuses into
 * row_status[0..n) (n must be the request's row count). Returns 0. */
int cohort_client_resp_batch(cohort_client *c, const cohort_client_resp *resp,
			     int *row_status, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* COHORT_CLIENT_H */
