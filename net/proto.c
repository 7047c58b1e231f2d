/*
 * proto.c -- the wire protocol of docs/protocol.md as pure functions over
 * byte buffers: frame headers, the writer (a growable buffer whose first
 * error sticks), the reader (a cursor that never reads past its end and
 * whose first error sticks), the arena that decoded arrays live in, every
 * request's encoder and decoder, and the responses the protocol shares
 * (status and message, the GET_MANY columnar block).
 *
 * Invariants. A decoder reads only [p, end): every read goes through
 * r_take, which checks the room first, and every count read off the wire
 * is checked against the bytes left (times the smallest encoding of one
 * element) before anything is allocated for it, so a small hostile frame
 * cannot make the arena allocate much. Decoded arrays live in the arena;
 * keys and cat strings point into the frame. Multi-byte fields are copied
 * with memcpy (a frame's fields are not aligned; UBSan checks it), and
 * arrays of floats are copied as they lie, which is their wire form on the
 * little-endian hosts this file is built for.
 *
 * Hot path: GET and GET_MANY are decoded with one header parse, a name
 * check through a table, and a few bump allocations from an arena whose
 * block is kept between requests: no malloc per request or per field.
 *
 * Threads: no state of its own; a wbuf, rbuf or arena belongs to one
 * thread at a time.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "proto.c copies fields as they lie in memory: little-endian hosts only"
#endif

_Static_assert(COHORT_NOW == INT64_MIN, "the wire's 'now' is INT64_MIN");

/* ------------------------------------------------------------------------
 * Opcodes and roles
 * ------------------------------------------------------------------------ */
const char *proto_op_name(int op)
{
	switch (op) {
#define PROTO_X_NAME(name, code, str, role)                                   \
	case (code):                                                          \
		return (str);
		PROTO_OPS(PROTO_X_NAME)
#undef PROTO_X_NAME
	default:
		return NULL;
	}
}

int proto_op_role(int op)
{
	switch (op) {
#define PROTO_X_ROLE(name, code, str, role)                                   \
	case (code):                                                          \
		return (role);
		PROTO_OPS(PROTO_X_ROLE)
#undef PROTO_X_ROLE
	default:
		return -1;
	}
}

const char *proto_role_name(int role)
{
	switch (role) {
	case PROTO_ROLE_NONE:
		return "none";
	case PROTO_ROLE_READ:
		return "read";
	case PROTO_ROLE_WRITE:
		return "write";
	case PROTO_ROLE_ADMIN:
		return "admin";
	default:
		return NULL;
	}
}

/* ------------------------------------------------------------------------
 * Frame headers
 * ------------------------------------------------------------------------ */
static inline uint16_t ld16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static inline uint32_t ld32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline void st16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static inline void st32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

void proto_hdr_encode(uint8_t *buf, const proto_hdr *h)
{
	st16(buf, PROTO_MAGIC);
	buf[2] = PROTO_VERSION;
	buf[3] = h->opcode;
	st16(buf + 4, h->flags);
	st16(buf + 6, 0);
	st32(buf + 8, h->id);
	st32(buf + 12, h->body_len);
}

int proto_hdr_decode(const uint8_t *buf, size_t len, uint32_t max_body,
		     proto_hdr *out)
{
	/* The magic is checked on the first bytes there are: garbage is
	 * refused at once, not after 16 bytes of it. */
	if ((len >= 1 && buf[0] != (PROTO_MAGIC & 0xff)) ||
	    (len >= 2 && buf[1] != (PROTO_MAGIC >> 8))) {
		memset(out, 0, sizeof(*out));
		return COHORT_EPROTO;
	}
	if (len < PROTO_HDR_LEN)
		return PROTO_MORE;
	out->opcode = buf[3];
	out->flags = ld16(buf + 4);
	out->id = ld32(buf + 8);
	out->body_len = ld32(buf + 12);
	if (buf[2] != PROTO_VERSION || ld16(buf + 6) != 0 ||
	    (out->flags & ~(PROTO_F_RESPONSE | PROTO_F_PUSH)))
		return COHORT_EPROTO;
	if (max_body && out->body_len > max_body)
		return COHORT_ELIMIT;
	return PROTO_HDR_LEN;
}

/* ------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------ */
static void w_fail(proto_wbuf *w, int code)
{
	if (!w->err)
		w->err = code;
}

/* Room for n more bytes, or NULL with w->err set. */
static uint8_t *w_grow(proto_wbuf *w, size_t n)
{
	if (w->err)
		return NULL;
	if (n > SIZE_MAX / 2 - w->len) {
		w_fail(w, COHORT_ENOMEM);
		return NULL;
	}
	size_t need = w->len + n;
	if (w->limit && need > w->limit) {
		w_fail(w, COHORT_ELIMIT);
		return NULL;
	}
	if (need > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap < need)
			cap *= 2;
		uint8_t *p = realloc(w->buf, cap);
		if (!p) {
			w_fail(w, COHORT_ENOMEM);
			return NULL;
		}
		w->buf = p;
		w->cap = cap;
	}
	uint8_t *dst = w->buf + w->len;
	w->len = need;
	return dst;
}

static inline uint8_t *w_take(proto_wbuf *w, size_t n)
{
	if (!w->err && n <= w->cap - w->len &&
	    (!w->limit || w->len + n <= w->limit)) {
		uint8_t *dst = w->buf + w->len;
		w->len += n;
		return dst;
	}
	return w_grow(w, n);
}

void proto_wbuf_free(proto_wbuf *w)
{
	free(w->buf);
	w->buf = NULL;
	w->len = w->cap = 0;
	w->err = 0;
}

void proto_w_bytes(proto_wbuf *w, const void *p, size_t n)
{
	uint8_t *dst = w_take(w, n);
	if (dst && n)
		memcpy(dst, p, n);
}

/* The fixed-size writers: one memcpy of the value as it lies. */
#define W_FIXED(fn, type)                                                     \
	void fn(proto_wbuf *w, type v)                                        \
	{                                                                     \
		uint8_t *dst = w_take(w, sizeof(v));                          \
		if (dst)                                                      \
			memcpy(dst, &v, sizeof(v));                           \
	}
W_FIXED(proto_w_u8, uint8_t)
W_FIXED(proto_w_u16, uint16_t)
W_FIXED(proto_w_u32, uint32_t)
W_FIXED(proto_w_u64, uint64_t)
W_FIXED(proto_w_i32, int32_t)
W_FIXED(proto_w_i64, int64_t)
W_FIXED(proto_w_f32, float)
W_FIXED(proto_w_f64, double)
#undef W_FIXED

void proto_w_str8(proto_wbuf *w, const void *p, size_t n)
{
	if (n > UINT8_MAX) {
		w_fail(w, COHORT_EINVAL);
		return;
	}
	uint8_t *dst = w_take(w, 1 + n);
	if (!dst)
		return;
	dst[0] = (uint8_t)n;
	if (n)
		memcpy(dst + 1, p, n);
}

void proto_w_str16(proto_wbuf *w, const void *p, size_t n)
{
	if (n > UINT16_MAX) {
		w_fail(w, COHORT_EINVAL);
		return;
	}
	uint8_t *dst = w_take(w, 2 + n);
	if (!dst)
		return;
	st16(dst, (uint16_t)n);
	if (n)
		memcpy(dst + 2, p, n);
}

