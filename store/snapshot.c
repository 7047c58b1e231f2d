/*
 * snapshot.c -- columnar snapshots; format and protocol in snapshot_int.h.
 *
 * The writer runs in a forked child over a frozen copy of memory, so it
 * reads tables without locks. The loader runs at open, before the log is
 * replayed and before any other thread can see the database.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crc32c.h"
#include "io_int.h"
#include "ann_int.h"
#include "persona_int.h"
#include "snapshot_int.h"
#include "wal_int.h"

#define SNAP_MAGIC "COHSNAP1"
#define SNAP_VERSION 1
#define SEC_HEADER 24
#define OUT_BUF (1u << 20)

enum { SEC_TABLE = 1, SEC_KEYS, SEC_TIMES, SEC_COLUMN, SEC_END, SEC_PERSONA,
       SEC_INDEX };

/* ------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------ */
typedef struct out {
	int fd;
	unsigned char *buf;
	size_t len;
	off_t off;               /* file offset of buf[0] */
	off_t sec;               /* offset of the open section's header */
	uint32_t crc;            /* running CRC of the open section's payload */
	uint64_t sec_len;
	int err;                 /* first -errno */
} out;

static void out_flush(out *o)
{
	if (o->err || o->len == 0)
		return;
	int rc = io_pwrite_all(o->fd, o->buf, o->len, o->off);
	if (rc)
		o->err = rc;
	o->off += (off_t)o->len;
	o->len = 0;
}

static void out_raw(out *o, const void *p, size_t n)
{
	const unsigned char *s = p;
	while (n && !o->err) {
		size_t k = OUT_BUF - o->len < n ? OUT_BUF - o->len : n;
		memcpy(o->buf + o->len, s, k);
		o->len += k;
		s += k;
		n -= k;
		if (o->len == OUT_BUF)
			out_flush(o);
	}
}

/* payload bytes: counted and checksummed */
static void out_put(out *o, const void *p, size_t n)
{
	o->crc = crc32c(o->crc, p, n);
	o->sec_len += n;
	out_raw(o, p, n);
}

static void put_u8(out *o, uint8_t v) { out_put(o, &v, 1); }
static void put_u16(out *o, uint16_t v) { out_put(o, &v, 2); }
static void put_u32(out *o, uint32_t v) { out_put(o, &v, 4); }
static void put_u64(out *o, uint64_t v) { out_put(o, &v, 8); }

static void sec_begin(out *o)
{
	out_flush(o);
	o->sec = o->off;
	unsigned char zero[SEC_HEADER] = { 0 };
	out_raw(o, zero, sizeof(zero));
	o->crc = 0;
	o->sec_len = 0;
}

static void sec_end(out *o, uint32_t kind, uint32_t table, uint32_t column)
{
	uint32_t pcrc = o->crc;
	out_raw(o, &pcrc, 4);
	out_flush(o);
	unsigned char h[SEC_HEADER];
	memcpy(h, &kind, 4);
	memcpy(h + 4, &table, 4);
	memcpy(h + 8, &column, 4);
	memcpy(h + 12, &o->sec_len, 8);
	uint32_t hcrc = crc32c(0, h, 20);
	memcpy(h + 20, &hcrc, 4);
	if (!o->err) {
		int rc = io_pwrite_all(o->fd, h, SEC_HEADER, o->sec);
		if (rc)
			o->err = rc;
	}
}

/*
 * Write `width` bytes for every live slot below hwm, taken from per-chunk
 * arrays with `stride` bytes per slot (plane(ctx, chunk) gives the array).
 * Runs of consecutive live slots go out as one copy: with no deletes, a
 * whole chunk is one run.
 */
typedef const void *(*plane_fn)(const void *ctx, uint32_t chunk);

static void put_live(out *o, const cohort_table *t, uint32_t hwm,
		     plane_fn plane, const void *ctx, size_t stride,
		     size_t width)
{
	for (uint32_t c0 = 0; c0 < hwm; c0 += CHUNK_ROWS) {
		const uint64_t *lv = tab_chunk(t, c0)->live;
		const char *base = plane(ctx, c0 >> CHUNK_SHIFT);
		uint32_t n = hwm - c0 < CHUNK_ROWS ? hwm - c0 : CHUNK_ROWS;
		uint32_t i = 0;
		while (i < n) {
			if (!((lv[i >> 6] >> (i & 63)) & 1)) {
				i++;
				continue;
			}
			uint32_t j = i + 1;
			while (j < n && ((lv[j >> 6] >> (j & 63)) & 1))
				j++;
			if (stride == width) {
				out_put(o, base + (size_t)i * stride,
					(size_t)(j - i) * stride);
			} else {
				for (uint32_t k = i; k < j; k++)
					out_put(o, base + (size_t)k * stride, width);
			}
			i = j;
		}
	}
}

static const void *times_of(const void *ctx, uint32_t chunk)
{
	const cohort_table *t = ctx;
	return tab_chunk(t, chunk << CHUNK_SHIFT)->time;
}

static const void *plane0_of(const void *ctx, uint32_t chunk)
{
	return col_chunk((const tcol *)ctx, chunk << CHUNK_SHIFT)->plane0;
}

