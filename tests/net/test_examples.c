/*
 * test_examples.c -- the documentation's examples (docs/examples/) run as
 * the docs tell a reader to run them, against a real cohortd: the
 * quickstart's setup, scoring service (C and Python) and recommendation
 * backend, and operations.md's salvage tool on a damaged log.
 *
 * The C examples are built by the Makefile into $COHORT_BIN/examples/
 * (`make check` builds them first); the Python ones run under
 * /usr/bin/python3 (Debian's, with python3-numpy) with
 * PYTHONPATH=net/python, so the tests run from the repository root (they
 * skip, saying so, from anywhere else).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cohort_client.h"
#include "srvutil.h"

TestSuite(examples, .timeout = 120);

static char out[16384], err[16384];

static void slurp(const char *path, char *buf, size_t len)
{
	buf[0] = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	size_t n = fread(buf, 1, len - 1, f);
	buf[n] = 0;
	fclose(f);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* Run argv (PATH searched) to its end, at most 60 s; stdout and stderr
 * into out and err. Returns the exit status. */
static int run(const srv *s, const char *const *argv)
{
	char out_path[160], err_path[160];
	snprintf(out_path, sizeof out_path, "%s/out", s->dir);
	snprintf(err_path, sizeof err_path, "%s/err", s->dir);
	pid_t pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (o < 0 || e < 0)
			_exit(126);
		dup2(o, 1);
		dup2(e, 2);
		setenv("PYTHONPATH", "net/python", 1);
		execvp(argv[0], (char *const *)argv);
		dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	int status = 0;
	for (int ms = 0;; ms += 5) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		if (ms > 60000) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			slurp(out_path, out, sizeof out);
			cr_assert_fail("%s did not end within 60 s; output:\n%s",
				       argv[0], out);
		}
		struct timespec ts = { 0, 5000000 };
		nanosleep(&ts, NULL);
	}
	slurp(out_path, out, sizeof out);
	slurp(err_path, err, sizeof err);
	cr_assert(WIFEXITED(status), "%s killed by signal %d", argv[0],
		  WTERMSIG(status));
	return WEXITSTATUS(status);
}

static const char *example_bin(const char *name)
{
	static char path[512];
	const char *dir = getenv("COHORT_BIN");
	snprintf(path, sizeof path, "%s/examples/%s", dir && *dir ? dir : "build",
		 name);
	if (access(path, X_OK))
		cr_assert_fail("%s: %s (make builds docs/examples/*.c there)",
			       path, strerror(errno));
	return path;
}

static void need_repo_root(void)
{
	if (access("docs/examples/setup.py", R_OK) ||
	    access("net/python/cohort.py", R_OK))
		cr_skip_test("not run from the repository root: "
			     "docs/examples/ and net/python/ are not here");
}

/* The line of out that starts with prefix (copied), or fail. */
static const char *line_of(const char *prefix)
{
	static char line[512];
	for (const char *p = out; p && *p;) {
		const char *e = strchr(p, '\n');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (!strncmp(p, prefix, strlen(prefix))) {
			snprintf(line, sizeof line, "%.*s", (int)n, p);
			return line;
		}
		p = e ? e + 1 : NULL;
	}
	cr_assert_fail("no line starting '%s' in:\n%s\nstderr:\n%s", prefix,
		       out, err);
	return NULL;
}

