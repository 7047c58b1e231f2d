/*
 * table.c -- databases, tables and columns: creation, description, and the
 * slot and chunk machinery underneath rows.
 *
 * Growth: when the slots run out, one chunk is added to every column and to
 * the table's own planes, under alloc_lock. Directories (arrays of chunk
 * pointers) double when full; see store_int.h for why the old ones are kept.
 * Adding a column allocates its chunks for every existing chunk, zeroed
 * (all null), and publishes it by bumping ncols with a release store.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "ann_int.h"
#include "persona_int.h"

/* ------------------------------------------------------------------------
 * Database
 * ------------------------------------------------------------------------ */
void cohort_options_init(cohort_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->fsync = COHORT_FSYNC_INTERVAL;
	opts->fsync_interval_ms = 10;
	opts->snapshot_log_bytes = 0;
}

int cohort_open(const char *dir, const cohort_options *opts, cohort_db **out)
{
	if (!out)
		return seterr(COHORT_EINVAL, "cohort_open: out is NULL");
	*out = NULL;
	if (opts && (opts->fsync > COHORT_FSYNC_NONE ||
		     (opts->fsync == COHORT_FSYNC_INTERVAL &&
		      opts->fsync_interval_ms == 0)))
		return seterr(COHORT_EINVAL, "cohort_open: bad fsync policy %d "
			      "or interval %u ms", (int)opts->fsync,
			      opts->fsync_interval_ms);
	if (dir && !*dir)
		return seterr(COHORT_EINVAL, "cohort_open: empty directory name");
	cohort_db *db = ccalloc(1, sizeof(*db));
	if (!db)
		return seterr(COHORT_ENOMEM, "cohort_open: out of memory");
	if (pthread_mutex_init(&db->lock, NULL) != 0) {
		cfree(db);
		return seterr(COHORT_ENOMEM, "cohort_open: mutex");
	}
	db->lock_fd = -1;
	if (opts)
		db->opts = *opts;
	else
		cohort_options_init(&db->opts);
	if (dir) {
		int rc = persist_open(db, dir);
		if (rc) {
			char keep[512];
			snprintf(keep, sizeof(keep), "%s", cohort_errdetail());
			cohort_close(db);
			return seterr(rc, "%s", keep);
		}
	}
	*out = db;
	return 0;
}

static void table_free(cohort_table *t);

int cohort_close(cohort_db *db)
{
	if (!db)
		return 0;
	size_t n = atomic_load(&db->ntables);
	/* a database with similarity indexes ends with a snapshot, so the
	 * next open loads their graphs instead of rebuilding them from the
	 * log (which would give a different, equally good, graph) */
	bool graphs = false;
	for (size_t i = 0; i < n; i++)
		graphs |= ann_active(db->tables[i]);
	if (db->wal && (graphs || db->opts.snapshot_on_close) &&
	    (!graphs || ann_drain(db) == 0) && cohort_snapshot(db))
		fprintf(stderr, "cohort: snapshot at close of %s failed: %s; "
			"the log still holds everything acknowledged\n",
			db->dir, cohort_errdetail());
	/* persona workers and trainers stop before the log closes */
	for (size_t i = 0; i < n; i++) {
		persona_table_free(db->tables[i]);
		ann_table_free(db->tables[i]);
	}
	int rc = persist_close(db);
	for (size_t i = 0; i < n; i++)
		table_free(db->tables[i]);
	pthread_mutex_destroy(&db->lock);
	cfree(db);
	return rc;
}

size_t cohort_db_ntables(cohort_db *db)
{
	return db ? atomic_load_explicit(&db->ntables, memory_order_acquire) : 0;
}

const char *cohort_db_table_name(cohort_db *db, size_t i)
{
	if (!db || i >= cohort_db_ntables(db))
		return NULL;
	return db->tables[i]->name;
}

/* ------------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------------ */
int name_check(const char *what, const char *name)
{
	if (!name)
		return seterr(COHORT_EBADNAME, "%s name is NULL", what);
	size_t n = strnlen(name, COHORT_MAX_NAME + 1);
	if (n == 0 || n > COHORT_MAX_NAME)
		return seterr(COHORT_EBADNAME, "%s name '%.80s' must be 1 to %d "
			      "characters", what, name, COHORT_MAX_NAME);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (!(isalnum(ch) || ch == '_'))
			return seterr(COHORT_EBADNAME, "%s name '%s': character "
				      "%zu is not one of [A-Za-z0-9_]", what,
				      name, i + 1);
	}
	return 0;
}

