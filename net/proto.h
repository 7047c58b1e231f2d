/*
 * proto.h -- cohort's wire protocol: frames, requests and responses as pure
 * functions over byte buffers. No I/O, no allocation outside the arena the
 * caller passes. docs/protocol.md is the specification; this header is its
 * C form, shared by cohortd (decodes requests, encodes responses) and the
 * clients (encode requests, decode responses).
 *
 * Contract of every decoder (picohttpparser's): it reads only
 * [buf, buf + len), returns the bytes consumed (> 0), PROTO_MORE (0) when
 * the frame is not complete yet, or a negative COHORT_E* status when the
 * bytes can never become a valid frame (COHORT_EPROTO malformed,
 * COHORT_ELIMIT over a limit). Decoded structures point into the frame's
 * bytes (keys, cat strings) and into the arena (arrays, vectors copied to
 * float alignment, names NUL-terminated): valid while both live.
 *
 * Every integer is little-endian. Strings: str8 = u8 length + bytes (names,
 * keys), str16 = u16 length + bytes (cat strings, messages).
 */
#ifndef COHORT_PROTO_H
#define COHORT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "cohort.h"

#define PROTO_MAGIC 0x4843u        /* bytes 'C' 'H' */
#define PROTO_VERSION 1
#define PROTO_HDR_LEN 16
#define PROTO_MORE 0               /* decoder: need more bytes */

/* Frame flags. */
#define PROTO_F_RESPONSE 0x0001u   /* server to client */
#define PROTO_F_PUSH 0x0002u       /* unsolicited (a subscription's changes) */

/* Defaults of the limits a server enforces and announces in HELLO. */
#define PROTO_MAX_FRAME_DEFAULT (16u << 20)   /* bytes of body */
#define PROTO_MAX_BATCH_DEFAULT 10000u        /* keys/rows per request */
#define PROTO_MAX_FILTER_NODES 256u

/* Opcodes. A response carries its request's opcode and id. */
#define PROTO_OPS(X)                                                          \
	X(HELLO, 0x01, "hello", 0)                                            \
	X(AUTH, 0x02, "auth", 0)                                              \
	X(PING, 0x03, "ping", 1)                                              \
	X(TABLE_CREATE, 0x10, "table_create", 3)                              \
	X(COLUMN_ADD, 0x11, "column_add", 3)                                  \
	X(DESCRIBE, 0x12, "describe", 1)                                      \
	X(INDEX_CREATE, 0x13, "index_create", 3)                              \
	X(INDEX_DROP, 0x14, "index_drop", 3)                                  \
	X(PUT, 0x20, "put", 2)                                                \
	X(EVENT, 0x21, "event", 2)                                            \
	X(DELETE, 0x22, "delete", 2)                                          \
	X(GET, 0x30, "get", 1)                                                \
	X(GET_MANY, 0x31, "get_many", 1)                                      \
	X(FILTER_COUNT, 0x32, "filter_count", 1)                              \
	X(FILTER_LIST, 0x33, "filter_list", 1)                                \
	X(KNN, 0x40, "knn", 1)                                                \
	X(PERSONA_ASSIGN, 0x50, "persona_assign", 1)                          \
	X(PERSONA_MEMBERS, 0x51, "persona_members", 1)                        \
	X(PERSONA_SIZES, 0x52, "persona_sizes", 1)                            \
	X(PERSONA_TRAIN, 0x53, "persona_train", 3)                            \
	X(PERSONA_UPLOAD, 0x54, "persona_upload", 3)                          \
	X(SUBSCRIBE, 0x55, "subscribe", 1)                                    \
	X(UNSUBSCRIBE, 0x56, "unsubscribe", 1)                                \
	X(CHANGES, 0x57, "changes", 1)                                        \
	X(PERSONA_DESCRIBE, 0x58, "persona_describe", 1)                      \
	X(SNAPSHOT, 0x60, "snapshot", 3)                                      \
	X(STATS, 0x61, "stats", 1)

enum proto_op {
#define PROTO_X_ENUM(name, code, str, role) PROTO_OP_##name = (code),
	PROTO_OPS(PROTO_X_ENUM)
#undef PROTO_X_ENUM
};

/* Roles, each allowing what the ones below it allow. */
enum proto_role {
	PROTO_ROLE_NONE = 0,       /* not authenticated: HELLO and AUTH only */
	PROTO_ROLE_READ = 1,
	PROTO_ROLE_WRITE = 2,
	PROTO_ROLE_ADMIN = 3
};

/* Name of an opcode ("get"), NULL for an unknown one. */
const char *proto_op_name(int op);
/* The role an opcode needs; -1 for an unknown opcode. */
int proto_op_role(int op);
/* Name of a role ("read"), "none" for 0, NULL for an unknown one. */
const char *proto_role_name(int role);