static const void *plane1_of(const void *ctx, uint32_t chunk)
{
	return col_chunk((const tcol *)ctx, chunk << CHUNK_SHIFT)->plane1;
}

static void write_table(out *o, cohort_table *t)
{
	uint32_t id = t->id, hwm = atomic_load(&t->hwm);
	int ncols = table_ncols(t);
	uint64_t nrows = 0;
	for (uint32_t s = 0; s < hwm; s++)
		nrows += slot_live(t, s);

	/* the schema as the log's create-table record has it, then the rows */
	cohort_column_def *defs = schema_defs_of(t);
	recbuf rec;
	rec_init(&rec);
	if (!defs || rec_create_table(&rec, t->name, t->ttl_ms, defs,
				      (size_t)ncols)) {
		cfree(defs);
		rec_free(&rec);
		o->err = -ENOMEM;
		return;
	}
	sec_begin(o);
	out_put(o, rec.p, rec.len);
	put_u64(o, nrows);
	sec_end(o, SEC_TABLE, id, 0);
	cfree(defs);
	rec_free(&rec);

	sec_begin(o);
	for (uint32_t s = 0; s < hwm; s++) {
		if (!slot_live(t, s))
			continue;
		uint32_t len;
		const char *k = table_slot_key(t, s, &len);
		put_u8(o, (uint8_t)len);
		out_put(o, k, len);
	}
	sec_end(o, SEC_KEYS, id, 0);

	sec_begin(o);
	put_live(o, t, hwm, times_of, t, 8, 8);
	sec_end(o, SEC_TIMES, id, 0);

	for (int i = 0; i < ncols; i++) {
		const tcol *c = t->cols[i];
		sec_begin(o);
		/* validity, packed over the live rows */
		uint64_t word = 0, nbit = 0;
		for (uint32_t s = 0; s < hwm; s++) {
			/* a word of 64 live slots, aligned both sides: as is */
			if ((s & 63) == 0 && (nbit & 63) == 0 && s + 64 <= hwm &&
			    tab_chunk(t, s)->live[slot_off(s) >> 6] == ~UINT64_C(0)) {
				put_u64(o, col_chunk(c, s)->valid[slot_off(s) >> 6]);
				nbit += 64;
				s += 63;
				continue;
			}
			if (!slot_live(t, s))
				continue;
			if (bit_get(col_chunk(c, s)->valid, slot_off(s)))
				word |= UINT64_C(1) << (nbit & 63);
			if ((++nbit & 63) == 0) {
				put_u64(o, word);
				word = 0;
			}
		}
		if (nbit & 63)
			put_u64(o, word);
		/* cat: only the strings live rows use, renumbered densely */
		uint32_t *remap = NULL;
		if (c->type == COHORT_CAT) {
			uint32_t nd = dict_count(c->dict), used = 0;
			remap = ccalloc(nd ? nd : 1, sizeof(uint32_t));
			if (!remap) {
				o->err = -ENOMEM;
				return;
			}
			for (uint32_t s = 0; s < hwm; s++) {
				colchunk *ch = col_chunk(c, s);
				uint32_t code = ((uint32_t *)ch->plane0)[slot_off(s)];
				if (slot_live(t, s) && bit_get(ch->valid, slot_off(s)) &&
				    code < nd && remap[code] == 0)
					remap[code] = ++used;
			}
			put_u32(o, used);
			/* strings in the order of their new codes */
			for (uint32_t code = 0; code < nd; code++) {
				if (!remap[code])
					continue;
				uint32_t len;
				const char *str = dict_get(c->dict, code, &len);
				put_u16(o, (uint16_t)len);
				out_put(o, str, len);
			}
			/* new codes: rank of the old code among the used ones */
			for (uint32_t code = 0, rank = 0; code < nd; code++)
				if (remap[code])
					remap[code] = rank++;
		}
		size_t vw = c->type == COHORT_VEC ? c->dim * sizeof(float) : c->width;
		if (remap) {
			for (uint32_t s = 0; s < hwm; s++) {
				if (!slot_live(t, s))
					continue;
				colchunk *ch = col_chunk(c, s);
				uint32_t code = 0;
				if (bit_get(ch->valid, slot_off(s)))
					code = remap[((const uint32_t *)
						      ch->plane0)[slot_off(s)]];
				put_u32(o, code);
			}
		} else {
			put_live(o, t, hwm, plane0_of, c, c->width, vw);
		}
		cfree(remap);
		if (c->has_plane1)
			put_live(o, t, hwm, plane1_of, c, 8, 8);
		sec_end(o, SEC_COLUMN, id, (uint32_t)i);
	}
}

static int out_put_cb(void *ctx, const void *p, size_t n)
{
	out *o = ctx;
	out_put(o, p, n);
	return o->err;
}

