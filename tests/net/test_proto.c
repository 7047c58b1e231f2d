/*
 * test_proto.c -- the wire codec (net/proto.c) against docs/protocol.md.
 *
 * One sample request per opcode (several for the opcodes with variants:
 * by key or by vector, with or without stats, a filter of every node kind)
 * is encoded, decoded and compared field by field; every prefix of every
 * sample frame must decode as "need more". Frames built byte by byte check
 * that each malformed form is refused with COHORT_EPROTO, each limit with
 * COHORT_ELIMIT and a bad name (well formed) with COHORT_EBADNAME, the
 * request id still known. A GET_MANY block is
 * written from a real in-memory table (every column type, nulls, missing
 * and expired keys) and read back against the batch it came from.
 *
 * COHORT_WRITE_CORPUS=dir makes proto/samples_round_trip also write every
 * sample frame to dir: that is how tests/fuzz/corpus/proto/ was made.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cohort.h"
#include "proto.h"

#define T0 1700000000000LL
#define MAXB 100000u               /* max_body of most decodes */
#define MAXN 1000u                 /* max_batch of most decodes */

static proto_arena arena;
static proto_wbuf wb;

static void teardown(void)
{
	proto_arena_free(&arena);
	proto_wbuf_free(&wb);
}

TestSuite(proto, .fini = teardown);

/* ---- samples ------------------------------------------------------------ */

static const float vec3[3] = { 0.5f, -1.25f, 3.0f };
static const float vec5[5] = { 1, 2, 3, 4, 5 };
static const float cents[2 * 3] = { 0, 1, 2, -3, -4.5f, 6 };
static const double means[3] = { 1.5, -2, 1e10 };
static const double sds[3] = { 0.25, 3, 1e-3 };
static int cols3[3] = { 0, 5, 6 };
static int cols1[1] = { 2 };

static proto_column every_col[12];
static cohort_field fields_a[8], fields_b[1];
static proto_put_row put_rows[3];
static cohort_update upd_a[3], upd_b[1];
static proto_event_row ev_rows[2];
static proto_key keys4[4];
static cohort_value in_vals[3], cmp_val[1], cmp_val2[1], assign_vals[3];
static proto_filter_node nodes_all[9], nodes_small[2];

static proto_key key(const char *s)
{
	proto_key k = { s, (uint8_t)strlen(s) };
	return k;
}

static void samples_init(void)
{
	static const struct { const char *name; uint8_t type; uint32_t dim;
			      int64_t hl; } defs[12] = {
		{ "f32", COHORT_F32, 0, 0 }, { "f64", COHORT_F64, 0, 0 },
		{ "i32", COHORT_I32, 0, 0 }, { "i64", COHORT_I64, 0, 0 },
		{ "flag", COHORT_BOOL, 0, 0 }, { "city", COHORT_CAT, 0, 0 },
		{ "emb", COHORT_VEC, 3, 0 }, { "clicks", COHORT_COUNTER, 0, 0 },
		{ "heat", COHORT_DECAY, 0, 3600000 }, { "lo", COHORT_MIN, 0, 0 },
		{ "hi", COHORT_MAX, 0, 0 }, { "Latest_2", COHORT_LAST, 0, 0 },
	};
	for (int i = 0; i < 12; i++) {
		strcpy(every_col[i].name, defs[i].name);
		every_col[i].type = defs[i].type;
		every_col[i].dim = defs[i].dim;
		every_col[i].half_life_ms = defs[i].hl;
	}
	fields_a[0] = (cohort_field){ 0, cohort_f32(1.5f) };
	fields_a[1] = (cohort_field){ 1, cohort_f64(-2.25e300) };
	fields_a[2] = (cohort_field){ 2, cohort_i32(INT32_MIN) };
	fields_a[3] = (cohort_field){ 3, cohort_i64(INT64_MAX) };
	fields_a[4] = (cohort_field){ 4, cohort_bool(true) };
	fields_a[5] = (cohort_field){ 5, cohort_catn("Paris\0x", 7) };
	fields_a[6] = (cohort_field){ 6, cohort_vec(vec3, 3) };
	fields_a[7] = (cohort_field){ 1023, cohort_null() };
	fields_b[0] = (cohort_field){ 4, cohort_bool(false) };
	put_rows[0] = (proto_put_row){ key("user:1"), T0, 8, fields_a };
	put_rows[1] = (proto_put_row){ key("u"), COHORT_NOW, 1, fields_b };
	put_rows[2] = (proto_put_row){ key("empty_row"), -5, 0, NULL };
	upd_a[0] = (cohort_update){ 7, COHORT_OP_ADD, cohort_i32(3) };
	upd_a[1] = (cohort_update){ 8, COHORT_OP_OBSERVE, cohort_f64(0.5) };
	upd_a[2] = (cohort_update){ 5, COHORT_OP_SET, cohort_catn("", 0) };
	upd_b[0] = (cohort_update){ 11, COHORT_OP_OBSERVE, cohort_f32(-1) };
	ev_rows[0] = (proto_event_row){ key("user:1"), T0 + 1, 3, upd_a };
	ev_rows[1] = (proto_event_row){ key("user:2"), COHORT_NOW, 1, upd_b };
	keys4[0] = key("a");
	keys4[1] = key("user:12345");
	keys4[2] = (proto_key){ "\x00\xff\x01", 3 };
	keys4[3] = key("a_key_that_is_somewhat_longer_than_the_others_0123");
	in_vals[0] = cohort_catn("red", 3);
	in_vals[1] = cohort_catn("green", 5);
	in_vals[2] = cohort_catn("", 0);
	cmp_val[0] = cohort_f64(0.1);
	cmp_val2[0] = cohort_catn("blue", 4);
	assign_vals[0] = cohort_f64(1);
	assign_vals[1] = cohort_null();
	assign_vals[2] = cohort_i64(-7);
	memset(nodes_all, 0, sizeof(nodes_all));
	nodes_all[0] = (proto_filter_node){ .kind = PROTO_FILTER_CMP,
		.cmp = COHORT_GE, .column = 1, .nvalues = 1, .values = cmp_val };
	nodes_all[1] = (proto_filter_node){ .kind = PROTO_FILTER_IN,
		.column = 5, .nvalues = 3, .values = in_vals };
	nodes_all[2] = (proto_filter_node){ .kind = PROTO_FILTER_IS_NULL,
		.column = 2 };
	nodes_all[3] = (proto_filter_node){ .kind = PROTO_FILTER_NOT_NULL,
		.column = 3 };
	nodes_all[4] = (proto_filter_node){ .kind = PROTO_FILTER_AND,
		.a = 0, .b = 1 };
	nodes_all[5] = (proto_filter_node){ .kind = PROTO_FILTER_OR,
		.a = 2, .b = 3 };
	nodes_all[6] = (proto_filter_node){ .kind = PROTO_FILTER_NOT, .a = 5 };
	nodes_all[7] = (proto_filter_node){ .kind = PROTO_FILTER_PERSONA,
		.persona = 41 };
	strcpy(nodes_all[7].model, "spend_model");
	nodes_all[8] = (proto_filter_node){ .kind = PROTO_FILTER_AND,
		.a = 6, .b = 7 };
	memset(nodes_small, 0, sizeof(nodes_small));
	nodes_small[0] = (proto_filter_node){ .kind = PROTO_FILTER_CMP,
		.cmp = COHORT_EQ, .column = 5, .nvalues = 1,
		.values = cmp_val2 };
	nodes_small[1] = (proto_filter_node){ .kind = PROTO_FILTER_NOT,
		.a = 0 };
}

