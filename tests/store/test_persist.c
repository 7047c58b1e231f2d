/*
 * test_persist.c -- a database in a directory: what is written survives a
 * close and a reopen, and a damaged log is detected.
 *
 * Round trips run one workload (every column type, aggregates, TTL, deletes,
 * columns added to live tables, a write that fails validation) on an
 * in-memory database and on a directory, and compare a full text dump of
 * both before and after the reopen. Damage tests build a small log (one
 * create table and six puts), then for every byte offset either cut the file
 * there or flip the byte, and check what the reopen says: a cut or a flip in
 * the final record of the newest segment is a torn tail, cut and reported;
 * anything else is COHORT_ECORRUPT naming the file and the record's offset,
 * or with salvage, the records before it and a report of what was lost.
 *
 * Every test works in its own mkdtemp directory under /tmp, removed at the
 * end.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cohort.h"
#include "tmpdir.h"

#define T0 1700000000000LL
#define HDR 20                    /* log record header, wal_int.h */

/* ---- directories and files --------------------------------------------- */

static void make_tmpdir(char *dir, size_t len)
{
	tmpdir_make(dir, len, "persist");
}

static void remove_test_dir(void)
{
	tmpdir_remove();
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* The log segments of dir, sorted (names are zero-padded first LSNs). */
static size_t wal_files(const char *dir, char names[][64], size_t max)
{
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "opendir %s: %s", dir, strerror(errno));
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		if (strncmp(e->d_name, "wal-", 4) || l < 8 ||
		    strcmp(e->d_name + l - 4, ".log") || l >= 64)
			continue;
		cr_assert_lt(n, max);
		snprintf(names[n++], 64, "%s", e->d_name);
	}
	closedir(d);
	qsort(names, n, 64, name_cmp);
	return n;
}

static unsigned char *read_whole(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "open %s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *p = malloc(n > 0 ? (size_t)n : 1);
	cr_assert_not_null(p);
	cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return p;
}

static void write_whole(const char *path, const unsigned char *p, size_t len)
{
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f, "create %s: %s", path, strerror(errno));
	cr_assert_eq(fwrite(p, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
}

static off_t file_size(const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "stat %s: %s", path, strerror(errno));
	return st.st_size;
}

/* Record start offsets of a log segment; also checks the framing. */
static size_t record_starts(const unsigned char *p, size_t len, size_t *starts,
			    size_t max)
{
	size_t n = 0, off = 0;
	while (off < len) {
		uint32_t plen;
		cr_assert_leq(off + HDR, len, "log framing broken at %zu", off);
		memcpy(&plen, p + off, 4);
		cr_assert_lt(n, max);
		starts[n++] = off;
		off += HDR + plen;
	}
	cr_assert_eq(off, len, "log framing overruns the file");
	return n;
}

/* Does s mention "offset <off>" exactly (not a longer number)? */
static bool mentions_offset(const char *s, size_t off)
{
	for (const char *q = strstr(s, "offset "); q; q = strstr(q + 1, "offset ")) {
		char *end;
		unsigned long long v = strtoull(q + 7, &end, 10);
		if (end != q + 7 && v == off)
			return true;
	}
	return false;
}

/* The library says loudly on stderr what recovery cut or lost; the loops
 * below read the same text from cohort_db_recovery() and silence the
 * hundreds of copies. */
static int saved_stderr = -1;

static void quiet_stderr(bool on)
{
	fflush(stderr);
	if (on && saved_stderr < 0) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
		cr_assert_geq(null, 0);
		saved_stderr = dup(2);
		dup2(null, 2);
		close(null);
	} else if (!on && saved_stderr >= 0) {
		dup2(saved_stderr, 2);
		close(saved_stderr);
		saved_stderr = -1;
	}
}

/* ---- opening ------------------------------------------------------------ */

static cohort_options opts_of(cohort_fsync pol, bool salvage, bool no_uring)
{
	cohort_options o;
	cohort_options_init(&o);
	o.fsync = pol;
	o.salvage = salvage;
	o.no_uring = no_uring;
	return o;
}

static cohort_db *open_ok(const char *dir, const cohort_options *o)
{
	cohort_db *db = NULL;
	int rc = cohort_open(dir, o, &db);
	cr_assert_eq(rc, 0, "open %s: %s (%s)", dir, cohort_strerror(rc),
		     cohort_errdetail());
	cr_assert_not_null(db);
	return db;
}

static void close_ok(cohort_db *db)
{
	int rc = cohort_close(db);
	cr_assert_eq(rc, 0, "close: %s (%s)", cohort_strerror(rc),
		     cohort_errdetail());
}

/* ---- a text dump of a database ------------------------------------------ */

typedef struct text {
	char *p;
	size_t len, cap;
} text;

static void tprintf(text *t, const char *fmt, ...)
{
	va_list ap;
	for (;;) {
		va_start(ap, fmt);
		int n = vsnprintf(t->p ? t->p + t->len : NULL,
				  t->p ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		cr_assert_geq(n, 0);
		if (t->p && t->len + (size_t)n < t->cap) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap ? t->cap * 2 : 4096;
		while (cap < t->len + (size_t)n + 1)
			cap *= 2;
		t->p = realloc(t->p, cap);
		cr_assert_not_null(t->p);
		t->cap = cap;
	}
}

static void tbytes(text *t, const char *s, size_t len)
{
	tprintf(t, "\"");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
			tprintf(t, "%c", c);
		else
			tprintf(t, "\\x%02x", c);
	}
	tprintf(t, "\"");
}

static void tvalue(text *t, const cohort_value *v)
{
	switch (v->type) {
	case COHORT_NULL: tprintf(t, "null"); break;
	case COHORT_F32: tprintf(t, "f32:%a", (double)v->v.f32); break;
	case COHORT_F64: tprintf(t, "f64:%a", v->v.f64); break;
	case COHORT_I32: tprintf(t, "i32:%" PRId32, v->v.i32); break;
	case COHORT_I64: tprintf(t, "i64:%" PRId64, v->v.i64); break;
	case COHORT_BOOL: tprintf(t, "bool:%d", (int)v->v.b); break;
	case COHORT_CAT:
		tprintf(t, "cat:");
		tbytes(t, v->v.str.ptr, v->v.str.len);
		break;
	case COHORT_VEC:
		tprintf(t, "vec:");
		for (uint32_t i = 0; i < v->v.vec.dim; i++)
			tprintf(t, "%s%a", i ? "," : "", (double)v->v.vec.ptr[i]);
		break;
	default: tprintf(t, "type%d", (int)v->type); break;
	}
}