/* A table's similarity indexes; their slots become row ranks. */
static void write_indexes(out *o, cohort_table *t)
{
	int ni = atomic_load(&t->nindexes);
	if (ni == 0)
		return;
	uint32_t hwm = atomic_load(&t->hwm), r = 0;
	uint32_t *rank = cmalloc((hwm ? hwm : 1) * sizeof(uint32_t));
	if (!rank) {
		o->err = -ENOMEM;
		return;
	}
	for (uint32_t s = 0; s < hwm; s++)
		rank[s] = slot_live(t, s) ? r++ : UINT32_MAX;
	for (int i = 0; i < ni && !o->err; i++) {
		sec_begin(o);
		int rc = ann_encode(t, i, rank, out_put_cb, o);
		if (rc && !o->err)
			o->err = rc < 0 ? rc : -ENOMEM;
		sec_end(o, SEC_INDEX, t->id, (uint32_t)i);
	}
	cfree(rank);
}

int snapshot_write(cohort_db *db, const char *dir, uint64_t lsn)
{
	char tmp[4200], final[4200];
	snprintf(tmp, sizeof(tmp), "%s/snap-%020" PRIu64 ".tmp", dir, lsn);
	snprintf(final, sizeof(final), "%s/snap-%020" PRIu64 ".snap", dir, lsn);
	out o = { 0 };
	o.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (o.fd < 0)
		return -errno;
	o.buf = cmalloc(OUT_BUF);
	if (!o.buf) {
		close(o.fd);
		return -ENOMEM;
	}
	uint32_t ntables = (uint32_t)cohort_db_ntables(db), version = SNAP_VERSION;
	unsigned char h[28];
	memcpy(h, SNAP_MAGIC, 8);
	memcpy(h + 8, &version, 4);
	memcpy(h + 12, &ntables, 4);
	memcpy(h + 16, &lsn, 8);
	uint32_t hcrc = crc32c(0, h, 24);
	memcpy(h + 24, &hcrc, 4);
	out_raw(&o, h, sizeof(h));
	for (uint32_t i = 0; i < ntables && !o.err; i++)
		write_table(&o, db->tables[i]);
	/* persona models after every table: each is rebuilt over its rows */
	for (uint32_t i = 0; i < ntables && !o.err; i++) {
		cohort_table *t = db->tables[i];
		int nm = atomic_load(&t->nmodels);
		for (int j = 0; j < nm && !o.err; j++) {
			recbuf rec;
			rec_init(&rec);
			int prc = persona_encode(t, j, &rec);
			if (prc < 0)
				o.err = -ENOMEM;
			if (prc == 0) {
				sec_begin(&o);
				out_put(&o, rec.p, rec.len);
				sec_end(&o, SEC_PERSONA, i, (uint32_t)j);
			}
			rec_free(&rec);
		}
	}
	for (uint32_t i = 0; i < ntables && !o.err; i++)
		write_indexes(&o, db->tables[i]);
	sec_begin(&o);
	sec_end(&o, SEC_END, 0, 0);
	out_flush(&o);
	int rc = o.err;
	if (!rc)
		rc = io_fdatasync(o.fd);
	if (close(o.fd) && !rc)
		rc = -errno;
	cfree(o.buf);
	if (!rc && rename(tmp, final))
		rc = -errno;
	if (!rc)
		rc = io_fsync_dir(dir);
	if (rc)
		unlink(tmp);
	return rc;
}

int snapshot_fork(cohort_db *db, uint64_t lsn, pid_t *child)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return seterr(COHORT_EIO, "snapshot: fork: %s", strerror(errno));
	if (pid == 0) {
		/* The child: one thread, a frozen copy of the database. Its
		 * copy of the directory lock goes at once, so that if the
		 * parent dies the directory is free for the next open. */
		if (db->lock_fd >= 0)
			close(db->lock_fd);
		/* A snapshot outliving its database could race with the next
		 * process's own snapshot of the same LSN: die with the parent
		 * (its temp file is removed by the next prune). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		int rc = snapshot_write(db, db->dir, lsn);
		_exit(rc ? (-rc & 0x7f) : 0);
	}
	*child = pid;
	return 0;
}

int snapshot_wait(pid_t child, uint64_t lsn)
{
	int status;
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			return seterr(COHORT_EIO, "snapshot: waitpid: %s",
				      strerror(errno));
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status))
		return seterr(COHORT_EIO, "snapshot at LSN %" PRIu64 " failed: "
			      "%s", lsn, strerror(WEXITSTATUS(status)));
	return seterr(COHORT_EIO, "snapshot at LSN %" PRIu64 ": writer died "
		      "(signal %d)", lsn, WIFSIGNALED(status) ?
		      WTERMSIG(status) : 0);
}

/* ------------------------------------------------------------------------
 * Finding and pruning
 * ------------------------------------------------------------------------ */
static bool parse_name(const char *name, const char *prefix, const char *ext,
		       uint64_t *lsn)
{
	size_t pl = strlen(prefix), el = strlen(ext);
	if (strlen(name) != pl + 20 + el || strncmp(name, prefix, pl) ||
	    strcmp(name + pl + 20, ext))
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < 20; i++) {
		char ch = name[pl + i];
		if (ch < '0' || ch > '9')
			return false;
		v = v * 10 + (uint64_t)(ch - '0');
	}
	*lsn = v;
	return true;
}

