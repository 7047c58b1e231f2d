/*
 * test_run.c -- cohort-run, the program behind `make run`, run as a child
 * process ($COHORT_BIN/cohort-run, "build" when unset) on a temporary
 * directory with a small synthetic copy of the data sets' formats written
 * by the test; what it loaded is read back through a real cohortd (the one
 * cohort-run starts) with libcohort-client. One test runs it on the real
 * ../shared/data and skips, saying so, when that is absent.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cohort_client.h"

#define DAY_MS 86400000LL

typedef struct rt {
	char dir[64];              /* the test's directory */
	char data[96];             /* dir/data: the synthetic data sets */
	char var[96];              /* dir/var: cohort-run's --dir */
	char out[96];              /* dir/out: cohort-run's stdout + stderr */
	pid_t pid;
} rt;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void write_file(const rt *t, const char *rel, const char *text)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", t->data, rel);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "cannot write %s: %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
}

/* The Bank Marketing file: 30 customers, every 5th said yes. */
static void write_bank(const rt *t)
{
	static const char *const jobs[] = { "management", "technician",
					    "admin.", "retired" };
	static const char *const marital[] = { "married", "single", "divorced" };
	static const char *const edu[] = { "primary", "secondary", "tertiary",
					   "unknown" };
	char *text = malloc(16384);
	size_t n = (size_t)sprintf(text, "\"age\";\"job\";\"marital\";\"education\";"
		"\"default\";\"balance\";\"housing\";\"loan\";\"contact\";\"day\";"
		"\"month\";\"duration\";\"campaign\";\"pdays\";\"previous\";"
		"\"poutcome\";\"y\"\n");
	for (int i = 0; i < 30; i++)
		n += (size_t)sprintf(text + n, "%d;\"%s\";\"%s\";\"%s\";\"no\";%d;"
			"\"%s\";\"no\";\"unknown\";%d;\"may\";%d;%d;-1;0;"
			"\"unknown\";\"%s\"\n", 20 + 2 * i, jobs[i % 4],
			marital[i % 3], edu[i % 4], i * 137 - 300,
			i % 2 ? "yes" : "no", 1 + i % 28, 60 + 31 * i,
			1 + i % 4, i % 5 == 0 ? "yes" : "no");
	write_file(t, "bank-marketing/bank.csv", text);
	free(text);
}

/* Berka: 2 districts, 8 accounts with their owners (and one disponent),
 * a card, a loan, and transactions of accounts 1 and 2 (not in date order
 * in the file: the replay sorts them). CRLF line ends as in the real
 * files. */
