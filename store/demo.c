/*
 * demo.c -- cohort-demo, the program behind `make run`.
 *
 * Loads the Bank Marketing customers (a semicolon-separated file with a
 * header) into an in-memory table `bank`, one row per customer keyed
 * "c<row number>", then shows what the store holds: the load rate, the
 * table's memory, three customers read back, and two segment counts
 * computed with filters. Then personas: a model `segments` (k = 8, fixed
 * seed) over the six numeric columns, one line per persona (size, centroid
 * in column units, share of y = yes among its members) and one customer
 * assigned with its three nearest personas and the features that explain
 * it.
 *
 * Last, if the Berka files are found (BERKA_DIR, by default ../berka next
 * to the bank file's folder), the Czech bank's transactions are replayed as
 * events into a table `account` of per-account aggregates, and a model
 * `profiles` (k = 6) is trained and printed the same way; without them that
 * part is skipped with a note saying which file is missing.
 *
 * It is a program's top level: on any error it prints what failed and why,
 * and exits 1.
 */
#include "cohort.h"
#include "csv_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The file's columns in order, with the type each is stored as. */
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
};
#define NCOLS (sizeof bank_cols / sizeof bank_cols[0])

static const char *prog = "cohort-demo";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2),
						     noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Exit with the library's code and detail if rc is an error. */
static void check(int rc, const char *what)
{
	if (rc < 0)
		die("%s: %s (%s)", what, cohort_strerror(rc), cohort_errdetail());
}

static double seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A bool value with every byte set: cohort_bool() leaves the upper half of
 * the union unset, which GCC 12 at -O2 reports (-Wmaybe-uninitialized) once
 * the value is copied into a cohort_field. */
static cohort_value bool_value(bool b)
{
	cohort_value v;
	memset(&v, 0, sizeof v);
	v.type = COHORT_BOOL;
	v.v.b = b;
	return v;
}

/* Field i of the current record as the value its column's type wants. */
static cohort_value field_value(csv_reader *r, size_t i)
{
	const csv_field *f = &r->fields[i];
	int64_t n;
	switch (bank_cols[i].type) {
	case COHORT_I32:
		if (csv_get_i64(r, i, INT32_MIN, INT32_MAX, &n) < 0)
			die("%s", r->err);
		return cohort_i32((int32_t)n);
	case COHORT_I64:
		if (csv_get_i64(r, i, INT64_MIN, INT64_MAX, &n) < 0)
			die("%s", r->err);
		return cohort_i64(n);
	case COHORT_BOOL:
		if (f->len == 3 && memcmp(f->ptr, "yes", 3) == 0)
			return bool_value(true);
		if (f->len == 2 && memcmp(f->ptr, "no", 2) == 0)
			return bool_value(false);
		die("line %llu, column '%s': '%s' is neither yes nor no",
		    (unsigned long long)r->line, bank_cols[i].name, f->ptr);
	case COHORT_CAT:
		if (f->len > COHORT_MAX_CAT)
			die("line %llu, column '%s': longer than %d bytes",
			    (unsigned long long)r->line, bank_cols[i].name,
			    COHORT_MAX_CAT);
		return cohort_catn(f->ptr, (uint32_t)f->len);
	default:
		die("column '%s': no conversion for type %s", bank_cols[i].name,
		    cohort_type_name(bank_cols[i].type));
	}
}

/* Load every record of the file; returns the number of rows. */
static uint64_t load(cohort_table *t, const char *path)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		die("cannot open '%s': %s (the Bank Marketing data is expected "
		    "in ../shared/data/bank-marketing/)", path, strerror(errno));
	csv_reader r;
	if (csv_open_file(&r, fp, ';') < 0)
		die("%s: %s", path, r.err);
	if (r.nheader != NCOLS)
		die("%s: %zu columns in the header, expected %zu", path,
		    r.nheader, NCOLS);
	for (size_t i = 0; i < NCOLS; i++)
		if (strcmp(r.header[i].ptr, bank_cols[i].name) != 0)
			die("%s: column %zu is '%s', expected '%s'", path, i + 1,
			    r.header[i].ptr, bank_cols[i].name);

	cohort_field fields[NCOLS];
	uint64_t nrows = 0;
	int rc;
	while ((rc = csv_next(&r)) == 1) {
		for (size_t i = 0; i < NCOLS; i++) {
			fields[i].column = (int)i;
			fields[i].value = field_value(&r, i);
		}
		char key[32];
		int key_len = snprintf(key, sizeof key, "c%llu",
				       (unsigned long long)(nrows + 1));
		rc = cohort_put(t, key, (size_t)key_len, COHORT_NOW, fields,
				NCOLS);
		if (rc < 0)
			die("%s line %llu: put %s: %s (%s)", path,
			    (unsigned long long)r.line, key,
			    cohort_strerror(rc), cohort_errdetail());
		nrows++;
	}
	if (rc < 0)
		die("%s: %s", path, r.err);
	csv_close(&r);
	fclose(fp);
	return nrows;
}

