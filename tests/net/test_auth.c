/*
 * test_auth.c -- cohortd's token file: roles, comments and blank lines,
 * every kind of bad line refused with its line number, files others may
 * read refused, and the check: exact tokens only (no prefix, no
 * extension, no empty guess).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "proto.h"

static char path[64];
static auth_tokens *tok;
static char err[512];

static void cleanup(void)
{
	if (path[0])
		unlink(path);
	path[0] = 0;
	auth_free(tok);
	tok = NULL;
}

TestSuite(auth, .fini = cleanup);

/* Write text to a new file of the given mode and load it. */
static int load(const char *text, mode_t mode)
{
	snprintf(path, sizeof(path), "/tmp/cohort-auth-XXXXXX");
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	cr_assert_eq(chmod(path, mode), 0);
	err[0] = 0;
	return auth_load(path, &tok, err, sizeof(err));
}

static int check(const char *t)
{
	return auth_check(tok, t, strlen(t));
}

#define R "0123456789abcdef-read"
#define W "0123456789abcdef-write"
#define A "0123456789abcdef-admin!"

Test(auth, roles_comments_and_blank_lines)
{
	int rc = load("# cohortd tokens\n"
		      "\n"
		      "read " R "\n"
		      "   \t\n"
		      "write\t" W "\r\n"
		      "  admin   " A "   \n"
		      "# the end", 0600);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_eq(check(R), PROTO_ROLE_READ);
	cr_assert_eq(check(W), PROTO_ROLE_WRITE);
	cr_assert_eq(check(A), PROTO_ROLE_ADMIN);
}

Test(auth, only_exact_tokens_match)
{
	cr_assert_eq(load("read " R "\nadmin " A "\n", 0400), 0, "%s", err);
	cr_assert_eq(check(""), PROTO_ROLE_NONE);
	cr_assert_eq(check("0123456789abcdef-rea"), PROTO_ROLE_NONE,
		     "a prefix");
	cr_assert_eq(check(R "d"), PROTO_ROLE_NONE, "an extension");
	cr_assert_eq(check("0123456789abcdef-reaD"), PROTO_ROLE_NONE,
		     "one byte off");
	cr_assert_eq(check("read " R), PROTO_ROLE_NONE, "the whole line");
	/* a guess of 300 bytes starting with a token */
	char longer[300];
	memset(longer, 'x', sizeof(longer));
	memcpy(longer, A, strlen(A));
	cr_assert_eq(auth_check(tok, longer, sizeof(longer)), PROTO_ROLE_NONE);
	/* a token's bytes followed by zeros are not the token */
	char padded[64] = A;
	cr_assert_eq(auth_check(tok, padded, strlen(A) + 1), PROTO_ROLE_NONE);
	cr_assert_eq(auth_check(NULL, R, strlen(R)), PROTO_ROLE_NONE);
}

Test(auth, file_readable_by_others_is_refused)
{
	cr_assert_eq(load("read " R "\n", 0640), COHORT_EINVAL);
	cr_assert_null(tok);
	cr_assert(strstr(err, "0640") && strstr(err, "chmod 600"), "%s", err);
	cleanup();
	cr_assert_eq(load("read " R "\n", 0604), COHORT_EINVAL);
	cleanup();
	cr_assert_eq(load("read " R "\n", 0620), COHORT_EINVAL, "group "
		     "writable");
}

Test(auth, missing_file_is_enotfound)
{
	int rc = auth_load("/nonexistent/cohort-tokens", &tok, err,
			   sizeof(err));
	cr_assert_eq(rc, COHORT_ENOTFOUND);
	cr_assert(strstr(err, "/nonexistent/cohort-tokens"), "%s", err);
}

Test(auth, directory_is_refused)
{
	cr_assert_eq(auth_load("/tmp", &tok, err, sizeof(err)),
		     COHORT_EINVAL);
	cr_assert(strstr(err, "regular"), "%s", err);
}

/* A file whose line `line` is bad: refused, the message naming the
 * file, the line and `what`. */
static void bad(const char *text, unsigned line, const char *what)
{
	int rc = load(text, 0600);
	cr_assert_lt(rc, 0, "accepted: %s", text);
	cr_assert_null(tok);
	char want[96];
	snprintf(want, sizeof(want), "%s:%u:", path, line);
	cr_assert(strstr(err, want), "'%s' lacks '%s'", err, want);
	cr_assert(strstr(err, what), "'%s' lacks '%s'", err, what);
	cleanup();
}

Test(auth, bad_lines_name_their_line)
{
	bad("read " R "\n\nroot " A "\n", 3, "unknown role 'root'");
	bad("read\n", 1, "no token");
	bad("# x\nwrite " W " extra\n", 2, "text after the token");
	bad("read short\n", 1, "5 bytes");
	bad("admin 0123456789abcdef\x01x\n", 1, "0x01");
	bad("read " R "\nwrite " R "\n", 2, "same token");
	bad("Read " R "\n", 1, "unknown role");
	char longtok[300 + 8];
	memcpy(longtok, "read ", 5);
	memset(longtok + 5, 'a', 256);
	longtok[5 + 256] = 0;
	bad(longtok, 1, "256 bytes");
}

Test(auth, a_file_without_tokens_is_refused)
{
	cr_assert_eq(load("# nothing here\n\n", 0600), COHORT_EINVAL);
	cr_assert(strstr(err, "no tokens"), "%s", err);
	cleanup();
	cr_assert_eq(load("", 0600), COHORT_EINVAL);
}

Test(auth, longest_token_works)
{
	char line[300];
	memcpy(line, "write ", 6);
	memset(line + 6, '~', 255);
	line[6 + 255] = 0;
	cr_assert_eq(load(line, 0600), 0, "%s", err);
	cr_assert_eq(auth_check(tok, line + 6, 255), PROTO_ROLE_WRITE);
	cr_assert_eq(auth_check(tok, line + 6, 254), PROTO_ROLE_NONE);
}