/* The keys the workloads use: k0..k(NKEYS-1), a 255-byte key, a binary key
 * with zero bytes. */
#define NKEYS 120
#define NALLKEYS (NKEYS + 2)

static size_t key_of(int i, char *buf)
{
	if (i < NKEYS)
		return (size_t)snprintf(buf, 32, "k%d", i);
	if (i == NKEYS) {
		for (int j = 0; j < COHORT_MAX_KEY; j++)
			buf[j] = (char)('a' + j % 26);
		return COHORT_MAX_KEY;
	}
	memcpy(buf, "\0bin\0\xff", 6);
	return 6;
}

/* Everything readable about db: tables, columns, cat dictionaries, every
 * workload key at time `at`, and null counts through filters. */
static void dump_db(cohort_db *db, cohort_time at, text *t)
{
	size_t nt = cohort_db_ntables(db);
	tprintf(t, "tables %zu\n", nt);
	for (size_t ti = 0; ti < nt; ti++) {
		const char *name = cohort_db_table_name(db, ti);
		cohort_table *tab;
		cr_assert_eq(cohort_table_open(db, name, &tab), 0);
		cohort_table_info info;
		cr_assert_eq(cohort_table_describe(tab, &info), 0);
		tprintf(t, "table %s ncols %zu nrows %" PRIu64 " ttl %" PRId64 "\n",
			name, info.ncolumns, info.nrows, info.ttl_ms);
		int cols[64];
		cr_assert_leq(info.ncolumns, 64);
		for (size_t c = 0; c < info.ncolumns; c++) {
			cohort_column_info ci;
			cols[c] = (int)c;
			cr_assert_eq(cohort_column_describe(tab, (int)c, &ci), 0);
			tprintf(t, " col %s %s dim %u hl %" PRId64 " ncat %u\n",
				ci.name, cohort_type_name(ci.type), ci.dim,
				ci.half_life_ms, ci.ncat);
			for (uint32_t code = 0; ci.type == COHORT_CAT &&
			     code < ci.ncat; code++) {
				uint32_t len = 0;
				const char *s = cohort_cat_string(tab, (int)c,
								  code, &len);
				cr_assert_not_null(s);
				tprintf(t, "  code %u ", code);
				tbytes(t, s, len);
				tprintf(t, "\n");
			}
			if (ci.type == COHORT_VEC)
				continue;
			cohort_filter *f;
			uint64_t nnull = 0, nset = 0;
			cr_assert_eq(cohort_filter_new(tab, &f), 0);
			int a = cohort_filter_is_null(f, (int)c);
			int b = cohort_filter_not_null(f, (int)c);
			cr_assert_geq(a, 0);
			cr_assert_geq(b, 0);
			cr_assert_eq(cohort_filter_count(f, a, at, &nnull), 0);
			cr_assert_eq(cohort_filter_count(f, b, at, &nset), 0);
			cohort_filter_free(f);
			tprintf(t, "  null %" PRIu64 " set %" PRIu64 "\n", nnull,
				nset);
		}
		for (int k = 0; k < NALLKEYS; k++) {
			char key[COHORT_MAX_KEY];
			size_t klen = key_of(k, key);
			cohort_value out[64];
			float vbuf[256];
			cohort_time rt = 0;
			int st = cohort_get(tab, key, klen, cols, info.ncolumns,
					    at, out, vbuf, 256, &rt);
			cr_assert_geq(st, 0, "get: %s", cohort_errdetail());
			if (st == COHORT_ROW_MISSING)
				continue;
			tprintf(t, " key ");
			tbytes(t, key, klen);
			tprintf(t, " st %d t %" PRId64 ":", st, rt);
			for (size_t c = 0; c < info.ncolumns; c++) {
				tprintf(t, " ");
				tvalue(t, &out[c]);
			}
			tprintf(t, "\n");
		}
	}
}

/* Compare two dumps; on a difference, show the first differing line. */
static void same_dump(const text *a, const text *b, const char *what)
{
	if (a->len == b->len && memcmp(a->p, b->p, a->len) == 0)
		return;
	size_t i = 0, line = 0;
	while (i < a->len && i < b->len && a->p[i] == b->p[i])
		i++;
	size_t s = i;
	while (s > 0 && a->p[s - 1] != '\n')
		s--;
	for (size_t j = 0; j < s; j++)
		line += a->p[j] == '\n';
	int la = (int)(strchr(a->p + s, '\n') ? strchr(a->p + s, '\n') - (a->p + s) : 0);
	int lb = (int)(strchr(b->p + s, '\n') ? strchr(b->p + s, '\n') - (b->p + s) : 0);
	cr_assert_fail("%s: dumps differ at line %zu:\n  expected: %.*s\n  got:      %.*s",
		       what, line + 1, la, a->p + s, lb, b->p + s);
}

static void dump_at_times(cohort_db *db, text *t)
{
	/* before, during and long after the TTL window and decay */
	dump_db(db, T0 + 50000, t);
	dump_db(db, T0 + 130000, t);
	dump_db(db, T0 + 10000000, t);
}

/* ---- the round-trip workload --------------------------------------------- */

enum { E_F32, E_F64, E_I32, E_I64, E_BOOL, E_CAT, E_VEC, E_CNT, E_DECAY,
       E_MIN, E_MAX, E_LAST, NE };

