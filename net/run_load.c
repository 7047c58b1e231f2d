/*
 * run_load.c -- the data behind `make run`, read from ../shared/data (see
 * its README) and loaded into cohortd over libcohort-client.
 *
 * Tables
 *   bank     one row per Bank Marketing customer (bank.csv), keyed
 *            "c<record number>" in file order, every column of the file
 *            plus `profile`, a vec of 8 standardised features (age,
 *            signed log of the balance, education level, housing, loan,
 *            default, married, single) for the lookalike index.
 *   account  one row per Berka account (account.asc), keyed by its id,
 *            joined with its OWNER client (birth date, age at 1999-01-01,
 *            sex: in birth_number women have month + 50), its district's
 *            demographics (district.asc A2..A16), its loan (loan.asc) and
 *            its owner's card (card.asc; the best tier if several); put at
 *            the account's opening date. Then trans.asc is replayed in date
 *            order (stable: file order within a day) as one EVENT per
 *            transaction at its date: n_trans (counter), balance (last),
 *            min_balance (min), and the amount into one of six decay
 *            columns (half-life RUN_DECAY_DAYS days) by operation.
 *   run_info one row "load", written last: what was loaded, when, how long
 *            it took. A database with bank or account but no run_info row
 *            is a load that did not finish (run.c refuses it).
 *
 * Input is checked strictly: a wrong header, a field count that differs
 * from the header's, a number that does not parse, an unknown operation or
 * a transaction of an account that account.asc lacks stops the load with
 * the file, the line and the reason. Empty fields and '?' (district.asc's
 * missing figures) are stored as null.
 *
 * Speed: rows go in batches of BATCH per PUT or EVENT request, with up to
 * WINDOW requests pipelined on the one connection (responses are checked
 * row by row as they come back).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "csv.h"
#include "run_int.h"

#define BATCH 1000
#define WINDOW 8
#define MAX_FIELDS 48            /* fields of one CSV record, values of a row */
#define MAX_ID 100000000         /* largest Berka id accepted */
#define DAY_MS 86400000LL
#define PROFILE_DIM 8

/* ------------------------------------------------------------------------
 * The data sets' files through the csv reader of csv.h: ';' separated,
 * strings in double quotes, CRLF or LF line ends, a header line, blank
 * lines skipped; any other deviation stops the load with the file and the
 * line. A record's fields are valid until the next in_next.
 * ------------------------------------------------------------------------ */
typedef struct infile {
	char path[PATH_MAX];
	FILE *fp;
	csv_reader r;
	long line;                 /* line of the current record (1: header) */
	size_t nhead;
	const char *head[MAX_FIELDS];
	const char *f[MAX_FIELDS];  /* the current record's fields */
} infile;

static void in_open(infile *c, const char *dir, const char *file)
{
	memset(c, 0, sizeof *c);
	snprintf(c->path, sizeof c->path, "%s/%s", dir, file);
	c->fp = fopen(c->path, "rb");
	if (!c->fp)
		run_die("cannot open %s: %s", c->path, strerror(errno));
	csv_opts o = { .delim = ';', .flags = CSV_SKIP_BLANK };
	if (csv_open_opts(&c->r, &o, c->fp, -1, NULL, 0) < 0)
		run_die("%s line %llu: %s", c->path,
			(unsigned long long)c->r.err_line, csv_why(&c->r));
	if (c->r.nheader > MAX_FIELDS)
		run_die("%s line 1: more than %d fields", c->path, MAX_FIELDS);
	c->nhead = c->r.nheader;
	for (size_t i = 0; i < c->nhead; i++)
		c->head[i] = c->r.header[i].ptr;
	c->line = 1;
}

static void in_close(infile *c)
{
	csv_close(&c->r);
	if (c->fp)
		fclose(c->fp);
	c->fp = NULL;
}

/* The next record, with as many fields as the header; false at the end. */
static bool in_next(infile *c)
{
	int rc = csv_next(&c->r);
	if (rc < 0)
		run_die("%s line %llu: %s", c->path,
			(unsigned long long)c->r.err_line, csv_why(&c->r));
	if (rc == 0)
		return false;
	c->line = (long)c->r.line;
	for (size_t i = 0; i < c->nhead; i++)
		c->f[i] = c->r.fields[i].ptr;
	return true;
}

/* The header must be exactly names[0..n). */
static void in_expect(infile *c, const char *const *names, size_t n)
{
	if (c->nhead != n)
		run_die("%s: %zu columns in the header, expected %zu", c->path,
			c->nhead, n);
	for (size_t i = 0; i < n; i++)
		if (strcmp(c->head[i], names[i]) != 0)
			run_die("%s: column %zu is '%s', expected '%s'", c->path,
				i + 1, c->head[i], names[i]);
}

static bool is_null(const char *s)
{
	return s[0] == 0 || (s[0] == '?' && s[1] == 0);
}

/* Field i as an integer in [lo, hi]; false when null. */
static bool get_i64(infile *c, size_t i, int64_t lo, int64_t hi, int64_t *out)
{
	const char *s = c->f[i];
	if (is_null(s))
		return false;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		run_die("%s line %ld, column %s: '%s' is not an integer in "
			"[%" PRId64 ", %" PRId64 "]", c->path, c->line,
			c->head[i], s, lo, hi);
	*out = v;
	return true;
}

/* Field i as a finite number; false when null. */
static bool get_f64(infile *c, size_t i, double *out)
{
	const char *s = c->f[i];
	if (is_null(s))
		return false;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || !isfinite(v))
		run_die("%s line %ld, column %s: '%s' is not a number", c->path,
			c->line, c->head[i], s);
	*out = v;
	return true;
}

