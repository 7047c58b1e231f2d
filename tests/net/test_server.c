/*
 * test_server.c -- cohortd as a process (suite `server`): started by
 * srvutil on a loopback port in a fresh directory, driven over real
 * sockets with raw frames (proto.h), stopped with SIGTERM or SIGKILL.
 *
 * What is checked: start-up and the exit status of a clean stop; a whole
 * session (HELLO, AUTH, TABLE_CREATE, PUT, GET); 1,000 pipelined requests
 * in one write answered in order; 1,000 connections open at once; slow
 * clients (a byte at a time) and a client that never reads, neither of
 * which delays the others, the second not growing the server's memory;
 * the auth timeout, the connection limit; SIGTERM answering what was in
 * flight and leaving it durable; SIGKILL under --fsync always losing no
 * acknowledged write; the epoll path; the metrics endpoint; the command
 * line and the config file. Two tests run the server inside the test
 * process instead, to make its database's log sync fail (io_int.h) and
 * check that the write waiting for it is never acknowledged.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "cohort.h"
#include "conn.h"
#include "io_int.h"
#include "proto.h"
#include "server.h"
#include "srvutil.h"

static srv S;

static void fini(void)
{
	srv_cleanup(&S);
}

TestSuite(server, .fini = fini, .timeout = 60);

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* ---- requests ------------------------------------------------------------ */

static proto_req req_of(int op, uint32_t id)
{
	proto_req r;
	memset(&r, 0, sizeof r);
	r.hdr.opcode = (uint8_t)op;
	r.hdr.id = id;
	return r;
}

/* Table t: x i64, v vec[dim]. */
static void create_table(int fd, const char *name, uint32_t dim)
{
	proto_column cols[2];
	memset(cols, 0, sizeof cols);
	snprintf(cols[0].name, sizeof cols[0].name, "x");
	cols[0].type = COHORT_I64;
	snprintf(cols[1].name, sizeof cols[1].name, "v");
	cols[1].type = COHORT_VEC;
	cols[1].dim = dim;
	proto_req r = req_of(PROTO_OP_TABLE_CREATE, 10);
	snprintf(r.table, sizeof r.table, "%s", name);
	r.u.table_create.ncols = 2;
	r.u.table_create.cols = cols;
	int st = srv_call(fd, &r, NULL, NULL);
	cr_assert_eq(st, 0, "TABLE_CREATE %s: %s", name, cohort_strerror(st));
}

/* A PUT of x = value (and v = vec when given) to key; encoded into w. */
static void encode_put(proto_wbuf *w, uint32_t id, const char *key,
		       int64_t value, const float *vec, uint32_t dim)
{
	cohort_field f[2] = { { 0, cohort_i64(value) },
			      { 1, cohort_vec(vec, dim) } };
	proto_put_row row = { { key, (uint8_t)strlen(key) }, COHORT_NOW,
			      vec ? 2 : 1, f };
	proto_req r = req_of(PROTO_OP_PUT, id);
	snprintf(r.table, sizeof r.table, "t");
	r.u.put.nrows = 1;
	r.u.put.rows = &row;
	srv_encode(w, &r);
}

static void encode_get(proto_wbuf *w, uint32_t id, const char *key)
{
	proto_key k = { key, (uint8_t)strlen(key) };
	proto_req r = req_of(PROTO_OP_GET, id);
	snprintf(r.table, sizeof r.table, "t");
	r.u.get.at = COHORT_NOW;
	r.u.get.nkeys = 1;
	r.u.get.keys = &k;
	srv_encode(w, &r);
}

static void encode_simple(proto_wbuf *w, int op, uint32_t id)
{
	proto_req r = req_of(op, id);
	srv_encode(w, &r);
}

/* A PUT response body: 0 when the request and its one row succeeded. */
static int put_status(const uint8_t *body, uint32_t len)
{
	proto_rbuf r = { .p = body, .end = body + len };
	const char *msg;
	size_t ml;
	int st = proto_resp_status(&r, &msg, &ml);
	if (st)
		return st;
	uint32_t n = proto_r_u32(&r);
	int32_t row = proto_r_i32(&r);
	return r.err ? r.err : n != 1 ? COHORT_EPROTO : row;
}

/* A GET response body: the row status, and x in *x. */
static int get_x(const uint8_t *body, uint32_t len, int64_t *x)
{
	proto_rbuf r = { .p = body, .end = body + len };
	const char *msg;
	size_t ml;
	int st = proto_resp_status(&r, &msg, &ml);
	if (st)
		return st;
	int row = proto_r_u8(&r);
	proto_r_i64(&r);
	uint16_t ncols = proto_r_u16(&r);
	proto_arena a = { 0 };
	a.limit = 1 << 20;
	cohort_value v;
	proto_r_value(&r, &a, &v);
	*x = v.type == COHORT_I64 ? v.v.i64 : INT64_MIN;
	proto_arena_free(&a);
	if (r.err || ncols < 1)
		return COHORT_EPROTO;
	return row;
}

static void send_all_ok(int fd, const proto_wbuf *w)
{
	int rc = srv_write(fd, w->buf, w->len);
	cr_assert_eq(rc, 0, "send: %s", strerror(-rc));
}