static void write_berka(const rt *t)
{
	write_file(t, "berka/district.asc",
		"A1;A2;A3;A4;A5;A6;A7;A8;A9;A10;A11;A12;A13;A14;A15;A16\r\n"
		"1;\"Hl.m. Praha\";\"Prague\";1204953;0;0;0;1;1;100.0;12541;0.29;0.43;167;85677;99107\r\n"
		"69;\"Jesenik\";\"north Moravia\";42821;4;13;5;1;3;48.4;8173;?;7.01;124;?;1358\r\n");
	char text[4096];
	size_t n = (size_t)sprintf(text,
		"\"client_id\";\"birth_number\";\"district_id\"\r\n");
	/* client 1: a woman born 1970-12-13 (month 62 = 12 + 50) */
	static const char *const births[] = { "706213", "450204", "400101",
		"556101", "651010", "300505", "805520", "501231", "601111" };
	for (int i = 0; i < 9; i++)
		n += (size_t)sprintf(text + n, "%d;\"%s\";%d\r\n", i + 1,
				     births[i], i % 2 ? 69 : 1);
	write_file(t, "berka/client.asc", text);

	n = (size_t)sprintf(text, "\"disp_id\";\"client_id\";\"account_id\";"
			    "\"type\"\r\n");
	for (int i = 0; i < 8; i++)
		n += (size_t)sprintf(text + n, "%d;%d;%d;\"OWNER\"\r\n", i + 1,
				     i + 1, i + 1);
	n += (size_t)sprintf(text + n, "9;9;1;\"DISPONENT\"\r\n");
	write_file(t, "berka/disp.asc", text);

	n = (size_t)sprintf(text, "\"account_id\";\"district_id\";"
			    "\"frequency\";\"date\"\r\n");
	for (int i = 0; i < 8; i++)
		n += (size_t)sprintf(text + n, "%d;%d;\"POPLATEK MESICNE\";"
				     "9301%02d\r\n", i + 1, i % 2 ? 69 : 1,
				     i + 1);
	write_file(t, "berka/account.asc", text);

	write_file(t, "berka/card.asc",
		"\"card_id\";\"disp_id\";\"type\";\"issued\"\r\n"
		"1005;1;\"classic\";931107 00:00:00\r\n");
	write_file(t, "berka/loan.asc",
		"\"loan_id\";\"account_id\";\"date\";\"amount\";\"duration\";"
		"\"payments\";\"status\"\r\n"
		"5314;2;930705;96396;12;8033.00;\"B\"\r\n");
	write_file(t, "berka/order.asc",
		"\"order_id\";\"account_id\";\"bank_to\";\"account_to\";"
		"\"amount\";\"k_symbol\"\r\n"
		"29401;1;\"YZ\";\"87144583\";2452.00;\"SIPO\"\r\n");
	n = (size_t)sprintf(text, "\"trans_id\";\"account_id\";\"date\";\"type\";"
		"\"operation\";\"amount\";\"balance\";\"k_symbol\";\"bank\";"
		"\"account\"\r\n"
		"1;1;930101;\"PRIJEM\";\"VKLAD\";1000.00;1000.00;\"\";;\r\n"
		"2;1;930131;\"PRIJEM\";\"\";5.00;805.00;\"UROK\";;\r\n"
		"3;1;930111;\"VYDAJ\";\"VYBER\";200.00;800.00;\"\";;\r\n"
		"4;2;930102;\"PRIJEM\";\"PREVOD Z UCTU\";3000.00;3000.00;\"DUCHOD\";\"AB\";\"123\"\r\n"
		"5;2;930120;\"VYDAJ\";\"PREVOD NA UCET\";500.00;2500.00;\"SIPO\";\"CD\";\"456\"\r\n"
		"6;2;930125;\"VYDAJ\";\"VYBER KARTOU\";100.00;2400.00;\"\";;\r\n");
	/* accounts 3..8: one cash deposit each */
	for (int i = 3; i <= 8; i++)
		n += (size_t)sprintf(text + n, "%d;%d;930110;\"PRIJEM\";\"VKLAD\";"
				     "%d.00;%d.00;\"\";;\r\n", 4 + i, i, 100 * i,
				     100 * i);
	write_file(t, "berka/trans.asc", text);
}

static void rt_init(rt *t)
{
	memset(t, 0, sizeof *t);
	snprintf(t->dir, sizeof t->dir, "/tmp/cohort-run-test-XXXXXX");
	cr_assert_not_null(mkdtemp(t->dir));
	snprintf(t->data, sizeof t->data, "%s/data", t->dir);
	snprintf(t->var, sizeof t->var, "%s/var", t->dir);
	snprintf(t->out, sizeof t->out, "%s/out", t->dir);
	char p[160];
	mkdir(t->data, 0700);
	snprintf(p, sizeof p, "%s/bank-marketing", t->data);
	mkdir(p, 0700);
	snprintf(p, sizeof p, "%s/berka", t->data);
	mkdir(p, 0700);
	write_bank(t);
	write_berka(t);
}

static void rt_cleanup(rt *t)
{
	if (t->pid > 0) {
		kill(t->pid, SIGKILL);
		waitpid(t->pid, NULL, 0);
	}
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
	cr_assert_eq(system(cmd), 0);
}

/* Start cohort-run with extra arguments (NULL-terminated) on the test's
 * directories, its output into t->out. */