static const cohort_column_def every_cols[NE] = {
	{ "f32", COHORT_F32, 0, 0 },
	{ "f64", COHORT_F64, 0, 0 },
	{ "i32", COHORT_I32, 0, 0 },
	{ "i64", COHORT_I64, 0, 0 },
	{ "flag", COHORT_BOOL, 0, 0 },
	{ "city", COHORT_CAT, 0, 0 },
	{ "emb", COHORT_VEC, 3, 0 },
	{ "clicks", COHORT_COUNTER, 0, 0 },
	{ "heat", COHORT_DECAY, 0, 60000 },
	{ "lo", COHORT_MIN, 0, 0 },
	{ "hi", COHORT_MAX, 0, 0 },
	{ "latest", COHORT_LAST, 0, 0 },
};

static const char *const cities[] = { "Lisbon", "Porto", "", "Faro",
				      "S\xc3\xa3o Paulo", "a\0b" };

#define OK(call)                                                              \
	do {                                                                  \
		int rc_ = (call);                                             \
		cr_assert_eq(rc_, 0, "%s: %s (%s)", #call,                   \
			     cohort_strerror(rc_), cohort_errdetail());       \
	} while (0)

static cohort_table *table_of(cohort_db *db, const char *name)
{
	cohort_table *t = NULL;
	OK(cohort_table_open(db, name, &t));
	return t;
}

/* Phase 1: tables, full puts, events at scattered times. */
static void workload_phase1(cohort_db *db)
{
	cohort_table *every, *ttl;
	cohort_table_options to = { .ttl_ms = 60000 };
	static const cohort_column_def ttl_cols[] = {
		{ "n", COHORT_I64, 0, 0 },
		{ "c", COHORT_COUNTER, 0, 0 },
		{ "s", COHORT_CAT, 0, 0 },
	};
	char key[COHORT_MAX_KEY];
	unsigned seed = 7;

	OK(cohort_table_create(db, "every", every_cols, NE, NULL, &every));
	OK(cohort_table_create(db, "ttl", ttl_cols, 3, &to, &ttl));
	OK(cohort_table_create(db, "late", NULL, 0, NULL, NULL));

	for (int i = 0; i < NALLKEYS; i++) {
		size_t klen = key_of(i, key);
		float v[3] = { (float)i * 0.5f, -1.0f / (float)(i + 1), 3e38f };
		size_t ci = (size_t)i % (sizeof cities / sizeof cities[0]);
		cohort_field f[NE] = {
			{ E_F32, cohort_f32((float)i / 3.0f) },
			{ E_F64, i % 5 ? cohort_f64(1.0 / (i + 1)) : cohort_null() },
			{ E_I32, cohort_i32(-i) },
			{ E_I64, cohort_i64((int64_t)i << 40) },
			{ E_BOOL, cohort_bool(i & 1) },
			{ E_CAT, i % 5 ? cohort_catn(cities[ci],
						     ci == 5 ? 3 : (uint32_t)strlen(cities[ci]))
				       : cohort_null() },
			{ E_VEC, i % 7 ? cohort_vec(v, 3) : cohort_null() },
			{ E_CNT, cohort_f64(i) },
			{ E_DECAY, cohort_f64(i * 2.5) },
			{ E_MIN, cohort_i32(i) },
			{ E_MAX, cohort_i64(-i) },
			{ E_LAST, cohort_f32(0.25f) },
		};
		OK(cohort_put(every, key, klen, T0 + i * 10, f, NE));
	}
	for (int j = 0; j < 500; j++) {
		int k = rand_r(&seed) % NALLKEYS;
		size_t klen = key_of(k, key);
		cohort_time t = T0 + rand_r(&seed) % 120000 - 20000;
		double x = (rand_r(&seed) % 2001 - 1000) / 8.0;
		cohort_update u[] = {
			{ E_CNT, COHORT_OP_ADD, cohort_f64(x) },
			{ E_DECAY, COHORT_OP_ADD, cohort_f64(x) },
			{ E_MIN, COHORT_OP_OBSERVE, cohort_f64(x) },
			{ E_MAX, COHORT_OP_OBSERVE, cohort_f64(x) },
			{ E_LAST, COHORT_OP_OBSERVE, cohort_f64(x) },
			{ E_F64, COHORT_OP_ADD, cohort_f64(x) },
			{ E_I64, COHORT_OP_ADD, cohort_i64(j) },
			{ E_I32, COHORT_OP_ADD, cohort_i32(j % 7) },
			{ E_F32, COHORT_OP_ADD, cohort_f32(0.1f) },
			{ E_CNT, COHORT_OP_OBSERVE, cohort_i32(1) },
		};
		OK(cohort_event(every, key, klen, t, u, sizeof u / sizeof u[0]));
	}
	/* TTL: rows written at scattered times; some expire, some are
	 * written again after expiring (cleared first) */
	for (int j = 0; j < 200; j++) {
		int k = rand_r(&seed) % 40;
		size_t klen = key_of(k, key);
		cohort_time t = T0 + (rand_r(&seed) % 4) * 45000;
		cohort_field f[] = { { 0, cohort_i64(j) },
				     { 2, cohort_cat(j % 3 ? "x" : "y") } };
		cohort_update u[] = { { 1, COHORT_OP_ADD, cohort_i32(1) } };
		if (j % 2)
			OK(cohort_put(ttl, key, klen, t, f, 2));
		else
			OK(cohort_event(ttl, key, klen, t, u, 1));
	}
}

