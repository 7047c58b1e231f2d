/*
 * auth.c -- cohortd's token file and the constant-time token check.
 *
 * The file is read once at start-up: "<role> <token>" per line, role read,
 * write or admin, token 16..255 printable non-space bytes; '#' lines and
 * blank lines are skipped. Anything else fails the load with the file's
 * name and the line number, and so does a file that others than its owner
 * may read or write (mode must be 0600 or stricter): a server that cannot
 * trust its tokens must not start.
 *
 * auth_check compares a guess against every token, every byte of each
 * (tokens are kept zero-padded to COHORT_MAX_KEY bytes), and picks the
 * role with masks rather than branches: how long it takes depends on the
 * number of tokens only, never on the guess.
 *
 * Threads: a loaded auth_tokens is read-only; any thread may check.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "auth.h"
#include "proto.h"

#define TOKEN_MIN 16
#define TOKEN_MAX 255
#define FILE_MAX (1u << 20)

typedef struct token {
	int role;
	uint32_t len;
	uint8_t bytes[TOKEN_MAX + 1];   /* zero-padded */
} token;

struct auth_tokens {
	size_t n;
	token *tokens;
};

static int errf(char *err, size_t err_len, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int errf(char *err, size_t err_len, int rc, const char *fmt, ...)
{
	if (err && err_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, err_len, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static int role_of(const char *s, size_t n)
{
	static const struct { const char *name; int role; } roles[] = {
		{ "read", PROTO_ROLE_READ },
		{ "write", PROTO_ROLE_WRITE },
		{ "admin", PROTO_ROLE_ADMIN },
	};
	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		if (strlen(roles[i].name) == n &&
		    memcmp(roles[i].name, s, n) == 0)
			return roles[i].role;
	return -1;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* Parse one line (no newline): 0 and *t filled, 1 for a line to skip, or
 * a negative code with the reason in err. */
static int parse_line(const char *path, unsigned lineno, const char *s,
		      size_t n, token *t, char *err, size_t err_len)
{
	if (n && s[n - 1] == '\r')
		n--;
	size_t i = 0;
	while (i < n && is_space(s[i]))
		i++;
	if (i == n || s[i] == '#')
		return 1;
	size_t r0 = i;
	while (i < n && !is_space(s[i]))
		i++;
	int role = role_of(s + r0, i - r0);
	if (role < 0)
		return errf(err, err_len, COHORT_EINVAL, "%s:%u: unknown role "
			    "'%.*s' (read, write or admin)", path, lineno,
			    (int)(i - r0 > 32 ? 32 : i - r0), s + r0);
	while (i < n && is_space(s[i]))
		i++;
	size_t t0 = i;
	while (i < n && !is_space(s[i]))
		i++;
	size_t tl = i - t0;
	while (i < n && is_space(s[i]))
		i++;
	if (tl == 0)
		return errf(err, err_len, COHORT_EINVAL, "%s:%u: no token after "
			    "the role (\"<role> <token>\")", path, lineno);
	if (i < n)
		return errf(err, err_len, COHORT_EINVAL, "%s:%u: text after the "
			    "token (\"<role> <token>\", one per line)", path,
			    lineno);
	if (tl < TOKEN_MIN || tl > TOKEN_MAX)
		return errf(err, err_len, COHORT_EINVAL, "%s:%u: the token has "
			    "%zu bytes (must be %d to %d)", path, lineno, tl,
			    TOKEN_MIN, TOKEN_MAX);
	for (size_t j = 0; j < tl; j++) {
		unsigned char c = (unsigned char)s[t0 + j];
		if (c < 0x21 || c > 0x7e)
			return errf(err, err_len, COHORT_EINVAL, "%s:%u: the "
				    "token has a byte 0x%02x at %zu (printable "
				    "ASCII only)", path, lineno, c, j + 1);
	}
	memset(t, 0, sizeof(*t));
	t->role = role;
	t->len = (uint32_t)tl;
	memcpy(t->bytes, s + t0, tl);
	return 0;
}

static int read_file(const char *path, char **out, size_t *len, char *err,
		     size_t err_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return errf(err, err_len, errno == ENOENT ? COHORT_ENOTFOUND :
			    COHORT_EIO, "%s: %s", path, strerror(errno));
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) < 0)
		rc = errf(err, err_len, COHORT_EIO, "%s: %s", path,
			  strerror(errno));
	else if (!S_ISREG(st.st_mode))
		rc = errf(err, err_len, COHORT_EINVAL, "%s: not a regular file",
			  path);
	else if (st.st_mode & 077)
		rc = errf(err, err_len, COHORT_EINVAL, "%s: mode %04o lets "
			  "others than its owner at the tokens; chmod 600 %s",
			  path, (unsigned)(st.st_mode & 07777), path);
	else if (st.st_size > FILE_MAX)
		rc = errf(err, err_len, COHORT_ELIMIT, "%s: %lld bytes; a token "
			  "file may have at most %u", path,
			  (long long)st.st_size, FILE_MAX);
	char *buf = NULL;
	size_t n = 0;
	if (rc == 0 && !(buf = cmalloc((size_t)st.st_size + 1)))
		rc = errf(err, err_len, COHORT_ENOMEM, "%s: out of memory",
			  path);
	while (rc == 0 && n < (size_t)st.st_size) {
		ssize_t k = read(fd, buf + n, (size_t)st.st_size - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			rc = errf(err, err_len, COHORT_EIO, "%s: %s", path,
				  strerror(errno));
		else if (k == 0)
			break;
		else
			n += (size_t)k;
	}
	close(fd);
	if (rc < 0) {
		cfree(buf);
		return rc;
	}
	*out = buf;
	*len = n;
	return 0;
}

int auth_load(const char *path, auth_tokens **out, char *err, size_t err_len)
{
	if (err && err_len)
		err[0] = 0;
	if (!path || !out)
		return errf(err, err_len, COHORT_EINVAL, "auth_load: NULL "
			    "argument");
	*out = NULL;
	char *buf = NULL;
	size_t len = 0;
	int rc = read_file(path, &buf, &len, err, err_len);
	if (rc < 0)
		return rc;
	auth_tokens *a = ccalloc(1, sizeof(*a));
	size_t cap = 0;
	unsigned lineno = 0;
	if (!a)
		rc = errf(err, err_len, COHORT_ENOMEM, "%s: out of memory",
			  path);
	for (size_t i = 0; rc == 0 && i < len;) {
		size_t e = i;
		while (e < len && buf[e] != '\n')
			e++;
		lineno++;
		token t;
		int pr = parse_line(path, lineno, buf + i, e - i, &t, err,
				    err_len);
		i = e + 1;
		if (pr < 0) {
			rc = pr;
			break;
		}
		if (pr > 0)
			continue;
		for (size_t j = 0; j < a->n; j++)
			if (a->tokens[j].len == t.len &&
			    memcmp(a->tokens[j].bytes, t.bytes, t.len) == 0)
				rc = errf(err, err_len, COHORT_EEXIST, "%s:%u: "
					  "the same token as an earlier line",
					  path, lineno);
		if (rc == 0 && a->n == cap) {
			size_t nc = cap ? cap * 2 : 8;
			token *q = ccalloc(nc, sizeof(*q));
			if (!q) {
				rc = errf(err, err_len, COHORT_ENOMEM,
					  "%s: out of memory", path);
			} else {
				if (a->n)
					memcpy(q, a->tokens, a->n * sizeof(*q));
				if (a->tokens)
					explicit_bzero(a->tokens,
						       cap * sizeof(*q));
				cfree(a->tokens);
				a->tokens = q;
				cap = nc;
			}
		}
		if (rc == 0)
			a->tokens[a->n++] = t;
		explicit_bzero(&t, sizeof(t));
	}
	if (rc == 0 && a->n == 0)
		rc = errf(err, err_len, COHORT_EINVAL, "%s: no tokens (one "
			  "\"<role> <token>\" per line)", path);
	explicit_bzero(buf, len);
	cfree(buf);
	if (rc < 0) {
		if (a) {
			if (a->tokens)
				explicit_bzero(a->tokens, cap * sizeof(token));
			cfree(a->tokens);
			cfree(a);
		}
		return rc;
	}
	*out = a;
	return 0;
}

void auth_free(auth_tokens *a)
{
	if (!a)
		return;
	explicit_bzero(a->tokens, a->n * sizeof(token));
	cfree(a->tokens);
	cfree(a);
}

int auth_check(const auth_tokens *a, const void *guess, size_t len)
{
	if (!a)
		return PROTO_ROLE_NONE;
	/* the guess padded as the tokens are: reading it costs the same
	 * whatever its length */
	uint8_t g[TOKEN_MAX + 1];
	memset(g, 0, sizeof(g));
	size_t gl = len <= TOKEN_MAX ? len : 0;
	if (guess && gl)
		memcpy(g, guess, gl);
	unsigned role = PROTO_ROLE_NONE;
	for (size_t i = 0; i < a->n; i++) {
		const token *t = &a->tokens[i];
		unsigned diff = (unsigned)(t->len ^ (uint32_t)len);
		for (size_t j = 0; j < sizeof(g); j++)
			diff |= (unsigned)(t->bytes[j] ^ g[j]);
		/* all ones when diff == 0, else zero */
		unsigned match = ((diff | (0u - diff)) >> 31) - 1u;
		role |= match & (unsigned)t->role;
	}
	explicit_bzero(g, sizeof(g));
	return gl ? (int)role : PROTO_ROLE_NONE;
}
