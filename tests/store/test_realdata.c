/*
 * test_realdata.c -- the store on real bank data, read in place from
 * ../shared/data (the repository root is the working directory).
 *
 * bank: the 21,218 Bank Marketing customers are put into a table; every row
 * is read back and compared with the file, and filter counts (and keys) are
 * compared with counts computed here from the parsed file.
 *
 * berka: the 49,102 Berka transactions (1993-01-01 .. 1994-03-31) are
 * replayed as events into a per-account table: last balance, credit and
 * debit sums and counts, and a 30-day decayed amount per operation. A sample
 * of accounts is compared with a recomputation of its own, in long double,
 * the decay computed directly as sum x_i * 2^(-(T - t_i) / h) at
 * T = 1994-04-01. The replay is also done in a shuffled order, which must
 * give the same sums and decays.
 *
 * A missing data file skips the test and says which file.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cohort.h"
#include "csv.h"

#define BANK_CSV "../shared/data/bank-marketing/bank.csv"
#define TRANS_ASC "../shared/data/berka/trans.asc"

static FILE *open_data(const char *path)
{
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		int err = errno;
		char cwd[512];
		if (!getcwd(cwd, sizeof cwd))
			strcpy(cwd, ".");
		cr_skip_test("real data file %s not readable from %s (%s): it "
			     "must be in ../shared/data relative to the "
			     "repository root", path, cwd, strerror(err));
	}
	return fp;
}

/* A bool value with every byte set: cohort_bool() sets only half of the
 * union, which GCC 12 -O2 reports as maybe-uninitialized once copied. */
static cohort_value val_bool(bool b)
{
	cohort_value v;
	memset(&v, 0, sizeof v);
	v.type = COHORT_BOOL;
	v.v.b = b;
	return v;
}

/* ======================================================================
 * Bank Marketing
 * ====================================================================== */

#define BANK_ROWS 21218
#define BANK_NCOLS 17

enum { B_AGE, B_JOB, B_MARITAL, B_EDUCATION, B_DEFAULT, B_BALANCE,
       B_HOUSING, B_LOAN, B_CONTACT, B_DAY, B_MONTH, B_DURATION, B_CAMPAIGN,
       B_PDAYS, B_PREVIOUS, B_POUTCOME, B_Y };