/* Phase 2: columns added to live tables, deletes, re-puts, failures. */
static void workload_phase2(cohort_db *db)
{
	cohort_table *every = table_of(db, "every");
	cohort_table *late = table_of(db, "late");
	cohort_table *ttl = table_of(db, "ttl");
	static const cohort_column_def extra = { "extra", COHORT_F64, 0, 0 };
	static const cohort_column_def lx = { "x", COHORT_I64, 0, 0 };
	static const cohort_column_def ly = { "y", COHORT_CAT, 0, 0 };
	static const cohort_column_def lz = { "z", COHORT_DECAY, 0, 1000 };
	char key[COHORT_MAX_KEY];
	int id;

	OK(cohort_table_add_column(every, &extra, &id));
	cr_assert_eq(id, NE);
	for (int i = 0; i < NALLKEYS; i += 3) {
		size_t klen = key_of(i, key);
		cohort_update u = { NE, COHORT_OP_SET, cohort_f64(i * 1e-3) };
		OK(cohort_event(every, key, klen, T0 + 70000, &u, 1));
	}
	OK(cohort_table_add_column(late, &lx, NULL));
	for (int i = 0; i < 30; i++) {
		size_t klen = key_of(i, key);
		cohort_field f = { 0, cohort_i64(i * 11) };
		OK(cohort_put(late, key, klen, T0 + i, &f, 1));
	}
	OK(cohort_table_add_column(late, &ly, NULL));
	OK(cohort_table_add_column(late, &lz, NULL));
	for (int i = 0; i < 30; i += 2) {
		size_t klen = key_of(i, key);
		cohort_update u[] = {
			{ 1, COHORT_OP_SET, cohort_cat(i % 4 ? "even" : "four") },
			{ 2, COHORT_OP_OBSERVE, cohort_f64(i) },
			{ 2, COHORT_OP_ADD, cohort_f64(1) },
		};
		OK(cohort_event(late, key, klen, T0 + 5000 - i * 100, u, 3));
	}

	/* deletes, including the long and the binary key; some come back */
	for (int i = 0; i < NALLKEYS; i += 9) {
		size_t klen = key_of(i, key);
		OK(cohort_delete(every, key, klen));
	}
	OK(cohort_delete(every, key, key_of(NKEYS, key)));
	OK(cohort_delete(every, key, key_of(NKEYS + 1, key)));
	cohort_field tf = { 0, cohort_i64(3) };
	OK(cohort_put(ttl, key, key_of(3, key), T0 + 1, &tf, 1));
	OK(cohort_delete(ttl, key, key_of(3, key)));
	for (int i = 0; i < NALLKEYS; i += 18) {
		size_t klen = key_of(i, key);
		cohort_field f = { E_I32, cohort_i32(1000 + i) };
		OK(cohort_put(every, key, klen, T0 + 100, &f, 1));
	}
	cr_assert_eq(cohort_delete(every, "nope", 4), COHORT_ENOTFOUND);

	/* writes that fail are not logged, so replay does not trip on them */
	size_t klen = key_of(1, key);
	cohort_field big = { E_I32, cohort_i32(INT32_MAX) };
	OK(cohort_put(every, key, klen, T0 + 200, &big, 1));
	cohort_update over = { E_I32, COHORT_OP_ADD, cohort_i32(1) };
	cr_assert_eq(cohort_event(every, key, klen, T0 + 201, &over, 1),
		     COHORT_ERANGE);
	cohort_field wrong = { E_CAT, cohort_i64(1) };
	cr_assert_eq(cohort_put(every, key, klen, T0 + 202, &wrong, 1),
		     COHORT_ETYPE);
	cr_assert_eq(cohort_table_create(db, "every", NULL, 0, NULL, NULL),
		     COHORT_EEXIST);
}

static void round_trip(const cohort_options *o, bool reopen_between)
{
	char dir[64];
	cohort_db *mem = NULL, *db;
	text want = { 0 }, live = { 0 }, back = { 0 };

	make_tmpdir(dir, sizeof dir);
	OK(cohort_open(NULL, NULL, &mem));
	workload_phase1(mem);
	workload_phase2(mem);
	dump_at_times(mem, &want);
	close_ok(mem);

	db = open_ok(dir, o);
	workload_phase1(db);
	if (reopen_between) {
		close_ok(db);
		db = open_ok(dir, o);
	}
	workload_phase2(db);
	dump_at_times(db, &live);
	same_dump(&want, &live, "live database vs in-memory reference");
	close_ok(db);

	db = open_ok(dir, o);
	cr_assert_str_empty(cohort_db_recovery(db), "clean reopen reported: %s",
			    cohort_db_recovery(db));
	dump_at_times(db, &back);
	same_dump(&want, &back, "reopened database vs in-memory reference");
	close_ok(db);

	/* a second reopen replays the same log plus an empty segment */
	db = open_ok(dir, o);
	text again = { 0 };
	dump_at_times(db, &again);
	same_dump(&want, &again, "second reopen vs in-memory reference");
	close_ok(db);

	free(want.p);
	free(live.p);
	free(back.p);
	free(again.p);
	rmrf(dir);
}

TestSuite(persist, .timeout = 60, .fini = remove_test_dir);

Test(persist, round_trip_restores_every_type_aggregates_ttl_deletes)
{
	cohort_options o = opts_of(COHORT_FSYNC_INTERVAL, false, false);
	round_trip(&o, false);
}

Test(persist, round_trip_on_the_pwrite_path_without_fsync)
{
	cohort_options o = opts_of(COHORT_FSYNC_NONE, false, true);
	round_trip(&o, false);
}

Test(persist, round_trip_across_two_sessions)
{
	cohort_options o = opts_of(COHORT_FSYNC_INTERVAL, false, false);
	round_trip(&o, true);
}

Test(persist, round_trip_under_always_is_durable_at_once)
{
	char dir[64];
	cohort_options o = opts_of(COHORT_FSYNC_ALWAYS, false, false);
	static const cohort_column_def c[] = { { "v", COHORT_I64, 0, 0 },
					       { "n", COHORT_COUNTER, 0, 0 } };
	cohort_table *t;

	make_tmpdir(dir, sizeof dir);
	cohort_db *db = open_ok(dir, &o);
	OK(cohort_table_create(db, "t", c, 2, NULL, &t));
	for (int i = 0; i < 20; i++) {
		cohort_update u[] = { { 0, COHORT_OP_SET, cohort_i64(i) },
				      { 1, COHORT_OP_ADD, cohort_i32(i) } };
		OK(cohort_event(t, "k", 1, T0 + i, u, 2));
	}
	OK(cohort_delete(t, "k", 1));
	cohort_field f = { 0, cohort_i64(-5) };
	OK(cohort_put(t, "k", 1, T0 + 100, &f, 1));
	close_ok(db);

	db = open_ok(dir, &o);
	t = table_of(db, "t");
	int cols[] = { 0, 1 };
	cohort_value out[2];
	cohort_time rt;
	cr_assert_eq(cohort_get(t, "k", 1, cols, 2, T0 + 100, out, NULL, 0, &rt),
		     COHORT_ROW_PRESENT);
	cr_assert_eq(out[0].type, COHORT_I64);
	cr_assert_eq(out[0].v.i64, -5);
	cr_assert_eq(out[1].type, COHORT_NULL, "the delete cleared the counter");
	cr_assert_eq(rt, T0 + 100);
	close_ok(db);
	rmrf(dir);
}

