/*
 * server.c -- cohortd's event loops (server.h), over io_uring or epoll.
 *
 * Listening: one listening socket, bound without SO_REUSEPORT, and every
 * loop accepts on its own descriptor of it (dup). SO_REUSEPORT (one socket
 * per loop) would avoid the shared accept queue, but it also lets any
 * other process of the same user bind the same address, and the kernel
 * would then quietly send half the connections to another server and its
 * database. With one socket a second cohortd fails with "address in use".
 * Whichever loop is free takes the next connection (each ring has one
 * accept posted; on epoll the socket is registered EPOLLEXCLUSIVE, so one
 * loop is woken per connection).
 *
 * A connection (sconn) lives on one loop. Its state machine is conn.c's;
 * this file moves bytes and keeps these invariants:
 *  - at most one recv and one send in flight; the recv targets
 *    conn_in_space, the send conn_out, so while a recv is in flight the
 *    loop never calls conn_process (it could move the input), and while a
 *    send is in flight never conn_process or conn_poll_push (they could
 *    move the output). Input that arrives during a send waits for it
 *    (need_process); a recv is posted only when none is waiting;
 *  - no recv is posted while the unsent output is over env->out_limit:
 *    a client that does not read stops being read, and its memory stays
 *    bounded by the input buffer plus out_limit plus one response;
 *  - group commit without stopping the loop: one loop iteration takes
 *    every completion (or epoll event) there is and runs the requests;
 *    then, if any of them wrote, one cohort_sync_start asks the log to
 *    make all of them durable, and the connections that wrote are held:
 *    their output is not sent and their further input not run until the
 *    ticket is durable (cohort_sync_check, in ticket order: a FIFO), while
 *    the loop goes on serving everyone else and gathering the next group
 *    as the log writes this one. The log writes the loop's eventfd when a
 *    sync completes. If the sync fails, the held connections are closed
 *    without a word: nothing not durable is acknowledged. Sends are
 *    submitted only in the last phase of an iteration (settle);
 *  - an sconn is freed only in settle, once no operation of it is in
 *    flight, so a completion never finds it gone.
 *
 * Stop: server_stop sets a flag and writes every loop's eventfd. A
 * stopping loop closes its listening socket, cancels its connections'
 * recvs (a recv that had already taken bytes completes with them and
 * those requests run), answers what it read, flushes, and closes each
 * connection when its output is sent; at stop_timeout_ms the rest are
 * shut down.
 *
 * Threads: a loop's structures belong to its thread. Shared: the server's
 * connection count and stop flag (atomics), the database and the metrics
 * (thread-safe), env (read-only).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "proto.h"
#include "server.h"

#define SWEEP_MS 100              /* timeouts, accept retries */
#define PUSH_MS 5                 /* subscriptions */
#define STOP_TIMEOUT_DEFAULT 5000
#define EPOLL_READS 16            /* recvs per connection per event */
#define RING_ENTRIES 512
#define RING_CQ_ENTRIES 8192

/* io_uring user_data: a pointer (8-byte aligned) with the op in its low
 * bits. */
enum { OP_RECV = 1, OP_SEND, OP_ACCEPT, OP_WAKE, OP_CANCEL };
#define UD(p, op) ((uint64_t)(uintptr_t)(p) | (uint64_t)(op))
#define UD_PTR(u) ((void *)(uintptr_t)((u) & ~(uint64_t)7))
#define UD_OP(u) ((int)((u) & 7))

struct loop;

typedef struct sconn {
	struct loop *lp;
	conn *c;
	int fd;
	uint32_t ep_mask;          /* epoll: the events registered */
	bool recv_busy;            /* io_uring: a recv in flight */
	bool send_busy;            /* a send in flight (epoll: waiting for
	                              EPOLLOUT with output left) */
	bool need_process;         /* input committed, not run yet */
	bool stalled;              /* epoll: conn_in_space had no room (its
	                              output is over the limit) */
	bool wrote;                /* ran a write since the last sync */
	bool eof;                  /* nothing more will be read */
	bool close_after_send;     /* conn_process said CONN_CLOSE */
	bool closing;              /* closing: no more I/O, free when idle */
	bool dirty;                /* on the loop's dirty list */
	bool subs;                 /* counted in lp->nsubs */
	bool held_input;           /* input arrived while held */
	uint64_t held;             /* sync ticket its output waits for; 0:
	                              not held (on the loop's held FIFO) */
	int64_t born_ms, active_ms;
	struct sconn *prev, *next; /* the loop's connections */
	struct sconn *dnext;       /* the loop's dirty list */
	struct sconn *hnext;       /* the loop's held FIFO */
} sconn;

typedef struct loop {
	struct server *s;
	unsigned idx;
	int lfd;                   /* listening socket; -1 once closed */
	int efd;                   /* eventfd: wake-up for stop, and the
	                              log's word that a sync completed */
	bool notified;             /* efd registered with the log (always,
	                              with a database) */
	bool uring;
	struct io_uring ring;
	bool ring_ok;
	bool ring_disabled;        /* created R_DISABLED: enable in the thread */
	bool poll_first;           /* recv may carry IORING_RECVSEND_POLL_FIRST */
	int epfd;
	uint64_t wake_buf;
	bool accept_busy, wake_busy;
	bool listen_paused;        /* out of fds: retry at accept_retry_ms */
	int64_t accept_retry_ms;
	sconn *conns;
	unsigned nconns, nsubs;
	sconn *dirty;              /* touched this iteration */
	sconn *pending;            /* epoll: run again next iteration */
	sconn *held_head, *held_tail;  /* waiting for their sync, in ticket
	                              order */
	bool stopping, forced;
	int64_t stop_deadline;
	int64_t next_sweep, next_push;
	int err;
	pthread_t th;
	bool th_started;
} loop;

