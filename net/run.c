/*
 * run.c -- cohort-run, the program behind `make run`: cohortd with the real
 * bank data in it, and a summary of what is there.
 *
 * Steps
 *   1. The data directory (--dir, default ./var) is created if missing,
 *      and in it the token file `tokens`: one admin token of 32 random
 *      bytes in hex, written on first start with mode 0600 (a token file
 *      that group or others can read is refused, as cohortd refuses it).
 *      The token is never printed.
 *   2. A loopback port: --port (default 7411) or, when that one is taken,
 *      the next free one of the 20 after it (said on the output); port 0
 *      lets cohortd pick any.
 *   3. cohortd (beside this program, or --cohortd) is started as a child in
 *      its own process group, so that a terminal's Ctrl-C reaches this
 *      program only, which then stops the child with SIGTERM; its log goes
 *      to <dir>/cohortd.log; the child gets SIGTERM too if this program
 *      dies (PR_SET_PDEATHSIG). The bound port comes from --port-file.
 *   4. Over libcohort-client: an empty database is loaded (run_load.c);
 *      one that holds a finished load (the run_info row) is reused as it
 *      is; anything else is refused with what to do.
 *   5. The summary, read from the server either way: rows per table, each
 *      persona model with its personas' sizes and their centroids
 *      (PERSONA_DESCRIBE, in the input columns' units) described against
 *      the whole table's means ("older, high balance"), one
 *      lookalike query, and the commands to query it from the CLI and from
 *      Python.
 *   6. It serves in the foreground until SIGINT or SIGTERM, then stops
 *      cohortd (SIGTERM: it answers what is in flight, syncs, snapshots)
 *      and exits with 0 when cohortd stopped cleanly. --once stops after
 *      the summary. If cohortd dies on its own, the tail of its log is
 *      shown and the exit status is 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "run_int.h"

#define PORT_TRIES 20            /* ports tried after a taken one */
#define START_TIMEOUT_S 120      /* most cohortd takes to open and listen */

static const char *prog = "cohort-run";

static const char help[] =
	"usage: cohort-run [options]\n"
	"\n"
	"Starts cohortd on loopback with the real bank data in it: on first start\n"
	"it loads ../shared/data (the Bank Marketing customers as table bank; the\n"
	"Berka accounts with owner, district, loan and card as table account, and\n"
	"their transactions replayed as events), trains personas on both and a\n"
	"similarity index on bank; later starts reuse the data. Prints what is\n"
	"there and how to query it, then serves until Ctrl-C.\n"
	"\n"
	"  --dir PATH       data directory (default ./var); the admin token is\n"
	"                   written to PATH/tokens (mode 0600) on first start\n"
	"  --data PATH      the data sets (default ../shared/data)\n"
	"  --port N         loopback port (default 7411; the next free one when\n"
	"                   taken; 0: any free port)\n"
	"  --cohortd PATH   the server program (default: cohortd beside this one)\n"
	"  --once           load or reuse, print the summary, stop cohortd, exit\n"
	"  --help           this text\n"
	"\n"
	"Exit status: 0 clean stop, 1 failure, 2 usage error.\n";

/* ------------------------------------------------------------------------
 * Dying, and the child
 * ------------------------------------------------------------------------ */
static void (*die_hook)(void);
static pid_t child;
static int child_status = -1;    /* wait status once reaped */
static char log_path[PATH_MAX];

void run_on_die(void (*hook)(void))
{
	die_hook = hook;
}

void run_die(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	void (*hook)(void) = die_hook;
	die_hook = NULL;
	if (hook)
		hook();
	exit(1);
}

void run_check(cohort_client *c, int rc, const char *what)
{
	if (rc < 0)
		run_die("%s: %s (%s)", what, cohort_strerror(rc),
			c ? cohort_client_errmsg(c) : "");
}

double run_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2),
							    noreturn));
static void usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(%s --help lists the options)\n", prog);
	exit(2);
}

/* The last lines of cohortd's log on stderr. */
static void show_log_tail(void)
{
	FILE *f = fopen(log_path, "r");
	if (!f)
		return;
	char lines[12][512];
	size_t n = 0;
	while (fgets(lines[n % 12], sizeof lines[0], f))
		n++;
	fclose(f);
	fprintf(stderr, "%s: the end of %s:\n", prog, log_path);
	for (size_t i = n > 12 ? n - 12 : 0; i < n; i++)
		fprintf(stderr, "  %s", lines[i % 12]);
}

