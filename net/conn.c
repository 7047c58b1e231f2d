/*
 * conn.c -- one client connection as a state machine over byte buffers
 * (conn.h): frames are cut from the input, checked (header, role), decoded
 * and handed to the handler in order; the responses queue in the output.
 *
 * Input: one buffer, grown on demand up to max_frame + one header (what
 * the frame being received needs), shrunk back once empty. Only
 * conn_in_space moves or reallocates it, so a receive in flight into the
 * space it returned stays valid across conn_process.
 *
 * Output: two buffers. `send` holds the bytes handed to the event loop by
 * conn_out; they never move until conn_out_consume has taken them all,
 * so an asynchronous send (io_uring) may point into them while
 * conn_process and conn_poll_push append to `out`. When `send` is empty,
 * the two swap. conn_process executes nothing while the unsent bytes of
 * both exceed out_limit: a client that does not read stalls only itself,
 * with at most out_limit plus one response (itself at most max_frame)
 * queued.
 *
 * Errors of a frame: a bad header (magic, version, reserved bytes) or a
 * body that does not decode gets EPROTO and the connection closes; a body
 * over max_frame gets ELIMIT and closes without the body being read. A
 * request over another limit (batch size) or of an unknown opcode gets its
 * error and the connection goes on, since the frame's length is known.
 * Before authenticating only HELLO and AUTH are decoded at all; anything
 * else gets EAUTH without its body being parsed.
 *
 * Threads: one thread at a time per connection. conn_process turns
 * cohort_sync_defer on for its thread while it runs.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "conn.h"
#include "handler.h"
#include "metrics.h"
#include "proto.h"

#define IN_INIT (16u << 10)        /* input buffer to start with */
#define IN_MIN_ROOM (4u << 10)     /* grow when less room than this */
#define IN_KEEP (256u << 10)       /* shrink an empty input beyond this */
#define OUT_KEEP (1u << 20)        /* free an empty output beyond this */
#define ARENA_FLOOR (1u << 20)

struct conn {
	const conn_env *env;
	handler *h;
	char peer[64];

	uint8_t *in;
	size_t in_cap, in_off, in_len;   /* unprocessed: [in_off, in_len) */

	proto_wbuf send;                 /* handed out by conn_out */
	size_t send_off;
	proto_wbuf out;                  /* being appended to */

	proto_arena arena;
	bool wrote;
	bool closing;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		(uint32_t)p[3] << 24;
}

static size_t out_pending(const conn *c)
{
	return c->send.len - c->send_off + c->out.len;
}

static bool out_blocked(const conn *c)
{
	return out_pending(c) > c->env->out_limit;
}

static void wbuf_release(proto_wbuf *w)
{
	proto_wbuf_free(w);
	memset(w, 0, sizeof(*w));
}

/* Move what was appended to the send side once that is empty. */
static void out_flip(conn *c)
{
	if (c->send_off < c->send.len || c->out.len == 0)
		return;
	proto_wbuf t = c->send;
	c->send = c->out;
	c->out = t;
	c->out.len = 0;
	c->out.err = 0;
	c->send_off = 0;
	if (c->out.cap > OUT_KEEP)
		wbuf_release(&c->out);
}

conn *conn_new(const conn_env *env, const char *peer)
{
	conn *c = ccalloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->env = env;
	c->h = handler_new(env);
	c->in_cap = IN_INIT;
	if ((size_t)env->max_frame + PROTO_HDR_LEN < c->in_cap)
		c->in_cap = (size_t)env->max_frame + PROTO_HDR_LEN;
	c->in = cmalloc(c->in_cap);
	if (!c->h || !c->in) {
		handler_free(c->h);
		cfree(c->in);
		cfree(c);
		return NULL;
	}
	snprintf(c->peer, sizeof(c->peer), "%s", peer ? peer : "?");
	/* decoded requests take more room than their bytes (a 3-byte null
	 * field becomes a 32-byte cohort_field): bound it, generously */
	c->arena.limit = 16 * (size_t)env->max_frame + ARENA_FLOOR;
	handler_conn_count(1);
	return c;
}