Test(examples, quickstart_scoring_and_recommendation)
{
	need_repo_root();
	srv s;
	srv_opts o = { .threads = 1 };
	srv_start(&s, &o);
	char admin[160], writer[160], reader[160], port[16];
	snprintf(admin, sizeof admin, "%s/admin.token", s.dir);
	snprintf(writer, sizeof writer, "%s/write.token", s.dir);
	snprintf(reader, sizeof reader, "%s/read.token", s.dir);
	write_file(admin, SRV_TOKEN_ADMIN "\n");
	write_file(writer, "write " SRV_TOKEN_WRITE "\n");
	write_file(reader, SRV_TOKEN_READ "\n");
	snprintf(port, sizeof port, "%d", s.port);
	const char *py = "/usr/bin/python3";

	/* setup: the table and 2000 customers */
	const char *setup[] = { py, "docs/examples/setup.py", "--port", port,
				"--token-file", admin, "--customers", "2000",
				NULL };
	cr_assert_eq(run(&s, setup), 0, "setup.py: %s%s", out, err);
	cr_assert(strstr(line_of("loaded "), "table has 2000 rows"), "%s", out);

	/* the C scoring service, with a write token */
	const char *scoring = example_bin("scoring");
	const char *sc[] = { scoring, "127.0.0.1", port, writer, NULL };
	cr_assert_eq(run(&s, sc), 0, "scoring: %s%s", out, err);
	cr_assert(strstr(line_of("connected to "), "as write"), "%s", out);
	line_of("get cust-000042: 32 features, f00 = ");
	char c_mean[512];
	snprintf(c_mean, sizeof c_mean, "%s",
		 line_of("get_many: 100 of 100 customers present, mean score "));
	cr_assert_str_eq(line_of("events: "), "events: cust-000042 txn_count 5, "
			 "spend_7d 161.59, last_amount 19.99");

	/* the Python one computes the same scores from the same rows */
	const char *scpy[] = { py, "docs/examples/scoring.py", "--port", port,
			       "--token-file", writer, NULL };
	cr_assert_eq(run(&s, scpy), 0, "scoring.py: %s%s", out, err);
	cr_assert_str_eq(line_of("get_many: "), c_mean);
	cr_assert_str_eq(line_of("events: "), "events: cust-000007 txn_count 5, "
			 "spend_7d 161.59, last_amount 19.99");

	/* a read token cannot write the events: the role is enforced */
	const char *sc_read[] = { scoring, "127.0.0.1", port, reader, NULL };
	cr_assert_eq(run(&s, sc_read), 1, "scoring with a read token: %s", out);
	cr_assert(strstr(err, "event:") && strstr(err, "role"), "%s", err);

	/* the recommendation backend */
	const char *rec[] = { py, "docs/examples/recommend.py", "--port", port,
			      "--token-file", admin, NULL };
	cr_assert_eq(run(&s, rec), 0, "recommend.py: %s%s", out, err);
	cr_assert(strstr(line_of("knn cust-000042: "), "10 neighbours"), "%s",
		  out);
	cr_assert(strstr(line_of("knn "), "all consented: True"), "%s", out);
	cr_assert(strstr(line_of("trained taste v1: "), "sizes sum to 2000"),
		  "%s", out);
	line_of("assign cust-000042: persona ");
	line_of("members of persona ");
	cr_assert(strstr(line_of("change #"), "cust-000042 moved from persona"),
		  "%s", out);

	/* the sizing script of operations.md, on a small table: its
	 * accounting must match the formula there (548.75 bytes per slot of
	 * this schema; 2000 rows take one chunk of 16384 slots) */
	char pid[16];
	snprintf(pid, sizeof pid, "%d", (int)s.pid);
	const char *sz[] = { py, "docs/examples/sizing.py", "--port", port,
			     "--token-file", admin, "--rows", "2000", "--pid",
			     pid, NULL };
	cr_assert_eq(run(&s, sz), 0, "sizing.py: %s%s", out, err);
	long long rows_bytes = 0;
	cr_assert_eq(sscanf(line_of("rows (32 f64"), "rows (32 f64 + vec64 + "
			    "4 cat) %lld", &rows_bytes), 1, "%s", out);
	/* the slots and one 1 MiB key chunk (the key map's first 16 entries
	 * per stripe are in the empty table, which sizing.py subtracts) */
	long long want = (long long)(548.75 * 16384) + (1 << 20);
	cr_assert(rows_bytes >= want && rows_bytes <= want + want / 100,
		  "rows took %lld bytes, the formula says %lld:\n%s",
		  rows_bytes, want, out);
	cr_assert(strstr(line_of("persona model k=16"), " 460800 bytes"),
		  "%s", out);   /* 28.125 x 16384 */
	line_of("total ");

	cr_assert_eq(srv_stop(&s), 0);
	srv_cleanup(&s);
}

/* The first wal-*.log of dir that has records. */
static void find_segment(const char *dir, char *path, size_t len)
{
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "%s: %s", dir, strerror(errno));
	struct dirent *e;
	path[0] = 0;
	while ((e = readdir(d))) {
		struct stat st;
		char p[400];
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		if (!strncmp(e->d_name, "wal-", 4) && !stat(p, &st) &&
		    st.st_size > 0)
			snprintf(path, len, "%s", p);
	}
	closedir(d);
	cr_assert(path[0], "no log segment with records in %s", dir);
}

