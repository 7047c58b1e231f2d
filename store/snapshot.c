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

/*
 * A table's rows are two jobs. load_keymap needs only the keys section: it
 * hashes every key and fills the key map, the entries sorted by stripe (a
 * counting sort on the stripe bits) so that each stripe's table fills from
 * one run while it is in cache. Slot i is row i (a fresh table allocates
 * slots in order, and load_slots checks it), so it needs no slot numbers
 * and runs beside load_slots, which allocates the slots (the key bytes go
 * into the arena); load_times then copies the row times.
 */
static int load_keymap(cohort_table *t, const in *r, const section *keys,
		       uint64_t nrows)
{
	bytes_in k = { keys->p, keys->len, 0, false };
	uint64_t *hashes = cmalloc((nrows ? nrows : 1) * sizeof(uint64_t));
	uint64_t *sorted = cmalloc((nrows ? nrows : 1) * sizeof(uint64_t));
	if (!hashes || !sorted) {
		cfree(hashes);
		cfree(sorted);
		return seterr(COHORT_ENOMEM, "snapshot: out of memory");
	}
	int rc = 0;
	uint32_t start[NSTRIPES + 1] = { 0 };
	for (uint64_t i = 0; i < nrows; i++) {
		uint8_t len = (uint8_t)bin_uint(&k, 1);
		const void *key = bin_take(&k, len);
		if (!key || len == 0) {
			rc = corrupt(r, keys->at, "bad key");
			break;
		}
		hashes[i] = key_hash(key, len);
		start[(hashes[i] >> 56) + 1]++;
	}
	if (rc == 0 && k.off != k.len)
		rc = corrupt(r, keys->at, "trailing bytes after the keys");
	if (rc == 0) {
		/* no duplicate check: the section's checksum vouches for what
		 * the writer wrote, and the writer wrote a key map's keys */
		for (int b = 0; b < NSTRIPES; b++)
			start[b + 1] += start[b];
		uint32_t fill[NSTRIPES];
		memcpy(fill, start, sizeof(fill));
		for (uint64_t i = 0; i < nrows; i++)
			sorted[fill[hashes[i] >> 56]++] =
				keymap_entry(hashes[i], (uint32_t)i);
		for (int b = 0; b < NSTRIPES && rc == 0; b++)
			rc = keymap_insert_entries(t, &t->stripes[b],
						   sorted + start[b],
						   start[b + 1] - start[b]);
	}
	cfree(hashes);
	cfree(sorted);
	return rc;
}

static int load_slots(cohort_table *t, const in *r, const section *keys,
		      uint64_t nrows)
{
	bytes_in k = { keys->p, keys->len, 0, false };
	for (uint64_t i = 0; i < nrows; i++) {
		uint8_t len = (uint8_t)bin_uint(&k, 1);
		const void *key = bin_take(&k, len);
		if (!key || len == 0)
			return corrupt(r, keys->at, "bad key");
		uint32_t slot;
		int rc = table_slot_alloc(t, key, len, key_hash(key, len),
					  &slot);
		if (rc)
			return rc;
		if (slot != i)
			return corrupt(r, keys->at, "rows out of order");
	}
	return 0;
}

/* The row times, a chunk at a time, over the "no time yet" of the slots. */
static int load_times(cohort_table *t, const in *r, const section *times,
		      uint64_t nrows)
{
	if (times->len != nrows * 8)
		return corrupt(r, times->at, "row times do not match the rows");
	for (uint64_t row0 = 0; row0 < nrows; row0 += CHUNK_ROWS) {
		uint64_t n = nrows - row0 < CHUNK_ROWS ? nrows - row0 : CHUNK_ROWS;
		memcpy(tab_chunk(t, (uint32_t)row0)->time, times->p + row0 * 8,
		       n * 8);
	}
	return 0;
}

