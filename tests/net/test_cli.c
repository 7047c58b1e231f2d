/*
 * test_cli.c -- the `cohort` command line client ($COHORT_BIN/cohort) run
 * as a child process against a real cohortd (srvutil.h): its readable and
 * --json output (JSON checked by Python's json module), its exit codes
 * (0 ok, 1 operation failed, 2 usage, 3 not found, 4 connection or auth),
 * --help, --where, and `load`: CSV files (types inferred or from a schema
 * file, separators, RFC 4180 quoting, bad lines with and without
 * --skip-bad, exact line numbers), newline-delimited JSON events, the
 * --json summary, and the real bank-marketing file when ../shared/data
 * has it.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cohort_client.h"
#include "srvutil.h"

static srv server;
static char admin_tok[128], read_tok[128], out_path[128], err_path[128];
static char out[1 << 16], err[1 << 16];
static char cli_out[1 << 16];    /* stdout of the last cli() */

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "%s", path);
	fputs(text, f);
	fclose(f);
	cr_assert_eq(chmod(path, mode), 0);
}

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

/* Run argv (NULL-terminated) with stdout and stderr into out and err;
 * returns the exit status. */
static int run(const char *const *argv)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (o < 0 || e < 0)
			_exit(127);
		dup2(o, 1);
		dup2(e, 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	slurp(out_path, out, sizeof out);
	slurp(err_path, err, sizeof err);
	cr_assert(WIFEXITED(status), "killed by signal");
	return WEXITSTATUS(status);
}

/* cohort --port P [--token-file T] args...; NULL token: none */
static int cli(const char *token, ...)
{
	static char bin[512], port[16];
	const char *dir = getenv("COHORT_BIN");
	snprintf(bin, sizeof bin, "%s/cohort", dir && *dir ? dir : "build");
	snprintf(port, sizeof port, "%d", server.port);
	const char *argv[64];
	int n = 0;
	argv[n++] = bin;
	argv[n++] = "--port";
	argv[n++] = port;
	if (token) {
		argv[n++] = "--token-file";
		argv[n++] = token;
	}
	va_list ap;
	va_start(ap, token);
	const char *a;
	while ((a = va_arg(ap, const char *)) && n < 63)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	unsetenv("COHORT_TOKEN_FILE");
	int rc = run(argv);
	memcpy(cli_out, out, sizeof out);
	return rc;
}

/* Evaluate a Python expression over the JSON the last cli() printed (d);
 * its str(). */
static const char *json_eval(const char *expr)
{
	static char json_path[160], result[4096];
	snprintf(json_path, sizeof json_path, "%s/json", server.dir);
	write_file(json_path, cli_out, 0600);
	char script[1024];
	snprintf(script, sizeof script,
		 "import json,sys\nd=json.load(open(sys.argv[1]))\nprint(%s)",
		 expr);
	const char *argv[] = { "python3", "-c", script, json_path, NULL };
	int rc = run(argv);
	cr_assert_eq(rc, 0, "JSON '%s' did not parse or %s failed: %s",
		     json_path, expr, err);
	snprintf(result, sizeof result, "%.4000s", out);
	size_t n = strlen(result);
	while (n && result[n - 1] == '\n')
		result[--n] = 0;
	return result;
}

static void setup(void)
{
	srv_opts o = { .memory = true };
	srv_start(&server, &o);
	snprintf(admin_tok, sizeof admin_tok, "%s/admin.tok", server.dir);
	snprintf(read_tok, sizeof read_tok, "%s/read.tok", server.dir);
	snprintf(out_path, sizeof out_path, "%s/out", server.dir);
	snprintf(err_path, sizeof err_path, "%s/err", server.dir);
	write_file(admin_tok, SRV_TOKEN_ADMIN "\n", 0600);
	write_file(read_tok, "read " SRV_TOKEN_READ "\n", 0600);
}

static void teardown(void)
{
	srv_cleanup(&server);
}

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 30);

static void make_users(void)
{
	int rc = cli(admin_tok, "create", "users", "age:i32", "city:cat",
		     "emb:vec:3", "score:f64", "clicks:counter", NULL);
	cr_assert_eq(rc, 0, "%s", err);
}