/* A required integer (a key or an id). */
static int64_t need_i64(infile *c, size_t i, int64_t lo, int64_t hi)
{
	int64_t v;
	if (!get_i64(c, i, lo, hi, &v))
		run_die("%s line %ld, column %s: empty", c->path, c->line,
			c->head[i]);
	return v;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* Field i, a YYMMDD date of the 1900s (card.asc adds " 00:00:00"), as
 * yyyymmdd. mm_women: birth numbers, where women have month + 50 (*female
 * says which). */
static int32_t get_date(infile *c, size_t i, bool mm_women, bool *female)
{
	const char *s = c->f[i];
	int n = 0;
	while (s[n] >= '0' && s[n] <= '9')
		n++;
	if (n != 6 || (s[6] && strcmp(s + 6, " 00:00:00") != 0))
		run_die("%s line %ld, column %s: '%s' is not a YYMMDD date",
			c->path, c->line, c->head[i], s);
	int y = (s[0] - '0') * 10 + (s[1] - '0');
	int m = (s[2] - '0') * 10 + (s[3] - '0');
	int d = (s[4] - '0') * 10 + (s[5] - '0');
	if (female)
		*female = mm_women && m > 50;
	if (mm_women && m > 50)
		m -= 50;
	if (m < 1 || m > 12 || d < 1 || d > 31)
		run_die("%s line %ld, column %s: '%s' is not a YYMMDD date",
			c->path, c->line, c->head[i], s);
	return (1900 + y) * 10000 + m * 100 + d;
}

static cohort_time date_time(int32_t ymd)
{
	return days_from_civil(ymd / 10000, ymd / 100 % 100, ymd % 100) *
	       DAY_MS;
}

/* ------------------------------------------------------------------------
 * Copies of text values: a field of the csv reader lives only until its
 * next record, a value until its batch is sent (the districts: the whole
 * load). Blocks never move, so a copy stays where it is until text_free.
 * ------------------------------------------------------------------------ */
#define TEXT_BLOCK (64u << 10)

typedef struct text_block {
	struct text_block *next;
	size_t used, cap;
	char b[];
} text_block;

/* A cat value (null when empty or '?') holding a copy of s. */
static cohort_value text_cat(text_block **t, const char *s)
{
	if (is_null(s))
		return cohort_null();
	size_t len = strlen(s);
	text_block *b = *t;
	if (!b || b->cap - b->used < len + 1) {
		size_t cap = len + 1 > TEXT_BLOCK ? len + 1 : TEXT_BLOCK;
		b = malloc(sizeof *b + cap);
		if (!b)
			run_die("out of memory");
		b->next = *t;
		b->used = 0;
		b->cap = cap;
		*t = b;
	}
	char *d = b->b + b->used;
	memcpy(d, s, len + 1);
	b->used += len + 1;
	return cohort_catn(d, (uint32_t)len);
}

static void text_free(text_block **t)
{
	while (*t) {
		text_block *next = (*t)->next;
		free(*t);
		*t = next;
	}
}

/* ------------------------------------------------------------------------
 * Pipelined batches of PUT or EVENT rows to one table
 * ------------------------------------------------------------------------ */
typedef struct pipe {
	cohort_client *c;
	const char *table, *src;   /* src: the file rows come from */
	uint8_t op;                /* PROTO_OP_PUT or PROTO_OP_EVENT */
	size_t batch;
	/* the batch being gathered */
	size_t n;
	proto_put_row put[BATCH];
	proto_event_row ev[BATCH];
	cohort_field fields[BATCH * MAX_FIELDS];
	cohort_update updates[BATCH * 4];
	char keys[BATCH][24];
	text_block *text;          /* the batch's cat values */
	/* requests in flight, oldest at head: row count and source lines */
	size_t head, ninflight;
	size_t nrows[WINDOW];
	long lines[WINDOW][BATCH];
	long gather_lines[BATCH];
	uint64_t done;
	int status[BATCH];
} pipe;

static pipe *pipe_new(cohort_client *c, const char *table, uint8_t op,
		      const char *src)
{
	pipe *p = calloc(1, sizeof *p);
	if (!p)
		run_die("out of memory");
	p->c = c;
	p->table = table;
	p->op = op;
	p->src = src;
	cohort_client_info info;
	cohort_client_info_get(c, &info);
	p->batch = info.max_batch && info.max_batch < BATCH ? info.max_batch
							     : BATCH;
	return p;
}

/* Receive the oldest request's response and check every row. */
static void pipe_recv(pipe *p)
{
	cohort_client_resp r;
	run_check(p->c, cohort_client_recv(p->c, &r), p->table);
	size_t n = p->nrows[p->head];
	const long *lines = p->lines[p->head];
	if (r.status < 0)
		run_die("%s: %s of %zu rows (%s lines %ld to %ld) refused: %s",
			p->table, p->op == PROTO_OP_PUT ? "PUT" : "EVENT", n,
			p->src, lines[0], lines[n - 1],
			cohort_client_errmsg(p->c));
	run_check(p->c, cohort_client_resp_batch(p->c, &r, p->status, n),
		  p->table);
	for (size_t i = 0; i < n; i++)
		if (p->status[i] < 0)
			run_die("%s line %ld: %s into %s: %s (%s)", p->src,
				lines[i], p->op == PROTO_OP_PUT ? "put" : "event",
				p->table, cohort_strerror(p->status[i]),
				cohort_client_errmsg(p->c));
	p->done += n;
	p->head = (p->head + 1) % WINDOW;
	p->ninflight--;
}

static void pipe_flush(pipe *p)
{
	if (p->n == 0)
		return;
	if (p->ninflight == WINDOW)
		pipe_recv(p);
	proto_req req;
	memset(&req, 0, sizeof req);
	req.hdr.opcode = p->op;
	snprintf(req.table, sizeof req.table, "%s", p->table);
	if (p->op == PROTO_OP_PUT) {
		req.u.put.nrows = (uint32_t)p->n;
		req.u.put.rows = p->put;
	} else {
		req.u.event.nrows = (uint32_t)p->n;
		req.u.event.rows = p->ev;
	}
	run_check(p->c, cohort_client_send(p->c, &req, NULL), p->table);
	text_free(&p->text);       /* the request is encoded */
	size_t slot = (p->head + p->ninflight) % WINDOW;
	p->nrows[slot] = p->n;
	memcpy(p->lines[slot], p->gather_lines, p->n * sizeof(long));
	p->ninflight++;
	p->n = 0;
}

/* Room for the next row's values: nvals fields (PUT) or updates (EVENT),
 * which the caller fills; the row is sent with its batch. */
static void *pipe_row(pipe *p, const char *key, cohort_time t, long line,
		      size_t nvals)
{
	if (p->n == p->batch)
		pipe_flush(p);
	size_t i = p->n++;
	snprintf(p->keys[i], sizeof p->keys[i], "%s", key);
	proto_key k = { p->keys[i], (uint8_t)strlen(p->keys[i]) };
	p->gather_lines[i] = line;
	if (p->op == PROTO_OP_PUT) {
		p->put[i] = (proto_put_row){ k, t, (uint16_t)nvals,
					     &p->fields[i * MAX_FIELDS] };
		return p->put[i].fields;
	}
	p->ev[i] = (proto_event_row){ k, t, (uint16_t)nvals,
				      &p->updates[i * 4] };
	return p->ev[i].updates;
}

/* Send the rest and wait for every answer; returns the rows applied. */
static uint64_t pipe_finish(pipe *p)
{
	pipe_flush(p);
	while (p->ninflight)
		pipe_recv(p);
	uint64_t n = p->done;
	text_free(&p->text);
	free(p);
	return n;
}

static void create_table(cohort_client *c, const char *name,
			 const cohort_column_def *cols, size_t ncols)
{
	char what[128];
	snprintf(what, sizeof what, "create table %s", name);
	run_check(c, cohort_client_table_create(c, name, cols, ncols, 0), what);
}

/* ------------------------------------------------------------------------
 * bank: Bank Marketing customers
 * ------------------------------------------------------------------------ */
static const cohort_column_def bank_cols[] = {
	{ "age", COHORT_I32, 0, 0 },
	{ "job", COHORT_CAT, 0, 0 },
	{ "marital", COHORT_CAT, 0, 0 },
	{ "education", COHORT_CAT, 0, 0 },
	{ "default", COHORT_BOOL, 0, 0 },
	{ "balance", COHORT_I64, 0, 0 },
	{ "housing", COHORT_BOOL, 0, 0 },
	{ "loan", COHORT_BOOL, 0, 0 },
	{ "contact", COHORT_CAT, 0, 0 },
	{ "day", COHORT_I32, 0, 0 },
	{ "month", COHORT_CAT, 0, 0 },
	{ "duration", COHORT_I32, 0, 0 },
	{ "campaign", COHORT_I32, 0, 0 },
	{ "pdays", COHORT_I32, 0, 0 },
	{ "previous", COHORT_I32, 0, 0 },
	{ "poutcome", COHORT_CAT, 0, 0 },
	{ "y", COHORT_BOOL, 0, 0 },
	{ "profile", COHORT_VEC, PROFILE_DIM, 0 },
};
#define BANK_FILE_COLS 17        /* the file's; profile is computed */
#define BANK_NCOLS (sizeof bank_cols / sizeof bank_cols[0])
enum { B_AGE = 0, B_MARITAL = 2, B_EDUCATION = 3, B_DEFAULT = 4,
       B_BALANCE = 5, B_HOUSING = 6, B_LOAN = 7 };

/* A bool value with every byte set (cohort_bool leaves the union's upper
 * bytes unset, which GCC reports once the value is copied). */
static cohort_value bool_value(bool b)
{
	cohort_value v;
	memset(&v, 0, sizeof v);
	v.type = COHORT_BOOL;
	v.v.b = b;
	return v;
}

static bool get_yes_no(infile *c, size_t i)
{
	if (strcmp(c->f[i], "yes") == 0)
		return true;
	if (strcmp(c->f[i], "no") == 0)
		return false;
	run_die("%s line %ld, column %s: '%s' is neither yes nor no", c->path,
		c->line, c->head[i], c->f[i]);
}

/* The profile's raw features of the current record; NAN for unknown. */
static void profile_raw(infile *c, double x[PROFILE_DIM])
{
	int64_t v;
	x[0] = get_i64(c, B_AGE, 0, 200, &v) ? (double)v : NAN;
	if (get_i64(c, B_BALANCE, INT64_MIN / 2, INT64_MAX / 2, &v))
		x[1] = v < 0 ? -log1p(-(double)v) : log1p((double)v);
	else
		x[1] = NAN;
	const char *edu = c->f[B_EDUCATION];
	x[2] = !strcmp(edu, "primary") ? 1 : !strcmp(edu, "secondary") ? 2 :
	       !strcmp(edu, "tertiary") ? 3 : NAN;
	x[3] = get_yes_no(c, B_HOUSING);
	x[4] = get_yes_no(c, B_LOAN);
	x[5] = get_yes_no(c, B_DEFAULT);
	x[6] = !strcmp(c->f[B_MARITAL], "married");
	x[7] = !strcmp(c->f[B_MARITAL], "single");
}

static uint64_t load_bank(cohort_client *c, const char *data_dir)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/bank-marketing", data_dir);
	infile f;
	in_open(&f, dir, "bank.csv");
	const char *names[BANK_FILE_COLS];
	for (size_t i = 0; i < BANK_FILE_COLS; i++)
		names[i] = bank_cols[i].name;
	in_expect(&f, names, BANK_FILE_COLS);

	/* first pass: mean and sd of the profile's features (unknowns are
	 * left out, and become 0 = the mean) */
	double sum[PROFILE_DIM] = { 0 }, sum2[PROFILE_DIM] = { 0 };
	double cnt[PROFILE_DIM] = { 0 };
	while (in_next(&f)) {
		double x[PROFILE_DIM];
		profile_raw(&f, x);
		for (int j = 0; j < PROFILE_DIM; j++)
			if (!isnan(x[j])) {
				sum[j] += x[j];
				sum2[j] += x[j] * x[j];
				cnt[j]++;
			}
	}
	double mean[PROFILE_DIM], sd[PROFILE_DIM];
	for (int j = 0; j < PROFILE_DIM; j++) {
		mean[j] = cnt[j] ? sum[j] / cnt[j] : 0;
		double var = cnt[j] > 1 ? (sum2[j] - cnt[j] * mean[j] * mean[j]) /
					  (cnt[j] - 1) : 0;
		sd[j] = var > 1e-12 ? sqrt(var) : 1;
	}

	/* second pass: the rows (the file is split in place already: read it
	 * again) */
	in_close(&f);
	in_open(&f, dir, "bank.csv");
	create_table(c, RUN_BANK, bank_cols, BANK_NCOLS);
	pipe *p = pipe_new(c, RUN_BANK, PROTO_OP_PUT, f.path);
	static float vecs[BATCH][PROFILE_DIM];
	uint64_t nrec = 0;
	while (in_next(&f)) {
		char key[24];
		snprintf(key, sizeof key, "c%" PRIu64, ++nrec);
		size_t slot = p->n == p->batch ? 0 : p->n;
		cohort_field *fl = pipe_row(p, key, COHORT_NOW, f.line,
					    BANK_NCOLS);
		for (size_t i = 0; i < BANK_FILE_COLS; i++) {
			fl[i].column = (int)i;
			int64_t v;
			switch (bank_cols[i].type) {
			case COHORT_I32:
				fl[i].value = get_i64(&f, i, INT32_MIN, INT32_MAX, &v)
					? cohort_i32((int32_t)v) : cohort_null();
				break;
			case COHORT_I64:
				fl[i].value = get_i64(&f, i, INT64_MIN, INT64_MAX, &v)
					? cohort_i64(v) : cohort_null();
				break;
			case COHORT_BOOL:
				fl[i].value = bool_value(get_yes_no(&f, i));
				break;
			default:
				fl[i].value = text_cat(&p->text, f.f[i]);
				break;
			}
		}
		double x[PROFILE_DIM];
		profile_raw(&f, x);
		for (int j = 0; j < PROFILE_DIM; j++)
			vecs[slot][j] = isnan(x[j]) ? 0.0f :
					(float)((x[j] - mean[j]) / sd[j]);
		fl[BANK_FILE_COLS].column = BANK_FILE_COLS;
		fl[BANK_FILE_COLS].value = cohort_vec(vecs[slot], PROFILE_DIM);
	}
	uint64_t n = pipe_finish(p);
	in_close(&f);
	return n;
}

