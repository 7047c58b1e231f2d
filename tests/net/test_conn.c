/*
 * test_conn.c -- a whole cohortd connection driven in-process: requests
 * encoded with proto_req_encode go through conn_in_space / conn_process
 * over an in-memory database, responses are read back with the proto_r_*
 * readers. Every opcode's round trip, pipelining in order, byte-at-a-time
 * input, auth and role denials, malformed and oversized frames, output
 * back-pressure and subscriptions pushing persona changes.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../store/tmpdir.h"
#include "auth.h"
#include "conn.h"
#include "metrics.h"
#include "proto.h"

#define OK(x)                                                                 \
	do {                                                                  \
		int rc_ = (x);                                                \
		cr_assert(rc_ >= 0, "%s: %s (%s)", #x, cohort_strerror(rc_),  \
			  cohort_errdetail());                                \
	} while (0)

#define T0 1700000000000LL         /* event times and read times */

static cohort_db *db;
static conn_env env;
static auth_tokens *tokens;
static conn *c;
static proto_wbuf pending;         /* requests not yet fed */
static proto_wbuf got;             /* everything the connection sent */
static size_t got_read;            /* frames of it already read */
static uint32_t next_id;
static int last_rc;                /* conn_process's last return */

static void env_init(cohort_db *d)
{
	memset(&env, 0, sizeof(env));
	env.db = d;
	env.max_frame = 1u << 20;
	env.max_batch = 1000;
	env.max_k = 100;
	env.out_limit = 1u << 20;
	env.max_subs = 16;
	env.server_name = "cohortd-test";
}

static void setup(void)
{
	OK(cohort_open(NULL, NULL, &db));
	env_init(db);
	c = conn_new(&env, "test:1");
	cr_assert_not_null(c);
}

static void teardown(void)
{
	conn_free(c);
	c = NULL;
	proto_wbuf_free(&pending);
	proto_wbuf_free(&got);
	got_read = 0;
	cohort_close(db);
	db = NULL;
	auth_free(tokens);
	tokens = NULL;
	tmpdir_remove();
}

TestSuite(conn, .init = setup, .fini = teardown);

/* Take everything the connection has to send. */
static void drain(void)
{
	size_t len;
	const uint8_t *p = conn_out(c, &len);
	while (len) {
		proto_w_bytes(&got, p, len);
		conn_out_consume(c, len);
		p = conn_out(c, &len);
	}
}

/* Feed bytes at most chunk at a time (0: as much as there is room for),
 * processing and draining after each. */
static int feed_chunked(const uint8_t *p, size_t n, size_t chunk)
{
	last_rc = 0;
	do {
		size_t room;
		uint8_t *dst = conn_in_space(c, &room);
		cr_assert(room > 0 || n == 0, "no room while output drains");
		size_t k = n < room ? n : room;
		if (chunk && k > chunk)
			k = chunk;
		memcpy(dst, p, k);
		conn_in_commit(c, k);
		p += k;
		n -= k;
		last_rc = conn_process(c);
		if (conn_wrote(c))
			OK(cohort_sync_wait(db));
		drain();
	} while (n > 0 && last_rc != CONN_CLOSE);
	return last_rc;
}

static void send_req(const proto_req *r)
{
	proto_req_encode(&pending, r);
	cr_assert_eq(pending.err, 0, "encode: %s", cohort_strerror(pending.err));
}

static int flush(void)
{
	if (got_read == got.len)
		got.len = got_read = 0;
	int rc = feed_chunked(pending.buf, pending.len, 0);
	pending.len = 0;
	return rc;
}

typedef struct resp {
	proto_hdr h;
	proto_rbuf r;              /* at the payload */
	int status;
	char msg[1024];
} resp;

/* Whether a whole frame is waiting in got. */
static bool have_frame(void)
{
	proto_hdr h;
	size_t left = got.len - got_read;
	return proto_hdr_decode(got.buf + got_read, left, 0, &h) > 0 &&
	       left >= PROTO_HDR_LEN + (size_t)h.body_len;
}

/* The next frame the connection sent; valid until the next flush. */
static resp next_resp(void)
{
	resp x;
	memset(&x, 0, sizeof(x));
	cr_assert(have_frame(), "no response frame (%zu bytes left)",
		  got.len - got_read);
	const uint8_t *p = got.buf + got_read;
	cr_assert_eq(proto_hdr_decode(p, got.len - got_read, 0, &x.h),
		     PROTO_HDR_LEN);
	cr_assert(x.h.flags & PROTO_F_RESPONSE);
	x.r.p = p + PROTO_HDR_LEN;
	x.r.end = x.r.p + x.h.body_len;
	got_read += PROTO_HDR_LEN + x.h.body_len;
	const char *m = NULL;
	size_t ml = 0;
	x.status = proto_resp_status(&x.r, &m, &ml);
	if (m)
		snprintf(x.msg, sizeof(x.msg), "%.*s", (int)ml, m);
	return x;
}

static proto_req rq(uint8_t op, const char *table)
{
	proto_req r;
	memset(&r, 0, sizeof(r));
	r.hdr.opcode = op;
	r.hdr.id = ++next_id;
	if (table)
		snprintf(r.table, sizeof(r.table), "%s", table);
	return r;
}

/* Send one request, run it, and return its response (checked to be it). */
static resp call(const proto_req *r)
{
	send_req(r);
	flush();
	resp x = next_resp();
	cr_assert_eq(x.h.id, r->hdr.id, "response id %u for request %u",
		     x.h.id, r->hdr.id);
	cr_assert_eq(x.h.opcode, r->hdr.opcode);
	return x;
}

static resp call_ok(const proto_req *r)
{
	resp x = call(r);
	cr_assert_eq(x.status, 0, "%s: %s (%s)", proto_op_name(r->hdr.opcode),
		     cohort_strerror(x.status), x.msg);
	return x;
}

static void done(resp *x)
{
	cr_assert_eq(x->r.err, 0, "payload read past its end");
	cr_assert_eq(x->r.p, x->r.end, "%td bytes of payload left unread",
		     x->r.end - x->r.p);
}

/* ------------------------------------------------------------------------
 * A table to work on: cust(age i32, score f64, city cat, v vec4,
 * clicks counter, active bool).
 * ------------------------------------------------------------------------ */
enum { C_AGE, C_SCORE, C_CITY, C_V, C_CLICKS, C_ACTIVE, NCOLS };

static void make_table(void)
{
	proto_column cols[NCOLS] = {
		{ "age", COHORT_I32, 0, 0 }, { "score", COHORT_F64, 0, 0 },
		{ "city", COHORT_CAT, 0, 0 }, { "v", COHORT_VEC, 4, 0 },
		{ "clicks", COHORT_COUNTER, 0, 0 },
		{ "active", COHORT_BOOL, 0, 0 },
	};
	proto_req r = rq(PROTO_OP_TABLE_CREATE, "cust");
	r.u.table_create.ncols = NCOLS;
	r.u.table_create.cols = cols;
	resp x = call_ok(&r);
	done(&x);
}

static const char *cities[] = { "paris", "lyon", "nice" };

/* Row i: age 20 + i, score i / 2, city cities[i % 3], v all (i % 2) * 10
 * (two clear clusters), active i % 2. */
static void row_fields(int i, cohort_field *f, float *v)
{
	for (int j = 0; j < 4; j++)
		v[j] = (float)((i % 2) * 10) + (float)j * 0.01f;
	f[0] = (cohort_field){ C_AGE, cohort_i32(20 + i) };
	f[1] = (cohort_field){ C_SCORE, cohort_f64(i / 2.0) };
	f[2] = (cohort_field){ C_CITY, cohort_cat(cities[i % 3]) };
	f[3] = (cohort_field){ C_V, cohort_vec(v, 4) };
	f[4] = (cohort_field){ C_ACTIVE, cohort_bool(i % 2) };
}

static void put_rows(int from, int n)
{
	proto_put_row rows[64];
	cohort_field f[64][5];
	float v[64][4];
	char keys[64][16];
	cr_assert(n <= 64);
	for (int i = 0; i < n; i++) {
		int kl = snprintf(keys[i], 16, "k%03d", from + i);
		row_fields(from + i, f[i], v[i]);
		rows[i] = (proto_put_row){ { keys[i], (uint8_t)kl }, T0, 5,
					   f[i] };
	}
	proto_req r = rq(PROTO_OP_PUT, "cust");
	r.u.put.nrows = (uint32_t)n;
	r.u.put.rows = rows;
	resp x = call_ok(&r);
	cr_assert_eq(proto_r_u32(&x.r), (uint32_t)n);
	for (int i = 0; i < n; i++)
		cr_assert_eq(proto_r_i32(&x.r), 0, "row %d", i);
	cr_assert_eq(proto_r_u32(&x.r), 0);
	done(&x);
}

static proto_key key(const char *s)
{
	return (proto_key){ s, (uint8_t)strlen(s) };
}