Test(cli, help_documents_commands_and_exit_codes)
{
	cr_assert_eq(cli(NULL, "--help", NULL), 0);
	cr_assert(strstr(out, "Exit codes"));
	cr_assert(strstr(out, "3  not found"));
	cr_assert(strstr(out, "load TABLE FILE.csv"));
	cr_assert_eq(cli(NULL, "get", "--help", NULL), 0);
	cr_assert(strstr(out, "usage: cohort get"), "%s", out);
	cr_assert_eq(cli(NULL, "help", "load", NULL), 0);
	cr_assert(strstr(out, "--skip-bad"));
	cr_assert(strstr(out, "--schema SCHEMA"), "%s", out);
	cr_assert(strstr(out, "--events"), "%s", out);
	cr_assert_eq(cli(NULL, "load", "--help", NULL), 0);
	cr_assert(strstr(out, "--key-rownum"), "%s", out);
	cr_assert_eq(cli(NULL, "--help", NULL), 0);
	cr_assert(strstr(out, "load TABLE --events"), "%s", out);
	cr_assert_eq(cli(NULL, NULL), 2);
	cr_assert_eq(cli(NULL, "frobnicate", NULL), 2);
	cr_assert(strstr(err, "frobnicate"));
	cr_assert_eq(cli(NULL, "--token", "abc", "ping", NULL), 2);
	cr_assert(strstr(err, "--token-file"));
	cr_assert_eq(cli(admin_tok, "get", "users", NULL), 2);
	cr_assert_eq(cli(admin_tok, "knn", "users", "idx", "-k", "x",
			 "--key", "a", NULL), 2);
}

Test(cli, connection_and_auth_failures_exit_4)
{
	cr_assert_eq(cli(admin_tok, "ping", NULL), 0, "%s", err);
	cr_assert(strstr(out, "pong"));
	/* no token at all: the server says EAUTH */
	cr_assert_eq(cli(NULL, "tables", NULL), 4);
	cr_assert(strstr(err, "token"), "%s", err);
	/* a wrong token */
	char bad[160];
	snprintf(bad, sizeof bad, "%s/bad.tok", server.dir);
	write_file(bad, "this-is-not-a-token-at-all\n", 0600);
	cr_assert_eq(cli(bad, "ping", NULL), 4);
	cr_assert(strstr(err, "authentication failed"), "%s", err);
	/* a token file others can read */
	write_file(bad, SRV_TOKEN_ADMIN "\n", 0644);
	cr_assert_eq(cli(bad, "ping", NULL), 4);
	cr_assert(strstr(err, "readable by others"), "%s", err);
	/* COHORT_TOKEN_FILE works like --token-file */
	char bin[512], port[16];
	const char *dir = getenv("COHORT_BIN");
	snprintf(bin, sizeof bin, "%s/cohort", dir && *dir ? dir : "build");
	snprintf(port, sizeof port, "%d", server.port);
	setenv("COHORT_TOKEN_FILE", admin_tok, 1);
	const char *argv[] = { bin, "--port", port, "--json", "ping", NULL };
	cr_assert_eq(run(argv), 0, "%s", err);
	memcpy(cli_out, out, sizeof out);
	cr_assert_str_eq(json_eval("d['ok']"), "True");
	/* nothing listening */
	srv_stop(&server);
	cr_assert_eq(cli(admin_tok, "ping", NULL), 4);
	cr_assert(strstr(err, "cannot connect"), "%s", err);
}

Test(cli, put_get_readable_and_json)
{
	make_users();
	cr_assert_eq(cli(admin_tok, "put", "users", "u1", "age=31",
			 "city=lisbon", "emb=1,2.5,-3", "score=0.1", NULL), 0,
		     "%s", err);
	cr_assert_eq(cli(admin_tok, "get", "users", "u1", NULL), 0, "%s", err);
	cr_assert(strstr(out, "age     31\n"), "%s", out);
	cr_assert(strstr(out, "city    lisbon\n"), "%s", out);
	cr_assert(strstr(out, "emb     [1, 2.5, -3]\n"), "%s", out);
	cr_assert(strstr(out, "clicks  null\n"), "%s", out);

	cr_assert_eq(cli(admin_tok, "--json", "get", "users", "u1", "age",
			 "emb", "score", NULL), 0);
	cr_assert_str_eq(json_eval("d['status']"), "present");
	cr_assert_str_eq(json_eval("d['values']['age']"), "31");
	cr_assert_str_eq(json_eval("d['values']['emb']"), "[1, 2.5, -3]");
	cr_assert_str_eq(json_eval("d['values']['score']"), "0.1");
	cr_assert_str_eq(json_eval("list(d['values'])"),
			 "['age', 'emb', 'score']");

	/* not found: key, table; exit 3 with a message */
	cr_assert_eq(cli(admin_tok, "get", "users", "nobody", NULL), 3);
	cr_assert(strstr(err, "not found"), "%s", err);
	cr_assert_eq(cli(admin_tok, "get", "ghosts", "u1", NULL), 3);
	cr_assert(strstr(err, "ghosts"), "%s", err);
	cr_assert_eq(cli(admin_tok, "--json", "get", "users", "nobody", NULL), 3);
	cr_assert_str_eq(json_eval("d['status']"), "missing");

	/* bad values are usage errors; an unknown column the server's */
	cr_assert_eq(cli(admin_tok, "put", "users", "u1", "age=old", NULL), 2);
	cr_assert(strstr(err, "age"), "%s", err);
	cr_assert_eq(cli(admin_tok, "put", "users", "u1", "emb=1,2", NULL), 2);
	cr_assert_eq(cli(admin_tok, "put", "users", "u1", "nope=1", NULL), 1);
	cr_assert(strstr(err, "nope"), "%s", err);
	cr_assert_eq(cli(admin_tok, "put", "users", "u1", "age", NULL), 2);
	/* an empty value stores null */
	cr_assert_eq(cli(admin_tok, "put", "users", "u1", "city=", NULL), 0);
	cr_assert_eq(cli(admin_tok, "--json", "get", "users", "u1", "city",
			 NULL), 0);
	cr_assert_str_eq(json_eval("d['values']['city']"), "None");
}