/* ------------------------------------------------------------------------
 * Frames
 * ------------------------------------------------------------------------ */
typedef struct proto_hdr {
	uint8_t opcode;
	uint16_t flags;
	uint32_t id;               /* request id, echoed by the response */
	uint32_t body_len;
} proto_hdr;

/* Encode a header into buf[0..PROTO_HDR_LEN) (magic and version filled). */
void proto_hdr_encode(uint8_t *buf, const proto_hdr *h);

/* Decode a header: PROTO_HDR_LEN, PROTO_MORE, COHORT_EPROTO (magic,
 * version, reserved bytes, flag bits other than RESPONSE and PUSH),
 * COHORT_ELIMIT (body_len > max_body; max_body 0: no limit). *out is
 * filled whenever the magic is right, errors included (so a reply can
 * carry the id); zeroed when it is not. */
int proto_hdr_decode(const uint8_t *buf, size_t len, uint32_t max_body,
		     proto_hdr *out);

/* ------------------------------------------------------------------------
 * Writing: a growable buffer with a sticky error. All proto_w_* append;
 * after the last one, w->err says whether everything fit (COHORT_ENOMEM, or
 * COHORT_ELIMIT past w->limit bytes), or what the protocol cannot carry:
 * COHORT_EINVAL (a str8 over 255 bytes, a str16 over 65535, a vector of
 * dim 0 or over COHORT_MAX_DIM, an unknown value type, a count or column
 * id beyond its field), COHORT_EBADNAME (a table, index or model name
 * that is not 1..64 of [A-Za-z0-9_]), COHORT_EKEY (a key not 1..255
 * bytes). Once set, nothing more is written. A zeroed proto_wbuf is an
 * empty one.
 * ------------------------------------------------------------------------ */
typedef struct proto_wbuf {
	uint8_t *buf;              /* malloc'd, owned; free with proto_wbuf_free */
	size_t len, cap;
	size_t limit;              /* 0: no limit */
	int err;
} proto_wbuf;

void proto_wbuf_free(proto_wbuf *w);
void proto_w_bytes(proto_wbuf *w, const void *p, size_t n);
void proto_w_u8(proto_wbuf *w, uint8_t v);
void proto_w_u16(proto_wbuf *w, uint16_t v);
void proto_w_u32(proto_wbuf *w, uint32_t v);
void proto_w_u64(proto_wbuf *w, uint64_t v);
void proto_w_i32(proto_wbuf *w, int32_t v);
void proto_w_i64(proto_wbuf *w, int64_t v);
void proto_w_f32(proto_wbuf *w, float v);
void proto_w_f64(proto_wbuf *w, double v);
void proto_w_str8(proto_wbuf *w, const void *p, size_t n);   /* n <= 255 */
void proto_w_str16(proto_wbuf *w, const void *p, size_t n);  /* n <= 65535 */
/* A tagged value (u8 cohort_type, then its payload; see docs/protocol.md). */
void proto_w_value(proto_wbuf *w, const cohort_value *v);

/* Start a frame (header space reserved), and finish it (body_len set).
 * Returns the frame's start offset for proto_frame_end. */
size_t proto_frame_begin(proto_wbuf *w, uint8_t opcode, uint16_t flags,
			 uint32_t id);
void proto_frame_end(proto_wbuf *w, size_t start);

/* ------------------------------------------------------------------------
 * Reading: a cursor with a sticky error (COHORT_EPROTO once anything would
 * read past the end; every later read returns zeros).
 * ------------------------------------------------------------------------ */
typedef struct proto_rbuf {
	const uint8_t *p, *end;
	int err;
	const char *why;           /* with err: what was wrong (static text) */
} proto_rbuf;

/* An arena for decoded arrays: grows by malloc'd blocks, bounded by limit
 * bytes (0: no limit; proto_arena_alloc returns NULL beyond it, or when
 * malloc fails). proto_arena_reset frees everything but one block of
 * moderate size, kept for the next request: decoding a small request then
 * allocates nothing. A zeroed proto_arena is an empty one. */
typedef struct proto_arena {
	struct proto_arena_block *head;
	size_t used, limit;
} proto_arena;

void *proto_arena_alloc(proto_arena *a, size_t n);     /* 16-byte aligned */
void proto_arena_reset(proto_arena *a);
void proto_arena_free(proto_arena *a);