int key_check(const cohort_table *t, size_t key_len)
{
	if (key_len == 0 || key_len > COHORT_MAX_KEY)
		return seterr(COHORT_EKEY, "table '%s': key of %zu bytes "
			      "(must be 1 to %d)", t->name, key_len,
			      COHORT_MAX_KEY);
	return 0;
}

int column_check(const cohort_table *t, int column)
{
	int n = table_ncols(t);
	if (column < 0 || column >= n)
		return seterr(COHORT_ENOCOLUMN, "table '%s' has no column id "
			      "%d (it has %d columns)", t->name, column, n);
	return 0;
}

static int coldef_check(const cohort_table *t, const cohort_column_def *def)
{
	int rc = name_check("column", def->name);
	if (rc)
		return rc;
	if (def->type < COHORT_F32 || def->type > COHORT_LAST)
		return seterr(COHORT_EINVAL, "column '%s': unknown type %d",
			      def->name, (int)def->type);
	if (def->type == COHORT_VEC) {
		if (def->dim < 1 || def->dim > COHORT_MAX_DIM)
			return seterr(COHORT_EINVAL, "column '%s': vec dim %u "
				      "must be 1 to %d", def->name, def->dim,
				      COHORT_MAX_DIM);
	} else if (def->dim != 0 && def->dim != 1) {
		return seterr(COHORT_EINVAL, "column '%s': dim %u given for a "
			      "%s column", def->name, def->dim,
			      cohort_type_name(def->type));
	}
	if (def->type == COHORT_DECAY) {
		if (def->half_life_ms <= 0)
			return seterr(COHORT_EINVAL, "column '%s': decay half "
				      "life %lld ms must be > 0", def->name,
				      (long long)def->half_life_ms);
	} else if (def->half_life_ms != 0) {
		return seterr(COHORT_EINVAL, "column '%s': half life given for "
			      "a %s column", def->name,
			      cohort_type_name(def->type));
	}
	(void)t;
	return 0;
}

/* ------------------------------------------------------------------------
 * Chunks
 * ------------------------------------------------------------------------ */
static uint32_t type_width(const tcol *c)
{
	switch (c->type) {
	case COHORT_F32: case COHORT_I32: case COHORT_CAT: return 4;
	case COHORT_BOOL: return 1;
	case COHORT_VEC: return c->stride * 4;
	default: return 8;
	}
}

static void colchunk_free(cohort_table *t, colchunk *ch)
{
	cfree_acct(ch->valid, &t->mem);
	cfree_acct(ch->plane0, &t->mem);
	cfree_acct(ch->plane1, &t->mem);
	memset(ch, 0, sizeof(*ch));
}

static int colchunk_alloc(cohort_table *t, const tcol *c, colchunk *ch)
{
	ch->valid = caligned_acct(64, CHUNK_WORDS * 8, &t->mem);
	ch->plane0 = caligned_acct(64, (size_t)CHUNK_ROWS * c->width, &t->mem);
	ch->plane1 = c->has_plane1 ?
		caligned_acct(64, CHUNK_ROWS * 8, &t->mem) : NULL;
	if (!ch->valid || !ch->plane0 || (c->has_plane1 && !ch->plane1)) {
		colchunk_free(t, ch);
		return COHORT_ENOMEM;
	}
	return 0;
}

static void tabchunk_free(cohort_table *t, tabchunk *ch)
{
	cfree_acct(ch->keyref, &t->mem);
	cfree_acct(ch->time, &t->mem);
	cfree_acct(ch->live, &t->mem);
	memset(ch, 0, sizeof(*ch));
}

static int tabchunk_alloc(cohort_table *t, tabchunk *ch)
{
	ch->keyref = caligned_acct(64, CHUNK_ROWS * 8, &t->mem);
	ch->time = caligned_acct(64, CHUNK_ROWS * 8, &t->mem);
	ch->live = caligned_acct(64, CHUNK_WORDS * 8, &t->mem);
	if (!ch->keyref || !ch->time || !ch->live) {
		tabchunk_free(t, ch);
		return COHORT_ENOMEM;
	}
	return 0;
}

/*
 * Double every directory (table planes and columns). All or nothing: the
 * new directories are built first and published only when all exist.
 * Under alloc_lock.
 */