/* Sample i into *q; false past the last one. */
static bool sample(int i, proto_req *q)
{
	static bool ready;
	if (!ready) {
		samples_init();
		ready = true;
	}
	memset(q, 0, sizeof(*q));
	q->hdr.id = 1000u + (uint32_t)i * 7919u;
	strcpy(q->table, "users");
	strcpy(q->name, "model_1");
	switch (i) {
	case 0:
		q->hdr.opcode = PROTO_OP_HELLO;
		q->table[0] = q->name[0] = '\0';
		q->u.hello.version = 1;
		strcpy(q->u.hello.client, "cohort-test/1.0");
		break;
	case 1:
		q->hdr.opcode = PROTO_OP_AUTH;
		q->table[0] = q->name[0] = '\0';
		q->u.auth.token = "0123456789abcdef-secret";
		q->u.auth.token_len = 23;
		break;
	case 2:
		q->hdr.opcode = PROTO_OP_PING;
		q->table[0] = q->name[0] = '\0';
		break;
	case 3:
		q->hdr.opcode = PROTO_OP_TABLE_CREATE;
		q->name[0] = '\0';
		q->u.table_create.ttl_ms = 86400000;
		q->u.table_create.ncols = 12;
		q->u.table_create.cols = every_col;
		break;
	case 4:
		q->hdr.opcode = PROTO_OP_COLUMN_ADD;
		q->name[0] = '\0';
		strcpy(q->u.column_add.name, "emb2");
		q->u.column_add.type = COHORT_VEC;
		q->u.column_add.dim = 4096;
		break;
	case 5:
		q->hdr.opcode = PROTO_OP_DESCRIBE;
		q->name[0] = '\0';
		break;
	case 6:
		q->hdr.opcode = PROTO_OP_DESCRIBE;
		q->table[0] = q->name[0] = '\0';
		break;
	case 7:
		q->hdr.opcode = PROTO_OP_INDEX_CREATE;
		q->u.index_create.column = 6;
		q->u.index_create.opts = (cohort_index_opts){
			COHORT_METRIC_COSINE, 16, 200, 64, -1.0f, 1.0f };
		break;
	case 8:
		q->hdr.opcode = PROTO_OP_INDEX_DROP;
		break;
	case 9:
		q->hdr.opcode = PROTO_OP_PUT;
		q->name[0] = '\0';
		q->u.put.nrows = 3;
		q->u.put.rows = put_rows;
		break;
	case 10:
		q->hdr.opcode = PROTO_OP_EVENT;
		q->name[0] = '\0';
		q->u.event.nrows = 2;
		q->u.event.rows = ev_rows;
		break;
	case 11:
		q->hdr.opcode = PROTO_OP_DELETE;
		q->name[0] = '\0';
		q->u.del.nkeys = 4;
		q->u.del.keys = keys4;
		break;
	case 12:
		q->hdr.opcode = PROTO_OP_GET;
		q->name[0] = '\0';
		q->u.get.at = COHORT_NOW;
		q->u.get.ncols = 3;
		q->u.get.cols = cols3;
		q->u.get.nkeys = 1;
		q->u.get.keys = &keys4[1];
		break;
	case 13:
		q->hdr.opcode = PROTO_OP_GET;
		q->name[0] = '\0';
		q->u.get.at = T0;
		q->u.get.nkeys = 1;
		q->u.get.keys = &keys4[2];
		break;
	case 14:
		q->hdr.opcode = PROTO_OP_GET_MANY;
		q->name[0] = '\0';
		q->u.get.at = T0 + 5;
		q->u.get.ncols = 1;
		q->u.get.cols = cols1;
		q->u.get.nkeys = 4;
		q->u.get.keys = keys4;
		break;
	case 15:
		q->hdr.opcode = PROTO_OP_FILTER_COUNT;
		q->name[0] = '\0';
		q->u.filter.at = COHORT_NOW;
		q->u.filter.filter = (proto_filter){ 9, nodes_all };
		break;
	case 16:
		q->hdr.opcode = PROTO_OP_FILTER_LIST;
		q->name[0] = '\0';
		q->u.filter.at = T0;
		q->u.filter.limit = 10;
		q->u.filter.filter = (proto_filter){ 2, nodes_small };
		break;
	case 17:
		q->hdr.opcode = PROTO_OP_KNN;
		q->u.knn.k = 10;
		q->u.knn.ef = 0;
		q->u.knn.at = COHORT_NOW;
		q->u.knn.key = keys4[1];
		break;
	case 18:
		q->hdr.opcode = PROTO_OP_KNN;
		q->u.knn.k = 1000;
		q->u.knn.ef = 128;
		q->u.knn.at = T0;
		q->u.knn.dim = 5;
		q->u.knn.vec = (float *)vec5;
		q->u.knn.filter = (proto_filter){ 2, nodes_small };
		break;
	case 19:
		q->hdr.opcode = PROTO_OP_PERSONA_ASSIGN;
		q->u.assign.m = 3;
		q->u.assign.key = keys4[0];
		break;
	case 20:
		q->hdr.opcode = PROTO_OP_PERSONA_ASSIGN;
		q->u.assign.m = 32;
		q->u.assign.nvalues = 3;
		q->u.assign.values = assign_vals;
		break;
	case 21:
		q->hdr.opcode = PROTO_OP_PERSONA_MEMBERS;
		q->u.members.persona = 7;
		q->u.members.at = COHORT_NOW;
		q->u.members.limit = 100;
		q->u.members.filter = (proto_filter){ 9, nodes_all };
		break;
	case 22:
		q->hdr.opcode = PROTO_OP_PERSONA_SIZES;
		break;
	case 23:
		q->hdr.opcode = PROTO_OP_PERSONA_TRAIN;
		q->u.train.ncols = 3;
		q->u.train.cols = cols3;
		q->u.train.mode = COHORT_PERSONA_BACKGROUND;
		q->u.train.max_delay_ms = 25;
		q->u.train.k = 8;
		q->u.train.iters = 30;
		q->u.train.seed = 0x0123456789abcdefull;
		q->u.train.sample = 50000;
		q->u.train.minibatch = 1;
		q->u.train.background = 0;
		break;
	case 24:
		q->hdr.opcode = PROTO_OP_PERSONA_TRAIN;
		q->u.train.k = 4;
		q->u.train.background = 1;
		break;
	case 25:
		q->hdr.opcode = PROTO_OP_PERSONA_UPLOAD;
		q->u.upload.ncols = 3;
		q->u.upload.cols = cols3;
		q->u.upload.mode = COHORT_PERSONA_AT_ONCE;
		q->u.upload.k = 2;
		q->u.upload.dim = 3;
		q->u.upload.centroids = (float *)cents;
		q->u.upload.mean = (double *)means;
		q->u.upload.sd = (double *)sds;
		break;
	case 26:
		q->hdr.opcode = PROTO_OP_PERSONA_UPLOAD;
		q->u.upload.ncols = 1;
		q->u.upload.cols = cols1;
		q->u.upload.max_delay_ms = 5;
		q->u.upload.k = 2;
		q->u.upload.dim = 3;
		q->u.upload.centroids = (float *)cents;
		break;
	case 27:
		q->hdr.opcode = PROTO_OP_SUBSCRIBE;
		q->u.subscribe.cursor = UINT64_MAX;
		break;
	case 28:
		q->hdr.opcode = PROTO_OP_UNSUBSCRIBE;
		break;
	case 29:
		q->hdr.opcode = PROTO_OP_SNAPSHOT;
		q->table[0] = q->name[0] = '\0';
		break;
	case 30:
		q->hdr.opcode = PROTO_OP_STATS;
		q->table[0] = q->name[0] = '\0';
		break;
	case 31:
		q->hdr.opcode = PROTO_OP_PERSONA_DESCRIBE;
		break;
	default:
		return false;
	}
	return true;
}

/* ---- comparison --------------------------------------------------------- */

static void value_eq(const cohort_value *a, const cohort_value *b)
{
	cr_assert_eq(a->type, b->type);
	switch (a->type) {
	case COHORT_NULL:
		break;
	case COHORT_F32:
		cr_assert_eq(memcmp(&a->v.f32, &b->v.f32, 4), 0);
		break;
	case COHORT_F64:
		cr_assert_eq(memcmp(&a->v.f64, &b->v.f64, 8), 0);
		break;
	case COHORT_I32:
		cr_assert_eq(a->v.i32, b->v.i32);
		break;
	case COHORT_I64:
		cr_assert_eq(a->v.i64, b->v.i64);
		break;
	case COHORT_BOOL:
		cr_assert_eq(a->v.b, b->v.b);
		break;
	case COHORT_CAT:
		cr_assert_eq(a->v.str.len, b->v.str.len);
		cr_assert_eq(memcmp(a->v.str.ptr, b->v.str.ptr, a->v.str.len), 0);
		break;
	case COHORT_VEC:
		cr_assert_eq(a->v.vec.dim, b->v.vec.dim);
		cr_assert_eq((uintptr_t)b->v.vec.ptr % _Alignof(float), 0);
		cr_assert_eq(memcmp(a->v.vec.ptr, b->v.vec.ptr,
				    a->v.vec.dim * sizeof(float)), 0);
		break;
	default:
		cr_assert_fail("value type %d", a->type);
	}
}

static void key_eq(const proto_key *a, const proto_key *b)
{
	cr_assert_eq(a->len, b->len);
	if (a->len)
		cr_assert_eq(memcmp(a->ptr, b->ptr, a->len), 0);
}

static void cols_eq(const int *a, const int *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(a[i], b[i], "column %zu", i);
}

static void column_eq(const proto_column *a, const proto_column *b)
{
	cr_assert_str_eq(a->name, b->name);
	cr_assert_eq(a->type, b->type);
	cr_assert_eq(a->dim, b->dim);
	cr_assert_eq(a->half_life_ms, b->half_life_ms);
}

static void filter_eq(const proto_filter *a, const proto_filter *b)
{
	cr_assert_eq(a->nnodes, b->nnodes);
	for (uint16_t i = 0; i < a->nnodes; i++) {
		const proto_filter_node *x = &a->nodes[i], *y = &b->nodes[i];
		cr_assert_eq(x->kind, y->kind, "node %u", i);
		switch (x->kind) {
		case PROTO_FILTER_CMP:
			cr_assert_eq(x->cmp, y->cmp);
			cr_assert_eq(x->column, y->column);
			cr_assert_eq(y->nvalues, 1);
			value_eq(&x->values[0], &y->values[0]);
			break;
		case PROTO_FILTER_IN:
			cr_assert_eq(x->column, y->column);
			cr_assert_eq(x->nvalues, y->nvalues);
			for (uint16_t j = 0; j < x->nvalues; j++)
				value_eq(&x->values[j], &y->values[j]);
			break;
		case PROTO_FILTER_IS_NULL:
		case PROTO_FILTER_NOT_NULL:
			cr_assert_eq(x->column, y->column);
			break;
		case PROTO_FILTER_AND:
		case PROTO_FILTER_OR:
			cr_assert_eq(x->a, y->a);
			cr_assert_eq(x->b, y->b);
			break;
		case PROTO_FILTER_NOT:
			cr_assert_eq(x->a, y->a);
			break;
		case PROTO_FILTER_PERSONA:
			cr_assert_str_eq(x->model, y->model);
			cr_assert_eq(x->persona, y->persona);
			break;
		default:
			cr_assert_fail("node kind %u", x->kind);
		}
	}
}

