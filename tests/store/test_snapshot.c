/*
 * Snapshots: round trip of every type through a snapshot, recovery from a
 * snapshot plus the log after it, erasure of deleted rows from every file,
 * checksums catching flipped bytes, automatic snapshots, and a snapshot
 * taken while two threads write.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cohort.h"
#include "tmpdir.h"

static char dir[64];

static void setup(void)
{
	tmpdir_make(dir, sizeof(dir), "snap");
}

static void teardown(void)
{
	tmpdir_remove();
}

static cohort_db *open_db(void)
{
	cohort_options o;
	cohort_options_init(&o);
	o.fsync = COHORT_FSYNC_NONE;   /* durability is not what is tested */
	cohort_db *db = NULL;
	int rc = cohort_open(dir, &o, &db);
	cr_assert_eq(rc, 0, "open: %s", cohort_errdetail());
	return db;
}

enum { C_F32, C_F64, C_I32, C_I64, C_BOOL, C_CAT, C_VEC, C_CNT, C_DEC,
       C_MIN, C_MAX, C_LAST, NCOLS };

static const cohort_column_def cols[NCOLS] = {
	{ "f32", COHORT_F32, 0, 0 },  { "f64", COHORT_F64, 0, 0 },
	{ "i32", COHORT_I32, 0, 0 },  { "i64", COHORT_I64, 0, 0 },
	{ "b", COHORT_BOOL, 0, 0 },   { "cat", COHORT_CAT, 0, 0 },
	{ "vec", COHORT_VEC, 5, 0 },  { "cnt", COHORT_COUNTER, 0, 0 },
	{ "dec", COHORT_DECAY, 0, 60000 }, { "mn", COHORT_MIN, 0, 0 },
	{ "mx", COHORT_MAX, 0, 0 },   { "last", COHORT_LAST, 0, 0 },
};

static void write_row(cohort_table *t, int i)
{
	char key[32], cat[32];
	int n = snprintf(key, sizeof(key), "cust-%d", i);
	snprintf(cat, sizeof(cat), "seg-%d", i % 7);
	float v[5] = { (float)i, -1, 2.5f, 0, (float)(i % 3) };
	cohort_field f[] = {
		{ C_F32, i % 5 ? cohort_f32((float)i / 3) : cohort_null() },
		{ C_F64, cohort_f64(i * 1e-3) },
		{ C_I32, cohort_i32(-i) },
		{ C_I64, cohort_i64((int64_t)i << 33) },
		{ C_BOOL, cohort_bool(i & 1) },
		{ C_CAT, i % 4 ? cohort_cat(cat) : cohort_null() },
		{ C_VEC, cohort_vec(v, 5) },
	};
	cr_assert_eq(cohort_put(t, key, (size_t)n, 1000 + i, f, 7), 0, "%s",
		     cohort_errdetail());
	cohort_update u[] = {
		{ C_CNT, COHORT_OP_ADD, cohort_f64(i) },
		{ C_DEC, COHORT_OP_ADD, cohort_f64(10) },
		{ C_MIN, COHORT_OP_OBSERVE, cohort_f64(i % 11) },
		{ C_MAX, COHORT_OP_OBSERVE, cohort_f64(i % 13) },
		{ C_LAST, COHORT_OP_OBSERVE, cohort_f64(i) },
	};
	cr_assert_eq(cohort_event(t, key, (size_t)n, 2000 + i, u, 5), 0, "%s",
		     cohort_errdetail());
}

/* Rows whose columns differ between two tables (no assertions: a child
 * process calls it too); the first one is described in why. */
static int count_different(cohort_table *a, cohort_table *b, int nkeys,
			   char *why, size_t why_len)
{
	int ids[NCOLS], bad = 0;
	for (int i = 0; i < NCOLS; i++)
		ids[i] = i;
	for (int i = 0; i < nkeys; i++) {
		char key[32];
		int n = snprintf(key, sizeof(key), "cust-%d", i);
		cohort_value va[NCOLS], vb[NCOLS];
		float ba[8], bb[8];
		cohort_time ta, tb;
		int sa = cohort_get(a, key, (size_t)n, ids, NCOLS, 5000, va, ba,
				    8, &ta);
		int sb = cohort_get(b, key, (size_t)n, ids, NCOLS, 5000, vb, bb,
				    8, &tb);
		bool same = sa == sb && ta == tb;
		for (int c = 0; c < NCOLS && same; c++) {
			same = va[c].type == vb[c].type;
			if (!same || va[c].type == COHORT_NULL)
				continue;
			if (va[c].type == COHORT_CAT)
				same = strcmp(va[c].v.str.ptr, vb[c].v.str.ptr) == 0;
			else if (va[c].type == COHORT_VEC)
				same = memcmp(va[c].v.vec.ptr, vb[c].v.vec.ptr,
					      5 * sizeof(float)) == 0;
			else if (va[c].type == COHORT_BOOL)
				same = va[c].v.b == vb[c].v.b;
			else
				same = memcmp(&va[c].v, &vb[c].v, 8) == 0;
		}
		if (!same && bad++ == 0 && why)
			snprintf(why, why_len, "key %s", key);
	}
	return bad;
}