struct server {
	server_config cfg;
	const conn_env *env;
	unsigned nloops;
	loop *loops;
	int port;
	char io_path[192];
	const char *ring_mode;        /* ring_modes[].name of the loops' rings */
	atomic_uint nconns;
	atomic_bool stop;
	atomic_llong refuse_log_ms;   /* when the last refusal was logged */
	atomic_uint refused;          /* refusals since then */
};

/* ------------------------------------------------------------------------
 * Logs and time
 * ------------------------------------------------------------------------ */
void server_log(const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof line,
			 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ cohortd: ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec,
			 ts.tv_nsec / 1000000);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof line - 2)
		len = sizeof line - 2;
	line[len++] = '\n';
	ssize_t w = write(2, line, len);
	(void)w;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------
 * Connections, common to both paths
 * ------------------------------------------------------------------------ */
static void mark_dirty(sconn *sc)
{
	if (sc->dirty)
		return;
	sc->dirty = true;
	sc->dnext = sc->lp->dirty;
	sc->lp->dirty = sc;
}

static size_t out_len(const sconn *sc)
{
	size_t len = 0;
	conn_out(sc->c, &len);
	return len;
}

static void set_subs(sconn *sc, bool on)
{
	if (sc->subs == on)
		return;
	sc->subs = on;
	if (on)
		sc->lp->nsubs++;
	else
		sc->lp->nsubs--;
}

/* Run the complete requests of sc's input. */
static void process(sconn *sc)
{
	sc->need_process = false;
	if (sc->close_after_send || sc->closing)
		return;
	if (sc->held) {
		/* its output waits for a sync: answers come in order, so
		 * nothing behind it runs before that is out */
		sc->held_input = true;
		return;
	}
	int rc = conn_process(sc->c);
	if (conn_wrote(sc->c))
		sc->wrote = true;
	if (rc != 0)
		sc->close_after_send = true;
	set_subs(sc, conn_has_subs(sc->c));
	mark_dirty(sc);
}

/* Close without sending anything more: in-flight operations are cut
 * short by the shutdown; settle frees sc once they have completed. */
static void start_close(sconn *sc)
{
	if (sc->closing)
		return;
	sc->closing = true;
	set_subs(sc, false);
	if (sc->recv_busy || sc->send_busy)
		shutdown(sc->fd, SHUT_RDWR);
	mark_dirty(sc);
}

static void finalize(sconn *sc)
{
	loop *lp = sc->lp;
	if (sc->prev)
		sc->prev->next = sc->next;
	else
		lp->conns = sc->next;
	if (sc->next)
		sc->next->prev = sc->prev;
	lp->nconns--;
	close(sc->fd);
	conn_free(sc->c);
	if (lp->s->env->metrics)
		metrics_conn(lp->s->env->metrics, -1);
	atomic_fetch_sub(&lp->s->nconns, 1);
	free(sc);
}

static void count_bytes(loop *lp, uint64_t in, uint64_t out)
{
	if (lp->s->env->metrics)
		metrics_bytes(lp->s->env->metrics, in, out);
}

/* Refusals are logged at most once a second, with how many there were. */
static void log_refusal(server *s, const char *peer)
{
	int64_t now = now_ms();
	unsigned n = atomic_fetch_add(&s->refused, 1) + 1;
	long long last = atomic_load(&s->refuse_log_ms);
	if (now - last < 1000 ||
	    !atomic_compare_exchange_strong(&s->refuse_log_ms, &last, now))
		return;
	atomic_fetch_sub(&s->refused, n);
	char more[64] = "";
	if (n > 1)
		snprintf(more, sizeof more, " (%u refused since the last "
			 "such line)", n);
	server_log("connection from %s refused: %u connections open, "
		   "--max-conns %u%s", peer, atomic_load(&s->nconns),
		   s->cfg.max_conns, more);
}

static void peer_name(int fd, char *out, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
			port = ntohs(a->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
			port = ntohs(a->sin6_port);
		}
	}
	snprintf(out, len, ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d",
		 host, port);
}

