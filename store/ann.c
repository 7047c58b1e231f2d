/*
 * ann.c -- similarity indexes: an HNSW graph (index/hnsw.h) per index,
 * kept current by a background worker from the rows that writes mark
 * pending, and queries that merge the graph's answer with an exact scan of
 * the pending rows (or scan a selective filter's rows exactly).
 *
 * Why a query sees every acknowledged write: a write marks its row pending
 * under its stripe lock before it is acknowledged; the graph's answers
 * exclude pending rows (and re-check each hit under its stripe), and the
 * pending rows are scanned exactly after the graph search. A row the worker
 * finishes in between was seen pending by the graph search: those rows are
 * remembered and re-checked. The worker clears a row's pending bit only if
 * no write overtook the copy it inserted (the row's seq), so the graph
 * never hides a newer write.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ann_int.h"
#include "dist.h"
#include "hnsw.h"
#include "parallel.h"
#include "rowq.h"

#define PDIR_MAX 65536
#define QUEUE_CAP 8192
#define BATCH 256
#define DELAY_MS 5
#define EXACT_ROWS 4096           /* a filter this small is scanned */
#define EXACT_SHARE 50            /* ... and one matching 1/50 of rows */
#define MAX_REJECTED 4096

typedef struct annidx {
	char name[COHORT_MAX_NAME + 1];
	cohort_table *t;
	int col;
	uint32_t dim;
	cohort_index_opts o;      /* resolved */
	hnsw *g;
	_Atomic uint32_t **seq;   /* PDIR_MAX chunks of each */
	_Atomic uint64_t **phash;
	uint32_t **node1;
	uint64_t **pend;          /* CHUNK_WORDS words per chunk */
	atomic_size_t npending;
	rowq q;
	pthread_mutex_t work_lock;
	float *wbuf;              /* BATCH vectors */
	uint8_t *wflag;           /* BATCH: 0 skip, 1 remove, 2 insert */
} annidx;

static inline bool pend_get(const annidx *ix, uint32_t slot)
{
	return bit_get(ix->pend[slot >> CHUNK_SHIFT], slot_off(slot));
}

static inline _Atomic uint32_t *seq_of(const annidx *ix, uint32_t slot)
{
	return &ix->seq[slot >> CHUNK_SHIFT][slot_off(slot)];
}

static inline _Atomic uint64_t *phash_of(const annidx *ix, uint32_t slot)
{
	return &ix->phash[slot >> CHUNK_SHIFT][slot_off(slot)];
}

/* The row's vector (its stripe held): false if null. Cosine: normalised
 * (false for the zero vector: it has no direction). */
static bool row_vec(const annidx *ix, uint32_t slot, float *out)
{
	const tcol *c = ix->t->cols[ix->col];
	const colchunk *ch = col_chunk(c, slot);
	uint32_t o = slot_off(slot);
	if (!bit_get(ch->valid, o))
		return false;
	memcpy(out, (const float *)ch->plane0 + (size_t)o * c->stride,
	       ix->dim * sizeof(float));
	if (ix->o.metric != COHORT_METRIC_COSINE)
		return true;
	double s = 0;
	for (uint32_t j = 0; j < ix->dim; j++)
		s += (double)out[j] * out[j];
	if (s == 0)
		return false;
	float inv = (float)(1 / sqrt(s));
	for (uint32_t j = 0; j < ix->dim; j++)
		out[j] *= inv;
	return true;
}

/* ------------------------------------------------------------------------
 * Per-slot state
 * ------------------------------------------------------------------------ */
static int ix_chunk_add(cohort_table *t, annidx *ix, uint32_t c)
{
	if (c >= PDIR_MAX)
		return seterr(COHORT_ELIMIT, "table '%s': similarity indexes "
			      "hold at most %u rows", t->name,
			      PDIR_MAX << CHUNK_SHIFT);
	if (!ix->seq[c])
		ix->seq[c] = ccalloc_acct(CHUNK_ROWS, 4, &t->mem);
	if (!ix->phash[c])
		ix->phash[c] = ccalloc_acct(CHUNK_ROWS, 8, &t->mem);
	if (!ix->node1[c])
		ix->node1[c] = ccalloc_acct(CHUNK_ROWS, 4, &t->mem);
	if (!ix->pend[c])
		ix->pend[c] = ccalloc_acct(CHUNK_WORDS, 8, &t->mem);
	return ix->seq[c] && ix->phash[c] && ix->node1[c] && ix->pend[c] ?
		0 : COHORT_ENOMEM;
}

int ann_chunk_add(cohort_table *t, uint32_t c)
{
	int n = atomic_load(&t->nindexes);
	for (int i = 0; i < n; i++) {
		int rc = ix_chunk_add(t, t->indexes[i], c);
		if (rc)
			return rc;
	}
	return 0;
}

static void ix_free(cohort_table *t, annidx *ix)
{
	if (!ix)
		return;
	rowq_free(&ix->q);
	for (uint32_t c = 0; ix->seq && c < PDIR_MAX && ix->seq[c]; c++) {
		cfree_acct((void *)ix->seq[c], &t->mem);
		cfree_acct((void *)ix->phash[c], &t->mem);
		cfree_acct(ix->node1[c], &t->mem);
		cfree_acct(ix->pend[c], &t->mem);
	}
	cfree(ix->seq);
	cfree(ix->phash);
	cfree(ix->node1);
	cfree(ix->pend);
	hnsw_free(ix->g);
	cfree(ix->wbuf);
	cfree(ix->wflag);
	pthread_mutex_destroy(&ix->work_lock);
	cfree(ix);
}

/* ------------------------------------------------------------------------
 * The write path
 * ------------------------------------------------------------------------ */
static void mark_pending(annidx *ix, uint32_t slot, uint64_t hash,
			 uint32_t *seq)
{
	uint32_t c = slot >> CHUNK_SHIFT, o = slot_off(slot);
	*seq = atomic_fetch_add_explicit(&ix->seq[c][o], 1,
					 memory_order_relaxed) + 1;
	atomic_store_explicit(&ix->phash[c][o], hash, memory_order_relaxed);
	uint64_t m = UINT64_C(1) << (o & 63);
	uint64_t old = __atomic_fetch_or(&ix->pend[c][o >> 6], m,
					 __ATOMIC_RELEASE);
	if (!(old & m))
		atomic_fetch_add(&ix->npending, 1);
}