Test(persist, now_is_logged_as_the_resolved_time)
{
	char dir[64];
	cohort_options o = opts_of(COHORT_FSYNC_NONE, false, false);
	static const cohort_column_def c = { "v", COHORT_I64, 0, 0 };
	cohort_table *t;
	int col = 0;
	cohort_value out;
	cohort_time before, after;

	make_tmpdir(dir, sizeof dir);
	cohort_db *db = open_ok(dir, &o);
	OK(cohort_table_create(db, "t", &c, 1, NULL, &t));
	cohort_field f = { 0, cohort_i64(1) };
	OK(cohort_put(t, "k", 1, COHORT_NOW, &f, 1));
	cr_assert_eq(cohort_get(t, "k", 1, &col, 1, INT64_MAX - 1, &out, NULL, 0,
				&before), COHORT_ROW_PRESENT);
	close_ok(db);
	usleep(20000);
	db = open_ok(dir, &o);
	t = table_of(db, "t");
	cr_assert_eq(cohort_get(t, "k", 1, &col, 1, INT64_MAX - 1, &out, NULL, 0,
				&after), COHORT_ROW_PRESENT);
	cr_assert_eq(after, before, "row time %" PRId64 " came back as %" PRId64,
		     before, after);
	close_ok(db);
	rmrf(dir);
}

Test(persist, record_larger_than_the_log_buffer_round_trips)
{
	char dir[64];
	cohort_options o = opts_of(COHORT_FSYNC_INTERVAL, false, false);
	static const cohort_column_def c[] = { { "s", COHORT_CAT, 0, 0 },
					       { "n", COHORT_COUNTER, 0, 0 } };
	enum { NUP = 4096, SLEN = 1000 };
	cohort_update *u = calloc(NUP, sizeof(*u));
	char *strs = malloc((size_t)NUP * SLEN);
	cohort_table *t;

	cr_assert(u && strs);
	for (int i = 0; i < NUP; i++) {
		char *s = strs + (size_t)i * SLEN;
		memset(s, 'a' + i % 26, SLEN);
		memcpy(s, &i, sizeof i);
		u[i].column = i % 2 ? 1 : 0;
		u[i].op = i % 2 ? COHORT_OP_ADD : COHORT_OP_SET;
		u[i].value = i % 2 ? cohort_i32(1) : cohort_catn(s, SLEN);
	}
	make_tmpdir(dir, sizeof dir);
	cohort_db *db = open_ok(dir, &o);
	OK(cohort_table_create(db, "t", c, 2, NULL, &t));
	/* about 2 MB of record: more than the 1 MB log buffer */
	OK(cohort_event(t, "big", 3, T0, u, NUP));
	OK(cohort_event(t, "big", 3, T0 + 1, u + 1, 1));
	close_ok(db);

	db = open_ok(dir, &o);
	t = table_of(db, "t");
	int cols[] = { 0, 1 };
	cohort_value out[2];
	cr_assert_eq(cohort_get(t, "big", 3, cols, 2, T0 + 1, out, NULL, 0, NULL),
		     COHORT_ROW_PRESENT);
	cr_assert_eq(out[0].type, COHORT_CAT);
	cr_assert_eq(out[0].v.str.len, SLEN);
	cr_assert_eq(memcmp(out[0].v.str.ptr, strs + (size_t)(NUP - 2) * SLEN,
			    SLEN), 0);
	cr_assert_eq(out[1].v.f64, NUP / 2 + 1);
	close_ok(db);
	free(u);
	free(strs);
	rmrf(dir);
}

/* ---- damage: a small log, cut or flipped at every offset ----------------- */

#define NPUTS 6
#define MAXREC 16

typedef struct small_log {
	char dir[64];               /* the test's root directory */
	char seg[64];               /* the segment's file name */
	unsigned char *bytes;
	size_t len;
	size_t starts[MAXREC];      /* record offsets */
	size_t nrec;                /* 1 create table + NPUTS puts */
} small_log;

static void small_log_build(small_log *L)
{
	char src[128];
	char names[4][64];
	cohort_options o = opts_of(COHORT_FSYNC_NONE, false, true);
	static const cohort_column_def c = { "v", COHORT_I64, 0, 0 };
	cohort_table *t;

	make_tmpdir(L->dir, sizeof L->dir);
	snprintf(src, sizeof src, "%s/src", L->dir);
	cohort_db *db = open_ok(src, &o);
	OK(cohort_table_create(db, "t", &c, 1, NULL, &t));
	for (int i = 0; i < NPUTS; i++) {
		char key[8];
		snprintf(key, sizeof key, "k%d", i);
		cohort_field f = { 0, cohort_i64(100 + i) };
		OK(cohort_put(t, key, strlen(key), T0 + i, &f, 1));
	}
	close_ok(db);
	cr_assert_eq(wal_files(src, names, 4), 1);
	snprintf(L->seg, sizeof L->seg, "%s", names[0]);
	char path[200];
	snprintf(path, sizeof path, "%s/%s", src, L->seg);
	L->bytes = read_whole(path, &L->len);
	L->nrec = record_starts(L->bytes, L->len, L->starts, MAXREC);
	cr_assert_eq(L->nrec, 1 + NPUTS);
}

static void small_log_free(small_log *L)
{
	free(L->bytes);
	rmrf(L->dir);
}

/* A fresh directory "case" under the root holding the given segment bytes. */
static void small_log_case(const small_log *L, const unsigned char *p,
			   size_t len, char *dir, size_t dir_len)
{
	char path[256];
	snprintf(dir, dir_len, "%s/case", L->dir);
	rmrf(dir);
	cr_assert_eq(mkdir(dir, 0700), 0);
	snprintf(path, sizeof path, "%s/%s", dir, L->seg);
	write_whole(path, p, len);
}