/* ------------------------------------------------------------------------
 * account: Berka accounts with owner, district, loan and card; then the
 * transactions as events
 * ------------------------------------------------------------------------ */
enum {
	A_DISTRICT_ID, A_DISTRICT, A_REGION, A_INHABITANTS, A_MUNIS_LT500,
	A_MUNIS_500_2K, A_MUNIS_2K_10K, A_MUNIS_GT10K, A_N_CITIES,
	A_URBAN_RATIO, A_AVG_SALARY, A_UNEMP_95, A_UNEMP_96, A_ENTREP_PER_1000,
	A_CRIMES_95, A_CRIMES_96,
	A_FREQUENCY, A_OPENED,
	A_CLIENT_ID, A_BIRTH, A_AGE, A_FEMALE,
	A_HAS_LOAN, A_LOAN_AMOUNT, A_LOAN_DURATION, A_LOAN_PAYMENTS,
	A_LOAN_STATUS, A_HAS_CARD, A_CARD_TYPE,
	A_N_TRANS, A_BALANCE, A_MIN_BALANCE,
	A_CREDIT_CASH, A_CREDIT_TRANSFER, A_CREDIT_INTEREST,
	A_DEBIT_CASH, A_DEBIT_TRANSFER, A_DEBIT_CARD,
	A_NCOLS
};
#define DECAY_MS ((int64_t)RUN_DECAY_DAYS * DAY_MS)