static void print_value(const cohort_value *v)
{
	switch (v->type) {
	case COHORT_NULL: printf("null"); break;
	case COHORT_F32: printf("%g", (double)v->v.f32); break;
	case COHORT_F64: printf("%g", v->v.f64); break;
	case COHORT_I32: printf("%d", (int)v->v.i32); break;
	case COHORT_I64: printf("%lld", (long long)v->v.i64); break;
	case COHORT_BOOL: printf("%s", v->v.b ? "yes" : "no"); break;
	case COHORT_CAT: printf("%.*s", (int)v->v.str.len, v->v.str.ptr); break;
	default: printf("<%s>", cohort_type_name(v->type)); break;
	}
}

static void show_customer(cohort_table *t, const char *key)
{
	int cols[NCOLS];
	cohort_value vals[NCOLS];
	for (size_t i = 0; i < NCOLS; i++)
		cols[i] = (int)i;
	int st = cohort_get(t, key, strlen(key), cols, NCOLS, COHORT_NOW, vals,
			    NULL, 0, NULL);
	check(st, "get");
	printf("  %-7s", key);
	if (st != COHORT_ROW_PRESENT) {
		printf(" %s\n", st == COHORT_ROW_MISSING ? "missing" : "expired");
		return;
	}
	for (size_t i = 0; i < NCOLS; i++) {
		printf("%s%s=", i % 9 == 0 && i ? "\n         " : " ",
		       bank_cols[i].name);
		print_value(&vals[i]);
	}
	printf("\n");
}

static int col(cohort_table *t, const char *name)
{
	int c = cohort_table_column(t, name);
	check(c, name);
	return c;
}

static void show_counts(cohort_table *t, uint64_t nrows)
{
	cohort_filter *f;
	check(cohort_filter_new(t, &f), "filter");

	/* Well-off customers who subscribed the term deposit. */
	int rich_yes = cohort_filter_and(f,
		cohort_filter_cmp(f, col(t, "balance"), COHORT_GT,
				  cohort_i64(1000)),
		cohort_filter_cmp(f, col(t, "y"), COHORT_EQ, cohort_bool(true)));
	check(rich_yes, "filter balance > 1000 and y = yes");

	/* Young professionals. */
	cohort_value jobs[] = { cohort_cat("management"),
				cohort_cat("technician") };
	int young_pro = cohort_filter_and(f,
		cohort_filter_in(f, col(t, "job"), jobs, 2),
		cohort_filter_cmp(f, col(t, "age"), COHORT_LT, cohort_i32(30)));
	check(young_pro, "filter job in {management, technician} and age < 30");

	uint64_t n1, n2;
	double t0 = seconds();
	check(cohort_filter_count(f, rich_yes, COHORT_NOW, &n1), "count");
	double t1 = seconds();
	check(cohort_filter_count(f, young_pro, COHORT_NOW, &n2), "count");
	double t2 = seconds();
	printf("segments (filters over all %llu rows):\n",
	       (unsigned long long)nrows);
	printf("  balance > 1000 and y = yes:                    %6llu "
	       "(%.1f%%, %.2f ms)\n", (unsigned long long)n1,
	       100.0 * (double)n1 / (double)nrows, (t1 - t0) * 1e3);
	printf("  job in {management, technician} and age < 30:  %6llu "
	       "(%.1f%%, %.2f ms)\n", (unsigned long long)n2,
	       100.0 * (double)n2 / (double)nrows, (t2 - t1) * 1e3);
	cohort_filter_free(f);
}

