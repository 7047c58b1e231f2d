/*
 * client.c -- libcohort-client: one TCP connection to cohortd, requests
 * encoded and responses decoded with net/proto.h.
 *
 * Buffers. Requests are appended to one proto_wbuf (w) and written when a
 * call waits for its answer, when it passes FLUSH_AT bytes, or on
 * cohort_client_flush. Bytes read go to one growable input buffer
 * (in[in_pos, in_len) not yet consumed). Decoded arrays go to one arena,
 * reset at the start of every call: after the first calls of a workload
 * nothing is allocated. Everything a call returns that points into the
 * input or the arena is therefore valid until the next call.
 *
 * I/O. The socket is blocking, with SO_RCVTIMEO/SO_SNDTIMEO as the call
 * timeout, so a request and its answer cost one send and one recv. Writing
 * first tries a non-blocking send of everything; only when the socket
 * cannot take it all (a deep pipeline) does it poll for both directions,
 * reading what the server answers while it writes, so that neither side
 * can wait for the other forever.
 *
 * Order. Responses come in request order. Ids are consecutive, so the id
 * the next response must carry is next_id - inflight. Push frames
 * (subscription changes) may come between responses: wherever they are
 * met, they are decoded into the change queue and removed from the input.
 *
 * Failure. A lost connection, a timeout or a response that does not parse
 * closes the socket: every later call returns COHORT_ECLOSED.
 */
#include "cohort_client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define FLUSH_AT (64u << 10)
#define MAX_RESPONSE (1u << 30)      /* bytes of one response's body */
#define ARENA_LIMIT ((size_t)4 << 30)
#define ERRMSG_LEN 1024

/* One table's description in the schema cache. */
typedef struct schema {
	struct schema *next;
	cohort_client_table t;
	char *strings;                   /* names, NUL-terminated */
	cohort_client_column_info *cols;
	cohort_client_model_info *models;
	cohort_client_index_info *indexes;
	int *model_cols;
} schema;

struct cohort_client {
	int fd;                          /* -1 once closed */
	uint32_t timeout_ms;
	cohort_client_info info;
	uint32_t next_id;
	size_t inflight;

	proto_wbuf w;
	uint8_t *in;
	size_t in_pos, in_len, in_cap;
	proto_arena arena;
	proto_req req;

	size_t nfailed;
	schema *schemas;

	cohort_client_change *chg;       /* queue: chg[chg_head, chg_len) */
	size_t chg_head, chg_len, chg_cap;

	char err[ERRMSG_LEN];
};

struct cohort_client_filter {
	proto_filter pf;
	proto_filter_node nodes[PROTO_MAX_FILTER_NODES];
};

/* ------------------------------------------------------------------------
 * Errors and the connection's state
 * ------------------------------------------------------------------------ */
static int fail(cohort_client *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(cohort_client *c, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof c->err, fmt, ap);
	va_end(ap);
	return code;
}

/* The connection cannot go on: close it, answer code from now on. */
static int drop(cohort_client *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int drop(cohort_client *c, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof c->err, fmt, ap);
	va_end(ap);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->inflight = 0;
	c->w.len = 0;
	c->in_pos = c->in_len = 0;
	return code;
}

static int bad_response(cohort_client *c, const char *what)
{
	return drop(c, COHORT_EPROTO, "malformed response from the server (%s)",
		    what);
}

const char *cohort_client_errmsg(const cohort_client *c)
{
	return c ? c->err : "";
}

bool cohort_client_connected(const cohort_client *c)
{
	return c && c->fd >= 0;
}

size_t cohort_client_inflight(const cohort_client *c)
{
	return c->inflight;
}

size_t cohort_client_batch_nfailed(const cohort_client *c)
{
	return c->nfailed;
}

void cohort_client_info_get(const cohort_client *c, cohort_client_info *out)
{
	*out = c->info;
}

void cohort_client_opts_init(cohort_client_opts *opts)
{
	memset(opts, 0, sizeof *opts);
	opts->connect_timeout_ms = 5000;
}

/* ------------------------------------------------------------------------
 * Input: reading bytes and frames
 * ------------------------------------------------------------------------ */

/* Room for at least want more bytes at in + in_len; consumed bytes are
 * dropped first (no frame of a finished call is referenced any more). */
static int in_reserve(cohort_client *c, size_t want)
{
	if (c->in_pos > 0) {
		memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
		c->in_len -= c->in_pos;
		c->in_pos = 0;
	}
	if (c->in_cap - c->in_len >= want)
		return 0;
	size_t cap = c->in_cap ? c->in_cap : 16384;
	while (cap - c->in_len < want)
		cap *= 2;
	uint8_t *p = realloc(c->in, cap);
	if (!p)
		return fail(c, COHORT_ENOMEM, "out of memory for %zu bytes of input",
			    cap);
	c->in = p;
	c->in_cap = cap;
	return 0;
}

static int io_lost(cohort_client *c, const char *op, int err)
{
	if (err == EAGAIN || err == EWOULDBLOCK)
		return drop(c, COHORT_ECLOSED,
			    "no answer from the server within %u ms: connection closed",
			    c->timeout_ms);
	return drop(c, COHORT_ECLOSED, "%s: %s: connection closed", op,
		    strerror(err));
}

/* Read what is there (flags MSG_DONTWAIT) or wait for bytes (0, bounded by
 * SO_RCVTIMEO). Returns bytes read (0 only with MSG_DONTWAIT and nothing
 * there) or a negative code. */