int snapshot_newest(const char *dir, uint64_t *lsn, char *path, size_t len)
{
	*lsn = 0;
	path[0] = 0;
	DIR *d = opendir(dir);
	if (!d)
		return seterr(COHORT_EIO, "cannot read %s: %s", dir,
			      strerror(errno));
	struct dirent *e;
	bool found = false;
	while ((e = readdir(d)) != NULL) {
		uint64_t l;
		if (parse_name(e->d_name, "snap-", ".snap", &l) &&
		    (!found || l > *lsn)) {
			*lsn = l;
			found = true;
			snprintf(path, len, "%s/%s", dir, e->d_name);
		}
	}
	closedir(d);
	return 0;
}

int snapshot_prune(const char *dir, uint64_t lsn)
{
	DIR *d = opendir(dir);
	if (!d)
		return seterr(COHORT_EIO, "cannot read %s: %s", dir,
			      strerror(errno));
	struct dirent *e;
	char path[4200];
	while ((e = readdir(d)) != NULL) {
		uint64_t l;
		if ((parse_name(e->d_name, "snap-", ".snap", &l) && l < lsn) ||
		    parse_name(e->d_name, "snap-", ".tmp", &l)) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			unlink(path);
		}
	}
	closedir(d);
	/* the log segments the snapshot covers are the log's to remove */
	return wal_prune(dir, lsn);
}

/* ------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------ */
typedef struct in {
	const unsigned char *p;
	size_t len, off;
	const char *path;
} in;

typedef struct section {
	uint32_t kind, table, column;
	const unsigned char *p;
	uint64_t len;
	size_t at;               /* file offset of the header */
} section;

static int corrupt(const in *r, size_t at, const char *what)
{
	return seterr(COHORT_ECORRUPT, "snapshot %s: %s at offset %zu", r->path,
		      what, at);
}

/* The next section's header (checked); the payload is checked later by
 * section_verify, possibly on another thread. */
static int next_header(in *r, section *s)
{
	s->at = r->off;
	if (r->len - r->off < SEC_HEADER)
		return corrupt(r, r->off, "truncated section header");
	const unsigned char *h = r->p + r->off;
	uint32_t hcrc;
	memcpy(&hcrc, h + 20, 4);
	if (crc32c(0, h, 20) != hcrc)
		return corrupt(r, r->off, "bad section header checksum");
	memcpy(&s->kind, h, 4);
	memcpy(&s->table, h + 4, 4);
	memcpy(&s->column, h + 8, 4);
	memcpy(&s->len, h + 12, 8);
	if (s->len > r->len - r->off - SEC_HEADER ||
	    r->len - r->off - SEC_HEADER - s->len < 4)
		return corrupt(r, r->off, "section longer than the file");
	s->p = h + SEC_HEADER;
	r->off += SEC_HEADER + s->len + 4;
	return 0;
}

static int section_verify(const in *r, const section *s)
{
	uint32_t pcrc;
	memcpy(&pcrc, s->p + s->len, 4);
	if (crc32c(0, s->p, s->len) != pcrc)
		return corrupt(r, s->at, "bad section checksum");
	return 0;
}

static int load_table(cohort_db *db, in *r, const section *s)
{
	bytes_in b = { s->p, s->len, 0, false };
	schema sc;
	int rc = schema_read(&b, &sc);
	if (rc == COHORT_ENOMEM)
		rc = seterr(rc, "snapshot: out of memory");
	else if (rc || b.len - b.off != 8)   /* then the row count */
		rc = corrupt(r, s->at, "bad table section");
	else
		rc = cohort_table_create(db, sc.name, sc.defs, sc.ncols,
					 &sc.opts, NULL);
	schema_free(&sc);
	return rc;
}

static int load_rows(cohort_table *t, in *r, const section *keys,
		     const section *times, uint64_t nrows)
{
	bytes_in k = { keys->p, keys->len, 0, false };
	bytes_in tm = { times->p, times->len, 0, false };
	if (times->len != nrows * 8)
		return corrupt(r, times->at, "row times do not match the rows");
	/* Pass 1, in row order: slots, keys, times, and each key's hash. */
	uint64_t *hashes = cmalloc((nrows ? nrows : 1) * sizeof(uint64_t));
	uint64_t *sorted = cmalloc((nrows ? nrows : 1) * sizeof(uint64_t));
	if (!hashes || !sorted) {
		cfree(hashes);
		cfree(sorted);
		return seterr(COHORT_ENOMEM, "snapshot: out of memory");
	}
	int rc = 0;
	for (uint64_t i = 0; i < nrows && rc == 0; i++) {
		uint8_t len = (uint8_t)bin_uint(&k, 1);
		const void *key = bin_take(&k, len);
		int64_t time = (int64_t)bin_uint(&tm, 8);
		if (!key || len == 0) {
			rc = corrupt(r, keys->at, "bad key");
			break;
		}
		/* no duplicate check: the section's checksum vouches for what
		 * the writer wrote, and the writer wrote a key map's keys */
		uint32_t slot;
		rc = table_slot_alloc(t, key, len, &slot);
		if (rc == 0 && slot != i)
			rc = corrupt(r, keys->at, "rows out of order");
		if (rc == 0) {
			tab_chunk(t, slot)->time[slot_off(slot)] = time;
			hashes[i] = key_hash(key, len);
		}
	}
	/* Pass 2: the key map entries sorted by stripe (a counting sort on
	 * the stripe bits), then each stripe filled from a sequential run,
	 * its table in cache while it fills. */
	uint32_t start[NSTRIPES + 1] = { 0 };
	for (uint64_t i = 0; i < nrows && rc == 0; i++)
		start[(hashes[i] >> 56) + 1]++;
	for (int b = 0; b < NSTRIPES; b++)
		start[b + 1] += start[b];
	uint32_t fill[NSTRIPES];
	memcpy(fill, start, sizeof(fill));
	for (uint64_t i = 0; i < nrows && rc == 0; i++)
		sorted[fill[hashes[i] >> 56]++] = keymap_entry(hashes[i],
							       (uint32_t)i);
	for (int b = 0; b < NSTRIPES && rc == 0; b++)
		rc = keymap_insert_entries(t, &t->stripes[b], sorted + start[b],
					   start[b + 1] - start[b]);
	cfree(hashes);
	cfree(sorted);
	if (rc)
		return rc;
	if (k.off != k.len)
		return corrupt(r, keys->at, "trailing bytes after the keys");
	return 0;
}