/* ------------------------------------------------------------------------
 * Personas
 * ------------------------------------------------------------------------ */
#define SEED 1

/* The width of an input's column in the persona table: its name's, at
 * least 8. */
static int coord_width(const char *name)
{
	size_t n = strlen(name);
	return n > 8 ? (int)n : 8;
}

/* A centroid coordinate with as many decimals as its magnitude deserves. */
static void print_coord(int width, double v)
{
	double a = fabs(v);
	printf(" %*.*f", width, a >= 100 ? 0 : a >= 10 ? 1 : 2, v);
}

static int count_cb(const void *key, size_t key_len, void *ctx)
{
	(void)key;
	(void)key_len;
	(void)ctx;
	return 0;
}

/*
 * Train model `model` of table t over the named numeric columns with k
 * personas, and print one line per persona: id, size, share of the rows,
 * centroid in column units and, when f is given, the share of members that
 * match filter root (label says what it counts).
 */
static void show_personas(cohort_table *t, const char *model,
			  const char *const *inputs, size_t ninputs, uint32_t k,
			  uint64_t nrows, const cohort_filter *f, int root,
			  const char *label)
{
	int cols[COHORT_PERSONA_MAX_INPUTS];
	for (size_t j = 0; j < ninputs; j++)
		cols[j] = col(t, inputs[j]);
	cohort_persona_def def = { .columns = cols, .ncolumns = ninputs,
				   .mode = COHORT_PERSONA_AT_ONCE };
	cohort_train_opts opts = { .k = k, .seed = SEED };
	double t0 = seconds();
	check(cohort_persona_train(t, model, &def, &opts), "train personas");
	double dt = seconds() - t0;
	cohort_persona_info info;
	check(cohort_persona_describe(t, model, &info), "describe personas");
	printf("personas '%s': k = %u, seed %d, over", model, info.k, SEED);
	for (size_t j = 0; j < ninputs; j++)
		printf("%s %s", j ? "," : "", inputs[j]);
	printf(" (standardised); trained and every row assigned in %.1f ms\n",
	       dt * 1e3);

	printf("  %2s %6s %6s", "id", "size", "share");
	for (size_t j = 0; j < ninputs; j++)
		printf(" %*s", coord_width(inputs[j]), inputs[j]);
	if (f)
		printf(" %8s", label);
	printf("\n");
	uint64_t total = 0, nmatch = 0;
	for (uint32_t p = 0; p < info.k; p++) {
		double c[COHORT_PERSONA_MAX_INPUTS];
		uint64_t size;
		check(cohort_persona_centroid(t, model, p, NULL, c, &size, NULL),
		      "persona centroid");
		printf("  %2u %6llu %5.1f%%", p, (unsigned long long)size,
		       100.0 * (double)size / (double)nrows);
		for (size_t j = 0; j < ninputs; j++)
			print_coord(coord_width(inputs[j]), c[j]);
		if (f) {
			uint64_t n;
			check(cohort_persona_members(t, model, p, f, root,
						     COHORT_NOW, count_cb, NULL,
						     &n), "persona members");
			printf(" %7.1f%%", size ? 100.0 * (double)n /
			       (double)size : 0.0);
			nmatch += n;
		}
		printf("\n");
		total += size;
	}
	printf("  %2s %6llu %5.1f%%", "all", (unsigned long long)total,
	       100.0 * (double)total / (double)nrows);
	if (f) {
		for (size_t j = 0; j < ninputs; j++)
			printf(" %*s", coord_width(inputs[j]), "");
		printf(" %7.1f%%", total ? 100.0 * (double)nmatch /
		       (double)total : 0.0);
	}
	printf("\n");
}

static const char *column_name(cohort_table *t, int column)
{
	cohort_column_info ci;
	check(cohort_column_describe(t, column, &ci), "describe column");
	return ci.name;
}