static const cohort_column_def bank_cols[BANK_NCOLS] = {
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

/* The parsed file: row i's fields are NUL-terminated strings at
 * text + off[i][c], and its numbers and flags are in num[i][c]. */
typedef struct bank {
	size_t nrows;
	char *text;
	size_t text_len, text_cap;
	size_t (*off)[BANK_NCOLS];
	int64_t (*num)[BANK_NCOLS];
} bank;

static cohort_db *db;
static cohort_table *tbl;
static bank data;

static const char *bank_str(const bank *b, size_t row, int c)
{
	return b->text + b->off[row][c];
}

static void key_of(size_t row, char *key, size_t *key_len)
{
	*key_len = (size_t)snprintf(key, 32, "c%zu", row + 1);
}

/* Parse the file into data (the test's own copy) and put every row. */
static void bank_load(void)
{
	FILE *fp = open_data(BANK_CSV);
	csv_reader r;
	cr_assert_eq(csv_open_file(&r, fp, ';'), 0, "%s", r.err);
	cr_assert_eq(r.nheader, BANK_NCOLS);
	for (int c = 0; c < BANK_NCOLS; c++)
		cr_assert_str_eq(r.header[c].ptr, bank_cols[c].name);

	data.off = calloc(BANK_ROWS + 1, sizeof *data.off);
	data.num = calloc(BANK_ROWS + 1, sizeof *data.num);
	data.text_cap = 4u << 20;
	data.text = malloc(data.text_cap);
	cr_assert(data.off && data.num && data.text);

	cr_assert_eq(cohort_open(NULL, NULL, &db), 0);
	cr_assert_eq(cohort_table_create(db, "bank", bank_cols, BANK_NCOLS,
					 NULL, &tbl), 0, "%s",
		     cohort_errdetail());

	int rc;
	cohort_field fields[BANK_NCOLS];
	while ((rc = csv_next(&r)) == 1) {
		size_t i = data.nrows;
		cr_assert_lt(i, BANK_ROWS + 1, "more rows than expected");
		for (int c = 0; c < BANK_NCOLS; c++) {
			const csv_field *f = &r.fields[c];
			cr_assert_lt(data.text_len + f->len + 1, data.text_cap);
			data.off[i][c] = data.text_len;
			memcpy(data.text + data.text_len, f->ptr, f->len + 1);
			data.text_len += f->len + 1;

			int64_t n = 0;
			cohort_value v;
			fields[c].column = c;
			switch (bank_cols[c].type) {
			case COHORT_I32:
				cr_assert_eq(csv_get_i64(&r, (size_t)c,
							 INT32_MIN, INT32_MAX,
							 &n), 0, "%s", r.err);
				v = cohort_i32((int32_t)n);
				break;
			case COHORT_I64:
				cr_assert_eq(csv_get_i64(&r, (size_t)c,
							 INT64_MIN, INT64_MAX,
							 &n), 0, "%s", r.err);
				v = cohort_i64(n);
				break;
			case COHORT_BOOL:
				cr_assert(strcmp(f->ptr, "yes") == 0 ||
					  strcmp(f->ptr, "no") == 0,
					  "line %llu: '%s'",
					  (unsigned long long)r.line, f->ptr);
				n = strcmp(f->ptr, "yes") == 0;
				v = val_bool(n != 0);
				break;
			default:
				v = cohort_catn(f->ptr, (uint32_t)f->len);
				break;
			}
			data.num[i][c] = n;
			fields[c].value = v;
		}
		char key[32];
		size_t key_len;
		key_of(i, key, &key_len);
		rc = cohort_put(tbl, key, key_len, 1000, fields, BANK_NCOLS);
		cr_assert_eq(rc, 0, "put %s (line %llu): %s (%s)", key,
			     (unsigned long long)r.line, cohort_strerror(rc),
			     cohort_errdetail());
		data.nrows++;
	}
	cr_assert_eq(rc, 0, "%s", r.err);
	csv_close(&r);
	fclose(fp);
}

static void bank_setup(void)
{
	bank_load();
}

static void bank_teardown(void)
{
	cohort_close(db);
	db = NULL;
	tbl = NULL;
	free(data.text);
	free(data.off);
	free(data.num);
	memset(&data, 0, sizeof data);
}

Test(realdata, bank_loads_every_row,
     .init = bank_setup, .fini = bank_teardown, .timeout = 30)
{
	cr_assert_eq(data.nrows, BANK_ROWS, "rows in the file");
	cohort_table_info info;
	cr_assert_eq(cohort_table_describe(tbl, &info), 0);
	cr_assert_eq(info.nrows, BANK_ROWS);
	cr_assert_eq(info.ncolumns, BANK_NCOLS);
	cr_assert_str_eq(info.name, "bank");
	/* The columns hold at least their raw values. */
	cr_assert_geq(info.mem_bytes, (uint64_t)BANK_ROWS * 40,
		      "mem_bytes %llu", (unsigned long long)info.mem_bytes);

	/* Dictionaries hold exactly the distinct strings of the file. */
	for (int c = 0; c < BANK_NCOLS; c++) {
		if (bank_cols[c].type != COHORT_CAT)
			continue;
		const char *seen[64];
		uint32_t ndistinct = 0;
		for (size_t i = 0; i < data.nrows; i++) {
			const char *s = bank_str(&data, i, c);
			uint32_t j = 0;
			while (j < ndistinct && strcmp(seen[j], s) != 0)
				j++;
			if (j == ndistinct) {
				cr_assert_lt(ndistinct, 64, "column %s",
					     bank_cols[c].name);
				seen[ndistinct++] = s;
			}
		}
		cohort_column_info ci;
		cr_assert_eq(cohort_column_describe(tbl, c, &ci), 0);
		cr_assert_eq(ci.ncat, ndistinct, "column %s: %u strings, want %u",
			     bank_cols[c].name, ci.ncat, ndistinct);
	}
}

Test(realdata, bank_every_row_reads_back_exactly,
     .init = bank_setup, .fini = bank_teardown, .timeout = 30)
{
	int cols[BANK_NCOLS];
	for (int c = 0; c < BANK_NCOLS; c++)
		cols[c] = c;
	cohort_value out[BANK_NCOLS];
	for (size_t i = 0; i < data.nrows; i++) {
		char key[32];
		size_t key_len;
		key_of(i, key, &key_len);
		cohort_time row_time = 0;
		int st = cohort_get(tbl, key, key_len, cols, BANK_NCOLS, 2000,
				    out, NULL, 0, &row_time);
		cr_assert_eq(st, COHORT_ROW_PRESENT, "%s: status %d (%s)", key,
			     st, st < 0 ? cohort_errdetail() : "");
		cr_assert_eq(row_time, 1000, "%s: row time", key);
		for (int c = 0; c < BANK_NCOLS; c++) {
			const cohort_value *v = &out[c];
			int64_t want = data.num[i][c];
			const char *s = bank_str(&data, i, c);
			switch (bank_cols[c].type) {
			case COHORT_I32:
				cr_assert_eq(v->type, COHORT_I32, "%s.%s", key,
					     bank_cols[c].name);
				cr_assert_eq(v->v.i32, want, "%s.%s: %d, file %s",
					     key, bank_cols[c].name, v->v.i32, s);
				break;
			case COHORT_I64:
				cr_assert_eq(v->type, COHORT_I64);
				cr_assert_eq(v->v.i64, want, "%s.%s: %lld, file %s",
					     key, bank_cols[c].name,
					     (long long)v->v.i64, s);
				break;
			case COHORT_BOOL:
				cr_assert_eq(v->type, COHORT_BOOL);
				cr_assert_eq(v->v.b, want != 0, "%s.%s: file %s",
					     key, bank_cols[c].name, s);
				break;
			default:
				cr_assert_eq(v->type, COHORT_CAT);
				cr_assert_eq(v->v.str.len, strlen(s));
				cr_assert(memcmp(v->v.str.ptr, s, strlen(s)) == 0,
					  "%s.%s: '%.*s', file '%s'", key,
					  bank_cols[c].name, (int)v->v.str.len,
					  v->v.str.ptr, s);
				cr_assert_eq(v->v.str.ptr[v->v.str.len], '\0');
				break;
			}
		}
	}
	/* Keys around the loaded range are missing. */
	static const char *absent[] = { "c0", "c21219", "1", "C1" };
	for (size_t k = 0; k < sizeof absent / sizeof absent[0]; k++) {
		int st = cohort_get(tbl, absent[k], strlen(absent[k]), cols,
				    BANK_NCOLS, 2000, out, NULL, 0, NULL);
		cr_assert_eq(st, COHORT_ROW_MISSING, "%s", absent[k]);
		cr_assert_eq(out[0].type, COHORT_NULL, "%s", absent[k]);
	}
}

/* A filter and the same predicate over the parsed file. */
typedef bool (*bank_pred)(const bank *b, size_t row);

static bool is(const bank *b, size_t row, int c, const char *s)
{
	return strcmp(bank_str(b, row, c), s) == 0;
}

static bool p_rich_yes(const bank *b, size_t i)
{
	return b->num[i][B_BALANCE] > 1000 && b->num[i][B_Y];
}

static bool p_young_pro(const bank *b, size_t i)
{
	return (is(b, i, B_JOB, "management") || is(b, i, B_JOB, "technician"))
	       && b->num[i][B_AGE] < 30;
}

static bool p_no_housing_or_loan(const bank *b, size_t i)
{
	return !b->num[i][B_HOUSING] || b->num[i][B_LOAN];
}

static bool p_overdrawn_single(const bank *b, size_t i)
{
	return b->num[i][B_BALANCE] < 0 && !is(b, i, B_MARITAL, "married");
}

static bool p_long_calls(const bank *b, size_t i)
{
	return b->num[i][B_DURATION] >= 600 && b->num[i][B_CAMPAIGN] <= 2 &&
	       !is(b, i, B_EDUCATION, "unknown");
}

static uint64_t count_csv(bank_pred pred)
{
	uint64_t n = 0;
	for (size_t i = 0; i < data.nrows; i++)
		n += pred(&data, i);
	return n;
}

static int col(const char *name)
{
	int c = cohort_table_column(tbl, name);
	cr_assert_geq(c, 0, "column %s", name);
	return c;
}

static void expect_count(const cohort_filter *f, int root, bank_pred pred,
			 const char *what)
{
	cr_assert_geq(root, 0, "%s: building the filter: %s (%s)", what,
		      cohort_strerror(root), cohort_errdetail());
	uint64_t want = count_csv(pred), got = 0;
	cr_assert_gt(want, 0, "%s: a filter that matches nothing proves little",
		     what);
	cr_assert_lt(want, data.nrows, "%s matches everything", what);
	int rc = cohort_filter_count(f, root, 2000, &got);
	cr_assert_eq(rc, 0, "%s: %s (%s)", what, cohort_strerror(rc),
		     cohort_errdetail());
	cr_assert_eq(got, want, "%s: store counts %llu, the file %llu", what,
		     (unsigned long long)got, (unsigned long long)want);
}

Test(realdata, bank_filter_counts_match_the_file,
     .init = bank_setup, .fini = bank_teardown, .timeout = 30)
{
	cohort_filter *f;
	cr_assert_eq(cohort_filter_new(tbl, &f), 0);

	expect_count(f, cohort_filter_and(f,
		cohort_filter_cmp(f, col("balance"), COHORT_GT, cohort_i64(1000)),
		cohort_filter_cmp(f, col("y"), COHORT_EQ, val_bool(true))),
		p_rich_yes, "balance > 1000 and y = yes");

	cohort_value jobs[] = { cohort_cat("management"),
				cohort_cat("technician") };
	expect_count(f, cohort_filter_and(f,
		cohort_filter_in(f, col("job"), jobs, 2),
		cohort_filter_cmp(f, col("age"), COHORT_LT, cohort_i32(30))),
		p_young_pro, "job in {management, technician} and age < 30");

	expect_count(f, cohort_filter_or(f,
		cohort_filter_not(f, cohort_filter_cmp(f, col("housing"),
						       COHORT_EQ, val_bool(true))),
		cohort_filter_cmp(f, col("loan"), COHORT_EQ, val_bool(true))),
		p_no_housing_or_loan, "not housing or loan");

	expect_count(f, cohort_filter_and(f,
		cohort_filter_cmp(f, col("balance"), COHORT_LT, cohort_i64(0)),
		cohort_filter_cmp(f, col("marital"), COHORT_NE,
				  cohort_cat("married"))),
		p_overdrawn_single, "balance < 0 and marital != married");

	/* Compare across types: an i32 column against an f64 bound. */
	expect_count(f, cohort_filter_and(f,
		cohort_filter_and(f,
			cohort_filter_cmp(f, col("duration"), COHORT_GE,
					  cohort_f64(599.5)),
			cohort_filter_cmp(f, col("campaign"), COHORT_LE,
					  cohort_i64(2))),
		cohort_filter_not(f, cohort_filter_cmp(f, col("education"),
			COHORT_EQ, cohort_cat("unknown")))),
		p_long_calls, "duration >= 599.5 and campaign <= 2 and "
			      "education != unknown");
	cohort_filter_free(f);
}

typedef struct key_set {
	uint8_t *seen;      /* per row */
	uint64_t n, bad;
} key_set;

static int collect_key(const void *key, size_t key_len, void *ctx)
{
	key_set *ks = ctx;
	char buf[32];
	long row;
	char *end;
	if (key_len < 2 || key_len >= sizeof buf || ((const char *)key)[0] != 'c')
		goto bad;
	memcpy(buf, key, key_len);
	buf[key_len] = '\0';
	row = strtol(buf + 1, &end, 10) - 1;
	if (*end || row < 0 || row >= (long)data.nrows || ks->seen[row])
		goto bad;
	ks->seen[row] = 1;
	ks->n++;
	return 0;
bad:
	ks->bad++;
	return 0;
}

Test(realdata, bank_filter_keys_and_bitmap_match_the_file,
     .init = bank_setup, .fini = bank_teardown, .timeout = 30)
{
	cohort_filter *f;
	cr_assert_eq(cohort_filter_new(tbl, &f), 0);
	cohort_value jobs[] = { cohort_cat("management"),
				cohort_cat("technician") };
	int root = cohort_filter_and(f,
		cohort_filter_in(f, col("job"), jobs, 2),
		cohort_filter_cmp(f, col("age"), COHORT_LT, cohort_i32(30)));
	cr_assert_geq(root, 0, "%s", cohort_errdetail());

	key_set ks = { calloc(data.nrows, 1), 0, 0 };
	cr_assert_not_null(ks.seen);
	uint64_t count = 0;
	cr_assert_eq(cohort_filter_keys(f, root, 2000, collect_key, &ks,
					&count), 0);
	cr_assert_eq(ks.bad, 0, "keys that are not c1..c%zu, or repeated",
		     data.nrows);
	for (size_t i = 0; i < data.nrows; i++)
		cr_assert_eq(ks.seen[i] != 0, p_young_pro(&data, i),
			     "c%zu: in the result %d, matches in the file %d",
			     i + 1, ks.seen[i], p_young_pro(&data, i));
	cr_assert_eq(count, ks.n);

	cohort_bitmap *bm;
	cr_assert_eq(cohort_filter_eval(f, root, 2000, &bm), 0);
	cr_assert_eq(cohort_bitmap_count(bm), count);
	cohort_bitmap_free(bm);
	free(ks.seen);
	cohort_filter_free(f);
}

/* ======================================================================
 * Berka transactions
 * ====================================================================== */

#define TRANS_ROWS 49102
#define DAY_MS 86400000LL
#define HALF_LIFE_MS (30 * DAY_MS)

enum { TY_CREDIT, TY_DEBIT };

/* Operation values, in column order; "" is the empty operation (interest,
 * fees and similar bank-side credits). */
static const char *const op_names[] = {
	"VKLAD", "VYBER", "PREVOD Z UCTU", "PREVOD NA UCET", "VYBER KARTOU", "",
};
#define NOPS (sizeof op_names / sizeof op_names[0])

enum { A_BALANCE, A_CREDIT, A_DEBIT, A_NCREDIT, A_NDEBIT, A_OP0,
       A_NCOLS = A_OP0 + NOPS };

static const cohort_column_def acct_cols[A_NCOLS] = {
	{ "balance", COHORT_LAST, 0, 0 },
	{ "credit_sum", COHORT_COUNTER, 0, 0 },
	{ "debit_sum", COHORT_COUNTER, 0, 0 },
	{ "n_credit", COHORT_COUNTER, 0, 0 },
	{ "n_debit", COHORT_COUNTER, 0, 0 },
	{ "decay_vklad", COHORT_DECAY, 0, HALF_LIFE_MS },
	{ "decay_vyber", COHORT_DECAY, 0, HALF_LIFE_MS },
	{ "decay_prevod_z_uctu", COHORT_DECAY, 0, HALF_LIFE_MS },
	{ "decay_prevod_na_ucet", COHORT_DECAY, 0, HALF_LIFE_MS },
	{ "decay_vyber_kartou", COHORT_DECAY, 0, HALF_LIFE_MS },
	{ "decay_none", COHORT_DECAY, 0, HALF_LIFE_MS },
};

typedef struct trans {
	int64_t account;
	cohort_time time;
	int type;        /* TY_CREDIT or TY_DEBIT */
	int op;          /* index in op_names */
	double amount;
	double balance;
} trans;

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), Howard Hinnant's
 * days_from_civil. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* YYMMDD (19YY) to cohort_time at midnight UTC. */
