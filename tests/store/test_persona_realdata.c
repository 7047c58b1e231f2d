/*
 * test_persona_realdata.c -- persona models on real bank data, read in
 * place from ../shared/data (the repository root is the working directory).
 *
 * The check that matters: every row's kept persona (cohort_persona_get) is
 * the nearest centroid, recomputed here in double precision without the
 * library's arithmetic. The centroids come back in column units
 * (cohort_persona_centroid); the standardisation is recomputed here from
 * the rows the model was trained on: with fewer rows than the default
 * sample (max(256 k, 100000)) training reads every row, and takes per
 * column the mean and the n-1 standard deviation of the non-null values.
 * The distance is then sum_j ((x_j - c_j) / sd_j)^2, a null x_j counting as
 * the mean. The model works on float features, so a disagreement is
 * allowed only where the two distances are equal to float precision (a
 * near-tie); none occurs on this data, and each one is reported.
 *
 * bank: the 21,218 Bank Marketing customers, a model over age, balance,
 * duration, campaign, pdays and previous with k = 8: kept personas, sizes,
 * the share of y = yes per persona (long calls make some personas far
 * likelier to subscribe), and members under a filter. pdays and previous
 * are constant in these rows (-1 and 0), so the rule that an sd of 0 is
 * taken as 1 is exercised too.
 *
 * berka: the 49,102 Berka transactions replayed as events into one row per
 * account (transactions, mean amount, credit and debit sums, last balance,
 * account age), a model with k = 6 trained after the whole replay (the
 * table and model of cohort-demo), and one trained at 1994-01-01 that then
 * keeps the rows current through the remaining three months of events, at
 * once and by the background worker; there the sums are null until an
 * account's first credit or debit, so that nulls (counted as the mean) are
 * exercised too.
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
#include <time.h>
#include <unistd.h>

#include "cohort.h"
#include "csv.h"

#define BANK_CSV "../shared/data/bank-marketing/bank.csv"
#define TRANS_ASC "../shared/data/berka/trans.asc"
#define ACCOUNT_ASC "../shared/data/berka/account.asc"

#define MAX_DIM 8
#define MAX_K 16
#define SEED 1     /* the seed of cohort-demo: the same models */

#define OK(x)                                                                 \
	do {                                                                  \
		int rc_ = (x);                                                \
		cr_assert(rc_ >= 0, "%s: %s (%s)", #x, cohort_strerror(rc_),  \
			  cohort_errdetail());                                \
	} while (0)

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
 * The independent check
 * ====================================================================== */

/* The rows as this test knows them: n rows of dim raw inputs, NAN for a
 * null, under keys key[i]. */
typedef struct rowset {
	size_t n, cap, dim;
	char (*key)[24];
	double *x;
} rowset;

static void rowset_init(rowset *r, size_t cap, size_t dim)
{
	memset(r, 0, sizeof *r);
	r->cap = cap;
	r->dim = dim;
	r->key = calloc(cap, sizeof *r->key);
	r->x = calloc(cap * dim, sizeof *r->x);
	cr_assert(r->key && r->x);
}

static void rowset_free(rowset *r)
{
	free(r->key);
	free(r->x);
	memset(r, 0, sizeof *r);
}

/* The model's standardisation, recomputed: mean and n-1 standard deviation
 * of the non-null values of each input (sd 1 where it would be 0). */
typedef struct standard {
	double mean[MAX_DIM], sd[MAX_DIM];
} standard;

static void standard_of(const rowset *r, standard *s)
{
	for (size_t j = 0; j < r->dim; j++) {
		double sum = 0, sum2 = 0;
		size_t c = 0;
		for (size_t i = 0; i < r->n; i++) {
			double x = r->x[i * r->dim + j];
			if (!isnan(x)) {
				sum += x;
				c++;
			}
		}
		s->mean[j] = c ? sum / (double)c : 0;
		for (size_t i = 0; i < r->n; i++) {
			double x = r->x[i * r->dim + j];
			if (!isnan(x))
				sum2 += (x - s->mean[j]) * (x - s->mean[j]);
		}
		s->sd[j] = c > 1 ? sqrt(sum2 / (double)(c - 1)) : 1;
		if (!(s->sd[j] > 0))
			s->sd[j] = 1;
	}
}