/* Every column of every key equal in two tables. */
static void assert_same(cohort_table *a, cohort_table *b, int nkeys)
{
	char why[64] = "";
	int bad = count_different(a, b, nkeys, why, sizeof why);
	cr_assert_eq(bad, 0, "%d of %d rows differ, the first: %s", bad, nkeys,
		     why);
}

Test(snapshot, round_trip_of_every_type_equals_the_live_table, .init = setup,
     .fini = teardown)
{
	cohort_db *mem;
	cohort_table *ref, *t;
	cr_assert_eq(cohort_open(NULL, NULL, &mem), 0);
	cr_assert_eq(cohort_table_create(mem, "c", cols, NCOLS, NULL, &ref), 0);
	cohort_db *db = open_db();
	cr_assert_eq(cohort_table_create(db, "c", cols, NCOLS, NULL, &t), 0);
	for (int i = 0; i < 3000; i++) {
		write_row(ref, i);
		write_row(t, i);
	}
	for (int i = 0; i < 3000; i += 5) {
		char key[32];
		int n = snprintf(key, sizeof(key), "cust-%d", i);
		cr_assert_eq(cohort_delete(ref, key, (size_t)n), 0);
		cr_assert_eq(cohort_delete(t, key, (size_t)n), 0);
	}
	cr_assert_eq(cohort_snapshot(db), 0, "%s", cohort_errdetail());
	/* more after the snapshot: they come back from the log */
	for (int i = 3000; i < 3500; i++) {
		write_row(ref, i);
		write_row(t, i);
	}
	cr_assert_eq(cohort_close(db), 0);
	db = open_db();
	cr_assert_eq(cohort_table_open(db, "c", &t), 0);
	assert_same(ref, t, 3600);
	cohort_table_info ia, ib;
	cohort_table_describe(ref, &ia);
	cohort_table_describe(t, &ib);
	cr_assert_eq(ia.nrows, ib.nrows);
	cohort_column_info ca, cb;
	cohort_column_describe(t, C_CAT, &cb);
	cohort_column_describe(ref, C_CAT, &ca);
	cr_assert_eq(cb.ncat, ca.ncat);
	cohort_close(db);
	cohort_close(mem);
}

static bool file_contains(const char *path, const char *needle)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	size_t nl = strlen(needle), len = 0, cap = 1 << 16;
	char *buf = malloc(cap);
	size_t n;
	while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
		}
	}
	fclose(f);
	bool found = false;
	for (size_t i = 0; i + nl <= len && !found; i++)
		found = memcmp(buf + i, needle, nl) == 0;
	free(buf);
	return found;
}

static bool dir_contains(const char *needle)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool found = false;
	char path[512];
	while ((e = readdir(d)) != NULL && !found) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		found = file_contains(path, needle);
	}
	closedir(d);
	return found;
}