static ssize_t in_read(cohort_client *c, int flags)
{
	int rc = in_reserve(c, 16384);
	if (rc < 0)
		return rc;
	for (;;) {
		ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len,
				 flags);
		if (n > 0) {
			c->in_len += (size_t)n;
			return n;
		}
		if (n == 0)
			return drop(c, COHORT_ECLOSED,
				    "the server closed the connection");
		if (errno == EINTR)
			continue;
		if ((flags & MSG_DONTWAIT) &&
		    (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return io_lost(c, "recv", errno);
	}
}

/* The complete frame at offset off of the input: its header into *h and
 * its total length into *flen. 0 when it is not complete yet, 1 when it
 * is, or a negative code for a header that can never be valid. */
static int frame_at(cohort_client *c, size_t off, proto_hdr *h, size_t *flen)
{
	int rc = proto_hdr_decode(c->in + off, c->in_len - off, MAX_RESPONSE, h);
	if (rc == PROTO_MORE)
		return 0;
	if (rc < 0)
		return bad_response(c, rc == COHORT_ELIMIT ? "frame too large"
							   : "bad frame header");
	if (!(h->flags & PROTO_F_RESPONSE))
		return bad_response(c, "frame without the response flag");
	size_t need = PROTO_HDR_LEN + (size_t)h->body_len;
	if (c->in_len - off < need)
		return 0;
	*flen = need;
	return 1;
}

static int push_decode(cohort_client *c, const proto_hdr *h,
		       const uint8_t *body);

/* Decode and remove the push frames among the complete frames of the
 * input, leaving responses where they are. Returns 0 or a code. */
static int pump_pushes(cohort_client *c)
{
	size_t off = c->in_pos;
	for (;;) {
		proto_hdr h;
		size_t flen;
		int rc = frame_at(c, off, &h, &flen);
		if (rc <= 0)
			return rc;
		if (!(h.flags & PROTO_F_PUSH)) {
			off += flen;
			continue;
		}
		rc = push_decode(c, &h, c->in + off + PROTO_HDR_LEN);
		if (rc < 0)
			return rc;
		memmove(c->in + off, c->in + off + flen, c->in_len - off - flen);
		c->in_len -= flen;
	}
}

/* The next response (pushes before it go to the change queue): header in
 * *h, body in *body. Waits for it. */
static int next_response(cohort_client *c, proto_hdr *h, const uint8_t **body)
{
	for (;;) {
		size_t flen;
		int rc = frame_at(c, c->in_pos, h, &flen);
		if (rc < 0)
			return rc;
		if (rc == 1) {
			const uint8_t *b = c->in + c->in_pos + PROTO_HDR_LEN;
			if (h->flags & PROTO_F_PUSH) {
				rc = push_decode(c, h, b);
				if (rc < 0)
					return rc;
				c->in_pos += flen;
				continue;
			}
			c->in_pos += flen;
			*body = b;
			return 0;
		}
		ssize_t n = in_read(c, 0);
		if (n < 0)
			return (int)n;
	}
}

/* ------------------------------------------------------------------------
 * Output: writing queued requests
 * ------------------------------------------------------------------------ */
static int wait_fd(cohort_client *c, short events, short *revents)
{
	struct pollfd p = { .fd = c->fd, .events = events, .revents = 0 };
	int timeout = c->timeout_ms ? (int)c->timeout_ms : -1;
	for (;;) {
		int n = poll(&p, 1, timeout);
		if (n > 0) {
			*revents = p.revents;
			return 0;
		}
		if (n == 0)
			return io_lost(c, "poll", EAGAIN);
		if (errno != EINTR)
			return io_lost(c, "poll", errno);
	}
}

int cohort_client_flush(cohort_client *c)
{
	if (c->fd < 0)
		return fail(c, COHORT_ECLOSED, "not connected");
	size_t off = 0;
	while (off < c->w.len) {
		ssize_t n = send(c->fd, c->w.buf + off, c->w.len - off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return io_lost(c, "send", errno);
		/* The socket is full: the server may be waiting for us to
		 * read its answers before it reads more. */
		short rev = 0;
		int rc = wait_fd(c, POLLIN | POLLOUT, &rev);
		if (rc < 0)
			return rc;
		if (rev & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t r = in_read(c, MSG_DONTWAIT);
			if (r < 0)
				return (int)r;
		}
	}
	c->w.len = 0;
	return 0;
}

/* ------------------------------------------------------------------------
 * Requests and responses
 * ------------------------------------------------------------------------ */
int cohort_client_send(cohort_client *c, proto_req *req, uint32_t *id)
{
	if (c->fd < 0)
		return fail(c, COHORT_ECLOSED, "not connected");
	size_t start = c->w.len;
	req->hdr.id = c->next_id;
	req->hdr.flags = 0;
	proto_req_encode(&c->w, req);
	if (c->w.err) {
		int err = c->w.err;
		c->w.err = 0;
		c->w.len = start;
		return fail(c, err, "cannot encode the %s request: %s",
			    proto_op_name(req->hdr.opcode), cohort_strerror(err));
	}
	size_t body = c->w.len - start - PROTO_HDR_LEN;
	if (c->info.max_frame && body > c->info.max_frame) {
		c->w.len = start;
		return fail(c, COHORT_ELIMIT,
			    "%s request of %zu bytes is over the server's frame limit of %u",
			    proto_op_name(req->hdr.opcode), body, c->info.max_frame);
	}
	if (id)
		*id = c->next_id;
	c->next_id++;
	c->inflight++;
	if (c->w.len >= FLUSH_AT)
		return cohort_client_flush(c);
	return 0;
}

int cohort_client_recv(cohort_client *c, cohort_client_resp *out)
{
	if (c->fd < 0)
		return fail(c, COHORT_ECLOSED, "not connected");
	if (c->inflight == 0)
		return fail(c, COHORT_EINVAL, "no request in flight");
	/* what the previous response decoded is released now */
	proto_arena_reset(&c->arena);
	int rc = cohort_client_flush(c);
	if (rc < 0)
		return rc;
	proto_hdr h;
	const uint8_t *body = NULL;
	rc = next_response(c, &h, &body);
	if (rc < 0)
		return rc;
	uint32_t want = c->next_id - (uint32_t)c->inflight;
	if (h.id != want)
		return bad_response(c, "response id out of order");
	c->inflight--;
	proto_rbuf r = { .p = body, .end = body + h.body_len };
	memset(out, 0, sizeof *out);
	out->opcode = h.opcode;
	out->id = h.id;
	out->status = proto_resp_status(&r, &out->msg, &out->msg_len);
	if (r.err)
		return bad_response(c, "no status");
	if (out->status > 0)
		return bad_response(c, "positive status");
	if (out->status < 0) {
		snprintf(c->err, sizeof c->err, "%.*s", (int)out->msg_len,
			 out->msg ? out->msg : "");
		if (!c->err[0])
			snprintf(c->err, sizeof c->err, "%s",
				 cohort_strerror(out->status));
		return 0;
	}
	out->payload = r.p;
	out->payload_len = (size_t)(r.end - r.p);
	return 0;
}

/* Start a blocking call: nothing may be in flight. */
static int begin(cohort_client *c, uint8_t opcode)
{
	c->err[0] = 0;
	c->nfailed = 0;
	if (c->fd < 0)
		return fail(c, COHORT_ECLOSED, "not connected");
	if (c->inflight)
		return fail(c, COHORT_EBUSY,
			    "%zu pipelined requests are in flight: receive them first",
			    c->inflight);
	proto_arena_reset(&c->arena);
	memset(&c->req, 0, sizeof c->req);
	c->req.hdr.opcode = opcode;
	return 0;
}

/* Send c->req, wait for its answer: 0 with *r at the payload, or the
 * status (errmsg set). */
static int call(cohort_client *c, proto_rbuf *r)
{
	uint32_t id;
	int rc = cohort_client_send(c, &c->req, &id);
	if (rc < 0)
		return rc;
	cohort_client_resp resp;
	rc = cohort_client_recv(c, &resp);
	if (rc < 0)
		return rc;
	if (resp.status < 0)
		return resp.status;
	if (resp.opcode != c->req.hdr.opcode)
		return bad_response(c, "answer to another opcode");
	memset(r, 0, sizeof *r);
	r->p = resp.payload;
	r->end = resp.payload + resp.payload_len;
	return 0;
}

/* After decoding a payload: a short one is malformed. */
static int decoded(cohort_client *c, const proto_rbuf *r, const char *what)
{
	if (r->err)
		return drop(c, COHORT_EPROTO,
			    "malformed response from the server (%s: %s)", what,
			    r->why ? r->why : "too short");
	return 0;
}

static void *arena(cohort_client *c, size_t n)
{
	return proto_arena_alloc(&c->arena, n ? n : 1);
}

/* A NUL-terminated copy in the arena. */
static const char *arena_str(cohort_client *c, const char *p, size_t n)
{
	char *s = arena(c, n + 1);
	if (!s)
		return NULL;
	if (n)
		memcpy(s, p, n);
	s[n] = 0;
	return s;
}

static int set_name(cohort_client *c, char *dst, const char *src,
		    const char *what, int allow_empty)
{
	size_t n = src ? strlen(src) : 0;
	if ((n == 0 && !allow_empty) || n > COHORT_MAX_NAME)
		return fail(c, COHORT_EBADNAME,
			    "%s name '%s' must be 1 to %d characters", what,
			    src ? src : "(null)", COHORT_MAX_NAME);
	memcpy(dst, src ? src : "", n);
	dst[n] = 0;
	return 0;
}

static int set_key(cohort_client *c, proto_key *dst, const void *key,
		   size_t len)
{
	if (!key || len == 0 || len > COHORT_MAX_KEY)
		return fail(c, COHORT_EKEY, "key of %zu bytes: must be 1 to %d",
			    len, COHORT_MAX_KEY);
	dst->ptr = key;
	dst->len = (uint8_t)len;
	return 0;
}

static int begin_table(cohort_client *c, uint8_t opcode, const char *table)
{
	int rc = begin(c, opcode);
	if (rc < 0)
		return rc;
	return set_name(c, c->req.table, table, "table", 0);
}

static int begin_named(cohort_client *c, uint8_t opcode, const char *table,
		       const char *name, const char *what)
{
	int rc = begin_table(c, opcode, table);
	if (rc < 0)
		return rc;
	return set_name(c, c->req.name, name, what, 0);
}

/* ------------------------------------------------------------------------
 * Connection
 * ------------------------------------------------------------------------ */
static int dial(cohort_client *c, const char *host, uint16_t port,
		uint32_t timeout_ms)
{
	char service[8];
	snprintf(service, sizeof service, "%u", (unsigned)port);
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	int gai = getaddrinfo(host, service, &hints, &res);
	if (gai != 0)
		return fail(c, gai == EAI_NONAME ? COHORT_EINVAL : COHORT_ECLOSED,
			    "cannot resolve '%s': %s", host, gai_strerror(gai));
	int last = ECONNREFUSED;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
					       SOCK_NONBLOCK, ai->ai_protocol);
		if (fd < 0) {
			last = errno;
			continue;
		}
		int ok = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
		if (!ok && errno == EINPROGRESS) {
			struct pollfd p = { .fd = fd, .events = POLLOUT,
					    .revents = 0 };
			int n;
			do
				n = poll(&p, 1, (int)timeout_ms);
			while (n < 0 && errno == EINTR);
			int soerr = 0;
			socklen_t sl = sizeof soerr;
			if (n == 0)
				soerr = ETIMEDOUT;
			else if (n < 0)
				soerr = errno;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr,
					    &sl) < 0)
				soerr = errno;
			ok = soerr == 0;
			if (!ok)
				errno = soerr;
		}
		if (!ok) {
			last = errno;
			close(fd);
			continue;
		}
		int fl = fcntl(fd, F_GETFL);
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (c->timeout_ms) {
			struct timeval tv = {
				.tv_sec = c->timeout_ms / 1000,
				.tv_usec = (c->timeout_ms % 1000) * 1000
			};
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		}
		c->fd = fd;
		freeaddrinfo(res);
		return 0;
	}
	freeaddrinfo(res);
	return fail(c, COHORT_ECLOSED, "cannot connect to %s:%u: %s", host,
		    (unsigned)port, strerror(last));
}

static int hello(cohort_client *c, const char *name)
{
	int rc = begin(c, PROTO_OP_HELLO);
	if (rc < 0)
		return rc;
	c->req.u.hello.version = PROTO_VERSION;
	rc = set_name(c, c->req.u.hello.client, name, "client", 0);
	if (rc < 0)
		return rc;
	c->info.max_frame = 0;  /* not known yet: no client-side check */
	proto_rbuf r;
	rc = call(c, &r);
	if (rc < 0)
		return rc;
	cohort_client_info *i = &c->info;
	i->version = proto_r_u16(&r);
	i->max_frame = proto_r_u32(&r);
	i->max_batch = proto_r_u32(&r);
	i->max_k = proto_r_u32(&r);
	i->auth_required = proto_r_u8(&r) != 0;
	i->role = proto_r_u8(&r);
	size_t n;
	const char *s = proto_r_str8(&r, &n);
	if ((rc = decoded(c, &r, "hello")) < 0)
		return rc;
	if (i->version != PROTO_VERSION)
		return drop(c, COHORT_EPROTO,
			    "the server speaks protocol version %u, not %d",
			    i->version, PROTO_VERSION);
	snprintf(i->server_name, sizeof i->server_name, "%.*s", (int)n,
		 s ? s : "");
	return 0;
}