static int load_column(cohort_table *t, in *r, const section *s,
		       uint64_t nrows)
{
	const tcol *c = t->cols[s->column];
	bytes_in cu = { s->p, s->len, 0, false };
	uint64_t nwords = (nrows + 63) / 64;
	const unsigned char *valid = bin_take(&cu, nwords * 8);
	uint32_t nstr = 0;
	if (c->type == COHORT_CAT) {
		nstr = (uint32_t)bin_uint(&cu, 4);
		for (uint32_t i = 0; i < nstr && !cu.bad; i++) {
			uint16_t len = (uint16_t)bin_uint(&cu, 2);
			const char *str = bin_take(&cu, len);
			uint32_t code;
			if (!str)
				break;
			int rc = dict_intern(c->dict, str, len, &code);
			if (rc)
				return rc;
			if (code != i)
				return corrupt(r, s->at, "repeated cat string");
		}
	}
	size_t vw = c->type == COHORT_VEC ? c->dim * sizeof(float) : c->width;
	const unsigned char *vals = bin_take(&cu, nrows * vw);
	const unsigned char *p1 = c->has_plane1 ? bin_take(&cu, nrows * 8) : NULL;
	if (cu.bad || cu.off != cu.len)
		return corrupt(r, s->at, "column section of the wrong size");
	for (uint64_t row0 = 0; row0 < nrows; row0 += CHUNK_ROWS) {
		uint32_t slot = (uint32_t)row0;
		colchunk *ch = col_chunk(c, slot);
		uint64_t n = nrows - row0 < CHUNK_ROWS ? nrows - row0 : CHUNK_ROWS;
		memcpy(ch->valid, valid + row0 / 8, (n + 63) / 64 * 8);
		if (n & 63)   /* bits past the last row stay clear */
			ch->valid[n / 64] &= (UINT64_C(1) << (n & 63)) - 1;
		if (c->type == COHORT_VEC) {
			for (uint64_t i = 0; i < n; i++)
				memcpy((char *)ch->plane0 + i * c->width,
				       vals + (row0 + i) * vw, vw);
		} else {
			memcpy(ch->plane0, vals + row0 * vw, n * vw);
		}
		if (p1)
			memcpy(ch->plane1, p1 + row0 * 8, n * 8);
		if (c->type == COHORT_CAT)
			for (uint64_t i = 0; i < n; i++)
				if (bit_get(ch->valid, (uint32_t)i) &&
				    ((uint32_t *)ch->plane0)[i] >= nstr)
					return corrupt(r, s->at, "bad cat code");
	}
	return 0;
}

/*
 * Loading is a pipeline of three threads. A reader streams the file into
 * memory in large sequential reads. This thread walks the section headers
 * as their bytes arrive, creates each table from its schema section, and
 * queues jobs: the keys and row times of a table, then each column. A
 * helper thread (and this one, once the walk is done) takes jobs in order,
 * waits for the job's bytes to have arrived, checks their checksum and
 * fills the table's pre-allocated chunks. So the disk, the key map and the
 * column copies run at the same time. Jobs touch disjoint memory; the error
 * reported is that of the first failing job in file order.
 */
#define FEED_STEP (8u << 20)

typedef struct feed {
	int fd;
	bool direct;             /* O_DIRECT: straight from the disk */
	const char *path;
	unsigned char *buf;
	size_t len;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t ready;            /* bytes read so far */
	int err;                 /* -errno of a failed read */
} feed;

