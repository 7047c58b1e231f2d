/*
 * srvutil.h -- a real cohortd for integration tests: started as a child
 * process ($COHORT_BIN/cohortd, "build" when unset) in a fresh directory
 * under /tmp, on a loopback port it picks itself, with a token file that
 * holds the three tokens below; plus a tiny raw client (proto.h frames
 * over a blocking socket) for tests that must not depend on
 * libcohort-client.
 *
 * Every function fails the running Criterion test (cr_assert) on an
 * unexpected error, with the server's log in the message, so a test reads
 * as its steps.
 *
 *   srv s;
 *   srv_start(&s, NULL);                       // defaults: fsync interval
 *   int fd = srv_connect(&s);
 *   srv_hello_auth(fd, SRV_TOKEN_ADMIN);       // returns the role
 *   ...
 *   cr_assert_eq(srv_stop(&s), 0);             // SIGTERM, exit status
 *   srv_cleanup(&s);                           // removes the directory
 *
 * A test that leaves early still leaves the child behind only until the
 * test process ends: the child gets SIGKILL when its parent dies
 * (PR_SET_PDEATHSIG).
 */
#ifndef COHORT_TEST_SRVUTIL_H
#define COHORT_TEST_SRVUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

/* The tokens of the token file (each 16+ printable bytes). */
#define SRV_TOKEN_READ "read-token-7f3a9c1e5b2d"
#define SRV_TOKEN_WRITE "write-token-4c8e2a6f0d1b"
#define SRV_TOKEN_ADMIN "admin-token-9b1d3f5a7c2e"

typedef struct srv_opts {
	const char *fsync;         /* "always", "interval", "none"; NULL: interval */
	bool memory;               /* --memory instead of a data directory */
	bool no_auth;              /* --no-auth instead of --token-file */
	bool no_uring;
	bool metrics;              /* --metrics 127.0.0.1:0 (see metrics_port) */
	unsigned threads;          /* 0: 2 */
	const char *extra[16];     /* more arguments, NULL-terminated */
} srv_opts;

typedef struct srv {
	pid_t pid;                 /* 0 when not running */
	int port;
	int metrics_port;          /* 0 unless opts.metrics */
	srv_opts opts;
	char dir[64];              /* the test's directory */
	char data_dir[96];         /* dir/data (the --dir) */
	char token_file[96];       /* dir/tokens */
	char port_file[96];        /* dir/port */
	char log_path[96];         /* dir/cohortd.log: the child's stderr */
} srv;

/* Make a directory and token file and start cohortd in it (opts may be
 * NULL); returns once the port file is there (or fails the test). */
void srv_start(srv *s, const srv_opts *opts);
/* Start again on the same directory and options (after stop or kill). */
void srv_restart(srv *s);
/* Run cohortd with argv (NULL-terminated, without the program name) to
 * its end and return its exit status; its stderr goes to the log. For
 * usage tests. */
int srv_run(srv *s, const char *const *argv, int timeout_ms);
/* SIGTERM and wait (10 s at most); returns the exit status (-signal if
 * killed by one). */
int srv_stop(srv *s);
/* SIGKILL and reap. */
void srv_kill(srv *s);
/* Kill if running, remove the directory. */
void srv_cleanup(srv *s);

/* The log so far as a malloc'd string, and whether it contains text. */
char *srv_log(const srv *s);
bool srv_log_has(const srv *s, const char *text);
/* Resident memory of the server in KiB (/proc/pid/status VmRSS). */
long srv_rss_kb(const srv *s);

/* ---- raw client -------------------------------------------------------- */

/* A blocking TCP connection to the server (TCP_NODELAY), with a 10 s
 * receive timeout. */
int srv_connect(const srv *s);
/* Encode r as one frame and append it to w (a growable buffer: start it
 * zeroed, free with proto_wbuf_free). */
void srv_encode(proto_wbuf *w, const proto_req *r);
/* Write all of buf. Returns 0, or -errno. */
int srv_write(int fd, const void *buf, size_t len);
/* Read one frame; body is malloc'd (free it). Returns 0, or -1 on end of
 * stream, error or timeout (timeout_ms; 0: the socket's 10 s). */
int srv_read_frame(int fd, proto_hdr *h, uint8_t **body, int timeout_ms);
/* Send r, read its response; returns its status (fails the test on a
 * missing response or a wrong id). *body (may be NULL) gets the body. */
int srv_call(int fd, const proto_req *r, uint8_t **body, uint32_t *body_len);
/* HELLO then AUTH (token NULL: HELLO only); returns the role. */
int srv_hello_auth(int fd, const char *token);
/* Whether the peer closed fd within timeout_ms (reading and discarding
 * anything that arrives first). */
bool srv_closed_within(int fd, int timeout_ms);

#endif /* COHORT_TEST_SRVUTIL_H */