void ann_row_written(cohort_table *t, aw_ctx *w, uint32_t slot,
		     uint64_t hash, const uint64_t *cols, bool reset, bool del)
{
	w->n = 0;
	w->slot = slot;
	w->hash = hash;
	int n = atomic_load_explicit(&t->nindexes, memory_order_relaxed);
	for (int i = 0; i < n; i++) {
		annidx *ix = t->indexes[i];
		if (!del && !reset &&
		    !(cols[ix->col >> 6] & (UINT64_C(1) << (ix->col & 63))))
			continue;
		mark_pending(ix, slot, hash, &w->e[w->n].seq);
		w->e[w->n++].ix = ix;
	}
}

bool ann_slot_retire(cohort_table *t, uint32_t slot, uint64_t hash)
{
	stripe *own = stripe_of(t, hash);
	stripe *held[COHORT_MAX_INDEXES];
	int nheld = 0;
	int n = atomic_load_explicit(&t->nindexes, memory_order_relaxed);
	for (int i = 0; i < n; i++) {
		stripe *s = stripe_of(t, atomic_load_explicit(
			phash_of(t->indexes[i], slot), memory_order_relaxed));
		bool have = s == own;
		for (int j = 0; j < nheld && !have; j++)
			have = held[j] == s;
		if (have)
			continue;
		/* never wait: this thread holds own, and a holder of s may
		 * be retiring a slot of own's */
		if (pthread_rwlock_trywrlock(&s->lock) != 0) {
			while (nheld)
				pthread_rwlock_unlock(&held[--nheld]->lock);
			return false;
		}
		held[nheld++] = s;
	}
	for (int i = 0; i < n; i++) {
		annidx *ix = t->indexes[i];
		atomic_fetch_add_explicit(seq_of(ix, slot), 1,
					  memory_order_relaxed);
		atomic_store_explicit(phash_of(ix, slot), hash,
				      memory_order_relaxed);
	}
	while (nheld)
		pthread_rwlock_unlock(&held[--nheld]->lock);
	return true;
}

void ann_row_end(cohort_table *t, aw_ctx *w)
{
	(void)t;
	for (int i = 0; i < w->n; i++)
		rowq_push(&w->e[i].ix->q, (rowq_ent){ w->slot, w->e[i].seq,
						      w->hash, 0, 0 });
	w->n = 0;
}

/* ------------------------------------------------------------------------
 * Bringing rows into the graph (the worker, and the initial build)
 * ------------------------------------------------------------------------ */
/* Copy the rows' vectors under their stripes: flag 0 (overtaken: skip),
 * 1 (no vector any more: remove its node), 2 (insert vec i). */
static void take_rows(annidx *ix, const rowq_ent *b, size_t n)
{
	cohort_table *t = ix->t;
	for (size_t i = 0; i < n; i++) {
		uint32_t slot = b[i].slot;
		stripe *s = stripe_of(t, b[i].hash);
		pthread_rwlock_rdlock(&s->lock);
		if (atomic_load_explicit(seq_of(ix, slot),
					 memory_order_relaxed) != b[i].seq)
			ix->wflag[i] = 0;
		else if (slot_live(t, slot) &&
			 row_vec(ix, slot, ix->wbuf + i * ix->dim))
			ix->wflag[i] = 2;
		else
			ix->wflag[i] = 1;
		pthread_rwlock_unlock(&s->lock);
	}
}

typedef struct put_job {
	annidx *ix;
	const rowq_ent *b;
	int rc;
} put_job;

static void put_part(void *arg, int part, size_t lo, size_t hi)
{
	(void)part;
	put_job *j = arg;
	annidx *ix = j->ix;
	for (size_t i = lo; i < hi; i++) {
		if (!ix->wflag[i])
			continue;
		uint32_t slot = j->b[i].slot;
		uint32_t *n1 = &ix->node1[slot >> CHUNK_SHIFT][slot_off(slot)];
		if (*n1)
			hnsw_delete(ix->g, *n1 - 1);
		*n1 = 0;
		uint32_t nd;
		if (ix->wflag[i] == 2) {
			int rc = hnsw_insert(ix->g, ix->wbuf + i * ix->dim, slot,
					     &nd);
			if (rc) {
				j->rc = rc;   /* stays pending: scanned */
				ix->wflag[i] = 0;
				continue;
			}
			*n1 = nd + 1;
		}
	}
}

/* Clear the pending bits of the rows no write overtook. */
static void settle_rows(annidx *ix, const rowq_ent *b, size_t n)
{
	cohort_table *t = ix->t;
	for (size_t i = 0; i < n; i++) {
		if (!ix->wflag[i])
			continue;
		uint32_t slot = b[i].slot, c = slot >> CHUNK_SHIFT;
		uint32_t o = slot_off(slot);
		stripe *s = stripe_of(t, b[i].hash);
		pthread_rwlock_wrlock(&s->lock);
		if (atomic_load_explicit(seq_of(ix, slot),
					 memory_order_relaxed) == b[i].seq) {
			uint64_t m = UINT64_C(1) << (o & 63);
			uint64_t old = __atomic_fetch_and(&ix->pend[c][o >> 6],
							  ~m, __ATOMIC_RELEASE);
			if (old & m)
				atomic_fetch_sub(&ix->npending, 1);
		}
		pthread_rwlock_unlock(&s->lock);
	}
}

static void maybe_reclaim(annidx *ix)
{
	hnsw_stats st;
	hnsw_get_stats(ix->g, &st);
	if (st.deleted > 1024 && st.deleted * 10 > st.nodes)
		hnsw_reclaim(ix->g);
}

/* A batch: copy, graph work on `threads` threads, settle. Under
 * work_lock. */
static void bring_in(annidx *ix, const rowq_ent *b, size_t n,
		     uint32_t threads)
{
	take_rows(ix, b, n);
	put_job j = { ix, b, 0 };
	par_run(threads, n, put_part, &j);
	settle_rows(ix, b, n);
	maybe_reclaim(ix);
}