static const cohort_column_def account_cols[A_NCOLS] = {
	{ "district_id", COHORT_I32, 0, 0 },
	{ "district", COHORT_CAT, 0, 0 },          /* district.asc A2 */
	{ "region", COHORT_CAT, 0, 0 },            /* A3 */
	{ "inhabitants", COHORT_I32, 0, 0 },       /* A4 */
	{ "munis_lt500", COHORT_I32, 0, 0 },       /* A5: municipalities < 500 */
	{ "munis_500_2k", COHORT_I32, 0, 0 },      /* A6 */
	{ "munis_2k_10k", COHORT_I32, 0, 0 },      /* A7 */
	{ "munis_gt10k", COHORT_I32, 0, 0 },       /* A8 */
	{ "n_cities", COHORT_I32, 0, 0 },          /* A9 */
	{ "urban_ratio", COHORT_F64, 0, 0 },       /* A10: % urban inhabitants */
	{ "avg_salary", COHORT_I32, 0, 0 },        /* A11 */
	{ "unemp_95", COHORT_F64, 0, 0 },          /* A12: % unemployment 1995 */
	{ "unemp_96", COHORT_F64, 0, 0 },          /* A13 */
	{ "entrep_per_1000", COHORT_I32, 0, 0 },   /* A14 */
	{ "crimes_95", COHORT_I32, 0, 0 },         /* A15 */
	{ "crimes_96", COHORT_I32, 0, 0 },         /* A16 */
	{ "frequency", COHORT_CAT, 0, 0 },
	{ "opened", COHORT_I32, 0, 0 },            /* yyyymmdd */
	{ "client_id", COHORT_I32, 0, 0 },
	{ "birth", COHORT_I32, 0, 0 },             /* yyyymmdd */
	{ "age", COHORT_I32, 0, 0 },               /* at 1999-01-01 */
	{ "female", COHORT_BOOL, 0, 0 },
	{ "has_loan", COHORT_BOOL, 0, 0 },
	{ "loan_amount", COHORT_I64, 0, 0 },
	{ "loan_duration", COHORT_I32, 0, 0 },     /* months */
	{ "loan_payments", COHORT_F64, 0, 0 },     /* per month */
	{ "loan_status", COHORT_CAT, 0, 0 },       /* A..D */
	{ "has_card", COHORT_BOOL, 0, 0 },
	{ "card_type", COHORT_CAT, 0, 0 },
	{ "n_trans", COHORT_COUNTER, 0, 0 },
	{ "balance", COHORT_LAST, 0, 0 },
	{ "min_balance", COHORT_MIN, 0, 0 },
	{ "credit_cash", COHORT_DECAY, 0, DECAY_MS },      /* VKLAD */
	{ "credit_transfer", COHORT_DECAY, 0, DECAY_MS },  /* PREVOD Z UCTU */
	{ "credit_interest", COHORT_DECAY, 0, DECAY_MS },  /* credit, no op */
	{ "debit_cash", COHORT_DECAY, 0, DECAY_MS },       /* VYBER */
	{ "debit_transfer", COHORT_DECAY, 0, DECAY_MS },   /* PREVOD NA UCET */
	{ "debit_card", COHORT_DECAY, 0, DECAY_MS },       /* VYBER KARTOU */
};
#define A_STATIC_COLS A_N_TRANS  /* columns the put sets */

