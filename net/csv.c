/*
 * csv.c -- the strict CSV reader of csv.h.
 *
 * One state machine reads bytes from the current source window (the whole
 * buffer for memory input, a CHUNK-byte window refilled by fread or read(2)
 * for a FILE or a file descriptor) and appends each field's unescaped bytes
 * plus a NUL to r->rec, recording its offset in r->foff. Only when the
 * record is complete are the views in r->fbuf pointed into r->rec, since
 * r->rec may move while it grows.
 *
 * Invariants: r->cur_line is the line of the next unread byte (it advances on
 * every LF consumed, in quotes or not); r->base + r->pos is the input offset
 * of that byte; r->status is 0 or the sticky error; r->rec_len <=
 * r->max_record. While r->keep is set (csv_mark on an input that cannot
 * seek) the window only grows, so every byte from the mark on stays in it.
 */
#include "csv.h"

#include "cohort.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (64u << 10)

enum {
	ST_FIELD_START,   /* at the start of a field */
	ST_UNQUOTED,      /* inside an unquoted field */
	ST_QUOTED,        /* inside quotes */
	ST_QUOTE_SEEN,    /* a quote inside quotes: end of field or "" */
	ST_CR             /* a CR outside quotes: LF must follow */
};

static void vseterr(char *err, size_t err_len, const char *fmt, va_list ap)
{
	if (err && err_len)
		vsnprintf(err, err_len, fmt, ap);
}

static void seterr(char *err, size_t err_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vseterr(err, err_len, fmt, ap);
	va_end(ap);
}