static void rt_spawn(rt *t, const char *data, const char *const *extra)
{
	const char *bin = getenv("COHORT_BIN");
	char prog[256];
	snprintf(prog, sizeof prog, "%s/cohort-run", bin && *bin ? bin : "build");
	const char *argv[32] = { prog, "--dir", t->var, "--data",
				 data ? data : t->data };
	size_t n = 5;
	for (size_t i = 0; extra && extra[i] && n < 31; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	pid_t parent = getpid();
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		int fd = open(t->out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(prog, (char *const *)argv);
		_exit(127);
	}
	t->pid = pid;
}

static char *rt_output(const rt *t)
{
	FILE *f = fopen(t->out, "r");
	if (!f)
		return strdup("");
	char *s = calloc(1, 1 << 20);
	size_t n = fread(s, 1, (1 << 20) - 1, f);
	s[n] = 0;
	fclose(f);
	return s;
}

/* Wait for the child's end (timeout_s at most); its exit status. */
static int rt_wait(rt *t, double timeout_s)
{
	double end = now_s() + timeout_s;
	int st;
	for (;;) {
		pid_t r = waitpid(t->pid, &st, WNOHANG);
		if (r == t->pid)
			break;
		if (now_s() > end) {
			kill(t->pid, SIGKILL);
			waitpid(t->pid, &st, 0);
			t->pid = 0;
			char *out = rt_output(t);
			cr_assert_fail("cohort-run still running after %.0f s:\n%s",
				       timeout_s, out);
		}
		usleep(20000);
	}
	t->pid = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Run cohort-run --once to its end; its exit status, output in *out. */
static int rt_once(rt *t, const char *data, const char *const *extra,
		   char **out, double *secs)
{
	const char *args[16] = { "--once", "--port", "0" };
	size_t n = 3;
	for (size_t i = 0; extra && extra[i] && n < 15; i++)
		args[n++] = extra[i];
	double t0 = now_s();
	rt_spawn(t, data, args);
	int rc = rt_wait(t, 120);
	if (secs)
		*secs = now_s() - t0;
	*out = rt_output(t);
	return rc;
}

/* Start cohort-run serving (port 0) and wait for its "serving on" line;
 * a connected, authenticated client. */
static cohort_client *rt_serve(rt *t)
{
	static const char *const args[] = { "--port", "0", NULL };
	rt_spawn(t, NULL, args);
	double end = now_s() + 60;
	for (;;) {
		char *out = rt_output(t);
		bool up = strstr(out, "serving on") != NULL;
		int st;
		if (!up && waitpid(t->pid, &st, WNOHANG) == t->pid) {
			t->pid = 0;
			cr_assert_fail("cohort-run ended before serving:\n%s", out);
		}
		if (!up && now_s() > end)
			cr_assert_fail("cohort-run not serving after 60 s:\n%s", out);
		free(out);
		if (up)
			break;
		usleep(20000);
	}
	char path[160];
	snprintf(path, sizeof path, "%s/port", t->var);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	int port = 0;
	cr_assert_eq(fscanf(f, "%d", &port), 1);
	fclose(f);
	cohort_client *c = NULL;
	cr_assert_eq(cohort_client_connect("127.0.0.1", (uint16_t)port, NULL, &c),
		     0);
	snprintf(path, sizeof path, "%s/tokens", t->var);
	cr_assert_eq(cohort_client_auth_file(c, path, NULL), 0, "%s",
		     cohort_client_errmsg(c));
	return c;
}

/* Ctrl-C: SIGINT to cohort-run; it must stop cohortd and exit 0. */
static void rt_interrupt(rt *t)
{
	kill(t->pid, SIGINT);
	int rc = rt_wait(t, 30);
	char *out = rt_output(t);
	cr_assert_eq(rc, 0, "exit %d after SIGINT:\n%s", rc, out);
	cr_assert(strstr(out, "cohortd stopped cleanly"), "%s", out);
	free(out);
}

static uint64_t rows_of(cohort_client *c, const char *table)
{
	const cohort_client_table *d;
	cr_assert_eq(cohort_client_describe(c, table, &d), 0, "%s: %s", table,
		     cohort_client_errmsg(c));
	return d->nrows;
}

/* Column col of account key, read at `at`, as a double (NAN: null). */
static double account_num(cohort_client *c, const char *key, const char *col,
			  cohort_time at)
{
	int id = cohort_client_column(c, "account", col);
	cr_assert_geq(id, 0, "column %s", col);
	cohort_value v;
	int st = cohort_client_get(c, "account", key, strlen(key), &id, 1, at,
				   &v, 1, NULL, NULL);
	cr_assert_eq(st, COHORT_ROW_PRESENT, "account %s: %d", key, st);
	switch (v.type) {
	case COHORT_NULL: return NAN;
	case COHORT_F64: return v.v.f64;
	case COHORT_I32: return v.v.i32;
	case COHORT_I64: return (double)v.v.i64;
	case COHORT_BOOL: return v.v.b;
	default: cr_assert_fail("column %s: type %d", col, v.type);
	}
	return NAN;
}

static cohort_time ymd_ms(int y, int m, int d)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d };
	return (cohort_time)timegm(&tm) * 1000;
}