static void feed_publish(feed *f, size_t ready, int err)
{
	pthread_mutex_lock(&f->mu);
	f->ready = ready > f->len ? f->len : ready;
	f->err = err;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

/*
 * The file through io_uring with several reads in flight (a queue depth of
 * one leaves the device idle between requests), published in file order as
 * the leading reads complete. Returns false, having read nothing, where
 * io_uring cannot be set up or the file system refuses O_DIRECT; the
 * caller then reads with pread.
 */
#define FEED_QD 16
#define FEED_URING_STEP (2u << 20)

static bool feed_uring(feed *f)
{
	struct io_uring ring;
	if (!f->direct || io_uring_queue_init(FEED_QD * 2, &ring, 0))
		return false;
	size_t nsteps = (f->len + FEED_URING_STEP - 1) / FEED_URING_STEP;
	uint8_t *done = ccalloc(nsteps ? nsteps : 1, 1);
	if (!done) {
		io_uring_queue_exit(&ring);
		return false;
	}
	size_t next = 0, prefix = 0;     /* steps submitted, steps in order */
	int inflight = 0, err = 0;
	bool refused = false;
	while (prefix < nsteps && !err) {
		while (inflight < FEED_QD && next < nsteps) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			if (!sqe)
				break;
			size_t off = next * FEED_URING_STEP;
			size_t want = f->len - off < FEED_URING_STEP ?
				((f->len - off + 4095) & ~(size_t)4095) :
				FEED_URING_STEP;
			io_uring_prep_read(sqe, f->fd, f->buf + off, (unsigned)want,
					   off);
			sqe->user_data = next++;
			inflight++;
		}
		int rc = io_uring_submit_and_wait(&ring, 1);
		if (rc < 0 && rc != -EINTR) {
			err = rc;
			break;
		}
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&ring, head, cqe) {
			size_t step = (size_t)cqe->user_data;
			size_t off = step * FEED_URING_STEP;
			size_t want = f->len - off < FEED_URING_STEP ?
				f->len - off : FEED_URING_STEP;
			int res = cqe->res;
			seen++;
			inflight--;
			if (res == -EINVAL && prefix == 0 && step == 0) {
				refused = true;     /* no O_DIRECT here */
				err = res;
				continue;
			}
			if (res < 0 && res != -EINTR && res != -EAGAIN) {
				err = res;
				continue;
			}
			/* retry, or finish a short read, with pread */
			size_t got = res > 0 ? (size_t)res : 0;
			while (got < want && !err) {
				size_t rest = ((want - got) + 4095) & ~(size_t)4095;
				ssize_t n = pread(f->fd, f->buf + off + got, rest,
						  (off_t)(off + got));
				if (n < 0 && errno == EINTR)
					continue;
				if (n <= 0)
					err = n < 0 ? -errno : -EIO;
				else
					got += (size_t)n;
			}
			done[step] = 1;
		}
		io_uring_cq_advance(&ring, seen);
		size_t before = prefix;
		while (prefix < nsteps && done[prefix])
			prefix++;
		if (prefix != before || err)
			feed_publish(f, prefix * FEED_URING_STEP, refused ? 0 : err);
	}
	/* let reads still in flight finish before the buffer can go */
	while (inflight > 0) {
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe(&ring, &cqe) < 0)
			break;
		io_uring_cqe_seen(&ring, cqe);
		inflight--;
	}
	io_uring_queue_exit(&ring);
	cfree(done);
	if (refused) {
		feed_publish(f, 0, 0);
		return false;
	}
	if (!err)
		feed_publish(f, f->len, 0);
	return true;
}

static void *feed_reader(void *arg)
{
	feed *f = arg;
	if (feed_uring(f))
		return NULL;
	size_t off = 0;
	int err = 0;
	while (off < f->len && !err) {
		/* whole pages, for O_DIRECT: the buffer is padded to a page */
		size_t want = f->len - off < FEED_STEP ?
			((f->len - off + 4095) & ~(size_t)4095) : FEED_STEP;
		ssize_t n = pread(f->fd, f->buf + off, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EINVAL && f->direct) {
			/* the file system refuses O_DIRECT: read through the
			 * page cache instead */
			int fd = open(f->path, O_RDONLY | O_CLOEXEC);
			if (fd >= 0) {
				close(f->fd);
				f->fd = fd;
				f->direct = false;
				continue;
			}
		}
		if (n <= 0)
			err = n < 0 ? -errno : -EIO;
		else
			off += (size_t)n;
		feed_publish(f, off, err);
	}
	return NULL;
}

/* Wait until bytes [0, end) are in memory: 0, or a read error. */
static int feed_wait(feed *f, const char *path, size_t end)
{
	pthread_mutex_lock(&f->mu);
	while (f->ready < end && !f->err)
		pthread_cond_wait(&f->cv, &f->mu);
	int err = f->ready >= end ? 0 : f->err;
	pthread_mutex_unlock(&f->mu);
	return err ? seterr(COHORT_EIO, "cannot read %s: %s", path,
			    strerror(-err)) : 0;
}

enum { JOB_ROWS, JOB_COLUMN };

typedef struct loadjob {
	int kind;
	cohort_table *t;
	section a, b;            /* ROWS: keys, times; COLUMN: a */
	uint64_t nrows;
	int rc;
	char msg[256];
} loadjob;

typedef struct loader {
	const in *r;
	feed *f;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	loadjob *jobs;
	size_t n, cap, next;
	bool done;               /* no more jobs will come */
} loader;