Test(snapshot, deleted_customer_is_in_no_file_after_the_next_snapshot,
     .init = setup, .fini = teardown)
{
	cohort_db *db = open_db();
	cohort_table *t;
	cohort_column_def c[] = { { "name", COHORT_CAT, 0, 0 },
				  { "iban", COHORT_I64, 0, 0 } };
	cr_assert_eq(cohort_table_create(db, "people", c, 2, NULL, &t), 0);
	for (int i = 0; i < 100; i++) {
		char key[32], name[32];
		int n = snprintf(key, sizeof(key), "person-%03d", i);
		snprintf(name, sizeof(name), "name-%03d", i);
		cohort_field f[] = { { 0, cohort_cat(name) },
				     { 1, cohort_i64(1000 + i) } };
		cr_assert_eq(cohort_put(t, key, (size_t)n, 1, f, 2), 0);
	}
	cohort_field f[] = { { 0, cohort_cat("Zuzana-Forgotten") },
			     { 1, cohort_i64(0x5EC12E7BADC0DELL) } };
	cr_assert_eq(cohort_put(t, "ERASE-ME-4711", 13, 1, f, 2), 0);
	cr_assert_eq(cohort_snapshot(db), 0);
	cr_assert_eq(cohort_close(db), 0);
	cr_assert(dir_contains("ERASE-ME-4711"), "the key should be on disk");
	db = open_db();
	cr_assert_eq(cohort_table_open(db, "people", &t), 0);
	cr_assert_eq(cohort_delete(t, "ERASE-ME-4711", 13), 0);
	cr_assert_eq(cohort_snapshot(db), 0, "%s", cohort_errdetail());
	cr_assert_eq(cohort_close(db), 0);
	int64_t secret = 0x5EC12E7BADC0DELL;
	char needle[9] = { 0 };
	memcpy(needle, &secret, 8);
	cr_assert(!dir_contains("ERASE-ME-4711"), "deleted key still on disk");
	cr_assert(!dir_contains("Zuzana-Forgotten"), "deleted value on disk");
	cr_assert(!dir_contains(needle), "deleted i64 value on disk");
	/* the others are all still there */
	db = open_db();
	cr_assert_eq(cohort_table_open(db, "people", &t), 0);
	cohort_table_info info;
	cohort_table_describe(t, &info);
	cr_assert_eq(info.nrows, 100);
	cohort_close(db);
}

static char *newest_snapshot(void)
{
	static char path[512];
	DIR *d = opendir(dir);
	struct dirent *e;
	path[0] = 0;
	while ((e = readdir(d)) != NULL)
		if (strstr(e->d_name, ".snap"))
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
	closedir(d);
	return path;
}

Test(snapshot, every_flipped_byte_is_detected, .init = setup,
     .fini = teardown)
{
	cohort_db *db = open_db();
	cohort_table *t;
	cr_assert_eq(cohort_table_create(db, "c", cols, NCOLS, NULL, &t), 0);
	for (int i = 0; i < 20; i++)
		write_row(t, i);
	cr_assert_eq(cohort_snapshot(db), 0);
	cr_assert_eq(cohort_close(db), 0);
	char *snap = newest_snapshot();
	cr_assert(snap[0]);
	struct stat st;
	cr_assert_eq(stat(snap, &st), 0);
	int fd = open(snap, O_RDWR);
	/* every byte, one at a time */
	for (off_t off = 0; off < st.st_size; off++) {
		unsigned char b;
		cr_assert_eq(pread(fd, &b, 1, off), 1);
		unsigned char x = b ^ 0x10;
		cr_assert_eq(pwrite(fd, &x, 1, off), 1);
		cohort_db *d2 = NULL;
		int rc = cohort_open(dir, NULL, &d2);
		cr_assert_eq(rc, COHORT_ECORRUPT, "flip at %lld not detected",
			     (long long)off);
		cr_assert(strstr(cohort_errdetail(), "snap-") != NULL);
		cr_assert_eq(pwrite(fd, &b, 1, off), 1);
	}
	close(fd);
	cohort_db *d3 = NULL;
	cr_assert_eq(cohort_open(dir, NULL, &d3), 0);
	cohort_close(d3);
}

Test(snapshot, automatic_after_the_configured_log_size, .init = setup,
     .fini = teardown)
{
	cohort_options o;
	cohort_options_init(&o);
	o.fsync = COHORT_FSYNC_NONE;
	o.snapshot_log_bytes = 64 * 1024;
	cohort_db *db;
	cr_assert_eq(cohort_open(dir, &o, &db), 0);
	cohort_table *t;
	cr_assert_eq(cohort_table_create(db, "c", cols, NCOLS, NULL, &t), 0);
	for (int i = 0; i < 2000; i++)
		write_row(t, i);
	/* the background thread looks every 50 ms */
	for (int i = 0; i < 100 && !newest_snapshot()[0]; i++)
		usleep(20000);
	cr_assert(newest_snapshot()[0], "no automatic snapshot was written");
	cr_assert_eq(cohort_close(db), 0);
	db = open_db();
	cr_assert_eq(cohort_table_open(db, "c", &t), 0);
	cohort_table_info info;
	cohort_table_describe(t, &info);
	cr_assert_eq(info.nrows, 2000);
	cohort_close(db);
}