static void name_is(proto_rbuf *r, const char *want)
{
	size_t n;
	const char *s = proto_r_str8(r, &n);
	cr_assert(s && n == strlen(want) && memcmp(s, want, n) == 0,
		  "name '%.*s', want '%s'", (int)n, s ? s : "", want);
}

/* ------------------------------------------------------------------------
 * Session
 * ------------------------------------------------------------------------ */
Test(conn, hello_announces_limits_and_role)
{
	proto_req r = rq(PROTO_OP_HELLO, NULL);
	r.u.hello.version = 7;
	snprintf(r.u.hello.client, sizeof(r.u.hello.client), "t");
	resp x = call_ok(&r);
	cr_assert_eq(proto_r_u16(&x.r), 1);
	cr_assert_eq(proto_r_u32(&x.r), env.max_frame);
	cr_assert_eq(proto_r_u32(&x.r), env.max_batch);
	cr_assert_eq(proto_r_u32(&x.r), env.max_k);
	cr_assert_eq(proto_r_u8(&x.r), 0, "auth required without tokens");
	cr_assert_eq(proto_r_u8(&x.r), PROTO_ROLE_ADMIN);
	name_is(&x.r, "cohortd-test");
	done(&x);
	cr_assert_eq(conn_role(c), PROTO_ROLE_ADMIN);
	cr_assert_str_eq(conn_peer(c), "test:1");

	proto_req p = rq(PROTO_OP_PING, NULL);
	x = call_ok(&p);
	done(&x);
}

/* ------------------------------------------------------------------------
 * Schema
 * ------------------------------------------------------------------------ */
Test(conn, table_create_column_add_describe)
{
	make_table();
	proto_req r = rq(PROTO_OP_TABLE_CREATE, "cust");
	resp x = call(&r);
	cr_assert_eq(x.status, COHORT_EEXIST);
	cr_assert(strstr(x.msg, "cust"), "message '%s'", x.msg);

	r = rq(PROTO_OP_COLUMN_ADD, "cust");
	r.u.column_add = (proto_column){ "recency", COHORT_DECAY, 0, 60000 };
	x = call_ok(&r);
	cr_assert_eq(proto_r_u16(&x.r), NCOLS);
	done(&x);

	r = rq(PROTO_OP_COLUMN_ADD, "nope");
	r.u.column_add = (proto_column){ "x", COHORT_F32, 0, 0 };
	x = call(&r);
	cr_assert_eq(x.status, COHORT_ENOTABLE);

	r = rq(PROTO_OP_DESCRIBE, "");
	x = call_ok(&r);
	cr_assert_eq(proto_r_u16(&x.r), 1);
	name_is(&x.r, "cust");
	done(&x);

	put_rows(0, 3);
	r = rq(PROTO_OP_DESCRIBE, "cust");
	x = call_ok(&r);
	cr_assert_eq(proto_r_i64(&x.r), 0);
	cr_assert_eq(proto_r_u64(&x.r), 3);
	cr_assert_gt(proto_r_u64(&x.r), 0);
	cr_assert_eq(proto_r_u16(&x.r), NCOLS + 1);
	const char *names[] = { "age", "score", "city", "v", "clicks",
				"active", "recency" };
	const uint8_t types[] = { COHORT_I32, COHORT_F64, COHORT_CAT, COHORT_VEC,
				  COHORT_COUNTER, COHORT_BOOL, COHORT_DECAY };
	for (int i = 0; i < NCOLS + 1; i++) {
		name_is(&x.r, names[i]);
		cr_assert_eq(proto_r_u8(&x.r), types[i]);
		cr_assert_eq(proto_r_u32(&x.r), i == C_V ? 4u : 0u);
		cr_assert_eq(proto_r_i64(&x.r), i == NCOLS ? 60000 : 0);
		cr_assert_eq(proto_r_u32(&x.r), i == C_CITY ? 3u : 0u);
	}
	cr_assert_eq(proto_r_u8(&x.r), 0, "no models yet");
	cr_assert_eq(proto_r_u8(&x.r), 0, "no indexes yet");
	done(&x);
}

Test(conn, describe_lists_models_and_indexes)
{
	make_table();
	put_rows(0, 20);
	proto_req r = rq(PROTO_OP_INDEX_CREATE, "cust");
	snprintf(r.name, sizeof(r.name), "vidx");
	r.u.index_create.column = C_V;
	r.u.index_create.opts.metric = COHORT_METRIC_L2;
	resp x = call_ok(&r);
	done(&x);

	int cols[] = { C_V };
	r = rq(PROTO_OP_PERSONA_TRAIN, "cust");
	snprintf(r.name, sizeof(r.name), "seg");
	r.u.train.ncols = 1;
	r.u.train.cols = cols;
	r.u.train.k = 2;
	r.u.train.seed = 1;
	x = call_ok(&r);
	cr_assert_eq(proto_r_u64(&x.r), 1, "first version");
	done(&x);

	r = rq(PROTO_OP_DESCRIBE, "cust");
	x = call_ok(&r);
	proto_r_i64(&x.r);
	cr_assert_eq(proto_r_u64(&x.r), 20);
	proto_r_u64(&x.r);
	uint16_t nc = proto_r_u16(&x.r);
	for (uint16_t i = 0; i < nc; i++) {
		size_t n;
		proto_r_str8(&x.r, &n);
		proto_r_bytes(&x.r, 1 + 4 + 8 + 4);
	}
	cr_assert_eq(proto_r_u8(&x.r), 1);
	name_is(&x.r, "seg");
	cr_assert_eq(proto_r_u64(&x.r), 1);        /* version */
	cr_assert_eq(proto_r_u32(&x.r), 2);        /* k */
	cr_assert_eq(proto_r_u32(&x.r), 4);        /* dim */
	cr_assert_eq(proto_r_u8(&x.r), 1);
	cr_assert_eq(proto_r_u16(&x.r), C_V);
	cr_assert_eq(proto_r_u8(&x.r), 0);         /* at once */
	cr_assert_eq(proto_r_u8(&x.r), 0);         /* not training */
	proto_r_u64(&x.r);
	cr_assert_eq(proto_r_u64(&x.r), 20);       /* assigned */
	cr_assert_eq(proto_r_u8(&x.r), 1);
	name_is(&x.r, "vidx");
	cr_assert_eq(proto_r_u16(&x.r), C_V);
	cr_assert_eq(proto_r_u8(&x.r), COHORT_METRIC_L2);
	cr_assert_eq(proto_r_u32(&x.r), 16);
	cr_assert_eq(proto_r_u32(&x.r), 200);
	cr_assert_eq(proto_r_u32(&x.r), 64);
	uint64_t nodes = proto_r_u64(&x.r), pend = proto_r_u64(&x.r);
	cr_assert_eq(nodes + pend, 20);
	cr_assert_gt(proto_r_u64(&x.r), 0);
	done(&x);

	r = rq(PROTO_OP_INDEX_DROP, "cust");
	snprintf(r.name, sizeof(r.name), "vidx");
	x = call_ok(&r);
	done(&x);
	x = call(&r);
	cr_assert_eq(x.status, COHORT_ENOTFOUND, "%s", x.msg);
}

/* ------------------------------------------------------------------------
 * Writes and reads
 * ------------------------------------------------------------------------ */
Test(conn, put_reports_each_row)
{
	make_table();
	cohort_field good[] = { { C_AGE, cohort_i32(30) },
				{ C_CITY, cohort_cat("lyon") } };
	cohort_field bad[] = { { C_AGE, cohort_cat("thirty") } };
	cohort_field nan[] = { { C_SCORE, cohort_f64(NAN) } };
	proto_put_row rows[] = { { key("a"), T0, 2, good },
				 { key("b"), T0, 1, bad },
				 { key("c"), T0, 1, nan } };
	proto_req r = rq(PROTO_OP_PUT, "cust");
	r.u.put.nrows = 3;
	r.u.put.rows = rows;
	resp x = call_ok(&r);
	cr_assert_eq(proto_r_u32(&x.r), 3);
	cr_assert_eq(proto_r_i32(&x.r), 0);
	cr_assert_eq(proto_r_i32(&x.r), COHORT_ETYPE);
	cr_assert_eq(proto_r_i32(&x.r), COHORT_ENAN);
	cr_assert_eq(proto_r_u32(&x.r), 2);
	cr_assert_eq(proto_r_u32(&x.r), 1);
	size_t n;
	const char *m = proto_r_str16(&x.r, &n);
	cr_assert(n > 0 && memmem(m, n, "age", 3), "message '%.*s'", (int)n, m);
	cr_assert_eq(proto_r_u32(&x.r), 2);
	proto_r_str16(&x.r, &n);
	cr_assert_gt(n, 0);
	done(&x);
	cr_assert(conn_wrote(c));

	r = rq(PROTO_OP_PUT, "missing");
	x = call(&r);
	cr_assert_eq(x.status, COHORT_ENOTABLE);
	cr_assert(strstr(x.msg, "missing"), "message '%s'", x.msg);
}

