/*
 * test_client.c -- libcohort-client against a real cohortd (srvutil.h):
 * every call of the client, the server's statuses coming through (EAUTH,
 * EDENIED with a read token, ENOTABLE, ENOCOLUMN, ENOTFOUND, row errors of
 * batches), pipelining 1000 requests in flight, subscriptions, and the
 * loss of the connection.
 *
 * Each test starts its own in-memory server (Criterion runs each test in
 * its own process) and connects an admin client to it.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cohort_client.h"
#include "srvutil.h"

#define T0 1700000000000LL

static srv server;
static cohort_client *cl;

static cohort_client *connect_as(const char *token)
{
	cohort_client *c;
	int rc = cohort_client_connect("127.0.0.1", (uint16_t)server.port, NULL,
				       &c);
	cr_assert_eq(rc, 0, "connect: %s", c ? cohort_client_errmsg(c) : "");
	if (token) {
		int role = -1;
		rc = cohort_client_auth(c, token, strlen(token), &role);
		cr_assert_eq(rc, 0, "auth: %s", cohort_client_errmsg(c));
	}
	return c;
}

static void start(const srv_opts *opts)
{
	srv_start(&server, opts);
	cl = connect_as(SRV_TOKEN_ADMIN);
}

static void setup(void)
{
	srv_opts o = { .memory = true };
	start(&o);
}

static void teardown(void)
{
	cohort_client_close(cl);
	cl = NULL;
	srv_cleanup(&server);
}

TestSuite(client, .init = setup, .fini = teardown, .timeout = 30);

/* users: one column of most types */
enum { C_AGE, C_CITY, C_EMB, C_SCORE, C_CLICKS, C_FLAG, C_BIG, NCOLS };

static void make_users(void)
{
	static const cohort_column_def cols[NCOLS] = {
		{ "age", COHORT_I32, 0, 0 },
		{ "city", COHORT_CAT, 0, 0 },
		{ "emb", COHORT_VEC, 3, 0 },
		{ "score", COHORT_F64, 0, 0 },
		{ "clicks", COHORT_COUNTER, 0, 0 },
		{ "flag", COHORT_BOOL, 0, 0 },
		{ "big", COHORT_I64, 0, 0 },
	};
	int rc = cohort_client_table_create(cl, "users", cols, NCOLS, 0);
	cr_assert_eq(rc, 0, "%s", cohort_client_errmsg(cl));
}

static void put_user(const char *key, int32_t age, const char *city,
		     float e0, float e1, float e2)
{
	float emb[3] = { e0, e1, e2 };
	cohort_field f[] = {
		{ C_AGE, cohort_i32(age) },
		{ C_CITY, cohort_cat(city) },
		{ C_EMB, cohort_vec(emb, 3) },
		{ C_SCORE, cohort_f64(age / 10.0) },
	};
	int rc = cohort_client_put(cl, "users", key, strlen(key), T0, f, 4);
	cr_assert_eq(rc, 0, "put %s: %s", key, cohort_client_errmsg(cl));
}

Test(client, hello_then_auth_gates_every_call)
{
	cohort_client *c = connect_as(NULL);
	cohort_client_info info;
	cohort_client_info_get(c, &info);
	cr_assert_eq(info.version, 1);
	cr_assert(info.auth_required);
	cr_assert_eq(info.role, PROTO_ROLE_NONE);
	cr_assert_gt(info.max_batch, 0);
	cr_assert_gt(info.max_frame, 0);
	cr_assert_gt(info.max_k, 0);
	cr_assert_gt(strlen(info.server_name), 0);

	cr_assert_eq(cohort_client_ping(c), COHORT_EAUTH);
	cr_assert_gt(strlen(cohort_client_errmsg(c)), 0);
	cr_assert_eq(cohort_client_auth(c, "not-a-token-at-all", 18, NULL),
		     COHORT_EAUTH);
	int role = -1;
	cr_assert_eq(cohort_client_auth(c, SRV_TOKEN_READ,
					strlen(SRV_TOKEN_READ), &role), 0);
	cr_assert_eq(role, PROTO_ROLE_READ);
	cohort_client_info_get(c, &info);
	cr_assert_eq(info.role, PROTO_ROLE_READ);
	cr_assert_eq(cohort_client_ping(c), 0);
	cr_assert_str_empty(cohort_client_errmsg(c));
	cohort_client_close(c);
}

Test(client, connect_refused_is_eclosed)
{
	/* a port that was just free: bind, read it, close */
	srv_stop(&server);
	cohort_client *c;
	int rc = cohort_client_connect("127.0.0.1", (uint16_t)server.port, NULL,
				       &c);
	cr_assert_eq(rc, COHORT_ECLOSED);
	cr_assert_not_null(c);
	cr_assert(strstr(cohort_client_errmsg(c), "cannot connect"),
		  "%s", cohort_client_errmsg(c));
	cr_assert(!cohort_client_connected(c));
	cohort_client_close(c);
	rc = cohort_client_connect("no.such.host.invalid", 1, NULL, &c);
	cr_assert_lt(rc, 0);
	cohort_client_close(c);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	cr_assert_eq(chmod(path, mode), 0);
}