/* Without similarity indexes, close snapshots only when asked to
 * (snapshot_on_close), and the snapshot holds what the log held. */
Test(snapshot, on_close_only_when_asked, .init = setup, .fini = teardown)
{
	cohort_db *db = open_db();
	cohort_table *t;
	cr_assert_eq(cohort_table_create(db, "c", cols, NCOLS, NULL, &t), 0);
	for (int i = 0; i < 100; i++)
		write_row(t, i);
	cr_assert_eq(cohort_close(db), 0);
	cr_assert(!newest_snapshot()[0], "a snapshot nobody asked for: %s",
		  newest_snapshot());

	cohort_options o;
	cohort_options_init(&o);
	o.fsync = COHORT_FSYNC_NONE;
	o.snapshot_on_close = true;
	cr_assert_eq(cohort_open(dir, &o, &db), 0);
	cr_assert_eq(cohort_table_open(db, "c", &t), 0);
	write_row(t, 100);
	cr_assert_eq(cohort_close(db), 0);
	cr_assert(newest_snapshot()[0], "no snapshot at close");
	db = open_db();
	cr_assert_eq(cohort_table_open(db, "c", &t), 0);
	cohort_table_info info;
	cohort_table_describe(t, &info);
	cr_assert_eq(info.nrows, 101);
	cohort_close(db);
}

/* Two writers bump pairs of counters while a snapshot is taken; after a
 * reopen every row's two counters agree and hold every acknowledged
 * event. */
typedef struct wargs {
	cohort_table *t;
	int id;
	int done;
} wargs;

static void *writer(void *arg)
{
	wargs *w = arg;
	for (int i = 0; i < 4000; i++) {
		char key[32];
		int n = snprintf(key, sizeof(key), "w%d-%d", w->id, i % 50);
		cohort_update u[] = { { 0, COHORT_OP_ADD, cohort_f64(1) },
				      { 1, COHORT_OP_ADD, cohort_f64(1) } };
		if (cohort_event(w->t, key, (size_t)n, 1, u, 2) == 0)
			w->done++;
	}
	return NULL;
}

Test(snapshot, taken_while_two_threads_write, .init = setup,
     .fini = teardown)
{
	cohort_db *db = open_db();
	cohort_table *t;
	cohort_column_def c[] = { { "a", COHORT_COUNTER, 0, 0 },
				  { "b", COHORT_COUNTER, 0, 0 } };
	cr_assert_eq(cohort_table_create(db, "pairs", c, 2, NULL, &t), 0);
	wargs w[2] = { { t, 0, 0 }, { t, 1, 0 } };
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, writer, &w[i]);
	for (int s = 0; s < 3; s++)
		cr_assert_eq(cohort_snapshot(db), 0, "%s", cohort_errdetail());
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(cohort_close(db), 0);
	db = open_db();
	cr_assert_eq(cohort_table_open(db, "pairs", &t), 0);
	double total = 0;
	for (int id = 0; id < 2; id++) {
		for (int k = 0; k < 50; k++) {
			char key[32];
			int n = snprintf(key, sizeof(key), "w%d-%d", id, k);
			int ids[2] = { 0, 1 };
			cohort_value v[2];
			cr_assert_eq(cohort_get(t, key, (size_t)n, ids, 2, 1, v,
						NULL, 0, NULL), COHORT_ROW_PRESENT);
			cr_assert_eq(v[0].v.f64, v[1].v.f64, "half an event");
			total += v[0].v.f64;
		}
	}
	cr_assert_eq(total, (double)(w[0].done + w[1].done));
	cohort_close(db);
}

Test(snapshot, in_memory_database_cannot_snapshot)
{
	cohort_db *db;
	cr_assert_eq(cohort_open(NULL, NULL, &db), 0);
	cr_assert_eq(cohort_snapshot(db), COHORT_EINVAL);
	cohort_close(db);
}