static cohort_time yymmdd_time(int64_t v)
{
	int64_t y = 1900 + v / 10000, m = v / 100 % 100, d = v % 100;
	cr_assert(m >= 1 && m <= 12 && d >= 1 && d <= 31, "date %06lld",
		  (long long)v);
	return days_from_civil(y, m, d) * DAY_MS;
}

Test(realdata, berka_calendar_conversion)
{
	cr_assert_eq(yymmdd_time(700101), 0);
	cr_assert_eq(yymmdd_time(930101), 725846400000LL);  /* date -u -d */
	cr_assert_eq(yymmdd_time(940401), 765158400000LL);
	cr_assert_eq(yymmdd_time(920229) + DAY_MS, yymmdd_time(920301));
}

static trans *trans_read(size_t *n)
{
	FILE *fp = open_data(TRANS_ASC);
	csv_reader r;
	cr_assert_eq(csv_open_file(&r, fp, ';'), 0, "%s", r.err);
	int c_acct = csv_column(&r, "account_id");
	int c_date = csv_column(&r, "date");
	int c_type = csv_column(&r, "type");
	int c_op = csv_column(&r, "operation");
	int c_amount = csv_column(&r, "amount");
	int c_balance = csv_column(&r, "balance");
	cr_assert(c_acct >= 0 && c_date >= 0 && c_type >= 0 && c_op >= 0 &&
		  c_amount >= 0 && c_balance >= 0, "trans.asc header");

	trans *tr = calloc(TRANS_ROWS + 1, sizeof *tr);
	cr_assert_not_null(tr);
	size_t i = 0;
	int rc;
	while ((rc = csv_next(&r)) == 1) {
		cr_assert_lt(i, TRANS_ROWS, "more rows than expected");
		trans *t = &tr[i];
		int64_t date;
		cr_assert_eq(csv_get_i64(&r, (size_t)c_acct, 1, INT64_MAX,
					 &t->account), 0, "%s", r.err);
		cr_assert_eq(csv_get_i64(&r, (size_t)c_date, 0, 991231, &date),
			     0, "%s", r.err);
		t->time = yymmdd_time(date);
		cr_assert_eq(csv_get_f64(&r, (size_t)c_amount, &t->amount), 0,
			     "%s", r.err);
		cr_assert_eq(csv_get_f64(&r, (size_t)c_balance, &t->balance), 0,
			     "%s", r.err);
		/* The data has PRIJEM (credit) and VYDAJ (debit), and 651 cash
		 * withdrawals typed VYBER instead of VYDAJ: debits too. */
		const char *type = r.fields[c_type].ptr;
		if (strcmp(type, "PRIJEM") == 0)
			t->type = TY_CREDIT;
		else if (strcmp(type, "VYDAJ") == 0 || strcmp(type, "VYBER") == 0)
			t->type = TY_DEBIT;
		else
			cr_assert_fail("line %llu: type '%s'",
				       (unsigned long long)r.line, type);
		const char *op = r.fields[c_op].ptr;
		t->op = -1;
		for (size_t k = 0; k < NOPS; k++)
			if (strcmp(op, op_names[k]) == 0)
				t->op = (int)k;
		cr_assert_geq(t->op, 0, "line %llu: operation '%s'",
			      (unsigned long long)r.line, op);
		if (i > 0)
			cr_assert_geq(t->time, tr[i - 1].time,
				      "line %llu is out of date order",
				      (unsigned long long)r.line);
		i++;
	}
	cr_assert_eq(rc, 0, "%s", r.err);
	cr_assert_eq(i, TRANS_ROWS, "rows in trans.asc");
	csv_close(&r);
	fclose(fp);
	*n = i;
	return tr;
}