typedef struct model_view {
	uint32_t k, dim;
	double cent[MAX_K * MAX_DIM];   /* column units */
	uint64_t size[MAX_K];
	double typical[MAX_K];
} model_view;

static void model_view_of(const cohort_table *t, const char *model,
			  model_view *mv)
{
	cohort_persona_info info;
	OK(cohort_persona_describe(t, model, &info));
	cr_assert_leq(info.k, MAX_K);
	cr_assert_leq(info.dim, MAX_DIM);
	mv->k = info.k;
	mv->dim = info.dim;
	for (uint32_t p = 0; p < info.k; p++)
		OK(cohort_persona_centroid(t, model, p, NULL,
					   mv->cent + (size_t)p * info.dim,
					   &mv->size[p], &mv->typical[p]));
}

/* Squared standardised distances of row x to every centroid into d2;
 * *zn2 gets |z|^2. Returns the argmin (lowest index on a tie). */
static uint32_t nearest(const model_view *mv, const standard *s,
			const double *x, double *d2, double *zn2)
{
	uint32_t best = 0;
	*zn2 = 0;
	for (uint32_t j = 0; j < mv->dim; j++) {
		double z = isnan(x[j]) ? 0 : (x[j] - s->mean[j]) / s->sd[j];
		*zn2 += z * z;
	}
	for (uint32_t p = 0; p < mv->k; p++) {
		const double *c = mv->cent + (size_t)p * mv->dim;
		double sum = 0;
		for (uint32_t j = 0; j < mv->dim; j++) {
			double xj = isnan(x[j]) ? s->mean[j] : x[j];
			double e = (xj - c[j]) / s->sd[j];
			sum += e * e;
		}
		d2[p] = sum;
		if (sum < d2[best])
			best = p;
	}
	return best;
}

/*
 * Every row of r against the nearest centroid recomputed with s; the
 * kept distance against the recomputed one; sizes against the kept
 * personas; with at_swap (no write since the version was swapped in), each
 * persona's typical distance against its members' mean distance. kept (may
 * be NULL; r->n entries) gets each row's persona. Returns the number of
 * near-ties where the kept persona is another one.
 */
static size_t check_kept(const cohort_table *t, const char *model,
			 const rowset *r, const standard *s, bool at_swap,
			 uint32_t *kept)
{
	model_view mv;
	model_view_of(t, model, &mv);
	uint64_t count[MAX_K] = { 0 };
	double dsum[MAX_K] = { 0 };
	size_t nties = 0;
	for (size_t i = 0; i < r->n; i++) {
		const char *key = r->key[i];
		cohort_persona_state ps;
		int st = cohort_persona_get(t, model, key, strlen(key), &ps);
		cr_assert_eq(st, COHORT_ROW_PRESENT, "%s: status %d (%s)", key,
			     st, st < 0 ? cohort_errdetail() : "");
		cr_assert(!ps.pending, "%s: still pending", key);
		cr_assert_lt(ps.persona, mv.k, "%s: persona %u", key,
			     ps.persona);

		double d2[MAX_K], zn2;
		uint32_t want = nearest(&mv, s, r->x + i * r->dim, d2, &zn2);
		/* float features: |z_f - z| <= 2^-24 |z|, so the squared
		 * distance moves by at most about 2^-23 d |z|. */
		double tol = 1e-6 * (1 + d2[want] + zn2);
		if (ps.persona != want) {
			cr_assert_leq(d2[ps.persona] - d2[want], tol,
				      "%s: kept persona %u at %.9g, the nearest "
				      "is %u at %.9g", key, ps.persona,
				      d2[ps.persona], want, d2[want]);
			nties++;
		}
		double dk = (double)ps.distance;
		cr_assert(fabs(dk * dk - d2[ps.persona]) <=
			  tol + 1e-6 * d2[ps.persona],
			  "%s: kept distance %.9g, recomputed %.9g", key, dk,
			  sqrt(d2[ps.persona]));
		count[ps.persona]++;
		dsum[ps.persona] += sqrt(d2[ps.persona]);
		if (kept)
			kept[i] = ps.persona;
	}

	uint64_t sizes[MAX_K], sum = 0, version;
	OK(cohort_persona_sizes(t, model, sizes, MAX_K, &version));
	for (uint32_t p = 0; p < mv.k; p++) {
		cr_assert_eq(sizes[p], count[p], "persona %u: size %llu, %llu "
			     "rows kept in it", p, (unsigned long long)sizes[p],
			     (unsigned long long)count[p]);
		cr_assert_eq(mv.size[p], count[p], "persona %u: centroid size",
			     p);
		double mean_d = count[p] ? dsum[p] / (double)count[p] : 0;
		cr_assert(!at_swap || fabs(mv.typical[p] - mean_d) <=
			  1e-5 * (1 + mean_d), "persona %u: typical distance "
			  "%.9g, members' mean %.9g", p, mv.typical[p], mean_d);
		sum += sizes[p];
	}
	cr_assert_eq(sum, r->n, "sizes sum to %llu, %zu rows",
		     (unsigned long long)sum, r->n);
	cohort_persona_info info;
	OK(cohort_persona_describe(t, model, &info));
	cr_assert_eq(info.assigned, r->n);
	cr_assert_eq(info.pending, 0);
	if (nties)
		cr_log_warn("%s: %zu near-ties kept in another persona", model,
			    nties);
	return nties;
}