Test(snapshot, salvage_opens_with_a_damaged_column_null_and_says_so,
     .init = setup, .fini = teardown)
{
	cohort_db *db = open_db();
	cohort_table *t;
	cr_assert_eq(cohort_table_create(db, "c", cols, NCOLS, NULL, &t), 0);
	for (int i = 0; i < 50; i++)
		write_row(t, i);
	cr_assert_eq(cohort_snapshot(db), 0);
	cr_assert_eq(cohort_close(db), 0);
	/* flip a byte inside the values of the i64 column: find its section
	 * by the value the rows hold (row 1's i64 is 1 << 33) */
	char *snap = newest_snapshot();
	FILE *f = fopen(snap, "r+b");
	cr_assert_not_null(f);
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	unsigned char *buf = malloc((size_t)size);
	fseek(f, 0, SEEK_SET);
	cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
	int64_t needle[2] = { (int64_t)1 << 33, (int64_t)2 << 33 };
	long at = -1;
	for (long i = 0; i + 16 <= size && at < 0; i++)
		if (memcmp(buf + i, needle, 16) == 0)
			at = i + 4;
	cr_assert_geq(at, 0);
	buf[at] ^= 0x40;
	fseek(f, at, SEEK_SET);
	fwrite(buf + at, 1, 1, f);
	fclose(f);
	free(buf);

	cohort_db *d2 = NULL;
	cr_assert_eq(cohort_open(dir, NULL, &d2), COHORT_ECORRUPT);
	cohort_options o;
	cohort_options_init(&o);
	o.salvage = true;
	cr_assert_eq(cohort_open(dir, &o, &d2), 0, "%s", cohort_errdetail());
	cr_assert(strstr(cohort_db_recovery(d2), "LOST") != NULL);
	cr_assert(strstr(cohort_db_recovery(d2), "'i64'") != NULL, "%s",
		  cohort_db_recovery(d2));
	cr_assert_eq(cohort_table_open(d2, "c", &t), 0);
	int ids[2] = { C_I64, C_I32 };
	cohort_value v[2];
	cr_assert_eq(cohort_get(t, "cust-7", 6, ids, 2, 5000, v, NULL, 0, NULL),
		     COHORT_ROW_PRESENT);
	cr_assert_eq(v[0].type, COHORT_NULL, "the damaged column reads null");
	cr_assert_eq(v[1].type, COHORT_I32);
	cr_assert_eq(v[1].v.i32, -7, "intact columns are intact");
	cr_assert_eq(cohort_close(d2), 0);
	/* the salvage wrote a clean snapshot: a plain open works now */
	cr_assert_eq(cohort_open(dir, NULL, &d2), 0, "%s", cohort_errdetail());
	cohort_close(d2);
}

/*
 * A snapshot larger than the loader holds in memory at once (it reuses
 * the pages of the sections it is done with for the reads after them),
 * over several chunks, with a second table whose chunks are allocated
 * while the first one's pages are being reused: every row comes back, the
 * key map (built in bulk) takes later writes and deletes, and damage far
 * into the file is found, named and salvaged like damage anywhere else.
 */
#define BIG_ROWS 200000
#define BIG_VECS 8               /* a section of 19 MB each */
#define BIG_DIM 24
#define AFTER_ROWS 100000

static void assert_after_rows(cohort_db *db)
{
	cohort_table *t;
	cr_assert_eq(cohort_table_open(db, "after", &t), 0);
	for (int i = 0; i < AFTER_ROWS; i++) {
		char key[32];
		int kl = snprintf(key, sizeof(key), "a-%d", i);
		int ids[2] = { 0, 1 };
		cohort_value v[2];
		cr_assert_eq(cohort_get(t, key, (size_t)kl, ids, 2, 5000, v, NULL,
					0, NULL), COHORT_ROW_PRESENT, "row %d", i);
		cr_assert_eq(v[0].v.f64, i * 0.25, "row %d", i);
		cr_assert_eq(v[1].v.i32, -i, "row %d", i);
	}
}

static int64_t big_n(int i)
{
	return (int64_t)i * 1000003 + 7;
}

static void big_vec(int i, int c, float *v)
{
	for (int k = 0; k < BIG_DIM; k++)
		v[k] = (float)i + (float)(c * 100) + (float)k * 0.5f;
}

