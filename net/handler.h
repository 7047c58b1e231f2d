/*
 * handler.h -- cohortd's dispatch: one function per opcode, mapping a
 * decoded request onto the embedded API (cohort.h) and encoding its
 * response frame (docs/protocol.md section 4). Internal to the server:
 * conn.c owns a handler per connection and calls it once per request, in
 * order.
 *
 * A handler holds the connection's session state (role, failed AUTHs, its
 * subscriptions) and scratch memory reused from one request to the next
 * (the GET_MANY batch, value and key arrays, the vector buffer), so that
 * GET and GET_MANY allocate nothing once a connection has warmed up.
 *
 * Threads: one thread at a time, as its connection.
 */
#ifndef COHORT_HANDLER_H
#define COHORT_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "proto.h"

typedef struct handler handler;

/* A handler for one connection of env (which must outlive it); NULL on
 * out of memory. Its role starts at PROTO_ROLE_NONE, or PROTO_ROLE_ADMIN
 * when env->tokens is NULL (no auth). */
handler *handler_new(const conn_env *env);
void handler_free(handler *h);

/* The connection's role (proto_role). */
int handler_role(const handler *h);

/* Whether opcode op mutates the database (its acknowledgement must wait
 * for cohort_sync_wait). */
bool handler_op_writes(int op);

/*
 * Execute request r (already checked against the role) and append its
 * response frame to w. a is the arena r was decoded into; the handler may
 * take scratch from it (reset by the caller between requests). A response
 * whose body would exceed env->max_frame is replaced by an ELIMIT error.
 * Returns the response's status (0 or a negative COHORT_E* code); *close
 * is set when the connection must be closed after this response (the
 * third failed AUTH).
 */
int handler_exec(handler *h, const proto_req *r, proto_arena *a,
		 proto_wbuf *w, bool *close);

/* Subscriptions: whether there are any, and append CHANGES pushes for
 * those whose models have new changes while w->len stays under limit
 * bytes. Returns whether anything was appended. */
bool handler_has_subs(const handler *h);
bool handler_push(handler *h, proto_wbuf *w, size_t limit);

/* Connections alive in this process (conn_new/conn_free), for STATS. */
void handler_conn_count(int delta);

#endif /* COHORT_HANDLER_H */