static void req_eq(const proto_req *a, const proto_req *b)
{
	cr_assert_eq(a->hdr.opcode, b->hdr.opcode);
	cr_assert_eq(a->hdr.id, b->hdr.id);
	cr_assert_eq(b->hdr.flags, 0);
	cr_assert_str_eq(a->table, b->table);
	cr_assert_str_eq(a->name, b->name);
	switch (a->hdr.opcode) {
	case PROTO_OP_HELLO:
		cr_assert_eq(a->u.hello.version, b->u.hello.version);
		cr_assert_str_eq(a->u.hello.client, b->u.hello.client);
		break;
	case PROTO_OP_AUTH:
		cr_assert_eq(a->u.auth.token_len, b->u.auth.token_len);
		cr_assert_eq(memcmp(a->u.auth.token, b->u.auth.token,
				    a->u.auth.token_len), 0);
		break;
	case PROTO_OP_TABLE_CREATE:
		cr_assert_eq(a->u.table_create.ttl_ms, b->u.table_create.ttl_ms);
		cr_assert_eq(a->u.table_create.ncols, b->u.table_create.ncols);
		for (uint16_t i = 0; i < a->u.table_create.ncols; i++)
			column_eq(&a->u.table_create.cols[i],
				  &b->u.table_create.cols[i]);
		break;
	case PROTO_OP_COLUMN_ADD:
		column_eq(&a->u.column_add, &b->u.column_add);
		break;
	case PROTO_OP_INDEX_CREATE: {
		const cohort_index_opts *x = &a->u.index_create.opts,
					*y = &b->u.index_create.opts;
		cr_assert_eq(a->u.index_create.column, b->u.index_create.column);
		cr_assert_eq(x->metric, y->metric);
		cr_assert_eq(x->M, y->M);
		cr_assert_eq(x->ef_construction, y->ef_construction);
		cr_assert_eq(x->ef_search, y->ef_search);
		cr_assert_eq(x->lo, y->lo);
		cr_assert_eq(x->hi, y->hi);
		break;
	}
	case PROTO_OP_PUT:
		cr_assert_eq(a->u.put.nrows, b->u.put.nrows);
		for (uint32_t i = 0; i < a->u.put.nrows; i++) {
			const proto_put_row *x = &a->u.put.rows[i],
					    *y = &b->u.put.rows[i];
			key_eq(&x->key, &y->key);
			cr_assert_eq(x->time, y->time);
			cr_assert_eq(x->nfields, y->nfields);
			for (uint16_t j = 0; j < x->nfields; j++) {
				cr_assert_eq(x->fields[j].column,
					     y->fields[j].column);
				value_eq(&x->fields[j].value,
					 &y->fields[j].value);
			}
		}
		break;
	case PROTO_OP_EVENT:
		cr_assert_eq(a->u.event.nrows, b->u.event.nrows);
		for (uint32_t i = 0; i < a->u.event.nrows; i++) {
			const proto_event_row *x = &a->u.event.rows[i],
					      *y = &b->u.event.rows[i];
			key_eq(&x->key, &y->key);
			cr_assert_eq(x->time, y->time);
			cr_assert_eq(x->nupdates, y->nupdates);
			for (uint16_t j = 0; j < x->nupdates; j++) {
				cr_assert_eq(x->updates[j].column,
					     y->updates[j].column);
				cr_assert_eq(x->updates[j].op, y->updates[j].op);
				value_eq(&x->updates[j].value,
					 &y->updates[j].value);
			}
		}
		break;
	case PROTO_OP_DELETE:
		cr_assert_eq(a->u.del.nkeys, b->u.del.nkeys);
		for (uint32_t i = 0; i < a->u.del.nkeys; i++)
			key_eq(&a->u.del.keys[i], &b->u.del.keys[i]);
		break;
	case PROTO_OP_GET:
	case PROTO_OP_GET_MANY:
		cr_assert_eq(a->u.get.at, b->u.get.at);
		cr_assert_eq(a->u.get.ncols, b->u.get.ncols);
		cols_eq(a->u.get.cols, b->u.get.cols, a->u.get.ncols);
		cr_assert_eq(a->u.get.nkeys, b->u.get.nkeys);
		for (uint32_t i = 0; i < a->u.get.nkeys; i++)
			key_eq(&a->u.get.keys[i], &b->u.get.keys[i]);
		break;
	case PROTO_OP_FILTER_COUNT:
	case PROTO_OP_FILTER_LIST:
		cr_assert_eq(a->u.filter.at, b->u.filter.at);
		cr_assert_eq(a->u.filter.limit, b->u.filter.limit);
		filter_eq(&a->u.filter.filter, &b->u.filter.filter);
		break;
	case PROTO_OP_KNN:
		cr_assert_eq(a->u.knn.k, b->u.knn.k);
		cr_assert_eq(a->u.knn.ef, b->u.knn.ef);
		cr_assert_eq(a->u.knn.at, b->u.knn.at);
		key_eq(&a->u.knn.key, &b->u.knn.key);
		cr_assert_eq(a->u.knn.dim, b->u.knn.dim);
		if (a->u.knn.dim)
			cr_assert_eq(memcmp(a->u.knn.vec, b->u.knn.vec,
					    a->u.knn.dim * 4), 0);
		filter_eq(&a->u.knn.filter, &b->u.knn.filter);
		break;
	case PROTO_OP_PERSONA_ASSIGN:
		cr_assert_eq(a->u.assign.m, b->u.assign.m);
		key_eq(&a->u.assign.key, &b->u.assign.key);
		cr_assert_eq(a->u.assign.nvalues, b->u.assign.nvalues);
		for (uint16_t i = 0; i < a->u.assign.nvalues; i++)
			value_eq(&a->u.assign.values[i], &b->u.assign.values[i]);
		break;
	case PROTO_OP_PERSONA_MEMBERS:
		cr_assert_eq(a->u.members.persona, b->u.members.persona);
		cr_assert_eq(a->u.members.limit, b->u.members.limit);
		cr_assert_eq(a->u.members.at, b->u.members.at);
		filter_eq(&a->u.members.filter, &b->u.members.filter);
		break;
	case PROTO_OP_PERSONA_TRAIN:
		cr_assert_eq(a->u.train.ncols, b->u.train.ncols);
		cols_eq(a->u.train.cols, b->u.train.cols, a->u.train.ncols);
		cr_assert_eq(a->u.train.mode, b->u.train.mode);
		cr_assert_eq(a->u.train.max_delay_ms, b->u.train.max_delay_ms);
		cr_assert_eq(a->u.train.k, b->u.train.k);
		cr_assert_eq(a->u.train.iters, b->u.train.iters);
		cr_assert_eq(a->u.train.seed, b->u.train.seed);
		cr_assert_eq(a->u.train.sample, b->u.train.sample);
		cr_assert_eq(a->u.train.minibatch, b->u.train.minibatch);
		cr_assert_eq(a->u.train.background, b->u.train.background);
		break;
	case PROTO_OP_PERSONA_UPLOAD: {
		size_t n = (size_t)a->u.upload.k * a->u.upload.dim;
		cr_assert_eq(a->u.upload.ncols, b->u.upload.ncols);
		cols_eq(a->u.upload.cols, b->u.upload.cols, a->u.upload.ncols);
		cr_assert_eq(a->u.upload.mode, b->u.upload.mode);
		cr_assert_eq(a->u.upload.max_delay_ms, b->u.upload.max_delay_ms);
		cr_assert_eq(a->u.upload.k, b->u.upload.k);
		cr_assert_eq(a->u.upload.dim, b->u.upload.dim);
		cr_assert_eq(memcmp(a->u.upload.centroids, b->u.upload.centroids,
				    n * 4), 0);
		cr_assert_eq(!a->u.upload.mean, !b->u.upload.mean);
		cr_assert_eq(!a->u.upload.sd, !b->u.upload.sd);
		if (a->u.upload.mean) {
			cr_assert_eq(memcmp(a->u.upload.mean, b->u.upload.mean,
					    a->u.upload.dim * 8), 0);
			cr_assert_eq(memcmp(a->u.upload.sd, b->u.upload.sd,
					    a->u.upload.dim * 8), 0);
		}
		break;
	}
	case PROTO_OP_SUBSCRIBE:
		cr_assert_eq(a->u.subscribe.cursor, b->u.subscribe.cursor);
		break;
	case PROTO_OP_PING:
	case PROTO_OP_DESCRIBE:
	case PROTO_OP_INDEX_DROP:
	case PROTO_OP_PERSONA_SIZES:
	case PROTO_OP_PERSONA_DESCRIBE:
	case PROTO_OP_UNSUBSCRIBE:
	case PROTO_OP_SNAPSHOT:
	case PROTO_OP_STATS:
		break;
	default:
		cr_assert_fail("opcode 0x%x", a->hdr.opcode);
	}
}

/* Encode q alone into wb (reset first); returns its length. */
static size_t encode(const proto_req *q)
{
	wb.len = 0;
	wb.err = 0;
	proto_req_encode(&wb, q);
	cr_assert_eq(wb.err, 0, "encode of opcode 0x%x: %d", q->hdr.opcode,
		     wb.err);
	return wb.len;
}

static int decode(const uint8_t *buf, size_t len, proto_req *out)
{
	proto_arena_reset(&arena);
	return proto_req_decode(buf, len, MAXB, MAXN, &arena, out);
}

static void write_file(const char *dir, const char *name, const uint8_t *p,
		       size_t n)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f, "%s", path);
	cr_assert_eq(fwrite(p, 1, n, f), n);
	fclose(f);
}