static void assert_big_row(cohort_table *t, int i, bool n_null)
{
	char key[32];
	int kl = snprintf(key, sizeof(key), "big-%d", i);
	int ids[BIG_VECS + 1];
	for (int c = 0; c <= BIG_VECS; c++)
		ids[c] = c;
	cohort_value v[BIG_VECS + 1];
	float got[BIG_VECS * BIG_DIM], want[BIG_DIM];
	cr_assert_eq(cohort_get(t, key, (size_t)kl, ids, BIG_VECS + 1, 5000, v,
				got, BIG_VECS * BIG_DIM, NULL),
		     COHORT_ROW_PRESENT, "row %d", i);
	for (int c = 0; c < BIG_VECS; c++) {
		cr_assert_eq(v[c].type, COHORT_VEC, "row %d", i);
		big_vec(i, c, want);
		cr_assert_arr_eq(v[c].v.vec.ptr, want, sizeof(want), "row %d", i);
	}
	if (n_null || i % 97 == 0) {
		cr_assert_eq(v[BIG_VECS].type, COHORT_NULL, "row %d", i);
	} else {
		cr_assert_eq(v[BIG_VECS].type, COHORT_I64, "row %d", i);
		cr_assert_eq(v[BIG_VECS].v.i64, big_n(i), "row %d", i);
	}
}

Test(snapshot, larger_than_the_loader_holds_round_trips_and_is_checked,
     .init = setup, .fini = teardown)
{
	cohort_db *db = open_db();
	cohort_table *t;
	cohort_column_def defs[BIG_VECS + 1];
	char names[BIG_VECS][8];
	for (int c = 0; c < BIG_VECS; c++) {
		snprintf(names[c], sizeof(names[c]), "v%d", c);
		defs[c] = (cohort_column_def){ names[c], COHORT_VEC, BIG_DIM, 0 };
	}
	defs[BIG_VECS] = (cohort_column_def){ "n", COHORT_I64, 0, 0 };
	cr_assert_eq(cohort_table_create(db, "big", defs, BIG_VECS + 1, NULL,
					 &t), 0);
	float v[BIG_VECS][BIG_DIM];
	for (int i = 0; i < BIG_ROWS; i++) {
		char key[32];
		int kl = snprintf(key, sizeof(key), "big-%d", i);
		cohort_field f[BIG_VECS + 1];
		for (int c = 0; c < BIG_VECS; c++) {
			big_vec(i, c, v[c]);
			f[c] = (cohort_field){ c, cohort_vec(v[c], BIG_DIM) };
		}
		f[BIG_VECS] = (cohort_field){ BIG_VECS, i % 97 ?
			cohort_i64(big_n(i)) : cohort_null() };
		cr_assert_eq(cohort_put(t, key, (size_t)kl, 1000, f,
					BIG_VECS + 1), 0);
	}
	cohort_column_def adefs[] = { { "x", COHORT_F64, 0, 0 },
				      { "y", COHORT_I32, 0, 0 } };
	cohort_table *ta;
	cr_assert_eq(cohort_table_create(db, "after", adefs, 2, NULL, &ta), 0);
	for (int i = 0; i < AFTER_ROWS; i++) {
		char key[32];
		int kl = snprintf(key, sizeof(key), "a-%d", i);
		cohort_field f[] = { { 0, cohort_f64(i * 0.25) },
				     { 1, cohort_i32(-i) } };
		cr_assert_eq(cohort_put(ta, key, (size_t)kl, 1000, f, 2), 0);
	}
	cr_assert_eq(cohort_snapshot(db), 0, "%s", cohort_errdetail());
	cr_assert_eq(cohort_close(db), 0);
	char *snap = newest_snapshot();
	struct stat st;
	cr_assert_eq(stat(snap, &st), 0);
	cr_assert_gt(st.st_size, 150 << 20, "the file must outgrow the loader");

	db = open_db();
	cr_assert_eq(cohort_table_open(db, "big", &t), 0);
	cohort_table_info info;
	cohort_table_describe(t, &info);
	cr_assert_eq(info.nrows, BIG_ROWS);
	for (int i = 0; i < BIG_ROWS; i++)
		assert_big_row(t, i, false);
	assert_after_rows(db);
	for (int i = 0; i < BIG_ROWS; i += 5) {
		char key[32];
		int kl = snprintf(key, sizeof(key), "big-%d", i);
		cr_assert_eq(cohort_delete(t, key, (size_t)kl), 0);
	}
	for (int i = 0; i < 1000; i++) {
		char key[32];
		int kl = snprintf(key, sizeof(key), "new-%d", i);
		cohort_field f = { BIG_VECS, cohort_i64(i) };
		cr_assert_eq(cohort_put(t, key, (size_t)kl, 1000, &f, 1), 0);
	}
	for (int i = 1; i < BIG_ROWS; i += 5)
		assert_big_row(t, i, false);
	cohort_table_describe(t, &info);
	cr_assert_eq(info.nrows, BIG_ROWS - BIG_ROWS / 5 + 1000);
	cr_assert_eq(cohort_close(db), 0);

	/* one flipped bit in the last values of the i64 column, past
	 * 150 MB: found by the rows' values */
	FILE *fp = fopen(snap, "r+b");
	cr_assert_not_null(fp);
	size_t size = (size_t)st.st_size;
	unsigned char *buf = malloc(size);
	cr_assert_eq(fread(buf, 1, size, fp), size);
	int64_t needle[2] = { big_n(BIG_ROWS - 3), big_n(BIG_ROWS - 2) };
	size_t at = 0;
	for (size_t i = size - 16; i > 0 && !at; i--)
		if (memcmp(buf + i, needle, 16) == 0)
			at = i + 1;
	cr_assert_gt(at, (size_t)150 << 20);
	buf[at] ^= 0x08;
	fseek(fp, (long)at, SEEK_SET);
	fwrite(buf + at, 1, 1, fp);
	fclose(fp);
	free(buf);
	cohort_db *d2 = NULL;
	cr_assert_eq(cohort_open(dir, NULL, &d2), COHORT_ECORRUPT);
	cr_assert(strstr(cohort_errdetail(), "snap-") != NULL &&
		  strstr(cohort_errdetail(), "offset") != NULL, "%s",
		  cohort_errdetail());
	cohort_options o;
	cohort_options_init(&o);
	o.salvage = true;
	cr_assert_eq(cohort_open(dir, &o, &d2), 0, "%s", cohort_errdetail());
	cr_assert(strstr(cohort_db_recovery(d2), "'n'") != NULL, "%s",
		  cohort_db_recovery(d2));
	cr_assert_eq(cohort_table_open(d2, "big", &t), 0);
	for (int i = 1; i < BIG_ROWS; i += 5)
		assert_big_row(t, i, true);
	assert_after_rows(d2);
	cr_assert_eq(cohort_close(d2), 0);
}