/* Read one response, check its id and opcode; returns its body. */
static uint8_t *expect(int fd, int op, uint32_t id, uint32_t *len)
{
	proto_hdr h;
	uint8_t *b;
	cr_assert_eq(srv_read_frame(fd, &h, &b, 10000), 0,
		     "no response for request %u", id);
	cr_assert_eq(h.id, id, "response id %u where %u was next", h.id, id);
	cr_assert_eq(h.opcode, op);
	*len = h.body_len;
	return b;
}

static int ping(int fd, uint32_t id)
{
	proto_req r = req_of(PROTO_OP_PING, id);
	return srv_call(fd, &r, NULL, NULL);
}

/* HELLO, AUTH as admin, table t with v of dim, one PUT and its GET. */
static void session(const srv *s, uint32_t dim)
{
	int fd = srv_connect(s);
	int role = srv_hello_auth(fd, s->opts.no_auth ? NULL : SRV_TOKEN_ADMIN);
	cr_assert_eq(role, PROTO_ROLE_ADMIN);
	create_table(fd, "t", dim);
	proto_wbuf w = { 0 };
	encode_put(&w, 20, "alice", 42, NULL, 0);
	encode_get(&w, 21, "alice");
	encode_get(&w, 22, "bob");
	send_all_ok(fd, &w);
	proto_wbuf_free(&w);
	uint32_t len;
	uint8_t *b = expect(fd, PROTO_OP_PUT, 20, &len);
	cr_assert_eq(put_status(b, len), 0);
	free(b);
	int64_t x = 0;
	b = expect(fd, PROTO_OP_GET, 21, &len);
	cr_assert_eq(get_x(b, len, &x), COHORT_ROW_PRESENT);
	cr_assert_eq(x, 42);
	free(b);
	b = expect(fd, PROTO_OP_GET, 22, &len);
	cr_assert_eq(get_x(b, len, &x), COHORT_ROW_MISSING);
	free(b);
	close(fd);
}

/* 500 PUT/GET pairs of distinct keys in one write; every GET sees its
 * PUT, every response comes in request order. */
static void pipeline(const srv *s)
{
	int fd = srv_connect(s);
	srv_hello_auth(fd, s->opts.no_auth ? NULL : SRV_TOKEN_WRITE);
	proto_wbuf w = { 0 };
	char key[32];
	for (uint32_t i = 0; i < 500; i++) {
		snprintf(key, sizeof key, "p%u", i);
		encode_put(&w, 1000 + 2 * i, key, i * 7, NULL, 0);
		encode_get(&w, 1001 + 2 * i, key);
	}
	send_all_ok(fd, &w);
	proto_wbuf_free(&w);
	for (uint32_t i = 0; i < 500; i++) {
		uint32_t len;
		uint8_t *b = expect(fd, PROTO_OP_PUT, 1000 + 2 * i, &len);
		cr_assert_eq(put_status(b, len), 0, "PUT %u", i);
		free(b);
		b = expect(fd, PROTO_OP_GET, 1001 + 2 * i, &len);
		int64_t x = -1;
		cr_assert_eq(get_x(b, len, &x), COHORT_ROW_PRESENT, "GET %u", i);
		cr_assert_eq(x, (int64_t)i * 7);
		free(b);
	}
	close(fd);
}

/* ---- start, stop, sessions ---------------------------------------------- */

Test(server, starts_and_stops_cleanly)
{
	srv_start(&S, NULL);
	int fd = srv_connect(&S);
	cr_assert_eq(srv_hello_auth(fd, SRV_TOKEN_READ), PROTO_ROLE_READ);
	cr_assert_eq(ping(fd, 5), 0);
	close(fd);
	cr_assert_eq(srv_stop(&S), 0);
	cr_assert(srv_log_has(&S, "listening on 127.0.0.1:0, port"));
	cr_assert(srv_log_has(&S, "recovery: "));
	cr_assert(srv_log_has(&S, "log: "));
	cr_assert(srv_log_has(&S, "SIGTERM received"));
	cr_assert(srv_log_has(&S, "stopped"));
	cr_assert(srv_log_has(&S, "io_uring") || srv_log_has(&S, "epoll ("),
		  "the log names the server's I/O path");
}

Test(server, hello_auth_put_get)
{
	srv_start(&S, NULL);
	session(&S, 4);
	cr_assert_eq(srv_stop(&S), 0);
}

Test(server, pipelines_1000_requests_in_one_write)
{
	srv_start(&S, NULL);
	session(&S, 4);
	pipeline(&S);
	cr_assert_eq(srv_stop(&S), 0);
}

Test(server, epoll_path_without_uring)
{
	srv_opts o = { .no_uring = true };
	srv_start(&S, &o);
	cr_assert(srv_log_has(&S, "epoll (turned off by --no-uring)"));
	cr_assert(srv_log_has(&S, "log: pwrite"));
	session(&S, 4);
	pipeline(&S);
	cr_assert_eq(srv_stop(&S), 0);
}

/* ---- many and difficult clients ------------------------------------------ */

static char *http_get(int port, const char *path)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0,
		     "connect to metrics port %d: %s", port, strerror(errno));
	char req[256];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n",
			 path);
	cr_assert_eq(srv_write(fd, req, (size_t)n), 0);
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (len + 1 == cap)
			buf = realloc(buf, cap *= 2);
		ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	buf[len] = 0;
	close(fd);
	return buf;
}