/* ---- opcodes and roles -------------------------------------------------- */

Test(proto, op_names_and_roles_follow_the_table)
{
	cr_assert_str_eq(proto_op_name(PROTO_OP_GET_MANY), "get_many");
	cr_assert_str_eq(proto_op_name(PROTO_OP_HELLO), "hello");
	cr_assert_str_eq(proto_op_name(PROTO_OP_STATS), "stats");
	cr_assert_null(proto_op_name(0));
	cr_assert_null(proto_op_name(0x7f));
	cr_assert_eq(proto_op_role(PROTO_OP_AUTH), PROTO_ROLE_NONE);
	cr_assert_eq(proto_op_role(PROTO_OP_GET), PROTO_ROLE_READ);
	cr_assert_eq(proto_op_role(PROTO_OP_EVENT), PROTO_ROLE_WRITE);
	cr_assert_eq(proto_op_role(PROTO_OP_SNAPSHOT), PROTO_ROLE_ADMIN);
	cr_assert_eq(proto_op_role(PROTO_OP_PERSONA_UPLOAD), PROTO_ROLE_ADMIN);
	cr_assert_eq(proto_op_role(0x99), -1);
	cr_assert_str_eq(proto_role_name(PROTO_ROLE_NONE), "none");
	cr_assert_str_eq(proto_role_name(PROTO_ROLE_READ), "read");
	cr_assert_str_eq(proto_role_name(PROTO_ROLE_WRITE), "write");
	cr_assert_str_eq(proto_role_name(PROTO_ROLE_ADMIN), "admin");
	cr_assert_null(proto_role_name(4));
	cr_assert_null(proto_role_name(-1));
}

/* ---- headers ------------------------------------------------------------ */

Test(proto, header_round_trips_little_endian)
{
	uint8_t b[PROTO_HDR_LEN];
	proto_hdr h = { PROTO_OP_KNN, PROTO_F_RESPONSE | PROTO_F_PUSH,
			0x01020304u, 0x0a0b0c0du }, g;
	proto_hdr_encode(b, &h);
	static const uint8_t want[PROTO_HDR_LEN] = {
		0x43, 0x48, 1, 0x40, 3, 0, 0, 0,
		4, 3, 2, 1, 0x0d, 0x0c, 0x0b, 0x0a
	};
	cr_assert_eq(memcmp(b, want, sizeof(want)), 0);
	cr_assert_eq(proto_hdr_decode(b, sizeof(b), 0, &g), PROTO_HDR_LEN);
	cr_assert_eq(g.opcode, h.opcode);
	cr_assert_eq(g.flags, h.flags);
	cr_assert_eq(g.id, h.id);
	cr_assert_eq(g.body_len, h.body_len);
	for (size_t n = 0; n < PROTO_HDR_LEN; n++)
		cr_assert_eq(proto_hdr_decode(b, n, 0, &g), PROTO_MORE);
	cr_assert_eq(proto_hdr_decode(b, sizeof(b), 0x0a0b0c0c, &g),
		     COHORT_ELIMIT);
	cr_assert_eq(g.id, h.id);
}

Test(proto, header_garbage_is_refused_at_its_first_byte)
{
	proto_hdr g;
	const uint8_t get[] = "GET / HTTP/1.1\r\n";
	cr_assert_eq(proto_hdr_decode(get, 1, 0, &g), COHORT_EPROTO);
	const uint8_t half[] = { 0x43, 0x00 };
	cr_assert_eq(proto_hdr_decode(half, 1, 0, &g), PROTO_MORE);
	cr_assert_eq(proto_hdr_decode(half, 2, 0, &g), COHORT_EPROTO);
}

/* ---- round trips -------------------------------------------------------- */

Test(proto, samples_round_trip)
{
	const char *dir = getenv("COHORT_WRITE_CORPUS");
	proto_req q, d;
	int i;
	for (i = 0; sample(i, &q); i++) {
		size_t n = encode(&q);
		cr_assert_eq(wb.buf[0], 'C');
		cr_assert_eq(wb.buf[1], 'H');
		uint32_t body;
		memcpy(&body, wb.buf + 12, 4);
		cr_assert_eq(body + PROTO_HDR_LEN, n, "sample %d", i);
		int rc = decode(wb.buf, n, &d);
		cr_assert_eq(rc, (int)n, "sample %d (%s): %d %s", i,
			     proto_op_name(q.hdr.opcode), rc,
			     d.why ? d.why : "");
		cr_assert_null(d.why);
		cr_assert_eq(d.hdr.body_len, body);
		req_eq(&q, &d);
		if (dir) {
			char name[64];
			snprintf(name, sizeof(name), "req-%02d-%s", i,
				 proto_op_name(q.hdr.opcode));
			write_file(dir, name, wb.buf, n);
		}
	}
	if (dir) {
		/* a pipeline of three requests in one input */
		wb.len = 0;
		for (int j = 9; j <= 11 && sample(j, &q); j++)
			proto_req_encode(&wb, &q);
		write_file(dir, "stream-put-event-delete", wb.buf, wb.len);
	}
	cr_assert_eq(i, 32);
}

Test(proto, every_opcode_has_a_sample)
{
	static const int ops[] = {
#define X_OP(name, code, str, role) code,
		PROTO_OPS(X_OP)
#undef X_OP
	};
	proto_req q;
	for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
		bool found = ops[k] == PROTO_OP_CHANGES;   /* a push */
		for (int i = 0; !found && sample(i, &q); i++)
			found = q.hdr.opcode == ops[k];
		cr_assert(found, "no sample of %s", proto_op_name(ops[k]));
	}
}

Test(proto, every_prefix_of_a_frame_needs_more)
{
	proto_req q, d;
	for (int i = 0; sample(i, &q); i++) {
		size_t n = encode(&q);
		for (size_t len = 0; len < n; len++)
			cr_assert_eq(decode(wb.buf, len, &d), PROTO_MORE,
				     "sample %d, %zu of %zu bytes", i, len, n);
	}
}

Test(proto, pipelined_frames_decode_one_at_a_time)
{
	proto_req q[4], d;
	size_t ends[4];
	wb.len = 0;
	for (int i = 0; i < 4; i++) {
		cr_assert(sample(9 + i, &q[i]));
		proto_req_encode(&wb, &q[i]);
		ends[i] = wb.len;
	}
	cr_assert_eq(wb.err, 0);
	size_t off = 0;
	for (int i = 0; i < 4; i++) {
		int rc = decode(wb.buf + off, wb.len - off, &d);
		cr_assert_eq(off + (size_t)rc, ends[i]);
		req_eq(&q[i], &d);
		off += (size_t)rc;
	}
}

Test(proto, time_now_travels_as_int64_min)
{
	proto_req q, d;
	cr_assert(sample(12, &q));   /* GET at COHORT_NOW */
	size_t n = encode(&q);
	static const uint8_t now[8] = { 0, 0, 0, 0, 0, 0, 0, 0x80 };
	/* header, str8 "users", then the time */
	cr_assert_eq(memcmp(wb.buf + PROTO_HDR_LEN + 6, now, 8), 0);
	cr_assert_eq(decode(wb.buf, n, &d), (int)n);
	cr_assert_eq(d.u.get.at, COHORT_NOW);
}

Test(proto, decoded_vectors_are_aligned_copies)
{
	proto_req q, d;
	cr_assert(sample(18, &q));   /* KNN by vector */
	size_t n = encode(&q);
	/* a frame at an odd address: the floats in it are misaligned */
	uint8_t *odd = malloc(n + 1);
	memcpy(odd + 1, wb.buf, n);
	cr_assert_eq(decode(odd + 1, n, &d), (int)n);
	cr_assert_eq((uintptr_t)d.u.knn.vec % 16, 0);
	cr_assert_eq(memcmp(d.u.knn.vec, vec5, sizeof(vec5)), 0);
	free(odd);
}

Test(proto, unknown_opcode_is_skipped_for_enotsup)
{
	proto_req d;
	uint8_t f[PROTO_HDR_LEN + 3] = { 0 };
	proto_hdr h = { 0x7e, 0, 77, 3 };
	proto_hdr_encode(f, &h);
	cr_assert_eq(decode(f, sizeof(f), &d), (int)sizeof(f));
	cr_assert_eq(d.hdr.opcode, 0x7e);
	cr_assert_eq(d.hdr.id, 77);
	cr_assert_eq(proto_op_role(d.hdr.opcode), -1);
}

Test(proto, arena_keeps_its_block_across_requests)
{
	proto_req q, d;
	cr_assert(sample(14, &q));   /* GET_MANY */
	size_t n = encode(&q);
	cr_assert_eq(decode(wb.buf, n, &d), (int)n);
	const void *first = d.u.get.keys;
	for (int i = 0; i < 100; i++) {
		cr_assert_eq(decode(wb.buf, n, &d), (int)n);
		cr_assert_eq(d.u.get.keys, first);
	}
}

Test(proto, arena_aligns_and_respects_its_limit)
{
	proto_arena a = { 0 };
	a.limit = 4096;
	for (size_t n = 1; n < 200; n += 7) {
		void *p = proto_arena_alloc(&a, n);
		if (!p)
			break;
		cr_assert_eq((uintptr_t)p % 16, 0);
		memset(p, 0xab, n);
	}
	cr_assert_null(proto_arena_alloc(&a, 4096));
	proto_arena_reset(&a);
	cr_assert_not_null(proto_arena_alloc(&a, 4000));
	/* beyond the first block: a new one, still aligned */
	a.limit = 0;
	void *big = proto_arena_alloc(&a, 1 << 20);
	cr_assert_not_null(big);
	cr_assert_eq((uintptr_t)big % 16, 0);
	memset(big, 1, 1 << 20);
	proto_arena_free(&a);
	cr_assert_null(a.head);
}