Test(cli, event_delete_count_and_keys)
{
	make_users();
	cr_assert_eq(cli(admin_tok, "put", "users", "a", "age=20", "city=x", NULL),
		     0);
	cr_assert_eq(cli(admin_tok, "put", "users", "b", "age=40", "city=y", NULL),
		     0);
	cr_assert_eq(cli(admin_tok, "put", "users", "c", "age=60", "city=x", NULL),
		     0);
	cr_assert_eq(cli(admin_tok, "event", "users", "a", "clicks+=2",
			 "age=21", "--time", "1700000000000", NULL), 0, "%s", err);
	cr_assert_eq(cli(admin_tok, "event", "users", "a", "clicks~3", NULL), 0,
		     "%s", err);
	cr_assert_eq(cli(admin_tok, "--json", "get", "users", "a", "clicks",
			 "age", NULL), 0);
	cr_assert_str_eq(json_eval("d['values']['clicks']"), "5");
	cr_assert_str_eq(json_eval("d['values']['age']"), "21");
	cr_assert_eq(cli(admin_tok, "event", "users", "a", "city+=1", NULL), 1);

	cr_assert_eq(cli(admin_tok, "count", "users", NULL), 0);
	cr_assert_str_eq(out, "3\n");
	cr_assert_eq(cli(admin_tok, "count", "users", "--where",
			 "age > 30 and city = x", NULL), 0, "%s", err);
	cr_assert_str_eq(out, "1\n");
	cr_assert_eq(cli(admin_tok, "count", "users", "--where",
			 "(age <= 21 or age >= 60) and not city in ('y')", NULL),
		     0, "%s", err);
	cr_assert_str_eq(out, "2\n");
	cr_assert_eq(cli(admin_tok, "count", "users", "--where",
			 "clicks is not null", NULL), 0, "%s", err);
	cr_assert_str_eq(out, "1\n");
	cr_assert_eq(cli(admin_tok, "--json", "keys", "users", "--where",
			 "city != y", NULL), 0, "%s", err);
	cr_assert_str_eq(json_eval("sorted(d['keys'])"), "['a', 'c']");
	cr_assert_str_eq(json_eval("d['count']"), "2");
	cr_assert_eq(cli(admin_tok, "keys", "users", "--limit", "1", NULL), 0);
	cr_assert_eq(strlen(out), 2);

	/* bad expressions */
	cr_assert_eq(cli(admin_tok, "count", "users", "--where", "age >", NULL),
		     2);
	cr_assert(strstr(err, "--where"), "%s", err);
	cr_assert_eq(cli(admin_tok, "count", "users", "--where", "(age > 1",
			 NULL), 2);
	cr_assert_eq(cli(admin_tok, "count", "users", "--where", "age = x",
			 NULL), 2);
	cr_assert_eq(cli(admin_tok, "count", "users", "--where", "agee = 1",
			 NULL), 1);

	cr_assert_eq(cli(admin_tok, "delete", "users", "a", NULL), 0);
	cr_assert_str_eq(out, "deleted 1\n");
	cr_assert_eq(cli(admin_tok, "delete", "users", "a", "b", NULL), 3);
	cr_assert(strstr(err, "'a' not found"), "%s", err);
	cr_assert_eq(cli(admin_tok, "count", "users", NULL), 0);
	cr_assert_str_eq(out, "1\n");
}

Test(cli, read_token_is_denied_writes)
{
	make_users();
	cr_assert_eq(cli(read_tok, "put", "users", "u1", "age=3", NULL), 1);
	cr_assert(strstr(err, "role"), "%s", err);
	cr_assert_eq(cli(read_tok, "snapshot", NULL), 1);
	cr_assert_eq(cli(read_tok, "get", "users", "u1", NULL), 3);
}

static void write_csv(const char *path)
{
	write_file(path,
		   "id,age,city,emb,score\n"
		   "u1,20,lisbon,\"1,0,0\",1.5\n"
		   "u2,30,\"porto, north\",\"0,1,0\",2\n"
		   "u3,thirty,faro,\"0,0,1\",3\n"
		   "u4,40,,\"1,1,1\",\n"
		   "u5,50,faro,\"1,1,0\",5\n",
		   0600);
}

