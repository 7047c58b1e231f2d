/*
 * conn.h -- one client connection of cohortd as a state machine over byte
 * buffers, with no I/O of its own: the event loop (server.c) feeds it the
 * bytes it received and sends the bytes it produces. That split is what
 * lets tests and the connection fuzz target drive a whole connection
 * in-process.
 *
 * A connection owns an input buffer (bounded by the frame limit plus one
 * header), an output buffer (bounded by out_limit: conn_process stops
 * executing requests while more than that waits to be sent, so a client
 * that does not read stalls only itself), its role, and its subscriptions.
 *
 * Threads: a connection is used by one thread at a time (its event loop).
 * Writes run under cohort_sync_defer(true) on that thread: after
 * conn_process returns with conn_wrote() true, the loop must call
 * cohort_sync_wait(db) before sending the output; if that fails, it must
 * close the connection without sending (nothing not durable is
 * acknowledged).
 */
#ifndef COHORT_CONN_H
#define COHORT_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cohort.h"

struct auth_tokens;
struct metrics;

/* What every connection of a server shares (read-only while it runs). */
typedef struct conn_env {
	cohort_db *db;
	const struct auth_tokens *tokens;  /* NULL: no auth (role admin) */
	struct metrics *metrics;           /* may be NULL */
	uint32_t max_frame;                /* bytes of body */
	uint32_t max_batch;
	uint32_t max_k;
	size_t out_limit;                  /* bytes of unsent output */
	uint32_t max_subs;                 /* subscriptions per connection */
	const char *server_name;
} conn_env;

typedef struct conn conn;

/* A new connection; NULL on out of memory. peer is for logs ("1.2.3.4:5"). */
conn *conn_new(const conn_env *env, const char *peer);
void conn_free(conn *c);

/* Where to receive into: *room bytes at the returned pointer (0 when the
 * input is full, which happens only while output is blocked). */
uint8_t *conn_in_space(conn *c, size_t *room);
void conn_in_commit(conn *c, size_t n);

/* Execute every complete request in the input, in order, appending their
 * responses to the output. Returns 0, or CONN_CLOSE when the connection
 * must be closed once its output is sent (malformed or oversized frame,
 * too many failed AUTHs). */
#define CONN_CLOSE 1
int conn_process(conn *c);

/* Whether the last conn_process made writes (then sync before sending). */
bool conn_wrote(const conn *c);

/* Output waiting to be sent, and how much of it was sent. The bytes
 * conn_out hands out stay where they are until conn_out_consume has taken
 * all of them, even if conn_process or conn_poll_push append meanwhile (a
 * send may be in flight on them); only conn_in_space moves or reallocates
 * the input. */
const uint8_t *conn_out(const conn *c, size_t *len);
void conn_out_consume(conn *c, size_t n);

/* Append pushes for subscriptions whose models have new changes; returns
 * whether anything was added. */
bool conn_poll_push(conn *c);
bool conn_has_subs(const conn *c);

/* The connection's role (proto_role): NONE until it authenticates. */
int conn_role(const conn *c);
const char *conn_peer(const conn *c);

#endif /* COHORT_CONN_H */