static void replay(cohort_table *t, const trans *tr, const size_t *order,
		   size_t n)
{
	for (size_t k = 0; k < n; k++) {
		const trans *x = &tr[order ? order[k] : k];
		char key[24];
		int key_len = snprintf(key, sizeof key, "%lld",
				       (long long)x->account);
		int sum_col = x->type == TY_CREDIT ? A_CREDIT : A_DEBIT;
		int cnt_col = x->type == TY_CREDIT ? A_NCREDIT : A_NDEBIT;
		cohort_update up[4] = {
			{ A_BALANCE, COHORT_OP_OBSERVE, cohort_f64(x->balance) },
			{ sum_col, COHORT_OP_ADD, cohort_f64(x->amount) },
			{ cnt_col, COHORT_OP_OBSERVE, cohort_i64(1) },
			{ A_OP0 + x->op, COHORT_OP_ADD, cohort_f64(x->amount) },
		};
		int rc = cohort_event(t, key, (size_t)key_len, x->time, up, 4);
		cr_assert_eq(rc, 0, "event %zu (account %s): %s (%s)", k, key,
			     cohort_strerror(rc), cohort_errdetail());
	}
}

/* The expected state of one account, recomputed from the rows. */
typedef struct expect {
	long double credit, debit, decay[NOPS];
	uint64_t ncredit, ndebit, nop[NOPS];
	double balance;
	cohort_time last;
	size_t nlast;    /* rows at time `last` */
} expect;