static void train(cohort_table *t, const char *model, const int *cols,
		  size_t ncols, cohort_persona_mode mode, uint32_t k)
{
	cohort_persona_def def = { .columns = cols, .ncolumns = ncols,
				   .mode = mode };
	cohort_train_opts o = { .k = k, .seed = SEED };
	OK(cohort_persona_train(t, model, &def, &o));
}

/* ======================================================================
 * Bank Marketing
 * ====================================================================== */

#define BANK_ROWS 21218
#define BANK_DIM 6

/* The inputs, then y; stored with the types the demo and test_realdata
 * use. */
static const cohort_column_def bank_cols[] = {
	{ "age", COHORT_I32, 0, 0 },
	{ "balance", COHORT_I64, 0, 0 },
	{ "duration", COHORT_I32, 0, 0 },
	{ "campaign", COHORT_I32, 0, 0 },
	{ "pdays", COHORT_I32, 0, 0 },
	{ "previous", COHORT_I32, 0, 0 },
	{ "y", COHORT_BOOL, 0, 0 },
};
#define BANK_Y BANK_DIM
static const int bank_inputs[BANK_DIM] = { 0, 1, 2, 3, 4, 5 };

static cohort_db *bank_db;
static cohort_table *bank_t;
static rowset bank_rows;
static bool *bank_yes;
static standard bank_std;
static uint64_t bank_nyes;

static void bank_setup(void)
{
	FILE *fp = open_data(BANK_CSV);
	csv_reader r;
	cr_assert_eq(csv_open_file(&r, fp, ';'), 0, "%s", r.err);
	int src[BANK_DIM + 1];
	for (int c = 0; c <= BANK_DIM; c++) {
		src[c] = csv_column(&r, bank_cols[c].name);
		cr_assert_geq(src[c], 0, "%s: no column %s", BANK_CSV,
			      bank_cols[c].name);
	}

	rowset_init(&bank_rows, BANK_ROWS + 1, BANK_DIM);
	bank_yes = calloc(BANK_ROWS + 1, sizeof *bank_yes);
	cr_assert_not_null(bank_yes);
	OK(cohort_open(NULL, NULL, &bank_db));
	OK(cohort_table_create(bank_db, "bank", bank_cols, BANK_DIM + 1, NULL,
			       &bank_t));

	int rc;
	while ((rc = csv_next(&r)) == 1) {
		size_t i = bank_rows.n;
		cr_assert_lt(i, BANK_ROWS, "more rows than expected");
		cohort_field f[BANK_DIM + 1];
		for (int c = 0; c < BANK_DIM; c++) {
			int64_t v;
			cr_assert_eq(csv_get_i64(&r, (size_t)src[c], INT32_MIN,
						 INT32_MAX, &v), 0, "%s", r.err);
			f[c].column = c;
			f[c].value = bank_cols[c].type == COHORT_I64 ?
				cohort_i64(v) : cohort_i32((int32_t)v);
			bank_rows.x[i * BANK_DIM + c] = (double)v;
		}
		const char *y = r.fields[src[BANK_Y]].ptr;
		cr_assert(strcmp(y, "yes") == 0 || strcmp(y, "no") == 0,
			  "line %llu: y = '%s'", (unsigned long long)r.line, y);
		bank_yes[i] = strcmp(y, "yes") == 0;
		bank_nyes += bank_yes[i];
		f[BANK_Y].column = BANK_Y;
		f[BANK_Y].value = val_bool(bank_yes[i]);
		snprintf(bank_rows.key[i], sizeof bank_rows.key[i], "c%zu",
			 i + 1);
		OK(cohort_put(bank_t, bank_rows.key[i],
			      strlen(bank_rows.key[i]), 1000, f, BANK_DIM + 1));
		bank_rows.n++;
	}
	cr_assert_eq(rc, 0, "%s", r.err);
	cr_assert_eq(bank_rows.n, BANK_ROWS, "rows in %s", BANK_CSV);
	csv_close(&r);
	fclose(fp);

	train(bank_t, "segments", bank_inputs, BANK_DIM,
	      COHORT_PERSONA_AT_ONCE, 8);
	standard_of(&bank_rows, &bank_std);
}