int cohort_client_connect(const char *host, uint16_t port,
			  const cohort_client_opts *opts, cohort_client **out)
{
	*out = NULL;
	cohort_client_opts def;
	if (!opts) {
		cohort_client_opts_init(&def);
		opts = &def;
	}
	cohort_client *c = calloc(1, sizeof *c);
	if (!c)
		return COHORT_ENOMEM;
	c->fd = -1;
	c->next_id = 1;
	c->timeout_ms = opts->timeout_ms;
	c->arena.limit = ARENA_LIMIT;
	*out = c;
	if (!host || !*host)
		return fail(c, COHORT_EINVAL, "no host to connect to");
	int rc = dial(c, host, port ? port : COHORT_CLIENT_PORT,
		      opts->connect_timeout_ms ? opts->connect_timeout_ms
					       : 5000);
	if (rc < 0)
		return rc;
	rc = hello(c, opts->name ? opts->name : "libcohort_client");
	if (rc == COHORT_ECLOSED)
		snprintf(c->err, sizeof c->err,
			 "%s:%u closed the connection during HELLO", host,
			 (unsigned)(port ? port : COHORT_CLIENT_PORT));
	return rc;
}

static void schema_free(schema *s)
{
	if (!s)
		return;
	free(s->strings);
	free(s->cols);
	free(s->models);
	free(s->indexes);
	free(s->model_cols);
	free(s);
}

void cohort_client_close(cohort_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	proto_wbuf_free(&c->w);
	proto_arena_free(&c->arena);
	free(c->in);
	free(c->chg);
	while (c->schemas) {
		schema *s = c->schemas;
		c->schemas = s->next;
		schema_free(s);
	}
	free(c);
}

int cohort_client_auth(cohort_client *c, const void *token, size_t token_len,
		       int *role)
{
	int rc = begin(c, PROTO_OP_AUTH);
	if (rc < 0)
		return rc;
	if (!token || token_len == 0 || token_len > 255)
		return fail(c, COHORT_EINVAL, "a token is 1 to 255 bytes, not %zu",
			    token_len);
	c->req.u.auth.token = token;
	c->req.u.auth.token_len = (uint8_t)token_len;
	proto_rbuf r;
	rc = call(c, &r);
	if (rc < 0)
		return rc;
	uint8_t got = proto_r_u8(&r);
	if ((rc = decoded(c, &r, "auth")) < 0)
		return rc;
	c->info.role = got;
	if (role)
		*role = got;
	return 0;
}

int cohort_client_auth_file(cohort_client *c, const char *path, int *role)
{
	c->err[0] = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(c, COHORT_EIO, "token file %s: %s", path,
			    strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return fail(c, COHORT_EIO, "token file %s: not a regular file",
			    path);
	}
	if (st.st_mode & 077) {
		close(fd);
		return fail(c, COHORT_EINVAL,
			    "token file %s is readable by others (mode %03o): chmod 600 it",
			    path, (unsigned)(st.st_mode & 0777));
	}
	char buf[4096];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n < 0)
		return fail(c, COHORT_EIO, "token file %s: %s", path,
			    strerror(errno));
	buf[n] = 0;
	char *save = NULL;
	for (char *line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *w1, *w2, *w3, *s2 = NULL;
		w1 = strtok_r(line, " \t\r", &s2);
		if (!w1 || w1[0] == '#')
			continue;
		w2 = strtok_r(NULL, " \t\r", &s2);
		w3 = strtok_r(NULL, " \t\r", &s2);
		if (w3)
			return fail(c, COHORT_EINVAL,
				    "token file %s: a line is a token or \"<role> <token>\"",
				    path);
		const char *tok = w2 ? w2 : w1;
		int rc = cohort_client_auth(c, tok, strlen(tok), role);
		memset(buf, 0, sizeof buf);
		return rc;
	}
	return fail(c, COHORT_EINVAL, "token file %s holds no token", path);
}

int cohort_client_ping(cohort_client *c)
{
	int rc = begin(c, PROTO_OP_PING);
	if (rc < 0)
		return rc;
	proto_rbuf r;
	return call(c, &r);
}

/* ------------------------------------------------------------------------
 * Schema
 * ------------------------------------------------------------------------ */
int cohort_client_tables(cohort_client *c, const char *const **names,
			 size_t *n)
{
	int rc = begin(c, PROTO_OP_DESCRIBE);
	if (rc < 0)
		return rc;
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0)
		return rc;
	uint16_t nt = proto_r_u16(&r);
	const char **out = arena(c, nt * sizeof *out);
	if (!out)
		return fail(c, COHORT_ENOMEM, "out of memory");
	for (uint16_t i = 0; i < nt; i++) {
		size_t len;
		const char *s = proto_r_str8(&r, &len);
		if (r.err)
			break;
		if (!(out[i] = arena_str(c, s, len)))
			return fail(c, COHORT_ENOMEM, "out of memory");
	}
	if ((rc = decoded(c, &r, "describe")) < 0)
		return rc;
	*names = out;
	*n = nt;
	return 0;
}

static schema *schema_find(cohort_client *c, const char *table)
{
	for (schema *s = c->schemas; s; s = s->next)
		if (strcmp(s->t.name, table) == 0)
			return s;
	return NULL;
}

static void schema_forget(cohort_client *c, const char *table)
{
	for (schema **p = &c->schemas; *p; p = &(*p)->next)
		if (strcmp((*p)->t.name, table) == 0) {
			schema *s = *p;
			*p = s->next;
			schema_free(s);
			return;
		}
}

/* Copy a str8 into the schema's string area (sized in advance). */
static const char *schema_str(proto_rbuf *r, char **area)
{
	size_t n;
	const char *s = proto_r_str8(r, &n);
	char *d = *area;
	if (n)
		memcpy(d, s, n);
	d[n] = 0;
	*area += n + 1;
	return d;
}

static int parse_describe(cohort_client *c, proto_rbuf *r, const char *table,
			  schema *s)
{
	/* Names are at most 255 bytes each: the body bounds their total. */
	size_t strcap = (size_t)(r->end - r->p) + strlen(table) + 2;
	char *area = s->strings = malloc(strcap);
	if (!area)
		return fail(c, COHORT_ENOMEM, "out of memory");
	memcpy(area, table, strlen(table) + 1);
	s->t.name = area;
	area += strlen(table) + 1;
	s->t.ttl_ms = proto_r_i64(r);
	s->t.nrows = proto_r_u64(r);
	s->t.mem_bytes = proto_r_u64(r);
	uint16_t ncols = proto_r_u16(r);
	if (r->err)
		return bad_response(c, "describe");
	s->cols = calloc(ncols ? ncols : 1, sizeof *s->cols);
	if (!s->cols)
		return fail(c, COHORT_ENOMEM, "out of memory");
	for (uint16_t i = 0; i < ncols && !r->err; i++) {
		cohort_client_column_info *ci = &s->cols[i];
		ci->name = schema_str(r, &area);
		ci->id = i;
		ci->type = (cohort_type)proto_r_u8(r);
		ci->dim = proto_r_u32(r);
		ci->half_life_ms = proto_r_i64(r);
		ci->ncat = proto_r_u32(r);
	}
	s->t.ncols = ncols;
	s->t.cols = s->cols;

	uint8_t nmodels = proto_r_u8(r);
	if (r->err)
		return bad_response(c, "describe");
	s->models = calloc(nmodels ? nmodels : 1, sizeof *s->models);
	s->model_cols = calloc((size_t)(nmodels ? nmodels : 1) * 255,
			       sizeof *s->model_cols);
	if (!s->models || !s->model_cols)
		return fail(c, COHORT_ENOMEM, "out of memory");
	for (uint8_t i = 0; i < nmodels && !r->err; i++) {
		cohort_client_model_info *m = &s->models[i];
		int *cols = s->model_cols + (size_t)i * 255;
		m->name = schema_str(r, &area);
		m->version = proto_r_u64(r);
		m->k = proto_r_u32(r);
		m->dim = proto_r_u32(r);
		m->ncolumns = proto_r_u8(r);
		for (size_t j = 0; j < m->ncolumns; j++)
			cols[j] = proto_r_u16(r);
		m->columns = cols;
		m->mode = (cohort_persona_mode)proto_r_u8(r);
		m->training = proto_r_u8(r) != 0;
		m->pending = proto_r_u64(r);
		m->assigned = proto_r_u64(r);
	}
	s->t.nmodels = nmodels;
	s->t.models = s->models;

	uint8_t nindexes = proto_r_u8(r);
	if (r->err)
		return bad_response(c, "describe");
	s->indexes = calloc(nindexes ? nindexes : 1, sizeof *s->indexes);
	if (!s->indexes)
		return fail(c, COHORT_ENOMEM, "out of memory");
	for (uint8_t i = 0; i < nindexes && !r->err; i++) {
		cohort_client_index_info *x = &s->indexes[i];
		x->name = schema_str(r, &area);
		x->column = proto_r_u16(r);
		x->metric = (cohort_metric)proto_r_u8(r);
		x->M = proto_r_u32(r);
		x->ef_construction = proto_r_u32(r);
		x->ef_search = proto_r_u32(r);
		x->nodes = proto_r_u64(r);
		x->pending = proto_r_u64(r);
		x->bytes = proto_r_u64(r);
	}
	s->t.nindexes = nindexes;
	s->t.indexes = s->indexes;
	return decoded(c, r, "describe");
}