static void worker_fn(void *ctx, const rowq_ent *b, size_t n)
{
	annidx *ix = ctx;
	pthread_mutex_lock(&ix->work_lock);
	bring_in(ix, b, n, n >= 64 ? par_threads(0) : 1);
	pthread_mutex_unlock(&ix->work_lock);
}

/* Every row pending at creation (or restore) goes in, BATCH at a time on
 * all cores; the worker waits for each batch (work_lock). */
static void initial_build(annidx *ix, uint32_t hwm)
{
	rowq_ent b[BATCH];
	size_t n = 0;
	uint32_t threads = par_threads(0);
	for (uint32_t slot = 0; slot < hwm; slot++) {
		if (!pend_get(ix, slot))
			continue;
		b[n++] = (rowq_ent){ slot,
				     atomic_load(seq_of(ix, slot)),
				     atomic_load(phash_of(ix, slot)), 0, 0 };
		if (n == BATCH || slot + 1 == hwm) {
			pthread_mutex_lock(&ix->work_lock);
			bring_in(ix, b, n, threads);
			pthread_mutex_unlock(&ix->work_lock);
			n = 0;
		}
	}
	if (n) {
		pthread_mutex_lock(&ix->work_lock);
		bring_in(ix, b, n, threads);
		pthread_mutex_unlock(&ix->work_lock);
	}
}

/* ------------------------------------------------------------------------
 * Creating and dropping
 * ------------------------------------------------------------------------ */
static annidx *ix_find(const cohort_table *t, const char *name)
{
	int n = atomic_load(&((cohort_table *)t)->nindexes);
	for (int i = 0; i < n; i++)
		if (strcmp(t->indexes[i]->name, name) == 0)
			return t->indexes[i];
	return NULL;
}

static int no_index(const cohort_table *t, const char *name)
{
	return seterr(COHORT_ENOTFOUND, "table '%s' has no index '%s'",
		      t->name, name);
}

static int ix_name_check(const char *name)
{
	return name_check("index", name);
}

/* The range of the rows' values (10% margin); [-1, 1] without rows. */
static void value_range(cohort_table *t, int col, float *lo, float *hi)
{
	const tcol *c = t->cols[col];
	float mn = INFINITY, mx = -INFINITY;
	uint32_t hwm = atomic_load(&t->hwm);
	for (uint32_t s0 = 0; s0 < hwm; s0 += CHUNK_ROWS) {
		uint32_t s1 = s0 + CHUNK_ROWS < hwm ? s0 + CHUNK_ROWS : hwm;
		table_rdlock_all(t);
		for (uint32_t s = s0; s < s1; s++) {
			const colchunk *ch = col_chunk(c, s);
			if (!slot_live(t, s) || !bit_get(ch->valid, slot_off(s)))
				continue;
			const float *v = (const float *)ch->plane0 +
				(size_t)slot_off(s) * c->stride;
			for (uint32_t j = 0; j < c->dim; j++) {
				mn = v[j] < mn ? v[j] : mn;
				mx = v[j] > mx ? v[j] : mx;
			}
		}
		table_unlock_all(t);
	}
	if (!(mn < mx)) {
		*lo = mn == mx && isfinite(mn) ? mn - 1 : -1;
		*hi = mn == mx && isfinite(mn) ? mn + 1 : 1;
		return;
	}
	float m = (mx - mn) * 0.1f;
	*lo = mn - m;
	*hi = mx + m;
}

static int opts_resolve(cohort_table *t, const char *name, int column,
			const cohort_index_opts *in, cohort_index_opts *o)
{
	int rc = column_check(t, column);
	if (rc)
		return rc;
	const tcol *c = t->cols[column];
	if (c->type != COHORT_VEC)
		return seterr(COHORT_EOP, "index '%s': column '%s' is %s, not "
			      "a vec column", name, c->name,
			      cohort_type_name(c->type));
	*o = in ? *in : (cohort_index_opts){ 0 };
	if (o->metric != COHORT_METRIC_L2 && o->metric != COHORT_METRIC_IP &&
	    o->metric != COHORT_METRIC_COSINE)
		return seterr(COHORT_EINVAL, "index '%s': unknown metric %d",
			      name, (int)o->metric);
	if (o->M == 0)
		o->M = 16;
	if (o->M < 2 || o->M > 64)
		return seterr(COHORT_EINVAL, "index '%s': M = %u (2 to 64)",
			      name, o->M);
	if (o->ef_construction == 0)
		o->ef_construction = 200;
	if (o->ef_search == 0)
		o->ef_search = 64;
	if (o->ef_construction > 4096 || o->ef_search > 4096)
		return seterr(COHORT_ELIMIT, "index '%s': ef at most 4096",
			      name);
	if (!isfinite(o->lo) || !isfinite(o->hi) || o->lo > o->hi)
		return seterr(COHORT_EINVAL, "index '%s': bad code range",
			      name);
	if (o->lo == o->hi) {
		if (o->metric == COHORT_METRIC_COSINE) {
			o->lo = -1;
			o->hi = 1;
		} else {
			value_range(t, column, &o->lo, &o->hi);
		}
	}
	return 0;
}

static int ix_new(cohort_table *t, const char *name, int column,
		  const cohort_index_opts *o, annidx **out)
{
	annidx *ix = ccalloc(1, sizeof(*ix));
	if (!ix)
		return seterr(COHORT_ENOMEM, "out of memory");
	ix->t = t;
	snprintf(ix->name, sizeof(ix->name), "%s", name);
	ix->col = column;
	ix->dim = t->cols[column]->dim;
	ix->o = *o;
	pthread_mutex_init(&ix->work_lock, NULL);
	hnsw_params p = { .dim = ix->dim,
			  .metric = o->metric == COHORT_METRIC_IP ? HNSW_IP :
				    HNSW_L2,
			  .M = o->M, .ef_construction = o->ef_construction,
			  .lo = o->lo, .hi = o->hi, .seed = 0x5eed };
	int rc = 0;
	ix->seq = ccalloc(PDIR_MAX, sizeof(*ix->seq));
	ix->phash = ccalloc(PDIR_MAX, sizeof(*ix->phash));
	ix->node1 = ccalloc(PDIR_MAX, sizeof(*ix->node1));
	ix->pend = ccalloc(PDIR_MAX, sizeof(*ix->pend));
	ix->wbuf = cmalloc((size_t)BATCH * ix->dim * sizeof(float));
	ix->wflag = cmalloc(BATCH);
	if (!ix->seq || !ix->phash || !ix->node1 || !ix->pend || !ix->wbuf ||
	    !ix->wflag)
		rc = COHORT_ENOMEM;
	if (rc == 0 && hnsw_new(&p, &ix->g))
		rc = COHORT_ENOMEM;
	if (rc == 0)
		rc = rowq_init(&ix->q, QUEUE_CAP, BATCH, DELAY_MS, worker_fn,
			       ix);
	if (rc) {
		ix_free(t, ix);
		return seterr(rc, "out of memory for index '%s'", name);
	}
	*out = ix;
	return 0;
}

