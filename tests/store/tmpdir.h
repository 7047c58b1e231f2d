/*
 * tmpdir.h -- a fresh directory per test under /tmp, removed by the suite's
 * fini even when an assertion ends the test early. For the tests of the
 * persistent store (one test per process under Criterion, so one
 * directory per process).
 */
#ifndef COHORT_TEST_TMPDIR_H
#define COHORT_TEST_TMPDIR_H

#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char test_dir[64];

static inline int tmpdir_rm_entry(const char *path, const struct stat *st,
				  int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Remove a directory and everything below it. */
static inline void rmrf(const char *dir)
{
	nftw(dir, tmpdir_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A new directory /tmp/cohort-<tag>-XXXXXX, remembered for removal. */
static inline void tmpdir_make(char *dir, size_t len, const char *tag)
{
	snprintf(dir, len, "/tmp/cohort-%s-XXXXXX", tag);
	cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	snprintf(test_dir, sizeof test_dir, "%s", dir);
}

/* Remove the test's directory (a suite's .fini). */
static inline void tmpdir_remove(void)
{
	if (test_dir[0])
		rmrf(test_dir);
	test_dir[0] = 0;
}

#endif