static void recompute(const trans *tr, size_t n, int64_t account,
		      cohort_time at, expect *e)
{
	memset(e, 0, sizeof *e);
	e->last = INT64_MIN;
	for (size_t i = 0; i < n; i++) {
		const trans *x = &tr[i];
		if (x->account != account)
			continue;
		if (x->type == TY_CREDIT) {
			e->credit += x->amount;
			e->ncredit++;
		} else {
			e->debit += x->amount;
			e->ndebit++;
		}
		e->decay[x->op] += (long double)x->amount *
			exp2l(-(long double)(at - x->time) / HALF_LIFE_MS);
		e->nop[x->op]++;
		/* In file order, the latest row of the latest day wins. */
		if (x->time > e->last)
			e->nlast = 0;
		if (x->time >= e->last) {
			e->last = x->time;
			e->balance = x->balance;
			e->nlast++;
		}
	}
}

static void expect_close(const cohort_value *v, long double want,
			 const char *key, const char *what)
{
	cr_assert_eq(v->type, COHORT_F64, "%s.%s: type %d", key, what, v->type);
	long double got = v->v.f64;
	long double tol = 1e-9L * (fabsl(want) > 1 ? fabsl(want) : 1);
	cr_assert(fabsl(got - want) <= tol,
		  "%s.%s: %.17g, recomputed %.17Lg (rel. error %.3Lg)", key,
		  what, v->v.f64, want,
		  want != 0 ? fabsl(got - want) / fabsl(want) : fabsl(got));
}