Test(conn, get_all_and_some_columns)
{
	make_table();
	put_rows(0, 3);
	proto_req r = rq(PROTO_OP_GET, "cust");
	proto_key k = key("k002");
	r.u.get.at = T0;
	r.u.get.nkeys = 1;
	r.u.get.keys = &k;
	resp x = call_ok(&r);
	cr_assert(!conn_wrote(c), "a read is no write");
	cr_assert_eq(proto_r_u8(&x.r), COHORT_ROW_PRESENT);
	cr_assert_eq(proto_r_i64(&x.r), T0);
	cr_assert_eq(proto_r_u16(&x.r), NCOLS);
	proto_arena a = { 0 };
	cohort_value v[NCOLS];
	for (int i = 0; i < NCOLS; i++)
		proto_r_value(&x.r, &a, &v[i]);
	done(&x);
	cr_assert_eq(v[C_AGE].type, COHORT_I32);
	cr_assert_eq(v[C_AGE].v.i32, 22);
	cr_assert_eq(v[C_SCORE].v.f64, 1.0);
	cr_assert_eq(v[C_CITY].v.str.len, 4);
	cr_assert(memcmp(v[C_CITY].v.str.ptr, "nice", 4) == 0);
	cr_assert_eq(v[C_V].type, COHORT_VEC);
	cr_assert_eq(v[C_V].v.vec.dim, 4);
	cr_assert_float_eq(v[C_V].v.vec.ptr[1], 0.01f, 1e-6);
	cr_assert_eq(v[C_CLICKS].type, COHORT_NULL);
	cr_assert_eq(v[C_ACTIVE].type, COHORT_BOOL);
	cr_assert_eq(v[C_ACTIVE].v.b, false);
	proto_arena_free(&a);

	int cols[] = { C_ACTIVE, C_AGE };
	r = rq(PROTO_OP_GET, "cust");
	k = key("k001");
	r.u.get.at = T0;
	r.u.get.ncols = 2;
	r.u.get.cols = cols;
	r.u.get.nkeys = 1;
	r.u.get.keys = &k;
	x = call_ok(&r);
	cr_assert_eq(proto_r_u8(&x.r), COHORT_ROW_PRESENT);
	proto_r_i64(&x.r);
	cr_assert_eq(proto_r_u16(&x.r), 2);
	proto_r_value(&x.r, &a, &v[0]);
	proto_r_value(&x.r, &a, &v[1]);
	done(&x);
	cr_assert(v[0].v.b);
	cr_assert_eq(v[1].v.i32, 21);

	k = key("nobody");
	r.hdr.id = ++next_id;
	x = call_ok(&r);
	cr_assert_eq(proto_r_u8(&x.r), COHORT_ROW_MISSING);
	proto_r_i64(&x.r);
	cr_assert_eq(proto_r_u16(&x.r), 2);
	proto_r_value(&x.r, &a, &v[0]);
	proto_r_value(&x.r, &a, &v[1]);
	done(&x);
	cr_assert_eq(v[0].type, COHORT_NULL);

	int badcol = 99;
	r.hdr.id = ++next_id;
	r.u.get.ncols = 1;
	r.u.get.cols = &badcol;
	x = call(&r);
	cr_assert_eq(x.status, COHORT_ENOCOLUMN, "%s", x.msg);
	proto_arena_free(&a);
}

Test(conn, event_and_delete)
{
	make_table();
	put_rows(0, 2);
	cohort_update up[] = { { C_CLICKS, COHORT_OP_ADD, cohort_f64(2) },
			       { C_CLICKS, COHORT_OP_ADD, cohort_f64(3) } };
	cohort_update bad[] = { { C_CITY, COHORT_OP_ADD, cohort_f64(1) } };
	proto_event_row ev[] = { { key("k000"), T0 + 5, 2, up },
				 { key("k001"), T0 + 5, 1, bad } };
	proto_req r = rq(PROTO_OP_EVENT, "cust");
	r.u.event.nrows = 2;
	r.u.event.rows = ev;
	resp x = call_ok(&r);
	cr_assert_eq(proto_r_u32(&x.r), 2);
	cr_assert_eq(proto_r_i32(&x.r), 0);
	cr_assert_eq(proto_r_i32(&x.r), COHORT_EOP);
	cr_assert_eq(proto_r_u32(&x.r), 1);
	cr_assert_eq(proto_r_u32(&x.r), 1);
	size_t n;
	proto_r_str16(&x.r, &n);
	done(&x);

	int col = C_CLICKS;
	proto_key k = key("k000");
	r = rq(PROTO_OP_GET, "cust");
	r.u.get.at = T0 + 5;
	r.u.get.ncols = 1;
	r.u.get.cols = &col;
	r.u.get.nkeys = 1;
	r.u.get.keys = &k;
	x = call_ok(&r);
	proto_r_u8(&x.r);
	cr_assert_eq(proto_r_i64(&x.r), T0 + 5);
	proto_r_u16(&x.r);
	cohort_value v;
	proto_r_value(&x.r, NULL, &v);
	cr_assert_eq(v.type, COHORT_F64);
	cr_assert_eq(v.v.f64, 5.0);

	proto_key dk[] = { key("k001"), key("ghost") };
	r = rq(PROTO_OP_DELETE, "cust");
	r.u.del.nkeys = 2;
	r.u.del.keys = dk;
	x = call_ok(&r);
	cr_assert_eq(proto_r_u32(&x.r), 2);
	cr_assert_eq(proto_r_i32(&x.r), 0);
	cr_assert_eq(proto_r_i32(&x.r), COHORT_ENOTFOUND);
	cr_assert_eq(proto_r_u32(&x.r), 1);
	cr_assert_eq(proto_r_u32(&x.r), 1);
	proto_r_str16(&x.r, &n);
	done(&x);
}

static void get_many_check(void)
{
	proto_key keys[] = { key("k004"), key("zzz"), key("k001") };
	int cols[] = { C_CITY, C_SCORE, C_V };
	proto_req r = rq(PROTO_OP_GET_MANY, "cust");
	r.u.get.at = T0;
	r.u.get.ncols = 3;
	r.u.get.cols = cols;
	r.u.get.nkeys = 3;
	r.u.get.keys = keys;
	resp x = call_ok(&r);
	proto_arena a = { 0 };
	proto_block b;
	OK(proto_r_block(&x.r, &a, &b));
	done(&x);
	cr_assert_eq(b.nkeys, 3);
	cr_assert_eq(b.ncols, 3);
	cr_assert_eq(b.status[0], COHORT_ROW_PRESENT);
	cr_assert_eq(b.status[1], COHORT_ROW_MISSING);
	cr_assert_eq(b.status[2], COHORT_ROW_PRESENT);
	cr_assert_eq(b.time[0], T0);
	cr_assert_eq(b.time[1], 0);
	cr_assert_eq(b.cols[0].column, C_CITY);
	cr_assert_eq(b.cols[0].type, COHORT_CAT);
	const uint32_t *codes = b.cols[0].values;
	cr_assert(b.cols[0].valid[0] && !b.cols[0].valid[1]);
	cr_assert_eq(b.str_len[codes[0]], 4);
	cr_assert(memcmp(b.strings[codes[0]], "lyon", 4) == 0);
	cr_assert(memcmp(b.strings[codes[2]], "lyon", 4) == 0);
	const double *score = b.cols[1].values;
	cr_assert_eq(score[0], 2.0);
	cr_assert_eq(score[2], 0.5);
	cr_assert_eq(b.cols[2].dim, 4);
	const float *vv = b.cols[2].values;
	cr_assert_float_eq(vv[2 * 4 + 3], 10.03f, 1e-5);
	proto_arena_free(&a);
}

Test(conn, get_many_block_and_cached_batch)
{
	make_table();
	put_rows(0, 6);
	get_many_check();
	get_many_check();    /* the cached batch, same answer */

	/* all columns, then a new column changes what "all" means */
	proto_key k = key("k000");
	proto_req r = rq(PROTO_OP_GET_MANY, "cust");
	r.u.get.at = T0;
	r.u.get.nkeys = 1;
	r.u.get.keys = &k;
	resp x = call_ok(&r);
	cr_assert_eq(proto_r_u32(&x.r), 1);
	cr_assert_eq(proto_r_u16(&x.r), NCOLS);
	r = rq(PROTO_OP_COLUMN_ADD, "cust");
	r.u.column_add = (proto_column){ "extra", COHORT_I64, 0, 0 };
	call_ok(&r);
	r = rq(PROTO_OP_GET_MANY, "cust");
	r.u.get.at = T0;
	r.u.get.nkeys = 1;
	r.u.get.keys = &k;
	x = call_ok(&r);
	cr_assert_eq(proto_r_u32(&x.r), 1);
	cr_assert_eq(proto_r_u16(&x.r), NCOLS + 1);
}