/*
 * Where io_uring cannot be set up, the loader reads with pread (the
 * pipeline is the same, the pages are not recycled): a child forbids
 * io_uring_setup with a seccomp filter, then loads a snapshot of every
 * type over several reads and compares it with the same rows in memory.
 */
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif

static int forbid_io_uring(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

#define PREAD_ROWS 80000         /* 10 MB: more than one read */


Test(snapshot, loads_with_pread_where_io_uring_is_refused, .init = setup,
     .fini = teardown)
{
	cohort_db *mem, *db = open_db();
	cohort_table *ref, *t;
	cr_assert_eq(cohort_open(NULL, NULL, &mem), 0);
	cr_assert_eq(cohort_table_create(mem, "c", cols, NCOLS, NULL, &ref), 0);
	cr_assert_eq(cohort_table_create(db, "c", cols, NCOLS, NULL, &t), 0);
	for (int i = 0; i < PREAD_ROWS; i++) {
		write_row(ref, i);
		write_row(t, i);
	}
	cr_assert_eq(cohort_snapshot(db), 0, "%s", cohort_errdetail());
	cr_assert_eq(cohort_close(db), 0);
	struct stat st;
	cr_assert_eq(stat(newest_snapshot(), &st), 0);
	cr_assert_gt(st.st_size, 8 << 20, "%lld", (long long)st.st_size);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* no assertions in the child: a code says what failed */
		if (forbid_io_uring())
			_exit(10);
		cohort_db *d2;
		cohort_table *t2;
		cohort_options o;
		cohort_options_init(&o);
		o.fsync = COHORT_FSYNC_NONE;
		if (cohort_open(dir, &o, &d2) || cohort_table_open(d2, "c", &t2))
			_exit(12);
		if (strncmp(cohort_db_io_path(d2), "pwrite", 6) != 0)
			_exit(13);
		if (count_different(ref, t2, PREAD_ROWS, NULL, 0))
			_exit(14);
		_exit(cohort_close(d2) ? 15 : 0);
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cohort_close(mem);
	cr_assert(WIFEXITED(status), "child died");
	if (WEXITSTATUS(status) == 10)
		cr_skip_test("seccomp filters are not allowed here");
	cr_assert_eq(WEXITSTATUS(status), 0, "step %d failed",
		     WEXITSTATUS(status));
}