/* Distinct accounts, sorted. */
static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static size_t distinct_accounts(const trans *tr, size_t n, int64_t *out)
{
	for (size_t i = 0; i < n; i++)
		out[i] = tr[i].account;
	qsort(out, n, sizeof *out, cmp_i64);
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (m == 0 || out[m - 1] != out[i])
			out[m++] = out[i];
	return m;
}

/* Check ~50 accounts (every k-th in id order) against the recomputation.
 * The last balance is checked where the latest day has one row, or
 * everywhere with check_last: when the replay was in file order, so that
 * "ties: latest applied" picks the file's last row of that day. */
static void check_sample(cohort_table *t, const trans *tr, size_t n,
			 bool check_last)
{
	const cohort_time at = yymmdd_time(940401);
	int64_t *accts = malloc(n * sizeof *accts);
	cr_assert_not_null(accts);
	size_t naccts = distinct_accounts(tr, n, accts);
	cr_assert_eq(naccts, 1229, "distinct accounts in trans.asc");

	cohort_table_info info;
	cr_assert_eq(cohort_table_describe(t, &info), 0);
	cr_assert_eq(info.nrows, naccts, "one row per account");

	int cols[A_NCOLS];
	for (int c = 0; c < (int)A_NCOLS; c++)
		cols[c] = c;
	size_t step = naccts / 50, nchecked = 0, nnull = 0;
	for (size_t s = 0; s < naccts; s += step) {
		char key[24];
		int key_len = snprintf(key, sizeof key, "%lld",
				       (long long)accts[s]);
		expect e;
		recompute(tr, n, accts[s], at, &e);

		cohort_value out[A_NCOLS];
		cohort_time row_time = 0;
		int st = cohort_get(t, key, (size_t)key_len, cols, A_NCOLS, at,
				    out, NULL, 0, &row_time);
		cr_assert_eq(st, COHORT_ROW_PRESENT, "account %s: %d %s", key,
			     st, st < 0 ? cohort_errdetail() : "");
		cr_assert_eq(row_time, e.last, "account %s: row time", key);

		if (check_last || e.nlast == 1) {
			cr_assert_eq(out[A_BALANCE].type, COHORT_F64);
			cr_assert_eq(out[A_BALANCE].v.f64, e.balance,
				     "account %s: last balance %.2f, file %.2f",
				     key, out[A_BALANCE].v.f64, e.balance);
		}
		/* A column no event touched stays null. */
		if (e.ncredit) {
			expect_close(&out[A_CREDIT], e.credit, key, "credit_sum");
			expect_close(&out[A_NCREDIT], e.ncredit, key, "n_credit");
		} else {
			cr_assert_eq(out[A_CREDIT].type, COHORT_NULL, "%s", key);
			cr_assert_eq(out[A_NCREDIT].type, COHORT_NULL, "%s", key);
		}
		if (e.ndebit) {
			expect_close(&out[A_DEBIT], e.debit, key, "debit_sum");
			expect_close(&out[A_NDEBIT], e.ndebit, key, "n_debit");
		} else {
			cr_assert_eq(out[A_DEBIT].type, COHORT_NULL, "%s", key);
			cr_assert_eq(out[A_NDEBIT].type, COHORT_NULL, "%s", key);
		}
		for (size_t k = 0; k < NOPS; k++) {
			const cohort_value *v = &out[A_OP0 + k];
			if (e.nop[k]) {
				expect_close(v, e.decay[k], key,
					     acct_cols[A_OP0 + k].name);
			} else {
				cr_assert_eq(v->type, COHORT_NULL, "%s.%s", key,
					     acct_cols[A_OP0 + k].name);
				nnull++;
			}
		}
		nchecked++;
	}
	cr_assert_geq(nchecked, 45, "accounts checked");
	cr_assert_gt(nnull, 0, "the sample has untouched columns too");
	free(accts);
}