uint8_t proto_r_u8(proto_rbuf *r);
uint16_t proto_r_u16(proto_rbuf *r);
uint32_t proto_r_u32(proto_rbuf *r);
uint64_t proto_r_u64(proto_rbuf *r);
int32_t proto_r_i32(proto_rbuf *r);
int64_t proto_r_i64(proto_rbuf *r);
float proto_r_f32(proto_rbuf *r);
double proto_r_f64(proto_rbuf *r);
/* Returns a pointer into the buffer and its length in *n. */
const uint8_t *proto_r_bytes(proto_rbuf *r, size_t n);
const char *proto_r_str8(proto_rbuf *r, size_t *n);
const char *proto_r_str16(proto_rbuf *r, size_t *n);
/* A name (str8 of 1..COHORT_MAX_NAME bytes of [A-Za-z0-9_], else
 * COHORT_EPROTO) copied NUL-terminated into out (COHORT_MAX_NAME + 1
 * bytes); an empty one when allow_empty. */
void proto_r_name(proto_rbuf *r, char *out, int allow_empty);
/* A tagged value; vectors are copied into the arena (aligned). An unknown
 * type code, a bool other than 0 or 1, a vector of dim 0 or over
 * COHORT_MAX_DIM: COHORT_EPROTO. A cat string points into the buffer. */
void proto_r_value(proto_rbuf *r, proto_arena *a, cohort_value *out);

/* ------------------------------------------------------------------------
 * Requests: one struct per opcode, in one tagged union. proto_req_encode
 * appends a whole frame; proto_req_decode decodes one frame's body.
 * ------------------------------------------------------------------------ */
typedef char proto_name[COHORT_MAX_NAME + 1];

typedef struct proto_key {
	const char *ptr;
	uint8_t len;
} proto_key;

/* A filter: nodes in order, each referring only to earlier nodes; the root
 * is the last. nnodes == 0: no filter. */
enum proto_filter_kind {
	PROTO_FILTER_CMP = 1,      /* column cmp value */
	PROTO_FILTER_IN,           /* cat column in values[0..nvalues) */
	PROTO_FILTER_IS_NULL,
	PROTO_FILTER_NOT_NULL,
	PROTO_FILTER_AND,          /* a and b (node indexes) */
	PROTO_FILTER_OR,
	PROTO_FILTER_NOT,          /* not a */
	PROTO_FILTER_PERSONA       /* in persona `persona` of model `model` */
};

typedef struct proto_filter_node {
	uint8_t kind;
	uint8_t cmp;               /* cohort_cmp */
	uint16_t column;
	uint16_t a, b;
	uint16_t nvalues;
	cohort_value *values;      /* CMP: one; IN: nvalues */
	uint32_t persona;
	proto_name model;
} proto_filter_node;

typedef struct proto_filter {
	uint16_t nnodes;
	proto_filter_node *nodes;
} proto_filter;

typedef struct proto_column {
	proto_name name;
	uint8_t type;              /* cohort_type */
	uint32_t dim;
	int64_t half_life_ms;
} proto_column;

typedef struct proto_put_row {
	proto_key key;
	cohort_time time;
	uint16_t nfields;
	cohort_field *fields;
} proto_put_row;

typedef struct proto_event_row {
	proto_key key;
	cohort_time time;
	uint16_t nupdates;
	cohort_update *updates;
} proto_event_row;

typedef struct proto_req {
	proto_hdr hdr;
	const char *why;           /* decode failed: what was wrong (static) */
	proto_name table;          /* every opcode that names a table */
	proto_name name;           /* index or model name */
	union {
		struct { uint16_t version; proto_name client; } hello;
		struct { const char *token; uint8_t token_len; } auth;
		struct { int64_t ttl_ms; uint16_t ncols; proto_column *cols; } table_create;
		proto_column column_add;
		struct { uint16_t column; cohort_index_opts opts; } index_create;
		struct { uint32_t nrows; proto_put_row *rows; } put;
		struct { uint32_t nrows; proto_event_row *rows; } event;
		struct { uint32_t nkeys; proto_key *keys; } del;
		struct {
			cohort_time at;
			uint16_t ncols;
			int *cols;
			uint32_t nkeys;    /* GET: 1 */
			proto_key *keys;
		} get;                     /* GET and GET_MANY */
		struct {
			cohort_time at;
			uint32_t limit;    /* FILTER_LIST: most keys returned */
			proto_filter filter;
		} filter;                  /* FILTER_COUNT and FILTER_LIST */
		struct {
			uint32_t k, ef;
			cohort_time at;
			proto_key key;     /* by key when key.len > 0 ... */
			uint32_t dim;      /* ... else by vector */
			float *vec;
			proto_filter filter;
		} knn;
		struct {
			uint8_t m;
			proto_key key;     /* by key when key.len > 0 ... */
			uint16_t nvalues;  /* ... else by values */
			cohort_value *values;
		} assign;
		struct {
			uint32_t persona, limit;
			cohort_time at;
			proto_filter filter;
		} members;
		struct {
			uint8_t ncols;
			int *cols;         /* empty: retrain the existing model */
			uint8_t mode;      /* cohort_persona_mode */
			uint32_t max_delay_ms;
			uint32_t k, iters;
			uint64_t seed, sample;
			uint8_t minibatch, background;
		} train;
		struct {
			uint8_t ncols;
			int *cols;
			uint8_t mode;
			uint32_t max_delay_ms;
			uint32_t k, dim;
			float *centroids;  /* k * dim */
			double *mean, *sd; /* dim each, or NULL */
		} upload;
		struct { uint64_t cursor; } subscribe;
	} u;
} proto_req;