/* ---- malformed frames --------------------------------------------------- */

/* Frame under construction: header reserved in wb. */
static size_t fstart;

static void begin(uint8_t op)
{
	wb.len = 0;
	wb.err = 0;
	fstart = proto_frame_begin(&wb, op, 0, 4242);
}

static int end_and_decode(proto_req *d)
{
	proto_frame_end(&wb, fstart);
	cr_assert_eq(wb.err, 0);
	int rc = decode(wb.buf, wb.len, d);
	if (rc < 0) {
		cr_assert_eq(d->hdr.id, 4242, "the id is known for a reply");
		cr_assert_not_null(d->why);
	}
	return rc;
}

static void put_head(uint32_t nrows)
{
	begin(PROTO_OP_PUT);
	proto_w_str8(&wb, "users", 5);
	proto_w_u32(&wb, nrows);
}

static void put_row1(const char *k)
{
	proto_w_str8(&wb, k, strlen(k));
	proto_w_i64(&wb, T0);
	proto_w_u16(&wb, 1);
	proto_w_u16(&wb, 0);
}

Test(proto, handmade_put_decodes)
{
	/* the control for the malformed cases below */
	proto_req d;
	put_head(1);
	put_row1("k");
	proto_w_u8(&wb, COHORT_BOOL);
	proto_w_u8(&wb, 1);
	cr_assert_gt(end_and_decode(&d), 0);
	cr_assert_eq(d.u.put.rows[0].fields[0].value.type, COHORT_BOOL);
	cr_assert(d.u.put.rows[0].fields[0].value.v.b);
}

Test(proto, bad_magic_version_reserved_or_flags)
{
	proto_req q, d;
	cr_assert(sample(2, &q));   /* PING */
	size_t n = encode(&q);
	uint8_t f[64];
	memcpy(f, wb.buf, n);
	const struct { size_t at; uint8_t val; } bad[] = {
		{ 0, 'X' }, { 1, 'X' }, { 2, 0 }, { 2, 2 }, { 4, 4 }, { 5, 1 },
		{ 6, 1 }, { 7, 0x80 }, { 4, PROTO_F_RESPONSE },
		{ 4, PROTO_F_PUSH },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t g[64];
		memcpy(g, f, n);
		g[bad[i].at] = bad[i].val;
		cr_assert_eq(decode(g, n, &d), COHORT_EPROTO, "byte %zu = %u",
			     bad[i].at, bad[i].val);
		cr_assert_not_null(d.why);
		if (bad[i].at >= 2)
			cr_assert_eq(d.hdr.id, q.hdr.id);
	}
}

Test(proto, bad_value_type_code)
{
	proto_req d;
	put_head(1);
	put_row1("k");
	proto_w_u8(&wb, 8);   /* counter: a column type, not a value's */
	proto_w_f64(&wb, 1);
	cr_assert_eq(end_and_decode(&d), COHORT_EPROTO);
	put_head(1);
	put_row1("k");
	proto_w_u8(&wb, 200);
	cr_assert_eq(end_and_decode(&d), COHORT_EPROTO);
}

Test(proto, bool_other_than_0_or_1)
{
	proto_req d;
	put_head(1);
	put_row1("k");
	proto_w_u8(&wb, COHORT_BOOL);
	proto_w_u8(&wb, 2);
	cr_assert_eq(end_and_decode(&d), COHORT_EPROTO);
}

Test(proto, vector_of_dim_0_or_over_4096)
{
	proto_req d;
	const uint32_t dims[] = { 0, COHORT_MAX_DIM + 1, UINT32_MAX };
	for (size_t i = 0; i < 3; i++) {
		put_head(1);
		put_row1("k");
		proto_w_u8(&wb, COHORT_VEC);
		proto_w_u32(&wb, dims[i]);
		for (int j = 0; j < 8; j++)
			proto_w_f32(&wb, 1);
		cr_assert_eq(end_and_decode(&d), COHORT_EPROTO, "dim %u",
			     dims[i]);
	}
	/* a dim the body cannot hold */
	put_head(1);
	put_row1("k");
	proto_w_u8(&wb, COHORT_VEC);
	proto_w_u32(&wb, 4);
	proto_w_f32(&wb, 1);
	cr_assert_eq(end_and_decode(&d), COHORT_EPROTO);
}

Test(proto, bad_names_are_ebadname_in_a_well_formed_frame)
{
	/* docs/protocol.md: well formed, answered EBADNAME, connection kept */
	proto_req d;
	const char *bad[] = { "us-ers", "users ", "tab\xc3\xa9", "a.b", "",
		"x1234567890123456789012345678901234567890"
		"123456789012345678901234" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		begin(PROTO_OP_DESCRIBE);
		proto_w_str8(&wb, bad[i], strlen(bad[i]));
		int rc = end_and_decode(&d);
		if (bad[i][0])
			cr_assert_eq(rc, COHORT_EBADNAME, "'%s'", bad[i]);
		else
			cr_assert_gt(rc, 0, "DESCRIBE takes an empty name");
		begin(PROTO_OP_INDEX_DROP);
		proto_w_str8(&wb, "users", 5);
		proto_w_str8(&wb, bad[i], strlen(bad[i]));
		cr_assert_eq(end_and_decode(&d), COHORT_EBADNAME, "'%s'", bad[i]);
		cr_assert_eq(PROTO_HDR_LEN + d.hdr.body_len, wb.len);
	}
	begin(PROTO_OP_DESCRIBE);
	proto_w_str8(&wb, "A_z09", 5);
	cr_assert_gt(end_and_decode(&d), 0);
	cr_assert_str_eq(d.table, "A_z09");

	/* a column's name, a filter's model */
	begin(PROTO_OP_COLUMN_ADD);
	proto_w_str8(&wb, "users", 5);
	proto_w_str8(&wb, "b-c", 3);
	proto_w_u8(&wb, COHORT_I32);
	proto_w_u32(&wb, 0);
	proto_w_i64(&wb, 0);
	cr_assert_eq(end_and_decode(&d), COHORT_EBADNAME);
	cr_assert_str_eq(d.why, "column name is not 1 to 64 characters of "
			 "[A-Za-z0-9_]");
	begin(PROTO_OP_FILTER_COUNT);
	proto_w_str8(&wb, "users", 5);
	proto_w_i64(&wb, T0);
	proto_w_u16(&wb, 1);
	proto_w_u8(&wb, PROTO_FILTER_PERSONA);
	proto_w_str8(&wb, "m!", 2);
	proto_w_u32(&wb, 3);
	cr_assert_eq(end_and_decode(&d), COHORT_EBADNAME);
}

Test(proto, bad_name_in_a_malformed_frame_is_eproto)
{
	proto_req d;
	begin(PROTO_OP_INDEX_DROP);
	proto_w_str8(&wb, "bad-table", 9);
	proto_w_str8(&wb, "idx", 3);
	proto_w_u8(&wb, 0);   /* left over */
	cr_assert_eq(end_and_decode(&d), COHORT_EPROTO);
	put_head(1);
	wb.buf[PROTO_HDR_LEN + 1] = '-';   /* "u-ers" */
	put_row1("k");
	proto_w_u8(&wb, 42);   /* no such value type */
	cr_assert_eq(end_and_decode(&d), COHORT_EPROTO);
}

Test(proto, the_frame_after_a_bad_name_decodes)
{
	proto_req q, d;
	begin(PROTO_OP_DESCRIBE);
	proto_w_str8(&wb, "no way", 6);
	proto_frame_end(&wb, fstart);
	size_t first = wb.len;
	cr_assert(sample(12, &q));
	proto_req_encode(&wb, &q);
	cr_assert_eq(wb.err, 0);
	cr_assert_eq(decode(wb.buf, wb.len, &d), COHORT_EBADNAME);
	cr_assert_eq(PROTO_HDR_LEN + d.hdr.body_len, first);
	cr_assert_eq(decode(wb.buf + first, wb.len - first, &d),
		     (int)(wb.len - first));
	req_eq(&q, &d);
}

Test(proto, empty_key)
{
	proto_req d;
	put_head(1);
	put_row1("");
	proto_w_u8(&wb, COHORT_NULL);
	cr_assert_eq(end_and_decode(&d), COHORT_EPROTO);
}

Test(proto, trailing_bytes)
{
	proto_req q, d;
	for (int i = 0; sample(i, &q); i++) {
		size_t n = encode(&q);
		proto_w_u8(&wb, 0);
		uint32_t body = (uint32_t)(n + 1 - PROTO_HDR_LEN);
		memcpy(wb.buf + 12, &body, 4);
		cr_assert_eq(decode(wb.buf, n + 1, &d), COHORT_EPROTO,
			     "sample %d (%s)", i, proto_op_name(q.hdr.opcode));
		cr_assert_eq(d.hdr.id, q.hdr.id);
	}
}