int cohort_client_describe(cohort_client *c, const char *table,
			   const cohort_client_table **out)
{
	int rc = begin_table(c, PROTO_OP_DESCRIBE, table);
	if (rc < 0)
		return rc;
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0) {
		if (rc == COHORT_ENOTABLE)
			schema_forget(c, table);
		return rc;
	}
	schema *s = calloc(1, sizeof *s);
	if (!s)
		return fail(c, COHORT_ENOMEM, "out of memory");
	rc = parse_describe(c, &r, table, s);
	if (rc < 0) {
		schema_free(s);
		return rc;
	}
	schema_forget(c, table);
	s->next = c->schemas;
	c->schemas = s;
	if (out)
		*out = &s->t;
	return 0;
}

static int schema_get(cohort_client *c, const char *table, schema **out)
{
	if (!table)
		return fail(c, COHORT_EBADNAME, "no table name");
	*out = schema_find(c, table);
	if (*out)
		return 0;
	int rc = cohort_client_describe(c, table, NULL);
	if (rc < 0)
		return rc;
	*out = schema_find(c, table);
	return 0;
}

static int column_in(const schema *s, const char *name)
{
	for (size_t i = 0; i < s->t.ncols; i++)
		if (strcmp(s->cols[i].name, name) == 0)
			return (int)i;
	return COHORT_ENOCOLUMN;
}

int cohort_client_column(cohort_client *c, const char *table,
			 const char *name)
{
	schema *s;
	int rc = schema_get(c, table, &s);
	if (rc < 0)
		return rc;
	int id = column_in(s, name);
	if (id >= 0)
		return id;
	/* Perhaps added since it was cached. */
	rc = cohort_client_describe(c, table, NULL);
	if (rc < 0)
		return rc;
	id = column_in(schema_find(c, table), name);
	if (id < 0)
		return fail(c, COHORT_ENOCOLUMN, "column '%s' not found in table '%s'",
			    name, table);
	return id;
}

int cohort_client_column_info_get(cohort_client *c, const char *table,
				  int column, cohort_client_column_info *out)
{
	schema *s;
	int rc = schema_get(c, table, &s);
	if (rc < 0)
		return rc;
	if (column < 0 || (size_t)column >= s->t.ncols) {
		rc = cohort_client_describe(c, table, NULL);
		if (rc < 0)
			return rc;
		s = schema_find(c, table);
		if (column < 0 || (size_t)column >= s->t.ncols)
			return fail(c, COHORT_ENOCOLUMN,
				    "table '%s' has no column %d", table, column);
	}
	*out = s->cols[column];
	return 0;
}

static int set_column(cohort_client *c, proto_column *dst,
		      const cohort_column_def *src)
{
	int rc = set_name(c, dst->name, src->name, "column", 0);
	if (rc < 0)
		return rc;
	dst->type = (uint8_t)src->type;
	dst->dim = src->dim;
	dst->half_life_ms = src->half_life_ms;
	return 0;
}

int cohort_client_table_create(cohort_client *c, const char *table,
			       const cohort_column_def *cols, size_t ncols,
			       int64_t ttl_ms)
{
	int rc = begin_table(c, PROTO_OP_TABLE_CREATE, table);
	if (rc < 0)
		return rc;
	if (ncols > COHORT_MAX_COLUMNS)
		return fail(c, COHORT_ELIMIT, "%zu columns: at most %d", ncols,
			    COHORT_MAX_COLUMNS);
	proto_column *pc = arena(c, ncols * sizeof *pc);
	if (!pc)
		return fail(c, COHORT_ENOMEM, "out of memory");
	for (size_t i = 0; i < ncols; i++)
		if ((rc = set_column(c, &pc[i], &cols[i])) < 0)
			return rc;
	c->req.u.table_create.ttl_ms = ttl_ms;
	c->req.u.table_create.ncols = (uint16_t)ncols;
	c->req.u.table_create.cols = pc;
	proto_rbuf r;
	rc = call(c, &r);
	schema_forget(c, table);
	return rc;
}

int cohort_client_column_add(cohort_client *c, const char *table,
			     const cohort_column_def *col, int *id)
{
	int rc = begin_table(c, PROTO_OP_COLUMN_ADD, table);
	if (rc < 0)
		return rc;
	if ((rc = set_column(c, &c->req.u.column_add, col)) < 0)
		return rc;
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0)
		return rc;
	uint16_t got = proto_r_u16(&r);
	if ((rc = decoded(c, &r, "column_add")) < 0)
		return rc;
	schema_forget(c, table);
	if (id)
		*id = got;
	return 0;
}

int cohort_client_index_create(cohort_client *c, const char *table,
			       const char *index, int column,
			       const cohort_index_opts *opts)
{
	int rc = begin_named(c, PROTO_OP_INDEX_CREATE, table, index, "index");
	if (rc < 0)
		return rc;
	if (column < 0 || column > UINT16_MAX)
		return fail(c, COHORT_ENOCOLUMN, "column id %d", column);
	c->req.u.index_create.column = (uint16_t)column;
	if (opts)
		c->req.u.index_create.opts = *opts;
	proto_rbuf r;
	rc = call(c, &r);
	schema_forget(c, table);
	return rc;
}

int cohort_client_index_drop(cohort_client *c, const char *table,
			     const char *index)
{
	int rc = begin_named(c, PROTO_OP_INDEX_DROP, table, index, "index");
	if (rc < 0)
		return rc;
	proto_rbuf r;
	rc = call(c, &r);
	schema_forget(c, table);
	return rc;
}

/* ------------------------------------------------------------------------
 * Writes
 * ------------------------------------------------------------------------ */

/* The batch result of a write: statuses into row_status (may be NULL),
 * the first error's message into errmsg. */
static int batch_result(cohort_client *c, proto_rbuf *r, int *row_status,
			size_t n, int single)
{
	uint32_t nrows = proto_r_u32(r);
	if (r->err || nrows != n)
		return bad_response(c, "batch result of another size");
	size_t nfailed = 0;
	int first = 0;
	for (uint32_t i = 0; i < nrows; i++) {
		int32_t st = proto_r_i32(r);
		if (st > 0)
			return bad_response(c, "positive row status");
		if (st < 0 && nfailed++ == 0)
			first = st;
		if (row_status)
			row_status[i] = st;
	}
	uint32_t nerr = proto_r_u32(r);
	for (uint32_t i = 0; i < nerr && !r->err; i++) {
		uint32_t row = proto_r_u32(r);
		size_t len;
		const char *msg = proto_r_str16(r, &len);
		if (i > 0 || r->err)
			continue;
		if (single)
			snprintf(c->err, sizeof c->err, "%.*s", (int)len, msg);
		else
			snprintf(c->err, sizeof c->err, "row %u: %.*s", row,
				 (int)len, msg);
	}
	int rc = decoded(c, r, "batch result");
	if (rc < 0)
		return rc;
	if (nfailed && !c->err[0])
		snprintf(c->err, sizeof c->err, "%s", cohort_strerror(first));
	c->nfailed = nfailed;
	return single ? first : 0;
}

int cohort_client_resp_batch(cohort_client *c, const cohort_client_resp *resp,
			     int *row_status, size_t n)
{
	c->nfailed = 0;
	if (resp->status < 0)
		return resp->status;
	proto_rbuf r = { .p = resp->payload,
			 .end = resp->payload + resp->payload_len };
	return batch_result(c, &r, row_status, n, 0);
}

static int check_batch(cohort_client *c, size_t n)
{
	if (n == 0)
		return fail(c, COHORT_EINVAL, "an empty batch");
	if (n > UINT32_MAX || (c->info.max_batch && n > c->info.max_batch))
		return fail(c, COHORT_ELIMIT,
			    "batch of %zu rows: the server takes at most %u", n,
			    c->info.max_batch);
	return 0;
}

static int check_nfields(cohort_client *c, size_t n)
{
	if (n > UINT16_MAX)
		return fail(c, COHORT_ELIMIT, "%zu fields in one row", n);
	return 0;
}

/* A PUT or EVENT batch: rows[i].fields (PUT) or rows[i].updates (EVENT)
 * with their key and time; one status per row. */
static int write_rows(cohort_client *c, uint8_t op, const char *table,
		      const cohort_client_row *rows, size_t nrows,
		      int *row_status, int single)
{
	int rc = begin_table(c, op, table);
	if (rc < 0 || (rc = check_batch(c, nrows)) < 0)
		return rc;
	bool put = op == PROTO_OP_PUT;
	proto_put_row *pr = put ? arena(c, nrows * sizeof *pr) : NULL;
	proto_event_row *er = put ? NULL : arena(c, nrows * sizeof *er);
	if (!pr && !er)
		return fail(c, COHORT_ENOMEM, "out of memory");
	for (size_t i = 0; i < nrows; i++) {
		proto_key *k = put ? &pr[i].key : &er[i].key;
		if ((rc = set_key(c, k, rows[i].key, rows[i].key_len)) < 0 ||
		    (rc = check_nfields(c, rows[i].n)) < 0)
			return rc;
		if (put) {
			pr[i].time = rows[i].time;
			pr[i].nfields = (uint16_t)rows[i].n;
			pr[i].fields = (cohort_field *)rows[i].fields;
		} else {
			er[i].time = rows[i].time;
			er[i].nupdates = (uint16_t)rows[i].n;
			er[i].updates = (cohort_update *)rows[i].updates;
		}
	}
	if (put) {
		c->req.u.put.nrows = (uint32_t)nrows;
		c->req.u.put.rows = pr;
	} else {
		c->req.u.event.nrows = (uint32_t)nrows;
		c->req.u.event.rows = er;
	}
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0)
		return rc;
	return batch_result(c, &r, row_status, nrows, single);
}

