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
 * (parse_where), compiled into the client's filter builder.
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

#include "cohort_client.h"

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
	"  persona train TABLE MODEL [COL...] -k N [--iters N] [--seed N] ...\n"
	"  load TABLE FILE.csv [--key COL] [--batch N] [--skip-bad]\n"
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
	  "       cohort persona train TABLE MODEL [COL...] -k N [--iters N]\n"
	  "           [--seed N] [--sample N] [--minibatch] [--background]\n"
	  "           [--mode at_once|background] [--max-delay MS]\n"
	  "  train without columns retrains the existing model.\n" },
	{ "load", "usage: cohort load TABLE FILE.csv [--key COL] [--batch N] [--skip-bad]\n"
	  "  Loads a CSV file (FILE - reads stdin) into an existing table. The\n"
	  "  header names the columns; the key is column COL (default: the\n"
	  "  first). Empty fields store null. A bad line stops the load with its\n"
	  "  line number and reason; with --skip-bad it is counted and skipped.\n" },
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
		char *spec = pos[i + 1];
		char *t = strchr(spec, ':');
		if (!t) {
			free(defs);
			return usage("column '%s': NAME:TYPE expected", spec);
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
			free(defs);
			return usage("column '%s': bad type '%s%s%s' (vec:DIM, decay:MS, "
				     "or one of f32 f64 i32 i64 bool cat counter min max last)",
				     spec, t, param ? ":" : "", param ? param : "");
		}
		defs[i].name = spec;
		defs[i].type = (cohort_type)type;
		if (type == COHORT_VEC)
			defs[i].dim = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
		if (type == COHORT_DECAY)
			defs[i].half_life_ms = n;
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
		return usage("persona assign|members|sizes|train ...");
	if (!strcmp(argv[0], "assign"))
		return persona_assign(argc - 1, argv + 1);
	if (!strcmp(argv[0], "members"))
		return persona_members(argc - 1, argv + 1);
	if (!strcmp(argv[0], "sizes"))
		return persona_sizes(argc - 1, argv + 1);
	if (!strcmp(argv[0], "train"))
		return persona_train(argc - 1, argv + 1);
	return usage("persona %s: assign, members, sizes or train expected",
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
 * load: CSV into an existing table, in batches of PUTs
 * ------------------------------------------------------------------------ */

/* One record of a CSV file (RFC 4180: quotes, "" escapes, newlines in
 * quotes, CRLF). Fields are NUL-terminated in rec; *line gets the line
 * the record starts on. Returns the number of fields, 0 at the end of the
 * file, -1 for a quote left open. */
struct csv {
	FILE *in;
	long line;               /* lines read so far */
	char *rec;
	size_t rec_len, rec_cap;
	size_t *foff;
	size_t nf, nf_cap;
};

static int csv_put(struct csv *c, char ch)
{
	if (c->rec_len == c->rec_cap) {
		size_t cap = c->rec_cap ? c->rec_cap * 2 : 4096;
		char *p = realloc(c->rec, cap);
		if (!p)
			return -1;
		c->rec = p;
		c->rec_cap = cap;
	}
	c->rec[c->rec_len++] = ch;
	return 0;
}

static int csv_field(struct csv *c)
{
	if (c->nf == c->nf_cap) {
		size_t cap = c->nf_cap ? c->nf_cap * 2 : 64;
		size_t *p = realloc(c->foff, cap * sizeof *p);
		if (!p)
			return -1;
		c->foff = p;
		c->nf_cap = cap;
	}
	c->foff[c->nf++] = c->rec_len;
	return 0;
}

static long csv_read(struct csv *c, long *line)
{
	c->rec_len = 0;
	c->nf = 0;
	int ch = getc(c->in);
	if (ch == EOF)
		return 0;
	*line = c->line + 1;
	int quoted = 0, started = 0;
	if (csv_field(c) < 0)
		return -2;
	for (;; ch = getc(c->in)) {
		if (ch == EOF) {
			if (quoted)
				return -1;
			break;
		}
		if (quoted) {
			if (ch == '"') {
				int nx = getc(c->in);
				if (nx == '"') {
					if (csv_put(c, '"') < 0)
						return -2;
					continue;
				}
				quoted = 0;
				ungetc(nx, c->in);
				continue;
			}
			if (ch == '\n')
				c->line++;
			if (csv_put(c, (char)ch) < 0)
				return -2;
			continue;
		}
		if (ch == '\n') {
			c->line++;
			break;
		}
		if (ch == '\r') {
			int nx = getc(c->in);
			if (nx != '\n')
				ungetc(nx, c->in);
			c->line++;
			break;
		}
		if (ch == ',') {
			if (csv_put(c, 0) < 0 || csv_field(c) < 0)
				return -2;
			started = 0;
			continue;
		}
		if (ch == '"' && !started) {
			quoted = 1;
			started = 1;
			continue;
		}
		started = 1;
		if (csv_put(c, (char)ch) < 0)
			return -2;
	}
	if (csv_put(c, 0) < 0)
		return -2;
	return (long)c->nf;
}

static const char *csv_f(const struct csv *c, size_t i)
{
	return c->rec + c->foff[i];
}

/* A parsed row waiting in the batch (its own copies). */
struct pending {
	long line;
	char *key;
	size_t key_len;
	char *strs;              /* the record's bytes: cat values point here */
	cohort_field *fields;
	float *vecs;
	size_t nfields;
};

struct loader {
	const char *table, *file;
	const cohort_client_table *t;
	int skip_bad;
	size_t batch_max, batch_bytes_max;
	struct pending *rows;
	cohort_client_row *crow;
	int *status;
	size_t n, bytes;
	uint64_t loaded, bad;
	int reported;            /* bad lines shown with --skip-bad */
};

static void pending_free(struct pending *p)
{
	free(p->key);
	free(p->strs);
	free(p->fields);
	free(p->vecs);
	memset(p, 0, sizeof *p);
}

static void bad_line(struct loader *ld, long line, const char *why)
{
	ld->bad++;
	if (ld->reported++ < 10)
		fprintf(stderr, "%s: %s:%ld: %s (skipped)\n", prog, ld->file, line, why);
	else if (ld->reported == 11)
		fprintf(stderr, "%s: (more bad lines: only the count is shown)\n", prog);
}

/* Send the batch. Returns 0, or an exit code after printing why. */
static int load_flush(struct loader *ld)
{
	if (ld->n == 0)
		return 0;
	for (size_t i = 0; i < ld->n; i++) {
		ld->crow[i].key = ld->rows[i].key;
		ld->crow[i].key_len = ld->rows[i].key_len;
		ld->crow[i].time = COHORT_NOW;
		ld->crow[i].fields = ld->rows[i].fields;
		ld->crow[i].updates = NULL;
		ld->crow[i].n = ld->rows[i].nfields;
	}
	int rc = cohort_client_put_batch(cl, ld->table, ld->crow, ld->n, ld->status);
	int code = 0, first_failed = 0;
	if (rc < 0) {
		fprintf(stderr, "%s: lines %ld to %ld were not loaded\n", prog,
			ld->rows[0].line, ld->rows[ld->n - 1].line);
		code = fail(rc);
	} else {
		for (size_t i = 0; i < ld->n; i++) {
			if (ld->status[i] == 0) {
				ld->loaded++;
				continue;
			}
			/* errmsg names the first failing row ("row N: why") */
			char why[1200];
			const char *m = cohort_client_errmsg(cl);
			const char *colon = strstr(m, ": ");
			if (first_failed++ == 0 && colon)
				snprintf(why, sizeof why, "%s: %s",
					 cohort_strerror(ld->status[i]), colon + 2);
			else
				snprintf(why, sizeof why, "%s",
					 cohort_strerror(ld->status[i]));
			if (ld->skip_bad) {
				bad_line(ld, ld->rows[i].line, why);
			} else if (!code) {
				fprintf(stderr, "%s: %s:%ld: %s\n", prog, ld->file,
					ld->rows[i].line, why);
				code = EXIT_FAIL;
			}
		}
	}
	for (size_t i = 0; i < ld->n; i++)
		pending_free(&ld->rows[i]);
	ld->n = 0;
	ld->bytes = 0;
	return code;
}

/* Parse one record into the batch: 0, or -1 with why. */
static int load_row(struct loader *ld, const struct csv *c, long line,
		    const int *colmap, size_t key_field, char *why, size_t why_len)
{
	const char *key = csv_f(c, key_field);
	size_t key_len = strlen(key);
	if (key_len == 0 || key_len > COHORT_MAX_KEY) {
		snprintf(why, why_len, "the key must be 1 to %d bytes, not %zu",
			 COHORT_MAX_KEY, key_len);
		return -1;
	}
	struct pending *p = &ld->rows[ld->n];
	memset(p, 0, sizeof *p);
	p->line = line;
	size_t nf = c->nf - 1;
	p->key = malloc(key_len + 1);
	p->strs = malloc(c->rec_len ? c->rec_len : 1);
	p->fields = calloc(nf ? nf : 1, sizeof *p->fields);
	size_t nvec = 0;
	for (size_t i = 0; i < c->nf; i++)
		if (i != key_field && ld->t->cols[colmap[i]].type == COHORT_VEC)
			nvec += ld->t->cols[colmap[i]].dim;
	p->vecs = malloc((nvec ? nvec : 1) * sizeof *p->vecs);
	if (!p->key || !p->strs || !p->fields || !p->vecs) {
		pending_free(p);
		snprintf(why, why_len, "out of memory");
		return -1;
	}
	memcpy(p->key, key, key_len + 1);
	p->key_len = key_len;
	memcpy(p->strs, c->rec, c->rec_len);
	size_t k = 0, voff = 0;
	for (size_t i = 0; i < c->nf; i++) {
		if (i == key_field)
			continue;
		const cohort_client_column_info *ci = &ld->t->cols[colmap[i]];
		if (parse_value(ci, p->strs + c->foff[i], p->vecs + voff,
				&p->fields[k].value, why, why_len) < 0) {
			pending_free(p);
			return -1;
		}
		if (ci->type == COHORT_VEC)
			voff += ci->dim;
		p->fields[k].column = ci->id;
		k++;
	}
	p->nfields = k;
	ld->n++;
	ld->bytes += c->rec_len + 16 + 8 * k;
	return 0;
}

static int cmd_load(int argc, char **argv)
{
	struct opt opts[] = { { "--key", 1, NULL }, { "--batch", 1, NULL },
			      { "--skip-bad", 0, NULL } };
	char *pos[MAX_ARGS];
	int npos, rc = parse_opts(argc, argv, opts, 3, pos, &npos);
	if (rc)
		return rc;
	if (npos != 2)
		return usage("load TABLE FILE.csv [--key COL] [--batch N] [--skip-bad]");
	int64_t batch = 1000;
	if ((rc = opt_i64(&opts[1], 1, PROTO_MAX_BATCH_DEFAULT * 100, &batch)))
		return rc;
	struct loader ld;
	memset(&ld, 0, sizeof ld);
	ld.table = pos[0];
	ld.file = pos[1];
	ld.skip_bad = opts[2].val != NULL;
	cohort_client_info info;
	cohort_client_info_get(cl, &info);
	ld.batch_max = (size_t)batch;
	if (info.max_batch && ld.batch_max > info.max_batch)
		ld.batch_max = info.max_batch;
	ld.batch_bytes_max = info.max_frame ? info.max_frame / 2 : (8u << 20);

	if ((rc = cohort_client_describe(cl, ld.table, &ld.t)) < 0)
		return fail(rc);
	struct csv c;
	memset(&c, 0, sizeof c);
	c.in = strcmp(ld.file, "-") == 0 ? stdin : fopen(ld.file, "r");
	if (!c.in)
		return failf(EXIT_FAIL, "%s: %s", ld.file, strerror(errno));
	int *colmap = NULL;
	size_t key_field = 0, nhead = 0;
	double t0 = now_s();
	long line;
	long nf = csv_read(&c, &line);
	if (nf <= 0) {
		rc = failf(EXIT_FAIL, "%s: %s", ld.file,
			   nf == 0 ? "empty file: a header line is expected"
				   : "the header has an unterminated quote");
		goto out;
	}
	nhead = (size_t)nf;
	colmap = calloc(nhead, sizeof *colmap);
	ld.rows = calloc(ld.batch_max, sizeof *ld.rows);
	ld.crow = calloc(ld.batch_max, sizeof *ld.crow);
	ld.status = calloc(ld.batch_max, sizeof *ld.status);
	if (!colmap || !ld.rows || !ld.crow || !ld.status) {
		rc = failf(EXIT_FAIL, "out of memory");
		goto out;
	}
	int have_key = 0;
	for (size_t i = 0; i < nhead; i++) {
		const char *h = csv_f(&c, i);
		if (opts[0].val ? strcmp(h, opts[0].val) == 0 : i == 0) {
			key_field = i;
			have_key = 1;
			colmap[i] = -1;
			continue;
		}
		colmap[i] = -1;
		for (size_t j = 0; j < ld.t->ncols; j++)
			if (strcmp(ld.t->cols[j].name, h) == 0)
				colmap[i] = (int)j;
		if (colmap[i] < 0) {
			rc = failf(EXIT_FAIL, "%s:%ld: column '%s' is not in table '%s'",
				   ld.file, line, h, ld.table);
			goto out;
		}
	}
	if (!have_key) {
		rc = failf(EXIT_USAGE, "%s: no column '%s' for the key in the header",
			   ld.file, opts[0].val);
		goto out;
	}
	for (;;) {
		nf = csv_read(&c, &line);
		if (nf == 0)
			break;
		char why[1200];
		if (nf == -2) {
			rc = failf(EXIT_FAIL, "out of memory");
			goto out;
		}
		int bad = 0;
		if (nf == -1) {
			snprintf(why, sizeof why, "a quote is left open");
			bad = 1;
		} else if (nf == 1 && c.rec[0] == 0) {
			continue;  /* an empty line */
		} else if ((size_t)nf != nhead) {
			snprintf(why, sizeof why, "%ld fields where the header has %zu", nf,
				 nhead);
			bad = 1;
		} else if (load_row(&ld, &c, line, colmap, key_field, why,
				    sizeof why) < 0) {
			bad = 1;
		}
		if (bad) {
			if (!ld.skip_bad) {
				/* the good lines before it are loaded */
				int code = load_flush(&ld);
				fprintf(stderr, "%s: %s:%ld: %s\n", prog, ld.file, line, why);
				fprintf(stderr, "%s: load stopped (--skip-bad skips bad "
					"lines)\n", prog);
				rc = code ? code : EXIT_FAIL;
				goto out;
			}
			bad_line(&ld, line, why);
			if (nf == -1)
				break;
			continue;
		}
		if (ld.n == ld.batch_max || ld.bytes >= ld.batch_bytes_max) {
			if ((rc = load_flush(&ld)))
				goto out;
		}
	}
	if ((rc = load_flush(&ld)))
		goto out;
	if (ferror(c.in)) {
		rc = failf(EXIT_FAIL, "%s: read error", ld.file);
		goto out;
	}
	double secs = now_s() - t0;
	if (json)
		printf("{\"loaded\":%" PRIu64 ",\"bad\":%" PRIu64 ",\"seconds\":%.3f}\n",
		       ld.loaded, ld.bad, secs);
	else
		printf("loaded %" PRIu64 " rows into %s in %.3f s%s", ld.loaded,
		       ld.table, secs, ld.bad ? "" : "\n");
	if (!json && ld.bad)
		printf(" (%" PRIu64 " bad lines skipped)\n", ld.bad);
	rc = EXIT_OK;
out:
	if (rc != EXIT_OK)
		fprintf(stderr, "%s: %" PRIu64 " rows were loaded before the error\n",
			prog, ld.loaded);
	for (size_t i = 0; i < ld.n; i++)
		pending_free(&ld.rows[i]);
	free(ld.rows);
	free(ld.crow);
	free(ld.status);
	free(colmap);
	free(c.rec);
	free(c.foff);
	if (c.in && c.in != stdin)
		fclose(c.in);
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