void conn_free(conn *c)
{
	if (!c)
		return;
	handler_conn_count(-1);
	handler_free(c->h);
	cfree(c->in);
	proto_wbuf_free(&c->send);
	proto_wbuf_free(&c->out);
	proto_arena_free(&c->arena);
	cfree(c);
}

uint8_t *conn_in_space(conn *c, size_t *room)
{
	*room = 0;
	if (c->closing || out_blocked(c))
		return c->in + c->in_len;
	size_t pending = c->in_len - c->in_off;
	if (c->in_off) {
		memmove(c->in, c->in + c->in_off, pending);
		c->in_off = 0;
		c->in_len = pending;
	}
	/* Grow by doubling as bytes arrive, not to the size a header
	 * announces: a client that sends only headers of big frames holds
	 * no more memory than it has sent. */
	size_t max = (size_t)c->env->max_frame + PROTO_HDR_LEN;
	size_t cap = c->in_cap;
	if (pending == 0 && cap > IN_KEEP)
		cap = IN_INIT;     /* a big frame has gone: give it back */
	while (cap - c->in_len < IN_MIN_ROOM && cap < max)
		cap *= 2;
	if (cap > max)
		cap = max;
	if (cap != c->in_cap) {
		uint8_t *p = crealloc(c->in, cap);
		if (p) {
			c->in = p;
			c->in_cap = cap;
		}
	}
	*room = c->in_cap - c->in_len;
	return c->in + c->in_len;
}

void conn_in_commit(conn *c, size_t n)
{
	if (n > c->in_cap - c->in_len)
		n = c->in_cap - c->in_len;
	c->in_len += n;
}

/* A frame whose header cannot be trusted: answer and close. */
static void bad_header(conn *c, const uint8_t *p, size_t avail, int rc)
{
	char msg[160];
	bool magic_ok = avail >= 2 && p[0] == 'C' && p[1] == 'H';
	uint8_t op = magic_ok && avail >= 4 ? p[3] : 0;
	uint32_t id = magic_ok && avail >= 12 ? le32(p + 8) : 0;
	if (rc == COHORT_ELIMIT && avail >= PROTO_HDR_LEN)
		snprintf(msg, sizeof(msg), "frame body of %u bytes is over the "
			 "limit of %u", le32(p + 12), c->env->max_frame);
	else if (!magic_ok)
		snprintf(msg, sizeof(msg), "bad magic 0x%02x%02x (a frame "
			 "starts with 'C' 'H')", p[0], avail >= 2 ? p[1] : 0);
	else if (avail >= 3 && p[2] != PROTO_VERSION)
		snprintf(msg, sizeof(msg), "protocol version %u is not spoken "
			 "here (version %d)", p[2], PROTO_VERSION);
	else
		snprintf(msg, sizeof(msg), "malformed frame header");
	proto_resp_error(&c->out, op, id, rc == COHORT_ELIMIT ? rc :
			 COHORT_EPROTO, msg);
	if (c->env->metrics)
		metrics_request(c->env->metrics, op, rc, 0);
	c->closing = true;
}

static const char *why(const proto_req *r)
{
	return r->why ? r->why : "?";
}