/* id -> value (int32, -1 when absent), growing with the largest id. */
typedef struct idmap {
	int32_t *v;
	size_t n;
} idmap;

static void idmap_set(idmap *m, infile *c, int64_t id, int32_t val)
{
	if ((size_t)id >= m->n) {
		size_t n = m->n ? m->n : 1024;
		while (n <= (size_t)id)
			n *= 2;
		int32_t *v = realloc(m->v, n * sizeof *v);
		if (!v)
			run_die("out of memory reading %s", c->path);
		for (size_t i = m->n; i < n; i++)
			v[i] = -1;
		m->v = v;
		m->n = n;
	}
	m->v[id] = val;
}

static int32_t idmap_get(const idmap *m, int64_t id)
{
	return id >= 0 && (size_t)id < m->n ? m->v[id] : -1;
}

typedef struct district {
	cohort_value v[15];        /* A2..A16 as account's columns 1..15 */
} district;

typedef struct client {
	int32_t birth, age;
	bool female;
} client;

typedef struct loan {
	int64_t amount;
	int32_t duration;
	double payments;
	char status[8];
} loan;

static const char *const card_tiers[] = { "junior", "classic", "gold" };

typedef struct berka {
	text_block *district_text; /* the districts' cat values */
	district *districts;
	idmap district_ix;
	client *clients;
	idmap client_ix;
	idmap owner;               /* account -> client id */
	idmap disp_account;        /* disp -> account id */
	idmap card_tier;           /* account -> best card tier index */
	loan *loans;
	idmap loan_ix;
	idmap account_ix;          /* account -> 1 when in account.asc */
} berka;

static void read_districts(berka *b, const char *dir)
{
	static const char *const names[] = { "A1", "A2", "A3", "A4", "A5", "A6",
		"A7", "A8", "A9", "A10", "A11", "A12", "A13", "A14", "A15",
		"A16" };
	infile in, *c = &in;
	in_open(c, dir, "district.asc");
	in_expect(c, names, 16);
	size_t n = 0, cap = 0;
	while (in_next(c)) {
		if (n == cap) {
			cap = cap ? cap * 2 : 128;
			b->districts = realloc(b->districts, cap * sizeof *b->districts);
			if (!b->districts)
				run_die("out of memory");
		}
		district *d = &b->districts[n];
		idmap_set(&b->district_ix, c, need_i64(c, 0, 0, MAX_ID),
			  (int32_t)n);
		for (size_t i = 1; i < 16; i++) {
			cohort_value *v = &d->v[i - 1];
			int64_t x;
			double y;
			switch (account_cols[i].type) {
			case COHORT_CAT:
				*v = text_cat(&b->district_text, c->f[i]);
				break;
			case COHORT_F64:
				*v = get_f64(c, i, &y) ? cohort_f64(y) : cohort_null();
				break;
			default:
				*v = get_i64(c, i, INT32_MIN, INT32_MAX, &x) ?
				     cohort_i32((int32_t)x) : cohort_null();
				break;
			}
		}
		n++;
	}
	in_close(c);
}