void proto_w_value(proto_wbuf *w, const cohort_value *v)
{
	switch (v->type) {
	case COHORT_NULL:
		proto_w_u8(w, COHORT_NULL);
		break;
	case COHORT_F32:
		proto_w_u8(w, COHORT_F32);
		proto_w_f32(w, v->v.f32);
		break;
	case COHORT_F64:
		proto_w_u8(w, COHORT_F64);
		proto_w_f64(w, v->v.f64);
		break;
	case COHORT_I32:
		proto_w_u8(w, COHORT_I32);
		proto_w_i32(w, v->v.i32);
		break;
	case COHORT_I64:
		proto_w_u8(w, COHORT_I64);
		proto_w_i64(w, v->v.i64);
		break;
	case COHORT_BOOL:
		proto_w_u8(w, COHORT_BOOL);
		proto_w_u8(w, v->v.b ? 1 : 0);
		break;
	case COHORT_CAT:
		if (v->v.str.len && !v->v.str.ptr) {
			w_fail(w, COHORT_EINVAL);
			return;
		}
		proto_w_u8(w, COHORT_CAT);
		proto_w_str16(w, v->v.str.ptr, v->v.str.len);
		break;
	case COHORT_VEC:
		if (v->v.vec.dim == 0 || v->v.vec.dim > COHORT_MAX_DIM ||
		    !v->v.vec.ptr) {
			w_fail(w, COHORT_EINVAL);
			return;
		}
		proto_w_u8(w, COHORT_VEC);
		proto_w_u32(w, v->v.vec.dim);
		proto_w_bytes(w, v->v.vec.ptr,
			      (size_t)v->v.vec.dim * sizeof(float));
		break;
	default:
		w_fail(w, COHORT_EINVAL);
		break;
	}
}

size_t proto_frame_begin(proto_wbuf *w, uint8_t opcode, uint16_t flags,
			 uint32_t id)
{
	size_t start = w->len;
	uint8_t *dst = w_take(w, PROTO_HDR_LEN);
	if (dst) {
		proto_hdr h = { opcode, flags, id, 0 };
		proto_hdr_encode(dst, &h);
	}
	return start;
}

void proto_frame_end(proto_wbuf *w, size_t start)
{
	if (w->err || w->len < start + PROTO_HDR_LEN)
		return;
	size_t body = w->len - start - PROTO_HDR_LEN;
	if (body > UINT32_MAX) {
		w_fail(w, COHORT_ELIMIT);
		return;
	}
	st32(w->buf + start + 12, (uint32_t)body);
}

/* ------------------------------------------------------------------------
 * The arena
 * ------------------------------------------------------------------------ */
struct proto_arena_block {
	struct proto_arena_block *next;    /* older blocks */
	size_t size;                       /* bytes of data */
	size_t off;                        /* bytes of data handed out */
};

#define ARENA_ALIGN 16
#define ARENA_HDR                                                             \
	((sizeof(struct proto_arena_block) + ARENA_ALIGN - 1) &               \
	 ~(size_t)(ARENA_ALIGN - 1))
#define ARENA_FIRST (16u << 10)    /* the first block's data */
#define ARENA_KEEP (256u << 10)    /* the most reset keeps */
#define ARENA_BIG (1u << 20)       /* blocks stop doubling here */

_Static_assert(ARENA_HDR % ARENA_ALIGN == 0, "arena data alignment");

static inline uint8_t *block_data(struct proto_arena_block *b)
{
	return (uint8_t *)b + ARENA_HDR;
}

static size_t arena_round(size_t n)
{
	return n ? (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1)
		 : ARENA_ALIGN;
}

static bool arena_over(const proto_arena *a, size_t n)
{
	return a->limit && (n > a->limit || a->used > a->limit - n);
}

void *proto_arena_alloc(proto_arena *a, size_t n)
{
	if (n > SIZE_MAX / 4)
		return NULL;
	n = arena_round(n);
	if (arena_over(a, n))
		return NULL;
	struct proto_arena_block *b = a->head;
	if (!b || b->size - b->off < n) {
		size_t size = b ? b->size * 2 : ARENA_FIRST;
		if (size > ARENA_BIG)
			size = ARENA_BIG;
		if (size < n)
			size = n;
		struct proto_arena_block *nb = malloc(ARENA_HDR + size);
		if (!nb)
			return NULL;
		nb->next = b;
		nb->size = size;
		nb->off = 0;
		a->head = b = nb;
	}
	void *p = block_data(b) + b->off;
	b->off += n;
	a->used += n;
	return p;
}

void proto_arena_reset(proto_arena *a)
{
	struct proto_arena_block *keep = NULL, *b = a->head;
	while (b) {
		struct proto_arena_block *next = b->next;
		if (!keep && b->size <= ARENA_KEEP) {
			keep = b;
			keep->off = 0;
			keep->next = NULL;
		} else {
			free(b);
		}
		b = next;
	}
	a->head = keep;
	a->used = 0;
}

void proto_arena_free(proto_arena *a)
{
	struct proto_arena_block *b = a->head;
	while (b) {
		struct proto_arena_block *next = b->next;
		free(b);
		b = next;
	}
	a->head = NULL;
	a->used = 0;
}

/* ------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------ */
static void r_fail(proto_rbuf *r, int code, const char *why)
{
	if (!r->err) {
		r->err = code;
		r->why = why;
	}
}

static inline size_t r_left(const proto_rbuf *r)
{
	return (size_t)(r->end - r->p);
}