static long metric_value(const char *text, const char *series)
{
	const char *p = strstr(text, series);
	cr_assert_not_null(p, "no %s in the metrics", series);
	return atol(p + strlen(series));
}

Test(server, thousand_concurrent_connections)
{
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < 4096) {
		rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < 2100)
		cr_skip_test("RLIMIT_NOFILE hard limit %ld is below the 2100 "
			     "descriptors this test needs",
			     (long)rl.rlim_max);
	srv_opts o = { .metrics = true };
	srv_start(&S, &o);               /* inherits the raised limit */
	enum { N = 1000 };
	static int fds[N];
	proto_wbuf w = { 0 };
	proto_req r = req_of(PROTO_OP_HELLO, 1);
	r.u.hello.version = PROTO_VERSION;
	snprintf(r.u.hello.client, sizeof r.u.hello.client, "many");
	srv_encode(&w, &r);
	r = req_of(PROTO_OP_AUTH, 2);
	r.u.auth.token = SRV_TOKEN_READ;
	r.u.auth.token_len = (uint8_t)strlen(SRV_TOKEN_READ);
	srv_encode(&w, &r);
	encode_simple(&w, PROTO_OP_PING, 3);
	for (int i = 0; i < N; i++) {
		fds[i] = srv_connect(&S);
		send_all_ok(fds[i], &w);
	}
	proto_wbuf_free(&w);
	for (int i = 0; i < N; i++) {
		static const int ops[3] = { PROTO_OP_HELLO, PROTO_OP_AUTH,
					    PROTO_OP_PING };
		for (uint32_t k = 0; k < 3; k++) {
			uint32_t len;
			uint8_t *b = expect(fds[i], ops[k], k + 1, &len);
			proto_rbuf rb = { .p = b, .end = b + len };
			cr_assert_eq(proto_resp_status(&rb, NULL, NULL), 0,
				     "connection %d, request %u", i, k + 1);
			free(b);
		}
	}
	/* all of them open at once, as the server counts them */
	char *m = http_get(S.metrics_port, "/metrics");
	cr_assert_eq(metric_value(m, "\ncohort_connections "), N);
	free(m);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	cr_assert_eq(srv_stop(&S), 0);
}

typedef struct slow_arg {
	int port;
	int fd;
	atomic_int done;
	int status;
} slow_arg;

/* HELLO, AUTH and PING, written one byte at a time, 1 ms apart. */
static void *slow_writer(void *p)
{
	slow_arg *a = p;
	proto_wbuf w = { 0 };
	proto_req r = req_of(PROTO_OP_HELLO, 1);
	r.u.hello.version = PROTO_VERSION;
	snprintf(r.u.hello.client, sizeof r.u.hello.client, "slow");
	proto_req_encode(&w, &r);
	r = req_of(PROTO_OP_AUTH, 2);
	r.u.auth.token = SRV_TOKEN_READ;
	r.u.auth.token_len = (uint8_t)strlen(SRV_TOKEN_READ);
	proto_req_encode(&w, &r);
	r = req_of(PROTO_OP_PING, 3);
	proto_req_encode(&w, &r);
	a->status = 0;
	for (size_t i = 0; i < w.len; i++) {
		if (send(a->fd, w.buf + i, 1, MSG_NOSIGNAL) != 1) {
			a->status = -1;
			break;
		}
		sleep_ms(1);
	}
	proto_wbuf_free(&w);
	atomic_store(&a->done, 1);
	return NULL;
}

Test(server, slow_clients_do_not_delay_others)
{
	srv_start(&S, NULL);
	enum { NSLOW = 4 };
	slow_arg args[NSLOW];
	pthread_t th[NSLOW];
	for (int i = 0; i < NSLOW; i++) {
		memset(&args[i], 0, sizeof args[i]);
		args[i].fd = srv_connect(&S);
		pthread_create(&th[i], NULL, slow_writer, &args[i]);
	}
	int fd = srv_connect(&S);
	srv_hello_auth(fd, SRV_TOKEN_READ);
	long long worst = 0;
	int pings = 0;
	while (!atomic_load(&args[0].done) || pings < 20) {
		long long t0 = mono_ms();
		cr_assert_eq(ping(fd, 100 + (uint32_t)pings), 0);
		long long dt = mono_ms() - t0;
		if (dt > worst)
			worst = dt;
		pings++;
		sleep_ms(2);
	}
	for (int i = 0; i < NSLOW; i++)
		pthread_join(th[i], NULL);
	cr_assert_gt(pings, 20);
	cr_assert_lt(worst, 250, "a ping took %lld ms next to slow clients",
		     worst);
	static const int ops[3] = { PROTO_OP_HELLO, PROTO_OP_AUTH,
				    PROTO_OP_PING };
	for (int i = 0; i < NSLOW; i++) {
		cr_assert_eq(args[i].status, 0);
		for (uint32_t k = 0; k < 3; k++) {
			uint32_t len;
			uint8_t *b = expect(args[i].fd, ops[k], k + 1, &len);
			proto_rbuf rb = { .p = b, .end = b + len };
			cr_assert_eq(proto_resp_status(&rb, NULL, NULL), 0);
			free(b);
		}
		close(args[i].fd);
	}
	close(fd);
	cr_assert_eq(srv_stop(&S), 0);
}

