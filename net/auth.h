/*
 * auth.h -- cohortd's tokens: read from a file (never from the command
 * line), one per line as "<role> <token>" with role read, write or admin;
 * blank lines and lines starting with '#' are ignored. A token is 16 to 255
 * printable non-space bytes. Lookups compare in constant time over every
 * token, so timing tells nothing about how much of a guess was right.
 */
#ifndef COHORT_AUTH_H
#define COHORT_AUTH_H

#include <stddef.h>

typedef struct auth_tokens auth_tokens;

/* Load path. On failure returns a negative COHORT_E* code and writes why
 * (file, line) into err (err_len bytes). A file readable by others than
 * its owner is refused (COHORT_EINVAL). */
int auth_load(const char *path, auth_tokens **out, char *err, size_t err_len);
void auth_free(auth_tokens *a);

/* The role (proto_role) of token, PROTO_ROLE_NONE when it matches none. */
int auth_check(const auth_tokens *a, const void *token, size_t len);

#endif /* COHORT_AUTH_H */