Test(proto, body_shorter_than_its_fields)
{
	/* every sample, its body_len cut short: complete frames whose body
	 * ends in the middle of a field */
	proto_req q, d;
	for (int i = 0; sample(i, &q); i++) {
		size_t n = encode(&q);
		for (size_t cut = 1; cut <= n - PROTO_HDR_LEN; cut++) {
			uint32_t body = (uint32_t)(n - PROTO_HDR_LEN - cut);
			memcpy(wb.buf + 12, &body, 4);
			int rc = decode(wb.buf, PROTO_HDR_LEN + body, &d);
			cr_assert(rc == COHORT_EPROTO,
				  "sample %d (%s) cut by %zu: %d", i,
				  proto_op_name(q.hdr.opcode), cut, rc);
		}
	}
}

Test(proto, filter_node_referring_forward)
{
	proto_req d;
	const uint16_t refs[][2] = { { 0, 1 }, { 1, 0 }, { 1, 1 }, { 5, 0 } };
	for (size_t i = 0; i < 4; i++) {
		begin(PROTO_OP_FILTER_COUNT);
		proto_w_str8(&wb, "users", 5);
		proto_w_i64(&wb, T0);
		proto_w_u16(&wb, 3);
		proto_w_u8(&wb, PROTO_FILTER_IS_NULL);
		proto_w_u16(&wb, 0);
		proto_w_u8(&wb, PROTO_FILTER_AND);
		proto_w_u16(&wb, refs[i][0]);
		proto_w_u16(&wb, refs[i][1]);
		proto_w_u8(&wb, PROTO_FILTER_NOT_NULL);
		proto_w_u16(&wb, 0);
		cr_assert_eq(end_and_decode(&d), COHORT_EPROTO);
	}
	begin(PROTO_OP_FILTER_COUNT);
	proto_w_str8(&wb, "users", 5);
	proto_w_i64(&wb, T0);
	proto_w_u16(&wb, 1);
	proto_w_u8(&wb, PROTO_FILTER_NOT);
	proto_w_u16(&wb, 0);
	cr_assert_eq(end_and_decode(&d), COHORT_EPROTO);
}

Test(proto, unknown_codes_in_a_body)
{
	proto_req d;
	/* filter node kind */
	begin(PROTO_OP_FILTER_COUNT);
	proto_w_str8(&wb, "users", 5);
	proto_w_i64(&wb, T0);
	proto_w_u16(&wb, 1);
	proto_w_u8(&wb, 9);
	proto_w_u16(&wb, 0);
	cr_assert_eq(end_and_decode(&d), COHORT_EPROTO);
	/* comparison */
	begin(PROTO_OP_FILTER_COUNT);
	proto_w_str8(&wb, "users", 5);
	proto_w_i64(&wb, T0);
	proto_w_u16(&wb, 1);
	proto_w_u8(&wb, PROTO_FILTER_CMP);
	proto_w_u16(&wb, 0);
	proto_w_u8(&wb, 7);
	proto_w_u8(&wb, COHORT_NULL);
	cr_assert_eq(end_and_decode(&d), COHORT_EPROTO);
	/* event op */
	begin(PROTO_OP_EVENT);
	proto_w_str8(&wb, "users", 5);
	proto_w_u32(&wb, 1);
	put_row1("k");
	proto_w_u8(&wb, 4);
	proto_w_u8(&wb, COHORT_NULL);
	cr_assert_eq(end_and_decode(&d), COHORT_EPROTO);
	/* column type 0 and 13 */
	for (int t = 0; t <= 13; t += 13) {
		begin(PROTO_OP_COLUMN_ADD);
		proto_w_str8(&wb, "users", 5);
		proto_w_str8(&wb, "c", 1);
		proto_w_u8(&wb, (uint8_t)t);
		proto_w_u32(&wb, 0);
		proto_w_i64(&wb, 0);
		cr_assert_eq(end_and_decode(&d), COHORT_EPROTO);
	}
	/* knn by 2 */
	begin(PROTO_OP_KNN);
	proto_w_str8(&wb, "users", 5);
	proto_w_str8(&wb, "idx", 3);
	proto_w_u32(&wb, 10);
	proto_w_u32(&wb, 0);
	proto_w_i64(&wb, T0);
	proto_w_u8(&wb, 2);
	proto_w_u16(&wb, 0);
	cr_assert_eq(end_and_decode(&d), COHORT_EPROTO);
	/* CHANGES is never a request */
	begin(PROTO_OP_CHANGES);
	cr_assert_eq(end_and_decode(&d), COHORT_EPROTO);
}

Test(proto, counts_the_body_cannot_hold)
{
	/* 1,000 rows announced, one present: refused before 1,000 rows'
	 * worth of memory is asked for */
	proto_req d;
	proto_arena_free(&arena);
	arena.limit = 1024;
	put_head(1000);
	put_row1("k");
	proto_w_u8(&wb, COHORT_NULL);
	proto_frame_end(&wb, fstart);
	cr_assert_eq(proto_req_decode(wb.buf, wb.len, MAXB, MAXN, &arena, &d),
		     COHORT_EPROTO);
	cr_assert_eq(arena.used, 0);
}

/* ---- limits ------------------------------------------------------------- */

Test(proto, oversized_body_is_refused_from_its_header)
{
	proto_req q, d;
	cr_assert(sample(9, &q));   /* PUT */
	size_t n = encode(&q);
	uint32_t max = (uint32_t)(n - PROTO_HDR_LEN - 1);
	proto_arena_reset(&arena);
	/* only the header there: no need to wait for the body */
	cr_assert_eq(proto_req_decode(wb.buf, PROTO_HDR_LEN, max, MAXN,
				      &arena, &d), COHORT_ELIMIT);
	cr_assert_eq(d.hdr.id, q.hdr.id);
	cr_assert_gt(d.hdr.body_len, max);
	cr_assert_eq(proto_req_decode(wb.buf, n, max + 1, MAXN, &arena, &d),
		     (int)n);
}

Test(proto, batch_over_max_batch)
{
	proto_req d;
	char k[8][4];
	for (uint32_t nk = 7; nk <= 8; nk++) {
		begin(PROTO_OP_GET_MANY);
		proto_w_str8(&wb, "users", 5);
		proto_w_i64(&wb, T0);
		proto_w_u16(&wb, 0);
		proto_w_u32(&wb, nk);
		for (uint32_t i = 0; i < nk; i++) {
			snprintf(k[i], sizeof(k[i]), "k%u", i);
			proto_w_str8(&wb, k[i], strlen(k[i]));
		}
		proto_frame_end(&wb, fstart);
		proto_arena_reset(&arena);
		int rc = proto_req_decode(wb.buf, wb.len, MAXB, 7, &arena, &d);
		cr_assert_eq(rc, nk == 7 ? (int)wb.len : COHORT_ELIMIT);
		if (nk == 8) {
			cr_assert_eq(d.hdr.id, 4242);
			/* the frame is whole: the server can skip it */
			cr_assert_eq(PROTO_HDR_LEN + d.hdr.body_len, wb.len);
			/* and only once it is whole */
			cr_assert_eq(proto_req_decode(wb.buf, wb.len - 1, MAXB,
						      7, &arena, &d),
				     PROTO_MORE);
		}
	}
	/* PUT, EVENT and DELETE count against it too */
	const uint8_t ops[] = { PROTO_OP_PUT, PROTO_OP_EVENT, PROTO_OP_DELETE };
	for (int i = 0; i < 3; i++) {
		begin(ops[i]);
		proto_w_str8(&wb, "users", 5);
		proto_w_u32(&wb, 3);
		proto_frame_end(&wb, fstart);
		proto_arena_reset(&arena);
		cr_assert_eq(proto_req_decode(wb.buf, wb.len, MAXB, 2, &arena,
					      &d), COHORT_ELIMIT);
	}
}

Test(proto, k_nodes_columns_and_m_over_their_limits)
{
	proto_req d;
	begin(PROTO_OP_KNN);
	proto_w_str8(&wb, "users", 5);
	proto_w_str8(&wb, "idx", 3);
	proto_w_u32(&wb, COHORT_MAX_K + 1);
	proto_w_u32(&wb, 0);
	proto_w_i64(&wb, T0);
	proto_w_u8(&wb, 0);
	proto_w_str8(&wb, "k", 1);
	proto_w_u16(&wb, 0);
	cr_assert_eq(end_and_decode(&d), COHORT_ELIMIT);

	begin(PROTO_OP_FILTER_COUNT);
	proto_w_str8(&wb, "users", 5);
	proto_w_i64(&wb, T0);
	proto_w_u16(&wb, PROTO_MAX_FILTER_NODES + 1);
	for (unsigned i = 0; i <= PROTO_MAX_FILTER_NODES; i++) {
		proto_w_u8(&wb, PROTO_FILTER_IS_NULL);
		proto_w_u16(&wb, 0);
	}
	cr_assert_eq(end_and_decode(&d), COHORT_ELIMIT);

	begin(PROTO_OP_GET);
	proto_w_str8(&wb, "users", 5);
	proto_w_i64(&wb, T0);
	proto_w_u16(&wb, COHORT_MAX_COLUMNS + 1);
	for (unsigned i = 0; i <= COHORT_MAX_COLUMNS; i++)
		proto_w_u16(&wb, (uint16_t)i);
	proto_w_str8(&wb, "k", 1);
	cr_assert_eq(end_and_decode(&d), COHORT_ELIMIT);

	begin(PROTO_OP_PERSONA_ASSIGN);
	proto_w_str8(&wb, "users", 5);
	proto_w_str8(&wb, "m", 1);
	proto_w_u8(&wb, COHORT_PERSONA_M_MAX + 1);
	proto_w_u8(&wb, 0);
	proto_w_str8(&wb, "k", 1);
	cr_assert_eq(end_and_decode(&d), COHORT_ELIMIT);
}