/* Pipeline GETs of a 16 KiB row without reading any answer until the
 * server stops reading (its output limit): the owed responses are far
 * more than the server's memory grows, and other clients are served. */
static void never_reader(bool no_uring)
{
	srv_opts o = { .no_uring = no_uring };
	srv_start(&S, &o);
	enum { DIM = 4096 };
	int fd = srv_connect(&S);
	srv_hello_auth(fd, SRV_TOKEN_ADMIN);
	create_table(fd, "t", DIM);
	static float vec[DIM];
	for (int i = 0; i < DIM; i++)
		vec[i] = (float)i;
	proto_wbuf w = { 0 };
	encode_put(&w, 30, "big", 1, vec, DIM);
	send_all_ok(fd, &w);
	proto_wbuf_free(&w);
	uint32_t len;
	uint8_t *b = expect(fd, PROTO_OP_PUT, 30, &len);
	cr_assert_eq(put_status(b, len), 0);
	free(b);

	int other = srv_connect(&S);
	srv_hello_auth(other, SRV_TOKEN_READ);
	cr_assert_eq(ping(other, 1), 0);
	long rss0 = srv_rss_kb(&S);

	/* one batch of 256 GETs, written until the socket stays full */
	memset(&w, 0, sizeof w);
	for (uint32_t i = 0; i < 256; i++)
		encode_get(&w, 1000 + i, "big");
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	long long sent = 0, blocked_since = 0;
	size_t off = 0;
	long long deadline = mono_ms() + 10000;
	while (mono_ms() < deadline) {
		ssize_t n = send(fd, w.buf + off, w.len - off, MSG_NOSIGNAL);
		if (n > 0) {
			sent += n;
			off = (off + (size_t)n) % w.len;
			blocked_since = 0;
			continue;
		}
		cr_assert(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK),
			  "send: %s", strerror(errno));
		if (!blocked_since)
			blocked_since = mono_ms();
		else if (mono_ms() - blocked_since > 300)
			break;
		sleep_ms(5);
	}
	cr_assert(blocked_since, "the server never stopped reading");
	size_t req_len = w.len / 256;
	proto_wbuf_free(&w);
	long long owed = sent / (long long)req_len * (DIM * 4);
	long rss1 = srv_rss_kb(&S);
	cr_assert_gt(owed, 256LL << 20, "only %lld bytes of responses owed",
		     owed);
	cr_assert_lt(rss1 - rss0, 64 << 10, "the server grew by %ld KiB while "
		     "%lld bytes of responses were owed", rss1 - rss0, owed);
	long long t0 = mono_ms();
	cr_assert_eq(ping(other, 2), 0);
	cr_assert_lt(mono_ms() - t0, 500, "the other client waited");
	close(fd);
	cr_assert_eq(ping(other, 3), 0);
	close(other);
	cr_assert_eq(srv_stop(&S), 0);
}

Test(server, client_that_never_reads_is_bounded)
{
	never_reader(false);
}

Test(server, client_that_never_reads_is_bounded_epoll)
{
	never_reader(true);
}

/* ---- limits ---------------------------------------------------------------- */

Test(server, auth_timeout_closes_unauthenticated)
{
	srv_opts o = { .extra = { "--auth-timeout", "0.3" } };
	srv_start(&S, &o);
	int anon = srv_connect(&S);
	int authed = srv_connect(&S);
	cr_assert_eq(srv_hello_auth(anon, NULL), PROTO_ROLE_NONE);
	srv_hello_auth(authed, SRV_TOKEN_READ);
	long long t0 = mono_ms();
	cr_assert(srv_closed_within(anon, 3000),
		  "an unauthenticated connection stayed open");
	cr_assert_geq(mono_ms() - t0, 150, "closed before the timeout");
	sleep_ms(300);
	cr_assert_eq(ping(authed, 9), 0);
	close(anon);
	close(authed);
	cr_assert(srv_log_has(&S, "not authenticated after 300 ms"));
	cr_assert_eq(srv_stop(&S), 0);
}

Test(server, idle_timeout_closes_silent_connections)
{
	srv_opts o = { .extra = { "--idle-timeout", "0.3" } };
	srv_start(&S, &o);
	int fd = srv_connect(&S);
	srv_hello_auth(fd, SRV_TOKEN_READ);
	cr_assert(srv_closed_within(fd, 3000));
	close(fd);
	cr_assert_eq(srv_stop(&S), 0);
}

Test(server, refuses_connections_over_the_limit)
{
	srv_opts o = { .extra = { "--max-conns", "2" } };
	srv_start(&S, &o);
	int a = srv_connect(&S), b = srv_connect(&S);
	srv_hello_auth(a, SRV_TOKEN_READ);
	srv_hello_auth(b, SRV_TOKEN_READ);
	int c = srv_connect(&S);      /* the kernel accepts; cohortd closes */
	cr_assert(srv_closed_within(c, 3000));
	close(c);
	cr_assert_eq(ping(a, 7), 0);
	close(b);
	/* a slot is free again once b's close has been seen */
	bool served = false;
	for (int i = 0; i < 50 && !served; i++) {
		sleep_ms(20);
		int d = srv_connect(&S);
		proto_wbuf w = { 0 };
		encode_simple(&w, PROTO_OP_PING, 1);
		srv_write(d, w.buf, w.len);
		proto_wbuf_free(&w);
		proto_hdr h;
		uint8_t *body;
		served = srv_read_frame(d, &h, &body, 2000) == 0;
		free(body);
		close(d);
	}
	cr_assert(served, "no connection accepted after one closed");
	close(a);
	cr_assert(srv_log_has(&S, "refused"));
	cr_assert_eq(srv_stop(&S), 0);
}