/* The record that holds byte off. */
static size_t record_of(const small_log *L, size_t off)
{
	size_t r = 0;
	while (r + 1 < L->nrec && L->starts[r + 1] <= off)
		r++;
	return r;
}

/* The state after replaying exactly the first nrec records. */
static void expect_prefix(cohort_db *db, size_t nrec, const char *why)
{
	if (nrec == 0) {
		cr_assert_eq(cohort_db_ntables(db), 0, "%s: table came back", why);
		return;
	}
	cohort_table *t;
	cr_assert_eq(cohort_table_open(db, "t", &t), 0, "%s: no table", why);
	for (int i = 0; i < NPUTS; i++) {
		char key[8];
		int col = 0;
		cohort_value v;
		snprintf(key, sizeof key, "k%d", i);
		int st = cohort_get(t, key, strlen(key), &col, 1, T0 + 10, &v,
				    NULL, 0, NULL);
		if ((size_t)i + 1 < nrec) {
			cr_assert_eq(st, COHORT_ROW_PRESENT, "%s: %s lost", why, key);
			cr_assert_eq(v.v.i64, 100 + i, "%s: %s wrong", why, key);
		} else {
			cr_assert_eq(st, COHORT_ROW_MISSING,
				     "%s: %s should not be there", why, key);
		}
	}
}

Test(persist, truncated_tail_is_cut_and_reported_at_every_length)
{
	small_log L;
	char dir[128], path[256], why[96];
	cohort_options o = opts_of(COHORT_FSYNC_NONE, false, true);

	small_log_build(&L);
	quiet_stderr(true);
	for (size_t cut = 0; cut < L.len; cut++) {
		small_log_case(&L, L.bytes, cut, dir, sizeof dir);
		snprintf(why, sizeof why, "log cut to %zu of %zu bytes", cut, L.len);
		cohort_db *db = NULL;
		int rc = cohort_open(dir, &o, &db);
		cr_assert_eq(rc, 0, "%s: open %s (%s)", why, cohort_strerror(rc),
			     cohort_errdetail());
		/* whole records that fit in cut bytes */
		size_t whole = 0;
		while (whole < L.nrec &&
		       (whole + 1 < L.nrec ? L.starts[whole + 1] : L.len) <= cut)
			whole++;
		size_t boundary = whole < L.nrec ? L.starts[whole] : L.len;
		const char *rep = cohort_db_recovery(db);
		snprintf(path, sizeof path, "%s/%s", dir, L.seg);
		if (cut == boundary) {
			cr_assert_str_empty(rep, "%s: reported %s", why, rep);
		} else {
			cr_assert(strstr(rep, L.seg) != NULL,
				  "%s: report does not name the file: '%s'", why, rep);
			cr_assert(mentions_offset(rep, boundary),
				  "%s: report does not name offset %zu: '%s'", why,
				  boundary, rep);
		}
		cr_assert_eq(file_size(path), (off_t)boundary,
			     "%s: file left at %lld bytes, torn part not cut at %zu",
			     why, (long long)file_size(path), boundary);
		expect_prefix(db, whole, why);
		close_ok(db);
	}
	quiet_stderr(false);
	small_log_free(&L);
}

/* Flip byte off with mask; return the reopen's result. */
static int open_flipped(const small_log *L, size_t off, unsigned char mask,
			bool salvage, char *dir, size_t dir_len, cohort_db **db)
{
	unsigned char *p = malloc(L->len);
	cr_assert_not_null(p);
	memcpy(p, L->bytes, L->len);
	p[off] ^= mask;
	small_log_case(L, p, L->len, dir, dir_len);
	free(p);
	cohort_options o = opts_of(COHORT_FSYNC_NONE, salvage, true);
	*db = NULL;
	return cohort_open(dir, &o, db);
}

static const unsigned char masks[] = { 0x01, 0x80, 0xff, 0x10 };

Test(persist, every_flipped_byte_is_detected)
{
	small_log L;
	char dir[128], why[96];
	size_t ntorn = 0, ncorrupt = 0;

	small_log_build(&L);
	size_t final = L.starts[L.nrec - 1];
	quiet_stderr(true);
	for (size_t off = 0; off < L.len; off++) {
		unsigned char mask = masks[off % 4];
		cohort_db *db;
		int rc = open_flipped(&L, off, mask, false, dir, sizeof dir, &db);
		size_t rec = record_of(&L, off);
		snprintf(why, sizeof why, "byte %zu (record %zu at %zu) ^ 0x%02x",
			 off, rec, L.starts[rec], mask);
		if (off >= final) {
			/* damage in the final record of the newest segment
			 * is indistinguishable from a torn append */
			cr_assert_eq(rc, 0, "%s: open %s (%s)", why,
				     cohort_strerror(rc), cohort_errdetail());
			const char *rep = cohort_db_recovery(db);
			cr_assert(strstr(rep, L.seg) && mentions_offset(rep, final),
				  "%s: torn tail not reported with file and "
				  "offset %zu: '%s'", why, final, rep);
			expect_prefix(db, L.nrec - 1, why);
			close_ok(db);
			ntorn++;
		} else {
			cr_assert_eq(rc, COHORT_ECORRUPT, "%s: open gave %d (%s), "
				     "want COHORT_ECORRUPT", why, rc,
				     rc ? cohort_errdetail() : "opened");
			cr_assert_null(db);
			const char *d = cohort_errdetail();
			cr_assert(strstr(d, L.seg) != NULL,
				  "%s: detail does not name the file: '%s'", why, d);
			cr_assert(mentions_offset(d, L.starts[rec]),
				  "%s: detail does not name offset %zu: '%s'", why,
				  L.starts[rec], d);
			ncorrupt++;
		}
	}
	quiet_stderr(false);
	cr_assert_eq(ntorn + ncorrupt, L.len);
	cr_assert_gt(ncorrupt, 0);
	small_log_free(&L);
}