static int create_rec(recbuf *b, uint32_t table, const char *name, int col,
		      const cohort_index_opts *o)
{
	uint8_t l8 = (uint8_t)strlen(name), metric = (uint8_t)o->metric;
	uint16_t c = (uint16_t)col;
	return rec_put(b, &table, 4) || rec_put(b, &l8, 1) ||
	       rec_put(b, name, l8) || rec_put(b, &c, 2) ||
	       rec_put(b, &metric, 1) || rec_put(b, &o->M, 4) ||
	       rec_put(b, &o->ef_construction, 4) ||
	       rec_put(b, &o->ef_search, 4) || rec_put(b, &o->lo, 4) ||
	       rec_put(b, &o->hi, 4) ? COHORT_ENOMEM : 0;
}

/*
 * Publish ix (every stripe held, so every later write marks its rows),
 * with its state for every chunk; with `mark`, every live row that has a
 * vector is marked pending for the initial build. Logged when the
 * database logs. Returns the LSN to sync in *lsn.
 */
static int publish(cohort_table *t, annidx *ix, bool mark, uint64_t *lsn)
{
	cohort_db *db = t->db;
	pthread_mutex_lock(&db->lock);
	table_wrlock_all(t);
	pthread_mutex_lock(&t->alloc_lock);
	int rc = 0;
	if (ix_find(t, ix->name))
		rc = seterr(COHORT_EEXIST, "table '%s' has an index '%s'",
			    t->name, ix->name);
	else if (atomic_load(&t->nindexes) == COHORT_MAX_INDEXES)
		rc = seterr(COHORT_ELIMIT, "table '%s' has %d indexes (max)",
			    t->name, COHORT_MAX_INDEXES);
	uint32_t nch = atomic_load(&t->nchunks);
	for (uint32_t c = 0; c < nch && rc == 0; c++)
		rc = ix_chunk_add(t, ix, c);
	if (rc == COHORT_ENOMEM)
		rc = seterr(rc, "out of memory for index '%s'", ix->name);
	if (rc == 0 && db->wal) {
		recbuf rec;
		rec_init(&rec);
		rc = create_rec(&rec, t->id, ix->name, ix->col, &ix->o);
		if (rc == 0)
			rc = persist_log(db, REC_INDEX_CREATE, &rec, lsn);
		rec_free(&rec);
	}
	if (rc == 0 && mark) {
		const tcol *c = t->cols[ix->col];
		uint32_t hwm = atomic_load(&t->hwm);
		for (uint32_t s = 0; s < hwm; s++) {
			if (!slot_live(t, s) ||
			    !bit_get(col_chunk(c, s)->valid, slot_off(s)))
				continue;
			uint32_t len, seq;
			const char *k = table_slot_key(t, s, &len);
			mark_pending(ix, s, key_hash(k, len), &seq);
		}
	}
	if (rc == 0) {
		t->indexes[atomic_load(&t->nindexes)] = ix;
		atomic_fetch_add(&t->nindexes, 1);
	}
	pthread_mutex_unlock(&t->alloc_lock);
	table_unlock_all(t);
	pthread_mutex_unlock(&db->lock);
	return rc;
}

static int create(cohort_table *t, const char *name, int column,
		  const cohort_index_opts *o)
{
	annidx *ix;
	int rc = ix_new(t, name, column, o, &ix);
	if (rc)
		return rc;
	uint64_t lsn = 0;
	pthread_rwlock_wrlock(&t->ilock);
	rc = publish(t, ix, true, &lsn);
	pthread_rwlock_unlock(&t->ilock);
	if (rc) {
		ix_free(t, ix);
		return rc;
	}
	/* the worker starts now: rows written from here are queued */
	if (rowq_start(&ix->q))
		return seterr(COHORT_ENOMEM, "index '%s': cannot start its "
			      "worker", name);
	initial_build(ix, atomic_load(&t->hwm));
	return persist_sync(t->db, lsn);
}

int cohort_index_create(cohort_table *t, const char *name, int column,
			const cohort_index_opts *opts)
{
	if (!t)
		return seterr(COHORT_EINVAL, "cohort_index_create: NULL table");
	int rc = ix_name_check(name);
	cohort_index_opts o;
	if (rc == 0)
		rc = opts_resolve(t, name, column, opts, &o);
	return rc ? rc : create(t, name, column, &o);
}

static int drop(cohort_table *t, const char *name)
{
	pthread_rwlock_wrlock(&t->ilock);
	annidx *ix = ix_find(t, name);
	if (!ix) {
		pthread_rwlock_unlock(&t->ilock);
		return no_index(t, name);
	}
	rowq_stop(&ix->q);
	cohort_db *db = t->db;
	uint64_t lsn = 0;
	int rc = 0;
	pthread_mutex_lock(&db->lock);
	pthread_mutex_lock(&ix->work_lock);
	table_wrlock_all(t);
	if (db->wal) {
		recbuf rec;
		rec_init(&rec);
		uint8_t l8 = (uint8_t)strlen(name);
		rc = rec_put(&rec, &t->id, 4) || rec_put(&rec, &l8, 1) ||
		     rec_put(&rec, name, l8) ? COHORT_ENOMEM : 0;
		if (rc == 0)
			rc = persist_log(db, REC_INDEX_DROP, &rec, &lsn);
		rec_free(&rec);
	}
	if (rc == 0) {
		int n = atomic_load(&t->nindexes), i = 0;
		while (t->indexes[i] != ix)
			i++;
		memmove(&t->indexes[i], &t->indexes[i + 1],
			(size_t)(n - i - 1) * sizeof(annidx *));
		atomic_fetch_sub(&t->nindexes, 1);
	}
	table_unlock_all(t);
	pthread_mutex_unlock(&ix->work_lock);
	pthread_mutex_unlock(&db->lock);
	if (rc == 0) {
		pthread_mutex_lock(&t->alloc_lock);
		ix_free(t, ix);
		pthread_mutex_unlock(&t->alloc_lock);
	} else {
		rowq_start(&ix->q);
	}
	pthread_rwlock_unlock(&t->ilock);
	return rc ? rc : persist_sync(db, lsn);
}