/* A new connection on lp, or a refusal. Returns sc or NULL (fd closed). */
static sconn *new_conn(loop *lp, int fd)
{
	server *s = lp->s;
	char peer[INET6_ADDRSTRLEN + 16];
	peer_name(fd, peer, sizeof peer);
	unsigned n = atomic_fetch_add(&s->nconns, 1);
	if (lp->stopping || (s->cfg.max_conns && n >= s->cfg.max_conns)) {
		atomic_fetch_sub(&s->nconns, 1);
		close(fd);
		if (!lp->stopping)
			log_refusal(s, peer);
		return NULL;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	sconn *sc = calloc(1, sizeof *sc);
	conn *c = sc ? conn_new(s->env, peer) : NULL;
	if (!c) {
		atomic_fetch_sub(&s->nconns, 1);
		free(sc);
		close(fd);
		server_log("connection from %s refused: out of memory", peer);
		return NULL;
	}
	sc->lp = lp;
	sc->c = c;
	sc->fd = fd;
	sc->born_ms = sc->active_ms = now_ms();
	sc->next = lp->conns;
	if (lp->conns)
		lp->conns->prev = sc;
	lp->conns = sc;
	lp->nconns++;
	if (s->env->metrics)
		metrics_conn(s->env->metrics, 1);
	mark_dirty(sc);
	return sc;
}

/* Timeouts of one connection; returns whether it was closed. */
static bool sweep_conn(sconn *sc, int64_t now)
{
	const server_config *cfg = &sc->lp->s->cfg;
	if (sc->closing)
		return false;
	if (cfg->auth_timeout_ms && conn_role(sc->c) == PROTO_ROLE_NONE &&
	    now - sc->born_ms >= cfg->auth_timeout_ms) {
		server_log("%s: closed, not authenticated after %u ms",
			   conn_peer(sc->c), cfg->auth_timeout_ms);
		start_close(sc);
		return true;
	}
	if (cfg->idle_timeout_ms && now - sc->active_ms >= cfg->idle_timeout_ms) {
		server_log("%s: closed, idle for %u s", conn_peer(sc->c),
			   cfg->idle_timeout_ms / 1000);
		start_close(sc);
		return true;
	}
	return false;
}

/* ------------------------------------------------------------------------
 * io_uring path
 * ------------------------------------------------------------------------ */
static struct io_uring_sqe *sqe_get(loop *lp)
{
	struct io_uring_sqe *sqe;
	while (!(sqe = io_uring_get_sqe(&lp->ring)))
		io_uring_submit(&lp->ring);
	return sqe;
}

static void ur_post_accept(loop *lp)
{
	struct io_uring_sqe *sqe = sqe_get(lp);
	io_uring_prep_accept(sqe, lp->lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, UD(lp, OP_ACCEPT));
	lp->accept_busy = true;
}

static void ur_post_wake(loop *lp)
{
	struct io_uring_sqe *sqe = sqe_get(lp);
	io_uring_prep_read(sqe, lp->efd, &lp->wake_buf, sizeof lp->wake_buf, 0);
	io_uring_sqe_set_data64(sqe, UD(lp, OP_WAKE));
	lp->wake_busy = true;
}

static void ur_cancel(loop *lp, uint64_t ud)
{
	struct io_uring_sqe *sqe = sqe_get(lp);
	io_uring_prep_cancel64(sqe, ud, 0);
	io_uring_sqe_set_data64(sqe, UD(NULL, OP_CANCEL));
}

/* The last phase of an iteration for sc: free it, or send its output
 * and receive more. */
static void ur_settle(sconn *sc)
{
	loop *lp = sc->lp;
	if (sc->held)
		return;         /* nothing in flight; on the held FIFO */
	if (sc->closing) {
		if (!sc->recv_busy && !sc->send_busy)
			finalize(sc);
		return;
	}
	size_t len = 0;
	const uint8_t *out = conn_out(sc->c, &len);
	if (!sc->send_busy && len > 0) {
		struct io_uring_sqe *sqe = sqe_get(lp);
		io_uring_prep_send(sqe, sc->fd, out, len, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, UD(sc, OP_SEND));
		sc->send_busy = true;
	} else if (!sc->send_busy && len == 0 && !sc->recv_busy &&
		   (sc->close_after_send || sc->eof)) {
		finalize(sc);           /* nothing in flight: done */
		return;
	}
	if (!sc->recv_busy && !sc->need_process && !sc->eof &&
	    !sc->close_after_send && !lp->stopping &&
	    len <= lp->s->env->out_limit) {
		size_t room = 0;
		uint8_t *in = conn_in_space(sc->c, &room);
		if (room > 0) {
			struct io_uring_sqe *sqe = sqe_get(lp);
			io_uring_prep_recv(sqe, sc->fd, in, room, 0);
			/* a response just went out: the client has yet to read
			 * it, so its next request is not there; arm the poll
			 * without first trying a recv that would fail */
			if (lp->poll_first && sc->send_busy)
				sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
			io_uring_sqe_set_data64(sqe, UD(sc, OP_RECV));
			sc->recv_busy = true;
		}
	}
}

static void ur_recv_done(sconn *sc, int res)
{
	sc->recv_busy = false;
	mark_dirty(sc);
	if (sc->closing)
		return;
	if (res > 0) {
		conn_in_commit(sc->c, (size_t)res);
		count_bytes(sc->lp, (uint64_t)res, 0);
		sc->active_ms = now_ms();
		if (sc->send_busy)
			sc->need_process = true;
		else
			process(sc);
		return;
	}
	if (res == -EINTR || res == -EAGAIN || res == -ENOBUFS)
		return;                 /* settle posts it again */
	if (res == 0 || res == -ECANCELED) {
		sc->eof = true;         /* answer what was read, then close */
		return;
	}
	start_close(sc);                /* ECONNRESET and the like */
}

static void ur_send_done(sconn *sc, int res)
{
	sc->send_busy = false;
	mark_dirty(sc);
	if (sc->closing)
		return;
	if (res < 0) {
		if (res == -EINTR || res == -EAGAIN)
			return;
		start_close(sc);
		return;
	}
	conn_out_consume(sc->c, (size_t)res);
	count_bytes(sc->lp, 0, (uint64_t)res);
	sc->active_ms = now_ms();
	/* input that waited for this send, or requests conn_process left
	 * behind a full output: run them now (no recv in flight; a run with
	 * nothing to do costs a header check) */
	if (!sc->recv_busy)
		process(sc);
}

static void begin_stop(loop *lp, int64_t now);

static void ur_cqe(loop *lp, const struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	int res = cqe->res;
	switch (UD_OP(ud)) {
	case OP_RECV:
		ur_recv_done(UD_PTR(ud), res);
		break;
	case OP_SEND:
		ur_send_done(UD_PTR(ud), res);
		break;
	case OP_ACCEPT:
		lp->accept_busy = false;
		if (res >= 0) {
			new_conn(lp, res);
		} else if (res == -EMFILE || res == -ENFILE ||
			   res == -ENOMEM || res == -ENOBUFS) {
			server_log("accept: %s; retrying in %d ms",
				   strerror(-res), SWEEP_MS);
			lp->listen_paused = true;
			lp->accept_retry_ms = now_ms() + SWEEP_MS;
		} else if (res != -ECANCELED && res != -EINTR &&
			   res != -ECONNABORTED && res != -EAGAIN) {
			server_log("accept: %s", strerror(-res));
		}
		if (lp->stopping) {
			if (lp->lfd >= 0)
				close(lp->lfd);
			lp->lfd = -1;
		} else if (!lp->listen_paused) {
			ur_post_accept(lp);
		}
		break;
	case OP_WAKE:
		/* stop, or a sync completed (flush releases its held) */
		lp->wake_busy = false;
		if (atomic_load(&lp->s->stop))
			begin_stop(lp, now_ms());
		ur_post_wake(lp);
		break;
	default:
		break;                  /* cancels */
	}
}

/* ------------------------------------------------------------------------
 * epoll path
 * ------------------------------------------------------------------------ */
static void ep_update(sconn *sc)
{
	loop *lp = sc->lp;
	uint32_t want = 0;
	/* level-triggered: reading must stop while there is no room (no recv
	 * is ever in flight here, so asking conn_in_space is harmless) */
	size_t room = 0;
	conn_in_space(sc->c, &room);
	sc->stalled = room == 0;
	if (!sc->eof && !sc->close_after_send && !lp->stopping &&
	    !sc->stalled && !sc->need_process)
		want |= EPOLLIN | EPOLLRDHUP;
	if (sc->send_busy)
		want |= EPOLLOUT;
	if (want == sc->ep_mask)
		return;
	struct epoll_event ev = { .events = want, .data.ptr = sc };
	epoll_ctl(lp->epfd, EPOLL_CTL_MOD, sc->fd, &ev);
	sc->ep_mask = want;
}

static void ep_read(sconn *sc)
{
	for (int i = 0; i < EPOLL_READS && !sc->eof && !sc->closing &&
	     !sc->close_after_send; i++) {
		size_t room = 0;
		uint8_t *in = conn_in_space(sc->c, &room);
		if (room == 0)
			break;
		ssize_t n = recv(sc->fd, in, room, MSG_DONTWAIT);
		if (n > 0) {
			conn_in_commit(sc->c, (size_t)n);
			count_bytes(sc->lp, (uint64_t)n, 0);
			sc->active_ms = now_ms();
			process(sc);
			if ((size_t)n < room)
				break;
			continue;
		}
		if (n == 0) {
			sc->eof = true;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			start_close(sc);
		break;
	}
	mark_dirty(sc);
}

static void ep_settle(sconn *sc)
{
	loop *lp = sc->lp;
	if (sc->held) {
		if (!sc->closing)
			ep_update(sc);  /* EPOLLOUT off once it fired */
		return;
	}
	if (sc->closing) {
		finalize(sc);
		return;
	}
	size_t len = 0;
	const uint8_t *out = conn_out(sc->c, &len);
	/* conn_out may hand out more once what it gave is consumed */
	while (!sc->send_busy && len > 0) {
		ssize_t n = send(sc->fd, out, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			finalize(sc);
			return;
		}
		if (n <= 0) {
			sc->send_busy = true;   /* wait for EPOLLOUT */
			break;
		}
		conn_out_consume(sc->c, (size_t)n);
		count_bytes(lp, 0, (uint64_t)n);
		sc->active_ms = now_ms();
		out = conn_out(sc->c, &len);
		/* requests left behind a full output run next iteration:
		 * their writes need the next group commit before they are
		 * sent */
		if (sc->stalled && !sc->need_process) {
			sc->need_process = true;
			sc->dnext = lp->pending;
			lp->pending = sc;
		}
	}
	if (!sc->send_busy && len == 0 && !sc->need_process &&
	    (sc->close_after_send || sc->eof)) {
		finalize(sc);
		return;
	}
	ep_update(sc);
}

static void ep_accept(loop *lp)
{
	for (int i = 0; i < 64 && lp->lfd >= 0; i++) {
		int fd = accept4(lp->lfd, NULL, NULL,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			sconn *sc = new_conn(lp, fd);
			if (sc) {
				struct epoll_event ev = {
					.events = EPOLLIN | EPOLLRDHUP,
					.data.ptr = sc };
				sc->ep_mask = ev.events;
				if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd, &ev))
					start_close(sc);
			}
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOMEM ||
		    errno == ENOBUFS) {
			server_log("accept: %s; retrying in %d ms",
				   strerror(errno), SWEEP_MS);
			epoll_ctl(lp->epfd, EPOLL_CTL_DEL, lp->lfd, NULL);
			lp->listen_paused = true;
			lp->accept_retry_ms = now_ms() + SWEEP_MS;
		} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
			server_log("accept: %s", strerror(errno));
		}
		break;
	}
}

