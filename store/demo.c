/*
 * demo.c -- cohort-demo, the program behind `make run`.
 *
 * Loads the Bank Marketing customers (a semicolon-separated file with a
 * header) into an in-memory table `bank`, one row per customer keyed
 * "c<row number>", then shows what the store holds: the load rate, the
 * table's memory, three customers read back, and two segment counts
 * computed with filters. It is a program's top level: on any error it prints
 * what failed and why, and exits 1.
 */
#include "cohort.h"
#include "csv_int.h"

#include <errno.h>
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

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s BANK_CSV\n  e.g. %s "
			"../shared/data/bank-marketing/bank.csv\n", prog, prog);
		return 1;
	}
	const char *path = argv[1];

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
	check(cohort_close(db), "close");
	return 0;
}
