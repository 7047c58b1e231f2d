/*
 * conn.c -- libFuzzer target: a whole cohortd connection (conn.c,
 * handler.c, proto.c and the embedded API behind them) fed raw bytes.
 *
 * An in-memory database with a small table "t" (a i32, b f64, c cat,
 * v vec4, n counter, f bool; rows k0..k31), a persona model "m" over v and
 * an index "ix" on v; each input gets a new connection
 * without auth (role admin, so every opcode is reachable), is fed in three
 * chunks with the connection processed, synced and drained after each, as
 * the event loop does, and subscriptions polled. The database is rebuilt
 * and closed for every input: what one input writes (rows, tables, models
 * trained in the background) cannot slow the next one down, and every
 * crash reproduces from its input alone.
 *
 * The seed corpus (tests/fuzz/corpus/conn/) holds valid request sequences
 * touching every opcode.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cohort.h"
#include "conn.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cohort_db *db;
static conn_env env;

static void must(int rc, const char *what)
{
	if (rc < 0) {
		fprintf(stderr, "fuzz-conn setup: %s: %s (%s)\n", what,
			cohort_strerror(rc), cohort_errdetail());
		abort();
	}
}

static void build_db(void)
{
	must(cohort_open(NULL, NULL, &db), "open");
	cohort_column_def cols[] = {
		{ "a", COHORT_I32, 0, 0 }, { "b", COHORT_F64, 0, 0 },
		{ "c", COHORT_CAT, 0, 0 }, { "v", COHORT_VEC, 4, 0 },
		{ "n", COHORT_COUNTER, 0, 0 }, { "f", COHORT_BOOL, 0, 0 },
	};
	cohort_table *t;
	must(cohort_table_create(db, "t", cols, 6, NULL, &t), "table");
	static const char *cats[] = { "x", "y", "z" };
	for (int i = 0; i < 32; i++) {
		char key[8];
		int kl = snprintf(key, sizeof(key), "k%d", i);
		float v[4] = { (float)(i % 2) * 10, (float)i / 8, 1, -1 };
		cohort_field f[] = {
			{ 0, cohort_i32(i) }, { 1, cohort_f64(i * 0.5) },
			{ 2, cohort_cat(cats[i % 3]) }, { 3, cohort_vec(v, 4) },
			{ 4, cohort_f64(i) }, { 5, cohort_bool(i & 1) },
		};
		must(cohort_put(t, key, (size_t)kl, 1000, f, 6), "put");
	}
	int vcol = 3;
	float cent[8] = { 0, 0, 1, -1, 10, 2, 1, -1 };
	cohort_persona_def def = { &vcol, 1, COHORT_PERSONA_AT_ONCE, 0, 64 };
	must(cohort_persona_upload(t, "m", &def, 2, 4, cent, NULL, NULL),
	     "persona");
	cohort_index_opts io = { COHORT_METRIC_L2, 8, 32, 16, 0, 0 };
	must(cohort_index_create(t, "ix", vcol, &io), "index");
}

/* Send everything there is to send. */
static void drain(conn *c)
{
	size_t len;
	const uint8_t *p = conn_out(c, &len);
	while (len) {
		volatile uint8_t sink = p[0] ^ p[len - 1];
		(void)sink;
		conn_out_consume(c, len);
		p = conn_out(c, &len);
	}
}

/* Process what is in the input, as the loop does; CONN_CLOSE or 0. */
static int step(conn *c)
{
	int rc = conn_process(c);
	if (conn_wrote(c) && cohort_sync_wait(db) < 0)
		return CONN_CLOSE;
	drain(c);
	conn_poll_push(c);
	drain(c);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	build_db();
	env.db = db;
	env.tokens = NULL;
	env.metrics = NULL;
	env.max_frame = 1u << 16;
	env.max_batch = 64;
	env.max_k = 16;
	env.out_limit = 1u << 14;
	env.max_subs = 4;
	env.server_name = "fuzz";
	conn *c = conn_new(&env, "fuzz");
	if (!c) {
		cohort_close(db);
		db = NULL;
		return 0;
	}
	size_t cuts[3] = { size / 3, size - size / 3, size };
	size_t off = 0;
	int rc = 0, stalled = 0;
	for (int i = 0; i < 3 && rc != CONN_CLOSE; i++) {
		while (off < cuts[i] && rc != CONN_CLOSE) {
			size_t room;
			uint8_t *dst = conn_in_space(c, &room);
			size_t n = cuts[i] - off;
			if (n > room)
				n = room;
			if (n == 0) {
				/* a full input behind the output limit: the
				 * loop sends, then processes again; each
				 * round must make room at last */
				if (++stalled > 100000)
					abort();
				rc = step(c);
				continue;
			}
			stalled = 0;
			memcpy(dst, data + off, n);
			conn_in_commit(c, n);
			off += n;
			rc = step(c);
		}
	}
	/* what stayed queued behind the output limit */
	for (int i = 0; i < 64 && rc != CONN_CLOSE; i++) {
		size_t len;
		rc = step(c);
		conn_out(c, &len);
		if (len == 0)
			break;
	}
	conn_free(c);
	/* its workers joined: nothing of this input outlives it */
	cohort_close(db);
	db = NULL;
	return 0;
}