int cohort_client_put(cohort_client *c, const char *table, const void *key,
		      size_t key_len, cohort_time time,
		      const cohort_field *fields, size_t nfields)
{
	cohort_client_row row = { key, key_len, time, fields, NULL, nfields };
	return write_rows(c, PROTO_OP_PUT, table, &row, 1, NULL, 1);
}

int cohort_client_put_batch(cohort_client *c, const char *table,
			    const cohort_client_row *rows, size_t nrows,
			    int *row_status)
{
	return write_rows(c, PROTO_OP_PUT, table, rows, nrows, row_status,
			  0);
}

int cohort_client_event(cohort_client *c, const char *table, const void *key,
			size_t key_len, cohort_time time,
			const cohort_update *updates, size_t nupdates)
{
	cohort_client_row row = { key, key_len, time, NULL, updates, nupdates };
	return write_rows(c, PROTO_OP_EVENT, table, &row, 1, NULL, 1);
}

int cohort_client_event_batch(cohort_client *c, const char *table,
			      const cohort_client_row *rows, size_t nrows,
			      int *row_status)
{
	return write_rows(c, PROTO_OP_EVENT, table, rows, nrows,
			  row_status, 0);
}

static int delete_keys(cohort_client *c, const char *table,
		       const cohort_key *keys, size_t nkeys, int *row_status,
		       int single)
{
	int rc = begin_table(c, PROTO_OP_DELETE, table);
	if (rc < 0 || (rc = check_batch(c, nkeys)) < 0)
		return rc;
	proto_key *pk = arena(c, nkeys * sizeof *pk);
	if (!pk)
		return fail(c, COHORT_ENOMEM, "out of memory");
	for (size_t i = 0; i < nkeys; i++)
		if ((rc = set_key(c, &pk[i], keys[i].ptr, keys[i].len)) < 0)
			return rc;
	c->req.u.del.nkeys = (uint32_t)nkeys;
	c->req.u.del.keys = pk;
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0)
		return rc;
	return batch_result(c, &r, row_status, nkeys, single);
}

int cohort_client_delete(cohort_client *c, const char *table, const void *key,
			 size_t key_len)
{
	cohort_key k = { key, key_len };
	return delete_keys(c, table, &k, 1, NULL, 1);
}

int cohort_client_delete_batch(cohort_client *c, const char *table,
			       const cohort_key *keys, size_t nkeys,
			       int *row_status)
{
	return delete_keys(c, table, keys, nkeys, row_status, 0);
}

/* ------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------ */
static int set_cols(cohort_client *c, const int *cols, size_t ncols)
{
	if (ncols > UINT16_MAX)
		return fail(c, COHORT_ELIMIT, "%zu columns in one read", ncols);
	for (size_t i = 0; i < ncols; i++)
		if (cols[i] < 0 || cols[i] > UINT16_MAX)
			return fail(c, COHORT_ENOCOLUMN, "column id %d", cols[i]);
	c->req.u.get.ncols = (uint16_t)ncols;
	c->req.u.get.cols = (int *)cols;
	return 0;
}

/* A decoded value: cat strings copied NUL-terminated (they pointed into
 * the frame). */
static int read_value(cohort_client *c, proto_rbuf *r, cohort_value *v)
{
	proto_r_value(r, &c->arena, v);
	if (r->err)
		return bad_response(c, "value");
	if (v->type == COHORT_CAT) {
		const char *s = arena_str(c, v->v.str.ptr, v->v.str.len);
		if (!s)
			return fail(c, COHORT_ENOMEM, "out of memory");
		v->v.str.ptr = s;
	}
	return 0;
}

int cohort_client_resp_get(cohort_client *c, const cohort_client_resp *resp,
			   cohort_value *out, size_t max_out, size_t *nout,
			   cohort_time *row_time)
{
	if (resp->status < 0)
		return resp->status;
	proto_rbuf r = { .p = resp->payload,
			 .end = resp->payload + resp->payload_len };
	uint8_t status = proto_r_u8(&r);
	int64_t t = proto_r_i64(&r);
	uint16_t n = proto_r_u16(&r);
	if (r.err || status > COHORT_ROW_EXPIRED)
		return bad_response(c, "get");
	if (n > max_out)
		return fail(c, COHORT_ERANGE,
			    "%u values do not fit in room for %zu", n, max_out);
	for (uint16_t i = 0; i < n; i++) {
		int rc = read_value(c, &r, &out[i]);
		if (rc < 0)
			return rc;
	}
	if (nout)
		*nout = n;
	if (row_time)
		*row_time = t;
	return status;
}

int cohort_client_get(cohort_client *c, const char *table, const void *key,
		      size_t key_len, const int *cols, size_t ncols,
		      cohort_time at, cohort_value *out, size_t max_out,
		      size_t *nout, cohort_time *row_time)
{
	int rc = begin_table(c, PROTO_OP_GET, table);
	if (rc < 0 || (rc = set_cols(c, cols, ncols)) < 0)
		return rc;
	if (ncols > max_out)
		return fail(c, COHORT_ERANGE, "%zu columns, room for %zu values",
			    ncols, max_out);
	proto_key k;
	if ((rc = set_key(c, &k, key, key_len)) < 0)
		return rc;
	c->req.u.get.at = at;
	c->req.u.get.nkeys = 1;
	c->req.u.get.keys = &k;
	uint32_t id;
	if ((rc = cohort_client_send(c, &c->req, &id)) < 0)
		return rc;
	cohort_client_resp resp;
	if ((rc = cohort_client_recv(c, &resp)) < 0)
		return rc;
	if (resp.status == 0 && resp.opcode != PROTO_OP_GET)
		return bad_response(c, "answer to another opcode");
	return cohort_client_resp_get(c, &resp, out, max_out, nout, row_time);
}

int cohort_client_resp_get_many(cohort_client *c,
				const cohort_client_resp *resp,
				const cohort_client_batch **out)
{
	if (resp->status < 0)
		return resp->status;
	proto_rbuf r = { .p = resp->payload,
			 .end = resp->payload + resp->payload_len };
	proto_block blk;
	int rc = proto_r_block(&r, &c->arena, &blk);
	if (rc < 0 || r.err)
		return bad_response(c, "get_many block");
	cohort_client_batch *b = arena(c, sizeof *b);
	cohort_client_block *cols = arena(c, blk.ncols * sizeof *cols);
	const char **strings = arena(c, blk.nstrings * sizeof *strings);
	if (!b || !cols || !strings)
		return fail(c, COHORT_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < blk.nstrings; i++)
		if (!(strings[i] = arena_str(c, blk.strings[i], blk.str_len[i])))
			return fail(c, COHORT_ENOMEM, "out of memory");
	for (uint16_t j = 0; j < blk.ncols; j++) {
		const proto_block_col *pc = &blk.cols[j];
		cohort_client_block *cb = &cols[j];
		cb->column = pc->column;
		cb->type = (cohort_type)pc->type;
		cb->dim = pc->dim;
		cb->width = pc->width;
		cb->values = pc->values;
		cb->valid = pc->valid;
		cb->strs = NULL;
		if (cb->type != COHORT_CAT)
			continue;
		const char **strs = arena(c, blk.nkeys * sizeof *strs);
		if (!strs)
			return fail(c, COHORT_ENOMEM, "out of memory");
		const uint32_t *codes = pc->values;
		for (uint32_t i = 0; i < blk.nkeys; i++) {
			strs[i] = NULL;
			if (!pc->valid[i])
				continue;
			if (codes[i] >= blk.nstrings)
				return bad_response(c, "cat index past the string table");
			strs[i] = strings[codes[i]];
		}
		cb->strs = strs;
	}
	b->nkeys = blk.nkeys;
	b->ncols = blk.ncols;
	b->status = blk.status;
	b->time = blk.time;
	b->cols = cols;
	b->nstrings = blk.nstrings;
	b->strings = strings;
	*out = b;
	return 0;
}

int cohort_client_get_many(cohort_client *c, const char *table,
			   const cohort_key *keys, size_t nkeys,
			   const int *cols, size_t ncols, cohort_time at,
			   const cohort_client_batch **out)
{
	int rc = begin_table(c, PROTO_OP_GET_MANY, table);
	if (rc < 0 || (rc = check_batch(c, nkeys)) < 0 ||
	    (rc = set_cols(c, cols, ncols)) < 0)
		return rc;
	proto_key *pk = arena(c, nkeys * sizeof *pk);
	if (!pk)
		return fail(c, COHORT_ENOMEM, "out of memory");
	for (size_t i = 0; i < nkeys; i++)
		if ((rc = set_key(c, &pk[i], keys[i].ptr, keys[i].len)) < 0)
			return rc;
	c->req.u.get.at = at;
	c->req.u.get.nkeys = (uint32_t)nkeys;
	c->req.u.get.keys = pk;
	uint32_t id;
	if ((rc = cohort_client_send(c, &c->req, &id)) < 0)
		return rc;
	cohort_client_resp resp;
	if ((rc = cohort_client_recv(c, &resp)) < 0)
		return rc;
	if (resp.status == 0 && resp.opcode != PROTO_OP_GET_MANY)
		return bad_response(c, "answer to another opcode");
	rc = cohort_client_resp_get_many(c, &resp, out);
	if (rc == 0 && (*out)->nkeys != nkeys)
		return bad_response(c, "get_many answered another number of keys");
	return rc;
}