/* ------------------------------------------------------------------------
 * The loop, common to both paths
 * ------------------------------------------------------------------------ */
static void begin_stop(loop *lp, int64_t now)
{
	if (lp->stopping)
		return;
	lp->stopping = true;
	unsigned t = lp->s->cfg.stop_timeout_ms;
	lp->stop_deadline = now + (t ? t : STOP_TIMEOUT_DEFAULT);
	if (lp->uring) {
		if (lp->accept_busy)
			ur_cancel(lp, UD(lp, OP_ACCEPT));
		else if (lp->lfd >= 0) {
			close(lp->lfd);
			lp->lfd = -1;
		}
	} else if (lp->lfd >= 0) {
		close(lp->lfd);
		lp->lfd = -1;
	}
	for (sconn *sc = lp->conns; sc; sc = sc->next) {
		if (sc->closing)
			continue;
		if (lp->uring) {
			if (sc->recv_busy)
				ur_cancel(lp, UD(sc, OP_RECV));
		} else {
			ep_read(sc);    /* what the socket already holds */
		}
		sc->eof = true;
		mark_dirty(sc);
	}
}

static void timers(loop *lp, int64_t now)
{
	if (!lp->stopping && atomic_load(&lp->s->stop))
		begin_stop(lp, now);
	if (lp->nsubs && now >= lp->next_push) {
		size_t limit = lp->s->env->out_limit;
		for (sconn *sc = lp->conns; sc; sc = sc->next)
			if (sc->subs && !sc->closing && !sc->send_busy &&
			    out_len(sc) <= limit && conn_poll_push(sc->c))
				mark_dirty(sc);
		lp->next_push = now + PUSH_MS;
	}
	if (now >= lp->next_sweep) {
		for (sconn *sc = lp->conns; sc; sc = sc->next)
			sweep_conn(sc, now);
		if (lp->listen_paused && now >= lp->accept_retry_ms &&
		    !lp->stopping && lp->lfd >= 0) {
			lp->listen_paused = false;
			if (lp->uring) {
				ur_post_accept(lp);
			} else {
				struct epoll_event ev = {
					.events = EPOLLIN | EPOLLEXCLUSIVE,
					.data.ptr = NULL };
				epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->lfd, &ev);
			}
		}
		lp->next_sweep = now + SWEEP_MS;
	}
	if (lp->stopping && !lp->forced && now >= lp->stop_deadline) {
		lp->forced = true;
		if (lp->nconns)
			server_log("stop: %u connections still had output "
				   "to send at the stop timeout; closing them",
				   lp->nconns);
		for (sconn *sc = lp->conns; sc; sc = sc->next)
			start_close(sc);
	}
}

