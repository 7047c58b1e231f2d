/*
 * handler.c -- one function per opcode: the decoded request (proto.h) goes
 * to the embedded API (cohort.h), the result is encoded as the opcode's
 * response payload (docs/protocol.md section 4) straight into the
 * connection's output buffer.
 *
 * Every op_* function starts its response frame only once the request is
 * known to succeed, or returns a negative status with a message in
 * h->msg; handler_exec then cuts whatever was written and appends the
 * error frame instead. Messages come from cohort_errdetail() (copied at
 * once: the next call into cohort overwrites it) or name what was wrong
 * in the request itself.
 *
 * Memory: arrays whose size follows the request (statuses, column
 * definitions, filter node ids) come from the request's arena, reset by
 * conn.c between requests. What the hot path needs on every request (the
 * column list, values, the vector buffer, keys, neighbours, the GET_MANY
 * batch) is kept in the handler and only grows, so GET and GET_MANY do not
 * allocate once warm. Tables are looked up by name on every request:
 * cohort_table_open is a scan of at most COHORT_MAX_TABLES names without a
 * lock, a few nanoseconds for the handful of tables a server holds, and
 * handles stay valid until cohort_close, so nothing needs invalidating.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "auth.h"
#include "handler.h"

#define PUSH_BATCH 64              /* changes read per CHANGES frame */
#define MAX_FAILED_AUTH 3
#define HANDLER_MAX_ITERS 300      /* PERSONA_TRAIN iterations */
/* A cached GET_MANY batch is kept only while its arrays are this small:
 * a hostile client must not pin 100s of MB per connection. */
#define BATCH_KEEP_BYTES (1u << 20)

typedef struct sub {
	cohort_table *t;
	proto_name model;
	uint64_t cursor;           /* last change sent */
	uint32_t id;               /* the SUBSCRIBE's request id */
} sub;

struct handler {
	const conn_env *env;
	int role;
	int failed_auth;

	int *cols;                 /* the request's columns, 0 expanded to all */
	size_t cols_cap;
	cohort_value *vals;
	size_t vals_cap;
	float *vecbuf;
	size_t vecbuf_cap;         /* floats */
	cohort_key *keys;
	size_t keys_cap;
	cohort_neighbor *nbrs;
	size_t nbrs_cap;

	cohort_batch *batch;       /* GET_MANY, for batch_t and batch_cols */
	const cohort_table *batch_t;
	int *batch_cols;
	size_t batch_ncols, batch_cols_cap;

	proto_wbuf side;           /* a batch write's error list */

	sub *subs;
	size_t nsubs;
	cohort_persona_change *changes;   /* PUSH_BATCH, once subscribed */

	char msg[512];
};

static atomic_int live_conns;

void handler_conn_count(int delta)
{
	atomic_fetch_add(&live_conns, delta);
}

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */
static int fail(handler *h, int rc)
{
	const char *d = cohort_errdetail();
	snprintf(h->msg, sizeof(h->msg), "%s",
		 d && d[0] ? d : cohort_strerror(rc));
	return rc;
}