static void bank_teardown(void)
{
	cohort_close(bank_db);
	bank_db = NULL;
	bank_t = NULL;
	rowset_free(&bank_rows);
	free(bank_yes);
	bank_yes = NULL;
	bank_nyes = 0;
}

Test(persona_realdata, bank_kept_persona_is_the_nearest_centroid,
     .init = bank_setup, .fini = bank_teardown, .timeout = 60)
{
	cohort_persona_info info;
	OK(cohort_persona_describe(bank_t, "segments", &info));
	cr_assert_eq(info.k, 8);
	cr_assert_eq(info.dim, BANK_DIM);
	cr_assert_eq(info.version, 1);
	check_kept(bank_t, "segments", &bank_rows, &bank_std, true, NULL);
}

/* Members of persona p with y = yes, through the API. */
static uint64_t yes_members(cohort_filter *f, int root, uint32_t p);

Test(persona_realdata, bank_yes_share_differs_across_personas,
     .init = bank_setup, .fini = bank_teardown, .timeout = 60)
{
	cohort_filter *f;
	OK(cohort_filter_new(bank_t, &f));
	int root = cohort_filter_cmp(f, BANK_Y, COHORT_EQ, val_bool(true));
	OK(root);

	double overall = (double)bank_nyes / (double)bank_rows.n;
	cr_assert(bank_nyes > 0 && bank_nyes < bank_rows.n);
	double lo = 1, hi = 0;
	for (uint32_t p = 0; p < 8; p++) {
		uint64_t size;
		OK(cohort_persona_centroid(bank_t, "segments", p, NULL, NULL,
					   &size, NULL));
		cr_assert_gt(size, 0, "persona %u is empty", p);
		double share = (double)yes_members(f, root, p) / (double)size;
		lo = share < lo ? share : lo;
		hi = share > hi ? share : hi;
	}
	/* Segmenting on how and how often a customer was called separates
	 * the subscribers: some persona has more than twice the overall
	 * share, some less than the overall share. */
	cr_assert_gt(hi, 2 * overall, "highest share %.4f, overall %.4f", hi,
		     overall);
	cr_assert_lt(lo, overall, "lowest share %.4f, overall %.4f", lo,
		     overall);
	cohort_filter_free(f);
}

typedef struct members {
	uint32_t p;
	const uint32_t *kept;
	uint8_t *seen;
	uint64_t n;
} members;

static int bank_row_of(const void *key, size_t key_len)
{
	char buf[24];
	cr_assert(key_len > 1 && key_len < sizeof buf);
	memcpy(buf, key, key_len);
	buf[key_len] = '\0';
	cr_assert_eq(buf[0], 'c', "key %s", buf);
	long i = strtol(buf + 1, NULL, 10) - 1;
	cr_assert(i >= 0 && i < (long)bank_rows.n, "key %s", buf);
	return (int)i;
}