Test(cli, load_stops_at_a_bad_line)
{
	make_users();
	char csv[160];
	snprintf(csv, sizeof csv, "%s/data.csv", server.dir);
	write_csv(csv);
	cr_assert_eq(cli(admin_tok, "load", "users", csv, NULL), 1);
	cr_assert(strstr(err, "data.csv:4:"), "%s", err);
	cr_assert(strstr(err, "thirty"), "%s", err);
	/* the lines before it are in */
	cr_assert_eq(cli(admin_tok, "count", "users", NULL), 0);
	cr_assert_str_eq(out, "2\n");
	cr_assert_eq(cli(admin_tok, "--json", "get", "users", "u2", "city",
			 "emb", NULL), 0);
	cr_assert_str_eq(json_eval("d['values']['city']"), "porto, north");
	cr_assert_str_eq(json_eval("d['values']['emb']"), "[0, 1, 0]");
	/* a header naming a column the table lacks */
	write_file(csv, "id,agee\nx,1\n", 0600);
	cr_assert_eq(cli(admin_tok, "load", "users", csv, NULL), 1);
	cr_assert(strstr(err, "agee"), "%s", err);
	cr_assert_eq(cli(admin_tok, "load", "ghosts", csv, NULL), 3);
}

Test(cli, load_skip_bad_counts_them)
{
	make_users();
	char csv[160];
	snprintf(csv, sizeof csv, "%s/data.csv", server.dir);
	write_csv(csv);
	cr_assert_eq(cli(admin_tok, "load", "users", csv, "--skip-bad", NULL), 0,
		     "%s", err);
	cr_assert(strstr(out, "loaded 4 rows"), "%s", out);
	cr_assert(strstr(out, "1 bad line skipped"), "%s", out);
	cr_assert(strstr(err, "data.csv:4:"), "%s", err);
	/* a row the server refuses is a bad line too (infinite counter),
	 * and so is a short one; batches of 2 */
	write_file(csv, "key,clicks\nz1,1\nz2,1e999\nz3,2\nz4\nz5,3\n", 0600);
	cr_assert_eq(cli(admin_tok, "--json", "load", "users", csv, "--key",
			 "key", "--batch", "2", "--skip-bad", NULL), 0, "%s", err);
	cr_assert_str_eq(json_eval("(d['loaded'], d['skipped'])"), "(3, 2)");
	cr_assert_eq(cli(admin_tok, "count", "users", NULL), 0);
	cr_assert_str_eq(out, "7\n");
	cr_assert_eq(cli(admin_tok, "load", "users", csv, "--key", "key", NULL),
		     1);
	cr_assert(strstr(err, "data.csv:3:"), "%s", err);
}

