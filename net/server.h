/*
 * server.h -- cohortd's event loops: sockets in, conn.c's state machines
 * in the middle, sockets out.
 *
 * A server listens on one address and runs N loop threads, each with its
 * own io_uring ring (or, where io_uring cannot be used, its own epoll
 * set). Every connection lives on one loop for its whole life, so a
 * connection's state needs no lock. What the loops share: the database
 * (thread-safe by itself), the read-only conn_env, the metrics (atomics)
 * and the count of open connections (an atomic).
 *
 * Lifecycle: server_new (binds, so the port is known and errors show
 * before anything runs), server_start (threads), server_stop (from any
 * thread or a signal handler), server_wait (joins; the in-flight requests
 * were answered), server_free.
 */
#ifndef COHORT_SERVER_H
#define COHORT_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"

typedef struct server_config {
	const char *listen;          /* "HOST:PORT", "[v6]:PORT"; port 0: any */
	unsigned nthreads;           /* 0: cores - 1 (at least 1) */
	unsigned max_conns;          /* 0: no limit; beyond: accepted, closed */
	unsigned idle_timeout_ms;    /* 0: never; no bytes either way for so long */
	unsigned auth_timeout_ms;    /* 0: never; still role none after so long */
	unsigned stop_timeout_ms;    /* 0: 5000; the flush on stop is bounded so */
	bool no_uring;               /* the epoll path even where io_uring works */
} server_config;

typedef struct server server;

/*
 * Resolve and bind cfg->listen on every loop (SO_REUSEPORT), set up the
 * rings (or epoll). env must outlive the server. On failure returns a
 * negative COHORT_E* code with the reason in err (err_len bytes):
 * COHORT_EINVAL (bad address), COHORT_EIO (bind, listen), COHORT_ENOMEM.
 */
int server_new(const server_config *cfg, const conn_env *env, server **out,
	       char *err, size_t err_len);

/* The bound port (the real one when cfg->listen asked for port 0). */
int server_port(const server *s);
/* "io_uring" (with the ring mode in parentheses: "defer_taskrun",
 * "coop_taskrun") or "epoll (...why...)". Valid while s lives. */
const char *server_io_path(const server *s);
unsigned server_nthreads(const server *s);

/* Start the loop threads. 0 or COHORT_ENOMEM (thread creation failed). */
int server_start(server *s);

/* Ask the loops to stop: no new connections, the requests already read
 * are answered and their responses flushed (for at most stop_timeout_ms),
 * then every connection is closed. Async-signal-safe; idempotent. */
void server_stop(server *s);

/* Wait for the loops to end. Returns 0, or COHORT_EIO when a loop ended
 * on an error it could not recover from (it is logged). */
int server_wait(server *s);

/* Free a stopped (or never started) server. NULL is a no-op. */
void server_free(server *s);

/* Connections open now, over every loop. */
unsigned server_nconns(const server *s);

/* A plain listening socket (no SO_REUSEPORT) on listen ("HOST:PORT"),
 * for side endpoints such as metrics; *port (may be NULL) gets the bound
 * port. Returns the fd, or COHORT_EINVAL / COHORT_EIO with err filled. */
int server_listen_fd(const char *listen, int *port, char *err,
		     size_t err_len);

/* One line on stderr: "2024-05-01T12:00:00.123Z cohortd: <message>".
 * Thread-safe (one write(2) per line). */
void server_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* COHORT_SERVER_H */