/* ---- durability -------------------------------------------------------------- */

/* fsync none: only the stop itself makes the data durable. */
Test(server, sigterm_answers_in_flight_and_syncs)
{
	srv_opts o = { .fsync = "none" };
	srv_start(&S, &o);
	int fd = srv_connect(&S);
	srv_hello_auth(fd, SRV_TOKEN_ADMIN);
	create_table(fd, "t", 4);
	enum { N = 2000 };
	proto_wbuf w = { 0 };
	char key[32];
	for (uint32_t i = 0; i < N; i++) {
		snprintf(key, sizeof key, "s%u", i);
		encode_put(&w, i + 1, key, i, NULL, 0);
	}
	send_all_ok(fd, &w);
	proto_wbuf_free(&w);
	/* the first answer means the server is reading the batch */
	uint32_t len;
	uint8_t *b = expect(fd, PROTO_OP_PUT, 1, &len);
	cr_assert_eq(put_status(b, len), 0);
	free(b);
	kill(S.pid, SIGTERM);
	static bool acked[N];
	acked[0] = true;
	uint32_t nacked = 1;
	for (uint32_t i = 1; i < N; i++) {
		proto_hdr h;
		if (srv_read_frame(fd, &h, &b, 10000))
			break;         /* the rest was not read before the stop */
		cr_assert_eq(h.id, i + 1, "responses out of order");
		acked[i] = put_status(b, h.body_len) == 0;
		nacked += acked[i];
		free(b);
	}
	close(fd);
	cr_assert_eq(srv_stop(&S), 0, "exit status of the SIGTERM'd server");
	cr_assert_gt(nacked, 1);

	cohort_db *db;
	int rc = cohort_open(S.data_dir, NULL, &db);
	cr_assert_eq(rc, 0, "reopen: %s (%s)", cohort_strerror(rc),
		     cohort_errdetail());
	cohort_table *t;
	cr_assert_eq(cohort_table_open(db, "t", &t), 0);
	int col = 0;
	for (uint32_t i = 0; i < N; i++) {
		if (!acked[i])
			continue;
		snprintf(key, sizeof key, "s%u", i);
		cohort_value v;
		rc = cohort_get(t, key, strlen(key), &col, 1, COHORT_NOW, &v,
				NULL, 0, NULL);
		cr_assert_eq(rc, COHORT_ROW_PRESENT, "acknowledged %s is gone",
			     key);
		cr_assert_eq(v.v.i64, (int64_t)i);
	}
	cohort_close(db);
}

typedef struct writer_arg {
	int fd;
	int idx;
	atomic_uint acked;      /* keys w<idx>-0 .. acked-1 acknowledged */
} writer_arg;

/* PUTs in order until the connection dies; no Criterion asserts here
 * (not the test's thread). */
static void *acked_writer(void *p)
{
	writer_arg *a = p;
	char key[32];
	for (uint32_t n = 0;; n++) {
		proto_wbuf w = { 0 };
		snprintf(key, sizeof key, "w%d-%u", a->idx, n);
		cohort_field f = { 0, cohort_i64(n) };
		proto_put_row row = { { key, (uint8_t)strlen(key) },
				      COHORT_NOW, 1, &f };
		proto_req r = req_of(PROTO_OP_PUT, n + 10);
		snprintf(r.table, sizeof r.table, "t");
		r.u.put.nrows = 1;
		r.u.put.rows = &row;
		proto_req_encode(&w, &r);
		int rc = srv_write(a->fd, w.buf, w.len);
		proto_wbuf_free(&w);
		if (rc)
			break;
		uint8_t hdr[PROTO_HDR_LEN], body[64];
		ssize_t got = recv(a->fd, hdr, sizeof hdr, MSG_WAITALL);
		proto_hdr h;
		if (got != (ssize_t)sizeof hdr ||
		    proto_hdr_decode(hdr, sizeof hdr, 1 << 20, &h) !=
		    PROTO_HDR_LEN || h.body_len > sizeof body || h.id != n + 10)
			break;
		if (recv(a->fd, body, h.body_len, MSG_WAITALL) !=
		    (ssize_t)h.body_len)
			break;
		if (put_status(body, h.body_len) != 0)
			break;
		atomic_store(&a->acked, n + 1);
	}
	return NULL;
}