Test(proto, arena_limit_is_elimit)
{
	proto_req q, d;
	cr_assert(sample(9, &q));   /* PUT: rows, fields, a vector */
	size_t n = encode(&q);
	proto_arena_free(&arena);
	arena.limit = 128;
	cr_assert_eq(proto_req_decode(wb.buf, n, MAXB, MAXN, &arena, &d),
		     COHORT_ELIMIT);
	cr_assert_not_null(d.why);
}

/* ---- writer and reader -------------------------------------------------- */

Test(proto, writer_error_sticks)
{
	proto_wbuf w = { 0 };
	w.limit = 10;
	proto_w_u64(&w, 1);
	cr_assert_eq(w.err, 0);
	proto_w_u32(&w, 2);
	cr_assert_eq(w.err, COHORT_ELIMIT);
	cr_assert_eq(w.len, 8);
	proto_w_u8(&w, 3);
	cr_assert_eq(w.len, 8, "nothing more once failed");
	proto_wbuf_free(&w);

	char big[300] = { 0 };
	proto_w_str8(&w, big, 256);
	cr_assert_eq(w.err, COHORT_EINVAL);
	proto_wbuf_free(&w);

	proto_w_value(&w, &(cohort_value){ COHORT_VEC, { .vec = { NULL, 0 } } });
	cr_assert_eq(w.err, COHORT_EINVAL);
	proto_wbuf_free(&w);
}

Test(proto, writer_grows_past_its_first_block)
{
	proto_wbuf w = { 0 };
	for (uint32_t i = 0; i < 100000; i++)
		proto_w_u32(&w, i);
	cr_assert_eq(w.err, 0);
	cr_assert_eq(w.len, 400000);
	proto_rbuf r = { w.buf, w.buf + w.len, 0, NULL };
	for (uint32_t i = 0; i < 100000; i++)
		cr_assert_eq(proto_r_u32(&r), i);
	cr_assert_eq(r.p, r.end);
	proto_wbuf_free(&w);
}

Test(proto, encoder_refuses_what_the_wire_cannot_carry)
{
	proto_req q;
	cr_assert(sample(12, &q));   /* GET */
	strcpy(q.table, "bad-name");
	proto_req_encode(&wb, &q);
	cr_assert_eq(wb.err, COHORT_EBADNAME);
	proto_wbuf_free(&wb);

	cr_assert(sample(12, &q));
	proto_key empty = { "", 0 };
	q.u.get.keys = &empty;
	proto_req_encode(&wb, &q);
	cr_assert_eq(wb.err, COHORT_EKEY);
	proto_wbuf_free(&wb);

	cr_assert(sample(2, &q));
	q.hdr.opcode = PROTO_OP_CHANGES;
	proto_req_encode(&wb, &q);
	cr_assert_eq(wb.err, COHORT_EINVAL);
}

Test(proto, reader_never_reads_past_the_end)
{
	const uint8_t b[5] = { 1, 2, 3, 4, 5 };
	proto_rbuf r = { b, b + 3, 0, NULL };
	cr_assert_eq(proto_r_u16(&r), 0x0201);
	cr_assert_eq(proto_r_u32(&r), 0);
	cr_assert_eq(r.err, COHORT_EPROTO);
	cr_assert_eq(proto_r_u8(&r), 0, "sticky: zeros from now on");
	size_t n = 9;
	cr_assert_null(proto_r_str8(&r, &n));
	cr_assert_eq(n, 0);
	cr_assert_null(proto_r_bytes(&r, 0));

	const uint8_t s[] = { 4, 'a', 'b' };
	proto_rbuf r2 = { s, s + sizeof(s), 0, NULL };
	cr_assert_null(proto_r_str8(&r2, &n));
	cr_assert_eq(r2.err, COHORT_EPROTO);
}

/* ---- responses ---------------------------------------------------------- */

static int read_response(const uint8_t *buf, size_t len, proto_hdr *h,
			 proto_rbuf *r)
{
	int rc = proto_hdr_decode(buf, len, 0, h);
	cr_assert_eq(rc, PROTO_HDR_LEN);
	cr_assert_eq(len, PROTO_HDR_LEN + h->body_len);
	cr_assert(h->flags & PROTO_F_RESPONSE);
	*r = (proto_rbuf){ buf + PROTO_HDR_LEN, buf + len, 0, NULL };
	return rc;
}

Test(proto, error_response_round_trips)
{
	proto_hdr h;
	proto_rbuf r;
	const char *msg;
	size_t len;
	proto_resp_error(&wb, PROTO_OP_GET, 99, COHORT_ENOCOLUMN,
			 "column 'agee' not found in table 'bank'");
	cr_assert_eq(wb.err, 0);
	read_response(wb.buf, wb.len, &h, &r);
	cr_assert_eq(h.opcode, PROTO_OP_GET);
	cr_assert_eq(h.id, 99);
	cr_assert_eq(proto_resp_status(&r, &msg, &len), COHORT_ENOCOLUMN);
	if (getenv("COHORT_WRITE_CORPUS"))
		write_file(getenv("COHORT_WRITE_CORPUS"), "resp-error",
			   wb.buf + PROTO_HDR_LEN, wb.len - PROTO_HDR_LEN);
	cr_assert_eq(len, strlen("column 'agee' not found in table 'bank'"));
	cr_assert_eq(memcmp(msg, "column 'agee'", 13), 0);
	cr_assert_eq(r.p, r.end);

	/* no message given: the code's own text */
	wb.len = 0;
	proto_resp_error(&wb, PROTO_OP_PUT, 1, COHORT_EDENIED, NULL);
	read_response(wb.buf, wb.len, &h, &r);
	cr_assert_eq(proto_resp_status(&r, &msg, &len), COHORT_EDENIED);
	cr_assert_eq(len, strlen(cohort_strerror(COHORT_EDENIED)));
	cr_assert_eq(memcmp(msg, cohort_strerror(COHORT_EDENIED), len), 0);
}

Test(proto, ok_status_leaves_the_reader_at_the_payload)
{
	proto_hdr h;
	proto_rbuf r;
	const char *msg = "x";
	size_t len = 5;
	size_t start = proto_frame_begin(&wb, PROTO_OP_AUTH, PROTO_F_RESPONSE, 3);
	proto_w_i32(&wb, 0);
	proto_w_u8(&wb, PROTO_ROLE_WRITE);
	proto_frame_end(&wb, start);
	read_response(wb.buf, wb.len, &h, &r);
	cr_assert_eq(proto_resp_status(&r, &msg, &len), 0);
	cr_assert_null(msg);
	cr_assert_eq(len, 0);
	cr_assert_eq(proto_r_u8(&r), PROTO_ROLE_WRITE);
	cr_assert_eq(r.err, 0);
}

Test(proto, bad_status_bodies)
{
	const uint8_t pos[4] = { 1, 0, 0, 0 };
	proto_rbuf r = { pos, pos + 4, 0, NULL };
	cr_assert_eq(proto_resp_status(&r, NULL, NULL), COHORT_EPROTO);
	const uint8_t shrt[3] = { 0, 0, 0 };
	r = (proto_rbuf){ shrt, shrt + 3, 0, NULL };
	cr_assert_eq(proto_resp_status(&r, NULL, NULL), COHORT_EPROTO);
	/* an error whose message runs past the body */
	const uint8_t cut[8] = { 0xfd, 0xff, 0xff, 0xff, 10, 0, 'a', 'b' };
	r = (proto_rbuf){ cut, cut + 8, 0, NULL };
	const char *msg;
	size_t len;
	cr_assert_eq(proto_resp_status(&r, &msg, &len), COHORT_EPROTO);
	cr_assert_null(msg);
}

/* ---- the GET_MANY block ------------------------------------------------- */

enum { B_F32, B_F64, B_I32, B_I64, B_BOOL, B_CAT, B_VEC, B_CNT, B_CAT2,
       B_NCOLS };

static const cohort_column_def block_cols[B_NCOLS] = {
	{ "f32", COHORT_F32, 0, 0 },
	{ "f64", COHORT_F64, 0, 0 },
	{ "i32", COHORT_I32, 0, 0 },
	{ "i64", COHORT_I64, 0, 0 },
	{ "flag", COHORT_BOOL, 0, 0 },
	{ "city", COHORT_CAT, 0, 0 },
	{ "emb", COHORT_VEC, 3, 0 },
	{ "clicks", COHORT_COUNTER, 0, 0 },
	{ "tier", COHORT_CAT, 0, 0 },
};

static const char *const cities[] = { "Paris", "Lyon", "", "Marseille" };

/* A table of 40 rows: row i has every column but some nulls, one row is
 * old enough to have expired. Keys asked: the 40 rows (reversed), and 5
 * missing ones. */