/* SIGTERM to cohortd and wait for it; returns its wait status. */
static int stop_child(void)
{
	if (child <= 0)
		return child_status;
	kill(child, SIGTERM);
	int st;
	while (waitpid(child, &st, 0) < 0 && errno == EINTR)
		;
	child = 0;
	child_status = st;
	return st;
}

static void die_stop_child(void)
{
	if (child > 0) {
		int st = stop_child();
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			show_log_tail();
	} else if (child_status != -1) {
		show_log_tail();
	}
}

static bool reap_child(void)
{
	if (child <= 0)
		return true;
	int st;
	if (waitpid(child, &st, WNOHANG) == child) {
		child = 0;
		child_status = st;
		return true;
	}
	return false;
}

static const char *status_text(int st, char *buf, size_t len)
{
	if (WIFEXITED(st))
		snprintf(buf, len, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else
		snprintf(buf, len, "wait status %d", st);
	return buf;
}

/* ------------------------------------------------------------------------
 * Set-up: directory, token, port, cohortd
 * ------------------------------------------------------------------------ */
/* mkdir -p, the new directories private to the user. */
static void make_dir(const char *dir)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s", dir);
	for (char *p = path + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			if (mkdir(path, 0700) < 0 && errno != EEXIST)
				run_die("cannot create %s: %s", path,
					strerror(errno));
			*p = '/';
		}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		run_die("cannot create the data directory %s: %s", dir,
			strerror(errno));
	struct stat st;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		run_die("%s is not a directory", dir);
}

/* The token file: created (admin, 32 random bytes in hex, mode 0600) when
 * missing; refused when group or others may read it. Returns whether it
 * was created. */
static bool ensure_token(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0) {
		unsigned char raw[32];
		int rfd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
		if (rfd < 0 || read(rfd, raw, sizeof raw) != (ssize_t)sizeof raw)
			run_die("cannot read /dev/urandom for a token: %s",
				strerror(errno));
		close(rfd);
		char line[128];
		int n = snprintf(line, sizeof line, "admin ");
		for (size_t i = 0; i < sizeof raw; i++)
			n += snprintf(line + n, sizeof line - (size_t)n, "%02x",
				      raw[i]);
		line[n++] = '\n';
		if (write(fd, line, (size_t)n) != n || fsync(fd) < 0) {
			int e = errno;
			close(fd);
			unlink(path);
			run_die("cannot write the token file %s: %s", path,
				strerror(e));
		}
		close(fd);
		return true;
	}
	if (errno != EEXIST)
		run_die("cannot create the token file %s: %s", path,
			strerror(errno));
	struct stat st;
	if (stat(path, &st) < 0)
		run_die("cannot read the token file %s: %s", path,
			strerror(errno));
	if (!S_ISREG(st.st_mode))
		run_die("the token file %s is not a regular file", path);
	if (st.st_mode & 077)
		run_die("the token file %s may be read by group or others (mode "
			"%04o): cohortd refuses it; chmod 600 %s", path,
			(unsigned)(st.st_mode & 07777), path);
	return false;
}

/* Whether 127.0.0.1:port can be bound now (as cohortd binds it). */
static bool port_free(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
	close(fd);
	return ok;
}

static int pick_port(int want)
{
	if (want == 0)
		return 0;
	for (int p = want; p <= want + PORT_TRIES && p <= 65535; p++)
		if (port_free(p)) {
			if (p != want)
				printf("port %d is taken: using %d\n", want, p);
			return p;
		}
	run_die("ports %d to %d on 127.0.0.1 are all taken (--port picks "
		"another, --port 0 any free one)", want,
		want + PORT_TRIES > 65535 ? 65535 : want + PORT_TRIES);
}

/* cohortd beside this program (the build directory). */
static void find_cohortd(char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n < 0)
		run_die("cannot find this program's directory: %s (give "
			"--cohortd)", strerror(errno));
	self[n] = 0;
	snprintf(out, len, "%s/cohortd", dirname(self));
}