/*
 * Loading is a pipeline. A reader thread streams the file into memory in
 * large sequential reads. This thread walks the section headers as their
 * bytes arrive, creates each table from its schema section, and queues
 * jobs: a table's slots (its chunks first), its key map, then each column.
 * Helper threads (and this one, while it waits for bytes and once the walk
 * is done) take jobs in order, wait for the job's bytes, check their
 * checksum and fill the table: a column fills each chunk as soon as the
 * slots job has reserved it. So the disk, the reserve (the kernel zeroing
 * every chunk's pages, the longest step), the key map and the column
 * copies run at the same time. Jobs touch disjoint memory; the error
 * reported is that of the first failing job in file order.
 *
 * The file's bytes sit at their own offsets in one mapping (so a section
 * is always one contiguous run), but its pages are recycled: a 2 MiB step
 * of the file that no job and no pending header still needs gives its
 * pages to the next read, moved there with mremap. Every fresh page costs
 * the kernel a zeroing pass and, in a virtual machine, often a fault in
 * the host too: on this project's VM a cold open that took a fresh page
 * for every byte of the file ran at half the disk's speed or less. The
 * reader holds at most FEED_HELD steps of pages while a consumer runs (it
 * will free steps, or come to wait); when none runs, all of them wait for
 * bytes or for each other, and it reads on into fresh pages: a section
 * larger than the limit never stalls the load.
 */
#define FEED_STEP (8u << 20)      /* a pread, on the fallback path */
#define FEED_QD 16                /* io_uring reads in flight */
#define FEED_URING_STEP (2u << 20) /* one read; a huge page; the recycling unit */
#define FEED_HELD 48              /* steps of pages the reader may hold */
/* Worker threads besides this one: the slots and the key map of a table
 * each keep one busy for a while, and the columns must not wait for them. */
#define LOAD_HELPERS 3

typedef struct feed {
	int fd;
	bool direct;             /* O_DIRECT: straight from the disk */
	const char *path;
	unsigned char *buf;      /* file offset 0, aligned to a step */
	void *map;               /* the mapping that holds buf */
	size_t map_len;
	size_t len;
	pthread_mutex_t mu;
	pthread_cond_t cv;       /* consumers: more bytes are ready */
	pthread_cond_t rcv;      /* reader: pages to recycle, a waiter, stop */
	size_t ready;            /* bytes read so far */
	int err;                 /* -errno of a failed read */
	/* recycling, under mu */
	size_t nsteps;
	uint32_t *users;         /* per step: queued jobs and pins using it */
	uint8_t *freed;          /* per step: its pages went to spare */
	size_t *spare;           /* steps whose pages nobody needs */
	size_t nspare;
	size_t held;             /* steps with pages, not spare */
	size_t done_to;          /* the walk needs no byte before this */
	size_t need;             /* the furthest byte a consumer waits for */
	int running;             /* consumers not waiting for bytes */
	bool reader_waits;
	bool recycle;            /* the io_uring reader is on: steps recycle */
	bool stop;               /* no more recycling: read on freely */
} feed;

/* The mapping for the file's bytes, aligned to a step so that a step is a
 * huge page where the kernel has them, and the recycling state. */