Test(persist, flipped_byte_file_is_left_alone_when_open_fails)
{
	small_log L;
	char dir[128], path[256];
	cohort_db *db;

	small_log_build(&L);
	size_t off = L.starts[2] + HDR + 3;
	cr_assert_eq(open_flipped(&L, off, 0x01, false, dir, sizeof dir, &db),
		     COHORT_ECORRUPT);
	snprintf(path, sizeof path, "%s/%s", dir, L.seg);
	size_t len;
	unsigned char *p = read_whole(path, &len);
	cr_assert_eq(len, L.len, "a failed open changed the damaged log's size");
	cr_assert_eq(p[off], L.bytes[off] ^ 0x01);
	free(p);
	/* and it fails the same way again */
	cohort_options o = opts_of(COHORT_FSYNC_NONE, false, true);
	cr_assert_eq(cohort_open(dir, &o, &db), COHORT_ECORRUPT);
	small_log_free(&L);
}

Test(persist, salvage_opens_what_precedes_the_damage_and_reports_the_loss)
{
	small_log L;
	char dir[128], why[96];

	small_log_build(&L);
	size_t final = L.starts[L.nrec - 1];
	quiet_stderr(true);
	for (size_t off = 0; off < L.len; off++) {
		unsigned char mask = masks[(off + 1) % 4];
		cohort_db *db;
		int rc = open_flipped(&L, off, mask, true, dir, sizeof dir, &db);
		size_t rec = record_of(&L, off);
		snprintf(why, sizeof why, "salvage, byte %zu (record %zu) ^ 0x%02x",
			 off, rec, mask);
		cr_assert_eq(rc, 0, "%s: open %s (%s)", why, cohort_strerror(rc),
			     cohort_errdetail());
		const char *rep = cohort_db_recovery(db);
		cr_assert(strstr(rep, L.seg) != NULL,
			  "%s: report does not name the file: '%s'", why, rep);
		cr_assert(mentions_offset(rep, L.starts[rec]),
			  "%s: report does not name offset %zu: '%s'", why,
			  L.starts[rec], rep);
		if (off < final)
			cr_assert(strstr(rep, "LOST") || strstr(rep, "lost"),
				  "%s: report does not say what was lost: '%s'",
				  why, rep);
		expect_prefix(db, rec, why);
		close_ok(db);
	}
	quiet_stderr(false);
	small_log_free(&L);
}

/* Damage record 2 of 7 and open with salvage: what comes next must stay. */
static void salvaged(small_log *L, char *dir, size_t dir_len)
{
	cohort_db *db;
	small_log_build(L);
	OK(open_flipped(L, L->starts[2] + HDR + 1, 0x40, true, dir, dir_len, &db));
	cr_assert_str_not_empty(cohort_db_recovery(db));
	expect_prefix(db, 2, "salvaged");

	cohort_table *t = table_of(db, "t");
	cohort_field f = { 0, cohort_i64(7) };
	OK(cohort_put(t, "after", 5, T0 + 50, &f, 1));
	OK(cohort_delete(t, "k0", 2));
	close_ok(db);
}

static void expect_after_salvage(cohort_db *db)
{
	cohort_table *t = table_of(db, "t");
	int col = 0;
	cohort_value v;
	cr_assert_eq(cohort_get(t, "after", 5, &col, 1, T0 + 50, &v, NULL, 0,
				NULL), COHORT_ROW_PRESENT,
		     "a put acknowledged after the salvage open was lost on "
		     "the next open (recovery: '%s')", cohort_db_recovery(db));
	cr_assert_eq(v.v.i64, 7);
	cr_assert_eq(cohort_get(t, "k0", 2, &col, 1, T0 + 50, &v, NULL, 0, NULL),
		     COHORT_ROW_MISSING,
		     "a delete acknowledged after the salvage open was undone");
}

Test(persist, writes_after_a_salvage_open_survive_the_next_salvage_open)
{
	small_log L;
	char dir[128];
	cohort_options o = opts_of(COHORT_FSYNC_NONE, true, true);

	salvaged(&L, dir, sizeof dir);
	cohort_db *db = open_ok(dir, &o);
	expect_after_salvage(db);
	close_ok(db);
	small_log_free(&L);
}

Test(persist, writes_after_a_salvage_open_survive_a_plain_open)
{
	small_log L;
	char dir[128];
	cohort_options o = opts_of(COHORT_FSYNC_NONE, false, true);

	/* the salvage open accepted the loss; the database then goes on */
	salvaged(&L, dir, sizeof dir);
	cohort_db *db = NULL;
	int rc = cohort_open(dir, &o, &db);
	cr_assert_eq(rc, 0, "plain open after a salvage open: %s (%s)",
		     cohort_strerror(rc), cohort_errdetail());
	expect_after_salvage(db);
	close_ok(db);
	small_log_free(&L);
}

/* Two sessions, three puts each: two segments with records. */
static void two_segments(char *dir, size_t dir_len, char names[][64])
{
	cohort_options o = opts_of(COHORT_FSYNC_NONE, false, true);
	static const cohort_column_def c = { "v", COHORT_I64, 0, 0 };
	cohort_table *t;

	make_tmpdir(dir, dir_len);
	for (int s = 0; s < 2; s++) {
		cohort_db *db = open_ok(dir, &o);
		if (s == 0)
			OK(cohort_table_create(db, "t", &c, 1, NULL, &t));
		else
			t = table_of(db, "t");
		for (int i = 0; i < 3; i++) {
			char key[8];
			snprintf(key, sizeof key, "k%d", s * 3 + i);
			cohort_field f = { 0, cohort_i64(100 + s * 3 + i) };
			OK(cohort_put(t, key, strlen(key), T0, &f, 1));
		}
		close_ok(db);
	}
	cr_assert_eq(wal_files(dir, names, 8), 2);
}

static void flip_last_record(const char *dir, const char *name)
{
	char path[256];
	size_t len, starts[MAXREC];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	unsigned char *p = read_whole(path, &len);
	size_t n = record_starts(p, len, starts, MAXREC);
	cr_assert_gt(n, 0);
	p[starts[n - 1] + HDR + 2] ^= 0x08;
	write_whole(path, p, len);
	free(p);
}