/* What the synthetic load must hold (account values as of the last
 * transaction, 1993-01-31). */
static void check_loaded(cohort_client *c)
{
	cr_assert_eq(rows_of(c, "bank"), 30);
	cr_assert_eq(rows_of(c, "account"), 8);
	cr_assert_eq(rows_of(c, "run_info"), 1);
	cohort_time at = ymd_ms(1993, 1, 31);
	/* account 1: a woman born 1970-12-13, a classic card, 3 transactions */
	cr_assert_eq(account_num(c, "1", "n_trans", at), 3);
	cr_assert_eq(account_num(c, "1", "balance", at), 805);
	cr_assert_eq(account_num(c, "1", "min_balance", at), 800);
	cr_assert_float_eq(account_num(c, "1", "credit_cash", at), 500, 1e-6,
			   "1000 deposited 30 days (one half-life) before");
	cr_assert_float_eq(account_num(c, "1", "debit_cash", at),
			   200 * pow(2, -20.0 / 30), 1e-6);
	cr_assert_float_eq(account_num(c, "1", "credit_interest", at), 5, 1e-9);
	cr_assert_eq(account_num(c, "1", "female", at), 1);
	cr_assert_eq(account_num(c, "1", "age", at), 28);
	cr_assert_eq(account_num(c, "1", "birth", at), 19701213);
	cr_assert_eq(account_num(c, "1", "has_card", at), 1);
	cr_assert_eq(account_num(c, "1", "has_loan", at), 0);
	cr_assert_eq(account_num(c, "1", "avg_salary", at), 12541);
	/* account 2: a man, district 69 (its '?' figures are null), a loan */
	cr_assert_eq(account_num(c, "2", "female", at), 0);
	cr_assert_eq(account_num(c, "2", "loan_amount", at), 96396);
	cr_assert(isnan(account_num(c, "2", "unemp_95", at)));
	cr_assert_eq(account_num(c, "2", "n_trans", at), 3);
	cr_assert_float_eq(account_num(c, "2", "debit_card", at),
			   100 * pow(2, -6.0 / 30), 1e-6);

	/* personas on both, every row assigned */
	const cohort_client_sizes *sz;
	cr_assert_eq(cohort_client_persona_sizes(c, "bank", "segments", &sz), 0,
		     "%s", cohort_client_errmsg(c));
	cr_assert_eq(sz->k, 8);
	uint64_t total = 0;
	for (uint32_t p = 0; p < sz->k; p++)
		total += sz->sizes[p];
	cr_assert_eq(total, 30);
	cr_assert_eq(cohort_client_persona_sizes(c, "account", "profiles", &sz),
		     0, "%s", cohort_client_errmsg(c));
	cr_assert_eq(sz->k, 6);
	total = 0;
	for (uint32_t p = 0; p < sz->k; p++)
		total += sz->sizes[p];
	cr_assert_eq(total, 8);
	/* the lookalike index answers */
	cohort_neighbor nb[3];
	size_t n;
	cohort_client_knn_query q = { .key = "c1", .key_len = 2, .k = 3,
				      .at = COHORT_NOW };
	cr_assert_eq(cohort_client_knn(c, "bank", "lookalike", &q, nb, &n), 0,
		     "%s", cohort_client_errmsg(c));
	cr_assert_eq(n, 3);
}

/* A number as cohort-run prints it. */
static void fmt_num(char *out, size_t len, double v)
{
	double a = fabs(v);
	snprintf(out, len, "%.*f", a >= 100 ? 0 : a >= 10 ? 1 : 2,
		 round(v * 100) == 0 ? 0.0 : v);
}

/* cohort-run's output describes every persona of table.model by the
 * model's own centroid (PERSONA_DESCRIBE) and its size. */