static void start_cohortd(const char *cohortd, const char *dir,
			  const char *token_file, int port,
			  const char *port_file)
{
	if (access(cohortd, X_OK) < 0)
		run_die("cannot run %s: %s (make builds it; --cohortd names "
			"another)", cohortd, strerror(errno));
	char listen[64];
	snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
	unlink(port_file);
	int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			 0600);
	if (logfd < 0)
		run_die("cannot open %s: %s", log_path, strerror(errno));
	pid_t parent = getpid();
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		run_die("fork: %s", strerror(errno));
	if (pid == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		dup2(logfd, STDOUT_FILENO);
		dup2(logfd, STDERR_FILENO);
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, STDIN_FILENO);
		execl(cohortd, cohortd, "--dir", dir, "--token-file", token_file,
		      "--listen", listen, "--port-file", port_file, (char *)NULL);
		dprintf(STDERR_FILENO, "cohort-run: cannot run %s: %s\n", cohortd,
			strerror(errno));
		_exit(127);
	}
	close(logfd);
	child = pid;
}

/* Wait for cohortd's port file; the port. */
static int wait_port(const char *port_file)
{
	double deadline = run_seconds() + START_TIMEOUT_S;
	for (;;) {
		FILE *f = fopen(port_file, "r");
		int port = 0;
		if (f) {
			if (fscanf(f, "%d", &port) != 1)
				port = 0;
			fclose(f);
		}
		if (port > 0)
			return port;
		if (reap_child()) {
			char buf[64];
			run_die("cohortd stopped before it was listening (%s)",
				status_text(child_status, buf, sizeof buf));
		}
		if (run_seconds() > deadline)
			run_die("cohortd is not listening after %d s",
				START_TIMEOUT_S);
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

/* ------------------------------------------------------------------------
 * The summary
 * ------------------------------------------------------------------------ */

/* How a feature reads when a persona's mean is below or above the table's. */
static const struct {
	const char *col, *low, *high;
} phrases[] = {
	{ "age", "younger", "older" },
	{ "balance", "low balance", "high balance" },
	{ "duration", "short calls", "long calls" },
	{ "campaign", "few calls this campaign", "called often this campaign" },
	{ "pdays", "contacted recently", "contacted long ago" },
	{ "previous", "few earlier contacts", "many earlier contacts" },
	{ "female", "mostly men", "mostly women" },
	{ "avg_salary", "low-wage district", "high-wage district" },
	{ "unemp_96", "low unemployment", "high unemployment" },
	{ "has_loan", "no loans", "with loans" },
	{ "has_card", "no cards", "card holders" },
	{ "n_trans", "few transactions", "many transactions" },
	{ "debit_cash", "little cash withdrawn", "large cash withdrawals" },
	{ "credit_transfer", "small incoming transfers",
	  "large incoming transfers" },
};

static void phrase(const char *col, bool high, char *out, size_t len)
{
	for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++)
		if (strcmp(phrases[i].col, col) == 0) {
			snprintf(out, len, "%s", high ? phrases[i].high :
				 phrases[i].low);
			return;
		}
	snprintf(out, len, "%s %s", high ? "high" : "low", col);
}

/* Value i of a get_many block as a number; false when null or not
 * numeric. */
static bool block_num(const cohort_client_block *b, size_t i, double *out)
{
	if (!b->valid[i])
		return false;
	const char *v = (const char *)b->values + i * b->width;
	switch (b->type) {
	case COHORT_F32: { float x; memcpy(&x, v, 4); *out = x; return true; }
	case COHORT_F64: { double x; memcpy(&x, v, 8); *out = x; return true; }
	case COHORT_I32: { int32_t x; memcpy(&x, v, 4); *out = x; return true; }
	case COHORT_I64: { int64_t x; memcpy(&x, v, 8); *out = (double)x; return true; }
	case COHORT_BOOL: *out = *(const uint8_t *)v ? 1 : 0; return true;
	default: return false;
	}
}

/* Keys copied out of the client (its results live until its next call). */
typedef struct keylist {
	cohort_key *keys;
	char *blob;
	size_t n;
} keylist;

static void keylist_copy(keylist *kl, const cohort_key *keys, size_t n)
{
	kl->n = n;
	kl->keys = calloc(n ? n : 1, sizeof *kl->keys);
	kl->blob = malloc(n * COHORT_MAX_KEY + 1);
	if (!kl->keys || !kl->blob)
		run_die("out of memory");
	for (size_t i = 0; i < n; i++) {
		char *p = kl->blob + i * COHORT_MAX_KEY;
		memcpy(p, keys[i].ptr, keys[i].len);
		kl->keys[i].ptr = p;
		kl->keys[i].len = keys[i].len;
	}
}

static void keylist_free(keylist *kl)
{
	free(kl->keys);
	free(kl->blob);
}

/* Running sums of one feature. */
typedef struct acc {
	double n, sum, sum2;
} acc;

static void acc_add(acc *a, double x)
{
	a->n++;
	a->sum += x;
	a->sum2 += x * x;
}

static double acc_mean(const acc *a)
{
	return a->n ? a->sum / a->n : NAN;
}

static double acc_sd(const acc *a)
{
	if (a->n < 2)
		return 0;
	double m = a->sum / a->n;
	double v = (a->sum2 - a->n * m * m) / (a->n - 1);
	return v > 0 ? sqrt(v) : 0;
}

static void print_num(double v)
{
	double a = fabs(v);
	int digits = a >= 100 ? 0 : a >= 10 ? 1 : 2;
	if (isnan(v))
		printf("-");
	else      /* a centroid's 0 comes back as -1e-17: not "-0.00" */
		printf("%.*f", digits, round(v * 100) == 0 ? 0.0 : v);
}

#define MAX_K 64                 /* personas described */

/*
 * One persona model: for each persona its size, its name when it has one,
 * its centroid (PERSONA_DESCRIBE: in the input columns' units, all from
 * one version of the model), the share of `flag` (a bool column, when
 * given) among its members, and the inputs where the centroid is furthest
 * from the whole table's mean (at least half a standard deviation), in
 * words. The table's means and standard deviations, and the flag shares,
 * come from the members' values read at `at` (PERSONA_MEMBERS, GET_MANY):
 * the wire gives no other way to the table's spread.
 */
static void show_model(cohort_client *c, const char *table, const char *model,
		       const char *unit, const char *flag, cohort_time at)
{
	const cohort_client_table *t;
	run_check(c, cohort_client_describe(c, table, &t), table);
	char names[COHORT_PERSONA_MAX_INPUTS + 1][COHORT_MAX_NAME + 1];
	size_t ncols_t = t->ncols;
	char (*colname)[COHORT_MAX_NAME + 1] = calloc(ncols_t ? ncols_t : 1,
						     sizeof *colname);
	if (!colname)
		run_die("out of memory");
	for (size_t i = 0; i < ncols_t; i++)
		snprintf(colname[i], sizeof colname[i], "%s", t->cols[i].name);

	/* the model and its centroids; copied: the client's results live
	 * until its next call */
	const cohort_client_model *m;
	run_check(c, cohort_client_persona_describe(c, table, model, &m),
		  "persona describe");
	size_t nin = m->ncolumns;
	if (nin > COHORT_PERSONA_MAX_INPUTS || m->dim != nin)
		run_die("persona model %s.%s is not over numeric columns (%zu "
			"inputs, dim %u)", table, model, nin, m->dim);
	int cols[COHORT_PERSONA_MAX_INPUTS + 1];
	for (size_t j = 0; j < nin; j++) {
		cols[j] = m->columns[j];
		snprintf(names[j], sizeof names[j], "%s",
			 (size_t)cols[j] < ncols_t ? colname[cols[j]] : "?");
	}
	free(colname);
	uint32_t model_k = m->k;
	uint64_t version = m->version;
	uint32_t k = m->k < MAX_K ? m->k : MAX_K;
	uint64_t sizes[MAX_K], total = 0;
	static double cent[MAX_K][COHORT_PERSONA_MAX_INPUTS];
	static char pname[MAX_K][COHORT_MAX_NAME + 1];
	for (uint32_t p = 0; p < k; p++) {
		total += sizes[p] = m->sizes[p];
		memcpy(cent[p], m->centroids + (size_t)p * nin,
		       nin * sizeof(double));
		snprintf(pname[p], sizeof pname[p], "%s", m->names[p]);
	}

	size_t ncols = nin;
	if (flag) {
		int fc = cohort_client_column(c, table, flag);
		run_check(c, fc, flag);
		cols[ncols] = fc;
		snprintf(names[ncols], sizeof names[ncols], "%s", flag);
		ncols++;
	}
	cohort_client_info info;
	cohort_client_info_get(c, &info);
	size_t chunk = info.max_batch ? info.max_batch : 1000;

	/* the whole table's values, by way of each persona's members */
	acc per_flag[MAX_K];
	memset(per_flag, 0, sizeof per_flag);
	acc all[COHORT_PERSONA_MAX_INPUTS + 1];
	memset(all, 0, sizeof all);
	for (uint32_t p = 0; p < k; p++) {
		uint64_t count;
		const cohort_key *keys;
		size_t n;
		uint32_t limit = sizes[p] > 0 && sizes[p] < UINT32_MAX
				 ? (uint32_t)sizes[p] : 1;
		run_check(c, cohort_client_persona_members(c, table, model, p,
			  NULL, at, limit, &count, &keys, &n), "persona members");
		keylist kl;
		keylist_copy(&kl, keys, n);
		for (size_t off = 0; off < kl.n; off += chunk) {
			size_t nk = kl.n - off < chunk ? kl.n - off : chunk;
			const cohort_client_batch *b;
			run_check(c, cohort_client_get_many(c, table,
				  kl.keys + off, nk, cols, ncols, at, &b),
				  "get_many");
			for (size_t j = 0; j < ncols && j < b->ncols; j++)
				for (size_t i = 0; i < nk; i++) {
					double x;
					if (b->status[i] != COHORT_ROW_PRESENT ||
					    !block_num(&b->cols[j], i, &x))
						continue;
					acc_add(&all[j], x);
					if (j == nin)
						acc_add(&per_flag[p], x);
				}
		}
		keylist_free(&kl);
	}

	printf("\npersonas %s.%s: k = %u over", table, model, model_k);
	for (size_t j = 0; j < nin; j++)
		printf("%s %s", j ? "," : "", names[j]);
	printf(" (standardised, k-means; version %" PRIu64 ")\n", version);
	printf("  whole table: %" PRIu64 " %s; means", total, unit);
	for (size_t j = 0; j < nin; j++) {
		printf(" %s ", names[j]);
		print_num(acc_mean(&all[j]));
	}
	if (flag)
		printf("; %s %.1f%%", flag, 100 * acc_mean(&all[nin]));
	printf("\n");
	for (uint32_t p = 0; p < k; p++) {
		printf("  %u: %5" PRIu64 " %s (%4.1f%%)", p, sizes[p], unit,
		       total ? 100.0 * (double)sizes[p] / (double)total : 0.0);
		if (flag && per_flag[p].n)
			printf(", %s %.1f%%", flag, 100 * acc_mean(&per_flag[p]));
		if (pname[p][0])
			printf(" \"%s\"", pname[p]);
		/* the inputs where the centroid is furthest from the table's
		 * mean, in words */
		size_t order[COHORT_PERSONA_MAX_INPUTS];
		double z[COHORT_PERSONA_MAX_INPUTS];
		size_t nz = 0;
		for (size_t j = 0; j < nin; j++) {
			double sd = acc_sd(&all[j]);
			if (!all[j].n || sd <= 0)
				continue;
			z[j] = (cent[p][j] - acc_mean(&all[j])) / sd;
			if (fabs(z[j]) >= 0.5)
				order[nz++] = j;
		}
		for (size_t a = 1; a < nz; a++)      /* by |z|, largest first */
			for (size_t b = a; b > 0 && fabs(z[order[b]]) >
			     fabs(z[order[b - 1]]); b--) {
				size_t tmp = order[b];
				order[b] = order[b - 1];
				order[b - 1] = tmp;
			}
		printf(": ");
		if (nz == 0)
			printf("close to the table's means");
		for (size_t a = 0; a < nz && a < 3; a++) {
			size_t j = order[a];
			char w[96];
			phrase(names[j], z[j] > 0, w, sizeof w);
			printf("%s%s (%s ", a ? ", " : "", w, names[j]);
			print_num(cent[p][j]);
			printf(" vs ");
			print_num(acc_mean(&all[j]));
			printf(")");
		}
		printf("\n     centroid:");
		for (size_t j = 0; j < nin; j++) {
			printf(" %s ", names[j]);
			print_num(cent[p][j]);
		}
		printf("\n");
	}
}

/* Columns of bank shown for a customer in the lookalike query. */
static const char *const look_cols[] = { "age", "job", "marital", "education",
	"balance", "housing", "loan", "y" };
#define NLOOK (sizeof look_cols / sizeof look_cols[0])

static void print_cell(const cohort_client_block *b, size_t i)
{
	double x;
	if (!b->valid[i])
		printf(" %-10s", "-");
	else if (b->type == COHORT_CAT)
		printf(" %-10.10s", b->strs[i]);
	else if (b->type == COHORT_BOOL)
		printf(" %-10s", *((const uint8_t *)b->values + i) ? "yes" : "no");
	else if (block_num(b, i, &x))
		printf(" %-10.0f", x);
	else
		printf(" %-10s", "?");
}

/* One lookalike query: the customers nearest to the first customer who
 * said yes, on the profile vector. The query key goes to key_out. */
static void show_lookalike(cohort_client *c, char *key_out, size_t key_len)
{
	snprintf(key_out, key_len, "c1");
	int ycol = cohort_client_column(c, RUN_BANK, "y");
	run_check(c, ycol, "y");
	cohort_client_filter *f;
	run_check(c, cohort_client_filter_new(&f), "filter");
	run_check(c, cohort_client_filter_cmp(f, ycol, COHORT_EQ,
					       cohort_bool(true)), "filter");
	uint64_t nyes;
	const cohort_key *keys;
	size_t n;
	run_check(c, cohort_client_filter_list(c, RUN_BANK, f, COHORT_NOW, 1,
					       &nyes, &keys, &n), "filter y");
	if (n > 0)
		snprintf(key_out, key_len, "%.*s", (int)keys[0].len,
			 (const char *)keys[0].ptr);
	cohort_client_filter_free(f);
	if (n == 0) {
		printf("\nlookalike: no customer said yes; no query shown\n");
		return;
	}

	enum { K = 5 };
	cohort_neighbor nb[K];
	size_t nn;
	cohort_client_knn_query q = { .key = key_out, .key_len = strlen(key_out),
				      .k = K, .at = COHORT_NOW };
	double t0 = run_seconds();
	run_check(c, cohort_client_knn(c, RUN_BANK, RUN_INDEX, &q, nb, &nn),
		  "knn");
	double dt = run_seconds() - t0;

	cohort_key ks[K + 1];
	ks[0] = (cohort_key){ key_out, strlen(key_out) };
	for (size_t i = 0; i < nn; i++)
		ks[i + 1] = (cohort_key){ nb[i].key, nb[i].key_len };
	int cols[NLOOK];
	for (size_t j = 0; j < NLOOK; j++) {
		cols[j] = cohort_client_column(c, RUN_BANK, look_cols[j]);
		run_check(c, cols[j], look_cols[j]);
	}
	const cohort_client_batch *b;
	run_check(c, cohort_client_get_many(c, RUN_BANK, ks, nn + 1, cols, NLOOK,
					    COHORT_NOW, &b), "get_many");
	printf("\nlookalike: the customers nearest to %s (the first of the %"
	       PRIu64 " who said yes) on\nthe standardised profile vector "
	       "(index %s, KNN k = %d, %.2f ms round trip):\n", key_out, nyes,
	       RUN_INDEX, K, dt * 1e3);
	printf("  %-8s %8s", "key", "distance");
	for (size_t j = 0; j < NLOOK; j++)
		printf(" %-10s", look_cols[j]);
	printf("\n");
	for (size_t i = 0; i <= nn; i++) {
		printf("  %-8.*s ", (int)ks[i].len, (const char *)ks[i].ptr);
		if (i == 0)
			printf("%8s", "query");
		else
			printf("%8.3f", (double)nb[i - 1].distance);
		for (size_t j = 0; j < NLOOK; j++)
			print_cell(&b->cols[j], i);
		printf("\n");
	}
}

/* The run_info row: what was loaded and when. */
typedef struct loaded_info {
	char source[PATH_MAX];
	int64_t loaded_at, data_end;
	double load_s;
} loaded_info;

/* Whether the database holds a finished load; fills *li when it does. */
static bool read_info(cohort_client *c, loaded_info *li)
{
	memset(li, 0, sizeof *li);
	cohort_value v[7];
	size_t nv;
	int st = cohort_client_get(c, RUN_INFO, "load", 4, NULL, 0, COHORT_NOW,
				   v, 7, &nv, NULL);
	if (st == COHORT_ENOTABLE)
		return false;
	run_check(c, st, "get run_info");
	if (st != COHORT_ROW_PRESENT || nv < 7)
		return false;
	if (v[0].type == COHORT_CAT)
		snprintf(li->source, sizeof li->source, "%.*s",
			 (int)v[0].v.str.len, v[0].v.str.ptr);
	li->loaded_at = v[1].type == COHORT_I64 ? v[1].v.i64 : 0;
	li->load_s = v[2].type == COHORT_F64 ? v[2].v.f64 : 0;
	li->data_end = v[6].type == COHORT_I64 ? v[6].v.i64 : 0;
	return true;
}

static void show_tables(cohort_client *c)
{
	const char *const *names;
	size_t n;
	run_check(c, cohort_client_tables(c, &names, &n), "tables");
	char copy[COHORT_MAX_TABLES][COHORT_MAX_NAME + 1];
	size_t nt = n < COHORT_MAX_TABLES ? n : COHORT_MAX_TABLES;
	for (size_t i = 0; i < nt; i++)
		snprintf(copy[i], sizeof copy[i], "%s", names[i]);
	printf("\ntables:\n");
	for (size_t i = 0; i < nt; i++) {
		const cohort_client_table *t;
		run_check(c, cohort_client_describe(c, copy[i], &t), copy[i]);
		printf("  %-8s %6" PRIu64 " rows, %3zu columns, %6.2f MiB",
		       t->name, t->nrows, t->ncols,
		       (double)t->mem_bytes / (1 << 20));
		for (size_t j = 0; j < t->nmodels; j++)
			printf("; personas %s (k = %u)", t->models[j].name,
			       t->models[j].k);
		for (size_t j = 0; j < t->nindexes; j++)
			printf("; index %s (%" PRIu64 " nodes)",
			       t->indexes[j].name, t->indexes[j].nodes);
		printf("\n");
	}
}

static void show_howto(const char *bindir, int port, const char *token_file,
		       const char *key, int64_t data_end)
{
	char cli[2 * PATH_MAX + 64];
	snprintf(cli, sizeof cli, "%s/cohort --port %d --token-file %s", bindir,
		 port, token_file);
	printf("\nquery it from the CLI (the admin token stays in %s):\n",
	       token_file);
	printf("  %s describe account\n", cli);
	printf("  %s get account 576 --at %" PRId64 "   # as of the last "
	       "transaction\n", cli, data_end);
	printf("  %s persona sizes bank %s\n", cli, RUN_BANK_MODEL);
	printf("  %s persona assign bank %s %s -m 3\n", cli, RUN_BANK_MODEL, key);
	printf("  %s knn bank %s --key %s -k 5\n", cli, RUN_INDEX, key);
	printf("  %s count bank --where 'y = true and persona(%s) = 3'\n", cli,
	       RUN_BANK_MODEL);
	printf("from Python (net/python/cohort.py: the standard library and numpy, "
	       "Debian's python3-numpy):\n");
	printf("  import sys; sys.path.insert(0, \"net/python\"); import cohort\n");
	printf("  c = cohort.Client(port=%d, token_file=\"%s\")\n", port,
	       token_file);
	printf("  print(c.knn(\"bank\", \"%s\", key=\"%s\", k=5))\n", RUN_INDEX,
	       key);
}

/* ------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------ */
static void fmt_date(int64_t ms, char *out, size_t len, bool with_time)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	strftime(out, len, with_time ? "%Y-%m-%d %H:%M UTC" : "%Y-%m-%d", &tm);
}