/* Record a sticky error at `line` and return its code. */
static int fail(csv_reader *r, int code, uint64_t line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(csv_reader *r, int code, uint64_t line, const char *fmt, ...)
{
	int n = 0;
	if (line > 0)  /* 0: an argument error, not about the input */
		n = snprintf(r->err, sizeof r->err, "line %llu: ",
			     (unsigned long long)line);
	if (n < 0 || (size_t)n >= sizeof r->err)
		n = 0;
	va_list ap;
	va_start(ap, fmt);
	vseterr(r->err + n, sizeof r->err - (size_t)n, fmt, ap);
	va_end(ap);
	r->err_why = (size_t)n;
	r->err_line = line;
	r->status = code;
	return code;
}

/* A malformed byte in the middle of a line: the error, and csv_skip_bad
 * drops the rest of that line. */
static int bad_byte(csv_reader *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int bad_byte(csv_reader *r, const char *fmt, ...)
{
	char msg[CSV_ERR_LEN];
	va_list ap;
	va_start(ap, fmt);
	vseterr(msg, sizeof msg, fmt, ap);
	va_end(ap);
	r->skip_line = true;
	return fail(r, COHORT_ECORRUPT, r->cur_line, "%s", msg);
}

static void *ralloc(csv_reader *r, void *p, size_t n)
{
	return r->alloc_cb ? r->alloc_cb(p, n) : realloc(p, n);
}

static void rfree(csv_reader *r, void *p)
{
	if (!p)
		return;
	if (r->alloc_cb)
		r->alloc_cb(p, 0);
	else
		free(p);
}

static bool is_stream(const csv_reader *r)
{
	return r->fp || r->fd >= 0;
}

/* Read into chunk[src_len..chunk_cap): bytes read, 0 at the end, < 0 on
 * error (errno kept in *err). */
static long read_more(csv_reader *r, int *err)
{
	size_t room = r->chunk_cap - r->src_len;
	if (r->fp) {
		size_t n = fread(r->chunk + r->src_len, 1, room, r->fp);
		if (n == 0 && ferror(r->fp)) {
			*err = errno;
			return -1;
		}
		return (long)n;
	}
	for (;;) {
		ssize_t n = read(r->fd, r->chunk + r->src_len, room);
		if (n >= 0)
			return (long)n;
		if (errno != EINTR) {
			*err = errno;
			return -1;
		}
	}
}

/* Make src[pos..src_len) non-empty. 1: bytes available, 0: end of input,
 * < 0: error. */
static int fill(csv_reader *r)
{
	if (r->pos < r->src_len)
		return 1;
	if (r->at_eof || !is_stream(r))
		return 0;
	if (!r->chunk) {
		r->chunk = ralloc(r, NULL, CHUNK);
		if (!r->chunk)
			return fail(r, COHORT_ENOMEM, r->cur_line,
				    "out of memory for the read buffer");
		r->chunk_cap = CHUNK;
	}
	if (!r->keep) {
		r->base += r->src_len;
		r->src_len = r->pos = 0;
	} else if (r->src_len == r->chunk_cap) {
		char *p = ralloc(r, r->chunk, r->chunk_cap * 2);
		if (!p)
			return fail(r, COHORT_ENOMEM, r->cur_line,
				    "out of memory keeping %zu bytes to read "
				    "again", r->chunk_cap * 2);
		r->chunk = p;
		r->chunk_cap *= 2;
	}
	int err = 0;
	long n = read_more(r, &err);
	if (n < 0)
		return fail(r, COHORT_EIO, r->cur_line, "read error: %s",
			    strerror(err));
	r->src = r->chunk;
	if (n == 0) {
		r->at_eof = true;
		return 0;
	}
	r->src_len += (size_t)n;
	return 1;
}

static int rec_grow(csv_reader *r, size_t need)
{
	if (need > r->max_record)
		return fail(r, COHORT_ELIMIT, r->line,
			    "record longer than %zu bytes (an unterminated "
			    "quote?)", r->max_record);
	size_t cap = r->rec_cap ? r->rec_cap : 256;
	while (cap < need)
		cap *= 2;
	char *p = ralloc(r, r->rec, cap);
	if (!p)
		return fail(r, COHORT_ENOMEM, r->line,
			    "out of memory for a %zu-byte record", need);
	r->rec = p;
	r->rec_cap = cap;
	return 0;
}

static inline int rec_push(csv_reader *r, char c)
{
	if (r->rec_len == r->rec_cap) {
		int rc = rec_grow(r, r->rec_len + 1);
		if (rc < 0)
			return rc;
	}
	r->rec[r->rec_len++] = c;
	return 0;
}

/* Append the run of ordinary bytes at the read position (up to the next
 * byte the state machine must see) in one copy: most bytes of a file are
 * ordinary, and this keeps them out of the per-byte loop. */
static int push_run(csv_reader *r, bool quoted)
{
	const char *p = r->src + r->pos, *end = r->src + r->src_len, *q = p;
	if (quoted)
		while (q < end && *q != '"' && *q != '\n' && *q != '\0')
			q++;
	else
		while (q < end && *q != r->delim && *q != '\n' && *q != '\r' &&
		       *q != '"' && *q != '\0')
			q++;
	size_t n = (size_t)(q - p);
	if (n == 0)
		return 0;
	if (r->rec_cap - r->rec_len < n) {
		int rc = rec_grow(r, r->rec_len + n);
		if (rc < 0)
			return rc;
	}
	memcpy(r->rec + r->rec_len, p, n);
	r->rec_len += n;
	r->pos += n;
	return 0;
}

/* Close the field that started at offset `start` in rec. */
static int field_end(csv_reader *r, size_t start)
{
	if (r->nfields == r->fcap) {
		size_t cap = r->fcap ? r->fcap * 2 : 16;
		csv_field *f = ralloc(r, r->fbuf, cap * sizeof *f);
		if (!f)
			return fail(r, COHORT_ENOMEM, r->line,
				    "out of memory for %zu fields", cap);
		r->fbuf = f;
		size_t *o = ralloc(r, r->foff, cap * sizeof *o);
		if (!o)
			return fail(r, COHORT_ENOMEM, r->line,
				    "out of memory for %zu fields", cap);
		r->foff = o;
		r->fcap = cap;
	}
	r->foff[r->nfields] = start;
	r->fbuf[r->nfields].len = r->rec_len - start;
	r->nfields++;
	return rec_push(r, '\0');
}

/* Drop the bytes up to and including the next LF (csv_skip_bad). */
static int skip_line(csv_reader *r)
{
	for (;;) {
		int rc = fill(r);
		if (rc <= 0)
			return rc;
		const char *p = r->src + r->pos;
		const char *nl = memchr(p, '\n', r->src_len - r->pos);
		if (nl) {
			r->pos += (size_t)(nl - p) + 1;
			r->cur_line++;
			r->skip_line = false;
			return 0;
		}
		r->pos = r->src_len;
	}
}

/* Read one record into rec/fbuf. 1: a record, 0: end of input, < 0: error.
 * *quoted: whether any field of it was in quotes. */
static int read_one(csv_reader *r, bool *quoted)
{
	int state = ST_FIELD_START;
	size_t start = 0;
	uint64_t quote_line = 0;
	int rc;

	r->rec_len = 0;
	r->nfields = 0;
	r->line = r->cur_line;
	*quoted = false;
	for (;;) {
		rc = fill(r);
		if (rc < 0)
			return rc;
		if (rc == 0) {
			/* End of input. */
			switch (state) {
			case ST_FIELD_START:
				if (r->nfields == 0)
					return 0;  /* nothing since the last line end */
				start = r->rec_len;  /* an empty last field */
				break;
			case ST_QUOTED:
				return fail(r, COHORT_ECORRUPT, quote_line,
					    "field %zu: the quote opened on this "
					    "line is never closed", r->nfields + 1);
			case ST_CR:
				return fail(r, COHORT_ECORRUPT, r->cur_line,
					    "CR not followed by LF");
			default:
				break;
			}
			rc = field_end(r, start);
			if (rc < 0)
				return rc;
			return 1;
		}
		char c = r->src[r->pos++];
		if (c == '\0')
			return bad_byte(r, "NUL byte in the input");
		switch (state) {
		case ST_FIELD_START:
			start = r->rec_len;
			if (c == '"') {
				state = ST_QUOTED;
				quote_line = r->cur_line;
				*quoted = true;
				continue;
			}
			state = ST_UNQUOTED;
			/* FALLTHROUGH */
		case ST_UNQUOTED:
			if (c == r->delim) {
				if ((rc = field_end(r, start)) < 0)
					return rc;
				state = ST_FIELD_START;
			} else if (c == '\n') {
				if ((rc = field_end(r, start)) < 0)
					return rc;
				r->cur_line++;
				return 1;
			} else if (c == '\r') {
				state = ST_CR;
			} else if (c == '"') {
				return bad_byte(r, "stray quote in unquoted field "
						"%zu", r->nfields + 1);
			} else if ((rc = rec_push(r, c)) < 0 ||
				   (rc = push_run(r, false)) < 0) {
				return rc;
			}
			break;
		case ST_QUOTED:
			if (c == '"') {
				state = ST_QUOTE_SEEN;
				break;
			}
			if (c == '\n')
				r->cur_line++;
			if ((rc = rec_push(r, c)) < 0 ||
			    (rc = push_run(r, true)) < 0)
				return rc;
			break;
		case ST_QUOTE_SEEN:
			if (c == '"') {
				if ((rc = rec_push(r, '"')) < 0)
					return rc;
				state = ST_QUOTED;
			} else if (c == r->delim) {
				if ((rc = field_end(r, start)) < 0)
					return rc;
				state = ST_FIELD_START;
			} else if (c == '\n') {
				if ((rc = field_end(r, start)) < 0)
					return rc;
				r->cur_line++;
				return 1;
			} else if (c == '\r') {
				state = ST_CR;
			} else {
				return bad_byte(r, "field %zu: text after its "
						"closing quote (a quote inside a "
						"quoted field is written \"\")",
						r->nfields + 1);
			}
			break;
		case ST_CR:
			if (c != '\n')
				return bad_byte(r, "CR not followed by LF");
			if ((rc = field_end(r, start)) < 0)
				return rc;
			r->cur_line++;
			return 1;
		}
	}
}

/* The next record (blank lines skipped with CSV_SKIP_BLANK), its views
 * pointed into rec. 1, 0 at the end, < 0: error. */
static int read_record(csv_reader *r, bool header)
{
	if (r->skip_line) {
		int rc = skip_line(r);
		if (rc < 0)
			return rc;
	}
	for (;;) {
		bool quoted;
		int rc = read_one(r, &quoted);
		if (rc <= 0)
			return rc;
		if (!header && (r->flags & CSV_SKIP_BLANK) && r->nfields == 1 &&
		    r->fbuf[0].len == 0 && !quoted)
			continue;
		for (size_t i = 0; i < r->nfields; i++)
			r->fbuf[i].ptr = r->rec + r->foff[i];
		r->fields = r->fbuf;
		return 1;
	}
}

char csv_detect_delim(const char *buf, size_t len)
{
	size_t n[3] = { 0, 0, 0 };  /* , ; tab */
	bool quoted = false;
	for (size_t i = 0; i < len && (quoted || buf[i] != '\n'); i++) {
		char c = buf[i];
		if (c == '"')
			quoted = !quoted;
		else if (!quoted)
			n[0] += c == ',', n[1] += c == ';', n[2] += c == '\t';
	}
	return n[1] > n[0] && n[1] >= n[2] ? ';' : n[2] > n[0] ? '\t' : ',';
}

static int open_common(csv_reader *r, char delim)
{
	/* Skip a UTF-8 byte order mark. */
	static const char bom[3] = { '\xEF', '\xBB', '\xBF' };
	size_t nbom = 0;
	while (nbom < 3) {
		int rc = fill(r);
		if (rc < 0)
			return rc;
		if (rc == 0 || r->src[r->pos] != bom[nbom])
			break;
		r->pos++;
		nbom++;
	}
	if (nbom != 0 && nbom != 3)
		return fail(r, COHORT_ECORRUPT, 1,
			    "truncated byte order mark");
	if (delim == 0) {
		/* The first window holds the first line, or enough of it. */
		int rc = fill(r);
		if (rc < 0)
			return rc;
		delim = csv_detect_delim(r->src + r->pos, r->src_len - r->pos);
	}
	if (delim == '"' || delim == '\r' || delim == '\n' || delim == '\0')
		return fail(r, COHORT_EINVAL, 0, "invalid delimiter 0x%02x",
			    (unsigned char)delim);
	r->delim = delim;

	int rc = read_record(r, true);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return fail(r, COHORT_ECORRUPT, 1, "empty input: no header");

	/* Keep the header in its own buffer: rec is reused by csv_next. */
	r->header_buf = ralloc(r, NULL, r->rec_len);
	r->header_fields = ralloc(r, NULL, r->nfields * sizeof *r->header_fields);
	if (!r->header_buf || !r->header_fields)
		return fail(r, COHORT_ENOMEM, 1, "out of memory for the header");
	memcpy(r->header_buf, r->rec, r->rec_len);
	for (size_t i = 0; i < r->nfields; i++) {
		r->header_fields[i].ptr = r->header_buf + r->foff[i];
		r->header_fields[i].len = r->fbuf[i].len;
	}
	r->header = r->header_fields;
	r->nheader = r->nfields;
	r->fields = NULL;
	r->nfields = 0;
	return 0;
}

/* The file offset of fp or fd now, or -1 when it cannot seek (a pipe, a
 * terminal): only a regular file is read twice by seeking. */
static int64_t start_pos(FILE *fp, int fd)
{
	struct stat st;
	int f = fp ? fileno(fp) : fd;
	if (f >= 0 && (fstat(f, &st) != 0 || !S_ISREG(st.st_mode)))
		return -1;
	off_t at = fp ? ftello(fp) : lseek(fd, 0, SEEK_CUR);
	return at < 0 ? -1 : (int64_t)at;
}

static void reset(csv_reader *r, const csv_opts *opts)
{
	memset(r, 0, sizeof *r);
	r->cur_line = 1;
	r->max_record = CSV_MAX_RECORD;
	r->fd = -1;
	if (opts) {
		r->flags = opts->flags;
		r->alloc_cb = opts->alloc_cb;
	}
}

int csv_open_opts(csv_reader *r, const csv_opts *opts, FILE *fp, int fd,
		  const char *buf, size_t len)
{
	reset(r, opts);
	if (fp) {
		r->fp = fp;
	} else if (fd >= 0) {
		r->fd = fd;
	} else {
		if (!buf && len)
			return fail(r, COHORT_EINVAL, 0, "no buffer");
		r->src = buf;
		r->src_len = len;
	}
	if (is_stream(r))
		r->start_pos = start_pos(fp, fd);
	return open_common(r, opts ? opts->delim : ',');
}

int csv_open_mem(csv_reader *r, const char *buf, size_t len, char delim)
{
	csv_opts o = { .delim = delim };
	return csv_open_opts(r, &o, NULL, -1, buf, len);
}

int csv_open_file(csv_reader *r, FILE *fp, char delim)
{
	csv_opts o = { .delim = delim };
	if (!fp) {
		reset(r, &o);
		return fail(r, COHORT_EINVAL, 0, "no file");
	}
	return csv_open_opts(r, &o, fp, -1, NULL, 0);
}

int csv_open_fd(csv_reader *r, int fd, char delim)
{
	csv_opts o = { .delim = delim };
	if (fd < 0) {
		reset(r, &o);
		return fail(r, COHORT_EINVAL, 0, "no file descriptor");
	}
	return csv_open_opts(r, &o, NULL, fd, NULL, 0);
}

void csv_close(csv_reader *r)
{
	rfree(r, r->chunk);
	rfree(r, r->rec);
	rfree(r, r->fbuf);
	rfree(r, r->foff);
	rfree(r, r->header_buf);
	rfree(r, r->header_fields);
	r->chunk = r->rec = r->header_buf = NULL;
	r->fbuf = r->header_fields = NULL;
	r->foff = NULL;
	r->fields = r->header = NULL;
	r->nfields = r->nheader = 0;
	r->rec_cap = r->rec_len = r->fcap = r->chunk_cap = 0;
	r->src = NULL;
	r->src_len = r->pos = 0;
	r->fp = NULL;
	r->fd = -1;
	r->marked = r->keep = false;
	if (!r->status)  /* a closed reader reads nothing */
		fail(r, COHORT_EINVAL, 0, "the reader is closed");
}

int csv_next(csv_reader *r)
{
	if (r->status)
		return r->status;
	r->fields = NULL;
	int rc = read_record(r, false);
	if (rc <= 0) {
		r->nfields = 0;
		return rc;
	}
	if (r->nfields != r->nheader && !(r->flags & CSV_ANY_WIDTH)) {
		uint64_t line = r->line;
		size_t n = r->nfields;
		r->fields = NULL;
		r->nfields = 0;
		return fail(r, COHORT_ECORRUPT, line,
			    "%zu field%s, the header has %zu", n,
			    n == 1 ? "" : "s", r->nheader);
	}
	return 1;
}

int csv_skip_bad(csv_reader *r)
{
	/* Only a malformed record: the header or the input itself failing
	 * leaves nothing to go on with. */
	if (r->status != COHORT_ECORRUPT || !r->header)
		return r->status;
	r->status = 0;
	return 0;
}

int csv_mark(csv_reader *r)
{
	if (r->status)
		return r->status;
	if (!r->header)
		return fail(r, COHORT_EINVAL, 0, "no header read");
	if (is_stream(r) && r->start_pos < 0) {
		/* Keep from here on: drop what was parsed before. */
		if (r->chunk && r->pos)
			memmove(r->chunk, r->chunk + r->pos, r->src_len - r->pos);
		r->base += r->pos;
		r->src_len -= r->pos;
		r->pos = 0;
		r->keep = true;
	}
	r->mark_off = r->base + r->pos;
	r->mark_line = r->cur_line;
	r->marked = true;
	return 0;
}

int csv_rewind(csv_reader *r)
{
	if (r->status && r->status != COHORT_ECORRUPT)
		return r->status;
	if (!r->marked)
		return fail(r, COHORT_EINVAL, 0, "no mark to go back to");
	if (!is_stream(r) || r->keep) {
		r->pos = (size_t)(r->mark_off - r->base);
		r->keep = false;
	} else {
		int64_t at = r->start_pos + (int64_t)r->mark_off;
		int bad = r->fp ? fseeko(r->fp, (off_t)at, SEEK_SET) != 0
				: lseek(r->fd, (off_t)at, SEEK_SET) != at;
		if (bad)
			return fail(r, COHORT_EIO, r->cur_line,
				    "cannot go back to read it again: %s",
				    strerror(errno));
		if (r->fp)
			clearerr(r->fp);
		r->base = r->mark_off;
		r->src_len = r->pos = 0;
		r->at_eof = false;
	}
	r->cur_line = r->mark_line;
	r->skip_line = false;
	r->fields = NULL;
	r->nfields = 0;
	r->status = 0;
	r->err[0] = '\0';
	r->err_line = 0;
	r->err_why = 0;
	return 0;
}

uint64_t csv_kept(const csv_reader *r)
{
	return r->keep ? r->base + r->src_len - r->mark_off : 0;
}

uint64_t csv_offset(const csv_reader *r)
{
	return r->base + r->pos;
}

const char *csv_why(const csv_reader *r)
{
	return r->err + (r->err_why < sizeof r->err ? r->err_why : 0);
}

int csv_column(const csv_reader *r, const char *name)
{
	size_t len = strlen(name);
	for (size_t i = 0; i < r->nheader; i++)
		if (r->header[i].len == len &&
		    memcmp(r->header[i].ptr, name, len) == 0)
			return i > (size_t)INT32_MAX ? COHORT_ELIMIT : (int)i;
	return COHORT_ENOCOLUMN;
}

/* ---- numbers ----------------------------------------------------------- */

/* At most this many bytes of the field go into a message. */
#define SHOW 40

static int show_len(size_t len)
{
	return len > SHOW ? SHOW : (int)len;
}

static const char *show_more(size_t len)
{
	return len > SHOW ? "..." : "";
}

int csv_parse_i64(const char *p, size_t len, int64_t min, int64_t max,
		  int64_t *out, char *err, size_t err_len)
{
	size_t i = 0;
	bool neg = false;
	if (i < len && (p[i] == '+' || p[i] == '-')) {
		neg = p[i] == '-';
		i++;
	}
	if (i == len) {
		seterr(err, err_len, "'%.*s%s' is not an integer",
		       show_len(len), p, show_more(len));
		return COHORT_EINVAL;
	}
	/* Accumulate the magnitude as unsigned so INT64_MIN fits. */
	uint64_t mag = 0;
	bool overflow = false;
	const uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < len; i++) {
		if (p[i] < '0' || p[i] > '9') {
			seterr(err, err_len, "'%.*s%s' is not an integer",
			       show_len(len), p, show_more(len));
			return COHORT_EINVAL;
		}
		unsigned d = (unsigned)(p[i] - '0');
		if (mag > (limit - d) / 10)
			overflow = true;   /* keep scanning: syntax errors win */
		else
			mag = mag * 10 + d;
	}
	int64_t v = 0;
	if (!overflow) {
		if (neg)
			v = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN
							   : -(int64_t)mag;
		else
			v = (int64_t)mag;
	}
	if (overflow || v < min || v > max) {
		seterr(err, err_len, "%.*s%s is out of range [%lld, %lld]",
		       show_len(len), p, show_more(len), (long long)min,
		       (long long)max);
		return COHORT_ERANGE;
	}
	*out = v;
	return 0;
}

static size_t digits(const char *p, size_t len, size_t i)
{
	while (i < len && p[i] >= '0' && p[i] <= '9')
		i++;
	return i;
}

int csv_parse_f64(const char *p, size_t len, double *out, char *err,
		  size_t err_len)
{
	/* Check the syntax here: strtod also takes spaces, hex, inf, nan. */
	size_t i = 0;
	if (i < len && (p[i] == '+' || p[i] == '-'))
		i++;
	size_t j = digits(p, len, i);
	size_t nint = j - i;
	size_t nfrac = 0;
	i = j;
	if (i < len && p[i] == '.') {
		j = digits(p, len, i + 1);
		nfrac = j - (i + 1);
		i = j;
	}
	bool ok = nint + nfrac > 0;
	if (ok && i < len && (p[i] == 'e' || p[i] == 'E')) {
		i++;
		if (i < len && (p[i] == '+' || p[i] == '-'))
			i++;
		j = digits(p, len, i);
		ok = j > i;
		i = j;
	}
	if (!ok || i != len) {
		seterr(err, err_len, "'%.*s%s' is not a number",
		       show_len(len), p, show_more(len));
		return COHORT_EINVAL;
	}

	/* strtod needs a terminated string; fields usually are, but a caller
	 * may pass any slice. */
	char stack[128];
	char *s = stack;
	if (len >= sizeof stack) {
		s = malloc(len + 1);
		if (!s) {
			seterr(err, err_len, "out of memory");
			return COHORT_ENOMEM;
		}
	}
	memcpy(s, p, len);
	s[len] = '\0';
	int saved = errno;  /* strtod reports through errno; leave it as found */
	errno = 0;
	char *end;
	double v = strtod(s, &end);
	bool range = errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL);
	bool whole = end == s + len;
	errno = saved;
	if (s != stack)
		free(s);
	if (!whole) {
		/* Only a locale with another decimal point gets here. */
		seterr(err, err_len, "'%.*s%s' is not a number in this locale",
		       show_len(len), p, show_more(len));
		return COHORT_EINVAL;
	}
	if (range) {
		seterr(err, err_len, "%.*s%s is out of the range of a double",
		       show_len(len), p, show_more(len));
		return COHORT_ERANGE;
	}
	*out = v;
	return 0;
}