static void check_centroids_printed(cohort_client *c, const char *out,
				    const char *table, const char *model,
				    const char *unit)
{
	const cohort_client_table *t;
	cr_assert_eq(cohort_client_describe(c, table, &t), 0, "%s",
		     cohort_client_errmsg(c));
	char colname[64][COHORT_MAX_NAME + 1];
	cr_assert_leq(t->ncols, 64);
	for (size_t i = 0; i < t->ncols; i++)
		snprintf(colname[i], sizeof colname[i], "%s", t->cols[i].name);
	const cohort_client_model *m;
	cr_assert_eq(cohort_client_persona_describe(c, table, model, &m), 0,
		     "%s", cohort_client_errmsg(c));
	cr_assert_eq(m->dim, m->ncolumns);
	char head[128];
	snprintf(head, sizeof head, "personas %s.%s: k = %u", table, model,
		 m->k);
	const char *sec = strstr(out, head);
	cr_assert(sec, "no '%s' in:\n%s", head, out);
	for (uint32_t p = 0; p < m->k; p++) {
		char want[1024], num[32];
		int len = snprintf(want, sizeof want, "\n  %u: %5" PRIu64 " %s (",
				   p, m->sizes[p], unit);
		const char *line = strstr(sec, want);
		cr_assert(line, "no '%s' in:\n%s", want + 1, sec);
		len = snprintf(want, sizeof want, "\n     centroid:");
		for (size_t j = 0; j < m->ncolumns; j++) {
			fmt_num(num, sizeof num,
				m->centroids[(size_t)p * m->dim + j]);
			len += snprintf(want + len, sizeof want - (size_t)len,
					" %s %s", colname[m->columns[j]], num);
		}
		snprintf(want + len, sizeof want - (size_t)len, "\n");
		const char *cl = strstr(line + 1, "\n     centroid:");
		cr_assert(cl && strncmp(cl, want, strlen(want)) == 0,
			  "persona %u: want '%s' in:\n%s", p, want + 1, line);
	}
}

Test(run, loads_the_synthetic_data_then_reuses_it)
{
	rt t;
	rt_init(&t);
	char *out;
	double first, second;
	int rc = rt_once(&t, NULL, NULL, &out, &first);
	cr_assert_eq(rc, 0, "exit %d:\n%s", rc, out);
	cr_assert(strstr(out, "the database is empty: loading"), "%s", out);
	cr_assert(strstr(out, "bank:    30 customers"), "%s", out);
	cr_assert(strstr(out, "account: 8 Berka accounts"), "%s", out);
	cr_assert(strstr(out, "and 12 transactions"), "%s", out);
	cr_assert(strstr(out, "personas bank.segments: k = 8"), "%s", out);
	cr_assert(strstr(out, "personas account.profiles: k = 6"), "%s", out);
	cr_assert(strstr(out, "lookalike: the customers nearest to c1 "), "%s",
		  out);
	cr_assert(strstr(out, "--token-file"), "%s", out);
	free(out);

	/* the token: owner-only, never printed */
	char path[160];
	snprintf(path, sizeof path, "%s/tokens", t.var);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
	char tok[160] = "";
	FILE *f = fopen(path, "r");
	cr_assert(fgets(tok, sizeof tok, f));
	fclose(f);
	cr_assert(strncmp(tok, "admin ", 6) == 0);
	tok[strcspn(tok, "\n")] = 0;
	cr_assert_eq(strlen(tok + 6), 64);

	/* a second start reuses the data: nothing reloaded (events replayed
	 * twice would double n_trans) */
	rc = rt_once(&t, NULL, NULL, &out, &second);
	cr_assert_eq(rc, 0, "exit %d:\n%s", rc, out);
	cr_assert(strstr(out, "reusing the data in"), "%s", out);
	cr_assert_null(strstr(out, "loading"), "%s", out);
	cr_assert_null(strstr(out, tok + 6), "the token was printed");
	cr_log_info("run: first start %.2f s, second %.2f s", first, second);

	cohort_client *c = rt_serve(&t);
	check_loaded(c);
	/* the second start's summary, against the models it reused */
	check_centroids_printed(c, out, "bank", "segments", "customers");
	check_centroids_printed(c, out, "account", "profiles", "accounts");
	free(out);
	cohort_client_close(c);
	rt_interrupt(&t);
	rt_cleanup(&t);
}

Test(run, refuses_a_token_file_others_can_read)
{
	rt t;
	rt_init(&t);
	mkdir(t.var, 0700);
	char path[160];
	snprintf(path, sizeof path, "%s/tokens", t.var);
	FILE *f = fopen(path, "w");
	fputs("admin some-token-of-sufficient-length\n", f);
	fclose(f);
	chmod(path, 0644);
	char *out;
	int rc = rt_once(&t, NULL, NULL, &out, NULL);
	cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
	cr_assert(strstr(out, "may be read by group or others (mode 0644)"),
		  "%s", out);
	free(out);
	rt_cleanup(&t);
}