static int dirs_grow(cohort_table *t)
{
	uint32_t cap = t->dir_cap ? t->dir_cap * 2 : 4;
	int ncols = table_ncols(t);
	size_t nnew = (size_t)ncols + 1;
	void **fresh = ccalloc(nnew, sizeof(void *));
	if (!fresh)
		return COHORT_ENOMEM;
	int rc = 0;
	for (size_t i = 0; i < nnew && rc == 0; i++) {
		size_t esz = i == 0 ? sizeof(tabchunk) : sizeof(colchunk);
		fresh[i] = ccalloc_acct(cap, esz, &t->mem);
		if (!fresh[i])
			rc = COHORT_ENOMEM;
	}
	/* Nodes for retiring the old directories, reserved up front. */
	retired **nodes = ccalloc(nnew, sizeof(retired *));
	if (rc == 0 && !nodes)
		rc = COHORT_ENOMEM;
	for (size_t i = 0; i < nnew && rc == 0; i++) {
		nodes[i] = cmalloc(sizeof(retired));
		if (!nodes[i])
			rc = COHORT_ENOMEM;
	}
	if (rc) {
		for (size_t i = 0; i < nnew; i++) {
			cfree_acct(fresh[i], &t->mem);
			if (nodes)
				cfree(nodes[i]);
		}
		cfree(fresh);
		cfree(nodes);
		return rc;
	}
	uint32_t n = atomic_load(&t->nchunks);
	for (size_t i = 0; i < nnew; i++) {
		void *old;
		if (i == 0) {
			old = atomic_load(&t->tdir);
			if (old)
				memcpy(fresh[0], old, n * sizeof(tabchunk));
			atomic_store_explicit(&t->tdir, fresh[0],
					      memory_order_release);
		} else {
			tcol *c = t->cols[i - 1];
			old = atomic_load(&c->dir);
			if (old)
				memcpy(fresh[i], old, n * sizeof(colchunk));
			atomic_store_explicit(&c->dir, fresh[i],
					      memory_order_release);
		}
		if (old) {
			__atomic_fetch_add(&t->mem, csize(nodes[i]),
					   __ATOMIC_RELAXED);
			nodes[i]->ptr = old;
			nodes[i]->next = t->old;
			t->old = nodes[i];
		} else {
			cfree(nodes[i]);
		}
	}
	cfree(fresh);
	cfree(nodes);
	t->dir_cap = cap;
	return 0;
}

/* Add one chunk to the table planes and every column. Under alloc_lock. */
static int chunk_add(cohort_table *t)
{
	uint32_t n = atomic_load(&t->nchunks);
	if (n >= (UINT32_MAX >> CHUNK_SHIFT) - 1)
		return seterr(COHORT_ELIMIT, "table '%s' is full (%u rows)",
			      t->name, n << CHUNK_SHIFT);
	if (n == t->dir_cap) {
		int rc = dirs_grow(t);
		if (rc)
			return rc;
	}
	int ncols = table_ncols(t);
	tabchunk tc;
	if (tabchunk_alloc(t, &tc))
		return COHORT_ENOMEM;
	for (int i = 0; i < ncols; i++) {
		colchunk *dir = atomic_load(&t->cols[i]->dir);
		if (colchunk_alloc(t, t->cols[i], &dir[n])) {
			for (int j = 0; j < i; j++)
				colchunk_free(t, &atomic_load(&t->cols[j]->dir)[n]);
			tabchunk_free(t, &tc);
			return COHORT_ENOMEM;
		}
	}
	int prc = persona_chunk_add(t, n);
	if (prc == 0)
		prc = ann_chunk_add(t, n);
	if (prc) {
		for (int j = 0; j < ncols; j++)
			colchunk_free(t, &atomic_load(&t->cols[j]->dir)[n]);
		tabchunk_free(t, &tc);
		return prc;
	}
	atomic_load(&t->tdir)[n] = tc;
	atomic_store_explicit(&t->nchunks, n + 1, memory_order_release);
	return 0;
}

/* Room for len key bytes in the arena; returns the offset. Under alloc_lock.
 * The array of arena chunks is allocated once at its full size (see
 * cohort_table_create) and never moves, so readers index it without a lock:
 * the element they need was stored before the key that points into it. */