int cohort_index_drop(cohort_table *t, const char *name)
{
	if (!t)
		return seterr(COHORT_EINVAL, "cohort_index_drop: NULL table");
	int rc = ix_name_check(name);
	return rc ? rc : drop(t, name);
}

void ann_table_free(cohort_table *t)
{
	int n = atomic_load(&t->nindexes);
	for (int i = 0; i < n; i++)
		rowq_stop(&t->indexes[i]->q);
	for (int i = 0; i < n; i++)
		ix_free(t, t->indexes[i]);
	atomic_store(&t->nindexes, 0);
}

void ann_pause(cohort_table *t)
{
	int n = atomic_load(&t->nindexes);
	for (int i = 0; i < n; i++)
		pthread_mutex_lock(&t->indexes[i]->work_lock);
}

void ann_resume(cohort_table *t)
{
	int n = atomic_load(&t->nindexes);
	for (int i = n - 1; i >= 0; i--)
		pthread_mutex_unlock(&t->indexes[i]->work_lock);
}

/* ------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------ */
int cohort_index_describe(const cohort_table *t, const char *name,
			  cohort_index_info *out)
{
	if (!t || !out)
		return seterr(COHORT_EINVAL, "index describe: NULL argument");
	int rc = ix_name_check(name);
	if (rc)
		return rc;
	cohort_table *w = (cohort_table *)t;
	pthread_rwlock_rdlock(&w->ilock);
	annidx *ix = ix_find(t, name);
	if (!ix) {
		pthread_rwlock_unlock(&w->ilock);
		return no_index(t, name);
	}
	hnsw_stats st;
	hnsw_get_stats(ix->g, &st);
	memset(out, 0, sizeof(*out));
	out->column = ix->col;
	out->metric = ix->o.metric;
	out->M = ix->o.M;
	out->ef_construction = ix->o.ef_construction;
	out->ef_search = ix->o.ef_search;
	out->lo = ix->o.lo;
	out->hi = ix->o.hi;
	out->nodes = st.nodes;
	out->tombstones = st.deleted;
	out->pending = atomic_load(&ix->npending);
	uint32_t nch = 0;
	while (nch < PDIR_MAX && ix->seq[nch])
		nch++;
	out->bytes = st.bytes + (uint64_t)nch * CHUNK_ROWS * (4 + 8 + 4) +
		(uint64_t)nch * CHUNK_WORDS * 8;
	pthread_rwlock_unlock(&w->ilock);
	return 0;
}

int cohort_index_list(const cohort_table *t, const char **names, size_t max,
		      size_t *n)
{
	if (!t || !n || (max && !names))
		return seterr(COHORT_EINVAL, "index list: NULL argument");
	cohort_table *w = (cohort_table *)t;
	pthread_rwlock_rdlock(&w->ilock);
	int ni = w->nindexes;
	for (int i = 0; i < ni && (size_t)i < max; i++)
		names[i] = t->indexes[i]->name;
	*n = (size_t)ni;
	pthread_rwlock_unlock(&w->ilock);
	return 0;
}