static void berka_table(cohort_db **out_db, cohort_table **out_t)
{
	cr_assert_eq(cohort_open(NULL, NULL, out_db), 0);
	cr_assert_eq(cohort_table_create(*out_db, "account", acct_cols,
					 A_NCOLS, NULL, out_t), 0, "%s",
		     cohort_errdetail());
}

Test(realdata, berka_replay_in_date_order, .timeout = 30)
{
	size_t n;
	trans *tr = trans_read(&n);
	cohort_db *bdb;
	cohort_table *t;
	berka_table(&bdb, &t);
	replay(t, tr, NULL, n);
	check_sample(t, tr, n, true);
	cohort_close(bdb);
	free(tr);
}

Test(realdata, berka_replay_shuffled_gives_the_same_aggregates,
     .timeout = 30)
{
	size_t n;
	trans *tr = trans_read(&n);
	size_t *order = malloc(n * sizeof *order);
	cr_assert_not_null(order);
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	/* Fisher-Yates with a fixed xorshift seed: late events galore. */
	uint64_t s = 0x9E3779B97F4A7C15ull;
	for (size_t i = n - 1; i > 0; i--) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		size_t j = (size_t)(s % (i + 1));
		size_t tmp = order[i];
		order[i] = order[j];
		order[j] = tmp;
	}
	cohort_db *bdb;
	cohort_table *t;
	berka_table(&bdb, &t);
	replay(t, tr, order, n);
	check_sample(t, tr, n, false);
	cohort_close(bdb);
	free(order);
	free(tr);
}