/* ------------------------------------------------------------------------
 * Filters and neighbours
 * ------------------------------------------------------------------------ */
Test(conn, filter_count_and_list)
{
	make_table();
	put_rows(0, 12);
	/* age >= 25 and not city == paris */
	cohort_value v25 = cohort_i32(25), paris = cohort_cat("paris");
	proto_filter_node nodes[4];
	memset(nodes, 0, sizeof(nodes));
	nodes[0].kind = PROTO_FILTER_CMP;
	nodes[0].column = C_AGE;
	nodes[0].cmp = COHORT_GE;
	nodes[0].nvalues = 1;
	nodes[0].values = &v25;
	nodes[1].kind = PROTO_FILTER_CMP;
	nodes[1].column = C_CITY;
	nodes[1].cmp = COHORT_EQ;
	nodes[1].nvalues = 1;
	nodes[1].values = &paris;
	nodes[2].kind = PROTO_FILTER_NOT;
	nodes[2].a = 1;
	nodes[3].kind = PROTO_FILTER_AND;
	nodes[3].a = 0;
	nodes[3].b = 2;
	/* rows 5..11 have age >= 25; paris is i % 3 == 0: 6 and 9 */
	proto_req r = rq(PROTO_OP_FILTER_COUNT, "cust");
	r.u.filter.at = T0;
	r.u.filter.filter = (proto_filter){ 4, nodes };
	resp x = call_ok(&r);
	cr_assert_eq(proto_r_u64(&x.r), 5);
	done(&x);

	r = rq(PROTO_OP_FILTER_LIST, "cust");
	r.u.filter.at = T0;
	r.u.filter.limit = 3;
	r.u.filter.filter = (proto_filter){ 4, nodes };
	x = call_ok(&r);
	cr_assert_eq(proto_r_u64(&x.r), 5);
	cr_assert_eq(proto_r_u32(&x.r), 3);
	for (int i = 0; i < 3; i++) {
		size_t n;
		const char *s = proto_r_str8(&x.r, &n);
		cr_assert_eq(n, 4);
		int id = atoi(s + 1);
		cr_assert(id >= 5 && id % 3 != 0, "key %.*s", (int)n, s);
	}
	done(&x);

	/* no nodes: every row */
	r = rq(PROTO_OP_FILTER_COUNT, "cust");
	r.u.filter.at = T0;
	x = call_ok(&r);
	cr_assert_eq(proto_r_u64(&x.r), 12);

	/* a cat column compared with a number is the embedded API's error */
	nodes[1].values = &v25;
	r = rq(PROTO_OP_FILTER_COUNT, "cust");
	r.u.filter.at = T0;
	r.u.filter.filter = (proto_filter){ 4, nodes };
	x = call(&r);
	cr_assert_lt(x.status, 0);
	cr_assert(strstr(x.msg, "filter node 1"), "message '%s'", x.msg);
}

Test(conn, knn_by_vector_and_key)
{
	make_table();
	put_rows(0, 30);
	proto_req r = rq(PROTO_OP_INDEX_CREATE, "cust");
	snprintf(r.name, sizeof(r.name), "vidx");
	r.u.index_create.column = C_V;
	call_ok(&r);

	float q[4] = { 10, 10, 10, 10 };
	r = rq(PROTO_OP_KNN, "cust");
	snprintf(r.name, sizeof(r.name), "vidx");
	r.u.knn.k = 5;
	r.u.knn.at = T0;
	r.u.knn.dim = 4;
	r.u.knn.vec = q;
	resp x = call_ok(&r);
	cr_assert_eq(proto_r_u32(&x.r), 5);
	float last = -1;
	for (int i = 0; i < 5; i++) {
		float d = proto_r_f32(&x.r);
		cr_assert_geq(d, last);
		last = d;
		size_t n;
		const char *s = proto_r_str8(&x.r, &n);
		cr_assert(atoi(s + 1) % 2 == 1, "odd rows are at 10");
	}
	done(&x);

	/* by key, with a filter: active rows only; the key itself excluded */
	proto_filter_node act;
	memset(&act, 0, sizeof(act));
	cohort_value t = cohort_bool(true);
	act.kind = PROTO_FILTER_CMP;
	act.column = C_ACTIVE;
	act.cmp = COHORT_EQ;
	act.nvalues = 1;
	act.values = &t;
	r = rq(PROTO_OP_KNN, "cust");
	snprintf(r.name, sizeof(r.name), "vidx");
	r.u.knn.k = 100;
	r.u.knn.at = T0;
	r.u.knn.key = key("k001");
	r.u.knn.filter = (proto_filter){ 1, &act };
	x = call_ok(&r);
	cr_assert_eq(proto_r_u32(&x.r), 14);
	for (int i = 0; i < 14; i++) {
		proto_r_f32(&x.r);
		size_t n;
		const char *s = proto_r_str8(&x.r, &n);
		cr_assert(n != 4 || memcmp(s, "k001", 4) != 0);
	}
	done(&x);

	r.hdr.id = ++next_id;
	r.u.knn.k = 101;         /* over env.max_k */
	x = call(&r);
	cr_assert_eq(x.status, COHORT_ELIMIT, "%s", x.msg);
	r.hdr.id = ++next_id;
	r.u.knn.k = 3;
	r.u.knn.key = key("ghost");
	x = call(&r);
	cr_assert_eq(x.status, COHORT_ENOTFOUND, "%s", x.msg);
}

/* ------------------------------------------------------------------------
 * Personas
 * ------------------------------------------------------------------------ */
/* A vec model "seg" over v with centroids 0 (persona 0) and 10. */
static void upload_model(void)
{
	int cols[] = { C_V };
	float cent[8] = { 0, 0, 0, 0, 10, 10, 10, 10 };
	proto_req r = rq(PROTO_OP_PERSONA_UPLOAD, "cust");
	snprintf(r.name, sizeof(r.name), "seg");
	r.u.upload.ncols = 1;
	r.u.upload.cols = cols;
	r.u.upload.k = 2;
	r.u.upload.dim = 4;
	r.u.upload.centroids = cent;
	resp x = call_ok(&r);
	cr_assert_eq(proto_r_u64(&x.r), 1);
	done(&x);
}

Test(conn, persona_upload_assign_members_sizes)
{
	make_table();
	put_rows(0, 10);
	upload_model();

	proto_req r = rq(PROTO_OP_PERSONA_ASSIGN, "cust");
	snprintf(r.name, sizeof(r.name), "seg");
	r.u.assign.m = 2;
	r.u.assign.key = key("k003");
	resp x = call_ok(&r);
	cr_assert_eq(proto_r_u8(&x.r), COHORT_ROW_PRESENT);
	cr_assert_eq(proto_r_u64(&x.r), 1);
	cr_assert_eq(proto_r_u32(&x.r), 1);
	proto_r_f32(&x.r);
	proto_r_f32(&x.r);
	cr_assert_eq(proto_r_u8(&x.r), 2);
	cr_assert_eq(proto_r_u32(&x.r), 1);
	proto_r_f32(&x.r);
	cr_assert_eq(proto_r_u32(&x.r), 0);
	proto_r_f32(&x.r);
	uint8_t ne = proto_r_u8(&x.r);
	cr_assert_gt(ne, 0);
	for (uint8_t i = 0; i < ne; i++) {
		cr_assert_eq(proto_r_u16(&x.r), C_V);
		cr_assert_lt(proto_r_u32(&x.r), 4);
		proto_r_bytes(&x.r, 24);
	}
	done(&x);

	r.hdr.id = ++next_id;
	r.u.assign.key = key("ghost");
	x = call_ok(&r);
	cr_assert_eq(proto_r_u8(&x.r), COHORT_ROW_MISSING);
	done(&x);

	float q[4] = { 0.5f, 0, 0, 0 };
	cohort_value qv = cohort_vec(q, 4);
	r = rq(PROTO_OP_PERSONA_ASSIGN, "cust");
	snprintf(r.name, sizeof(r.name), "seg");
	r.u.assign.m = 1;
	r.u.assign.nvalues = 1;
	r.u.assign.values = &qv;
	x = call_ok(&r);
	cr_assert_eq(proto_r_u8(&x.r), COHORT_ROW_PRESENT);
	proto_r_u64(&x.r);
	cr_assert_eq(proto_r_u32(&x.r), 0);

	r = rq(PROTO_OP_PERSONA_MEMBERS, "cust");
	snprintf(r.name, sizeof(r.name), "seg");
	r.u.members.persona = 0;
	r.u.members.at = T0;
	r.u.members.limit = 100;
	x = call_ok(&r);
	cr_assert_eq(proto_r_u64(&x.r), 5);
	cr_assert_eq(proto_r_u32(&x.r), 5);
	for (int i = 0; i < 5; i++) {
		size_t n;
		const char *s = proto_r_str8(&x.r, &n);
		cr_assert(atoi(s + 1) % 2 == 0);
	}
	done(&x);

	r = rq(PROTO_OP_PERSONA_SIZES, "cust");
	snprintf(r.name, sizeof(r.name), "seg");
	x = call_ok(&r);
	cr_assert_eq(proto_r_u64(&x.r), 1);
	cr_assert_eq(proto_r_u32(&x.r), 2);
	cr_assert_eq(proto_r_u64(&x.r), 5);
	name_is(&x.r, "");
	cr_assert_eq(proto_r_u64(&x.r), 5);
	name_is(&x.r, "");
	done(&x);

	/* retrain: a new version */
	r = rq(PROTO_OP_PERSONA_TRAIN, "cust");
	snprintf(r.name, sizeof(r.name), "seg");
	r.u.train.k = 2;
	r.u.train.seed = 3;
	x = call_ok(&r);
	cr_assert_eq(proto_r_u64(&x.r), 2);
	done(&x);
	r.hdr.id = ++next_id;
	r.u.train.iters = 301;
	x = call(&r);
	cr_assert_eq(x.status, COHORT_ELIMIT, "%s", x.msg);

	r = rq(PROTO_OP_PERSONA_SIZES, "cust");
	snprintf(r.name, sizeof(r.name), "nomodel");
	x = call(&r);
	cr_assert_lt(x.status, 0);
	cr_assert(strstr(x.msg, "nomodel"), "message '%s'", x.msg);
}