static int failf(handler *h, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int failf(handler *h, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(h->msg, sizeof(h->msg), fmt, ap);
	va_end(ap);
	return rc;
}

/* Grow *p to hold need elements of size elem (contents kept). */
static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 16;
	while (n < need)
		n *= 2;
	void *q = crealloc(*p, n * elem);
	if (!q)
		return COHORT_ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

#define GROW(h, arr, cap, need)                                               \
	grow((void **)&(h)->arr, &(h)->cap, (need), sizeof(*(h)->arr))

static void *scratch(proto_arena *a, size_t n)
{
	return proto_arena_alloc(a, n ? n : 1);
}

static int table_of(handler *h, const proto_req *r, cohort_table **t)
{
	int rc = cohort_table_open(h->env->db, r->table, t);
	return rc < 0 ? fail(h, rc) : 0;
}

static void ok_begin(proto_wbuf *w, const proto_req *r, size_t *start)
{
	*start = proto_frame_begin(w, r->hdr.opcode, PROTO_F_RESPONSE,
				   r->hdr.id);
	proto_w_i32(w, 0);
}

/* Overwrite bytes written earlier (counts known only at the end). */
static void patch(proto_wbuf *w, size_t pos, uint64_t v, size_t n)
{
	if (w->err || pos + n > w->len)
		return;
	for (size_t i = 0; i < n; i++)
		w->buf[pos + i] = (uint8_t)(v >> (8 * i));
}

static void w_key(proto_wbuf *w, const void *p, size_t n)
{
	proto_w_str8(w, p, n > 255 ? 255 : n);
}

static void w_name(proto_wbuf *w, const char *s)
{
	w_key(w, s ? s : "", s ? strlen(s) : 0);
}

/* The request's columns: cols[0..ncols), or every column for none. */
static int resolve_cols(handler *h, const cohort_table *t, const int *cols,
			size_t ncols, const int **out, size_t *nout)
{
	if (ncols) {
		*out = cols;
		*nout = ncols;
		return 0;
	}
	cohort_table_info ti;
	int rc = cohort_table_describe(t, &ti);
	if (rc < 0)
		return fail(h, rc);
	if (GROW(h, cols, cols_cap, ti.ncolumns))
		return failf(h, COHORT_ENOMEM, "out of memory");
	for (size_t i = 0; i < ti.ncolumns; i++)
		h->cols[i] = (int)i;
	*out = h->cols;
	*nout = ti.ncolumns;
	return 0;
}

/* ------------------------------------------------------------------------
 * Filters: proto nodes in order become cohort_filter nodes; each node's
 * operands are earlier nodes, so one pass maps wire indexes to node ids.
 * ------------------------------------------------------------------------ */
static int build_filter(handler *h, const cohort_table *t,
			const proto_filter *pf, bool every_row,
			proto_arena *a, cohort_filter **out, int *root)
{
	*out = NULL;
	*root = -1;
	if (pf->nnodes == 0 && !every_row)
		return 0;
	cohort_filter *f;
	int rc = cohort_filter_new(t, &f);
	if (rc < 0)
		return fail(h, rc);
	if (pf->nnodes == 0) {
		/* every live row: null or not null in column 0 (SQL nulls
		 * make neither unknown) */
		cohort_table_info ti;
		cohort_table_describe(t, &ti);
		if (ti.ncolumns == 0) {
			cohort_filter_free(f);
			return failf(h, COHORT_EINVAL, "table '%s' has no "
				     "columns to filter on", ti.name);
		}
		int id = cohort_filter_or(f, cohort_filter_is_null(f, 0),
					  cohort_filter_not_null(f, 0));
		if (id < 0) {
			cohort_filter_free(f);
			return fail(h, id);
		}
		*out = f;
		*root = id;
		return 0;
	}
	int *ids = scratch(a, pf->nnodes * sizeof(int));
	if (!ids) {
		cohort_filter_free(f);
		return failf(h, COHORT_ENOMEM, "out of memory for a filter of "
			     "%u nodes", pf->nnodes);
	}
	for (uint16_t i = 0; i < pf->nnodes; i++) {
		const proto_filter_node *n = &pf->nodes[i];
		int id;
		if ((n->kind == PROTO_FILTER_AND || n->kind == PROTO_FILTER_OR ||
		     n->kind == PROTO_FILTER_NOT) &&
		    (n->a >= i || (n->kind != PROTO_FILTER_NOT && n->b >= i))) {
			cohort_filter_free(f);
			return failf(h, COHORT_EINVAL, "filter node %u refers to "
				     "a node that is not before it", i);
		}
		switch (n->kind) {
		case PROTO_FILTER_CMP:
			id = n->values && n->nvalues >= 1 ?
				cohort_filter_cmp(f, n->column,
						  (cohort_cmp)n->cmp,
						  n->values[0]) :
				COHORT_EINVAL;
			break;
		case PROTO_FILTER_IN:
			id = cohort_filter_in(f, n->column, n->values,
					      n->nvalues);
			break;
		case PROTO_FILTER_IS_NULL:
			id = cohort_filter_is_null(f, n->column);
			break;
		case PROTO_FILTER_NOT_NULL:
			id = cohort_filter_not_null(f, n->column);
			break;
		case PROTO_FILTER_AND:
			id = cohort_filter_and(f, ids[n->a], ids[n->b]);
			break;
		case PROTO_FILTER_OR:
			id = cohort_filter_or(f, ids[n->a], ids[n->b]);
			break;
		case PROTO_FILTER_NOT:
			id = cohort_filter_not(f, ids[n->a]);
			break;
		case PROTO_FILTER_PERSONA:
			id = cohort_filter_persona(f, n->model, n->persona);
			break;
		default:
			id = COHORT_EINVAL;
			break;
		}
		if (id < 0) {
			const char *d = cohort_errdetail();
			cohort_filter_free(f);
			return failf(h, id, "filter node %u: %s", i,
				     id == COHORT_EINVAL && n->kind == 0 ?
				     "unknown kind" :
				     d && d[0] ? d : cohort_strerror(id));
		}
		ids[i] = id;
	}
	*out = f;
	*root = ids[pf->nnodes - 1];
	return 0;
}

/* Keys of a filter or persona walk, up to limit, into the response. */
typedef struct key_sink {
	proto_wbuf *w;
	uint32_t n, limit;
} key_sink;

static int key_sink_cb(const void *key, size_t key_len, void *ctx)
{
	key_sink *s = ctx;
	if (s->n < s->limit) {
		w_key(s->w, key, key_len);
		s->n++;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Session
 * ------------------------------------------------------------------------ */
static int op_hello(handler *h, const proto_req *r, proto_wbuf *w)
{
	if (r->u.hello.version == 0)
		return failf(h, COHORT_EINVAL, "client version 0: this server "
			     "speaks version %d", PROTO_VERSION);
	size_t start;
	ok_begin(w, r, &start);
	proto_w_u16(w, r->u.hello.version < PROTO_VERSION ?
		    r->u.hello.version : PROTO_VERSION);
	proto_w_u32(w, h->env->max_frame);
	proto_w_u32(w, h->env->max_batch);
	proto_w_u32(w, h->env->max_k);
	proto_w_u8(w, h->env->tokens != NULL);
	proto_w_u8(w, (uint8_t)h->role);
	w_name(w, h->env->server_name ? h->env->server_name : "cohortd");
	proto_frame_end(w, start);
	return 0;
}

static int op_auth(handler *h, const proto_req *r, proto_wbuf *w,
		   bool *close)
{
	if (h->env->tokens) {
		int role = auth_check(h->env->tokens, r->u.auth.token,
				      r->u.auth.token_len);
		if (role == PROTO_ROLE_NONE) {
			h->failed_auth++;
			if (h->failed_auth >= MAX_FAILED_AUTH)
				*close = true;
			return failf(h, COHORT_EAUTH, "wrong token (failed "
				     "attempt %d of %d%s)", h->failed_auth,
				     MAX_FAILED_AUTH, *close ?
				     "; closing the connection" : "");
		}
		h->role = role;
	}
	size_t start;
	ok_begin(w, r, &start);
	proto_w_u8(w, (uint8_t)h->role);
	proto_frame_end(w, start);
	return 0;
}

static int op_empty(handler *h, const proto_req *r, proto_wbuf *w)
{
	(void)h;
	size_t start;
	ok_begin(w, r, &start);
	proto_frame_end(w, start);
	return 0;
}

/* ------------------------------------------------------------------------
 * Schema
 * ------------------------------------------------------------------------ */
static cohort_column_def col_def(const proto_column *c)
{
	cohort_column_def d = { c->name, (cohort_type)c->type, c->dim,
				c->half_life_ms };
	return d;
}

static int op_table_create(handler *h, const proto_req *r, proto_arena *a,
			   proto_wbuf *w)
{
	size_t n = r->u.table_create.ncols;
	cohort_column_def *defs = scratch(a, n * sizeof(*defs));
	if (!defs)
		return failf(h, COHORT_ENOMEM, "out of memory for %zu columns",
			     n);
	for (size_t i = 0; i < n; i++)
		defs[i] = col_def(&r->u.table_create.cols[i]);
	cohort_table_options o = { r->u.table_create.ttl_ms };
	int rc = cohort_table_create(h->env->db, r->table, defs, n, &o, NULL);
	if (rc < 0)
		return fail(h, rc);
	return op_empty(h, r, w);
}

static int op_column_add(handler *h, const proto_req *r, proto_wbuf *w)
{
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	cohort_column_def d = col_def(&r->u.column_add);
	int id;
	rc = cohort_table_add_column(t, &d, &id);
	if (rc < 0)
		return fail(h, rc);
	size_t start;
	ok_begin(w, r, &start);
	proto_w_u16(w, (uint16_t)id);
	proto_frame_end(w, start);
	return 0;
}

static int describe_list(handler *h, const proto_req *r, proto_wbuf *w)
{
	cohort_db *db = h->env->db;
	size_t n = cohort_db_ntables(db);
	size_t start;
	ok_begin(w, r, &start);
	proto_w_u16(w, (uint16_t)n);
	for (size_t i = 0; i < n; i++)
		w_name(w, cohort_db_table_name(db, i));
	proto_frame_end(w, start);
	return 0;
}

static int op_describe(handler *h, const proto_req *r, proto_wbuf *w)
{
	if (r->table[0] == 0)
		return describe_list(h, r, w);
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	cohort_table_info ti;
	if ((rc = cohort_table_describe(t, &ti)) < 0)
		return fail(h, rc);

	/* models and indexes first: one dropped meanwhile is left out */
	const char *mnames[COHORT_MAX_MODELS];
	cohort_persona_info minfo[COHORT_MAX_MODELS];
	size_t nm = 0, nmodels = 0;
	if ((rc = cohort_persona_models(t, mnames, COHORT_MAX_MODELS, &nm)) < 0)
		return fail(h, rc);
	for (size_t i = 0; i < nm && i < COHORT_MAX_MODELS; i++)
		if (cohort_persona_describe(t, mnames[i], &minfo[nmodels]) == 0)
			mnames[nmodels++] = mnames[i];
	const char *inames[COHORT_MAX_INDEXES];
	cohort_index_info iinfo[COHORT_MAX_INDEXES];
	size_t ni = 0, nindexes = 0;
	if ((rc = cohort_index_list(t, inames, COHORT_MAX_INDEXES, &ni)) < 0)
		return fail(h, rc);
	for (size_t i = 0; i < ni && i < COHORT_MAX_INDEXES; i++)
		if (cohort_index_describe(t, inames[i], &iinfo[nindexes]) == 0)
			inames[nindexes++] = inames[i];

	size_t start;
	ok_begin(w, r, &start);
	proto_w_i64(w, ti.ttl_ms);
	proto_w_u64(w, ti.nrows);
	proto_w_u64(w, ti.mem_bytes);
	proto_w_u16(w, (uint16_t)ti.ncolumns);
	for (size_t c = 0; c < ti.ncolumns; c++) {
		cohort_column_info ci;
		if ((rc = cohort_column_describe(t, (int)c, &ci)) < 0)
			return fail(h, rc);
		w_name(w, ci.name);
		proto_w_u8(w, (uint8_t)ci.type);
		proto_w_u32(w, ci.type == COHORT_VEC ? ci.dim : 0);
		proto_w_i64(w, ci.half_life_ms);
		proto_w_u32(w, ci.ncat);
	}
	proto_w_u8(w, (uint8_t)nmodels);
	for (size_t i = 0; i < nmodels; i++) {
		const cohort_persona_info *m = &minfo[i];
		w_name(w, mnames[i]);
		proto_w_u64(w, m->version);
		proto_w_u32(w, m->k);
		proto_w_u32(w, m->dim);
		proto_w_u8(w, (uint8_t)m->ncolumns);
		for (size_t c = 0; c < m->ncolumns; c++)
			proto_w_u16(w, (uint16_t)m->columns[c]);
		proto_w_u8(w, (uint8_t)m->mode);
		proto_w_u8(w, m->training);
		proto_w_u64(w, m->pending);
		proto_w_u64(w, m->assigned);
	}
	proto_w_u8(w, (uint8_t)nindexes);
	for (size_t i = 0; i < nindexes; i++) {
		const cohort_index_info *x = &iinfo[i];
		w_name(w, inames[i]);
		proto_w_u16(w, (uint16_t)x->column);
		proto_w_u8(w, (uint8_t)x->metric);
		proto_w_u32(w, x->M);
		proto_w_u32(w, x->ef_construction);
		proto_w_u32(w, x->ef_search);
		proto_w_u64(w, x->nodes);
		proto_w_u64(w, x->pending);
		proto_w_u64(w, x->bytes);
	}
	proto_frame_end(w, start);
	return 0;
}

static int op_index_create(handler *h, const proto_req *r, proto_wbuf *w)
{
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	rc = cohort_index_create(t, r->name, r->u.index_create.column,
				 &r->u.index_create.opts);
	if (rc < 0)
		return fail(h, rc);
	return op_empty(h, r, w);
}

static int op_index_drop(handler *h, const proto_req *r, proto_wbuf *w)
{
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	if ((rc = cohort_index_drop(t, r->name)) < 0)
		return fail(h, rc);
	return op_empty(h, r, w);
}

/* ------------------------------------------------------------------------
 * Writes: rows one by one, a status each, messages of the failed ones.
 * ------------------------------------------------------------------------ */
enum { W_PUT, W_EVENT, W_DELETE };

static int op_write(handler *h, const proto_req *r, proto_arena *a,
		    proto_wbuf *w, int kind)
{
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	uint32_t n = kind == W_PUT ? r->u.put.nrows :
		kind == W_EVENT ? r->u.event.nrows : r->u.del.nkeys;
	int32_t *st = scratch(a, (size_t)n * sizeof(int32_t));
	if (!st)
		return failf(h, COHORT_ENOMEM, "out of memory for %u rows", n);
	proto_wbuf *e = &h->side;
	e->len = 0;
	e->err = 0;
	uint32_t nerr = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (kind == W_PUT) {
			const proto_put_row *p = &r->u.put.rows[i];
			rc = cohort_put(t, p->key.ptr, p->key.len, p->time,
					p->fields, p->nfields);
		} else if (kind == W_EVENT) {
			const proto_event_row *p = &r->u.event.rows[i];
			rc = cohort_event(t, p->key.ptr, p->key.len, p->time,
					  p->updates, p->nupdates);
		} else {
			const proto_key *k = &r->u.del.keys[i];
			rc = cohort_delete(t, k->ptr, k->len);
		}
		st[i] = rc < 0 ? rc : 0;
		if (rc < 0) {
			const char *d = cohort_errdetail();
			if (!d || !d[0])
				d = cohort_strerror(rc);
			size_t dl = strlen(d);
			nerr++;
			proto_w_u32(e, i);
			proto_w_str16(e, d, dl > 1024 ? 1024 : dl);
		}
	}
	if (e->err)
		return failf(h, COHORT_ENOMEM, "out of memory for the messages "
			     "of %u failed rows (the other rows were applied)",
			     nerr);
	size_t start;
	ok_begin(w, r, &start);
	proto_w_u32(w, n);
	for (uint32_t i = 0; i < n; i++)
		proto_w_i32(w, st[i]);
	proto_w_u32(w, nerr);
	proto_w_bytes(w, e->buf, e->len);
	proto_frame_end(w, start);
	/* a big batch's messages must not stay pinned to the connection */
	if (e->cap > (64u << 10)) {
		proto_wbuf_free(e);
		memset(e, 0, sizeof(*e));
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------ */
static int op_get(handler *h, const proto_req *r, proto_wbuf *w)
{
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	if (r->u.get.nkeys != 1)
		return failf(h, COHORT_EINVAL, "GET takes one key");
	const int *cols;
	size_t ncols;
	if ((rc = resolve_cols(h, t, r->u.get.cols, r->u.get.ncols, &cols,
			       &ncols)) < 0)
		return rc;
	if (GROW(h, vals, vals_cap, ncols))
		return failf(h, COHORT_ENOMEM, "out of memory");
	const proto_key *k = &r->u.get.keys[0];
	cohort_time rt = 0;
	rc = cohort_get(t, k->ptr, k->len, cols, ncols, r->u.get.at, h->vals,
			h->vecbuf, h->vecbuf_cap, &rt);
	if (rc == COHORT_ERANGE) {
		/* the vectors need more room than the buffer has: size it
		 * for these columns once, then it stays */
		size_t need = 0;
		for (size_t i = 0; i < ncols; i++) {
			cohort_column_info ci;
			if (cohort_column_describe(t, cols[i], &ci) == 0 &&
			    ci.type == COHORT_VEC)
				need += ci.dim;
		}
		if (need > h->vecbuf_cap) {
			if (GROW(h, vecbuf, vecbuf_cap, need))
				return failf(h, COHORT_ENOMEM, "out of memory "
					     "for %zu floats", need);
			rc = cohort_get(t, k->ptr, k->len, cols, ncols,
					r->u.get.at, h->vals, h->vecbuf,
					h->vecbuf_cap, &rt);
		}
	}
	if (rc < 0)
		return fail(h, rc);
	size_t start;
	ok_begin(w, r, &start);
	proto_w_u8(w, (uint8_t)rc);
	proto_w_i64(w, rt);
	proto_w_u16(w, (uint16_t)ncols);
	for (size_t i = 0; i < ncols; i++)
		proto_w_value(w, &h->vals[i]);
	proto_frame_end(w, start);
	return 0;
}

static int op_get_many(handler *h, const proto_req *r, proto_wbuf *w)
{
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	const int *cols;
	size_t ncols;
	if ((rc = resolve_cols(h, t, r->u.get.cols, r->u.get.ncols, &cols,
			       &ncols)) < 0)
		return rc;
	if (!h->batch || h->batch_t != t || h->batch_ncols != ncols ||
	    memcmp(h->batch_cols, cols, ncols * sizeof(int)) != 0) {
		cohort_batch_free(h->batch);
		h->batch = NULL;
		h->batch_t = NULL;
		if (GROW(h, batch_cols, batch_cols_cap, ncols))
			return failf(h, COHORT_ENOMEM, "out of memory");
		if ((rc = cohort_batch_new(t, cols, ncols, &h->batch)) < 0)
			return fail(h, rc);
		memcpy(h->batch_cols, cols, ncols * sizeof(int));
		h->batch_ncols = ncols;
		h->batch_t = t;
	}
	uint32_t nkeys = r->u.get.nkeys;
	if (GROW(h, keys, keys_cap, nkeys))
		return failf(h, COHORT_ENOMEM, "out of memory for %u keys",
			     nkeys);
	for (uint32_t i = 0; i < nkeys; i++) {
		h->keys[i].ptr = r->u.get.keys[i].ptr;
		h->keys[i].len = r->u.get.keys[i].len;
	}
	rc = cohort_get_many(t, h->keys, nkeys, r->u.get.at, h->batch);
	if (rc < 0)
		return fail(h, rc);
	size_t start;
	ok_begin(w, r, &start);
	proto_w_block(w, t, h->batch, cohort_cat_string);
	proto_frame_end(w, start);

	size_t row_bytes = 9;
	for (size_t j = 0; j < h->batch->ncols; j++)
		row_bytes += h->batch->cols[j].width + 1;
	if ((size_t)nkeys * row_bytes > BATCH_KEEP_BYTES) {
		cohort_batch_free(h->batch);
		h->batch = NULL;
		h->batch_t = NULL;
	}
	return 0;
}

static int op_filter(handler *h, const proto_req *r, proto_arena *a,
		     proto_wbuf *w, bool list)
{
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	cohort_filter *f;
	int root;
	if ((rc = build_filter(h, t, &r->u.filter.filter, true, a, &f,
			       &root)) < 0)
		return rc;
	uint64_t count = 0;
	size_t start;
	if (!list) {
		rc = cohort_filter_count(f, root, r->u.filter.at, &count);
		cohort_filter_free(f);
		if (rc < 0)
			return fail(h, rc);
		ok_begin(w, r, &start);
		proto_w_u64(w, count);
		proto_frame_end(w, start);
		return 0;
	}
	ok_begin(w, r, &start);
	size_t pos = w->len;
	proto_w_u64(w, 0);
	proto_w_u32(w, 0);
	key_sink s = { w, 0, r->u.filter.limit };
	rc = cohort_filter_keys(f, root, r->u.filter.at, key_sink_cb, &s,
				&count);
	cohort_filter_free(f);
	if (rc < 0)
		return fail(h, rc);
	patch(w, pos, count, 8);
	patch(w, pos + 8, s.n, 4);
	proto_frame_end(w, start);
	return 0;
}

static int op_knn(handler *h, const proto_req *r, proto_arena *a,
		  proto_wbuf *w)
{
	uint32_t k = r->u.knn.k;
	if (k == 0)
		return failf(h, COHORT_EINVAL, "knn: k must be at least 1");
	if (k > h->env->max_k || k > COHORT_MAX_K)
		return failf(h, COHORT_ELIMIT, "knn: k %u is over the limit "
			     "of %u", k, h->env->max_k < COHORT_MAX_K ?
			     h->env->max_k : COHORT_MAX_K);
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	if (GROW(h, nbrs, nbrs_cap, k))
		return failf(h, COHORT_ENOMEM, "out of memory");
	cohort_filter *f;
	int root;
	if ((rc = build_filter(h, t, &r->u.knn.filter, false, a, &f,
			       &root)) < 0)
		return rc;
	cohort_knn_query q = { 0 };
	if (r->u.knn.key.len > 0) {
		q.key = r->u.knn.key.ptr;
		q.key_len = r->u.knn.key.len;
	} else {
		q.vec = r->u.knn.vec;
		q.dim = r->u.knn.dim;
	}
	q.k = k;
	q.ef = r->u.knn.ef;
	q.filter = f;
	q.root = root;
	q.at = r->u.knn.at;
	size_t n = 0;
	rc = cohort_knn(t, r->name, &q, h->nbrs, &n);
	cohort_filter_free(f);
	if (rc < 0)
		return fail(h, rc);
	size_t start;
	ok_begin(w, r, &start);
	proto_w_u32(w, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		proto_w_f32(w, h->nbrs[i].distance);
		w_key(w, h->nbrs[i].key, h->nbrs[i].key_len);
	}
	proto_frame_end(w, start);
	return 0;
}

/* ------------------------------------------------------------------------
 * Personas
 * ------------------------------------------------------------------------ */
static int op_assign(handler *h, const proto_req *r, proto_wbuf *w)
{
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	cohort_persona_result res;
	memset(&res, 0, sizeof(res));
	int status;
	if (r->u.assign.key.len > 0) {
		status = cohort_persona_assign(t, r->name, r->u.assign.key.ptr,
					       r->u.assign.key.len,
					       r->u.assign.m, &res);
	} else {
		status = cohort_persona_assign_values(t, r->name,
						      r->u.assign.values,
						      r->u.assign.nvalues,
						      r->u.assign.m, &res);
		if (status == 0)
			status = COHORT_ROW_PRESENT;
	}
	if (status < 0)
		return fail(h, status);
	size_t start;
	ok_begin(w, r, &start);
	proto_w_u8(w, (uint8_t)status);
	if (status == COHORT_ROW_PRESENT) {
		size_t m = res.m > COHORT_PERSONA_M_MAX ?
			COHORT_PERSONA_M_MAX : res.m;
		size_t ne = res.nexplain > COHORT_PERSONA_EXPLAIN ?
			COHORT_PERSONA_EXPLAIN : res.nexplain;
		proto_w_u64(w, res.version);
		proto_w_u32(w, res.persona);
		proto_w_f32(w, res.distance);
		proto_w_f32(w, res.anomaly);
		proto_w_u8(w, (uint8_t)m);
		for (size_t i = 0; i < m; i++) {
			proto_w_u32(w, res.nearest[i]);
			proto_w_f32(w, res.distances[i]);
		}
		proto_w_u8(w, (uint8_t)ne);
		for (size_t i = 0; i < ne; i++) {
			const cohort_persona_feature *x = &res.explain[i];
			proto_w_u16(w, (uint16_t)x->column);
			proto_w_u32(w, x->element);
			proto_w_f64(w, x->value);
			proto_w_f64(w, x->centroid);
			proto_w_f64(w, x->contribution);
		}
	}
	proto_frame_end(w, start);
	return 0;
}

static int op_members(handler *h, const proto_req *r, proto_arena *a,
		      proto_wbuf *w)
{
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	cohort_filter *f;
	int root;
	if ((rc = build_filter(h, t, &r->u.members.filter, false, a, &f,
			       &root)) < 0)
		return rc;
	size_t start;
	ok_begin(w, r, &start);
	size_t pos = w->len;
	proto_w_u64(w, 0);
	proto_w_u32(w, 0);
	key_sink s = { w, 0, r->u.members.limit };
	uint64_t count = 0;
	rc = cohort_persona_members(t, r->name, r->u.members.persona, f, root,
				    r->u.members.at, key_sink_cb, &s, &count);
	cohort_filter_free(f);
	if (rc < 0)
		return fail(h, rc);
	patch(w, pos, count, 8);
	patch(w, pos + 8, s.n, 4);
	proto_frame_end(w, start);
	return 0;
}

static int op_sizes(handler *h, const proto_req *r, proto_arena *a,
		    proto_wbuf *w)
{
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	cohort_persona_info info;
	if ((rc = cohort_persona_describe(t, r->name, &info)) < 0)
		return fail(h, rc);
	/* a retrain may change k between describe and sizes: then take
	 * room for the most there can be */
	size_t room = info.k;
	uint64_t *sizes = scratch(a, room * sizeof(uint64_t));
	uint64_t version = 0;
	rc = sizes ? cohort_persona_sizes(t, r->name, sizes, room, &version) :
		COHORT_ENOMEM;
	if (rc == COHORT_ERANGE) {
		room = COHORT_MAX_PERSONAS;
		sizes = scratch(a, room * sizeof(uint64_t));
		rc = sizes ? cohort_persona_sizes(t, r->name, sizes, room,
						  &version) : COHORT_ENOMEM;
	}
	if (rc < 0)
		return fail(h, rc);
	if ((rc = cohort_persona_describe(t, r->name, &info)) < 0)
		return fail(h, rc);
	uint32_t k = info.k < room ? info.k : (uint32_t)room;
	size_t start;
	ok_begin(w, r, &start);
	proto_w_u64(w, version);
	proto_w_u32(w, k);
	for (uint32_t p = 0; p < k; p++) {
		const char *name = NULL;
		cohort_persona_centroid(t, r->name, p, &name, NULL, NULL, NULL);
		proto_w_u64(w, sizes[p]);
		w_name(w, name);
	}
	proto_frame_end(w, start);
	return 0;
}

/*
 * PERSONA_DESCRIBE: the model's state, then every persona's size, typical
 * distance, name and centroid (input units). The embedded API gives no
 * single call for all of it, so the response is built from describe,
 * sizes (one consistent cut) and a centroid per persona, then describe is
 * read again: when a retrain or upload swapped the version in between,
 * the frame is cut and read again, so every persona comes from the one
 * version the response names. Swaps are seconds apart (a training run);
 * after DESCRIBE_TRIES swaps in a row the request fails EBUSY.
 */
#define DESCRIBE_TRIES 4

static int op_persona_describe(handler *h, const proto_req *r,
			       proto_arena *a, proto_wbuf *w)
{
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	size_t w0 = w->len;
	for (int attempt = 0; attempt < DESCRIBE_TRIES; attempt++) {
		cohort_persona_info info, after;
		if ((rc = cohort_persona_describe(t, r->name, &info)) < 0)
			return fail(h, rc);
		if ((uint64_t)info.k * info.dim * 8 > h->env->max_frame)
			return failf(h, COHORT_ELIMIT, "persona describe: %u "
				     "centroids of dim %u are over the frame "
				     "limit of %u bytes", info.k, info.dim,
				     h->env->max_frame);
		size_t room = info.k ? info.k : 1;
		uint64_t *sizes = scratch(a, room * sizeof(uint64_t));
		double *cent = scratch(a, (size_t)(info.dim ? info.dim : 1) *
				       sizeof(double));
		if (!sizes || !cent)
			return failf(h, COHORT_ENOMEM, "persona describe: out "
				     "of memory");
		uint64_t version = 0;
		rc = cohort_persona_sizes(t, r->name, sizes, room, &version);
		if (rc == COHORT_ERANGE)
			continue;          /* k grew: a swap since describe */
		if (rc < 0)
			return fail(h, rc);
		if (version != info.version)
			continue;
		size_t start;
		ok_begin(w, r, &start);
		proto_w_u64(w, info.version);
		proto_w_u32(w, info.k);
		proto_w_u32(w, info.dim);
		proto_w_u8(w, (uint8_t)info.mode);
		proto_w_u8(w, info.training ? 1 : 0);
		proto_w_u64(w, info.pending);
		proto_w_u64(w, info.assigned);
		proto_w_u8(w, (uint8_t)info.ncolumns);
		for (size_t i = 0; i < info.ncolumns; i++)
			proto_w_u16(w, (uint16_t)info.columns[i]);
		for (uint32_t p = 0; rc == 0 && p < info.k; p++) {
			const char *name = NULL;
			double typical = 0;
			rc = cohort_persona_centroid(t, r->name, p, &name, cent,
						     NULL, &typical);
			if (rc < 0)
				break;
			proto_w_u64(w, sizes[p]);
			proto_w_f64(w, typical);
			w_name(w, name);   /* copied now: valid until a rename */
			for (uint32_t j = 0; j < info.dim; j++)
				proto_w_f64(w, cent[j]);
		}
		if (rc == 0)
			rc = cohort_persona_describe(t, r->name, &after);
		if ((rc == 0 && after.version == info.version) || w->err) {
			/* w->err (over the frame limit): handler_exec says so */
			proto_frame_end(w, start);
			return 0;
		}
		w->len = w0;               /* cut the stale frame */
		if (rc < 0 && rc != COHORT_ERANGE)
			return fail(h, rc);
		rc = 0;
	}
	return failf(h, COHORT_EBUSY, "persona describe: model '%s' was "
		     "swapped to a new version %d times while being read; "
		     "try again", r->name, DESCRIBE_TRIES);
}

static int model_version(handler *h, const proto_req *r, cohort_table *t,
			 proto_wbuf *w, bool zero)
{
	cohort_persona_info info;
	int rc = cohort_persona_describe(t, r->name, &info);
	if (rc < 0)
		return fail(h, rc);
	size_t start;
	ok_begin(w, r, &start);
	proto_w_u64(w, zero ? 0 : info.version);
	proto_frame_end(w, start);
	return 0;
}

static int op_train(handler *h, const proto_req *r, proto_wbuf *w)
{
	/* training runs on the connection's event loop: a request must not
	 * hold it for hours (mini-batch k-means runs every iteration) */
	if (r->u.train.iters > HANDLER_MAX_ITERS)
		return failf(h, COHORT_ELIMIT, "persona train: iters %u is over "
			     "the limit of %u", r->u.train.iters,
			     HANDLER_MAX_ITERS);
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	cohort_persona_def def = { r->u.train.cols, r->u.train.ncols,
				   (cohort_persona_mode)r->u.train.mode,
				   r->u.train.max_delay_ms, 0 };
	cohort_train_opts o;
	memset(&o, 0, sizeof(o));
	o.k = r->u.train.k;
	o.iters = r->u.train.iters;
	o.seed = r->u.train.seed;
	o.sample = r->u.train.sample;
	o.minibatch = r->u.train.minibatch;
	o.background = r->u.train.background;
	rc = cohort_persona_train(t, r->name, r->u.train.ncols ? &def : NULL,
				  &o);
	if (rc < 0)
		return fail(h, rc);
	/* a retrain in the background has no version yet */
	cohort_persona_info info;
	bool bg = o.background &&
		cohort_persona_describe(t, r->name, &info) == 0 &&
		info.training;
	return model_version(h, r, t, w, bg);
}

static int op_upload(handler *h, const proto_req *r, proto_wbuf *w)
{
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	cohort_persona_def def = { r->u.upload.cols, r->u.upload.ncols,
				   (cohort_persona_mode)r->u.upload.mode,
				   r->u.upload.max_delay_ms, 0 };
	rc = cohort_persona_upload(t, r->name,
				   r->u.upload.ncols ? &def : NULL,
				   r->u.upload.k, r->u.upload.dim,
				   r->u.upload.centroids, r->u.upload.mean,
				   r->u.upload.sd);
	if (rc < 0)
		return fail(h, rc);
	return model_version(h, r, t, w, false);
}

/* ------------------------------------------------------------------------
 * Subscriptions
 * ------------------------------------------------------------------------ */
static sub *sub_find(handler *h, const cohort_table *t, const char *model)
{
	for (size_t i = 0; i < h->nsubs; i++)
		if (h->subs[i].t == t && strcmp(h->subs[i].model, model) == 0)
			return &h->subs[i];
	return NULL;
}

static int op_subscribe(handler *h, const proto_req *r, proto_wbuf *w)
{
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	if (sub_find(h, t, r->name))
		return failf(h, COHORT_EEXIST, "already subscribed to persona "
			     "model '%s' of table '%s'", r->name, r->table);
	uint32_t max = h->env->max_subs ? h->env->max_subs : 16;
	if (h->nsubs >= max)
		return failf(h, COHORT_ELIMIT, "a connection may hold %u "
			     "subscriptions", max);
	/* 0 starts at the oldest change kept, ~0 at the newest: reading no
	 * change moves the cursor there (and checks the model exists). A
	 * cursor in between stays, so the first push counts what was lost
	 * since. */
	uint64_t cursor = r->u.subscribe.cursor;
	if (cursor == 0 || cursor == UINT64_MAX) {
		if (cursor == UINT64_MAX)
			cursor = UINT64_MAX - 1;
		rc = cohort_persona_changes(t, r->name, &cursor, NULL, 0, NULL);
	} else {
		cohort_persona_info info;
		rc = cohort_persona_describe(t, r->name, &info);
	}
	if (rc < 0)
		return fail(h, rc);
	if (!h->changes) {
		h->changes = cmalloc(PUSH_BATCH * sizeof(*h->changes));
		if (!h->changes)
			return failf(h, COHORT_ENOMEM, "out of memory");
	}
	sub *s = crealloc(h->subs, (h->nsubs + 1) * sizeof(*s));
	if (!s)
		return failf(h, COHORT_ENOMEM, "out of memory");
	h->subs = s;
	s = &h->subs[h->nsubs++];
	s->t = t;
	memcpy(s->model, r->name, sizeof(s->model));
	s->cursor = cursor;
	s->id = r->hdr.id;
	size_t start;
	ok_begin(w, r, &start);
	proto_w_u64(w, cursor);
	proto_frame_end(w, start);
	return 0;
}

static void sub_remove(handler *h, sub *s)
{
	*s = h->subs[--h->nsubs];
}

static int op_unsubscribe(handler *h, const proto_req *r, proto_wbuf *w)
{
	cohort_table *t;
	int rc = table_of(h, r, &t);
	if (rc < 0)
		return rc;
	sub *s = sub_find(h, t, r->name);
	if (!s)
		return failf(h, COHORT_ENOTFOUND, "no subscription to persona "
			     "model '%s' of table '%s'", r->name, r->table);
	sub_remove(h, s);
	return op_empty(h, r, w);
}

bool handler_has_subs(const handler *h)
{
	return h->nsubs > 0;
}

bool handler_push(handler *h, proto_wbuf *w, size_t limit)
{
	bool any = false;
	for (size_t i = 0; i < h->nsubs && w->len < limit && !w->err;) {
		sub *s = &h->subs[i];
		uint64_t cursor = s->cursor, lost = 0;
		int n = cohort_persona_changes(s->t, s->model, &cursor,
					       h->changes, PUSH_BATCH, &lost);
		size_t start = w->len;
		if (n < 0) {
			/* the model is gone: say so once, then forget it */
			const char *d = cohort_errdetail();
			char msg[300];
			snprintf(msg, sizeof(msg), "subscription ended: %s",
				 d && d[0] ? d : cohort_strerror(n));
			size_t fs = proto_frame_begin(w, PROTO_OP_CHANGES,
						      PROTO_F_RESPONSE |
						      PROTO_F_PUSH, s->id);
			proto_w_i32(w, n);
			proto_w_str16(w, msg, strlen(msg));
			proto_frame_end(w, fs);
			sub_remove(h, s);
			any = true;
			continue;
		}
		if (n == 0 && lost == 0) {
			i++;
			continue;
		}
		size_t fs = proto_frame_begin(w, PROTO_OP_CHANGES,
					      PROTO_F_RESPONSE | PROTO_F_PUSH,
					      s->id);
		proto_w_i32(w, 0);
		proto_w_u64(w, lost);
		proto_w_u32(w, (uint32_t)n);
		for (int j = 0; j < n; j++) {
			const cohort_persona_change *c = &h->changes[j];
			proto_w_u64(w, c->seq);
			proto_w_i64(w, c->time);
			proto_w_u64(w, c->version);
			proto_w_u32(w, c->old_persona);
			proto_w_u32(w, c->new_persona);
			w_key(w, c->key, c->key_len);
		}
		proto_frame_end(w, fs);
		if (w->err) {
			w->len = start;    /* keep the cursor: next time */
			break;
		}
		s->cursor = cursor;
		any = true;
		if (n < PUSH_BATCH)
			i++;
	}
	return any;
}

/* ------------------------------------------------------------------------
 * Database
 * ------------------------------------------------------------------------ */
static int op_snapshot(handler *h, const proto_req *r, proto_wbuf *w)
{
	int rc = cohort_snapshot(h->env->db);
	if (rc < 0)
		return fail(h, rc);
	return op_empty(h, r, w);
}

static int op_stats(handler *h, const proto_req *r, proto_wbuf *w)
{
	cohort_db *db = h->env->db;
	uint64_t rows = 0, mem = 0, models = 0, assigned = 0, ppending = 0;
	uint64_t indexes = 0, nodes = 0, ipending = 0, ibytes = 0;
	size_t nt = cohort_db_ntables(db);
	for (size_t i = 0; i < nt; i++) {
		cohort_table *t;
		cohort_table_info ti;
		if (cohort_table_open(db, cohort_db_table_name(db, i), &t) < 0 ||
		    cohort_table_describe(t, &ti) < 0)
			continue;
		rows += ti.nrows;
		mem += ti.mem_bytes;
		const char *names[COHORT_MAX_MODELS > COHORT_MAX_INDEXES ?
				  COHORT_MAX_MODELS : COHORT_MAX_INDEXES];
		size_t n = 0;
		if (cohort_persona_models(t, names, COHORT_MAX_MODELS, &n) == 0)
			for (size_t j = 0; j < n && j < COHORT_MAX_MODELS; j++) {
				cohort_persona_info pi;
				if (cohort_persona_describe(t, names[j], &pi))
					continue;
				models++;
				assigned += pi.assigned;
				ppending += pi.pending;
			}
		if (cohort_index_list(t, names, COHORT_MAX_INDEXES, &n) == 0)
			for (size_t j = 0; j < n && j < COHORT_MAX_INDEXES; j++) {
				cohort_index_info xi;
				if (cohort_index_describe(t, names[j], &xi))
					continue;
				indexes++;
				nodes += xi.nodes;
				ipending += xi.pending;
				ibytes += xi.bytes;
			}
	}
	int conns = atomic_load(&live_conns);
	const struct { const char *name; uint64_t value; } st[] = {
		{ "tables", nt },
		{ "rows", rows },
		{ "mem_bytes", mem },
		{ "persona_models", models },
		{ "persona_assigned", assigned },
		{ "persona_pending", ppending },
		{ "indexes", indexes },
		{ "index_nodes", nodes },
		{ "index_pending", ipending },
		{ "index_bytes", ibytes },
		{ "connections", conns > 0 ? (uint64_t)conns : 0 },
	};
	size_t n = sizeof(st) / sizeof(st[0]);
	size_t start;
	ok_begin(w, r, &start);
	proto_w_u16(w, (uint16_t)n);
	for (size_t i = 0; i < n; i++) {
		w_name(w, st[i].name);
		proto_w_u64(w, st[i].value);
	}
	const char *io = cohort_db_io_path(db);
	if (!io)
		io = "";
	size_t iol = strlen(io);
	proto_w_str16(w, io, iol > 1024 ? 1024 : iol);
	proto_frame_end(w, start);
	return 0;
}

/* ------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------ */
handler *handler_new(const conn_env *env)
{
	handler *h = ccalloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->env = env;
	h->role = env->tokens ? PROTO_ROLE_NONE : PROTO_ROLE_ADMIN;
	return h;
}

void handler_free(handler *h)
{
	if (!h)
		return;
	cohort_batch_free(h->batch);
	cfree(h->cols);
	cfree(h->vals);
	cfree(h->vecbuf);
	cfree(h->keys);
	cfree(h->nbrs);
	cfree(h->batch_cols);
	cfree(h->subs);
	cfree(h->changes);
	proto_wbuf_free(&h->side);
	cfree(h);
}

int handler_role(const handler *h)
{
	return h->role;
}

bool handler_op_writes(int op)
{
	switch (op) {
	case PROTO_OP_TABLE_CREATE:
	case PROTO_OP_COLUMN_ADD:
	case PROTO_OP_INDEX_CREATE:
	case PROTO_OP_INDEX_DROP:
	case PROTO_OP_PUT:
	case PROTO_OP_EVENT:
	case PROTO_OP_DELETE:
	case PROTO_OP_PERSONA_TRAIN:
	case PROTO_OP_PERSONA_UPLOAD:
		return true;
	default:
		return false;
	}
}

static int dispatch(handler *h, const proto_req *r, proto_arena *a,
		    proto_wbuf *w, bool *close)
{
	switch (r->hdr.opcode) {
	case PROTO_OP_HELLO: return op_hello(h, r, w);
	case PROTO_OP_AUTH: return op_auth(h, r, w, close);
	case PROTO_OP_PING: return op_empty(h, r, w);
	case PROTO_OP_TABLE_CREATE: return op_table_create(h, r, a, w);
	case PROTO_OP_COLUMN_ADD: return op_column_add(h, r, w);
	case PROTO_OP_DESCRIBE: return op_describe(h, r, w);
	case PROTO_OP_INDEX_CREATE: return op_index_create(h, r, w);
	case PROTO_OP_INDEX_DROP: return op_index_drop(h, r, w);
	case PROTO_OP_PUT: return op_write(h, r, a, w, W_PUT);
	case PROTO_OP_EVENT: return op_write(h, r, a, w, W_EVENT);
	case PROTO_OP_DELETE: return op_write(h, r, a, w, W_DELETE);
	case PROTO_OP_GET: return op_get(h, r, w);
	case PROTO_OP_GET_MANY: return op_get_many(h, r, w);
	case PROTO_OP_FILTER_COUNT: return op_filter(h, r, a, w, false);
	case PROTO_OP_FILTER_LIST: return op_filter(h, r, a, w, true);
	case PROTO_OP_KNN: return op_knn(h, r, a, w);
	case PROTO_OP_PERSONA_ASSIGN: return op_assign(h, r, w);
	case PROTO_OP_PERSONA_MEMBERS: return op_members(h, r, a, w);
	case PROTO_OP_PERSONA_SIZES: return op_sizes(h, r, a, w);
	case PROTO_OP_PERSONA_DESCRIBE: return op_persona_describe(h, r, a, w);
	case PROTO_OP_PERSONA_TRAIN: return op_train(h, r, w);
	case PROTO_OP_PERSONA_UPLOAD: return op_upload(h, r, w);
	case PROTO_OP_SUBSCRIBE: return op_subscribe(h, r, w);
	case PROTO_OP_UNSUBSCRIBE: return op_unsubscribe(h, r, w);
	case PROTO_OP_SNAPSHOT: return op_snapshot(h, r, w);
	case PROTO_OP_STATS: return op_stats(h, r, w);
	default:
		return failf(h, COHORT_ENOTSUP, "opcode 0x%02x is not a request",
			     r->hdr.opcode);
	}
}

int handler_exec(handler *h, const proto_req *r, proto_arena *a,
		 proto_wbuf *w, bool *close)
{
	*close = false;
	h->msg[0] = 0;
	size_t start = w->len, saved_limit = w->limit;
	w->limit = start + PROTO_HDR_LEN + (size_t)h->env->max_frame;
	int rc = dispatch(h, r, a, w, close);
	if (rc == 0 && w->err) {
		rc = w->err;
		if (rc == COHORT_ELIMIT)
			failf(h, rc, "the response would be over the frame "
			      "limit of %u bytes: ask for fewer keys, columns "
			      "or rows", h->env->max_frame);
		else if (rc == COHORT_ENOMEM)
			failf(h, rc, "out of memory for the response");
		else
			failf(h, rc, "the response cannot be encoded: %s",
			      cohort_strerror(rc));
	}
	w->limit = saved_limit;
	if (rc < 0) {
		w->len = start;
		w->err = 0;
		proto_resp_error(w, r->hdr.opcode, r->hdr.id, rc, h->msg);
	}
	return rc;
}