static void read_clients(berka *b, const char *dir)
{
	static const char *const names[] = { "client_id", "birth_number",
					     "district_id" };
	infile c;
	in_open(&c, dir, "client.asc");
	in_expect(&c, names, 3);
	size_t n = 0, cap = 0;
	while (in_next(&c)) {
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			b->clients = realloc(b->clients, cap * sizeof *b->clients);
			if (!b->clients)
				run_die("out of memory");
		}
		client *cl = &b->clients[n];
		idmap_set(&b->client_ix, &c, need_i64(&c, 0, 0, MAX_ID),
			  (int32_t)n);
		cl->birth = get_date(&c, 1, true, &cl->female);
		/* full years at 1999-01-01, the end of the original data */
		cl->age = 1999 - cl->birth / 10000 - (cl->birth % 10000 > 101);
		n++;
	}
	in_close(&c);
}

static void read_disps_cards_loans(berka *b, const char *dir)
{
	static const char *const disp_names[] = { "disp_id", "client_id",
						  "account_id", "type" };
	infile c;
	in_open(&c, dir, "disp.asc");
	in_expect(&c, disp_names, 4);
	while (in_next(&c)) {
		int64_t disp = need_i64(&c, 0, 0, MAX_ID);
		int64_t cl = need_i64(&c, 1, 0, MAX_ID);
		int64_t acc = need_i64(&c, 2, 0, MAX_ID);
		if (idmap_get(&b->client_ix, cl) < 0)
			run_die("%s line %ld: client %" PRId64 " is not in "
				"client.asc", c.path, c.line, cl);
		idmap_set(&b->disp_account, &c, disp, (int32_t)acc);
		if (strcmp(c.f[3], "OWNER") == 0)
			idmap_set(&b->owner, &c, acc, (int32_t)cl);
		else if (strcmp(c.f[3], "DISPONENT") != 0)
			run_die("%s line %ld: type '%s' is neither OWNER nor "
				"DISPONENT", c.path, c.line, c.f[3]);
	}
	in_close(&c);

	static const char *const card_names[] = { "card_id", "disp_id", "type",
						  "issued" };
	in_open(&c, dir, "card.asc");
	in_expect(&c, card_names, 4);
	while (in_next(&c)) {
		int64_t disp = need_i64(&c, 1, 0, MAX_ID);
		int32_t acc = idmap_get(&b->disp_account, disp);
		if (acc < 0)
			run_die("%s line %ld: disposition %" PRId64 " is not in "
				"disp.asc", c.path, c.line, disp);
		int tier = -1;
		for (int i = 0; i < 3; i++)
			if (strcmp(c.f[2], card_tiers[i]) == 0)
				tier = i;
		if (tier < 0)
			run_die("%s line %ld: card type '%s' is none of junior, "
				"classic, gold", c.path, c.line, c.f[2]);
		(void)get_date(&c, 3, false, NULL);
		if (tier > idmap_get(&b->card_tier, acc))
			idmap_set(&b->card_tier, &c, acc, tier);
	}
	in_close(&c);

	static const char *const loan_names[] = { "loan_id", "account_id",
		"date", "amount", "duration", "payments", "status" };
	in_open(&c, dir, "loan.asc");
	in_expect(&c, loan_names, 7);
	size_t n = 0, cap = 0;
	while (in_next(&c)) {
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			b->loans = realloc(b->loans, cap * sizeof *b->loans);
			if (!b->loans)
				run_die("out of memory");
		}
		loan *l = &b->loans[n];
		idmap_set(&b->loan_ix, &c, need_i64(&c, 1, 0, MAX_ID), (int32_t)n);
		(void)get_date(&c, 2, false, NULL);
		l->amount = need_i64(&c, 3, 0, INT64_MAX);
		l->duration = (int32_t)need_i64(&c, 4, 0, INT32_MAX);
		if (!get_f64(&c, 5, &l->payments))
			run_die("%s line %ld, column payments: empty", c.path,
				c.line);
		if (strlen(c.f[6]) != 1 || c.f[6][0] < 'A' || c.f[6][0] > 'D')
			run_die("%s line %ld: status '%s' is none of A, B, C, D",
				c.path, c.line, c.f[6]);
		snprintf(l->status, sizeof l->status, "%s", c.f[6]);
		n++;
	}
	in_close(&c);
}

