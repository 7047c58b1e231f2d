/*
 * cli.c -- `cohort`, the command line client of cohortd, on top of
 * libcohort-client.
 *
 * One process runs one command: parse the global flags (anywhere on the
 * line), connect, authenticate with the token file when one is given (a
 * token never appears on the command line), run the command, print its
 * result readably or as JSON (--json), and exit with a code a script can
 * test: 0 ok, 1 the server or the operation failed, 2 usage, 3 not found
 * (key, table, model), 4 connection or authentication failure. Every error goes
 * to stderr with the server's message.
 *
 * Values typed on the command line or read from a CSV file are parsed per
 * column type, as DESCRIBE gives it. --where takes a small filter language
 * (parse_where), compiled into the client's filter builder. `load` reads
 * CSV files and newline-delimited JSON events into pipelined batches (its
 * own section below says how).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cohort_client.h"
#include "csv.h"

enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,
	EXIT_USAGE = 2,
	EXIT_NOTFOUND = 3,
	EXIT_CONN = 4
};

#define MAX_ARGS 4096

static const char *prog = "cohort";
static int json;
static cohort_client *cl;

/* ------------------------------------------------------------------------
 * Help
 * ------------------------------------------------------------------------ */
static const char help_main[] =
	"usage: cohort [global flags] COMMAND [ARGS]\n"
	"\n"
	"The command line client of cohortd.\n"
	"\n"
	"Global flags (anywhere on the line):\n"
	"  --host HOST          server address (default 127.0.0.1)\n"
	"  --port PORT          server port (default 7411)\n"
	"  --token-file PATH    file holding the token (or env COHORT_TOKEN_FILE);\n"
	"                       a token is never taken on the command line\n"
	"  --timeout MS         most a command waits for the server (default 60000)\n"
	"  --json               print results as JSON\n"
	"  --help               this help; COMMAND --help for a command's\n"
	"\n"
	"Commands:\n"
	"  ping                                 round trip to the server\n"
	"  tables                               list the tables\n"
	"  describe TABLE                       columns, persona models, indexes\n"
	"  create TABLE NAME:TYPE[:N]...        create a table (--ttl MS)\n"
	"  get TABLE KEY [COL...]               read a row\n"
	"  put TABLE KEY COL=VALUE...           upsert columns of a row (--time MS)\n"
	"  event TABLE KEY COL+=V|COL=V|COL~V...  add, set, observe (--time MS)\n"
	"  delete TABLE KEY...                  delete rows\n"
	"  count TABLE [--where EXPR]           count matching rows\n"
	"  keys TABLE [--where EXPR] [--limit N]  list matching keys\n"
	"  knn TABLE INDEX (--key K | --vector V) [-k N] [--ef N] [--where EXPR]\n"
	"  persona assign TABLE MODEL KEY [-m N]\n"
	"  persona members TABLE MODEL P [--limit N] [--where EXPR]\n"
	"  persona sizes TABLE MODEL\n"
	"  persona describe TABLE MODEL         centroids, sizes, names\n"
	"  persona train TABLE MODEL [COL...] -k N [--iters N] [--seed N] ...\n"
	"  load TABLE FILE.csv [--create | --schema F] [--key COL | --key-rownum]\n"
	"                                       load a CSV file (--skip-bad, --sep C)\n"
	"  load TABLE --events [FILE]           load newline-delimited JSON events\n"
	"  stats                                the server's counters\n"
	"  snapshot                             write a durable snapshot\n"
	"\n"
	"Exit codes:\n"
	"  0  success\n"
	"  1  the server refused or the operation failed (message on stderr)\n"
	"  2  usage error\n"
	"  3  not found: the key, table or persona model does not exist\n"
	"  4  connection or authentication failure\n";

struct cmd_help {
	const char *name;
	const char *text;
};

static const struct cmd_help helps[] = {
	{ "ping", "usage: cohort ping\n  Round trip to the server; prints the latency.\n" },
	{ "tables", "usage: cohort tables\n  Lists the tables.\n" },
	{ "describe", "usage: cohort describe TABLE\n"
	  "  Columns (id, name, type), persona models and indexes of TABLE.\n" },
	{ "create", "usage: cohort create TABLE NAME:TYPE[:N]... [--ttl MS]\n"
	  "  Types: f32 f64 i32 i64 bool cat vec:DIM counter decay:HALF_LIFE_MS\n"
	  "  min max last. Example: cohort create users age:i32 emb:vec:8\n" },
	{ "get", "usage: cohort get TABLE KEY [COL...] [--at MS]\n"
	  "  Reads columns of a row (all when none named). Exit 3 when the key\n"
	  "  is missing or expired.\n" },
	{ "put", "usage: cohort put TABLE KEY COL=VALUE... [--time MS]\n"
	  "  Values parse per column type: numbers, true/false, strings, vectors\n"
	  "  as 1,2,3. COL= (empty) stores null.\n" },
	{ "event", "usage: cohort event TABLE KEY UPDATE... [--time MS]\n"
	  "  UPDATE is COL+=V (add), COL=V (set) or COL~V (observe, aggregates).\n" },
	{ "delete", "usage: cohort delete TABLE KEY...\n"
	  "  Deletes rows; exit 3 when a key was absent.\n" },
	{ "count", "usage: cohort count TABLE [--where EXPR] [--at MS]\n"
	  "  Counts the rows matching EXPR (every row without it). EXPR:\n"
	  "    col = v, != < <= > >=, col in (a, b), col is [not] null,\n"
	  "    persona(model) = p, combined with and, or, not and parentheses.\n"
	  "  Strings may be quoted: 'a b' or \"a b\".\n" },
	{ "keys", "usage: cohort keys TABLE [--where EXPR] [--limit N] [--at MS]\n"
	  "  Lists the keys of matching rows (at most N, default 100).\n" },
	{ "knn", "usage: cohort knn TABLE INDEX (--key K | --vector V) [-k N] [--ef N]\n"
	  "           [--where EXPR] [--at MS]\n"
	  "  The k (default 10) nearest rows to a row's vector or to V (1,2,3).\n" },
	{ "persona", "usage: cohort persona assign TABLE MODEL KEY [-m N]\n"
	  "       cohort persona members TABLE MODEL P [--limit N] [--where EXPR]\n"
	  "       cohort persona sizes TABLE MODEL\n"
	  "       cohort persona describe TABLE MODEL\n"
	  "       cohort persona train TABLE MODEL [COL...] -k N [--iters N]\n"
	  "           [--seed N] [--sample N] [--minibatch] [--background]\n"
	  "           [--mode at_once|background] [--max-delay MS]\n"
	  "  train without columns retrains the existing model.\n" },
	{ "load", "usage: cohort load TABLE FILE.csv [--create | --schema SCHEMA]\n"
	  "           [--key COL | --key-rownum] [--sep C] [--skip-bad]\n"
	  "           [--batch N] [--inflight N]\n"
	  "       cohort load TABLE --events [FILE.ndjson] [--skip-bad] ...\n"
	  "\n"
	  "  CSV (FILE - reads stdin): the first line names the columns; fields\n"
	  "  are separated by ',' or ';' (whichever the header has more of, or\n"
	  "  --sep C; --sep tab) and may be quoted as RFC 4180 says (\"a, b\",\n"
	  "  \"say \"\"hi\"\"\", newlines inside quotes). An empty field stores null.\n"
	  "  The key is the column COL (default: the first column), or with\n"
	  "  --key-rownum the row's number (1, 2, ...; the first data row is 1).\n"
	  "  Into an existing table each field is read as its column's type.\n"
	  "  When the table does not exist:\n"
	  "    --create         make it with types inferred from the values (every\n"
	  "                     row of a file; of a pipe, the first 64 MiB): whole\n"
	  "                     numbers i32, or i64 when one is beyond i32; other\n"
	  "                     numbers f64; true/false/yes/no bool; anything else\n"
	  "                     (and 007-style codes) cat. The columns made are\n"
	  "                     printed in the schema file's syntax.\n"
	  "    --schema SCHEMA  make it with the columns SCHEMA lists: NAME:TYPE,\n"
	  "                     NAME:vec:DIM or NAME:decay:HALF_LIFE_MS as `cohort\n"
	  "                     create` takes them, one per line or several on a\n"
	  "                     line, '#' starts a comment. Given for an existing\n"
	  "                     table, its columns are checked against SCHEMA.\n"
	  "  Header names that are not column names ([A-Za-z0-9_], 1 to 64) match\n"
	  "  the column with their other characters as '_'.\n"
	  "\n"
	  "  Events (--events; FILE or stdin): one JSON object per line,\n"
	  "    {\"key\": \"c1\", \"time\": 1700000000000, \"set\": {\"city\": \"faro\"},\n"
	  "     \"add\": {\"clicks\": 1}, \"observe\": {\"spend\": 9.5}}\n"
	  "  time (ms since 1970) is optional (the server's clock); values are\n"
	  "  numbers, strings, true/false, null or arrays of numbers (vec), as\n"
	  "  the column's type wants. The table must exist.\n"
	  "\n"
	  "  Rows go in batches of N (default 1000) with up to --inflight\n"
	  "  batches (default 4) sent ahead of their answers. On a terminal a\n"
	  "  progress line shows rows, rows/s and how much of the file is read.\n"
	  "  A bad line (a value its column cannot take, a wrong number of\n"
	  "  fields, bad JSON, a row the server refuses) stops the load with\n"
	  "  FILE:LINE: why and exit 1; the lines before it are loaded, and when\n"
	  "  the server refused a row, the batches already sent behind it too\n"
	  "  (the count says how many rows were loaded). --skip-bad skips bad\n"
	  "  lines instead: the first 10 are shown, all are counted, exit 0.\n"
	  "  The summary gives rows loaded, skipped, seconds and rows/s (--json:\n"
	  "  {\"loaded\", \"skipped\", \"seconds\", \"rows_per_s\", \"created\"}).\n" },
	{ "stats", "usage: cohort stats\n  The server's counters.\n" },
	{ "snapshot", "usage: cohort snapshot\n  Writes a durable snapshot (admin).\n" },
};

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(cohort --help for usage)\n");
	return EXIT_USAGE;
}

static int cmd_help(const char *name)
{
	for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++)
		if (strcmp(helps[i].name, name) == 0) {
			fputs(helps[i].text, stdout);
			return EXIT_OK;
		}
	return usage("no command '%s'", name);
}

/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------ */
static int exit_code(int rc)
{
	switch (rc) {
	case COHORT_ENOTFOUND:
	case COHORT_ENOTABLE:
		return EXIT_NOTFOUND;
	case COHORT_ECLOSED:
	case COHORT_EAUTH:
	case COHORT_EPROTO:
		return EXIT_CONN;
	default:
		return EXIT_FAIL;
	}
}

/* A failed call: the server's (or client's) message on stderr. */
static int fail(int rc)
{
	const char *msg = cohort_client_errmsg(cl);
	fprintf(stderr, "%s: %s%s%s\n", prog, cohort_strerror(rc),
		msg && *msg ? ": " : "", msg ? msg : "");
	if (rc == COHORT_EAUTH && !getenv("COHORT_TOKEN_FILE"))
		fprintf(stderr, "%s: (give --token-file PATH or set COHORT_TOKEN_FILE)\n",
			prog);
	return exit_code(rc);
}

static int failf(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int failf(int code, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

/* ------------------------------------------------------------------------
 * Output
 * ------------------------------------------------------------------------ */
static void json_str(const char *s, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		switch (ch) {
		case '"': fputs("\\\"", stdout); break;
		case '\\': fputs("\\\\", stdout); break;
		case '\n': fputs("\\n", stdout); break;
		case '\r': fputs("\\r", stdout); break;
		case '\t': fputs("\\t", stdout); break;
		default:
			if (ch < 0x20 || ch == 0x7f)
				printf("\\u%04x", ch);
			else
				putchar(ch);
		}
	}
	putchar('"');
}

static void json_cstr(const char *s)
{
	json_str(s, strlen(s));
}

/* A key as text: printable bytes as they are, others escaped. */
static void print_key(const void *key, size_t n)
{
	const unsigned char *p = key;
	for (size_t i = 0; i < n; i++) {
		if (isprint(p[i]) && p[i] != '\\')
			putchar(p[i]);
		else
			printf("\\x%02x", p[i]);
	}
}

/* The shortest decimal that reads back as the same number. */
static void fmt_double(char *buf, size_t len, double d, int is_f32)
{
	if (!isfinite(d)) {
		snprintf(buf, len, "%s", isnan(d) ? "nan" : d > 0 ? "inf" : "-inf");
		return;
	}
	for (int prec = 6; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, d);
		if (is_f32 ? (float)strtod(buf, NULL) == (float)d
			   : strtod(buf, NULL) == d)
			return;
	}
}

static void print_num(double d, int is_f32)
{
	char buf[64];
	fmt_double(buf, sizeof buf, d, is_f32);
	if (json && !isfinite(d))
		fputs("null", stdout);
	else
		fputs(buf, stdout);
}

static void print_vec(const float *v, uint32_t dim)
{
	putchar('[');
	for (uint32_t i = 0; i < dim; i++) {
		if (i)
			fputs(json ? "," : ", ", stdout);
		print_num(v[i], 1);
	}
	putchar(']');
}

static void print_value(const cohort_value *v)
{
	switch (v->type) {
	case COHORT_NULL: fputs("null", stdout); break;
	case COHORT_F32: print_num(v->v.f32, 1); break;
	case COHORT_F64: print_num(v->v.f64, 0); break;
	case COHORT_I32: printf("%" PRId32, v->v.i32); break;
	case COHORT_I64: printf("%" PRId64, v->v.i64); break;
	case COHORT_BOOL: fputs(v->v.b ? "true" : "false", stdout); break;
	case COHORT_CAT:
		if (json)
			json_str(v->v.str.ptr, v->v.str.len);
		else
			fwrite(v->v.str.ptr, 1, v->v.str.len, stdout);
		break;
	case COHORT_VEC: print_vec(v->v.vec.ptr, v->v.vec.dim); break;
	default: printf("\"<%s>\"", cohort_type_name(v->type)); break;
	}
}

static const char *status_name(int st)
{
	return st == COHORT_ROW_PRESENT ? "present"
	       : st == COHORT_ROW_EXPIRED ? "expired" : "missing";
}

static const char *metric_name(int m)
{
	return m == COHORT_METRIC_IP ? "ip" : m == COHORT_METRIC_COSINE ? "cosine"
								     : "l2";
}

/* ------------------------------------------------------------------------
 * Arguments: per-command options after the command, positionals between
 * ------------------------------------------------------------------------ */
struct opt {
	const char *name;        /* "--limit" or "-k" */
	int has_arg;
	const char *val;         /* the value, or "" for a flag seen */
};

/* Split argv into positionals and the options of opts; unknown option:
 * usage error. "--" ends the options. */
static int parse_opts(int argc, char **argv, struct opt *opts, size_t nopts,
		      char **pos, int *npos)
{
	int n = 0, only_pos = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (!only_pos && strcmp(a, "--") == 0) {
			only_pos = 1;
			continue;
		}
		if (!only_pos && a[0] == '-' && a[1] && !isdigit((unsigned char)a[1]) &&
		    a[1] != '.') {
			size_t j;
			for (j = 0; j < nopts; j++)
				if (strcmp(opts[j].name, a) == 0)
					break;
			if (j == nopts)
				return usage("unknown option %s", a);
			if (opts[j].has_arg) {
				if (i + 1 >= argc)
					return usage("%s needs a value", a);
				opts[j].val = argv[++i];
			} else {
				opts[j].val = "";
			}
			continue;
		}
		pos[n++] = argv[i];
	}
	*npos = n;
	return 0;
}

static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* A numeric option within [lo, hi], or a usage error. */
static int opt_i64(const struct opt *o, int64_t lo, int64_t hi, int64_t *out)
{
	if (!o->val)
		return 0;
	if (parse_i64(o->val, lo, hi, out) < 0)
		return usage("%s %s: a whole number from %" PRId64 " to %" PRId64
			     " is expected", o->name, o->val, lo, hi);
	return 0;
}

/* ------------------------------------------------------------------------
 * Values, typed by column
 * ------------------------------------------------------------------------ */