/* PERSONA_DESCRIBE's header, checked, up to the first persona. */
static resp describe_model(const char *model, uint64_t version, uint32_t k,
			   uint32_t dim, const int *cols, uint8_t ncols,
			   uint64_t assigned)
{
	proto_req r = rq(PROTO_OP_PERSONA_DESCRIBE, "cust");
	snprintf(r.name, sizeof(r.name), "%s", model);
	resp x = call_ok(&r);
	cr_assert_eq(proto_r_u64(&x.r), version);
	cr_assert_eq(proto_r_u32(&x.r), k);
	cr_assert_eq(proto_r_u32(&x.r), dim);
	cr_assert_eq(proto_r_u8(&x.r), COHORT_PERSONA_AT_ONCE);
	cr_assert_eq(proto_r_u8(&x.r), 0, "training");
	cr_assert_eq(proto_r_u64(&x.r), 0, "pending");
	cr_assert_eq(proto_r_u64(&x.r), assigned);
	cr_assert_eq(proto_r_u8(&x.r), ncols);
	for (uint8_t i = 0; i < ncols; i++)
		cr_assert_eq(proto_r_u16(&x.r), cols[i]);
	return x;
}

Test(conn, persona_describe_vec_model_centroids_and_names)
{
	make_table();
	put_rows(0, 10);
	upload_model();
	cohort_table *t;
	OK(cohort_table_open(db, "cust", &t));
	OK(cohort_persona_name(t, "seg", 1, "high"));

	int cols[] = { C_V };
	resp x = describe_model("seg", 1, 2, 4, cols, 1, 10);
	for (uint32_t p = 0; p < 2; p++) {
		double typical;
		OK(cohort_persona_centroid(t, "seg", p, NULL, NULL, NULL,
					   &typical));
		cr_assert_eq(proto_r_u64(&x.r), 5, "size of %u", p);
		cr_assert_eq(proto_r_f64(&x.r), typical);
		name_is(&x.r, p ? "high" : "");
		for (int j = 0; j < 4; j++)
			cr_assert_eq(proto_r_f64(&x.r), p * 10.0,
				     "centroid %u[%d]", p, j);
	}
	done(&x);

	/* a retrain is a new version; its names start empty */
	proto_req r = rq(PROTO_OP_PERSONA_TRAIN, "cust");
	snprintf(r.name, sizeof(r.name), "seg");
	r.u.train.k = 2;
	r.u.train.seed = 3;
	x = call_ok(&r);
	cr_assert_eq(proto_r_u64(&x.r), 2);
	done(&x);
	x = describe_model("seg", 2, 2, 4, cols, 1, 10);
	double sum[4] = { 0 };
	for (uint32_t p = 0; p < 2; p++) {
		cr_assert_eq(proto_r_u64(&x.r), 5);
		cr_assert_geq(proto_r_f64(&x.r), 0);
		name_is(&x.r, "");
		for (int j = 0; j < 4; j++)
			sum[j] += proto_r_f64(&x.r);
	}
	done(&x);
	/* the two clusters' means: 0 + 10 (+ 0.01 j each) */
	for (int j = 0; j < 4; j++)
		cr_assert_float_eq(sum[j], 10 + 0.02 * j, 1e-4, "element %d", j);
}

Test(conn, persona_describe_numeric_model_in_column_units)
{
	make_table();
	put_rows(0, 10);
	/* z-space centroids (-1, -1) and (1, 1) over age (mean 25, sd 5) and
	 * score (mean 2, sd 1): (20, 1) and (30, 3) in the columns' units.
	 * Row i: z sum 0.7 i - 3, so rows 0..4 go to persona 0. */
	int cols[] = { C_AGE, C_SCORE };
	float cent[4] = { -1, -1, 1, 1 };
	double mean[2] = { 25, 2 }, sd[2] = { 5, 1 };
	proto_req r = rq(PROTO_OP_PERSONA_UPLOAD, "cust");
	snprintf(r.name, sizeof(r.name), "num");
	r.u.upload.ncols = 2;
	r.u.upload.cols = cols;
	r.u.upload.k = 2;
	r.u.upload.dim = 2;
	r.u.upload.centroids = cent;
	r.u.upload.mean = mean;
	r.u.upload.sd = sd;
	resp x = call_ok(&r);
	cr_assert_eq(proto_r_u64(&x.r), 1);
	done(&x);

	cohort_table *t;
	OK(cohort_table_open(db, "cust", &t));
	x = describe_model("num", 1, 2, 2, cols, 2, 10);
	static const double want[2][2] = { { 20, 1 }, { 30, 3 } };
	for (uint32_t p = 0; p < 2; p++) {
		double ce[2];
		uint64_t size;
		OK(cohort_persona_centroid(t, "num", p, NULL, ce, &size, NULL));
		cr_assert_eq(size, 5);
		cr_assert_eq(proto_r_u64(&x.r), 5, "size of %u", p);
		proto_r_f64(&x.r);
		name_is(&x.r, "");
		for (int j = 0; j < 2; j++) {
			double v = proto_r_f64(&x.r);
			cr_assert_eq(v, ce[j], "centroid %u[%d]", p, j);
			cr_assert_float_eq(v, want[p][j], 1e-9,
					   "centroid %u[%d]: %g", p, j, v);
		}
	}
	done(&x);
}

Test(conn, persona_describe_refuses_over_frame_and_unknown_model)
{
	make_table();
	put_rows(0, 4);
	upload_model();            /* k 2 x dim 4 x 8 = 64 bytes */
	env.max_frame = 63;
	proto_req r = rq(PROTO_OP_PERSONA_DESCRIBE, "cust");
	snprintf(r.name, sizeof(r.name), "seg");
	resp x = call(&r);
	cr_assert_eq(x.status, COHORT_ELIMIT, "%s", x.msg);
	cr_assert(strstr(x.msg, "frame limit"), "message '%s'", x.msg);
	/* centroids that fit but a response that does not */
	env.max_frame = 64;
	r.hdr.id = ++next_id;
	x = call(&r);
	cr_assert_eq(x.status, COHORT_ELIMIT, "%s", x.msg);
	env.max_frame = 1u << 20;

	r = rq(PROTO_OP_PERSONA_DESCRIBE, "cust");
	snprintf(r.name, sizeof(r.name), "nomodel");
	x = call(&r);
	cr_assert_eq(x.status, COHORT_ENOTFOUND, "%s", x.msg);
	cr_assert(strstr(x.msg, "nomodel"), "message '%s'", x.msg);
}

/* The CHANGES frames waiting in got: n changes in all, checked to be
 * pushes of subscription id. */
static uint32_t read_pushes(uint32_t id, char keys[][8])
{
	uint32_t total = 0;
	while (have_frame()) {
		resp x = next_resp();
		cr_assert_eq(x.h.opcode, PROTO_OP_CHANGES);
		cr_assert_eq(x.h.flags, PROTO_F_RESPONSE | PROTO_F_PUSH);
		cr_assert_eq(x.h.id, id);
		cr_assert_eq(x.status, 0, "%s", x.msg);
		cr_assert_eq(proto_r_u64(&x.r), 0, "nothing lost");
		uint32_t n = proto_r_u32(&x.r);
		for (uint32_t i = 0; i < n; i++) {
			proto_r_u64(&x.r);
			cr_assert_eq(proto_r_i64(&x.r), T0 + 1);
			cr_assert_eq(proto_r_u64(&x.r), 1);
			uint32_t o = proto_r_u32(&x.r), nw = proto_r_u32(&x.r);
			cr_assert_eq(o, 0);
			cr_assert_eq(nw, 1);
			size_t kl;
			const char *k = proto_r_str8(&x.r, &kl);
			snprintf(keys[total + i], 8, "%.*s", (int)kl, k);
		}
		done(&x);
		total += n;
	}
	return total;
}