static void block_fixture(cohort_db **db, cohort_table **t, cohort_batch **b,
			  cohort_key *keys, char (*kbuf)[16])
{
	cohort_table_options topt = { .ttl_ms = 60000 };
	cr_assert_eq(cohort_open(NULL, NULL, db), 0);
	cr_assert_eq(cohort_table_create(*db, "users", block_cols, B_NCOLS,
					 &topt, t), 0, "%s", cohort_errdetail());
	for (int i = 0; i < 40; i++) {
		char k[16];
		snprintf(k, sizeof(k), "user:%d", i);
		float v[3] = { (float)i, -(float)i, 0.5f };
		cohort_field f[B_NCOLS];
		size_t n = 0;
		f[n++] = (cohort_field){ B_F32, cohort_f32(i * 0.5f) };
		f[n++] = (cohort_field){ B_F64, cohort_f64(i * 1e100) };
		if (i % 3)
			f[n++] = (cohort_field){ B_I32, cohort_i32(-i) };
		f[n++] = (cohort_field){ B_I64, cohort_i64((int64_t)i << 40) };
		f[n++] = (cohort_field){ B_BOOL, cohort_bool(i % 2) };
		if (i % 5)
			f[n++] = (cohort_field){ B_CAT,
						 cohort_cat(cities[i % 4]) };
		if (i % 7)
			f[n++] = (cohort_field){ B_VEC, cohort_vec(v, 3) };
		f[n++] = (cohort_field){ B_CNT, cohort_f64(i) };
		f[n++] = (cohort_field){ B_CAT2, cohort_cat(i < 20 ? "gold" :
							   "Paris") };
		/* row 13 is two minutes old: expired at T0 */
		cohort_time tm = i == 13 ? T0 - 120000 : T0 - i;
		cr_assert_eq(cohort_put(*t, k, strlen(k), tm, f, n), 0, "%s",
			     cohort_errdetail());
	}
	for (int i = 0; i < 45; i++) {
		if (i < 40)
			snprintf(kbuf[i], 16, "user:%d", 39 - i);
		else
			snprintf(kbuf[i], 16, "nobody:%d", i);
		keys[i] = (cohort_key){ kbuf[i], strlen(kbuf[i]) };
	}
	int all[B_NCOLS];
	for (int j = 0; j < B_NCOLS; j++)
		all[j] = j;
	cr_assert_eq(cohort_batch_new(*t, all, B_NCOLS, b), 0);
	cr_assert_eq(cohort_get_many(*t, keys, 45, T0, *b), 0);
}

Test(proto, block_round_trips_from_a_real_table)
{
	cohort_db *db;
	cohort_table *t;
	cohort_batch *b;
	cohort_key keys[45];
	char kbuf[45][16];
	block_fixture(&db, &t, &b, keys, kbuf);

	proto_w_block(&wb, t, b, cohort_cat_string);
	cr_assert_eq(wb.err, 0);
	const char *dir = getenv("COHORT_WRITE_CORPUS");
	if (dir) {
		/* the block alone, and as a GET_MANY response body */
		proto_wbuf body = { 0 };
		write_file(dir, "block-45-keys", wb.buf, wb.len);
		proto_w_i32(&body, 0);
		proto_w_bytes(&body, wb.buf, wb.len);
		write_file(dir, "resp-get-many", body.buf, body.len);
		proto_wbuf_free(&body);
	}
	/* read it from an odd address: every array must come out aligned */
	uint8_t *odd = malloc(wb.len + 1);
	memcpy(odd + 1, wb.buf, wb.len);
	proto_rbuf r = { odd + 1, odd + 1 + wb.len, 0, NULL };
	proto_block blk;
	cr_assert_eq(proto_r_block(&r, &arena, &blk), 0, "%s", r.why);
	cr_assert_eq(r.p, r.end);

	cr_assert_eq(blk.nkeys, 45);
	cr_assert_eq(blk.ncols, B_NCOLS);
	cr_assert_eq((uintptr_t)blk.time % 8, 0);
	int present = 0, expired = 0, missing = 0;
	for (uint32_t i = 0; i < 45; i++) {
		cr_assert_eq(blk.status[i], b->status[i]);
		present += blk.status[i] == COHORT_ROW_PRESENT;
		expired += blk.status[i] == COHORT_ROW_EXPIRED;
		missing += blk.status[i] == COHORT_ROW_MISSING;
		cr_assert_eq(blk.time[i], blk.status[i] == COHORT_ROW_PRESENT ?
			     b->time[i] : 0);
	}
	cr_assert_eq(present, 39);
	cr_assert_eq(expired, 1);
	cr_assert_eq(missing, 5);
	cr_assert_eq(blk.time[0], T0 - 39);

	for (int j = 0; j < B_NCOLS; j++) {
		const proto_block_col *c = &blk.cols[j];
		const cohort_block *s = &b->cols[j];
		cr_assert_eq(c->column, j);
		cr_assert_eq(c->type, s->type);
		cr_assert_eq(c->dim, s->dim);
		cr_assert_eq(c->width, s->width);
		cr_assert_eq((uintptr_t)c->values % 16, 0);
		cr_assert_eq(memcmp(c->valid, s->valid, 45), 0);
		if (c->type != COHORT_CAT) {
			cr_assert_eq(memcmp(c->values, s->values,
					    45 * c->width), 0, "column %d", j);
			continue;
		}
		const uint32_t *idx = c->values, *code = s->values;
		for (uint32_t i = 0; i < 45; i++) {
			if (!c->valid[i]) {
				cr_assert_eq(idx[i], 0);
				continue;
			}
			uint32_t len;
			const char *want = cohort_cat_string(t, j, code[i], &len);
			cr_assert_lt(idx[i], blk.nstrings);
			cr_assert_eq(blk.str_len[idx[i]], len);
			cr_assert_eq(memcmp(blk.strings[idx[i]], want, len), 0);
		}
	}
	cr_assert_eq(blk.cols[B_F64].type, COHORT_F64);
	cr_assert_eq(blk.cols[B_CNT].type, COHORT_F64, "aggregates are f64");
	cr_assert_eq(blk.cols[B_VEC].width, 12);
	cr_assert_eq(blk.cols[B_BOOL].width, 1);
	/* nulls where they were put: user:39 (first in the answer) has no
	 * i32, user:38 has one; user:21 (i=18) has neither i32 nor vec */
	cr_assert_eq(blk.cols[B_I32].valid[0], 0);
	cr_assert_eq(blk.cols[B_I32].valid[1], 1);
	cr_assert_eq(blk.cols[B_I32].valid[18], 0);
	cr_assert_eq(blk.cols[B_VEC].valid[18], 0);
	/* missing keys: every value null */
	for (int j = 0; j < B_NCOLS; j++)
		cr_assert_eq(blk.cols[j].valid[44], 0);
	/* one string per distinct code per column: city has Paris, Lyon,
	 * "" and Marseille among the present rows, tier gold and Paris */
	cr_assert_eq(blk.nstrings, 6);

	free(odd);
	cohort_batch_free(b);
	cohort_close(db);
}

Test(proto, block_of_no_keys_and_of_no_cat)
{
	cohort_db *db;
	cohort_table *t;
	cohort_batch *b;
	cr_assert_eq(cohort_open(NULL, NULL, &db), 0);
	cr_assert_eq(cohort_table_create(db, "t", block_cols, 2, NULL, &t), 0);
	int cols[2] = { 1, 0 };
	cr_assert_eq(cohort_batch_new(t, cols, 2, &b), 0);
	cr_assert_eq(cohort_get_many(t, NULL, 0, T0, b), 0);
	proto_w_block(&wb, t, b, cohort_cat_string);
	cr_assert_eq(wb.err, 0);
	/* u32 nkeys, u16 ncols, 2 x 11 bytes of column header, u32 nstrings */
	cr_assert_eq(wb.len, 4 + 2 + 2 * 11 + 4);
	proto_rbuf r = { wb.buf, wb.buf + wb.len, 0, NULL };
	proto_block blk;
	cr_assert_eq(proto_r_block(&r, &arena, &blk), 0);
	cr_assert_eq(blk.nkeys, 0);
	cr_assert_eq(blk.ncols, 2);
	cr_assert_eq(blk.cols[0].column, 1);
	cr_assert_eq(blk.nstrings, 0);
	cohort_batch_free(b);
	cohort_close(db);
}

Test(proto, block_truncated_or_corrupt_is_eproto)
{
	cohort_db *db;
	cohort_table *t;
	cohort_batch *b;
	cohort_key keys[45];
	char kbuf[45][16];
	block_fixture(&db, &t, &b, keys, kbuf);
	proto_w_block(&wb, t, b, cohort_cat_string);
	cr_assert_eq(wb.err, 0);
	proto_block blk;
	for (size_t len = 0; len < wb.len; len++) {
		uint8_t *copy = malloc(len ? len : 1);
		memcpy(copy, wb.buf, len);
		proto_rbuf r = { copy, copy + len, 0, NULL };
		proto_arena_reset(&arena);
		cr_assert_eq(proto_r_block(&r, &arena, &blk), COHORT_EPROTO,
			     "%zu of %zu bytes", len, wb.len);
		free(copy);
	}
	/* the last string's length byte: one string fewer, so the cat
	 * index that named it is past the table */
	proto_rbuf r = { wb.buf, wb.buf + wb.len, 0, NULL };
	cr_assert_eq(proto_r_block(&r, &arena, &blk), 0);
	uint32_t ns = blk.nstrings;
	const uint8_t *last = (const uint8_t *)blk.strings[ns - 1];
	size_t cut = (size_t)(last - wb.buf) - 2;
	/* rewrite nstrings = ns - 1 and drop the last string */
	size_t nsat = (size_t)((const uint8_t *)blk.strings[0] - wb.buf) - 6;
	uint32_t fewer = ns - 1;
	memcpy(wb.buf + nsat, &fewer, 4);
	r = (proto_rbuf){ wb.buf, wb.buf + cut, 0, NULL };
	proto_arena_reset(&arena);
	cr_assert_eq(proto_r_block(&r, &arena, &blk), COHORT_EPROTO);
	cr_assert_not_null(r.why);
	cohort_batch_free(b);
	cohort_close(db);
}