/* ms until the next timer is due */
static int next_due(const loop *lp, int64_t now)
{
	int64_t due = lp->next_sweep;
	if (lp->nsubs && lp->next_push < due)
		due = lp->next_push;
	if (lp->stopping && !lp->forced && lp->stop_deadline < due)
		due = lp->stop_deadline;
	if (lp->pending)
		due = now;
	return due <= now ? 0 : (int)(due - now);
}

static void log_sync_failed(int rc)
{
	server_log("sync of the log failed (%s: %s): closing the connections "
		   "whose writes it held", cohort_strerror(rc),
		   cohort_errdetail());
}

static void hold(sconn *sc, uint64_t ticket)
{
	loop *lp = sc->lp;
	sc->held = ticket;
	sc->hnext = NULL;
	if (lp->held_tail)
		lp->held_tail->hnext = sc;
	else
		lp->held_head = sc;
	lp->held_tail = sc;
}

/* Let go of the held connections whose sync is done (marked dirty, so
 * that settle sends their output); close them all if it failed. */
static void release_held(loop *lp)
{
	bool logged = false;
	while (lp->held_head) {
		sconn *sc = lp->held_head;
		int rc = cohort_sync_check(lp->s->env->db, sc->held);
		if (rc == 0)
			break;          /* later tickets are not done either */
		lp->held_head = sc->hnext;
		if (!lp->held_head)
			lp->held_tail = NULL;
		sc->held = 0;
		mark_dirty(sc);
		if (rc < 0) {
			if (!logged)
				log_sync_failed(rc);
			logged = true;
			start_close(sc);
		} else if (sc->held_input) {
			sc->held_input = false;
			if (lp->uring && (sc->recv_busy || sc->send_busy))
				sc->need_process = true;
			else
				process(sc);
		}
	}
}

/* The group commit, then every touched connection's last phase. */
static void flush(loop *lp)
{
	release_held(lp);
	sconn *list = lp->dirty;
	lp->dirty = NULL;
	bool any = false;
	for (sconn *sc = list; sc; sc = sc->dnext)
		any |= sc->wrote && !sc->closing;
	int rc = 0;
	uint64_t ticket = 0;
	if (any) {
		rc = cohort_sync_start(lp->s->env->db, lp->efd, &ticket);
		if (rc)
			log_sync_failed(rc);
	}
	while (list) {
		sconn *sc = list;
		list = sc->dnext;
		if (sc->wrote) {
			sc->wrote = false;
			if (rc)
				start_close(sc);  /* still marked: stays off lists */
			else if (ticket && !sc->closing)
				hold(sc, ticket);
		}
		sc->dirty = false;
		if (lp->uring)
			ur_settle(sc);
		else
			ep_settle(sc);
	}
}

static bool loop_done(const loop *lp)
{
	return lp->stopping && !lp->conns && !lp->accept_busy &&
	       !lp->dirty && !lp->pending && !lp->held_head;
}