static int parse_floats(const char *s, float *out, uint32_t max, uint32_t *n)
{
	uint32_t k = 0;
	while (isspace((unsigned char)*s))
		s++;
	int bracket = *s == '[';
	if (bracket)
		s++;
	for (;;) {
		while (isspace((unsigned char)*s))
			s++;
		if (bracket && *s == ']' && k == 0) {
			s++;
			break;
		}
		char *end;
		errno = 0;
		double d = strtod(s, &end);
		if (end == s || errno == ERANGE || !isfinite(d))
			return -1;
		if (k == max)
			return -2;
		out[k++] = (float)d;
		s = end;
		while (isspace((unsigned char)*s))
			s++;
		if (*s == ',') {
			s++;
			continue;
		}
		if (bracket) {
			if (*s != ']')
				return -1;
			s++;
		}
		break;
	}
	while (isspace((unsigned char)*s))
		s++;
	if (*s)
		return -1;
	*n = k;
	return 0;
}

/*
 * Parse text as a value of column ci. Vectors go to vbuf (room for the
 * column's dim). Empty text is null. On error writes why into err and
 * returns -1.
 */
static int parse_value(const cohort_client_column_info *ci, const char *s,
		       float *vbuf, cohort_value *out, char *err, size_t err_len)
{
	if (!*s) {
		*out = cohort_null();
		return 0;
	}
	char *end;
	double d;
	int64_t i;
	switch (ci->type) {
	case COHORT_F32:
	case COHORT_F64:
	case COHORT_COUNTER:
	case COHORT_DECAY:
	case COHORT_MIN:
	case COHORT_MAX:
	case COHORT_LAST:
		errno = 0;
		d = strtod(s, &end);
		if (end == s || *end || isnan(d))
			break;
		*out = ci->type == COHORT_F32 ? cohort_f32((float)d) : cohort_f64(d);
		return 0;
	case COHORT_I32:
		if (parse_i64(s, INT32_MIN, INT32_MAX, &i) < 0)
			break;
		*out = cohort_i32((int32_t)i);
		return 0;
	case COHORT_I64:
		if (parse_i64(s, INT64_MIN, INT64_MAX, &i) < 0)
			break;
		*out = cohort_i64(i);
		return 0;
	case COHORT_BOOL:
		if (!strcasecmp(s, "true") || !strcmp(s, "1") || !strcasecmp(s, "yes")) {
			*out = cohort_bool(true);
			return 0;
		}
		if (!strcasecmp(s, "false") || !strcmp(s, "0") || !strcasecmp(s, "no")) {
			*out = cohort_bool(false);
			return 0;
		}
		break;
	case COHORT_CAT:
		if (strlen(s) > COHORT_MAX_CAT) {
			snprintf(err, err_len, "column '%s': a string of %zu bytes (at most %d)",
				 ci->name, strlen(s), COHORT_MAX_CAT);
			return -1;
		}
		*out = cohort_cat(s);
		return 0;
	case COHORT_VEC: {
		uint32_t n;
		int rc = parse_floats(s, vbuf, ci->dim, &n);
		if (rc == 0 && n == ci->dim) {
			*out = cohort_vec(vbuf, n);
			return 0;
		}
		snprintf(err, err_len, "column '%s': '%s' is not a vector of %u finite numbers",
			 ci->name, s, ci->dim);
		return -1;
	}
	default:
		break;
	}
	if ((ci->type == COHORT_I32 || ci->type == COHORT_I64) &&
	    parse_i64(s, INT64_MIN, INT64_MAX, &i) == 0) {
		snprintf(err, err_len, "column '%s' is i32: %s is beyond its range "
			 "(-2147483648 to 2147483647)", ci->name, s);
		return -1;
	}
	snprintf(err, err_len, "column '%s' is %s: cannot read '%s'", ci->name,
		 cohort_type_name(ci->type), s);
	return -1;
}

/* Column by name with its description; prints the error. */
static int column(const char *table, const char *name,
		  cohort_client_column_info *ci)
{
	int id = cohort_client_column(cl, table, name);
	if (id < 0)
		return id;
	return cohort_client_column_info_get(cl, table, id, ci);
}

/* ------------------------------------------------------------------------
 * --where: a filter expression
 *
 *   expr  := and ('or' and)*
 *   and   := unary ('and' unary)*
 *   unary := 'not' unary | '(' expr ')' | pred
 *   pred  := COL op lit | COL 'in' '(' lit (',' lit)* ')'
 *          | COL 'is' ['not'] 'null' | 'persona' '(' MODEL ')' '=' N
 * ------------------------------------------------------------------------ */
enum { T_END, T_IDENT, T_NUM, T_STR, T_OP, T_LP, T_RP, T_COMMA };

struct lexer {
	const char *s;
	int kind;
	char text[COHORT_MAX_CAT + 1];
	int cmp;                 /* T_OP */
	const char *table;
	cohort_client_filter *f;
	char err[512];
};

static int lex(struct lexer *lx)
{
	const char *s = lx->s;
	while (isspace((unsigned char)*s))
		s++;
	lx->text[0] = 0;
	if (!*s) {
		lx->kind = T_END;
		lx->s = s;
		return 0;
	}
	char ch = *s;
	if (ch == '(' || ch == ')' || ch == ',') {
		lx->kind = ch == '(' ? T_LP : ch == ')' ? T_RP : T_COMMA;
		lx->s = s + 1;
		return 0;
	}
	static const struct { const char *op; int cmp; } ops[] = {
		{ "<=", COHORT_LE }, { ">=", COHORT_GE }, { "!=", COHORT_NE },
		{ "<>", COHORT_NE }, { "==", COHORT_EQ }, { "=", COHORT_EQ },
		{ "<", COHORT_LT }, { ">", COHORT_GT },
	};
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		size_t n = strlen(ops[i].op);
		if (strncmp(s, ops[i].op, n) == 0) {
			lx->kind = T_OP;
			lx->cmp = ops[i].cmp;
			snprintf(lx->text, sizeof lx->text, "%s", ops[i].op);
			lx->s = s + n;
			return 0;
		}
	}
	size_t n = 0;
	if (ch == '\'' || ch == '"') {
		s++;
		while (*s && *s != ch) {
			if (n == sizeof lx->text - 1) {
				snprintf(lx->err, sizeof lx->err, "a string longer than %d bytes",
					 COHORT_MAX_CAT);
				return -1;
			}
			lx->text[n++] = *s++;
		}
		if (*s != ch) {
			snprintf(lx->err, sizeof lx->err, "unterminated string");
			return -1;
		}
		lx->text[n] = 0;
		lx->kind = T_STR;
		lx->s = s + 1;
		return 0;
	}
	/* a word or a number: up to a space, an operator or a bracket */
	while (*s && !isspace((unsigned char)*s) && !strchr("()<>=!,'\"", *s)) {
		if (n == sizeof lx->text - 1) {
			snprintf(lx->err, sizeof lx->err, "a word longer than %d bytes",
				 COHORT_MAX_CAT);
			return -1;
		}
		lx->text[n++] = *s++;
	}
	if (n == 0) {
		snprintf(lx->err, sizeof lx->err, "unexpected '%c'", ch);
		return -1;
	}
	lx->text[n] = 0;
	lx->s = s;
	char *end;
	strtod(lx->text, &end);
	lx->kind = *end == 0 ? T_NUM : T_IDENT;
	return 0;
}

static int word_is(const struct lexer *lx, const char *w)
{
	return lx->kind == T_IDENT && strcasecmp(lx->text, w) == 0;
}

static int lx_fail(struct lexer *lx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int lx_fail(struct lexer *lx, const char *fmt, ...)
{
	if (!lx->err[0]) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(lx->err, sizeof lx->err, fmt, ap);
		va_end(ap);
	}
	return COHORT_EINVAL;
}

/* The literal at the lexer as a value for column ci. */
static int literal(struct lexer *lx, const cohort_client_column_info *ci,
		   cohort_value *v)
{
	if (lx->kind != T_NUM && lx->kind != T_STR && lx->kind != T_IDENT)
		return lx_fail(lx, "a value is expected after column '%s'", ci->name);
	switch (ci->type) {
	case COHORT_CAT:
		*v = cohort_cat(lx->text);
		return 0;
	case COHORT_BOOL:
		if (!strcasecmp(lx->text, "true") || !strcmp(lx->text, "1"))
			*v = cohort_bool(true);
		else if (!strcasecmp(lx->text, "false") || !strcmp(lx->text, "0"))
			*v = cohort_bool(false);
		else
			return lx_fail(lx, "column '%s' is bool: '%s' is not true or false",
				       ci->name, lx->text);
		return 0;
	case COHORT_VEC:
		return lx_fail(lx, "column '%s' is a vector: no comparison", ci->name);
	default: {
		if (lx->kind != T_NUM)
			return lx_fail(lx, "column '%s' is %s: '%s' is not a number",
				       ci->name, cohort_type_name(ci->type), lx->text);
		int64_t i;
		if (parse_i64(lx->text, INT64_MIN, INT64_MAX, &i) == 0)
			*v = cohort_i64(i);
		else
			*v = cohort_f64(strtod(lx->text, NULL));
		return 0;
	}
	}
}

static int parse_or(struct lexer *lx);

static int parse_pred(struct lexer *lx)
{
	if (lx->kind != T_IDENT)
		return lx_fail(lx, "a column name is expected%s%s",
			       lx->text[0] ? " at " : "", lx->text);
	char col[COHORT_MAX_CAT + 1];
	snprintf(col, sizeof col, "%s", lx->text);
	if (lex(lx) < 0)
		return COHORT_EINVAL;
	if (strcasecmp(col, "persona") == 0 && lx->kind == T_LP) {
		if (lex(lx) < 0 || lx->kind != T_IDENT)
			return lx_fail(lx, "persona(MODEL) = P: a model name is expected");
		char model[COHORT_MAX_CAT + 1];
		snprintf(model, sizeof model, "%s", lx->text);
		int64_t p;
		if (lex(lx) < 0 || lx->kind != T_RP || lex(lx) < 0 ||
		    lx->kind != T_OP || lx->cmp != COHORT_EQ || lex(lx) < 0 ||
		    lx->kind != T_NUM || parse_i64(lx->text, 0, UINT32_MAX - 1, &p) < 0)
			return lx_fail(lx, "persona(MODEL) = P with P a persona number");
		if (lex(lx) < 0)
			return COHORT_EINVAL;
		int id = cohort_client_filter_persona(lx->f, model, (uint32_t)p);
		if (id < 0)
			return lx_fail(lx, "persona(%s): %s", model, cohort_strerror(id));
		return id;
	}
	cohort_client_column_info ci;
	int rc = column(lx->table, col, &ci);
	if (rc < 0) {
		lx_fail(lx, "%s", cohort_client_errmsg(cl));
		return rc;
	}
	if (word_is(lx, "is")) {
		if (lex(lx) < 0)
			return COHORT_EINVAL;
		int negate = word_is(lx, "not");
		if (negate && lex(lx) < 0)
			return COHORT_EINVAL;
		if (!word_is(lx, "null"))
			return lx_fail(lx, "'is [not] null' is expected after '%s'", col);
		if (lex(lx) < 0)
			return COHORT_EINVAL;
		return negate ? cohort_client_filter_not_null(lx->f, ci.id)
			      : cohort_client_filter_is_null(lx->f, ci.id);
	}
	if (word_is(lx, "in")) {
		cohort_value set[256];
		char (*strs)[COHORT_MAX_CAT + 1] = malloc(256 * sizeof *strs);
		if (!strs)
			return COHORT_ENOMEM;
		size_t n = 0;
		rc = 0;
		if (lex(lx) < 0 || lx->kind != T_LP)
			rc = lx_fail(lx, "'in (a, b, ...)' is expected after '%s'", col);
		while (rc == 0) {
			if (lex(lx) < 0) {
				rc = COHORT_EINVAL;
				break;
			}
			if (n == 256) {
				rc = lx_fail(lx, "at most 256 values in 'in'");
				break;
			}
			if ((rc = literal(lx, &ci, &set[n])) < 0)
				break;
			if (set[n].type == COHORT_CAT) {
				snprintf(strs[n], sizeof strs[n], "%s", lx->text);
				set[n] = cohort_cat(strs[n]);
			}
			n++;
			if (lex(lx) < 0) {
				rc = COHORT_EINVAL;
				break;
			}
			if (lx->kind == T_RP)
				break;
			if (lx->kind != T_COMMA)
				rc = lx_fail(lx, "',' or ')' is expected in 'in (...)'");
		}
		int id = rc;
		if (rc == 0) {
			if (ci.type == COHORT_CAT) {
				id = cohort_client_filter_in(lx->f, ci.id, set, n);
			} else {
				/* not cat: an or of equalities */
				id = cohort_client_filter_cmp(lx->f, ci.id, COHORT_EQ, set[0]);
				for (size_t i = 1; i < n; i++)
					id = cohort_client_filter_or(lx->f, id,
						cohort_client_filter_cmp(lx->f, ci.id,
									 COHORT_EQ, set[i]));
			}
			if (id >= 0 && lex(lx) < 0)
				id = COHORT_EINVAL;
		}
		free(strs);
		return id;
	}
	if (lx->kind != T_OP)
		return lx_fail(lx, "an operator (= != < <= > >= in is) is expected after '%s'",
			       col);
	int cmp = lx->cmp;
	if (lex(lx) < 0)
		return COHORT_EINVAL;
	cohort_value v;
	if ((rc = literal(lx, &ci, &v)) < 0)
		return rc;
	int id = cohort_client_filter_cmp(lx->f, ci.id, (cohort_cmp)cmp, v);
	if (id >= 0 && lex(lx) < 0)
		return COHORT_EINVAL;
	return id;
}

static int parse_unary(struct lexer *lx)
{
	if (word_is(lx, "not")) {
		if (lex(lx) < 0)
			return COHORT_EINVAL;
		return cohort_client_filter_not(lx->f, parse_unary(lx));
	}
	if (lx->kind == T_LP) {
		if (lex(lx) < 0)
			return COHORT_EINVAL;
		int id = parse_or(lx);
		if (id < 0)
			return id;
		if (lx->kind != T_RP)
			return lx_fail(lx, "')' is expected");
		if (lex(lx) < 0)
			return COHORT_EINVAL;
		return id;
	}
	return parse_pred(lx);
}

static int parse_and(struct lexer *lx)
{
	int id = parse_unary(lx);
	while (id >= 0 && word_is(lx, "and")) {
		if (lex(lx) < 0)
			return COHORT_EINVAL;
		id = cohort_client_filter_and(lx->f, id, parse_unary(lx));
	}
	return id;
}

static int parse_or(struct lexer *lx)
{
	int id = parse_and(lx);
	while (id >= 0 && word_is(lx, "or")) {
		if (lex(lx) < 0)
			return COHORT_EINVAL;
		id = cohort_client_filter_or(lx->f, id, parse_and(lx));
	}
	return id;
}

/* Compile expr into *out (NULL when expr is NULL). Exit code on error. */
static int parse_where(const char *table, const char *expr,
		       cohort_client_filter **out)
{
	*out = NULL;
	if (!expr)
		return 0;
	struct lexer lx;
	memset(&lx, 0, sizeof lx);
	lx.s = expr;
	lx.table = table;
	if (cohort_client_filter_new(&lx.f) < 0)
		return failf(EXIT_FAIL, "out of memory");
	int id = lex(&lx) < 0 ? COHORT_EINVAL : parse_or(&lx);
	if (id >= 0 && lx.kind != T_END)
		id = lx_fail(&lx, "unexpected '%s' after the expression", lx.text);
	if (id < 0) {
		cohort_client_filter_free(lx.f);
		if (id == COHORT_ENOTABLE || id == COHORT_ECLOSED || id == COHORT_EAUTH)
			return fail(id);
		return failf(id == COHORT_ENOCOLUMN ? EXIT_FAIL : EXIT_USAGE,
			     "--where \"%s\": %s", expr,
			     lx.err[0] ? lx.err : cohort_strerror(id));
	}
	*out = lx.f;
	return 0;
}

/* ------------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------------ */
static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmd_ping(int argc, char **argv)
{
	(void)argv;
	if (argc)
		return usage("ping takes no arguments");
	double t0 = now_s();
	int rc = cohort_client_ping(cl);
	if (rc < 0)
		return fail(rc);
	double ms = (now_s() - t0) * 1e3;
	cohort_client_info info;
	cohort_client_info_get(cl, &info);
	if (json) {
		printf("{\"ok\":true,\"ms\":%.3f,\"server\":", ms);
		json_cstr(info.server_name);
		printf(",\"version\":%u}\n", info.version);
	} else {
		printf("pong from %s (protocol %u) in %.3f ms\n", info.server_name,
		       info.version, ms);
	}
	return EXIT_OK;
}

static int cmd_tables(int argc, char **argv)
{
	(void)argv;
	if (argc)
		return usage("tables takes no arguments");
	const char *const *names;
	size_t n;
	int rc = cohort_client_tables(cl, &names, &n);
	if (rc < 0)
		return fail(rc);
	if (json)
		putchar('[');
	for (size_t i = 0; i < n; i++) {
		if (json) {
			if (i)
				putchar(',');
			json_cstr(names[i]);
		} else {
			puts(names[i]);
		}
	}
	if (json)
		puts("]");
	return EXIT_OK;
}