Test(run, bad_input_stops_with_file_and_line)
{
	rt t;
	rt_init(&t);
	write_file(&t, "berka/trans.asc",
		"\"trans_id\";\"account_id\";\"date\";\"type\";\"operation\";"
		"\"amount\";\"balance\";\"k_symbol\";\"bank\";\"account\"\r\n"
		"1;1;930101;\"PRIJEM\";\"VKLAD\";1000.00;1000.00;\"\";;\r\n"
		"2;1;930135;\"PRIJEM\";\"VKLAD\";1000.00;2000.00;\"\";;\r\n");
	char *out;
	int rc = rt_once(&t, NULL, NULL, &out, NULL);
	cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
	cr_assert(strstr(out, "trans.asc line 3, column date: '930135' is not a "
			 "YYMMDD date"), "%s", out);
	free(out);

	/* an account that account.asc lacks */
	write_file(&t, "berka/trans.asc",
		"\"trans_id\";\"account_id\";\"date\";\"type\";\"operation\";"
		"\"amount\";\"balance\";\"k_symbol\";\"bank\";\"account\"\r\n"
		"1;99;930101;\"PRIJEM\";\"VKLAD\";1000.00;1000.00;\"\";;\r\n");
	char cmd[160];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", t.var);
	cr_assert_eq(system(cmd), 0);
	rc = rt_once(&t, NULL, NULL, &out, NULL);
	cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
	cr_assert(strstr(out, "trans.asc line 2: account 99 is not in "
			 "account.asc"), "%s", out);
	free(out);

	/* that load did not finish: the next start refuses the directory */
	rc = rt_once(&t, NULL, NULL, &out, NULL);
	cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
	cr_assert(strstr(out, "no finished load"), "%s", out);
	free(out);
	rt_cleanup(&t);
}

Test(run, takes_the_next_port_when_its_port_is_taken)
{
	rt t;
	rt_init(&t);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	cr_assert_eq(listen(fd, 1), 0);
	socklen_t len = sizeof a;
	getsockname(fd, (struct sockaddr *)&a, &len);
	int port = ntohs(a.sin_port);
	char ps[16];
	snprintf(ps, sizeof ps, "%d", port);
	/* --port given last wins over rt_once's --port 0 */
	const char *const extra[] = { "--port", ps, NULL };
	char *out;
	int rc = rt_once(&t, NULL, extra, &out, NULL);
	close(fd);
	cr_assert_eq(rc, 0, "exit %d:\n%s", rc, out);
	char want[64];
	snprintf(want, sizeof want, "port %d is taken: using ", port);
	cr_assert(strstr(out, want), "%s", out);
	free(out);
	rt_cleanup(&t);
}

Test(run, real_data)
{
	const char *data = "../shared/data";
	char path[256];
	snprintf(path, sizeof path, "%s/bank-marketing/bank.csv", data);
	if (access(path, R_OK) != 0 ||
	    access("../shared/data/berka/trans.asc", R_OK) != 0)
		cr_skip_test("../shared/data is absent (bank-marketing/bank.csv "
			     "or berka/trans.asc): real-data run skipped");
	rt t;
	rt_init(&t);
	char *out;
	double secs;
	int rc = rt_once(&t, data, NULL, &out, &secs);
	cr_assert_eq(rc, 0, "exit %d:\n%s", rc, out);
	cr_assert(strstr(out, "bank:    21218 customers"), "%s", out);
	cr_assert(strstr(out, "account: 4500 Berka accounts"), "%s", out);
	cr_assert(strstr(out, "and 49102 transactions"), "%s", out);
	/* the segments model is the one docs/personas.md describes */
	cr_assert(strstr(out, "  1:  2348 customers (11.1%), y 19.4%"), "%s", out);
	cr_assert(strstr(out, "  3:   729 customers ( 3.4%), y 58.7%"), "%s", out);
	/* centroids in words and numbers (docs/personas.md's table) */
	cr_assert(strstr(out, "  1:  2348 customers (11.1%), y 19.4%: long calls "
			 "(duration 572 vs 259)\n     centroid: age 36.5 "
			 "balance 886 duration 572 "), "%s", out);
	cr_assert_null(strstr(out, " -0.00"), "a zero printed as -0.00:\n%s",
		       out);
	free(out);
	cr_log_info("run: real data loaded in %.2f s", secs);
	rt_cleanup(&t);
}