Test(cli, knn_and_personas)
{
	make_users();
	cohort_client *c;
	cr_assert_eq(cohort_client_connect("127.0.0.1", (uint16_t)server.port,
					   NULL, &c), 0);
	cr_assert_eq(cohort_client_auth(c, SRV_TOKEN_ADMIN,
					strlen(SRV_TOKEN_ADMIN), NULL), 0);
	for (int i = 0; i < 40; i++) {
		char key[16];
		snprintf(key, sizeof key, "r%02d", i);
		float e[3] = { (float)i, 0, 1 };
		cohort_field f[] = { { 0, cohort_i32(i < 20 ? 20 : 70) },
				     { 2, cohort_vec(e, 3) },
				     { 3, cohort_f64(i) } };
		cr_assert_eq(cohort_client_put(c, "users", key, 3, COHORT_NOW,
					       f, 3), 0);
	}
	cr_assert_eq(cohort_client_index_create(c, "users", "emb_idx", 2, NULL),
		     0, "%s", cohort_client_errmsg(c));
	cohort_client_close(c);

	cr_assert_eq(cli(admin_tok, "--json", "knn", "users", "emb_idx",
			 "--vector", "5,0,1", "-k", "3", NULL), 0, "%s", err);
	/* r04 and r06 tie at distance 1: either order is right */
	cr_assert_str_eq(json_eval("[d[0]['key']] + "
				   "sorted(n['key'] for n in d[1:])"),
			 "['r05', 'r04', 'r06']");
	cr_assert_str_eq(json_eval("d[0]['distance']"), "0");
	cr_assert_eq(cli(admin_tok, "knn", "users", "emb_idx", "--key", "r05",
			 "-k", "2", "--where", "score > 5", NULL), 0, "%s", err);
	cr_assert(strstr(out, "r06"), "%s", out);
	cr_assert(!strstr(out, "r04"), "%s", out);
	cr_assert_eq(cli(admin_tok, "knn", "users", "emb_idx", "--key", "zz",
			 NULL), 3);

	cr_assert_eq(cli(admin_tok, "persona", "train", "users", "seg", "age",
			 "-k", "2", "--seed", "3", NULL), 0, "%s", err);
	cr_assert(strstr(out, "version 1"), "%s", out);
	cr_assert_eq(cli(admin_tok, "--json", "persona", "sizes", "users", "seg",
			 NULL), 0, "%s", err);
	cr_assert_str_eq(json_eval("sorted(p['size'] for p in d['personas'])"),
			 "[20, 20]");
	cr_assert_eq(cli(admin_tok, "--json", "persona", "describe", "users",
			 "seg", NULL), 0, "%s", err);
	cr_assert_str_eq(json_eval("d['inputs']"), "['age']");
	cr_assert_str_eq(json_eval("sorted(round(p['centroid'][0], 3) "
				   "for p in d['personas'])"), "[20, 70]");
	cr_assert_eq(cli(admin_tok, "persona", "describe", "users", "seg", NULL),
		     0, "%s", err);
	cr_assert(strstr(out, "centroid: age="), "%s", out);
	cr_assert_eq(cli(admin_tok, "--json", "persona", "assign", "users", "seg",
			 "r01", "-m", "2", NULL), 0, "%s", err);
	cr_assert_str_eq(json_eval("len(d['nearest'])"), "2");
	const char *p = json_eval("d['persona']");
	char persona[16];
	snprintf(persona, sizeof persona, "%s", p);
	cr_assert_eq(cli(admin_tok, "persona", "assign", "users", "seg", "r01",
			 NULL), 0);
	cr_assert(strstr(out, "persona "), "%s", out);
	cr_assert_eq(cli(admin_tok, "--json", "persona", "members", "users",
			 "seg", persona, NULL), 0, "%s", err);
	cr_assert_str_eq(json_eval("d['count']"), "20");
	cr_assert_eq(cli(admin_tok, "--json", "count", "users", "--where",
			 "persona(seg) = 0 or persona(seg) = 1", NULL), 0, "%s",
		     err);
	cr_assert_str_eq(json_eval("d['count']"), "40");
	cr_assert_eq(cli(admin_tok, "persona", "sizes", "users", "nomodel", NULL),
		     3);
	cr_assert(strstr(err, "nomodel"), "%s", err);
}

Test(cli, describe_tables_stats_as_json)
{
	make_users();
	cr_assert_eq(cli(admin_tok, "--json", "tables", NULL), 0);
	cr_assert_str_eq(json_eval("d"), "['users']");
	cr_assert_eq(cli(admin_tok, "tables", NULL), 0);
	cr_assert_str_eq(out, "users\n");
	cr_assert_eq(cli(admin_tok, "--json", "describe", "users", NULL), 0);
	cr_assert_str_eq(json_eval("[(c['name'], c['type']) for c in d['columns']][2]"),
			 "('emb', 'vec')");
	cr_assert_str_eq(json_eval("d['columns'][2]['dim']"), "3");
	cr_assert_eq(cli(admin_tok, "describe", "users", NULL), 0);
	cr_assert(strstr(out, "emb"), "%s", out);
	cr_assert(strstr(out, "dim 3"), "%s", out);
	cr_assert_eq(cli(admin_tok, "describe", "ghosts", NULL), 3);
	cr_assert_eq(cli(admin_tok, "--json", "stats", NULL), 0);
	cr_assert_str_eq(json_eval("d['tables']"), "1");
	cr_assert_eq(cli(admin_tok, "stats", NULL), 0);
	cr_assert(strstr(out, "io_path"), "%s", out);
	/* in memory: the server refuses a snapshot */
	cr_assert_eq(cli(admin_tok, "snapshot", NULL), 1);
	cr_assert(strstr(err, "memory"), "%s", err);
	cr_assert_eq(cli(admin_tok, "create", "users", "x:i32", NULL), 1);
	cr_assert_eq(cli(admin_tok, "create", "t2", "x:int", NULL), 2);
}

/* A file in the test's directory with text; its path. */
static const char *data_file(const char *name, const char *text)
{
	static char path[4][160];
	static int k;
	char *p = path[k++ % 4];
	snprintf(p, sizeof path[0], "%s/%s", server.dir, name);
	write_file(p, text, 0600);
	return p;
}