static int member_cb(const void *key, size_t key_len, void *ctx)
{
	members *m = ctx;
	int i = bank_row_of(key, key_len);
	cr_assert_eq(m->seen[i], 0, "%s listed twice", bank_rows.key[i]);
	m->seen[i] = 1;
	m->n++;
	if (m->kept) {
		cr_assert_eq(m->kept[i], m->p, "%s: member of %u, kept in %u",
			     bank_rows.key[i], m->p, m->kept[i]);
		cr_assert(bank_yes[i], "%s: member with y = no",
			  bank_rows.key[i]);
	}
	return 0;
}

static uint64_t yes_members(cohort_filter *f, int root, uint32_t p)
{
	members m = { p, NULL, calloc(bank_rows.n, 1), 0 };
	cr_assert_not_null(m.seen);
	uint64_t count;
	OK(cohort_persona_members(bank_t, "segments", p, f, root, 2000,
				  member_cb, &m, &count));
	cr_assert_eq(count, m.n);
	free(m.seen);
	return count;
}

Test(persona_realdata, bank_members_with_a_filter_match_the_kept_personas,
     .init = bank_setup, .fini = bank_teardown, .timeout = 60)
{
	uint32_t *kept = malloc(bank_rows.n * sizeof *kept);
	cr_assert_not_null(kept);
	check_kept(bank_t, "segments", &bank_rows, &bank_std, true, kept);

	cohort_filter *f;
	OK(cohort_filter_new(bank_t, &f));
	int root = cohort_filter_cmp(f, BANK_Y, COHORT_EQ, val_bool(true));
	OK(root);
	uint64_t total = 0;
	for (uint32_t p = 0; p < 8; p++) {
		members m = { p, kept, calloc(bank_rows.n, 1), 0 };
		cr_assert_not_null(m.seen);
		uint64_t count;
		OK(cohort_persona_members(bank_t, "segments", p, f, root, 2000,
					  member_cb, &m, &count));
		uint64_t want = 0;
		for (size_t i = 0; i < bank_rows.n; i++) {
			bool in = kept[i] == p && bank_yes[i];
			want += in;
			cr_assert_eq(m.seen[i], in, "%s: listed %d, kept in %u "
				     "with y = %d", bank_rows.key[i], m.seen[i],
				     kept[i], bank_yes[i]);
		}
		cr_assert_eq(count, want, "persona %u: %llu members with "
			     "y = yes, %llu by iterating", p,
			     (unsigned long long)count,
			     (unsigned long long)want);
		cr_assert_eq(m.n, count);
		total += count;
		free(m.seen);
	}
	cr_assert_eq(total, bank_nyes, "yes members over all personas");
	cohort_filter_free(f);
	free(kept);
}

/* ======================================================================
 * Berka
 * ====================================================================== */

#define TRANS_ROWS 49102
#define BERKA_ACCOUNTS 1229
#define DAY_MS 86400000LL

/* Columns; the inputs are all six. */
enum { A_NTRANS, A_MEAN, A_CREDIT, A_DEBIT, A_BALANCE, A_AGE, A_NCOLS };

static const cohort_column_def acct_cols[A_NCOLS] = {
	{ "n_trans", COHORT_COUNTER, 0, 0 },
	{ "mean_amount", COHORT_F64, 0, 0 },
	{ "credit_sum", COHORT_COUNTER, 0, 0 },
	{ "debit_sum", COHORT_COUNTER, 0, 0 },
	{ "balance", COHORT_LAST, 0, 0 },
	{ "age_days", COHORT_F64, 0, 0 },
};
static const int acct_inputs[A_NCOLS] = { 0, 1, 2, 3, 4, 5 };

typedef struct trans {
	int64_t account;
	cohort_time time;
	bool credit;
	double amount, balance;
} trans;

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

/* YYMMDD (19YY) to cohort_time at midnight UTC. */
static cohort_time yymmdd_time(int64_t v)
{
	int64_t y = 1900 + v / 10000, m = v / 100 % 100, d = v % 100;
	cr_assert(m >= 1 && m <= 12 && d >= 1 && d <= 31, "date %06lld",
		  (long long)v);
	return days_from_civil(y, m, d) * DAY_MS;
}