/* Assign one row with its m = 3 nearest personas and explain it. */
static void show_assign(cohort_table *t, const char *model, const char *key)
{
	cohort_persona_result r;
	int st = cohort_persona_assign(t, model, key, strlen(key), 3, &r);
	check(st, "assign");
	if (st != COHORT_ROW_PRESENT || r.persona == COHORT_PERSONA_NONE) {
		printf("  %s: no persona (%s)\n", key,
		       st != COHORT_ROW_PRESENT ? "no such row" : "no inputs");
		return;
	}
	printf("  %s: persona %u, distance %.3f, anomaly %.2f (distance over "
	       "the persona's typical %.3f)\n", key, r.persona,
	       (double)r.distance, (double)r.anomaly,
	       r.anomaly > 0 ? (double)(r.distance / r.anomaly) : 0.0);
	printf("    nearest:");
	for (size_t i = 0; i < r.m; i++)
		printf("%s %u (%.3f)", i ? "," : "", r.nearest[i],
		       (double)r.distances[i]);
	printf("\n");
	if (r.m > 1)
		printf("    why not persona %u (margin %.3f in squared "
		       "standardised distance):\n", r.nearest[1],
		       (double)r.distances[1] * r.distances[1] -
		       (double)r.distance * r.distance);
	for (size_t i = 0; i < r.nexplain && i < 3; i++) {
		const cohort_persona_feature *x = &r.explain[i];
		printf("      %-10s %10.2f  centroid %10.2f  contribution "
		       "%+.3f\n", column_name(t, x->column), x->value,
		       x->centroid, x->contribution);
	}
}

/* ------------------------------------------------------------------------
 * Berka: transactions replayed as events into per-account aggregates
 * ------------------------------------------------------------------------ */
#define DAY_MS 86400000LL

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian, Howard Hinnant's
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

/* Field col of the current record, a YYMMDD date of the 1900s, as
 * cohort_time at midnight UTC. */
static cohort_time field_date(csv_reader *r, size_t col)
{
	int64_t v;
	if (csv_get_i64(r, col, 0, 991231, &v) < 0)
		die("%s", r->err);
	int64_t m = v / 100 % 100, d = v % 100;
	if (m < 1 || m > 12 || d < 1 || d > 31)
		die("line %llu: '%06lld' is not a YYMMDD date",
		    (unsigned long long)r->line, (long long)v);
	return days_from_civil(1900 + v / 10000, m, d) * DAY_MS;
}

static int field_column(csv_reader *r, const char *path, const char *name)
{
	int c = csv_column(r, name);
	if (c < 0)
		die("%s: no column '%s'", path, name);
	return c;
}

static const cohort_column_def account_cols[] = {
	{ "n_trans", COHORT_COUNTER, 0, 0 },
	{ "mean_amount", COHORT_F64, 0, 0 },
	{ "credit_sum", COHORT_COUNTER, 0, 0 },
	{ "debit_sum", COHORT_COUNTER, 0, 0 },
	{ "balance", COHORT_LAST, 0, 0 },
	{ "age_days", COHORT_F64, 0, 0 },
};
#define ACCOUNT_NCOLS (sizeof account_cols / sizeof account_cols[0])
enum { AC_NTRANS, AC_MEAN, AC_CREDIT, AC_DEBIT, AC_BALANCE, AC_AGE };

/* Per account id, what the replay needs to know. */
typedef struct account_acc {
	cohort_time opened;       /* 0: not in account.asc */
	double n, sum;
} account_acc;

static FILE *open_berka(const char *dir, const char *file, char *path,
			size_t path_len)
{
	snprintf(path, path_len, "%s/%s", dir, file);
	FILE *fp = fopen(path, "rb");
	if (!fp)
		printf("berka: skipped: cannot open '%s': %s\n", path,
		       strerror(errno));
	return fp;
}

/* Opening dates of account.asc into *accs (by account id, *naccs ids). */
static bool read_accounts(const char *dir, account_acc **accs,
			  size_t *naccs)
{
	char path[4096];
	FILE *fp = open_berka(dir, "account.asc", path, sizeof path);
	if (!fp)
		return false;
	csv_reader r;
	if (csv_open_file(&r, fp, ';') < 0)
		die("%s: %s", path, r.err);
	size_t c_id = (size_t)field_column(&r, path, "account_id");
	size_t c_date = (size_t)field_column(&r, path, "date");
	account_acc *a = NULL;
	size_t n = 0;
	int rc;
	while ((rc = csv_next(&r)) == 1) {
		int64_t id;
		if (csv_get_i64(&r, c_id, 1, 1 << 30, &id) < 0)
			die("%s", r.err);
		if ((size_t)id >= n) {
			size_t n2 = (size_t)id * 2;
			account_acc *a2 = realloc(a, n2 * sizeof *a2);
			if (!a2)
				die("out of memory");
			memset(a2 + n, 0, (n2 - n) * sizeof *a2);
			a = a2;
			n = n2;
		}
		a[id].opened = field_date(&r, c_date);
	}
	if (rc < 0)
		die("%s: %s", path, r.err);
	csv_close(&r);
	fclose(fp);
	*accs = a;
	*naccs = n;
	return true;
}