int cohort_index_wait(const cohort_table *t, const char *name)
{
	if (!t)
		return seterr(COHORT_EINVAL, "index wait: NULL table");
	for (;;) {
		cohort_index_info in;
		int rc = cohort_index_describe(t, name, &in);
		if (rc)
			return rc;
		if (in.pending == 0)
			return 0;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
}

/* The k best so far, nearest first, with their slots. */
typedef struct topk {
	cohort_neighbor *out;
	uint32_t *slot;
	size_t k, n;
} topk;

static void top_add(topk *tk, float d, uint32_t slot, const char *key,
		    uint32_t len)
{
	for (size_t i = 0; i < tk->n; i++)
		if (tk->slot[i] == slot)
			return;
	if (tk->n == tk->k && d >= tk->out[tk->n - 1].distance)
		return;
	size_t r = tk->n < tk->k ? tk->n++ : tk->k - 1;
	while (r > 0 && tk->out[r - 1].distance > d) {
		tk->out[r] = tk->out[r - 1];
		tk->slot[r] = tk->slot[r - 1];
		r--;
	}
	tk->out[r].distance = d;
	tk->out[r].key_len = len;
	memcpy(tk->out[r].key, key, len);
	tk->slot[r] = slot;
}

typedef struct qctx {
	annidx *ix;
	const float *q;           /* the query (cosine: normalised) */
	int64_t exclude;
	int64_t at;
	const uint64_t *bm;       /* allowed rows; NULL: all */
	uint64_t bm_bits;
	uint32_t *rejected;       /* pending when the graph met them */
	size_t nrej;
	float *buf;
} qctx;

static bool passes(const qctx *x, uint32_t slot)
{
	if ((int64_t)slot == x->exclude)
		return false;
	if (x->bm && (slot >= x->bm_bits ||
		      !((x->bm[slot >> 6] >> (slot & 63)) & 1)))
		return false;
	const cohort_table *t = x->ix->t;
	int64_t rt = __atomic_load_n(&tab_chunk(t, slot)->time[slot_off(slot)],
				     __ATOMIC_RELAXED);
	return !row_expired(t, rt, x->at);
}

static bool allow_fn(void *ctx, uint64_t label)
{
	qctx *x = ctx;
	uint32_t slot = (uint32_t)label;
	if (!passes(x, slot))
		return false;
	if (pend_get(x->ix, slot)) {
		if (x->nrej < MAX_REJECTED)
			x->rejected[x->nrej++] = slot;
		return false;
	}
	return true;
}

/* Distance as the API reports it, from the vector v (cosine: unit). */
static float api_dist(const annidx *ix, const float *q, const float *v)
{
	const dist_kernels *k = dist_get();
	switch (ix->o.metric) {
	case COHORT_METRIC_IP:
		return -k->ip(q, v, ix->dim);
	case COHORT_METRIC_COSINE:
		return k->l2sq(q, v, ix->dim) * 0.5f;
	default:
		return k->l2sq(q, v, ix->dim);
	}
}

/* Lock the stripe of slot's row (its latest write's key); returns it.
 * The hash is read again under the lock: a reused slot's hash moves to
 * its new key under the old key's stripe (ann_slot_retire), so a hash that
 * held under its stripe is the row's. */
static stripe *lock_slot(const annidx *ix, uint32_t slot, bool excl)
{
	for (;;) {
		uint64_t h = atomic_load_explicit(phash_of(ix, slot),
						  memory_order_relaxed);
		stripe *s = stripe_of(ix->t, h);
		if (excl)
			pthread_rwlock_wrlock(&s->lock);
		else
			pthread_rwlock_rdlock(&s->lock);
		if (atomic_load_explicit(phash_of(ix, slot),
					 memory_order_relaxed) == h)
			return s;
		pthread_rwlock_unlock(&s->lock);  /* reused meanwhile */
	}
}

static const float *vec_fn(void *ctx, uint64_t label, float *buf)
{
	(void)buf;
	qctx *x = ctx;
	uint32_t slot = (uint32_t)label;
	stripe *s = lock_slot(x->ix, slot, false);
	bool ok = !pend_get(x->ix, slot) && slot_live(x->ix->t, slot) &&
		row_vec(x->ix, slot, x->buf);
	pthread_rwlock_unlock(&s->lock);
	return ok ? x->buf : NULL;
}

/* Add slot with its current row's exact distance, if the row qualifies;
 * under its stripe. Pending or not does not matter here: a graph hit
 * rewritten since, or a pending row the worker has just finished, is
 * still measured as it is now. */
static void add_row(qctx *x, topk *tk, uint32_t slot)
{
	annidx *ix = x->ix;
	stripe *s = lock_slot(ix, slot, false);
	if (slot_live(ix->t, slot) && passes(x, slot) &&
	    row_vec(ix, slot, x->buf)) {
		uint32_t len;
		const char *key = table_slot_key(ix->t, slot, &len);
		top_add(tk, api_dist(ix, x->q, x->buf), slot, key, len);
	}
	pthread_rwlock_unlock(&s->lock);
}

static void scan_pending(qctx *x, topk *tk)
{
	annidx *ix = x->ix;
	if (atomic_load(&ix->npending) == 0)
		return;
	uint32_t nch = atomic_load(&ix->t->nchunks);
	for (uint32_t c = 0; c < nch; c++) {
		const uint64_t *pw = ix->pend[c];
		for (uint32_t w = 0; w < CHUNK_WORDS; w++) {
			uint64_t bits = __atomic_load_n(&pw[w], __ATOMIC_ACQUIRE);
			for (; bits; bits &= bits - 1) {
				uint32_t slot = (c << CHUNK_SHIFT) + w * 64 +
					(uint32_t)__builtin_ctzll(bits);
				add_row(x, tk, slot);
			}
		}
	}
}

/* A selective filter: every matching row, exactly, under the read locks. */
static void scan_exact(qctx *x, topk *tk)
{
	annidx *ix = x->ix;
	cohort_table *t = ix->t;
	table_rdlock_all(t);
	uint64_t words = x->bm_bits / 64;
	for (uint64_t w = 0; w < words; w++)
		for (uint64_t bits = x->bm[w]; bits; bits &= bits - 1) {
			uint32_t slot = (uint32_t)(w * 64 +
						   (uint64_t)__builtin_ctzll(bits));
			if ((int64_t)slot == x->exclude || !slot_live(t, slot) ||
			    !row_vec(ix, slot, x->buf))
				continue;
			uint32_t len;
			const char *key = table_slot_key(t, slot, &len);
			top_add(tk, api_dist(ix, x->q, x->buf), slot, key, len);
		}
	table_unlock_all(t);
}

static int knn_check(const cohort_table *t, const char *index,
		     const cohort_knn_query *q, cohort_neighbor *out,
		     size_t *n)
{
	if (!t || !q || !out || !n)
		return seterr(COHORT_EINVAL, "cohort_knn: NULL argument");
	*n = 0;
	int rc = ix_name_check(index);
	if (rc)
		return rc;
	if (q->k == 0 || q->k > COHORT_MAX_K)
		return seterr(COHORT_ELIMIT, "cohort_knn: k = %zu (1 to %d)",
			      q->k, COHORT_MAX_K);
	if (q->ef > 4096)
		return seterr(COHORT_ELIMIT, "cohort_knn: ef = %zu (max 4096)",
			      q->ef);
	if (!q->key && !q->vec)
		return seterr(COHORT_EINVAL, "cohort_knn: neither a key nor a "
			      "vector");
	if (q->key)
		return key_check(t, q->key_len);
	return 0;
}

/* The query vector: the key's row (excluded from the results) or q->vec. */
static int query_vec(annidx *ix, const cohort_knn_query *q, float *qv,
		     int64_t *exclude)
{
	cohort_table *t = ix->t;
	*exclude = -1;
	if (q->key) {
		uint64_t h = key_hash(q->key, q->key_len);
		stripe *s = stripe_of(t, h);
		pthread_rwlock_rdlock(&s->lock);
		int64_t slot = keymap_find(t, s, h, q->key,
					   (uint32_t)q->key_len);
		bool ok = slot >= 0 && row_vec(ix, (uint32_t)slot, qv);
		pthread_rwlock_unlock(&s->lock);
		if (!ok)
			return seterr(COHORT_ENOTFOUND, "cohort_knn: table '%s' "
				      "has no vector for that key", t->name);
		*exclude = slot;
		return 0;
	}
	if (q->dim != ix->dim)
		return seterr(COHORT_EDIM, "cohort_knn: vector of dimension %u, "
			      "index '%s' has %u", q->dim, ix->name, ix->dim);
	double s = 0;
	for (uint32_t j = 0; j < ix->dim; j++) {
		if (!isfinite(q->vec[j]))
			return seterr(COHORT_ENAN, "cohort_knn: element %u of "
				      "the vector is not finite", j);
		qv[j] = q->vec[j];
		s += (double)qv[j] * qv[j];
	}
	if (ix->o.metric == COHORT_METRIC_COSINE) {
		if (s == 0)
			return seterr(COHORT_EINVAL, "cohort_knn: the zero "
				      "vector has no cosine distance");
		float inv = (float)(1 / sqrt(s));
		for (uint32_t j = 0; j < ix->dim; j++)
			qv[j] *= inv;
	}
	return 0;
}

int cohort_knn(const cohort_table *t, const char *index,
	       const cohort_knn_query *q, cohort_neighbor *out, size_t *n)
{
	int rc = knn_check(t, index, q, out, n);
	if (rc)
		return rc;
	cohort_table *w = (cohort_table *)t;
	pthread_rwlock_rdlock(&w->ilock);
	annidx *ix = ix_find(t, index);
	if (!ix) {
		pthread_rwlock_unlock(&w->ilock);
		return no_index(t, index);
	}
	float *qv = cmalloc(ix->dim * sizeof(float) * 2);
	uint32_t *slots = cmalloc(q->k * sizeof(uint32_t));
	uint32_t *rej = cmalloc(MAX_REJECTED * sizeof(uint32_t));
	hnsw_hit *hits = cmalloc(q->k * sizeof(hnsw_hit));
	cohort_bitmap *bm = NULL;
	if (!qv || !slots || !rej || !hits)
		rc = seterr(COHORT_ENOMEM, "cohort_knn: out of memory");
	int64_t exclude = -1;
	if (rc == 0)
		rc = query_vec(ix, q, qv, &exclude);
	if (rc == 0 && q->filter) {
		if (filter_table(q->filter) != t)
			rc = seterr(COHORT_EINVAL, "cohort_knn: the filter is "
				    "on another table");
		else
			rc = cohort_filter_eval(q->filter, q->root, q->at, &bm);
	}
	qctx x = { .ix = ix, .q = qv, .exclude = exclude,
		   .at = time_resolve(q->at), .rejected = rej,
		   .buf = qv + ix->dim };
	topk tk = { out, slots, q->k, 0 };
	if (rc == 0 && bm) {
		x.bm = cohort_bitmap_words(bm);
		x.bm_bits = cohort_bitmap_nbits(bm);
	}
	uint64_t matching = bm ? cohort_bitmap_count(bm) : 0;
	uint64_t rows = atomic_load(&t->nrows);
	if (rc == 0 && bm && (matching <= EXACT_ROWS ||
			      matching * EXACT_SHARE <= rows)) {
		scan_exact(&x, &tk);
	} else if (rc == 0) {
		size_t ef = q->ef ? q->ef : ix->o.ef_search;
		hnsw_query hq = { .k = q->k, .ef = ef < q->k ? q->k : ef,
				  .rerank = ef < q->k ? q->k : ef,
				  .vec = vec_fn, .vec_ctx = &x,
				  .allow = allow_fn, .allow_ctx = &x };
		/* The pending rows first, exactly: the worker clears a row's
		 * pending bit only once its node is linked in (release), so a
		 * row found not pending here is reachable by the search that
		 * follows. Scanned after the search (as it once was), a row
		 * the worker linked in behind the search's back and then
		 * cleared was in neither, and a write acknowledged before the
		 * query could be missing from its answer. */
		scan_pending(&x, &tk);
		size_t got = 0;
		int hr = hnsw_search(ix->g, qv, &hq, hits, &got);
		if (hr)
			rc = seterr(COHORT_ENOMEM, "cohort_knn: out of memory");
		/* the graph's hits, checked again under their stripes; then
		 * the rows that were pending when the graph met them */
		for (size_t i = 0; rc == 0 && i < got; i++)
			add_row(&x, &tk, (uint32_t)hits[i].label);
		for (size_t i = 0; rc == 0 && i < x.nrej; i++)
			add_row(&x, &tk, x.rejected[i]);
	}
	if (rc == 0)
		*n = tk.n;
	cohort_bitmap_free(bm);
	cfree(qv);
	cfree(slots);
	cfree(rej);
	cfree(hits);
	pthread_rwlock_unlock(&w->ilock);
	return rc;
}

/* ------------------------------------------------------------------------
 * Persistence
 * ------------------------------------------------------------------------ */
typedef struct encctx {
	const uint32_t *rank;
	uint32_t hwm;
} encctx;

static uint64_t rank_map(void *ctx, uint64_t label)
{
	const encctx *e = ctx;
	if (label >= e->hwm || e->rank[label] == UINT32_MAX)
		return UINT64_MAX;
	return e->rank[label];
}

int ann_encode(cohort_table *t, int i, const uint32_t *rank,
	       int (*put)(void *ctx, const void *p, size_t n), void *ctx)
{
	annidx *ix = t->indexes[i];
	recbuf rec;
	rec_init(&rec);
	int rc = create_rec(&rec, t->id, ix->name, ix->col, &ix->o);
	if (rc == 0)
		rc = put(ctx, rec.p, rec.len);
	rec_free(&rec);
	/* the pending rows, as ranks: they go back into the queue */
	uint32_t hwm = atomic_load(&t->hwm);
	uint64_t npend = 0;
	for (uint32_t s = 0; s < hwm; s++)
		npend += pend_get(ix, s) && rank[s] != UINT32_MAX;
	if (rc == 0)
		rc = put(ctx, &npend, 8);
	for (uint32_t s = 0; s < hwm && rc == 0; s++)
		if (pend_get(ix, s) && rank[s] != UINT32_MAX)
			rc = put(ctx, &rank[s], 4);
	encctx e = { rank, hwm };
	if (rc == 0)
		rc = hnsw_save(ix->g, rank_map, &e, put, ctx);
	return rc;
}

typedef struct restctx {
	annidx *ix;
	int rc;
} restctx;

static void restore_node(void *ctx, uint32_t node, uint64_t label)
{
	restctx *r = ctx;
	annidx *ix = r->ix;
	uint32_t hwm = atomic_load(&ix->t->hwm);
	if (label >= hwm || !slot_live(ix->t, (uint32_t)label)) {
		r->rc = COHORT_ECORRUPT;
		return;
	}
	ix->node1[label >> CHUNK_SHIFT][slot_off((uint32_t)label)] = node + 1;
}

/* A create record's fields (after the table id). */
static int read_def(bytes_in *r, char *name, int *col, cohort_index_opts *o)
{
	uint8_t l8 = (uint8_t)bin_uint(r, 1);
	const void *nm = bin_take(r, l8);
	*col = (int)bin_uint(r, 2);
	memset(o, 0, sizeof(*o));
	o->metric = (cohort_metric)bin_uint(r, 1);
	o->M = (uint32_t)bin_uint(r, 4);
	o->ef_construction = (uint32_t)bin_uint(r, 4);
	o->ef_search = (uint32_t)bin_uint(r, 4);
	const void *lo = bin_take(r, 4), *hi = bin_take(r, 4);
	if (r->bad || l8 == 0 || l8 > COHORT_MAX_NAME)
		return COHORT_ECORRUPT;
	memcpy(name, nm, l8);
	name[l8] = 0;
	memcpy(&o->lo, lo, 4);
	memcpy(&o->hi, hi, 4);
	return 0;
}

int ann_restore(cohort_table *t, const uint8_t *p, size_t len)
{
	bytes_in r = { p, len, 0, false };
	(void)bin_uint(&r, 4);        /* the table id: the caller's table */
	char name[COHORT_MAX_NAME + 1];
	int col;
	cohort_index_opts o;
	int rc = read_def(&r, name, &col, &o);
	if (rc)
		return rc;
	cohort_index_opts chk;
	if (opts_resolve(t, name, col, &o, &chk) || o.lo >= o.hi)
		return COHORT_ECORRUPT;
	uint64_t npend = bin_uint(&r, 8);
	if (r.bad || npend > (r.len - r.off) / 4)
		return COHORT_ECORRUPT;
	const uint8_t *pend = bin_take(&r, npend * 4);
	annidx *ix;
	rc = ix_new(t, name, col, &o, &ix);
	if (rc)
		return rc;
	hnsw_free(ix->g);
	ix->g = NULL;
	int hr = hnsw_load(r.p + r.off, r.len - r.off, &ix->g);
	if (hr) {
		ix_free(t, ix);
		return hr == -ENOMEM ? COHORT_ENOMEM : COHORT_ECORRUPT;
	}
	uint64_t lsn = 0;
	cohort_db *db = t->db;
	void *wal = db->wal;
	db->wal = NULL;               /* loading: nothing is logged */
	pthread_rwlock_wrlock(&t->ilock);
	rc = publish(t, ix, false, &lsn);
	pthread_rwlock_unlock(&t->ilock);
	db->wal = wal;
	if (rc) {
		ix_free(t, ix);
		return rc;
	}
	restctx rx = { ix, 0 };
	hnsw_each(ix->g, restore_node, &rx);
	if (rx.rc)
		return rx.rc;
	/* every live row's stripe; the pending ones again */
	uint32_t hwm = atomic_load(&t->hwm);
	for (uint32_t s = 0; s < hwm; s++) {
		if (!slot_live(t, s))
			continue;
		uint32_t klen;
		const char *k = table_slot_key(t, s, &klen);
		atomic_store(phash_of(ix, s), key_hash(k, klen));
	}
	for (uint64_t i = 0; i < npend; i++) {
		uint32_t s;
		memcpy(&s, pend + i * 4, 4);
		if (s >= hwm || !slot_live(t, s))
			return COHORT_ECORRUPT;
		uint32_t seq;
		mark_pending(ix, s, atomic_load(phash_of(ix, s)), &seq);
	}
	if (rowq_start(&ix->q))
		return seterr(COHORT_ENOMEM, "index '%s': cannot start its "
			      "worker", name);
	initial_build(ix, hwm);
	return 0;
}

int ann_replay(cohort_db *db, uint8_t type, bytes_in *r, uint64_t lsn)
{
	uint32_t id = (uint32_t)bin_uint(r, 4);
	if (r->bad || id >= cohort_db_ntables(db))
		return seterr(COHORT_ECORRUPT, "log record %llu: unknown table "
			      "id", (unsigned long long)lsn);
	cohort_table *t = db->tables[id];
	char name[COHORT_MAX_NAME + 1];
	if (type == REC_INDEX_DROP) {
		uint8_t l8 = (uint8_t)bin_uint(r, 1);
		const void *nm = bin_take(r, l8);
		if (r->bad || l8 == 0 || l8 > COHORT_MAX_NAME)
			return seterr(COHORT_ECORRUPT, "log record %llu: bad "
				      "index drop", (unsigned long long)lsn);
		memcpy(name, nm, l8);
		name[l8] = 0;
		return drop(t, name);
	}
	int col;
	cohort_index_opts o;
	if (read_def(r, name, &col, &o))
		return seterr(COHORT_ECORRUPT, "log record %llu: bad index "
			      "create", (unsigned long long)lsn);
	return cohort_index_create(t, name, col, &o);
}

int ann_drain(cohort_db *db)
{
	size_t n = cohort_db_ntables(db);
	for (size_t i = 0; i < n; i++) {
		cohort_table *t = db->tables[i];
		pthread_rwlock_rdlock(&t->ilock);
		int ni = atomic_load(&t->nindexes);
		char names[COHORT_MAX_INDEXES][COHORT_MAX_NAME + 1];
		for (int j = 0; j < ni; j++)
			memcpy(names[j], t->indexes[j]->name, sizeof(names[j]));
		pthread_rwlock_unlock(&t->ilock);
		/* bounded: a row an insert failed on (out of memory) stays
		 * pending, and close must not wait for it forever */
		int64_t deadline = mono_ms() + 30000;
		for (int j = 0; j < ni; j++) {
			for (;;) {
				cohort_index_info in;
				int rc = cohort_index_describe(t, names[j], &in);
				if (rc)
					return rc;
				if (in.pending == 0)
					break;
				if (mono_ms() > deadline)
					return COHORT_EBUSY;
				struct timespec ts = { 0, 1000000 };
				nanosleep(&ts, NULL);
			}
		}
	}
	return 0;
}