static uint64_t put_accounts(cohort_client *c, berka *b, const char *dir)
{
	static const char *const names[] = { "account_id", "district_id",
					     "frequency", "date" };
	infile f;
	in_open(&f, dir, "account.asc");
	in_expect(&f, names, 4);
	create_table(c, RUN_ACCOUNT, account_cols, A_NCOLS);
	pipe *p = pipe_new(c, RUN_ACCOUNT, PROTO_OP_PUT, f.path);
	while (in_next(&f)) {
		int64_t acc = need_i64(&f, 0, 0, MAX_ID);
		int64_t did = need_i64(&f, 1, 0, MAX_ID);
		int32_t di = idmap_get(&b->district_ix, did);
		if (di < 0)
			run_die("%s line %ld: district %" PRId64 " is not in "
				"district.asc", f.path, f.line, did);
		int32_t opened = get_date(&f, 3, false, NULL);
		idmap_set(&b->account_ix, &f, acc, 1);
		char key[24];
		snprintf(key, sizeof key, "%" PRId64, acc);
		cohort_field *fl = pipe_row(p, key, date_time(opened), f.line,
					    A_STATIC_COLS);
		for (int i = 0; i < A_STATIC_COLS; i++) {
			fl[i].column = i;
			fl[i].value = cohort_null();
		}
		fl[A_DISTRICT_ID].value = cohort_i32((int32_t)did);
		for (int i = 1; i < 16; i++)
			fl[i].value = b->districts[di].v[i - 1];
		fl[A_FREQUENCY].value = text_cat(&p->text, f.f[2]);
		fl[A_OPENED].value = cohort_i32(opened);
		int32_t cl = idmap_get(&b->owner, acc);
		int32_t ci = cl >= 0 ? idmap_get(&b->client_ix, cl) : -1;
		if (ci >= 0) {
			const client *x = &b->clients[ci];
			fl[A_CLIENT_ID].value = cohort_i32(cl);
			fl[A_BIRTH].value = cohort_i32(x->birth);
			fl[A_AGE].value = cohort_i32(x->age);
			fl[A_FEMALE].value = bool_value(x->female);
		}
		int32_t li = idmap_get(&b->loan_ix, acc);
		fl[A_HAS_LOAN].value = bool_value(li >= 0);
		if (li >= 0) {
			const loan *l = &b->loans[li];
			fl[A_LOAN_AMOUNT].value = cohort_i64(l->amount);
			fl[A_LOAN_DURATION].value = cohort_i32(l->duration);
			fl[A_LOAN_PAYMENTS].value = cohort_f64(l->payments);
			fl[A_LOAN_STATUS].value = cohort_catn(l->status, 1);
		}
		int32_t tier = idmap_get(&b->card_tier, acc);
		fl[A_HAS_CARD].value = bool_value(tier >= 0);
		if (tier >= 0)
			fl[A_CARD_TYPE].value = cohort_cat(card_tiers[tier]);
	}
	uint64_t n = pipe_finish(p);
	in_close(&f);
	return n;
}

typedef struct trans {
	cohort_time time;
	uint64_t seq;              /* file order: the sort is stable */
	int32_t account;
	uint8_t column;            /* the decay column of its operation */
	long line;
	double amount, balance;
} trans;

static int trans_cmp(const void *a, const void *b)
{
	const trans *x = a, *y = b;
	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The decay column of a transaction's operation (type for the interest
 * credits, whose operation is empty). */
static int op_column(infile *c, const char *type, const char *op)
{
	bool credit = strcmp(type, "PRIJEM") == 0;
	if (!credit && strcmp(type, "VYDAJ") != 0 && strcmp(type, "VYBER") != 0)
		run_die("%s line %ld: type '%s' is none of PRIJEM, VYDAJ, VYBER",
			c->path, c->line, type);
	if (credit && strcmp(op, "VKLAD") == 0)
		return A_CREDIT_CASH;
	if (credit && strcmp(op, "PREVOD Z UCTU") == 0)
		return A_CREDIT_TRANSFER;
	if (credit && op[0] == 0)
		return A_CREDIT_INTEREST;
	if (!credit && strcmp(op, "VYBER") == 0)
		return A_DEBIT_CASH;
	if (!credit && strcmp(op, "PREVOD NA UCET") == 0)
		return A_DEBIT_TRANSFER;
	if (!credit && strcmp(op, "VYBER KARTOU") == 0)
		return A_DEBIT_CARD;
	run_die("%s line %ld: operation '%s' of a %s is not one this load "
		"knows (VKLAD, PREVOD Z UCTU, none for interest; VYBER, PREVOD "
		"NA UCET, VYBER KARTOU)", c->path, c->line, op,
		credit ? "credit" : "debit");
}

static uint64_t replay_trans(cohort_client *c, berka *b, const char *dir,
			     cohort_time *data_end)
{
	static const char *const names[] = { "trans_id", "account_id", "date",
		"type", "operation", "amount", "balance", "k_symbol", "bank",
		"account" };
	infile f;
	in_open(&f, dir, "trans.asc");
	in_expect(&f, names, 10);
	trans *t = NULL;
	size_t n = 0, cap = 0;
	while (in_next(&f)) {
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			t = realloc(t, cap * sizeof *t);
			if (!t)
				run_die("out of memory");
		}
		trans *x = &t[n];
		x->seq = n;
		x->line = f.line;
		int64_t acc = need_i64(&f, 1, 0, MAX_ID);
		if (idmap_get(&b->account_ix, acc) < 0)
			run_die("%s line %ld: account %" PRId64 " is not in "
				"account.asc", f.path, f.line, acc);
		x->account = (int32_t)acc;
		x->time = date_time(get_date(&f, 2, false, NULL));
		x->column = (uint8_t)op_column(&f, f.f[3], f.f[4]);
		if (!get_f64(&f, 5, &x->amount) || !get_f64(&f, 6, &x->balance))
			run_die("%s line %ld: amount or balance empty", f.path,
				f.line);
		n++;
	}
	in_close(&f);
	qsort(t, n, sizeof *t, trans_cmp);
	*data_end = n ? t[n - 1].time : 0;

	pipe *p = pipe_new(c, RUN_ACCOUNT, PROTO_OP_EVENT, "trans.asc");
	for (size_t i = 0; i < n; i++) {
		char key[24];
		snprintf(key, sizeof key, "%" PRId32, t[i].account);
		cohort_update *u = pipe_row(p, key, t[i].time, t[i].line, 4);
		u[0] = (cohort_update){ A_N_TRANS, COHORT_OP_ADD, cohort_f64(1) };
		u[1] = (cohort_update){ A_BALANCE, COHORT_OP_OBSERVE,
					cohort_f64(t[i].balance) };
		u[2] = (cohort_update){ A_MIN_BALANCE, COHORT_OP_OBSERVE,
					cohort_f64(t[i].balance) };
		u[3] = (cohort_update){ t[i].column, COHORT_OP_ADD,
					cohort_f64(t[i].amount) };
	}
	uint64_t applied = pipe_finish(p);
	free(t);
	return applied;
}

