/*
 * persist.c -- what the log records mean: encoding every mutation of the
 * embedded API into a log record, and replaying records into a database on
 * open.
 *
 * Records are logical: they carry the call (table id, key, event time,
 * updates with their values) rather than the bytes it changed, and replay
 * makes the same call with logging off. Calls are deterministic given the
 * state (the event time is resolved before logging, TTL resets and decay are
 * computed from event times), so replaying the log in LSN order rebuilds the
 * state exactly. Records of one key are logged under its stripe lock, so
 * their LSN order is their apply order. Table ids are creation order.
 *
 * Payloads, little-endian:
 *   CREATE_TABLE  u8 len, name, i64 ttl_ms, u16 ncols, ncols x column
 *   ADD_COLUMN    u32 table, column
 *     column:     u8 len, name, u8 type, u32 dim, i64 half_life_ms
 *   PUT / EVENT   u32 table, i64 time, u8 key len, key, u16 n, n x update
 *     update:     u16 column, u8 op, u8 value type, value
 *     value:      f32 4 | f64 8 | i32 4 | i64 8 | bool 1 |
 *                 cat u16 len + bytes | vec dim x f32 | null nothing
 *   DELETE        u32 table, u8 key len, key
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ann_int.h"
#include "persona_int.h"
#include "snapshot_int.h"
#include "wal_int.h"

/* ------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------ */
int rec_reserve(recbuf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + more)
		cap *= 2;
	unsigned char *p;
	if (b->p == b->stack) {
		p = cmalloc(cap);
		if (p)
			memcpy(p, b->stack, b->len);
	} else {
		p = crealloc(b->p, cap);
	}
	if (!p)
		return seterr(COHORT_ENOMEM, "log record: out of memory");
	b->p = p;
	b->cap = cap;
	return 0;
}

void rec_init(recbuf *b)
{
	b->p = b->stack;
	b->len = 0;
	b->cap = sizeof(b->stack);
}

void rec_free(recbuf *b)
{
	if (b->p != b->stack)
		cfree(b->p);
	rec_init(b);
}