/* ------------------------------------------------------------------------
 * Filters
 * ------------------------------------------------------------------------ */
int cohort_client_filter_new(cohort_client_filter **out)
{
	cohort_client_filter *f = calloc(1, sizeof *f);
	if (!f)
		return COHORT_ENOMEM;
	f->pf.nodes = f->nodes;
	*out = f;
	return 0;
}

static void node_clear(proto_filter_node *n)
{
	for (uint16_t i = 0; n->values && i < n->nvalues; i++)
		if (n->values[i].type == COHORT_CAT)
			free((void *)n->values[i].v.str.ptr);
	free(n->values);
	memset(n, 0, sizeof *n);
}

void cohort_client_filter_reset(cohort_client_filter *f)
{
	for (uint16_t i = 0; i < f->pf.nnodes; i++)
		node_clear(&f->nodes[i]);
	f->pf.nnodes = 0;
}

void cohort_client_filter_free(cohort_client_filter *f)
{
	if (!f)
		return;
	cohort_client_filter_reset(f);
	free(f);
}

static proto_filter_node *node_new(cohort_client_filter *f, int *id)
{
	if (f->pf.nnodes >= PROTO_MAX_FILTER_NODES) {
		*id = COHORT_ELIMIT;
		return NULL;
	}
	*id = f->pf.nnodes;
	proto_filter_node *n = &f->nodes[f->pf.nnodes];
	memset(n, 0, sizeof *n);
	return n;
}

/* Copy n values (cat strings included) into a node. */
static int node_values(proto_filter_node *n, const cohort_value *v,
		       size_t count)
{
	n->values = calloc(count ? count : 1, sizeof *n->values);
	if (!n->values)
		return COHORT_ENOMEM;
	for (size_t i = 0; i < count; i++) {
		n->values[i] = v[i];
		if (v[i].type == COHORT_CAT) {
			char *s = malloc((size_t)v[i].v.str.len + 1);
			if (!s) {
				n->nvalues = (uint16_t)i;
				node_clear(n);
				return COHORT_ENOMEM;
			}
			memcpy(s, v[i].v.str.ptr, v[i].v.str.len);
			s[v[i].v.str.len] = 0;
			n->values[i].v.str.ptr = s;
		} else if (v[i].type == COHORT_VEC) {
			n->values[i] = cohort_null();
			n->nvalues = (uint16_t)(i + 1);
			node_clear(n);
			return COHORT_EOP;
		}
		n->nvalues = (uint16_t)(i + 1);
	}
	n->nvalues = (uint16_t)count;
	return 0;
}

static int leaf(cohort_client_filter *f, uint8_t kind, int column,
		proto_filter_node **out)
{
	if (column < 0)
		return column;
	if (column > UINT16_MAX)
		return COHORT_ENOCOLUMN;
	int id;
	proto_filter_node *n = node_new(f, &id);
	if (!n)
		return id;
	n->kind = kind;
	n->column = (uint16_t)column;
	*out = n;
	return id;
}

int cohort_client_filter_cmp(cohort_client_filter *f, int column,
			     cohort_cmp cmp, cohort_value value)
{
	if (cmp < COHORT_EQ || cmp > COHORT_GE)
		return COHORT_EINVAL;
	proto_filter_node *n;
	int id = leaf(f, PROTO_FILTER_CMP, column, &n);
	if (id < 0)
		return id;
	n->cmp = (uint8_t)cmp;
	int rc = node_values(n, &value, 1);
	if (rc < 0)
		return rc;
	f->pf.nnodes++;
	return id;
}

int cohort_client_filter_in(cohort_client_filter *f, int column,
			    const cohort_value *set, size_t count)
{
	if (count > UINT16_MAX)
		return COHORT_ELIMIT;
	proto_filter_node *n;
	int id = leaf(f, PROTO_FILTER_IN, column, &n);
	if (id < 0)
		return id;
	int rc = node_values(n, set, count);
	if (rc < 0)
		return rc;
	f->pf.nnodes++;
	return id;
}

int cohort_client_filter_is_null(cohort_client_filter *f, int column)
{
	proto_filter_node *n;
	int id = leaf(f, PROTO_FILTER_IS_NULL, column, &n);
	if (id >= 0)
		f->pf.nnodes++;
	return id;
}

int cohort_client_filter_not_null(cohort_client_filter *f, int column)
{
	proto_filter_node *n;
	int id = leaf(f, PROTO_FILTER_NOT_NULL, column, &n);
	if (id >= 0)
		f->pf.nnodes++;
	return id;
}

static int combine(cohort_client_filter *f, uint8_t kind, int a, int b)
{
	if (a < 0)
		return a;
	if (b < 0)
		return b;
	if (a >= f->pf.nnodes || b >= f->pf.nnodes)
		return COHORT_EINVAL;
	int id;
	proto_filter_node *n = node_new(f, &id);
	if (!n)
		return id;
	n->kind = kind;
	n->a = (uint16_t)a;
	n->b = (uint16_t)b;
	f->pf.nnodes++;
	return id;
}

int cohort_client_filter_and(cohort_client_filter *f, int a, int b)
{
	return combine(f, PROTO_FILTER_AND, a, b);
}

int cohort_client_filter_or(cohort_client_filter *f, int a, int b)
{
	return combine(f, PROTO_FILTER_OR, a, b);
}

int cohort_client_filter_not(cohort_client_filter *f, int a)
{
	return combine(f, PROTO_FILTER_NOT, a, a);
}

int cohort_client_filter_persona(cohort_client_filter *f, const char *model,
				 uint32_t persona)
{
	size_t len = model ? strlen(model) : 0;
	if (len == 0 || len > COHORT_MAX_NAME)
		return COHORT_EBADNAME;
	int id;
	proto_filter_node *n = node_new(f, &id);
	if (!n)
		return id;
	n->kind = PROTO_FILTER_PERSONA;
	memcpy(n->model, model, len + 1);
	n->persona = persona;
	f->pf.nnodes++;
	return id;
}

const proto_filter *cohort_client_filter_proto(const cohort_client_filter *f)
{
	return &f->pf;
}

static void set_filter(proto_filter *dst, const cohort_client_filter *f)
{
	if (f)
		*dst = f->pf;
	else
		memset(dst, 0, sizeof *dst);
}

/* n str8 keys into an arena array of cohort_key (pointing into the frame). */
static int read_keys(cohort_client *c, proto_rbuf *r, uint32_t limit,
		     const cohort_key **keys, size_t *n)
{
	uint32_t nk = proto_r_u32(r);
	if (r->err || nk > limit || nk > (size_t)(r->end - r->p))
		return bad_response(c, "key list");
	cohort_key *k = arena(c, nk * sizeof *k);
	if (!k)
		return fail(c, COHORT_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < nk; i++) {
		size_t len;
		k[i].ptr = proto_r_str8(r, &len);
		k[i].len = len;
	}
	int rc = decoded(c, r, "key list");
	if (rc < 0)
		return rc;
	if (keys)
		*keys = k;
	if (n)
		*n = nk;
	return 0;
}

int cohort_client_filter_count(cohort_client *c, const char *table,
			       const cohort_client_filter *f, cohort_time at,
			       uint64_t *count)
{
	int rc = begin_table(c, PROTO_OP_FILTER_COUNT, table);
	if (rc < 0)
		return rc;
	c->req.u.filter.at = at;
	set_filter(&c->req.u.filter.filter, f);
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0)
		return rc;
	uint64_t got = proto_r_u64(&r);
	if ((rc = decoded(c, &r, "filter_count")) < 0)
		return rc;
	if (count)
		*count = got;
	return 0;
}

int cohort_client_filter_list(cohort_client *c, const char *table,
			      const cohort_client_filter *f, cohort_time at,
			      uint32_t limit, uint64_t *count,
			      const cohort_key **keys, size_t *n)
{
	int rc = begin_table(c, PROTO_OP_FILTER_LIST, table);
	if (rc < 0)
		return rc;
	c->req.u.filter.at = at;
	c->req.u.filter.limit = limit;
	set_filter(&c->req.u.filter.filter, f);
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0)
		return rc;
	uint64_t got = proto_r_u64(&r);
	if ((rc = read_keys(c, &r, limit, keys, n)) < 0)
		return rc;
	if (count)
		*count = got;
	return 0;
}

/* ------------------------------------------------------------------------
 * Nearest neighbours
 * ------------------------------------------------------------------------ */