static int loader_push(loader *l, const loadjob *j)
{
	pthread_mutex_lock(&l->mu);
	if (l->n == l->cap) {
		/* workers hold no pointers into the array: indexes only */
		size_t cap = l->cap ? l->cap * 2 : 64;
		loadjob *nj = crealloc(l->jobs, cap * sizeof(loadjob));
		if (!nj) {
			pthread_mutex_unlock(&l->mu);
			return seterr(COHORT_ENOMEM, "snapshot: out of memory");
		}
		l->jobs = nj;
		l->cap = cap;
	}
	l->jobs[l->n++] = *j;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	return 0;
}

static int run_job(loader *l, loadjob *j)
{
	const section *last = j->kind == JOB_ROWS ? &j->b : &j->a;
	int rc = feed_wait(l->f, l->r->path, last->at + SEC_HEADER + last->len + 4);
	if (rc == 0)
		rc = section_verify(l->r, &j->a);
	if (rc == 0 && j->kind == JOB_ROWS)
		rc = section_verify(l->r, &j->b);
	if (rc == 0)
		rc = j->kind == JOB_ROWS ?
			load_rows(j->t, (in *)l->r, &j->a, &j->b, j->nrows) :
			load_column(j->t, (in *)l->r, &j->a, j->nrows);
	return rc;
}

static void *load_worker(void *arg)
{
	loader *l = arg;
	for (;;) {
		pthread_mutex_lock(&l->mu);
		while (l->next == l->n && !l->done)
			pthread_cond_wait(&l->cv, &l->mu);
		if (l->next == l->n) {
			pthread_mutex_unlock(&l->mu);
			break;
		}
		size_t i = l->next++;
		loadjob j = l->jobs[i];
		pthread_mutex_unlock(&l->mu);
		int rc = run_job(l, &j);
		pthread_mutex_lock(&l->mu);
		l->jobs[i].rc = rc;
		if (rc)
			snprintf(l->jobs[i].msg, sizeof(l->jobs[i].msg), "%s",
				 cohort_errdetail());
		pthread_mutex_unlock(&l->mu);
	}
	return NULL;
}

/* Walk the sections as they arrive, creating tables and queueing jobs. */
static int discover(cohort_db *db, in *r, feed *f, loader *l, uint32_t ntables,
		    section **personas, size_t *npersonas)
{
	int rc = 0;
	for (uint32_t ti = 0; ti < ntables && rc == 0; ti++) {
		section st, sk, stm;
		rc = feed_wait(f, r->path, r->off + SEC_HEADER);
		if (rc == 0)
			rc = next_header(r, &st);
		if (rc == 0)
			rc = feed_wait(f, r->path, r->off);
		if (rc == 0)
			rc = section_verify(r, &st);
		if (rc)
			break;
		if (st.kind != SEC_TABLE || st.table != ti) {
			rc = corrupt(r, st.at, "expected a table section");
			break;
		}
		rc = load_table(db, r, &st);
		if (rc)
			break;
		cohort_table *t = db->tables[ti];
		uint64_t nrows;
		memcpy(&nrows, st.p + st.len - 8, 8);
		rc = table_reserve(t, nrows);
		if (rc == 0)
			rc = feed_wait(f, r->path, r->off + SEC_HEADER);
		if (rc == 0)
			rc = next_header(r, &sk);
		if (rc == 0)
			rc = feed_wait(f, r->path, r->off + SEC_HEADER);
		if (rc == 0)
			rc = next_header(r, &stm);
		if (rc)
			break;
		if (sk.kind != SEC_KEYS || stm.kind != SEC_TIMES ||
		    sk.table != ti || stm.table != ti) {
			rc = corrupt(r, sk.at, "expected keys and times");
			break;
		}
		loadjob j = { JOB_ROWS, t, sk, stm, nrows, 0, "" };
		rc = loader_push(l, &j);
		for (int ci = 0; ci < table_ncols(t) && rc == 0; ci++) {
			section sc;
			rc = feed_wait(f, r->path, r->off + SEC_HEADER);
			if (rc == 0)
				rc = next_header(r, &sc);
			if (rc == 0 && (sc.kind != SEC_COLUMN || sc.table != ti ||
					sc.column != (uint32_t)ci))
				rc = corrupt(r, sc.at, "expected a column section");
			if (rc == 0) {
				loadjob jc = { JOB_COLUMN, t, sc, sc, nrows, 0, "" };
				rc = loader_push(l, &jc);
			}
		}
	}
	for (bool end = false; rc == 0 && !end;) {
		section se;
		rc = feed_wait(f, r->path, r->off + SEC_HEADER);
		if (rc == 0)
			rc = next_header(r, &se);
		if (rc == 0)
			rc = feed_wait(f, r->path, r->off);
		if (rc == 0)
			rc = section_verify(r, &se);
		if (rc)
			break;
		if ((se.kind == SEC_PERSONA || se.kind == SEC_INDEX) &&
		    se.table < ntables) {
			section *p = crealloc(*personas,
					      (*npersonas + 1) * sizeof(section));
			if (!p)
				return seterr(COHORT_ENOMEM, "snapshot: out of "
					      "memory");
			p[(*npersonas)++] = se;
			*personas = p;
			continue;
		}
		if (se.kind != SEC_END || r->off != r->len)
			rc = corrupt(r, se.at, "bad end of snapshot");
		end = true;
	}
	return rc;
}