int rec_put(recbuf *b, const void *p, size_t n)
{
	int rc = rec_reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static int put_u8(recbuf *b, uint8_t v) { return rec_put(b, &v, 1); }
static int put_u16(recbuf *b, uint16_t v) { return rec_put(b, &v, 2); }
static int put_u32(recbuf *b, uint32_t v) { return rec_put(b, &v, 4); }
static int put_i64(recbuf *b, int64_t v) { return rec_put(b, &v, 8); }

static int put_name(recbuf *b, const char *s)
{
	size_t n = strlen(s);
	return put_u8(b, (uint8_t)n) || rec_put(b, s, n) ? COHORT_ENOMEM : 0;
}

static int put_coldef(recbuf *b, const cohort_column_def *c)
{
	if (put_name(b, c->name) || put_u8(b, (uint8_t)c->type) ||
	    put_u32(b, c->type == COHORT_VEC ? c->dim : 0) ||
	    put_i64(b, c->type == COHORT_DECAY ? c->half_life_ms : 0))
		return COHORT_ENOMEM;
	return 0;
}

int rec_create_table(recbuf *b, const char *name, int64_t ttl,
		     const cohort_column_def *cols, size_t ncols)
{
	if (put_name(b, name) || put_i64(b, ttl) || put_u16(b, (uint16_t)ncols))
		return COHORT_ENOMEM;
	for (size_t i = 0; i < ncols; i++)
		if (put_coldef(b, &cols[i]))
			return COHORT_ENOMEM;
	return 0;
}

int rec_add_column(recbuf *b, uint32_t table, const cohort_column_def *c)
{
	return put_u32(b, table) || put_coldef(b, c) ? COHORT_ENOMEM : 0;
}

int rec_row_begin(recbuf *b, uint32_t table, int64_t time, const void *key,
		  size_t key_len, size_t n)
{
	if (put_u32(b, table) || put_i64(b, time) || put_u8(b, (uint8_t)key_len) ||
	    rec_put(b, key, key_len) || put_u16(b, (uint16_t)n))
		return COHORT_ENOMEM;
	return 0;
}

int rec_update(recbuf *b, int column, int op, const cohort_value *v,
	       uint32_t dim)
{
	if (put_u16(b, (uint16_t)column) || put_u8(b, (uint8_t)op) ||
	    put_u8(b, (uint8_t)v->type))
		return COHORT_ENOMEM;
	switch (v->type) {
	case COHORT_NULL: return 0;
	case COHORT_F32: return rec_put(b, &v->v.f32, 4);
	case COHORT_F64: return rec_put(b, &v->v.f64, 8);
	case COHORT_I32: return rec_put(b, &v->v.i32, 4);
	case COHORT_I64: return rec_put(b, &v->v.i64, 8);
	case COHORT_BOOL: return put_u8(b, v->v.b ? 1 : 0);
	case COHORT_CAT:
		return put_u16(b, (uint16_t)v->v.str.len) ||
		       rec_put(b, v->v.str.ptr, v->v.str.len) ? COHORT_ENOMEM : 0;
	case COHORT_VEC:
		return rec_put(b, v->v.vec.ptr, (size_t)dim * sizeof(float));
	default:
		return seterr(COHORT_EINVAL, "log: value of type %d", (int)v->type);
	}
}

int rec_delete(recbuf *b, uint32_t table, const void *key, size_t key_len)
{
	return put_u32(b, table) || put_u8(b, (uint8_t)key_len) ||
	       rec_put(b, key, key_len) ? COHORT_ENOMEM : 0;
}

int persist_log(cohort_db *db, uint8_t type, const recbuf *b, uint64_t *lsn)
{
	*lsn = 0;
	if (!db->wal)
		return 0;
	return wal_append(db->wal, type, b->p, (uint32_t)b->len, lsn);
}

/* Deferred durability (cohort_sync_defer): the highest LSN this thread
 * logged while deferring, waited for by cohort_sync_wait. */
static _Thread_local bool defer_on;
static _Thread_local uint64_t defer_lsn;

int persist_sync(cohort_db *db, uint64_t lsn)
{
	if (!db->wal || lsn == 0)
		return 0;
	if (defer_on) {
		if (lsn > defer_lsn)
			defer_lsn = lsn;
		return wal_error(db->wal) ? wal_sync(db->wal, lsn) : 0;
	}
	return wal_sync(db->wal, lsn);
}

void cohort_sync_defer(bool on)
{
	defer_on = on;
}

/* The thread's deferred LSN, forgotten: 0 when there is nothing to wait
 * for (no writes, or no log). */
static uint64_t take_deferred(const cohort_db *db)
{
	uint64_t lsn = defer_lsn;
	defer_lsn = 0;
	return db && db->wal ? lsn : 0;
}

int cohort_sync_wait(cohort_db *db)
{
	uint64_t lsn = take_deferred(db);
	return lsn ? wal_sync(db->wal, lsn) : 0;
}

int cohort_sync_start(cohort_db *db, int efd, uint64_t *ticket)
{
	uint64_t lsn = take_deferred(db);
	*ticket = 0;
	if (lsn == 0)
		return 0;
	int rc = wal_sync_start(db->wal, lsn, efd);
	if (rc < 0)
		return rc;
	if (rc == 0)
		*ticket = lsn;
	return 0;
}

int cohort_sync_check(cohort_db *db, uint64_t ticket)
{
	if (!db || !db->wal || ticket == 0)
		return 1;
	return wal_sync_check(db->wal, ticket);
}

int cohort_sync_notify(cohort_db *db, int efd, bool on)
{
	if (!db)
		return seterr(COHORT_EINVAL, "cohort_sync_notify: no database");
	if (efd < 0)
		return seterr(COHORT_EINVAL, "cohort_sync_notify: descriptor "
			      "%d", efd);
	return db->wal ? wal_notify(db->wal, efd, on) : 0;
}

/* ------------------------------------------------------------------------
 * Decoding and replay
 * ------------------------------------------------------------------------ */
static float get_f32(bytes_in *r)
{
	float v = 0;
	const void *q = bin_take(r, 4);
	if (q)
		memcpy(&v, q, 4);
	return v;
}

static double get_f64(bytes_in *r)
{
	double v = 0;
	const void *q = bin_take(r, 8);
	if (q)
		memcpy(&v, q, 8);
	return v;
}

static void get_name(bytes_in *r, char *out)
{
	uint8_t n = (uint8_t)bin_uint(r, 1);
	const char *s = bin_take(r, n);
	if (!s || n > COHORT_MAX_NAME) {
		r->bad = true;
		out[0] = 0;
		return;
	}
	memcpy(out, s, n);
	out[n] = 0;
}

static void get_coldef(bytes_in *r, cohort_column_def *c, char *name)
{
	get_name(r, name);
	c->name = name;
	c->type = (cohort_type)bin_uint(r, 1);
	c->dim = (uint32_t)bin_uint(r, 4);
	c->half_life_ms = (int64_t)bin_uint(r, 8);
}

int schema_read(bytes_in *r, schema *out)
{
	memset(out, 0, sizeof(*out));
	get_name(r, out->name);
	out->opts.ttl_ms = (int64_t)bin_uint(r, 8);
	out->ncols = (uint16_t)bin_uint(r, 2);
	if (r->bad)
		return COHORT_ECORRUPT;
	size_t n = out->ncols ? out->ncols : 1;
	out->defs = ccalloc(n, sizeof(*out->defs));
	out->names = ccalloc(n, sizeof(*out->names));
	if (!out->defs || !out->names)
		return COHORT_ENOMEM;
	for (uint16_t i = 0; i < out->ncols; i++)
		get_coldef(r, &out->defs[i], out->names[i]);
	return r->bad ? COHORT_ECORRUPT : 0;
}

void schema_free(schema *s)
{
	cfree(s->defs);
	cfree(s->names);
	s->defs = NULL;
	s->names = NULL;
}

cohort_column_def *schema_defs_of(const cohort_table *t)
{
	int n = table_ncols(t);
	cohort_column_def *defs = ccalloc(n ? (size_t)n : 1, sizeof(*defs));
	for (int i = 0; defs && i < n; i++) {
		const tcol *c = t->cols[i];
		defs[i] = (cohort_column_def){ c->name, c->type,
					       c->type == COHORT_VEC ? c->dim : 0,
					       c->half_life_ms };
	}
	return defs;
}

static int bad_record(uint64_t lsn, const char *what)
{
	return seterr(COHORT_ECORRUPT, "log record %llu: %s",
		      (unsigned long long)lsn, what);
}

static int table_by_id(cohort_db *db, bytes_in *r, uint64_t lsn,
		       cohort_table **t)
{
	uint32_t id = (uint32_t)bin_uint(r, 4);
	if (r->bad || id >= cohort_db_ntables(db))
		return bad_record(lsn, "unknown table id");
	*t = db->tables[id];
	return 0;
}

static int replay_create(cohort_db *db, bytes_in *r, uint64_t lsn)
{
	schema sc;
	int rc = schema_read(r, &sc);
	if (rc == COHORT_ENOMEM)
		rc = seterr(rc, "replay: out of memory");
	else if (rc)
		rc = bad_record(lsn, "truncated create table");
	else
		rc = cohort_table_create(db, sc.name, sc.defs, sc.ncols,
					 &sc.opts, NULL);
	schema_free(&sc);
	return rc;
}

static int replay_row(cohort_db *db, bytes_in *r, uint64_t lsn, uint8_t type)
{
	cohort_table *t;
	int rc = table_by_id(db, r, lsn, &t);
	if (rc)
		return rc;
	int64_t time = type == REC_DELETE ? 0 : (int64_t)bin_uint(r, 8);
	uint8_t klen = (uint8_t)bin_uint(r, 1);
	const void *key = bin_take(r, klen);
	if (type == REC_DELETE) {
		if (r->bad)
			return bad_record(lsn, "truncated delete");
		rc = cohort_delete(t, key, klen);
		return rc == COHORT_ENOTFOUND ? 0 : rc;
	}
	uint16_t n = (uint16_t)bin_uint(r, 2);
	if (r->bad)
		return bad_record(lsn, "truncated write");
	cohort_update *ups = ccalloc(n ? n : 1, sizeof(*ups));
	if (!ups)
		return seterr(COHORT_ENOMEM, "replay: out of memory");
	for (uint16_t i = 0; i < n && !r->bad; i++) {
		ups[i].column = (uint16_t)bin_uint(r, 2);
		ups[i].op = (cohort_op)(uint8_t)bin_uint(r, 1);
		cohort_value *v = &ups[i].value;
		v->type = (cohort_type)(uint8_t)bin_uint(r, 1);
		switch (v->type) {
		case COHORT_NULL: break;
		case COHORT_F32: v->v.f32 = get_f32(r); break;
		case COHORT_F64: v->v.f64 = get_f64(r); break;
		case COHORT_I32: v->v.i32 = (int32_t)bin_uint(r, 4); break;
		case COHORT_I64: v->v.i64 = (int64_t)bin_uint(r, 8); break;
		case COHORT_BOOL: v->v.b = (uint8_t)bin_uint(r, 1) != 0; break;
		case COHORT_CAT:
			v->v.str.len = (uint16_t)bin_uint(r, 2);
			v->v.str.ptr = bin_take(r, v->v.str.len);
			break;
		case COHORT_VEC: {
			if (column_check(t, ups[i].column)) {
				r->bad = true;
				break;
			}
			uint32_t dim = t->cols[ups[i].column]->dim;
			/* the payload is not aligned: floats are copied out */
			const void *src = bin_take(r, dim * (uint32_t)sizeof(float));
			float *copy = src ? cmalloc(dim * sizeof(float)) : NULL;
			if (copy)
				memcpy(copy, src, dim * sizeof(float));
			else
				r->bad = true;
			v->v.vec.ptr = copy;
			v->v.vec.dim = dim;
			break;
		}
		default:
			r->bad = true;
		}
	}
	if (r->bad) {
		rc = bad_record(lsn, "malformed write");
	} else if (type == REC_PUT) {
		cohort_field *fields = ccalloc(n ? n : 1, sizeof(*fields));
		if (!fields) {
			rc = seterr(COHORT_ENOMEM, "replay: out of memory");
		} else {
			for (uint16_t i = 0; i < n; i++) {
				fields[i].column = ups[i].column;
				fields[i].value = ups[i].value;
			}
			rc = cohort_put(t, key, klen, time, fields, n);
			cfree(fields);
		}
	} else {
		rc = cohort_event(t, key, klen, time, ups, n);
	}
	for (uint16_t i = 0; i < n; i++)
		if (ups[i].value.type == COHORT_VEC)
			cfree((void *)ups[i].value.v.vec.ptr);
	cfree(ups);
	/* A write that failed when it was made was never logged, so replay
	 * fails only if the log is damaged or the code disagrees with it. */
	if (rc < 0 && rc != COHORT_ECORRUPT && rc != COHORT_ENOMEM)
		rc = seterr(COHORT_ECORRUPT, "log record %llu does not apply: "
			    "%s", (unsigned long long)lsn, cohort_errdetail());
	return rc;
}

static int replay_cb(void *ctx, uint8_t type, uint64_t lsn,
		     const uint8_t *payload, uint32_t len)
{
	cohort_db *db = ctx;
	bytes_in r = { payload, len, 0, false };
	switch (type) {
	case REC_CREATE_TABLE:
		return replay_create(db, &r, lsn);
	case REC_ADD_COLUMN: {
		cohort_table *t;
		int rc = table_by_id(db, &r, lsn, &t);
		if (rc)
			return rc;
		cohort_column_def def;
		char name[COHORT_MAX_NAME + 1];
		get_coldef(&r, &def, name);
		if (r.bad)
			return bad_record(lsn, "truncated add column");
		return cohort_table_add_column(t, &def, NULL);
	}
	case REC_PUT:
	case REC_EVENT:
	case REC_DELETE:
		return replay_row(db, &r, lsn, type);
	case REC_PERSONA_MODEL:
	case REC_PERSONA_NAME:
	case REC_PERSONA_DROP:
		return persona_replay(db, type, &r, lsn);
	case REC_INDEX_CREATE:
	case REC_INDEX_DROP:
		return ann_replay(db, type, &r, lsn);
	default:
		return bad_record(lsn, "unknown record type");
	}
}

/* ------------------------------------------------------------------------
 * Snapshots
 * ------------------------------------------------------------------------ */

/* The cut: no write is half done while these are held. Order: the
 * database lock, every similarity index's worker (so the forked child
 * finds no graph half changed), then per table every stripe, then
 * alloc_lock. */
static void cut_take(cohort_db *db)
{
	pthread_mutex_lock(&db->lock);
	size_t n = cohort_db_ntables(db);
	for (size_t i = 0; i < n; i++)
		ann_pause(db->tables[i]);
	for (size_t i = 0; i < n; i++) {
		table_rdlock_all(db->tables[i]);
		pthread_mutex_lock(&db->tables[i]->alloc_lock);
	}
}

static void cut_release(cohort_db *db)
{
	size_t n = cohort_db_ntables(db);
	for (size_t i = n; i-- > 0;) {
		pthread_mutex_unlock(&db->tables[i]->alloc_lock);
		table_unlock_all(db->tables[i]);
	}
	for (size_t i = n; i-- > 0;)
		ann_resume(db->tables[i]);
	pthread_mutex_unlock(&db->lock);
}

/* One snapshot; the caller holds snap_lock. */
static int snapshot_locked(cohort_db *db)
{
	cut_take(db);
	uint64_t lsn = 0;
	int rc = wal_rotate(db->wal, &lsn);
	pid_t child = 0;
	if (rc == 0)
		rc = snapshot_fork(db, lsn, &child);
	cut_release(db);
	if (rc)
		return rc;
	rc = snapshot_wait(child, lsn);
	if (rc == 0)
		snapshot_prune(db->dir, lsn);
	return rc;
}

int cohort_snapshot(cohort_db *db)
{
	if (!db)
		return seterr(COHORT_EINVAL, "cohort_snapshot: NULL database");
	if (!db->wal)
		return seterr(COHORT_EINVAL, "cohort_snapshot: the database is "
			      "in memory only");
	pthread_mutex_lock(&db->snap_lock);
	int rc = snapshot_locked(db);
	pthread_mutex_unlock(&db->snap_lock);
	return rc;
}

/* Background: a snapshot whenever snapshot_log_bytes of log have been
 * appended since the last one. */
static void *auto_snapshots(void *arg)
{
	cohort_db *db = arg;
	pthread_mutex_lock(&db->snap_lock);
	while (!db->snap_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&db->snap_cv, &db->snap_lock, &ts);
		if (db->snap_stop)
			break;
		if (wal_bytes_since_rotate(db->wal) >= db->opts.snapshot_log_bytes &&
		    wal_error(db->wal) == 0) {
			int rc = snapshot_locked(db);
			if (rc)
				fprintf(stderr, "cohort: automatic snapshot of %s "
					"failed: %s\n", db->dir,
					cohort_errdetail());
		}
	}
	pthread_mutex_unlock(&db->snap_lock);
	return NULL;
}