int cohort_client_knn(cohort_client *c, const char *table, const char *index,
		      const cohort_client_knn_query *q, cohort_neighbor *out,
		      size_t *n)
{
	int rc = begin_named(c, PROTO_OP_KNN, table, index, "index");
	if (rc < 0)
		return rc;
	if (q->k == 0)
		return fail(c, COHORT_EINVAL, "k must be at least 1");
	c->req.u.knn.k = q->k;
	c->req.u.knn.ef = q->ef;
	c->req.u.knn.at = q->at;
	if (q->key) {
		if ((rc = set_key(c, &c->req.u.knn.key, q->key, q->key_len)) < 0)
			return rc;
	} else {
		if (!q->vec || q->dim == 0)
			return fail(c, COHORT_EINVAL,
				    "a knn query needs a key or a vector");
		c->req.u.knn.dim = q->dim;
		c->req.u.knn.vec = (float *)q->vec;
	}
	set_filter(&c->req.u.knn.filter, q->filter);
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0)
		return rc;
	uint32_t nn = proto_r_u32(&r);
	if (r.err || nn > q->k)
		return bad_response(c, "knn: more neighbours than k");
	for (uint32_t i = 0; i < nn; i++) {
		out[i].distance = proto_r_f32(&r);
		size_t len;
		const char *key = proto_r_str8(&r, &len);
		if (r.err)
			break;
		out[i].key_len = (uint32_t)len;
		memcpy(out[i].key, key, len);
	}
	if ((rc = decoded(c, &r, "knn")) < 0)
		return rc;
	*n = nn;
	return 0;
}

/* ------------------------------------------------------------------------
 * Personas
 * ------------------------------------------------------------------------ */
static int assign_result(cohort_client *c, proto_rbuf *r,
			 cohort_persona_result *out)
{
	uint8_t status = proto_r_u8(r);
	if (r->err || status > COHORT_ROW_EXPIRED)
		return bad_response(c, "persona_assign");
	if (status != COHORT_ROW_PRESENT) {
		int rc = decoded(c, r, "persona_assign");
		return rc < 0 ? rc : status;
	}
	memset(out, 0, sizeof *out);
	out->version = proto_r_u64(r);
	out->persona = proto_r_u32(r);
	out->distance = proto_r_f32(r);
	out->anomaly = proto_r_f32(r);
	out->m = proto_r_u8(r);
	if (out->m > COHORT_PERSONA_M_MAX)
		return bad_response(c, "persona_assign: m");
	for (size_t i = 0; i < out->m; i++) {
		out->nearest[i] = proto_r_u32(r);
		out->distances[i] = proto_r_f32(r);
	}
	out->nexplain = proto_r_u8(r);
	if (out->nexplain > COHORT_PERSONA_EXPLAIN)
		return bad_response(c, "persona_assign: explanation");
	for (size_t i = 0; i < out->nexplain; i++) {
		cohort_persona_feature *e = &out->explain[i];
		e->column = proto_r_u16(r);
		e->element = proto_r_u32(r);
		e->value = proto_r_f64(r);
		e->centroid = proto_r_f64(r);
		e->contribution = proto_r_f64(r);
	}
	int rc = decoded(c, r, "persona_assign");
	return rc < 0 ? rc : status;
}

static int check_m(cohort_client *c, size_t m)
{
	if (m < 1 || m > COHORT_PERSONA_M_MAX)
		return fail(c, COHORT_EINVAL, "m = %zu: must be 1 to %d", m,
			    COHORT_PERSONA_M_MAX);
	return 0;
}

int cohort_client_persona_assign(cohort_client *c, const char *table,
				 const char *model, const void *key,
				 size_t key_len, size_t m,
				 cohort_persona_result *out)
{
	int rc = begin_named(c, PROTO_OP_PERSONA_ASSIGN, table, model, "model");
	if (rc < 0 || (rc = check_m(c, m)) < 0 ||
	    (rc = set_key(c, &c->req.u.assign.key, key, key_len)) < 0)
		return rc;
	c->req.u.assign.m = (uint8_t)m;
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0)
		return rc;
	return assign_result(c, &r, out);
}

int cohort_client_persona_assign_values(cohort_client *c, const char *table,
					const char *model,
					const cohort_value *values, size_t n,
					size_t m, cohort_persona_result *out)
{
	int rc = begin_named(c, PROTO_OP_PERSONA_ASSIGN, table, model, "model");
	if (rc < 0 || (rc = check_m(c, m)) < 0)
		return rc;
	if (n == 0 || n > UINT16_MAX)
		return fail(c, COHORT_EINVAL, "%zu input values", n);
	c->req.u.assign.m = (uint8_t)m;
	c->req.u.assign.nvalues = (uint16_t)n;
	c->req.u.assign.values = (cohort_value *)values;
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0)
		return rc;
	return assign_result(c, &r, out);
}

int cohort_client_persona_members(cohort_client *c, const char *table,
				  const char *model, uint32_t persona,
				  const cohort_client_filter *f,
				  cohort_time at, uint32_t limit,
				  uint64_t *count, const cohort_key **keys,
				  size_t *n)
{
	int rc = begin_named(c, PROTO_OP_PERSONA_MEMBERS, table, model, "model");
	if (rc < 0)
		return rc;
	c->req.u.members.persona = persona;
	c->req.u.members.limit = limit;
	c->req.u.members.at = at;
	set_filter(&c->req.u.members.filter, f);
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0)
		return rc;
	uint64_t got = proto_r_u64(&r);
	if ((rc = read_keys(c, &r, limit, keys, n)) < 0)
		return rc;
	if (count)
		*count = got;
	return 0;
}

int cohort_client_persona_sizes(cohort_client *c, const char *table,
				const char *model,
				const cohort_client_sizes **out)
{
	int rc = begin_named(c, PROTO_OP_PERSONA_SIZES, table, model, "model");
	if (rc < 0)
		return rc;
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0)
		return rc;
	cohort_client_sizes *s = arena(c, sizeof *s);
	if (!s)
		return fail(c, COHORT_ENOMEM, "out of memory");
	s->version = proto_r_u64(&r);
	s->k = proto_r_u32(&r);
	/* each persona takes at least 9 bytes: a bound before allocating */
	if (r.err || s->k > COHORT_MAX_PERSONAS ||
	    (size_t)s->k * 9 > (size_t)(r.end - r.p))
		return bad_response(c, "persona_sizes");
	uint64_t *sizes = arena(c, s->k * sizeof *sizes);
	const char **names = arena(c, s->k * sizeof *names);
	if (!sizes || !names)
		return fail(c, COHORT_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < s->k; i++) {
		sizes[i] = proto_r_u64(&r);
		size_t len;
		const char *nm = proto_r_str8(&r, &len);
		if (r.err)
			break;
		if (!(names[i] = arena_str(c, nm, len)))
			return fail(c, COHORT_ENOMEM, "out of memory");
	}
	if ((rc = decoded(c, &r, "persona_sizes")) < 0)
		return rc;
	s->sizes = sizes;
	s->names = names;
	*out = s;
	return 0;
}

int cohort_client_persona_describe(cohort_client *c, const char *table,
				   const char *model,
				   const cohort_client_model **out)
{
	int rc = begin_named(c, PROTO_OP_PERSONA_DESCRIBE, table, model,
			     "model");
	if (rc < 0)
		return rc;
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0)
		return rc;
	cohort_client_model *m = arena(c, sizeof *m);
	if (!m)
		return fail(c, COHORT_ENOMEM, "out of memory");
	memset(m, 0, sizeof *m);
	m->version = proto_r_u64(&r);
	m->k = proto_r_u32(&r);
	m->dim = proto_r_u32(&r);
	uint8_t mode = proto_r_u8(&r);
	uint8_t training = proto_r_u8(&r);
	m->pending = proto_r_u64(&r);
	m->assigned = proto_r_u64(&r);
	m->ncolumns = proto_r_u8(&r);
	/* each persona takes at least 17 + 8 dim bytes: a bound before
	 * allocating */
	if (r.err || mode > COHORT_PERSONA_BACKGROUND || training > 1 ||
	    m->k > COHORT_MAX_PERSONAS || m->dim > COHORT_MAX_DIM ||
	    m->ncolumns > COHORT_PERSONA_MAX_INPUTS ||
	    (size_t)m->k * (17 + 8 * (size_t)m->dim) + 2 * m->ncolumns >
	    (size_t)(r.end - r.p))
		return bad_response(c, "persona_describe");
	m->mode = (cohort_persona_mode)mode;
	m->training = training;
	int *cols = arena(c, m->ncolumns * sizeof *cols);
	uint64_t *sizes = arena(c, m->k * sizeof *sizes);
	double *typical = arena(c, m->k * sizeof *typical);
	const char **names = arena(c, m->k * sizeof *names);
	double *cent = arena(c, (size_t)m->k * m->dim * sizeof *cent);
	if (!cols || !sizes || !typical || !names || !cent)
		return fail(c, COHORT_ENOMEM, "out of memory");
	for (size_t i = 0; i < m->ncolumns; i++)
		cols[i] = proto_r_u16(&r);
	for (uint32_t p = 0; p < m->k && !r.err; p++) {
		sizes[p] = proto_r_u64(&r);
		typical[p] = proto_r_f64(&r);
		size_t len;
		const char *nm = proto_r_str8(&r, &len);
		if (r.err)
			break;
		if (!(names[p] = arena_str(c, nm, len)))
			return fail(c, COHORT_ENOMEM, "out of memory");
		for (uint32_t j = 0; j < m->dim; j++)
			cent[(size_t)p * m->dim + j] = proto_r_f64(&r);
	}
	if ((rc = decoded(c, &r, "persona_describe")) < 0)
		return rc;
	m->columns = cols;
	m->sizes = sizes;
	m->typical = typical;
	m->names = names;
	m->centroids = cent;
	*out = m;
	return 0;
}