Test(cli, load_create_infers_and_prints_types)
{
	const char *csv = data_file("t.csv",
		"id,small,big,real,flag,name,empty,code\n"
		"a,1,3000000000,1.5,true,x,,007\n"
		"b,-2147483648,-5,2,FALSE,\"y, z\",,1\n"
		"c,,7,-0.25e2,yes,,,2\n"
		"d,2147483647,,3,no,w,,3\n");
	/* no table and no --create: exit 3, saying what would make one */
	cr_assert_eq(cli(admin_tok, "load", "t", csv, NULL), 3);
	cr_assert(strstr(err, "--create"), "%s", err);
	cr_assert_eq(cli(admin_tok, "load", "t", csv, "--create", NULL), 0, "%s",
		     err);
	/* printed as a schema file would say it */
	cr_assert(strstr(out, "# key: id\n"), "%s", out);
	cr_assert(strstr(out, "\nsmall:i32\n"), "%s", out);
	cr_assert(strstr(out, "\nbig:i64\n"), "%s", out);
	cr_assert(strstr(out, "\nreal:f64\n"), "%s", out);
	cr_assert(strstr(out, "\nflag:bool\n"), "%s", out);
	cr_assert(strstr(out, "\nname:cat\n"), "%s", out);
	cr_assert(strstr(out, "\nempty:cat "), "%s", out);
	cr_assert(strstr(out, "\ncode:cat\n"), "%s", out);
	cr_assert(strstr(out, "loaded 4 rows into t"), "%s", out);
	/* not a terminal: no progress line */
	cr_assert(!strchr(err, '\r'), "%s", err);
	cr_assert_eq(cli(admin_tok, "--json", "describe", "t", NULL), 0);
	cr_assert_str_eq(json_eval("' '.join(c['name'] + ':' + c['type'] for c in "
				   "d['columns'])"),
			 "small:i32 big:i64 real:f64 flag:bool name:cat empty:cat "
			 "code:cat");
	cr_assert_eq(cli(admin_tok, "--json", "get", "t", "b", NULL), 0, "%s", err);
	cr_assert_str_eq(json_eval("[d['values'][c] for c in ('small', 'big', "
				   "'real', 'flag', 'name', 'empty', 'code')]"),
			 "[-2147483648, -5, 2, False, 'y, z', None, '1']");
	cr_assert_eq(cli(admin_tok, "--json", "get", "t", "c", NULL), 0, "%s", err);
	cr_assert_str_eq(json_eval("(d['values']['small'], d['values']['real'], "
				   "d['values']['flag'], d['values']['name'])"),
			 "(None, -25, True, None)");
	cr_assert_eq(cli(admin_tok, "--json", "get", "t", "a", "big", "code", NULL),
		     0);
	cr_assert_str_eq(json_eval("(d['values']['big'], d['values']['code'])"),
			 "(3000000000, '007')");

	/* loading again converts per the existing columns: 1.5 is no i32 */
	const char *bad = data_file("bad.csv", "id,small\ne,1.5\n");
	cr_assert_eq(cli(admin_tok, "load", "t", bad, "--create", NULL), 1);
	cr_assert(strstr(err, "bad.csv:2: column 'small' is i32"), "%s", err);
	/* --json: the summary with the columns made; row numbers as keys */
	cr_assert_eq(cli(admin_tok, "--json", "load", "t2", csv, "--create",
			 "--key-rownum", NULL), 0, "%s", err);
	cr_assert_str_eq(json_eval("(d['loaded'], d['skipped'], d['created']['key'],"
				   " d['created']['columns'][0])"),
			 "(4, 0, None, {'name': 'id', 'type': 'cat'})");
	cr_assert_str_eq(json_eval("d['seconds'] >= 0 and d['rows_per_s'] > 0"),
			 "True");
	cr_assert_eq(cli(admin_tok, "--json", "get", "t2", "3", "id", NULL), 0);
	cr_assert_str_eq(json_eval("d['values']['id']"), "c");
	/* --key names the key column */
	cr_assert_eq(cli(admin_tok, "load", "t3", csv, "--create", "--key", "name",
			 NULL), 1);
	cr_assert(strstr(err, "t.csv:4: the key (field 6) must be 1 to 255 bytes"),
		  "%s", err);
	cr_assert_eq(cli(admin_tok, "load", "t4", csv, "--create", "--key", "nope",
			 NULL), 2);
	cr_assert(strstr(err, "nope"), "%s", err);
}