Test(conn, subscription_pushes_persona_changes)
{
	make_table();
	put_rows(0, 6);
	upload_model();
	proto_req r = rq(PROTO_OP_SUBSCRIBE, "cust");
	snprintf(r.name, sizeof(r.name), "seg");
	r.u.subscribe.cursor = UINT64_MAX;
	resp x = call_ok(&r);
	uint32_t sub_id = r.hdr.id;
	uint64_t cursor = proto_r_u64(&x.r);
	done(&x);
	cr_assert(conn_has_subs(c));
	cr_assert(!conn_poll_push(c), "nothing changed yet");

	/* k000 and k002 move from persona 0 to 1; k004 stays */
	float ten[4] = { 10, 10, 10, 10 }, zero[4] = { 0, 0, 0, 0 };
	cohort_field f1[] = { { C_V, cohort_vec(ten, 4) } };
	cohort_field f0[] = { { C_V, cohort_vec(zero, 4) } };
	proto_put_row rows[] = { { key("k000"), T0 + 1, 1, f1 },
				 { key("k002"), T0 + 1, 1, f1 },
				 { key("k004"), T0 + 1, 1, f0 } };
	r = rq(PROTO_OP_PUT, "cust");
	r.u.put.nrows = 3;
	r.u.put.rows = rows;
	call_ok(&r);
	cr_assert(conn_poll_push(c));
	drain();
	char keys[8][8];
	cr_assert_eq(read_pushes(sub_id, keys), 2);
	cr_assert_str_eq(keys[0], "k000");
	cr_assert_str_eq(keys[1], "k002");
	cr_assert(!conn_poll_push(c), "each change is pushed once");

	/* the same subscription twice, a missing model */
	r = rq(PROTO_OP_SUBSCRIBE, "cust");
	snprintf(r.name, sizeof(r.name), "seg");
	r.u.subscribe.cursor = cursor;
	x = call(&r);
	cr_assert_eq(x.status, COHORT_EEXIST);
	r = rq(PROTO_OP_SUBSCRIBE, "cust");
	snprintf(r.name, sizeof(r.name), "other");
	x = call(&r);
	cr_assert_lt(x.status, 0);

	/* from an old cursor: the same changes again, on a new id */
	r = rq(PROTO_OP_UNSUBSCRIBE, "cust");
	snprintf(r.name, sizeof(r.name), "seg");
	call_ok(&r);
	cr_assert(!conn_has_subs(c));
	x = call(&r);
	cr_assert_eq(x.status, COHORT_ENOTFOUND);
	r = rq(PROTO_OP_SUBSCRIBE, "cust");
	snprintf(r.name, sizeof(r.name), "seg");
	r.u.subscribe.cursor = cursor;
	x = call_ok(&r);
	cr_assert_eq(proto_r_u64(&x.r), cursor);
	cr_assert(conn_poll_push(c));
	drain();
	cr_assert_eq(read_pushes(r.hdr.id, keys), 2);
}

Test(conn, subscriptions_are_limited)
{
	env.max_subs = 1;
	make_table();
	put_rows(0, 4);
	upload_model();
	proto_req r = rq(PROTO_OP_SUBSCRIBE, "cust");
	snprintf(r.name, sizeof(r.name), "seg");
	call_ok(&r);
	int cols[] = { C_V };
	float cent[8] = { 0, 0, 0, 0, 10, 10, 10, 10 };
	r = rq(PROTO_OP_PERSONA_UPLOAD, "cust");
	snprintf(r.name, sizeof(r.name), "seg2");
	r.u.upload.ncols = 1;
	r.u.upload.cols = cols;
	r.u.upload.k = 2;
	r.u.upload.dim = 4;
	r.u.upload.centroids = cent;
	call_ok(&r);
	r = rq(PROTO_OP_SUBSCRIBE, "cust");
	snprintf(r.name, sizeof(r.name), "seg2");
	resp x = call(&r);
	cr_assert_eq(x.status, COHORT_ELIMIT, "%s", x.msg);
}

/* ------------------------------------------------------------------------
 * Database
 * ------------------------------------------------------------------------ */
Test(conn, stats_and_snapshot_in_memory)
{
	make_table();
	put_rows(0, 7);
	proto_req r = rq(PROTO_OP_STATS, NULL);
	resp x = call_ok(&r);
	uint16_t n = proto_r_u16(&x.r);
	bool saw_rows = false, saw_conns = false;
	for (uint16_t i = 0; i < n; i++) {
		size_t l;
		const char *s = proto_r_str8(&x.r, &l);
		uint64_t v = proto_r_u64(&x.r);
		if (l == 4 && memcmp(s, "rows", 4) == 0) {
			cr_assert_eq(v, 7);
			saw_rows = true;
		}
		if (l == 11 && memcmp(s, "connections", 11) == 0) {
			cr_assert_geq(v, 1);
			saw_conns = true;
		}
	}
	cr_assert(saw_rows && saw_conns);
	size_t l;
	const char *io = proto_r_str16(&x.r, &l);
	cr_assert(l == 6 && memcmp(io, "memory", 6) == 0, "io '%.*s'",
		  (int)l, io);
	done(&x);

	r = rq(PROTO_OP_SNAPSHOT, NULL);
	x = call(&r);
	cr_assert_eq(x.status, COHORT_EINVAL, "an in-memory database has "
		     "no snapshot: %s", x.msg);
}

Test(conn, snapshot_on_disk)
{
	char dir[64];
	tmpdir_make(dir, sizeof(dir), "conn");
	conn_free(c);
	cohort_close(db);
	OK(cohort_open(dir, NULL, &db));
	env.db = db;
	c = conn_new(&env, "test:2");
	make_table();
	put_rows(0, 3);
	proto_req r = rq(PROTO_OP_SNAPSHOT, NULL);
	resp x = call_ok(&r);
	done(&x);
	conn_free(c);
	c = NULL;
	OK(cohort_close(db));
	OK(cohort_open(dir, NULL, &db));
	env.db = db;
	c = conn_new(&env, "test:3");
	r = rq(PROTO_OP_DESCRIBE, "cust");
	x = call_ok(&r);
	proto_r_i64(&x.r);
	cr_assert_eq(proto_r_u64(&x.r), 3);
	conn_free(c);
	c = NULL;
}

/* ------------------------------------------------------------------------
 * Pipelining, partial input, back-pressure
 * ------------------------------------------------------------------------ */
/* A mixed batch of requests, 3 per i. */
static void send_mix(int n)
{
	for (int i = 0; i < n; i++) {
		char kb[16];
		snprintf(kb, sizeof(kb), "k%03d", i % 8);
		proto_key k = key(kb);
		proto_req r = rq(PROTO_OP_GET, "cust");
		r.u.get.at = T0;
		r.u.get.nkeys = 1;
		r.u.get.keys = &k;
		send_req(&r);
		cohort_field f[] = { { C_AGE, cohort_i32(i) } };
		proto_put_row row = { k, T0, 1, f };
		r = rq(PROTO_OP_PUT, "cust");
		r.u.put.nrows = 1;
		r.u.put.rows = &row;
		send_req(&r);
		r = rq(PROTO_OP_PING, NULL);
		send_req(&r);
	}
}

/* Read n responses and check they come in request order from first_id. */
static void check_order(uint32_t first_id, int n)
{
	for (int i = 0; i < n; i++) {
		resp x = next_resp();
		cr_assert_eq(x.h.id, first_id + (uint32_t)i);
		cr_assert_eq(x.status, 0, "%s", x.msg);
		static const uint8_t ops[] = { PROTO_OP_GET, PROTO_OP_PUT,
					       PROTO_OP_PING };
		cr_assert_eq(x.h.opcode, ops[i % 3]);
	}
	cr_assert(!have_frame());
}

Test(conn, pipelined_requests_answered_in_order)
{
	make_table();
	put_rows(0, 8);
	uint32_t first = next_id + 1;
	send_mix(100);
	cr_assert_eq(flush(), 0);
	check_order(first, 300);
	/* the puts took effect in order: k003's age is the last i with
	 * i % 8 == 3 */
	proto_key k = key("k003");
	int col = C_AGE;
	proto_req r = rq(PROTO_OP_GET, "cust");
	r.u.get.at = T0;
	r.u.get.ncols = 1;
	r.u.get.cols = &col;
	r.u.get.nkeys = 1;
	r.u.get.keys = &k;
	resp x = call_ok(&r);
	proto_r_u8(&x.r);
	proto_r_i64(&x.r);
	proto_r_u16(&x.r);
	cohort_value v;
	proto_r_value(&x.r, NULL, &v);
	cr_assert_eq(v.v.i32, 99);
}