/*
 * Replay trans.asc as events, one per transaction, into table `account`
 * (one row per account, keyed by its id): a counter of transactions,
 * credit and debit sums (0 until the first one), the last balance, the mean amount (set) and the
 * account's age in days at 1994-04-01, the day after the last transaction.
 * Returns the number of transactions.
 */
static uint64_t replay_berka(cohort_table *t, const char *dir,
			     account_acc *accs, size_t naccs)
{
	char path[4096];
	FILE *fp = open_berka(dir, "trans.asc", path, sizeof path);
	if (!fp)
		return 0;
	csv_reader r;
	if (csv_open_file(&r, fp, ';') < 0)
		die("%s: %s", path, r.err);
	size_t c_acct = (size_t)field_column(&r, path, "account_id");
	size_t c_date = (size_t)field_column(&r, path, "date");
	size_t c_type = (size_t)field_column(&r, path, "type");
	size_t c_amount = (size_t)field_column(&r, path, "amount");
	size_t c_balance = (size_t)field_column(&r, path, "balance");
	const cohort_time end = days_from_civil(1994, 4, 1) * DAY_MS;
	uint64_t n = 0;
	int rc;
	while ((rc = csv_next(&r)) == 1) {
		int64_t id;
		double amount, balance;
		if (csv_get_i64(&r, c_acct, 1, INT64_MAX, &id) < 0 ||
		    csv_get_f64(&r, c_amount, &amount) < 0 ||
		    csv_get_f64(&r, c_balance, &balance) < 0)
			die("%s", r.err);
		if ((size_t)id >= naccs || !accs[id].opened)
			die("%s line %llu: account %lld is not in account.asc",
			    path, (unsigned long long)r.line, (long long)id);
		cohort_time time = field_date(&r, c_date);
		/* PRIJEM is a credit; VYDAJ, and the cash withdrawals typed
		 * VYBER, are debits. */
		const char *type = r.fields[c_type].ptr;
		bool credit = strcmp(type, "PRIJEM") == 0;
		if (!credit && strcmp(type, "VYDAJ") != 0 &&
		    strcmp(type, "VYBER") != 0)
			die("%s line %llu: type '%s'", path,
			    (unsigned long long)r.line, type);
		account_acc *a = &accs[id];
		a->n += 1;
		a->sum += amount;
		/* Both sums every time: an account with no debit yet has a
		 * debit sum of 0, not an unknown one (a null input would count
		 * as the mean of all accounts). */
		cohort_update up[] = {
			{ AC_NTRANS, COHORT_OP_OBSERVE, cohort_f64(1) },
			{ AC_CREDIT, COHORT_OP_ADD,
			  cohort_f64(credit ? amount : 0) },
			{ AC_DEBIT, COHORT_OP_ADD,
			  cohort_f64(credit ? 0 : amount) },
			{ AC_BALANCE, COHORT_OP_OBSERVE, cohort_f64(balance) },
			{ AC_MEAN, COHORT_OP_SET, cohort_f64(a->sum / a->n) },
			{ AC_AGE, COHORT_OP_SET,
			  cohort_f64((double)((end - a->opened) / DAY_MS)) },
		};
		char key[24];
		int key_len = snprintf(key, sizeof key, "%lld", (long long)id);
		rc = cohort_event(t, key, (size_t)key_len, time, up,
				  sizeof up / sizeof up[0]);
		if (rc < 0)
			die("%s line %llu: event for account %s: %s (%s)", path,
			    (unsigned long long)r.line, key,
			    cohort_strerror(rc), cohort_errdetail());
		n++;
	}
	if (rc < 0)
		die("%s: %s", path, r.err);
	csv_close(&r);
	fclose(fp);
	return n;
}