/* One complete frame p[0..flen). */
static void exec_frame(conn *c, const uint8_t *p, size_t flen,
		       const proto_hdr *hdr)
{
	uint64_t t0 = now_ns();
	int op = hdr->opcode, need = proto_op_role(op);
	int role = handler_role(c->h), status;
	const char *name = proto_op_name(op);
	char msg[200];
	msg[0] = 0;
	proto_arena_reset(&c->arena);
	if (hdr->flags != 0 || op == PROTO_OP_CHANGES) {
		status = COHORT_EPROTO;
		if (hdr->flags)
			snprintf(msg, sizeof(msg), "a request has flags 0 (got "
				 "0x%04x)", hdr->flags);
		else
			snprintf(msg, sizeof(msg), "CHANGES is pushed by the "
				 "server, not a request");
		c->closing = true;
	} else if (need < 0) {
		status = COHORT_ENOTSUP;
		snprintf(msg, sizeof(msg), "unknown opcode 0x%02x", op);
	} else if (role == PROTO_ROLE_NONE && need > PROTO_ROLE_NONE) {
		status = COHORT_EAUTH;
		snprintf(msg, sizeof(msg), "not authenticated: send AUTH with a "
			 "token before %s", name);
	} else if (role < need) {
		status = COHORT_EDENIED;
		snprintf(msg, sizeof(msg), "%s needs role %s; this connection "
			 "has role %s", name, proto_role_name(need),
			 proto_role_name(role));
	} else {
		proto_req req;
		int rc = proto_req_decode(p, flen, c->env->max_frame,
					  c->env->max_batch, &c->arena, &req);
		if (rc > 0 && (size_t)rc != flen)
			rc = COHORT_EPROTO;
		if (rc > 0) {
			bool close = false;
			status = handler_exec(c->h, &req, &c->arena, &c->out,
					      &close);
			if (handler_op_writes(op))
				c->wrote = true;
			if (close)
				c->closing = true;
		} else if (rc == COHORT_ELIMIT) {
			status = rc;
			snprintf(msg, sizeof(msg), "%s request over a limit: "
				 "%s", name, why(&req));
		} else if (rc == COHORT_EBADNAME) {
			/* well formed, only a name is wrong: the connection
			 * stays open (docs/protocol.md, str8) */
			status = rc;
			snprintf(msg, sizeof(msg), "%s request: %s (a name is "
				 "1 to 64 characters of [A-Za-z0-9_])", name,
				 why(&req));
		} else if (rc == COHORT_ENOMEM) {
			status = rc;
			snprintf(msg, sizeof(msg), "out of memory decoding a %s "
				 "request", name);
		} else {
			status = COHORT_EPROTO;
			snprintf(msg, sizeof(msg), "malformed %s request: %s",
				 name, why(&req));
			c->closing = true;
		}
	}
	if (msg[0])
		proto_resp_error(&c->out, (uint8_t)op, hdr->id, status, msg);
	if (c->env->metrics)
		metrics_request(c->env->metrics, op, status, now_ns() - t0);
}

int conn_process(conn *c)
{
	c->wrote = false;
	if (c->closing)
		return CONN_CLOSE;
	cohort_sync_defer(true);
	while (!c->closing && !out_blocked(c)) {
		const uint8_t *p = c->in + c->in_off;
		size_t avail = c->in_len - c->in_off;
		if (avail == 0)
			break;
		proto_hdr hdr;
		int rc = proto_hdr_decode(p, avail, c->env->max_frame, &hdr);
		if (rc == PROTO_MORE)
			break;
		if (rc < 0) {
			bad_header(c, p, avail, rc);
			c->in_off = c->in_len;
			break;
		}
		size_t flen = PROTO_HDR_LEN + (size_t)hdr.body_len;
		if (avail < flen)
			break;
		exec_frame(c, p, flen, &hdr);
		c->in_off += flen;
	}
	cohort_sync_defer(false);
	if (c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
	/* a large request's arena blocks go back now, not at the next one */
	proto_arena_reset(&c->arena);
	out_flip(c);
	return c->closing ? CONN_CLOSE : 0;
}

bool conn_wrote(const conn *c)
{
	return c->wrote;
}

const uint8_t *conn_out(const conn *c, size_t *len)
{
	*len = c->send.len - c->send_off;
	return c->send.buf ? c->send.buf + c->send_off : NULL;
}

void conn_out_consume(conn *c, size_t n)
{
	size_t left = c->send.len - c->send_off;
	c->send_off += n < left ? n : left;
	if (c->send_off == c->send.len) {
		c->send.len = 0;
		c->send_off = 0;
		if (c->send.cap > OUT_KEEP)
			wbuf_release(&c->send);
		out_flip(c);
	}
}

bool conn_poll_push(conn *c)
{
	if (c->closing || !handler_has_subs(c->h) ||
	    out_pending(c) >= c->env->out_limit)
		return false;
	size_t limit = c->out.len + (c->env->out_limit - out_pending(c));
	bool any = handler_push(c->h, &c->out, limit);
	out_flip(c);
	return any;
}

bool conn_has_subs(const conn *c)
{
	return handler_has_subs(c->h);
}

int conn_role(const conn *c)
{
	return handler_role(c->h);
}

const char *conn_peer(const conn *c)
{
	return c->peer;
}