Test(server, sigkill_under_fsync_always_keeps_acknowledged_writes)
{
	srv_opts o = { .fsync = "always" };
	srv_start(&S, &o);
	int fd = srv_connect(&S);
	srv_hello_auth(fd, SRV_TOKEN_ADMIN);
	create_table(fd, "t", 4);
	close(fd);
	enum { NW = 4 };
	writer_arg args[NW];
	pthread_t th[NW];
	for (int i = 0; i < NW; i++) {
		memset(&args[i], 0, sizeof args[i]);
		args[i].idx = i;
		args[i].fd = srv_connect(&S);
		srv_hello_auth(args[i].fd, SRV_TOKEN_WRITE);
		pthread_create(&th[i], NULL, acked_writer, &args[i]);
	}
	sleep_ms(400);
	srv_kill(&S);
	for (int i = 0; i < NW; i++) {
		pthread_join(th[i], NULL);
		close(args[i].fd);
	}
	srv_restart(&S);
	cr_assert(srv_log_has(&S, "recovery: "));
	fd = srv_connect(&S);
	srv_hello_auth(fd, SRV_TOKEN_READ);
	unsigned total = 0;
	for (int i = 0; i < NW; i++) {
		unsigned n = atomic_load(&args[i].acked);
		total += n;
		proto_wbuf w = { 0 };
		char key[32];
		for (unsigned k = 0; k < n; k++) {
			snprintf(key, sizeof key, "w%d-%u", i, k);
			encode_get(&w, k + 1, key);
		}
		send_all_ok(fd, &w);
		proto_wbuf_free(&w);
		for (unsigned k = 0; k < n; k++) {
			uint32_t len;
			uint8_t *b = expect(fd, PROTO_OP_GET, k + 1, &len);
			int64_t x = -1;
			cr_assert_eq(get_x(b, len, &x), COHORT_ROW_PRESENT,
				     "acknowledged w%d-%u lost", i, k);
			cr_assert_eq(x, (int64_t)k);
			free(b);
		}
	}
	cr_assert_gt(total, 20, "only %u writes acknowledged in 400 ms", total);
	close(fd);
	cr_assert_eq(srv_stop(&S), 0);
}

/* ---- metrics, flags, config ------------------------------------------------ */

Test(server, metrics_endpoint)
{
	srv_opts o = { .metrics = true };
	srv_start(&S, &o);
	session(&S, 4);
	char *m = http_get(S.metrics_port, "/metrics");
	cr_assert(strstr(m, "HTTP/1.0 200 OK"), "%s", m);
	cr_assert(strstr(m, "cohort_requests_total{op=\"put\",status=\"ok\"} 1\n"),
		  "%s", m);
	cr_assert(strstr(m, "cohort_request_duration_seconds_bucket{op=\"get\","
			 "le=\"+Inf\"} 2\n"), "%s", m);
	cr_assert(strstr(m, "cohort_rows{table=\"t\"} 1\n"), "%s", m);
	cr_assert(strstr(m, "cohort_memory_bytes{table=\"t\"} "), "%s", m);
	cr_assert(strstr(m, "cohort_log_info{io_path=\""), "%s", m);
	cr_assert(strstr(m, "cohort_log_bytes "), "%s", m);
	free(m);
	m = http_get(S.metrics_port, "/other");
	cr_assert(strstr(m, "HTTP/1.0 404"), "%s", m);
	free(m);
	cr_assert_eq(srv_stop(&S), 0);
}

Test(server, usage_errors_and_help)
{
	srv_start(&S, NULL);
	cr_assert_eq(srv_stop(&S), 0);
	const char *help[] = { "--help", NULL };
	cr_assert_eq(srv_run(&S, help, 5000), 0);
	const char *noauth[] = { "--memory", "--listen", "127.0.0.1:0", NULL };
	cr_assert_eq(srv_run(&S, noauth, 5000), 2);
	cr_assert(srv_log_has(&S, "no --token-file"));
	const char *bad[] = { "--memory", "--no-auth", "--fsync", "sometimes",
			      NULL };
	cr_assert_eq(srv_run(&S, bad, 5000), 2);
	cr_assert(srv_log_has(&S, "'sometimes' is not always, interval or none"));
	const char *unknown[] = { "--no-auth", "--frobnicate", NULL };
	cr_assert_eq(srv_run(&S, unknown, 5000), 2);
	cr_assert(srv_log_has(&S, "unknown option '--frobnicate'"));
	const char *num[] = { "--no-auth", "--threads", "many", NULL };
	cr_assert_eq(srv_run(&S, num, 5000), 2);

	/* a token file others can read is refused: exit 1 */
	char path[128];
	snprintf(path, sizeof path, "%s/open-tokens", S.dir);
	FILE *f = fopen(path, "w");
	fprintf(f, "read %s\n", SRV_TOKEN_READ);
	fclose(f);
	chmod(path, 0644);
	const char *open_tok[] = { "--memory", "--token-file", path, "--listen",
				   "127.0.0.1:0", NULL };
	cr_assert_eq(srv_run(&S, open_tok, 5000), 1);
}

Test(server, config_file_with_flags_overriding)
{
	srv_opts o = { .extra = { "--config", NULL } };
	char path[128];
	o.extra[1] = path;
	/* the directory exists only once srv_start made it: write the file
	 * to a name chosen first, in /tmp */
	snprintf(path, sizeof path, "/tmp/cohort-srv-conf-%d", (int)getpid());
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "# cohortd test config\n"
		"fsync = none          # the command line says interval\n"
		"max_conns = 77\n"
		"\n"
		"auth-timeout = 5\n");
	fclose(f);
	srv_start(&S, &o);
	unlink(path);
	cr_assert(srv_log_has(&S, "auth timeout 5 s"));
	cr_assert(srv_log_has(&S, "fsync interval"));
	cr_assert(srv_log_has(&S, "77 connections"));
	session(&S, 4);
	cr_assert_eq(srv_stop(&S), 0);

	snprintf(path, sizeof path, "%s/bad.conf", S.dir);
	f = fopen(path, "w");
	fprintf(f, "threads = 2\nlisten 127.0.0.1:1\n");
	fclose(f);
	const char *bad[] = { "--no-auth", "--memory", "--config", path, NULL };
	cr_assert_eq(srv_run(&S, bad, 5000), 2);
	cr_assert(srv_log_has(&S, "bad.conf line 2: expected \"key = value\""));

	/* a bad value is reported with its file and line too */
	f = fopen(path, "w");
	fprintf(f, "# limits\nmax-k = 5000\n");
	fclose(f);
	cr_assert_eq(srv_run(&S, bad, 5000), 2);
	cr_assert(srv_log_has(&S, "bad.conf line 2: max-k: '5000' is not a "
			      "whole number"));
}