static void show_berka(cohort_db *db, const char *dir)
{
	account_acc *accs;
	size_t naccs;
	if (!read_accounts(dir, &accs, &naccs))
		return;
	cohort_table *t;
	check(cohort_table_create(db, "account", account_cols, ACCOUNT_NCOLS,
				  NULL, &t), "create table account");
	double t0 = seconds();
	uint64_t ntrans = replay_berka(t, dir, accs, naccs);
	double dt = seconds() - t0;
	free(accs);
	if (!ntrans)
		return;
	cohort_table_info info;
	check(cohort_table_describe(t, &info), "describe");
	printf("berka: replayed %llu transactions of %s as events into table "
	       "'account' (%llu accounts) in %.1f ms\n",
	       (unsigned long long)ntrans, dir, (unsigned long long)info.nrows,
	       dt * 1e3);
	const char *inputs[ACCOUNT_NCOLS];
	for (size_t j = 0; j < ACCOUNT_NCOLS; j++)
		inputs[j] = account_cols[j].name;
	show_personas(t, "profiles", inputs, ACCOUNT_NCOLS, 6, info.nrows,
		      NULL, 0, NULL);
}

/* BERKA_DIR by default: ../berka from the bank file's folder. */
static void berka_dir_of(const char *bank_path, char *dir, size_t dir_len)
{
	const char *slash = strrchr(bank_path, '/');
	if (slash)
		snprintf(dir, dir_len, "%.*s/../berka",
			 (int)(slash - bank_path), bank_path);
	else
		snprintf(dir, dir_len, "../berka");
}

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: %s BANK_CSV [BERKA_DIR]\n  e.g. %s "
			"../shared/data/bank-marketing/bank.csv\n", prog, prog);
		return 1;
	}
	const char *path = argv[1];
	char berka_dir[4096];
	if (argc == 3)
		snprintf(berka_dir, sizeof berka_dir, "%s", argv[2]);
	else
		berka_dir_of(path, berka_dir, sizeof berka_dir);

	cohort_db *db;
	check(cohort_open(NULL, NULL, &db), "open");
	cohort_table *t;
	check(cohort_table_create(db, "bank", bank_cols, NCOLS, NULL, &t),
	      "create table bank");

	double t0 = seconds();
	uint64_t nrows = load(t, path);
	double dt = seconds() - t0;
	printf("cohort demo: %s\n", path);
	printf("loaded %llu customers into table 'bank' in %.1f ms "
	       "(%.2f M rows/s, CSV parsing included)\n",
	       (unsigned long long)nrows, dt * 1e3,
	       dt > 0 ? (double)nrows / dt / 1e6 : 0.0);

	cohort_table_info info;
	check(cohort_table_describe(t, &info), "describe");
	printf("table '%s': %zu columns, %llu rows, %.2f MiB (%.0f bytes/row)\n",
	       info.name, info.ncolumns, (unsigned long long)info.nrows,
	       (double)info.mem_bytes / (1 << 20),
	       info.nrows ? (double)info.mem_bytes / (double)info.nrows : 0.0);
	printf("  distinct values:");
	for (size_t i = 0; i < NCOLS; i++) {
		if (bank_cols[i].type != COHORT_CAT)
			continue;
		cohort_column_info ci;
		check(cohort_column_describe(t, (int)i, &ci), "describe column");
		printf(" %s %u", ci.name, ci.ncat);
	}
	printf("\n");

	printf("customers read back:\n");
	char last[32];
	snprintf(last, sizeof last, "c%llu", (unsigned long long)nrows);
	show_customer(t, "c1");
	show_customer(t, "c2");
	show_customer(t, last);

	show_counts(t, nrows);

	static const char *const segment_inputs[] = {
		"age", "balance", "duration", "campaign", "pdays", "previous"
	};
	cohort_filter *f;
	check(cohort_filter_new(t, &f), "filter");
	int yes = cohort_filter_cmp(f, col(t, "y"), COHORT_EQ,
				    bool_value(true));
	check(yes, "filter y = yes");
	show_personas(t, "segments", segment_inputs,
		      sizeof segment_inputs / sizeof segment_inputs[0], 8, nrows,
		      f, yes, "y = yes");
	cohort_filter_free(f);
	show_assign(t, "segments", "c1");

	show_berka(db, berka_dir);
	check(cohort_close(db), "close");
	return 0;
}