static int arena_alloc(cohort_table *t, uint32_t len, uint64_t *off)
{
	if (t->narena == 0 || t->arena_used + len > KEY_ARENA_CHUNK) {
		if (t->narena == t->arena_cap)
			return seterr(COHORT_ELIMIT, "table '%s': key space "
				      "full (%u MiB of keys)", t->name,
				      t->arena_cap);
		char *chunk = caligned_acct(64, KEY_ARENA_CHUNK, &t->mem);
		if (!chunk)
			return COHORT_ENOMEM;
		t->arena[t->narena++] = chunk;
		t->arena_used = 0;
	}
	*off = (uint64_t)(t->narena - 1) * KEY_ARENA_CHUNK + t->arena_used;
	t->arena_used += len;
	return 0;
}

static inline char *arena_ptr(const cohort_table *t, uint64_t off)
{
	return t->arena[off / KEY_ARENA_CHUNK] + off % KEY_ARENA_CHUNK;
}

const char *table_slot_key(const cohort_table *t, uint32_t slot,
			   uint32_t *len)
{
	uint64_t ref = tab_chunk(t, slot)->keyref[slot_off(slot)];
	*len = KEYREF_LEN(ref);
	return arena_ptr(t, KEYREF_OFF(ref));
}

int table_reserve(cohort_table *t, uint64_t nrows)
{
	int rc = 0;
	pthread_mutex_lock(&t->alloc_lock);
	while (rc == 0 && (uint64_t)atomic_load(&t->nchunks) * CHUNK_ROWS < nrows)
		rc = chunk_add(t);
	pthread_mutex_unlock(&t->alloc_lock);
	return rc == COHORT_ENOMEM ?
		seterr(rc, "table '%s': out of memory for %llu rows", t->name,
		       (unsigned long long)nrows) : rc;
}

int table_slot_alloc(cohort_table *t, const void *key, uint32_t key_len,
		     uint64_t hash, uint32_t *out)
{
	pthread_mutex_lock(&t->alloc_lock);
	uint32_t slot;
	uint64_t ref = 0;
	bool reused = false;
	int rc = 0;
	/* a free slot that a similarity index's reader may still hold by
	 * its last key is first retired there; if that cannot be done
	 * without waiting, a new slot serves */
	if (t->free_head &&
	    (!ann_active(t) || ann_slot_retire(t, t->free_head - 1, hash))) {
		slot = t->free_head - 1;
		ref = tab_chunk(t, slot)->keyref[slot_off(slot)];
		reused = true;
	} else {
		slot = atomic_load(&t->hwm);
		if (slot == atomic_load(&t->nchunks) * CHUNK_ROWS)
			rc = chunk_add(t);
	}
	/* A reused slot keeps its key space when the new key fits in it. */
	if (rc == 0 && (!reused || KEYREF_CAP(ref) < key_len)) {
		uint64_t off = 0;
		rc = arena_alloc(t, key_len, &off);
		if (rc == 0)
			ref = KEYREF(off, 0, key_len);
	}
	if (rc) {
		pthread_mutex_unlock(&t->alloc_lock);
		if (rc == COHORT_ENOMEM)
			seterr(rc, "table '%s': out of memory adding a row",
			       t->name);
		return rc;
	}
	if (reused) {
		/* a free slot's time holds the next free slot + 1 */
		t->free_head = (uint32_t)tab_chunk(t, slot)->time[slot_off(slot)];
		t->nfree--;
	} else
		atomic_store(&t->hwm, slot + 1);
	tabchunk *tc = tab_chunk(t, slot);
	memcpy(arena_ptr(t, KEYREF_OFF(ref)), key, key_len);
	tc->keyref[slot_off(slot)] =
		KEYREF(KEYREF_OFF(ref), key_len, KEYREF_CAP(ref));
	/* stores to the time plane are atomic: similarity queries read it
	 * without the row's lock to skip expired rows */
	__atomic_store_n(&tc->time[slot_off(slot)], INT64_MIN, __ATOMIC_RELAXED);
	bit_set(tc->live, slot_off(slot));
	pthread_mutex_unlock(&t->alloc_lock);
	atomic_fetch_add(&t->nrows, 1);
	*out = slot;
	return 0;
}