static void uring_run(loop *lp)
{
	ur_post_accept(lp);
	ur_post_wake(lp);
	int errors = 0;
	while (!loop_done(lp)) {
		int64_t now = now_ms();
		int ms = next_due(lp, now);
		struct __kernel_timespec ts = { .tv_sec = ms / 1000,
						.tv_nsec = (ms % 1000) * 1000000L };
		struct io_uring_cqe *cqe = NULL;
		int rc = io_uring_submit_and_wait_timeout(&lp->ring, &cqe, 1,
							  &ts, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY &&
		    rc != -EAGAIN) {
			if (errors++ == 0)
				server_log("loop %u: io_uring wait: %s; stopping",
					   lp->idx, strerror(-rc));
			lp->err = COHORT_EIO;
			server_stop(lp->s);
			if (errors > 1000)
				break;
		}
		unsigned head, n = 0;
		io_uring_for_each_cqe(&lp->ring, head, cqe) {
			ur_cqe(lp, cqe);
			n++;
		}
		io_uring_cq_advance(&lp->ring, n);
		timers(lp, now_ms());
		flush(lp);
	}
	/* a canceled wake read may still be in flight: let it finish before
	 * the ring (and lp->wake_buf) go away */
	if (lp->wake_busy) {
		uint64_t one = 1;
		ssize_t w = write(lp->efd, &one, sizeof one);
		(void)w;
		while (lp->wake_busy) {
			struct io_uring_cqe *cqe;
			if (io_uring_submit_and_wait(&lp->ring, 1) < 0)
				break;
			unsigned head, n = 0;
			io_uring_for_each_cqe(&lp->ring, head, cqe) {
				if (UD_OP(io_uring_cqe_get_data64(cqe)) == OP_WAKE)
					lp->wake_busy = false;
				n++;
			}
			io_uring_cq_advance(&lp->ring, n);
		}
	}
}

static void epoll_run(loop *lp)
{
	struct epoll_event evs[256];
	while (!loop_done(lp)) {
		int ms = next_due(lp, now_ms());
		int n = epoll_wait(lp->epfd, evs, 256, ms);
		if (n < 0) {
			if (errno != EINTR) {
				server_log("loop %u: epoll_wait: %s; stopping",
					   lp->idx, strerror(errno));
				lp->err = COHORT_EIO;
				server_stop(lp->s);
			}
			n = 0;
		}
		/* requests that waited for their connection's output */
		sconn *p = lp->pending;
		lp->pending = NULL;
		while (p) {
			sconn *next = p->dnext;
			process(p);             /* marks it dirty */
			p = next;
		}
		for (int i = 0; i < n; i++) {
			void *ptr = evs[i].data.ptr;
			if (ptr == NULL) {
				ep_accept(lp);
			} else if (ptr == (void *)lp) {
				uint64_t v;
				ssize_t r = read(lp->efd, &v, sizeof v);
				(void)r;
				if (atomic_load(&lp->s->stop))
					begin_stop(lp, now_ms());
			} else {
				sconn *sc = ptr;
				uint32_t e = evs[i].events;
				if (sc->closing)
					continue;
				if (e & EPOLLOUT) {
					sc->send_busy = false;
					mark_dirty(sc);
				}
				if (e & (EPOLLIN | EPOLLHUP | EPOLLERR |
					 EPOLLRDHUP))
					ep_read(sc);
			}
		}
		timers(lp, now_ms());
		flush(lp);
	}
}