Test(cli, load_schema_file)
{
	const char *schema = data_file("s.schema",
		"# columns of u\n"
		"age:i32\n"
		"  city:cat   emb:vec:2   # as `cohort create` takes them\n"
		"\n"
		"spend:decay:86400000\n");
	const char *csv = data_file("u.csv",
		"id,age,city,emb\n"
		"k1,41,faro,\"0.5,1\"\n");
	cr_assert_eq(cli(admin_tok, "load", "u", csv, "--schema", schema, NULL), 0,
		     "%s", err);
	cr_assert(strstr(out, "from "), "%s", out);
	cr_assert_eq(cli(admin_tok, "--json", "describe", "u", NULL), 0);
	cr_assert_str_eq(json_eval("[(c['name'], c['type'], c['dim'], "
				   "c['half_life_ms']) for c in d['columns']]"),
			 "[('age', 'i32', 0, 0), ('city', 'cat', 0, 0), "
			 "('emb', 'vec', 2, 0), ('spend', 'decay', 0, 86400000)]");
	cr_assert_eq(cli(admin_tok, "--json", "get", "u", "k1", NULL), 0);
	cr_assert_str_eq(json_eval("(d['values']['age'], d['values']['emb'])"),
			 "(41, [0.5, 1])");
	/* the same schema on the existing table is fine; another type is not */
	cr_assert_eq(cli(admin_tok, "load", "u", csv, "--schema", schema, NULL), 0,
		     "%s", err);
	const char *other = data_file("o.schema", "age:i64\ncity:cat\n");
	cr_assert_eq(cli(admin_tok, "load", "u", csv, "--schema", other, NULL), 1);
	cr_assert(strstr(err, "o.schema:1: table 'u' exists with column 'age' of "
			 "type i32, not age:i64"), "%s", err);
	/* errors in the schema name its line */
	const char *broken = data_file("b.schema", "a:i32\n\nb:int\n");
	cr_assert_eq(cli(admin_tok, "load", "v", csv, "--schema", broken, NULL), 1);
	cr_assert(strstr(err, "b.schema:3: column 'b': bad type 'int'"), "%s", err);
	/* a header column the schema lacks: nothing is created */
	const char *partial = data_file("p.schema", "age:i32\n");
	cr_assert_eq(cli(admin_tok, "load", "v", csv, "--schema", partial, NULL), 1);
	cr_assert(strstr(err, "u.csv:1: column 'city' is not in the schema"), "%s",
		  err);
	cr_assert_eq(cli(admin_tok, "describe", "v", NULL), 3);
}

Test(cli, load_semicolons_and_quoted_fields)
{
	/* a quoted field spans lines 3-4: the bad line after it is line 6 */
	const char *csv = data_file("q.csv",
		"\"id\";\"n\";\"text\"\r\n"
		"q1;1;\"a;b, c\"\r\n"
		"q2;2;\"two\n"
		"lines \"\"quoted\"\"\"\r\n"
		"q3;3;plain\r\n"
		"q4;4\r\n"
		"q5;5;\"x\"y\r\n"
		"q6;6;\"never closed\n");
	cr_assert_eq(cli(admin_tok, "--json", "load", "q", csv, "--create",
			 "--skip-bad", NULL), 0, "%s", err);
	cr_assert(strstr(err, "q.csv:6: wrong number of fields: 2 where the header "
			 "has 3 (skipped)"), "%s", err);
	cr_assert(strstr(err, "q.csv:7: field 3: text after its closing quote"),
		  "%s", err);
	cr_assert(strstr(err, "q.csv:8: field 3: the quote opened on this line is "
			 "never closed"), "%s", err);
	cr_assert_str_eq(json_eval("(d['loaded'], d['skipped'])"), "(3, 3)");
	cr_assert_eq(cli(admin_tok, "--json", "get", "q", "q1", NULL), 0);
	cr_assert_str_eq(json_eval("(d['values']['n'], d['values']['text'])"),
			 "(1, 'a;b, c')");
	cr_assert_eq(cli(admin_tok, "--json", "get", "q", "q2", "text", NULL), 0);
	cr_assert_str_eq(json_eval("repr(d['values']['text'])"),
			 "'two\\nlines \"quoted\"'");
	/* without --skip-bad: line 6 stops it, the three before are in */
	cr_assert_eq(cli(admin_tok, "load", "q", csv, NULL), 1);
	cr_assert(strstr(err, "q.csv:6: wrong number of fields"), "%s", err);
	cr_assert(strstr(err, "3 rows loaded"), "%s", err);
	/* --sep overrides the guess: with ',' the quoted "id" runs into ;"n" */
	cr_assert_eq(cli(admin_tok, "load", "q", csv, "--sep", ",", NULL), 1);
	cr_assert(strstr(err, "q.csv:1: the header: field 1: text after its "
			 "closing quote"), "%s", err);
	cr_assert_eq(cli(admin_tok, "load", "q", csv, "--sep", "ab", NULL), 2);
}

