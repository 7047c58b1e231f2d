/*
 * The log falls back to pwrite + fdatasync where io_uring cannot be set up:
 * a child process forbids io_uring_setup with a seccomp filter (ENOSYS, as
 * an old kernel says, and EPERM, as a container's seccomp profile says),
 * then opens a database, writes under `always`, reopens and checks.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cohort.h"

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif

static int forbid_io_uring(int err)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K,
			 SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/* In the child: 0 when everything held, else a code saying what failed. */
static int child(const char *dir, int err)
{
	if (forbid_io_uring(err))
		return 10;
	cohort_options o;
	cohort_options_init(&o);
	o.fsync = COHORT_FSYNC_ALWAYS;
	cohort_db *db;
	if (cohort_open(dir, &o, &db))
		return 11;
	const char *path = cohort_db_io_path(db);
	if (strncmp(path, "pwrite (io_uring unavailable: ", 30) != 0 ||
	    !strstr(path, strerror(err)))
		return 12;
	cohort_column_def c = { "n", COHORT_COUNTER, 0, 0 };
	cohort_table *t;
	if (cohort_table_create(db, "t", &c, 1, NULL, &t))
		return 13;
	for (int i = 0; i < 50; i++) {
		cohort_update u = { 0, COHORT_OP_ADD, cohort_f64(1) };
		if (cohort_event(t, "k", 1, 1, &u, 1))
			return 14;
	}
	if (cohort_close(db))
		return 15;
	if (cohort_open(dir, &o, &db) || cohort_table_open(db, "t", &t))
		return 16;
	int col = 0;
	cohort_value v;
	if (cohort_get(t, "k", 1, &col, 1, 1, &v, NULL, 0, NULL) !=
	    COHORT_ROW_PRESENT || v.v.f64 != 50)
		return 17;
	return cohort_close(db) ? 18 : 0;
}

static void run(int err)
{
	char dir[] = "/tmp/cohort-uring-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(child(dir, err));
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
	cr_assert(WIFEXITED(status), "child died");
	if (WEXITSTATUS(status) == 10)
		cr_skip_test("seccomp filters are not allowed here");
	cr_assert_eq(WEXITSTATUS(status), 0, "step %d failed",
		     WEXITSTATUS(status));
}

Test(uring_fallback, enosys_runs_the_log_on_pwrite)
{
	run(ENOSYS);
}

Test(uring_fallback, eperm_runs_the_log_on_pwrite)
{
	run(EPERM);
}