static void *loop_main(void *arg)
{
	loop *lp = arg;
	char name[16];
	snprintf(name, sizeof name, "cohortd-loop%u", lp->idx);
	pthread_setname_np(pthread_self(), name);
	cohort_sync_defer(true);
	int64_t now = now_ms();
	lp->next_sweep = now + SWEEP_MS;
	lp->next_push = now + PUSH_MS;
	if (lp->ring_disabled) {
		/* SINGLE_ISSUER binds the ring to the thread that enables
		 * it. The system call, not io_uring_enable_rings: Debian's
		 * liburing 2.3 declares that one but does not export it. */
		long rc = syscall(__NR_io_uring_register, lp->ring.ring_fd,
				  IORING_REGISTER_ENABLE_RINGS, NULL, 0);
		if (rc < 0) {
			server_log("loop %u: io_uring enable: %s; stopping",
				   lp->idx, strerror(errno));
			lp->err = COHORT_EIO;
			server_stop(lp->s);
			return NULL;
		}
	}
	if (lp->uring) {
		/* io_uring_enter by a registered index skips the fd lookup
		 * of every call; the registration is this thread's, so it is
		 * undone here too. Where refused, the plain fd serves. */
		bool reg = io_uring_register_ring_fd(&lp->ring) == 1;
		uring_run(lp);
		if (reg)
			io_uring_unregister_ring_fd(&lp->ring);
	} else {
		epoll_run(lp);
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * Setup
 * ------------------------------------------------------------------------ */
static int split_listen(const char *listen, char *host, size_t host_len,
			char *port, size_t port_len)
{
	const char *colon;
	if (listen[0] == '[') {
		const char *end = strchr(listen, ']');
		if (!end || end[1] != ':')
			return -1;
		if ((size_t)(end - listen - 1) >= host_len)
			return -1;
		memcpy(host, listen + 1, (size_t)(end - listen - 1));
		host[end - listen - 1] = 0;
		colon = end + 1;
	} else {
		colon = strrchr(listen, ':');
		if (!colon || (size_t)(colon - listen) >= host_len)
			return -1;
		memcpy(host, listen, (size_t)(colon - listen));
		host[colon - listen] = 0;
	}
	const char *p = colon + 1;
	if (!*p || strlen(p) >= port_len)
		return -1;
	char *end;
	long v = strtol(p, &end, 10);
	if (*end || v < 0 || v > 65535)
		return -1;
	snprintf(port, port_len, "%ld", v);
	return 0;
}

/* A listening socket on ai with port (0: ai's own); -errno on failure. */
static int listen_on(const struct addrinfo *ai, int port)
{
	struct sockaddr_storage ss;
	memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
	if (port) {
		if (ss.ss_family == AF_INET)
			((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
		else
			((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC,
			ai->ai_protocol);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&ss, ai->ai_addrlen) ||
	    listen(fd, 4096)) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static int bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl))
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Why io_uring cannot serve the loops ("" when it can). */
static void uring_probe(char *why, size_t len)
{
	why[0] = 0;
	struct io_uring ring;
	int rc = io_uring_queue_init(8, &ring, 0);
	if (rc) {
		snprintf(why, len, "io_uring unavailable: %s%s", strerror(-rc),
			 rc == -EPERM ? " (kernel.io_uring_disabled?)" : "");
		return;
	}
	struct io_uring_probe *p = io_uring_get_probe_ring(&ring);
	static const struct { int op; const char *name; } need[] = {
		{ IORING_OP_ACCEPT, "accept" }, { IORING_OP_RECV, "recv" },
		{ IORING_OP_SEND, "send" }, { IORING_OP_READ, "read" },
		{ IORING_OP_ASYNC_CANCEL, "cancel" } };
	if (!p) {
		snprintf(why, len, "io_uring probe failed");
	} else {
		for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
			if (!io_uring_opcode_supported(p, need[i].op)) {
				snprintf(why, len, "io_uring lacks %s",
					 need[i].name);
				break;
			}
		io_uring_free_probe(p);
	}
	io_uring_queue_exit(&ring);
}

/* The rings' setup, cheapest first; a kernel that refuses one (EINVAL)
 * gets the next. DEFER_TASKRUN (6.1) runs completion work only when the
 * loop thread enters the kernel to wait, in one batch, instead of
 * interrupting it (an IPI or a signal-like notification) while it runs
 * requests; it needs SINGLE_ISSUER, which binds the ring to one thread:
 * the ring is created disabled here and enabled by its loop thread.
 * COOP_TASKRUN (5.19) at least avoids the interrupts. POLL_FIRST for
 * recv (5.19) comes with the first mode only, the one whose kernel surely
 * has it. */
static const struct {
	unsigned flags;
	bool poll_first;
	const char *name;
} ring_modes[] = {
	{ IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
	  IORING_SETUP_R_DISABLED, true, "io_uring (defer_taskrun)" },
	{ IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, false,
	  "io_uring (coop_taskrun)" },
	{ 0, false, "io_uring" },
};

static int loop_init(server *s, loop *lp, char *err, size_t err_len)
{
	/* blocking: an io_uring read of a non-blocking fd would not wait */
	lp->efd = eventfd(0, EFD_CLOEXEC);
	if (lp->efd < 0) {
		snprintf(err, err_len, "eventfd: %s", strerror(errno));
		return COHORT_EIO;
	}
	/* the log's word that a sync completed comes on the wake-up fd:
	 * registered here, so that a server that could not is not started
	 * (held connections would wait for some other wake-up) */
	if (s->env->db) {
		int rc = cohort_sync_notify(s->env->db, lp->efd, true);
		if (rc) {
			snprintf(err, err_len, "log notification of loop %u: "
				 "%s", lp->idx, cohort_errdetail());
			return rc;
		}
		lp->notified = true;
	}
	if (lp->uring) {
		int rc = -EINVAL;
		for (size_t i = 0; i < sizeof ring_modes / sizeof ring_modes[0];
		     i++) {
			struct io_uring_params p;
			memset(&p, 0, sizeof p);
			p.flags = IORING_SETUP_CQSIZE | ring_modes[i].flags;
			p.cq_entries = RING_CQ_ENTRIES;
			rc = io_uring_queue_init_params(RING_ENTRIES, &lp->ring,
							&p);
			if (rc == -EINVAL)
				continue;       /* a kernel without the flags */
			if (rc == 0) {
				lp->ring_ok = true;
				lp->ring_disabled = ring_modes[i].flags &
						    IORING_SETUP_R_DISABLED;
				lp->poll_first = ring_modes[i].poll_first;
				s->ring_mode = ring_modes[i].name;
			}
			break;
		}
		if (rc) {
			snprintf(err, err_len, "io_uring ring %u: %s", lp->idx,
				 strerror(-rc));
			return COHORT_EIO;
		}
		return 0;
	}
	lp->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (lp->epfd < 0) {
		snprintf(err, err_len, "epoll: %s", strerror(errno));
		return COHORT_EIO;
	}
	/* the loops share one listening socket: wake one of them per
	 * connection, not all */
	struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE,
				  .data.ptr = NULL };
	struct epoll_event wev = { .events = EPOLLIN, .data.ptr = lp };
	if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->lfd, &ev) ||
	    epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->efd, &wev)) {
		snprintf(err, err_len, "epoll_ctl: %s", strerror(errno));
		return COHORT_EIO;
	}
	return 0;
}

static int resolve(const char *listen, struct addrinfo **res, char *err,
		   size_t err_len)
{
	char host[256], port[16];
	if (!listen || split_listen(listen, host, sizeof host, port,
				    sizeof port)) {
		snprintf(err, err_len, "listen address '%s': expected HOST:PORT "
			 "(or [IPv6]:PORT) with a port of 0 to 65535",
			 listen ? listen : "");
		return COHORT_EINVAL;
	}
	struct addrinfo hints;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, res);
	if (gai) {
		snprintf(err, err_len, "listen address '%s': %s", listen,
			 gai_strerror(gai));
		return COHORT_EINVAL;
	}
	return 0;
}