/* ------------------------------------------------------------------------
 * Opening a directory
 * ------------------------------------------------------------------------ */
int persist_open(cohort_db *db, const char *dir)
{
	if (mkdir(dir, 0700) && errno != EEXIST)
		return seterr(COHORT_EIO, "cannot create %s: %s", dir,
			      strerror(errno));
	db->dir = cmalloc(strlen(dir) + 1);
	if (!db->dir)
		return seterr(COHORT_ENOMEM, "out of memory");
	strcpy(db->dir, dir);
	char path[4200];
	snprintf(path, sizeof(path), "%s/LOCK", dir);
	db->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (db->lock_fd < 0)
		return seterr(COHORT_EIO, "cannot open %s: %s", path,
			      strerror(errno));
	if (flock(db->lock_fd, LOCK_EX | LOCK_NB))
		return seterr(COHORT_EBUSY, "%s is in use by another process",
			      dir);

	/* the newest snapshot, then the log records after it */
	uint64_t snap = 0, last = 0;
	char snap_path[4200];
	int rc = snapshot_newest(dir, &snap, snap_path, sizeof(snap_path));
	char lost[sizeof(db->recovery)] = "";
	if (rc == 0 && snap_path[0]) {
		uint64_t inner = 0;
		rc = snapshot_load(db, snap_path, db->opts.salvage, &inner, lost,
				   sizeof(lost));
		if (rc == 0 && inner != snap)
			rc = seterr(COHORT_ECORRUPT, "snapshot %s says LSN %llu",
				    snap_path, (unsigned long long)inner);
	}
	if (rc)
		return rc;
	rc = wal_replay(dir, snap, db->opts.salvage, replay_cb, db, &last,
			db->recovery, sizeof(db->recovery));
	if (rc)
		return rc;
	if (last < snap)
		last = snap;
	if (lost[0]) {
		size_t used = strlen(db->recovery);
		snprintf(db->recovery + used, sizeof(db->recovery) - used,
			 "%ssnapshot %s: %s", used ? "; " : "", snap_path, lost);
	}
	if (db->recovery[0])
		fprintf(stderr, "cohort: recovery of %s: %s\n", dir,
			db->recovery);
	wal_config cfg = { (int)db->opts.fsync, db->opts.fsync_interval_ms,
			   db->opts.no_uring, db->opts.no_direct };
	rc = wal_open(dir, &cfg, last + 1, &db->wal);
	if (rc)
		return rc;
	/* segments and snapshots the newest snapshot made redundant */
	if (snap)
		snapshot_prune(dir, snap);
	pthread_mutex_init(&db->snap_lock, NULL);
	pthread_cond_init(&db->snap_cv, NULL);
	db->snap_ready = true;
	if (db->opts.snapshot_log_bytes &&
	    pthread_create(&db->snap_thread, NULL, auto_snapshots, db) == 0)
		db->snap_thread_on = true;
	/* A salvaged snapshot is replaced at once by one of what was
	 * recovered, so the next open needs no salvage. */
	if (lost[0]) {
		pthread_mutex_lock(&db->snap_lock);
		rc = snapshot_locked(db);
		pthread_mutex_unlock(&db->snap_lock);
	}
	return rc;
}

int persist_close(cohort_db *db)
{
	int rc = 0;
	if (db->snap_ready) {
		pthread_mutex_lock(&db->snap_lock);
		db->snap_stop = true;
		pthread_cond_signal(&db->snap_cv);
		pthread_mutex_unlock(&db->snap_lock);
		if (db->snap_thread_on)
			pthread_join(db->snap_thread, NULL);
		pthread_mutex_destroy(&db->snap_lock);
		pthread_cond_destroy(&db->snap_cv);
		db->snap_ready = false;
	}
	if (db->wal)
		rc = wal_close(db->wal);
	db->wal = NULL;
	if (db->lock_fd >= 0)
		close(db->lock_fd);
	db->lock_fd = -1;
	cfree(db->dir);
	db->dir = NULL;
	return rc;
}

const char *cohort_db_io_path(const cohort_db *db)
{
	return db && db->wal ? wal_io_path(db->wal) : "memory";
}

const char *cohort_db_log_mode(const cohort_db *db)
{
	return db && db->wal ? wal_write_mode(db->wal) : "memory";
}

const char *cohort_db_recovery(const cohort_db *db)
{
	return db ? db->recovery : "";
}