static int set_def_cols(cohort_client *c, const cohort_persona_def *def,
			uint8_t *ncols, int **cols)
{
	*ncols = 0;
	*cols = NULL;
	if (!def)
		return 0;
	if (def->ncolumns > 255)
		return fail(c, COHORT_ELIMIT, "%zu input columns", def->ncolumns);
	for (size_t i = 0; i < def->ncolumns; i++)
		if (def->columns[i] < 0 || def->columns[i] > UINT16_MAX)
			return fail(c, COHORT_ENOCOLUMN, "column id %d",
				    def->columns[i]);
	*ncols = (uint8_t)def->ncolumns;
	*cols = (int *)def->columns;
	return 0;
}

int cohort_client_persona_train(cohort_client *c, const char *table,
				const char *model,
				const cohort_persona_def *def,
				const cohort_train_opts *opts,
				uint64_t *version)
{
	int rc = begin_named(c, PROTO_OP_PERSONA_TRAIN, table, model, "model");
	if (rc < 0)
		return rc;
	if ((rc = set_def_cols(c, def, &c->req.u.train.ncols,
			       &c->req.u.train.cols)) < 0)
		return rc;
	if (def) {
		c->req.u.train.mode = (uint8_t)def->mode;
		c->req.u.train.max_delay_ms = def->max_delay_ms;
	}
	if (opts) {
		c->req.u.train.k = opts->k;
		c->req.u.train.iters = opts->iters;
		c->req.u.train.seed = opts->seed;
		c->req.u.train.sample = opts->sample;
		c->req.u.train.minibatch = opts->minibatch;
		c->req.u.train.background = opts->background;
	}
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0)
		return rc;
	uint64_t v = proto_r_u64(&r);
	if ((rc = decoded(c, &r, "persona_train")) < 0)
		return rc;
	schema_forget(c, table);
	if (version)
		*version = v;
	return 0;
}

int cohort_client_persona_upload(cohort_client *c, const char *table,
				 const char *model,
				 const cohort_persona_def *def, uint32_t k,
				 uint32_t dim, const float *centroids,
				 const double *mean, const double *sd,
				 uint64_t *version)
{
	int rc = begin_named(c, PROTO_OP_PERSONA_UPLOAD, table, model, "model");
	if (rc < 0)
		return rc;
	if ((rc = set_def_cols(c, def, &c->req.u.upload.ncols,
			       &c->req.u.upload.cols)) < 0)
		return rc;
	if (!centroids || k == 0 || dim == 0)
		return fail(c, COHORT_EINVAL, "upload needs k x dim centroids");
	if ((mean == NULL) != (sd == NULL))
		return fail(c, COHORT_EINVAL, "mean and sd go together");
	if (def) {
		c->req.u.upload.mode = (uint8_t)def->mode;
		c->req.u.upload.max_delay_ms = def->max_delay_ms;
	}
	c->req.u.upload.k = k;
	c->req.u.upload.dim = dim;
	c->req.u.upload.centroids = (float *)centroids;
	c->req.u.upload.mean = (double *)mean;
	c->req.u.upload.sd = (double *)sd;
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0)
		return rc;
	uint64_t v = proto_r_u64(&r);
	if ((rc = decoded(c, &r, "persona_upload")) < 0)
		return rc;
	schema_forget(c, table);
	if (version)
		*version = v;
	return 0;
}

/* ------------------------------------------------------------------------
 * Subscriptions
 * ------------------------------------------------------------------------ */
static cohort_client_change *chg_push(cohort_client *c)
{
	if (c->chg_head == c->chg_len)
		c->chg_head = c->chg_len = 0;
	if (c->chg_len == c->chg_cap) {
		if (c->chg_head > 0) {
			memmove(c->chg, c->chg + c->chg_head,
				(c->chg_len - c->chg_head) * sizeof *c->chg);
			c->chg_len -= c->chg_head;
			c->chg_head = 0;
		}
		if (c->chg_len == c->chg_cap) {
			size_t cap = c->chg_cap ? c->chg_cap * 2 : 64;
			cohort_client_change *p = realloc(c->chg, cap * sizeof *p);
			if (!p)
				return NULL;
			c->chg = p;
			c->chg_cap = cap;
		}
	}
	return &c->chg[c->chg_len++];
}

/* A CHANGES frame's body into the change queue. */
static int push_decode(cohort_client *c, const proto_hdr *h,
		       const uint8_t *body)
{
	if (h->opcode != PROTO_OP_CHANGES)
		return bad_response(c, "push of an unknown opcode");
	proto_rbuf r = { .p = body, .end = body + h->body_len };
	int32_t status = proto_r_i32(&r);
	uint64_t lost = proto_r_u64(&r);
	uint32_t n = proto_r_u32(&r);
	if (r.err || status != 0)
		return bad_response(c, "changes");
	for (uint32_t i = 0; i < n && !r.err; i++) {
		cohort_client_change *e = chg_push(c);
		if (!e)
			return drop(c, COHORT_ENOMEM,
				    "out of memory for pushed changes");
		e->sub = h->id;
		e->lost = i == 0 ? lost : 0;
		cohort_persona_change *ch = &e->change;
		ch->seq = proto_r_u64(&r);
		ch->time = proto_r_i64(&r);
		ch->version = proto_r_u64(&r);
		ch->old_persona = proto_r_u32(&r);
		ch->new_persona = proto_r_u32(&r);
		size_t len;
		const char *key = proto_r_str8(&r, &len);
		if (r.err) {
			c->chg_len--;
			break;
		}
		ch->key_len = (uint32_t)len;
		if (len)
			memcpy(ch->key, key, len);
	}
	return r.err ? bad_response(c, "changes") : 0;
}

int cohort_client_subscribe(cohort_client *c, const char *table,
			    const char *model, uint64_t cursor,
			    uint32_t *sub, uint64_t *start)
{
	int rc = begin_named(c, PROTO_OP_SUBSCRIBE, table, model, "model");
	if (rc < 0)
		return rc;
	c->req.u.subscribe.cursor = cursor;
	uint32_t id = c->next_id;
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0)
		return rc;
	uint64_t got = proto_r_u64(&r);
	if ((rc = decoded(c, &r, "subscribe")) < 0)
		return rc;
	if (sub)
		*sub = id;
	if (start)
		*start = got;
	return 0;
}

int cohort_client_unsubscribe(cohort_client *c, const char *table,
			      const char *model)
{
	int rc = begin_named(c, PROTO_OP_UNSUBSCRIBE, table, model, "model");
	if (rc < 0)
		return rc;
	proto_rbuf r;
	return call(c, &r);
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cohort_client_changes(cohort_client *c, cohort_client_change *out,
			  size_t max, int timeout_ms, size_t *n)
{
	*n = 0;
	c->err[0] = 0;
	int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	for (;;) {
		if (c->fd >= 0) {
			int rc = pump_pushes(c);
			if (rc < 0)
				return rc;
		}
		if (c->chg_len > c->chg_head || max == 0)
			break;
		if (c->fd < 0)
			return fail(c, COHORT_ECLOSED, "not connected");
		int wait = timeout_ms < 0 ? -1
					  : (int)(deadline - mono_ms());
		if (timeout_ms >= 0 && wait <= 0)
			break;
		struct pollfd p = { .fd = c->fd, .events = POLLIN,
				    .revents = 0 };
		int pn = poll(&p, 1, wait);
		if (pn < 0 && errno != EINTR)
			return io_lost(c, "poll", errno);
		if (pn > 0) {
			ssize_t got = in_read(c, MSG_DONTWAIT);
			if (got < 0)
				return (int)got;
		}
	}
	size_t k = c->chg_len - c->chg_head;
	if (k > max)
		k = max;
	if (k)
		memcpy(out, c->chg + c->chg_head, k * sizeof *out);
	c->chg_head += k;
	*n = k;
	return 0;
}

/* ------------------------------------------------------------------------
 * Administration
 * ------------------------------------------------------------------------ */
int cohort_client_snapshot(cohort_client *c)
{
	int rc = begin(c, PROTO_OP_SNAPSHOT);
	if (rc < 0)
		return rc;
	proto_rbuf r;
	return call(c, &r);
}

int cohort_client_stats(cohort_client *c, const cohort_client_stat **stats,
			size_t *n, const char **io_path)
{
	int rc = begin(c, PROTO_OP_STATS);
	if (rc < 0)
		return rc;
	proto_rbuf r;
	if ((rc = call(c, &r)) < 0)
		return rc;
	uint16_t ns = proto_r_u16(&r);
	cohort_client_stat *st = arena(c, ns * sizeof *st);
	if (!st)
		return fail(c, COHORT_ENOMEM, "out of memory");
	for (uint16_t i = 0; i < ns && !r.err; i++) {
		size_t len;
		const char *nm = proto_r_str8(&r, &len);
		st[i].value = proto_r_u64(&r);
		if (r.err)
			break;
		if (!(st[i].name = arena_str(c, nm, len)))
			return fail(c, COHORT_ENOMEM, "out of memory");
	}
	size_t plen;
	const char *path = proto_r_str16(&r, &plen);
	if ((rc = decoded(c, &r, "stats")) < 0)
		return rc;
	const char *p = arena_str(c, path, plen);
	if (!p)
		return fail(c, COHORT_ENOMEM, "out of memory");
	*stats = st;
	*n = ns;
	if (io_path)
		*io_path = p;
	return 0;
}