/* A second server cannot take the first one's address (SO_REUSEPORT
 * would have let it, and split the connections between two databases). */
Test(server, a_second_server_on_the_same_address_is_refused)
{
	srv_start(&S, NULL);
	char listen[32];
	snprintf(listen, sizeof listen, "127.0.0.1:%d", S.port);
	const char *again[] = { "--memory", "--no-auth", "--listen", listen,
				NULL };
	cr_assert_eq(srv_run(&S, again, 5000), 1);
	cr_assert(srv_log_has(&S, "Address already in use"));
	session(&S, 4);
	cr_assert_eq(srv_stop(&S), 0);
}

/* SIGHUP is logged and ignored; the stop snapshots, so a restart loads
 * the snapshot instead of replaying the log. */
Test(server, sighup_is_ignored_and_the_stop_snapshots)
{
	srv_start(&S, NULL);
	session(&S, 4);
	cr_assert_eq(kill(S.pid, SIGHUP), 0);
	for (int i = 0; i < 200 && !srv_log_has(&S, "SIGHUP ignored"); i++)
		usleep(10000);
	cr_assert(srv_log_has(&S, "SIGHUP ignored"));
	int fd = srv_connect(&S);
	cr_assert_eq(srv_hello_auth(fd, SRV_TOKEN_ADMIN), PROTO_ROLE_ADMIN);
	close(fd);
	cr_assert_eq(srv_stop(&S), 0);
	bool snap = false;
	DIR *d = opendir(S.data_dir);
	cr_assert_not_null(d);
	for (struct dirent *e; (e = readdir(d));)
		if (!strncmp(e->d_name, "snap", 4))
			snap = true;
	closedir(d);
	cr_assert(snap, "no snapshot in %s after the stop", S.data_dir);
}

/* ---- in-process: a failed group commit ------------------------------------ */

/* A database under `always` in a fresh directory (removed by fini), with
 * a table t of one column, and the connection environment over it. */