void table_row_clear(cohort_table *t, uint32_t slot)
{
	int ncols = table_ncols(t);
	uint32_t o = slot_off(slot);
	for (int i = 0; i < ncols; i++) {
		tcol *c = t->cols[i];
		colchunk *ch = col_chunk(c, slot);
		bit_clear(ch->valid, o);
		memset((char *)ch->plane0 + (size_t)o * c->width, 0, c->width);
		if (ch->plane1)
			ch->plane1[o] = 0;
	}
}

void table_slot_free(cohort_table *t, uint32_t slot)
{
	table_row_clear(t, slot);
	tabchunk *tc = tab_chunk(t, slot);
	uint32_t o = slot_off(slot);
	uint64_t ref = tc->keyref[o];
	/* Erase the key bytes; keep the space (cap) for the next tenant. */
	memset(arena_ptr(t, KEYREF_OFF(ref)), 0, KEYREF_CAP(ref));
	tc->keyref[o] = KEYREF(KEYREF_OFF(ref), 0, KEYREF_CAP(ref));
	bit_clear(tc->live, o);
	atomic_fetch_sub(&t->nrows, 1);
	/* The free list is threaded through the time plane of free slots:
	 * no memory of its own, and no allocation that could fail here. */
	pthread_mutex_lock(&t->alloc_lock);
	__atomic_store_n(&tc->time[o], (int64_t)t->free_head, __ATOMIC_RELAXED);
	t->free_head = slot + 1;
	t->nfree++;
	pthread_mutex_unlock(&t->alloc_lock);
}

/* ------------------------------------------------------------------------
 * Columns
 * ------------------------------------------------------------------------ */
static int column_new(cohort_table *t, const cohort_column_def *def,
		      tcol **out)
{
	tcol *c = ccalloc_acct(1, sizeof(*c), &t->mem);
	if (!c)
		return COHORT_ENOMEM;
	snprintf(c->name, sizeof(c->name), "%s", def->name);
	c->type = def->type;
	c->dim = def->type == COHORT_VEC ? def->dim : 1;
	c->stride = def->type == COHORT_VEC ? (def->dim + 15) & ~15u : 1;
	c->width = type_width(c);
	c->half_life_ms = def->half_life_ms;
	c->inv_half_life = def->type == COHORT_DECAY ?
		1.0 / (double)def->half_life_ms : 0;
	c->has_plane1 = def->type == COHORT_DECAY || def->type == COHORT_LAST;
	if (def->type == COHORT_CAT) {
		c->dict = ccalloc_acct(1, sizeof(dict), &t->mem);
		if (!c->dict || dict_init(c->dict, &t->mem)) {
			cfree_acct(c->dict, &t->mem);
			cfree_acct(c, &t->mem);
			return COHORT_ENOMEM;
		}
	}
	*out = c;
	return 0;
}

static void column_free(cohort_table *t, tcol *c, uint32_t nchunks)
{
	colchunk *dir = atomic_load(&c->dir);
	for (uint32_t i = 0; dir && i < nchunks; i++)
		colchunk_free(t, &dir[i]);
	cfree_acct(dir, &t->mem);
	if (c->dict) {
		dict_free(c->dict);
		cfree_acct(c->dict, &t->mem);
	}
	cfree_acct(c, &t->mem);
}

/* Create column def's storage for all existing chunks and publish it.
 * Under alloc_lock. */
static int column_attach(cohort_table *t, const cohort_column_def *def,
			 int *out_id, const recbuf *rec, uint64_t *lsn)
{
	int ncols = table_ncols(t);
	if (ncols >= COHORT_MAX_COLUMNS)
		return seterr(COHORT_ELIMIT, "table '%s' has the maximum of %d "
			      "columns", t->name, COHORT_MAX_COLUMNS);
	for (int i = 0; i < ncols; i++)
		if (strcmp(t->cols[i]->name, def->name) == 0)
			return seterr(COHORT_EEXIST, "table '%s' already has a "
				      "column '%s'", t->name, def->name);
	tcol *c;
	if (column_new(t, def, &c))
		return seterr(COHORT_ENOMEM, "out of memory adding column '%s'",
			      def->name);
	uint32_t n = atomic_load(&t->nchunks);
	colchunk *dir = ccalloc_acct(t->dir_cap ? t->dir_cap : 1,
				     sizeof(colchunk), &t->mem);
	int rc = dir ? 0 : COHORT_ENOMEM;
	atomic_store(&c->dir, dir);
	for (uint32_t i = 0; i < n && rc == 0; i++)
		rc = colchunk_alloc(t, c, &dir[i]);
	if (rc) {
		column_free(t, c, n);
		return seterr(COHORT_ENOMEM, "out of memory adding column '%s'",
			      def->name);
	}
	if (rec) {
		/* logged last, once nothing can fail, first thing published */
		rc = persist_log(t->db, REC_ADD_COLUMN, rec, lsn);
		if (rc) {
			column_free(t, c, n);
			return rc;
		}
	}
	t->cols[ncols] = c;
	atomic_store_explicit(&t->ncols, ncols + 1, memory_order_release);
	if (out_id)
		*out_id = ncols;
	return 0;
}