static int cmd_describe(int argc, char **argv)
{
	if (argc != 1)
		return usage("describe TABLE");
	const cohort_client_table *t;
	int rc = cohort_client_describe(cl, argv[0], &t);
	if (rc < 0)
		return fail(rc);
	if (json) {
		printf("{\"table\":");
		json_cstr(t->name);
		printf(",\"rows\":%" PRIu64 ",\"mem_bytes\":%" PRIu64
		       ",\"ttl_ms\":%" PRId64 ",\"columns\":[",
		       t->nrows, t->mem_bytes, t->ttl_ms);
		for (size_t i = 0; i < t->ncols; i++) {
			const cohort_client_column_info *c = &t->cols[i];
			printf("%s{\"id\":%d,\"name\":", i ? "," : "", c->id);
			json_cstr(c->name);
			printf(",\"type\":\"%s\",\"dim\":%u,\"half_life_ms\":%" PRId64
			       ",\"ncat\":%u}", cohort_type_name(c->type), c->dim,
			       c->half_life_ms, c->ncat);
		}
		printf("],\"models\":[");
		for (size_t i = 0; i < t->nmodels; i++) {
			const cohort_client_model_info *m = &t->models[i];
			printf("%s{\"name\":", i ? "," : "");
			json_cstr(m->name);
			printf(",\"version\":%" PRIu64 ",\"k\":%u,\"dim\":%u,\"columns\":[",
			       m->version, m->k, m->dim);
			for (size_t j = 0; j < m->ncolumns; j++)
				printf("%s%d", j ? "," : "", m->columns[j]);
			printf("],\"mode\":\"%s\",\"training\":%s,\"pending\":%" PRIu64
			       ",\"assigned\":%" PRIu64 "}",
			       m->mode == COHORT_PERSONA_BACKGROUND ? "background"
								    : "at_once",
			       m->training ? "true" : "false", m->pending, m->assigned);
		}
		printf("],\"indexes\":[");
		for (size_t i = 0; i < t->nindexes; i++) {
			const cohort_client_index_info *x = &t->indexes[i];
			printf("%s{\"name\":", i ? "," : "");
			json_cstr(x->name);
			printf(",\"column\":%d,\"metric\":\"%s\",\"M\":%u,"
			       "\"ef_construction\":%u,\"ef_search\":%u,\"nodes\":%" PRIu64
			       ",\"pending\":%" PRIu64 ",\"bytes\":%" PRIu64 "}",
			       x->column, metric_name(x->metric), x->M, x->ef_construction,
			       x->ef_search, x->nodes, x->pending, x->bytes);
		}
		puts("]}");
		return EXIT_OK;
	}
	printf("table %s: %" PRIu64 " rows, %" PRIu64 " bytes, ", t->name, t->nrows,
	       t->mem_bytes);
	if (t->ttl_ms)
		printf("ttl %" PRId64 " ms\n", t->ttl_ms);
	else
		printf("no ttl\n");
	printf("\n%-4s %-24s %-8s %s\n", "id", "column", "type", "details");
	for (size_t i = 0; i < t->ncols; i++) {
		const cohort_client_column_info *c = &t->cols[i];
		printf("%-4d %-24s %-8s", c->id, c->name, cohort_type_name(c->type));
		if (c->type == COHORT_VEC)
			printf(" dim %u", c->dim);
		if (c->type == COHORT_DECAY)
			printf(" half-life %" PRId64 " ms", c->half_life_ms);
		if (c->type == COHORT_CAT)
			printf(" %u distinct", c->ncat);
		putchar('\n');
	}
	if (t->nmodels) {
		printf("\npersona models:\n");
		for (size_t i = 0; i < t->nmodels; i++) {
			const cohort_client_model_info *m = &t->models[i];
			printf("  %s: version %" PRIu64 ", k %u, inputs", m->name,
			       m->version, m->k);
			for (size_t j = 0; j < m->ncolumns; j++) {
				int id = m->columns[j];
				printf("%s%s", j ? "," : " ",
				       id >= 0 && (size_t)id < t->ncols ? t->cols[id].name
									 : "?");
			}
			printf(", %s, %" PRIu64 " assigned, %" PRIu64 " pending%s\n",
			       m->mode == COHORT_PERSONA_BACKGROUND ? "background"
								    : "at once",
			       m->assigned, m->pending, m->training ? ", training" : "");
		}
	}
	if (t->nindexes) {
		printf("\nindexes:\n");
		for (size_t i = 0; i < t->nindexes; i++) {
			const cohort_client_index_info *x = &t->indexes[i];
			printf("  %s: column %s, %s, M %u, ef_construction %u, ef_search %u, "
			       "%" PRIu64 " nodes, %" PRIu64 " pending, %" PRIu64 " bytes\n",
			       x->name,
			       x->column >= 0 && (size_t)x->column < t->ncols
				       ? t->cols[x->column].name : "?",
			       metric_name(x->metric), x->M, x->ef_construction,
			       x->ef_search, x->nodes, x->pending, x->bytes);
		}
	}
	return EXIT_OK;
}

/*
 * One column of `create` or of a schema file: NAME:TYPE[:N], N the dim of
 * vec or the half-life (ms) of decay. spec is cut in place (name points
 * into it). Returns 0, or -1 with why.
 */
static int parse_coldef(char *spec, cohort_column_def *out, char *why,
			size_t why_len)
{
	char *t = strchr(spec, ':');
	if (!t) {
		snprintf(why, why_len, "column '%s': NAME:TYPE expected", spec);
		return -1;
	}
	*t++ = 0;
	char *param = strchr(t, ':');
	if (param)
		*param++ = 0;
	int type = -1;
	for (int k = COHORT_F32; k <= COHORT_LAST; k++)
		if (strcmp(cohort_type_name((cohort_type)k), t) == 0)
			type = k;
	int64_t n = 0;
	int need = type == COHORT_VEC || type == COHORT_DECAY;
	if (type < 0 || (need && (!param || parse_i64(param, 1, INT64_MAX, &n) < 0)) ||
	    (!need && param)) {
		snprintf(why, why_len, "column '%s': bad type '%s%s%s' (vec:DIM, "
			 "decay:MS, or one of f32 f64 i32 i64 bool cat counter min "
			 "max last)", spec, t, param ? ":" : "", param ? param : "");
		return -1;
	}
	memset(out, 0, sizeof *out);
	out->name = spec;
	out->type = (cohort_type)type;
	if (type == COHORT_VEC)
		out->dim = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
	if (type == COHORT_DECAY)
		out->half_life_ms = n;
	return 0;
}

static int cmd_create(int argc, char **argv)
{
	struct opt opts[] = { { "--ttl", 1, NULL } };
	char *pos[MAX_ARGS];
	int npos, rc = parse_opts(argc, argv, opts, 1, pos, &npos);
	if (rc)
		return rc;
	if (npos < 1)
		return usage("create TABLE NAME:TYPE[:N]...");
	int64_t ttl = 0;
	if ((rc = opt_i64(&opts[0], 0, INT64_MAX, &ttl)))
		return rc;
	size_t ncols = (size_t)npos - 1;
	cohort_column_def *defs = calloc(ncols ? ncols : 1, sizeof *defs);
	if (!defs)
		return failf(EXIT_FAIL, "out of memory");
	for (size_t i = 0; i < ncols; i++) {
		char why[512];
		if (parse_coldef(pos[i + 1], &defs[i], why, sizeof why) < 0) {
			free(defs);
			return usage("%s", why);
		}
	}
	rc = cohort_client_table_create(cl, pos[0], defs, ncols, ttl);
	free(defs);
	if (rc < 0)
		return fail(rc);
	if (json)
		printf("{\"ok\":true}\n");
	else
		printf("created table %s\n", pos[0]);
	return EXIT_OK;
}