Test(examples, salvage_recovers_a_damaged_log)
{
	srv s;
	srv_opts o = { .threads = 1, .fsync = "always" };
	srv_start(&s, &o);
	cohort_client *c = NULL;
	cr_assert_eq(cohort_client_connect("127.0.0.1", (uint16_t)s.port, NULL,
					   &c), 0);
	cr_assert_eq(cohort_client_auth(c, SRV_TOKEN_ADMIN,
					strlen(SRV_TOKEN_ADMIN), NULL), 0);
	cohort_column_def col = { "v", COHORT_I64, 0, 0 };
	cr_assert_eq(cohort_client_table_create(c, "t", &col, 1, 0), 0,
		     "%s", cohort_client_errmsg(c));
	for (int i = 1; i <= 5; i++) {
		char key[8];
		snprintf(key, sizeof key, "k%d", i);
		cohort_field f = { 0, cohort_i64(i) };
		cr_assert_eq(cohort_client_put(c, "t", key, strlen(key),
					       COHORT_NOW, &f, 1), 0);
	}
	cohort_client_close(c);
	/* killed, not stopped (a stop would snapshot): under fsync always
	 * the five puts are in the log */
	srv_kill(&s);

	/* damage the third record (the put of k2): valid records follow, so
	 * it is not a torn tail */
	char seg[400];
	find_segment(s.data_dir, seg, sizeof seg);
	int fd = open(seg, O_RDWR);
	cr_assert_geq(fd, 0);
	off_t off = 0;
	for (int r = 0; r < 2; off += 20) {
		/* the log's own group ends (type 255) pad direct writes */
		uint32_t len;
		unsigned char type;
		cr_assert_eq(pread(fd, &len, 4, off), 4);
		cr_assert_eq(pread(fd, &type, 1, off + 4), 1);
		off += len;
		if (type != 255)
			r++;
	}
	for (;;) {
		unsigned char h[5];
		cr_assert_eq(pread(fd, h, 5, off), 5);
		if (h[4] != 255)
			break;
		uint32_t len;
		memcpy(&len, h, 4);
		off += 20 + len;
	}
	unsigned char b;
	cr_assert_eq(pread(fd, &b, 1, off + 20), 1);
	b ^= 0xff;
	cr_assert_eq(pwrite(fd, &b, 1, off + 20), 1);
	close(fd);

	/* cohortd refuses it, naming the file and the offset */
	const char *argv[] = { "--dir", s.data_dir, "--token-file", s.token_file,
			       "--listen", "127.0.0.1:0", NULL };
	cr_assert_eq(srv_run(&s, argv, 10000), 1);
	char where[64];
	snprintf(where, sizeof where, "bad record at offset %lld",
		 (long long)off);
	cr_assert(srv_log_has(&s, where), "no '%s' in the log", where);

	/* salvage keeps k1 and says what was lost */
	const char *sv[] = { example_bin("salvage"), s.data_dir, NULL };
	cr_assert_eq(run(&s, sv), 0, "salvage: %s%s", out, err);
	cr_assert(strstr(line_of("recovery: "), "LOST: log "), "%s", out);
	cr_assert_str_eq(line_of("table t: "), "table t: 1 rows");
	char aside[420];
	snprintf(aside, sizeof aside, "%s.damaged", seg);
	cr_assert_eq(access(aside, F_OK), 0, "%s not kept", aside);

	/* and cohortd starts again, with what was kept */
	srv_restart(&s);
	c = NULL;
	cr_assert_eq(cohort_client_connect("127.0.0.1", (uint16_t)s.port, NULL,
					   &c), 0);
	cr_assert_eq(cohort_client_auth(c, SRV_TOKEN_READ,
					strlen(SRV_TOKEN_READ), NULL), 0);
	cohort_value v;
	cr_assert_eq(cohort_client_get(c, "t", "k1", 2, NULL, 0, COHORT_NOW,
				       &v, 1, NULL, NULL), COHORT_ROW_PRESENT);
	cr_assert_eq(v.v.i64, 1);
	cr_assert_eq(cohort_client_get(c, "t", "k5", 2, NULL, 0, COHORT_NOW,
				       &v, 1, NULL, NULL), COHORT_ROW_MISSING);
	cohort_client_close(c);
	cr_assert_eq(srv_stop(&s), 0);
	srv_cleanup(&s);
}

/* A malloc'd copy of a whole file, or fail. */
static char *read_all(const char *path)
{
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	char *buf = NULL;
	size_t cap = 0;
	ssize_t n = getdelim(&buf, &cap, 0, f);
	fclose(f);
	cr_assert_geq(n, 0, "%s: empty", path);
	return buf;
}

/* Every block the docs mark "<!-- quote: FILE -->" is in FILE word for
 * word, so the docs cannot drift from the programs the test above runs. */
Test(examples, docs_quote_the_examples_verbatim)
{
	need_repo_root();
	static const char *const docs[] = { "docs/quickstart.md",
					    "docs/operations.md" };
	int nquotes = 0;
	for (size_t d = 0; d < sizeof docs / sizeof docs[0]; d++) {
		char *md = read_all(docs[d]);
		const char *mark = "<!-- quote: ";
		for (char *p = strstr(md, mark); p; p = strstr(p, mark)) {
			p += strlen(mark);
			char path[256];
			size_t n = strcspn(p, " ");
			cr_assert_lt(n, sizeof path);
			snprintf(path, sizeof path, "%.*s", (int)n, p);
			/* the fenced block after the marker: from the line
			 * after "```lang" to the line "```" */
			char *open_ = strstr(p, "\n```");
			cr_assert_not_null(open_, "%s: no block after the "
					   "quote of %s", docs[d], path);
			char *body = strchr(open_ + 1, '\n');
			cr_assert_not_null(body);
			body++;
			char *close_ = strstr(body, "\n```");
			cr_assert_not_null(close_, "%s: unclosed block", docs[d]);
			char *src = read_all(path);
			*close_ = 0;
			cr_assert(strstr(src, body), "%s quotes %s, which has no "
				  "such text:\n%s", docs[d], path, body);
			*close_ = '\n';
			free(src);
			nquotes++;
			p = close_;
		}
		free(md);
	}
	cr_assert_geq(nquotes, 10, "only %d quotes found", nquotes);
}