Test(client, auth_file_takes_a_token_or_a_role_line)
{
	char path[128];
	snprintf(path, sizeof path, "%s/tok", server.dir);
	cohort_client *c = connect_as(NULL);
	int role = -1;

	write_file(path, "# comment\n\nwrite " SRV_TOKEN_WRITE "\n", 0600);
	cr_assert_eq(cohort_client_auth_file(c, path, &role), 0, "%s",
		     cohort_client_errmsg(c));
	cr_assert_eq(role, PROTO_ROLE_WRITE);

	write_file(path, SRV_TOKEN_ADMIN "\n", 0600);
	cr_assert_eq(cohort_client_auth_file(c, path, &role), 0);
	cr_assert_eq(role, PROTO_ROLE_ADMIN);

	write_file(path, SRV_TOKEN_ADMIN "\n", 0644);
	cr_assert_eq(cohort_client_auth_file(c, path, &role), COHORT_EINVAL);
	cr_assert(strstr(cohort_client_errmsg(c), "readable by others"));

	snprintf(path, sizeof path, "%s/missing", server.dir);
	cr_assert_eq(cohort_client_auth_file(c, path, &role), COHORT_EIO);
	cohort_client_close(c);
}

Test(client, schema_create_describe_and_column_cache)
{
	make_users();
	const char *const *names;
	size_t n;
	cr_assert_eq(cohort_client_tables(cl, &names, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(names[0], "users");

	const cohort_client_table *t;
	cr_assert_eq(cohort_client_describe(cl, "users", &t), 0);
	cr_assert_str_eq(t->name, "users");
	cr_assert_eq(t->ncols, NCOLS);
	cr_assert_str_eq(t->cols[C_EMB].name, "emb");
	cr_assert_eq(t->cols[C_EMB].type, COHORT_VEC);
	cr_assert_eq(t->cols[C_EMB].dim, 3);
	cr_assert_eq(t->cols[C_CLICKS].type, COHORT_COUNTER);
	cr_assert_eq(t->nrows, 0);

	cr_assert_eq(cohort_client_column(cl, "users", "city"), C_CITY);
	cr_assert_eq(cohort_client_column(cl, "users", "nope"), COHORT_ENOCOLUMN);
	cr_assert(strstr(cohort_client_errmsg(cl), "nope"));
	cr_assert_eq(cohort_client_column(cl, "ghosts", "x"), COHORT_ENOTABLE);
	cr_assert_eq(cohort_client_describe(cl, "ghosts", &t), COHORT_ENOTABLE);
	cr_assert(strstr(cohort_client_errmsg(cl), "ghosts"), "%s",
		  cohort_client_errmsg(cl));

	/* a column added by another client: the cache misses, then finds it */
	cohort_client *other = connect_as(SRV_TOKEN_ADMIN);
	cohort_column_def def = { "tier", COHORT_CAT, 0, 0 };
	int id = -1;
	cr_assert_eq(cohort_client_column_add(other, "users", &def, &id), 0);
	cr_assert_eq(id, NCOLS);
	cr_assert_eq(cohort_client_column(cl, "users", "tier"), NCOLS);
	cr_assert_eq(cohort_client_column_add(other, "users", &def, NULL),
		     COHORT_EEXIST);
	cohort_client_close(other);

	cr_assert_eq(cohort_client_table_create(cl, "users", NULL, 0, 0),
		     COHORT_EEXIST);
	cr_assert_eq(cohort_client_table_create(cl, "bad-name", NULL, 0, 0),
		     COHORT_EBADNAME);
	cohort_column_def bad = { "v", COHORT_VEC, 0, 0 };
	cr_assert_eq(cohort_client_table_create(cl, "t2", &bad, 1, 0),
		     COHORT_EINVAL);
}

Test(client, put_then_get_every_type)
{
	make_users();
	float emb[3] = { 0.5f, -1.25f, 3.0f };
	cohort_field f[] = {
		{ C_AGE, cohort_i32(-41) },
		{ C_CITY, cohort_cat("lisbon") },
		{ C_EMB, cohort_vec(emb, 3) },
		{ C_SCORE, cohort_f64(0.1) },
		{ C_CLICKS, cohort_f64(7) },
		{ C_FLAG, cohort_bool(true) },
		{ C_BIG, cohort_i64(INT64_MIN + 1) },
	};
	cr_assert_eq(cohort_client_put(cl, "users", "k1", 2, T0, f, NCOLS), 0,
		     "%s", cohort_client_errmsg(cl));

	cohort_value v[NCOLS];
	size_t n = 0;
	cohort_time rt = 0;
	int st = cohort_client_get(cl, "users", "k1", 2, NULL, 0, T0, v, NCOLS,
				   &n, &rt);
	cr_assert_eq(st, COHORT_ROW_PRESENT, "%d %s", st,
		     cohort_client_errmsg(cl));
	cr_assert_eq(n, NCOLS);
	cr_assert_eq(rt, T0);
	cr_assert_eq(v[C_AGE].type, COHORT_I32);
	cr_assert_eq(v[C_AGE].v.i32, -41);
	cr_assert_eq(v[C_CITY].type, COHORT_CAT);
	cr_assert_str_eq(v[C_CITY].v.str.ptr, "lisbon");
	cr_assert_eq(v[C_EMB].v.vec.dim, 3);
	cr_assert_eq(memcmp(v[C_EMB].v.vec.ptr, emb, sizeof emb), 0);
	cr_assert_eq(v[C_SCORE].v.f64, 0.1);
	cr_assert_eq(v[C_CLICKS].type, COHORT_F64);
	cr_assert_eq(v[C_CLICKS].v.f64, 7);
	cr_assert(v[C_FLAG].v.b);
	cr_assert_eq(v[C_BIG].v.i64, INT64_MIN + 1);

	/* some columns, in the order asked */
	int cols[] = { C_SCORE, C_CITY };
	st = cohort_client_get(cl, "users", "k1", 2, cols, 2, COHORT_NOW, v, 2,
			       &n, NULL);
	cr_assert_eq(st, COHORT_ROW_PRESENT);
	cr_assert_eq(n, 2);
	cr_assert_eq(v[0].v.f64, 0.1);
	cr_assert_str_eq(v[1].v.str.ptr, "lisbon");

	/* missing key, too little room, no such table */
	st = cohort_client_get(cl, "users", "zz", 2, cols, 2, COHORT_NOW, v, 2,
			       &n, NULL);
	cr_assert_eq(st, COHORT_ROW_MISSING);
	cr_assert_eq(v[0].type, COHORT_NULL);
	cr_assert_eq(cohort_client_get(cl, "users", "k1", 2, NULL, 0, COHORT_NOW,
				       v, 3, &n, NULL), COHORT_ERANGE);
	cr_assert_eq(cohort_client_get(cl, "ghosts", "k1", 2, NULL, 0,
				       COHORT_NOW, v, NCOLS, &n, NULL),
		     COHORT_ENOTABLE);
	cr_assert_eq(cohort_client_get(cl, "users", "", 0, NULL, 0, COHORT_NOW,
				       v, NCOLS, &n, NULL), COHORT_EKEY);
	cr_assert(cohort_client_connected(cl));
}

Test(client, row_errors_come_with_the_servers_message)
{
	make_users();
	cohort_field f[] = { { C_AGE, cohort_cat("old") } };
	int rc = cohort_client_put(cl, "users", "k", 1, T0, f, 1);
	cr_assert_eq(rc, COHORT_ETYPE);
	cr_assert(strstr(cohort_client_errmsg(cl), "age"), "%s",
		  cohort_client_errmsg(cl));
	cohort_field g[] = { { 99, cohort_i32(1) } };
	cr_assert_eq(cohort_client_put(cl, "users", "k", 1, T0, g, 1),
		     COHORT_ENOCOLUMN);
	float e[2] = { 1, 2 };
	cohort_field h[] = { { C_EMB, cohort_vec(e, 2) } };
	cr_assert_eq(cohort_client_put(cl, "users", "k", 1, T0, h, 1),
		     COHORT_EDIM);
	/* the connection goes on */
	cr_assert_eq(cohort_client_ping(cl), 0);
}

Test(client, events_add_set_observe)
{
	make_users();
	cohort_update u[] = {
		{ C_CLICKS, COHORT_OP_ADD, cohort_f64(2) },
		{ C_AGE, COHORT_OP_SET, cohort_i32(30) },
		{ C_AGE, COHORT_OP_ADD, cohort_i32(5) },
		{ C_CLICKS, COHORT_OP_OBSERVE, cohort_f64(3) },
	};
	cr_assert_eq(cohort_client_event(cl, "users", "e", 1, T0, u, 4), 0, "%s",
		     cohort_client_errmsg(cl));
	cr_assert_eq(cohort_client_event(cl, "users", "e", 1, T0 + 1, u, 1), 0);
	int cols[] = { C_CLICKS, C_AGE };
	cohort_value v[2];
	int st = cohort_client_get(cl, "users", "e", 1, cols, 2, COHORT_NOW, v, 2,
				   NULL, NULL);
	cr_assert_eq(st, COHORT_ROW_PRESENT);
	cr_assert_eq(v[0].v.f64, 7);
	cr_assert_eq(v[1].v.i32, 35);
	cohort_update bad[] = { { C_CITY, COHORT_OP_ADD, cohort_i32(1) } };
	cr_assert_lt(cohort_client_event(cl, "users", "e", 1, T0, bad, 1), 0);
}

Test(client, batches_report_each_row)
{
	make_users();
	cohort_field good[] = { { C_AGE, cohort_i32(1) } };
	cohort_field bad[] = { { C_AGE, cohort_f64(1.5) } };
	cohort_client_row rows[3] = {
		{ "a", 1, T0, good, NULL, 1 },
		{ "b", 1, T0, bad, NULL, 1 },
		{ "c", 1, T0, good, NULL, 1 },
	};
	int st[3] = { 1, 1, 1 };
	cr_assert_eq(cohort_client_put_batch(cl, "users", rows, 3, st), 0);
	cr_assert_eq(st[0], 0);
	cr_assert_eq(st[1], COHORT_ETYPE);
	cr_assert_eq(st[2], 0);
	cr_assert_eq(cohort_client_batch_nfailed(cl), 1);
	cr_assert(strstr(cohort_client_errmsg(cl), "row 1"), "%s",
		  cohort_client_errmsg(cl));

	cohort_update up[] = { { C_CLICKS, COHORT_OP_ADD, cohort_f64(1) } };
	cohort_client_row ev[2] = {
		{ "a", 1, T0, NULL, up, 1 },
		{ "d", 1, T0, NULL, up, 1 },
	};
	cr_assert_eq(cohort_client_event_batch(cl, "users", ev, 2, st), 0);
	cr_assert_eq(st[0], 0);
	cr_assert_eq(st[1], 0);
	cr_assert_eq(cohort_client_batch_nfailed(cl), 0);

	cohort_key keys[3] = { { "a", 1 }, { "b", 1 }, { "d", 1 } };
	cr_assert_eq(cohort_client_delete_batch(cl, "users", keys, 3, st), 0);
	cr_assert_eq(st[0], 0);
	cr_assert_eq(st[1], COHORT_ENOTFOUND);
	cr_assert_eq(st[2], 0);
	cr_assert_eq(cohort_client_delete(cl, "users", "a", 1), COHORT_ENOTFOUND);
	cr_assert_eq(cohort_client_delete(cl, "users", "c", 1), 0);
	cr_assert_eq(cohort_client_delete(cl, "ghosts", "c", 1), COHORT_ENOTABLE);

	/* over the server's max_batch: refused before sending */
	cohort_client_info info;
	cohort_client_info_get(cl, &info);
	cr_assert_eq(cohort_client_delete_batch(cl, "users", keys,
						(size_t)info.max_batch + 1, st),
		     COHORT_ELIMIT);
	cr_assert(cohort_client_connected(cl));
}

Test(client, get_many_is_columnar)
{
	make_users();
	put_user("u1", 20, "lisbon", 1, 0, 0);
	put_user("u2", 30, "porto", 0, 1, 0);
	put_user("u3", 40, "lisbon", 0, 0, 1);
	cohort_key keys[4] = { { "u1", 2 }, { "nope", 4 }, { "u3", 2 },
			       { "u2", 2 } };
	int cols[] = { C_AGE, C_CITY, C_EMB, C_CLICKS };
	const cohort_client_batch *b;
	int rc = cohort_client_get_many(cl, "users", keys, 4, cols, 4, COHORT_NOW,
					&b);
	cr_assert_eq(rc, 0, "%s", cohort_client_errmsg(cl));
	cr_assert_eq(b->nkeys, 4);
	cr_assert_eq(b->ncols, 4);
	cr_assert_eq(b->status[0], COHORT_ROW_PRESENT);
	cr_assert_eq(b->status[1], COHORT_ROW_MISSING);
	cr_assert_eq(b->time[0], T0);
	cr_assert_eq(b->time[1], 0);

	const cohort_client_block *age = &b->cols[0];
	cr_assert_eq(age->column, C_AGE);
	cr_assert_eq(age->type, COHORT_I32);
	cr_assert_eq(age->width, 4);
	const int32_t *ages = age->values;
	cr_assert_eq(ages[0], 20);
	cr_assert_eq(ages[2], 40);
	cr_assert_eq(ages[3], 30);
	cr_assert_eq(age->valid[1], 0);

	const cohort_client_block *city = &b->cols[1];
	cr_assert_eq(city->type, COHORT_CAT);
	cr_assert_not_null(city->strs);
	cr_assert_str_eq(city->strs[0], "lisbon");
	cr_assert_str_eq(city->strs[2], "lisbon");
	cr_assert_str_eq(city->strs[3], "porto");
	cr_assert_null(city->strs[1]);
	cr_assert_geq(b->nstrings, 2);

	const cohort_client_block *emb = &b->cols[2];
	cr_assert_eq(emb->type, COHORT_VEC);
	cr_assert_eq(emb->dim, 3);
	const float *e = emb->values;
	cr_assert_eq(e[3 * 2 + 2], 1.0f);
	cr_assert_eq(e[3 * 3 + 1], 1.0f);

	const cohort_client_block *clicks = &b->cols[3];
	cr_assert_eq(clicks->type, COHORT_F64);
	cr_assert_eq(clicks->valid[0], 0);

	/* every column when none is named */
	rc = cohort_client_get_many(cl, "users", keys, 1, NULL, 0, COHORT_NOW, &b);
	cr_assert_eq(rc, 0);
	cr_assert_eq(b->ncols, NCOLS);
	cr_assert_eq(cohort_client_get_many(cl, "ghosts", keys, 1, NULL, 0,
					    COHORT_NOW, &b), COHORT_ENOTABLE);
}

Test(client, filters_count_and_list)
{
	make_users();
	put_user("u1", 20, "lisbon", 1, 0, 0);
	put_user("u2", 30, "porto", 0, 1, 0);
	put_user("u3", 40, "lisbon", 0, 0, 1);
	put_user("u4", 50, "faro", 1, 1, 1);
	cohort_client_filter *f;
	cr_assert_eq(cohort_client_filter_new(&f), 0);
	/* age > 25 and (city in (lisbon, faro)) and not age = 50 */
	cohort_value set[] = { cohort_cat("lisbon"), cohort_cat("faro") };
	int root = cohort_client_filter_and(f,
		cohort_client_filter_and(f,
			cohort_client_filter_cmp(f, C_AGE, COHORT_GT, cohort_i32(25)),
			cohort_client_filter_in(f, C_CITY, set, 2)),
		cohort_client_filter_not(f,
			cohort_client_filter_cmp(f, C_AGE, COHORT_EQ, cohort_i64(50))));
	cr_assert_geq(root, 0);
	uint64_t count = 0;
	cr_assert_eq(cohort_client_filter_count(cl, "users", f, COHORT_NOW,
						&count), 0, "%s",
		     cohort_client_errmsg(cl));
	cr_assert_eq(count, 1);
	const cohort_key *keys;
	size_t n;
	cr_assert_eq(cohort_client_filter_list(cl, "users", f, COHORT_NOW, 10,
					       &count, &keys, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(keys[0].len, 2);
	cr_assert_eq(memcmp(keys[0].ptr, "u3", 2), 0);

	/* no filter: every row; a limit caps the keys, not the count */
	cr_assert_eq(cohort_client_filter_list(cl, "users", NULL, COHORT_NOW, 2,
					       &count, &keys, &n), 0);
	cr_assert_eq(count, 4);
	cr_assert_eq(n, 2);

	cohort_client_filter_reset(f);
	int a = cohort_client_filter_is_null(f, C_CLICKS);
	int b = cohort_client_filter_or(f, a,
		cohort_client_filter_cmp(f, C_SCORE, COHORT_LE, cohort_f64(2.0)));
	cr_assert_geq(b, 0);
	cr_assert_eq(cohort_client_filter_count(cl, "users", f, COHORT_NOW,
						&count), 0);
	cr_assert_eq(count, 4);
	cohort_client_filter_reset(f);
	cohort_client_filter_not_null(f, C_CLICKS);
	cr_assert_eq(cohort_client_filter_count(cl, "users", f, COHORT_NOW,
						&count), 0);
	cr_assert_eq(count, 0);

	/* errors: an error operand passes through; a bad column is the
	 * server's ENOCOLUMN; a cmp on a vector is EOP */
	cr_assert_eq(cohort_client_filter_and(f, COHORT_ENOCOLUMN, 0),
		     COHORT_ENOCOLUMN);
	cohort_client_filter_reset(f);
	cohort_client_filter_cmp(f, 77, COHORT_EQ, cohort_i32(1));
	cr_assert_eq(cohort_client_filter_count(cl, "users", f, COHORT_NOW,
						&count), COHORT_ENOCOLUMN);
	cohort_client_filter_free(f);
}

Test(client, knn_by_vector_and_key_with_a_filter)
{
	make_users();
	char key[16];
	for (int i = 0; i < 50; i++) {
		snprintf(key, sizeof key, "u%02d", i);
		put_user(key, i, i % 2 ? "odd" : "even", (float)i, (float)(i % 7),
			 1.0f);
	}
	int rc = cohort_client_index_create(cl, "users", "emb_idx", C_EMB, NULL);
	cr_assert_eq(rc, 0, "%s", cohort_client_errmsg(cl));
	const cohort_client_table *t;
	cr_assert_eq(cohort_client_describe(cl, "users", &t), 0);
	cr_assert_eq(t->nindexes, 1);
	cr_assert_str_eq(t->indexes[0].name, "emb_idx");
	cr_assert_eq(t->indexes[0].column, C_EMB);

	float q[3] = { 10, 3, 1 };   /* exactly u10 */
	cohort_client_knn_query kq = { .vec = q, .dim = 3, .k = 5,
				       .at = COHORT_NOW };
	cohort_neighbor out[5];
	size_t n = 0;
	rc = cohort_client_knn(cl, "users", "emb_idx", &kq, out, &n);
	cr_assert_eq(rc, 0, "%s", cohort_client_errmsg(cl));
	cr_assert_eq(n, 5);
	cr_assert_eq(out[0].key_len, 3);
	cr_assert_eq(memcmp(out[0].key, "u10", 3), 0);
	cr_assert_eq(out[0].distance, 0.0f);
	for (size_t i = 1; i < n; i++)
		cr_assert_geq(out[i].distance, out[i - 1].distance);

	/* by key: the key itself is left out */
	memset(&kq, 0, sizeof kq);
	kq.key = "u10";
	kq.key_len = 3;
	kq.k = 3;
	kq.at = COHORT_NOW;
	cr_assert_eq(cohort_client_knn(cl, "users", "emb_idx", &kq, out, &n), 0);
	cr_assert_eq(n, 3);
	for (size_t i = 0; i < n; i++)
		cr_assert_neq(memcmp(out[i].key, "u10", 3), 0);

	/* a filter: only odd rows */
	cohort_client_filter *f;
	cohort_client_filter_new(&f);
	cohort_client_filter_cmp(f, C_CITY, COHORT_EQ, cohort_cat("odd"));
	kq.filter = f;
	cr_assert_eq(cohort_client_knn(cl, "users", "emb_idx", &kq, out, &n), 0);
	cr_assert_eq(n, 3);
	for (size_t i = 0; i < n; i++) {
		int num = atoi(out[i].key + 1);
		cr_assert_eq(num % 2, 1, "%.*s", (int)out[i].key_len, out[i].key);
	}
	cohort_client_filter_free(f);

	kq.filter = NULL;
	kq.key = "absent";
	kq.key_len = 6;
	cr_assert_eq(cohort_client_knn(cl, "users", "emb_idx", &kq, out, &n),
		     COHORT_ENOTFOUND);
	kq.key = "u10";
	kq.key_len = 3;
	cr_assert_lt(cohort_client_knn(cl, "users", "no_idx", &kq, out, &n), 0);
	cr_assert_eq(cohort_client_index_drop(cl, "users", "emb_idx"), 0);
	cr_assert_lt(cohort_client_knn(cl, "users", "emb_idx", &kq, out, &n), 0);
}

/* 100 rows in two clusters of age/score; a model "seg" over them. */
static void make_clusters(cohort_persona_mode mode)
{
	make_users();
	char key[16];
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof key, "p%03d", i);
		int age = i < 50 ? 20 + i % 5 : 70 + i % 5;
		put_user(key, age, "x", 0, 0, 0);
	}
	int cols[] = { C_AGE, C_SCORE };
	cohort_persona_def def = { cols, 2, mode, 0, 0 };
	cohort_train_opts to;
	memset(&to, 0, sizeof to);
	to.k = 2;
	to.seed = 7;
	uint64_t version = 0;
	int rc = cohort_client_persona_train(cl, "users", "seg", &def, &to,
					     &version);
	cr_assert_eq(rc, 0, "%s", cohort_client_errmsg(cl));
	cr_assert_eq(version, 1);
}

Test(client, persona_describe_gives_centroids_in_column_units)
{
	make_clusters(COHORT_PERSONA_AT_ONCE);
	const cohort_client_model *m;
	int rc = cohort_client_persona_describe(cl, "users", "seg", &m);
	cr_assert_eq(rc, 0, "%s", cohort_client_errmsg(cl));
	cr_assert_eq(m->version, 1);
	cr_assert_eq(m->k, 2);
	cr_assert_eq(m->dim, 2);
	cr_assert_eq(m->mode, COHORT_PERSONA_AT_ONCE);
	cr_assert_not(m->training);
	cr_assert_eq(m->assigned, 100);
	cr_assert_eq(m->ncolumns, 2);
	cr_assert_eq(m->columns[0], C_AGE);
	cr_assert_eq(m->columns[1], C_SCORE);
	/* the clusters' means: age 22 (score 2.2) and 72 (7.2) */
	uint32_t young = m->centroids[0] < m->centroids[2] ? 0 : 1;
	for (uint32_t p = 0; p < 2; p++) {
		double age = p == young ? 22 : 72;
		cr_assert_eq(m->sizes[p], 50, "persona %u", p);
		cr_assert_str_eq(m->names[p], "");
		cr_assert_geq(m->typical[p], 0);
		cr_assert_float_eq(m->centroids[p * 2], age, 1e-6,
				   "age of %u: %g", p, m->centroids[p * 2]);
		cr_assert_float_eq(m->centroids[p * 2 + 1], age / 10, 1e-6,
				   "score of %u: %g", p,
				   m->centroids[p * 2 + 1]);
	}

	rc = cohort_client_persona_describe(cl, "users", "nomodel", &m);
	cr_assert_eq(rc, COHORT_ENOTFOUND, "%s", cohort_client_errmsg(cl));
	cr_assert(strstr(cohort_client_errmsg(cl), "nomodel"), "%s",
		  cohort_client_errmsg(cl));
	cr_assert_eq(cohort_client_persona_describe(cl, "users", "bad name!",
						    &m), COHORT_EBADNAME);
}

Test(client, personas_train_sizes_assign_members)
{
	make_clusters(COHORT_PERSONA_AT_ONCE);
	const cohort_client_sizes *s;
	cr_assert_eq(cohort_client_persona_sizes(cl, "users", "seg", &s), 0);
	cr_assert_eq(s->version, 1);
	cr_assert_eq(s->k, 2);
	cr_assert_eq(s->sizes[0], 50);
	cr_assert_eq(s->sizes[1], 50);
	cr_assert_str_eq(s->names[0], "");

	cohort_persona_result r;
	int st = cohort_client_persona_assign(cl, "users", "seg", "p001", 4, 2,
					      &r);
	cr_assert_eq(st, COHORT_ROW_PRESENT, "%d %s", st,
		     cohort_client_errmsg(cl));
	cr_assert_eq(r.version, 1);
	cr_assert_lt(r.persona, 2);
	cr_assert_eq(r.m, 2);
	cr_assert_eq(r.nearest[0], r.persona);
	cr_assert_leq(r.distances[0], r.distances[1]);
	cr_assert_gt(r.nexplain, 0);
	uint32_t young = r.persona;

	cohort_value in[2] = { cohort_i32(72), cohort_null() };
	st = cohort_client_persona_assign_values(cl, "users", "seg", in, 2, 1, &r);
	cr_assert_eq(st, COHORT_ROW_PRESENT, "%s", cohort_client_errmsg(cl));
	cr_assert_neq(r.persona, young);

	cr_assert_eq(cohort_client_persona_assign(cl, "users", "seg", "zz", 2, 1,
						  &r), COHORT_ROW_MISSING);
	cr_assert_lt(cohort_client_persona_assign(cl, "users", "nomodel", "p001",
						  4, 1, &r), 0);

	uint64_t count;
	const cohort_key *keys;
	size_t n;
	cr_assert_eq(cohort_client_persona_members(cl, "users", "seg", young, NULL,
						   COHORT_NOW, 10, &count, &keys,
						   &n), 0);
	cr_assert_eq(count, 50);
	cr_assert_eq(n, 10);
	for (size_t i = 0; i < n; i++)
		cr_assert_lt(atoi((const char *)keys[i].ptr + 1), 50);

	/* members with a filter, and a filter on the persona */
	cohort_client_filter *f;
	cohort_client_filter_new(&f);
	cohort_client_filter_cmp(f, C_AGE, COHORT_EQ, cohort_i32(20));
	cr_assert_eq(cohort_client_persona_members(cl, "users", "seg", young, f,
						   COHORT_NOW, 100, &count, NULL,
						   NULL), 0);
	cr_assert_eq(count, 10);
	cohort_client_filter_reset(f);
	cohort_client_filter_persona(f, "seg", young);
	cr_assert_eq(cohort_client_filter_count(cl, "users", f, COHORT_NOW,
						&count), 0);
	cr_assert_eq(count, 50);
	cohort_client_filter_free(f);

	const cohort_client_table *t;
	cr_assert_eq(cohort_client_describe(cl, "users", &t), 0);
	cr_assert_eq(t->nmodels, 1);
	cr_assert_str_eq(t->models[0].name, "seg");
	cr_assert_eq(t->models[0].k, 2);
	cr_assert_eq(t->models[0].ncolumns, 2);
	cr_assert_eq(t->models[0].columns[0], C_AGE);
	cr_assert_eq(t->models[0].assigned, 100);

	/* retrain, then upload a version of our own */
	uint64_t v = 0;
	cohort_train_opts to;
	memset(&to, 0, sizeof to);
	to.k = 2;
	cr_assert_eq(cohort_client_persona_train(cl, "users", "seg", NULL, &to,
						 &v), 0, "%s",
		     cohort_client_errmsg(cl));
	cr_assert_eq(v, 2);
	float cent[4] = { -1, 0, 1, 0 };
	cr_assert_eq(cohort_client_persona_upload(cl, "users", "seg", NULL, 2, 2,
						  cent, NULL, NULL, &v), 0, "%s",
		     cohort_client_errmsg(cl));
	cr_assert_eq(v, 3);
}

Test(client, subscription_pushes_persona_changes)
{
	make_clusters(COHORT_PERSONA_AT_ONCE);
	uint32_t sub = 0;
	uint64_t start = 0;
	int rc = cohort_client_subscribe(cl, "users", "seg",
					 COHORT_CLIENT_FROM_NOW, &sub, &start);
	cr_assert_eq(rc, 0, "%s", cohort_client_errmsg(cl));

	/* nothing yet */
	cohort_client_change ch[16];
	size_t n = 99;
	cr_assert_eq(cohort_client_changes(cl, ch, 16, 0, &n), 0);
	cr_assert_eq(n, 0);

	/* another client moves p001 from the young cluster to the old one */
	cohort_client *w = connect_as(SRV_TOKEN_WRITE);
	cohort_field f[] = { { C_AGE, cohort_i32(73) },
			     { C_SCORE, cohort_f64(7.3) } };
	cr_assert_eq(cohort_client_put(w, "users", "p001", 4, T0 + 5, f, 2), 0);
	cohort_client_close(w);

	size_t got = 0;
	for (int tries = 0; tries < 20 && got == 0; tries++) {
		cr_assert_eq(cohort_client_changes(cl, ch, 16, 250, &n), 0, "%s",
			     cohort_client_errmsg(cl));
		got += n;
	}
	cr_assert_eq(got, 1);
	cr_assert_eq(ch[0].sub, sub);
	cr_assert_eq(ch[0].change.key_len, 4);
	cr_assert_eq(memcmp(ch[0].change.key, "p001", 4), 0);
	cr_assert_neq(ch[0].change.old_persona, ch[0].change.new_persona);
	cr_assert_gt(ch[0].change.seq, start);

	/* a push between responses does not disturb calls */
	cr_assert_eq(cohort_client_put(cl, "users", "p002", 4, T0 + 6, f, 2), 0);
	cr_assert_eq(cohort_client_ping(cl), 0);
	cr_assert_eq(cohort_client_changes(cl, ch, 16, 2000, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(memcmp(ch[0].change.key, "p002", 4), 0);
	cr_assert_eq(cohort_client_unsubscribe(cl, "users", "seg"), 0);
	cr_assert_lt(cohort_client_subscribe(cl, "users", "nomodel", 0, NULL,
					     NULL), 0);
}

Test(client, read_token_is_denied_writes_and_admin)
{
	make_users();
	cohort_client *r = connect_as(SRV_TOKEN_READ);
	cohort_field f[] = { { C_AGE, cohort_i32(1) } };
	cr_assert_eq(cohort_client_put(r, "users", "k", 1, T0, f, 1),
		     COHORT_EDENIED);
	cr_assert_gt(strlen(cohort_client_errmsg(r)), 0);
	cr_assert_eq(cohort_client_table_create(r, "t2", NULL, 0, 0),
		     COHORT_EDENIED);
	cr_assert_eq(cohort_client_snapshot(r), COHORT_EDENIED);
	/* still connected, reads allowed */
	cr_assert_eq(cohort_client_ping(r), 0);
	cohort_value v[NCOLS];
	cr_assert_eq(cohort_client_get(r, "users", "k", 1, NULL, 0, COHORT_NOW,
				       v, NCOLS, NULL, NULL), COHORT_ROW_MISSING);
	cohort_client_close(r);

	cohort_client *w = connect_as(SRV_TOKEN_WRITE);
	cr_assert_eq(cohort_client_put(w, "users", "k", 1, T0, f, 1), 0);
	cr_assert_eq(cohort_client_table_create(w, "t2", NULL, 0, 0),
		     COHORT_EDENIED);
	cohort_client_close(w);
}

Test(client, pipelines_a_thousand_requests)
{
	make_users();
	enum { N = 1000 };
	char key[16];
	/* 1000 puts in flight, then 1000 gets, each answered in order */
	proto_req req;
	proto_put_row row;
	cohort_field f;
	for (int i = 0; i < N; i++) {
		memset(&req, 0, sizeof req);
		req.hdr.opcode = PROTO_OP_PUT;
		strcpy(req.table, "users");
		snprintf(key, sizeof key, "k%04d", i);
		f.column = C_AGE;
		f.value = cohort_i32(i);
		row.key.ptr = key;
		row.key.len = (uint8_t)strlen(key);
		row.time = T0;
		row.nfields = 1;
		row.fields = &f;
		req.u.put.nrows = 1;
		req.u.put.rows = &row;
		uint32_t id;
		cr_assert_eq(cohort_client_send(cl, &req, &id), 0);
	}
	cr_assert_eq(cohort_client_inflight(cl), N);
	/* a blocking call must wait for them */
	cr_assert_eq(cohort_client_ping(cl), COHORT_EBUSY);
	int cols[] = { C_AGE };
	uint32_t ids[N];
	for (int i = 0; i < N; i++) {
		memset(&req, 0, sizeof req);
		req.hdr.opcode = PROTO_OP_GET;
		strcpy(req.table, "users");
		snprintf(key, sizeof key, "k%04d", i);
		proto_key k = { key, (uint8_t)strlen(key) };
		req.u.get.at = COHORT_NOW;
		req.u.get.ncols = 1;
		req.u.get.cols = cols;
		req.u.get.nkeys = 1;
		req.u.get.keys = &k;
		cr_assert_eq(cohort_client_send(cl, &req, &ids[i]), 0);
	}
	cr_assert_eq(cohort_client_inflight(cl), 2 * N);
	cohort_client_resp resp;
	for (int i = 0; i < N; i++) {
		cr_assert_eq(cohort_client_recv(cl, &resp), 0, "%s",
			     cohort_client_errmsg(cl));
		cr_assert_eq(resp.opcode, PROTO_OP_PUT);
		int st = -1;
		cr_assert_eq(cohort_client_resp_batch(cl, &resp, &st, 1), 0);
		cr_assert_eq(st, 0);
	}
	for (int i = 0; i < N; i++) {
		cr_assert_eq(cohort_client_recv(cl, &resp), 0);
		cr_assert_eq(resp.id, ids[i]);
		cohort_value v;
		size_t n;
		int st = cohort_client_resp_get(cl, &resp, &v, 1, &n, NULL);
		cr_assert_eq(st, COHORT_ROW_PRESENT);
		cr_assert_eq(v.v.i32, i);
	}
	cr_assert_eq(cohort_client_inflight(cl), 0);
	cr_assert_eq(cohort_client_recv(cl, &resp), COHORT_EINVAL);
	cr_assert_eq(cohort_client_ping(cl), 0);

	/* an error response in the pipeline comes in its place */
	memset(&req, 0, sizeof req);
	req.hdr.opcode = PROTO_OP_DESCRIBE;
	strcpy(req.table, "ghosts");
	cr_assert_eq(cohort_client_send(cl, &req, NULL), 0);
	req.hdr.opcode = PROTO_OP_PING;
	cr_assert_eq(cohort_client_send(cl, &req, NULL), 0);
	cr_assert_eq(cohort_client_recv(cl, &resp), 0);
	cr_assert_eq(resp.status, COHORT_ENOTABLE);
	cr_assert(strstr(cohort_client_errmsg(cl), "ghosts"));
	cr_assert_eq(cohort_client_recv(cl, &resp), 0);
	cr_assert_eq(resp.status, 0);
}

/* Big requests with big answers, none read until all are sent: the client
 * must read while it writes, or both sides wait for each other. */
Test(client, pipelining_reads_while_it_writes)
{
	enum { N = 4000, DIM = 1024 };
	cohort_column_def col = { "v", COHORT_VEC, DIM, 0 };
	cr_assert_eq(cohort_client_table_create(cl, "big", &col, 1, 0), 0);
	static float vec[DIM];
	for (int i = 0; i < DIM; i++)
		vec[i] = (float)i;
	proto_req req;
	proto_put_row row;
	cohort_field f = { 0, cohort_vec(vec, DIM) };
	proto_key key = { "k", 1 };
	for (int i = 0; i < N; i++) {
		memset(&req, 0, sizeof req);
		req.hdr.opcode = PROTO_OP_PUT;
		strcpy(req.table, "big");
		row.key = key;
		row.time = T0 + i;
		row.nfields = 1;
		row.fields = &f;
		req.u.put.nrows = 1;
		req.u.put.rows = &row;
		cr_assert_eq(cohort_client_send(cl, &req, NULL), 0, "%s",
			     cohort_client_errmsg(cl));
		memset(&req, 0, sizeof req);
		req.hdr.opcode = PROTO_OP_GET;
		strcpy(req.table, "big");
		req.u.get.at = COHORT_NOW;
		req.u.get.nkeys = 1;
		req.u.get.keys = &key;
		cr_assert_eq(cohort_client_send(cl, &req, NULL), 0, "%s",
			     cohort_client_errmsg(cl));
	}
	cr_assert_eq(cohort_client_flush(cl), 0, "%s", cohort_client_errmsg(cl));
	cohort_client_resp resp;
	for (int i = 0; i < N; i++) {
		cr_assert_eq(cohort_client_recv(cl, &resp), 0);
		cr_assert_eq(resp.opcode, PROTO_OP_PUT);
		cr_assert_eq(cohort_client_recv(cl, &resp), 0);
		cohort_value v;
		cr_assert_eq(cohort_client_resp_get(cl, &resp, &v, 1, NULL, NULL),
			     COHORT_ROW_PRESENT);
		cr_assert_eq(v.v.vec.dim, DIM);
		cr_assert_eq(v.v.vec.ptr[DIM - 1], (float)(DIM - 1));
	}
}

Test(client, lost_connection_is_eclosed_for_good)
{
	make_users();
	srv_kill(&server);
	int rc = cohort_client_ping(cl);
	cr_assert_eq(rc, COHORT_ECLOSED, "%d", rc);
	cr_assert(!cohort_client_connected(cl));
	cr_assert_gt(strlen(cohort_client_errmsg(cl)), 0);
	cohort_value v[1];
	cr_assert_eq(cohort_client_get(cl, "users", "k", 1, NULL, 0, COHORT_NOW,
				       v, 1, NULL, NULL), COHORT_ECLOSED);
	cr_assert_eq(cohort_client_send(cl, &(proto_req){ .hdr.opcode =
							   PROTO_OP_PING },
				       NULL), COHORT_ECLOSED);
}

Test(client, timeout_closes_the_connection)
{
	/* a listener that accepts and never answers: our own socket */
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
	cr_assert_eq(listen(lfd, 4), 0);
	socklen_t len = sizeof a;
	getsockname(lfd, (struct sockaddr *)&a, &len);
	cohort_client_opts opts;
	cohort_client_opts_init(&opts);
	opts.timeout_ms = 200;
	cohort_client *c;
	int rc = cohort_client_connect("127.0.0.1", ntohs(a.sin_port), &opts, &c);
	cr_assert_eq(rc, COHORT_ECLOSED);
	cr_assert(!cohort_client_connected(c));
	cohort_client_close(c);
	close(lfd);
}

Test(client, snapshot_and_stats)
{
	cohort_client_close(cl);
	srv_cleanup(&server);
	srv_opts o = { .fsync = "none" };
	start(&o);
	make_users();
	put_user("u1", 1, "a", 0, 0, 0);
	cr_assert_eq(cohort_client_snapshot(cl), 0, "%s",
		     cohort_client_errmsg(cl));
	const cohort_client_stat *st;
	size_t n;
	const char *io = NULL;
	cr_assert_eq(cohort_client_stats(cl, &st, &n, &io), 0);
	cr_assert_gt(n, 0);
	cr_assert_not_null(io);
	cr_assert_gt(strlen(io), 0);
	int found = 0;
	for (size_t i = 0; i < n; i++)
		if (strcmp(st[i].name, "rows") == 0) {
			found = 1;
			cr_assert_eq(st[i].value, 1);
		}
	cr_assert(found, "no 'rows' among the stats");
}