int snapshot_load(cohort_db *db, const char *path, bool salvage,
		  uint64_t *lsn, char *lost, size_t lost_len)
{
	lost[0] = 0;
	/* O_DIRECT: the file is read once, so it need not pass through (and
	 * be copied out of) the page cache */
	feed f = { .fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT),
		   .direct = true, .path = path };
	if (f.fd < 0) {
		f.fd = open(path, O_RDONLY | O_CLOEXEC);
		f.direct = false;
	}
	if (f.fd < 0)
		return seterr(COHORT_EIO, "cannot open %s: %s", path,
			      strerror(errno));
	struct stat st;
	if (fstat(f.fd, &st)) {
		close(f.fd);
		return seterr(COHORT_EIO, "cannot stat %s", path);
	}
	f.len = (size_t)st.st_size;
	f.buf = caligned(4096, (f.len + 4095) & ~(size_t)4095);
	if (!f.buf) {
		close(f.fd);
		return seterr(COHORT_ENOMEM, "snapshot: out of memory for %s",
			      path);
	}
	posix_fadvise(f.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	pthread_mutex_init(&f.mu, NULL);
	pthread_cond_init(&f.cv, NULL);
	loader l = { .f = &f };
	pthread_mutex_init(&l.mu, NULL);
	pthread_cond_init(&l.cv, NULL);
	in r = { f.buf, f.len, 0, path };
	l.r = &r;
	pthread_t reader, helper[2];
	bool reading = pthread_create(&reader, NULL, feed_reader, &f) == 0;
	if (!reading)
		feed_reader(&f);
	/* two workers: this thread mostly waits for bytes while it walks the
	 * headers, and the keys job alone must not hold up the columns */
	int helping = 0;
	while (helping < 2 &&
	       pthread_create(&helper[helping], NULL, load_worker, &l) == 0)
		helping++;

	uint32_t version = 0, ntables = 0, hcrc = 0;
	int rc = feed_wait(&f, path, f.len < 28 ? f.len : 28);
	if (rc == 0 && (f.len < 28 || memcmp(f.buf, SNAP_MAGIC, 8)))
		rc = corrupt(&r, 0, "not a cohort snapshot");
	if (rc == 0) {
		memcpy(&version, f.buf + 8, 4);
		memcpy(&ntables, f.buf + 12, 4);
		memcpy(lsn, f.buf + 16, 8);
		memcpy(&hcrc, f.buf + 24, 4);
		if (crc32c(0, f.buf, 24) != hcrc || version != SNAP_VERSION)
			rc = corrupt(&r, 0, "bad header");
	}
	r.off = 28;
	section *personas = NULL;
	size_t npersonas = 0;
	if (rc == 0)
		rc = discover(db, &r, &f, &l, ntables, &personas, &npersonas);
	pthread_mutex_lock(&l.mu);
	l.done = true;
	pthread_cond_broadcast(&l.cv);
	pthread_mutex_unlock(&l.mu);
	load_worker(&l);              /* this thread joins in */
	for (int i = 0; i < helping; i++)
		pthread_join(helper[i], NULL);
	if (reading)
		pthread_join(reader, NULL);

	/* the first failing job in file order, before a discovery error that
	 * comes later in the file */
	for (size_t i = 0; i < l.n; i++) {
		loadjob *j = &l.jobs[i];
		if (!j->rc)
			continue;
		if (rc && j->a.at > r.off)
			break;
		if (salvage && j->kind == JOB_COLUMN && j->rc == COHORT_ECORRUPT) {
			/* salvage: a damaged column reads null, and it is said */
			const tcol *c = j->t->cols[j->a.column];
			for (uint64_t r0 = 0; r0 < j->nrows; r0 += CHUNK_ROWS)
				memset(col_chunk(c, (uint32_t)r0)->valid, 0,
				       CHUNK_WORDS * 8);
			size_t used = strlen(lost);
			snprintf(lost + used, lost_len - used,
				 "%sLOST: column '%s' of table '%s' reads null "
				 "(%s)", used ? "; " : "", c->name, j->t->name,
				 j->msg);
			continue;
		}
		rc = seterr(j->rc, "%s", j->msg);
		break;
	}
	/* persona models last: their versions are built over the rows */
	for (size_t i = 0; i < npersonas && rc == 0; i++) {
		const section *ps = &personas[i];
		if (ps->kind == SEC_INDEX) {
			rc = ann_restore(db->tables[ps->table], ps->p, ps->len);
			if (rc == COHORT_ECORRUPT)
				rc = corrupt(&r, ps->at, "bad index section");
			continue;
		}
		bytes_in b = { ps->p, ps->len, 0, false };
		rc = persona_replay(db, REC_PERSONA_MODEL, &b, 0);
		if (rc == COHORT_ECORRUPT)
			rc = corrupt(&r, ps->at, "bad persona section");
	}
	cfree(personas);
	cfree(l.jobs);
	pthread_mutex_destroy(&l.mu);
	pthread_cond_destroy(&l.cv);
	pthread_mutex_destroy(&f.mu);
	pthread_cond_destroy(&f.cv);
	cfree(f.buf);
	close(f.fd);
	return rc;
}