int main(int argc, char **argv)
{
	const char *dir = "./var", *data = "../shared/data";
	const char *cohortd_arg = NULL;
	int want_port = COHORT_CLIENT_PORT;
	bool once = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool has_val = i + 1 < argc;
		if (!strcmp(a, "--help")) {
			fputs(help, stdout);
			return 0;
		} else if (!strcmp(a, "--once")) {
			once = true;
		} else if (!strcmp(a, "--dir") && has_val) {
			dir = argv[++i];
		} else if (!strcmp(a, "--data") && has_val) {
			data = argv[++i];
		} else if (!strcmp(a, "--cohortd") && has_val) {
			cohortd_arg = argv[++i];
		} else if (!strcmp(a, "--port") && has_val) {
			char *end;
			long p = strtol(argv[++i], &end, 10);
			if (*end || end == argv[i] || p < 0 || p > 65535)
				usage_error("--port %s: not a port (0..65535)",
					    argv[i]);
			want_port = (int)p;
		} else if (!strncmp(a, "--", 2) && !has_val &&
			   (!strcmp(a, "--dir") || !strcmp(a, "--data") ||
			    !strcmp(a, "--cohortd") || !strcmp(a, "--port"))) {
			usage_error("%s needs a value", a);
		} else {
			usage_error("unknown argument '%s'", a);
		}
	}
	if (strlen(dir) > PATH_MAX - 32)
		usage_error("--dir: path too long");
	setvbuf(stdout, NULL, _IOLBF, 0);
	double t0 = run_seconds();

	char cohortd[PATH_MAX];
	if (cohortd_arg)
		snprintf(cohortd, sizeof cohortd, "%s", cohortd_arg);
	else
		find_cohortd(cohortd, sizeof cohortd);
	char argv0[PATH_MAX], bindir[PATH_MAX];
	snprintf(argv0, sizeof argv0, "%s", argv[0]);
	snprintf(bindir, sizeof bindir, "%s", dirname(argv0));

	make_dir(dir);
	char token_file[PATH_MAX], port_file[PATH_MAX];
	snprintf(token_file, sizeof token_file, "%s/tokens", dir);
	snprintf(port_file, sizeof port_file, "%s/port", dir);
	snprintf(log_path, sizeof log_path, "%s/cohortd.log", dir);
	bool created = ensure_token(token_file);
	int port = pick_port(want_port);

	/* SIGINT and SIGTERM are taken with sigwait (the child unblocks them
	 * before exec); SIGCHLD so that a dying cohortd ends the wait */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGCHLD);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	run_on_die(die_stop_child);
	start_cohortd(cohortd, dir, token_file, port, port_file);
	port = wait_port(port_file);
	printf("cohortd (pid %d) listening on 127.0.0.1:%d, data in %s, log in "
	       "%s\n", (int)child, port, dir, log_path);
	printf("admin token: %s (%s, mode 0600; not shown)\n", token_file,
	       created ? "created now" : "kept from an earlier start");

	cohort_client_opts copts;
	cohort_client_opts_init(&copts);
	copts.name = "cohort-run";
	copts.timeout_ms = 600000;
	cohort_client *c = NULL;
	int rc = cohort_client_connect("127.0.0.1", (uint16_t)port, &copts, &c);
	if (rc < 0)
		run_die("cannot connect to cohortd on port %d: %s (%s)", port,
			cohort_strerror(rc), c ? cohort_client_errmsg(c) : "");
	run_check(c, cohort_client_auth_file(c, token_file, NULL), "auth");

	const char *const *names;
	size_t ntables;
	run_check(c, cohort_client_tables(c, &names, &ntables), "tables");
	loaded_info li;
	if (ntables == 0) {
		printf("the database is empty: loading %s\n", data);
		run_loaded ld;
		run_load(c, data, &ld);
		printf("loaded in %.2f s\n", ld.total_s);
		if (!read_info(c, &li))
			run_die("the run_info row is missing after the load");
	} else if (read_info(c, &li)) {
		char when[64];
		fmt_date(li.loaded_at, when, sizeof when, true);
		printf("reusing the data in %s (loaded from %s on %s in %.2f s; "
		       "nothing reloaded)\n", dir, li.source, when, li.load_s);
	} else {
		run_die("%s holds %zu tables but no finished load of cohort-run "
			"(the run_info row is missing: an earlier load was "
			"interrupted, or this directory is another database's). "
			"Remove it (rm -r %s) to load again, or give another --dir",
			dir, ntables, dir);
	}

	show_tables(c);
	char end[32];
	fmt_date(li.data_end, end, sizeof end, false);
	show_model(c, RUN_BANK, RUN_BANK_MODEL, "customers", "y", COHORT_NOW);
	printf("\n(account values are read as of %s, the last transaction: the "
	       "decay columns\n hold spending with a %d-day half-life there)",
	       end, RUN_DECAY_DAYS);
	show_model(c, RUN_ACCOUNT, RUN_ACCOUNT_MODEL, "accounts", NULL,
		   li.data_end);
	char key[COHORT_MAX_KEY + 1];
	show_lookalike(c, key, sizeof key);
	show_howto(bindir, port, token_file, key, li.data_end);
	cohort_client_close(c);
	printf("\nready in %.2f s\n", run_seconds() - t0);

	if (!once) {
		printf("serving on 127.0.0.1:%d; Ctrl-C stops it\n", port);
		for (;;) {
			int sig;
			if (sigwait(&sigs, &sig) != 0)
				continue;
			if (sig == SIGCHLD) {
				if (!reap_child())
					continue;
				char buf[64];
				fprintf(stderr, "%s: cohortd stopped on its own "
					"(%s)\n", prog, status_text(child_status,
					buf, sizeof buf));
				show_log_tail();
				return 1;
			}
			printf("\n%s: stopping cohortd (SIGTERM)\n",
			       sig == SIGINT ? "SIGINT" : "SIGTERM");
			break;
		}
	}
	run_on_die(NULL);
	int st = stop_child();
	char buf[64];
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "%s: cohortd did not stop cleanly (%s)\n", prog,
			status_text(st, buf, sizeof buf));
		show_log_tail();
		return 1;
	}
	printf("cohortd stopped cleanly (data synced and snapshotted in %s)\n",
	       dir);
	return 0;
}