typedef struct berka {
	trans *tr;
	size_t ntr;
	int64_t max_account;
	cohort_time *opened;      /* by account id; 0: not in account.asc */
	/* Running aggregates by account id, as the replay goes. */
	double *n, *sum, *credit, *debit, *balance;
	bool *has_credit, *has_debit;
	int32_t *row;             /* by account id: its index in rows, or -1 */
	rowset rows;              /* the accounts seen so far */
} berka;

static void berka_read(berka *b)
{
	memset(b, 0, sizeof *b);
	FILE *fp = open_data(ACCOUNT_ASC);
	csv_reader r;
	cr_assert_eq(csv_open_file(&r, fp, ';'), 0, "%s", r.err);
	int c_id = csv_column(&r, "account_id"), c_date = csv_column(&r, "date");
	cr_assert(c_id >= 0 && c_date >= 0, "%s header", ACCOUNT_ASC);
	size_t cap = 16384;
	b->opened = calloc(cap, sizeof *b->opened);
	cr_assert_not_null(b->opened);
	int rc;
	while ((rc = csv_next(&r)) == 1) {
		int64_t id, date;
		cr_assert_eq(csv_get_i64(&r, (size_t)c_id, 1, (int64_t)cap - 1,
					 &id), 0, "%s", r.err);
		cr_assert_eq(csv_get_i64(&r, (size_t)c_date, 0, 991231, &date),
			     0, "%s", r.err);
		b->opened[id] = yymmdd_time(date);
		if (id > b->max_account)
			b->max_account = id;
	}
	cr_assert_eq(rc, 0, "%s", r.err);
	csv_close(&r);
	fclose(fp);

	fp = open_data(TRANS_ASC);
	cr_assert_eq(csv_open_file(&r, fp, ';'), 0, "%s", r.err);
	int c_acct = csv_column(&r, "account_id");
	c_date = csv_column(&r, "date");
	int c_type = csv_column(&r, "type");
	int c_amount = csv_column(&r, "amount");
	int c_balance = csv_column(&r, "balance");
	cr_assert(c_acct >= 0 && c_date >= 0 && c_type >= 0 && c_amount >= 0 &&
		  c_balance >= 0, "%s header", TRANS_ASC);
	b->tr = calloc(TRANS_ROWS + 1, sizeof *b->tr);
	cr_assert_not_null(b->tr);
	while ((rc = csv_next(&r)) == 1) {
		cr_assert_lt(b->ntr, TRANS_ROWS, "more rows than expected");
		trans *t = &b->tr[b->ntr];
		int64_t date;
		cr_assert_eq(csv_get_i64(&r, (size_t)c_acct, 1,
					 b->max_account, &t->account), 0,
			     "%s", r.err);
		cr_assert_neq(b->opened[t->account], 0, "line %llu: account "
			      "%lld is not in %s", (unsigned long long)r.line,
			      (long long)t->account, ACCOUNT_ASC);
		cr_assert_eq(csv_get_i64(&r, (size_t)c_date, 0, 991231, &date),
			     0, "%s", r.err);
		t->time = yymmdd_time(date);
		cr_assert_eq(csv_get_f64(&r, (size_t)c_amount, &t->amount), 0,
			     "%s", r.err);
		cr_assert_eq(csv_get_f64(&r, (size_t)c_balance, &t->balance),
			     0, "%s", r.err);
		/* PRIJEM is a credit; VYDAJ, and the cash withdrawals typed
		 * VYBER, are debits. */
		const char *type = r.fields[c_type].ptr;
		t->credit = strcmp(type, "PRIJEM") == 0;
		cr_assert(t->credit || strcmp(type, "VYDAJ") == 0 ||
			  strcmp(type, "VYBER") == 0, "line %llu: type '%s'",
			  (unsigned long long)r.line, type);
		b->ntr++;
	}
	cr_assert_eq(rc, 0, "%s", r.err);
	cr_assert_eq(b->ntr, TRANS_ROWS, "rows in %s", TRANS_ASC);
	csv_close(&r);
	fclose(fp);

	size_t na = (size_t)b->max_account + 1;
	b->n = calloc(na, sizeof *b->n);
	b->sum = calloc(na, sizeof *b->sum);
	b->credit = calloc(na, sizeof *b->credit);
	b->debit = calloc(na, sizeof *b->debit);
	b->balance = calloc(na, sizeof *b->balance);
	b->has_credit = calloc(na, sizeof *b->has_credit);
	b->has_debit = calloc(na, sizeof *b->has_debit);
	b->row = malloc(na * sizeof *b->row);
	cr_assert(b->n && b->sum && b->credit && b->debit && b->balance &&
		  b->has_credit && b->has_debit && b->row);
	for (size_t i = 0; i < na; i++)
		b->row[i] = -1;
	rowset_init(&b->rows, BERKA_ACCOUNTS + 1, A_NCOLS);
}