/* n bytes at the cursor, or NULL (the error set). */
static inline const uint8_t *r_take(proto_rbuf *r, size_t n)
{
	if (r->err || r_left(r) < n) {
		r_fail(r, COHORT_EPROTO, "body ends in the middle of a field");
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	return p;
}

/* The fixed-size readers: zero once anything failed. */
#define R_FIXED(fn, type)                                                     \
	type fn(proto_rbuf *r)                                                \
	{                                                                     \
		type v = 0;                                                   \
		const uint8_t *p = r_take(r, sizeof(v));                      \
		if (p)                                                        \
			memcpy(&v, p, sizeof(v));                             \
		return v;                                                     \
	}
R_FIXED(proto_r_u8, uint8_t)
R_FIXED(proto_r_u16, uint16_t)
R_FIXED(proto_r_u32, uint32_t)
R_FIXED(proto_r_u64, uint64_t)
R_FIXED(proto_r_i32, int32_t)
R_FIXED(proto_r_i64, int64_t)
R_FIXED(proto_r_f32, float)
R_FIXED(proto_r_f64, double)
#undef R_FIXED

const uint8_t *proto_r_bytes(proto_rbuf *r, size_t n)
{
	return r_take(r, n);
}

const char *proto_r_str8(proto_rbuf *r, size_t *n)
{
	*n = 0;
	const uint8_t *p = r_take(r, 1);
	if (!p)
		return NULL;
	const uint8_t *s = r_take(r, p[0]);
	if (s)
		*n = p[0];
	return (const char *)s;
}

const char *proto_r_str16(proto_rbuf *r, size_t *n)
{
	*n = 0;
	const uint8_t *p = r_take(r, 2);
	if (!p)
		return NULL;
	size_t len = ld16(p);
	const uint8_t *s = r_take(r, len);
	if (s)
		*n = len;
	return (const char *)s;
}

/* [A-Za-z0-9_]: the characters of a name. */
static const uint8_t name_char[256] = {
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
	['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['_'] = 1,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
	['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
	['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
	['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
	['Y'] = 1, ['Z'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
	['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
	['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
	['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
	['y'] = 1, ['z'] = 1,
};

static bool name_valid(const char *s, size_t n, int allow_empty)
{
	if (n > COHORT_MAX_NAME || (n == 0 && !allow_empty))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!name_char[(uint8_t)s[i]])
			return false;
	return true;
}

void proto_r_name(proto_rbuf *r, char *out, int allow_empty)
{
	size_t n;
	const char *s = proto_r_str8(r, &n);
	out[0] = '\0';
	if (!s)
		return;
	if (!name_valid(s, n, allow_empty)) {
		r_fail(r, COHORT_EPROTO, n == 0 ? "empty name" :
		       n > COHORT_MAX_NAME ? "name longer than 64 bytes" :
		       "name with a character outside [A-Za-z0-9_]");
		return;
	}
	memcpy(out, s, n);
	out[n] = '\0';
}

/* n bytes from the arena, or NULL with r->err saying why. */
static void *r_alloc(proto_rbuf *r, proto_arena *a, size_t n)
{
	if (r->err)
		return NULL;
	void *p = proto_arena_alloc(a, n);
	if (!p) {
		if (arena_over(a, arena_round(n)))
			r_fail(r, COHORT_ELIMIT, "request needs more memory "
			       "than the decoder's limit");
		else
			r_fail(r, COHORT_ENOMEM, "out of memory");
	}
	return p;
}

/*
 * An array of n elements of size bytes, each taking at least min_wire
 * bytes of what is left of the body: a count the body cannot hold is
 * malformed before anything is allocated for it. NULL for n == 0.
 */
static void *r_array(proto_rbuf *r, proto_arena *a, size_t n, size_t size,
		     size_t min_wire)
{
	if (r->err || n == 0)
		return NULL;
	if (n > r_left(r) / min_wire) {
		r_fail(r, COHORT_EPROTO, "count larger than the body holds");
		return NULL;
	}
	return r_alloc(r, a, n * size);
}

/* dim floats, copied aligned into the arena. */
static float *r_floats(proto_rbuf *r, proto_arena *a, size_t n)
{
	if (r->err || n == 0)
		return NULL;
	if (n > r_left(r) / sizeof(float)) {
		r_fail(r, COHORT_EPROTO, "body ends inside a vector");
		return NULL;
	}
	float *v = r_alloc(r, a, n * sizeof(float));
	const uint8_t *p = r_take(r, n * sizeof(float));
	if (v && p)
		memcpy(v, p, n * sizeof(float));
	return r->err ? NULL : v;
}

void proto_r_value(proto_rbuf *r, proto_arena *a, cohort_value *out)
{
	*out = cohort_null();
	uint8_t type = proto_r_u8(r);
	if (r->err)
		return;
	switch (type) {
	case COHORT_NULL:
		break;
	case COHORT_F32:
		*out = cohort_f32(proto_r_f32(r));
		break;
	case COHORT_F64:
		*out = cohort_f64(proto_r_f64(r));
		break;
	case COHORT_I32:
		*out = cohort_i32(proto_r_i32(r));
		break;
	case COHORT_I64:
		*out = cohort_i64(proto_r_i64(r));
		break;
	case COHORT_BOOL: {
		uint8_t b = proto_r_u8(r);
		if (b > 1)
			r_fail(r, COHORT_EPROTO, "bool value other than 0 or 1");
		*out = cohort_bool(b == 1);
		break;
	}
	case COHORT_CAT: {
		size_t n;
		const char *s = proto_r_str16(r, &n);
		*out = cohort_catn(s, (uint32_t)n);
		break;
	}
	case COHORT_VEC: {
		uint32_t dim = proto_r_u32(r);
		if (!r->err && (dim == 0 || dim > COHORT_MAX_DIM)) {
			r_fail(r, COHORT_EPROTO, "vector dim not 1 to 4096");
			break;
		}
		const float *v = r_floats(r, a, dim);
		*out = cohort_vec(v, dim);
		break;
	}
	default:
		r_fail(r, COHORT_EPROTO, "unknown value type code");
		break;
	}
	if (r->err)
		*out = cohort_null();
}

/* A key: str8 of 1..255 bytes, pointing into the frame. */
static void r_key(proto_rbuf *r, proto_key *k)
{
	size_t n;
	const char *s = proto_r_str8(r, &n);
	k->ptr = s;
	k->len = (uint8_t)n;
	if (s && n == 0)
		r_fail(r, COHORT_EPROTO, "empty key");
}

/* ------------------------------------------------------------------------
 * Request bodies
 * ------------------------------------------------------------------------ */
typedef struct dec {
	proto_rbuf r;
	proto_arena *a;
	uint32_t max_batch;
	const char *bad_name;      /* the first name that broke the rule */
} dec;

#define BAD_NAME(what) what " name is not 1 to 64 characters of [A-Za-z0-9_]"

/*
 * A name in a request. One that breaks the rule is well formed all the
 * same (docs/protocol.md): it reads as "" and the request, once decoded
 * to its end, is answered COHORT_EBADNAME with the connection kept.
 */
static void d_name(dec *d, char *out, int allow_empty, const char *bad)
{
	size_t n;
	const char *s = proto_r_str8(&d->r, &n);
	out[0] = '\0';
	if (!s)
		return;
	if (!name_valid(s, n, allow_empty)) {
		if (!d->bad_name)
			d->bad_name = bad;
		return;
	}
	memcpy(out, s, n);
	out[n] = '\0';
}

/* u32 count of rows or keys, within max_batch. */
static uint32_t d_batch(dec *d)
{
	uint32_t n = proto_r_u32(&d->r);
	if (!d->r.err && d->max_batch && n > d->max_batch)
		r_fail(&d->r, COHORT_ELIMIT, "more rows or keys than the "
		       "server's max_batch");
	return d->r.err ? 0 : n;
}

/* n column ids (u16 each) into an int array. */
static int *d_cols(dec *d, size_t n)
{
	int *cols = r_array(&d->r, d->a, n, sizeof(int), 2);
	const uint8_t *p = cols ? r_take(&d->r, n * 2) : NULL;
	if (!p)
		return NULL;
	for (size_t i = 0; i < n; i++)
		cols[i] = ld16(p + 2 * i);
	return cols;
}

static void d_column(dec *d, proto_column *c)
{
	d_name(d, c->name, 0, BAD_NAME("column"));
	c->type = proto_r_u8(&d->r);
	c->dim = proto_r_u32(&d->r);
	c->half_life_ms = proto_r_i64(&d->r);
	if (!d->r.err && (c->type < COHORT_F32 || c->type > COHORT_LAST))
		r_fail(&d->r, COHORT_EPROTO, "unknown column type code");
}

static void d_filter(dec *d, proto_filter *f)
{
	proto_rbuf *r = &d->r;
	uint16_t n = proto_r_u16(r);
	f->nnodes = 0;
	f->nodes = NULL;
	if (r->err)
		return;
	if (n > PROTO_MAX_FILTER_NODES) {
		r_fail(r, COHORT_ELIMIT, "filter of more than 256 nodes");
		return;
	}
	proto_filter_node *nodes = r_array(r, d->a, n, sizeof(*nodes), 3);
	for (uint16_t i = 0; nodes && i < n && !r->err; i++) {
		proto_filter_node *nd = &nodes[i];
		memset(nd, 0, sizeof(*nd));
		nd->kind = proto_r_u8(r);
		switch (nd->kind) {
		case PROTO_FILTER_CMP:
			nd->column = proto_r_u16(r);
			nd->cmp = proto_r_u8(r);
			if (!r->err && (nd->cmp < COHORT_EQ ||
					nd->cmp > COHORT_GE))
				r_fail(r, COHORT_EPROTO, "unknown comparison "
				       "code");
			nd->nvalues = 1;
			nd->values = r_alloc(r, d->a, sizeof(cohort_value));
			if (nd->values)
				proto_r_value(r, d->a, nd->values);
			break;
		case PROTO_FILTER_IN:
			nd->column = proto_r_u16(r);
			nd->nvalues = proto_r_u16(r);
			nd->values = r_array(r, d->a, nd->nvalues,
					     sizeof(cohort_value), 1);
			for (uint16_t j = 0; nd->values && j < nd->nvalues &&
			     !r->err; j++)
				proto_r_value(r, d->a, &nd->values[j]);
			break;
		case PROTO_FILTER_IS_NULL:
		case PROTO_FILTER_NOT_NULL:
			nd->column = proto_r_u16(r);
			break;
		case PROTO_FILTER_AND:
		case PROTO_FILTER_OR:
			nd->a = proto_r_u16(r);
			nd->b = proto_r_u16(r);
			if (!r->err && (nd->a >= i || nd->b >= i))
				r_fail(r, COHORT_EPROTO, "filter node refers to "
				       "itself or a later node");
			break;
		case PROTO_FILTER_NOT:
			nd->a = proto_r_u16(r);
			if (!r->err && nd->a >= i)
				r_fail(r, COHORT_EPROTO, "filter node refers to "
				       "itself or a later node");
			break;
		case PROTO_FILTER_PERSONA:
			d_name(d, nd->model, 0, BAD_NAME("model"));
			nd->persona = proto_r_u32(r);
			break;
		default:
			r_fail(r, COHORT_EPROTO, "unknown filter node kind");
			break;
		}
	}
	if (!r->err) {
		f->nnodes = n;
		f->nodes = nodes;
	}
}

static void d_hello(dec *d, proto_req *q)
{
	q->u.hello.version = proto_r_u16(&d->r);
	/* The client's name is for logs only: any bytes, the first 64 kept,
	 * with what is not printable ASCII shown as '?'. */
	size_t n;
	const char *s = proto_r_str8(&d->r, &n);
	if (n > COHORT_MAX_NAME)
		n = COHORT_MAX_NAME;
	for (size_t i = 0; s && i < n; i++)
		q->u.hello.client[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	q->u.hello.client[s ? n : 0] = '\0';
}

static void d_put(dec *d, proto_req *q)
{
	proto_rbuf *r = &d->r;
	uint32_t n = d_batch(d);
	/* a row is at least a 1-byte key, a time and a field count */
	proto_put_row *rows = r_array(r, d->a, n, sizeof(*rows), 12);
	for (uint32_t i = 0; rows && i < n && !r->err; i++) {
		proto_put_row *row = &rows[i];
		r_key(r, &row->key);
		row->time = proto_r_i64(r);
		row->nfields = proto_r_u16(r);
		row->fields = r_array(r, d->a, row->nfields,
				      sizeof(cohort_field), 3);
		for (uint16_t j = 0; row->fields && j < row->nfields &&
		     !r->err; j++) {
			row->fields[j].column = proto_r_u16(r);
			proto_r_value(r, d->a, &row->fields[j].value);
		}
	}
	q->u.put.nrows = n;
	q->u.put.rows = rows;
}

static void d_event(dec *d, proto_req *q)
{
	proto_rbuf *r = &d->r;
	uint32_t n = d_batch(d);
	proto_event_row *rows = r_array(r, d->a, n, sizeof(*rows), 12);
	for (uint32_t i = 0; rows && i < n && !r->err; i++) {
		proto_event_row *row = &rows[i];
		r_key(r, &row->key);
		row->time = proto_r_i64(r);
		row->nupdates = proto_r_u16(r);
		row->updates = r_array(r, d->a, row->nupdates,
				       sizeof(cohort_update), 4);
		for (uint16_t j = 0; row->updates && j < row->nupdates &&
		     !r->err; j++) {
			cohort_update *u = &row->updates[j];
			u->column = proto_r_u16(r);
			uint8_t op = proto_r_u8(r);
			if (!r->err && (op < COHORT_OP_SET ||
					op > COHORT_OP_OBSERVE))
				r_fail(r, COHORT_EPROTO, "unknown event op code");
			u->op = r->err ? COHORT_OP_SET : (cohort_op)op;
			proto_r_value(r, d->a, &u->value);
		}
	}
	q->u.event.nrows = n;
	q->u.event.rows = rows;
}

static void d_keys(dec *d, uint32_t *nkeys, proto_key **keys)
{
	uint32_t n = d_batch(d);
	proto_key *k = r_array(&d->r, d->a, n, sizeof(*k), 2);
	/* the hot loop of GET_MANY and DELETE, with the cursor in registers */
	const uint8_t *p = d->r.p, *end = d->r.end;
	for (uint32_t i = 0; k && i < n; i++) {
		size_t len = p < end ? *p : 0;
		if (len == 0 || (size_t)(end - p) - 1 < len) {
			r_fail(&d->r, COHORT_EPROTO, p < end && len == 0 ?
			       "empty key" : "body ends in the middle of a key");
			break;
		}
		k[i].ptr = (const char *)p + 1;
		k[i].len = (uint8_t)len;
		p += 1 + len;
	}
	if (!d->r.err)
		d->r.p = p;
	*nkeys = n;
	*keys = k;
}

static void d_get(dec *d, proto_req *q, int many)
{
	proto_rbuf *r = &d->r;
	q->u.get.at = proto_r_i64(r);
	uint16_t ncols = proto_r_u16(r);
	if (!r->err && ncols > COHORT_MAX_COLUMNS)
		r_fail(r, COHORT_ELIMIT, "more columns than a table has");
	q->u.get.ncols = ncols;
	q->u.get.cols = d_cols(d, ncols);
	if (many) {
		d_keys(d, &q->u.get.nkeys, &q->u.get.keys);
		return;
	}
	proto_key *k = r_alloc(r, d->a, sizeof(*k));
	if (!k)
		return;
	r_key(r, k);
	q->u.get.nkeys = 1;
	q->u.get.keys = k;
}

static void d_knn(dec *d, proto_req *q)
{
	proto_rbuf *r = &d->r;
	d_name(d, q->name, 0, BAD_NAME("index"));
	q->u.knn.k = proto_r_u32(r);
	q->u.knn.ef = proto_r_u32(r);
	q->u.knn.at = proto_r_i64(r);
	if (!r->err && q->u.knn.k > COHORT_MAX_K)
		r_fail(r, COHORT_ELIMIT, "k over 1000");
	uint8_t by = proto_r_u8(r);
	if (r->err)
		return;
	if (by == 0) {
		r_key(r, &q->u.knn.key);
	} else if (by == 1) {
		uint32_t dim = proto_r_u32(r);
		if (!r->err && (dim == 0 || dim > COHORT_MAX_DIM))
			r_fail(r, COHORT_EPROTO, "vector dim not 1 to 4096");
		q->u.knn.vec = r_floats(r, d->a, dim);
		q->u.knn.dim = dim;
	} else {
		r_fail(r, COHORT_EPROTO, "knn 'by' other than 0 (key) or 1 "
		       "(vector)");
	}
	d_filter(d, &q->u.knn.filter);
}

static void d_assign(dec *d, proto_req *q)
{
	proto_rbuf *r = &d->r;
	d_name(d, q->name, 0, BAD_NAME("model"));
	q->u.assign.m = proto_r_u8(r);
	if (!r->err && q->u.assign.m > COHORT_PERSONA_M_MAX)
		r_fail(r, COHORT_ELIMIT, "m over 32");
	uint8_t by = proto_r_u8(r);
	if (r->err)
		return;
	if (by == 0) {
		r_key(r, &q->u.assign.key);
	} else if (by == 1) {
		uint16_t n = proto_r_u16(r);
		cohort_value *v = r_array(r, d->a, n, sizeof(*v), 1);
		for (uint16_t i = 0; v && i < n && !r->err; i++)
			proto_r_value(r, d->a, &v[i]);
		q->u.assign.nvalues = n;
		q->u.assign.values = v;
	} else {
		r_fail(r, COHORT_EPROTO, "assign 'by' other than 0 (key) or 1 "
		       "(values)");
	}
}

/* u8 ncols then the columns of a model: at most its inputs. */
static int *d_model_cols(dec *d, uint8_t *ncols)
{
	*ncols = proto_r_u8(&d->r);
	if (!d->r.err && *ncols > COHORT_PERSONA_MAX_INPUTS)
		r_fail(&d->r, COHORT_ELIMIT, "more than 64 model inputs");
	return d_cols(d, *ncols);
}

static uint8_t d_mode(dec *d)
{
	uint8_t mode = proto_r_u8(&d->r);
	if (!d->r.err && mode > COHORT_PERSONA_BACKGROUND)
		r_fail(&d->r, COHORT_EPROTO, "persona mode other than 0 or 1");
	return mode;
}

static void d_train(dec *d, proto_req *q)
{
	proto_rbuf *r = &d->r;
	d_name(d, q->name, 0, BAD_NAME("model"));
	q->u.train.cols = d_model_cols(d, &q->u.train.ncols);
	q->u.train.mode = d_mode(d);
	q->u.train.max_delay_ms = proto_r_u32(r);
	q->u.train.k = proto_r_u32(r);
	q->u.train.iters = proto_r_u32(r);
	q->u.train.seed = proto_r_u64(r);
	q->u.train.sample = proto_r_u64(r);
	uint8_t flags = proto_r_u8(r);
	if (!r->err && (flags & ~3u))
		r_fail(r, COHORT_EPROTO, "train flags other than bits 0 and 1");
	q->u.train.minibatch = flags & 1;
	q->u.train.background = (flags >> 1) & 1;
}

static void d_upload(dec *d, proto_req *q)
{
	proto_rbuf *r = &d->r;
	d_name(d, q->name, 0, BAD_NAME("model"));
	q->u.upload.cols = d_model_cols(d, &q->u.upload.ncols);
	q->u.upload.mode = d_mode(d);
	q->u.upload.max_delay_ms = proto_r_u32(r);
	uint32_t k = proto_r_u32(r), dim = proto_r_u32(r);
	if (!r->err && (k > COHORT_MAX_PERSONAS || dim > COHORT_MAX_DIM))
		r_fail(r, COHORT_ELIMIT, "upload: k over 65536 or dim over 4096");
	q->u.upload.k = k;
	q->u.upload.dim = dim;
	q->u.upload.centroids = r_floats(r, d->a, (size_t)k * dim);
	uint8_t has_stats = proto_r_u8(r);
	if (r->err)
		return;
	if (has_stats > 1) {
		r_fail(r, COHORT_EPROTO, "has_stats other than 0 or 1");
		return;
	}
	if (!has_stats || dim == 0)
		return;
	if (dim > r_left(r) / (2 * sizeof(double))) {
		r_fail(r, COHORT_EPROTO, "body ends inside the model's stats");
		return;
	}
	double *mean = r_alloc(r, d->a, dim * sizeof(double));
	double *sd = r_alloc(r, d->a, dim * sizeof(double));
	const uint8_t *pm = r_take(r, dim * sizeof(double));
	const uint8_t *ps = r_take(r, dim * sizeof(double));
	if (r->err)
		return;
	memcpy(mean, pm, dim * sizeof(double));
	memcpy(sd, ps, dim * sizeof(double));
	q->u.upload.mean = mean;
	q->u.upload.sd = sd;
}

static void d_body(dec *d, proto_req *q)
{
	proto_rbuf *r = &d->r;
	switch (q->hdr.opcode) {
	case PROTO_OP_HELLO:
		d_hello(d, q);
		break;
	case PROTO_OP_AUTH: {
		size_t n;
		q->u.auth.token = proto_r_str8(r, &n);
		q->u.auth.token_len = (uint8_t)n;
		break;
	}
	case PROTO_OP_PING:
	case PROTO_OP_SNAPSHOT:
	case PROTO_OP_STATS:
		break;
	case PROTO_OP_TABLE_CREATE: {
		d_name(d, q->table, 0, BAD_NAME("table"));
		q->u.table_create.ttl_ms = proto_r_i64(r);
		uint16_t n = proto_r_u16(r);
		if (!r->err && n > COHORT_MAX_COLUMNS)
			r_fail(r, COHORT_ELIMIT, "more than 1024 columns");
		/* a column: name, type, dim, half-life */
		proto_column *c = r_array(r, d->a, n, sizeof(*c), 15);
		for (uint16_t i = 0; c && i < n && !r->err; i++)
			d_column(d, &c[i]);
		q->u.table_create.ncols = n;
		q->u.table_create.cols = c;
		break;
	}
	case PROTO_OP_COLUMN_ADD:
		d_name(d, q->table, 0, BAD_NAME("table"));
		d_column(d, &q->u.column_add);
		break;
	case PROTO_OP_DESCRIBE:
		d_name(d, q->table, 1, BAD_NAME("table"));
		break;
	case PROTO_OP_INDEX_CREATE: {
		d_name(d, q->table, 0, BAD_NAME("table"));
		d_name(d, q->name, 0, BAD_NAME("index"));
		q->u.index_create.column = proto_r_u16(r);
		uint8_t metric = proto_r_u8(r);
		if (!r->err && metric > COHORT_METRIC_COSINE)
			r_fail(r, COHORT_EPROTO, "unknown metric code");
		cohort_index_opts *o = &q->u.index_create.opts;
		o->metric = r->err ? COHORT_METRIC_L2 : (cohort_metric)metric;
		o->M = proto_r_u32(r);
		o->ef_construction = proto_r_u32(r);
		o->ef_search = proto_r_u32(r);
		o->lo = proto_r_f32(r);
		o->hi = proto_r_f32(r);
		break;
	}
	case PROTO_OP_INDEX_DROP:
	case PROTO_OP_PERSONA_SIZES:
	case PROTO_OP_PERSONA_DESCRIBE:
	case PROTO_OP_UNSUBSCRIBE:
		d_name(d, q->table, 0, BAD_NAME("table"));
		d_name(d, q->name, 0, q->hdr.opcode == PROTO_OP_INDEX_DROP ?
		       BAD_NAME("index") : BAD_NAME("model"));
		break;
	case PROTO_OP_PUT:
		d_name(d, q->table, 0, BAD_NAME("table"));
		d_put(d, q);
		break;
	case PROTO_OP_EVENT:
		d_name(d, q->table, 0, BAD_NAME("table"));
		d_event(d, q);
		break;
	case PROTO_OP_DELETE:
		d_name(d, q->table, 0, BAD_NAME("table"));
		d_keys(d, &q->u.del.nkeys, &q->u.del.keys);
		break;
	case PROTO_OP_GET:
	case PROTO_OP_GET_MANY:
		d_name(d, q->table, 0, BAD_NAME("table"));
		d_get(d, q, q->hdr.opcode == PROTO_OP_GET_MANY);
		break;
	case PROTO_OP_FILTER_COUNT:
	case PROTO_OP_FILTER_LIST:
		d_name(d, q->table, 0, BAD_NAME("table"));
		q->u.filter.at = proto_r_i64(r);
		if (q->hdr.opcode == PROTO_OP_FILTER_LIST)
			q->u.filter.limit = proto_r_u32(r);
		d_filter(d, &q->u.filter.filter);
		break;
	case PROTO_OP_KNN:
		d_name(d, q->table, 0, BAD_NAME("table"));
		d_knn(d, q);
		break;
	case PROTO_OP_PERSONA_ASSIGN:
		d_name(d, q->table, 0, BAD_NAME("table"));
		d_assign(d, q);
		break;
	case PROTO_OP_PERSONA_MEMBERS:
		d_name(d, q->table, 0, BAD_NAME("table"));
		d_name(d, q->name, 0, BAD_NAME("model"));
		q->u.members.persona = proto_r_u32(r);
		q->u.members.at = proto_r_i64(r);
		q->u.members.limit = proto_r_u32(r);
		d_filter(d, &q->u.members.filter);
		break;
	case PROTO_OP_PERSONA_TRAIN:
		d_name(d, q->table, 0, BAD_NAME("table"));
		d_train(d, q);
		break;
	case PROTO_OP_PERSONA_UPLOAD:
		d_name(d, q->table, 0, BAD_NAME("table"));
		d_upload(d, q);
		break;
	case PROTO_OP_SUBSCRIBE:
		d_name(d, q->table, 0, BAD_NAME("table"));
		d_name(d, q->name, 0, BAD_NAME("model"));
		q->u.subscribe.cursor = proto_r_u64(r);
		break;
	case PROTO_OP_CHANGES:
		r_fail(r, COHORT_EPROTO, "CHANGES is a push, never a request");
		break;
	default:
		/* unknown to version 1: skipped, for an ENOTSUP answer */
		r->p = r->end;
		break;
	}
}

int proto_req_decode(const uint8_t *buf, size_t len, uint32_t max_body,
		     uint32_t max_batch, proto_arena *a, proto_req *out)
{
	proto_hdr h;
	int rc = proto_hdr_decode(buf, len, max_body, &h);
	if (rc == PROTO_MORE)
		return rc;
	memset(out, 0, sizeof(*out));
	out->hdr = h;
	if (rc < 0) {
		out->why = rc == COHORT_ELIMIT ? "frame body over the limit" :
			   "bad magic, version, flags or reserved bytes in "
			   "the frame header";
		return rc;
	}
	if (h.flags) {
		out->why = "a request carrying the RESPONSE or PUSH flag";
		return COHORT_EPROTO;
	}
	if (h.body_len > INT_MAX - PROTO_HDR_LEN) {
		out->why = "frame body over the limit";
		return COHORT_ELIMIT;
	}
	if (len - PROTO_HDR_LEN < h.body_len)
		return PROTO_MORE;

	dec d = {
		.r = { buf + PROTO_HDR_LEN, buf + PROTO_HDR_LEN + h.body_len,
		       0, NULL },
		.a = a,
		.max_batch = max_batch,
	};
	d_body(&d, out);
	if (!d.r.err && d.r.p != d.r.end)
		r_fail(&d.r, COHORT_EPROTO, "bytes left over after the body");
	if (!d.r.err && d.bad_name)
		r_fail(&d.r, COHORT_EBADNAME, d.bad_name);
	if (d.r.err) {
		/* nothing half-decoded is left for a careless caller */
		memset(&out->u, 0, sizeof(out->u));
		out->why = d.r.why;
		return d.r.err;
	}
	return (int)(PROTO_HDR_LEN + h.body_len);
}

/* ------------------------------------------------------------------------
 * Request encoders
 * ------------------------------------------------------------------------ */
static void w_name(proto_wbuf *w, const char *name, int allow_empty)
{
	size_t n = strnlen(name, COHORT_MAX_NAME + 1);
	if (!name_valid(name, n, allow_empty)) {
		w_fail(w, COHORT_EBADNAME);
		return;
	}
	proto_w_str8(w, name, n);
}

static void w_key(proto_wbuf *w, const proto_key *k)
{
	if (k->len == 0 || !k->ptr) {
		w_fail(w, COHORT_EKEY);
		return;
	}
	proto_w_str8(w, k->ptr, k->len);
}

static void w_col(proto_wbuf *w, int column)
{
	if (column < 0 || column > UINT16_MAX) {
		w_fail(w, COHORT_EINVAL);
		return;
	}
	proto_w_u16(w, (uint16_t)column);
}

static void w_cols(proto_wbuf *w, const int *cols, size_t n)
{
	if (n && !cols)
		w_fail(w, COHORT_EINVAL);
	for (size_t i = 0; i < n && !w->err; i++)
		w_col(w, cols[i]);
}

static void w_column(proto_wbuf *w, const proto_column *c)
{
	w_name(w, c->name, 0);
	proto_w_u8(w, c->type);
	proto_w_u32(w, c->dim);
	proto_w_i64(w, c->half_life_ms);
}

static void w_filter(proto_wbuf *w, const proto_filter *f)
{
	if (f->nnodes && !f->nodes) {
		w_fail(w, COHORT_EINVAL);
		return;
	}
	proto_w_u16(w, f->nnodes);
	for (uint16_t i = 0; i < f->nnodes && !w->err; i++) {
		const proto_filter_node *nd = &f->nodes[i];
		proto_w_u8(w, nd->kind);
		switch (nd->kind) {
		case PROTO_FILTER_CMP:
			proto_w_u16(w, nd->column);
			proto_w_u8(w, nd->cmp);
			if (nd->values)
				proto_w_value(w, &nd->values[0]);
			else
				w_fail(w, COHORT_EINVAL);
			break;
		case PROTO_FILTER_IN:
			proto_w_u16(w, nd->column);
			proto_w_u16(w, nd->nvalues);
			if (nd->nvalues && !nd->values)
				w_fail(w, COHORT_EINVAL);
			for (uint16_t j = 0; j < nd->nvalues && !w->err; j++)
				proto_w_value(w, &nd->values[j]);
			break;
		case PROTO_FILTER_IS_NULL:
		case PROTO_FILTER_NOT_NULL:
			proto_w_u16(w, nd->column);
			break;
		case PROTO_FILTER_AND:
		case PROTO_FILTER_OR:
			proto_w_u16(w, nd->a);
			proto_w_u16(w, nd->b);
			break;
		case PROTO_FILTER_NOT:
			proto_w_u16(w, nd->a);
			break;
		case PROTO_FILTER_PERSONA:
			w_name(w, nd->model, 0);
			proto_w_u32(w, nd->persona);
			break;
		default:
			w_fail(w, COHORT_EINVAL);
			break;
		}
	}
}

static void e_put(proto_wbuf *w, const proto_req *q)
{
	if (q->u.put.nrows && !q->u.put.rows)
		w_fail(w, COHORT_EINVAL);
	proto_w_u32(w, q->u.put.nrows);
	for (uint32_t i = 0; i < q->u.put.nrows && !w->err; i++) {
		const proto_put_row *row = &q->u.put.rows[i];
		w_key(w, &row->key);
		proto_w_i64(w, row->time);
		proto_w_u16(w, row->nfields);
		if (row->nfields && !row->fields)
			w_fail(w, COHORT_EINVAL);
		for (uint16_t j = 0; j < row->nfields && !w->err; j++) {
			w_col(w, row->fields[j].column);
			proto_w_value(w, &row->fields[j].value);
		}
	}
}

static void e_event(proto_wbuf *w, const proto_req *q)
{
	if (q->u.event.nrows && !q->u.event.rows)
		w_fail(w, COHORT_EINVAL);
	proto_w_u32(w, q->u.event.nrows);
	for (uint32_t i = 0; i < q->u.event.nrows && !w->err; i++) {
		const proto_event_row *row = &q->u.event.rows[i];
		w_key(w, &row->key);
		proto_w_i64(w, row->time);
		proto_w_u16(w, row->nupdates);
		if (row->nupdates && !row->updates)
			w_fail(w, COHORT_EINVAL);
		for (uint16_t j = 0; j < row->nupdates && !w->err; j++) {
			const cohort_update *u = &row->updates[j];
			w_col(w, u->column);
			if (u->op < COHORT_OP_SET || u->op > COHORT_OP_OBSERVE)
				w_fail(w, COHORT_EINVAL);
			proto_w_u8(w, (uint8_t)u->op);
			proto_w_value(w, &u->value);
		}
	}
}

static void e_keys(proto_wbuf *w, uint32_t n, const proto_key *keys)
{
	if (n && !keys)
		w_fail(w, COHORT_EINVAL);
	proto_w_u32(w, n);
	for (uint32_t i = 0; i < n && !w->err; i++)
		w_key(w, &keys[i]);
}

static void e_get(proto_wbuf *w, const proto_req *q, int many)
{
	proto_w_i64(w, q->u.get.at);
	proto_w_u16(w, q->u.get.ncols);
	w_cols(w, q->u.get.cols, q->u.get.ncols);
	if (many) {
		e_keys(w, q->u.get.nkeys, q->u.get.keys);
	} else if (q->u.get.nkeys != 1 || !q->u.get.keys) {
		w_fail(w, COHORT_EINVAL);
	} else {
		w_key(w, &q->u.get.keys[0]);
	}
}

static void e_body(proto_wbuf *w, const proto_req *q)
{
	switch (q->hdr.opcode) {
	case PROTO_OP_HELLO:
		proto_w_u16(w, q->u.hello.version);
		proto_w_str8(w, q->u.hello.client,
			     strnlen(q->u.hello.client, COHORT_MAX_NAME));
		break;
	case PROTO_OP_AUTH:
		if (q->u.auth.token_len && !q->u.auth.token)
			w_fail(w, COHORT_EINVAL);
		proto_w_str8(w, q->u.auth.token, q->u.auth.token_len);
		break;
	case PROTO_OP_PING:
	case PROTO_OP_SNAPSHOT:
	case PROTO_OP_STATS:
		break;
	case PROTO_OP_TABLE_CREATE:
		w_name(w, q->table, 0);
		proto_w_i64(w, q->u.table_create.ttl_ms);
		proto_w_u16(w, q->u.table_create.ncols);
		if (q->u.table_create.ncols && !q->u.table_create.cols)
			w_fail(w, COHORT_EINVAL);
		for (uint16_t i = 0; i < q->u.table_create.ncols && !w->err; i++)
			w_column(w, &q->u.table_create.cols[i]);
		break;
	case PROTO_OP_COLUMN_ADD:
		w_name(w, q->table, 0);
		w_column(w, &q->u.column_add);
		break;
	case PROTO_OP_DESCRIBE:
		w_name(w, q->table, 1);
		break;
	case PROTO_OP_INDEX_CREATE: {
		const cohort_index_opts *o = &q->u.index_create.opts;
		w_name(w, q->table, 0);
		w_name(w, q->name, 0);
		proto_w_u16(w, q->u.index_create.column);
		proto_w_u8(w, (uint8_t)o->metric);
		proto_w_u32(w, o->M);
		proto_w_u32(w, o->ef_construction);
		proto_w_u32(w, o->ef_search);
		proto_w_f32(w, o->lo);
		proto_w_f32(w, o->hi);
		break;
	}
	case PROTO_OP_INDEX_DROP:
	case PROTO_OP_PERSONA_SIZES:
	case PROTO_OP_PERSONA_DESCRIBE:
	case PROTO_OP_UNSUBSCRIBE:
		w_name(w, q->table, 0);
		w_name(w, q->name, 0);
		break;
	case PROTO_OP_PUT:
		w_name(w, q->table, 0);
		e_put(w, q);
		break;
	case PROTO_OP_EVENT:
		w_name(w, q->table, 0);
		e_event(w, q);
		break;
	case PROTO_OP_DELETE:
		w_name(w, q->table, 0);
		e_keys(w, q->u.del.nkeys, q->u.del.keys);
		break;
	case PROTO_OP_GET:
	case PROTO_OP_GET_MANY:
		w_name(w, q->table, 0);
		e_get(w, q, q->hdr.opcode == PROTO_OP_GET_MANY);
		break;
	case PROTO_OP_FILTER_COUNT:
	case PROTO_OP_FILTER_LIST:
		w_name(w, q->table, 0);
		proto_w_i64(w, q->u.filter.at);
		if (q->hdr.opcode == PROTO_OP_FILTER_LIST)
			proto_w_u32(w, q->u.filter.limit);
		w_filter(w, &q->u.filter.filter);
		break;
	case PROTO_OP_KNN:
		w_name(w, q->table, 0);
		w_name(w, q->name, 0);
		proto_w_u32(w, q->u.knn.k);
		proto_w_u32(w, q->u.knn.ef);
		proto_w_i64(w, q->u.knn.at);
		if (q->u.knn.key.len) {
			proto_w_u8(w, 0);
			w_key(w, &q->u.knn.key);
		} else {
			uint32_t dim = q->u.knn.dim;
			if (dim == 0 || dim > COHORT_MAX_DIM || !q->u.knn.vec)
				w_fail(w, COHORT_EINVAL);
			proto_w_u8(w, 1);
			proto_w_u32(w, dim);
			if (!w->err)
				proto_w_bytes(w, q->u.knn.vec,
					      (size_t)dim * sizeof(float));
		}
		w_filter(w, &q->u.knn.filter);
		break;
	case PROTO_OP_PERSONA_ASSIGN:
		w_name(w, q->table, 0);
		w_name(w, q->name, 0);
		proto_w_u8(w, q->u.assign.m);
		if (q->u.assign.key.len) {
			proto_w_u8(w, 0);
			w_key(w, &q->u.assign.key);
		} else {
			proto_w_u8(w, 1);
			proto_w_u16(w, q->u.assign.nvalues);
			if (q->u.assign.nvalues && !q->u.assign.values)
				w_fail(w, COHORT_EINVAL);
			for (uint16_t i = 0; i < q->u.assign.nvalues && !w->err;
			     i++)
				proto_w_value(w, &q->u.assign.values[i]);
		}
		break;
	case PROTO_OP_PERSONA_MEMBERS:
		w_name(w, q->table, 0);
		w_name(w, q->name, 0);
		proto_w_u32(w, q->u.members.persona);
		proto_w_i64(w, q->u.members.at);
		proto_w_u32(w, q->u.members.limit);
		w_filter(w, &q->u.members.filter);
		break;
	case PROTO_OP_PERSONA_TRAIN:
		w_name(w, q->table, 0);
		w_name(w, q->name, 0);
		proto_w_u8(w, q->u.train.ncols);
		w_cols(w, q->u.train.cols, q->u.train.ncols);
		proto_w_u8(w, q->u.train.mode);
		proto_w_u32(w, q->u.train.max_delay_ms);
		proto_w_u32(w, q->u.train.k);
		proto_w_u32(w, q->u.train.iters);
		proto_w_u64(w, q->u.train.seed);
		proto_w_u64(w, q->u.train.sample);
		proto_w_u8(w, (uint8_t)((q->u.train.minibatch ? 1 : 0) |
					(q->u.train.background ? 2 : 0)));
		break;
	case PROTO_OP_PERSONA_UPLOAD: {
		size_t n = (size_t)q->u.upload.k * q->u.upload.dim;
		bool stats = q->u.upload.mean && q->u.upload.sd;
		w_name(w, q->table, 0);
		w_name(w, q->name, 0);
		proto_w_u8(w, q->u.upload.ncols);
		w_cols(w, q->u.upload.cols, q->u.upload.ncols);
		proto_w_u8(w, q->u.upload.mode);
		proto_w_u32(w, q->u.upload.max_delay_ms);
		proto_w_u32(w, q->u.upload.k);
		proto_w_u32(w, q->u.upload.dim);
		if (n && !q->u.upload.centroids)
			w_fail(w, COHORT_EINVAL);
		else
			proto_w_bytes(w, q->u.upload.centroids,
				      n * sizeof(float));
		proto_w_u8(w, stats ? 1 : 0);
		if (stats) {
			size_t dbytes = (size_t)q->u.upload.dim * sizeof(double);
			proto_w_bytes(w, q->u.upload.mean, dbytes);
			proto_w_bytes(w, q->u.upload.sd, dbytes);
		}
		break;
	}
	case PROTO_OP_SUBSCRIBE:
		w_name(w, q->table, 0);
		w_name(w, q->name, 0);
		proto_w_u64(w, q->u.subscribe.cursor);
		break;
	default:
		/* CHANGES is a push; anything else version 1 does not know */
		w_fail(w, COHORT_EINVAL);
		break;
	}
}

void proto_req_encode(proto_wbuf *w, const proto_req *r)
{
	size_t start = proto_frame_begin(w, r->hdr.opcode, r->hdr.flags,
					 r->hdr.id);
	e_body(w, r);
	proto_frame_end(w, start);
}

/* ------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------ */
void proto_resp_error(proto_wbuf *w, uint8_t opcode, uint32_t id, int status,
		      const char *msg)
{
	size_t start = proto_frame_begin(w, opcode, PROTO_F_RESPONSE, id);
	proto_w_i32(w, status);
	if (status < 0) {
		if (!msg)
			msg = cohort_strerror(status);
		size_t n = strlen(msg);
		proto_w_str16(w, msg, n > UINT16_MAX ? UINT16_MAX : n);
	}
	proto_frame_end(w, start);
}

int proto_resp_status(proto_rbuf *r, const char **msg, size_t *msg_len)
{
	const char *m = NULL;
	size_t n = 0;
	int32_t status = proto_r_i32(r);
	if (!r->err && status > 0)
		r_fail(r, COHORT_EPROTO, "positive response status");
	if (!r->err && status < 0)
		m = proto_r_str16(r, &n);
	if (msg)
		*msg = r->err ? NULL : m;
	if (msg_len)
		*msg_len = r->err ? 0 : n;
	return r->err ? r->err : status;
}

/* ------------------------------------------------------------------------
 * The GET_MANY columnar block
 * ------------------------------------------------------------------------ */

typedef struct blk_str {
	const char *ptr;
	uint32_t len;
} blk_str;

/* Scratch of one block: a map code -> string index for the cat column at
 * hand (open addressing, reset per column), and the string table. */
typedef struct blk_cats {
	uint64_t *slots;           /* (code + 1) << 32 | index; 0 empty */
	size_t mask;
	blk_str *strs;
	size_t nstrs, cap;
} blk_cats;

#define BLK_STACK_SLOTS 512
#define BLK_STACK_STRS 256

static uint32_t cat_index(blk_cats *c, proto_wbuf *w, const cohort_table *t,
			  proto_cat_fn cat, int column, uint32_t code)
{
	size_t h = ((uint64_t)code * 0x9e3779b97f4a7c15ull) >> 32;
	for (size_t i = h & c->mask;; i = (i + 1) & c->mask) {
		uint64_t s = c->slots[i];
		if (!s) {
			uint32_t len = 0;
			const char *str = cat(t, column, code, &len);
			blk_str *strs = c->strs;
			if (c->nstrs == c->cap) {
				/* the first table lives on the caller's stack */
				size_t cap = c->cap * 2;
				strs = c->cap > BLK_STACK_STRS ?
					realloc(c->strs, cap * sizeof(*strs)) :
					malloc(cap * sizeof(*strs));
				if (!strs) {
					w_fail(w, COHORT_ENOMEM);
					return 0;
				}
				if (c->cap <= BLK_STACK_STRS)
					memcpy(strs, c->strs,
					       c->nstrs * sizeof(*strs));
				c->strs = strs;
				c->cap = cap;
			}
			strs[c->nstrs].ptr = str ? str : "";
			strs[c->nstrs].len = str ? len : 0;
			c->slots[i] = ((uint64_t)code + 1) << 32 | c->nstrs;
			return (uint32_t)c->nstrs++;
		}
		if ((s >> 32) == (uint64_t)code + 1)
			return (uint32_t)s;
	}
}

void proto_w_block(proto_wbuf *w, const cohort_table *t,
		   const cohort_batch *b, proto_cat_fn cat)
{
	size_t n = b->nkeys;
	if (n > UINT32_MAX || b->ncols > UINT16_MAX) {
		w_fail(w, COHORT_EINVAL);
		return;
	}
	proto_w_u32(w, (uint32_t)n);
	proto_w_u16(w, (uint16_t)b->ncols);
	proto_w_bytes(w, b->status, n);
	uint8_t *times = w_take(w, n * 8);
	for (size_t i = 0; times && i < n; i++) {
		int64_t tm = b->status[i] == COHORT_ROW_PRESENT ? b->time[i] : 0;
		memcpy(times + i * 8, &tm, 8);
	}

	uint64_t stack_slots[BLK_STACK_SLOTS];
	blk_str stack_strs[BLK_STACK_STRS];
	blk_cats cats = { NULL, 0, stack_strs, 0, BLK_STACK_STRS };
	for (size_t j = 0; j < b->ncols && !w->err; j++) {
		const cohort_block *col = &b->cols[j];
		if (col->column < 0 || col->column > UINT16_MAX ||
		    col->width > UINT32_MAX) {
			w_fail(w, COHORT_EINVAL);
			break;
		}
		proto_w_u16(w, (uint16_t)col->column);
		proto_w_u8(w, (uint8_t)col->type);
		proto_w_u32(w, col->dim);
		proto_w_u32(w, (uint32_t)col->width);
		proto_w_bytes(w, col->valid, n);
		if (col->type != COHORT_CAT) {
			/* the batch zeroes a null value's bytes already */
			proto_w_bytes(w, col->values, n * col->width);
			continue;
		}
		if (!cats.slots) {
			size_t nslots = 16;
			while (nslots < 2 * n)
				nslots *= 2;
			cats.slots = nslots <= BLK_STACK_SLOTS ? stack_slots :
				malloc(nslots * sizeof(uint64_t));
			if (!cats.slots) {
				w_fail(w, COHORT_ENOMEM);
				break;
			}
			cats.mask = nslots - 1;
		}
		memset(cats.slots, 0, (cats.mask + 1) * sizeof(uint64_t));
		uint8_t *dst = w_take(w, n * 4);
		const uint32_t *codes = col->values;
		for (size_t i = 0; dst && i < n && !w->err; i++) {
			uint32_t idx = col->valid[i] ?
				cat_index(&cats, w, t, cat, col->column,
					  codes[i]) : 0;
			memcpy(dst + i * 4, &idx, 4);
		}
	}
	proto_w_u32(w, (uint32_t)cats.nstrs);
	for (size_t i = 0; i < cats.nstrs && !w->err; i++)
		proto_w_str16(w, cats.strs[i].ptr, cats.strs[i].len);
	if (cats.slots != stack_slots)
		free(cats.slots);
	if (cats.strs != stack_strs)
		free(cats.strs);
}

/* Bytes per value of a block column's type; 0 for a type no block has. */
static uint32_t block_width(uint8_t type, uint32_t dim)
{
	switch (type) {
	case COHORT_F32:
	case COHORT_I32:
	case COHORT_CAT:
		return dim == 1 ? 4 : 0;
	case COHORT_F64:
	case COHORT_I64:
		return dim == 1 ? 8 : 0;
	case COHORT_BOOL:
		return dim == 1 ? 1 : 0;
	case COHORT_VEC:
		return dim >= 1 && dim <= COHORT_MAX_DIM ? 4 * dim : 0;
	default:
		return 0;
	}
}

static bool bytes_below(const uint8_t *p, size_t n, uint8_t bound)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] >= bound)
			return false;
	return true;
}

int proto_r_block(proto_rbuf *r, proto_arena *a, proto_block *out)
{
	memset(out, 0, sizeof(*out));
	uint32_t n = proto_r_u32(r);
	uint16_t ncols = proto_r_u16(r);
	if (r->err)
		return r->err;
	/* a key takes a status and a time */
	if (n > r_left(r) / 9) {
		r_fail(r, COHORT_EPROTO, "block: more keys than the body holds");
		return r->err;
	}
	const uint8_t *status = r_take(r, n);
	if (status && !bytes_below(status, n, 3))
		r_fail(r, COHORT_EPROTO, "block: row status not 0, 1 or 2");
	int64_t *times = n ? r_alloc(r, a, (size_t)n * 8) : NULL;
	const uint8_t *pt = r_take(r, (size_t)n * 8);
	if (times && pt)
		memcpy(times, pt, (size_t)n * 8);
	/* a column takes its header and its valid bytes */
	proto_block_col *cols = r_array(r, a, ncols, sizeof(*cols), 11);
	for (uint16_t j = 0; cols && j < ncols && !r->err; j++) {
		proto_block_col *c = &cols[j];
		c->column = proto_r_u16(r);
		c->type = proto_r_u8(r);
		c->dim = proto_r_u32(r);
		c->width = proto_r_u32(r);
		if (r->err)
			break;
		if (!block_width(c->type, c->dim) ||
		    c->width != block_width(c->type, c->dim)) {
			r_fail(r, COHORT_EPROTO, "block: bad column type, dim "
			       "or width");
			break;
		}
		c->valid = r_take(r, n);
		if (c->valid && !bytes_below(c->valid, n, 2))
			r_fail(r, COHORT_EPROTO, "block: valid byte not 0 or 1");
		if (r->err)
			break;
		if (n > r_left(r) / c->width) {
			r_fail(r, COHORT_EPROTO, "block: body ends inside a "
			       "column");
			break;
		}
		size_t bytes = (size_t)n * c->width;
		void *v = n ? r_alloc(r, a, bytes) : NULL;
		const uint8_t *pv = r_take(r, bytes);
		if (v && pv)
			memcpy(v, pv, bytes);
		if (!r->err && c->type == COHORT_BOOL &&
		    !bytes_below(v, n, 2))
			r_fail(r, COHORT_EPROTO, "block: bool not 0 or 1");
		c->values = v;
	}
	uint32_t nstrings = proto_r_u32(r);
	if (!r->err && nstrings > r_left(r) / 2)
		r_fail(r, COHORT_EPROTO, "block: more strings than the body "
		       "holds");
	const char **strs = r_array(r, a, nstrings, sizeof(*strs), 2);
	uint16_t *lens = r_array(r, a, nstrings, sizeof(*lens), 2);
	for (uint32_t i = 0; strs && lens && i < nstrings && !r->err; i++) {
		size_t len;
		strs[i] = proto_r_str16(r, &len);
		lens[i] = (uint16_t)len;
	}
	/* every cat value names a string of the table */
	for (uint16_t j = 0; cols && j < ncols && !r->err; j++) {
		if (cols[j].type != COHORT_CAT)
			continue;
		for (uint32_t i = 0; i < n; i++) {
			uint32_t code;
			memcpy(&code, (const uint8_t *)cols[j].values + i * 4, 4);
			if (cols[j].valid[i] && code >= nstrings) {
				r_fail(r, COHORT_EPROTO, "block: cat value past "
				       "the string table");
				break;
			}
		}
	}
	if (r->err) {
		memset(out, 0, sizeof(*out));
		return r->err;
	}
	out->nkeys = n;
	out->ncols = ncols;
	out->status = status;
	out->time = times;
	out->cols = cols;
	out->nstrings = nstrings;
	out->strings = strs;
	out->str_len = lens;
	return 0;
}