static void berka_free(berka *b)
{
	text_free(&b->district_text);
	free(b->districts);
	free(b->clients);
	free(b->loans);
	idmap *maps[] = { &b->district_ix, &b->client_ix, &b->owner,
			  &b->disp_account, &b->card_tier, &b->loan_ix,
			  &b->account_ix };
	for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++)
		free(maps[i]->v);
}

/* ------------------------------------------------------------------------
 * Personas, index, the run_info row
 * ------------------------------------------------------------------------ */
static void train(cohort_client *c, const char *table, const char *model,
		  const char *const *inputs, size_t ninputs, uint32_t k)
{
	int cols[COHORT_PERSONA_MAX_INPUTS];
	for (size_t i = 0; i < ninputs; i++) {
		cols[i] = cohort_client_column(c, table, inputs[i]);
		run_check(c, cols[i], inputs[i]);
	}
	cohort_persona_def def = { .columns = cols, .ncolumns = ninputs,
				   .mode = COHORT_PERSONA_AT_ONCE };
	cohort_train_opts opts = { .k = k, .seed = 1 };
	char what[160];
	snprintf(what, sizeof what, "train personas %s.%s", table, model);
	run_check(c, cohort_client_persona_train(c, table, model, &def, &opts,
						 NULL), what);
}

static const cohort_column_def info_cols[] = {
	{ "source", COHORT_CAT, 0, 0 },
	{ "loaded_at", COHORT_I64, 0, 0 },         /* ms since the epoch */
	{ "load_s", COHORT_F64, 0, 0 },
	{ "bank_rows", COHORT_I64, 0, 0 },
	{ "accounts", COHORT_I64, 0, 0 },
	{ "transactions", COHORT_I64, 0, 0 },
	{ "data_end", COHORT_I64, 0, 0 },          /* last transaction's time */
};

void run_load(cohort_client *c, const char *data_dir, run_loaded *out)
{
	memset(out, 0, sizeof *out);
	double t0 = run_seconds();

	out->bank_rows = load_bank(c, data_dir);
	double t1 = run_seconds();
	out->bank_s = t1 - t0;
	printf("  bank:    %" PRIu64 " customers from %s/bank-marketing/bank.csv "
	       "(%.2f s)\n", out->bank_rows, data_dir, out->bank_s);
	fflush(stdout);

	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/berka", data_dir);
	berka b;
	memset(&b, 0, sizeof b);
	read_districts(&b, dir);
	read_clients(&b, dir);
	read_disps_cards_loans(&b, dir);
	out->accounts = put_accounts(c, &b, dir);
	cohort_time data_end;
	out->transactions = replay_trans(c, &b, dir, &data_end);
	berka_free(&b);
	double t2 = run_seconds();
	out->berka_s = t2 - t1;
	printf("  account: %" PRIu64 " Berka accounts (owner, district, loan, "
	       "card) and %" PRIu64 " transactions replayed in date order as "
	       "events (%.2f s)\n", out->accounts, out->transactions,
	       out->berka_s);
	fflush(stdout);

	static const char *const bank_inputs[] = { "age", "balance", "duration",
		"campaign", "pdays", "previous" };
	train(c, RUN_BANK, RUN_BANK_MODEL, bank_inputs, 6, 8);
	static const char *const account_inputs[] = { "age", "female",
		"avg_salary", "unemp_96", "has_loan", "has_card", "n_trans",
		"balance", "debit_cash", "credit_transfer" };
	train(c, RUN_ACCOUNT, RUN_ACCOUNT_MODEL, account_inputs, 10, 6);
	double t3 = run_seconds();
	out->train_s = t3 - t2;

	int col = cohort_client_column(c, RUN_BANK, "profile");
	run_check(c, col, "profile");
	/* 8 dimensions need no wide beam: ef_construction 100, not 200 */
	cohort_index_opts io = { .metric = COHORT_METRIC_L2, .M = 16,
				 .ef_construction = 100 };
	run_check(c, cohort_client_index_create(c, RUN_BANK, RUN_INDEX, col,
						&io), "create index");
	double t4 = run_seconds();
	out->index_s = t4 - t3;
	printf("  personas trained (%.2f s); similarity index %s on "
	       "bank.profile built (%.2f s)\n", out->train_s, RUN_INDEX,
	       out->index_s);
	fflush(stdout);

	out->total_s = run_seconds() - t0;
	create_table(c, RUN_INFO, info_cols,
		     sizeof info_cols / sizeof info_cols[0]);
	cohort_field f[7];
	for (int i = 0; i < 7; i++)
		f[i].column = i;
	f[0].value = cohort_catn(data_dir, (uint32_t)strlen(data_dir));
	f[1].value = cohort_i64(cohort_now());
	f[2].value = cohort_f64(out->total_s);
	f[3].value = cohort_i64((int64_t)out->bank_rows);
	f[4].value = cohort_i64((int64_t)out->accounts);
	f[5].value = cohort_i64((int64_t)out->transactions);
	f[6].value = cohort_i64(data_end);
	run_check(c, cohort_client_put(c, RUN_INFO, "load", 4, COHORT_NOW, f, 7),
		  "put run_info");
	run_check(c, cohort_client_snapshot(c), "snapshot");
}