Test(cli, load_events_ndjson)
{
	make_users();
	const char *ev = data_file("e.ndjson",
		"{\"key\": \"c1\", \"time\": 1700000000000, \"add\": {\"clicks\": 2},"
		" \"set\": {\"city\": \"faro\", \"age\": 30}}\n"
		"\n"
		"{\"key\":\"c1\",\"observe\":{\"clicks\":3}}\n"
		"{\"key\":\"c2\",\"set\":{\"emb\":[1,2.5,-3],\"city\":\"caf\\u00e9\","
		"\"score\":null}}\n"
		"{\"key\":\"c3\",\"add\":{\"clicks\":1},}\n"
		"{\"key\":\"c4\",\"add\":{\"nope\":1}}\n"
		"{\"key\":\"c5\",\"set\":{\"age\":1.5}}\n"
		"{\"key\":\"c6\",\"add\":{\"clicks\":1e999}}\n"
		"{\"key\":\"c7\",\"add\":{\"city\":\"x\"}}\n"
		"{\"key\":\"c8\",\"add\":{\"clicks\":1}}\n");
	/* the first bad line stops it: line 5, column 32 (the trailing comma) */
	cr_assert_eq(cli(admin_tok, "load", "users", "--events", ev, NULL), 1);
	cr_assert(strstr(err, "e.ndjson:5: bad JSON at column 32"), "%s", err);
	cr_assert(strstr(err, "3 rows loaded"), "%s", err);
	cr_assert_eq(cli(admin_tok, "--json", "get", "users", "c1", NULL), 0, "%s",
		     err);
	cr_assert_str_eq(json_eval("(d['values']['clicks'], d['values']['city'], "
				   "d['values']['age'])"), "(5, 'faro', 30)");
	cr_assert_eq(cli(admin_tok, "--json", "get", "users", "c2", NULL), 0);
	cr_assert_str_eq(json_eval("(d['values']['emb'], d['values']['city'])"),
			 "([1, 2.5, -3], 'café')");
	/* --skip-bad: every bad line counted, c8 is in; stdin */
	char bin[512], port[16], cmd[1200];
	const char *dir = getenv("COHORT_BIN");
	snprintf(bin, sizeof bin, "%s/cohort", dir && *dir ? dir : "build");
	snprintf(port, sizeof port, "%d", server.port);
	snprintf(cmd, sizeof cmd, "%s --port %s --token-file %s --json load users "
		 "--events - --skip-bad < %s", bin, port, admin_tok, ev);
	const char *argv[] = { "sh", "-c", cmd, NULL };
	cr_assert_eq(run(argv), 0, "%s", err);
	memcpy(cli_out, out, sizeof out);
	cr_assert(strstr(err, "stdin:5: bad JSON at column 32"), "%s", err);
	cr_assert(strstr(err, "stdin:6: unknown column 'nope'"), "%s", err);
	cr_assert(strstr(err, "stdin:7: column 'age' is i32: 1.5 is not a whole "
			 "number"), "%s", err);
	cr_assert(strstr(err, "stdin:8: column 'clicks': 1e999 is out of range"),
		  "%s", err);
	cr_assert(strstr(err, "stdin:9: the server refused the row"), "%s", err);
	cr_assert_str_eq(json_eval("(d['loaded'], d['skipped'])"), "(4, 5)");
	cr_assert_eq(cli(admin_tok, "--json", "get", "users", "c8", "clicks", NULL),
		     0);
	cr_assert_str_eq(json_eval("d['values']['clicks']"), "1");
	/* CSV options are refused with --events; the table must exist */
	cr_assert_eq(cli(admin_tok, "load", "users", "--events", ev, "--create",
			 NULL), 2);
	cr_assert_eq(cli(admin_tok, "load", "ghosts", "--events", ev, NULL), 3);
}

Test(cli, load_real_bank_csv, .timeout = 60)
{
	const char *path = "../shared/data/bank-marketing/bank.csv";
	FILE *f = fopen(path, "r");
	if (!f)
		cr_skip_test("%s is not there (run from the repository root with "
			     "../shared/data present): the real-data load is not "
			     "tested", path);
	/* the rows: lines after the header (the file quotes no newlines) */
	long lines = 0;
	int ch, last = '\n';
	while ((ch = getc(f)) != EOF) {
		lines += ch == '\n';
		last = ch;
	}
	fclose(f);
	lines += last != '\n';
	char want[32];
	snprintf(want, sizeof want, "%ld", lines - 1);
	cr_assert_eq(cli(admin_tok, "--json", "load", "bank", path, "--create",
			 "--key-rownum", NULL), 0, "%s", err);
	cr_assert_str_eq(json_eval("d['loaded']"), want);
	cr_assert_str_eq(json_eval("[c['type'] for c in d['created']['columns'] if "
				   "c['name'] in ('age', 'job', 'balance', 'y')]"),
			 "['i32', 'cat', 'i32', 'bool']");
	cr_log_info("bank.csv: %s rows at %s rows/s", want, json_eval("d['rows_per_s']"));
	cr_assert_eq(cli(admin_tok, "count", "bank", NULL), 0);
	cr_assert_eq(atol(out), lines - 1, "%s", out);
	/* the first row: 58;"management";"married";"tertiary";"no";2143;... */
	cr_assert_eq(cli(admin_tok, "--json", "get", "bank", "1", NULL), 0, "%s", err);
	cr_assert_str_eq(json_eval("[d['values'][c] for c in ('age', 'job', "
				   "'balance', 'housing', 'y')]"),
			 "[58, 'management', 2143, True, False]");
}