static int cmd_get(int argc, char **argv)
{
	struct opt opts[] = { { "--at", 1, NULL } };
	char *pos[MAX_ARGS];
	int npos, rc = parse_opts(argc, argv, opts, 1, pos, &npos);
	if (rc)
		return rc;
	if (npos < 2)
		return usage("get TABLE KEY [COL...]");
	const char *table = pos[0], *key = pos[1];
	int64_t at = COHORT_NOW;
	if ((rc = opt_i64(&opts[0], INT64_MIN + 1, INT64_MAX, &at)))
		return rc;
	const cohort_client_table *t;
	if ((rc = cohort_client_describe(cl, table, &t)) < 0)
		return fail(rc);
	size_t ncols = npos > 2 ? (size_t)npos - 2 : t->ncols;
	int *cols = calloc(ncols ? ncols : 1, sizeof *cols);
	cohort_value *vals = calloc(ncols ? ncols : 1, sizeof *vals);
	const char **names = calloc(ncols ? ncols : 1, sizeof *names);
	if (!cols || !vals || !names) {
		rc = failf(EXIT_FAIL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < ncols; i++) {
		if (npos > 2) {
			int id = cohort_client_column(cl, table, pos[i + 2]);
			if (id < 0) {
				rc = fail(id);
				goto out;
			}
			cols[i] = id;
			names[i] = pos[i + 2];
		} else {
			cols[i] = (int)i;
			names[i] = t->cols[i].name;
		}
	}
	/* names point into the schema cache: no describe from here on */
	cohort_time row_time = 0;
	size_t n = 0;
	int st = cohort_client_get(cl, table, key, strlen(key), cols, ncols, at,
				   vals, ncols, &n, &row_time);
	if (st < 0) {
		rc = fail(st);
		goto out;
	}
	if (json) {
		printf("{\"table\":");
		json_cstr(table);
		printf(",\"key\":");
		json_cstr(key);
		printf(",\"status\":\"%s\"", status_name(st));
		if (st == COHORT_ROW_PRESENT) {
			printf(",\"time\":%" PRId64 ",\"values\":{", row_time);
			for (size_t i = 0; i < n; i++) {
				if (i)
					putchar(',');
				json_cstr(names[i]);
				putchar(':');
				print_value(&vals[i]);
			}
			putchar('}');
		}
		puts("}");
	} else if (st == COHORT_ROW_PRESENT) {
		size_t w = 4;
		for (size_t i = 0; i < n; i++)
			if (strlen(names[i]) > w)
				w = strlen(names[i]);
		for (size_t i = 0; i < n; i++) {
			printf("%-*s  ", (int)w, names[i]);
			print_value(&vals[i]);
			putchar('\n');
		}
	}
	rc = EXIT_OK;
	if (st != COHORT_ROW_PRESENT) {
		fprintf(stderr, "%s: key '%s' %s in table '%s'\n", prog, key,
			st == COHORT_ROW_EXPIRED ? "has expired" : "not found", table);
		rc = EXIT_NOTFOUND;
	}
out:
	free(cols);
	free(vals);
	free(names);
	return rc;
}

/* Fields of put, updates of event: parse "COL<op>VALUE" arguments. */
struct assign {
	cohort_update *ups;
	float *vecs;
	size_t n;
};

static int parse_assigns(const char *table, char **args, size_t n, int event,
			 struct assign *a)
{
	a->n = 0;
	a->ups = calloc(n ? n : 1, sizeof *a->ups);
	a->vecs = calloc(n ? n * COHORT_MAX_DIM : 1, sizeof *a->vecs);
	if (!a->ups || !a->vecs)
		return failf(EXIT_FAIL, "out of memory");
	for (size_t i = 0; i < n; i++) {
		char *arg = args[i];
		size_t nl = 0;
		while (isalnum((unsigned char)arg[nl]) || arg[nl] == '_')
			nl++;
		int op;
		const char *val;
		if (event && strncmp(arg + nl, "+=", 2) == 0) {
			op = COHORT_OP_ADD;
			val = arg + nl + 2;
		} else if (event && arg[nl] == '~') {
			op = COHORT_OP_OBSERVE;
			val = arg + nl + 1;
		} else if (arg[nl] == '=') {
			op = COHORT_OP_SET;
			val = arg + nl + 1;
		} else {
			return usage("'%s': %s expected", arg,
				     event ? "COL+=V, COL=V or COL~V" : "COL=VALUE");
		}
		if (nl == 0)
			return usage("'%s': a column name is expected", arg);
		char name[COHORT_MAX_NAME + 1];
		if (nl > COHORT_MAX_NAME)
			return usage("'%s': column names are at most %d characters", arg,
				     COHORT_MAX_NAME);
		memcpy(name, arg, nl);
		name[nl] = 0;
		cohort_client_column_info ci;
		int rc = column(table, name, &ci);
		if (rc < 0)
			return fail(rc);
		if (event && !*val)
			return usage("'%s': a value is expected", arg);
		char err[512];
		if (parse_value(&ci, val, a->vecs + i * COHORT_MAX_DIM, &a->ups[i].value,
				err, sizeof err) < 0)
			return failf(EXIT_USAGE, "%s", err);
		a->ups[i].column = ci.id;
		a->ups[i].op = (cohort_op)op;
		a->n++;
	}
	return 0;
}

static int cmd_write(int argc, char **argv, int event)
{
	struct opt opts[] = { { "--time", 1, NULL } };
	char *pos[MAX_ARGS];
	int npos, rc = parse_opts(argc, argv, opts, 1, pos, &npos);
	if (rc)
		return rc;
	if (npos < 3)
		return usage(event ? "event TABLE KEY COL+=V|COL=V|COL~V..."
				   : "put TABLE KEY COL=VALUE...");
	int64_t time = COHORT_NOW;
	if ((rc = opt_i64(&opts[0], INT64_MIN + 1, INT64_MAX, &time)))
		return rc;
	const char *table = pos[0], *key = pos[1];
	struct assign a;
	rc = parse_assigns(table, pos + 2, (size_t)npos - 2, event, &a);
	if (rc == 0) {
		int st;
		if (event) {
			st = cohort_client_event(cl, table, key, strlen(key), time, a.ups,
						 a.n);
		} else {
			cohort_field *f = calloc(a.n, sizeof *f);
			if (!f) {
				rc = failf(EXIT_FAIL, "out of memory");
				goto out;
			}
			for (size_t i = 0; i < a.n; i++) {
				f[i].column = a.ups[i].column;
				f[i].value = a.ups[i].value;
			}
			st = cohort_client_put(cl, table, key, strlen(key), time, f, a.n);
			free(f);
		}
		if (st < 0)
			rc = fail(st);
		else if (json)
			printf("{\"ok\":true}\n");
		else
			printf("ok\n");
	}
out:
	free(a.ups);
	free(a.vecs);
	return rc;
}

static int cmd_delete(int argc, char **argv)
{
	if (argc < 2)
		return usage("delete TABLE KEY...");
	size_t n = (size_t)argc - 1;
	cohort_key *keys = calloc(n, sizeof *keys);
	int *st = calloc(n, sizeof *st);
	if (!keys || !st) {
		free(keys);
		free(st);
		return failf(EXIT_FAIL, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		keys[i].ptr = argv[i + 1];
		keys[i].len = strlen(argv[i + 1]);
	}
	int rc = cohort_client_delete_batch(cl, argv[0], keys, n, st);
	if (rc < 0) {
		rc = fail(rc);
		goto out;
	}
	size_t deleted = 0, missing = 0;
	rc = EXIT_OK;
	for (size_t i = 0; i < n; i++) {
		if (st[i] == 0) {
			deleted++;
		} else if (st[i] == COHORT_ENOTFOUND) {
			missing++;
			fprintf(stderr, "%s: key '%s' not found in table '%s'\n", prog,
				argv[i + 1], argv[0]);
			if (rc == EXIT_OK)
				rc = EXIT_NOTFOUND;
		} else {
			fprintf(stderr, "%s: key '%s': %s\n", prog, argv[i + 1],
				cohort_strerror(st[i]));
			rc = EXIT_FAIL;
		}
	}
	if (json)
		printf("{\"deleted\":%zu,\"missing\":%zu}\n", deleted, missing);
	else
		printf("deleted %zu\n", deleted);
out:
	free(keys);
	free(st);
	return rc;
}

static void print_keys(const cohort_key *keys, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (json) {
			if (i)
				putchar(',');
			json_str(keys[i].ptr, keys[i].len);
		} else {
			print_key(keys[i].ptr, keys[i].len);
			putchar('\n');
		}
	}
}

static int cmd_filter(int argc, char **argv, int list)
{
	struct opt opts[] = { { "--where", 1, NULL }, { "--at", 1, NULL },
			      { "--limit", 1, NULL } };
	char *pos[MAX_ARGS];
	int npos, rc = parse_opts(argc, argv, opts, list ? 3 : 2, pos, &npos);
	if (rc)
		return rc;
	if (npos != 1)
		return usage(list ? "keys TABLE [--where EXPR] [--limit N]"
				  : "count TABLE [--where EXPR]");
	int64_t at = COHORT_NOW, limit = 100;
	if ((rc = opt_i64(&opts[1], INT64_MIN + 1, INT64_MAX, &at)) ||
	    (rc = opt_i64(&opts[2], 0, UINT32_MAX, &limit)))
		return rc;
	cohort_client_filter *f;
	if ((rc = parse_where(pos[0], opts[0].val, &f)))
		return rc;
	uint64_t count;
	const cohort_key *keys = NULL;
	size_t n = 0;
	int st = list ? cohort_client_filter_list(cl, pos[0], f, at, (uint32_t)limit,
						  &count, &keys, &n)
		      : cohort_client_filter_count(cl, pos[0], f, at, &count);
	cohort_client_filter_free(f);
	if (st < 0)
		return fail(st);
	if (!list) {
		if (json)
			printf("{\"count\":%" PRIu64 "}\n", count);
		else
			printf("%" PRIu64 "\n", count);
		return EXIT_OK;
	}
	if (json) {
		printf("{\"count\":%" PRIu64 ",\"keys\":[", count);
		print_keys(keys, n);
		puts("]}");
	} else {
		print_keys(keys, n);
		if (count > n)
			fprintf(stderr, "(%zu of %" PRIu64 " keys; --limit for more)\n", n,
				count);
	}
	return EXIT_OK;
}

static int cmd_knn(int argc, char **argv)
{
	struct opt opts[] = { { "--key", 1, NULL }, { "--vector", 1, NULL },
			      { "-k", 1, NULL }, { "--ef", 1, NULL },
			      { "--where", 1, NULL }, { "--at", 1, NULL } };
	char *pos[MAX_ARGS];
	int npos, rc = parse_opts(argc, argv, opts, 6, pos, &npos);
	if (rc)
		return rc;
	if (npos != 2 || !opts[0].val == !opts[1].val)
		return usage("knn TABLE INDEX (--key K | --vector V) [-k N] [--ef N] "
			     "[--where EXPR]");
	int64_t k = 10, ef = 0, at = COHORT_NOW;
	if ((rc = opt_i64(&opts[2], 1, COHORT_MAX_K, &k)) ||
	    (rc = opt_i64(&opts[3], 0, UINT32_MAX, &ef)) ||
	    (rc = opt_i64(&opts[5], INT64_MIN + 1, INT64_MAX, &at)))
		return rc;
	cohort_client_knn_query q;
	memset(&q, 0, sizeof q);
	static float vec[COHORT_MAX_DIM];
	if (opts[0].val) {
		q.key = opts[0].val;
		q.key_len = strlen(opts[0].val);
	} else if (parse_floats(opts[1].val, vec, COHORT_MAX_DIM, &q.dim) < 0 ||
		   q.dim == 0) {
		return usage("--vector '%s': numbers separated by commas expected",
			     opts[1].val);
	} else {
		q.vec = vec;
	}
	q.k = (uint32_t)k;
	q.ef = (uint32_t)ef;
	q.at = at;
	cohort_client_filter *f;
	if ((rc = parse_where(pos[0], opts[4].val, &f)))
		return rc;
	q.filter = f;
	cohort_neighbor *out = calloc((size_t)k, sizeof *out);
	if (!out) {
		cohort_client_filter_free(f);
		return failf(EXIT_FAIL, "out of memory");
	}
	size_t n = 0;
	int st = cohort_client_knn(cl, pos[0], pos[1], &q, out, &n);
	cohort_client_filter_free(f);
	if (st < 0) {
		free(out);
		return fail(st);
	}
	if (json)
		putchar('[');
	else
		printf("%-5s %-14s %s\n", "rank", "distance", "key");
	for (size_t i = 0; i < n; i++) {
		if (json) {
			printf("%s{\"key\":", i ? "," : "");
			json_str(out[i].key, out[i].key_len);
			printf(",\"distance\":");
			print_num(out[i].distance, 1);
			putchar('}');
		} else {
			char d[64];
			fmt_double(d, sizeof d, out[i].distance, 1);
			printf("%-5zu %-14s ", i + 1, d);
			print_key(out[i].key, out[i].key_len);
			putchar('\n');
		}
	}
	if (json)
		puts("]");
	free(out);
	return EXIT_OK;
}

static int persona_assign(int argc, char **argv)
{
	struct opt opts[] = { { "-m", 1, NULL } };
	char *pos[MAX_ARGS];
	int npos, rc = parse_opts(argc, argv, opts, 1, pos, &npos);
	if (rc)
		return rc;
	if (npos != 3)
		return usage("persona assign TABLE MODEL KEY [-m N]");
	int64_t m = 3;
	if ((rc = opt_i64(&opts[0], 1, COHORT_PERSONA_M_MAX, &m)))
		return rc;
	cohort_persona_result res;
	int st = cohort_client_persona_assign(cl, pos[0], pos[1], pos[2],
					      strlen(pos[2]), (size_t)m, &res);
	if (st < 0)
		return fail(st);
	if (st != COHORT_ROW_PRESENT) {
		if (json)
			printf("{\"key\":\"%s\",\"status\":\"%s\"}\n", pos[2],
			       status_name(st));
		return failf(EXIT_NOTFOUND, "key '%s' %s in table '%s'", pos[2],
			     st == COHORT_ROW_EXPIRED ? "has expired" : "not found",
			     pos[0]);
	}
	/* column names of the explanation, from the schema */
	const cohort_client_table *t = NULL;
	if (res.nexplain && cohort_client_describe(cl, pos[0], &t) < 0)
		t = NULL;
	if (json) {
		printf("{\"key\":");
		json_cstr(pos[2]);
		printf(",\"status\":\"present\",\"version\":%" PRIu64 ",\"persona\":",
		       res.version);
		if (res.persona == COHORT_PERSONA_NONE)
			printf("null");
		else
			printf("%u", res.persona);
		printf(",\"distance\":");
		print_num(res.distance, 1);
		printf(",\"anomaly\":");
		print_num(res.anomaly, 1);
		printf(",\"nearest\":[");
		for (size_t i = 0; i < res.m; i++) {
			printf("%s{\"persona\":%u,\"distance\":", i ? "," : "",
			       res.nearest[i]);
			print_num(res.distances[i], 1);
			putchar('}');
		}
		printf("],\"explain\":[");
		for (size_t i = 0; i < res.nexplain; i++) {
			const cohort_persona_feature *e = &res.explain[i];
			printf("%s{\"column\":", i ? "," : "");
			if (t && e->column >= 0 && (size_t)e->column < t->ncols)
				json_cstr(t->cols[e->column].name);
			else
				printf("%d", e->column);
			printf(",\"element\":%u,\"value\":", e->element);
			print_num(e->value, 0);
			printf(",\"centroid\":");
			print_num(e->centroid, 0);
			printf(",\"contribution\":");
			print_num(e->contribution, 0);
			putchar('}');
		}
		puts("]}");
		return EXIT_OK;
	}
	if (res.persona == COHORT_PERSONA_NONE) {
		printf("persona   none (the row has no inputs)\n");
		return EXIT_OK;
	}
	char d[64];
	printf("persona   %u\n", res.persona);
	fmt_double(d, sizeof d, res.distance, 1);
	printf("distance  %s\n", d);
	fmt_double(d, sizeof d, res.anomaly, 1);
	printf("anomaly   %s\n", d);
	printf("version   %" PRIu64 "\n", res.version);
	printf("nearest  ");
	for (size_t i = 0; i < res.m; i++) {
		fmt_double(d, sizeof d, res.distances[i], 1);
		printf(" %u (%s)", res.nearest[i], d);
	}
	putchar('\n');
	if (res.nexplain) {
		printf("\n%-24s %-12s %-12s %s\n", "feature", "value", "centroid",
		       "contribution");
		for (size_t i = 0; i < res.nexplain; i++) {
			const cohort_persona_feature *e = &res.explain[i];
			char name[96], v[64], cen[64], con[64];
			const char *cn = t && e->column >= 0 && (size_t)e->column < t->ncols
						 ? t->cols[e->column].name : "?";
			if (t && e->column >= 0 && (size_t)e->column < t->ncols &&
			    t->cols[e->column].type == COHORT_VEC)
				snprintf(name, sizeof name, "%s[%u]", cn, e->element);
			else
				snprintf(name, sizeof name, "%s", cn);
			fmt_double(v, sizeof v, e->value, 0);
			fmt_double(cen, sizeof cen, e->centroid, 0);
			fmt_double(con, sizeof con, e->contribution, 0);
			printf("%-24s %-12s %-12s %s\n", name, v, cen, con);
		}
	}
	return EXIT_OK;
}

static int persona_members(int argc, char **argv)
{
	struct opt opts[] = { { "--limit", 1, NULL }, { "--where", 1, NULL },
			      { "--at", 1, NULL } };
	char *pos[MAX_ARGS];
	int npos, rc = parse_opts(argc, argv, opts, 3, pos, &npos);
	if (rc)
		return rc;
	int64_t p, limit = 100, at = COHORT_NOW;
	if (npos != 3 || parse_i64(pos[2], 0, UINT32_MAX - 1, &p) < 0)
		return usage("persona members TABLE MODEL P [--limit N] [--where EXPR]");
	if ((rc = opt_i64(&opts[0], 0, UINT32_MAX, &limit)) ||
	    (rc = opt_i64(&opts[2], INT64_MIN + 1, INT64_MAX, &at)))
		return rc;
	cohort_client_filter *f;
	if ((rc = parse_where(pos[0], opts[1].val, &f)))
		return rc;
	uint64_t count;
	const cohort_key *keys;
	size_t n;
	int st = cohort_client_persona_members(cl, pos[0], pos[1], (uint32_t)p, f, at,
					       (uint32_t)limit, &count, &keys, &n);
	cohort_client_filter_free(f);
	if (st < 0)
		return fail(st);
	if (json) {
		printf("{\"count\":%" PRIu64 ",\"keys\":[", count);
		print_keys(keys, n);
		puts("]}");
	} else {
		printf("%" PRIu64 " members\n", count);
		print_keys(keys, n);
	}
	return EXIT_OK;
}

static int persona_sizes(int argc, char **argv)
{
	if (argc != 2)
		return usage("persona sizes TABLE MODEL");
	const cohort_client_sizes *s;
	int rc = cohort_client_persona_sizes(cl, argv[0], argv[1], &s);
	if (rc < 0)
		return fail(rc);
	if (json) {
		printf("{\"version\":%" PRIu64 ",\"k\":%u,\"personas\":[", s->version,
		       s->k);
		for (uint32_t i = 0; i < s->k; i++) {
			printf("%s{\"persona\":%u,\"size\":%" PRIu64 ",\"name\":",
			       i ? "," : "", i, s->sizes[i]);
			json_cstr(s->names[i]);
			putchar('}');
		}
		puts("]}");
		return EXIT_OK;
	}
	printf("model %s version %" PRIu64 ", %u personas\n", argv[1], s->version,
	       s->k);
	printf("%-8s %-12s %s\n", "persona", "size", "name");
	for (uint32_t i = 0; i < s->k; i++)
		printf("%-8u %-12" PRIu64 " %s\n", i, s->sizes[i], s->names[i]);
	return EXIT_OK;
}

/* The name of input j of a model: its column, or column[element] for the
 * elements of a vec model's one column. */
static void input_name(const cohort_client_table *t,
		       const cohort_client_model *m, uint32_t j, char *buf,
		       size_t len)
{
	int col = m->ncolumns == m->dim ? m->columns[j] : m->columns[0];
	const char *name = col >= 0 && (size_t)col < t->ncols ?
		t->cols[col].name : "?";
	if (m->ncolumns == m->dim)
		snprintf(buf, len, "%s", name);
	else
		snprintf(buf, len, "%s[%u]", name, j);
}

static int persona_describe(int argc, char **argv)
{
	if (argc != 2)
		return usage("persona describe TABLE MODEL");
	const cohort_client_table *t;
	int rc = cohort_client_describe(cl, argv[0], &t);
	if (rc < 0)
		return fail(rc);
	const cohort_client_model *m;
	if ((rc = cohort_client_persona_describe(cl, argv[0], argv[1], &m)) < 0)
		return fail(rc);
	char name[COHORT_MAX_NAME + 16];
	if (json) {
		printf("{\"version\":%" PRIu64 ",\"k\":%u,\"dim\":%u,"
		       "\"mode\":\"%s\",\"training\":%s,\"pending\":%" PRIu64
		       ",\"assigned\":%" PRIu64 ",\"inputs\":[", m->version, m->k,
		       m->dim, m->mode == COHORT_PERSONA_BACKGROUND ?
		       "background" : "at_once", m->training ? "true" : "false",
		       m->pending, m->assigned);
		for (uint32_t j = 0; j < m->dim; j++) {
			input_name(t, m, j, name, sizeof name);
			printf("%s", j ? "," : "");
			json_cstr(name);
		}
		printf("],\"personas\":[");
		for (uint32_t i = 0; i < m->k; i++) {
			printf("%s{\"persona\":%u,\"size\":%" PRIu64 ",\"name\":",
			       i ? "," : "", i, m->sizes[i]);
			json_cstr(m->names[i]);
			printf(",\"typical\":");
			print_num(m->typical[i], 1);
			printf(",\"centroid\":[");
			for (uint32_t j = 0; j < m->dim; j++) {
				printf("%s", j ? "," : "");
				print_num(m->centroids[(size_t)i * m->dim + j], 1);
			}
			printf("]}");
		}
		puts("]}");
		return EXIT_OK;
	}
	printf("model %s version %" PRIu64 ", %u personas over %u inputs "
	       "(%s)%s; %" PRIu64 " rows assigned, %" PRIu64 " pending\n",
	       argv[1], m->version, m->k, m->dim,
	       m->mode == COHORT_PERSONA_BACKGROUND ? "background" : "at once",
	       m->training ? ", training a new version" : "", m->assigned,
	       m->pending);
	for (uint32_t i = 0; i < m->k; i++) {
		printf("persona %u%s%s: %" PRIu64 " rows, typical distance ", i,
		       m->names[i][0] ? " " : "", m->names[i], m->sizes[i]);
		print_num(m->typical[i], 1);
		printf("\n  centroid:");
		for (uint32_t j = 0; j < m->dim; j++) {
			input_name(t, m, j, name, sizeof name);
			printf(" %s=", name);
			print_num(m->centroids[(size_t)i * m->dim + j], 1);
		}
		putchar('\n');
	}
	return EXIT_OK;
}

static int persona_train(int argc, char **argv)
{
	struct opt opts[] = {
		{ "-k", 1, NULL }, { "--iters", 1, NULL }, { "--seed", 1, NULL },
		{ "--sample", 1, NULL }, { "--minibatch", 0, NULL },
		{ "--background", 0, NULL }, { "--mode", 1, NULL },
		{ "--max-delay", 1, NULL },
	};
	char *pos[MAX_ARGS];
	int npos, rc = parse_opts(argc, argv, opts, 8, pos, &npos);
	if (rc)
		return rc;
	if (npos < 2)
		return usage("persona train TABLE MODEL [COL...] -k N");
	int64_t k = 0, iters = 0, seed = 0, sample = 0, delay = 0;
	if ((rc = opt_i64(&opts[0], 1, COHORT_MAX_PERSONAS, &k)) ||
	    (rc = opt_i64(&opts[1], 0, UINT32_MAX, &iters)) ||
	    (rc = opt_i64(&opts[2], 0, INT64_MAX, &seed)) ||
	    (rc = opt_i64(&opts[3], 0, INT64_MAX, &sample)) ||
	    (rc = opt_i64(&opts[7], 0, UINT32_MAX, &delay)))
		return rc;
	cohort_persona_def def;
	memset(&def, 0, sizeof def);
	if (opts[6].val) {
		if (!strcmp(opts[6].val, "background"))
			def.mode = COHORT_PERSONA_BACKGROUND;
		else if (strcmp(opts[6].val, "at_once"))
			return usage("--mode at_once or background, not '%s'", opts[6].val);
	}
	def.max_delay_ms = (uint32_t)delay;
	size_t ncols = (size_t)npos - 2;
	int cols[COHORT_PERSONA_MAX_INPUTS];
	if (ncols > COHORT_PERSONA_MAX_INPUTS)
		return usage("at most %d input columns", COHORT_PERSONA_MAX_INPUTS);
	for (size_t i = 0; i < ncols; i++) {
		int id = cohort_client_column(cl, pos[0], pos[i + 2]);
		if (id < 0)
			return fail(id);
		cols[i] = id;
	}
	def.columns = cols;
	def.ncolumns = ncols;
	cohort_train_opts to;
	memset(&to, 0, sizeof to);
	to.k = (uint32_t)k;
	to.iters = (uint32_t)iters;
	to.seed = (uint64_t)seed;
	to.sample = (uint64_t)sample;
	to.minibatch = opts[4].val != NULL;
	to.background = opts[5].val != NULL;
	uint64_t version = 0;
	rc = cohort_client_persona_train(cl, pos[0], pos[1], &def, &to, &version);
	if (rc < 0)
		return fail(rc);
	if (json)
		printf("{\"version\":%" PRIu64 "}\n", version);
	else if (version)
		printf("trained %s: version %" PRIu64 "\n", pos[1], version);
	else
		printf("training %s in the background\n", pos[1]);
	return EXIT_OK;
}

static int cmd_persona(int argc, char **argv)
{
	if (argc < 1)
		return usage("persona assign|members|sizes|describe|train ...");
	if (!strcmp(argv[0], "assign"))
		return persona_assign(argc - 1, argv + 1);
	if (!strcmp(argv[0], "members"))
		return persona_members(argc - 1, argv + 1);
	if (!strcmp(argv[0], "sizes"))
		return persona_sizes(argc - 1, argv + 1);
	if (!strcmp(argv[0], "describe"))
		return persona_describe(argc - 1, argv + 1);
	if (!strcmp(argv[0], "train"))
		return persona_train(argc - 1, argv + 1);
	return usage("persona %s: assign, members, sizes, describe or train "
		     "expected",
		     argv[0]);
}

static int cmd_stats(int argc, char **argv)
{
	(void)argv;
	if (argc)
		return usage("stats takes no arguments");
	const cohort_client_stat *st;
	size_t n;
	const char *io;
	int rc = cohort_client_stats(cl, &st, &n, &io);
	if (rc < 0)
		return fail(rc);
	if (json) {
		putchar('{');
		for (size_t i = 0; i < n; i++) {
			json_cstr(st[i].name);
			printf(":%" PRIu64 ",", st[i].value);
		}
		printf("\"io_path\":");
		json_cstr(io);
		puts("}");
		return EXIT_OK;
	}
	for (size_t i = 0; i < n; i++)
		printf("%-28s %" PRIu64 "\n", st[i].name, st[i].value);
	printf("%-28s %s\n", "io_path", io);
	return EXIT_OK;
}

static int cmd_snapshot(int argc, char **argv)
{
	(void)argv;
	if (argc)
		return usage("snapshot takes no arguments");
	double t0 = now_s();
	int rc = cohort_client_snapshot(cl);
	if (rc < 0)
		return fail(rc);
	if (json)
		printf("{\"ok\":true,\"seconds\":%.3f}\n", now_s() - t0);
	else
		printf("snapshot written in %.3f s\n", now_s() - t0);
	return EXIT_OK;
}

/* ------------------------------------------------------------------------
 * load: a CSV file as PUTs, or newline-delimited JSON events as EVENTs
 *
 * A CSV file goes through the csv reader (csv.h), NDJSON through a line
 * reader (struct src); both count lines and bytes. Each row is parsed per the table's columns (DESCRIBE) into the
 * batch being built, whose memory is an arena; a full batch is encoded and
 * queued at once (cohort_client_send), which frees the arena for the next,
 * and up to `depth` batches stay in flight: while the server applies one,
 * the next is parsed. A request in flight keeps only the line numbers of
 * its rows, to name the line of a row the server refuses.
 *
 * A table that does not exist is created first, from a schema file or
 * (--create) with types inferred from the data: a regular file is read
 * twice, a pipe is kept in memory while inferring (at most INFER_KEEP
 * bytes; the rows after them are parsed per the types the first ones gave)
 * and then replayed.
 *
 * Without --skip-bad the first bad line stops the load. A line the client
 * cannot parse stops it before anything after it is sent, once the rows
 * before it are answered. A row the server refuses is known only when its
 * batch is answered: the batches already sent behind it are applied (and
 * counted in "loaded").
 * ------------------------------------------------------------------------ */
#define SRC_CHUNK (256u << 10)
#define INFER_KEEP (64u << 20)     /* bytes of a pipe kept for inference */
#define LINE_MAX_BYTES (16u << 20) /* longest NDJSON line */
#define LOAD_DEPTH_MAX 64
#define BAD_SHOWN 10               /* bad lines printed with --skip-bad */

/* The input: its file descriptor, and for NDJSON a buffered line reader
 * (CSV goes through the csv reader of csv.h, on the same descriptor). */
struct src {
	int fd, own_fd;
	char *buf;
	size_t len, pos, cap;      /* buf[pos..len) not read yet */
	int eof, err;              /* err: errno of a failed read */
	uint64_t base;             /* input offset of buf[0] */
	uint64_t size;             /* a regular file's size; 0 unknown */
	long line;                 /* newlines read */
};

static int src_open(struct src *s, const char *path)
{
	memset(s, 0, sizeof *s);
	if (strcmp(path, "-") == 0) {
		s->fd = 0;
	} else {
		s->fd = open(path, O_RDONLY | O_CLOEXEC);
		if (s->fd < 0)
			return -errno;
		s->own_fd = 1;
	}
	struct stat st;
	if (fstat(s->fd, &st) == 0 && S_ISREG(st.st_mode))
		s->size = (uint64_t)st.st_size;
	return 0;
}

static void src_close(struct src *s)
{
	if (s->own_fd)
		close(s->fd);
	free(s->buf);
}

/* Bytes at pos: 1, or 0 at the end of the input or after a read error
 * (s->err). */
static int src_fill(struct src *s)
{
	if (s->pos < s->len)
		return 1;
	if (s->eof || s->err)
		return 0;
	if (!s->buf) {
		s->cap = SRC_CHUNK;
		if (!(s->buf = malloc(s->cap))) {
			s->err = ENOMEM;
			return 0;
		}
	}
	s->base += s->len;
	s->len = s->pos = 0;
	for (;;) {
		ssize_t n = read(s->fd, s->buf, s->cap);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			s->err = errno;
			return 0;
		}
		if (n == 0) {
			s->eof = 1;
			return 0;
		}
		s->len = (size_t)n;
		return 1;
	}
}