static cohort_db *always_db(conn_env *env)
{
	char dir[64];
	snprintf(dir, sizeof dir, "/tmp/cohort-srvdb-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(S.dir, sizeof S.dir, "%s", dir);
	cohort_options opts;
	cohort_options_init(&opts);
	opts.fsync = COHORT_FSYNC_ALWAYS;
	cohort_db *db;
	cr_assert_eq(cohort_open(dir, &opts, &db), 0);
	cohort_column_def col = { "x", COHORT_I64, 0, 0 };
	cr_assert_eq(cohort_table_create(db, "t", &col, 1, NULL, NULL), 0);
	*env = (conn_env){ .db = db, .max_frame = PROTO_MAX_FRAME_DEFAULT,
			   .max_batch = PROTO_MAX_BATCH_DEFAULT,
			   .max_k = COHORT_MAX_K, .out_limit = 1 << 20,
			   .max_subs = 16, .server_name = "test" };
	return db;
}

/* Put key "a" (request id 40) on fd and expect it acknowledged. */
static void put_acknowledged(int fd)
{
	proto_wbuf w = { 0 };
	encode_put(&w, 40, "a", 1, NULL, 0);
	send_all_ok(fd, &w);
	proto_wbuf_free(&w);
	uint32_t len;
	uint8_t *b = expect(fd, PROTO_OP_PUT, 40, &len);
	cr_assert_eq(put_status(b, len), 0);
	free(b);
}

/* The server in this process over a database whose next log sync fails
 * (store/io_int.h's fault injection): the write that needed it is never
 * acknowledged, its connection is closed without a response. */
static void failed_sync(bool no_uring)
{
	conn_env env;
	cohort_db *db = always_db(&env);
	server_config cfg = { .listen = "127.0.0.1:0", .nthreads = 1,
			      .no_uring = no_uring };
	server *sv;
	char err[256];
	cr_assert_eq(server_new(&cfg, &env, &sv, err, sizeof err), 0, "%s", err);
	cr_assert_eq(server_start(sv), 0);
	srv local = { .port = server_port(sv) };
	int fd = srv_connect(&local);
	cr_assert_eq(srv_hello_auth(fd, NULL), PROTO_ROLE_ADMIN);
	put_acknowledged(fd);

	io_fault_arm(IO_SYNC, 0, IO_FAULT_EIO);
	proto_wbuf w = { 0 };
	encode_put(&w, 41, "b", 2, NULL, 0);
	send_all_ok(fd, &w);
	proto_wbuf_free(&w);
	proto_hdr h;
	uint8_t *b;
	int rc = srv_read_frame(fd, &h, &b, 5000);
	if (rc == 0)
		cr_assert_fail("a write whose sync failed was answered: opcode "
			       "0x%02x id %u status %d", h.opcode, h.id,
			       put_status(b, h.body_len));
	close(fd);
	server_stop(sv);
	cr_assert_eq(server_wait(sv), 0);
	server_free(sv);
	io_fault_reset();
	cohort_close(db);               /* EIO: the log has failed */
}

Test(server, failed_sync_acknowledges_nothing)
{
	failed_sync(false);
}

Test(server, failed_sync_acknowledges_nothing_epoll)
{
	failed_sync(true);
}

/* ---- in-process: the log's notification ---------------------------------- */

/* Each loop registers its wake-up fd for the log's word that a sync
 * completed when server_new sets it up. A registration refused (out of
 * memory) fails server_new with the reason: a loop without it would hold
 * durable writes' answers until something else woke it. The loops
 * registered before the refusal are undone, and a server made afterwards
 * answers durable writes. */
Test(server, refused_log_notification_fails_server_new)
{
	conn_env env;
	cohort_db *db = always_db(&env);
	server_config cfg = { .listen = "127.0.0.1:0", .nthreads = 2 };
	server *sv = NULL;
	char err[256];
	/* the n-th allocation from here is loop n's registration */
	for (long n = 0; n < 2; n++) {
		err[0] = 0;
		alloc_fail_after(n);
		int rc = server_new(&cfg, &env, &sv, err, sizeof err);
		alloc_fail_after(-1);
		cr_assert_eq(rc, COHORT_ENOMEM, "failing allocation %ld: %d "
			     "(%s)", n, rc, err);
		char want[64];
		snprintf(want, sizeof want, "log notification of loop %ld", n);
		cr_assert_not_null(strstr(err, want), "%s", err);
	}

	cr_assert_eq(server_new(&cfg, &env, &sv, err, sizeof err), 0, "%s", err);
	cr_assert_eq(server_start(sv), 0);
	srv local = { .port = server_port(sv) };
	int fd = srv_connect(&local);
	cr_assert_eq(srv_hello_auth(fd, NULL), PROTO_ROLE_ADMIN);
	put_acknowledged(fd);
	close(fd);
	server_stop(sv);
	cr_assert_eq(server_wait(sv), 0);
	server_free(sv);
	cr_assert_eq(cohort_close(db), 0);
}

/* ---- in-process: the loops' defaults -------------------------------------- */

static server *memory_server(cohort_db **db, conn_env *env, unsigned nthreads)
{
	cr_assert_eq(cohort_open(NULL, NULL, db), 0);
	*env = (conn_env){ .db = *db, .max_frame = PROTO_MAX_FRAME_DEFAULT,
			   .max_batch = PROTO_MAX_BATCH_DEFAULT,
			   .max_k = COHORT_MAX_K, .out_limit = 1 << 20,
			   .max_subs = 16, .server_name = "test" };
	server_config cfg = { .listen = "127.0.0.1:0", .nthreads = nthreads };
	server *sv;
	char err[256];
	cr_assert_eq(server_new(&cfg, env, &sv, err, sizeof err), 0, "%s", err);
	return sv;
}

/* Unset, the loops are one fewer than the cores (at least one): the
 * other core is for the log writer, snapshots and, on small machines,
 * the clients (docs/benchmarks.md, net). */
Test(server, default_threads_leave_a_core)
{
	cohort_db *db;
	conn_env env;
	server *sv = memory_server(&db, &env, 0);
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned want = cores > 1 ? (unsigned)cores - 1 : 1;
	cr_assert_eq(server_nthreads(sv), want, "%u loops on %ld cores",
		     server_nthreads(sv), cores);
	server_free(sv);                /* never started: rings never enabled */
	cohort_close(db);
}

/* Where the kernel has DEFER_TASKRUN (6.1), the rings use it, and the
 * loops (each enabling its own single-issuer ring) serve connections. */
Test(server, rings_defer_task_work_where_the_kernel_can)
{
	cohort_db *db;
	conn_env env;
	server *sv = memory_server(&db, &env, 3);
	const char *path = server_io_path(sv);
	struct io_uring_params p;
	memset(&p, 0, sizeof p);
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	struct io_uring ring;
	bool can = io_uring_queue_init_params(8, &ring, &p) == 0;
	if (can)
		io_uring_queue_exit(&ring);
	if (can)
		cr_assert_str_eq(path, "io_uring (defer_taskrun)");
	else
		cr_log_warn("this kernel refuses DEFER_TASKRUN: the loops use "
			    "%s", path);
	cr_assert_eq(server_start(sv), 0);
	srv local = { .port = server_port(sv) };
	int fds[12];
	for (int i = 0; i < 12; i++) {     /* spread over the three loops */
		fds[i] = srv_connect(&local);
		cr_assert_eq(srv_hello_auth(fds[i], NULL), PROTO_ROLE_ADMIN);
	}
	for (int r = 0; r < 3; r++)
		for (int i = 0; i < 12; i++)
			cr_assert_eq(ping(fds[i], (uint32_t)(100 + r * 12 + i)), 0);
	for (int i = 0; i < 12; i++)
		close(fds[i]);
	server_stop(sv);
	cr_assert_eq(server_wait(sv), 0);
	server_free(sv);
	cohort_close(db);
}