int server_listen_fd(const char *listen, int *port, char *err,
		     size_t err_len)
{
	struct addrinfo *res = NULL;
	int rc = resolve(listen, &res, err, err_len);
	if (rc)
		return rc;
	int fd = -EINVAL;
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next)
		if ((fd = listen_on(ai, 0)) >= 0)
			break;
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, err_len, "cannot listen on %s: %s", listen,
			 strerror(-fd));
		return COHORT_EIO;
	}
	if (port)
		*port = bound_port(fd);
	return fd;
}

int server_new(const server_config *cfg, const conn_env *env, server **out,
	       char *err, size_t err_len)
{
	*out = NULL;
	struct addrinfo *res = NULL;
	int rc = resolve(cfg->listen, &res, err, err_len);
	if (rc)
		return rc;
	server *s = calloc(1, sizeof *s);
	unsigned n = cfg->nthreads;
	if (n == 0) {
		/* one core is left to what is not a loop: the log's writer
		 * and its io-wq fsync worker, snapshots, index builds, and on
		 * a small machine the clients beside it (on 2 cores, where
		 * the load generator shared the machine, one loop beat two:
		 * docs/benchmarks.md, net) */
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		n = c > 1 ? (unsigned)c - 1 : 1;
	}
	if (s)
		s->loops = calloc(n, sizeof *s->loops);
	if (!s || !s->loops) {
		free(s);
		freeaddrinfo(res);
		snprintf(err, err_len, "out of memory");
		return COHORT_ENOMEM;
	}
	s->cfg = *cfg;
	s->env = env;
	s->nloops = n;
	for (unsigned i = 0; i < n; i++) {
		s->loops[i].s = s;
		s->loops[i].idx = i;
		s->loops[i].lfd = s->loops[i].efd = s->loops[i].epfd = -1;
	}
	/* one socket, without SO_REUSEPORT (which would let another process
	 * bind the same address and take half the connections to another
	 * database); every loop gets a descriptor of it */
	const struct addrinfo *ai = res;
	int fd = -EINVAL;
	for (; ai; ai = ai->ai_next) {
		fd = listen_on(ai, 0);
		if (fd >= 0)
			break;
	}
	if (fd < 0) {
		snprintf(err, err_len, "cannot listen on %s: %s", cfg->listen,
			 strerror(-fd));
		rc = COHORT_EIO;
		goto fail;
	}
	s->loops[0].lfd = fd;
	s->port = bound_port(fd);
	for (unsigned i = 1; i < n; i++) {
		fd = fcntl(s->loops[0].lfd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0) {
			snprintf(err, err_len, "listening socket for loop %u of "
				 "%u: %s", i + 1, n, strerror(errno));
			rc = COHORT_EIO;
			goto fail;
		}
		s->loops[i].lfd = fd;
	}
	char why[160] = "turned off by --no-uring";
	if (!cfg->no_uring)
		uring_probe(why, sizeof why);
	bool uring = !why[0];
	for (unsigned i = 0; i < n; i++) {
		s->loops[i].uring = uring;
		rc = loop_init(s, &s->loops[i], err, err_len);
		if (rc)
			goto fail;
		if (!uring)
			fcntl(s->loops[i].lfd, F_SETFL,
			      fcntl(s->loops[i].lfd, F_GETFL) | O_NONBLOCK);
	}
	if (uring)
		snprintf(s->io_path, sizeof s->io_path, "%s", s->ring_mode);
	else
		snprintf(s->io_path, sizeof s->io_path, "epoll (%s)", why);
	freeaddrinfo(res);
	*out = s;
	return 0;
fail:
	freeaddrinfo(res);
	server_free(s);
	return rc;
}

int server_port(const server *s)
{
	return s->port;
}

const char *server_io_path(const server *s)
{
	return s->io_path;
}

unsigned server_nthreads(const server *s)
{
	return s->nloops;
}

unsigned server_nconns(const server *s)
{
	return atomic_load(&((server *)s)->nconns);
}

int server_start(server *s)
{
	for (unsigned i = 0; i < s->nloops; i++) {
		loop *lp = &s->loops[i];
		int rc = pthread_create(&lp->th, NULL, loop_main, lp);
		if (rc) {
			server_log("cannot start loop thread %u: %s", i,
				   strerror(rc));
			server_stop(s);
			return COHORT_ENOMEM;
		}
		lp->th_started = true;
	}
	return 0;
}

void server_stop(server *s)
{
	atomic_store(&s->stop, true);
	uint64_t one = 1;
	for (unsigned i = 0; i < s->nloops; i++)
		if (s->loops[i].efd >= 0) {
			ssize_t w = write(s->loops[i].efd, &one, sizeof one);
			(void)w;
		}
}

int server_wait(server *s)
{
	int rc = 0;
	for (unsigned i = 0; i < s->nloops; i++) {
		loop *lp = &s->loops[i];
		if (lp->th_started) {
			pthread_join(lp->th, NULL);
			lp->th_started = false;
		}
		if (lp->err)
			rc = lp->err;
	}
	return rc;
}

void server_free(server *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < s->nloops; i++) {
		loop *lp = &s->loops[i];
		if (lp->th_started)
			pthread_join(lp->th, NULL);
		/* a loop that never ran still owns its connections: none, since
		 * connections exist only in running loops, which end with none */
		if (lp->ring_ok)
			io_uring_queue_exit(&lp->ring);
		if (lp->epfd >= 0)
			close(lp->epfd);
		if (lp->lfd >= 0)
			close(lp->lfd);
		if (lp->notified)
			cohort_sync_notify(s->env->db, lp->efd, false);
		if (lp->efd >= 0)
			close(lp->efd);
	}
	free(s->loops);
	free(s);
}