/* A line of NDJSON input. */
struct line {
	char *b;
	size_t len, cap;
	long line;                 /* its number */
};

static int line_put(struct line *r, const char *p, size_t n)
{
	if (r->len + n + 1 > r->cap) {
		size_t cap = r->cap ? r->cap : 4096;
		while (cap < r->len + n + 1)
			cap *= 2;
		char *b = realloc(r->b, cap);
		if (!b)
			return -1;
		r->b = b;
		r->cap = cap;
	}
	memcpy(r->b + r->len, p, n);
	r->len += n;
	return 0;
}

/* One line (without its LF, and a CR before it) into r->b, NUL-terminated.
 * 1, 0 at the end, -1 for a line over LINE_MAX_BYTES (skipped), -2 read
 * error or no memory. */
static int src_line(struct src *s, struct line *r)
{
	r->len = 0;
	if (!src_fill(s))
		return s->err ? -2 : 0;
	r->line = s->line + 1;
	int too_long = 0;
	while (src_fill(s)) {
		char *b = s->buf + s->pos;
		size_t avail = s->len - s->pos;
		char *nl = memchr(b, '\n', avail);
		size_t take = nl ? (size_t)(nl - b) : avail;
		if (r->len + take > LINE_MAX_BYTES)
			too_long = 1;
		else if (line_put(r, b, take) < 0)
			return -2;
		s->pos += take + (nl != NULL);
		if (nl) {
			s->line++;
			break;
		}
	}
	if (s->err)
		return -2;
	if (too_long)
		return -1;
	if (r->len && r->b[r->len - 1] == '\r')
		r->len--;
	if (line_put(r, "", 0) < 0)
		return -2;
	r->b[r->len] = '\0';
	return 1;
}

/* ---- the batches -------------------------------------------------------- */

struct slot {
	long *lines;               /* line of each row of a request */
	size_t n;
};

struct loader {
	const char *table, *file;
	int events, skip_bad, tty;
	const cohort_client_table *t;
	struct src src;
	csv_reader *csv;           /* CSV input, or NULL (NDJSON) */
	size_t batch_max, batch_bytes_max, depth;
	proto_req req;
	void *rows;                /* proto_put_row or proto_event_row [batch_max] */
	proto_arena arena;         /* what the rows of the batch point to */
	size_t n, bytes;           /* rows in the batch; their encoded size, about */
	/* depth requests in flight and the one being built, a ring: the
	 * oldest in flight is slots[head], the one being built
	 * slots[(head + inflight) % (depth + 1)] */
	struct slot slots[LOAD_DEPTH_MAX + 1];
	size_t head, inflight;
	int *status;               /* batch_max row statuses of an answer */
	cohort_update *ups;        /* an event's updates while parsing it */
	size_t ups_cap;
	uint64_t nread, loaded, bad, refused_after;
	uint64_t reported;
	long stop_line;            /* without --skip-bad: the first refused row */
	char stop_why[1400];
	int dead;                  /* exit code of a fatal error, printed */
	double t0, drawn;
};

static struct slot *building(struct loader *ld)
{
	return &ld->slots[(ld->head + ld->inflight) % (ld->depth + 1)];
}

static void progress_clear(struct loader *ld)
{
	if (ld->tty && ld->drawn > 0) {
		fputs("\r\033[K", stderr);
		ld->drawn = 0;
	}
}

/* The progress line on a terminal, at most ten times a second: rows read,
 * rows/s and how much of the file. */
static void progress(struct loader *ld, int force)
{
	if (!ld->tty || (!force && (ld->nread & 255)))
		return;
	double now = now_s();
	if (!force && now - ld->drawn < 0.1)
		return;
	ld->drawn = now;
	double secs = now - ld->t0;
	char bar[64] = "";
	if (ld->src.size) {
		uint64_t off = ld->csv ? csv_offset(ld->csv)
				       : ld->src.base + ld->src.pos;
		double frac = (double)off / (double)ld->src.size;
		if (frac > 1)
			frac = 1;
		int w = 30, k = (int)(frac * w);
		bar[0] = '[';
		for (int i = 0; i < w; i++)
			bar[1 + i] = i < k ? '#' : '.';
		snprintf(bar + 1 + w, sizeof bar - 1 - (size_t)w, "] %3.0f%%",
			 frac * 100);
	}
	fprintf(stderr, "\r%s: %" PRIu64 " rows  %.0f rows/s  %s\033[K", ld->table,
		ld->nread, secs > 0 ? (double)ld->nread / secs : 0.0, bar);
	fflush(stderr);
}

static void bad_line(struct loader *ld, long line, const char *why)
{
	ld->bad++;
	progress_clear(ld);
	if (ld->reported < BAD_SHOWN)
		fprintf(stderr, "%s: %s:%ld: %s (skipped)\n", prog, ld->file, line, why);
	else if (ld->reported == BAD_SHOWN)
		fprintf(stderr, "%s: (more bad lines are only counted)\n", prog);
	ld->reported++;
}

/* Connection lost or the request refused as a whole: fatal. */
static int load_dead(struct loader *ld, const struct slot *sl, int rc)
{
	progress_clear(ld);
	if (sl && sl->n)
		fprintf(stderr, "%s: %s:%ld-%ld: %s\n", prog, ld->file, sl->lines[0],
			sl->lines[sl->n - 1],
			rc == COHORT_ECLOSED || rc == COHORT_EPROTO
				? "no answer for these lines: whether they were loaded "
				  "is unknown"
				: "these lines were not loaded");
	ld->dead = fail(rc);
	return -1;
}

/* Receive the answer of the oldest request in flight and account for its
 * rows. 0, or -1 when the load must end (ld->dead). */
static int take_answer(struct loader *ld)
{
	struct slot *sl = &ld->slots[ld->head];
	cohort_client_resp resp;
	int rc = cohort_client_recv(cl, &resp);
	if (rc < 0)
		return load_dead(ld, sl, rc);
	ld->head = (ld->head + 1) % (ld->depth + 1);
	ld->inflight--;
	if (resp.status < 0)
		return load_dead(ld, sl, resp.status);
	proto_rbuf r = { .p = resp.payload, .end = resp.payload + resp.payload_len };
	uint32_t nrows = proto_r_u32(&r);
	if (r.err || nrows != sl->n) {
		progress_clear(ld);
		ld->dead = failf(EXIT_CONN, "malformed answer from the server: %u row "
				 "statuses for %zu rows", nrows, sl->n);
		return -1;
	}
	for (uint32_t i = 0; i < nrows; i++)
		ld->status[i] = proto_r_i32(&r);
	uint32_t nerr = proto_r_u32(&r), e = 0;
	uint32_t erow = nerr ? proto_r_u32(&r) : UINT32_MAX;
	for (uint32_t i = 0; i < nrows && !r.err; i++) {
		const char *msg = NULL;
		size_t msg_len = 0;
		while (erow < i && e < nerr) {      /* messages come in row order */
			proto_r_str16(&r, &msg_len);
			erow = ++e < nerr ? proto_r_u32(&r) : UINT32_MAX;
		}
		if (erow == i) {
			msg = proto_r_str16(&r, &msg_len);
			erow = ++e < nerr ? proto_r_u32(&r) : UINT32_MAX;
		}
		if (ld->status[i] == 0) {
			ld->loaded++;
			continue;
		}
		char why[1400];
		snprintf(why, sizeof why, "the server refused the row: %s%s%.*s",
			 cohort_strerror(ld->status[i]), msg ? ": " : "",
			 msg ? (int)(msg_len > 1024 ? 1024 : msg_len) : 0,
			 msg ? msg : "");
		if (ld->skip_bad) {
			bad_line(ld, sl->lines[i], why);
		} else if (!ld->stop_line) {
			ld->stop_line = sl->lines[i];
			snprintf(ld->stop_why, sizeof ld->stop_why, "%s", why);
		} else {
			ld->refused_after++;
		}
	}
	if (r.err) {
		progress_clear(ld);
		ld->dead = failf(EXIT_CONN, "malformed answer from the server (%s)",
				 r.why ? r.why : "too short");
		return -1;
	}
	return 0;
}

/* Queue the batch being built (waiting first for the oldest answer when
 * depth requests are in flight). 0 or -1 (ld->dead). */
static int send_batch(struct loader *ld)
{
	if (ld->n == 0)
		return 0;
	if (ld->inflight == ld->depth && take_answer(ld) < 0)
		return -1;
	ld->req.hdr.opcode = ld->events ? PROTO_OP_EVENT : PROTO_OP_PUT;
	snprintf(ld->req.table, sizeof ld->req.table, "%s", ld->table);
	if (ld->events) {
		ld->req.u.event.nrows = (uint32_t)ld->n;
		ld->req.u.event.rows = ld->rows;
	} else {
		ld->req.u.put.nrows = (uint32_t)ld->n;
		ld->req.u.put.rows = ld->rows;
	}
	struct slot *sl = building(ld);
	sl->n = ld->n;
	int rc = cohort_client_send(cl, &ld->req, NULL);
	if (rc < 0)
		return load_dead(ld, sl, rc);
	ld->inflight++;
	ld->n = 0;
	ld->bytes = 0;
	proto_arena_reset(&ld->arena);  /* the request is encoded */
	return 0;
}

/* Send what is left and take every answer. */
static int drain(struct loader *ld)
{
	if (ld->dead || send_batch(ld) < 0)
		return -1;
	while (ld->inflight)
		if (take_answer(ld) < 0)
			return -1;
	return 0;
}

/* A row was added to the batch: send it when full. */
static int row_added(struct loader *ld, long line, size_t bytes)
{
	building(ld)->lines[ld->n] = line;
	ld->n++;
	ld->bytes += bytes;
	if (ld->n == ld->batch_max || ld->bytes >= ld->batch_bytes_max)
		return send_batch(ld);
	return 0;
}

/* Encoded bytes of a value (as docs/protocol.md §1). */
static size_t value_bytes(const cohort_value *v)
{
	switch (v->type) {
	case COHORT_CAT: return 3 + v->v.str.len;
	case COHORT_VEC: return 5 + 4 * (size_t)v->v.vec.dim;
	case COHORT_NULL: return 1;
	case COHORT_BOOL: return 2;
	case COHORT_F32: case COHORT_I32: return 5;
	default: return 9;
	}
}