/* Append the frame of request r (r->hdr.opcode and id; body_len is set). */
void proto_req_encode(proto_wbuf *w, const proto_req *r);

/* Decode one request frame from buf: bytes consumed, PROTO_MORE, or a
 * negative status; on COHORT_EPROTO/ELIMIT/EBADNAME after a complete header,
 * out->hdr is filled so the server can answer that request id, and
 * out->why says what was wrong. Limits: max_body bytes of body, max_batch
 * keys/rows (0: no limit for either), COHORT_MAX_K, PROTO_MAX_FILTER_NODES,
 * COHORT_MAX_COLUMNS columns (COHORT_PERSONA_MAX_INPUTS for a model),
 * COHORT_PERSONA_M_MAX, COHORT_MAX_PERSONAS and COHORT_MAX_DIM.
 *
 * COHORT_ELIMIT with out->hdr.body_len > max_body: the frame is oversized
 * and its body was not read (answer, then close). COHORT_ELIMIT otherwise
 * (a batch, k ... over a limit) and COHORT_EBADNAME (a table, column,
 * index or model name not 1..64 of [A-Za-z0-9_], in a body otherwise well
 * formed) come only once the whole frame is in buf: it is PROTO_HDR_LEN +
 * out->hdr.body_len bytes, which the server skips after answering, and
 * goes on with the next request. COHORT_EPROTO: malformed (answer, then
 * close).
 *
 * The caller resets the arena between requests (what it holds stays valid
 * until then). An opcode version 1 does not know decodes with its body
 * skipped and out->u zeroed, for the server to answer COHORT_ENOTSUP
 * (proto_op_role gives -1); CHANGES, a push, is malformed as a request, as
 * is a frame with the RESPONSE or PUSH flag. */
int proto_req_decode(const uint8_t *buf, size_t len, uint32_t max_body,
		     uint32_t max_batch, proto_arena *a, proto_req *out);

/* ------------------------------------------------------------------------
 * Responses. Body: i32 status; when negative, str16 message; else the
 * opcode's payload (docs/protocol.md). Encoders append a whole frame.
 * ------------------------------------------------------------------------ */
/* An error response: status (< 0) and msg (NULL: cohort_strerror's text;
 * cut at 65535 bytes). */
void proto_resp_error(proto_wbuf *w, uint8_t opcode, uint32_t id, int status,
		      const char *msg);

/* Read a response body's status (and message, pointing into the body,
 * on error; msg and msg_len may be NULL). Returns the status; r is left at
 * the payload. A truncated body or a positive status: COHORT_EPROTO. */
int proto_resp_status(proto_rbuf *r, const char **msg, size_t *msg_len);

/* The string of a cat code: cohort_cat_string's signature, passed in by
 * the caller so that this file (carried by the client library, without
 * libcohort) does not reach into the store. */
typedef const char *(*proto_cat_fn)(const cohort_table *t, int column,
				    uint32_t code, uint32_t *len);

/* GET_MANY payload from a batch of t: the columnar block (cat codes become
 * strings of a per-block string table, each string once per column, looked
 * up with cat(t, ...)). The server passes cohort_cat_string. */
void proto_w_block(proto_wbuf *w, const cohort_table *t,
		   const cohort_batch *b, proto_cat_fn cat);

/* A decoded columnar block; arrays in the arena. */
typedef struct proto_block_col {
	uint16_t column;
	uint8_t type;              /* cohort_type of the values */
	uint32_t dim, width;
	const uint8_t *valid;      /* nkeys */
	const void *values;        /* nkeys * width bytes, aligned copy */
} proto_block_col;

typedef struct proto_block {
	uint32_t nkeys;
	uint16_t ncols;
	const uint8_t *status;     /* nkeys cohort_row_status */
	const int64_t *time;       /* nkeys, aligned copy */
	proto_block_col *cols;
	uint32_t nstrings;         /* CAT values (u32) index this table */
	const char **strings;      /* into the frame, not NUL-terminated */
	uint16_t *str_len;
} proto_block;

/* Read a GET_MANY payload: 0, or COHORT_EPROTO (truncated, or a row status,
 * type, dim, width, valid byte, bool or cat index out of its range),
 * COHORT_ELIMIT / COHORT_ENOMEM (the arena). r is left after the block. */
int proto_r_block(proto_rbuf *r, proto_arena *a, proto_block *out);

#endif /* COHORT_PROTO_H */