Test(persist, flip_in_the_last_record_of_an_older_segment_is_corrupt)
{
	char dir[64], names[8][64];
	cohort_options o = opts_of(COHORT_FSYNC_NONE, false, true);
	cohort_db *db = NULL;

	two_segments(dir, sizeof dir, names);
	flip_last_record(dir, names[0]);
	int rc = cohort_open(dir, &o, &db);
	cr_assert_eq(rc, COHORT_ECORRUPT, "open gave %d (%s)", rc,
		     rc ? cohort_errdetail() : cohort_db_recovery(db));
	cr_assert(strstr(cohort_errdetail(), names[0]) != NULL, "'%s'",
		  cohort_errdetail());
	rmrf(dir);
}

Test(persist, flip_in_the_last_record_of_the_newest_segment_is_a_torn_tail)
{
	char dir[64], names[8][64];
	cohort_options o = opts_of(COHORT_FSYNC_NONE, false, true);

	two_segments(dir, sizeof dir, names);
	flip_last_record(dir, names[1]);
	cohort_db *db = open_ok(dir, &o);
	cr_assert(strstr(cohort_db_recovery(db), names[1]) != NULL, "'%s'",
		  cohort_db_recovery(db));
	cohort_table *t = table_of(db, "t");
	int col = 0;
	cohort_value v;
	cr_assert_eq(cohort_get(t, "k4", 2, &col, 1, T0, &v, NULL, 0, NULL),
		     COHORT_ROW_PRESENT);
	cr_assert_eq(cohort_get(t, "k5", 2, &col, 1, T0, &v, NULL, 0, NULL),
		     COHORT_ROW_MISSING);
	close_ok(db);
	rmrf(dir);
}

Test(persist, missing_middle_segment_is_corrupt)
{
	char dir[64], names[8][64], path[256];
	cohort_options o = opts_of(COHORT_FSYNC_NONE, false, true);
	static const cohort_column_def c = { "v", COHORT_I64, 0, 0 };
	cohort_table *t;
	cohort_db *db;

	make_tmpdir(dir, sizeof dir);
	for (int s = 0; s < 3; s++) {
		db = open_ok(dir, &o);
		if (s == 0)
			OK(cohort_table_create(db, "t", &c, 1, NULL, &t));
		else
			t = table_of(db, "t");
		for (int i = 0; i < 3; i++) {
			cohort_field f = { 0, cohort_i64(i) };
			char key[8];
			snprintf(key, sizeof key, "s%d%d", s, i);
			OK(cohort_put(t, key, strlen(key), T0, &f, 1));
		}
		close_ok(db);
	}
	/* three sessions, with records: three segments, one per open */
	cr_assert_eq(wal_files(dir, names, 8), 3);
	snprintf(path, sizeof path, "%s/%s", dir, names[1]);
	cr_assert_eq(unlink(path), 0);
	db = NULL;
	int rc = cohort_open(dir, &o, &db);
	cr_assert_eq(rc, COHORT_ECORRUPT, "a gap of three LSNs gave %d (%s)", rc,
		     rc ? cohort_errdetail() : cohort_db_recovery(db));
	rmrf(dir);
}

/* ---- io path names and the directory lock ------------------------------- */

Test(persist, io_path_names_the_log_path)
{
	char dir[64];
	cohort_db *db = NULL;

	OK(cohort_open(NULL, NULL, &db));
	cr_assert_str_eq(cohort_db_io_path(db), "memory");
	cr_assert_str_empty(cohort_db_recovery(db));
	close_ok(db);

	make_tmpdir(dir, sizeof dir);
	cohort_options o = opts_of(COHORT_FSYNC_NONE, false, true);
	db = open_ok(dir, &o);
	const char *p = cohort_db_io_path(db);
	cr_assert(strncmp(p, "pwrite (", 8) == 0 && p[strlen(p) - 1] == ')',
		  "no_uring path is '%s'", p);
	close_ok(db);

	o.no_uring = false;
	db = open_ok(dir, &o);
	p = cohort_db_io_path(db);
	cr_assert(strcmp(p, "io_uring") == 0 ||
		  (strncmp(p, "pwrite (", 8) == 0 && strlen(p) > 10 &&
		   p[strlen(p) - 1] == ')'),
		  "default path is '%s'", p);
	cr_log_info("persist: this machine logs with %s", p);
	close_ok(db);
	rmrf(dir);
}

Test(persist, second_process_gets_ebusy_and_changes_nothing)
{
	char dir[64], before[8][64], after[8][64];
	cohort_options o = opts_of(COHORT_FSYNC_NONE, false, true);
	static const cohort_column_def c = { "v", COHORT_I64, 0, 0 };
	cohort_table *t;

	make_tmpdir(dir, sizeof dir);
	cohort_db *db = open_ok(dir, &o);
	OK(cohort_table_create(db, "t", &c, 1, NULL, &t));
	size_t n = wal_files(dir, before, 8);

	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		cohort_db *d2 = NULL;
		int rc = cohort_open(dir, &o, &d2);
		_exit(rc == COHORT_EBUSY && d2 == NULL &&
		      strstr(cohort_errdetail(), dir) ? 0 : 10 - rc);
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "second process: exit %d (10 - its open's code)",
		  WEXITSTATUS(status));
	cr_assert_eq(wal_files(dir, after, 8), n,
		     "the refused open created a segment");

	/* the first database still writes */
	cohort_field f = { 0, cohort_i64(1) };
	OK(cohort_put(t, "k", 1, T0, &f, 1));
	cohort_db *same = NULL;
	cr_assert_eq(cohort_open(dir, &o, &same), COHORT_EBUSY);
	OK(cohort_put(t, "k2", 2, T0, &f, 1));
	close_ok(db);

	db = open_ok(dir, &o);
	t = table_of(db, "t");
	int col = 0;
	cohort_value v;
	cr_assert_eq(cohort_get(t, "k2", 2, &col, 1, T0, &v, NULL, 0, NULL),
		     COHORT_ROW_PRESENT);
	close_ok(db);
	rmrf(dir);
}