static int feed_alloc(feed *f)
{
	f->nsteps = (f->len + FEED_URING_STEP - 1) / FEED_URING_STEP;
	f->map_len = (f->nsteps + 1) * (size_t)FEED_URING_STEP;
	f->map = mmap(NULL, f->map_len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (f->map == MAP_FAILED) {
		f->map = NULL;
		return COHORT_ENOMEM;
	}
	uintptr_t at = ((uintptr_t)f->map + FEED_URING_STEP - 1) &
		       ~(uintptr_t)(FEED_URING_STEP - 1);
	f->buf = (unsigned char *)at;
	madvise(f->buf, f->nsteps * (size_t)FEED_URING_STEP, MADV_HUGEPAGE);
	size_t n = f->nsteps ? f->nsteps : 1;
	f->users = ccalloc(n, sizeof(uint32_t));
	f->freed = ccalloc(n, 1);
	f->spare = cmalloc(n * sizeof(size_t));
	if (!f->users || !f->freed || !f->spare) {
		cfree(f->users);
		cfree(f->freed);
		cfree(f->spare);
		munmap(f->map, f->map_len);
		return COHORT_ENOMEM;
	}
	f->running = 1;               /* the thread that walks the headers */
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	pthread_cond_init(&f->rcv, NULL);
	return 0;
}

static void feed_free(feed *f)
{
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
	pthread_cond_destroy(&f->rcv);
	cfree(f->users);
	cfree(f->freed);
	cfree(f->spare);
	munmap(f->map, f->map_len);
}

static void feed_publish(feed *f, size_t ready, int err)
{
	pthread_mutex_lock(&f->mu);
	f->ready = ready > f->len ? f->len : ready;
	f->err = err;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

/* Step j is no longer needed by anyone: its pages may go. Under mu. */
static void step_maybe_free(feed *f, size_t j)
{
	if (!f->recycle || f->users[j] || f->freed[j] ||
	    (j + 1) * (size_t)FEED_URING_STEP > f->done_to)
		return;
	f->freed[j] = 1;
	f->spare[f->nspare++] = j;
	f->held--;
	if (f->reader_waits)
		pthread_cond_signal(&f->rcv);
}

/* A job or a pin will read bytes [from, to): their steps stay. */
static void feed_hold(feed *f, size_t from, size_t to)
{
	pthread_mutex_lock(&f->mu);
	for (size_t j = from / FEED_URING_STEP;
	     j < f->nsteps && j * (size_t)FEED_URING_STEP < to; j++)
		f->users[j]++;
	pthread_mutex_unlock(&f->mu);
}

static void feed_release(feed *f, size_t from, size_t to)
{
	pthread_mutex_lock(&f->mu);
	for (size_t j = from / FEED_URING_STEP;
	     j < f->nsteps && j * (size_t)FEED_URING_STEP < to; j++)
		if (--f->users[j] == 0)
			step_maybe_free(f, j);
	pthread_mutex_unlock(&f->mu);
}

/* The walk has queued the jobs of every section before off. */
static void feed_done_to(feed *f, size_t off)
{
	pthread_mutex_lock(&f->mu);
	size_t j = f->done_to / FEED_URING_STEP;
	f->done_to = off;
	for (; j < f->nsteps && (j + 1) * (size_t)FEED_URING_STEP <= off; j++)
		step_maybe_free(f, j);
	pthread_mutex_unlock(&f->mu);
}

/* Read on to the end with fresh pages (the walk is over, or failed). */
static void feed_stop(feed *f)
{
	pthread_mutex_lock(&f->mu);
	f->stop = true;
	pthread_cond_signal(&f->rcv);
	pthread_mutex_unlock(&f->mu);
}

/* A consumer starts (+1) or stops (-1) running: when none runs, all wait
 * for bytes and only the reader can free them. */
static void feed_running(feed *f, int d)
{
	pthread_mutex_lock(&f->mu);
	f->running += d;
	if (f->running == 0 && f->reader_waits)
		pthread_cond_signal(&f->rcv);
	pthread_mutex_unlock(&f->mu);
}

/*
 * Pages for step k, the next to read: a freed step's, moved to k, or fresh
 * ones. Returns false when the reader holds FEED_HELD steps already and
 * a consumer still runs (it will free steps, or come to wait for bytes);
 * with wait (nothing in flight), it sleeps until that changes instead.
 */
static bool step_pages(feed *f, size_t k, bool wait)
{
	pthread_mutex_lock(&f->mu);
	for (;;) {
		if (f->nspare) {
			size_t j = f->spare[--f->nspare];
			f->held++;
			pthread_mutex_unlock(&f->mu);
			/* DONTUNMAP: step j stays mapped (empty), so that no
			 * other mapping can take its place before the whole
			 * range is unmapped. Where the move fails (a kernel
			 * before 5.7), step k keeps its own fresh pages. */
			mremap(f->buf + j * FEED_URING_STEP, FEED_URING_STEP,
			       FEED_URING_STEP,
			       MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
			       f->buf + k * FEED_URING_STEP);
			return true;
		}
		if (f->stop || f->held < FEED_HELD ||
		    (f->running == 0 && f->need > k * (size_t)FEED_URING_STEP)) {
			f->held++;
			pthread_mutex_unlock(&f->mu);
			return true;
		}
		if (!wait)
			break;
		f->reader_waits = true;
		pthread_cond_wait(&f->rcv, &f->mu);
		f->reader_waits = false;
	}
	pthread_mutex_unlock(&f->mu);
	return false;
}

/*
 * The file through io_uring with several reads in flight (a queue depth of
 * one leaves the device idle between requests), published in file order as
 * the leading reads complete. Returns false, having read nothing, where
 * io_uring cannot be set up or the file system refuses O_DIRECT; the
 * caller then reads with pread.
 */
static bool feed_uring(feed *f)
{
	struct io_uring ring;
	if (!f->direct || io_uring_queue_init(FEED_QD * 2, &ring, 0))
		return false;
	size_t nsteps = f->nsteps;
	uint8_t *done = ccalloc(nsteps ? nsteps : 1, 1);
	if (!done) {
		io_uring_queue_exit(&ring);
		return false;
	}
	size_t next = 0, prefix = 0;     /* steps submitted, steps in order */
	int inflight = 0, err = 0;
	bool refused = false;
	pthread_mutex_lock(&f->mu);
	f->recycle = true;
	pthread_mutex_unlock(&f->mu);
	while (prefix < nsteps && !err) {
		/* One read per submit, and the completions that are in are
		 * taken at once: a read's fresh pages are zeroed in its
		 * submit, and a queue of them would hold back the first. The
		 * first read goes alone: this disk completes a queue of
		 * reads together, and the walk needs the first bytes early. */
		int depth = prefix == 0 ? 1 : FEED_QD;
		bool more = inflight < depth && next < nsteps &&
			    step_pages(f, next, inflight == 0);
		if (more) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			size_t off = next * FEED_URING_STEP;
			size_t want = f->len - off < FEED_URING_STEP ?
				((f->len - off + 4095) & ~(size_t)4095) :
				FEED_URING_STEP;
			io_uring_prep_read(sqe, f->fd, f->buf + off, (unsigned)want,
					   off);
			sqe->user_data = next++;
			inflight++;
		}
		int rc = more ? io_uring_submit(&ring) :
				io_uring_submit_and_wait(&ring, 1);
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
		pthread_mutex_lock(&f->mu);
		f->recycle = false;   /* nothing was read, so nothing freed */
		pthread_mutex_unlock(&f->mu);
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
	if (f->ready < end && !f->err) {
		if (end > f->need)
			f->need = end;
		if (--f->running == 0 && f->reader_waits)
			pthread_cond_signal(&f->rcv);
		while (f->ready < end && !f->err)
			pthread_cond_wait(&f->cv, &f->mu);
		f->running++;
	}
	int err = f->ready >= end ? 0 : f->err;
	pthread_mutex_unlock(&f->mu);
	return err ? seterr(COHORT_EIO, "cannot read %s: %s", path,
			    strerror(-err)) : 0;
}

enum { JOB_KEYMAP, JOB_SLOTS, JOB_COLUMN };

typedef struct loadjob {
	int kind;
	cohort_table *t;
	section a;               /* KEYMAP, SLOTS: the keys; COLUMN: its own */
	uint64_t nrows;
	size_t slots;            /* KEYMAP, COLUMN: its table's slots job */
	/* SLOTS, under the loader's lock: */
	section times;           /* set by the walk once it has it */
	bool has_times;
	bool reserved;           /* every chunk is there, or failed says why not */
	bool failed;             /* the keys are damaged or the reserve failed */
	int rc;
	char msg[256];
} loadjob;

typedef struct loader {
	const in *r;
	feed *f;
	pthread_mutex_t mu;
	pthread_cond_t cv;       /* a job, the times, a chunk, or the end */
	loadjob *jobs;
	size_t n, cap, next;
	bool done;               /* no more jobs will come */
	bool steal;              /* the walk runs columns (there are helpers) */
} loader;

static size_t section_end(const section *s)
{
	return s->at + SEC_HEADER + s->len + 4;
}

/* Queue a job; its section's steps stay until it is done. */
static int loader_push(loader *l, const loadjob *j, size_t *index)
{
	feed_hold(l->f, j->a.at, section_end(&j->a));
	pthread_mutex_lock(&l->mu);
	if (l->n == l->cap) {
		/* workers hold no pointers into the array: indexes only */
		size_t cap = l->cap ? l->cap * 2 : 64;
		loadjob *nj = crealloc(l->jobs, cap * sizeof(loadjob));
		if (!nj) {
			pthread_mutex_unlock(&l->mu);
			feed_release(l->f, j->a.at, section_end(&j->a));
			return seterr(COHORT_ENOMEM, "snapshot: out of memory");
		}
		l->jobs = nj;
		l->cap = cap;
	}
	if (index)
		*index = l->n;
	l->jobs[l->n++] = *j;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	return 0;
}

/* The walk found the row times of the slots job at index i. */
static void loader_set_times(loader *l, size_t i, const section *times)
{
	feed_hold(l->f, times->at, section_end(times));
	pthread_mutex_lock(&l->mu);
	l->jobs[i].times = *times;
	l->jobs[i].has_times = true;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

/*
 * Wait on another job (under the loader's lock, cond says when to stop).
 * The caller does not run meanwhile: the reader must not hold back for it.
 */
static void loader_wait(loader *l)
{
	feed_running(l->f, -1);
	pthread_cond_wait(&l->cv, &l->mu);
	pthread_mutex_unlock(&l->mu);
	feed_running(l->f, 1);
	pthread_mutex_lock(&l->mu);
}

/* Chunk ck of the column job's table exists: 0, or an error where the
 * reserve failed (the slots job reports it, before this job in order). */
static int wait_chunk(loader *l, const loadjob *j, uint32_t ck)
{
	if (atomic_load_explicit(&j->t->nchunks, memory_order_acquire) > ck)
		return 0;
	pthread_mutex_lock(&l->mu);
	while (atomic_load(&j->t->nchunks) <= ck && !l->jobs[j->slots].reserved)
		loader_wait(l);
	bool there = atomic_load(&j->t->nchunks) > ck;
	pthread_mutex_unlock(&l->mu);
	return there ? 0 : COHORT_ENOMEM;
}

/*
 * A column: validity, then values, then plane1, each a chunk at a time as
 * the chunks come. The checksum runs over each piece just before it is
 * copied, so the bytes are read from memory once. A cat column is checked
 * first instead: its strings go into the dictionary before the values.
 * A column whose checksum fails has been copied: the caller fails the
 * load, or (salvage) clears the column.
 */
static int load_column(loader *l, const loadjob *j)
{
	const in *r = l->r;
	const section *s = &j->a;
	const tcol *c = j->t->cols[s->column];
	uint64_t nrows = j->nrows;
	bool fused = c->type != COHORT_CAT;
	int rc = fused ? 0 : section_verify(r, s);
	if (rc)
		return rc;
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
			rc = dict_intern(c->dict, str, len, &code);
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
	uint32_t crc = 0;
	for (uint64_t row0 = 0; row0 < nrows; row0 += CHUNK_ROWS) {
		rc = wait_chunk(l, j, (uint32_t)(row0 >> CHUNK_SHIFT));
		if (rc)
			return rc;
		colchunk *ch = col_chunk(c, (uint32_t)row0);
		uint64_t n = nrows - row0 < CHUNK_ROWS ? nrows - row0 : CHUNK_ROWS;
		size_t nb = (n + 63) / 64 * 8;
		if (fused)
			crc = crc32c(crc, valid + row0 / 8, nb);
		memcpy(ch->valid, valid + row0 / 8, nb);
		if (n & 63)   /* bits past the last row stay clear */
			ch->valid[n / 64] &= (UINT64_C(1) << (n & 63)) - 1;
	}
	for (uint64_t row0 = 0; row0 < nrows; row0 += CHUNK_ROWS) {
		colchunk *ch = col_chunk(c, (uint32_t)row0);
		uint64_t n = nrows - row0 < CHUNK_ROWS ? nrows - row0 : CHUNK_ROWS;
		const unsigned char *v = vals + row0 * vw;
		if (fused)
			crc = crc32c(crc, v, n * vw);
		if (c->type == COHORT_VEC) {
			for (uint64_t i = 0; i < n; i++)
				memcpy((char *)ch->plane0 + i * c->width,
				       v + i * vw, vw);
		} else {
			memcpy(ch->plane0, v, n * vw);
		}
		if (c->type == COHORT_CAT)
			for (uint64_t i = 0; i < n; i++)
				if (bit_get(ch->valid, (uint32_t)i) &&
				    ((uint32_t *)ch->plane0)[i] >= nstr)
					return corrupt(r, s->at, "bad cat code");
	}
	for (uint64_t row0 = 0; p1 && row0 < nrows; row0 += CHUNK_ROWS) {
		colchunk *ch = col_chunk(c, (uint32_t)row0);
		uint64_t n = nrows - row0 < CHUNK_ROWS ? nrows - row0 : CHUNK_ROWS;
		if (fused)
			crc = crc32c(crc, p1 + row0 * 8, n * 8);
		memcpy(ch->plane1, p1 + row0 * 8, n * 8);
	}
	uint32_t pcrc;
	memcpy(&pcrc, s->p + s->len, 4);
	if (fused && crc != pcrc)
		return corrupt(r, s->at, "bad section checksum");
	return 0;
}

/*
 * A table's chunks, one at a time (the columns fill each one as soon as
 * it is there), then its slots, then its row times (table_slot_alloc set
 * them to "no time yet"), which the walk finds meanwhile. Without them
 * (the walk failed first) there is nothing to copy, and the walk's error
 * is the load's.
 */
static int run_slots(loader *l, size_t i, const loadjob *j)
{
	int rc = section_verify(l->r, &j->a);
	for (uint64_t n = CHUNK_ROWS;; n += CHUNK_ROWS) {
		if (rc == 0)
			rc = table_reserve(j->t, n < j->nrows ? n : j->nrows);
		bool over = rc || n >= j->nrows;
		pthread_mutex_lock(&l->mu);
		l->jobs[i].reserved = over;
		l->jobs[i].failed = rc != 0;
		pthread_cond_broadcast(&l->cv);
		pthread_mutex_unlock(&l->mu);
		if (over)
			break;
	}
	if (rc == 0)
		rc = load_slots(j->t, l->r, &j->a, j->nrows);
	pthread_mutex_lock(&l->mu);
	while (!l->jobs[i].has_times && !l->done)
		loader_wait(l);
	bool has = l->jobs[i].has_times;
	section times = l->jobs[i].times;
	pthread_mutex_unlock(&l->mu);
	if (!has)
		return rc;
	if (rc == 0)
		rc = feed_wait(l->f, l->r->path, section_end(&times));
	if (rc == 0)
		rc = section_verify(l->r, &times);
	if (rc == 0)
		rc = load_times(j->t, l->r, &times, j->nrows);
	feed_release(l->f, times.at, section_end(&times));
	return rc;
}

/* A damaged keys section fails the load, salvage or not, with the slots
 * job's error: it checks them before anything reads them. */
static int run_job(loader *l, size_t i, const loadjob *j)
{
	int rc = feed_wait(l->f, l->r->path, section_end(&j->a));
	if (rc)
		return rc;
	switch (j->kind) {
	case JOB_KEYMAP: {
		/* not before the table's chunks are reserved: the reserve is
		 * what the columns wait for, and on two cores the key map
		 * would take half of one from it. The slots job (queued
		 * first, so running) has checked the keys by then. */
		pthread_mutex_lock(&l->mu);
		while (!l->jobs[j->slots].reserved)
			loader_wait(l);
		bool failed = l->jobs[j->slots].failed;
		pthread_mutex_unlock(&l->mu);
		return failed ? 0 : load_keymap(j->t, l->r, &j->a, j->nrows);
	}
	case JOB_SLOTS:
		return run_slots(l, i, j);
	default:
		return load_column(l, j);
	}
}

/*
 * The next job in file order into *j (false: none). With wait, sleeps
 * until there is one or no more will come; columns_only takes a column
 * job or nothing.
 */
static bool take_job(loader *l, bool wait, bool columns_only, size_t *i,
		     loadjob *j)
{
	pthread_mutex_lock(&l->mu);
	while (wait && l->next == l->n && !l->done)
		pthread_cond_wait(&l->cv, &l->mu);
	bool took = l->next < l->n &&
		    (!columns_only || l->jobs[l->next].kind == JOB_COLUMN);
	if (took) {
		*i = l->next++;
		*j = l->jobs[*i];
	}
	pthread_mutex_unlock(&l->mu);
	return took;
}

static void do_job(loader *l, size_t i, const loadjob *j)
{
	feed_running(l->f, 1);
	int rc = run_job(l, i, j);
	feed_release(l->f, j->a.at, section_end(&j->a));
	feed_running(l->f, -1);
	pthread_mutex_lock(&l->mu);
	l->jobs[i].rc = rc;
	if (rc)
		snprintf(l->jobs[i].msg, sizeof(l->jobs[i].msg), "%s",
			 cohort_errdetail());
	pthread_mutex_unlock(&l->mu);
}

static void *load_worker(void *arg)
{
	loader *l = arg;
	size_t i;
	loadjob j;
	while (take_job(l, true, false, &i, &j))
		do_job(l, i, &j);
	return NULL;
}

/*
 * Wait until bytes [0, end) are in, running column jobs meanwhile: the
 * walk queues every job, so while it waits no other kind can come, and a
 * column is short. (The slots job waits for the walk; the key map is long.
 * Without a helper to run the slots job, a column would wait for chunks
 * that nobody reserves: then the walk only walks.)
 */
static int walk_wait(loader *l, size_t end)
{
	feed *f = l->f;
	for (;;) {
		pthread_mutex_lock(&f->mu);
		bool there = f->ready >= end;
		pthread_mutex_unlock(&f->mu);
		size_t i;
		loadjob j;
		if (there || !l->steal || !take_job(l, false, true, &i, &j))
			return feed_wait(f, l->r->path, end);
		/* the job counts itself as running */
		feed_running(f, -1);
		do_job(l, i, &j);
		feed_running(f, 1);
	}
}

/* The next section's header, once its bytes are in. */
static int walk_header(loader *l, in *r, section *s)
{
	int rc = walk_wait(l, r->off + SEC_HEADER);
	return rc ? rc : next_header(r, s);
}

/*
 * Walk the sections as they arrive, creating tables and queueing jobs. A
 * table's key map and slots are queued as soon as the keys' header is in,
 * near the start of the file: the slots job first reserves the table's
 * chunks, the longest step of the load (an allocation touches all of its
 * memory), and the columns fill each chunk as soon as it is there.
 */
static int discover(cohort_db *db, in *r, feed *f, loader *l, uint32_t ntables,
		    section **personas, size_t *npersonas)
{
	int rc = 0;
	for (uint32_t ti = 0; ti < ntables && rc == 0; ti++) {
		section st, sk, stm;
		rc = walk_header(l, r, &st);
		if (rc == 0)
			rc = walk_wait(l, r->off);
		if (rc == 0)
			rc = section_verify(r, &st);
		if (rc)
			break;
		if (st.kind != SEC_TABLE || st.table != ti) {
			rc = corrupt(r, st.at, "expected a table section");
			break;
		}
		rc = load_table(db, r, &st);
		if (rc == 0)
			rc = walk_header(l, r, &sk);
		if (rc)
			break;
		if (sk.kind != SEC_KEYS || sk.table != ti) {
			rc = corrupt(r, sk.at, "expected the keys");
			break;
		}
		cohort_table *t = db->tables[ti];
		uint64_t nrows;
		memcpy(&nrows, st.p + st.len - 8, 8);
		/* the slots first: jobs are taken in order, so the key map,
		 * which waits for the slots job's reserve, never waits for a
		 * job that nobody runs */
		size_t islots = 0;
		loadjob js = { .kind = JOB_SLOTS, .t = t, .a = sk, .nrows = nrows };
		rc = loader_push(l, &js, &islots);
		loadjob jk = { .kind = JOB_KEYMAP, .t = t, .a = sk, .nrows = nrows,
			       .slots = islots };
		if (rc == 0)
			rc = loader_push(l, &jk, NULL);
		if (rc)
			break;
		feed_done_to(f, r->off);
		rc = walk_header(l, r, &stm);
		if (rc == 0 && (stm.kind != SEC_TIMES || stm.table != ti))
			rc = corrupt(r, stm.at, "expected the row times");
		if (rc)
			break;
		loader_set_times(l, islots, &stm);
		feed_done_to(f, r->off);
		for (int ci = 0; ci < table_ncols(t) && rc == 0; ci++) {
			section sc;
			rc = walk_header(l, r, &sc);
			if (rc == 0 && (sc.kind != SEC_COLUMN || sc.table != ti ||
					sc.column != (uint32_t)ci))
				rc = corrupt(r, sc.at, "expected a column section");
			if (rc == 0) {
				loadjob jc = { .kind = JOB_COLUMN, .t = t, .a = sc,
					       .nrows = nrows, .slots = islots };
				rc = loader_push(l, &jc, NULL);
			}
			if (rc == 0)
				feed_done_to(f, r->off);
		}
	}
	for (bool end = false; rc == 0 && !end;) {
		section se;
		rc = walk_header(l, r, &se);
		if (rc == 0)
			rc = walk_wait(l, r->off);
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
			/* read after the pipeline: its pages stay */
			feed_hold(f, se.at, r->off);
			feed_done_to(f, r->off);
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
	if (feed_alloc(&f)) {
		close(f.fd);
		return seterr(COHORT_ENOMEM, "snapshot: out of memory for %s",
			      path);
	}
	posix_fadvise(f.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	loader l = { .f = &f };
	pthread_mutex_init(&l.mu, NULL);
	pthread_cond_init(&l.cv, NULL);
	in r = { f.buf, f.len, 0, path };
	l.r = &r;
	pthread_t reader, helper[LOAD_HELPERS];
	bool reading = pthread_create(&reader, NULL, feed_reader, &f) == 0;
	if (!reading) {
		f.stop = true;        /* all of it now, with nobody to consume */
		feed_reader(&f);
	}
	int helping = 0;
	while (helping < LOAD_HELPERS &&
	       pthread_create(&helper[helping], NULL, load_worker, &l) == 0)
		helping++;
	l.steal = helping > 0;

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
	/* from here the reader reads on without holding back (after a
	 * failed walk, the jobs already queued may still wait for bytes) */
	feed_stop(&f);
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
			/* salvage: a damaged column reads null, and it is said
			 * (its values go too: it was copied as it was checked) */
			const tcol *c = j->t->cols[j->a.column];
			uint32_t have = atomic_load(&j->t->nchunks);
			for (uint64_t r0 = 0; r0 < j->nrows &&
			     (r0 >> CHUNK_SHIFT) < have; r0 += CHUNK_ROWS) {
				colchunk *ch = col_chunk(c, (uint32_t)r0);
				memset(ch->valid, 0, CHUNK_WORDS * 8);
				memset(ch->plane0, 0, (size_t)CHUNK_ROWS * c->width);
				if (ch->plane1)
					memset(ch->plane1, 0, CHUNK_ROWS * 8);
			}
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
	feed_free(&f);
	close(f.fd);
	return rc;
}