/* The whole output of a fresh database fed with the same requests, in
 * chunks of `chunk` bytes. */
static void run_script(size_t chunk, proto_wbuf *out)
{
	if (c) {
		conn_free(c);
		cohort_close(db);
	}
	OK(cohort_open(NULL, NULL, &db));
	env.db = db;
	c = conn_new(&env, "script");
	next_id = 0;
	got.len = got_read = 0;
	make_table();
	put_rows(0, 8);
	send_mix(20);
	proto_req r = rq(PROTO_OP_FILTER_COUNT, "cust");
	r.u.filter.at = T0;
	send_req(&r);
	feed_chunked(pending.buf, pending.len, chunk);
	pending.len = 0;
	out->len = 0;
	proto_w_bytes(out, got.buf, got.len);
}

Test(conn, byte_at_a_time_gives_the_same_output)
{
	proto_wbuf whole = { 0 }, bytes = { 0 }, odd = { 0 };
	run_script(0, &whole);
	run_script(1, &bytes);
	run_script(7, &odd);
	cr_assert_gt(whole.len, 1000);
	cr_assert_eq(bytes.len, whole.len);
	cr_assert(memcmp(bytes.buf, whole.buf, whole.len) == 0);
	cr_assert_eq(odd.len, whole.len);
	cr_assert(memcmp(odd.buf, whole.buf, whole.len) == 0);
	proto_wbuf_free(&whole);
	proto_wbuf_free(&bytes);
	proto_wbuf_free(&odd);
}

Test(conn, big_frame_in_pieces_then_the_input_shrinks)
{
	make_table();
	static char city[1000];
	memset(city, 'q', sizeof(city));
	enum { N = 300 };
	static proto_put_row rows[N];
	static cohort_field f[N];
	static char keys[N][8];
	for (int i = 0; i < N; i++) {
		int kl = snprintf(keys[i], 8, "b%d", i);
		f[i] = (cohort_field){ C_CITY, cohort_catn(city, sizeof(city)) };
		rows[i] = (proto_put_row){ { keys[i], (uint8_t)kl }, T0, 1,
					   &f[i] };
	}
	/* one frame of ~300 KB, fed 1000 bytes at a time */
	proto_req r = rq(PROTO_OP_PUT, "cust");
	r.u.put.nrows = N;
	r.u.put.rows = rows;
	send_req(&r);
	cr_assert_gt(pending.len, 300000);
	size_t room;
	conn_in_space(c, &room);
	cr_assert_lt(room, 64u << 10, "the input starts small");
	cr_assert_eq(feed_chunked(pending.buf, pending.len, 1000), 0);
	pending.len = 0;
	resp x = next_resp();
	cr_assert_eq(x.status, 0, "%s", x.msg);
	cr_assert_eq(proto_r_u32(&x.r), N);
	for (int i = 0; i < N; i++)
		cr_assert_eq(proto_r_i32(&x.r), 0);
	conn_in_space(c, &room);
	cr_assert_lt(room, 64u << 10, "the input shrank back (%zu)", room);
	r = rq(PROTO_OP_DESCRIBE, "cust");
	x = call_ok(&r);
	proto_r_i64(&x.r);
	cr_assert_eq(proto_r_u64(&x.r), N);
}

Test(conn, output_limit_stops_execution_until_drained)
{
	env.out_limit = 2048;
	make_table();
	put_rows(0, 8);
	/* 200 GETs of every column (~100 bytes each) without reading */
	uint32_t first = next_id + 1;
	for (int i = 0; i < 200; i++) {
		proto_key k = key("k001");
		proto_req r = rq(PROTO_OP_GET, "cust");
		r.u.get.at = T0;
		r.u.get.nkeys = 1;
		r.u.get.keys = &k;
		send_req(&r);
	}
	size_t room;
	uint8_t *dst = conn_in_space(c, &room);
	cr_assert_geq(room, pending.len, "the requests fit the input");
	memcpy(dst, pending.buf, pending.len);
	conn_in_commit(c, pending.len);
	pending.len = 0;
	cr_assert_eq(conn_process(c), 0);
	size_t len;
	const uint8_t *out = conn_out(c, &len);
	cr_assert_gt(len, 0);
	cr_assert_leq(len, env.out_limit + 256, "output %zu bytes", len);
	conn_in_space(c, &room);
	cr_assert_eq(room, 0, "no reading while output is blocked");
	/* processing again changes nothing until output is consumed */
	uint8_t first_bytes[64];
	memcpy(first_bytes, out, sizeof(first_bytes));
	cr_assert_eq(conn_process(c), 0);
	size_t len2;
	const uint8_t *out2 = conn_out(c, &len2);
	cr_assert_eq(out2, out, "the output being sent does not move");
	cr_assert_eq(len2, len);
	cr_assert(memcmp(out2, first_bytes, sizeof(first_bytes)) == 0);

	got.len = got_read = 0;
	int rounds = 0;
	while (rounds < 1000) {
		drain();
		cr_assert_eq(conn_process(c), 0);
		size_t l;
		conn_out(c, &l);
		if (l == 0)
			break;
		rounds++;
	}
	cr_assert_gt(rounds, 5, "it took several rounds (%d)", rounds);
	for (int i = 0; i < 200; i++) {
		resp x = next_resp();
		cr_assert_eq(x.h.id, first + (uint32_t)i);
		cr_assert_eq(x.status, 0);
	}
}

Test(conn, response_over_the_frame_limit_is_elimit)
{
	env.max_frame = 4096;
	make_table();
	for (int i = 0; i < 100; i += 20)
		put_rows(i, 20);
	/* about 56 bytes a key in the block */
	proto_key keys[100];
	char kb[100][8];
	for (int i = 0; i < 100; i++) {
		snprintf(kb[i], 8, "k%03d", i);
		keys[i] = key(kb[i]);
	}
	proto_req r = rq(PROTO_OP_GET_MANY, "cust");
	r.u.get.at = T0;
	r.u.get.nkeys = 100;
	r.u.get.keys = keys;
	resp x = call(&r);
	cr_assert_eq(x.status, COHORT_ELIMIT, "%s", x.msg);
	cr_assert(strstr(x.msg, "4096"), "message '%s'", x.msg);
	r = rq(PROTO_OP_PING, NULL);
	call_ok(&r);
}

/* ------------------------------------------------------------------------
 * Bad frames
 * ------------------------------------------------------------------------ */
Test(conn, bad_magic_is_eproto_and_close)
{
	const uint8_t junk[] = "GET / HTTP/1.1\r\n\r\n";
	cr_assert_eq(feed_chunked(junk, sizeof(junk) - 1, 0), CONN_CLOSE);
	resp x = next_resp();
	cr_assert_eq(x.status, COHORT_EPROTO);
	cr_assert_eq(x.h.id, 0);
	cr_assert(strstr(x.msg, "magic"), "message '%s'", x.msg);
	cr_assert(!have_frame());
	cr_assert_eq(conn_process(c), CONN_CLOSE, "closed stays closed");
	size_t room;
	conn_in_space(c, &room);
	cr_assert_eq(room, 0);
}

Test(conn, malformed_body_is_eproto_with_id_then_close)
{
	make_table();
	/* a PING with a stray byte, then a valid PING never answered */
	proto_req r = rq(PROTO_OP_PING, NULL);
	send_req(&r);
	pending.buf[12] = 1;
	proto_w_u8(&pending, 0xAA);
	proto_req p = rq(PROTO_OP_PING, NULL);
	send_req(&p);
	cr_assert_eq(flush(), CONN_CLOSE);
	resp x = next_resp();
	cr_assert_eq(x.status, COHORT_EPROTO);
	cr_assert_eq(x.h.id, r.hdr.id);
	cr_assert_eq(x.h.opcode, PROTO_OP_PING);
	cr_assert(strstr(x.msg, "left over"), "message '%s'", x.msg);
	cr_assert(!have_frame(), "nothing after a malformed frame");
}

Test(conn, wrong_version_is_eproto)
{
	proto_req r = rq(PROTO_OP_PING, NULL);
	send_req(&r);
	pending.buf[2] = 2;
	cr_assert_eq(flush(), CONN_CLOSE);
	resp x = next_resp();
	cr_assert_eq(x.status, COHORT_EPROTO);
	cr_assert(strstr(x.msg, "version 2"), "message '%s'", x.msg);
}

Test(conn, request_with_response_flag_is_eproto)
{
	proto_wbuf w = { 0 };
	size_t s = proto_frame_begin(&w, PROTO_OP_PING, PROTO_F_RESPONSE, 5);
	proto_frame_end(&w, s);
	cr_assert_eq(feed_chunked(w.buf, w.len, 0), CONN_CLOSE);
	resp x = next_resp();
	cr_assert_eq(x.status, COHORT_EPROTO);
	cr_assert_eq(x.h.id, 5);
	proto_wbuf_free(&w);
}