int cohort_table_add_column(cohort_table *t, const cohort_column_def *def,
			    int *out_id)
{
	if (!t || !def)
		return seterr(COHORT_EINVAL, "cohort_table_add_column: NULL "
			      "argument");
	int rc = coldef_check(t, def);
	if (rc)
		return rc;
	recbuf rec;
	rec_init(&rec);
	if (t->db->wal && rec_add_column(&rec, t->id, def)) {
		rec_free(&rec);
		return seterr(COHORT_ENOMEM, "add column: out of memory");
	}
	uint64_t lsn = 0;
	pthread_mutex_lock(&t->alloc_lock);
	rc = column_attach(t, def, out_id, &rec, &lsn);
	pthread_mutex_unlock(&t->alloc_lock);
	rec_free(&rec);
	return rc ? rc : persist_sync(t->db, lsn);
}

/* ------------------------------------------------------------------------
 * Tables
 * ------------------------------------------------------------------------ */
static void table_free(cohort_table *t)
{
	if (!t)
		return;
	persona_table_free(t);
	ann_table_free(t);
	uint32_t n = atomic_load(&t->nchunks);
	int ncols = table_ncols(t);
	for (int i = 0; i < ncols; i++)
		column_free(t, t->cols[i], n);
	tabchunk *tdir = atomic_load(&t->tdir);
	for (uint32_t i = 0; tdir && i < n; i++)
		tabchunk_free(t, &tdir[i]);
	cfree_acct(tdir, &t->mem);
	for (uint32_t i = 0; i < t->narena; i++)
		cfree_acct(t->arena[i], &t->mem);
	cfree_acct(t->arena, &t->mem);
	for (retired *r = t->old, *next; r; r = next) {
		next = r->next;
		cfree_acct(r->ptr, &t->mem);
		cfree_acct(r, &t->mem);
	}
	for (int i = 0; i < NSTRIPES; i++)
		if (t->stripes[i].entries)
			keymap_free(&t->stripes[i], &t->mem);
	pthread_mutex_destroy(&t->alloc_lock);
	pthread_rwlock_destroy(&t->plock);
	pthread_rwlock_destroy(&t->ilock);
	cfree(t);
}