/* The end of the load: the summary, or the error that stopped it. */
static int load_end(struct loader *ld, long bad_line_no, const char *bad_why)
{
	if (!ld->dead)
		drain(ld);
	progress_clear(ld);
	if (ld->dead) {
		fprintf(stderr, "%s: %" PRIu64 " rows were loaded before the error\n",
			prog, ld->loaded);
		return ld->dead;
	}
	if (ld->stop_line || bad_why) {
		/* a row the server refused comes before any line read after it */
		long line = ld->stop_line ? ld->stop_line : bad_line_no;
		const char *why = ld->stop_line ? ld->stop_why : bad_why;
		fprintf(stderr, "%s: %s:%ld: %s\n", prog, ld->file, line, why);
		if (ld->refused_after)
			fprintf(stderr, "%s: %" PRIu64 " more rows already sent were "
				"refused too\n", prog, ld->refused_after);
		fprintf(stderr, "%s: load stopped (--skip-bad skips bad lines); %"
			PRIu64 " rows loaded\n", prog, ld->loaded);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* A bad line: counted with --skip-bad (0), else the end of the load (an
 * exit code, > 0). */
static int on_bad(struct loader *ld, long line, const char *why)
{
	if (ld->skip_bad) {
		bad_line(ld, line, why);
		return 0;
	}
	return load_end(ld, line, why);
}

static void summary(struct loader *ld, const char *created)
{
	double secs = now_s() - ld->t0;
	double rate = secs > 0 ? (double)ld->loaded / secs : 0;
	if (json) {
		printf("{\"table\":");
		json_cstr(ld->table);
		printf(",\"file\":");
		json_cstr(ld->file);
		printf(",\"loaded\":%" PRIu64 ",\"skipped\":%" PRIu64
		       ",\"seconds\":%.3f,\"rows_per_s\":%.0f,\"created\":%s}\n",
		       ld->loaded, ld->bad, secs, rate,
		       created ? created : "null");
		return;
	}
	const char *what = ld->events ? "events" : "rows";
	printf("loaded %" PRIu64 " %s into %s in %.3f s (%.0f %s/s)", ld->loaded,
	       what, ld->table, secs, rate, what);
	if (ld->bad)
		printf(", %" PRIu64 " bad line%s skipped", ld->bad,
		       ld->bad == 1 ? "" : "s");
	putchar('\n');
}

/* ---- CSV: types ---------------------------------------------------------- */

/* What a column's values allow so far. */
struct guess {
	uint64_t nvals;
	int is_int, is_i32, is_num, is_bool;
};

/* 1: a whole number that fits i64 (*v); 2: one beyond it; 0: not one.
 * A leading zero ("007") makes it an identifier, not a number. */
static int int_text(const char *s, int64_t *v)
{
	const char *d = s + (*s == '-');
	if (!isdigit((unsigned char)*d) || (d[0] == '0' && d[1]))
		return 0;
	for (const char *p = d; *p; p++)
		if (!isdigit((unsigned char)*p))
			return 0;
	errno = 0;
	long long x = strtoll(s, NULL, 10);
	if (errno == ERANGE)
		return 2;
	*v = x;
	return 1;
}

/* A finite decimal number: -?(0|[1-9][0-9]*)?(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int dec_text(const char *s)
{
	const char *p = s + (*s == '-');
	size_t ni = 0, nf = 0;
	if (p[0] == '0' && isdigit((unsigned char)p[1]))
		return 0;
	while (isdigit((unsigned char)*p))
		p++, ni++;
	if (*p == '.') {
		p++;
		while (isdigit((unsigned char)*p))
			p++, nf++;
		if (!nf)
			return 0;
	}
	if (!ni && !nf)
		return 0;
	if (*p == 'e' || *p == 'E') {
		p++;
		p += *p == '+' || *p == '-';
		if (!isdigit((unsigned char)*p))
			return 0;
		while (isdigit((unsigned char)*p))
			p++;
	}
	return !*p && isfinite(strtod(s, NULL));
}

static int bool_text(const char *s)
{
	return !strcasecmp(s, "true") || !strcasecmp(s, "false") ||
	       !strcasecmp(s, "yes") || !strcasecmp(s, "no");
}

static void guess_cell(struct guess *g, const char *s)
{
	if (!*s)
		return;
	g->nvals++;
	int64_t v;
	int k = int_text(s, &v);
	if (k == 1) {
		if (v < INT32_MIN || v > INT32_MAX)
			g->is_i32 = 0;
		g->is_bool = 0;
		return;
	}
	g->is_int = g->is_i32 = 0;
	if (k == 2 || !dec_text(s))
		g->is_num = 0;
	if (!bool_text(s))
		g->is_bool = 0;
}

static cohort_type guess_type(const struct guess *g)
{
	if (!g->nvals)
		return COHORT_CAT;
	if (g->is_int)
		return g->is_i32 ? COHORT_I32 : COHORT_I64;
	if (g->is_num)
		return COHORT_F64;
	return g->is_bool ? COHORT_BOOL : COHORT_CAT;
}

/* A header name as a column name: [A-Za-z0-9_], at most COHORT_MAX_NAME
 * bytes; other bytes become '_'. */
static void column_name(const char *h, char out[COHORT_MAX_NAME + 1])
{
	size_t n = 0;
	for (; h[n] && n < COHORT_MAX_NAME; n++)
		out[n] = isalnum((unsigned char)h[n]) ? h[n] : '_';
	out[n] = 0;
}

/* The column of t a header field names: its exact name, else the name
 * column_name() makes of it. -1 when none. */
static int header_column(const cohort_client_table *t, const char *h)
{
	char name[COHORT_MAX_NAME + 1];
	column_name(h, name);
	int found = -1;
	for (size_t j = 0; j < t->ncols; j++) {
		if (strcmp(t->cols[j].name, h) == 0)
			return t->cols[j].id;
		if (found < 0 && strcmp(t->cols[j].name, name) == 0)
			found = t->cols[j].id;
	}
	return found;
}

static void coldef_text(const cohort_column_def *d, char *buf, size_t len)
{
	if (d->type == COHORT_VEC)
		snprintf(buf, len, "%s:vec:%u", d->name, d->dim);
	else if (d->type == COHORT_DECAY)
		snprintf(buf, len, "%s:decay:%" PRId64, d->name, d->half_life_ms);
	else
		snprintf(buf, len, "%s:%s", d->name, cohort_type_name(d->type));
}

/*
 * A schema file: `NAME:TYPE[:N]` tokens, as `cohort create` takes them,
 * separated by spaces or newlines; '#' starts a comment. *defs (names
 * pointing into *text) and *lines (the line of each) are malloc'd.
 * Returns 0 or an exit code after printing why.
 */
static int read_schema(const char *path, char **text, cohort_column_def **defs,
		       long **lines, size_t *n)
{
	*text = NULL;
	*defs = NULL;
	*lines = NULL;
	*n = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return failf(EXIT_FAIL, "%s: %s", path, strerror(errno));
	size_t cap = 0, len = 0;
	char *buf = NULL;
	for (;;) {
		if (len + 4096 > cap) {
			cap = cap ? cap * 2 : 8192;
			char *p = realloc(buf, cap);
			if (!p) {
				free(buf);
				fclose(f);
				return failf(EXIT_FAIL, "out of memory");
			}
			buf = p;
		}
		size_t k = fread(buf + len, 1, cap - len - 1, f);
		len += k;
		if (k == 0)
			break;
	}
	int rd_err = ferror(f);
	fclose(f);
	if (rd_err) {
		free(buf);
		return failf(EXIT_FAIL, "%s: read error", path);
	}
	buf[len] = 0;
	*text = buf;
	size_t ncap = 0;
	long line = 1;
	for (char *p = buf; *p;) {
		if (*p == '\n') {
			line++;
			p++;
			continue;
		}
		if (isspace((unsigned char)*p)) {
			p++;
			continue;
		}
		if (*p == '#') {
			while (*p && *p != '\n')
				p++;
			continue;
		}
		char *tok = p;
		while (*p && !isspace((unsigned char)*p) && *p != '#')
			p++;
		char end = *p;
		*p = 0;
		if (*n == ncap) {
			ncap = ncap ? ncap * 2 : 32;
			cohort_column_def *d = realloc(*defs, ncap * sizeof *d);
			long *l = realloc(*lines, ncap * sizeof *l);
			if (d)
				*defs = d;
			if (l)
				*lines = l;
			if (!d || !l)
				return failf(EXIT_FAIL, "out of memory");
		}
		char why[512];
		if (parse_coldef(tok, &(*defs)[*n], why, sizeof why) < 0)
			return failf(EXIT_FAIL, "%s:%ld: %s", path, line, why);
		for (size_t i = 0; i < *n; i++)
			if (strcmp((*defs)[i].name, tok) == 0)
				return failf(EXIT_FAIL, "%s:%ld: column '%s' twice (line "
					     "%ld too)", path, line, tok, (*lines)[i]);
		(*lines)[(*n)++] = line;
		if (end == '#')
			while (p[1] && p[1] != '\n')
				p++;
		else if (end == '\n')
			line++;
		if (end)
			p++;
	}
	if (*n == 0)
		return failf(EXIT_FAIL, "%s: no columns (NAME:TYPE per line)", path);
	return 0;
}

/* Whether an existing table has the schema file's columns. */
static int check_schema(const struct loader *ld, const char *path,
			const cohort_column_def *defs, const long *lines, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int id = header_column(ld->t, defs[i].name);
		if (id < 0)
			return failf(EXIT_FAIL, "%s:%ld: table '%s' exists and has no "
				     "column '%s'", path, lines[i], ld->table,
				     defs[i].name);
		const cohort_client_column_info *c = &ld->t->cols[id];
		if (c->type != defs[i].type ||
		    (c->type == COHORT_VEC && c->dim != defs[i].dim) ||
		    (c->type == COHORT_DECAY && c->half_life_ms != defs[i].half_life_ms)) {
			char want[128];
			coldef_text(&defs[i], want, sizeof want);
			return failf(EXIT_FAIL, "%s:%ld: table '%s' exists with column "
				     "'%s' of type %s, not %s", path, lines[i],
				     ld->table, c->name, cohort_type_name(c->type), want);
		}
	}
	return 0;
}

/* Parse a CSV record into the batch. 0; -1 a bad line (why); -2 fatal. */
static int csv_row(struct loader *ld, const csv_reader *r, const int *map,
		   long key_field, uint64_t ordinal, char *why, size_t why_len)
{
	char num[24];
	const char *key;
	size_t key_len;
	if (key_field < 0) {
		key_len = (size_t)snprintf(num, sizeof num, "%" PRIu64, ordinal);
		key = num;
	} else {
		key = r->fields[key_field].ptr;
		key_len = r->fields[key_field].len;
		if (key_len == 0 || key_len > COHORT_MAX_KEY) {
			snprintf(why, why_len, "the key (field %ld) must be 1 to %d "
				 "bytes, not %zu", key_field + 1, COHORT_MAX_KEY, key_len);
			return -1;
		}
	}
	/* the record's fields are one block (csv.h): copied into the arena
	 * at once, the key after them */
	size_t nf = r->nfields - (key_field >= 0);
	const char *rec = r->fields[0].ptr;
	const csv_field *last = &r->fields[r->nfields - 1];
	size_t rec_len = (size_t)(last->ptr + last->len + 1 - rec);
	char *copy = proto_arena_alloc(&ld->arena, rec_len + key_len);
	cohort_field *f = proto_arena_alloc(&ld->arena, (nf ? nf : 1) * sizeof *f);
	if (!copy || !f) {
		ld->dead = failf(EXIT_FAIL, "out of memory");
		return -2;
	}
	memcpy(copy, rec, rec_len);
	memcpy(copy + rec_len, key, key_len);
	size_t k = 0, bytes = key_len + 11;
	for (size_t i = 0; i < r->nfields; i++) {
		if ((long)i == key_field)
			continue;
		const cohort_client_column_info *ci = &ld->t->cols[map[i]];
		float *vec = NULL;
		if (ci->type == COHORT_VEC &&
		    !(vec = proto_arena_alloc(&ld->arena, ci->dim * sizeof *vec))) {
			ld->dead = failf(EXIT_FAIL, "out of memory");
			return -2;
		}
		if (parse_value(ci, copy + (r->fields[i].ptr - rec), vec,
				&f[k].value, why, why_len) < 0)
			return -1;
		f[k].column = ci->id;
		bytes += 2 + value_bytes(&f[k].value);
		k++;
	}
	proto_put_row *row = &((proto_put_row *)ld->rows)[ld->n];
	row->key.ptr = copy + rec_len;
	row->key.len = (uint8_t)key_len;
	row->time = COHORT_NOW;
	row->nfields = (uint16_t)k;
	row->fields = f;
	return row_added(ld, r->line, bytes) < 0 ? -2 : 0;
}

static void json_mem_str(FILE *m, const char *s)
{
	fputc('"', m);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(m, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(m, "\\u%04x", ch);
		else
			fputc(ch, m);
	}
	fputc('"', m);
}

/* The table load made, as JSON for the --json summary (*out malloc'd). */
static int created_json(char **out, int from_schema, uint64_t ninferred,
			const char *key, const cohort_column_def *defs, size_t n)
{
	size_t len = 0;
	FILE *m = open_memstream(out, &len);
	if (!m)
		return failf(EXIT_FAIL, "out of memory");
	fprintf(m, "{\"from\":\"%s\",\"rows_inferred\":%" PRIu64 ",\"key\":",
		from_schema ? "schema" : "data", ninferred);
	if (key)
		json_mem_str(m, key);
	else
		fputs("null", m);
	fputs(",\"columns\":[", m);
	for (size_t i = 0; i < n; i++) {
		fprintf(m, "%s{\"name\":", i ? "," : "");
		json_mem_str(m, defs[i].name);
		fprintf(m, ",\"type\":\"%s\"", cohort_type_name(defs[i].type));
		if (defs[i].type == COHORT_VEC)
			fprintf(m, ",\"dim\":%u", defs[i].dim);
		if (defs[i].type == COHORT_DECAY)
			fprintf(m, ",\"half_life_ms\":%" PRId64, defs[i].half_life_ms);
		fputc('}', m);
	}
	fputs("]}", m);
	if (fclose(m) != 0) {
		free(*out);
		*out = NULL;
		return failf(EXIT_FAIL, "out of memory");
	}
	return 0;
}

struct csv_args {
	const char *key, *schema, *sep;
	int key_rownum, create;
};

static int load_csv(struct loader *ld, const struct csv_args *a)
{
	csv_reader r;
	char why[1400], *schema_text = NULL, *created = NULL;
	const char **head = NULL;
	int *map = NULL;
	cohort_column_def *defs = NULL;
	long *def_lines = NULL;
	struct guess *g = NULL;
	char (*names)[COHORT_MAX_NAME + 1] = NULL;
	size_t *def_field = NULL;     /* inferred column -> header field */
	size_t ndefs = 0, nhead = 0;
	int rc = cohort_client_describe(cl, ld->table, &ld->t);
	int exists = rc == 0;
	if (rc < 0 && rc != COHORT_ENOTABLE)
		return fail(rc);
	if (!exists && !a->schema && !a->create)
		return failf(EXIT_NOTFOUND, "no table '%s': --create makes it with the "
			     "types of %s's values, --schema FILE with the columns "
			     "FILE lists", ld->table, ld->file);
	/* blank lines are skipped and the field count is checked here, so
	 * that a short line is a bad line like any other */
	csv_opts o = { .delim = a->sep ? a->sep[0] : 0,
		       .flags = CSV_SKIP_BLANK | CSV_ANY_WIDTH };
	int k = csv_open_opts(&r, &o, NULL, ld->src.fd, NULL, 0);
	ld->csv = &r;
	if (k < 0) {
		if (k == COHORT_ECORRUPT)
			rc = failf(EXIT_FAIL, "%s:%llu: the header: %s", ld->file,
				   (unsigned long long)r.err_line, csv_why(&r));
		else
			rc = failf(EXIT_FAIL, "%s: %s", ld->file, csv_why(&r));
		goto out;
	}
	long head_line = (long)r.line;
	nhead = r.nheader;
	head = calloc(nhead, sizeof *head);
	map = calloc(nhead, sizeof *map);
	if (!head || !map) {
		rc = failf(EXIT_FAIL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < nhead; i++)
		head[i] = r.header[i].ptr;     /* valid until csv_close */
	long key_field = a->key_rownum ? -1 : 0;
	if (a->key) {
		key_field = -1;
		for (size_t i = 0; i < nhead && key_field < 0; i++)
			if (strcmp(head[i], a->key) == 0)
				key_field = (long)i;
		if (key_field < 0) {
			rc = failf(EXIT_USAGE, "%s:%ld: no column '%s' in the header for "
				   "--key", ld->file, head_line, a->key);
			goto out;
		}
	}
	for (size_t i = 0; i < nhead; i++)
		if (!head[i][0] && (long)i != key_field) {
			rc = failf(EXIT_FAIL, "%s:%ld: field %zu of the header has no name",
				   ld->file, head_line, i + 1);
			goto out;
		}

	if (a->schema) {
		if ((rc = read_schema(a->schema, &schema_text, &defs, &def_lines,
				      &ndefs)))
			goto out;
		if (exists && (rc = check_schema(ld, a->schema, defs, def_lines, ndefs)))
			goto out;
	}
	uint64_t ninferred = 0;
	int partial = 0;
	if (!exists && !a->schema) {
		/* infer the types from the values: every row of a file, the
		 * first INFER_KEEP bytes of a pipe */
		g = calloc(nhead, sizeof *g);
		defs = calloc(nhead, sizeof *defs);
		names = calloc(nhead, sizeof *names);
		def_field = calloc(nhead, sizeof *def_field);
		if (!g || !defs || !names || !def_field) {
			rc = failf(EXIT_FAIL, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < nhead; i++)
			g[i] = (struct guess){ 0, 1, 1, 1, 1 };
		if ((k = csv_mark(&r)) == 0) {
			/* malformed records are left for the load to report */
			while ((k = csv_next(&r)) != 0) {
				if (k == COHORT_ECORRUPT)
					k = csv_skip_bad(&r);
				if (k < 0)
					break;
				if (k == 1 && r.nfields == nhead) {
					for (size_t i = 0; i < nhead; i++)
						guess_cell(&g[i], r.fields[i].ptr);
					ninferred++;
				}
				if (csv_kept(&r) >= INFER_KEEP) {
					partial = 1;
					break;
				}
			}
		}
		if (k < 0 || (k = csv_rewind(&r)) < 0) {
			rc = failf(EXIT_FAIL, "%s: %s", ld->file, csv_why(&r));
			goto out;
		}
		for (size_t i = 0; i < nhead; i++) {
			if ((long)i == key_field)
				continue;
			column_name(head[i], names[i]);
			defs[ndefs].name = names[i];
			defs[ndefs].type = guess_type(&g[i]);
			def_field[ndefs] = i;
			for (size_t j = 0; j < ndefs; j++)
				if (strcmp(defs[j].name, names[i]) == 0) {
					rc = failf(EXIT_FAIL, "%s:%ld: two header fields make "
						   "column '%s'", ld->file, head_line,
						   names[i]);
					goto out;
				}
			ndefs++;
		}
	}
	if (!exists) {
		/* every header field must have a column before one is made */
		for (size_t i = 0; i < nhead; i++) {
			if ((long)i == key_field)
				continue;
			char name[COHORT_MAX_NAME + 1];
			column_name(head[i], name);
			size_t j = 0;
			while (j < ndefs && strcmp(defs[j].name, head[i]) &&
			       strcmp(defs[j].name, name))
				j++;
			if (j == ndefs) {
				rc = failf(EXIT_FAIL, "%s:%ld: column '%s' is not in the "
					   "schema %s", ld->file, head_line, head[i],
					   a->schema);
				goto out;
			}
		}
		if ((rc = cohort_client_table_create(cl, ld->table, defs, ndefs, 0)) < 0 ||
		    (rc = cohort_client_describe(cl, ld->table, &ld->t)) < 0) {
			rc = fail(rc);
			goto out;
		}
		if (!json) {
			/* what was made, as a schema file would say it */
			printf("# table %s, created ", ld->table);
			if (a->schema)
				printf("from %s\n", a->schema);
			else
				printf("with the types of %" PRIu64 " rows%s\n", ninferred,
				       partial ? " (the first ones: the input is a pipe)"
					       : "");
			if (key_field < 0)
				printf("# key: the row number\n");
			else
				printf("# key: %s\n", head[key_field]);
			for (size_t i = 0; i < ndefs; i++) {
				char text[128];
				coldef_text(&defs[i], text, sizeof text);
				if (g && !g[def_field[i]].nvals)
					printf("%-24s # every value empty\n", text);
				else
					printf("%s\n", text);
			}
			fflush(stdout);
		} else if ((rc = created_json(&created, a->schema != NULL, ninferred,
					      key_field < 0 ? NULL : head[key_field],
					      defs, ndefs))) {
			goto out;
		}
	}

	/* header fields -> columns */
	for (size_t i = 0; i < nhead; i++) {
		map[i] = -1;
		if ((long)i == key_field)
			continue;
		map[i] = header_column(ld->t, head[i]);
		if (map[i] < 0) {
			rc = failf(EXIT_FAIL, "%s:%ld: unknown column '%s': table '%s' has "
				   "no such column", ld->file, head_line, head[i],
				   ld->table);
			goto out;
		}
		for (size_t j = 0; j < i; j++)
			if (map[j] == map[i]) {
				rc = failf(EXIT_FAIL, "%s:%ld: fields %zu and %zu of the header "
					   "are both column '%s'", ld->file, head_line,
					   j + 1, i + 1, ld->t->cols[map[i]].name);
				goto out;
			}
	}

	ld->t0 = now_s();
	uint64_t ordinal = 0;
	for (;;) {
		k = csv_next(&r);
		if (k == 0)
			break;
		long line = (long)r.line;
		if (k == COHORT_ECORRUPT) {
			line = (long)r.err_line;
			snprintf(why, sizeof why, "%s", csv_why(&r));
			k = csv_skip_bad(&r);
		}
		if (k < 0) {
			ld->dead = failf(EXIT_FAIL, "%s:%llu: %s", ld->file,
					 (unsigned long long)r.err_line, csv_why(&r));
			rc = load_end(ld, 0, NULL);
			goto out;
		}
		ordinal++;
		ld->nread++;
		int bad = k == 0;      /* csv_skip_bad: a malformed record */
		if (!bad && r.nfields != nhead) {
			snprintf(why, sizeof why, "wrong number of fields: %zu where the "
				 "header has %zu", r.nfields, nhead);
			bad = 1;
		}
		if (!bad) {
			int x = csv_row(ld, &r, map, key_field, ordinal, why, sizeof why);
			if (x == -2) {
				rc = load_end(ld, 0, NULL);
				goto out;
			}
			bad = x < 0;
		}
		if (bad && (rc = on_bad(ld, line, why)))
			goto out;
		if (ld->stop_line) {
			rc = load_end(ld, 0, NULL);
			goto out;
		}
		progress(ld, 0);
	}
	if ((rc = load_end(ld, 0, NULL)))
		goto out;
	summary(ld, created);
out:
	csv_close(&r);
	ld->csv = NULL;
	free(head);
	free(map);
	free(defs);
	free(def_lines);
	free(schema_text);
	free(g);
	free(names);
	free(def_field);
	free(created);
	return rc;
}

/* ---- NDJSON events -------------------------------------------------------
 * One JSON object per line (RFC 8259, strictly: no comments, no trailing
 * commas, UTF-8):
 *   {"key": "c1", "time": 1700000000000, "set": {"col": v, ...},
 *    "add": {...}, "observe": {...}}
 * key: a string (or a whole number, taken as its digits); time: ms since
 * the epoch, optional (the server's clock); at least one update. Updates
 * apply in the order they are written. v: a number, a string (cat), true
 * or false (bool), null (set only), or an array of numbers (vec), as the
 * column's type (DESCRIBE) wants it.
 * ------------------------------------------------------------------------ */
struct jp {
	const char *s, *p, *end;
	struct loader *ld;
	char *why;
	size_t why_len;
};

static int jp_fail(struct jp *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A syntax error at the current byte (column counted from 1). */
static int jp_fail(struct jp *j, const char *fmt, ...)
{
	int n = snprintf(j->why, j->why_len, "bad JSON at column %zu: ",
			 (size_t)(j->p - j->s) + 1);
	va_list ap;
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < j->why_len)
		vsnprintf(j->why + n, j->why_len - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static int jp_say(struct jp *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A well-formed line that says something wrong. */
static int jp_say(struct jp *j, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->why, j->why_len, fmt, ap);
	va_end(ap);
	return -1;
}

static void jp_ws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' ||
				 *j->p == '\r'))
		j->p++;
}

static int jp_peek(const struct jp *j)
{
	return j->p < j->end ? (unsigned char)*j->p : EOF;
}

static int jp_expect(struct jp *j, char ch)
{
	jp_ws(j);
	if (jp_peek(j) != ch)
		return jp_fail(j, "'%c' expected%s", ch, j->p < j->end ? "" :
			       " before the end of the line");
	j->p++;
	return 0;
}

/* The byte length of a valid UTF-8 sequence at p (1..4), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
	if (p[0] < 0x80)
		return 1;
	size_t n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
	if (!n || p[0] > 0xf4 || (size_t)(end - p) < n)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) ||
	    (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
		return 0;   /* overlong, a surrogate, beyond U+10FFFF */
	return n;
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		int c = (unsigned char)p[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v * 16 + (unsigned)d;
	}
	*out = v;
	return 0;
}

/* A string at j->p, decoded into the arena: *out (NUL-terminated), *len. */
static int jp_string(struct jp *j, const char **out, size_t *len)
{
	if (jp_peek(j) != '"')
		return jp_fail(j, "a string expected");
	const char *q = j->p + 1;
	while (q < j->end && *q != '"')
		q += *q == '\\' ? 2 : 1;
	if (q >= j->end)
		return jp_fail(j, "the string is never closed");
	char *d = proto_arena_alloc(&j->ld->arena, (size_t)(q - j->p));
	if (!d)
		return jp_say(j, "out of memory");
	size_t n = 0;
	j->p++;
	while (*j->p != '"') {
		unsigned char ch = (unsigned char)*j->p;
		if (ch < 0x20)
			return jp_fail(j, "a control character in a string (write it "
				       "as an escape)");
		if (ch != '\\') {
			size_t k = utf8_len((const unsigned char *)j->p,
					    (const unsigned char *)j->end);
			if (!k)
				return jp_fail(j, "not UTF-8");
			memcpy(d + n, j->p, k);
			n += k;
			j->p += k;
			continue;
		}
		j->p++;
		const char *esc = strchr("\"\\/bfnrt", *j->p);
		if (*j->p && esc) {
			d[n++] = "\"\\/\b\f\n\r\t"[esc - "\"\\/bfnrt"];
			j->p++;
			continue;
		}
		unsigned u, lo;
		if (*j->p != 'u' || j->end - j->p < 5 || hex4(j->p + 1, &u) < 0)
			return jp_fail(j, "a bad escape");
		j->p += 5;
		if (u >= 0xd800 && u <= 0xdbff) {
			if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u' ||
			    hex4(j->p + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
				return jp_fail(j, "a lone surrogate \\u%04x", u);
			j->p += 6;
			u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
		} else if (u >= 0xdc00 && u <= 0xdfff) {
			return jp_fail(j, "a lone surrogate \\u%04x", u);
		}
		if (u == 0)
			return jp_fail(j, "\\u0000: strings may not hold NUL");
		if (u < 0x80) {
			d[n++] = (char)u;
		} else if (u < 0x800) {
			d[n++] = (char)(0xc0 | u >> 6);
			d[n++] = (char)(0x80 | (u & 0x3f));
		} else if (u < 0x10000) {
			d[n++] = (char)(0xe0 | u >> 12);
			d[n++] = (char)(0x80 | ((u >> 6) & 0x3f));
			d[n++] = (char)(0x80 | (u & 0x3f));
		} else {
			d[n++] = (char)(0xf0 | u >> 18);
			d[n++] = (char)(0x80 | ((u >> 12) & 0x3f));
			d[n++] = (char)(0x80 | ((u >> 6) & 0x3f));
			d[n++] = (char)(0x80 | (u & 0x3f));
		}
	}
	j->p++;
	d[n] = 0;
	*out = d;
	*len = n;
	return 0;
}

/* A number at j->p (RFC 8259's grammar) copied into buf; *is_int when it
 * has neither a fraction nor an exponent. */
static int jp_number(struct jp *j, char *buf, size_t buf_len, int *is_int)
{
	const char *p = j->p, *e = j->end;
	if (p < e && *p == '-')
		p++;
	if (p >= e || !isdigit((unsigned char)*p))
		return jp_fail(j, "a bad number");
	if (*p == '0')
		p++;
	else
		while (p < e && isdigit((unsigned char)*p))
			p++;
	*is_int = 1;
	if (p < e && *p == '.') {
		*is_int = 0;
		if (++p >= e || !isdigit((unsigned char)*p))
			return jp_fail(j, "a bad number: digits expected after '.'");
		while (p < e && isdigit((unsigned char)*p))
			p++;
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		*is_int = 0;
		p++;
		if (p < e && (*p == '+' || *p == '-'))
			p++;
		if (p >= e || !isdigit((unsigned char)*p))
			return jp_fail(j, "a bad number: digits expected in the exponent");
		while (p < e && isdigit((unsigned char)*p))
			p++;
	}
	if ((size_t)(p - j->p) >= buf_len)
		return jp_fail(j, "a number of more than %zu characters", buf_len - 1);
	memcpy(buf, j->p, (size_t)(p - j->p));
	buf[p - j->p] = 0;
	j->p = p;
	return 0;
}

static int jp_word(struct jp *j, const char *w)
{
	size_t n = strlen(w);
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0 ||
	    (j->p + n < j->end && isalnum((unsigned char)j->p[n])))
		return 0;
	j->p += n;
	return 1;
}

/* A value for column ci into *out (strings and vectors in the arena). */
static int jp_value(struct jp *j, const cohort_client_column_info *ci,
		    cohort_value *out)
{
	jp_ws(j);
	int ch = jp_peek(j);
	const char *type = cohort_type_name(ci->type);
	if (ch == '"') {
		const char *s;
		size_t n;
		if (jp_string(j, &s, &n) < 0)
			return -1;
		if (ci->type != COHORT_CAT)
			return jp_say(j, "column '%s' is %s: a string is not a value "
				      "of it", ci->name, type);
		if (n > COHORT_MAX_CAT)
			return jp_say(j, "column '%s': a string of %zu bytes (at most %d)",
				      ci->name, n, COHORT_MAX_CAT);
		*out = cohort_catn(s, (uint32_t)n);
		return 0;
	}
	if (ch == 't' || ch == 'f' || ch == 'n') {
		int b = jp_word(j, "true") ? 1 : jp_word(j, "false") ? 0
		      : jp_word(j, "null") ? 2 : -1;
		if (b < 0)
			return jp_fail(j, "a value expected");
		if (b == 2)
			*out = cohort_null();
		else if (ci->type == COHORT_BOOL)
			*out = cohort_bool(b);
		else
			return jp_say(j, "column '%s' is %s: %s is not a value of it",
				      ci->name, type, b ? "true" : "false");
		return 0;
	}
	if (ch == '[') {
		if (ci->type != COHORT_VEC)
			return jp_say(j, "column '%s' is %s: an array is a value only of "
				      "vec columns", ci->name, type);
		float *v = proto_arena_alloc(&j->ld->arena, ci->dim * sizeof *v);
		if (!v)
			return jp_say(j, "out of memory");
		j->p++;
		uint32_t n = 0;
		jp_ws(j);
		if (jp_peek(j) == ']') {
			j->p++;
		} else {
			for (;;) {
				char num[64];
				int is_int;
				jp_ws(j);
				if (jp_number(j, num, sizeof num, &is_int) < 0)
					return -1;
				double d = strtod(num, NULL);
				if (n < ci->dim)
					v[n] = (float)d;
				if (!isfinite((float)d))
					return jp_say(j, "column '%s': %s is beyond a float",
						      ci->name, num);
				n++;
				jp_ws(j);
				if (jp_peek(j) == ']') {
					j->p++;
					break;
				}
				if (jp_expect(j, ',') < 0)
					return -1;
			}
		}
		if (n != ci->dim)
			return jp_say(j, "column '%s' is vec:%u: an array of %u numbers",
				      ci->name, ci->dim, n);
		*out = cohort_vec(v, n);
		return 0;
	}
	if (ch == '-' || isdigit(ch)) {
		char num[64];
		int is_int;
		if (jp_number(j, num, sizeof num, &is_int) < 0)
			return -1;
		int64_t i;
		switch (ci->type) {
		case COHORT_I32:
		case COHORT_I64:
			if (!is_int || parse_i64(num, ci->type == COHORT_I32 ? INT32_MIN
						      : INT64_MIN, ci->type == COHORT_I32
						      ? INT32_MAX : INT64_MAX, &i) < 0)
				return jp_say(j, "column '%s' is %s: %s is not a whole number "
					      "in its range", ci->name, type, num);
			*out = ci->type == COHORT_I32 ? cohort_i32((int32_t)i)
						       : cohort_i64(i);
			return 0;
		case COHORT_CAT:
		case COHORT_BOOL:
		case COHORT_VEC:
			return jp_say(j, "column '%s' is %s: %s is not a value of it",
				      ci->name, type, num);
		default: {
			double d = strtod(num, NULL);
			if (!isfinite(d) || (ci->type == COHORT_F32 && !isfinite((float)d)))
				return jp_say(j, "column '%s': %s is out of range", ci->name,
					      num);
			*out = ci->type == COHORT_F32 ? cohort_f32((float)d) : cohort_f64(d);
			return 0;
		}
		}
	}
	if (ch == '{')
		return jp_say(j, "column '%s': an object is not a value", ci->name);
	return jp_fail(j, ch == EOF ? "a value expected before the end of the line"
				    : "a value expected");
}

static int add_update(struct loader *ld, size_t n, const cohort_update *u)
{
	if (n == ld->ups_cap) {
		size_t cap = ld->ups_cap ? ld->ups_cap * 2 : 64;
		cohort_update *p = realloc(ld->ups, cap * sizeof *p);
		if (!p)
			return -1;
		ld->ups = p;
		ld->ups_cap = cap;
	}
	ld->ups[n] = *u;
	return 0;
}

/* One event line into the batch. 0; -1 a bad line (why); -2 fatal. */
static int event_row(struct loader *ld, const char *line, size_t len, long lineno,
		     char *why, size_t why_len)
{
	struct jp j = { line, line, line + len, ld, why, why_len };
	const char *key = NULL;
	size_t key_len = 0, nups = 0, bytes = 11;
	cohort_time time = COHORT_NOW;
	int seen[5] = { 0 };         /* key time set add observe */
	if (jp_expect(&j, '{') < 0)
		return -1;
	jp_ws(&j);
	if (jp_peek(&j) == '}')
		return jp_say(&j, "an empty object: \"key\" and an update are "
			      "expected");
	for (;;) {
		jp_ws(&j);
		const char *member = j.p, *name;
		size_t name_len;
		if (jp_string(&j, &name, &name_len) < 0 || jp_expect(&j, ':') < 0)
			return -1;
		static const char *const members[] = { "key", "time", "set", "add",
						       "observe" };
		int m = 0;
		while (m < 5 && strcmp(name, members[m]) != 0)
			m++;
		if (m == 5) {
			j.p = member;
			return jp_say(&j, "unknown member \"%s\" (key, time, set, add, "
				      "observe)", name);
		}
		if (seen[m]++)
			return jp_say(&j, "\"%s\" twice", name);
		jp_ws(&j);
		char num[64];
		int is_int;
		if (m == 0) {
			if (jp_peek(&j) == '"') {
				if (jp_string(&j, &key, &key_len) < 0)
					return -1;
			} else if (jp_peek(&j) == '-' || isdigit(jp_peek(&j))) {
				if (jp_number(&j, num, sizeof num, &is_int) < 0)
					return -1;
				if (!is_int)
					return jp_say(&j, "\"key\" %s: a string or a whole "
						      "number", num);
				char *k = proto_arena_alloc(&ld->arena, strlen(num) + 1);
				if (!k)
					return jp_say(&j, "out of memory");
				key = strcpy(k, num);
				key_len = strlen(num);
			} else {
				return jp_fail(&j, "\"key\" must be a string");
			}
			if (key_len == 0 || key_len > COHORT_MAX_KEY)
				return jp_say(&j, "the key must be 1 to %d bytes, not %zu",
					      COHORT_MAX_KEY, key_len);
		} else if (m == 1) {
			if (jp_peek(&j) == 'n' && jp_word(&j, "null")) {
				time = COHORT_NOW;
			} else {
				if (jp_peek(&j) != '-' && !isdigit(jp_peek(&j)))
					return jp_fail(&j, "\"time\" must be a number of "
						       "milliseconds");
				if (jp_number(&j, num, sizeof num, &is_int) < 0)
					return -1;
				int64_t t;
				if (!is_int || parse_i64(num, INT64_MIN + 1, INT64_MAX, &t) < 0)
					return jp_say(&j, "\"time\" %s: a whole number of "
						      "milliseconds since 1970", num);
				time = t;
			}
		} else {
			cohort_op op = m == 2 ? COHORT_OP_SET : m == 3 ? COHORT_OP_ADD
								: COHORT_OP_OBSERVE;
			if (jp_expect(&j, '{') < 0)
				return -1;
			jp_ws(&j);
			if (jp_peek(&j) == '}') {
				j.p++;
			} else {
				for (;;) {
					jp_ws(&j);
					const char *col;
					size_t col_len;
					if (jp_string(&j, &col, &col_len) < 0 ||
					    jp_expect(&j, ':') < 0)
						return -1;
					const cohort_client_column_info *ci = NULL;
					for (size_t c = 0; c < ld->t->ncols && !ci; c++)
						if (strcmp(ld->t->cols[c].name, col) == 0)
							ci = &ld->t->cols[c];
					if (!ci)
						return jp_say(&j, "unknown column '%s' in \"%s\": "
							      "table '%s' has no such column",
							      col, name, ld->table);
					cohort_update u = { ci->id, op, cohort_null() };
					if (jp_value(&j, ci, &u.value) < 0)
						return -1;
					if (add_update(ld, nups++, &u) < 0) {
						ld->dead = failf(EXIT_FAIL, "out of memory");
						return -2;
					}
					bytes += 4 + value_bytes(&u.value);
					jp_ws(&j);
					if (jp_peek(&j) == '}') {
						j.p++;
						break;
					}
					if (jp_expect(&j, ',') < 0)
						return -1;
				}
			}
		}
		jp_ws(&j);
		if (jp_peek(&j) == '}') {
			j.p++;
			break;
		}
		if (jp_expect(&j, ',') < 0)
			return -1;
	}
	jp_ws(&j);
	if (j.p < j.end)
		return jp_fail(&j, "text after the object");
	if (!key)
		return jp_say(&j, "no \"key\"");
	if (!nups)
		return jp_say(&j, "nothing to set, add or observe");
	if (nups > UINT16_MAX)
		return jp_say(&j, "%zu updates in one event (at most %u)", nups,
			      UINT16_MAX);
	cohort_update *ups = proto_arena_alloc(&ld->arena, nups * sizeof *ups);
	if (!ups) {
		ld->dead = failf(EXIT_FAIL, "out of memory");
		return -2;
	}
	memcpy(ups, ld->ups, nups * sizeof *ups);
	proto_event_row *row = &((proto_event_row *)ld->rows)[ld->n];
	row->key.ptr = key;
	row->key.len = (uint8_t)key_len;
	row->time = time;
	row->nupdates = (uint16_t)nups;
	row->updates = ups;
	return row_added(ld, lineno, bytes + key_len) < 0 ? -2 : 0;
}

static int load_events(struct loader *ld)
{
	int rc = cohort_client_describe(cl, ld->table, &ld->t);
	if (rc < 0)
		return fail(rc);
	struct line r;
	memset(&r, 0, sizeof r);
	char why[1400];
	/* a UTF-8 byte order mark */
	if (src_fill(&ld->src) && ld->src.len - ld->src.pos >= 3 &&
	    memcmp(ld->src.buf + ld->src.pos, "\xef\xbb\xbf", 3) == 0)
		ld->src.pos += 3;
	ld->t0 = now_s();
	for (;;) {
		int k = src_line(&ld->src, &r);
		if (k == 0)
			break;
		if (k == -2) {
			ld->dead = failf(EXIT_FAIL, "%s:%ld: %s", ld->file, ld->src.line + 1,
					 ld->src.err ? strerror(ld->src.err)
						     : "out of memory");
			rc = load_end(ld, 0, NULL);
			goto out;
		}
		size_t i = 0;
		while (i < r.len && isspace((unsigned char)r.b[i]))
			i++;
		if (k == 1 && i == r.len)
			continue;           /* a blank line */
		ld->nread++;
		int x = -1;
		if (k == -1)
			snprintf(why, sizeof why, "a line of more than %u bytes",
				 LINE_MAX_BYTES);
		else
			x = event_row(ld, r.b, r.len, r.line, why, sizeof why);
		if (x == -2) {
			rc = load_end(ld, 0, NULL);
			goto out;
		}
		if (x < 0 && (rc = on_bad(ld, r.line, why)))
			goto out;
		if (ld->stop_line) {
			rc = load_end(ld, 0, NULL);
			goto out;
		}
		progress(ld, 0);
	}
	if ((rc = load_end(ld, 0, NULL)) == 0)
		summary(ld, NULL);
out:
	free(r.b);
	return rc;
}

static int cmd_load(int argc, char **argv)
{
	struct opt opts[] = {
		{ "--key", 1, NULL }, { "--key-rownum", 0, NULL },
		{ "--schema", 1, NULL }, { "--create", 0, NULL },
		{ "--sep", 1, NULL }, { "--events", 0, NULL },
		{ "--batch", 1, NULL }, { "--inflight", 1, NULL },
		{ "--skip-bad", 0, NULL },
	};
	char *pos[MAX_ARGS];
	int npos, rc = parse_opts(argc, argv, opts, sizeof opts / sizeof opts[0],
				  pos, &npos);
	if (rc)
		return rc;
	int events = opts[5].val != NULL;
	if (events) {
		if (npos < 1 || npos > 2)
			return usage("load TABLE --events [FILE.ndjson | -]");
		for (int i = 0; i < 5; i++)
			if (opts[i].val)
				return usage("%s is for CSV files, not --events",
					     opts[i].name);
	} else if (npos != 2) {
		return usage("load TABLE FILE.csv [--schema FILE | --create] "
			     "(or load TABLE --events FILE)");
	}
	if (opts[0].val && opts[1].val)
		return usage("--key COL or --key-rownum, not both");
	struct csv_args a = { opts[0].val, opts[2].val, NULL, opts[1].val != NULL,
			      opts[3].val != NULL };
	const char *sep = opts[4].val;
	if (sep) {
		if (!strcmp(sep, "\\t") || !strcmp(sep, "tab"))
			sep = "\t";
		if (strlen(sep) != 1 || strchr("\"\r\n", sep[0]))
			return usage("--sep %s: one character (not a quote or a newline), "
				     "or tab", opts[4].val);
		a.sep = sep;
	}
	int64_t batch = 1000, depth = 4;
	if ((rc = opt_i64(&opts[6], 1, PROTO_MAX_BATCH_DEFAULT * 100, &batch)) ||
	    (rc = opt_i64(&opts[7], 1, LOAD_DEPTH_MAX, &depth)))
		return rc;

	struct loader *ld = calloc(1, sizeof *ld);
	if (!ld)
		return failf(EXIT_FAIL, "out of memory");
	ld->table = pos[0];
	const char *path = npos == 2 ? pos[1] : "-";
	ld->file = strcmp(path, "-") == 0 ? "stdin" : path;
	ld->events = events;
	ld->skip_bad = opts[8].val != NULL;
	ld->tty = isatty(2);
	cohort_client_info info;
	cohort_client_info_get(cl, &info);
	ld->batch_max = (size_t)batch;
	if (info.max_batch && ld->batch_max > info.max_batch)
		ld->batch_max = info.max_batch;
	ld->batch_bytes_max = info.max_frame ? info.max_frame / 2 : (4u << 20);
	ld->depth = (size_t)depth;
	ld->rows = calloc(ld->batch_max, events ? sizeof(proto_event_row)
						: sizeof(proto_put_row));
	ld->status = calloc(ld->batch_max, sizeof *ld->status);
	int oom = !ld->rows || !ld->status;
	for (size_t i = 0; i <= ld->depth && !oom; i++)
		oom = !(ld->slots[i].lines = calloc(ld->batch_max, sizeof(long)));
	if (oom) {
		rc = failf(EXIT_FAIL, "out of memory");
		goto out;
	}
	if ((rc = src_open(&ld->src, path)) < 0) {
		rc = failf(EXIT_FAIL, "%s: %s", ld->file, strerror(-rc));
		goto out;
	}
	rc = events ? load_events(ld) : load_csv(ld, &a);
out:
	src_close(&ld->src);
	for (size_t i = 0; i <= LOAD_DEPTH_MAX; i++)
		free(ld->slots[i].lines);
	free(ld->rows);
	free(ld->status);
	free(ld->ups);
	proto_arena_free(&ld->arena);
	free(ld);
	return rc;
}

/* ------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------ */
struct command {
	const char *name;
	int (*run)(int argc, char **argv);
};

static int cmd_put(int argc, char **argv) { return cmd_write(argc, argv, 0); }
static int cmd_event(int argc, char **argv) { return cmd_write(argc, argv, 1); }
static int cmd_count(int argc, char **argv) { return cmd_filter(argc, argv, 0); }
static int cmd_keys(int argc, char **argv) { return cmd_filter(argc, argv, 1); }

static const struct command commands[] = {
	{ "ping", cmd_ping }, { "tables", cmd_tables },
	{ "describe", cmd_describe }, { "create", cmd_create },
	{ "get", cmd_get }, { "put", cmd_put }, { "event", cmd_event },
	{ "delete", cmd_delete }, { "count", cmd_count }, { "keys", cmd_keys },
	{ "knn", cmd_knn }, { "persona", cmd_persona }, { "load", cmd_load },
	{ "stats", cmd_stats }, { "snapshot", cmd_snapshot },
};

int main(int argc, char **argv)
{
	const char *host = "127.0.0.1", *token_file = getenv("COHORT_TOKEN_FILE");
	int64_t port = COHORT_CLIENT_PORT, timeout = 60000;
	int help = 0;
	static char *rest[MAX_ARGS + 1];
	int nrest = 0;
	if (argc > MAX_ARGS)
		return usage("more than %d arguments", MAX_ARGS);
	/* global flags anywhere (up to "--") */
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int has_val = !strcmp(a, "--host") || !strcmp(a, "--port") ||
			      !strcmp(a, "--token-file") || !strcmp(a, "--timeout");
		if (!strcmp(a, "--")) {
			while (i < argc)
				rest[nrest++] = argv[i++];
			break;
		}
		if (has_val && i + 1 >= argc)
			return usage("%s needs a value", a);
		if (!strcmp(a, "--host"))
			host = argv[++i];
		else if (!strcmp(a, "--port")) {
			if (parse_i64(argv[++i], 1, 65535, &port) < 0)
				return usage("--port %s: 1 to 65535 expected", argv[i]);
		} else if (!strcmp(a, "--timeout")) {
			if (parse_i64(argv[++i], 0, INT32_MAX, &timeout) < 0)
				return usage("--timeout %s: milliseconds expected", argv[i]);
		} else if (!strcmp(a, "--token-file"))
			token_file = argv[++i];
		else if (!strcmp(a, "--token"))
			return usage("tokens are not taken on the command line: use "
				     "--token-file PATH or COHORT_TOKEN_FILE");
		else if (!strcmp(a, "--json"))
			json = 1;
		else if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			help = 1;
		else
			rest[nrest++] = argv[i];
	}
	if (nrest == 0 || (nrest >= 1 && !strcmp(rest[0], "help"))) {
		if (nrest >= 2)
			return cmd_help(rest[1]);
		if (help || nrest == 1) {
			fputs(help_main, stdout);
			return EXIT_OK;
		}
		fputs(help_main, stderr);
		return EXIT_USAGE;
	}
	const struct command *cmd = NULL;
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(commands[i].name, rest[0]))
			cmd = &commands[i];
	if (!cmd)
		return usage("no command '%s'", rest[0]);
	if (help)
		return cmd_help(cmd->name);

	cohort_client_opts opts;
	cohort_client_opts_init(&opts);
	opts.timeout_ms = (uint32_t)timeout;
	opts.name = "cohort_cli";
	int rc = cohort_client_connect(host, (uint16_t)port, &opts, &cl);
	if (rc < 0) {
		if (!cl)
			return failf(EXIT_CONN, "%s", cohort_strerror(rc));
		rc = failf(rc == COHORT_EINVAL ? EXIT_USAGE : EXIT_CONN, "%s",
			   cohort_client_errmsg(cl));
		cohort_client_close(cl);
		return rc;
	}
	if (token_file) {
		rc = cohort_client_auth_file(cl, token_file, NULL);
		if (rc < 0) {
			rc = failf(EXIT_CONN, "authentication failed: %s",
				   cohort_client_errmsg(cl));
			cohort_client_close(cl);
			return rc;
		}
	}
	int code = cmd->run(nrest - 1, rest + 1);
	fflush(stdout);
	cohort_client_close(cl);
	return code;
}