Test(conn, oversized_frame_is_elimit_and_close_without_body)
{
	env.max_frame = 1024;
	uint8_t h[PROTO_HDR_LEN];
	proto_hdr_encode(h, &(proto_hdr){ PROTO_OP_PUT, 0, 77, 5000 });
	cr_assert_eq(feed_chunked(h, sizeof(h), 0), CONN_CLOSE);
	resp x = next_resp();
	cr_assert_eq(x.status, COHORT_ELIMIT);
	cr_assert_eq(x.h.id, 77);
	cr_assert(strstr(x.msg, "1024"), "message '%s'", x.msg);
}

Test(conn, batch_over_max_batch_is_elimit_and_goes_on)
{
	env.max_batch = 4;
	make_table();
	proto_key keys[5] = { key("a"), key("b"), key("c"), key("d"),
			      key("e") };
	proto_req r = rq(PROTO_OP_GET_MANY, "cust");
	r.u.get.nkeys = 5;
	r.u.get.keys = keys;
	resp x = call(&r);
	cr_assert_eq(x.status, COHORT_ELIMIT, "%s", x.msg);
	cr_assert_eq(last_rc, 0, "the connection stays open");
	r = rq(PROTO_OP_PING, NULL);
	call_ok(&r);
}

Test(conn, unknown_opcode_is_enotsup_and_goes_on)
{
	uint8_t f[PROTO_HDR_LEN + 3];
	proto_hdr_encode(f, &(proto_hdr){ 0x7e, 0, 9, 3 });
	memset(f + PROTO_HDR_LEN, 0, 3);
	cr_assert_eq(feed_chunked(f, sizeof(f), 0), 0);
	resp x = next_resp();
	cr_assert_eq(x.status, COHORT_ENOTSUP);
	cr_assert_eq(x.h.id, 9);
	proto_req r = rq(PROTO_OP_PING, NULL);
	call_ok(&r);
}

/* ------------------------------------------------------------------------
 * Authentication
 * ------------------------------------------------------------------------ */
#define TOK_READ "read-token-0123456789"
#define TOK_WRITE "write-token-0123456789"

static void with_tokens(void)
{
	char path[] = "/tmp/cohort-conn-tokens-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	const char *text = "read " TOK_READ "\nwrite " TOK_WRITE "\n";
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	char err[256];
	int rc = auth_load(path, &tokens, err, sizeof(err));
	unlink(path);
	cr_assert_eq(rc, 0, "%s", err);
	conn_free(c);
	env.tokens = tokens;
	c = conn_new(&env, "test:auth");
}

static resp auth(const char *tok)
{
	proto_req r = rq(PROTO_OP_AUTH, NULL);
	r.u.auth.token = tok;
	r.u.auth.token_len = (uint8_t)strlen(tok);
	return call(&r);
}

Test(conn, unauthenticated_gets_eauth_but_hello)
{
	make_table();       /* while still without auth */
	with_tokens();
	cr_assert_eq(conn_role(c), PROTO_ROLE_NONE);
	proto_req r = rq(PROTO_OP_PING, NULL);
	resp x = call(&r);
	cr_assert_eq(x.status, COHORT_EAUTH, "%s", x.msg);
	proto_key k = key("k000");
	r = rq(PROTO_OP_GET, "cust");
	r.u.get.nkeys = 1;
	r.u.get.keys = &k;
	x = call(&r);
	cr_assert_eq(x.status, COHORT_EAUTH);
	r = rq(PROTO_OP_HELLO, NULL);
	r.u.hello.version = 1;
	x = call_ok(&r);
	proto_r_bytes(&x.r, 2 + 12);
	cr_assert_eq(proto_r_u8(&x.r), 1, "auth required");
	cr_assert_eq(proto_r_u8(&x.r), PROTO_ROLE_NONE);
}

Test(conn, read_token_is_denied_writes)
{
	make_table();
	with_tokens();
	resp x = auth(TOK_READ);
	cr_assert_eq(x.status, 0, "%s", x.msg);
	cr_assert_eq(proto_r_u8(&x.r), PROTO_ROLE_READ);
	cr_assert_eq(conn_role(c), PROTO_ROLE_READ);
	cohort_field f[] = { { C_AGE, cohort_i32(1) } };
	proto_put_row row = { key("a"), T0, 1, f };
	proto_req r = rq(PROTO_OP_PUT, "cust");
	r.u.put.nrows = 1;
	r.u.put.rows = &row;
	x = call(&r);
	cr_assert_eq(x.status, COHORT_EDENIED, "%s", x.msg);
	cr_assert(strstr(x.msg, "write"), "message '%s'", x.msg);
	cr_assert(!conn_wrote(c));
	r = rq(PROTO_OP_SNAPSHOT, NULL);
	x = call(&r);
	cr_assert_eq(x.status, COHORT_EDENIED);
	proto_key k = key("a");
	r = rq(PROTO_OP_GET, "cust");
	r.u.get.nkeys = 1;
	r.u.get.keys = &k;
	x = call_ok(&r);
	cr_assert_eq(proto_r_u8(&x.r), COHORT_ROW_MISSING, "the put was "
		     "not applied");

	x = auth(TOK_WRITE);
	cr_assert_eq(x.status, 0);
	r = rq(PROTO_OP_PUT, "cust");
	r.u.put.nrows = 1;
	r.u.put.rows = &row;
	call_ok(&r);
	r = rq(PROTO_OP_TABLE_CREATE, "t2");
	x = call(&r);
	cr_assert_eq(x.status, COHORT_EDENIED);
}

Test(conn, three_failed_auths_close)
{
	with_tokens();
	resp x = auth("wrong-token-0123456789");
	cr_assert_eq(x.status, COHORT_EAUTH);
	cr_assert_eq(last_rc, 0);
	x = auth("");
	cr_assert_eq(x.status, COHORT_EAUTH);
	cr_assert_eq(last_rc, 0);
	x = auth(TOK_READ "x");
	cr_assert_eq(x.status, COHORT_EAUTH);
	cr_assert_eq(last_rc, CONN_CLOSE);
	cr_assert(strstr(x.msg, "closing"), "message '%s'", x.msg);
	cr_assert_eq(conn_role(c), PROTO_ROLE_NONE);
}

Test(conn, a_failed_auth_then_a_good_one)
{
	with_tokens();
	resp x = auth("wrong-token-0123456789");
	cr_assert_eq(x.status, COHORT_EAUTH);
	x = auth(TOK_WRITE);
	cr_assert_eq(x.status, 0);
	cr_assert_eq(proto_r_u8(&x.r), PROTO_ROLE_WRITE);
}

/* ------------------------------------------------------------------------
 * Metrics
 * ------------------------------------------------------------------------ */
Test(conn, every_request_is_counted_in_metrics)
{
	metrics *m = metrics_new();
	cr_assert_not_null(m);
	conn_free(c);
	env.metrics = m;
	c = conn_new(&env, "test:metrics");
	make_table();
	proto_req r = rq(PROTO_OP_PING, NULL);
	call_ok(&r);
	r = rq(PROTO_OP_PING, NULL);
	call_ok(&r);
	r = rq(PROTO_OP_DESCRIBE, "nope");
	call(&r);
	char *text = metrics_render(m, db);
	cr_assert_not_null(text);
	cr_assert(strstr(text, "cohort_requests_total{op=\"ping\","
			 "status=\"ok\"} 2\n"), "%s", text);
	cr_assert(strstr(text, "cohort_requests_total{op=\"table_create\","
			 "status=\"ok\"} 1\n"), "%s", text);
	cr_assert(strstr(text, "cohort_requests_total{op=\"describe\","
			 "status=\"client_error\"} 1\n"), "%s", text);
	free(text);
	conn_free(c);
	c = NULL;
	metrics_free(m);
}

Test(conn, bad_name_is_ebadname_and_goes_on)
{
	make_table();
	/* the encoder refuses bad names: patch one into a good frame */
	proto_req r = rq(PROTO_OP_DESCRIBE, "cuxst");
	proto_wbuf w;
	memset(&w, 0, sizeof(w));
	proto_req_encode(&w, &r);
	cr_assert_eq(w.err, 0);
	uint8_t *x_at = memchr(w.buf + PROTO_HDR_LEN, 'x', w.len - PROTO_HDR_LEN);
	cr_assert(x_at);
	*x_at = '-';
	cr_assert_eq(feed_chunked(w.buf, w.len, 0), 0);
	proto_wbuf_free(&w);
	resp x = next_resp();
	cr_assert_eq(x.h.id, r.hdr.id);
	cr_assert_eq(x.status, COHORT_EBADNAME, "%s", x.msg);
	cr_assert(strstr(x.msg, "[A-Za-z0-9_]"), "%s", x.msg);
	cr_assert_eq(last_rc, 0, "the connection stays open");
	r = rq(PROTO_OP_DESCRIBE, "cust");
	call_ok(&r);
}