int cohort_table_create(cohort_db *db, const char *name,
			const cohort_column_def *cols, size_t ncols,
			const cohort_table_options *opts, cohort_table **out)
{
	if (out)
		*out = NULL;
	if (!db || (ncols && !cols))
		return seterr(COHORT_EINVAL, "cohort_table_create: NULL argument");
	int rc = name_check("table", name);
	if (rc)
		return rc;
	if (ncols > COHORT_MAX_COLUMNS)
		return seterr(COHORT_ELIMIT, "table '%s': %zu columns (max %d)",
			      name, ncols, COHORT_MAX_COLUMNS);
	if (opts && opts->ttl_ms < 0)
		return seterr(COHORT_EINVAL, "table '%s': negative TTL %lld",
			      name, (long long)opts->ttl_ms);
	cohort_table *t = caligned(64, sizeof(*t));
	if (!t)
		return seterr(COHORT_ENOMEM, "table '%s': out of memory", name);
	t->mem = csize(t);
	t->db = db;
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->ttl_ms = opts ? opts->ttl_ms : 0;
	for (size_t i = 0; i < ncols; i++) {
		rc = coldef_check(t, &cols[i]);
		if (rc) {
			cfree(t);
			return rc;
		}
	}
	pthread_mutex_init(&t->alloc_lock, NULL);
	pthread_rwlock_init(&t->plock, NULL);
	pthread_rwlock_init(&t->ilock, NULL);
	for (int i = 0; i < NSTRIPES && rc == 0; i++)
		rc = keymap_init(&t->stripes[i], &t->mem);
	if (rc == 0) {
		/* The arena's chunk array: sized for 4 G key bytes, so it never
		 * moves (see table_slot_key). 4096 pointers = 32 KiB. */
		t->arena_cap = 4096;
		t->arena = ccalloc_acct(t->arena_cap, sizeof(char *), &t->mem);
		if (!t->arena)
			rc = COHORT_ENOMEM;
	}
	for (size_t i = 0; i < ncols && rc == 0; i++)
		rc = column_attach(t, &cols[i], NULL, NULL, NULL);
	if (rc) {
		table_free(t);
		return rc == COHORT_ENOMEM ?
			seterr(rc, "table '%s': out of memory", name) : rc;
	}

	pthread_mutex_lock(&db->lock);
	size_t n = atomic_load(&db->ntables);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(db->tables[i]->name, name) == 0) {
			pthread_mutex_unlock(&db->lock);
			table_free(t);
			return seterr(COHORT_EEXIST, "table '%s' already exists",
				      name);
		}
	}
	if (n == COHORT_MAX_TABLES) {
		pthread_mutex_unlock(&db->lock);
		table_free(t);
		return seterr(COHORT_ELIMIT, "database has the maximum of %d "
			      "tables", COHORT_MAX_TABLES);
	}
	uint64_t lsn = 0;
	if (db->wal) {
		recbuf rec;
		rec_init(&rec);
		rc = rec_create_table(&rec, name, t->ttl_ms, cols, ncols);
		if (rc == 0)
			rc = persist_log(db, REC_CREATE_TABLE, &rec, &lsn);
		rec_free(&rec);
		if (rc) {
			pthread_mutex_unlock(&db->lock);
			table_free(t);
			return rc;
		}
	}
	t->id = (uint32_t)n;
	db->tables[n] = t;
	atomic_store_explicit(&db->ntables, n + 1, memory_order_release);
	pthread_mutex_unlock(&db->lock);
	if (out)
		*out = t;
	return persist_sync(db, lsn);
}

int cohort_table_open(cohort_db *db, const char *name, cohort_table **out)
{
	if (!db || !name || !out)
		return seterr(COHORT_EINVAL, "cohort_table_open: NULL argument");
	size_t n = cohort_db_ntables(db);
	for (size_t i = 0; i < n; i++) {
		if (strcmp(db->tables[i]->name, name) == 0) {
			*out = db->tables[i];
			return 0;
		}
	}
	*out = NULL;
	return seterr(COHORT_ENOTABLE, "no table '%.80s'", name);
}

int cohort_table_column(const cohort_table *t, const char *name)
{
	if (!t || !name)
		return seterr(COHORT_EINVAL, "cohort_table_column: NULL argument");
	int n = table_ncols(t);
	for (int i = 0; i < n; i++)
		if (strcmp(t->cols[i]->name, name) == 0)
			return i;
	return seterr(COHORT_ENOCOLUMN, "column '%.80s' not found in table "
		      "'%s'", name, t->name);
}

int cohort_table_describe(const cohort_table *t, cohort_table_info *out)
{
	if (!t || !out)
		return seterr(COHORT_EINVAL, "cohort_table_describe: NULL "
			      "argument");
	out->name = t->name;
	out->ncolumns = (size_t)table_ncols(t);
	out->nrows = atomic_load(&((cohort_table *)t)->nrows);
	out->ttl_ms = t->ttl_ms;
	out->mem_bytes = __atomic_load_n(&t->mem, __ATOMIC_RELAXED);
	return 0;
}

int cohort_column_describe(const cohort_table *t, int column,
			   cohort_column_info *out)
{
	if (!t || !out)
		return seterr(COHORT_EINVAL, "cohort_column_describe: NULL "
			      "argument");
	int rc = column_check(t, column);
	if (rc)
		return rc;
	const tcol *c = t->cols[column];
	out->name = c->name;
	out->type = c->type;
	out->dim = c->type == COHORT_VEC ? c->dim : 1;
	out->half_life_ms = c->half_life_ms;
	out->ncat = c->dict ? dict_count(c->dict) : 0;
	return 0;
}

const char *cohort_cat_string(const cohort_table *t, int column, uint32_t code,
			      uint32_t *len)
{
	if (!t || column < 0 || column >= table_ncols(t) ||
	    !t->cols[column]->dict)
		return NULL;
	return dict_get(t->cols[column]->dict, code, len);
}