static void berka_free(berka *b)
{
	free(b->tr);
	free(b->opened);
	free(b->n);
	free(b->sum);
	free(b->credit);
	free(b->debit);
	free(b->balance);
	free(b->has_credit);
	free(b->has_debit);
	free(b->row);
	rowset_free(&b->rows);
}

/* Account age is taken at the end of the data, 1994-04-01. */
static double age_days(const berka *b, int64_t account)
{
	return (double)((yymmdd_time(940401) - b->opened[account]) / DAY_MS);
}

/*
 * Replay transactions [from, to) as events, one per transaction: the
 * counters and the last balance are fed, the mean amount and the age set.
 * With zero_sums both sums are fed every time, so they read 0 until an
 * account's first credit or debit (as in cohort-demo); without, they stay
 * null until then, and a null input counts as the mean. The rowset follows
 * along with what the row must hold.
 */
static void berka_replay(cohort_table *t, berka *b, size_t from, size_t to,
			 bool zero_sums)
{
	for (size_t k = from; k < to; k++) {
		const trans *x = &b->tr[k];
		int64_t a = x->account;
		b->n[a] += 1;
		b->sum[a] += x->amount;
		if (x->credit) {
			b->credit[a] += x->amount;
			b->has_credit[a] = true;
		} else {
			b->debit[a] += x->amount;
			b->has_debit[a] = true;
		}
		b->balance[a] = x->balance;
		cohort_update up[6] = {
			{ A_NTRANS, COHORT_OP_OBSERVE, cohort_f64(1) },
			{ x->credit ? A_CREDIT : A_DEBIT, COHORT_OP_ADD,
			  cohort_f64(x->amount) },
			{ A_BALANCE, COHORT_OP_OBSERVE, cohort_f64(x->balance) },
			{ A_MEAN, COHORT_OP_SET, cohort_f64(b->sum[a] / b->n[a]) },
			{ A_AGE, COHORT_OP_SET, cohort_f64(age_days(b, a)) },
			{ x->credit ? A_DEBIT : A_CREDIT, COHORT_OP_ADD,
			  cohort_f64(0) },
		};
		if (zero_sums)
			b->has_credit[a] = b->has_debit[a] = true;
		if (b->row[a] < 0) {
			cr_assert_lt(b->rows.n, b->rows.cap, "more accounts "
				     "than expected");
			b->row[a] = (int32_t)b->rows.n;
			snprintf(b->rows.key[b->rows.n], sizeof b->rows.key[0],
				 "%lld", (long long)a);
			b->rows.n++;
		}
		const char *key = b->rows.key[b->row[a]];
		int rc = cohort_event(t, key, strlen(key), x->time, up,
				      zero_sums ? 6 : 5);
		cr_assert_eq(rc, 0, "event %zu (account %s): %s (%s)", k, key,
			     cohort_strerror(rc), cohort_errdetail());

		double *row = b->rows.x + (size_t)b->row[a] * A_NCOLS;
		row[A_NTRANS] = b->n[a];
		row[A_MEAN] = b->sum[a] / b->n[a];
		row[A_CREDIT] = b->has_credit[a] ? b->credit[a] : NAN;
		row[A_DEBIT] = b->has_debit[a] ? b->debit[a] : NAN;
		row[A_BALANCE] = b->balance[a];
		row[A_AGE] = age_days(b, a);
	}
}