/* Prefix a helper's message with the line and the column name. */
static int field_err(csv_reader *r, size_t col, int rc, const char *msg)
{
	const csv_field *h = col < r->nheader ? &r->header[col] : NULL;
	int n = snprintf(r->err, sizeof r->err, "line %llu, ",
			 (unsigned long long)r->line);
	r->err_why = n > 0 && (size_t)n < sizeof r->err ? (size_t)n : 0;
	snprintf(r->err + r->err_why, sizeof r->err - r->err_why,
		 "column '%.*s': %s", h ? show_len(h->len) : 0, h ? h->ptr : "",
		 msg);
	r->err_line = r->line;
	return rc;
}

int csv_get_i64(csv_reader *r, size_t col, int64_t min, int64_t max,
		int64_t *out)
{
	if (col >= r->nfields)
		return field_err(r, col, COHORT_EINVAL, "no such field");
	char msg[160];
	int rc = csv_parse_i64(r->fields[col].ptr, r->fields[col].len, min, max,
			       out, msg, sizeof msg);
	return rc < 0 ? field_err(r, col, rc, msg) : 0;
}

int csv_get_f64(csv_reader *r, size_t col, double *out)
{
	if (col >= r->nfields)
		return field_err(r, col, COHORT_EINVAL, "no such field");
	char msg[160];
	int rc = csv_parse_f64(r->fields[col].ptr, r->fields[col].len, out,
			       msg, sizeof msg);
	return rc < 0 ? field_err(r, col, rc, msg) : 0;
}