static void berka_table(cohort_db **db, cohort_table **t)
{
	OK(cohort_open(NULL, NULL, db));
	OK(cohort_table_create(*db, "account", acct_cols, A_NCOLS, NULL, t));
}

/* The first transaction on or after 1994-01-01. */
static size_t berka_cut(const berka *b)
{
	cohort_time cut = yymmdd_time(940101);
	size_t k = 0;
	while (k < b->ntr && b->tr[k].time < cut) {
		if (k > 0)
			cr_assert_geq(b->tr[k].time, b->tr[k - 1].time,
				      "trans.asc is not in date order");
		k++;
	}
	return k;
}

/* Accounts without a debit keep a null debit_sum: the case where the
 * null-as-mean rule is exercised. */
static size_t null_debits(const berka *b)
{
	size_t n = 0;
	for (size_t i = 0; i < b->rows.n; i++)
		n += isnan(b->rows.x[i * A_NCOLS + A_DEBIT]);
	return n;
}

Test(persona_realdata, berka_kept_persona_is_the_nearest_centroid,
     .timeout = 60)
{
	berka b;
	berka_read(&b);
	cohort_db *db;
	cohort_table *t;
	berka_table(&db, &t);
	berka_replay(t, &b, 0, b.ntr, true);
	cr_assert_eq(b.rows.n, BERKA_ACCOUNTS, "accounts in trans.asc");
	cr_assert_eq(null_debits(&b), 0);

	train(t, "profiles", acct_inputs, A_NCOLS, COHORT_PERSONA_AT_ONCE, 6);
	standard st;
	standard_of(&b.rows, &st);
	check_kept(t, "profiles", &b.rows, &st, true, NULL);
	cohort_close(db);
	berka_free(&b);
}

/* Train on the accounts as of 1994-01-01, replay the last three months
 * (new accounts included), and check the rows were kept current. */
static void berka_kept_through_events(cohort_persona_mode mode)
{
	berka b;
	berka_read(&b);
	cohort_db *db;
	cohort_table *t;
	berka_table(&db, &t);
	size_t cut = berka_cut(&b);
	cr_assert(cut > 0 && cut < b.ntr);
	berka_replay(t, &b, 0, cut, false);
	size_t ntrained = b.rows.n;

	train(t, "profiles", acct_inputs, A_NCOLS, mode, 6);
	standard st;
	standard_of(&b.rows, &st);   /* the model keeps these */
	berka_replay(t, &b, cut, b.ntr, false);
	cr_assert_gt(b.rows.n, ntrained, "accounts opened after the cut");
	cr_assert_eq(b.rows.n, BERKA_ACCOUNTS);
	cr_assert_gt(null_debits(&b), 0, "accounts without a debit");

	if (mode == COHORT_PERSONA_BACKGROUND) {
		cohort_persona_info info;
		for (int i = 0; i < 5000; i++) {
			OK(cohort_persona_describe(t, "profiles", &info));
			if (info.pending == 0)
				break;
			struct timespec ts = { 0, 2000000 };
			nanosleep(&ts, NULL);
		}
		cr_assert_eq(info.pending, 0, "the worker did not drain");
	}
	check_kept(t, "profiles", &b.rows, &st, false, NULL);

	/* The change feed saw rows move (or arrive) during the replay. */
	uint64_t cursor = 0, lost, nmoved = 0;
	cohort_persona_change ch[256];
	int n;
	while ((n = cohort_persona_changes(t, "profiles", &cursor, ch, 256,
					   &lost)) > 0)
		for (int i = 0; i < n; i++)
			nmoved += ch[i].key_len > 0 &&
				  ch[i].time >= b.tr[cut].time;
	OK(n);
	cr_assert_eq(lost, 0);
	cr_assert_gt(nmoved, 0, "no persona change in three months of events");
	cohort_close(db);
	berka_free(&b);
}

Test(persona_realdata, berka_events_after_training_keep_the_nearest_at_once,
     .timeout = 60)
{
	berka_kept_through_events(COHORT_PERSONA_AT_ONCE);
}

Test(persona_realdata,
     berka_events_after_training_keep_the_nearest_in_background,
     .timeout = 60)
{
	berka_kept_through_events(COHORT_PERSONA_BACKGROUND);
}
